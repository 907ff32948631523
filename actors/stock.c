/* stock.c — the stock item aggregate: a pure decider (decide, evolve), the
 * msgpack codecs of its command and event payloads, and the kind table the
 * actor runtime serves.
 *
 * Nothing here does I/O or reads a clock; the only globals are const tables.
 * Maps and the closed-ids ring are allocated on first need, so an empty state
 * costs nothing and stock_state_init cannot fail. The ring grows by doubling
 * up to STOCK_CLOSED_MEMORY entries: most items close few reservations, and a
 * full ring costs 160 KiB per cached item.
 *
 * evolve trusts the state over the event where the two could disagree (a
 * release frees the quantity the state holds, not the one the event names),
 * so replaying any stream keeps reserved == sum of held quantities, and it
 * ignores events that break the payload contract instead of asserting. */
#include "stock.h"
#include "kind.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version of every command and event payload written and accepted here. */
#define PAYLOAD_SCHEMA 1
/* Entries of the closed-ids ring at its first allocation. */
#define RING_MIN_CAPACITY 8
/* Values stored in closed_index (values may not be NULL): how an id closed. */
#define CLOSED_RELEASED  ((void *)(intptr_t)1)
#define CLOSED_COMMITTED ((void *)(intptr_t)2)
#define CLOSED_RETURNED  ((void *)(intptr_t)3) /* committed, then its units returned */

/* The keys a payload may carry, as bits of a set. */
enum payload_field {
	FIELD_RESERVATION_ID = 1u << 0,
	FIELD_QUANTITY = 1u << 1,
	FIELD_DELTA = 1u << 2,
	FIELD_REASON = 1u << 3,
	FIELD_ON_HAND = 1u << 4,
	FIELD_RESERVED = 1u << 5,
	FIELD_THRESHOLD = 1u << 6,
	FIELD_AVAILABLE = 1u << 7,
	/* the levels after an event, optional in the events stored before them */
	FIELD_LEVELS = FIELD_ON_HAND | FIELD_RESERVED | FIELD_THRESHOLD,
};

static const struct {
	const char *key;
	unsigned field;
} field_keys[] = {
        {"reservation_id", FIELD_RESERVATION_ID},
        {"quantity", FIELD_QUANTITY},
        {"delta", FIELD_DELTA},
        {"reason", FIELD_REASON},
        {"on_hand", FIELD_ON_HAND},
        {"reserved", FIELD_RESERVED},
        {"threshold", FIELD_THRESHOLD},
        {"available", FIELD_AVAILABLE},
};

/* One payload shape: the type name, the keys it always carries, and the keys
 * it may carry (added after payloads without them were stored). */
typedef struct payload_shape {
	const char *type;
	unsigned fields;
	unsigned optional;
} payload_shape;

static const payload_shape command_shapes[] = {
        [STOCK_CREATE] = {STOCK_CMD_CREATE, FIELD_QUANTITY, FIELD_THRESHOLD},
        [STOCK_RESERVE] = {STOCK_CMD_RESERVE, FIELD_RESERVATION_ID | FIELD_QUANTITY},
        [STOCK_RELEASE] = {STOCK_CMD_RELEASE, FIELD_RESERVATION_ID},
        [STOCK_COMMIT] = {STOCK_CMD_COMMIT, FIELD_RESERVATION_ID},
        [STOCK_ADJUST] = {STOCK_CMD_ADJUST, FIELD_DELTA | FIELD_REASON},
        [STOCK_SET_THRESHOLD] = {STOCK_CMD_THRESHOLD, FIELD_THRESHOLD},
        [STOCK_RETURN] = {STOCK_CMD_RETURN, FIELD_RESERVATION_ID | FIELD_QUANTITY},
};

static const payload_shape event_shapes[] = {
        [STOCK_CREATED] = {STOCK_EV_CREATED, FIELD_QUANTITY, FIELD_LEVELS},
        [STOCK_RESERVED] = {STOCK_EV_RESERVED, FIELD_RESERVATION_ID | FIELD_QUANTITY, FIELD_LEVELS},
        [STOCK_RELEASED] = {STOCK_EV_RELEASED, FIELD_RESERVATION_ID | FIELD_QUANTITY, FIELD_LEVELS},
        [STOCK_COMMITTED] = {STOCK_EV_COMMITTED, FIELD_RESERVATION_ID | FIELD_QUANTITY, FIELD_LEVELS},
        [STOCK_ADJUSTED] = {STOCK_EV_ADJUSTED, FIELD_DELTA | FIELD_ON_HAND | FIELD_REASON,
                            FIELD_RESERVED | FIELD_THRESHOLD},
        [STOCK_THRESHOLD_SET] = {STOCK_EV_THRESHOLD, FIELD_LEVELS, 0},
        [STOCK_LOW_DETECTED] = {STOCK_EV_LOW, FIELD_LEVELS | FIELD_AVAILABLE, 0},
        [STOCK_LOW_CLEARED] = {STOCK_EV_LOW_CLEAR, FIELD_LEVELS | FIELD_AVAILABLE, 0},
        /* written with levels from the start: they are required */
        [STOCK_RETURNED] = {STOCK_EV_RETURNED, FIELD_RESERVATION_ID | FIELD_QUANTITY | FIELD_LEVELS, 0},
};

static const char *const verdict_codes[] = {
        [STOCK_OK] = "",
        [STOCK_REJ_NOT_FOUND] = "not_found",
        [STOCK_REJ_EXISTS] = "exists",
        [STOCK_REJ_INVALID] = "invalid",
        [STOCK_REJ_OUT_OF_STOCK] = "out_of_stock",
        [STOCK_REJ_MISMATCH] = "reservation_mismatch",
        [STOCK_REJ_CLOSED] = "reservation_closed",
        [STOCK_REJ_UNKNOWN_RESERVATION] = "unknown_reservation",
        [STOCK_REJ_BELOW_RESERVED] = "below_reserved",
        [STOCK_REJ_NOT_COMMITTED] = "not_committed",
};

