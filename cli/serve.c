/* serve.c — `orion serve`: runs any subset of the roles in one process.
 *
 * Roles: the actor kinds (stock; product, which also serves sku claims;
 * user), the projector (LMDB read models under <data dir>/lmdb) and the
 * gateway (HTTP on ORION_HTTP_ADDR), the checkout saga, the timers that fire
 * order deadlines (ADR 010; they bring the projector, whose orders model
 * they read). With no --roles every role runs: the
 * all-in-one default. Roles talk only through NATS, so any subset can run in
 * separate processes against the same NATS. With NATS credentials (ADR 014:
 * always for the embedded server) each role connects as its own user. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "actor.h"
#include "admin.h"
#include "common.h"
#include "fsdir.h"
#include "gw_api.h"
#include "gw_http.h"
#include "gw_metrics.h"
#include "gw_ops.h"
#include "keystore.h"
#include "cart.h"
#include "catalog.h"
#include "inventory.h"
#include "log.h"
#include "mail.h"
#include "mail_log.h"
#include "metrics.h"
#include "nats_auth.h"
#include "order.h"
#include "order_token.h"
#include "payment.h"
#include "payment_service.h"
#include "product.h"
#include "proj_env.h"
#include "psp_sandbox.h"
#include "saga.h"
#include "timers.h"
#include "proj_gen.h"
#include "projector.h"
#include "read_models.h"
#include "sku.h"
#include "stock.h"
#include "user.h"
#include "users.h"

#define MAX_KINDS     8
#define READY_LAG_MAX 1000 /* events the read models may trail by and still be ready */

/* The actor kinds, by role. */
static const struct {
	const char *role;
	const act_kind *kind;
} kinds[] = {
        {"stock", &stock_kind},     {"product", &product_kind}, {"product", &sku_kind},
        {"user", &user_kind},       {"cart", &cart_kind},       {"order", &order_kind},
        {"payment", &payment_kind}, {"mail", &mail_log_kind}, /* RequestResend on the delivery logs (ADR 023)
                                                               */
};

const struct act_kind *cli_serve_kind(size_t i)
{
	return i < ORN_ARRAY_LEN(kinds) ? kinds[i].kind : NULL;
}

static const char *const roles_known[] = {"stock",   "product", "user",      "cart",    "order", "checkout",
                                          "payment", "psp",     "projector", "gateway", "mail",  "timers"};

/* Everything serve starts, stopped in reverse order. */
typedef struct serve_state {
	const orn_config *cfg;
	natsd *server;
	es_store *store;
	act_runtime *runtimes[MAX_KINDS];
	proj_env *env;
	proj_models models;
	proj_runner *runner;
	gw_metrics *metrics; /* the process-wide registry, once the gateway runs */
	gw_server *gateway;
	gw_server *metrics_server; /* ORION_METRICS_ADDR: GET /metrics alone */
	pthread_t metrics_thread;
	bool metrics_running;
	gw_ops *ops;
	gw_api api; /* the API handlers' context, borrowed pointers to the above */
	gw_jwt *jwt;
	gw_password_pool *passwords;
	pthread_t gateway_thread;
	bool gateway_running;
	saga *checkout;
	timers *timers;
	mail_service *mail;
	es_store *checkout_store, *mail_store, *payment_store, *timers_store; /* their own NATS connections */
	na_credentials creds;                 /* the per-role NATS users (ADR 014), when auth */
	bool auth;                            /* every role connects as its own user */
	es_store *role_stores[NA_ROLE_COUNT]; /* with auth: the connection of each role */
	psp_sandbox *psp;
	payment_service *payment;
	ks_store *keys; /* the customers' data keys (ADR 027), for the gateway, mail and the start-up admin */
	pthread_t monitor_thread;
	bool monitor_running;
	atomic_bool stopping;
	/* What /readyz reports (readiness_refresh): the monitor thread keeps it
	 * current, so the handler never waits on NATS. */
	atomic_bool started; /* every role started, the start-up admin and demo written */
	atomic_bool nats_connected;
	atomic_bool caught_up;       /* the read models reached start_head */
	atomic_bool consumers_bound; /* the side-effect roles pull from their consumers */
	atomic_llong projection_lag; /* -1: unknown */
	uint64_t start_head;         /* the stream's last sequence once started (monitor thread only) */
	bool start_head_known;
	/* The gateway's address as bound (ORION_HTTP_ADDR may ask for port 0),
	 * and the links' base: ORION_PUBLIC_URL, else http://<that address>. */
	char http_addr[ORN_CONFIG_STR_MAX + 8];
	char public_url[ORN_CONFIG_STR_MAX + 16];
} serve_state;

static bool list_has(const char *list, const char *item)
{
	if (list == NULL || strcmp(list, "all") == 0)
		return true;
	size_t n = strlen(item);
	for (const char *p = list; *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && strncmp(p, item, n) == 0)
			return true;
		p += len + (comma ? 1 : 0);
	}
	return false;
}

/* Every listed role must be one we know. */
static bool roles_valid(const char *roles)
{
	if (roles == NULL || strcmp(roles, "all") == 0)
		return true;
	for (const char *p = roles; *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		bool known = false;
		for (size_t i = 0; i < ORN_ARRAY_LEN(roles_known); i++)
			known |= strlen(roles_known[i]) == len && strncmp(p, roles_known[i], len) == 0;
		if (!known) {
			fprintf(stderr,
			        "orion: unknown role '%.*s' (roles: stock, product, user, cart, order, "
			        "checkout, timers, payment, psp, mail, projector, gateway)\n",
			        (int)len, p);
			return false;
		}
		p += len + (comma ? 1 : 0);
	}
	return true;
}

static orn_rc open_role_store(serve_state *st, na_role role, const char *name, es_store **out);

/* The store of a role's work: with per-role users a connection as the role's
 * user (opened once), else the process's shared connection. */
static orn_rc role_store(serve_state *st, na_role role, es_store **out)
{
	char name[64];
	orn_rc rc = ORN_OK;
	if (!st->auth) {
		*out = st->store;
		return ORN_OK;
	}
	snprintf(name, sizeof name, "orion-%s", na_role_name(role));
	if (st->role_stores[role] == NULL &&
	    (rc = open_role_store(st, role, name, &st->role_stores[role])) != ORN_OK)
		return rc;
	*out = st->role_stores[role];
	return ORN_OK;
}

