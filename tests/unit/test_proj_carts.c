/* test_proj_carts.c — the carts read model (projections/carts.c) without
 * NATS: cart events are encoded and applied through the model's projection
 * definition in write transactions of a real LMDB environment, as the
 * projector does. Given cart events, when a customer's cart is read, then it
 * equals the aggregate's state (cart_evolve). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cart.h"
#include "carts.h"
#include "failalloc.h"
#include "proj_internal.h"

static char dir[64];
static proj_env *env;
static proj_carts *carts;

static void rmrf(const char *path)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	cr_assert_eq(system(cmd), 0);
}

static void setup(void)
{
	proj_env_options o;
	snprintf(dir, sizeof dir, "/tmp/orion-projcarts-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = 1 << 20;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_carts_create(env, &carts), ORN_OK);
}

static void teardown(void)
{
	proj_carts_destroy(carts);
	carts = NULL;
	proj_env_close(env);
	env = NULL;
	rmrf(dir);
}

TestSuite(proj_carts, .init = setup, .fini = teardown, .timeout = 60);

/* ---- events ---- */

static cart_line line(const char *product_id, int64_t price, int64_t quantity)
{
	cart_line l = {.unit_price_cents = price, .quantity = quantity};
	snprintf(l.product_id, sizeof l.product_id, "%s", product_id);
	snprintf(l.name, sizeof l.name, "Item %s", product_id);
	return l;
}

/* ItemAdded: the line's quantity after is `after`, `added` of them by this event. */
static cart_event added(const char *product_id, int64_t price, int64_t after, int64_t add)
{
	cart_event e = {.kind = CART_ITEM_ADDED, .line = line(product_id, price, after), .added = add};
	strcpy(e.currency, "EUR");
	return e;
}

static cart_event changed(const char *product_id, int64_t quantity)
{
	return (cart_event){.kind = CART_QUANTITY_CHANGED, .line = line(product_id, 0, quantity)};
}

static cart_event removed(const char *product_id)
{
	return (cart_event){.kind = CART_ITEM_REMOVED, .line = line(product_id, 0, 0)};
}

static cart_event cleared(void)
{
	return (cart_event){.kind = CART_CLEARED};
}

/* CartCheckedOut of order_id that took `quantity` of product_id out of the cart. */
static cart_event checked_out(const char *order_id, const char *product_id, int64_t quantity)
{
	cart_event e = {.kind = CART_CHECKED_OUT_EVENT, .checkout_count = 1};
	snprintf(e.order_id, sizeof e.order_id, "%s", order_id);
	snprintf(e.checkout[0].product_id, sizeof e.checkout[0].product_id, "%s", product_id);
	e.checkout[0].quantity = quantity;
	return e;
}

/* The CartCheckedOut the aggregate emits on a cart in state for CheckedOut
 * of order_id with the order's lines. */
static cart_event decided_checkout(const cart_state *state, const char *order_id,
                                   const cart_checkout_line *lines, size_t count)
{
	cart_command c = {.kind = CART_CHECKED_OUT, .checkout_count = count};
	cart_events out;
	snprintf(c.order_id, sizeof c.order_id, "%s", order_id);
	memcpy(c.checkout, lines, count * sizeof lines[0]);
	cr_assert_eq(cart_decide(state, &c, &out), CART_OK);
	cr_assert_eq(out.count, 1);
	return out.items[0];
}

/* ---- applying ---- */

typedef struct raw_event {
	const char *subject;
	uint64_t seq;
	const char *type;
	const uint8_t *payload;
	size_t len;
} raw_event;

static orn_rc apply_raw_cb(proj_txn *t, void *closure)
{
	const raw_event *r = closure;
	const proj_def *def = proj_carts_def(carts);
	env_envelope e;
	memset(&e, 0, sizeof e);
	snprintf(e.type, sizeof e.type, "%s", r->type);
	e.schema = 1;
	e.payload = r->payload;
	e.payload_len = r->len;
	return def->apply(def->self, t, r->seq, r->subject, &e);
}

static orn_rc apply_raw(const char *subject, uint64_t seq, const char *type, const void *payload, size_t len)
{
	raw_event r = {subject, seq, type, payload, len};
	return proj_env_write(env, apply_raw_cb, &r);
}

