/* gw_guard.c — the connection guard of gw_http (see gw_guard-internal.h and
 * ADR 020).
 *
 * How it sits in front of evhttp (libevent 2.1 has no hook for this, so it
 * uses the ones it has):
 * - evhttp_set_bevcb: the guard makes each connection's socket bufferevent,
 *   keeps a reference to it (so the socket outlives evhttp's use of it: the
 *   guard closes it, after a lingering close) and watches its input evbuffer
 *   with a callback, which libevent runs inside the socket read, before
 *   evhttp's read callback. The callback moves every new byte aside (into
 *   `held`) and moves a request back into the input only once it is whole
 *   and valid, so evhttp only ever parses valid, complete requests: none of
 *   its own error pages (HTML) can be triggered by a client.
 * - An event activated from the bufferevent callback runs right after evhttp
 *   has set the connection up ("adoption"): the guard then learns the
 *   evhttp_connection (the bufferevent's callback argument) and the peer's
 *   address, counts it and registers its close callback.
 * - A refused request is replaced by the guard's own request (GW_GUARD_HEADER
 *   and "Connection: close"), queued after the requests already handed over;
 *   gw_http answers it with problem+json and evhttp closes the connection
 *   once the answer is written.
 * - evhttp_connection_free calls the close callback, then frees the
 *   bufferevent (the guard's reference keeps it) and shuts the socket for
 *   writing; the guard then reads and drops what the client still sends,
 *   until it closes or LINGER_MS pass, so a client that was still sending
 *   reads the answer instead of a reset.
 * evhttp's read callback is called by the guard only where evhttp waits for
 * a request (read callback set and EV_READ enabled); elsewhere evhttp reads
 * the queued request itself when it starts reading again. */
#include "gw_guard-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "hashmap.h"
#include "log.h"

#define LINGER_MS       2000
#define SWEEP_MS        5000
#define HEADERS_MAX     100 /* header fields in one request */
#define CHUNK_LINE_MAX  18  /* a chunk-size line: up to 16 hex digits and CRLF */
#define ADDRESS_MAX     64
#define KEY_MAX         32
#define CONTINUE_ANSWER "HTTP/1.1 100 Continue\r\n\r\n"

/* Every refusal: code (the metric label and GW_GUARD_HEADER's value), status, detail. */
static const struct {
	const char *code;
	int status;
	const char *detail;
} refusals[] = {
        {"request_line", 400, "the request line is malformed"},
        {"method", 501, "this method is not implemented"},
        {"target", 400, "the request target must be an absolute path of printable ASCII"},
        {"version", 505, "only HTTP/1.1 and HTTP/1.0 are served"},
        {"line_ending", 400, "every line of a request must end with CRLF"},
        {"header_syntax", 400, "a header field is malformed"},
        {"obs_fold", 400, "header fields may not be folded over lines"},
        {"content_length", 400, "Content-Length must appear at most once, as decimal digits"},
        {"transfer_encoding", 400,
         "Transfer-Encoding must be exactly chunked, once, in HTTP/1.1, without Content-Length"},
        {"host", 400, "an HTTP/1.1 request needs exactly one Host header"},
        {"expect", 417, "only Expect: 100-continue is supported"},
        {"reserved_header", 400, "a header field is reserved"},
        {"headers_too_large", 431, "the request line and headers are too large"},
        {"too_many_headers", 431, "the request has too many header fields"},
        {"body_too_large", 413, "the request body is too large"},
        {"chunk", 400, "the chunked body is malformed (chunk extensions and trailers are not accepted)"},
        {"header_timeout", 408, "the request line and headers did not arrive in time"},
        {"body_timeout", 408, "the request body did not arrive in time"},
        {"connections_per_address", 503, "too many connections from this address; retry later"},
        {"connections", 503, "too many connections; retry later"},
};

