/* test_proj_orders.c — the orders read model (projections/orders.c) without
 * NATS: order events are encoded and applied through the model's projection
 * definition in write transactions of a real LMDB environment, as the
 * projector does. Given order events, when an order or a customer's page is
 * queried, then it equals the aggregate's state (order_evolve) and a
 * brute-force ordering. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"
#include "order.h"
#include "orders.h"
#include "proj_internal.h"
#include "user.h"

#define HASH     "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define T0       1700000000000LL
#define DEADLINE 900000

static char dir[64];
static proj_env *env;
static proj_orders *orders;

static void rmrf(const char *path)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	cr_assert_eq(system(cmd), 0);
}

static void open_env(size_t map_size)
{
	proj_env_options o;
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = map_size;
	o.max_map_size = (size_t)1 << 30;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_orders_create(env, &orders), ORN_OK);
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/orion-projorders-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	open_env(1 << 20);
}

static void teardown(void)
{
	proj_orders_destroy(orders);
	orders = NULL;
	proj_env_close(env);
	env = NULL;
	rmrf(dir);
}

TestSuite(proj_orders, .init = setup, .fini = teardown, .timeout = 60);

/* ---- events ---- */

static order_event *event(order_event_kind kind, int64_t at)
{
	order_event *e = calloc(1, sizeof *e);
	cr_assert_not_null(e);
	e->kind = kind;
	e->data.time_ms = at;
	return e;
}

/* OrderPlaced by customer at `at` with `lines` lines: line i costs 100 * (i + 1), quantity i + 1. */
static order_event *placed(const char *customer, int64_t at, size_t lines)
{
	order_event *e = event(ORDER_PLACED, at);
	order_data *d = &e->data;
	snprintf(d->customer_id, sizeof d->customer_id, "%s", customer);
	strcpy(d->customer_email, "ann@example.com");
	strcpy(d->request_hash, HASH);
	strcpy(d->token_hash, HASH);
	strcpy(d->currency, "EUR");
	d->deadline_ms = at + DEADLINE;
	for (size_t i = 0; i < lines; i++) {
		order_line *l = &d->lines[d->line_count++];
		snprintf(l->product_id, sizeof l->product_id, "p%zu", i);
		snprintf(l->name, sizeof l->name, "Item %zu", i);
		l->unit_price_cents = 100 * (int64_t)(i + 1);
		l->quantity = (int64_t)(i + 1);
	}
	return e;
}

static int64_t total_of(size_t lines)
{
	int64_t total = 0;
	for (size_t i = 0; i < lines; i++)
		total += 100 * (int64_t)(i + 1) * (int64_t)(i + 1);
	return total;
}

static order_event *confirmed(int64_t at)
{
	order_event *e = event(ORDER_CONFIRMED_BY_CUSTOMER, at);
	e->data.deadline_ms = at + DEADLINE;
	return e;
}

static order_event *paid(int64_t at)
{
	order_event *e = event(ORDER_PAID, at);
	strcpy(e->data.charge_id, "ch_1");
	strcpy(e->data.brand, "visa");
	strcpy(e->data.last4, "4242");
	return e;
}

static order_event *with_reason(order_event_kind kind, int64_t at, const char *reason)
{
	order_event *e = event(kind, at);
	strcpy(e->data.reason, reason);
	return e;
}

static order_event *out_of_stock(int64_t at, const char *product_id)
{
	order_event *e = with_reason(ORDER_CANCELLED_EVENT, at, ORDER_REASON_OUT_OF_STOCK);
	strcpy(e->data.product_ids[e->data.product_count++], product_id);
	return e;
}

/* ---- applying ---- */

typedef struct raw_event {
	char subject[ES_SUBJECT_MAX];
	uint64_t seq;
	char type[ENV_TYPE_MAX];
	uint8_t payload[65536];
	size_t len;
} raw_event;

typedef struct batch {
	raw_event *events;
	size_t count;
} batch;

static orn_rc apply_batch(proj_txn *t, void *closure)
{
	const batch *b = closure;
	const proj_def *def = proj_orders_def(orders);
	orn_rc rc = ORN_OK;
	for (size_t i = 0; rc == ORN_OK && i < b->count; i++) {
		env_envelope e;
		memset(&e, 0, sizeof e);
		strcpy(e.type, b->events[i].type);
		e.schema = 1;
		e.payload = b->events[i].payload;
		e.payload_len = b->events[i].len;
		rc = def->apply(def->self, t, b->events[i].seq, b->events[i].subject, &e);
	}
	return rc;
}

/* Encodes ev (and frees it) as raw event on orion.evt.order.<id> at seq. */
static void encode_into(raw_event *r, const char *id, uint64_t seq, order_event *ev)
{
	mp_writer *w = mp_writer_create();
	cr_assert_not_null(w);
	snprintf(r->subject, sizeof r->subject, "orion.evt.order.%s", id);
	r->seq = seq;
	strcpy(r->type, order_event_type(ev->kind));
	cr_assert_eq(order_event_encode(w, ev), ORN_OK);
	cr_assert_leq(mp_writer_size(w), sizeof r->payload);
	memcpy(r->payload, mp_writer_data(w), mp_writer_size(w));
	r->len = mp_writer_size(w);
	mp_writer_destroy(w);
	free(ev);
}

/* Applies ev (and frees it) to order id at seq in its own transaction. */
static void apply_at(const char *id, uint64_t seq, order_event *ev)
{
	raw_event *r = malloc(sizeof *r);
	encode_into(r, id, seq, ev);
	batch b = {r, 1};
	cr_assert_eq(proj_env_write(env, apply_batch, &b), ORN_OK);
	free(r);
}

static orn_rc apply_raw(const char *subject, uint64_t seq, const char *type, const void *payload, size_t len)
{
	raw_event *r = malloc(sizeof *r);
	snprintf(r->subject, sizeof r->subject, "%s", subject);
	r->seq = seq;
	snprintf(r->type, sizeof r->type, "%s", type);
	memcpy(r->payload, payload, len);
	r->len = len;
	batch b = {r, 1};
	orn_rc rc = proj_env_write(env, apply_batch, &b);
	free(r);
	return rc;
}

