/* test_void_commits.c — every fold of Orion ignores void commits (ADR 015),
 * for every aggregate kind: stock, product, sku, user, cart, order, payment
 * and the mail log. Each test crafts one aggregate's log on a real
 * nats-server (tests/support/crafted_log.h) with void commits whose effect
 * would show had they been applied (the test checks that a fold of every
 * commit differs), and a valid commit after a void one that names the right
 * version, while a live projector follows. Then
 *   the actor runtime   (act_runtime in-process, rehydrated cold, asked Get;
 *                        the mail log: the mail role's es_load fold),
 *   es_read             (folded with the kind's own evolve),
 *   orion replay        (--as-of the last sequence; and replay prints the
 *                        void commits only with --void),
 *   the read models     (live, and after `orion rebuild`; an order's story
 *                        in the admin desk's timeline too)
 * all show the state of the valid commits alone, and `orion rebuild --verify`
 * finds the rebuilt models equal to the live ones. Kinds without a read model
 * (sku, payment) and without an --as-of view (the mail log, which no actor
 * kind serves) skip those steps, as said where they do. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bus-internal.h"
#include "actor.h"
#include "bus.h"
#include "crafted_log.h"
#include "harness.h"
#include "log.h"
#include "read_models.h"
#include "stock_client.h"

#define WAIT_MS 30000

static tcl_world world;
static proj_env *model_env;
static proj_models models;
static proj_runner *runner;

/* Opens the read models at <data dir>/lmdb (following its link); with a
 * runner when follow. */
static void open_models(bool follow)
{
	char path[600];
	proj_env_options eo;
	snprintf(path, sizeof path, "%s/lmdb", world.data_dir);
	proj_env_options_init(&eo);
	eo.path = path;
	cr_assert_eq(proj_env_open(&eo, &model_env), ORN_OK);
	cr_assert_eq(proj_models_open(model_env, &models), ORN_OK);
	if (follow)
		cr_assert_eq(proj_runner_start(world.store, model_env, models.defs, PROJ_MODEL_COUNT, NULL,
		                               &runner),
		             ORN_OK);
}

static void close_models(void)
{
	proj_runner_stop(runner);
	runner = NULL;
	if (model_env != NULL)
		proj_models_close(&models);
	proj_env_close(model_env);
	model_env = NULL;
}

static void start_all(void)
{
	tcl_world_start(&world, "void-commits");
	unsetenv("ORION_NATS_URL");
	open_models(true);
}

static void stop_all(void)
{
	close_models();
	tcl_world_stop(&world);
}

/* ---- the folds ------------------------------------------------------------ */

/* msgpack bytes as JSON (jansson). */
static json_t *msgpack_json(const void *data, size_t len)
{
	mp_writer *w = mp_writer_create();
	mp_reader r;
	json_error_t err;
	cr_assert_not_null(w);
	mp_reader_init(&r, data, len);
	cr_assert_eq(mp_to_json(&r, w), ORN_OK);
	json_t *j = json_loadb((const char *)mp_writer_data(w), mp_writer_size(w), 0, &err);
	cr_assert_not_null(j, "%s", err.text);
	mp_writer_destroy(w);
	return j;
}

/* The view of a state of kind (kind->view) as JSON. */
static json_t *view_json(const act_kind *kind, const void *state)
{
	mp_writer *w = mp_writer_create();
	cr_assert_not_null(w);
	cr_assert_eq(kind->view(state, w), ORN_OK);
	json_t *j = msgpack_json(mp_writer_data(w), mp_writer_size(w));
	mp_writer_destroy(w);
	return j;
}

typedef struct fold {
	const act_kind *kind;
	void *state;
	bool every_commit; /* also the void ones: what the chain prevents */
} fold;

static orn_rc fold_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	fold *f = closure;
	(void)seq;
	(void)subject;
	cr_assert_eq(f->kind->evolve(f->state, e), ORN_OK, "%s does not fold", e->type);
	return ORN_OK;
}

static orn_rc fold_commit(void *closure, const es_commit *c)
{
	for (size_t i = 0; i < c->count; i++)
		fold_event(closure, c->seq, c->subject, &c->events[i]);
	return ORN_OK;
}

/* The aggregate's view folded by es_read (valid commits), or with every
 * commit by es_scan (every_commit). */
