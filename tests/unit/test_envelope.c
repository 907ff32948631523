/* test_envelope.c — the envelope and commit codec (engine/envelope.c): round
 * trips at the field bounds, strict decoding of hand-built maps (missing,
 * duplicate, unknown and mistyped keys), and truncation or mutation of every
 * byte of a valid commit. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

static mp_writer *w;

static void setup(void)
{
	w = mp_writer_create();
	cr_assert_not_null(w);
}

static void teardown(void)
{
	mp_writer_destroy(w);
}

TestSuite(envelope, .init = setup, .fini = teardown);

static const uint8_t payload[] = {0x82, 0xa3, 's', 'k', 'u', 0xa2, 'A', '1', 0xa3, 'q', 't', 'y', 0x05};

static env_envelope sample(void)
{
	env_envelope e;
	memset(&e, 0, sizeof e);
	cr_assert_eq(env_set_field(e.type, sizeof e.type, "StockReserved"), ORN_OK);
	e.schema = 2;
	e.time_ms = 1700000000123;
	cr_assert_eq(env_set_field(e.correlation, sizeof e.correlation, "corr-1"), ORN_OK);
	cr_assert_eq(env_set_field(e.causation, sizeof e.causation, "cmd-9"), ORN_OK);
	cr_assert_eq(env_set_field(e.actor, sizeof e.actor, "user-7"), ORN_OK);
	e.payload = payload;
	e.payload_len = sizeof payload;
	return e;
}

static void assert_same(const env_envelope *a, const env_envelope *b)
{
	cr_assert_str_eq(a->type, b->type);
	cr_assert_eq(a->schema, b->schema);
	cr_assert_eq(a->time_ms, b->time_ms);
	cr_assert_str_eq(a->correlation, b->correlation);
	cr_assert_str_eq(a->causation, b->causation);
	cr_assert_str_eq(a->actor, b->actor);
	cr_assert_eq(a->payload_len, b->payload_len);
	cr_assert_eq(memcmp(a->payload, b->payload, a->payload_len), 0);
}

Test(envelope, round_trip)
{
	env_envelope e = sample(), d;
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	cr_assert_eq(env_decode_buffer(mp_writer_data(w), mp_writer_size(w), &d), ORN_OK);
	assert_same(&e, &d);
	/* The payload points into the decoded buffer, not a copy. */
	cr_assert(d.payload > mp_writer_data(w) && d.payload < mp_writer_data(w) + mp_writer_size(w));
}

Test(envelope, the_optional_request_fingerprint_and_time_budget_round_trip)
{
	env_envelope e = sample(), d;
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	size_t plain = mp_writer_size(w);
	cr_assert_eq(env_decode_buffer(mp_writer_data(w), plain, &d), ORN_OK);
	cr_assert_str_eq(d.request, "", "absent keys decode as unset");
	cr_assert_eq(d.ttl_ms, 0);
	mp_writer_reset(w);
	cr_assert_eq(env_set_field(e.request, sizeof e.request, "f00dfeed"), ORN_OK);
	e.ttl_ms = 3000;
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	cr_assert_gt(mp_writer_size(w), plain);
	cr_assert_eq(env_decode_buffer(mp_writer_data(w), mp_writer_size(w), &d), ORN_OK);
	assert_same(&e, &d);
	cr_assert_str_eq(d.request, "f00dfeed");
	cr_assert_eq(d.ttl_ms, 3000);
	/* a zero budget on the wire is malformed (absence means none) */
	mp_writer_reset(w);
	mp_write_map(w, 8);
	const char *keys[] = {"type", "v", "t", "corr", "cause", "actor"};
	mp_write_cstr(w, keys[0]);
	mp_write_cstr(w, "X");
	mp_write_cstr(w, keys[1]);
	mp_write_uint(w, 1);
	mp_write_cstr(w, keys[2]);
	mp_write_int(w, 1);
	for (int i = 3; i < 6; i++) {
		mp_write_cstr(w, keys[i]);
		mp_write_cstr(w, "");
	}
	mp_write_cstr(w, "data");
	mp_write_nil(w);
	mp_write_cstr(w, "ttl");
	mp_write_uint(w, 0);
	cr_assert_eq(env_decode_buffer(mp_writer_data(w), mp_writer_size(w), &d), ORN_EDECODE);
}

