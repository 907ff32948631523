/* test_saga_plan.c — unit tests of the checkout saga's decisions
 * (checkout/saga_plan.c).
 *
 * Given an order's state (events folded with order_evolve), when an event
 * arrives or commands are answered, then the plan: its commands in order,
 * their deterministic ids and payloads, what follows, and the expiry.
 * Payloads are checked by decoding them with the aggregates' own codecs and,
 * for order commands, by deciding them against the order. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cart.h"
#include "failalloc.h"
#include "holds.h"
#include "saga_plan.h"
#include "stock.h"

#define HASH     "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define T0       1000000
#define DEADLINE (T0 + 900000)
#define TTL      600000
#define ORDER    "o-1"

static order_state *order;
static saga_plan *plan, *next;
static mp_writer *writer;

static void setup(void)
{
	order = malloc(sizeof *order);
	plan = malloc(sizeof *plan);
	next = malloc(sizeof *next);
	writer = mp_writer_create();
	cr_assert(order && plan && next && writer);
	order_state_init(order);
}

static void teardown(void)
{
	free(order);
	free(plan);
	free(next);
	mp_writer_destroy(writer);
}

TestSuite(saga_plan, .init = setup, .fini = teardown);

/* ---- givens ---- */

static order_event *event(order_event_kind kind, int64_t at)
{
	static order_event e;

	memset(&e, 0, sizeof e);
	e.kind = kind;
	e.data.time_ms = at;
	return &e;
}

/* Given OrderPlaced with lines p-1 (qty 1), p-2 (qty 2), ... for count lines. */
static void given_placed(size_t count)
{
	order_event *e = event(ORDER_PLACED, T0);

	strcpy(e->data.customer_id, "alice");
	strcpy(e->data.customer_email, "alice@example.com");
	strcpy(e->data.request_hash, HASH);
	strcpy(e->data.token_hash, HASH);
	strcpy(e->data.currency, "EUR");
	e->data.deadline_ms = DEADLINE;
	for (size_t i = 0; i < count; i++) {
		order_line *l = &e->data.lines[e->data.line_count++];
		snprintf(l->product_id, sizeof l->product_id, "p-%zu", i + 1);
		snprintf(l->name, sizeof l->name, "Item %zu", i + 1);
		l->unit_price_cents = 100;
		l->quantity = (int64_t)i + 1;
	}
	cr_assert(order_evolve(order, e));
}

static void given(order_event_kind kind, const char *reason)
{
	order_event *e = event(kind, T0 + 10);

	if (kind == ORDER_CONFIRMED_BY_CUSTOMER)
		e->data.deadline_ms = T0 + 10 + TTL;
	if (kind == ORDER_PAID) {
		strcpy(e->data.charge_id, "ch_1");
		strcpy(e->data.brand, "visa");
		strcpy(e->data.last4, "4242");
	}
	if (kind == ORDER_SHIPPED_EVENT) {
		strcpy(e->data.carrier, "DHL");
		strcpy(e->data.tracking_number, "JD1");
	}
	if (kind == ORDER_CANCELLED_EVENT && order->status == ORDER_CONFIRMED)
		e->data.paid = true; /* as decide records a cancel after payment */
	if (reason != NULL)
		strcpy(e->data.reason, reason);
	if (reason != NULL && strcmp(reason, ORDER_REASON_OUT_OF_STOCK) == 0) {
		strcpy(e->data.product_ids[0], "p-2");
		e->data.product_count = 1;
	}
	cr_assert(order_evolve(order, e));
}

/* ---- thens ---- */

static void then_command(const saga_plan *p, size_t i, saga_command_kind kind, const char *target,
                         const char *command_id)
{
	cr_assert_lt(i, p->count);
	cr_expect_eq(p->commands[i].kind, kind, "command %zu kind", i);
	cr_expect_str_eq(p->commands[i].target, target);
	cr_expect_str_eq(p->commands[i].command_id, command_id);
	cr_expect_eq(p->results[i], SAGA_RESULT_NONE);
}

/* The first lines commands of p are a kind per line of the order, in line order. */
static void then_lines(const saga_plan *p, saga_command_kind kind, const char *step, size_t lines)
{
	char id[96], product[32];

	cr_assert_geq(p->count, lines);
	for (size_t i = 0; i < lines; i++) {
		snprintf(product, sizeof product, "p-%zu", i + 1);
		snprintf(id, sizeof id, ORDER ":%s:%s", step, product);
		then_command(p, i, kind, product, id);
	}
}

/* Every command of p is a kind per line of the order, in line order. */
static void then_per_line(const saga_plan *p, saga_command_kind kind, const char *step, size_t lines)
{
	cr_assert_eq(p->count, lines);
	then_lines(p, kind, step, lines);
}

