/* mpack.c — a strict, bounds-checked msgpack reader, a writer over msgpack-c's
 * packer, and the msgpack → JSON converter used by the gateway.
 *
 * Every reader path decodes a value "head" (type byte plus length fields and,
 * for str/bin/ext, the body) through one function that checks the remaining
 * length before each access. Nesting is walked with explicit stacks bounded by
 * MP_MAX_DEPTH, so hostile input can neither overflow the C stack nor make the
 * reader loop over counts that the buffer cannot possibly hold. */
#include "mpack.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

/* ---------------------------------------------------------------- reader */

/* One decoded value head. For str/bin/ext, data/len is the body; for
 * array/map, len is the element (entry) count. */
typedef struct mp_head {
	mp_type type;
	bool negative; /* MP_INT: the value is in sint (< 0), else in uint */
	uint64_t uint;
	int64_t sint;
	double real;
	bool boolean;
	uint32_t len;
	const uint8_t *data;
	int8_t ext_type;
} mp_head;

void mp_reader_init(mp_reader *r, const void *buf, size_t len)
{
	/* NULL + 0 is undefined in C, so an empty NULL buffer is special-cased. */
	r->pos = buf;
	r->end = buf != NULL ? r->pos + len : NULL;
}

size_t mp_reader_remaining(const mp_reader *r)
{
	return (size_t)(r->end - r->pos);
}

static mp_type type_of_byte(uint8_t b)
{
	if (b <= 0x7f || b >= 0xe0)
		return MP_INT;
	if (b <= 0x8f)
		return MP_MAP;
	if (b <= 0x9f)
		return MP_ARRAY;
	if (b <= 0xbf)
		return MP_STR;
	switch (b) {
	case 0xc0:
		return MP_NIL;
	case 0xc2:
	case 0xc3:
		return MP_BOOL;
	case 0xc4:
	case 0xc5:
	case 0xc6:
		return MP_BIN;
	case 0xc7:
	case 0xc8:
	case 0xc9:
	case 0xd4:
	case 0xd5:
	case 0xd6:
	case 0xd7:
	case 0xd8:
		return MP_EXT;
	case 0xca:
	case 0xcb:
		return MP_FLOAT;
	case 0xcc:
	case 0xcd:
	case 0xce:
	case 0xcf:
	case 0xd0:
	case 0xd1:
	case 0xd2:
	case 0xd3:
		return MP_INT;
	case 0xd9:
	case 0xda:
	case 0xdb:
		return MP_STR;
	case 0xdc:
	case 0xdd:
		return MP_ARRAY;
	case 0xde:
	case 0xdf:
		return MP_MAP;
	default: /* 0xc1, never used */
		return MP_INVALID;
	}
}

mp_type mp_peek(const mp_reader *r)
{
	if (r->pos >= r->end)
		return MP_INVALID;
	return type_of_byte(*r->pos);
}

/* Consumes n bytes, big-endian, into *out (n <= 8). */
static orn_rc take_be(mp_reader *r, size_t n, uint64_t *out)
{
	if (mp_reader_remaining(r) < n)
		return ORN_EDECODE;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | r->pos[i];
	r->pos += n;
	*out = v;
	return ORN_OK;
}

/* Consumes a body of len bytes and points *out at it. */
static orn_rc take_body(mp_reader *r, uint64_t len, const uint8_t **out)
{
	if (mp_reader_remaining(r) < len)
		return ORN_EDECODE;
	*out = r->pos;
	r->pos += len;
	return ORN_OK;
}

/* Width in bytes of the length field of a sized format (str/bin/ext/array/map
 * 8/16/32), from the low bits of its type byte. */
static size_t length_width(uint8_t b)
{
	switch (b) {
	case 0xc4:
	case 0xc7:
	case 0xd9:
		return 1;
	case 0xc5:
	case 0xc8:
	case 0xda:
	case 0xdc:
	case 0xde:
		return 2;
	default:
		return 4;
	}
}

