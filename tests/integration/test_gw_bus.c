/* test_gw_bus.c — gateway/gw_bus.c and gateway/gw_consistency.c against a real
 * nats-server, the stock actor runtime and the inventory projector: replies
 * arrive on the loop thread, each request is answered exactly once (reply,
 * timeout, no responders, destroy), and read-your-writes waits complete or
 * time out at their bound without blocking the loop. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "bus-internal.h"
#include "actor.h"
#include "gw_bus.h"
#include "gw_consistency.h"
#include "gw_inbox.h"
#include "harness.h"
#include "inventory.h"
#include "log.h"
#include "projector.h"
#include "stock_client.h"

static natsd *server;
static es_store *store;
static act_runtime *runtime;
static natsConnection *nc;
static struct event_base *base;
static pthread_t loop_thread;
static bool loop_running;
static gw_bus *bus;

static char *lmdb_dir;
static proj_env *env;
static proj_inventory *inv;
static proj_runner *runner;
static gw_consistency *ryw;

/* ---- results, written on the loop thread, read by the test ------------- */

static pthread_mutex_t results_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t results_cond = PTHREAD_COND_INITIALIZER;
static int total_calls;

typedef struct outcome {
	int calls;
	orn_rc rc;
	bus_outcome outcome;
	char code[BUS_CODE_MAX];
	uint64_t seq;
	bool on_loop;
	int64_t at_ms;
	bool resend;      /* from the callback, try another send (during destroy) */
	orn_rc resend_rc; /* what that send returned */
	bool then_wait;   /* from the callback, wait for reply->seq on the read side */
	unsigned wait_ms;
	int wait_calls;
	orn_rc wait_rc;
	bool wait_on_loop;
	int64_t wait_at_ms;
	int64_t on_hand; /* read from LMDB in the wait callback, -1 if absent */
} outcome;

static void note_call(void)
{
	total_calls++;
	pthread_cond_broadcast(&results_cond);
}

/* Waits until total_calls reaches n; false after timeout_ms. */
static bool wait_total(int n, int timeout_ms)
{
	int64_t until = th_now_ms() + timeout_ms;
	pthread_mutex_lock(&results_lock);
	while (total_calls < n && th_now_ms() < until) {
		pthread_mutex_unlock(&results_lock);
		th_sleep_ms(2);
		pthread_mutex_lock(&results_lock);
	}
	bool ok = total_calls >= n;
	pthread_mutex_unlock(&results_lock);
	return ok;
}

static int calls_now(void)
{
	pthread_mutex_lock(&results_lock);
	int n = total_calls;
	pthread_mutex_unlock(&results_lock);
	return n;
}

static void read_level(outcome *o, const char *item)
{
	proj_stock_level l;
	o->on_hand = proj_inventory_get(inv, item, &l) == ORN_OK ? l.on_hand : -1;
}

typedef struct request {
	const char *aggregate;
	char id[ORN_ID_MAX + 1];
	stock_command command;
	char command_id[96];
	int64_t timeout_ms;
	orn_rc send_rc;
	outcome out;
} request;

static void on_read_side(void *closure, orn_rc rc)
{
	request *r = closure;
	pthread_mutex_lock(&results_lock);
	r->out.wait_calls++;
	r->out.wait_rc = rc;
	r->out.wait_on_loop = pthread_equal(pthread_self(), loop_thread);
	r->out.wait_at_ms = th_now_ms();
	if (rc == ORN_OK)
		read_level(&r->out, r->id);
	note_call();
	pthread_mutex_unlock(&results_lock);
}

static orn_rc send_request(request *r);

static void on_reply(void *closure, orn_rc rc, bus_reply *reply)
{
	request *r = closure;
	pthread_mutex_lock(&results_lock);
	r->out.calls++;
	r->out.rc = rc;
	r->out.on_loop = pthread_equal(pthread_self(), loop_thread);
	r->out.at_ms = th_now_ms();
	if (rc == ORN_OK) {
		r->out.outcome = reply->outcome;
		snprintf(r->out.code, sizeof r->out.code, "%s", reply->code);
		r->out.seq = reply->seq;
	}
	pthread_mutex_unlock(&results_lock);
	if (r->out.resend)
		r->out.resend_rc = send_request(r);
	if (r->out.then_wait && rc == ORN_OK &&
	    gw_consistency_wait(ryw, reply->seq, r->out.wait_ms, on_read_side, r) != ORN_OK)
		r->out.wait_rc = ORN_ENOMEM;
	pthread_mutex_lock(&results_lock);
	note_call();
	pthread_mutex_unlock(&results_lock);
}

