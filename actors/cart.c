/* cart.c — the cart aggregate: a pure decider (decide, evolve), the msgpack
 * codecs of its command and event payloads, and the kind table the actor
 * runtime serves.
 *
 * Commands and events map onto one set of payload keys (a bit per key), so
 * one encoder and one strict decoder serve both; the lines of a checkout are
 * the one key holding an array. The snapshot is the event list that rebuilds
 * the state (a checkout that removed nothing, then one ItemAdded per line):
 * restore replays it through the event decoder and evolve, so a snapshot can
 * only produce a state the stream could. The state is fixed-size; nothing
 * here allocates but the writer the kind adapter encodes events with. */
#include "cart.h"
#include "kind.h"
#include "text.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version of every command and event payload written and accepted here. */
#define PAYLOAD_SCHEMA 1

enum payload_field {
	FIELD_PRODUCT_ID = 1u << 0,
	FIELD_NAME = 1u << 1,
	FIELD_PRICE = 1u << 2,
	FIELD_QUANTITY = 1u << 3,
	FIELD_ADDED = 1u << 4,
	FIELD_CURRENCY = 1u << 5,
	FIELD_ORDER_ID = 1u << 6,
	FIELD_LINES = 1u << 7,
	FIELD_PLACED_FROM = 1u << 8,
};

static const char *const field_keys[] = {"product_id", "name",  "unit_price_cents",
                                         "quantity",   "added", "currency",
                                         "order_id",   "lines", "placed_from"};

/* Keys of one checkout line. */
#define LINE_KEY_PRODUCT_ID "product_id"
#define LINE_KEY_QUANTITY   "quantity"

/* A payload's required fields, and its optional ones (written when not 0). */
typedef struct payload_shape {
	const char *type;
	unsigned fields;
	unsigned optional;
} payload_shape;

static const payload_shape command_shapes[] = {
        [CART_ADD_ITEM] = {CART_CMD_ADD_ITEM,
                           FIELD_PRODUCT_ID | FIELD_NAME | FIELD_PRICE | FIELD_QUANTITY | FIELD_CURRENCY},
        [CART_SET_QUANTITY] = {CART_CMD_SET_QUANTITY, FIELD_PRODUCT_ID | FIELD_QUANTITY},
        [CART_REMOVE_ITEM] = {CART_CMD_REMOVE_ITEM, FIELD_PRODUCT_ID},
        [CART_CLEAR] = {CART_CMD_CLEAR, 0},
        [CART_CHECKED_OUT] = {CART_CMD_CHECKED_OUT, FIELD_ORDER_ID | FIELD_LINES, FIELD_PLACED_FROM},
};

static const payload_shape event_shapes[] = {
        [CART_ITEM_ADDED] = {CART_EV_ITEM_ADDED, FIELD_PRODUCT_ID | FIELD_NAME | FIELD_PRICE |
                                                         FIELD_QUANTITY | FIELD_ADDED | FIELD_CURRENCY},
        [CART_QUANTITY_CHANGED] = {CART_EV_QUANTITY_CHANGED, FIELD_PRODUCT_ID | FIELD_QUANTITY},
        [CART_ITEM_REMOVED] = {CART_EV_ITEM_REMOVED, FIELD_PRODUCT_ID},
        [CART_CLEARED] = {CART_EV_CLEARED, 0},
        [CART_CHECKED_OUT_EVENT] = {CART_EV_CHECKED_OUT, FIELD_ORDER_ID | FIELD_LINES, FIELD_PLACED_FROM},
};

static const char *const verdict_codes[] = {
        [CART_OK] = "",
        [CART_REJ_NOT_FOUND] = "not_found",
        [CART_REJ_INVALID] = "invalid",
        [CART_REJ_TOO_MANY_LINES] = "too_many_lines",
        [CART_REJ_CURRENCY_MISMATCH] = "currency_mismatch",
};