static orn_rc start_actors(serve_state *st, const char *roles)
{
	act_options ao;
	act_options_init(&ao);
	ao.shards = st->cfg->shards;
	ao.confirm_by_read = st->cfg->confirm_by_read;
	ao.cache_capacity = st->cfg->cache_capacity;
	ao.snapshot_every = st->cfg->snapshot_every;
	for (size_t i = 0; i < ORN_ARRAY_LEN(kinds); i++) {
		es_store *store = NULL;
		na_role role = NA_OPS;
		if (!list_has(roles, kinds[i].role))
			continue;
		orn_rc rc = na_role_parse(kinds[i].role, &role) ? role_store(st, role, &store) : ORN_EINVAL;
		if (rc == ORN_OK)
			rc = act_runtime_start(store, kinds[i].kind, &ao, &st->runtimes[i]);
		if (rc != ORN_OK) {
			log_error("cannot start role", "role", kinds[i].role, "error", orn_strerror(rc));
			return rc;
		}
	}
	return ORN_OK;
}

static orn_rc start_projector(serve_state *st)
{
	char link[ORN_CONFIG_STR_MAX + 16];
	orn_rc rc;
	/* <data dir>/lmdb: a link to the generation in use, which `orion rebuild`
	 * replaces while we serve (proj_gen.h). */
	if ((rc = orn_make_dirs(st->cfg->data_dir)) != ORN_OK ||
	    (rc = proj_gen_prepare(st->cfg->data_dir, link, sizeof link)) != ORN_OK)
		return rc;
	proj_env_options eo;
	proj_env_options_init(&eo);
	eo.path = link;
	if ((rc = proj_env_open(&eo, &st->env)) != ORN_OK) {
		log_error("cannot open the read models", "path", link, "error", orn_strerror(rc));
		return rc;
	}
	if ((rc = proj_models_open(st->env, &st->models)) != ORN_OK)
		return rc;
	proj_runner_options ro;
	proj_runner_options_init(&ro);
	es_store *store = NULL;
	if ((rc = role_store(st, NA_PROJECTOR, &store)) != ORN_OK)
		return rc;
	return proj_runner_start(store, st->env, st->models.defs, PROJ_MODEL_COUNT, &ro, &st->runner);
}

/* The checkout saga (role "checkout": no state but its durable consumer),
 * the timers (role "timers": deadlines read from the orders read model) and
 * the mail actor (role "mail": sent markers in <data dir>/mail-state),
 * consuming the order events with durable JetStream consumers. */
/* A NATS connection of its own for a role with heavy traffic, so its
 * messages are read by their own thread rather than queueing behind every
 * other role's on the shared connection. */
static orn_rc open_role_store(serve_state *st, na_role role, const char *name, es_store **out)
{
	na_conn auth;
	if (st->auth && !st->creds.role[role].present) {
		log_error("the NATS credentials have no user for this role", "role", na_role_name(role));
		return ORN_EINVAL;
	}
	cli_nats_conn(st->cfg, st->auth ? &st->creds : NULL, role, &auth);
	es_options o;
	es_options_init(&o);
	o.url = es_store_url(st->store);
	o.name = name;
	o.replicas = st->cfg->stream_replicas;
	o.create_streams = false;
	o.auth = &auth;
	orn_rc rc = es_store_open(&o, out);
	if (rc != ORN_OK)
		log_error("cannot connect a role to NATS", "role", name, "error", orn_strerror(rc));
	return rc;
}

