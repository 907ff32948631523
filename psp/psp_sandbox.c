/* psp_sandbox.c — the card payment provider sandbox (see psp_sandbox.h):
 * evhttp routes, charges and refunds, idempotency records, the silent
 * card's held connections and the JSON-lines state file.
 *
 * Held connections and libevent 2.1's ownership of an unanswered request:
 * when the client goes away, evhttp either detaches the request from the
 * connection (EOF, timeouts: the request is then ours to free) or frees it
 * with the connection; both call the connection's close callback first,
 * which tells them apart by whether the request still has a connection
 * (the same rule as gateway/gw_http.c's streams). When the hold ends with
 * the client still there, the sandbox frees the connection itself, which
 * closes the socket without an answer and frees the request. */
#include "psp_sandbox.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>

#include "hashmap.h"
#include "log.h"
#include "psp_form.h"

#define MAX_BODY         (16 * 1024)
#define MAX_HEADERS      (16 * 1024)
#define IO_TIMEOUT_S     30
#define ID_CHARS         24
#define ID_MAX           32
#define REQUEST_ID_CHARS 14
#define HOLD_DEFAULT_MS  120000
#define SCOPE_CHARGES    "POST /v1/charges"
#define SCOPE_REFUNDS    "POST /v1/refunds"
#define FORM_TYPE        "application/x-www-form-urlencoded"

typedef struct charge {
	char id[ID_MAX];
	int64_t amount;
	char currency[4];
	bool succeeded, refunded;
	char *order_id; /* NULL: no metadata */
	char brand[16], last4[5];
	int exp_month, exp_year;
	int64_t created; /* Unix seconds */
	char failure_code[32];
} charge;

typedef struct refund {
	char id[ID_MAX];
	char charge[ID_MAX];
	int64_t amount;
	char currency[4];
	int64_t created;
} refund;

typedef struct held held;

/* The stored first response of an Idempotency-Key. */
typedef struct idem_record {
	uint8_t digest[PSP_DIGEST_BYTES];
	int status;
	char *body;
	held *held; /* non-NULL while its silent request is held: 409 */
} idem_record;

/* A silent charge's connection, held without an answer. */
struct held {
	psp_sandbox *sandbox;
	struct evhttp_request *req; /* NULL once the client went away */
	struct event *timer;
	idem_record *record; /* NULL without an Idempotency-Key */
	held *prev, *next;
};

struct psp_sandbox {
	struct event_base *base;
	struct evhttp *http;
	struct event *stop_event;
	pthread_t thread;
	bool running;
	uint16_t port;
	char *api_key;
	unsigned hold_ms;
	int state_fd;     /* -1: state in memory only */
	charge **charges; /* in creation order */
	size_t charge_count, charge_cap;
	hmap *charges_by_id; /* id -> charge */
	hmap *refunds;       /* id -> refund */
	hmap *idempotency;   /* Idempotency-Key -> idem_record */
	held *held;
};

/* The answer of a POST before idempotency and holding are applied. */
typedef struct result {
	int status;
	char *body;  /* malloc'd JSON text; NULL: out of memory */
	bool store;  /* an object was created: keep it for replays */
	bool silent; /* hold the connection instead of answering */
} result;

void psp_sandbox_options_init(psp_sandbox_options *o)
{
	memset(o, 0, sizeof *o);
	o->listen = "127.0.0.1:0";
	o->silent_hold_ms = HOLD_DEFAULT_MS;
}

/* ---- helpers -------------------------------------------------------------- */

static void random_chars(char *out, size_t n)
{
	static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	for (size_t i = 0; i < n; i++)
		out[i] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
	out[n] = '\0';
}

static void make_id(char out[ID_MAX], const char *prefix)
{
	size_t n = strlen(prefix);
	memcpy(out, prefix, n);
	random_chars(out + n, ID_CHARS);
}

static const char *status_title(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 402:
		return "Payment Required";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 415:
		return "Unsupported Media Type";
	default:
		return "Internal Server Error";
	}
}

static char *dump(json_t *j)
{
	char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return text;
}

/* {"error":{"type":…,"code":…,"param":…,"message":…}}, NULL fields left out. */
static json_t *error_json(const char *type, const char *code, const char *param, const char *message)
{
	json_t *e = json_object(), *root = json_object();
	if (e == NULL || root == NULL) {
		json_decref(e);
		json_decref(root);
		return NULL;
	}
	json_object_set_new(e, "type", json_string(type));
	if (code != NULL)
		json_object_set_new(e, "code", json_string(code));
	if (param != NULL)
		json_object_set_new(e, "param", json_string(param));
	if (message != NULL)
		json_object_set_new(e, "message", json_string(message));
	json_object_set_new(root, "error", e);
	return root;
}

