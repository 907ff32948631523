/* order.h — the order aggregate: a pure decider over the checkout state
 * machine (ARCHITECTURE.md, "The checkout saga"; API.md, "Orders").
 *
 *   pending ──MarkReserved──> awaiting_confirmation ──Confirm──> awaiting_payment ──MarkPaid──> confirmed
 *   pending ──RejectForStock──> cancelled (out_of_stock, naming the products)
 *   pending | awaiting_confirmation | awaiting_payment ──Cancel──> cancelled (customer | admin | expired)
 *   awaiting_payment ──MarkPaymentFailed──> payment_failed
 *   confirmed ──Cancel──> cancelled (customer | admin; the event says paid: the saga returns
 *                         the sold units, the payment role refunds; ADR 028 §3)
 *   confirmed ──Ship──> shipped ──Deliver──> delivered
 *   shipped | delivered ──Cancel──> rejected wrong_state (it has left the shop)
 *
 * The order id is the aggregate id, chosen by the caller. Time arrives in
 * every command (now_ms) and every event carries it (at_ms), so the status
 * history [{status, at_ms, reason}] is rebuilt from the events alone: each
 * event appends exactly one entry. The confirmation token never enters the
 * aggregate: PlaceOrder carries the hex of its hash, Confirm the hex of the
 * hash of the token presented; they are compared in constant time. A used
 * token is refused because the order has left awaiting_confirmation.
 *
 * Deadlines are the decider's: PlaceOrder and Confirm carry a ttl_ms, and
 * the decider sets the confirmation deadline (it covers pending and
 * awaiting_confirmation) to the placement's now + ttl_ms, and the payment
 * deadline to the confirmation's now + ttl_ms; the events record them
 * (deadline_ms). Confirm at or past the confirmation deadline is "expired";
 * Cancel with reason expired needs now >= the deadline of the current status.
 * The order id is the decider's rule too (order_id_for).
 *
 * Redelivered saga commands are harmless: MarkReserved in
 * awaiting_confirmation, RejectForStock in cancelled (out_of_stock),
 * MarkPaid in confirmed (or later) with the same charge, MarkPaymentFailed in
 * payment_failed, Ship in shipped or delivered with the same carrier and
 * tracking number, Deliver in delivered are accepted no-ops (a Ship with other
 * values there is wrong_state).
 *
 * Bounds (rejection "invalid"): ids orn_id_valid; 1..50 lines of distinct
 * products, names 1..200 bytes of text, unit prices 0..10^10, quantities
 * 1..999; currency 3 uppercase letters; token and request hashes 64 lowercase hex
 * digits; customer email sealed (personal.h, ADR 027), or as user_email_valid in events
 * written before ADR 027;
 * times 0..ORDER_TIME_MAX; ttl 1..ORDER_TIME_MAX (PlaceOrder: now + ttl too,
 * the confirmation deadline being a time);
 * charge id 1..128 printable ASCII; brand 1..32 of [a-z0-9_-]; last4 4
 * digits; a payment failure reason 1..200 bytes of text; a carrier 1..100
 * bytes of text, a tracking number 1..100 bytes of printable ASCII (0x20..0x7e).
 *
 * decide and evolve are pure: no I/O, no clock, no globals, no allocation. */
#ifndef ORION_ORDER_H
#define ORION_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decision.h"
#include "personal.h"

#define ORDER_AGGREGATE       "order"
#define ORDER_ID_MAX          65  /* bytes of an id, NUL included */
#define ORDER_NAME_MAX        201 /* bytes, NUL included */
#define ORDER_CURRENCY_MAX    4
#define ORDER_TOKEN_HASH_LEN  64 /* hex digits */
#define ORDER_TOKEN_HASH_MAX  (ORDER_TOKEN_HASH_LEN + 1)
#define ORDER_REASON_MAX      201
#define ORDER_CHARGE_ID_MAX   129
#define ORDER_BRAND_MAX       33
#define ORDER_LAST4_MAX       5
#define ORDER_CARRIER_MAX     101          /* bytes, NUL included */
#define ORDER_TRACKING_MAX    101          /* bytes, NUL included */
#define ORDER_EMAIL_MAX       PD_TOKEN_MAX /* bytes of the customer's email as stored (sealed), NUL included */
#define ORDER_LINES_MAX       50
#define ORDER_QUANTITY_MAX    999
#define ORDER_PRICE_MAX       10000000000LL
#define ORDER_TIME_MAX        (INT64_MAX / 4) /* ms; keeps now + ttl from overflowing */
#define ORDER_HISTORY_MAX     6               /* one entry per status reached: placed .. delivered */
#define ORDER_SNAPSHOT_SCHEMA 1

