/* test_proj_codec.c — the pure encodings of projections/ (proj_codec.c):
 * integers and keys, records, cursors and subject filters. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "proj_cursor.h"
#include "proj_internal.h"

Test(proj_codec, u64_round_trips_little_endian)
{
	uint8_t b[8];
	proj_put_u64(b, UINT64_C(0x0102030405060708));
	cr_assert_eq(b[0], 0x08);
	cr_assert_eq(b[7], 0x01);
	cr_assert_eq(proj_get_u64(b), UINT64_C(0x0102030405060708));
	proj_put_u64(b, UINT64_MAX);
	cr_assert_eq(proj_get_u64(b), UINT64_MAX);
}

Test(proj_codec, i64_keys_sort_like_the_numbers)
{
	const int64_t values[] = {INT64_MIN, -1000000, -2, -1, 0, 1, 2, 255, 256, 1000000, INT64_MAX};
	uint8_t prev[8], cur[8];
	for (size_t i = 0; i < ORN_ARRAY_LEN(values); i++) {
		proj_key_i64(cur, values[i]);
		cr_assert_eq(proj_key_i64_decode(cur), values[i]);
		if (i > 0)
			cr_assert_lt(memcmp(prev, cur, 8), 0, "%lld !< %lld", (long long)values[i - 1],
			             (long long)values[i]);
		memcpy(prev, cur, 8);
	}
}

Test(proj_codec, bytes_compare_like_lmdb)
{
	cr_assert_lt(proj_bytes_cmp("a", 1, "b", 1), 0);
	cr_assert_lt(proj_bytes_cmp("ab", 2, "abc", 3), 0);
	cr_assert_gt(proj_bytes_cmp("abc", 3, "ab", 2), 0);
	cr_assert_eq(proj_bytes_cmp("abc", 3, "abc", 3), 0);
	cr_assert_gt(proj_bytes_cmp("b", 1, "abc", 3), 0);
}

Test(proj_codec, subject_filters_follow_nats_wildcards)
{
	cr_assert(proj_subject_matches("orion.evt.>", "orion.evt.stock.a"));
	cr_assert(proj_subject_matches("orion.evt.stock.>", "orion.evt.stock.sku-1"));
	cr_assert(proj_subject_matches("orion.evt.*.x", "orion.evt.stock.x"));
	cr_assert(proj_subject_matches("orion.evt.stock.x", "orion.evt.stock.x"));
	cr_assert_not(proj_subject_matches("orion.evt.stock.>", "orion.evt.stock"));
	cr_assert_not(proj_subject_matches("orion.evt.stock.>", "orion.evt.product.a"));
	cr_assert_not(proj_subject_matches("orion.evt.*", "orion.evt.stock.a"));
	cr_assert_not(proj_subject_matches("orion.evt.stock.x", "orion.evt.stock.xy"));
	cr_assert_not(proj_subject_matches("orion.evt.stock.xy", "orion.evt.stock.x"));
	cr_assert_not(proj_subject_matches("orion.evt.stock", "orion.evt.stock.x"));
	cr_assert_not(proj_subject_matches("", "a"));
	cr_assert_not(proj_subject_matches("a", ""));
	cr_assert_not(proj_subject_matches(NULL, "a"));
	cr_assert_not(proj_subject_matches("a.>", "a..b"));
}

Test(proj_codec, stock_record_round_trips)
{
	proj_stock_record in = {.on_hand = 1000000000, .reserved = -3, .last_seq = UINT64_MAX - 1}, out;
	uint8_t buf[PROJ_STOCK_RECORD_LEN];
	proj_stock_record_encode(&in, buf);
	cr_assert_eq(proj_stock_record_decode(buf, sizeof buf, &out), ORN_OK);
	cr_assert_eq(out.on_hand, in.on_hand);
	cr_assert_eq(out.reserved, in.reserved);
	cr_assert_eq(out.last_seq, in.last_seq);
	cr_assert_eq(out.threshold, 0);
	cr_assert_not(out.low);
	in.threshold = 1000000000;
	in.low = true;
	proj_stock_record_encode(&in, buf);
	cr_assert_eq(proj_stock_record_decode(buf, sizeof buf, &out), ORN_OK);
	cr_assert_eq(out.threshold, in.threshold);
	cr_assert(out.low);
}

Test(proj_codec, a_version_1_stock_record_decodes_without_a_threshold)
{
	uint8_t buf[32] = {1};
	proj_stock_record out = {.threshold = 9, .low = true};
	buf[8] = 7; /* on hand 7, little-endian */
	cr_assert_eq(proj_stock_record_decode(buf, sizeof buf, &out), ORN_OK);
	cr_assert_eq(out.on_hand, 7);
	cr_assert_eq(out.threshold, 0);
	cr_assert_not(out.low);
	buf[0] = 2; /* 32 bytes are version 1 only */
	cr_assert_eq(proj_stock_record_decode(buf, sizeof buf, &out), ORN_EDECODE);
}

