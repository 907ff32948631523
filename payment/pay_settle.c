/* pay_settle.c — an intent's outcome recorded and the order moved
 * (pay-internal.h), the same whether the provider's answer to our own call,
 * its webhook or the reconciler reports it: the payment aggregate records an
 * outcome once (actors/payment.h) and the order's commands are no-ops when
 * repeated, so whichever path comes first wins and the others change nothing.
 * Command ids are derived from the order and the intent, the same on every
 * path. */
#include "pay-internal.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

/* Shown on an order whose card the provider never described to us. */
#define UNKNOWN_BRAND "unknown"
#define UNKNOWN_LAST4 "0000"

/* Maps a refused Record or Mark command to the reply. */
static void refused(pay_reply *out, const char *code, const char *detail)
{
	if (strcmp(code, "in_progress") == 0 || strcmp(code, "wrong_state") == 0 ||
	    strcmp(code, "limit") == 0)
		pay_reply_set(out, BUS_REJECTED, code, detail, 0);
	else
		pay_reply_set(out, BUS_FAILED, "unavailable", "the payment could not be recorded", 0);
}

/* Records c with the command id of (order, step, intent): true once the
 * payment has an answer (else out is failed unavailable). */
static bool record(pay_worker *w, const char *order_id, payment_command *c, const char *step, const char *id,
                   kit_result *result, pay_reply *out)
{
	char command_id[PAY_CMD_ID_MAX];

	pay_charge_command_id(command_id, sizeof command_id, order_id, step, id);
	if (pay_record(w, order_id, c, command_id, result) != ORN_OK || result->outcome == BUS_FAILED) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the payment could not be recorded", 0);
		return false;
	}
	return true;
}

/* Brand and last 4 for MarkPaid into the order command: the answer's, the
 * attempt's, the payment method's at the provider, else a placeholder. */
static void card_of(pay_worker *w, const char *intent_id, const pspc_card *card)
{
	const payment_attempt *a = payment_find_attempt(w->payment, intent_id);
	order_data *d = &w->order_cmd->data;
	pspc_card found;
	pspc_response resp;

	if (a == NULL)
		a = payment_current_attempt(w->payment);
	if (card != NULL && card->brand[0] != '\0' && card->last4[0] != '\0') {
		snprintf(d->brand, sizeof d->brand, "%s", card->brand);
		snprintf(d->last4, sizeof d->last4, "%s", card->last4);
		return;
	}
	if (a != NULL && a->brand[0] != '\0' && a->last4[0] != '\0') {
		snprintf(d->brand, sizeof d->brand, "%s", a->brand);
		snprintf(d->last4, sizeof d->last4, "%s", a->last4);
		return;
	}
	memset(&found, 0, sizeof found);
	if (a != NULL && a->payment_method[0] != '\0') {
		int64_t start_ns = orn_monotonic_ns();
		orn_rc rc = pspc_payment_method_get(w->psp, a->payment_method, w->p->call_timeout_ms, &resp);
		pay_observe_provider("payment_method", rc, rc == ORN_OK ? resp.status : 0, start_ns);
		if (rc == ORN_OK) {
			if (resp.status != 200 ||
			    pspc_parse_payment_method(resp.body, resp.len, &found) != ORN_OK)
				memset(&found, 0, sizeof found);
			pspc_response_dispose(&resp);
		}
	}
	if (found.brand[0] == '\0') {
		log_warn("payment: the provider did not describe the card; the order shows a placeholder",
		         "intent_id", intent_id);
		snprintf(found.brand, sizeof found.brand, "%s", UNKNOWN_BRAND);
		snprintf(found.last4, sizeof found.last4, "%s", UNKNOWN_LAST4);
	}
	snprintf(d->brand, sizeof d->brand, "%s", found.brand);
	snprintf(d->last4, sizeof d->last4, "%s", found.last4);
}

/* True if the order is confirmed by this very intent (its charge or, with
 * none named, the intent itself): a MarkPaid refused then is no news. */
static bool paid_by(pay_worker *w, const char *order_id, const char *intent_id, const char *charge_id)
{
	uint64_t version;

	return pay_load_order(w, order_id, &version) == ORN_OK && order_status_is_paid(w->order->status) &&
	       (strcmp(w->order->charge_id, charge_id) == 0 || strcmp(w->order->charge_id, intent_id) == 0);
}

