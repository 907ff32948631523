/* gw_http.h — the gateway's HTTP server on libevent's evhttp.
 *
 * One event loop thread runs evhttp, the router and every handler. A
 * handler answers its request with one gw_respond* call, or defers it with
 * gw_request_defer and completes it later from any thread through the
 * returned gw_async; a deferred request that is not completed by its
 * deadline is answered 503 (problem+json), so a silent dependency never
 * hangs a client.
 *
 * Every response carries Content-Type, X-Content-Type-Options: nosniff,
 * Content-Security-Policy: default-src 'none' (GW_HTML_CSP for HTML pages,
 * gw_static.h's policy for the web pages' files),
 * Referrer-Policy: no-referrer,
 * and Cache-Control: no-store when the request had an Authorization header.
 * CORS headers are added only for an Origin that exactly equals one of the
 * configured origins; OPTIONS preflights are answered by the server.
 *
 * Every connection first passes the guard (gw_guard-internal.h, ADR 020):
 * a request reaches evhttp only once it is whole and its framing is valid
 * under RFC 9112's strict rules; anything else is answered with
 * problem+json and "Connection: close", never with evhttp's HTML pages.
 * Limits and the statuses a client sees:
 * - body over max_body_bytes: 413 (a Content-Length above it before the
 *   body is read; a chunked body once its chunks pass it);
 * - request line plus headers over max_header_bytes: 431;
 * - two Content-Length headers, one that is not digits, whitespace before a
 *   colon, a folded or malformed header field, a bare LF or CR, a
 *   Transfer-Encoding other than exactly "chunked" or one beside
 *   Content-Length, chunk extensions or trailers, no or two Host headers in
 *   HTTP/1.1: 400; an unknown method (or CONNECT): 501; another HTTP
 *   version: 505; an Expect other than 100-continue: 417;
 * - header_timeout_ms: the request line and headers must arrive within it
 *   from their first byte (a connection's first request: from the accept);
 *   body_timeout_ms: the body within it from the end of the headers; 408;
 * - max_connections open at once, max_connections_per_address from one
 *   client address: the connection past them is answered 503 with
 *   Retry-After and closed;
 * - %00 in the query: 400;
 * - io_timeout_ms: idle time allowed while reading a request or writing a
 *   response (libevent 2.1 has one value for both; the timer restarts on
 *   progress). A timed-out connection is closed without an answer;
 * - streamed answers (gw_respond_stream, for Server-Sent Events) have no read
 *   timeout (the client only listens), keep io_timeout_ms for writes, are
 *   capped at max_streams open at once (503 above) and at
 *   max_streams_per_owner of one account (429 above), and close their
 *   connection when they end. */
#ifndef ORION_GW_HTTP_H
#define ORION_GW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "gw_metrics.h"
#include "gw_router.h"
#include "gw_validate.h"
#include "orn.h"

#define GW_REQUEST_ID_MAX 129 /* bytes of a request (correlation) id, NUL included */
#define GW_OWNER_MAX      65  /* bytes of a request's owner (an account id), NUL included */

struct event_base;

typedef struct gw_server gw_server;

typedef struct gw_server_options {
	const char *bind_addr;                /* "host:port", "[v6]:port"; port 0 = ephemeral */
	size_t max_body_bytes;                /* default 1 MiB */
	size_t max_header_bytes;              /* default 16 KiB */
	unsigned io_timeout_ms;               /* default 30000 */
	unsigned async_deadline_ms;           /* default deadline of gw_request_defer, 5000 */
	unsigned max_streams;                 /* open streamed answers at most, default 1000 */
	unsigned max_streams_per_owner;       /* of one owner (gw_request_set_owner), default 8 (0: no cap) */
	unsigned header_timeout_ms;           /* request line and headers, default 10000 */
	unsigned body_timeout_ms;             /* the body after its headers, default 30000 */
	unsigned max_connections;             /* open at once, default 10000 (0: no cap) */
	unsigned max_connections_per_address; /* from one client address, default 64 (0: no cap) */
	const char *const *cors_origins;      /* exact origins ("https://shop.example"), copied */
	size_t cors_origin_count;
	gw_metrics *metrics; /* optional; not owned, must outlive the server */
} gw_server_options;

/* Fills o with the defaults (bind_addr "127.0.0.1:8080", no CORS). */
void gw_server_options_init(gw_server_options *o);

/* Creates the server with its own event loop and binds the socket.
 * ORN_EINVAL for a bad address, ORN_EUNAVAILABLE if the bind fails,
 * ORN_ENOMEM. On failure *out is NULL and nothing is left allocated. */
orn_rc gw_server_create(const gw_server_options *o, gw_server **out);

