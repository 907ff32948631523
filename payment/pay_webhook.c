/* pay_webhook.c — the provider's events, as the gateway relays them once
 * their signature is verified (PspEvent, ADR 028 section 2), and the admin's
 * RetryRefund (section 3). An event is settled as the answer to our own call
 * would be (pay_settle.c): whichever comes first wins, the other is a no-op.
 * An event this role has no use for (an unknown type, an order without a
 * payment, an intent no attempt names) is accepted and changes nothing; one
 * that cannot be recorded now is failed unavailable, and the provider sends
 * it again. */
#include "pay-internal.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

/* orion_payment_webhooks_total{type, result}: the events relayed, by what they did. */
static void count_event(const char *type, const char *result)
{
	static const char *const known[] = {"payment_intent.succeeded", "payment_intent.payment_failed",
	                                    "charge.refunded", "charge.refund.updated"};
	const char *label = "other";
	for (size_t i = 0; i < ORN_ARRAY_LEN(known); i++)
		if (strcmp(type, known[i]) == 0)
			label = known[i];
	const char *const labels[] = {"type", label, "result", result, NULL};
	orn_metrics_counter_add(orn_metrics_global(), "orion_payment_webhooks_total",
	                        "Provider events relayed by the gateway, by type and result: recorded, "
	                        "duplicate (an event id seen before: recorded once all the same), ignored "
	                        "(nothing to do), unavailable (the provider sends it again).",
	                        labels, 1);
}

/* FNV-1a, never 0 (0 marks a free slot). */
static uint64_t hash_of(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h != 0 ? h : 1;
}

/* Remembers event_id of order_id; true if it was seen before (a delivery
 * the provider repeated). For the metrics only: nothing depends on it. */
static bool seen_before(pay_service *p, const char *order_id, const char *event_id)
{
	uint64_t order = hash_of(order_id), event = hash_of(event_id);
	pay_seen *slot = &p->seen[order % PAY_SEEN_ORDERS];
	bool seen = false;

	if (event_id[0] == '\0')
		return false;
	pthread_mutex_lock(&p->lock);
	if (slot->order != order) {
		memset(slot, 0, sizeof *slot);
		slot->order = order;
	}
	for (unsigned i = 0; i < PAY_SEEN_PER_ORDER && !seen; i++)
		seen = slot->events[i] == event;
	if (!seen) {
		slot->events[slot->next] = event;
		slot->next = (slot->next + 1) % PAY_SEEN_PER_ORDER;
	}
	pthread_mutex_unlock(&p->lock);
	return seen;
}

/* payment_intent.succeeded: the intent's success, whoever saw it first. */
static void intent_succeeded(pay_worker *w, const pay_request *req, pay_reply *out)
{
	pay_settle_succeeded(w, req->order_id, req->intent_id, req->charge_id, NULL, out);
	if (out->outcome == BUS_REJECTED) /* the order moved on (refunded) or a limit: nothing to retry */
		pay_reply_set(out, BUS_ACCEPTED, "", out->detail, out->seq);
}

/* payment_intent.payment_failed: recorded only for an attempt that names the
 * intent (3-D Secure told us it); a decline of an intent we never learned is
 * our own call's answer to record, or the open attempt's settling. */
static void intent_failed(pay_worker *w, const pay_request *req, pay_reply *out)
{
	const char *code = req->decline_code[0] != '\0' ? req->decline_code : "declined";

	if (payment_find_attempt(w->payment, req->intent_id) == NULL) {
		pay_reply_set(out, BUS_ACCEPTED, "", "no attempt names this intent", 0);
		return;
	}
	pay_settle_declined(w, req->order_id, req->intent_id, code, out);
	if (out->outcome == BUS_REJECTED)
		pay_reply_set(out, BUS_ACCEPTED, "", out->detail, out->seq);
}