static orn_rc start_side_effects(serve_state *st, const char *roles)
{
	char state_dir[ORN_CONFIG_STR_MAX + 32], maildir[ORN_CONFIG_STR_MAX + 32];
	orn_rc rc = ORN_OK;
	if (list_has(roles, "checkout")) {
		saga_options so;
		saga_options_init(&so);
		so.command_timeout_ms = st->cfg->command_timeout_ms;
		so.sweep_after_ms = st->cfg->sweep_after_ms > 0 ? st->cfg->sweep_after_ms : -1;
		if ((rc = open_role_store(st, NA_CHECKOUT, "orion-checkout", &st->checkout_store)) != ORN_OK)
			return rc;
		if ((rc = saga_start(st->checkout_store, &so, &st->checkout)) != ORN_OK) {
			log_error("cannot start the checkout saga", "error", orn_strerror(rc));
			return rc;
		}
	}
	if (list_has(roles, "timers")) {
		timers_options to;
		timers_options_init(&to);
		to.command_timeout_ms = st->cfg->command_timeout_ms;
		if ((rc = open_role_store(st, NA_TIMERS, "orion-timers", &st->timers_store)) != ORN_OK)
			return rc;
		if ((rc = timers_start(st->timers_store, st->models.orders, &to, &st->timers)) != ORN_OK) {
			log_error("cannot start the timers", "error", orn_strerror(rc));
			return rc;
		}
	}
	if (list_has(roles, "psp") && st->cfg->psp_url[0] == '\0') {
		/* The bundled provider sandbox (ADR 009), its charges kept in the data dir. */
		psp_sandbox_options po;
		psp_sandbox_options_init(&po);
		snprintf(state_dir, sizeof state_dir, "%s/psp-sandbox.jsonl", st->cfg->data_dir);
		po.listen = "127.0.0.1:0";
		po.api_key = st->cfg->psp_key;
		po.state_file = state_dir;
		if ((rc = psp_sandbox_start(&po, &st->psp)) != ORN_OK) {
			log_error("cannot start the payment provider sandbox", "error", orn_strerror(rc));
			return rc;
		}
	}
	if (list_has(roles, "payment")) {
		char psp_url[ORN_CONFIG_STR_MAX];
		if (st->cfg->psp_url[0] != '\0')
			snprintf(psp_url, sizeof psp_url, "%s", st->cfg->psp_url);
		else if (st->psp != NULL)
			snprintf(psp_url, sizeof psp_url, "http://127.0.0.1:%u",
			         (unsigned)psp_sandbox_port(st->psp));
		else {
			log_error(
			        "the payment role needs ORION_PSP_URL, or the psp role in the same process");
			return ORN_EINVAL;
		}
		payment_options pay;
		payment_options_init(&pay);
		snprintf(state_dir, sizeof state_dir, "%s/payment-state", st->cfg->data_dir);
		pay.psp_url = psp_url;
		pay.psp_key = st->cfg->psp_key;
		pay.state_dir = state_dir;
		pay.command_timeout_ms = st->cfg->command_timeout_ms;
		pay.sweep_after_ms = st->cfg->sweep_after_ms > 0 ? st->cfg->sweep_after_ms : -1;
		/* The gateway waits payment_timeout_ms: answer well before it gives up. */
		pay.request_budget_ms =
		        st->cfg->payment_timeout_ms > 6000 ? st->cfg->payment_timeout_ms - 5000 : 1000;
		if ((rc = open_role_store(st, NA_PAYMENT, "orion-payment", &st->payment_store)) != ORN_OK)
			return rc;
		if ((rc = payment_start(st->payment_store, &pay, &st->payment)) != ORN_OK) {
			log_error("cannot start the payment service", "error", orn_strerror(rc));
			return rc;
		}
		log_info("payment service started", "provider", psp_url);
	}
	if (list_has(roles, "mail")) {
		unsigned char secret[GW_JWT_SECRET_BYTES];
		mail_options mo;
		mail_options_init(&mo);
		/* The confirmation links need the token key (ADR 008): the JWT secret
		 * the gateway uses, from the environment or the data dir. */
		if ((rc = gw_jwt_secret_load(getenv("ORION_JWT_SECRET"), st->cfg->data_dir, secret)) ==
		    ORN_OK)
			rc = order_token_key_derive(secret, sizeof secret, mo.token_key);
		sodium_memzero(secret, sizeof secret);
		if (rc != ORN_OK) {
			log_error("cannot load the token key", "error", orn_strerror(rc));
			return rc;
		}
		snprintf(state_dir, sizeof state_dir, "%s/mail-state", st->cfg->data_dir);
		snprintf(maildir, sizeof maildir, "%s/mail", st->cfg->data_dir);
		mo.keys = st->keys;
		mo.smtp_url = st->cfg->smtp_url;
		mo.maildir = maildir;
		mo.from = st->cfg->mail_from;
		mo.public_url = st->public_url;
		mo.state_dir = state_dir;
		mo.max_attempts = st->cfg->mail_max_attempts;
		mo.sweep_after_ms = st->cfg->sweep_after_ms > 0 ? st->cfg->sweep_after_ms : -1;
		rc = open_role_store(st, NA_MAIL, "orion-mail", &st->mail_store);
		if (rc == ORN_OK)
			rc = mail_start(st->mail_store, &mo, &st->mail);
		sodium_memzero(mo.token_key, sizeof mo.token_key);
		if (rc != ORN_OK) {
			log_error("cannot start the mail actor", "error", orn_strerror(rc));
			return rc;
		}
	}
	return ORN_OK;
}

/* GET /readyz: every role of this process can serve (readiness_refresh).
 * Reads values the monitor thread refreshes, so it never waits on NATS. */
static void handle_readyz(gw_request *r, void *arg)
{
	serve_state *st = arg;
	bool started = atomic_load(&st->started), nats = atomic_load(&st->nats_connected),
	     caught_up = atomic_load(&st->caught_up), consumers = atomic_load(&st->consumers_bound);
	long long lag = atomic_load(&st->projection_lag);
	bool ready = started && nats && caught_up && consumers && lag >= 0 && lag <= READY_LAG_MAX;
	json_t *body =
	        json_pack("{s:b, s:b, s:b, s:b, s:b, s:I}", "ready", ready, "started", started, "nats", nats,
	                  "caught_up", caught_up, "consumers", consumers, "projection_lag", (json_int_t)lag);
	gw_respond_json(r, ready ? 200 : 503, body);
}

/* Ready means that every role started here can serve a request now:
 *  - NATS is connected;
 *  - the read models have applied the stream up to its last sequence as it
 *    was once every role had started, so the start-up admin (written before
 *    that) can log in and the demo catalog is listed; afterwards they trail
 *    by at most READY_LAG_MAX events;
 *  - the checkout saga and the payment service have bound a worker to their
 *    durable consumers (mail binds its workers before mail_start returns,
 *    the actors subscribe before act_runtime_start returns).
 * Called by the monitor thread only, which starts once every role has. */
static void readiness_refresh(serve_state *st)
{
	natsConnection *nc = es_store_connection(st->store);
	bool connected = natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED;
	atomic_store(&st->nats_connected, connected);
	if (st->runner != NULL) {
		uint64_t head = 0;
		/* not asked while NATS is gone: the stop would wait on the answer */
		orn_rc rc = connected ? proj_runner_head(st->runner, &head) : ORN_EUNAVAILABLE;
		uint64_t position = proj_runner_position(st->runner);
		if (rc == ORN_OK && !st->start_head_known) {
			st->start_head = head;
			st->start_head_known = true;
		}
		atomic_store(&st->projection_lag, rc != ORN_OK      ? -1
		                                  : head > position ? (long long)(head - position)
		                                                    : 0);
		atomic_store(&st->caught_up, st->start_head_known && position >= st->start_head);
	} else {
		atomic_store(&st->projection_lag, 0);
		atomic_store(&st->caught_up, true);
	}
	atomic_store(&st->consumers_bound,
	             (st->checkout == NULL || saga_consumer_bound(st->checkout)) &&
	                     (st->payment == NULL || payment_consumer_bound(st->payment)));
}

