/* test_nats_auth_server.c — per-role NATS users against a real nats-server run with
 * the generated authorization block (ADR 014): the roles do their work with
 * their own users, and the server refuses what a role's permissions leave out
 * (the gateway appending events, the mail role sending stock commands, a
 * wrong password); commands are heard and answered by a role's serve user
 * alone, and a server configured before the serve users still serves them. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "nats_auth-internal.h"
#include "evstore-internal.h"
#include "actor.h"
#include "harness.h"
#include "log.h"
#include "nats_auth.h"
#include "roles.h"
#include "stock_client.h"

#define WAIT_MS 15000

static char *dir;
static natsd *server;
static na_credentials creds;
static es_store *ops;
static act_runtime *stock_runtime;
static es_store *stock_store;

/* What the async error handler of a connection saw. */
typedef struct violations {
	pthread_mutex_t lock;
	int count;
	natsStatus last;
} violations;

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	(void)nc;
	(void)sub;
	violations *v = closure;
	pthread_mutex_lock(&v->lock);
	v->count++;
	v->last = err;
	pthread_mutex_unlock(&v->lock);
}

static bool saw_permission_violation(violations *v)
{
	pthread_mutex_lock(&v->lock);
	bool seen = v->count > 0 && v->last == NATS_NOT_PERMITTED;
	pthread_mutex_unlock(&v->lock);
	return seen;
}

static void wait_violation(violations *v)
{
	int64_t deadline = th_now_ms() + WAIT_MS;
	while (!saw_permission_violation(v) && th_now_ms() < deadline)
		th_sleep_ms(20);
	cr_assert(saw_permission_violation(v), "the server reported no permissions violation");
}

static const char *names[40];
static na_role users[40];
static size_t user_count;

static na_conn conn_of(const char *role)
{
	const na_credential *c = na_credentials_find(&creds, role);
	cr_assert_not_null(c, "no user for %s", role);
	na_conn conn = {c->user, c->password, NULL, NULL, NULL};
	return conn;
}

/* An event store connection as role to the server at url, creating the
 * streams or only verifying them. */
static es_store *store_at(const char *url, const char *role, bool create_streams)
{
	es_store *s = NULL;
	na_conn auth = conn_of(role);
	es_options o;
	es_options_init(&o);
	o.url = url;
	o.name = role;
	o.create_streams = create_streams;
	o.auth = &auth;
	cr_assert_eq(es_store_open(&o, &s), ORN_OK, "role %s cannot open the store", role);
	return s;
}

/* An event store connection as role (streams verified, never created). */
static es_store *store_as(const char *role)
{
	return store_at(natsd_url(server), role, false);
}

/* A plain connection as role whose async errors go to v. */
static natsConnection *connect_as(const char *role, violations *v)
{
	natsOptions *opts = NULL;
	natsConnection *nc = NULL;
	na_conn auth = conn_of(role);
	cr_assert_eq(natsOptions_Create(&opts), NATS_OK);
	cr_assert_eq(natsOptions_SetURL(opts, natsd_url(server)), NATS_OK);
	cr_assert_eq(na_conn_apply(&auth, opts), ORN_OK);
	cr_assert_eq(natsOptions_SetErrorHandler(opts, on_async_error, v), NATS_OK);
	cr_assert_eq(natsConnection_Connect(&nc, opts), NATS_OK, "role %s cannot connect", role);
	natsOptions_Destroy(opts);
	return nc;
}

static void setup(void)
{
	char path[512], conf[512];
	dir = th_tempdir("natsauth");
	snprintf(path, sizeof path, "%s/credentials", dir);
	snprintf(conf, sizeof conf, "%s/server.conf", dir);
	cli_role_names(names, 40);
	user_count = cli_nats_users(users, 40);
	cr_assert_eq(na_credentials_ensure(path, names, &creds), ORN_OK);
	cr_assert_eq(na_write_server_config(&creds, users, user_count, conf), ORN_OK);
	natsd_options o;
	natsd_options_init(&o);
	snprintf(path, sizeof path, "%s/nats", dir);
	o.store_dir = path;
	o.config_file = conf;
	o.user = na_credentials_find(&creds, "ops")->user;
	o.password = na_credentials_find(&creds, "ops")->password;
	cr_assert_eq(natsd_start(&o, &server), ORN_OK);
	/* ops creates the streams; the roles only verify them. */
	na_conn auth = conn_of("ops");
	es_options eo;
	es_options_init(&eo);
	eo.url = natsd_url(server);
	eo.auth = &auth;
	cr_assert_eq(es_store_open(&eo, &ops), ORN_OK);
	/* The stock role with its own user. */
	stock_store = store_as("stock");
	act_options ao;
	act_options_init(&ao);
	cr_assert_eq(act_runtime_start(stock_store, &stock_kind, &ao, &stock_runtime), ORN_OK);
}

