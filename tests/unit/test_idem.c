/* test_idem.c — the ledger of commands an aggregate answered (engine/idem.c):
 * keyed requests (repeat, reused key, expiry, the live-entry bound) and the
 * ring of recent command ids, and the snapshot codec. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "envelope.h"
#include "idem.h"

#define DAY IDEM_TTL_MS

static idem_ledger *l;

static void setup(void)
{
	l = idem_create();
	cr_assert_not_null(l);
}

static void teardown(void)
{
	idem_destroy(l);
}

TestSuite(idem, .init = setup, .fini = teardown);

Test(idem, a_keyed_request_is_answered_again_and_a_reused_key_refused)
{
	uint64_t seq = 0;
	cr_assert_eq(idem_check(l, "adjust:k1", "req-a", 1000, &seq), IDEM_NEW);
	cr_assert_eq(idem_record(l, "adjust:k1", "req-a", 42, 1000), ORN_OK);
	cr_assert_eq(idem_check(l, "adjust:k1", "req-a", 2000, &seq), IDEM_REPEAT);
	cr_assert_eq(seq, 42);
	cr_assert_eq(idem_check(l, "adjust:k1", "req-b", 2000, &seq), IDEM_REUSED);
	/* still known a minute short of a day later, forgotten once a later commit prunes it */
	cr_assert_eq(idem_check(l, "adjust:k1", "req-a", 1000 + DAY - 60000, &seq), IDEM_REPEAT);
	cr_assert_eq(idem_record(l, "other", "req-c", 43, 1000 + DAY), ORN_OK);
	cr_assert_eq(idem_check(l, "adjust:k1", "req-b", 1000 + DAY, &seq), IDEM_NEW);
	cr_assert_eq(idem_count(l), 1);
}

Test(idem, a_second_event_of_one_commit_records_nothing)
{
	cr_assert_eq(idem_record(l, "k", "r", 7, 1), ORN_OK);
	cr_assert_eq(idem_record(l, "k", "r", 7, 1), ORN_OK);
	cr_assert_eq(idem_count(l), 1);
}

Test(idem, past_the_bound_of_live_keys_new_ones_are_refused_until_one_expires)
{
	char key[32];
	uint64_t seq = 0;
	for (int i = 0; i < IDEM_CAPACITY; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(idem_record(l, key, "r", (uint64_t)i + 1, 1000 + i), ORN_OK);
	}
	cr_assert_eq(idem_check(l, "new", "r", 5000, &seq), IDEM_FULL);
	cr_assert_eq(idem_check(l, "k3", "r", 5000, &seq), IDEM_REPEAT, "a known key is still answered");
	cr_assert_eq(idem_check(l, "new", "r", 1000 + DAY, &seq), IDEM_NEW, "the first one expired");
}

Test(idem, recent_commands_are_seen_by_id_and_the_ring_forgets_the_oldest)
{
	char key[32];
	uint64_t seq = 0;
	for (int i = 0; i < IDEM_RECENT + 1; i++) {
		snprintf(key, sizeof key, "cmd-%d", i);
		cr_assert_eq(idem_record(l, key, "", (uint64_t)i + 1, 1), ORN_OK);
	}
	cr_assert(idem_seen(l, "cmd-1", &seq));
	cr_assert_eq(seq, 2);
	cr_assert(idem_seen(l, "cmd-16", &seq));
	cr_assert_not(idem_seen(l, "cmd-0", &seq), "the oldest was overwritten");
	cr_assert_not(idem_seen(l, "never", &seq));
	cr_assert_eq(idem_count(l), 0, "unkeyed commands are not keyed entries");
}

Test(idem, bad_records_are_refused)
{
	char long_key[ENV_ID_MAX + 8];
	memset(long_key, 'x', sizeof long_key - 1);
	long_key[sizeof long_key - 1] = '\0';
	cr_assert_eq(idem_record(l, "", "r", 1, 1), ORN_EINVAL);
	cr_assert_eq(idem_record(l, NULL, "r", 1, 1), ORN_EINVAL);
	cr_assert_eq(idem_record(l, long_key, "r", 1, 1), ORN_EINVAL);
}

Test(idem, the_snapshot_codec_round_trips_both_memories)
{
	uint64_t seq = 0;
	mp_writer *w = mp_writer_create();
	idem_ledger *copy = idem_create();
	cr_assert_eq(idem_record(l, "keyed", "fp", 5, 100), ORN_OK);
	for (int i = 0; i < IDEM_RECENT + 3; i++) {
		char key[16];
		snprintf(key, sizeof key, "c%d", i);
		cr_assert_eq(idem_record(l, key, "", (uint64_t)i + 10, 100), ORN_OK);
	}
	cr_assert_eq(idem_encode(l, w), ORN_OK);
	mp_reader r;
	mp_reader_init(&r, mp_writer_data(w), mp_writer_size(w));
	cr_assert_eq(idem_decode(copy, &r), ORN_OK);
	cr_assert_eq(mp_reader_remaining(&r), 0);
	cr_assert_eq(idem_check(copy, "keyed", "other", 200, &seq), IDEM_REUSED);
	cr_assert(idem_seen(copy, "c18", &seq));
	cr_assert_eq(seq, 28);
	cr_assert_not(idem_seen(copy, "c2", &seq));
	/* a truncated snapshot does not decode */
	for (size_t cut = 0; cut < mp_writer_size(w); cut++) {
		mp_reader_init(&r, mp_writer_data(w), cut);
		cr_assert_neq(idem_decode(copy, &r), ORN_OK, "cut at %zu", cut);
	}
	idem_destroy(copy);
	mp_writer_destroy(w);
}
