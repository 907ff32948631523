/* gw_http.c — the evhttp server: dispatch, responses with the security
 * headers, CORS, deferred answers with deadlines, streamed answers (see
 * gw_http.h).
 *
 * Streams and libevent 2.1's ownership of the evhttp_request: when the
 * client goes away mid-stream, evhttp either detaches the request from the
 * connection (EOF and timeouts: the request is then ours to free) or frees
 * it with the connection (other errors, evhttp_free). Both paths call the
 * connection's close callback first; it tells them apart by whether the
 * request still has a connection. gw_stream_end clears the callback before
 * the final chunk, so a finished stream is never reported as closed.
 *
 * Secrets in bodies (cards, passwords): a handler reads the body from a copy
 * in the request's arena; libevent's input buffer is zeroed in place when the
 * request is answered, the arena when it is freed, and jansson frees through
 * gw_wiping_free (installed by gw_server_create). */
#include "gw_http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "gw_guard-internal.h"
#include "gw_inbox.h"
#include "hashmap.h"
#include "gw_problem.h"
#include "log.h"

#define ARENA_CHUNK  4096
#define ADDRESS_MAX  64
#define CORS_HEADERS "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Request-Id"
#define CORS_MAX_AGE "600"
#define ALLOW_MAX    96
#define UNMATCHED    "unmatched"

typedef struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	alignas(max_align_t) unsigned char data[];
} arena_chunk;

struct gw_server {
	struct event_base *base;
	struct evhttp *http;
	gw_guard *guard;      /* every connection's bytes pass it first (gw_guard-internal.h) */
	gw_handler *fallback; /* paths no route matches (gw_server_fallback), or NULL */
	void *fallback_arg;
	gw_router *router;
	gw_inbox *inbox;
	gw_metrics *metrics;
	char **cors_origins;
	size_t cors_origin_count;
	size_t max_body;
	unsigned async_deadline_ms;
	uint16_t port;
	gw_request *deferred; /* requests waiting for a gw_async completion */
	gw_stream *streams;   /* streamed answers in progress */
	size_t stream_count, max_streams;
	unsigned max_streams_per_owner; /* 0: no cap */
	hmap *streams_by_owner;         /* owner -> open streams, as a pointer-sized integer */
	struct timeval io_timeout;
	struct event *stop_event; /* activated by gw_server_stop, from any thread */
};

struct gw_request {
	gw_server *server;
	struct evhttp_request *ev;
	gw_method method;
	const char *path;
	gw_route_match match;
	struct evkeyvalq query;
	char client_addr[ADDRESS_MAX];
	char request_id[GW_REQUEST_ID_MAX]; /* the correlation id: the client's, or a fresh one */
	char owner[GW_OWNER_MAX];           /* the account the request acts for, "" if none */
	arena_chunk *arena;
	const unsigned char *body; /* the body's copy in the arena, once read */
	size_t body_len;
	int64_t start_ns;
	bool in_handler, answered, authorized;
	const char *cors_origin; /* the configured origin that matched, or NULL */
	gw_async *async;
	gw_request *prev, *next; /* in server->deferred */
};

struct gw_async {
	atomic_int refs; /* one for the loop (until answered), one for the completer */
	gw_server *server;
	gw_request *request; /* loop thread only; NULL once answered */
	struct event *deadline;
};

struct gw_stream {
	gw_server *server;
	struct evhttp_request *ev;
	struct evbuffer *chunk;
	gw_stream_closed_fn *closed;
	void *closure;
	gw_stream *prev, *next;   /* in server->streams */
	char owner[GW_OWNER_MAX]; /* counted in server->streams_by_owner when not "" */
};

typedef struct completion {
	gw_async *async;
	int status;
	json_t *body;
	bool problem;
	char *text; /* a page (content_type NULL: HTML) or a body instead of body, or NULL */
	size_t text_len;
	const char *content_type; /* of text; NULL for an HTML page */
	bool empty;               /* no body at all (204) */
} completion;

void gw_server_options_init(gw_server_options *o)
{
	memset(o, 0, sizeof(*o));
	o->bind_addr = "127.0.0.1:8080";
	o->max_body_bytes = GW_MAX_BODY_DEFAULT;
	o->max_header_bytes = 16 * 1024;
	o->io_timeout_ms = 30000;
	o->async_deadline_ms = 5000;
	o->max_streams = 1000;
	o->max_streams_per_owner = 8;
	o->header_timeout_ms = 10000;
	o->body_timeout_ms = 30000;
	o->max_connections = 10000;
	o->max_connections_per_address = 64;
}

/* ---- requests ----------------------------------------------------------- */