Test(proj_codec, stock_record_rejects_other_lengths_and_versions)
{
	proj_stock_record r = {0}, out;
	uint8_t buf[PROJ_STOCK_RECORD_LEN];
	proj_stock_record_encode(&r, buf);
	cr_assert_eq(proj_stock_record_decode(buf, sizeof buf - 1, &out), ORN_EDECODE);
	cr_assert_eq(proj_stock_record_decode(NULL, 0, &out), ORN_EDECODE);
	buf[0] = PROJ_STOCK_RECORD_VERSION + 1;
	cr_assert_eq(proj_stock_record_decode(buf, sizeof buf, &out), ORN_EDECODE);
	buf[0] = PROJ_STOCK_RECORD_VERSION;
	buf[1] = 2; /* the low flag is 0 or 1 */
	cr_assert_eq(proj_stock_record_decode(buf, sizeof buf, &out), ORN_EDECODE);
}

Test(proj_codec, cursor_round_trips_every_id_length)
{
	char id[ES_ID_MAX + 1], cursor[PROJ_CURSOR_MAX], back[ES_ID_MAX + 1];
	const char alphabet[] = "abcXYZ019_-";
	for (size_t len = 1; len <= ES_ID_MAX; len++) {
		for (size_t i = 0; i < len; i++)
			id[i] = alphabet[(i * 7 + len) % (sizeof alphabet - 1)];
		id[len] = '\0';
		cr_assert_eq(proj_cursor_encode(id, cursor, sizeof cursor), ORN_OK, "len %zu", len);
		cr_assert_eq(
		        strspn(cursor, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
		        strlen(cursor), "cursor is url-safe");
		cr_assert_eq(proj_cursor_decode(cursor, back, sizeof back), ORN_OK, "len %zu", len);
		cr_assert_str_eq(back, id);
	}
}

Test(proj_codec, cursor_encode_rejects_invalid_ids_and_small_buffers)
{
	char cursor[PROJ_CURSOR_MAX];
	cr_assert_eq(proj_cursor_encode("a.b", cursor, sizeof cursor), ORN_EINVAL);
	cr_assert_eq(proj_cursor_encode("", cursor, sizeof cursor), ORN_EINVAL);
	cr_assert_eq(proj_cursor_encode("abcdef", cursor, 4), ORN_ETOOBIG);
}

Test(proj_codec, cursor_decode_rejects_what_it_did_not_write)
{
	char id[ES_ID_MAX + 1], cursor[PROJ_CURSOR_MAX];
	const char *bad[] = {"",        "A", "====", "abc!", "AA", /* format 0 */
	                     "c2t1LTE", /* base64 of "sku-1" without the format byte */
	                     "AS5h"};   /* format 1, id ".a": not an id */
	for (size_t i = 0; i < ORN_ARRAY_LEN(bad); i++)
		cr_assert_eq(proj_cursor_decode(bad[i], id, sizeof id), ORN_EINVAL, "'%s'", bad[i]);
	cr_assert_eq(proj_cursor_decode(NULL, id, sizeof id), ORN_EINVAL);
	/* Non-canonical trailing bits are refused: one cursor per id. */
	cr_assert_eq(proj_cursor_encode("a", cursor, sizeof cursor), ORN_OK);
	size_t n = strlen(cursor);
	cursor[n - 1] = cursor[n - 1] == 'A' ? 'B' : (char)(cursor[n - 1] + 1);
	cr_assert_eq(proj_cursor_decode(cursor, id, sizeof id), ORN_EINVAL);
	/* Too long for any id. */
	char longer[200];
	memset(longer, 'A', sizeof longer - 1);
	longer[sizeof longer - 1] = '\0';
	cr_assert_eq(proj_cursor_decode(longer, id, sizeof id), ORN_EINVAL);
	/* A small output buffer is refused, not overflowed. */
	cr_assert_eq(proj_cursor_encode("abcdef", cursor, sizeof cursor), ORN_OK);
	cr_assert_eq(proj_cursor_decode(cursor, id, 4), ORN_EINVAL);
}
