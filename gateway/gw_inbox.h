/* gw_inbox.h — hands work from any thread back to an event loop.
 *
 * Worker threads (password hashing, command replies) must never touch
 * libevent or an HTTP request directly: they post a closure here and the
 * loop thread runs it. The queue is a mutex-protected list plus one event
 * made active with event_active(), which wakes the loop (libevent's pthread
 * support must be on before the base is created: see gw_event_base_new). */
#ifndef ORION_GW_INBOX_H
#define ORION_GW_INBOX_H

#include <stdbool.h>

#include "orn.h"

struct event_base;

typedef struct gw_inbox gw_inbox;

/* A posted closure. run is true when called on the loop thread; false when
 * the inbox is destroyed with the item still queued (then only free arg). */
typedef void gw_inbox_fn(void *arg, bool run);

/* Turns on libevent's pthread locking (idempotent, thread-safe). Must run
 * before any event_base that other threads will wake is created. */
void gw_threads_init(void);

/* gw_threads_init() then event_base_new(); NULL on failure. The caller frees
 * it with event_base_free(). */
struct event_base *gw_event_base_new(void);

/* Creates an inbox whose closures run on base's loop. NULL on failure. */
gw_inbox *gw_inbox_create(struct event_base *base);

/* Destroys the inbox; queued closures are called with run = false. Must be
 * called on the loop thread (or with the loop stopped), after every poster
 * has stopped posting. NULL is accepted. */
void gw_inbox_destroy(gw_inbox *inbox);

/* Queues fn(arg, true) to run on the loop thread; safe from any thread.
 * ORN_ENOMEM if the item cannot be allocated (fn is not called then). */
orn_rc gw_inbox_post(gw_inbox *inbox, gw_inbox_fn *fn, void *arg);

#endif
