/* test_stock_faults.c — kill -9 the stock service in the middle of a load,
 * restart it: no acknowledged reservation is lost, and the service's state
 * equals the state rebuilt from the stream. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "proc.h"
#include "stock_client.h"

#define ITEMS     3
#define LOADERS   4
#define MAX_ACKED 200000

static natsd *server;
static es_store *store;
static natsConnection *client;
static pid_t service;
static char *service_dir;
static char service_log[700];

static void start_service(void)
{
	char url_env[128], dir_env[600];
	snprintf(url_env, sizeof url_env, "ORION_NATS_URL=%s", natsd_url(server));
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", service_dir);
	char *argv[] = {(char *)th_orion_bin(), "serve", "--roles", "stock", NULL};
	char *env[] = {url_env, dir_env, "ORION_SNAPSHOT_EVERY=7", "ORION_SHARDS=2", NULL};
	/* A fresh log per start, so readiness is not read from the previous run. */
	unlink(service_log);
	service = th_spawn(argv, env, service_log);
	cr_assert(th_wait_for_file_line(service_log, "orion ready", 15000), "stock service did not start");
}

static void setup(void)
{
	server = th_natsd_start("faults");
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &store), ORN_OK);
	client = tsc_connect(natsd_url(server));
	service_dir = th_tempdir("faults-svc");
	snprintf(service_log, sizeof service_log, "%s/orion.log", service_dir);
	start_service();
}

static void teardown(void)
{
	if (service > 0) {
		th_kill(service, SIGKILL);
		service = 0;
	}
	natsConnection_Destroy(client);
	es_store_close(store);
	th_natsd_stop(server);
	th_rmrf(service_dir);
	free(service_dir);
}

typedef struct loader {
	int index;
	atomic_bool *stop;
	/* acknowledged reservations: item index and reservation number */
	int *acked_item;
	int *acked_number;
	int acked;
	int unanswered;
} loader;

static const char *item_name(int i)
{
	static const char *names[ITEMS] = {"sku-crash-0", "sku-crash-1", "sku-crash-2"};
	return names[i];
}

static void *loader_main(void *arg)
{
	loader *l = arg;
	natsConnection *nc = tsc_connect(natsd_url(server));
	for (int n = 0; !atomic_load(l->stop) && l->acked < MAX_ACKED; n++) {
		char rid[64], cmd_id[80];
		int item = n % ITEMS;
		snprintf(rid, sizeof rid, "t%d-%d", l->index, n);
		snprintf(cmd_id, sizeof cmd_id, "reserve:%s", rid);
		stock_command c = tsc_reserve(rid, 1);
		bus_reply r;
		orn_rc rc = tsc_send(nc, item_name(item), &c, cmd_id, 300, &r);
		if (rc != ORN_OK) {
			l->unanswered++; /* outcome unknown: may or may not be in the log */
			th_sleep_ms(10);
			continue;
		}
		if (r.outcome == BUS_ACCEPTED) {
			l->acked_item[l->acked] = item;
			l->acked_number[l->acked] = n;
			l->acked++;
		}
		bus_reply_dispose(&r);
	}
	natsConnection_Destroy(nc);
	return NULL;
}

static int acked_total(loader *loaders)
{
	int total = 0;
	for (int i = 0; i < LOADERS; i++)
		total += loaders[i].acked;
	return total;
}

