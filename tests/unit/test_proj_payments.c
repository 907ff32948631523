/* test_proj_payments.c — the payments read model (projections/payments.c)
 * without NATS: payment events, as the payment decider emits them, are
 * encoded and applied through the model's projection definition in write
 * transactions of a real LMDB environment, as the projector does. Given the
 * events of a payment, when the order's payment is read, then it equals the
 * aggregate's own state (payment_evolve): a 3-D Secure challenge, a success,
 * a refund requested, failed, and done. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payment.h"
#include "payments.h"
#include "proj_internal.h"

static char dir[64];
static proj_env *env;
static proj_payments *payments;

static void setup(void)
{
	proj_env_options o;
	snprintf(dir, sizeof dir, "/tmp/orion-projpay-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = 1 << 22;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_payments_create(env, &payments), ORN_OK);
}

static void teardown(void)
{
	char cmd[128];
	proj_payments_destroy(payments);
	proj_env_close(env);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(proj_payments, .init = setup, .fini = teardown, .timeout = 60);

typedef struct raw_event {
	const char *subject, *type;
	uint64_t seq;
	const uint8_t *payload;
	size_t len;
} raw_event;

static orn_rc apply_cb(proj_txn *t, void *closure)
{
	const raw_event *r = closure;
	const proj_def *def = proj_payments_def(payments);
	env_envelope e;
	memset(&e, 0, sizeof e);
	snprintf(e.type, sizeof e.type, "%s", r->type);
	e.schema = 1;
	e.payload = r->payload;
	e.payload_len = r->len;
	return def->apply(def->self, t, r->seq, r->subject, &e);
}

static void apply_raw(const char *order, uint64_t seq, const char *type, const void *payload, size_t len)
{
	char subject[ES_SUBJECT_MAX];
	snprintf(subject, sizeof subject, "orion.evt.payment.%s", order);
	raw_event r = {subject, type, seq, payload, len};
	cr_assert_eq(proj_env_write(env, apply_cb, &r), ORN_OK);
}

/* Decides c on the aggregate's state, applies its one event to the model at
 * seq and to the state. */
static void record(const char *order, uint64_t seq, payment_state *state, payment_command c)
{
	payment_events out;
	cr_assert_eq(payment_decide(state, &c, &out), PAYMENT_OK, "command %d", c.kind);
	cr_assert_eq(out.count, 1);
	mp_writer *w = mp_writer_create();
	cr_assert_eq(payment_event_encode(w, &out.items[0]), ORN_OK);
	apply_raw(order, seq, payment_event_type(out.items[0].kind), mp_writer_data(w), mp_writer_size(w));
	mp_writer_destroy(w);
	cr_assert(payment_evolve(state, &out.items[0]));
}

static payment_command attempt(const char *key)
{
	payment_command c = {.kind = PAYMENT_RECORD_ATTEMPT};
	c.data.amount_cents = 2599;
	strcpy(c.data.currency, "EUR");
	strcpy(c.data.payment_method, "pm_1");
	strcpy(c.data.brand, "visa");
	strcpy(c.data.last4, "3155");
	snprintf(c.data.provider_key, sizeof c.data.provider_key, "%s", key);
	c.data.time_ms = 1000;
	return c;
}

static payment_command with_intent(payment_command_kind kind, const char *intent)
{
	payment_command c = {.kind = kind};
	snprintf(c.data.intent_id, sizeof c.data.intent_id, "%s", intent);
	c.data.time_ms = 2000;
	return c;
}

static void assert_read_equals(const char *order, const payment_state *want, uint64_t version)
{
	proj_payment *got = malloc(sizeof *got);
	cr_assert_eq(proj_payments_get(payments, order, got), ORN_OK);
	cr_assert_str_eq(got->order_id, order);
	cr_assert_eq(got->version, version);
	cr_assert_eq(got->state.status, want->status);
	cr_assert_eq(got->state.attempt_count, want->attempt_count);
	cr_assert_eq(got->state.charge_count, want->charge_count);
	for (size_t i = 0; i < want->attempt_count; i++) {
		cr_assert_str_eq(got->state.attempts[i].intent_id, want->attempts[i].intent_id);
		cr_assert_str_eq(got->state.attempts[i].action_url, want->attempts[i].action_url);
		cr_assert_eq(got->state.attempts[i].succeeded, want->attempts[i].succeeded);
	}
	for (size_t i = 0; i < want->charge_count; i++) {
		cr_assert_eq(got->state.charges[i].refund, want->charges[i].refund);
		cr_assert_str_eq(got->state.charges[i].refund_key, want->charges[i].refund_key);
		cr_assert_eq(got->state.charges[i].refund_amount_cents, want->charges[i].refund_amount_cents);
	}
	free(got);
}