static void respond(struct evhttp_request *req, int status, const char *body, bool replayed)
{
	static const char failure[] = "{\"error\":{\"type\":\"api_error\",\"message\":\"Out of memory.\"}}";
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	char request_id[REQUEST_ID_CHARS + 8] = "req_";
	random_chars(request_id + 4, REQUEST_ID_CHARS);
	if (body == NULL) {
		status = 500;
		body = failure;
	}
	evhttp_add_header(headers, "Content-Type", "application/json");
	evhttp_add_header(headers, "Request-Id", request_id);
	evhttp_add_header(headers, "Cache-Control", "no-store");
	if (replayed)
		evhttp_add_header(headers, "Idempotent-Replayed", "true");
	evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	evhttp_send_reply(req, status, status_title(status), NULL);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	char code[8];
	snprintf(code, sizeof code, "%d", status);
	log_debug("psp request", "path", uri && evhttp_uri_get_path(uri) ? evhttp_uri_get_path(uri) : "",
	          "status", code, "request_id", request_id, "replayed", replayed ? "true" : "false");
}

static void respond_json(struct evhttp_request *req, int status, json_t *body)
{
	char *text = dump(body);
	respond(req, status, text, false);
	free(text);
}

static void respond_error(struct evhttp_request *req, int status, const char *type, const char *code,
                          const char *param, const char *message)
{
	respond_json(req, status, error_json(type, code, param, message));
}

static void invalid(struct evhttp_request *req, int status, const char *code, const char *param,
                    const char *message)
{
	respond_error(req, status, "invalid_request_error", code, param, message);
}

/* ---- charges and refunds -------------------------------------------------- */

static json_t *charge_json(const charge *c)
{
	json_t *metadata = json_object();
	if (metadata != NULL && c->order_id != NULL)
		json_object_set_new(metadata, "order_id", json_string(c->order_id));
	json_t *j = json_pack(
	        "{s:s, s:s, s:I, s:s, s:s, s:b, s:b, s:o, s:{s:s, s:{s:s, s:s, s:i, s:i}}, s:I}", "id", c->id,
	        "object", "charge", "amount", (json_int_t)c->amount, "currency", c->currency, "status",
	        c->succeeded ? "succeeded" : "failed", "paid", (int)c->succeeded, "refunded",
	        (int)c->refunded, "metadata", metadata, "payment_method_details", "type", "card", "card",
	        "brand", c->brand, "last4", c->last4, "exp_month", c->exp_month, "exp_year", c->exp_year,
	        "created", (json_int_t)c->created);
	if (j != NULL && !c->succeeded)
		json_object_set_new(j, "failure_code", json_string(c->failure_code));
	return j;
}

static json_t *refund_json(const refund *r)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:I}", "id", r->id, "object", "refund", "charge",
	                 r->charge, "amount", (json_int_t)r->amount, "currency", r->currency, "status",
	                 "succeeded", "created", (json_int_t)r->created);
}

static void charge_free(charge *c)
{
	if (c != NULL)
		free(c->order_id);
	free(c);
}

/* Takes c into the sandbox (or frees it on failure). */
static orn_rc charge_add(psp_sandbox *s, charge *c)
{
	if (hmap_get(s->charges_by_id, c->id) != NULL) {
		charge_free(c);
		return ORN_EEXISTS;
	}
	if (s->charge_count == s->charge_cap) {
		size_t cap = s->charge_cap ? 2 * s->charge_cap : 64;
		charge **grown = realloc(s->charges, cap * sizeof *grown);
		if (grown == NULL) {
			charge_free(c);
			return ORN_ENOMEM;
		}
		s->charges = grown;
		s->charge_cap = cap;
	}
	if (hmap_put(s->charges_by_id, c->id, c) != ORN_OK) {
		charge_free(c);
		return ORN_ENOMEM;
	}
	s->charges[s->charge_count++] = c;
	return ORN_OK;
}

/* Appends one JSON line (taken) to the state file, if there is one. */
static void persist(psp_sandbox *s, json_t *line)
{
	if (s->state_fd < 0) {
		json_decref(line);
		return;
	}
	char *text = dump(line);
	size_t len = text != NULL ? strlen(text) : 0;
	char *buf = text != NULL ? realloc(text, len + 2) : NULL;
	if (buf == NULL) {
		free(text);
		log_error("cannot append to the PSP state file", "error", "out of memory");
		return;
	}
	buf[len++] = '\n';
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(s->state_fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_error("cannot append to the PSP state file", "error", strerror(errno));
			break;
		}
		done += (size_t)n;
	}
	free(buf);
}

