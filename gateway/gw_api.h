/* gw_api.h — the REST API of ../shared/API.md on a gateway server.
 *
 * A gw_api is the context of every API route: the read models it queries
 * (LMDB, never waiting on NATS), the command client for writes,
 * read-your-writes, tokens, passwords and login limits. gw_api_create builds
 * it from a small options struct and registers a route table on the server:
 * one row per route, {method, pattern, handler, access} (Orion's is
 * gw_routes.h). Every request first passes the row's access check, then
 * reaches its handler. The handlers live in gw_api_*.c; what they share is
 * gw_api-internal.h. See docs/adr/006 (gateway and auth) and 025 (the thin
 * gateway).
 *
 * Threading: the routes run on the server's event loop thread. */
#ifndef ORION_GW_API_H
#define ORION_GW_API_H

#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "gw_bus.h"
#include "gw_consistency.h"
#include "gw_http.h"
#include "gw_metrics.h"
#include "keystore.h"
#include "read_models.h"

typedef struct gw_api gw_api;

/* Who may call a route; checked before its handler runs. */
typedef enum gw_api_access {
	GW_ACCESS_PUBLIC,  /* anybody: the handler gets no caller */
	GW_ACCESS_ACCOUNT, /* a valid bearer token of an existing account, customer or admin */
	GW_ACCESS_ADMIN,   /* the same, of an account that is an admin now */
} gw_api_access;

/* The caller of a route that needs an account (gw_api-internal.h). */
typedef struct gw_caller gw_caller;

/* A route's handler: answers r (directly or through gw_request_defer).
 * caller is NULL on a GW_ACCESS_PUBLIC route. */
typedef void gw_api_handler(gw_request *r, gw_api *api, const gw_caller *caller);

/* One row of a route table. */
typedef struct gw_api_route {
	gw_method method;
	const char *pattern; /* gw_router.h's patterns */
	gw_api_handler *handler;
	gw_api_access access;
} gw_api_route;

/* "public", "account", "admin". */
const char *gw_api_access_name(gw_api_access access);

/* Login limits (ADR 006, "Login limits"): failed logins per client address
 * (and registrations and the other per-address budgets), per (account,
 * address), per account over every address. */
typedef struct gw_api_limits {
	double address_per_minute;
	unsigned address_burst;
	double account_address_per_hour;
	unsigned account_address_burst;
	unsigned account_per_hour;
} gw_api_limits;

/* The limits of POST /orders (API.md, "Limits that protect stock and
 * accounts"; docs/adr/026-holds.md): what a customer's holds may count, and
 * a rate of placements per customer. */
typedef struct gw_api_order_limits {
	int64_t max_open_orders;       /* unpaid orders of one customer (1..16) */
	int64_t max_units_per_product; /* units of one product across them (1..1,000,000) */
	unsigned burst;                /* placements one customer may make at once (>= 1) */
	double per_minute;             /* then this many a minute (> 0) */
} gw_api_order_limits;

typedef struct gw_api_options {
	/* borrowed: each must outlive the api */
	gw_server *server;          /* required: the routes are registered on it */
	const gw_api_route *routes; /* the table, route_count rows */
	size_t route_count;
	const proj_models *models;   /* the read models the routes query */
	gw_bus *bus;                 /* the command client */
	gw_consistency *consistency; /* read-your-writes; NULL: answers do not wait */
	gw_metrics *metrics;         /* may be NULL */
	es_store *store;             /* the stream the inventory feed follows; NULL: it answers 503 */
	/* the customers' data keys (ADR 027): sealing at registration, opening
	 * what a customer is shown; NULL leaves registration and login answering
	 * 503 */
	ks_store *keys;
	/* copied */
	const unsigned char *secret; /* GW_JWT_SECRET_BYTES: signs tokens and names confirmation links.
	                                NULL: the routes are only registered (`orion routes`) and
	                                every request is answered 503 */
	size_t password_memory_kib;  /* Argon2id memory per hash; 0: libsodium's interactive limit */
	const gw_api_limits *limits; /* NULL: no login limits */
	/* NULL: POST /orders opens no hold (no holds actor needed) and has no rate */
	const gw_api_order_limits *order_limits;
	int64_t token_ttl_s; /* access tokens' lifetime; 0: one hour */
	/* emailed links (ADR 031): how long a verification and a reset link
	 * live (0: a day, an hour), and whether an account whose address is not
	 * verified may place orders (false: 403, ORION_REQUIRE_EMAIL_VERIFICATION) */
	int64_t verify_token_ttl_s;
	int64_t reset_token_ttl_s;
	bool unverified_may_order;
	int64_t reservation_ttl_ms;  /* how long an order may wait for its confirmation and payment */
	int64_t low_stock_threshold; /* of a product created without one */
	unsigned payment_timeout_ms; /* how long a payment may wait for the provider; 0: 25 s */
	/* the card payment provider (ADR 028), copied: its base URL as browsers
	 * reach it and its publishable key (GET /payments/config; "" answers
	 * 503), and the secret its webhooks are signed with ("": POST
	 * /webhooks/psp answers 503) */
	const char *psp_public_url;
	const char *psp_publishable_key;
	const char *psp_webhook_secret;
} gw_api_options;

/* Zeroes o: no models, no bus, no secret (fill what the api serves). */
void gw_api_options_init(gw_api_options *o);

/* Creates the api from o and registers o->routes on o->server. With a
 * secret it also creates the token signer, the password pool (threads) and
 * the login limiters; with order limits, the placements' limiter.
 * [out] *out: the api; the caller frees it with gw_api_destroy.
 * Returns ORN_OK, or: ORN_EINVAL (no server, or order limits out of their
 * bounds), ORN_EEXISTS or ORN_EINVAL for
 * a route the router refuses (gw_server_route), ORN_ENOMEM. After a failure
 * nothing is left to free but the server, which may hold some of the
 * routes: destroy it without running it. */
orn_rc gw_api_create(const gw_api_options *o, gw_api **out);

/* Stops the api's threads: its password pool answers every hash still
 * queued (503), on the server's requests. Call it after the server's loop
 * stopped and after destroying the bus and the consistency helper (they
 * answer every pending callback first), before gw_server_destroy, whose
 * open streams (the inventory feed, order events) still call into the api
 * as they close. NULL is accepted. */
void gw_api_stop(gw_api *api);

/* Stops the api if gw_api_stop did not, then frees it, its limiters, signer
 * and the routes' own state: after gw_server_destroy. NULL is accepted. The
 * api is freed: do not use it again. */
void gw_api_destroy(gw_api *api);

#endif
