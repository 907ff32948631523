/* test_kit.c — the engine's kit for side-effect roles (engine/kit.h) against
 * a real nats-server: a consumer handles deliveries once and in batches,
 * delivers a retry again after its backoff, binds again after a restart of
 * the server and after its consumer was deleted, and gives the commits it
 * holds back when it stops while a handler runs (also a retry answered
 * while it stops, over many stops); the sweeper calls the same
 * handler (its delay, backoff, newest_only, wants, lookback); one follower
 * feeds the sweepers of two consumers; the sender sends at once and retries a
 * timeout; a fold watches a commit's validity and caches, and the follower
 * folds what it meets into the cache; two hosts executing
 * on one aggregate never both claim it; a service answers its requests. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "bus-internal.h"
#include "envelope.h"
#include "evstore-internal.h"
#include "harness.h"
#include "kit-internal.h"
#include "log.h"
#include "mpack.h"

#define FILTER  "orion.evt.thing.>"
#define WAIT_MS 20000
#define CALLS   64

static natsd *server;
static es_store *store;
static kit_hub *hub;
static kit_consumer *consumer, *second;

/* What the handler saw: under lock. */
static struct {
	pthread_mutex_t lock;
	size_t count;
	struct {
		char id[32];
		char last_type[ENV_TYPE_MAX];
		uint64_t seq, delivered;
		bool first, swept; /* first: decided on version 0 (chained, prev 0) */
		int64_t at_ms;
	} calls[CALLS];
	char retry_id[32]; /* the handler answers KIT_RETRY for ids it begins retries_left times */
	int retries_left;
	char slow_id[32]; /* the handler waits slow_ms for the ids it begins */
	int slow_ms;
	bool slow_done;
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

static kit_verdict record(void *worker, const kit_commit *c)
{
	kit_verdict v = KIT_DONE;
	bool valid = false;
	(void)worker;
	cr_assert_eq(kit_commit_check(store, c, &valid), ORN_OK);
	cr_assert(valid, "%s at %llu", c->subject, (unsigned long long)c->seq);
	kit_commit_working(c);
	pthread_mutex_lock(&seen.lock);
	if (seen.count < CALLS) {
		snprintf(seen.calls[seen.count].id, sizeof seen.calls[0].id, "%s", c->id);
		snprintf(seen.calls[seen.count].last_type, sizeof seen.calls[0].last_type, "%s",
		         c->events[c->count - 1].type);
		seen.calls[seen.count].seq = c->seq;
		seen.calls[seen.count].delivered = c->delivered;
		seen.calls[seen.count].first = c->chained && c->prev == 0;
		seen.calls[seen.count].swept = c->delivered == 0;
		seen.calls[seen.count].at_ms = orn_now_ms();
		seen.count++;
	}
	if (seen.retry_id[0] != '\0' && strncmp(c->id, seen.retry_id, strlen(seen.retry_id)) == 0 &&
	    seen.retries_left > 0) {
		seen.retries_left--;
		v = KIT_RETRY;
	}
	bool slow = seen.slow_id[0] != '\0' && strncmp(c->id, seen.slow_id, strlen(seen.slow_id)) == 0;
	pthread_mutex_unlock(&seen.lock);
	if (slow) {
		th_sleep_ms(seen.slow_ms);
		pthread_mutex_lock(&seen.lock);
		seen.slow_done = true;
		pthread_mutex_unlock(&seen.lock);
	}
	return v;
}

static bool not_skip(void *closure, const env_envelope *e)
{
	(void)closure;
	return strcmp(e->type, "Skip") != 0;
}

static void setup(void)
{
	server = th_natsd_start("kit");
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &store), ORN_OK);
	cr_assert_eq(kit_hub_create(store, &hub), ORN_OK);
	pthread_mutex_lock(&seen.lock);
	seen.count = 0;
	seen.retry_id[0] = seen.slow_id[0] = '\0';
	seen.retries_left = seen.slow_ms = 0;
	seen.slow_done = false;
	pthread_mutex_unlock(&seen.lock);
}

static void teardown(void)
{
	kit_consumer_stop(consumer);
	kit_consumer_stop(second);
	consumer = second = NULL;
	kit_hub_destroy(hub);
	hub = NULL;
	es_store_close(store);
	store = NULL;
	th_natsd_stop(server);
	server = NULL;
}

TestSuite(kit, .init = setup, .fini = teardown, .timeout = 90);

