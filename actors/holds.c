/* holds.c — the holds aggregate (see holds.h): the pure decider, the msgpack
 * codecs of its commands and events, and the kind table the actor runtime
 * serves. Its snapshot is its history: one OrderOpened per open order. */
#include "holds.h"
#include "kind.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAYLOAD_SCHEMA 1

enum field {
	FIELD_ORDER_ID = 1u << 0,
	FIELD_LINES = 1u << 1,
	FIELD_UNTIL = 1u << 2,
	FIELD_NOW = 1u << 3,
	FIELD_AT = 1u << 4,
	FIELD_MAX_OPEN = 1u << 5,
	FIELD_MAX_UNITS = 1u << 6,
};

static const char *const field_keys[] = {"order_id", "lines",    "until_ms", "now_ms",
                                         "at_ms",    "max_open", "max_units"};

typedef struct payload_shape {
	const char *type;
	unsigned fields;
} payload_shape;

static const payload_shape command_shapes[] = {
        [HOLDS_OPEN] = {HOLDS_CMD_OPEN, FIELD_ORDER_ID | FIELD_LINES | FIELD_UNTIL | FIELD_NOW |
                                                FIELD_MAX_OPEN | FIELD_MAX_UNITS},
        [HOLDS_CLOSE] = {HOLDS_CMD_CLOSE, FIELD_ORDER_ID},
};

static const payload_shape event_shapes[] = {
        [HOLDS_OPENED] = {HOLDS_EV_OPENED, FIELD_ORDER_ID | FIELD_LINES | FIELD_UNTIL | FIELD_AT},
        [HOLDS_CLOSED] = {HOLDS_EV_CLOSED, FIELD_ORDER_ID},
};

static const char *const verdict_codes[] = {
        [HOLDS_OK] = "",
        [HOLDS_REJ_INVALID] = "invalid",
        [HOLDS_REJ_TOO_MANY_OPEN_ORDERS] = "too_many_open_orders",
        [HOLDS_REJ_TOO_MANY_UNITS] = "too_many_units",
};

/* The fields of any payload. */
typedef struct payload_fields {
	char order_id[HOLDS_ID_MAX];
	holds_line lines[HOLDS_LINES_MAX];
	size_t line_count;
	int64_t until_ms, now_ms, max_open, max_units;
} payload_fields;

/* ---- validation ---- */

static bool id_valid(const char *id)
{
	return strnlen(id, HOLDS_ID_MAX) < HOLDS_ID_MAX && orn_id_valid(id);
}

static bool time_valid(int64_t ms)
{
	return ms >= 0 && ms <= HOLDS_TIME_MAX;
}

static bool lines_valid(const holds_line *lines, size_t count)
{
	if (count == 0 || count > HOLDS_LINES_MAX)
		return false;
	for (size_t i = 0; i < count; i++) {
		if (!id_valid(lines[i].product_id) || lines[i].quantity < 1 ||
		    lines[i].quantity > HOLDS_QUANTITY_MAX)
			return false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(lines[i].product_id, lines[j].product_id) == 0)
				return false;
	}
	return true;
}

static bool open_valid(const holds_command *c)
{
	return id_valid(c->order_id) && lines_valid(c->lines, c->line_count) && time_valid(c->now_ms) &&
	       time_valid(c->until_ms) && c->until_ms > c->now_ms && c->max_open >= 1 &&
	       c->max_open <= HOLDS_ORDERS_MAX && c->max_units >= 1 && c->max_units <= HOLDS_UNITS_LIMIT_MAX;
}

/* ---- state ---- */

void holds_state_init(holds_state *s)
{
	memset(s, 0, sizeof *s);
}

static int order_index(const holds_state *s, const char *order_id)
{
	for (size_t i = 0; i < s->order_count; i++)
		if (strcmp(s->orders[i].order_id, order_id) == 0)
			return (int)i;
	return -1;
}

