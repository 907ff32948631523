/* gw_consistency.h — read-your-writes on the event loop.
 *
 * A command's reply carries the stream sequence of its commit (bus_reply.seq).
 * Before answering an admin command, the gateway waits until the projector
 * runner has applied that sequence, so the client's next GET through the
 * gateway reads LMDB that already holds the write. proj_runner_wait blocks,
 * so it cannot run on the loop: one watcher thread per helper blocks in it
 * while somebody waits, and wakes the loop when a waiter can be answered.
 *
 * Cost: a sequence applied already is answered on the next loop iteration
 * (one position read). Otherwise the watcher wakes once per projector batch
 * (a condition variable the projector broadcasts) and wakes the loop once
 * when the lowest sequence wanted is reached, whatever the number of
 * waiters; with none it sleeps. (Polling every millisecond instead woke the
 * loop about 17 times per order placed: docs/adr/025.) Deadlines are a loop
 * timer armed for the earliest one.
 *
 * Threading: every function and every callback runs on the loop thread. */
#ifndef ORION_GW_CONSISTENCY_H
#define ORION_GW_CONSISTENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orn.h"
#include "projector.h"

struct event_base;

typedef struct gw_consistency gw_consistency;

/* Called once on the loop thread: ORN_OK when position >= seq, ORN_ETIMEOUT
 * after the bound, ORN_EUNAVAILABLE when the helper is destroyed first. */
typedef void gw_consistency_fn(void *closure, orn_rc rc);

/* Creates the helper over runner (not owned; it must outlive the helper: stop
 * the runner only after gw_consistency_destroy) and base's loop (created
 * after gw_threads_init), with its watcher thread. poll_ms bounds how long
 * the watcher sleeps without looking at its stop flag (so destroy waits at
 * most that long); 0 means 50 ms. ORN_ENOMEM on failure; *out is NULL then. */
orn_rc gw_consistency_create(struct event_base *base, proj_runner *runner, unsigned poll_ms,
                             gw_consistency **out);

/* Stops the watcher, calls every waiter with ORN_EUNAVAILABLE (callbacks
 * must not call back into the helper) and frees. Loop thread or loop
 * stopped. NULL is accepted. */
void gw_consistency_destroy(gw_consistency *c);

/* Calls fn(closure, rc) when the read side has applied seq, or ORN_ETIMEOUT
 * after timeout_ms. fn is never called from inside this function, even when
 * seq is already applied (it runs on the next loop iteration); seq 0 (the
 * command appended nothing) is reached at once. Returns ORN_OK (fn will be
 * called exactly once) or ORN_ENOMEM (fn is not called). */
orn_rc gw_consistency_wait(gw_consistency *c, uint64_t seq, unsigned timeout_ms, gw_consistency_fn *fn,
                           void *closure);

/* True if the read side has applied seq already (no waiting needed). */
bool gw_consistency_reached(gw_consistency *c, uint64_t seq);

/* Waiters not called yet. */
size_t gw_consistency_waiting(const gw_consistency *c);

#endif
