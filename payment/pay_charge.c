/* pay_charge.c — steps 2 to 8 of a Pay request (ADR 009, section 2): the
 * order, the claim of the attempt, the provider's calls, and the outcome
 * recorded, the order marked, or a late charge refunded. */
#include "pay-internal.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define CALL_BACKOFF_MS     200 /* first pause between two charge calls, doubling */
#define CALL_BACKOFF_MAX_MS 2000

/* The order, as the request needs it. */
typedef struct order_info {
	order_status status;
	const char *customer_id;
	int64_t total_cents;
	const char *currency;
	int64_t payment_deadline_ms;
	uint64_t version;
} order_info;

void pay_reply_set(pay_reply *r, bus_outcome outcome, const char *code, const char *detail, uint64_t seq)
{
	r->outcome = outcome;
	if (snprintf(r->code, sizeof r->code, "%s", code) >= (int)sizeof r->code)
		r->code[0] = '\0'; /* codes are short; a provider's long one is not passed on cut */
	if (snprintf(r->detail, sizeof r->detail, "%s", detail) >= (int)sizeof r->detail)
		r->detail[sizeof r->detail - 1] = '\0';
	r->seq = seq;
}

/* orion_payment_outcomes_total{outcome}: how the charges of Pay requests ended. */
static void count_outcome(const char *outcome)
{
	const char *const labels[] = {"outcome", outcome, NULL};
	orn_metrics_counter_add(orn_metrics_global(), "orion_payment_outcomes_total",
	                        "Charges of Pay requests by outcome: approved, declined, unanswered "
	                        "(no answer within the budget), refused (the provider refused the request).",
	                        labels, 1);
}

/* Takes the in-flight slot of order_id for worker index; false if another
 * request of this process charges it. */
static bool take_slot(pay_service *p, unsigned index, const char *order_id)
{
	bool free_to_go = true;

	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->workers && free_to_go; i++)
		if (i != index && strcmp(p->in_flight[i], order_id) == 0)
			free_to_go = false;
	if (free_to_go)
		snprintf(p->in_flight[index], ORN_ID_MAX + 1, "%s", order_id);
	pthread_mutex_unlock(&p->lock);
	return free_to_go;
}

static void drop_slot(pay_service *p, unsigned index)
{
	pthread_mutex_lock(&p->lock);
	p->in_flight[index][0] = '\0';
	pthread_mutex_unlock(&p->lock);
}

/* Maps a refused Record or Mark command to the Pay reply. */
static void refused(pay_reply *out, const char *code, const char *detail)
{
	if (strcmp(code, "in_progress") == 0 || strcmp(code, "wrong_state") == 0 ||
	    strcmp(code, "limit") == 0)
		pay_reply_set(out, BUS_REJECTED, code, detail, 0);
	else
		pay_reply_set(out, BUS_FAILED, "unavailable", "the payment could not be recorded", 0);
}

/* Records c (command id "<provider key>:<step>"): true once the payment has
 * an answer (out set to failed unavailable if it has none). */
static bool record_step(pay_worker *w, const char *order_id, payment_command *c, const char *provider_key,
                        const char *step, kit_result *result, pay_reply *out)
{
	char command_id[PAY_CMD_ID_MAX];
	pay_step_id(command_id, provider_key, step);
	if (pay_record(w, order_id, c, command_id, result) != ORN_OK || result->outcome == BUS_FAILED) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the payment could not be recorded", 0);
		return false;
	}
	return true;
}

/* An order already confirmed or failed: the same request again (the same
 * provider key as the payment's last attempt) gets the answer it had. */
