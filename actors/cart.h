/* cart.h — the cart aggregate: a pure decider over a customer's cart.
 *
 * One cart per customer (the aggregate id is the customer's public user id).
 * A cart holds at most CART_LINES_MAX lines, one per product, each with the
 * name and unit price the caller snapshotted from the catalog when adding
 * (adding to an existing line refreshes both) and a quantity 1..999. All
 * lines share one currency: the first line sets it, an empty cart has none
 * (a cart emptied by a removal, a clear or a checkout loses it).
 *
 * CheckedOut{order_id, lines} arrives once the order placed from the cart
 * holds its stock, possibly long after the customer went on shopping: it
 * takes out only what the order took. Each ordered quantity is subtracted
 * from the cart's line of that product (the line goes when nothing is left;
 * a product no longer in the cart is skipped), so items added or grown since
 * the order was placed stay. CartCheckedOut records exactly what was removed
 * ({product_id, quantity removed} per line, possibly none), so evolve needs
 * no knowledge of the order. A CheckedOut names the cart version its order
 * was placed from (placed_from): one at or before the newest version checked
 * out is done already, however many orders came since, so a CheckedOut sent
 * again (a redelivery, or the saga's sweeper redoing a step whose event may
 * have been lost, after the customer placed other orders) never takes out
 * what the customer added later. Orders from before placed_from existed are
 * recognised by id among the last CART_ORDERS_REMEMBERED checked out.
 *
 * Bounds (checked by decide, rejection "invalid"):
 *   product_id, order_id  orn_id_valid ([A-Za-z0-9_-]{1,64})
 *   name                  1..200 bytes of UTF-8, no control characters
 *   unit_price_cents      0..CART_PRICE_MAX
 *   currency              3 uppercase ASCII letters
 *   quantity              add: 1..999 and the line stays <= 999; set: 0..999
 *   checkout lines        1..50 lines of distinct products, quantities 1..999
 * With these bounds no total can overflow int64 (50 * 999 * 10^10 < 2^63).
 *
 * decide and evolve are pure: no I/O, no clock, no globals, no allocation. */
#ifndef ORION_CART_H
#define ORION_CART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decision.h"

#define CART_AGGREGATE    "cart"
#define CART_ID_MAX       65  /* bytes of an id, NUL included */
#define CART_NAME_MAX     201 /* bytes, NUL included */
#define CART_CURRENCY_MAX 4   /* bytes, NUL included */
#define CART_LINES_MAX    50
#define CART_QUANTITY_MAX 999
#define CART_PRICE_MAX    10000000000LL
#define CART_SNAPSHOT_SCHEMA                                                                                 \
	4 /* 2: CartCheckedOut carries its lines; 3: the last 16 orders; 4: placed_from */
#define CART_ORDERS_REMEMBERED 16 /* checked-out order ids a cart remembers (the last included) */

/* Event type names as stored. */
#define CART_EV_ITEM_ADDED       "ItemAdded"
#define CART_EV_QUANTITY_CHANGED "QuantityChanged"
#define CART_EV_ITEM_REMOVED     "ItemRemoved"
#define CART_EV_CLEARED          "CartCleared"
#define CART_EV_CHECKED_OUT      "CartCheckedOut"

/* Command type names on the bus. */
#define CART_CMD_ADD_ITEM     "AddItem"
#define CART_CMD_SET_QUANTITY "SetQuantity"
#define CART_CMD_REMOVE_ITEM  "RemoveItem"
#define CART_CMD_CLEAR        "Clear"
#define CART_CMD_CHECKED_OUT  "CheckedOut"

typedef struct cart_line {
	char product_id[CART_ID_MAX];
	char name[CART_NAME_MAX];
	int64_t unit_price_cents;
	int64_t quantity;
} cart_line;

/* One line of a checkout: of the order (command) or taken out of the cart
 * (event). */
typedef struct cart_checkout_line {
	char product_id[CART_ID_MAX];
	int64_t quantity; /* command: ordered; event: removed from the cart */
} cart_checkout_line;

typedef struct cart_state {
	cart_line lines[CART_LINES_MAX]; /* in the order they were added */
	size_t line_count;
	char currency[CART_CURRENCY_MAX]; /* "" while the cart is empty */
	char last_order_id[CART_ID_MAX];  /* "" until the first checkout */
	/* the orders checked out before the last one, oldest first */
	char earlier_orders[CART_ORDERS_REMEMBERED - 1][CART_ID_MAX];
	size_t earlier_count;
	int64_t checked_out_through; /* the newest cart version an order checked out was placed from */
} cart_state;

typedef enum cart_command_kind {
	CART_ADD_ITEM,
	CART_SET_QUANTITY,
	CART_REMOVE_ITEM,
	CART_CLEAR,
	CART_CHECKED_OUT
} cart_command_kind;

