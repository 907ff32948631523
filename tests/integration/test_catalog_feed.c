/* test_catalog_feed.c — the catalog, inventory and users models fed by one
 * projector runner from a real nats-server: product, stock and user commits
 * appended to ORION_EVT converge into the models, `available` joins the
 * inventory in the same snapshot, and a restart on the same directory applies
 * nothing twice. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "log.h"
#include "harness.h"
#include "inventory.h"
#include "projector.h"
#include "stock.h"
#include "users.h"

static natsd *server;
static es_store *store;
static char *dir;
static proj_env *env;
static proj_catalog *cat;
static proj_inventory *inv;
static proj_users *users;
static proj_runner *runner;

static void open_models(void)
{
	proj_env_options o;
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = (size_t)16 << 20;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_catalog_create(env, &cat), ORN_OK);
	cr_assert_eq(proj_inventory_create(env, &inv), ORN_OK);
	cr_assert_eq(proj_users_create(env, &users), ORN_OK);
}

static void close_models(void)
{
	proj_runner_stop(runner);
	runner = NULL;
	proj_users_destroy(users);
	proj_inventory_destroy(inv);
	proj_catalog_destroy(cat);
	users = NULL;
	inv = NULL;
	cat = NULL;
	proj_env_close(env);
	env = NULL;
}

static proj_def defs[3];

static void start_runner(void)
{
	proj_runner_options o;
	proj_runner_options_init(&o);
	o.retry_max_ms = 200;
	defs[0] = *proj_catalog_def(cat);
	defs[1] = *proj_inventory_def(inv);
	defs[2] = *proj_users_def(users);
	cr_assert_eq(proj_runner_start(store, env, defs, 3, &o, &runner), ORN_OK);
}

static void setup(void)
{
	server = th_natsd_start("catalog-feed");
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &store), ORN_OK);
	dir = th_tempdir("catalog-feed-lmdb");
	open_models();
}

static void teardown(void)
{
	close_models();
	th_rmrf(dir);
	free(dir);
	dir = NULL;
	es_store_close(store);
	store = NULL;
	th_natsd_stop(server);
	server = NULL;
}

TestSuite(catalog_feed, .init = setup, .fini = teardown, .timeout = 120);

/* Appends one event (type, payload in w) as a commit; returns its sequence. */
static uint64_t append(const char *aggregate, const char *id, uint64_t expected, const char *type,
                       mp_writer *w)
{
	mp_writer *commit = mp_writer_create();
	env_envelope e;
	es_append_result res;
	char msg_id[160];
	static unsigned long counter;
	memset(&e, 0, sizeof e);
	strcpy(e.type, type);
	e.schema = 1;
	e.time_ms = orn_now_ms();
	strcpy(e.causation, "test");
	e.payload = mp_writer_data(w);
	e.payload_len = mp_writer_size(w);
	env_commit_begin(commit, 1);
	cr_assert_eq(env_encode(commit, &e), ORN_OK);
	snprintf(msg_id, sizeof msg_id, "t-%s-%lu-%lld", id, ++counter, (long long)orn_monotonic_ns());
	cr_assert_eq(es_append(store, aggregate, id, &(es_position){expected, expected}, msg_id,
	                       mp_writer_data(commit), mp_writer_size(commit), &res),
	             ORN_OK, "append %s", id);
	mp_writer_destroy(commit);
	mp_writer_destroy(w);
	return res.seq;
}

static uint64_t append_product(const char *id, uint64_t expected, const product_event *ev)
{
	mp_writer *w = mp_writer_create();
	cr_assert_eq(product_event_encode(w, ev), ORN_OK);
	return append(PRODUCT_AGGREGATE, id, expected, product_event_type(ev->kind), w);
}

static uint64_t append_stock(const char *id, uint64_t expected, const stock_event *ev)
{
	mp_writer *w = mp_writer_create();
	cr_assert_eq(stock_event_encode(w, ev), ORN_OK);
	return append(STOCK_AGGREGATE, id, expected, stock_event_type(ev->kind), w);
}

static uint64_t append_user(const char *email, uint64_t expected, const user_event *ev)
{
	char key[USER_KEY_MAX];
	mp_writer *w = mp_writer_create();
	cr_assert_eq(user_key_for_email(email, key, sizeof key), ORN_OK);
	cr_assert_eq(user_event_encode(w, ev), ORN_OK);
	return append(USER_AGGREGATE, key, expected, user_event_type(ev->kind), w);
}