/* The fields of any payload, decoded or to encode. */
typedef struct payload_fields {
	cart_line line;
	int64_t added;
	char currency[CART_CURRENCY_MAX];
	char order_id[CART_ID_MAX];
	cart_checkout_line checkout[CART_LINES_MAX];
	size_t checkout_count;
	int64_t placed_from;
} payload_fields;

/* ---- validation ---- */

static bool id_valid(const char *id)
{
	return strnlen(id, CART_ID_MAX) < CART_ID_MAX && orn_id_valid(id);
}

static bool name_valid(const char *name)
{
	size_t len = strnlen(name, CART_NAME_MAX);

	return len > 0 && len < CART_NAME_MAX && text_valid(name, len, TEXT_SPACE);
}

static bool currency_valid(const char *s)
{
	bool valid = strnlen(s, CART_CURRENCY_MAX) == 3;

	for (size_t i = 0; valid && i < 3; i++)
		valid = s[i] >= 'A' && s[i] <= 'Z';
	return valid;
}

static bool price_valid(int64_t price)
{
	return price >= 0 && price <= CART_PRICE_MAX;
}

static bool quantity_valid(int64_t quantity, int64_t minimum)
{
	return quantity >= minimum && quantity <= CART_QUANTITY_MAX;
}

/* True if the line of an add (or an item added event) is within bounds. */
static bool line_valid(const cart_line *line)
{
	return id_valid(line->product_id) && name_valid(line->name) && price_valid(line->unit_price_cents) &&
	       quantity_valid(line->quantity, 1);
}

/* True if every checkout line is within bounds and names its own product. */
static bool checkout_lines_valid(const cart_checkout_line *lines, size_t count)
{
	if (count > CART_LINES_MAX)
		return false;
	for (size_t i = 0; i < count; i++) {
		if (!id_valid(lines[i].product_id) || !quantity_valid(lines[i].quantity, 1))
			return false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(lines[j].product_id, lines[i].product_id) == 0)
				return false;
	}
	return true;
}

/* ---- totals ---- */

bool cart_line_total(int64_t unit_price_cents, int64_t quantity, int64_t *out)
{
	int64_t total;

	if (unit_price_cents < 0 || quantity < 0 ||
	    __builtin_mul_overflow(unit_price_cents, quantity, &total))
		return false;
	*out = total;
	return true;
}

bool cart_total(const cart_state *s, int64_t *out)
{
	int64_t total = 0, line;

	for (size_t i = 0; i < s->line_count; i++)
		if (!cart_line_total(s->lines[i].unit_price_cents, s->lines[i].quantity, &line) ||
		    __builtin_add_overflow(total, line, &total))
			return false;
	*out = total;
	return true;
}

/* ---- decide and evolve ---- */

void cart_state_init(cart_state *s)
{
	memset(s, 0, sizeof *s);
}

/* Index of the line of product_id, or -1. */
static int line_index(const cart_state *s, const char *product_id)
{
	for (size_t i = 0; i < s->line_count; i++)
		if (strcmp(s->lines[i].product_id, product_id) == 0)
			return (int)i;
	return -1;
}

const cart_line *cart_find_line(const cart_state *s, const char *product_id)
{
	int i = line_index(s, product_id);

	return i >= 0 ? &s->lines[i] : NULL;
}

/* Appends an event of kind to out and returns it, zeroed but for the kind. */
static cart_event *emit(cart_events *out, cart_event_kind kind)
{
	cart_event *e;

	assert(out->count < CART_MAX_EVENTS);
	e = &out->items[out->count++];
	memset(e, 0, sizeof *e);
	e->kind = kind;
	return e;
}

static cart_verdict decide_add(const cart_state *s, const cart_command *c, cart_events *out)
{
	const cart_line *existing;
	int64_t after = c->line.quantity;
	cart_event *e;

	if (!line_valid(&c->line) || !currency_valid(c->currency))
		return CART_REJ_INVALID;
	if (s->line_count > 0 && strcmp(s->currency, c->currency) != 0)
		return CART_REJ_CURRENCY_MISMATCH;
	if ((existing = cart_find_line(s, c->line.product_id)) != NULL)
		after += existing->quantity;
	else if (s->line_count >= CART_LINES_MAX)
		return CART_REJ_TOO_MANY_LINES;
	if (after > CART_QUANTITY_MAX)
		return CART_REJ_INVALID;
	e = emit(out, CART_ITEM_ADDED);
	e->line = c->line;
	e->line.quantity = after;
	e->added = c->line.quantity;
	strcpy(e->currency, c->currency);
	return CART_OK;
}

