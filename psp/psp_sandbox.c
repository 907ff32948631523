/* psp_sandbox.c — the card payment provider sandbox (see psp_sandbox.h):
 * evhttp routes, payment methods, payment intents and their 3-D Secure
 * page, refunds, webhook events and their delivery, idempotency records,
 * the silent card's held connections and the JSON-lines state file.
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

#define MAX_BODY           (16 * 1024)
#define MAX_HEADERS        (16 * 1024)
#define IO_TIMEOUT_S       30
#define ID_CHARS           24
#define ID_MAX             32
#define REQUEST_ID_CHARS   14
#define HOLD_DEFAULT_MS    120000
#define SCOPE_REFUNDS      "POST /v1/refunds"
#define SCOPE_METHODS      "POST /v1/payment_methods"
#define SCOPE_INTENTS      "POST /v1/payment_intents"
#define DELIVERY_FIRST_MS  500
#define DELIVERY_MAX_MS    30000
#define DELIVERY_TIMEOUT_S 10
#define EVENTS_LIMIT_MAX   100
#define FORM_TYPE          "application/x-www-form-urlencoded"

/* A tokenized card: what POST /v1/payment_methods keeps (never the number
 * or the CVC: the behaviour of a test card stands for it). */
typedef struct payment_method {
	char id[ID_MAX];
	char brand[16], last4[5];
	int exp_month, exp_year;
	psp_behaviour behaviour;
	int64_t created;
} payment_method;

typedef enum intent_status {
	INTENT_SUCCEEDED,
	INTENT_REQUIRES_PAYMENT_METHOD,
	INTENT_REQUIRES_ACTION,
} intent_status;

typedef struct intent {
	char id[ID_MAX];
	int64_t amount;
	char currency[4];
	intent_status status;
	char payment_method[ID_MAX];
	psp_behaviour behaviour; /* the payment method's, copied at confirmation */
	char charge[ID_MAX];     /* "" until it succeeds */
	char *order_id;          /* NULL: no metadata */
	char *return_url;        /* NULL: none */
	char error_code[48];     /* last_payment_error; "" for none */
	char decline_code[32];
	int64_t amount_refunded;
	int refund_attempts; /* failed ones included: the 5126 card fails the first */
	int64_t created;
} intent;

/* A webhook event: its body is fixed at creation (the same id and bytes on
 * every try, only the signature's t changes). */
typedef struct webhook_event {
	psp_sandbox *sandbox;
	char id[ID_MAX];
	char type[40];
	int64_t created;
	char *body;
	unsigned deliveries; /* attempts made */
	bool delivered;      /* a 2xx came back */
	struct event *timer;
	struct evhttp_connection *conn; /* the attempt in flight, or NULL */
} webhook_event;

typedef struct held held;

/* The stored first response of an Idempotency-Key. */
typedef struct idem_record {
	uint8_t digest[PSP_DIGEST_BYTES];
	int status;
	char *body;
	held *held; /* non-NULL while its silent request is held: 409 */
} idem_record;

/* A silent intent's connection, held without an answer. */
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
	int state_fd;      /* -1: state in memory only */
	hmap *idempotency; /* Idempotency-Key -> idem_record */
	held *held;
	char *publishable_key; /* NULL: none */
	char **cors_origins;
	size_t cors_count;
	char public_url[ORN_CONFIG_STR_MAX]; /* no trailing slash */
	hmap *payment_methods;               /* id -> payment_method */
	intent **intents;                    /* in creation order */
	size_t intent_count, intent_cap;
	hmap *intents_by_id;    /* id -> intent */
	webhook_event **events; /* in creation order */
	size_t event_count, event_cap;
	hmap *events_by_id;
	struct evhttp_uri *webhook; /* NULL: events are kept, not sent */
	char *webhook_secret;
	/* psp_sandbox_set_site, from another thread: taken by the loop thread
	 * (site_event) under site_lock. */
	pthread_mutex_t site_lock;
	bool site_lock_made;
	struct event *site_event;
	char *pending_webhook_url, *pending_cors_origins;
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

/* ---- the state file and results ------------------------------------------ */

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

/* ---- webhook events --------------------------------------------------------
 *
 * Delivery runs on the sandbox's own event_base with evhttp's client side: a
 * try is one non-blocking request whose answer (or failure) comes back as a
 * callback on the loop thread, so all state stays on that thread without a
 * lock, and a slow or dead receiver never holds up the API (a second thread
 * with libcurl would need the state shared and locked). The one blocking
 * step is resolving a host name (no evdns base): a webhook URL names an IP
 * address or localhost in practice. Only http:// URLs: evhttp has no TLS. */

static void delivery_try(evutil_socket_t fd, short what, void *arg);

static void persist_delivery(psp_sandbox *s, const webhook_event *e)
{
	persist(s, json_pack("{s:s, s:s, s:i, s:b}", "type", "delivery", "id", e->id, "deliveries",
	                     (int)e->deliveries, "delivered", (int)e->delivered));
}

/* Tries e again after delay_ms (0: at the next loop turn). */
static void delivery_schedule(webhook_event *e, unsigned delay_ms)
{
	psp_sandbox *s = e->sandbox;
	struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
	if (s->webhook == NULL || e->delivered || e->conn != NULL)
		return;
	if (e->timer == NULL && (e->timer = evtimer_new(s->base, delivery_try, e)) == NULL) {
		log_error("cannot schedule a webhook", "event", e->id, "error", "out of memory");
		return;
	}
	evtimer_add(e->timer, &tv);
}

/* 0.5 s after the first failed try, doubling, at most 30 s. */
static unsigned delivery_backoff_ms(unsigned failed_tries)
{
	unsigned ms = DELIVERY_FIRST_MS;
	for (unsigned i = 1; i < failed_tries && ms < DELIVERY_MAX_MS; i++)
		ms *= 2;
	return ms < DELIVERY_MAX_MS ? ms : DELIVERY_MAX_MS;
}

static void delivery_done(struct evhttp_request *req, void *arg)
{
	webhook_event *e = arg;
	psp_sandbox *s = e->sandbox;
	int code = req != NULL ? evhttp_request_get_response_code(req) : 0;
	char status[8], tries[16];
	e->conn = NULL; /* freed by evhttp once this returns (free_on_completion) */
	e->deliveries++;
	e->delivered = code >= 200 && code < 300;
	/* A receiver down for days would add a line every 30 s: the count is
	 * written for the first tries, then every 16th (and at success). */
	if (e->delivered || e->deliveries <= 16 || e->deliveries % 16 == 0)
		persist_delivery(s, e);
	snprintf(status, sizeof status, "%d", code);
	snprintf(tries, sizeof tries, "%u", e->deliveries);
	if (e->delivered) {
		log_info("psp webhook delivered", "event", e->id, "type", e->type, "status", status, "tries",
		         tries);
		return;
	}
	log_warn("psp webhook not delivered", "event", e->id, "type", e->type, "status", status, "tries",
	         tries);
	delivery_schedule(e, delivery_backoff_ms(e->deliveries));
}