static void *monitor_main(void *arg)
{
	serve_state *st = arg;
	while (!atomic_load(&st->stopping)) {
		readiness_refresh(st);
		orn_metrics *metrics = orn_metrics_global();
		orn_metrics_gauge_set(metrics, "orion_nats_connected", "1 while connected to NATS.", NULL,
		                      atomic_load(&st->nats_connected) ? 1 : 0);
		if (st->runner != NULL) {
			orn_metrics_gauge_set(metrics, "orion_projection_lag_events",
			                      "Events in the stream not yet applied to the read "
			                      "models (-1: unknown).",
			                      NULL, (double)atomic_load(&st->projection_lag));
			orn_metrics_gauge_set(metrics, "orion_projection_position",
			                      "Last stream sequence applied to every read model.", NULL,
			                      (double)proj_runner_position(st->runner));
		}
		/* Quick polls until ready, so /readyz turns 200 soon after it can. */
		bool ready = atomic_load(&st->caught_up) && atomic_load(&st->consumers_bound);
		for (int i = 0; i < (ready ? 10 : 1) && !atomic_load(&st->stopping); i++)
			usleep(50 * 1000);
	}
	return NULL;
}

static void *gateway_main(void *arg)
{
	gw_server_run(arg);
	return NULL;
}

/* GET /metrics on ORION_METRICS_ADDR: the process-wide registry. */
static void handle_metrics(gw_request *r, void *arg)
{
	size_t len = 0;
	char *text = orn_metrics_render(orn_metrics_global(), &len);
	if (text == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	gw_respond(r, 200, ORN_METRICS_CONTENT_TYPE, text, len);
	free(text);
}

/* With ORION_METRICS_ADDR set, a listener of its own (its own loop thread)
 * serves GET /metrics, so roles running without the gateway can be scraped. */
static orn_rc start_metrics_listener(serve_state *st)
{
	gw_server_options o;
	orn_rc rc;
	if (st->cfg->metrics_addr[0] == '\0')
		return ORN_OK;
	gw_server_options_init(&o);
	o.bind_addr = st->cfg->metrics_addr;
	if ((rc = gw_server_create(&o, &st->metrics_server)) != ORN_OK ||
	    (rc = gw_server_route(st->metrics_server, GW_GET, "/metrics", handle_metrics, NULL)) != ORN_OK) {
		log_error("cannot serve metrics", "addr", st->cfg->metrics_addr, "error", orn_strerror(rc));
		return rc;
	}
	if (pthread_create(&st->metrics_thread, NULL, gateway_main, st->metrics_server) != 0)
		return ORN_ENOMEM;
	st->metrics_running = true;
	char port[8]; /* the one asked for, or the kernel's pick for port 0 */
	snprintf(port, sizeof port, "%u", (unsigned)gw_server_port(st->metrics_server));
	log_info("metrics listening", "addr", st->cfg->metrics_addr, "port", port);
	return ORN_OK;
}

/* The API context: command client, read-your-writes, tokens, passwords and
 * login limits over the read models of this process. */
static orn_rc start_api(serve_state *st)
{
	unsigned char secret[GW_JWT_SECRET_BYTES];
	unsigned char random_password[24];
	char password_text[64];
	gw_api *api = &st->api;
	struct event_base *base = gw_server_base(st->gateway);
	orn_rc rc = gw_jwt_secret_load(getenv("ORION_JWT_SECRET"), st->cfg->data_dir, secret);
	if (rc != ORN_OK) {
		log_error("cannot load the token signing key", "error", orn_strerror(rc));
		return rc;
	}
	st->jwt = gw_jwt_create(secret, "orion", "orion-api", 30, st->cfg->token_ttl_s);
	api->token_ttl_s = st->cfg->token_ttl_s;
	/* The orders' confirmation tokens: a key of their own from the same secret. */
	rc = order_token_key_derive(secret, sizeof secret, api->order_token_key);
	sodium_memzero(secret, sizeof secret);
	if (rc != ORN_OK)
		return rc;
	gw_password_options po;
	gw_password_options_init(&po);
	po.memlimit = (size_t)st->cfg->password_memory_kib * 1024;
	st->passwords = gw_password_pool_create(base, &po);
	/* ADR 006, "Login limits": failed logins per client address (and
	 * registrations), per (account, address), per account; the pairs that
	 * logged in (a set: one token, hardly ever refilled) */
	const orn_config *c = st->cfg;
	api->login_by_address =
	        gw_ratelimit_create((double)c->auth_address_per_minute / 60.0, c->auth_address_burst, 100000);
	api->login_by_pair = gw_ratelimit_create((double)c->auth_account_address_per_hour / 3600.0,
	                                         c->auth_account_address_burst, 100000);
	api->login_by_account = gw_ratelimit_create((double)c->auth_account_per_hour / 3600.0,
	                                            c->auth_account_per_hour, 100000);
	api->login_known = gw_ratelimit_create(1e-9, 1, 100000);
	if (st->jwt == NULL || st->passwords == NULL || api->login_by_account == NULL ||
	    api->login_by_address == NULL || api->login_by_pair == NULL || api->login_known == NULL)
		return ORN_ENOMEM;
	/* Unknown emails are verified against this hash, so a login takes as long
	 * whether the account exists or not. */
	randombytes_buf(random_password, sizeof random_password);
	sodium_bin2hex(password_text, sizeof password_text, random_password, sizeof random_password);
	if ((rc = gw_password_hash(&po, password_text, api->dummy_hash)) != ORN_OK)
		return rc;
	es_store *gateway_store = NULL;
	if ((rc = role_store(st, NA_GATEWAY, &gateway_store)) != ORN_OK)
		return rc;
	if ((rc = gw_bus_create(es_store_connection(gateway_store), base, &api->bus)) != ORN_OK ||
	    (rc = gw_consistency_create(base, st->runner, 1, &api->consistency)) != ORN_OK)
		return rc;
	api->catalog = st->models.catalog;
	api->inventory = st->models.inventory;
	api->users = st->models.users;
	api->keys = st->keys;
	api->orders = st->models.orders;
	api->carts = st->models.carts;
	api->mail = st->models.mail;
	api->reservation_ttl_ms = (int64_t)st->cfg->reservation_ttl_s * 1000;
	api->low_stock_threshold = st->cfg->low_stock_threshold;
	api->store = st->store;
	api->payment_timeout_ms = (unsigned)st->cfg->payment_timeout_ms;
	api->jwt = st->jwt;
	api->passwords = st->passwords;
	api->metrics = st->metrics;
	return ORN_OK;
}

/* The server with every route registered; used by serve and by `routes`. */
static orn_rc create_gateway(serve_state *st, const char *bind_addr)
{
	char openapi[ORN_CONFIG_STR_MAX + 64];
	orn_rc rc;
	gw_server_options o;
	gw_server_options_init(&o);
	o.bind_addr = bind_addr;
	/* ORION_CORS_ORIGINS: comma-separated exact origins allowed to call from a browser. */
	char origins_text[ORN_CONFIG_STR_MAX];
	const char *origins[16];
	size_t origin_count = 0;
	snprintf(origins_text, sizeof origins_text, "%s", st->cfg->cors_origins);
	for (char *save = NULL, *o_ = strtok_r(origins_text, ",", &save); o_ != NULL && origin_count < 16;
	     o_ = strtok_r(NULL, ",", &save))
		origins[origin_count++] = o_;
	o.cors_origins = origins;
	o.cors_origin_count = origin_count;
	/* issue 14: slow clients and connection caps (README "Limits") */
	o.header_timeout_ms = st->cfg->http_header_timeout_ms;
	o.body_timeout_ms = st->cfg->http_body_timeout_ms;
	o.max_connections = st->cfg->http_max_connections;
	o.max_connections_per_address = st->cfg->http_max_connections_per_address;
	o.max_streams_per_owner = st->cfg->max_streams_per_customer;
	if ((st->metrics = orn_metrics_global()) == NULL)
		return ORN_ENOMEM;
	o.metrics = st->metrics;
	if ((rc = gw_server_create(&o, &st->gateway)) != ORN_OK) {
		log_error("cannot listen", "addr", bind_addr, "error", orn_strerror(rc));
		return rc;
	}
	/* The document ships next to the sources; an installed copy is found by
	 * ORION_OPENAPI_PATH. */
	const char *path = getenv("ORION_OPENAPI_PATH");
	snprintf(openapi, sizeof openapi, "%s",
	         path != NULL ? path : ORION_SOURCE_DIR "/gateway/openapi.yaml");
	/* /metrics is not on the public listener (it shows sales volume): only
	 * on ORION_METRICS_ADDR (issue 14, finding 7) */
	if ((rc = gw_ops_register(st->gateway, NULL, openapi, &st->ops)) != ORN_OK) {
		log_error("cannot serve the OpenAPI document", "path", openapi, "error", orn_strerror(rc));
		return rc;
	}
	if ((rc = gw_server_route(st->gateway, GW_GET, "/readyz", handle_readyz, st)) != ORN_OK)
		return rc;
	st->api.server = st->gateway;
	return gw_api_register(&st->api);
}

/* The address the gateway is bound to: ORION_HTTP_ADDR's host with the port
 * the listener got (the one asked for, or the kernel's pick for port 0). The
 * default public URL follows it, so links work with port 0 too. */
static void learn_bound_address(serve_state *st)
{
	const char *addr = st->cfg->http_addr, *colon = strrchr(addr, ':');
	char defaulted[ORN_CONFIG_STR_MAX + 8];
	int host_len = colon != NULL ? (int)(colon - addr) : (int)strlen(addr);

	snprintf(st->http_addr, sizeof st->http_addr, "%.*s:%u", host_len, addr,
	         (unsigned)gw_server_port(st->gateway));
	snprintf(defaulted, sizeof defaulted, "http://%s", addr);
	if (strcmp(st->cfg->public_url, defaulted) == 0)
		snprintf(st->public_url, sizeof st->public_url, "http://%s", st->http_addr);
}

static orn_rc start_gateway(serve_state *st)
{
	orn_rc rc = create_gateway(st, st->cfg->http_addr);
	if (rc != ORN_OK)
		return rc;
	learn_bound_address(st);
	if ((rc = start_api(st)) != ORN_OK) {
		log_error("cannot start the API", "error", orn_strerror(rc));
		return rc;
	}
	if (pthread_create(&st->gateway_thread, NULL, gateway_main, st->gateway) != 0)
		return ORN_ENOMEM;
	st->gateway_running = true;
	return ORN_OK;
}

/* `orion routes`: every route the gateway serves, "METHOD /pattern" per line
 * (the OpenAPI test compares them with the document). */
int cli_routes(int argc, char **argv, const orn_config *cfg)
{
	serve_state st;
	int status = 1;
	memset(&st, 0, sizeof st);
	st.cfg = cfg;
	if (argc == 1 && cli_is_help(argv[0])) {
		printf("usage: orion routes\n\n"
		       "Lists every route the gateway serves, one \"METHOD /pattern\" per line (the\n"
		       "contract tests compare them with gateway/openapi.yaml). Binds nothing but a\n"
		       "loopback port for a moment; needs no NATS.\n"
		       "  -h, --help  this text\n");
		return 0;
	}
	if (argc != 0) {
		fprintf(stderr, "usage: orion routes\n");
		return 2;
	}
	if (create_gateway(&st, "127.0.0.1:0") == ORN_OK) {
		const gw_router *router = gw_server_router(st.gateway);
		for (size_t i = 0; i < gw_router_count(router); i++) {
			gw_method method;
			const char *pattern = NULL;
			if (gw_router_route_at(router, i, &method, &pattern))
				printf("%s %s\n", gw_method_name(method), pattern);
		}
		status = 0;
	}
	gw_server_destroy(st.gateway);
	gw_api_dispose(&st.api);
	gw_ops_destroy(st.ops);
	gw_metrics_destroy(st.metrics);
	return status;
}

/* Stops of roles that do not depend on one another run side by side, so a
 * stop takes as long as the slowest role's, not the sum (each waits up to
 * one fetch, 0.5 s, for a worker to look at its stop flag). */
typedef struct stop_job {
	void (*stop)(serve_state *st, size_t index);
	size_t index;
	serve_state *st;
	pthread_t thread;
	bool started;
} stop_job;

static void *stop_job_main(void *arg)
{
	stop_job *job = arg;
	job->stop(job->st, job->index);
	return NULL;
}

/* Runs every job at once and waits for all (a job whose thread cannot be
 * created runs here). */
static void stop_together(stop_job *jobs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		jobs[i].started = pthread_create(&jobs[i].thread, NULL, stop_job_main, &jobs[i]) == 0;
		if (!jobs[i].started)
			jobs[i].stop(jobs[i].st, jobs[i].index);
	}
	for (size_t i = 0; i < count; i++)
		if (jobs[i].started)
			pthread_join(jobs[i].thread, NULL);
}