static cart_verdict decide_set(const cart_state *s, const cart_command *c, cart_events *out)
{
	const cart_line *existing;

	if (!id_valid(c->line.product_id) || !quantity_valid(c->line.quantity, 0))
		return CART_REJ_INVALID;
	if ((existing = cart_find_line(s, c->line.product_id)) == NULL)
		return CART_REJ_NOT_FOUND;
	if (c->line.quantity == 0)
		strcpy(emit(out, CART_ITEM_REMOVED)->line.product_id, c->line.product_id);
	else if (c->line.quantity != existing->quantity) {
		cart_event *e = emit(out, CART_QUANTITY_CHANGED);
		strcpy(e->line.product_id, c->line.product_id);
		e->line.quantity = c->line.quantity;
	}
	return CART_OK;
}

static cart_verdict decide_remove(const cart_state *s, const cart_command *c, cart_events *out)
{
	if (!id_valid(c->line.product_id))
		return CART_REJ_INVALID;
	if (cart_find_line(s, c->line.product_id) != NULL)
		strcpy(emit(out, CART_ITEM_REMOVED)->line.product_id, c->line.product_id);
	return CART_OK;
}

/* True if order_id is one of the checked-out orders the cart remembers. */
static bool remembers_order(const cart_state *s, const char *order_id)
{
	if (strcmp(s->last_order_id, order_id) == 0)
		return true;
	for (size_t i = 0; i < s->earlier_count; i++)
		if (strcmp(s->earlier_orders[i], order_id) == 0)
			return true;
	return false;
}

/* Takes out what the order took: each ordered quantity, at most what the
 * cart's line holds now; products no longer in the cart are skipped. The
 * event is emitted even if nothing is taken, so the cart remembers the order
 * and a redelivery cannot take out what the customer adds later. */
static cart_verdict decide_checked_out(const cart_state *s, const cart_command *c, cart_events *out)
{
	const cart_checkout_line *ordered;
	const cart_line *existing;
	cart_checkout_line *taken;
	cart_event *e;

	if (!id_valid(c->order_id) || c->checkout_count == 0 || c->placed_from < 0 ||
	    !checkout_lines_valid(c->checkout, c->checkout_count))
		return CART_REJ_INVALID;
	/* An order placed from a cart version at or before the last one checked
	 * out is done (however many orders came since), as is a remembered one. */
	if ((c->placed_from != 0 && c->placed_from <= s->checked_out_through) ||
	    remembers_order(s, c->order_id))
		return CART_OK;
	e = emit(out, CART_CHECKED_OUT_EVENT);
	strcpy(e->order_id, c->order_id);
	e->placed_from = c->placed_from;
	for (size_t i = 0; i < c->checkout_count; i++) {
		ordered = &c->checkout[i];
		if ((existing = cart_find_line(s, ordered->product_id)) == NULL)
			continue;
		taken = &e->checkout[e->checkout_count++];
		strcpy(taken->product_id, ordered->product_id);
		taken->quantity =
		        ordered->quantity < existing->quantity ? ordered->quantity : existing->quantity;
	}
	return CART_OK;
}

cart_verdict cart_decide(const cart_state *s, const cart_command *c, cart_events *out)
{
	out->count = 0;
	switch (c->kind) {
	case CART_ADD_ITEM:
		return decide_add(s, c, out);
	case CART_SET_QUANTITY:
		return decide_set(s, c, out);
	case CART_REMOVE_ITEM:
		return decide_remove(s, c, out);
	case CART_CLEAR:
		if (s->line_count > 0)
			emit(out, CART_CLEARED);
		return CART_OK;
	case CART_CHECKED_OUT:
		return decide_checked_out(s, c, out);
	}
	return CART_REJ_INVALID;
}