static orn_rc read_sized(mp_reader *r, uint8_t b, mp_head *h)
{
	uint64_t len;
	orn_rc rc = take_be(r, length_width(b), &len);
	if (rc != ORN_OK)
		return rc;
	h->len = (uint32_t)len;
	if (h->type == MP_ARRAY || h->type == MP_MAP)
		return ORN_OK;
	if (h->type == MP_EXT) {
		uint64_t ext;
		if ((rc = take_be(r, 1, &ext)) != ORN_OK)
			return rc;
		h->ext_type = (int8_t)(uint8_t)ext;
	}
	return take_body(r, len, &h->data);
}

static orn_rc read_number(mp_reader *r, uint8_t b, mp_head *h)
{
	uint64_t v;
	orn_rc rc;
	if (b == 0xca || b == 0xcb) {
		if ((rc = take_be(r, b == 0xca ? 4 : 8, &v)) != ORN_OK)
			return rc;
		if (b == 0xca) {
			uint32_t bits = (uint32_t)v;
			float f;
			memcpy(&f, &bits, sizeof f);
			h->real = (double)f;
		} else {
			memcpy(&h->real, &v, sizeof h->real);
		}
		return ORN_OK;
	}
	size_t width = (size_t)1 << (b & 0x03);
	if ((rc = take_be(r, width, &v)) != ORN_OK)
		return rc;
	if (b <= 0xcf) { /* uint8..64 */
		h->uint = v;
		return ORN_OK;
	}
	/* int8..64: sign-extend from width bytes. */
	int64_t s;
	switch (width) {
	case 1:
		s = (int8_t)(uint8_t)v;
		break;
	case 2:
		s = (int16_t)(uint16_t)v;
		break;
	case 4:
		s = (int32_t)(uint32_t)v;
		break;
	default:
		s = (int64_t)v;
		break;
	}
	if (s < 0) {
		h->negative = true;
		h->sint = s;
	} else {
		h->uint = (uint64_t)s;
	}
	return ORN_OK;
}

/* Decodes the head of the next value (and the body of a str/bin/ext). For an
 * array or map, also checks that the buffer can hold the declared elements
 * (each needs at least one byte), so hostile counts fail at once. */
static orn_rc read_head(mp_reader *r, mp_head *h)
{
	memset(h, 0, sizeof *h);
	if (r->pos >= r->end)
		return ORN_EDECODE;
	uint8_t b = *r->pos++;
	h->type = type_of_byte(b);
	orn_rc rc = ORN_OK;

	if (b <= 0x7f) {
		h->uint = b;
	} else if (b >= 0xe0) {
		h->negative = true;
		h->sint = (int8_t)b;
	} else if (b <= 0x9f) {
		h->len = b & 0x0f;
	} else if (b <= 0xbf) {
		h->len = b & 0x1f;
		rc = take_body(r, h->len, &h->data);
	} else if (b >= 0xd4 && b <= 0xd8) {
		uint64_t ext;
		h->len = 1u << (b - 0xd4);
		if ((rc = take_be(r, 1, &ext)) == ORN_OK) {
			h->ext_type = (int8_t)(uint8_t)ext;
			rc = take_body(r, h->len, &h->data);
		}
	} else {
		switch (h->type) {
		case MP_NIL:
			break;
		case MP_BOOL:
			h->boolean = b == 0xc3;
			break;
		case MP_INT:
		case MP_FLOAT:
			rc = read_number(r, b, h);
			break;
		case MP_STR:
		case MP_BIN:
		case MP_EXT:
		case MP_ARRAY:
		case MP_MAP:
			rc = read_sized(r, b, h);
			break;
		default:
			rc = ORN_EDECODE;
			break;
		}
	}
	if (rc != ORN_OK)
		return rc;
	uint64_t min_bytes = h->type == MP_MAP ? 2 * (uint64_t)h->len : h->len;
	if ((h->type == MP_ARRAY || h->type == MP_MAP) && min_bytes > mp_reader_remaining(r))
		return ORN_EDECODE;
	return ORN_OK;
}

static orn_rc read_typed(mp_reader *r, mp_type type, mp_head *h)
{
	orn_rc rc = read_head(r, h);
	if (rc != ORN_OK)
		return rc;
	return h->type == type ? ORN_OK : ORN_EDECODE;
}

orn_rc mp_read_nil(mp_reader *r)
{
	mp_head h;
	return read_typed(r, MP_NIL, &h);
}

