/* test_projector.c — the projector runner and the inventory model against a
 * real nats-server: convergence through the stock actors, paging, restart
 * idempotence, batch + checkpoint atomicity, map growth, poison commits. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor.h"
#include "harness.h"
#include "inventory.h"
#include "log.h"
#include "proj_internal.h"
#include "projector.h"
#include "stock_client.h"

static natsd *server;
static es_store *store;
static char *dir;
static proj_env *env;
static proj_inventory *inv;
static proj_runner *runner;

static void open_env(size_t map_size)
{
	proj_env_options o;
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = map_size;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_inventory_create(env, &inv), ORN_OK);
}

static void setup(void)
{
	server = th_natsd_start("projector");
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &store), ORN_OK);
	dir = th_tempdir("projector-lmdb");
	open_env((size_t)16 << 20);
}

static void stop_runner(void)
{
	proj_runner_stop(runner);
	runner = NULL;
}

static void teardown(void)
{
	stop_runner();
	proj_inventory_destroy(inv);
	inv = NULL;
	proj_env_close(env);
	env = NULL;
	th_rmrf(dir);
	free(dir);
	dir = NULL;
	es_store_close(store);
	store = NULL;
	th_natsd_stop(server);
	server = NULL;
}

static void start_runner_with(const proj_def *defs, size_t count)
{
	proj_runner_options o;
	proj_runner_options_init(&o);
	o.retry_max_ms = 200;
	cr_assert_eq(proj_runner_start(store, env, defs, count, &o, &runner), ORN_OK);
}

static proj_def defs_storage[4];

static void start_inventory_runner(void)
{
	defs_storage[0] = *proj_inventory_def(inv);
	start_runner_with(defs_storage, 1);
}

/* ---- appending stock commits directly ---- */

static uint64_t append_event(const char *id, uint64_t expected, const stock_event *ev)
{
	mp_writer *payload = mp_writer_create(), *commit = mp_writer_create();
	env_envelope e;
	es_append_result res;
	char msg_id[128];
	static unsigned long counter;
	memset(&e, 0, sizeof e);
	cr_assert_eq(stock_event_encode(payload, ev), ORN_OK);
	strcpy(e.type, stock_event_type(ev->kind));
	e.schema = 1;
	e.time_ms = orn_now_ms();
	strcpy(e.causation, "test");
	e.payload = mp_writer_data(payload);
	e.payload_len = mp_writer_size(payload);
	env_commit_begin(commit, 1);
	cr_assert_eq(env_encode(commit, &e), ORN_OK);
	snprintf(msg_id, sizeof msg_id, "t-%s-%lu-%lld", id, ++counter, (long long)orn_monotonic_ns());
	cr_assert_eq(es_append(store, STOCK_AGGREGATE, id, &(es_position){expected, expected}, msg_id,
	                       mp_writer_data(commit), mp_writer_size(commit), &res),
	             ORN_OK, "append %s", id);
	mp_writer_destroy(payload);
	mp_writer_destroy(commit);
	return res.seq;
}

static uint64_t create_item(const char *id, int64_t quantity)
{
	stock_event ev = {.kind = STOCK_CREATED, .quantity = quantity};
	return append_event(id, 0, &ev);
}

static uint64_t reserve_item(const char *id, uint64_t version, const char *rid, int64_t quantity)
{
	stock_event ev = {.kind = STOCK_RESERVED, .quantity = quantity};
	snprintf(ev.reservation_id, sizeof ev.reservation_id, "%s", rid);
	return append_event(id, version, &ev);
}

static proj_stock_level level(const char *id)
{
	proj_stock_level l;
	cr_assert_eq(proj_inventory_get(inv, id, &l), ORN_OK, "%s", id);
	return l;
}

static void wait_for(uint64_t seq)
{
	cr_assert_eq(proj_runner_wait(runner, seq, 20000), ORN_OK, "position %llu < %llu",
	             (unsigned long long)proj_runner_position(runner), (unsigned long long)seq);
}

TestSuite(projector, .init = setup, .fini = teardown, .timeout = 120);

/* ---- convergence through the real actor runtime ---- */

