/* payment_service.c — the payment service (see payment_service.h).
 *
 * Threads: cnats delivers Pay requests on the subscription's thread, which
 * only queues them; `workers` threads handle them one at a time, each with
 * its own curl handle (psp_client.h) and scratch space. Two reconciler
 * threads pull order events from the durable consumer. They share the store
 * (cnats is thread-safe), the LMDB environment (MDB_NOTLS; LMDB serialises
 * writers), the queue and the set of orders being charged (under lock).
 *
 * LMDB: one sub-database "attempts", key order id, value the text
 * "<state> <provider key> <charge id or ->" — no card byte ever. */
#include "payment_service.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "payment.h"
#include "bus.h"
#include "card.h"
#include "fsdir.h"
#include "log.h"
#include "metrics.h"
#include "order.h"
#include "psp_client.h"
#include "sweep.h"

#define ORDER_FILTER        "orion.evt.order.>"
#define ORDER_PREFIX        "orion.evt.order."
#define SERVICE_ACTOR       "payment"
#define ACK_WAIT_MS         60000
#define FETCH_WAIT_MS       500
#define RECONCILERS         2
#define RETRY_FIRST_MS      100 /* nak delay of the reconciler, doubling */
#define RETRY_MAX_MS        10000
#define CALL_BACKOFF_MS     200 /* first pause between two charge calls, doubling */
#define CALL_BACKOFF_MAX_MS 2000
#define CONNECT_TIMEOUT_MS  2000
#define COMMAND_TRIES       3
#define QUEUE_MAX           4096
#define STATE_MAP_SIZE      ((size_t)256 << 20)
#define NUMBER_MAX          64 /* bytes of a raw card number (digits and separators) */
#define CVC_MAX             8
#define STATUS_MAX          32
#define ROW_MAX             (16 + PSPC_KEY_MAX + PSPC_ID_MAX)
#define CMD_ID_MAX          ENV_ID_MAX
#define SETTLE_GRACE_MS     5000  /* an open attempt may still show up at the provider */
#define REQUEST_BUDGET_MS   20000 /* default: under the gateway's 25 s wait (ORION_PAYMENT_TIMEOUT_MS) */

/* Attempt rows' states. */
#define ROW_ATTEMPTED "attempted"
#define ROW_SUCCEEDED "succeeded"
#define ROW_PAID      "paid"
#define ROW_DECLINED  "declined"
#define ROW_REFUNDED  "refunded"

/* The durable consumer of order events the reconcilers bind to. */
static const es_durable_options CONSUMER = {
        .durable = PAYMENT_CONSUMER,
        .filter = ORDER_FILTER,
        .ack_wait_ms = ACK_WAIT_MS,
};

typedef struct request {
	struct request *next;
	natsMsg *msg;
} request;

struct payment_service {
	es_store *store;
	char *psp_url, *psp_key, *state_dir;
	unsigned workers;
	int64_t call_timeout_ms, command_timeout_ms, request_budget_ms;
	bool kill_after_charge;
	MDB_env *env;
	MDB_dbi attempts;
	natsSubscription *sub;
	pthread_mutex_t lock; /* the queue, in_flight, and the waits on wake */
	pthread_cond_t wake;
	request *head, *tail;
	size_t queued;
	char (*in_flight)[ORN_ID_MAX + 1]; /* one slot per worker: the order it charges, or "" */
	atomic_bool stopping;
	atomic_bool bound; /* a reconciler has bound to the durable consumer */
	pthread_t *threads;
	unsigned threads_started;
	pthread_t reconcilers[RECONCILERS];
	unsigned reconcilers_started;
	bool curl_ready;
	int64_t sweep_after_ms; /* > 0: the cancellations' sweeper (sweep.h) */
	es_sweep *sweep;
	struct worker *sweeper; /* its worker */
};

/* A worker's (or reconciler's) own things. */
typedef struct worker {
	payment_service *p;
	unsigned index;
	pspc_client *psp;
	mp_writer *payload;
	payment_state *payment;
	payment_event *event;
	order_command *order_cmd;
	env_envelope *envelopes;
	char correlation[ENV_ID_MAX];
} worker;

/* A Pay request, decoded. Holds the card: wiped when the request ends. */
typedef struct pay_request {
	char order_id[ORN_ID_MAX + 1];
	char customer_id[ORN_ID_MAX + 1];
	char idempotency_key[PAYMENT_IDEM_KEY_MAX + 1];
	char number[NUMBER_MAX];
	int64_t exp_month, exp_year;
	char cvc[CVC_MAX];
	char holder_name[CARD_HOLDER_MAX];
	const char *too_long; /* the card field that did not fit, or NULL */
} pay_request;

/* What Get told about the order. */
typedef struct order_info {
	char status[STATUS_MAX];
	char customer_id[ORN_ID_MAX + 1];
	int64_t total_cents;
	char currency[ORDER_CURRENCY_MAX];
	int64_t payment_deadline_ms;
	uint64_t version;
} order_info;

void payment_options_init(payment_options *o)
{
	memset(o, 0, sizeof *o);
	o->workers = 8;
	o->call_timeout_ms = 10000;
	o->command_timeout_ms = 5000;
	o->request_budget_ms = REQUEST_BUDGET_MS;
	o->sweep_after_ms = PAYMENT_SWEEP_AFTER_MS_DEFAULT;
}

static bool is_stopping(payment_service *p)
{
	return atomic_load(&p->stopping);
}

/* Sleeps up to ms, or less if the service stops. */
static void pause_unless_stopping(payment_service *p, int64_t ms)
{
	struct timespec until = orn_monotonic_deadline(ms);

	pthread_mutex_lock(&p->lock);
	while (!is_stopping(p) && pthread_cond_timedwait(&p->wake, &p->lock, &until) == 0)
		;
	pthread_mutex_unlock(&p->lock);
}

/* ---- the attempts (LMDB) ---- */

static orn_rc rows_open(payment_service *p)
{
	MDB_txn *txn = NULL;
	int mrc;

	if (orn_make_dirs(p->state_dir) != ORN_OK) {
		log_error("payment cannot create its state directory", "path", p->state_dir);
		return ORN_EIO;
	}
	if ((mrc = mdb_env_create(&p->env)) != 0 || (mrc = mdb_env_set_maxdbs(p->env, 2)) != 0 ||
	    (mrc = mdb_env_set_mapsize(p->env, STATE_MAP_SIZE)) != 0 ||
	    (mrc = mdb_env_open(p->env, p->state_dir, MDB_NOTLS, 0600)) != 0 ||
	    (mrc = mdb_txn_begin(p->env, NULL, 0, &txn)) != 0 ||
	    (mrc = mdb_dbi_open(txn, "attempts", MDB_CREATE, &p->attempts)) != 0)
		goto fail;
	mrc = mdb_txn_commit(txn);
	txn = NULL;
	if (mrc == 0)
		return ORN_OK;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	log_error("payment cannot open its attempts", "path", p->state_dir, "error", mdb_strerror(mrc));
	return ORN_EIO;
}