size_t holds_open_orders(const holds_state *s, int64_t now_ms)
{
	size_t n = 0;
	for (size_t i = 0; i < s->order_count; i++)
		n += s->orders[i].until_ms > now_ms;
	return n;
}

int64_t holds_units(const holds_state *s, const char *product_id, int64_t now_ms)
{
	int64_t units = 0;
	for (size_t i = 0; i < s->order_count; i++) {
		const holds_order *o = &s->orders[i];
		for (size_t k = o->first; o->until_ms > now_ms && k < o->first + o->count; k++)
			if (strcmp(s->entries[k].product_id, product_id) == 0)
				units += s->entries[k].quantity;
	}
	return units;
}

/* Entries the orders still counting at now_ms use. */
static size_t live_entries(const holds_state *s, int64_t now_ms)
{
	size_t n = 0;
	for (size_t i = 0; i < s->order_count; i++)
		n += s->orders[i].until_ms > now_ms ? s->orders[i].count : 0;
	return n;
}

/* Removes order i and its entries. */
static void remove_order(holds_state *s, size_t i)
{
	holds_order gone = s->orders[i];
	memmove(&s->entries[gone.first], &s->entries[gone.first + gone.count],
	        (s->entry_count - gone.first - gone.count) * sizeof s->entries[0]);
	s->entry_count -= gone.count;
	memmove(&s->orders[i], &s->orders[i + 1], (s->order_count - i - 1) * sizeof s->orders[0]);
	s->order_count--;
	for (size_t k = 0; k < s->order_count; k++)
		if (s->orders[k].first > gone.first)
			s->orders[k].first -= gone.count;
}

/* ---- decide and evolve ---- */

static holds_event *emit(holds_events *out, holds_event_kind kind, const char *order_id)
{
	assert(out->count < HOLDS_MAX_EVENTS);
	holds_event *e = &out->items[out->count++];
	memset(e, 0, sizeof *e);
	e->kind = kind;
	strcpy(e->order_id, order_id);
	return e;
}

static holds_verdict decide_open(const holds_state *s, const holds_command *c, holds_events *out)
{
	if (!open_valid(c))
		return HOLDS_REJ_INVALID;
	if (order_index(s, c->order_id) >= 0)
		return HOLDS_OK; /* open already: placed again (a retry) */
	if ((int64_t)holds_open_orders(s, c->now_ms) >= c->max_open)
		return HOLDS_REJ_TOO_MANY_OPEN_ORDERS;
	if (live_entries(s, c->now_ms) + c->line_count > HOLDS_ENTRIES_MAX)
		return HOLDS_REJ_TOO_MANY_UNITS;
	for (size_t i = 0; i < c->line_count; i++)
		if (holds_units(s, c->lines[i].product_id, c->now_ms) + c->lines[i].quantity > c->max_units)
			return HOLDS_REJ_TOO_MANY_UNITS;
	holds_event *e = emit(out, HOLDS_OPENED, c->order_id);
	memcpy(e->lines, c->lines, c->line_count * sizeof c->lines[0]);
	e->line_count = c->line_count;
	e->until_ms = c->until_ms;
	e->at_ms = c->now_ms;
	return HOLDS_OK;
}

holds_verdict holds_decide(const holds_state *s, const holds_command *c, holds_events *out)
{
	out->count = 0;
	if (c->kind == HOLDS_OPEN)
		return decide_open(s, c, out);
	if (c->kind != HOLDS_CLOSE || !id_valid(c->order_id))
		return HOLDS_REJ_INVALID;
	if (order_index(s, c->order_id) >= 0)
		emit(out, HOLDS_CLOSED, c->order_id);
	return HOLDS_OK;
}