/* Encodes and sends one request with gw_bus (loop thread). */
static orn_rc send_request(request *r)
{
	mp_writer *payload = mp_writer_create();
	env_envelope cmd;
	orn_rc rc = stock_command_encode(payload, &r->command);
	if (rc == ORN_OK)
		rc = bus_command_init(&cmd, stock_command_type(r->command.kind), orn_now_ms(), r->command_id,
		                      NULL, "test", mp_writer_data(payload), mp_writer_size(payload));
	if (rc == ORN_OK)
		rc = gw_bus_send(bus, r->aggregate, r->id, &cmd, r->timeout_ms, on_reply, r);
	mp_writer_destroy(payload);
	return rc;
}

static request make_request(const char *aggregate, const char *id, stock_command c, int64_t timeout_ms)
{
	static unsigned long counter;
	request r;
	memset(&r, 0, sizeof r);
	r.aggregate = aggregate;
	snprintf(r.id, sizeof r.id, "%s", id);
	r.command = c;
	snprintf(r.command_id, sizeof r.command_id, "gwb-%lu-%lld", ++counter, (long long)orn_monotonic_ns());
	r.timeout_ms = timeout_ms;
	r.out.rc = ORN_EINTERNAL;
	r.out.wait_rc = ORN_EINTERNAL;
	r.out.on_hand = -1;
	return r;
}

/* ---- running code on the loop thread ----------------------------------- */

typedef struct loop_call {
	void (*fn)(void *);
	void *arg;
	bool done;
} loop_call;

static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t call_cond = PTHREAD_COND_INITIALIZER;

static void loop_call_run(evutil_socket_t fd, short what, void *arg)
{
	loop_call *c = arg;
	c->fn(c->arg);
	pthread_mutex_lock(&call_lock);
	c->done = true;
	pthread_cond_broadcast(&call_cond);
	pthread_mutex_unlock(&call_lock);
}

/* Runs fn(arg) on the loop thread and waits for it to return. */
static void on_loop(void (*fn)(void *), void *arg)
{
	loop_call c = {.fn = fn, .arg = arg};
	struct timeval now = {0, 0};
	cr_assert_eq(event_base_once(base, -1, EV_TIMEOUT, loop_call_run, &c, &now), 0);
	pthread_mutex_lock(&call_lock);
	while (!c.done)
		pthread_cond_wait(&call_cond, &call_lock);
	pthread_mutex_unlock(&call_lock);
}

typedef struct batch {
	request *items;
	size_t count;
} batch;

static void send_batch(void *arg)
{
	batch *b = arg;
	for (size_t i = 0; i < b->count; i++)
		b->items[i].send_rc = send_request(&b->items[i]);
}

/* Sends n requests in one loop turn; asserts every send was accepted. */
static void send_all(request *items, size_t n)
{
	batch b = {items, n};
	on_loop(send_batch, &b);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(items[i].send_rc, ORN_OK, "send %zu: %s", i, orn_rc_name(items[i].send_rc));
}

static void *loop_main(void *arg)
{
	event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* ---- fixtures ------------------------------------------------------------ */

static void start_runtime(void)
{
	act_options ao;
	act_options_init(&ao);
	cr_assert_eq(act_runtime_start(store, &stock_kind, &ao, &runtime), ORN_OK);
}

static void stop_runtime(void)
{
	act_runtime_stop(runtime);
	runtime = NULL;
}

static void setup(void)
{
	server = th_natsd_start("gwbus");
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &store), ORN_OK);
	start_runtime();
	nc = tsc_connect(natsd_url(server));
	base = gw_event_base_new();
	cr_assert_not_null(base);
	cr_assert_eq(gw_bus_create(nc, base, &bus), ORN_OK);
	total_calls = 0;
	cr_assert_eq(pthread_create(&loop_thread, NULL, loop_main, NULL), 0);
	loop_running = true;
}

static void stop_loop(void)
{
	if (!loop_running)
		return;
	event_base_loopbreak(base);
	pthread_join(loop_thread, NULL);
	loop_running = false;
}