/* Event type names as stored. */
#define ORDER_EV_PLACED         "OrderPlaced"
#define ORDER_EV_RESERVED       "OrderReserved"
#define ORDER_EV_CONFIRMED      "OrderConfirmedByCustomer"
#define ORDER_EV_PAID           "OrderPaid"
#define ORDER_EV_PAYMENT_FAILED "OrderPaymentFailed"
#define ORDER_EV_CANCELLED      "OrderCancelled"
#define ORDER_EV_SHIPPED        "OrderShipped"
#define ORDER_EV_DELIVERED      "OrderDelivered"

/* Command type names on the bus. */
#define ORDER_CMD_PLACE               "PlaceOrder"
#define ORDER_CMD_MARK_RESERVED       "MarkReserved"
#define ORDER_CMD_REJECT_FOR_STOCK    "RejectForStock"
#define ORDER_CMD_CONFIRM             "Confirm"
#define ORDER_CMD_CANCEL              "Cancel"
#define ORDER_CMD_MARK_PAID           "MarkPaid"
#define ORDER_CMD_MARK_PAYMENT_FAILED "MarkPaymentFailed"
#define ORDER_CMD_SHIP                "Ship"
#define ORDER_CMD_DELIVER             "Deliver"

/* Cancellation reasons. */
#define ORDER_REASON_OUT_OF_STOCK "out_of_stock"
#define ORDER_REASON_CUSTOMER     "customer"
#define ORDER_REASON_EXPIRED      "expired"
#define ORDER_REASON_ADMIN        "admin"

typedef enum order_status {
	ORDER_NONE = 0, /* never placed */
	ORDER_PENDING,
	ORDER_AWAITING_CONFIRMATION,
	ORDER_AWAITING_PAYMENT,
	ORDER_CONFIRMED,
	ORDER_CANCELLED,
	ORDER_PAYMENT_FAILED,
	ORDER_SHIPPED,
	ORDER_DELIVERED
} order_status;

typedef struct order_line {
	char product_id[ORDER_ID_MAX];
	char name[ORDER_NAME_MAX];
	int64_t unit_price_cents;
	int64_t quantity;
} order_line;

typedef struct order_history_entry {
	order_status status;
	int64_t at_ms;
	char reason[ORDER_REASON_MAX]; /* cancelled, payment_failed; "" otherwise */
} order_history_entry;

/* The payload of any order command or event; each kind uses its fields:
 *   place / placed        customer_id, customer_email (where the order's emails go),
 *                         lines, currency, token_hash, request_hash (the hex SHA-256 of
 *                         the placing request, for Idempotency-Key checks), cart_version
 *                         (optional: the cart version the order was placed from; one cart
 *                         version places one order);  place: ttl_ms;  placed: deadline_ms
 *                         (confirmation: now + ttl_ms)
 *   reject for stock      product_ids
 *   confirm               token_hash, ttl_ms;  confirmed: deadline_ms (payment)
 *   cancel                reason;  cancelled: reason, product_ids (out_of_stock only),
 *                         paid (optional, written when true: cancelled in confirmed)
 *   mark paid / paid      charge_id, brand, last4
 *   payment failed        reason
 *   ship / shipped        carrier, tracking_number
 *   deliver / delivered   (time only)
 * time_ms is the command's now_ms (key "now_ms") or the event's at_ms. */
typedef struct order_data {
	char customer_id[ORDER_ID_MAX];
	char customer_email[ORDER_EMAIL_MAX];
	char request_hash[ORDER_TOKEN_HASH_MAX];
	order_line lines[ORDER_LINES_MAX];
	size_t line_count;
	char currency[ORDER_CURRENCY_MAX];
	char token_hash[ORDER_TOKEN_HASH_MAX];
	int64_t deadline_ms;
	int64_t ttl_ms;
	int64_t time_ms;
	char reason[ORDER_REASON_MAX];
	char product_ids[ORDER_LINES_MAX][ORDER_ID_MAX];
	size_t product_count;
	char charge_id[ORDER_CHARGE_ID_MAX];
	char brand[ORDER_BRAND_MAX];
	char last4[ORDER_LAST4_MAX];
	int64_t cart_version; /* place / placed, optional: the cart version the order was placed from (0:
	                         unknown) */
	bool paid;            /* cancelled: the order was paid (confirmed) when cancelled */
	char carrier[ORDER_CARRIER_MAX];
	char tracking_number[ORDER_TRACKING_MAX];
} order_data;