static void answer_repeat(pay_worker *w, const char *order_id, const order_info *order,
                          const char *provider_key, pay_reply *out)
{
	const payment_attempt *a;
	bool paid = order->status == ORDER_CONFIRMED, failed = order->status == ORDER_PAYMENT_FAILED;

	pay_reply_set(out, BUS_REJECTED, "wrong_state", "the order is not awaiting payment", 0);
	if ((!paid && !failed) || pay_load_payment(w, order_id) != ORN_OK ||
	    (a = payment_current_attempt(w->payment)) == NULL || strcmp(a->provider_key, provider_key) != 0)
		return;
	if (paid && w->payment->status == PAYMENT_STATUS_SUCCEEDED)
		pay_reply_set(out, BUS_ACCEPTED, "", "", order->version);
	else if (failed && w->payment->status == PAYMENT_STATUS_DECLINED)
		pay_reply_set(out, BUS_ACCEPTED, a->decline_code, "", order->version);
}

/* The charge calls, retried with the same key until an answer or until
 * deadline_ms (wall clock): the earlier of the request's budget and the
 * order's payment deadline. PSPC_RETRY when it passed without an answer. */
static pspc_outcome call_provider(pay_worker *w, const char *order_id, const char *form, size_t form_len,
                                  const char *provider_key, int64_t deadline_ms, pspc_charge *ch,
                                  pspc_error *err)
{
	pay_service *p = w->p;
	int64_t backoff = CALL_BACKOFF_MS;

	for (;;) {
		int64_t left = deadline_ms - orn_now_ms();
		pspc_response resp;
		if (left <= 0 || pay_stopping(p))
			return PSPC_RETRY;
		int64_t start_ns = orn_monotonic_ns();
		orn_rc rc = pspc_charge_post(w->psp, form, form_len, provider_key,
		                             left < p->call_timeout_ms ? left : p->call_timeout_ms, &resp);
		pay_observe_provider("charge", rc, rc == ORN_OK ? resp.status : 0, start_ns);
		if (rc == ORN_OK) {
			if (p->kill_after_charge && (resp.status == 200 || resp.status == 402))
				raise(SIGKILL); /* fault test: the answer is lost with the process */
			pspc_outcome o = pspc_charge_outcome(resp.status, resp.body, resp.len, ch, err);
			char status[16];
			snprintf(status, sizeof status, "%ld", resp.status);
			pspc_response_dispose(&resp);
			if (o != PSPC_RETRY)
				return o;
			log_info("payment provider busy; retrying", "order_id", order_id, "status", status);
		} else {
			log_warn("payment provider did not answer; retrying", "order_id", order_id, "error",
			         orn_rc_name(rc));
		}
		left = deadline_ms - orn_now_ms();
		pay_pause(p, backoff < left ? backoff : left);
		backoff = backoff * 2 < CALL_BACKOFF_MAX_MS ? backoff * 2 : CALL_BACKOFF_MAX_MS;
	}
}

/* Approved: record, mark the order paid, or refund if it moved on. */
static void settle_approved(pay_worker *w, const char *order_id, const char *provider_key,
                            const pspc_charge *ch, const card_checked *card, pay_reply *out)
{
	char command_id[PAY_CMD_ID_MAX];
	payment_command c = {.kind = PAYMENT_RECORD_SUCCESS};
	kit_result result;
	bus_reply reply;

	snprintf(c.data.charge_id, sizeof c.data.charge_id, "%s", ch->id);
	if (!record_step(w, order_id, &c, provider_key, "success", &result, out))
		return;
	if (result.outcome != BUS_ACCEPTED)
		log_error("payment success not recorded", "order_id", order_id, "charge_id", ch->id, "code",
		          result.code);
	memset(w->order_cmd, 0, sizeof *w->order_cmd);
	w->order_cmd->kind = ORDER_MARK_PAID;
	snprintf(w->order_cmd->data.charge_id, sizeof w->order_cmd->data.charge_id, "%s", ch->id);
	snprintf(w->order_cmd->data.brand, sizeof w->order_cmd->data.brand, "%s",
	         ch->brand[0] != '\0' ? ch->brand : card->brand);
	snprintf(w->order_cmd->data.last4, sizeof w->order_cmd->data.last4, "%s",
	         ch->last4[0] != '\0' ? ch->last4 : card->last4);
	pay_step_id(command_id, provider_key, "paid");
	if (pay_order_command(w, order_id, command_id, &reply) != ORN_OK) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the order could not be marked paid", 0);
		return;
	}
	if (reply.outcome == BUS_ACCEPTED) {
		pay_reply_set(out, BUS_ACCEPTED, "", "", reply.seq != 0 ? reply.seq : reply.version);
		log_info("payment approved", "order_id", order_id, "charge_id", ch->id);
	} else if (strcmp(reply.code, "wrong_state") == 0) {
		log_warn("payment approved for an order no longer awaiting payment; refunding", "order_id",
		         order_id, "charge_id", ch->id);
		if (pay_refund(w, order_id, ch->id, "order_not_awaiting_payment") != ORN_OK)
			log_warn("payment refund left to the reconciler", "order_id", order_id);
		pay_reply_set(out, BUS_REJECTED, "wrong_state",
		              "the order stopped awaiting payment before the charge; the charge is refunded",
		              0);
	} else {
		refused(out, reply.code, reply.detail);
	}
	bus_reply_dispose(&reply);
}