/* The side-effect roles, each with the connection of its own. */
static void stop_payment(serve_state *st, size_t index)
{
	(void)index;
	payment_stop(st->payment);
	psp_sandbox_stop(st->psp); /* after the payment role, its only caller here */
	es_store_close(st->payment_store);
}

static void stop_mail(serve_state *st, size_t index)
{
	(void)index;
	mail_stop(st->mail);
	es_store_close(st->mail_store);
}

static void stop_timers(serve_state *st, size_t index)
{
	(void)index;
	timers_stop(st->timers);
	es_store_close(st->timers_store);
}

static void stop_checkout(serve_state *st, size_t index)
{
	(void)index;
	saga_stop(st->checkout);
	es_store_close(st->checkout_store);
}

static void stop_projector(serve_state *st, size_t index)
{
	(void)index;
	proj_runner_stop(st->runner);
}

static void stop_actor_kind(serve_state *st, size_t index)
{
	act_runtime_stop(st->runtimes[index]);
}

/* In order: the gateway (no new request), then side by side the roles that
 * send commands (checkout, payment, mail, timers), then side by side the
 * projector and the actors that answer commands, then the connections, and
 * the embedded nats-server last, so no role ever waits on a NATS that is
 * gone. */
static void stop_all(serve_state *st)
{
	atomic_store(&st->stopping, true);
	/* NATS gone already (a crash, an OOM kill): every request in flight
	 * fails now instead of waiting out its timeout. */
	es_store *const side_effects[] = {st->checkout_store, st->mail_store, st->payment_store,
	                                  st->timers_store};
	for (size_t i = 0; i < ORN_ARRAY_LEN(side_effects); i++)
		es_store_abandon(side_effects[i]);
	for (size_t i = 0; i < NA_ROLE_COUNT; i++)
		es_store_abandon(st->role_stores[i]);
	es_store_abandon(st->store);
	if (st->gateway_running) {
		gw_server_stop(st->gateway);
		pthread_join(st->gateway_thread, NULL);
	}
	if (st->monitor_running)
		pthread_join(st->monitor_thread, NULL);
	if (st->metrics_running) {
		gw_server_stop(st->metrics_server);
		pthread_join(st->metrics_thread, NULL);
	}
	gw_server_destroy(st->metrics_server);
	/* With the loop stopped: pending commands, waits and hashes are answered
	 * (their deferred requests dropped with the server next). */
	gw_bus_destroy(st->api.bus);
	gw_consistency_destroy(st->api.consistency);
	gw_password_pool_destroy(st->passwords);
	gw_server_destroy(st->gateway);
	gw_api_dispose(&st->api);
	gw_ratelimit_destroy(st->api.login_by_account);
	gw_ratelimit_destroy(st->api.login_by_address);
	gw_ratelimit_destroy(st->api.login_by_pair);
	gw_ratelimit_destroy(st->api.login_known);
	gw_jwt_destroy(st->jwt);
	gw_ops_destroy(st->ops);
	gw_metrics_destroy(st->metrics);

	stop_job senders[] = {{stop_payment, 0, st, 0, false},
	                      {stop_mail, 0, st, 0, false},
	                      {stop_timers, 0, st, 0, false},
	                      {stop_checkout, 0, st, 0, false}};
	stop_together(senders, ORN_ARRAY_LEN(senders));

	stop_job answerers[MAX_KINDS + 1] = {{stop_projector, 0, st, 0, false}};
	for (size_t i = 0; i < MAX_KINDS; i++)
		answerers[i + 1] = (stop_job){stop_actor_kind, i, st, 0, false};
	stop_together(answerers, ORN_ARRAY_LEN(answerers));
	proj_models_close(&st->models);
	proj_env_close(st->env);

	for (size_t i = 0; i < NA_ROLE_COUNT; i++)
		es_store_close(st->role_stores[i]);
	ks_close(st->keys);
	es_store_close(st->store);
	na_credentials_wipe(&st->creds);
	if (st->server != NULL) {
		char path[ORN_CONFIG_STR_MAX + 32];
		cli_url_file_path(st->cfg, path, sizeof path);
		unlink(path);
	}
	natsd_stop(st->server);
}