static void empty_lines(cart_state *s)
{
	memset(s->lines, 0, sizeof s->lines);
	s->line_count = 0;
	s->currency[0] = '\0';
}

static void evolve_added(cart_state *s, const cart_event *e)
{
	int i = line_index(s, e->line.product_id);

	if (i < 0 && s->line_count >= CART_LINES_MAX)
		return;
	if (i < 0)
		i = (int)s->line_count++;
	s->lines[i] = e->line;
	strcpy(s->currency, e->currency);
}

static void evolve_removed(cart_state *s, const char *product_id)
{
	int i = line_index(s, product_id);

	if (i < 0)
		return;
	memmove(&s->lines[i], &s->lines[i + 1], (s->line_count - (size_t)i - 1) * sizeof s->lines[0]);
	memset(&s->lines[--s->line_count], 0, sizeof s->lines[0]);
	if (s->line_count == 0)
		s->currency[0] = '\0';
}

/* order_id becomes the last order; the one before joins the earlier ones,
 * the oldest of which is forgotten when they are full. An order remembered
 * already (only a malformed stream repeats one) changes nothing, so the
 * remembered ids stay distinct. */
static void remember_order(cart_state *s, const char *order_id)
{
	if (order_id[0] == '\0' || remembers_order(s, order_id))
		return;
	if (s->last_order_id[0] != '\0') {
		if (s->earlier_count == ORN_ARRAY_LEN(s->earlier_orders)) {
			memmove(s->earlier_orders[0], s->earlier_orders[1],
			        (s->earlier_count - 1) * sizeof s->earlier_orders[0]);
			s->earlier_count--;
		}
		memcpy(s->earlier_orders[s->earlier_count++], s->last_order_id, sizeof s->last_order_id);
	}
	snprintf(s->last_order_id, sizeof s->last_order_id, "%s", order_id);
}

static void evolve_checked_out(cart_state *s, const cart_event *e)
{
	int i;

	for (size_t k = 0; k < e->checkout_count; k++) {
		if ((i = line_index(s, e->checkout[k].product_id)) < 0)
			continue;
		if (s->lines[i].quantity > e->checkout[k].quantity)
			s->lines[i].quantity -= e->checkout[k].quantity;
		else
			evolve_removed(s, e->checkout[k].product_id);
	}
	remember_order(s, e->order_id);
	if (e->placed_from > s->checked_out_through)
		s->checked_out_through = e->placed_from;
}

void cart_evolve(cart_state *s, const cart_event *e)
{
	int i;

	switch (e->kind) {
	case CART_ITEM_ADDED:
		evolve_added(s, e);
		break;
	case CART_QUANTITY_CHANGED:
		if ((i = line_index(s, e->line.product_id)) >= 0)
			s->lines[i].quantity = e->line.quantity;
		break;
	case CART_ITEM_REMOVED:
		evolve_removed(s, e->line.product_id);
		break;
	case CART_CLEARED:
		empty_lines(s);
		break;
	case CART_CHECKED_OUT_EVENT:
		evolve_checked_out(s, e);
		break;
	}
}

KIND_NAMES(cart, verdict_codes, command_shapes, event_shapes);

/* ---- payload codecs ---- */

/* The string buffer of field in f and its size, or NULL for an integer. */
static char *string_of(payload_fields *f, unsigned field, size_t *cap)
{
	if (field == FIELD_PRODUCT_ID)
		return *cap = sizeof f->line.product_id, f->line.product_id;
	if (field == FIELD_NAME)
		return *cap = sizeof f->line.name, f->line.name;
	if (field == FIELD_CURRENCY)
		return *cap = sizeof f->currency, f->currency;
	if (field == FIELD_ORDER_ID)
		return *cap = sizeof f->order_id, f->order_id;
	return NULL;
}