static json_t *read_view(const act_kind *kind, const char *id, bool every_commit)
{
	char subject[ES_SUBJECT_MAX];
	fold f = {kind, calloc(1, kind->state_size), every_commit};
	cr_assert_not_null(f.state);
	cr_assert_eq(es_subject(subject, sizeof subject, "orion.evt", kind->aggregate, id), ORN_OK);
	kind->init(f.state);
	if (every_commit)
		cr_assert_eq(es_scan(world.store, subject, 1, 0, fold_commit, &f, NULL), ORN_OK);
	else
		cr_assert_eq(es_read(world.store, subject, 1, 0, fold_event, &f, NULL), ORN_OK);
	json_t *j = view_json(kind, f.state);
	if (kind->dispose != NULL)
		kind->dispose(f.state);
	free(f.state);
	return j;
}

/* The aggregate's view as a runtime of kind, started now and so rehydrating
 * it from the log, answers Get. */
static json_t *actor_view(const act_kind *kind, const char *id)
{
	act_runtime *rt = NULL;
	act_options ao;
	act_options_init(&ao);
	cr_assert_eq(act_runtime_start(world.store, kind, &ao, &rt), ORN_OK);
	natsConnection *nc = tsc_connect(natsd_url(world.server));
	env_envelope cmd;
	bus_reply reply;
	uint8_t nil = 0xc0;
	cr_assert_eq(bus_command_init(&cmd, BUS_CMD_GET, orn_now_ms(), "test-get", NULL, "test", &nil, 1),
	             ORN_OK);
	cr_assert_eq(bus_send_on(nc, kind->aggregate, id, &cmd, 10000, &reply), ORN_OK);
	cr_assert_eq(reply.outcome, BUS_ACCEPTED, "Get %s %s: %s", kind->aggregate, id, reply.code);
	cr_assert_not_null(reply.view);
	json_t *j = msgpack_json(reply.view, reply.view_len);
	bus_reply_dispose(&reply);
	natsConnection_Destroy(nc);
	act_runtime_stop(rt);
	return j;
}

/* ---- the orion binary ------------------------------------------------------ */

static int run_orion(const char *args, char **out)
{
	return tcl_run_orion(&world, args, out);
}

/* `orion replay --as-of last` of the aggregate: its "state". */
static json_t *replay_view(const char *aggregate, const char *id, uint64_t last)
{
	char args[256], *out = NULL;
	json_error_t err;
	snprintf(args, sizeof args, "replay --aggregate %s --id %s --as-of %llu", aggregate, id,
	         (unsigned long long)last);
	cr_assert_eq(run_orion(args, &out), 0, "%s", out);
	json_t *line = json_loads(out, 0, &err);
	cr_assert_not_null(line, "%s: %s", err.text, out);
	json_t *state = json_incref(json_object_get(line, "state"));
	cr_assert_not_null(state, "%s", out);
	cr_expect_eq((uint64_t)json_integer_value(json_object_get(line, "as_of_seq")), last);
	json_decref(line);
	free(out);
	return state;
}