/* A kind per line, then CloseOrder{the order} to the customer's holds (ADR 026). */
static void then_per_line_then_close(const saga_plan *p, saga_command_kind kind, const char *step,
                                     size_t lines)
{
	holds_command c;

	cr_assert_eq(p->count, lines + 1);
	then_lines(p, kind, step, lines);
	then_command(p, lines, SAGA_CLOSE_HOLDS, "alice", ORDER ":close");
	mp_writer_reset(writer);
	cr_assert_eq(saga_command_encode(p, lines, T0 + 50, writer), ORN_OK);
	cr_assert_eq(holds_command_decode(saga_command_type(SAGA_CLOSE_HOLDS), mp_writer_data(writer),
	                                  mp_writer_size(writer), &c),
	             ORN_OK);
	cr_expect_eq(c.kind, HOLDS_CLOSE);
	cr_expect_str_eq(c.order_id, ORDER);
}

/* Decodes the payload of stock command i. */
static stock_command stock_payload(const saga_plan *p, size_t i)
{
	stock_command c;

	mp_writer_reset(writer);
	cr_assert_eq(saga_command_encode(p, i, T0 + 50, writer), ORN_OK);
	cr_assert_eq(stock_command_decode(saga_command_type(p->commands[i].kind), mp_writer_data(writer),
	                                  mp_writer_size(writer), &c),
	             ORN_OK);
	return c;
}

/* Decodes order command i and decides it against the order: the verdict. */
static order_verdict order_payload_decided(const saga_plan *p, size_t i, int64_t now, order_command *c,
                                           order_events *out)
{
	mp_writer_reset(writer);
	cr_assert_eq(saga_command_encode(p, i, now, writer), ORN_OK);
	cr_assert_eq(order_command_decode(saga_command_type(p->commands[i].kind), mp_writer_data(writer),
	                                  mp_writer_size(writer), c),
	             ORN_OK);
	cr_expect_eq(c->data.time_ms, now);
	return order_decide(order, c, out);
}

static void answer_all(saga_plan *p, saga_reply reply)
{
	for (size_t i = 0; i < p->count; i++)
		saga_plan_record(p, i, reply);
}

/* ---- OrderPlaced ---- */

Test(saga_plan, placed_reserves_every_line)
{
	given_placed(3);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_PLACED, order), ORN_OK);
	cr_expect_str_eq(plan->order_id, ORDER);
	then_per_line(plan, SAGA_RESERVE_STOCK, "reserve", 3);
	cr_expect_eq(plan->stage, SAGA_STAGE_RESERVE);
	for (size_t i = 0; i < 3; i++) {
		stock_command c = stock_payload(plan, i);
		cr_expect_eq(c.kind, STOCK_RESERVE);
		cr_expect_str_eq(c.reservation_id, ORDER, "the reservation id is the order id");
		cr_expect_eq(c.quantity, (int64_t)i + 1);
	}
}

Test(saga_plan, every_line_reserved_then_mark_reserved)
{
	order_command c;
	order_events out;

	given_placed(3);
	saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
	answer_all(plan, saga_reply_classify(SAGA_RESERVE_STOCK, BUS_ACCEPTED, ""));
	cr_expect_not(saga_plan_needs_reload(plan));
	cr_assert(saga_plan_next(plan, order, next));
	cr_assert_eq(next->count, 1);
	then_command(next, 0, SAGA_MARK_RESERVED, ORDER, ORDER ":reserved");
	cr_expect_eq(next->stage, SAGA_STAGE_MARK);
	cr_expect_eq(order_payload_decided(next, 0, T0 + 50, &c, &out), ORDER_OK);
	cr_expect_eq(c.kind, ORDER_MARK_RESERVED);
	cr_expect_eq(out.items[0].kind, ORDER_RESERVED);
}

Test(saga_plan, mark_reserved_accepted_ends_the_step)
{
	given_placed(1);
	saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
	answer_all(plan, SAGA_REPLY_DONE);
	saga_plan_next(plan, order, next);
	saga_plan_record(next, 0, saga_reply_classify(SAGA_MARK_RESERVED, BUS_ACCEPTED, ""));
	cr_expect_not(saga_plan_needs_reload(next));
	cr_expect_not(saga_plan_next(next, order, plan));
}

