/* test_saga.c — the checkout saga (checkout/saga.c) and the timers role
 * (timers/timers.c) over a real nats-server with the stock, cart and order
 * actors in process: the happy path, every compensation, expiry of a
 * deadline read from the orders read model (by a timers instance that never
 * saw the order placed, and exactly once with two instances), no
 * overselling under a burst, a saga stopped in the middle of a burst
 * whose successor finishes the work with nothing leaked, and the sweeper
 * redoing the steps of events the durable consumer lost.
 *
 * A timers instance here is what `orion serve --roles timers` runs: its own
 * LMDB environment with the orders model, a projector runner feeding it,
 * and the timers thread reading it. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore-internal.h"
#include "bus-internal.h"
#include "actor.h"
#include "cart.h"
#include "checkout_world.h"
#include "harness.h"
#include "holds.h"
#include "log.h"
#include "lost_delivery.h"
#include "metrics.h"
#include "order.h"
#include "orders.h"
#include "proj_env.h"
#include "projector.h"
#include "saga.h"
#include "stock_client.h"
#include "timers.h"

#define HASH        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define WAIT_MS     30000
#define FAR_AHEAD   (15 * 60 * 1000)
#define STATUS_MAX  32
#define STATUS_WAIT 0 /* any status but pending */

static tcw_world world; /* nats-server, store, stock/cart/order/holds actors, client */
static saga *checkout;

/* One instance of the timers role and the read model it reads. */
typedef struct timers_instance {
	char *dir;
	proj_env *env;
	proj_orders *orders;
	proj_def def;
	proj_runner *runner;
	timers *timers;
} timers_instance;

static timers_instance first_timers, second_timers;

static void start_saga_sweeping(int64_t sweep_after_ms)
{
	saga_options o;
	saga_options_init(&o);
	if (sweep_after_ms != 0)
		o.sweep_after_ms = sweep_after_ms;
	cr_assert_eq(saga_start(world.store, world.hub, &o, &checkout), ORN_OK);
}

static void start_saga(void)
{
	start_saga_sweeping(0);
}

/* Starts an instance on a fresh, empty environment: it learns every deadline
 * from the stream. */
static void timers_instance_start(timers_instance *ti)
{
	proj_env_options eo;
	proj_runner_options ro;
	timers_options to;

	ti->dir = th_tempdir("timers");
	proj_env_options_init(&eo);
	eo.path = ti->dir;
	cr_assert_eq(proj_env_open(&eo, &ti->env), ORN_OK);
	cr_assert_eq(proj_orders_create(ti->env, &ti->orders), ORN_OK);
	ti->def = *proj_orders_def(ti->orders);
	proj_runner_options_init(&ro);
	cr_assert_eq(proj_runner_start(world.store, ti->env, &ti->def, 1, &ro, &ti->runner), ORN_OK);
	timers_options_init(&to);
	to.scan_ms = 100;
	cr_assert_eq(timers_start(world.store, ti->orders, &to, &ti->timers), ORN_OK);
}

/* Stops an instance and removes its read model. Safe on one never started. */
static void timers_instance_stop(timers_instance *ti)
{
	timers_stop(ti->timers);
	proj_runner_stop(ti->runner);
	proj_orders_destroy(ti->orders);
	proj_env_close(ti->env);
	th_rmrf(ti->dir);
	free(ti->dir);
	memset(ti, 0, sizeof *ti);
}

static void start_all(void)
{
	tcw_start(&world, "saga");
	start_saga();
	timers_instance_start(&first_timers);
}

static void stop_all(void)
{
	timers_instance_stop(&first_timers);
	timers_instance_stop(&second_timers);
	saga_stop(checkout);
	checkout = NULL;
	tcw_stop(&world);
}

/* ---- commands ---- */

static void unique_id(char *out, size_t cap, const char *what)
{
	snprintf(out, cap, "test-%s-%lld", what, (long long)orn_monotonic_ns());
}

/* Sends a command with a payload already encoded; returns the reply. */
static bus_reply send_raw(const char *aggregate, const char *id, const char *type, mp_writer *payload)
{
	env_envelope cmd;
	bus_reply r;
	char cmd_id[96];

	unique_id(cmd_id, sizeof cmd_id, type);
	cr_assert_eq(bus_command_init(&cmd, type, orn_now_ms(), cmd_id, NULL, "test", mp_writer_data(payload),
	                              mp_writer_size(payload)),
	             ORN_OK);
	cr_assert_eq(bus_send_on(world.client, aggregate, id, &cmd, 10000, &r), ORN_OK,
	             "%s to %s/%s unanswered", type, aggregate, id);
	return r;
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

static int64_t reserved_of(const char *item)
{
	int64_t reserved = -1;
	cr_assert_eq(tsc_get(world.client, item, NULL, &reserved, NULL, NULL), ORN_OK);
	return reserved;
}

/* Polls until item's reserved units equal want; returns the last value seen. */
static int64_t wait_reserved(const char *item, int64_t want)
{
	int64_t until = th_now_ms() + WAIT_MS, reserved;
	while ((reserved = reserved_of(item)) != want && th_now_ms() < until)
		th_sleep_ms(20);
	return reserved;
}

typedef struct line_spec {
	const char *product;
	int64_t quantity;
} line_spec;

/* PlaceOrder for customer with lines; the deadline is now + deadline_in_ms. */
static bus_reply place_order(const char *order_id, const char *customer, const line_spec *lines, size_t count,
                             int64_t deadline_in_ms)
{
	order_command *c = calloc(1, sizeof *c);
	mp_writer *w = mp_writer_create();
	int64_t now = orn_now_ms();
	bus_reply r;

	cr_assert(c && w);
	c->kind = ORDER_PLACE;
	snprintf(c->data.customer_id, sizeof c->data.customer_id, "%s", customer);
	strcpy(c->data.customer_email, "alice@example.com");
	strcpy(c->data.request_hash, HASH);
	strcpy(c->data.token_hash, HASH);
	strcpy(c->data.currency, "EUR");
	c->data.time_ms = now;
	c->data.ttl_ms = deadline_in_ms; /* the decider sets the deadline: now + ttl */
	for (size_t i = 0; i < count; i++) {
		order_line *l = &c->data.lines[c->data.line_count++];
		snprintf(l->product_id, sizeof l->product_id, "%s", lines[i].product);
		snprintf(l->name, sizeof l->name, "Item %s", lines[i].product);
		l->unit_price_cents = 250;
		l->quantity = lines[i].quantity;
	}
	cr_assert_eq(order_command_encode(w, c), ORN_OK);
	r = send_raw(ORDER_AGGREGATE, order_id, ORDER_CMD_PLACE, w);
	mp_writer_destroy(w);
	free(c);
	return r;
}

static void place(const char *order_id, const line_spec *lines, size_t count, int64_t deadline_in_ms)
{
	bus_reply r = place_order(order_id, "alice", lines, count, deadline_in_ms);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "place %s: %s %s", order_id, r.code, r.detail);
	bus_reply_dispose(&r);
}

