/* gw_api-internal.h — what the API's route files (gw_api_*.c) share: the
 * api's fields, the caller of a route, and the toolkit of gw_api.c (sending
 * commands, keyed requests, the caller's own order, the cart's quote, query
 * parameters, answers to failed commands). Only gateway/ includes it.
 *
 * Threading: everything runs on the gateway's event loop thread. */
#ifndef ORION_GW_API_INTERNAL_H
#define ORION_GW_API_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "gw_api.h"
#include "gw_jwt.h"
#include "gw_password.h"
#include "gw_ratelimit.h"
#include "gw_work.h"
#include "mpack.h"
#include "order_token.h"
#include "proj_quote.h"

/* Limits the handlers apply. */
#define GW_API_TOKEN_TTL_S         3600  /* access tokens live one hour */
#define GW_API_VERIFY_TTL_S        86400 /* a verification link lives a day */
#define GW_API_RESET_TTL_S         3600  /* a password-reset link lives an hour */
#define GW_API_COMMAND_TIMEOUT_MS  3000  /* a command without an answer by then: 503 */
#define GW_API_READ_YOUR_WRITES_MS 2000  /* longest wait for the read models after a write */
#define GW_API_DEFER_MS            8000  /* deadline of a deferred request (> the two above) */
#define GW_API_FEEDS_MAX           64    /* inventory feeds open at once (NATS consumers) */
#define GW_API_KEY_WORKERS         2     /* threads reading keys the cache lacks (ADR 027) */
#define GW_API_KEY_QUEUE_MAX       256   /* key reads waiting; more: 503 */
#define GW_LIMIT_ADDRESS_MAX       64    /* bytes of a client address in a limiter key, NUL included */
/* A payment waits for the provider (ADR 009: up to 10 s a call, retried with
 * the same key): its command gets this long by default, and its deferred
 * request that plus GW_API_READ_YOUR_WRITES_MS plus 1 s. Keep the sum below
 * the server's io_timeout_ms (30 s by default). */
#define GW_API_PAYMENT_TIMEOUT_MS 25000

/* The Idempotency-Key header of POST /orders and POST /orders/{id}/payment:
 * 1..GW_API_IDEMPOTENCY_KEY_MAX printable ASCII characters. */
#define GW_API_IDEMPOTENCY_HEADER  "Idempotency-Key"
#define GW_API_IDEMPOTENCY_KEY_MAX 128
#define GW_API_SETTING_MAX         512 /* bytes of a copied text setting, NUL included */

