/* pay_charge.c — a Pay request (ADR 028 section 2; ADR 009 sections 2 and 4
 * for the claim and the unanswered attempt): the order, the claim of the
 * attempt, the intent created and confirmed at the provider, and its outcome
 * settled (pay_settle.c). */
#include "pay-internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define CALL_BACKOFF_MS     200 /* first pause between two intent calls, doubling */
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

/* orion_payment_outcomes_total{outcome}: how the intents of Pay requests ended. */
static void count_outcome(const char *outcome)
{
	const char *const labels[] = {"outcome", outcome, NULL};
	orn_metrics_counter_add(orn_metrics_global(), "orion_payment_outcomes_total",
	                        "Intents of Pay requests by outcome: approved, requires_action, declined, "
	                        "unanswered (no answer within the budget), refused (the provider refused "
	                        "the request).",
	                        labels, 1);
}

/* Takes the in-flight slot of order_id for worker index; false if another
 * request of this process pays it. */
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

/* An order no longer awaiting payment: the same request again (the same
 * provider key as the payment's last attempt) gets the answer it had. */
static void answer_repeat(pay_worker *w, const char *order_id, const order_info *order,
                          const char *provider_key, pay_reply *out)
{
	const payment_attempt *a;
	bool paid = order_status_is_paid(order->status), failed = order->status == ORDER_PAYMENT_FAILED;

	pay_reply_set(out, BUS_REJECTED, "wrong_state", "the order is not awaiting payment", 0);
	if ((!paid && !failed) || pay_load_payment(w, order_id) != ORN_OK ||
	    (a = payment_current_attempt(w->payment)) == NULL || strcmp(a->provider_key, provider_key) != 0)
		return;
	if (paid && w->payment->status == PAYMENT_STATUS_SUCCEEDED)
		pay_reply_set(out, BUS_ACCEPTED, "", "", order->version);
	else if (failed && a->decline_code[0] != '\0')
		pay_reply_set(out, BUS_ACCEPTED, a->decline_code, "", order->version);
}

/* True if the attempt of provider_key got its outcome meanwhile by another
 * path (a webhook: the silent card's intent succeeds while its answer is
 * held); w->payment then holds it. */
static bool settled_meanwhile(pay_worker *w, const char *order_id, const char *provider_key)
{
	const payment_attempt *a;

	if (pay_load_payment(w, order_id) != ORN_OK || (a = payment_current_attempt(w->payment)) == NULL)
		return false;
	return strcmp(a->provider_key, provider_key) == 0 &&
	       (a->succeeded ||
	        (a->decline_code[0] != '\0' && strcmp(a->decline_code, PAYMENT_UNANSWERED) != 0 &&
	         strcmp(a->decline_code, PAYMENT_INVALID_METHOD) != 0 &&
	         strcmp(a->decline_code, PAY_ABANDONED) != 0));
}

/* The intent calls, retried with the same key until an answer or until
 * deadline_ms (wall clock): the earlier of the request's budget and the
 * order's payment deadline. PSPC_RETRY when it passed without an answer;
 * *settled when another path (a webhook) recorded the outcome first. */