static void teardown(void)
{
	stop_loop(); /* the loop is stopped: destroy may run on this thread */
	gw_bus_destroy(bus);
	bus = NULL;
	gw_consistency_destroy(ryw);
	ryw = NULL;
	if (base)
		event_base_free(base);
	base = NULL;
	natsConnection_Destroy(nc);
	nc = NULL;
	stop_runtime();
	proj_runner_stop(runner);
	runner = NULL;
	proj_inventory_destroy(inv);
	inv = NULL;
	proj_env_close(env);
	env = NULL;
	th_rmrf(lmdb_dir);
	free(lmdb_dir);
	lmdb_dir = NULL;
	es_store_close(store);
	store = NULL;
	th_natsd_stop(server);
	server = NULL;
}

static proj_def inventory_def;

static void setup_with_projector(void)
{
	setup();
	lmdb_dir = th_tempdir("gwbus-lmdb");
	proj_env_options eo;
	proj_env_options_init(&eo);
	eo.path = lmdb_dir;
	eo.map_size = (size_t)16 << 20;
	cr_assert_eq(proj_env_open(&eo, &env), ORN_OK);
	cr_assert_eq(proj_inventory_create(env, &inv), ORN_OK);
	inventory_def = *proj_inventory_def(inv);
	proj_runner_options ro;
	proj_runner_options_init(&ro);
	cr_assert_eq(proj_runner_start(store, env, &inventory_def, 1, &ro, &runner), ORN_OK);
	cr_assert_eq(gw_consistency_create(base, runner, 1, &ryw), ORN_OK);
}

/* A queue-group member that takes stock commands and never answers (loop
 * of the test thread reads them with NextMsg). */
static natsSubscription *silent_service(natsConnection *conn)
{
	natsSubscription *sub = NULL;
	cr_assert_eq(natsConnection_QueueSubscribeSync(&sub, conn, "orion.cmd.stock.*", "orion.stock"),
	             NATS_OK);
	cr_assert_eq(natsConnection_Flush(conn), NATS_OK);
	return sub;
}

static void publish_reply(natsConnection *conn, const char *subject, uint64_t seq)
{
	bus_reply r;
	memset(&r, 0, sizeof r);
	r.outcome = BUS_ACCEPTED;
	r.seq = seq;
	r.version = seq;
	r.attempts = 1;
	mp_writer *w = mp_writer_create();
	cr_assert_eq(bus_reply_encode(w, &r), ORN_OK);
	cr_assert_eq(natsConnection_Publish(conn, subject, mp_writer_data(w), (int)mp_writer_size(w)),
	             NATS_OK);
	cr_assert_eq(natsConnection_Flush(conn), NATS_OK);
	mp_writer_destroy(w);
}

/* ---- the command client -------------------------------------------------- */

TestSuite(gw_bus, .init = setup, .fini = teardown, .timeout = 120);

Test(gw_bus, commands_are_answered_on_the_loop_thread)
{
	request create = make_request(STOCK_AGGREGATE, "gwb-item-1", tsc_create(10), 5000);
	send_all(&create, 1);
	cr_assert(wait_total(1, 10000), "no reply to create");
	cr_assert_eq(create.out.calls, 1);
	cr_assert_eq(create.out.rc, ORN_OK, "%s", orn_rc_name(create.out.rc));
	cr_assert(create.out.on_loop, "callback ran off the loop thread");
	cr_assert_eq(create.out.outcome, BUS_ACCEPTED, "%s", create.out.code);
	cr_assert_gt(create.out.seq, 0);

	request reserve = make_request(STOCK_AGGREGATE, "gwb-item-1", tsc_reserve("order-1", 3), 5000);
	request too_much = make_request(STOCK_AGGREGATE, "gwb-item-1", tsc_reserve("order-2", 100), 5000);
	request two[2] = {reserve, too_much};
	send_all(two, 2);
	cr_assert(wait_total(3, 10000));
	cr_assert_eq(two[0].out.calls, 1);
	cr_assert_eq(two[0].out.rc, ORN_OK);
	cr_assert(two[0].out.on_loop);
	cr_assert_eq(two[0].out.outcome, BUS_ACCEPTED, "%s", two[0].out.code);
	cr_assert_gt(two[0].out.seq, create.out.seq);
	cr_assert_eq(two[1].out.calls, 1);
	cr_assert_eq(two[1].out.rc, ORN_OK);
	cr_assert(two[1].out.on_loop);
	cr_assert_eq(two[1].out.outcome, BUS_REJECTED);
	cr_assert_str_eq(two[1].out.code, "out_of_stock");
}

