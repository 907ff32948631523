/* test_cart.c — unit tests of the cart aggregate (actors/cart.c).
 *
 * Given-when-then: given events applied with cart_evolve, when a command is
 * decided, then the expected events or rejection. Further tests cover the
 * totals, the payload codecs, snapshot/restore and the kind table driven
 * through an act_decision. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cart.h"
#include "failalloc.h"

static cart_state state;
static cart_events out;
static cart_verdict verdict;
static mp_writer *writer;

static void setup(void)
{
	cart_state_init(&state);
	writer = mp_writer_create();
	cr_assert_not_null(writer);
}

static void teardown(void)
{
	mp_writer_destroy(writer);
}

TestSuite(cart, .init = setup, .fini = teardown);

static cart_line line(const char *product_id, int64_t price, int64_t quantity)
{
	cart_line l = {.unit_price_cents = price, .quantity = quantity};

	snprintf(l.product_id, sizeof l.product_id, "%s", product_id);
	snprintf(l.name, sizeof l.name, "Item %s", product_id);
	return l;
}

static cart_command add(const char *product_id, int64_t price, int64_t quantity, const char *currency)
{
	cart_command c = {.kind = CART_ADD_ITEM, .line = line(product_id, price, quantity)};

	snprintf(c.currency, sizeof c.currency, "%s", currency);
	return c;
}

static cart_command set(const char *product_id, int64_t quantity)
{
	cart_command c = {.kind = CART_SET_QUANTITY, .line = line(product_id, 0, quantity)};

	return c;
}

static cart_command remove_item(const char *product_id)
{
	return (cart_command){.kind = CART_REMOVE_ITEM, .line = line(product_id, 0, 0)};
}

static cart_command checkout_of(const char *order_id, const cart_checkout_line *lines, size_t count)
{
	cart_command c = {.kind = CART_CHECKED_OUT, .checkout_count = count};

	snprintf(c.order_id, sizeof c.order_id, "%s", order_id);
	memcpy(c.checkout, lines, count * sizeof lines[0]);
	return c;
}

/* CheckedOut of order_id with the order's lines: checked_out("o1", {"p1", 2}, {"p2", 1}). */
#define checked_out(order_id, ...)                                                                           \
	checkout_of(order_id, (const cart_checkout_line[]){__VA_ARGS__},                                     \
	            sizeof((const cart_checkout_line[]){__VA_ARGS__}) / sizeof(cart_checkout_line))

/* Checkout lines as text, "p1:2 p2:1". */
static void format_checkout(const cart_checkout_line *lines, size_t count, char *text, size_t cap)
{
	size_t used = 0;

	text[0] = '\0';
	for (size_t i = 0; i < count && used < cap; i++)
		used += (size_t)snprintf(text + used, cap - used, "%s%s:%lld", i > 0 ? " " : "",
		                         lines[i].product_id, (long long)lines[i].quantity);
}

/* The cart's lines as text, "p1:2 p2:1". */
static void format_cart(const cart_state *s, char *text, size_t cap)
{
	size_t used = 0;

	text[0] = '\0';
	for (size_t i = 0; i < s->line_count && used < cap; i++)
		used += (size_t)snprintf(text + used, cap - used, "%s%s:%lld", i > 0 ? " " : "",
		                         s->lines[i].product_id, (long long)s->lines[i].quantity);
}

static void when(cart_command c)
{
	verdict = cart_decide(&state, &c, &out);
}

static void and_applied(void)
{
	for (size_t i = 0; i < out.count; i++)
		cart_evolve(&state, &out.items[i]);
}

/* Decides c, expects acceptance, applies the events. */
static void given(cart_command c)
{
	when(c);
	cr_assert_eq(verdict, CART_OK, "verdict %s", cart_verdict_code(verdict));
	and_applied();
}

static void then_event(cart_event_kind kind)
{
	cr_assert_eq(verdict, CART_OK, "verdict %s", cart_verdict_code(verdict));
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, kind);
}

static void then_nothing(void)
{
	cr_assert_eq(verdict, CART_OK, "verdict %s", cart_verdict_code(verdict));
	cr_assert_eq(out.count, 0);
}

/* Then one CartCheckedOut of order_id that removed exactly `removed` ("p1:2 p2:1"). */
static void then_checked_out(const char *order_id, const char *removed)
{
	char text[4096];

	then_event(CART_CHECKED_OUT_EVENT);
	cr_assert_str_eq(out.items[0].order_id, order_id);
	format_checkout(out.items[0].checkout, out.items[0].checkout_count, text, sizeof text);
	cr_assert_str_eq(text, removed);
}

/* The cart holds exactly `lines` ("p1:2 p2:1", in line order) in currency. */
static void then_cart(const char *lines, const char *currency)
{
	char text[4096];

	format_cart(&state, text, sizeof text);
	cr_assert_str_eq(text, lines);
	cr_assert_str_eq(state.currency, currency);
}

static void then_rejected(cart_verdict expected)
{
	cr_assert_eq(verdict, expected, "verdict %s, expected %s", cart_verdict_code(verdict),
	             cart_verdict_code(expected));
	cr_assert_eq(out.count, 0);
}

/* ---- add ---- */

Test(cart, add_to_an_empty_cart_adds_a_line_and_sets_the_currency)
{
	when(add("p1", 250, 2, "EUR"));
	then_event(CART_ITEM_ADDED);
	cr_assert_str_eq(out.items[0].line.product_id, "p1");
	cr_assert_eq(out.items[0].line.quantity, 2);
	cr_assert_eq(out.items[0].added, 2);
	and_applied();
	cr_assert_eq(state.line_count, 1);
	cr_assert_str_eq(state.currency, "EUR");
	cr_assert_str_eq(state.lines[0].name, "Item p1");
}

Test(cart, add_to_an_existing_line_sums_and_refreshes_the_snapshot)
{
	given(add("p1", 250, 2, "EUR"));
	when(add("p1", 300, 3, "EUR"));
	then_event(CART_ITEM_ADDED);
	cr_assert_eq(out.items[0].line.quantity, 5);
	cr_assert_eq(out.items[0].added, 3);
	and_applied();
	cr_assert_eq(state.line_count, 1);
	cr_assert_eq(state.lines[0].quantity, 5);
	cr_assert_eq(state.lines[0].unit_price_cents, 300);
}

Test(cart, a_line_stays_within_999)
{
	given(add("p1", 1, 999, "EUR"));
	when(add("p1", 1, 1, "EUR"));
	then_rejected(CART_REJ_INVALID);
	when(add("p2", 1, 1000, "EUR"));
	then_rejected(CART_REJ_INVALID);
	when(add("p2", 1, 0, "EUR"));
	then_rejected(CART_REJ_INVALID);
}

