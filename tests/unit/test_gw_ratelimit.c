/* test_gw_ratelimit.c — gateway/gw_ratelimit.c: burst, refill over passed-in
 * time, independent keys, retry-after, and the memory bound (LRU eviction). */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "gw_ratelimit.h"

Test(gw_ratelimit, burst_then_refill)
{
	gw_ratelimit *rl = gw_ratelimit_create(1.0, 3, 100); /* 1 token/s, burst 3 */
	int64_t retry = 0;
	for (int i = 0; i < 3; i++)
		cr_assert(gw_ratelimit_take(rl, "acct:a@b.c", 1000, NULL));
	cr_assert_not(gw_ratelimit_take(rl, "acct:a@b.c", 1000, &retry));
	cr_assert_eq(retry, 1000);
	cr_assert_not(gw_ratelimit_take(rl, "acct:a@b.c", 1500, &retry));
	cr_assert_eq(retry, 500);
	cr_assert(gw_ratelimit_take(rl, "acct:a@b.c", 2000, NULL));
	cr_assert_not(gw_ratelimit_take(rl, "acct:a@b.c", 2000, NULL));
	/* A long pause refills to the burst, never beyond. */
	for (int i = 0; i < 3; i++)
		cr_assert(gw_ratelimit_take(rl, "acct:a@b.c", 100000, NULL));
	cr_assert_not(gw_ratelimit_take(rl, "acct:a@b.c", 100000, NULL));
	/* Time going backwards adds nothing. */
	cr_assert_not(gw_ratelimit_take(rl, "acct:a@b.c", 50, NULL));
	gw_ratelimit_destroy(rl);
}

Test(gw_ratelimit, keys_are_independent)
{
	gw_ratelimit *rl = gw_ratelimit_create(0.1, 1, 100);
	cr_assert(gw_ratelimit_take(rl, "ip:10.0.0.1", 0, NULL));
	cr_assert_not(gw_ratelimit_take(rl, "ip:10.0.0.1", 0, NULL));
	cr_assert(gw_ratelimit_take(rl, "ip:10.0.0.2", 0, NULL));
	cr_assert_eq(gw_ratelimit_size(rl), 2);
	gw_ratelimit_destroy(rl);
}

Test(gw_ratelimit, memory_is_bounded_and_oldest_is_evicted)
{
	gw_ratelimit *rl = gw_ratelimit_create(0.001, 1, 3);
	cr_assert(gw_ratelimit_take(rl, "a", 0, NULL));
	cr_assert(gw_ratelimit_take(rl, "b", 0, NULL));
	cr_assert(gw_ratelimit_take(rl, "c", 0, NULL));
	cr_assert_not(gw_ratelimit_take(rl, "a", 1, NULL)); /* a becomes the newest */
	cr_assert(gw_ratelimit_take(rl, "d", 2, NULL));     /* evicts b, the oldest */
	cr_assert_eq(gw_ratelimit_size(rl), 3);
	cr_assert_not(gw_ratelimit_take(rl, "a", 3, NULL)); /* still tracked */
	cr_assert(gw_ratelimit_take(rl, "b", 4, NULL));     /* forgotten, fresh bucket */
	char key[64];
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		gw_ratelimit_take(rl, key, 10, NULL);
	}
	cr_assert_eq(gw_ratelimit_size(rl), 3);
	gw_ratelimit_destroy(rl);
}

Test(gw_ratelimit, long_keys_are_shortened_consistently)
{
	gw_ratelimit *rl = gw_ratelimit_create(0.001, 1, 10);
	char key[2000];
	memset(key, 'x', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	cr_assert(gw_ratelimit_take(rl, key, 0, NULL));
	cr_assert_not(gw_ratelimit_take(rl, key, 0, NULL));
	key[1500] = 'y';
	cr_assert(gw_ratelimit_take(rl, key, 0, NULL));
	gw_ratelimit_destroy(rl);
}

Test(gw_ratelimit, bad_arguments)
{
	cr_assert_null(gw_ratelimit_create(0, 1, 1));
	cr_assert_null(gw_ratelimit_create(1, 0.5, 1));
	cr_assert_null(gw_ratelimit_create(1, 1, 0));
}

Test(gw_ratelimit, a_refund_gives_one_token_back_never_above_the_burst)
{
	gw_ratelimit *rl = gw_ratelimit_create(0.001, 2, 10);
	cr_assert(gw_ratelimit_take(rl, "k", 0, NULL));
	cr_assert(gw_ratelimit_take(rl, "k", 0, NULL));
	cr_assert_not(gw_ratelimit_take(rl, "k", 0, NULL));
	gw_ratelimit_refund(rl, "k");
	cr_assert(gw_ratelimit_take(rl, "k", 0, NULL));
	cr_assert_not(gw_ratelimit_take(rl, "k", 0, NULL));
	for (int i = 0; i < 5; i++)
		gw_ratelimit_refund(rl, "k");
	cr_assert(gw_ratelimit_take(rl, "k", 0, NULL));
	cr_assert(gw_ratelimit_take(rl, "k", 0, NULL));
	cr_assert_not(gw_ratelimit_take(rl, "k", 0, NULL), "at most burst tokens");
	gw_ratelimit_refund(rl, "unknown"); /* no bucket: nothing happens */
	cr_assert_eq(gw_ratelimit_size(rl), 1);
	gw_ratelimit_destroy(rl);
}

Test(gw_ratelimit, tracked_tells_the_keys_seen_and_keeps_them_recent)
{
	gw_ratelimit *rl = gw_ratelimit_create(1e-9, 1, 2);
	cr_assert_not(gw_ratelimit_tracked(rl, "a"));
	gw_ratelimit_take(rl, "a", 0, NULL);
	gw_ratelimit_take(rl, "b", 0, NULL);
	cr_assert(gw_ratelimit_tracked(rl, "a")); /* a is now the most recent */
	gw_ratelimit_take(rl, "c", 0, NULL);      /* evicts b */
	cr_assert(gw_ratelimit_tracked(rl, "a"));
	cr_assert_not(gw_ratelimit_tracked(rl, "b"));
	cr_assert(gw_ratelimit_tracked(rl, "c"));
	gw_ratelimit_destroy(rl);
}