void *gw_request_alloc(gw_request *r, size_t size)
{
	size = (size + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
	arena_chunk *chunk = r->arena;
	if (!chunk || chunk->cap - chunk->used < size) {
		size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
		chunk = malloc(sizeof(*chunk) + cap);
		if (!chunk)
			return NULL;
		chunk->cap = cap;
		chunk->used = 0;
		chunk->next = r->arena;
		r->arena = chunk;
	}
	void *p = chunk->data + chunk->used;
	chunk->used += size;
	return p;
}

char *gw_request_strdup(gw_request *r, const char *s)
{
	size_t len = strlen(s) + 1;
	char *copy = gw_request_alloc(r, len);
	if (copy)
		memcpy(copy, s, len);
	return copy;
}

static void request_free(gw_request *r)
{
	gw_server *s = r->server;
	if (r->prev)
		r->prev->next = r->next;
	else if (s->deferred == r)
		s->deferred = r->next;
	if (r->next)
		r->next->prev = r->prev;
	while (r->arena) {
		arena_chunk *next = r->arena->next;
		sodium_memzero(r->arena->data, r->arena->used); /* bodies, tokens */
		free(r->arena);
		r->arena = next;
	}
	evhttp_clear_headers(&r->query);
	free(r);
}

gw_method gw_request_method(const gw_request *r)
{
	return r->method;
}

const char *gw_request_path(const gw_request *r)
{
	return r->path;
}

const char *gw_request_route(const gw_request *r)
{
	return r->match.pattern ? r->match.pattern : UNMATCHED;
}

const char *gw_request_param(const gw_request *r, const char *name)
{
	return gw_params_get(&r->match.params, name);
}

const char *gw_request_query(const gw_request *r, const char *name)
{
	return evhttp_find_header(&r->query, name);
}

const char *gw_request_header(const gw_request *r, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
}

const char *gw_request_id(const gw_request *r)
{
	return r->request_id;
}

/* True for a client's request id we take as ours: 1..GW_REQUEST_ID_MAX-1
 * characters of [A-Za-z0-9._:-] (nothing a log line or subject could trip on). */
static bool request_id_valid(const char *id)
{
	size_t n = id != NULL ? strlen(id) : 0;
	if (n == 0 || n >= GW_REQUEST_ID_MAX)
		return false;
	for (const char *p = id; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '_' || *p == ':' || *p == '-'))
			return false;
	return true;
}

/* r's id: X-Request-Id, else X-Correlation-Id, if valid; else "r" + 32 hex digits. */
static void set_request_id(gw_request *r, struct evkeyvalq *input)
{
	const char *id = evhttp_find_header(input, "X-Request-Id");
	if (!request_id_valid(id))
		id = evhttp_find_header(input, "X-Correlation-Id");
	if (request_id_valid(id)) {
		snprintf(r->request_id, sizeof r->request_id, "%s", id);
		return;
	}
	unsigned char random[16];
	randombytes_buf(random, sizeof random);
	r->request_id[0] = 'r';
	sodium_bin2hex(r->request_id + 1, sizeof r->request_id - 1, random, sizeof random);
}

const char *gw_request_client_addr(const gw_request *r)
{
	return r->client_addr;
}

const unsigned char *gw_request_body(gw_request *r, size_t *len)
{
	if (r->body != NULL) {
		*len = r->body_len;
		return r->body;
	}
	struct evbuffer *input = evhttp_request_get_input_buffer(r->ev);
	*len = evbuffer_get_length(input);
	if (*len == 0)
		return (const unsigned char *)"";
	/* a copy the arena owns (and wipes), not evbuffer_pullup: that would move
	 * the body into a new chain and free the old ones unwiped */
	unsigned char *copy = gw_request_alloc(r, *len + 1);
	if (copy == NULL || evbuffer_copyout(input, copy, *len) != (ev_ssize_t)*len)
		return evbuffer_pullup(input, -1); /* out of memory: read it in place */
	copy[*len] = '\0';
	r->body = copy;
	r->body_len = *len;
	return copy;
}

/* Zeroes the request's input buffer in place, chain by chain, and empties it. */
static void wipe_input(struct evhttp_request *ev)
{
	struct evbuffer *input = evhttp_request_get_input_buffer(ev);
	size_t len = input != NULL ? evbuffer_get_length(input) : 0;
	struct evbuffer_ptr at;
	if (len == 0 || evbuffer_ptr_set(input, &at, 0, EVBUFFER_PTR_SET) != 0)
		return;
	while ((size_t)at.pos < len) {
		struct evbuffer_iovec extent;
		if (evbuffer_peek(input, -1, &at, &extent, 1) < 1 || extent.iov_len == 0)
			break;
		sodium_memzero(extent.iov_base, extent.iov_len);
		if (evbuffer_ptr_set(input, &at, extent.iov_len, EVBUFFER_PTR_ADD) != 0)
			break;
	}
	evbuffer_drain(input, len);
}

/* ---- responses ---------------------------------------------------------- */

static bool header_text_ok(const char *s, bool token)
{
	if (!s || !s[0])
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c > 0x7E || (token && (c == ' ' || c == ':')))
			return false;
	}
	return true;
}