Test(cart, add_checks_every_field)
{
	cart_command c;

	when(add("bad id", 1, 1, "EUR"));
	then_rejected(CART_REJ_INVALID);
	when(add("p1", -1, 1, "EUR"));
	then_rejected(CART_REJ_INVALID);
	when(add("p1", CART_PRICE_MAX + 1, 1, "EUR"));
	then_rejected(CART_REJ_INVALID);
	when(add("p1", CART_PRICE_MAX, 1, "EUR"));
	then_event(CART_ITEM_ADDED);
	when(add("p1", 1, 1, "eur"));
	then_rejected(CART_REJ_INVALID);
	when(add("p1", 1, 1, "EU"));
	then_rejected(CART_REJ_INVALID);
	c = add("p1", 1, 1, "EUR");
	c.line.name[0] = '\0';
	when(c);
	then_rejected(CART_REJ_INVALID);
	strcpy(c.line.name, "tab\there");
	when(c);
	then_rejected(CART_REJ_INVALID);
	memset(c.line.product_id, 'a', sizeof c.line.product_id);
	strcpy(c.line.name, "ok");
	when(c);
	then_rejected(CART_REJ_INVALID);
}

Test(cart, one_currency_per_cart)
{
	given(add("p1", 1, 1, "EUR"));
	when(add("p2", 1, 1, "USD"));
	then_rejected(CART_REJ_CURRENCY_MISMATCH);
	given(remove_item("p1"));
	cr_assert_str_eq(state.currency, "");
	when(add("p2", 1, 1, "USD"));
	then_event(CART_ITEM_ADDED);
}

Test(cart, at_most_50_lines)
{
	char id[16];

	for (int i = 0; i < CART_LINES_MAX; i++) {
		snprintf(id, sizeof id, "p%d", i);
		given(add(id, 10, 1, "EUR"));
	}
	cr_assert_eq(state.line_count, CART_LINES_MAX);
	when(add("p50", 10, 1, "EUR"));
	then_rejected(CART_REJ_TOO_MANY_LINES);
	when(add("p7", 10, 1, "EUR")); /* an existing line still grows */
	then_event(CART_ITEM_ADDED);
	/* evolve ignores a 51st line */
	cart_evolve(&state, &(cart_event){.kind = CART_ITEM_ADDED, .line = line("p99", 1, 1)});
	cr_assert_eq(state.line_count, CART_LINES_MAX);
	cr_assert_null(cart_find_line(&state, "p99"));
}

/* ---- set quantity, remove, clear ---- */

Test(cart, set_quantity_changes_the_line)
{
	given(add("p1", 100, 2, "EUR"));
	when(set("p1", 7));
	then_event(CART_QUANTITY_CHANGED);
	and_applied();
	cr_assert_eq(cart_find_line(&state, "p1")->quantity, 7);
	when(set("p1", 7));
	then_nothing();
}

Test(cart, set_quantity_zero_removes_the_line)
{
	given(add("p1", 100, 2, "EUR"));
	given(add("p2", 100, 2, "EUR"));
	when(set("p1", 0));
	then_event(CART_ITEM_REMOVED);
	and_applied();
	cr_assert_eq(state.line_count, 1);
	cr_assert_str_eq(state.lines[0].product_id, "p2");
	cr_assert_str_eq(state.currency, "EUR");
}

Test(cart, set_quantity_rejections)
{
	given(add("p1", 100, 2, "EUR"));
	when(set("p2", 3));
	then_rejected(CART_REJ_NOT_FOUND);
	when(set("p1", 1000));
	then_rejected(CART_REJ_INVALID);
	when(set("p1", -1));
	then_rejected(CART_REJ_INVALID);
	when(set("", 1));
	then_rejected(CART_REJ_INVALID);
}

Test(cart, remove_of_an_absent_line_is_a_no_op)
{
	when(remove_item("p1"));
	then_nothing();
	when(remove_item("bad/id"));
	then_rejected(CART_REJ_INVALID);
	given(add("p1", 1, 1, "EUR"));
	when(remove_item("p1"));
	then_event(CART_ITEM_REMOVED);
}

Test(cart, clear_empties_the_cart)
{
	when((cart_command){.kind = CART_CLEAR});
	then_nothing();
	given(add("p1", 1, 1, "EUR"));
	given(add("p2", 1, 1, "EUR"));
	when((cart_command){.kind = CART_CLEAR});
	then_event(CART_CLEARED);
	and_applied();
	cr_assert_eq(state.line_count, 0);
	cr_assert_str_eq(state.currency, "");
}

Test(cart, evolve_ignores_changes_of_absent_lines)
{
	cart_evolve(&state, &(cart_event){.kind = CART_QUANTITY_CHANGED, .line = line("p1", 1, 3)});
	cart_evolve(&state, &(cart_event){.kind = CART_ITEM_REMOVED, .line = line("p1", 1, 3)});
	cr_assert_eq(state.line_count, 0);
}

Test(cart, an_unknown_command_kind_is_invalid)
{
	when((cart_command){.kind = (cart_command_kind)9});
	then_rejected(CART_REJ_INVALID);
}

/* ---- checkout ---- */

Test(cart, checked_out_takes_out_the_ordered_lines_and_remembers_the_order)
{
	given(add("p1", 1, 2, "EUR"));
	given(add("p2", 1, 1, "EUR"));
	when(checked_out("o1", {"p1", 2}, {"p2", 1}));
	then_checked_out("o1", "p1:2 p2:1");
	and_applied();
	then_cart("", ""); /* an emptied cart loses its currency, as on clear */
	cr_assert_str_eq(state.last_order_id, "o1");
}

Test(cart, an_item_added_after_the_order_was_placed_survives)
{
	given(add("p1", 1, 2, "EUR"));
	/* the order takes p1 x2; the customer goes on shopping before CheckedOut */
	given(add("p2", 1, 1, "EUR"));
	when(checked_out("o1", {"p1", 2}));
	then_checked_out("o1", "p1:2");
	and_applied();
	then_cart("p2:1", "EUR");
	cr_assert_str_eq(state.last_order_id, "o1");
}

Test(cart, a_line_grown_since_the_order_keeps_the_difference)
{
	given(add("p1", 1, 2, "EUR"));
	given(add("p1", 1, 3, "EUR"));
	when(checked_out("o1", {"p1", 2}));
	then_checked_out("o1", "p1:2");
	and_applied();
	then_cart("p1:3", "EUR");
}

Test(cart, a_line_reduced_below_the_ordered_quantity_is_removed)
{
	given(add("p1", 1, 5, "EUR"));
	given(add("p2", 1, 1, "EUR"));
	given(set("p1", 2));
	when(checked_out("o1", {"p1", 5}));
	then_checked_out("o1", "p1:2"); /* the event records what was removed */
	and_applied();
	then_cart("p2:1", "EUR");
}

