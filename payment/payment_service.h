/* payment_service.h — the payment service: card charges at the provider for orders
 * awaiting payment, and refunds of charges that came too late (ADR 009,
 * sections 2 to 4; ARCHITECTURE.md, "Payments and mail").
 *
 * Requests. It subscribes to orion.cmd.pay.<order id> with the queue group
 * orion.pay (NOT orion.cmd.payment.*: that subject and queue group belong to
 * the payment aggregate's actor runtime, actors/payment.h, which must get
 * RecordAttempt & co.; sharing a queue group would hand a Pay to the actor
 * or a RecordAttempt to this service at random). A request is a bus command (env_envelope, type "Pay",
 * never appended to a stream) whose payload is the msgpack map
 *   {customer_id, idempotency_key (may be ""), card: {number, exp_month,
 *    exp_year, cvc, holder_name}}
 * with exactly these keys. The NATS callback only queues it; one of
 * `workers` threads handles it:
 *   1. card_validate (actors/card.h)            else rejected invalid_card (detail: the field)
 *   2. Get the order                            none or another customer's: rejected not_found
 *   3. the order is awaiting_payment            else rejected wrong_state (but a repeat of
 *                                               the request that paid or failed it is
 *                                               answered as it was: accepted)
 *   4. no other request of this process is      else rejected in_progress
 *      charging this order
 *   5. the charge's form is built: the order's total 1..10^10 (the
 *      provider's range)                        else rejected amount_too_large
 *                                               (or invalid below 1); nothing
 *                                               is recorded before this step
 *   6. the provider key "<order>:" + hex(SHA-256(idempotency_key)), or
 *      "<order>:pay"; LMDB row order id -> (state, key, charge) written;
 *      payment RecordAttempt (command id "<key>:attempt")
 *                                               rejected in_progress if another key's attempt is open
 *   7. POST /v1/charges (amount and currency of the order, metadata[order_id])
 *      with Idempotency-Key = the provider key, each call bounded by
 *      call_timeout_ms, retried with the SAME key after network errors,
 *      timeouts, 409, 429 and 5xx, with backoff, within the request's budget
 *      (request_budget_ms from when a worker takes it, and never past the
 *      order's payment deadline): then failed unavailable, the card wiped and
 *      the worker free. The customer may retry with the same key (the
 *      provider replays its first answer: one charge); if nobody does, the
 *      saga's timer expires the order and the reconciler refunds a late
 *      charge.
 *   8. approved: RecordSuccess, order MarkPaid{charge id, brand, last4}:
 *      accepted with seq = the order commit's sequence and code "". MarkPaid
 *      refused wrong_state (the order expired meanwhile): POST /v1/refunds
 *      (Idempotency-Key "<order>:refund:<charge>"), RecordRefund, rejected
 *      wrong_state. declined (402): RecordDecline, order
 *      MarkPaymentFailed{reason = decline_code or code}: accepted, code = that
 *      reason. Every command id derives from the provider key, so a retried
 *      request has no second effect.
 * A command to the order or payment actor left unanswered: failed
 * unavailable (the customer retries with the same key: the provider replays
 * its first answer). An undecodable request: failed invalid.
 *
 * PCI. The card lives in the request's buffers, the validated copy and the
 * form body; all are wiped (sodium_memzero) when the request ends. No log
 * line, error text, event or LMDB row holds the number, the CVC or the
 * holder's name. payment_start disables core dumps (prctl PR_SET_DUMPABLE 0).
 *
 * Reconciler. A durable JetStream pull consumer "orion_payment" on
 * orion.evt.order.> (shared by every instance): on OrderCancelled of an order
 * whose payment (aggregate or LMDB row) has an attempt and is not settled
 * by a decline, it lists the order's charges at the provider (GET
 * /v1/charges?metadata[order_id]=) and refunds each succeeded, unrefunded
 * one (RecordSuccess first if the payment does not know it, then the refund,
 * then RecordRefund). A provider or a bus that fails naks the event with a
 * backoff (100 ms doubling, at most 10 s): the refund is retried until done.
 *
 * Fault injection (tests only): if the environment variable
 * ORION_FAULT_PAYMENT_KILL_AFTER_CHARGE is "1" when payment_start runs, the
 * process raises SIGKILL right after the provider answered a charge (200 or
 * 402) and before any event is appended. */
#ifndef ORION_PAYMENT_SERVICE_H
#define ORION_PAYMENT_SERVICE_H

#include <stdint.h>

#include "evstore.h"
#include "orn.h"

#define PAYMENT_CONSUMER          "orion_payment"
#define PAYMENT_SERVICE_AGGREGATE "pay" /* subject token: bus_send(nc, "pay", order_id, ...) */
#define PAYMENT_QUEUE             "orion.pay"
#define PAYMENT_CMD_PAY           "Pay"
#define PAYMENT_FAULT_ENV         "ORION_FAULT_PAYMENT_KILL_AFTER_CHARGE"
#define PAYMENT_IDEM_KEY_MAX      255 /* bytes of a customer's idempotency key */

typedef struct payment_options {
	const char *psp_url;     /* provider base URL, no trailing slash */
	const char *psp_key;     /* API key (Bearer) */
	const char *state_dir;   /* LMDB of attempts (order id -> provider key, status); created; required */
	unsigned workers;        /* concurrent Pay requests; default 8 */
	int64_t call_timeout_ms; /* one provider call; default 10000 */
	int64_t request_budget_ms;  /* provider calls and retries of one request; default 20000 */
	int64_t command_timeout_ms; /* commands to the order/payment actors; default 5000 */
	int64_t sweep_after_ms;     /* the sweeper of cancellations the consumer lost (sweep.h);
	                               default PAYMENT_SWEEP_AFTER_MS_DEFAULT, <= 0: none */
} payment_options;

/* Before the consumer's AckWait (60 s): racing its redelivery is harmless,
 * the provider keys every refund. */
#define PAYMENT_SWEEP_AFTER_MS_DEFAULT 40000

/* Fills o with the defaults (no URL, key or state_dir). */
void payment_options_init(payment_options *o);

typedef struct payment_service payment_service;

/* Opens the LMDB of attempts, creates or updates the consumer, starts the
 * workers and the reconciler and subscribes. The strings of o are copied;
 * the store must outlive the service; libsodium must be initialised.
 * ORN_EINVAL for a missing psp_url, psp_key or state_dir; ORN_EIO if the
 * state directory or LMDB cannot be opened; what NATS answered otherwise.
 * On failure nothing is left running and *out is NULL. */
orn_rc payment_start(es_store *store, const payment_options *o, payment_service **out);

/* Unsubscribes (draining what was sent to it, unless NATS is gone: then
 * nothing more can come), answers queued requests failed unavailable, lets each worker
 * finish (a provider loop stops at its next retry), joins and frees. The
 * consumer stays on the server. NULL ok. */
void payment_stop(payment_service *p);

/* True once a reconciler has bound a pull subscription to the durable
 * consumer (it stays true); false for NULL. For readiness. */
bool payment_consumer_bound(payment_service *p);

#endif