static void teardown(void)
{
	act_runtime_stop(stock_runtime);
	stock_runtime = NULL;
	es_store_close(stock_store);
	stock_store = NULL;
	es_store_close(ops);
	ops = NULL;
	natsd_stop(server);
	server = NULL;
	na_credentials_wipe(&creds);
	th_rmrf(dir);
	free(dir);
	dir = NULL;
}

TestSuite(nats_auth, .init = setup, .fini = teardown, .timeout = 120);

static uint64_t head_of(const char *aggregate, const char *id)
{
	uint64_t version = 99;
	cr_assert_eq(es_head(ops, aggregate, id, &version), ORN_OK);
	return version;
}

static orn_rc count_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	(void)seq;
	(void)subject;
	(void)e;
	(*(int *)closure)++;
	return ORN_OK;
}

Test(nats_auth, each_role_does_its_work_with_its_own_user)
{
	/* given the stock role running as its user, when the gateway's user sends
	 * a command, then the stock actor appends and answers */
	violations v = {PTHREAD_MUTEX_INITIALIZER, 0, NATS_OK};
	natsConnection *gateway = connect_as("gateway", &v);
	stock_command c = tsc_create(7);
	bus_reply r;
	cr_assert_eq(tsc_send(gateway, "item-a", &c, "auth-create-a", WAIT_MS, &r), ORN_OK);
	cr_assert_eq(r.outcome, BUS_ACCEPTED, "create: %s %s", r.code, r.detail);
	bus_reply_dispose(&r);
	int64_t on_hand = 0, reserved = 0, sold = 0, held = 0;
	cr_assert_eq(tsc_get(gateway, "item-a", &on_hand, &reserved, &sold, &held), ORN_OK);
	cr_assert_eq(on_hand, 7);
	cr_assert(head_of("stock", "item-a") > 0);

	/* the projector reads the stream with an ordered consumer */
	es_store *projector = store_as("projector");
	int events = 0;
	cr_assert_eq(es_read(projector, "orion.evt.>", 1, 0, count_event, &events, NULL), ORN_OK);
	cr_assert_eq(events, 1);

	/* the checkout and mail roles create and bind their durables */
	es_store *checkout = store_as("checkout");
	es_store *mail = store_as("mail");
	es_durable_options saga = {"orion_checkout", "orion.evt.order.>", 30000, 0};
	es_durable_options alerts = {"orion_mail_alerts", "orion.evt.stock.>", 30000, 0};
	natsSubscription *sub = NULL;
	cr_assert_eq(es_durable_ensure(checkout, &saga), ORN_OK);
	cr_assert_eq(es_durable_ensure(mail, &alerts), ORN_OK);
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = ES_STREAM;
	so.Consumer = alerts.durable;
	cr_assert_eq(js_PullSubscribe(&sub, es_store_jetstream(mail), alerts.filter, alerts.durable, NULL,
	                              &so, NULL),
	             NATS_OK);
	natsMsgList list = {0};
	cr_assert_eq(natsSubscription_Fetch(&list, sub, 1, WAIT_MS, NULL), NATS_OK);
	cr_assert_eq(list.Count, 1);
	cr_assert_eq(natsMsg_Ack(list.Msgs[0], NULL), NATS_OK);
	natsMsgList_Destroy(&list);
	natsSubscription_Destroy(sub);
	/* ... but not another role's */
	es_durable_options theirs = {"orion_payment", "orion.evt.order.>", 30000, 0};
	cr_assert_neq(es_durable_ensure(mail, &theirs), ORN_OK);
	es_store_close(mail);
	es_store_close(checkout);
	es_store_close(projector);
	natsConnection_Destroy(gateway);
	cr_assert_eq(saw_permission_violation(&v), false);
}