Test(cart, products_no_longer_in_the_cart_are_skipped)
{
	given(add("p1", 1, 1, "EUR"));
	given(add("p2", 1, 1, "EUR"));
	given(remove_item("p1"));
	when(checked_out("o1", {"p1", 1}, {"p2", 1}));
	then_checked_out("o1", "p2:1");
	and_applied();
	then_cart("", "");
	/* nothing left to take: the order is still remembered, the cart kept */
	given(add("p3", 1, 4, "USD"));
	when(checked_out("o2", {"p1", 1}));
	then_checked_out("o2", "");
	and_applied();
	then_cart("p3:4", "USD");
	cr_assert_str_eq(state.last_order_id, "o2");
}

Test(cart, checked_out_is_idempotent_by_order_id)
{
	given(add("p1", 1, 1, "EUR"));
	given(checked_out("o1", {"p1", 1}));
	given(add("p1", 1, 1, "EUR"));
	given(add("p2", 1, 1, "EUR"));
	when(checked_out("o1", {"p1", 1})); /* redelivered */
	then_nothing();
	then_cart("p1:1 p2:1", "EUR");
	when(checked_out("o2", {"p2", 1}));
	then_checked_out("o2", "p2:1");
}

/* The saga's sweeper may send an order's CheckedOut again after the
 * customer placed (and checked out) other orders: it must not take out what
 * was added since. */
Test(cart, an_earlier_order_sent_again_after_a_later_one_changes_nothing)
{
	given(add("p1", 1, 1, "EUR"));
	given(checked_out("o1", {"p1", 1}));
	given(add("p2", 1, 1, "EUR"));
	given(checked_out("o2", {"p2", 1}));
	given(add("p1", 1, 3, "EUR"));
	when(checked_out("o1", {"p1", 1}));
	then_nothing();
	then_cart("p1:3", "EUR");
	cr_assert_str_eq(state.last_order_id, "o2", "the last order stays the last");
	cr_assert_eq(state.earlier_count, 1);
	cr_assert_str_eq(state.earlier_orders[0], "o1");
}

/* Given n checkouts o0..o(n-1) of an empty cart. */
static void given_checkouts(int n)
{
	char id[16];
	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof id, "o%d", i);
		given(checked_out(id, {"p1", 1}));
	}
}

Test(cart, it_remembers_the_last_orders_up_to_its_bound_and_forgets_the_oldest)
{
	given_checkouts(CART_ORDERS_REMEMBERED);
	cr_assert_str_eq(state.last_order_id, "o15");
	cr_assert_eq(state.earlier_count, CART_ORDERS_REMEMBERED - 1);
	cr_assert_str_eq(state.earlier_orders[0], "o0", "oldest first");
	given(add("p1", 1, 2, "EUR"));
	when(checked_out("o0", {"p1", 1}));
	then_nothing();
	given_checkouts(CART_ORDERS_REMEMBERED + 1); /* o0 again is a no-op; o16 pushes o0 out */
	given(checked_out("o16", {"p1", 1}));
	cr_assert_str_eq(state.earlier_orders[0], "o1");
	cr_assert_str_eq(state.last_order_id, "o16");
	/* past the bound an order is a new one again: documented, and a customer
	 * does not place 16 orders while one of them waits to be swept */
	when(checked_out("o0", {"p1", 1}));
	then_checked_out("o0", "p1:1");
}

/* CheckedOut of order_id placed from cart version placed_from. */
static cart_command placed_checkout(const char *order_id, int64_t placed_from, const char *product_id,
                                    int64_t quantity)
{
	cart_checkout_line line = {.quantity = quantity};
	snprintf(line.product_id, sizeof line.product_id, "%s", product_id);
	cart_command c = checkout_of(order_id, &line, 1);
	c.placed_from = placed_from;
	return c;
}

Test(cart, a_checkout_sent_again_never_takes_what_was_added_later_however_many_orders_came_since)
{
	char id[16];
	given(add("p1", 1, 2, "EUR"));
	when(placed_checkout("o-first", 10, "p1", 2));
	then_checked_out("o-first", "p1:2");
	cr_assert_eq(out.items[0].placed_from, 10);
	given(placed_checkout("o-first", 10, "p1", 2));
	cr_assert_eq(state.checked_out_through, 10);
	/* more orders than the cart remembers by id, each from a later version */
	for (int i = 0; i < CART_ORDERS_REMEMBERED + 2; i++) {
		snprintf(id, sizeof id, "o%d", i);
		given(placed_checkout(id, 20 + i, "p9", 1));
	}
	given(add("p1", 1, 5, "EUR"));
	/* the sweeper redoes the first order's step: nothing is taken */
	when(placed_checkout("o-first", 10, "p1", 2));
	then_nothing();
	then_cart("p1:5", "EUR");
	/* an order from a version after the watermark is checked out */
	when(placed_checkout("o-next", 100, "p1", 2));
	then_checked_out("o-next", "p1:2");
}

Test(cart, the_watermark_survives_a_snapshot)
{
	mp_writer *w = mp_writer_create();
	cart_state *copy = calloc(1, sizeof *copy);
	given(add("p1", 1, 2, "EUR"));
	given(placed_checkout("o1", 7, "p1", 1));
	given(placed_checkout("o2", 9, "p1", 1));
	cr_assert_eq(cart_kind.snapshot(&state, w), ORN_OK);
	cart_kind.init(copy);
	cr_assert_eq(cart_kind.restore(copy, mp_writer_data(w), mp_writer_size(w)), ORN_OK);
	cr_assert_eq(copy->checked_out_through, 9);
	cr_assert_str_eq(copy->last_order_id, "o2");
	free(copy);
	mp_writer_destroy(w);
}

Test(cart, evolve_remembers_each_order_once)
{
	cart_event e = {.kind = CART_CHECKED_OUT_EVENT};

	strcpy(e.order_id, "o1");
	cart_evolve(&state, &e);
	strcpy(e.order_id, "o2");
	cart_evolve(&state, &e);
	strcpy(e.order_id, "o1"); /* only a malformed stream repeats an order */
	cart_evolve(&state, &e);
	cr_assert_str_eq(state.last_order_id, "o2");
	cr_assert_eq(state.earlier_count, 1);
	e.order_id[0] = '\0';
	cart_evolve(&state, &e);
	cr_assert_str_eq(state.last_order_id, "o2", "an empty id is not an order");
}

