/* kind.c — see kind.h. */
#include "kind.h"

#include <stdlib.h>
#include <string.h>

/* Bytes of a rejection detail text (the decision keeps 255 of them). */
#define DETAIL_MAX 320

int kind_type_index(const void *table, size_t count, size_t stride, const char *type)
{
	const unsigned char *entry = table;
	for (size_t i = 0; type != NULL && i < count; i++, entry += stride) {
		const char *name;
		memcpy(&name, entry, sizeof name); /* the first member */
		if (strcmp(name, type) == 0)
			return (int)i;
	}
	return -1;
}

const char *kind_name_at(const void *table, size_t count, size_t stride, size_t i)
{
	const char *name = NULL;
	if (i < count)
		memcpy(&name, (const unsigned char *)table + i * stride, sizeof name); /* the first member */
	return name;
}

orn_rc kind_decode_map(const uint8_t *payload, size_t len, unsigned fields, kind_entry_fn *entry, void *out,
                       size_t out_size)
{
	return kind_decode_map_optional(payload, len, fields, 0, entry, out, out_size, NULL);
}

orn_rc kind_decode_map_optional(const uint8_t *payload, size_t len, unsigned required, unsigned optional,
                                kind_entry_fn *entry, void *out, size_t out_size, unsigned *seen_out)
{
	mp_reader r;
	uint32_t count;
	unsigned seen = 0;
	orn_rc rc;

	memset(out, 0, out_size);
	mp_reader_init(&r, payload, len);
	if ((rc = mp_read_map(&r, &count)) != ORN_OK)
		goto fail;
	for (uint32_t i = 0; i < count; i++)
		if ((rc = entry(&r, required | optional, &seen, out)) != ORN_OK)
			goto fail;
	if ((seen & required) != required || mp_reader_remaining(&r) != 0)
		rc = ORN_EDECODE;
fail:
	if (seen_out != NULL)
		*seen_out = seen;
	return rc == ORN_OK ? ORN_OK : ORN_EDECODE;
}

orn_rc kind_emit_events(act_decision *d, uint32_t schema, const void *events, size_t count,
                        kind_encode_fn *encode)
{
	orn_rc rc = ORN_OK;
	mp_writer *w = NULL;
	if (count == 0)
		return ORN_OK;
	if ((w = mp_writer_create()) == NULL)
		return ORN_ENOMEM;
	for (size_t i = 0; i < count && rc == ORN_OK; i++) {
		const char *type = NULL;
		mp_writer_reset(w);
		/* decide emits only encodable events: an error here is the decision's */
		if ((rc = encode(w, events, i, &type)) == ORN_OK)
			rc = act_decision_emit(d, type, schema, mp_writer_data(w), mp_writer_size(w));
	}
	mp_writer_destroy(w);
	return rc;
}

/* Rejects in d with verdict's code and, if k describes rejections, its detail. */
static void reject(const kind_codec *k, int verdict, const void *state, const void *command, act_decision *d)
{
	char detail[DETAIL_MAX];

	if (k->describe != NULL)
		k->describe(verdict, state, command, detail, sizeof detail);
	act_decision_reject(d, k->verdict_code(verdict), k->describe != NULL ? detail : NULL);
}