/* Closes the socket, answers nothing more and frees everything, including
 * deferred requests. Call after gw_server_run has returned and after every
 * thread holding a gw_async has completed it. NULL is accepted. */
void gw_server_destroy(gw_server *s);

/* The bound port (useful with port 0). */
uint16_t gw_server_port(const gw_server *s);

/* The loop, for components that deliver results to it (gw_password). */
struct event_base *gw_server_base(gw_server *s);

/* Routes method + pattern to handler(arg); before gw_server_run only.
 * Errors as gw_router_add. */
orn_rc gw_server_route(gw_server *s, gw_method method, const char *pattern, gw_handler *handler, void *arg);

/* Hands every request whose path no route matches to handler(arg) instead
 * of answering 404 (the static files, gw_static.h); a path that matches a
 * route with another method still gets 405. One fallback; NULL removes it.
 * Before gw_server_run only. The handler answers like any other. */
void gw_server_fallback(gw_server *s, gw_handler *handler, void *arg);

/* The routing table, e.g. to list every route (gw_router_count/route_at). */
const gw_router *gw_server_router(const gw_server *s);

/* Runs the loop on the calling thread until gw_server_stop. */
orn_rc gw_server_run(gw_server *s);

/* Makes gw_server_run return; safe from any thread and from handlers. */
void gw_server_stop(gw_server *s);

/* ---- the request, valid on the loop thread until it is answered -------- */

gw_method gw_request_method(const gw_request *r);
/* The raw (percent-encoded) path without the query. */
const char *gw_request_path(const gw_request *r);
/* The matched route's pattern, e.g. "/api/v1/products/{id}". */
const char *gw_request_route(const gw_request *r);
/* A decoded path parameter, or NULL. */
const char *gw_request_param(const gw_request *r, const char *name);
/* A decoded query argument (the first if repeated), or NULL. */
const char *gw_request_query(const gw_request *r, const char *name);
/* A request header (case-insensitive name), or NULL. */
const char *gw_request_header(const gw_request *r, const char *name);
/* Names the account r acts for (an id, at most GW_OWNER_MAX - 1 bytes; the
 * API sets it once the bearer token is checked): streamed answers are
 * capped per owner (max_streams_per_owner, 429 above). */
void gw_request_set_owner(gw_request *r, const char *owner);
/* The peer's address as text ("127.0.0.1"). */
const char *gw_request_client_addr(const gw_request *r);
/* The request's correlation id: the client's X-Request-Id (else
 * X-Correlation-Id) when it is 1..GW_REQUEST_ID_MAX-1 characters of
 * [A-Za-z0-9._:-], else a fresh "r" + 32 hex digits. Every answer echoes it
 * in X-Request-Id; it is the log correlation id while the request is handled
 * and the correlation id of the commands the request sends. */
const char *gw_request_id(const gw_request *r);
/* The body; *len receives its size. Never NULL (an empty body is ""). The
 * bytes are a copy in the request's arena (callers may overwrite them); the
 * arena and libevent's input buffer are wiped (zeroed) when the request is
 * answered or freed, since a body may hold a card or a password. */
const unsigned char *gw_request_body(gw_request *r, size_t *len);

/* Per-request arena: memory freed in one go when the request is answered
 * (or the server destroyed). NULL on allocation failure. */
void *gw_request_alloc(gw_request *r, size_t size);
char *gw_request_strdup(gw_request *r, const char *s);

/* Validates the JSON body against schema. On success returns true and *out
 * is the parsed object (new reference; the caller json_decrefs it). On
 * failure the request has been answered (400 with the errors, 413 for a
 * large body, 415 unless Content-Type is application/json, 500 on memory)
 * and false is returned. */
bool gw_request_json(gw_request *r, const gw_field *schema, json_t **out);
/* gw_request_json without the answer: ORN_OK with *out as there, or another
 * code with *problem the answer gw_request_json would give (new reference,
 * the caller answers or frees it; NULL when out of memory). */
orn_rc gw_request_validate(gw_request *r, const gw_field *schema, json_t **out, json_t **problem);

/* Adds a response header. Values with bytes outside printable ASCII are
 * refused (ORN_EINVAL): no header injection, and raw input does not belong in
 * headers anyway. Content-Type is set by the respond functions. */
orn_rc gw_response_header(gw_request *r, const char *name, const char *value);

/* Answers with body (len bytes) of content_type. After any gw_respond*
 * call the request must not be used again. A 204 or 304 answer, and any
 * answer to HEAD, never carries a body (libevent 2.1 would write it after a
 * header without Content-Length and break the next answer on a keep-alive
 * connection): body is dropped for them. */
void gw_respond(gw_request *r, int status, const char *content_type, const void *body, size_t len);
/* Answers with a JSON value (application/json; a reference is stolen;
 * NULL or a dump failure answers 500). */
