/* pay_reconcile.c — refunds of cancelled orders (ADR 009 section 3, ADR 028
 * section 3): the handler of the durable consumer orion_payment and of its
 * sweeper. Only OrderCancelled asks for work; every other order commit is
 * done without a read. On OrderCancelled of an order with attempts, the
 * provider is asked for the order's intents (a success the payment never
 * heard of, the silent card's, is recorded first), then every succeeded
 * intent is refunded once (pay_refund.c): a second pass (a redelivery, the
 * sweeper, a restart) finds each refund claimed and replays its key. */
#include "pay-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Refunds every succeeded intent of a cancelled order not yet refunded. */
static kit_verdict reconcile_cancelled(pay_worker *w, const char *order_id, int64_t event_ms)
{
	pay_service *p = w->p;
	pspc_intent *list = NULL;
	char intents[PAYMENT_CHARGES_MAX][PAYMENT_ID_MAX];
	size_t count = 0, found = 0, refunds = 0;
	kit_verdict end = KIT_RETRY;
	bool open;

	if (pay_load_payment(w, order_id) != ORN_OK)
		return KIT_RETRY;
	if (w->payment->attempt_count == 0)
		return KIT_DONE; /* never paid: every intent is claimed in the payment first */
	if ((list = calloc(PSPC_LIST_MAX, sizeof *list)) == NULL)
		return KIT_RETRY;
	if (pay_list_intents(w, order_id, list, &count) != ORN_OK ||
	    pay_record_found(w, order_id, list, count) != ORN_OK)
		goto done;
	for (size_t i = 0; i < count; i++)
		found += strcmp(list[i].status, "succeeded") == 0;
	for (size_t i = 0; i < w->payment->charge_count; i++)
		if (w->payment->charges[i].intent_id[0] != '\0' &&
		    w->payment->charges[i].refund != PAYMENT_REFUND_STATUS_REFUNDED &&
		    w->payment->charges[i].refund != PAYMENT_REFUND_STATUS_FAILED)
			memcpy(intents[refunds++], w->payment->charges[i].intent_id, PAYMENT_ID_MAX);
	open = payment_current_attempt(w->payment) != NULL &&
	       payment_attempt_open(payment_current_attempt(w->payment));
	for (size_t i = 0; i < refunds; i++)
		if (pay_refund_intent(w, order_id, intents[i], false, NULL) != ORN_OK)
			goto done;
	/* An open attempt whose intent does not show yet may still be settling. */
	if (found == 0 && open && orn_now_ms() - event_ms < p->call_timeout_ms + SETTLE_GRACE_MS)
		goto done;
	end = KIT_DONE;
done:
	free(list);
	return end;
}

bool pay_reconcile_wants(void *closure, const env_envelope *e)
{
	(void)closure;
	return strcmp(e->type, ORDER_EV_CANCELLED) == 0;
}

kit_verdict pay_reconcile_commit(void *worker, const kit_commit *c)
{
	pay_worker *w = worker;
	kit_verdict end = KIT_DONE;
	order_event ev;

	/* a valid commit with an OrderCancelled: the kit checks (wants, check_valid) */
	for (size_t i = 0; i < c->count && end == KIT_DONE; i++) {
		const env_envelope *e = &c->events[i];
		if (!pay_reconcile_wants(NULL, e) ||
		    order_event_decode(e->type, e->payload, e->payload_len, &ev) != ORN_OK)
			continue;
		snprintf(w->correlation, sizeof w->correlation, "%s", e->correlation);
		end = reconcile_cancelled(w, c->id, ev.data.time_ms);
	}
	w->correlation[0] = '\0';
	return end;
}
