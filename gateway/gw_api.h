/* gw_api.h — the REST API of ../shared/API.md on top of the gateway core.
 *
 * gw_api is the context every API handler receives: the read models it
 * queries directly (LMDB, never blocking on NATS), the command client it uses
 * for writes, read-your-writes waits, auth and limits. The routes live in
 * gw_api_public.c (auth and catalog), gw_api_admin.c (admin products and
 * inventory), gw_api_cart.c (the customer's cart), gw_api_orders.c
 * (orders, the confirmation page and the live status stream) and
 * gw_api_payment.c (card payments); gw_api.c holds what they share.
 *
 * Threading: everything runs on the gateway's event loop thread. */
#ifndef ORION_GW_API_H
#define ORION_GW_API_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "carts.h"
#include "catalog.h"
#include "gw_bus.h"
#include "gw_consistency.h"
#include "gw_http.h"
#include "gw_jwt.h"
#include "gw_metrics.h"
#include "gw_password.h"
#include "gw_ratelimit.h"
#include "inventory.h"
#include "mails.h"
#include "mpack.h"
#include "order_token.h"
#include "orders.h"
#include "keystore.h"
#include "users.h"

/* Limits the handlers apply. */
#define GW_API_TOKEN_TTL_S         3600 /* access tokens live one hour */
#define GW_API_COMMAND_TIMEOUT_MS  3000 /* a command without an answer by then: 503 */
#define GW_API_READ_YOUR_WRITES_MS 2000 /* longest wait for the read models after a write */
#define GW_API_DEFER_MS            8000 /* deadline of a deferred request (> the two above) */
#define GW_API_FEEDS_MAX           64   /* inventory feeds open at once (NATS consumers) */
#define GW_API_TIME_MAX            32   /* bytes of gw_api_format_time's text, NUL included */
#define GW_LIMIT_ADDRESS_MAX       64   /* bytes of a client address in a limiter key, NUL included */
/* A payment waits for the provider (ADR 009: up to 10 s a call, retried with
 * the same key): its command gets this long by default, and its deferred
 * request that plus GW_API_READ_YOUR_WRITES_MS plus 1 s. Keep the sum below
 * the server's io_timeout_ms (30 s by default). */
#define GW_API_PAYMENT_TIMEOUT_MS 25000

/* The Idempotency-Key header of POST /orders and POST /orders/{id}/payment:
 * 1..GW_API_IDEMPOTENCY_KEY_MAX printable ASCII characters. */
#define GW_API_IDEMPOTENCY_HEADER  "Idempotency-Key"
#define GW_API_IDEMPOTENCY_KEY_MAX 128

typedef struct gw_api {
	/* borrowed, all must outlive the server's loop */
	gw_server *server;
	proj_catalog *catalog;
	proj_inventory *inventory;
	proj_users *users;
	/* the customers' data keys (ADR 027): sealing at registration, opening
	 * what a customer is shown; NULL leaves registration and login
	 * answering 503 */
	ks_store *keys;
	proj_orders *orders; /* orders and carts: NULL leaves their routes answering 503 */
	proj_carts *carts;
	proj_mail *mail; /* the mail delivery log: NULL leaves GET /admin/mail answering 503 */
	gw_bus *bus;
	gw_consistency *consistency;
	const gw_jwt *jwt;
	gw_password_pool *passwords;
	/* Login limits (ADR 006, "Login limits"): failed logins per client
	 * address (also registrations and the other per-address scopes), per
	 * (account, address), per account (the ceiling), and the (account,
	 * address) pairs that logged in, which pass the ceiling. Any may be NULL
	 * (no limit). */
	gw_ratelimit *login_by_address;
	gw_ratelimit *login_by_pair;
	gw_ratelimit *login_by_account;
	gw_ratelimit *login_known;
	gw_metrics *metrics;
	/* the key of the orders' confirmation tokens (order_token_key_derive from
	 * the JWT secret), and how long an order may wait for its confirmation */
	uint8_t order_token_key[ORDER_TOKEN_KEY_BYTES];
	int64_t reservation_ttl_ms;
	/* the low-stock threshold of a product created without one */
	int64_t low_stock_threshold;
	/* the event store the inventory feed follows (NULL: the feed answers
	 * 503), and how many feeds are open (loop thread only) */
	es_store *store;
	unsigned inventory_feeds;
	/* how long POST /orders/{id}/payment waits for the payment service; 0
	 * means GW_API_PAYMENT_TIMEOUT_MS */
	unsigned payment_timeout_ms;
	/* how long access tokens live, and the longest exp - iat accepted; 0
	 * means GW_API_TOKEN_TTL_S */
	int64_t token_ttl_s;
	/* the dummy hash verified for unknown emails, so timing reveals nothing */
	char dummy_hash[GW_PASSWORD_HASH_MAX];
	/* scratch reused by handlers (one at a time on the loop); gw_api_dispose frees */
	proj_catalog_page *page_buffer;
	mp_writer *text_buffer;
	/* the payment route's Idempotency-Key records (gw_api_payment.c),
	 * created on first use; gw_api_dispose frees */
	struct gw_api_payments *payments;
} gw_api;