typedef struct order_state {
	order_status status;
	char customer_id[ORDER_ID_MAX];
	char customer_email[ORDER_EMAIL_MAX];
	char request_hash[ORDER_TOKEN_HASH_MAX];
	order_line lines[ORDER_LINES_MAX];
	size_t line_count;
	char currency[ORDER_CURRENCY_MAX];
	char token_hash[ORDER_TOKEN_HASH_MAX];
	int64_t confirmation_deadline_ms;
	int64_t payment_deadline_ms;                            /* 0 until confirmed by the customer */
	char cancelled_products[ORDER_LINES_MAX][ORDER_ID_MAX]; /* out_of_stock */
	size_t cancelled_product_count;
	char charge_id[ORDER_CHARGE_ID_MAX]; /* paid */
	char brand[ORDER_BRAND_MAX];
	char last4[ORDER_LAST4_MAX];
	order_history_entry history[ORDER_HISTORY_MAX]; /* oldest first; [0] is pending */
	size_t history_count;
	int64_t cart_version;                     /* the cart version it was placed from, 0 if unknown */
	bool cancelled_after_payment;             /* cancelled from confirmed: units sold, charge taken */
	char carrier[ORDER_CARRIER_MAX];          /* shipped: "" before */
	char tracking_number[ORDER_TRACKING_MAX]; /* shipped: "" before */
	int64_t shipped_at_ms;                    /* 0 until shipped */
	int64_t delivered_at_ms;                  /* 0 until delivered */
} order_state;

typedef enum order_command_kind {
	ORDER_PLACE,
	ORDER_MARK_RESERVED,
	ORDER_REJECT_FOR_STOCK,
	ORDER_CONFIRM,
	ORDER_CANCEL,
	ORDER_MARK_PAID,
	ORDER_MARK_PAYMENT_FAILED,
	ORDER_SHIP,
	ORDER_DELIVER
} order_command_kind;

typedef struct order_command {
	order_command_kind kind;
	order_data data;
} order_command;

typedef enum order_event_kind {
	ORDER_PLACED,
	ORDER_RESERVED,
	ORDER_CONFIRMED_BY_CUSTOMER,
	ORDER_PAID,
	ORDER_PAYMENT_FAILED_EVENT,
	ORDER_CANCELLED_EVENT,
	ORDER_SHIPPED_EVENT,
	ORDER_DELIVERED_EVENT
} order_event_kind;

typedef struct order_event {
	order_event_kind kind;
	order_data data;
} order_event;

typedef enum order_verdict {
	ORDER_OK = 0,
	ORDER_REJ_NOT_FOUND,   /* any command but place on an order never placed */
	ORDER_REJ_EXISTS,      /* place of an existing order */
	ORDER_REJ_INVALID,     /* a field out of bounds; expiry before the deadline */
	ORDER_REJ_WRONG_STATE, /* the command does not apply in the current status */
	ORDER_REJ_BAD_TOKEN,   /* confirm with a token hash that does not match */
	ORDER_REJ_EXPIRED      /* confirm at or after the confirmation deadline */
} order_verdict;

#define ORDER_MAX_EVENTS 1

typedef struct order_events {
	order_event items[ORDER_MAX_EVENTS];
	size_t count;
} order_events;

/* Sets an empty state (never placed). Owns nothing. */
void order_state_init(order_state *s);

/* Pure decision: fills out (cleared first) and returns the verdict. */
order_verdict order_decide(const order_state *s, const order_command *c, order_events *out);
/* Applies one event. An event that is not a transition from the current
 * status changes nothing (returns false); otherwise it appends one history
 * entry and returns true. */
bool order_evolve(order_state *s, const order_event *e);

