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
#define STOCK_SNAPSHOT_SCHEMA    2    /* 2: closed ids remember released or committed */

/* Event type names as stored. */
#define STOCK_EV_CREATED   "StockItemCreated"
#define STOCK_EV_RESERVED  "StockReserved"
#define STOCK_EV_RELEASED  "StockReleased"
#define STOCK_EV_COMMITTED "StockCommitted"
#define STOCK_EV_ADJUSTED  "StockAdjusted"

/* Command type names on the bus. */
#define STOCK_CMD_CREATE  "CreateStockItem"
#define STOCK_CMD_RESERVE "ReserveStock"
#define STOCK_CMD_RELEASE "ReleaseStock"
#define STOCK_CMD_COMMIT  "CommitStock"
#define STOCK_CMD_ADJUST  "AdjustStock"

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
	hmap *closed_index; /* id -> how it closed (released/committed), mirrors the ring */
} stock_state;

typedef enum stock_command_kind {
	STOCK_CREATE,
	STOCK_RESERVE,
	STOCK_RELEASE,
	STOCK_COMMIT,
	STOCK_ADJUST
} stock_command_kind;

typedef struct stock_command {
	stock_command_kind kind;
	char reservation_id[STOCK_RESERVATION_ID_MAX]; /* reserve, release, commit */
	int64_t quantity;                              /* create: initial on hand; reserve: units */
	int64_t delta;                                 /* adjust */
	char reason[STOCK_REASON_MAX];                 /* adjust */
} stock_command;

typedef enum stock_event_kind {
	STOCK_CREATED,
	STOCK_RESERVED,
	STOCK_RELEASED,
	STOCK_COMMITTED,
	STOCK_ADJUSTED
} stock_event_kind;

typedef struct stock_event {
	stock_event_kind kind;
	char reservation_id[STOCK_RESERVATION_ID_MAX];
	int64_t quantity; /* created: initial on hand; reserved/released/committed: units */
	int64_t delta;    /* adjusted */
	int64_t on_hand;  /* adjusted: on hand after */
	char reason[STOCK_REASON_MAX];
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
	STOCK_REJ_BELOW_RESERVED       /* adjust would take on hand below reserved (or below 0) */
} stock_verdict;

#define STOCK_MAX_EVENTS 1

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
