/* checkout_world.h — the part of Orion a checkout needs, for integration
 * tests: a fresh nats-server, an event store on it, the stock, cart, order
 * and holds actor runtimes, a kit hub for the side-effect roles, and a plain client
 * connection for sending commands. The
 * tests of the saga, payments and verify-stock add their own roles on top. */
#ifndef ORION_TEST_CHECKOUT_WORLD_H
#define ORION_TEST_CHECKOUT_WORLD_H

#include <nats/nats.h>

#include "actor.h"
#include "evstore.h"
#include "kit.h"
#include "natsd.h"

typedef struct tcw_world {
	natsd *server;
	es_store *store;
	act_runtime *stock, *cart, *order, *holds;
	kit_hub *hub; /* for the side-effect roles the tests start */
	natsConnection *client;
} tcw_world;

/* Starts the server (its store dir named after name), the store, the four
 * runtimes and the client; asserts on failure. */
void tcw_start(tcw_world *w, const char *name);

/* Stops what tcw_start started, in reverse order, and clears w. Safe on a
 * world never started. */
void tcw_stop(tcw_world *w);

#endif
