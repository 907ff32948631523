/* carts.h — the carts read model: each customer's cart.
 *
 * Fed by the cart events (ItemAdded, QuantityChanged, ItemRemoved, CartCleared,
 * CartCheckedOut) on orion.evt.cart.<customer id>, it keeps per customer
 * exactly the aggregate's state (folded with cart_evolve, the aggregate's own
 * evolve; CartCheckedOut takes out what the order took) and answers GET /cart.
 *
 * The model serves reads only: the cart actor decides, never from here. */
#ifndef ORION_PROJ_CARTS_H
#define ORION_PROJ_CARTS_H

#include <stdint.h>

#include "cart.h"
#include "evstore.h"
#include "orn.h"
#include "proj_env.h"
#include "projector.h"

#define PROJ_CARTS_NAME   "carts"
#define PROJ_CARTS_FILTER "orion.evt.cart.>"

/* A cart as the model keeps it. */
typedef struct proj_cart {
	char customer_id[ES_ID_MAX + 1];
	cart_state state;        /* evolved with cart_evolve */
	uint64_t version;        /* stream sequence of the last cart event applied; 0 = no cart yet */
	uint64_t checked_out_at; /* stream sequence of the last CartCheckedOut applied; 0 = none */
} proj_cart;

typedef struct proj_carts proj_carts;

/* Creates the model over env and opens (creating) its sub-databases.
 * *out is owned by the caller: proj_carts_destroy after the runner that
 * feeds it has stopped. */
orn_rc proj_carts_create(proj_env *env, proj_carts **out);
void proj_carts_destroy(proj_carts *m);

/* The projection definition to hand to proj_runner_start (owned by m). */
const proj_def *proj_carts_def(proj_carts *m);

/* The customer's cart (out param). ORN_ENOTFOUND if the customer never had a
 * cart event (callers show an empty cart), ORN_EINVAL for an invalid id. */
orn_rc proj_carts_get(proj_carts *m, const char *customer_id, proj_cart *out);

typedef struct proj_carts_stats {
	/* cart events whose payload did not decode, logged and skipped (counted
	 * again if their batch is retried) */
	uint64_t undecodable;
} proj_carts_stats;

void proj_carts_stats_get(proj_carts *m, proj_carts_stats *out);

#endif