/* The fields of any command or event payload, decoded or to encode. */
typedef struct payload_fields {
	char reservation_id[STOCK_RESERVATION_ID_MAX];
	int64_t quantity;
	int64_t delta;
	int64_t on_hand;
	char reason[STOCK_REASON_MAX];
	int64_t reserved;
	int64_t threshold;
	int64_t available;
} payload_fields;

/* ---- validation ---- */

/* True if id is 1..STOCK_RESERVATION_ID_MAX-1 printable ASCII bytes. */
static bool reservation_id_valid(const char *id)
{
	size_t len = strnlen(id, STOCK_RESERVATION_ID_MAX);
	bool valid = len > 0 && len < STOCK_RESERVATION_ID_MAX;

	for (size_t i = 0; valid && i < len; i++)
		valid = (unsigned char)id[i] >= 0x20 && (unsigned char)id[i] <= 0x7e;
	return valid;
}

/* True if reason is non-empty and NUL-terminated within its buffer. */
static bool reason_valid(const char *reason)
{
	size_t len = strnlen(reason, STOCK_REASON_MAX);

	return len > 0 && len < STOCK_REASON_MAX;
}

static bool quantity_in_range(int64_t quantity, int64_t minimum)
{
	return quantity >= minimum && quantity <= STOCK_QUANTITY_MAX;
}

static bool delta_in_range(int64_t delta)
{
	return delta != 0 && delta >= -STOCK_QUANTITY_MAX && delta <= STOCK_QUANTITY_MAX;
}

/* a + b clamped to the int64 range: stream data never causes overflow. */
static int64_t saturating_add(int64_t a, int64_t b)
{
	if (b > 0 && a > INT64_MAX - b)
		return INT64_MAX;
	if (b < 0 && a < INT64_MIN - b)
		return INT64_MIN;
	return a + b;
}

/* ---- state ---- */

orn_rc stock_state_init(stock_state *s)
{
	memset(s, 0, sizeof *s);
	return ORN_OK;
}

void stock_state_dispose(stock_state *s)
{
	hmap_destroy(s->held);
	hmap_destroy(s->closed_index);
	free(s->closed);
	memset(s, 0, sizeof *s);
}

int64_t stock_available(const stock_state *s)
{
	int64_t available = saturating_add(s->on_hand, -s->reserved);

	return available > 0 ? available : 0;
}

bool stock_is_low(const stock_state *s)
{
	return stock_available(s) < s->threshold;
}

bool stock_low_only_reserved(int64_t on_hand, int64_t available, int64_t threshold)
{
	return available < threshold && on_hand >= threshold;
}

int64_t stock_held(const stock_state *s, const char *reservation_id)
{
	if (s->held == NULL)
		return 0;
	return (int64_t)(intptr_t)hmap_get(s->held, reservation_id);
}

/* How reservation_id closed (CLOSED_RELEASED or CLOSED_COMMITTED), or NULL if
 * it is not in the memory of recently closed ids. */
static void *closed_how(const stock_state *s, const char *reservation_id)
{
	return s->closed_index != NULL ? hmap_get(s->closed_index, reservation_id) : NULL;
}

/* True if reservation_id is in the memory of recently closed ids. */
static bool closed_contains(const stock_state *s, const char *reservation_id)
{
	return closed_how(s, reservation_id) != NULL;
}

/* Entries allocated for a ring holding count ids (0 when none). */
static size_t ring_capacity(size_t count)
{
	size_t capacity = RING_MIN_CAPACITY;

	if (count == 0)
		return 0;
	while (capacity < count)
		capacity *= 2;
	return capacity < STOCK_CLOSED_MEMORY ? capacity : STOCK_CLOSED_MEMORY;
}

/* Makes room for the slot at closed_next; leaves s unchanged on ENOMEM. */
static orn_rc ring_make_room(stock_state *s)
{
	orn_rc rc = ORN_OK;
	void *grown;

	if (s->closed_count < STOCK_CLOSED_MEMORY && ring_capacity(s->closed_count) <= s->closed_count) {
		grown = realloc(s->closed, ring_capacity(s->closed_count + 1) * sizeof *s->closed);
		if (grown != NULL)
			s->closed = grown;
		else
			rc = ORN_ENOMEM;
	}
	return rc;
}

/* Adds a valid id to the closed memory, forgetting the oldest when full. An id
 * already remembered keeps its place. Leaves s unchanged on ENOMEM. */