/* The demo's admin credentials: ORION_ADMIN_EMAIL/ORION_ADMIN_PASSWORD, or an
 * account generated once and kept in <data dir>/admin.credentials (0600). */
static orn_rc demo_credentials(const orn_config *cfg, char *email, size_t email_cap, char *password,
                               size_t password_cap)
{
	char path[ORN_CONFIG_STR_MAX + 32];
	snprintf(path, sizeof path, "%s/admin.credentials", cfg->data_dir);
	FILE *f = fopen(path, "r");
	if (f != NULL) {
		bool ok = fscanf(f, "%127s %127s", email, password) == 2;
		fclose(f);
		return ok ? ORN_OK : ORN_EIO;
	}
	unsigned char random[12];
	randombytes_buf(random, sizeof random);
	snprintf(email, email_cap, "admin@orion.localhost");
	sodium_bin2base64(password, password_cap, random, sizeof random,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return ORN_EIO;
	f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return ORN_EIO;
	}
	fprintf(f, "%s %s\n", email, password);
	fclose(f);
	return ORN_OK;
}

/* ORION_ADMIN_EMAIL/ORION_ADMIN_PASSWORD (or, with --demo, the demo's
 * generated account) become an admin at start-up if absent; --demo also
 * seeds the demo catalog. Both are idempotent. */
