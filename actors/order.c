/* order.c — the order aggregate: a pure decider (decide, evolve), the msgpack
 * codecs of its command and event payloads, and the kind table the actor
 * runtime serves.
 *
 * Every payload is a subset of the keys of order_data, described once in a
 * table (key, bit, kind of value, offset, size), so one encoder and one
 * strict decoder serve commands and events. The snapshot is the event list
 * that rebuilds the state — one event per history entry — and restore
 * replays it through the event decoder and evolve, so a snapshot can only
 * produce a state the stream could. */
#include "order.h"
#include "kind.h"
#include "text.h"
#include "user.h"

#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version of every command and event payload written and accepted here. */
#define PAYLOAD_SCHEMA 1

enum payload_field {
	FIELD_CUSTOMER_ID = 1u << 0,
	FIELD_LINES = 1u << 1,
	FIELD_CURRENCY = 1u << 2,
	FIELD_TOKEN_HASH = 1u << 3,
	FIELD_DEADLINE = 1u << 4,
	FIELD_TTL = 1u << 5,
	FIELD_NOW = 1u << 6,
	FIELD_AT = 1u << 7,
	FIELD_REASON = 1u << 8,
	FIELD_PRODUCT_IDS = 1u << 9,
	FIELD_CHARGE_ID = 1u << 10,
	FIELD_BRAND = 1u << 11,
	FIELD_LAST4 = 1u << 12,
	FIELD_CUSTOMER_EMAIL = 1u << 13,
	FIELD_REQUEST_HASH = 1u << 14,
	FIELD_CART_VERSION = 1u << 15,
	FIELD_PAID = 1u << 16,
	FIELD_CARRIER = 1u << 17,
	FIELD_TRACKING = 1u << 18,
};

static const kind_field field_table[] = {
        {"customer_id", FIELD_CUSTOMER_ID, KIND_TEXT, offsetof(order_data, customer_id), ORDER_ID_MAX, NULL},
        {"lines", FIELD_LINES, KIND_OWN, offsetof(order_data, lines), 0, NULL},
        {"currency", FIELD_CURRENCY, KIND_TEXT, offsetof(order_data, currency), ORDER_CURRENCY_MAX, NULL},
        {"token_hash", FIELD_TOKEN_HASH, KIND_TEXT, offsetof(order_data, token_hash), ORDER_TOKEN_HASH_MAX,
         NULL},
        {"deadline_ms", FIELD_DEADLINE, KIND_INT, offsetof(order_data, deadline_ms), 0, NULL},
        {"ttl_ms", FIELD_TTL, KIND_INT, offsetof(order_data, ttl_ms), 0, NULL},
        {"now_ms", FIELD_NOW, KIND_INT, offsetof(order_data, time_ms), 0, NULL},
        {"at_ms", FIELD_AT, KIND_INT, offsetof(order_data, time_ms), 0, NULL},
        {"reason", FIELD_REASON, KIND_TEXT, offsetof(order_data, reason), ORDER_REASON_MAX, NULL},
        {"product_ids", FIELD_PRODUCT_IDS, KIND_OWN, offsetof(order_data, product_ids), 0, NULL},
        {"charge_id", FIELD_CHARGE_ID, KIND_TEXT, offsetof(order_data, charge_id), ORDER_CHARGE_ID_MAX, NULL},
        {"brand", FIELD_BRAND, KIND_TEXT, offsetof(order_data, brand), ORDER_BRAND_MAX, NULL},
        {"last4", FIELD_LAST4, KIND_TEXT, offsetof(order_data, last4), ORDER_LAST4_MAX, NULL},
        {"customer_email", FIELD_CUSTOMER_EMAIL, KIND_TEXT, offsetof(order_data, customer_email),
         ORDER_EMAIL_MAX, NULL},
        {"request_hash", FIELD_REQUEST_HASH, KIND_TEXT, offsetof(order_data, request_hash),
         ORDER_TOKEN_HASH_MAX, NULL},
        {"cart_version", FIELD_CART_VERSION, KIND_INT, offsetof(order_data, cart_version), 0, NULL},
        {"paid", FIELD_PAID, KIND_BOOL, offsetof(order_data, paid), 0, NULL},
        {"carrier", FIELD_CARRIER, KIND_TEXT, offsetof(order_data, carrier), ORDER_CARRIER_MAX, NULL},
        {"tracking_number", FIELD_TRACKING, KIND_TEXT, offsetof(order_data, tracking_number),
         ORDER_TRACKING_MAX, NULL},
};

/* A payload's required fields, and its optional ones (written when not 0). */
typedef struct payload_shape {
	const char *type;
	unsigned fields;
	unsigned optional;
} payload_shape;

/* PlaceOrder carries the ttl, OrderPlaced the deadline the decider set from it. */
#define PLACE_FIELDS                                                                                         \
	(FIELD_CUSTOMER_ID | FIELD_CUSTOMER_EMAIL | FIELD_LINES | FIELD_CURRENCY | FIELD_TOKEN_HASH |        \
	 FIELD_REQUEST_HASH)
#define PAID_FIELDS     (FIELD_CHARGE_ID | FIELD_BRAND | FIELD_LAST4)
#define SHIPMENT_FIELDS (FIELD_CARRIER | FIELD_TRACKING)

static const payload_shape command_shapes[] = {
        [ORDER_PLACE] = {ORDER_CMD_PLACE, PLACE_FIELDS | FIELD_TTL | FIELD_NOW, FIELD_CART_VERSION},
        [ORDER_MARK_RESERVED] = {ORDER_CMD_MARK_RESERVED, FIELD_NOW},
        [ORDER_REJECT_FOR_STOCK] = {ORDER_CMD_REJECT_FOR_STOCK, FIELD_PRODUCT_IDS | FIELD_NOW},
        [ORDER_CONFIRM] = {ORDER_CMD_CONFIRM, FIELD_TOKEN_HASH | FIELD_TTL | FIELD_NOW},
        [ORDER_CANCEL] = {ORDER_CMD_CANCEL, FIELD_REASON | FIELD_NOW},
        [ORDER_MARK_PAID] = {ORDER_CMD_MARK_PAID, PAID_FIELDS | FIELD_NOW},
        [ORDER_MARK_PAYMENT_FAILED] = {ORDER_CMD_MARK_PAYMENT_FAILED, FIELD_REASON | FIELD_NOW},
        [ORDER_SHIP] = {ORDER_CMD_SHIP, SHIPMENT_FIELDS | FIELD_NOW},
        [ORDER_DELIVER] = {ORDER_CMD_DELIVER, FIELD_NOW},
};

