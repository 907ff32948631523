/* test_decision.c — the decision object (engine/decision.c): emitting events,
 * rejecting, the event limit and argument checks. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "decision.h"

#include "failalloc.h"

/* The nth allocation from now fails, once (0: off); skips the test where
 * injection is not available (sanitizer builds). */
static void fail_allocation(int nth)
{
	if (!failalloc_available())
		cr_skip_test("allocation failure injection needs glibc without ASan");
	failalloc_nth(nth);
}

static act_decision *d;

static void setup(void)
{
	d = act_decision_create();
	cr_assert_not_null(d);
}

static void teardown(void)
{
	act_decision_destroy(d);
}

TestSuite(decision, .init = setup, .fini = teardown);

Test(decision, starts_empty_and_accepted)
{
	cr_assert_null(act_decision_rejection(d));
	cr_assert_str_eq(act_decision_detail(d), "");
	cr_assert_eq(act_decision_count(d), 0);
	env_envelope e;
	cr_assert_eq(act_decision_event(d, 0, &e), ORN_ENOTFOUND);
	act_decision_destroy(NULL);
}

Test(decision, emitted_events_are_copied_in_order)
{
	uint8_t first[] = {0x81, 0xa1, 'q', 0x05};
	uint8_t second[] = {0xc3};
	cr_assert_eq(act_decision_emit(d, "StockReserved", 1, first, sizeof first), ORN_OK);
	cr_assert_eq(act_decision_emit(d, "StockLow", 3, second, sizeof second), ORN_OK);
	first[3] = 0x09; /* the decision keeps its own copy */
	cr_assert_eq(act_decision_count(d), 2);
	cr_assert_null(act_decision_rejection(d));
	env_envelope e;
	cr_assert_eq(act_decision_event(d, 0, &e), ORN_OK);
	cr_assert_str_eq(e.type, "StockReserved");
	cr_assert_eq(e.schema, 1);
	cr_assert_eq(e.payload_len, 4);
	cr_assert_eq(memcmp(e.payload, "\x81\xa1q\x05", 4), 0);
	cr_assert_eq(act_decision_event(d, 1, &e), ORN_OK);
	cr_assert_str_eq(e.type, "StockLow");
	cr_assert_eq(e.schema, 3);
	cr_assert_eq(e.payload_len, 1);
	cr_assert_eq(e.payload[0], 0xc3);
	cr_assert_str_eq(e.correlation, "");
	cr_assert_eq(act_decision_event(d, 2, &e), ORN_ENOTFOUND);
}

Test(decision, limit_of_events)
{
	static const uint8_t nil = 0xc0;
	for (int i = 0; i < ENV_MAX_EVENTS; i++)
		cr_assert_eq(act_decision_emit(d, "E", 1, &nil, 1), ORN_OK);
	cr_assert_eq(act_decision_emit(d, "E", 1, &nil, 1), ORN_ETOOBIG);
	cr_assert_eq(act_decision_count(d), ENV_MAX_EVENTS);
	act_decision_clear(d);
	cr_assert_eq(act_decision_count(d), 0);
	cr_assert_eq(act_decision_emit(d, "E", 1, &nil, 1), ORN_OK);
}

Test(decision, invalid_emits)
{
	static const uint8_t nil = 0xc0;
	char type[ENV_TYPE_MAX + 1];
	memset(type, 'T', ENV_TYPE_MAX);
	type[ENV_TYPE_MAX] = '\0';
	cr_assert_eq(act_decision_emit(d, NULL, 1, &nil, 1), ORN_EINVAL);
	cr_assert_eq(act_decision_emit(d, type, 1, &nil, 1), ORN_EINVAL);
	type[ENV_TYPE_MAX - 1] = '\0'; /* longest type that fits */
	cr_assert_eq(act_decision_emit(d, type, 1, &nil, 1), ORN_OK);
	cr_assert_eq(act_decision_emit(d, "E", 1, NULL, 1), ORN_EINVAL);
	cr_assert_eq(act_decision_emit(d, "E", 1, &nil, 0), ORN_EINVAL);
	cr_assert_eq(act_decision_count(d), 1);
}

Test(decision, allocation_failure_is_reported)
{
	/* A payload larger than the buffer's first allocation forces a growth. */
	static uint8_t big[70000];
	big[0] = 0xc6; /* bin32 of 69995 bytes */
	big[1] = 0x00;
	big[2] = 0x01;
	big[3] = 0x11;
	big[4] = 0x6b;
	fail_allocation(1);
	cr_assert_eq(act_decision_emit(d, "E", 1, big, sizeof big), ORN_ENOMEM);
	cr_assert_eq(act_decision_count(d), 0);
	act_decision_clear(d);
	cr_assert_eq(act_decision_emit(d, "E", 1, big, sizeof big), ORN_OK);
}

Test(decision, payloads_must_be_exactly_one_value)
{
	static const uint8_t two_nils[] = {0xc0, 0xc0}, truncated[] = {0xa5, 'a'};
	static const uint8_t nil = 0xc0;
	cr_assert_eq(act_decision_emit(d, "E", 1, two_nils, sizeof two_nils), ORN_EINVAL);
	cr_assert_eq(act_decision_emit(d, "E", 1, truncated, sizeof truncated), ORN_EINVAL);
	cr_assert_eq(act_decision_emit(d, "", 1, &nil, 1), ORN_EINVAL);
	cr_assert_eq(act_decision_emit(d, "E", 0, &nil, 1), ORN_EINVAL);
	cr_assert_eq(act_decision_count(d), 0);
}

Test(decision, reject_discards_events)
{
	static const uint8_t nil = 0xc0;
	cr_assert_eq(act_decision_emit(d, "E", 1, &nil, 1), ORN_OK);
	act_decision_reject(d, "out_of_stock", "only 2 left");
	cr_assert_str_eq(act_decision_rejection(d), "out_of_stock");
	cr_assert_str_eq(act_decision_detail(d), "only 2 left");
	cr_assert_eq(act_decision_count(d), 0);
	act_decision_reject(d, NULL, NULL);
	cr_assert_str_eq(act_decision_rejection(d), "rejected");
	cr_assert_str_eq(act_decision_detail(d), "");
	act_decision_clear(d);
	cr_assert_null(act_decision_rejection(d));
	cr_assert_str_eq(act_decision_detail(d), "");
}

Test(decision, long_rejection_texts_are_truncated)
{
	char code[200], detail[600];
	memset(code, 'c', sizeof code - 1);
	code[sizeof code - 1] = '\0';
	memset(detail, 'd', sizeof detail - 1);
	detail[sizeof detail - 1] = '\0';
	act_decision_reject(d, code, detail);
	cr_assert_lt(strlen(act_decision_rejection(d)), sizeof code - 1);
	cr_assert_lt(strlen(act_decision_detail(d)), sizeof detail - 1);
	cr_assert_eq(strncmp(act_decision_rejection(d), code, 10), 0);
}

Test(decision, create_fails_cleanly)
{
	for (int nth = 1; nth <= 3; nth++) {
		fail_allocation(nth);
		cr_assert_null(act_decision_create(), "allocation %d failed", nth);
	}
	fail_allocation(0);
}