static result make_result(int status, json_t *body, bool store)
{
	return (result){.status = status, .body = dump(body), .store = store};
}

static result param_result(const char *code, const char *param, const char *message)
{
	return make_result(400, error_json("invalid_request_error", code, param, message), false);
}

static const char *card_message(psp_outcome o)
{
	switch (o) {
	case PSP_DECLINE_FUNDS:
		return "Your card has insufficient funds.";
	case PSP_EXPIRED_CARD:
		return "Your card has expired.";
	case PSP_INCORRECT_CVC:
		return "Your card's security code is incorrect.";
	case PSP_INCORRECT_NUMBER:
		return "Your card number is incorrect.";
	default:
		return "Your card was declined.";
	}
}

static result create_charge(psp_sandbox *s, const psp_form *f)
{
	psp_charge_request cr;
	psp_param_error err;
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	if (psp_charge_check(f, tm.tm_year + 1900, tm.tm_mon + 1, &cr, &err) != ORN_OK)
		return param_result(err.code, err.param, err.message);
	charge *c = calloc(1, sizeof *c);
	if (c == NULL || (cr.order_id != NULL && (c->order_id = strdup(cr.order_id)) == NULL)) {
		charge_free(c);
		return (result){.status = 500};
	}
	make_id(c->id, "ch_");
	c->amount = cr.amount;
	memcpy(c->currency, cr.currency, sizeof c->currency);
	c->succeeded = cr.outcome == PSP_APPROVE || cr.outcome == PSP_SILENT;
	snprintf(c->brand, sizeof c->brand, "%s", cr.brand);
	memcpy(c->last4, cr.last4, sizeof c->last4);
	c->exp_month = cr.exp_month;
	c->exp_year = cr.exp_year;
	c->created = (int64_t)now;
	if (!c->succeeded)
		snprintf(c->failure_code, sizeof c->failure_code, "%s", psp_outcome_code(cr.outcome));
	if (charge_add(s, c) != ORN_OK)
		return (result){.status = 500};
	persist(s, json_pack("{s:s, s:o}", "type", "charge", "charge", charge_json(c)));
	char amount[24];
	snprintf(amount, sizeof amount, "%lld", (long long)c->amount);
	log_info("psp charge", "charge", c->id, "status", c->succeeded ? "succeeded" : "failed", "amount",
	         amount, "currency", c->currency, "code", c->succeeded ? "" : c->failure_code, "silent",
	         cr.outcome == PSP_SILENT ? "true" : "false");
	if (c->succeeded) {
		result r = make_result(200, charge_json(c), true);
		r.silent = cr.outcome == PSP_SILENT;
		return r;
	}
	json_t *body = error_json("card_error", psp_outcome_code(cr.outcome), NULL, NULL);
	json_t *e = body != NULL ? json_object_get(body, "error") : NULL;
	if (e != NULL) {
		json_object_set_new(e, "decline_code", json_string(psp_outcome_decline_code(cr.outcome)));
		json_object_set_new(e, "message", json_string(card_message(cr.outcome)));
		json_object_set_new(e, "charge", json_string(c->id));
	}
	return make_result(402, body, true);
}

static orn_rc refund_add(psp_sandbox *s, refund *r)
{
	if (hmap_get(s->refunds, r->id) != NULL || hmap_put(s->refunds, r->id, r) != ORN_OK) {
		free(r);
		return ORN_EEXISTS;
	}
	return ORN_OK;
}

static result create_refund(psp_sandbox *s, const psp_form *f)
{
	static const char *const allowed[] = {"charge", NULL};
	char message[160];
	const char *unknown = psp_form_unknown(f, allowed);
	if (unknown != NULL) {
		snprintf(message, sizeof message, "Received unknown parameter: %.100s", unknown);
		return param_result("parameter_unknown", unknown, message);
	}
	const char *id = psp_form_get(f, "charge");
	if (id == NULL)
		return param_result("parameter_missing", "charge", "Missing required param: charge.");
	charge *c = hmap_get(s->charges_by_id, id);
	if (c == NULL)
		return make_result(
		        404,
		        error_json("invalid_request_error", "resource_missing", "charge", "No such charge."),
		        false);
	if (!c->succeeded)
		return param_result("parameter_invalid", "charge",
		                    "This charge failed: there is nothing to refund.");
	if (c->refunded) {
		snprintf(message, sizeof message, "Charge %s has already been refunded.", c->id);
		return make_result(
		        400, error_json("invalid_request_error", "charge_already_refunded", NULL, message),
		        false);
	}
	refund *r = calloc(1, sizeof *r);
	if (r == NULL)
		return (result){.status = 500};
	make_id(r->id, "re_");
	snprintf(r->charge, sizeof r->charge, "%s", c->id);
	r->amount = c->amount;
	memcpy(r->currency, c->currency, sizeof r->currency);
	r->created = (int64_t)time(NULL);
	if (refund_add(s, r) != ORN_OK)
		return (result){.status = 500};
	c->refunded = true;
	persist(s, json_pack("{s:s, s:o}", "type", "refund", "refund", refund_json(r)));
	log_info("psp refund", "refund", r->id, "charge", c->id);
	return make_result(200, refund_json(r), true);
}

