/* stock.h — the stock item aggregate: a pure decider.
 *
 * A stock item counts units on hand and units reserved by orders; available =
 * on_hand - reserved never goes below zero. Reservations are keyed by a
 * reservation id (the saga uses the order id: an order has one line per
 * product), which makes reserve and release idempotent: reserving an id
 * already held with the same quantity, or releasing an id not held, changes
 * nothing. A bounded memory of recently
 * closed (released or committed) ids makes a late, redelivered reserve of a
 * closed id a rejection instead of a leak.
 *
 * Returns (ADR 028 §3: a paid order cancelled before it ships). ReturnStock
 * {reservation_id, quantity} moves quantity sold units of a committed
 * reservation back to on hand (StockReturned). It is applied at most once per
 * reservation id:
 *   - only an id the closed memory holds as committed is returned; applying
 *     StockReturned turns that entry into "returned" in the same evolve, so a
 *     second ReturnStock is an accepted no-op, and a commit or a reserve of
 *     it changes nothing (commit: no-op; reserve: reservation_closed);
 *   - the ring keeps a returned id as its own closing kind, in its place: a
 *     return does not make the id younger, so it cannot push a committed id
 *     out earlier than its own commit would have;
 *   - an id the ring forgot (STOCK_CLOSED_MEMORY later closes on this item),
 *     or never committed, is refused unknown_reservation: nothing is applied,
 *     so a return the ring forgot is never applied twice — it is not applied
 *     at all (the saga logs the refusal; the units stay sold until an
 *     AdjustStock). A held, not yet committed reservation is refused
 *     not_committed (the saga retries: its commit is on the way); a released
 *     one reservation_closed (nothing was sold).
 * The saga sends ReturnStock with the deterministic command id
 * "<order>:return:<product>", so JetStream's duplicate window drops a resent
 * command before the decider sees it. quantity is the order line's; it must
 * be 1..STOCK_QUANTITY_MAX and at most the units sold.
 *
 * Low stock. An item has a low-stock threshold (units of available, 0: never
 * low) and is low while available < threshold. A decision whose event takes
 * the item from not low to low (reserve, adjust down, threshold raised, create
 * below the threshold) also emits LowStockDetected in the same commit; one
 * that takes it back (release, adjust up, threshold lowered) emits
 * LowStockCleared, which re-arms the alert. Exactly one LowStockDetected per
 * crossing: further sales while low emit none. Contract (mail relies on it):
 * subject orion.evt.stock.<product id>, type "LowStockDetected", payload a
 * msgpack map with int values "threshold", "available", "on_hand",
 * "reserved" (the levels after the decision); LowStockCleared likewise.
 *
 * Levels. Every event decide emits also carries the item's levels after it
 * ("on_hand", "reserved", "threshold"), so each is self-describing for live
 * feeds (docs/adr/012); events written before have none (has_levels false).
 * evolve ignores them and trusts the state, as for quantities.
 *
 * decide and evolve are pure: no I/O, no clock, no globals. */
#ifndef ORION_STOCK_H
#define ORION_STOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decision.h"
#include "hashmap.h"

#define STOCK_AGGREGATE          "stock"
#define STOCK_RESERVATION_ID_MAX 160 /* bytes, NUL included */
#define STOCK_REASON_MAX         256 /* bytes, NUL included */
#define STOCK_QUANTITY_MAX       1000000000LL
#define STOCK_CLOSED_MEMORY      1024 /* closed reservation ids remembered */
#define STOCK_SNAPSHOT_SCHEMA                                                                                \
	4 /* 2: closed ids remember released or committed; 3: threshold, low; 4: returned */

/* Event type names as stored. */
#define STOCK_EV_CREATED   "StockItemCreated"
#define STOCK_EV_RESERVED  "StockReserved"
#define STOCK_EV_RELEASED  "StockReleased"
#define STOCK_EV_COMMITTED "StockCommitted"
#define STOCK_EV_ADJUSTED  "StockAdjusted"
#define STOCK_EV_THRESHOLD "LowStockThresholdSet"
#define STOCK_EV_LOW       "LowStockDetected"
#define STOCK_EV_LOW_CLEAR "LowStockCleared"
#define STOCK_EV_RETURNED  "StockReturned"

/* Command type names on the bus. */
#define STOCK_CMD_CREATE    "CreateStockItem"
#define STOCK_CMD_RESERVE   "ReserveStock"
#define STOCK_CMD_RELEASE   "ReleaseStock"
#define STOCK_CMD_COMMIT    "CommitStock"
#define STOCK_CMD_ADJUST    "AdjustStock"
#define STOCK_CMD_THRESHOLD "SetLowStockThreshold"
#define STOCK_CMD_RETURN    "ReturnStock"

typedef struct stock_state {
	bool exists;
	int64_t on_hand;
	int64_t reserved; /* sum of held reservations */
	int64_t sold;     /* units committed over the item's life */
	hmap *held;       /* reservation id -> (quantity as intptr_t) */
	/* ring of recently closed reservation ids */
	char (*closed)[STOCK_RESERVATION_ID_MAX];
	size_t closed_count;
	size_t closed_next;
	hmap *closed_index; /* id -> how it closed (released/committed/returned), mirrors the ring */
	int64_t threshold;  /* low-stock threshold (units of available); 0: never low */
	bool low;           /* a LowStockDetected not yet followed by LowStockCleared */
} stock_state;

