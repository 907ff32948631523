/* test_evstream.c — engine/evstream.c against a real nats-server: a stream
 * made like another keeps its configuration; writes land at the expected
 * sequence only; a reader delivers every sequence in order and reports a
 * gap; a durable consumer restored at its ack floor goes on from there (the
 * messages after the floor are still the role's); streams are deleted and
 * emptied. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore.h"
#include "evstream.h"
#include "harness.h"

#define COPY      "ORION_TEST_COPY"
#define COPY_SUBS "orion.test.copy.>"

static natsd *server;
static es_store *store;

static void setup(void)
{
	server = th_natsd_start("evstream");
	store = th_store_open(server);
}

static void teardown(void)
{
	es_store_close(store);
	th_natsd_stop(server);
}

TestSuite(evstream, .init = setup, .fini = teardown, .timeout = 120);

/* n messages on subjects "orion.evt.order.o<i % 3>", Orion-Prev i - 1 on odd ones. */
static void fill(const char *stream, const char *prefix, int n)
{
	es_stream_state st;
	cr_assert_eq(es_stream_state_get(store, stream, &st), ORN_OK);
	for (int i = 0; i < n; i++) {
		char subject[64], data[32];
		snprintf(subject, sizeof subject, "%s.order.o%d", prefix, i % 3);
		snprintf(data, sizeof data, "commit %d", i);
		cr_assert_eq(es_stream_write(store, stream, subject, data, strlen(data), i % 2 == 1,
		                             (uint64_t)i, st.last_seq + (uint64_t)i),
		             ORN_OK);
	}
}

Test(evstream, a_copy_keeps_the_configuration_and_every_sequence)
{
	fill(ES_STREAM, ES_EVT_PREFIX, 10);
	cr_assert_eq(es_stream_create_like(store, ES_STREAM, COPY, COPY_SUBS, "a copy"), ORN_OK);
	cr_assert_eq(es_stream_create_like(store, ES_STREAM, COPY, COPY_SUBS, "a copy"), ORN_OK,
	             "exists: ok");
	cr_assert_eq(es_stream_create_like(store, ES_STREAM, COPY, "orion.other.>", NULL), ORN_EINVAL);
	cr_assert_eq(es_stream_create_like(store, "ORION_NONE", "ORION_NONE2", "orion.none.>", NULL),
	             ORN_ENOTFOUND);
	es_stream_state st;
	cr_assert_eq(es_stream_state_get(store, COPY, &st), ORN_OK);
	cr_assert(st.exists);
	cr_assert_str_eq(st.description, "a copy");
	cr_assert_eq(es_stream_describe(store, COPY, "verified; durable x 1 2 3 y"), ORN_OK);
	cr_assert_eq(es_stream_state_get(store, COPY, &st), ORN_OK);
	cr_assert_str_eq(st.description, "verified; durable x 1 2 3 y");

	/* the copy, sequence for sequence, with each Orion-Prev */
	es_stream_reader *r = NULL;
	cr_assert_eq(es_stream_reader_open(store, ES_STREAM, "orion.evt.>", 1, &r), ORN_OK);
	for (uint64_t seq = 1; seq <= 10; seq++) {
		es_raw m;
		char subject[64];
		cr_assert_eq(es_stream_reader_next(r, &m), ORN_OK);
		cr_assert_eq(m.seq, seq);
		snprintf(subject, sizeof subject, "orion.test.copy%s", m.subject + strlen(ES_EVT_PREFIX));
		cr_assert_eq(es_stream_write(store, COPY, subject, m.data, m.len, m.chained, m.prev, seq - 1),
		             ORN_OK);
		es_raw_dispose(&m);
	}
	es_stream_reader_close(r);
	/* a write at another position than the stream's end is refused */
	cr_assert_eq(es_stream_write(store, COPY, "orion.test.copy.order.o1", "x", 1, false, 0, 3),
	             ORN_ECONFLICT);
	cr_assert_eq(es_stream_state_get(store, COPY, &st), ORN_OK);
	cr_assert_eq(st.last_seq, 10);
	cr_assert_eq(st.msgs, 10);

	cr_assert_eq(es_stream_reader_open(store, COPY, COPY_SUBS, 4, &r), ORN_OK);
	es_raw m;
	cr_assert_eq(es_stream_reader_next(r, &m), ORN_OK);
	cr_assert_eq(m.seq, 4);
	cr_assert_str_eq(m.subject, "orion.test.copy.order.o0");
	cr_assert(m.chained);
	cr_assert_eq(m.prev, 3);
	cr_assert_eq(m.len, strlen("commit 3"));
	cr_assert_eq(memcmp(m.data, "commit 3", m.len), 0);
	es_raw_dispose(&m);
	es_stream_reader_close(r);

	/* a reader of one subject sees a gap where the others' messages stand */
	cr_assert_eq(es_stream_reader_open(store, COPY, "orion.test.copy.order.o1", 1, &r), ORN_OK);
	cr_assert_eq(es_stream_reader_next(r, &m), ORN_EIO);
	es_stream_reader_close(r);

	cr_assert_eq(es_stream_delete(store, COPY), ORN_OK);
	cr_assert_eq(es_stream_delete(store, COPY), ORN_OK, "gone already: ok");
	cr_assert_eq(es_stream_state_get(store, COPY, &st), ORN_OK);
	cr_assert_not(st.exists);
}