static void cancel_by_customer(const char *order_id)
{
	order_command c;
	mp_writer *w = mp_writer_create();

	memset(&c, 0, sizeof c);
	c.kind = ORDER_CANCEL;
	c.data.time_ms = orn_now_ms();
	strcpy(c.data.reason, ORDER_REASON_CUSTOMER);
	cr_assert_eq(order_command_encode(w, &c), ORN_OK);
	bus_reply r = send_raw(ORDER_AGGREGATE, order_id, ORDER_CMD_CANCEL, w);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "cancel %s: %s", order_id, r.code);
	bus_reply_dispose(&r);
	mp_writer_destroy(w);
}

/* ---- views ---- */

/* Sends "Get" to aggregate/id; the reply owns the view. */
static bus_reply get_view(const char *aggregate, const char *id)
{
	mp_writer *w = mp_writer_create();
	mp_write_nil(w);
	bus_reply r = send_raw(aggregate, id, BUS_CMD_GET, w);
	mp_writer_destroy(w);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "Get %s/%s: %s", aggregate, id, r.code);
	cr_assert_not_null(r.view);
	return r;
}

typedef struct order_view {
	char status[STATUS_MAX];
	char reason[ORDER_REASON_MAX]; /* of the last history entry */
	char cancelled[ORDER_LINES_MAX][ORDER_ID_MAX];
	size_t cancelled_count;
} order_view;

static void read_history_reason(mp_reader *r, order_view *v)
{
	uint32_t entries = 0, fields = 0;
	const char *key;
	uint32_t len;

	cr_assert_eq(mp_read_array(r, &entries), ORN_OK);
	for (uint32_t i = 0; i < entries; i++) {
		cr_assert_eq(mp_read_map(r, &fields), ORN_OK);
		for (uint32_t f = 0; f < fields; f++) {
			cr_assert_eq(mp_read_str(r, &key, &len), ORN_OK);
			bool reason = mp_str_eq(key, len, "reason");
			if (reason)
				v->reason[0] = '\0';
			if (reason && mp_peek(r) == MP_STR)
				cr_assert_eq(mp_read_cstr(r, v->reason, sizeof v->reason), ORN_OK);
			else
				cr_assert_eq(mp_skip(r), ORN_OK);
		}
	}
}

static order_view view_order(const char *order_id)
{
	bus_reply r = get_view(ORDER_AGGREGATE, order_id);
	order_view v;
	mp_reader rd;
	uint32_t count = 0, n = 0, len;
	const char *key;

	memset(&v, 0, sizeof v);
	mp_reader_init(&rd, r.view, r.view_len);
	cr_assert_eq(mp_read_map(&rd, &count), ORN_OK);
	for (uint32_t i = 0; i < count; i++) {
		cr_assert_eq(mp_read_str(&rd, &key, &len), ORN_OK);
		if (mp_str_eq(key, len, "status")) {
			cr_assert_eq(mp_read_cstr(&rd, v.status, sizeof v.status), ORN_OK);
		} else if (mp_str_eq(key, len, "history")) {
			read_history_reason(&rd, &v);
		} else if (mp_str_eq(key, len, "cancelled_products")) {
			cr_assert_eq(mp_read_array(&rd, &n), ORN_OK);
			for (uint32_t k = 0; k < n; k++)
				cr_assert_eq(mp_read_cstr(&rd, v.cancelled[k], ORDER_ID_MAX), ORN_OK);
			v.cancelled_count = n;
		} else {
			cr_assert_eq(mp_skip(&rd), ORN_OK);
		}
	}
	bus_reply_dispose(&r);
	return v;
}

/* Polls the order until its status is want (or, for STATUS_WAIT, anything but
 * pending); returns the last view. */
static order_view wait_order(const char *order_id, const char *want)
{
	int64_t until = th_now_ms() + WAIT_MS;
	order_view v;
	for (;;) {
		v = view_order(order_id);
		bool reached =
		        want != STATUS_WAIT ? strcmp(v.status, want) == 0 : strcmp(v.status, "pending") != 0;
		if (reached || th_now_ms() >= until)
			return v;
		th_sleep_ms(20);
	}
}

