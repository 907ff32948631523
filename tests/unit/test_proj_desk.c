/* test_proj_desk.c — the admin order desk's read model (projections/desk.c)
 * without NATS: events are applied through the orders model's and the desk
 * model's projection definitions, in that order, in write transactions of a
 * real LMDB environment, as the projector does. Given orders of two
 * customers and events of other aggregates, when the desk lists orders (with
 * filters, a page at a time), accounts, or an order's story, then it answers
 * newest first, filtered, and with exactly the events `orion replay --order`
 * selects. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "desk.h"
#include "mail_log.h"
#include "order.h"
#include "orders.h"
#include "proj_internal.h"

#define HASH "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define T0   1700000000000LL

static char dir[64];
static proj_env *env;
static proj_orders *orders;
static proj_desk *desk;
static uint64_t next_seq = 1;

static void setup(void)
{
	proj_env_options o;
	snprintf(dir, sizeof dir, "/tmp/orion-projdesk-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = 1 << 22;
	o.max_map_size = (size_t)1 << 30;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_orders_create(env, &orders), ORN_OK);
	cr_assert_eq(proj_desk_create(env, orders, &desk), ORN_OK);
	next_seq = 1;
}

static void teardown(void)
{
	char cmd[128];
	proj_desk_destroy(desk);
	proj_orders_destroy(orders);
	proj_env_close(env);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(proj_desk, .init = setup, .fini = teardown, .timeout = 60);

typedef struct one_event {
	const char *subject;
	uint64_t seq;
	env_envelope e;
} one_event;

static orn_rc apply_one(proj_txn *t, void *closure)
{
	const one_event *ev = closure;
	const proj_def *defs[] = {proj_orders_def(orders), proj_desk_def(desk)};
	orn_rc rc = ORN_OK;
	for (size_t d = 0; d < 2 && rc == ORN_OK; d++)
		if (proj_subject_matches(defs[d]->filter, ev->subject))
			rc = defs[d]->apply(defs[d]->self, t, ev->seq, ev->subject, &ev->e);
	return rc;
}

/* Applies one event at the next seq; returns its seq. */
static uint64_t apply(const char *subject, const char *type, int64_t at, const char *correlation,
                      const char *causation, const void *payload, size_t len)
{
	static const uint8_t empty_map[] = {0x80};
	one_event ev = {.subject = subject, .seq = next_seq++};
	snprintf(ev.e.type, sizeof ev.e.type, "%s", type);
	ev.e.schema = 1;
	ev.e.time_ms = at;
	snprintf(ev.e.correlation, sizeof ev.e.correlation, "%s", correlation);
	snprintf(ev.e.causation, sizeof ev.e.causation, "%s", causation);
	ev.e.payload = payload != NULL ? payload : empty_map;
	ev.e.payload_len = payload != NULL ? len : sizeof empty_map;
	cr_assert_eq(proj_env_write(env, apply_one, &ev), ORN_OK);
	return ev.seq;
}

static uint64_t apply_order(const char *id, order_event *e)
{
	char subject[ES_SUBJECT_MAX];
	mp_writer *w = mp_writer_create();
	cr_assert_eq(order_event_encode(w, e), ORN_OK);
	snprintf(subject, sizeof subject, "orion.evt.order.%s", id);
	uint64_t seq = apply(subject, order_event_type(e->kind), e->data.time_ms, "req-1", "cmd-1",
	                     mp_writer_data(w), mp_writer_size(w));
	mp_writer_destroy(w);
	free(e);
	return seq;
}

static order_event *placed(const char *customer, int64_t at)
{
	order_event *e = calloc(1, sizeof *e);
	order_data *d = &e->data;
	e->kind = ORDER_PLACED;
	d->time_ms = at;
	snprintf(d->customer_id, sizeof d->customer_id, "%s", customer);
	strcpy(d->customer_email, "ann@example.com");
	strcpy(d->request_hash, HASH);
	strcpy(d->token_hash, HASH);
	strcpy(d->currency, "EUR");
	d->deadline_ms = at + 900000;
	order_line *l = &d->lines[d->line_count++];
	strcpy(l->product_id, "p1");
	strcpy(l->name, "Item");
	l->unit_price_cents = 250;
	l->quantity = 2;
	return e;
}

