/* pay_refund.c — refunds of succeeded intents (ADR 028 section 3;
 * pay-internal.h). A refund is claimed in the payment first
 * (PaymentRefundRequested with the key "<order>:refund:<intent>:<n>"), then
 * asked of the provider with that key as its Idempotency-Key, then its
 * outcome recorded. Killed between the provider's answer and the record, the
 * next pass finds the claim pending and replays the same key: the provider
 * answers the refund it made, and the customer is refunded once. */
#include "pay-internal.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

/* What the provider said of one refund call. */
typedef enum refund_answer {
	ANSWER_REFUNDED, /* succeeded, or refunded already */
	ANSWER_FAILED,   /* the refund failed (reason) or cannot be made */
	ANSWER_LATER     /* no usable answer now, or pending: ask again with the same key */
} refund_answer;

static refund_answer ask_provider(pay_worker *w, const char *order_id, const char *intent_id, const char *key,
                                  pspc_refund *refund, char *reason, size_t cap)
{
	pay_service *p = w->p;
	pspc_response resp;
	pspc_error err;
	int64_t start_ns = orn_monotonic_ns();
	orn_rc rc = pspc_refund_post(w->psp, intent_id, key, p->call_timeout_ms, &resp);
	refund_answer answer = ANSWER_LATER;

	pay_observe_provider("refund", rc, rc == ORN_OK ? resp.status : 0, start_ns);
	memset(refund, 0, sizeof *refund);
	if (rc != ORN_OK) {
		log_warn("payment refund not answered", "order_id", order_id, "intent_id", intent_id, "error",
		         orn_rc_name(rc));
		return ANSWER_LATER;
	}
	if (p->kill_after_refund && resp.status == 200)
		raise(SIGKILL); /* fault test: the answer is lost with the process */
	if (resp.status == 200 && pspc_parse_refund(resp.body, resp.len, refund) == ORN_OK) {
		if (strcmp(refund->status, "succeeded") == 0) {
			answer = ANSWER_REFUNDED;
		} else if (strcmp(refund->status, "failed") == 0) {
			snprintf(reason, cap, "%s",
			         refund->failure_reason[0] != '\0' ? refund->failure_reason : "failed");
			answer = ANSWER_FAILED;
		}
	} else if (resp.status == 400 && pspc_parse_error(resp.body, resp.len, &err, NULL) == ORN_OK) {
		if (strcmp(err.code, "charge_already_refunded") == 0) {
			answer = ANSWER_REFUNDED; /* under another key, or elsewhere */
		} else if (err.type[0] != '\0' && strcmp(err.type, "idempotency_error") != 0) {
			log_error("payment refund refused by the provider", "order_id", order_id, "intent_id",
			          intent_id, "code", err.code);
			snprintf(reason, cap, "%s", err.code[0] != '\0' ? err.code : "refused");
			answer = ANSWER_FAILED;
		}
	}
	if (answer == ANSWER_LATER) {
		char status[16];
		snprintf(status, sizeof status, "%ld", resp.status);
		log_warn("payment refund without a usable answer; asked again later", "order_id", order_id,
		         "intent_id", intent_id, "status", status);
	}
	pspc_response_dispose(&resp);
	return answer;
}

/* The amount of intent_id: its attempt's, else the current attempt's. */
static int64_t amount_of(const payment_state *s, const char *intent_id)
{
	const payment_attempt *a = payment_find_attempt(s, intent_id);

	if (a == NULL)
		a = payment_current_attempt(s);
	return a != NULL ? a->amount_cents : 0;
}

/* Claims the refund: the pending key, or a new request with the next one.
 * key receives the key to call with; false if there is nothing to do
 * (*done: refunded, or failed and not retried) or it could not be claimed. */