typedef enum stock_command_kind {
	STOCK_CREATE,
	STOCK_RESERVE,
	STOCK_RELEASE,
	STOCK_COMMIT,
	STOCK_ADJUST,
	STOCK_SET_THRESHOLD,
	STOCK_RETURN
} stock_command_kind;

typedef struct stock_command {
	stock_command_kind kind;
	char reservation_id[STOCK_RESERVATION_ID_MAX]; /* reserve, release, commit, return */
	int64_t quantity;                              /* create: initial on hand; reserve, return: units */
	int64_t delta;                                 /* adjust */
	char reason[STOCK_REASON_MAX];                 /* adjust */
	int64_t threshold;                             /* create (optional, 0 if absent), set threshold */
} stock_command;

typedef enum stock_event_kind {
	STOCK_CREATED,
	STOCK_RESERVED,
	STOCK_RELEASED,
	STOCK_COMMITTED,
	STOCK_ADJUSTED,
	STOCK_THRESHOLD_SET,
	STOCK_LOW_DETECTED,
	STOCK_LOW_CLEARED,
	STOCK_RETURNED
} stock_event_kind;

typedef struct stock_event {
	stock_event_kind kind;
	char reservation_id[STOCK_RESERVATION_ID_MAX];
	int64_t quantity; /* created: initial on hand; reserved/released/committed/returned: units */
	int64_t delta;    /* adjusted */
	int64_t on_hand;  /* on hand after (adjusted, low stock, and any event with levels) */
	char reason[STOCK_REASON_MAX];
	/* levels after the event: on_hand above, reserved, threshold; written by
	 * decide, absent from events stored before (has_levels false) */
	bool has_levels;
	int64_t reserved;
	int64_t threshold; /* also: created, threshold set, low stock detected/cleared */
	int64_t available; /* low stock detected/cleared */
} stock_event;

typedef enum stock_verdict {
	STOCK_OK = 0,                  /* accepted (possibly with no events: idempotent no-op) */
	STOCK_REJ_NOT_FOUND,           /* the item does not exist */
	STOCK_REJ_EXISTS,              /* create on an existing item */
	STOCK_REJ_INVALID,             /* quantity/delta out of range, empty ids */
	STOCK_REJ_OUT_OF_STOCK,        /* reserve more than available */
	STOCK_REJ_MISMATCH,            /* reserve of a held id with another quantity */
	STOCK_REJ_CLOSED,              /* reserve of an id recently released or committed */
	STOCK_REJ_UNKNOWN_RESERVATION, /* commit of an id not held */
	STOCK_REJ_BELOW_RESERVED,      /* adjust would take on hand below reserved (or below 0) */
	STOCK_REJ_NOT_COMMITTED        /* return of an id still held (its commit has not come yet) */
} stock_verdict;

#define STOCK_MAX_EVENTS 2 /* an event and the low-stock crossing it causes */

typedef struct stock_events {
	stock_event items[STOCK_MAX_EVENTS];
	size_t count;
} stock_events;

/* Sets an empty state (item does not exist). ORN_ENOMEM on allocation failure. */
orn_rc stock_state_init(stock_state *s);
/* Frees what s owns. */
void stock_state_dispose(stock_state *s);

/* Pure decision: fills out (cleared first) and returns the verdict. */
stock_verdict stock_decide(const stock_state *s, const stock_command *c, stock_events *out);
/* Applies one event; never fails on a well-formed event (allocation failure
 * returns ORN_ENOMEM and leaves s unchanged). */
orn_rc stock_evolve(stock_state *s, const stock_event *e);

/* True if the state is below its threshold (available < threshold). */
bool stock_is_low(const stock_state *s);

/* True if levels that are low (available < threshold) are low only
 * because of reservations: on hand alone is not below the threshold, so
 * the units come back when the orders holding them are cancelled or expire
 * (issue 14: a customer's unpaid orders can look like a stock shortage). */
bool stock_low_only_reserved(int64_t on_hand, int64_t available, int64_t threshold);

/* available = on_hand - reserved. */
int64_t stock_available(const stock_state *s);
/* Quantity held for a reservation id, 0 if none. */
int64_t stock_held(const stock_state *s, const char *reservation_id);

/* Stable rejection code string ("out_of_stock", ...); "" for STOCK_OK. */
const char *stock_verdict_code(stock_verdict v);

/* Payload codecs (msgpack maps). Encoders append to w. */
orn_rc stock_command_encode(mp_writer *w, const stock_command *c);
/* type is the command type name; payload one msgpack value. */
orn_rc stock_command_decode(const char *type, const uint8_t *payload, size_t len, stock_command *out);
/* Event type name of e->kind. */
const char *stock_event_type(stock_event_kind kind);
orn_rc stock_event_encode(mp_writer *w, const stock_event *e);
orn_rc stock_event_decode(const char *type, const uint8_t *payload, size_t len, stock_event *out);

/* Command type name of a kind. */
const char *stock_command_type(stock_command_kind kind);

/* The kind table the actor runtime serves. */
extern const act_kind stock_kind;

#endif