Test(saga_plan, out_of_stock_on_one_of_three_lines_rejects_naming_it_then_releases_all)
{
	order_command c;
	order_events out;

	given_placed(3);
	saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
	saga_plan_record(plan, 0, saga_reply_classify(SAGA_RESERVE_STOCK, BUS_ACCEPTED, ""));
	saga_plan_record(plan, 1, saga_reply_classify(SAGA_RESERVE_STOCK, BUS_REJECTED, "out_of_stock"));
	saga_plan_record(plan, 2, saga_reply_classify(SAGA_RESERVE_STOCK, BUS_ACCEPTED, ""));
	cr_expect_eq(plan->results[1], SAGA_RESULT_REFUSED);
	cr_assert(saga_plan_next(plan, order, next));
	cr_assert_eq(next->count, 1, "the rejection first, alone");
	then_command(next, 0, SAGA_REJECT_FOR_STOCK, ORDER, ORDER ":reject");
	cr_expect_eq(next->stage, SAGA_STAGE_REJECT);
	cr_assert_eq(next->refused_count, 1);
	cr_expect_str_eq(next->refused[0], "p-2");
	cr_expect_eq(order_payload_decided(next, 0, T0 + 60, &c, &out), ORDER_OK);
	cr_assert_eq(c.data.product_count, 1);
	cr_expect_str_eq(c.data.product_ids[0], "p-2");
	cr_assert_eq(out.count, 1);
	cr_expect_eq(out.items[0].kind, ORDER_CANCELLED_EVENT);
	cr_expect_str_eq(out.items[0].data.reason, ORDER_REASON_OUT_OF_STOCK);
	saga_plan_record(next, 0, saga_reply_classify(SAGA_REJECT_FOR_STOCK, BUS_ACCEPTED, ""));
	cr_expect(saga_plan_needs_reload(next), "the releases wait for the order's state");
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_OUT_OF_STOCK); /* what the reload finds */
	cr_assert(saga_plan_next(next, order, plan));
	cr_assert_eq(plan->count, 3);
	for (size_t i = 0; i < 3; i++) {
		char id[64], product[16];
		snprintf(product, sizeof product, "p-%zu", i + 1);
		snprintf(id, sizeof id, ORDER ":release:%s", product);
		then_command(plan, i, SAGA_RELEASE_STOCK, product, id);
		stock_command sc = stock_payload(plan, i);
		cr_expect_eq(sc.kind, STOCK_RELEASE);
		cr_expect_str_eq(sc.reservation_id, ORDER);
	}
	cr_expect_eq(plan->stage, SAGA_STAGE_DONE);
	cr_expect_not(saga_plan_next(plan, order, next), "nothing follows the releases");
}

Test(saga_plan, a_rejection_refused_because_another_executor_marked_the_order_reserved_releases_nothing)
{
	given_placed(2);
	saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
	saga_plan_record(plan, 0, saga_reply_classify(SAGA_RESERVE_STOCK, BUS_REJECTED, "out_of_stock"));
	saga_plan_record(plan, 1, saga_reply_classify(SAGA_RESERVE_STOCK, BUS_ACCEPTED, ""));
	cr_assert(saga_plan_next(plan, order, next));
	saga_plan_record(next, 0, saga_reply_classify(SAGA_REJECT_FOR_STOCK, BUS_REJECTED, "wrong_state"));
	cr_expect(saga_plan_needs_reload(next));
	given(ORDER_RESERVED, NULL); /* the other executor's reserves were all accepted */
	cr_expect_not(saga_plan_next(next, order, plan), "its reservations are the order's: none released");
}

Test(saga_plan, product_not_found_and_closed_reservation_are_refusals_too)
{
	static const char *const codes[] = {"not_found", "reservation_closed", "invalid",
	                                    "reservation_mismatch"};

	given_placed(2);
	for (size_t k = 0; k < ORN_ARRAY_LEN(codes); k++) {
		saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
		saga_plan_record(plan, 0, saga_reply_classify(SAGA_RESERVE_STOCK, BUS_REJECTED, codes[k]));
		saga_plan_record(plan, 1, saga_reply_classify(SAGA_RESERVE_STOCK, BUS_REJECTED, codes[k]));
		cr_assert(saga_plan_next(plan, order, next));
		cr_assert_eq(next->count, 1, "%s", codes[k]);
		cr_expect_eq(next->commands[0].kind, SAGA_REJECT_FOR_STOCK);
		cr_assert_eq(next->refused_count, 2);
		cr_expect_str_eq(next->refused[0], "p-1");
		cr_expect_str_eq(next->refused[1], "p-2");
	}
}

Test(saga_plan, mark_reserved_wrong_state_after_a_cancel_releases_every_line)
{
	given_placed(3);
	saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
	answer_all(plan, SAGA_REPLY_DONE);
	saga_plan_next(plan, order, next);
	saga_plan_record(next, 0, saga_reply_classify(SAGA_MARK_RESERVED, BUS_REJECTED, "wrong_state"));
	cr_expect(saga_plan_needs_reload(next));
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_CUSTOMER); /* what the reload finds */
	cr_assert(saga_plan_next(next, order, plan));
	then_per_line(plan, SAGA_RELEASE_STOCK, "release", 3);
	cr_expect_eq(plan->stage, SAGA_STAGE_DONE);
}