/* "t=<unix s>,v1=<hex HMAC-SHA256(secret, t "." body)>" */
static void sign(const psp_sandbox *s, const char *body, char *out, size_t cap)
{
	crypto_auth_hmacsha256_state st;
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	char t[24], hex[2 * sizeof mac + 1];
	snprintf(t, sizeof t, "%lld", (long long)time(NULL));
	crypto_auth_hmacsha256_init(&st, (const uint8_t *)s->webhook_secret, strlen(s->webhook_secret));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)t, strlen(t));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)body, strlen(body));
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
	snprintf(out, cap, "t=%s,v1=%s", t, hex);
}

static void delivery_try(evutil_socket_t fd, short what, void *arg)
{
	webhook_event *e = arg;
	psp_sandbox *s = e->sandbox;
	char target[ORN_CONFIG_STR_MAX * 2], signature[160], host_header[300];
	(void)fd;
	(void)what;
	if (s->webhook == NULL || e->delivered || e->conn != NULL) /* the URL was taken away */
		return;
	const char *host = evhttp_uri_get_host(s->webhook), *path = evhttp_uri_get_path(s->webhook);
	const char *query = evhttp_uri_get_query(s->webhook);
	int port = evhttp_uri_get_port(s->webhook);
	snprintf(target, sizeof target, "%s%s%s", path != NULL && path[0] != '\0' ? path : "/",
	         query != NULL ? "?" : "", query != NULL ? query : "");
	port = port > 0 ? port : 80;
	snprintf(host_header, sizeof host_header, "%s:%d", host, port);
	struct evhttp_connection *conn = evhttp_connection_base_new(s->base, NULL, host, (uint16_t)port);
	struct evhttp_request *req = conn != NULL ? evhttp_request_new(delivery_done, e) : NULL;
	if (req == NULL) {
		if (conn != NULL)
			evhttp_connection_free(conn);
		log_error("cannot send a webhook", "event", e->id, "error", "out of memory");
		delivery_schedule(e, DELIVERY_MAX_MS);
		return;
	}
	evhttp_connection_set_timeout(conn, DELIVERY_TIMEOUT_S);
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	sign(s, e->body, signature, sizeof signature);
	evhttp_add_header(headers, "Host", host_header);
	evhttp_add_header(headers, "Content-Type", "application/json");
	evhttp_add_header(headers, "User-Agent", "Orion-PSP-Sandbox/1");
	evhttp_add_header(headers, "Orion-PSP-Signature", signature);
	evhttp_add_header(headers, "Connection", "close");
	evbuffer_add(evhttp_request_get_output_buffer(req), e->body, strlen(e->body));
	if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, target) != 0) {
		/* evhttp freed the request */
		evhttp_connection_free(conn);
		e->deliveries++;
		persist_delivery(s, e);
		delivery_schedule(e, delivery_backoff_ms(e->deliveries));
		return;
	}
	evhttp_connection_free_on_completion(conn);
	e->conn = conn;
}

static void webhook_event_free(webhook_event *e)
{
	if (e == NULL)
		return;
	if (e->conn != NULL)
		evhttp_connection_free(e->conn); /* its request goes without a callback */
	if (e->timer != NULL)
		event_free(e->timer);
	free(e->body);
	free(e);
}

/* Takes e into the sandbox (or frees it on failure). */
static orn_rc webhook_event_add(psp_sandbox *s, webhook_event *e)
{
	if (hmap_get(s->events_by_id, e->id) != NULL) {
		webhook_event_free(e);
		return ORN_EEXISTS;
	}
	if (s->event_count == s->event_cap) {
		size_t cap = s->event_cap ? 2 * s->event_cap : 64;
		webhook_event **grown = realloc(s->events, cap * sizeof *grown);
		if (grown == NULL) {
			webhook_event_free(e);
			return ORN_ENOMEM;
		}
		s->events = grown;
		s->event_cap = cap;
	}
	if (hmap_put(s->events_by_id, e->id, e) != ORN_OK) {
		webhook_event_free(e);
		return ORN_ENOMEM;
	}
	s->events[s->event_count++] = e;
	return ORN_OK;
}

/* One event for an outcome: kept, written to the state file, sent. object
 * is taken. */
static void emit(psp_sandbox *s, const char *type, json_t *object)
{
	webhook_event *e = calloc(1, sizeof *e);
	json_t *body = NULL;
	if (e == NULL || object == NULL)
		goto fail;
	e->sandbox = s;
	make_id(e->id, "evt_");
	snprintf(e->type, sizeof e->type, "%s", type);
	e->created = (int64_t)time(NULL);
	body = json_pack("{s:s, s:s, s:s, s:I, s:{s:O}}", "id", e->id, "object", "event", "type", type,
	                 "created", (json_int_t)e->created, "data", "object", object);
	if ((e->body = dump(body)) == NULL)
		goto fail;
	json_decref(object);
	if (webhook_event_add(s, e) != ORN_OK) {
		log_error("cannot keep a webhook event", "type", type);
		return;
	}
	persist(s, json_pack("{s:s, s:s, s:s, s:I, s:s}", "type", "event", "id", e->id, "event_type", e->type,
	                     "created", (json_int_t)e->created, "body", e->body));
	log_info("psp event", "event", e->id, "type", type);
	delivery_schedule(e, 0);
	return;
fail:
	json_decref(object);
	if (e != NULL)
		free(e->body);
	free(e);
	log_error("cannot make a webhook event", "type", type, "error", "out of memory");
}

/* ---- payment methods and payment intents --------------------------------- */

static json_t *payment_method_json(const payment_method *pm)
{
	return json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:i, s:i}, s:I}", "id", pm->id, "object",
	                 "payment_method", "type", "card", "card", "brand", pm->brand, "last4", pm->last4,
	                 "exp_month", pm->exp_month, "exp_year", pm->exp_year, "created",
	                 (json_int_t)pm->created);
}

static orn_rc payment_method_add(psp_sandbox *s, payment_method *pm)
{
	if (hmap_get(s->payment_methods, pm->id) != NULL ||
	    hmap_put(s->payment_methods, pm->id, pm) != ORN_OK) {
		free(pm);
		return ORN_EEXISTS;
	}
	return ORN_OK;
}

static void persist_payment_method(psp_sandbox *s, const payment_method *pm)
{
	json_t *j = payment_method_json(pm);
	if (j != NULL)
		json_object_set_new(j, "behaviour", json_string(psp_behaviour_name(pm->behaviour)));
	persist(s, json_pack("{s:s, s:o}", "type", "payment_method", "payment_method", j));
}

static void current_month(int *year, int *month)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	*year = tm.tm_year + 1900;
	*month = tm.tm_mon + 1;
}

static result card_error_result(int status, const char *code, const char *decline_code, const char *param,
                                const char *message)
{
	json_t *body =
	        error_json(status == 402 ? "card_error" : "invalid_request_error", code, param, message);
	json_t *e = body != NULL ? json_object_get(body, "error") : NULL;
	if (e != NULL && decline_code != NULL)
		json_object_set_new(e, "decline_code", json_string(decline_code));
	return make_result(status, body, false);
}

