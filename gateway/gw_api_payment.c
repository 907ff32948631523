/* gw_api_payment.c — POST /api/v1/orders/{id}/payment: pays an order that
 * awaits payment with a payment method tokenized at the provider (ADR 028;
 * ADR 009 for the claims and keys).
 *
 * The route checks the login, the owner (404 for anybody else's order, as
 * for one that does not exist), the Idempotency-Key header and the body
 * strictly: {payment_method: "pm_..."}. A card never gets here: every route
 * refuses card data before its handler (gw_api.c, 400 card_data_refused).
 * The request becomes the bus request Pay to the payment service ("pay"),
 * id = the order id, payload {customer_id, idempotency_key, payment_method};
 * the reply maps to 200 (the order after read-your-writes: confirmed,
 * payment_failed, or still awaiting_payment with payment.status
 * "requires_action" and the provider's 3-D Secure page in
 * payment.next_action), 400 (invalid_payment_method), 404, 409 (wrong_state,
 * in_progress, limit: too many attempts), 422 (idempotency_conflict: the
 * provider saw the key with another payment method; amount_too_large) or
 * 503 (failed, timeout, no payment service). The request may wait for the
 * provider, so it gets api->payment_timeout_ms instead of the usual
 * command timeout.
 *
 * Idempotency. With an Idempotency-Key the command id is "<order>:pay:" +
 * hex(SHA-256(key)), so a retried request is the same command, and the
 * payment service derives the provider's key from the same key: one charge.
 * The gateway also keeps a record per (customer, order, key), in memory:
 * - while the first request is in flight, requests with the same key and
 *   body wait for its outcome and get the same answer (a double click);
 * - a settled 200 (confirmed or payment_failed) is kept for
 *   PAYMENT_REPLAY_TTL_MS (at most PAYMENT_RECORDS_MAX records, the oldest
 *   dropped first) and replayed for the same key and body (a network
 *   retry), without asking the service again;
 * - the same key with another body is 422, as for POST /orders;
 * - any other answer (and requires_action, which the webhook settles later)
 *   is not kept: the retry reaches the service, which answers the state the
 *   payment has reached by then.
 * Bodies are compared by a BLAKE2b-256 of their canonical JSON (sorted keys,
 * compact) keyed with a random per-process key. A gateway restarted, or
 * another gateway instance, has no records: the payment service and the
 * provider's own idempotency still make the retry one charge.
 *
 * Threading: everything runs on the gateway's loop thread. */
#include "gw_api_payment.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw_api-internal.h"
#include "gw_problem.h"
#include "gw_views.h"
#include "hashmap.h"
#include "log.h"

#define PAY_SERVICE           "pay" /* the payment service (ADR 009); "payment" is the aggregate */
#define PAYMENT_CMD_PAY       "Pay"
#define PAYMENT_BODY_MAX      1024
#define PAYMENT_RECORDS_MAX   10000
#define PAYMENT_REPLAY_TTL_MS (24LL * 3600 * 1000)
#define PAYMENT_METHOD_MAX    64 /* GW_PATTERN_ID's bound; the provider's ids (pm_...) are far shorter */
#define REQUIRES_ACTION       "requires_action"
#define RECORD_KEY_HEX        (2 * crypto_generichash_BYTES + 1)
#define COMMAND_ID_MAX        (ORDER_ID_MAX + 5 + 2 * crypto_hash_sha256_BYTES + 1)

static const gw_field payment_schema[] = {
        {.name = "payment_method",
         .type = GW_STRING,
         .required = true,
         .min = 1,
         .max = PAYMENT_METHOD_MAX,
         .pattern = GW_PATTERN_ID},
        {.name = NULL},
};

/* ---- the records of Idempotency-Keys ---------------------------------------- */

/* One request waiting for the outcome of a payment. */
typedef struct pay_waiter {
	gw_async *async;
	struct pay_waiter *next;
} pay_waiter;

/* A payment in flight (waiters) or done (a kept 200). A request without an
 * Idempotency-Key has a record of its own that is never in the map. */
typedef struct pay_record {
	char key[RECORD_KEY_HEX]; /* "" when not in the map */
	unsigned char body_hash[crypto_generichash_BYTES];
	bool done;
	pay_waiter *waiters; /* in flight: every request to answer */
	char *answer;        /* done: the order answered with 200 (JSON text) */
	size_t answer_len;
	int64_t expires_ms;
	struct pay_record *older, *newer; /* done records, oldest first */
} pay_record;

