/* test_gw_api.c — gateway/gw_api.c's route table behind its access check,
 * end to end without NATS: a real server on a free loopback port in a thread,
 * a users read model on a temporary LMDB environment with a customer and an
 * admin, an api created from options with a table of test routes (one per
 * access), driven with libcurl. Given a row's access, when a request comes
 * with or without a token, then the handler runs with the caller the access
 * promises, or the request is answered 401, 403 or 503 without it; and the
 * api's lifecycle (no server, a route the router refuses, no secret). */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "gw_api-internal.h"
#include "http_client.h"
#include "log.h"
#include "proj_internal.h"
#include "read_models.h"
#include "user.h"

#define HASH "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"

static char dir[64];
static proj_env *env;
static proj_models models;
static gw_server *server;
static gw_api *api;
static pthread_t loop_thread;
static bool loop_running;
static char base_url[64];
static unsigned char secret[GW_JWT_SECRET_BYTES];
static uint64_t next_seq = 1;

/* What the last handler saw (loop thread; read after the answer arrived). */
static int handled;
static bool had_caller;
static gw_caller seen;

static void record(gw_request *r, gw_api *a, const gw_caller *caller)
{
	(void)a;
	handled++;
	had_caller = caller != NULL;
	if (caller != NULL)
		seen = *caller;
	gw_respond_json(r, 200, json_pack("{s:b}", "ok", 1));
}

static const gw_api_route table[] = {
        {GW_GET, "/open", record, GW_ACCESS_PUBLIC},
        {GW_GET, "/mine", record, GW_ACCESS_ACCOUNT},
        {GW_GET, "/shop", record, GW_ACCESS_ADMIN},
};

/* ---- the users read model ---- */

typedef struct one_event {
	char subject[ES_SUBJECT_MAX];
	env_envelope e;
} one_event;

static orn_rc apply_cb(proj_txn *t, void *closure)
{
	one_event *o = closure;
	const proj_def *def = proj_users_def(models.users);
	return def->apply(def->self, t, next_seq++, o->subject, &o->e);
}

static void registered(const char *user_id, const char *email, user_role role)
{
	char key[USER_KEY_MAX];
	user_event ev = {.kind = USER_REGISTERED};
	one_event o = {.e = {.schema = 1}};
	mp_writer *w = mp_writer_create();
	snprintf(ev.fields.user_id, sizeof ev.fields.user_id, "%s", user_id);
	snprintf(ev.fields.email, sizeof ev.fields.email, "%s", email);
	snprintf(ev.fields.name, sizeof ev.fields.name, "%s", user_id);
	snprintf(ev.fields.password_hash, sizeof ev.fields.password_hash, "%s", HASH);
	ev.fields.role = role;
	cr_assert_eq(user_key_for_email(email, key, sizeof key), ORN_OK);
	snprintf(o.subject, sizeof o.subject, "orion.evt.user.%s", key);
	cr_assert_eq(user_event_encode(w, &ev), ORN_OK);
	strcpy(o.e.type, user_event_type(ev.kind));
	o.e.payload = mp_writer_data(w);
	o.e.payload_len = mp_writer_size(w);
	cr_assert_eq(proj_env_write(env, apply_cb, &o), ORN_OK);
	mp_writer_destroy(w);
}

/* ---- server lifecycle ---- */

static void *run_loop(void *arg)
{
	gw_server_run(arg);
	return NULL;
}

static void start(bool with_secret)
{
	gw_server_options so;
	gw_api_options o;
	gw_server_options_init(&so);
	so.bind_addr = "127.0.0.1:0";
	cr_assert_eq(gw_server_create(&so, &server), ORN_OK);
	gw_api_options_init(&o);
	o.server = server;
	o.routes = table;
	o.route_count = ORN_ARRAY_LEN(table);
	o.models = &models;
	o.secret = with_secret ? secret : NULL;
	o.password_memory_kib = 8192;
	cr_assert_eq(gw_api_create(&o, &api), ORN_OK);
	snprintf(base_url, sizeof base_url, "http://127.0.0.1:%u", gw_server_port(server));
	cr_assert_eq(pthread_create(&loop_thread, NULL, run_loop, server), 0);
	loop_running = true;
}

