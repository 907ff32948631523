/* test_cli.c — the orion binary as a user runs it: `serve` with its embedded
 * nats-server, `replay` printing JSON lines, and the errors of bad usage. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "nats_auth-internal.h"
#include "bus-internal.h"
#include "harness.h"
#include "log.h"
#include "nats_auth.h"
#include "order.h"
#include "stock_client.h"

static char *data_dir;

static void setup(void)
{
	data_dir = th_tempdir("cli");
	unsetenv("ORION_NATS_URL");
}

static void teardown(void)
{
	th_rmrf(data_dir);
	free(data_dir);
}

/* Runs orion with args through the shell; stdout to out_path. Exit code. */
static int run_orion(const char *args, const char *env, const char *out_path)
{
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "%s ORION_DATA_DIR='%s' '%s' %s > '%s' 2>> '%s/stderr.log'", env ? env : "",
	         data_dir, th_orion_bin(), args, out_path ? out_path : "/dev/null", data_dir);
	int status = system(cmd);
	cr_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* The last lines the orion commands wrote to stderr, for failure messages. */
static const char *stderr_tail(void)
{
	static char tail[2048];
	char path[600];
	snprintf(path, sizeof path, "%s/stderr.log", data_dir);
	FILE *f = fopen(path, "r");
	tail[0] = '\0';
	if (f == NULL)
		return tail;
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0, SEEK_SET);
	size_t n = fread(tail, 1, sizeof tail - 1, f);
	tail[n] = '\0';
	fclose(f);
	return tail;
}

static char *read_url(void)
{
	char path[600], url[128] = "";
	snprintf(path, sizeof path, "%s/nats.url", data_dir);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "serve wrote no nats.url");
	cr_assert_not_null(fgets(url, sizeof url, f));
	fclose(f);
	url[strcspn(url, "\n")] = '\0';
	return strdup(url);
}

/* The ops user of the embedded server's credentials (ADR 014; out param c). */
static na_conn ops_auth(na_credentials *creds)
{
	char path[600];
	snprintf(path, sizeof path, "%s/nats/credentials", data_dir);
	cr_assert_eq(na_credentials_load(path, NULL, creds), ORN_OK, "serve wrote no NATS credentials");
	const na_credential *ops = na_credentials_find(creds, "ops");
	cr_assert_not_null(ops);
	na_conn c = {ops->user, ops->password, NULL, NULL, NULL};
	return c;
}

/* Connects to the embedded server as ops (NULL if refused when may_fail). */
static natsConnection *connect_ops(const char *url, bool may_fail)
{
	na_credentials creds;
	na_conn auth = ops_auth(&creds);
	natsConnection *nc = NULL;
	natsOptions *o = NULL;
	cr_assert_eq(natsOptions_Create(&o), NATS_OK);
	natsOptions_SetURL(o, url);
	cr_assert_eq(na_conn_apply(&auth, o), ORN_OK);
	natsStatus st = natsConnection_Connect(&nc, o);
	natsOptions_Destroy(o);
	na_credentials_wipe(&creds);
	cr_assert(may_fail || st == NATS_OK, "cannot connect to %s as ops", url);
	return st == NATS_OK ? nc : NULL;
}

static int check_replay_lines(const char *path, const char *item, int *reserved_seen)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char line[8192];
	int lines = 0;
	long long previous_seq = 0;
	while (fgets(line, sizeof line, f) != NULL) {
		json_error_t err;
		json_t *ev = json_loads(line, 0, &err);
		cr_assert_not_null(ev, "line %d is not JSON: %s", lines + 1, err.text);
		long long seq = json_integer_value(json_object_get(ev, "seq"));
		cr_assert_gt(seq, previous_seq, "sequences ascend");
		previous_seq = seq;
		char subject[128];
		snprintf(subject, sizeof subject, "orion.evt.stock.%s", item);
		const char *actual = json_string_value(json_object_get(ev, "subject"));
		cr_assert_not_null(actual);
		cr_assert_eq(strncmp(actual, "orion.evt.stock.", 16), 0);
		if (strcmp(actual, subject) != 0) {
			json_decref(ev);
			continue; /* another item */
		}
		cr_assert_not_null(json_string_value(json_object_get(ev, "time")));
		cr_assert_not_null(json_string_value(json_object_get(ev, "causation_id")));
		const char *type = json_string_value(json_object_get(ev, "type"));
		json_t *data = json_object_get(ev, "data");
		cr_assert(json_is_object(data));
		const char *reservation = json_string_value(json_object_get(data, "reservation_id"));
		if (strcmp(type, STOCK_EV_RESERVED) == 0 && strcmp(reservation, "order-1") == 0) {
			cr_assert_eq(json_integer_value(json_object_get(data, "quantity")), 2);
			(*reserved_seen)++;
		}
		json_decref(ev);
		lines++;
	}
	fclose(f);
	return lines;
}

