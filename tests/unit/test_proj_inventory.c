/* test_proj_inventory.c — the LMDB environment (proj_env.c) and the inventory
 * model (inventory.c) without NATS: events are applied through the model's
 * projection definition in write transactions, as the projector does. Given
 * stock events, when queried, then the levels and pages equal a brute-force
 * model. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inventory.h"
#include "proj_internal.h"
#include "stock.h"

static char dir[64];
static proj_env *env;
static proj_inventory *inv;

static void rmrf(const char *path)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	cr_assert_eq(system(cmd), 0);
}

static void open_env(size_t map_size, size_t max_map_size)
{
	proj_env_options o;
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = map_size;
	o.max_map_size = max_map_size;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_inventory_create(env, &inv), ORN_OK);
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/orion-projunit-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	open_env(1 << 20, (size_t)1 << 30);
}

static void teardown(void)
{
	proj_inventory_destroy(inv);
	inv = NULL;
	proj_env_close(env);
	env = NULL;
	rmrf(dir);
}

/* ---- applying events ---- */

typedef struct one_event {
	const char *id;
	uint64_t seq;
	stock_event ev;
} one_event;

static orn_rc apply_one(proj_txn *t, void *closure)
{
	one_event *o = closure;
	const proj_def *def = proj_inventory_def(inv);
	mp_writer *w = mp_writer_create();
	env_envelope e;
	char subject[ES_SUBJECT_MAX];
	memset(&e, 0, sizeof e);
	cr_assert_eq(stock_event_encode(w, &o->ev), ORN_OK);
	strcpy(e.type, stock_event_type(o->ev.kind));
	e.schema = 1;
	e.payload = mp_writer_data(w);
	e.payload_len = mp_writer_size(w);
	snprintf(subject, sizeof subject, "orion.evt.stock.%s", o->id);
	orn_rc rc = def->apply(def->self, t, o->seq, subject, &e);
	mp_writer_destroy(w);
	return rc;
}

static uint64_t next_seq = 1;

static void apply_event(const char *id, stock_event ev)
{
	one_event o = {id, next_seq++, ev};
	cr_assert_eq(proj_env_write(env, apply_one, &o), ORN_OK);
}

static stock_event created(int64_t quantity)
{
	return (stock_event){.kind = STOCK_CREATED, .quantity = quantity};
}

static stock_event reservation(stock_event_kind kind, const char *rid, int64_t quantity)
{
	stock_event ev = {.kind = kind, .quantity = quantity};
	snprintf(ev.reservation_id, sizeof ev.reservation_id, "%s", rid);
	return ev;
}

static stock_event adjusted(int64_t delta, int64_t on_hand_after)
{
	stock_event ev = {.kind = STOCK_ADJUSTED, .delta = delta, .on_hand = on_hand_after};
	snprintf(ev.reason, sizeof ev.reason, "count");
	return ev;
}

static proj_stock_level level(const char *id)
{
	proj_stock_level l;
	cr_assert_eq(proj_inventory_get(inv, id, &l), ORN_OK, "%s", id);
	return l;
}

TestSuite(proj_inventory, .init = setup, .fini = teardown, .timeout = 60);

Test(proj_inventory, stock_events_move_the_levels)
{
	apply_event("sku-1", created(10));
	apply_event("sku-1", reservation(STOCK_RESERVED, "o1:sku-1", 3));
	apply_event("sku-1", reservation(STOCK_RESERVED, "o2:sku-1", 2));
	proj_stock_level l = level("sku-1");
	cr_assert_eq(l.on_hand, 10);
	cr_assert_eq(l.reserved, 5);
	cr_assert_eq(l.available, 5);
	apply_event("sku-1", reservation(STOCK_RELEASED, "o1:sku-1", 3));
	apply_event("sku-1", reservation(STOCK_COMMITTED, "o2:sku-1", 2));
	apply_event("sku-1", adjusted(4, 12));
	l = level("sku-1");
	cr_assert_eq(l.on_hand, 12);
	cr_assert_eq(l.reserved, 0);
	cr_assert_eq(l.available, 12);
	cr_assert_eq(l.version, next_seq - 1);
}

/* Decides c against the actor's state s, applies the events to s and feeds
 * them to the model, as the stock service and the projector do. */