static kit_consumer_options options(const char *durable, int64_t sweep_after_ms, bool newest_only)
{
	return (kit_consumer_options){.name = durable,
	                              .durable = durable,
	                              .filter = FILTER,
	                              .ack_wait_ms = 30000,
	                              .workers = 2,
	                              .batch = 4,
	                              .retry_first_ms = 100,
	                              .retry_max_ms = 400,
	                              .handle = record,
	                              .sweep_after_ms = sweep_after_ms,
	                              .sweep_newest_only = newest_only,
	                              .sweep_wants = not_skip};
}

static void start(const char *durable, int64_t sweep_after_ms, bool newest_only)
{
	kit_consumer_options o = options(durable, sweep_after_ms, newest_only);
	cr_assert_eq(kit_consumer_start(store, hub, &o, &consumer), ORN_OK);
}

/* Appends one commit to thing id (its next version): one event of type, or
 * two for "A+B"; returns its stream sequence and sets *time_ms. */
static uint64_t append(const char *id, const char *type, int64_t *time_ms)
{
	char types[2][32] = {"", ""};
	int count = sscanf(type, "%31[^+]+%31s", types[0], types[1]);
	uint64_t version = 0;
	mp_writer *w = mp_writer_create();
	env_envelope e;
	es_append_result r;
	char cmd[64];

	cr_assert_eq(es_head(store, "thing", id, &version), ORN_OK);
	memset(&e, 0, sizeof e);
	e.schema = 1;
	e.time_ms = orn_now_ms();
	strcpy(e.correlation, "corr-kit");
	snprintf(cmd, sizeof cmd, "%s-%llu", id, (unsigned long long)version + 1);
	snprintf(e.causation, sizeof e.causation, "%s", cmd);
	e.payload = (const uint8_t *)"\x80"; /* {} */
	e.payload_len = 1;
	env_commit_begin(w, (uint32_t)count);
	for (int i = 0; i < count; i++) {
		snprintf(e.type, sizeof e.type, "%s", types[i]);
		cr_assert_eq(env_encode(w, &e), ORN_OK);
	}
	cr_assert_eq(es_append(store, "thing", id, &(es_position){version, version}, cmd, mp_writer_data(w),
	                       mp_writer_size(w), &r),
	             ORN_OK);
	mp_writer_destroy(w);
	if (time_ms != NULL)
		*time_ms = e.time_ms;
	return r.seq;
}

static size_t count_where(bool swept)
{
	size_t n = 0;
	pthread_mutex_lock(&seen.lock);
	for (size_t i = 0; i < seen.count; i++)
		n += seen.calls[i].swept == swept;
	pthread_mutex_unlock(&seen.lock);
	return n;
}

static void wait_for(bool swept, size_t n)
{
	int64_t until = th_now_ms() + WAIT_MS;
	while (count_where(swept) < n) {
		cr_assert_lt(th_now_ms(), until, "%zu %s calls, not %zu", count_where(swept),
		             swept ? "sweep" : "delivery", n);
		th_sleep_ms(10);
	}
}

/* The i-th call of kind swept. */
static size_t nth(bool swept, size_t i)
{
	for (size_t k = 0; k < seen.count; k++)
		if (seen.calls[k].swept == swept && i-- == 0)
			return k;
	cr_assert_fail("no call %zu", i);
	return 0;
}

/* ---- the consumer ---- */

Test(kit, deliveries_are_handled_once_in_batches_and_acked)
{
	char id[16];
	start("kit_once", 0, false);
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof id, "t%d", i);
		append(id, "Thing", NULL);
	}
	wait_for(false, 10);
	th_sleep_ms(700);
	cr_assert_eq(count_where(false), 10, "each commit once");
	for (size_t i = 0; i < 10; i++) {
		cr_assert_eq(seen.calls[i].delivered, 1);
		cr_assert(seen.calls[i].first, "a subject's first commit is chained on version 0");
	}
	jsConsumerInfo *ci = NULL;
	cr_assert_eq(js_GetConsumerInfo(&ci, es_store_jetstream(store), ES_STREAM, "kit_once", NULL, NULL),
	             NATS_OK);
	cr_assert_eq(ci->NumAckPending, 0, "every delivery acked");
	cr_assert_eq(ci->Config->MaxDeliver, -1);
	jsConsumerInfo_Destroy(ci);
	cr_assert(kit_consumer_bound(consumer));
	kit_consumer_stats stats;
	kit_consumer_stats_get(consumer, &stats);
	cr_assert_eq(stats.handled, 10);
	cr_assert_eq(stats.retried, 0);
}

