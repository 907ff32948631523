/* sku.c — the sku aggregate: a pure decider that lets one product at a time
 * hold a sku, the msgpack codecs of its payloads, and its kind table.
 *
 * The state is two fixed fields, so nothing here allocates but the writer
 * the kind adapter encodes events with. */
#include "sku.h"
#include "kind.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* Version of every command and event payload written and accepted here. */
#define PAYLOAD_SCHEMA 1
/* The one payload key. */
#define KEY_PRODUCT_ID "product_id"

static const char *const command_types[] = {[SKU_CLAIM] = SKU_CMD_CLAIM, [SKU_RELEASE] = SKU_CMD_RELEASE};
static const char *const event_types[] = {[SKU_CLAIMED] = SKU_EV_CLAIMED, [SKU_RELEASED] = SKU_EV_RELEASED};

static const char *const verdict_codes[] = {
        [SKU_OK] = "",
        [SKU_REJ_INVALID] = "invalid",
        [SKU_REJ_TAKEN] = "sku_taken",
};

/* ---- ids ---- */

static bool is_id_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '-';
}

bool sku_valid(const char *sku)
{
	size_t len = strnlen(sku, SKU_MAX);
	bool valid = len > 0 && len < SKU_MAX;

	for (size_t i = 0; valid && i < len; i++)
		valid = is_id_char(sku[i]) || sku[i] == '.';
	return valid;
}

bool sku_product_id_valid(const char *id)
{
	return strnlen(id, SKU_PRODUCT_ID_MAX) < SKU_PRODUCT_ID_MAX && orn_id_valid(id);
}

