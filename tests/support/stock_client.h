/* stock_client.h — test helpers that talk to stock actors over real NATS. */
#ifndef ORION_TEST_STOCK_CLIENT_H
#define ORION_TEST_STOCK_CLIENT_H

#include <nats/nats.h>

#include "bus.h"
#include "evstore.h"
#include "stock.h"

/* Sends one stock command with the given command id and waits for the reply
 * (out param, dispose it). Returns the transport status. */
orn_rc tsc_send(natsConnection *nc, const char *item, const stock_command *c, const char *command_id,
                int64_t timeout_ms, bus_reply *out);

/* Same, but for the "Get" query: fills on_hand/reserved/sold from the view. */
orn_rc tsc_get(natsConnection *nc, const char *item, int64_t *on_hand, int64_t *reserved, int64_t *sold,
               int64_t *held_count);

/* Rebuilds an item's state from the stream alone (fresh state, every event
 * folded with stock_evolve). The caller disposes *state. */
orn_rc tsc_rebuild(es_store *store, const char *item, stock_state *state, uint64_t *version);

/* Builds commands. */
stock_command tsc_create(int64_t quantity);
stock_command tsc_reserve(const char *reservation_id, int64_t quantity);
stock_command tsc_adjust(int64_t delta, const char *reason);

/* Connects a plain client to url; asserts on failure. */
natsConnection *tsc_connect(const char *url);

#endif
