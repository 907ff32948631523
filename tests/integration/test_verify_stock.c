/* test_verify_stock.c — `orion verify-stock` against a real nats-server: stock
 * and orders made by the real stock, cart and order actors and the checkout
 * saga, the inventory read model fed by a real projector in <data dir>/lmdb,
 * and the orion binary run as an operator runs it. A consistent shop
 * verifies clean; a stray StockReserved with no order behind it, a tampered
 * read model record, and an oversell left by two commits from before the
 * commit chain (reserved above on hand) are reported; a lagging read model
 * is compared at its checkpoint, not against events it has not seen. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "evstore-internal.h"
#include "bus-internal.h"
#include "actor.h"
#include "cart.h"
#include "checkout_world.h"
#include "crafted_log.h"
#include "harness.h"
#include "inventory.h"
#include "log.h"
#include "order.h"
#include "proj_env.h"
#include "proj_internal.h"
#include "projector.h"
#include "saga.h"
#include "stock_client.h"

#define HASH      "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define WAIT_MS   30000
#define FAR_AHEAD (15 * 60 * 1000)
#define ITEMS_DB  "inventory.items" /* schemas/read-models.md */

static tcw_world world; /* nats-server, store, stock/cart/order actors, client */
static saga *checkout;
static char *data_dir, *copy_dir;
static proj_env *env;
static proj_inventory *inventory;
static proj_runner *runner;

static void start_projector(void)
{
	char path[600];
	proj_env_options eo;
	snprintf(path, sizeof path, "%s/lmdb", data_dir);
	proj_env_options_init(&eo);
	eo.path = path;
	cr_assert_eq(proj_env_open(&eo, &env), ORN_OK);
	cr_assert_eq(proj_inventory_create(env, &inventory), ORN_OK);
	cr_assert_eq(proj_runner_start(world.store, env, proj_inventory_def(inventory), 1, NULL, &runner),
	             ORN_OK);
}

/* Stops the projector and closes its environment (the files stay). */
static void stop_projector(void)
{
	proj_runner_stop(runner);
	runner = NULL;
	proj_inventory_destroy(inventory);
	inventory = NULL;
	proj_env_close(env);
	env = NULL;
}

static void start_all(void)
{
	saga_options so;

	tcw_start(&world, "verify-stock");
	saga_options_init(&so);
	cr_assert_eq(saga_start(world.store, world.hub, &so, &checkout), ORN_OK);
	data_dir = th_tempdir("verify-stock");
	start_projector();
	unsetenv("ORION_NATS_URL");
}

static void stop_all(void)
{
	stop_projector();
	saga_stop(checkout);
	checkout = NULL;
	tcw_stop(&world);
	th_rmrf(data_dir);
	free(data_dir);
	data_dir = NULL;
	th_rmrf(copy_dir);
	free(copy_dir);
	copy_dir = NULL;
}

/* ---- commands through the real actors ---- */

static void unique_id(char *out, size_t cap, const char *what)
{
	snprintf(out, cap, "test-%s-%lld", what, (long long)orn_monotonic_ns());
}

static bus_reply send_order(const char *order_id, const order_command *c)
{
	mp_writer *w = mp_writer_create();
	env_envelope cmd;
	bus_reply r;
	char cmd_id[96];

	cr_assert_not_null(w);
	unique_id(cmd_id, sizeof cmd_id, order_id);
	cr_assert_eq(order_command_encode(w, c), ORN_OK);
	cr_assert_eq(bus_command_init(&cmd, order_command_type(c->kind), orn_now_ms(), cmd_id, NULL, "test",
	                              mp_writer_data(w), mp_writer_size(w)),
	             ORN_OK);
	cr_assert_eq(bus_send_on(world.client, ORDER_AGGREGATE, order_id, &cmd, 10000, &r), ORN_OK);
	mp_writer_destroy(w);
	return r;
}

static void order_accepted(const char *order_id, const order_command *c)
{
	bus_reply r = send_order(order_id, c);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "%s %s: %s %s", order_command_type(c->kind), order_id, r.code,
	             r.detail);
	bus_reply_dispose(&r);
}