static result create_payment_method(psp_sandbox *s, const psp_form *f)
{
	psp_card card;
	psp_param_error err;
	int year, month;
	current_month(&year, &month);
	if (psp_card_check(f, year, month, &card, &err) != ORN_OK)
		return card_error_result(err.status, err.code, NULL, err.param, err.message);
	payment_method *pm = calloc(1, sizeof *pm);
	if (pm == NULL)
		return (result){.status = 500};
	make_id(pm->id, "pm_");
	memcpy(pm->brand, card.brand, sizeof pm->brand);
	memcpy(pm->last4, card.last4, sizeof pm->last4);
	pm->exp_month = card.exp_month;
	pm->exp_year = card.exp_year;
	pm->behaviour = card.behaviour;
	pm->created = (int64_t)time(NULL);
	if (payment_method_add(s, pm) != ORN_OK)
		return (result){.status = 500};
	persist_payment_method(s, pm);
	log_info("psp payment method", "payment_method", pm->id, "brand", pm->brand);
	return make_result(200, payment_method_json(pm), true);
}

static const char *intent_status_name(intent_status st)
{
	switch (st) {
	case INTENT_SUCCEEDED:
		return "succeeded";
	case INTENT_REQUIRES_ACTION:
		return "requires_action";
	default:
		return "requires_payment_method";
	}
}

static bool intent_status_parse(const char *name, intent_status *out)
{
	for (int i = INTENT_SUCCEEDED; i <= INTENT_REQUIRES_ACTION; i++) {
		if (strcmp(intent_status_name((intent_status)i), name) == 0) {
			*out = (intent_status)i;
			return true;
		}
	}
	return false;
}

static json_t *nullable(const char *text)
{
	return text != NULL && text[0] != '\0' ? json_string(text) : json_null();
}

static json_t *intent_json(const psp_sandbox *s, const intent *pi)
{
	json_t *metadata = json_object(), *error = json_null(), *next = json_null();
	if (metadata != NULL && pi->order_id != NULL)
		json_object_set_new(metadata, "order_id", json_string(pi->order_id));
	if (pi->error_code[0] != '\0') {
		json_decref(error);
		error = json_pack("{s:s, s:s, s:o}", "type", "card_error", "code", pi->error_code,
		                  "decline_code", nullable(pi->decline_code));
	}
	if (pi->status == INTENT_REQUIRES_ACTION) {
		char url[ORN_CONFIG_STR_MAX + 64];
		snprintf(url, sizeof url, "%s/v1/3ds/%s", s->public_url, pi->id);
		json_decref(next);
		next = json_pack("{s:s, s:{s:s, s:o}}", "type", "redirect_to_url", "redirect_to_url", "url",
		                 url, "return_url", nullable(pi->return_url));
	}
	return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:I, s:I}", "id", pi->id,
	                 "object", "payment_intent", "amount", (json_int_t)pi->amount, "currency",
	                 pi->currency, "status", intent_status_name(pi->status), "payment_method",
	                 pi->payment_method, "latest_charge", nullable(pi->charge), "metadata", metadata,
	                 "last_payment_error", error, "next_action", next, "amount_refunded",
	                 (json_int_t)pi->amount_refunded, "created", (json_int_t)pi->created);
}

/* The charge of a succeeded intent, as charge.refunded carries it. */
static json_t *intent_charge_json(const intent *pi)
{
	json_t *metadata = json_object();
	if (metadata != NULL && pi->order_id != NULL)
		json_object_set_new(metadata, "order_id", json_string(pi->order_id));
	return json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:b, s:o}", "id", pi->charge, "object", "charge",
	                 "payment_intent", pi->id, "amount", (json_int_t)pi->amount, "currency", pi->currency,
	                 "amount_refunded", (json_int_t)pi->amount_refunded, "refunded",
	                 (int)(pi->amount_refunded >= pi->amount), "metadata", metadata);
}

static void intent_free(intent *pi)
{
	if (pi != NULL) {
		free(pi->order_id);
		free(pi->return_url);
	}
	free(pi);
}

static orn_rc intent_add(psp_sandbox *s, intent *pi)
{
	if (hmap_get(s->intents_by_id, pi->id) != NULL) {
		intent_free(pi);
		return ORN_EEXISTS;
	}
	if (s->intent_count == s->intent_cap) {
		size_t cap = s->intent_cap ? 2 * s->intent_cap : 64;
		intent **grown = realloc(s->intents, cap * sizeof *grown);
		if (grown == NULL) {
			intent_free(pi);
			return ORN_ENOMEM;
		}
		s->intents = grown;
		s->intent_cap = cap;
	}
	if (hmap_put(s->intents_by_id, pi->id, pi) != ORN_OK) {
		intent_free(pi);
		return ORN_ENOMEM;
	}
	s->intents[s->intent_count++] = pi;
	return ORN_OK;
}

/* The whole intent as one state line; a later line of the same id wins. */
static void persist_intent(psp_sandbox *s, const intent *pi)
{
	persist(s, json_pack("{s:s, s:{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:s, s:I, s:i, "
	                     "s:I}}",
	                     "type", "intent", "intent", "id", pi->id, "amount", (json_int_t)pi->amount,
	                     "currency", pi->currency, "status", intent_status_name(pi->status),
	                     "payment_method", pi->payment_method, "behaviour",
	                     psp_behaviour_name(pi->behaviour), "charge", pi->charge, "order_id",
	                     nullable(pi->order_id), "return_url", nullable(pi->return_url), "error_code",
	                     pi->error_code, "decline_code", pi->decline_code, "amount_refunded",
	                     (json_int_t)pi->amount_refunded, "refund_attempts", pi->refund_attempts,
	                     "created", (json_int_t)pi->created));
}

static void intent_succeed(psp_sandbox *s, intent *pi)
{
	pi->status = INTENT_SUCCEEDED;
	pi->error_code[0] = pi->decline_code[0] = '\0';
	make_id(pi->charge, "ch_");
	persist_intent(s, pi);
	emit(s, "payment_intent.succeeded", intent_json(s, pi));
}

static void intent_fail(psp_sandbox *s, intent *pi, const char *code, const char *decline_code)
{
	pi->status = INTENT_REQUIRES_PAYMENT_METHOD;
	snprintf(pi->error_code, sizeof pi->error_code, "%s", code);
	snprintf(pi->decline_code, sizeof pi->decline_code, "%s", decline_code != NULL ? decline_code : "");
	persist_intent(s, pi);
	emit(s, "payment_intent.payment_failed", intent_json(s, pi));
}

static result create_intent(psp_sandbox *s, const psp_form *f)
{
	psp_intent_request ir;
	psp_param_error err;
	if (psp_intent_check(f, &ir, &err) != ORN_OK)
		return param_result(err.code, err.param, err.message);
	const payment_method *pm = hmap_get(s->payment_methods, ir.payment_method);
	if (pm == NULL)
		return param_result("resource_missing", "payment_method", "No such payment_method.");
	intent *pi = calloc(1, sizeof *pi);
	if (pi == NULL || (ir.order_id != NULL && (pi->order_id = strdup(ir.order_id)) == NULL) ||
	    (ir.return_url != NULL && (pi->return_url = strdup(ir.return_url)) == NULL)) {
		intent_free(pi);
		return (result){.status = 500};
	}
	make_id(pi->id, "pi_");
	pi->amount = ir.amount;
	memcpy(pi->currency, ir.currency, sizeof pi->currency);
	snprintf(pi->payment_method, sizeof pi->payment_method, "%s", pm->id);
	pi->behaviour = pm->behaviour;
	pi->created = (int64_t)time(NULL);
	pi->status = INTENT_REQUIRES_ACTION; /* until confirmed below */
	if (intent_add(s, pi) != ORN_OK)
		return (result){.status = 500};
	const char *code = psp_behaviour_code(pi->behaviour);
	if (code != NULL)
		intent_fail(s, pi, code, psp_behaviour_decline_code(pi->behaviour));
	else if (pi->behaviour == PSP_BEHAVIOUR_REQUIRES_3DS)
		persist_intent(s, pi);
	else
		intent_succeed(s, pi);
	char amount[24];
	snprintf(amount, sizeof amount, "%lld", (long long)pi->amount);
	log_info("psp payment intent", "payment_intent", pi->id, "status", intent_status_name(pi->status),
	         "amount", amount, "currency", pi->currency, "code", pi->error_code);
	if (code == NULL) {
		result r = make_result(200, intent_json(s, pi), true);
		r.silent = pi->behaviour == PSP_BEHAVIOUR_SILENT;
		return r;
	}
	json_t *body = error_json("card_error", code, NULL, psp_behaviour_message(pi->behaviour));
	json_t *e = body != NULL ? json_object_get(body, "error") : NULL;
	if (e != NULL) {
		json_object_set_new(e, "decline_code",
		                    json_string(psp_behaviour_decline_code(pi->behaviour)));
		json_object_set_new(e, "payment_intent", intent_json(s, pi));
	}
	return make_result(402, body, true);
}