static int64_t *integer_of(payload_fields *f, unsigned field)
{
	if (field == FIELD_PRICE)
		return &f->line.unit_price_cents;
	if (field == FIELD_QUANTITY)
		return &f->line.quantity;
	if (field == FIELD_PLACED_FROM)
		return &f->placed_from;
	return &f->added;
}

/* True if the checkout lines of f can be written: few enough, ids terminated. */
static bool checkout_encodable(const payload_fields *f)
{
	bool ok = f->checkout_count <= CART_LINES_MAX;

	for (size_t i = 0; ok && i < f->checkout_count; i++)
		ok = strnlen(f->checkout[i].product_id, CART_ID_MAX) < CART_ID_MAX;
	return ok;
}

static void encode_checkout(mp_writer *w, const payload_fields *f)
{
	mp_write_array(w, (uint32_t)f->checkout_count);
	for (size_t i = 0; i < f->checkout_count; i++) {
		mp_write_map(w, 2);
		mp_write_cstr(w, LINE_KEY_PRODUCT_ID);
		mp_write_cstr(w, f->checkout[i].product_id);
		mp_write_cstr(w, LINE_KEY_QUANTITY);
		mp_write_int(w, f->checkout[i].quantity);
	}
}

static orn_rc encode_fields(mp_writer *w, const payload_shape *shape, payload_fields *f)
{
	uint32_t count = 0;
	size_t cap = 0;
	char *s;
	unsigned fields = shape->fields | (f->placed_from != 0 ? shape->optional & FIELD_PLACED_FROM : 0);

	for (size_t i = 0; i < ORN_ARRAY_LEN(field_keys); i++) {
		if ((fields & (1u << i)) == 0)
			continue;
		count++;
		if ((s = string_of(f, 1u << i, &cap)) != NULL && strnlen(s, cap) == cap)
			return ORN_EINVAL;
	}
	if ((fields & FIELD_LINES) != 0 && !checkout_encodable(f))
		return ORN_EINVAL;
	mp_write_map(w, count);
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_keys); i++) {
		if ((fields & (1u << i)) == 0)
			continue;
		mp_write_cstr(w, field_keys[i]);
		if ((1u << i) == FIELD_LINES)
			encode_checkout(w, f);
		else if ((s = string_of(f, 1u << i, &cap)) != NULL)
			mp_write_cstr(w, s);
		else
			mp_write_int(w, *integer_of(f, 1u << i));
	}
	return mp_writer_status(w);
}

/* Decodes one checkout line: a map holding product_id and quantity exactly
 * once (other keys are skipped). */
static orn_rc decode_checkout_line(mp_reader *r, cart_checkout_line *out)
{
	bool seen_id = false, seen_quantity = false;
	const char *key;
	uint32_t count, len;
	orn_rc rc;

	if ((rc = mp_read_map(r, &count)) != ORN_OK)
		return rc;
	for (uint32_t i = 0; i < count; i++) {
		if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
			return rc;
		if (mp_str_eq(key, len, LINE_KEY_PRODUCT_ID)) {
			if (seen_id)
				return ORN_EDECODE;
			seen_id = true;
			rc = mp_read_cstr(r, out->product_id, sizeof out->product_id);
		} else if (mp_str_eq(key, len, LINE_KEY_QUANTITY)) {
			if (seen_quantity)
				return ORN_EDECODE;
			seen_quantity = true;
			rc = mp_read_int(r, &out->quantity);
		} else {
			rc = mp_skip(r);
		}
		if (rc != ORN_OK)
			return rc;
	}
	return seen_id && seen_quantity ? ORN_OK : ORN_EDECODE;
}

/* Decodes the checkout lines: an array of at most CART_LINES_MAX lines. */
static orn_rc decode_checkout(mp_reader *r, payload_fields *out)
{
	uint32_t count;
	orn_rc rc;

	if ((rc = mp_read_array(r, &count)) != ORN_OK)
		return rc;
	if (count > CART_LINES_MAX)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++)
		if ((rc = decode_checkout_line(r, &out->checkout[i])) != ORN_OK)
			return rc;
	out->checkout_count = count;
	return ORN_OK;
}

