/* test_payment.c — unit tests of the payment aggregate (actors/payment.c).
 *
 * Given-when-then: given commands decided and applied with payment_evolve,
 * when a command is decided, then the expected event, accepted no-op or
 * rejection. Every command in every status, the outcome no-ops (the webhook
 * deduplication of ADR 028), the late success, the refund lifecycle and its
 * keys, the bounds, the payload codecs (and the events written before ADR
 * 028), snapshot/restore and the kind table driven through an act_decision. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"
#include "payment.h"

#define T0    1000000
#define KEY_1 "ord_1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define KEY_2 "ord_1:f0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define URL_1 "http://127.0.0.1:4242/v1/3ds/pi_1"

static payment_state state;
static payment_events out;
static payment_verdict verdict;
static mp_writer *writer;

static void setup(void)
{
	payment_state_init(&state);
	writer = mp_writer_create();
	cr_assert_not_null(writer);
}

static void teardown(void)
{
	mp_writer_destroy(writer);
}

TestSuite(payment, .init = setup, .fini = teardown);

static payment_command *command(payment_command_kind kind, int64_t now)
{
	static payment_command c;

	memset(&c, 0, sizeof c);
	c.kind = kind;
	c.data.time_ms = now;
	return &c;
}

static payment_command *attempt(const char *key, int64_t now)
{
	payment_command *c = command(PAYMENT_RECORD_ATTEMPT, now);

	c->data.amount_cents = 1500;
	strcpy(c->data.currency, "EUR");
	strcpy(c->data.payment_method, "pm_1");
	strcpy(c->data.brand, "visa");
	strcpy(c->data.last4, "4242");
	snprintf(c->data.provider_key, sizeof c->data.provider_key, "%s", key);
	return c;
}

static payment_command *action(const char *intent_id, int64_t now)
{
	payment_command *c = command(PAYMENT_RECORD_ACTION_REQUIRED, now);

	snprintf(c->data.intent_id, sizeof c->data.intent_id, "%s", intent_id);
	strcpy(c->data.url, URL_1);
	return c;
}

static payment_command *success(const char *intent_id, const char *charge_id, int64_t now)
{
	payment_command *c = command(PAYMENT_RECORD_SUCCESS, now);

	snprintf(c->data.intent_id, sizeof c->data.intent_id, "%s", intent_id);
	snprintf(c->data.charge_id, sizeof c->data.charge_id, "%s", charge_id);
	return c;
}

static payment_command *decline(const char *code, int64_t now)
{
	payment_command *c = command(PAYMENT_RECORD_DECLINE, now);

	snprintf(c->data.code, sizeof c->data.code, "%s", code);
	return c;
}

static payment_command *decline_of(const char *intent_id, const char *code, int64_t now)
{
	payment_command *c = decline(code, now);

	snprintf(c->data.intent_id, sizeof c->data.intent_id, "%s", intent_id);
	return c;
}

static payment_command *refund_request(const char *intent_id, unsigned n, int64_t now)
{
	payment_command *c = command(PAYMENT_RECORD_REFUND_REQUEST, now);

	snprintf(c->data.intent_id, sizeof c->data.intent_id, "%s", intent_id);
	cr_assert_eq(payment_refund_key("ord_1", intent_id, n, c->data.refund_key, sizeof c->data.refund_key),
	             ORN_OK);
	c->data.amount_cents = 1500;
	return c;
}

static payment_command *refund(const char *intent_id, const char *refund_id, int64_t now)
{
	payment_command *c = command(PAYMENT_RECORD_REFUND, now);

	snprintf(c->data.intent_id, sizeof c->data.intent_id, "%s", intent_id);
	snprintf(c->data.refund_id, sizeof c->data.refund_id, "%s", refund_id);
	c->data.amount_cents = 1500;
	return c;
}

static payment_command *refund_failure(const char *intent_id, unsigned n, int64_t now)
{
	payment_command *c = command(PAYMENT_RECORD_REFUND_FAILURE, now);

	snprintf(c->data.intent_id, sizeof c->data.intent_id, "%s", intent_id);
	cr_assert_eq(payment_refund_key("ord_1", intent_id, n, c->data.refund_key, sizeof c->data.refund_key),
	             ORN_OK);
	strcpy(c->data.reason, "expired_or_canceled_card");
	return c;
}

static void when(const payment_command *c)
{
	verdict = payment_decide(&state, c, &out);
}

static void and_applied(void)
{
	for (size_t i = 0; i < out.count; i++)
		cr_assert(payment_evolve(&state, &out.items[i]));
}

static void given(const payment_command *c)
{
	when(c);
	cr_assert_eq(verdict, PAYMENT_OK, "verdict %s", payment_verdict_code(verdict));
	cr_assert_eq(out.count, 1);
	and_applied();
}

static void given_attempted(void)
{
	given(attempt(KEY_1, T0));
}

static void given_succeeded(void)
{
	given_attempted();
	given(success("pi_1", "ch_1", T0 + 100));
}

static void given_declined(void)
{
	given_attempted();
	given(decline("card_declined", T0 + 100));
}

static void then_event(payment_event_kind kind, payment_status status)
{
	cr_assert_eq(verdict, PAYMENT_OK, "verdict %s", payment_verdict_code(verdict));
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, kind);
	and_applied();
	cr_assert_eq(state.status, status, "status %s", payment_status_name(state.status));
}

static void then_nothing(void)
{
	cr_assert_eq(verdict, PAYMENT_OK, "verdict %s", payment_verdict_code(verdict));
	cr_assert_eq(out.count, 0);
}

static void then_rejected(payment_verdict expected)
{
	cr_assert_eq(verdict, expected, "verdict %s, expected %s", payment_verdict_code(verdict),
	             payment_verdict_code(expected));
	cr_assert_eq(out.count, 0);
}

/* ---- attempts ---- */

Test(payment, an_attempt_opens_the_payment)
{
	const payment_attempt *a;

	cr_assert_null(payment_current_attempt(&state));
	when(attempt(KEY_1, T0));
	then_event(PAYMENT_ATTEMPTED, PAYMENT_STATUS_ATTEMPTED);
	cr_assert_str_eq(out.items[0].data.provider_key, KEY_1);
	cr_assert_eq(out.items[0].data.time_ms, T0);
	cr_assert_eq(state.attempt_count, 1);
	a = payment_current_attempt(&state);
	cr_assert_not_null(a);
	cr_assert_str_eq(a->provider_key, KEY_1);
	cr_assert_str_eq(a->payment_method, "pm_1");
	cr_assert_eq(a->amount_cents, 1500);
	cr_assert_str_eq(a->currency, "EUR");
	cr_assert_str_eq(a->brand, "visa");
	cr_assert_str_eq(a->last4, "4242");
	cr_assert_eq(a->at_ms, T0);
	cr_assert_str_eq(a->intent_id, "");
	cr_assert_str_eq(a->decline_code, "");
	cr_assert(payment_attempt_open(a));
	cr_assert_eq(state.charge_count, 0);
}

Test(payment, an_attempt_may_not_know_brand_and_last4_yet)
{
	payment_command *c = attempt(KEY_1, T0);

	c->data.brand[0] = '\0';
	c->data.last4[0] = '\0';
	when(c);
	then_event(PAYMENT_ATTEMPTED, PAYMENT_STATUS_ATTEMPTED);
	cr_assert_str_eq(payment_current_attempt(&state)->brand, "");
}

Test(payment, a_redelivered_attempt_is_a_no_op_in_every_status)
{
	given_attempted();
	when(attempt(KEY_1, T0 + 1));
	then_nothing();
	given(action("pi_1", T0 + 2));
	when(attempt(KEY_1, T0 + 3));
	then_nothing();
	given(success("pi_1", "ch_1", T0 + 2));
	when(attempt(KEY_1, T0 + 3));
	then_nothing();
	payment_state_init(&state);
	given_declined();
	when(attempt(KEY_1, T0 + 3)); /* the same request again: the provider replays its decline */
	then_nothing();
	cr_assert_eq(state.attempt_count, 1);
	cr_assert_eq(state.status, PAYMENT_STATUS_DECLINED);
}

Test(payment, another_attempt_while_one_is_open_is_in_progress)
{
	given_attempted();
	when(attempt(KEY_2, T0 + 1));
	then_rejected(PAYMENT_REJ_IN_PROGRESS);
	given(action("pi_1", T0 + 2)); /* waiting for 3-D Secure is open too */
	when(attempt(KEY_2, T0 + 3));
	then_rejected(PAYMENT_REJ_IN_PROGRESS);
	cr_assert_eq(state.attempt_count, 1);
}

Test(payment, after_a_decline_the_customer_may_try_again)
{
	const payment_attempt *a;
	payment_command *c;

	given_declined();
	c = attempt(KEY_2, T0 + 200);
	strcpy(c->data.payment_method, "pm_2");
	strcpy(c->data.brand, "mastercard");
	strcpy(c->data.last4, "4444");
	when(c);
	then_event(PAYMENT_ATTEMPTED, PAYMENT_STATUS_ATTEMPTED);
	cr_assert_eq(state.attempt_count, 2);
	a = payment_current_attempt(&state);
	cr_assert_str_eq(a->provider_key, KEY_2);
	cr_assert_str_eq(a->payment_method, "pm_2");
	cr_assert_str_eq(a->brand, "mastercard");
	cr_assert_str_eq(a->decline_code, "");
	cr_assert_str_eq(state.attempts[0].decline_code, "card_declined");
	cr_assert_eq(state.attempts[0].declined_at_ms, T0 + 100);
	/* an earlier attempt's key is not the current one: a new attempt */
	given(decline("insufficient_funds", T0 + 300));
	when(attempt(KEY_1, T0 + 400));
	then_event(PAYMENT_ATTEMPTED, PAYMENT_STATUS_ATTEMPTED);
	cr_assert_eq(state.attempt_count, 3);
}