orn_rc sku_key_for(const char *sku, char *out, size_t cap)
{
	size_t len;
	orn_rc rc = ORN_EINVAL;

	if (cap > 0)
		out[0] = '\0';
	if (!sku_valid(sku))
		goto fail;
	len = strlen(sku);
	if (cap <= len) {
		rc = ORN_ETOOBIG;
		goto fail;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = sku[i];

		if (ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		else if (ch == '.')
			ch = 'd';
		out[i] = ch;
	}
	out[len] = '\0';
	rc = ORN_OK;
fail:
	return rc;
}

/* ---- decide and evolve ---- */

void sku_state_init(sku_state *s)
{
	memset(s, 0, sizeof *s);
}

static void emit(sku_events *out, sku_event_kind kind, const char *product_id)
{
	sku_event *e;

	assert(out->count < SKU_MAX_EVENTS);
	e = &out->items[out->count++];
	memset(e, 0, sizeof *e);
	e->kind = kind;
	strcpy(e->product_id, product_id);
}

/* True if the sku is held by product_id. */
static bool held_by(const sku_state *s, const char *product_id)
{
	return s->claimed && strcmp(s->owner, product_id) == 0;
}

sku_verdict sku_decide(const sku_state *s, const sku_command *c, sku_events *out)
{
	sku_verdict verdict = SKU_OK;

	out->count = 0;
	if (!sku_product_id_valid(c->product_id) || (size_t)c->kind >= ORN_ARRAY_LEN(command_types))
		verdict = SKU_REJ_INVALID;
	else if (c->kind == SKU_CLAIM && !s->claimed)
		emit(out, SKU_CLAIMED, c->product_id);
	else if (c->kind == SKU_CLAIM && !held_by(s, c->product_id))
		verdict = SKU_REJ_TAKEN;
	else if (c->kind == SKU_RELEASE && held_by(s, c->product_id))
		emit(out, SKU_RELEASED, c->product_id);
	return verdict;
}

void sku_evolve(sku_state *s, const sku_event *e)
{
	if (!sku_product_id_valid(e->product_id))
		return;
	if (e->kind == SKU_CLAIMED) {
		s->claimed = true;
		strcpy(s->owner, e->product_id);
	} else if (e->kind == SKU_RELEASED && held_by(s, e->product_id)) {
		sku_state_init(s);
	}
}

KIND_NAMES(sku, verdict_codes, command_types, event_types);

/* ---- payload codecs ---- */

/* Index of type in types (count entries), or -1. */
static int index_of_type(const char *const *types, size_t count, const char *type)
{
	for (size_t i = 0; type != NULL && i < count; i++)
		if (strcmp(types[i], type) == 0)
			return (int)i;
	return -1;
}

/* Writes {product_id}; ORN_EINVAL if the id is unterminated. */
static orn_rc encode_product_id(mp_writer *w, const char *product_id)
{
	if (strnlen(product_id, SKU_PRODUCT_ID_MAX) == SKU_PRODUCT_ID_MAX)
		return ORN_EINVAL;
	mp_write_map(w, 1);
	mp_write_cstr(w, KEY_PRODUCT_ID);
	mp_write_cstr(w, product_id);
	return mp_writer_status(w);
}

/* Reads a payload that is exactly one map holding product_id once; other keys
 * are skipped. Any malformation is ORN_EDECODE. */
static orn_rc decode_product_id(const uint8_t *payload, size_t len, char *product_id)
{
	mp_reader r;
	uint32_t count, key_len;
	const char *key;
	bool seen = false;
	orn_rc rc;

	memset(product_id, 0, SKU_PRODUCT_ID_MAX);
	mp_reader_init(&r, payload, len);
	if ((rc = mp_read_map(&r, &count)) != ORN_OK)
		goto fail;
	for (uint32_t i = 0; i < count; i++) {
		if ((rc = mp_read_str(&r, &key, &key_len)) != ORN_OK)
			goto fail;
		if (!mp_str_eq(key, key_len, KEY_PRODUCT_ID)) {
			rc = mp_skip(&r);
		} else if (seen) {
			rc = ORN_EDECODE;
		} else {
			seen = true;
			rc = mp_read_cstr(&r, product_id, SKU_PRODUCT_ID_MAX);
		}
		if (rc != ORN_OK)
			goto fail;
	}
	if (!seen || mp_reader_remaining(&r) != 0)
		rc = ORN_EDECODE;
fail:
	return rc == ORN_OK ? ORN_OK : ORN_EDECODE;
}

orn_rc sku_command_encode(mp_writer *w, const sku_command *c)
{
	if (sku_command_type(c->kind) == NULL)
		return ORN_EINVAL;
	return encode_product_id(w, c->product_id);
}

orn_rc sku_command_decode(const char *type, const uint8_t *payload, size_t len, sku_command *out)
{
	int kind = index_of_type(command_types, ORN_ARRAY_LEN(command_types), type);
	sku_command c = {0};
	orn_rc rc = ORN_EINVAL;

	if (kind < 0)
		goto fail;
	if ((rc = decode_product_id(payload, len, c.product_id)) != ORN_OK)
		goto fail;
	c.kind = (sku_command_kind)kind;
	*out = c;
fail:
	return rc;
}

orn_rc sku_event_encode(mp_writer *w, const sku_event *e)
{
	if (sku_event_type(e->kind) == NULL)
		return ORN_EINVAL;
	return encode_product_id(w, e->product_id);
}

orn_rc sku_event_decode(const char *type, const uint8_t *payload, size_t len, sku_event *out)
{
	int kind = index_of_type(event_types, ORN_ARRAY_LEN(event_types), type);
	sku_event e = {0};
	orn_rc rc = ORN_EINVAL;

	if (kind < 0)
		goto fail;
	if ((rc = decode_product_id(payload, len, e.product_id)) != ORN_OK)
		goto fail;
	if (!sku_product_id_valid(e.product_id)) {
		rc = ORN_EDECODE;
		goto fail;
	}
	e.kind = (sku_event_kind)kind;
	*out = e;
fail:
	return rc;
}

/* ---- snapshot, restore, view ---- */

/* Snapshot: {claimed: bool, owner: str ("" when free)}. */
static orn_rc sku_snapshot(const void *state, mp_writer *w)
{
	const sku_state *s = state;

	mp_write_map(w, 2);
	mp_write_cstr(w, "claimed");
	mp_write_bool(w, s->claimed);
	mp_write_cstr(w, "owner");
	mp_write_cstr(w, s->owner);
	return mp_writer_status(w);
}

/* Reads one snapshot key/value pair into s; unknown keys are skipped. *seen
 * collects bit 0 (claimed) and bit 1 (owner). */
static orn_rc read_snapshot_entry(mp_reader *r, void *state, unsigned *seen)
{
	sku_state *s = state;
	const char *key;
	uint32_t len;
	unsigned bit = 0;
	orn_rc rc;

	if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
		goto fail;
	if (mp_str_eq(key, len, "claimed"))
		bit = 1;
	else if (mp_str_eq(key, len, "owner"))
		bit = 2;
	if ((*seen & bit) != 0) {
		rc = ORN_EDECODE;
		goto fail;
	}
	*seen |= bit;
	if (bit == 0)
		rc = mp_skip(r);
	else if (bit == 1)
		rc = mp_read_bool(r, &s->claimed);
	else
		rc = mp_read_cstr(r, s->owner, sizeof s->owner);
fail:
	return rc;
}

/* Whether a state read from a snapshot holds both keys and an owner only when claimed. */
static bool snapshot_whole(const void *state, unsigned seen)
{
	const sku_state *s = state;

	return seen == 3 && (s->claimed ? sku_product_id_valid(s->owner) : s->owner[0] == '\0');
}

/* View: {claimed: bool, owner: str or nil when free}. */
static orn_rc sku_view(const void *state, mp_writer *w)
{
	const sku_state *s = state;

	mp_write_map(w, 2);
	mp_write_cstr(w, "claimed");
	mp_write_bool(w, s->claimed);
	mp_write_cstr(w, "owner");
	mp_write_cstr(w, s->claimed ? s->owner : NULL);
	return mp_writer_status(w);
}

/* ---- the kind table ---- */

static void describe_rejection(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	const sku_state *s = state;

	(void)command;
	if (verdict == SKU_REJ_TAKEN)
		snprintf(detail, cap, "the sku is held by product %s", s->owner);
	else
		snprintf(detail, cap, "product_id: 1..%d characters of [A-Za-z0-9_-]",
		         SKU_PRODUCT_ID_MAX - 1);
}

/* sku_kind_decide and sku_kind_evolve: the adapter every aggregate shares (kind.h). */
KIND_ADAPTER(sku, PAYLOAD_SCHEMA, describe_rejection, sku_kind_apply);

/* Restores into a fresh state, moved in only when whole (kind.h). */
static orn_rc sku_restore(void *state, const uint8_t *buf, size_t len)
{
	return kind_restore_map(sizeof(sku_state), sku_kind_reset, sku_kind_reset, read_snapshot_entry,
	                        snapshot_whole, state, buf, len);
}

const act_kind sku_kind = {
        KIND_MEMBERS(sku, SKU_AGGREGATE, SKU_SNAPSHOT_SCHEMA),
        .snapshot = sku_snapshot,
        .restore = sku_restore,
        .view = sku_view,
};
