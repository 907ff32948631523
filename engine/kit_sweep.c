/* kit_sweep.c — the sweeper under a durable consumer (kit-internal.h; ADR
 * 007 addendum, "Lost deliveries"). The nats-server we ship (Debian's 2.9)
 * can skip the redelivery of a message delivered to a process that died
 * while a NATS node failed over (fixed upstream in 2.11, nats-server PR
 * #6566); the sweeper follows the same subjects through the hub's shared
 * follower (an ordered consumer: no acks, gaps found by sequence) and hands
 * each commit to the role's handler again once it is due.
 *
 * Threads: the follower's delivery thread queues commits; the
 * sweeper's own thread waits for the earliest of the two heads to fall due
 * and calls the role's fn. The queue is in stream order, so its due times
 * grow (but for clock skew between writers); retries wait in a second list,
 * kept in due order, so that one is not held up behind commits due later.
 * Both lists and the map of each subject's newest item are under lock. */
#include "kit-internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"
#include "log.h"

#define WAIT_MAX_MS 1000 /* the thread looks at the queue at least this often */

typedef struct item {
	struct item *next;
	int64_t due_ms; /* wall clock */
	uint64_t seq;
	unsigned attempts;
	char subject[]; /* NUL-terminated */
} item;

struct kit_sweep {
	kit_sweep_options o;
	kit_hub *hub;
	kit_listener *listener;
	pthread_t thread;
	bool thread_started, stopping;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	item *head, *tail;
	size_t queued;
	item *retries;       /* in due order */
	hmap *newest;        /* newest_only: subject -> its newest item */
	uint64_t queued_seq; /* the follow thread's: the last commit queued */
	atomic_uint_least64_t dropped;
};

/* Appends it to the queue (lock held). */
static void push(kit_sweep *sw, item *it)
{
	it->next = NULL;
	if (sw->tail != NULL)
		sw->tail->next = it;
	else
		sw->head = it;
	sw->tail = it;
	sw->queued++;
}

/* Called for each event of each commit followed, in stream order: the
 * commit is queued at its first event the role wants. */
static orn_rc on_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	kit_sweep *sw = closure;
	item *it;
	size_t len = subject != NULL ? strlen(subject) : ES_SUBJECT_MAX;

	if (seq == sw->queued_seq || (sw->o.wants != NULL && !sw->o.wants(sw->o.closure, e)))
		return ORN_OK; /* a later event of a commit queued, or one the role does not sweep */
	sw->queued_seq = seq;
	if (len >= ES_SUBJECT_MAX || (it = calloc(1, sizeof *it + len + 1)) == NULL)
		return ORN_OK; /* the durable consumer's own delivery still stands */
	it->seq = seq;
	it->due_ms = (e->time_ms > 0 ? e->time_ms : orn_now_ms()) + sw->o.after_ms;
	memcpy(it->subject, subject, len + 1);
	pthread_mutex_lock(&sw->lock);
	if (sw->queued >= KIT_SWEEP_QUEUE_MAX ||
	    (sw->o.newest_only && hmap_put(sw->newest, it->subject, it) != ORN_OK)) {
		pthread_mutex_unlock(&sw->lock);
		if (atomic_fetch_add(&sw->dropped, 1) == 0)
			log_warn("sweeper queue full: commits go unswept", "sweeper", sw->o.name, "subject",
			         it->subject);
		free(it);
		return ORN_OK;
	}
	push(sw, it);
	pthread_cond_signal(&sw->wake);
	pthread_mutex_unlock(&sw->lock);
	return ORN_OK;
}

/* True if it is due to be looked at: its subject's newest (or every commit counts). */
static bool current(kit_sweep *sw, const item *it)
{
	return !sw->o.newest_only || hmap_get(sw->newest, it->subject) == it;
}

static void forget(kit_sweep *sw, item *it)
{
	if (sw->o.newest_only && hmap_get(sw->newest, it->subject) == it)
		hmap_remove(sw->newest, it->subject);
	free(it);
}

/* Puts it among the retries, in due order (lock held). */
static void retry_later(kit_sweep *sw, item *it)
{
	item **at = &sw->retries;

	it->attempts++;
	it->due_ms = orn_now_ms() + es_backoff_ms(it->attempts, sw->o.retry_first_ms, sw->o.retry_max_ms);
	while (*at != NULL && (*at)->due_ms <= it->due_ms)
		at = &(*at)->next;
	it->next = *at;
	*at = it;
}

/* Takes the earliest of the two heads if it is due, else NULL and *wait_ms
 * (lock held). */
