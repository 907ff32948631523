/* gw_bus.h — the gateway's asynchronous command client.
 *
 * bus_send (engine/bus.h) blocks its caller until the reply comes; the
 * gateway's event loop must never block, so this module sends commands as
 * plain NATS publishes with a reply subject and delivers the replies back on
 * the loop thread:
 *
 * - ONE subscription "<inbox>.*" per bus receives every reply; the last token
 *   of the reply subject ("<inbox>.<n>") finds the pending request in a map;
 * - each request has ONE event on the loop, armed as its deadline timer;
 * - the reply is decoded (bus_reply_decode) on cnats' delivery thread, stored
 *   in the request, and that same event is made active (event_active is
 *   thread-safe with libevent's pthreads on): the loop runs the callback.
 *   Unlike a gw_inbox post this allocates nothing on the reply path, so a
 *   decoded reply cannot be lost to ENOMEM, and one callback under one lock
 *   decides between reply and timeout;
 * - if the deadline fires first the callback gets ORN_ETIMEOUT and a late
 *   reply is dropped;
 * - a request nobody serves (no subscriber in orion.<aggregate>) is answered
 *   at once by nats-server with a "no responders" status (503, no payload),
 *   which becomes ORN_EUNAVAILABLE (the connection must have headers and no
 *   responders enabled: the cnats defaults).
 *
 * Every accepted gw_bus_send gets its callback called exactly once, on the
 * loop thread, never from inside gw_bus_send.
 *
 * Threading: gw_bus_create, gw_bus_send, gw_bus_pending and gw_bus_destroy
 * are called on the loop thread (or on one thread while the loop is not
 * running); callbacks run on the loop thread and may call gw_bus_send, but
 * not gw_bus_destroy. Only cnats' own delivery thread touches the bus
 * otherwise, under the bus's lock. */
#ifndef ORION_GW_BUS_H
#define ORION_GW_BUS_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "bus.h"
#include "envelope.h"
#include "orn.h"

struct event_base;

typedef struct gw_bus gw_bus;

/* The outcome of one command, called on the loop thread:
 *   rc ORN_OK           reply decoded; *reply is valid during the call only
 *                       (the bus disposes it after; copy what you keep,
 *                       or take reply->view and set it to NULL);
 *   rc ORN_ETIMEOUT     no reply by the deadline (the command may still have
 *                       been applied: retry with the same command id);
 *   rc ORN_EUNAVAILABLE no service serves the aggregate, or the bus is being
 *                       destroyed;
 *   rc ORN_EDECODE      the reply did not decode.
 * reply is NULL unless rc is ORN_OK. */
typedef void gw_bus_fn(void *closure, orn_rc rc, bus_reply *reply);

/* Creates a bus that publishes on nc and runs callbacks on base's loop.
 * nc stays the caller's and must outlive the bus; base must have been made
 * with gw_event_base_new (libevent threads on). ORN_EUNAVAILABLE if the reply
 * subscription cannot be made, ORN_ENOMEM. On failure *out is NULL. */
orn_rc gw_bus_create(natsConnection *nc, struct event_base *base, gw_bus **out);

/* Stops listening for replies (waits for a reply callback that is running on
 * cnats' thread to return, so it may block a few ms), then calls every
 * request still pending with ORN_EUNAVAILABLE — on the calling thread, before
 * returning — and frees the bus. Replies that had arrived but were not yet
 * delivered count as pending. Call on the loop thread or with the loop
 * stopped, before the event base is freed. NULL is accepted. */
void gw_bus_destroy(gw_bus *bus);

/* Sends cmd to orion.cmd.<aggregate>.<id> and returns at once; fn(closure, ...)
 * is called later on the loop thread, exactly once. timeout_ms (> 0) bounds
 * the wait; keep it below the HTTP deadline (gw_request_defer) so the handler,
 * not the server's 503 fallback, answers. The command is encoded before the
 * call returns (cmd and its payload are only borrowed).
 * Returns ORN_OK (fn will be called), or an error and fn is never called:
 * ORN_EINVAL (bad aggregate, id, envelope or timeout), ORN_ENOMEM,
 * ORN_EUNAVAILABLE (connection closed, bus being destroyed), ORN_ETOOBIG. */
orn_rc gw_bus_send(gw_bus *bus, const char *aggregate, const char *id, const env_envelope *cmd,
                   int64_t timeout_ms, gw_bus_fn *fn, void *closure);

/* Requests whose callback has not run yet (loop thread). */
size_t gw_bus_pending(gw_bus *bus);

#endif