static orn_rc bootstrap(serve_state *st, bool demo)
{
	char email[128] = "", password[128] = "";
	const char *env_email = getenv("ORION_ADMIN_EMAIL"), *env_password = getenv("ORION_ADMIN_PASSWORD");
	natsConnection *nc = es_store_connection(st->store);
	orn_rc rc = ORN_OK;
	bool created = false;
	if (env_email != NULL && env_password != NULL && env_email[0] != '\0') {
		snprintf(email, sizeof email, "%s", env_email);
		snprintf(password, sizeof password, "%s", env_password);
	} else if (demo && (rc = demo_credentials(st->cfg, email, sizeof email, password, sizeof password)) !=
	                           ORN_OK) {
		log_error("cannot read or write the demo admin credentials", "dir", st->cfg->data_dir);
		return rc;
	}
	if (email[0] != '\0') {
		if (st->keys == NULL || (rc = cli_create_user(nc, st->keys, email, password, "Administrator",
		                                              USER_ROLE_ADMIN, &created)) != ORN_OK) {
			rc = rc != ORN_OK ? rc : ORN_EUNAVAILABLE;
			log_error("cannot create the admin account", "error", orn_strerror(rc));
			goto done;
		}
		log_info(created ? "admin account created" : "admin account present", "email", email);
		if (demo)
			printf("Admin account: %s / %s\n", email, password);
	}
	if (demo) {
		unsigned count = 0;
		if ((rc = cli_seed_demo(nc, &count)) != ORN_OK) {
			log_error("cannot seed the demo catalog", "error", orn_strerror(rc));
			goto done;
		}
		printf("Demo catalog: %u products in 6 categories.\n", count);
	}
done:
	sodium_memzero(password, sizeof password);
	return rc;
}

/* Who the process's own connection is (streams, bootstrap, health): the ops
 * user when the credentials have it (it creates the streams), else the user
 * of one of the roles run here. */
static na_role main_role(const serve_state *st, const char *roles)
{
	static const na_role order[] = {NA_GATEWAY, NA_PROJECTOR, NA_STOCK,   NA_PRODUCT, NA_USER,  NA_CART,
	                                NA_ORDER,   NA_CHECKOUT,  NA_PAYMENT, NA_MAIL,    NA_TIMERS};
	if (!st->auth || st->creds.role[NA_OPS].present)
		return NA_OPS;
	for (size_t i = 0; i < ORN_ARRAY_LEN(order); i++)
		if (st->creds.role[order[i]].present && list_has(roles, na_role_name(order[i])))
			return order[i];
	return NA_OPS;
}

static void announce(const serve_state *st, const char *roles)
{
	const char *url = st->server ? natsd_url(st->server) : st->cfg->nats_url;
	log_info("orion ready", "roles", roles ? roles : "all", "nats", url, "http",
	         st->gateway != NULL ? st->http_addr : "none");
	if (st->gateway != NULL)
		printf("Orion is running: http://%s (NATS at %s). Ctrl-C stops; a second Ctrl-C, at once.\n",
		       st->http_addr, url);
	else
		printf("Orion is running against NATS at %s. Ctrl-C stops; a second Ctrl-C, at once.\n", url);
	fflush(stdout);
}

/* ---- stopping ---- */

/* The stop signals (SIGINT, SIGTERM) are taken by a thread of their own from
 * the start. The first asks the main thread to stop: start-up ends early,
 * then every role stops in order and the embedded nats-server last (stop_all;
 * the server runs in a session of its own, proc.h, so a terminal's Ctrl-C
 * reaches only us). A second signal ends the process at once with 128 + its
 * number (130 for SIGINT, 143 for SIGTERM), and so does a stop still running
 * STOP_DEADLINE_MS after the first signal, with 1. An abrupt end is a crash
 * as far as the data goes, which loses nothing acknowledged: JetStream wrote
 * every event it acknowledged, the embedded server dies with us (PDEATHSIG),
 * the read models and markers are LMDB transactions (docs/adr/016). */
#define STOP_DEADLINE_MS 10000

typedef struct stop_watch {
	sigset_t signals;
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t asked;
	int signal;                /* the first stop signal; 0 until one came */
	atomic_bool owns_url_file; /* the embedded server's <data dir>/nats.url is ours */
	char url_file[ORN_CONFIG_STR_MAX + 32];
} stop_watch;

static const char *signal_name(int sig)
{
	return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "?";
}

/* Ends the process now. Only what is safe beside the other threads: a log
 * line, unlink(2) of the address file nobody will answer at, _exit(2). */
static void end_abruptly(stop_watch *w, int status)
{
	if (atomic_load(&w->owns_url_file))
		unlink(w->url_file);
	fflush(stdout);
	_exit(status);
}

/* Waits for one of the signals, until deadline_ns (orn_monotonic_ns) unless
 * it is 0 (no end). Returns the signal, 0 at the deadline. */
static int next_signal(const sigset_t *signals, int64_t deadline_ns)
{
	for (;;) {
		int sig = 0;
		if (deadline_ns == 0) {
			if (sigwait(signals, &sig) == 0)
				return sig;
			continue;
		}
		int64_t left = deadline_ns - orn_monotonic_ns();
		if (left <= 0)
			return 0;
		struct timespec wait = {.tv_sec = left / 1000000000, .tv_nsec = left % 1000000000};
		if ((sig = sigtimedwait(signals, NULL, &wait)) > 0)
			return sig;
		if (errno == EAGAIN)
			return 0;
	}
}

static void *stop_watch_main(void *arg)
{
	stop_watch *w = arg;
	/* Cancelled (stop_watch_end) only while it waits for a signal. */
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	int sig = next_signal(&w->signals, 0);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	log_info("stopping", "signal", signal_name(sig), "note", "a second signal ends the process at once");
	pthread_mutex_lock(&w->lock);
	w->signal = sig;
	pthread_cond_broadcast(&w->asked);
	pthread_mutex_unlock(&w->lock);

	int64_t deadline = orn_monotonic_ns() + (int64_t)STOP_DEADLINE_MS * 1000000;
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	sig = next_signal(&w->signals, deadline);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	if (sig != 0) {
		log_warn("stopped at once by a second signal", "signal", signal_name(sig));
		end_abruptly(w, 128 + sig);
	}
	char deadline_ms[16];
	snprintf(deadline_ms, sizeof deadline_ms, "%d", STOP_DEADLINE_MS);
	log_error("the stop did not finish in time; exiting now", "deadline_ms", deadline_ms);
	end_abruptly(w, 1);
	return NULL;
}

