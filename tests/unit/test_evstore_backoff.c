/* test_evstore_backoff.c — the nak delay of the durable consumers
 * (es_backoff_ms in engine/evstore.c): doubling per delivery, the cap, and
 * edge values that must neither loop long nor overflow. */
#include <criterion/criterion.h>

#include <stdint.h>

#include "evstore.h"

Test(evstore_backoff, the_first_delivery_waits_the_first_delay)
{
	/* Given a first delay of 100 ms under a 10 s cap, when delivery 1 fails, then it waits 100 ms. */
	cr_assert_eq(es_backoff_ms(1, 100, 10000), 100);
	/* Delivery number 0 (metadata unreadable) is treated like the first. */
	cr_assert_eq(es_backoff_ms(0, 100, 10000), 100);
}

Test(evstore_backoff, each_later_delivery_doubles_the_delay)
{
	cr_assert_eq(es_backoff_ms(2, 100, 10000), 200);
	cr_assert_eq(es_backoff_ms(3, 100, 10000), 400);
	cr_assert_eq(es_backoff_ms(7, 100, 10000), 6400);
	cr_assert_eq(es_backoff_ms(3, 250, 5000), 1000);
}

Test(evstore_backoff, the_delay_stops_at_the_cap)
{
	cr_assert_eq(es_backoff_ms(8, 100, 10000), 10000); /* 12800 capped */
	cr_assert_eq(es_backoff_ms(6, 250, 5000), 5000);   /* 8000 capped */
	cr_assert_eq(es_backoff_ms(UINT64_MAX, 100, 10000), 10000);
}

Test(evstore_backoff, a_first_delay_above_the_cap_is_capped)
{
	cr_assert_eq(es_backoff_ms(1, 250, 100), 100);
	cr_assert_eq(es_backoff_ms(1, 250, 0), 0);
}

Test(evstore_backoff, a_huge_cap_does_not_overflow)
{
	cr_assert_eq(es_backoff_ms(UINT64_MAX, 1, INT64_MAX), INT64_MAX);
	cr_assert_eq(es_backoff_ms(63, 1, INT64_MAX), INT64_C(1) << 62);
}

Test(evstore_backoff, a_zero_first_delay_stays_zero_at_once, .timeout = 5)
{
	cr_assert_eq(es_backoff_ms(UINT64_MAX, 0, 10000), 0);
}