static orn_rc remember_closed(stock_state *s, const char *reservation_id, void *how)
{
	orn_rc rc = ORN_OK;
	char *slot;

	if (closed_contains(s, reservation_id))
		goto fail;
	if (s->closed_index == NULL && (s->closed_index = hmap_create()) == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	if ((rc = ring_make_room(s)) != ORN_OK)
		goto fail;
	if ((rc = hmap_put(s->closed_index, reservation_id, how)) != ORN_OK)
		goto fail;
	slot = s->closed[s->closed_next];
	if (s->closed_count == STOCK_CLOSED_MEMORY)
		hmap_remove(s->closed_index, slot);
	else
		s->closed_count++;
	strcpy(slot, reservation_id);
	s->closed_next = (s->closed_next + 1) % STOCK_CLOSED_MEMORY;
fail:
	return rc;
}

/* ---- decide ---- */

/* Appends an event of kind to out and returns it, zeroed but for the kind. */
static stock_event *emit(stock_events *out, stock_event_kind kind)
{
	stock_event *e;

	assert(out->count < STOCK_MAX_EVENTS);
	e = &out->items[out->count++];
	memset(e, 0, sizeof *e);
	e->kind = kind;
	return e;
}

/* The levels of an item after a decision. */
typedef struct levels {
	int64_t on_hand;
	int64_t reserved;
	int64_t threshold;
} levels;

static levels levels_of(const stock_state *s)
{
	return (levels){s->on_hand, s->reserved, s->threshold};
}

static int64_t levels_available(levels l)
{
	int64_t available = saturating_add(l.on_hand, -l.reserved);

	return available > 0 ? available : 0;
}

/* Appends an event of kind carrying the levels after it. */
static stock_event *emit_levels(stock_events *out, stock_event_kind kind, levels after)
{
	stock_event *e = emit(out, kind);

	e->has_levels = true;
	e->on_hand = after.on_hand;
	e->reserved = after.reserved;
	e->threshold = after.threshold;
	return e;
}

/* Appends LowStockDetected when the levels after are low and the item is not
 * (yet) marked low, LowStockCleared in the opposite case: one of each per
 * crossing, whatever caused it. */
static void emit_crossing(const stock_state *s, stock_events *out, levels after)
{
	bool low = levels_available(after) < after.threshold;

	if (low != s->low)
		emit_levels(out, low ? STOCK_LOW_DETECTED : STOCK_LOW_CLEARED, after)->available =
		        levels_available(after);
}

/* Emits a reservation event (reserved, released, committed) with the levels
 * after it, and the crossing it causes. */
static void emit_reservation(const stock_state *s, stock_events *out, stock_event_kind kind,
                             const char *reservation_id, int64_t quantity, levels after)
{
	stock_event *e = emit_levels(out, kind, after);

	strcpy(e->reservation_id, reservation_id);
	e->quantity = quantity;
	emit_crossing(s, out, after);
}

static stock_verdict decide_create(const stock_state *s, const stock_command *c, stock_events *out)
{
	stock_verdict verdict = STOCK_OK;

	levels after = {c->quantity, 0, c->threshold};

	if (s->exists)
		verdict = STOCK_REJ_EXISTS;
	else if (!quantity_in_range(c->quantity, 0) || !quantity_in_range(c->threshold, 0))
		verdict = STOCK_REJ_INVALID;
	else {
		emit_levels(out, STOCK_CREATED, after)->quantity = c->quantity;
		emit_crossing(s, out, after);
	}
	return verdict;
}

static stock_verdict decide_reserve(const stock_state *s, const stock_command *c, stock_events *out)
{
	stock_verdict verdict = STOCK_OK;
	levels after = levels_of(s);
	int64_t held;

	if (!reservation_id_valid(c->reservation_id) || !quantity_in_range(c->quantity, 1))
		verdict = STOCK_REJ_INVALID;
	else if ((held = stock_held(s, c->reservation_id)) != 0)
		verdict = held == c->quantity ? STOCK_OK : STOCK_REJ_MISMATCH;
	else if (closed_contains(s, c->reservation_id))
		verdict = STOCK_REJ_CLOSED;
	else if (c->quantity > stock_available(s))
		verdict = STOCK_REJ_OUT_OF_STOCK;
	else {
		after.reserved += c->quantity;
		emit_reservation(s, out, STOCK_RESERVED, c->reservation_id, c->quantity, after);
	}
	return verdict;
}

static stock_verdict decide_release(const stock_state *s, const stock_command *c, stock_events *out)
{
	stock_verdict verdict = STOCK_OK;
	int64_t held;

	if (!reservation_id_valid(c->reservation_id))
		verdict = STOCK_REJ_INVALID;
	else if ((held = stock_held(s, c->reservation_id)) != 0)
		emit_reservation(s, out, STOCK_RELEASED, c->reservation_id, held,
		                 (levels){s->on_hand, s->reserved - held, s->threshold});
	return verdict;
}

static stock_verdict decide_commit(const stock_state *s, const stock_command *c, stock_events *out)
{
	stock_verdict verdict = STOCK_OK;
	int64_t held;

	if (!reservation_id_valid(c->reservation_id))
		verdict = STOCK_REJ_INVALID;
	else if ((held = stock_held(s, c->reservation_id)) != 0)
		emit_reservation(s, out, STOCK_COMMITTED, c->reservation_id, held,
		                 (levels){s->on_hand - held, s->reserved - held, s->threshold});
	else if (closed_how(s, c->reservation_id) == CLOSED_RELEASED)
		verdict = STOCK_REJ_CLOSED; /* released stock cannot be sold any more */
	else if (!closed_contains(s, c->reservation_id))
		verdict = STOCK_REJ_UNKNOWN_RESERVATION;
	return verdict;
}

/* Returns the sold units of a committed reservation once (see stock.h). */
static stock_verdict decide_return(const stock_state *s, const stock_command *c, stock_events *out)
{
	stock_verdict verdict = STOCK_OK;
	void *how = NULL;

	if (!reservation_id_valid(c->reservation_id) || !quantity_in_range(c->quantity, 1))
		verdict = STOCK_REJ_INVALID;
	else if (stock_held(s, c->reservation_id) != 0)
		verdict = STOCK_REJ_NOT_COMMITTED;
	else if ((how = closed_how(s, c->reservation_id)) == CLOSED_RETURNED)
		verdict = STOCK_OK; /* returned already */
	else if (how == CLOSED_RELEASED)
		verdict = STOCK_REJ_CLOSED; /* released: nothing was sold */
	else if (how == NULL)
		verdict = STOCK_REJ_UNKNOWN_RESERVATION; /* never committed, or forgotten */
	else if (c->quantity > s->sold || s->on_hand > STOCK_QUANTITY_MAX - c->quantity)
		verdict = STOCK_REJ_INVALID;
	else
		emit_reservation(s, out, STOCK_RETURNED, c->reservation_id, c->quantity,
		                 (levels){s->on_hand + c->quantity, s->reserved, s->threshold});
	return verdict;
}

/* Adjusting keeps on hand within 0..STOCK_QUANTITY_MAX and above reserved. */
static stock_verdict decide_adjust(const stock_state *s, const stock_command *c, stock_events *out)
{
	stock_verdict verdict = STOCK_OK;
	int64_t after = 0;
	stock_event *e;

	if (!delta_in_range(c->delta) || !reason_valid(c->reason))
		verdict = STOCK_REJ_INVALID;
	else if ((after = saturating_add(s->on_hand, c->delta)) < 0 || after < s->reserved)
		verdict = STOCK_REJ_BELOW_RESERVED;
	else if (after > STOCK_QUANTITY_MAX)
		verdict = STOCK_REJ_INVALID;
	if (verdict == STOCK_OK) {
		e = emit_levels(out, STOCK_ADJUSTED, (levels){after, s->reserved, s->threshold});
		e->delta = c->delta;
		strcpy(e->reason, c->reason);
		emit_crossing(s, out, (levels){after, s->reserved, s->threshold});
	}
	return verdict;
}

/* Setting the threshold it already has changes nothing (no event). */
static stock_verdict decide_set_threshold(const stock_state *s, const stock_command *c, stock_events *out)
{
	stock_verdict verdict = STOCK_OK;
	levels after = {s->on_hand, s->reserved, c->threshold};

	if (!quantity_in_range(c->threshold, 0))
		verdict = STOCK_REJ_INVALID;
	else if (c->threshold != s->threshold) {
		emit_levels(out, STOCK_THRESHOLD_SET, after);
		emit_crossing(s, out, after);
	}
	return verdict;
}

stock_verdict stock_decide(const stock_state *s, const stock_command *c, stock_events *out)
{
	stock_verdict verdict = STOCK_REJ_INVALID;

	out->count = 0;
	if (c->kind == STOCK_CREATE)
		verdict = decide_create(s, c, out);
	else if (!s->exists)
		verdict = STOCK_REJ_NOT_FOUND;
	else if (c->kind == STOCK_RESERVE)
		verdict = decide_reserve(s, c, out);
	else if (c->kind == STOCK_RELEASE)
		verdict = decide_release(s, c, out);
	else if (c->kind == STOCK_COMMIT)
		verdict = decide_commit(s, c, out);
	else if (c->kind == STOCK_ADJUST)
		verdict = decide_adjust(s, c, out);
	else if (c->kind == STOCK_SET_THRESHOLD)
		verdict = decide_set_threshold(s, c, out);
	else if (c->kind == STOCK_RETURN)
		verdict = decide_return(s, c, out);
	return verdict;
}

/* ---- evolve ---- */

/* Holds e's quantity for its id (replacing what a malformed stream held). */
static orn_rc apply_reserved(stock_state *s, const stock_event *e)
{
	orn_rc rc = ORN_OK;
	int64_t previous;

	if (!reservation_id_valid(e->reservation_id) || !quantity_in_range(e->quantity, 1))
		goto fail;
	if (s->held == NULL && (s->held = hmap_create()) == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	previous = stock_held(s, e->reservation_id);
	if ((rc = hmap_put(s->held, e->reservation_id, (void *)(intptr_t)e->quantity)) != ORN_OK)
		goto fail;
	s->reserved = saturating_add(s->reserved, e->quantity - previous);
fail:
	return rc;
}

/* Closes a reservation: frees what the state holds for it and remembers the
 * id; a commit also moves the units from on hand to sold. */
static orn_rc apply_closed(stock_state *s, const stock_event *e, bool committed)
{
	orn_rc rc = ORN_OK;
	int64_t quantity = 0;

	if (!reservation_id_valid(e->reservation_id))
		goto fail;
	if ((rc = remember_closed(s, e->reservation_id, committed ? CLOSED_COMMITTED : CLOSED_RELEASED)) !=
	    ORN_OK)
		goto fail;
	if (s->held != NULL)
		quantity = (int64_t)(intptr_t)hmap_remove(s->held, e->reservation_id);
	s->reserved = saturating_add(s->reserved, -quantity);
	if (committed) {
		s->on_hand = saturating_add(s->on_hand, -quantity);
		s->sold = saturating_add(s->sold, quantity);
	}
fail:
	return rc;
}

/* Returns a committed reservation's units to on hand and marks the id
 * returned, in its place in the ring; anything else (an id not committed in
 * the state's memory) changes nothing: the state decides, not the event. */
static void apply_returned(stock_state *s, const stock_event *e)
{
	if (!reservation_id_valid(e->reservation_id) || !quantity_in_range(e->quantity, 1) ||
	    closed_how(s, e->reservation_id) != CLOSED_COMMITTED)
		return;
	/* replacing the value of a present key does not allocate */
	(void)hmap_put(s->closed_index, e->reservation_id, CLOSED_RETURNED);
	s->on_hand = saturating_add(s->on_hand, e->quantity);
	s->sold = saturating_add(s->sold, -e->quantity);
}

orn_rc stock_evolve(stock_state *s, const stock_event *e)
{
	orn_rc rc = ORN_OK;

	switch (e->kind) {
	case STOCK_CREATED:
		s->exists = true;
		s->on_hand = e->quantity;
		s->threshold = e->threshold; /* 0 in events stored before thresholds */
		break;
	case STOCK_RESERVED:
		rc = apply_reserved(s, e);
		break;
	case STOCK_RELEASED:
		rc = apply_closed(s, e, false);
		break;
	case STOCK_COMMITTED:
		rc = apply_closed(s, e, true);
		break;
	case STOCK_ADJUSTED:
		s->on_hand = saturating_add(s->on_hand, e->delta);
		break;
	case STOCK_THRESHOLD_SET:
		s->threshold = e->threshold;
		break;
	case STOCK_LOW_DETECTED:
		s->low = true;
		break;
	case STOCK_LOW_CLEARED:
		s->low = false;
		break;
	case STOCK_RETURNED:
		apply_returned(s, e);
		break;
	}
	return rc;
}

/* ---- payload codecs ---- */

KIND_NAMES(stock, verdict_codes, command_shapes, event_shapes);

/* Writes the map of the listed fields of f. ORN_EINVAL if a string does not
 * fit its buffer; else the writer's status. */
static orn_rc encode_fields(mp_writer *w, unsigned fields, const payload_fields *f)
{
	bool id_unterminated =
	        strnlen(f->reservation_id, sizeof f->reservation_id) == sizeof f->reservation_id;
	bool reason_unterminated = strnlen(f->reason, sizeof f->reason) == sizeof f->reason;
	uint32_t count = 0;
	orn_rc rc = ORN_EINVAL;

	if (((fields & FIELD_RESERVATION_ID) && id_unterminated) ||
	    ((fields & FIELD_REASON) && reason_unterminated))
		goto fail;
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_keys); i++)
		count += (fields & field_keys[i].field) != 0;
	mp_write_map(w, count);
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_keys); i++) {
		unsigned field = fields & field_keys[i].field;

		if (field != 0)
			mp_write_cstr(w, field_keys[i].key);
		if (field == FIELD_RESERVATION_ID)
			mp_write_cstr(w, f->reservation_id);
		else if (field == FIELD_REASON)
			mp_write_cstr(w, f->reason);
		else if (field == FIELD_QUANTITY)
			mp_write_int(w, f->quantity);
		else if (field == FIELD_DELTA)
			mp_write_int(w, f->delta);
		else if (field == FIELD_ON_HAND)
			mp_write_int(w, f->on_hand);
		else if (field == FIELD_RESERVED)
			mp_write_int(w, f->reserved);
		else if (field == FIELD_THRESHOLD)
			mp_write_int(w, f->threshold);
		else if (field == FIELD_AVAILABLE)
			mp_write_int(w, f->available);
	}
	rc = mp_writer_status(w);