Test(kit, a_retry_is_delivered_again_after_its_backoff)
{
	strcpy(seen.retry_id, "r1");
	seen.retries_left = 2;
	start("kit_retry", 0, false);
	uint64_t seq = append("r1", "Thing", NULL);
	wait_for(false, 3);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(seen.calls[i].seq, seq);
		cr_assert_eq(seen.calls[i].delivered, i + 1, "the server's delivery count");
	}
	cr_assert_geq(seen.calls[1].at_ms - seen.calls[0].at_ms, 90, "the first nak waits retry_first_ms");
	cr_assert_geq(seen.calls[2].at_ms - seen.calls[1].at_ms, 190, "then twice as long");
	th_sleep_ms(700);
	cr_assert_eq(count_where(false), 3, "done after KIT_DONE");
	kit_consumer_stats stats;
	kit_consumer_stats_get(consumer, &stats);
	cr_assert_eq(stats.retried, 2);
}

Test(kit, a_consumer_binds_again_after_the_server_restarts)
{
	start("kit_restart", 0, false);
	append("before", "Thing", NULL);
	wait_for(false, 1);
	natsd_kill(server);
	th_sleep_ms(300);
	cr_assert_eq(natsd_restart(server), ORN_OK);
	int64_t until = th_now_ms() + WAIT_MS;
	while (!es_store_connected(store) && th_now_ms() < until)
		th_sleep_ms(50);
	cr_assert(es_store_connected(store));
	append("after", "Thing", NULL);
	/* After the kill the server may deliver "before" again (at least once: its
	 * ack was not kept in 1 of 15 runs here), so wait for "after" itself. */
	bool after = false, other = false;
	until = th_now_ms() + WAIT_MS;
	while (!after && !other && th_now_ms() < until) {
		pthread_mutex_lock(&seen.lock);
		for (size_t i = 0; i < seen.count; i++) {
			after |= strcmp(seen.calls[i].id, "after") == 0;
			other |= strcmp(seen.calls[i].id, "after") != 0 &&
			         strcmp(seen.calls[i].id, "before") != 0;
		}
		pthread_mutex_unlock(&seen.lock);
		th_sleep_ms(10);
	}
	cr_assert_not(other, "a call for neither commit");
	cr_assert(after, "the consumer bound again: the commit appended after the restart came");
	cr_assert_str_eq(seen.calls[0].id, "before");
}

Test(kit, a_deleted_consumer_is_created_again)
{
	start("kit_deleted", 0, false);
	append("d1", "Thing", NULL);
	wait_for(false, 1);
	cr_assert_eq(js_DeleteConsumer(es_store_jetstream(store), ES_STREAM, "kit_deleted", NULL, NULL),
	             NATS_OK);
	append("d2", "Thing", NULL);
	wait_for(false, 2); /* the new consumer delivers from the start again: d1 too, then d2 */
	int64_t until = th_now_ms() + WAIT_MS;
	bool d2 = false;
	while (!d2 && th_now_ms() < until) {
		pthread_mutex_lock(&seen.lock);
		for (size_t i = 0; i < seen.count; i++)
			d2 |= strcmp(seen.calls[i].id, "d2") == 0;
		pthread_mutex_unlock(&seen.lock);
		th_sleep_ms(20);
	}
	cr_assert(d2);
}

typedef struct stopper {
	kit_consumer *c;
	int64_t returned_ms;
} stopper;

static void *stop_main(void *arg)
{
	stopper *s = arg;
	kit_consumer_stop(s->c);
	s->returned_ms = orn_now_ms();
	return NULL;
}

Test(kit, a_stop_waits_for_the_handler_and_gives_the_rest_back_at_once)
{
	kit_consumer_options o = options("kit_stop", 0, false);
	o.workers = 1;
	o.batch = 8;
	strcpy(seen.slow_id, "slow");
	seen.slow_ms = 600;
	cr_assert_eq(kit_consumer_start(store, hub, &o, &consumer), ORN_OK);
	append("slow", "Thing", NULL);
	for (int i = 0; i < 3; i++) {
		char id[16];
		snprintf(id, sizeof id, "held%d", i);
		append(id, "Thing", NULL);
	}
	wait_for(false, 1);
	stopper s = {consumer, 0};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, stop_main, &s), 0);
	pthread_join(t, NULL);
	consumer = NULL;
	cr_assert(seen.slow_done, "the stop waited for the handler in progress");
	size_t before = count_where(false);
	/* another instance gets the commits the stopped worker held, long before the 30 s ack wait */
	o.workers = 2;
	int64_t started = orn_now_ms();
	cr_assert_eq(kit_consumer_start(store, hub, &o, &consumer), ORN_OK);
	wait_for(false, 4);
	cr_assert_lt(orn_now_ms() - started, 10000, "given back at once (%zu handled before)", before);
}

/* A handler that answers KIT_RETRY while its consumer stops: the stop naks
 * the commit at once, and the next instance gets it, never the stopped
 * worker's open pull request (where it would wait out the ack wait). Over
 * several stops, as one alone may miss the window. */