Test(envelope, round_trip_at_field_bounds)
{
	env_envelope e = sample(), d;
	memset(e.type, 'T', ENV_TYPE_MAX - 1);
	e.type[ENV_TYPE_MAX - 1] = '\0';
	memset(e.correlation, 'c', ENV_ID_MAX - 1);
	e.correlation[ENV_ID_MAX - 1] = '\0';
	memset(e.causation, 'k', ENV_ID_MAX - 1);
	e.causation[ENV_ID_MAX - 1] = '\0';
	e.actor[0] = '\0';
	e.schema = UINT32_MAX;
	e.time_ms = INT64_MIN;
	static const uint8_t nil = 0xc0;
	e.payload = &nil;
	e.payload_len = 1;
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	cr_assert_eq(env_decode_buffer(mp_writer_data(w), mp_writer_size(w), &d), ORN_OK);
	assert_same(&e, &d);
}

Test(envelope, encode_refuses_what_decode_would_refuse)
{
	env_envelope e;
	e = sample();
	e.type[0] = '\0';
	cr_assert_eq(env_encode(w, &e), ORN_EINVAL);
	e = sample();
	memset(e.type, 'x', sizeof e.type); /* no NUL */
	cr_assert_eq(env_encode(w, &e), ORN_EINVAL);
	e = sample();
	memset(e.correlation, 'x', sizeof e.correlation);
	cr_assert_eq(env_encode(w, &e), ORN_EINVAL);
	e = sample();
	memset(e.causation, 'x', sizeof e.causation);
	cr_assert_eq(env_encode(w, &e), ORN_EINVAL);
	e = sample();
	memset(e.actor, 'x', sizeof e.actor);
	cr_assert_eq(env_encode(w, &e), ORN_EINVAL);
	e = sample();
	e.schema = 0;
	cr_assert_eq(env_encode(w, &e), ORN_EINVAL);
	e = sample();
	e.payload = NULL;
	cr_assert_eq(env_encode(w, &e), ORN_EINVAL);
	e = sample();
	e.payload_len = 0;
	cr_assert_eq(env_encode(w, &e), ORN_EINVAL);
	e = sample();
	e.payload_len = sizeof payload - 1; /* truncated */
	cr_assert_eq(env_encode(w, &e), ORN_EINVAL);
	static const uint8_t two[] = {0x01, 0x02};
	e = sample();
	e.payload = two;
	e.payload_len = sizeof two;
	cr_assert_eq(env_encode(w, &e), ORN_EINVAL);
	cr_assert_eq(mp_writer_size(w), 0, "nothing written on refusal");
}

Test(envelope, encode_reports_writer_failure)
{
	env_envelope e = sample();
	mp_write_raw(w, "x", SIZE_MAX);
	cr_assert_eq(env_encode(w, &e), ORN_ENOMEM);
}

/* ------------------------------------------------- hand-built envelopes */

/* Which way to spoil the hand-built envelope. */
typedef enum spoil {
	SPOIL_NONE,
	SPOIL_MISSING,   /* leave key out */
	SPOIL_DUPLICATE, /* write key twice */
	SPOIL_TYPE,      /* write an int (or, for "v"/"t", a string) */
	SPOIL_LONG,      /* a string one byte too long */
	SPOIL_NUL,       /* a string with an embedded NUL */
} spoil;

static const char *const keys[] = {"type", "v", "t", "corr", "cause", "actor", "data"};

static void write_value(size_t k, spoil how)
{
	char buf[ENV_ID_MAX + 1];
	if (how == SPOIL_TYPE) {
		if (k == 1 || k == 2)
			mp_write_cstr(w, "1");
		else if (k == 6)
			mp_write_raw(w, "\xc1", 1); /* data: not even msgpack */
		else
			mp_write_int(w, 1);
		return;
	}
	if (how == SPOIL_LONG || how == SPOIL_NUL) {
		size_t len = how == SPOIL_NUL ? 3 : k == 0 ? ENV_TYPE_MAX : ENV_ID_MAX;
		memset(buf, 'z', len);
		if (how == SPOIL_NUL)
			buf[1] = '\0';
		mp_write_str(w, buf, len);
		return;
	}
	switch (k) {
	case 0:
		mp_write_cstr(w, "Evt");
		break;
	case 1:
		mp_write_uint(w, 1);
		break;
	case 2:
		mp_write_int(w, -5);
		break;
	case 6:
		mp_write_array(w, 1);
		mp_write_nil(w);
		break;
	default:
		mp_write_cstr(w, keys[k]);
		break;
	}
}