orn_rc gw_response_header(gw_request *r, const char *name, const char *value)
{
	if (!header_text_ok(name, true) || !header_text_ok(value, false))
		return ORN_EINVAL;
	return evhttp_add_header(evhttp_request_get_output_headers(r->ev), name, value) == 0 ? ORN_OK
	                                                                                     : ORN_ENOMEM;
}

/* content_type NULL: none (an answer without a body). */
static void add_standard_headers(gw_request *r, struct evkeyvalq *headers, const char *content_type)
{
	evhttp_remove_header(headers, "Content-Type");
	if (content_type != NULL)
		evhttp_add_header(headers, "Content-Type", content_type);
	evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
	if (!evhttp_find_header(headers, "Content-Security-Policy"))
		evhttp_add_header(headers, "Content-Security-Policy", "default-src 'none'");
	evhttp_add_header(headers, "Referrer-Policy", "no-referrer");
	if (r->authorized && !evhttp_find_header(headers, "Cache-Control"))
		evhttp_add_header(headers, "Cache-Control", "no-store");
	if (r->server->cors_origin_count > 0)
		evhttp_add_header(headers, "Vary", "Origin");
	if (r->cors_origin) {
		evhttp_add_header(headers, "Access-Control-Allow-Origin", r->cors_origin);
		evhttp_add_header(headers, "Access-Control-Expose-Headers", "X-Request-Id");
	}
	evhttp_remove_header(headers, "X-Request-Id");
	evhttp_add_header(headers, "X-Request-Id", r->request_id);
}

void gw_respond(gw_request *r, int status, const char *content_type, const void *body, size_t len)
{
	gw_server *s = r->server;
	assert(!r->answered);
	r->answered = true;
	add_standard_headers(r, evhttp_request_get_output_headers(r->ev), content_type);
	/* libevent 2.1 writes any body it is given, even after the header of a
	 * HEAD, 204 or 304 answer (without Content-Length): the client would read
	 * it as the start of the next answer. Never give it one. */
	if (r->method == GW_HEAD || status == 204 || status == 304)
		len = 0;
	wipe_input(r->ev);
	if (len > 0 && evbuffer_add(evhttp_request_get_output_buffer(r->ev), body, len) != 0) {
		status = 500;
		evbuffer_drain(evhttp_request_get_output_buffer(r->ev), (size_t)-1);
	}
	evhttp_send_reply(r->ev, status, gw_status_title(status), NULL);
	double seconds = (double)(orn_monotonic_ns() - r->start_ns) / 1e9;
	if (s->metrics)
		gw_metrics_observe_request(s->metrics, gw_method_name(r->method), gw_request_route(r), status,
		                           seconds);
	char status_text[8], ms_text[24];
	snprintf(status_text, sizeof status_text, "%d", status);
	snprintf(ms_text, sizeof ms_text, "%.3f", seconds * 1000);
	log_debug("request answered", "method", gw_method_name(r->method), "route", gw_request_route(r),
	          "status", status_text, "ms", ms_text);
	if (!r->in_handler)
		request_free(r);
}

void gw_respond_json(gw_request *r, int status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text) {
		static const char failure[] = "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\","
		                              "\"status\":500}";
		gw_respond(r, 500, GW_PROBLEM_CONTENT_TYPE, failure, sizeof(failure) - 1);
		return;
	}
	gw_respond(r, status, "application/json", text, strlen(text));
	free(text);
}

void gw_respond_problem(gw_request *r, json_t *problem)
{
	int status = problem ? gw_problem_status(problem) : 500;
	char *text = problem ? json_dumps(problem, JSON_COMPACT) : NULL;
	json_decref(problem);
	if (!text) {
		gw_respond_json(r, 500, NULL);
		return;
	}
	gw_respond(r, status, GW_PROBLEM_CONTENT_TYPE, text, strlen(text));
	free(text);
}

void gw_respond_error(gw_request *r, int status, const char *detail)
{
	gw_respond_problem(r, gw_problem_new(status, detail));
}

void gw_respond_html(gw_request *r, int status, const char *html, size_t len)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(r->ev);
	evhttp_remove_header(headers, "Content-Security-Policy");
	evhttp_remove_header(headers, "Cache-Control");
	evhttp_add_header(headers, "Content-Security-Policy", GW_HTML_CSP);
	evhttp_add_header(headers, "Cache-Control", "no-store");
	gw_respond(r, status, "text/html; charset=utf-8", html, len);
}

static bool is_json_content_type(const char *value)
{
	static const char json[] = "application/json";
	if (!value || strncasecmp(value, json, sizeof(json) - 1) != 0)
		return false;
	value += sizeof(json) - 1;
	while (*value == ' ')
		value++;
	return *value == '\0' || *value == ';';
}