Test(gw_bus, invalid_sends_are_refused_without_a_callback)
{
	request bad_id = make_request(STOCK_AGGREGATE, "has.dot", tsc_create(1), 1000);
	request bad_aggregate = make_request("Stock!", "x", tsc_create(1), 1000);
	request bad_timeout = make_request(STOCK_AGGREGATE, "x", tsc_create(1), 0);
	request all[3] = {bad_id, bad_aggregate, bad_timeout};
	batch b = {all, 3};
	on_loop(send_batch, &b);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(all[i].send_rc, ORN_EINVAL, "%d: %s", i, orn_rc_name(all[i].send_rc));
	th_sleep_ms(50);
	cr_assert_eq(calls_now(), 0);
}

#define CONCURRENT 200

Test(gw_bus, two_hundred_concurrent_sends_are_each_answered_once)
{
	request create = make_request(STOCK_AGGREGATE, "gwb-item-2", tsc_create(CONCURRENT / 2), 5000);
	send_all(&create, 1);
	cr_assert(wait_total(1, 10000));
	cr_assert_eq(create.out.outcome, BUS_ACCEPTED);

	request *many = calloc(CONCURRENT, sizeof *many);
	for (int i = 0; i < CONCURRENT; i++) {
		char rid[32];
		snprintf(rid, sizeof rid, "order-%d", i);
		many[i] = make_request(STOCK_AGGREGATE, "gwb-item-2", tsc_reserve(rid, 1), 20000);
	}
	send_all(many, CONCURRENT);
	cr_assert(wait_total(1 + CONCURRENT, 30000), "only %d replies", calls_now() - 1);
	th_sleep_ms(50); /* a duplicate delivery would show up by now */
	int accepted = 0, out_of_stock = 0;
	for (int i = 0; i < CONCURRENT; i++) {
		cr_assert_eq(many[i].out.calls, 1, "request %d called %d times", i, many[i].out.calls);
		cr_assert_eq(many[i].out.rc, ORN_OK, "request %d: %s", i, orn_rc_name(many[i].out.rc));
		cr_assert(many[i].out.on_loop);
		if (many[i].out.outcome == BUS_ACCEPTED)
			accepted++;
		else if (strcmp(many[i].out.code, "out_of_stock") == 0)
			out_of_stock++;
	}
	cr_assert_eq(accepted, CONCURRENT / 2);
	cr_assert_eq(out_of_stock, CONCURRENT / 2);
	cr_assert_eq(calls_now(), 1 + CONCURRENT);
	free(many);
}

static void count_pending(void *arg)
{
	*(size_t *)arg = gw_bus_pending(bus);
}

Test(gw_bus, an_aggregate_nobody_serves_is_unavailable_at_once)
{
	request r = make_request("nobody", "x1", tsc_create(1), 3000);
	int64_t start = th_now_ms();
	send_all(&r, 1);
	cr_assert(wait_total(1, 5000), "no answer within the bound");
	int64_t took = r.out.at_ms - start;
	cr_assert_eq(r.out.calls, 1);
	cr_assert(r.out.on_loop);
	cr_assert(r.out.rc == ORN_EUNAVAILABLE || r.out.rc == ORN_ETIMEOUT, "%s", orn_rc_name(r.out.rc));
	cr_assert_leq(took, 3500);
	/* cnats enables "no responders" by default: the server answers 503 at once. */
	cr_expect_eq(r.out.rc, ORN_EUNAVAILABLE, "no-responders status not seen: %s", orn_rc_name(r.out.rc));
	cr_expect_lt(took, 1000, "took %lld ms", (long long)took);
	size_t pending = 99;
	on_loop(count_pending, &pending);
	cr_assert_eq(pending, 0);
}