/* The 7 keys in order, key `target` spoiled as told, with an unknown key
 * (holding a nested value) first. */
static void build(size_t target, spoil how)
{
	uint32_t count = 8;
	if (how == SPOIL_MISSING)
		count--;
	if (how == SPOIL_DUPLICATE)
		count++;
	mp_writer_reset(w);
	mp_write_map(w, count);
	mp_write_cstr(w, "future");
	mp_write_map(w, 1);
	mp_write_int(w, 1);
	mp_write_array(w, 2);
	mp_write_bin(w, "ab", 2);
	mp_write_nil(w);
	for (size_t k = 0; k < ORN_ARRAY_LEN(keys); k++) {
		if (k == target && how == SPOIL_MISSING)
			continue;
		mp_write_cstr(w, keys[k]);
		write_value(k, k == target ? how : SPOIL_NONE);
		if (k == target && how == SPOIL_DUPLICATE) {
			mp_write_cstr(w, keys[k]);
			write_value(k, SPOIL_NONE);
		}
	}
}

static orn_rc decode_built(env_envelope *e)
{
	return env_decode_buffer(mp_writer_data(w), mp_writer_size(w), e);
}

Test(envelope, unknown_keys_are_skipped)
{
	env_envelope e;
	build(99, SPOIL_NONE);
	cr_assert_eq(decode_built(&e), ORN_OK);
	cr_assert_str_eq(e.type, "Evt");
	cr_assert_eq(e.schema, 1);
	cr_assert_eq(e.time_ms, -5);
	cr_assert_str_eq(e.correlation, "corr");
	cr_assert_str_eq(e.causation, "cause");
	cr_assert_str_eq(e.actor, "actor");
	cr_assert_eq(e.payload_len, 2);
	cr_assert_eq(memcmp(e.payload, "\x91\xc0", 2), 0);
}

Test(envelope, every_key_is_required_unique_and_typed)
{
	static const spoil spoils[] = {SPOIL_MISSING, SPOIL_DUPLICATE, SPOIL_TYPE};
	for (size_t k = 0; k < ORN_ARRAY_LEN(keys); k++) {
		for (size_t s = 0; s < ORN_ARRAY_LEN(spoils); s++) {
			env_envelope e;
			build(k, spoils[s]);
			cr_assert_eq(decode_built(&e), ORN_EDECODE, "key %s spoil %zu", keys[k], s);
		}
	}
}

Test(envelope, long_strings_and_nuls_are_refused)
{
	static const size_t string_keys[] = {0, 3, 4, 5};
	for (size_t i = 0; i < ORN_ARRAY_LEN(string_keys); i++) {
		env_envelope e;
		build(string_keys[i], SPOIL_LONG);
		cr_assert_eq(decode_built(&e), ORN_EDECODE, "long %s", keys[string_keys[i]]);
		build(string_keys[i], SPOIL_NUL);
		cr_assert_eq(decode_built(&e), ORN_EDECODE, "nul in %s", keys[string_keys[i]]);
	}
}

/* A valid map whose key k has the given raw value. */
static void build_with_raw(size_t target, const void *raw, size_t len)
{
	mp_writer_reset(w);
	mp_write_map(w, 7);
	for (size_t k = 0; k < ORN_ARRAY_LEN(keys); k++) {
		mp_write_cstr(w, keys[k]);
		if (k == target)
			mp_write_raw(w, raw, len);
		else
			write_value(k, SPOIL_NONE);
	}
}

