/* test_scan_many_subjects.c — es_scan (engine/evstore.c) over more subjects
 * than a reader keeps chain heads for (ES_CHAIN_HEADS_MAX, 100,000): a read
 * of orion.evt.> from sequence 1 that forgets its heads must still judge a
 * subject met again by its chain, not as a subject with no valid commit.
 * A shop with more than 100,000 aggregates (orders, carts, emails) is what
 * replay --from 1, verify-stock and verify-log read. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore-internal.h"
#include "crafted_log.h"
#include "harness.h"
#include "log.h"

#define FILLER 100000 /* other subjects, one legacy commit each */

static tcl_world world;

static void start_all(void)
{
	tcl_world_start(&world, "many-subjects");
}

static void stop_all(void)
{
	tcl_world_stop(&world);
}

/* count commits on as many subjects, published without waiting for acks
 * (core NATS: the stream captures them), then waits for the stream. */
static void publish_filler(long count)
{
	mp_writer *commit = mp_writer_create(), *payload = mp_writer_create();
	stock_event created;
	env_envelope e;
	cr_assert(commit && payload);
	memset(&created, 0, sizeof created);
	created.kind = STOCK_CREATED;
	created.quantity = 1;
	cr_assert_eq(stock_event_encode(payload, &created), ORN_OK);
	memset(&e, 0, sizeof e);
	strcpy(e.type, STOCK_EV_CREATED);
	e.schema = 1;
	e.time_ms = orn_now_ms();
	strcpy(e.actor, "test");
	e.payload = mp_writer_data(payload);
	e.payload_len = mp_writer_size(payload);
	env_commit_begin(commit, 1);
	cr_assert_eq(env_encode(commit, &e), ORN_OK);
	natsConnection *nc = es_store_connection(world.store);
	for (long i = 0; i < count; i++) {
		char subject[64];
		snprintf(subject, sizeof subject, "orion.evt.stock.f%06ld", i);
		cr_assert_eq(natsConnection_Publish(nc, subject, mp_writer_data(commit),
		                                    (int)mp_writer_size(commit)),
		             NATS_OK);
	}
	cr_assert_eq(natsConnection_FlushTimeout(nc, 30000), NATS_OK);
	mp_writer_destroy(commit);
	mp_writer_destroy(payload);
}

typedef struct verdicts {
	uint64_t first, second; /* the two commits of p-a */
	bool first_valid, second_valid;
	uint64_t commits;
} verdicts;

static orn_rc on_commit(void *closure, const es_commit *c)
{
	verdicts *v = closure;
	v->commits++;
	if (c->seq == v->first)
		v->first_valid = c->valid;
	if (c->seq == v->second)
		v->second_valid = c->valid;
	return ORN_OK;
}

Test(scan_many_subjects, a_subject_met_again_after_the_heads_were_forgotten_keeps_its_chain,
     .init = start_all, .fini = stop_all, .timeout = 240)
{
	verdicts v = {0};
	v.first = tcl_valid(world.log, "stock", "p-a", (tcl_event[]){tcl_stock_event(STOCK_CREATED, NULL, 5)},
	                    1);
	publish_filler(FILLER);
	int64_t until = th_now_ms() + 60000;
	while (tcl_stream_last(&world) < v.first + FILLER) {
		cr_assert_lt(th_now_ms(), until, "the stream has %llu of %llu",
		             (unsigned long long)tcl_stream_last(&world),
		             (unsigned long long)(v.first + FILLER));
		th_sleep_ms(50);
	}
	/* decided on p-a's version, the creation: valid */
	v.second = tcl_valid(world.log, "stock", "p-a",
	                     (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-1", 2)}, 1);

	/* the single-subject read knows it */
	verdicts one = {.first = v.first, .second = v.second};
	cr_assert_eq(es_scan(world.store, "orion.evt.stock.p-a", 1, 0, on_commit, &one, NULL), ORN_OK);
	cr_assert(one.first_valid && one.second_valid);

	/* the whole log from 1, past ES_CHAIN_HEADS_MAX subjects */
	uint64_t last = 0;
	cr_assert_eq(es_scan(world.store, "orion.evt.>", 1, 0, on_commit, &v, &last), ORN_OK);
	cr_assert_eq(last, v.second);
	cr_assert_eq(v.commits, FILLER + 2);
	cr_expect(v.first_valid);
	cr_expect(v.second_valid,
	          "p-a's second commit (seq %llu, prev %llu) judged void after %d other subjects",
	          (unsigned long long)v.second, (unsigned long long)v.first, FILLER);
}