static orn_rc decode_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out_)
{
	payload_fields *out = out_;
	const char *key;
	uint32_t len;
	unsigned field = 0;
	size_t cap = 0;
	char *s;
	orn_rc rc;

	if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
		return rc;
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_keys); i++)
		if (mp_str_eq(key, len, field_keys[i]))
			field = (1u << i) & fields;
	if ((*seen & field) != 0)
		return ORN_EDECODE;
	*seen |= field;
	if (field == 0)
		return mp_skip(r);
	if (field == FIELD_LINES)
		return decode_checkout(r, out);
	if ((s = string_of(out, field, &cap)) != NULL)
		return mp_read_cstr(r, s, cap);
	return mp_read_int(r, integer_of(out, field));
}

orn_rc cart_command_encode(mp_writer *w, const cart_command *c)
{
	payload_fields f = {.line = c->line};

	if (cart_command_type(c->kind) == NULL)
		return ORN_EINVAL;
	memcpy(f.currency, c->currency, sizeof f.currency);
	memcpy(f.order_id, c->order_id, sizeof f.order_id);
	memcpy(f.checkout, c->checkout, sizeof f.checkout);
	f.checkout_count = c->checkout_count;
	f.placed_from = c->placed_from;
	return encode_fields(w, &command_shapes[c->kind], &f);
}

orn_rc cart_command_decode(const char *type, const uint8_t *payload, size_t len, cart_command *out)
{
	int shape = KIND_TYPE_INDEX(command_shapes, type);
	payload_fields f;
	orn_rc rc;

	if (shape < 0)
		return ORN_EINVAL;
	if ((rc = kind_decode_map_optional(payload, len, command_shapes[shape].fields,
	                                   command_shapes[shape].optional, decode_entry, &f, sizeof f,
	                                   NULL)) != ORN_OK)
		return rc;
	if (f.placed_from < 0)
		return ORN_EDECODE;
	memset(out, 0, sizeof *out);
	out->kind = (cart_command_kind)shape;
	out->placed_from = f.placed_from;
	out->line = f.line;
	memcpy(out->currency, f.currency, sizeof out->currency);
	memcpy(out->order_id, f.order_id, sizeof out->order_id);
	memcpy(out->checkout, f.checkout, sizeof out->checkout);
	out->checkout_count = f.checkout_count;
	return ORN_OK;
}

orn_rc cart_event_encode(mp_writer *w, const cart_event *e)
{
	payload_fields f = {.line = e->line, .added = e->added};

	if (cart_event_type(e->kind) == NULL)
		return ORN_EINVAL;
	memcpy(f.currency, e->currency, sizeof f.currency);
	memcpy(f.order_id, e->order_id, sizeof f.order_id);
	memcpy(f.checkout, e->checkout, sizeof f.checkout);
	f.checkout_count = e->checkout_count;
	f.placed_from = e->placed_from;
	return encode_fields(w, &event_shapes[e->kind], &f);
}

/* True if an event of kind with these fields is one decide can emit. */
static bool event_valid(cart_event_kind kind, const payload_fields *f)
{
	switch (kind) {
	case CART_ITEM_ADDED:
		return line_valid(&f->line) && f->added >= 1 && f->added <= f->line.quantity &&
		       currency_valid(f->currency);
	case CART_QUANTITY_CHANGED:
		return id_valid(f->line.product_id) && quantity_valid(f->line.quantity, 1);
	case CART_ITEM_REMOVED:
		return id_valid(f->line.product_id);
	case CART_CHECKED_OUT_EVENT:
		return id_valid(f->order_id) && checkout_lines_valid(f->checkout, f->checkout_count) &&
		       f->placed_from >= 0;
	default:
		return true;
	}
}