static pspc_outcome call_provider(pay_worker *w, const char *order_id, const char *form, size_t form_len,
                                  const char *provider_key, int64_t deadline_ms, pspc_intent *intent,
                                  pspc_error *err, bool *settled)
{
	pay_service *p = w->p;
	int64_t backoff = CALL_BACKOFF_MS;

	*settled = false;
	for (;;) {
		int64_t left = deadline_ms - orn_now_ms();
		pspc_response resp;
		if (left <= 0 || pay_stopping(p))
			return PSPC_RETRY;
		int64_t start_ns = orn_monotonic_ns();
		orn_rc rc = pspc_intent_post(w->psp, form, form_len, provider_key,
		                             left < p->call_timeout_ms ? left : p->call_timeout_ms, &resp);
		pay_observe_provider("charge", rc, rc == ORN_OK ? resp.status : 0, start_ns);
		if (rc == ORN_OK) {
			if (p->kill_after_charge && (resp.status == 200 || resp.status == 402))
				raise(SIGKILL); /* fault test: the answer is lost with the process */
			pspc_outcome o = pspc_intent_outcome(resp.status, resp.body, resp.len, intent, err);
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
		if ((*settled = settled_meanwhile(w, order_id, provider_key)))
			return PSPC_RETRY;
		left = deadline_ms - orn_now_ms();
		pay_pause(p, backoff < left ? backoff : left);
		backoff = backoff * 2 < CALL_BACKOFF_MAX_MS ? backoff * 2 : CALL_BACKOFF_MAX_MS;
	}
}

/* The intent at the provider that belongs to attempt a, from an order's
 * list (newest first): the one it names, else, for an attempt that never
 * learned its intent, the newest one with its payment method. NULL if none. */
static const pspc_intent *intent_of(const payment_attempt *a, const pspc_intent *list, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (a->intent_id[0] != '\0' ? strcmp(list[i].id, a->intent_id) == 0
		                            : strcmp(list[i].payment_method, a->payment_method) == 0)
			return &list[i];
	return NULL;
}

/* A new request to pay (another key) finds the current attempt open: the
 * provider never gave a usable answer (no answer in the request's budget,
 * an unreadable one, a process killed), or 3-D Secure is pending. Once the
 * attempt had its time the provider is asked what became of the order's
 * intents (ADR 009 section 4, by order): a succeeded one settles the
 * payment; the attempt's intent declined settles it declined; its challenge
 * pending keeps it open until abandoned (ACTION_GRACE_MS); none closes it as
 * unanswered (the payment only: the order still awaits payment), so the
 * customer can pay again and nothing is paid twice. True when the request is
 * answered here. */
static bool settle_open_attempt(pay_worker *w, const char *order_id, const char *provider_key, pay_reply *out)
{
	pay_service *p = w->p;
	const payment_attempt *a;
	const pspc_intent *mine;
	pspc_intent *list = NULL;
	payment_attempt open;
	size_t count = 0;
	bool answered = true;

	pay_reply_set(out, BUS_FAILED, "unavailable", "the payment could not be read", 0);
	if (pay_load_payment(w, order_id) != ORN_OK)
		return true;
	if (w->payment->status == PAYMENT_STATUS_SUCCEEDED && w->payment->charges[0].intent_id[0] != '\0') {
		/* paid, and the order not told yet (a process killed in between) */
		const payment_charge *paid = &w->payment->charges[0];
		char intent_id[PAYMENT_ID_MAX], charge_id[PAYMENT_ID_MAX];
		memcpy(intent_id, paid->intent_id, sizeof intent_id);
		memcpy(charge_id, paid->charge_id, sizeof charge_id);
		pay_settle_succeeded(w, order_id, intent_id, charge_id, NULL, out);
		return true;
	}
	if ((a = payment_current_attempt(w->payment)) == NULL || !payment_attempt_open(a) ||
	    strcmp(a->provider_key, provider_key) == 0)
		return false; /* nothing open, or this very request again: the provider replays it */
	open = *a;
	if (orn_now_ms() - open.at_ms < p->call_timeout_ms + SETTLE_GRACE_MS) {
		pay_reply_set(out, BUS_REJECTED, "in_progress", "a payment for this order is under way", 0);
		return true;
	}
	if ((list = calloc(PSPC_LIST_MAX, sizeof *list)) == NULL ||
	    pay_list_intents(w, order_id, list, &count) != ORN_OK)
		goto done;
	for (size_t i = 0; i < count; i++)
		if (strcmp(list[i].status, "succeeded") == 0 && strcmp(list[i].order_id, order_id) == 0) {
			log_info("payment settles an open attempt: the provider says an intent succeeded",
			         "order_id", order_id, "intent_id", list[i].id);
			pspc_card card = {{0}, {0}};
			memcpy(card.brand, list[i].brand, sizeof card.brand);
			memcpy(card.last4, list[i].last4, sizeof card.last4);
			pay_settle_succeeded(w, order_id, list[i].id, list[i].latest_charge, &card, out);
			goto done;
		}
	mine = intent_of(&open, list, count);
	if (mine != NULL && strcmp(mine->status, "requires_payment_method") == 0) {
		pay_settle_declined(w, order_id, mine->id, pspc_decline_code(mine, NULL), out);
		goto done;
	}
	if (mine != NULL && strcmp(mine->status, "requires_action") == 0) {
		if (orn_now_ms() - open.at_ms < ACTION_GRACE_MS) {
			pay_reply_set(out, BUS_REJECTED, "in_progress",
			              "the card's authentication (3-D Secure) is still pending", 0);
			goto done;
		}
		answered = !pay_close_attempt(w, order_id, PAY_ABANDONED, out);
		goto done;
	}
	log_info("payment closes an unanswered attempt: the provider has no intent of it", "order_id",
	         order_id);
	answered = !pay_close_attempt(w, order_id, PAYMENT_UNANSWERED, out);
done:
	free(list);
	return answered;
}

/* Brand and last 4 of the payment method, asked once before the claim so the
 * attempt records them; "" if the provider does not say (best effort). */
static void read_card(pay_worker *w, const char *payment_method, int64_t deadline_ms, pspc_card *card)
{
	pspc_response resp;
	int64_t left = deadline_ms - orn_now_ms();
	int64_t start_ns = orn_monotonic_ns();
	orn_rc rc;

	memset(card, 0, sizeof *card);
	if (left <= 0)
		return;
	rc = pspc_payment_method_get(w->psp, payment_method, left < 2000 ? left : 2000, &resp);
	pay_observe_provider("payment_method", rc, rc == ORN_OK ? resp.status : 0, start_ns);
	if (rc != ORN_OK)
		return;
	if (resp.status != 200 || pspc_parse_payment_method(resp.body, resp.len, card) != ORN_OK)
		memset(card, 0, sizeof *card);
	pspc_response_dispose(&resp);
}

/* The attempt's outcome recorded by another path (a webhook) while our call
 * had no answer: the request is answered as that outcome settles the order
 * (both steps are no-ops for what is done already). */
static void answer_settled(pay_worker *w, const char *order_id, pay_reply *out)
{
	const payment_attempt *a = payment_current_attempt(w->payment);
	char intent_id[PAYMENT_ID_MAX], code[PAYMENT_TEXT_MAX];

	count_outcome(a->succeeded ? "approved" : "declined");
	snprintf(intent_id, sizeof intent_id, "%s", a->intent_id);
	snprintf(code, sizeof code, "%s", a->decline_code);
	if (a->succeeded)
		pay_settle_succeeded(w, order_id, intent_id, NULL, NULL, out);
	else
		pay_settle_declined(w, order_id, intent_id, code, out);
}

/* The outcome of the intent call settled. */
static void settle_answer(pay_worker *w, const pay_request *req, pspc_outcome o, const pspc_intent *intent,
                          const pspc_error *err, bool budget_first, pay_reply *out)
{
	pspc_card card;

	memcpy(card.brand, intent->brand, sizeof card.brand);
	memcpy(card.last4, intent->last4, sizeof card.last4);
	if (o == PSPC_SUCCEEDED) {
		pay_settle_succeeded(w, req->order_id, intent->id, intent->latest_charge, &card, out);
	} else if (o == PSPC_ACTION_REQUIRED) {
		pay_settle_action(w, req->order_id, intent->id, intent->action_url, out);
	} else if (o == PSPC_DECLINED) {
		pay_settle_declined(w, req->order_id, intent->id, pspc_decline_code(intent, err), out);
	} else if (o == PSPC_RETRY) {
		log_warn(budget_first ? "payment provider silent for the request's whole budget"
		                      : "payment provider silent until the payment deadline",
		         "order_id", req->order_id);
		pay_reply_set(out, BUS_FAILED, "unavailable",
		              "the card provider did not answer in time; retry with the same idempotency key",
		              0);
	} else if (strcmp(err->type, "idempotency_error") == 0) {
		pay_reply_set(out, BUS_REJECTED, "idempotency_conflict",
		              "this idempotency key was used with other payment details", 0);
	} else if (strcmp(err->code, "resource_missing") == 0 && strcmp(err->param, "payment_method") == 0) {
		/* the provider knows no such payment method: nothing was paid, the
		 * attempt is closed and the order still awaits payment */
		if (pay_close_attempt(w, req->order_id, PAYMENT_INVALID_METHOD, out))
			pay_reply_set(out, BUS_REJECTED, "invalid_payment_method",
			              "the card provider knows no such payment method", 0);
	} else {
		log_error("payment provider refused the intent", "order_id", req->order_id, "type", err->type,
		          "code", err->code, "param", err->param);
		pay_reply_set(out, BUS_FAILED, "unavailable", "the card provider refused the request", 0);
	}
}

/* The order awaiting payment and this process's slot taken: claim, call,
 * settle. budget_end_ms: when the request's provider retries must stop. */
static void pay_claimed(pay_worker *w, const pay_request *req, const order_info *order,
                        const char *provider_key, int64_t budget_end_ms, pay_reply *out)
{
	char form[PSPC_FORM_MAX], return_url[PSPC_URL_MAX];
	size_t form_len = 0;
	kit_result result;
	pspc_intent intent;
	pspc_error err;
	pspc_card card;
	char command_id[PAY_CMD_ID_MAX];

	/* The intent is built and checked first: a request the provider would
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
	return_url[0] = '\0';
	if (w->p->return_base != NULL && snprintf(return_url, sizeof return_url, "%s/orders/%s",
	                                          w->p->return_base, req->order_id) >= (int)sizeof return_url)
		return_url[0] = '\0';
	pspc_intent_request ir = {.amount = order->total_cents,
	                          .currency = order->currency,
	                          .payment_method = req->payment_method,
	                          .order_id = req->order_id,
	                          .return_url = return_url};
	if (pspc_intent_form(&ir, form, sizeof form, &form_len) != ORN_OK) {
		log_error("payment intent could not be built", "order_id", req->order_id);
		pay_reply_set(out, BUS_FAILED, "invalid", "the payment could not be built", 0);
		return;
	}
	/* The claim: an append on the payment's version (ADR 024). */
	read_card(w, req->payment_method, budget_end_ms, &card);
	payment_command c = {.kind = PAYMENT_RECORD_ATTEMPT};
	c.data.amount_cents = order->total_cents;
	snprintf(c.data.currency, sizeof c.data.currency, "%s", order->currency);
	snprintf(c.data.payment_method, sizeof c.data.payment_method, "%s", req->payment_method);
	snprintf(c.data.brand, sizeof c.data.brand, "%s", card.brand);
	snprintf(c.data.last4, sizeof c.data.last4, "%s", card.last4);
	snprintf(c.data.provider_key, sizeof c.data.provider_key, "%s", provider_key);
	pay_step_id(command_id, provider_key, "attempt");
	if (pay_record(w, req->order_id, &c, command_id, &result) != ORN_OK || result.outcome == BUS_FAILED) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the payment could not be recorded", 0);
		return;
	}
	if (result.outcome != BUS_ACCEPTED) {
		pay_reply_set(out, BUS_REJECTED, result.code, result.detail, 0);
		return;
	}
	bool budget_first = budget_end_ms < order->payment_deadline_ms, settled = false;
	pspc_outcome o = call_provider(w, req->order_id, form, form_len, provider_key,
	                               budget_first ? budget_end_ms : order->payment_deadline_ms, &intent,
	                               &err, &settled);
	if (settled) {
		answer_settled(w, req->order_id, out);
		return;
	}
	count_outcome(o == PSPC_SUCCEEDED         ? "approved"
	              : o == PSPC_ACTION_REQUIRED ? "requires_action"
	              : o == PSPC_DECLINED        ? "declined"
	              : o == PSPC_RETRY           ? "unanswered"
	                                          : "refused");
	settle_answer(w, req, o, &intent, &err, budget_first, out);
}