/* A command's payload; each kind reads only its own fields:
 *   add          line (all fields; quantity = units to add), currency
 *   set          line.product_id, line.quantity (0 removes the line)
 *   remove       line.product_id
 *   clear        nothing
 *   checked out  order_id, checkout (the order's lines, one per product) */
typedef struct cart_command {
	cart_command_kind kind;
	cart_line line;
	char currency[CART_CURRENCY_MAX];
	char order_id[CART_ID_MAX];
	cart_checkout_line checkout[CART_LINES_MAX];
	size_t checkout_count;
	int64_t placed_from; /* checked out, optional: the cart version the order was placed from */
} cart_command;

typedef enum cart_event_kind {
	CART_ITEM_ADDED,
	CART_QUANTITY_CHANGED,
	CART_ITEM_REMOVED,
	CART_CLEARED,
	CART_CHECKED_OUT_EVENT
} cart_event_kind;

/* An event's payload:
 *   item added        line (quantity = the line's quantity after), added, currency
 *   quantity changed  line.product_id, line.quantity (1..999, after)
 *   item removed      line.product_id
 *   cleared           nothing
 *   checked out       order_id, checkout (what left the cart: 0..50 lines of
 *                     distinct products, quantities 1..999, each at most the
 *                     line's quantity; a line left with nothing is removed) */
typedef struct cart_event {
	cart_event_kind kind;
	cart_line line;
	int64_t added; /* item added: units added by this event */
	char currency[CART_CURRENCY_MAX];
	char order_id[CART_ID_MAX];
	cart_checkout_line checkout[CART_LINES_MAX];
	size_t checkout_count;
	int64_t placed_from; /* checked out: as the command's (0: unknown) */
} cart_event;

typedef enum cart_verdict {
	CART_OK = 0,               /* accepted (possibly with no events: a no-op) */
	CART_REJ_NOT_FOUND,        /* set quantity of a product not in the cart */
	CART_REJ_INVALID,          /* a field out of bounds */
	CART_REJ_TOO_MANY_LINES,   /* a 51st line */
	CART_REJ_CURRENCY_MISMATCH /* a line in another currency than the cart's */
} cart_verdict;

#define CART_MAX_EVENTS 1

typedef struct cart_events {
	cart_event items[CART_MAX_EVENTS];
	size_t count;
} cart_events;

/* Sets an empty cart. Owns nothing. */
void cart_state_init(cart_state *s);

/* Pure decision: fills out (cleared first) and returns the verdict. No-ops
 * (remove of an absent line, set to the same quantity, clear of an empty
 * cart, a repeated checkout of the last order) are CART_OK with no event. */
cart_verdict cart_decide(const cart_state *s, const cart_command *c, cart_events *out);
/* Applies one event. Events that do not fit the state (a change of a line
 * that is absent, a 51st line) change nothing; a checkout skips the lines
 * that are absent and removes those it leaves with nothing. */
void cart_evolve(cart_state *s, const cart_event *e);

/* The line of product_id, NULL if the cart has none. */
const cart_line *cart_find_line(const cart_state *s, const char *product_id);

/* price * quantity into *out; false (and *out untouched) if either is
 * negative or the product overflows int64. */
bool cart_line_total(int64_t unit_price_cents, int64_t quantity, int64_t *out);
/* Sum of the line totals into *out; false if any step overflows. */
bool cart_total(const cart_state *s, int64_t *out);

/* Stable rejection code string ("too_many_lines", ...); "" for CART_OK. */
const char *cart_verdict_code(cart_verdict v);

/* Payload codecs (msgpack maps keyed product_id, name, unit_price_cents,
 * quantity, added, currency, order_id, lines; each type carries exactly its
 * fields). lines (checkouts only) is an array of at most CART_LINES_MAX maps
 * {product_id, quantity}.
 * Encoders append to w; ORN_EINVAL for an unknown kind or an unterminated
 * string. Decoders take the type name: ORN_EINVAL for an unknown type,
 * ORN_EDECODE for anything malformed (wrong types, missing or repeated keys,
 * over-long strings, trailing bytes); other keys are skipped. Event decoding
 * also rejects values decide could not have emitted. */
orn_rc cart_command_encode(mp_writer *w, const cart_command *c);
orn_rc cart_command_decode(const char *type, const uint8_t *payload, size_t len, cart_command *out);
orn_rc cart_event_encode(mp_writer *w, const cart_event *e);
orn_rc cart_event_decode(const char *type, const uint8_t *payload, size_t len, cart_event *out);

/* Type names of a kind; NULL for an unknown kind. */
const char *cart_command_type(cart_command_kind kind);
const char *cart_event_type(cart_event_kind kind);

/* The kind table the actor runtime serves. The view is
 * {items:[{product_id, name, unit_price_cents, quantity, line_total_cents}],
 * total_cents, currency (nil when empty), last_order_id (nil before any)}.
 * The snapshot is the shortest event list that rebuilds the state
 * ([[type, payload], ...]); restore replays it, so it yields only states
 * evolve can reach. */
extern const act_kind cart_kind;

#endif