typedef struct gw_api_payments {
	hmap *records; /* record key → pay_record */
	unsigned char hash_key[crypto_generichash_KEYBYTES];
	pay_record *oldest, *newest; /* done records */
	size_t done_count;
} gw_api_payments;

/* Milliseconds of engine/log.h's monotonic clock: record ages only. */
static int64_t monotonic_ms(void)
{
	return orn_monotonic_ns() / 1000000;
}

static void payments_free(void *payments);

/* The api's records, created on first use (gw_api_destroy frees them with
 * payments_free); NULL on ENOMEM. */
static gw_api_payments *payments_of(gw_api *api)
{
	if (api->payments != NULL)
		return api->payments;
	gw_api_payments *p = calloc(1, sizeof *p);
	if (p == NULL || (p->records = hmap_create()) == NULL) {
		free(p);
		return NULL;
	}
	crypto_generichash_keygen(p->hash_key);
	api->payments = p;
	api->payments_free = payments_free;
	return p;
}

static void record_free(pay_record *rec)
{
	while (rec->waiters != NULL) {
		pay_waiter *w = rec->waiters;
		rec->waiters = w->next;
		free(w);
	}
	free(rec->answer);
	free(rec);
}

/* Takes a done record out of the age list. */
static void unlink_done(gw_api_payments *p, pay_record *rec)
{
	if (rec->older != NULL)
		rec->older->newer = rec->newer;
	else
		p->oldest = rec->newer;
	if (rec->newer != NULL)
		rec->newer->older = rec->older;
	else
		p->newest = rec->older;
	rec->older = rec->newer = NULL;
	p->done_count--;
}

/* Drops the done records past their time, and the oldest beyond the cap. */
static void expire_records(gw_api_payments *p)
{
	int64_t now = monotonic_ms();
	while (p->oldest != NULL && (p->oldest->expires_ms <= now || p->done_count > PAYMENT_RECORDS_MAX)) {
		pay_record *rec = p->oldest;
		unlink_done(p, rec);
		hmap_remove(p->records, rec->key);
		record_free(rec);
	}
}

/* Frees the records. Requests still waiting for a payment are not
 * answered: gw_api_destroy calls it once the bus and the consistency helper
 * are gone (they answer every pending callback first). */
static void payments_free(void *payments)
{
	gw_api_payments *p = payments;
	size_t cursor = 0;
	const char *key;
	void *value;
	while (hmap_next(p->records, &cursor, &key, &value))
		record_free(value);
	hmap_destroy(p->records);
	sodium_memzero(p->hash_key, sizeof p->hash_key);
	free(p);
}

/* The map key of (customer, order, Idempotency-Key): keyed BLAKE2b in hex. */
static void record_key(const gw_api_payments *p, const char *customer, const char *order, const char *key,
                       char out[RECORD_KEY_HEX])
{
	unsigned char digest[crypto_generichash_BYTES];
	crypto_generichash_state st;
	crypto_generichash_init(&st, p->hash_key, sizeof p->hash_key, sizeof digest);
	crypto_generichash_update(&st, (const unsigned char *)customer, strlen(customer) + 1);
	crypto_generichash_update(&st, (const unsigned char *)order, strlen(order) + 1);
	crypto_generichash_update(&st, (const unsigned char *)key, strlen(key));
	crypto_generichash_final(&st, digest, sizeof digest);
	sodium_bin2hex(out, RECORD_KEY_HEX, digest, sizeof digest);
}

/* ---- the request -------------------------------------------------------------- */

static bool is_json(const char *type)
{
	static const char json[] = "application/json";
	size_t len = sizeof json - 1;
	return type != NULL && strncasecmp(type, json, len) == 0 &&
	       (type[len] == '\0' || type[len] == ';' || type[len] == ' ');
}

/* Parses and checks the body against payment_schema and hashes its
 * canonical form into hash. Returns the object (the caller frees it), or
 * NULL after answering (400 with the errors, 413, 415, 500). */