static const payload_shape event_shapes[] = {
        [ORDER_PLACED] = {ORDER_EV_PLACED, PLACE_FIELDS | FIELD_DEADLINE | FIELD_AT, FIELD_CART_VERSION},
        [ORDER_RESERVED] = {ORDER_EV_RESERVED, FIELD_AT},
        [ORDER_CONFIRMED_BY_CUSTOMER] = {ORDER_EV_CONFIRMED, FIELD_DEADLINE | FIELD_AT},
        [ORDER_PAID] = {ORDER_EV_PAID, PAID_FIELDS | FIELD_AT},
        [ORDER_PAYMENT_FAILED_EVENT] = {ORDER_EV_PAYMENT_FAILED, FIELD_REASON | FIELD_AT},
        [ORDER_CANCELLED_EVENT] = {ORDER_EV_CANCELLED, FIELD_REASON | FIELD_PRODUCT_IDS | FIELD_AT,
                                   FIELD_PAID},
        [ORDER_SHIPPED_EVENT] = {ORDER_EV_SHIPPED, SHIPMENT_FIELDS | FIELD_AT},
        [ORDER_DELIVERED_EVENT] = {ORDER_EV_DELIVERED, FIELD_AT},
};

static const char *const verdict_codes[] = {
        [ORDER_OK] = "",
        [ORDER_REJ_NOT_FOUND] = "not_found",
        [ORDER_REJ_EXISTS] = "exists",
        [ORDER_REJ_INVALID] = "invalid",
        [ORDER_REJ_WRONG_STATE] = "wrong_state",
        [ORDER_REJ_BAD_TOKEN] = "bad_token",
        [ORDER_REJ_EXPIRED] = "expired",
};

static const char *const status_names[] = {
        [ORDER_NONE] = "none",
        [ORDER_PENDING] = "pending",
        [ORDER_AWAITING_CONFIRMATION] = "awaiting_confirmation",
        [ORDER_AWAITING_PAYMENT] = "awaiting_payment",
        [ORDER_CONFIRMED] = "confirmed",
        [ORDER_CANCELLED] = "cancelled",
        [ORDER_PAYMENT_FAILED] = "payment_failed",
        [ORDER_SHIPPED] = "shipped",
        [ORDER_DELIVERED] = "delivered",
};

/* ---- validation ---- */

static bool id_valid(const char *id)
{
	return strnlen(id, ORDER_ID_MAX) < ORDER_ID_MAX && orn_id_valid(id);
}

static bool text_field_valid(const char *s, size_t cap)
{
	size_t len = strnlen(s, cap);

	return len > 0 && len < cap && text_valid(s, len, TEXT_SPACE);
}

static bool currency_valid(const char *s)
{
	bool valid = strnlen(s, ORDER_CURRENCY_MAX) == 3;

	for (size_t i = 0; valid && i < 3; i++)
		valid = s[i] >= 'A' && s[i] <= 'Z';
	return valid;
}

static bool hex_hash_valid(const char *s)
{
	bool valid = strnlen(s, ORDER_TOKEN_HASH_MAX) == ORDER_TOKEN_HASH_LEN;

	for (size_t i = 0; valid && i < ORDER_TOKEN_HASH_LEN; i++)
		valid = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
	return valid;
}

static bool time_valid(int64_t ms)
{
	return ms >= 0 && ms <= ORDER_TIME_MAX;
}

static bool charge_id_valid(const char *s)
{
	size_t len = strnlen(s, ORDER_CHARGE_ID_MAX);
	bool valid = len > 0 && len < ORDER_CHARGE_ID_MAX;

	for (size_t i = 0; valid && i < len; i++)
		valid = s[i] > 0x20 && s[i] < 0x7f;
	return valid;
}

static bool brand_valid(const char *s)
{
	size_t len = strnlen(s, ORDER_BRAND_MAX);
	bool valid = len > 0 && len < ORDER_BRAND_MAX;

	for (size_t i = 0; valid && i < len; i++)
		valid = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		        s[i] == '-';
	return valid;
}

static bool last4_valid(const char *s)
{
	bool valid = strnlen(s, ORDER_LAST4_MAX) == 4;

	for (size_t i = 0; valid && i < 4; i++)
		valid = s[i] >= '0' && s[i] <= '9';
	return valid;
}

/* A tracking number: 1..100 bytes of printable ASCII. */
static bool tracking_number_valid(const char *s)
{
	size_t len = strnlen(s, ORDER_TRACKING_MAX);
	bool valid = len > 0 && len < ORDER_TRACKING_MAX;

	for (size_t i = 0; valid && i < len; i++)
		valid = s[i] >= 0x20 && s[i] < 0x7f;
	return valid;
}

static bool shipment_valid(const order_data *d)
{
	return text_field_valid(d->carrier, sizeof d->carrier) && tracking_number_valid(d->tracking_number);
}

static bool line_valid(const order_line *line)
{
	return id_valid(line->product_id) && text_field_valid(line->name, sizeof line->name) &&
	       line->unit_price_cents >= 0 && line->unit_price_cents <= ORDER_PRICE_MAX &&
	       line->quantity >= 1 && line->quantity <= ORDER_QUANTITY_MAX;
}