typedef enum phase {
	PHASE_HEAD,       /* request line and headers */
	PHASE_BODY,       /* Content-Length bytes */
	PHASE_CHUNK_SIZE, /* a chunk-size line */
	PHASE_CHUNK_DATA, /* a chunk's bytes */
	PHASE_CHUNK_CRLF, /* the CRLF after a chunk */
	PHASE_TRAILER,    /* the empty line after the last chunk */
} phase;

typedef enum conn_state {
	CONN_FRESH,   /* made for evhttp, not adopted yet */
	CONN_OPEN,    /* requests pass */
	CONN_REFUSED, /* the guard's request is queued; the client's bytes are dropped */
	CONN_CLOSING, /* evhttp freed it; the linger starts on the next loop turn */
	CONN_LINGER,  /* reading and dropping until EOF or the deadline */
} conn_state;

typedef struct guard_conn {
	gw_guard *guard;
	struct bufferevent *bev; /* the guard's reference */
	struct evbuffer_cb_entry *watch;
	struct evhttp_connection *evcon; /* once adopted, until evhttp frees it */
	struct evbuffer *held;           /* bytes not handed to evhttp yet */
	struct event *timer;             /* deadlines, the linger, the step after evhttp's free */
	conn_state state;
	phase phase;
	bool busy;       /* the guard is changing the input: its callback ignores that */
	bool timed;      /* the current request's deadline runs */
	bool counted;    /* in the per-address and total counts */
	size_t released; /* bytes at the front of the input that are evhttp's */
	size_t scan;     /* head: where the search for the end of a line resumes */
	size_t line;     /* head: where the current line starts */
	size_t pos;      /* bytes of the current request checked so far */
	uint64_t remaining, body_total;
	char address[ADDRESS_MAX];
	char key[KEY_MAX]; /* in guard->by_evcon */
	gw_guard_closed_fn *closed;
	void *closed_arg;
	struct guard_conn *prev, *next; /* every connection */
	struct guard_conn *next_fresh;
} guard_conn;

struct gw_guard {
	struct event_base *base;
	gw_guard_options o;
	struct event *adopt; /* runs once evhttp has set new connections up */
	struct event *sweep; /* finds connections evhttp dropped without telling */
	struct evbuffer *scratch;
	guard_conn *conns, *fresh;
	size_t open;
	hmap *by_address; /* address -> count, as a pointer-sized integer */
	hmap *by_evcon;   /* "%p" of the evhttp_connection -> conn */
};

/* ---- the pure framing check --------------------------------------------- */

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool is_field_char(unsigned char ch)
{
	return ch == '\t' || ch == ' ' || (ch >= 0x21 && ch != 0x7F); /* VCHAR, obs-text */
}

static bool name_is(const char *name, size_t len, const char *expected)
{
	return strlen(expected) == len && strncasecmp(name, expected, len) == 0;
}

static bool value_is(const char *value, size_t len, const char *expected)
{
	return name_is(value, len, expected);
}

/* The methods evhttp knows and the router answers (CONNECT is not served). */
static bool method_known(const char *m, size_t len)
{
	static const char *const methods[] = {"GET",    "HEAD",    "POST",  "PUT",
	                                      "DELETE", "OPTIONS", "PATCH", "TRACE"};
	for (size_t i = 0; i < ORN_ARRAY_LEN(methods); i++)
		if (strlen(methods[i]) == len && memcmp(methods[i], m, len) == 0)
			return true;
	return false;
}

/* "METHOD SP origin-form SP HTTP/1.x": the refusal code, or NULL. */
static const char *check_request_line(const char *line, size_t len, bool *http10)
{
	const char *sp1 = memchr(line, ' ', len);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line)) : NULL;
	if (sp1 == NULL || sp2 == NULL || sp1 == line || sp2 == sp1 + 1 ||
	    memchr(sp2 + 1, ' ', len - (size_t)(sp2 + 1 - line)) != NULL)
		return "request_line";
	for (const char *p = line; p < sp1; p++)
		if (!is_tchar((unsigned char)*p))
			return "request_line";
	if (!method_known(line, (size_t)(sp1 - line)))
		return "method";
	if (sp1[1] != '/')
		return "target";
	for (const char *p = sp1 + 1; p < sp2; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7F || *p == '#')
			return "target";
	size_t version_len = len - (size_t)(sp2 + 1 - line);
	if (version_len == 8 && memcmp(sp2 + 1, "HTTP/1.1", 8) == 0)
		*http10 = false;
	else if (version_len == 8 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0)
		*http10 = true;
	else
		return "version";
	return NULL;
}