orn_rc gw_request_validate(gw_request *r, const gw_field *schema, json_t **out, json_t **problem)
{
	size_t len;
	const unsigned char *body = gw_request_body(r, &len);
	orn_rc rc = ORN_ETOOBIG;
	*out = NULL;
	*problem = NULL;
	if (len <= r->server->max_body && !is_json_content_type(gw_request_header(r, "Content-Type"))) {
		*problem = gw_problem_new(415, "the request body must be application/json");
		return ORN_EINVAL;
	}
	if (len <= r->server->max_body)
		rc = gw_validate_json(body, len, r->server->max_body, schema, out, problem);
	if (rc == ORN_ETOOBIG)
		*problem = gw_problem_new(413, "the request body is too large");
	else if (rc != ORN_OK && rc != ORN_EINVAL)
		*problem = gw_problem_new(500, NULL);
	return rc;
}

bool gw_request_json(gw_request *r, const gw_field *schema, json_t **out)
{
	json_t *problem = NULL;
	if (gw_request_validate(r, schema, out, &problem) == ORN_OK)
		return true;
	gw_respond_problem(r, problem);
	return false;
}

/* ---- deferred answers --------------------------------------------------- */

static void async_release(gw_async *a)
{
	if (atomic_fetch_sub(&a->refs, 1) == 1) {
		event_free(a->deadline);
		free(a);
	}
}

/* Detaches a's request for answering; NULL if it was answered already. */
static gw_request *async_take_request(gw_async *a)
{
	gw_request *r = a->request;
	if (!r)
		return NULL;
	a->request = NULL;
	r->async = NULL;
	event_del(a->deadline);
	return r;
}

static void deadline_expired(evutil_socket_t fd, short what, void *arg)
{
	gw_async *a = arg;
	gw_request *r = async_take_request(a);
	if (!r)
		return;
	log_set_correlation(r->request_id);
	log_warn("deferred request missed its deadline", "route", gw_request_route(r));
	gw_respond_error(r, 503, "a dependency did not answer in time");
	log_set_correlation(NULL);
	async_release(a); /* the loop's reference */
}

gw_async *gw_request_defer(gw_request *r, unsigned deadline_ms)
{
	gw_server *s = r->server;
	assert(!r->answered && !r->async);
	if (deadline_ms == 0)
		deadline_ms = s->async_deadline_ms;
	gw_async *a = calloc(1, sizeof(*a));
	if (!a)
		goto fail;
	a->deadline = evtimer_new(s->base, deadline_expired, a);
	if (!a->deadline)
		goto fail;
	struct timeval tv = {.tv_sec = deadline_ms / 1000, .tv_usec = (deadline_ms % 1000) * 1000};
	if (evtimer_add(a->deadline, &tv) != 0)
		goto fail;
	atomic_init(&a->refs, 2);
	a->server = s;
	a->request = r;
	r->async = a;
	r->next = s->deferred;
	if (s->deferred)
		s->deferred->prev = r;
	s->deferred = r;
	return a;
fail:
	if (a && a->deadline)
		event_free(a->deadline);
	free(a);
	gw_respond_error(r, 500, NULL);
	return NULL;
}

static void completion_run(void *arg, bool run)
{
	completion *c = arg;
	gw_async *a = c->async;
	gw_request *r = run ? async_take_request(a) : NULL;
	if (r) {
		log_set_correlation(r->request_id);
		if (c->empty)
			gw_respond(r, c->status, NULL, NULL, 0);
		else if (c->text && c->content_type == NULL)
			gw_respond_html(r, c->status, c->text, c->text_len);
		else if (c->text)
			gw_respond(r, c->status, c->content_type, c->text, c->text_len);
		else if (c->problem)
			gw_respond_problem(r, c->body);
		else
			gw_respond_json(r, c->status, c->body);
		c->body = NULL;
		async_release(a); /* the loop's reference */
		log_set_correlation(NULL);
	}
	json_decref(c->body);
	free(c->text);
	async_release(a); /* the completer's reference */
	free(c);
}

static void async_post(gw_async *a, int status, json_t *body, bool problem, char *text, size_t text_len,
                       const char *content_type, bool empty)
{
	completion *c = malloc(sizeof(*c));
	if (c)
		*c = (completion){.async = a,
		                  .status = status,
		                  .body = body,
		                  .problem = problem,
		                  .text = text,
		                  .text_len = text_len,
		                  .content_type = content_type,
		                  .empty = empty};
	if (!c || gw_inbox_post(a->server->inbox, completion_run, c) != ORN_OK) {
		/* Out of memory: the deadline will answer 503. */
		free(c);
		json_decref(body);
		free(text);
		async_release(a);
	}
}

void gw_async_complete_json(gw_async *a, int status, json_t *body)
{
	async_post(a, status, body, false, NULL, 0, NULL, false);
}

void gw_async_complete_problem(gw_async *a, json_t *problem)
{
	async_post(a, problem ? gw_problem_status(problem) : 500, problem, true, NULL, 0, NULL, false);
}