/* Writes the row of order_id: state, provider key, charge id ("" for none). */
static orn_rc row_put(payment_service *p, const char *order_id, const char *state, const char *key,
                      const char *charge)
{
	char value[ROW_MAX];
	MDB_txn *txn = NULL;
	int n = snprintf(value, sizeof value, "%s %s %s", state, key, charge[0] != '\0' ? charge : "-");
	MDB_val k = {strlen(order_id), (void *)order_id}, v = {(size_t)n, value};
	int mrc;

	if (n < 0 || (size_t)n >= sizeof value)
		return ORN_EINVAL;
	if ((mrc = mdb_txn_begin(p->env, NULL, 0, &txn)) == 0) {
		if ((mrc = mdb_put(txn, p->attempts, &k, &v, 0)) == 0)
			mrc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	if (mrc != 0)
		log_error("payment cannot write an attempt", "order_id", order_id, "error",
		          mdb_strerror(mrc));
	return mrc == 0 ? ORN_OK : ORN_EIO;
}

/* Reads the state word of order_id's row into state (STATUS_MAX bytes):
 * ORN_ENOTFOUND if none. */
static orn_rc row_state(payment_service *p, const char *order_id, char *state)
{
	MDB_txn *txn = NULL;
	MDB_val k = {strlen(order_id), (void *)order_id}, v;
	int mrc;

	state[0] = '\0';
	if ((mrc = mdb_txn_begin(p->env, NULL, MDB_RDONLY, &txn)) != 0)
		return ORN_EIO;
	if ((mrc = mdb_get(txn, p->attempts, &k, &v)) == 0) {
		size_t n = 0;
		while (n < v.mv_size && n + 1 < STATUS_MAX && ((const char *)v.mv_data)[n] != ' ')
			n++;
		memcpy(state, v.mv_data, n);
		state[n] = '\0';
	}
	mdb_txn_abort(txn);
	return mrc == 0 ? ORN_OK : mrc == MDB_NOTFOUND ? ORN_ENOTFOUND : ORN_EIO;
}

/* ---- ids ---- */

/* "<order>:<step>:<32 hex of a hash of charge>": fits an envelope id whatever
 * the provider's id length. */
static void charge_command_id(char *out, size_t cap, const char *order_id, const char *step,
                              const char *charge)
{
	uint8_t digest[16];
	char hex[sizeof digest * 2 + 1];

	crypto_generichash(digest, sizeof digest, (const unsigned char *)charge, strlen(charge), NULL, 0);
	sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
	snprintf(out, cap, "%s:%s:%s", order_id, step, hex);
}

/* "<provider key>:<step>": a provider key is at most "<64>:<64 hex>", so it fits. */
static void step_id(char out[CMD_ID_MAX], const char *provider_key, const char *step)
{
	if (snprintf(out, CMD_ID_MAX, "%s:%s", provider_key, step) >= CMD_ID_MAX)
		out[0] = '\0'; /* bus_command_init refuses it */
}

/* ---- commands to the actors ---- */

/* Sends the command in w->payload; retries transport failures and answers
 * "failed unavailable/conflict/overloaded" a few times. ORN_OK with *reply
 * (dispose it) once an answer is final. */
static orn_rc send_command(worker *w, const char *aggregate, const char *id, const char *type,
                           const char *command_id, bus_reply *reply)
{
	payment_service *p = w->p;
	env_envelope cmd;
	orn_rc rc = ORN_EUNAVAILABLE;

	for (int i = 0; i < COMMAND_TRIES; i++) {
		if (i > 0 && is_stopping(p))
			break;
		rc = bus_command_init(&cmd, type, orn_now_ms(), command_id,
		                      w->correlation[0] != '\0' ? w->correlation : NULL, SERVICE_ACTOR,
		                      mp_writer_data(w->payload), mp_writer_size(w->payload));
		if (rc != ORN_OK)
			return rc;
		rc = bus_send(es_store_connection(p->store), aggregate, id, &cmd, p->command_timeout_ms,
		              reply);
		if (rc == ORN_OK && reply->outcome == BUS_FAILED &&
		    (strcmp(reply->code, "unavailable") == 0 || strcmp(reply->code, "conflict") == 0 ||
		     strcmp(reply->code, "overloaded") == 0)) {
			bus_reply_dispose(reply);
			rc = ORN_EUNAVAILABLE;
		}
		if (rc == ORN_OK)
			return ORN_OK;
		pause_unless_stopping(p, CALL_BACKOFF_MS << i);
	}
	log_warn("payment command not answered", "command_id", command_id, "type", type, "error",
	         orn_rc_name(rc));
	return rc;
}

/* Sends a payment command c to order_id's payment. */
static orn_rc send_payment(worker *w, const char *order_id, payment_command *c, const char *command_id,
                           bus_reply *reply)
{
	orn_rc rc;

	c->data.time_ms = orn_now_ms();
	mp_writer_reset(w->payload);
	if ((rc = payment_command_encode(w->payload, c)) != ORN_OK)
		return rc;
	return send_command(w, PAYMENT_AGGREGATE, order_id, payment_command_type(c->kind), command_id, reply);
}

/* Sends w->order_cmd to the order. */
static orn_rc send_order(worker *w, const char *order_id, const char *command_id, bus_reply *reply)
{
	orn_rc rc;

	w->order_cmd->data.time_ms = orn_now_ms();
	mp_writer_reset(w->payload);
	if ((rc = order_command_encode(w->payload, w->order_cmd)) != ORN_OK)
		return rc;
	return send_command(w, ORDER_AGGREGATE, order_id, order_command_type(w->order_cmd->kind), command_id,
	                    reply);
}

/* Reads the order's view (status, customer, total, currency, deadline). */
static orn_rc get_order(worker *w, const char *order_id, order_info *out)
{
	bus_reply reply;
	mp_reader r;
	uint32_t count = 0, len;
	const char *key;
	char command_id[CMD_ID_MAX];
	orn_rc rc;

	memset(out, 0, sizeof *out);
	snprintf(command_id, sizeof command_id, "%s:get:%lld", order_id, (long long)orn_monotonic_ns());
	mp_writer_reset(w->payload);
	mp_write_nil(w->payload);
	if ((rc = send_command(w, ORDER_AGGREGATE, order_id, BUS_CMD_GET, command_id, &reply)) != ORN_OK)
		return rc;
	rc = ORN_EUNAVAILABLE;
	if (reply.outcome != BUS_ACCEPTED || reply.view == NULL)
		goto done;
	rc = ORN_EDECODE;
	out->version = reply.version;
	mp_reader_init(&r, reply.view, reply.view_len);
	if (mp_read_map(&r, &count) != ORN_OK)
		goto done;
	for (uint32_t i = 0; i < count; i++) {
		orn_rc frc = ORN_OK;
		if (mp_read_str(&r, &key, &len) != ORN_OK)
			goto done;
		if (mp_str_eq(key, len, "status"))
			frc = mp_read_cstr(&r, out->status, sizeof out->status);
		else if (mp_str_eq(key, len, "customer_id"))
			frc = mp_read_cstr(&r, out->customer_id, sizeof out->customer_id);
		else if (mp_str_eq(key, len, "total_cents"))
			frc = mp_read_int(&r, &out->total_cents);
		else if (mp_str_eq(key, len, "currency"))
			frc = mp_read_cstr(&r, out->currency, sizeof out->currency);
		else if (mp_str_eq(key, len, "payment_deadline_ms") && mp_peek(&r) != MP_NIL)
			frc = mp_read_int(&r, &out->payment_deadline_ms);
		else
			frc = mp_skip(&r);
		if (frc != ORN_OK)
			goto done;
	}
	rc = out->status[0] != '\0' ? ORN_OK : ORN_EDECODE;
done:
	bus_reply_dispose(&reply);
	if (rc != ORN_OK)
		log_warn("payment cannot read the order", "order_id", order_id, "error", orn_rc_name(rc));
	return rc;
}

static orn_rc fold_payment(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	worker *w = closure;
	orn_rc rc = payment_event_decode(e->type, e->payload, e->payload_len, w->event);

	if (rc == ORN_EINVAL)
		return ORN_OK; /* a type this version does not know */
	if (rc == ORN_OK)
		payment_evolve(w->payment, w->event);
	return rc;
}

/* Loads order_id's payment aggregate into w->payment. */
static orn_rc load_payment(worker *w, const char *order_id)
{
	es_position at;
	orn_rc rc;

	payment_state_init(w->payment);
	rc = es_load(w->p->store, PAYMENT_AGGREGATE, order_id, 0, fold_payment, w, &at);
	if (rc != ORN_OK)
		log_warn("payment cannot load the payment", "order_id", order_id, "error", orn_rc_name(rc));
	return rc;
}

/* ---- refunds ---- */

/* orion_payment_provider_duration_seconds{operation, result} of one call to
 * the provider; result is the HTTP status class, or "error" without an answer. */
static void observe_provider(const char *operation, orn_rc rc, long status, int64_t start_ns)
{
	static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
	static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
	long class_index = status / 100 - 1;
	const char *result = rc != ORN_OK                          ? "error"
	                     : class_index >= 0 && class_index < 5 ? classes[class_index]
	                                                           : "5xx";
	const char *const labels[] = {"operation", operation, "result", result, NULL};
	orn_metrics_observe(orn_metrics_global(), "orion_payment_provider_duration_seconds",
	                    "Time of one call to the card payment provider.", buckets, ORN_ARRAY_LEN(buckets),
	                    labels, orn_metrics_seconds_since(start_ns));
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

/* Refunds charge_id of order_id at the provider and records it. ORN_OK once
 * refunded (or already refunded under another key); an error to retry. */
static orn_rc refund_charge(worker *w, const char *order_id, const char *charge_id, const char *reason)
{
	payment_service *p = w->p;
	char idem[PSPC_KEY_MAX], command_id[CMD_ID_MAX];
	pspc_response resp;
	pspc_refund refund;
	pspc_error err;
	payment_command c;
	bus_reply reply;
	orn_rc rc;

	snprintf(idem, sizeof idem, "%s:refund:%s", order_id, charge_id);
	int64_t start_ns = orn_monotonic_ns();
	rc = pspc_refund_post(w->psp, charge_id, idem, p->call_timeout_ms, &resp);
	observe_provider("refund", rc, rc == ORN_OK ? resp.status : 0, start_ns);
	if (rc != ORN_OK) {
		log_warn("payment refund not answered", "order_id", order_id, "charge_id", charge_id, "error",
		         orn_rc_name(rc));
		return rc;
	}
	if (resp.status != 200 || pspc_parse_refund(resp.body, resp.len, &refund) != ORN_OK) {
		bool done = resp.status == 400 && pspc_parse_error(resp.body, resp.len, &err) == ORN_OK &&
		            strcmp(err.code, "charge_already_refunded") == 0;
		char status[16];
		snprintf(status, sizeof status, "%ld", resp.status);
		pspc_response_dispose(&resp);
		if (done) {
			log_warn("payment charge already refunded under another key", "order_id", order_id,
			         "charge_id", charge_id);
			return ORN_OK;
		}
		log_warn("payment refund refused", "order_id", order_id, "charge_id", charge_id, "status",
		         status);
		return ORN_EUNAVAILABLE;
	}
	pspc_response_dispose(&resp);
	memset(&c, 0, sizeof c);
	c.kind = PAYMENT_RECORD_REFUND;
	snprintf(c.data.charge_id, sizeof c.data.charge_id, "%s", charge_id);
	snprintf(c.data.refund_id, sizeof c.data.refund_id, "%s", refund.id);
	snprintf(c.data.reason, sizeof c.data.reason, "%s", reason);
	charge_command_id(command_id, sizeof command_id, order_id, "refund", charge_id);
	if ((rc = send_payment(w, order_id, &c, command_id, &reply)) != ORN_OK)
		return rc;
	if (reply.outcome != BUS_ACCEPTED)
		log_error("payment refund made but not recorded", "order_id", order_id, "charge_id",
		          charge_id, "code", reply.code);
	bus_reply_dispose(&reply);
	row_put(p, order_id, ROW_REFUNDED, "-", charge_id);
	log_info("payment charge refunded", "order_id", order_id, "charge_id", charge_id, "refund_id",
	         refund.id, "reason", reason);
	return ORN_OK;
}

/* ---- Pay requests ---- */

static void reply_to(payment_service *p, natsMsg *msg, bus_outcome outcome, const char *code,
                     const char *detail, uint64_t seq)
{
	const char *to = natsMsg_GetReply(msg);
	mp_writer *buf;
	bus_reply r;

	if (to == NULL || to[0] == '\0' || (buf = mp_writer_create()) == NULL)
		return;
	memset(&r, 0, sizeof r);
	r.outcome = outcome;
	snprintf(r.code, sizeof r.code, "%s", code);
	snprintf(r.detail, sizeof r.detail, "%s", detail);
	r.seq = seq;
	r.attempts = 1;
	if (bus_reply_encode(buf, &r) == ORN_OK)
		natsConnection_Publish(es_store_connection(p->store), to, mp_writer_data(buf),
		                       (int)mp_writer_size(buf));
	mp_writer_destroy(buf);
}

/* Reads a card string; too long marks the field instead of failing. */
static orn_rc read_card_string(mp_reader *r, char *out, size_t cap, const char *field, pay_request *req)
{
	orn_rc rc = mp_read_cstr(r, out, cap);

	if (rc == ORN_ETOOBIG) {
		sodium_memzero(out, cap);
		if (req->too_long == NULL)
			req->too_long = field;
		return ORN_OK;
	}
	return rc;
}

/* Decodes the card map: exactly its five keys. */
static orn_rc decode_card(mp_reader *r, pay_request *req)
{
	uint32_t count = 0, len, seen = 0;
	const char *key;
	orn_rc rc;

	if ((rc = mp_read_map(r, &count)) != ORN_OK || count != 5)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++) {
		if (mp_read_str(r, &key, &len) != ORN_OK)
			return ORN_EDECODE;
		uint32_t bit;
		if (mp_str_eq(key, len, "number")) {
			bit = 1;
			rc = read_card_string(r, req->number, sizeof req->number, "card.number", req);
		} else if (mp_str_eq(key, len, "exp_month")) {
			bit = 2;
			rc = mp_read_int(r, &req->exp_month);
		} else if (mp_str_eq(key, len, "exp_year")) {
			bit = 4;
			rc = mp_read_int(r, &req->exp_year);
		} else if (mp_str_eq(key, len, "cvc")) {
			bit = 8;
			rc = read_card_string(r, req->cvc, sizeof req->cvc, "card.cvc", req);
		} else if (mp_str_eq(key, len, "holder_name")) {
			bit = 16;
			rc = read_card_string(r, req->holder_name, sizeof req->holder_name,
			                      "card.holder_name", req);
		} else {
			return ORN_EDECODE;
		}
		if (rc != ORN_OK || (seen & bit) != 0)
			return ORN_EDECODE;
		seen |= bit;
	}
	return seen == 31 ? ORN_OK : ORN_EDECODE;
}

/* Decodes the Pay payload strictly: exactly customer_id, idempotency_key, card. */
static orn_rc decode_pay(const uint8_t *payload, size_t len, pay_request *req)
{
	mp_reader r;
	uint32_t count = 0, klen, seen = 0;
	const char *key;
	orn_rc rc;

	mp_reader_init(&r, payload, len);
	if (mp_read_map(&r, &count) != ORN_OK || count != 3)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t bit;
		if (mp_read_str(&r, &key, &klen) != ORN_OK)
			return ORN_EDECODE;
		if (mp_str_eq(key, klen, "customer_id")) {
			bit = 1;
			rc = mp_read_cstr(&r, req->customer_id, sizeof req->customer_id);
		} else if (mp_str_eq(key, klen, "idempotency_key")) {
			bit = 2;
			rc = mp_read_cstr(&r, req->idempotency_key, sizeof req->idempotency_key);
		} else if (mp_str_eq(key, klen, "card")) {
			bit = 4;
			rc = decode_card(&r, req);
		} else {
			return ORN_EDECODE;
		}
		if (rc != ORN_OK || (seen & bit) != 0)
			return ORN_EDECODE;
		seen |= bit;
	}
	if (seen != 7 || mp_reader_remaining(&r) != 0 || !orn_id_valid(req->customer_id))
		return ORN_EDECODE;
	for (const char *c = req->idempotency_key; *c != '\0'; c++)
		if (*c < '!' || *c > '~')
			return ORN_EDECODE;
	return ORN_OK;
}

