/* test_order.c — unit tests of the order aggregate (actors/order.c).
 *
 * Given-when-then: given events applied with order_evolve (or commands
 * decided and applied), when a command is decided, then the expected event or
 * rejection. Every transition and exit of the checkout state machine, the
 * token and deadline rules, the payload codecs, snapshot/restore and the kind
 * table driven through an act_decision. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"
#include "order.h"

#define HASH       "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define OTHER_HASH "f0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define T0         1000000
#define DEADLINE   (T0 + 900000)
#define TTL        900000

static order_state state;
static order_events out;
static order_verdict verdict;
static mp_writer *writer;

static void setup(void)
{
	order_state_init(&state);
	writer = mp_writer_create();
	cr_assert_not_null(writer);
}

static void teardown(void)
{
	mp_writer_destroy(writer);
}

TestSuite(order, .init = setup, .fini = teardown);

static void add_line(order_data *d, const char *product_id, int64_t price, int64_t quantity)
{
	order_line *l = &d->lines[d->line_count++];

	snprintf(l->product_id, sizeof l->product_id, "%s", product_id);
	snprintf(l->name, sizeof l->name, "Item %s", product_id);
	l->unit_price_cents = price;
	l->quantity = quantity;
}

static order_command *command(order_command_kind kind, int64_t now)
{
	static order_command c;

	memset(&c, 0, sizeof c);
	c.kind = kind;
	c.data.time_ms = now;
	return &c;
}

static order_command *place(void)
{
	order_command *c = command(ORDER_PLACE, T0);

	strcpy(c->data.customer_id, "u1");
	strcpy(c->data.customer_email, "ann@example.com");
	strcpy(c->data.request_hash, HASH);
	add_line(&c->data, "p1", 250, 2);
	add_line(&c->data, "p2", 1000, 1);
	strcpy(c->data.currency, "EUR");
	strcpy(c->data.token_hash, HASH);
	c->data.ttl_ms = TTL; /* the decider sets the deadline: T0 + TTL = DEADLINE */
	return c;
}

static order_command *confirm(const char *hash, int64_t now)
{
	order_command *c = command(ORDER_CONFIRM, now);

	strcpy(c->data.token_hash, hash);
	c->data.ttl_ms = TTL;
	return c;
}

static order_command *cancel(const char *reason, int64_t now)
{
	order_command *c = command(ORDER_CANCEL, now);

	strcpy(c->data.reason, reason);
	return c;
}

static order_command *reject_for_stock(const char *product_id)
{
	order_command *c = command(ORDER_REJECT_FOR_STOCK, T0 + 10);

	strcpy(c->data.product_ids[c->data.product_count++], product_id);
	return c;
}

static order_command *mark_paid(const char *charge_id)
{
	order_command *c = command(ORDER_MARK_PAID, T0 + 300);

	strcpy(c->data.charge_id, charge_id);
	strcpy(c->data.brand, "visa");
	strcpy(c->data.last4, "4242");
	return c;
}

static order_command *mark_failed(void)
{
	order_command *c = command(ORDER_MARK_PAYMENT_FAILED, T0 + 300);

	strcpy(c->data.reason, "card_declined");
	return c;
}

static order_command *ship(const char *carrier, const char *tracking_number)
{
	order_command *c = command(ORDER_SHIP, T0 + 500);

	snprintf(c->data.carrier, sizeof c->data.carrier, "%s", carrier);
	snprintf(c->data.tracking_number, sizeof c->data.tracking_number, "%s", tracking_number);
	return c;
}

static void when(const order_command *c)
{
	verdict = order_decide(&state, c, &out);
}

static void and_applied(void)
{
	for (size_t i = 0; i < out.count; i++)
		cr_assert(order_evolve(&state, &out.items[i]));
}

static void given(const order_command *c)
{
	when(c);
	cr_assert_eq(verdict, ORDER_OK, "verdict %s", order_verdict_code(verdict));
	and_applied();
}

static void given_pending(void)
{
	given(place());
}

static void given_awaiting_confirmation(void)
{
	given_pending();
	given(command(ORDER_MARK_RESERVED, T0 + 100));
}

static void given_awaiting_payment(void)
{
	given_awaiting_confirmation();
	given(confirm(HASH, T0 + 200));
}

static void given_confirmed(void)
{
	given_awaiting_payment();
	given(mark_paid("ch_1"));
}

static void then_event(order_event_kind kind, order_status status)
{
	cr_assert_eq(verdict, ORDER_OK, "verdict %s", order_verdict_code(verdict));
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, kind);
	and_applied();
	cr_assert_eq(state.status, status, "status %s", order_status_name(state.status));
	cr_assert_eq(state.history[state.history_count - 1].status, status);
	cr_assert_eq(state.history[state.history_count - 1].at_ms, out.items[0].data.time_ms);
}

static void then_nothing(void)
{
	cr_assert_eq(verdict, ORDER_OK, "verdict %s", order_verdict_code(verdict));
	cr_assert_eq(out.count, 0);
}

static void then_rejected(order_verdict expected)
{
	cr_assert_eq(verdict, expected, "verdict %s, expected %s", order_verdict_code(verdict),
	             order_verdict_code(expected));
	cr_assert_eq(out.count, 0);
}

/* e encodes, and the stream's reader decodes it back with its deadline. */
static void assert_event_decodes(const order_event *e)
{
	order_event *decoded = malloc(sizeof *decoded);

	cr_assert_not_null(decoded);
	mp_writer_reset(writer);
	cr_assert_eq(order_event_encode(writer, e), ORN_OK);
	cr_assert_eq(order_event_decode(order_event_type(e->kind), mp_writer_data(writer),
	                                mp_writer_size(writer), decoded),
	             ORN_OK);
	cr_assert_eq(decoded->data.deadline_ms, e->data.deadline_ms);
	free(decoded);
}

/* ---- the happy path ---- */

Test(order, place_makes_a_pending_order)
{
	int64_t total;

	when(place());
	then_event(ORDER_PLACED, ORDER_PENDING);
	cr_assert_str_eq(state.customer_id, "u1");
	cr_assert_eq(state.line_count, 2);
	cr_assert_str_eq(state.token_hash, HASH);
	cr_assert_eq(state.confirmation_deadline_ms, DEADLINE);
	cr_assert_eq(order_deadline(&state), DEADLINE);
	cr_assert(order_total(&state, &total));
	cr_assert_eq(total, 1500);
	cr_assert_eq(state.history[0].at_ms, T0);
	cr_assert_str_eq(state.history[0].reason, "");
}

Test(order, the_whole_way_to_confirmed)
{
	given_pending();
	when(command(ORDER_MARK_RESERVED, T0 + 100));
	then_event(ORDER_RESERVED, ORDER_AWAITING_CONFIRMATION);
	when(confirm(HASH, T0 + 200));
	then_event(ORDER_CONFIRMED_BY_CUSTOMER, ORDER_AWAITING_PAYMENT);
	cr_assert_eq(out.items[0].data.deadline_ms, T0 + 200 + TTL);
	cr_assert_eq(state.payment_deadline_ms, T0 + 200 + TTL);
	cr_assert_eq(order_deadline(&state), T0 + 200 + TTL);
	when(mark_paid("ch_1"));
	then_event(ORDER_PAID, ORDER_CONFIRMED);
	cr_assert_str_eq(state.brand, "visa");
	cr_assert_str_eq(state.last4, "4242");
	cr_assert_eq(state.history_count, 4);
	cr_assert_eq(order_deadline(&state), 0);
}

/* ---- place ---- */

Test(order, place_of_an_existing_order_is_rejected)
{
	given_pending();
	when(place());
	then_rejected(ORDER_REJ_EXISTS);
}

