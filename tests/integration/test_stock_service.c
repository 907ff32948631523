/* test_stock_service.c — stock actors over a real nats-server: no overselling
 * under concurrency, duplicate commands, two runtime instances in one queue group. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "bus-internal.h"
#include "actor.h"
#include "harness.h"
#include "log.h"
#include "stock_client.h"

static natsd *server;
static es_store *store;
static act_runtime *runtime;
static natsConnection *client;

static void start_server(void)
{
	server = th_natsd_start("stock");
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &store), ORN_OK);
	client = tsc_connect(natsd_url(server));
}

static void start_all(void)
{
	start_server();
	act_options ao;
	act_options_init(&ao);
	cr_assert_eq(act_runtime_start(store, &stock_kind, &ao, &runtime), ORN_OK);
}

static void stop_all(void)
{
	act_runtime_stop(runtime);
	runtime = NULL;
	natsConnection_Destroy(client);
	client = NULL;
	es_store_close(store);
	store = NULL;
	th_natsd_stop(server);
	server = NULL;
}

/* ---- concurrent reservations --------------------------------------------- */

typedef struct blast {
	const char *url;
	const char *item;
	int thread;
	int count;
	/* results */
	int accepted, out_of_stock, other, conflicts;
	unsigned max_attempts;
} blast;

/* Fires `count` reserve requests at once on one connection, then collects
 * every reply: all of them are in flight together. */
static void *blast_main(void *arg)
{
	blast *b = arg;
	natsConnection *nc = tsc_connect(b->url);
	natsSubscription *sub = NULL;
	char inbox[64], subject[ES_SUBJECT_MAX];
	snprintf(inbox, sizeof inbox, "_INBOX.blast.%d.%lld", b->thread, (long long)orn_monotonic_ns());
	char pattern[80];
	snprintf(pattern, sizeof pattern, "%s.*", inbox);
	cr_assert_eq(natsConnection_SubscribeSync(&sub, nc, pattern), NATS_OK);
	cr_assert_eq(bus_command_subject(subject, sizeof subject, STOCK_AGGREGATE, b->item), ORN_OK);
	mp_writer *payload = mp_writer_create(), *wire = mp_writer_create();
	for (int i = 0; i < b->count; i++) {
		char rid[64], cmd_id[96], reply_to[96];
		snprintf(rid, sizeof rid, "order-%d-%d", b->thread, i);
		snprintf(cmd_id, sizeof cmd_id, "%s:reserve:%lld", rid, (long long)orn_monotonic_ns());
		snprintf(reply_to, sizeof reply_to, "%s.%d", inbox, i);
		stock_command c = tsc_reserve(rid, 1);
		env_envelope cmd;
		mp_writer_reset(payload);
		mp_writer_reset(wire);
		cr_assert_eq(stock_command_encode(payload, &c), ORN_OK);
		cr_assert_eq(bus_command_init(&cmd, STOCK_CMD_RESERVE, orn_now_ms(), cmd_id, NULL, "test",
		                              mp_writer_data(payload), mp_writer_size(payload)),
		             ORN_OK);
		cr_assert_eq(env_encode(wire, &cmd), ORN_OK);
		cr_assert_eq(natsConnection_PublishRequest(nc, subject, reply_to, mp_writer_data(wire),
		                                           (int)mp_writer_size(wire)),
		             NATS_OK);
	}
	natsConnection_Flush(nc);
	for (int i = 0; i < b->count; i++) {
		natsMsg *msg = NULL;
		cr_assert_eq(natsSubscription_NextMsg(&msg, sub, 30000), NATS_OK, "reply %d missing", i);
		bus_reply r;
		cr_assert_eq(bus_reply_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &r),
		             ORN_OK);
		if (r.outcome == BUS_ACCEPTED)
			b->accepted++;
		else if (r.outcome == BUS_REJECTED && strcmp(r.code, "out_of_stock") == 0)
			b->out_of_stock++;
		else if (r.outcome == BUS_FAILED && strcmp(r.code, "conflict") == 0)
			b->conflicts++; /* lost every try to other writers */
		else {
			b->other++;
			cr_log_warn("reply %d: outcome %d %s %s", i, (int)r.outcome, r.code, r.detail);
		}
		if (r.attempts > b->max_attempts)
			b->max_attempts = r.attempts;
		bus_reply_dispose(&r);
		natsMsg_Destroy(msg);
	}
	mp_writer_destroy(payload);
	mp_writer_destroy(wire);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	return NULL;
}