static void decide_and_feed(stock_state *s, const char *id, stock_command c)
{
	stock_events out;
	cr_assert_eq(stock_decide(s, &c, &out), STOCK_OK);
	for (size_t i = 0; i < out.count; i++) {
		cr_assert_eq(stock_evolve(s, &out.items[i]), ORN_OK);
		apply_event(id, out.items[i]);
	}
}

Test(proj_inventory, the_threshold_and_low_flag_fold_in_step_with_the_stock_actor)
{
	stock_state s;
	stock_command steps[] = {
	        {.kind = STOCK_CREATE, .quantity = 6, .threshold = 4},
	        {.kind = STOCK_RESERVE, .reservation_id = "o1", .quantity = 3}, /* low */
	        {.kind = STOCK_RELEASE, .reservation_id = "o1"},                /* cleared */
	        {.kind = STOCK_SET_THRESHOLD, .threshold = 7},                  /* low */
	        {.kind = STOCK_ADJUST, .delta = 5, .reason = "delivery"},       /* cleared */
	        {.kind = STOCK_SET_THRESHOLD, .threshold = 12},                 /* low */
	};
	bool low_after[] = {false, true, false, true, false, true};
	cr_assert_eq(stock_state_init(&s), ORN_OK);
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		decide_and_feed(&s, "sku-t", steps[i]);
		proj_stock_level l = level("sku-t");
		cr_assert_eq(l.threshold, s.threshold, "step %zu", i);
		cr_assert_eq(l.low, s.low, "step %zu", i);
		cr_assert_eq(l.low, low_after[i], "step %zu", i);
		cr_assert_eq(l.on_hand, s.on_hand, "step %zu", i);
		cr_assert_eq(l.reserved, s.reserved, "step %zu", i);
	}
	stock_state_dispose(&s);
}

Test(proj_inventory, an_item_created_before_thresholds_has_none)
{
	apply_event("sku-old", created(2));
	proj_stock_level l = level("sku-old");
	cr_assert_eq(l.threshold, 0);
	cr_assert_not(l.low);
}

Test(proj_inventory, unknown_items_and_ids_are_told_apart)
{
	proj_stock_level l;
	cr_assert_eq(proj_inventory_get(inv, "nope", &l), ORN_ENOTFOUND);
	cr_assert_eq(proj_inventory_get(inv, "a.b", &l), ORN_EINVAL);
	cr_assert_eq(proj_inventory_get(inv, "", &l), ORN_EINVAL);
}

static orn_rc apply_raw(proj_txn *t, void *closure)
{
	const env_envelope *e = closure;
	const proj_def *def = proj_inventory_def(inv);
	return def->apply(def->self, t, 99, "orion.evt.stock.bad", e);
}

Test(proj_inventory, undecodable_payloads_and_foreign_types_are_skipped)
{
	static const uint8_t garbage[] = {0xc1};
	env_envelope e;
	memset(&e, 0, sizeof e);
	strcpy(e.type, STOCK_EV_RESERVED);
	e.schema = 1;
	e.payload = garbage;
	e.payload_len = sizeof garbage;
	cr_assert_eq(proj_env_write(env, apply_raw, &e), ORN_OK);
	strcpy(e.type, "SomethingNew");
	cr_assert_eq(proj_env_write(env, apply_raw, &e), ORN_OK);
	proj_inventory_stats st;
	proj_inventory_stats_get(inv, &st);
	cr_assert_eq(st.undecodable, 1);
	proj_stock_level l;
	cr_assert_eq(proj_inventory_get(inv, "bad", &l), ORN_ENOTFOUND);
}

/* ---- listing against a brute-force model ---- */

#define ITEMS 300

static int64_t model_available[ITEMS];

static void item_id(char *out, size_t cap, int i)
{
	snprintf(out, cap, "item-%04d", i);
}

static orn_rc apply_items(proj_txn *t, void *closure)
{
	const int *distinct = closure;
	char id[32];
	orn_rc rc = ORN_OK;
	for (int i = 0; rc == ORN_OK && i < ITEMS; i++) {
		item_id(id, sizeof id, i);
		int64_t on_hand = (i * 37) % *distinct;
		one_event create = {id, next_seq++, created(on_hand + 1)};
		one_event reserve = {id, next_seq++, reservation(STOCK_RESERVED, "r", 1)};
		rc = apply_one(t, &create);
		if (rc == ORN_OK)
			rc = apply_one(t, &reserve);
		model_available[i] = on_hand;
	}
	return rc;
}

