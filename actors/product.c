/* product.c — the product aggregate: a pure decider (decide, evolve), the
 * msgpack codecs of its command and event payloads, and the kind table the
 * actor runtime serves.
 *
 * All six fields go through one table (key, bit, offset, bound), so the
 * codecs, the validation and the snapshot read and write the same keys. The
 * state is fixed-size; nothing here allocates but the writer the kind adapter
 * encodes events with. */
#include "product.h"
#include "currency.h"
#include "kind.h"
#include "text.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* Version of every command and event payload written and accepted here. */
#define PAYLOAD_SCHEMA 1
/* Snapshot keys beyond the product fields, as bits of the set of keys read. */
#define SNAPSHOT_EXISTS  (1u << 6)
#define SNAPSHOT_DELETED (1u << 7)
#define SNAPSHOT_ALL     (PRODUCT_FIELDS_ALL | SNAPSHOT_EXISTS | SNAPSHOT_DELETED)

/* The product fields: payload key, bit, value, where it lives in
 * product_fields, its buffer size and the rule a rejection quotes. */
static const kind_field field_table[] = {
        {"sku", PRODUCT_FIELD_SKU, KIND_TEXT, offsetof(product_fields, sku), PRODUCT_SKU_MAX,
         "1..64 characters of [A-Za-z0-9_.-]"},
        {"name", PRODUCT_FIELD_NAME, KIND_TEXT, offsetof(product_fields, name), PRODUCT_NAME_MAX,
         "1..200 bytes of UTF-8 text without control characters"},
        {"description", PRODUCT_FIELD_DESCRIPTION, KIND_TEXT, offsetof(product_fields, description),
         PRODUCT_DESCRIPTION_MAX, "0..4000 bytes of UTF-8 text without control characters but line breaks"},
        {"price_cents", PRODUCT_FIELD_PRICE, KIND_INT, offsetof(product_fields, price_cents), 0,
         "an integer 0..10000000000"},
        {"currency", PRODUCT_FIELD_CURRENCY, KIND_TEXT, offsetof(product_fields, currency),
         PRODUCT_CURRENCY_MAX, "an ISO 4217 code of a currency in circulation (e.g. EUR)"},
        {"category", PRODUCT_FIELD_CATEGORY, KIND_TEXT, offsetof(product_fields, category),
         PRODUCT_CATEGORY_MAX, "1..64 characters of [a-z0-9-]"},
};

static const kind_fields fields_of = {KIND_FIELDS_OF(field_table)};

/* One payload shape: its type name, the product keys it reads, and whether
 * they are optional (update) or all required. */
typedef struct payload_shape {
	const char *type;
	unsigned fields;
	bool optional;
} payload_shape;

static const payload_shape command_shapes[] = {
        [PRODUCT_CREATE] = {PRODUCT_CMD_CREATE, PRODUCT_FIELDS_ALL, false},
        [PRODUCT_UPDATE] = {PRODUCT_CMD_UPDATE, PRODUCT_FIELDS_ALL, true},
        [PRODUCT_DELETE] = {PRODUCT_CMD_DELETE, 0, false},
};

static const payload_shape event_shapes[] = {
        [PRODUCT_CREATED] = {PRODUCT_EV_CREATED, PRODUCT_FIELDS_ALL, false},
        [PRODUCT_UPDATED] = {PRODUCT_EV_UPDATED, PRODUCT_FIELDS_ALL, true},
        [PRODUCT_DELETED] = {PRODUCT_EV_DELETED, 0, false},
};

static const char *const verdict_codes[] = {
        [PRODUCT_OK] = "",
        [PRODUCT_REJ_NOT_FOUND] = "not_found",
        [PRODUCT_REJ_EXISTS] = "exists",
        [PRODUCT_REJ_DELETED] = "deleted",
        [PRODUCT_REJ_INVALID] = "invalid",
        [PRODUCT_REJ_NO_CHANGE] = "no_change",
};

static char *string_at(product_fields *f, size_t i)
{
	return (char *)f + field_table[i].offset;
}

static const char *const_string_at(const product_fields *f, size_t i)
{
	return (const char *)f + field_table[i].offset;
}