/* ---- querying ---- */

static proj_order *get(const char *id)
{
	proj_order *o = malloc(sizeof *o);
	cr_assert_not_null(o);
	cr_assert_eq(proj_orders_get(orders, id, o), ORN_OK, "%s", id);
	cr_assert_str_eq(o->id, id);
	return o;
}

static proj_orders_page *page_of(const char *customer, unsigned limit, const char *cursor)
{
	proj_orders_page *p = malloc(sizeof *p);
	cr_assert_not_null(p);
	cr_assert_eq(proj_orders_list(orders, customer, limit, cursor, p), ORN_OK, "%s", customer);
	return p;
}

/* The only row of customer's list, which must be order id. */
static proj_order_summary summary_of(const char *customer, const char *id)
{
	proj_orders_page *p = page_of(customer, 10, NULL);
	cr_assert_eq(p->count, 1);
	cr_assert_str_eq(p->items[0].id, id);
	cr_assert_str_eq(p->next_cursor, "");
	proj_order_summary s = p->items[0];
	free(p);
	return s;
}

static void expect_history(const proj_order *o, const order_status *statuses, const uint64_t *seqs, size_t n)
{
	cr_assert_eq(o->state.history_count, n);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(o->state.history[i].status, statuses[i], "entry %zu", i);
		cr_assert_eq(o->history_seq[i], seqs[i], "entry %zu", i);
	}
	cr_assert_eq(o->version, seqs[n - 1]);
	cr_assert_eq(o->state.status, statuses[n - 1]);
}

/* ---- every event type ---- */

Test(proj_orders, the_happy_path_moves_status_and_history_with_seqs)
{
	apply_at("o1", 3, placed("u1", T0, 2));
	proj_order *o = get("o1");
	expect_history(o, (order_status[]){ORDER_PENDING}, (uint64_t[]){3}, 1);
	cr_assert_str_eq(o->state.customer_id, "u1");
	cr_assert_str_eq(o->state.customer_email, "ann@example.com");
	cr_assert_eq(o->state.line_count, 2);
	cr_assert_str_eq(o->state.lines[1].product_id, "p1");
	cr_assert_eq(o->state.confirmation_deadline_ms, T0 + DEADLINE);
	proj_order_summary s = summary_of("u1", "o1");
	cr_assert_eq(s.status, ORDER_PENDING);
	cr_assert_eq(s.total_cents, total_of(2));
	cr_assert_str_eq(s.currency, "EUR");
	cr_assert_eq(s.created_at_ms, T0);
	cr_assert_eq(s.updated_at_ms, T0);
	cr_assert_eq(s.item_count, 2);
	free(o);

	apply_at("o1", 5, event(ORDER_RESERVED, T0 + 10));
	apply_at("o1", 9, confirmed(T0 + 20));
	o = get("o1");
	expect_history(o,
	               (order_status[]){ORDER_PENDING, ORDER_AWAITING_CONFIRMATION, ORDER_AWAITING_PAYMENT},
	               (uint64_t[]){3, 5, 9}, 3);
	cr_assert_eq(o->state.payment_deadline_ms, T0 + 20 + DEADLINE);
	cr_assert_eq(summary_of("u1", "o1").status, ORDER_AWAITING_PAYMENT);
	free(o);

	apply_at("o1", 12, paid(T0 + 30));
	o = get("o1");
	expect_history(o,
	               (order_status[]){ORDER_PENDING, ORDER_AWAITING_CONFIRMATION, ORDER_AWAITING_PAYMENT,
	                                ORDER_CONFIRMED},
	               (uint64_t[]){3, 5, 9, 12}, 4);
	cr_assert_str_eq(o->state.charge_id, "ch_1");
	cr_assert_str_eq(o->state.last4, "4242");
	cr_assert_eq(o->state.history[3].at_ms, T0 + 30);
	s = summary_of("u1", "o1");
	cr_assert_eq(s.status, ORDER_CONFIRMED);
	cr_assert_eq(s.created_at_ms, T0);
	cr_assert_eq(s.updated_at_ms, T0 + 30);
	free(o);
}

Test(proj_orders, a_declined_payment_ends_in_payment_failed)
{
	apply_at("o1", 1, placed("u1", T0, 1));
	apply_at("o1", 2, event(ORDER_RESERVED, T0 + 1));
	apply_at("o1", 3, confirmed(T0 + 2));
	apply_at("o1", 4, with_reason(ORDER_PAYMENT_FAILED_EVENT, T0 + 3, "card_declined"));
	proj_order *o = get("o1");
	expect_history(o,
	               (order_status[]){ORDER_PENDING, ORDER_AWAITING_CONFIRMATION, ORDER_AWAITING_PAYMENT,
	                                ORDER_PAYMENT_FAILED},
	               (uint64_t[]){1, 2, 3, 4}, 4);
	cr_assert_str_eq(o->state.history[3].reason, "card_declined");
	cr_assert_eq(summary_of("u1", "o1").status, ORDER_PAYMENT_FAILED);
	free(o);
}

