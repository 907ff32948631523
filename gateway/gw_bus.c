/* gw_bus.c — asynchronous command requests for the event loop (see gw_bus.h).
 *
 * A request's life: gw_bus_send (loop) puts it in the map under the lock,
 * arms its event as the deadline and publishes. The reply (cnats thread)
 * marks it REPLIED under the lock and activates the event; the deadline
 * (loop) fires the same event while it is still WAITING. The event's
 * callback (loop) takes it out of the map under the lock, so whichever comes
 * second finds nothing: exactly one delivery. */
#include "gw_bus.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "evstore.h"
#include "hashmap.h"
#include "log.h"
#include "mpack.h"

#define TOKEN_MAX         24    /* decimal uint64 + NUL */
#define INBOX_MAX         128   /* "_INBOX.<nuid>" */
#define QUIESCE_WAIT_MS   10000 /* longest wait for cnats to finish a reply callback */
#define PENDING_MSGS_MAX  1000000
#define PENDING_BYTES_MAX (256 * 1024 * 1024)
#define WRITER_RESERVE    4096 /* commands fit without a realloc (which would leave a copy behind) */

typedef enum pending_state { WAITING, REPLIED } pending_state;

typedef struct pending {
	gw_bus *bus;
	char token[TOKEN_MAX];
	struct event *event; /* deadline timer, activated by the reply */
	gw_bus_fn *fn;
	void *closure;
	pending_state state; /* under bus->lock */
	orn_rc rc;           /* of the reply, set with REPLIED */
	bus_reply reply;
	struct pending *prev, *next; /* every undelivered request (loop thread only) */
} pending;

struct gw_bus {
	natsConnection *nc;
	struct event_base *base;
	natsSubscription *sub;
	char inbox[INBOX_MAX];
	mp_writer *writer; /* command encoding, loop thread only */
	uint64_t next_token;
	bool closing;
	pending *all; /* loop thread only */
	size_t count;

	pthread_mutex_t lock; /* guards map and every pending's state/rc/reply */
	hmap *map;            /* token -> pending, requests that may still get a reply */

	pthread_mutex_t done_lock; /* the reply subscription's completion */
	pthread_cond_t done_cond;
	bool done;
};

static void list_link(gw_bus *bus, pending *p)
{
	p->prev = NULL;
	p->next = bus->all;
	if (bus->all)
		bus->all->prev = p;
	bus->all = p;
	bus->count++;
}

static void list_unlink(gw_bus *bus, pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		bus->all = p->next;
	if (p->next)
		p->next->prev = p->prev;
	bus->count--;
}

/* Frees a request that has left the map and the list. */
static void pending_free(pending *p)
{
	if (p->event)
		event_free(p->event);
	bus_reply_dispose(&p->reply);
	free(p);
}

/* Loop thread: the deadline fired or the reply activated the event. */
static void on_event(evutil_socket_t fd, short what, void *arg)
{
	pending *p = arg;
	gw_bus *bus = p->bus;
	pthread_mutex_lock(&bus->lock);
	hmap_remove(bus->map, p->token); /* a later reply finds nothing */
	orn_rc rc = p->state == REPLIED ? p->rc : ORN_ETIMEOUT;
	pthread_mutex_unlock(&bus->lock);
	list_unlink(bus, p);
	p->fn(p->closure, rc, rc == ORN_OK ? &p->reply : NULL);
	pending_free(p);
}

/* cnats delivery thread: one reply (or a no-responders status). */
static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	gw_bus *bus = closure;
	const char *subject = natsMsg_GetSubject(msg);
	const char *dot = strrchr(subject, '.');
	bus_reply reply;
	orn_rc rc = ORN_EUNAVAILABLE;
	memset(&reply, 0, sizeof reply);
	if (!natsMsg_IsNoResponders(msg))
		rc = bus_reply_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &reply);
	pthread_mutex_lock(&bus->lock);
	pending *p = dot ? hmap_get(bus->map, dot + 1) : NULL;
	if (p && p->state == WAITING) {
		p->state = REPLIED;
		p->rc = rc;
		p->reply = reply;
		memset(&reply, 0, sizeof reply);
		event_active(p->event, EV_READ, 0);
	}
	pthread_mutex_unlock(&bus->lock);
	bus_reply_dispose(&reply); /* late, duplicate or unknown: dropped */
	natsMsg_Destroy(msg);
}