static order_event *cancelled(int64_t at)
{
	order_event *e = calloc(1, sizeof *e);
	e->kind = ORDER_CANCELLED_EVENT;
	e->data.time_ms = at;
	strcpy(e->data.reason, ORDER_REASON_CUSTOMER);
	return e;
}

static void list(const proj_desk_query *q, proj_desk_orders_page *page, const char *const *want, size_t n)
{
	cr_assert_eq(proj_desk_orders(desk, q, page), ORN_OK);
	cr_assert_eq(page->count, n, "count %zu, want %zu", page->count, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(page->items[i].summary.id, want[i]);
}

Test(proj_desk, lists_orders_newest_first_with_filters_and_pages)
{
	apply_order("o1", placed("cA", T0 + 1000));
	apply_order("o2", placed("cB", T0 + 2000));
	apply_order("o3", placed("cA", T0 + 3000));
	apply_order("o4", placed("cB", T0 + 4000));
	apply_order("o2", cancelled(T0 + 5000));
	proj_desk_orders_page *page = malloc(sizeof *page);
	proj_desk_query q = {.limit = 20};
	const char *all[] = {"o4", "o3", "o2", "o1"};
	list(&q, page, all, 4);
	cr_assert_str_eq(page->items[1].customer_id, "cA");
	cr_assert_eq(page->items[2].summary.status, ORDER_CANCELLED);
	cr_assert_eq(page->items[0].summary.total_cents, 500);
	cr_assert_str_eq(page->next_cursor, "");

	q.limit = 3; /* pages */
	list(&q, page, all, 3);
	char cursor[PROJ_CURSOR_MAX];
	strcpy(cursor, page->next_cursor);
	cr_assert_neq(cursor[0], '\0');
	q.cursor = cursor;
	const char *last[] = {"o1"};
	list(&q, page, last, 1);
	cr_assert_str_eq(page->next_cursor, "");

	q = (proj_desk_query){.limit = 20, .customer_id = "cB"};
	const char *of_b[] = {"o4", "o2"};
	list(&q, page, of_b, 2);
	q.has_status = true; /* filters combine */
	q.status = ORDER_CANCELLED;
	const char *cancelled_b[] = {"o2"};
	list(&q, page, cancelled_b, 1);

	q = (proj_desk_query){.limit = 20,
	                      .has_since = true,
	                      .since_ms = T0 + 2000,
	                      .has_until = true,
	                      .until_ms = T0 + 3000};
	const char *window[] = {"o3", "o2"};
	list(&q, page, window, 2);

	q = (proj_desk_query){.limit = 1, .has_status = true, .status = ORDER_PENDING};
	const char *newest_pending[] = {"o4"};
	list(&q, page, newest_pending, 1);
	strcpy(cursor, page->next_cursor);
	q.cursor = cursor;
	const char *next_pending[] = {"o3"};
	list(&q, page, next_pending, 1);

	q = (proj_desk_query){.limit = 20, .cursor = "not-a-cursor"};
	cr_assert_eq(proj_desk_orders(desk, &q, page), ORN_EINVAL);
	q = (proj_desk_query){.limit = 0};
	cr_assert_eq(proj_desk_orders(desk, &q, page), ORN_EINVAL);
	free(page);
}

Test(proj_desk, the_story_has_the_events_replay_order_selects_in_stream_order)
{
	uint64_t s1 = apply_order("o1", placed("cA", T0));
	uint64_t s2 =
	        apply("orion.evt.stock.p1", "StockReserved", T0 + 10, "req-9", "o1:reserve:p1", NULL, 0);
	apply("orion.evt.stock.p1", "StockReserved", T0 + 11, "req-9", "o10:reserve:p1", NULL, 0);
	uint64_t s4 = apply("orion.evt.cart.cA", "CartCheckedOut", T0 + 12, "o1", "cmd-7", NULL, 0);
	apply("orion.evt.cart.cA", "ItemAdded", T0 + 13, "req-3", "cmd-8", NULL, 0);
	apply("orion.evt.payment.x1", "PaymentSucceeded", T0 + 14, "req-4", "o2:pay", NULL,
	      0); /* unknown order */
	uint64_t s7 = apply_order("o1", cancelled(T0 + 20));
	proj_desk_event events[8];
	size_t count = 0;
	bool more = true;
	cr_assert_eq(proj_desk_timeline(desk, "o1", events, 8, &count, &more), ORN_OK);
	cr_assert_eq(count, 4);
	cr_assert_not(more);
	uint64_t want[] = {s1, s2, s4, s7};
	for (size_t i = 0; i < count; i++)
		cr_assert_eq(events[i].seq, want[i], "event %zu", i);
	cr_assert_str_eq(events[0].aggregate, "order");
	cr_assert_str_eq(events[0].type, "OrderPlaced");
	cr_assert_str_eq(events[1].aggregate, "stock");
	cr_assert_str_eq(events[1].aggregate_id, "p1");
	cr_assert_eq(events[1].at_ms, T0 + 10);
	cr_assert_str_eq(events[2].type, "CartCheckedOut");
	cr_assert_eq(proj_desk_timeline(desk, "o1", events, 2, &count, &more), ORN_OK);
	cr_assert_eq(count, 2);
	cr_assert(more);
	cr_assert_eq(proj_desk_timeline(desk, "o9", events, 8, &count, &more), ORN_OK);
	cr_assert_eq(count, 0);
}

/* An envelope with the given ids and an empty map payload. */
static env_envelope envelope(const char *type, const char *correlation, const char *causation)
{
	static const uint8_t empty_map[] = {0x80};
	env_envelope e = {.schema = 1, .payload = empty_map, .payload_len = sizeof empty_map};
	snprintf(e.type, sizeof e.type, "%s", type);
	snprintf(e.correlation, sizeof e.correlation, "%s", correlation);
	snprintf(e.causation, sizeof e.causation, "%s", causation);
	return e;
}

Test(proj_desk, the_story_rule_replay_order_shares)
{
	env_envelope e = envelope("X", "r", "c");
	cr_assert(proj_desk_in_story("o1", "orion.evt.order.o1", &e));
	e = envelope("X", "o1", "c");
	cr_assert(proj_desk_in_story("o1", "orion.evt.stock.p", &e));
	e = envelope("X", "r", "o1:reserve:p");
	cr_assert(proj_desk_in_story("o1", "orion.evt.stock.p", &e));
	e = envelope("X", "r", "o10:reserve");
	cr_assert_not(proj_desk_in_story("o1", "orion.evt.order.o10", &e));
	e = envelope("X", "o10", "o1x:reserve");
	cr_assert_not(proj_desk_in_story("o1", "orion.evt.stock.p", &e));
	e = envelope("X", "r", ":reserve");
	cr_assert_not(proj_desk_in_story("", "orion.evt.stock.p", &e));
	/* an order named twice is one ref with both flags */
	proj_desk_story_ref refs[PROJ_DESK_STORY_REFS];
	e = envelope("X", "o1", "o1:pay");
	cr_assert_eq(proj_desk_story_refs("orion.evt.order.o1", &e, refs), 1);
	cr_assert_eq(refs[0].by, PROJ_DESK_BY_SUBJECT | PROJ_DESK_BY_CAUSATION | PROJ_DESK_BY_CORRELATION);
}

/* A mail log event of order_id's email on orion.evt.mail.<mail id>, caused by the mail role's own command. */
static uint64_t apply_mail(const char *mail_id, const char *order_id, int64_t at)
{
	char subject[ES_SUBJECT_MAX], causation[ENV_ID_MAX];
	mail_log_event ev;
	memset(&ev, 0, sizeof ev);
	ev.kind = MAIL_LOG_DELIVERED;
	snprintf(ev.subject.order_id, sizeof ev.subject.order_id, "%s", order_id);
	strcpy(ev.subject.kind, "awaiting_confirmation");
	strcpy(ev.subject.recipient, "sealed");
	ev.attempt = 1;
	ev.at_ms = at;
	mp_writer *w = mp_writer_create();
	cr_assert_eq(mail_log_event_encode(w, &ev), ORN_OK);
	snprintf(subject, sizeof subject, "orion.evt.mail.%s", mail_id);
	snprintf(causation, sizeof causation, "%s:MarkSent:i1:1", mail_id);
	uint64_t seq = apply(subject, mail_log_event_type(ev.kind), at, "req-1", causation, mp_writer_data(w),
	                     mp_writer_size(w));
	mp_writer_destroy(w);
	return seq;
}

Test(proj_desk, the_story_has_the_hold_before_the_placement_and_the_mail_log)
{
	uint64_t hold = apply("orion.evt.holds.cA", "OrderOpened", T0, "req-1", "o1:hold", NULL, 0);
	apply("orion.evt.cart.cA", "ItemAdded", T0 + 1, "o1", "cmd-1", NULL, 0); /* o1 is no order yet */
	uint64_t placed_at = apply_order("o1", placed("cA", T0 + 2));
	uint64_t mail = apply_mail("m0123", "o1", T0 + 3);
	apply_mail("m0456", "o2", T0 + 4); /* another order's email */
	proj_desk_event events[8];
	size_t count = 0;
	bool more = false;
	cr_assert_eq(proj_desk_timeline(desk, "o1", events, 8, &count, &more), ORN_OK);
	cr_assert_eq(count, 3);
	cr_assert_eq(events[0].seq, hold);
	cr_assert_str_eq(events[0].aggregate, "holds");
	cr_assert_eq(events[1].seq, placed_at);
	cr_assert_eq(events[2].seq, mail);
	cr_assert_str_eq(events[2].aggregate, "mail");
	cr_assert_str_eq(events[2].aggregate_id, "m0123");
	cr_assert_eq(proj_desk_timeline(desk, "m0123", events, 8, &count, &more), ORN_OK);
	cr_assert_eq(count, 0, "a mail log's own command ids name no story");
}

Test(proj_desk, lists_accounts_newest_first)
{
	apply("orion.evt.user.uk1", USER_EV_REGISTERED, T0 + 1, "r", "c", NULL, 0);
	apply("orion.evt.user.uk2", USER_EV_REGISTERED, T0 + 2, "r", "c", NULL, 0);
	apply("orion.evt.user.uk1", USER_EV_ROLE_CHANGED, T0 + 3, "r", "c", NULL, 0);
	apply("orion.evt.user.uk3", USER_EV_REGISTERED, T0 + 4, "r", "c", NULL, 0);
	proj_desk_accounts_page *page = malloc(sizeof *page);
	cr_assert_eq(proj_desk_accounts(desk, 2, NULL, page), ORN_OK);
	cr_assert_eq(page->count, 2);
	cr_assert_str_eq(page->items[0].key, "uk3");
	cr_assert_str_eq(page->items[1].key, "uk2");
	char cursor[PROJ_CURSOR_MAX];
	strcpy(cursor, page->next_cursor);
	cr_assert_eq(proj_desk_accounts(desk, 2, cursor, page), ORN_OK);
	cr_assert_eq(page->count, 1);
	cr_assert_str_eq(page->items[0].key, "uk1");
	cr_assert_eq(page->items[0].created_at_ms, T0 + 1, "registration time, not a later event's");
	cr_assert_str_eq(page->next_cursor, "");
	int64_t created = 0;
	cr_assert_eq(proj_desk_account_created(desk, "uk2", &created), ORN_OK);
	cr_assert_eq(created, T0 + 2);
	cr_assert_eq(proj_desk_account_created(desk, "uk9", &created), ORN_ENOTFOUND);
	free(page);
}