static bool claim(pay_worker *w, const char *order_id, const char *intent_id, bool retry, char *key,
                  bool *done, orn_rc *rc)
{
	const payment_charge *c = payment_find_intent(w->payment, intent_id);
	payment_command cmd = {.kind = PAYMENT_RECORD_REFUND_REQUEST};
	char command_id[PAY_CMD_ID_MAX], step[32];
	kit_result result;
	unsigned n;

	*done = false;
	*rc = ORN_OK;
	if (c == NULL || c->refund == PAYMENT_REFUND_STATUS_REFUNDED ||
	    (c->refund == PAYMENT_REFUND_STATUS_FAILED && !retry)) {
		*done = true;
		return false;
	}
	if (c->refund == PAYMENT_REFUND_STATUS_PENDING) {
		snprintf(key, PAYMENT_KEY_MAX, "%s", c->refund_key);
		return true;
	}
	n = c->refund_tries + 1;
	snprintf(cmd.data.intent_id, sizeof cmd.data.intent_id, "%s", intent_id);
	cmd.data.amount_cents = amount_of(w->payment, intent_id);
	if (payment_refund_key(order_id, intent_id, n, cmd.data.refund_key, sizeof cmd.data.refund_key) !=
	    ORN_OK) {
		*rc = ORN_EINVAL;
		return false;
	}
	snprintf(step, sizeof step, "refund-%u", n);
	pay_charge_command_id(command_id, sizeof command_id, order_id, step, intent_id);
	if ((*rc = pay_record(w, order_id, &cmd, command_id, &result)) != ORN_OK)
		return false;
	if (result.outcome != BUS_ACCEPTED) {
		log_warn("payment refund not claimed", "order_id", order_id, "intent_id", intent_id, "code",
		         result.code);
		*rc = ORN_EUNAVAILABLE;
		return false;
	}
	/* the claim that holds, ours or one found first */
	c = payment_find_intent(w->payment, intent_id);
	if (c == NULL || c->refund != PAYMENT_REFUND_STATUS_PENDING) {
		*done = c != NULL;
		return false;
	}
	snprintf(key, PAYMENT_KEY_MAX, "%s", c->refund_key);
	return true;
}

orn_rc pay_refund_intent(pay_worker *w, const char *order_id, const char *intent_id, bool retry,
                         uint64_t *seq)
{
	char key[PAYMENT_KEY_MAX], reason[PAYMENT_TEXT_MAX], command_id[PAY_CMD_ID_MAX];
	payment_command cmd;
	pspc_refund refund;
	kit_result result;
	refund_answer answer;
	bool done;
	orn_rc rc;

	if (seq != NULL)
		*seq = 0;
	if ((rc = pay_load_payment(w, order_id)) != ORN_OK)
		return rc;
	if (!claim(w, order_id, intent_id, retry, key, &done, &rc))
		return done ? ORN_OK : rc != ORN_OK ? rc : ORN_EUNAVAILABLE;
	answer = ask_provider(w, order_id, intent_id, key, &refund, reason, sizeof reason);
	if (answer == ANSWER_LATER)
		return ORN_EUNAVAILABLE;
	memset(&cmd, 0, sizeof cmd);
	snprintf(cmd.data.intent_id, sizeof cmd.data.intent_id, "%s", intent_id);
	if (answer == ANSWER_REFUNDED) {
		cmd.kind = PAYMENT_RECORD_REFUND;
		snprintf(cmd.data.refund_id, sizeof cmd.data.refund_id, "%s", refund.id);
		cmd.data.amount_cents =
		        refund.amount > 0 && refund.amount <= PAYMENT_AMOUNT_MAX ? refund.amount : 0;
		pay_charge_command_id(command_id, sizeof command_id, order_id, "refunded", key);
	} else {
		cmd.kind = PAYMENT_RECORD_REFUND_FAILURE;
		snprintf(cmd.data.refund_key, sizeof cmd.data.refund_key, "%s", key);
		snprintf(cmd.data.reason, sizeof cmd.data.reason, "%s", reason);
		pay_charge_command_id(command_id, sizeof command_id, order_id, "refund-failed", key);
	}
	if ((rc = pay_record(w, order_id, &cmd, command_id, &result)) != ORN_OK)
		return rc;
	if (result.outcome == BUS_FAILED)
		return ORN_EUNAVAILABLE;
	if (result.outcome != BUS_ACCEPTED)
		log_error("payment refund outcome not recorded", "order_id", order_id, "intent_id", intent_id,
		          "code", result.code);
	if (seq != NULL)
		*seq = result.seq != 0 ? result.seq : result.at.version;
	if (answer == ANSWER_REFUNDED)
		log_info("payment refunded", "order_id", order_id, "intent_id", intent_id, "refund_id",
		         refund.id);
	else
		log_warn("payment refund failed", "order_id", order_id, "intent_id", intent_id, "reason",
		         reason);
	return ORN_OK;
}