/* True if the lines are 1..50 valid lines of distinct products. */
static bool lines_valid(const order_line *lines, size_t count)
{
	if (count == 0 || count > ORDER_LINES_MAX)
		return false;
	for (size_t i = 0; i < count; i++) {
		if (!line_valid(&lines[i]))
			return false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(lines[i].product_id, lines[j].product_id) == 0)
				return false;
	}
	return true;
}

/* True if the placement fields of d (customer, lines, currency, hashes,
 * time, cart version) are within bounds. An empty customer_email is an
 * erased customer's (read models blank it, ADR 027): erased_ok for an event. */
static bool placement_valid(const order_data *d, bool erased_ok)
{
	return id_valid(d->customer_id) && strnlen(d->customer_email, ORDER_EMAIL_MAX) < ORDER_EMAIL_MAX &&
	       (pd_is_sealed(d->customer_email) || user_email_valid(d->customer_email) ||
	        (erased_ok && d->customer_email[0] == '\0')) &&
	       lines_valid(d->lines, d->line_count) && currency_valid(d->currency) &&
	       hex_hash_valid(d->token_hash) && hex_hash_valid(d->request_hash) && time_valid(d->time_ms) &&
	       d->cart_version >= 0;
}

/* True if ttl_ms is a time to live (1..ORDER_TIME_MAX). */
static bool ttl_valid(int64_t ttl_ms)
{
	return ttl_ms >= 1 && ttl_ms <= ORDER_TIME_MAX;
}

static bool has_line(const order_line *lines, size_t count, const char *product_id)
{
	for (size_t i = 0; i < count; i++)
		if (strcmp(lines[i].product_id, product_id) == 0)
			return true;
	return false;
}

/* True if the product ids are 1..50 distinct products of the lines. */
static bool product_ids_valid(const order_data *d, const order_line *lines, size_t line_count)
{
	if (d->product_count == 0 || d->product_count > ORDER_LINES_MAX)
		return false;
	for (size_t i = 0; i < d->product_count; i++) {
		if (!id_valid(d->product_ids[i]) ||
		    (lines != NULL && !has_line(lines, line_count, d->product_ids[i])))
			return false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(d->product_ids[i], d->product_ids[j]) == 0)
				return false;
	}
	return true;
}

/* ---- state helpers ---- */

void order_state_init(order_state *s)
{
	memset(s, 0, sizeof *s);
}

const char *order_status_name(order_status status)
{
	return (size_t)status < ORN_ARRAY_LEN(status_names) ? status_names[status] : NULL;
}

bool order_status_parse(const char *name, order_status *out)
{
	for (size_t i = ORDER_PENDING; name != NULL && i < ORN_ARRAY_LEN(status_names); i++)
		if (strcmp(name, status_names[i]) == 0) {
			*out = (order_status)i;
			return true;
		}
	return false;
}

/* ---- what a status means (order.h) ---- */

bool order_status_is_open(order_status status)
{
	return status == ORDER_PENDING || status == ORDER_AWAITING_CONFIRMATION ||
	       status == ORDER_AWAITING_PAYMENT;
}

bool order_status_is_final(order_status status)
{
	return status == ORDER_CANCELLED || status == ORDER_PAYMENT_FAILED || status == ORDER_DELIVERED;
}

bool order_status_checkout_done(order_status status)
{
	return order_status_is_final(status) || order_status_is_paid(status);
}

bool order_status_is_paid(order_status status)
{
	return status == ORDER_CONFIRMED || status == ORDER_SHIPPED || status == ORDER_DELIVERED;
}

bool order_status_releases_stock(order_status status)
{
	return status == ORDER_CANCELLED || status == ORDER_PAYMENT_FAILED;
}

bool order_status_payment_settled(order_status status)
{
	return order_status_is_paid(status) || status == ORDER_PAYMENT_FAILED;
}

bool order_status_awaits_customer(order_status status)
{
	return status == ORDER_AWAITING_CONFIRMATION || status == ORDER_AWAITING_PAYMENT;
}

int64_t order_deadline(const order_state *s)
{
	if (s->status == ORDER_PENDING || s->status == ORDER_AWAITING_CONFIRMATION)
		return s->confirmation_deadline_ms;
	if (s->status == ORDER_AWAITING_PAYMENT)
		return s->payment_deadline_ms;
	return 0;
}

bool order_total(const order_state *s, int64_t *out)
{
	int64_t total = 0, line;

	for (size_t i = 0; i < s->line_count; i++)
		if (s->lines[i].unit_price_cents < 0 || s->lines[i].quantity < 0 ||
		    __builtin_mul_overflow(s->lines[i].unit_price_cents, s->lines[i].quantity, &line) ||
		    __builtin_add_overflow(total, line, &total))
			return false;
	*out = total;
	return true;
}

KIND_NAMES(order, verdict_codes, command_shapes, event_shapes);

/* ---- decide ---- */

/* Appends an event of kind at time_ms to out and returns it, zeroed but for
 * the kind and the time. */
static order_event *emit(order_events *out, order_event_kind kind, int64_t time_ms)
{
	order_event *e;

	assert(out->count < ORDER_MAX_EVENTS);
	e = &out->items[out->count++];
	memset(e, 0, sizeof *e);
	e->kind = kind;
	e->data.time_ms = time_ms;
	return e;
}

static order_verdict decide_place(const order_state *s, const order_data *d, order_events *out)
{
	order_event *e;

	if (s->status != ORDER_NONE)
		return ORDER_REJ_EXISTS;
	/* the confirmation deadline is a time: now + ttl must stay one */
	if (!placement_valid(d, false) || !ttl_valid(d->ttl_ms) || d->ttl_ms > ORDER_TIME_MAX - d->time_ms)
		return ORDER_REJ_INVALID;
	e = emit(out, ORDER_PLACED, d->time_ms);
	memcpy(e->data.customer_id, d->customer_id, sizeof e->data.customer_id);
	memcpy(e->data.customer_email, d->customer_email, sizeof e->data.customer_email);
	memcpy(e->data.request_hash, d->request_hash, sizeof e->data.request_hash);
	memcpy(e->data.lines, d->lines, d->line_count * sizeof d->lines[0]);
	e->data.line_count = d->line_count;
	memcpy(e->data.currency, d->currency, sizeof e->data.currency);
	memcpy(e->data.token_hash, d->token_hash, sizeof e->data.token_hash);
	e->data.deadline_ms = d->time_ms + d->ttl_ms;
	e->data.cart_version = d->cart_version;
	return ORDER_OK;
}