struct gw_api {
	gw_server *server;
	/* the read models (NULL when the api only lists routes) */
	proj_catalog *catalog;
	proj_inventory *inventory;
	proj_users *users;
	proj_orders *orders;
	proj_carts *carts;
	proj_mail *mail;
	proj_payments *payment_views; /* the payments read model (ADR 028) */
	proj_desk *desk;              /* the admin order desk's read model (ADR 029) */
	gw_bus *bus;
	gw_consistency *consistency;
	gw_metrics *metrics;
	es_store *store;   /* the inventory feed's; NULL: 503 */
	ks_store *keys;    /* the customers' data keys (ADR 027); NULL: accounts answer 503 */
	gw_work *key_work; /* runs what needs a key the cache lacks (a NATS read) off the loop */
	/* owned */
	gw_jwt *jwt; /* NULL: nothing is served (every request 503) */
	gw_password_pool *passwords;
	/* Login limits (ADR 006): failed logins per client address (also
	 * registrations and the other per-address scopes), per (account,
	 * address), per account (the ceiling), and the (account, address) pairs
	 * that logged in, which pass the ceiling. NULL: no limit. */
	gw_ratelimit *login_by_address;
	gw_ratelimit *login_by_pair;
	gw_ratelimit *login_by_account;
	gw_ratelimit *login_known;
	/* POST /orders (ADR 026): the limits the customer's holds decide, and
	 * placements per customer (NULL with order_limited false: neither) */
	bool order_limited;
	gw_api_order_limits order_limits;
	gw_ratelimit *orders_by_customer;
	/* the key of the orders' confirmation tokens (from the secret), and how
	 * long an order may wait for its confirmation and for its payment */
	uint8_t order_token_key[ORDER_TOKEN_KEY_BYTES];
	int64_t reservation_ttl_ms;
	int64_t low_stock_threshold; /* of a product created without one */
	unsigned payment_timeout_ms; /* 0: GW_API_PAYMENT_TIMEOUT_MS */
	int64_t token_ttl_s;         /* 0: GW_API_TOKEN_TTL_S */
	/* emailed links (ADR 031): their lifetimes, and whether an account whose
	 * address is not verified may place orders */
	int64_t verify_ttl_s;
	int64_t reset_ttl_s;
	bool unverified_may_order;
	/* how long a new account's registration takes here (ms, a moving
	 * average): a known address's answer waits as long (ADR 031) */
	double register_new_ms;
	struct registration *padded; /* the known addresses' answers waiting (gw_api_public.c) */
	/* the card payment provider (ADR 028): "" when not configured */
	char psp_public_url[GW_API_SETTING_MAX];
	char psp_publishable_key[GW_API_SETTING_MAX];
	char psp_webhook_secret[GW_API_SETTING_MAX];
	/* the dummy hash verified for unknown emails, so timing reveals nothing */
	char dummy_hash[GW_PASSWORD_HASH_MAX];
	unsigned inventory_feeds; /* feeds open now */
	/* scratch reused by handlers (one at a time on the loop) */
	proj_catalog_page *page_buffer;
	mp_writer *text_buffer;
	/* gw_api_payment.c's Idempotency-Key records, created on first use and
	 * freed by gw_api_destroy with payments_free */
	void *payments;
	void (*payments_free)(void *payments);
	/* the table's rows as registered: each route's argument */
	struct gw_api_binding *bindings;
	size_t binding_count;
};

/* The caller of a route with GW_ACCESS_ACCOUNT or GW_ACCESS_ADMIN, checked
 * (ADR 021): a valid token of an existing account, not ended, of the
 * account's token version. */
struct gw_caller {
	gw_claims claims;  /* the token's; role is the effective one (admin only while the account is) */
	proj_user account; /* the account as the users model has it (password_hash wiped) */
};

/* A catalog page buffer, allocated on first use and reused; NULL on
 * allocation failure. */
proj_catalog_page *gw_api_page_buffer(gw_api *api);
/* An empty text buffer, allocated on first use and reset for each call;
 * NULL on allocation failure. */
mp_writer *gw_api_text_buffer(gw_api *api);

/* Answers 200 (or status) with the JSON text written in w; 500 when writing
 * it ran out of memory. */
void gw_api_respond_written(gw_request *r, int status, const mp_writer *w);
/* The same for a deferred request. */
void gw_api_complete_written(gw_async *a, int status, const mp_writer *w);

/* The customer's order id into *out (heap, ~15 KB; the caller frees).
 * ORN_ENOTFOUND also when it belongs to somebody else or the id is invalid;
 * ORN_EUNAVAILABLE when the read model fails; ORN_ENOMEM. */
orn_rc gw_api_read_own_order(gw_api *api, const char *id, const char *customer, proj_order **out);

/* The customer's cart priced from the catalog (proj_quote_cart) into *out
 * (~18 KB: heap-allocate it); RemoveItem is sent (without waiting) for each
 * dropped line, so the next quote no longer has it. Returns ORN_OK, or
 * ORN_EINVAL for an invalid customer id, ORN_ENOMEM, ORN_EUNAVAILABLE when a
 * read model fails. */
orn_rc gw_api_quote(gw_api *api, const char *customer, proj_quote *out);

/* A problem of status with detail and one error {field, message}; NULL
 * when it cannot be built (gw_async_complete_problem answers 500 then). */
json_t *gw_api_field_problem(int status, const char *detail, const char *field, const char *message);

/* Answers a problem of status with detail and one error {field, message}
 * (500 when it cannot be built). */
void gw_api_respond_field_error(gw_request *r, int status, const char *detail, const char *field,
                                const char *message);