/* The outcome of a Pay request. */
typedef struct pay_reply {
	bus_outcome outcome;
	char code[BUS_CODE_MAX];
	char detail[BUS_DETAIL_MAX];
	uint64_t seq;
} pay_reply;

static void set_reply(pay_reply *r, bus_outcome outcome, const char *code, const char *detail, uint64_t seq)
{
	r->outcome = outcome;
	if (snprintf(r->code, sizeof r->code, "%s", code) >= (int)sizeof r->code)
		r->code[0] = '\0'; /* codes are short; a provider's long one is not passed on cut */
	if (snprintf(r->detail, sizeof r->detail, "%s", detail) >= (int)sizeof r->detail)
		r->detail[sizeof r->detail - 1] = '\0';
	r->seq = seq;
}

/* Takes the in-flight slot of order_id for worker index; false if another
 * worker holds it. */
static bool claim(payment_service *p, unsigned index, const char *order_id)
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

static void release(payment_service *p, unsigned index)
{
	pthread_mutex_lock(&p->lock);
	p->in_flight[index][0] = '\0';
	pthread_mutex_unlock(&p->lock);
}

/* An order already confirmed or failed: the same request again (the same
 * provider key as the payment's last attempt) gets the answer it had. */
static void answer_repeat(worker *w, const char *order_id, const order_info *order, const char *provider_key,
                          pay_reply *out)
{
	const payment_attempt *a;
	bool paid = strcmp(order->status, order_status_name(ORDER_CONFIRMED)) == 0;
	bool failed = strcmp(order->status, order_status_name(ORDER_PAYMENT_FAILED)) == 0;

	set_reply(out, BUS_REJECTED, "wrong_state", "the order is not awaiting payment", 0);
	if ((!paid && !failed) || load_payment(w, order_id) != ORN_OK ||
	    (a = payment_current_attempt(w->payment)) == NULL || strcmp(a->provider_key, provider_key) != 0)
		return;
	if (paid && w->payment->status == PAYMENT_STATUS_SUCCEEDED)
		set_reply(out, BUS_ACCEPTED, "", "", order->version);
	else if (failed && w->payment->status == PAYMENT_STATUS_DECLINED)
		set_reply(out, BUS_ACCEPTED, a->decline_code, "", order->version);
}