static order_verdict decide_reserved(const order_state *s, const order_data *d, order_events *out)
{
	if (!time_valid(d->time_ms))
		return ORDER_REJ_INVALID;
	if (s->status == ORDER_AWAITING_CONFIRMATION)
		return ORDER_OK; /* redelivered */
	if (s->status != ORDER_PENDING)
		return ORDER_REJ_WRONG_STATE;
	emit(out, ORDER_RESERVED, d->time_ms);
	return ORDER_OK;
}

static order_verdict decide_reject_for_stock(const order_state *s, const order_data *d, order_events *out)
{
	order_event *e;

	if (!time_valid(d->time_ms) || !product_ids_valid(d, s->lines, s->line_count))
		return ORDER_REJ_INVALID;
	if (s->status == ORDER_CANCELLED && s->cancelled_product_count > 0)
		return ORDER_OK; /* redelivered */
	if (s->status != ORDER_PENDING)
		return ORDER_REJ_WRONG_STATE;
	e = emit(out, ORDER_CANCELLED_EVENT, d->time_ms);
	strcpy(e->data.reason, ORDER_REASON_OUT_OF_STOCK);
	memcpy(e->data.product_ids, d->product_ids, d->product_count * sizeof d->product_ids[0]);
	e->data.product_count = d->product_count;
	return ORDER_OK;
}

static order_verdict decide_confirm(const order_state *s, const order_data *d, order_events *out)
{
	bool confirmed_before =
	        s->status == ORDER_AWAITING_PAYMENT || order_status_payment_settled(s->status);

	if (!hex_hash_valid(d->token_hash) || !time_valid(d->time_ms) || !ttl_valid(d->ttl_ms))
		return ORDER_REJ_INVALID;
	if (s->status != ORDER_AWAITING_CONFIRMATION && !confirmed_before)
		return ORDER_REJ_WRONG_STATE;
	if (sodium_memcmp(s->token_hash, d->token_hash, ORDER_TOKEN_HASH_LEN) != 0)
		return ORDER_REJ_BAD_TOKEN;
	if (confirmed_before)
		return ORDER_OK; /* the link used again (a retry): the order is confirmed */
	if (d->time_ms >= s->confirmation_deadline_ms)
		return ORDER_REJ_EXPIRED;
	/* both are at most INT64_MAX / 4: the sum fits */
	emit(out, ORDER_CONFIRMED_BY_CUSTOMER, d->time_ms)->data.deadline_ms = d->time_ms + d->ttl_ms;
	return ORDER_OK;
}

/* Customer and admin cancel an open or a paid (confirmed, not shipped)
 * order; the deadline cancels only an open one. */
static order_verdict decide_cancel(const order_state *s, const order_data *d, order_events *out)
{
	bool expired = strcmp(d->reason, ORDER_REASON_EXPIRED) == 0;
	bool paid = s->status == ORDER_CONFIRMED && !expired;
	order_event *e;

	if (!time_valid(d->time_ms) || (!expired && strcmp(d->reason, ORDER_REASON_CUSTOMER) != 0 &&
	                                strcmp(d->reason, ORDER_REASON_ADMIN) != 0))
		return ORDER_REJ_INVALID;
	if (s->status == ORDER_CANCELLED)
		return ORDER_OK; /* cancelled already (a retry, or the deadline first): it is */
	if (!order_status_is_open(s->status) && !paid)
		return ORDER_REJ_WRONG_STATE;
	if (expired && d->time_ms < order_deadline(s))
		return ORDER_REJ_INVALID;
	e = emit(out, ORDER_CANCELLED_EVENT, d->time_ms);
	strcpy(e->data.reason, d->reason);
	e->data.paid = paid;
	return ORDER_OK;
}

static order_verdict decide_paid(const order_state *s, const order_data *d, order_events *out)
{
	order_event *e;

	if (!time_valid(d->time_ms) || !charge_id_valid(d->charge_id) || !brand_valid(d->brand) ||
	    !last4_valid(d->last4))
		return ORDER_REJ_INVALID;
	if (order_status_is_paid(s->status) && strcmp(s->charge_id, d->charge_id) == 0)
		return ORDER_OK; /* redelivered */
	if (s->status != ORDER_AWAITING_PAYMENT)
		return ORDER_REJ_WRONG_STATE;
	e = emit(out, ORDER_PAID, d->time_ms);
	memcpy(e->data.charge_id, d->charge_id, sizeof e->data.charge_id);
	memcpy(e->data.brand, d->brand, sizeof e->data.brand);
	memcpy(e->data.last4, d->last4, sizeof e->data.last4);
	return ORDER_OK;
}

static order_verdict decide_payment_failed(const order_state *s, const order_data *d, order_events *out)
{
	if (!time_valid(d->time_ms) || !text_field_valid(d->reason, sizeof d->reason))
		return ORDER_REJ_INVALID;
	if (s->status == ORDER_PAYMENT_FAILED)
		return ORDER_OK; /* redelivered */
	if (s->status != ORDER_AWAITING_PAYMENT)
		return ORDER_REJ_WRONG_STATE;
	memcpy(emit(out, ORDER_PAYMENT_FAILED_EVENT, d->time_ms)->data.reason, d->reason, sizeof d->reason);
	return ORDER_OK;
}

static bool same_shipment(const order_state *s, const order_data *d)
{
	return strcmp(s->carrier, d->carrier) == 0 && strcmp(s->tracking_number, d->tracking_number) == 0;
}