/* The framing headers seen so far. */
typedef struct head_fields {
	int content_length_count, transfer_encoding_count, host_count, fields;
	bool te_chunked;
} head_fields;

/* One "name: value" line (no CRLF): the refusal code, or NULL. */
static const char *check_field(const char *line, size_t len, head_fields *h, gw_guard_head *out,
                               size_t max_body_bytes)
{
	if (len > 0 && (line[0] == ' ' || line[0] == '\t'))
		return "obs_fold";
	const char *colon = memchr(line, ':', len);
	if (colon == NULL || colon == line)
		return "header_syntax";
	for (const char *p = line; p < colon; p++)
		if (!is_tchar((unsigned char)*p))
			return "header_syntax"; /* also a space before the colon (RFC 9112 5.1) */
	const char *value = colon + 1, *end = line + len;
	for (const char *p = value; p < end; p++)
		if (!is_field_char((unsigned char)*p))
			return "header_syntax";
	while (value < end && (*value == ' ' || *value == '\t'))
		value++;
	while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t name_len = (size_t)(colon - line), value_len = (size_t)(end - value);
	if (++h->fields > HEADERS_MAX)
		return "too_many_headers";
	if (name_is(line, name_len, GW_GUARD_HEADER))
		return "reserved_header";
	if (name_is(line, name_len, "Content-Length")) {
		if (++h->content_length_count > 1 || value_len == 0 || value_len > 18 ||
		    strspn(value, "0123456789") < value_len)
			return "content_length";
		int64_t n = 0;
		for (size_t i = 0; i < value_len; i++)
			n = n * 10 + (value[i] - '0');
		if ((uint64_t)n > max_body_bytes)
			return "body_too_large";
		out->content_length = n;
	} else if (name_is(line, name_len, "Transfer-Encoding")) {
		h->transfer_encoding_count++;
		h->te_chunked = value_is(value, value_len, "chunked");
	} else if (name_is(line, name_len, "Host")) {
		h->host_count++;
	} else if (name_is(line, name_len, "Expect")) {
		if (!value_is(value, value_len, "100-continue"))
			return "expect";
		out->expect_continue = true;
	}
	return NULL;
}

void gw_guard_check_head(const char *head, size_t len, size_t max_body_bytes, gw_guard_head *out)
{
	head_fields h = {0};
	bool http10 = false;
	const char *refusal = NULL;
	*out = (gw_guard_head){.content_length = -1};
	size_t start = 0;
	for (bool first = true; refusal == NULL && start < len; first = false) {
		const char *nl = memchr(head + start, '\n', len - start);
		if (nl == NULL || nl == head + start || nl[-1] != '\r') {
			refusal = "line_ending";
			break;
		}
		size_t line_len = (size_t)(nl - 1 - (head + start));
		if (memchr(head + start, '\r', line_len) != NULL)
			refusal = "line_ending"; /* a bare CR inside a line */
		else if (first)
			refusal = check_request_line(head + start, line_len, &http10);
		else if (line_len == 0)
			break; /* the empty line: the end of the head */
		else
			refusal = check_field(head + start, line_len, &h, out, max_body_bytes);
		start = (size_t)(nl + 1 - head);
	}
	if (refusal == NULL && h.transfer_encoding_count > 0 &&
	    (h.transfer_encoding_count > 1 || !h.te_chunked || http10 || h.content_length_count > 0))
		refusal = "transfer_encoding";
	if (refusal == NULL && !http10 && h.host_count != 1)
		refusal = "host";
	if (refusal == NULL && h.host_count > 1)
		refusal = "host";
	out->chunked = refusal == NULL && h.transfer_encoding_count == 1;
	if (http10)
		out->expect_continue = false; /* RFC 9110 10.1.1: ignored in HTTP/1.0 */
	out->refusal = refusal;
}