Test(projector, converges_on_commands_of_the_stock_actors)
{
	act_runtime *rt = NULL;
	act_options ao;
	act_options_init(&ao);
	ao.shards = 2;
	cr_assert_eq(act_runtime_start(store, &stock_kind, &ao, &rt), ORN_OK);
	natsConnection *client = tsc_connect(natsd_url(server));
	start_inventory_runner();
	bus_reply r;
	stock_command c = tsc_create(10);
	cr_assert_eq(tsc_send(client, "sku-a", &c, "create-a", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED);
	bus_reply_dispose(&r);
	c = tsc_reserve("order-1:sku-a", 4);
	cr_assert_eq(tsc_send(client, "sku-a", &c, "reserve-1", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED);
	bus_reply_dispose(&r);
	c = tsc_adjust(5, "delivery");
	cr_assert_eq(tsc_send(client, "sku-a", &c, "adjust-1", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED);
	uint64_t seq = r.seq;
	bus_reply_dispose(&r);
	/* Read-your-writes: wait on the sequence the command returned. */
	wait_for(seq);
	proj_stock_level l = level("sku-a");
	cr_assert_eq(l.on_hand, 15);
	cr_assert_eq(l.reserved, 4);
	cr_assert_eq(l.available, 11);
	cr_assert_eq(l.version, seq);
	int64_t on_hand = 0, reserved = 0;
	cr_assert_eq(tsc_get(client, "sku-a", &on_hand, &reserved, NULL, NULL), ORN_OK);
	cr_assert_eq(on_hand, l.on_hand);
	cr_assert_eq(reserved, l.reserved);
	uint64_t lag = 99;
	cr_assert_eq(proj_runner_lag(runner, &lag), ORN_OK);
	cr_assert_eq(lag, 0);
	stop_runner();
	natsConnection_Destroy(client);
	act_runtime_stop(rt);
}

Test(projector, wait_times_out_for_a_sequence_not_reached)
{
	start_inventory_runner();
	uint64_t seq = create_item("sku-w", 1);
	wait_for(seq);
	int64_t t0 = th_now_ms();
	cr_assert_eq(proj_runner_wait(runner, seq + 1000, 150), ORN_ETIMEOUT);
	cr_assert_geq(th_now_ms() - t0, 140);
}

/* ---- below filter and paging ---- */

#define PAGE_ITEMS 250

Test(projector, pages_of_100_without_duplicates_or_gaps)
{
	start_inventory_runner();
	uint64_t last = 0;
	char id[32];
	for (int i = 0; i < PAGE_ITEMS; i++) {
		snprintf(id, sizeof id, "p-%03d", i);
		last = create_item(id, i % 10);
	}
	wait_for(last);
	proj_inventory_page *page = malloc(sizeof *page);
	char cursor[PROJ_CURSOR_MAX] = "";
	int seen = 0, pages = 0;
	do {
		proj_inventory_query q = {.limit = 100, .cursor = cursor};
		cr_assert_eq(proj_inventory_list(inv, &q, page), ORN_OK);
		pages++;
		for (size_t r = 0; r < page->count; r++, seen++) {
			snprintf(id, sizeof id, "p-%03d", seen);
			cr_assert_str_eq(page->items[r].id, id);
			cr_assert_eq(page->items[r].on_hand, seen % 10);
		}
		strcpy(cursor, page->next_cursor);
	} while (cursor[0] != '\0');
	cr_assert_eq(seen, PAGE_ITEMS);
	cr_assert_eq(pages, 3);
	/* below=3: on hand 0, 1, 2 of every ten. */
	cursor[0] = '\0';
	seen = 0;
	do {
		proj_inventory_query q = {.has_below = true, .below = 3, .limit = 20, .cursor = cursor};
		cr_assert_eq(proj_inventory_list(inv, &q, page), ORN_OK);
		for (size_t r = 0; r < page->count; r++, seen++) {
			int i = (seen / 3) * 10 + seen % 3;
			snprintf(id, sizeof id, "p-%03d", i);
			cr_assert_str_eq(page->items[r].id, id);
			cr_assert_lt(page->items[r].available, 3);
		}
		strcpy(cursor, page->next_cursor);
	} while (cursor[0] != '\0');
	cr_assert_eq(seen, PAGE_ITEMS / 10 * 3);
	free(page);
}

/* ---- an instrumented projection: counts applies per sequence ---- */

#define COUNTED_MAX 4096

typedef struct counter {
	unsigned applies[COUNTED_MAX]; /* by stream sequence */
	uint64_t fail_at;              /* apply fails on this sequence (0: never) */
	unsigned failures;
} counter;

static orn_rc counter_apply(void *self, proj_txn *t, uint64_t seq, const char *subject, const env_envelope *e)
{
	counter *k = self;
	if (seq == k->fail_at) {
		__atomic_add_fetch(&k->failures, 1, __ATOMIC_RELAXED);
		return ORN_EIO;
	}
	if (seq < COUNTED_MAX)
		k->applies[seq]++;
	return ORN_OK;
}

static counter counted;

/* Applies that reached LMDB: an aborted batch's applies are counted in
 * `applies` too, so tests compare after a clean run only. */
static proj_def counter_def(void)
{
	return (proj_def){.name = "test.counter",
	                  .filter = "orion.evt.stock.>",
	                  .apply = counter_apply,
	                  .self = &counted};
}

Test(projector, a_restart_applies_nothing_twice)
{
	memset(&counted, 0, sizeof counted);
	defs_storage[0] = *proj_inventory_def(inv);
	defs_storage[1] = counter_def();
	start_runner_with(defs_storage, 2);
	uint64_t v = create_item("sku-r", 100), last = 0;
	for (int i = 0; i < 20; i++) {
		char rid[32];
		snprintf(rid, sizeof rid, "o-%d", i);
		v = reserve_item("sku-r", v, rid, 1);
	}
	last = v;
	wait_for(last);
	proj_stock_level before = level("sku-r");
	cr_assert_eq(before.reserved, 20);
	stop_runner();
	uint64_t checkpoint = 0;
	cr_assert_eq(proj_checkpoint_get(env, "test.counter", &checkpoint), ORN_OK);
	cr_assert_eq(checkpoint, last);

	/* Restart on the same directory, after reopening the environment. */
	proj_inventory_destroy(inv);
	proj_env_close(env);
	open_env((size_t)16 << 20);
	defs_storage[0] = *proj_inventory_def(inv);
	start_runner_with(defs_storage, 2);
	cr_assert_eq(proj_runner_position(runner), last);
	uint64_t more = reserve_item("sku-r", v, "o-last", 1);
	wait_for(more);
	for (uint64_t s = 1; s <= more; s++)
		cr_assert_eq(counted.applies[s], 1, "seq %llu applied %u times", (unsigned long long)s,
		             counted.applies[s]);
	proj_stock_level after = level("sku-r");
	cr_assert_eq(after.reserved, 21);
	cr_assert_eq(after.on_hand, 100);
}

Test(projector, a_failed_batch_commits_nothing_and_keeps_the_checkpoint)
{
	memset(&counted, 0, sizeof counted);
	uint64_t first = create_item("sku-f1", 1);
	uint64_t fail = create_item("sku-f2", 2);
	uint64_t last = create_item("sku-f3", 3);
	counted.fail_at = fail;
	defs_storage[0] = *proj_inventory_def(inv);
	defs_storage[1] = counter_def();
	start_runner_with(defs_storage, 2);
	int64_t deadline = th_now_ms() + 10000;
	while (__atomic_load_n(&counted.failures, __ATOMIC_RELAXED) < 2 && th_now_ms() < deadline)
		th_sleep_ms(20);
	cr_assert_geq(__atomic_load_n(&counted.failures, __ATOMIC_RELAXED), 2, "the batch is retried");
	proj_runner_stats st;
	proj_runner_stats_get(runner, &st);
	cr_assert_geq(st.failures, 2);
	cr_assert_eq(st.last_error, ORN_EIO);
	cr_assert_lt(proj_runner_position(runner), fail);
	uint64_t cp_inventory = 0, cp_counter = 0;
	cr_assert_eq(proj_checkpoint_get(env, PROJ_INVENTORY_NAME, &cp_inventory), ORN_OK);
	cr_assert_eq(proj_checkpoint_get(env, "test.counter", &cp_counter), ORN_OK);
	cr_assert_lt(cp_inventory, fail);
	cr_assert_lt(cp_counter, fail);
	/* Nothing of the failing batch reached the inventory either. */
	proj_stock_level l;
	cr_assert_eq(proj_inventory_get(inv, "sku-f2", &l), ORN_ENOTFOUND);
	cr_assert_eq(proj_inventory_get(inv, "sku-f3", &l), ORN_ENOTFOUND);
	if (cp_inventory < first)
		cr_assert_eq(proj_inventory_get(inv, "sku-f1", &l), ORN_ENOTFOUND);
	/* Stop (abandoning the batch) and restart healed: it converges. */
	stop_runner();
	counted.fail_at = 0;
	start_runner_with(defs_storage, 2);
	wait_for(last);
	cr_assert_eq(level("sku-f1").on_hand, 1);
	cr_assert_eq(level("sku-f2").on_hand, 2);
	cr_assert_eq(level("sku-f3").on_hand, 3);
}

Test(projector, a_tiny_map_grows_under_thousands_of_items, .timeout = 240)
{
	proj_inventory_destroy(inv);
	proj_env_close(env);
	open_env(64 * 1024);
	start_inventory_runner();
	uint64_t last = 0;
	char id[32];
	for (int i = 0; i < 3000; i++) {
		snprintf(id, sizeof id, "g-%05d", i);
		last = create_item(id, i);
	}
	wait_for(last);
	proj_env_stats es;
	cr_assert_eq(proj_env_stats_get(env, &es), ORN_OK);
	cr_assert_gt(es.map_grows, 0);
	cr_assert_gt(es.map_size, 64 * 1024);
	proj_runner_stats st;
	proj_runner_stats_get(runner, &st);
	cr_assert_eq(st.failures, 0);
	cr_assert_eq(level("g-00000").on_hand, 0);
	cr_assert_eq(level("g-02999").on_hand, 2999);
	proj_inventory_page *page = malloc(sizeof *page);
	proj_inventory_query q = {.has_below = true, .below = 50, .limit = 100};
	cr_assert_eq(proj_inventory_list(inv, &q, page), ORN_OK);
	cr_assert_eq(page->count, 50);
	cr_assert_str_eq(page->next_cursor, "");
	free(page);
}

Test(projector, a_poison_commit_is_logged_skipped_and_counted)
{
	start_inventory_runner();
	uint64_t before = create_item("sku-p1", 1);
	static const char garbage[] = "\xc1\xff not msgpack at all";
	es_append_result res;
	cr_assert_eq(es_append(store, STOCK_AGGREGATE, "sku-poison", &(es_position){0, 0}, "poison-1",
	                       garbage, sizeof garbage - 1, &res),
	             ORN_OK);
	uint64_t after = create_item("sku-p2", 2);
	cr_assert_lt(before, res.seq);
	cr_assert_lt(res.seq, after);
	wait_for(after);
	cr_assert_eq(level("sku-p1").on_hand, 1);
	cr_assert_eq(level("sku-p2").on_hand, 2);
	proj_stock_level l;
	cr_assert_eq(proj_inventory_get(inv, "sku-poison", &l), ORN_ENOTFOUND);
	proj_runner_stats st;
	proj_runner_stats_get(runner, &st);
	cr_assert_eq(st.poison, 1);
	cr_assert_eq(st.failures, 0);
}

Test(projector, bad_definitions_are_refused)
{
	proj_runner *r = NULL;
	proj_def defs[2] = {counter_def(), counter_def()};
	cr_assert_eq(proj_runner_start(store, env, defs, 2, NULL, &r), ORN_EINVAL, "duplicate names");
	defs[0].name = "Bad Name";
	cr_assert_eq(proj_runner_start(store, env, defs, 1, NULL, &r), ORN_EINVAL);
	cr_assert_eq(proj_runner_start(store, env, defs, 0, NULL, &r), ORN_EINVAL);
	cr_assert_null(r);
}
