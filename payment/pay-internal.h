/* pay-internal.h — what the payment role's files share: the service, a
 * worker's things, a Pay request and its answer, and the parts each file
 * provides. Included by the payment role's .c files only. */
#ifndef ORION_PAY_INTERNAL_H
#define ORION_PAY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "bus.h"
#include "card.h"
#include "order.h"
#include "pay.h"
#include "payment.h"
#include "psp_client.h"

#define PAY_ACTOR       "payment"
#define PAY_CMD_ID_MAX  ENV_ID_MAX
#define PAY_NUMBER_MAX  64 /* bytes of a raw card number (digits and separators) */
#define PAY_CVC_MAX     8
#define SETTLE_GRACE_MS 5000 /* an open attempt may still show up at the provider */

typedef struct pay_service {
	es_store *store;
	kit_hub *hub;
	char *psp_url, *psp_key;
	unsigned workers;
	int64_t call_timeout_ms, command_timeout_ms, request_budget_ms, sweep_after_ms;
	bool kill_after_charge;
	pthread_mutex_t lock;              /* in_flight, and the pauses' waits on wake */
	pthread_cond_t wake;               /* signalled by pay_stop */
	char (*in_flight)[ORN_ID_MAX + 1]; /* one slot per request worker: the order it charges, or "" */
	atomic_bool stopping;
	atomic_uint index; /* the next worker's number */
	bool curl_ready;
	kit_sender *sender; /* commands to the order */
	kit_service *service;
	kit_consumer *reconciler;
} pay_service;

/* A worker's own things (a request worker, a reconciler, the sweeper). */
typedef struct pay_worker {
	pay_service *p;
	unsigned index;
	pspc_client *psp;
	mp_writer *payload;
	payment_state *payment;
	order_state *order;
	order_command *order_cmd;
	char correlation[ENV_ID_MAX];
} pay_worker;

/* A Pay request, decoded. Holds the card: wiped when the request ends. */
typedef struct pay_request {
	char order_id[ORN_ID_MAX + 1];
	char customer_id[ORN_ID_MAX + 1];
	char idempotency_key[PAY_IDEM_KEY_MAX + 1];
	char number[PAY_NUMBER_MAX];
	int64_t exp_month, exp_year;
	char cvc[PAY_CVC_MAX];
	char holder_name[CARD_HOLDER_MAX];
	const char *too_long; /* the card field that did not fit, or NULL */
} pay_request;

/* The outcome of a Pay request. */
typedef struct pay_reply {
	bus_outcome outcome;
	char code[BUS_CODE_MAX];
	char detail[BUS_DETAIL_MAX];
	uint64_t seq;
} pay_reply;

void pay_reply_set(pay_reply *r, bus_outcome outcome, const char *code, const char *detail, uint64_t seq);

/* True once the service stops. */
bool pay_stopping(pay_service *p);
/* Sleeps up to ms, or less if the service stops. */
void pay_pause(pay_service *p, int64_t ms);

/* ---- pay_ledger.c: the payment aggregate, the order, the provider's refunds ---- */

/* Decides and appends c to order_id's payment in process (kit_execute);
 * ORN_OK with *out (its outcome says what happened) or an error of the log. */
orn_rc pay_record(pay_worker *w, const char *order_id, payment_command *c, const char *command_id,
                  kit_result *out);
/* Folds order_id's payment into w->payment. */
orn_rc pay_load_payment(pay_worker *w, const char *order_id);
/* Folds order_id's order into w->order (*version: its version). */
orn_rc pay_load_order(pay_worker *w, const char *order_id, uint64_t *version);
/* Sends w->order_cmd to the order (retried on no answer); ORN_OK with *reply
 * (dispose it) once an answer is final. */
orn_rc pay_order_command(pay_worker *w, const char *order_id, const char *command_id, bus_reply *reply);
/* Refunds charge_id of order_id at the provider and records it. ORN_OK once
 * refunded (or already refunded under another key); an error to retry. */
orn_rc pay_refund(pay_worker *w, const char *order_id, const char *charge_id, const char *reason);
/* The order's charges at the provider (at most PSPC_LIST_MAX) into list. */
orn_rc pay_list_charges(pay_worker *w, const char *order_id, pspc_charge *list, size_t *count);
/* orion_payment_provider_duration_seconds{operation, result} of one call. */
void pay_observe_provider(const char *operation, orn_rc rc, long status, int64_t start_ns);
/* "<provider key>:<step>" ("" if it does not fit: the command is refused). */
void pay_step_id(char out[PAY_CMD_ID_MAX], const char *provider_key, const char *step);
/* "<order>:<step>:<32 hex of a hash of charge>". */
void pay_charge_command_id(char *out, size_t cap, const char *order_id, const char *step, const char *charge);

/* ---- pay_charge.c: steps 2 to 8 of a Pay request (ADR 009) ---- */

void pay_charge(pay_worker *w, pay_request *req, pay_reply *out);

/* ---- pay_request.c: the request service's handler ---- */

void pay_serve(void *worker, kit_request *r);

/* ---- pay_reconcile.c: refunds of cancelled orders ---- */

kit_verdict pay_reconcile_commit(void *worker, const kit_commit *c);
bool pay_reconcile_wants(void *closure, const env_envelope *e);

#endif