Test(payment, no_attempt_after_a_success)
{
	given_succeeded();
	when(attempt(KEY_2, T0 + 200));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
}

Test(payment, attempts_are_bounded)
{
	char key[32];

	for (int i = 0; i < PAYMENT_ATTEMPTS_MAX; i++) {
		snprintf(key, sizeof key, "ord_1:%d", i);
		given(attempt(key, T0 + i));
		given(decline("card_declined", T0 + i));
	}
	when(attempt("ord_1:last", T0 + 100));
	then_rejected(PAYMENT_REJ_LIMIT);
	when(attempt(key, T0 + 100)); /* the last one again is still a no-op */
	then_nothing();
}

/* ---- 3-D Secure ---- */

Test(payment, an_intent_that_asks_for_3ds_records_its_url)
{
	const payment_attempt *a;

	given_attempted();
	when(action("pi_1", T0 + 50));
	then_event(PAYMENT_ACTION_REQUIRED, PAYMENT_STATUS_REQUIRES_ACTION);
	a = payment_current_attempt(&state);
	cr_assert_str_eq(a->intent_id, "pi_1");
	cr_assert_str_eq(a->action_url, URL_1);
	cr_assert_eq(a->action_at_ms, T0 + 50);
	cr_assert(payment_attempt_open(a));
	cr_assert_eq(payment_find_attempt(&state, "pi_1"), a);
	cr_assert_null(payment_find_attempt(&state, "pi_2"));
	cr_assert_null(payment_find_attempt(&state, ""));
	/* the answer replayed: no-op */
	when(action("pi_1", T0 + 60));
	then_nothing();
	/* the shopper approves: the webhook's success */
	when(success("pi_1", "ch_1", T0 + 70));
	then_event(PAYMENT_SUCCEEDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert(payment_current_attempt(&state)->succeeded);
	/* the answer to our call, late: the outcome is held */
	when(action("pi_1", T0 + 80));
	then_nothing();
}

Test(payment, an_action_needs_an_attempt_without_another_intent)
{
	when(action("pi_1", T0));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
	given_attempted();
	given(action("pi_1", T0 + 1));
	when(action("pi_2", T0 + 2)); /* the current attempt's intent is pi_1 */
	then_rejected(PAYMENT_REJ_WRONG_STATE);
	/* declined before the action was recorded: a later outcome is held */
	payment_state_init(&state);
	given_declined();
	when(action("pi_1", T0 + 200));
	then_nothing();
}

Test(payment, a_failed_authentication_declines_the_attempt)
{
	given_attempted();
	given(action("pi_1", T0 + 1));
	when(decline_of("pi_1", "payment_intent_authentication_failure", T0 + 2));
	then_event(PAYMENT_DECLINED, PAYMENT_STATUS_DECLINED);
	cr_assert_str_eq(payment_current_attempt(&state)->decline_code,
	                 "payment_intent_authentication_failure");
	/* the webhook again, or with another code: the outcome is held */
	when(decline_of("pi_1", "payment_intent_authentication_failure", T0 + 3));
	then_nothing();
	when(decline_of("pi_1", "card_declined", T0 + 3));
	then_nothing();
}

/* ---- outcomes, in any order ---- */

Test(payment, a_success_settles_the_open_attempt)
{
	const payment_charge *charge;

	given_attempted();
	when(success("pi_1", "ch_1", T0 + 100));
	then_event(PAYMENT_SUCCEEDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_str_eq(out.items[0].data.intent_id, "pi_1");
	cr_assert_str_eq(out.items[0].data.charge_id, "ch_1");
	cr_assert_eq(state.charge_count, 1);
	charge = payment_find_intent(&state, "pi_1");
	cr_assert_not_null(charge);
	cr_assert_eq(payment_find_charge(&state, "ch_1"), charge);
	cr_assert_eq(charge->at_ms, T0 + 100);
	cr_assert_eq(charge->refund, PAYMENT_REFUND_STATUS_NONE);
	cr_assert_null(payment_find_intent(&state, "pi_2"));
	cr_assert_null(payment_find_intent(&state, ""));
	cr_assert_null(payment_find_charge(&state, "ch_2"));
	/* the attempt learns its intent */
	cr_assert_str_eq(payment_current_attempt(&state)->intent_id, "pi_1");
	cr_assert_not(payment_attempt_open(payment_current_attempt(&state)));
}

Test(payment, a_success_may_name_no_charge)
{
	given_attempted();
	when(success("pi_1", "", T0 + 100));
	then_event(PAYMENT_SUCCEEDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_str_eq(payment_find_intent(&state, "pi_1")->charge_id, "");
}

Test(payment, a_success_needs_an_attempt)
{
	when(success("pi_1", "ch_1", T0));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
}

Test(payment, the_same_success_twice_is_a_no_op_whoever_reports_it)
{
	given_succeeded();                       /* the call's answer */
	when(success("pi_1", "ch_1", T0 + 500)); /* the webhook */
	then_nothing();
	when(success("pi_1", "", T0 + 500)); /* however it names the charge */
	then_nothing();
	cr_assert_eq(state.charge_count, 1);
}

Test(payment, a_success_after_a_decline_is_recorded)
{
	/* The intent was declined (a failed 3-D Secure, or the webhook of its
	 * first try), then succeeded: the provider took the money, so the log
	 * says so; the role keeps or refunds it (payment.h). */
	given_attempted();
	given(action("pi_1", T0 + 1));
	given(decline_of("pi_1", "payment_intent_authentication_failure", T0 + 2));
	when(success("pi_1", "ch_1", T0 + 3));
	then_event(PAYMENT_SUCCEEDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert(state.attempts[0].succeeded);
	/* and the decline reported again after it changes nothing */
	when(decline_of("pi_1", "card_declined", T0 + 4));
	then_nothing();
	/* an attempt declined before its intent was known binds too */
	payment_state_init(&state);
	given_declined();
	when(success("pi_9", "ch_9", T0 + 300));
	then_event(PAYMENT_SUCCEEDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_str_eq(state.attempts[0].intent_id, "pi_9");
}

Test(payment, a_success_of_an_earlier_attempt_binds_to_it)
{
	given_attempted();
	given(action("pi_1", T0 + 1));
	given(decline_of("pi_1", "payment_intent_authentication_failure", T0 + 2));
	given(attempt(KEY_2, T0 + 3));
	when(success("pi_1", "ch_1", T0 + 4)); /* the first 3-D Secure page, approved late */
	then_event(PAYMENT_SUCCEEDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert(state.attempts[0].succeeded);
	cr_assert_not(state.attempts[1].succeeded);
	cr_assert(payment_attempt_open(&state.attempts[1]));
	/* the open attempt still gets its own outcome: a second charge */
	when(success("pi_2", "ch_2", T0 + 5));
	then_event(PAYMENT_SUCCEEDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_str_eq(state.attempts[1].intent_id, "pi_2");
	cr_assert_eq(state.charge_count, 2);
}

Test(payment, an_open_attempt_with_a_success_elsewhere_can_still_be_declined)
{
	given_attempted();
	given(action("pi_1", T0 + 1));
	given(decline("payment_intent_authentication_failure", T0 + 2));
	given(attempt(KEY_2, T0 + 3));
	given(success("pi_1", "ch_1", T0 + 4));
	when(decline_of("pi_2", "card_declined", T0 + 5));
	then_event(PAYMENT_DECLINED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_str_eq(state.attempts[1].decline_code, "card_declined");
}

Test(payment, a_success_no_attempt_names_is_a_second_charge)
{
	char intent[32];

	given_succeeded();
	when(success("pi_2", "ch_2", T0 + 200));
	then_event(PAYMENT_SUCCEEDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_eq(state.charge_count, 2);
	cr_assert_str_eq(payment_current_attempt(&state)->intent_id, "pi_1");
	for (int i = 3; i <= PAYMENT_CHARGES_MAX; i++) {
		snprintf(intent, sizeof intent, "pi_%d", i);
		given(success(intent, "", T0 + 200 + i));
	}
	cr_assert_eq(state.charge_count, PAYMENT_CHARGES_MAX);
	when(success("pi_99", "ch_99", T0 + 300));
	then_rejected(PAYMENT_REJ_LIMIT);
	when(success("pi_2", "ch_2", T0 + 300));
	then_nothing();
}

Test(payment, a_decline_settles_the_open_attempt)
{
	given_attempted();
	when(decline("insufficient_funds", T0 + 100));
	then_event(PAYMENT_DECLINED, PAYMENT_STATUS_DECLINED);
	cr_assert_str_eq(payment_current_attempt(&state)->decline_code, "insufficient_funds");
	cr_assert_eq(payment_current_attempt(&state)->declined_at_ms, T0 + 100);
	cr_assert_not(payment_attempt_open(payment_current_attempt(&state)));
}

Test(payment, a_decline_naming_an_intent_declines_the_attempt_that_has_none_yet)
{
	given_attempted(); /* the webhook comes before the call's answer */
	when(decline_of("pi_1", "card_declined", T0 + 100));
	then_event(PAYMENT_DECLINED, PAYMENT_STATUS_DECLINED);
	when(decline_of("pi_1", "card_declined", T0 + 200)); /* then the answer */
	then_nothing();
}

Test(payment, a_decline_needs_an_open_attempt)
{
	when(decline("card_declined", T0));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
	given_succeeded();
	when(decline("card_declined", T0 + 200));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
}

Test(payment, a_stale_decline_is_a_no_op)
{
	given_succeeded();
	when(decline_of("pi_1", "card_declined", T0 + 200)); /* a succeeded intent never fails */
	then_nothing();
	payment_state_init(&state);
	given_attempted();
	given(action("pi_2", T0 + 1));
	when(decline_of("pi_1", "card_declined", T0 + 2)); /* not the current attempt's intent */
	then_nothing();
	cr_assert_eq(state.status, PAYMENT_STATUS_REQUIRES_ACTION);
}

Test(payment, a_redelivered_decline_is_a_no_op_whatever_its_code)
{
	given_declined();
	when(decline("card_declined", T0 + 200));
	then_nothing();
	when(decline("expired_card", T0 + 200));
	then_nothing();
	cr_assert_str_eq(payment_current_attempt(&state)->decline_code, "card_declined");
}

/* ---- refunds ---- */

Test(payment, refund_keys_are_defined_once)
{
	char key[PAYMENT_KEY_MAX];

	cr_assert_eq(payment_refund_key("ord_1", "pi_1", 1, key, sizeof key), ORN_OK);
	cr_assert_str_eq(key, "ord_1:refund:pi_1:1");
	cr_assert_eq(payment_refund_key_number(key, "pi_1"), 1);
	cr_assert_eq(payment_refund_key("ord_1", "pi_1", PAYMENT_REFUND_TRIES_MAX, key, sizeof key), ORN_OK);
	cr_assert_str_eq(key, "ord_1:refund:pi_1:99");
	cr_assert_eq(payment_refund_key_number(key, "pi_1"), 99);
	cr_assert_eq(payment_refund_key_number(key, "pi_2"), 0);
	cr_assert_eq(payment_refund_key_number(key, ""), 0);
	cr_assert_eq(payment_refund_key("ord_1", "pi_1", 0, key, sizeof key), ORN_EINVAL);
	cr_assert_eq(payment_refund_key("ord_1", "pi_1", PAYMENT_REFUND_TRIES_MAX + 1, key, sizeof key),
	             ORN_EINVAL);
	cr_assert_eq(payment_refund_key("", "pi_1", 1, key, sizeof key), ORN_EINVAL);
	cr_assert_eq(payment_refund_key("ord_1", "", 1, key, sizeof key), ORN_EINVAL);
	cr_assert_eq(payment_refund_key(NULL, "pi_1", 1, key, sizeof key), ORN_EINVAL);
	cr_assert_eq(payment_refund_key("ord_1", "pi_1", 1, key, 8), ORN_ETOOBIG);
	cr_assert_str_eq(key, "");
	static const char *const not_keys[] = {"ord_1:refund:pi_1:",
	                                       "ord_1:refund:pi_1:01",
	                                       ":refund:pi_1:1",
	                                       "ord_1:refund:pi_1:1000",
	                                       "ord_1:refunds:pi_1:1",
	                                       "ord_1:refund:xpi_1:1",
	                                       "ord_1:refund:pi_1;1",
	                                       "pi_1:1",
	                                       "1",
	                                       ""};
	for (size_t i = 0; i < sizeof not_keys / sizeof not_keys[0]; i++)
		cr_assert_eq(payment_refund_key_number(not_keys[i], "pi_1"), 0, "%s", not_keys[i]);
	cr_assert_eq(payment_refund_key_number("ord_1:refund:pi_1:100", "pi_1"), 100);
}

Test(payment, a_refund_is_requested_then_recorded)
{
	const payment_charge *charge;

	given_succeeded();
	when(refund_request("pi_1", 1, T0 + 400));
	then_event(PAYMENT_REFUND_REQUESTED, PAYMENT_STATUS_SUCCEEDED);
	charge = payment_find_intent(&state, "pi_1");
	cr_assert_eq(charge->refund, PAYMENT_REFUND_STATUS_PENDING);
	cr_assert_str_eq(charge->refund_key, "ord_1:refund:pi_1:1");
	cr_assert_eq(charge->refund_tries, 1);
	cr_assert_eq(charge->refund_amount_cents, 1500);
	cr_assert_eq(charge->refund_requested_at_ms, T0 + 400);
	when(refund("pi_1", "re_1", T0 + 500));
	then_event(PAYMENT_REFUNDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_eq(charge->refund, PAYMENT_REFUND_STATUS_REFUNDED);
	cr_assert_str_eq(charge->refund_id, "re_1");
	cr_assert_eq(charge->refund_done_at_ms, T0 + 500);
	cr_assert_str_eq(payment_refund_status_name(charge->refund), "succeeded");
}

Test(payment, a_refund_claim_is_held_across_a_crash)
{
	/* killed between the provider's refund and its event: the request is
	 * found again and the same key replayed at the provider */
	given_succeeded();
	given(refund_request("pi_1", 1, T0 + 400));
	when(refund_request("pi_1", 1, T0 + 900));
	then_nothing();
	when(refund_request("pi_1", 2, T0 + 900)); /* no other refund meanwhile */
	then_rejected(PAYMENT_REJ_IN_PROGRESS);
}

Test(payment, a_refund_is_recorded_once_whoever_reports_it)
{
	given_succeeded();
	given(refund_request("pi_1", 1, T0 + 400));
	given(refund("pi_1", "re_1", T0 + 500));
	when(refund("pi_1", "re_1", T0 + 600)); /* the webhook charge.refunded */
	then_nothing();
	when(refund("pi_1", "", T0 + 600)); /* it names no refund */
	then_nothing();
	when(refund_request("pi_1", 1, T0 + 700)); /* a redelivered OrderCancelled */
	then_nothing();
	when(refund_request("pi_1", 2, T0 + 700));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
	when(refund_failure("pi_1", 1, T0 + 700)); /* a late failure report */
	then_nothing();
}

Test(payment, a_refund_made_elsewhere_is_recorded)
{
	given_succeeded();
	when(refund("pi_1", "", T0 + 500));
	then_event(PAYMENT_REFUNDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_eq(payment_find_intent(&state, "pi_1")->refund_amount_cents, 1500);
}

Test(payment, a_failed_refund_is_retried_with_the_next_key)
{
	const payment_charge *charge;

	given_succeeded();
	given(refund_request("pi_1", 1, T0 + 400));
	when(refund_failure("pi_1", 2, T0 + 500)); /* not the pending key */
	then_rejected(PAYMENT_REJ_WRONG_STATE);
	when(refund_failure("pi_1", 1, T0 + 500));
	then_event(PAYMENT_REFUND_FAILED, PAYMENT_STATUS_SUCCEEDED);
	charge = payment_find_intent(&state, "pi_1");
	cr_assert_eq(charge->refund, PAYMENT_REFUND_STATUS_FAILED);
	cr_assert_str_eq(charge->refund_reason, "expired_or_canceled_card");
	cr_assert_eq(charge->refund_done_at_ms, T0 + 500);
	cr_assert_str_eq(payment_refund_status_name(charge->refund), "failed");
	when(refund_failure("pi_1", 1, T0 + 600)); /* reported again */
	then_nothing();
	when(refund_request("pi_1", 1, T0 + 600)); /* the failed claim again: held */
	then_nothing();
	when(refund_request("pi_1", 3, T0 + 600));
	then_rejected(PAYMENT_REJ_INVALID);
	when(refund_request("pi_1", 2, T0 + 700)); /* the admin's retry */
	then_event(PAYMENT_REFUND_REQUESTED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_eq(charge->refund, PAYMENT_REFUND_STATUS_PENDING);
	cr_assert_eq(charge->refund_tries, 2);
	cr_assert_str_eq(charge->refund_reason, "");
	cr_assert_str_eq(payment_refund_status_name(charge->refund), "pending");
	given(refund("pi_1", "re_2", T0 + 800));
	cr_assert_eq(charge->refund, PAYMENT_REFUND_STATUS_REFUNDED);
}

Test(payment, refund_retries_are_bounded)
{
	given_succeeded();
	for (unsigned n = 1; n <= PAYMENT_REFUND_TRIES_MAX; n++) {
		given(refund_request("pi_1", n, T0 + n));
		given(refund_failure("pi_1", n, T0 + n));
	}
	payment_command *c = refund_request("pi_1", 1, T0 + 500);
	strcpy(c->data.refund_key, "ord_1:refund:pi_1:100");
	when(c);
	then_rejected(PAYMENT_REJ_LIMIT);
}

Test(payment, a_refund_needs_a_succeeded_intent_of_this_payment)
{
	when(refund_request("pi_1", 1, T0));
	then_rejected(PAYMENT_REJ_UNKNOWN_CHARGE);
	when(refund("pi_1", "re_1", T0));
	then_rejected(PAYMENT_REJ_UNKNOWN_CHARGE);
	when(refund_failure("pi_1", 1, T0));
	then_rejected(PAYMENT_REJ_UNKNOWN_CHARGE);
	given_declined();
	when(refund_request("pi_1", 1, T0 + 200));
	then_rejected(PAYMENT_REJ_UNKNOWN_CHARGE);
	payment_state_init(&state);
	given_succeeded();
	when(refund_request("pi_2", 1, T0 + 200));
	then_rejected(PAYMENT_REJ_UNKNOWN_CHARGE);
	when(refund_failure("pi_1", 1, T0 + 200)); /* never requested */
	then_rejected(PAYMENT_REJ_WRONG_STATE);
}

Test(payment, a_first_refund_is_number_one)
{
	given_succeeded();
	when(refund_request("pi_1", 2, T0 + 200));
	then_rejected(PAYMENT_REJ_INVALID);
}

Test(payment, each_charge_is_refunded_on_its_own)
{
	given_succeeded();
	given(success("pi_2", "ch_2", T0 + 200));
	given(refund_request("pi_1", 1, T0 + 300));
	when(refund_request("pi_2", 1, T0 + 300));
	then_event(PAYMENT_REFUND_REQUESTED, PAYMENT_STATUS_SUCCEEDED);
	given(refund("pi_2", "re_2", T0 + 400));
	cr_assert_eq(state.charges[0].refund, PAYMENT_REFUND_STATUS_PENDING);
	cr_assert_eq(state.charges[1].refund, PAYMENT_REFUND_STATUS_REFUNDED);
}

/* ---- events written before ADR 028 ---- */

static payment_event legacy_attempted(const char *key, int64_t at)
{
	payment_event e = {.kind = PAYMENT_ATTEMPTED};

	e.data.amount_cents = 1500;
	strcpy(e.data.currency, "EUR");
	strcpy(e.data.brand, "visa");
	strcpy(e.data.last4, "4242");
	snprintf(e.data.provider_key, sizeof e.data.provider_key, "%s", key);
	e.data.time_ms = at;
	return e;
}

static payment_event legacy_succeeded(const char *charge_id, int64_t at)
{
	payment_event e = {.kind = PAYMENT_SUCCEEDED};

	snprintf(e.data.charge_id, sizeof e.data.charge_id, "%s", charge_id);
	e.data.time_ms = at;
	return e;
}

static payment_event legacy_refunded(const char *charge_id, const char *refund_id, int64_t at)
{
	payment_event e = {.kind = PAYMENT_REFUNDED};

	snprintf(e.data.charge_id, sizeof e.data.charge_id, "%s", charge_id);
	snprintf(e.data.refund_id, sizeof e.data.refund_id, "%s", refund_id);
	strcpy(e.data.reason, "order_cancelled");
	e.data.time_ms = at;
	return e;
}

/* Writes the payload of e as it was written before ADR 028 (only its keys). */
static void write_legacy(const payment_event *e)
{
	mp_writer_reset(writer);
	if (e->kind == PAYMENT_ATTEMPTED) {
		mp_write_map(writer, 6);
		mp_write_cstr(writer, "amount_cents");
		mp_write_int(writer, e->data.amount_cents);
		mp_write_cstr(writer, "currency");
		mp_write_cstr(writer, e->data.currency);
		mp_write_cstr(writer, "brand");
		mp_write_cstr(writer, e->data.brand);
		mp_write_cstr(writer, "last4");
		mp_write_cstr(writer, e->data.last4);
		mp_write_cstr(writer, "provider_key");
		mp_write_cstr(writer, e->data.provider_key);
	} else if (e->kind == PAYMENT_SUCCEEDED) {
		mp_write_map(writer, 2);
		mp_write_cstr(writer, "charge_id");
		mp_write_cstr(writer, e->data.charge_id);
	} else {
		mp_write_map(writer, 4);
		mp_write_cstr(writer, "charge_id");
		mp_write_cstr(writer, e->data.charge_id);
		mp_write_cstr(writer, "refund_id");
		mp_write_cstr(writer, e->data.refund_id);
		mp_write_cstr(writer, "reason");
		mp_write_cstr(writer, e->data.reason);
	}
	mp_write_cstr(writer, "at_ms");
	mp_write_int(writer, e->data.time_ms);
}

/* Decodes the legacy payload of e and applies it. */
static void given_legacy(const payment_event *e)
{
	static payment_event decoded;

	write_legacy(e);
	cr_assert_eq(payment_event_decode(payment_event_type(e->kind), mp_writer_data(writer),
	                                  mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_str_eq(decoded.data.intent_id, "");
	cr_assert(payment_evolve(&state, &decoded));
}

Test(payment, events_written_before_intents_still_decode_and_evolve)
{
	payment_event e;

	e = legacy_attempted(KEY_1, T0);
	given_legacy(&e);
	cr_assert_eq(state.status, PAYMENT_STATUS_ATTEMPTED);
	cr_assert_str_eq(state.attempts[0].payment_method, "");
	cr_assert_str_eq(state.attempts[0].brand, "visa");
	e = legacy_succeeded("ch_1", T0 + 1);
	given_legacy(&e);
	cr_assert_eq(state.status, PAYMENT_STATUS_SUCCEEDED);
	cr_assert(state.attempts[0].succeeded);
	cr_assert_str_eq(state.charges[0].intent_id, "");
	cr_assert_not_null(payment_find_charge(&state, "ch_1"));
	e = legacy_succeeded("ch_2", T0 + 2); /* a duplicate charge found then */
	given_legacy(&e);
	e = legacy_refunded("ch_2", "re_1", T0 + 3);
	given_legacy(&e);
	cr_assert_eq(state.charges[1].refund, PAYMENT_REFUND_STATUS_REFUNDED);
	cr_assert_str_eq(state.charges[1].refund_reason, "order_cancelled");
	/* and evolve refuses what decide could not have emitted then either */
	e = legacy_refunded("ch_2", "re_1", T0 + 4);
	cr_assert_not(payment_evolve(&state, &e));
	e = legacy_refunded("ch_3", "re_1", T0 + 4);
	cr_assert_not(payment_evolve(&state, &e));
	e = legacy_succeeded("ch_1", T0 + 4);
	cr_assert_not(payment_evolve(&state, &e));
	/* the old outcome commands are not written any more */
	when(attempt(KEY_2, T0 + 5));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
	{
		static payment_state restored;
		mp_writer_reset(writer);
		cr_assert_eq(payment_kind.snapshot(&state, writer), ORN_OK);
		cr_assert_eq(payment_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)),
		             ORN_OK);
		cr_assert(memcmp(&restored, &state, sizeof state) == 0);
	}
	/* a legacy success needs the open attempt (or a success before it) */
	payment_state_init(&state);
	e = legacy_succeeded("ch_1", T0);
	cr_assert_not(payment_evolve(&state, &e));
	e = legacy_attempted(KEY_1, T0);
	given_legacy(&e);
	given(decline("card_declined", T0 + 1));
	e = legacy_succeeded("ch_1", T0 + 2);
	cr_assert_not(payment_evolve(&state, &e));
}

Test(payment, legacy_payloads_are_checked_as_they_were)
{
	static payment_event decoded;
	payment_event e;

	e = legacy_attempted(KEY_1, T0);
	strcpy(e.data.brand, "");
	write_legacy(&e);
	cr_assert_eq(payment_event_decode(PAYMENT_EV_ATTEMPTED, mp_writer_data(writer),
	                                  mp_writer_size(writer), &decoded),
	             ORN_EDECODE); /* no payment method: brand and last4 are required */
	e = legacy_succeeded("", T0);
	write_legacy(&e);
	cr_assert_eq(payment_event_decode(PAYMENT_EV_SUCCEEDED, mp_writer_data(writer),
	                                  mp_writer_size(writer), &decoded),
	             ORN_EDECODE);
	e = legacy_refunded("ch_1", "", T0);
	write_legacy(&e);
	cr_assert_eq(payment_event_decode(PAYMENT_EV_REFUNDED, mp_writer_data(writer), mp_writer_size(writer),
	                                  &decoded),
	             ORN_EDECODE);
	/* a legacy refund round-trips through the encoder */
	e = legacy_refunded("ch_1", "re_1", T0);
	mp_writer_reset(writer);
	cr_assert_eq(payment_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(payment_event_decode(PAYMENT_EV_REFUNDED, mp_writer_data(writer), mp_writer_size(writer),
	                                  &decoded),
	             ORN_OK);
	cr_assert_str_eq(decoded.data.reason, "order_cancelled");
	/* a command never takes the old shapes */
	given_attempted();
	payment_command *c = success("", "ch_1", T0);
	when(c);
	then_rejected(PAYMENT_REJ_INVALID);
	c = attempt(KEY_2, T0);
	c->data.payment_method[0] = '\0';
	when(c);
	then_rejected(PAYMENT_REJ_INVALID);
}

/* ---- bounds ---- */

static void assert_invalid(const payment_command *c)
{
	payment_state before = state;

	when(c);
	then_rejected(PAYMENT_REJ_INVALID);
	cr_assert(memcmp(&before, &state, sizeof state) == 0);
}

static void assert_valid(const payment_command *c)
{
	when(c);
	cr_assert_eq(verdict, PAYMENT_OK, "verdict %s", payment_verdict_code(verdict));
}

Test(payment, attempt_bounds)
{
	payment_command *c;

	c = attempt(KEY_1, T0);
	c->data.amount_cents = 0;
	assert_invalid(c);
	c->data.amount_cents = -1;
	assert_invalid(c);
	c->data.amount_cents = PAYMENT_AMOUNT_MAX + 1;
	assert_invalid(c);
	c->data.amount_cents = 1;
	assert_valid(c);
	c->data.amount_cents = PAYMENT_AMOUNT_MAX;
	assert_valid(c);
	static const char *const currencies[] = {"eur", "EU", "", "EU1", "E R"};
	for (size_t i = 0; i < sizeof currencies / sizeof currencies[0]; i++) {
		c = attempt(KEY_1, T0);
		strcpy(c->data.currency, currencies[i]);
		assert_invalid(c);
	}
	static const char *const brands[] = {"Visa", "visa card", "visa!", "vísa"};
	for (size_t i = 0; i < sizeof brands / sizeof brands[0]; i++) {
		c = attempt(KEY_1, T0);
		strcpy(c->data.brand, brands[i]);
		assert_invalid(c);
	}
	c = attempt(KEY_1, T0);
	memset(c->data.brand, 'a', PAYMENT_BRAND_MAX);
	assert_invalid(c); /* unterminated */
	c = attempt(KEY_1, T0);
	memset(c->data.brand, 'a', PAYMENT_BRAND_MAX - 1);
	assert_valid(c);
	strcpy(c->data.brand, "american_express-2");
	assert_valid(c);
	static const char *const last4s[] = {"424", "42a2", "-424"};
	for (size_t i = 0; i < sizeof last4s / sizeof last4s[0]; i++) {
		c = attempt(KEY_1, T0);
		strcpy(c->data.last4, last4s[i]);
		assert_invalid(c);
	}
	c = attempt(KEY_1, T0);
	memset(c->data.last4, '4', PAYMENT_LAST4_MAX);
	assert_invalid(c);
	static const char *const keys[] = {"", "ord 1", "ord\t1", "ord_1:\x7f", "ord_1:\xc3\xa9"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		c = attempt(keys[i], T0);
		assert_invalid(c);
	}
	c = attempt("", T0);
	memset(c->data.provider_key, 'k', PAYMENT_KEY_MAX);
	assert_invalid(c);
	memset(c->data.provider_key, 'k', PAYMENT_KEY_MAX - 1);
	c->data.provider_key[PAYMENT_KEY_MAX - 1] = '\0';
	assert_valid(c);
	static const char *const methods[] = {"", "pm_", "card_1", "pm 1", "pm_\x7f", "PM_1"};
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
		c = attempt(KEY_1, T0);
		strcpy(c->data.payment_method, methods[i]);
		assert_invalid(c);
	}
	c = attempt(KEY_1, T0);
	memset(c->data.payment_method, 'm', PAYMENT_ID_MAX);
	memcpy(c->data.payment_method, "pm_", 3);
	assert_invalid(c);
	c->data.payment_method[PAYMENT_ID_MAX - 1] = '\0';
	assert_valid(c);
	c = attempt(KEY_1, -1);
	assert_invalid(c);
	c = attempt(KEY_1, PAYMENT_TIME_MAX + 1);
	assert_invalid(c);
	c = attempt(KEY_1, PAYMENT_TIME_MAX);
	assert_valid(c);
	c = attempt(KEY_1, 0);
	assert_valid(c);
}

Test(payment, outcome_and_refund_bounds)
{
	payment_command *c;
	char text[PAYMENT_TEXT_MAX];

	given_succeeded();
	assert_invalid(success("", "ch_2", T0));
	assert_invalid(success("pi 2", "ch_2", T0));
	assert_invalid(success("pi_2", "ch 2", T0));
	assert_invalid(success("pi_2", "ch_2", -1));
	c = success("", "ch_2", T0);
	memset(c->data.intent_id, 'p', PAYMENT_ID_MAX);
	assert_invalid(c);
	c->data.intent_id[PAYMENT_ID_MAX - 1] = '\0';
	assert_valid(c); /* 128 characters: another charge */
	c = success("pi_2", "", T0);
	memset(c->data.charge_id, 'c', PAYMENT_ID_MAX);
	assert_invalid(c);
	assert_invalid(action("", T0));
	assert_invalid(action("pi 1", T0));
	c = action("pi_1", T0);
	c->data.url[0] = '\0';
	assert_invalid(c);
	strcpy(c->data.url, "http://a b");
	assert_invalid(c);
	memset(c->data.url, 'u', PAYMENT_URL_MAX);
	assert_invalid(c);
	c->data.url[PAYMENT_URL_MAX - 1] = '\0';
	when(c);
	then_nothing(); /* 255 bytes are in bounds; the attempt succeeded already */
	assert_invalid(decline("", T0));
	assert_invalid(decline("card\ndeclined", T0));
	assert_invalid(decline("\xff", T0));
	assert_invalid(decline("card_declined", PAYMENT_TIME_MAX + 1));
	assert_invalid(decline_of("pi 1", "card_declined", T0));
	memset(text, 'x', sizeof text);
	text[sizeof text - 1] = '\0';
	c = decline("", T0);
	memcpy(c->data.code, text, sizeof text);
	when(c);
	then_rejected(PAYMENT_REJ_WRONG_STATE); /* 200 bytes are in bounds */
	memset(c->data.code, 'x', sizeof c->data.code);
	assert_invalid(c);
	assert_invalid(refund("", "re_1", T0));
	assert_invalid(refund("pi_1", "re 1", T0));
	assert_invalid(refund("pi_1", "re_1", -5));
	c = refund("pi_1", "re_1", T0);
	c->data.amount_cents = -1;
	assert_invalid(c);
	c->data.amount_cents = PAYMENT_AMOUNT_MAX + 1;
	assert_invalid(c);
	c->data.amount_cents = 0; /* not reported */
	assert_valid(c);
	c = refund_request("pi_1", 1, T0);
	c->data.amount_cents = 0;
	assert_invalid(c);
	c = refund_request("pi_1", 1, T0);
	strcpy(c->data.refund_key, "ord_1:refund:pi_2:1");
	assert_invalid(c);
	strcpy(c->data.refund_key, "ord 1:refund:pi_1:1");
	assert_invalid(c);
	c = refund_request("pi_1", 1, T0);
	strcpy(c->data.intent_id, "");
	assert_invalid(c);
	c = refund_failure("pi_1", 1, T0);
	c->data.reason[0] = '\0';
	assert_invalid(c);
	strcpy(c->data.reason, "bad\x01reason");
	assert_invalid(c);
	c = refund_failure("pi_1", 1, T0);
	c->data.refund_key[0] = '\0';
	assert_invalid(c);
	c = refund_failure("pi_1", 1, T0);
	memcpy(c->data.reason, text, sizeof text);
	when(c);
	then_rejected(PAYMENT_REJ_WRONG_STATE); /* in bounds; never requested */
}

Test(payment, an_unknown_command_kind_is_invalid)
{
	when(command((payment_command_kind)42, T0));
	then_rejected(PAYMENT_REJ_INVALID);
}

/* ---- evolve ---- */

static payment_event event_of(const payment_command *c)
{
	payment_event e = {.kind = (payment_event_kind)c->kind, .data = c->data};

	return e;
}

static bool evolve_command(const payment_command *c)
{
	payment_event e = event_of(c);

	return payment_evolve(&state, &e);
}

Test(payment, evolve_ignores_events_decide_could_not_emit)
{
	payment_state before;
	char id[32];

	cr_assert_not(evolve_command(success("pi_1", "ch_1", T0)));
	cr_assert_not(evolve_command(decline("card_declined", T0)));
	cr_assert_not(evolve_command(action("pi_1", T0)));
	cr_assert_not(evolve_command(refund("pi_1", "re_1", T0)));
	cr_assert_not(evolve_command(refund_request("pi_1", 1, T0)));
	cr_assert_not(evolve_command(refund_failure("pi_1", 1, T0)));
	given_attempted();
	cr_assert_not(evolve_command(attempt(KEY_2, T0)));
	given(action("pi_1", T0 + 1));
	cr_assert_not(evolve_command(action("pi_1", T0)));
	cr_assert_not(evolve_command(action("pi_2", T0)));
	given(success("pi_1", "ch_1", T0 + 1));
	cr_assert_not(evolve_command(attempt(KEY_2, T0)));
	cr_assert_not(evolve_command(decline("card_declined", T0)));
	cr_assert_not(evolve_command(success("pi_1", "ch_1", T0)));
	cr_assert_not(evolve_command(refund_failure("pi_1", 1, T0)));
	given(refund_request("pi_1", 1, T0 + 2));
	cr_assert_not(evolve_command(refund_request("pi_1", 1, T0)));
	cr_assert_not(evolve_command(refund_request("pi_1", 2, T0)));
	cr_assert_not(evolve_command(refund_failure("pi_1", 2, T0)));
	given(refund_failure("pi_1", 1, T0 + 2));
	cr_assert_not(evolve_command(refund_failure("pi_1", 1, T0)));
	cr_assert_not(evolve_command(refund_request("pi_1", 1, T0))); /* n must grow */
	given(refund("pi_1", "re_1", T0 + 2));
	cr_assert_not(evolve_command(refund("pi_1", "re_1", T0)));
	cr_assert_not(evolve_command(refund_request("pi_1", 2, T0)));
	for (int i = 2; i <= PAYMENT_CHARGES_MAX; i++) {
		snprintf(id, sizeof id, "pi_%d", i);
		given(success(id, "", T0 + i));
	}
	cr_assert_not(evolve_command(success("pi_99", "ch_99", T0)));
	before = state;
	cr_assert_not(payment_evolve(&state, &(payment_event){.kind = (payment_event_kind)42}));
	cr_assert(memcmp(&before, &state, sizeof state) == 0);
	/* attempts past the bound */
	payment_state_init(&state);
	for (int i = 0; i < PAYMENT_ATTEMPTS_MAX; i++) {
		snprintf(id, sizeof id, "k%d", i);
		cr_assert(evolve_command(attempt(id, T0)));
		cr_assert(evolve_command(decline("card_declined", T0)));
	}
	cr_assert_not(evolve_command(attempt("k99", T0)));
	cr_assert_eq(state.attempt_count, PAYMENT_ATTEMPTS_MAX);
}

Test(payment, codes_and_names_are_stable)
{
	cr_assert_str_eq(payment_verdict_code(PAYMENT_OK), "");
	cr_assert_str_eq(payment_verdict_code(PAYMENT_REJ_INVALID), "invalid");
	cr_assert_str_eq(payment_verdict_code(PAYMENT_REJ_WRONG_STATE), "wrong_state");
	cr_assert_str_eq(payment_verdict_code(PAYMENT_REJ_IN_PROGRESS), "in_progress");
	cr_assert_str_eq(payment_verdict_code(PAYMENT_REJ_UNKNOWN_CHARGE), "unknown_charge");
	cr_assert_str_eq(payment_verdict_code(PAYMENT_REJ_LIMIT), "limit");
	cr_assert_str_eq(payment_verdict_code((payment_verdict)99), "unknown");
	cr_assert_str_eq(payment_status_name(PAYMENT_STATUS_NONE), "none");
	cr_assert_str_eq(payment_status_name(PAYMENT_STATUS_ATTEMPTED), "attempted");
	cr_assert_str_eq(payment_status_name(PAYMENT_STATUS_SUCCEEDED), "succeeded");
	cr_assert_str_eq(payment_status_name(PAYMENT_STATUS_DECLINED), "declined");
	cr_assert_str_eq(payment_status_name(PAYMENT_STATUS_REQUIRES_ACTION), "requires_action");
	cr_assert_str_eq(payment_refund_status_name(PAYMENT_REFUND_STATUS_NONE), "none");
	cr_assert_null(payment_refund_status_name((payment_refund_status)99));
	cr_assert_str_eq(payment_command_type(PAYMENT_RECORD_ACTION_REQUIRED), "RecordActionRequired");
	cr_assert_str_eq(payment_command_type(PAYMENT_RECORD_REFUND_REQUEST), "RecordRefundRequest");
	cr_assert_str_eq(payment_command_type(PAYMENT_RECORD_REFUND_FAILURE), "RecordRefundFailure");
	cr_assert_str_eq(payment_event_type(PAYMENT_ACTION_REQUIRED), "PaymentActionRequired");
	cr_assert_str_eq(payment_event_type(PAYMENT_REFUND_REQUESTED), "PaymentRefundRequested");
	cr_assert_str_eq(payment_event_type(PAYMENT_REFUND_FAILED), "PaymentRefundFailed");
	cr_assert_null(payment_status_name((payment_status)99));
	cr_assert_str_eq(payment_command_type(PAYMENT_RECORD_ATTEMPT), "RecordAttempt");
	cr_assert_str_eq(payment_command_type(PAYMENT_RECORD_SUCCESS), "RecordSuccess");
	cr_assert_str_eq(payment_command_type(PAYMENT_RECORD_DECLINE), "RecordDecline");
	cr_assert_str_eq(payment_command_type(PAYMENT_RECORD_REFUND), "RecordRefund");
	cr_assert_str_eq(payment_event_type(PAYMENT_ATTEMPTED), "PaymentAttempted");
	cr_assert_str_eq(payment_event_type(PAYMENT_SUCCEEDED), "PaymentSucceeded");
	cr_assert_str_eq(payment_event_type(PAYMENT_DECLINED), "PaymentDeclined");
	cr_assert_str_eq(payment_event_type(PAYMENT_REFUNDED), "PaymentRefunded");
	cr_assert_null(payment_command_type((payment_command_kind)99));
	cr_assert_null(payment_event_type((payment_event_kind)99));
	cr_assert_str_eq(PAYMENT_AGGREGATE, "payment");
}

/* ---- codecs ---- */

static void assert_data_equal(const payment_data *a, const payment_data *b)
{
	cr_assert_eq(a->amount_cents, b->amount_cents);
	cr_assert_str_eq(a->currency, b->currency);
	cr_assert_str_eq(a->brand, b->brand);
	cr_assert_str_eq(a->last4, b->last4);
	cr_assert_str_eq(a->provider_key, b->provider_key);
	cr_assert_str_eq(a->payment_method, b->payment_method);
	cr_assert_str_eq(a->intent_id, b->intent_id);
	cr_assert_str_eq(a->url, b->url);
	cr_assert_str_eq(a->refund_key, b->refund_key);
	cr_assert_str_eq(a->charge_id, b->charge_id);
	cr_assert_str_eq(a->refund_id, b->refund_id);
	cr_assert_str_eq(a->code, b->code);
	cr_assert_str_eq(a->reason, b->reason);
	cr_assert_eq(a->time_ms, b->time_ms);
}

static void assert_command_round_trip(const payment_command *c)
{
	static payment_command decoded;

	mp_writer_reset(writer);
	cr_assert_eq(payment_command_encode(writer, c), ORN_OK);
	cr_assert_eq(payment_command_decode(payment_command_type(c->kind), mp_writer_data(writer),
	                                    mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_eq(decoded.kind, c->kind);
	assert_data_equal(&decoded.data, &c->data);
}

static void assert_event_round_trip(const payment_event *e)
{
	static payment_event decoded;

	mp_writer_reset(writer);
	cr_assert_eq(payment_event_encode(writer, e), ORN_OK);
	cr_assert_eq(payment_event_decode(payment_event_type(e->kind), mp_writer_data(writer),
	                                  mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_eq(decoded.kind, e->kind);
	assert_data_equal(&decoded.data, &e->data);
}

Test(payment, commands_round_trip)
{
	assert_command_round_trip(attempt(KEY_1, T0));
	assert_command_round_trip(success("pi_1", "ch_1", T0));
	assert_command_round_trip(action("pi_1", T0));
	assert_command_round_trip(decline("Karte abgelehnt: ungültig", T0));
	assert_command_round_trip(decline_of("pi_1", "card_declined", T0));
	assert_command_round_trip(refund("pi_1", "re_1", T0));
	assert_command_round_trip(refund_request("pi_1", 1, T0));
	assert_command_round_trip(refund_failure("pi_1", 1, T0));
}

/* Decides c, checks the event round-trips, applies it. */
static void given_round_trip(const payment_command *c)
{
	when(c);
	cr_assert_eq(verdict, PAYMENT_OK);
	cr_assert_eq(out.count, 1);
	assert_event_round_trip(&out.items[0]);
	and_applied();
}

Test(payment, events_round_trip)
{
	given_round_trip(attempt(KEY_1, T0));
	given_round_trip(decline("card_declined", T0 + 1));
	given_round_trip(attempt(KEY_2, T0 + 2));
	given_round_trip(action("pi_1", T0 + 3));
	given_round_trip(success("pi_1", "ch_1", T0 + 3));
	given_round_trip(refund_request("pi_1", 1, T0 + 4));
	given_round_trip(refund_failure("pi_1", 1, T0 + 4));
	given_round_trip(refund_request("pi_1", 2, T0 + 4));
	given_round_trip(refund("pi_1", "re_1", T0 + 4));
}

/* The keys of the map at the start of the writer, comma-separated. */
static void written_keys(char *keys, size_t cap)
{
	mp_reader r;
	uint32_t count, len;
	const char *key;
	size_t used = 0;

	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_read_map(&r, &count), ORN_OK);
	keys[0] = '\0';
	for (uint32_t i = 0; i < count; i++) {
		cr_assert_eq(mp_read_str(&r, &key, &len), ORN_OK);
		used += (size_t)snprintf(keys + used, cap - used, "%s%.*s", i > 0 ? "," : "", (int)len, key);
		cr_assert_eq(mp_skip(&r), ORN_OK);
	}
}

/* The keys written: ADR 028, section 2 (never a card number or a CVC). */
Test(payment, events_carry_brand_last4_and_ids_only)
{
	char keys[256];

	given_round_trip(attempt(KEY_1, T0));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "provider_key,payment_method,amount_cents,currency,brand,last4,at_ms");
	given_round_trip(action("pi_1", T0 + 1));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "intent_id,url,at_ms");
	given_round_trip(success("pi_1", "ch_1", T0 + 1));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "intent_id,charge_id,at_ms");
	given_round_trip(refund_request("pi_1", 1, T0 + 2));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "intent_id,refund_key,amount_cents,at_ms");
	given_round_trip(refund_failure("pi_1", 1, T0 + 2));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "intent_id,refund_key,reason,at_ms");
	given_round_trip(refund_request("pi_1", 2, T0 + 2));
	given_round_trip(refund("pi_1", "re_1", T0 + 2));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "intent_id,amount_cents,refund_id,at_ms");
	payment_state_init(&state);
	given_attempted();
	given_round_trip(decline("card_declined", T0 + 1));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "code,at_ms");
	mp_writer_reset(writer);
	cr_assert_eq(payment_command_encode(writer, attempt(KEY_1, T0)), ORN_OK);
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "provider_key,payment_method,amount_cents,currency,brand,last4,now_ms");
}

Test(payment, encoders_reject_unknown_kinds_and_unterminated_strings)
{
	payment_command *c;
	payment_event e = {.kind = PAYMENT_REFUNDED};

	cr_assert_eq(payment_command_encode(writer, command((payment_command_kind)42, 0)), ORN_EINVAL);
	cr_assert_eq(payment_event_encode(writer, &(payment_event){.kind = (payment_event_kind)42}),
	             ORN_EINVAL);
	c = attempt(KEY_1, T0);
	memset(c->data.currency, 'E', sizeof c->data.currency);
	cr_assert_eq(payment_command_encode(writer, c), ORN_EINVAL);
	c = attempt(KEY_1, T0);
	memset(c->data.provider_key, 'k', sizeof c->data.provider_key);
	cr_assert_eq(payment_command_encode(writer, c), ORN_EINVAL);
	memset(e.data.reason, 'r', sizeof e.data.reason);
	cr_assert_eq(payment_event_encode(writer, &e), ORN_EINVAL);
	/* a field the kind does not carry is not looked at */
	c = success("pi_1", "ch_1", T0);
	memset(c->data.reason, 'r', sizeof c->data.reason);
	cr_assert_eq(payment_command_encode(writer, c), ORN_OK);
}

static orn_rc decode_written_command(const char *type)
{
	static payment_command c;

	return payment_command_decode(type, mp_writer_data(writer), mp_writer_size(writer), &c);
}

static orn_rc decode_written_event(const char *type)
{
	static payment_event e;

	return payment_event_decode(type, mp_writer_data(writer), mp_writer_size(writer), &e);
}

Test(payment, decoders_are_strict)
{
	static payment_command c;
	char long_id[PAYMENT_ID_MAX + 1];

	cr_assert_eq(payment_command_encode(writer, attempt(KEY_1, T0)), ORN_OK);
	cr_assert_eq(decode_written_command("StealMoney"), ORN_EINVAL);
	cr_assert_eq(decode_written_command(NULL), ORN_EINVAL);
	cr_assert_eq(decode_written_event(PAYMENT_CMD_RECORD_ATTEMPT), ORN_EINVAL);
	cr_assert_eq(decode_written_event(NULL), ORN_EINVAL);
	for (size_t len = 0; len < mp_writer_size(writer); len++)
		cr_assert_eq(
		        payment_command_decode(PAYMENT_CMD_RECORD_ATTEMPT, mp_writer_data(writer), len, &c),
		        ORN_EDECODE, "length %zu", len);
	/* trailing bytes */
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_ATTEMPT), ORN_EDECODE);
	/* missing */
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	/* repeated */
	mp_writer_reset(writer);
	mp_write_map(writer, 4);
	mp_write_cstr(writer, "intent_id");
	mp_write_cstr(writer, "pi_1");
	mp_write_cstr(writer, "charge_id");
	mp_write_cstr(writer, "ch_1");
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "charge_id");
	mp_write_cstr(writer, "ch_2");
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	/* wrong types */
	mp_writer_reset(writer);
	mp_write_map(writer, 3);
	mp_write_cstr(writer, "intent_id");
	mp_write_cstr(writer, "pi_1");
	mp_write_cstr(writer, "charge_id");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 3);
	mp_write_cstr(writer, "intent_id");
	mp_write_cstr(writer, "pi_1");
	mp_write_cstr(writer, "charge_id");
	mp_write_cstr(writer, "ch_1");
	mp_write_cstr(writer, "now_ms");
	mp_write_cstr(writer, "1");
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	/* over-long string */
	memset(long_id, 'c', PAYMENT_ID_MAX);
	long_id[PAYMENT_ID_MAX] = '\0';
	mp_writer_reset(writer);
	mp_write_map(writer, 3);
	mp_write_cstr(writer, "intent_id");
	mp_write_cstr(writer, "pi_1");
	mp_write_cstr(writer, "charge_id");
	mp_write_cstr(writer, long_id);
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	/* an unknown key is skipped; an event key in a command is unknown */
	mp_writer_reset(writer);
	mp_write_map(writer, 5);
	mp_write_cstr(writer, "intent_id");
	mp_write_cstr(writer, "pi_1");
	mp_write_cstr(writer, "at_ms");
	mp_write_cstr(writer, "x");
	mp_write_cstr(writer, "charge_id");
	mp_write_cstr(writer, "ch_1");
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "card_number");
	mp_write_map(writer, 0);
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_OK);
	/* not a map; a non-string key */
	mp_writer_reset(writer);
	mp_write_array(writer, 0);
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_int(writer, 1);
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	/* a command payload is not an event payload (now_ms against at_ms) */
	mp_writer_reset(writer);
	cr_assert_eq(payment_command_encode(writer, success("pi_1", "ch_1", T0)), ORN_OK);
	cr_assert_eq(decode_written_event(PAYMENT_EV_SUCCEEDED), ORN_EDECODE);
}

/* Encodes e and expects its decoding to be rejected. */
static void assert_event_rejected(const payment_event *e)
{
	mp_writer_reset(writer);
	cr_assert_eq(payment_event_encode(writer, e), ORN_OK);
	cr_assert_eq(decode_written_event(payment_event_type(e->kind)), ORN_EDECODE);
}

static void assert_event_accepted(const payment_event *e)
{
	mp_writer_reset(writer);
	cr_assert_eq(payment_event_encode(writer, e), ORN_OK);
	cr_assert_eq(decode_written_event(payment_event_type(e->kind)), ORN_OK);
}

Test(payment, event_decoding_rejects_values_decide_cannot_emit)
{
	payment_event e;

	e = event_of(attempt(KEY_1, T0));
	assert_event_accepted(&e);
	e.data.amount_cents = 0;
	assert_event_rejected(&e);
	e = event_of(attempt(KEY_1, -1));
	assert_event_rejected(&e);
	e = event_of(attempt("with space", T0));
	assert_event_rejected(&e);
	e = event_of(attempt(KEY_1, T0));
	strcpy(e.data.last4, "12");
	assert_event_rejected(&e);
	e = event_of(attempt(KEY_1, T0));
	strcpy(e.data.payment_method, "card_1");
	assert_event_rejected(&e);
	e = event_of(success("pi_1", "ch_1", T0));
	assert_event_accepted(&e);
	e = event_of(success("pi_1", "", T0));
	assert_event_accepted(&e);
	e = event_of(success("", "", T0));
	assert_event_rejected(&e);
	e = event_of(action("pi_1", T0));
	assert_event_accepted(&e);
	e.data.url[0] = '\0';
	assert_event_rejected(&e);
	e = event_of(decline("card_declined", T0));
	assert_event_accepted(&e);
	e = event_of(decline("", T0));
	assert_event_rejected(&e);
	e = event_of(refund("pi_1", "re_1", T0));
	assert_event_accepted(&e);
	e = event_of(refund("pi_1", "", T0));
	assert_event_accepted(&e);
	e = event_of(refund("pi_1", "re_1", PAYMENT_TIME_MAX + 1));
	assert_event_rejected(&e);
	e = event_of(refund_request("pi_1", 1, T0));
	assert_event_accepted(&e);
	strcpy(e.data.refund_key, "ord_1:refund:pi_2:1");
	assert_event_rejected(&e);
	e = event_of(refund_failure("pi_1", 1, T0));
	assert_event_accepted(&e);
	e.data.reason[0] = '\0';
	assert_event_rejected(&e);
}

/* ---- snapshot and restore ---- */

static void assert_snapshot_equivalent(void)
{
	static payment_state restored;

	mp_writer_reset(writer);
	cr_assert_eq(payment_kind.snapshot(&state, writer), ORN_OK);
	memset(&restored, 0x77, sizeof restored);
	cr_assert_eq(payment_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	/* both states are built by evolve from zeroed memory: byte for byte */
	cr_assert(memcmp(&restored, &state, sizeof state) == 0);
}

Test(payment, snapshots_restore_the_same_state)
{
	char id[32];

	assert_snapshot_equivalent();
	given_attempted();
	assert_snapshot_equivalent();
	given(action("pi_0", T0 + 1));
	assert_snapshot_equivalent();
	given(decline("payment_intent_authentication_failure", T0 + 1));
	assert_snapshot_equivalent();
	given(attempt(KEY_2, T0 + 2));
	assert_snapshot_equivalent();
	given(success("pi_1", "ch_1", T0 + 3)); /* binds to the open attempt */
	assert_snapshot_equivalent();
	given(success("pi_0", "ch_0", T0 + 4)); /* the late success of the first */
	assert_snapshot_equivalent();
	given(success("pi_2", "", T0 + 4)); /* binds to none */
	given(refund_request("pi_1", 1, T0 + 5));
	assert_snapshot_equivalent();
	given(refund("pi_1", "re_1", T0 + 6));
	given(refund_request("pi_0", 1, T0 + 6));
	given(refund_failure("pi_0", 1, T0 + 7));
	assert_snapshot_equivalent();
	given(refund_request("pi_0", 2, T0 + 8));
	given(refund("pi_2", "", T0 + 8));
	assert_snapshot_equivalent();
	/* the largest state */
	payment_state_init(&state);
	for (int i = 0; i < PAYMENT_ATTEMPTS_MAX; i++) {
		snprintf(id, sizeof id, "k%d", i);
		given(attempt(id, T0 + i));
		snprintf(id, sizeof id, "pi_a%d", i);
		given(action(id, T0 + i));
		if (i + 1 < PAYMENT_ATTEMPTS_MAX)
			given(decline("card_declined", T0 + i));
	}
	for (int i = 0; i < PAYMENT_CHARGES_MAX; i++) {
		snprintf(id, sizeof id, "pi_%d", i);
		given(success(id, "ch_x", T0 + 100 + i));
		given(refund_request(id, 1, T0 + 150 + i));
		given(refund_failure(id, 1, T0 + 160 + i));
		given(refund_request(id, 2, T0 + 170 + i));
		snprintf(id, sizeof id, "re_%d", i);
		given(refund(state.charges[i].intent_id, id, T0 + 200 + i));
	}
	assert_snapshot_equivalent();
}

static orn_rc restore_written(void)
{
	return payment_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer));
}

