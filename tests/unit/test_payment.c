/* test_payment.c — unit tests of the payment aggregate (actors/payment.c).
 *
 * Given-when-then: given commands decided and applied with payment_evolve,
 * when a command is decided, then the expected event, accepted no-op or
 * rejection. Every command in every status, the redelivery no-ops, the
 * bounds, the payload codecs, snapshot/restore and the kind table driven
 * through an act_decision. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"
#include "payment.h"

#define T0    1000000
#define KEY_1 "ord_1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define KEY_2 "ord_1:f0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

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
	strcpy(c->data.brand, "visa");
	strcpy(c->data.last4, "4242");
	snprintf(c->data.provider_key, sizeof c->data.provider_key, "%s", key);
	return c;
}

static payment_command *success(const char *charge_id, int64_t now)
{
	payment_command *c = command(PAYMENT_RECORD_SUCCESS, now);

	snprintf(c->data.charge_id, sizeof c->data.charge_id, "%s", charge_id);
	return c;
}

static payment_command *decline(const char *code, int64_t now)
{
	payment_command *c = command(PAYMENT_RECORD_DECLINE, now);

	snprintf(c->data.code, sizeof c->data.code, "%s", code);
	return c;
}

static payment_command *refund(const char *charge_id, const char *refund_id, int64_t now)
{
	payment_command *c = command(PAYMENT_RECORD_REFUND, now);

	snprintf(c->data.charge_id, sizeof c->data.charge_id, "%s", charge_id);
	snprintf(c->data.refund_id, sizeof c->data.refund_id, "%s", refund_id);
	strcpy(c->data.reason, "order cancelled");
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
	given(success("ch_1", T0 + 100));
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
	cr_assert_eq(a->amount_cents, 1500);
	cr_assert_str_eq(a->currency, "EUR");
	cr_assert_str_eq(a->brand, "visa");
	cr_assert_str_eq(a->last4, "4242");
	cr_assert_eq(a->at_ms, T0);
	cr_assert_str_eq(a->decline_code, "");
	cr_assert_eq(state.charge_count, 0);
}

Test(payment, a_redelivered_attempt_is_a_no_op_in_every_status)
{
	given_attempted();
	when(attempt(KEY_1, T0 + 1));
	then_nothing();
	given(success("ch_1", T0 + 2));
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
	cr_assert_eq(state.attempt_count, 1);
}

Test(payment, after_a_decline_the_customer_may_try_again)
{
	const payment_attempt *a;
	payment_command *c;

	given_declined();
	c = attempt(KEY_2, T0 + 200);
	strcpy(c->data.brand, "mastercard");
	strcpy(c->data.last4, "4444");
	when(c);
	then_event(PAYMENT_ATTEMPTED, PAYMENT_STATUS_ATTEMPTED);
	cr_assert_eq(state.attempt_count, 2);
	a = payment_current_attempt(&state);
	cr_assert_str_eq(a->provider_key, KEY_2);
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

/* ---- outcomes ---- */