orn_rc cart_event_decode(const char *type, const uint8_t *payload, size_t len, cart_event *out)
{
	int shape = KIND_TYPE_INDEX(event_shapes, type);
	payload_fields f;
	orn_rc rc;

	if (shape < 0)
		return ORN_EINVAL;
	if ((rc = kind_decode_map_optional(payload, len, event_shapes[shape].fields,
	                                   event_shapes[shape].optional, decode_entry, &f, sizeof f, NULL)) !=
	    ORN_OK)
		return rc;
	if (!event_valid((cart_event_kind)shape, &f))
		return ORN_EDECODE;
	memset(out, 0, sizeof *out);
	out->kind = (cart_event_kind)shape;
	out->placed_from = f.placed_from;
	out->line = f.line;
	out->added = f.added;
	memcpy(out->currency, f.currency, sizeof out->currency);
	memcpy(out->order_id, f.order_id, sizeof out->order_id);
	memcpy(out->checkout, f.checkout, sizeof out->checkout);
	out->checkout_count = f.checkout_count;
	return ORN_OK;
}

/* ---- snapshot, restore, view ---- */

/* Writes [type, payload] for one event. */
static orn_rc write_event(mp_writer *w, const cart_event *e)
{
	mp_write_array(w, 2);
	mp_write_cstr(w, cart_event_type(e->kind));
	return cart_event_encode(w, e);
}

/* Snapshot: [[type, payload], ...], a checkout with no lines per order
 * remembered, the earlier ones oldest first, then the last (on an empty cart
 * each only sets the last order), then one ItemAdded per line, in line order. */
static orn_rc cart_snapshot(const void *state, mp_writer *w)
{
	const cart_state *s = state;
	size_t orders = s->last_order_id[0] != '\0' ? s->earlier_count + 1 : 0;
	cart_event e;
	orn_rc rc = ORN_OK;

	mp_write_array(w, (uint32_t)(s->line_count + orders));
	for (size_t i = 0; rc == ORN_OK && i < orders; i++) {
		e = (cart_event){.kind = CART_CHECKED_OUT_EVENT};
		memcpy(e.order_id, i < s->earlier_count ? s->earlier_orders[i] : s->last_order_id,
		       sizeof e.order_id);
		if (i + 1 == orders)
			e.placed_from = s->checked_out_through; /* the watermark rides on the last */
		rc = write_event(w, &e);
	}
	for (size_t i = 0; rc == ORN_OK && i < s->line_count; i++) {
		e = (cart_event){.kind = CART_ITEM_ADDED, .line = s->lines[i], .added = s->lines[i].quantity};
		memcpy(e.currency, s->currency, sizeof e.currency);
		rc = write_event(w, &e);
	}
	return rc == ORN_OK ? mp_writer_status(w) : rc;
}

/* Restores by replaying the snapshot's events into a fresh state, which is
 * copied in only when whole. Only leading CartCheckedOut events without lines
 * (at most CART_ORDERS_REMEMBERED, distinct) and ItemAdded events that each
 * add a new line (added == quantity) are accepted, so a snapshot has one form
 * per state. A schema 2 snapshot (one order remembered) is of that form. */
static orn_rc cart_restore(void *state, const uint8_t *buf, size_t len)
{
	char type[32];
	cart_state *fresh = calloc(1, sizeof *fresh);
	const uint8_t *payload;
	size_t payload_len, lines;
	uint32_t count, pair;
	cart_event e;
	mp_reader r;
	orn_rc rc = ORN_ENOMEM;

	if (fresh == NULL)
		goto fail;
	mp_reader_init(&r, buf, len);
	if ((rc = mp_read_array(&r, &count)) != ORN_OK)
		goto fail;
	for (uint32_t i = 0; i < count; i++) {
		if ((rc = mp_read_array(&r, &pair)) != ORN_OK || pair != 2 ||
		    (rc = mp_read_cstr(&r, type, sizeof type)) != ORN_OK ||
		    (rc = mp_read_raw(&r, &payload, &payload_len)) != ORN_OK ||
		    (rc = cart_event_decode(type, payload, payload_len, &e)) != ORN_OK ||
		    (e.kind != CART_ITEM_ADDED &&
		     (e.kind != CART_CHECKED_OUT_EVENT || fresh->line_count != 0 ||
		      i >= CART_ORDERS_REMEMBERED || e.checkout_count != 0 ||
		      remembers_order(fresh, e.order_id))) ||
		    (e.kind == CART_ITEM_ADDED && e.added != e.line.quantity)) {
			rc = ORN_EDECODE;
			goto fail;
		}
		lines = fresh->line_count;
		cart_evolve(fresh, &e);
		if (e.kind == CART_ITEM_ADDED && fresh->line_count == lines) {
			rc = ORN_EDECODE;
			goto fail;
		}
	}
	if (mp_reader_remaining(&r) != 0) {
		rc = ORN_EDECODE;
		goto fail;
	}
	memcpy(state, fresh, sizeof *fresh);
fail:
	free(fresh);
	return rc == ORN_OK || rc == ORN_ENOMEM ? rc : ORN_EDECODE;
}