Test(cart, checked_out_checks_every_field)
{
	cart_command c = checked_out("o1", {"p1", 1});
	char id[16];

	given(add("p1", 1, 1, "EUR"));
	when(checked_out("bad id", {"p1", 1}));
	then_rejected(CART_REJ_INVALID);
	when(checked_out("o1", {"bad/id", 1}));
	then_rejected(CART_REJ_INVALID);
	when(checked_out("o1", {"p1", 0}));
	then_rejected(CART_REJ_INVALID);
	when(checked_out("o1", {"p1", 1000}));
	then_rejected(CART_REJ_INVALID);
	when(checked_out("o1", {"p1", 1}, {"p1", 1})); /* one line per product */
	then_rejected(CART_REJ_INVALID);
	c.checkout_count = 0; /* an order has lines */
	when(c);
	then_rejected(CART_REJ_INVALID);
	for (int i = 0; i < CART_LINES_MAX; i++) {
		snprintf(id, sizeof id, "p%d", i);
		strcpy(c.checkout[i].product_id, id);
		c.checkout[i].quantity = CART_QUANTITY_MAX;
	}
	c.checkout_count = CART_LINES_MAX;
	when(c);
	then_checked_out("o1", "p1:1");
	c.checkout_count = CART_LINES_MAX + 1;
	when(c);
	then_rejected(CART_REJ_INVALID);
}

Test(cart, evolve_of_a_checkout_removes_what_it_records)
{
	cart_event e = {.kind = CART_CHECKED_OUT_EVENT, .checkout_count = 3};

	given(add("p1", 1, 3, "EUR"));
	given(add("p2", 1, 2, "EUR"));
	strcpy(e.order_id, "o1");
	e.checkout[0] = (cart_checkout_line){"p1", 1};
	e.checkout[1] = (cart_checkout_line){"absent", 1};
	e.checkout[2] = (cart_checkout_line){"p2", 5}; /* more than the line: the line goes */
	cart_evolve(&state, &e);
	then_cart("p1:2", "EUR");
	cr_assert_str_eq(state.last_order_id, "o1");
}

/* ---- totals ---- */

Test(cart, totals)
{
	int64_t total = -1;

	given(add("p1", 250, 2, "EUR"));
	given(add("p2", 1000, 3, "EUR"));
	cr_assert(cart_total(&state, &total));
	cr_assert_eq(total, 3500);
	cr_assert(cart_line_total(250, 2, &total));
	cr_assert_eq(total, 500);
	total = 7;
	cr_assert(!cart_line_total(INT64_MAX, 2, &total));
	cr_assert(!cart_line_total(-1, 2, &total));
	cr_assert(!cart_line_total(1, -2, &total));
	cr_assert_eq(total, 7);
	state.lines[0].unit_price_cents = INT64_MAX / 2;
	state.lines[0].quantity = 1;
	state.lines[1].unit_price_cents = INT64_MAX / 2;
	state.lines[1].quantity = 2;
	cr_assert(!cart_total(&state, &total));
	state.lines[1].quantity = 1;
	state.lines[0].quantity = 2;
	cr_assert(!cart_total(&state, &total));
}

Test(cart, the_largest_cart_fits)
{
	int64_t total;
	char id[16];

	for (int i = 0; i < CART_LINES_MAX; i++) {
		snprintf(id, sizeof id, "p%d", i);
		given(add(id, CART_PRICE_MAX, CART_QUANTITY_MAX, "EUR"));
	}
	cr_assert(cart_total(&state, &total));
	cr_assert_eq(total, CART_PRICE_MAX * CART_QUANTITY_MAX * CART_LINES_MAX);
}

Test(cart, codes_and_type_names_are_stable)
{
	cr_assert_str_eq(cart_verdict_code(CART_OK), "");
	cr_assert_str_eq(cart_verdict_code(CART_REJ_NOT_FOUND), "not_found");
	cr_assert_str_eq(cart_verdict_code(CART_REJ_INVALID), "invalid");
	cr_assert_str_eq(cart_verdict_code(CART_REJ_TOO_MANY_LINES), "too_many_lines");
	cr_assert_str_eq(cart_verdict_code(CART_REJ_CURRENCY_MISMATCH), "currency_mismatch");
	cr_assert_str_eq(cart_verdict_code((cart_verdict)77), "unknown");
	cr_assert_str_eq(cart_command_type(CART_CHECKED_OUT), "CheckedOut");
	cr_assert_str_eq(cart_event_type(CART_CHECKED_OUT_EVENT), "CartCheckedOut");
	cr_assert_null(cart_command_type((cart_command_kind)9));
	cr_assert_null(cart_event_type((cart_event_kind)9));
}

/* ---- codecs ---- */