/* The cart's line count and last order id. */
static size_t view_cart(const char *customer, char *last_order, size_t cap)
{
	bus_reply r = get_view(CART_AGGREGATE, customer);
	mp_reader rd;
	uint32_t count = 0, items = 0, len;
	const char *key;

	last_order[0] = '\0';
	mp_reader_init(&rd, r.view, r.view_len);
	cr_assert_eq(mp_read_map(&rd, &count), ORN_OK);
	for (uint32_t i = 0; i < count; i++) {
		cr_assert_eq(mp_read_str(&rd, &key, &len), ORN_OK);
		if (mp_str_eq(key, len, "items")) {
			cr_assert_eq(mp_read_array(&rd, &items), ORN_OK);
			for (uint32_t k = 0; k < items; k++)
				cr_assert_eq(mp_skip(&rd), ORN_OK);
		} else if (mp_str_eq(key, len, "last_order_id") && mp_peek(&rd) == MP_STR) {
			cr_assert_eq(mp_read_cstr(&rd, last_order, cap), ORN_OK);
		} else {
			cr_assert_eq(mp_skip(&rd), ORN_OK);
		}
	}
	bus_reply_dispose(&r);
	return items;
}

static void add_to_cart(const char *customer, const char *product, int64_t quantity)
{
	cart_command c;
	mp_writer *w = mp_writer_create();

	memset(&c, 0, sizeof c);
	c.kind = CART_ADD_ITEM;
	snprintf(c.line.product_id, sizeof c.line.product_id, "%s", product);
	strcpy(c.line.name, "A thing");
	c.line.unit_price_cents = 250;
	c.line.quantity = quantity;
	strcpy(c.currency, "EUR");
	cr_assert_eq(cart_command_encode(w, &c), ORN_OK);
	bus_reply r = send_raw(CART_AGGREGATE, customer, CART_CMD_ADD_ITEM, w);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "add to cart: %s %s", r.code, r.detail);
	bus_reply_dispose(&r);
	mp_writer_destroy(w);
}

/* ---- the flows ---- */

Test(saga, happy_path_reserves_every_line_and_empties_the_cart, .init = start_all, .fini = stop_all,
     .timeout = 120)
{
	char last_order[ORDER_ID_MAX];
	line_spec lines[] = {{"p-a", 2}, {"p-b", 1}};

	create_stock("p-a", 5);
	create_stock("p-b", 3);
	add_to_cart("alice", "p-a", 2);
	cr_assert_eq(view_cart("alice", last_order, sizeof last_order), 1);
	place("o-happy", lines, 2, FAR_AHEAD);
	order_view v = wait_order("o-happy", "awaiting_confirmation");
	cr_assert_str_eq(v.status, "awaiting_confirmation");
	cr_expect_eq(reserved_of("p-a"), 2);
	cr_expect_eq(reserved_of("p-b"), 1);
	int64_t until = th_now_ms() + WAIT_MS;
	while (view_cart("alice", last_order, sizeof last_order) != 0 && th_now_ms() < until)
		th_sleep_ms(20);
	cr_expect_eq(view_cart("alice", last_order, sizeof last_order), 0, "CheckedOut emptied the cart");
	cr_expect_str_eq(last_order, "o-happy");
}

Test(saga, an_item_added_after_placing_stays_in_the_cart, .init = start_all, .fini = stop_all, .timeout = 120)
{
	char last_order[ORDER_ID_MAX] = "";
	line_spec lines[] = {{"p-a", 2}};

	create_stock("p-a", 5);
	add_to_cart("alice", "p-a", 2);
	place("o-shop-on", lines, 1, FAR_AHEAD);
	/* the customer goes on shopping while the saga reserves: CheckedOut
	 * must take out only the order's p-a x2, whenever it lands */
	add_to_cart("alice", "p-c", 1);
	order_view v = wait_order("o-shop-on", "awaiting_confirmation");
	cr_assert_str_eq(v.status, "awaiting_confirmation");
	int64_t until = th_now_ms() + WAIT_MS;
	size_t items = view_cart("alice", last_order, sizeof last_order);
	while (strcmp(last_order, "o-shop-on") != 0 && th_now_ms() < until) {
		th_sleep_ms(20);
		items = view_cart("alice", last_order, sizeof last_order);
	}
	cr_assert_str_eq(last_order, "o-shop-on", "the cart was checked out");
	cr_expect_eq(items, 1, "p-c, added after placing, is still in the cart");
}

Test(saga, one_line_out_of_stock_cancels_and_holds_nothing, .init = start_all, .fini = stop_all,
     .timeout = 120)
{
	line_spec lines[] = {{"p-a", 2}, {"p-b", 1}};

	create_stock("p-a", 5);
	create_stock("p-b", 0);
	place("o-short", lines, 2, FAR_AHEAD);
	order_view v = wait_order("o-short", "cancelled");
	cr_assert_str_eq(v.status, "cancelled");
	cr_expect_str_eq(v.reason, ORDER_REASON_OUT_OF_STOCK);
	cr_assert_eq(v.cancelled_count, 1);
	cr_expect_str_eq(v.cancelled[0], "p-b");
	/* RejectForStock comes first, then the releases (ADR 007 addendum): the
	 * order reads cancelled a moment before p-a is released. */
	cr_expect_eq(wait_reserved("p-a", 0), 0);
	cr_expect_eq(reserved_of("p-b"), 0);
}

Test(saga, a_missing_product_cancels_too, .init = start_all, .fini = stop_all, .timeout = 120)
{
	line_spec lines[] = {{"p-a", 1}, {"p-ghost", 1}};

	create_stock("p-a", 5);
	place("o-ghost", lines, 2, FAR_AHEAD);
	order_view v = wait_order("o-ghost", "cancelled");
	cr_assert_str_eq(v.status, "cancelled");
	cr_assert_eq(v.cancelled_count, 1);
	cr_expect_str_eq(v.cancelled[0], "p-ghost");
	cr_expect_eq(wait_reserved("p-a", 0), 0);
}

