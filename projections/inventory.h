/* inventory.h — the inventory read model: stock levels per stock item.
 *
 * Fed by the stock events (StockItemCreated, StockReserved, StockReleased,
 * StockCommitted, StockReturned, StockAdjusted, LowStockThresholdSet, LowStockDetected,
 * LowStockCleared) on orion.evt.stock.<id>, it keeps per item on hand,
 * reserved, available (= on hand - reserved), the low-stock threshold and
 * whether the item is low (folded exactly as the stock actor does), and answers
 * GET /admin/inventory?below=&limit=&cursor= : items ordered by id, optionally
 * only those with available < below, a page of 1..100 at a time with an
 * opaque cursor (proj_cursor.h).
 *
 * Stock decisions are never taken from this model; only the stock actor decides.
 *
 * Join hook: the model knows stock item ids only (= product ids). The
 * product's sku and name come from the catalog model (issue 3, next item):
 * the gateway fills them per row from the catalog; once both live in this
 * environment, proj_inventory_list will take the catalog and fill the
 * `sku`/`name` of each row in the same read transaction (one snapshot). */
#ifndef ORION_PROJ_INVENTORY_H
#define ORION_PROJ_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "orn.h"
#include "proj_cursor.h"
#include "proj_env.h"
#include "projector.h"

#define PROJ_INVENTORY_NAME     "inventory"
#define PROJ_INVENTORY_FILTER   "orion.evt.stock.>"
#define PROJ_INVENTORY_PAGE_MAX 100

typedef struct proj_stock_level {
	char id[ES_ID_MAX + 1];
	int64_t on_hand;
	int64_t reserved;
	int64_t available; /* on_hand - reserved */
	uint64_t version;  /* stream sequence of the last event applied to the item */
	int64_t threshold; /* low-stock threshold, 0: never low */
	bool low;          /* LowStockDetected and not yet LowStockCleared */
} proj_stock_level;

typedef struct proj_inventory proj_inventory;

/* Creates the model over env and opens (creating) its sub-databases.
 * *out is owned by the caller: proj_inventory_destroy after the runner that
 * feeds it has stopped. */
orn_rc proj_inventory_create(proj_env *env, proj_inventory **out);
void proj_inventory_destroy(proj_inventory *inv);

/* The projection definition to hand to proj_runner_start (owned by inv). */
const proj_def *proj_inventory_def(proj_inventory *inv);

/* Stock levels of one item (out param). ORN_ENOTFOUND if the model has no
 * such item, ORN_EINVAL for an invalid id. */
orn_rc proj_inventory_get(proj_inventory *inv, const char *id, proj_stock_level *out);

typedef struct proj_inventory_query {
	bool has_below; /* only items with available < below */
	int64_t below;
	unsigned limit;     /* 1..PROJ_INVENTORY_PAGE_MAX */
	const char *cursor; /* NULL or "" for the first page */
} proj_inventory_query;

typedef struct proj_inventory_page {
	proj_stock_level items[PROJ_INVENTORY_PAGE_MAX];
	size_t count;
	char next_cursor[PROJ_CURSOR_MAX]; /* "" when there is no next page */
} proj_inventory_page;

/* One page of items ordered by id (out param, caller-owned). ORN_EINVAL for a
 * limit out of range or a cursor this module did not write. */
orn_rc proj_inventory_list(proj_inventory *inv, const proj_inventory_query *q, proj_inventory_page *out);

typedef struct proj_inventory_stats {
	/* stock events whose payload did not decode, logged and skipped (counted
	 * again if their batch is retried after a failure or map growth) */
	uint64_t undecodable;
} proj_inventory_stats;

void proj_inventory_stats_get(proj_inventory *inv, proj_inventory_stats *out);

#endif