void holds_evolve(holds_state *s, const holds_event *e)
{
	int i = order_index(s, e->order_id);
	if (e->kind == HOLDS_CLOSED) {
		if (i >= 0)
			remove_order(s, (size_t)i);
		return;
	}
	if (i >= 0 || e->line_count == 0 || e->line_count > HOLDS_LINES_MAX)
		return;
	for (size_t k = s->order_count; k-- > 0;) /* room: what stopped counting goes */
		if (s->orders[k].until_ms <= e->at_ms)
			remove_order(s, k);
	if (s->order_count == HOLDS_ORDERS_MAX || s->entry_count + e->line_count > HOLDS_ENTRIES_MAX)
		return;
	holds_order *o = &s->orders[s->order_count++];
	memset(o, 0, sizeof *o);
	strcpy(o->order_id, e->order_id);
	o->until_ms = e->until_ms;
	o->first = s->entry_count;
	o->count = e->line_count;
	memcpy(&s->entries[s->entry_count], e->lines, e->line_count * sizeof e->lines[0]);
	s->entry_count += e->line_count;
}

KIND_NAMES(holds, verdict_codes, command_shapes, event_shapes);

/* ---- payload codecs ---- */

static int64_t *integer_of(payload_fields *f, unsigned field)
{
	switch (field) {
	case FIELD_UNTIL:
		return &f->until_ms;
	case FIELD_MAX_OPEN:
		return &f->max_open;
	case FIELD_MAX_UNITS:
		return &f->max_units;
	default:
		return &f->now_ms; /* now_ms (commands) and at_ms (events) */
	}
}

static orn_rc encode_fields(mp_writer *w, unsigned fields, payload_fields *f)
{
	uint32_t count = 0;
	if (strnlen(f->order_id, HOLDS_ID_MAX) == HOLDS_ID_MAX || f->line_count > HOLDS_LINES_MAX)
		return ORN_EINVAL;
	for (size_t i = 0; i < f->line_count; i++)
		if (strnlen(f->lines[i].product_id, HOLDS_ID_MAX) == HOLDS_ID_MAX)
			return ORN_EINVAL;
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_keys); i++)
		count += (fields & (1u << i)) != 0;
	mp_write_map(w, count);
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_keys); i++) {
		unsigned field = 1u << i;
		if ((fields & field) == 0)
			continue;
		mp_write_cstr(w, field_keys[i]);
		if (field == FIELD_ORDER_ID) {
			mp_write_cstr(w, f->order_id);
		} else if (field == FIELD_LINES) {
			mp_write_array(w, (uint32_t)f->line_count);
			for (size_t k = 0; k < f->line_count; k++) {
				mp_write_map(w, 2);
				mp_write_cstr(w, "product_id");
				mp_write_cstr(w, f->lines[k].product_id);
				mp_write_cstr(w, "quantity");
				mp_write_int(w, f->lines[k].quantity);
			}
		} else {
			mp_write_int(w, *integer_of(f, field));
		}
	}
	return mp_writer_status(w);
}

/* One line {product_id, quantity}, both exactly once; other keys skipped. */
static orn_rc decode_line(mp_reader *r, holds_line *out)
{
	uint32_t count, len;
	const char *key;
	unsigned seen = 0;
	orn_rc rc = mp_read_map(r, &count);
	for (uint32_t i = 0; rc == ORN_OK && i < count; i++) {
		if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
			break;
		unsigned bit = mp_str_eq(key, len, "product_id") ? 1
		               : mp_str_eq(key, len, "quantity") ? 2
		                                                 : 0;
		if (seen & bit)
			return ORN_EDECODE;
		seen |= bit;
		rc = bit == 1   ? mp_read_cstr(r, out->product_id, sizeof out->product_id)
		     : bit == 2 ? mp_read_int(r, &out->quantity)
		                : mp_skip(r);
	}
	return rc == ORN_OK && seen == 3 ? ORN_OK : ORN_EDECODE;
}