/* Digits only, 1..18 of them. */
static bool parse_amount(const char *text, int64_t *out)
{
	int64_t v = 0;
	size_t n = 0;
	for (; text[n] != '\0'; n++) {
		if (text[n] < '0' || text[n] > '9' || n >= 18)
			return false;
		v = v * 10 + (text[n] - '0');
	}
	*out = v;
	return n > 0;
}

/* POST /v1/refunds with payment_intent (ADR 028): the 5126 card's first
 * refund of an intent fails, later ones succeed. Any other parameter (the
 * charge of ADR 009's refunds included) is parameter_unknown, as Stripe
 * answers a parameter it does not know. */
static result create_refund(psp_sandbox *s, const psp_form *f)
{
	static const char *const allowed[] = {"payment_intent", "amount", NULL};
	char message[160];
	int64_t amount = 0;
	const char *unknown = psp_form_unknown(f, allowed);
	if (unknown != NULL) {
		snprintf(message, sizeof message, "Received unknown parameter: %.100s", unknown);
		return param_result("parameter_unknown", unknown, message);
	}
	const char *id = psp_form_get(f, "payment_intent"), *amount_text = psp_form_get(f, "amount");
	if (id == NULL)
		return param_result("parameter_missing", "payment_intent",
		                    "Missing required param: payment_intent.");
	intent *pi = hmap_get(s->intents_by_id, id);
	if (pi == NULL)
		return make_result(404,
		                   error_json("invalid_request_error", "resource_missing", "payment_intent",
		                              "No such payment_intent."),
		                   false);
	if (pi->status != INTENT_SUCCEEDED)
		return param_result("parameter_invalid", "payment_intent",
		                    "This PaymentIntent did not succeed: there is nothing to refund.");
	int64_t rest = pi->amount - pi->amount_refunded;
	if (rest <= 0) {
		snprintf(message, sizeof message, "Charge %s has already been refunded.", pi->charge);
		return make_result(
		        400, error_json("invalid_request_error", "charge_already_refunded", NULL, message),
		        false);
	}
	if (amount_text != NULL && (!parse_amount(amount_text, &amount) || amount < 1 || amount > rest))
		return param_result("parameter_invalid", "amount",
		                    "Invalid amount: from 1 to the amount not yet refunded.");
	if (amount_text == NULL)
		amount = rest;
	char refund_id[ID_MAX];
	make_id(refund_id, "re_");
	pi->refund_attempts++;
	bool failed = pi->behaviour == PSP_BEHAVIOUR_REFUND_FAILS_FIRST && pi->refund_attempts == 1;
	if (!failed)
		pi->amount_refunded += amount;
	json_t *answer = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:I}", "id", refund_id, "object",
	                           "refund", "payment_intent", pi->id, "charge", pi->charge, "amount",
	                           (json_int_t)amount, "currency", pi->currency, "status",
	                           failed ? "failed" : "succeeded", "created", (json_int_t)time(NULL));
	if (answer != NULL && failed)
		json_object_set_new(answer, "failure_reason", json_string("expired_or_canceled_card"));
	if (answer == NULL)
		return (result){.status = 500};
	persist_intent(s, pi);
	persist(s, json_pack("{s:s, s:O}", "type", "intent_refund", "refund", answer));
	log_info("psp refund", "refund", refund_id, "payment_intent", pi->id, "status",
	         failed ? "failed" : "succeeded");
	if (failed)
		emit(s, "charge.refund.updated", json_incref(answer));
	else
		emit(s, "charge.refunded", intent_charge_json(pi));
	return make_result(200, answer, true);
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

typedef result (*create_fn)(psp_sandbox *s, const psp_form *f);

/* A POST that creates something: form decoding, then the Idempotency-Key's
 * record for scope (replay, mismatch, held) or create. */
static void handle_post(psp_sandbox *s, struct evhttp_request *req, const char *scope, create_fn create)
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
		psp_form_digest(&form, s->api_key, scope, digest);
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
	result res = create(s, &form);
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

/* ---- CORS, the 3-D Secure page, lists ------------------------------------- */

/* The request's Origin if it is one of the sandbox's CORS origins. */
static const char *allowed_origin(const psp_sandbox *s, struct evhttp_request *req)
{
	const char *origin = evhttp_find_header(evhttp_request_get_input_headers(req), "Origin");
	for (size_t i = 0; origin != NULL && i < s->cors_count; i++)
		if (strcmp(s->cors_origins[i], origin) == 0)
			return origin;
	return NULL;
}

/* Vary: Origin always; the CORS headers only for an allowed origin. */
static void cors_headers(const psp_sandbox *s, struct evhttp_request *req, bool preflight)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	const char *origin = allowed_origin(s, req);
	evhttp_add_header(out, "Vary", "Origin");
	if (origin == NULL)
		return;
	evhttp_add_header(out, "Access-Control-Allow-Origin", origin);
	if (preflight) {
		evhttp_add_header(out, "Access-Control-Allow-Methods", "POST, OPTIONS");
		evhttp_add_header(out, "Access-Control-Allow-Headers", "Authorization, Content-Type");
		evhttp_add_header(out, "Access-Control-Max-Age", "600");
	} else {
		evhttp_add_header(out, "Access-Control-Expose-Headers", "Request-Id");
	}
}

static void preflight(psp_sandbox *s, struct evhttp_request *req)
{
	cors_headers(s, req, true);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST, OPTIONS");
	evhttp_send_reply(req, 204, "No Content", NULL);
}

/* Appends text to b with &, <, >, " and ' as character references. */
static void html_escape(struct evbuffer *b, const char *text)
{
	for (; *text != '\0'; text++) {
		switch (*text) {
		case '&':
			evbuffer_add(b, "&amp;", 5);
			break;
		case '<':
			evbuffer_add(b, "&lt;", 4);
			break;
		case '>':
			evbuffer_add(b, "&gt;", 4);
			break;
		case '"':
			evbuffer_add(b, "&quot;", 6);
			break;
		case '\'':
			evbuffer_add(b, "&#39;", 5);
			break;
		default:
			evbuffer_add(b, text, 1);
		}
	}
}