Test(kit, a_retry_answered_while_stopping_goes_to_the_next_instance)
{
	kit_consumer_options o = options("kit_stop_retry", 0, false);
	o.ack_wait_ms = 120000; /* a lost delivery would come back long after the bound below */
	o.workers = 4;
	seen.slow_ms = 150;
	cr_assert_eq(kit_consumer_start(store, hub, &o, &consumer), ORN_OK);
	for (int i = 0; i < 8; i++) {
		char prefix[16], id[32];
		snprintf(prefix, sizeof prefix, "x%d_", i);
		pthread_mutex_lock(&seen.lock);
		snprintf(seen.retry_id, sizeof seen.retry_id, "%s", prefix);
		snprintf(seen.slow_id, sizeof seen.slow_id, "%s", prefix);
		seen.retries_left = 3;
		size_t before = seen.count;
		pthread_mutex_unlock(&seen.lock);
		for (int k = 0; k < 3; k++) {
			snprintf(id, sizeof id, "%s%d", prefix, k);
			append(id, "Thing", NULL);
		}
		wait_for(false, before + 1); /* in the slow handler, which will answer KIT_RETRY */
		kit_consumer_stop(consumer);
		consumer = NULL;
		pthread_mutex_lock(&seen.lock);
		size_t at_stop = seen.count;
		seen.retries_left = 0;
		pthread_mutex_unlock(&seen.lock);
		int64_t started = orn_now_ms();
		cr_assert_eq(kit_consumer_start(store, hub, &o, &consumer), ORN_OK);
		/* each of the three is handled once more after the stop */
		wait_for(false, at_stop + 3);
		cr_assert_lt(orn_now_ms() - started, 10000, "stop %d: the retries were given back at once",
		             i);
	}
}

/* ---- the sweeper ---- */

Test(kit, the_sweeper_calls_the_same_handler_after_the_delay_and_backs_off)
{
	int64_t at = 0;
	start("kit_sweep", 300, false);
	uint64_t seq = append("s1", "Thing", &at);
	wait_for(false, 1);
	strcpy(seen.retry_id, "s1"); /* from now: the sweep answers KIT_RETRY twice */
	seen.retries_left = 2;
	wait_for(true, 3);
	for (size_t i = 0; i < 3; i++) {
		size_t k = nth(true, i);
		cr_assert_str_eq(seen.calls[k].id, "s1");
		cr_assert_eq(seen.calls[k].seq, seq);
		cr_assert_eq(seen.calls[k].delivered, 0);
	}
	cr_assert_geq(seen.calls[nth(true, 0)].at_ms, at + 300, "never before the delay");
	cr_assert_geq(seen.calls[nth(true, 1)].at_ms - seen.calls[nth(true, 0)].at_ms, 90);
	cr_assert_geq(seen.calls[nth(true, 2)].at_ms - seen.calls[nth(true, 1)].at_ms, 190);
	th_sleep_ms(600);
	cr_assert_eq(count_where(true), 3, "done after KIT_DONE");
	kit_consumer_stats stats;
	kit_consumer_stats_get(consumer, &stats);
	cr_assert_eq(stats.swept, 3);
	cr_assert_eq(stats.sweep_dropped, 0);
}

Test(kit, the_sweeper_keeps_a_subjects_newest_commit_and_wants_filters)
{
	start("kit_newest", 300, true);
	append("n1", "Thing", NULL);
	append("n1", "Thing", NULL);
	uint64_t last = append("n1", "Thing+Final", NULL);
	append("n2", "Skip", NULL);
	uint64_t marker = append("n3", "Thing", NULL);
	wait_for(true, 2);
	th_sleep_ms(500);
	cr_assert_eq(count_where(true), 2, "one sweep of n1, none of n2 (not wanted), one of n3");
	size_t a = nth(true, 0), b = nth(true, 1);
	cr_assert_str_eq(seen.calls[a].id, "n1");
	cr_assert_eq(seen.calls[a].seq, last, "the newest commit of n1");
	cr_assert_str_eq(seen.calls[a].last_type, "Final", "read again whole");
	cr_assert_str_eq(seen.calls[b].id, "n3");
	cr_assert_eq(seen.calls[b].seq, marker);
}

Test(kit, the_sweepers_lookback_covers_commits_from_before_the_start)
{
	uint64_t seq = append("before", "Thing", NULL);
	start("kit_lookback", 200, false);
	wait_for(true, 1);
	cr_assert_eq(seen.calls[nth(true, 0)].seq, seq);
}