/* A catalog page buffer, allocated on first use and reused (loop thread only);
 * NULL on allocation failure. */
proj_catalog_page *gw_api_page_buffer(gw_api *api);
/* An empty text buffer, allocated on first use and reset for each call (loop
 * thread only); NULL on allocation failure. */
mp_writer *gw_api_text_buffer(gw_api *api);
/* Frees the scratch buffers and the payment records. */
void gw_api_dispose(gw_api *api);

/* One route of a part's table. */
typedef struct gw_api_route {
	gw_method method;
	const char *pattern;
	gw_handler *handler;
} gw_api_route;

/* Registers count routes on api->server, each with api as its argument;
 * stops at the first error (as gw_server_route). */
orn_rc gw_api_register_routes(gw_api *api, const gw_api_route *routes, size_t count);

/* Registers every API route (auth, catalog, admin, cart, orders, payment, the
 * inventory feed, the mail log) on api->server.
 * Errors as gw_server_route. */
orn_rc gw_api_register(gw_api *api);

/* Parts, registered by gw_api_register. */
orn_rc gw_api_register_public(gw_api *api);
orn_rc gw_api_register_admin(gw_api *api);
orn_rc gw_api_register_cart(gw_api *api);
orn_rc gw_api_register_orders(gw_api *api);
orn_rc gw_api_register_inventory_feed(gw_api *api);
orn_rc gw_api_register_payment(gw_api *api);
orn_rc gw_api_register_mail(gw_api *api);

/* Frees api->payments (gw_api_dispose calls it). Requests still waiting for
 * a payment are not answered: call it once the bus and the consistency
 * helper are destroyed (they answer every pending callback first). */
void gw_api_payments_free(gw_api *api);

/* The order view of API.md (every history entry) of the order id in s.
 * NULL on ENOMEM. */
json_t *gw_api_order_json(const char *id, const order_state *s);

/* The customer's order id into *out (heap, ~15 KB; the caller frees).
 * ORN_ENOTFOUND also when it belongs to somebody else or the id is invalid;
 * ORN_EUNAVAILABLE when the read model fails; ORN_ENOMEM. */
orn_rc gw_api_read_own_order(gw_api *api, const char *id, const char *customer, proj_order **out);

/* The customer's cart as the API shows and orders it: the lines whose
 * product is still in the catalog, with the catalog's current name and unit
 * price, and the ids of the lines dropped because their product was deleted. */
typedef struct gw_cart_view {
	cart_line lines[CART_LINES_MAX];
	size_t count;
	char currency[CART_CURRENCY_MAX]; /* "" when empty */
	int64_t total_cents;
	char dropped[CART_LINES_MAX][CART_ID_MAX];
	size_t dropped_count;
	uint64_t version;                    /* the cart's version in the read model, 0 for none */
	char checked_out_order[CART_ID_MAX]; /* the order its last change checked out, or "" */
} gw_cart_view;

/* Reads customer's cart into *out (~17 KB: heap-allocate it) and sends
 * RemoveItem for each dropped line, so the next read no longer has it. An
 * absent cart is an empty one. ORN_EUNAVAILABLE when a read model fails,
 * ORN_EINVAL for an invalid customer id. */
orn_rc gw_api_cart_read(gw_api *api, const char *customer, gw_cart_view *out);

/* The view as JSON: {items, total_cents, currency|null} plus
 * notices:[{product_id, message}] when lines were dropped. NULL on ENOMEM. */
json_t *gw_api_cart_json(const gw_cart_view *view);

/* Checks the bearer token of r and its account (ADR 021): the signature and
 * claims (gw_jwt_verify), then, in the users read model, that the account
 * exists, that the token's version is the account's and that the token was
 * not ended (logout). The role in *claims is the effective one: admin only
 * while both the token and the account say admin, so a demoted admin loses
 * admin at once. On success fills *claims and returns true. Otherwise
 * answers itself — 401 (missing, malformed, expired, badly signed, ended or
 * outdated token, or no such account; with WWW-Authenticate: Bearer), 403
 * (admin_only and the effective role is not admin) or 503 (the read model
 * cannot be read) — and returns false: the handler just returns. */
bool gw_api_authorize(gw_request *r, gw_api *api, bool admin_only, gw_claims *claims);

/* Opens the sealed token (the "email" of an account, as the users model
 * keeps it) and seals its value again as field of the event event_id under
 * the same key: a personal field is bound to the event that carries it (ADR
 * 027). A value written before ADR 027 (clear, no key) is copied as it is.
 * out may be token. ORN_ENOTFOUND if the key is gone; ORN_EUNAVAILABLE
 * without a keystore; what ks_open_token and ks_seal return. */
orn_rc gw_api_reseal(gw_api *api, const char *token, const char *field, const char *event_id, char *out,
                     size_t cap);

/* The Idempotency-Key header of r into *key (NULL when absent; the header's
 * own storage, valid while r is). Returns false, after answering 400 naming
 * the header, when it is not 1..GW_API_IDEMPOTENCY_KEY_MAX printable ASCII
 * characters: the handler just returns. */