static order_verdict decide_ship(const order_state *s, const order_data *d, order_events *out)
{
	order_event *e;

	if (!time_valid(d->time_ms) || !shipment_valid(d))
		return ORDER_REJ_INVALID;
	if ((s->status == ORDER_SHIPPED || s->status == ORDER_DELIVERED) && same_shipment(s, d))
		return ORDER_OK; /* redelivered */
	if (s->status != ORDER_CONFIRMED)
		return ORDER_REJ_WRONG_STATE;
	e = emit(out, ORDER_SHIPPED_EVENT, d->time_ms);
	memcpy(e->data.carrier, d->carrier, sizeof e->data.carrier);
	memcpy(e->data.tracking_number, d->tracking_number, sizeof e->data.tracking_number);
	return ORDER_OK;
}

static order_verdict decide_deliver(const order_state *s, const order_data *d, order_events *out)
{
	if (!time_valid(d->time_ms))
		return ORDER_REJ_INVALID;
	if (s->status == ORDER_DELIVERED)
		return ORDER_OK; /* redelivered */
	if (s->status != ORDER_SHIPPED)
		return ORDER_REJ_WRONG_STATE;
	emit(out, ORDER_DELIVERED_EVENT, d->time_ms);
	return ORDER_OK;
}

order_verdict order_decide(const order_state *s, const order_command *c, order_events *out)
{
	out->count = 0;
	if (c->kind == ORDER_PLACE)
		return decide_place(s, &c->data, out);
	if (s->status == ORDER_NONE)
		return ORDER_REJ_NOT_FOUND;
	switch (c->kind) {
	case ORDER_MARK_RESERVED:
		return decide_reserved(s, &c->data, out);
	case ORDER_REJECT_FOR_STOCK:
		return decide_reject_for_stock(s, &c->data, out);
	case ORDER_CONFIRM:
		return decide_confirm(s, &c->data, out);
	case ORDER_CANCEL:
		return decide_cancel(s, &c->data, out);
	case ORDER_MARK_PAID:
		return decide_paid(s, &c->data, out);
	case ORDER_MARK_PAYMENT_FAILED:
		return decide_payment_failed(s, &c->data, out);
	case ORDER_SHIP:
		return decide_ship(s, &c->data, out);
	case ORDER_DELIVER:
		return decide_deliver(s, &c->data, out);
	default:
		return ORDER_REJ_INVALID;
	}
}

/* ---- evolve ---- */

/* The status event e moves s to, or ORDER_NONE if it does not apply. */
static order_status transition(const order_state *s, const order_event *e)
{
	switch (e->kind) {
	case ORDER_PLACED:
		return s->status == ORDER_NONE ? ORDER_PENDING : ORDER_NONE;
	case ORDER_RESERVED:
		return s->status == ORDER_PENDING ? ORDER_AWAITING_CONFIRMATION : ORDER_NONE;
	case ORDER_CONFIRMED_BY_CUSTOMER:
		return s->status == ORDER_AWAITING_CONFIRMATION ? ORDER_AWAITING_PAYMENT : ORDER_NONE;
	case ORDER_PAID:
		return s->status == ORDER_AWAITING_PAYMENT ? ORDER_CONFIRMED : ORDER_NONE;
	case ORDER_PAYMENT_FAILED_EVENT:
		return s->status == ORDER_AWAITING_PAYMENT ? ORDER_PAYMENT_FAILED : ORDER_NONE;
	case ORDER_CANCELLED_EVENT:
		/* a paid cancellation from confirmed only, any other from an open status */
		if (e->data.paid)
			return s->status == ORDER_CONFIRMED ? ORDER_CANCELLED : ORDER_NONE;
		return order_status_is_open(s->status) ? ORDER_CANCELLED : ORDER_NONE;
	case ORDER_SHIPPED_EVENT:
		return s->status == ORDER_CONFIRMED ? ORDER_SHIPPED : ORDER_NONE;
	case ORDER_DELIVERED_EVENT:
		return s->status == ORDER_SHIPPED ? ORDER_DELIVERED : ORDER_NONE;
	}
	return ORDER_NONE;
}

bool order_evolve(order_state *s, const order_event *e)
{
	order_status next = transition(s, e);
	const order_data *d = &e->data;
	order_history_entry *entry;

	if (next == ORDER_NONE || s->history_count >= ORDER_HISTORY_MAX)
		return false;
	if (e->kind == ORDER_PLACED) {
		memcpy(s->customer_id, d->customer_id, sizeof s->customer_id);
		memcpy(s->customer_email, d->customer_email, sizeof s->customer_email);
		memcpy(s->request_hash, d->request_hash, sizeof s->request_hash);
		memcpy(s->lines, d->lines, sizeof s->lines);
		s->line_count = d->line_count;
		memcpy(s->currency, d->currency, sizeof s->currency);
		memcpy(s->token_hash, d->token_hash, sizeof s->token_hash);
		s->confirmation_deadline_ms = d->deadline_ms;
		s->cart_version = d->cart_version;
	} else if (e->kind == ORDER_CONFIRMED_BY_CUSTOMER) {
		s->payment_deadline_ms = d->deadline_ms;
	} else if (e->kind == ORDER_PAID) {
		memcpy(s->charge_id, d->charge_id, sizeof s->charge_id);
		memcpy(s->brand, d->brand, sizeof s->brand);
		memcpy(s->last4, d->last4, sizeof s->last4);
	} else if (e->kind == ORDER_CANCELLED_EVENT) {
		memcpy(s->cancelled_products, d->product_ids, sizeof s->cancelled_products);
		s->cancelled_product_count = d->product_count;
		s->cancelled_after_payment = d->paid;
	} else if (e->kind == ORDER_SHIPPED_EVENT) {
		memcpy(s->carrier, d->carrier, sizeof s->carrier);
		memcpy(s->tracking_number, d->tracking_number, sizeof s->tracking_number);
		s->shipped_at_ms = d->time_ms;
	} else if (e->kind == ORDER_DELIVERED_EVENT) {
		s->delivered_at_ms = d->time_ms;
	}
	s->status = next;
	entry = &s->history[s->history_count++];
	memset(entry, 0, sizeof *entry);
	entry->status = next;
	entry->at_ms = d->time_ms;
	if (e->kind == ORDER_CANCELLED_EVENT || e->kind == ORDER_PAYMENT_FAILED_EVENT)
		memcpy(entry->reason, d->reason, sizeof entry->reason);
	return true;
}