/* charge.refunded, charge.refund.updated: a refund's outcome. */
static void refund_reported(pay_worker *w, const pay_request *req, pay_reply *out)
{
	const payment_charge *c = payment_find_intent(w->payment, req->intent_id);
	char command_id[PAY_CMD_ID_MAX];
	payment_command cmd;
	kit_result result;
	bool failed = strcmp(req->refund_status, "failed") == 0;

	pay_reply_set(out, BUS_ACCEPTED, "", "", 0);
	if (c == NULL || c->refund == PAYMENT_REFUND_STATUS_REFUNDED)
		return;
	memset(&cmd, 0, sizeof cmd);
	snprintf(cmd.data.intent_id, sizeof cmd.data.intent_id, "%s", req->intent_id);
	if (failed) {
		if (c->refund != PAYMENT_REFUND_STATUS_PENDING)
			return; /* a failure of a refund not asked now */
		cmd.kind = PAYMENT_RECORD_REFUND_FAILURE;
		snprintf(cmd.data.refund_key, sizeof cmd.data.refund_key, "%s", c->refund_key);
		snprintf(cmd.data.reason, sizeof cmd.data.reason, "%s",
		         req->decline_code[0] != '\0' ? req->decline_code : "failed");
		pay_charge_command_id(command_id, sizeof command_id, req->order_id, "refund-failed",
		                      c->refund_key);
	} else if (strcmp(req->type, "charge.refunded") == 0 ||
	           strcmp(req->refund_status, "succeeded") == 0) {
		cmd.kind = PAYMENT_RECORD_REFUND;
		snprintf(cmd.data.refund_id, sizeof cmd.data.refund_id, "%s", req->refund_id);
		cmd.data.amount_cents = req->amount_cents > 0 && req->amount_cents <= PAYMENT_AMOUNT_MAX
		                                ? req->amount_cents
		                                : 0;
		pay_charge_command_id(command_id, sizeof command_id, req->order_id, "refunded",
		                      c->refund_key[0] != '\0' ? c->refund_key : req->intent_id);
	} else {
		return; /* pending: nothing new */
	}
	if (pay_record(w, req->order_id, &cmd, command_id, &result) != ORN_OK ||
	    result.outcome == BUS_FAILED) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the refund could not be recorded", 0);
		return;
	}
	pay_reply_set(out, BUS_ACCEPTED, "", "", result.seq);
}

void pay_psp_event(pay_worker *w, const pay_request *req, pay_reply *out)
{
	bool known = strcmp(req->type, "payment_intent.succeeded") == 0 ||
	             strcmp(req->type, "payment_intent.payment_failed") == 0 ||
	             strcmp(req->type, "charge.refunded") == 0 ||
	             strcmp(req->type, "charge.refund.updated") == 0;

	pay_reply_set(out, BUS_ACCEPTED, "", "", 0);
	if (!known || req->intent_id[0] == '\0' ||
	    (req->event_order_id[0] != '\0' && strcmp(req->event_order_id, req->order_id) != 0)) {
		count_event(req->type, "ignored");
		return;
	}
	if (pay_load_payment(w, req->order_id) != ORN_OK) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the payment could not be read", 0);
		count_event(req->type, "unavailable");
		return;
	}
	if (w->payment->attempt_count == 0) { /* no payment of ours: an unknown intent */
		count_event(req->type, "ignored");
		return;
	}
	if (strcmp(req->type, "payment_intent.succeeded") == 0)
		intent_succeeded(w, req, out);
	else if (strcmp(req->type, "payment_intent.payment_failed") == 0)
		intent_failed(w, req, out);
	else
		refund_reported(w, req, out);
	count_event(req->type, out->outcome != BUS_ACCEPTED                      ? "unavailable"
	                       : seen_before(w->p, req->order_id, req->event_id) ? "duplicate"
	                                                                         : "recorded");
	if (out->outcome == BUS_ACCEPTED)
		log_info("payment provider event handled", "order_id", req->order_id, "event_id",
		         req->event_id, "type", req->type);
}

void pay_retry_refund(pay_worker *w, const pay_request *req, pay_reply *out)
{
	char intents[PAYMENT_CHARGES_MAX][PAYMENT_ID_MAX];
	size_t count = 0;
	uint64_t seq = 0;

	if (pay_load_payment(w, req->order_id) != ORN_OK) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the payment could not be read", 0);
		return;
	}
	for (size_t i = 0; i < w->payment->charge_count; i++)
		if (w->payment->charges[i].refund == PAYMENT_REFUND_STATUS_FAILED)
			memcpy(intents[count++], w->payment->charges[i].intent_id, PAYMENT_ID_MAX);
	if (count == 0) {
		pay_reply_set(out, BUS_REJECTED, "wrong_state", "the last refund of this order did not fail",
		              0);
		return;
	}
	log_info("payment refund retried", "order_id", req->order_id, "actor", req->actor);
	for (size_t i = 0; i < count; i++)
		if (pay_refund_intent(w, req->order_id, intents[i], true, &seq) != ORN_OK) {
			pay_reply_set(out, BUS_FAILED, "unavailable", "the refund could not be made now", 0);
			return;
		}
	pay_reply_set(out, BUS_ACCEPTED, "", "", seq);
}