/* Declined: record and mark the order's payment failed. */
static void settle_declined(pay_worker *w, const char *order_id, const char *provider_key,
                            const pspc_error *err, pay_reply *out)
{
	const char *reason = err->decline_code[0] != '\0' ? err->decline_code : err->code;
	char command_id[PAY_CMD_ID_MAX];
	payment_command c = {.kind = PAYMENT_RECORD_DECLINE};
	kit_result result;
	bus_reply reply;

	snprintf(c.data.code, sizeof c.data.code, "%s", reason);
	if (!record_step(w, order_id, &c, provider_key, "decline", &result, out))
		return;
	if (result.outcome != BUS_ACCEPTED)
		log_error("payment decline not recorded", "order_id", order_id, "code", result.code);
	memset(w->order_cmd, 0, sizeof *w->order_cmd);
	w->order_cmd->kind = ORDER_MARK_PAYMENT_FAILED;
	snprintf(w->order_cmd->data.reason, sizeof w->order_cmd->data.reason, "%s", reason);
	pay_step_id(command_id, provider_key, "failed");
	if (pay_order_command(w, order_id, command_id, &reply) != ORN_OK) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the order could not be marked failed", 0);
		return;
	}
	if (reply.outcome == BUS_ACCEPTED) {
		pay_reply_set(out, BUS_ACCEPTED, reason, "", reply.seq != 0 ? reply.seq : reply.version);
		log_info("payment declined", "order_id", order_id, "code", reason);
	} else {
		refused(out, reply.code, reply.detail);
	}
	bus_reply_dispose(&reply);
}

/* A new request to pay (another key) finds an attempt left open by a
 * provider that never gave a usable answer (no answer in the request's
 * budget, or an unreadable one): the provider is asked what became of the
 * order's charges. A paid charge settles that attempt as the payment; none,
 * once the attempt is older than one call and its grace, closes it as
 * unanswered (the payment only: the order still awaits payment), so the
 * customer can pay again, and nothing was charged twice. True when the
 * request is answered here. */