static size_t count_of(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* `orion replay` of the aggregate prints the events of its valid commits;
 * with --void also those of its void commits, marked. */
static void expect_replay(const char *aggregate, const char *id, size_t valid_events, size_t void_events)
{
	char args[256], *out = NULL;
	snprintf(args, sizeof args, "replay --aggregate %s --id %s", aggregate, id);
	cr_assert_eq(run_orion(args, &out), 0);
	cr_expect_eq(count_of(out, "\n"), valid_events, "%s", out);
	cr_expect_null(strstr(out, "\"void\":true"), "%s", out);
	free(out);
	snprintf(args, sizeof args, "replay --aggregate %s --id %s --void", aggregate, id);
	cr_assert_eq(run_orion(args, &out), 0);
	cr_expect_eq(count_of(out, "\n"), valid_events + void_events, "%s", out);
	cr_expect_eq(count_of(out, "\"void\":true"), void_events, "%s", out);
	free(out);
}

/* Waits until the live projector has applied the whole stream; returns its end. */
static uint64_t wait_projected(void)
{
	uint64_t last = tcl_stream_last(&world);
	cr_assert_eq(proj_runner_wait(runner, last, WAIT_MS), ORN_OK);
	return last;
}

/* The read models' side: check(models, id) on the live models; rebuild
 * --verify equal; check again on a generation `orion rebuild` made. check
 * NULL: the kind has no read model (rebuild --verify still runs). */
typedef void model_check_fn(proj_models *m, const char *id);

static void expect_models(model_check_fn *check, const char *id)
{
	char *out = NULL;
	wait_projected();
	if (check != NULL)
		check(&models, id);
	int code = run_orion("rebuild --verify --quiet", &out);
	cr_expect_eq(code, 0, "rebuild differs from live:\n%s", out);
	cr_expect_not_null(strstr(out, " 0 differences\n"), "%s", out);
	free(out);
	close_models();
	code = run_orion("rebuild --quiet", &out);
	cr_assert_eq(code, 0, "%s", out);
	free(out);
	open_models(false);
	if (check != NULL)
		check(&models, id);
}

/* Every fold shows what expect accepts and the fold of every commit does not. */
typedef void view_check_fn(json_t *view, const char *who);

static void expect_folds(const act_kind *kind, const char *id, view_check_fn *expect)
{
	uint64_t last = wait_projected();
	json_t *all = read_view(kind, id, true), *valid = read_view(kind, id, false);
	cr_assert_not(json_equal(all, valid), "the void commits change nothing even if folded: a weak test");
	expect(valid, "es_read");
	json_t *actor = actor_view(kind, id);
	expect(actor, "the actor runtime");
	json_t *replayed = replay_view(kind->aggregate, id, last);
	expect(replayed, "orion replay --as-of");
	cr_expect(json_equal(valid, actor), "es_read and the actor agree");
	json_decref(all);
	json_decref(valid);
	json_decref(actor);
	json_decref(replayed);
}

static int64_t int_of(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	cr_assert(json_is_integer(v), "no integer %s", key);
	return json_integer_value(v);
}

static const char *str_of(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s != NULL ? s : "";
}

/* ---- stock ------------------------------------------------------------------ */

static void stock_expected(json_t *v, const char *who)
{
	cr_expect_eq(int_of(v, "on_hand"), 10, "%s", who);
	cr_expect_eq(int_of(v, "reserved"), 3, "%s", who);
}

static void stock_model(proj_models *m, const char *id)
{
	proj_stock_level level;
	cr_assert_eq(proj_inventory_get(m->inventory, id, &level), ORN_OK);
	cr_expect_eq(level.on_hand, 10);
	cr_expect_eq(level.reserved, 3);
}

Test(void_commits, stock, .init = start_all, .fini = stop_all, .timeout = 120)
{
	uint64_t created = tcl_valid(world.log, "stock", "p-1",
	                             (tcl_event[]){tcl_stock_event(STOCK_CREATED, NULL, 10)}, 1);
	tcl_valid(world.log, "stock", "p-1", (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-1", 2)}, 1);
	/* lost a race with o-1's reserve: would hold 5 more */
	uint64_t lost = tcl_void(world.log, "stock", "p-1", created,
	                         (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-2", 5)}, 1);
	/* decided again on the right version, after the void commit */
	tcl_valid(world.log, "stock", "p-1", (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-3", 1)}, 1);
	/* built on the void commit: void too; would take 4 off on hand */
	tcl_void(world.log, "stock", "p-1", lost, (tcl_event[]){tcl_stock_event(STOCK_ADJUSTED, NULL, -4)},
	         1);
	expect_folds(&stock_kind, "p-1", stock_expected);
	expect_replay("stock", "p-1", 3, 2);
	expect_models(stock_model, "p-1");
}

/* ---- product ------------------------------------------------------------------ */

static void product_expected(json_t *v, const char *who)
{
	cr_expect_str_eq(str_of(v, "name"), "Teapot", "%s", who);
	cr_expect_eq(int_of(v, "price_cents"), 3000, "%s", who);
}

static void product_model(proj_models *m, const char *id)
{
	proj_product *p = calloc(1, sizeof *p);
	cr_assert_not_null(p);
	cr_assert_eq(proj_catalog_get(m->catalog, id, p), ORN_OK);
	cr_expect_str_eq(p->name, "Teapot");
	cr_expect_eq(p->price_cents, 3000);
	free(p);
}

Test(void_commits, product, .init = start_all, .fini = stop_all, .timeout = 120)
{
	uint64_t created = tcl_valid(world.log, "product", "prod-1",
	                             (tcl_event[]){tcl_product_event(PRODUCT_CREATED, "Teapot", 2750)}, 1);
	tcl_valid(world.log, "product", "prod-1",
	          (tcl_event[]){tcl_product_event(PRODUCT_UPDATED, "Teapot", 3000)}, 1);
	/* an update that lost the race to the price change */
	tcl_void(world.log, "product", "prod-1", created,
	         (tcl_event[]){tcl_product_event(PRODUCT_UPDATED, "Kettle", 999)}, 1);
	expect_folds(&product_kind, "prod-1", product_expected);
	expect_replay("product", "prod-1", 2, 1);
	expect_models(product_model, "prod-1");
}

/* ---- sku ------------------------------------------------------------------ */

static void sku_expected(json_t *v, const char *who)
{
	cr_expect_str_eq(str_of(v, "owner"), "p-1", "%s: %s", who, json_dumps(v, 0));
}

Test(void_commits, sku, .init = start_all, .fini = stop_all, .timeout = 120)
{
	tcl_valid(world.log, "sku", "TEA-1", (tcl_event[]){tcl_sku_event(SKU_CLAIMED, "p-1")}, 1);
	/* a second product's claim, decided on the free sku as well */
	tcl_void(world.log, "sku", "TEA-1", 0, (tcl_event[]){tcl_sku_event(SKU_CLAIMED, "p-2")}, 1);
	expect_folds(&sku_kind, "TEA-1", sku_expected);
	expect_replay("sku", "TEA-1", 1, 1);
	expect_models(NULL, "TEA-1"); /* no read model keeps skus: the catalog keeps products */
}

/* ---- user ------------------------------------------------------------------ */

static char user_key[USER_KEY_MAX];

static void user_expected(json_t *v, const char *who)
{
	cr_expect_str_eq(str_of(v, "user_id"), "alice-1", "%s", who);
	cr_expect_str_eq(str_of(v, "role"), "admin", "%s", who);
}

static void user_model(proj_models *m, const char *id)
{
	proj_user u;
	(void)id;
	char key[USER_KEY_MAX];
	cr_assert_eq(user_key_for_email("alice@example.com", key, sizeof key), ORN_OK);
	cr_assert_eq(proj_users_get_by_key(m->users, key, &u), ORN_OK);
	cr_expect_str_eq(u.user_id, "alice-1");
	cr_expect_eq(u.role, USER_ROLE_ADMIN);
	cr_expect_eq(proj_users_get_by_id(m->users, "alice-2", &u), ORN_ENOTFOUND);
}

Test(void_commits, user, .init = start_all, .fini = stop_all, .timeout = 120)
{
	cr_assert_eq(user_key_for_email("alice@example.com", user_key, sizeof user_key), ORN_OK);
	tcl_valid(world.log, "user", user_key,
	          (tcl_event[]){tcl_user_event(USER_REGISTERED, "alice-1", USER_ROLE_CUSTOMER)}, 1);
	/* a second registration of the same email, decided on "no account" too */
	tcl_void(world.log, "user", user_key, 0,
	         (tcl_event[]){tcl_user_event(USER_REGISTERED, "alice-2", USER_ROLE_CUSTOMER)}, 1);
	tcl_valid(world.log, "user", user_key,
	          (tcl_event[]){tcl_user_event(USER_ROLE_CHANGED, "alice-1", USER_ROLE_ADMIN)}, 1);
	expect_folds(&user_kind, user_key, user_expected);
	expect_replay("user", user_key, 2, 1);
	expect_models(user_model, user_key);
}

/* ---- cart ------------------------------------------------------------------ */

static void cart_expected(json_t *v, const char *who)
{
	json_t *items = json_object_get(v, "items");
	cr_assert_eq(json_array_size(items), 2, "%s: %s", who, json_dumps(v, 0));
	cr_expect_str_eq(str_of(json_array_get(items, 0), "product_id"), "p-a", "%s", who);
	cr_expect_eq(int_of(json_array_get(items, 0), "quantity"), 3, "%s", who);
	cr_expect_str_eq(str_of(json_array_get(items, 1), "product_id"), "p-b", "%s", who);
	cr_expect_eq(int_of(json_array_get(items, 1), "quantity"), 2, "%s", who);
}

static void cart_model(proj_models *m, const char *id)
{
	proj_cart *c = calloc(1, sizeof *c);
	cr_assert_not_null(c);
	cr_assert_eq(proj_carts_get(m->carts, id, c), ORN_OK);
	cr_assert_eq(c->state.line_count, 2);
	cr_expect_str_eq(c->state.lines[0].product_id, "p-a");
	cr_expect_eq(c->state.lines[0].quantity, 3);
	cr_expect_str_eq(c->state.lines[1].product_id, "p-b");
	free(c);
}

Test(void_commits, cart, .init = start_all, .fini = stop_all, .timeout = 120)
{
	uint64_t first = tcl_valid(world.log, "cart", "alice",
	                           (tcl_event[]){tcl_cart_event(CART_ITEM_ADDED, "p-a", 1, 1)}, 1);
	tcl_valid(world.log, "cart", "alice", (tcl_event[]){tcl_cart_event(CART_ITEM_ADDED, "p-b", 2, 2)}, 1);
	/* an add from a second tab, decided before p-b was added */
	tcl_void(world.log, "cart", "alice", first,
	         (tcl_event[]){tcl_cart_event(CART_ITEM_ADDED, "p-c", 5, 5)}, 1);
	tcl_valid(world.log, "cart", "alice",
	          (tcl_event[]){tcl_cart_event(CART_QUANTITY_CHANGED, "p-a", 3, 0)}, 1);
	expect_folds(&cart_kind, "alice", cart_expected);
	expect_replay("cart", "alice", 3, 1);
	expect_models(cart_model, "alice");
}

/* ---- order ------------------------------------------------------------------ */

static void order_expected(json_t *v, const char *who)
{
	cr_expect_str_eq(str_of(v, "status"), "confirmed", "%s: %s", who, json_dumps(v, 0));
	cr_expect_eq(json_array_size(json_object_get(v, "history")), 4, "%s", who);
}

static void order_model(proj_models *m, const char *id)
{
	proj_order *o = calloc(1, sizeof *o);
	cr_assert_not_null(o);
	cr_assert_eq(proj_orders_get(m->orders, id, o), ORN_OK);
	cr_expect_eq(o->state.status, ORDER_CONFIRMED);
	cr_expect_eq(o->state.history_count, 4);
	free(o);
	/* the admin desk's timeline (ADR 029): the valid commits only */
	proj_desk_event story[8];
	size_t count = 0;
	bool more = false;
	cr_assert_eq(proj_desk_timeline(m->desk, id, story, 8, &count, &more), ORN_OK);
	cr_expect_eq(count, 4, "the story has the four valid events");
	for (size_t i = 0; i < count; i++)
		cr_expect_str_neq(story[i].type, order_event_type(ORDER_CANCELLED_EVENT), "no void event");
}

Test(void_commits, order, .init = start_all, .fini = stop_all, .timeout = 120)
{
	tcl_valid(world.log, "order", "o-1", (tcl_event[]){tcl_order_event(ORDER_PLACED, "p-1", 2)}, 1);
	uint64_t reserved = tcl_valid(world.log, "order", "o-1",
	                              (tcl_event[]){tcl_order_event(ORDER_RESERVED, "p-1", 2)}, 1);
	tcl_valid(world.log, "order", "o-1",
	          (tcl_event[]){tcl_order_event(ORDER_CONFIRMED_BY_CUSTOMER, "p-1", 2)}, 1);
	/* a Cancel that raced the customer's Confirm: folded, it would cancel
	 * the order and refuse the payment below */
	tcl_void(world.log, "order", "o-1", reserved,
	         (tcl_event[]){tcl_order_event(ORDER_CANCELLED_EVENT, "p-1", 2)}, 1);
	tcl_valid(world.log, "order", "o-1", (tcl_event[]){tcl_order_event(ORDER_PAID, "p-1", 2)}, 1);
	expect_folds(&order_kind, "o-1", order_expected);
	expect_replay("order", "o-1", 4, 1);
	expect_models(order_model, "o-1");
}

/* ---- payment ------------------------------------------------------------------ */

static void payment_expected(json_t *v, const char *who)
{
	cr_expect_str_eq(str_of(v, "status"), "declined", "%s: %s", who, json_dumps(v, 0));
	cr_expect_eq(json_array_size(json_object_get(v, "charges")), 0, "%s", who);
}

Test(void_commits, payment, .init = start_all, .fini = stop_all, .timeout = 120)
{
	tcl_valid(world.log, "payment", "o-1", (tcl_event[]){tcl_payment_event(PAYMENT_ATTEMPTED, NULL)}, 1);
	/* a success recorded on a stale version (none): folded, the payment
	 * would be succeeded with charge ch_9 and the decline refused */
	tcl_void(world.log, "payment", "o-1", 0, (tcl_event[]){tcl_payment_event(PAYMENT_SUCCEEDED, "ch_9")},
	         1);
	tcl_valid(world.log, "payment", "o-1", (tcl_event[]){tcl_payment_event(PAYMENT_DECLINED, NULL)}, 1);
	expect_folds(&payment_kind, "o-1", payment_expected);
	expect_replay("payment", "o-1", 2, 1);
	expect_models(NULL, "o-1"); /* no read model keeps payments */
}

/* ---- mail log ------------------------------------------------------------------ */

static orn_rc mail_fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	mail_log_event ev;
	(void)seq;
	(void)subject;
	cr_assert_eq(mail_log_event_decode(e->type, e->payload, e->payload_len, &ev), ORN_OK);
	mail_log_evolve(closure, &ev);
	return ORN_OK;
}

static orn_rc mail_fold_commit(void *closure, const es_commit *c)
{
	for (size_t i = 0; i < c->count; i++)
		mail_fold(closure, c->seq, c->subject, &c->events[i]);
	return ORN_OK;
}

static void mail_expected(const mail_log_state *s, const char *who)
{
	cr_expect_eq(s->status, MAIL_LOG_STATUS_PENDING, "%s", who);
	cr_expect_eq(s->attempts, 2, "%s", who);
}

static void mail_model(proj_models *m, const char *id)
{
	proj_mail_entry entry;
	cr_assert_eq(proj_mail_get(m->mail, id, &entry), ORN_OK);
	mail_expected(&entry.log, "the mail read model");
}

Test(void_commits, mail_log, .init = start_all, .fini = stop_all, .timeout = 120)
{
	const char *id = "m00112233445566778899aabbccddeeff";
	tcl_valid(world.log, "mail", id, (tcl_event[]){tcl_mail_event(MAIL_LOG_ATTEMPT_FAILED, "o-1", 1)}, 1);
	/* a delivery recorded by a second worker on the empty log: folded, the
	 * email would count as delivered and its next attempt be skipped */
	tcl_void(world.log, "mail", id, 0, (tcl_event[]){tcl_mail_event(MAIL_LOG_DELIVERED, "o-1", 1)}, 1);
	tcl_valid(world.log, "mail", id, (tcl_event[]){tcl_mail_event(MAIL_LOG_ATTEMPT_FAILED, "o-1", 2)}, 1);
	wait_projected();
	/* the mail role's fold (mail/mail.c: es_load with mail_log_evolve) */
	mail_log_state s;
	es_position at;
	mail_log_state_init(&s);
	cr_assert_eq(es_load(world.store, "mail", id, 0, mail_fold, &s, &at), ORN_OK);
	mail_expected(&s, "es_load");
	cr_expect_eq(at.last_seq, tcl_position(world.log, "mail", id).last_seq);
	cr_expect_eq(at.version, tcl_position(world.log, "mail", id).version);
	/* es_read, and every commit for contrast */
	char subject[ES_SUBJECT_MAX];
	snprintf(subject, sizeof subject, "orion.evt.mail.%s", id);
	mail_log_state_init(&s);
	cr_assert_eq(es_read(world.store, subject, 1, 0, mail_fold, &s, NULL), ORN_OK);
	mail_expected(&s, "es_read");
	mail_log_state_init(&s);
	cr_assert_eq(es_scan(world.store, subject, 1, 0, mail_fold_commit, &s, NULL), ORN_OK);
	cr_assert_eq(s.status, MAIL_LOG_STATUS_DELIVERED, "folded, the void commit would count: a weak test");
	/* --as-of needs an actor kind's view: the mail log has none */
	expect_replay("mail", id, 2, 1);
	expect_models(mail_model, id);
}
