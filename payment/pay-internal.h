/* pay-internal.h — what the payment role's files share: the service, a
 * worker's things, the requests and their answer, and the parts each file
 * provides. Included by the payment role's .c files only. */
#ifndef ORION_PAY_INTERNAL_H
#define ORION_PAY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "bus.h"
#include "order.h"
#include "pay.h"
#include "payment.h"
#include "psp_client.h"

#define PAY_ACTOR      "payment"
#define PAY_CMD_ID_MAX ENV_ID_MAX
#define PAY_TEXT_MAX   64 /* bytes of a PspEvent's type, status or code */
/* An open attempt may still show up at the provider this long after one call. */
#define SETTLE_GRACE_MS 5000
/* A 3-D Secure challenge left this long is abandoned: another attempt may start. */
#define ACTION_GRACE_MS (15 * 60 * 1000)
/* The decline code of an attempt whose 3-D Secure was abandoned (payment only). */
#define PAY_ABANDONED "payment_intent_authentication_abandoned"

/* The provider events seen, for metrics only (ADR 028 section 2: the
 * outcome, not the delivery, is what is recorded once): the last
 * PAY_SEEN_PER_ORDER event ids of each of PAY_SEEN_ORDERS orders (a slot
 * per order by hash; a colliding order takes the slot over), as 64-bit
 * hashes. */
#define PAY_SEEN_ORDERS    256
#define PAY_SEEN_PER_ORDER 32

typedef struct pay_seen {
	uint64_t order;                      /* hash of the order id; 0: free */
	uint64_t events[PAY_SEEN_PER_ORDER]; /* hashes of event ids, a ring */
	unsigned next;
} pay_seen;