orn_rc kind_decide(const kind_codec *k, const void *state, const env_envelope *cmd, act_decision *d)
{
	void *command = NULL, *events = NULL;
	size_t count;
	int verdict;
	orn_rc rc = ORN_EDECODE;

	if (cmd->schema != k->schema)
		goto fail;
	/* on the heap: some aggregates' commands and events run to kilobytes */
	command = malloc(k->command_size);
	events = malloc(k->events_size);
	if (command == NULL || events == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	if ((rc = k->decode_command(cmd->type, cmd->payload, cmd->payload_len, command)) != ORN_OK)
		goto fail;
	if ((verdict = k->decide(state, command, events)) != 0) {
		reject(k, verdict, state, command, d);
		goto fail;
	}
	memcpy(&count, (const unsigned char *)events + k->events_count_offset, sizeof count);
	rc = kind_emit_events(d, k->schema, events, count, k->encode_event_at);
fail:
	free(command);
	free(events);
	return rc;
}

orn_rc kind_evolve(const kind_codec *k, void *state, const env_envelope *event)
{
	void *decoded = NULL;
	orn_rc rc = ORN_EDECODE;

	if (event->schema != k->schema)
		goto fail;
	if ((decoded = malloc(k->event_size)) == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	if ((rc = k->decode_event(event->type, event->payload, event->payload_len, decoded)) != ORN_OK)
		goto fail;
	rc = k->evolve(state, decoded);
fail:
	free(decoded);
	return rc;
}

orn_rc kind_restore_history(const kind_codec *k, size_t state_size, kind_apply_fn *apply, void *state,
                            const uint8_t *buf, size_t len)
{
	char type[32];
	void *fresh = calloc(1, state_size);
	void *event = malloc(k->event_size);
	const uint8_t *payload;
	size_t payload_len;
	uint32_t count, pair;
	mp_reader r;
	orn_rc rc = ORN_ENOMEM;

	if (fresh == NULL || event == NULL)
		goto fail;
	mp_reader_init(&r, buf, len);
	if ((rc = mp_read_array(&r, &count)) != ORN_OK)
		goto fail;
	for (uint32_t i = 0; i < count; i++) {
		if ((rc = mp_read_array(&r, &pair)) != ORN_OK || pair != 2 ||
		    (rc = mp_read_cstr(&r, type, sizeof type)) != ORN_OK ||
		    (rc = mp_read_raw(&r, &payload, &payload_len)) != ORN_OK ||
		    (rc = k->decode_event(type, payload, payload_len, event)) != ORN_OK ||
		    !apply(fresh, event)) {
			rc = ORN_EDECODE;
			goto fail;
		}
	}
	if (mp_reader_remaining(&r) != 0) {
		rc = ORN_EDECODE;
		goto fail;
	}
	memcpy(state, fresh, state_size);
fail:
	free(fresh);
	free(event);
	return rc == ORN_OK || rc == ORN_ENOMEM ? rc : ORN_EDECODE;
}

orn_rc kind_restore_map(size_t state_size, void (*init)(void *), void (*dispose)(void *),
                        kind_snapshot_entry_fn *entry, kind_snapshot_whole_fn *whole, void *state,
                        const uint8_t *buf, size_t len)
{
	void *fresh = malloc(state_size);
	unsigned seen = 0;
	uint32_t count;
	mp_reader r;
	orn_rc rc = ORN_ENOMEM;

	if (fresh == NULL)
		return ORN_ENOMEM;
	init(fresh);
	mp_reader_init(&r, buf, len);
	if ((rc = mp_read_map(&r, &count)) != ORN_OK)
		goto fail;
	for (uint32_t i = 0; i < count; i++)
		if ((rc = entry(&r, fresh, &seen)) != ORN_OK)
			goto fail;
	if (mp_reader_remaining(&r) != 0 || !whole(fresh, seen)) {
		rc = ORN_EDECODE;
		goto fail;
	}
	dispose(state);
	memcpy(state, fresh, state_size);
	free(fresh); /* what it owned is state's now */
	return ORN_OK;
fail:
	dispose(fresh);
	free(fresh);
	return rc == ORN_ENOMEM ? rc : ORN_EDECODE;
}

bool kind_fields_fit(const kind_fields *t, unsigned fields, const void *data)
{
	for (size_t i = 0; i < t->count; i++) {
		const kind_field *f = &t->items[i];
		if ((fields & f->field) == 0)
			continue;
		if (f->value == KIND_TEXT && strnlen((const char *)data + f->offset, f->cap) >= f->cap)
			return false;
		if (f->value == KIND_OWN && t->own_fits != NULL && !t->own_fits(f, data))
			return false;
	}
	return true;
}

uint32_t kind_fields_count(const kind_fields *t, unsigned fields)
{
	uint32_t count = 0;
	for (size_t i = 0; i < t->count; i++)
		count += (fields & t->items[i].field) != 0;
	return count;
}

void kind_fields_write(mp_writer *w, const kind_fields *t, unsigned fields, const void *data)
{
	for (size_t i = 0; i < t->count; i++) {
		const kind_field *f = &t->items[i];
		const void *value = (const char *)data + f->offset;
		if ((fields & f->field) == 0)
			continue;
		mp_write_cstr(w, f->key);
		if (f->value == KIND_TEXT)
			mp_write_cstr(w, value);
		else if (f->value == KIND_INT)
			mp_write_int(w, *(const int64_t *)value);
		else if (f->value == KIND_BOOL)
			mp_write_bool(w, *(const bool *)value);
		else
			t->own_write(w, f, data);
	}
}

orn_rc kind_fields_encode(mp_writer *w, const kind_fields *t, unsigned fields, const void *data)
{
	if (!kind_fields_fit(t, fields, data))
		return ORN_EINVAL;
	mp_write_map(w, kind_fields_count(t, fields));
	kind_fields_write(w, t, fields, data);
	return mp_writer_status(w);
}

orn_rc kind_fields_read_value(mp_reader *r, const kind_fields *t, const char *key, uint32_t len,
                              unsigned fields, unsigned *seen, void *data)
{
	const kind_field *f = NULL;
	void *value;

	for (size_t i = 0; i < t->count; i++)
		if ((fields & t->items[i].field) != 0 && mp_str_eq(key, len, t->items[i].key))
			f = &t->items[i];
	if (f == NULL)
		return mp_skip(r);
	if ((*seen & f->field) != 0)
		return ORN_EDECODE;
	*seen |= f->field;
	value = (char *)data + f->offset;
	if (f->value == KIND_TEXT)
		return mp_read_cstr(r, value, f->cap);
	if (f->value == KIND_INT)
		return mp_read_int(r, value);
	if (f->value == KIND_BOOL)
		return mp_read_bool(r, value);
	return t->own_read(r, f, data);
}

orn_rc kind_fields_read_entry(mp_reader *r, const kind_fields *t, unsigned fields, unsigned *seen, void *data)
{
	const char *key;
	uint32_t len;
	orn_rc rc;

	if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
		return rc;
	return kind_fields_read_value(r, t, key, len, fields, seen, data);
}