static json_t *read_body(gw_request *r, const gw_api_payments *p,
                         unsigned char hash[crypto_generichash_BYTES])
{
	size_t len;
	const unsigned char *raw = gw_request_body(r, &len);
	json_t *body = NULL, *problem = NULL;
	if (len > PAYMENT_BODY_MAX) {
		gw_respond_error(r, 413, "the request body is too large");
		return NULL;
	}
	if (!is_json(gw_request_header(r, "Content-Type"))) {
		gw_respond_error(r, 415, "the request body must be application/json");
		return NULL;
	}
	orn_rc rc = gw_validate_json(raw, len, PAYMENT_BODY_MAX, payment_schema, &body, &problem);
	if (rc != ORN_OK) {
		if (problem != NULL)
			gw_respond_problem(r, problem);
		else
			gw_respond_error(r, 500, NULL);
		return NULL;
	}
	char *canonical = json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT);
	if (canonical == NULL) {
		json_decref(body);
		gw_respond_error(r, 500, NULL);
		return NULL;
	}
	crypto_generichash(hash, crypto_generichash_BYTES, (const unsigned char *)canonical,
	                   strlen(canonical), p->hash_key, sizeof p->hash_key);
	free(canonical);
	return body;
}

/* The Pay payload into a fresh writer; NULL on ENOMEM. */
static mp_writer *encode_pay(const char *customer, const char *key, const json_t *body)
{
	mp_writer *w = mp_writer_create();
	if (w == NULL)
		return NULL;
	mp_write_map(w, 3);
	mp_write_cstr(w, "customer_id");
	mp_write_cstr(w, customer);
	mp_write_cstr(w, "idempotency_key");
	mp_write_cstr(w, key != NULL ? key : "");
	mp_write_cstr(w, "payment_method");
	mp_write_cstr(w, gw_json_string(body, "payment_method", ""));
	if (mp_writer_status(w) != ORN_OK) {
		mp_writer_destroy(w);
		return NULL;
	}
	return w;
}

/* "<order>:pay:" + hex(SHA-256(key)), or a random id without a key. */
static void command_id_for(const char *order, const char *key, char out[COMMAND_ID_MAX])
{
	if (key == NULL) {
		gw_api_new_id(out, COMMAND_ID_MAX);
		return;
	}
	unsigned char digest[crypto_hash_sha256_BYTES];
	char hex[2 * crypto_hash_sha256_BYTES + 1];
	crypto_hash_sha256(digest, (const unsigned char *)key, strlen(key));
	sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
	snprintf(out, COMMAND_ID_MAX, "%s:pay:%s", order, hex);
}

/* ---- the outcome ---------------------------------------------------------------- */

typedef struct pay_op {
	gw_api *api;
	pay_record *record;
	char order_id[ORDER_ID_MAX];
	bool requires_action; /* the answer is not kept: the webhook settles the payment later */
} pay_op;

/* Answers every request waiting on rec with answer (status 200, JSON text
 * of len bytes, taken: a heap string) or a copy of problem (stolen), then
 * keeps rec (a 200 with a key, when keepable) or frees it. */
static void record_finish(gw_api *api, pay_record *rec, char *answer, size_t len, json_t *problem,
                          bool keepable)
{
	gw_api_payments *p = api->payments;
	while (rec->waiters != NULL) {
		pay_waiter *w = rec->waiters;
		rec->waiters = w->next;
		if (answer != NULL) {
			gw_async_complete_body(w->async, 200, "application/json", answer, len);
		} else {
			json_t *copy = problem != NULL ? json_deep_copy(problem) : NULL;
			gw_async_complete_problem(w->async, copy != NULL ? copy : gw_problem_new(500, NULL));
		}
		free(w);
	}
	json_decref(problem);
	bool keep = keepable && answer != NULL && rec->key[0] != '\0' && p != NULL;
	if (!keep) {
		if (rec->key[0] != '\0' && p != NULL)
			hmap_remove(p->records, rec->key);
		free(answer);
		record_free(rec);
		return;
	}
	rec->done = true;
	rec->answer = answer;
	rec->answer_len = len;
	rec->expires_ms = monotonic_ms() + PAYMENT_REPLAY_TTL_MS;
	rec->older = p->newest;
	rec->newer = NULL;
	if (p->newest != NULL)
		p->newest->newer = rec;
	else
		p->oldest = rec;
	p->newest = rec;
	p->done_count++;
	expire_records(p);
}

static void op_fail(pay_op *op, int status, const char *detail)
{
	record_finish(op->api, op->record, NULL, 0, gw_problem_new(status, detail), false);
	free(op);
}

/* The order view of order_id as a heap string into *out (*len bytes):
 * ORN_OK, or the read model's failure, or ORN_ENOMEM. */
