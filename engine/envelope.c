/* envelope.c — the envelope and commit codec: a 7-key msgpack map per event,
 * decoded strictly and without allocation (see envelope.h for the wire form). */
#include "envelope.h"

#include <string.h>

/* One bit per key, to catch missing and duplicate keys (KEY_ALL: the required ones). */
enum {
	KEY_TYPE = 1 << 0,
	KEY_V = 1 << 1,
	KEY_T = 1 << 2,
	KEY_CORR = 1 << 3,
	KEY_CAUSE = 1 << 4,
	KEY_ACTOR = 1 << 5,
	KEY_DATA = 1 << 6,
	KEY_ALL = (1 << 7) - 1,
	KEY_REQ = 1 << 7,
	KEY_TTL = 1 << 8
};

/* True if field (cap bytes) holds a NUL-terminated string. */
static bool field_ok(const char *field, size_t cap)
{
	return strnlen(field, cap) < cap;
}

static bool payload_ok(const uint8_t *payload, size_t len)
{
	if (payload == NULL || len == 0)
		return false;
	mp_reader r;
	mp_reader_init(&r, payload, len);
	return mp_skip(&r) == ORN_OK && mp_reader_remaining(&r) == 0;
}

orn_rc env_encode(mp_writer *w, const env_envelope *e)
{
	/* Refuse what env_decode would refuse, so every stored event decodes. */
	if (!field_ok(e->type, sizeof e->type) || e->type[0] == '\0' || e->schema < 1 ||
	    !field_ok(e->correlation, sizeof e->correlation) ||
	    !field_ok(e->causation, sizeof e->causation) || !field_ok(e->actor, sizeof e->actor) ||
	    !field_ok(e->request, sizeof e->request) || !payload_ok(e->payload, e->payload_len))
		return ORN_EINVAL;
	mp_write_map(w, 7 + (e->request[0] != '\0') + (e->ttl_ms != 0));
	mp_write_cstr(w, "type");
	mp_write_cstr(w, e->type);
	mp_write_cstr(w, "v");
	mp_write_uint(w, e->schema);
	mp_write_cstr(w, "t");
	mp_write_int(w, e->time_ms);
	mp_write_cstr(w, "corr");
	mp_write_cstr(w, e->correlation);
	mp_write_cstr(w, "cause");
	mp_write_cstr(w, e->causation);
	mp_write_cstr(w, "actor");
	mp_write_cstr(w, e->actor);
	mp_write_cstr(w, "data");
	mp_write_raw(w, e->payload, e->payload_len);
	if (e->request[0] != '\0') {
		mp_write_cstr(w, "req");
		mp_write_cstr(w, e->request);
	}
	if (e->ttl_ms != 0) {
		mp_write_cstr(w, "ttl");
		mp_write_uint(w, e->ttl_ms);
	}
	return mp_writer_status(w);
}

/* Reads a string into a fixed field; too long is malformed input here. */
static orn_rc read_field(mp_reader *r, char *field, size_t cap)
{
	orn_rc rc = mp_read_cstr(r, field, cap);
	return rc == ORN_ETOOBIG ? ORN_EDECODE : rc;
}

/* Reads the value of one key; *bit is the key's bit, 0 for an unknown key. */
static orn_rc read_entry(mp_reader *r, const char *key, uint32_t key_len, env_envelope *e, unsigned *bit)
{
	uint64_t number;
	orn_rc rc;
	*bit = 0;
	if (mp_str_eq(key, key_len, "type")) {
		*bit = KEY_TYPE;
		return read_field(r, e->type, sizeof e->type);
	}
	if (mp_str_eq(key, key_len, "v")) {
		*bit = KEY_V;
		if ((rc = mp_read_uint(r, &number)) != ORN_OK)
			return rc;
		if (number < 1 || number > UINT32_MAX)
			return ORN_EDECODE;
		e->schema = (uint32_t)number;
		return ORN_OK;
	}
	if (mp_str_eq(key, key_len, "t")) {
		*bit = KEY_T;
		return mp_read_int(r, &e->time_ms);
	}
	if (mp_str_eq(key, key_len, "corr")) {
		*bit = KEY_CORR;
		return read_field(r, e->correlation, sizeof e->correlation);
	}
	if (mp_str_eq(key, key_len, "cause")) {
		*bit = KEY_CAUSE;
		return read_field(r, e->causation, sizeof e->causation);
	}
	if (mp_str_eq(key, key_len, "actor")) {
		*bit = KEY_ACTOR;
		return read_field(r, e->actor, sizeof e->actor);
	}
	if (mp_str_eq(key, key_len, "data")) {
		*bit = KEY_DATA;
		return mp_read_raw(r, &e->payload, &e->payload_len);
	}
	if (mp_str_eq(key, key_len, "req")) {
		*bit = KEY_REQ;
		return read_field(r, e->request, sizeof e->request);
	}
	if (mp_str_eq(key, key_len, "ttl")) {
		*bit = KEY_TTL;
		if ((rc = mp_read_uint(r, &number)) != ORN_OK)
			return rc;
		if (number == 0 || number > UINT32_MAX)
			return ORN_EDECODE;
		e->ttl_ms = (uint32_t)number;
		return ORN_OK;
	}
	return mp_skip(r);
}

orn_rc env_decode(mp_reader *r, env_envelope *e)
{
	uint32_t count;
	unsigned seen = 0;
	memset(e, 0, sizeof *e);
	orn_rc rc = mp_read_map(r, &count);
	if (rc != ORN_OK)
		return rc;
	for (uint32_t i = 0; i < count; i++) {
		const char *key;
		uint32_t key_len;
		unsigned bit;
		if ((rc = mp_read_str(r, &key, &key_len)) != ORN_OK)
			return rc;
		if ((rc = read_entry(r, key, key_len, e, &bit)) != ORN_OK)
			return rc;
		if (seen & bit)
			return ORN_EDECODE;
		seen |= bit;
	}
	if ((seen & KEY_ALL) != KEY_ALL || e->type[0] == '\0')
		return ORN_EDECODE;
	return ORN_OK;
}

orn_rc env_decode_buffer(const void *buf, size_t len, env_envelope *e)
{
	mp_reader r;
	mp_reader_init(&r, buf, len);
	orn_rc rc = env_decode(&r, e);
	if (rc == ORN_OK && mp_reader_remaining(&r) != 0)
		rc = ORN_EDECODE;
	return rc;
}

orn_rc env_decode_commit(const void *buf, size_t len, env_envelope *out, size_t cap, size_t *count)
{
	mp_reader r;
	uint32_t n;
	*count = 0;
	mp_reader_init(&r, buf, len);
	orn_rc rc = mp_read_array(&r, &n);
	if (rc != ORN_OK)
		return rc;
	if (n == 0 || n > cap)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < n; i++)
		if ((rc = env_decode(&r, &out[i])) != ORN_OK)
			return rc;
	if (mp_reader_remaining(&r) != 0)
		return ORN_EDECODE;
	*count = n;
	return ORN_OK;
}

void env_commit_begin(mp_writer *w, uint32_t count)
{
	mp_write_array(w, count);
}

orn_rc env_set_field(char *field, size_t cap, const char *value)
{
	if (value == NULL)
		return ORN_EINVAL;
	size_t len = strlen(value);
	if (len >= cap)
		return ORN_ETOOBIG;
	memcpy(field, value, len + 1);
	return ORN_OK;
}