/* Writes one [type, payload] pair of the event of c. */
static void write_pair(const payment_command *c)
{
	payment_event e = event_of(c);

	mp_write_array(writer, 2);
	mp_write_cstr(writer, payment_event_type(e.kind));
	cr_assert_eq(payment_event_encode(writer, &e), ORN_OK);
}

Test(payment, restore_rejects_snapshots_no_stream_could_produce)
{
	given_attempted();
	/* a success before any attempt */
	mp_write_array(writer, 1);
	write_pair(success("pi_1", "ch_1", T0));
	cr_assert_eq(restore_written(), ORN_EDECODE);
	/* two refunds of one charge */
	mp_writer_reset(writer);
	mp_write_array(writer, 4);
	write_pair(attempt(KEY_1, T0));
	write_pair(success("pi_1", "ch_1", T0));
	write_pair(refund("pi_1", "re_1", T0));
	write_pair(refund("pi_1", "re_1", T0));
	cr_assert_eq(restore_written(), ORN_EDECODE);
	/* a malformed pair, trailing bytes, not an array, an unknown type, a bad payload */
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
	mp_writer_reset(writer);
	mp_write_array(writer, 1);
	mp_write_array(writer, 2);
	mp_write_cstr(writer, PAYMENT_EV_ATTEMPTED);
	mp_write_map(writer, 0);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_array(writer, 2);
	write_pair(attempt(KEY_1, T0));
	cr_assert_eq(restore_written(), ORN_EDECODE); /* truncated */
	/* the state is untouched */
	cr_assert_eq(state.status, PAYMENT_STATUS_ATTEMPTED);
	cr_assert_eq(state.attempt_count, 1);
	/* an empty snapshot is the empty state */
	mp_writer_reset(writer);
	mp_write_array(writer, 0);
	cr_assert_eq(restore_written(), ORN_OK);
	cr_assert_eq(state.status, PAYMENT_STATUS_NONE);
}