/* ---- payload codecs ---- */

static bool string_terminated(const char *s, size_t cap)
{
	return strnlen(s, cap) < cap;
}

/* kind_fields.own_fits: the lines or the product ids of d (at most
 * ORDER_LINES_MAX, every text terminated). */
static bool own_fits(const kind_field *f, const void *data)
{
	const order_data *d = data;

	if (f->field == FIELD_PRODUCT_IDS) {
		for (size_t j = 0; d->product_count <= ORDER_LINES_MAX && j < d->product_count; j++)
			if (!string_terminated(d->product_ids[j], ORDER_ID_MAX))
				return false;
		return d->product_count <= ORDER_LINES_MAX;
	}
	for (size_t j = 0; d->line_count <= ORDER_LINES_MAX && j < d->line_count; j++)
		if (!string_terminated(d->lines[j].product_id, ORDER_ID_MAX) ||
		    !string_terminated(d->lines[j].name, ORDER_NAME_MAX))
			return false;
	return d->line_count <= ORDER_LINES_MAX;
}

static void write_lines(mp_writer *w, const order_line *lines, size_t count)
{
	mp_write_array(w, (uint32_t)count);
	for (size_t i = 0; i < count; i++) {
		mp_write_map(w, 4);
		mp_write_cstr(w, "product_id");
		mp_write_cstr(w, lines[i].product_id);
		mp_write_cstr(w, "name");
		mp_write_cstr(w, lines[i].name);
		mp_write_cstr(w, "unit_price_cents");
		mp_write_int(w, lines[i].unit_price_cents);
		mp_write_cstr(w, "quantity");
		mp_write_int(w, lines[i].quantity);
	}
}

/* kind_fields.own_write: the lines, or the product ids. */
static void own_write(mp_writer *w, const kind_field *f, const void *data)
{
	const order_data *d = data;

	if (f->field == FIELD_LINES) {
		write_lines(w, d->lines, d->line_count);
		return;
	}
	mp_write_array(w, (uint32_t)d->product_count);
	for (size_t j = 0; j < d->product_count; j++)
		mp_write_cstr(w, d->product_ids[j]);
}

/* Reads one line map {product_id, name, unit_price_cents, quantity}, all
 * required; other keys are skipped. */
static orn_rc read_line(mp_reader *r, order_line *line)
{
	static const char *const keys[] = {"product_id", "name", "unit_price_cents", "quantity"};
	const char *key;
	uint32_t count, len;
	unsigned seen = 0, bit;
	orn_rc rc;

	if ((rc = mp_read_map(r, &count)) != ORN_OK)
		return rc;
	for (uint32_t i = 0; i < count; i++) {
		if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
			return rc;
		bit = 0;
		for (size_t k = 0; k < ORN_ARRAY_LEN(keys); k++)
			if (mp_str_eq(key, len, keys[k]))
				bit = 1u << k;
		if ((seen & bit) != 0)
			return ORN_EDECODE;
		seen |= bit;
		if (bit == 0)
			rc = mp_skip(r);
		else if (bit == 1)
			rc = mp_read_cstr(r, line->product_id, sizeof line->product_id);
		else if (bit == 2)
			rc = mp_read_cstr(r, line->name, sizeof line->name);
		else if (bit == 4)
			rc = mp_read_int(r, &line->unit_price_cents);
		else
			rc = mp_read_int(r, &line->quantity);
		if (rc != ORN_OK)
			return rc;
	}
	return seen == 0xf ? ORN_OK : ORN_EDECODE;
}

/* kind_fields.own_read: an array of at most ORDER_LINES_MAX lines or product ids. */
static orn_rc own_read(mp_reader *r, const kind_field *f, void *data)
{
	order_data *out = data;
	uint32_t count;
	orn_rc rc;

	if ((rc = mp_read_array(r, &count)) != ORN_OK)
		return rc;
	if (count > ORDER_LINES_MAX)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++) {
		if (f->field == FIELD_LINES)
			rc = read_line(r, &out->lines[i]);
		else
			rc = mp_read_cstr(r, out->product_ids[i], ORDER_ID_MAX);
		if (rc != ORN_OK)
			return rc;
	}
	if (f->field == FIELD_LINES)
		out->line_count = count;
	else
		out->product_count = count;
	return ORN_OK;
}

static const kind_fields fields_of = {KIND_FIELDS_OF(field_table), .own_fits = own_fits,
                                      .own_write = own_write, .own_read = own_read};

static orn_rc encode_fields(mp_writer *w, const payload_shape *shape, const order_data *d)
{
	unsigned present = (d->cart_version != 0 ? FIELD_CART_VERSION : 0) | (d->paid ? FIELD_PAID : 0);

	return kind_fields_encode(w, &fields_of, shape->fields | (shape->optional & present), d);
}

static orn_rc decode_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out)
{
	return kind_fields_read_entry(r, &fields_of, fields, seen, out);
}

orn_rc order_command_encode(mp_writer *w, const order_command *c)
{
	if (order_command_type(c->kind) == NULL)
		return ORN_EINVAL;
	return encode_fields(w, &command_shapes[c->kind], &c->data);
}

orn_rc order_command_decode(const char *type, const uint8_t *payload, size_t len, order_command *out)
{
	int shape = KIND_TYPE_INDEX(command_shapes, type);
	orn_rc rc;

	if (shape < 0)
		return ORN_EINVAL;
	if ((rc = kind_decode_map_optional(payload, len, command_shapes[shape].fields,
	                                   command_shapes[shape].optional, decode_entry, &out->data,
	                                   sizeof out->data, NULL)) != ORN_OK)
		return rc;
	out->kind = (order_command_kind)shape;
	return ORN_OK;
}