/* Runs threads x per_thread concurrent reservations of one unit; sums up. */
static blast run_blast(const char *url, const char *item, int threads, int per_thread)
{
	pthread_t tids[32];
	blast parts[32];
	blast total = {.url = url, .item = item};
	cr_assert(threads <= 32);
	for (int t = 0; t < threads; t++) {
		parts[t] = (blast){.url = url, .item = item, .thread = t, .count = per_thread};
		cr_assert_eq(pthread_create(&tids[t], NULL, blast_main, &parts[t]), 0);
	}
	for (int t = 0; t < threads; t++) {
		pthread_join(tids[t], NULL);
		total.accepted += parts[t].accepted;
		total.out_of_stock += parts[t].out_of_stock;
		total.other += parts[t].other;
		total.conflicts += parts[t].conflicts;
		if (parts[t].max_attempts > total.max_attempts)
			total.max_attempts = parts[t].max_attempts;
	}
	return total;
}

static void create_item(const char *item, int64_t quantity)
{
	bus_reply r;
	stock_command c = tsc_create(quantity);
	char cmd_id[64];
	snprintf(cmd_id, sizeof cmd_id, "create-%s", item);
	cr_assert_eq(tsc_send(client, item, &c, cmd_id, 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "create: %s %s", r.code, r.detail);
	bus_reply_dispose(&r);
}

static void assert_rebuilt(const char *item, int64_t on_hand, int64_t reserved)
{
	stock_state s;
	uint64_t version = 0;
	cr_assert_eq(tsc_rebuild(store, item, &s, &version), ORN_OK);
	cr_expect_eq(s.on_hand, on_hand, "rebuilt on_hand %lld", (long long)s.on_hand);
	cr_expect_eq(s.reserved, reserved, "rebuilt reserved %lld", (long long)s.reserved);
	cr_expect_eq(stock_available(&s), on_hand - reserved);
	stock_state_dispose(&s);
}

/* ---- which appends ask for their acknowledgement (ADR 015 §3) ------------ */

/* Creates two items on one shard, then sends three adjustments to the second;
 * returns the runtime's counters. */
static act_stats first_appends_after_load(bool lagging_loads)
{
	act_options ao;
	act_options_init(&ao);
	ao.shards = 1; /* one echo position: the second item is loaded after the first's echo */
	ao.fault_lagging_loads = lagging_loads;
	cr_assert_eq(act_runtime_start(store, &stock_kind, &ao, &runtime), ORN_OK);
	create_item("sku-before", 5);
	create_item("sku-after", 5);
	for (int i = 0; i < 3; i++) {
		stock_command c = tsc_adjust(1, "delivery");
		char cmd_id[32];
		bus_reply r;
		snprintf(cmd_id, sizeof cmd_id, "adjust-%d", i);
		cr_assert_eq(tsc_send(client, "sku-after", &c, cmd_id, 10000, &r), ORN_OK);
		cr_assert_eq(r.outcome, BUS_ACCEPTED, "%s %s", r.code, r.detail);
		bus_reply_dispose(&r);
	}
	assert_rebuilt("sku-after", 8, 0);
	act_stats st;
	act_runtime_stats(runtime, &st);
	cr_assert_eq(st.failures, 0);
	cr_assert_eq(st.conflicts, 0);
	return st;
}

/* Where a load may have been answered by a lagging replica, the first append
 * after it asks for its acknowledgement and is confirmed by reading; its own
 * commit's echo must not make the aggregate look contended: the next appends
 * are confirmed by the echo alone. */
Test(stock_service, an_aggregates_own_commit_never_makes_it_contended, .init = start_server, .fini = stop_all,
     .timeout = 60)
{
	act_stats st = first_appends_after_load(true);
	cr_assert_eq(st.acks_asked, 1, "appends that asked for an acknowledgement: %llu of 5",
	             (unsigned long long)st.acks_asked);
	cr_assert_eq(st.confirmed_by_read, 1);
}

/* On a stream without replicas a load reads every commit stored before it,
 * and the shard's echo shows every later one: no append asks. */
Test(stock_service, without_replicas_no_append_asks_for_an_acknowledgement, .init = start_server,
     .fini = stop_all, .timeout = 60)
{
	act_stats st = first_appends_after_load(false);
	cr_assert_eq(st.acks_asked, 0, "appends that asked for an acknowledgement: %llu of 5",
	             (unsigned long long)st.acks_asked);
	cr_assert_eq(st.confirmed_by_read, 0);
	cr_assert_eq(st.confirmed_by_echo, 5);
}

Test(stock_service, no_overselling_500_concurrent_reservations, .init = start_all, .fini = stop_all,
     .timeout = 120)
{
	create_item("sku-oversell", 10);
	blast b = run_blast(natsd_url(server), "sku-oversell", 10, 50);
	cr_assert_eq(b.accepted, 10, "accepted %d", b.accepted);
	cr_assert_eq(b.out_of_stock, 490, "out of stock %d", b.out_of_stock);
	cr_assert_eq(b.other, 0);
	/* The log alone tells the same story. */
	assert_rebuilt("sku-oversell", 10, 10);
	int64_t on_hand = -1, reserved = -1;
	cr_assert_eq(tsc_get(client, "sku-oversell", &on_hand, &reserved, NULL, NULL), ORN_OK);
	cr_assert_eq(on_hand, 10);
	cr_assert_eq(reserved, 10);
}

struct counter {
	const char *type;
	int n;
};

static orn_rc count_one(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	struct counter *k = closure;
	k->n += strcmp(e->type, k->type) == 0;
	return ORN_OK;
}

static int count_events(const char *item, const char *type)
{
	struct counter ctx = {type, 0};
	es_position at;
	cr_assert_eq(es_load(store, STOCK_AGGREGATE, item, 0, count_one, &ctx, &at), ORN_OK);
	return ctx.n;
}

Test(stock_service, duplicate_command_id_appends_one_event, .init = start_all, .fini = stop_all,
     .timeout = 60)
{
	create_item("sku-dup", 5);
	stock_command c = tsc_adjust(3, "delivery 42");
	bus_reply first, second;
	cr_assert_eq(tsc_send(client, "sku-dup", &c, "cmd-adjust-1", 10000, &first), ORN_OK);
	cr_assert_eq(first.outcome, BUS_ACCEPTED);
	cr_assert_eq(first.duplicate, false);
	cr_assert_eq(tsc_send(client, "sku-dup", &c, "cmd-adjust-1", 10000, &second), ORN_OK);
	cr_assert_eq(second.outcome, BUS_ACCEPTED);
	cr_assert_eq(second.duplicate, true, "the server's de-duplication answered");
	cr_assert_eq(second.seq, first.seq, "the original sequence is returned");
	cr_assert_eq(count_events("sku-dup", STOCK_EV_ADJUSTED), 1);
	assert_rebuilt("sku-dup", 8, 0);
	/* The actor reloaded after the duplicate and agrees with the log. */
	int64_t on_hand = 0;
	cr_assert_eq(tsc_get(client, "sku-dup", &on_hand, NULL, NULL, NULL), ORN_OK);
	cr_assert_eq(on_hand, 8);
	/* A reservation sent twice under one command id: one event. */
	stock_command r = tsc_reserve("order-9:sku-dup", 2);
	cr_assert_eq(tsc_send(client, "sku-dup", &r, "cmd-res-1", 10000, &first), ORN_OK);
	cr_assert_eq(tsc_send(client, "sku-dup", &r, "cmd-res-1", 10000, &second), ORN_OK);
	cr_assert_eq(first.outcome, BUS_ACCEPTED);
	cr_assert_eq(second.outcome, BUS_ACCEPTED);
	cr_assert_eq(count_events("sku-dup", STOCK_EV_RESERVED), 1);
	assert_rebuilt("sku-dup", 8, 2);
}

Test(stock_service, rejections_and_bad_commands_are_answered, .init = start_all, .fini = stop_all,
     .timeout = 60)
{
	bus_reply r;
	stock_command c = tsc_reserve("order-1", 1);
	cr_assert_eq(tsc_send(client, "sku-missing", &c, "cmd-x1", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_REJECTED);
	cr_assert_str_eq(r.code, "not_found");
	/* An undecodable envelope: failed/invalid, and the actor lives on. */
	char subject[ES_SUBJECT_MAX];
	natsMsg *reply = NULL;
	cr_assert_eq(bus_command_subject(subject, sizeof subject, STOCK_AGGREGATE, "sku-x"), ORN_OK);
	cr_assert_eq(natsConnection_RequestString(&reply, client, subject, "not msgpack", 10000), NATS_OK);
	cr_assert_eq(bus_reply_decode(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), &r),
	             ORN_OK);
	natsMsg_Destroy(reply);
	cr_assert_eq(r.outcome, BUS_FAILED);
	cr_assert_str_eq(r.code, "invalid");
	/* An unknown command type. */
	env_envelope cmd;
	uint8_t empty_map = 0x80;
	cr_assert_eq(
	        bus_command_init(&cmd, "TeleportStock", orn_now_ms(), "cmd-x2", NULL, "t", &empty_map, 1),
	        ORN_OK);
	cr_assert_eq(bus_send_on(client, STOCK_AGGREGATE, "sku-x", &cmd, 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_FAILED);
	cr_assert_str_eq(r.code, "invalid");
	/* A subject id outside [A-Za-z0-9_-] never reaches an aggregate. */
	cr_assert_eq(natsConnection_RequestString(&reply, client, "orion.cmd.stock.bad$id", "x", 10000),
	             NATS_OK);
	cr_assert_eq(bus_reply_decode(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), &r),
	             ORN_OK);
	natsMsg_Destroy(reply);
	cr_assert_eq(r.outcome, BUS_FAILED);
	create_item("sku-x", 1);
	int64_t on_hand = 0;
	cr_assert_eq(tsc_get(client, "sku-x", &on_hand, NULL, NULL, NULL), ORN_OK);
	cr_assert_eq(on_hand, 1);
}

Test(stock_service, snapshots_and_cold_rehydration_agree_with_the_log, .init = start_server, .fini = stop_all,
     .timeout = 120)
{
	act_options ao;
	act_options_init(&ao);
	ao.snapshot_every = 5;
	ao.cache_capacity = 2; /* force evictions: 4 items over 2 slots */
	ao.shards = 1;
	cr_assert_eq(act_runtime_start(store, &stock_kind, &ao, &runtime), ORN_OK);
	const char *items[] = {"sku-a", "sku-b", "sku-c", "sku-d"};
	for (int i = 0; i < 4; i++)
		create_item(items[i], 100);
	act_stats st;
	act_runtime_stats(runtime, &st);
	cr_assert_eq(st.snapshot_lookups, 0, "a new item has no snapshot to look for");
	for (int round = 0; round < 12; round++)
		for (int i = 0; i < 4; i++) {
			char rid[32], cmd_id[48];
			snprintf(rid, sizeof rid, "o%d-%d", round, i);
			snprintf(cmd_id, sizeof cmd_id, "c-%s-%s", items[i], rid);
			stock_command c = tsc_reserve(rid, 1);
			bus_reply r;
			cr_assert_eq(tsc_send(client, items[i], &c, cmd_id, 10000, &r), ORN_OK);
			cr_assert_eq(r.outcome, BUS_ACCEPTED, "%s %s", r.code, r.detail);
		}
	act_runtime_stats(runtime, &st);
	cr_assert_gt(st.snapshots, 0, "snapshots were written");
	cr_assert_gt(st.rehydrations, 4, "evicted items were loaded again (%llu)",
	             (unsigned long long)st.rehydrations);
	/* A brand-new runtime loads snapshot + tail; it must equal the full replay. */
	act_runtime_stop(runtime);
	cr_assert_eq(act_runtime_start(store, &stock_kind, &ao, &runtime), ORN_OK);
	for (int i = 0; i < 4; i++) {
		int64_t on_hand = 0, reserved = 0, held = 0;
		cr_assert_eq(tsc_get(client, items[i], &on_hand, &reserved, NULL, &held), ORN_OK);
		cr_assert_eq(on_hand, 100);
		cr_assert_eq(reserved, 12);
		cr_assert_eq(held, 12);
		assert_rebuilt(items[i], 100, 12);
	}
	act_runtime_stats(runtime, &st);
	cr_assert_eq(st.snapshot_lookups, 4, "each item loaded looked for its snapshot");
}

/* ---- two runtime processes in one queue group ------------------------------ */

static pid_t spawn_service(const char *tag, char *log_path, size_t cap)
{
	char *dir = th_tempdir(tag);
	snprintf(log_path, cap, "%s/orion.log", dir);
	char url_env[128], dir_env[600];
	snprintf(url_env, sizeof url_env, "ORION_NATS_URL=%s", natsd_url(server));
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", dir);
	char *argv[] = {(char *)th_orion_bin(), "serve", "--roles", "stock", NULL};
	char *env[] = {url_env, dir_env, "ORION_SHARDS=2", NULL};
	pid_t pid = th_spawn(argv, env, log_path);
	cr_assert(th_wait_for_file_line(log_path, "orion ready", 15000), "service %s did not start", tag);
	free(dir);
	return pid;
}

static pid_t services[2];

static void stop_services(void)
{
	for (int i = 0; i < 2; i++)
		if (services[i] > 0) {
			th_kill(services[i], SIGTERM);
			if (th_wait_exit(services[i], 10000) < 0)
				th_kill(services[i], SIGKILL);
			services[i] = 0;
		}
	stop_all();
}

Test(stock_service, two_instances_still_never_oversell, .init = start_server, .fini = stop_services,
     .timeout = 180)
{
	char log_a[700], log_b[700], item[32];
	unsigned max_attempts = 0;
	services[0] = spawn_service("inst-a", log_a, sizeof log_a);
	services[1] = spawn_service("inst-b", log_b, sizeof log_b);
	/* Whether the two instances race on one version in a blast is the
	 * scheduler's (each one's cache is reloaded when it sees the other's
	 * commit echoed first): blasts on fresh items, each checked, until one
	 * took the conflict-retry path (a round without any is rare). */
	for (int round = 0; round < 8 && max_attempts <= 1; round++) {
		snprintf(item, sizeof item, "sku-twin-%d", round);
		create_item(item, 10);
		/* Warm both caches so that each holds a version the other will overtake. */
		for (int i = 0; i < 6; i++) {
			int64_t on_hand = 0;
			cr_assert_eq(tsc_get(client, item, &on_hand, NULL, NULL, NULL), ORN_OK);
		}
		blast b = run_blast(natsd_url(server), item, 10, 50);
		cr_assert_eq(b.accepted, 10, "accepted %d", b.accepted);
		cr_assert_eq(b.out_of_stock, 490, "out of stock %d", b.out_of_stock);
		cr_assert_eq(b.other, 0);
		assert_rebuilt(item, 10, 10);
		max_attempts = b.max_attempts;
	}
	cr_assert_gt(max_attempts, 1, "the conflict-retry path was exercised");
	/* Both instances replied: each one's log says it served commands. */
	cr_assert(th_wait_for_file_line(log_a, "actor runtime started", 1000));
	cr_assert(th_wait_for_file_line(log_b, "actor runtime started", 1000));
}

/* ADR 015: an append whose acknowledgement is lost (its outcome unknown) is
 * answered with its own commit, found in the log, not decided again: an
 * adjustment counts once and the answer is "accepted" with the commit's
 * sequence, never a rejection or a second adjustment. Confirming by reading
 * needs the acknowledgement; by the log's echo a lost one changes nothing:
 * the echo shows the commit. */
static void lose_an_acknowledgement(bool by_read)
{
	act_options ao;
	act_options_init(&ao);
	ao.append_timeout_ms = 500;
	ao.confirm_by_read = by_read;
	cr_assert_eq(act_runtime_start(store, &stock_kind, &ao, &runtime), ORN_OK);
	create_item("sku-lost", 5);
	act_runtime_stop(runtime);
	ao.fault_lost_acks = 1;
	cr_assert_eq(act_runtime_start(store, &stock_kind, &ao, &runtime), ORN_OK);
	stock_command c = tsc_adjust(3, "delivery");
	bus_reply r;
	cr_assert_eq(tsc_send(client, "sku-lost", &c, "cmd-lost-ack", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "%s %s", r.code, r.detail);
	cr_assert_eq(r.duplicate, by_read, "answered from the log after the unknown outcome: %d",
	             r.duplicate);
	cr_assert_gt(r.seq, 0);
	bus_reply_dispose(&r);
	cr_assert_eq(count_events("sku-lost", STOCK_EV_ADJUSTED), 1, "applied once");
	assert_rebuilt("sku-lost", 8, 0);
	act_stats st;
	act_runtime_stats(runtime, &st);
	cr_assert_eq(st.failures, 0);
	cr_assert_eq(st.confirmed_by_echo, by_read ? 0 : 1);
}

Test(stock_service, a_lost_acknowledgement_is_answered_with_the_commit_found_in_the_log, .init = start_server,
     .fini = stop_all, .timeout = 60)
{
	lose_an_acknowledgement(true);
}

Test(stock_service, a_lost_acknowledgement_changes_nothing_when_the_echo_confirms, .init = start_server,
     .fini = stop_all, .timeout = 60)
{
	lose_an_acknowledgement(false);
}

/* ---- the commit chain without the server's check (ADR 015) ----------------
 * Two runtimes on two connections whose appends carry no
 * ExpectLastSubjectSeq, as a replicated nats-server 2.9.10 under load: every
 * concurrent append on one version is stored, and only the confirmation
 * (by the log's echo, or by reading) tells each runtime whether its commit
 * is the valid one. 100 units, 500 concurrent reservations: exactly 100
 * accepted, and void commits were met and retried. */

static es_store *second_store;
static act_runtime *second_runtime;

static void stop_unchecked(void)
{
	act_runtime_stop(second_runtime);
	second_runtime = NULL;
	es_store_close(second_store);
	second_store = NULL;
	stop_all();
}

static void race_unchecked(bool by_read)
{
	act_options ao;
	es_options o;
	act_stats a, b;
	act_options_init(&ao);
	ao.confirm_by_read = by_read;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &second_store), ORN_OK);
	cr_assert_eq(act_runtime_start(store, &stock_kind, &ao, &runtime), ORN_OK);
	create_item("sku-unchecked", 100);
	cr_assert_eq(act_runtime_start(second_store, &stock_kind, &ao, &second_runtime), ORN_OK);
	es_store_fault_unchecked(store, true);
	es_store_fault_unchecked(second_store, true);
	/* Both caches hold the item before the race. */
	for (int i = 0; i < 6; i++)
		cr_assert_eq(tsc_get(client, "sku-unchecked", NULL, NULL, NULL, NULL), ORN_OK);
	blast r = run_blast(natsd_url(server), "sku-unchecked", 10, 50);
	/* A reservation may lose all its tries to the other writer (answered
	 * "conflict", nothing reserved); none is reserved twice or past stock. */
	cr_assert_eq(r.accepted, 100, "accepted %d", r.accepted);
	cr_assert_eq(r.out_of_stock + r.conflicts, 400, "out of stock %d, conflicts %d", r.out_of_stock,
	             r.conflicts);
	cr_assert_eq(r.other, 0);
	assert_rebuilt("sku-unchecked", 100, 100);
	act_runtime_stats(runtime, &a);
	act_runtime_stats(second_runtime, &b);
	cr_log_info("conflicts %d, voids %llu + %llu, by echo %llu + %llu, by read %llu + %llu", r.conflicts,
	            (unsigned long long)a.voids, (unsigned long long)b.voids,
	            (unsigned long long)a.confirmed_by_echo, (unsigned long long)b.confirmed_by_echo,
	            (unsigned long long)a.confirmed_by_read, (unsigned long long)b.confirmed_by_read);
	cr_assert_gt(a.voids + b.voids, 0, "concurrent appends on one version were stored and found void");
	if (by_read) {
		cr_assert_eq(a.confirmed_by_echo + b.confirmed_by_echo, 0);
	} else {
		cr_assert_gt(a.confirmed_by_echo + b.confirmed_by_echo,
		             a.confirmed_by_read + b.confirmed_by_read,
		             "most appends were confirmed by the log's echo");
	}
}

Test(stock_service, unchecked_appends_confirmed_by_echo_never_oversell, .init = start_server,
     .fini = stop_unchecked, .timeout = 120)
{
	race_unchecked(false);
}

Test(stock_service, unchecked_appends_confirmed_by_reading_never_oversell, .init = start_server,
     .fini = stop_unchecked, .timeout = 120)
{
	race_unchecked(true);
}
