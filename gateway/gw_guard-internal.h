/* gw_guard-internal.h — the connection guard of gw_http: every HTTP
 * connection's bytes pass it before evhttp reads them (ADR 020).
 *
 * Part of the gw_http module (only gw_http.c and the tests include it). The
 * guard holds each request back until its line, headers and body have all
 * arrived and are valid HTTP/1.1 framing under RFC 9112's strict rules, then
 * hands the whole request to evhttp; it enforces a deadline for the header
 * block and one for the body, caps the connections in total and per client
 * address, and closes every connection with a lingering close. A request it
 * refuses never reaches evhttp: in its place evhttp reads a request the guard
 * writes itself, marked with the GW_GUARD_HEADER header (a client's request
 * carrying that header is refused), which gw_http answers with the refusal's
 * problem+json and "Connection: close". */
#ifndef ORION_GW_GUARD_INTERNAL_H
#define ORION_GW_GUARD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_metrics.h"
#include "orn.h"

struct event_base;
struct evhttp;
struct evhttp_connection;

/* The header of the guard's own requests; its value is a refusal code. */
#define GW_GUARD_HEADER "X-Orion-Guard"

typedef struct gw_guard gw_guard;

typedef struct gw_guard_options {
	size_t max_header_bytes;    /* request line + headers, CRLFs included */
	size_t max_body_bytes;      /* Content-Length, or the chunks' sum */
	unsigned header_timeout_ms; /* from a request's first byte (a connection's first: from accept) */
	unsigned body_timeout_ms;   /* from the end of the headers */
	unsigned max_connections;   /* open at once, 0: no cap */
	unsigned max_connections_per_address; /* open at once from one client address, 0: no cap */
	gw_metrics *metrics;                  /* optional, not owned */
} gw_guard_options;

/* Creates the guard of http (evhttp_set_bevcb: it makes every connection's
 * bufferevent). ORN_ENOMEM; on failure *out is NULL. */
orn_rc gw_guard_create(struct event_base *base, struct evhttp *http, const gw_guard_options *o,
                       gw_guard **out);

/* Closes what is left (lingering connections) and frees the guard. Call
 * after evhttp_free (which tells the guard of every connection it frees).
 * NULL is accepted. */
void gw_guard_destroy(gw_guard *g);

/* Called once, on the loop, when evhttp frees the connection (the client
 * went away, a timeout, the server is destroyed). */
typedef void gw_guard_closed_fn(void *arg);

/* Registers fn(arg) for evcon's end, replacing any earlier one; fn NULL
 * forgets it. ORN_ENOTFOUND when the guard does not know evcon (it could
 * not allocate for it: the connection is then not guarded). */
orn_rc gw_guard_on_close(gw_guard *g, struct evhttp_connection *evcon, gw_guard_closed_fn *fn, void *arg);

/* Connections open now (loop thread). */
size_t gw_guard_connection_count(const gw_guard *g);

/* The status and detail of the refusal code sent in GW_GUARD_HEADER (a code
 * the guard does not use: 400 and a generic detail). */
void gw_guard_refusal(const char *code, int *status, const char **detail);

/* ---- the pure framing check (exposed for the unit tests) ---------------- */

typedef struct gw_guard_head {
	const char *refusal;    /* NULL: the head is valid; else the refusal code */
	int64_t content_length; /* -1: no Content-Length */
	bool chunked;           /* Transfer-Encoding: chunked */
	bool expect_continue;   /* Expect: 100-continue on HTTP/1.1 */
} gw_guard_head;

/* Checks a complete request head: head[0..len) is the request line and the
 * header fields, each ending in CRLF, and the empty line (len includes its
 * CRLF). Fills *out. */
void gw_guard_check_head(const char *head, size_t len, size_t max_body_bytes, gw_guard_head *out);

#endif
