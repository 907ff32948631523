/* test_mpack.c — the msgpack reader, writer and JSON converter (engine/mpack.c):
 * round trips at every format boundary, truncation, hostile counts and
 * nesting, and JSON validity checked by parsing the output with jansson. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "mpack.h"

#include "failalloc.h"

/* The nth allocation from now fails, once (0: off); skips the test where
 * injection is not available (sanitizer builds). */
static void fail_allocation(int nth)
{
	if (!failalloc_available())
		cr_skip_test("allocation failure injection needs glibc without ASan");
	failalloc_nth(nth);
}

/* Huge-allocation tests expect realloc to fail, not ASan to abort. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}

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

TestSuite(mpack, .init = setup, .fini = teardown);

static mp_reader reader_of_writer(void)
{
	mp_reader r;
	mp_reader_init(&r, mp_writer_data(w), mp_writer_size(w));
	return r;
}

/* Every strict prefix of the writer's bytes must fail to skip. */
static void assert_prefixes_fail(const uint8_t *buf, size_t len)
{
	for (size_t cut = 0; cut < len; cut++) {
		mp_reader r;
		mp_reader_init(&r, buf, cut);
		cr_assert_eq(mp_skip(&r), ORN_EDECODE, "prefix %zu of %zu skipped", cut, len);
	}
}

/* jansson refuses U+0000 in object keys although JSON allows it; rewrite the
 * escape \u0000 (not an escaped backslash followed by "u0000") to \u0001. */
static void hide_nul_escapes(char *json, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (json[i] != '\\')
			continue;
		if (json[i + 1] == 'u' && i + 5 < len && memcmp(json + i + 2, "0000", 4) == 0)
			json[i + 5] = '1';
		i++; /* the escaped character */
	}
}

/* The JSON text of one msgpack value, parsed back with jansson (NULL if the
 * conversion failed). The caller frees with json_decref. */
