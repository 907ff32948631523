/* gw_api_inventory_feed.c — GET /api/v1/admin/inventory/events: the live
 * inventory feed for admins, as Server-Sent Events (docs/adr/012).
 *
 * One SSE event per stock event of stream ORION_EVT (subjects
 * orion.evt.stock.<product id>): `id:` the stream sequence of its commit,
 * `event:` stock (StockItemCreated, StockReserved, StockReleased,
 * StockCommitted, StockReturned, StockAdjusted, LowStockThresholdSet: the levels after it),
 * low_stock (LowStockDetected) or low_stock_cleared (LowStockCleared). Every
 * stock event carries the item's levels after it (actors/stock.h), so the
 * feed folds nothing; events stored before levels existed show them null.
 *
 * Resuming. Last-Event-ID: N (or ?after=N without the header) starts an
 * ordered consumer at sequence N + 1 (es_follow): exactly the stock events
 * after N, in stream order, then live ones. Without either the feed starts
 * with the next commit stored. The events of one commit share its id and are
 * written in the same loop turn, one after the other.
 *
 * Threads. cnats calls on_event on the follow's delivery thread: it renders
 * the event's JSON and queues it under the feed's lock. The loop drains the
 * queue every FEED_TICK_MS and writes a keep-alive comment after 15 s of
 * silence (gw_sse_keep_alive, as the order stream) — so no libevent call is made
 * off the loop. A client that does not read lets the queue grow to
 * FEED_QUEUE_MAX events, and then its stream is ended: it resumes from its
 * Last-Event-ID with nothing lost. For that, the commit that could not be
 * queued whole (overflow_seq) is not written at all, and nothing after it is
 * queued: the last id the client sees is that of a whole commit.
 *
 * Lifetime. A feed has two owners: the HTTP side (until the stream closes or
 * is ended) and the follow (until its done callback, after es_follow_stop).
 * Whichever lets go last frees it. At most GW_API_FEEDS_MAX feeds are open at
 * once (each is a consumer on the NATS server), within gw_http's bound on
 * streams; 503 beyond. Creating the consumer is one JetStream request made on
 * the loop thread when a feed opens. */
#include "gw_api_inventory_feed.h"

#include <event2/event.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_api-internal.h"
#include "gw_problem.h"
#include "gw_views.h"
#include "gw_sse.h"
#include "log.h"
#include "stock.h"

#define FEED_SUBJECT_PREFIX "orion.evt." STOCK_AGGREGATE "."
#define FEED_FILTER         FEED_SUBJECT_PREFIX ">"
#define FEED_TICK_MS        100
#define FEED_RETRY_MS       3000  /* the reconnection delay asked of clients */
#define FEED_QUEUE_MAX      10000 /* events queued for a client that does not read */

/* One rendered event waiting for the loop. */
typedef struct feed_item {
	struct feed_item *next;
	uint64_t seq;
	const char *name; /* static */
	char *data;       /* compact JSON, one line */
} feed_item;

typedef struct feed {
	gw_api *api;
	gw_stream *stream; /* loop only; NULL once the HTTP side let go */
	struct event *tick;
	es_follow *follow;
	int64_t last_write_ns;
	pthread_mutex_t lock; /* guards what follows */
	int owners;
	feed_item *head, *tail;
	size_t queued;
	bool overflow;
	uint64_t overflow_seq; /* the first commit not queued whole */
} feed;

/* ---- rendering (delivery thread) --------------------------------------- */

static json_t *level_or_null(bool known, int64_t value)
{
	return known ? json_integer(value) : json_null();
}

/* The data of a low_stock / low_stock_cleared event. */
static json_t *crossing_json(const char *product_id, const stock_event *ev, const char *at)
{
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "product_id", product_id, "threshold",
	                 (json_int_t)ev->threshold, "available", (json_int_t)ev->available, "on_hand",
	                 (json_int_t)ev->on_hand, "reserved", (json_int_t)ev->reserved, "at", at);
}