/* Posts a copy of text (content_type NULL: an HTML page). */
static void async_post_text(gw_async *a, int status, const char *content_type, const void *text, size_t len)
{
	char *copy = malloc(len + 1);
	if (copy == NULL) {
		async_post(a, 500, gw_problem_new(500, NULL), true, NULL, 0, NULL, false);
		return;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	async_post(a, status, NULL, false, copy, len, content_type, false);
}

void gw_async_complete_html(gw_async *a, int status, const char *html, size_t len)
{
	async_post_text(a, status, NULL, html, len);
}

void gw_async_complete_body(gw_async *a, int status, const char *content_type, const void *body, size_t len)
{
	async_post_text(a, status, content_type, body, len);
}

void gw_async_complete_empty(gw_async *a, int status)
{
	async_post(a, status, NULL, false, NULL, 0, NULL, true);
}

void gw_async_cancel(gw_async *a)
{
	gw_async_complete_problem(a, gw_problem_new(503, "a dependency is unavailable"));
}

/* ---- streamed answers ----------------------------------------------------- */

static size_t owner_streams(const gw_server *s, const char *owner)
{
	return (size_t)(uintptr_t)hmap_get(s->streams_by_owner, owner);
}

void gw_request_set_owner(gw_request *r, const char *owner)
{
	snprintf(r->owner, sizeof r->owner, "%s", owner != NULL ? owner : "");
}

static void stream_unlink(gw_stream *st)
{
	gw_server *s = st->server;
	if (st->prev)
		st->prev->next = st->next;
	else if (s->streams == st)
		s->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	st->prev = st->next = NULL;
	s->stream_count--;
	if (st->owner[0] != '\0') {
		size_t n = owner_streams(s, st->owner);
		if (n <= 1)
			hmap_remove(s->streams_by_owner, st->owner);
		else
			hmap_put(s->streams_by_owner, st->owner,
			         (void *)(uintptr_t)(n - 1)); /* replaces: no allocation */
	}
}

static void stream_free(gw_stream *st)
{
	if (st->chunk)
		evbuffer_free(st->chunk);
	free(st);
}

/* The client went away: see the file comment for who frees the request. */
static void stream_connection_closed(void *arg)
{
	gw_stream *st = arg;
	stream_unlink(st);
	if (evhttp_request_get_connection(st->ev) == NULL)
		evhttp_request_free(st->ev);
	st->closed(st->closure);
	stream_free(st);
}

gw_stream *gw_respond_stream(gw_request *r, const char *content_type, gw_stream_closed_fn *closed,
                             void *closure)
{
	gw_server *s = r->server;
	assert(!r->answered && closed != NULL);
	if (s->stream_count >= s->max_streams) {
		gw_response_header(r, "Retry-After", "5");
		gw_respond_error(r, 503, "too many event streams are open; retry later");
		return NULL;
	}
	size_t owned = r->owner[0] != '\0' ? owner_streams(s, r->owner) : 0;
	if (r->owner[0] != '\0' && s->max_streams_per_owner > 0 && owned >= s->max_streams_per_owner) {
		gw_response_header(r, "Retry-After", "5");
		gw_respond_error(r, 429, "too many event streams are open for this account; close one first");
		return NULL;
	}
	struct evhttp_connection *evcon = evhttp_request_get_connection(r->ev);
	gw_stream *st = calloc(1, sizeof(*st));
	if (st == NULL || evcon == NULL || (st->chunk = evbuffer_new()) == NULL ||
	    (r->owner[0] != '\0' &&
	     hmap_put(s->streams_by_owner, r->owner, (void *)(uintptr_t)(owned + 1)) != ORN_OK) ||
	    gw_guard_on_close(s->guard, evcon, stream_connection_closed, st) != ORN_OK) {
		if (st != NULL && r->owner[0] != '\0' && owned == 0)
			hmap_remove(s->streams_by_owner, r->owner);
		else if (st != NULL && r->owner[0] != '\0')
			hmap_put(s->streams_by_owner, r->owner, (void *)(uintptr_t)owned);
		if (st)
			stream_free(st);
		gw_respond_error(r, 500, NULL);
		return NULL;
	}
	st->server = s;
	st->ev = r->ev;
	snprintf(st->owner, sizeof st->owner, "%s", r->owner);
	st->closed = closed;
	st->closure = closure;
	st->next = s->streams;
	if (s->streams)
		s->streams->prev = st;
	s->streams = st;
	s->stream_count++;
	r->answered = true;
	struct evkeyvalq *headers = evhttp_request_get_output_headers(r->ev);
	evhttp_remove_header(headers, "Cache-Control");
	evhttp_add_header(headers, "Cache-Control", "no-store");
	evhttp_add_header(headers, "Connection", "close");
	add_standard_headers(r, headers, content_type);
	wipe_input(r->ev);
	/* The client only listens: no read timeout; writes keep the server's. */
	bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), NULL, &s->io_timeout);
	evhttp_send_reply_start(r->ev, 200, gw_status_title(200));
	if (s->metrics)
		gw_metrics_observe_request(s->metrics, gw_method_name(r->method), gw_request_route(r), 200,
		                           (double)(orn_monotonic_ns() - r->start_ns) / 1e9);
	if (!r->in_handler)
		request_free(r);
	return st;
}