void pay_settle_succeeded(pay_worker *w, const char *order_id, const char *intent_id, const char *charge_id,
                          const pspc_card *card, pay_reply *out)
{
	char command_id[PAY_CMD_ID_MAX], charge[PAYMENT_ID_MAX];
	payment_command c = {.kind = PAYMENT_RECORD_SUCCESS};
	const payment_charge *known;
	kit_result result;
	bus_reply reply;

	snprintf(c.data.intent_id, sizeof c.data.intent_id, "%s", intent_id);
	snprintf(c.data.charge_id, sizeof c.data.charge_id, "%s", charge_id != NULL ? charge_id : "");
	if (!record(w, order_id, &c, "success", intent_id, &result, out))
		return;
	if (result.outcome != BUS_ACCEPTED) {
		log_error("payment success not recorded", "order_id", order_id, "intent_id", intent_id,
		          "code", result.code);
		refused(out, result.code, result.detail);
		return;
	}
	/* the charge as first recorded, whoever reports the success again */
	known = payment_find_intent(w->payment, intent_id);
	snprintf(charge, sizeof charge, "%s",
	         known != NULL && known->charge_id[0] != '\0' ? known->charge_id
	         : charge_id != NULL && charge_id[0] != '\0'  ? charge_id
	                                                      : intent_id);
	memset(w->order_cmd, 0, sizeof *w->order_cmd);
	w->order_cmd->kind = ORDER_MARK_PAID;
	snprintf(w->order_cmd->data.charge_id, sizeof w->order_cmd->data.charge_id, "%s", charge);
	card_of(w, intent_id, card);
	pay_charge_command_id(command_id, sizeof command_id, order_id, "paid", intent_id);
	if (pay_order_command(w, order_id, command_id, &reply) != ORN_OK) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the order could not be marked paid", 0);
		return;
	}
	if (reply.outcome == BUS_ACCEPTED) {
		pay_reply_set(out, BUS_ACCEPTED, "", "", reply.seq != 0 ? reply.seq : reply.version);
		log_info("payment succeeded", "order_id", order_id, "intent_id", intent_id);
	} else if (strcmp(reply.code, "wrong_state") == 0 && paid_by(w, order_id, intent_id, charge)) {
		pay_reply_set(out, BUS_ACCEPTED, "", "", reply.version);
	} else if (strcmp(reply.code, "wrong_state") == 0) {
		log_warn("payment succeeded for an order no longer awaiting payment; refunding", "order_id",
		         order_id, "intent_id", intent_id);
		if (pay_refund_intent(w, order_id, intent_id, false, NULL) != ORN_OK)
			/* asked again: the caller retries (a webhook is sent again) */
			pay_reply_set(out, BUS_FAILED, "unavailable",
			              "the order stopped awaiting payment; its refund could not be made yet",
			              0);
		else
			pay_reply_set(out, BUS_REJECTED, "wrong_state",
			              "the order stopped awaiting payment before the payment; it is refunded",
			              0);
	} else {
		refused(out, reply.code, reply.detail);
	}
	bus_reply_dispose(&reply);
}

void pay_settle_declined(pay_worker *w, const char *order_id, const char *intent_id, const char *code,
                         pay_reply *out)
{
	char command_id[PAY_CMD_ID_MAX];
	payment_command c = {.kind = PAYMENT_RECORD_DECLINE};
	const payment_attempt *current;
	kit_result result;
	bus_reply reply;

	char id[PAYMENT_KEY_MAX];

	/* without an intent, the attempt's key: each attempt's decline is its own command */
	current = payment_current_attempt(w->payment);
	snprintf(id, sizeof id, "%s",
	         intent_id[0] != '\0' ? intent_id
	         : current != NULL    ? current->provider_key
	                              : "");
	snprintf(c.data.intent_id, sizeof c.data.intent_id, "%s", intent_id);
	snprintf(c.data.code, sizeof c.data.code, "%s", code);
	if (!record(w, order_id, &c, "decline", id, &result, out))
		return;
	if (result.outcome != BUS_ACCEPTED) {
		refused(out, result.code, result.detail);
		return;
	}
	/* The order fails only with the current attempt declined by the
	 * provider (not closed by us, and nothing succeeded): a stale report of
	 * another intent changes nothing. */
	current = payment_current_attempt(w->payment);
	if (w->payment->status != PAYMENT_STATUS_DECLINED || current == NULL ||
	    (current->intent_id[0] != '\0' && strcmp(current->intent_id, intent_id) != 0) ||
	    strcmp(current->decline_code, PAYMENT_UNANSWERED) == 0 ||
	    strcmp(current->decline_code, PAYMENT_INVALID_METHOD) == 0 ||
	    strcmp(current->decline_code, PAY_ABANDONED) == 0) {
		pay_reply_set(out, BUS_ACCEPTED, code, "", result.seq);
		return;
	}
	memset(w->order_cmd, 0, sizeof *w->order_cmd);
	w->order_cmd->kind = ORDER_MARK_PAYMENT_FAILED;
	snprintf(w->order_cmd->data.reason, sizeof w->order_cmd->data.reason, "%s", current->decline_code);
	pay_charge_command_id(command_id, sizeof command_id, order_id, "failed", id);
	if (pay_order_command(w, order_id, command_id, &reply) != ORN_OK) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the order could not be marked failed", 0);
		return;
	}
	if (reply.outcome == BUS_ACCEPTED) {
		pay_reply_set(out, BUS_ACCEPTED, current->decline_code, "",
		              reply.seq != 0 ? reply.seq : reply.version);
		log_info("payment declined", "order_id", order_id, "code", current->decline_code);
	} else {
		refused(out, reply.code, reply.detail);
	}
	bus_reply_dispose(&reply);
}