static void on_subscription_done(void *closure)
{
	gw_bus *bus = closure;
	pthread_mutex_lock(&bus->done_lock);
	bus->done = true;
	pthread_cond_broadcast(&bus->done_cond);
	pthread_mutex_unlock(&bus->done_lock);
}

/* Closes the reply subscription and waits until cnats will not call
 * on_reply again. False if that could not be confirmed in time. */
static bool quiesce(gw_bus *bus)
{
	natsSubscription_Unsubscribe(bus->sub); /* fails harmlessly if already closed */
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += QUIESCE_WAIT_MS / 1000;
	bool done = true;
	pthread_mutex_lock(&bus->done_lock);
	while (!bus->done)
		if (pthread_cond_timedwait(&bus->done_cond, &bus->done_lock, &until) != 0) {
			done = bus->done;
			break;
		}
	pthread_mutex_unlock(&bus->done_lock);
	return done;
}

static const uint8_t writer_reserve[WRITER_RESERVE];

/* Zeroes what the reused writer holds (a command may carry a card) and
 * empties it. */
static void wipe_writer(gw_bus *bus)
{
	if (mp_writer_size(bus->writer) > 0)
		sodium_memzero((void *)mp_writer_data(bus->writer), mp_writer_size(bus->writer));
	mp_writer_reset(bus->writer);
}