Test(payment, a_success_settles_the_open_attempt)
{
	const payment_charge *charge;

	given_attempted();
	when(success("ch_1", T0 + 100));
	then_event(PAYMENT_SUCCEEDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_str_eq(out.items[0].data.charge_id, "ch_1");
	cr_assert_eq(state.charge_count, 1);
	charge = payment_find_charge(&state, "ch_1");
	cr_assert_not_null(charge);
	cr_assert_eq(charge->at_ms, T0 + 100);
	cr_assert_not(charge->refunded);
	cr_assert_null(payment_find_charge(&state, "ch_2"));
}

Test(payment, a_success_needs_an_open_attempt)
{
	when(success("ch_1", T0));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
	given_declined();
	when(success("ch_1", T0 + 200));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
}

Test(payment, a_redelivered_success_is_a_no_op)
{
	given_succeeded();
	when(success("ch_1", T0 + 500));
	then_nothing();
	cr_assert_eq(state.charge_count, 1);
}

Test(payment, another_charge_found_after_a_success_is_recorded_up_to_the_bound)
{
	char id[32];

	given_succeeded();
	when(success("ch_2", T0 + 200));
	then_event(PAYMENT_SUCCEEDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_eq(state.charge_count, 2);
	for (int i = 3; i <= PAYMENT_CHARGES_MAX; i++) {
		snprintf(id, sizeof id, "ch_%d", i);
		given(success(id, T0 + 200 + i));
	}
	cr_assert_eq(state.charge_count, PAYMENT_CHARGES_MAX);
	when(success("ch_99", T0 + 300));
	then_rejected(PAYMENT_REJ_LIMIT);
	when(success("ch_2", T0 + 300));
	then_nothing();
}

Test(payment, a_decline_settles_the_open_attempt)
{
	given_attempted();
	when(decline("insufficient_funds", T0 + 100));
	then_event(PAYMENT_DECLINED, PAYMENT_STATUS_DECLINED);
	cr_assert_str_eq(payment_current_attempt(&state)->decline_code, "insufficient_funds");
	cr_assert_eq(payment_current_attempt(&state)->declined_at_ms, T0 + 100);
}

Test(payment, a_decline_needs_an_open_attempt)
{
	when(decline("card_declined", T0));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
	given_succeeded();
	when(decline("card_declined", T0 + 200));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
}

Test(payment, a_redelivered_decline_is_a_no_op_another_code_is_not)
{
	given_declined();
	when(decline("card_declined", T0 + 200));
	then_nothing();
	when(decline("expired_card", T0 + 200));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
}

/* ---- refunds ---- */

Test(payment, a_succeeded_charge_is_refunded)
{
	const payment_charge *charge;

	given_succeeded();
	when(refund("ch_1", "re_1", T0 + 500));
	then_event(PAYMENT_REFUNDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert_str_eq(out.items[0].data.refund_id, "re_1");
	charge = payment_find_charge(&state, "ch_1");
	cr_assert(charge->refunded);
	cr_assert_str_eq(charge->refund_id, "re_1");
	cr_assert_str_eq(charge->refund_reason, "order cancelled");
	cr_assert_eq(charge->refunded_at_ms, T0 + 500);
}

Test(payment, a_refund_needs_a_succeeded_charge_of_this_payment)
{
	when(refund("ch_1", "re_1", T0));
	then_rejected(PAYMENT_REJ_UNKNOWN_CHARGE);
	given_declined();
	when(refund("ch_1", "re_1", T0 + 200));
	then_rejected(PAYMENT_REJ_UNKNOWN_CHARGE);
	payment_state_init(&state);
	given_succeeded();
	when(refund("ch_2", "re_1", T0 + 200));
	then_rejected(PAYMENT_REJ_UNKNOWN_CHARGE);
}

Test(payment, a_refund_is_recorded_once)
{
	given_succeeded();
	given(refund("ch_1", "re_1", T0 + 500));
	when(refund("ch_1", "re_1", T0 + 600));
	then_nothing();
	when(refund("ch_1", "re_2", T0 + 600));
	then_rejected(PAYMENT_REJ_WRONG_STATE);
	/* another charge is refunded on its own */
	given(success("ch_2", T0 + 700));
	when(refund("ch_2", "re_2", T0 + 800));
	then_event(PAYMENT_REFUNDED, PAYMENT_STATUS_SUCCEEDED);
	cr_assert(payment_find_charge(&state, "ch_2")->refunded);
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
	static const char *const brands[] = {"", "Visa", "visa card", "visa!", "vísa"};
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
	static const char *const last4s[] = {"", "424", "42a2", "-424"};
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
	assert_invalid(success("", T0));
	assert_invalid(success("ch 1", T0));
	assert_invalid(success("ch_1", -1));
	c = success("", T0);
	memset(c->data.charge_id, 'c', PAYMENT_ID_MAX);
	assert_invalid(c);
	c->data.charge_id[PAYMENT_ID_MAX - 1] = '\0';
	assert_valid(c); /* 128 characters: another charge */
	assert_invalid(decline("", T0));
	assert_invalid(decline("card\ndeclined", T0));
	assert_invalid(decline("\xff", T0));
	assert_invalid(decline("card_declined", PAYMENT_TIME_MAX + 1));
	memset(text, 'x', sizeof text);
	text[sizeof text - 1] = '\0';
	c = decline("", T0);
	memcpy(c->data.code, text, sizeof text);
	when(c);
	then_rejected(PAYMENT_REJ_WRONG_STATE); /* 200 bytes are in bounds */
	memset(c->data.code, 'x', sizeof c->data.code);
	assert_invalid(c);
	assert_invalid(refund("", "re_1", T0));
	assert_invalid(refund("ch_1", "", T0));
	assert_invalid(refund("ch_1", "re 1", T0));
	assert_invalid(refund("ch_1", "re_1", -5));
	c = refund("ch_1", "re_1", T0);
	c->data.reason[0] = '\0';
	assert_invalid(c);
	strcpy(c->data.reason, "bad\x01reason");
	assert_invalid(c);
	memcpy(c->data.reason, text, sizeof text);
	assert_valid(c);
	strcpy(c->data.reason, "customer asked, twice");
	assert_valid(c);
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

	cr_assert_not(evolve_command(success("ch_1", T0)));
	cr_assert_not(evolve_command(decline("card_declined", T0)));
	cr_assert_not(evolve_command(refund("ch_1", "re_1", T0)));
	given_attempted();
	cr_assert_not(evolve_command(attempt(KEY_2, T0)));
	given(success("ch_1", T0 + 1));
	cr_assert_not(evolve_command(attempt(KEY_2, T0)));
	cr_assert_not(evolve_command(decline("card_declined", T0)));
	cr_assert_not(evolve_command(success("ch_1", T0)));
	given(refund("ch_1", "re_1", T0 + 2));
	cr_assert_not(evolve_command(refund("ch_1", "re_1", T0)));
	for (int i = 2; i <= PAYMENT_CHARGES_MAX; i++) {
		snprintf(id, sizeof id, "ch_%d", i);
		given(success(id, T0 + i));
	}
	cr_assert_not(evolve_command(success("ch_99", T0)));
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
	cr_assert_str_eq(payment_verdict_code((payment_verdict)99), "invalid");
	cr_assert_str_eq(payment_status_name(PAYMENT_STATUS_NONE), "none");
	cr_assert_str_eq(payment_status_name(PAYMENT_STATUS_ATTEMPTED), "attempted");
	cr_assert_str_eq(payment_status_name(PAYMENT_STATUS_SUCCEEDED), "succeeded");
	cr_assert_str_eq(payment_status_name(PAYMENT_STATUS_DECLINED), "declined");
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
	assert_command_round_trip(success("ch_1", T0));
	assert_command_round_trip(decline("Karte abgelehnt: ungültig", T0));
	assert_command_round_trip(refund("ch_1", "re_1", T0));
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
	given_round_trip(success("ch_1", T0 + 3));
	given_round_trip(refund("ch_1", "re_1", T0 + 4));
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

Test(payment, events_carry_brand_last4_and_ids_only)
{
	char keys[256];

	given_round_trip(attempt(KEY_1, T0));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "amount_cents,currency,brand,last4,provider_key,at_ms");
	given_round_trip(success("ch_1", T0 + 1));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "charge_id,at_ms");
	given_round_trip(refund("ch_1", "re_1", T0 + 2));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "charge_id,refund_id,reason,at_ms");
	payment_state_init(&state);
	given_attempted();
	given_round_trip(decline("card_declined", T0 + 1));
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "code,at_ms");
	mp_writer_reset(writer);
	cr_assert_eq(payment_command_encode(writer, attempt(KEY_1, T0)), ORN_OK);
	written_keys(keys, sizeof keys);
	cr_assert_str_eq(keys, "amount_cents,currency,brand,last4,provider_key,now_ms");
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
	c = success("ch_1", T0);
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
	mp_write_map(writer, 3);
	mp_write_cstr(writer, "charge_id");
	mp_write_cstr(writer, "ch_1");
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "charge_id");
	mp_write_cstr(writer, "ch_2");
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	/* wrong types */
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "charge_id");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "charge_id");
	mp_write_cstr(writer, "ch_1");
	mp_write_cstr(writer, "now_ms");
	mp_write_cstr(writer, "1");
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	/* over-long string */
	memset(long_id, 'c', PAYMENT_ID_MAX);
	long_id[PAYMENT_ID_MAX] = '\0';
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "charge_id");
	mp_write_cstr(writer, long_id);
	mp_write_cstr(writer, "now_ms");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(PAYMENT_CMD_RECORD_SUCCESS), ORN_EDECODE);
	/* an unknown key is skipped; an event key in a command is unknown */
	mp_writer_reset(writer);
	mp_write_map(writer, 4);
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
	cr_assert_eq(payment_command_encode(writer, success("ch_1", T0)), ORN_OK);
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
	e = event_of(success("ch_1", T0));
	assert_event_accepted(&e);
	e = event_of(success("", T0));
	assert_event_rejected(&e);
	e = event_of(decline("card_declined", T0));
	assert_event_accepted(&e);
	e = event_of(decline("", T0));
	assert_event_rejected(&e);
	e = event_of(refund("ch_1", "re_1", T0));
	assert_event_accepted(&e);
	e = event_of(refund("ch_1", "", T0));
	assert_event_rejected(&e);
	e = event_of(refund("ch_1", "re_1", PAYMENT_TIME_MAX + 1));
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
	given(decline("card_declined", T0 + 1));
	assert_snapshot_equivalent();
	given(attempt(KEY_2, T0 + 2));
	assert_snapshot_equivalent();
	given(success("ch_1", T0 + 3));
	assert_snapshot_equivalent();
	given(success("ch_2", T0 + 4));
	given(refund("ch_1", "re_1", T0 + 5));
	assert_snapshot_equivalent();
	given(refund("ch_2", "re_2", T0 + 6));
	assert_snapshot_equivalent();
	/* the largest state */
	payment_state_init(&state);
	for (int i = 0; i < PAYMENT_ATTEMPTS_MAX; i++) {
		snprintf(id, sizeof id, "k%d", i);
		given(attempt(id, T0 + i));
		if (i + 1 < PAYMENT_ATTEMPTS_MAX)
			given(decline("card_declined", T0 + i));
	}
	for (int i = 0; i < PAYMENT_CHARGES_MAX; i++) {
		snprintf(id, sizeof id, "ch_%d", i);
		given(success(id, T0 + 100 + i));
		snprintf(id, sizeof id, "re_%d", i);
		given(refund(state.charges[i].charge_id, id, T0 + 200 + i));
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
	write_pair(success("ch_1", T0));
	cr_assert_eq(restore_written(), ORN_EDECODE);
	/* two refunds of one charge */
	mp_writer_reset(writer);
	mp_write_array(writer, 4);
	write_pair(attempt(KEY_1, T0));
	write_pair(success("ch_1", T0));
	write_pair(refund("ch_1", "re_1", T0));
	write_pair(refund("ch_1", "re_1", T0));
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
	cr_assert_eq(kind_decide(success("ch_1", T0 + 1)), ORN_OK);
	kind_apply();
	cr_assert_eq(kind_decide(refund("ch_1", "re_1", T0 + 2)), ORN_OK);
	kind_apply();
	cr_assert_eq(state.status, PAYMENT_STATUS_SUCCEEDED);
	cr_assert(state.charges[0].refunded);
}

