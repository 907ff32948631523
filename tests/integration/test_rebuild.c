/* test_rebuild.c — `orion rebuild` against a running `orion serve` and a real
 * nats-server: a 100,000-event soak during which a full rebuild and a
 * one-projection rebuild are switched in while a reader keeps reading through
 * the gateway (every answer 200, no value ever going back in time), then
 * `--verify` reports no difference; and, with a customer's order placed (the
 * admin desk's rows: ADR 029), `--verify` reports no difference, then the
 * values tampered with in a copy of the read models. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"
#include "natsd.h"
#include "stock_client.h"

#define MAX_PRODUCTS  64
#define TOPUP         20000
#define SOAK_RESERVES 100000L
#define CHUNKS        4

static natsd *server;
static char *dir;
static pid_t serve_pid;
static char base_url[64], nats_env[160], dir_env[600];
static char ids[MAX_PRODUCTS][64];
static int64_t start_available[MAX_PRODUCTS];
static int product_count;

static void setup(void)
{
	server = th_natsd_start("rebuild");
	dir = th_tempdir("rebuild");
	snprintf(nats_env, sizeof nats_env, "ORION_NATS_URL=%s", natsd_url(server));
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", dir);
	const char *args[] = {"--demo", NULL};
	const char *env[] = {nats_env, "ORION_PASSWORD_MEMORY_KIB=8192", NULL};
	serve_pid = hc_serve_start(dir, args, env, base_url, sizeof base_url, NULL);
}

static void teardown(void)
{
	if (serve_pid > 0)
		hc_serve_stop(serve_pid);
	serve_pid = 0;
	th_natsd_stop(server);
	server = NULL;
	if (dir != NULL && getenv("ORION_TEST_KEEP") == NULL)
		th_rmrf(dir);
	free(dir);
	dir = NULL;
}

/* Runs `orion rebuild ARGS` with data_dir; returns its exit code, its output in out. */
static int run_rebuild(const char *data_dir, const char *const *args, char *out, size_t cap)
{
	char log_path[700], denv[600];
	char *argv[8] = {(char *)th_orion_bin(), "rebuild"};
	int argc = 2;
	for (; *args != NULL; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	snprintf(log_path, sizeof log_path, "%s.rebuild-%lld.log", data_dir, (long long)th_now_ms());
	snprintf(denv, sizeof denv, "ORION_DATA_DIR=%s", data_dir);
	char *envp[] = {denv, nats_env, NULL};
	pid_t pid = th_spawn(argv, envp, log_path);
	int code = th_wait_exit(pid, 240000);
	FILE *f = fopen(log_path, "r");
	size_t n = f != NULL ? fread(out, 1, cap - 1, f) : 0;
	out[n] = '\0';
	if (f != NULL)
		fclose(f);
	unlink(log_path);
	return code;
}

/* The demo catalog's products through the gateway, once the listing is the
 * same twice in a row (the demo is seeded while serve starts). */
static int list_products(void);

static int load_products(void)
{
	int n = list_products(), again;
	while ((again = list_products()) != n || n == 0) {
		n = again;
		th_sleep_ms(300);
	}
	return n;
}

static int list_products(void)
{
	hc_reply r = hc_call(base_url, "GET", "/api/v1/products?limit=100", NULL, NULL, 0, NULL, NULL, 10000);
	cr_assert_eq(r.status, 200);
	json_t *items = json_object_get(r.json, "items");
	int n = 0;
	for (size_t i = 0; i < json_array_size(items) && n < MAX_PRODUCTS; i++, n++) {
		json_t *p = json_array_get(items, i);
		snprintf(ids[n], sizeof ids[n], "%s", json_string_value(json_object_get(p, "id")));
		start_available[n] = json_integer_value(json_object_get(p, "available"));
	}
	hc_reply_free(&r);
	return n;
}

static int64_t available_of(int i, long *status)
{
	char path[128];
	snprintf(path, sizeof path, "/api/v1/products/%s", ids[i]);
	hc_reply r = hc_perform(base_url, "GET", path, NULL, NULL, 0, 10000);
	*status = r.status;
	int64_t v = r.json != NULL ? json_integer_value(json_object_get(r.json, "available")) : -1;
	hc_reply_free(&r);
	return v;
}

static void make_topup(long i, char *item, size_t item_cap, char *id, size_t id_cap, stock_command *c,
                       void *cl)
{
	snprintf(item, item_cap, "%s", ids[i]);
	snprintf(id, id_cap, "soak-topup-%ld", i);
	*c = tsc_adjust(TOPUP, "soak");
}

static void make_reserve(long i, char *item, size_t item_cap, char *id, size_t id_cap, stock_command *c,
                         void *closure)
{
	long base = *(const long *)closure;
	char reservation[64];
	snprintf(item, item_cap, "%s", ids[(base + i) % product_count]);
	snprintf(reservation, sizeof reservation, "soak-%ld", base + i);
	snprintf(id, id_cap, "soak-cmd-%ld", base + i);
	*c = tsc_reserve(reservation, 1);
}

/* The reader: every product in turn, through the gateway, all the time. */
typedef struct reader {
	atomic_bool stop;
	long reads, non_200, went_back;
	int64_t last[MAX_PRODUCTS];
	char first_problem[256];
} reader;

static void *read_loop(void *arg)
{
	reader *rd = arg;
	for (int i = 0; !atomic_load(&rd->stop); i = (i + 1) % product_count) {
		long status = 0;
		int64_t v = available_of(i, &status);
		rd->reads++;
		if (status != 200) {
			if (rd->non_200++ == 0)
				snprintf(rd->first_problem, sizeof rd->first_problem, "GET %s: %ld", ids[i],
				         status);
		} else if (v > rd->last[i]) { /* only reserves happen: available never rises */
			if (rd->went_back++ == 0)
				snprintf(rd->first_problem, sizeof rd->first_problem,
				         "%s went from %lld back to %lld", ids[i], (long long)rd->last[i],
				         (long long)v);
		} else {
			rd->last[i] = v;
		}
	}
	return NULL;
}

static bool all_caught_up(long reserved_total)
{
	for (int i = 0; i < product_count; i++) {
		long status = 0, expected_reserves = reserved_total / product_count +
		                                     (i < reserved_total % product_count);
		if (available_of(i, &status) != start_available[i] + TOPUP - expected_reserves)
			return false;
	}
	return true;
}

static int count_lines(const char *path, const char *needle)
{
	char line[4096];
	int n = 0;
	FILE *f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof line, f) != NULL)
		n += strstr(line, needle) != NULL;
	if (f != NULL)
		fclose(f);
	return n;
}

