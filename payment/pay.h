/* pay.h — the payment role: payments of orders awaiting payment at the
 * provider, as payment intents (ADR 028 section 2; ADR 009 for the claim,
 * the provider keys and the reconciler; ADR 024; ARCHITECTURE.md, "Payments
 * and mail"), and their refunds (ADR 028 section 3). Its prefix is pay_; the
 * payment aggregate it writes is actors/payment.h.
 *
 * Two handlers on the engine's kit (kit.h):
 *   - requests (kit_service on orion.cmd.pay.<order id>, queue group
 *     orion.pay, msgpack maps, bus_reply answers):
 *     Pay {customer_id, idempotency_key, payment_method}: fold the order,
 *       claim the attempt (RecordAttempt appended in process, kit_execute: of
 *       two instances on two hosts only one claims), create and confirm the
 *       intent with an Idempotency-Key derived from the order and the
 *       customer's key (one intent per key), record the outcome and move the
 *       order: accepted "" (paid), a decline code (payment failed), or
 *       "requires_action" with the challenge URL as detail; rejected
 *       invalid_payment_method, not_found, wrong_state, in_progress; failed
 *       unavailable.
 *     PspEvent {event_id, type, intent_id, order_id, status, charge_id,
 *       decline_code, refund_id, refund_status, amount_cents}: a verified
 *       webhook, settled as the call's own answer would be (whichever comes
 *       first wins); accepted when recorded or nothing to do, failed
 *       unavailable when it cannot be recorded now.
 *     RetryRefund {actor}: the failed refunds of the order asked again
 *       with the next key; rejected wrong_state unless the last one failed.
 *   - the reconciler (kit_consumer orion_payment on orion.evt.order.>, with a
 *     sweeper): on OrderCancelled of an order with attempts, every intent
 *     that succeeded at the provider is refunded once. Every other order
 *     commit is done at once, without a read.
 *
 * No card data reaches the role: the shopper's browser tokenizes the card at
 * the provider. Fault injection (tests only), read when pay_start runs:
 * PAY_FAULT_ENV "1" raises SIGKILL right after the provider answered an
 * intent (200 or 402), PAY_FAULT_REFUND_ENV "1" right after it answered a
 * refund (200), before any event is appended. */
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
#define PAY_CMD_PSP_EVENT     "PspEvent"
#define PAY_CMD_RETRY_REFUND  "RetryRefund"
#define PAY_FAULT_ENV         "ORION_FAULT_PAYMENT_KILL_AFTER_CHARGE"
#define PAY_FAULT_REFUND_ENV  "ORION_FAULT_PAYMENT_KILL_AFTER_REFUND"
#define PAY_IDEM_KEY_MAX      255 /* bytes of a customer's idempotency key */

typedef struct pay_options {
	const char *psp_url;        /* provider base URL, no trailing slash */
	const char *psp_key;        /* API key (Bearer) */
	const char *public_url;     /* the shop's base: 3-D Secure returns to <it>/orders/<id>; NULL: none */
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

/* What the role asks its process for (role_context.offer): when
 * ORION_PSP_URL is unset, the provider's base URL (a string), which the psp
 * role offers; the base of the 3-D Secure return page (return_url), NULL
 * for none: the same on every payment host, since a host that takes over a
 * charge sends the provider the same parameters under the same key. */
#define PAY_NEEDS_PSP_URL    "psp_url"
#define PAY_NEEDS_PUBLIC_URL "payment_return_base"

/* The role "payment" (role.h, pay_role.c): the service above; its settings
 * ORION_PSP_URL, ORION_PSP_KEY, ORION_PAYMENT_TIMEOUT_MS (its requests answer
 * 5 s before the gateway gives up), ORION_COMMAND_TIMEOUT_MS and
 * ORION_SWEEP_AFTER_MS. */
extern const role_descriptor pay_role;

#endif