/* Sends b's page. The page loads nothing and runs nothing. */
static void respond_html(struct evhttp_request *req, int status, const char *title, const char *html_body)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	evhttp_add_header(headers, "Content-Type", "text/html; charset=utf-8");
	evhttp_add_header(headers, "Cache-Control", "no-store");
	evhttp_add_header(headers, "Content-Security-Policy",
	                  "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
	evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(headers, "Referrer-Policy", "no-referrer");
	evbuffer_add_printf(out, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	                         "<meta name=\"viewport\" content=\"width=device-width\"><title>");
	html_escape(out, title);
	evbuffer_add_printf(out,
	                    "</title><style>body{font-family:sans-serif;max-width:32em;margin:2em "
	                    "auto;padding:0 1em}button{font-size:1.1em;margin-right:1em}</style>"
	                    "</head><body>\n%s</body></html>\n",
	                    html_body);
	evhttp_send_reply(req, status, status_title(status), NULL);
}

static void page_message(struct evhttp_request *req, int status, const char *title, const char *text)
{
	struct evbuffer *b = evbuffer_new();
	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add_printf(b, "<h1>");
	html_escape(b, title);
	evbuffer_add_printf(b, "</h1><p>");
	html_escape(b, text);
	evbuffer_add_printf(b, "</p>");
	evbuffer_add(b, "", 1);
	respond_html(req, status, title, (const char *)evbuffer_pullup(b, -1));
	evbuffer_free(b);
}

static void challenge_page(struct evhttp_request *req, const intent *pi)
{
	char amount[64], action[ID_MAX + 16];
	struct evbuffer *b = evbuffer_new();
	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	snprintf(amount, sizeof amount, "%lld.%02lld %c%c%c", (long long)(pi->amount / 100),
	         (long long)(pi->amount % 100), pi->currency[0] - 32, pi->currency[1] - 32,
	         pi->currency[2] - 32);
	snprintf(action, sizeof action, "/v1/3ds/%s", pi->id);
	evbuffer_add_printf(b, "<h1>3-D Secure (sandbox)</h1><p>Authenticate the payment of <b>");
	html_escape(b, amount);
	evbuffer_add_printf(b, "</b>");
	if (pi->order_id != NULL) {
		evbuffer_add_printf(b, " for order <b>");
		html_escape(b, pi->order_id);
		evbuffer_add_printf(b, "</b>");
	}
	evbuffer_add_printf(b, " (<code>");
	html_escape(b, pi->id);
	evbuffer_add_printf(b, "</code>).</p><form method=\"post\" action=\"");
	html_escape(b, action);
	evbuffer_add_printf(b, "\"><button type=\"submit\" name=\"action\" value=\"approve\">Approve</button>"
	                       "<button type=\"submit\" name=\"action\" value=\"decline\">Decline</button>"
	                       "</form>");
	evbuffer_add(b, "", 1);
	respond_html(req, 200, "3-D Secure", (const char *)evbuffer_pullup(b, -1));
	evbuffer_free(b);
}

/* After the challenge (or a second POST): to return_url, else a page. */
static void challenge_done(struct evhttp_request *req, const intent *pi)
{
	if (pi->return_url != NULL) {
		struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
		evhttp_add_header(headers, "Location", pi->return_url);
		evhttp_add_header(headers, "Content-Type", "text/html; charset=utf-8");
		evhttp_add_header(headers, "Cache-Control", "no-store");
		evhttp_add_header(headers, "Referrer-Policy", "no-referrer");
		evhttp_send_reply(req, 303, "See Other", NULL);
		return;
	}
	page_message(req, 200, "Payment authentication",
	             pi->status == INTENT_SUCCEEDED
	                     ? "The payment was authenticated. You may close this page."
	                     : "The payment was declined. You may close this page.");
}

/* GET and POST /v1/3ds/{pi}: the shopper's browser, no API key. */
static void handle_challenge(psp_sandbox *s, struct evhttp_request *req, const char *id)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	intent *pi = hmap_get(s->intents_by_id, id);
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_POST) {
		wipe_body(req);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, POST");
		page_message(req, 405, "Method not allowed", "Use GET or POST.");
		return;
	}
	if (pi == NULL) {
		wipe_body(req);
		page_message(req, 404, "Not found", "There is no such payment to authenticate.");
		return;
	}
	if (cmd == EVHTTP_REQ_GET) {
		if (pi->status == INTENT_REQUIRES_ACTION)
			challenge_page(req, pi);
		else
			page_message(req, 200, "Payment authentication",
			             "This payment needs no more authentication. You may close this page.");
		return;
	}
	struct evbuffer *input = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(input);
	char bad[64];
	psp_form form;
	unsigned char *raw = len > 0 && len <= MAX_BODY ? evbuffer_pullup(input, -1) : NULL;
	orn_rc rc = len > MAX_BODY || (len > 0 && raw == NULL)
	                    ? ORN_EINVAL
	                    : psp_form_parse(len > 0 ? (const char *)raw : "", len, &form, bad, sizeof bad);
	wipe_body(req);
	const char *action = rc == ORN_OK ? psp_form_get(&form, "action") : NULL;
	bool approve = action != NULL && strcmp(action, "approve") == 0;
	bool decline = action != NULL && strcmp(action, "decline") == 0;
	if (rc == ORN_OK)
		psp_form_dispose(&form);
	if (!approve && !decline) {
		page_message(req, 400, "Bad request", "The form needs action=approve or action=decline.");
		return;
	}
	if (pi->status == INTENT_REQUIRES_ACTION) {
		if (approve)
			intent_succeed(s, pi);
		else
			intent_fail(s, pi, "payment_intent_authentication_failure", NULL);
		log_info("psp 3-D Secure", "payment_intent", pi->id, "status",
		         intent_status_name(pi->status));
	}
	challenge_done(req, pi);
}

/* Parses a query string; false (answered) on a bad one or an unknown key. */
static bool parse_query(struct evhttp_request *req, const char *query, const char *const *allowed,
                        psp_form *q)
{
	char bad[64], message[160];
	orn_rc rc = psp_form_parse(query != NULL ? query : "", query != NULL ? strlen(query) : 0, q, bad,
	                           sizeof bad);
	if (rc != ORN_OK) {
		invalid(req, 400, "parameter_invalid", rc == ORN_EEXISTS ? bad : NULL,
		        "Invalid query string.");
		return false;
	}
	const char *unknown = psp_form_unknown(q, allowed);
	if (unknown != NULL) {
		snprintf(message, sizeof message, "Received unknown parameter: %.100s", unknown);
		invalid(req, 400, "parameter_unknown", unknown, message);
		psp_form_dispose(q);
		return false;
	}
	return true;
}

static void list_intents(psp_sandbox *s, struct evhttp_request *req, const char *query)
{
	static const char *const allowed[] = {"metadata[order_id]", NULL};
	psp_form q;
	if (!parse_query(req, query, allowed, &q))
		return;
	const char *order_id = psp_form_get(&q, "metadata[order_id]");
	json_t *data = json_array();
	for (size_t i = s->intent_count; i > 0 && data != NULL; i--) {
		const intent *pi = s->intents[i - 1];
		if (order_id == NULL || (pi->order_id != NULL && strcmp(pi->order_id, order_id) == 0))
			json_array_append_new(data, intent_json(s, pi));
	}
	psp_form_dispose(&q);
	respond_json(req, 200,
	             json_pack("{s:s, s:o, s:b, s:s}", "object", "list", "data", data, "has_more", 0, "url",
	                       "/v1/payment_intents"));
}

