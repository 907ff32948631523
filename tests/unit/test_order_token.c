/* test_order_token.c — actors/order_token.c: tokens are derived, stable,
 * distinct per order and per key, URL-safe, and hashed as the order
 * aggregate expects. */
#include <criterion/criterion.h>

#include <sodium.h>
#include <string.h>

#include "order_token.h"

static uint8_t key_a[ORDER_TOKEN_KEY_BYTES], key_b[ORDER_TOKEN_KEY_BYTES];

static void setup(void)
{
	cr_assert_geq(sodium_init(), 0);
	cr_assert_eq(order_token_key_derive((const uint8_t *)"secret-a", 8, key_a), ORN_OK);
	cr_assert_eq(order_token_key_derive((const uint8_t *)"secret-b", 8, key_b), ORN_OK);
}

TestSuite(order_token, .init = setup);

Test(order_token, the_key_depends_on_the_secret_and_is_not_the_secret)
{
	uint8_t again[ORDER_TOKEN_KEY_BYTES];
	cr_assert_eq(order_token_key_derive((const uint8_t *)"secret-a", 8, again), ORN_OK);
	cr_assert_eq(memcmp(again, key_a, sizeof again), 0);
	cr_assert_neq(memcmp(key_a, key_b, sizeof key_a), 0);
	cr_assert_eq(order_token_key_derive((const uint8_t *)"", 0, again), ORN_EINVAL);
	cr_assert_eq(order_token_key_derive(NULL, 8, again), ORN_EINVAL);
}

Test(order_token, tokens_are_stable_per_order_and_distinct_across_orders_and_keys)
{
	char t1[ORDER_TOKEN_MAX], t2[ORDER_TOKEN_MAX], t3[ORDER_TOKEN_MAX], t4[ORDER_TOKEN_MAX];
	cr_assert_eq(order_token_make(key_a, "o-1", t1), ORN_OK);
	cr_assert_eq(order_token_make(key_a, "o-1", t2), ORN_OK);
	cr_assert_eq(order_token_make(key_a, "o-2", t3), ORN_OK);
	cr_assert_eq(order_token_make(key_b, "o-1", t4), ORN_OK);
	cr_assert_str_eq(t1, t2);
	cr_assert_str_neq(t1, t3);
	cr_assert_str_neq(t1, t4);
	cr_assert_eq(strlen(t1), ORDER_TOKEN_LEN);
	for (size_t i = 0; t1[i] != '\0'; i++)
		cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", t1[i]),
		          "'%c' is not URL-safe", t1[i]);
}

Test(order_token, invalid_order_ids_get_no_token)
{
	char t[ORDER_TOKEN_MAX], long_id[ORDER_ID_MAX + 1];
	memset(long_id, 'a', ORDER_ID_MAX);
	long_id[ORDER_ID_MAX] = '\0';
	cr_assert_eq(order_token_make(key_a, "a.b", t), ORN_EINVAL);
	cr_assert_eq(order_token_make(key_a, "", t), ORN_EINVAL);
	cr_assert_eq(order_token_make(key_a, NULL, t), ORN_EINVAL);
	cr_assert_eq(order_token_make(key_a, long_id, t), ORN_EINVAL);
}

Test(order_token, hashes_are_lowercase_hex_sha256)
{
	char h[ORDER_TOKEN_HASH_MAX];
	order_token_hash("abc", 3, h);
	cr_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	order_request_hash("{}", 2, h);
	cr_assert_eq(strlen(h), ORDER_TOKEN_HASH_LEN);
	cr_assert_str_eq(h, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
}