static json_t *to_json(const void *buf, size_t len, orn_rc *rc)
{
	mp_writer *out = mp_writer_create();
	mp_reader r;
	mp_reader_init(&r, buf, len);
	*rc = mp_to_json(&r, out);
	json_t *v = NULL;
	if (*rc == ORN_OK) {
		json_error_t err;
		cr_assert_null(memchr(mp_writer_data(out), '\0', mp_writer_size(out)));
		size_t n = mp_writer_size(out);
		char *text = malloc(n + 1);
		memcpy(text, mp_writer_data(out), n);
		hide_nul_escapes(text, n);
		v = json_loadb(text, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
		cr_assert_not_null(v, "invalid JSON (%s): %.*s", err.text, (int)n, text);
		free(text);
	} else {
		cr_assert_eq(mp_writer_size(out), 0, "failed conversion left output");
	}
	mp_writer_destroy(out);
	return v;
}

/* The exact JSON text of the writer's value. */
static char *json_text(const void *buf, size_t len)
{
	mp_writer *out = mp_writer_create();
	mp_reader r;
	mp_reader_init(&r, buf, len);
	cr_assert_eq(mp_to_json(&r, out), ORN_OK);
	cr_assert_eq(mp_reader_remaining(&r), 0);
	char *s = strndup((const char *)mp_writer_data(out), mp_writer_size(out));
	mp_writer_destroy(out);
	return s;
}

static void assert_json(const void *buf, size_t len, const char *expected)
{
	char *s = json_text(buf, len);
	cr_assert_str_eq(s, expected);
	free(s);
	orn_rc rc;
	json_t *v = to_json(buf, len, &rc);
	json_decref(v);
}

static void assert_json_of_writer(const char *expected)
{
	assert_json(mp_writer_data(w), mp_writer_size(w), expected);
}

/* ------------------------------------------------------------- integers */

Test(mpack, signed_round_trip_at_every_boundary)
{
	static const struct {
		int64_t v;
		size_t size;
	} cases[] = {
	        {0, 1},         {1, 1},      {127, 1},    {128, 2},          {255, 2},
	        {256, 3},       {65535, 3},  {65536, 5},  {4294967295LL, 5}, {4294967296LL, 9},
	        {INT64_MAX, 9}, {-1, 1},     {-32, 1},    {-33, 2},          {-128, 2},
	        {-129, 3},      {-32768, 3}, {-32769, 5}, {INT32_MIN, 5},    {(int64_t)INT32_MIN - 1, 9},
	        {INT64_MIN, 9},
	};
	for (size_t i = 0; i < ORN_ARRAY_LEN(cases); i++) {
		mp_writer_reset(w);
		mp_write_int(w, cases[i].v);
		cr_assert_eq(mp_writer_size(w), cases[i].size, "size of %lld", (long long)cases[i].v);
		mp_reader r = reader_of_writer();
		cr_assert_eq(mp_peek(&r), MP_INT);
		int64_t got;
		cr_assert_eq(mp_read_int(&r, &got), ORN_OK);
		cr_assert_eq(got, cases[i].v);
		cr_assert_eq(mp_reader_remaining(&r), 0);
		r = reader_of_writer();
		uint64_t u;
		cr_assert_eq(mp_read_uint(&r, &u), cases[i].v < 0 ? ORN_EDECODE : ORN_OK);
		if (cases[i].v >= 0)
			cr_assert_eq(u, (uint64_t)cases[i].v);
		assert_prefixes_fail(mp_writer_data(w), mp_writer_size(w));
	}
}

Test(mpack, unsigned_round_trip_and_int64_overflow)
{
	static const uint64_t cases[] = {0,
	                                 127,
	                                 128,
	                                 255,
	                                 256,
	                                 65535,
	                                 65536,
	                                 4294967295ULL,
	                                 4294967296ULL,
	                                 (uint64_t)INT64_MAX,
	                                 (uint64_t)INT64_MAX + 1,
	                                 UINT64_MAX};
	for (size_t i = 0; i < ORN_ARRAY_LEN(cases); i++) {
		mp_writer_reset(w);
		mp_write_uint(w, cases[i]);
		mp_reader r = reader_of_writer();
		uint64_t got;
		cr_assert_eq(mp_read_uint(&r, &got), ORN_OK);
		cr_assert_eq(got, cases[i]);
		r = reader_of_writer();
		int64_t s;
		cr_assert_eq(mp_read_int(&r, &s), cases[i] > (uint64_t)INT64_MAX ? ORN_EDECODE : ORN_OK);
	}
}

Test(mpack, every_integer_format_decodes)
{
	static const struct {
		uint8_t bytes[9];
		size_t len;
		int64_t v;
	} cases[] = {
	        {{0xcc, 0x05}, 2, 5},
	        {{0xcd, 0x01, 0x00}, 3, 256},
	        {{0xce, 0, 1, 0, 0}, 5, 65536},
	        {{0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 9, 4294967296LL},
	        {{0xd0, 0x05}, 2, 5},
	        {{0xd0, 0x80}, 2, -128},
	        {{0xd1, 0x7f, 0xff}, 3, 32767},
	        {{0xd1, 0x80, 0x00}, 3, -32768},
	        {{0xd2, 0xff, 0xff, 0xff, 0xfe}, 5, -2},
	        {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, INT64_MIN},
	        {{0xd3, 0, 0, 0, 0, 0, 0, 0, 7}, 9, 7},
	        {{0xe0}, 1, -32},
	};
	for (size_t i = 0; i < ORN_ARRAY_LEN(cases); i++) {
		mp_reader r;
		mp_reader_init(&r, cases[i].bytes, cases[i].len);
		int64_t got;
		cr_assert_eq(mp_read_int(&r, &got), ORN_OK, "case %zu", i);
		cr_assert_eq(got, cases[i].v, "case %zu", i);
		assert_prefixes_fail(cases[i].bytes, cases[i].len);
	}
}

/* --------------------------------------------------- nil, bool, float */

Test(mpack, nil_and_bool)
{
	mp_write_nil(w);
	mp_write_bool(w, true);
	mp_write_bool(w, false);
	mp_write_cstr(w, NULL);
	mp_reader r = reader_of_writer();
	bool b;
	cr_assert_eq(mp_peek(&r), MP_NIL);
	cr_assert_eq(mp_read_nil(&r), ORN_OK);
	cr_assert_eq(mp_peek(&r), MP_BOOL);
	cr_assert_eq(mp_read_bool(&r, &b), ORN_OK);
	cr_assert(b);
	cr_assert_eq(mp_read_bool(&r, &b), ORN_OK);
	cr_assert_not(b);
	cr_assert_eq(mp_read_nil(&r), ORN_OK);
	cr_assert_eq(mp_reader_remaining(&r), 0);
	cr_assert_eq(mp_peek(&r), MP_INVALID);
	cr_assert_eq(mp_read_nil(&r), ORN_EDECODE);
}

Test(mpack, floats_peek_skip_and_json)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 6);
	msgpack_pack_float(&pk, 1.5f);
	msgpack_pack_double(&pk, 0.1);
	msgpack_pack_double(&pk, -1e300);
	msgpack_pack_double(&pk, (double)NAN);
	msgpack_pack_double(&pk, (double)INFINITY);
	msgpack_pack_float(&pk, -INFINITY);
	mp_reader r;
	mp_reader_init(&r, sb.data, sb.size);
	uint32_t n;
	cr_assert_eq(mp_read_array(&r, &n), ORN_OK);
	cr_assert_eq(mp_peek(&r), MP_FLOAT);
	int64_t i;
	cr_assert_eq(mp_read_int(&r, &i), ORN_EDECODE);
	assert_json(sb.data, sb.size, "[1.5,0.10000000000000001,-1.0000000000000001e+300,null,null,null]");
	orn_rc rc;
	json_t *v = to_json(sb.data, sb.size, &rc);
	cr_assert_float_eq(json_real_value(json_array_get(v, 1)), 0.1, 0);
	json_decref(v);
	assert_prefixes_fail((const uint8_t *)sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/* --------------------------------------------------------- str and bin */

Test(mpack, str_round_trip_at_every_boundary)
{
	static const struct {
		size_t len;
		uint8_t head;
		size_t head_size;
	} cases[] = {{0, 0xa0, 1},   {31, 0xbf, 1},    {32, 0xd9, 2},   {255, 0xd9, 2},
	             {256, 0xda, 3}, {65535, 0xda, 3}, {65536, 0xdb, 5}};
	char *text = malloc(65536);
	for (size_t i = 0; i < 65536; i++)
		text[i] = (char)('a' + i % 26);
	for (size_t i = 0; i < ORN_ARRAY_LEN(cases); i++) {
		mp_writer_reset(w);
		mp_write_str(w, text, cases[i].len);
		cr_assert_eq(mp_writer_status(w), ORN_OK);
		cr_assert_eq(mp_writer_size(w), cases[i].head_size + cases[i].len);
		cr_assert_eq(mp_writer_data(w)[0], cases[i].head);
		mp_reader r = reader_of_writer();
		cr_assert_eq(mp_peek(&r), MP_STR);
		const char *s;
		uint32_t len;
		cr_assert_eq(mp_read_str(&r, &s, &len), ORN_OK);
		cr_assert_eq(len, cases[i].len);
		cr_assert(len == 0 || memcmp(s, text, len) == 0);
		cr_assert_eq(mp_reader_remaining(&r), 0);
		/* Truncation in the head and at the last body byte. */
		for (size_t cut = 0; cut < cases[i].head_size; cut++) {
			mp_reader_init(&r, mp_writer_data(w), cut);
			cr_assert_eq(mp_read_str(&r, &s, &len), ORN_EDECODE);
		}
		if (cases[i].len > 0) {
			mp_reader_init(&r, mp_writer_data(w), mp_writer_size(w) - 1);
			cr_assert_eq(mp_read_str(&r, &s, &len), ORN_EDECODE);
		}
	}
	free(text);
}

Test(mpack, bin_round_trip_at_every_boundary)
{
	static const struct {
		size_t len;
		uint8_t head;
	} cases[] = {{0, 0xc4}, {255, 0xc4}, {256, 0xc5}, {65535, 0xc5}, {65536, 0xc6}};
	uint8_t *data = malloc(65536);
	for (size_t i = 0; i < 65536; i++)
		data[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < ORN_ARRAY_LEN(cases); i++) {
		mp_writer_reset(w);
		mp_write_bin(w, data, cases[i].len);
		cr_assert_eq(mp_writer_data(w)[0], cases[i].head);
		mp_reader r = reader_of_writer();
		cr_assert_eq(mp_peek(&r), MP_BIN);
		const uint8_t *b;
		uint32_t len;
		cr_assert_eq(mp_read_bin(&r, &b, &len), ORN_OK);
		cr_assert_eq(len, cases[i].len);
		cr_assert(len == 0 || memcmp(b, data, len) == 0);
		mp_reader_init(&r, mp_writer_data(w), mp_writer_size(w) - 1);
		cr_assert_eq(mp_skip(&r), ORN_EDECODE);
	}
	free(data);
}

Test(mpack, cstr_bounds_and_nul)
{
	char out[8];
	mp_write_cstr(w, "1234567"); /* exactly fits with its NUL */
	mp_write_cstr(w, "12345678");
	mp_write_str(w, "ab\0c", 4);
	mp_write_cstr(w, "");
	mp_write_int(w, 3);
	mp_reader r = reader_of_writer();
	cr_assert_eq(mp_read_cstr(&r, out, sizeof out), ORN_OK);
	cr_assert_str_eq(out, "1234567");
	cr_assert_eq(mp_read_cstr(&r, out, sizeof out), ORN_ETOOBIG);
	cr_assert_eq(mp_read_cstr(&r, out, sizeof out), ORN_EDECODE);
	cr_assert_eq(mp_read_cstr(&r, out, sizeof out), ORN_OK);
	cr_assert_str_eq(out, "");
	cr_assert_eq(mp_read_cstr(&r, out, sizeof out), ORN_EDECODE);
	mp_writer_reset(w);
	mp_write_cstr(w, "");
	r = reader_of_writer();
	cr_assert_eq(mp_read_cstr(&r, out, 0), ORN_ETOOBIG);
}

Test(mpack, str_eq)
{
	cr_assert(mp_str_eq("type", 4, "type"));
	cr_assert(mp_str_eq(NULL, 0, ""));
	cr_assert_not(mp_str_eq("typ", 3, "type"));
	cr_assert_not(mp_str_eq("types", 5, "type"));
	cr_assert_not(mp_str_eq("tyPe", 4, "type"));
}

/* ------------------------------------------------------ array, map, ext */

Test(mpack, container_headers_at_every_boundary)
{
	static const struct {
		uint32_t count;
		uint8_t array_head, map_head;
		size_t head_size;
	} cases[] = {{0, 0x90, 0x80, 1},
	             {15, 0x9f, 0x8f, 1},
	             {16, 0xdc, 0xde, 3},
	             {65535, 0xdc, 0xde, 3},
	             {65536, 0xdd, 0xdf, 5}};
	for (size_t i = 0; i < ORN_ARRAY_LEN(cases); i++) {
		for (int map = 0; map < 2; map++) {
			mp_writer_reset(w);
			if (map)
				mp_write_map(w, cases[i].count);
			else
				mp_write_array(w, cases[i].count);
			cr_assert_eq(mp_writer_size(w), cases[i].head_size);
			cr_assert_eq(mp_writer_data(w)[0], map ? cases[i].map_head : cases[i].array_head);
			for (uint32_t j = 0; j < cases[i].count * (map ? 2u : 1u); j++)
				mp_write_int(w, j % 100);
			mp_reader r = reader_of_writer();
			cr_assert_eq(mp_peek(&r), map ? MP_MAP : MP_ARRAY);
			uint32_t n;
			cr_assert_eq(map ? mp_read_map(&r, &n) : mp_read_array(&r, &n), ORN_OK);
			cr_assert_eq(n, cases[i].count);
			r = reader_of_writer();
			cr_assert_eq(map ? mp_read_array(&r, &n) : mp_read_map(&r, &n), ORN_EDECODE);
			r = reader_of_writer();
			cr_assert_eq(mp_skip(&r), ORN_OK);
			cr_assert_eq(mp_reader_remaining(&r), 0);
			/* One element short. */
			if (cases[i].count > 0) {
				mp_reader_init(&r, mp_writer_data(w), mp_writer_size(w) - 1);
				cr_assert_eq(mp_skip(&r), ORN_EDECODE);
			}
		}
	}
}

Test(mpack, ext_every_format)
{
	static const uint8_t exts[][24] = {
	        {0xd4, 0x01, 0xaa},
	        {0xd5, 0x01, 0xaa, 0xbb},
	        {0xd6, 0xff, 1, 2, 3, 4},
	        {0xd7, 0x02, 1, 2, 3, 4, 5, 6, 7, 8},
	        {0xd8, 0x03, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	        {0xc7, 0x03, 0x05, 'a', 'b', 'c'},
	        {0xc8, 0x00, 0x02, 0x05, 'h', 'i'},
	        {0xc9, 0x00, 0x00, 0x00, 0x01, 0x05, 'x'},
	        {0xc7, 0x00, 0x05},
	};
	static const size_t lens[] = {3, 4, 6, 10, 18, 6, 6, 7, 3};
	static const char *json[] = {"\"qg==\"",
	                             "\"qrs=\"",
	                             "\"AQIDBA==\"",
	                             "\"AQIDBAUGBwg=\"",
	                             "\"AQIDBAUGBwgJCgsMDQ4PEA==\"",
	                             "\"YWJj\"",
	                             "\"aGk=\"",
	                             "\"eA==\"",
	                             "\"\""};
	for (size_t i = 0; i < ORN_ARRAY_LEN(lens); i++) {
		mp_reader r;
		mp_reader_init(&r, exts[i], lens[i]);
		cr_assert_eq(mp_peek(&r), MP_EXT, "ext %zu", i);
		cr_assert_eq(mp_skip(&r), ORN_OK, "ext %zu", i);
		cr_assert_eq(mp_reader_remaining(&r), 0, "ext %zu", i);
		assert_json(exts[i], lens[i], json[i]);
		assert_prefixes_fail(exts[i], lens[i]);
	}
}

Test(mpack, reserved_byte_is_invalid)
{
	static const uint8_t bad[] = {0xc1};
	static const uint8_t in_array[] = {0x92, 0x01, 0xc1};
	mp_reader r;
	mp_reader_init(&r, bad, sizeof bad);
	cr_assert_eq(mp_peek(&r), MP_INVALID);
	cr_assert_eq(mp_skip(&r), ORN_EDECODE);
	mp_reader_init(&r, bad, sizeof bad);
	cr_assert_eq(mp_read_nil(&r), ORN_EDECODE);
	mp_reader_init(&r, in_array, sizeof in_array);
	cr_assert_eq(mp_skip(&r), ORN_EDECODE);
	orn_rc rc;
	cr_assert_null(to_json(in_array, sizeof in_array, &rc));
	cr_assert_eq(rc, ORN_EDECODE);
}

Test(mpack, wrong_types_are_rejected)
{
	mp_write_cstr(w, "x");
	mp_reader r = reader_of_writer();
	int64_t i;
	uint64_t u;
	bool b;
	const uint8_t *bin;
	uint32_t n;
	cr_assert_eq(mp_read_int(&r, &i), ORN_EDECODE);
	r = reader_of_writer();
	cr_assert_eq(mp_read_uint(&r, &u), ORN_EDECODE);
	r = reader_of_writer();
	cr_assert_eq(mp_read_bool(&r, &b), ORN_EDECODE);
	r = reader_of_writer();
	cr_assert_eq(mp_read_bin(&r, &bin, &n), ORN_EDECODE);
	r = reader_of_writer();
	cr_assert_eq(mp_read_array(&r, &n), ORN_EDECODE);
	r = reader_of_writer();
	cr_assert_eq(mp_read_map(&r, &n), ORN_EDECODE);
	r = reader_of_writer();
	cr_assert_eq(mp_read_nil(&r), ORN_EDECODE);
	mp_writer_reset(w);
	mp_write_int(w, 1);
	r = reader_of_writer();
	const char *s;
	cr_assert_eq(mp_read_str(&r, &s, &n), ORN_EDECODE);
}

Test(mpack, peek_classifies_every_byte)
{
	for (int b = 0; b < 256; b++) {
		uint8_t byte = (uint8_t)b;
		mp_reader r;
		mp_reader_init(&r, &byte, 1);
		mp_type t = mp_peek(&r);
		cr_assert_eq(t == MP_INVALID, b == 0xc1, "byte %#x", b);
		/* A lone byte is complete only for the one-byte formats. */
		orn_rc rc = mp_skip(&r);
		bool whole = b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3 || b == 0x80 ||
		             b == 0x90 || b == 0xa0;
		cr_assert_eq(rc == ORN_OK, whole, "byte %#x", b);
	}
	mp_reader r;
	mp_reader_init(&r, NULL, 0);
	cr_assert_eq(mp_reader_remaining(&r), 0);
	cr_assert_eq(mp_peek(&r), MP_INVALID);
	cr_assert_eq(mp_skip(&r), ORN_EDECODE);
}

/* ----------------------------------------------------- hostile input */

Test(mpack, hostile_counts_fail_fast)
{
	static const uint8_t inputs[][12] = {
	        {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03},
	        {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03},
	        {0xdc, 0xff, 0xff, 0xc0},
	        {0xde, 0x00, 0x02, 0xc0, 0xc0, 0xc0}, /* 2 entries need >= 4 bytes */
	        {0x91, 0xdd, 0x7f, 0xff, 0xff, 0xff},
	        {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
	        {0xc6, 0xff, 0xff, 0xff, 0xff, 'a'},
	        {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'},
	};
	static const size_t lens[] = {8, 8, 4, 6, 6, 6, 6, 7};
	for (size_t i = 0; i < ORN_ARRAY_LEN(lens); i++) {
		mp_reader r;
		mp_reader_init(&r, inputs[i], lens[i]);
		cr_assert_eq(mp_skip(&r), ORN_EDECODE, "input %zu", i);
		orn_rc rc;
		cr_assert_null(to_json(inputs[i], lens[i], &rc));
		cr_assert_eq(rc, ORN_EDECODE);
	}
	mp_reader r;
	uint32_t n;
	mp_reader_init(&r, inputs[0], lens[0]);
	cr_assert_eq(mp_read_array(&r, &n), ORN_EDECODE);
	mp_reader_init(&r, inputs[1], lens[1]);
	cr_assert_eq(mp_read_map(&r, &n), ORN_EDECODE);
}

/* depth nested one-element arrays around a nil (or maps {0: ...}). */
static void write_nested(mp_writer *to, size_t depth, bool maps)
{
	for (size_t i = 0; i < depth; i++) {
		if (maps) {
			mp_write_map(to, 1);
			mp_write_int(to, (int64_t)i);
		} else {
			mp_write_array(to, 1);
		}
	}
	mp_write_nil(to);
}

Test(mpack, nesting_is_bounded)
{
	for (int maps = 0; maps < 2; maps++) {
		mp_writer_reset(w);
		write_nested(w, MP_MAX_DEPTH, maps);
		mp_reader r = reader_of_writer();
		cr_assert_eq(mp_skip(&r), ORN_OK);
		orn_rc rc;
		json_t *v = to_json(mp_writer_data(w), mp_writer_size(w), &rc);
		cr_assert_not_null(v);
		json_decref(v);

		mp_writer_reset(w);
		write_nested(w, MP_MAX_DEPTH + 1, maps);
		r = reader_of_writer();
		cr_assert_eq(mp_skip(&r), ORN_EDECODE);
		cr_assert_null(to_json(mp_writer_data(w), mp_writer_size(w), &rc));
		cr_assert_eq(rc, ORN_EDECODE);
	}
	/* Empty containers count as a level too. */
	mp_writer_reset(w);
	for (int i = 0; i < MP_MAX_DEPTH; i++)
		mp_write_array(w, 1);
	mp_write_map(w, 0);
	mp_reader r = reader_of_writer();
	cr_assert_eq(mp_skip(&r), ORN_EDECODE);
	/* Far deeper than any stack would allow if the walk were recursive. */
	mp_writer_reset(w);
	write_nested(w, 1000000, false);
	r = reader_of_writer();
	cr_assert_eq(mp_skip(&r), ORN_EDECODE);
	orn_rc rc;
	cr_assert_null(to_json(mp_writer_data(w), mp_writer_size(w), &rc));
}

Test(mpack, read_raw_reports_the_value_span)
{
	mp_write_int(w, 1);
	mp_write_array(w, 2);
	mp_write_cstr(w, "a");
	mp_write_map(w, 1);
	mp_write_nil(w);
	mp_write_bool(w, true);
	mp_write_int(w, 2);
	mp_reader r = reader_of_writer();
	int64_t i;
	cr_assert_eq(mp_read_int(&r, &i), ORN_OK);
	const uint8_t *start;
	size_t len;
	cr_assert_eq(mp_read_raw(&r, &start, &len), ORN_OK);
	cr_assert_eq(start, mp_writer_data(w) + 1);
	cr_assert_eq(len, 6);
	cr_assert_eq(mp_read_int(&r, &i), ORN_OK);
	cr_assert_eq(i, 2);
	cr_assert_eq(mp_read_raw(&r, &start, &len), ORN_EDECODE);
}

/* --------------------------------------------------------------- writer */

Test(mpack, writer_grows_resets_and_appends_raw)
{
	cr_assert_not_null(mp_writer_data(w));
	cr_assert_eq(mp_writer_size(w), 0);
	for (int i = 0; i < 100000; i++)
		mp_write_uint(w, (uint64_t)i * 1000003u);
	cr_assert_eq(mp_writer_status(w), ORN_OK);
	mp_reader r = reader_of_writer();
	for (int i = 0; i < 100000; i++) {
		uint64_t v;
		cr_assert_eq(mp_read_uint(&r, &v), ORN_OK);
		cr_assert_eq(v, (uint64_t)i * 1000003u);
	}
	mp_writer_reset(w);
	cr_assert_eq(mp_writer_size(w), 0);
	mp_write_raw(w, "\x92\x01\x02", 3);
	mp_write_raw(w, NULL, 0);
	cr_assert_eq(mp_writer_size(w), 3);
	cr_assert_eq(memcmp(mp_writer_data(w), "\x92\x01\x02", 3), 0);
	mp_writer_destroy(NULL);
}

Test(mpack, writer_errors_are_sticky_until_reset)
{
	static const char byte = 'x';
	mp_write_int(w, 1);
	/* Longer than msgpack can describe: nothing is read from the pointer. */
	mp_write_str(w, &byte, (size_t)UINT32_MAX + 1);
	cr_assert_eq(mp_writer_status(w), ORN_ETOOBIG);
	mp_write_bin(w, &byte, (size_t)UINT32_MAX + 1);
	mp_write_int(w, 2);
	cr_assert_eq(mp_writer_status(w), ORN_ETOOBIG);
	cr_assert_eq(mp_writer_size(w), 1);
	mp_writer_reset(w);
	cr_assert_eq(mp_writer_status(w), ORN_OK);
	mp_write_raw(w, &byte, SIZE_MAX); /* cannot even be reserved */
	cr_assert_eq(mp_writer_status(w), ORN_ENOMEM);
	mp_write_bin(w, &byte, (size_t)UINT32_MAX + 1); /* first error stays */
	cr_assert_eq(mp_writer_status(w), ORN_ENOMEM);
	mp_writer_reset(w);
	mp_write_raw(w, &byte, SIZE_MAX / 4); /* reservable, but realloc fails */
	cr_assert_eq(mp_writer_status(w), ORN_ENOMEM);
	cr_assert_eq(mp_writer_size(w), 0);
	mp_writer_reset(w);
	mp_write_cstr(w, "ok");
	cr_assert_eq(mp_writer_status(w), ORN_OK);
}

/* ----------------------------------------------------------------- JSON */

Test(mpack, json_of_nested_values)
{
	mp_write_map(w, 3);
	mp_write_cstr(w, "a");
	mp_write_array(w, 4);
	mp_write_int(w, -5);
	mp_write_uint(w, UINT64_MAX);
	mp_write_bool(w, false);
	mp_write_nil(w);
	mp_write_cstr(w, "b");
	mp_write_map(w, 0);
	mp_write_cstr(w, "c");
	mp_write_array(w, 2);
	mp_write_array(w, 0);
	mp_write_bin(w, "\xff\x00\x10", 3);
	assert_json_of_writer("{\"a\":[-5,18446744073709551615,false,null],\"b\":{},\"c\":[[],\"/wAQ\"]}");
}

Test(mpack, json_of_non_string_keys)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 8);
	msgpack_pack_int(&pk, -7);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_nil(&pk);
	msgpack_pack_int(&pk, 2);
	msgpack_pack_true(&pk);
	msgpack_pack_int(&pk, 3);
	msgpack_pack_double(&pk, 2.5);
	msgpack_pack_int(&pk, 4);
	msgpack_pack_bin(&pk, 2);
	msgpack_pack_bin_body(&pk, "hi", 2);
	msgpack_pack_int(&pk, 5);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_str_with_body(&pk, "x\"", 2);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_int(&pk, 6);
	msgpack_pack_map(&pk, 2); /* scalar keys inside a container key are fine */
	msgpack_pack_int(&pk, 9);
	msgpack_pack_nil(&pk);
	msgpack_pack_str_with_body(&pk, "k", 1);
	msgpack_pack_array(&pk, 0);
	msgpack_pack_int(&pk, 7);
	msgpack_pack_double(&pk, (double)NAN);
	msgpack_pack_int(&pk, 8);
	assert_json(sb.data, sb.size,
	            "{\"-7\":1,\"null\":2,\"true\":3,\"2.5\":4,\"aGk=\":5,\"[\\\"x\\\\\\\"\\\",1]\":6,"
	            "\"{\\\"9\\\":null,\\\"k\\\":[]}\":7,\"null\":8}");
	msgpack_sbuffer_destroy(&sb);
}

Test(mpack, json_refuses_container_keys_inside_container_keys)
{
	/* {{[1]: 2}: 3} would need escaping twice; each level doubles it. */
	mp_write_map(w, 1);
	mp_write_map(w, 1);
	mp_write_array(w, 1);
	mp_write_int(w, 1);
	mp_write_int(w, 2);
	mp_write_int(w, 3);
	mp_writer *out = mp_writer_create();
	mp_write_raw(out, "prefix", 6);
	mp_reader r = reader_of_writer();
	cr_assert_eq(mp_to_json(&r, out), ORN_EDECODE);
	cr_assert_eq(mp_writer_size(out), 6, "output rolled back");
	mp_writer_destroy(out);
	/* A broken container key fails cleanly too. */
	static const uint8_t broken[] = {0x81, 0x91, 0xc1, 0x01};
	orn_rc rc;
	cr_assert_null(to_json(broken, sizeof broken, &rc));
	cr_assert_eq(rc, ORN_EDECODE);
	static const uint8_t broken_key[] = {0x81, 0xc1, 0x01};
	cr_assert_null(to_json(broken_key, sizeof broken_key, &rc));
}

Test(mpack, json_string_escapes)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
	        {"plain", 5, "\"plain\""},
	        {"", 0, "\"\""},
	        {"q\"b\\s/", 6, "\"q\\\"b\\\\s/\""},
	        {"\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\""},
	        {"\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\""},
	        {"a\0b", 3, "\"a\\u0000b\""},
	        {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""},
	        {"\xe2\x80\xa8|\xe2\x80\xa9|\xe2\x80\xaa", 11, "\"\\u2028|\\u2029|\xe2\x80\xaa\""},
	        /* ill-formed: lone continuation, overlongs, surrogates, > U+10FFFF */
	        {"\x80", 1, "\"\\ufffd\""},
	        {"\xc0\xaf", 2, "\"\\ufffd\\ufffd\""},
	        {"\xc1\xbf", 2, "\"\\ufffd\\ufffd\""},
	        {"\xe0\x80\xaf", 3, "\"\\ufffd\\ufffd\\ufffd\""},
	        {"\xe0\xa0\x80", 3, "\"\xe0\xa0\x80\""},
	        {"\xf0\x8f\xbf\xbf", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
	        {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""},
	        {"\xed\x9f\xbf", 3, "\"\xed\x9f\xbf\""},
	        {"\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
	        {"\xf4\x8f\xbf\xbf", 4, "\"\xf4\x8f\xbf\xbf\""},
	        {"\xf5\x80", 2, "\"\\ufffd\\ufffd\""},
	        {"\xff", 1, "\"\\ufffd\""},
	        /* truncated sequences: one U+FFFD for the maximal prefix */
	        {"\xe2\x82", 2, "\"\\ufffd\""},
	        {"\xf0\x9f\x98", 3, "\"\\ufffd\""},
	        {"\xf0\x9f\x98x", 4, "\"\\ufffdx\""},
	        {"\xc3", 1, "\"\\ufffd\""},
	        {"a\xc3z", 3, "\"a\\ufffdz\""},
	};
	for (size_t i = 0; i < ORN_ARRAY_LEN(cases); i++) {
		mp_writer_reset(w);
		mp_write_str(w, cases[i].in, cases[i].len);
		assert_json_of_writer(cases[i].out);
	}
	mp_writer_reset(w);
	mp_json_string(w, "k\"", 2);
	cr_assert_eq(mp_writer_size(w), 5);
	cr_assert_eq(memcmp(mp_writer_data(w), "\"k\\\"\"", 5), 0);
	mp_writer_reset(w);
	mp_json_string(w, NULL, 0);
	cr_assert_eq(mp_writer_size(w), 2);
	cr_assert_eq(memcmp(mp_writer_data(w), "\"\"", 2), 0);
}

Test(mpack, json_of_every_byte_pair_is_valid)
{
	uint8_t s[4];
	for (int a = 0; a < 256; a++) {
		for (int b = 0; b < 256; b++) {
			mp_writer_reset(w);
			s[0] = (uint8_t)a;
			s[1] = (uint8_t)b;
			s[2] = 0x80;
			s[3] = 0xbf;
			mp_write_str(w, (const char *)s, 4);
			orn_rc rc;
			json_t *v = to_json(mp_writer_data(w), mp_writer_size(w), &rc);
			cr_assert_eq(rc, ORN_OK);
			cr_assert(json_is_string(v));
			json_decref(v);
		}
	}
}

Test(mpack, json_of_random_strings_is_valid)
{
	srand(42);
	uint8_t s[64];
	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)rand() % sizeof s;
		for (size_t i = 0; i < len; i++) {
			/* Bias towards the interesting bytes. */
			static const uint8_t pool[] = {0x00, 0x1f, '"',  '\\', 0x7f, 0x80, 0xbf, 0xc0,
			                               0xc2, 0xdf, 0xe0, 0xe2, 0xed, 0xef, 0xf0, 0xf4,
			                               0xf5, 0xff, 0xa0, 0x90, 0x8f, 0x9f, 'a'};
			s[i] = rand() % 2 ? pool[(size_t)rand() % sizeof pool] : (uint8_t)rand();
		}
		mp_writer_reset(w);
		mp_write_map(w, 1);
		mp_write_str(w, (const char *)s, len);
		mp_write_str(w, (const char *)s, len);
		orn_rc rc;
		json_t *v = to_json(mp_writer_data(w), mp_writer_size(w), &rc);
		cr_assert_eq(rc, ORN_OK);
		json_decref(v);
	}
}

Test(mpack, json_of_random_bytes_is_valid_or_refused)
{
	srand(7);
	uint8_t buf[48];
	for (int round = 0; round < 50000; round++) {
		size_t len = 1 + (size_t)rand() % sizeof buf;
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand();
		/* Many small containers so that nesting gets exercised. */
		for (size_t i = 0; i < len; i += 3)
			buf[i] = (uint8_t)(0x80 + rand() % 0x20);
		orn_rc rc;
		json_t *v = to_json(buf, len, &rc);
		cr_assert(rc == ORN_OK || rc == ORN_EDECODE);
		json_decref(v);
		mp_reader r;
		mp_reader_init(&r, buf, len);
		/* JSON refuses only what skip refuses, plus nested container keys. */
		orn_rc skipped = mp_skip(&r);
		if (rc == ORN_OK)
			cr_assert_eq(skipped, ORN_OK);
	}
}

/* Given a map whose key and value hold quotes, control characters and
 * invalid UTF-8, when it becomes JSON, then the text is one line of valid
 * UTF-8 JSON (as `orion replay` prints it) and the bad bytes read back as U+FFFD. */
Test(mpack, json_of_hostile_map_is_one_valid_line)
{
	static const char key[] = "k\"\x02\xfe";
	static const char value[] = "a \"q\" \\ \n\r\t\x01\x1f \xff\xc3( \xed\xa0\x80";
	mp_writer *in = mp_writer_create(), *out = mp_writer_create();
	mp_write_map(in, 1);
	mp_write_str(in, key, sizeof key - 1);
	mp_write_str(in, value, sizeof value - 1);
	mp_reader r;
	mp_reader_init(&r, mp_writer_data(in), mp_writer_size(in));
	cr_assert_eq(mp_to_json(&r, out), ORN_OK);
	const unsigned char *text = (const unsigned char *)mp_writer_data(out);
	size_t n = mp_writer_size(out);
	for (size_t i = 0; i < n; i++)
		cr_assert_geq(text[i], 0x20, "raw control byte at %zu", i);
	json_error_t err;
	json_t *v = json_loadb((const char *)text, n, 0, &err);
	cr_assert_not_null(v, "invalid JSON (%s): %.*s", err.text, (int)n, (const char *)text);
	json_t *got = json_object_get(v, "k\"\x02\xef\xbf\xbd");
	cr_assert_not_null(got);
	cr_assert_str_eq(json_string_value(got), "a \"q\" \\ \n\r\t\x01\x1f \xef\xbf\xbd\xef\xbf\xbd( "
	                                         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	json_decref(v);
	mp_writer_destroy(in);
	mp_writer_destroy(out);
}

Test(mpack, allocation_failures)
{
	fail_allocation(1);
	cr_assert_null(mp_writer_create());
	fail_allocation(2);
	cr_assert_null(mp_writer_create());
	fail_allocation(0);
	/* A container key is rendered, copied aside and escaped. */
	mp_write_map(w, 1);
	mp_write_array(w, 1);
	mp_write_int(w, 1);
	mp_write_int(w, 2);
	mp_writer *out = mp_writer_create();
	mp_reader r = reader_of_writer();
	fail_allocation(1);
	cr_assert_eq(mp_to_json(&r, out), ORN_ENOMEM);
	fail_allocation(0);
	cr_assert_eq(mp_writer_size(out), 0);
	r = reader_of_writer();
	cr_assert_eq(mp_to_json(&r, out), ORN_OK);
	mp_writer_destroy(out);
	/* The key's own text outgrows the output buffer, and growing it fails. */
	mp_writer_reset(w);
	mp_write_map(w, 1);
	mp_write_array(w, 300);
	for (int i = 0; i < 300; i++)
		mp_write_int(w, i);
	mp_write_nil(w);
	out = mp_writer_create();
	r = reader_of_writer();
	fail_allocation(1);
	cr_assert_eq(mp_to_json(&r, out), ORN_ENOMEM);
	fail_allocation(0);
	cr_assert_eq(mp_writer_size(out), 0);
	mp_writer_destroy(out);
}