Test(payment, restore_and_snapshot_report_allocation_failure)
{
	if (!failalloc_available())
		cr_skip_test("no allocation failure injection in this build");
	mp_write_array(writer, 0);
	failalloc_after(0);
	cr_assert_eq(restore_written(), ORN_ENOMEM);
	failalloc_off();
	failalloc_after(1);
	cr_assert_eq(restore_written(), ORN_ENOMEM);
	failalloc_off();
	failalloc_after(0);
	cr_assert_eq(payment_kind.snapshot(&state, writer), ORN_ENOMEM);
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

TestSuite(payment_kind, .init = kind_setup, .fini = kind_teardown);

static orn_rc kind_decide(const payment_command *c)
{
	env_envelope cmd = {.schema = 1};

	mp_writer_reset(writer);
	cr_assert_eq(payment_command_encode(writer, c), ORN_OK);
	snprintf(cmd.type, sizeof cmd.type, "%s", payment_command_type(c->kind));
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	act_decision_clear(decision);
	return payment_kind.decide(&state, &cmd, decision);
}

static void kind_apply(void)
{
	env_envelope event;

	for (size_t i = 0; i < act_decision_count(decision); i++) {
		cr_assert_eq(act_decision_event(decision, i, &event), ORN_OK);
		cr_assert_eq(payment_kind.evolve(&state, &event), ORN_OK);
	}
}

static void then_decision_rejected(const char *code)
{
	cr_assert_str_eq(act_decision_rejection(decision), code);
	cr_assert_eq(act_decision_count(decision), 0);
	cr_assert_not_null(act_decision_detail(decision));
}

Test(payment_kind, describes_the_aggregate)
{
	payment_state *s = malloc(payment_kind.state_size);

	cr_assert_str_eq(payment_kind.aggregate, "payment");
	cr_assert_eq(payment_kind.state_size, sizeof(payment_state));
	cr_assert_eq(payment_kind.snapshot_schema, PAYMENT_SNAPSHOT_SCHEMA);
	cr_assert_not_null(s);
	memset(s, 0x55, sizeof *s);
	payment_kind.init(s);
	cr_assert_eq(s->status, PAYMENT_STATUS_NONE);
	cr_assert_eq(s->attempt_count, 0);
	payment_kind.dispose(s);
	cr_assert_eq(s->charge_count, 0);
	free(s);
}

Test(payment_kind, a_payment_lives_through_the_kind_table)
{
	env_envelope event;

	cr_assert_eq(kind_decide(attempt(KEY_1, T0)), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 1);
	cr_assert_eq(act_decision_event(decision, 0, &event), ORN_OK);
	cr_assert_str_eq(event.type, PAYMENT_EV_ATTEMPTED);
	cr_assert_eq(event.schema, 1);
	kind_apply();
	cr_assert_eq(kind_decide(attempt(KEY_1, T0)), ORN_OK); /* no-op */
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 0);
	cr_assert_eq(kind_decide(success("pi_1", "ch_1", T0 + 1)), ORN_OK);
	kind_apply();
	cr_assert_eq(kind_decide(refund_request("pi_1", 1, T0 + 2)), ORN_OK);
	kind_apply();
	cr_assert_eq(kind_decide(refund("pi_1", "re_1", T0 + 2)), ORN_OK);
	kind_apply();
	cr_assert_eq(state.status, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_eq(state.charges[0].refund, PAYMENT_REFUND_STATUS_REFUNDED);
}

Test(payment_kind, rejections_carry_code_and_detail)
{
	cr_assert_eq(kind_decide(success("pi_1", "ch_1", T0)), ORN_OK);
	then_decision_rejected("wrong_state");
	cr_assert_str_eq(act_decision_detail(decision),
	                 "RecordSuccess is not accepted while the payment is none");
	cr_assert_eq(kind_decide(refund("pi_1", "re_1", T0)), ORN_OK);
	then_decision_rejected("unknown_charge");
	cr_assert_eq(kind_decide(attempt("", T0)), ORN_OK);
	then_decision_rejected("invalid");
	cr_assert_str_eq(act_decision_detail(decision),
	                 "RecordAttempt: a field is out of bounds (see the payment contract)");
	given_attempted();
	cr_assert_eq(kind_decide(attempt(KEY_2, T0)), ORN_OK);
	then_decision_rejected("in_progress");
	cr_assert_null(strstr(act_decision_detail(decision), KEY_2));
	payment_state_init(&state);
	for (int i = 0; i < PAYMENT_ATTEMPTS_MAX; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		given(attempt(key, T0));
		given(decline("card_declined", T0));
	}
	cr_assert_eq(kind_decide(attempt(KEY_2, T0)), ORN_OK);
	then_decision_rejected("limit");
}

Test(payment_kind, undecodable_commands_and_events_are_errors)
{
	env_envelope env = {.schema = 2};
	uint8_t nil = 0xc0;

	strcpy(env.type, PAYMENT_CMD_RECORD_SUCCESS);
	env.payload = &nil;
	env.payload_len = 1;
	cr_assert_eq(payment_kind.decide(&state, &env, decision), ORN_EDECODE);
	env.schema = 1;
	cr_assert_eq(payment_kind.decide(&state, &env, decision), ORN_EDECODE);
	strcpy(env.type, "Nope");
	cr_assert_eq(payment_kind.decide(&state, &env, decision), ORN_EINVAL);
	env.schema = 2;
	strcpy(env.type, PAYMENT_EV_SUCCEEDED);
	cr_assert_eq(payment_kind.evolve(&state, &env), ORN_EDECODE);
	env.schema = 1;
	cr_assert_eq(payment_kind.evolve(&state, &env), ORN_EDECODE);
	strcpy(env.type, "Nope");
	cr_assert_eq(payment_kind.evolve(&state, &env), ORN_EINVAL);
}

static void view_json(char *json, size_t cap)
{
	mp_writer *text = mp_writer_create();
	mp_reader r;

	cr_assert_not_null(text);
	mp_writer_reset(writer);
	cr_assert_eq(payment_kind.view(&state, writer), ORN_OK);
	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_to_json(&r, text), ORN_OK);
	snprintf(json, cap, "%.*s", (int)mp_writer_size(text), (const char *)mp_writer_data(text));
	mp_writer_destroy(text);
}