orn_rc gw_stream_write(gw_stream *st, const void *data, size_t len)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(st->ev);
	if (evcon == NULL)
		return ORN_EUNAVAILABLE;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	if (evbuffer_get_length(bufferevent_get_output(bev)) > GW_STREAM_BACKLOG_MAX)
		return ORN_ETOOBIG;
	if (len == 0)
		return ORN_OK;
	if (evbuffer_add(st->chunk, data, len) != 0)
		return ORN_ENOMEM;
	evhttp_send_reply_chunk(st->ev, st->chunk);
	evbuffer_drain(st->chunk, evbuffer_get_length(st->chunk));
	return ORN_OK;
}

void gw_stream_end(gw_stream *st)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(st->ev);
	if (evcon != NULL)
		gw_guard_on_close(st->server->guard, evcon, NULL, NULL);
	evhttp_send_reply_end(st->ev); /* frees a detached request itself */
	stream_unlink(st);
	stream_free(st);
}

size_t gw_server_stream_count(const gw_server *s)
{
	return s->stream_count;
}

/* ---- dispatch ----------------------------------------------------------- */

static gw_method method_of(enum evhttp_cmd_type command)
{
	switch (command) {
	case EVHTTP_REQ_GET:
		return GW_GET;
	case EVHTTP_REQ_HEAD:
		return GW_HEAD;
	case EVHTTP_REQ_POST:
		return GW_POST;
	case EVHTTP_REQ_PUT:
		return GW_PUT;
	case EVHTTP_REQ_PATCH:
		return GW_PATCH;
	case EVHTTP_REQ_DELETE:
		return GW_DELETE;
	case EVHTTP_REQ_OPTIONS:
		return GW_OPTIONS;
	default:
		return GW_METHOD_OTHER;
	}
}

static const char *allowed_origin(const gw_server *s, const char *origin)
{
	if (!origin)
		return NULL;
	for (size_t i = 0; i < s->cors_origin_count; i++)
		if (strcmp(s->cors_origins[i], origin) == 0)
			return s->cors_origins[i];
	return NULL;
}

/* OPTIONS without an explicit route: Allow, plus a CORS preflight answer for
 * a configured origin. */
static void answer_options(gw_request *r, unsigned allowed)
{
	char allow[ALLOW_MAX];
	struct evkeyvalq *headers = evhttp_request_get_output_headers(r->ev);
	gw_methods_format(allowed | (unsigned)GW_OPTIONS, allow, sizeof(allow));
	evhttp_add_header(headers, "Allow", allow);
	if (r->cors_origin && gw_request_header(r, "Access-Control-Request-Method")) {
		evhttp_add_header(headers, "Access-Control-Allow-Methods", allow);
		evhttp_add_header(headers, "Access-Control-Allow-Headers", CORS_HEADERS);
		evhttp_add_header(headers, "Access-Control-Max-Age", CORS_MAX_AGE);
	}
	gw_respond(r, 204, "application/json", NULL, 0);
}

static void dispatch(gw_request *r)
{
	gw_server *s = r->server;
	char allow[ALLOW_MAX];
	gw_route_result found = gw_router_match(s->router, r->method, r->path, &r->match);
	if (found != GW_ROUTE_FOUND) {
		r->match.pattern = NULL;
		if (r->method == GW_OPTIONS && found == GW_ROUTE_METHOD_NOT_ALLOWED) {
			answer_options(r, r->match.allowed);
			return;
		}
		if (found == GW_ROUTE_NOT_FOUND && s->fallback != NULL) {
			r->in_handler = true;
			s->fallback(r, s->fallback_arg);
			r->in_handler = false;
			if (r->answered)
				request_free(r);
			else if (!r->async)
				gw_respond_error(r, 500, NULL);
			return;
		}
		if (found == GW_ROUTE_NOT_FOUND) {
			gw_respond_error(r, 404, "no resource at this path");
			return;
		}
		gw_methods_format(r->match.allowed, allow, sizeof(allow));
		evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Allow", allow);
		gw_respond_error(r, 405, "this method is not allowed on this resource");
		return;
	}
	if (evbuffer_get_length(evhttp_request_get_input_buffer(r->ev)) > s->max_body) {
		gw_respond_error(r, 413, "the request body is too large");
		return;
	}
	r->in_handler = true;
	r->match.handler(r, r->match.arg);
	r->in_handler = false;
	if (r->answered) {
		request_free(r);
	} else if (!r->async) {
		log_error("handler returned without answering", "route", gw_request_route(r));
		gw_respond_error(r, 500, NULL);
	}
}

/* The guard's own request in place of one it refused (gw_guard-internal.h):
 * the refusal's problem, then evhttp closes the connection. */
static void answer_refusal(gw_request *r, const char *code)
{
	int status;
	const char *detail;
	gw_guard_refusal(code, &status, &detail);
	struct evkeyvalq *headers = evhttp_request_get_output_headers(r->ev);
	evhttp_add_header(headers, "Connection", "close");
	if (status == 503)
		evhttp_add_header(headers, "Retry-After", "5");
	gw_respond_error(r, status, detail);
}