orn_rc mp_read_bool(mp_reader *r, bool *out)
{
	mp_head h;
	orn_rc rc = read_typed(r, MP_BOOL, &h);
	if (rc == ORN_OK)
		*out = h.boolean;
	return rc;
}

orn_rc mp_read_int(mp_reader *r, int64_t *out)
{
	mp_head h;
	orn_rc rc = read_typed(r, MP_INT, &h);
	if (rc != ORN_OK)
		return rc;
	if (h.negative) {
		*out = h.sint;
		return ORN_OK;
	}
	if (h.uint > (uint64_t)INT64_MAX)
		return ORN_EDECODE;
	*out = (int64_t)h.uint;
	return ORN_OK;
}

orn_rc mp_read_uint(mp_reader *r, uint64_t *out)
{
	mp_head h;
	orn_rc rc = read_typed(r, MP_INT, &h);
	if (rc != ORN_OK)
		return rc;
	if (h.negative)
		return ORN_EDECODE;
	*out = h.uint;
	return ORN_OK;
}

orn_rc mp_read_str(mp_reader *r, const char **out, uint32_t *len)
{
	mp_head h;
	orn_rc rc = read_typed(r, MP_STR, &h);
	if (rc != ORN_OK)
		return rc;
	*out = (const char *)h.data;
	*len = h.len;
	return ORN_OK;
}

orn_rc mp_read_bin(mp_reader *r, const uint8_t **out, uint32_t *len)
{
	mp_head h;
	orn_rc rc = read_typed(r, MP_BIN, &h);
	if (rc != ORN_OK)
		return rc;
	*out = h.data;
	*len = h.len;
	return ORN_OK;
}

orn_rc mp_read_array(mp_reader *r, uint32_t *count)
{
	mp_head h;
	orn_rc rc = read_typed(r, MP_ARRAY, &h);
	if (rc == ORN_OK)
		*count = h.len;
	return rc;
}

orn_rc mp_read_map(mp_reader *r, uint32_t *count)
{
	mp_head h;
	orn_rc rc = read_typed(r, MP_MAP, &h);
	if (rc == ORN_OK)
		*count = h.len;
	return rc;
}

orn_rc mp_read_cstr(mp_reader *r, char *out, size_t cap)
{
	const char *s;
	uint32_t len;
	orn_rc rc = mp_read_str(r, &s, &len);
	if (rc != ORN_OK)
		return rc;
	if ((size_t)len >= cap)
		return ORN_ETOOBIG;
	if (len > 0 && memchr(s, '\0', len) != NULL)
		return ORN_EDECODE;
	if (len > 0)
		memcpy(out, s, len);
	out[len] = '\0';
	return ORN_OK;
}

orn_rc mp_skip(mp_reader *r)
{
	/* left[d] = values still to skip at nesting level d (0 = the top value). */
	uint64_t left[MP_MAX_DEPTH + 1];
	int depth = 0;
	left[0] = 1;
	while (depth >= 0) {
		if (left[depth] == 0) {
			depth--;
			continue;
		}
		left[depth]--;
		mp_head h;
		orn_rc rc = read_head(r, &h);
		if (rc != ORN_OK)
			return rc;
		if (h.type != MP_ARRAY && h.type != MP_MAP)
			continue;
		if (depth + 1 > MP_MAX_DEPTH)
			return ORN_EDECODE;
		left[++depth] = h.type == MP_MAP ? 2 * (uint64_t)h.len : h.len;
	}
	return ORN_OK;
}

orn_rc mp_read_raw(mp_reader *r, const uint8_t **start, size_t *len)
{
	const uint8_t *from = r->pos;
	orn_rc rc = mp_skip(r);
	if (rc != ORN_OK)
		return rc;
	*start = from;
	*len = (size_t)(r->pos - from);
	return ORN_OK;
}

bool mp_str_eq(const char *s, uint32_t len, const char *key)
{
	size_t key_len = strlen(key);
	return key_len == len && (len == 0 || memcmp(s, key, len) == 0);
}

/* ---------------------------------------------------------------- writer */

struct mp_writer {
	uint8_t *buf;
	size_t len;
	size_t cap;
	orn_rc status;
	msgpack_packer packer;
};