Test(proj_orders, cancellations_keep_their_reason_and_products)
{
	apply_at("oos", 1, placed("u1", T0, 2));
	apply_at("oos", 2, out_of_stock(T0 + 1, "p1"));
	apply_at("cust", 3, placed("u2", T0, 1));
	apply_at("cust", 4, with_reason(ORDER_CANCELLED_EVENT, T0 + 5, ORDER_REASON_CUSTOMER));
	apply_at("exp", 5, placed("u3", T0, 1));
	apply_at("exp", 6, event(ORDER_RESERVED, T0 + 1));
	apply_at("exp", 7, confirmed(T0 + 2));
	apply_at("exp", 8, with_reason(ORDER_CANCELLED_EVENT, T0 + 2 + DEADLINE, ORDER_REASON_EXPIRED));

	proj_order *o = get("oos");
	expect_history(o, (order_status[]){ORDER_PENDING, ORDER_CANCELLED}, (uint64_t[]){1, 2}, 2);
	cr_assert_str_eq(o->state.history[1].reason, ORDER_REASON_OUT_OF_STOCK);
	cr_assert_eq(o->state.cancelled_product_count, 1);
	cr_assert_str_eq(o->state.cancelled_products[0], "p1");
	free(o);
	o = get("cust");
	expect_history(o, (order_status[]){ORDER_PENDING, ORDER_CANCELLED}, (uint64_t[]){3, 4}, 2);
	cr_assert_str_eq(o->state.history[1].reason, ORDER_REASON_CUSTOMER);
	free(o);
	o = get("exp");
	expect_history(o,
	               (order_status[]){ORDER_PENDING, ORDER_AWAITING_CONFIRMATION, ORDER_AWAITING_PAYMENT,
	                                ORDER_CANCELLED},
	               (uint64_t[]){5, 6, 7, 8}, 4);
	cr_assert_str_eq(o->state.history[3].reason, ORDER_REASON_EXPIRED);
	free(o);
	proj_order_summary s = summary_of("u3", "exp");
	cr_assert_eq(s.status, ORDER_CANCELLED);
	cr_assert_eq(s.updated_at_ms, T0 + 2 + DEADLINE);
}

Test(proj_orders, the_model_equals_the_aggregate_state)
{
	order_state *expected = calloc(1, sizeof *expected);
	order_event *events[] = {placed("u1", T0, 50), event(ORDER_RESERVED, T0 + 1), confirmed(T0 + 2),
	                         paid(T0 + 3)};
	order_state_init(expected);
	for (size_t i = 0; i < ORN_ARRAY_LEN(events); i++) {
		cr_assert(order_evolve(expected, events[i]));
		apply_at("big", 10 + i, events[i]);
	}
	proj_order *o = get("big");
	cr_assert_eq(memcmp(&o->state, expected, sizeof *expected), 0);
	cr_assert_eq(summary_of("u1", "big").total_cents, total_of(50));
	cr_assert_eq(summary_of("u1", "big").item_count, 50);
	free(o);
	free(expected);
}

/* ---- refused, redelivered and old events ---- */

Test(proj_orders, an_event_evolve_refuses_changes_nothing)
{
	apply_at("o1", 1, placed("u1", T0, 1));
	apply_at("o1", 2, paid(T0 + 1));                 /* not awaiting payment */
	apply_at("o1", 3, placed("u2", T0 + 9, 3));      /* placed again, by someone else */
	apply_at("never", 4, event(ORDER_RESERVED, T0)); /* an order never placed */
	proj_order *o = get("o1");
	expect_history(o, (order_status[]){ORDER_PENDING}, (uint64_t[]){1}, 1);
	cr_assert_str_eq(o->state.customer_id, "u1");
	free(o);
	proj_order none;
	cr_assert_eq(proj_orders_get(orders, "never", &none), ORN_ENOTFOUND);
	proj_orders_page *p = page_of("u2", 10, NULL);
	cr_assert_eq(p->count, 0);
	free(p);
}

Test(proj_orders, redelivered_and_old_events_change_nothing)
{
	apply_at("o1", 10, placed("u1", T0, 1));
	apply_at("o1", 11, event(ORDER_RESERVED, T0 + 1));
	apply_at("o1", 11, event(ORDER_RESERVED, T0 + 1)); /* redelivered */
	apply_at("o1", 10, placed("u1", T0, 1));           /* older than the order */
	/* Evolve would accept a cancellation now: only its seq says it is old. */
	apply_at("o1", 9, with_reason(ORDER_CANCELLED_EVENT, T0 + 2, ORDER_REASON_CUSTOMER));
	proj_order *o = get("o1");
	expect_history(o, (order_status[]){ORDER_PENDING, ORDER_AWAITING_CONFIRMATION}, (uint64_t[]){10, 11},
	               2);
	free(o);
	apply_at("o1", 12, with_reason(ORDER_CANCELLED_EVENT, T0 + 2, ORDER_REASON_CUSTOMER));
	cr_assert_eq(summary_of("u1", "o1").status, ORDER_CANCELLED);
}

Test(proj_orders, a_commit_of_several_events_applies_them_all)
{
	raw_event *r = malloc(2 * sizeof *r);
	encode_into(&r[0], "o1", 7, placed("u1", T0, 1));
	encode_into(&r[1], "o1", 7, event(ORDER_RESERVED, T0 + 1));
	batch b = {r, 2};
	cr_assert_eq(proj_env_write(env, apply_batch, &b), ORN_OK);
	cr_assert_eq(proj_env_write(env, apply_batch, &b), ORN_OK); /* and redelivered */
	free(r);
	proj_order *o = get("o1");
	expect_history(o, (order_status[]){ORDER_PENDING, ORDER_AWAITING_CONFIRMATION}, (uint64_t[]){7, 7},
	               2);
	free(o);
}

/* ---- bad data ---- */

Test(proj_orders, malformed_payloads_are_skipped_without_failing_the_batch)
{
	static const uint8_t garbage[] = {0xc1};
	static const uint8_t empty_map[] = {0x80};
	raw_event *r = calloc(5, sizeof *r);
	/* A placement decide could not have emitted: a currency in lowercase. */
	order_event *bad = placed("u1", T0, 1);
	strcpy(bad->data.currency, "eur");
	encode_into(&r[0], "o1", 1, bad);
	strcpy(r[1].subject, "orion.evt.order.o1");
	r[1].seq = 2;
	strcpy(r[1].type, ORDER_EV_PLACED);
	memcpy(r[1].payload, garbage, sizeof garbage);
	r[1].len = sizeof garbage;
	r[2] = r[1];
	strcpy(r[2].type, ORDER_EV_RESERVED);
	memcpy(r[2].payload, empty_map, sizeof empty_map);
	r[2].len = sizeof empty_map;
	r[3] = r[1];
	strcpy(r[3].type, "OrderRefunded"); /* a type of a later version */
	encode_into(&r[4], "o1", 5, placed("u1", T0, 1));
	batch b = {r, 5};
	cr_assert_eq(proj_env_write(env, apply_batch, &b), ORN_OK);
	free(r);

	proj_orders_stats st;
	proj_orders_stats_get(orders, &st);
	cr_assert_eq(st.undecodable, 3);
	proj_order *o = get("o1");
	expect_history(o, (order_status[]){ORDER_PENDING}, (uint64_t[]){5}, 1);
	free(o);
}