void gw_guard_refusal(const char *code, int *status, const char **detail)
{
	*status = 400;
	*detail = "the request is malformed";
	for (size_t i = 0; code != NULL && i < ORN_ARRAY_LEN(refusals); i++)
		if (strcmp(refusals[i].code, code) == 0) {
			*status = refusals[i].status;
			*detail = refusals[i].detail;
		}
}

/* ---- counts and metrics --------------------------------------------------- */

static void count_metrics(gw_guard *g)
{
	if (g->o.metrics != NULL)
		gw_metrics_gauge_set(g->o.metrics, "orion_http_connections", "HTTP connections open now.",
		                     NULL, (double)g->open);
}

static void refusal_metric(gw_guard *g, const char *code)
{
	const char *const labels[] = {"reason", code, NULL};
	if (g->o.metrics != NULL)
		gw_metrics_counter_add(
		        g->o.metrics, "orion_http_refused_total",
		        "Requests and connections the gateway refused before routing, by reason.", labels, 1);
}

static size_t address_count(gw_guard *g, const char *address)
{
	return (size_t)(uintptr_t)hmap_get(g->by_address, address);
}

/* Adds delta (+1 or -1) to address's count; ORN_ENOMEM. */
static orn_rc address_add(gw_guard *g, const char *address, int delta)
{
	size_t n = address_count(g, address) + (size_t)delta;
	if (n == 0) {
		hmap_remove(g->by_address, address);
		return ORN_OK;
	}
	return hmap_put(g->by_address, address, (void *)(uintptr_t)n);
}

/* ---- the connection's life ------------------------------------------------ */

static void conn_free(guard_conn *c)
{
	gw_guard *g = c->guard;
	if (c->prev)
		c->prev->next = c->next;
	else if (g->conns == c)
		g->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->counted) {
		address_add(g, c->address, -1);
		g->open--;
		count_metrics(g);
	}
	if (c->key[0] != '\0')
		hmap_remove(g->by_evcon, c->key);
	if (c->timer)
		event_free(c->timer);
	if (c->held)
		evbuffer_free(c->held);
	if (c->bev) {
		if (c->watch)
			evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->watch);
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		bufferevent_decref(c->bev); /* the last reference: closes the socket */
	}
	free(c);
}