orn_rc order_event_encode(mp_writer *w, const order_event *e)
{
	if (order_event_type(e->kind) == NULL)
		return ORN_EINVAL;
	return encode_fields(w, &event_shapes[e->kind], &e->data);
}

/* True if an event of kind with data d is one decide can emit. */
static bool event_valid(order_event_kind kind, const order_data *d)
{
	bool out_of_stock = strcmp(d->reason, ORDER_REASON_OUT_OF_STOCK) == 0;

	if (!time_valid(d->time_ms))
		return false;
	switch (kind) {
	case ORDER_PLACED:
		return placement_valid(d, true) && time_valid(d->deadline_ms) && d->deadline_ms > d->time_ms;
	case ORDER_CONFIRMED_BY_CUSTOMER:
		return d->deadline_ms > d->time_ms && d->deadline_ms - d->time_ms <= ORDER_TIME_MAX;
	case ORDER_PAID:
		return charge_id_valid(d->charge_id) && brand_valid(d->brand) && last4_valid(d->last4);
	case ORDER_PAYMENT_FAILED_EVENT:
		return text_field_valid(d->reason, sizeof d->reason);
	case ORDER_CANCELLED_EVENT:
		if (out_of_stock)
			return !d->paid && product_ids_valid(d, NULL, 0);
		if (strcmp(d->reason, ORDER_REASON_EXPIRED) == 0)
			return !d->paid && d->product_count == 0;
		return d->product_count == 0 && (strcmp(d->reason, ORDER_REASON_CUSTOMER) == 0 ||
		                                 strcmp(d->reason, ORDER_REASON_ADMIN) == 0);
	case ORDER_SHIPPED_EVENT:
		return shipment_valid(d);
	default:
		return true;
	}
}

orn_rc order_event_decode(const char *type, const uint8_t *payload, size_t len, order_event *out)
{
	int shape = KIND_TYPE_INDEX(event_shapes, type);
	orn_rc rc;

	if (shape < 0)
		return ORN_EINVAL;
	if ((rc = kind_decode_map_optional(payload, len, event_shapes[shape].fields,
	                                   event_shapes[shape].optional, decode_entry, &out->data,
	                                   sizeof out->data, NULL)) != ORN_OK)
		return rc;
	if (!event_valid((order_event_kind)shape, &out->data))
		return ORN_EDECODE;
	out->kind = (order_event_kind)shape;
	return ORN_OK;
}

/* ---- snapshot, restore, view ---- */

/* The event that produced history entry i of s, into e. */
static void history_event(const order_state *s, size_t i, order_event *e)
{
	const order_history_entry *entry = &s->history[i];
	order_data *d = &e->data;

	memset(e, 0, sizeof *e);
	d->time_ms = entry->at_ms;
	memcpy(d->reason, entry->reason, sizeof d->reason);
	switch (entry->status) {
	case ORDER_PENDING:
		e->kind = ORDER_PLACED;
		memcpy(d->customer_id, s->customer_id, sizeof d->customer_id);
		memcpy(d->customer_email, s->customer_email, sizeof d->customer_email);
		memcpy(d->request_hash, s->request_hash, sizeof d->request_hash);
		memcpy(d->lines, s->lines, sizeof d->lines);
		d->line_count = s->line_count;
		memcpy(d->currency, s->currency, sizeof d->currency);
		memcpy(d->token_hash, s->token_hash, sizeof d->token_hash);
		d->deadline_ms = s->confirmation_deadline_ms;
		d->cart_version = s->cart_version;
		break;
	case ORDER_AWAITING_CONFIRMATION:
		e->kind = ORDER_RESERVED;
		break;
	case ORDER_AWAITING_PAYMENT:
		e->kind = ORDER_CONFIRMED_BY_CUSTOMER;
		d->deadline_ms = s->payment_deadline_ms;
		break;
	case ORDER_CONFIRMED:
		e->kind = ORDER_PAID;
		memcpy(d->charge_id, s->charge_id, sizeof d->charge_id);
		memcpy(d->brand, s->brand, sizeof d->brand);
		memcpy(d->last4, s->last4, sizeof d->last4);
		break;
	case ORDER_PAYMENT_FAILED:
		e->kind = ORDER_PAYMENT_FAILED_EVENT;
		break;
	case ORDER_SHIPPED:
		e->kind = ORDER_SHIPPED_EVENT;
		memcpy(d->carrier, s->carrier, sizeof d->carrier);
		memcpy(d->tracking_number, s->tracking_number, sizeof d->tracking_number);
		break;
	case ORDER_DELIVERED:
		e->kind = ORDER_DELIVERED_EVENT;
		break;
	default:
		e->kind = ORDER_CANCELLED_EVENT;
		memcpy(d->product_ids, s->cancelled_products, sizeof d->product_ids);
		d->product_count = s->cancelled_product_count;
		d->paid = s->cancelled_after_payment;
		break;
	}
}

/* Snapshot: [[type, payload], ...], one event per history entry. */
static orn_rc order_snapshot(const void *state, mp_writer *w)
{
	const order_state *s = state;
	order_event *e = malloc(sizeof *e);
	orn_rc rc = ORN_OK;

	if (e == NULL)
		return ORN_ENOMEM;
	mp_write_array(w, (uint32_t)s->history_count);
	for (size_t i = 0; rc == ORN_OK && i < s->history_count; i++) {
		history_event(s, i, e);
		mp_write_array(w, 2);
		mp_write_cstr(w, order_event_type(e->kind));
		rc = order_event_encode(w, e);
	}
	free(e);
	return rc == ORN_OK ? mp_writer_status(w) : rc;
}

static void write_time_or_nil(mp_writer *w, const char *key, int64_t ms)
{
	mp_write_cstr(w, key);
	if (ms > 0)
		mp_write_int(w, ms);
	else
		mp_write_nil(w);
}