static void assert_command_round_trip(cart_command c)
{
	cart_command decoded;

	mp_writer_reset(writer);
	cr_assert_eq(cart_command_encode(writer, &c), ORN_OK);
	cr_assert_eq(cart_command_decode(cart_command_type(c.kind), mp_writer_data(writer),
	                                 mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_eq(decoded.kind, c.kind);
	mp_writer_reset(writer);
	cr_assert_eq(cart_command_encode(writer, &decoded), ORN_OK);
}

Test(cart, commands_round_trip)
{
	cart_command decoded, c = add("p1", 250, 2, "EUR");

	mp_writer_reset(writer);
	cr_assert_eq(cart_command_encode(writer, &c), ORN_OK);
	cr_assert_eq(cart_command_decode(CART_CMD_ADD_ITEM, mp_writer_data(writer), mp_writer_size(writer),
	                                 &decoded),
	             ORN_OK);
	cr_assert_str_eq(decoded.line.product_id, c.line.product_id);
	cr_assert_str_eq(decoded.line.name, c.line.name);
	cr_assert_eq(decoded.line.unit_price_cents, c.line.unit_price_cents);
	cr_assert_eq(decoded.line.quantity, c.line.quantity);
	cr_assert_str_eq(decoded.currency, "EUR");
	assert_command_round_trip(set("p1", 0));
	assert_command_round_trip(remove_item("p1"));
	assert_command_round_trip((cart_command){.kind = CART_CLEAR});
	assert_command_round_trip(checked_out("o1", {"p1", 2}));
}

Test(cart, checkouts_round_trip_with_their_lines)
{
	cart_command decoded_command, c = checked_out("o1", {"p1", 2}, {"p2", 999});
	cart_event decoded_event;
	char text[256];

	mp_writer_reset(writer);
	cr_assert_eq(cart_command_encode(writer, &c), ORN_OK);
	cr_assert_eq(cart_command_decode(CART_CMD_CHECKED_OUT, mp_writer_data(writer), mp_writer_size(writer),
	                                 &decoded_command),
	             ORN_OK);
	cr_assert_str_eq(decoded_command.order_id, "o1");
	format_checkout(decoded_command.checkout, decoded_command.checkout_count, text, sizeof text);
	cr_assert_str_eq(text, "p1:2 p2:999");

	given(add("p2", 1, 3, "EUR"));
	when(c);
	then_checked_out("o1", "p2:3");
	mp_writer_reset(writer);
	cr_assert_eq(cart_event_encode(writer, &out.items[0]), ORN_OK);
	cr_assert_eq(cart_event_decode(CART_EV_CHECKED_OUT, mp_writer_data(writer), mp_writer_size(writer),
	                               &decoded_event),
	             ORN_OK);
	cr_assert_str_eq(decoded_event.order_id, "o1");
	format_checkout(decoded_event.checkout, decoded_event.checkout_count, text, sizeof text);
	cr_assert_str_eq(text, "p2:3");
}

Test(cart, events_round_trip)
{
	cart_command commands[] = {add("p1", 250, 2, "EUR"), set("p1", 3), set("p1", 0)};
	cart_event decoded;

	given(add("p1", 250, 2, "EUR"));
	for (size_t i = 0; i < ORN_ARRAY_LEN(commands); i++) {
		when(commands[i]);
		mp_writer_reset(writer);
		cr_assert_eq(cart_event_encode(writer, &out.items[0]), ORN_OK);
		cr_assert_eq(cart_event_decode(cart_event_type(out.items[0].kind), mp_writer_data(writer),
		                               mp_writer_size(writer), &decoded),
		             ORN_OK);
		cr_assert_eq(decoded.kind, out.items[0].kind);
		cr_assert_str_eq(decoded.line.product_id, out.items[0].line.product_id);
		cr_assert_eq(decoded.line.quantity, out.items[0].line.quantity);
		cr_assert_eq(decoded.added, out.items[0].added);
	}
	when((cart_command){.kind = CART_CLEAR});
	mp_writer_reset(writer);
	cr_assert_eq(cart_event_encode(writer, &out.items[0]), ORN_OK);
	cr_assert_eq(
	        cart_event_decode(CART_EV_CLEARED, mp_writer_data(writer), mp_writer_size(writer), &decoded),
	        ORN_OK);
	when(checked_out("o1", {"p1", 1}));
	mp_writer_reset(writer);
	cr_assert_eq(cart_event_encode(writer, &out.items[0]), ORN_OK);
	cr_assert_eq(cart_event_decode(CART_EV_CHECKED_OUT, mp_writer_data(writer), mp_writer_size(writer),
	                               &decoded),
	             ORN_OK);
	cr_assert_str_eq(decoded.order_id, "o1");
}

Test(cart, encoders_reject_unknown_kinds_and_unterminated_strings)
{
	cart_command c = add("p1", 1, 1, "EUR");
	cart_event e = {.kind = CART_ITEM_REMOVED};

	cr_assert_eq(cart_command_encode(writer, &(cart_command){.kind = (cart_command_kind)9}), ORN_EINVAL);
	cr_assert_eq(cart_event_encode(writer, &(cart_event){.kind = (cart_event_kind)9}), ORN_EINVAL);
	memset(c.line.name, 'n', sizeof c.line.name);
	cr_assert_eq(cart_command_encode(writer, &c), ORN_EINVAL);
	memset(e.line.product_id, 'p', sizeof e.line.product_id);
	cr_assert_eq(cart_event_encode(writer, &e), ORN_EINVAL);
}

static orn_rc decode_written_command(const char *type)
{
	cart_command c;

	return cart_command_decode(type, mp_writer_data(writer), mp_writer_size(writer), &c);
}

static orn_rc decode_written_event(const char *type)
{
	cart_event e;

	return cart_event_decode(type, mp_writer_data(writer), mp_writer_size(writer), &e);
}

Test(cart, decoders_are_strict)
{
	cart_command c = add("p1", 1, 1, "EUR");

	cr_assert_eq(cart_command_encode(writer, &c), ORN_OK);
	cr_assert_eq(decode_written_command("StealCart"), ORN_EINVAL);
	cr_assert_eq(decode_written_command(NULL), ORN_EINVAL);
	cr_assert_eq(decode_written_event("AddItem"), ORN_EINVAL);
	for (size_t len = 0; len < mp_writer_size(writer); len++) {
		cart_command d;
		cr_assert_eq(cart_command_decode(CART_CMD_ADD_ITEM, mp_writer_data(writer), len, &d),
		             ORN_EDECODE);
	}
	/* trailing bytes */
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(CART_CMD_ADD_ITEM), ORN_EDECODE);
	/* a missing key */
	mp_writer_reset(writer);
	mp_write_map(writer, 0);
	cr_assert_eq(decode_written_command(CART_CMD_REMOVE_ITEM), ORN_EDECODE);
	cr_assert_eq(decode_written_command(CART_CMD_CLEAR), ORN_OK);
	/* a repeated key */
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "order_id");
	mp_write_cstr(writer, "o1");
	mp_write_cstr(writer, "order_id");
	mp_write_cstr(writer, "o2");
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	/* a wrong type */
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	mp_write_cstr(writer, "quantity");
	mp_write_cstr(writer, "3");
	cr_assert_eq(decode_written_command(CART_CMD_SET_QUANTITY), ORN_EDECODE);
	/* an unknown key is skipped; a key of another type is unknown */
	mp_writer_reset(writer);
	mp_write_map(writer, 3);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	mp_write_cstr(writer, "extra");
	mp_write_array(writer, 0);
	mp_write_cstr(writer, "order_id");
	mp_write_int(writer, 5);
	cr_assert_eq(decode_written_command(CART_CMD_REMOVE_ITEM), ORN_OK);
	/* not a map; a non-string key; an over-long string */
	mp_writer_reset(writer);
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(CART_CMD_CLEAR), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_int(writer, 1);
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(CART_CMD_CLEAR), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "order_id");
	mp_write_cstr(writer, "0123456789012345678901234567890123456789012345678901234567890123456789");
	mp_write_cstr(writer, "lines");
	mp_write_array(writer, 0);
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
}

/* Writes a CheckedOut payload {order_id: "o1", lines: [<one line>]} whose
 * line is a map of `pairs` entries; the caller writes the entries. */
static void write_checkout_with_line(uint32_t pairs)
{
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "order_id");
	mp_write_cstr(writer, "o1");
	mp_write_cstr(writer, "lines");
	mp_write_array(writer, 1);
	mp_write_map(writer, pairs);
}