Test(saga, customer_cancel_after_reservation_releases, .init = start_all, .fini = stop_all, .timeout = 120)
{
	line_spec lines[] = {{"p-a", 3}};

	create_stock("p-a", 5);
	place("o-change", lines, 1, FAR_AHEAD);
	cr_assert_str_eq(wait_order("o-change", "awaiting_confirmation").status, "awaiting_confirmation");
	cr_assert_eq(reserved_of("p-a"), 3);
	cancel_by_customer("o-change");
	cr_expect_eq(wait_reserved("p-a", 0), 0);
	cr_expect_str_eq(view_order("o-change").status, "cancelled");
}

Test(saga, an_order_not_confirmed_in_time_expires_and_releases, .init = start_all, .fini = stop_all,
     .timeout = 120)
{
	line_spec lines[] = {{"p-a", 2}};

	create_stock("p-a", 5);
	int64_t placed_at = orn_now_ms();
	place("o-late", lines, 1, 1000);
	order_view v = wait_order("o-late", "cancelled");
	cr_assert_str_eq(v.status, "cancelled");
	cr_expect_str_eq(v.reason, ORDER_REASON_EXPIRED);
	cr_expect_geq(orn_now_ms() - placed_at, 1000, "never before the deadline");
	cr_expect_eq(wait_reserved("p-a", 0), 0);
}

/* ---- the sweeper ---- */

/* Makes the saga's durable consumer lose order_id's waiting event (the saga
 * must be stopped). */
static void lose_delivery(const char *order_id)
{
	char subject[96];
	snprintf(subject, sizeof subject, "orion.evt.order.%s", order_id);
	cr_assert_eq(tld_lose_all(world.store, SAGA_CONSUMER, "orion.evt.order.>", subject), 1,
	             "the consumer had %s's event", order_id);
}

/* The running saga's counters once the one at offset (a uint64_t field of
 * saga_stats) reaches at least want, or WAIT_MS passed. */
static saga_stats wait_stat(size_t offset, uint64_t want)
{
	saga_stats st;
	int64_t until = th_now_ms() + WAIT_MS;
	for (saga_stats_get(checkout, &st);
	     *(const uint64_t *)((const char *)&st + offset) < want && th_now_ms() < until;
	     saga_stats_get(checkout, &st))
		th_sleep_ms(20);
	return st;
}

static saga_stats wait_swept(uint64_t want)
{
	return wait_stat(offsetof(saga_stats, swept), want);
}

static void stop_saga(void)
{
	saga_stop(checkout);
	checkout = NULL;
}

Test(saga, a_placed_order_whose_event_the_consumer_lost_is_reserved_by_the_sweeper, .init = start_all,
     .fini = stop_all, .timeout = 120)
{
	line_spec lines[] = {{"p-a", 3}};

	create_stock("p-a", 5);
	stop_saga();
	place("o-lost", lines, 1, FAR_AHEAD);
	lose_delivery("o-lost");
	start_saga_sweeping(500);
	order_view v = wait_order("o-lost", "awaiting_confirmation");
	cr_assert_str_eq(v.status, "awaiting_confirmation", "the sweeper did the step the consumer lost");
	cr_expect_eq(reserved_of("p-a"), 3);
	saga_stats st = wait_swept(1);
	cr_expect_geq(st.repaired, 1, "counted as repaired (it appended)");
}

Test(saga, a_cancellation_the_consumer_lost_is_released_by_the_sweeper, .init = start_all, .fini = stop_all,
     .timeout = 120)
{
	line_spec lines[] = {{"p-a", 2}};

	create_stock("p-a", 5);
	place("o-lost-cancel", lines, 1, FAR_AHEAD);
	cr_assert_str_eq(wait_order("o-lost-cancel", "awaiting_confirmation").status,
	                 "awaiting_confirmation");
	cr_assert_eq(wait_reserved("p-a", 2), 2);
	stop_saga();
	cancel_by_customer("o-lost-cancel");
	lose_delivery("o-lost-cancel");
	start_saga_sweeping(500);
	cr_expect_eq(wait_reserved("p-a", 0), 0, "the sweeper released what the cancelled order held");
	saga_stats st = wait_swept(1);
	cr_expect_geq(st.repaired, 1);
}

Test(saga, sweeping_steps_that_were_done_changes_nothing, .init = start_all, .fini = stop_all, .timeout = 120)
{
	line_spec lines[] = {{"p-a", 2}};

	create_stock("p-a", 5);
	stop_saga();
	start_saga_sweeping(2000);
	place("o-swept", lines, 1, FAR_AHEAD);
	cr_assert_str_eq(wait_order("o-swept", "awaiting_confirmation").status, "awaiting_confirmation");
	cancel_by_customer("o-swept");
	cr_assert_eq(wait_reserved("p-a", 0), 0);
	/* the cancellation is the order's last event: swept once, nothing to redo */
	saga_stats st = wait_swept(1);
	cr_expect_eq(st.swept, 1);
	cr_expect_eq(st.repaired, 0, "the consumer had done the step");
	cr_expect_eq(reserved_of("p-a"), 0);
	int64_t on_hand = -1;
	cr_assert_eq(tsc_get(world.client, "p-a", &on_hand, NULL, NULL, NULL), ORN_OK);
	cr_expect_eq(on_hand, 5);
}

/* Sends c (its time set here) to order_id as type; it must be accepted. */
static void order_command_send(const char *order_id, order_command *c, const char *type)
{
	mp_writer *w = mp_writer_create();

	c->data.time_ms = orn_now_ms();
	cr_assert_eq(order_command_encode(w, c), ORN_OK);
	bus_reply r = send_raw(ORDER_AGGREGATE, order_id, type, w);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "%s %s: %s %s", type, order_id, r.code, r.detail);
	bus_reply_dispose(&r);
	mp_writer_destroy(w);
}

