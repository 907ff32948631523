/* gw_api_payment.c — POST /api/v1/orders/{id}/payment: pays an order that
 * awaits payment with a card (ADR 009).
 *
 * The route checks the login, the owner (404 for anybody else's order, as
 * for one that does not exist), the Idempotency-Key header and the body
 * strictly: {card:{number, exp_month, exp_year, cvc, holder_name}}, each
 * present and of its type. Validating the card itself (Luhn, expiry, CVC
 * length) is the payment service's: it answers rejected invalid_card with
 * the field in the detail, which becomes 400 with errors:[{field, message}].
 * The request becomes the bus command Pay to the payment service ("pay"), id = the
 * order id, payload {customer_id, idempotency_key, card:{...}}; the reply
 * maps to 200 (the order, confirmed or payment_failed, after read-your-
 * writes), 400, 404, 409 (wrong_state, in_progress, limit: too many
 * attempts), 422 (idempotency_conflict: the provider saw the key with other
 * card details; amount_too_large: the total is above the provider's limit)
 * or 503 (failed, timeout, no payment service). The command may wait for
 * the provider, so it gets api->payment_timeout_ms instead of the usual
 * command timeout.
 *
 * Idempotency. With an Idempotency-Key the command id is "<order>:pay:" +
 * hex(SHA-256(key)), so a retried request is the same command, and the
 * payment service derives the provider's key from the same key: one charge.
 * The gateway also keeps a record per (customer, order, key), in memory:
 * - while the first request is in flight, requests with the same key and
 *   body wait for its outcome and get the same answer (a double click);
 * - a 200 is kept for PAYMENT_REPLAY_TTL_MS (at most PAYMENT_RECORDS_MAX
 *   records, the oldest dropped first) and replayed for the same key and
 *   body (a network retry), without asking the service again;
 * - the same key with another body is 422, as for POST /orders;
 * - any other answer is not kept: after a 503 (the provider or the payment
 *   service did not answer) the client retries with the same key, and the
 *   retry reaches the service, which reaches the provider with the same key.
 * Bodies are compared by a BLAKE2b-256 of their canonical JSON (sorted keys,
 * compact) keyed with a random per-process key: no card number can be
 * recovered from a record by guessing. A gateway restarted, or another
 * gateway instance, has no records: the payment service and the provider's
 * own idempotency still make the retry one charge; it may then answer 409
 * (the order is no longer awaiting payment) instead of the first 200.
 *
 * Card data. The body is never logged; the raw body, the canonical copy, the
 * parsed strings and the encoded command are wiped (sodium_memzero) as soon
 * as they are no longer needed. Error messages are fixed strings: no input
 * is echoed.
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

#define PAYMENT_AGGREGATE      "pay" /* the payment service (ADR 009); "payment" is the aggregate */
#define PAYMENT_CMD_PAY        "Pay"
#define PAYMENT_BODY_MAX       4096
#define PAYMENT_RECORDS_MAX    10000
#define PAYMENT_REPLAY_TTL_MS  (24LL * 3600 * 1000)
#define PAYMENT_WRITER_RESERVE 2048 /* the command fits without a realloc (which would leave a copy) */
#define RECORD_KEY_HEX         (2 * crypto_generichash_BYTES + 1)
#define COMMAND_ID_MAX         (ORDER_ID_MAX + 5 + 2 * crypto_hash_sha256_BYTES + 1)

static const gw_field card_schema[] = {
        {.name = "number", .type = GW_STRING, .required = true, .min = 1, .max = 64},
        {.name = "exp_month", .type = GW_INT, .required = true, .min = -9999, .max = 9999},
        {.name = "exp_year", .type = GW_INT, .required = true, .min = -9999, .max = 9999},
        {.name = "cvc", .type = GW_STRING, .required = true, .min = 1, .max = 16},
        {.name = "holder_name", .type = GW_STRING, .required = true, .min = 1, .max = 200},
        {.name = NULL},
};