/* Blocks the stop signals in this thread and every thread it creates from
 * now on, and starts the watching thread. Call before any other thread. */
static orn_rc stop_watch_start(stop_watch *w, const orn_config *cfg)
{
	memset(w, 0, sizeof *w);
	sigemptyset(&w->signals);
	sigaddset(&w->signals, SIGINT);
	sigaddset(&w->signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &w->signals, NULL);
	cli_url_file_path(cfg, w->url_file, sizeof w->url_file);
	atomic_init(&w->owns_url_file, false);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->asked, NULL);
	if (pthread_create(&w->thread, NULL, stop_watch_main, w) != 0)
		return ORN_ENOMEM;
	w->running = true;
	return ORN_OK;
}

/* True once a stop signal came (start-up then ends early). */
static bool stop_asked(stop_watch *w)
{
	pthread_mutex_lock(&w->lock);
	bool asked = w->signal != 0;
	pthread_mutex_unlock(&w->lock);
	return asked;
}

/* Waits for the first stop signal. */
static void stop_watch_wait(stop_watch *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->signal == 0)
		pthread_cond_wait(&w->asked, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

/* Ends the watching thread once everything stopped (a signal from now on
 * stays pending, blocked, until the process exits). */
static void stop_watch_end(stop_watch *w)
{
	if (w->running) {
		pthread_cancel(w->thread);
		pthread_join(w->thread, NULL);
	}
	pthread_cond_destroy(&w->asked);
	pthread_mutex_destroy(&w->lock);
}

int cli_serve(int argc, char **argv, const orn_config *cfg)
{
	const char *roles = NULL;
	bool demo = false;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--roles") == 0 && i + 1 < argc) {
			roles = argv[++i];
		} else if (strcmp(argv[i], "--demo") == 0) {
			demo = true;
		} else if (cli_is_help(argv[i])) {
			printf("usage: orion serve [--roles ROLE,...] [--demo]\n"
			       "  roles: stock, product, user, cart, order, payment (actors; payment also\n"
			       "         charges cards); checkout (the saga); timers (fire order deadlines;\n"
			       "         brings the projector); psp (the payment provider sandbox, when\n"
			       "         ORION_PSP_URL is unset); mail; projector; gateway (brings the\n"
			       "         projector). Default: all.\n"
			       "  --demo: seed the demo catalog and an admin account\n"
			       "  -h, --help: this text\n\n"
			       "Stopping: Ctrl-C (SIGINT) or SIGTERM stops every role, then the embedded\n"
			       "  nats-server, and exits 0. A second signal exits at once (130 after "
			       "SIGINT,\n"
			       "  143 after SIGTERM); a stop still running 10 s after the first exits 1.\n"
			       "  Nothing acknowledged is lost either way (docs/adr/016).\n"
			       "Ready: GET /readyz answers 200 once every role started, NATS is connected,\n"
			       "  the read models caught up with the stream as it was at start-up (so the\n"
			       "  start-up admin can log in) and the durable consumers are bound.\n\n");
			orn_config_print_help(stdout);
			return 0;
		} else {
			fprintf(stderr, "orion serve: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!roles_valid(roles))
		return 2;
	stop_watch watch;
	if (stop_watch_start(&watch, cfg) != ORN_OK)
		return 1;

	serve_state st;
	memset(&st, 0, sizeof st);
	st.cfg = cfg;
	atomic_store(&st.projection_lag, -1);
	snprintf(st.http_addr, sizeof st.http_addr, "%s", cfg->http_addr);
	snprintf(st.public_url, sizeof st.public_url, "%s", cfg->public_url);
	int status = 1;
	if (cli_nats_credentials(cfg, cfg->nats_url[0] == '\0', &st.creds, &st.auth) != ORN_OK ||
	    cli_connect_store_as(cfg, "orion-serve", true, st.auth ? &st.creds : NULL, main_role(&st, roles),
	                         &st.server, &st.store) != ORN_OK)
		goto done;
	atomic_store(&watch.owns_url_file, st.server != NULL);
	/* The keystore (ADR 027): whoever seals or opens personal data — the
	 * gateway, mail, the start-up admin — opens it once; a wrong master key
	 * stops the start here. */
	if ((list_has(roles, "gateway") || list_has(roles, "mail") || demo ||
	     (getenv("ORION_ADMIN_EMAIL") != NULL && getenv("ORION_ADMIN_EMAIL")[0] != '\0')) &&
	    cli_open_keys(cfg, st.store, true, &st.keys) != ORN_OK)
		goto stopped_or_failed;
	/* Each step may take a while (NATS, the demo's commands): a stop signal
	 * in the middle ends start-up after the step in hand. */
	if (stop_asked(&watch) || start_actors(&st, roles) != ORN_OK)
		goto stopped_or_failed;
	/* The gateway answers queries from local read models and the timers read
	 * deadlines from the orders model: both bring the projector. */
	if (stop_asked(&watch) ||
	    ((list_has(roles, "projector") || list_has(roles, "gateway") || list_has(roles, "timers")) &&
	     start_projector(&st) != ORN_OK))
		goto stopped_or_failed;
	if (stop_asked(&watch) || (list_has(roles, "gateway") && start_gateway(&st) != ORN_OK))
		goto stopped_or_failed;
	if (stop_asked(&watch) || start_side_effects(&st, roles) != ORN_OK)
		goto stopped_or_failed;
	if (stop_asked(&watch) || start_metrics_listener(&st) != ORN_OK)
		goto stopped_or_failed;
	if (stop_asked(&watch) || bootstrap(&st, demo) != ORN_OK)
		goto stopped_or_failed;
	atomic_store(&st.started, true);
	if (pthread_create(&st.monitor_thread, NULL, monitor_main, &st) != 0)
		goto done;
	st.monitor_running = true;
	announce(&st, roles);
	stop_watch_wait(&watch);
stopped_or_failed:
	/* Asked to stop, start-up complete or not: a clean stop. */
	if (stop_asked(&watch))
		status = 0;
done:
	stop_all(&st);
	stop_watch_end(&watch);
	if (status == 0)
		log_info("stopped");
	return status;
}