Test(proj_orders, foreign_subjects_are_ignored)
{
	static const uint8_t garbage[] = {0xc1};
	cr_assert_eq(apply_raw("orion.evt.cart.o1", 1, ORDER_EV_PLACED, garbage, sizeof garbage), ORN_OK);
	cr_assert_eq(apply_raw("orion.evt.order.a*b", 2, ORDER_EV_PLACED, garbage, sizeof garbage), ORN_OK);
	cr_assert_eq(apply_raw("orion.evt.order.", 3, ORDER_EV_PLACED, garbage, sizeof garbage), ORN_OK);
	proj_orders_stats st;
	proj_orders_stats_get(orders, &st);
	cr_assert_eq(st.undecodable, 0);
}

Test(proj_orders, unknown_orders_and_bad_ids_are_told_apart)
{
	proj_order *o = malloc(sizeof *o);
	cr_assert_eq(proj_orders_get(orders, "nope", o), ORN_ENOTFOUND);
	cr_assert_eq(proj_orders_get(orders, "a.b", o), ORN_EINVAL);
	cr_assert_eq(proj_orders_get(orders, "", o), ORN_EINVAL);
	cr_assert_eq(proj_orders_get(orders, NULL, o), ORN_EINVAL);
	free(o);
}

/* Overwrites a record or index entry with raw bytes. */
typedef struct raw_put {
	const char *db;
	const void *key;
	size_t key_len;
	const void *value;
	size_t value_len;
} raw_put;

static orn_rc put_raw(proj_txn *t, void *closure)
{
	const raw_put *p = closure;
	MDB_dbi dbi;
	orn_rc rc = proj_dbi_open(t, p->db, 0, &dbi);
	return rc == ORN_OK ? proj_put(t, dbi, p->key, p->key_len, p->value, p->value_len, 0) : rc;
}

static void corrupt(const char *db, const void *key, size_t key_len, const void *value, size_t value_len)
{
	raw_put p = {db, key, key_len, value, value_len};
	cr_assert_eq(proj_env_write(env, put_raw, &p), ORN_OK);
}

/* A record as orders.c writes it, with fields replaced by the caller. */
static size_t fake_record(uint8_t *out, size_t cap, uint32_t fields, uint64_t format, const char *customer,
                          int64_t created, uint32_t seq_count, const uint64_t *seqs, bool snapshot_ok)
{
	mp_writer *w = mp_writer_create();
	mp_write_array(w, fields);
	mp_write_uint(w, format);
	mp_write_cstr(w, customer);
	mp_write_int(w, created);
	mp_write_array(w, seq_count);
	for (uint32_t i = 0; i < seq_count; i++)
		mp_write_uint(w, seqs[i]);
	if (snapshot_ok) {
		order_state *s = calloc(1, sizeof *s);
		order_event *e = placed("u1", T0, 1);
		cr_assert(order_evolve(s, e));
		cr_assert_eq(order_kind.snapshot(s, w), ORN_OK);
		free(e);
		free(s);
	} else {
		mp_write_array(w, 1);
		mp_write_nil(w);
	}
	size_t n = mp_writer_size(w);
	cr_assert_leq(n, cap);
	memcpy(out, mp_writer_data(w), n);
	mp_writer_destroy(w);
	return n;
}

Test(proj_orders, unreadable_records_are_reported_and_rebuilt_by_the_next_event)
{
	static uint8_t rec[8192];
	const uint64_t one[] = {1}, back[] = {2, 1}, two[] = {1, 2};
	proj_order *o = malloc(sizeof *o);
	struct {
		uint32_t fields;
		uint64_t format;
		const char *customer;
		int64_t created;
		uint32_t seq_count;
		const uint64_t *seqs;
		bool snapshot_ok;
	} cases[] = {
	        {4, 1, "u1", T0, 1, one, true},     /* field count */
	        {5, 2, "u1", T0, 1, one, true},     /* format */
	        {5, 1, "u1", T0, 0, one, true},     /* no history */
	        {5, 1, "u1", T0, 2, back, true},    /* seqs going back */
	        {5, 1, "u1", T0, 2, two, true},     /* seqs and history disagree */
	        {5, 1, "u9", T0, 1, one, true},     /* another customer than the snapshot's */
	        {5, 1, "u1", T0 + 1, 1, one, true}, /* another creation time */
	        {5, 1, "u1", T0, 1, one, false},    /* snapshot */
	};
	for (size_t i = 0; i < ORN_ARRAY_LEN(cases); i++) {
		size_t n = fake_record(rec, sizeof rec, cases[i].fields, cases[i].format, cases[i].customer,
		                       cases[i].created, cases[i].seq_count, cases[i].seqs,
		                       cases[i].snapshot_ok);
		corrupt("orders.orders", "bad", 3, rec, n);
		cr_assert_eq(proj_orders_get(orders, "bad", o), ORN_EDECODE, "case %zu", i);
	}
	/* The control: a well-formed record reads. */
	size_t n = fake_record(rec, sizeof rec, 5, 1, "u1", T0, 1, (const uint64_t[]){4}, true);
	corrupt("orders.orders", "good", 4, rec, n);
	cr_assert_eq(proj_orders_get(orders, "good", o), ORN_OK);
	cr_assert_eq(o->version, 4);
	/* Trailing bytes. */
	rec[n] = 0xc0;
	corrupt("orders.orders", "bad", 3, rec, n + 1);
	cr_assert_eq(proj_orders_get(orders, "bad", o), ORN_EDECODE);

	/* An event over an unreadable record starts the order afresh. */
	apply_at("bad", 20, placed("u5", T0 + 50, 1));
	cr_assert_eq(proj_orders_get(orders, "bad", o), ORN_OK);
	expect_history(o, (order_status[]){ORDER_PENDING}, (uint64_t[]){20}, 1);
	cr_assert_str_eq(o->state.customer_id, "u5");
	free(o);
}