static void on_request(struct evhttp_request *ev, void *arg)
{
	gw_server *s = arg;
	gw_request *r = calloc(1, sizeof(*r));
	if (!r) { /* out of memory: a fixed problem, not evhttp's HTML page */
		static const char body[] = "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\","
		                           "\"status\":503,\"detail\":\"the server is out of memory\"}";
		evhttp_add_header(evhttp_request_get_output_headers(ev), "Content-Type",
		                  "application/problem+json");
		evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
		struct evbuffer *out = evbuffer_new();
		if (out != NULL)
			evbuffer_add_reference(out, body, sizeof body - 1, NULL, NULL);
		evhttp_send_reply(ev, 503, "Service Unavailable", out);
		if (out != NULL)
			evbuffer_free(out);
		return;
	}
	TAILQ_INIT(&r->query);
	r->server = s;
	r->ev = ev;
	r->start_ns = orn_monotonic_ns();
	r->method = method_of(evhttp_request_get_command(ev));
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	r->path = path && path[0] ? path : "/";
	char *peer = NULL;
	uint16_t peer_port = 0;
	evhttp_connection_get_peer(evhttp_request_get_connection(ev), &peer, &peer_port);
	snprintf(r->client_addr, sizeof(r->client_addr), "%s", peer ? peer : "");
	struct evkeyvalq *input = evhttp_request_get_input_headers(ev);
	r->authorized = evhttp_find_header(input, "Authorization") != NULL;
	r->cors_origin = allowed_origin(s, evhttp_find_header(input, "Origin"));
	set_request_id(r, input);
	/* Every line logged while handling, and every command sent, carries it. */
	log_set_correlation(r->request_id);
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	const char *refusal = evhttp_find_header(input, GW_GUARD_HEADER);
	if (refusal != NULL)
		answer_refusal(r, refusal);
	else if (query && strstr(query, "%00") != NULL)
		gw_respond_error(r, 400, "a query value may not contain %00 (NUL)");
	else if (query && evhttp_parse_query_str(query, &r->query) != 0)
		gw_respond_error(r, 400, "malformed query string");
	else
		dispatch(r);
	log_set_correlation(NULL);
}

/* ---- the server --------------------------------------------------------- */

/* Splits "host:port" / "[v6]:port" into host (cap bytes) and port. */
static bool parse_address(const char *address, char *host, size_t cap, uint16_t *port)
{
	const char *colon = address ? strrchr(address, ':') : NULL;
	if (!colon || colon == address)
		return false;
	const char *start = address, *end = colon;
	if (address[0] == '[') {
		if (end[-1] != ']')
			return false;
		start++;
		end--;
	}
	if ((size_t)(end - start) >= cap || end == start)
		return false;
	memcpy(host, start, (size_t)(end - start));
	host[end - start] = '\0';
	char *tail = NULL;
	long value = strtol(colon + 1, &tail, 10);
	if (colon[1] == '\0' || *tail != '\0' || value < 0 || value > 65535)
		return false;
	*port = (uint16_t)value;
	return true;
}

static uint16_t bound_port(struct evhttp_bound_socket *bound)
{
	struct sockaddr_storage address;
	socklen_t len = sizeof(address);
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&address, &len) != 0)
		return 0;
	if (address.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&address)->sin_port);
	if (address.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
	return 0;
}