/* The order as the request needs it, from the log: false if it cannot be read. */
static bool read_order(pay_worker *w, const char *order_id, order_info *out)
{
	memset(out, 0, sizeof *out);
	if (pay_load_order(w, order_id, &out->version) != ORN_OK)
		return false;
	out->status = w->order->status;
	if (out->status != ORDER_NONE && !order_total(w->order, &out->total_cents))
		return false;
	out->customer_id = w->order->customer_id;
	out->currency = w->order->currency;
	out->payment_deadline_ms = w->order->payment_deadline_ms;
	return true;
}

void pay_charge(pay_worker *w, pay_request *req, pay_reply *out)
{
	int64_t budget_end_ms = orn_now_ms() + w->p->request_budget_ms;
	char provider_key[PSPC_KEY_MAX];
	order_info order;

	if (!req->payment_method_valid) {
		pay_reply_set(out, BUS_REJECTED, "invalid_payment_method", "payment_method", 0);
		return;
	}
	if (!read_order(w, req->order_id, &order)) {
		pay_reply_set(out, BUS_FAILED, "unavailable", "the order could not be read", 0);
		return;
	}
	if (order.status == ORDER_NONE || strcmp(order.customer_id, req->customer_id) != 0) {
		pay_reply_set(out, BUS_REJECTED, "not_found", "no such order", 0);
		return;
	}
	if (pspc_provider_key(req->order_id, req->idempotency_key, provider_key) != ORN_OK) {
		pay_reply_set(out, BUS_FAILED, "invalid", "bad order id", 0);
		return;
	}
	if (order.status != ORDER_AWAITING_PAYMENT) {
		answer_repeat(w, req->order_id, &order, provider_key, out);
		return;
	}
	if (!take_slot(w->p, w->index, req->order_id)) {
		pay_reply_set(out, BUS_REJECTED, "in_progress", "a payment for this order is under way", 0);
		return;
	}
	if (!settle_open_attempt(w, req->order_id, provider_key, out))
		pay_claimed(w, req, &order, provider_key, budget_end_ms, out);
	drop_slot(w->p, w->index);
}