/* ---- validation ---- */

/* True if s is min..cap-1 bytes of valid text (see text.h), line breaks
 * included when line_breaks. */
static bool field_text_valid(const char *s, size_t min, size_t cap, bool line_breaks)
{
	size_t len = strnlen(s, cap);
	return len >= min && len < cap &&
	       text_valid(s, len, TEXT_SPACE | (line_breaks ? TEXT_LINE_BREAKS : 0));
}

/* True if s is a slug: 1..64 bytes of [a-z0-9-]. */
static bool category_valid(const char *s)
{
	size_t len = strnlen(s, PRODUCT_CATEGORY_MAX);
	bool valid = len > 0 && len < PRODUCT_CATEGORY_MAX;

	for (size_t i = 0; valid && i < len; i++)
		valid = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-';
	return valid;
}

static bool currency_valid(const char *s)
{
	bool valid = strnlen(s, PRODUCT_CURRENCY_MAX) == 3;

	for (size_t i = 0; valid && i < 3; i++)
		valid = s[i] >= 'A' && s[i] <= 'Z';
	return valid;
}

static bool field_valid(const product_fields *f, unsigned field)
{
	if (field == PRODUCT_FIELD_SKU)
		return sku_valid(f->sku);
	if (field == PRODUCT_FIELD_NAME)
		return field_text_valid(f->name, 1, sizeof f->name, false);
	if (field == PRODUCT_FIELD_DESCRIPTION)
		return field_text_valid(f->description, 0, sizeof f->description, true);
	if (field == PRODUCT_FIELD_PRICE)
		return f->price_cents >= 0 && f->price_cents <= PRODUCT_PRICE_MAX;
	if (field == PRODUCT_FIELD_CURRENCY)
		return currency_valid(f->currency);
	return category_valid(f->category);
}

/* Index in field_table of the first field of mask that is not valid, or -1. */
static int first_invalid(const product_fields *f, unsigned mask)
{
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_table); i++)
		if ((mask & field_table[i].field) != 0 && !field_valid(f, field_table[i].field))
			return (int)i;
	return -1;
}

/* Index in field_table of the first field set in mask (mask != 0). */
static size_t first_field(unsigned mask)
{
	size_t i = 0;

	while ((mask & field_table[i].field) == 0)
		i++;
	return i;
}

bool product_fields_valid(const product_fields *f, unsigned mask)
{
	return first_invalid(f, mask) < 0;
}

const char *product_invalid_field(const product_command *c)
{
	unsigned present = c->present & PRODUCT_FIELDS_ALL;
	const char *field = NULL;
	int invalid;

	if (c->kind == PRODUCT_CREATE && (invalid = first_invalid(&c->fields, PRODUCT_FIELDS_ALL)) >= 0)
		field = field_table[invalid].key;
	else if (c->kind == PRODUCT_CREATE && !currency_valid_iso4217(c->fields.currency))
		field = "currency"; /* decoded events keep the shape check only: the log stays readable */
	else if (c->kind == PRODUCT_UPDATE && present == 0)
		field = "fields";
	else if (c->kind == PRODUCT_UPDATE && (present & ~PRODUCT_FIELDS_MUTABLE) != 0)
		field = field_table[first_field(present & ~PRODUCT_FIELDS_MUTABLE)].key;
	else if (c->kind == PRODUCT_UPDATE && (invalid = first_invalid(&c->fields, present)) >= 0)
		field = field_table[invalid].key;
	return field;
}

/* ---- decide and evolve ---- */

void product_state_init(product_state *s)
{
	memset(s, 0, sizeof *s);
}

/* Appends an event of kind to out and returns it, zeroed but for the kind. */
static product_event *emit(product_events *out, product_event_kind kind)
{
	product_event *e;

	assert(out->count < PRODUCT_MAX_EVENTS);
	e = &out->items[out->count++];
	memset(e, 0, sizeof *e);
	e->kind = kind;
	return e;
}

/* Copies the fields of mask from src to dst. */
static void copy_fields(product_fields *dst, const product_fields *src, unsigned mask)
{
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_table); i++) {
		if ((mask & field_table[i].field) == 0)
			continue;
		if (field_table[i].value == KIND_INT)
			dst->price_cents = src->price_cents;
		else
			strcpy(string_at(dst, i), const_string_at(src, i));
	}
}