Test(kit, one_follower_feeds_the_sweepers_of_two_consumers)
{
	kit_consumer_options o = options("kit_one", 300, false), p = options("kit_two", 300, false);
	uint64_t before = append("before", "Thing", NULL);
	kit_hub_gather(hub); /* the roles of a process start together */
	cr_assert_eq(kit_consumer_start(store, hub, &o, &consumer), ORN_OK);
	cr_assert_eq(kit_consumer_start(store, hub, &p, &second), ORN_OK);
	cr_assert_eq(kit_hub_start(hub), ORN_OK);
	cr_assert_eq(kit_hub_followers(hub), 1, "one follower of the filter for the process");
	append("shared", "Thing", NULL);
	wait_for(true, 4); /* each sweeper called its own consumer's handler, the history included */
	wait_for(false, 4);
	size_t of_before = 0;
	pthread_mutex_lock(&seen.lock);
	for (size_t i = 0; i < seen.count; i++)
		of_before += seen.calls[i].swept && seen.calls[i].seq == before;
	pthread_mutex_unlock(&seen.lock);
	cr_assert_eq(of_before, 2, "both looked back on the commit from before they started");
	/* a consumer started later gets a follower of its own: the shared one went past its history */
	kit_consumer *third = NULL;
	kit_consumer_options q = options("kit_three", 300, false);
	cr_assert_eq(kit_consumer_start(store, hub, &q, &third), ORN_OK);
	cr_assert_eq(kit_hub_followers(hub), 2);
	kit_consumer_stop(third);
	cr_assert_eq(kit_hub_followers(hub), 1);
	kit_consumer_stop(second);
	second = NULL;
	cr_assert_eq(kit_hub_followers(hub), 1, "still followed for the other");
	kit_consumer_stop(consumer);
	consumer = NULL;
	cr_assert_eq(kit_hub_followers(hub), 0, "stopped with its last listener");
}

Test(kit, bad_options_are_refused)
{
	kit_consumer_options o = options("kit_bad", 0, false);
	kit_consumer *c = NULL;
	o.filter = "orion.evt.thing.*";
	cr_assert_eq(kit_consumer_start(store, hub, &o, &c), ORN_EINVAL, "a filter must end in .>");
	o.filter = FILTER;
	o.handle = NULL;
	cr_assert_eq(kit_consumer_start(store, hub, &o, &c), ORN_EINVAL);
	o.handle = record;
	cr_assert_eq(kit_consumer_start(NULL, hub, &o, &c), ORN_EINVAL);
	cr_assert_eq(kit_consumer_start(store, NULL, &o, &c), ORN_EINVAL);
	cr_assert_null(c);
	kit_consumer_stop(NULL);
	cr_assert_not(kit_consumer_bound(NULL));
	kit_hub *none = NULL;
	cr_assert_eq(kit_hub_create(NULL, &none), ORN_EINVAL);
	cr_assert_null(none);
	cr_assert_eq(strlen(kit_hub_instance(hub)), KIT_INSTANCE_MAX - 1);
}

/* ---- the sender ---- */

/* A service of the thing aggregate: answers every command accepted with its
 * type as the code, but lets the first try of "drop-once" go unanswered. */
static atomic_int drop_tries;

static void serve_thing(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	env_envelope cmd;
	bus_reply r;
	mp_writer *w = mp_writer_create();
	(void)sub;
	(void)closure;
	cr_assert_eq(env_decode_buffer(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &cmd),
	             ORN_OK);
	if (strcmp(cmd.causation, "drop-once") == 0 && atomic_fetch_add(&drop_tries, 1) == 0)
		goto done;
	memset(&r, 0, sizeof r);
	r.outcome = BUS_ACCEPTED;
	snprintf(r.code, sizeof r.code, "%s", cmd.type);
	snprintf(r.detail, sizeof r.detail, "%s", cmd.actor);
	bus_reply_encode(w, &r);
	natsConnection_Publish(nc, natsMsg_GetReply(msg), mp_writer_data(w), (int)mp_writer_size(w));
done:
	mp_writer_destroy(w);
	natsMsg_Destroy(msg);
}