Test(nats_auth, the_gateway_cannot_append_events)
{
	/* given the gateway's user */
	violations v = {PTHREAD_MUTEX_INITIALIZER, 0, NATS_OK};
	natsConnection *nc = connect_as("gateway", &v);
	/* when it publishes an event straight to the stream's subject */
	cr_assert_eq(natsConnection_PublishString(nc, "orion.evt.stock.x", "forged"), NATS_OK);
	natsConnection_Flush(nc);
	/* then the server reports a permissions violation */
	wait_violation(&v);
	const char *text = NULL;
	natsConnection_GetLastError(nc, &text);
	cr_assert(text != NULL && strstr(text, "Permissions Violation") != NULL, "last error: %s",
	          text ? text : "(none)");
	/* and a JetStream append through the event store fails as well */
	es_store *gateway = store_as("gateway");
	mp_writer *w = mp_writer_create();
	env_envelope e;
	memset(&e, 0, sizeof e);
	strcpy(e.type, "StockItemCreated");
	e.schema = 1;
	strcpy(e.causation, "forged-1");
	strcpy(e.actor, "gateway");
	uint8_t empty_map = 0x80;
	e.payload = &empty_map;
	e.payload_len = 1;
	env_commit_begin(w, 1);
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	cr_assert_neq(es_append(gateway, "stock", "x", &(es_position){0, 0}, "forged-1", mp_writer_data(w),
	                        mp_writer_size(w), NULL),
	              ORN_OK);
	mp_writer_destroy(w);
	es_store_close(gateway);
	/* and the stream holds no such message */
	cr_assert_eq(head_of("stock", "x"), 0);
	natsConnection_Destroy(nc);
}

Test(nats_auth, the_mail_role_cannot_send_stock_commands)
{
	/* given the mail role's user */
	violations v = {PTHREAD_MUTEX_INITIALIZER, 0, NATS_OK};
	natsConnection *nc = connect_as("mail", &v);
	/* when it sends a stock command */
	stock_command c = tsc_create(5);
	bus_reply r;
	orn_rc rc = tsc_send(nc, "item-m", &c, "auth-mail-create", 2000, &r);
	if (rc == ORN_OK)
		bus_reply_dispose(&r);
	/* then it gets no answer, the server reports the violation, and the
	 * stock actor never saw the command */
	cr_assert_neq(rc, ORN_OK);
	wait_violation(&v);
	cr_assert_eq(head_of("stock", "item-m"), 0);
	natsConnection_Destroy(nc);
}

Test(nats_auth, a_role_cannot_listen_to_another_roles_commands)
{
	/* given the gateway's user, when it subscribes to the stock commands,
	 * then the server refuses the subscription */
	violations v = {PTHREAD_MUTEX_INITIALIZER, 0, NATS_OK};
	natsConnection *nc = connect_as("gateway", &v);
	natsSubscription *sub = NULL;
	cr_assert_eq(natsConnection_SubscribeSync(&sub, nc, "orion.cmd.stock.*"), NATS_OK);
	natsConnection_Flush(nc);
	wait_violation(&v);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
}

/* ADR 014: a role's commands arrive on its serve user, the only user that
 * answers requests; the role's own user, which JetStream delivers to, holds
 * no response permission and hears no command. */
