/* orders.h — the orders read model: each order's state and a customer's orders.
 *
 * Fed by the order events (OrderPlaced, OrderReserved, OrderConfirmedByCustomer,
 * OrderPaid, OrderPaymentFailed, OrderCancelled, OrderShipped, OrderDelivered)
 * on orion.evt.order.<id>, it keeps
 * per order exactly the aggregate's state (folded with order_evolve, the
 * aggregate's own evolve) plus the stream sequence of the event behind each
 * history entry, and answers GET /orders/{id}, its event history, and
 * GET /orders?limit=&cursor= : the customer's orders newest first (created_at
 * descending, then id descending), a page of 1..100 at a time with an opaque
 * cursor.
 *
 * It also keeps every order that has a deadline now (pending and awaiting
 * confirmation: the confirmation deadline; awaiting payment: the payment
 * deadline) in deadline order, for the timers role (proj_orders_due, ADR 010).
 *
 * The model serves reads only: the order actor decides, never from here. */
#ifndef ORION_PROJ_ORDERS_H
#define ORION_PROJ_ORDERS_H

#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "order.h"
#include "orn.h"
#include "proj_cursor.h"
#include "proj_env.h"
#include "projector.h"

#define PROJ_ORDERS_NAME     "orders"
#define PROJ_ORDERS_FILTER   "orion.evt.>" /* the orders', and CustomerErased (ADR 027) */
#define PROJ_ORDERS_PAGE_MAX 100

/* An order as the model keeps it. state.token_hash (the hash of the
 * confirmation token) must never be serialized to a client: order_kind's
 * view leaves it out too. */
typedef struct proj_order {
	char id[ES_ID_MAX + 1];
	order_state state;                       /* evolved with order_evolve from the order's events */
	uint64_t history_seq[ORDER_HISTORY_MAX]; /* stream sequence of the event of each history entry */
	uint64_t version;                        /* stream sequence of the last event applied */
} proj_order;

/* One row of a customer's order list. */
typedef struct proj_order_summary {
	char id[ES_ID_MAX + 1];
	order_status status;
	int64_t total_cents;
	char currency[ORDER_CURRENCY_MAX];
	int64_t created_at_ms, updated_at_ms; /* at_ms of the first and the last history entry */
	size_t item_count;                    /* lines */
} proj_order_summary;

typedef struct proj_orders_page {
	proj_order_summary items[PROJ_ORDERS_PAGE_MAX];
	size_t count;
	char next_cursor[PROJ_CURSOR_MAX]; /* "" at the end */
} proj_orders_page;

/* An order whose deadline has come (proj_orders_due). */
typedef struct proj_order_due {
	char id[ES_ID_MAX + 1];
	int64_t deadline_ms; /* the deadline of its current status */
} proj_order_due;

typedef struct proj_orders proj_orders;

/* Creates the model over env and opens (creating) its sub-databases.
 * *out is owned by the caller: proj_orders_destroy after the runner that
 * feeds it has stopped. */
orn_rc proj_orders_create(proj_env *env, proj_orders **out);
void proj_orders_destroy(proj_orders *m);

/* The projection definition to hand to proj_runner_start (owned by m). */
const proj_def *proj_orders_def(proj_orders *m);

/* One order by id (out param, ~15 KB: callers may heap-allocate it).
 * ORN_ENOTFOUND if no such order, ORN_EINVAL for an invalid id. */
orn_rc proj_orders_get(proj_orders *m, const char *id, proj_order *out);

/* The version of order id (the stream sequence of its last history entry,
 * as proj_orders_get's out->version) into *version, read from the record's
 * head without replaying the order: cheap enough to poll. ORN_ENOTFOUND if
 * no such order, ORN_EINVAL for an invalid id, ORN_EDECODE for a bad record. */
orn_rc proj_orders_version(proj_orders *m, const char *id, uint64_t *version);

/* The customer's orders, newest first (created_at desc, then id desc), `limit` 1..100,
 * cursor NULL/"" for the first page; ORN_EINVAL for a bad cursor or limit
 * (or an invalid customer id). out (caller-owned) is filled; count 0 on error. */
orn_rc proj_orders_list(proj_orders *m, const char *customer_id, unsigned limit, const char *cursor,
                        proj_orders_page *out);

/* How many orders customer_id has placed, into *count (one read of the
 * customer's index rows). ORN_EINVAL for an invalid customer id. */
orn_rc proj_orders_count(proj_orders *m, const char *customer_id, size_t *count);

/* Orders whose deadline is at or before now_ms, earliest first (equal
 * deadlines by id), at most cap of them into out[*count] (caller-owned).
 * The model may trail the stream: an order listed may have left its state
 * already (the order actor refuses the expiry), and one placed a moment ago
 * may be missing. ORN_OK with *count 0 if none is due; on error *count is 0. */
orn_rc proj_orders_due(proj_orders *m, int64_t now_ms, proj_order_due *out, size_t cap, size_t *count);

typedef struct proj_orders_stats {
	/* order events whose payload did not decode, logged and skipped (counted
	 * again if their batch is retried) */
	uint64_t undecodable;
} proj_orders_stats;

void proj_orders_stats_get(proj_orders *m, proj_orders_stats *out);

#endif
