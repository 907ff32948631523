/* payments.h — the payments read model: each order's payment at the provider.
 *
 * Fed by the payment events (PaymentAttempted, PaymentActionRequired,
 * PaymentSucceeded, PaymentDeclined, PaymentRefundRequested, PaymentRefunded,
 * PaymentRefundFailed; ADR 009, ADR 028) on orion.evt.payment.<order id>, it
 * keeps per order exactly the payment aggregate's state (folded with
 * payment_evolve, the aggregate's own evolve) and answers what an order's
 * view shows of its payment: a 3-D Secure challenge to open, the card's brand
 * and last 4, a refund and its outcome.
 *
 * The model serves reads only: the payment role decides, never from here. */
#ifndef ORION_PROJ_PAYMENTS_H
#define ORION_PROJ_PAYMENTS_H

#include <stdint.h>

#include "evstore.h"
#include "orn.h"
#include "payment.h"
#include "proj_env.h"
#include "projector.h"

#define PROJ_PAYMENTS_NAME   "payments"
#define PROJ_PAYMENTS_FILTER "orion.evt.payment.>"

/* A payment as the model keeps it. */
typedef struct proj_payment {
	char order_id[ES_ID_MAX + 1];
	payment_state state; /* evolved with payment_evolve */
	uint64_t version;    /* stream sequence of the last payment event applied */
} proj_payment;

typedef struct proj_payments proj_payments;

/* Creates the model over env and opens (creating) its sub-database. *out is
 * owned by the caller: proj_payments_destroy after the runner that feeds it
 * has stopped. */
orn_rc proj_payments_create(proj_env *env, proj_payments **out);
void proj_payments_destroy(proj_payments *m);

/* The projection definition to hand to proj_runner_start (owned by m). */
const proj_def *proj_payments_def(proj_payments *m);

/* The order's payment (out param, a few tens of KB: callers may heap-allocate
 * it). ORN_ENOTFOUND if the order never had a payment event, ORN_EINVAL for an
 * invalid id. */
orn_rc proj_payments_get(proj_payments *m, const char *order_id, proj_payment *out);

typedef struct proj_payments_stats {
	uint64_t undecodable; /* payment events that did not decode, logged and skipped */
} proj_payments_stats;

void proj_payments_stats_get(proj_payments *m, proj_payments_stats *out);

#endif