/* ---- idempotency records and held connections ---------------------------- */

static void record_free(idem_record *r)
{
	if (r != NULL)
		free(r->body);
	free(r);
}

static idem_record *record_add(psp_sandbox *s, const char *key, const uint8_t digest[PSP_DIGEST_BYTES],
                               int status, const char *body)
{
	idem_record *r = calloc(1, sizeof *r);
	if (r == NULL || (r->body = strdup(body)) == NULL || hmap_put(s->idempotency, key, r) != ORN_OK) {
		record_free(r);
		return NULL;
	}
	memcpy(r->digest, digest, PSP_DIGEST_BYTES);
	r->status = status;
	return r;
}

static void persist_record(psp_sandbox *s, const char *key, const idem_record *r)
{
	char hex[2 * PSP_DIGEST_BYTES + 1];
	sodium_bin2hex(hex, sizeof hex, r->digest, PSP_DIGEST_BYTES);
	persist(s, json_pack("{s:s, s:s, s:s, s:i, s:s}", "type", "idempotency", "key", key, "digest", hex,
	                     "status", r->status, "body", r->body));
}

/* The client went away: see the file comment for who frees the request. */
static void held_connection_closed(struct evhttp_connection *evcon, void *arg)
{
	held *h = arg;
	(void)evcon;
	log_debug("psp held connection closed by the client");
	if (h->req != NULL && evhttp_request_get_connection(h->req) == NULL)
		evhttp_request_free(h->req);
	h->req = NULL;
}

/* Ends a hold: closes the connection without an answer if the client is
 * still there; the key's stored 200 becomes replayable. */
static void hold_end(held *h)
{
	psp_sandbox *s = h->sandbox;
	if (h->req != NULL) {
		struct evhttp_connection *evcon = evhttp_request_get_connection(h->req);
		if (evcon != NULL) {
			evhttp_connection_set_closecb(evcon, NULL, NULL);
			evhttp_connection_free(evcon); /* frees the request too */
		} else {
			evhttp_request_free(h->req);
		}
	}
	if (h->record != NULL)
		h->record->held = NULL;
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		s->held = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	if (h->timer != NULL)
		event_free(h->timer);
	free(h);
}

static void hold_expired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	log_info("psp silent hold ended");
	hold_end(arg);
}

/* Holds req (never answered) for the sandbox's hold time. */
static void hold(psp_sandbox *s, struct evhttp_request *req, idem_record *record)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct timeval tv = {.tv_sec = s->hold_ms / 1000, .tv_usec = (s->hold_ms % 1000) * 1000};
	held *h = calloc(1, sizeof *h);
	if (h == NULL || evcon == NULL || (h->timer = evtimer_new(s->base, hold_expired, h)) == NULL ||
	    evtimer_add(h->timer, &tv) != 0) {
		/* Out of memory: close at once, still without an answer. */
		if (h != NULL && h->timer != NULL)
			event_free(h->timer);
		free(h);
		if (evcon != NULL)
			evhttp_connection_free(evcon);
		return;
	}
	h->sandbox = s;
	h->req = req;
	h->record = record;
	if (record != NULL)
		record->held = h;
	h->next = s->held;
	if (s->held != NULL)
		s->held->prev = h;
	s->held = h;
	/* The hold, not evhttp's I/O timeout, decides when the connection ends. */
	bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), NULL, NULL);
	evhttp_connection_set_closecb(evcon, held_connection_closed, h);
}

/* ---- requests ------------------------------------------------------------- */

static bool is_form_type(const char *value)
{
	size_t n = sizeof FORM_TYPE - 1;
	if (strncasecmp(value, FORM_TYPE, n) != 0)
		return false;
	value += n;
	while (*value == ' ')
		value++;
	return *value == '\0' || *value == ';';
}

/* Wipes the request body (it may hold a card number) and drains it. */
static void wipe_body(struct evhttp_request *req)
{
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(body);
	unsigned char *raw = len > 0 ? evbuffer_pullup(body, -1) : NULL;
	if (raw != NULL)
		sodium_memzero(raw, len);
	evbuffer_drain(body, len);
}