Test(proj_orders, the_version_is_read_from_the_head_without_replaying)
{
	static uint8_t rec[8192];
	uint64_t version = 99;
	/* given an order moved by two events, and one an evolve refuses */
	apply_at("o1", 7, placed("u1", T0, 1));
	cr_assert_eq(proj_orders_version(orders, "o1", &version), ORN_OK);
	cr_assert_eq(version, 7);
	apply_at("o1", 8, event(ORDER_RESERVED, T0 + 1));
	apply_at("o1", 9, paid(T0 + 2)); /* not awaiting payment: changes nothing */
	/* then the version is the one a full read gives */
	cr_assert_eq(proj_orders_version(orders, "o1", &version), ORN_OK);
	proj_order *o = get("o1");
	cr_assert_eq(version, 8);
	cr_assert_eq(version, o->version);
	free(o);
	/* unknown orders, bad ids */
	cr_assert_eq(proj_orders_version(orders, "nope", &version), ORN_ENOTFOUND);
	cr_assert_eq(version, 0);
	cr_assert_eq(proj_orders_version(orders, "a.b", &version), ORN_EINVAL);
	cr_assert_eq(proj_orders_version(orders, NULL, &version), ORN_EINVAL);
	/* the head alone is read: a bad snapshot behind a good head still has a
	 * version (the full read reports it), a bad head has none */
	size_t n = fake_record(rec, sizeof rec, 5, 1, "u1", T0, 1, (const uint64_t[]){4}, false);
	corrupt("orders.orders", "snap", 4, rec, n);
	cr_assert_eq(proj_orders_version(orders, "snap", &version), ORN_OK);
	cr_assert_eq(version, 4);
	o = malloc(sizeof *o);
	cr_assert_eq(proj_orders_get(orders, "snap", o), ORN_EDECODE);
	free(o);
	n = fake_record(rec, sizeof rec, 5, 2, "u1", T0, 1, (const uint64_t[]){4}, true);
	corrupt("orders.orders", "head", 4, rec, n);
	cr_assert_eq(proj_orders_version(orders, "head", &version), ORN_EDECODE);
}

Test(proj_orders, an_unreadable_index_entry_fails_the_page)
{
	apply_at("o1", 1, placed("u1", T0, 1));
	proj_orders_page *p = malloc(sizeof *p);
	uint8_t key[80];
	size_t n = 0;
	memcpy(key, "u1", 2);
	n = 2;
	key[n++] = 0;
	proj_key_i64(key + n, T0 + 5);
	n += 8;
	/* bad summaries under a good key */
	static const uint8_t values[][8] = {
	        {0xc1},                         /* not msgpack */
	        {0x95, 0x00, 0, 0, 0, 0},       /* status none */
	        {0x95, 0x07, 0, 0xa0, 0, 0},    /* status unknown */
	        {0x95, 0x01, 0, 0xa0, 0, 0x33}, /* 51 lines */
	        {0x94, 0x01, 0, 0xa0, 0},       /* field count */
	};
	memcpy(key + n, "o2", 2);
	for (size_t i = 0; i < ORN_ARRAY_LEN(values); i++) {
		corrupt("orders.by_customer", key, n + 2, values[i], sizeof values[i]);
		cr_assert_eq(proj_orders_list(orders, "u1", 10, NULL, p), ORN_EDECODE, "value %zu", i);
		cr_assert_eq(p->count, 0);
	}
	/* a good summary, then bad keys */
	static const uint8_t good[] = {0x95, 0x01, 0x05, 0xa3, 'E', 'U', 'R', 0x01, 0x01};
	corrupt("orders.by_customer", key, n + 2, good, sizeof good);
	cr_assert_eq(proj_orders_list(orders, "u1", 10, NULL, p), ORN_OK);
	cr_assert_eq(p->count, 2);
	cr_assert_str_eq(p->items[0].id, "o2");
	cr_assert_eq(p->items[0].total_cents, 5);
	memcpy(key + n, "o*", 2);
	corrupt("orders.by_customer", key, n + 2, good, sizeof good);
	cr_assert_eq(proj_orders_list(orders, "u1", 10, NULL, p), ORN_EDECODE);
	proj_key_i64(key + n - 8, T0 + 10);
	corrupt("orders.by_customer", key, n, good, sizeof good); /* the newest, without an order id */
	cr_assert_eq(proj_orders_list(orders, "u1", 10, NULL, p), ORN_EDECODE);
	free(p);
}

Test(proj_orders, a_cursor_naming_an_unreadable_record_fails)
{
	static const uint8_t garbage[] = {0xc1};
	char cursor[PROJ_CURSOR_MAX];
	proj_orders_page *p = malloc(sizeof *p);
	corrupt("orders.orders", "bad", 3, garbage, sizeof garbage);
	cr_assert_eq(proj_cursor_encode("bad", cursor, sizeof cursor), ORN_OK);
	cr_assert_eq(proj_orders_list(orders, "u1", 10, cursor, p), ORN_EDECODE);
	free(p);
}

/* ---- the customer's list ---- */

#define LISTED 40

typedef struct row {
	char id[16];
	int64_t created;
} row;

static int newest_first(const void *a, const void *b)
{
	const row *x = a, *y = b;
	if (x->created != y->created)
		return x->created < y->created ? 1 : -1;
	return -strcmp(x->id, y->id);
}

static row model[LISTED];

/* LISTED orders of "c1" with creation times in groups of 3 (ties by id),
 * placed in a scrambled order, among orders of customers whose ids neighbour
 * "c1" ("c", "c1x", "c2", "b"). */