fail:
	return rc;
}

/* Field bit of a key (0 for a key no payload uses). */
static unsigned field_of_key(const char *key, uint32_t len)
{
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_keys); i++)
		if (mp_str_eq(key, len, field_keys[i].key))
			return field_keys[i].field;
	return 0;
}

/* Reads one key/value pair; a key not in fields is skipped, a repeated one
 * rejected. *seen collects the fields read. */
static orn_rc decode_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out_)
{
	payload_fields *out = out_;
	const char *key;
	uint32_t len;
	unsigned field;
	orn_rc rc;

	if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
		goto fail;
	field = field_of_key(key, len) & fields;
	if ((*seen & field) != 0) {
		rc = ORN_EDECODE;
		goto fail;
	}
	*seen |= field;
	if (field == 0)
		rc = mp_skip(r);
	else if (field == FIELD_RESERVATION_ID)
		rc = mp_read_cstr(r, out->reservation_id, sizeof out->reservation_id);
	else if (field == FIELD_REASON)
		rc = mp_read_cstr(r, out->reason, sizeof out->reason);
	else if (field == FIELD_QUANTITY)
		rc = mp_read_int(r, &out->quantity);
	else if (field == FIELD_DELTA)
		rc = mp_read_int(r, &out->delta);
	else if (field == FIELD_ON_HAND)
		rc = mp_read_int(r, &out->on_hand);
	else if (field == FIELD_RESERVED)
		rc = mp_read_int(r, &out->reserved);
	else if (field == FIELD_THRESHOLD)
		rc = mp_read_int(r, &out->threshold);
	else
		rc = mp_read_int(r, &out->available);
fail:
	return rc;
}

