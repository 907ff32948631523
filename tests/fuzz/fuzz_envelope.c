/* fuzz_envelope.c — libFuzzer harness for the codec (engine/mpack.c,
 * engine/envelope.c): every input goes through the commit and envelope
 * decoders, a typed reader walk, mp_skip and mp_to_json, and the results are
 * checked against each other (decode → encode → decode is stable, JSON output
 * parses, skip and JSON agree on where a value ends).
 *
 * Built with -DORN_FUZZ_STANDALONE (no libFuzzer, e.g. with gcc) it instead
 * runs each file named on the command line once: a plain regression run over
 * the corpus. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "mpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                          \
	do {                                                                                                 \
		if (!(cond)) {                                                                               \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
			abort();                                                                             \
		}                                                                                            \
	} while (0)

static bool same_envelope(const env_envelope *a, const env_envelope *b)
{
	return strcmp(a->type, b->type) == 0 && a->schema == b->schema && a->time_ms == b->time_ms &&
	       strcmp(a->correlation, b->correlation) == 0 && strcmp(a->causation, b->causation) == 0 &&
	       strcmp(a->actor, b->actor) == 0 && a->payload_len == b->payload_len &&
	       memcmp(a->payload, b->payload, a->payload_len) == 0;
}

static void check_decoded(const env_envelope *e, const uint8_t *data, size_t size)
{
	CHECK(e->type[0] != '\0' && e->schema >= 1);
	CHECK(e->payload >= data && e->payload_len > 0 && e->payload_len <= size &&
	      (size_t)(e->payload - data) <= size - e->payload_len);
}

static void fuzz_commit(const uint8_t *data, size_t size)
{
	static env_envelope first[ENV_MAX_EVENTS], second[ENV_MAX_EVENTS];
	size_t count, again;
	if (env_decode_commit(data, size, first, ENV_MAX_EVENTS, &count) != ORN_OK) {
		CHECK(count == 0);
		return;
	}
	CHECK(count >= 1 && count <= ENV_MAX_EVENTS);
	mp_writer *w = mp_writer_create();
	CHECK(w != NULL);
	env_commit_begin(w, (uint32_t)count);
	for (size_t i = 0; i < count; i++) {
		check_decoded(&first[i], data, size);
		CHECK(env_encode(w, &first[i]) == ORN_OK);
	}
	CHECK(env_decode_commit(mp_writer_data(w), mp_writer_size(w), second, ENV_MAX_EVENTS, &again) ==
	      ORN_OK);
	CHECK(again == count);
	for (size_t i = 0; i < count; i++)
		CHECK(same_envelope(&first[i], &second[i]));
	mp_writer_destroy(w);
}

static void fuzz_envelope(const uint8_t *data, size_t size)
{
	env_envelope e, d;
	if (env_decode_buffer(data, size, &e) != ORN_OK)
		return;
	check_decoded(&e, data, size);
	mp_writer *w = mp_writer_create();
	CHECK(w != NULL);
	CHECK(env_encode(w, &e) == ORN_OK);
	CHECK(env_decode_buffer(mp_writer_data(w), mp_writer_size(w), &d) == ORN_OK);
	CHECK(same_envelope(&e, &d));
	mp_writer_destroy(w);
}

/* Reads the input flat, value by value, with the typed readers. */
static void fuzz_reader_walk(const uint8_t *data, size_t size)
{
	mp_reader r;
	mp_reader_init(&r, data, size);
	while (mp_reader_remaining(&r) > 0) {
		size_t before = mp_reader_remaining(&r);
		orn_rc rc;
		char text[16];
		const uint8_t *bytes;
		const char *chars;
		uint32_t n;
		int64_t i;
		uint64_t u;
		bool b;
		switch (mp_peek(&r)) {
		case MP_NIL:
			rc = mp_read_nil(&r);
			break;
		case MP_BOOL:
			rc = mp_read_bool(&r, &b);
			break;
		case MP_INT:
			rc = mp_read_int(&r, &i);
			if (rc != ORN_OK) {
				mp_reader_init(&r, data + (size - before), before);
				rc = mp_read_uint(&r, &u);
			}
			break;
		case MP_STR:
			rc = mp_read_cstr(&r, text, sizeof text);
			if (rc == ORN_OK)
				CHECK(strlen(text) < sizeof text);
			if (rc != ORN_OK) { /* too long, NUL inside or truncated */
				mp_reader_init(&r, data + (size - before), before);
				rc = mp_read_str(&r, &chars, &n);
			}
			break;
		case MP_BIN:
			rc = mp_read_bin(&r, &bytes, &n);
			break;
		case MP_ARRAY:
			rc = mp_read_array(&r, &n);
			if (rc == ORN_OK)
				CHECK(n <= mp_reader_remaining(&r));
			break;
		case MP_MAP:
			rc = mp_read_map(&r, &n);
			if (rc == ORN_OK)
				CHECK(2 * (uint64_t)n <= mp_reader_remaining(&r));
			break;
		default:
			rc = mp_skip(&r);
			break;
		}
		if (rc != ORN_OK)
			return;
		CHECK(mp_reader_remaining(&r) < before);
	}
}