static orn_rc configure(gw_server *s, const gw_server_options *o)
{
	s->max_body = o->max_body_bytes ? o->max_body_bytes : GW_MAX_BODY_DEFAULT;
	s->async_deadline_ms = o->async_deadline_ms ? o->async_deadline_ms : 5000;
	s->max_streams = o->max_streams ? o->max_streams : 1000;
	s->max_streams_per_owner = o->max_streams_per_owner;
	if ((s->streams_by_owner = hmap_create()) == NULL)
		return ORN_ENOMEM;
	s->metrics = o->metrics;
	/* evhttp's own cap is a backstop; the gateway answers 413 below it. */
	evhttp_set_max_body_size(s->http, (ev_ssize_t)(2 * s->max_body));
	size_t max_header = o->max_header_bytes ? o->max_header_bytes : 16384;
	/* The guard enforces both limits with problem+json; evhttp's are backstops. */
	evhttp_set_max_headers_size(s->http, (ev_ssize_t)(2 * max_header));
	gw_guard_options go = {.max_header_bytes = max_header,
	                       .max_body_bytes = s->max_body,
	                       .header_timeout_ms = o->header_timeout_ms ? o->header_timeout_ms : 10000,
	                       .body_timeout_ms = o->body_timeout_ms ? o->body_timeout_ms : 30000,
	                       .max_connections = o->max_connections,
	                       .max_connections_per_address = o->max_connections_per_address,
	                       .metrics = o->metrics};
	if (gw_guard_create(s->base, s->http, &go, &s->guard) != ORN_OK)
		return ORN_ENOMEM;
	unsigned timeout_ms = o->io_timeout_ms ? o->io_timeout_ms : 30000;
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	evhttp_set_timeout_tv(s->http, &tv);
	s->io_timeout = tv;
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
	                                            EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
	evhttp_set_gencb(s->http, on_request, s);
	if (o->cors_origin_count > 0) {
		s->cors_origins = calloc(o->cors_origin_count, sizeof(char *));
		if (!s->cors_origins)
			return ORN_ENOMEM;
		for (size_t i = 0; i < o->cors_origin_count; i++) {
			s->cors_origins[i] = strdup(o->cors_origins[i]);
			if (!s->cors_origins[i])
				return ORN_ENOMEM;
			s->cors_origin_count = i + 1;
		}
	}
	return ORN_OK;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

orn_rc gw_server_create(const gw_server_options *o, gw_server **out)
{
	char host[256];
	uint16_t port = 0;
	orn_rc rc = ORN_ENOMEM;
	*out = NULL;
	gw_json_install_wiping_alloc();
	if (!parse_address(o->bind_addr, host, sizeof(host), &port))
		return ORN_EINVAL;
	gw_server *s = calloc(1, sizeof(*s));
	if (!s)
		return ORN_ENOMEM;
	s->base = gw_event_base_new();
	if (!s->base)
		goto fail;
	s->http = evhttp_new(s->base);
	s->router = gw_router_create();
	s->inbox = gw_inbox_create(s->base);
	s->stop_event = event_new(s->base, -1, 0, on_stop, s->base);
	if (!s->http || !s->router || !s->inbox || !s->stop_event)
		goto fail;
	if ((rc = configure(s, o)) != ORN_OK)
		goto fail;
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(s->http, host, port);
	if (!bound) {
		log_error("cannot bind the HTTP listener", "address", o->bind_addr);
		rc = ORN_EUNAVAILABLE;
		goto fail;
	}
	s->port = bound_port(bound);
	*out = s;
	return ORN_OK;
fail:
	gw_server_destroy(s);
	return rc;
}

void gw_server_destroy(gw_server *s)
{
	if (!s)
		return;
	while (s->deferred) {
		gw_request *r = s->deferred;
		gw_async *a = r->async;
		if (a) {
			async_take_request(a);
			async_release(a);
		}
		request_free(r);
	}
	/* Streams end with their owners told; evhttp_free then frees the
	 * connections and the requests still attached to them. */
	while (s->streams) {
		gw_stream *st = s->streams;
		struct evhttp_connection *evcon = evhttp_request_get_connection(st->ev);
		if (evcon != NULL)
			gw_guard_on_close(s->guard, evcon, NULL, NULL);
		else
			evhttp_request_free(st->ev);
		stream_unlink(st);
		st->closed(st->closure);
		stream_free(st);
	}
	if (s->http)
		evhttp_free(s->http);
	gw_guard_destroy(s->guard); /* after evhttp_free: it closes what lingers */
	hmap_destroy(s->streams_by_owner);
	gw_inbox_destroy(s->inbox);
	gw_router_destroy(s->router);
	for (size_t i = 0; i < s->cors_origin_count; i++)
		free(s->cors_origins[i]);
	free(s->cors_origins);
	if (s->stop_event)
		event_free(s->stop_event);
	if (s->base)
		event_base_free(s->base);
	free(s);
}

uint16_t gw_server_port(const gw_server *s)
{
	return s->port;
}

struct event_base *gw_server_base(gw_server *s)
{
	return s->base;
}

orn_rc gw_server_route(gw_server *s, gw_method method, const char *pattern, gw_handler *handler, void *arg)
{
	return gw_router_add(s->router, method, pattern, handler, arg);
}

void gw_server_fallback(gw_server *s, gw_handler *handler, void *arg)
{
	s->fallback = handler;
	s->fallback_arg = arg;
}

const gw_router *gw_server_router(const gw_server *s)
{
	return s->router;
}

orn_rc gw_server_run(gw_server *s)
{
	return event_base_dispatch(s->base) < 0 ? ORN_EINTERNAL : ORN_OK;
}

/* A plain event_base_loopbreak is lost if it comes before the loop has
 * started (the loop clears the flag when it starts); an activated event is
 * not: it waits in the active queue and breaks the loop as soon as it runs. */
void gw_server_stop(gw_server *s)
{
	event_active(s->stop_event, EV_READ, 0);
}

/* ---- wiping freed memory ------------------------------------------------- */

void gw_wipe_block(void *p)
{
	if (p != NULL)
		sodium_memzero(p, malloc_usable_size(p));
}

void gw_wiping_free(void *p)
{
	gw_wipe_block(p);
	free(p);
}

static void install_wiping_alloc(void)
{
	json_set_alloc_funcs(malloc, gw_wiping_free);
}

void gw_json_install_wiping_alloc(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, install_wiping_alloc);
}