Test(proj_payments, a_payment_read_back_is_the_aggregates_state_at_every_step)
{
	payment_state *state = malloc(sizeof *state);
	payment_state_init(state);
	proj_payment *none = malloc(sizeof *none);
	cr_assert_eq(proj_payments_get(payments, "o1", none), ORN_ENOTFOUND);
	cr_assert_eq(proj_payments_get(payments, "bad id!", none), ORN_EINVAL);
	free(none);

	record("o1", 10, state, attempt("o1:pay"));
	assert_read_equals("o1", state, 10);
	payment_command action = with_intent(PAYMENT_RECORD_ACTION_REQUIRED, "pi_1");
	strcpy(action.data.url, "http://psp.test/v1/3ds/pi_1");
	record("o1", 11, state, action);
	assert_read_equals("o1", state, 11);
	cr_assert_eq(state->status, PAYMENT_STATUS_REQUIRES_ACTION);
	payment_command success = with_intent(PAYMENT_RECORD_SUCCESS, "pi_1");
	strcpy(success.data.charge_id, "ch_1");
	record("o1", 12, state, success);
	assert_read_equals("o1", state, 12);

	/* a refund: requested, refused by the provider, requested again, done */
	payment_command request = with_intent(PAYMENT_RECORD_REFUND_REQUEST, "pi_1");
	cr_assert_eq(
	        payment_refund_key("o1", "pi_1", 1, request.data.refund_key, sizeof request.data.refund_key),
	        ORN_OK);
	request.data.amount_cents = 2599;
	record("o1", 20, state, request);
	assert_read_equals("o1", state, 20);
	payment_command failure = with_intent(PAYMENT_RECORD_REFUND_FAILURE, "pi_1");
	strcpy(failure.data.refund_key, request.data.refund_key);
	strcpy(failure.data.reason, "expired_or_canceled_card");
	record("o1", 21, state, failure);
	assert_read_equals("o1", state, 21);
	cr_assert_eq(state->charges[0].refund, PAYMENT_REFUND_STATUS_FAILED);
	cr_assert_eq(
	        payment_refund_key("o1", "pi_1", 2, request.data.refund_key, sizeof request.data.refund_key),
	        ORN_OK);
	record("o1", 22, state, request);
	payment_command refunded = with_intent(PAYMENT_RECORD_REFUND, "pi_1");
	strcpy(refunded.data.refund_id, "re_1");
	refunded.data.amount_cents = 2599;
	record("o1", 23, state, refunded);
	assert_read_equals("o1", state, 23);
	cr_assert_eq(state->charges[0].refund, PAYMENT_REFUND_STATUS_REFUNDED);
	free(state);
}

Test(proj_payments, a_redelivery_is_skipped_and_other_subjects_are_not_read)
{
	payment_state *state = malloc(sizeof *state);
	payment_state_init(state);
	record("o2", 5, state, attempt("o2:pay"));
	/* the same event again at its sequence, and an older one: nothing changes */
	payment_command c = attempt("o2:pay");
	payment_events out;
	payment_state fresh;
	payment_state_init(&fresh);
	cr_assert_eq(payment_decide(&fresh, &c, &out), PAYMENT_OK);
	mp_writer *w = mp_writer_create();
	cr_assert_eq(payment_event_encode(w, &out.items[0]), ORN_OK);
	apply_raw("o2", 5, PAYMENT_EV_ATTEMPTED, mp_writer_data(w), mp_writer_size(w));
	apply_raw("o2", 4, PAYMENT_EV_ATTEMPTED, mp_writer_data(w), mp_writer_size(w));
	assert_read_equals("o2", state, 5);
	/* another subject, an unknown type and an undecodable payload are skipped */
	char subject[] = "orion.evt.order.o2";
	raw_event other = {subject, PAYMENT_EV_ATTEMPTED, 6, mp_writer_data(w), mp_writer_size(w)};
	cr_assert_eq(proj_env_write(env, apply_cb, &other), ORN_OK);
	apply_raw("o2", 7, "PaymentFromTheFuture", mp_writer_data(w), mp_writer_size(w));
	apply_raw("o2", 8, PAYMENT_EV_ATTEMPTED, "\xc1", 1);
	assert_read_equals("o2", state, 5);
	proj_payments_stats stats;
	proj_payments_stats_get(payments, &stats);
	cr_assert_eq(stats.undecodable, 1);
	mp_writer_destroy(w);
	free(state);
}