static void write_history(mp_writer *w, const order_state *s)
{
	mp_write_array(w, (uint32_t)s->history_count);
	for (size_t i = 0; i < s->history_count; i++) {
		mp_write_map(w, 3);
		mp_write_cstr(w, "status");
		mp_write_cstr(w, order_status_name(s->history[i].status));
		mp_write_cstr(w, "at_ms");
		mp_write_int(w, s->history[i].at_ms);
		mp_write_cstr(w, "reason");
		mp_write_cstr(w, s->history[i].reason[0] != '\0' ? s->history[i].reason : NULL);
	}
}

/* View: see order.h. */
static orn_rc order_view(const void *state, mp_writer *w)
{
	const order_state *s = state;
	int64_t total = 0;

	if (!order_total(s, &total))
		return ORN_EINTERNAL;
	mp_write_map(w, 15);
	mp_write_cstr(w, "status");
	mp_write_cstr(w, order_status_name(s->status));
	mp_write_cstr(w, "customer_id");
	mp_write_cstr(w, s->customer_id);
	mp_write_cstr(w, "customer_email");
	mp_write_cstr(w, s->customer_email);
	mp_write_cstr(w, "request_hash");
	mp_write_cstr(w, s->request_hash);
	mp_write_cstr(w, "items");
	write_lines(w, s->lines, s->line_count);
	mp_write_cstr(w, "total_cents");
	mp_write_int(w, total);
	mp_write_cstr(w, "currency");
	mp_write_cstr(w, s->currency);
	mp_write_cstr(w, "created_at_ms");
	mp_write_int(w, s->history_count > 0 ? s->history[0].at_ms : 0);
	mp_write_cstr(w, "updated_at_ms");
	mp_write_int(w, s->history_count > 0 ? s->history[s->history_count - 1].at_ms : 0);
	mp_write_cstr(w, "history");
	write_history(w, s);
	mp_write_cstr(w, "payment");
	if (order_status_is_paid(s->status)) {
		mp_write_map(w, 2);
		mp_write_cstr(w, "brand");
		mp_write_cstr(w, s->brand);
		mp_write_cstr(w, "last4");
		mp_write_cstr(w, s->last4);
	} else {
		mp_write_nil(w);
	}
	write_time_or_nil(w, "confirmation_deadline_ms", s->confirmation_deadline_ms);
	write_time_or_nil(w, "payment_deadline_ms", s->payment_deadline_ms);
	mp_write_cstr(w, "cancelled_products");
	mp_write_array(w, (uint32_t)s->cancelled_product_count);
	for (size_t i = 0; i < s->cancelled_product_count; i++)
		mp_write_cstr(w, s->cancelled_products[i]);
	mp_write_cstr(w, "shipment");
	if (s->carrier[0] != '\0') {
		mp_write_map(w, 4);
		mp_write_cstr(w, "carrier");
		mp_write_cstr(w, s->carrier);
		mp_write_cstr(w, "tracking_number");
		mp_write_cstr(w, s->tracking_number);
		mp_write_cstr(w, "shipped_at_ms");
		mp_write_int(w, s->shipped_at_ms);
		write_time_or_nil(w, "delivered_at_ms", s->delivered_at_ms);
	} else {
		mp_write_nil(w);
	}
	return mp_writer_status(w);
}

/* ---- the kind table ---- */

static void describe_rejection(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	const order_state *s = state;
	const order_command *c = command;

	if (verdict == ORDER_REJ_NOT_FOUND)
		snprintf(detail, cap, "the order does not exist");
	else if (verdict == ORDER_REJ_EXISTS)
		snprintf(detail, cap, "the order already exists");
	else if (verdict == ORDER_REJ_WRONG_STATE)
		snprintf(detail, cap, "%s is not accepted while the order is %s", order_command_type(c->kind),
		         order_status_name(s->status));
	else if (verdict == ORDER_REJ_BAD_TOKEN)
		snprintf(detail, cap, "the confirmation token does not match");
	else if (verdict == ORDER_REJ_EXPIRED)
		snprintf(detail, cap, "the confirmation deadline has passed");
	else if (c->kind == ORDER_CANCEL && strcmp(c->data.reason, ORDER_REASON_EXPIRED) == 0)
		snprintf(detail, cap, "the deadline %" PRId64 " has not passed", order_deadline(s));
	else
		snprintf(detail, cap, "%s: a field is out of bounds (see the order contract)",
		         order_command_type(c->kind));
}

/* order_kind_decide and order_kind_evolve: the adapter every aggregate shares (kind.h). */
KIND_ADAPTER(order, PAYLOAD_SCHEMA, describe_rejection, order_kind_apply);

/* order_restore: the snapshot is the history, every event a transition (kind.h). */
KIND_RESTORE_TRANSITIONS(order);

const act_kind order_kind = {
        KIND_MEMBERS(order, ORDER_AGGREGATE, ORDER_SNAPSHOT_SCHEMA),
        .snapshot = order_snapshot,
        .restore = order_restore,
        .view = order_view,
        .copyable = true,
};

void order_id_for(const char *customer, const char *key, uint64_t cart_version, char out[ORDER_ID_MAX])
{
	unsigned char digest[16], version[8];
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, sizeof digest);
	crypto_generichash_update(&st, (const unsigned char *)customer, strlen(customer));
	crypto_generichash_update(&st, (const unsigned char *)"\n", 1);
	if (key != NULL) {
		crypto_generichash_update(&st, (const unsigned char *)key, strlen(key));
	} else {
		/* "\n" never ends a key: a version's id never equals a key's */
		for (int i = 0; i < 8; i++)
			version[i] = (unsigned char)(cart_version >> (8 * i));
		crypto_generichash_update(&st, (const unsigned char *)"cart\n", 5);
		crypto_generichash_update(&st, version, sizeof version);
	}
	crypto_generichash_final(&st, digest, sizeof digest);
	out[0] = 'o';
	sodium_bin2hex(out + 1, ORDER_ID_MAX - 1, digest, sizeof digest);
}
