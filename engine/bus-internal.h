/* bus-internal.h — bus_send on a NATS connection of the caller's: for the
 * engine's own files and its tests (a test's client of its own). */
#ifndef ORION_BUS_INTERNAL_H
#define ORION_BUS_INTERNAL_H

#include <nats/nats.h>

#include "bus.h"

/* As bus_send, on nc. */
orn_rc bus_send_on(natsConnection *nc, const char *aggregate, const char *id, const env_envelope *cmd,
                   int64_t timeout_ms, bus_reply *out);

/* ---- commands within one process (ADR 033, bus_local.c) ----
 *
 * An actor runtime serves its kind to the process; a sender of the process
 * hands a command to it directly (no request and no reply through NATS) and
 * listens for the answer on its inbox's name. Everything else is as over
 * NATS: the same bytes, the same reply subject, the same bounds. */

/* Takes msg (a command on "orion.cmd.<kind>.<id>") into runtime: true, or
 * false and msg is the caller's (an invalid id, a full queue). */
typedef bool bus_local_post_fn(void *runtime, natsMsg *msg);
/* A reply addressed to "<inbox>.<token>" of the listener. */
typedef void bus_local_reply_fn(void *closure, const char *to, const void *data, size_t len);

/* runtime serves aggregate to the process: false if another runtime of the
 * process serves it already (or the table is full): that one stays. */
bool bus_local_serve(const char *aggregate, bus_local_post_fn *post, void *runtime);
/* Serves no more; returns once no post to runtime is in progress. */
void bus_local_unserve(void *runtime);
/* Hands the request to the process's runtime of aggregate: false if there
 * is none or it did not take it (send it over NATS then). */
bool bus_local_request(const char *aggregate, const char *subject, const char *reply, const void *data,
                       size_t len);
/* Replies to "<inbox>.*" reach fn (closure not NULL). ORN_ETOOBIG: too many
 * listeners; ORN_ENOMEM. */
orn_rc bus_local_listen(const char *inbox, bus_local_reply_fn *fn, void *closure);
/* Listens no more; returns once no call to its fn is in progress. */
void bus_local_unlisten(void *closure);
/* Hands a reply to the listener of its inbox in this process: false if none. */
bool bus_local_reply(const char *to, const void *data, size_t len);

#endif