/* Maps a refused Record/Mark command to the Pay reply. */
static void refused(pay_reply *out, const bus_reply *reply)
{
	if (strcmp(reply->code, "in_progress") == 0 || strcmp(reply->code, "wrong_state") == 0 ||
	    strcmp(reply->code, "limit") == 0)
		set_reply(out, BUS_REJECTED, reply->code, reply->detail, 0);
	else
		set_reply(out, BUS_FAILED, "unavailable", "the payment could not be recorded", 0);
}

/* The charge calls, retried with the same key until an answer or until
 * deadline_ms (wall clock): the earlier of the request's budget and the
 * order's payment deadline. PSPC_RETRY when it passed without an answer. */
static pspc_outcome charge(worker *w, const char *order_id, const char *form, size_t form_len,
                           const char *provider_key, int64_t deadline_ms, pspc_charge *ch, pspc_error *err)
{
	payment_service *p = w->p;
	int64_t backoff = CALL_BACKOFF_MS;

	for (;;) {
		int64_t left = deadline_ms - orn_now_ms();
		pspc_response resp;
		if (left <= 0 || is_stopping(p))
			return PSPC_RETRY;
		int64_t start_ns = orn_monotonic_ns();
		orn_rc rc = pspc_charge_post(w->psp, form, form_len, provider_key,
		                             left < p->call_timeout_ms ? left : p->call_timeout_ms, &resp);
		observe_provider("charge", rc, rc == ORN_OK ? resp.status : 0, start_ns);
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
		pause_unless_stopping(p, backoff < left ? backoff : left);
		backoff = backoff * 2 < CALL_BACKOFF_MAX_MS ? backoff * 2 : CALL_BACKOFF_MAX_MS;
	}
}

/* Approved: record, mark the order paid, or refund if it moved on. */
static void settle_approved(worker *w, const char *order_id, const char *provider_key, const pspc_charge *ch,
                            const card_checked *card, pay_reply *out)
{
	payment_service *p = w->p;
	char command_id[CMD_ID_MAX];
	payment_command c;
	bus_reply reply;

	row_put(p, order_id, ROW_SUCCEEDED, provider_key, ch->id);
	memset(&c, 0, sizeof c);
	c.kind = PAYMENT_RECORD_SUCCESS;
	snprintf(c.data.charge_id, sizeof c.data.charge_id, "%s", ch->id);
	step_id(command_id, provider_key, "success");
	if (send_payment(w, order_id, &c, command_id, &reply) != ORN_OK) {
		set_reply(out, BUS_FAILED, "unavailable", "the payment could not be recorded", 0);
		return;
	}
	if (reply.outcome != BUS_ACCEPTED)
		log_error("payment success not recorded", "order_id", order_id, "charge_id", ch->id, "code",
		          reply.code);
	bus_reply_dispose(&reply);
	memset(w->order_cmd, 0, sizeof *w->order_cmd);
	w->order_cmd->kind = ORDER_MARK_PAID;
	snprintf(w->order_cmd->data.charge_id, sizeof w->order_cmd->data.charge_id, "%s", ch->id);
	snprintf(w->order_cmd->data.brand, sizeof w->order_cmd->data.brand, "%s",
	         ch->brand[0] != '\0' ? ch->brand : card->brand);
	snprintf(w->order_cmd->data.last4, sizeof w->order_cmd->data.last4, "%s",
	         ch->last4[0] != '\0' ? ch->last4 : card->last4);
	step_id(command_id, provider_key, "paid");
	if (send_order(w, order_id, command_id, &reply) != ORN_OK) {
		set_reply(out, BUS_FAILED, "unavailable", "the order could not be marked paid", 0);
		return;
	}
	if (reply.outcome == BUS_ACCEPTED) {
		row_put(p, order_id, ROW_PAID, provider_key, ch->id);
		set_reply(out, BUS_ACCEPTED, "", "", reply.seq != 0 ? reply.seq : reply.version);
		log_info("payment approved", "order_id", order_id, "charge_id", ch->id);
	} else if (strcmp(reply.code, "wrong_state") == 0) {
		log_warn("payment approved for an order no longer awaiting payment; refunding", "order_id",
		         order_id, "charge_id", ch->id);
		if (refund_charge(w, order_id, ch->id, "order_not_awaiting_payment") != ORN_OK)
			log_warn("payment refund left to the reconciler", "order_id", order_id);
		set_reply(out, BUS_REJECTED, "wrong_state",
		          "the order stopped awaiting payment before the charge; the charge is refunded", 0);
	} else {
		refused(out, &reply);
	}
	bus_reply_dispose(&reply);
}