orn_rc stock_command_encode(mp_writer *w, const stock_command *c)
{
	payload_fields f = {.quantity = c->quantity, .delta = c->delta, .threshold = c->threshold};

	if ((size_t)c->kind >= ORN_ARRAY_LEN(command_shapes))
		return ORN_EINVAL;
	memcpy(f.reservation_id, c->reservation_id, sizeof f.reservation_id);
	memcpy(f.reason, c->reason, sizeof f.reason);
	return encode_fields(w, command_shapes[c->kind].fields | command_shapes[c->kind].optional, &f);
}

orn_rc stock_command_decode(const char *type, const uint8_t *payload, size_t len, stock_command *out)
{
	int shape = KIND_TYPE_INDEX(command_shapes, type);
	payload_fields f;
	orn_rc rc = ORN_EINVAL;

	if (shape < 0)
		goto fail;
	if ((rc = kind_decode_map_optional(payload, len, command_shapes[shape].fields,
	                                   command_shapes[shape].optional, decode_entry, &f, sizeof f,
	                                   NULL)) != ORN_OK)
		goto fail;
	memset(out, 0, sizeof *out);
	out->kind = (stock_command_kind)shape;
	out->threshold = f.threshold;
	memcpy(out->reservation_id, f.reservation_id, sizeof out->reservation_id);
	out->quantity = f.quantity;
	out->delta = f.delta;
	memcpy(out->reason, f.reason, sizeof out->reason);
fail:
	return rc;
}