/* Stable status name ("pending", ...); "none" for ORDER_NONE, NULL if unknown. */
const char *order_status_name(order_status status);
/* The status named name (order_status_name's text, "none" excluded) into
 * *out. Returns false, leaving *out alone, for any other string or NULL. */
bool order_status_parse(const char *name, order_status *out);

/* What a status means: the one definition of each predicate (roles, the
 * gateway, the read models and the checks ask these, never compare names).
 *
 * order_status_is_open: pending, awaiting_confirmation, awaiting_payment — a
 *   deadline runs and the order may still be cancelled without a refund.
 * order_status_is_final: cancelled, payment_failed, delivered — no other
 *   status follows (confirmed may still be cancelled, shipped delivered).
 * order_status_checkout_done: every status but none and the open ones — the
 *   checkout is over, paid or not: the order no longer counts against its
 *   customer's limits (ADR 026) and its checkout stream ends.
 * order_status_is_paid: confirmed, shipped, delivered — the payment succeeded
 *   and the order's stock is committed (sold).
 * order_status_releases_stock: cancelled, payment_failed — the exits that
 *   give back the stock the order held: reservations released, or, for an
 *   order cancelled after payment (order_state.cancelled_after_payment), its
 *   sold units returned.
 * order_status_payment_settled: confirmed, shipped, delivered, payment_failed —
 *   a payment decided the order (a repeat of that payment is answered as it was).
 * order_status_awaits_customer: awaiting_confirmation, awaiting_payment —
 *   reserved in full and held while the customer confirms or pays.
 * Every one is false for ORDER_NONE and for a value outside the enum. */
bool order_status_is_open(order_status status);
bool order_status_is_final(order_status status);
bool order_status_checkout_done(order_status status);
bool order_status_is_paid(order_status status);
bool order_status_releases_stock(order_status status);
bool order_status_payment_settled(order_status status);
bool order_status_awaits_customer(order_status status);
/* The deadline of the current status: confirmation (pending, awaiting
 * confirmation), payment (awaiting payment); 0 otherwise. */
int64_t order_deadline(const order_state *s);
/* Sum of price * quantity of the lines into *out; false on overflow. */
bool order_total(const order_state *s, int64_t *out);

/* Stable rejection code string ("wrong_state", ...); "" for ORDER_OK. */
const char *order_verdict_code(order_verdict v);

/* Payload codecs (msgpack maps; lines an array of maps {product_id, name,
 * unit_price_cents, quantity}, product_ids an array of strings). Encoders
 * append to w; ORN_EINVAL for an unknown kind, an unterminated string or a
 * count past its bound. Decoders take the type name: ORN_EINVAL for an
 * unknown type, ORN_EDECODE for anything malformed (wrong types, missing or
 * repeated keys, over-long strings or arrays, trailing bytes); other keys are
 * skipped. Event decoding also rejects values decide could not have emitted. */
orn_rc order_command_encode(mp_writer *w, const order_command *c);
orn_rc order_command_decode(const char *type, const uint8_t *payload, size_t len, order_command *out);
orn_rc order_event_encode(mp_writer *w, const order_event *e);
orn_rc order_event_decode(const char *type, const uint8_t *payload, size_t len, order_event *out);

/* Type names of a kind; NULL for an unknown kind. */
const char *order_command_type(order_command_kind kind);
const char *order_event_type(order_event_kind kind);

/* The kind table the actor runtime serves. The view is {status, customer_id,
 * customer_email, request_hash, items, total_cents, currency, created_at_ms, updated_at_ms, history:
 * [{status, at_ms, reason|nil}], payment: {brand, last4}|nil,
 * confirmation_deadline_ms, payment_deadline_ms|nil, cancelled_products,
 * shipment: {carrier, tracking_number, shipped_at_ms, delivered_at_ms|nil}|nil}
 * (never the token hash). The snapshot is the event list that rebuilds the
 * state ([[type, payload], ...], at most ORDER_HISTORY_MAX); restore replays
 * it. */
extern const act_kind order_kind;

/* The id of the order a customer places: "o" + 32 hex of BLAKE2b-128 of
 * (customer, key) with an Idempotency-Key (a retry finds the same order;
 * another customer never collides), else of (customer, cart version): one
 * version of a cart places one order, however often it is submitted. */
void order_id_for(const char *customer, const char *key, uint64_t cart_version, char out[ORDER_ID_MAX]);

#endif