static void setup(void)
{
	proj_env_options eo;
	log_set_level(LOG_ERROR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	cr_assert_geq(sodium_init(), 0);
	randombytes_buf(secret, sizeof secret);
	snprintf(dir, sizeof dir, "/tmp/orion-gwapi-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	proj_env_options_init(&eo);
	eo.path = dir;
	eo.map_size = 1 << 22;
	cr_assert_eq(proj_env_open(&eo, &env), ORN_OK);
	cr_assert_eq(proj_models_open(env, &models), ORN_OK);
	registered("ann", "ann@example.com", USER_ROLE_CUSTOMER);
	registered("root", "root@example.com", USER_ROLE_ADMIN);
	handled = 0;
}

static void teardown(void)
{
	char cmd[128];
	if (loop_running) {
		gw_server_stop(server);
		pthread_join(loop_thread, NULL);
		loop_running = false;
	}
	gw_api_stop(api);
	gw_server_destroy(server);
	server = NULL;
	gw_api_destroy(api);
	api = NULL;
	proj_models_close(&models);
	proj_env_close(env);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
	curl_global_cleanup();
}

TestSuite(gw_api, .init = setup, .fini = teardown, .timeout = 60);

/* A token for sub with role, signed with the api's secret (version 0, as
 * a registered account's). */
static char *token_for(const char *sub, gw_role role)
{
	char *token = NULL;
	gw_jwt *jwt = gw_jwt_create(secret, "orion", "orion-api", 30, 3600);
	cr_assert_not_null(jwt);
	cr_assert_eq(gw_jwt_sign(jwt, sub, role, 0, (int64_t)time(NULL), 600, &token), ORN_OK);
	gw_jwt_destroy(jwt);
	return token;
}

static long get(const char *path, const char *token)
{
	hc_reply r = hc_call(base_url, "GET", path, token, NULL, 0, NULL, NULL, 5000);
	long status = r.status;
	if (status == 401)
		cr_assert_not_null(hc_header(&r, "WWW-Authenticate"), "401 asks for a bearer token");
	hc_reply_free(&r);
	return status;
}

/* ---- tests ---- */

Test(gw_api, a_public_route_runs_without_a_caller)
{
	start(true);
	cr_assert_eq(get("/open", NULL), 200);
	cr_assert_eq(handled, 1);
	cr_assert_not(had_caller);
}

Test(gw_api, an_account_route_hands_the_handler_the_checked_account)
{
	char *token = token_for("ann", GW_ROLE_CUSTOMER);
	start(true);
	cr_assert_eq(get("/mine", token), 200);
	cr_assert_eq(handled, 1);
	cr_assert(had_caller);
	cr_assert_str_eq(seen.claims.sub, "ann");
	cr_assert_eq(seen.claims.role, GW_ROLE_CUSTOMER);
	cr_assert_str_eq(seen.account.email, "ann@example.com", "the placement's email comes from here");
	cr_assert_str_eq(seen.account.user_id, "ann");
	cr_assert_str_eq(seen.account.password_hash, "", "the hash never reaches a handler");
	free(token);
}

Test(gw_api, without_a_valid_token_the_handler_never_runs)
{
	char *unknown = token_for("nobody", GW_ROLE_CUSTOMER); /* well signed, no such account */
	start(true);
	cr_assert_eq(get("/mine", NULL), 401);
	cr_assert_eq(get("/mine", "not-a-token"), 401);
	cr_assert_eq(get("/mine", unknown), 401);
	cr_assert_eq(get("/shop", NULL), 401);
	cr_assert_eq(handled, 0);
	free(unknown);
}

Test(gw_api, an_admin_route_needs_an_account_that_is_admin_now)
{
	char *customer = token_for("ann", GW_ROLE_CUSTOMER);
	char *claims_admin = token_for("ann", GW_ROLE_ADMIN); /* the token says admin, the account does not */
	char *admin = token_for("root", GW_ROLE_ADMIN);
	start(true);
	cr_assert_eq(get("/shop", customer), 403);
	cr_assert_eq(get("/shop", claims_admin), 403);
	cr_assert_eq(handled, 0);
	cr_assert_eq(get("/shop", admin), 200);
	cr_assert_eq(handled, 1);
	cr_assert_eq(seen.claims.role, GW_ROLE_ADMIN);
	cr_assert_eq(get("/mine", claims_admin), 200, "an admin's token on an account route: a customer");
	cr_assert_eq(seen.claims.role, GW_ROLE_CUSTOMER);
	free(customer);
	free(claims_admin);
	free(admin);
}

Test(gw_api, an_api_without_a_secret_is_listed_but_serves_nothing)
{
	start(false);
	cr_assert_eq(gw_router_count(gw_server_router(server)), ORN_ARRAY_LEN(table));
	cr_assert_eq(get("/open", NULL), 503);
	cr_assert_eq(get("/mine", NULL), 503);
	cr_assert_eq(handled, 0);
}

Test(gw_api, create_refuses_no_server_and_a_route_the_router_refuses)
{
	static const gw_api_route twice[] = {
	        {GW_GET, "/open", record, GW_ACCESS_PUBLIC},
	        {GW_GET, "/open", record, GW_ACCESS_ACCOUNT},
	};
	gw_server_options so;
	gw_api_options o;
	gw_api_options_init(&o);
	cr_assert_eq(gw_api_create(&o, &api), ORN_EINVAL);
	cr_assert_null(api);
	gw_server_options_init(&so);
	so.bind_addr = "127.0.0.1:0";
	cr_assert_eq(gw_server_create(&so, &server), ORN_OK);
	o.server = server;
	o.routes = twice;
	o.route_count = ORN_ARRAY_LEN(twice);
	o.secret = secret;
	o.password_memory_kib = 8192;
	cr_assert_eq(gw_api_create(&o, &api), ORN_EEXISTS);
	cr_assert_null(api, "nothing left but the server");
}

Test(gw_api, access_names)
{
	cr_assert_str_eq(gw_api_access_name(GW_ACCESS_PUBLIC), "public");
	cr_assert_str_eq(gw_api_access_name(GW_ACCESS_ACCOUNT), "account");
	cr_assert_str_eq(gw_api_access_name(GW_ACCESS_ADMIN), "admin");
	cr_assert_str_eq(gw_api_access_name((gw_api_access)9), "?");
}