static orn_rc decode_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out_)
{
	payload_fields *out = out_;
	const char *key;
	uint32_t len, count;
	unsigned field = 0;
	orn_rc rc = mp_read_str(r, &key, &len);
	if (rc != ORN_OK)
		return rc;
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_keys); i++)
		if (mp_str_eq(key, len, field_keys[i]))
			field = (1u << i) & fields;
	if ((*seen & field) != 0)
		return ORN_EDECODE;
	*seen |= field;
	if (field == 0)
		return mp_skip(r);
	if (field == FIELD_ORDER_ID)
		return mp_read_cstr(r, out->order_id, sizeof out->order_id);
	if (field != FIELD_LINES)
		return mp_read_int(r, integer_of(out, field));
	if ((rc = mp_read_array(r, &count)) != ORN_OK || count > HOLDS_LINES_MAX)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++)
		if ((rc = decode_line(r, &out->lines[i])) != ORN_OK)
			return rc;
	out->line_count = count;
	return ORN_OK;
}

orn_rc holds_command_encode(mp_writer *w, const holds_command *c)
{
	payload_fields f = {.line_count = c->line_count,
	                    .until_ms = c->until_ms,
	                    .now_ms = c->now_ms,
	                    .max_open = c->max_open,
	                    .max_units = c->max_units};
	if (holds_command_type(c->kind) == NULL)
		return ORN_EINVAL;
	memcpy(f.order_id, c->order_id, sizeof f.order_id);
	memcpy(f.lines, c->lines, sizeof f.lines);
	return encode_fields(w, command_shapes[c->kind].fields, &f);
}

orn_rc holds_command_decode(const char *type, const uint8_t *payload, size_t len, holds_command *out)
{
	int shape = KIND_TYPE_INDEX(command_shapes, type);
	payload_fields f;
	orn_rc rc;
	if (shape < 0)
		return ORN_EINVAL;
	if ((rc = kind_decode_map(payload, len, command_shapes[shape].fields, decode_entry, &f, sizeof f)) !=
	    ORN_OK)
		return rc;
	memset(out, 0, sizeof *out);
	out->kind = (holds_command_kind)shape;
	memcpy(out->order_id, f.order_id, sizeof out->order_id);
	memcpy(out->lines, f.lines, sizeof out->lines);
	out->line_count = f.line_count;
	out->until_ms = f.until_ms;
	out->now_ms = f.now_ms;
	out->max_open = f.max_open;
	out->max_units = f.max_units;
	return ORN_OK;
}

orn_rc holds_event_encode(mp_writer *w, const holds_event *e)
{
	payload_fields f = {.line_count = e->line_count, .until_ms = e->until_ms, .now_ms = e->at_ms};
	if (holds_event_type(e->kind) == NULL)
		return ORN_EINVAL;
	memcpy(f.order_id, e->order_id, sizeof f.order_id);
	memcpy(f.lines, e->lines, sizeof f.lines);
	return encode_fields(w, event_shapes[e->kind].fields, &f);
}

orn_rc holds_event_decode(const char *type, const uint8_t *payload, size_t len, holds_event *out)
{
	int shape = KIND_TYPE_INDEX(event_shapes, type);
	payload_fields f;
	orn_rc rc;
	if (shape < 0)
		return ORN_EINVAL;
	if ((rc = kind_decode_map(payload, len, event_shapes[shape].fields, decode_entry, &f, sizeof f)) !=
	    ORN_OK)
		return rc;
	if (!id_valid(f.order_id) ||
	    (shape == HOLDS_OPENED &&
	     (!lines_valid(f.lines, f.line_count) || !time_valid(f.until_ms) || !time_valid(f.now_ms))))
		return ORN_EDECODE;
	memset(out, 0, sizeof *out);
	out->kind = (holds_event_kind)shape;
	memcpy(out->order_id, f.order_id, sizeof out->order_id);
	memcpy(out->lines, f.lines, sizeof out->lines);
	out->line_count = f.line_count;
	out->until_ms = f.until_ms;
	out->at_ms = f.now_ms;
	return ORN_OK;
}

/* ---- snapshot, restore, view ---- */

/* Snapshot: [[type, payload], ...], one OrderOpened per open order (at 0:
 * nothing is dropped while restoring). */
