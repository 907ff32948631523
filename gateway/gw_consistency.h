/* gw_consistency.h — read-your-writes on the event loop.
 *
 * A command's reply carries the stream sequence of its commit (bus_reply.seq).
 * Before answering an admin command, the gateway waits until the projector
 * runner has applied that sequence, so the client's next GET through the
 * gateway reads LMDB that already holds the write. proj_runner_wait blocks,
 * so it cannot run on the loop; this module polls proj_runner_position
 * instead (a mutex-protected read, no I/O) from ONE libevent timer shared by
 * every waiter, armed only while somebody waits.
 *
 * Cost: while at least one waiter exists, one timer tick every poll_ms
 * (default 1 ms) reads the position once and walks the waiters; with none,
 * nothing runs. The added latency is at most one tick after the projector
 * commits its batch (the projector's batch_ms dominates). Deadlines are
 * checked on the same ticks, so a timeout is reported at most one tick late.
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
 * the runner only after gw_consistency_destroy) and base's loop. poll_ms 0
 * means 1. ORN_ENOMEM on failure; *out is NULL then. */
orn_rc gw_consistency_create(struct event_base *base, proj_runner *runner, unsigned poll_ms,
                             gw_consistency **out);

/* Calls every waiter with ORN_EUNAVAILABLE (callbacks must not call back into
 * the helper) and frees. Loop thread or loop stopped. NULL is accepted. */
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