static const gw_field payment_schema[] = {
        {.name = "card", .type = GW_OBJECT, .required = true, .fields = card_schema},
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

/* Overwrites the strings of the card in body (jansson owns them; they are
 * only written here, just before the object is freed). */
static void wipe_card(json_t *body)
{
	json_t *card = json_object_get(body, "card");
	const char *name;
	json_t *value;
	json_object_foreach(card, name, value)
	{
		if (json_is_string(value))
			sodium_memzero((char *)json_string_value(value), json_string_length(value));
	}
}

/* Whether s holds a run of 12 or more digits (a card number, maybe). */
static bool has_long_digit_run(const char *s)
{
	size_t run = 0;
	for (; *s != '\0'; s++) {
		run = *s >= '0' && *s <= '9' ? run + 1 : 0;
		if (run >= 12)
			return true;
	}
	return false;
}

/* The validator names unknown members in its errors: a card number sent as
 * a member name would come back in the answer. Such names become "card". */
static void redact_fields(json_t *problem)
{
	size_t i;
	json_t *error;
	json_array_foreach(json_object_get(problem, "errors"), i, error)
	{
		const char *field = json_string_value(json_object_get(error, "field"));
		if (field != NULL && has_long_digit_run(field))
			json_object_set_new(error, "field", json_string("card"));
	}
}

/* Parses and checks the body against payment_schema, hashes its canonical
 * form into hash, and wipes the raw body. Returns the object (the caller
 * wipes it with wipe_card and frees it), or NULL after answering (400 with
 * the errors, 413, 415, 500). */
static json_t *read_body(gw_request *r, const gw_api_payments *p,
                         unsigned char hash[crypto_generichash_BYTES])
{
	size_t len;
	unsigned char *raw = (unsigned char *)gw_request_body(r, &len);
	json_t *body = NULL, *problem = NULL;
	int status = 0;
	const char *detail = NULL;
	if (len > PAYMENT_BODY_MAX) {
		status = 413;
		detail = "the request body is too large";
	} else if (!is_json(gw_request_header(r, "Content-Type"))) {
		status = 415;
		detail = "the request body must be application/json";
	} else {
		switch (gw_validate_json(raw, len, PAYMENT_BODY_MAX, payment_schema, &body, &problem)) {
		case ORN_OK:
			break;
		case ORN_EINVAL:
			break;
		default:
			status = 500;
			break;
		}
	}
	if (len > 0)
		sodium_memzero(raw, len); /* the evbuffer's copy: nothing reads it after this */
	if (body != NULL) {
		char *canonical = json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT);
		if (canonical == NULL) {
			wipe_card(body);
			json_decref(body);
			body = NULL;
			status = 500;
		} else {
			size_t n = strlen(canonical);
			crypto_generichash(hash, crypto_generichash_BYTES, (const unsigned char *)canonical,
			                   n, p->hash_key, sizeof p->hash_key);
			sodium_memzero(canonical, n);
			free(canonical);
		}
	}
	if (body != NULL)
		return body;
	if (problem != NULL) {
		redact_fields(problem);
		gw_respond_problem(r, problem);
	} else
		gw_respond_error(r, status ? status : 500, detail);
	return NULL;
}

/* The Pay payload into a fresh writer (reserved first, so it never
 * reallocates with card data in it); NULL on ENOMEM. The caller wipes and
 * destroys it with writer_wipe. */
static mp_writer *encode_pay(const char *customer, const char *key, const json_t *body)
{
	static const unsigned char zeros[PAYMENT_WRITER_RESERVE];
	const json_t *card = gw_json_object(body, "card");
	mp_writer *w = mp_writer_create();
	if (w == NULL)
		return NULL;
	mp_write_raw(w, zeros, sizeof zeros);
	mp_writer_reset(w);
	mp_write_map(w, 3);
	mp_write_cstr(w, "customer_id");
	mp_write_cstr(w, customer);
	mp_write_cstr(w, "idempotency_key");
	mp_write_cstr(w, key != NULL ? key : "");
	mp_write_cstr(w, "card");
	mp_write_map(w, 5);
	mp_write_cstr(w, "number");
	mp_write_cstr(w, gw_json_string(card, "number", ""));
	mp_write_cstr(w, "exp_month");
	mp_write_int(w, gw_json_int(card, "exp_month", 0));
	mp_write_cstr(w, "exp_year");
	mp_write_int(w, gw_json_int(card, "exp_year", 0));
	mp_write_cstr(w, "cvc");
	mp_write_cstr(w, gw_json_string(card, "cvc", ""));
	mp_write_cstr(w, "holder_name");
	mp_write_cstr(w, gw_json_string(card, "holder_name", ""));
	if (mp_writer_status(w) != ORN_OK) {
		sodium_memzero((void *)mp_writer_data(w), mp_writer_size(w));
		mp_writer_destroy(w);
		return NULL;
	}
	return w;
}