Test(gw_bus, a_silent_service_times_out_and_its_late_reply_is_dropped)
{
	stop_runtime();
	natsConnection *service = tsc_connect(natsd_url(server));
	natsSubscription *sub = silent_service(service);

	request r = make_request(STOCK_AGGREGATE, "gwb-item-3", tsc_create(1), 300);
	int64_t start = th_now_ms();
	send_all(&r, 1);
	natsMsg *msg = NULL;
	cr_assert_eq(natsSubscription_NextMsg(&msg, sub, 5000), NATS_OK, "the command did not arrive");
	cr_assert(wait_total(1, 5000), "no timeout");
	int64_t took = r.out.at_ms - start;
	cr_assert_eq(r.out.rc, ORN_ETIMEOUT, "%s", orn_rc_name(r.out.rc));
	cr_assert(r.out.on_loop);
	cr_assert_geq(took, 300);
	cr_assert_lt(took, 1500, "took %lld ms", (long long)took);

	publish_reply(service, natsMsg_GetReply(msg), 42); /* too late */
	natsMsg_Destroy(msg);
	th_sleep_ms(200);
	cr_assert_eq(r.out.calls, 1, "late reply delivered");
	cr_assert_eq(calls_now(), 1);

	/* The same service answering in time is heard: replies are routed by token. */
	request again = make_request(STOCK_AGGREGATE, "gwb-item-3", tsc_create(1), 5000);
	send_all(&again, 1);
	cr_assert_eq(natsSubscription_NextMsg(&msg, sub, 5000), NATS_OK);
	publish_reply(service, natsMsg_GetReply(msg), 77);
	natsMsg_Destroy(msg);
	cr_assert(wait_total(2, 5000));
	cr_assert_eq(again.out.rc, ORN_OK);
	cr_assert_eq(again.out.seq, 77);

	natsSubscription_Destroy(sub);
	natsConnection_Destroy(service);
}

/* Sends one request per loop tick (1 ms) until all are sent. */
typedef struct trickle {
	request *items;
	int count, next;
	struct event *tick;
} trickle;

static void trickle_tick(evutil_socket_t fd, short what, void *arg)
{
	trickle *t = arg;
	if (t->next < t->count) {
		t->items[t->next].send_rc = send_request(&t->items[t->next]);
		t->next++;
	}
	if (t->next == t->count)
		event_del(t->tick);
}

static void trickle_start(void *arg)
{
	trickle *t = arg;
	struct timeval ms = {0, 1000};
	t->tick = event_new(base, -1, EV_PERSIST, trickle_tick, t);
	event_add(t->tick, &ms);
}

static void trickle_free(void *arg)
{
	trickle *t = arg;
	event_free(t->tick);
}

Test(gw_bus, a_runtime_stopped_mid_way_never_leaves_a_request_hanging)
{
	request create = make_request(STOCK_AGGREGATE, "gwb-item-4", tsc_create(1000), 5000);
	send_all(&create, 1);
	cr_assert(wait_total(1, 10000));
	enum { COUNT = 100, TIMEOUT_MS = 1500 };
	request *items = calloc(COUNT, sizeof *items);
	for (int i = 0; i < COUNT; i++) {
		char rid[32];
		snprintf(rid, sizeof rid, "order-%d", i);
		items[i] = make_request(STOCK_AGGREGATE, "gwb-item-4", tsc_reserve(rid, 1), TIMEOUT_MS);
	}
	trickle t = {.items = items, .count = COUNT};
	int64_t start = th_now_ms();
	on_loop(trickle_start, &t);
	th_sleep_ms(30);
	stop_runtime(); /* the early ones are answered, the later ones find nobody */
	cr_assert(wait_total(1 + COUNT, COUNT + TIMEOUT_MS + 3000), "only %d answers", calls_now() - 1);
	cr_assert_lt(th_now_ms() - start, COUNT + TIMEOUT_MS + 2000);
	th_sleep_ms(50);
	on_loop(trickle_free, &t);
	int ok = 0, unavailable = 0, timeout = 0;
	for (int i = 0; i < COUNT; i++) {
		cr_assert_eq(items[i].send_rc, ORN_OK);
		cr_assert_eq(items[i].out.calls, 1, "request %d called %d times", i, items[i].out.calls);
		cr_assert(items[i].out.on_loop);
		switch (items[i].out.rc) {
		case ORN_OK:
			ok++;
			break;
		case ORN_EUNAVAILABLE:
			unavailable++;
			break;
		case ORN_ETIMEOUT:
			timeout++;
			break;
		default:
			cr_assert_fail("request %d: %s", i, orn_rc_name(items[i].out.rc));
		}
	}
	cr_assert_gt(ok, 0, "nothing was answered before the stop");
	cr_assert_eq(items[COUNT - 1].out.rc, ORN_EUNAVAILABLE, "the last request found a service");
	cr_log_info("runtime stopped mid-way: %d ok, %d unavailable, %d timed out", ok, unavailable, timeout);
	free(items);
}