static void load_orders(void)
{
	static const char *const others[] = {"c", "c1x", "c2", "b", "c10"};
	raw_event *r = calloc(LISTED + ORN_ARRAY_LEN(others) * 3, sizeof *r);
	size_t count = 0;
	uint64_t seq = 1;
	for (int k = 0; k < LISTED; k++) {
		int i = (k * 17) % LISTED;
		snprintf(model[i].id, sizeof model[i].id, "o-%02d", i);
		model[i].created = T0 + ((i * 7) % 13) * 1000;
		encode_into(&r[count++], model[i].id, seq++,
		            placed("c1", model[i].created, 1 + (size_t)i % 3));
	}
	for (size_t c = 0; c < ORN_ARRAY_LEN(others); c++)
		for (int j = 0; j < 3; j++) {
			char id[32];
			snprintf(id, sizeof id, "x-%s-%d", others[c], j);
			encode_into(&r[count++], id, seq++, placed(others[c], T0 + j, 1));
		}
	batch b = {r, count};
	cr_assert_eq(proj_env_write(env, apply_batch, &b), ORN_OK);
	free(r);
	qsort(model, LISTED, sizeof model[0], newest_first);
}

static void check_paging(unsigned limit)
{
	char cursor[PROJ_CURSOR_MAX] = "";
	size_t next = 0;
	int pages = 0;
	for (;;) {
		proj_orders_page *p = page_of("c1", limit, cursor);
		pages++;
		for (size_t i = 0; i < p->count; i++, next++) {
			cr_assert_lt(next, LISTED, "extra row %s", p->items[i].id);
			cr_assert_str_eq(p->items[i].id, model[next].id, "limit %u page %d row %zu", limit,
			                 pages, i);
			cr_assert_eq(p->items[i].created_at_ms, model[next].created);
			cr_assert_eq(p->items[i].status, ORDER_PENDING);
		}
		bool last = p->next_cursor[0] == '\0';
		if (!last) {
			cr_assert_eq(p->count, limit, "only full pages have a next cursor");
			strcpy(cursor, p->next_cursor);
		}
		free(p);
		if (last)
			break;
	}
	cr_assert_eq(next, LISTED, "rows missing after %d pages (limit %u)", pages, limit);
}

Test(proj_orders, a_customers_orders_page_newest_first)
{
	load_orders();
	check_paging(100);
	check_paging(1);
	check_paging(7);
	check_paging(LISTED);
	check_paging(3);
}

Test(proj_orders, customers_never_see_each_others_orders)
{
	load_orders();
	static const char *const others[] = {"c", "c1x", "c2", "b", "c10"};
	for (size_t c = 0; c < ORN_ARRAY_LEN(others); c++) {
		proj_orders_page *p = page_of(others[c], 100, NULL);
		cr_assert_eq(p->count, 3, "%s", others[c]);
		for (size_t i = 0; i < p->count; i++) {
			char id[32];
			snprintf(id, sizeof id, "x-%s-%d", others[c], 2 - (int)i);
			cr_assert_str_eq(p->items[i].id, id);
		}
		free(p);
	}
	proj_orders_page *p = page_of("nobody", 100, NULL);
	cr_assert_eq(p->count, 0);
	cr_assert_str_eq(p->next_cursor, "");
	free(p);
	p = page_of("zzz", 100, NULL); /* after every customer */
	cr_assert_eq(p->count, 0);
	free(p);
	p = page_of("a", 100, NULL); /* before every customer */
	cr_assert_eq(p->count, 0);
	free(p);
}

Test(proj_orders, limits_and_cursors_are_validated)
{
	load_orders();
	proj_orders_page *p = malloc(sizeof *p);
	char cursor[PROJ_CURSOR_MAX];
	cr_assert_eq(proj_orders_list(orders, "c1", 0, NULL, p), ORN_EINVAL);
	cr_assert_eq(proj_orders_list(orders, "c1", PROJ_ORDERS_PAGE_MAX + 1, NULL, p), ORN_EINVAL);
	cr_assert_eq(proj_orders_list(orders, "c1", 10, "not-a-cursor!", p), ORN_EINVAL);
	cr_assert_eq(proj_orders_list(orders, "c.1", 10, NULL, p), ORN_EINVAL);
	cr_assert_eq(proj_orders_list(orders, NULL, 10, NULL, p), ORN_EINVAL);
	cr_assert_eq(p->count, 0);
	/* a well-formed cursor naming no order */
	cr_assert_eq(proj_cursor_encode("o-99", cursor, sizeof cursor), ORN_OK);
	cr_assert_eq(proj_orders_list(orders, "c1", 10, cursor, p), ORN_EINVAL);
	/* another customer's order: refused, not a window into their list */
	cr_assert_eq(proj_cursor_encode("x-c2-1", cursor, sizeof cursor), ORN_OK);
	cr_assert_eq(proj_orders_list(orders, "c1", 10, cursor, p), ORN_EINVAL);
	cr_assert_eq(p->count, 0);
	/* the empty cursor is the first page */
	cr_assert_eq(proj_orders_list(orders, "c1", 10, "", p), ORN_OK);
	cr_assert_eq(p->count, 10);
	cr_assert_str_eq(p->items[0].id, model[0].id);
	free(p);
}

Test(proj_orders, a_cursor_survives_a_change_of_its_order)
{
	load_orders();
	proj_orders_page *p = page_of("c1", 5, NULL);
	char cursor[PROJ_CURSOR_MAX], last[ES_ID_MAX + 1];
	strcpy(cursor, p->next_cursor);
	strcpy(last, p->items[4].id);
	free(p);
	apply_at(last, 1000, with_reason(ORDER_CANCELLED_EVENT, T0 + 99999, ORDER_REASON_CUSTOMER));
	p = page_of("c1", 5, cursor);
	cr_assert_eq(p->count, 5);
	cr_assert_str_eq(p->items[0].id, model[5].id);
	free(p);
	p = page_of("c1", 5, NULL);
	cr_assert_str_eq(p->items[4].id, last, "creation time, not update time, orders the list");
	cr_assert_eq(p->items[4].status, ORDER_CANCELLED);
	cr_assert_eq(p->items[4].updated_at_ms, T0 + 99999);
	free(p);
}