Test(cart, checkout_lines_decode_strictly)
{
	cart_command c;

	/* the lines are required: a CheckedOut without them is refused */
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "order_id");
	mp_write_cstr(writer, "o1");
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	cr_assert_eq(decode_written_event(CART_EV_CHECKED_OUT), ORN_EDECODE);
	/* lines not an array */
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "order_id");
	mp_write_cstr(writer, "o1");
	mp_write_cstr(writer, "lines");
	mp_write_map(writer, 0);
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	/* more lines than a cart holds */
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "order_id");
	mp_write_cstr(writer, "o1");
	mp_write_cstr(writer, "lines");
	mp_write_array(writer, CART_LINES_MAX + 1);
	for (int i = 0; i <= CART_LINES_MAX; i++) {
		mp_write_map(writer, 2);
		mp_write_cstr(writer, "product_id");
		mp_write_cstr(writer, "p1");
		mp_write_cstr(writer, "quantity");
		mp_write_int(writer, 1);
	}
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	/* a line that is not a map */
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "order_id");
	mp_write_cstr(writer, "o1");
	mp_write_cstr(writer, "lines");
	mp_write_array(writer, 1);
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	/* a line without its quantity, without its product */
	write_checkout_with_line(1);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	write_checkout_with_line(1);
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	/* a repeated product, a repeated quantity */
	write_checkout_with_line(3);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p2");
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	write_checkout_with_line(3);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 2);
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	/* a non-string key; a quantity of the wrong type; an over-long product id */
	write_checkout_with_line(1);
	mp_write_int(writer, 1);
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	write_checkout_with_line(2);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	mp_write_cstr(writer, "quantity");
	mp_write_cstr(writer, "1");
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	write_checkout_with_line(2);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "0123456789012345678901234567890123456789012345678901234567890123456789");
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(CART_CMD_CHECKED_OUT), ORN_EDECODE);
	/* an unknown key of a line is skipped */
	write_checkout_with_line(3);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	mp_write_cstr(writer, "name");
	mp_write_cstr(writer, "ignored");
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 7);
	cr_assert_eq(
	        cart_command_decode(CART_CMD_CHECKED_OUT, mp_writer_data(writer), mp_writer_size(writer), &c),
	        ORN_OK);
	cr_assert_eq(c.checkout_count, 1);
	cr_assert_str_eq(c.checkout[0].product_id, "p1");
	cr_assert_eq(c.checkout[0].quantity, 7);
	/* lines on another type are an unknown key */
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	mp_write_cstr(writer, "lines");
	mp_write_int(writer, 3);
	cr_assert_eq(decode_written_command(CART_CMD_REMOVE_ITEM), ORN_OK);
}

Test(cart, checkout_encoders_reject_lines_they_cannot_write)
{
	cart_command c = checked_out("o1", {"p1", 1});
	cart_event e = {.kind = CART_CHECKED_OUT_EVENT, .order_id = "o1", .checkout_count = 1};

	memset(c.checkout[0].product_id, 'p', sizeof c.checkout[0].product_id);
	cr_assert_eq(cart_command_encode(writer, &c), ORN_EINVAL);
	e.checkout_count = CART_LINES_MAX + 1;
	cr_assert_eq(cart_event_encode(writer, &e), ORN_EINVAL);
}

Test(cart, event_decoding_rejects_values_decide_cannot_emit)
{
	cart_event added = {.kind = CART_ITEM_ADDED, .line = line("p1", 1, 2), .added = 3};

	strcpy(added.currency, "EUR");
	cr_assert_eq(cart_event_encode(writer, &added), ORN_OK);
	cr_assert_eq(decode_written_event(CART_EV_ITEM_ADDED), ORN_EDECODE);
	added.added = 2;
	mp_writer_reset(writer);
	cr_assert_eq(cart_event_encode(writer, &added), ORN_OK);
	cr_assert_eq(decode_written_event(CART_EV_ITEM_ADDED), ORN_OK);
	mp_writer_reset(writer);
	cr_assert_eq(cart_event_encode(
	                     writer, &(cart_event){.kind = CART_QUANTITY_CHANGED, .line = line("p1", 0, 0)}),
	             ORN_OK);
	cr_assert_eq(decode_written_event(CART_EV_QUANTITY_CHANGED), ORN_EDECODE);
	mp_writer_reset(writer);
	cr_assert_eq(cart_event_encode(writer, &(cart_event){.kind = CART_ITEM_REMOVED}), ORN_OK);
	cr_assert_eq(decode_written_event(CART_EV_ITEM_REMOVED), ORN_EDECODE);
	mp_writer_reset(writer);
	cr_assert_eq(cart_event_encode(writer, &(cart_event){.kind = CART_CHECKED_OUT_EVENT}), ORN_OK);
	cr_assert_eq(decode_written_event(CART_EV_CHECKED_OUT), ORN_EDECODE);
}

/* Encodes a CartCheckedOut of o1 removing `lines` and decodes it back. */
static orn_rc decode_checkout_event(const cart_checkout_line *lines, size_t count)
{
	cart_event e = {.kind = CART_CHECKED_OUT_EVENT, .order_id = "o1", .checkout_count = count};

	memcpy(e.checkout, lines, count * sizeof lines[0]);
	mp_writer_reset(writer);
	cr_assert_eq(cart_event_encode(writer, &e), ORN_OK);
	return decode_written_event(CART_EV_CHECKED_OUT);
}

Test(cart, checkout_event_decoding_rejects_lines_decide_cannot_emit)
{
	cr_assert_eq(decode_checkout_event((cart_checkout_line[]){{"p1", 1}}, 0), ORN_OK); /* nothing taken */
	cr_assert_eq(decode_checkout_event((cart_checkout_line[]){{"p1", 999}, {"p2", 1}}, 2), ORN_OK);
	cr_assert_eq(decode_checkout_event((cart_checkout_line[]){{"p1", 0}}, 1), ORN_EDECODE);
	cr_assert_eq(decode_checkout_event((cart_checkout_line[]){{"p1", 1000}}, 1), ORN_EDECODE);
	cr_assert_eq(decode_checkout_event((cart_checkout_line[]){{"p 1", 1}}, 1), ORN_EDECODE);
	cr_assert_eq(decode_checkout_event((cart_checkout_line[]){{"p1", 1}, {"p1", 2}}, 2), ORN_EDECODE);
}

/* ---- snapshot and restore ---- */

/* Field by field: struct padding may differ. */
static void assert_states_equal(const cart_state *a, const cart_state *b)
{
	cr_assert_eq(a->line_count, b->line_count);
	for (size_t i = 0; i < a->line_count; i++) {
		cr_assert_str_eq(a->lines[i].product_id, b->lines[i].product_id);
		cr_assert_str_eq(a->lines[i].name, b->lines[i].name);
		cr_assert_eq(a->lines[i].unit_price_cents, b->lines[i].unit_price_cents);
		cr_assert_eq(a->lines[i].quantity, b->lines[i].quantity);
	}
	cr_assert_str_eq(a->currency, b->currency);
	cr_assert_str_eq(a->last_order_id, b->last_order_id);
	cr_assert_eq(a->earlier_count, b->earlier_count);
	for (size_t i = 0; i < a->earlier_count; i++)
		cr_assert_str_eq(a->earlier_orders[i], b->earlier_orders[i]);
}

