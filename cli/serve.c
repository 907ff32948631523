/* serve.c — `orion serve`: runs any subset of the roles in one process.
 *
 * The roles are the shop's list (cli/roles.h); each describes itself
 * (engine/role.h): its NATS user's grants, its settings, its stage, what it
 * needs beside it, and how it starts, stops and says it is ready. serve
 * loads every chosen role's settings first (a bad value ends it with 2),
 * starts the roles stage by stage (those that answer commands, the readers,
 * the services the others call, the front, then the senders; the projector
 * and the gateway it starts itself), gives them what they ask for (the token
 * key, the public URL, the orders read model, what another role offers) and
 * stops them in the opposite order. With no --roles every role runs: the
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

#include "admin.h"
#include "common.h"
#include "fsdir.h"
#include "gw_api.h"
#include "gw_jwt.h"
#include "gw_routes.h"
#include "gw_http.h"
#include "gw_metrics.h"
#include "gw_ops.h"
#include "gw_static.h"
#include "keystore.h"
#include "kit.h"
#include "log.h"
#include "mail.h"
#include "metrics.h"
#include "nats_auth.h"
#include "order_token.h"
#include "pay.h"
#include "proj_env.h"
#include "proj_gen.h"
#include "projector.h"
#include "psp_sandbox.h"
#include "read_models.h"
#include "roles.h"
#include "timers.h"
#include "users.h"

#define ROLES_MAX     24
#define READY_LAG_MAX 1000 /* events the read models may trail by and still be ready */

/* A role chosen for this process. */
typedef struct serve_role {
	const role_descriptor *d;
	void *settings;  /* loaded from the environment (d->settings_size bytes) */
	void *handle;    /* d->start's */
	es_store *store; /* its connection: its own, or the process's (shared) */
	bool own_store;
	bool started;
} serve_role;

