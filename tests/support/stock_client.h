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

/* Builds command i of a pipelined run: the item it goes to, its id and the
 * command itself. */
typedef void (*tsc_make_fn)(long i, char *item, size_t item_cap, char *command_id, size_t id_cap,
                            stock_command *c, void *closure);

/* Sends count commands built by make with up to window of them unanswered
 * (one reply inbox), waiting up to timeout_ms for each reply; *accepted
 * counts the "accepted" replies. ORN_ETIMEOUT if a reply does not come. */
orn_rc tsc_send_many(natsConnection *nc, long count, int window, tsc_make_fn make, void *closure,
                     int64_t timeout_ms, long *accepted);

/* Connects a plain client to url; asserts on failure. */
natsConnection *tsc_connect(const char *url);

/* Connects to the embedded server of an `orion serve` on data_dir as its ops
 * user (<data_dir>/nats/credentials, ADR 014); asserts on failure. */
natsConnection *tsc_connect_ops(const char *url, const char *data_dir);

#endif