void gw_respond_json(gw_request *r, int status, json_t *body);
/* Answers with a problem object (application/problem+json; stolen). The
 * status is the problem's. */
void gw_respond_problem(gw_request *r, json_t *problem);
/* Shorthand: answers gw_problem_new(status, detail). */
void gw_respond_error(gw_request *r, int status, const char *detail);

/* The Content-Security-Policy of the gateway's small HTML pages (forms that
 * post to the gateway itself, inline styles, nothing else, never framed). */
#define GW_HTML_CSP                                                                                          \
	"default-src 'none'; form-action 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"

/* Answers an HTML page (text/html; charset=utf-8) with GW_HTML_CSP and
 * Cache-Control: no-store. The caller escapes every value in html. */
void gw_respond_html(gw_request *r, int status, const char *html, size_t len);

/* ---- streamed answers --------------------------------------------------- */

typedef struct gw_stream gw_stream;

/* Called once on the loop thread when a stream ends without gw_stream_end:
 * the client went away (closed, reset, or a write timed out), or the server
 * is being destroyed. The handle is freed right after the call: the owner
 * forgets it and never passes it to gw_stream_* again. */
typedef void gw_stream_closed_fn(void *closure);

/* Answers r with status 200 and content_type, the body to follow in pieces
 * (chunked transfer encoding, Connection: close, Cache-Control: no-store,
 * the standard headers). After the call r must not be used again. Returns
 * the stream, or NULL after answering 503 (max_streams open already) or 500
 * (allocation failure). closed(closure) reports the end the owner did not
 * choose. Loop thread only, like every gw_stream_* call. */
gw_stream *gw_respond_stream(gw_request *r, const char *content_type, gw_stream_closed_fn *closed,
                             void *closure);

/* Queues len bytes of the body. ORN_ETOOBIG when the client has not read
 * what was queued before (more than GW_STREAM_BACKLOG_MAX bytes wait): the
 * owner should end the stream. ORN_ENOMEM. */
#define GW_STREAM_BACKLOG_MAX (256 * 1024)
orn_rc gw_stream_write(gw_stream *s, const void *data, size_t len);

/* Ends the body (the last chunk is sent after the queued data), closes the
 * connection and frees the handle; closed is not called. */
void gw_stream_end(gw_stream *s);

/* Streams open now (loop thread). */
size_t gw_server_stream_count(const gw_server *s);

/* ---- deferred answers --------------------------------------------------- */

typedef struct gw_async gw_async;

/* Defers the answer: the handler returns without responding, and whoever
 * holds the returned handle completes it later, from any thread, exactly
 * once (gw_async_complete* or gw_async_cancel). If deadline_ms (0: the
 * server's async_deadline_ms) passes first, the client gets 503 and the
 * late completion is discarded. Returns NULL on allocation failure (the
 * request has then been answered 500). After this call only the loop thread
 * may touch r, and only until the completion arrives. */
gw_async *gw_request_defer(gw_request *r, unsigned deadline_ms);

/* Completes a deferred request with a JSON body (stolen) or a problem
 * (stolen; its status is used). Thread-safe; consumes the handle. */
void gw_async_complete_json(gw_async *a, int status, json_t *body);
void gw_async_complete_problem(gw_async *a, json_t *problem);
/* Completes a deferred request with an HTML page (html is copied), answered
 * as gw_respond_html does. Thread-safe; consumes the handle. */
void gw_async_complete_html(gw_async *a, int status, const char *html, size_t len);
/* Completes a deferred request with body (len bytes, copied) of
 * content_type (a static string), answered as gw_respond does. Thread-safe;
 * consumes the handle. */
void gw_async_complete_body(gw_async *a, int status, const char *content_type, const void *body, size_t len);
/* Completes a deferred request with a status that has no body (204): the
 * standard headers only. Thread-safe; consumes the handle. */
void gw_async_complete_empty(gw_async *a, int status);
/* Releases the handle without an answer: the deadline will answer 503. */
void gw_async_cancel(gw_async *a);

/* ---- wiping freed memory ----------------------------------------------- */

/* Makes jansson allocate with malloc and free with gw_wiping_free, so every
 * JSON value, string and dump buffer the process frees is zeroed first (a
 * parsed payment body holds a card). Idempotent and thread-safe;
 * gw_server_create calls it. */
void gw_json_install_wiping_alloc(void);

/* Zeroes the whole usable size of heap block p (malloc_usable_size, at least
 * what was asked for) without freeing it. NULL is accepted. */
void gw_wipe_block(void *p);

/* gw_wipe_block, then free. */
void gw_wiping_free(void *p);

#endif