/* The fields of mask whose value differs between a and b. */
static unsigned changed_fields(const product_fields *a, const product_fields *b, unsigned mask)
{
	unsigned changed = 0;

	for (size_t i = 0; i < ORN_ARRAY_LEN(field_table); i++) {
		bool differs = field_table[i].value == KIND_INT
		                       ? a->price_cents != b->price_cents
		                       : strcmp(const_string_at(a, i), const_string_at(b, i)) != 0;
		if ((mask & field_table[i].field) != 0 && differs)
			changed |= field_table[i].field;
	}
	return changed;
}

static product_verdict decide_create(const product_state *s, const product_command *c, product_events *out)
{
	product_verdict verdict = PRODUCT_OK;
	product_event *e;

	if (s->exists) {
		verdict = PRODUCT_REJ_EXISTS;
	} else if (product_invalid_field(c) != NULL) {
		verdict = PRODUCT_REJ_INVALID;
	} else {
		e = emit(out, PRODUCT_CREATED);
		e->present = PRODUCT_FIELDS_ALL;
		copy_fields(&e->fields, &c->fields, PRODUCT_FIELDS_ALL);
	}
	return verdict;
}

static product_verdict decide_update(const product_state *s, const product_command *c, product_events *out)
{
	product_verdict verdict = PRODUCT_OK;
	unsigned changed = 0;
	product_event *e;

	if (product_invalid_field(c) != NULL)
		verdict = PRODUCT_REJ_INVALID;
	else if ((changed = changed_fields(&s->fields, &c->fields, c->present)) == 0)
		verdict = PRODUCT_REJ_NO_CHANGE;
	if (verdict != PRODUCT_OK)
		goto done;
	e = emit(out, PRODUCT_UPDATED);
	e->present = changed;
	copy_fields(&e->fields, &c->fields, changed);
done:
	return verdict;
}

static product_verdict decide_delete(product_events *out)
{
	emit(out, PRODUCT_DELETED);
	return PRODUCT_OK;
}

product_verdict product_decide(const product_state *s, const product_command *c, product_events *out)
{
	product_verdict verdict = PRODUCT_REJ_INVALID;

	out->count = 0;
	if (s->deleted)
		verdict = PRODUCT_REJ_DELETED;
	else if (c->kind == PRODUCT_CREATE)
		verdict = decide_create(s, c, out);
	else if (!s->exists)
		verdict = PRODUCT_REJ_NOT_FOUND;
	else if (c->kind == PRODUCT_UPDATE)
		verdict = decide_update(s, c, out);
	else if (c->kind == PRODUCT_DELETE)
		verdict = decide_delete(out);
	return verdict;
}

void product_evolve(product_state *s, const product_event *e)
{
	bool live = s->exists && !s->deleted;

	if (e->kind == PRODUCT_CREATED) {
		product_state_init(s);
		s->exists = true;
		copy_fields(&s->fields, &e->fields, PRODUCT_FIELDS_ALL);
	} else if (e->kind == PRODUCT_UPDATED && live) {
		copy_fields(&s->fields, &e->fields, e->present & PRODUCT_FIELDS_MUTABLE);
	} else if (e->kind == PRODUCT_DELETED && live) {
		s->deleted = true;
	}
}

KIND_NAMES(product, verdict_codes, command_shapes, event_shapes);

/* ---- payload codecs ---- */

/* Writes the key/value pairs of the fields of mask (no map header).
 * ORN_EINVAL if a string does not fit its buffer. */
static orn_rc write_fields(mp_writer *w, const product_fields *f, unsigned mask)
{
	if (!kind_fields_fit(&fields_of, mask, f))
		return ORN_EINVAL;
	kind_fields_write(w, &fields_of, mask, f);
	return ORN_OK;
}

/* Writes a payload map of shape: every field, or the present ones if optional. */
static orn_rc encode_payload(mp_writer *w, const payload_shape *shape, unsigned present,
                             const product_fields *f)
{
	return kind_fields_encode(w, &fields_of, shape->optional ? present & shape->fields : shape->fields,
	                          f);
}

