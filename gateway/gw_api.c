/* gw_api.c — the API's context and toolkit: creating it from options,
 * registering a route table behind one access check, and what the route
 * files share (sending commands, keyed requests, the caller's own order, the
 * cart's quote, query parameters, answers to failed commands). It knows no
 * route file: the table is data (gw_routes.c). */
#include "gw_api-internal.h"
#include "gw_api_public.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gw_problem.h"
#include "gw_views.h"
#include "holds.h"
#include "log.h"
#include "proj_cursor.h"

#define LIMITER_KEYS_MAX 100000 /* keys each login limiter tracks */

/* One row of the table as registered: the route's argument. */
typedef struct gw_api_binding {
	gw_api *api;
	const gw_api_route *route;
} gw_api_binding;

/* The token after "Bearer " (case-insensitive scheme), or NULL. */
static const char *bearer_token(gw_request *r)
{
	const char *h = gw_request_header(r, "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return *h != '\0' ? h : NULL;
}

/* Checks the bearer token of r and its account (ADR 021): the signature and
 * claims (gw_jwt_verify), then, in the users read model, that the account
 * exists, that the token's version is the account's and that the token was
 * not ended (logout). The role in the caller's claims is the effective one:
 * admin only while both the token and the account say admin, so a demoted
 * admin loses admin at once. True with *caller filled; otherwise answers —
 * 401 (missing, malformed, expired, badly signed, ended or outdated token, or
 * no such account; with WWW-Authenticate: Bearer), 403 (admin_only and the
 * effective role is not admin) or 503 (the read model cannot be read) — and
 * returns false. */
static bool authorize(gw_request *r, gw_api *api, bool admin_only, gw_caller *caller)
{
	const char *token = bearer_token(r);
	gw_claims *claims = &caller->claims;
	proj_user *user = &caller->account;
	bool revoked = false, ok = false;
	orn_rc rc = ORN_EINVAL;
	if (token != NULL && gw_jwt_verify(api->jwt, token, (int64_t)time(NULL), claims) == ORN_OK)
		rc = api->users != NULL
		             ? proj_users_check_token(api->users, claims->sub, claims->jti, user, &revoked)
		             : ORN_EUNAVAILABLE;
	sodium_memzero(user->password_hash, sizeof user->password_hash);
	if (rc != ORN_OK && rc != ORN_ENOTFOUND && rc != ORN_EINVAL) {
		log_error("users model unreadable", "error", orn_strerror(rc));
		gw_respond_error(r, 503, "the account cannot be checked now; try again");
	} else if (rc != ORN_OK || revoked || user->token_version != claims->ver) {
		/* one answer for every failure: nothing tells an attacker which check failed */
		gw_response_header(r, "WWW-Authenticate", "Bearer");
		gw_respond_error(r, 401, "a valid bearer token is required");
	} else {
		/* admin only while the account is admin too: a demotion takes effect at once */
		claims->role = claims->role == GW_ROLE_ADMIN && user->role == USER_ROLE_ADMIN
		                       ? GW_ROLE_ADMIN
		                       : GW_ROLE_CUSTOMER;
		ok = !admin_only || claims->role == GW_ROLE_ADMIN;
		gw_request_set_owner(r, claims->sub); /* streams are capped per account */
		if (!ok)
			gw_respond_error(r, 403, "this needs the admin role");
	}
	return ok;
}

/* A body with card data is refused on every route before anything reads
 * it (ADR 028): 400 card_data_refused, the body wiped, nothing logged. */
static bool refuses_card_data(gw_request *r)
{
	size_t len = 0;
	unsigned char *raw = (unsigned char *)gw_request_body(r, &len);
	if (raw == NULL || len == 0 || !gw_has_card_data(raw, len))
		return false;
	sodium_memzero(raw, len);
	json_t *problem = gw_problem_new(400, "card data is never accepted here: tokenize the card at the "
	                                      "payment provider (GET /api/v1/payments/config) and send the "
	                                      "payment method id");
	if (problem != NULL)
		json_object_set_new(problem, "code", json_string("card_data_refused"));
	if (problem != NULL)
		gw_respond_problem(r, problem);
	else
		gw_respond_error(r, 500, NULL);
	return true;
}

/* Every route's handler behind its row's access check. */
static void dispatch(gw_request *r, void *arg)
{
	const gw_api_binding *b = arg;
	gw_api *api = b->api;
	gw_caller caller;
	if (api->jwt == NULL) { /* created only to list the routes */
		gw_respond_error(r, 503, "the API is not served here");
		return;
	}
	if (refuses_card_data(r))
		return;
	if (b->route->access == GW_ACCESS_PUBLIC) {
		b->route->handler(r, api, NULL);
		return;
	}
	memset(&caller, 0, sizeof caller);
	if (authorize(r, api, b->route->access == GW_ACCESS_ADMIN, &caller))
		b->route->handler(r, api, &caller);
	sodium_memzero(&caller, sizeof caller);
}

const char *gw_api_access_name(gw_api_access access)
{
	switch (access) {
	case GW_ACCESS_PUBLIC:
		return "public";
	case GW_ACCESS_ACCOUNT:
		return "account";
	case GW_ACCESS_ADMIN:
		return "admin";
	}
	return "?";
}

json_t *gw_api_field_problem(int status, const char *detail, const char *field, const char *message)
{
	json_t *problem = gw_problem_new(status, detail);
	if (problem != NULL && gw_problem_add_error(problem, field, message) != 0) {
		json_decref(problem);
		problem = NULL;
	}
	return problem;
}

void gw_api_respond_field_error(gw_request *r, int status, const char *detail, const char *field,
                                const char *message)
{
	json_t *problem = gw_api_field_problem(status, detail, field, message);
	if (problem == NULL)
		gw_respond_error(r, 500, NULL);
	else
		gw_respond_problem(r, problem);
}

bool gw_api_idempotency_key(gw_request *r, const char **key)
{
	*key = gw_request_header(r, GW_API_IDEMPOTENCY_HEADER);
	if (*key == NULL)
		return true;
	size_t len = strlen(*key);
	bool ok = len >= 1 && len <= GW_API_IDEMPOTENCY_KEY_MAX;
	for (size_t i = 0; ok && i < len; i++)
		ok = (unsigned char)(*key)[i] >= 0x20 && (unsigned char)(*key)[i] <= 0x7E;
	if (ok)
		return true;
	gw_api_respond_field_error(r, 400, "the Idempotency-Key header is invalid", GW_API_IDEMPOTENCY_HEADER,
	                           "must be 1..128 printable ASCII characters");
	return false;
}

const char *gw_api_path_id(gw_request *r, const char *name)
{
	const char *id = gw_request_param(r, name);
	if (id != NULL && gw_valid_id(id))
		return id;
	gw_api_respond_field_error(r, 400, "the id in the path is invalid", name,
	                           "must be 1..64 characters of [A-Za-z0-9_-]");
	return NULL;
}

bool gw_api_address_allowed(gw_api *api, gw_request *r, const char *scope)
{
	char key[96];
	if (api->login_by_address == NULL)
		return true;
	snprintf(key, sizeof key, "%s:%s", scope, gw_request_client_addr(r));
	return gw_api_limit_take(api->login_by_address, r, key);
}

bool gw_api_limit_take(gw_ratelimit *rl, gw_request *r, const char *key)
{
	char seconds[24];
	int64_t wait_ms = 0;
	if (rl == NULL || gw_ratelimit_take(rl, key, orn_monotonic_ns() / 1000000, &wait_ms))
		return true;
	int64_t s = (wait_ms + 999) / 1000;
	snprintf(seconds, sizeof seconds, "%" PRId64, s < 1 ? 1 : s);
	gw_response_header(r, "Retry-After", seconds);
	return false;
}

orn_rc gw_api_open_person(gw_api *api, const char *email_token, const char *name_token, char *email,
                          size_t email_cap, char *name, size_t name_cap)
{
	orn_rc rc = ks_open_token(api->keys, email_token, "email", NULL, email, email_cap);

	if (rc == ORN_OK && name != NULL)
		rc = ks_open_token(api->keys, name_token, "name", NULL, name, name_cap);
	return rc;
}

orn_rc gw_api_reseal(gw_api *api, const char *token, const char *field, const char *event_id, char *out,
                     size_t cap)
{
	char kid[PD_KID_MAX], clear[PD_PLAIN_MAX + 1];
	orn_rc rc = ORN_EUNAVAILABLE;
	if (api->keys == NULL)
		return rc;
	bool sealed = pd_token_kid(token, kid) == ORN_OK;
	if ((rc = ks_open_token(api->keys, token, "email", NULL, clear, sizeof clear)) == ORN_OK)
		rc = sealed ? ks_seal(api->keys, kid, field, event_id, clear, out, cap)
		     : (size_t)snprintf(out, cap, "%s", clear) < cap ? ORN_OK
		                                                     : ORN_ETOOBIG;
	sodium_memzero(clear, sizeof clear);
	return rc;
}

orn_rc gw_api_keys_run(gw_api *api, const char *const *tokens, size_t count, gw_work_fn *fn,
                       gw_work_done *done, void *arg)
{
	bool ready = true;
	if (api->keys == NULL || api->key_work == NULL)
		return ORN_EUNAVAILABLE;
	for (size_t i = 0; ready && i < count; i++)
		ready = ks_token_ready(api->keys, tokens[i]);
	if (!ready)
		return gw_work_queue(api->key_work, fn, done, arg);
	fn(arg);
	done(arg, true);
	return ORN_OK;
}

/* One gw_api_check_password in flight. */
typedef struct password_check {
	gw_api *api;
	char sealed[USER_SEALED_MAX];
	char hash[USER_PASSWORD_HASH_MAX];
	char *password;
	bool known;
	orn_rc opened;
	gw_password_done *done;
	void *arg;
} password_check;

static void password_check_free(password_check *c)
{
	if (c->password != NULL) {
		sodium_memzero(c->password, strlen(c->password));
		free(c->password);
	}
	sodium_memzero(c, sizeof *c);
	free(c);
}

/* The hash opened; a destroyed key: the account is gone. */
static void password_check_open(void *arg)
{
	password_check *c = arg;
	if (!c->known)
		return;
	c->opened = ks_open_token(c->api->keys, c->sealed, "password_hash", NULL, c->hash, sizeof c->hash);
	if (c->opened == ORN_ENOTFOUND) {
		c->known = false;
		c->opened = ORN_OK;
	} else if (c->opened == ORN_OK && c->hash[0] == '\0') {
		c->opened = ORN_EDECODE;
	}
}

static void password_check_verified(orn_rc rc, const char *hash, bool match, void *arg)
{
	password_check *c = arg;
	(void)hash;
	c->done(rc, NULL, rc == ORN_OK && c->known && match, c->arg);
	password_check_free(c);
}

static void password_check_opened(void *arg, bool run)
{
	password_check *c = arg;
	orn_rc rc = run ? c->opened : ORN_EUNAVAILABLE;
	if (rc != ORN_OK)
		log_error("an account's password hash does not open", "error", orn_strerror(rc));
	else
		rc = gw_password_verify_async(c->api->passwords, c->known ? c->hash : c->api->dummy_hash,
		                              c->password, password_check_verified, c);
	sodium_memzero(c->hash, sizeof c->hash);
	if (rc != ORN_OK) {
		if (run)
			c->done(ORN_EUNAVAILABLE, NULL, false, c->arg);
		password_check_free(c);
	}
}

orn_rc gw_api_check_password(gw_api *api, const char *sealed, const char *password, gw_password_done *done,
                             void *arg)
{
	password_check *c = calloc(1, sizeof *c);
	if (c == NULL || (c->password = strdup(password)) == NULL) {
		free(c);
		return ORN_ENOMEM;
	}
	c->api = api;
	c->known = sealed != NULL && sealed[0] != '\0';
	snprintf(c->sealed, sizeof c->sealed, "%s", c->known ? sealed : "");
	c->done = done;
	c->arg = arg;
	const char *tokens[] = {c->sealed};
	orn_rc rc =
	        gw_api_keys_run(api, tokens, c->known ? 1 : 0, password_check_open, password_check_opened, c);
	if (rc != ORN_OK)
		password_check_free(c);
	return rc;
}

void gw_api_new_id(char *out, size_t cap)
{
	unsigned char random[16];
	randombytes_buf(random, sizeof random);
	if (cap < 2 + 2 * sizeof random) {
		if (cap > 0)
			out[0] = '\0';
		return;
	}
	out[0] = 'c';
	sodium_bin2hex(out + 1, cap - 1, random, sizeof random);
}

bool gw_api_query_int(gw_request *r, const char *name, int64_t min, int64_t max, int64_t *out, bool *present,
                      json_t *problem)
{
	const char *s = gw_request_query(r, name);
	char detail[96];
	*present = s != NULL;
	if (s == NULL)
		return true;
	size_t len = strlen(s);
	int64_t value = 0;
	bool ok = len >= 1 && len <= 18 && strspn(s, "0123456789") == len; /* 18 digits fit */
	for (size_t i = 0; ok && i < len; i++)
		value = value * 10 + (s[i] - '0');
	if (!ok || value < min || value > max) {
		snprintf(detail, sizeof detail, "must be an integer from %" PRId64 " to %" PRId64, min, max);
		gw_problem_add_error(problem, name, detail);
		return false;
	}
	*out = value;
	return true;
}

void gw_api_bad_cursor(json_t *problem)
{
	gw_problem_add_error(problem, "cursor", "is not a cursor of this list");
}

void gw_api_answer_list(gw_request *r, orn_rc rc, json_t *body, json_t *problem, const char *unavailable)
{
	if (rc == ORN_EINVAL) {
		gw_api_bad_cursor(problem);
		gw_respond_problem(r, problem);
		problem = NULL;
	} else if (rc != ORN_OK) {
		gw_respond_error(r, 503, unavailable);
	} else {
		gw_respond_json(r, 200, body);
		body = NULL;
	}
	json_decref(problem);
	json_decref(body);
}

bool gw_api_query_cursor(gw_request *r, const char **cursor, json_t *problem)
{
	*cursor = gw_request_query(r, "cursor");
	if (*cursor == NULL || strlen(*cursor) < PROJ_CURSOR_MAX)
		return true;
	gw_api_bad_cursor(problem);
	return false;
}

/* A command in flight: the caller's callback, and what its latency metric needs. */
typedef struct timed_command {
	gw_api *api;
	gw_bus_fn *fn;
	void *closure;
	char aggregate[32];
	char correlation[ENV_ID_MAX]; /* the request's, restored while fn runs */
	int64_t start_ns;
} timed_command;

/* Records orion_command_duration_seconds{aggregate, outcome}, then hands the
 * outcome to the caller. */
static void on_command_done(void *closure, orn_rc rc, bus_reply *reply)
{
	static const double buckets[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025,
	                                 0.05,   0.1,   0.25,  0.5,   1,    3};
	timed_command *t = closure;
	const char *outcome = rc == ORN_ETIMEOUT ? "timeout"
	                      : rc != ORN_OK     ? "unavailable"
	                                         : bus_outcome_name(reply->outcome);
	const char *const labels[] = {"aggregate", t->aggregate, "outcome", outcome, NULL};
	if (t->api->metrics != NULL)
		gw_metrics_observe(t->api->metrics, "orion_command_duration_seconds",
		                   "Time from sending a command to its reply, seen by the gateway.", buckets,
		                   ORN_ARRAY_LEN(buckets), labels,
		                   (double)(orn_monotonic_ns() - t->start_ns) / 1e9);
	/* A command sent from fn (the next step of the same request) carries
	 * the request's correlation id too. */
	log_set_correlation(t->correlation);
	t->fn(t->closure, rc, reply);
	log_set_correlation(NULL);
	free(t);
}

/* Sends one command; request is the fingerprint of a keyed request or "". */
static orn_rc send_command(gw_api *api, const char *aggregate, const char *id, const char *type,
                           const mp_writer *payload, const char *command_id, const char *request,
                           const char *actor, int64_t timeout_ms, gw_bus_fn *fn, void *closure)
{
	env_envelope cmd;
	/* The correlation id is the request's (gw_request_id, set on this
	 * thread while it is handled); the command id without one. */
	const char *correlation = log_correlation()[0] != '\0' ? log_correlation() : NULL;
	orn_rc rc = bus_command_init(&cmd, type, orn_now_ms(), command_id, correlation, actor,
	                             mp_writer_data(payload), mp_writer_size(payload));
	if (rc != ORN_OK || (rc = env_set_field(cmd.request, sizeof cmd.request, request)) != ORN_OK)
		return rc;
	cmd.ttl_ms = (uint32_t)timeout_ms; /* the actor drops it once we stop waiting (ADR 015) */
	timed_command *t = calloc(1, sizeof *t);
	if (t == NULL)
		return ORN_ENOMEM;
	*t = (timed_command){.api = api, .fn = fn, .closure = closure, .start_ns = orn_monotonic_ns()};
	snprintf(t->correlation, sizeof t->correlation, "%s", cmd.correlation);
	snprintf(t->aggregate, sizeof t->aggregate, "%s", aggregate);
	rc = gw_bus_send(api->bus, aggregate, id, &cmd, timeout_ms, on_command_done, t);
	if (rc != ORN_OK)
		free(t); /* gw_bus_send calls back only on ORN_OK */
	return rc;
}

orn_rc gw_api_send(gw_api *api, const char *aggregate, const char *id, const char *type,
                   const mp_writer *payload, const char *command_id, const char *actor, gw_bus_fn *fn,
                   void *closure)
{
	return send_command(api, aggregate, id, type, payload, command_id, "", actor,
	                    GW_API_COMMAND_TIMEOUT_MS, fn, closure);
}

orn_rc gw_api_send_within(gw_api *api, const char *aggregate, const char *id, const char *type,
                          const mp_writer *payload, const char *command_id, const char *actor,
                          int64_t timeout_ms, gw_bus_fn *fn, void *closure)
{
	return send_command(api, aggregate, id, type, payload, command_id, "", actor, timeout_ms, fn,
	                    closure);
}

orn_rc gw_api_send_keyed(gw_api *api, const char *aggregate, const char *id, const char *type,
                         const mp_writer *payload, const gw_api_keyed *keyed, const char *actor,
                         gw_bus_fn *fn, void *closure)
{
	return send_command(api, aggregate, id, type, payload, keyed->command_id, keyed->request, actor,
	                    GW_API_COMMAND_TIMEOUT_MS, fn, closure);
}

/* BLAKE2b-128 of the parts (each NUL-terminated in the hash) as hex. */
static void hash_hex(char *out, size_t cap, const char *domain, const char *const *parts, size_t count,
                     const void *tail, size_t tail_len)
{
	unsigned char digest[16];
	crypto_generichash_state st;
	crypto_generichash_init(&st, (const unsigned char *)domain, strlen(domain), sizeof digest);
	for (size_t i = 0; i < count; i++)
		crypto_generichash_update(&st, (const unsigned char *)parts[i], strlen(parts[i]) + 1);
	if (tail_len > 0)
		crypto_generichash_update(&st, tail, tail_len);
	crypto_generichash_final(&st, digest, sizeof digest);
	sodium_bin2hex(out, cap, digest, sizeof digest);
}

void gw_api_keyed_init(gw_api_keyed *out, gw_request *r, const char *purpose, const char *caller,
                       const char *key, const json_t *body)
{
	const char *id_parts[] = {purpose, caller, key};
	const char *request_parts[] = {gw_method_name(gw_request_method(r)), gw_request_path(r)};
	size_t len = 0;
	const unsigned char *raw = gw_request_body(r, &len);
	/* A JSON body counts by its meaning (sorted keys, compact), so a client
	 * that re-serialises the same request is not refused. */
	json_t *parsed = body == NULL && len > 0
	                         ? json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL)
	                         : NULL;
	const json_t *meaning = len > 0 ? (body != NULL ? body : parsed) : NULL;
	char *canonical =
	        meaning != NULL ? json_dumps(meaning, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	char hex[33];
	hash_hex(hex, sizeof hex, "orion.idem.command", id_parts, 3, NULL, 0);
	snprintf(out->command_id, sizeof out->command_id, "k%s", hex);
	if (canonical != NULL)
		hash_hex(out->request, sizeof out->request, "orion.idem.request", request_parts, 2, canonical,
		         strlen(canonical));
	else
		hash_hex(out->request, sizeof out->request, "orion.idem.request", request_parts, 2, raw, len);
	free(canonical);
	json_decref(parsed);
}

int gw_api_rejection_status(const char *code)
{
	static const struct {
		const char *code;
		int status;
	} table[] = {
	        {"not_found", 404},
	        {"deleted", 404},
	        {"invalid", 400},
	        {"exists", 409},
	        {"sku_taken", 409},
	        {"out_of_stock", 409},
	        {"below_reserved", 409},
	        {"no_change", 409},
	        {"reservation_closed", 409},
	        {"idempotency_key_reused", 422},
	        {"too_many_keyed_requests", 429},
	};
	for (size_t i = 0; i < ORN_ARRAY_LEN(table); i++)
		if (strcmp(code, table[i].code) == 0)
			return table[i].status;
	return 409;
}

void gw_api_complete_failure(gw_async *a, orn_rc rc, const bus_reply *reply)
{
	if (rc != ORN_OK || reply == NULL || reply->outcome == BUS_FAILED) {
		log_warn("command not served", "error", rc != ORN_OK ? orn_strerror(rc) : reply->code);
		gw_async_complete_problem(a, gw_problem_new(503, "a service did not answer; try again"));
		return;
	}
	gw_async_complete_problem(a, gw_problem_new(gw_api_rejection_status(reply->code), reply->detail));
}

proj_catalog_page *gw_api_page_buffer(gw_api *api)
{
	if (api->page_buffer == NULL)
		api->page_buffer = malloc(sizeof *api->page_buffer);
	return api->page_buffer;
}

mp_writer *gw_api_text_buffer(gw_api *api)
{
	if (api->text_buffer == NULL)
		api->text_buffer = mp_writer_create();
	else
		mp_writer_reset(api->text_buffer);
	return api->text_buffer;
}

void gw_api_respond_written(gw_request *r, int status, const mp_writer *w)
{
	if (mp_writer_status(w) != ORN_OK)
		gw_respond_error(r, 500, NULL);
	else
		gw_respond(r, status, "application/json", mp_writer_data(w), mp_writer_size(w));
}

void gw_api_complete_written(gw_async *a, int status, const mp_writer *w)
{
	if (mp_writer_status(w) != ORN_OK)
		gw_async_complete_problem(a, gw_problem_new(500, NULL));
	else
		gw_async_complete_body(a, status, "application/json", mp_writer_data(w), mp_writer_size(w));
}

gw_async *gw_api_defer_encoded(gw_request *r, orn_rc encoded)
{
	if (encoded == ORN_OK)
		return gw_request_defer(r, GW_API_DEFER_MS);
	gw_respond_error(r, 500, NULL);
	return NULL;
}

/* Whether the view of s's first history_count entries shows anything of
 * the payment aggregate: a 3-D Secure challenge while awaiting payment, a
 * refund once cancelled after payment. Other views (a placement's answer
 * among them) read no payment. */
static bool view_needs_payment(const order_state *s, size_t history_count)
{
	size_t shown = history_count < s->history_count ? history_count : s->history_count;
	order_status status = shown > 0 ? s->history[shown - 1].status : ORDER_PENDING;
	return status == ORDER_AWAITING_PAYMENT || (status == ORDER_CANCELLED && s->cancelled_after_payment);
}

bool gw_api_write_order(gw_api *api, mp_writer *w, const char *id, const order_state *s, size_t history_count)
{
	proj_payment *payment = api->payment_views != NULL && view_needs_payment(s, history_count)
	                                ? malloc(sizeof *payment)
	                                : NULL;
	orn_rc rc = payment != NULL ? proj_payments_get(api->payment_views, id, payment) : ORN_ENOTFOUND;
	if (rc != ORN_OK && rc != ORN_ENOTFOUND)
		log_warn("payments model unreadable; the order is shown without its payment", "order", id,
		         "error", orn_strerror(rc));
	bool ok = gw_view_order(w, id, s, history_count, rc == ORN_OK ? &payment->state : NULL);
	free(payment);
	return ok;
}

void gw_api_wait_for(gw_api *api, uint64_t seq, gw_consistency_fn *fn, void *closure)
{
	if (api->consistency == NULL ||
	    gw_consistency_wait(api->consistency, seq, GW_API_READ_YOUR_WRITES_MS, fn, closure) != ORN_OK)
		fn(closure, ORN_OK);
}

orn_rc gw_api_read_own_order(gw_api *api, const char *id, const char *customer, proj_order **out)
{
	*out = malloc(sizeof **out);
	if (*out == NULL)
		return ORN_ENOMEM;
	orn_rc rc = proj_orders_get(api->orders, id, *out);
	if (rc == ORN_OK && strcmp((*out)->state.customer_id, customer) != 0)
		rc = ORN_ENOTFOUND;
	if (rc == ORN_EINVAL)
		rc = ORN_ENOTFOUND;
	if (rc != ORN_OK && rc != ORN_ENOTFOUND)
		rc = ORN_EUNAVAILABLE;
	if (rc != ORN_OK) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

static void on_dropped_line_removed(void *closure, orn_rc rc, bus_reply *reply)
{
	(void)closure;
	if (rc != ORN_OK || reply->outcome != BUS_ACCEPTED)
		log_warn("a deleted product's cart line was not removed", "error",
		         rc != ORN_OK ? orn_strerror(rc) : reply->code);
}

/* Sends RemoveItem{product_id} to the customer's cart, without waiting. */
static void remove_dropped_line(gw_api *api, const char *customer, const char *product_id)
{
	char command_id[40];
	cart_command c = {.kind = CART_REMOVE_ITEM};
	mp_writer *w = gw_api_text_buffer(api);
	snprintf(c.line.product_id, sizeof c.line.product_id, "%s", product_id);
	gw_api_new_id(command_id, sizeof command_id);
	if (w == NULL || cart_command_encode(w, &c) != ORN_OK ||
	    gw_api_send(api, CART_AGGREGATE, customer, CART_CMD_REMOVE_ITEM, w, command_id, customer,
	                on_dropped_line_removed, NULL) != ORN_OK)
		log_warn("cannot send the removal of a deleted product's cart line", "product", product_id);
}

orn_rc gw_api_quote(gw_api *api, const char *customer, proj_quote *out)
{
	if (api->carts == NULL || api->catalog == NULL) {
		memset(out, 0, sizeof *out);
		return ORN_EUNAVAILABLE;
	}
	orn_rc rc = proj_quote_cart(api->carts, api->catalog, customer, out);
	if (rc != ORN_OK)
		return rc == ORN_EINVAL || rc == ORN_ENOMEM ? rc : ORN_EUNAVAILABLE;
	for (size_t i = 0; i < out->dropped_count; i++)
		remove_dropped_line(api, customer, out->dropped[i]);
	return ORN_OK;
}

/* ---- lifecycle ---------------------------------------------------------------- */

void gw_api_options_init(gw_api_options *o)
{
	memset(o, 0, sizeof *o);
}

/* The login limiters of ADR 006 (the pairs that logged in: a set, one token
 * hardly ever refilled). */
static orn_rc create_limiters(gw_api *api, const gw_api_limits *l)
{
	api->login_by_address =
	        gw_ratelimit_create(l->address_per_minute / 60.0, l->address_burst, LIMITER_KEYS_MAX);
	api->login_by_pair = gw_ratelimit_create(l->account_address_per_hour / 3600.0,
	                                         l->account_address_burst, LIMITER_KEYS_MAX);
	api->login_by_account =
	        gw_ratelimit_create(l->account_per_hour / 3600.0, l->account_per_hour, LIMITER_KEYS_MAX);
	api->login_known = gw_ratelimit_create(1e-9, 1, LIMITER_KEYS_MAX);
	return api->login_by_address != NULL && api->login_by_pair != NULL && api->login_by_account != NULL &&
	                       api->login_known != NULL
	               ? ORN_OK
	               : ORN_ENOMEM;
}

/* The limits of POST /orders (ADR 026), checked against the holds' bounds
 * so that a setting never makes every OpenOrder invalid. */
static orn_rc create_order_limits(gw_api *api, const gw_api_order_limits *l)
{
	if (l->max_open_orders < 1 || l->max_open_orders > HOLDS_ORDERS_MAX || l->max_units_per_product < 1 ||
	    l->max_units_per_product > HOLDS_UNITS_LIMIT_MAX || l->burst < 1 || !(l->per_minute > 0))
		return ORN_EINVAL;
	api->order_limited = true;
	api->order_limits = *l;
	api->orders_by_customer = gw_ratelimit_create(l->per_minute / 60.0, l->burst, LIMITER_KEYS_MAX);
	return api->orders_by_customer != NULL ? ORN_OK : ORN_ENOMEM;
}

/* Tokens, confirmation links and passwords from the secret: the signer, the
 * links' key, the password pool and the dummy hash verified for unknown
 * emails, so a login takes as long whether the account exists or not. */
static orn_rc create_accounts(gw_api *api, const gw_api_options *o)
{
	unsigned char random_password[24];
	char password_text[64];
	gw_password_options po;
	orn_rc rc = order_token_key_derive(o->secret, GW_JWT_SECRET_BYTES, api->order_token_key);
	if (rc != ORN_OK)
		return rc;
	if ((api->jwt = gw_jwt_create(o->secret, "orion", "orion-api", 30, api->token_ttl_s)) == NULL)
		return ORN_ENOMEM;
	gw_password_options_init(&po);
	if (o->password_memory_kib > 0)
		po.memlimit = o->password_memory_kib * 1024;
	if ((api->passwords = gw_password_pool_create(gw_server_base(api->server), &po)) == NULL)
		return ORN_ENOMEM;
	/* a key that is not cached is read over NATS: never on the loop (ADR 027) */
	if (api->keys != NULL &&
	    (api->key_work = gw_work_create(gw_server_base(api->server), GW_API_KEY_WORKERS,
	                                    GW_API_KEY_QUEUE_MAX)) == NULL)
		return ORN_ENOMEM;
	randombytes_buf(random_password, sizeof random_password);
	sodium_bin2hex(password_text, sizeof password_text, random_password, sizeof random_password);
	rc = gw_password_hash(&po, password_text, api->dummy_hash);
	sodium_memzero(password_text, sizeof password_text);
	return rc;
}

/* Registers every row of the table behind dispatch. */
static orn_rc register_routes(gw_api *api, const gw_api_route *routes, size_t count)
{
	orn_rc rc = ORN_OK;
	if (count > 0 && (api->bindings = calloc(count, sizeof *api->bindings)) == NULL)
		return ORN_ENOMEM;
	for (size_t i = 0; rc == ORN_OK && i < count; i++) {
		api->bindings[i] = (gw_api_binding){.api = api, .route = &routes[i]};
		api->binding_count = i + 1;
		rc = gw_server_route(api->server, routes[i].method, routes[i].pattern, dispatch,
		                     &api->bindings[i]);
	}
	return rc;
}

orn_rc gw_api_create(const gw_api_options *o, gw_api **out)
{
	gw_api *api = NULL;
	orn_rc rc = ORN_EINVAL;
	*out = NULL;
	if (o->server == NULL)
		return rc;
	if ((api = calloc(1, sizeof *api)) == NULL)
		return ORN_ENOMEM;
	*api = (gw_api){.server = o->server,
	                .bus = o->bus,
	                .consistency = o->consistency,
	                .metrics = o->metrics,
	                .store = o->store,
	                .keys = o->keys,
	                .reservation_ttl_ms = o->reservation_ttl_ms,
	                .low_stock_threshold = o->low_stock_threshold,
	                .payment_timeout_ms = o->payment_timeout_ms,
	                .token_ttl_s = o->token_ttl_s > 0 ? o->token_ttl_s : GW_API_TOKEN_TTL_S,
	                .verify_ttl_s =
	                        o->verify_token_ttl_s > 0 ? o->verify_token_ttl_s : GW_API_VERIFY_TTL_S,
	                .reset_ttl_s = o->reset_token_ttl_s > 0 ? o->reset_token_ttl_s : GW_API_RESET_TTL_S,
	                .unverified_may_order = o->unverified_may_order};
	snprintf(api->psp_public_url, sizeof api->psp_public_url, "%s",
	         o->psp_public_url != NULL ? o->psp_public_url : "");
	snprintf(api->psp_publishable_key, sizeof api->psp_publishable_key, "%s",
	         o->psp_publishable_key != NULL ? o->psp_publishable_key : "");
	snprintf(api->psp_webhook_secret, sizeof api->psp_webhook_secret, "%s",
	         o->psp_webhook_secret != NULL ? o->psp_webhook_secret : "");
	if (o->models != NULL) {
		api->catalog = o->models->catalog;
		api->inventory = o->models->inventory;
		api->users = o->models->users;
		api->orders = o->models->orders;
		api->carts = o->models->carts;
		api->mail = o->models->mail;
		api->payment_views = o->models->payments;
		api->desk = o->models->desk;
	}
	if ((o->limits != NULL && (rc = create_limiters(api, o->limits)) != ORN_OK) ||
	    (o->order_limits != NULL && (rc = create_order_limits(api, o->order_limits)) != ORN_OK) ||
	    (o->secret != NULL && (rc = create_accounts(api, o)) != ORN_OK) ||
	    (rc = register_routes(api, o->routes, o->route_count)) != ORN_OK)
		goto fail;
	*out = api;
	return ORN_OK;
fail:
	gw_api_destroy(api);
	return rc;
}

void gw_api_stop(gw_api *api)
{
	if (api == NULL)
		return;
	gw_public_answer_waiting(api);            /* registrations whose answer waits: at once */
	gw_password_pool_destroy(api->passwords); /* answers what is queued, while the server is there */
	gw_work_destroy(api->key_work);           /* likewise the key requests queued */
	api->passwords = NULL;
	api->key_work = NULL;
}

void gw_api_destroy(gw_api *api)
{
	if (api == NULL)
		return;
	gw_api_stop(api);
	if (api->payments != NULL)
		api->payments_free(api->payments);
	gw_ratelimit_destroy(api->login_by_account);
	gw_ratelimit_destroy(api->login_by_address);
	gw_ratelimit_destroy(api->login_by_pair);
	gw_ratelimit_destroy(api->login_known);
	gw_ratelimit_destroy(api->orders_by_customer);
	gw_jwt_destroy(api->jwt);
	free(api->page_buffer);
	mp_writer_destroy(api->text_buffer);
	free(api->bindings);
	sodium_memzero(api, sizeof *api); /* the links' key and the dummy hash */
	free(api);
}