/* The data of a stock event: the levels after it (null when it has none). */
static json_t *level_json(const char *product_id, const char *type, const stock_event *ev, const char *at)
{
	bool known = ev->has_levels;
	int64_t available = ev->on_hand - ev->reserved;
	return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:s, s:s}", "product_id", product_id, "on_hand",
	                 level_or_null(known || ev->kind == STOCK_ADJUSTED, ev->on_hand), "reserved",
	                 level_or_null(known, ev->reserved), "available", level_or_null(known, available),
	                 "low_stock_threshold", level_or_null(known, ev->threshold), "low",
	                 known ? json_boolean(available < ev->threshold) : json_null(), "type", type, "at",
	                 at);
}

static void feed_release(feed *f);

/* es_event_fn of the follow: queues one SSE event per stock event. */
static orn_rc on_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	feed *f = closure;
	const char *product_id = NULL;
	stock_event ev;
	char at[GW_VIEW_TIME_MAX];
	if (strncmp(subject, FEED_SUBJECT_PREFIX, strlen(FEED_SUBJECT_PREFIX)) != 0 ||
	    !es_id_valid(product_id = subject + strlen(FEED_SUBJECT_PREFIX)) ||
	    stock_event_decode(e->type, e->payload, e->payload_len, &ev) != ORN_OK)
		return ORN_OK; /* not a stock event this version knows: nothing to show */
	gw_view_format_time(e->time_ms, at);
	bool crossing = ev.kind == STOCK_LOW_DETECTED || ev.kind == STOCK_LOW_CLEARED;
	json_t *data =
	        crossing ? crossing_json(product_id, &ev, at) : level_json(product_id, e->type, &ev, at);
	feed_item *item = calloc(1, sizeof *item);
	if (item != NULL && data != NULL)
		item->data = json_dumps(data, JSON_COMPACT);
	json_decref(data);
	pthread_mutex_lock(&f->lock);
	if (f->overflow) {
		/* the stream ends at the next drain: nothing past the gap is queued */
	} else if (item == NULL || item->data == NULL || f->queued >= FEED_QUEUE_MAX) {
		f->overflow = true; /* the stream ends; the client resumes from what it has */
		f->overflow_seq = seq;
	} else {
		item->seq = seq;
		item->name = ev.kind == STOCK_LOW_DETECTED  ? "low_stock"
		             : ev.kind == STOCK_LOW_CLEARED ? "low_stock_cleared"
		                                            : "stock";
		if (f->tail != NULL)
			f->tail->next = item;
		else
			f->head = item;
		f->tail = item;
		f->queued++;
		item = NULL;
	}
	pthread_mutex_unlock(&f->lock);
	if (item != NULL)
		free(item->data);
	free(item);
	return ORN_OK;
}

/* es_follow_done_fn: the follow's share of the feed. */
static void on_follow_done(void *closure)
{
	feed_release(closure);
}

/* ---- the feed's life ----------------------------------------------------- */

static void free_items(feed_item *item)
{
	while (item != NULL) {
		feed_item *next = item->next;
		free(item->data);
		free(item);
		item = next;
	}
}

