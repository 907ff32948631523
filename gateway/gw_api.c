/* gw_api.c — what the API handlers share: registration, bearer-token checks,
 * sending commands, and turning failed commands into answers. */
#include "gw_api.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gw_problem.h"
#include "proj_cursor.h"
#include "log.h"

orn_rc gw_api_register(gw_api *api)
{
	orn_rc rc = gw_api_register_public(api);
	if (rc == ORN_OK)
		rc = gw_api_register_admin(api);
	if (rc == ORN_OK)
		rc = gw_api_register_cart(api);
	if (rc == ORN_OK)
		rc = gw_api_register_orders(api);
	if (rc == ORN_OK)
		rc = gw_api_register_payment(api);
	if (rc == ORN_OK)
		rc = gw_api_register_mail(api);
	if (rc == ORN_OK)
		rc = gw_api_register_inventory_feed(api);
	return rc;
}

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

bool gw_api_authorize(gw_request *r, gw_api *api, bool admin_only, gw_claims *claims)
{
	const char *token = bearer_token(r);
	proj_user user = {0};
	bool revoked = false, ok = false;
	orn_rc rc = ORN_EINVAL;
	if (token != NULL && gw_jwt_verify(api->jwt, token, (int64_t)time(NULL), claims) == ORN_OK)
		rc = api->users != NULL
		             ? proj_users_check_token(api->users, claims->sub, claims->jti, &user, &revoked)
		             : ORN_EUNAVAILABLE;
	if (rc != ORN_OK && rc != ORN_ENOTFOUND && rc != ORN_EINVAL) {
		log_error("users model unreadable", "error", orn_strerror(rc));
		gw_respond_error(r, 503, "the account cannot be checked now; try again");
	} else if (rc != ORN_OK || revoked || user.token_version != claims->ver) {
		/* one answer for every failure: nothing tells an attacker which check failed */
		gw_response_header(r, "WWW-Authenticate", "Bearer");
		gw_respond_error(r, 401, "a valid bearer token is required");
	} else {
		/* admin only while the account is admin too: a demotion takes effect at once */
		claims->role = claims->role == GW_ROLE_ADMIN && user.role == USER_ROLE_ADMIN
		                       ? GW_ROLE_ADMIN
		                       : GW_ROLE_CUSTOMER;
		ok = !admin_only || claims->role == GW_ROLE_ADMIN;
		gw_request_set_owner(r, claims->sub); /* streams are capped per account */
		if (!ok)
			gw_respond_error(r, 403, "this needs the admin role");
	}
	sodium_memzero(user.password_hash, sizeof user.password_hash);
	return ok;
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
	json_t *problem = gw_problem_new(400, "the Idempotency-Key header is invalid");
	gw_problem_add_error(problem, GW_API_IDEMPOTENCY_HEADER, "must be 1..128 printable ASCII characters");
	gw_respond_problem(r, problem);
	return false;
}

const char *gw_api_path_id(gw_request *r, const char *name)
{
	const char *id = gw_request_param(r, name);
	if (id != NULL && gw_valid_id(id))
		return id;
	json_t *problem = gw_problem_new(400, "the id in the path is invalid");
	gw_problem_add_error(problem, name, "must be 1..64 characters of [A-Za-z0-9_-]");
	gw_respond_problem(r, problem);
	return NULL;
}

bool gw_api_address_allowed(gw_api *api, gw_request *r, const char *scope)
{
	char key[96], seconds[24];
	int64_t wait_ms = 0;
	if (api->login_by_address == NULL)
		return true;
	snprintf(key, sizeof key, "%s:%s", scope, gw_request_client_addr(r));
	if (gw_ratelimit_take(api->login_by_address, key, orn_monotonic_ns() / 1000000, &wait_ms))
		return true;
	int64_t s = (wait_ms + 999) / 1000;
	snprintf(seconds, sizeof seconds, "%" PRId64, s < 1 ? 1 : s);
	gw_response_header(r, "Retry-After", seconds);
	return false;
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

void gw_api_format_time(int64_t ms, char out[GW_API_TIME_MAX])
{
	struct tm tm;
	int64_t frac = ms % 1000;
	if (frac < 0) /* before the epoch: the second below, and a positive fraction */
		frac += 1000;
	time_t seconds = (time_t)((ms - frac) / 1000);
	if (gmtime_r(&seconds, &tm) == NULL) {
		snprintf(out, GW_API_TIME_MAX, "1970-01-01T00:00:00.000Z");
		return;
	}
	size_t n = strftime(out, GW_API_TIME_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, GW_API_TIME_MAX - n, ".%03dZ", (int)frac);
}

json_t *gw_api_time_json(int64_t ms, bool zero_is_null)
{
	char text[GW_API_TIME_MAX];
	if (zero_is_null && ms <= 0)
		return json_null();
	gw_api_format_time(ms, text);
	return json_string(text);
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
                       const char *key)
{
	const char *id_parts[] = {purpose, caller, key};
	const char *request_parts[] = {gw_method_name(gw_request_method(r)), gw_request_path(r)};
	size_t len = 0;
	const unsigned char *raw = gw_request_body(r, &len);
	/* A JSON body counts by its meaning (sorted keys, compact), so a client
	 * that re-serialises the same request is not refused. */
	json_t *body = len > 0 ? json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	char *canonical =
	        body != NULL ? json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	char hex[33];
	hash_hex(hex, sizeof hex, "orion.idem.command", id_parts, 3, NULL, 0);
	snprintf(out->command_id, sizeof out->command_id, "k%s", hex);
	if (canonical != NULL)
		hash_hex(out->request, sizeof out->request, "orion.idem.request", request_parts, 2, canonical,
		         strlen(canonical));
	else
		hash_hex(out->request, sizeof out->request, "orion.idem.request", request_parts, 2, raw, len);
	free(canonical);
	json_decref(body);
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

void gw_api_dispose(gw_api *api)
{
	free(api->page_buffer);
	api->page_buffer = NULL;
	sodium_memzero(api->order_token_key, sizeof api->order_token_key);
	mp_writer_destroy(api->text_buffer);
	api->text_buffer = NULL;
	gw_api_payments_free(api);
}

orn_rc gw_api_register_routes(gw_api *api, const gw_api_route *routes, size_t count)
{
	orn_rc rc = ORN_OK;
	for (size_t i = 0; rc == ORN_OK && i < count; i++)
		rc = gw_server_route(api->server, routes[i].method, routes[i].pattern, routes[i].handler,
		                     api);
	return rc;
}