static void create_stock(const char *item, int64_t quantity)
{
	bus_reply r;
	stock_command c = tsc_create(quantity);
	char cmd_id[96];

	unique_id(cmd_id, sizeof cmd_id, item);
	cr_assert_eq(tsc_send(world.client, item, &c, cmd_id, 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "create %s: %s", item, r.code);
	bus_reply_dispose(&r);
}

/* Polls until item's reserved units equal want; returns the last value seen. */
static int64_t wait_reserved(const char *item, int64_t want)
{
	int64_t until = th_now_ms() + WAIT_MS, reserved = -1;
	for (;;) {
		cr_assert_eq(tsc_get(world.client, item, NULL, &reserved, NULL, NULL), ORN_OK);
		if (reserved == want || th_now_ms() >= until)
			return reserved;
		th_sleep_ms(20);
	}
}

/* PlaceOrder of one line; the saga reserves it. */
static void place(const char *order_id, const char *product, int64_t quantity)
{
	order_command *c = calloc(1, sizeof *c);
	cr_assert_not_null(c);
	c->kind = ORDER_PLACE;
	strcpy(c->data.customer_id, "alice");
	strcpy(c->data.customer_email, "alice@example.com");
	strcpy(c->data.request_hash, HASH);
	strcpy(c->data.token_hash, HASH);
	strcpy(c->data.currency, "EUR");
	c->data.time_ms = orn_now_ms();
	c->data.ttl_ms = FAR_AHEAD;
	snprintf(c->data.lines[0].product_id, ORDER_ID_MAX, "%s", product);
	strcpy(c->data.lines[0].name, "Teapot");
	c->data.lines[0].unit_price_cents = 2750;
	c->data.lines[0].quantity = quantity;
	c->data.line_count = 1;
	order_accepted(order_id, c);
	free(c);
}

/* Confirm, once the saga has marked the order reserved (until then the
 * order refuses it: wrong_state). */
static void confirm(const char *order_id)
{
	order_command c;
	int64_t until = th_now_ms() + WAIT_MS;
	memset(&c, 0, sizeof c);
	c.kind = ORDER_CONFIRM;
	strcpy(c.data.token_hash, HASH);
	c.data.ttl_ms = FAR_AHEAD;
	for (;;) {
		c.data.time_ms = orn_now_ms();
		bus_reply r = send_order(order_id, &c);
		bool accepted = r.outcome == BUS_ACCEPTED;
		bool pending = r.outcome == BUS_REJECTED && strcmp(r.code, "wrong_state") == 0;
		cr_assert(accepted || pending, "confirm %s: %s %s", order_id, r.code, r.detail);
		bus_reply_dispose(&r);
		if (accepted)
			return;
		cr_assert_lt(th_now_ms(), until, "%s never left pending", order_id);
		th_sleep_ms(20);
	}
}

/* MarkPaid as the payment actor sends it; the saga then commits the stock. */
static void mark_paid(const char *order_id)
{
	order_command c;
	memset(&c, 0, sizeof c);
	c.kind = ORDER_MARK_PAID;
	c.data.time_ms = orn_now_ms();
	strcpy(c.data.charge_id, "ch_test");
	strcpy(c.data.brand, "visa");
	strcpy(c.data.last4, "4242");
	order_accepted(order_id, &c);
}

static void cancel(const char *order_id)
{
	order_command c;
	memset(&c, 0, sizeof c);
	c.kind = ORDER_CANCEL;
	c.data.time_ms = orn_now_ms();
	strcpy(c.data.reason, ORDER_REASON_CUSTOMER);
	order_accepted(order_id, &c);
}

/* The stream's last sequence. */
static uint64_t stream_last(void)
{
	jsStreamInfo *si = NULL;
	cr_assert_eq(js_GetStreamInfo(&si, es_store_jetstream(world.store), ES_STREAM, NULL, NULL), NATS_OK);
	uint64_t last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	return last;
}

/* Waits until the projector has applied everything in the stream now. */
static uint64_t wait_projected(void)
{
	uint64_t last = stream_last();
	cr_assert_eq(proj_runner_wait(runner, last, WAIT_MS), ORN_OK, "projector at %llu < %llu",
	             (unsigned long long)proj_runner_position(runner), (unsigned long long)last);
	return last;
}

/* A shop at rest: p-a 10 with o-wait (2, awaiting confirmation) held and
 * o-paid (3) sold; p-b 5 with o-pay (1, awaiting payment) held and o-short
 * (9) cancelled out of stock; p-c 3 with o-gone (1) cancelled and released. */
static void make_shop(void)
{
	create_stock("p-a", 10);
	create_stock("p-b", 5);
	create_stock("p-c", 3);
	place("o-wait", "p-a", 2);
	place("o-paid", "p-a", 3);
	place("o-pay", "p-b", 1);
	place("o-short", "p-b", 9);
	place("o-gone", "p-c", 1);
	cr_assert_eq(wait_reserved("p-a", 5), 5);
	cr_assert_eq(wait_reserved("p-c", 1), 1);
	confirm("o-paid");
	mark_paid("o-paid");
	confirm("o-pay");
	cancel("o-gone");
	cr_assert_eq(wait_reserved("p-a", 2), 2, "o-paid committed");
	cr_assert_eq(wait_reserved("p-b", 1), 1, "o-short held nothing");
	cr_assert_eq(wait_reserved("p-c", 0), 0, "o-gone released");
}

/* ---- running the binary ---- */

/* Runs `orion verify-stock args` on dir with the test's server; stdout to
 * <data dir>/out.txt, returned in out (malloc'd). Exit code. */
static int run_verify(const char *dir, const char *args, char **out)
{
	char cmd[4096], path[700];
	snprintf(path, sizeof path, "%s/out.txt", data_dir);
	snprintf(cmd, sizeof cmd,
	         "ORION_NATS_URL='%s' ORION_DATA_DIR='%s' '%s' verify-stock %s > '%s' 2>> '%s/stderr.log'",
	         natsd_url(world.server), dir, th_orion_bin(), args, path, data_dir);
	int status = system(cmd);
	cr_assert(WIFEXITED(status));
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char *text = calloc(1, 65536);
	cr_assert_not_null(text);
	size_t n = fread(text, 1, 65535, f);
	text[n] = '\0';
	fclose(f);
	*out = text;
	return WEXITSTATUS(status);
}

/* The JSON summary line (the last one) of a --json run. */
static json_t *json_summary(const char *out)
{
	const char *end = out + strlen(out);
	while (end > out && end[-1] == '\n')
		end--;
	const char *start = end;
	while (start > out && start[-1] != '\n')
		start--;
	json_error_t err;
	json_t *j = json_loadb(start, (size_t)(end - start), 0, &err);
	cr_assert_not_null(j, "summary is not JSON: %s", err.text);
	cr_assert_str_eq(json_string_value(json_object_get(j, "summary")), "verify-stock");
	return j;
}

/* Appends a StockReserved of quantity for rid to item directly, with no
 * command and no order: what a bug or a hand-made event would leave. */
static uint64_t append_stray_reserve(const char *item, const char *rid, int64_t quantity)
{
	stock_event ev;
	mp_writer *payload = mp_writer_create(), *commit = mp_writer_create();
	env_envelope e;
	es_append_result res;
	uint64_t head = 0;

	cr_assert(payload && commit);
	memset(&ev, 0, sizeof ev);
	ev.kind = STOCK_RESERVED;
	snprintf(ev.reservation_id, sizeof ev.reservation_id, "%s", rid);
	ev.quantity = quantity;
	cr_assert_eq(stock_event_encode(payload, &ev), ORN_OK);
	memset(&e, 0, sizeof e);
	strcpy(e.type, STOCK_EV_RESERVED);
	e.schema = 1;
	e.time_ms = orn_now_ms();
	strcpy(e.correlation, rid);
	strcpy(e.causation, "test-stray");
	strcpy(e.actor, "test");
	e.payload = mp_writer_data(payload);
	e.payload_len = mp_writer_size(payload);
	env_commit_begin(commit, 1);
	cr_assert_eq(env_encode(commit, &e), ORN_OK);
	cr_assert_eq(es_head(world.store, STOCK_AGGREGATE, item, &head), ORN_OK);
	cr_assert_gt(head, 0);
	cr_assert_eq(es_append(world.store, STOCK_AGGREGATE, item, &(es_position){head, head}, "test-stray",
	                       mp_writer_data(commit), mp_writer_size(commit), &res),
	             ORN_OK);
	mp_writer_destroy(payload);
	mp_writer_destroy(commit);
	return res.seq;
}

/* ---- the tests ---- */

Test(verify_stock, a_shop_at_rest_verifies_clean, .init = start_all, .fini = stop_all, .timeout = 180)
{
	char *out = NULL;
	make_shop();
	uint64_t last = wait_projected();
	int code = run_verify(data_dir, "", &out);
	cr_assert_eq(code, 0, "exit %d, output:\n%s", code, out);
	cr_expect_not_null(strstr(out, "verify-stock: 3 items, 0 differences\n"), "%s", out);
	free(out);

	code = run_verify(data_dir, "--json", &out);
	cr_assert_eq(code, 0, "%s", out);
	json_t *j = json_summary(out);
	cr_expect_eq(json_integer_value(json_object_get(j, "items")), 3);
	cr_expect_eq(json_integer_value(json_object_get(j, "differences")), 0);
	cr_expect_geq((uint64_t)json_integer_value(json_object_get(j, "position")), last,
	              "compared at the checkpoint the projector reached");
	json_decref(j);
	free(out);
}

Test(verify_stock, a_reservation_without_an_order_is_reported, .init = start_all, .fini = stop_all,
     .timeout = 180)
{
	char *out = NULL;
	make_shop();
	uint64_t seq = append_stray_reserve("p-a", "stray-1", 3);
	cr_assert_eq(proj_runner_wait(runner, seq, WAIT_MS), ORN_OK);
	int code = run_verify(data_dir, "", &out);
	cr_assert_eq(code, 1, "exit %d, output:\n%s", code, out);
	cr_expect_not_null(strstr(out,
	                          "p-a reservation:stray-1: events 3, read model -, live orders 0 (no order "
	                          "has this id)\n"),
	                   "%s", out);
	/* the read model applied the same event: only live orders disagree */
	cr_expect_not_null(strstr(out, "p-a reserved: events 5, read model 5, live orders 2\n"), "%s", out);
	cr_expect_not_null(strstr(out, "verify-stock: 3 items, 2 differences\n"), "%s", out);
	cr_expect_null(strstr(out, "p-b"), "p-b is consistent: %s", out);
	free(out);
}

Test(verify_stock, a_tampered_read_model_record_is_reported, .init = start_all, .fini = stop_all,
     .timeout = 180)
{
	char *out = NULL, src[600], dst[700];
	make_shop();
	wait_projected();
	stop_projector();

	/* a copy of the environment with p-b's on hand changed from 5 to 12 */
	copy_dir = th_tempdir("verify-stock-copy");
	snprintf(src, sizeof src, "%s/lmdb", data_dir);
	snprintf(dst, sizeof dst, "%s/lmdb", copy_dir);
	cr_assert_eq(mkdir(dst, 0750), 0);
	MDB_env *e = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_val k = {3, "p-b"}, v;
	proj_stock_record rec;
	uint8_t value[PROJ_STOCK_RECORD_LEN];
	cr_assert_eq(mdb_env_create(&e), 0);
	cr_assert_eq(mdb_env_set_maxdbs(e, 64), 0);
	cr_assert_eq(mdb_env_open(e, src, MDB_RDONLY, 0640), 0);
	cr_assert_eq(mdb_env_copy(e, dst), 0);
	mdb_env_close(e);
	cr_assert_eq(mdb_env_create(&e), 0);
	cr_assert_eq(mdb_env_set_maxdbs(e, 64), 0);
	cr_assert_eq(mdb_env_open(e, dst, 0, 0640), 0);
	cr_assert_eq(mdb_txn_begin(e, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, ITEMS_DB, 0, &dbi), 0);
	cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
	cr_assert_eq(proj_stock_record_decode(v.mv_data, v.mv_size, &rec), ORN_OK);
	cr_assert_eq(rec.on_hand, 5);
	rec.on_hand = 12;
	proj_stock_record_encode(&rec, value);
	v = (MDB_val){sizeof value, value};
	cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(e);

	int code = run_verify(copy_dir, "", &out);
	cr_assert_eq(code, 1, "exit %d, output:\n%s", code, out);
	cr_expect_not_null(strstr(out, "p-b on_hand: events 5, read model 12, live orders -\n"), "%s", out);
	cr_expect_not_null(strstr(out, "verify-stock: 3 items, 1 differences\n"), "%s", out);
	free(out);
	code = run_verify(copy_dir, "--json", &out);
	cr_assert_eq(code, 1, "%s", out);
	json_error_t err;
	json_t *line = json_loads(out, JSON_DISABLE_EOF_CHECK, &err);
	cr_assert_not_null(line, "%s", err.text);
	cr_expect_str_eq(json_string_value(json_object_get(line, "item")), "p-b");
	cr_expect_str_eq(json_string_value(json_object_get(line, "field")), "on_hand");
	cr_expect_eq(json_integer_value(json_object_get(line, "events")), 5);
	cr_expect_eq(json_integer_value(json_object_get(line, "read_model")), 12);
	cr_expect(json_is_null(json_object_get(line, "live_orders")));
	json_decref(line);
	free(out);

	/* the original, untouched, still verifies clean */
	code = run_verify(data_dir, "", &out);
	cr_expect_eq(code, 0, "%s", out);
	free(out);
}

/* A StockReserved of quantity for rid with no levels, as old commits have it. */
static tcl_event reserved_event(const char *rid, int64_t quantity)
{
	stock_event ev;
	memset(&ev, 0, sizeof ev);
	ev.kind = STOCK_RESERVED;
	snprintf(ev.reservation_id, sizeof ev.reservation_id, "%s", rid);
	ev.quantity = quantity;
	return tcl_stock(&ev);
}

Test(verify_stock, an_oversell_from_before_the_commit_chain_is_reported, .init = start_all, .fini = stop_all,
     .timeout = 180)
{
	char *out = NULL;
	make_shop();
	/* p-over has 5 units; two reserves decided on that one state (4 and 3),
	 * written before commits recorded their version, both count */
	tcl_log *log = tcl_create(world.store);
	stock_event created;
	memset(&created, 0, sizeof created);
	created.kind = STOCK_CREATED;
	created.quantity = 5;
	tcl_valid(log, STOCK_AGGREGATE, "p-over", (tcl_event[]){tcl_stock(&created)}, 1);
	tcl_legacy(log, STOCK_AGGREGATE, "p-over", (tcl_event[]){reserved_event("race-1", 4)}, 1);
	uint64_t seq =
	        tcl_legacy(log, STOCK_AGGREGATE, "p-over", (tcl_event[]){reserved_event("race-2", 3)}, 1);
	tcl_destroy(log);
	cr_assert_eq(proj_runner_wait(runner, seq, WAIT_MS), ORN_OK);

	int code = run_verify(data_dir, "", &out);
	cr_assert_eq(code, 1, "exit %d, output:\n%s", code, out);
	cr_expect_not_null(strstr(out, "p-over reserved_above_on_hand: events 7, read model 7, live orders - "
	                               "(impossible: on hand 5, 2 units reserved beyond it: an oversell, see "
	                               "orion verify-log)\n"),
	                   "%s", out);
	cr_expect_null(strstr(out, "p-a reserved_above"), "%s", out);
	free(out);

	code = run_verify(data_dir, "--no-read-model --json", &out);
	cr_assert_eq(code, 1, "%s", out);
	json_error_t err;
	json_t *line = json_loads(out, JSON_DISABLE_EOF_CHECK, &err);
	cr_assert_not_null(line, "%s", err.text);
	cr_expect_str_eq(json_string_value(json_object_get(line, "item")), "p-over");
	cr_expect_str_eq(json_string_value(json_object_get(line, "field")), "reserved_above_on_hand",
	                 "ranked first for its item: %s", out);
	cr_expect_eq(json_integer_value(json_object_get(line, "events")), 7);
	cr_expect(json_is_null(json_object_get(line, "read_model")), "--no-read-model");
	json_decref(line);
	free(out);
}

Test(verify_stock, a_lagging_read_model_is_compared_at_its_checkpoint, .init = start_all, .fini = stop_all,
     .timeout = 180)
{
	char *out = NULL;
	make_shop();
	uint64_t projected = wait_projected();
	stop_projector();
	/* after the model stopped: another order holds 4 of p-a */
	place("o-late", "p-a", 4);
	cr_assert_eq(wait_reserved("p-a", 6), 6);
	uint64_t last = stream_last();
	cr_assert_gt(last, projected);

	int code = run_verify(data_dir, "--json", &out);
	cr_assert_eq(code, 0, "the model is behind, not wrong:\n%s", out);
	json_t *j = json_summary(out);
	uint64_t position = (uint64_t)json_integer_value(json_object_get(j, "position"));
	cr_expect_lt(position, last, "folded to the checkpoint, not the stream's end");
	cr_expect_geq((uint64_t)json_integer_value(json_object_get(j, "stream_last")), last);
	json_decref(j);
	free(out);

	/* without the model: the stream's end, o-late included */
	code = run_verify(data_dir, "--no-read-model --json", &out);
	cr_assert_eq(code, 0, "%s", out);
	j = json_summary(out);
	cr_expect_geq((uint64_t)json_integer_value(json_object_get(j, "position")), last);
	cr_expect_eq(json_integer_value(json_object_get(j, "differences")), 0);
	json_decref(j);
	free(out);
}

Test(verify_stock, no_read_model_is_an_error_not_a_clean_result, .init = start_all, .fini = stop_all,
     .timeout = 60)
{
	char *out = NULL;
	copy_dir = th_tempdir("verify-stock-empty");
	int code = run_verify(copy_dir, "", &out);
	cr_expect_eq(code, 2, "%s", out);
	cr_expect_null(strstr(out, "0 differences"), "%s", out);
	free(out);
	code = run_verify(copy_dir, "--bogus", &out);
	cr_expect_eq(code, 2);
	free(out);
}