orn_rc stock_event_encode(mp_writer *w, const stock_event *e)
{
	payload_fields f = {.quantity = e->quantity,
	                    .delta = e->delta,
	                    .on_hand = e->on_hand,
	                    .reserved = e->reserved,
	                    .threshold = e->threshold,
	                    .available = e->available};

	if ((size_t)e->kind >= ORN_ARRAY_LEN(event_shapes))
		return ORN_EINVAL;
	memcpy(f.reservation_id, e->reservation_id, sizeof f.reservation_id);
	memcpy(f.reason, e->reason, sizeof f.reason);
	return encode_fields(
	        w, event_shapes[e->kind].fields | (e->has_levels ? event_shapes[e->kind].optional : 0), &f);
}

/* True if the decoded fields of an event of kind are ones decide can emit;
 * fields are the ones the payload holds. */
static bool event_fields_valid(stock_event_kind kind, unsigned fields, const payload_fields *f)
{
	if ((fields & FIELD_RESERVATION_ID) && !reservation_id_valid(f->reservation_id))
		return false;
	if ((fields & FIELD_QUANTITY) && !quantity_in_range(f->quantity, kind == STOCK_CREATED ? 0 : 1))
		return false;
	if ((fields & FIELD_DELTA) && !delta_in_range(f->delta))
		return false;
	if ((fields & FIELD_ON_HAND) && !quantity_in_range(f->on_hand, 0))
		return false;
	if ((fields & FIELD_RESERVED) && !quantity_in_range(f->reserved, 0))
		return false;
	if ((fields & FIELD_THRESHOLD) && !quantity_in_range(f->threshold, 0))
		return false;
	if ((fields & FIELD_AVAILABLE) && !quantity_in_range(f->available, 0))
		return false;
	return (fields & FIELD_REASON) == 0 || f->reason[0] != '\0';
}

orn_rc stock_event_decode(const char *type, const uint8_t *payload, size_t len, stock_event *out)
{
	int shape = KIND_TYPE_INDEX(event_shapes, type);
	payload_fields f;
	unsigned seen = 0;
	orn_rc rc = ORN_EINVAL;

	if (shape < 0)
		goto fail;
	if ((rc = kind_decode_map_optional(payload, len, event_shapes[shape].fields,
	                                   event_shapes[shape].optional, decode_entry, &f, sizeof f,
	                                   &seen)) != ORN_OK)
		goto fail;
	if (!event_fields_valid((stock_event_kind)shape, seen, &f)) {
		rc = ORN_EDECODE;
		goto fail;
	}
	memset(out, 0, sizeof *out);
	out->kind = (stock_event_kind)shape;
	memcpy(out->reservation_id, f.reservation_id, sizeof out->reservation_id);
	out->quantity = f.quantity;
	out->delta = f.delta;
	out->on_hand = f.on_hand;
	memcpy(out->reason, f.reason, sizeof out->reason);
	out->has_levels = (seen & FIELD_LEVELS) == FIELD_LEVELS;
	out->reserved = f.reserved;
	out->threshold = f.threshold;
	out->available = f.available;
fail:
	return rc;
}

/* ---- snapshot and restore ---- */

/* One held reservation, for writing them sorted by id. */
typedef struct held_entry {
	const char *reservation_id;
	int64_t quantity;
} held_entry;

static int held_entry_compare(const void *a, const void *b)
{
	return strcmp(((const held_entry *)a)->reservation_id, ((const held_entry *)b)->reservation_id);
}