static void arm(guard_conn *c, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

/* Whether evhttp waits for a request now, so its read callback may run. */
static bool evhttp_waits(guard_conn *c)
{
	bufferevent_data_cb readcb = NULL;
	bufferevent_getcb(c->bev, &readcb, NULL, NULL, NULL);
	return readcb != NULL && (bufferevent_get_enabled(c->bev) & EV_READ) != 0;
}

/* Drops the bytes of the input past the ones that are evhttp's. */
static void drop_new_bytes(guard_conn *c, struct evbuffer *in)
{
	size_t len = evbuffer_get_length(in);
	if (len <= c->released)
		return;
	if (c->released == 0) {
		evbuffer_drain(in, len);
		return;
	}
	evbuffer_remove_buffer(in, c->guard->scratch, c->released);
	evbuffer_drain(in, evbuffer_get_length(in));
	evbuffer_add_buffer(in, c->guard->scratch);
}

/* Refuses the connection's current request (see the file comment).
 * from_read: called inside the socket read, after which libevent runs
 * evhttp's read callback itself. */
static void refuse(guard_conn *c, const char *code, bool from_read)
{
	char request[160];
	struct evbuffer *in = bufferevent_get_input(c->bev);
	int n = snprintf(request, sizeof request,
	                 "GET / HTTP/1.1\r\nHost: guard\r\n" GW_GUARD_HEADER
	                 ": %s\r\nConnection: close\r\n\r\n",
	                 code);
	c->state = CONN_REFUSED;
	evtimer_del(c->timer);
	evbuffer_drain(c->held, evbuffer_get_length(c->held));
	refusal_metric(c->guard, code);
	bool was_busy = c->busy;
	c->busy = true;
	/* A socket bufferevent keeps its input's end frozen outside its reads. */
	if (!from_read)
		evbuffer_unfreeze(in, 0);
	drop_new_bytes(c, in);
	evbuffer_add(in, request, (size_t)n);
	if (!from_read)
		evbuffer_freeze(in, 0);
	c->released += (size_t)n;
	c->busy = was_busy;
	if (!from_read && evhttp_waits(c))
		bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
}

/* Sends "100 Continue" when evhttp is idle (nothing of its own is queued). */
static void send_continue(guard_conn *c)
{
	if (c->released != 0 || evbuffer_get_length(bufferevent_get_output(c->bev)) != 0 || !evhttp_waits(c))
		return; /* the client sends the body after its own wait */
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	(void)send(fd, CONTINUE_ANSWER, sizeof CONTINUE_ANSWER - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* The current request is whole: hand it to evhttp and start the next. */
static void release(guard_conn *c)
{
	evbuffer_remove_buffer(c->held, bufferevent_get_input(c->bev), c->pos);
	c->released += c->pos;
	c->phase = PHASE_HEAD;
	c->pos = c->scan = c->line = 0;
	c->remaining = c->body_total = 0;
	c->timed = false;
	evtimer_del(c->timer);
}

/* The head: finds its end, checks it. False while more bytes are needed or
 * after a refusal. */
static bool parse_head(guard_conn *c)
{
	gw_guard *g = c->guard;
	size_t len = evbuffer_get_length(c->held);
	size_t limit = len < g->o.max_header_bytes ? len : g->o.max_header_bytes;
	const unsigned char *p = evbuffer_pullup(c->held, (ev_ssize_t)limit);
	if (p == NULL && limit > 0)
		return false;
	for (size_t i = c->scan; i < limit; i++) {
		if (p[i] != '\n')
			continue;
		if (i == c->line || p[i - 1] != '\r') {
			refuse(c, "line_ending", true);
			return false;
		}
		if (i - c->line == 1 && c->line > 0) { /* the empty line */
			gw_guard_head head;
			gw_guard_check_head((const char *)p, i + 1, g->o.max_body_bytes, &head);
			if (head.refusal != NULL) {
				refuse(c, head.refusal, true);
				return false;
			}
			c->pos = i + 1;
			c->phase = head.chunked              ? PHASE_CHUNK_SIZE
			           : head.content_length > 0 ? PHASE_BODY
			                                     : PHASE_HEAD;
			c->remaining = head.content_length > 0 ? (uint64_t)head.content_length : 0;
			if (c->phase != PHASE_HEAD) {
				arm(c, g->o.body_timeout_ms);
				if (head.expect_continue && len == c->pos)
					send_continue(c);
			}
			return true;
		}
		c->line = i + 1;
	}
	c->scan = limit;
	if (len >= g->o.max_header_bytes) {
		refuse(c, "headers_too_large", true);
		return false;
	}
	return false;
}

/* One chunk-size line at c->pos: 1*HEXDIG CRLF (no extension). False while
 * more bytes are needed or after a refusal. */
static bool parse_chunk_size(guard_conn *c, size_t len)
{
	char line[CHUNK_LINE_MAX + 1];
	size_t n = len - c->pos < CHUNK_LINE_MAX ? len - c->pos : CHUNK_LINE_MAX;
	struct evbuffer_ptr at;
	evbuffer_ptr_set(c->held, &at, c->pos, EVBUFFER_PTR_SET);
	if (evbuffer_copyout_from(c->held, &at, line, n) != (ev_ssize_t)n)
		return false;
	char *nl = memchr(line, '\n', n);
	if (nl == NULL) {
		if (n == CHUNK_LINE_MAX)
			refuse(c, "chunk", true);
		return false;
	}
	size_t digits = (size_t)(nl - line) - 1;
	uint64_t size = 0;
	if (nl == line || nl[-1] != '\r' || digits == 0 || digits > 16 ||
	    strspn(line, "0123456789abcdefABCDEF") != digits) {
		refuse(c, "chunk", true);
		return false;
	}
	for (size_t i = 0; i < digits; i++) {
		char ch = line[i];
		size = size * 16 + (uint64_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
	}
	if (size > c->guard->o.max_body_bytes || c->body_total + size > c->guard->o.max_body_bytes) {
		refuse(c, "body_too_large", true);
		return false;
	}
	c->body_total += size;
	c->pos += digits + 2;
	c->remaining = size;
	c->phase = size == 0 ? PHASE_TRAILER : PHASE_CHUNK_DATA;
	return true;
}

/* Exactly CRLF at c->pos. False while more bytes are needed or after a refusal. */
static bool parse_crlf(guard_conn *c, size_t len)
{
	char two[2];
	struct evbuffer_ptr at;
	if (len - c->pos < 2)
		return false;
	evbuffer_ptr_set(c->held, &at, c->pos, EVBUFFER_PTR_SET);
	evbuffer_copyout_from(c->held, &at, two, 2);
	if (two[0] != '\r' || two[1] != '\n') {
		refuse(c, "chunk", true);
		return false;
	}
	c->pos += 2;
	return true;
}

/* Checks the held bytes, handing every whole request to evhttp. */
static void parse(guard_conn *c)
{
	while (c->state == CONN_OPEN) {
		size_t len = evbuffer_get_length(c->held);
		if (c->phase == PHASE_HEAD && c->pos == 0) {
			/* RFC 9112 2.2: empty lines before a request line are ignored */
			while (len >= 2 && c->line == 0 && c->scan == 0) {
				char two[2];
				evbuffer_copyout(c->held, two, 2);
				if (two[0] != '\r' || two[1] != '\n')
					break;
				evbuffer_drain(c->held, 2);
				len -= 2;
			}
			if (len == 0)
				return;
			if (!c->timed) {
				c->timed = true;
				arm(c, c->guard->o.header_timeout_ms);
			}
			if (!parse_head(c))
				return;
			if (c->phase == PHASE_HEAD) {
				release(c); /* no body */
				continue;
			}
			continue;
		}
		bool progress = false;
		switch (c->phase) {
		case PHASE_BODY:
		case PHASE_CHUNK_DATA: {
			uint64_t take = len - c->pos < c->remaining ? len - c->pos : c->remaining;
			c->pos += take;
			c->remaining -= take;
			progress = c->remaining == 0;
			if (progress && c->phase == PHASE_CHUNK_DATA)
				c->phase = PHASE_CHUNK_CRLF;
			else if (progress)
				c->phase = PHASE_HEAD;
			break;
		}
		case PHASE_CHUNK_SIZE:
			progress = parse_chunk_size(c, len);
			break;
		case PHASE_CHUNK_CRLF:
			if ((progress = parse_crlf(c, len)))
				c->phase = PHASE_CHUNK_SIZE;
			break;
		case PHASE_TRAILER:
			if ((progress = parse_crlf(c, len)))
				c->phase = PHASE_HEAD; /* trailers are refused: only the empty line */
			break;
		case PHASE_HEAD:
			break;
		}
		if (!progress)
			return;
		if (c->phase == PHASE_HEAD)
			release(c);
	}
}

/* The input's callback: runs inside the socket read, before evhttp's read
 * callback, and after every change evhttp makes. */
static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
	guard_conn *c = arg;
	if (c->busy || c->state == CONN_LINGER || c->state == CONN_CLOSING)
		return;
	c->released -= info->n_deleted < c->released ? info->n_deleted : c->released;
	if (info->n_added == 0 || evbuffer_get_length(in) <= c->released)
		return;
	c->busy = true;
	if (c->state == CONN_REFUSED) {
		drop_new_bytes(c, in);
	} else {
		if (c->released == 0) {
			evbuffer_add_buffer(c->held, in);
		} else {
			struct evbuffer *scratch = c->guard->scratch;
			evbuffer_remove_buffer(in, scratch, c->released);
			evbuffer_add_buffer(c->held, in);
			evbuffer_add_buffer(in, scratch);
		}
		parse(c);
	}
	c->busy = false;
}

static void on_linger_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_linger_event(struct bufferevent *bev, short what, void *arg)
{
	conn_free(arg); /* EOF, an error or a timeout: done */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	guard_conn *c = arg;
	switch (c->state) {
	case CONN_OPEN:
		refuse(c, c->phase == PHASE_HEAD ? "header_timeout" : "body_timeout", false);
		break;
	case CONN_CLOSING: /* evhttp has let go of the bufferevent: linger */
		c->state = CONN_LINGER;
		bufferevent_setcb(c->bev, on_linger_read, NULL, on_linger_event, c);
		bufferevent_disable(c->bev, EV_WRITE);
		bufferevent_enable(c->bev, EV_READ);
		on_linger_read(c->bev, c);
		arm(c, LINGER_MS);
		break;
	case CONN_LINGER:
		conn_free(c);
		break;
	case CONN_FRESH:
	case CONN_REFUSED:
		break;
	}
}

/* evhttp frees the connection: tell the owner, then linger. */
static void on_evhttp_closed(struct evhttp_connection *evcon, void *arg)
{
	guard_conn *c = arg;
	gw_guard_closed_fn *fn = c->closed;
	c->closed = NULL;
	if (fn != NULL)
		fn(c->closed_arg);
	if (c->key[0] != '\0')
		hmap_remove(c->guard->by_evcon, c->key);
	c->key[0] = '\0';
	c->evcon = NULL;
	c->state = CONN_CLOSING;
	struct timeval now = {0, 0};
	evtimer_add(c->timer, &now);
}

/* The step after evhttp set a new connection up. */
static void adopt(guard_conn *c)
{
	gw_guard *g = c->guard;
	bufferevent_data_cb readcb = NULL;
	void *cbarg = NULL;
	char *peer = NULL;
	uint16_t port = 0;
	bufferevent_getcb(c->bev, &readcb, NULL, NULL, &cbarg);
	if (readcb == NULL || cbarg == NULL) { /* evhttp gave up on it (out of memory) */
		conn_free(c);
		return;
	}
	c->evcon = cbarg;
	c->state = CONN_OPEN;
	evhttp_connection_get_peer(c->evcon, &peer, &port);
	snprintf(c->address, sizeof c->address, "%s", peer != NULL ? peer : "");
	snprintf(c->key, sizeof c->key, "%p", (void *)c->evcon);
	evhttp_connection_set_closecb(c->evcon, on_evhttp_closed, c);
	if (hmap_put(g->by_evcon, c->key, c) != ORN_OK || address_add(g, c->address, +1) != ORN_OK) {
		c->key[0] = '\0';
		refuse(c, "connections", false);
		return;
	}
	c->counted = true;
	g->open++;
	count_metrics(g);
	if (g->o.max_connections > 0 && g->open > g->o.max_connections)
		refuse(c, "connections", false);
	else if (g->o.max_connections_per_address > 0 &&
	         address_count(g, c->address) > g->o.max_connections_per_address)
		refuse(c, "connections_per_address", false);
	else {
		c->timed = true; /* the first request's deadline runs from the accept */
		arm(c, g->o.header_timeout_ms);
	}
}

static void on_adopt(evutil_socket_t fd, short what, void *arg)
{
	gw_guard *g = arg;
	while (g->fresh != NULL) {
		guard_conn *c = g->fresh;
		g->fresh = c->next_fresh;
		adopt(c);
	}
}

/* evhttp's bufferevent factory: a socket bufferevent the guard watches. On
 * allocation failure NULL: evhttp then makes an unguarded one of its own. */
static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
	gw_guard *g = arg;
	guard_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		goto fail;
	c->guard = g;
	c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	c->held = evbuffer_new();
	c->timer = evtimer_new(base, on_timer, c);
	if (c->bev == NULL || c->held == NULL || c->timer == NULL)
		goto fail;
	c->watch = evbuffer_add_cb(bufferevent_get_input(c->bev), on_input, c);
	if (c->watch == NULL)
		goto fail;
	bufferevent_incref(c->bev); /* evhttp's reference, freed by evhttp; c->bev is the guard's */
	c->next = g->conns;
	if (g->conns)
		g->conns->prev = c;
	g->conns = c;
	c->next_fresh = g->fresh;
	g->fresh = c;
	event_active(g->adopt, EV_READ, 0);
	return c->bev;
fail:
	log_error("cannot guard a connection: out of memory", "guard", "unguarded");
	if (c != NULL) {
		if (c->timer)
			event_free(c->timer);
		if (c->held)
			evbuffer_free(c->held);
		if (c->bev)
			bufferevent_free(c->bev);
		free(c);
	}
	return NULL;
}

/* A connection evhttp freed without its close callback (it calls it only
 * while it counts the connection as connected) would keep its socket: every
 * SWEEP_MS, such connections start their linger. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	gw_guard *g = arg;
	for (guard_conn *c = g->conns; c != NULL; c = c->next) {
		bufferevent_event_cb eventcb = NULL;
		if (c->state != CONN_OPEN && c->state != CONN_REFUSED)
			continue;
		bufferevent_getcb(c->bev, NULL, NULL, &eventcb, NULL);
		if (eventcb == NULL)
			on_evhttp_closed(c->evcon, c);
	}
}

/* ---- the guard ----------------------------------------------------------- */

orn_rc gw_guard_create(struct event_base *base, struct evhttp *http, const gw_guard_options *o,
                       gw_guard **out)
{
	struct timeval every = {.tv_sec = SWEEP_MS / 1000};
	gw_guard *g = calloc(1, sizeof *g);
	*out = NULL;
	if (g == NULL)
		return ORN_ENOMEM;
	g->base = base;
	g->o = *o;
	g->adopt = event_new(base, -1, 0, on_adopt, g);
	g->sweep = event_new(base, -1, EV_PERSIST, on_sweep, g);
	g->scratch = evbuffer_new();
	g->by_address = hmap_create();
	g->by_evcon = hmap_create();
	if (g->adopt == NULL || g->sweep == NULL || g->scratch == NULL || g->by_address == NULL ||
	    g->by_evcon == NULL || event_add(g->sweep, &every) != 0) {
		gw_guard_destroy(g);
		return ORN_ENOMEM;
	}
	evhttp_set_bevcb(http, on_new_connection, g);
	*out = g;
	return ORN_OK;
}

void gw_guard_destroy(gw_guard *g)
{
	if (g == NULL)
		return;
	while (g->conns != NULL)
		conn_free(g->conns);
	if (g->adopt)
		event_free(g->adopt);
	if (g->sweep)
		event_free(g->sweep);
	if (g->scratch)
		evbuffer_free(g->scratch);
	hmap_destroy(g->by_address);
	hmap_destroy(g->by_evcon);
	free(g);
}

orn_rc gw_guard_on_close(gw_guard *g, struct evhttp_connection *evcon, gw_guard_closed_fn *fn, void *arg)
{
	char key[KEY_MAX];
	snprintf(key, sizeof key, "%p", (void *)evcon);
	guard_conn *c = hmap_get(g->by_evcon, key);
	if (c == NULL)
		return ORN_ENOTFOUND;
	c->closed = fn;
	c->closed_arg = arg;
	return ORN_OK;
}

size_t gw_guard_connection_count(const gw_guard *g)
{
	return g->open;
}