Test(stock_faults, kill_9_mid_load_loses_no_acknowledged_reservation, .init = setup, .fini = teardown,
     .timeout = 240)
{
	for (int i = 0; i < ITEMS; i++) {
		stock_command c = tsc_create(1000000);
		bus_reply r;
		char cmd_id[64];
		snprintf(cmd_id, sizeof cmd_id, "create-%d", i);
		cr_assert_eq(tsc_send(client, item_name(i), &c, cmd_id, 10000, &r), ORN_OK);
		cr_assert_eq(r.outcome, BUS_ACCEPTED);
	}
	atomic_bool stop = false;
	loader loaders[LOADERS];
	pthread_t threads[LOADERS];
	for (int i = 0; i < LOADERS; i++) {
		loaders[i] = (loader){.index = i, .stop = &stop};
		loaders[i].acked_item = calloc(MAX_ACKED, sizeof(int));
		loaders[i].acked_number = calloc(MAX_ACKED, sizeof(int));
		cr_assert_eq(pthread_create(&threads[i], NULL, loader_main, &loaders[i]), 0);
	}
	/* Let the load build up, then crash the service mid-flight. */
	int64_t deadline = th_now_ms() + 20000;
	while (acked_total(loaders) < 300 && th_now_ms() < deadline)
		th_sleep_ms(5);
	int before_kill = acked_total(loaders);
	cr_assert_geq(before_kill, 300, "load ran before the crash");
	th_kill(service, SIGKILL);
	service = 0;
	th_sleep_ms(300);
	start_service();
	deadline = th_now_ms() + 20000;
	while (acked_total(loaders) < before_kill + 300 && th_now_ms() < deadline)
		th_sleep_ms(5);
	atomic_store(&stop, true);
	for (int i = 0; i < LOADERS; i++)
		pthread_join(threads[i], NULL);
	cr_assert_geq(acked_total(loaders), before_kill + 300, "load went on after the restart");

	for (int item = 0; item < ITEMS; item++) {
		stock_state rebuilt;
		uint64_t version = 0;
		cr_assert_eq(tsc_rebuild(store, item_name(item), &rebuilt, &version), ORN_OK);
		/* Every acknowledged reservation is in the log. */
		int acked_here = 0;
		for (int l = 0; l < LOADERS; l++)
			for (int k = 0; k < loaders[l].acked; k++) {
				if (loaders[l].acked_item[k] != item)
					continue;
				char rid[64];
				snprintf(rid, sizeof rid, "t%d-%d", l, loaders[l].acked_number[k]);
				cr_assert_eq(stock_held(&rebuilt, rid), 1, "acknowledged %s lost", rid);
				acked_here++;
			}
		cr_assert_geq(rebuilt.reserved, acked_here);
		cr_assert_eq(rebuilt.on_hand, 1000000);
		/* The restarted service (snapshot + tail) agrees with the log. */
		int64_t on_hand = 0, reserved = 0, held = 0;
		cr_assert_eq(tsc_get(client, item_name(item), &on_hand, &reserved, NULL, &held), ORN_OK);
		cr_assert_eq(on_hand, rebuilt.on_hand);
		cr_assert_eq(reserved, rebuilt.reserved, "service %lld vs log %lld", (long long)reserved,
		             (long long)rebuilt.reserved);
		cr_assert_eq(held, (int64_t)hmap_count(rebuilt.held));
		stock_state_dispose(&rebuilt);
	}
	for (int i = 0; i < LOADERS; i++) {
		free(loaders[i].acked_item);
		free(loaders[i].acked_number);
	}
}

Test(stock_faults, nats_server_restart_mid_load_loses_nothing_acknowledged, .init = setup, .fini = teardown,
     .timeout = 240)
{
	for (int i = 0; i < ITEMS; i++) {
		stock_command c = tsc_create(1000000);
		bus_reply r;
		char cmd_id[64];
		snprintf(cmd_id, sizeof cmd_id, "create-%d", i);
		cr_assert_eq(tsc_send(client, item_name(i), &c, cmd_id, 10000, &r), ORN_OK);
		cr_assert_eq(r.outcome, BUS_ACCEPTED);
	}
	atomic_bool stop = false;
	loader loaders[LOADERS];
	pthread_t threads[LOADERS];
	for (int i = 0; i < LOADERS; i++) {
		loaders[i] = (loader){.index = i, .stop = &stop};
		loaders[i].acked_item = calloc(MAX_ACKED, sizeof(int));
		loaders[i].acked_number = calloc(MAX_ACKED, sizeof(int));
		cr_assert_eq(pthread_create(&threads[i], NULL, loader_main, &loaders[i]), 0);
	}
	int64_t deadline = th_now_ms() + 20000;
	while (acked_total(loaders) < 300 && th_now_ms() < deadline)
		th_sleep_ms(5);
	int before = acked_total(loaders);
	cr_assert_geq(before, 300);
	/* The event store itself goes away mid-flight, then comes back on the same
	 * port and store: the service must reconnect by itself. */
	natsd_kill(server);
	th_sleep_ms(500);
	cr_assert_eq(natsd_restart(server), ORN_OK);
	deadline = th_now_ms() + 30000;
	while (acked_total(loaders) < before + 300 && th_now_ms() < deadline)
		th_sleep_ms(10);
	atomic_store(&stop, true);
	for (int i = 0; i < LOADERS; i++)
		pthread_join(threads[i], NULL);
	cr_assert_geq(acked_total(loaders), before + 300, "commands are served again after the restart");
	cr_assert_eq(proc_wait(service, 0), -1, "the service survived the outage");

	for (int item = 0; item < ITEMS; item++) {
		stock_state rebuilt;
		uint64_t version = 0;
		cr_assert_eq(tsc_rebuild(store, item_name(item), &rebuilt, &version), ORN_OK);
		for (int l = 0; l < LOADERS; l++)
			for (int k = 0; k < loaders[l].acked; k++) {
				if (loaders[l].acked_item[k] != item)
					continue;
				char rid[64];
				snprintf(rid, sizeof rid, "t%d-%d", l, loaders[l].acked_number[k]);
				cr_assert_eq(stock_held(&rebuilt, rid), 1, "acknowledged %s lost", rid);
			}
		int64_t on_hand = 0, reserved = 0;
		cr_assert_eq(tsc_get(client, item_name(item), &on_hand, &reserved, NULL, NULL), ORN_OK);
		cr_assert_eq(reserved, rebuilt.reserved, "service %lld vs log %lld", (long long)reserved,
		             (long long)rebuilt.reserved);
		stock_state_dispose(&rebuilt);
	}
	for (int i = 0; i < LOADERS; i++) {
		free(loaders[i].acked_item);
		free(loaders[i].acked_number);
	}
}