Test(order, place_checks_every_field)
{
	order_command *c;

	c = place();
	strcpy(c->data.customer_id, "u 1");
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	strcpy(c->data.customer_email, "ann@example.com\r\nBcc: all@example.com"); /* header injection */
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.customer_email[0] = '\0'; /* only a read model's erased copy holds none */
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	memset(c->data.customer_email, 'a', sizeof c->data.customer_email); /* unterminated */
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	strcpy(c->data.request_hash, "XYZ");
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.line_count = 0;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.line_count = ORDER_LINES_MAX + 1;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	add_line(&c->data, "p1", 1, 1); /* a repeated product */
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.lines[0].quantity = 1000;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.lines[0].unit_price_cents = -1;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.lines[1].name[0] = '\0';
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	strcpy(c->data.currency, "eur");
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	strcpy(c->data.token_hash, "00112233");
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.token_hash[3] = 'A';
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.ttl_ms = 0;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.time_ms = -1;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.ttl_ms = ORDER_TIME_MAX + 1;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = place();
	c->data.ttl_ms = ORDER_TIME_MAX - T0 + 1; /* the deadline would be past every time */
	when(c);
	then_rejected(ORDER_REJ_INVALID);
}

/* ---- the decider owns both deadlines ---- */

Test(order, place_sets_the_confirmation_deadline_from_its_ttl)
{
	order_command *c = place();

	c->data.ttl_ms = 60000;
	c->data.deadline_ms = 5; /* a deadline the sender computed is not the decider's: ignored */
	when(c);
	then_event(ORDER_PLACED, ORDER_PENDING);
	cr_assert_eq(out.items[0].data.deadline_ms, T0 + 60000);
	cr_assert_eq(state.confirmation_deadline_ms, T0 + 60000);
	cr_assert_eq(order_deadline(&state), T0 + 60000);
}

Test(order, the_largest_ttl_ends_at_the_last_time)
{
	order_command *c = place();

	c->data.ttl_ms = ORDER_TIME_MAX - T0;
	when(c);
	then_event(ORDER_PLACED, ORDER_PENDING);
	cr_assert_eq(state.confirmation_deadline_ms, ORDER_TIME_MAX);
	assert_event_decodes(&out.items[0]);
}

Test(order, placement_ttl_bounds_confirmation_and_confirm_ttl_bounds_payment)
{
	order_command *c = place();

	c->data.ttl_ms = 1000;
	given(c); /* confirmation deadline T0 + 1000 */
	given(command(ORDER_MARK_RESERVED, T0 + 10));
	when(confirm(HASH, T0 + 1000));
	then_rejected(ORDER_REJ_EXPIRED);
	c = confirm(HASH, T0 + 999);
	c->data.ttl_ms = 5000;
	when(c);
	then_event(ORDER_CONFIRMED_BY_CUSTOMER, ORDER_AWAITING_PAYMENT);
	cr_assert_eq(order_deadline(&state), T0 + 999 + 5000);
	cr_assert_eq(state.confirmation_deadline_ms, T0 + 1000);
}

Test(order, a_placement_stored_with_its_deadline_still_reads)
{
	/* OrderPlaced has always carried deadline_ms: an event written before
	 * PlaceOrder carried a ttl decodes and folds the same */
	order_event e;

	memset(&e, 0, sizeof e);
	e.kind = ORDER_PLACED;
	e.data = place()->data;
	e.data.ttl_ms = 0;
	e.data.deadline_ms = DEADLINE;
	assert_event_decodes(&e);
	cr_assert(order_evolve(&state, &e));
	cr_assert_eq(state.confirmation_deadline_ms, DEADLINE);
}

/* ---- what a status means ---- */

Test(order, status_predicates_have_one_meaning_each)
{
	static const struct {
		order_status status;
		bool open, final, paid, releases, settled, awaits;
	} table[] = {
	        {ORDER_NONE, false, false, false, false, false, false},
	        {ORDER_PENDING, true, false, false, false, false, false},
	        {ORDER_AWAITING_CONFIRMATION, true, false, false, false, false, true},
	        {ORDER_AWAITING_PAYMENT, true, false, false, false, false, true},
	        {ORDER_CONFIRMED, false, false, true, false, true, false},
	        {ORDER_CANCELLED, false, true, false, true, false, false},
	        {ORDER_PAYMENT_FAILED, false, true, false, true, true, false},
	        {ORDER_SHIPPED, false, false, true, false, true, false},
	        {ORDER_DELIVERED, false, true, true, false, true, false},
	        {(order_status)99, false, false, false, false, false, false},
	};

	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		order_status s = table[i].status;
		cr_assert_eq(order_status_is_open(s), table[i].open, "open %d", s);
		cr_assert_eq(order_status_is_final(s), table[i].final, "final %d", s);
		cr_assert_eq(order_status_is_paid(s), table[i].paid, "paid %d", s);
		cr_assert_eq(order_status_releases_stock(s), table[i].releases, "releases %d", s);
		cr_assert_eq(order_status_payment_settled(s), table[i].settled, "settled %d", s);
		cr_assert_eq(order_status_awaits_customer(s), table[i].awaits, "awaits %d", s);
		/* the checkout is done exactly when the order is neither open nor never placed */
		cr_assert_eq(order_status_checkout_done(s), table[i].final || table[i].paid, "done %d", s);
		if (s != (order_status)99)
			cr_assert_eq(order_status_is_open(s),
			             s != ORDER_NONE && !order_status_checkout_done(s));
	}
}

Test(order, status_names_parse_back)
{
	order_status s = ORDER_NONE;

	for (int k = ORDER_PENDING; k <= ORDER_DELIVERED; k++) {
		cr_assert(order_status_parse(order_status_name((order_status)k), &s));
		cr_assert_eq(s, (order_status)k);
	}
	s = ORDER_PENDING;
	cr_assert_not(order_status_parse("none", &s)); /* never placed is no status an order has */
	cr_assert_not(order_status_parse("Confirmed", &s));
	cr_assert_not(order_status_parse("", &s));
	cr_assert_not(order_status_parse(NULL, &s));
	cr_assert_eq(s, ORDER_PENDING);
}

Test(order, place_accepts_fifty_lines)
{
	order_command *c = place();
	char id[16];

	for (int i = 2; i < ORDER_LINES_MAX; i++) {
		snprintf(id, sizeof id, "p%d", i + 1);
		add_line(&c->data, id, ORDER_PRICE_MAX, ORDER_QUANTITY_MAX);
	}
	when(c);
	then_event(ORDER_PLACED, ORDER_PENDING);
	cr_assert_eq(state.line_count, ORDER_LINES_MAX);
}

Test(order, every_other_command_on_a_missing_order_is_not_found)
{
	when(command(ORDER_MARK_RESERVED, T0));
	then_rejected(ORDER_REJ_NOT_FOUND);
	when(confirm(HASH, T0));
	then_rejected(ORDER_REJ_NOT_FOUND);
	when(cancel("customer", T0));
	then_rejected(ORDER_REJ_NOT_FOUND);
	when(mark_paid("ch_1"));
	then_rejected(ORDER_REJ_NOT_FOUND);
	when(mark_failed());
	then_rejected(ORDER_REJ_NOT_FOUND);
	when(reject_for_stock("p1"));
	then_rejected(ORDER_REJ_NOT_FOUND);
}

Test(order, an_unknown_command_kind_is_invalid)
{
	given_pending();
	when(command((order_command_kind)42, T0));
	then_rejected(ORDER_REJ_INVALID);
}

/* ---- reserved and stock rejection ---- */

Test(order, mark_reserved_only_from_pending_and_idempotent)
{
	given_awaiting_confirmation();
	when(command(ORDER_MARK_RESERVED, T0 + 150));
	then_nothing();
	when(command(ORDER_MARK_RESERVED, -5));
	then_rejected(ORDER_REJ_INVALID);
	given(confirm(HASH, T0 + 200));
	when(command(ORDER_MARK_RESERVED, T0 + 250));
	then_rejected(ORDER_REJ_WRONG_STATE);
}

Test(order, reject_for_stock_cancels_a_pending_order_naming_the_products)
{
	order_command *c;

	given_pending();
	c = reject_for_stock("p2");
	strcpy(c->data.product_ids[c->data.product_count++], "p1");
	when(c);
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
	cr_assert_str_eq(out.items[0].data.reason, ORDER_REASON_OUT_OF_STOCK);
	cr_assert_eq(state.cancelled_product_count, 2);
	cr_assert_str_eq(state.cancelled_products[0], "p2");
	cr_assert_str_eq(state.cancelled_products[1], "p1");
	cr_assert_str_eq(state.history[1].reason, "out_of_stock");
	/* redelivered */
	when(reject_for_stock("p2"));
	then_nothing();
}