TestSuite(rebuild, .init = setup, .fini = teardown, .timeout = 600);

Test(rebuild, soak_with_switches_under_reads_then_verify_finds_no_difference)
{
	static char out[1 << 16];
	char serve_log[700];
	snprintf(serve_log, sizeof serve_log, "%s/serve.log", dir);
	product_count = load_products();
	cr_assert_gt(product_count, 10, "the demo catalog has products");
	natsConnection *nc = tsc_connect(natsd_url(server));
	long accepted = 0;
	cr_assert_eq(tsc_send_many(nc, product_count, 64, make_topup, NULL, 10000, &accepted), ORN_OK);
	cr_assert_eq(accepted, product_count);
	/* what the stock actors say is available now: the read models must reach it */
	for (int i = 0; i < product_count; i++) {
		int64_t on_hand = 0, reserved = 0, sold = 0, held = 0;
		cr_assert_eq(tsc_get(nc, ids[i], &on_hand, &reserved, &sold, &held), ORN_OK);
		start_available[i] = on_hand - reserved - TOPUP;
	}
	for (int64_t until = th_now_ms() + 30000; !all_caught_up(0); th_sleep_ms(50))
		cr_assert_lt(th_now_ms(), until, "the top-ups reach the read models");

	reader *rd = calloc(1, sizeof *rd);
	for (int i = 0; i < product_count; i++)
		rd->last[i] = start_available[i] + TOPUP;
	pthread_t thread;
	cr_assert_eq(pthread_create(&thread, NULL, read_loop, rd), 0);

	/* The soak, in chunks; a rebuild runs alongside the second and the third. */
	long per_chunk = SOAK_RESERVES / CHUNKS, sent = 0;
	for (int chunk = 0; chunk < CHUNKS; chunk++) {
		const char *full[] = {"--quiet", NULL}, *catalog[] = {"--projection", "catalog", NULL};
		cr_assert_eq(tsc_send_many(nc, per_chunk, 1000, make_reserve, &sent, 20000, &accepted),
		             ORN_OK);
		cr_assert_eq(accepted, per_chunk, "every reserve accepted (chunk %d)", chunk);
		sent += per_chunk;
		if (chunk == 1 || chunk == 2) {
			int code = run_rebuild(dir, chunk == 1 ? full : catalog, out, sizeof out);
			cr_assert_eq(code, 0, "rebuild exit %d:\n%s", code, out);
			cr_assert(strstr(out, "rebuilt ") != NULL, "%s", out);
			for (int64_t until = th_now_ms() + 20000;
			     count_lines(serve_log, "projector switched generation") < chunk; th_sleep_ms(50))
				cr_assert_lt(th_now_ms(), until, "the serving projector switches (%d)",
				             chunk);
		}
	}
	for (int64_t until = th_now_ms() + 60000; !all_caught_up(sent); th_sleep_ms(100))
		cr_assert_lt(th_now_ms(), until, "the read models reach the end of the soak");
	atomic_store(&rd->stop, true);
	pthread_join(thread, NULL);
	cr_log_info("reader: %ld reads during the soak and two switches", rd->reads);
	cr_assert_gt(rd->reads, 100);
	cr_assert_eq(rd->non_200, 0, "every read answered 200: %s", rd->first_problem);
	cr_assert_eq(rd->went_back, 0, "no read went back in time: %s", rd->first_problem);
	free(rd);
	natsConnection_Destroy(nc);

	const char *verify[] = {"--verify", NULL};
	int code = run_rebuild(dir, verify, out, sizeof out);
	cr_assert_eq(code, 0, "verify exit %d:\n%s", code, out);
	cr_assert(strstr(out, " 0 differences") != NULL, "%s", out);
	/* old generations were removed: only the link's target is left */
	int generations = 0;
	char cmd[800];
	snprintf(cmd, sizeof cmd, "ls -d %s/lmdb.* | wc -l", dir);
	FILE *p = popen(cmd, "r");
	cr_assert(p != NULL && fscanf(p, "%d", &generations) == 1);
	pclose(p);
	cr_assert_eq(generations, 1);
}

