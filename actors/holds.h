/* holds.h — the holds aggregate: what one customer holds in unpaid orders
 * (issue 14, "Limits that protect stock and accounts"; ADR 026).
 *
 * One per customer (the aggregate id is the customer's public user id). An
 * order is opened here before it is placed, and closed once it is paid or
 * has ended; while open it counts against the customer's limits: at most
 * max_open orders, and at most max_units units of one product across them.
 * Because one aggregate decides, concurrent placements of one customer
 * cannot pass a limit together. The limits arrive in the command (settings,
 * not state), and so does time: an open order whose deadline (its order's
 * reservation deadline) has passed no longer counts, so a placement that
 * never reached its order, or a close that was lost, frees its slot when
 * the order itself would have expired.
 *
 *   OpenOrder{order_id, lines, until_ms, now_ms, max_open, max_units}
 *       the order open already: a no-op; over a limit: too_many_open_orders
 *       or too_many_units; else OrderOpened
 *   CloseOrder{order_id}  open: OrderClosed; else a no-op
 *
 * Bounds (rejection "invalid"): ids [A-Za-z0-9_-]{1,64}; 1..HOLDS_LINES_MAX
 * lines of distinct products, quantities 1..999; max_open 1..HOLDS_ORDERS_MAX,
 * max_units 1..1,000,000; times 0..HOLDS_TIME_MAX; until_ms > now_ms. At most
 * HOLDS_ENTRIES_MAX (order, product) lines are held at once: past that, a new
 * order is refused as too_many_units.
 *
 * decide and evolve are pure: no I/O, no clock, no globals, no allocation. */
#ifndef ORION_HOLDS_H
#define ORION_HOLDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decision.h"

#define HOLDS_AGGREGATE       "holds"
#define HOLDS_ID_MAX          65                    /* bytes of an id, NUL included */
#define HOLDS_LINES_MAX       50                    /* lines of one order (as an order's) */
#define HOLDS_ORDERS_MAX      16                    /* open orders listed */
#define HOLDS_ENTRIES_MAX     (3 * HOLDS_LINES_MAX) /* (order, product) lines held: 3 full orders */
#define HOLDS_QUANTITY_MAX    999
#define HOLDS_UNITS_LIMIT_MAX 1000000
#define HOLDS_TIME_MAX        (INT64_MAX / 4)
#define HOLDS_SNAPSHOT_SCHEMA 1

#define HOLDS_EV_OPENED "OrderOpened"
#define HOLDS_EV_CLOSED "OrderClosed"

#define HOLDS_CMD_OPEN  "OpenOrder"
#define HOLDS_CMD_CLOSE "CloseOrder"

typedef struct holds_line {
	char product_id[HOLDS_ID_MAX];
	int64_t quantity;
} holds_line;

/* One open order: its id, when it stops counting, and where its lines are
 * in the entries (first, count). */
typedef struct holds_order {
	char order_id[HOLDS_ID_MAX];
	int64_t until_ms;
	size_t first, count;
} holds_order;

typedef struct holds_state {
	holds_order orders[HOLDS_ORDERS_MAX]; /* oldest first */
	size_t order_count;
	holds_line entries[HOLDS_ENTRIES_MAX]; /* the open orders' lines, in their order */
	size_t entry_count;
} holds_state;

typedef enum holds_command_kind { HOLDS_OPEN, HOLDS_CLOSE } holds_command_kind;

typedef struct holds_command {
	holds_command_kind kind;
	char order_id[HOLDS_ID_MAX];
	holds_line lines[HOLDS_LINES_MAX]; /* open */
	size_t line_count;
	int64_t until_ms, now_ms; /* open */
	int64_t max_open, max_units;
} holds_command;

typedef enum holds_event_kind { HOLDS_OPENED, HOLDS_CLOSED } holds_event_kind;

/* opened: order_id, lines, until_ms, at_ms (the command's now_ms); closed: order_id. */
typedef struct holds_event {
	holds_event_kind kind;
	char order_id[HOLDS_ID_MAX];
	holds_line lines[HOLDS_LINES_MAX];
	size_t line_count;
	int64_t until_ms, at_ms;
} holds_event;

typedef enum holds_verdict {
	HOLDS_OK = 0,                   /* accepted (possibly a no-op) */
	HOLDS_REJ_INVALID,              /* a field out of bounds */
	HOLDS_REJ_TOO_MANY_OPEN_ORDERS, /* max_open orders are open */
	HOLDS_REJ_TOO_MANY_UNITS        /* a product would pass max_units (or the entries are full) */
} holds_verdict;

#define HOLDS_MAX_EVENTS 1

typedef struct holds_events {
	holds_event items[HOLDS_MAX_EVENTS];
	size_t count;
} holds_events;

/* Sets an empty state. Owns nothing. */
void holds_state_init(holds_state *s);

/* Pure decision (see above): fills out (cleared first). */
holds_verdict holds_decide(const holds_state *s, const holds_command *c, holds_events *out);
/* Applies one event: an opened order is listed (orders whose deadline has
 * passed by its time are dropped first, to make room); a closed one is
 * removed. An event that does not fit changes nothing. */
void holds_evolve(holds_state *s, const holds_event *e);

/* The open orders counting at now_ms, and the units of product_id they hold. */
size_t holds_open_orders(const holds_state *s, int64_t now_ms);
int64_t holds_units(const holds_state *s, const char *product_id, int64_t now_ms);

/* Stable rejection code ("too_many_open_orders", ...); "" for HOLDS_OK. */
const char *holds_verdict_code(holds_verdict v);

/* Payload codecs: maps keyed order_id, lines (an array of {product_id,
 * quantity}), until_ms, now_ms (commands) / at_ms (events), max_open,
 * max_units; each type carries exactly its fields. ORN_EINVAL for an unknown
 * kind or type, ORN_EDECODE for anything malformed; event decoding also
 * rejects values decide could not have emitted. */
orn_rc holds_command_encode(mp_writer *w, const holds_command *c);
orn_rc holds_command_decode(const char *type, const uint8_t *payload, size_t len, holds_command *out);
orn_rc holds_event_encode(mp_writer *w, const holds_event *e);
orn_rc holds_event_decode(const char *type, const uint8_t *payload, size_t len, holds_event *out);

const char *holds_command_type(holds_command_kind kind);
const char *holds_event_type(holds_event_kind kind);

/* The aggregate's kind table for the actor runtime (its snapshot is its open
 * orders as OrderOpened events). */
extern const act_kind holds_kind;

#endif