static bool settle_open_attempt(pay_worker *w, const char *order_id, const char *provider_key, pay_reply *out)
{
	pay_service *p = w->p;
	const payment_attempt *a;
	pspc_charge *list = NULL, *paid = NULL;
	char open_key[PAYMENT_KEY_MAX];
	size_t count = 0;
	bool answered = true;
	kit_result result;

	pay_reply_set(out, BUS_FAILED, "unavailable", "the payment could not be read", 0);
	if (pay_load_payment(w, order_id) != ORN_OK)
		return true;
	if (w->payment->status != PAYMENT_STATUS_ATTEMPTED ||
	    (a = payment_current_attempt(w->payment)) == NULL || strcmp(a->provider_key, provider_key) == 0)
		return false; /* nothing open, or this very request again: the provider replays it */
	if (orn_now_ms() - a->at_ms < p->call_timeout_ms + SETTLE_GRACE_MS) {
		pay_reply_set(out, BUS_REJECTED, "in_progress", "a charge for this order is under way", 0);
		return true;
	}
	snprintf(open_key, sizeof open_key, "%s", a->provider_key);
	card_checked shown;
	memset(&shown, 0, sizeof shown);
	if (strlen(a->brand) < sizeof shown.brand)
		memcpy(shown.brand, a->brand, strlen(a->brand) + 1);
	if (strlen(a->last4) < sizeof shown.last4)
		memcpy(shown.last4, a->last4, strlen(a->last4) + 1);
	if ((list = calloc(PSPC_LIST_MAX, sizeof *list)) == NULL ||
	    pay_list_charges(w, order_id, list, &count) != ORN_OK)
		goto done;
	for (size_t i = 0; i < count && paid == NULL; i++)
		if (strcmp(list[i].status, "succeeded") == 0 && list[i].paid &&
		    strcmp(list[i].order_id, order_id) == 0)
			paid = &list[i];
	if (paid != NULL) {
		log_info("payment settles an unanswered attempt: the provider charged it", "order_id",
		         order_id);
		settle_approved(w, order_id, open_key, paid, &shown, out);
		goto done;
	}
	payment_command c = {.kind = PAYMENT_RECORD_DECLINE};
	snprintf(c.data.code, sizeof c.data.code, "%s", PAYMENT_UNANSWERED);
	if (!record_step(w, order_id, &c, open_key, "unanswered", &result, out))
		goto done;
	if (result.outcome == BUS_ACCEPTED) {
		log_info("payment closes an unanswered attempt: nothing was charged", "order_id", order_id);
		answered = false;
	} else {
		refused(out, result.code, result.detail);
	}
done:
	free(list);
	return answered;
}

/* Steps 5 to 8, the order being awaiting_payment and this process's slot
 * taken. budget_end_ms: when the request's provider retries must stop. */
static void pay_claimed(pay_worker *w, const pay_request *req, const order_info *order,
                        const card_checked *card, const char *provider_key, int64_t budget_end_ms,
                        pay_reply *out)
{
	char form[PSPC_FORM_MAX];
	size_t form_len = 0;
	kit_result result;
	pspc_charge ch;
	pspc_error err;

	/* The charge is built and checked first: a request the provider would
	 * refuse records nothing, so it cannot leave an attempt open for ever. */
	if (order->total_cents > PSPC_AMOUNT_MAX) {
		pay_reply_set(out, BUS_REJECTED, "amount_too_large",
		              "the order's total is above what the card provider can charge", 0);
		return;
	}
	if (order->total_cents < 1) {
		pay_reply_set(out, BUS_REJECTED, "invalid", "the order's total cannot be charged", 0);
		return;
	}
	pspc_charge_request cr = {.amount = order->total_cents,
	                          .currency = order->currency,
	                          .card_number = card->digits,
	                          .exp_month = (int)req->exp_month,
	                          .exp_year = (int)req->exp_year,
	                          .cvc = req->cvc,
	                          .holder_name = req->holder_name,
	                          .order_id = req->order_id};
	if (pspc_charge_form(&cr, form, sizeof form, &form_len) != ORN_OK) {
		log_error("payment charge could not be built", "order_id", req->order_id);
		pay_reply_set(out, BUS_FAILED, "invalid", "the charge could not be built", 0);
		goto done;
	}
	/* The claim: an append on the payment's version (ADR 024). */
	payment_command c = {.kind = PAYMENT_RECORD_ATTEMPT};
	c.data.amount_cents = order->total_cents;
	snprintf(c.data.currency, sizeof c.data.currency, "%s", order->currency);
	snprintf(c.data.brand, sizeof c.data.brand, "%s", card->brand);
	snprintf(c.data.last4, sizeof c.data.last4, "%s", card->last4);
	snprintf(c.data.provider_key, sizeof c.data.provider_key, "%s", provider_key);
	if (!record_step(w, req->order_id, &c, provider_key, "attempt", &result, out))
		goto done;
	if (result.outcome != BUS_ACCEPTED) {
		refused(out, result.code, result.detail);
		goto done;
	}
	bool budget_first = budget_end_ms < order->payment_deadline_ms;
	pspc_outcome o = call_provider(w, req->order_id, form, form_len, provider_key,
	                               budget_first ? budget_end_ms : order->payment_deadline_ms, &ch, &err);
	sodium_memzero(form, sizeof form);
	count_outcome(o == PSPC_APPROVED   ? "approved"
	              : o == PSPC_DECLINED ? "declined"
	              : o == PSPC_RETRY    ? "unanswered"
	                                   : "refused");
	if (o == PSPC_APPROVED) {
		settle_approved(w, req->order_id, provider_key, &ch, card, out);
	} else if (o == PSPC_DECLINED) {
		settle_declined(w, req->order_id, provider_key, &err, out);
	} else if (o == PSPC_RETRY) {
		log_warn(budget_first ? "payment provider silent for the request's whole budget"
		                      : "payment provider silent until the payment deadline",
		         "order_id", req->order_id);
		pay_reply_set(out, BUS_FAILED, "unavailable",
		              "the card provider did not answer in time; retry with the same idempotency key",
		              0);
	} else if (strcmp(err.type, "idempotency_error") == 0) {
		pay_reply_set(out, BUS_REJECTED, "idempotency_conflict",
		              "this idempotency key was used with other payment details", 0);
	} else {
		log_error("payment provider refused the charge", "order_id", req->order_id, "type", err.type,
		          "code", err.code, "param", err.param);
		pay_reply_set(out, BUS_FAILED, "unavailable", "the card provider refused the request", 0);
	}
done:
	sodium_memzero(form, sizeof form);
}