Test(envelope, bad_values)
{
	env_envelope e;
	static const struct {
		size_t key;
		const char *raw;
		size_t len;
	} cases[] = {
	        {0, "\xa0", 1},                                 /* empty type */
	        {1, "\x00", 1},                                 /* v = 0 */
	        {1, "\xff", 1},                                 /* v = -1 */
	        {1, "\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 9}, /* v = 2^32 */
	        {2, "\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9}, /* t > INT64_MAX */
	        {2, "\xca\x00\x00\x00\x00", 5},                 /* t float */
	        {6, "\xdd\xff\xff\xff\xff", 5},                 /* hostile payload */
	};
	for (size_t i = 0; i < ORN_ARRAY_LEN(cases); i++) {
		build_with_raw(cases[i].key, cases[i].raw, cases[i].len);
		cr_assert_eq(decode_built(&e), ORN_EDECODE, "case %zu", i);
	}
	build_with_raw(1, "\xce\xff\xff\xff\xff", 5); /* v = 2^32 - 1 is fine */
	cr_assert_eq(decode_built(&e), ORN_OK);
	cr_assert_eq(e.schema, UINT32_MAX);
}

Test(envelope, not_a_map_or_non_string_key)
{
	env_envelope e;
	cr_assert_eq(env_decode_buffer("\x90", 1, &e), ORN_EDECODE);
	cr_assert_eq(env_decode_buffer("\x81\x01\x01", 3, &e), ORN_EDECODE);
	cr_assert_eq(env_decode_buffer("\x80", 1, &e), ORN_EDECODE);
	cr_assert_eq(env_decode_buffer(NULL, 0, &e), ORN_EDECODE);
}

Test(envelope, decode_buffer_refuses_trailing_bytes)
{
	env_envelope e = sample(), d;
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	mp_write_nil(w);
	cr_assert_eq(env_decode_buffer(mp_writer_data(w), mp_writer_size(w), &d), ORN_EDECODE);
	cr_assert_eq(env_decode_buffer(mp_writer_data(w), mp_writer_size(w) - 1, &d), ORN_OK);
}

Test(envelope, decode_from_a_reader_leaves_the_rest)
{
	env_envelope e = sample(), d;
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	mp_write_int(w, 42);
	mp_reader r;
	mp_reader_init(&r, mp_writer_data(w), mp_writer_size(w));
	cr_assert_eq(env_decode(&r, &d), ORN_OK);
	int64_t next;
	cr_assert_eq(mp_read_int(&r, &next), ORN_OK);
	cr_assert_eq(next, 42);
}

/* --------------------------------------------------------------- commits */

static void write_commit(size_t n)
{
	mp_writer_reset(w);
	env_commit_begin(w, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		env_envelope e = sample();
		e.time_ms += (int64_t)i;
		snprintf(e.type, sizeof e.type, "Event%zu", i);
		cr_assert_eq(env_encode(w, &e), ORN_OK);
	}
}

Test(envelope, commit_round_trip)
{
	env_envelope out[ENV_MAX_EVENTS];
	size_t count;
	write_commit(3);
	cr_assert_eq(env_decode_commit(mp_writer_data(w), mp_writer_size(w), out, 3, &count), ORN_OK);
	cr_assert_eq(count, 3);
	for (size_t i = 0; i < count; i++) {
		char type[32];
		snprintf(type, sizeof type, "Event%zu", i);
		cr_assert_str_eq(out[i].type, type);
		cr_assert_eq(out[i].time_ms, 1700000000123 + (int64_t)i);
	}
	write_commit(ENV_MAX_EVENTS);
	cr_assert_eq(env_decode_commit(mp_writer_data(w), mp_writer_size(w), out, ENV_MAX_EVENTS, &count),
	             ORN_OK);
	cr_assert_eq(count, ENV_MAX_EVENTS);
}

Test(envelope, commit_refuses_empty_too_many_and_trailing)
{
	env_envelope out[4];
	size_t count = 99;
	cr_assert_eq(env_decode_commit("\x90", 1, out, 4, &count), ORN_EDECODE);
	cr_assert_eq(count, 0);
	write_commit(3);
	cr_assert_eq(env_decode_commit(mp_writer_data(w), mp_writer_size(w), out, 2, &count), ORN_EDECODE);
	mp_write_nil(w);
	cr_assert_eq(env_decode_commit(mp_writer_data(w), mp_writer_size(w), out, 4, &count), ORN_EDECODE);
	cr_assert_eq(count, 0);
	cr_assert_eq(env_decode_commit("\x80", 1, out, 4, &count), ORN_EDECODE);
	cr_assert_eq(env_decode_commit(NULL, 0, out, 4, &count), ORN_EDECODE);
	cr_assert_eq(env_decode_commit("\xdd\xff\xff\xff\xff\x80", 6, out, 4, &count), ORN_EDECODE);
	cr_assert_eq(env_decode_commit("\x92\x80\x80", 3, out, 4, &count), ORN_EDECODE);
}

Test(envelope, truncation_at_every_offset_fails_cleanly)
{
	env_envelope out[4];
	size_t count;
	write_commit(3);
	size_t len = mp_writer_size(w);
	for (size_t cut = 0; cut < len; cut++) {
		/* A heap copy of exactly cut bytes, so ASan sees any overread. */
		uint8_t *copy = malloc(cut ? cut : 1);
		memcpy(copy, mp_writer_data(w), cut);
		cr_assert_eq(env_decode_commit(copy, cut, out, 4, &count), ORN_EDECODE, "cut %zu", cut);
		free(copy);
	}
	env_envelope e = sample(), d;
	mp_writer_reset(w);
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	len = mp_writer_size(w);
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *copy = malloc(cut ? cut : 1);
		memcpy(copy, mp_writer_data(w), cut);
		cr_assert_eq(env_decode_buffer(copy, cut, &d), ORN_EDECODE, "cut %zu", cut);
		free(copy);
	}
}

Test(envelope, every_byte_mutation_decodes_or_fails)
{
	env_envelope out[4];
	size_t count;
	static const uint8_t values[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
	                                 0xbf, 0xc0, 0xc1, 0xc4, 0xc7, 0xca, 0xcf, 0xd3,
	                                 0xd4, 0xd8, 0xd9, 0xdb, 0xdd, 0xdf, 0xe0, 0xff};
	write_commit(2);
	size_t len = mp_writer_size(w);
	uint8_t *copy = malloc(len);
	for (size_t i = 0; i < len; i++) {
		for (size_t v = 0; v < sizeof values; v++) {
			memcpy(copy, mp_writer_data(w), len);
			copy[i] = values[v];
			orn_rc rc = env_decode_commit(copy, len, out, 4, &count);
			cr_assert(rc == ORN_OK || rc == ORN_EDECODE);
			if (rc == ORN_OK)
				for (size_t k = 0; k < count; k++)
					cr_assert(out[k].payload >= copy &&
					          out[k].payload + out[k].payload_len <= copy + len);
		}
	}
	free(copy);
}

Test(envelope, payload_converts_to_json)
{
	env_envelope e = sample(), d;
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	cr_assert_eq(env_decode_buffer(mp_writer_data(w), mp_writer_size(w), &d), ORN_OK);
	mp_writer *json = mp_writer_create();
	mp_reader r;
	mp_reader_init(&r, d.payload, d.payload_len);
	cr_assert_eq(mp_to_json(&r, json), ORN_OK);
	json_error_t err;
	json_t *v = json_loadb((const char *)mp_writer_data(json), mp_writer_size(json), 0, &err);
	cr_assert_not_null(v);
	cr_assert_str_eq(json_string_value(json_object_get(v, "sku")), "A1");
	cr_assert_eq(json_integer_value(json_object_get(v, "qty")), 5);
	json_decref(v);
	mp_writer_destroy(json);
}

Test(envelope, set_field_bounds)
{
	char field[4] = "abc";
	cr_assert_eq(env_set_field(field, sizeof field, "xyz"), ORN_OK);
	cr_assert_str_eq(field, "xyz");
	cr_assert_eq(env_set_field(field, sizeof field, "wxyz"), ORN_ETOOBIG);
	cr_assert_str_eq(field, "xyz", "unchanged on failure");
	cr_assert_eq(env_set_field(field, sizeof field, ""), ORN_OK);
	cr_assert_str_eq(field, "");
	cr_assert_eq(env_set_field(field, sizeof field, NULL), ORN_EINVAL);
}