/* Makes room for n more bytes; records a sticky error on failure. */
static bool writer_reserve(mp_writer *w, size_t n)
{
	if (w->status != ORN_OK)
		return false;
	if (n <= w->cap - w->len)
		return true;
	if (n > SIZE_MAX / 2 - w->len) {
		w->status = ORN_ENOMEM;
		return false;
	}
	size_t cap = w->cap;
	while (cap - w->len < n)
		cap *= 2;
	uint8_t *buf = realloc(w->buf, cap);
	if (buf == NULL) {
		w->status = ORN_ENOMEM;
		return false;
	}
	w->buf = buf;
	w->cap = cap;
	return true;
}

static void writer_append(mp_writer *w, const void *data, size_t n)
{
	if (n == 0 || !writer_reserve(w, n))
		return;
	memcpy(w->buf + w->len, data, n);
	w->len += n;
}

static void writer_putc(mp_writer *w, char c)
{
	writer_append(w, &c, 1);
}

static void writer_puts(mp_writer *w, const char *s)
{
	writer_append(w, s, strlen(s));
}

/* msgpack-c's write callback. */
static int packer_write(void *data, const char *buf, size_t len)
{
	mp_writer *w = data;
	writer_append(w, buf, len);
	return w->status == ORN_OK ? 0 : -1;
}

mp_writer *mp_writer_create(void)
{
	mp_writer *w = calloc(1, sizeof *w);
	if (w == NULL)
		return NULL;
	w->cap = 256;
	w->buf = malloc(w->cap);
	if (w->buf == NULL) {
		free(w);
		return NULL;
	}
	msgpack_packer_init(&w->packer, w, packer_write);
	return w;
}

void mp_writer_destroy(mp_writer *w)
{
	if (w == NULL)
		return;
	free(w->buf);
	free(w);
}

void mp_writer_reset(mp_writer *w)
{
	/* An empty buffer is consistent again, so the sticky error goes too. */
	w->len = 0;
	w->status = ORN_OK;
}

const uint8_t *mp_writer_data(const mp_writer *w)
{
	return w->buf;
}

size_t mp_writer_size(const mp_writer *w)
{
	return w->len;
}

orn_rc mp_writer_status(const mp_writer *w)
{
	return w->status;
}

void mp_write_nil(mp_writer *w)
{
	msgpack_pack_nil(&w->packer);
}

void mp_write_bool(mp_writer *w, bool v)
{
	if (v)
		msgpack_pack_true(&w->packer);
	else
		msgpack_pack_false(&w->packer);
}

void mp_write_int(mp_writer *w, int64_t v)
{
	msgpack_pack_int64(&w->packer, v);
}

void mp_write_uint(mp_writer *w, uint64_t v)
{
	msgpack_pack_uint64(&w->packer, v);
}

/* msgpack lengths are 32-bit; a longer string cannot be encoded. */
static bool length_fits(mp_writer *w, size_t len)
{
	if (len <= UINT32_MAX)
		return true;
	if (w->status == ORN_OK)
		w->status = ORN_ETOOBIG;
	return false;
}

void mp_write_str(mp_writer *w, const char *s, size_t len)
{
	if (!length_fits(w, len))
		return;
	msgpack_pack_str(&w->packer, len);
	msgpack_pack_str_body(&w->packer, s, len);
}

void mp_write_cstr(mp_writer *w, const char *s)
{
	if (s == NULL)
		mp_write_nil(w);
	else
		mp_write_str(w, s, strlen(s));
}

void mp_write_bin(mp_writer *w, const void *data, size_t len)
{
	if (!length_fits(w, len))
		return;
	msgpack_pack_bin(&w->packer, len);
	msgpack_pack_bin_body(&w->packer, data, len);
}

void mp_write_array(mp_writer *w, uint32_t count)
{
	msgpack_pack_array(&w->packer, count);
}

void mp_write_map(mp_writer *w, uint32_t count)
{
	msgpack_pack_map(&w->packer, count);
}

void mp_write_raw(mp_writer *w, const void *data, size_t len)
{
	writer_append(w, data, len);
}

/* ------------------------------------------------------------------ JSON */

static const char hex_digits[] = "0123456789abcdef";