static item *take_due(kit_sweep *sw, int64_t now, int64_t *wait_ms)
{
	bool retry = sw->retries != NULL && (sw->head == NULL || sw->retries->due_ms < sw->head->due_ms);
	item *it = retry ? sw->retries : sw->head;

	if (it == NULL || it->due_ms > now) {
		*wait_ms = it == NULL || it->due_ms - now > WAIT_MAX_MS ? WAIT_MAX_MS : it->due_ms - now;
		return NULL;
	}
	if (retry) {
		sw->retries = it->next;
	} else {
		sw->head = it->next;
		if (sw->head == NULL)
			sw->tail = NULL;
		sw->queued--;
	}
	it->next = NULL;
	return it;
}

static void *sweeper_main(void *arg)
{
	kit_sweep *sw = arg;

	pthread_mutex_lock(&sw->lock);
	while (!sw->stopping) {
		int64_t wait = 0;
		item *it = take_due(sw, orn_now_ms(), &wait);
		if (it == NULL) {
			struct timespec until = orn_monotonic_deadline(wait);
			pthread_cond_timedwait(&sw->wake, &sw->lock, &until);
			continue;
		}
		if (!current(sw, it)) {
			free(it); /* a newer commit of the subject is queued: it decides */
			continue;
		}
		pthread_mutex_unlock(&sw->lock);
		kit_verdict v = sw->o.fn(sw->o.closure, it->subject, it->seq);
		pthread_mutex_lock(&sw->lock);
		if (v == KIT_DONE || sw->stopping || !current(sw, it))
			forget(sw, it);
		else
			retry_later(sw, it);
	}
	pthread_mutex_unlock(&sw->lock);
	return NULL;
}

static void free_list(item *it)
{
	while (it != NULL) {
		item *next = it->next;
		free(it);
		it = next;
	}
}

static void sweep_free(kit_sweep *sw)
{
	kit_hub_unlisten(sw->hub, sw->listener); /* on_event is not called after this */
	if (sw->thread_started) {
		pthread_mutex_lock(&sw->lock);
		sw->stopping = true;
		pthread_cond_broadcast(&sw->wake);
		pthread_mutex_unlock(&sw->lock);
		pthread_join(sw->thread, NULL);
	}
	free_list(sw->head);
	free_list(sw->retries);
	hmap_destroy(sw->newest);
	pthread_cond_destroy(&sw->wake);
	pthread_mutex_destroy(&sw->lock);
	free(sw);
}

orn_rc kit_sweep_start(kit_hub *hub, const kit_sweep_options *o, kit_sweep **out)
{
	pthread_condattr_t attr;
	kit_sweep *sw;
	orn_rc rc;

	*out = NULL;
	if (hub == NULL || o == NULL || o->filter == NULL || o->fn == NULL || o->after_ms <= 0)
		return ORN_EINVAL;
	if ((sw = calloc(1, sizeof *sw)) == NULL)
		return ORN_ENOMEM;
	sw->o = *o;
	sw->hub = hub;
	if (sw->o.retry_first_ms <= 0)
		sw->o.retry_first_ms = 100;
	if (sw->o.retry_max_ms <= 0)
		sw->o.retry_max_ms = 10000;
	if (sw->o.name == NULL)
		sw->o.name = "";
	atomic_init(&sw->dropped, 0);
	pthread_mutex_init(&sw->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&sw->wake, &attr);
	pthread_condattr_destroy(&attr);
	if (sw->o.newest_only && (sw->newest = hmap_create()) == NULL) {
		sweep_free(sw);
		return ORN_ENOMEM;
	}
	if (pthread_create(&sw->thread, NULL, sweeper_main, sw) != 0) {
		sweep_free(sw);
		return ORN_ENOMEM;
	}
	sw->thread_started = true;
	int64_t lookback = 2 * o->after_ms > KIT_SWEEP_LOOKBACK_MS ? 2 * o->after_ms : KIT_SWEEP_LOOKBACK_MS;
	rc = kit_hub_listen(hub, o->filter, orn_now_ms() - lookback, on_event, sw, &sw->listener);
	if (rc != ORN_OK) {
		log_warn("sweeper cannot follow its subjects", "sweeper", sw->o.name, "error",
		         orn_rc_name(rc));
		sweep_free(sw);
		return rc;
	}
	*out = sw;
	return ORN_OK;
}

void kit_sweep_stop(kit_sweep *sw)
{
	if (sw != NULL)
		sweep_free(sw);
}

uint64_t kit_sweep_dropped(const kit_sweep *sw)
{
	return sw != NULL ? atomic_load(&sw->dropped) : 0;
}