/* Reads the value of one key/value pair whose key was read: a product key in
 * fields goes into out, any other key is skipped, a repeated one rejected.
 * *seen collects the fields read. */
static orn_rc read_value(mp_reader *r, const char *key, uint32_t len, unsigned fields, unsigned *seen,
                         product_fields *out)
{
	return kind_fields_read_value(r, &fields_of, key, len, fields, seen, out);
}

/* Decodes a payload that is exactly one map of shape into *present and out.
 * Any malformation (including an over-long string) is ORN_EDECODE. */
static orn_rc decode_payload(const uint8_t *payload, size_t len, const payload_shape *shape,
                             unsigned *present, product_fields *out)
{
	mp_reader r;
	uint32_t count, key_len;
	const char *key;
	unsigned seen = 0;
	orn_rc rc;

	memset(out, 0, sizeof *out);
	mp_reader_init(&r, payload, len);
	if ((rc = mp_read_map(&r, &count)) != ORN_OK)
		goto fail;
	for (uint32_t i = 0; i < count; i++)
		if ((rc = mp_read_str(&r, &key, &key_len)) != ORN_OK ||
		    (rc = read_value(&r, key, key_len, shape->fields, &seen, out)) != ORN_OK)
			goto fail;
	if ((!shape->optional && seen != shape->fields) || mp_reader_remaining(&r) != 0)
		rc = ORN_EDECODE;
	*present = seen;
fail:
	return rc == ORN_OK ? ORN_OK : ORN_EDECODE;
}

orn_rc product_command_encode(mp_writer *w, const product_command *c)
{
	if (product_command_type(c->kind) == NULL)
		return ORN_EINVAL;
	return encode_payload(w, &command_shapes[c->kind], c->present, &c->fields);
}

orn_rc product_command_decode(const char *type, const uint8_t *payload, size_t len, product_command *out)
{
	int shape = KIND_TYPE_INDEX(command_shapes, type);
	product_command c;
	orn_rc rc = ORN_EINVAL;

	if (shape < 0)
		goto fail;
	memset(&c, 0, sizeof c);
	if ((rc = decode_payload(payload, len, &command_shapes[shape], &c.present, &c.fields)) != ORN_OK)
		goto fail;
	c.kind = (product_command_kind)shape;
	*out = c;
fail:
	return rc;
}

orn_rc product_event_encode(mp_writer *w, const product_event *e)
{
	if (product_event_type(e->kind) == NULL)
		return ORN_EINVAL;
	return encode_payload(w, &event_shapes[e->kind], e->present, &e->fields);
}

/* True if an event of kind with these fields is one decide can emit. */
static bool event_valid(product_event_kind kind, unsigned present, const product_fields *f)
{
	if (kind == PRODUCT_UPDATED)
		return present != 0 && (present & ~PRODUCT_FIELDS_MUTABLE) == 0 &&
		       product_fields_valid(f, present);
	return product_fields_valid(f, event_shapes[kind].fields);
}

orn_rc product_event_decode(const char *type, const uint8_t *payload, size_t len, product_event *out)
{
	int shape = KIND_TYPE_INDEX(event_shapes, type);
	product_event e;
	orn_rc rc = ORN_EINVAL;

	if (shape < 0)
		goto fail;
	memset(&e, 0, sizeof e);
	if ((rc = decode_payload(payload, len, &event_shapes[shape], &e.present, &e.fields)) != ORN_OK)
		goto fail;
	if (!event_valid((product_event_kind)shape, e.present, &e.fields)) {
		rc = ORN_EDECODE;
		goto fail;
	}
	e.kind = (product_event_kind)shape;
	*out = e;
fail:
	return rc;
}

/* ---- snapshot, restore, view ---- */

/* Snapshot and view: {exists, deleted, sku, name, description, price_cents,
 * currency, category}; a product never created has empty fields. */