/* The Idempotency-Key header of r into *key (NULL when absent; the header's
 * own storage, valid while r is). Returns false, after answering 400 naming
 * the header, when it is not 1..GW_API_IDEMPOTENCY_KEY_MAX printable ASCII
 * characters: the handler just returns. */
bool gw_api_idempotency_key(gw_request *r, const char **key);

/* The path parameter name of r if it is an id (gw_valid_id); else answers 400
 * with an error naming the parameter and returns NULL. */
const char *gw_api_path_id(gw_request *r, const char *name);

/* Takes one token from key's bucket of rl: true when allowed (or when rl
 * is NULL). Otherwise adds the Retry-After header (whole seconds, >= 1) to
 * r's answer and returns false: the caller answers 429. */
bool gw_api_limit_take(gw_ratelimit *rl, gw_request *r, const char *key);

/* Takes one attempt from the client address's bucket of
 * api->login_by_address, keyed "<scope>:<address>" (each scope has its own
 * budget, at the same rate). True when allowed (or when there is no
 * limiter). Otherwise adds the Retry-After header (whole seconds, >= 1) to
 * r's answer and returns false: the caller answers 429. */
bool gw_api_address_allowed(gw_api *api, gw_request *r, const char *scope);

/* ---- gw_api_new_password.c: a new password into a command ---- */

#define GW_NEW_PASSWORD_MAX     256 /* bytes of a password */
#define GW_NEW_PASSWORD_ID_MAX  48  /* bytes of the command id, NUL included */
#define GW_NEW_PASSWORD_WHY_MAX 192 /* bytes of a weak password's reason, NUL included */

typedef struct gw_new_password gw_new_password;

typedef enum gw_new_password_outcome {
	GW_NEW_PASSWORD_SEALED,      /* sealed: the hash, sealed for the command's event */
	GW_NEW_PASSWORD_WEAK,        /* why: the rule it breaks (answer 400 naming the field) */
	GW_NEW_PASSWORD_ERASED,      /* the account's key is gone */
	GW_NEW_PASSWORD_UNAVAILABLE, /* a key or the pool failed: 503 */
	GW_NEW_PASSWORD_CANCELLED    /* the pools are stopping: free, the request's deadline answers */
} gw_new_password_outcome;

/* Called once on the loop; why and sealed are valid for the call only. */
typedef void gw_new_password_fn(void *owner, gw_new_password_outcome outcome, const char *why,
                                const char *sealed);

/* Takes password (copied) to a sealed hash for account (its sealed email,
 * kid and password hash are copied): checked by registration's rules
 * against the address, hashed, sealed with the account's key for the event
 * of command_id. done(owner, ...) is called exactly once, maybe before this
 * returns, when this returns ORN_OK; never otherwise (ORN_EINVAL for a
 * password or command id too long, ORN_ENOMEM, ORN_EUNAVAILABLE). */
orn_rc gw_api_new_password(gw_api *api, const proj_user *account, const char *password,
                           const char *command_id, gw_new_password_fn *done, void *owner);

/* ---- gw_api_page.c: the pages of emailed links ---- */

/* A small HTML page (malloc'd, the caller frees it; NULL without memory):
 * title, message and, with action and token, a form POSTing token to action
 * with a button. Every value is escaped. */
char *gw_api_page_html(const char *title, const char *message, const char *action, const char *button,
                       const char *token);

/* Completes a deferred request with a page of title and message (no form);
 * 500 problem when it cannot be made. */
void gw_api_complete_page(gw_async *a, int status, const char *title, const char *message);

/* Whether r's body is a form (application/x-www-form-urlencoded). */
bool gw_api_is_form(gw_request *r);

/* The token of a form body "token=..." (nothing else) into out (cap
 * bytes); false if the body is not exactly that. */
bool gw_api_form_token(gw_request *r, char *out, size_t cap);

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
 * purpose (a short word naming the route), fingerprinting r. body is r's
 * body as the handler parsed it, or NULL to parse it here (a body that is
 * not JSON counts by its bytes). */
void gw_api_keyed_init(gw_api_keyed *out, gw_request *r, const char *purpose, const char *caller,
                       const char *key, const json_t *body);

/* gw_api_send of a keyed request: keyed->command_id is the command's id and
 * its fingerprint travels with it. */