Test(evstream, a_durable_restored_at_its_floor_goes_on_from_there)
{
	fill(ES_STREAM, ES_EVT_PREFIX, 900);
	/* as a role left it: acked up to 700 (more than a fetch takes at once) */
	es_durable_state d = {.name = "orion_test",
	                      .filter = "orion.evt.order.>",
	                      .ack_wait_ms = 30000,
	                      .max_ack_pending = 1000,
	                      .floor = 700};
	cr_assert_eq(es_durable_restore(store, &d), ORN_OK);
	es_durable_state *list = NULL;
	size_t count = 0, active = 9, ephemeral = 9;
	cr_assert_eq(es_stream_consumers(store, ES_STREAM, &list, &count, &active, &ephemeral), ORN_OK);
	cr_assert_eq(count, 1);
	cr_assert_str_eq(list[0].name, "orion_test");
	cr_assert_str_eq(list[0].filter, "orion.evt.order.>");
	cr_assert_eq(list[0].floor, 700, "acked up to the floor, not past it");
	cr_assert_eq(list[0].ack_wait_ms, 30000);
	cr_assert_eq(active, 0);
	cr_assert_eq(ephemeral, 0);
	free(list);
	/* again: nothing changes; further: the messages after the floor were left */
	cr_assert_eq(es_durable_restore(store, &d), ORN_OK);
	d.floor = 850;
	cr_assert_eq(es_durable_restore(store, &d), ORN_OK);
	cr_assert_eq(es_stream_consumers(store, ES_STREAM, &list, &count, NULL, NULL), ORN_OK);
	cr_assert_eq(list[0].floor, 850);
	free(list);
}

Test(evstream, a_stream_that_denies_purges_is_emptied_by_making_it_again)
{
	fill(ES_STREAM, ES_EVT_PREFIX, 5);
	cr_assert_eq(es_stream_recreate_empty(store, ES_STREAM), ORN_OK);
	es_stream_state st;
	cr_assert_eq(es_stream_state_get(store, ES_STREAM, &st), ORN_OK);
	cr_assert(st.exists);
	cr_assert_eq(st.msgs, 0);
	cr_assert_eq(es_stream_recreate_empty(store, "ORION_NONE"), ORN_OK, "no such stream: ok");
	/* the same configuration: the store verifies it on open */
	es_store *again = NULL;
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	o.create_streams = false;
	cr_assert_eq(es_store_open(&o, &again), ORN_OK);
	es_store_close(again);
}