Test(payment_kind, rejections_carry_code_and_detail)
{
	cr_assert_eq(kind_decide(success("ch_1", T0)), ORN_OK);
	then_decision_rejected("wrong_state");
	cr_assert_str_eq(act_decision_detail(decision),
	                 "RecordSuccess is not accepted while the payment is none");
	cr_assert_eq(kind_decide(refund("ch_1", "re_1", T0)), ORN_OK);
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
	given(success("ch_1", T0 + 3));
	given(success("ch_2", T0 + 4));
	given(refund("ch_2", "re_1", T0 + 5));
	view_json(json, sizeof json);
	cr_assert_str_eq(
	        json,
	        "{\"status\":\"succeeded\",\"attempt_count\":2,\"attempts\":["
	        "{\"provider_key\":\"k1\",\"amount_cents\":1500,\"currency\":\"EUR\",\"brand\":\"visa\","
	        "\"last4\":\"4242\",\"at_ms\":1000000,\"decline_code\":\"card_declined\",\"declined_at_ms\":"
	        "1000001},"
	        "{\"provider_key\":\"k2\",\"amount_cents\":1500,\"currency\":\"EUR\",\"brand\":\"visa\","
	        "\"last4\":\"4242\",\"at_ms\":1000002,\"decline_code\":null,\"declined_at_ms\":null}],"
	        "\"charges\":["
	        "{\"charge_id\":\"ch_1\",\"at_ms\":1000003,\"refunded\":false,\"refund_id\":null,"
	        "\"refund_reason\":null,\"refunded_at_ms\":null},"
	        "{\"charge_id\":\"ch_2\",\"at_ms\":1000004,\"refunded\":true,\"refund_id\":\"re_1\","
	        "\"refund_reason\":\"order cancelled\",\"refunded_at_ms\":1000005}]}");
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
