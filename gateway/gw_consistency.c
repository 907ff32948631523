/* gw_consistency.c — waiters on the projector's position (see
 * gw_consistency.h): a list on the loop, and one watcher thread that sleeps
 * in proj_runner_wait while somebody waits and wakes the loop only when a
 * waiter can be answered.
 *
 * The loop owns the list. Each check (on_tick) answers the waiters reached or
 * past their deadline, then tells the watcher the lowest sequence still
 * wanted (wanted, under lock; 0: nobody waits) and arms the tick for the
 * earliest deadline. The watcher waits for the projector to move past what
 * it saw (every committed batch broadcasts), and when the position reaches
 * wanted it clears wanted and activates the tick (event_active is
 * thread-safe: gw_threads_init); the loop's next check sets wanted again.
 * A wait that reaches its sequence at once costs no thread at all. */
#include "gw_consistency.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include <event2/event.h>

#include "log.h"

#define SLICE_MS_DEFAULT 50 /* the watcher re-checks its stop flag at least this often */

typedef struct waiter {
	struct waiter *next;
	uint64_t seq;
	int64_t deadline_ns; /* monotonic */
	gw_consistency_fn *fn;
	void *closure;
} waiter;

struct gw_consistency {
	proj_runner *runner;
	struct event *tick; /* the loop's check: activated by the watcher, or at the earliest deadline */
	unsigned slice_ms;
	waiter *head, *tail; /* loop only; FIFO: callbacks in the order of the waits */
	size_t count;
	pthread_t watcher;
	bool watcher_started;
	pthread_mutex_t lock; /* guards wanted and stopping */
	pthread_cond_t wake;
	uint64_t wanted; /* the lowest sequence a waiter still wants; 0: none */
	bool stopping;
};

/* ---- the watcher thread ---- */

static void *watch(void *arg)
{
	gw_consistency *c = arg;
	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		if (c->wanted == 0) {
			pthread_cond_wait(&c->wake, &c->lock);
			continue;
		}
		uint64_t seen = proj_runner_position(c->runner);
		orn_rc rc = ORN_OK;
		if (seen < c->wanted) {
			pthread_mutex_unlock(&c->lock);
			rc = proj_runner_wait(c->runner, seen + 1,
			                      c->slice_ms); /* the next batch, or the slice */
			pthread_mutex_lock(&c->lock);
			seen = proj_runner_position(c->runner);
		}
		if (c->wanted != 0 && seen >= c->wanted) {
			c->wanted = 0; /* the loop's check says what is wanted next */
			event_active(c->tick, EV_TIMEOUT, 0);
		} else if (rc == ORN_EUNAVAILABLE) {
			/* the runner stops: its waits return at once, so do not spin */
			struct timespec until = orn_monotonic_deadline(c->slice_ms);
			pthread_cond_timedwait(&c->wake, &c->lock, &until);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Tells the watcher what is wanted now (0: nothing). Loop thread. */
static void want(gw_consistency *c, uint64_t seq)
{
	pthread_mutex_lock(&c->lock);
	bool was_idle = c->wanted == 0;
	c->wanted = seq;
	if (was_idle && seq != 0)
		pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
}

/* ---- the loop ---- */

/* Arms the tick to fire deadline_ns from now (monotonic), or at once. */
static void arm_until(gw_consistency *c, int64_t deadline_ns)
{
	int64_t wait_ns = deadline_ns - orn_monotonic_ns();
	struct timeval tv = {0, 0};
	if (wait_ns > 0) {
		tv.tv_sec = (time_t)(wait_ns / 1000000000);
		tv.tv_usec = (suseconds_t)(wait_ns % 1000000000 / 1000) + 1; /* never before the deadline */
	}
	if (evtimer_add(c->tick, &tv) != 0) {
		/* Cannot happen for a timer on a live base; checking at once keeps
		 * every waiter bounded if it ever does. */
		event_active(c->tick, EV_TIMEOUT, 0);
	}
}

/* One check: takes the finished waiters out first, tells the watcher what
 * the others want, then calls the finished ones, so a callback may wait
 * again. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	gw_consistency *c = arg;
	uint64_t position = proj_runner_position(c->runner), lowest = 0;
	int64_t now = orn_monotonic_ns(), earliest = 0;
	waiter *done = NULL, **done_tail = &done, **link = &c->head, *last = NULL;
	(void)fd;
	(void)what;
	while (*link) {
		waiter *w = *link;
		if (w->seq <= position || now >= w->deadline_ns) {
			*link = w->next;
			w->next = NULL;
			*done_tail = w;
			done_tail = &w->next;
			c->count--;
		} else {
			lowest = lowest == 0 || w->seq < lowest ? w->seq : lowest;
			earliest = earliest == 0 || w->deadline_ns < earliest ? w->deadline_ns : earliest;
			last = w;
			link = &w->next;
		}
	}
	c->tail = last;
	want(c, lowest);
	if (c->head)
		arm_until(c, earliest);
	while (done) {
		waiter *w = done;
		done = w->next;
		w->fn(w->closure, w->seq <= position ? ORN_OK : ORN_ETIMEOUT);
		free(w);
	}
}

orn_rc gw_consistency_create(struct event_base *base, proj_runner *runner, unsigned poll_ms,
                             gw_consistency **out)
{
	*out = NULL;
	gw_consistency *c = calloc(1, sizeof *c);
	if (!c)
		return ORN_ENOMEM;
	c->runner = runner;
	c->slice_ms = poll_ms ? poll_ms : SLICE_MS_DEFAULT;
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->wake, &attr);
	pthread_condattr_destroy(&attr);
	c->tick = evtimer_new(base, on_tick, c);
	if (!c->tick || pthread_create(&c->watcher, NULL, watch, c) != 0) {
		gw_consistency_destroy(c);
		return ORN_ENOMEM;
	}
	c->watcher_started = true;
	*out = c;
	return ORN_OK;
}

void gw_consistency_destroy(gw_consistency *c)
{
	if (!c)
		return;
	if (c->watcher_started) {
		pthread_mutex_lock(&c->lock);
		c->stopping = true;
		pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->watcher, NULL); /* at most one slice */
	}
	if (c->tick)
		event_free(c->tick);
	waiter *w = c->head;
	c->head = c->tail = NULL;
	c->count = 0;
	while (w) {
		waiter *next = w->next;
		w->fn(w->closure, ORN_EUNAVAILABLE);
		free(w);
		w = next;
	}
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

orn_rc gw_consistency_wait(gw_consistency *c, uint64_t seq, unsigned timeout_ms, gw_consistency_fn *fn,
                           void *closure)
{
	waiter *w = malloc(sizeof *w);
	if (!w)
		return ORN_ENOMEM;
	w->next = NULL;
	w->seq = seq;
	w->deadline_ns = orn_monotonic_ns() + (int64_t)timeout_ms * 1000000;
	w->fn = fn;
	w->closure = closure;
	if (c->tail)
		c->tail->next = w;
	else
		c->head = w;
	c->tail = w;
	c->count++;
	/* Check on the next loop iteration: an already applied seq (the usual
	 * case once the projector keeps up) needs no watcher. */
	event_active(c->tick, EV_TIMEOUT, 0);
	return ORN_OK;
}

bool gw_consistency_reached(gw_consistency *c, uint64_t seq)
{
	return seq <= proj_runner_position(c->runner);
}

size_t gw_consistency_waiting(const gw_consistency *c)
{
	return c->count;
}