Test(nats_auth, commands_are_heard_and_answered_only_by_the_serve_user)
{
	violations v = {PTHREAD_MUTEX_INITIALIZER, 0, NATS_OK}, w = {PTHREAD_MUTEX_INITIALIZER, 0, NATS_OK},
	           x = {PTHREAD_MUTEX_INITIALIZER, 0, NATS_OK};
	act_runtime_stop(stock_runtime); /* it would answer the probe below too */
	stock_runtime = NULL;
	natsConnection *own = connect_as("stock", &v), *serve = NULL, *asker = connect_as("ops", &x);
	natsSubscription *sub = NULL;
	cr_assert_eq(natsConnection_SubscribeSync(&sub, own, "orion.cmd.stock.*"), NATS_OK);
	natsConnection_Flush(own);
	wait_violation(&v);
	natsSubscription_Destroy(sub);
	/* the serve user hears a command and answers it, and publishes nothing else */
	char user[NA_USER_MAX], password[NA_PASSWORD_MAX];
	const na_credential *c = na_credentials_find(&creds, "stock");
	cr_assert_eq(na_serve_user(c->user, c->password, user, password), ORN_OK);
	natsOptions *opts = NULL;
	cr_assert_eq(natsOptions_Create(&opts), NATS_OK);
	cr_assert_eq(natsOptions_SetURL(opts, natsd_url(server)), NATS_OK);
	cr_assert_eq(natsOptions_SetUserInfo(opts, user, password), NATS_OK);
	cr_assert_eq(natsOptions_SetErrorHandler(opts, on_async_error, &w), NATS_OK);
	cr_assert_eq(natsConnection_Connect(&serve, opts), NATS_OK);
	natsOptions_Destroy(opts);
	cr_assert_eq(natsConnection_SubscribeSync(&sub, serve, "orion.cmd.stock.probe"), NATS_OK);
	natsConnection_Flush(serve);
	natsInbox *inbox = NULL;
	natsSubscription *replies = NULL;
	cr_assert_eq(natsInbox_Create(&inbox), NATS_OK);
	cr_assert_eq(natsConnection_SubscribeSync(&replies, asker, inbox), NATS_OK);
	cr_assert_eq(natsConnection_PublishRequestString(asker, "orion.cmd.stock.probe", inbox, "ping"),
	             NATS_OK);
	natsMsg *m = NULL, *answer = NULL;
	cr_assert_eq(natsSubscription_NextMsg(&m, sub, WAIT_MS), NATS_OK);
	cr_assert_eq(natsConnection_PublishString(serve, natsMsg_GetReply(m), "pong"), NATS_OK);
	cr_assert_eq(natsSubscription_NextMsg(&answer, replies, WAIT_MS), NATS_OK, "the answer came through");
	cr_assert_str_eq(natsMsg_GetData(answer), "pong");
	cr_assert_not(saw_permission_violation(&w));
	cr_assert_eq(natsConnection_PublishString(serve, "orion.evt.stock.x", "forged"), NATS_OK);
	natsConnection_Flush(serve);
	wait_violation(&w);
	natsMsg_Destroy(m);
	natsMsg_Destroy(answer);
	natsSubscription_Destroy(sub);
	natsSubscription_Destroy(replies);
	natsInbox_Destroy(inbox);
	natsConnection_Destroy(serve);
	natsConnection_Destroy(own);
	natsConnection_Destroy(asker);
	sodium_memzero(password, sizeof password);
}

/* A server whose authorization was generated before the serve users: a
 * role's commands are served with its own user (logged), not refused. */
Test(nats_auth, a_server_without_serve_users_is_served_with_the_roles_user)
{
	char conf[512], path[512];
	const na_credential *c = na_credentials_find(&creds, "stock");
	snprintf(conf, sizeof conf, "%s/old.conf", dir);
	FILE *f = fopen(conf, "w");
	cr_assert_not_null(f);
	fprintf(f,
	        "authorization { users: [ {user: \"%s\", password: \"%s\", permissions: "
	        "{publish: {allow: [\">\"]}, subscribe: {allow: [\">\"]}, allow_responses: true}} ] }\n",
	        c->user, c->password);
	fclose(f);
	natsd_options o;
	natsd_options_init(&o);
	snprintf(path, sizeof path, "%s/old-js", dir);
	o.store_dir = path;
	o.config_file = conf;
	o.user = c->user;
	o.password = c->password;
	natsd *old = NULL;
	cr_assert_eq(natsd_start(&o, &old), ORN_OK);
	es_store *s = store_at(natsd_url(old), "stock", true); /* this user may create them here */
	natsConnection *nc = NULL;
	cr_assert_eq(es_store_connect_serving(s, "orion-stock-commands", &nc), ORN_OK);
	cr_assert_not_null(nc);
	natsConnection_Destroy(nc);
	es_store_close(s);
	natsd_stop(old);
}

Test(nats_auth, a_wrong_password_is_refused)
{
	/* given the stock user with a wrong password, when it connects, then
	 * the server refuses it */
	na_conn auth = {na_credentials_find(&creds, "stock")->user, "not-the-password", NULL, NULL, NULL};
	es_store *s = NULL;
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	o.create_streams = false;
	o.auth = &auth;
	cr_assert_eq(es_store_open(&o, &s), ORN_EINVAL);
	cr_assert_null(s);
	/* and no user at all is refused too */
	o.auth = NULL;
	cr_assert_neq(es_store_open(&o, &s), ORN_OK);
}

/* ---- TLS to NATS ---------------------------------------------------------- */

static char *tls_dir;
static pid_t tls_server;

static void run(const char *cmd)
{
	int status = system(cmd);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "failed: %s", cmd);
}

/* A CA, a server certificate for 127.0.0.1 and a client certificate, and a
 * nats-server that requires TLS with a client certificate and the users. */