static orn_rc product_snapshot(const void *state, mp_writer *w)
{
	const product_state *s = state;
	orn_rc rc;

	mp_write_map(w, 2 + (uint32_t)ORN_ARRAY_LEN(field_table));
	mp_write_cstr(w, "exists");
	mp_write_bool(w, s->exists);
	mp_write_cstr(w, "deleted");
	mp_write_bool(w, s->deleted);
	if ((rc = write_fields(w, &s->fields, PRODUCT_FIELDS_ALL)) == ORN_OK)
		rc = mp_writer_status(w);
	return rc;
}

/* Reads one snapshot key/value pair into s; unknown keys are skipped. */
static orn_rc read_snapshot_entry(mp_reader *r, void *state, unsigned *seen)
{
	product_state *s = state;
	const char *key;
	uint32_t len;
	unsigned bit = 0;
	orn_rc rc;

	if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
		goto fail;
	if (mp_str_eq(key, len, "exists"))
		bit = SNAPSHOT_EXISTS;
	else if (mp_str_eq(key, len, "deleted"))
		bit = SNAPSHOT_DELETED;
	if (bit == 0) {
		rc = read_value(r, key, len, PRODUCT_FIELDS_ALL, seen, &s->fields);
	} else if ((*seen & bit) != 0) {
		rc = ORN_EDECODE;
	} else {
		*seen |= bit;
		rc = mp_read_bool(r, bit == SNAPSHOT_EXISTS ? &s->exists : &s->deleted);
	}
fail:
	return rc;
}

/* True if a restored state is one evolve can produce. */
static bool state_consistent(const product_state *s)
{
	static const product_fields empty;

	if (s->exists)
		return product_fields_valid(&s->fields, PRODUCT_FIELDS_ALL);
	return !s->deleted && memcmp(&s->fields, &empty, sizeof empty) == 0;
}

/* Whether a state read from a snapshot holds every key and is consistent. */
static bool snapshot_whole(const void *state, unsigned seen)
{
	return seen == SNAPSHOT_ALL && state_consistent(state);
}

/* ---- the kind table ---- */

/* Index in field_table of key, which must be one of its keys. */
static size_t index_of_key(const char *key)
{
	size_t i = 0;

	while (strcmp(field_table[i].key, key) != 0)
		i++;
	return i;
}

/* Detail text of a rejection for the reply. */
static void describe_rejection(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	const product_command *c = command;
	const char *field = product_invalid_field(c);

	(void)state;
	/* a decoded command has a known kind, so "invalid" always names a field */
	assert(verdict != PRODUCT_REJ_INVALID || field != NULL);
	if (verdict == PRODUCT_REJ_NOT_FOUND)
		snprintf(detail, cap, "the product does not exist");
	else if (verdict == PRODUCT_REJ_EXISTS)
		snprintf(detail, cap, "the product already exists");
	else if (verdict == PRODUCT_REJ_DELETED)
		snprintf(detail, cap, "the product was deleted");
	else if (verdict == PRODUCT_REJ_NO_CHANGE)
		snprintf(detail, cap, "the update changes nothing");
	else if (strcmp(field, "fields") == 0)
		snprintf(detail, cap,
		         "fields: an update sets at least one of name, description, price_cents, "
		         "category");
	else if (c->kind == PRODUCT_UPDATE && (strcmp(field, "sku") == 0 || strcmp(field, "currency") == 0))
		snprintf(detail, cap, "%s: cannot change", field);
	else
		snprintf(detail, cap, "%s: %s", field, field_table[index_of_key(field)].rule);
}

/* product_kind_decide and product_kind_evolve: the adapter every aggregate shares (kind.h). */
KIND_ADAPTER(product, PAYLOAD_SCHEMA, describe_rejection, product_kind_apply);

/* Restores into a fresh state, moved in only when whole (kind.h). */
static orn_rc product_restore(void *state, const uint8_t *buf, size_t len)
{
	return kind_restore_map(sizeof(product_state), product_kind_reset, product_kind_reset,
	                        read_snapshot_entry, snapshot_whole, state, buf, len);
}

const act_kind product_kind = {
        KIND_MEMBERS(product, PRODUCT_AGGREGATE, PRODUCT_SNAPSHOT_SCHEMA),
        .snapshot = product_snapshot,
        .restore = product_restore,
        .view = product_snapshot,
};