static void assert_snapshot_equivalent(void)
{
	cart_state restored;

	mp_writer_reset(writer);
	cr_assert_eq(cart_kind.snapshot(&state, writer), ORN_OK);
	cart_state_init(&restored);
	cr_assert_eq(cart_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	assert_states_equal(&restored, &state);
}

Test(cart, snapshots_restore_the_same_state)
{
	assert_snapshot_equivalent();
	given(add("p1", 250, 2, "EUR"));
	given(add("p2", 300, 1, "EUR"));
	assert_snapshot_equivalent();
	given(add("p4", 1, 1, "EUR"));
	given(checked_out("o1", {"p1", 1}, {"p2", 1}, {"p4", 1}));
	assert_snapshot_equivalent();
	given(checked_out("o2", {"p1", 1}));
	assert_snapshot_equivalent();
	given(add("p3", 10, 9, "USD"));
	given(add("p1", 20, 1, "USD"));
	given(set("p3", 4));
	assert_snapshot_equivalent();
	given_checkouts(CART_ORDERS_REMEMBERED + 3); /* every order it can remember, and lines */
	assert_snapshot_equivalent();
	cr_assert_eq(state.earlier_count, CART_ORDERS_REMEMBERED - 1);
}

static orn_rc restore_written(void)
{
	return cart_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer));
}

static void write_pair(const char *type, const cart_event *e)
{
	mp_write_array(writer, 2);
	mp_write_cstr(writer, type);
	cr_assert_eq(cart_event_encode(writer, e), ORN_OK);
}

Test(cart, restore_rejects_snapshots_no_stream_could_produce)
{
	cart_event added = {.kind = CART_ITEM_ADDED, .line = line("p1", 1, 2), .added = 2};
	cart_event out_event = {.kind = CART_CHECKED_OUT_EVENT};
	cart_event removed = {.kind = CART_ITEM_REMOVED, .line = line("p1", 1, 2)};

	strcpy(added.currency, "EUR");
	strcpy(out_event.order_id, "o1");
	given(add("p9", 1, 1, "EUR"));
	/* a repeated line */
	mp_write_array(writer, 2);
	write_pair(CART_EV_ITEM_ADDED, &added);
	write_pair(CART_EV_ITEM_ADDED, &added);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	/* a checkout after a line */
	mp_writer_reset(writer);
	mp_write_array(writer, 2);
	write_pair(CART_EV_ITEM_ADDED, &added);
	write_pair(CART_EV_CHECKED_OUT, &out_event);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	/* another kind of event */
	mp_writer_reset(writer);
	mp_write_array(writer, 1);
	write_pair(CART_EV_ITEM_REMOVED, &removed);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	/* added differing from the quantity */
	added.added = 1;
	mp_writer_reset(writer);
	mp_write_array(writer, 1);
	write_pair(CART_EV_ITEM_ADDED, &added);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	/* not a pair; trailing bytes; not an array */
	mp_writer_reset(writer);
	mp_write_array(writer, 1);
	mp_write_array(writer, 3);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_array(writer, 0);
	mp_write_nil(writer);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_nil(writer);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	/* the state is untouched by a failed restore */
	cr_assert_not_null(cart_find_line(&state, "p9"));
	/* a first checkout that records lines (a fresh cart has none to take) */
	out_event.checkout_count = 1;
	out_event.checkout[0] = (cart_checkout_line){"p1", 1};
	mp_writer_reset(writer);
	mp_write_array(writer, 1);
	write_pair(CART_EV_CHECKED_OUT, &out_event);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	out_event.checkout_count = 0;
	/* a checkout first is fine */
	added.added = 2;
	mp_writer_reset(writer);
	mp_write_array(writer, 2);
	write_pair(CART_EV_CHECKED_OUT, &out_event);
	write_pair(CART_EV_ITEM_ADDED, &added);
	cr_assert_eq(restore_written(), ORN_OK);
	cr_assert_str_eq(state.last_order_id, "o1");
	cr_assert_null(cart_find_line(&state, "p9"));
}

/* Writes n checkouts without lines, o0..o(n-1) (or o0 n times). */
static void write_checkouts(int n, bool repeat)
{
	cart_event e = {.kind = CART_CHECKED_OUT_EVENT};
	mp_writer_reset(writer);
	mp_write_array(writer, (uint32_t)n);
	for (int i = 0; i < n; i++) {
		snprintf(e.order_id, sizeof e.order_id, "o%d", repeat ? 0 : i);
		write_pair(CART_EV_CHECKED_OUT, &e);
	}
}

Test(cart, restore_takes_the_remembered_orders_only_as_a_distinct_leading_run_within_the_bound)
{
	write_checkouts(CART_ORDERS_REMEMBERED, false);
	cr_assert_eq(restore_written(), ORN_OK);
	cr_assert_str_eq(state.last_order_id, "o15");
	cr_assert_eq(state.earlier_count, CART_ORDERS_REMEMBERED - 1);
	write_checkouts(CART_ORDERS_REMEMBERED + 1, false);
	cr_assert_eq(restore_written(), ORN_EDECODE, "more orders than a cart remembers");
	write_checkouts(2, true);
	cr_assert_eq(restore_written(), ORN_EDECODE, "an order twice");
	cr_assert_str_eq(state.last_order_id, "o15", "untouched by a failed restore");
}

Test(cart, restore_reports_allocation_failure)
{
	if (!failalloc_available())
		cr_skip_test("no allocation failure injection in this build");
	mp_write_array(writer, 0);
	failalloc_after(0);
	cr_assert_eq(restore_written(), ORN_ENOMEM);
	failalloc_off();
}

/* ---- the kind table ---- */

static act_decision *decision;

static void kind_setup(void)
{
	setup();
	decision = act_decision_create();
	cr_assert_not_null(decision);
}

static void kind_teardown(void)
{
	act_decision_destroy(decision);
	teardown();
}

TestSuite(cart_kind, .init = kind_setup, .fini = kind_teardown);

static orn_rc kind_decide(cart_command c)
{
	env_envelope cmd = {.schema = 1};

	mp_writer_reset(writer);
	cr_assert_eq(cart_command_encode(writer, &c), ORN_OK);
	snprintf(cmd.type, sizeof cmd.type, "%s", cart_command_type(c.kind));
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	act_decision_clear(decision);
	return cart_kind.decide(&state, &cmd, decision);
}

static void kind_apply(void)
{
	env_envelope event;

	for (size_t i = 0; i < act_decision_count(decision); i++) {
		cr_assert_eq(act_decision_event(decision, i, &event), ORN_OK);
		cr_assert_eq(cart_kind.evolve(&state, &event), ORN_OK);
	}
}

static void then_decision_rejected(const char *code)
{
	cr_assert_str_eq(act_decision_rejection(decision), code);
	cr_assert_eq(act_decision_count(decision), 0);
	cr_assert_not_null(act_decision_detail(decision));
}

