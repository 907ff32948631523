/* gw_consistency.c — waiters on the projector's position, polled from one
 * loop timer (see gw_consistency.h). */
#include "gw_consistency.h"

#include <stdbool.h>
#include <stdlib.h>

#include <event2/event.h>

#include "log.h"

typedef struct waiter {
	struct waiter *next;
	uint64_t seq;
	int64_t deadline_ns; /* monotonic */
	gw_consistency_fn *fn;
	void *closure;
} waiter;

struct gw_consistency {
	proj_runner *runner;
	struct event *tick; /* armed only while waiters exist */
	unsigned poll_ms;
	waiter *head, *tail; /* FIFO: callbacks in the order of the waits */
	size_t count;
};

static void arm(gw_consistency *c)
{
	struct timeval tv = {.tv_sec = c->poll_ms / 1000, .tv_usec = (suseconds_t)(c->poll_ms % 1000) * 1000};
	if (evtimer_add(c->tick, &tv) != 0) {
		/* Cannot happen for a timer on a live base; waking at once keeps
		 * every waiter bounded if it ever does. */
		event_active(c->tick, EV_TIMEOUT, 0);
	}
}

/* One poll: takes the finished waiters out first, then calls them, so a
 * callback may wait again. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	gw_consistency *c = arg;
	uint64_t position = proj_runner_position(c->runner);
	int64_t now = orn_monotonic_ns();
	waiter *done = NULL, **done_tail = &done, **link = &c->head, *last = NULL;
	while (*link) {
		waiter *w = *link;
		if (w->seq <= position || now >= w->deadline_ns) {
			*link = w->next;
			w->next = NULL;
			*done_tail = w;
			done_tail = &w->next;
			c->count--;
		} else {
			last = w;
			link = &w->next;
		}
	}
	c->tail = last;
	if (c->head)
		arm(c);
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
	c->poll_ms = poll_ms ? poll_ms : 1;
	c->tick = evtimer_new(base, on_tick, c);
	if (!c->tick) {
		free(c);
		return ORN_ENOMEM;
	}
	*out = c;
	return ORN_OK;
}

void gw_consistency_destroy(gw_consistency *c)
{
	if (!c)
		return;
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
	 * case once the projector keeps up) costs no poll interval. */
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