/* ---- the environment ---- */

Test(proj_orders, large_orders_survive_map_growth)
{
	teardown();
	snprintf(dir, sizeof dir, "/tmp/orion-projorders-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	open_env(64 * 1024);
	raw_event *r = calloc(60, sizeof *r);
	for (int i = 0; i < 60; i++) {
		char id[16];
		snprintf(id, sizeof id, "big-%02d", i);
		encode_into(&r[i], id, (uint64_t)i + 1, placed("u1", T0 + i, ORDER_LINES_MAX));
	}
	batch b = {r, 60};
	cr_assert_eq(proj_env_write(env, apply_batch, &b), ORN_OK);
	free(r);
	proj_env_stats st;
	cr_assert_eq(proj_env_stats_get(env, &st), ORN_OK);
	cr_assert_gt(st.map_grows, 0);
	proj_orders_page *p = page_of("u1", 100, NULL);
	cr_assert_eq(p->count, 60);
	cr_assert_str_eq(p->items[0].id, "big-59");
	free(p);
	proj_order *o = get("big-07");
	cr_assert_eq(o->state.line_count, ORDER_LINES_MAX);
	cr_assert_eq(o->version, 8);
	free(o);
}

Test(proj_orders, creation_reports_allocation_failure)
{
	if (!failalloc_available())
		cr_skip_test("allocation failure injection is not available in this build");
	proj_orders *m = (proj_orders *)1;
	for (long nth = 1; nth <= 2; nth++) {
		failalloc_nth(nth);
		orn_rc rc = proj_orders_create(env, &m);
		failalloc_off();
		cr_assert_eq(rc, ORN_ENOMEM, "allocation %ld", nth);
		cr_assert_null(m);
	}
}

/* ---- deadlines (orders.by_deadline, proj_orders_due) ---- */

#define DUE_CAP 16

typedef struct due_list {
	proj_order_due items[DUE_CAP];
	size_t count;
} due_list;

static due_list due_at(int64_t now, size_t cap)
{
	due_list d;
	memset(&d, 0, sizeof d);
	cr_assert_eq(proj_orders_due(orders, now, d.items, cap, &d.count), ORN_OK);
	return d;
}

/* The only order due at now must be id with deadline. */
static void expect_only_due(int64_t now, const char *id, int64_t deadline)
{
	due_list d = due_at(now, DUE_CAP);
	cr_assert_eq(d.count, 1, "due at %lld: %zu orders", (long long)now, d.count);
	cr_assert_str_eq(d.items[0].id, id);
	cr_assert_eq(d.items[0].deadline_ms, deadline);
}

/* Entries of orders.by_deadline, read directly. */
static size_t deadline_entries(void)
{
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_stat st;
	cr_assert_eq(proj_env_read_begin(env, &txn), ORN_OK);
	cr_assert_eq(mdb_dbi_open(txn, "orders.by_deadline", 0, &dbi), 0);
	cr_assert_eq(mdb_stat(txn, dbi, &st), 0);
	proj_env_read_end(env, txn);
	return st.ms_entries;
}

Test(proj_orders, the_deadline_follows_the_status_until_the_order_is_paid)
{
	apply_at("o1", 1, placed("u1", T0, 1));
	cr_assert_eq(due_at(T0 + DEADLINE - 1, DUE_CAP).count, 0, "not before its time");
	expect_only_due(T0 + DEADLINE, "o1", T0 + DEADLINE);
	apply_at("o1", 2, event(ORDER_RESERVED, T0 + 10));
	expect_only_due(T0 + DEADLINE, "o1", T0 + DEADLINE);
	cr_assert_eq(deadline_entries(), 1);
	/* confirmed: the payment deadline replaces the confirmation deadline */
	apply_at("o1", 3, confirmed(T0 + 20));
	cr_assert_eq(due_at(T0 + DEADLINE, DUE_CAP).count, 0);
	expect_only_due(T0 + 20 + DEADLINE, "o1", T0 + 20 + DEADLINE);
	cr_assert_eq(deadline_entries(), 1);
	apply_at("o1", 4, paid(T0 + 30));
	cr_assert_eq(due_at(INT64_MAX, DUE_CAP).count, 0, "a confirmed order has no deadline");
	cr_assert_eq(deadline_entries(), 0);
}

Test(proj_orders, every_exit_but_confirmed_removes_the_deadline_too)
{
	apply_at("by-customer", 1, placed("u1", T0, 1));
	apply_at("by-customer", 2, event(ORDER_RESERVED, T0 + 1));
	apply_at("by-customer", 3, with_reason(ORDER_CANCELLED_EVENT, T0 + 2, ORDER_REASON_CUSTOMER));
	apply_at("by-stock", 4, placed("u1", T0, 1));
	apply_at("by-stock", 5, out_of_stock(T0 + 1, "p0"));
	apply_at("by-expiry", 6, placed("u1", T0, 1));
	apply_at("by-expiry", 7, with_reason(ORDER_CANCELLED_EVENT, T0 + DEADLINE, ORDER_REASON_EXPIRED));
	apply_at("declined", 8, placed("u1", T0, 1));
	apply_at("declined", 9, event(ORDER_RESERVED, T0 + 1));
	apply_at("declined", 10, confirmed(T0 + 2));
	apply_at("declined", 11, with_reason(ORDER_PAYMENT_FAILED_EVENT, T0 + 3, "card_declined"));
	cr_assert_eq(due_at(INT64_MAX, DUE_CAP).count, 0);
	cr_assert_eq(deadline_entries(), 0);
}

Test(proj_orders, due_orders_come_earliest_first_then_by_id_up_to_cap)
{
	apply_at("o3", 1, placed("u1", T0 + 2, 1));
	apply_at("o2", 2, placed("u2", T0, 1));
	apply_at("o1", 3, placed("u1", T0, 1));
	apply_at("o4", 4, placed("u1", T0 + 100, 1));
	due_list d = due_at(T0 + DEADLINE + 2, DUE_CAP);
	cr_assert_eq(d.count, 3);
	cr_assert_str_eq(d.items[0].id, "o1");
	cr_assert_str_eq(d.items[1].id, "o2");
	cr_assert_eq(d.items[1].deadline_ms, T0 + DEADLINE);
	cr_assert_str_eq(d.items[2].id, "o3");
	cr_assert_eq(d.items[2].deadline_ms, T0 + 2 + DEADLINE);
	d = due_at(T0 + DEADLINE + 2, 2);
	cr_assert_eq(d.count, 2, "at most cap");
	cr_assert_str_eq(d.items[1].id, "o2");
	d = due_at(T0 + DEADLINE + 2, 0);
	cr_assert_eq(d.count, 0);
	cr_assert_eq(due_at(INT64_MAX, DUE_CAP).count, 4);
}

Test(proj_orders, redelivered_events_leave_one_deadline_per_order)
{
	apply_at("o1", 1, placed("u1", T0, 1));
	apply_at("o1", 1, placed("u1", T0, 1));
	apply_at("o1", 2, event(ORDER_RESERVED, T0 + 1));
	apply_at("o1", 3, confirmed(T0 + 2));
	apply_at("o1", 1, placed("u1", T0, 1)); /* older than the order's last event */
	apply_at("o1", 3, confirmed(T0 + 2));
	cr_assert_eq(deadline_entries(), 1);
	expect_only_due(INT64_MAX, "o1", T0 + 2 + DEADLINE);
}

static orn_rc drop_deadlines(proj_txn *t, void *closure)
{
	MDB_dbi dbi;
	int mrc = mdb_dbi_open(t->txn, "orders.by_deadline", 0, &dbi);
	if (mrc == 0)
		mrc = mdb_drop(t->txn, dbi, 1);
	return proj_rc(mrc);
}

Test(proj_orders, an_environment_written_before_the_index_gets_it_from_the_records)
{
	apply_at("live", 1, placed("u1", T0, 1));
	apply_at("paying", 2, placed("u1", T0, 1));
	apply_at("paying", 3, event(ORDER_RESERVED, T0 + 1));
	apply_at("paying", 4, confirmed(T0 + 5));
	apply_at("gone", 5, placed("u1", T0, 1));
	apply_at("gone", 6, with_reason(ORDER_CANCELLED_EVENT, T0 + 1, ORDER_REASON_CUSTOMER));
	cr_assert_eq(proj_env_write(env, drop_deadlines, NULL), ORN_OK);
	proj_orders_destroy(orders);
	orders = NULL;
	proj_env_close(env);
	env = NULL;
	open_env(1 << 20); /* creating the model creates the index and fills it */
	due_list d = due_at(INT64_MAX, DUE_CAP);
	cr_assert_eq(d.count, 2);
	cr_assert_str_eq(d.items[0].id, "live");
	cr_assert_eq(d.items[0].deadline_ms, T0 + DEADLINE);
	cr_assert_str_eq(d.items[1].id, "paying");
	cr_assert_eq(d.items[1].deadline_ms, T0 + 5 + DEADLINE);
	/* and the next event moves the backfilled key */
	apply_at("live", 7, with_reason(ORDER_CANCELLED_EVENT, T0 + 2, ORDER_REASON_CUSTOMER));
	expect_only_due(INT64_MAX, "paying", T0 + 5 + DEADLINE);
}

/* ---- erasure (ADR 027) ---- */

/* Applies CustomerErased naming user_id (or none: an event before it named one) at seq. */
static void apply_erased(const char *user_id, uint64_t seq)
{
	user_event ev = {.kind = USER_ERASED_EVENT};
	snprintf(ev.fields.user_id, sizeof ev.fields.user_id, "%s", user_id);
	if (user_id[0] != '\0')
		strcpy(ev.fields.kid, "00112233445566778899aabbccddeeff");
	mp_writer *w = mp_writer_create();
	cr_assert_eq(user_event_encode(w, &ev), ORN_OK);
	cr_assert_eq(
	        apply_raw("orion.evt.user.u0123", seq, USER_EV_ERASED, mp_writer_data(w), mp_writer_size(w)),
	        ORN_OK);
	mp_writer_destroy(w);
}

Test(proj_orders, a_customer_erased_leaves_every_order_of_theirs_without_the_address)
{
	apply_at("o1", 1, placed("u1", T0, 1));
	apply_at("o2", 2, placed("u1", T0 + 1, 2));
	apply_at("o3", 4, placed("u12", T0 + 3, 1)); /* a customer whose id starts with u1's */
	apply_erased("", 5);                         /* names nobody: nothing changes */
	proj_order *o = get("o1");
	cr_assert_str_eq(o->state.customer_email, "ann@example.com");
	free(o);
	apply_erased("u1", 6);
	const char *mine[] = {"o1", "o2"};
	for (size_t i = 0; i < 2; i++) {
		o = get(mine[i]);
		cr_assert_str_eq(o->state.customer_email, "", "%s", mine[i]);
		cr_assert_eq(o->version, (uint64_t)(i + 1), "the version stays: no order event was applied");
		cr_assert_eq(o->state.line_count, i + 1, "the order keeps its items");
		free(o);
	}
	cr_assert_eq(summary_of("u12", "o3").status, ORDER_PENDING);
	o = get("o3");
	cr_assert_str_eq(o->state.customer_email, "ann@example.com", "another customer keeps theirs");
	free(o);
	/* the erased order goes on: a later event applies to the blanked record */
	apply_at("o1", 7, with_reason(ORDER_CANCELLED_EVENT, T0 + 4, ORDER_REASON_CUSTOMER));
	o = get("o1");
	cr_assert_eq(o->state.status, ORDER_CANCELLED);
	cr_assert_eq(o->version, 7);
	cr_assert_str_eq(o->state.customer_email, "");
	free(o);
	proj_orders_page *p = page_of("u1", 10, NULL);
	cr_assert_eq(p->count, 2);
	free(p);
}