static void handle_post(psp_sandbox *s, struct evhttp_request *req, bool charges)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *key = evhttp_find_header(in, "Idempotency-Key");
	const char *type = evhttp_find_header(in, "Content-Type");
	struct evbuffer *input = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(input);
	uint8_t digest[PSP_DIGEST_BYTES] = {0};
	char bad[64], message[160];
	psp_form form;
	memset(&form, 0, sizeof form);
	if (len > MAX_BODY) {
		wipe_body(req);
		invalid(req, 413, NULL, NULL, "The request body is larger than 16 KiB.");
		return;
	}
	if (key != NULL && !psp_idempotency_key_valid(key)) {
		wipe_body(req);
		invalid(req, 400, "parameter_invalid", "Idempotency-Key",
		        "Idempotency-Key must be 1 to 255 printable ASCII characters.");
		return;
	}
	if (type != NULL && !is_form_type(type)) {
		wipe_body(req);
		invalid(req, 415, NULL, NULL, "The request body must be application/x-www-form-urlencoded.");
		return;
	}
	unsigned char *raw = len > 0 ? evbuffer_pullup(input, -1) : NULL;
	orn_rc rc = len > 0 && raw == NULL
	                    ? ORN_ENOMEM
	                    : psp_form_parse(len > 0 ? (const char *)raw : "", len, &form, bad, sizeof bad);
	wipe_body(req);
	if (rc == ORN_EEXISTS) {
		snprintf(message, sizeof message, "Received the parameter %.100s more than once.", bad);
		invalid(req, 400, "parameter_invalid", bad, message);
		return;
	}
	if (rc == ORN_ETOOBIG) {
		invalid(req, 400, "parameter_invalid", NULL, "Too many parameters.");
		return;
	}
	if (rc == ORN_ENOMEM) {
		respond(req, 500, NULL, false);
		return;
	}
	if (rc != ORN_OK) {
		invalid(req, 400, "parameter_invalid", NULL,
		        "The request body is not valid application/x-www-form-urlencoded UTF-8.");
		return;
	}
	if (key != NULL) {
		psp_form_digest(&form, s->api_key, charges ? SCOPE_CHARGES : SCOPE_REFUNDS, digest);
		idem_record *r = hmap_get(s->idempotency, key);
		if (r != NULL) {
			if (r->held != NULL)
				respond_error(req, 409, "idempotency_error", "idempotency_key_in_use", NULL,
				              "There is currently another in-progress request using this "
				              "Idempotency-Key. Retry later.");
			else if (sodium_memcmp(r->digest, digest, PSP_DIGEST_BYTES) != 0)
				respond_error(req, 400, "idempotency_error", NULL, NULL,
				              "Keys for idempotent requests can only be used with the same "
				              "parameters they were first used with.");
			else
				respond(req, r->status, r->body, true);
			goto done;
		}
	}
	result res = charges ? create_charge(s, &form) : create_refund(s, &form);
	idem_record *record = NULL;
	if (res.body != NULL && res.store && key != NULL) {
		record = record_add(s, key, digest, res.status, res.body);
		if (record != NULL)
			persist_record(s, key, record);
		else
			log_error("cannot store an idempotency record", "error", "out of memory");
	}
	if (res.silent)
		hold(s, req, record);
	else
		respond(req, res.status, res.body, false);
	free(res.body);
done:
	psp_form_dispose(&form);
}

static void list_charges(psp_sandbox *s, struct evhttp_request *req, const char *query)
{
	static const char *const allowed[] = {"metadata[order_id]", NULL};
	char bad[64], message[160];
	psp_form q;
	orn_rc rc = psp_form_parse(query != NULL ? query : "", query != NULL ? strlen(query) : 0, &q, bad,
	                           sizeof bad);
	if (rc != ORN_OK) {
		invalid(req, 400, "parameter_invalid", rc == ORN_EEXISTS ? bad : NULL,
		        "Invalid query string.");
		return;
	}
	const char *unknown = psp_form_unknown(&q, allowed);
	if (unknown != NULL) {
		snprintf(message, sizeof message, "Received unknown parameter: %.100s", unknown);
		invalid(req, 400, "parameter_unknown", unknown, message);
		psp_form_dispose(&q);
		return;
	}
	const char *order_id = psp_form_get(&q, "metadata[order_id]");
	json_t *data = json_array();
	for (size_t i = s->charge_count; i > 0 && data != NULL; i--) {
		const charge *c = s->charges[i - 1];
		if (order_id == NULL || (c->order_id != NULL && strcmp(c->order_id, order_id) == 0))
			json_array_append_new(data, charge_json(c));
	}
	psp_form_dispose(&q);
	respond_json(req, 200,
	             json_pack("{s:s, s:o, s:b, s:s}", "object", "list", "data", data, "has_more", 0, "url",
	                       "/v1/charges"));
}

