/* proj_codec.c — pure encodings of the read side: integers, keys, records,
 * cursors and subject filters. No LMDB calls: unit-tested on their own. */
#include <string.h>

#include "evstore.h"
#include "proj_cursor.h"
#include "proj_internal.h"

#define CURSOR_FORMAT 1

void proj_put_u64(uint8_t out[8], uint64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

uint64_t proj_get_u64(const uint8_t in[8])
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | in[i];
	return v;
}

void proj_key_i64(uint8_t out[8], int64_t v)
{
	uint64_t u = (uint64_t)v ^ (UINT64_C(1) << 63);
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(u >> (8 * (7 - i)));
}

int64_t proj_key_i64_decode(const uint8_t in[8])
{
	uint64_t u = 0;
	for (int i = 0; i < 8; i++)
		u = (u << 8) | in[i];
	return (int64_t)(u ^ (UINT64_C(1) << 63));
}

int proj_bytes_cmp(const void *a, size_t a_len, const void *b, size_t b_len)
{
	int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
	if (c != 0)
		return c;
	return a_len < b_len ? -1 : a_len > b_len;
}

bool proj_subject_matches(const char *filter, const char *subject)
{
	const char *f = filter, *s = subject;
	if (f == NULL || s == NULL || *f == '\0' || *s == '\0')
		return false;
	for (;;) {
		size_t fl = strcspn(f, "."), sl = strcspn(s, ".");
		if (fl == 1 && f[0] == '>')
			return sl > 0; /* ">" needs at least one more token */
		if (sl == 0)
			return false;
		if (!(fl == 1 && f[0] == '*') && (fl != sl || memcmp(f, s, fl) != 0))
			return false;
		f += fl;
		s += sl;
		if (*f == '\0' || *s == '\0')
			return *f == '\0' && *s == '\0';
		f++;
		s++;
	}
}

void proj_stock_record_encode(const proj_stock_record *r, uint8_t out[PROJ_STOCK_RECORD_LEN])
{
	memset(out, 0, PROJ_STOCK_RECORD_LEN);
	out[0] = PROJ_STOCK_RECORD_VERSION;
	out[1] = r->low ? 1 : 0;
	proj_put_u64(out + 8, (uint64_t)r->on_hand);
	proj_put_u64(out + 16, (uint64_t)r->reserved);
	proj_put_u64(out + 24, r->last_seq);
	proj_put_u64(out + 32, (uint64_t)r->threshold);
}

orn_rc proj_stock_record_decode(const void *buf, size_t len, proj_stock_record *out)
{
	const uint8_t *b = buf;
	bool version_1 = buf != NULL && len == 32 && b[0] == 1;
	if (!version_1 &&
	    (buf == NULL || len != PROJ_STOCK_RECORD_LEN || b[0] != PROJ_STOCK_RECORD_VERSION || b[1] > 1))
		return ORN_EDECODE;
	out->on_hand = (int64_t)proj_get_u64(b + 8);
	out->reserved = (int64_t)proj_get_u64(b + 16);
	out->last_seq = proj_get_u64(b + 24);
	out->threshold = version_1 ? 0 : (int64_t)proj_get_u64(b + 32);
	out->low = !version_1 && b[1] == 1;
	return ORN_OK;
}

/* ---- cursors: base64url without padding ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(char c)
{
	const char *p = c != '\0' ? strchr(b64, c) : NULL;
	return p != NULL ? (int)(p - b64) : -1;
}

orn_rc proj_page_end(orn_rc rc, bool more, size_t *count, const char *last_id, char *next_cursor, size_t cap)
{
	if (rc == ORN_OK && more && *count > 0)
		rc = proj_cursor_encode(last_id, next_cursor, cap);
	if (rc != ORN_OK)
		*count = 0;
	return rc;
}

orn_rc proj_cursor_encode(const char *id, char *out, size_t cap)
{
	uint8_t raw[ES_ID_MAX + 1];
	size_t n = 0, o = 0;
	if (!es_id_valid(id))
		return ORN_EINVAL;
	raw[n++] = CURSOR_FORMAT;
	size_t id_len = strlen(id);
	memcpy(raw + n, id, id_len);
	n += id_len;
	if (cap < (n * 4 + 2) / 3 + 1)
		return ORN_ETOOBIG;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16;
		size_t left = n - i;
		if (left > 1)
			v |= (uint32_t)raw[i + 1] << 8;
		if (left > 2)
			v |= raw[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		if (left > 1)
			out[o++] = b64[(v >> 6) & 63];
		if (left > 2)
			out[o++] = b64[v & 63];
	}
	out[o] = '\0';
	return ORN_OK;
}

orn_rc proj_cursor_decode(const char *cursor, char *id, size_t cap)
{
	uint8_t raw[ES_ID_MAX + 2];
	size_t n = 0, len = cursor != NULL ? strlen(cursor) : 0;
	if (len < 2 || len % 4 == 1 || len > (sizeof raw * 4 + 2) / 3)
		return ORN_EINVAL;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value(cursor[i]);
		if (v < 0)
			return ORN_EINVAL;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= sizeof raw)
				return ORN_EINVAL;
			raw[n++] = (uint8_t)(acc >> bits);
		}
	}
	if ((acc & ((1u << bits) - 1)) != 0) /* non-canonical trailing bits */
		return ORN_EINVAL;
	if (n < 2 || raw[0] != CURSOR_FORMAT || n - 1 >= cap)
		return ORN_EINVAL;
	memcpy(id, raw + 1, n - 1);
	id[n - 1] = '\0';
	return strlen(id) == n - 1 && es_id_valid(id) ? ORN_OK : ORN_EINVAL;
}