Test(saga_plan, mark_reserved_wrong_state_of_an_order_that_went_on_releases_nothing)
{
	given_placed(2);
	given(ORDER_RESERVED, NULL);
	given(ORDER_CONFIRMED_BY_CUSTOMER, NULL);
	saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
	cr_expect_eq(plan->count, 0, "past pending, a redelivered OrderPlaced reserves nothing");
	/* and if a MarkReserved of ours was refused while it went on: */
	plan->stage = SAGA_STAGE_MARK;
	plan->count = 1;
	plan->commands[0].kind = SAGA_MARK_RESERVED;
	plan->results[0] = SAGA_RESULT_REFUSED;
	cr_expect(saga_plan_needs_reload(plan));
	cr_expect_not(saga_plan_next(plan, order, next));
}

Test(saga_plan, placed_redelivered_after_a_cancel_releases_again)
{
	given_placed(2);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_CUSTOMER);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_PLACED, order), ORN_OK);
	then_per_line_then_close(plan, SAGA_RELEASE_STOCK, "release", 2);
	cr_expect_eq(plan->stage, SAGA_STAGE_DONE);
}

Test(saga_plan, placed_redelivered_after_reservation_does_nothing)
{
	given_placed(2);
	given(ORDER_RESERVED, NULL);
	saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
	cr_expect_eq(plan->count, 0);
}

Test(saga_plan, an_event_of_an_order_with_no_events_does_nothing)
{
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_PLACED, order), ORN_OK);
	cr_expect_eq(plan->count, 0);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_RESERVED, order), ORN_OK);
	cr_expect_eq(plan->count, 0, "no customer, no cart");
}

/* ---- later events ---- */

Test(saga_plan, reserved_checks_the_customers_cart_out)
{
	cart_command c;

	given_placed(2);
	given(ORDER_RESERVED, NULL);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_RESERVED, order), ORN_OK);
	cr_assert_eq(plan->count, 1);
	then_command(plan, 0, SAGA_CHECKED_OUT, "alice", ORDER ":checkout");
	mp_writer_reset(writer);
	cr_assert_eq(saga_command_encode(plan, 0, T0, writer), ORN_OK);
	cr_assert_eq(
	        cart_command_decode(CART_CMD_CHECKED_OUT, mp_writer_data(writer), mp_writer_size(writer), &c),
	        ORN_OK);
	cr_expect_eq(c.kind, CART_CHECKED_OUT);
	cr_expect_str_eq(c.order_id, ORDER);
	/* the order's lines, so the cart takes out only what the order took */
	cr_assert_eq(c.checkout_count, 2);
	cr_expect_str_eq(c.checkout[0].product_id, "p-1");
	cr_expect_eq(c.checkout[0].quantity, 1);
	cr_expect_str_eq(c.checkout[1].product_id, "p-2");
	cr_expect_eq(c.checkout[1].quantity, 2);
}

Test(saga_plan, checked_out_of_the_largest_order_carries_every_line)
{
	cart_command c;
	cart_state cart;
	cart_events events;

	given_placed(ORDER_LINES_MAX);
	given(ORDER_RESERVED, NULL);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_RESERVED, order), ORN_OK);
	mp_writer_reset(writer);
	cr_assert_eq(saga_command_encode(plan, 0, T0, writer), ORN_OK);
	cr_assert_eq(
	        cart_command_decode(CART_CMD_CHECKED_OUT, mp_writer_data(writer), mp_writer_size(writer), &c),
	        ORN_OK);
	cr_assert_eq(c.checkout_count, ORDER_LINES_MAX);
	cr_expect_str_eq(c.checkout[ORDER_LINES_MAX - 1].product_id, "p-50");
	cr_expect_eq(c.checkout[ORDER_LINES_MAX - 1].quantity, ORDER_LINES_MAX);
	/* and the cart decider accepts it */
	cart_state_init(&cart);
	cr_expect_eq(cart_decide(&cart, &c, &events), CART_OK);
	cr_expect_eq(events.count, 1);
}

Test(saga_plan, confirmed_sends_nothing)
{
	given_placed(2);
	given(ORDER_RESERVED, NULL);
	given(ORDER_CONFIRMED_BY_CUSTOMER, NULL);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_CONFIRMED_BY_CUSTOMER, order), ORN_OK);
	cr_expect_eq(plan->count, 0);
}

Test(saga_plan, cancel_by_customer_releases_every_line_and_closes_the_hold)
{
	given_placed(3);
	given(ORDER_RESERVED, NULL);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_CUSTOMER);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_CANCELLED_EVENT, order), ORN_OK);
	then_per_line_then_close(plan, SAGA_RELEASE_STOCK, "release", 3);
	cr_expect_eq(plan->stage, SAGA_STAGE_DONE);
}