Test(order, reject_for_stock_rejections)
{
	order_command *c;

	given_pending();
	when(reject_for_stock("p9")); /* not a product of the order */
	then_rejected(ORDER_REJ_INVALID);
	c = reject_for_stock("p1");
	strcpy(c->data.product_ids[c->data.product_count++], "p1");
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = reject_for_stock("p1");
	c->data.product_count = 0;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = reject_for_stock("p1");
	c->data.product_count = ORDER_LINES_MAX + 1;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	given(command(ORDER_MARK_RESERVED, T0 + 100));
	when(reject_for_stock("p1"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	given(cancel("customer", T0 + 150));
	when(reject_for_stock("p1")); /* cancelled, but not for stock */
	then_rejected(ORDER_REJ_WRONG_STATE);
}

/* ---- confirm ---- */

Test(order, confirm_with_a_wrong_token_is_bad_token)
{
	given_awaiting_confirmation();
	when(confirm(OTHER_HASH, T0 + 200));
	then_rejected(ORDER_REJ_BAD_TOKEN);
	cr_assert_eq(state.status, ORDER_AWAITING_CONFIRMATION);
}

Test(order, the_link_used_again_answers_what_happened)
{
	/* a retry after a lost answer: the order is confirmed, nothing changes */
	given_awaiting_payment();
	when(confirm(HASH, T0 + 300));
	cr_assert_eq(verdict, ORDER_OK);
	cr_assert_eq(out.count, 0);
	cr_assert_eq(state.status, ORDER_AWAITING_PAYMENT);
	/* but it is still the token that counts */
	when(confirm(OTHER_HASH, T0 + 300));
	then_rejected(ORDER_REJ_BAD_TOKEN);
	/* and a cancelled order is not confirmed by it */
	order_state_init(&state);
	given_awaiting_confirmation();
	given(cancel("customer", T0 + 250));
	when(confirm(HASH, T0 + 300));
	then_rejected(ORDER_REJ_WRONG_STATE);
}

Test(order, confirm_only_before_the_deadline)
{
	given_awaiting_confirmation();
	when(confirm(HASH, DEADLINE));
	then_rejected(ORDER_REJ_EXPIRED);
	when(confirm(HASH, DEADLINE - 1));
	then_event(ORDER_CONFIRMED_BY_CUSTOMER, ORDER_AWAITING_PAYMENT);
}

Test(order, confirm_only_while_awaiting_confirmation)
{
	given_pending();
	when(confirm(HASH, T0 + 1));
	then_rejected(ORDER_REJ_WRONG_STATE);
}

Test(order, confirm_checks_its_fields)
{
	order_command *c;

	given_awaiting_confirmation();
	when(confirm("abc", T0 + 200));
	then_rejected(ORDER_REJ_INVALID);
	c = confirm(HASH, T0 + 200);
	c->data.ttl_ms = 0;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = confirm(HASH, T0 + 200);
	c->data.ttl_ms = ORDER_TIME_MAX + 1;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	when(confirm(HASH, -1));
	then_rejected(ORDER_REJ_INVALID);
}

/* ---- cancel: every compensation-relevant exit ---- */

Test(order, customer_cancels_from_pending)
{
	given_pending();
	when(cancel("customer", T0 + 5));
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
	cr_assert_str_eq(state.history[1].reason, "customer");
	cr_assert_eq(state.cancelled_product_count, 0);
}

Test(order, customer_cancels_from_awaiting_confirmation)
{
	given_awaiting_confirmation();
	when(cancel("customer", T0 + 150));
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
}

Test(order, customer_cancels_from_awaiting_payment)
{
	given_awaiting_payment();
	when(cancel("customer", T0 + 250));
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
	cr_assert_eq(state.history_count, 4);
}

Test(order, expired_only_at_or_after_the_confirmation_deadline)
{
	given_awaiting_confirmation();
	when(cancel("expired", DEADLINE - 1));
	then_rejected(ORDER_REJ_INVALID);
	when(cancel("expired", DEADLINE));
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
	cr_assert_str_eq(state.history[2].reason, "expired");
}

Test(order, expired_from_pending_uses_the_confirmation_deadline)
{
	given_pending();
	when(cancel("expired", DEADLINE - 1));
	then_rejected(ORDER_REJ_INVALID);
	when(cancel("expired", DEADLINE + 1));
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
}

Test(order, expired_while_awaiting_payment_uses_the_payment_deadline)
{
	given_awaiting_payment();
	when(cancel("expired", DEADLINE));
	then_rejected(ORDER_REJ_INVALID);
	when(cancel("expired", T0 + 200 + TTL));
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
}

Test(order, no_cancel_after_an_exit)
{
	given_awaiting_payment();
	given(mark_failed());
	when(cancel("customer", T0 + 400));
	then_rejected(ORDER_REJ_WRONG_STATE);
	when(cancel("admin", T0 + 400));
	then_rejected(ORDER_REJ_WRONG_STATE);
}

/* ---- after payment (ADR 028 §3) ---- */

Test(order, customer_cancels_a_paid_order_and_the_event_says_paid)
{
	given_confirmed();
	when(cancel("customer", T0 + 400));
	cr_assert(out.items[0].data.paid, "the saga returns sold units for it");
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
	cr_assert(state.cancelled_after_payment);
	cr_assert_str_eq(state.history[state.history_count - 1].reason, "customer");
	cr_assert_str_eq(state.charge_id, "ch_1", "the charge stays known for the refund");
	when(cancel("customer", T0 + 401));
	then_nothing();
}

Test(order, admin_cancels_open_and_paid_orders)
{
	given_awaiting_payment();
	when(cancel("admin", T0 + 250));
	cr_assert(!out.items[0].data.paid);
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
	cr_assert(!state.cancelled_after_payment);
	cr_assert_str_eq(state.history[state.history_count - 1].reason, "admin");
	order_state_init(&state);
	given_pending();
	when(cancel("admin", T0 + 1));
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
	order_state_init(&state);
	given_confirmed();
	when(cancel("admin", T0 + 400));
	cr_assert(out.items[0].data.paid);
	then_event(ORDER_CANCELLED_EVENT, ORDER_CANCELLED);
	cr_assert(state.cancelled_after_payment);
}

Test(order, a_deadline_never_cancels_a_paid_order)
{
	given_confirmed();
	when(cancel("expired", DEADLINE * 2));
	then_rejected(ORDER_REJ_WRONG_STATE);
}

Test(order, no_cancel_once_shipped_or_delivered)
{
	given_confirmed();
	given(ship("DHL", "JD1"));
	when(cancel("customer", T0 + 550));
	then_rejected(ORDER_REJ_WRONG_STATE);
	when(cancel("admin", T0 + 550));
	then_rejected(ORDER_REJ_WRONG_STATE);
	given(command(ORDER_DELIVER, T0 + 600));
	when(cancel("customer", T0 + 650));
	then_rejected(ORDER_REJ_WRONG_STATE);
	when(cancel("admin", T0 + 650));
	then_rejected(ORDER_REJ_WRONG_STATE);
}

Test(order, ship_moves_a_paid_order_to_shipped)
{
	given_confirmed();
	when(ship("DHL Express", "JD014600003SE"));
	cr_assert_str_eq(out.items[0].data.carrier, "DHL Express");
	cr_assert_str_eq(out.items[0].data.tracking_number, "JD014600003SE");
	then_event(ORDER_SHIPPED_EVENT, ORDER_SHIPPED);
	cr_assert_str_eq(state.carrier, "DHL Express");
	cr_assert_str_eq(state.tracking_number, "JD014600003SE");
	cr_assert_eq(state.shipped_at_ms, T0 + 500);
	cr_assert_eq(state.delivered_at_ms, 0);
	cr_assert_eq(order_deadline(&state), 0);
}

Test(order, ship_only_from_confirmed)
{
	given_pending();
	when(ship("DHL", "JD1"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	order_state_init(&state);
	given_awaiting_payment();
	when(ship("DHL", "JD1"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	given(cancel("customer", T0 + 250));
	when(ship("DHL", "JD1"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	order_state_init(&state);
	given_confirmed();
	given(cancel("customer", T0 + 400));
	when(ship("DHL", "JD1"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	order_state_init(&state);
	when(ship("DHL", "JD1"));
	then_rejected(ORDER_REJ_NOT_FOUND);
}

Test(order, a_redelivered_ship_is_a_no_op_and_another_shipment_is_refused)
{
	given_confirmed();
	given(ship("DHL", "JD1"));
	when(ship("DHL", "JD1"));
	then_nothing();
	when(ship("DHL", "JD2"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	when(ship("UPS", "JD1"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	given(command(ORDER_DELIVER, T0 + 600));
	when(ship("DHL", "JD1"));
	then_nothing();
	when(ship("DHL", "JD2"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	cr_assert_eq(state.status, ORDER_DELIVERED);
}

Test(order, ship_checks_its_fields)
{
	char longest[ORDER_CARRIER_MAX];
	order_command *c;

	memset(longest, 'a', sizeof longest - 1);
	longest[sizeof longest - 1] = '\0';
	given_confirmed();
	when(ship("", "JD1"));
	then_rejected(ORDER_REJ_INVALID);
	when(ship("DHL", ""));
	then_rejected(ORDER_REJ_INVALID);
	when(ship("DH\x01L", "JD1"));
	then_rejected(ORDER_REJ_INVALID);
	when(ship("DHL", "JD\n1"));
	then_rejected(ORDER_REJ_INVALID);
	when(ship("DHL", "JD\x7f"));
	then_rejected(ORDER_REJ_INVALID);
	when(ship("DHL", "J\xc3\xa9"));
	then_rejected(ORDER_REJ_INVALID); /* a tracking number is ASCII */
	c = ship("DHL", "JD1");
	memset(c->data.carrier, 'a', sizeof c->data.carrier); /* unterminated */
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = ship("DHL", "JD1");
	memset(c->data.tracking_number, 'a', sizeof c->data.tracking_number);
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = ship("DHL", "JD1");
	c->data.time_ms = -1;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	when(ship("Die Deutsche Post \xc3\xa9", longest));
	then_event(ORDER_SHIPPED_EVENT, ORDER_SHIPPED);
}

Test(order, deliver_only_after_shipping_and_idempotent)
{
	order_command *c;

	given_confirmed();
	when(command(ORDER_DELIVER, T0 + 600));
	then_rejected(ORDER_REJ_WRONG_STATE);
	given(ship("DHL", "JD1"));
	c = command(ORDER_DELIVER, -5);
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	when(command(ORDER_DELIVER, T0 + 600));
	then_event(ORDER_DELIVERED_EVENT, ORDER_DELIVERED);
	cr_assert_eq(state.delivered_at_ms, T0 + 600);
	cr_assert(order_status_is_final(state.status));
	when(command(ORDER_DELIVER, T0 + 700));
	then_nothing();
	cr_assert_eq(state.delivered_at_ms, T0 + 600);
}

Test(order, payment_and_link_repeats_stay_no_ops_after_shipping)
{
	given_confirmed();
	given(ship("DHL", "JD1"));
	when(mark_paid("ch_1"));
	then_nothing();
	when(mark_paid("ch_2"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	when(confirm(HASH, T0 + 550));
	then_nothing();
	when(mark_failed());
	then_rejected(ORDER_REJ_WRONG_STATE);
}

Test(order, evolve_ignores_after_payment_events_out_of_place)
{
	order_event e;

	given_awaiting_payment();
	memset(&e, 0, sizeof e);
	e.kind = ORDER_SHIPPED_EVENT;
	strcpy(e.data.carrier, "DHL");
	strcpy(e.data.tracking_number, "JD1");
	cr_assert(!order_evolve(&state, &e));
	e.kind = ORDER_DELIVERED_EVENT;
	cr_assert(!order_evolve(&state, &e));
	e.kind = ORDER_CANCELLED_EVENT;
	strcpy(e.data.reason, "customer");
	e.data.paid = true;
	cr_assert(!order_evolve(&state, &e), "a paid cancellation needs a paid order");
	given(mark_paid("ch_1"));
	e.data.paid = false;
	cr_assert(!order_evolve(&state, &e), "an unpaid cancellation of a paid order");
	e.kind = ORDER_DELIVERED_EVENT;
	cr_assert(!order_evolve(&state, &e), "delivered before shipped");
	cr_assert_eq(state.status, ORDER_CONFIRMED);
	cr_assert_eq(state.history_count, 4);
}

Test(order, after_payment_events_decode_only_as_decide_emits_them)
{
	order_event e;
	static order_event decoded;

	memset(&e, 0, sizeof e);
	e.kind = ORDER_CANCELLED_EVENT;
	e.data.time_ms = T0;
	e.data.paid = true;
	strcpy(e.data.reason, "expired");
	mp_writer_reset(writer);
	cr_assert_eq(order_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(order_event_decode(ORDER_EV_CANCELLED, mp_writer_data(writer), mp_writer_size(writer),
	                                &decoded),
	             ORN_EDECODE, "no deadline cancels a paid order");
	strcpy(e.data.reason, "out_of_stock");
	strcpy(e.data.product_ids[0], "p1");
	e.data.product_count = 1;
	mp_writer_reset(writer);
	cr_assert_eq(order_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(order_event_decode(ORDER_EV_CANCELLED, mp_writer_data(writer), mp_writer_size(writer),
	                                &decoded),
	             ORN_EDECODE);
	strcpy(e.data.reason, "bogus");
	e.data.product_count = 0;
	mp_writer_reset(writer);
	cr_assert_eq(order_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(order_event_decode(ORDER_EV_CANCELLED, mp_writer_data(writer), mp_writer_size(writer),
	                                &decoded),
	             ORN_EDECODE);
	memset(&e, 0, sizeof e);
	e.kind = ORDER_SHIPPED_EVENT;
	e.data.time_ms = T0;
	strcpy(e.data.carrier, "DHL");
	mp_writer_reset(writer);
	cr_assert_eq(order_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(order_event_decode(ORDER_EV_SHIPPED, mp_writer_data(writer), mp_writer_size(writer),
	                                &decoded),
	             ORN_EDECODE, "a shipment has a tracking number");
	/* an unpaid cancellation is written without the key, as before ADR 028 */
	memset(&e, 0, sizeof e);
	e.kind = ORDER_CANCELLED_EVENT;
	strcpy(e.data.reason, "customer");
	mp_writer_reset(writer);
	cr_assert_eq(order_event_encode(writer, &e), ORN_OK);
	mp_reader r;
	uint32_t keys = 0;
	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_read_map(&r, &keys), ORN_OK);
	cr_assert_eq(keys, 3, "reason, product_ids, at_ms: no paid key");
}

Test(order, cancelling_a_cancelled_order_answers_what_happened)
{
	given_pending();
	given(cancel("customer", T0 + 1));
	when(cancel("customer", T0 + 2));
	cr_assert_eq(verdict, ORDER_OK);
	cr_assert_eq(out.count, 0, "a retry changes nothing");
	when(cancel("expired", DEADLINE + 1));
	cr_assert_eq(verdict, ORDER_OK);
	cr_assert_eq(out.count, 0);
	cr_assert_str_eq(state.history[state.history_count - 1].reason, "customer");
}

Test(order, cancel_checks_the_reason)
{
	given_pending();
	when(cancel("out_of_stock", T0 + 1));
	then_rejected(ORDER_REJ_INVALID);
	when(cancel("", T0 + 1));
	then_rejected(ORDER_REJ_INVALID);
	when(cancel("customer", -1));
	then_rejected(ORDER_REJ_INVALID);
}

/* ---- payment ---- */

Test(order, payment_failure_ends_the_order)
{
	given_awaiting_payment();
	when(mark_failed());
	then_event(ORDER_PAYMENT_FAILED_EVENT, ORDER_PAYMENT_FAILED);
	cr_assert_str_eq(state.history[3].reason, "card_declined");
	when(mark_failed()); /* redelivered */
	then_nothing();
	when(mark_paid("ch_1"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	when(cancel("customer", T0 + 400));
	then_rejected(ORDER_REJ_WRONG_STATE);
}

Test(order, payment_only_while_awaiting_payment)
{
	given_awaiting_confirmation();
	when(mark_paid("ch_1"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	when(mark_failed());
	then_rejected(ORDER_REJ_WRONG_STATE);
}

Test(order, mark_paid_is_idempotent_by_charge)
{
	given_awaiting_payment();
	given(mark_paid("ch_1"));
	when(mark_paid("ch_1"));
	then_nothing();
	when(mark_paid("ch_2"));
	then_rejected(ORDER_REJ_WRONG_STATE);
	when(mark_failed());
	then_rejected(ORDER_REJ_WRONG_STATE);
}

Test(order, payment_commands_check_their_fields)
{
	order_command *c;

	given_awaiting_payment();
	when(mark_paid(""));
	then_rejected(ORDER_REJ_INVALID);
	when(mark_paid("ch 1"));
	then_rejected(ORDER_REJ_INVALID);
	c = mark_paid("ch_1");
	strcpy(c->data.brand, "Visa");
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = mark_paid("ch_1");
	c->data.brand[0] = '\0';
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = mark_paid("ch_1");
	strcpy(c->data.last4, "42a2");
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = mark_paid("ch_1");
	c->data.time_ms = -1;
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = mark_failed();
	c->data.reason[0] = '\0';
	when(c);
	then_rejected(ORDER_REJ_INVALID);
	c = mark_failed();
	strcpy(c->data.reason, "bad\nreason");
	when(c);
	then_rejected(ORDER_REJ_INVALID);
}

/* ---- evolve, helpers, names ---- */

Test(order, evolve_ignores_events_that_are_not_transitions)
{
	order_event e = {.kind = ORDER_PAID};

	cr_assert(!order_evolve(&state, &e));
	cr_assert_eq(state.status, ORDER_NONE);
	given_pending();
	e.kind = ORDER_PLACED;
	cr_assert(!order_evolve(&state, &e));
	e.kind = ORDER_CONFIRMED_BY_CUSTOMER;
	cr_assert(!order_evolve(&state, &e));
	e.kind = ORDER_PAYMENT_FAILED_EVENT;
	cr_assert(!order_evolve(&state, &e));
	e.kind = (order_event_kind)42;
	cr_assert(!order_evolve(&state, &e));
	cr_assert_eq(state.history_count, 1);
}

Test(order, totals_detect_overflow)
{
	int64_t total = 5;

	given_pending();
	state.lines[0].unit_price_cents = INT64_MAX;
	cr_assert(!order_total(&state, &total));
	state.lines[0].unit_price_cents = INT64_MAX / 2;
	state.lines[0].quantity = 1;
	state.lines[1].unit_price_cents = INT64_MAX / 2;
	state.lines[1].quantity = 2;
	cr_assert(!order_total(&state, &total));
	state.lines[1].quantity = -1;
	cr_assert(!order_total(&state, &total));
	cr_assert_eq(total, 5);
}

Test(order, codes_and_names_are_stable)
{
	cr_assert_str_eq(order_verdict_code(ORDER_OK), "");
	cr_assert_str_eq(order_verdict_code(ORDER_REJ_NOT_FOUND), "not_found");
	cr_assert_str_eq(order_verdict_code(ORDER_REJ_EXISTS), "exists");
	cr_assert_str_eq(order_verdict_code(ORDER_REJ_INVALID), "invalid");
	cr_assert_str_eq(order_verdict_code(ORDER_REJ_WRONG_STATE), "wrong_state");
	cr_assert_str_eq(order_verdict_code(ORDER_REJ_BAD_TOKEN), "bad_token");
	cr_assert_str_eq(order_verdict_code(ORDER_REJ_EXPIRED), "expired");
	cr_assert_str_eq(order_verdict_code((order_verdict)99), "unknown");
	cr_assert_str_eq(order_status_name(ORDER_AWAITING_CONFIRMATION), "awaiting_confirmation");
	cr_assert_str_eq(order_status_name(ORDER_PAYMENT_FAILED), "payment_failed");
	cr_assert_null(order_status_name((order_status)99));
	cr_assert_str_eq(order_command_type(ORDER_MARK_PAYMENT_FAILED), "MarkPaymentFailed");
	cr_assert_str_eq(order_event_type(ORDER_CONFIRMED_BY_CUSTOMER), "OrderConfirmedByCustomer");
	cr_assert_str_eq(order_status_name(ORDER_SHIPPED), "shipped");
	cr_assert_str_eq(order_status_name(ORDER_DELIVERED), "delivered");
	cr_assert_str_eq(order_command_type(ORDER_SHIP), "Ship");
	cr_assert_str_eq(order_command_type(ORDER_DELIVER), "Deliver");
	cr_assert_str_eq(order_event_type(ORDER_SHIPPED_EVENT), "OrderShipped");
	cr_assert_str_eq(order_event_type(ORDER_DELIVERED_EVENT), "OrderDelivered");
	cr_assert_str_eq(ORDER_REASON_ADMIN, "admin");
	cr_assert_null(order_command_type((order_command_kind)99));
	cr_assert_null(order_event_type((order_event_kind)99));
}

/* ---- codecs ---- */

static void assert_data_equal(const order_data *a, const order_data *b)
{
	cr_assert_str_eq(a->customer_id, b->customer_id);
	cr_assert_eq(a->line_count, b->line_count);
	for (size_t i = 0; i < a->line_count; i++) {
		cr_assert_str_eq(a->lines[i].product_id, b->lines[i].product_id);
		cr_assert_str_eq(a->lines[i].name, b->lines[i].name);
		cr_assert_eq(a->lines[i].unit_price_cents, b->lines[i].unit_price_cents);
		cr_assert_eq(a->lines[i].quantity, b->lines[i].quantity);
	}
	cr_assert_str_eq(a->currency, b->currency);
	cr_assert_str_eq(a->token_hash, b->token_hash);
	cr_assert_eq(a->deadline_ms, b->deadline_ms);
	cr_assert_eq(a->ttl_ms, b->ttl_ms);
	cr_assert_eq(a->time_ms, b->time_ms);
	cr_assert_str_eq(a->reason, b->reason);
	cr_assert_eq(a->product_count, b->product_count);
	for (size_t i = 0; i < a->product_count; i++)
		cr_assert_str_eq(a->product_ids[i], b->product_ids[i]);
	cr_assert_str_eq(a->charge_id, b->charge_id);
	cr_assert_str_eq(a->brand, b->brand);
	cr_assert_str_eq(a->last4, b->last4);
	cr_assert_eq(a->paid, b->paid);
	cr_assert_str_eq(a->carrier, b->carrier);
	cr_assert_str_eq(a->tracking_number, b->tracking_number);
}

static void assert_command_round_trip(const order_command *c)
{
	static order_command decoded;

	mp_writer_reset(writer);
	cr_assert_eq(order_command_encode(writer, c), ORN_OK);
	cr_assert_eq(order_command_decode(order_command_type(c->kind), mp_writer_data(writer),
	                                  mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_eq(decoded.kind, c->kind);
	assert_data_equal(&decoded.data, &c->data);
}

static void assert_event_round_trip(const order_event *e)
{
	static order_event decoded;

	mp_writer_reset(writer);
	cr_assert_eq(order_event_encode(writer, e), ORN_OK);
	cr_assert_eq(order_event_decode(order_event_type(e->kind), mp_writer_data(writer),
	                                mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_eq(decoded.kind, e->kind);
	assert_data_equal(&decoded.data, &e->data);
}

Test(order, commands_round_trip)
{
	assert_command_round_trip(place());
	assert_command_round_trip(command(ORDER_MARK_RESERVED, T0));
	assert_command_round_trip(reject_for_stock("p1"));
	assert_command_round_trip(confirm(HASH, T0));
	assert_command_round_trip(cancel("customer", T0));
	assert_command_round_trip(mark_paid("ch_1"));
	assert_command_round_trip(mark_failed());
	assert_command_round_trip(ship("DHL Express", "JD014600003SE"));
	assert_command_round_trip(command(ORDER_DELIVER, T0 + 600));
	assert_command_round_trip(cancel("admin", T0));
}

/* Decides c, checks the event round-trips, applies it. */
static void given_round_trip(const order_command *c)
{
	when(c);
	cr_assert_eq(verdict, ORDER_OK);
	assert_event_round_trip(&out.items[0]);
	and_applied();
}

Test(order, an_order_placed_whose_address_was_erased_still_decodes)
{
	when(place());
	cr_assert_eq(verdict, ORDER_OK);
	out.items[0].data.customer_email[0] = '\0'; /* as the orders model blanks it (ADR 027) */
	assert_event_round_trip(&out.items[0]);
}

Test(order, events_round_trip)
{
	given_round_trip(place());
	given_round_trip(command(ORDER_MARK_RESERVED, T0 + 1));
	given_round_trip(confirm(HASH, T0 + 2));
	given_round_trip(mark_paid("ch_1"));
	order_state_init(&state);
	given_pending();
	given_round_trip(reject_for_stock("p1"));
	order_state_init(&state);
	given_awaiting_payment();
	given_round_trip(mark_failed());
	order_state_init(&state);
	given_pending();
	given_round_trip(cancel("expired", DEADLINE));
	order_state_init(&state);
	given_confirmed();
	given_round_trip(ship("UPS", "1Z 999 AA1 01 2345 6784"));
	given_round_trip(command(ORDER_DELIVER, T0 + 600));
	order_state_init(&state);
	given_confirmed();
	given_round_trip(cancel("admin", T0 + 500));
	cr_assert(state.cancelled_after_payment);
}

Test(order, encoders_reject_unknown_kinds_bad_counts_and_unterminated_strings)
{
	order_command *c;
	order_event e = {.kind = ORDER_CANCELLED_EVENT};

	cr_assert_eq(order_command_encode(writer, command((order_command_kind)42, 0)), ORN_EINVAL);
	cr_assert_eq(order_event_encode(writer, &(order_event){.kind = (order_event_kind)42}), ORN_EINVAL);
	c = place();
	memset(c->data.currency, 'E', sizeof c->data.currency);
	cr_assert_eq(order_command_encode(writer, c), ORN_EINVAL);
	c = place();
	c->data.line_count = ORDER_LINES_MAX + 1;
	cr_assert_eq(order_command_encode(writer, c), ORN_EINVAL);
	c = place();
	memset(c->data.lines[1].name, 'n', sizeof c->data.lines[1].name);
	cr_assert_eq(order_command_encode(writer, c), ORN_EINVAL);
	c = place();
	memset(c->data.lines[1].product_id, 'n', sizeof c->data.lines[1].product_id);
	cr_assert_eq(order_command_encode(writer, c), ORN_EINVAL);
	e.data.product_count = ORDER_LINES_MAX + 1;
	cr_assert_eq(order_event_encode(writer, &e), ORN_EINVAL);
	e.data.product_count = 1;
	memset(e.data.product_ids[0], 'p', ORDER_ID_MAX);
	cr_assert_eq(order_event_encode(writer, &e), ORN_EINVAL);
}

static orn_rc decode_written_command(const char *type)
{
	static order_command c;

	return order_command_decode(type, mp_writer_data(writer), mp_writer_size(writer), &c);
}

static orn_rc decode_written_event(const char *type)
{
	static order_event e;

	return order_event_decode(type, mp_writer_data(writer), mp_writer_size(writer), &e);
}

Test(order, decoders_are_strict)
{
	static order_command c;

	cr_assert_eq(order_command_encode(writer, place()), ORN_OK);
	cr_assert_eq(decode_written_command("StealOrder"), ORN_EINVAL);
	cr_assert_eq(decode_written_command(NULL), ORN_EINVAL);
	cr_assert_eq(decode_written_event(ORDER_CMD_PLACE), ORN_EINVAL);
	for (size_t len = 0; len < mp_writer_size(writer); len++)
		cr_assert_eq(order_command_decode(ORDER_CMD_PLACE, mp_writer_data(writer), len, &c),
		             ORN_EDECODE, "length %zu", len);
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(ORDER_CMD_PLACE), ORN_EDECODE);
	/* missing, repeated, wrong type */
	mp_writer_reset(writer);
	mp_write_map(writer, 0);
	cr_assert_eq(decode_written_command(ORDER_CMD_MARK_RESERVED), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 2);
	cr_assert_eq(decode_written_command(ORDER_CMD_MARK_RESERVED), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "now_ms");
	mp_write_cstr(writer, "1");
	cr_assert_eq(decode_written_command(ORDER_CMD_MARK_RESERVED), ORN_EDECODE);
	/* an unknown key is skipped; an event key in a command is unknown */
	mp_writer_reset(writer);
	mp_write_map(writer, 3);
	mp_write_cstr(writer, "at_ms");
	mp_write_cstr(writer, "x");
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "extra");
	mp_write_map(writer, 0);
	cr_assert_eq(decode_written_command(ORDER_CMD_MARK_RESERVED), ORN_OK);
	/* not a map; non-string key */
	mp_writer_reset(writer);
	mp_write_array(writer, 0);
	cr_assert_eq(decode_written_command(ORDER_CMD_MARK_RESERVED), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_int(writer, 1);
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(ORDER_CMD_MARK_RESERVED), ORN_EDECODE);
}

/* Writes a RejectForStock payload whose product_ids value is written by fn. */
static void write_reject(void (*fn)(void))
{
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "product_ids");
	fn();
}

static void ids_too_many(void)
{
	mp_write_array(writer, ORDER_LINES_MAX + 1);
	for (int i = 0; i <= ORDER_LINES_MAX; i++)
		mp_write_cstr(writer, "p");
}

static void ids_not_strings(void)
{
	mp_write_array(writer, 1);
	mp_write_int(writer, 1);
}

static void ids_not_an_array(void)
{
	mp_write_cstr(writer, "p1");
}

Test(order, arrays_are_bounded_and_typed)
{
	write_reject(ids_too_many);
	cr_assert_eq(decode_written_command(ORDER_CMD_REJECT_FOR_STOCK), ORN_EDECODE);
	write_reject(ids_not_strings);
	cr_assert_eq(decode_written_command(ORDER_CMD_REJECT_FOR_STOCK), ORN_EDECODE);
	write_reject(ids_not_an_array);
	cr_assert_eq(decode_written_command(ORDER_CMD_REJECT_FOR_STOCK), ORN_EDECODE);
}

/* Writes a PlaceOrder payload with a lines value of one line map holding
 * count keys written by fn. */
static void write_place_with_line(uint32_t count, void (*fn)(void))
{
	order_command *c = place();

	c->data.line_count = 0;
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "lines");
	mp_write_array(writer, 1);
	mp_write_map(writer, count);
	fn();
}

static void line_complete_and_extra(void)
{
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	mp_write_cstr(writer, "name");
	mp_write_cstr(writer, "n");
	mp_write_cstr(writer, "unit_price_cents");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "colour");
	mp_write_cstr(writer, "red");
}

static void line_repeated(void)
{
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 1);
}

static void line_bad_key(void)
{
	mp_write_int(writer, 1);
	mp_write_int(writer, 1);
}

static void line_bad_value(void)
{
	mp_write_cstr(writer, "name");
	mp_write_int(writer, 1);
}

static void line_missing(void)
{
	mp_write_cstr(writer, "name");
	mp_write_cstr(writer, "n");
}

Test(order, line_maps_are_strict)
{
	/* a complete line (an extra key skipped), but the other keys of place missing */
	write_place_with_line(5, line_complete_and_extra);
	cr_assert_eq(decode_written_command(ORDER_CMD_PLACE), ORN_EDECODE);
	write_place_with_line(2, line_repeated);
	cr_assert_eq(decode_written_command(ORDER_CMD_PLACE), ORN_EDECODE);
	write_place_with_line(1, line_bad_key);
	cr_assert_eq(decode_written_command(ORDER_CMD_PLACE), ORN_EDECODE);
	write_place_with_line(1, line_bad_value);
	cr_assert_eq(decode_written_command(ORDER_CMD_PLACE), ORN_EDECODE);
	write_place_with_line(1, line_missing);
	cr_assert_eq(decode_written_command(ORDER_CMD_PLACE), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "lines");
	mp_write_array(writer, 1);
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(ORDER_CMD_PLACE), ORN_EDECODE);
}

/* Encodes e and expects its decoding to be rejected. */
static void assert_event_rejected(const order_event *e)
{
	mp_writer_reset(writer);
	cr_assert_eq(order_event_encode(writer, e), ORN_OK);
	cr_assert_eq(decode_written_event(order_event_type(e->kind)), ORN_EDECODE);
}

Test(order, event_decoding_rejects_values_decide_cannot_emit)
{
	static order_event e;

	memset(&e, 0, sizeof e);
	e.kind = ORDER_RESERVED;
	e.data.time_ms = -1;
	assert_event_rejected(&e);
	e.kind = ORDER_PLACED;
	e.data.time_ms = T0;
	assert_event_rejected(&e);
	e.kind = ORDER_CONFIRMED_BY_CUSTOMER;
	e.data.deadline_ms = T0;
	assert_event_rejected(&e);
	e.kind = ORDER_PAID;
	assert_event_rejected(&e);
	e.kind = ORDER_PAYMENT_FAILED_EVENT;
	assert_event_rejected(&e);
	e.kind = ORDER_CANCELLED_EVENT;
	strcpy(e.data.reason, "bored");
	assert_event_rejected(&e);
	strcpy(e.data.reason, "out_of_stock");
	assert_event_rejected(&e); /* no products */
	strcpy(e.data.reason, "customer");
	e.data.product_count = 1;
	strcpy(e.data.product_ids[0], "p1");
	assert_event_rejected(&e); /* products without out_of_stock */
	e.data.product_count = 0;
	mp_writer_reset(writer);
	cr_assert_eq(order_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(decode_written_event(ORDER_EV_CANCELLED), ORN_OK);
}

/* ---- snapshot and restore ---- */

static void assert_states_equal(const order_state *a, const order_state *b)
{
	cr_assert_eq(a->status, b->status);
	cr_assert_str_eq(a->customer_id, b->customer_id);
	cr_assert_eq(a->line_count, b->line_count);
	for (size_t i = 0; i < a->line_count; i++) {
		cr_assert_str_eq(a->lines[i].product_id, b->lines[i].product_id);
		cr_assert_str_eq(a->lines[i].name, b->lines[i].name);
		cr_assert_eq(a->lines[i].unit_price_cents, b->lines[i].unit_price_cents);
		cr_assert_eq(a->lines[i].quantity, b->lines[i].quantity);
	}
	cr_assert_str_eq(a->currency, b->currency);
	cr_assert_str_eq(a->token_hash, b->token_hash);
	cr_assert_eq(a->confirmation_deadline_ms, b->confirmation_deadline_ms);
	cr_assert_eq(a->payment_deadline_ms, b->payment_deadline_ms);
	cr_assert_eq(a->cancelled_product_count, b->cancelled_product_count);
	for (size_t i = 0; i < a->cancelled_product_count; i++)
		cr_assert_str_eq(a->cancelled_products[i], b->cancelled_products[i]);
	cr_assert_str_eq(a->charge_id, b->charge_id);
	cr_assert_str_eq(a->brand, b->brand);
	cr_assert_str_eq(a->last4, b->last4);
	cr_assert_eq(a->cancelled_after_payment, b->cancelled_after_payment);
	cr_assert_str_eq(a->carrier, b->carrier);
	cr_assert_str_eq(a->tracking_number, b->tracking_number);
	cr_assert_eq(a->shipped_at_ms, b->shipped_at_ms);
	cr_assert_eq(a->delivered_at_ms, b->delivered_at_ms);
	cr_assert_eq(a->history_count, b->history_count);
	for (size_t i = 0; i < a->history_count; i++) {
		cr_assert_eq(a->history[i].status, b->history[i].status);
		cr_assert_eq(a->history[i].at_ms, b->history[i].at_ms);
		cr_assert_str_eq(a->history[i].reason, b->history[i].reason);
	}
}

static void assert_snapshot_equivalent(void)
{
	static order_state restored;

	mp_writer_reset(writer);
	cr_assert_eq(order_kind.snapshot(&state, writer), ORN_OK);
	order_state_init(&restored);
	cr_assert_eq(order_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	assert_states_equal(&restored, &state);
}

Test(order, snapshots_restore_the_same_state)
{
	assert_snapshot_equivalent();
	given_pending();
	assert_snapshot_equivalent();
	given(command(ORDER_MARK_RESERVED, T0 + 1));
	assert_snapshot_equivalent();
	given(confirm(HASH, T0 + 2));
	assert_snapshot_equivalent();
	given(mark_paid("ch_1"));
	assert_snapshot_equivalent();
	order_state_init(&state);
	given_pending();
	given(reject_for_stock("p2"));
	assert_snapshot_equivalent();
	order_state_init(&state);
	given_awaiting_payment();
	given(mark_failed());
	assert_snapshot_equivalent();
	order_state_init(&state);
	given_awaiting_confirmation();
	given(cancel("customer", T0 + 5));
	assert_snapshot_equivalent();
	order_state_init(&state);
	given_confirmed();
	given(ship("DHL", "JD1"));
	assert_snapshot_equivalent();
	given(command(ORDER_DELIVER, T0 + 600));
	assert_snapshot_equivalent();
	cr_assert_eq(state.history_count, ORDER_HISTORY_MAX, "the longest path fills the history");
	order_state_init(&state);
	given_confirmed();
	given(cancel("customer", T0 + 500));
	assert_snapshot_equivalent();
	cr_assert(state.cancelled_after_payment);
}

static orn_rc restore_written(void)
{
	return order_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer));
}

Test(order, restore_rejects_snapshots_no_stream_could_produce)
{
	static order_event reserved = {.kind = ORDER_RESERVED, .data = {.time_ms = 5}};

	given_pending();
	/* a reservation before any placement */
	mp_write_array(writer, 1);
	mp_write_array(writer, 2);
	mp_write_cstr(writer, ORDER_EV_RESERVED);
	cr_assert_eq(order_event_encode(writer, &reserved), ORN_OK);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	/* malformed pair, trailing bytes, not an array, unknown type */
	mp_writer_reset(writer);
	mp_write_array(writer, 1);
	mp_write_array(writer, 1);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_array(writer, 0);
	mp_write_nil(writer);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 0);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_array(writer, 1);
	mp_write_array(writer, 2);
	mp_write_cstr(writer, "Nope");
	mp_write_map(writer, 0);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	/* the state is untouched */
	cr_assert_eq(state.status, ORDER_PENDING);
}

Test(order, restore_and_snapshot_report_allocation_failure)
{
	if (!failalloc_available())
		cr_skip_test("no allocation failure injection in this build");
	mp_write_array(writer, 0);
	failalloc_after(0);
	cr_assert_eq(restore_written(), ORN_ENOMEM);
	failalloc_off();
	failalloc_after(0);
	cr_assert_eq(order_kind.snapshot(&state, writer), ORN_ENOMEM);
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

TestSuite(order_kind, .init = kind_setup, .fini = kind_teardown);

static orn_rc kind_decide(const order_command *c)
{
	env_envelope cmd = {.schema = 1};

	mp_writer_reset(writer);
	cr_assert_eq(order_command_encode(writer, c), ORN_OK);
	snprintf(cmd.type, sizeof cmd.type, "%s", order_command_type(c->kind));
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	act_decision_clear(decision);
	return order_kind.decide(&state, &cmd, decision);
}

static void kind_apply(void)
{
	env_envelope event;

	for (size_t i = 0; i < act_decision_count(decision); i++) {
		cr_assert_eq(act_decision_event(decision, i, &event), ORN_OK);
		cr_assert_eq(order_kind.evolve(&state, &event), ORN_OK);
	}
}

static void then_decision_rejected(const char *code)
{
	cr_assert_str_eq(act_decision_rejection(decision), code);
	cr_assert_eq(act_decision_count(decision), 0);
	cr_assert_not_null(act_decision_detail(decision));
}

Test(order_kind, describes_the_aggregate)
{
	order_state *s = malloc(order_kind.state_size);

	cr_assert_str_eq(order_kind.aggregate, "order");
	cr_assert_eq(order_kind.state_size, sizeof(order_state));
	cr_assert_eq(order_kind.snapshot_schema, ORDER_SNAPSHOT_SCHEMA);
	cr_assert_not_null(s);
	order_kind.init(s);
	cr_assert_eq(s->status, ORDER_NONE);
	order_kind.dispose(s);
	free(s);
}

Test(order_kind, an_order_lives_through_the_kind_table)
{
	env_envelope event;

	cr_assert_eq(kind_decide(place()), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 1);
	cr_assert_eq(act_decision_event(decision, 0, &event), ORN_OK);
	cr_assert_str_eq(event.type, ORDER_EV_PLACED);
	kind_apply();
	cr_assert_eq(kind_decide(command(ORDER_MARK_RESERVED, T0 + 1)), ORN_OK);
	kind_apply();
	cr_assert_eq(kind_decide(command(ORDER_MARK_RESERVED, T0 + 1)), ORN_OK); /* no-op */
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 0);
	cr_assert_eq(kind_decide(confirm(HASH, T0 + 2)), ORN_OK);
	kind_apply();
	cr_assert_eq(kind_decide(mark_paid("ch_1")), ORN_OK);
	kind_apply();
	cr_assert_eq(state.status, ORDER_CONFIRMED);
	cr_assert_eq(state.history_count, 4);
}

Test(order_kind, rejections_carry_code_and_detail)
{
	cr_assert_eq(kind_decide(command(ORDER_MARK_RESERVED, T0)), ORN_OK);
	then_decision_rejected("not_found");
	given_awaiting_confirmation();
	cr_assert_eq(kind_decide(place()), ORN_OK);
	then_decision_rejected("exists");
	cr_assert_eq(kind_decide(confirm(OTHER_HASH, T0 + 2)), ORN_OK);
	then_decision_rejected("bad_token");
	cr_assert_eq(kind_decide(confirm(HASH, DEADLINE)), ORN_OK);
	then_decision_rejected("expired");
	cr_assert_eq(kind_decide(cancel("expired", T0 + 3)), ORN_OK);
	then_decision_rejected("invalid");
	cr_assert_eq(kind_decide(cancel("whim", T0 + 3)), ORN_OK);
	then_decision_rejected("invalid");
	cr_assert_eq(kind_decide(mark_paid("ch_1")), ORN_OK);
	then_decision_rejected("wrong_state");
	cr_assert_str_eq(act_decision_detail(decision),
	                 "MarkPaid is not accepted while the order is awaiting_confirmation");
}

Test(order_kind, undecodable_commands_and_events_are_errors)
{
	env_envelope env = {.schema = 2};
	uint8_t nil = 0xc0;

	strcpy(env.type, ORDER_CMD_MARK_RESERVED);
	env.payload = &nil;
	env.payload_len = 1;
	cr_assert_eq(order_kind.decide(&state, &env, decision), ORN_EDECODE);
	env.schema = 1;
	cr_assert_eq(order_kind.decide(&state, &env, decision), ORN_EDECODE);
	env.schema = 2;
	strcpy(env.type, ORDER_EV_RESERVED);
	cr_assert_eq(order_kind.evolve(&state, &env), ORN_EDECODE);
	env.schema = 1;
	cr_assert_eq(order_kind.evolve(&state, &env), ORN_EDECODE);
	strcpy(env.type, "Nope");
	cr_assert_eq(order_kind.evolve(&state, &env), ORN_EINVAL);
}

static void view_json(char *json, size_t cap)
{
	mp_writer *text = mp_writer_create();
	mp_reader r;

	cr_assert_not_null(text);
	mp_writer_reset(writer);
	cr_assert_eq(order_kind.view(&state, writer), ORN_OK);
	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_to_json(&r, text), ORN_OK);
	snprintf(json, cap, "%.*s", (int)mp_writer_size(text), (const char *)mp_writer_data(text));
	mp_writer_destroy(text);
}

Test(order_kind, the_view_shows_status_history_payment_and_deadlines)
{
	char json[2048];

	given_awaiting_payment();
	given(mark_paid("ch_1"));
	view_json(json, sizeof json);
	cr_assert_str_eq(
	        json,
	        "{\"status\":\"confirmed\",\"customer_id\":\"u1\",\"customer_email\":\"ann@example."
	        "com\",\"request_hash\":\"" HASH "\",\"items\":[{\"product_id\":\"p1\",\"name\":"
	        "\"Item p1\",\"unit_price_cents\":250,\"quantity\":2},{\"product_id\":\"p2\",\"name\":\"Item "
	        "p2\",\"unit_price_cents\":1000,\"quantity\":1}],\"total_cents\":1500,\"currency\":\"EUR\","
	        "\"created_at_ms\":1000000,\"updated_at_ms\":1000300,\"history\":[{\"status\":\"pending\","
	        "\"at_ms\":1000000,\"reason\":null},{\"status\":\"awaiting_confirmation\",\"at_ms\":1000100,"
	        "\"reason\":null},{\"status\":\"awaiting_payment\",\"at_ms\":1000200,\"reason\":null},{"
	        "\"status\":\"confirmed\",\"at_ms\":1000300,\"reason\":null}],\"payment\":{\"brand\":"
	        "\"visa\","
	        "\"last4\":\"4242\"},\"confirmation_deadline_ms\":1900000,\"payment_deadline_ms\":1900200,"
	        "\"cancelled_products\":[],\"shipment\":null}");
	given(ship("DHL", "JD1"));
	view_json(json, sizeof json);
	cr_assert(strstr(json, "\"status\":\"shipped\"") != NULL, "%s", json);
	cr_assert(strstr(json, "\"payment\":{\"brand\":\"visa\"") != NULL, "%s", json);
	cr_assert(strstr(json, "\"shipment\":{\"carrier\":\"DHL\",\"tracking_number\":\"JD1\","
	                       "\"shipped_at_ms\":1000500,\"delivered_at_ms\":null}") != NULL,
	          "%s", json);
	given(command(ORDER_DELIVER, T0 + 600));
	view_json(json, sizeof json);
	cr_assert(strstr(json, "\"delivered_at_ms\":1000600}") != NULL, "%s", json);
	order_state_init(&state);
	given_pending();
	given(reject_for_stock("p1"));
	view_json(json, sizeof json);
	cr_assert(strstr(json, "\"payment\":null") != NULL, "%s", json);
	cr_assert(strstr(json, "\"payment_deadline_ms\":null") != NULL, "%s", json);
	cr_assert(strstr(json, "\"reason\":\"out_of_stock\"") != NULL, "%s", json);
	cr_assert(strstr(json, "\"cancelled_products\":[\"p1\"]") != NULL, "%s", json);
	order_state_init(&state);
	view_json(json, sizeof json);
	cr_assert(strstr(json, "\"status\":\"none\"") != NULL, "%s", json);
	given_pending();
	state.lines[0].unit_price_cents = INT64_MAX;
	mp_writer_reset(writer);
	cr_assert_eq(order_kind.view(&state, writer), ORN_EINTERNAL);
}

Test(order_kind, decide_and_evolve_report_allocation_failure)
{
	env_envelope cmd = {.schema = 1, .type = ORDER_CMD_PLACE};
	env_envelope event;
	unsigned failures = 0;
	orn_rc rc;

	if (!failalloc_available())
		cr_skip_test("no allocation failure injection in this build");
	cr_assert_eq(order_command_encode(writer, place()), ORN_OK);
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	for (long n = 0;; n++, failures++) {
		act_decision_clear(decision);
		failalloc_after(n);
		rc = order_kind.decide(&state, &cmd, decision);
		failalloc_off();
		if (rc == ORN_OK)
			break;
		cr_assert_eq(rc, ORN_ENOMEM, "allocation %ld", n);
	}
	cr_assert_geq(failures, 3);
	cr_assert_eq(act_decision_event(decision, 0, &event), ORN_OK);
	failalloc_after(0);
	rc = order_kind.evolve(&state, &event);
	failalloc_off();
	cr_assert_eq(rc, ORN_ENOMEM);
	cr_assert_eq(order_kind.evolve(&state, &event), ORN_OK);
}

Test(order_kind, decide_reports_a_full_decision)
{
	env_envelope cmd = {.schema = 1, .type = ORDER_CMD_PLACE};

	cr_assert_eq(order_command_encode(writer, place()), ORN_OK);
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	act_decision_clear(decision);
	for (size_t i = 0; i < ENV_MAX_EVENTS; i++)
		cr_assert_eq(act_decision_emit(decision, "Filler", 1, (const uint8_t *)"\xc0", 1), ORN_OK);
	cr_assert_eq(order_kind.decide(&state, &cmd, decision), ORN_ETOOBIG);
}