/* GET /v1/events?type=&limit= (default 10, at most 100), newest first, each
 * with delivery_count (tries made) and delivered. */
static void list_events(psp_sandbox *s, struct evhttp_request *req, const char *query)
{
	static const char *const allowed[] = {"type", "limit", NULL};
	psp_form q;
	int64_t limit = 10;
	if (!parse_query(req, query, allowed, &q))
		return;
	const char *type = psp_form_get(&q, "type"), *limit_text = psp_form_get(&q, "limit");
	if (limit_text != NULL &&
	    (!parse_amount(limit_text, &limit) || limit < 1 || limit > EVENTS_LIMIT_MAX)) {
		psp_form_dispose(&q);
		invalid(req, 400, "parameter_invalid", "limit", "Invalid limit: an integer from 1 to 100.");
		return;
	}
	json_t *data = json_array();
	bool more = false;
	for (size_t i = s->event_count; i > 0 && data != NULL; i--) {
		const webhook_event *e = s->events[i - 1];
		if (type != NULL && type[0] != '\0' && strcmp(type, e->type) != 0)
			continue;
		if ((int64_t)json_array_size(data) == limit) {
			more = true;
			break;
		}
		json_t *j = json_loads(e->body, 0, NULL);
		if (j == NULL)
			continue;
		json_object_set_new(j, "delivery_count", json_integer(e->deliveries));
		json_object_set_new(j, "delivered", json_boolean(e->delivered));
		json_array_append_new(data, j);
	}
	psp_form_dispose(&q);
	respond_json(req, 200,
	             json_pack("{s:s, s:o, s:b, s:s}", "object", "list", "data", data, "has_more", (int)more,
	                       "url", "/v1/events"));
}

typedef enum auth_level { AUTH_NONE, AUTH_PUBLISHABLE, AUTH_SECRET } auth_level;

static bool key_equal(const char *given, const char *key)
{
	size_t n = strlen(given);
	return key != NULL && n == strlen(key) && sodium_memcmp(given, key, n) == 0;
}

static auth_level authorized(const psp_sandbox *s, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return AUTH_NONE;
	h += 7;
	if (key_equal(h, s->api_key))
		return AUTH_SECRET;
	return key_equal(h, s->publishable_key) ? AUTH_PUBLISHABLE : AUTH_NONE;
}

/* "/v1/<prefix>/<id>" -> id (no further slash), else NULL. */
static const char *item_id(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0 || path[n] == '\0' || strchr(path + n, '/') != NULL)
		return NULL;
	return path + n;
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
	const char *id;
	if (path == NULL || path[0] == '\0')
		path = "/";
	bool methods = strcmp(path, "/v1/payment_methods") == 0;
	if ((id = item_id(path, "/v1/3ds/")) != NULL) {
		handle_challenge(s, req, id);
		return;
	}
	if (methods && cmd == EVHTTP_REQ_OPTIONS) {
		wipe_body(req);
		preflight(s, req);
		return;
	}
	if (methods)
		cors_headers(s, req, false);
	auth_level auth = authorized(s, req);
	if (auth == AUTH_NONE || (auth == AUTH_PUBLISHABLE && !methods)) {
		wipe_body(req);
		invalid(req, 401, NULL, NULL,
		        evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization") == NULL
		                ? "You did not provide an API key: use Authorization: Bearer <key>."
		        : auth == AUTH_PUBLISHABLE ? "A publishable key can only create payment methods."
		                                   : "Invalid API key provided.");
		return;
	}
	if (methods) {
		if (cmd == EVHTTP_REQ_POST)
			handle_post(s, req, SCOPE_METHODS, create_payment_method);
		else
			method_not_allowed(req, "POST, OPTIONS");
	} else if ((id = item_id(path, "/v1/payment_methods/")) != NULL) {
		const payment_method *pm = hmap_get(s->payment_methods, id);
		if (cmd != EVHTTP_REQ_GET)
			method_not_allowed(req, "GET");
		else if (pm == NULL)
			invalid(req, 404, "resource_missing", "id", "No such payment_method.");
		else
			respond_json(req, 200, payment_method_json(pm));
	} else if (strcmp(path, "/v1/payment_intents") == 0) {
		if (cmd == EVHTTP_REQ_POST)
			handle_post(s, req, SCOPE_INTENTS, create_intent);
		else if (cmd == EVHTTP_REQ_GET)
			list_intents(s, req, evhttp_uri_get_query(uri));
		else
			method_not_allowed(req, "GET, POST");
	} else if ((id = item_id(path, "/v1/payment_intents/")) != NULL) {
		const intent *pi = hmap_get(s->intents_by_id, id);
		if (cmd != EVHTTP_REQ_GET)
			method_not_allowed(req, "GET");
		else if (pi == NULL)
			invalid(req, 404, "resource_missing", "id", "No such payment_intent.");
		else
			respond_json(req, 200, intent_json(s, pi));
	} else if (strcmp(path, "/v1/events") == 0) {
		if (cmd == EVHTTP_REQ_GET)
			list_events(s, req, evhttp_uri_get_query(uri));
		else
			method_not_allowed(req, "GET");
	} else if (strcmp(path, "/v1/refunds") == 0) {
		if (cmd == EVHTTP_REQ_POST)
			handle_post(s, req, SCOPE_REFUNDS, create_refund);
		else
			method_not_allowed(req, "POST");
	} else {
		wipe_body(req);
		invalid(req, 404, NULL, NULL, "Unrecognized request URL.");
	}
}

/* ---- the state file ------------------------------------------------------- */

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

static orn_rc load_payment_method(psp_sandbox *s, json_t *j)
{
	const char *id, *brand, *last4, *behaviour;
	int exp_month, exp_year;
	json_int_t created;
	psp_behaviour b;
	if (json_unpack(j, "{s:s, s:{s:s, s:s, s:i, s:i}, s:I, s:s}", "id", &id, "card", "brand", &brand,
	                "last4", &last4, "exp_month", &exp_month, "exp_year", &exp_year, "created", &created,
	                "behaviour", &behaviour) != 0 ||
	    strlen(id) >= ID_MAX || !psp_behaviour_parse(behaviour, &b))
		return ORN_EDECODE;
	payment_method *pm = calloc(1, sizeof *pm);
	if (pm == NULL)
		return ORN_ENOMEM;
	snprintf(pm->id, sizeof pm->id, "%s", id);
	snprintf(pm->brand, sizeof pm->brand, "%s", brand);
	snprintf(pm->last4, sizeof pm->last4, "%s", last4);
	pm->exp_month = exp_month;
	pm->exp_year = exp_year;
	pm->created = created;
	pm->behaviour = b;
	return payment_method_add(s, pm);
}