Test(kit, the_sender_sends_at_once_and_tries_a_timeout_again)
{
	natsSubscription *sub = NULL;
	kit_sender *s = NULL;
	kit_sender_options o = {.actor = "tester", .timeout_ms = 300, .tries = 2, .backoff_ms = 50};
	atomic_store(&drop_tries, 0);
	cr_assert_eq(natsConnection_Subscribe(&sub, es_store_connection(store), "orion.cmd.thing.*",
	                                      serve_thing, NULL),
	             NATS_OK);
	natsConnection_Flush(es_store_connection(store));
	cr_assert_eq(kit_sender_create(store, &o, &s), ORN_OK);
	const uint8_t nil = 0xc0;
	kit_send sends[3] = {
	        {.aggregate = "thing",
	         .id = "a",
	         .type = "Poke",
	         .command_id = "c-a",
	         .payload = &nil,
	         .len = 1},
	        {.aggregate = "thing",
	         .id = "b",
	         .type = "Prod",
	         .command_id = "drop-once",
	         .payload = &nil,
	         .len = 1},
	        {.aggregate = "thing",
	         .id = "c",
	         .type = "Nudge",
	         .command_id = "c-c",
	         .payload = &nil,
	         .len = 1},
	};
	cr_assert_eq(kit_send_all(s, sends, 3), ORN_OK);
	const char *types[] = {"Poke", "Prod", "Nudge"};
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(sends[i].rc, ORN_OK);
		cr_assert_eq(sends[i].reply.outcome, BUS_ACCEPTED);
		cr_assert_str_eq(sends[i].reply.code, types[i]);
		cr_assert_str_eq(sends[i].reply.detail, "tester");
		bus_reply_dispose(&sends[i].reply);
	}
	cr_assert_eq(atomic_load(&drop_tries), 2, "the timed-out command was sent again, same id");
	/* no service: unavailable after its tries */
	kit_send none = {.aggregate = "nobody",
	                 .id = "x",
	                 .type = "Poke",
	                 .command_id = "c-x",
	                 .payload = &nil,
	                 .len = 1};
	cr_assert_eq(kit_send_all(s, &none, 1), ORN_EUNAVAILABLE);
	/* stopped: nothing is sent any more */
	kit_sender_stop(s);
	cr_assert(kit_sender_stopping(s));
	cr_assert_eq(kit_send_all(s, sends, 1), ORN_EUNAVAILABLE);
	kit_sender_destroy(s);
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
}

/* ---- folds and executions: a slot that holds one claim ---- */

typedef struct slot_state {
	int64_t claims;
	char by[32];
} slot_state;

static void slot_init(void *state)
{
	memset(state, 0, sizeof(slot_state));
}

static orn_rc slot_decide(const void *state, const env_envelope *cmd, act_decision *d)
{
	const slot_state *s = state;
	if (strcmp(cmd->type, "Claim") != 0)
		return ORN_EINVAL;
	if (s->claims > 0) {
		act_decision_reject(d, "claimed", s->by);
		return ORN_OK;
	}
	mp_writer *w = mp_writer_create();
	mp_write_cstr(w, cmd->actor);
	orn_rc rc = act_decision_emit(d, "Claimed", 1, mp_writer_data(w), mp_writer_size(w));
	mp_writer_destroy(w);
	return rc;
}

static orn_rc slot_evolve(void *state, const env_envelope *e)
{
	slot_state *s = state;
	mp_reader r;
	if (strcmp(e->type, "Claimed") != 0)
		return ORN_EINVAL;
	mp_reader_init(&r, e->payload, e->payload_len);
	s->claims++;
	return mp_read_cstr(&r, s->by, sizeof s->by);
}

static const act_kind slot_kind = {.aggregate = "slot",
                                   .state_size = sizeof(slot_state),
                                   .init = slot_init,
                                   .dispose = slot_init,
                                   .decide = slot_decide,
                                   .evolve = slot_evolve,
                                   .copyable = true};

static kit_result claim(kit_hub *h, es_store *s, const char *id, const char *by, bool likely_new)
{
	char command_id[64];
	const uint8_t nil = 0xc0;
	kit_result r;
	snprintf(command_id, sizeof command_id, "%s:claim:%s", id, by);
	kit_command cmd = {.type = "Claim",
	                   .payload = &nil,
	                   .len = 1,
	                   .id = command_id,
	                   .actor = by,
	                   .time_ms = orn_now_ms(),
	                   .likely_new = likely_new};
	cr_assert_eq(kit_execute(h, s, &slot_kind, id, &cmd, NULL, &r), ORN_OK);
	return r;
}