Test(saga_plan, expiry_and_out_of_stock_cancellations_release_too)
{
	given_placed(3);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_EXPIRED);
	saga_plan_for_event(plan, ORDER, ORDER_CANCELLED_EVENT, order);
	then_per_line_then_close(plan, SAGA_RELEASE_STOCK, "release", 3);
	order_state_init(order);
	given_placed(3);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_OUT_OF_STOCK);
	saga_plan_for_event(plan, ORDER, ORDER_CANCELLED_EVENT, order);
	then_per_line_then_close(plan, SAGA_RELEASE_STOCK, "release", 3);
}

Test(saga_plan, payment_failed_releases_every_line_and_closes_the_hold)
{
	given_placed(2);
	given(ORDER_RESERVED, NULL);
	given(ORDER_CONFIRMED_BY_CUSTOMER, NULL);
	given(ORDER_PAYMENT_FAILED_EVENT, "card declined");
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_PAYMENT_FAILED_EVENT, order), ORN_OK);
	then_per_line_then_close(plan, SAGA_RELEASE_STOCK, "release", 2);
}

Test(saga_plan, paid_commits_every_line_and_closes_the_hold)
{
	given_placed(3);
	given(ORDER_RESERVED, NULL);
	given(ORDER_CONFIRMED_BY_CUSTOMER, NULL);
	given(ORDER_PAID, NULL);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_PAID, order), ORN_OK);
	then_per_line_then_close(plan, SAGA_COMMIT_STOCK, "commit", 3);
	stock_command c = stock_payload(plan, 2);
	cr_expect_eq(c.kind, STOCK_COMMIT);
	cr_expect_str_eq(c.reservation_id, ORDER);
}

/* ---- after payment (ADR 028 §3) ---- */

static void given_paid(size_t lines)
{
	given_placed(lines);
	given(ORDER_RESERVED, NULL);
	given(ORDER_CONFIRMED_BY_CUSTOMER, NULL);
	given(ORDER_PAID, NULL);
}

Test(saga_plan, a_paid_order_cancelled_returns_every_line_and_closes_the_hold)
{
	given_paid(3);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_CUSTOMER);
	cr_assert(order->cancelled_after_payment);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_CANCELLED_EVENT, order), ORN_OK);
	then_per_line_then_close(plan, SAGA_RETURN_STOCK, "return", 3);
	cr_expect_eq(plan->stage, SAGA_STAGE_DONE);
	for (size_t i = 0; i < 3; i++) {
		stock_command c = stock_payload(plan, i);
		cr_expect_eq(c.kind, STOCK_RETURN);
		cr_expect_str_eq(c.reservation_id, ORDER);
		cr_expect_eq(c.quantity, (int64_t)i + 1, "the line's quantity");
	}
	cr_expect_not(saga_plan_next(plan, order, next), "nothing follows the returns");
}

Test(saga_plan, an_admin_cancel_of_a_paid_order_returns_too_and_of_an_open_one_releases)
{
	given_paid(2);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_ADMIN);
	saga_plan_for_event(plan, ORDER, ORDER_CANCELLED_EVENT, order);
	then_per_line_then_close(plan, SAGA_RETURN_STOCK, "return", 2);
	order_state_init(order);
	given_placed(2);
	given(ORDER_RESERVED, NULL);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_ADMIN);
	saga_plan_for_event(plan, ORDER, ORDER_CANCELLED_EVENT, order);
	then_per_line_then_close(plan, SAGA_RELEASE_STOCK, "release", 2);
}

Test(saga_plan, paid_redelivered_after_a_cancel_still_commits_before_the_return)
{
	given_paid(2);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_CUSTOMER);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_PAID, order), ORN_OK);
	then_per_line_then_close(plan, SAGA_COMMIT_STOCK, "commit", 2);
	/* a redelivered OrderPlaced releases nothing a commit holds: a no-op at the item */
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_PLACED, order), ORN_OK);
	then_per_line_then_close(plan, SAGA_RELEASE_STOCK, "release", 2);
}

Test(saga_plan, shipped_and_delivered_move_no_stock)
{
	given_paid(2);
	given(ORDER_SHIPPED_EVENT, NULL);
	cr_assert_eq(order->status, ORDER_SHIPPED);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_SHIPPED_EVENT, order), ORN_OK);
	cr_expect_eq(plan->count, 1, "only the hold's close, a no-op after the payment's");
	then_command(plan, 0, SAGA_CLOSE_HOLDS, "alice", ORDER ":close");
	given(ORDER_DELIVERED_EVENT, NULL);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_DELIVERED_EVENT, order), ORN_OK);
	cr_expect_eq(plan->count, 1);
	then_command(plan, 0, SAGA_CLOSE_HOLDS, "alice", ORDER ":close");
}