static void bus_free(gw_bus *bus)
{
	if (bus->writer)
		wipe_writer(bus);
	natsSubscription_Destroy(bus->sub);
	hmap_destroy(bus->map);
	mp_writer_destroy(bus->writer);
	pthread_cond_destroy(&bus->done_cond);
	pthread_mutex_destroy(&bus->done_lock);
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

orn_rc gw_bus_create(natsConnection *nc, struct event_base *base, gw_bus **out)
{
	orn_rc rc = ORN_ENOMEM;
	*out = NULL;
	gw_bus *bus = calloc(1, sizeof *bus);
	if (!bus)
		return ORN_ENOMEM;
	bus->nc = nc;
	bus->base = base;
	pthread_mutex_init(&bus->lock, NULL);
	pthread_mutex_init(&bus->done_lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&bus->done_cond, &attr);
	pthread_condattr_destroy(&attr);
	bus->map = hmap_create();
	bus->writer = mp_writer_create();
	if (!bus->map || !bus->writer)
		goto fail;
	mp_write_raw(bus->writer, writer_reserve, sizeof writer_reserve); /* grows it once, now */
	if (mp_writer_status(bus->writer) != ORN_OK)
		goto fail;
	mp_writer_reset(bus->writer);
	natsInbox *inbox = NULL;
	if (natsInbox_Create(&inbox) != NATS_OK)
		goto fail;
	int n = snprintf(bus->inbox, sizeof bus->inbox, "%s", (const char *)inbox);
	natsInbox_Destroy(inbox);
	if (n < 0 || (size_t)n >= sizeof bus->inbox - TOKEN_MAX - 1) {
		rc = ORN_EINTERNAL;
		goto fail;
	}
	char pattern[INBOX_MAX + 2];
	snprintf(pattern, sizeof pattern, "%s.*", bus->inbox);
	natsStatus st = natsConnection_Subscribe(&bus->sub, nc, pattern, on_reply, bus);
	if (st != NATS_OK) {
		rc = es_status_rc(st, 0) == ORN_ENOMEM ? ORN_ENOMEM : ORN_EUNAVAILABLE;
		goto fail;
	}
	if (natsSubscription_SetOnCompleteCB(bus->sub, on_subscription_done, bus) != NATS_OK) {
		/* Without it destroy could free the bus under a running callback. */
		natsSubscription_Unsubscribe(bus->sub);
		natsSubscription_Destroy(bus->sub);
		bus->sub = NULL;
		rc = ORN_EUNAVAILABLE;
		goto fail;
	}
	natsSubscription_SetPendingLimits(bus->sub, PENDING_MSGS_MAX, PENDING_BYTES_MAX);
	*out = bus;
	return ORN_OK;
fail:
	bus_free(bus);
	return rc;
}

void gw_bus_destroy(gw_bus *bus)
{
	if (!bus)
		return;
	bus->closing = true;
	if (!quiesce(bus)) {
		/* cnats may still call on_reply with bus: leaking beats a crash. */
		log_error("gw_bus: reply subscription did not close; leaking the bus");
		return;
	}
	/* No other thread touches the bus now. A callback may send again: the
	 * closing flag refuses it, so the list only shrinks. */
	while (bus->all) {
		pending *p = bus->all;
		list_unlink(bus, p);
		hmap_remove(bus->map, p->token);
		p->fn(p->closure, ORN_EUNAVAILABLE, NULL);
		pending_free(p);
	}
	bus_free(bus);
}

size_t gw_bus_pending(gw_bus *bus)
{
	return bus->count;
}

orn_rc gw_bus_send(gw_bus *bus, const char *aggregate, const char *id, const env_envelope *cmd,
                   int64_t timeout_ms, gw_bus_fn *fn, void *closure)
{
	char subject[ES_SUBJECT_MAX], reply_to[INBOX_MAX + TOKEN_MAX + 1];
	orn_rc rc = ORN_OK;
	pending *p = NULL;
	bool mapped = false;
	assert(fn != NULL);
	if (bus->closing)
		return ORN_EUNAVAILABLE;
	if (timeout_ms <= 0 || timeout_ms > INT32_MAX)
		return ORN_EINVAL;
	if ((rc = bus_command_subject(subject, sizeof subject, aggregate, id)) != ORN_OK)
		return rc;
	/* From here every path leaves through done, which wipes the writer. */
	mp_writer_reset(bus->writer);
	if ((rc = env_encode(bus->writer, cmd)) != ORN_OK)
		goto done;
	if (mp_writer_size(bus->writer) > INT32_MAX) {
		rc = ORN_ETOOBIG;
		goto done;
	}
	rc = ORN_ENOMEM;
	if ((p = calloc(1, sizeof *p)) == NULL)
		goto done;
	p->bus = bus;
	p->fn = fn;
	p->closure = closure;
	p->state = WAITING;
	snprintf(p->token, sizeof p->token, "%" PRIu64, ++bus->next_token);
	snprintf(reply_to, sizeof reply_to, "%s.%s", bus->inbox, p->token);
	p->event = evtimer_new(bus->base, on_event, p);
	if (!p->event)
		goto done;
	struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
	                     .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
	if (evtimer_add(p->event, &tv) != 0)
		goto done;
	pthread_mutex_lock(&bus->lock);
	rc = hmap_put(bus->map, p->token, p);
	pthread_mutex_unlock(&bus->lock);
	if (rc != ORN_OK)
		goto done;
	mapped = true;
	natsStatus st = natsConnection_PublishRequest(bus->nc, subject, reply_to, mp_writer_data(bus->writer),
	                                              (int)mp_writer_size(bus->writer));
	if (st != NATS_OK) {
		rc = es_status_rc(st, 0);
		if (rc == ORN_OK || rc == ORN_ENOTFOUND)
			rc = ORN_EUNAVAILABLE;
		goto done;
	}
	list_link(bus, p);
	p = NULL; /* delivered by on_event */
	rc = ORN_OK;
done:
	/* A command may carry a card (Pay, ADR 009): no copy stays in the reused
	 * writer, whatever happened (a partial encoding included). */
	wipe_writer(bus);
	if (p != NULL) {
		if (mapped) {
			pthread_mutex_lock(&bus->lock);
			hmap_remove(bus->map, p->token);
			pthread_mutex_unlock(&bus->lock);
		}
		pending_free(p);
	}
	return rc;
}