static orn_rc settled_view(gw_api *api, const char *order_id, char **out, size_t *len)
{
	proj_order *order = malloc(sizeof *order);
	mp_writer *w = gw_api_text_buffer(api);
	orn_rc rc = order != NULL && w != NULL ? proj_orders_get(api->orders, order_id, order) : ORN_ENOMEM;
	*out = NULL;
	if (rc == ORN_OK && (!gw_api_write_order(api, w, order_id, &order->state, ORDER_HISTORY_MAX) ||
	                     mp_writer_status(w) != ORN_OK || (*out = malloc(mp_writer_size(w))) == NULL))
		rc = ORN_ENOMEM;
	if (rc == ORN_OK) {
		*len = mp_writer_size(w);
		memcpy(*out, mp_writer_data(w), *len);
	}
	free(order);
	return rc;
}

/* The read side has the payment's outcome: answer the order. */
static void on_settled(void *closure, orn_rc wait_rc)
{
	pay_op *op = closure;
	char *answer = NULL;
	size_t len = 0;
	if (wait_rc != ORN_OK)
		log_warn("read models late after a payment", "order", op->order_id, "wait",
		         orn_strerror(wait_rc));
	orn_rc rc = settled_view(op->api, op->order_id, &answer, &len);
	if (rc != ORN_OK) {
		op_fail(op, rc == ORN_ENOMEM ? 500 : 503,
		        rc == ORN_ENOMEM ? NULL : "the order is late in the read model; read it again");
		return;
	}
	record_finish(op->api, op->record, answer, len, NULL, !op->requires_action);
	free(op);
}

static void on_pay_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	pay_op *op = closure;
	if (rc != ORN_OK || reply->outcome == BUS_FAILED) {
		log_warn("payment not served", "order", op->order_id, "error",
		         rc != ORN_OK ? orn_strerror(rc) : reply->code);
		op_fail(op, 503,
		        "the payment could not be completed now; retry with the same Idempotency-Key");
		return;
	}
	if (reply->outcome == BUS_REJECTED) {
		const char *code = reply->code;
		if (strcmp(code, "invalid_payment_method") == 0) {
			json_t *problem = gw_problem_new(400, "the payment method is not usable");
			if (problem != NULL)
				gw_problem_add_error(
				        problem, "payment_method",
				        "must be a payment method id (pm_...) the provider issued");
			record_finish(op->api, op->record, NULL, 0, problem, false);
			free(op);
		} else if (strcmp(code, "not_found") == 0) {
			op_fail(op, 404, "no such order");
		} else if (strcmp(code, "wrong_state") == 0) {
			op_fail(op, 409, "the order is not awaiting payment");
		} else if (strcmp(code, "in_progress") == 0) {
			op_fail(op, 409,
			        "a payment of this order is under way; read the order again shortly");
		} else if (strcmp(code, "idempotency_conflict") == 0 ||
		           strcmp(code, "idempotency_mismatch") == 0 ||
		           strcmp(code, "idempotency_error") == 0) {
			op_fail(op, 422, "this Idempotency-Key was used for another request");
		} else if (strcmp(code, "amount_too_large") == 0) {
			op_fail(op, 422, "the order's total is above what a card payment can charge");
		} else if (strcmp(code, "limit") == 0) {
			op_fail(op, 409, "this order has reached its limit of payment attempts");
		} else if (strcmp(code, "invalid") == 0) {
			op_fail(op, 400, "the payment request is invalid");
		} else {
			log_warn("payment rejected with an unknown code", "order", op->order_id, "code",
			         code);
			op_fail(op, 409, "the payment was refused");
		}
		return;
	}
	/* accepted: confirmed or payment_failed, committed at reply->seq; or
	 * requires_action, the payment's commit at reply->seq (the payments
	 * read model then has the challenge's URL for the view) */
	op->requires_action = strcmp(reply->code, REQUIRES_ACTION) == 0;
	gw_api_wait_for(op->api, reply->seq, on_settled, op);
}

/* ---- POST /orders/{id}/payment ------------------------------------------------------ */

/* Defers r as one more waiter of rec; false after answering 500. */
static bool add_waiter(gw_request *r, pay_record *rec, unsigned deadline_ms)
{
	pay_waiter *w = calloc(1, sizeof *w);
	if (w == NULL) {
		gw_respond_error(r, 500, NULL);
		return false;
	}
	if ((w->async = gw_request_defer(r, deadline_ms)) == NULL) {
		free(w);
		return false;
	}
	w->next = rec->waiters;
	rec->waiters = w;
	return true;
}