/* Declined: record and mark the order's payment failed. */
static void settle_declined(worker *w, const char *order_id, const char *provider_key, const pspc_error *err,
                            pay_reply *out)
{
	payment_service *p = w->p;
	const char *reason = err->decline_code[0] != '\0' ? err->decline_code : err->code;
	char command_id[CMD_ID_MAX];
	payment_command c;
	bus_reply reply;

	row_put(p, order_id, ROW_DECLINED, provider_key, err->charge);
	memset(&c, 0, sizeof c);
	c.kind = PAYMENT_RECORD_DECLINE;
	snprintf(c.data.code, sizeof c.data.code, "%s", reason);
	step_id(command_id, provider_key, "decline");
	if (send_payment(w, order_id, &c, command_id, &reply) != ORN_OK) {
		set_reply(out, BUS_FAILED, "unavailable", "the payment could not be recorded", 0);
		return;
	}
	if (reply.outcome != BUS_ACCEPTED)
		log_error("payment decline not recorded", "order_id", order_id, "code", reply.code);
	bus_reply_dispose(&reply);
	memset(w->order_cmd, 0, sizeof *w->order_cmd);
	w->order_cmd->kind = ORDER_MARK_PAYMENT_FAILED;
	snprintf(w->order_cmd->data.reason, sizeof w->order_cmd->data.reason, "%s", reason);
	step_id(command_id, provider_key, "failed");
	if (send_order(w, order_id, command_id, &reply) != ORN_OK) {
		set_reply(out, BUS_FAILED, "unavailable", "the order could not be marked failed", 0);
		return;
	}
	if (reply.outcome == BUS_ACCEPTED) {
		set_reply(out, BUS_ACCEPTED, reason, "", reply.seq != 0 ? reply.seq : reply.version);
		log_info("payment declined", "order_id", order_id, "code", reason);
	} else {
		refused(out, &reply);
	}
	bus_reply_dispose(&reply);
}

/* The order's charges at the provider (at most PSPC_LIST_MAX) into list. */
static orn_rc list_charges(worker *w, const char *order_id, pspc_charge *list, size_t *count)
{
	pspc_response resp;
	int64_t start_ns = orn_monotonic_ns();
	orn_rc rc = pspc_charges_of_order(w->psp, order_id, w->p->call_timeout_ms, &resp);
	observe_provider("list", rc, rc == ORN_OK ? resp.status : 0, start_ns);
	if (rc != ORN_OK) {
		log_warn("payment cannot list the order's charges", "order_id", order_id, "error",
		         orn_rc_name(rc));
		return rc;
	}
	rc = resp.status == 200 ? pspc_parse_charge_list(resp.body, resp.len, list, PSPC_LIST_MAX, count)
	                        : ORN_EUNAVAILABLE;
	pspc_response_dispose(&resp);
	if (rc != ORN_OK)
		log_warn("payment cannot read the order's charges", "order_id", order_id);
	return rc;
}

/* A new request to pay (another key) finds an attempt left open by a
 * provider that never gave a usable answer (no answer in the request's
 * budget, or an unreadable one): the provider is asked what became of the
 * order's charges. A paid charge settles that attempt as the payment; none,
 * once the attempt is older than one call and its grace, closes it as
 * unanswered (the payment only: the order still awaits payment), so the
 * customer can pay again, and nothing was charged twice. True when the
 * request is answered here. */
static bool settle_open_attempt(worker *w, const char *order_id, const char *provider_key, pay_reply *out)
{
	payment_service *p = w->p;
	const payment_attempt *a;
	pspc_charge *list = NULL, *paid = NULL;
	char command_id[CMD_ID_MAX], open_key[PAYMENT_KEY_MAX];
	size_t count = 0;
	bool answered = true;

	set_reply(out, BUS_FAILED, "unavailable", "the payment could not be read", 0);
	if (load_payment(w, order_id) != ORN_OK)
		return true;
	if (w->payment->status != PAYMENT_STATUS_ATTEMPTED ||
	    (a = payment_current_attempt(w->payment)) == NULL || strcmp(a->provider_key, provider_key) == 0)
		return false; /* nothing open, or this very request again: the provider replays it */
	if (orn_now_ms() - a->at_ms < p->call_timeout_ms + SETTLE_GRACE_MS) {
		set_reply(out, BUS_REJECTED, "in_progress", "a charge for this order is under way", 0);
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
	    list_charges(w, order_id, list, &count) != ORN_OK)
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
	bus_reply reply;
	snprintf(c.data.code, sizeof c.data.code, "%s", PAYMENT_UNANSWERED);
	step_id(command_id, open_key, "unanswered");
	if (send_payment(w, order_id, &c, command_id, &reply) != ORN_OK)
		goto done;
	if (reply.outcome == BUS_ACCEPTED) {
		log_info("payment closes an unanswered attempt: nothing was charged", "order_id", order_id);
		row_put(p, order_id, ROW_DECLINED, open_key, "");
		answered = false;
	} else {
		refused(out, &reply);
	}
	bus_reply_dispose(&reply);
done:
	free(list);
	return answered;
}

/* Steps 5 to 8 of payment_service.h, the order being awaiting_payment and
 * claimed. budget_end_ms: when the request's provider retries must stop. */
static void pay_claimed(worker *w, const pay_request *req, const order_info *order, const card_checked *card,
                        const char *provider_key, int64_t budget_end_ms, pay_reply *out)
{
	payment_service *p = w->p;
	char command_id[CMD_ID_MAX], form[PSPC_FORM_MAX];
	size_t form_len = 0;
	payment_command c;
	bus_reply reply;
	pspc_charge ch;
	pspc_error err;

	/* The charge is built and checked first: a request the provider would
	 * refuse records nothing, so it cannot leave an attempt open for ever. */
	if (order->total_cents > PSPC_AMOUNT_MAX) {
		set_reply(out, BUS_REJECTED, "amount_too_large",
		          "the order's total is above what the card provider can charge", 0);
		return;
	}
	if (order->total_cents < 1) {
		set_reply(out, BUS_REJECTED, "invalid", "the order's total cannot be charged", 0);
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
		set_reply(out, BUS_FAILED, "invalid", "the charge could not be built", 0);
		goto done;
	}
	if (row_put(p, req->order_id, ROW_ATTEMPTED, provider_key, "") != ORN_OK) {
		set_reply(out, BUS_FAILED, "unavailable", "the attempt could not be written", 0);
		goto done;
	}
	memset(&c, 0, sizeof c);
	c.kind = PAYMENT_RECORD_ATTEMPT;
	c.data.amount_cents = order->total_cents;
	snprintf(c.data.currency, sizeof c.data.currency, "%s", order->currency);
	snprintf(c.data.brand, sizeof c.data.brand, "%s", card->brand);
	snprintf(c.data.last4, sizeof c.data.last4, "%s", card->last4);
	snprintf(c.data.provider_key, sizeof c.data.provider_key, "%s", provider_key);
	step_id(command_id, provider_key, "attempt");
	if (send_payment(w, req->order_id, &c, command_id, &reply) != ORN_OK) {
		set_reply(out, BUS_FAILED, "unavailable", "the attempt could not be recorded", 0);
		goto done;
	}
	if (reply.outcome != BUS_ACCEPTED) {
		refused(out, &reply);
		bus_reply_dispose(&reply);
		goto done;
	}
	bus_reply_dispose(&reply);
	bool budget_first = budget_end_ms < order->payment_deadline_ms;
	pspc_outcome o = charge(w, req->order_id, form, form_len, provider_key,
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
		set_reply(out, BUS_FAILED, "unavailable",
		          "the card provider did not answer in time; retry with the same idempotency key", 0);
	} else if (strcmp(err.type, "idempotency_error") == 0) {
		set_reply(out, BUS_REJECTED, "idempotency_conflict",
		          "this idempotency key was used with other payment details", 0);
	} else {
		log_error("payment provider refused the charge", "order_id", req->order_id, "type", err.type,
		          "code", err.code, "param", err.param);
		set_reply(out, BUS_FAILED, "unavailable", "the card provider refused the request", 0);
	}
done:
	sodium_memzero(form, sizeof form);
}