Test(saga_plan, a_return_refused_while_the_reservation_is_held_is_retried)
{
	cr_expect_eq(saga_reply_classify(SAGA_RETURN_STOCK, BUS_REJECTED, "not_committed"), SAGA_REPLY_RETRY);
	cr_expect_eq(saga_reply_classify(SAGA_RETURN_STOCK, BUS_REJECTED, "unknown_reservation"),
	             SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_RETURN_STOCK, BUS_REJECTED, "reservation_closed"),
	             SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_RETURN_STOCK, BUS_REJECTED, NULL), SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_RETURN_STOCK, BUS_ACCEPTED, ""), SAGA_REPLY_DONE);
	cr_expect_not(saga_reply_sold_unheld(SAGA_RETURN_STOCK, BUS_REJECTED, "unknown_reservation"));
}

Test(saga_plan, an_order_without_a_customer_closes_no_hold)
{
	given_placed(2);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_CUSTOMER);
	order->customer_id[0] = '\0'; /* placed before orders named their customer */
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_CANCELLED_EVENT, order), ORN_OK);
	then_per_line(plan, SAGA_RELEASE_STOCK, "release", 2);
}

Test(saga_plan, an_open_order_closes_no_hold)
{
	given_placed(2);
	given(ORDER_RESERVED, NULL);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_RESERVED, order), ORN_OK);
	cr_expect_eq(plan->count, 1, "the cart's checkout only");
	cr_expect_eq(plan->commands[0].kind, SAGA_CHECKED_OUT);
}

Test(saga_plan, the_largest_order_paid_commits_every_line_and_closes)
{
	given_placed(ORDER_LINES_MAX);
	given(ORDER_RESERVED, NULL);
	given(ORDER_CONFIRMED_BY_CUSTOMER, NULL);
	given(ORDER_PAID, NULL);
	cr_assert_eq(saga_plan_for_event(plan, ORDER, ORDER_PAID, order), ORN_OK);
	cr_expect_eq(plan->count, ORDER_LINES_MAX + 1);
	cr_expect_eq(plan->commands[ORDER_LINES_MAX].kind, SAGA_CLOSE_HOLDS);
}

Test(saga_plan, plans_are_deterministic)
{
	given_placed(3);
	saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
	saga_plan_for_event(next, ORDER, ORDER_PLACED, order);
	cr_expect_eq(memcmp(plan, next, sizeof *plan), 0, "the same event plans the same bytes");
}

Test(saga_plan, an_invalid_order_id_plans_nothing)
{
	given_placed(1);
	cr_expect_eq(saga_plan_for_event(plan, "a.b", ORDER_PLACED, order), ORN_EINVAL);
	cr_expect_eq(plan->count, 0);
	cr_expect_eq(saga_plan_expire(plan, "", 5), ORN_EINVAL);
	cr_expect_eq(plan->count, 0);
}

Test(saga_plan, a_line_whose_id_does_not_fit_a_command_id_plans_nothing)
{
	given_placed(1);
	memset(order->lines[0].product_id, 'x', ORDER_ID_MAX - 1); /* 64 chars: still fits */
	cr_expect_eq(saga_plan_for_event(plan, ORDER, ORDER_PLACED, order), ORN_OK);
	order->lines[0].product_id[ORDER_ID_MAX - 1] = 'x'; /* unterminated: cannot fit a target */
	cr_expect_eq(saga_plan_for_event(plan, ORDER, ORDER_PLACED, order), ORN_EINVAL);
	cr_expect_eq(plan->count, 0);
}

/* ---- replies ---- */

Test(saga_plan, a_failure_is_always_a_retry)
{
	for (int k = SAGA_RESERVE_STOCK; k <= SAGA_RETURN_STOCK; k++) {
		cr_expect_eq(saga_reply_classify((saga_command_kind)k, BUS_FAILED, "busy"), SAGA_REPLY_RETRY);
		cr_expect_eq(saga_reply_classify((saga_command_kind)k, BUS_ACCEPTED, ""), SAGA_REPLY_DONE);
	}
}

Test(saga_plan, rejections_end_releases_commits_and_order_updates)
{
	cr_expect_eq(saga_reply_classify(SAGA_RELEASE_STOCK, BUS_REJECTED, "not_found"), SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_RELEASE_STOCK, BUS_REJECTED, "invalid"), SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_COMMIT_STOCK, BUS_REJECTED, "reservation_closed"),
	             SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_COMMIT_STOCK, BUS_REJECTED, "unknown_reservation"),
	             SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_REJECT_FOR_STOCK, BUS_REJECTED, "wrong_state"),
	             SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_CHECKED_OUT, BUS_REJECTED, "invalid"), SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_CLOSE_HOLDS, BUS_REJECTED, "invalid"), SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_RESERVE_STOCK, BUS_REJECTED, NULL), SAGA_REPLY_REFUSED);
	cr_expect_eq(saga_reply_classify(SAGA_MARK_RESERVED, BUS_REJECTED, "not_found"), SAGA_REPLY_REFUSED);
}