static void tls_setup(void)
{
	char cmd[4096], path[512], conf[512], store[512], port_text[16];
	tls_dir = th_tempdir("natsauth-tls");
	snprintf(cmd, sizeof cmd,
	         "cd '%s' && printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext && "
	         "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 "
	         "-subj /CN=orion-test-ca 2>/dev/null && "
	         "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 "
	         "2>/dev/null && "
	         "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem "
	         "-days 1 -extfile san.ext 2>/dev/null && "
	         "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=orion "
	         "2>/dev/null && "
	         "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem "
	         "-days 1 2>/dev/null",
	         tls_dir);
	run(cmd);
	snprintf(path, sizeof path, "%s/credentials", tls_dir);
	cli_role_names(names, 40);
	user_count = cli_nats_users(users, 40);
	cr_assert_eq(na_credentials_ensure(path, names, &creds), ORN_OK);
	snprintf(conf, sizeof conf, "%s/auth.conf", tls_dir);
	cr_assert_eq(na_write_server_config(&creds, users, user_count, conf), ORN_OK);
	snprintf(conf, sizeof conf, "%s/server.conf", tls_dir);
	FILE *f = fopen(conf, "w");
	cr_assert_not_null(f);
	fprintf(f,
	        "include ./auth.conf\n"
	        "tls {\n  cert_file: \"%s/server.pem\"\n  key_file: \"%s/server.key\"\n"
	        "  ca_file: \"%s/ca.pem\"\n  verify: true\n}\n",
	        tls_dir, tls_dir, tls_dir);
	fclose(f);
	int port = natsd_free_port();
	cr_assert_gt(port, 0);
	snprintf(port_text, sizeof port_text, "%d", port);
	snprintf(store, sizeof store, "%s/js", tls_dir);
	snprintf(path, sizeof path, "%s/nats.log", tls_dir);
	char *argv[] = {"nats-server", "-js", "-a", "127.0.0.1", "-p", port_text,
	                "-sd",         store, "-c", conf,        NULL};
	tls_server = th_spawn(argv, NULL, path);
	static char url[64];
	snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
	setenv("ORION_TEST_TLS_URL", url, 1);
}

static void tls_teardown(void)
{
	th_kill(tls_server, SIGKILL);
	tls_server = 0;
	na_credentials_wipe(&creds);
	th_rmrf(tls_dir);
	free(tls_dir);
	tls_dir = NULL;
}

/* Opens a store as ops with the given TLS files (relative to tls_dir; NULL: none). */
static orn_rc open_tls(const char *ca, const char *cert, const char *key, es_store **out)
{
	char ca_path[600], cert_path[600], key_path[600];
	snprintf(ca_path, sizeof ca_path, "%s/%s", tls_dir, ca ? ca : "");
	snprintf(cert_path, sizeof cert_path, "%s/%s", tls_dir, cert ? cert : "");
	snprintf(key_path, sizeof key_path, "%s/%s", tls_dir, key ? key : "");
	na_conn auth = {na_credentials_find(&creds, "ops")->user,
	                na_credentials_find(&creds, "ops")->password, ca ? ca_path : NULL,
	                cert ? cert_path : NULL, key ? key_path : NULL};
	es_options o;
	es_options_init(&o);
	o.url = getenv("ORION_TEST_TLS_URL");
	o.auth = &auth;
	*out = NULL;
	return es_store_open(&o, out);
}

Test(nats_tls, connects_only_with_tls_and_a_client_certificate, .init = tls_setup, .fini = tls_teardown,
     .timeout = 120)
{
	/* given a server requiring TLS and client certificates: the store
	 * connects with the CA and the client's certificate (once the server is up) */
	es_store *s = NULL;
	int64_t deadline = th_now_ms() + WAIT_MS;
	orn_rc rc;
	while ((rc = open_tls("ca.pem", "client.pem", "client.key", &s)) != ORN_OK && th_now_ms() < deadline)
		th_sleep_ms(100);
	cr_assert_eq(rc, ORN_OK, "no TLS connection");
	/* and a role's second connection (es_store_nats_options) connects the same way */
	natsOptions *opts = NULL;
	natsConnection *nc = NULL;
	cr_assert_eq(es_store_nats_options(s, "second", &opts), ORN_OK);
	cr_assert_eq(natsConnection_Connect(&nc, opts), NATS_OK);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(opts);
	es_store_close(s);
	/* without a client certificate, or without TLS, it is refused */
	cr_assert_neq(open_tls("ca.pem", NULL, NULL, &s), ORN_OK);
	cr_assert_null(s);
	cr_assert_neq(open_tls(NULL, NULL, NULL, &s), ORN_OK);
	cr_assert_null(s);
}