/* Steps 1 to 4 of payment_service.h. */
static void pay(worker *w, pay_request *req, pay_reply *out)
{
	int64_t budget_end_ms = orn_now_ms() + w->p->request_budget_ms;
	char provider_key[PSPC_KEY_MAX];
	card_checked card;
	order_info order;
	card_error ce;

	memset(&card, 0, sizeof card);
	if (req->too_long != NULL) {
		set_reply(out, BUS_REJECTED, "invalid_card", req->too_long, 0);
		return;
	}
	card_input in = {.number = req->number,
	                 .exp_month = req->exp_month,
	                 .exp_year = req->exp_year,
	                 .cvc = req->cvc,
	                 .holder_name = req->holder_name};
	if ((ce = card_validate(&in, orn_now_ms(), &card)) != CARD_OK) {
		set_reply(out, BUS_REJECTED, "invalid_card", card_error_field(ce), 0);
		goto done;
	}
	if (get_order(w, req->order_id, &order) != ORN_OK) {
		set_reply(out, BUS_FAILED, "unavailable", "the order could not be read", 0);
		goto done;
	}
	if (strcmp(order.status, order_status_name(ORDER_NONE)) == 0 ||
	    strcmp(order.customer_id, req->customer_id) != 0) {
		set_reply(out, BUS_REJECTED, "not_found", "no such order", 0);
		goto done;
	}
	if (pspc_provider_key(req->order_id, req->idempotency_key, provider_key) != ORN_OK) {
		set_reply(out, BUS_FAILED, "invalid", "bad order id", 0);
		goto done;
	}
	if (strcmp(order.status, order_status_name(ORDER_AWAITING_PAYMENT)) != 0) {
		answer_repeat(w, req->order_id, &order, provider_key, out);
		goto done;
	}
	if (!claim(w->p, w->index, req->order_id)) {
		set_reply(out, BUS_REJECTED, "in_progress", "a charge for this order is under way", 0);
		goto done;
	}
	if (!settle_open_attempt(w, req->order_id, provider_key, out))
		pay_claimed(w, req, &order, &card, provider_key, budget_end_ms, out);
	release(w->p, w->index);
done:
	sodium_memzero(&card, sizeof card);
}