Test(saga_plan, a_commit_finding_no_reservation_is_a_sale_of_unheld_units)
{
	cr_expect(saga_reply_sold_unheld(SAGA_COMMIT_STOCK, BUS_REJECTED, "reservation_closed"));
	cr_expect(saga_reply_sold_unheld(SAGA_COMMIT_STOCK, BUS_REJECTED, "unknown_reservation"));
	/* a commit done already is accepted (no event): no alarm */
	cr_expect_not(saga_reply_sold_unheld(SAGA_COMMIT_STOCK, BUS_ACCEPTED, ""));
	cr_expect_not(saga_reply_sold_unheld(SAGA_COMMIT_STOCK, BUS_FAILED, NULL));
	cr_expect_not(saga_reply_sold_unheld(SAGA_COMMIT_STOCK, BUS_REJECTED, NULL));
	cr_expect_not(saga_reply_sold_unheld(SAGA_COMMIT_STOCK, BUS_REJECTED, "not_found"));
	cr_expect_not(saga_reply_sold_unheld(SAGA_COMMIT_STOCK, BUS_REJECTED, "invalid"));
	/* the same codes on other commands are ordinary */
	cr_expect_not(saga_reply_sold_unheld(SAGA_RELEASE_STOCK, BUS_REJECTED, "unknown_reservation"));
	cr_expect_not(saga_reply_sold_unheld(SAGA_RESERVE_STOCK, BUS_REJECTED, "reservation_closed"));
}

Test(saga_plan, the_sweeper_redoes_the_checkout_of_an_order_that_was_ever_reserved)
{
	cr_expect_not(saga_plan_checkout_swept(order), "never placed");
	given_placed(2);
	cr_expect_not(saga_plan_checkout_swept(order), "pending: the cart keeps its lines");
	given(ORDER_RESERVED, NULL);
	cr_expect(saga_plan_checkout_swept(order));
	given(ORDER_CONFIRMED_BY_CUSTOMER, NULL);
	cr_expect(saga_plan_checkout_swept(order));
	given(ORDER_PAID, NULL);
	cr_expect(saga_plan_checkout_swept(order), "a paid order was reserved too");
}

Test(saga_plan, the_sweeper_leaves_the_cart_of_an_order_never_reserved)
{
	given_placed(2);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_OUT_OF_STOCK);
	cr_expect_not(saga_plan_checkout_swept(order), "rejected for stock");
	order_state_init(order);
	given_placed(1);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_CUSTOMER);
	cr_expect_not(saga_plan_checkout_swept(order), "cancelled while pending");
	order_state_init(order);
	given_placed(1);
	given(ORDER_RESERVED, NULL);
	given(ORDER_CANCELLED_EVENT, ORDER_REASON_CUSTOMER);
	cr_expect(saga_plan_checkout_swept(order),
	          "cancelled after its reservation: its lines left the cart");
	order->customer_id[0] = '\0';
	cr_expect_not(saga_plan_checkout_swept(order), "no customer, no cart");
}

Test(saga_plan, recording_ignores_retries_and_indexes_out_of_range)
{
	given_placed(2);
	saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
	saga_plan_record(plan, 0, SAGA_REPLY_RETRY);
	saga_plan_record(plan, 2, SAGA_REPLY_DONE);
	saga_plan_record(plan, 1, SAGA_REPLY_REFUSED);
	cr_expect_eq(plan->results[0], SAGA_RESULT_NONE);
	cr_expect_eq(plan->results[1], SAGA_RESULT_REFUSED);
	cr_expect_eq(plan->results[2], SAGA_RESULT_NONE);
}

Test(saga_plan, nothing_follows_a_finished_plan)
{
	given_placed(2);
	saga_plan_for_event(plan, ORDER, ORDER_CANCELLED_EVENT, order);
	answer_all(plan, SAGA_REPLY_DONE);
	cr_expect_not(saga_plan_needs_reload(plan));
	cr_expect_not(saga_plan_next(plan, order, next));
}

/* ---- expiry (sent by the timers role) ---- */

Test(saga_plan, expiry_sends_cancel_expired_with_a_deadline_id)
{
	order_command c;
	order_events out;

	given_placed(1);
	given(ORDER_RESERVED, NULL);
	cr_assert_eq(saga_plan_expire(plan, ORDER, DEADLINE), ORN_OK);
	cr_assert_eq(plan->count, 1);
	then_command(plan, 0, SAGA_EXPIRE, ORDER, ORDER ":expire:1900000");
	cr_expect_eq(plan->commands[0].deadline_ms, DEADLINE);
	cr_expect_eq(plan->stage, SAGA_STAGE_DONE);
	cr_expect_eq(order_payload_decided(plan, 0, DEADLINE - 1, &c, &out), ORDER_REJ_INVALID,
	             "our clock behind the order's deadline");
	cr_expect_str_eq(c.data.reason, ORDER_REASON_EXPIRED);
	cr_expect_eq(order_payload_decided(plan, 0, DEADLINE, &c, &out), ORDER_OK);
	cr_expect_str_eq(out.items[0].data.reason, ORDER_REASON_EXPIRED);
}