/* Drops one owner; the last one frees the feed. */
static void feed_release(feed *f)
{
	pthread_mutex_lock(&f->lock);
	bool last = --f->owners == 0;
	pthread_mutex_unlock(&f->lock);
	if (!last)
		return;
	free_items(f->head);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* The HTTP side lets go (loop thread): the stream is closed or ended. */
static void feed_close_http(feed *f)
{
	if (f->tick != NULL)
		event_free(f->tick);
	f->tick = NULL;
	f->stream = NULL;
	f->api->inventory_feeds--;
	es_follow_stop(f->follow); /* on_follow_done releases the follow's share */
	feed_release(f);
}

/* The client went away or the server stops: gw_http frees the stream. */
static void feed_closed(void *closure)
{
	feed_close_http(closure);
}

static void feed_end(feed *f)
{
	gw_stream_end(f->stream);
	feed_close_http(f);
}

/* Writes the queued events. False when the stream is over (a write failed,
 * or the queue overflowed). */
static bool feed_drain(feed *f)
{
	pthread_mutex_lock(&f->lock);
	feed_item *items = f->head;
	bool overflow = f->overflow;
	uint64_t end = overflow ? f->overflow_seq : UINT64_MAX;
	f->head = f->tail = NULL;
	f->queued = 0;
	pthread_mutex_unlock(&f->lock);
	bool open = true;
	/* A commit queued in part (the rest overflowed) is not written: its id
	 * would make a resuming client skip the rest of it. */
	for (feed_item *item = items; open && item != NULL && item->seq < end; item = item->next) {
		open = gw_sse_event(f->stream, item->seq, item->name, item->data) == ORN_OK;
		f->last_write_ns = orn_monotonic_ns();
	}
	free_items(items);
	if (overflow)
		log_warn("inventory feed ended: the client does not keep up");
	return open && !overflow;
}

static void feed_tick(evutil_socket_t fd, short what, void *arg)
{
	feed *f = arg;
	(void)fd;
	(void)what;
	bool open = feed_drain(f);
	if (open)
		open = gw_sse_keep_alive(f->stream, &f->last_write_ns) == ORN_OK;
	if (!open)
		feed_end(f);
}

/* ---- the route ----------------------------------------------------------- */

/* The sequence to resume after: Last-Event-ID, else ?after=. *resume is false
 * when neither is given. False, after answering 400, for a bad value. */
static bool resume_point(gw_request *r, uint64_t *after, bool *resume)
{
	const char *header = gw_request_header(r, "Last-Event-ID");
	const char *field = header != NULL ? "Last-Event-ID" : "after";
	const char *value = header != NULL ? header : gw_request_query(r, "after");
	*resume = value != NULL;
	if (value == NULL || (value[0] != '\0' && gw_sse_last_event_id(value, after)))
		return true;
	gw_api_respond_field_error(r, 400, "the event id to resume after is invalid", field,
	                           "must be an event id of this stream (decimal digits)");
	return false;
}

void gw_inventory_feed(gw_request *r, gw_api *api, const gw_caller *caller)
{
	uint64_t after = 0;
	bool resume;
	feed *f = NULL;
	if (!resume_point(r, &after, &resume))
		return;
	if (api->store == NULL || api->inventory_feeds >= GW_API_FEEDS_MAX) {
		gw_respond_error(r, 503,
		                 api->store == NULL ? "the event stream is unavailable"
		                                    : "too many inventory feeds are open; retry later");
		return;
	}
	if (gw_request_method(r) == GW_HEAD) {
		gw_respond(r, 200, GW_SSE_CONTENT_TYPE, NULL, 0);
		return;
	}
	if ((f = calloc(1, sizeof *f)) == NULL || pthread_mutex_init(&f->lock, NULL) != 0) {
		free(f);
		gw_respond_error(r, 500, NULL);
		return;
	}
	f->api = api;
	f->owners = 2; /* the HTTP side and the follow */
	api->inventory_feeds++;
	if ((f->tick = event_new(gw_server_base(api->server), -1, EV_PERSIST, feed_tick, f)) == NULL) {
		f->owners = 1;
		gw_respond_error(r, 500, NULL);
		goto fail;
	}
	orn_rc rc = es_follow_start(api->store, FEED_FILTER, resume ? after + 1 : 0, on_event, on_follow_done,
	                            f, &f->follow);
	if (rc != ORN_OK) {
		f->owners = 1;
		log_error("inventory feed cannot follow the stream", "error", orn_strerror(rc));
		gw_respond_error(r, 503, "the event stream is unavailable");
		goto fail;
	}
	gw_response_header(r, "X-Accel-Buffering", "no");
	if ((f->stream = gw_respond_stream(r, GW_SSE_CONTENT_TYPE, feed_closed, f)) == NULL)
		goto fail; /* answered 503 or 500 */
	f->last_write_ns = orn_monotonic_ns();
	struct timeval tv = {.tv_sec = 0, .tv_usec = FEED_TICK_MS * 1000};
	if (gw_sse_retry(f->stream, FEED_RETRY_MS) != ORN_OK || event_add(f->tick, &tv) != 0)
		feed_end(f);
	return;
fail:
	feed_close_http(f);
}