typedef struct pay_service {
	es_store *store;
	kit_hub *hub;
	char *psp_url, *psp_key, *return_base;
	unsigned workers;
	int64_t call_timeout_ms, command_timeout_ms, request_budget_ms, sweep_after_ms;
	bool kill_after_charge, kill_after_refund;
	pthread_mutex_t lock;              /* in_flight, and the pauses' waits on wake */
	pthread_cond_t wake;               /* signalled by pay_stop */
	char (*in_flight)[ORN_ID_MAX + 1]; /* one slot per request worker: the order it pays, or "" */
	atomic_bool stopping;
	atomic_uint index; /* the next worker's number */
	bool curl_ready;
	kit_sender *sender; /* commands to the order */
	kit_service *service;
	kit_consumer *reconciler;
	pay_seen *seen; /* PAY_SEEN_ORDERS slots, under lock */
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

/* A request on orion.cmd.pay.<order id>, decoded (pay_request.c). */
typedef struct pay_request {
	char order_id[ORN_ID_MAX + 1];
	/* Pay */
	char customer_id[ORN_ID_MAX + 1];
	char idempotency_key[PAY_IDEM_KEY_MAX + 1];
	char payment_method[PSPC_ID_MAX];
	bool payment_method_valid; /* 1..128 printable ASCII, "pm_…" */
	/* PspEvent (ADR 028 section 2; absent fields "" or 0) */
	char event_id[PSPC_ID_MAX];
	char type[PAY_TEXT_MAX];
	char intent_id[PSPC_ID_MAX];
	char event_order_id[ORN_ID_MAX + 1];
	char status[PAY_TEXT_MAX];
	char charge_id[PSPC_ID_MAX];
	char decline_code[PAY_TEXT_MAX];
	char refund_id[PSPC_ID_MAX];
	char refund_status[PAY_TEXT_MAX];
	int64_t amount_cents;
	/* RetryRefund */
	char actor[ENV_ID_MAX];
} pay_request;

/* The outcome of a request. */
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

/* ---- pay_ledger.c: the payment aggregate, the order, the provider's lists ---- */

/* Decides and appends c to order_id's payment in process (kit_execute);
 * ORN_OK with *out (its outcome says what happened) or an error of the log.
 * w->payment holds the state after. */
orn_rc pay_record(pay_worker *w, const char *order_id, payment_command *c, const char *command_id,
                  kit_result *out);
/* Folds order_id's payment into w->payment. */
orn_rc pay_load_payment(pay_worker *w, const char *order_id);
/* Folds order_id's order into w->order (*version: its version). */
orn_rc pay_load_order(pay_worker *w, const char *order_id, uint64_t *version);
/* Sends w->order_cmd to the order (retried on no answer); ORN_OK with *reply
 * (dispose it) once an answer is final. */
orn_rc pay_order_command(pay_worker *w, const char *order_id, const char *command_id, bus_reply *reply);
/* The order's intents at the provider (at most PSPC_LIST_MAX, newest first) into list. */
orn_rc pay_list_intents(pay_worker *w, const char *order_id, pspc_intent *list, size_t *count);
/* orion_payment_provider_duration_seconds{operation, result} of one call. */
void pay_observe_provider(const char *operation, orn_rc rc, long status, int64_t start_ns);
/* "<provider key>:<step>" ("" if it does not fit: the command is refused). */
void pay_step_id(char out[PAY_CMD_ID_MAX], const char *provider_key, const char *step);
/* "<order>:<step>:<32 hex of a hash of id>": a command id the same for
 * whoever sends it (the call's answer, a webhook, the reconciler). */
void pay_charge_command_id(char *out, size_t cap, const char *order_id, const char *step, const char *id);

/* ---- pay_settle.c: outcomes recorded and the order moved, by any path ---- */

/* An intent that succeeded: RecordSuccess, then MarkPaid (charge id: the
 * recorded one, else charge_id, else the intent id; brand and last 4: the
 * provider's, the attempt's, else the payment method's at the provider);
 * an order that moved on gets the intent refunded. out: accepted with the
 * order's commit, or why not. card: brand and last 4 from the answer, or NULL. */
void pay_settle_succeeded(pay_worker *w, const char *order_id, const char *intent_id, const char *charge_id,
                          const pspc_card *card, pay_reply *out);
/* An intent that was declined: RecordDecline, then MarkPaymentFailed if the
 * current attempt is the one declined. out: accepted with the decline code
 * and the order's commit, or why not. */
void pay_settle_declined(pay_worker *w, const char *order_id, const char *intent_id, const char *code,
                         pay_reply *out);
/* An intent that asks for 3-D Secure: RecordActionRequired. out: accepted,
 * code "requires_action", detail url, seq the payment's commit. */
void pay_settle_action(pay_worker *w, const char *order_id, const char *intent_id, const char *url,
                       pay_reply *out);
/* Closes the current open attempt of the payment only (the order still
 * awaits payment) with code; true once closed. */
bool pay_close_attempt(pay_worker *w, const char *order_id, const char *code, pay_reply *out);
/* Records every succeeded intent of list the payment lacks (list[i].order_id
 * must be order_id). ORN_OK, or an error of the log. */
orn_rc pay_record_found(pay_worker *w, const char *order_id, const pspc_intent *list, size_t count);

/* ---- pay_refund.c: refunds (ADR 028 section 3) ---- */

/* Refunds intent_id of order_id once: claims the refund (RecordRefundRequest
 * with the next key, or the pending one again), calls the provider with that
 * key, records the outcome. A failed refund stays failed unless retry (the
 * admin's RetryRefund): then the next key. ORN_OK once the refund has an
 * outcome (refunded or failed); *seq (may be NULL) the payment's last commit;
 * an error to retry later. */
orn_rc pay_refund_intent(pay_worker *w, const char *order_id, const char *intent_id, bool retry,
                         uint64_t *seq);

/* ---- pay_charge.c: a Pay request (ADR 028 section 2) ---- */

void pay_charge(pay_worker *w, pay_request *req, pay_reply *out);

/* ---- pay_webhook.c: a PspEvent and a RetryRefund ---- */

void pay_psp_event(pay_worker *w, const pay_request *req, pay_reply *out);
void pay_retry_refund(pay_worker *w, const pay_request *req, pay_reply *out);

/* ---- pay_request.c: the request service's handler ---- */

void pay_serve(void *worker, kit_request *r);

/* ---- pay_reconcile.c: cancelled orders ---- */

kit_verdict pay_reconcile_commit(void *worker, const kit_commit *c);
bool pay_reconcile_wants(void *closure, const env_envelope *e);

#endif