/* The customer's confirmation, then the payment, as the gateway and the
 * payment role send them. */
static void confirm_and_pay(const char *order_id)
{
	order_command *c = calloc(1, sizeof *c);

	cr_assert_not_null(c);
	c->kind = ORDER_CONFIRM;
	strcpy(c->data.token_hash, HASH);
	c->data.ttl_ms = FAR_AHEAD;
	order_command_send(order_id, c, ORDER_CMD_CONFIRM);
	memset(c, 0, sizeof *c);
	c->kind = ORDER_MARK_PAID;
	strcpy(c->data.charge_id, "ch_test_unheld");
	strcpy(c->data.brand, "visa");
	strcpy(c->data.last4, "4242");
	order_command_send(order_id, c, ORDER_CMD_MARK_PAID);
	free(c);
}

/* ---- the customer's holds (ADR 026) ---- */

/* OpenOrder{order_id, lines} to holds/<customer>, counting until far ahead
 * (so only a close, never time, frees it), as the gateway sends it. */
static void open_hold(const char *customer, const char *order_id, const line_spec *lines, size_t count)
{
	holds_command *c = calloc(1, sizeof *c);
	mp_writer *w = mp_writer_create();

	cr_assert(c && w);
	c->kind = HOLDS_OPEN;
	snprintf(c->order_id, sizeof c->order_id, "%s", order_id);
	for (size_t i = 0; i < count; i++) {
		snprintf(c->lines[i].product_id, sizeof c->lines[i].product_id, "%s", lines[i].product);
		c->lines[i].quantity = lines[i].quantity;
	}
	c->line_count = count;
	c->now_ms = orn_now_ms();
	c->until_ms = c->now_ms + 4 * FAR_AHEAD;
	c->max_open = HOLDS_ORDERS_MAX;
	c->max_units = 100;
	cr_assert_eq(holds_command_encode(w, c), ORN_OK);
	bus_reply r = send_raw(HOLDS_AGGREGATE, customer, HOLDS_CMD_OPEN, w);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "open %s: %s %s", order_id, r.code, r.detail);
	bus_reply_dispose(&r);
	mp_writer_destroy(w);
	free(c);
}

/* Whether order_id is among the open orders of customer's holds (its view). */
static bool hold_open(const char *customer, const char *order_id)
{
	bus_reply r = get_view(HOLDS_AGGREGATE, customer);
	mp_reader rd;
	uint32_t count = 0, orders = 0, fields = 0, len;
	const char *key;
	char id[HOLDS_ID_MAX];
	bool found = false;

	mp_reader_init(&rd, r.view, r.view_len);
	cr_assert_eq(mp_read_map(&rd, &count), ORN_OK);
	for (uint32_t i = 0; i < count; i++) {
		cr_assert_eq(mp_read_str(&rd, &key, &len), ORN_OK);
		if (!mp_str_eq(key, len, "open")) {
			cr_assert_eq(mp_skip(&rd), ORN_OK);
			continue;
		}
		cr_assert_eq(mp_read_array(&rd, &orders), ORN_OK);
		for (uint32_t k = 0; k < orders; k++) {
			cr_assert_eq(mp_read_map(&rd, &fields), ORN_OK);
			for (uint32_t f = 0; f < fields; f++) {
				cr_assert_eq(mp_read_str(&rd, &key, &len), ORN_OK);
				if (mp_str_eq(key, len, "order_id")) {
					cr_assert_eq(mp_read_cstr(&rd, id, sizeof id), ORN_OK);
					found |= strcmp(id, order_id) == 0;
				} else {
					cr_assert_eq(mp_skip(&rd), ORN_OK);
				}
			}
		}
	}
	bus_reply_dispose(&r);
	return found;
}

/* Polls until order_id's hold is closed; false if it still is open after WAIT_MS. */
static bool wait_hold_closed(const char *customer, const char *order_id)
{
	int64_t until = th_now_ms() + WAIT_MS;
	while (hold_open(customer, order_id)) {
		if (th_now_ms() >= until)
			return false;
		th_sleep_ms(20);
	}
	return true;
}

static void confirm_and_pay(const char *order_id);

Test(saga, a_paid_a_cancelled_and_an_expired_order_each_close_their_hold, .init = start_all, .fini = stop_all,
     .timeout = 120)
{
	line_spec lines[] = {{"p-a", 2}};

	create_stock("p-a", 10);
	open_hold("alice", "o-paid", lines, 1);
	open_hold("alice", "o-gone", lines, 1);
	open_hold("alice", "o-late", lines, 1);
	open_hold("alice", "o-open", lines, 1);
	place("o-paid", lines, 1, FAR_AHEAD);
	place("o-gone", lines, 1, FAR_AHEAD);
	place("o-late", lines, 1, 1000); /* expires, by the timers role */
	place("o-open", lines, 1, FAR_AHEAD);
	cr_assert_str_eq(wait_order("o-paid", "awaiting_confirmation").status, "awaiting_confirmation");
	confirm_and_pay("o-paid");
	cr_assert_str_eq(wait_order("o-gone", "awaiting_confirmation").status, "awaiting_confirmation");
	cancel_by_customer("o-gone");
	cr_assert_str_eq(wait_order("o-late", "cancelled").status, "cancelled");
	cr_expect(wait_hold_closed("alice", "o-paid"), "paid: closed");
	cr_expect(wait_hold_closed("alice", "o-gone"), "cancelled by the customer: closed");
	cr_expect(wait_hold_closed("alice", "o-late"), "expired: closed");
	cr_assert_str_eq(wait_order("o-open", "awaiting_confirmation").status, "awaiting_confirmation");
	cr_expect(hold_open("alice", "o-open"), "an order still awaiting confirmation keeps its hold");
}