static void json_escape_code(mp_writer *out, unsigned code)
{
	char esc[6] = {'\\',
	               'u',
	               hex_digits[(code >> 12) & 0xf],
	               hex_digits[(code >> 8) & 0xf],
	               hex_digits[(code >> 4) & 0xf],
	               hex_digits[code & 0xf]};
	writer_append(out, esc, sizeof esc);
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 if it
 * is ill-formed; then *bad is the length of its maximal ill-formed prefix
 * (>= 1), which is replaced by a single U+FFFD (Unicode's recommended
 * practice). Overlongs, surrogates and code points above U+10FFFF are
 * ill-formed. */
static size_t utf8_sequence(const uint8_t *s, size_t n, size_t *bad)
{
	uint8_t b = s[0];
	size_t need;
	uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
	if (b >= 0xc2 && b <= 0xdf) {
		need = 2;
	} else if (b >= 0xe0 && b <= 0xef) {
		need = 3;
		if (b == 0xe0)
			lo = 0xa0; /* overlong */
		else if (b == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (b >= 0xf0 && b <= 0xf4) {
		need = 4;
		if (b == 0xf0)
			lo = 0x90; /* overlong */
		else if (b == 0xf4)
			hi = 0x8f; /* > U+10FFFF */
	} else {
		*bad = 1;
		return 0;
	}
	for (size_t i = 1; i < need; i++) {
		uint8_t c = i < n ? s[i] : 0;
		bool ok = i < n && (i == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xbf));
		if (!ok) {
			*bad = i;
			return 0;
		}
	}
	return need;
}

void mp_json_string(mp_writer *out, const char *s, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0, run = 0; /* run: bytes at p[i - run..i) copied verbatim later */
	if (len == 0) {        /* s may be NULL, and NULL + 0 is undefined */
		writer_puts(out, "\"\"");
		return;
	}
	writer_putc(out, '"');
	while (i < len) {
		uint8_t b = p[i];
		if (b >= 0x20 && b != '"' && b != '\\' && b < 0x80) {
			i++;
			run++;
			continue;
		}
		size_t seq = 0, bad = 0;
		if (b >= 0x80) {
			seq = utf8_sequence(p + i, len - i, &bad);
			/* U+2028/2029 are valid JSON but break JavaScript string literals. */
			if (seq > 0 && !(seq == 3 && b == 0xe2 && p[i + 1] == 0x80 &&
			                 (p[i + 2] == 0xa8 || p[i + 2] == 0xa9))) {
				i += seq;
				run += seq;
				continue;
			}
		}
		writer_append(out, p + i - run, run);
		run = 0;
		if (b < 0x80) {
			const char *esc = NULL;
			switch (b) {
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			default:
				break;
			}
			if (esc != NULL)
				writer_puts(out, esc);
			else
				json_escape_code(out, b);
			i++;
		} else if (seq > 0) {
			json_escape_code(out, p[i + 2] == 0xa8 ? 0x2028 : 0x2029);
			i += seq;
		} else {
			json_escape_code(out, 0xfffd);
			i += bad;
		}
	}
	writer_append(out, p + i - run, run);
	writer_putc(out, '"');
}

static void json_base64(mp_writer *out, const uint8_t *data, size_t len)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	writer_putc(out, '"');
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
		char quad[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63],
		                alphabet[v & 63]};
		writer_append(out, quad, 4);
	}
	if (i < len) {
		uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0);
		char quad[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63],
		                i + 1 < len ? alphabet[(v >> 6) & 63] : '=', '='};
		writer_append(out, quad, 4);
	}
	writer_putc(out, '"');
}

static void json_double(mp_writer *out, double v, bool single)
{
	if (!isfinite(v)) {
		writer_puts(out, "null");
		return;
	}
	char num[40];
	int n = snprintf(num, sizeof num, single ? "%.9g" : "%.17g", v);
	/* A non-C locale may print a decimal comma. */
	for (int i = 0; i < n; i++)
		if (num[i] == ',')
			num[i] = '.';
	writer_append(out, num, (size_t)n);
}