/* A record for this request: found in the map (answered from it: returns
 * NULL with *handled), or a new one (in the map when key != NULL). NULL
 * without *handled on ENOMEM (answered 500). */
static pay_record *find_or_add_record(gw_request *r, gw_api_payments *p, const char *customer,
                                      const char *order, const char *key,
                                      const unsigned char hash[crypto_generichash_BYTES],
                                      unsigned deadline_ms, bool *handled)
{
	char rkey[RECORD_KEY_HEX] = "";
	*handled = false;
	if (key != NULL) {
		expire_records(p);
		record_key(p, customer, order, key, rkey);
		pay_record *rec = hmap_get(p->records, rkey);
		if (rec != NULL) {
			*handled = true;
			if (sodium_memcmp(rec->body_hash, hash, crypto_generichash_BYTES) != 0)
				gw_respond_error(r, 422, "this Idempotency-Key was used for another request");
			else if (rec->done)
				gw_respond(r, 200, "application/json", rec->answer, rec->answer_len);
			else
				add_waiter(r, rec, deadline_ms); /* a double click: the same answer */
			return NULL;
		}
	}
	pay_record *rec = calloc(1, sizeof *rec);
	if (rec == NULL) {
		gw_respond_error(r, 500, NULL);
		return NULL;
	}
	memcpy(rec->body_hash, hash, crypto_generichash_BYTES);
	if (key != NULL) {
		snprintf(rec->key, sizeof rec->key, "%s", rkey);
		if (hmap_put(p->records, rec->key, rec) != ORN_OK) {
			free(rec);
			gw_respond_error(r, 500, NULL);
			return NULL;
		}
	}
	return rec;
}

void gw_payment_pay(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const gw_claims *claims = &caller->claims;
	const char *id = NULL, *key = NULL;
	unsigned char hash[crypto_generichash_BYTES];
	char command_id[COMMAND_ID_MAX];
	json_t *body = NULL;
	proj_order *order = NULL;
	mp_writer *w = NULL;
	pay_op *op = NULL;
	gw_api_payments *p;
	bool handled;
	unsigned timeout_ms = api->payment_timeout_ms ? api->payment_timeout_ms : GW_API_PAYMENT_TIMEOUT_MS;
	unsigned deadline_ms = timeout_ms + GW_API_READ_YOUR_WRITES_MS + 1000;
	if (api->orders == NULL || api->bus == NULL) {
		gw_respond_error(r, 503, "payments are unavailable");
		return;
	}
	if ((p = payments_of(api)) == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	if ((id = gw_api_path_id(r, "id")) == NULL)
		return;
	if (!gw_api_idempotency_key(r, &key) || (body = read_body(r, p, hash)) == NULL)
		return;
	/* a key seen before answers from its record, before anything is read */
	pay_record *rec = find_or_add_record(r, p, claims->sub, id, key, hash, deadline_ms, &handled);
	if (rec == NULL)
		goto done;
	orn_rc rc = gw_api_read_own_order(api, id, claims->sub, &order);
	int status = 0;
	const char *detail = NULL;
	if (rc == ORN_ENOTFOUND) {
		status = 404;
		detail = "no such order";
	} else if (rc != ORN_OK) {
		status = rc == ORN_ENOMEM ? 500 : 503;
		detail = rc == ORN_ENOMEM ? NULL : "orders are unavailable";
	} else if (order_status_checkout_done(order->state.status) &&
	           (key == NULL || !order_status_payment_settled(order->state.status))) {
		/* No payment can follow. With a key, a paid or failed order goes to the
		 * service all the same: a repeat of the request that settled it is
		 * answered as it was (this gateway may have restarted since). Earlier
		 * statuses are the service's to judge too: the read model may be a
		 * moment behind a confirmation. */
		status = 409;
		detail = "the order is not awaiting payment";
	}
	if (status == 0 && (w = encode_pay(claims->sub, key, body)) == NULL) {
		status = 500;
		detail = NULL;
	}
	if (status == 0 && (op = calloc(1, sizeof *op)) == NULL) {
		status = 500;
		detail = NULL;
	}
	if (status != 0) {
		record_finish(api, rec, NULL, 0, NULL, false); /* nobody waits yet: just forgotten */
		gw_respond_error(r, status, detail);
		goto done;
	}
	op->api = api;
	op->record = rec;
	snprintf(op->order_id, sizeof op->order_id, "%s", id);
	if (!add_waiter(r, rec, deadline_ms)) {
		record_finish(api, rec, NULL, 0, NULL, false);
		free(op);
		goto done;
	}
	command_id_for(id, key, command_id);
	rc = gw_api_send_within(api, PAY_SERVICE, id, PAYMENT_CMD_PAY, w, command_id, claims->sub, timeout_ms,
	                        on_pay_replied, op);
	if (rc != ORN_OK) {
		log_warn("payment not sent", "order", id, "error", orn_strerror(rc));
		op_fail(op, 503, "payments are unavailable; try again");
	}
done:
	mp_writer_destroy(w);
	json_decref(body);
	free(order);
}

/* ---- POST /admin/orders/{id}/refund: a failed refund tried again (ADR 028 §3) ------------ */

typedef struct refund_op {
	gw_api *api;
	gw_async *async;
	char order_id[ORDER_ID_MAX];
} refund_op;

static void refund_settled(void *closure, orn_rc wait_rc)
{
	refund_op *op = closure;
	char *answer = NULL;
	size_t len = 0;
	(void)wait_rc;
	orn_rc rc = settled_view(op->api, op->order_id, &answer, &len);
	if (rc == ORN_OK)
		gw_async_complete_body(op->async, 200, "application/json", answer, len);
	else
		gw_async_complete_problem(op->async,
		                          gw_problem_new(rc == ORN_ENOMEM ? 500 : 503,
		                                         rc == ORN_ENOMEM ? NULL : "orders are unavailable"));
	free(answer);
	free(op);
}

static void refund_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	refund_op *op = closure;
	if (rc == ORN_OK && reply->outcome == BUS_ACCEPTED) {
		gw_api_wait_for(op->api, reply->seq, refund_settled, op);
		return;
	}
	if (rc == ORN_OK && reply->outcome == BUS_REJECTED && strcmp(reply->code, "not_found") == 0)
		gw_async_complete_problem(op->async, gw_problem_new(404, "no such order"));
	else if (rc == ORN_OK && reply->outcome == BUS_REJECTED)
		gw_async_complete_problem(op->async,
		                          gw_problem_new(409, "the order has no failed refund to try again"));
	else
		gw_async_complete_problem(
		        op->async, gw_problem_new(503, "the payment service did not answer; try again"));
	free(op);
}