Test(payment_kind, the_view_shows_attempts_and_charges)
{
	char json[4096];

	view_json(json, sizeof json);
	cr_assert_str_eq(json, "{\"status\":\"none\",\"attempt_count\":0,\"attempts\":[],\"charges\":[]}");
	given(attempt("k1", T0));
	given(decline("card_declined", T0 + 1));
	given(attempt("k2", T0 + 2));
	given(success("pi_1", "ch_1", T0 + 3));
	given(success("pi_2", "", T0 + 4));
	given(refund_request("pi_2", 1, T0 + 5));
	given(refund_failure("pi_2", 1, T0 + 5));
	view_json(json, sizeof json);
	cr_assert_str_eq(
	        json,
	        "{\"status\":\"succeeded\",\"attempt_count\":2,\"attempts\":["
	        "{\"provider_key\":\"k1\",\"payment_method\":\"pm_1\",\"amount_cents\":1500,\"currency\":"
	        "\"EUR\","
	        "\"brand\":\"visa\",\"last4\":\"4242\",\"at_ms\":1000000,\"intent_id\":null,\"action_url\":"
	        "null,"
	        "\"decline_code\":\"card_declined\",\"declined_at_ms\":1000001},"
	        "{\"provider_key\":\"k2\",\"payment_method\":\"pm_1\",\"amount_cents\":1500,\"currency\":"
	        "\"EUR\","
	        "\"brand\":\"visa\",\"last4\":\"4242\",\"at_ms\":1000002,\"intent_id\":\"pi_1\",\"action_"
	        "url\":null,"
	        "\"decline_code\":null,\"declined_at_ms\":null}],"
	        "\"charges\":["
	        "{\"intent_id\":\"pi_1\",\"charge_id\":\"ch_1\",\"at_ms\":1000003,\"refunded\":false,"
	        "\"refund\":\"none\",\"refund_key\":null,\"refund_amount_cents\":0,\"refund_id\":null,"
	        "\"refund_reason\":null},"
	        "{\"intent_id\":\"pi_2\",\"charge_id\":null,\"at_ms\":1000004,\"refunded\":false,"
	        "\"refund\":\"failed\",\"refund_key\":\"ord_1:refund:pi_2:1\",\"refund_amount_cents\":1500,"
	        "\"refund_id\":null,\"refund_reason\":\"expired_or_canceled_card\"}]}");
}