/* The order as the request needs it, from the log: false if it cannot be read. */
static bool read_order(pay_worker *w, const char *order_id, order_info *out)
{
	memset(out, 0, sizeof *out);
	if (pay_load_order(w, order_id, &out->version) != ORN_OK || !order_total(w->order, &out->total_cents))
		return false;
	out->status = w->order->status;
	out->customer_id = w->order->customer_id;
	out->currency = w->order->currency;
	out->payment_deadline_ms = w->order->payment_deadline_ms;
	return true;
}

void pay_charge(pay_worker *w, pay_request *req, pay_reply *out)
{
	int64_t budget_end_ms = orn_now_ms() + w->p->request_budget_ms;
	char provider_key[PSPC_KEY_MAX];
	card_checked card;
	order_info order;
	card_error ce;

	memset(&card, 0, sizeof card);
	if (req->too_long != NULL) {
		pay_reply_set(out, BUS_REJECTED, "invalid_card", req->too_long, 0);
		return;
	}
	card_input in = {.number = req->number,
	                 .exp_month = req->exp_month,
	                 .exp_year = req->exp_year,
	                 .cvc = req->cvc,
	                 .holder_name = req->holder_name};
	if ((ce = card_validate(&in, orn_now_ms(), &card)) != CARD_OK) {
		pay_reply_set(out, BUS_REJECTED, "invalid_card", card_error_field(ce), 0);
		goto done;
	}
	if (!read_order(w, req->order_id, &order)) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the order could not be read", 0);
		goto done;
	}
	if (order.status == ORDER_NONE || strcmp(order.customer_id, req->customer_id) != 0) {
		pay_reply_set(out, BUS_REJECTED, "not_found", "no such order", 0);
		goto done;
	}
	if (pspc_provider_key(req->order_id, req->idempotency_key, provider_key) != ORN_OK) {
		pay_reply_set(out, BUS_FAILED, "invalid", "bad order id", 0);
		goto done;
	}
	if (order.status != ORDER_AWAITING_PAYMENT) {
		answer_repeat(w, req->order_id, &order, provider_key, out);
		goto done;
	}
	if (!take_slot(w->p, w->index, req->order_id)) {
		pay_reply_set(out, BUS_REJECTED, "in_progress", "a charge for this order is under way", 0);
		goto done;
	}
	if (!settle_open_attempt(w, req->order_id, provider_key, out))
		pay_claimed(w, req, &order, &card, provider_key, budget_end_ms, out);
	drop_slot(w->p, w->index);
done:
	sodium_memzero(&card, sizeof card);
}