Test(saga_plan, an_expiry_is_done_once_the_order_left_its_state_and_retried_when_early)
{
	cr_expect_eq(saga_reply_classify(SAGA_EXPIRE, BUS_ACCEPTED, ""), SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_EXPIRE, BUS_REJECTED, "wrong_state"), SAGA_REPLY_DONE,
	             "already final, or confirmed meanwhile: another deadline now");
	cr_expect_eq(saga_reply_classify(SAGA_EXPIRE, BUS_REJECTED, "not_found"), SAGA_REPLY_DONE);
	cr_expect_eq(saga_reply_classify(SAGA_EXPIRE, BUS_REJECTED, "invalid"), SAGA_REPLY_RETRY,
	             "early for the order's clock");
	cr_expect_eq(saga_reply_classify(SAGA_EXPIRE, BUS_REJECTED, NULL), SAGA_REPLY_RETRY);
	cr_expect_eq(saga_reply_classify(SAGA_EXPIRE, BUS_FAILED, "timeout"), SAGA_REPLY_RETRY);
}

Test(saga_plan, two_instances_expiring_one_deadline_send_one_command_id)
{
	given_placed(1);
	cr_assert_eq(saga_plan_expire(plan, ORDER, DEADLINE), ORN_OK);
	cr_assert_eq(saga_plan_expire(next, ORDER, DEADLINE), ORN_OK);
	cr_expect_str_eq(plan->commands[0].command_id, next->commands[0].command_id);
	cr_assert_eq(saga_plan_expire(next, ORDER, DEADLINE + TTL), ORN_OK);
	cr_expect_str_neq(plan->commands[0].command_id, next->commands[0].command_id,
	                  "the payment deadline is another expiry");
}

/* ---- names and payloads ---- */

Test(saga_plan, names_of_every_kind)
{
	cr_expect_str_eq(saga_command_aggregate(SAGA_RESERVE_STOCK), "stock");
	cr_expect_str_eq(saga_command_type(SAGA_RESERVE_STOCK), "ReserveStock");
	cr_expect_str_eq(saga_command_type(SAGA_RELEASE_STOCK), "ReleaseStock");
	cr_expect_str_eq(saga_command_type(SAGA_COMMIT_STOCK), "CommitStock");
	cr_expect_str_eq(saga_command_aggregate(SAGA_MARK_RESERVED), "order");
	cr_expect_str_eq(saga_command_type(SAGA_REJECT_FOR_STOCK), "RejectForStock");
	cr_expect_str_eq(saga_command_aggregate(SAGA_CHECKED_OUT), "cart");
	cr_expect_str_eq(saga_command_type(SAGA_CHECKED_OUT), "CheckedOut");
	cr_expect_str_eq(saga_command_type(SAGA_EXPIRE), "Cancel");
	cr_expect_str_eq(saga_command_aggregate(SAGA_CLOSE_HOLDS), "holds");
	cr_expect_str_eq(saga_command_type(SAGA_CLOSE_HOLDS), "CloseOrder");
	cr_expect_str_eq(saga_command_aggregate(SAGA_RETURN_STOCK), "stock");
	cr_expect_str_eq(saga_command_type(SAGA_RETURN_STOCK), "ReturnStock");
	cr_expect_null(saga_command_type((saga_command_kind)99));
	cr_expect_null(saga_command_aggregate((saga_command_kind)99));
}

Test(saga_plan, encoding_refuses_an_index_or_kind_out_of_range)
{
	given_placed(1);
	saga_plan_for_event(plan, ORDER, ORDER_PLACED, order);
	cr_expect_eq(saga_command_encode(plan, 1, T0, writer), ORN_EINVAL);
	plan->commands[0].kind = (saga_command_kind)99;
	cr_expect_eq(saga_command_encode(plan, 0, T0, writer), ORN_EINVAL);
}

Test(saga_plan, encoding_an_order_command_without_memory_fails_cleanly)
{
	if (!failalloc_available())
		cr_skip_test("allocation failure injection needs the glibc allocator");
	saga_plan_expire(plan, ORDER, DEADLINE);
	failalloc_nth(1);
	orn_rc rc = saga_command_encode(plan, 0, T0, writer);
	failalloc_off();
	cr_expect_eq(rc, ORN_ENOMEM);
}