/* Everything serve starts, stopped in reverse order. */
typedef struct serve_state {
	const cli_config *cfg;
	natsd *server;
	es_store *store;
	serve_role roles[ROLES_MAX]; /* in the order they start */
	size_t role_count;
	proj_env *env;
	proj_models models;
	proj_runner *runner;
	gw_metrics *metrics; /* the process-wide registry, once the gateway runs */
	gw_server *gateway;
	gw_server *metrics_server; /* ORION_METRICS_ADDR: GET /metrics alone */
	pthread_t metrics_thread;
	bool metrics_running;
	gw_ops *ops;
	gw_static *web;              /* the web pages, or NULL */
	gw_api *api;                 /* the API's routes and their context */
	gw_bus *bus;                 /* the API's command client */
	gw_consistency *consistency; /* the API's read-your-writes */
	pthread_t gateway_thread;
	bool gateway_running;
	na_credentials creds; /* the per-role NATS users (ADR 014), when auth */
	bool auth;            /* every role connects as its own user */
	kit_hub *hub;         /* what the side-effect roles of this process share (kit.h) */
	ks_store *keys;       /* the customers' data keys (ADR 027): the gateway, mail, the start-up admin */
	/* The orders' token key the mail role asks for (derived once, wiped at stop). */
	uint8_t token_key[ORDER_TOKEN_KEY_BYTES];
	bool token_key_ready;
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

/* ---- the roles chosen ---- */

static serve_role *role_of(serve_state *st, const role_descriptor *d)
{
	for (size_t i = 0; i < st->role_count; i++)
		if (st->roles[i].d == d)
			return &st->roles[i];
	return NULL;
}

/* Marks name (and what it needs, transitively) chosen in want. */
static bool want_role(const char *name, size_t len, bool *want)
{
	size_t count = 0;
	const role_descriptor *const *all = cli_roles(&count);
	for (size_t i = 0; i < count; i++) {
		if (strlen(all[i]->name) != len || strncmp(all[i]->name, name, len) != 0)
			continue;
		if (!want[i]) {
			want[i] = true;
			for (size_t n = 0; all[i]->needs != NULL && all[i]->needs[n] != NULL; n++)
				want_role(all[i]->needs[n], strlen(all[i]->needs[n]), want);
		}
		return true;
	}
	return false;
}

static void print_role_names(FILE *out)
{
	size_t count = 0;
	const role_descriptor *const *all = cli_roles(&count);
	for (size_t i = 0; i < count; i++)
		fprintf(out, "%s%s", i > 0 ? ", " : "", all[i]->name);
}

/* The roles of --roles (NULL or "all": every one) with what they need, in
 * the order they start: by stage, then in the shop's order. false (after a
 * message) for an unknown role. */
static bool choose_roles(serve_state *st, const char *list)
{
	bool want[ROLES_MAX] = {false};
	size_t count = 0;
	const role_descriptor *const *all = cli_roles(&count);
	if (list == NULL || strcmp(list, "all") == 0) {
		for (size_t i = 0; i < count; i++)
			want[i] = true;
	} else {
		for (const char *p = list; *p != '\0';) {
			const char *comma = strchr(p, ',');
			size_t len = comma ? (size_t)(comma - p) : strlen(p);
			if (!want_role(p, len, want)) {
				fprintf(stderr, "orion: unknown role '%.*s' (roles: ", (int)len, p);
				print_role_names(stderr);
				fprintf(stderr, ")\n");
				return false;
			}
			p += len + (comma ? 1 : 0);
		}
	}
	for (int stage = ROLE_ANSWERS; stage <= ROLE_SENDS; stage++)
		for (size_t i = 0; i < count; i++)
			if (want[i] && (int)all[i]->stage == stage)
				st->roles[st->role_count++].d = all[i];
	return true;
}

/* Every chosen role's settings from the environment; false (after a
 * message) for a bad value. */
static bool load_settings(serve_state *st)
{
	for (size_t i = 0; i < st->role_count; i++) {
		serve_role *r = &st->roles[i];
		const char *bad = NULL;
		if (r->d->settings == NULL)
			continue;
		if ((r->settings = calloc(1, r->d->settings_size)) == NULL)
			return false;
		if (orn_settings_load(r->d->settings, r->settings, &bad) != ORN_OK) {
			fprintf(stderr, "orion: invalid value in %s\n", bad);
			return false;
		}
	}
	return true;
}

/* The connection of a role's work: with per-role users one as the role's
 * user; a role that sends commands and side effects gets one of its own in
 * any case, so its messages are read by their own thread rather than queueing
 * behind every other role's; else the process's shared connection. */
static orn_rc connect_role(serve_state *st, serve_role *r)
{
	char name[NA_ROLE_MAX + 8];
	na_conn auth;
	if (r->d->no_nats || r->store != NULL)
		return ORN_OK;
	if (!st->auth && r->d->stage != ROLE_SENDS) {
		r->store = st->store;
		return ORN_OK;
	}
	if (st->auth && na_credentials_find(&st->creds, r->d->name) == NULL) {
		log_error("the NATS credentials have no user for this role", "role", r->d->name);
		return ORN_EINVAL;
	}
	snprintf(name, sizeof name, "orion-%s", r->d->name);
	cli_nats_conn(st->cfg, st->auth ? &st->creds : NULL, r->d->name, &auth);
	es_options o;
	es_options_init(&o);
	o.url = es_store_url(st->store);
	o.name = name;
	o.replicas = st->cfg->stream_replicas;
	o.create_streams = false;
	o.auth = &auth;
	orn_rc rc = es_store_open(&o, &r->store);
	if (rc != ORN_OK)
		log_error("cannot connect a role to NATS", "role", name, "error", orn_strerror(rc));
	r->own_store = rc == ORN_OK;
	return rc;
}

/* The orders' token key (ADR 008): derived from the JWT secret the gateway
 * signs with, from the environment or the data dir. */
static const void *token_key(serve_state *st)
{
	unsigned char secret[GW_JWT_SECRET_BYTES];
	if (!st->token_key_ready) {
		orn_rc rc = gw_jwt_secret_load(getenv("ORION_JWT_SECRET"), st->cfg->data_dir, secret);
		if (rc == ORN_OK)
			rc = order_token_key_derive(secret, sizeof secret, st->token_key);
		sodium_memzero(secret, sizeof secret);
		if (rc != ORN_OK) {
			log_error("cannot load the token key", "error", orn_strerror(rc));
			return NULL;
		}
		st->token_key_ready = true;
	}
	return st->token_key;
}

/* Whether ORION_PUBLIC_URL was set, rather than defaulted to
 * http://ORION_HTTP_ADDR (cli/settings.c). */
static bool public_url_set(const serve_state *st)
{
	char defaulted[ORN_CONFIG_STR_MAX + 8];
	snprintf(defaulted, sizeof defaulted, "http://%s", st->cfg->http_addr);
	return strcmp(st->cfg->public_url, defaulted) != 0;
}

/* The base of the 3-D Secure return page the payment role gives the
 * provider: ORION_PUBLIC_URL when it is set, else this process's gateway's
 * when it runs one, else none. Never a payment host's own listening address
 * (the default public URL): every payment host must send the provider the
 * same parameters under one idempotency key, and a host taking over a charge
 * from another was refused with 422 when they differed. */
static const char *payment_return_base(serve_state *st)
{
	if (public_url_set(st))
		return st->cfg->public_url;
	return role_of(st, &cli_gateway_role) != NULL ? st->public_url : NULL;
}

/* What a role asks the process for (role_context.offer): what the process
 * holds, else what a started role offers. */
static const void *offer(void *host, const char *what)
{
	serve_state *st = host;
	if (strcmp(what, PAY_NEEDS_PUBLIC_URL) == 0)
		return payment_return_base(st);
	if (strcmp(what, MAIL_NEEDS_TOKEN_KEY) == 0)
		return token_key(st);
	if (strcmp(what, MAIL_NEEDS_PUBLIC_URL) == 0)
		return st->public_url;
	if (strcmp(what, PSP_NEEDS_CORS_ORIGINS) == 0)
		return st->cfg->cors_origins;
	if (strcmp(what, MAIL_NEEDS_KEYS) == 0)
		return st->keys;
	if (strcmp(what, TIMERS_NEEDS_ORDERS) == 0)
		return st->models.orders;
	for (size_t i = 0; i < st->role_count; i++) {
		const serve_role *r = &st->roles[i];
		const void *offered =
		        r->started && r->d->offers != NULL ? r->d->offers(r->handle, what) : NULL;
		if (offered != NULL)
			return offered;
	}
	return NULL;
}

static orn_rc start_role(serve_state *st, serve_role *r)
{
	orn_rc rc = connect_role(st, r);
	if (rc != ORN_OK || r->d->start == NULL)
		return rc;
	role_context ctx = {.role = r->d,
	                    .store = r->store,
	                    .hub = st->hub,
	                    .data_dir = st->cfg->data_dir,
	                    .settings = r->settings,
	                    .offer = offer,
	                    .host = st};
	if ((rc = r->d->start(&ctx, &r->handle)) != ORN_OK) {
		log_error("cannot start role", "role", r->d->name, "error", orn_strerror(rc));
		return rc;
	}
	r->started = true;
	return ORN_OK;
}

/* The connection of the chosen role d (opened on first use). */
static orn_rc role_store(serve_state *st, const role_descriptor *d, es_store **out)
{
	serve_role *r = role_of(st, d);
	orn_rc rc = r != NULL ? connect_role(st, r) : ORN_EINVAL;
	*out = rc == ORN_OK ? r->store : NULL;
	return rc;
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
	if ((rc = role_store(st, &cli_projector_role, &store)) != ORN_OK)
		return rc;
	return proj_runner_start(store, st->env, st->models.defs, PROJ_MODEL_COUNT, &ro, &st->runner);
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
 *  - every role that says when it is ready is (the side-effect roles: a
 *    worker pulls from each durable consumer; the actors subscribe before
 *    their start returns).
 * Called by the monitor thread only, which starts once every role has. */
static void readiness_refresh(serve_state *st)
{
	bool connected = es_store_connected(st->store);
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
	bool bound = true;
	for (size_t i = 0; i < st->role_count; i++) {
		const serve_role *r = &st->roles[i];
		bound &= !r->started || r->d->ready == NULL || r->d->ready(r->handle);
	}
	atomic_store(&st->consumers_bound, bound);
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

/* ADR 028: the provider browsers tokenize at; the bundled sandbox's URL when
 * it runs here and nothing else is configured. "" when there is none. */
static const char *provider_public_url(serve_state *st)
{
	const cli_config *c = st->cfg;
	const char *sandbox_url = offer(st, PSP_OFFERS_URL);
	return c->psp_public_url[0] != '\0' ? c->psp_public_url
	       : c->psp_url[0] != '\0'      ? c->psp_url
	       : sandbox_url != NULL        ? sandbox_url
	                                    : "";
}

/* The API on the gateway: command client and read-your-writes over this
 * process's read models, then the routes (tokens, passwords and login
 * limits are the api's). */
static orn_rc start_api(serve_state *st)
{
	unsigned char secret[GW_JWT_SECRET_BYTES];
	struct event_base *base = gw_server_base(st->gateway);
	const cli_config *c = st->cfg;
	es_store *gateway_store = NULL;
	orn_rc rc = gw_jwt_secret_load(getenv("ORION_JWT_SECRET"), c->data_dir, secret);
	if (rc != ORN_OK) {
		log_error("cannot load the token signing key", "error", orn_strerror(rc));
		return rc;
	}
	if ((rc = role_store(st, &cli_gateway_role, &gateway_store)) != ORN_OK ||
	    (rc = gw_bus_create(es_store_connection(gateway_store), base, &st->bus)) != ORN_OK ||
	    (rc = gw_consistency_create(base, st->runner, 0, &st->consistency)) != ORN_OK)
		goto done;
	/* ADR 006, "Login limits" */
	gw_api_limits limits = {.address_per_minute = c->auth_address_per_minute,
	                        .address_burst = c->auth_address_burst,
	                        .account_address_per_hour = c->auth_account_address_per_hour,
	                        .account_address_burst = c->auth_account_address_burst,
	                        .account_per_hour = c->auth_account_per_hour};
	/* ADR 026: the customer's holds and placements per customer */
	gw_api_order_limits order_limits = {.max_open_orders = c->max_open_orders,
	                                    .max_units_per_product = c->max_units_per_product,
	                                    .burst = c->orders_burst,
	                                    .per_minute = c->orders_per_minute};
	gw_api_options o;
	gw_api_options_init(&o);
	o.server = st->gateway;
	o.routes = gw_routes_table(&o.route_count);
	o.models = &st->models;
	o.bus = st->bus;
	o.consistency = st->consistency;
	o.metrics = st->metrics;
	o.store = st->store;
	o.keys = st->keys;
	o.secret = secret;
	o.password_memory_kib = c->password_memory_kib;
	o.limits = &limits;
	o.order_limits = &order_limits;
	o.token_ttl_s = c->token_ttl_s;
	o.verify_token_ttl_s = c->verify_token_ttl_s;
	o.reset_token_ttl_s = c->reset_token_ttl_s;
	o.unverified_may_order = c->require_email_verification == 0;
	o.reservation_ttl_ms = (int64_t)c->reservation_ttl_s * 1000;
	o.low_stock_threshold = c->low_stock_threshold;
	o.payment_timeout_ms = (unsigned)c->payment_timeout_ms;
	o.psp_public_url = provider_public_url(st);
	o.psp_publishable_key = c->psp_publishable_key;
	o.psp_webhook_secret = c->psp_webhook_secret;
	rc = gw_api_create(&o, &st->api);
done:
	sodium_memzero(secret, sizeof secret);
	return rc;
}

/* The web pages (gw_static.h): ORION_WEB_DIR, else web/ beside the sources.
 * A missing directory serves none (an installed gateway without pages); the
 * CSP lets the pages reach the payment provider's origin. */
static orn_rc start_web(serve_state *st)
{
	const char *dir = getenv("ORION_WEB_DIR");
	const char *root = dir != NULL && dir[0] != '\0' ? dir : ORION_SOURCE_DIR "/web";
	orn_rc rc = gw_static_create(root, provider_public_url(st), &st->web);
	if (rc == ORN_ENOTFOUND) {
		log_info("no web pages to serve", "dir", root);
		return ORN_OK;
	}
	if (rc != ORN_OK) {
		log_error("cannot serve the web pages", "dir", root, "error", orn_strerror(rc));
		return rc;
	}
	gw_static_serve(st->web, st->gateway);
	return ORN_OK;
}

/* The server with its operations routes (the API's follow: start_api); used
 * by serve and by `routes`. */
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
	return gw_server_route(st->gateway, GW_GET, "/readyz", handle_readyz, st);
}

/* The address the gateway is bound to: ORION_HTTP_ADDR's host with the port
 * the listener got (the one asked for, or the kernel's pick for port 0). The
 * default public URL follows it, so links work with port 0 too. */
static void learn_bound_address(serve_state *st)
{
	const char *addr = st->cfg->http_addr, *colon = strrchr(addr, ':');
	int host_len = colon != NULL ? (int)(colon - addr) : (int)strlen(addr);

	snprintf(st->http_addr, sizeof st->http_addr, "%.*s:%u", host_len, addr,
	         (unsigned)gw_server_port(st->gateway));
	if (!public_url_set(st))
		snprintf(st->public_url, sizeof st->public_url, "http://%s", st->http_addr);
}

static orn_rc start_gateway(serve_state *st)
{
	orn_rc rc = create_gateway(st, st->cfg->http_addr);
	if (rc != ORN_OK)
		return rc;
	learn_bound_address(st);
	/* The sandbox's webhooks follow the public URL, final only now. */
	serve_role *psp = role_of(st, &psp_role);
	if (psp != NULL && psp->started)
		psp_role_public_url(psp->handle, st->public_url);
	if ((rc = start_api(st)) != ORN_OK) {
		log_error("cannot start the API", "error", orn_strerror(rc));
		return rc;
	}
	if ((rc = start_web(st)) != ORN_OK)
		return rc;
	if (pthread_create(&st->gateway_thread, NULL, gateway_main, st->gateway) != 0)
		return ORN_ENOMEM;
	st->gateway_running = true;
	return ORN_OK;
}

/* `orion routes`: every route the gateway serves, "METHOD /pattern ACCESS"
 * per line (the OpenAPI test compares them with the document). */
int cli_routes(int argc, char **argv, const cli_config *cfg)
{
	serve_state st;
	int status = 1;
	memset(&st, 0, sizeof st);
	st.cfg = cfg;
	if (argc == 1 && cli_is_help(argv[0])) {
		printf("usage: orion routes\n\n"
		       "Lists every route the gateway serves, one \"METHOD /pattern ACCESS\" per line,\n"
		       "ACCESS being who may call it: public, account (a bearer token) or admin (the\n"
		       "contract tests compare them with gateway/openapi.yaml). Binds nothing but a\n"
		       "loopback port for a moment; needs no NATS.\n"
		       "  -h, --help  this text\n");
		return 0;
	}
	if (argc != 0) {
		fprintf(stderr, "usage: orion routes\n");
		return 2;
	}
	/* the API registered without a secret: listed, never served */
	gw_api_options o;
	gw_api_options_init(&o);
	o.routes = gw_routes_table(&o.route_count);
	if (create_gateway(&st, "127.0.0.1:0") == ORN_OK && (o.server = st.gateway) != NULL &&
	    gw_api_create(&o, &st.api) == ORN_OK) {
		const gw_router *router = gw_server_router(st.gateway);
		for (size_t i = 0; i < gw_router_count(router); i++) {
			gw_method method;
			const char *pattern = NULL;
			gw_api_access access = GW_ACCESS_PUBLIC; /* the operations routes' */
			if (!gw_router_route_at(router, i, &method, &pattern))
				continue;
			for (size_t k = 0; k < o.route_count; k++)
				if (o.routes[k].method == method && strcmp(o.routes[k].pattern, pattern) == 0)
					access = o.routes[k].access;
			printf("%s %s %s\n", gw_method_name(method), pattern, gw_api_access_name(access));
		}
		status = 0;
	}
	gw_api_stop(st.api);
	gw_server_destroy(st.gateway);
	gw_api_destroy(st.api);
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

/* A role started by its descriptor, and its own connection. */
static void stop_role(serve_state *st, size_t index)
{
	serve_role *r = &st->roles[index];
	if (r->started && r->d->stop != NULL)
		r->d->stop(r->handle);
	r->started = false;
	if (r->own_store)
		es_store_close(r->store);
	r->store = NULL;
	r->own_store = false;
}

/* The runner, then the projector's connection. */
static void stop_projector(serve_state *st, size_t index)
{
	serve_role *r = role_of(st, &cli_projector_role);
	(void)index;
	proj_runner_stop(st->runner);
	st->runner = NULL;
	if (r != NULL)
		stop_role(st, (size_t)(r - st->roles));
}

/* Side by side, the started roles of the stages (a projector job too if
 * with_projector). */
static void stop_stages(serve_state *st, role_stage first, role_stage last, bool with_projector)
{
	stop_job jobs[ROLES_MAX + 1];
	size_t count = 0;
	if (with_projector)
		jobs[count++] = (stop_job){stop_projector, 0, st, 0, false};
	for (size_t i = 0; i < st->role_count; i++)
		if (st->roles[i].d->stage >= first && st->roles[i].d->stage <= last &&
		    !(with_projector && st->roles[i].d == &cli_projector_role))
			jobs[count++] = (stop_job){stop_role, i, st, 0, false};
	stop_together(jobs, count);
}

/* In order: the gateway (no new request), then side by side the roles that
 * send commands and side effects, then the services they called (the
 * provider sandbox), then side by side the projector and the actors that
 * answer commands, then the connections, and the embedded nats-server last,
 * so no role ever waits on a NATS that is gone. */
static void stop_all(serve_state *st)
{
	atomic_store(&st->stopping, true);
	/* NATS gone already (a crash, an OOM kill): every request in flight
	 * fails now instead of waiting out its timeout. */
	for (size_t i = 0; i < st->role_count; i++)
		if (st->roles[i].own_store)
			es_store_abandon(st->roles[i].store);
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
	gw_bus_destroy(st->bus);
	gw_consistency_destroy(st->consistency);
	gw_api_stop(st->api); /* its password pool answers queued hashes: the server is still there */
	gw_server_destroy(st->gateway); /* open streams close into the api */
	gw_api_destroy(st->api);
	gw_ops_destroy(st->ops);
	gw_static_destroy(st->web);
	gw_metrics_destroy(st->metrics);

	stop_stages(st, ROLE_SENDS, ROLE_SENDS, false);
	kit_hub_destroy(st->hub); /* every role that shared it stopped */
	stop_stages(st, ROLE_SERVES, ROLE_SERVES, false);
	stop_stages(st, ROLE_ANSWERS, ROLE_FRONT, true); /* the front's connection too */
	proj_models_close(&st->models);
	proj_env_close(st->env);

	ks_close(st->keys);
	es_store_close(st->store);
	na_credentials_wipe(&st->creds);
	sodium_memzero(st->token_key, sizeof st->token_key);
	for (size_t i = 0; i < st->role_count; i++)
		free(st->roles[i].settings);
	if (st->server != NULL) {
		char path[ORN_CONFIG_STR_MAX + 32];
		cli_url_file_path(st->cfg, path, sizeof path);
		unlink(path);
	}
	natsd_stop(st->server);
}

/* The demo's admin credentials: ORION_ADMIN_EMAIL/ORION_ADMIN_PASSWORD, or an
 * account generated once and kept in <data dir>/admin.credentials (0600). */
static orn_rc demo_credentials(const cli_config *cfg, char *email, size_t email_cap, char *password,
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
#define BOOTSTRAP_RETRY_MS 30000 /* how long the start-up admin's creation is retried */

static orn_rc bootstrap(serve_state *st, bool demo)
{
	char email[128] = "", password[128] = "";
	const char *env_email = getenv("ORION_ADMIN_EMAIL"), *env_password = getenv("ORION_ADMIN_PASSWORD");
	es_store *store = st->store;
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
		/* Transient failures are retried for a while: on a cluster the streams this start
		 * just created (the keystore's R3 stream) may have no leader yet (CI run of 12:11,
		 * 2026-12-07: "dependency unavailable" and the instance exited). */
		int64_t until = orn_now_ms() + BOOTSTRAP_RETRY_MS, pause = 200;
		rc = st->keys == NULL ? ORN_EUNAVAILABLE : ORN_OK;
		while (st->keys != NULL &&
		       ((rc = cli_create_user(store, st->keys, email, password, "Administrator",
		                              USER_ROLE_ADMIN, &created)) == ORN_EUNAVAILABLE ||
		        rc == ORN_ETIMEOUT) &&
		       orn_now_ms() + pause < until && !atomic_load(&st->stopping)) {
			log_warn("cannot create the admin account yet; retrying", "error", orn_strerror(rc));
			usleep((useconds_t)pause * 1000);
			pause = pause < 2000 ? pause * 2 : 2000;
		}
		if (rc != ORN_OK) {
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
		if ((rc = cli_seed_demo(store, &count)) != ORN_OK) {
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
static const char *main_role(const serve_state *st)
{
	/* the gateway's user sends the bootstrap's commands to the users and products */
	static const char *const order[] = {"gateway", "projector", "stock",   "product", "user",  "cart",
	                                    "order",   "checkout",  "payment", "mail",    "timers"};
	if (!st->auth || na_credentials_find(&st->creds, CLI_OPS_ROLE) != NULL)
		return CLI_OPS_ROLE;
	for (size_t i = 0; i < ORN_ARRAY_LEN(order); i++)
		for (size_t r = 0; r < st->role_count; r++)
			if (strcmp(st->roles[r].d->name, order[i]) == 0 &&
			    na_credentials_find(&st->creds, order[i]) != NULL)
				return order[i];
	return CLI_OPS_ROLE;
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
static orn_rc stop_watch_start(stop_watch *w, const cli_config *cfg)
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

static void serve_help(void)
{
	size_t count = 0;
	const role_descriptor *const *all = cli_roles(&count);
	printf("usage: orion serve [--roles ROLE,...] [--demo]\n"
	       "  --roles: the roles this process runs, comma-separated (default: all); a\n"
	       "           role brings what it needs (the gateway and the timers, the\n"
	       "           projector):\n");
	for (size_t i = 0; i < count; i++)
		printf("    %-11s %s\n", all[i]->name, all[i]->summary);
	printf("  --demo: seed the demo catalog and an admin account\n"
	       "  -h, --help: this text\n\n"
	       "Stopping: Ctrl-C (SIGINT) or SIGTERM stops every role, then the embedded\n"
	       "  nats-server, and exits 0. A second signal exits at once (130 after SIGINT,\n"
	       "  143 after SIGTERM); a stop still running 10 s after the first exits 1.\n"
	       "  Nothing acknowledged is lost either way (docs/adr/016).\n"
	       "Ready: GET /readyz answers 200 once every role started, NATS is connected,\n"
	       "  the read models caught up with the stream as it was at start-up (so the\n"
	       "  start-up admin can log in) and the durable consumers are bound.\n\n");
	cli_settings_help(stdout);
}

/* Starts the chosen roles stage by stage; false once one fails or a stop
 * was asked for (each step may take a while: NATS, the demo's commands). */
static bool start_roles(serve_state *st, stop_watch *watch)
{
	for (size_t i = 0; i < st->role_count; i++) {
		serve_role *r = &st->roles[i];
		orn_rc rc = ORN_OK;
		if (stop_asked(watch))
			return false;
		if (r->d->stage == ROLE_SENDS && st->hub == NULL) {
			/* one follower per filter for the sweepers of every role here */
			if ((rc = kit_hub_create(st->store, &st->hub)) != ORN_OK)
				return false;
			kit_hub_gather(st->hub);
		}
		if (r->d == &cli_projector_role)
			rc = start_projector(st);
		else if (r->d == &cli_gateway_role)
			rc = start_gateway(st);
		else
			rc = start_role(st, r);
		if (rc != ORN_OK)
			return false;
	}
	return st->hub == NULL || kit_hub_start(st->hub) == ORN_OK;
}

/* Whether the process seals or opens personal data (ADR 027): the gateway,
 * mail, or an admin account to create at start-up. */
static bool needs_keys(serve_state *st, bool demo)
{
	const char *admin = getenv("ORION_ADMIN_EMAIL");
	return role_of(st, &cli_gateway_role) != NULL || role_of(st, &mail_role) != NULL || demo ||
	       (admin != NULL && admin[0] != '\0');
}

int cli_serve(int argc, char **argv, const cli_config *cfg)
{
	const char *roles = NULL;
	bool demo = false;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--roles") == 0 && i + 1 < argc) {
			roles = argv[++i];
		} else if (strcmp(argv[i], "--demo") == 0) {
			demo = true;
		} else if (cli_is_help(argv[i])) {
			serve_help();
			return 0;
		} else {
			fprintf(stderr, "orion serve: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	serve_state st;
	memset(&st, 0, sizeof st);
	st.cfg = cfg;
	if (!choose_roles(&st, roles) || !load_settings(&st)) {
		for (size_t i = 0; i < st.role_count; i++)
			free(st.roles[i].settings);
		return 2;
	}
	stop_watch watch;
	if (stop_watch_start(&watch, cfg) != ORN_OK)
		return 1;

	atomic_store(&st.projection_lag, -1);
	snprintf(st.http_addr, sizeof st.http_addr, "%s", cfg->http_addr);
	snprintf(st.public_url, sizeof st.public_url, "%s", cfg->public_url);
	int status = 1;
	if (cli_nats_credentials(cfg, cfg->nats_url[0] == '\0', &st.creds, &st.auth) != ORN_OK ||
	    cli_connect_store_as(cfg, "orion-serve", true, st.auth ? &st.creds : NULL, main_role(&st),
	                         &st.server, &st.store) != ORN_OK)
		goto done;
	atomic_store(&watch.owns_url_file, st.server != NULL);
	/* A migration of personal data under way (ADR 032) must end first: the
	 * stream may be a part of the log. Asked as ops only (the other users may
	 * not ask about that stream). */
	if (strcmp(main_role(&st), CLI_OPS_ROLE) == 0 && cli_migration_under_way(st.store))
		goto done;
	/* The keystore (ADR 027): whoever seals or opens personal data — the
	 * gateway, mail, the start-up admin — opens it once; a wrong master key
	 * stops the start here. */
	if (needs_keys(&st, demo) && cli_open_keys(cfg, st.store, true, &st.keys) != ORN_OK)
		goto stopped_or_failed;
	if (!start_roles(&st, &watch))
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