/* ITEMS items, each created with available + 1 and one unit reserved, in one transaction. */
static void load_items(int distinct)
{
	cr_assert_eq(proj_env_write(env, apply_items, &distinct), ORN_OK);
}

/* Pages through the model with q and checks every row against the brute force. */
static void check_paging(bool has_below, int64_t below, unsigned limit)
{
	proj_inventory_page *page = malloc(sizeof *page);
	char cursor[PROJ_CURSOR_MAX] = "";
	int expected_next = 0, pages = 0;
	for (;;) {
		proj_inventory_query q = {
		        .has_below = has_below, .below = below, .limit = limit, .cursor = cursor};
		cr_assert_eq(proj_inventory_list(inv, &q, page), ORN_OK);
		pages++;
		for (size_t r = 0; r < page->count; r++) {
			while (expected_next < ITEMS && has_below &&
			       !(model_available[expected_next] < below))
				expected_next++;
			cr_assert_lt(expected_next, ITEMS, "extra row %s", page->items[r].id);
			char id[32];
			item_id(id, sizeof id, expected_next);
			cr_assert_str_eq(page->items[r].id, id, "below %lld page %d row %zu",
			                 (long long)below, pages, r);
			cr_assert_eq(page->items[r].available, model_available[expected_next]);
			expected_next++;
		}
		if (page->next_cursor[0] == '\0')
			break;
		cr_assert_eq(page->count, limit, "only full pages have a next cursor");
		strcpy(cursor, page->next_cursor);
	}
	while (expected_next < ITEMS && has_below && !(model_available[expected_next] < below))
		expected_next++;
	cr_assert_eq(expected_next, ITEMS, "rows missing after %d pages (below %lld)", pages,
	             (long long)below);
	free(page);
}

Test(proj_inventory, pages_of_100_cover_every_item_once)
{
	load_items(20);
	check_paging(false, 0, 100);
	check_paging(false, 0, 1);
	check_paging(false, 0, 7);
}

Test(proj_inventory, below_merges_few_available_groups)
{
	load_items(20); /* 20 distinct levels: the merge path */
	check_paging(true, 5, 100);
	check_paging(true, 5, 3);
	check_paging(true, 0, 10);
	check_paging(true, 1, 10);
	check_paging(true, 1000, 100);
}

Test(proj_inventory, below_scans_when_levels_are_many)
{
	load_items(1000); /* 300 distinct levels: more than the merge takes below 900 */
	check_paging(true, 900, 100);
	check_paging(true, 100, 9);
	check_paging(true, -5, 10);
}

Test(proj_inventory, limits_and_cursors_are_validated)
{
	proj_inventory_page *page = malloc(sizeof *page);
	proj_inventory_query q = {.limit = 0};
	cr_assert_eq(proj_inventory_list(inv, &q, page), ORN_EINVAL);
	q.limit = PROJ_INVENTORY_PAGE_MAX + 1;
	cr_assert_eq(proj_inventory_list(inv, &q, page), ORN_EINVAL);
	q.limit = 10;
	q.cursor = "not-a-cursor!";
	cr_assert_eq(proj_inventory_list(inv, &q, page), ORN_EINVAL);
	q.cursor = NULL;
	cr_assert_eq(proj_inventory_list(inv, &q, page), ORN_OK);
	cr_assert_eq(page->count, 0);
	cr_assert_str_eq(page->next_cursor, "");
	free(page);
}

Test(proj_inventory, a_cursor_past_a_moved_item_still_pages_in_id_order)
{
	load_items(20);
	proj_inventory_page *page = malloc(sizeof *page);
	proj_inventory_query q = {.has_below = true, .below = 10, .limit = 5};
	cr_assert_eq(proj_inventory_list(inv, &q, page), ORN_OK);
	cr_assert_eq(page->count, 5);
	char last[ES_ID_MAX + 1];
	strcpy(last, page->items[4].id);
	/* The last row of the page leaves the filter: the cursor still works. */
	apply_event(last, adjusted(100, 0));
	char cursor[PROJ_CURSOR_MAX];
	strcpy(cursor, page->next_cursor);
	q.cursor = cursor;
	cr_assert_eq(proj_inventory_list(inv, &q, page), ORN_OK);
	cr_assert_gt(page->count, 0);
	cr_assert_gt(strcmp(page->items[0].id, last), 0);
	free(page);
}