Test(kit, a_fold_watches_a_commits_validity_and_caches)
{
	slot_state st;
	kit_folded at;
	kit_result r = claim(hub, store, "f1", "host-a", true);
	cr_assert_eq(r.outcome, BUS_ACCEPTED);
	uint64_t first = r.seq;
	/* a void commit: decided on version 0 although f1 has a valid commit */
	mp_writer *w = mp_writer_create();
	env_envelope e = {.type = "Claimed",
	                  .schema = 1,
	                  .time_ms = orn_now_ms(),
	                  .payload = (const uint8_t *)"\xa1x",
	                  .payload_len = 2};
	strcpy(e.causation, "void");
	env_commit_begin(w, 1);
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	/* published as a racing writer would (its acknowledgement unread) */
	cr_assert_eq(es_append_publish(store, "slot", "f1", &(es_position){0, first}, "void", true,
	                               mp_writer_data(w), mp_writer_size(w), "_INBOX.nobody"),
	             ORN_OK);
	mp_writer_destroy(w);
	uint64_t head = 0;
	for (int i = 0; i < 100 && head <= first; i++) {
		cr_assert_eq(es_head(store, "slot", "f1", &head), ORN_OK);
		th_sleep_ms(10);
	}
	cr_assert_gt(head, first);

	kit_fold_query q = {.watch = head};
	cr_assert_eq(kit_fold(hub, store, &slot_kind, "f1", &q, &st, &at), ORN_OK);
	cr_assert_eq(st.claims, 1, "the void commit changes nothing");
	cr_assert_str_eq(st.by, "host-a");
	cr_assert_not(at.watched_valid);
	cr_assert_eq(at.at.version, first);
	cr_assert_eq(at.at.last_seq, head);
	q.watch = first;
	cr_assert_eq(kit_fold(hub, store, &slot_kind, "f1", &q, &st, &at), ORN_OK);
	cr_assert(at.watched_valid);
	q = (kit_fold_query){.up_to = first, .watch = first};
	cr_assert_eq(kit_fold(hub, store, &slot_kind, "f1", &q, &st, &at), ORN_OK);
	cr_assert(at.watched_valid);
	cr_assert_eq(at.at.last_seq, first);
	cr_assert_eq(kit_fold(hub, store, &slot_kind, "bad id!", NULL, &st, &at), ORN_EINVAL);
	cr_assert_eq(kit_fold(hub, store, &slot_kind, "empty", NULL, &st, &at), ORN_OK);
	cr_assert_eq(st.claims, 0);
	cr_assert_eq(at.at.version, 0);
}

/* What the hub's follower met, for the test below. */
static struct {
	pthread_mutex_t lock;
	uint64_t last;
} met = {PTHREAD_MUTEX_INITIALIZER, 0};

static orn_rc on_met(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	(void)closure;
	(void)subject;
	(void)e;
	pthread_mutex_lock(&met.lock);
	met.last = seq;
	pthread_mutex_unlock(&met.lock);
	return ORN_OK;
}

/* A "Claimed" commit of slot id decided on `at`, published (its chain as given). */
static void publish_claimed(const char *id, es_position at, const char *by, bool wait)
{
	mp_writer *w = mp_writer_create(), *payload = mp_writer_create();
	mp_write_cstr(payload, by);
	env_envelope e = {.type = "Claimed",
	                  .schema = 1,
	                  .time_ms = orn_now_ms(),
	                  .payload = mp_writer_data(payload),
	                  .payload_len = mp_writer_size(payload)};
	snprintf(e.causation, sizeof e.causation, "claim-%s", by);
	env_commit_begin(w, 1);
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	if (wait) {
		es_append_result r;
		cr_assert_eq(es_append(store, "slot", id, &at, e.causation, mp_writer_data(w),
		                       mp_writer_size(w), &r),
		             ORN_OK);
	} else {
		cr_assert_eq(es_append_publish(store, "slot", id, &at, by, true, mp_writer_data(w),
		                               mp_writer_size(w), "_INBOX.nobody"),
		             ORN_OK);
	}
	mp_writer_destroy(w);
	mp_writer_destroy(payload);
}

/* The follower folds what it meets into the hub's cache: a fold up to a
 * commit it met reads nothing (the server is stopped before the fold, so a
 * read would fail: with the feed left out this fold fails), void commits
 * included. */
Test(kit, the_follower_folds_what_it_meets_into_the_cache)
{
	slot_state st;
	kit_folded at;
	kit_listener *l = NULL;
	cr_assert_eq(kit_fold(hub, store, &slot_kind, "warm", NULL, &st, &at), ORN_OK); /* the kind's cache */
	cr_assert_eq(kit_hub_listen(hub, "orion.evt.slot.>", orn_now_ms() - 1000, on_met, NULL, &l), ORN_OK);
	publish_claimed("g1", (es_position){0, 0}, "host-a", true);
	uint64_t first = 0, head = 0;
	cr_assert_eq(es_head(store, "slot", "g1", &first), ORN_OK);
	publish_claimed("g1", (es_position){0, first}, "host-b", false); /* void: decided on version 0 */
	for (int i = 0; i < 100 && head <= first; i++) {
		cr_assert_eq(es_head(store, "slot", "g1", &head), ORN_OK);
		th_sleep_ms(10);
	}
	uint64_t void_seq = head;
	publish_claimed("g1", (es_position){first, void_seq}, "host-c", true);
	cr_assert_eq(es_head(store, "slot", "g1", &head), ORN_OK);
	bool seen_all = false;
	for (int i = 0; i < 500 && !seen_all; i++) {
		pthread_mutex_lock(&met.lock);
		seen_all = met.last >= head;
		pthread_mutex_unlock(&met.lock);
		if (!seen_all)
			th_sleep_ms(10);
	}
	cr_assert(seen_all, "the follower met the last commit");

	kit_hub_unlisten(hub, l);
	th_natsd_stop(server); /* from here a read fails */
	server = NULL;
	kit_fold_query q = {.up_to = head, .watch = void_seq};
	cr_assert_eq(kit_fold(hub, store, &slot_kind, "g1", &q, &st, &at), ORN_OK);
	cr_assert_eq(st.claims, 2, "two valid commits folded from the cache: %lld", (long long)st.claims);
	cr_assert_str_eq(st.by, "host-c");
	cr_assert_not(at.watched_valid, "the void commit is known void");
	cr_assert_eq(at.at.version, head);
	cr_assert_eq(at.at.last_seq, head);
}