/* Writes the held map sorted by id, so equal states give equal bytes. */
static orn_rc write_held(const stock_state *s, mp_writer *w)
{
	size_t count = s->held != NULL ? hmap_count(s->held) : 0;
	held_entry *entries = NULL;
	size_t cursor = 0, i = 0;
	const char *key;
	void *value;
	orn_rc rc = ORN_OK;

	if (count > 0 && (entries = malloc(count * sizeof *entries)) == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	while (i < count && hmap_next(s->held, &cursor, &key, &value))
		entries[i++] = (held_entry){key, (int64_t)(intptr_t)value};
	if (count > 0)
		qsort(entries, count, sizeof *entries, held_entry_compare);
	mp_write_map(w, (uint32_t)count);
	for (i = 0; i < count; i++) {
		mp_write_cstr(w, entries[i].reservation_id);
		mp_write_int(w, entries[i].quantity);
	}
fail:
	free(entries);
	return rc;
}

/* Snapshot: a map {exists, on_hand, reserved, sold, held: {id: quantity},
 * closed: [[id, committed], oldest first], threshold, low, returned: [id]}
 * (returned, schema 4: the committed ids of closed whose units came back). */
static orn_rc stock_snapshot(const void *state, mp_writer *w)
{
	const stock_state *s = state;
	size_t oldest = s->closed_count < STOCK_CLOSED_MEMORY ? 0 : s->closed_next;
	size_t returned = 0;
	orn_rc rc;

	for (size_t i = 0; i < s->closed_count; i++)
		returned += closed_how(s, s->closed[i]) == CLOSED_RETURNED;
	mp_write_map(w, 9);
	mp_write_cstr(w, "exists");
	mp_write_bool(w, s->exists);
	mp_write_cstr(w, "on_hand");
	mp_write_int(w, s->on_hand);
	mp_write_cstr(w, "reserved");
	mp_write_int(w, s->reserved);
	mp_write_cstr(w, "sold");
	mp_write_int(w, s->sold);
	mp_write_cstr(w, "threshold");
	mp_write_int(w, s->threshold);
	mp_write_cstr(w, "low");
	mp_write_bool(w, s->low);
	mp_write_cstr(w, "held");
	if ((rc = write_held(s, w)) != ORN_OK)
		goto fail;
	mp_write_cstr(w, "closed");
	mp_write_array(w, (uint32_t)s->closed_count);
	for (size_t i = 0; i < s->closed_count; i++) {
		const char *id = s->closed[(oldest + i) % STOCK_CLOSED_MEMORY];
		mp_write_array(w, 2);
		mp_write_cstr(w, id);
		mp_write_bool(w, closed_how(s, id) != CLOSED_RELEASED);
	}
	mp_write_cstr(w, "returned");
	mp_write_array(w, (uint32_t)returned);
	for (size_t i = 0; i < s->closed_count; i++) {
		const char *id = s->closed[(oldest + i) % STOCK_CLOSED_MEMORY];
		if (closed_how(s, id) == CLOSED_RETURNED)
			mp_write_cstr(w, id);
	}
	rc = mp_writer_status(w);
fail:
	return rc;
}

/* Reads the snapshot's held map into s (empty); checks ids, quantities, and
 * that no id repeats. */
static orn_rc read_held(mp_reader *r, stock_state *s)
{
	char id[STOCK_RESERVATION_ID_MAX];
	uint32_t count;
	int64_t quantity;
	orn_rc rc;

	if ((rc = mp_read_map(r, &count)) != ORN_OK)
		goto fail;
	for (uint32_t i = 0; i < count; i++) {
		if ((rc = mp_read_cstr(r, id, sizeof id)) != ORN_OK ||
		    (rc = mp_read_int(r, &quantity)) != ORN_OK)
			goto fail;
		if (!reservation_id_valid(id) || !quantity_in_range(quantity, 1) || stock_held(s, id) != 0) {
			rc = ORN_EDECODE;
			goto fail;
		}
		if (s->held == NULL && (s->held = hmap_create()) == NULL) {
			rc = ORN_ENOMEM;
			goto fail;
		}
		if ((rc = hmap_put(s->held, id, (void *)(intptr_t)quantity)) != ORN_OK)
			goto fail;
	}
fail:
	return rc == ORN_ETOOBIG ? ORN_EDECODE : rc;
}

/* Reads the snapshot's closed ids (oldest first) into s's empty ring. */
static orn_rc read_closed(mp_reader *r, stock_state *s)
{
	char id[STOCK_RESERVATION_ID_MAX];
	uint32_t count;
	orn_rc rc;

	if ((rc = mp_read_array(r, &count)) != ORN_OK)
		goto fail;
	if (count > STOCK_CLOSED_MEMORY) {
		rc = ORN_EDECODE;
		goto fail;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint32_t pair = 0;
		bool committed = false;
		if ((rc = mp_read_array(r, &pair)) != ORN_OK)
			goto fail;
		if (pair != 2) {
			rc = ORN_EDECODE;
			goto fail;
		}
		if ((rc = mp_read_cstr(r, id, sizeof id)) != ORN_OK ||
		    (rc = mp_read_bool(r, &committed)) != ORN_OK)
			goto fail;
		if (!reservation_id_valid(id) || closed_contains(s, id)) {
			rc = ORN_EDECODE;
			goto fail;
		}
		if ((rc = remember_closed(s, id, committed ? CLOSED_COMMITTED : CLOSED_RELEASED)) != ORN_OK)
			goto fail;
	}
fail:
	return rc == ORN_ETOOBIG ? ORN_EDECODE : rc;
}

/* Reads the snapshot's returned ids: each must be a committed id of the
 * closed ring read before it (closed precedes returned in the map). */
static orn_rc read_returned(mp_reader *r, stock_state *s)
{
	char id[STOCK_RESERVATION_ID_MAX];
	uint32_t count;
	orn_rc rc;

	if ((rc = mp_read_array(r, &count)) != ORN_OK)
		goto fail;
	for (uint32_t i = 0; i < count; i++) {
		if ((rc = mp_read_cstr(r, id, sizeof id)) != ORN_OK)
			goto fail;
		if (closed_how(s, id) != CLOSED_COMMITTED) {
			rc = ORN_EDECODE;
			goto fail;
		}
		(void)hmap_put(s->closed_index, id, CLOSED_RETURNED); /* present: no allocation */
	}
fail:
	return rc == ORN_ETOOBIG ? ORN_EDECODE : rc;
}

/* Snapshot keys, as bits of the set of keys read. */
enum snapshot_key {
	KEY_EXISTS = 1u << 0,
	KEY_ON_HAND = 1u << 1,
	KEY_RESERVED = 1u << 2,
	KEY_SOLD = 1u << 3,
	KEY_HELD = 1u << 4,
	KEY_CLOSED = 1u << 5,
	KEY_THRESHOLD = 1u << 6,
	KEY_LOW = 1u << 7,
	KEY_RETURNED = 1u << 8,  /* optional: snapshots before schema 4 have none */
	KEY_ALL = (1u << 8) - 1, /* the required keys */
};

/* Reads one snapshot key/value pair into s; unknown keys are skipped. */
static orn_rc read_snapshot_entry(mp_reader *r, void *state, unsigned *seen)
{
	stock_state *s = state;
	static const char *const keys[] = {"exists", "on_hand",   "reserved", "sold",    "held",
	                                   "closed", "threshold", "low",      "returned"};
	const char *key;
	uint32_t len;
	unsigned bit = 0;
	orn_rc rc;

	if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
		goto fail;
	for (size_t i = 0; i < ORN_ARRAY_LEN(keys); i++)
		if (mp_str_eq(key, len, keys[i]))
			bit = 1u << i;
	if ((*seen & bit) != 0) {
		rc = ORN_EDECODE;
		goto fail;
	}
	*seen |= bit;
	if (bit == 0)
		rc = mp_skip(r);
	else if (bit == KEY_EXISTS)
		rc = mp_read_bool(r, &s->exists);
	else if (bit == KEY_ON_HAND)
		rc = mp_read_int(r, &s->on_hand);
	else if (bit == KEY_RESERVED)
		rc = mp_read_int(r, &s->reserved);
	else if (bit == KEY_SOLD)
		rc = mp_read_int(r, &s->sold);
	else if (bit == KEY_HELD)
		rc = read_held(r, s);
	else if (bit == KEY_THRESHOLD)
		rc = mp_read_int(r, &s->threshold);
	else if (bit == KEY_LOW)
		rc = mp_read_bool(r, &s->low);
	else if (bit == KEY_RETURNED)
		rc = (*seen & KEY_CLOSED) != 0 ? read_returned(r, s) : ORN_EDECODE;
	else
		rc = read_closed(r, s);
fail:
	return rc;
}

/* True if reserved equals the sum of the held quantities. */
static bool reserved_matches_held(const stock_state *s)
{
	size_t cursor = 0;
	const char *key;
	void *value;
	int64_t sum = 0;

	while (s->held != NULL && hmap_next(s->held, &cursor, &key, &value))
		sum = saturating_add(sum, (int64_t)(intptr_t)value);
	return sum == s->reserved;
}

/* Whether a state read from a snapshot holds every key, its holds add up and its threshold is in range. */
static bool snapshot_whole(const void *state, unsigned seen)
{
	const stock_state *s = state;

	return (seen & KEY_ALL) == KEY_ALL && reserved_matches_held(s) && quantity_in_range(s->threshold, 0);
}

/* ---- the kind table ---- */

static void stock_kind_dispose(void *state)
{
	stock_state_dispose(state);
}

/* Detail text of a rejection for the reply. */
static void describe_rejection(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	const stock_state *s = state;
	const stock_command *c = command;

	if (verdict == STOCK_REJ_OUT_OF_STOCK)
		snprintf(detail, cap, "requested %" PRId64 ", available %" PRId64, c->quantity,
		         stock_available(s));
	else if (verdict == STOCK_REJ_MISMATCH)
		snprintf(detail, cap, "reservation %s holds %" PRId64 ", requested %" PRId64,
		         c->reservation_id, stock_held(s, c->reservation_id), c->quantity);
	else if (verdict == STOCK_REJ_CLOSED)
		snprintf(detail, cap, "reservation %s was released or committed", c->reservation_id);
	else if (verdict == STOCK_REJ_UNKNOWN_RESERVATION && c->kind == STOCK_RETURN)
		snprintf(detail, cap, "reservation %s is not known as committed", c->reservation_id);
	else if (verdict == STOCK_REJ_UNKNOWN_RESERVATION)
		snprintf(detail, cap, "reservation %s is not held", c->reservation_id);
	else if (verdict == STOCK_REJ_NOT_COMMITTED)
		snprintf(detail, cap, "reservation %s is held, not yet committed", c->reservation_id);
	else if (verdict == STOCK_REJ_BELOW_RESERVED)
		snprintf(detail, cap, "on hand %" PRId64 " %+" PRId64 " would fall below reserved %" PRId64,
		         s->on_hand, c->delta, s->reserved);
	else if (verdict == STOCK_REJ_NOT_FOUND)
		snprintf(detail, cap, "the stock item does not exist");
	else if (verdict == STOCK_REJ_EXISTS)
		snprintf(detail, cap, "the stock item already exists");
	else
		snprintf(detail, cap,
		         "quantities are 1..%lld (create: 0..), delta non-zero within +-%lld with a reason, "
		         "on hand at most %lld, thresholds 0..%lld, reservation ids 1..%d printable ASCII "
		         "characters",
		         STOCK_QUANTITY_MAX, STOCK_QUANTITY_MAX, STOCK_QUANTITY_MAX, STOCK_QUANTITY_MAX,
		         STOCK_RESERVATION_ID_MAX - 1);
}

/* kind_codec.evolve: stock_evolve, which fails only when it runs out of memory. */
static orn_rc apply_event(void *state, const void *event)
{
	return stock_evolve(state, event);
}

/* stock_kind_decide and stock_kind_evolve: the adapter every aggregate shares (kind.h). */
KIND_ADAPTER(stock, PAYLOAD_SCHEMA, describe_rejection, apply_event);

/* View: {exists, on_hand, reserved, available, sold, held: count, threshold, low}. */
static orn_rc stock_view(const void *state, mp_writer *w)
{
	const stock_state *s = state;

	mp_write_map(w, 8);
	mp_write_cstr(w, "exists");
	mp_write_bool(w, s->exists);
	mp_write_cstr(w, "on_hand");
	mp_write_int(w, s->on_hand);
	mp_write_cstr(w, "reserved");
	mp_write_int(w, s->reserved);
	mp_write_cstr(w, "threshold");
	mp_write_int(w, s->threshold);
	mp_write_cstr(w, "low");
	mp_write_bool(w, s->low);
	mp_write_cstr(w, "available");
	mp_write_int(w, stock_available(s));
	mp_write_cstr(w, "sold");
	mp_write_int(w, s->sold);
	mp_write_cstr(w, "held");
	mp_write_uint(w, s->held != NULL ? hmap_count(s->held) : 0);
	return mp_writer_status(w);
}

/* Restores into a fresh state, moved in only when whole (kind.h). */
static orn_rc stock_restore(void *state, const uint8_t *buf, size_t len)
{
	return kind_restore_map(sizeof(stock_state), stock_kind_reset, stock_kind_dispose,
	                        read_snapshot_entry, snapshot_whole, state, buf, len);
}

const act_kind stock_kind = {
        .aggregate = STOCK_AGGREGATE,
        .state_size = sizeof(stock_state),
        .snapshot_schema = STOCK_SNAPSHOT_SCHEMA,
        .init = stock_kind_reset,
        .dispose = stock_kind_dispose,
        .decide = stock_kind_decide,
        .evolve = stock_kind_evolve,
        .snapshot = stock_snapshot,
        .restore = stock_restore,
        .view = stock_view,
};