/* Applies ev to customer's cart at seq; the aggregate's own state, if given, follows it. */
static void apply_at(const char *customer, uint64_t seq, cart_event ev, cart_state *expected)
{
	char subject[ES_SUBJECT_MAX];
	mp_writer *w = mp_writer_create();
	cr_assert_not_null(w);
	cr_assert_eq(cart_event_encode(w, &ev), ORN_OK);
	snprintf(subject, sizeof subject, "orion.evt.cart.%s", customer);
	cr_assert_eq(apply_raw(subject, seq, cart_event_type(ev.kind), mp_writer_data(w), mp_writer_size(w)),
	             ORN_OK);
	mp_writer_destroy(w);
	if (expected != NULL)
		cart_evolve(expected, &ev);
}

static proj_cart *get(const char *customer)
{
	proj_cart *c = malloc(sizeof *c);
	cr_assert_not_null(c);
	cr_assert_eq(proj_carts_get(carts, customer, c), ORN_OK, "%s", customer);
	cr_assert_str_eq(c->customer_id, customer);
	return c;
}

/* The model's cart of customer equals expected, at version. */
static void expect_cart(const char *customer, const cart_state *expected, uint64_t version)
{
	proj_cart *c = get(customer);
	cr_assert_eq(c->version, version);
	cr_assert_eq(c->state.line_count, expected->line_count);
	cr_assert_str_eq(c->state.currency, expected->currency);
	cr_assert_str_eq(c->state.last_order_id, expected->last_order_id);
	for (size_t i = 0; i < expected->line_count; i++) {
		cr_assert_str_eq(c->state.lines[i].product_id, expected->lines[i].product_id, "line %zu", i);
		cr_assert_str_eq(c->state.lines[i].name, expected->lines[i].name);
		cr_assert_eq(c->state.lines[i].unit_price_cents, expected->lines[i].unit_price_cents);
		cr_assert_eq(c->state.lines[i].quantity, expected->lines[i].quantity);
	}
	free(c);
}

/* ---- tests ---- */

Test(proj_carts, add_change_remove_clear_and_checkout)
{
	cart_state expected;
	cart_state_init(&expected);

	apply_at("u1", 4, added("p1", 250, 2, 2), &expected);
	apply_at("u1", 6, added("p2", 1000, 1, 1), &expected);
	expect_cart("u1", &expected, 6);
	proj_cart *c = get("u1");
	cr_assert_eq(c->state.line_count, 2);
	cr_assert_str_eq(c->state.lines[0].product_id, "p1");
	cr_assert_eq(c->state.lines[0].quantity, 2);
	cr_assert_str_eq(c->state.currency, "EUR");
	int64_t total = 0;
	cr_assert(cart_total(&c->state, &total));
	cr_assert_eq(total, 1500);
	free(c);

	apply_at("u1", 7, added("p1", 300, 5, 3), &expected); /* more of p1, at a new price */
	apply_at("u1", 8, changed("p2", 4), &expected);
	expect_cart("u1", &expected, 8);
	c = get("u1");
	cr_assert_eq(c->state.lines[0].quantity, 5);
	cr_assert_eq(c->state.lines[0].unit_price_cents, 300);
	cr_assert_eq(c->state.lines[1].quantity, 4);
	free(c);

	apply_at("u1", 9, removed("p1"), &expected);
	expect_cart("u1", &expected, 9);
	c = get("u1");
	cr_assert_eq(c->state.line_count, 1);
	cr_assert_str_eq(c->state.lines[0].product_id, "p2");
	free(c);

	apply_at("u1", 10, cleared(), &expected);
	expect_cart("u1", &expected, 10);
	c = get("u1");
	cr_assert_eq(c->state.line_count, 0);
	cr_assert_str_eq(c->state.currency, "");
	free(c);

	apply_at("u1", 11, added("p3", 100, 1, 1), &expected);
	apply_at("u1", 12, checked_out("order-1", "p3", 1), &expected);
	expect_cart("u1", &expected, 12);
	c = get("u1");
	cr_assert_eq(c->state.line_count, 0, "the checkout took the cart's only line");
	cr_assert_str_eq(c->state.currency, "");
	cr_assert_str_eq(c->state.last_order_id, "order-1");
	free(c);

	apply_at("u1", 13, added("p4", 100, 1, 1), &expected);
	expect_cart("u1", &expected, 13);
}