typedef struct racer {
	kit_hub *hub;
	es_store *store;
	const char *by;
	int accepted;
} racer;

static void *race_main(void *arg)
{
	racer *r = arg;
	char id[16];
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof id, "race%d", i);
		kit_result res = claim(r->hub, r->store, id, r->by, i % 2 == 0);
		if (res.outcome == BUS_ACCEPTED && res.seq > 0 && !res.duplicate)
			r->accepted++;
		else
			cr_assert(res.outcome == BUS_REJECTED && strcmp(res.code, "claimed") == 0,
			          "%s: %s %s", id, bus_outcome_name(res.outcome), res.code);
	}
	return NULL;
}

Test(kit, two_hosts_executing_on_one_aggregate_never_both_claim_it)
{
	es_store *other = NULL;
	kit_hub *other_hub = NULL;
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &other), ORN_OK);
	cr_assert_eq(kit_hub_create(other, &other_hub), ORN_OK);
	racer a = {hub, store, "host-a", 0}, b = {other_hub, other, "host-b", 0};
	pthread_t ta, tb;
	cr_assert_eq(pthread_create(&ta, NULL, race_main, &a), 0);
	cr_assert_eq(pthread_create(&tb, NULL, race_main, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	cr_assert_eq(a.accepted + b.accepted, 20, "one claim per slot: %d + %d", a.accepted, b.accepted);
	/* a claim asked again by its own host is a duplicate, not a second claim */
	kit_result again = claim(hub, store, "race0", "host-a", false);
	cr_assert(again.outcome == BUS_REJECTED || again.duplicate);
	kit_hub_destroy(other_hub);
	es_store_close(other);
}

/* ---- the service ---- */

static void serve(void *worker, kit_request *r)
{
	bus_reply reply;
	size_t len = 0;
	(void)worker;
	memset(&reply, 0, sizeof reply);
	cr_assert_gt(kit_request_data(r, &len) != NULL ? len : 0, 0);
	if (strcmp(kit_request_subject(r), "orion.cmd.svc.silent") == 0)
		return; /* the kit answers for it */
	reply.outcome = BUS_ACCEPTED;
	snprintf(reply.code, sizeof reply.code, "%s", kit_request_subject(r));
	kit_request_reply(r, &reply);
	kit_request_reply(r, &reply); /* a second answer is not sent */
}

Test(kit, a_service_answers_each_request_once)
{
	kit_service *svc = NULL;
	kit_service_options o = {.name = "svc",
	                         .subject = "orion.cmd.svc.*",
	                         .queue = "orion.svc",
	                         .workers = 2,
	                         .wipe = true,
	                         .serve = serve};
	cr_assert_eq(kit_service_start(store, &o, &svc), ORN_OK);
	env_envelope cmd;
	bus_reply r;
	const uint8_t nil = 0xc0;
	cr_assert_eq(bus_command_init(&cmd, "Do", orn_now_ms(), "cmd-1", NULL, "t", &nil, 1), ORN_OK);
	cr_assert_eq(bus_send(store, "svc", "one", &cmd, 5000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED);
	cr_assert_str_eq(r.code, "orion.cmd.svc.one");
	bus_reply_dispose(&r);
	cr_assert_eq(bus_send(store, "svc", "silent", &cmd, 5000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_FAILED);
	cr_assert_str_eq(r.code, "unavailable");
	bus_reply_dispose(&r);
	kit_service_stop(svc);
	cr_assert_eq(bus_send(store, "svc", "one", &cmd, 2000, &r), ORN_EUNAVAILABLE,
	             "nobody serves it any more");
	o.subject = NULL;
	cr_assert_eq(kit_service_start(store, &o, &svc), ORN_EINVAL);
	kit_service_stop(NULL);
}