void gw_payment_retry_refund(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const char *id;
	size_t len = 0;
	char command_id[40];
	proj_order *order = NULL;
	if (api->orders == NULL || api->bus == NULL) {
		gw_respond_error(r, 503, "payments are unavailable");
		return;
	}
	if ((id = gw_api_path_id(r, "id")) == NULL)
		return;
	gw_request_body(r, &len);
	if (len > 0) {
		gw_respond_error(r, 400, "this request takes no body");
		return;
	}
	orn_rc rc = (order = malloc(sizeof *order)) != NULL ? proj_orders_get(api->orders, id, order)
	                                                    : ORN_ENOMEM;
	free(order);
	if (rc != ORN_OK) {
		gw_respond_error(r,
		                 rc == ORN_ENOTFOUND || rc == ORN_EINVAL ? 404
		                 : rc == ORN_ENOMEM                      ? 500
		                                                         : 503,
		                 rc == ORN_ENOTFOUND || rc == ORN_EINVAL ? "no such order" : NULL);
		return;
	}
	mp_writer *w = gw_api_text_buffer(api);
	refund_op *op = calloc(1, sizeof *op);
	if (w == NULL || op == NULL) {
		free(op);
		gw_respond_error(r, 500, NULL);
		return;
	}
	mp_write_map(w, 1);
	mp_write_cstr(w, "actor");
	mp_write_cstr(w, caller->claims.sub);
	if ((op->async = gw_api_defer_encoded(r, mp_writer_status(w))) == NULL) {
		free(op);
		return;
	}
	op->api = api;
	snprintf(op->order_id, sizeof op->order_id, "%s", id);
	gw_api_new_id(command_id, sizeof command_id);
	rc = gw_api_send(api, PAY_SERVICE, id, "RetryRefund", w, command_id, caller->claims.sub,
	                 refund_replied, op);
	if (rc != ORN_OK) {
		gw_async_complete_problem(op->async,
		                          gw_problem_new(503, "payments are unavailable; try again"));
		free(op);
	}
}