static bool authorized(const psp_sandbox *s, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	size_t n = strlen(h), m = strlen(s->api_key);
	return n == m && sodium_memcmp(h, s->api_key, n) == 0;
}

static void method_not_allowed(struct evhttp_request *req, const char *allow)
{
	wipe_body(req);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
	invalid(req, 405, NULL, NULL, "This method is not allowed on this URL.");
}

static void on_request(struct evhttp_request *req, void *arg)
{
	psp_sandbox *s = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	static const char item_prefix[] = "/v1/charges/";
	if (path == NULL || path[0] == '\0')
		path = "/";
	if (!authorized(s, req)) {
		wipe_body(req);
		invalid(req, 401, NULL, NULL,
		        evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization") == NULL
		                ? "You did not provide an API key: use Authorization: Bearer <key>."
		                : "Invalid API key provided.");
		return;
	}
	if (strcmp(path, "/v1/charges") == 0) {
		if (cmd == EVHTTP_REQ_POST)
			handle_post(s, req, true);
		else if (cmd == EVHTTP_REQ_GET)
			list_charges(s, req, evhttp_uri_get_query(uri));
		else
			method_not_allowed(req, "GET, POST");
	} else if (strcmp(path, "/v1/refunds") == 0) {
		if (cmd == EVHTTP_REQ_POST)
			handle_post(s, req, false);
		else
			method_not_allowed(req, "POST");
	} else if (strncmp(path, item_prefix, sizeof item_prefix - 1) == 0 &&
	           path[sizeof item_prefix - 1] != '\0' &&
	           strchr(path + sizeof item_prefix - 1, '/') == NULL) {
		const charge *c = hmap_get(s->charges_by_id, path + sizeof item_prefix - 1);
		if (cmd != EVHTTP_REQ_GET)
			method_not_allowed(req, "GET");
		else if (c == NULL)
			invalid(req, 404, "resource_missing", "id", "No such charge.");
		else
			respond_json(req, 200, charge_json(c));
	} else {
		wipe_body(req);
		invalid(req, 404, NULL, NULL, "Unrecognized request URL.");
	}
}

/* ---- the state file ------------------------------------------------------- */

static orn_rc load_charge(psp_sandbox *s, json_t *j)
{
	const char *id, *currency, *status, *brand, *last4, *order_id = NULL, *failure = NULL;
	json_int_t amount, created;
	int refunded, exp_month, exp_year;
	if (json_unpack(j, "{s:s, s:I, s:s, s:s, s:b, s:{s?s}, s:{s:{s:s, s:s, s:i, s:i}}, s:I, s?s}", "id",
	                &id, "amount", &amount, "currency", &currency, "status", &status, "refunded",
	                &refunded, "metadata", "order_id", &order_id, "payment_method_details", "card",
	                "brand", &brand, "last4", &last4, "exp_month", &exp_month, "exp_year", &exp_year,
	                "created", &created, "failure_code", &failure) != 0 ||
	    strlen(id) >= ID_MAX)
		return ORN_EDECODE;
	charge *c = calloc(1, sizeof *c);
	if (c == NULL || (order_id != NULL && (c->order_id = strdup(order_id)) == NULL)) {
		charge_free(c);
		return ORN_ENOMEM;
	}
	snprintf(c->id, sizeof c->id, "%s", id);
	c->amount = amount;
	snprintf(c->currency, sizeof c->currency, "%s", currency);
	c->succeeded = strcmp(status, "succeeded") == 0;
	c->refunded = refunded != 0;
	snprintf(c->brand, sizeof c->brand, "%s", brand);
	snprintf(c->last4, sizeof c->last4, "%s", last4);
	c->exp_month = exp_month;
	c->exp_year = exp_year;
	c->created = created;
	snprintf(c->failure_code, sizeof c->failure_code, "%s", failure != NULL ? failure : "");
	return charge_add(s, c);
}

static orn_rc load_refund(psp_sandbox *s, json_t *j)
{
	const char *id, *charge_id, *currency;
	json_int_t amount, created;
	if (json_unpack(j, "{s:s, s:s, s:I, s:s, s:I}", "id", &id, "charge", &charge_id, "amount", &amount,
	                "currency", &currency, "created", &created) != 0 ||
	    strlen(id) >= ID_MAX || strlen(charge_id) >= ID_MAX)
		return ORN_EDECODE;
	charge *c = hmap_get(s->charges_by_id, charge_id);
	refund *r = calloc(1, sizeof *r);
	if (r == NULL)
		return ORN_ENOMEM;
	snprintf(r->id, sizeof r->id, "%s", id);
	snprintf(r->charge, sizeof r->charge, "%s", charge_id);
	r->amount = amount;
	snprintf(r->currency, sizeof r->currency, "%s", currency);
	r->created = created;
	if (c != NULL)
		c->refunded = true;
	return refund_add(s, r);
}