/* Writes a value that is not a container. */
static void json_scalar(mp_writer *out, const mp_head *h)
{
	char num[24];
	switch (h->type) {
	case MP_NIL:
		writer_puts(out, "null");
		break;
	case MP_BOOL:
		writer_puts(out, h->boolean ? "true" : "false");
		break;
	case MP_INT:
		if (h->negative)
			snprintf(num, sizeof num, "%" PRId64, h->sint);
		else
			snprintf(num, sizeof num, "%" PRIu64, h->uint);
		writer_puts(out, num);
		break;
	case MP_FLOAT:
		json_double(out, h->real, false);
		break;
	case MP_STR:
		mp_json_string(out, (const char *)h->data, h->len);
		break;
	default: /* MP_BIN, MP_EXT */
		json_base64(out, h->data, h->len);
		break;
	}
}

static orn_rc json_value(mp_reader *r, mp_writer *out, int depth, bool in_key);

/* Writes a map key as a JSON string. A non-string key becomes its JSON text,
 * quoted. A container key is rendered, then escaped; a container key inside
 * such a key is refused, because each level of key-in-key doubles the escape
 * backslashes and a few bytes of input could expand to gigabytes. */
static orn_rc json_key(mp_reader *r, mp_writer *out, int depth, bool in_key)
{
	mp_type type = mp_peek(r);
	if (type == MP_ARRAY || type == MP_MAP) {
		if (in_key)
			return ORN_EDECODE;
		size_t from = out->len;
		orn_rc rc = json_value(r, out, depth, true);
		if (rc != ORN_OK)
			return rc;
		if (out->status != ORN_OK)
			return out->status;
		size_t n = out->len - from;
		char *text = malloc(n);
		if (text == NULL)
			return ORN_ENOMEM;
		memcpy(text, out->buf + from, n);
		out->len = from;
		mp_json_string(out, text, n);
		free(text);
		return ORN_OK;
	}
	mp_head h;
	orn_rc rc = read_head(r, &h);
	if (rc != ORN_OK)
		return rc;
	bool quote = h.type != MP_STR && h.type != MP_BIN && h.type != MP_EXT;
	if (quote)
		writer_putc(out, '"');
	json_scalar(out, &h);
	if (quote)
		writer_putc(out, '"');
	return ORN_OK;
}

/* Converts one value; depth is the nesting level of the caller's container.
 * Iterative: frames[] holds the open containers. */
static orn_rc json_value(mp_reader *r, mp_writer *out, int depth, bool in_key)
{
	struct frame {
		uint64_t left; /* values still to write; for a map, keys and values */
		bool map;
		bool first;
	} frames[MP_MAX_DEPTH];
	int open = 0;
	do {
		if (open > 0) {
			struct frame *f = &frames[open - 1];
			bool is_key = f->map && f->left % 2 == 0;
			if (!f->first && (!f->map || is_key))
				writer_putc(out, ',');
			f->first = false;
			f->left--;
			if (is_key) {
				orn_rc rc = json_key(r, out, depth + open, in_key);
				if (rc != ORN_OK)
					return rc;
				writer_putc(out, ':');
				continue; /* the key's value follows */
			}
		}
		mp_head h;
		orn_rc rc = read_head(r, &h);
		if (rc != ORN_OK)
			return rc;
		if (h.type == MP_ARRAY || h.type == MP_MAP) {
			if (depth + open + 1 > MP_MAX_DEPTH)
				return ORN_EDECODE;
			bool map = h.type == MP_MAP;
			writer_putc(out, map ? '{' : '[');
			if (h.len > 0)
				frames[open++] = (struct frame){map ? 2 * (uint64_t)h.len : h.len, map, true};
			else
				writer_putc(out, map ? '}' : ']');
		} else {
			json_scalar(out, &h);
		}
		while (open > 0 && frames[open - 1].left == 0) {
			writer_putc(out, frames[open - 1].map ? '}' : ']');
			open--;
		}
	} while (open > 0);
	return ORN_OK;
}

orn_rc mp_to_json(mp_reader *r, mp_writer *out)
{
	size_t from = out->len;
	orn_rc rc = json_value(r, out, 0, false);
	if (rc == ORN_OK)
		rc = out->status;
	/* On failure, drop the partial text so out never holds broken JSON. */
	if (rc != ORN_OK)
		out->len = from;
	return rc;
}