/* An intent line: a new intent, or the later state of a known one. */
static orn_rc load_intent(psp_sandbox *s, json_t *j)
{
	const char *id, *currency, *status, *pm, *behaviour, *charge_id, *code, *decline;
	json_t *order_json = NULL, *return_json = NULL; /* a string or null */
	json_int_t amount, refunded, created;
	int attempts;
	intent_status st;
	psp_behaviour b;
	if (json_unpack(j, "{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s?o, s?o, s:s, s:s, s:I, s:i, s:I}", "id",
	                &id, "amount", &amount, "currency", &currency, "status", &status, "payment_method",
	                &pm, "behaviour", &behaviour, "charge", &charge_id, "order_id", &order_json,
	                "return_url", &return_json, "error_code", &code, "decline_code", &decline,
	                "amount_refunded", &refunded, "refund_attempts", &attempts, "created",
	                &created) != 0 ||
	    strlen(id) >= ID_MAX || strlen(pm) >= ID_MAX || strlen(charge_id) >= ID_MAX ||
	    !intent_status_parse(status, &st) || !psp_behaviour_parse(behaviour, &b))
		return ORN_EDECODE;
	const char *order_id = json_string_value(order_json), *return_url = json_string_value(return_json);
	intent *pi = hmap_get(s->intents_by_id, id);
	bool known = pi != NULL;
	if (!known) {
		pi = calloc(1, sizeof *pi);
		if (pi == NULL || (order_id != NULL && (pi->order_id = strdup(order_id)) == NULL) ||
		    (return_url != NULL && (pi->return_url = strdup(return_url)) == NULL)) {
			intent_free(pi);
			return ORN_ENOMEM;
		}
	}
	snprintf(pi->id, sizeof pi->id, "%s", id);
	pi->amount = amount;
	snprintf(pi->currency, sizeof pi->currency, "%s", currency);
	pi->status = st;
	snprintf(pi->payment_method, sizeof pi->payment_method, "%s", pm);
	pi->behaviour = b;
	snprintf(pi->charge, sizeof pi->charge, "%s", charge_id);
	snprintf(pi->error_code, sizeof pi->error_code, "%s", code);
	snprintf(pi->decline_code, sizeof pi->decline_code, "%s", decline);
	pi->amount_refunded = refunded;
	pi->refund_attempts = attempts;
	pi->created = created;
	return known ? ORN_OK : intent_add(s, pi);
}

static orn_rc load_event(psp_sandbox *s, json_t *j)
{
	const char *id, *type, *body;
	json_int_t created;
	if (json_unpack(j, "{s:s, s:s, s:I, s:s}", "id", &id, "event_type", &type, "created", &created,
	                "body", &body) != 0 ||
	    strlen(id) >= ID_MAX || strlen(type) >= sizeof(((webhook_event *)0)->type))
		return ORN_EDECODE;
	webhook_event *e = calloc(1, sizeof *e);
	if (e == NULL || (e->body = strdup(body)) == NULL) {
		free(e);
		return ORN_ENOMEM;
	}
	e->sandbox = s;
	snprintf(e->id, sizeof e->id, "%s", id);
	snprintf(e->type, sizeof e->type, "%s", type);
	e->created = created;
	return webhook_event_add(s, e);
}

static orn_rc load_delivery(psp_sandbox *s, json_t *j)
{
	const char *id;
	int deliveries, delivered;
	if (json_unpack(j, "{s:s, s:i, s:b}", "id", &id, "deliveries", &deliveries, "delivered",
	                &delivered) != 0 ||
	    deliveries < 0)
		return ORN_EDECODE;
	webhook_event *e = hmap_get(s->events_by_id, id);
	if (e == NULL)
		return ORN_EDECODE;
	e->deliveries = (unsigned)deliveries;
	e->delivered = delivered != 0;
	return ORN_OK;
}

/* The lines of ADR 009's charge API ("charge", and "refund" by charge),
 * which sandboxes wrote before it was removed. */
static bool is_charge_line(const char *type)
{
	return strcmp(type, "charge") == 0 || strcmp(type, "refund") == 0;
}

/* Reads the state file back; a missing file is an empty state. Lines of the
 * removed charge API are skipped, with one info line for all of them. */
static orn_rc load_state(psp_sandbox *s, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	long number = 0, charge_lines = 0;
	orn_rc rc = ORN_OK;
	if (f == NULL)
		return errno == ENOENT ? ORN_OK : ORN_EIO;
	while (getline(&line, &cap, f) >= 0) {
		number++;
		json_t *j = json_loads(line, 0, NULL);
		const char *type = j != NULL ? json_string_value(json_object_get(j, "type")) : NULL;
		bool charge_line = type != NULL && is_charge_line(type);
		orn_rc lrc = ORN_EDECODE;
		charge_lines += charge_line;
		if (charge_line)
			lrc = ORN_OK;
		else if (type != NULL && strcmp(type, "idempotency") == 0)
			lrc = load_record(s, j);
		else if (type != NULL && strcmp(type, "payment_method") == 0)
			lrc = load_payment_method(s, json_object_get(j, "payment_method"));
		else if (type != NULL && strcmp(type, "intent") == 0)
			lrc = load_intent(s, json_object_get(j, "intent"));
		else if (type != NULL && strcmp(type, "intent_refund") == 0)
			lrc = json_is_object(json_object_get(j, "refund")) ? ORN_OK : ORN_EDECODE;
		else if (type != NULL && strcmp(type, "event") == 0)
			lrc = load_event(s, j);
		else if (type != NULL && strcmp(type, "delivery") == 0)
			lrc = load_delivery(s, j);
		json_decref(j);
		if (lrc == ORN_ENOMEM) {
			rc = ORN_ENOMEM;
			break;
		}
		if (lrc != ORN_OK) {
			char at[24];
			snprintf(at, sizeof at, "%ld", number);
			log_warn("skipping a bad line of the PSP state file", "line", at);
		}
	}
	if (rc == ORN_OK && ferror(f))
		rc = ORN_EIO;
	free(line);
	fclose(f);
	if (rc == ORN_OK && charge_lines > 0) {
		char count[24];
		snprintf(count, sizeof count, "%ld", charge_lines);
		log_info("skipping the PSP state file's charge lines: the charge API is gone (ADR 028)",
		         "lines", count);
	}
	if (rc == ORN_OK) {
		char records[24], intents[24], events[24];
		snprintf(records, sizeof records, "%zu", hmap_count(s->idempotency));
		snprintf(intents, sizeof intents, "%zu", s->intent_count);
		snprintf(events, sizeof events, "%zu", s->event_count);
		log_info("psp state loaded", "idempotency_records", records, "intents", intents, "events",
		         events);
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

static void wipe_free(char *secret)
{
	if (secret != NULL)
		sodium_memzero(secret, strlen(secret));
	free(secret);
}

static void free_origins(psp_sandbox *s)
{
	for (size_t i = 0; i < s->cors_count; i++)
		free(s->cors_origins[i]);
	free(s->cors_origins);
	s->cors_origins = NULL;
	s->cors_count = 0;
}

/* "a, b/ ,c" -> {"a", "b", "c"}: trimmed, no trailing slash, empties skipped. */
static orn_rc parse_origins(psp_sandbox *s, const char *list)
{
	size_t cap = 1;
	free_origins(s);
	for (const char *p = list; *p != '\0'; p++)
		cap += *p == ',';
	if ((s->cors_origins = calloc(cap, sizeof *s->cors_origins)) == NULL)
		return ORN_ENOMEM;
	for (const char *p = list; *p != '\0';) {
		const char *end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		const char *a = p, *b = end;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '/'))
			b--;
		if (b > a && (s->cors_origins[s->cors_count++] = strndup(a, (size_t)(b - a))) == NULL)
			return ORN_ENOMEM;
		p = *end == ',' ? end + 1 : end;
	}
	return ORN_OK;
}