static orn_rc load_record(psp_sandbox *s, json_t *j)
{
	const char *key, *hex, *body;
	int status;
	uint8_t digest[PSP_DIGEST_BYTES];
	size_t n = 0;
	if (json_unpack(j, "{s:s, s:s, s:i, s:s}", "key", &key, "digest", &hex, "status", &status, "body",
	                &body) != 0 ||
	    !psp_idempotency_key_valid(key) ||
	    sodium_hex2bin(digest, sizeof digest, hex, strlen(hex), NULL, &n, NULL) != 0 ||
	    n != sizeof digest)
		return ORN_EDECODE;
	record_free(hmap_remove(s->idempotency, key));
	return record_add(s, key, digest, status, body) != NULL ? ORN_OK : ORN_ENOMEM;
}

/* Reads the state file back; a missing file is an empty state. */
static orn_rc load_state(psp_sandbox *s, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	long number = 0, skipped = 0;
	orn_rc rc = ORN_OK;
	if (f == NULL)
		return errno == ENOENT ? ORN_OK : ORN_EIO;
	while (getline(&line, &cap, f) >= 0) {
		number++;
		json_t *j = json_loads(line, 0, NULL);
		const char *type = j != NULL ? json_string_value(json_object_get(j, "type")) : NULL;
		orn_rc lrc = ORN_EDECODE;
		if (type != NULL && strcmp(type, "charge") == 0)
			lrc = load_charge(s, json_object_get(j, "charge"));
		else if (type != NULL && strcmp(type, "refund") == 0)
			lrc = load_refund(s, json_object_get(j, "refund"));
		else if (type != NULL && strcmp(type, "idempotency") == 0)
			lrc = load_record(s, j);
		json_decref(j);
		if (lrc == ORN_ENOMEM) {
			rc = ORN_ENOMEM;
			break;
		}
		if (lrc != ORN_OK) {
			char at[24];
			snprintf(at, sizeof at, "%ld", number);
			log_warn("skipping a bad line of the PSP state file", "line", at);
			skipped++;
		}
	}
	if (rc == ORN_OK && ferror(f))
		rc = ORN_EIO;
	free(line);
	fclose(f);
	if (rc == ORN_OK) {
		char charges[24], records[24];
		snprintf(charges, sizeof charges, "%zu", s->charge_count);
		snprintf(records, sizeof records, "%zu", hmap_count(s->idempotency));
		log_info("psp state loaded", "charges", charges, "idempotency_records", records);
	}
	return rc;
}

/* Opens the state file for appending; a torn last line gets its newline. */
static orn_rc open_state(psp_sandbox *s, const char *path)
{
	struct stat st;
	char last = '\n';
	s->state_fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (s->state_fd < 0 || fstat(s->state_fd, &st) != 0) {
		log_error("cannot open the PSP state file", "error", strerror(errno));
		return ORN_EIO;
	}
	if (st.st_size > 0 && pread(s->state_fd, &last, 1, st.st_size - 1) == 1 && last != '\n' &&
	    write(s->state_fd, "\n", 1) != 1)
		return ORN_EIO;
	return ORN_OK;
}

/* ---- the sandbox ---------------------------------------------------------- */

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;

static void threads_init(void)
{
	evthread_use_pthreads();
}

/* Splits "host:port" / "[v6]:port". */
static bool parse_address(const char *address, char *host, size_t cap, uint16_t *port)
{
	const char *colon = address != NULL ? strrchr(address, ':') : NULL;
	if (colon == NULL || colon == address)
		return false;
	const char *start = address, *end = colon;
	if (address[0] == '[') {
		if (end[-1] != ']')
			return false;
		start++;
		end--;
	}
	if (end <= start || (size_t)(end - start) >= cap)
		return false;
	memcpy(host, start, (size_t)(end - start));
	host[end - start] = '\0';
	char *tail = NULL;
	errno = 0;
	long value = strtol(colon + 1, &tail, 10);
	if (colon[1] == '\0' || *tail != '\0' || errno != 0 || value < 0 || value > 65535)
		return false;
	*port = (uint16_t)value;
	return true;
}