Test(cli, serve_embeds_nats_and_replay_prints_the_log, .init = setup, .fini = teardown, .timeout = 120)
{
	char log_path[700], dir_env[600], out[700];
	snprintf(log_path, sizeof log_path, "%s/serve.log", data_dir);
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", data_dir);
	char *argv[] = {(char *)th_orion_bin(), "serve", "--roles", "stock", NULL};
	char *env[] = {dir_env, NULL};
	pid_t pid = th_spawn(argv, env, log_path);
	cr_assert(th_wait_for_file_line(log_path, "orion ready", 20000), "serve did not come up");
	cr_assert(th_wait_for_file_line(log_path, "Orion is running", 5000));
	char *url = read_url();
	/* the embedded server has a user per role: nobody gets in anonymously,
	 * and the credentials are the owner's alone */
	natsConnection *anonymous = NULL;
	cr_assert_neq(natsConnection_ConnectTo(&anonymous, url), NATS_OK, "anonymous connection accepted");
	struct stat sb;
	char creds_path[600];
	snprintf(creds_path, sizeof creds_path, "%s/nats/credentials", data_dir);
	cr_assert_eq(stat(creds_path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600);
	natsConnection *nc = connect_ops(url, false);
	bus_reply r;
	stock_command create = tsc_create(5), reserve = tsc_reserve("order-1", 2);
	cr_assert_eq(tsc_send(nc, "sku-cli", &create, "cli-1", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED);
	cr_assert_eq(tsc_send(nc, "sku-cli", &reserve, "cli-2", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED);
	natsConnection_Destroy(nc);

	/* replay while serve runs: uses the running server */
	snprintf(out, sizeof out, "%s/replay1.jsonl", data_dir);
	cr_assert_eq(run_orion("replay --aggregate stock --id sku-cli", NULL, out), 0);
	int reserved = 0;
	cr_assert_eq(check_replay_lines(out, "sku-cli", &reserved), 2);
	cr_assert_eq(reserved, 1);

	/* `orion stock` talks to the running service through its nats.url */
	snprintf(out, sizeof out, "%s/stock.json", data_dir);
	cr_assert_eq(run_orion("stock sku-cli get", NULL, out), 0);
	json_t *reply = json_load_file(out, 0, NULL);
	cr_assert_not_null(reply);
	json_t *state = json_object_get(reply, "state");
	cr_assert_eq(json_integer_value(json_object_get(state, "on_hand")), 5);
	cr_assert_eq(json_integer_value(json_object_get(state, "reserved")), 2);
	cr_assert_eq(json_integer_value(json_object_get(state, "available")), 3);
	json_decref(reply);
	cr_assert_eq(run_orion("stock sku-cli reserve order-2 4", NULL, out), 1, "out of stock exits 1");
	reply = json_load_file(out, 0, NULL);
	cr_assert_str_eq(json_string_value(json_object_get(reply, "code")), "out_of_stock");
	json_decref(reply);
	cr_assert_eq(run_orion("stock sku-cli reserve order-2 3", NULL, out), 0);
	cr_assert_eq(run_orion("stock sku-cli commit order-2", NULL, out), 0);
	cr_assert_eq(run_orion("stock sku-cli release order-1", NULL, out), 0);
	cr_assert_eq(run_orion("stock sku-cli adjust -1 'damaged in transit'", NULL, out), 0);
	cr_assert_eq(run_orion("stock sku-new create 7", NULL, out), 0);
	cr_assert_eq(run_orion("stock sku-cli get", NULL, out), 0);
	reply = json_load_file(out, 0, NULL);
	state = json_object_get(reply, "state");
	cr_assert_eq(json_integer_value(json_object_get(state, "on_hand")), 1, "5 - 3 sold - 1 damaged");
	cr_assert_eq(json_integer_value(json_object_get(state, "reserved")), 0);
	cr_assert_eq(json_integer_value(json_object_get(state, "sold")), 3);
	json_decref(reply);

	/* SIGTERM stops serve and its nats-server child */
	th_kill(pid, SIGTERM);
	cr_assert_eq(th_wait_exit(pid, 15000), 0, "serve exits cleanly");
	cr_assert_null(connect_ops(url, true), "the embedded server stopped too");
	free(url);

	/* replay with nothing running: starts the embedded server on the same store */
	snprintf(out, sizeof out, "%s/replay2.jsonl", data_dir);
	cr_assert_eq(run_orion("replay --aggregate stock", NULL, out), 0);
	reserved = 0;
	cr_assert_eq(check_replay_lines(out, "sku-cli", &reserved), 6, "the log survived the restart");
	cr_assert_eq(reserved, 1);
	snprintf(out, sizeof out, "%s/replay3.jsonl", data_dir);
	cr_assert_eq(run_orion("replay --aggregate stock --id sku-cli --from 2", NULL, out), 0);
	reserved = 0;
	cr_assert_eq(check_replay_lines(out, "sku-cli", &reserved), 5);
	/* with nothing running, a stock command has no service to talk to */
	cr_assert_eq(run_orion("stock sku-cli get", NULL, NULL), 3);
}

Test(cli, bad_usage_is_refused_with_exit_code_2, .init = setup, .fini = teardown, .timeout = 60)
{
	cr_assert_eq(run_orion("", NULL, NULL), 2);
	cr_assert_eq(run_orion("help", NULL, NULL), 0);
	cr_assert_eq(run_orion("serve --help", NULL, NULL), 0);
	cr_assert_eq(run_orion("frobnicate", NULL, NULL), 2);
	cr_assert_eq(run_orion("serve --roles bogus", NULL, NULL), 2);
	cr_assert_eq(run_orion("serve --verbose", NULL, NULL), 2);
	cr_assert_eq(run_orion("serve", "ORION_SHARDS=abc", NULL), 2);
	cr_assert_eq(run_orion("serve", "ORION_LOG_LEVEL=loud", NULL), 2);
	cr_assert_eq(run_orion("replay --id x", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --aggregate stock --id 'a.b'", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --aggregate 'Stock>'", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --from -1", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --to x", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --bogus", NULL, NULL), 2);
	cr_assert_eq(run_orion("stock", NULL, NULL), 2);
	cr_assert_eq(run_orion("stock sku-1 frob", NULL, NULL), 2);
	cr_assert_eq(run_orion("stock sku-1 create many", NULL, NULL), 2);
	cr_assert_eq(run_orion("stock 'a.b' get", NULL, NULL), 2);
	cr_assert_eq(run_orion("stock sku-1 reserve r1", NULL, NULL), 2);
}

Test(cli, serve_fails_cleanly_when_nats_is_unreachable, .init = setup, .fini = teardown, .timeout = 60)
{
	char env[128];
	snprintf(env, sizeof env, "ORION_NATS_URL=nats://127.0.0.1:%d", natsd_free_port());
	cr_assert_eq(run_orion("serve --roles stock", env, NULL), 1);
}

/* ---- all roles in one process, over real HTTP --------------------------- */

typedef struct http_reply {
	long status;
	char body[65536];
	size_t len;
	bool allowed_origin; /* an Access-Control-Allow-Origin header came back */
} http_reply;

static size_t collect_body(char *data, size_t size, size_t count, void *closure)
{
	http_reply *r = closure;
	size_t n = size * count;
	size_t room = sizeof r->body - 1 - r->len;
	memcpy(r->body + r->len, data, n < room ? n : room);
	r->len += n < room ? n : room;
	r->body[r->len] = '\0';
	return n;
}

static size_t collect_header(char *data, size_t size, size_t count, void *closure)
{
	http_reply *r = closure;
	size_t n = size * count;
	if (n > 28 && strncasecmp(data, "Access-Control-Allow-Origin:", 28) == 0)
		r->allowed_origin = true;
	return n;
}

/* One request; body (JSON) makes it a POST, origin adds an Origin header. */
static http_reply http_call(int port, const char *path, const char *body, const char *origin)
{
	http_reply r = {0};
	char url[256], origin_header[256];
	struct curl_slist *headers = NULL;
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	if (body != NULL) {
		headers = curl_slist_append(headers, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	if (origin != NULL) {
		snprintf(origin_header, sizeof origin_header, "Origin: %s", origin);
		headers = curl_slist_append(headers, origin_header);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK, "%s", path);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_easy_cleanup(c);
	curl_slist_free_all(headers);
	return r;
}

static http_reply http_get(int port, const char *path)
{
	return http_call(port, path, NULL, NULL);
}

Test(cli, serve_runs_every_role_with_the_gateway, .init = setup, .fini = teardown, .timeout = 120)
{
	char log_path[700], dir_env[600], addr_env[64], metrics_env[64];
	int port = natsd_free_port(), metrics_port = natsd_free_port();
	snprintf(log_path, sizeof log_path, "%s/serve.log", data_dir);
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", data_dir);
	snprintf(addr_env, sizeof addr_env, "ORION_HTTP_ADDR=127.0.0.1:%d", port);
	snprintf(metrics_env, sizeof metrics_env, "ORION_METRICS_ADDR=127.0.0.1:%d", metrics_port);
	char *argv[] = {(char *)th_orion_bin(), "serve", NULL};
	char *env[] = {dir_env, addr_env, metrics_env,
	               "ORION_CORS_ORIGINS=https://shop.example,https://admin.example", NULL};
	pid_t pid = th_spawn(argv, env, log_path);
	char announced[64];
	snprintf(announced, sizeof announced, "Orion is running: http://127.0.0.1:%d ", port);
	cr_assert(th_wait_for_file_line(log_path, announced, 20000), "serve did not come up on port %d",
	          port);

	/* CORS only for the configured origins */
	http_reply cors = http_call(port, "/api/v1/products", NULL, "https://admin.example");
	cr_assert_eq(cors.status, 200);
	cr_assert(cors.allowed_origin, "a configured origin is allowed");
	cors = http_call(port, "/api/v1/products", NULL, "https://evil.example");
	cr_assert_eq(cors.status, 200);
	cr_assert_not(cors.allowed_origin, "another origin is not");
	/* a command through the API is timed in /metrics */
	http_reply reg = http_call(
	        port, "/api/v1/auth/register",
	        "{\"email\":\"m@example.com\",\"password\":\"Meadow-lantern-quartz-61\",\"name\":\"M\"}",
	        NULL);
	cr_assert_eq(reg.status, 202, "%s", reg.body);

	http_reply health = http_get(port, "/healthz");
	cr_assert_eq(health.status, 200);
	cr_assert_not_null(strstr(health.body, "\"ok\""));
	/* Ready once the read models have caught up with a fresh write. */
	char out[700];
	snprintf(out, sizeof out, "%s/stock.json", data_dir);
	cr_assert_eq(run_orion("stock sku-http create 3", NULL, out), 0);
	http_reply ready = {0};
	for (int i = 0; i < 100; i++) {
		ready = http_get(port, "/readyz");
		if (ready.status == 200)
			break;
		th_sleep_ms(50);
	}
	cr_assert_eq(ready.status, 200, "readyz: %s", ready.body);
	json_t *body = json_loads(ready.body, 0, NULL);
	cr_assert(json_is_true(json_object_get(body, "nats")));
	cr_assert_eq(json_integer_value(json_object_get(body, "projection_lag")), 0);
	json_decref(body);
	http_reply doc = http_get(port, "/api/v1/openapi.yaml");
	cr_assert_eq(doc.status, 200);
	cr_assert_eq(strncmp(doc.body, "openapi: 3.1.0", 14), 0);
	/* /metrics is only on ORION_METRICS_ADDR, not on the public listener */
	cr_assert_eq(http_get(port, "/metrics").status, 404);
	http_reply metrics = http_get(metrics_port, "/metrics");
	cr_assert_eq(metrics.status, 200);
	cr_assert_not_null(strstr(metrics.body, "route=\"/healthz\""), "the requests above were counted");
	cr_assert_not_null(
	        strstr(metrics.body,
	               "orion_command_duration_seconds_count{aggregate=\"user\",outcome=\"accepted\"} 1"),
	        "%s", metrics.body);
	cr_assert_not_null(strstr(metrics.body, "orion_projection_lag_events "));
	cr_assert_not_null(strstr(metrics.body, "orion_nats_connected 1"));
	/* Every actor kind answers on the bus (a Get of an unknown aggregate). */
	cr_assert_eq(run_orion("stock sku-none get", NULL, out), 0);

	th_kill(pid, SIGTERM);
	cr_assert_eq(th_wait_exit(pid, 15000), 0, "serve exits cleanly");
}

Test(cli, serve_runs_a_subset_of_roles, .init = setup, .fini = teardown, .timeout = 120)
{
	char log_path[700], dir_env[600];
	snprintf(log_path, sizeof log_path, "%s/serve.log", data_dir);
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", data_dir);
	char *argv[] = {(char *)th_orion_bin(), "serve", "--roles", "product,user,projector", NULL};
	char *env[] = {dir_env, NULL};
	pid_t pid = th_spawn(argv, env, log_path);
	cr_assert(th_wait_for_file_line(log_path, "Orion is running against NATS", 20000),
	          "serve did not come up");
	cr_assert_not(th_wait_for_file_line(log_path, "\"aggregate\":\"stock\"", 200),
	              "no stock role was asked for");
	cr_assert(th_wait_for_file_line(log_path, "\"aggregate\":\"product\"", 1000));
	cr_assert(th_wait_for_file_line(log_path, "\"aggregate\":\"sku\"", 1000));
	cr_assert(th_wait_for_file_line(log_path, "\"aggregate\":\"user\"", 1000));
	th_kill(pid, SIGTERM);
	cr_assert_eq(th_wait_exit(pid, 15000), 0);
}

Test(cli, serve_demo_seeds_the_catalog_and_an_admin_once, .init = setup, .fini = teardown, .timeout = 180)
{
	char log_path[700], dir_env[600], addr_env[64], out[700];
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", data_dir);
	snprintf(addr_env, sizeof addr_env, "ORION_HTTP_ADDR=127.0.0.1:0");
	char *argv[] = {(char *)th_orion_bin(), "serve", "--demo", NULL};
	char *env[] = {dir_env, addr_env, NULL};
	snprintf(out, sizeof out, "%s/command.json", data_dir);
	for (int run = 0; run < 2; run++) { /* the second start finds everything in place */
		/* a log per run: the second must not find the first one's lines */
		snprintf(log_path, sizeof log_path, "%s/serve-%d.log", data_dir, run);
		pid_t pid = th_spawn(argv, env, log_path);
		cr_assert(th_wait_for_file_line(log_path, "Orion is running: http://", 60000), "run %d", run);
		cr_assert(
		        th_wait_for_file_line(log_path, "Demo catalog: 36 products in 6 categories.", 1000));
		cr_assert(th_wait_for_file_line(log_path, "Admin account: admin@orion.localhost / ", 1000));
		if (run == 0) {
			cr_assert(th_wait_for_file_line(log_path, "admin account created", 1000));
			/* a customer through the CLI, refused twice as a new account */
			int rc = run_orion(
			        "admin create-user --email Shopper@Example.COM --password s3cret-pw "
			        "--name Shopper --role customer",
			        NULL, out);
			cr_assert_eq(rc, 0, "exit %d; stderr: %s", rc, stderr_tail());
			cr_assert_eq(run_orion("admin create-user --email nobody --password s3cret-pw", NULL,
			                       NULL),
			             2);
			cr_assert_eq(run_orion("admin create-user --email a@b.example --password short", NULL,
			                       NULL),
			             2);
			cr_assert_eq(run_orion("admin create-user --email a@b.example --password s3cret-pw "
			                       "--role king",
			                       NULL, NULL),
			             2);
		} else {
			/* the lines above are the first run's too (one log): wait for this run's */
			cr_assert(th_wait_for_file_line(log_path, "admin account present", 60000));
		}
		snprintf(out, sizeof out, "%s/stock.json", data_dir);
		cr_assert_eq(run_orion("stock demo-036 get", NULL, out), 0,
		             "the last demo product has stock");
		th_kill(pid, SIGTERM);
		cr_assert_eq(th_wait_exit(pid, 15000), 0);
	}
	/* The log holds each demo fact once, even after two starts. */
	snprintf(out, sizeof out, "%s/products.jsonl", data_dir);
	cr_assert_eq(run_orion("replay --aggregate product", NULL, out), 0);
	FILE *f = fopen(out, "r");
	char line[8192];
	int created = 0;
	while (fgets(line, sizeof line, f) != NULL)
		created += strstr(line, "\"type\":\"ProductCreated\"") != NULL;
	fclose(f);
	cr_assert_eq(created, 36);
	snprintf(out, sizeof out, "%s/users.jsonl", data_dir);
	cr_assert_eq(run_orion("replay --aggregate user", NULL, out), 0);
	f = fopen(out, "r");
	int registered = 0;
	bool customer_normalized = false;
	while (fgets(line, sizeof line, f) != NULL) {
		registered += strstr(line, "\"type\":\"UserRegistered\"") != NULL;
		customer_normalized |= strstr(line, "\"email\":\"shopper@example.com\"") != NULL;
	}
	fclose(f);
	cr_assert_eq(registered, 2, "the admin and the customer, once each");
	cr_assert(customer_normalized);
	/* The credentials file is private. */
	char cred[700];
	struct stat sb;
	snprintf(cred, sizeof cred, "%s/admin.credentials", data_dir);
	cr_assert_eq(stat(cred, &sb), 0);
	cr_assert_eq(sb.st_mode & 0077, 0, "admin.credentials is 0600");
}

/* ---- replay for auditors: filters, an order's story, state as of a sequence -- */

#define STORY_HASH      "0000000000000000000000000000000000000000000000000000000000000000"
#define HOSTILE_TIME_MS 1577836800000LL /* 2020-01-01T00:00:00Z */

/* Runs `orion replay ARGS` and parses every line with jansson into an array. */
static json_t *replay_lines(const char *args)
{
	char out[700], cmd[1024], line[65536];
	snprintf(out, sizeof out, "%s/replay.jsonl", data_dir);
	snprintf(cmd, sizeof cmd, "replay %s", args);
	int rc = run_orion(cmd, NULL, out);
	cr_assert_eq(rc, 0, "replay %s: exit %d; stderr: %s", args, rc, stderr_tail());
	json_t *lines = json_array();
	FILE *f = fopen(out, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof line, f) != NULL) {
		json_error_t err;
		cr_assert_eq(line[strlen(line) - 1], '\n', "one event per line");
		json_t *ev = json_loads(line, 0, &err);
		cr_assert_not_null(ev, "not JSON (%s): %s", err.text, line);
		json_array_append_new(lines, ev);
	}
	fclose(f);
	return lines;
}

static const char *str_of(json_t *object, const char *key)
{
	const char *s = json_string_value(json_object_get(object, key));
	cr_assert_not_null(s, "no string %s", key);
	return s;
}

/* Sends PlaceOrder for order_id with one line of item (quantity 2). */
static void place_story_order(natsConnection *nc, const char *order_id, const char *item)
{
	order_command *c = calloc(1, sizeof *c);
	mp_writer *w = mp_writer_create();
	int64_t now = orn_now_ms();
	env_envelope cmd;
	bus_reply r;
	cr_assert(c && w);
	c->kind = ORDER_PLACE;
	strcpy(c->data.customer_id, "alice");
	strcpy(c->data.customer_email, "alice@example.com");
	strcpy(c->data.request_hash, STORY_HASH);
	strcpy(c->data.token_hash, STORY_HASH);
	strcpy(c->data.currency, "EUR");
	c->data.time_ms = now;
	c->data.ttl_ms = 600000;
	c->data.line_count = 1;
	snprintf(c->data.lines[0].product_id, sizeof c->data.lines[0].product_id, "%s", item);
	strcpy(c->data.lines[0].name, "Story item");
	c->data.lines[0].unit_price_cents = 250;
	c->data.lines[0].quantity = 2;
	cr_assert_eq(order_command_encode(w, c), ORN_OK);
	cr_assert_eq(bus_command_init(&cmd, ORDER_CMD_PLACE, now, "cli-story-place", "req-story", "test",
	                              mp_writer_data(w), mp_writer_size(w)),
	             ORN_OK);
	cr_assert_eq(bus_send_on(nc, ORDER_AGGREGATE, order_id, &cmd, 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "place: %s %s", r.code, r.detail);
	bus_reply_dispose(&r);
	mp_writer_destroy(w);
	free(c);
}

/* Appends an event the domain would never emit straight into the store:
 * quotes, backslashes, control characters and invalid UTF-8 in its strings. */
static void append_hostile_event(const char *url)
{
	es_options o;
	es_store *store = NULL;
	es_options_init(&o);
	na_credentials creds;
	na_conn auth = ops_auth(&creds);
	o.url = url;
	o.create_streams = false;
	o.auth = &auth;
	cr_assert_eq(es_store_open(&o, &store), ORN_OK);
	na_credentials_wipe(&creds);
	mp_writer *w = mp_writer_create(), *payload = mp_writer_create();
	static const char name[] = "a \"quoted\" \\ name\n\r\t\x01\x1f end \xff\xc3( \xe2\x80\xa8";
	static const char key[] = "k\"\x02\xfe";
	mp_write_map(payload, 2);
	mp_write_cstr(payload, "name");
	mp_write_str(payload, name, sizeof name - 1);
	mp_write_str(payload, key, sizeof key - 1);
	mp_write_int(payload, 1);
	env_envelope e;
	memset(&e, 0, sizeof e);
	strcpy(e.type, "ProductCreated");
	e.schema = 1;
	e.time_ms = HOSTILE_TIME_MS;
	strcpy(e.correlation, "corr\"\x03\xff");
	strcpy(e.causation, "cause\\");
	strcpy(e.actor, "evil\n");
	e.payload = mp_writer_data(payload);
	e.payload_len = mp_writer_size(payload);
	env_commit_begin(w, 1);
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	es_append_result r;
	cr_assert_eq(es_append(store, "product", "evil", &(es_position){0, 0}, "cli-hostile",
	                       mp_writer_data(w), mp_writer_size(w), &r),
	             ORN_OK);
	mp_writer_destroy(payload);
	mp_writer_destroy(w);
	es_store_close(store);
}

Test(cli, replay_filters_order_story_as_of_and_hostile_payloads, .init = setup, .fini = teardown,
     .timeout = 180)
{
	char log_path[700], dir_env[600], args[256];
	snprintf(log_path, sizeof log_path, "%s/serve.log", data_dir);
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", data_dir);
	char *argv[] = {(char *)th_orion_bin(), "serve", "--roles", "stock,order,checkout", NULL};
	char *env[] = {dir_env, NULL};
	pid_t pid = th_spawn(argv, env, log_path);
	cr_assert(th_wait_for_file_line(log_path, "Orion is running against NATS", 20000),
	          "serve did not come up");
	char *url = read_url();
	natsConnection *nc = connect_ops(url, false);
	bus_reply r;
	stock_command create = tsc_create(5), other = tsc_create(9);
	cr_assert_eq(tsc_send(nc, "sku-story", &create, "cli-story-1", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED);
	bus_reply_dispose(&r);
	cr_assert_eq(tsc_send(nc, "sku-other", &other, "cli-story-2", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED);
	bus_reply_dispose(&r);
	place_story_order(nc, "order-story", "sku-story");
	/* the saga reserves the stock under the placing request's correlation id
	 * ("req-story"), then marks the order */
	json_t *story = NULL;
	bool reserved = false;
	for (int i = 0; i < 200 && !reserved; i++) {
		json_decref(story);
		story = replay_lines("--order order-story");
		size_t n;
		json_t *ev;
		json_array_foreach(story, n, ev) reserved |=
		        strcmp(str_of(ev, "type"), ORDER_EV_RESERVED) == 0;
		if (!reserved)
			th_sleep_ms(50);
	}
	cr_assert(reserved, "the saga marked the order reserved");
	/* --follow prints the history, then new events as they come, until SIGINT */
	char follow_log[700];
	snprintf(follow_log, sizeof follow_log, "%s/follow.log", data_dir);
	char *follow_argv[] = {(char *)th_orion_bin(),
	                       "replay",
	                       "--follow",
	                       "--aggregate",
	                       "stock",
	                       "--id",
	                       "sku-other",
	                       NULL};
	pid_t follower = th_spawn(follow_argv, env, follow_log);
	cr_assert(th_wait_for_file_line(follow_log, "\"type\":\"StockItemCreated\"", 20000));
	stock_command adjust = tsc_adjust(-1, "audit");
	cr_assert_eq(tsc_send(nc, "sku-other", &adjust, "cli-story-3", 10000, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED);
	bus_reply_dispose(&r);
	cr_assert(th_wait_for_file_line(follow_log, "\"type\":\"StockAdjusted\"", 10000),
	          "the follower printed the new event");
	th_kill(follower, SIGINT);
	cr_assert_eq(th_wait_exit(follower, 10000), 0, "SIGINT ends --follow cleanly");
	append_hostile_event(url);
	natsConnection_Destroy(nc);

	/* --order: the order's own events and the stock reservation (caused by the
	 * saga's command "order-story:reserve:sku-story"), in stream order */
	{
		size_t n;
		json_t *ev;
		long long previous = 0;
		bool placed = false, stock_reserved = false;
		json_array_foreach(story, n, ev)
		{
			long long seq = json_integer_value(json_object_get(ev, "seq"));
			cr_assert_gt(seq, previous, "stream order");
			previous = seq;
			const char *subject = str_of(ev, "subject"), *type = str_of(ev, "type");
			cr_assert(strcmp(subject, "orion.evt.order.order-story") == 0 ||
			                  strncmp(str_of(ev, "causation_id"), "order-story:", 12) == 0,
			          "%s is not part of the story", subject);
			cr_assert_str_eq(str_of(ev, "correlation_id"), "req-story");
			placed |= strcmp(type, ORDER_EV_PLACED) == 0;
			if (strcmp(type, STOCK_EV_RESERVED) == 0) {
				cr_assert_str_eq(subject, "orion.evt.stock.sku-story");
				stock_reserved = true;
			}
			cr_assert_null(strstr(subject, "sku-other"));
		}
		cr_assert(placed && stock_reserved);
	}
	json_decref(story);

	/* --type, --correlation, AND with --aggregate */
	json_t *lines = replay_lines("--type StockItemCreated");
	cr_assert_eq(json_array_size(lines), 2);
	for (size_t i = 0; i < json_array_size(lines); i++)
		cr_assert_str_eq(str_of(json_array_get(lines, i), "type"), STOCK_EV_CREATED);
	json_decref(lines);
	lines = replay_lines("--correlation req-story --aggregate stock");
	cr_assert_eq(json_array_size(lines), 1);
	cr_assert_str_eq(str_of(json_array_get(lines, 0), "type"), STOCK_EV_RESERVED);
	json_decref(lines);
	lines = replay_lines("--correlation req-story --type StockItemCreated");
	cr_assert_eq(json_array_size(lines), 0);
	json_decref(lines);

	/* --since / --until against the envelope's time */
	lines = replay_lines("--until 2020-01-01T00:00:00Z");
	cr_assert_eq(json_array_size(lines), 1, "only the event stamped 2020");
	json_t *hostile = json_array_get(lines, 0);
	cr_assert_str_eq(str_of(hostile, "subject"), "orion.evt.product.evil");
	cr_assert_str_eq(str_of(hostile, "time"), "2020-01-01T00:00:00.000Z");
	/* the hostile strings came back as valid JSON, invalid UTF-8 as U+FFFD */
	cr_assert_str_eq(str_of(json_object_get(hostile, "data"), "name"),
	                 "a \"quoted\" \\ name\n\r\t\x01\x1f end \xef\xbf\xbd\xef\xbf\xbd( \xe2\x80\xa8");
	cr_assert_not_null(json_object_get(json_object_get(hostile, "data"), "k\"\x02\xef\xbf\xbd"));
	cr_assert_str_eq(str_of(hostile, "correlation_id"), "corr\"\x03\xef\xbf\xbd");
	cr_assert_str_eq(str_of(hostile, "actor"), "evil\n");
	json_decref(lines);
	lines = replay_lines("--since 2020-01-01T00:00:00.001Z --aggregate product");
	cr_assert_eq(json_array_size(lines), 0);
	json_decref(lines);
	lines = replay_lines(
	        "--since 2020-01-01T00:00:00Z --until 2020-01-01T00:00:00.000Z --type ProductCreated");
	cr_assert_eq(json_array_size(lines), 1);
	json_decref(lines);
	json_t *all = replay_lines("");
	lines = replay_lines("--since 2021-01-01T00:00:00Z");
	cr_assert_eq(json_array_size(lines), json_array_size(all) - 1);
	json_decref(lines);
	json_decref(all);

	/* --as-of: the stock item before and after the reservation */
	lines = replay_lines("--aggregate stock --id sku-story");
	cr_assert_eq(json_array_size(lines), 2);
	long long created_seq = json_integer_value(json_object_get(json_array_get(lines, 0), "seq"));
	long long head_seq = json_integer_value(json_object_get(json_array_get(lines, 1), "seq"));
	json_decref(lines);
	snprintf(args, sizeof args, "--aggregate stock --id sku-story --as-of %lld", head_seq - 1);
	lines = replay_lines(args);
	cr_assert_eq(json_array_size(lines), 1);
	json_t *then = json_array_get(lines, 0);
	cr_assert_str_eq(str_of(then, "aggregate"), "stock");
	cr_assert_str_eq(str_of(then, "id"), "sku-story");
	cr_assert_eq(json_integer_value(json_object_get(then, "as_of_seq")), head_seq - 1);
	cr_assert_eq(json_integer_value(json_object_get(then, "version")), created_seq);
	json_t *state = json_object_get(then, "state");
	cr_assert_eq(json_integer_value(json_object_get(state, "on_hand")), 5);
	cr_assert_eq(json_integer_value(json_object_get(state, "reserved")), 0);
	json_decref(lines);
	snprintf(args, sizeof args, "--aggregate stock --id sku-story --as-of %lld", head_seq);
	lines = replay_lines(args);
	state = json_object_get(json_array_get(lines, 0), "state");
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(lines, 0), "version")), head_seq);
	cr_assert_eq(json_integer_value(json_object_get(state, "reserved")), 2);
	json_decref(lines);
	lines = replay_lines("--aggregate order --id order-story --as-of 1000000");
	state = json_object_get(json_array_get(lines, 0), "state");
	cr_assert_str_eq(str_of(state, "status"), "awaiting_confirmation");
	json_decref(lines);
	/* --as-of TIME: nothing before the item existed; everything at the head's time */
	lines = replay_lines("--aggregate stock --id sku-story --as-of 2020-01-01T00:00:00Z");
	then = json_array_get(lines, 0);
	cr_assert_eq(json_integer_value(json_object_get(then, "version")), 0);
	cr_assert_str_eq(str_of(then, "as_of_time"), "2020-01-01T00:00:00Z");
	json_decref(lines);
	lines = replay_lines("--aggregate stock --id sku-story");
	char head_time[64];
	snprintf(head_time, sizeof head_time, "%s", str_of(json_array_get(lines, 1), "time"));
	json_decref(lines);
	snprintf(args, sizeof args, "--aggregate stock --id sku-story --as-of %s", head_time);
	lines = replay_lines(args);
	then = json_array_get(lines, 0);
	cr_assert_eq(json_integer_value(json_object_get(then, "version")), head_seq);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(then, "state"), "reserved")), 2);
	json_decref(lines);

	/* bad usage of the new options */
	cr_assert_eq(run_orion("replay --since yesterday", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --until 2026-02-30T00:00:00Z", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --as-of 3", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --aggregate stock --id x --as-of 3 --type T", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --order 'a.b'", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --order o --aggregate stock", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --type", NULL, NULL), 2);
	cr_assert_eq(run_orion("replay --follow --to 5", NULL, NULL), 2);

	free(url);
	th_kill(pid, SIGTERM);
	cr_assert_eq(th_wait_exit(pid, 15000), 0, "serve exits cleanly");
}