void pay_settle_action(pay_worker *w, const char *order_id, const char *intent_id, const char *url,
                       pay_reply *out)
{
	payment_command c = {.kind = PAYMENT_RECORD_ACTION_REQUIRED};
	const payment_attempt *a;
	kit_result result;

	snprintf(c.data.intent_id, sizeof c.data.intent_id, "%s", intent_id);
	if (snprintf(c.data.url, sizeof c.data.url, "%s", url) >= (int)sizeof c.data.url) {
		log_error("payment: the provider's challenge URL is too long", "order_id", order_id);
		pay_reply_set(out, BUS_FAILED, "unavailable", "the card provider's answer cannot be used", 0);
		return;
	}
	if (!record(w, order_id, &c, "action", intent_id, &result, out))
		return;
	if (result.outcome != BUS_ACCEPTED) {
		refused(out, result.code, result.detail);
		return;
	}
	a = payment_find_attempt(w->payment, intent_id);
	if (a != NULL && payment_attempt_open(a)) {
		pay_reply_set(out, BUS_ACCEPTED, "requires_action", a->action_url, result.seq);
		return;
	}
	/* the webhook came first: the outcome is known already */
	if (w->payment->status == PAYMENT_STATUS_SUCCEEDED && a != NULL && a->succeeded)
		pay_settle_succeeded(w, order_id, intent_id, NULL, NULL, out);
	else if (a != NULL && a->decline_code[0] != '\0')
		pay_settle_declined(w, order_id, intent_id, a->decline_code, out);
	else
		pay_reply_set(out, BUS_ACCEPTED, "requires_action", url, result.seq);
}

bool pay_close_attempt(pay_worker *w, const char *order_id, const char *code, pay_reply *out)
{
	const payment_attempt *a = payment_current_attempt(w->payment);
	payment_command c = {.kind = PAYMENT_RECORD_DECLINE};
	char key[PAYMENT_KEY_MAX];
	kit_result result;

	if (a == NULL || !payment_attempt_open(a))
		return true;
	snprintf(key, sizeof key, "%s", a->provider_key);
	snprintf(c.data.intent_id, sizeof c.data.intent_id, "%s", a->intent_id);
	snprintf(c.data.code, sizeof c.data.code, "%s", code);
	if (!record(w, order_id, &c, code, key, &result, out))
		return false;
	if (result.outcome != BUS_ACCEPTED) {
		refused(out, result.code, result.detail);
		return false;
	}
	return true;
}

orn_rc pay_record_found(pay_worker *w, const char *order_id, const pspc_intent *list, size_t count)
{
	payment_command c;
	kit_result result;
	char command_id[PAY_CMD_ID_MAX];
	orn_rc rc;

	for (size_t i = 0; i < count; i++) {
		if (strcmp(list[i].status, "succeeded") != 0 || strcmp(list[i].order_id, order_id) != 0 ||
		    payment_find_intent(w->payment, list[i].id) != NULL)
			continue;
		memset(&c, 0, sizeof c);
		c.kind = PAYMENT_RECORD_SUCCESS;
		snprintf(c.data.intent_id, sizeof c.data.intent_id, "%s", list[i].id);
		snprintf(c.data.charge_id, sizeof c.data.charge_id, "%s", list[i].latest_charge);
		pay_charge_command_id(command_id, sizeof command_id, order_id, "success", list[i].id);
		if ((rc = pay_record(w, order_id, &c, command_id, &result)) != ORN_OK)
			return rc;
		if (result.outcome == BUS_FAILED)
			return ORN_EUNAVAILABLE;
		if (result.outcome != BUS_ACCEPTED)
			log_warn("payment: a success found at the provider not recorded", "order_id",
			         order_id, "intent_id", list[i].id, "code", result.code);
	}
	return ORN_OK;
}