/* One request, start to end; wipes everything that held the card. */
static void handle_request(worker *w, natsMsg *msg)
{
	payment_service *p = w->p;
	const char *subject = natsMsg_GetSubject(msg);
	size_t prefix = strlen("orion.cmd." PAYMENT_SERVICE_AGGREGATE ".");
	pay_request *req = NULL;
	env_envelope cmd;
	pay_reply out;

	memset(&out, 0, sizeof out);
	set_reply(&out, BUS_FAILED, "invalid", "undecodable Pay request", 0);
	w->correlation[0] = '\0';
	if ((req = sodium_malloc(sizeof *req)) == NULL) {
		set_reply(&out, BUS_FAILED, "unavailable", "out of memory", 0);
		goto done;
	}
	memset(req, 0, sizeof *req);
	if (subject == NULL || strncmp(subject, "orion.cmd." PAYMENT_SERVICE_AGGREGATE ".", prefix) != 0 ||
	    strlen(subject + prefix) > ORN_ID_MAX || !orn_id_valid(subject + prefix)) {
		set_reply(&out, BUS_FAILED, "invalid", "invalid order id", 0);
		goto done;
	}
	strcpy(req->order_id, subject + prefix);
	if (env_decode_buffer(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &cmd) != ORN_OK ||
	    strcmp(cmd.type, PAYMENT_CMD_PAY) != 0 || decode_pay(cmd.payload, cmd.payload_len, req) != ORN_OK)
		goto done;
	memcpy(w->correlation, cmd.correlation, sizeof w->correlation);
	log_set_correlation(cmd.correlation);
	pay(w, req, &out);
done:
	if (req != NULL)
		sodium_free(req); /* wipes */
	if (natsMsg_GetDataLength(msg) > 0)
		sodium_memzero((void *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	memset(&cmd, 0, sizeof cmd);
	reply_to(p, msg, out.outcome, out.code, out.detail, out.seq);
	natsMsg_Destroy(msg);
	log_set_correlation(NULL);
}

/* cnats callback: queue the request for a worker. */
static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	payment_service *p = closure;
	request *r = malloc(sizeof *r);
	bool queued = false;

	pthread_mutex_lock(&p->lock);
	if (r != NULL && !is_stopping(p) && p->queued < QUEUE_MAX) {
		r->msg = msg;
		r->next = NULL;
		if (p->tail != NULL)
			p->tail->next = r;
		else
			p->head = r;
		p->tail = r;
		p->queued++;
		queued = true;
		pthread_cond_broadcast(&p->wake);
	}
	pthread_mutex_unlock(&p->lock);
	if (queued)
		return;
	free(r);
	reply_to(p, msg, BUS_FAILED, "overloaded", "the payment service is busy", 0);
	sodium_memzero((void *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	natsMsg_Destroy(msg);
}

static natsMsg *next_request(payment_service *p)
{
	natsMsg *msg = NULL;

	pthread_mutex_lock(&p->lock);
	while (p->head == NULL && !is_stopping(p))
		pthread_cond_wait(&p->wake, &p->lock);
	if (p->head != NULL && !is_stopping(p)) {
		request *r = p->head;
		p->head = r->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued--;
		msg = r->msg;
		free(r);
	}
	pthread_mutex_unlock(&p->lock);
	return msg;
}

/* ---- the reconciler ---- */

typedef enum step_end { STEP_DONE, STEP_RETRY } step_end;

/* Refunds every succeeded charge of a cancelled order not yet refunded. */
static step_end reconcile_cancelled(worker *w, const char *order_id, int64_t event_ms)
{
	payment_service *p = w->p;
	pspc_charge *list = NULL;
	char state[STATUS_MAX], command_id[CMD_ID_MAX];
	size_t count = 0, found = 0;
	step_end end = STEP_RETRY;
	orn_rc rc;

	if (load_payment(w, order_id) != ORN_OK)
		return STEP_RETRY;
	rc = row_state(p, order_id, state);
	if (rc == ORN_EIO)
		return STEP_RETRY;
	if (w->payment->attempt_count == 0 && rc == ORN_ENOTFOUND)
		return STEP_DONE; /* never charged here */
	if ((list = calloc(PSPC_LIST_MAX, sizeof *list)) == NULL)
		return STEP_RETRY;
	if (list_charges(w, order_id, list, &count) != ORN_OK)
		goto done;
	for (size_t i = 0; i < count; i++) {
		const pspc_charge *c = &list[i];
		const payment_charge *known = payment_find_charge(w->payment, c->id);
		if (strcmp(c->status, "succeeded") != 0 || !c->paid || strcmp(c->order_id, order_id) != 0)
			continue;
		found++;
		if (known != NULL && known->refunded)
			continue;
		if (known == NULL) { /* a success the payment never heard of: the story first */
			payment_command cmd;
			bus_reply reply;
			memset(&cmd, 0, sizeof cmd);
			cmd.kind = PAYMENT_RECORD_SUCCESS;
			snprintf(cmd.data.charge_id, sizeof cmd.data.charge_id, "%s", c->id);
			charge_command_id(command_id, sizeof command_id, order_id, "late", c->id);
			if (send_payment(w, order_id, &cmd, command_id, &reply) != ORN_OK)
				goto done;
			if (reply.outcome != BUS_ACCEPTED)
				log_warn("payment late success not recorded", "order_id", order_id,
				         "charge_id", c->id, "code", reply.code);
			bus_reply_dispose(&reply);
		}
		if (refund_charge(w, order_id, c->id, "order_cancelled") != ORN_OK)
			goto done;
	}
	/* An open attempt whose charge does not show yet may still be settling. */
	if (found == 0 && w->payment->status == PAYMENT_STATUS_ATTEMPTED &&
	    orn_now_ms() - event_ms < p->call_timeout_ms + SETTLE_GRACE_MS)
		goto done;
	end = STEP_DONE;
done:
	free(list);
	return end;
}

static step_end reconcile_message(worker *w, natsMsg *msg)
{
	const char *subject = natsMsg_GetSubject(msg);
	size_t prefix = strlen(ORDER_PREFIX);
	step_end end = STEP_DONE;
	order_event *ev = malloc(sizeof *ev);

	if (ev == NULL)
		return STEP_RETRY;
	es_commit c;
	orn_rc rc;
	if (subject == NULL || strncmp(subject, ORDER_PREFIX, prefix) != 0 ||
	    strlen(subject + prefix) > ORN_ID_MAX || !orn_id_valid(subject + prefix) ||
	    es_commit_decode(msg, w->envelopes, ENV_MAX_EVENTS, &c) != ORN_OK) {
		free(ev);
		return STEP_DONE;
	}
	if ((rc = es_commit_check(w->p->store, &c)) != ORN_OK || !c.valid) {
		free(ev);
		return rc == ORN_OK ? STEP_DONE : STEP_RETRY; /* a void commit changes nothing */
	}
	for (size_t i = 0; i < c.count && end == STEP_DONE; i++) {
		const env_envelope *e = &w->envelopes[i];
		if (strcmp(e->type, ORDER_EV_CANCELLED) != 0 ||
		    order_event_decode(e->type, e->payload, e->payload_len, ev) != ORN_OK)
			continue;
		log_set_correlation(e->correlation);
		end = reconcile_cancelled(w, subject + prefix, ev->data.time_ms);
		log_set_correlation(NULL);
	}
	free(ev);
	return end;
}

/* ---- the sweeper (sweep.h, ADR 007 addendum): cancellations the consumer lost ---- */

static bool sweep_wants(void *closure, const env_envelope *e)
{
	(void)closure;
	return strcmp(e->type, ORDER_EV_CANCELLED) == 0;
}

typedef struct sweep_ctx {
	worker *w;
	const char *order_id;
	order_event *ev;
	step_end end;
} sweep_ctx;

static orn_rc sweep_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	sweep_ctx *c = closure;
	(void)seq;
	(void)subject;
	if (c->end != STEP_DONE || strcmp(e->type, ORDER_EV_CANCELLED) != 0 ||
	    order_event_decode(e->type, e->payload, e->payload_len, c->ev) != ORN_OK)
		return ORN_OK;
	log_set_correlation(e->correlation);
	c->end = reconcile_cancelled(c->w, c->order_id, c->ev->data.time_ms);
	log_set_correlation(NULL);
	return ORN_OK;
}

/* A due cancellation: reconciled again (refunds are keyed, so a second pass
 * over a reconciled order changes nothing). */
static es_sweep_verdict sweep_commit(void *closure, const es_sweep_commit *commit)
{
	payment_service *p = closure;
	const char *order_id = es_sweep_id(commit->subject, ORDER_PREFIX);

	if (is_stopping(p))
		return ES_SWEEP_RETRY;
	if (order_id == NULL)
		return ES_SWEEP_DONE;
	sweep_ctx c = {p->sweeper, order_id, malloc(sizeof(order_event)), STEP_DONE};
	if (c.ev == NULL)
		return ES_SWEEP_RETRY;
	orn_rc rc = es_sweep_reread(p->store, commit->subject, commit->seq, sweep_event, &c);
	free(c.ev);
	return rc == ORN_OK && c.end == STEP_DONE ? ES_SWEEP_DONE : ES_SWEEP_RETRY;
}

static void *reconciler_main(void *arg)
{
	worker *w = arg;
	payment_service *p = w->p;
	natsSubscription *sub = NULL;

	while (!is_stopping(p)) {
		natsMsgList list = {0};
		jsErrCode jerr = 0;
		natsStatus st;
		if (sub == NULL && es_durable_bind(p->store, &CONSUMER, &sub) != ORN_OK) {
			pause_unless_stopping(p, 1000);
			continue;
		}
		atomic_store(&p->bound, true);
		st = natsSubscription_Fetch(&list, sub, 1, FETCH_WAIT_MS, &jerr);
		for (int i = 0; i < list.Count; i++) {
			natsMsg *msg = list.Msgs[i];
			jsMsgMetaData *meta = NULL;
			uint64_t delivered = 1;
			if (is_stopping(p)) {
				natsMsg_Nak(msg, NULL);
				continue;
			}
			if (reconcile_message(w, msg) == STEP_DONE) {
				natsMsg_Ack(msg, NULL);
				continue;
			}
			if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
				delivered = meta->NumDelivered;
				jsMsgMetaData_Destroy(meta);
			}
			natsMsg_NakWithDelay(msg, es_backoff_ms(delivered, RETRY_FIRST_MS, RETRY_MAX_MS),
			                     NULL);
		}
		natsMsgList_Destroy(&list);
		if (st == NATS_OK || st == NATS_TIMEOUT)
			continue;
		if (st == NATS_INVALID_SUBSCRIPTION || st == NATS_CONNECTION_CLOSED) {
			natsSubscription_Destroy(sub);
			sub = NULL;
		}
		pause_unless_stopping(p, 250);
	}
	natsSubscription_Destroy(sub);
	return NULL;
}

/* ---- workers ---- */

static void worker_free(worker *w)
{
	if (w == NULL)
		return;
	pspc_client_destroy(w->psp);
	mp_writer_destroy(w->payload);
	free(w->payment);
	free(w->event);
	free(w->order_cmd);
	free(w->envelopes);
	free(w);
}

static worker *worker_create(payment_service *p, unsigned index)
{
	worker *w = calloc(1, sizeof *w);

	if (w == NULL)
		return NULL;
	w->p = p;
	w->index = index;
	w->payload = mp_writer_create();
	w->payment = malloc(sizeof *w->payment);
	w->event = malloc(sizeof *w->event);
	w->order_cmd = malloc(sizeof *w->order_cmd);
	w->envelopes = malloc(sizeof *w->envelopes * ENV_MAX_EVENTS);
	if (w->payload == NULL || w->payment == NULL || w->event == NULL || w->order_cmd == NULL ||
	    w->envelopes == NULL ||
	    pspc_client_create(p->psp_url, p->psp_key, CONNECT_TIMEOUT_MS, &w->psp) != ORN_OK) {
		worker_free(w);
		return NULL;
	}
	return w;
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	natsMsg *msg;

	while ((msg = next_request(w->p)) != NULL)
		handle_request(w, msg);
	worker_free(w);
	return NULL;
}

static void *reconciler_thread(void *arg)
{
	worker *w = arg;

	reconciler_main(w);
	worker_free(w);
	return NULL;
}

/* ---- lifecycle ---- */

static void service_free(payment_service *p)
{
	atomic_store(&p->stopping, true);
	pthread_mutex_lock(&p->lock);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->threads_started; i++)
		pthread_join(p->threads[i], NULL);
	for (unsigned i = 0; i < p->reconcilers_started; i++)
		pthread_join(p->reconcilers[i], NULL);
	es_sweep_stop(p->sweep);
	if (p->sweeper != NULL)
		worker_free(p->sweeper);
	for (request *r = p->head; r != NULL;) { /* queued, never started */
		request *next = r->next;
		reply_to(p, r->msg, BUS_FAILED, "unavailable", "the payment service is stopping", 0);
		sodium_memzero((void *)natsMsg_GetData(r->msg), (size_t)natsMsg_GetDataLength(r->msg));
		natsMsg_Destroy(r->msg);
		free(r);
		r = next;
	}
	if (p->env != NULL)
		mdb_env_close(p->env);
	if (p->curl_ready)
		curl_global_cleanup();
	if (p->psp_key != NULL)
		sodium_memzero(p->psp_key, strlen(p->psp_key));
	free(p->psp_key);
	free(p->psp_url);
	free(p->state_dir);
	free(p->in_flight);
	free(p->threads);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

orn_rc payment_start(es_store *store, const payment_options *o, payment_service **out)
{
	pthread_condattr_t attr;
	payment_service *p;
	const char *fault = getenv(PAYMENT_FAULT_ENV);
	char subject[64];
	orn_rc rc = ORN_ENOMEM;

	*out = NULL;
	if (store == NULL || o == NULL || o->psp_url == NULL || o->psp_url[0] == '\0' || o->psp_key == NULL ||
	    o->psp_key[0] == '\0' || o->state_dir == NULL || o->state_dir[0] == '\0')
		return ORN_EINVAL;
	prctl(PR_SET_DUMPABLE, 0); /* no core dump may carry a card */
	if ((p = calloc(1, sizeof *p)) == NULL)
		return ORN_ENOMEM;
	p->store = store;
	p->workers = o->workers > 0 ? o->workers : 8;
	p->call_timeout_ms = o->call_timeout_ms > 0 ? o->call_timeout_ms : 10000;
	p->command_timeout_ms = o->command_timeout_ms > 0 ? o->command_timeout_ms : 5000;
	p->request_budget_ms = o->request_budget_ms > 0 ? o->request_budget_ms : REQUEST_BUDGET_MS;
	p->sweep_after_ms = o->sweep_after_ms;
	p->kill_after_charge = fault != NULL && strcmp(fault, "1") == 0;
	atomic_init(&p->stopping, false);
	atomic_init(&p->bound, false);
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &attr);
	pthread_condattr_destroy(&attr);
	p->psp_url = strdup(o->psp_url);
	p->psp_key = strdup(o->psp_key);
	p->state_dir = strdup(o->state_dir);
	p->in_flight = calloc(p->workers, sizeof *p->in_flight);
	p->threads = calloc(p->workers, sizeof *p->threads);
	if (p->psp_url == NULL || p->psp_key == NULL || p->state_dir == NULL || p->in_flight == NULL ||
	    p->threads == NULL)
		goto fail;
	for (size_t n = strlen(p->psp_url); n > 0 && p->psp_url[n - 1] == '/'; n--)
		p->psp_url[n - 1] = '\0';
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		rc = ORN_EINTERNAL;
		goto fail;
	}
	p->curl_ready = true;
	if ((rc = rows_open(p)) != ORN_OK || (rc = es_durable_ensure(p->store, &CONSUMER)) != ORN_OK)
		goto fail;
	rc = ORN_ENOMEM;
	for (unsigned i = 0; i < p->workers; i++) {
		worker *w = worker_create(p, i);
		if (w == NULL)
			goto fail;
		if (pthread_create(&p->threads[i], NULL, worker_main, w) != 0) {
			worker_free(w);
			goto fail;
		}
		p->threads_started++;
	}
	for (unsigned i = 0; i < RECONCILERS; i++) {
		worker *w = worker_create(p, p->workers + i);
		if (w == NULL)
			goto fail;
		if (pthread_create(&p->reconcilers[i], NULL, reconciler_thread, w) != 0) {
			worker_free(w);
			goto fail;
		}
		p->reconcilers_started++;
	}
	if (p->sweep_after_ms > 0) {
		es_sweep_options so = {.filter = ORDER_FILTER,
		                       .after_ms = p->sweep_after_ms,
		                       .retry_first_ms = RETRY_FIRST_MS,
		                       .retry_max_ms = RETRY_MAX_MS,
		                       .wants = sweep_wants,
		                       .fn = sweep_commit,
		                       .closure = p,
		                       .name = "payment"};
		if ((p->sweeper = worker_create(p, p->workers + RECONCILERS)) == NULL)
			goto fail;
		if ((rc = es_sweep_start(p->store, &so, &p->sweep)) != ORN_OK)
			goto fail;
		rc = ORN_ENOMEM;
	}
	snprintf(subject, sizeof subject, "orion.cmd.%s.*", PAYMENT_SERVICE_AGGREGATE);
	natsStatus st = natsConnection_QueueSubscribe(&p->sub, es_store_connection(store), subject,
	                                              PAYMENT_QUEUE, on_request, p);
	if (st != NATS_OK) {
		rc = es_status_rc(st, 0);
		goto fail;
	}
	natsSubscription_SetPendingLimits(p->sub, 100000, 256 * 1024 * 1024);
	natsConnection_Flush(es_store_connection(store));
	log_info("payment service started", "queue", PAYMENT_QUEUE, "consumer", PAYMENT_CONSUMER, "state_dir",
	         p->state_dir);
	*out = p;
	return ORN_OK;
fail:
	service_free(p);
	return rc;
}

bool payment_consumer_bound(payment_service *p)
{
	return p != NULL && atomic_load(&p->bound);
}

void payment_stop(payment_service *p)
{
	if (p == NULL)
		return;
	if (p->sub != NULL) {
		/* Hand the requests already sent to us to the workers; with NATS
		 * gone nothing more can arrive, and a drain would wait in vain. */
		bool connected =
		        natsConnection_Status(es_store_connection(p->store)) == NATS_CONN_STATUS_CONNECTED;
		if (connected && natsSubscription_Drain(p->sub) == NATS_OK)
			natsSubscription_WaitForDrainCompletion(p->sub, 5000);
		natsSubscription_Destroy(p->sub);
		p->sub = NULL;
	}
	service_free(p);
	log_info("payment service stopped");
}