orn_rc gw_api_send_keyed(gw_api *api, const char *aggregate, const char *id, const char *type,
                         const mp_writer *payload, const gw_api_keyed *keyed, const char *actor,
                         gw_bus_fn *fn, void *closure);

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

/* Opens an account's sealed email and, when name is not NULL, its name (their
 * tokens, "email" and "name" fields) into the buffers: ORN_OK, or what
 * ks_open_token returned for the first that failed (ORN_ENOTFOUND: the key is
 * gone). On a key worker when the key may not be cached. */
orn_rc gw_api_open_person(gw_api *api, const char *email_token, const char *name_token, char *email,
                          size_t email_cap, char *name, size_t name_cap);

/* Opens the sealed token (the "email" of an account, as the users model
 * keeps it) and seals its value again as field of the event event_id under
 * the same key: a personal field is bound to the event that carries it (ADR
 * 027). A value written before ADR 027 (clear, no key) is copied as it is.
 * out may be token. ORN_ENOTFOUND if the key is gone; ORN_EUNAVAILABLE
 * without a keystore; what ks_open_token and ks_seal return. */
orn_rc gw_api_reseal(gw_api *api, const char *token, const char *field, const char *event_id, char *out,
                     size_t cap);

/* Runs fn(arg), which opens or seals with the keystore, then done(arg,
 * true) on the loop: at once, before returning, when every token of tokens
 * (count) opens from the cache; else on api->key_work's threads, so the loop
 * never waits on NATS for a key (ADR 027). Every token fn opens belongs in
 * tokens; fn runs with no lock on api and must touch nothing of the loop.
 * ORN_EUNAVAILABLE without a keystore or when the queue is full (neither fn
 * nor done is called then), ORN_ENOMEM. */
orn_rc gw_api_keys_run(gw_api *api, const char *const *tokens, size_t count, gw_work_fn *fn,
                       gw_work_done *done, void *arg);

/* Checks password against an account's sealed password hash (sealed; NULL
 * or "" for an account that does not exist: the dummy hash is verified, so
 * the answer takes as long): the hash opened (on a key worker when its key
 * is not cached), then verified on the password pool. done(rc, NULL, match,
 * arg) on the loop: rc ORN_OK with match (false for no account, or for one
 * whose key is destroyed), ORN_EUNAVAILABLE when the hash cannot be opened
 * or verified now. On ORN_OK done is called exactly once, maybe before this
 * returns; on an error (ORN_EUNAVAILABLE, ORN_EINVAL for a password too long,
 * ORN_ENOMEM) never. */
orn_rc gw_api_check_password(gw_api *api, const char *sealed, const char *password, gw_password_done *done,
                             void *arg);

/* A fresh random command id ("c" + 32 hex digits) into out (>= 34 bytes). */
void gw_api_new_id(char *out, size_t cap);

/* Completes a deferred request after a failed command: 503 for timeouts and
 * unavailable services (rc != ORN_OK or outcome failed), else the status that
 * fits the rejection code (gw_api_rejection_status) with reply->detail. */
void gw_api_complete_failure(gw_async *a, orn_rc rc, const bus_reply *reply);

/* Defers r (GW_API_DEFER_MS) for a command whose payload was written into
 * the text buffer with result encoded. The handle, or NULL after answering:
 * 500 when encoded is not ORN_OK, or gw_request_defer's 500. */
gw_async *gw_api_defer_encoded(gw_request *r, orn_rc encoded);

/* Writes the order view (gw_view_order) of order id, state s, its first
 * history_count entries, into w, with the order's payment as the payments
 * read model has it (none when it has no row or cannot be read: the view
 * then shows what the order itself knows). False when nothing was written
 * (no history entry) or on ENOMEM. */
bool gw_api_write_order(gw_api *api, mp_writer *w, const char *id, const order_state *s,
                        size_t history_count);

/* Calls fn(closure, ORN_OK) once the read models hold seq, or at once
 * without a consistency helper (or when the wait cannot start). */
void gw_api_wait_for(gw_api *api, uint64_t seq, gw_consistency_fn *fn, void *closure);

#endif
