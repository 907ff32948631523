/* pay_reconcile.c — refunds of cancelled orders (ADR 009, section 3): the
 * handler of the durable consumer orion_payment and of its sweeper. Only
 * OrderCancelled asks for work; every other order commit is done without a
 * read. A refund is keyed at the provider, so a second pass over a
 * reconciled order (a redelivery, the sweeper) changes nothing. */
#include "pay-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Refunds every succeeded charge of a cancelled order not yet refunded. */
static kit_verdict reconcile_cancelled(pay_worker *w, const char *order_id, int64_t event_ms)
{
	pay_service *p = w->p;
	pspc_charge *list = NULL;
	char command_id[PAY_CMD_ID_MAX];
	size_t count = 0, found = 0;
	kit_verdict end = KIT_RETRY;

	if (pay_load_payment(w, order_id) != ORN_OK)
		return KIT_RETRY;
	if (w->payment->attempt_count == 0)
		return KIT_DONE; /* never charged: every charge is claimed in the payment first */
	if ((list = calloc(PSPC_LIST_MAX, sizeof *list)) == NULL)
		return KIT_RETRY;
	if (pay_list_charges(w, order_id, list, &count) != ORN_OK)
		goto done;
	for (size_t i = 0; i < count; i++) {
		const pspc_charge *c = &list[i];
		const payment_charge *known = payment_find_charge(w->payment, c->id);
		if (strcmp(c->status, "succeeded") != 0 || !c->paid || strcmp(c->order_id, order_id) != 0)
			continue;
		found++;
		if (known != NULL && known->refund == PAYMENT_REFUND_STATUS_REFUNDED)
			continue;
		if (known == NULL) { /* a success the payment never heard of: the story first */
			payment_command cmd = {.kind = PAYMENT_RECORD_SUCCESS};
			kit_result result;
			snprintf(cmd.data.charge_id, sizeof cmd.data.charge_id, "%s", c->id);
			pay_charge_command_id(command_id, sizeof command_id, order_id, "late", c->id);
			if (pay_record(w, order_id, &cmd, command_id, &result) != ORN_OK ||
			    result.outcome == BUS_FAILED)
				goto done;
			if (result.outcome != BUS_ACCEPTED)
				log_warn("payment late success not recorded", "order_id", order_id,
				         "charge_id", c->id, "code", result.code);
		}
		if (pay_refund(w, order_id, c->id, "order_cancelled") != ORN_OK)
			goto done;
	}
	/* An open attempt whose charge does not show yet may still be settling. */
	if (found == 0 && w->payment->status == PAYMENT_STATUS_ATTEMPTED &&
	    orn_now_ms() - event_ms < p->call_timeout_ms + SETTLE_GRACE_MS)
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