static void destroy_bus(void *arg)
{
	gw_bus_destroy(bus);
	bus = NULL;
}

#define IN_FLIGHT 50

Test(gw_bus, destroy_calls_every_request_in_flight_once)
{
	stop_runtime();
	natsConnection *service = tsc_connect(natsd_url(server));
	natsSubscription *sub = silent_service(service);
	request *items = calloc(IN_FLIGHT, sizeof *items);
	for (int i = 0; i < IN_FLIGHT; i++) {
		items[i] = make_request(STOCK_AGGREGATE, "gwb-item-5", tsc_create(1), 10000);
		items[i].out.resend = i == 0;
	}
	send_all(items, IN_FLIGHT);
	for (int i = 0; i < IN_FLIGHT; i++) { /* every command reached the service */
		natsMsg *msg = NULL;
		cr_assert_eq(natsSubscription_NextMsg(&msg, sub, 5000), NATS_OK);
		natsMsg_Destroy(msg);
	}
	cr_assert_eq(calls_now(), 0);
	on_loop(destroy_bus, NULL);
	/* synchronous: every callback ran before gw_bus_destroy returned */
	cr_assert_eq(calls_now(), IN_FLIGHT);
	for (int i = 0; i < IN_FLIGHT; i++) {
		cr_assert_eq(items[i].out.calls, 1);
		cr_assert_eq(items[i].out.rc, ORN_EUNAVAILABLE);
		cr_assert(items[i].out.on_loop);
	}
	cr_assert_eq(items[0].out.resend_rc, ORN_EUNAVAILABLE, "a send during destroy was accepted");
	th_sleep_ms(100);
	cr_assert_eq(calls_now(), IN_FLIGHT);
	free(items);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(service);
}

Test(gw_bus, destroy_races_live_replies_and_each_request_is_called_once)
{
	request create = make_request(STOCK_AGGREGATE, "gwb-item-6", tsc_create(1000), 5000);
	send_all(&create, 1);
	cr_assert(wait_total(1, 10000));
	request *items = calloc(IN_FLIGHT, sizeof *items);
	for (int i = 0; i < IN_FLIGHT; i++) {
		char rid[32];
		snprintf(rid, sizeof rid, "order-%d", i);
		items[i] = make_request(STOCK_AGGREGATE, "gwb-item-6", tsc_reserve(rid, 1), 10000);
	}
	send_all(items, IN_FLIGHT);
	th_sleep_ms(2); /* let some replies arrive, not all */
	on_loop(destroy_bus, NULL);
	cr_assert_eq(calls_now(), 1 + IN_FLIGHT);
	for (int i = 0; i < IN_FLIGHT; i++) {
		cr_assert_eq(items[i].out.calls, 1);
		cr_assert(items[i].out.rc == ORN_OK || items[i].out.rc == ORN_EUNAVAILABLE, "%s",
		          orn_rc_name(items[i].out.rc));
	}
	th_sleep_ms(100); /* replies still arriving are not delivered anywhere */
	cr_assert_eq(calls_now(), 1 + IN_FLIGHT);
	free(items);
}

/* ---- read-your-writes ----------------------------------------------------- */

TestSuite(gw_consistency, .init = setup_with_projector, .fini = teardown, .timeout = 120);

Test(gw_consistency, waiting_on_a_reply_seq_sees_the_write)
{
	request create = make_request(STOCK_AGGREGATE, "gwc-item-1", tsc_create(7), 5000);
	create.out.then_wait = true;
	create.out.wait_ms = 5000;
	send_all(&create, 1);
	cr_assert(wait_total(2, 10000), "reply or read-side wait missing");
	cr_assert_eq(create.out.rc, ORN_OK);
	cr_assert_eq(create.out.outcome, BUS_ACCEPTED);
	cr_assert_eq(create.out.wait_calls, 1);
	cr_assert_eq(create.out.wait_rc, ORN_OK, "%s", orn_rc_name(create.out.wait_rc));
	cr_assert(create.out.wait_on_loop);
	cr_assert_eq(create.out.on_hand, 7, "the read after the wait did not see the write");
	cr_assert_geq(proj_runner_position(runner), create.out.seq);

	/* And the next command, too: reserve, wait, read. */
	request reserve = make_request(STOCK_AGGREGATE, "gwc-item-1", tsc_reserve("order-1", 2), 5000);
	reserve.out.then_wait = true;
	reserve.out.wait_ms = 5000;
	send_all(&reserve, 1);
	cr_assert(wait_total(4, 10000));
	cr_assert_eq(reserve.out.wait_rc, ORN_OK);
	proj_stock_level l;
	cr_assert_eq(proj_inventory_get(inv, "gwc-item-1", &l), ORN_OK);
	cr_assert_eq(l.reserved, 2);
	cr_assert_eq(l.available, 5);
}