Test(proj_carts, a_full_cart_is_kept_whole)
{
	cart_state expected;
	cart_state_init(&expected);
	for (int i = 0; i < CART_LINES_MAX + 1; i++) { /* the 51st line changes nothing */
		char id[16];
		snprintf(id, sizeof id, "p%02d", i);
		apply_at("u1", 1 + (uint64_t)i, added(id, 10000000000LL, 999, 999), &expected);
	}
	cr_assert_eq(expected.line_count, CART_LINES_MAX);
	expect_cart("u1", &expected, CART_LINES_MAX + 1);
}

Test(proj_carts, redelivered_and_old_events_change_nothing)
{
	cart_state expected;
	cart_state_init(&expected);
	apply_at("u1", 5, added("p1", 100, 1, 1), &expected);
	apply_at("u1", 6, checked_out("order-1", "p1", 1), &expected);
	apply_at("u1", 7, added("p2", 100, 2, 2), &expected);
	apply_at("u1", 7, added("p2", 100, 2, 2), NULL);          /* redelivered */
	apply_at("u1", 6, checked_out("order-1", "p2", 1), NULL); /* old: would take p2 */
	apply_at("u1", 3, cleared(), NULL);
	expect_cart("u1", &expected, 7);
	proj_cart *c = get("u1");
	cr_assert_eq(c->state.line_count, 1);
	cr_assert_eq(c->state.lines[0].quantity, 2);
	free(c);
}

Test(proj_carts, a_checkout_removes_only_the_ordered_lines)
{
	static const cart_checkout_line order_lines[] = {{"p1", 2}, {"p2", 3}, {"p3", 1}};
	cart_state expected;
	cart_state_init(&expected);
	/* placed from p1 x2, p2 x3, p3 x1; then the customer goes on shopping */
	apply_at("u1", 1, added("p1", 100, 2, 2), &expected);
	apply_at("u1", 2, added("p2", 200, 3, 3), &expected);
	apply_at("u1", 3, added("p3", 300, 1, 1), &expected);
	apply_at("u1", 4, added("p4", 400, 1, 1), &expected); /* a new item */
	apply_at("u1", 5, added("p1", 100, 5, 3), &expected); /* more of p1 */
	apply_at("u1", 6, changed("p2", 1), &expected);       /* less of p2 */
	apply_at("u1", 7, removed("p3"), &expected);          /* p3 is gone */
	apply_at("u1", 8, decided_checkout(&expected, "order-1", order_lines, 3), &expected);
	expect_cart("u1", &expected, 8);
	proj_cart *c = get("u1");
	cr_assert_eq(c->state.line_count, 2);
	cr_assert_str_eq(c->state.lines[0].product_id, "p1");
	cr_assert_eq(c->state.lines[0].quantity, 3);
	cr_assert_str_eq(c->state.lines[1].product_id, "p4");
	cr_assert_eq(c->state.lines[1].quantity, 1);
	cr_assert_str_eq(c->state.currency, "EUR");
	cr_assert_str_eq(c->state.last_order_id, "order-1");
	free(c);
	/* the same commit delivered again is not folded twice */
	apply_at("u1", 8, checked_out("order-1", "p1", 2), NULL);
	expect_cart("u1", &expected, 8);
}

Test(proj_carts, events_that_do_not_fit_move_only_the_version)
{
	cart_state expected;
	cart_state_init(&expected);
	apply_at("u1", 1, added("p1", 100, 1, 1), &expected);
	apply_at("u1", 2, changed("nope", 3), &expected);
	apply_at("u1", 3, removed("nope"), &expected);
	expect_cart("u1", &expected, 3);
}

Test(proj_carts, customers_have_their_own_carts)
{
	cart_state a, b;
	cart_state_init(&a);
	cart_state_init(&b);
	apply_at("u1", 1, added("p1", 100, 1, 1), &a);
	apply_at("u2", 2, added("p2", 200, 2, 2), &b);
	apply_at("u1", 3, cleared(), &a);
	expect_cart("u1", &a, 3);
	expect_cart("u2", &b, 2);
}

Test(proj_carts, unknown_customers_and_bad_ids_are_told_apart)
{
	proj_cart c;
	cr_assert_eq(proj_carts_get(carts, "nobody", &c), ORN_ENOTFOUND);
	cr_assert_eq(proj_carts_get(carts, "a.b", &c), ORN_EINVAL);
	cr_assert_eq(proj_carts_get(carts, "", &c), ORN_EINVAL);
	cr_assert_eq(proj_carts_get(carts, NULL, &c), ORN_EINVAL);
}