static orn_rc holds_snapshot(const void *state, mp_writer *w)
{
	const holds_state *s = state;
	holds_event *e = malloc(sizeof *e);
	orn_rc rc = e != NULL ? ORN_OK : ORN_ENOMEM;
	mp_write_array(w, (uint32_t)s->order_count);
	for (size_t i = 0; rc == ORN_OK && i < s->order_count; i++) {
		const holds_order *o = &s->orders[i];
		memset(e, 0, sizeof *e);
		e->kind = HOLDS_OPENED;
		strcpy(e->order_id, o->order_id);
		memcpy(e->lines, &s->entries[o->first], o->count * sizeof e->lines[0]);
		e->line_count = o->count;
		e->until_ms = o->until_ms;
		mp_write_array(w, 2);
		mp_write_cstr(w, HOLDS_EV_OPENED);
		rc = holds_event_encode(w, e);
	}
	free(e);
	return rc == ORN_OK ? mp_writer_status(w) : rc;
}

/* View: {open: [{order_id, until_ms, lines}]}. */
static orn_rc holds_view(const void *state, mp_writer *w)
{
	const holds_state *s = state;
	mp_write_map(w, 1);
	mp_write_cstr(w, "open");
	mp_write_array(w, (uint32_t)s->order_count);
	for (size_t i = 0; i < s->order_count; i++) {
		const holds_order *o = &s->orders[i];
		mp_write_map(w, 3);
		mp_write_cstr(w, "order_id");
		mp_write_cstr(w, o->order_id);
		mp_write_cstr(w, "until_ms");
		mp_write_int(w, o->until_ms);
		mp_write_cstr(w, "lines");
		mp_write_array(w, (uint32_t)o->count);
		for (size_t k = o->first; k < o->first + o->count; k++) {
			mp_write_map(w, 2);
			mp_write_cstr(w, "product_id");
			mp_write_cstr(w, s->entries[k].product_id);
			mp_write_cstr(w, "quantity");
			mp_write_int(w, s->entries[k].quantity);
		}
	}
	return mp_writer_status(w);
}

/* ---- the kind table ---- */

static void describe_rejection(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	const holds_state *s = state;
	const holds_command *c = command;
	if (verdict == HOLDS_REJ_TOO_MANY_OPEN_ORDERS) {
		snprintf(detail, cap, "at most %lld unpaid orders at once (ORION_MAX_OPEN_ORDERS)",
		         (long long)c->max_open);
		return;
	}
	if (verdict != HOLDS_REJ_TOO_MANY_UNITS) {
		snprintf(detail, cap, "the order cannot be opened: a field is out of bounds");
		return;
	}
	for (size_t i = 0; i < c->line_count; i++) {
		int64_t held = holds_units(s, c->lines[i].product_id, c->now_ms);
		if (held + c->lines[i].quantity > c->max_units) {
			snprintf(detail, cap,
			         "at most %lld units of product %s across unpaid orders "
			         "(ORION_MAX_UNITS_PER_PRODUCT): %lld held already",
			         (long long)c->max_units, c->lines[i].product_id, (long long)held);
			return;
		}
	}
	snprintf(detail, cap, "too many lines held across unpaid orders (at most %d)", HOLDS_ENTRIES_MAX);
}

/* kind_restore_history's apply: an OrderOpened that is listed afterwards. */
static bool restore_event(void *state, const void *event)
{
	holds_state *s = state;
	const holds_event *e = event;
	size_t before = s->order_count;
	holds_evolve(s, e);
	return e->kind == HOLDS_OPENED && s->order_count == before + 1;
}

KIND_ADAPTER(holds, PAYLOAD_SCHEMA, describe_rejection, holds_kind_apply);

static orn_rc holds_restore(void *state, const uint8_t *buf, size_t len)
{
	return kind_restore_history(&holds_codec, sizeof(holds_state), restore_event, state, buf, len);
}

const act_kind holds_kind = {
        KIND_MEMBERS(holds, HOLDS_AGGREGATE, HOLDS_SNAPSHOT_SCHEMA),
        .snapshot = holds_snapshot,
        .restore = holds_restore,
        .view = holds_view,
};
