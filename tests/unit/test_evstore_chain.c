/* test_evstore_chain.c — the fold rule of the commit chain (es_chain_accepts
 * in engine/evstore.c, ADR 015) on hand-made logs of one subject, folded the
 * way every reader folds them: a commit is valid when it records no version
 * (legacy) or the sequence of the previous valid commit; only a valid commit
 * moves the chain's head. Also the Orion-Prev header as a stored message
 * carries it (es_msg_prev). No server. */
#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdint.h>

#include "evstore-internal.h"
#include "evstore.h"

/* One stored commit of a subject: its sequence and what its Orion-Prev says. */
typedef struct commit {
	uint64_t seq;
	bool chained;
	uint64_t prev;
} commit;

#define CHAINED(seq, prev)                                                                                   \
	{                                                                                                    \
		(seq), true, (prev)                                                                          \
	}
#define LEGACY(seq)                                                                                          \
	{                                                                                                    \
		(seq), false, 0                                                                              \
	}

/* Folds count commits in order from an empty subject; valid[i] receives the
 * verdict of commit i. Returns the last valid sequence (the version). */
static uint64_t fold(const commit *log, size_t count, bool *valid)
{
	uint64_t last_valid = 0;
	for (size_t i = 0; i < count; i++) {
		valid[i] = es_chain_accepts(last_valid, log[i].chained, log[i].prev);
		if (valid[i])
			last_valid = log[i].seq;
	}
	return last_valid;
}

static void expect_verdicts(const commit *log, size_t count, const bool *want, uint64_t want_version)
{
	bool got[32];
	cr_assert_leq(count, 32);
	uint64_t version = fold(log, count, got);
	for (size_t i = 0; i < count; i++)
		cr_expect_eq(got[i], want[i], "commit at seq %llu (prev %llu, %s): %s, expected %s",
		             (unsigned long long)log[i].seq, (unsigned long long)log[i].prev,
		             log[i].chained ? "chained" : "legacy", got[i] ? "valid" : "void",
		             want[i] ? "valid" : "void");
	cr_expect_eq(version, want_version);
}

Test(evstore_chain, a_chain_where_each_commit_names_the_last_valid_one_is_all_valid)
{
	/* Given commits 3, 8, 9 of one subject, each decided on the one before
	 * (other subjects hold the sequences between), then all are valid. */
	commit log[] = {CHAINED(3, 0), CHAINED(8, 3), CHAINED(9, 8)};
	bool want[] = {true, true, true};
	expect_verdicts(log, 3, want, 9);
}

Test(evstore_chain, the_loser_of_a_race_on_one_version_is_void)
{
	/* Two commits decided on version 3 were both stored (the R3 race): the
	 * first is valid, the second changes nothing. */
	commit log[] = {CHAINED(3, 0), CHAINED(5, 3), CHAINED(6, 3)};
	bool want[] = {true, true, false};
	expect_verdicts(log, 3, want, 5);
}

Test(evstore_chain, a_commit_after_a_void_one_that_names_the_right_version_is_valid)
{
	/* The loser decided again on 5 (the version), though the subject's last
	 * commit is the void 6: valid. */
	commit log[] = {CHAINED(3, 0), CHAINED(5, 3), CHAINED(6, 3), CHAINED(7, 5)};
	bool want[] = {true, true, false, true};
	expect_verdicts(log, 4, want, 7);
}

Test(evstore_chain, a_commit_that_names_a_void_commit_is_void)
{
	/* A writer that took the void 6 for the version: its commit is void too,
	 * and so is every commit built on it. */
	commit log[] = {CHAINED(3, 0), CHAINED(5, 3), CHAINED(6, 3),
	                CHAINED(7, 6), CHAINED(8, 7), CHAINED(9, 5)};
	bool want[] = {true, true, false, false, false, true};
	expect_verdicts(log, 6, want, 9);
}

Test(evstore_chain, a_first_commit_must_name_version_zero)
{
	/* Two creations of one aggregate: the second also said "new" (0) and is
	 * void; a first commit that names anything but 0 is void. */
	commit race[] = {CHAINED(4, 0), CHAINED(5, 0)};
	bool race_want[] = {true, false};
	expect_verdicts(race, 2, race_want, 4);
	commit stray[] = {CHAINED(4, 2), CHAINED(6, 0)};
	bool stray_want[] = {false, true};
	expect_verdicts(stray, 2, stray_want, 6);
}

Test(evstore_chain, legacy_commits_without_a_version_are_always_valid)
{
	/* Commits written before the rule record nothing: every one counts, even
	 * two that raced (the pre-fix oversell stays visible to folds), and a
	 * chained commit after them must name the last of them. */
	commit log[] = {LEGACY(1),     LEGACY(2), LEGACY(3),    CHAINED(4, 3),
	                CHAINED(5, 3), LEGACY(6), CHAINED(7, 4)};
	bool want[] = {true, true, true, true, false, true, false};
	expect_verdicts(log, 7, want, 6);
}

Test(evstore_chain, a_legacy_commit_moves_the_head_for_the_chained_ones_after_it)
{
	commit log[] = {CHAINED(2, 0), LEGACY(3), CHAINED(4, 2), CHAINED(5, 3)};
	bool want[] = {true, true, false, true};
	expect_verdicts(log, 4, want, 5);
}