/* Changes byte `at` of key's value in sub-database db of the environment at path. */
static void tamper_at(const char *path, const char *db, const char *key, size_t at)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_val k = {strlen(key), (void *)key}, v;
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 64), 0);
	cr_assert_eq(mdb_env_open(env, path, 0, 0640), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
	cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0, "%s has %s", db, key);
	unsigned char copy[512];
	cr_assert_leq(v.mv_size, sizeof copy);
	cr_assert_lt(at, v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[at] ^= 0x01;
	MDB_val nv = {v.mv_size, copy};
	cr_assert_eq(mdb_put(txn, dbi, &k, &nv, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void tamper(const char *path, const char *db, const char *key)
{
	tamper_at(path, db, key, 8); /* in the on_hand field */
}

/* A customer's order, placed through the gateway, once its stock is
 * reserved: the admin desk's rows (desk.orders, desk.accounts, the order's
 * timeline across order, cart and stock) exist for --verify to compare. */
static void place_an_order(char order_id[65])
{
	const char *reg = "{\"email\":\"verify@orion.test\",\"password\":\"a long password\",\"name\":\"V\"}";
	const char *login = "{\"email\":\"verify@orion.test\",\"password\":\"a long password\"}";
	char token[2048], body[200], path[200];
	hc_reply r = hc_call(base_url, "POST", "/api/v1/auth/register", NULL, reg, 0, NULL, NULL, 10000);
	cr_assert_eq(r.status, 202, "%s", r.body);
	hc_reply_free(&r);
	r = hc_call(base_url, "POST", "/api/v1/auth/login", NULL, login, 0, NULL, NULL, 10000);
	cr_assert_eq(r.status, 200, "%s", r.body);
	snprintf(token, sizeof token, "%s", json_string_value(json_object_get(r.json, "access_token")));
	hc_reply_free(&r);
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", ids[0]);
	r = hc_call(base_url, "POST", "/api/v1/cart/items", token, body, 0, NULL, NULL, 10000);
	cr_assert_eq(r.status, 200, "%s", r.body);
	hc_reply_free(&r);
	r = hc_call(base_url, "POST", "/api/v1/orders", token, "{}", 0, NULL, NULL, 10000);
	cr_assert_eq(r.status, 202, "%s", r.body);
	snprintf(order_id, 65, "%s", json_string_value(json_object_get(r.json, "id")));
	hc_reply_free(&r);
	snprintf(path, sizeof path, "/api/v1/orders/%s", order_id);
	for (int64_t until = th_now_ms() + 20000;; th_sleep_ms(100)) {
		r = hc_call(base_url, "GET", path, token, NULL, 0, NULL, NULL, 10000);
		const char *status = json_string_value(json_object_get(r.json, "status"));
		bool reserved = status != NULL && strcmp(status, "awaiting_confirmation") == 0;
		hc_reply_free(&r);
		if (reserved)
			break;
		cr_assert_lt(th_now_ms(), until, "the order's stock is reserved");
	}
}

Test(rebuild, verify_reports_a_tampered_value_in_a_copy)
{
	static char out[1 << 16];
	char copy_dir[700], cmd[2000], expect[160];
	char order_id[65];
	product_count = load_products();
	cr_assert_gt(product_count, 0);
	place_an_order(order_id);
	const char *verify[] = {"--verify", NULL};
	/* wait until the live models have the demo catalog, then stop the server */
	int code = run_rebuild(dir, verify, out, sizeof out);
	cr_assert_eq(code, 0, "the untouched models verify:\n%s", out);
	hc_serve_stop(serve_pid);
	serve_pid = 0;
	/* a copy of the read models, as a plain directory (the layout before generations) */
	snprintf(copy_dir, sizeof copy_dir, "%s/copy", dir);
	snprintf(cmd, sizeof cmd, "mkdir -p %s && cp -rL %s/lmdb %s/lmdb", copy_dir, dir, copy_dir);
	cr_assert_eq(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "%s/lmdb", copy_dir);
	tamper(cmd, "inventory.items", ids[0]);
	tamper_at(cmd, "desk.order_created", order_id, 7); /* the order's creation time */
	code = run_rebuild(copy_dir, verify, out, sizeof out);
	cr_assert_eq(code, 1, "verify exit %d:\n%s", code, out);
	snprintf(expect, sizeof expect, "difference inventory.items key \"%s\"", ids[0]);
	cr_assert(strstr(out, expect) != NULL, "names the tampered key:\n%s", out);
	snprintf(expect, sizeof expect, "difference desk.order_created key \"%s\"", order_id);
	cr_assert(strstr(out, expect) != NULL, "names the tampered desk row:\n%s", out);
	cr_assert(strstr(out, " 2 differences") != NULL, "exactly two differences:\n%s", out);
}