static product_event created(const char *sku, const char *name, const char *category)
{
	product_event ev = {.kind = PRODUCT_CREATED, .present = PRODUCT_FIELDS_ALL};
	snprintf(ev.fields.sku, sizeof ev.fields.sku, "%s", sku);
	snprintf(ev.fields.name, sizeof ev.fields.name, "%s", name);
	strcpy(ev.fields.description, "Made to last.");
	ev.fields.price_cents = 1000;
	strcpy(ev.fields.currency, "EUR");
	snprintf(ev.fields.category, sizeof ev.fields.category, "%s", category);
	return ev;
}

static void wait_for(uint64_t seq)
{
	cr_assert_eq(proj_runner_wait(runner, seq, 20000), ORN_OK, "position %llu < %llu",
	             (unsigned long long)proj_runner_position(runner), (unsigned long long)seq);
}

Test(catalog_feed, the_stream_converges_into_catalog_inventory_and_users)
{
	start_runner();
	product_event ev = created("CHAIR-1", "Oak chair", "furniture");
	uint64_t chair = append_product("chair", 0, &ev);
	ev = created("TABLE-1", "Oak table", "furniture");
	uint64_t table = append_product("table", 0, &ev);
	stock_event stock = {.kind = STOCK_CREATED, .quantity = 8};
	uint64_t chair_stock = append_stock("chair", 0, &stock);
	stock = (stock_event){.kind = STOCK_RESERVED, .quantity = 3};
	strcpy(stock.reservation_id, "o1:chair");
	append_stock("chair", chair_stock, &stock);
	product_event rename = {.kind = PRODUCT_UPDATED, .present = PRODUCT_FIELD_NAME};
	strcpy(rename.fields.name, "Walnut chair");
	append_product("chair", chair, &rename);
	product_event gone = {.kind = PRODUCT_DELETED};
	append_product("table", table, &gone);
	user_event reg = {.kind = USER_REGISTERED};
	strcpy(reg.fields.user_id, "usr_feed");
	strcpy(reg.fields.email, "feed@example.com");
	strcpy(reg.fields.name, "Feed");
	strcpy(reg.fields.password_hash, "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA");
	reg.fields.role = USER_ROLE_CUSTOMER;
	uint64_t last = append_user("feed@example.com", 0, &reg);
	wait_for(last);

	proj_product p;
	cr_assert_eq(proj_catalog_get(cat, "chair", &p), ORN_OK);
	cr_assert_str_eq(p.name, "Walnut chair");
	cr_assert_eq(p.available, 5);
	cr_assert_eq(proj_catalog_get(cat, "table", &p), ORN_ENOTFOUND);
	proj_catalog_page *page = malloc(sizeof *page);
	proj_catalog_query q = {.q = "oak", .category = "furniture", .limit = 10};
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_OK);
	cr_assert_eq(page->count, 0, "the chair was renamed, the table deleted");
	q.q = "walnut";
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_OK);
	cr_assert_eq(page->count, 1);
	cr_assert_eq(page->items[0].available, 5);
	proj_user u;
	char user_key[USER_KEY_MAX];
	cr_assert_eq(user_key_for_email("Feed@Example.com", user_key, sizeof user_key), ORN_OK);
	cr_assert_eq(proj_users_get_by_key(users, user_key, &u), ORN_OK);
	cr_assert_str_eq(u.user_id, "usr_feed");
	uint64_t checkpoint = 0;
	cr_assert_eq(proj_checkpoint_get(env, PROJ_CATALOG_NAME, &checkpoint), ORN_OK);
	cr_assert_geq(checkpoint, last);

	/* A restart on the same directory applies nothing twice. */
	close_models();
	open_models();
	start_runner();
	stock = (stock_event){.kind = STOCK_ADJUSTED, .delta = 2, .on_hand = 10};
	strcpy(stock.reason, "count");
	uint64_t seq = 0;
	cr_assert_eq(es_head(store, STOCK_AGGREGATE, "chair", &seq), ORN_OK);
	wait_for(append_stock("chair", seq, &stock));
	cr_assert_eq(proj_catalog_get(cat, "chair", &p), ORN_OK);
	cr_assert_eq(p.on_hand, 10);
	cr_assert_eq(p.reserved, 3);
	cr_assert_eq(p.available, 7);
	cr_assert_eq(proj_users_get_by_id(users, "usr_feed", &u), ORN_OK);
	free(page);
}