Test(cart_kind, describes_the_aggregate)
{
	cart_state *s = malloc(cart_kind.state_size);

	cr_assert_str_eq(cart_kind.aggregate, "cart");
	cr_assert_eq(cart_kind.state_size, sizeof(cart_state));
	cr_assert_eq(cart_kind.snapshot_schema, CART_SNAPSHOT_SCHEMA);
	cr_assert_eq(cart_kind.snapshot_schema, 4, "the placement watermark bumped the schema");
	cr_assert_not_null(s);
	cart_kind.init(s);
	cr_assert_eq(s->line_count, 0);
	cart_kind.dispose(s);
	free(s);
}

Test(cart_kind, a_cart_lives_through_the_kind_table)
{
	env_envelope event;

	cr_assert_eq(kind_decide(add("p1", 250, 2, "EUR")), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 1);
	cr_assert_eq(act_decision_event(decision, 0, &event), ORN_OK);
	cr_assert_str_eq(event.type, CART_EV_ITEM_ADDED);
	kind_apply();
	cr_assert_eq(state.lines[0].quantity, 2);
	cr_assert_eq(kind_decide(remove_item("absent")), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 0);
	cr_assert_eq(kind_decide(add("p2", 100, 1, "EUR")), ORN_OK);
	kind_apply();
	cr_assert_eq(kind_decide(checked_out("o1", {"p1", 2})), ORN_OK);
	kind_apply();
	then_cart("p2:1", "EUR");
	cr_assert_str_eq(state.last_order_id, "o1");
}

Test(cart_kind, rejections_carry_code_and_detail)
{
	char id[16];

	cr_assert_eq(kind_decide(set("p1", 1)), ORN_OK);
	then_decision_rejected("not_found");
	cr_assert_eq(kind_decide(add("p1", 1, 0, "EUR")), ORN_OK);
	then_decision_rejected("invalid");
	cr_assert_eq(kind_decide(add("p1", 1, 1, "EUR")), ORN_OK);
	kind_apply();
	cr_assert_eq(kind_decide(add("p2", 1, 1, "USD")), ORN_OK);
	then_decision_rejected("currency_mismatch");
	cr_assert_str_eq(act_decision_detail(decision), "the cart is in EUR, the item in USD");
	for (int i = 1; i < CART_LINES_MAX; i++) {
		snprintf(id, sizeof id, "q%d", i);
		given(add(id, 1, 1, "EUR"));
	}
	cr_assert_eq(kind_decide(add("p2", 1, 1, "EUR")), ORN_OK);
	then_decision_rejected("too_many_lines");
}

Test(cart_kind, undecodable_commands_and_events_are_errors)
{
	env_envelope env = {.schema = 2};
	uint8_t nil = 0xc0;

	strcpy(env.type, CART_CMD_CLEAR);
	env.payload = &nil;
	env.payload_len = 1;
	cr_assert_eq(cart_kind.decide(&state, &env, decision), ORN_EDECODE);
	env.schema = 1;
	cr_assert_eq(cart_kind.decide(&state, &env, decision), ORN_EDECODE);
	env.schema = 2;
	strcpy(env.type, CART_EV_CLEARED);
	cr_assert_eq(cart_kind.evolve(&state, &env), ORN_EDECODE);
	env.schema = 1;
	cr_assert_eq(cart_kind.evolve(&state, &env), ORN_EDECODE);
	strcpy(env.type, "Nope");
	cr_assert_eq(cart_kind.evolve(&state, &env), ORN_EINVAL);
}

/* The view of the state as JSON text. */
static void view_json(char *json, size_t cap)
{
	mp_writer *text = mp_writer_create();
	mp_reader r;

	cr_assert_not_null(text);
	mp_writer_reset(writer);
	cr_assert_eq(cart_kind.view(&state, writer), ORN_OK);
	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_to_json(&r, text), ORN_OK);
	snprintf(json, cap, "%.*s", (int)mp_writer_size(text), (const char *)mp_writer_data(text));
	mp_writer_destroy(text);
}

Test(cart_kind, the_view_lists_lines_and_totals)
{
	char json[1024];

	view_json(json, sizeof json);
	cr_assert_str_eq(json, "{\"items\":[],\"total_cents\":0,\"currency\":null,\"last_order_id\":null}");
	given(add("p1", 250, 2, "EUR"));
	given(checked_out("o1", {"p1", 2}));
	given(add("p1", 250, 2, "EUR"));
	given(add("p2", 100, 1, "EUR"));
	view_json(json, sizeof json);
	cr_assert_str_eq(
	        json,
	        "{\"items\":[{\"product_id\":\"p1\",\"name\":\"Item p1\",\"unit_price_cents\":250,"
	        "\"quantity\":2,\"line_total_cents\":500},{\"product_id\":\"p2\",\"name\":\"Item "
	        "p2\",\"unit_price_cents\":100,\"quantity\":1,\"line_total_cents\":100}],\"total_cents\":"
	        "600,\"currency\":\"EUR\",\"last_order_id\":\"o1\"}");
	state.lines[0].unit_price_cents = INT64_MAX;
	mp_writer_reset(writer);
	cr_assert_eq(cart_kind.view(&state, writer), ORN_EINTERNAL);
}

Test(cart_kind, decide_reports_allocation_failure)
{
	orn_rc rc = ORN_ENOMEM;

	if (!failalloc_available())
		cr_skip_test("no allocation failure injection in this build");
	for (long n = 0; rc == ORN_ENOMEM && n < 20; n++) {
		mp_writer_reset(writer);
		cart_command c = checked_out("o1", {"p1", 1});
		cr_assert_eq(cart_command_encode(writer, &c), ORN_OK);
		env_envelope cmd = {.schema = 1, .type = CART_CMD_CHECKED_OUT};
		cmd.payload = mp_writer_data(writer);
		cmd.payload_len = mp_writer_size(writer);
		act_decision_clear(decision);
		failalloc_after(n);
		rc = cart_kind.decide(&state, &cmd, decision);
		failalloc_off();
	}
	cr_assert_eq(rc, ORN_OK);
	cr_assert_eq(act_decision_count(decision), 1);
}

Test(cart_kind, decide_reports_a_full_decision)
{
	env_envelope cmd = {.schema = 1, .type = CART_CMD_CLEAR};

	given(add("p1", 1, 1, "EUR"));
	mp_writer_reset(writer);
	cr_assert_eq(cart_command_encode(writer, &(cart_command){.kind = CART_CLEAR}), ORN_OK);
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	act_decision_clear(decision);
	for (size_t i = 0; i < ENV_MAX_EVENTS; i++)
		cr_assert_eq(act_decision_emit(decision, "Filler", 1, (const uint8_t *)"\xc0", 1), ORN_OK);
	cr_assert_eq(cart_kind.decide(&state, &cmd, decision), ORN_ETOOBIG);
}
