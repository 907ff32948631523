/* gw_work.h — work that may block (Argon2id, a keystore read over NATS) run
 * off the event loop on a bounded pool of threads, its result delivered back
 * on the loop through a gw_inbox.
 *
 * A pool runs jobs on `workers` threads with at most `queue_max` waiting; a
 * full queue is refused at once (the caller answers 503). Every accepted job
 * hears back exactly once through done: on the loop thread after fn ran
 * (run true), or from gw_work_destroy when it never ran or its result could
 * not be delivered (run false: only free what arg holds). */
#ifndef ORION_GW_WORK_H
#define ORION_GW_WORK_H

#include <stdbool.h>
#include <stddef.h>

#include "orn.h"

struct event_base;

typedef struct gw_work gw_work;

/* The job itself, on a worker thread: it must not touch libevent or a
 * request. */
typedef void gw_work_fn(void *arg);

/* The result, on the loop thread (run true) or from gw_work_destroy (run
 * false). */
typedef void gw_work_done(void *arg, bool run);

/* Starts workers threads (0: 1) that take at most queue_max waiting jobs;
 * results are delivered on base's loop (base from gw_event_base_new). NULL
 * on failure. Free with gw_work_destroy. */
gw_work *gw_work_create(struct event_base *base, unsigned workers, size_t queue_max);

/* Stops and joins the workers; jobs still queued and results not yet
 * delivered get done(arg, false) from this call. Call on the loop thread (or
 * with the loop stopped). NULL is accepted. The pool is freed. */
void gw_work_destroy(gw_work *w);

/* Queues fn(arg), then done(arg, true) on the loop. ORN_EUNAVAILABLE if the
 * queue is full or the pool stopping, ORN_ENOMEM; neither fn nor done is
 * called then. */
orn_rc gw_work_queue(gw_work *w, gw_work_fn *fn, gw_work_done *done, void *arg);

#endif