Test(saga, a_paid_order_whose_units_were_released_raises_the_unheld_alarm, .init = start_all,
     .fini = stop_all, .timeout = 120)
{
	line_spec lines[] = {{"p-u", 2}};
	bus_reply r;
	stock_command release;

	create_stock("p-u", 5);
	place("o-unheld", lines, 1, FAR_AHEAD);
	cr_assert_str_eq(wait_order("o-unheld", "awaiting_confirmation").status, "awaiting_confirmation");
	cr_assert_eq(wait_reserved("p-u", 2), 2);
	/* what a second executor's compensation would do: the units go back on sale */
	memset(&release, 0, sizeof release);
	release.kind = STOCK_RELEASE;
	strcpy(release.reservation_id, "o-unheld");
	cr_assert_eq(tsc_send(world.client, "p-u", &release, "test-release-o-unheld", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "release: %s", r.code);
	bus_reply_dispose(&r);
	cr_assert_eq(reserved_of("p-u"), 0);
	confirm_and_pay("o-unheld");
	saga_stats st = wait_stat(offsetof(saga_stats, unheld_commits), 1);
	cr_assert_eq(st.unheld_commits, 1, "the commit found the reservation released: one alarm");
	/* the counter operators alert on says so, with the stock item's code */
	size_t len = 0;
	char *text = orn_metrics_render(orn_metrics_global(), &len);
	cr_assert_not_null(text);
	cr_expect_not_null(strstr(text, "orion_saga_unheld_commits_total{code=\"reservation_closed\"} 1"),
	                   "%s", text);
	cr_expect_not_null(strstr(text, "orion_saga_unheld_commits_total{code=\"unknown_reservation\"} 0"),
	                   "the other code exists at 0 from the start: %s", text);
	free(text);
	/* nothing was sold: the item still has its 5 units, none held */
	int64_t on_hand = -1, sold = -1;
	cr_assert_eq(tsc_get(world.client, "p-u", &on_hand, NULL, &sold, NULL), ORN_OK);
	cr_expect_eq(on_hand, 5);
	cr_expect_eq(sold, 0);
}

Test(saga, a_paid_order_whose_units_were_held_raises_no_alarm, .init = start_all, .fini = stop_all,
     .timeout = 120)
{
	line_spec lines[] = {{"p-h", 2}};

	create_stock("p-h", 5);
	place("o-held", lines, 1, FAR_AHEAD);
	cr_assert_str_eq(wait_order("o-held", "awaiting_confirmation").status, "awaiting_confirmation");
	cr_assert_eq(wait_reserved("p-h", 2), 2);
	confirm_and_pay("o-held");
	cr_assert_eq(wait_reserved("p-h", 0), 0, "the commit took the held units");
	int64_t sold = -1;
	cr_assert_eq(tsc_get(world.client, "p-h", NULL, NULL, &sold, NULL), ORN_OK);
	cr_expect_eq(sold, 2);
	saga_stats st;
	saga_stats_get(checkout, &st);
	cr_expect_eq(st.unheld_commits, 0);
}

/* The consumer loses OrderReserved: the order goes on (its email comes from
 * the mail role), but the cart's checkout step never runs. The sweeper
 * redoes it, and the cart's memory of its orders makes a redone checkout a
 * no-op (sweeping_steps_that_were_done_changes_nothing). */
Test(saga, an_order_reserved_event_the_consumer_lost_has_its_cart_checked_out_by_the_sweeper,
     .init = start_all, .fini = stop_all, .timeout = 120)
{
	char last_order[ORDER_ID_MAX] = "";
	line_spec lines[] = {{"p-a", 2}};
	stock_command reserve = tsc_reserve("o-cart-lost", 2);
	order_command mark;
	bus_reply r;

	create_stock("p-a", 5);
	add_to_cart("alice", "p-a", 2);
	stop_saga();
	place("o-cart-lost", lines, 1, FAR_AHEAD);
	lose_delivery("o-cart-lost");
	/* the reserve step, as the saga would have run it, then its event lost too */
	cr_assert_eq(tsc_send(world.client, "p-a", &reserve, "o-cart-lost:reserve:p-a", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "reserve: %s", r.code);
	bus_reply_dispose(&r);
	memset(&mark, 0, sizeof mark);
	mark.kind = ORDER_MARK_RESERVED;
	order_command_send("o-cart-lost", &mark, ORDER_CMD_MARK_RESERVED);
	lose_delivery("o-cart-lost");
	cr_assert_eq(view_cart("alice", last_order, sizeof last_order), 1,
	             "the ordered line is still in the cart");
	start_saga_sweeping(500);
	int64_t until = th_now_ms() + WAIT_MS;
	while (view_cart("alice", last_order, sizeof last_order) != 0 && th_now_ms() < until)
		th_sleep_ms(20);
	cr_assert_eq(view_cart("alice", last_order, sizeof last_order), 0,
	             "the sweeper checked the order out");
	cr_expect_str_eq(last_order, "o-cart-lost");
	saga_stats st = wait_swept(1);
	cr_expect_geq(st.repaired, 1, "counted as repaired (the cart appended)");
	cr_expect_eq(reserved_of("p-a"), 2, "the reservation stands");
}

/* How many OrderCancelled events the order's stream holds. */
static orn_rc count_cancelled(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	*(int *)closure += strcmp(e->type, ORDER_EV_CANCELLED) == 0;
	return ORN_OK;
}

static int cancelled_events(const char *order_id)
{
	int count = 0;
	es_position at;
	cr_assert_eq(es_load(world.store, ORDER_AGGREGATE, order_id, 0, count_cancelled, &count, &at),
	             ORN_OK);
	return count;
}

/* Polls until the instance's read model lists order_id among its deadlines. */
static bool model_has_deadline(timers_instance *ti, const char *order_id)
{
	proj_order_due due[TIMERS_BATCH_MAX];
	size_t count = 0;
	for (int64_t until = th_now_ms() + WAIT_MS; th_now_ms() < until; th_sleep_ms(20)) {
		cr_assert_eq(proj_orders_due(ti->orders, INT64_MAX, due, TIMERS_BATCH_MAX, &count), ORN_OK);
		for (size_t i = 0; i < count; i++)
			if (strcmp(due[i].id, order_id) == 0)
				return true;
	}
	return false;
}

Test(saga, a_deadline_fires_after_the_instance_that_saw_the_order_placed_is_gone, .init = start_all,
     .fini = stop_all, .timeout = 120)
{
	line_spec lines[] = {{"p-a", 4}};

	create_stock("p-a", 5);
	int64_t deadline = orn_now_ms() + 2000;
	place("o-restart", lines, 1, 2000);
	cr_assert_str_eq(wait_order("o-restart", "awaiting_confirmation").status, "awaiting_confirmation");
	cr_assert(model_has_deadline(&first_timers, "o-restart"), "the first instance saw the order");
	timers_instance_stop(&first_timers); /* with its read model: nothing of it survives */
	while (orn_now_ms() < deadline + 500)
		th_sleep_ms(50);
	cr_assert_str_eq(view_order("o-restart").status, "awaiting_confirmation",
	                 "nobody expired it meanwhile");
	cr_assert_eq(reserved_of("p-a"), 4);
	timers_instance_start(&second_timers); /* a fresh model, rebuilt from the stream */
	order_view v = wait_order("o-restart", "cancelled");
	cr_assert_str_eq(v.status, "cancelled");
	cr_expect_str_eq(v.reason, ORDER_REASON_EXPIRED);
	cr_expect_eq(wait_reserved("p-a", 0), 0);
	cr_expect_eq(cancelled_events("o-restart"), 1);
}

Test(saga, two_timers_instances_expire_each_order_exactly_once, .init = start_all, .fini = stop_all,
     .timeout = 120)
{
	enum { ORDERS = 20 };
	line_spec lines[] = {{"p-a", 1}};
	char id[32];
	timers_stats a, b;

	timers_instance_start(&second_timers);
	create_stock("p-a", ORDERS);
	for (int i = 0; i < ORDERS; i++) {
		snprintf(id, sizeof id, "o-twice-%d", i);
		place(id, lines, 1, 1500);
	}
	for (int i = 0; i < ORDERS; i++) {
		snprintf(id, sizeof id, "o-twice-%d", i);
		order_view v = wait_order(id, "cancelled");
		cr_assert_str_eq(v.status, "cancelled", "%s", id);
		cr_assert_str_eq(v.reason, ORDER_REASON_EXPIRED, "%s", id);
	}
	cr_expect_eq(wait_reserved("p-a", 0), 0);
	/* Both instances list every deadline until their model sees the
	 * cancellation; whatever each sent, the log holds one cancellation. */
	for (int i = 0; i < ORDERS; i++) {
		snprintf(id, sizeof id, "o-twice-%d", i);
		cr_expect_eq(cancelled_events(id), 1, "%s", id);
	}
	timers_stats_get(first_timers.timers, &a);
	timers_stats_get(second_timers.timers, &b);
	fprintf(stderr, "timers: sent %llu + %llu, expired %llu + %llu, settled %llu + %llu\n",
	        (unsigned long long)a.sent, (unsigned long long)b.sent, (unsigned long long)a.expired,
	        (unsigned long long)b.expired, (unsigned long long)a.settled, (unsigned long long)b.settled);
	cr_expect_geq(a.sent + b.sent, ORDERS, "every deadline was fired");
	cr_expect_gt(a.scans, 0);
	cr_expect_gt(b.scans, 0);
}

/* ---- bursts ---- */

typedef struct placer {
	int first, count;
	const char *prefix;
	int products;        /* lines per order: p-0 .. p-(products-1) by rotation */
	int lines_per_order; /* 1 or 2 */
	int failures;
} placer;

static void order_lines(int i, const placer *p, line_spec *lines, char names[2][16])
{
	for (int k = 0; k < p->lines_per_order; k++) {
		snprintf(names[k], sizeof names[k], "p-%d", (i + k) % p->products);
		lines[k].product = names[k];
		lines[k].quantity = 1 + (i + k) % 2;
	}
	if (p->lines_per_order == 1)
		lines[0].quantity = 1;
}

static void *placer_main(void *arg)
{
	placer *p = arg;
	for (int i = p->first; i < p->first + p->count; i++) {
		char id[32], names[2][16];
		line_spec lines[2];
		snprintf(id, sizeof id, "%s-%d", p->prefix, i);
		order_lines(i, p, lines, names);
		bus_reply r = place_order(id, "bob", lines, (size_t)p->lines_per_order, FAR_AHEAD);
		p->failures += r.outcome != BUS_ACCEPTED;
		bus_reply_dispose(&r);
	}
	return NULL;
}

typedef struct burst {
	pthread_t tids[16];
	placer parts[16];
	int threads;
} burst;

/* Starts placing total orders from threads at once. */
static void burst_start(burst *b, const char *prefix, int total, int threads, int products,
                        int lines_per_order)
{
	cr_assert(threads <= 16 && total % threads == 0);
	b->threads = threads;
	for (int t = 0; t < threads; t++) {
		b->parts[t] = (placer){.first = t * (total / threads),
		                       .count = total / threads,
		                       .prefix = prefix,
		                       .products = products,
		                       .lines_per_order = lines_per_order};
		cr_assert_eq(pthread_create(&b->tids[t], NULL, placer_main, &b->parts[t]), 0);
	}
}

/* Waits for every placer; asserts every PlaceOrder was accepted. */
static void burst_join(burst *b)
{
	int failures = 0;
	for (int t = 0; t < b->threads; t++) {
		pthread_join(b->tids[t], NULL);
		failures += b->parts[t].failures;
	}
	cr_assert_eq(failures, 0, "every PlaceOrder accepted");
}

Test(saga, fifty_orders_for_ten_units_never_oversell, .init = start_all, .fini = stop_all, .timeout = 240)
{
	int awaiting = 0, out_of_stock = 0;
	char id[32];

	create_stock("p-0", 10);
	int64_t started = th_now_ms();
	burst b;
	burst_start(&b, "o-rush", 50, 10, 1, 1);
	burst_join(&b);
	for (int i = 0; i < 50; i++) {
		snprintf(id, sizeof id, "o-rush-%d", i);
		order_view v = wait_order(id, STATUS_WAIT);
		awaiting += strcmp(v.status, "awaiting_confirmation") == 0;
		out_of_stock += strcmp(v.status, "cancelled") == 0 && strcmp(v.reason, "out_of_stock") == 0;
	}
	int64_t elapsed = th_now_ms() - started;
	fprintf(stderr, "saga: 50 orders placed and settled in %lld ms\n", (long long)elapsed);
	cr_assert_eq(awaiting, 10, "awaiting confirmation: %d", awaiting);
	cr_assert_eq(out_of_stock, 40, "cancelled out of stock: %d", out_of_stock);
	cr_assert_eq(reserved_of("p-0"), 10);
	for (int i = 0; i < 50; i++) {
		snprintf(id, sizeof id, "o-rush-%d", i);
		if (strcmp(view_order(id).status, "awaiting_confirmation") == 0)
			cancel_by_customer(id);
	}
	cr_assert_eq(wait_reserved("p-0", 0), 0);
}

Test(saga, a_saga_stopped_mid_burst_leaves_its_successor_nothing_to_leak, .init = start_all, .fini = stop_all,
     .timeout = 240)
{
	enum { ORDERS = 60, PRODUCTS = 3, STOCK = 20 };
	int64_t want[PRODUCTS] = {0};
	int settled_at_stop = 0, awaiting = 0;
	char id[32], names[2][16];
	line_spec lines[2];

	for (int p = 0; p < PRODUCTS; p++) {
		snprintf(id, sizeof id, "p-%d", p);
		create_stock(id, STOCK);
	}
	burst b;
	burst_start(&b, "o-burst", ORDERS, 6, PRODUCTS, 2);
	/* Stop once the saga is well at work, while orders still arrive. */
	int64_t until = th_now_ms() + WAIT_MS;
	order_view first;
	do {
		first = view_order("o-burst-3");
		th_sleep_ms(2);
	} while ((strcmp(first.status, "pending") == 0 || strcmp(first.status, "none") == 0) &&
	         th_now_ms() < until);
	saga_stop(checkout);
	checkout = NULL;
	burst_join(&b);
	for (int i = 0; i < ORDERS; i++) {
		snprintf(id, sizeof id, "o-burst-%d", i);
		settled_at_stop += strcmp(view_order(id).status, "pending") != 0;
	}
	start_saga();
	for (int i = 0; i < ORDERS; i++) {
		snprintf(id, sizeof id, "o-burst-%d", i);
		order_view v = wait_order(id, STATUS_WAIT);
		bool held = strcmp(v.status, "awaiting_confirmation") == 0;
		cr_assert(
		        held || (strcmp(v.status, "cancelled") == 0 && strcmp(v.reason, "out_of_stock") == 0),
		        "%s ended %s (%s)", id, v.status, v.reason);
		placer spec = {.products = PRODUCTS, .lines_per_order = 2};
		order_lines(i, &spec, lines, names);
		for (int k = 0; held && k < 2; k++)
			want[(i + k) % PRODUCTS] += lines[k].quantity;
		awaiting += held;
	}
	/* The successor drains the consumer: every event acknowledged. */
	jsConsumerInfo *ci = NULL;
	for (int64_t drained_by = th_now_ms() + WAIT_MS;; th_sleep_ms(20)) {
		jsConsumerInfo_Destroy(ci);
		ci = NULL;
		cr_assert_eq(js_GetConsumerInfo(&ci, es_store_jetstream(world.store), ES_STREAM,
		                                SAGA_CONSUMER, NULL, NULL),
		             NATS_OK);
		if ((ci->NumAckPending == 0 && ci->NumPending == 0) || th_now_ms() >= drained_by)
			break;
	}
	fprintf(stderr, "saga: %d of %d orders settled when the first saga stopped; %d hold stock\n",
	        settled_at_stop, ORDERS, awaiting);
	cr_expect_eq(ci->NumAckPending, 0, "every event acknowledged");
	cr_expect_eq(ci->NumPending, 0, "every event delivered");
	jsConsumerInfo_Destroy(ci);
	cr_expect_lt(settled_at_stop, ORDERS, "the stop came before the burst was done");
	for (int p = 0; p < PRODUCTS; p++) {
		snprintf(id, sizeof id, "p-%d", p);
		int64_t reserved = wait_reserved(id, want[p]);
		cr_expect_eq(reserved, want[p], "%s reserves %lld, live orders hold %lld", id,
		             (long long)reserved, (long long)want[p]);
		cr_expect_leq(reserved, STOCK);
	}
}