bool gw_api_idempotency_key(gw_request *r, const char **key);

/* The path parameter name of r if it is an id (gw_valid_id); else answers 400
 * with an error naming the parameter and returns NULL. */
const char *gw_api_path_id(gw_request *r, const char *name);

/* Takes one attempt from the client address's bucket of
 * api->login_by_address, keyed "<scope>:<address>" (each scope has its own
 * budget, at the same rate). True when allowed (or when there is no
 * limiter). Otherwise adds the Retry-After header (whole seconds, >= 1) to
 * r's answer and returns false: the caller answers 429. */
bool gw_api_address_allowed(gw_api *api, gw_request *r, const char *scope);

/* The HTTP status that fits a rejection code of the domain or the runtime
 * (404 not_found, 422 idempotency_key_reused, 429 too_many_keyed_requests,
 * 409 for the rest). */
int gw_api_rejection_status(const char *code);

/* Sends one command to aggregate/id through api->bus with
 * GW_API_COMMAND_TIMEOUT_MS: payload is one msgpack value, command_id (unique
 * per intent: the same id for a retried intent makes it idempotent), actor
 * is the user acting (may be NULL). The correlation id is the calling
 * thread's log correlation id (the request being handled, gw_request_id;
 * kept for commands sent from fn), or command_id when none is set.
 * fn gets the outcome on the loop (see gw_bus.h). */
orn_rc gw_api_send(gw_api *api, const char *aggregate, const char *id, const char *type,
                   const mp_writer *payload, const char *command_id, const char *actor, gw_bus_fn *fn,
                   void *closure);

/* gw_api_send with its own timeout (ms, > 0) instead of
 * GW_API_COMMAND_TIMEOUT_MS: for commands that wait on a slow dependency. */
orn_rc gw_api_send_within(gw_api *api, const char *aggregate, const char *id, const char *type,
                          const mp_writer *payload, const char *command_id, const char *actor,
                          int64_t timeout_ms, gw_bus_fn *fn, void *closure);

/* A client request with an Idempotency-Key, as a command (ADR 015): its id,
 * derived from (purpose, caller, key), and the fingerprint of the request
 * (method, path and canonical body) that the aggregate's ledger compares for
 * 24 hours: the same key and request are answered as the first time, the
 * key with another request is refused (422). */
typedef struct gw_api_keyed {
	char command_id[ENV_ID_MAX];
	char request[ENV_REQ_MAX];
} gw_api_keyed;

/* Fills *out for key (from gw_api_idempotency_key, not NULL), caller and
 * purpose (a short word naming the route), fingerprinting r. */
void gw_api_keyed_init(gw_api_keyed *out, gw_request *r, const char *purpose, const char *caller,
                       const char *key);

/* gw_api_send of a keyed request: keyed->command_id is the command's id and
 * its fingerprint travels with it. */
orn_rc gw_api_send_keyed(gw_api *api, const char *aggregate, const char *id, const char *type,
                         const mp_writer *payload, const gw_api_keyed *keyed, const char *actor,
                         gw_bus_fn *fn, void *closure);

/* RFC 3339 UTC with milliseconds ("2026-01-31T12:00:00.250Z") of ms since
 * the epoch into out. */
void gw_api_format_time(int64_t ms, char out[GW_API_TIME_MAX]);

/* gw_api_format_time as a JSON string; JSON null when ms <= 0 and
 * zero_is_null (a time that is not there yet). */
json_t *gw_api_time_json(int64_t ms, bool zero_is_null);

/* The query parameter name of r as a decimal integer in min..max (min >= 0)
 * into *out (*present: it was given; absent leaves *out untouched). False,
 * with an error naming it added to problem, for anything else. */
bool gw_api_query_int(gw_request *r, const char *name, int64_t min, int64_t max, int64_t *out, bool *present,
                      json_t *problem);

/* The cursor query parameter of r into *cursor (NULL when absent). False,
 * with an error added to problem, when it is too long to be a cursor of a
 * list (proj_cursor.h; the read model judges the rest). */
bool gw_api_query_cursor(gw_request *r, const char **cursor, json_t *problem);

/* Adds the error every list answers for a cursor the read model refused. */
void gw_api_bad_cursor(json_t *problem);

/* Answers a list read with rc: ORN_EINVAL (the read model refused the
 * cursor) problem with gw_api_bad_cursor's error, another failure 503 with
 * detail unavailable, else 200 with body. Takes problem and body. */
void gw_api_answer_list(gw_request *r, orn_rc rc, json_t *body, json_t *problem, const char *unavailable);

/* A fresh random command id ("c" + 32 hex digits) into out (>= 34 bytes). */
void gw_api_new_id(char *out, size_t cap);

/* Completes a deferred request after a failed command: 503 for timeouts and
 * unavailable services (rc != ORN_OK or outcome failed), else the status that
 * fits the rejection code (not_found 404; exists, sku_taken, out_of_stock,
 * below_reserved 409; invalid 400; others 409) with reply->detail. */
void gw_api_complete_failure(gw_async *a, orn_rc rc, const bus_reply *reply);

#endif