/* jansson refuses the escape \u0000 in object keys although JSON allows it. */
static void hide_nul_escapes(char *json, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (json[i] != '\\')
			continue;
		if (json[i + 1] == 'u' && i + 5 < len && memcmp(json + i + 2, "0000", 4) == 0)
			json[i + 5] = '1';
		i++;
	}
}

static void check_json(const uint8_t *text, size_t len)
{
	CHECK(len > 0 && memchr(text, '\0', len) == NULL);
	char *copy = malloc(len);
	CHECK(copy != NULL);
	memcpy(copy, text, len);
	hide_nul_escapes(copy, len);
	json_error_t err;
	json_t *v = json_loadb(copy, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &err);
	if (v == NULL) {
		fprintf(stderr, "invalid JSON (%s): %.*s\n", err.text, (int)len, copy);
		abort();
	}
	json_decref(v);
	free(copy);
}

/* Converts each top-level value in turn; skip and JSON must agree. */
static void fuzz_values(const uint8_t *data, size_t size)
{
	mp_reader skipper, converter;
	mp_reader_init(&skipper, data, size);
	mp_reader_init(&converter, data, size);
	mp_writer *out = mp_writer_create();
	CHECK(out != NULL);
	while (mp_reader_remaining(&skipper) > 0) {
		orn_rc skipped = mp_skip(&skipper);
		mp_writer_reset(out);
		orn_rc converted = mp_to_json(&converter, out);
		if (converted != ORN_OK) {
			CHECK(mp_writer_size(out) == 0);
			break;
		}
		CHECK(skipped == ORN_OK);
		CHECK(converter.pos == skipper.pos);
		check_json(mp_writer_data(out), mp_writer_size(out));
	}
	mp_writer_destroy(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_commit(data, size);
	fuzz_envelope(data, size);
	fuzz_reader_walk(data, size);
	fuzz_values(data, size);
	return 0;
}

#ifdef ORN_FUZZ_STANDALONE
int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (f == NULL) {
			perror(argv[i]);
			return 1;
		}
		uint8_t *buf = NULL;
		size_t len = 0, cap = 0, n;
		do {
			if (len == cap) {
				cap = cap ? cap * 2 : 4096;
				buf = realloc(buf, cap);
				CHECK(buf != NULL);
			}
			n = fread(buf + len, 1, cap - len, f);
			len += n;
		} while (n > 0);
		fclose(f);
		/* An exact-size copy so that sanitizers see any overread. */
		uint8_t *exact = malloc(len ? len : 1);
		CHECK(exact != NULL);
		if (len > 0)
			memcpy(exact, buf, len);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
		free(buf);
	}
	printf("ran %d inputs\n", argc - 1);
	return 0;
}
#endif