/* ---- the environment ---- */

static orn_rc put_many(proj_txn *t, void *closure)
{
	MDB_dbi dbi;
	int *round = closure;
	orn_rc rc = proj_dbi_open(t, "test.blob", 0, &dbi);
	uint8_t value[512];
	memset(value, 0x5a, sizeof value);
	for (int i = 0; rc == ORN_OK && i < 200; i++) {
		char key[32];
		snprintf(key, sizeof key, "k-%d-%d", *round, i);
		rc = proj_put(t, dbi, key, strlen(key), value, sizeof value, 0);
	}
	return rc;
}

Test(proj_env, a_full_map_grows_and_the_write_is_retried, .init = setup, .fini = teardown)
{
	proj_inventory_destroy(inv);
	inv = NULL;
	proj_env_close(env);
	rmrf(dir);
	open_env(64 * 1024, 64 * 1024 * 1024);
	proj_env_stats before, after;
	cr_assert_eq(proj_env_stats_get(env, &before), ORN_OK);
	for (int round = 0; round < 50; round++)
		cr_assert_eq(proj_env_write(env, put_many, &round), ORN_OK, "round %d", round);
	cr_assert_eq(proj_env_stats_get(env, &after), ORN_OK);
	cr_assert_gt(after.map_grows, 0);
	cr_assert_gt(after.map_size, before.map_size);
	cr_assert_geq(after.map_size, after.used_bytes);
}

Test(proj_env, growth_stops_at_the_maximum, .init = setup, .fini = teardown)
{
	proj_inventory_destroy(inv);
	inv = NULL;
	proj_env_close(env);
	rmrf(dir);
	open_env(64 * 1024, 256 * 1024);
	orn_rc rc = ORN_OK;
	for (int round = 0; round < 50 && rc == ORN_OK; round++)
		rc = proj_env_write(env, put_many, &round);
	cr_assert_eq(rc, ORN_ETOOBIG);
	proj_env_stats st;
	cr_assert_eq(proj_env_stats_get(env, &st), ORN_OK);
	cr_assert_eq(st.map_size, 256 * 1024);
}

Test(proj_env, bad_options_are_refused)
{
	proj_env_options o;
	proj_env *e = NULL;
	proj_env_options_init(&o);
	cr_assert_eq(proj_env_open(&o, &e), ORN_EINVAL);
	o.path = "/proc/orion-cannot-be-here";
	cr_assert_eq(proj_env_open(&o, &e), ORN_EIO);
	o.path = "/tmp";
	o.max_map_size = o.map_size - 1;
	cr_assert_eq(proj_env_open(&o, &e), ORN_EINVAL);
	cr_assert_null(e);
}

/* Readers on other threads while the writer grows the map. */
static int readers_stop;
static int reader_errors;

static void *reader_main(void *arg)
{
	long reads = 0;
	while (!__atomic_load_n(&readers_stop, __ATOMIC_RELAXED)) {
		proj_stock_level l;
		orn_rc rc = proj_inventory_get(inv, "sku-r", &l);
		if (rc != ORN_OK && rc != ORN_ENOTFOUND)
			__atomic_add_fetch(&reader_errors, 1, __ATOMIC_RELAXED);
		reads++;
	}
	return (void *)reads;
}

Test(proj_env, queries_run_while_the_map_grows, .init = setup, .fini = teardown)
{
	proj_inventory_destroy(inv);
	inv = NULL;
	proj_env_close(env);
	rmrf(dir);
	open_env(64 * 1024, 64 * 1024 * 1024);
	pthread_t threads[4];
	readers_stop = 0;
	reader_errors = 0;
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&threads[i], NULL, reader_main, NULL), 0);
	apply_event("sku-r", created(5));
	for (int round = 0; round < 30; round++)
		cr_assert_eq(proj_env_write(env, put_many, &round), ORN_OK);
	__atomic_store_n(&readers_stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 4; i++) {
		void *reads = NULL;
		pthread_join(threads[i], &reads);
		cr_assert_gt((long)reads, 0);
	}
	proj_env_stats st;
	cr_assert_eq(proj_env_stats_get(env, &st), ORN_OK);
	cr_assert_gt(st.map_grows, 0);
	cr_assert_eq(reader_errors, 0);
	cr_assert_eq(level("sku-r").available, 5);
}