/* An http://host[:port][/path][?query] URL, or NULL. */
static struct evhttp_uri *webhook_uri(const char *url)
{
	struct evhttp_uri *uri = evhttp_uri_parse(url);
	const char *scheme = uri != NULL ? evhttp_uri_get_scheme(uri) : NULL;
	const char *host = uri != NULL ? evhttp_uri_get_host(uri) : NULL;
	if (scheme == NULL || strcasecmp(scheme, "http") != 0 || host == NULL || host[0] == '\0') {
		if (uri != NULL)
			evhttp_uri_free(uri);
		return NULL;
	}
	return uri;
}

static orn_rc parse_webhook(psp_sandbox *s, const psp_sandbox_options *o)
{
	if (o->webhook_secret != NULL && o->webhook_secret[0] != '\0' &&
	    (s->webhook_secret = strdup(o->webhook_secret)) == NULL)
		return ORN_ENOMEM;
	if (o->webhook_url == NULL || o->webhook_url[0] == '\0')
		return ORN_OK;
	if (s->webhook_secret == NULL || (s->webhook = webhook_uri(o->webhook_url)) == NULL)
		return ORN_EINVAL;
	return ORN_OK;
}

/* On the loop thread: the site psp_sandbox_set_site handed over. */
static void on_site(evutil_socket_t fd, short what, void *arg)
{
	psp_sandbox *s = arg;
	char *url, *origins;
	(void)fd;
	(void)what;
	pthread_mutex_lock(&s->site_lock);
	url = s->pending_webhook_url;
	origins = s->pending_cors_origins;
	s->pending_webhook_url = s->pending_cors_origins = NULL;
	pthread_mutex_unlock(&s->site_lock);
	if (url != NULL) {
		struct evhttp_uri *uri = url[0] != '\0' ? webhook_uri(url) : NULL;
		if (url[0] != '\0' && (uri == NULL || s->webhook_secret == NULL)) {
			log_error("the PSP webhook URL must be an http:// URL, with a webhook secret");
			if (uri != NULL)
				evhttp_uri_free(uri);
		} else {
			if (s->webhook != NULL)
				evhttp_uri_free(s->webhook); /* a try in flight keeps its own copy */
			s->webhook = uri;
			log_info("psp webhook URL set", "url", url);
			for (size_t i = 0; i < s->event_count; i++)
				delivery_schedule(s->events[i], 0);
		}
	}
	if (origins != NULL && parse_origins(s, origins) != ORN_OK)
		log_error("cannot set the PSP CORS origins", "error", "out of memory");
	free(url);
	free(origins);
}

orn_rc psp_sandbox_set_site(psp_sandbox *s, const char *webhook_url, const char *cors_origins)
{
	char *url = webhook_url != NULL ? strdup(webhook_url) : NULL;
	char *origins = cors_origins != NULL ? strdup(cors_origins) : NULL;
	if ((webhook_url != NULL && url == NULL) || (cors_origins != NULL && origins == NULL)) {
		free(url);
		free(origins);
		return ORN_ENOMEM;
	}
	if (url != NULL && url[0] != '\0') {
		struct evhttp_uri *uri = webhook_uri(url);
		if (uri == NULL) {
			free(url);
			free(origins);
			return ORN_EINVAL;
		}
		evhttp_uri_free(uri);
	}
	pthread_mutex_lock(&s->site_lock);
	if (url != NULL) {
		free(s->pending_webhook_url);
		s->pending_webhook_url = url;
	}
	if (origins != NULL) {
		free(s->pending_cors_origins);
		s->pending_cors_origins = origins;
	}
	pthread_mutex_unlock(&s->site_lock);
	event_active(s->site_event, EV_READ, 0);
	return ORN_OK;
}

static void sandbox_free(psp_sandbox *s)
{
	size_t cursor = 0;
	const char *key;
	void *value;
	while (s->held != NULL)
		hold_end(s->held);
	for (size_t i = 0; i < s->event_count; i++)
		webhook_event_free(s->events[i]);
	free(s->events);
	hmap_destroy(s->events_by_id);
	for (size_t i = 0; i < s->intent_count; i++)
		intent_free(s->intents[i]);
	free(s->intents);
	hmap_destroy(s->intents_by_id);
	while (s->payment_methods != NULL && hmap_next(s->payment_methods, &cursor, &key, &value))
		free(value);
	hmap_destroy(s->payment_methods);
	cursor = 0;
	if (s->webhook != NULL)
		evhttp_uri_free(s->webhook);
	free_origins(s);
	if (s->site_event != NULL)
		event_free(s->site_event);
	if (s->site_lock_made)
		pthread_mutex_destroy(&s->site_lock);
	free(s->pending_webhook_url);
	free(s->pending_cors_origins);
	if (s->http != NULL)
		evhttp_free(s->http);
	if (s->stop_event != NULL)
		event_free(s->stop_event);
	if (s->base != NULL)
		event_base_free(s->base);
	while (s->idempotency != NULL && hmap_next(s->idempotency, &cursor, &key, &value))
		record_free(value);
	hmap_destroy(s->idempotency);
	if (s->state_fd >= 0)
		close(s->state_fd);
	wipe_free(s->api_key);
	wipe_free(s->publishable_key);
	wipe_free(s->webhook_secret);
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
	s->idempotency = hmap_create();
	s->payment_methods = hmap_create();
	s->intents_by_id = hmap_create();
	s->events_by_id = hmap_create();
	s->base = event_base_new();
	if (s->api_key == NULL || s->idempotency == NULL || s->payment_methods == NULL ||
	    s->intents_by_id == NULL || s->events_by_id == NULL || s->base == NULL)
		goto fail;
	if (o->publishable_key != NULL && o->publishable_key[0] != '\0' &&
	    (s->publishable_key = strdup(o->publishable_key)) == NULL)
		goto fail;
	if ((rc = parse_origins(s, o->cors_origins != NULL ? o->cors_origins : "")) != ORN_OK)
		goto fail;
	if ((rc = parse_webhook(s, o)) != ORN_OK) {
		if (rc == ORN_EINVAL)
			log_error("the PSP webhook URL must be an http:// URL, with a webhook secret");
		goto fail;
	}
	rc = ORN_ENOMEM;
	s->http = evhttp_new(s->base);
	s->stop_event = event_new(s->base, -1, 0, on_stop, s->base);
	s->site_event = event_new(s->base, -1, 0, on_site, s);
	if (s->http == NULL || s->stop_event == NULL || s->site_event == NULL ||
	    pthread_mutex_init(&s->site_lock, NULL) != 0)
		goto fail;
	s->site_lock_made = true;
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
	if (o->public_url != NULL && o->public_url[0] != '\0') {
		size_t n = strlen(o->public_url);
		while (n > 0 && o->public_url[n - 1] == '/')
			n--;
		snprintf(s->public_url, sizeof s->public_url, "%.*s", (int)n, o->public_url);
	} else {
		snprintf(s->public_url, sizeof s->public_url, "http://127.0.0.1:%u", (unsigned)s->port);
	}
	/* Webhooks not delivered before the restart go again, oldest first. */
	for (size_t i = 0; i < s->event_count; i++)
		delivery_schedule(s->events[i], 0);
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