static void writer_wipe(mp_writer *w)
{
	if (w == NULL)
		return;
	sodium_memzero((void *)mp_writer_data(w), mp_writer_size(w));
	mp_writer_destroy(w);
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
} pay_op;

/* Answers every request waiting on rec with answer (status 200, JSON text
 * of len bytes, taken: a heap string) or a copy of problem (stolen), then
 * keeps rec (a 200 with a key) or frees it. */
static void record_finish(gw_api *api, pay_record *rec, char *answer, size_t len, json_t *problem)
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
	bool keep = answer != NULL && rec->key[0] != '\0' && p != NULL;
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
	record_finish(op->api, op->record, NULL, 0, gw_problem_new(status, detail));
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
	if (rc == ORN_OK && (!gw_view_order(w, order_id, &order->state, ORDER_HISTORY_MAX) ||
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
	record_finish(op->api, op->record, answer, len, NULL);
	free(op);
}

/* The message for an invalid card field (fixed strings: no input echoed). */
static const char *card_field_message(const char *field)
{
	static const struct {
		const char *field, *message;
	} table[] = {
	        {"number", "is not a valid card number"},
	        {"exp_month", "must be a month from 1 to 12, not in the past"},
	        {"exp_year", "the card has expired or the year is invalid"},
	        {"cvc", "must be 3 digits (4 for American Express)"},
	        {"holder_name", "must be 1 to 100 characters of text"},
	};
	for (size_t i = 0; i < ORN_ARRAY_LEN(table); i++)
		if (strcmp(field, table[i].field) == 0)
			return table[i].message;
	return NULL;
}

/* 400 for rejected invalid_card: detail names the field ("number",
 * "card.number", possibly followed by ':' or a space and more text). */
static json_t *invalid_card_problem(const char *detail)
{
	char field[32] = "";
	const char *name = detail;
	if (strncmp(name, "card.", 5) == 0)
		name += 5;
	size_t len = strcspn(name, ": ,;");
	if (len < sizeof field) {
		memcpy(field, name, len);
		field[len] = '\0';
	}
	const char *message = card_field_message(field);
	char path[48];
	snprintf(path, sizeof path, "card.%s", message != NULL ? field : "");
	json_t *problem = gw_problem_new(400, "the card was refused before any charge");
	gw_problem_add_error(problem, message != NULL ? path : "card",
	                     message != NULL ? message : "is not a valid card");
	return problem;
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
		if (strcmp(code, "invalid_card") == 0) {
			record_finish(op->api, op->record, NULL, 0, invalid_card_problem(reply->detail));
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
	/* accepted: confirmed or payment_failed, committed at reply->seq */
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
		record_finish(api, rec, NULL, 0, NULL); /* nobody waits yet: just forgotten */
		gw_respond_error(r, status, detail);
		goto done;
	}
	op->api = api;
	op->record = rec;
	snprintf(op->order_id, sizeof op->order_id, "%s", id);
	if (!add_waiter(r, rec, deadline_ms)) {
		record_finish(api, rec, NULL, 0, NULL);
		free(op);
		goto done;
	}
	command_id_for(id, key, command_id);
	rc = gw_api_send_within(api, PAYMENT_AGGREGATE, id, PAYMENT_CMD_PAY, w, command_id, claims->sub,
	                        timeout_ms, on_pay_replied, op);
	if (rc != ORN_OK) {
		log_warn("payment not sent", "order", id, "error", orn_strerror(rc));
		op_fail(op, 503, "payments are unavailable; try again");
	}
done:
	writer_wipe(w);
	if (body != NULL) {
		wipe_card(body);
		json_decref(body);
	}
	free(order);
}