typedef struct wait_spec {
	uint64_t seq;
	unsigned timeout_ms;
	request *r;
	bool called_inline;
	orn_rc wait_call_rc;
} wait_spec;

static void start_wait(void *arg)
{
	wait_spec *w = arg;
	int before = total_calls; /* loop thread: nobody else writes now */
	w->wait_call_rc = gw_consistency_wait(ryw, w->seq, w->timeout_ms, on_read_side, w->r);
	pthread_mutex_lock(&results_lock);
	w->called_inline = total_calls != before;
	pthread_mutex_unlock(&results_lock);
}

Test(gw_consistency, waiting_past_the_head_times_out_at_the_bound)
{
	request create = make_request(STOCK_AGGREGATE, "gwc-item-2", tsc_create(3), 5000);
	create.out.then_wait = true;
	create.out.wait_ms = 5000;
	send_all(&create, 1);
	cr_assert(wait_total(2, 10000));
	cr_assert_eq(create.out.wait_rc, ORN_OK);

	request far = make_request(STOCK_AGGREGATE, "gwc-item-2", tsc_create(0), 0);
	wait_spec w = {.seq = create.out.seq + 1000, .timeout_ms = 300, .r = &far};
	int64_t start = th_now_ms();
	on_loop(start_wait, &w);
	cr_assert_eq(w.wait_call_rc, ORN_OK);
	cr_assert(wait_total(3, 5000), "the wait never ended");
	int64_t took = far.out.wait_at_ms - start;
	cr_assert_eq(far.out.wait_calls, 1);
	cr_assert_eq(far.out.wait_rc, ORN_ETIMEOUT, "%s", orn_rc_name(far.out.wait_rc));
	cr_assert(far.out.wait_on_loop);
	cr_assert_geq(took, 300);
	cr_assert_lt(took, 1000, "took %lld ms", (long long)took);
}

Test(gw_consistency, a_wait_started_before_the_write_is_answered_when_it_is_applied)
{
	/* The waits start before their commits exist, so only the watcher
	 * (woken by the projector's batches) can answer them; a later one is
	 * asked for first, the earlier one after. */
	request create = make_request(STOCK_AGGREGATE, "gwc-item-5", tsc_create(4), 5000);
	send_all(&create, 1);
	cr_assert(wait_total(1, 10000));
	uint64_t head = create.out.seq;
	request later = make_request(STOCK_AGGREGATE, "gwc-item-5", tsc_create(0), 0);
	request sooner = make_request(STOCK_AGGREGATE, "gwc-item-5", tsc_create(0), 0);
	wait_spec w_later = {.seq = head + 2, .timeout_ms = 5000, .r = &later};
	wait_spec w_sooner = {.seq = head + 1, .timeout_ms = 5000, .r = &sooner};
	on_loop(start_wait, &w_later);
	on_loop(start_wait, &w_sooner);
	cr_assert_eq(gw_consistency_waiting(ryw), 2);
	int64_t start = th_now_ms();
	request first = make_request(STOCK_AGGREGATE, "gwc-item-5", tsc_reserve("order-5a", 1), 5000);
	send_all(&first, 1);
	cr_assert(wait_total(3, 10000));
	request second = make_request(STOCK_AGGREGATE, "gwc-item-5", tsc_reserve("order-5b", 1), 5000);
	send_all(&second, 1);
	cr_assert(wait_total(5, 10000), "a wait was not answered");
	cr_assert_eq(sooner.out.wait_rc, ORN_OK, "%s", orn_rc_name(sooner.out.wait_rc));
	cr_assert_eq(later.out.wait_rc, ORN_OK, "%s", orn_rc_name(later.out.wait_rc));
	cr_assert(sooner.out.wait_on_loop && later.out.wait_on_loop);
	cr_assert_leq(sooner.out.wait_at_ms, later.out.wait_at_ms, "the earlier write is answered first");
	cr_assert_lt(later.out.wait_at_ms - start, 4000, "answered by the writes, not at the deadline");
	cr_assert_eq(gw_consistency_waiting(ryw), 0);
}

