/* pay.h — the payment role: card charges at the provider for orders
 * awaiting payment, and refunds of charges that came too late (ADR 009,
 * sections 2 to 4; ADR 024; ARCHITECTURE.md, "Payments and mail"). Its prefix
 * is pay_; the payment aggregate it writes is actors/payment.h.
 *
 * Two handlers on the engine's kit (kit.h):
 *   - Pay requests (kit_service on orion.cmd.pay.<order id>, queue group
 *     orion.pay; the payload {customer_id, idempotency_key, card: {number,
 *     exp_month, exp_year, cvc, holder_name}}): validate the card, fold the
 *     order from the log, claim the attempt (RecordAttempt appended to the
 *     payment aggregate in process, kit_execute: of two instances on two hosts
 *     only one claims), charge the provider with an Idempotency-Key derived
 *     from the order and the customer's key (one charge per key), record the
 *     outcome, mark the order paid or failed (kit_sender) or refund a charge
 *     that came too late. The steps and their answers are ADR 009, section 2.
 *   - the reconciler (kit_consumer orion_payment on orion.evt.order.>, with a
 *     sweeper): on OrderCancelled of an order whose payment has an open or
 *     succeeded attempt, every succeeded charge at the provider is refunded.
 *     Every other order commit is done at once, without a read.
 *
 * PCI: the card lives in the request's buffers, the validated copy and the
 * form body, all wiped when the request ends; no log line, error text or event
 * holds the number, the CVC or the holder's name; pay_start disables core
 * dumps. Fault injection (tests only): PAY_FAULT_ENV "1" when pay_start runs
 * raises SIGKILL right after the provider answered a charge (200 or 402),
 * before any event is appended. */
#ifndef ORION_PAY_H
#define ORION_PAY_H

#include <stdint.h>

#include "kit.h"
#include "orn.h"
#include "role.h"

#define PAY_CONSUMER          "orion_payment"
#define PAY_SERVICE_AGGREGATE "pay" /* subject token: bus_send(store, "pay", order_id, ...) */
#define PAY_QUEUE             "orion.pay"
#define PAY_CMD_PAY           "Pay"
#define PAY_FAULT_ENV         "ORION_FAULT_PAYMENT_KILL_AFTER_CHARGE"
#define PAY_IDEM_KEY_MAX      255 /* bytes of a customer's idempotency key */

typedef struct pay_options {
	const char *psp_url;        /* provider base URL, no trailing slash */
	const char *psp_key;        /* API key (Bearer) */
	unsigned workers;           /* concurrent Pay requests; default 8 */
	int64_t call_timeout_ms;    /* one provider call; default 10000 */
	int64_t request_budget_ms;  /* provider calls and retries of one request; default 20000 */
	int64_t command_timeout_ms; /* commands to the order; default 5000 */
	int64_t sweep_after_ms;     /* the sweeper of cancellations the consumer lost (kit.h);
	                               default PAY_SWEEP_AFTER_MS_DEFAULT, <= 0: none */
} pay_options;

/* Before the consumer's AckWait (60 s): racing its redelivery is harmless,
 * the provider keys every refund. */
#define PAY_SWEEP_AFTER_MS_DEFAULT 40000

/* Fills o with the defaults (no URL or key). */
void pay_options_init(pay_options *o);

typedef struct pay_service pay_service;

/* Creates or updates the consumer, starts the workers and the reconciler and
 * subscribes. The strings of o are copied; store (the role's connection) and
 * hub must outlive the service; libsodium must be initialised. Some possible
 * errors are: ORN_EINVAL (a missing psp_url or psp_key), ORN_ENOMEM,
 * ORN_EUNAVAILABLE (NATS refused the consumer or the subscription). On
 * failure nothing is left running and *out is NULL. */
orn_rc pay_start(es_store *store, kit_hub *hub, const pay_options *o, pay_service **out);

/* Unsubscribes (draining what was sent to it, unless NATS is gone: then
 * nothing more can come), answers queued requests failed unavailable, lets
 * each worker finish (a provider loop stops at its next retry), joins and
 * frees. The consumer stays on the server. NULL ok. */
void pay_stop(pay_service *p);

/* True once a reconciler pulls from the durable consumer (it stays true);
 * false for NULL. For readiness. */
bool pay_bound(const pay_service *p);

/* What the role asks its process for (role_context.offer) when
 * ORION_PSP_URL is unset: the provider's base URL (a string), which the psp
 * role offers. */
#define PAY_NEEDS_PSP_URL "psp_url"

/* The role "payment" (role.h, pay_role.c): the service above; its settings
 * ORION_PSP_URL, ORION_PSP_KEY, ORION_PAYMENT_TIMEOUT_MS (its requests answer
 * 5 s before the gateway gives up), ORION_COMMAND_TIMEOUT_MS and
 * ORION_SWEEP_AFTER_MS. */
extern const role_descriptor pay_role;

#endif