Test(payment_kind, decide_and_evolve_report_allocation_failure)
{
	env_envelope cmd = {.schema = 1, .type = PAYMENT_CMD_RECORD_ATTEMPT};
	env_envelope event;
	unsigned failures = 0;
	orn_rc rc;

	if (!failalloc_available())
		cr_skip_test("no allocation failure injection in this build");
	cr_assert_eq(payment_command_encode(writer, attempt(KEY_1, T0)), ORN_OK);
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	for (long n = 0;; n++, failures++) {
		act_decision_clear(decision);
		failalloc_after(n);
		rc = payment_kind.decide(&state, &cmd, decision);
		failalloc_off();
		if (rc == ORN_OK)
			break;
		cr_assert_eq(rc, ORN_ENOMEM, "allocation %ld", n);
	}
	cr_assert_geq(failures, 3);
	cr_assert_eq(act_decision_event(decision, 0, &event), ORN_OK);
	failalloc_after(0);
	rc = payment_kind.evolve(&state, &event);
	failalloc_off();
	cr_assert_eq(rc, ORN_ENOMEM);
	cr_assert_eq(payment_kind.evolve(&state, &event), ORN_OK);
	cr_assert_eq(state.status, PAYMENT_STATUS_ATTEMPTED);
}

Test(payment_kind, decide_reports_a_full_decision)
{
	env_envelope cmd = {.schema = 1, .type = PAYMENT_CMD_RECORD_ATTEMPT};

	cr_assert_eq(payment_command_encode(writer, attempt(KEY_1, T0)), ORN_OK);
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	act_decision_clear(decision);
	for (size_t i = 0; i < ENV_MAX_EVENTS; i++)
		cr_assert_eq(act_decision_emit(decision, "Filler", 1, (const uint8_t *)"\xc0", 1), ORN_OK);
	cr_assert_eq(payment_kind.decide(&state, &cmd, decision), ORN_ETOOBIG);
}