Test(proj_carts, malformed_payloads_and_foreign_subjects_are_skipped)
{
	static const uint8_t garbage[] = {0xc1};
	static const uint8_t empty_map[] = {0x80};
	cart_state expected;
	cart_state_init(&expected);
	cr_assert_eq(apply_raw("orion.evt.cart.u1", 1, CART_EV_ITEM_ADDED, garbage, sizeof garbage), ORN_OK);
	cr_assert_eq(apply_raw("orion.evt.cart.u1", 2, CART_EV_CHECKED_OUT, empty_map, sizeof empty_map),
	             ORN_OK);
	cr_assert_eq(apply_raw("orion.evt.cart.u1", 3, "CartMerged", garbage, sizeof garbage), ORN_OK);
	cr_assert_eq(apply_raw("orion.evt.order.u1", 4, CART_EV_CLEARED, garbage, sizeof garbage), ORN_OK);
	cr_assert_eq(apply_raw("orion.evt.cart.u*1", 5, CART_EV_CLEARED, garbage, sizeof garbage), ORN_OK);
	/* a value decide could not have emitted: quantity 0 */
	cart_event bad = changed("p1", 0);
	mp_writer *w = mp_writer_create();
	cr_assert_eq(cart_event_encode(w, &bad), ORN_OK);
	cr_assert_eq(apply_raw("orion.evt.cart.u1", 6, CART_EV_QUANTITY_CHANGED, mp_writer_data(w),
	                       mp_writer_size(w)),
	             ORN_OK);
	mp_writer_destroy(w);
	proj_carts_stats st;
	proj_carts_stats_get(carts, &st);
	cr_assert_eq(st.undecodable, 3);
	proj_cart c;
	cr_assert_eq(proj_carts_get(carts, "u1", &c), ORN_ENOTFOUND);
	apply_at("u1", 7, added("p1", 100, 1, 1), &expected);
	expect_cart("u1", &expected, 7);
}

/* ---- unreadable records ---- */

typedef struct raw_put {
	const void *value;
	size_t len;
} raw_put;

static orn_rc put_raw(proj_txn *t, void *closure)
{
	const raw_put *p = closure;
	MDB_dbi dbi;
	orn_rc rc = proj_dbi_open(t, "carts.carts", 0, &dbi);
	return rc == ORN_OK ? proj_put(t, dbi, "u1", 2, p->value, p->len, 0) : rc;
}

Test(proj_carts, unreadable_records_are_reported_and_rebuilt_by_the_next_event)
{
	static const uint8_t records[][8] = {
	        {0xc1},                   /* not msgpack */
	        {0x92, 0x01, 0x01},       /* field count */
	        {0x93, 0x02, 0x01, 0x90}, /* format */
	        {0x93, 0x01, 0x00, 0x90}, /* version 0 */
	        {0x93, 0x01, 0x01, 0xc0}, /* snapshot */
	        {0x93, 0x01, 0x01, 0x90}, /* trailing bytes (the rest of the 8) */
	};
	static const uint8_t good[] = {0x93, 0x01, 0x05, 0x90};
	proj_cart c;
	for (size_t i = 0; i < ORN_ARRAY_LEN(records); i++) {
		raw_put p = {records[i], sizeof records[i]};
		cr_assert_eq(proj_env_write(env, put_raw, &p), ORN_OK);
		cr_assert_eq(proj_carts_get(carts, "u1", &c), ORN_EDECODE, "record %zu", i);
	}
	raw_put p = {good, sizeof good};
	cr_assert_eq(proj_env_write(env, put_raw, &p), ORN_OK);
	cr_assert_eq(proj_carts_get(carts, "u1", &c), ORN_OK);
	cr_assert_eq(c.version, 5);
	cr_assert_eq(c.state.line_count, 0);

	p = (raw_put){records[0], sizeof records[0]};
	cr_assert_eq(proj_env_write(env, put_raw, &p), ORN_OK);
	cart_state expected;
	cart_state_init(&expected);
	apply_at("u1", 9, added("p1", 100, 3, 1), &expected);
	expect_cart("u1", &expected, 9);
}

Test(proj_carts, creation_reports_allocation_failure)
{
	if (!failalloc_available())
		cr_skip_test("allocation failure injection is not available in this build");
	proj_carts *m = (proj_carts *)1;
	for (long nth = 1; nth <= 2; nth++) {
		failalloc_nth(nth);
		orn_rc rc = proj_carts_create(env, &m);
		failalloc_off();
		cr_assert_eq(rc, ORN_ENOMEM, "allocation %ld", nth);
		cr_assert_null(m);
	}
}