Test(evstore_chain, the_rule_alone)
{
	cr_expect(es_chain_accepts(0, false, 0));
	cr_expect(es_chain_accepts(17, false, 3), "legacy: whatever the head");
	cr_expect(es_chain_accepts(0, true, 0));
	cr_expect(es_chain_accepts(17, true, 17));
	cr_expect_not(es_chain_accepts(17, true, 16));
	cr_expect_not(es_chain_accepts(17, true, 18), "a version from the future");
	cr_expect_not(es_chain_accepts(0, true, 1));
	cr_expect(es_chain_accepts(UINT64_MAX, true, UINT64_MAX));
}

/* A stored message with an Orion-Prev header of value (NULL: none). */
static natsMsg *message(const char *value)
{
	natsMsg *m = NULL;
	cr_assert_eq(nats_Open(-1), NATS_OK);
	cr_assert_eq(natsMsg_Create(&m, "orion.evt.stock.p-1", NULL, "x", 1), NATS_OK);
	if (value != NULL)
		cr_assert_eq(natsMsgHeader_Set(m, "Orion-Prev", value), NATS_OK);
	return m;
}

Test(evstore_chain, the_header_says_whether_and_on_what_a_commit_was_decided)
{
	bool chained = true;
	uint64_t prev = 99;
	natsMsg *m = message(NULL);
	cr_expect(es_msg_prev(m, &chained, &prev));
	cr_expect_not(chained, "no header: a legacy commit");
	natsMsg_Destroy(m);

	m = message("0");
	cr_expect(es_msg_prev(m, &chained, &prev));
	cr_expect(chained);
	cr_expect_eq(prev, 0);
	natsMsg_Destroy(m);

	m = message("4294967296000");
	cr_expect(es_msg_prev(m, &chained, &prev));
	cr_expect_eq(prev, 4294967296000ULL);
	natsMsg_Destroy(m);

	/* present but not a number: no valid commit can be built on it */
	const char *bad[] = {"12x", "-1", "18446744073709551616", " 7"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		m = message(bad[i]);
		cr_expect_not(es_msg_prev(m, &chained, &prev), "'%s' read as a version", bad[i]);
		natsMsg_Destroy(m);
	}
}

Test(evstore_chain, a_delivery_names_its_stream_sequence_in_either_reply_format)
{
	cr_expect_eq(es_delivered_seq("$JS.ACK.ORION_EVT.c1.1.4711.12.1700000000000000000.3"), 4711);
	cr_expect_eq(es_delivered_seq("$JS.ACK._.ACCHASH.ORION_EVT.c1.1.99.12.1700000000000000000.0"), 99);
	cr_expect_eq(es_delivered_seq("$JS.ACK.hub.ACCHASH.ORION_EVT.c1.2.100.13.1700000000000000000.0.xyz"),
	             100);
	const char *bad[] = {NULL,
	                     "",
	                     "_INBOX.abc",
	                     "$JS.ACK.ORION_EVT.c1.1",
	                     "$JS.ACK.S.c.1.x9.1.1.1",
	                     "$JS.ACK.S.c.1.2.3.4.5.6.7.8.9.10"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_expect_eq(es_delivered_seq(bad[i]), 0, "'%s'", bad[i] ? bad[i] : "(null)");
}

Test(evstore_chain, a_delivery_names_when_the_stream_stored_it)
{
	int64_t ns = -1;
	cr_expect_eq(es_delivered_position("$JS.ACK.ORION_EVT.c1.1.4711.12.1700000000000000001.3", &ns),
	             4711);
	cr_expect_eq(ns, 1700000000000000001);
	cr_expect_eq(es_delivered_position(
	                     "$JS.ACK.hub.ACCHASH.ORION_EVT.c1.2.100.13.1700000000000000002.0.xyz", &ns),
	             100);
	cr_expect_eq(ns, 1700000000000000002);
	cr_expect_eq(es_delivered_position("$JS.ACK.ORION_EVT.c1.1.7.12.x.3", &ns), 7,
	             "a time it cannot read");
	cr_expect_eq(ns, 0);
	cr_expect_eq(es_delivered_position("_INBOX.abc", &ns), 0);
	cr_expect_eq(ns, 0);
}

/* ---- a confirmation's steps (es_confirm_step) ------------------------------ */

Test(evstore_chain, a_confirmation_meets_the_commit_or_a_valid_one_before_it)
{
	es_confirm c;
	/* decided on version 10 after reading up to 12; acknowledged at 20 */
	es_confirm_init(&c, &(es_position){10, 12}, 20);
	cr_assert_eq(es_confirm_step(&c, 14, true, 9), ES_LOOK_AGAIN, "a void commit: look on");
	cr_assert_eq(c.from, 15);
	cr_assert_eq(es_confirm_step(&c, 20, true, 10), ES_VALID);
	es_confirm_init(&c, &(es_position){10, 12}, 20);
	cr_assert_eq(es_confirm_step(&c, 15, true, 10), ES_VOID, "another writer's valid commit first");
	es_confirm_init(&c, &(es_position){10, 12}, 20);
	cr_assert_eq(es_confirm_step(&c, 12, true, 10), ES_ASK_LEADER, "before where it looks");
	cr_assert_eq(es_confirm_step(&c, 21, true, 10), ES_ASK_LEADER, "past the commit");
}