Test(gw_consistency, a_reached_seq_is_called_back_later_not_inline)
{
	request zero = make_request(STOCK_AGGREGATE, "gwc-item-3", tsc_create(0), 0);
	wait_spec w = {.seq = 0, .timeout_ms = 1000, .r = &zero};
	on_loop(start_wait, &w);
	cr_assert_eq(w.wait_call_rc, ORN_OK);
	cr_assert_not(w.called_inline);
	cr_assert(wait_total(1, 1000));
	cr_assert_eq(zero.out.wait_rc, ORN_OK);
	cr_assert(gw_consistency_reached(ryw, 0));
}

#define WAITERS 100

Test(gw_consistency, many_waiters_share_one_timer)
{
	/* Half wait for writes that come, half for sequences that never come. */
	request *items = calloc(WAITERS, sizeof *items);
	wait_spec *specs = calloc(WAITERS, sizeof *specs);
	request create = make_request(STOCK_AGGREGATE, "gwc-item-4", tsc_create(5), 5000);
	send_all(&create, 1);
	cr_assert(wait_total(1, 10000));
	uint64_t head = create.out.seq;
	for (int i = 0; i < WAITERS; i++) {
		items[i] = make_request(STOCK_AGGREGATE, "gwc-item-4", tsc_create(0), 0);
		specs[i] =
		        (wait_spec){.seq = i % 2 ? head : head + 1000000, .timeout_ms = 200, .r = &items[i]};
		on_loop(start_wait, &specs[i]);
	}
	cr_assert(wait_total(1 + WAITERS, 5000));
	for (int i = 0; i < WAITERS; i++) {
		cr_assert_eq(items[i].out.wait_calls, 1);
		cr_assert_eq(items[i].out.wait_rc, i % 2 ? ORN_OK : ORN_ETIMEOUT, "waiter %d: %s", i,
		             orn_rc_name(items[i].out.wait_rc));
	}
	free(items);
	free(specs);
}

static void destroy_ryw(void *arg)
{
	gw_consistency_destroy(ryw);
	ryw = NULL;
}

Test(gw_consistency, destroy_calls_waiters_unavailable)
{
	request a = make_request(STOCK_AGGREGATE, "gwc-item-5", tsc_create(0), 0);
	wait_spec w = {.seq = UINT64_MAX, .timeout_ms = 60000, .r = &a};
	on_loop(start_wait, &w);
	on_loop(destroy_ryw, NULL);
	cr_assert_eq(a.out.wait_calls, 1);
	cr_assert_eq(a.out.wait_rc, ORN_EUNAVAILABLE);
}

Test(gw_bus, destroy_after_the_connection_closed_is_prompt)
{
	stop_runtime();
	natsConnection *service = tsc_connect(natsd_url(server));
	natsSubscription *sub = silent_service(service);
	request r = make_request(STOCK_AGGREGATE, "gwb-item-7", tsc_create(1), 10000);
	send_all(&r, 1);
	natsMsg *msg = NULL;
	cr_assert_eq(natsSubscription_NextMsg(&msg, sub, 5000), NATS_OK);
	natsMsg_Destroy(msg);
	natsConnection_Close(nc);
	request after = make_request(STOCK_AGGREGATE, "gwb-item-7", tsc_create(1), 1000);
	batch b = {&after, 1};
	on_loop(send_batch, &b);
	cr_assert_eq(after.send_rc, ORN_EUNAVAILABLE, "%s", orn_rc_name(after.send_rc));
	int64_t start = th_now_ms();
	on_loop(destroy_bus, NULL);
	cr_assert_lt(th_now_ms() - start, 1000, "destroy waited %lld ms", (long long)(th_now_ms() - start));
	cr_assert_eq(r.out.calls, 1);
	cr_assert_eq(r.out.rc, ORN_EUNAVAILABLE);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(service);
}