/* View: {items:[{product_id, name, unit_price_cents, quantity,
 * line_total_cents}], total_cents, currency, last_order_id}. */
static orn_rc cart_view(const void *state, mp_writer *w)
{
	const cart_state *s = state;
	int64_t line_total = 0, total = 0;

	/* decide's bounds make the totals fit; a state that breaks them is a bug */
	if (!cart_total(s, &total))
		return ORN_EINTERNAL;
	mp_write_map(w, 4);
	mp_write_cstr(w, "items");
	mp_write_array(w, (uint32_t)s->line_count);
	for (size_t i = 0; i < s->line_count; i++) {
		const cart_line *line = &s->lines[i];
		(void)cart_line_total(line->unit_price_cents, line->quantity, &line_total);
		mp_write_map(w, 5);
		mp_write_cstr(w, "product_id");
		mp_write_cstr(w, line->product_id);
		mp_write_cstr(w, "name");
		mp_write_cstr(w, line->name);
		mp_write_cstr(w, "unit_price_cents");
		mp_write_int(w, line->unit_price_cents);
		mp_write_cstr(w, "quantity");
		mp_write_int(w, line->quantity);
		mp_write_cstr(w, "line_total_cents");
		mp_write_int(w, line_total);
	}
	mp_write_cstr(w, "total_cents");
	mp_write_int(w, total);
	mp_write_cstr(w, "currency");
	mp_write_cstr(w, s->currency[0] != '\0' ? s->currency : NULL);
	mp_write_cstr(w, "last_order_id");
	mp_write_cstr(w, s->last_order_id[0] != '\0' ? s->last_order_id : NULL);
	return mp_writer_status(w);
}

/* ---- the kind table ---- */

static void describe_rejection(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	const cart_state *s = state;
	const cart_command *c = command;

	if (verdict == CART_REJ_NOT_FOUND)
		snprintf(detail, cap, "product %s is not in the cart", c->line.product_id);
	else if (verdict == CART_REJ_TOO_MANY_LINES)
		snprintf(detail, cap, "a cart holds at most %d lines", CART_LINES_MAX);
	else if (verdict == CART_REJ_CURRENCY_MISMATCH)
		snprintf(detail, cap, "the cart is in %s, the item in %s", s->currency, c->currency);
	else
		snprintf(detail, cap,
		         "ids are 1..64 characters of [A-Za-z0-9_-], names 1..200 bytes of text, prices "
		         "0..%lld, currencies 3 uppercase letters, line quantities 1..%d, a checkout "
		         "1..%d lines of distinct products",
		         CART_PRICE_MAX, CART_QUANTITY_MAX, CART_LINES_MAX);
}

/* cart_kind_decide and cart_kind_evolve: the adapter every aggregate shares (kind.h). */
KIND_ADAPTER(cart, PAYLOAD_SCHEMA, describe_rejection, cart_kind_apply);

const act_kind cart_kind = {
        KIND_MEMBERS(cart, CART_AGGREGATE, CART_SNAPSHOT_SCHEMA),
        .snapshot = cart_snapshot,
        .restore = cart_restore,
        .view = cart_view,
        .copyable = true,
};