static uint16_t bound_port(struct evhttp_bound_socket *bound)
{
	struct sockaddr_storage address;
	socklen_t len = sizeof address;
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&address, &len) != 0)
		return 0;
	if (address.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&address)->sin_port);
	if (address.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
	return 0;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void *loop_main(void *arg)
{
	psp_sandbox *s = arg;
	if (event_base_dispatch(s->base) < 0)
		log_error("the PSP sandbox loop failed");
	return NULL;
}

static void sandbox_free(psp_sandbox *s)
{
	size_t cursor = 0;
	const char *key;
	void *value;
	while (s->held != NULL)
		hold_end(s->held);
	if (s->http != NULL)
		evhttp_free(s->http);
	if (s->stop_event != NULL)
		event_free(s->stop_event);
	if (s->base != NULL)
		event_base_free(s->base);
	for (size_t i = 0; i < s->charge_count; i++)
		charge_free(s->charges[i]);
	free(s->charges);
	hmap_destroy(s->charges_by_id);
	while (s->refunds != NULL && hmap_next(s->refunds, &cursor, &key, &value))
		free(value);
	hmap_destroy(s->refunds);
	cursor = 0;
	while (s->idempotency != NULL && hmap_next(s->idempotency, &cursor, &key, &value))
		record_free(value);
	hmap_destroy(s->idempotency);
	if (s->state_fd >= 0)
		close(s->state_fd);
	if (s->api_key != NULL) {
		sodium_memzero(s->api_key, strlen(s->api_key));
		free(s->api_key);
	}
	free(s);
}

orn_rc psp_sandbox_start(const psp_sandbox_options *o, psp_sandbox **out)
{
	char host[256];
	uint16_t port = 0;
	orn_rc rc = ORN_ENOMEM;
	*out = NULL;
	if (o == NULL || o->api_key == NULL || o->api_key[0] == '\0' ||
	    !parse_address(o->listen != NULL ? o->listen : "127.0.0.1:0", host, sizeof host, &port))
		return ORN_EINVAL;
	if (sodium_init() < 0)
		return ORN_EINTERNAL;
	pthread_once(&threads_once, threads_init);
	psp_sandbox *s = calloc(1, sizeof *s);
	if (s == NULL)
		return ORN_ENOMEM;
	s->state_fd = -1;
	s->hold_ms = o->silent_hold_ms > 0 ? o->silent_hold_ms : HOLD_DEFAULT_MS;
	s->api_key = strdup(o->api_key);
	s->charges_by_id = hmap_create();
	s->refunds = hmap_create();
	s->idempotency = hmap_create();
	s->base = event_base_new();
	if (s->api_key == NULL || s->charges_by_id == NULL || s->refunds == NULL || s->idempotency == NULL ||
	    s->base == NULL)
		goto fail;
	s->http = evhttp_new(s->base);
	s->stop_event = event_new(s->base, -1, 0, on_stop, s->base);
	if (s->http == NULL || s->stop_event == NULL)
		goto fail;
	evhttp_set_max_body_size(s->http, 2 * MAX_BODY);
	evhttp_set_max_headers_size(s->http, MAX_HEADERS);
	evhttp_set_timeout(s->http, IO_TIMEOUT_S);
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
	                                            EVHTTP_REQ_OPTIONS);
	evhttp_set_gencb(s->http, on_request, s);
	if (o->state_file != NULL && o->state_file[0] != '\0') {
		if ((rc = load_state(s, o->state_file)) != ORN_OK) {
			log_error("cannot read the PSP state file", "error", orn_strerror(rc));
			goto fail;
		}
		if ((rc = open_state(s, o->state_file)) != ORN_OK)
			goto fail;
	}
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(s->http, host, port);
	if (bound == NULL) {
		log_error("cannot bind the PSP sandbox listener", "address", o->listen);
		rc = ORN_EUNAVAILABLE;
		goto fail;
	}
	s->port = bound_port(bound);
	/* The loop thread takes no process signals: they stay with the caller. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int err = pthread_create(&s->thread, NULL, loop_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0) {
		rc = ORN_EINTERNAL;
		goto fail;
	}
	s->running = true;
	*out = s;
	return ORN_OK;
fail:
	sandbox_free(s);
	return rc;
}

uint16_t psp_sandbox_port(const psp_sandbox *s)
{
	return s->port;
}

/* An activated event is not lost if the loop has not started yet (a plain
 * event_base_loopbreak would be); see gw_server_stop. */
void psp_sandbox_stop(psp_sandbox *s)
{
	if (s == NULL)
		return;
	if (s->running) {
		event_active(s->stop_event, EV_READ, 0);
		pthread_join(s->thread, NULL);
	}
	sandbox_free(s);
}
