/* gw_api_public.c — the public routes: accounts (register, login, /me) and
 * the catalog (list with search and filters, one product).
 *
 * Reads go straight to the LMDB read models on the loop thread (they never
 * block on NATS). Register and login need Argon2id, which runs on the password
 * pool. Register answers 202 {"status":"verification_sent"} whether the
 * address has an account or not (ADR 031): the password is hashed either way;
 * a new address gets an unverified account (RegisterUser with its
 * verification link's request), a known one RepeatRegistration (its owner is
 * told by email); both wait until the users read model holds the result, so
 * a login right after the answer finds a new account. Those two routes defer their request (gw_request_defer)
 * and each step's callback, on the loop thread, either starts the next step or completes the request and
 * frees the step's closure: every path frees it exactly once.
 *
 * Login limits (ADR 006, "Login limits"). Failed logins are limited per
 * (account, client address) — 5, then one a minute — and per address (20,
 * then 20 a minute), and per account over all addresses by a ceiling far
 * above what a person does (100 an hour), past which only addresses that
 * logged into the account before may try. A token is taken from each budget
 * BEFORE the password is hashed (so concurrent guesses cannot overdraw a
 * budget, and Argon2 time is bounded per address) and given back when the
 * password was right: successful logins cost nothing. A wrong password from
 * one address therefore never stops the right one from another.
 * Registration charges the per-address budget too (it hashes), and keeps it. */
#include "gw_api_public.h"

#include <event2/event.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_api-internal.h"
#include "gw_problem.h"
#include "gw_views.h"
#include "log.h"
#include "user.h"

#define CREDENTIALS_REJECTED "invalid email or password" /* one text: nothing tells which was wrong */
#define QUERY_INVALID        "invalid query parameters"
#define BODY_INVALID         "the request body is invalid"
#define NAME_BYTES_MAX       (USER_NAME_MAX - 1)
#define Q_BYTES_MAX          200
#define CURSOR_BYTES_MAX     (PROJ_CURSOR_MAX - 1)
#define LIMIT_DEFAULT        20u
#define PASSWORD_REASON_MAX  192
#define EMAIL_RULE                                                                                           \
	"must be an address of RFC 5321 syntax: ASCII letters, digits and !#$%&'*+-/=?^_`{|}~ (dots "        \
	"between) "                                                                                          \
	"before the @, a domain name with a dot after it (international domains as xn--)"

/* ---- shared helpers ------------------------------------------------------ */

static int64_t monotonic_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Takes one token for key from rl (a missing limiter allows). On refusal
 * *retry_ms grows to the longest wait seen. */
static bool limit_take(gw_ratelimit *rl, const char *key, int64_t now_ms, int64_t *retry_ms)
{
	int64_t wait_ms = 0;
	if (rl == NULL)
		return true;
	if (gw_ratelimit_take(rl, key, now_ms, &wait_ms))
		return true;
	if (wait_ms > *retry_ms)
		*retry_ms = wait_ms;
	return false;
}

/* 429 with Retry-After in whole seconds (at least 1). */
static void respond_rate_limited(gw_request *r, int64_t retry_ms)
{
	char seconds[24];
	int64_t s = (retry_ms + 999) / 1000;
	snprintf(seconds, sizeof seconds, "%" PRId64, s < 1 ? 1 : s);
	gw_response_header(r, "Retry-After", seconds);
	gw_respond_error(r, 429, "too many attempts; retry later");
}

/* Whether the password pool took the work (rc); else completes a with 503
 * (the pool is stopping or full) or 500 and detail. */
static bool password_work_started(gw_async *a, orn_rc rc, const char *detail)
{
	if (rc != ORN_OK)
		gw_async_complete_problem(a, gw_problem_new(rc == ORN_EUNAVAILABLE ? 503 : 500, detail));
	return rc == ORN_OK;
}

/* {id, email, name, role}: the public view of an account (never the hash). */
static json_t *user_json(const char *user_id, const char *email, const char *name, user_role role)
{
	const char *role_name = user_role_name(role);
	return json_pack("{s:s, s:s, s:s, s:s}", "id", user_id, "email", email, "name", name, "role",
	                 role_name != NULL ? role_name : "customer");
}

/* ---- POST /api/v1/auth/register ------------------------------------------ */

static const gw_field register_schema[] = {
        {.name = "email", .type = GW_STRING, .required = true, .min = 1, .max = 254},
        {.name = "password", .type = GW_STRING, .required = true, .min = 8, .max = 256},
        {.name = "name", .type = GW_STRING, .required = true, .min = 1, .max = 100},
        {0},
};

/* One registration in flight; owned by whichever callback runs next. */
typedef struct registration {
	gw_api *api;
	struct registration *next, *prev; /* in api->padded while its answer waits */
	struct event *timer;              /* the wait */
	gw_async *async;
	char key[USER_KEY_MAX];
	char command_id[40];
	char email[USER_EMAIL_MAX]; /* as typed (normalized); the command carries it sealed */
	char name[USER_NAME_MAX];
	char hash[USER_PASSWORD_HASH_MAX]; /* until sealed */
	bool exists;                       /* the users model has an account of this address */
	orn_rc sealed;                     /* seal_account's outcome, on the key worker */
	char request_id[USER_JTI_MAX];     /* of the verification link or the repeat notice */
	int64_t now;                       /* seconds: the commands' time (the decider has no clock) */
	int64_t started_ms;                /* monotonic: when the request came */
	user_command command;
} registration;

static void registration_free(registration *reg)
{
	sodium_memzero(reg, sizeof *reg);
	free(reg);
}

/* The last step: answers 202, the same for a new and a known address, and
 * frees reg. */
static void registration_complete(registration *reg)
{
	gw_async_complete_json(reg->async, 202, json_pack("{s:s}", "status", "verification_sent"));
	registration_free(reg);
}

/* Takes reg out of the waiting answers and answers it. */
static void registration_unpad(registration *reg)
{
	gw_api *api = reg->api;
	if (reg->prev != NULL)
		reg->prev->next = reg->next;
	else
		api->padded = reg->next;
	if (reg->next != NULL)
		reg->next->prev = reg->prev;
	event_free(reg->timer);
	registration_complete(reg);
}

static void registration_padded(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	registration_unpad(arg);
}

void gw_public_answer_waiting(gw_api *api)
{
	while (api->padded != NULL)
		registration_unpad(api->padded);
}

/* A new account's registration stores a key and appends an account; a known
 * address's appends at most a notice. So that the time of the answer does
 * not tell them apart, a known address's answer waits until it took as long
 * as new accounts' take here (a moving average), and a new account's time
 * feeds that average (ADR 031). */
static void registration_answer(registration *reg)
{
	gw_api *api = reg->api;
	int64_t elapsed = monotonic_ms() - reg->started_ms;
	if (!reg->exists) {
		api->register_new_ms = api->register_new_ms <= 0
		                               ? (double)elapsed
		                               : 0.8 * api->register_new_ms + 0.2 * (double)elapsed;
		registration_complete(reg);
		return;
	}
	int64_t wait_ms = (int64_t)api->register_new_ms - elapsed;
	struct timeval tv = {.tv_sec = wait_ms / 1000, .tv_usec = (wait_ms % 1000) * 1000};
	if (wait_ms <= 0 ||
	    (reg->timer = evtimer_new(gw_server_base(api->server), registration_padded, reg)) == NULL) {
		registration_complete(reg);
		return;
	}
	if (evtimer_add(reg->timer, &tv) != 0) {
		event_free(reg->timer);
		registration_complete(reg);
		return;
	}
	reg->next = api->padded;
	if (reg->next != NULL)
		reg->next->prev = reg;
	api->padded = reg;
}

/* The read model holds the result (ORN_OK), or the wait timed out or was
 * cut short: answer 202 either way; a login may then briefly get 401 until
 * the model catches up. */
static void registration_visible(void *closure, orn_rc rc)
{
	registration *reg = closure;
	if (rc != ORN_OK)
		log_warn("registration answered before the users model caught up", "error", orn_strerror(rc));
	registration_answer(reg);
}

static void registration_repeat_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	registration *reg = closure;
	if (rc != ORN_OK || reply->outcome != BUS_ACCEPTED) {
		gw_api_complete_failure(reg->async, rc, reply);
		registration_free(reg);
		return;
	}
	gw_api_wait_for(reg->api, reply->seq, registration_visible, reg);
}

/* The address has an account: RepeatRegistration, whose event (within the
 * account's mail budget) has the mail role tell the owner. */
static void registration_repeat(registration *reg)
{
	user_command c = {.kind = USER_REPEAT_REGISTRATION, .fields = {.at = reg->now}};
	mp_writer *payload = mp_writer_create();
	snprintf(c.fields.request_id, sizeof c.fields.request_id, "%s", reg->request_id);
	orn_rc rc = payload == NULL ? ORN_ENOMEM : user_command_encode(payload, &c);
	if (rc == ORN_OK)
		rc = gw_api_send(reg->api, USER_AGGREGATE, reg->key,
		                 user_command_type(USER_REPEAT_REGISTRATION), payload, reg->command_id, NULL,
		                 registration_repeat_replied, reg);
	mp_writer_destroy(payload);
	if (rc != ORN_OK) {
		log_warn("registration failed", "error", orn_strerror(rc));
		gw_api_complete_failure(reg->async, rc, NULL);
		registration_free(reg);
	}
}

static void registration_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	registration *reg = closure;
	if (rc == ORN_OK && reply->outcome == BUS_REJECTED && strcmp(reply->code, "exists") == 0) {
		/* registered since the users model was read: the owner hears of it */
		registration_repeat(reg);
		return;
	}
	if (rc != ORN_OK || reply->outcome != BUS_ACCEPTED) {
		gw_api_complete_failure(reg->async, rc, reply);
		registration_free(reg);
		return;
	}
	gw_api_wait_for(reg->api, reply->seq, registration_visible, reg);
}

/* Seals the account's email, name and password hash with a new data key
 * of its own, for the event the registration's command causes (ADR 027).
 * The key is stored before it seals anything. The account is unverified,
 * with its verification link's request (ADR 031): the hash of the token the
 * mail role will compute again from the request id. */
static orn_rc seal_account(registration *reg)
{
	const char *hash = reg->hash;
	user_fields *f = &reg->command.fields;
	uint8_t key[PD_KEY_BYTES];
	char token[PD_LINK_MAX];
	f->unverified = true;
	snprintf(f->request_id, sizeof f->request_id, "%s", reg->request_id);
	f->expires_at = reg->now + reg->api->verify_ttl_s;
	orn_rc rc = ks_link_token(reg->api->keys, USER_LINK_VERIFY, reg->key, reg->request_id, token);
	if (rc == ORN_OK)
		pd_link_hash(token, f->token_hash);
	sodium_memzero(token, sizeof token);
	if (rc == ORN_OK)
		rc = ks_key_create(reg->api->keys, f->kid, key);
	if (rc == ORN_OK)
		rc = pd_seal(key, f->kid, "email", reg->command_id, reg->email, strlen(reg->email), f->email,
		             sizeof f->email);
	if (rc == ORN_OK)
		rc = pd_seal(key, f->kid, "name", reg->command_id, reg->name, strlen(reg->name), f->name,
		             sizeof f->name);
	if (rc == ORN_OK)
		rc = pd_seal(key, f->kid, "password_hash", reg->command_id, hash, strlen(hash),
		             f->password_hash, sizeof f->password_hash);
	sodium_memzero(key, sizeof key);
	sodium_memzero(reg->hash, sizeof reg->hash);
	return rc;
}

/* A new account as typed, checked as the decider once did: the decider sees
 * only sealed fields now. NULL or the first field out of bounds. */
static const char *clear_invalid(const registration *reg, const char *hash)
{
	user_fields clear = reg->command.fields;
	snprintf(clear.email, sizeof clear.email, "%s", reg->email);
	snprintf(clear.name, sizeof clear.name, "%s", reg->name);
	snprintf(clear.password_hash, sizeof clear.password_hash, "%s", hash);
	const char *field = user_clear_invalid_field(&clear);
	sodium_memzero(&clear, sizeof clear);
	return field;
}

static void registration_seal(void *arg);
static void registration_sealed(void *arg, bool run);

static void registration_hashed(orn_rc rc, const char *hash, bool match, void *arg)
{
	registration *reg = arg;
	const char *invalid;
	(void)match;
	if (rc != ORN_OK || hash == NULL || strlen(hash) >= USER_PASSWORD_HASH_MAX) {
		rc = rc != ORN_OK ? rc : ORN_EINTERNAL;
		goto fail;
	}
	if ((invalid = clear_invalid(reg, hash)) != NULL) {
		json_t *problem = gw_problem_new(400, BODY_INVALID);
		if (problem != NULL)
			gw_problem_add_error(problem, invalid, "is not valid");
		gw_async_complete_problem(reg->async, problem);
		registration_free(reg);
		return;
	}
	if (reg->exists) {
		/* no key is made for an address that has an account (ADR 027) */
		registration_repeat(reg);
		return;
	}
	snprintf(reg->hash, sizeof reg->hash, "%s", hash);
	/* storing the new key is a JetStream publish: off the loop */
	if ((rc = gw_work_queue(reg->api->key_work, registration_seal, registration_sealed, reg)) != ORN_OK)
		goto fail;
	return;
fail:
	log_warn("registration failed", "error", orn_strerror(rc));
	gw_api_complete_failure(reg->async, rc, NULL);
	registration_free(reg);
}

/* On a key worker: the new key stored, the fields sealed. */
static void registration_seal(void *arg)
{
	registration *reg = arg;
	reg->sealed = seal_account(reg);
}

/* On the loop: sends RegisterUser with the sealed fields. */
static void registration_sealed(void *arg, bool run)
{
	registration *reg = arg;
	mp_writer *payload = NULL;
	orn_rc rc = reg->sealed;
	if (!run) { /* the pool is going: the request is answered by its deadline */
		registration_free(reg);
		return;
	}
	if (rc != ORN_OK)
		goto fail;
	if ((payload = mp_writer_create()) == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	if ((rc = user_command_encode(payload, &reg->command)) != ORN_OK)
		goto fail;
	/* the hash is in the payload now; the closure keeps only what the 201 shows */
	sodium_memzero(reg->command.fields.password_hash, sizeof reg->command.fields.password_hash);
	rc = gw_api_send(reg->api, USER_AGGREGATE, reg->key, user_command_type(USER_REGISTER), payload,
	                 reg->command_id, NULL, registration_replied, reg);
	if (rc != ORN_OK)
		goto fail;
	mp_writer_destroy(payload);
	return;
fail:
	log_warn("registration failed", "error", orn_strerror(rc));
	mp_writer_destroy(payload);
	gw_api_complete_failure(reg->async, rc, NULL);
	registration_free(reg);
}

/* Whether the address has an account the users model knows (an erased one
 * may register again: ADR 027), into reg->exists; false after answering 503
 * when the model cannot be read. */
static bool registration_lookup(gw_request *r, gw_api *api, registration *reg)
{
	proj_user *user = malloc(sizeof *user);
	orn_rc rc = user == NULL ? ORN_ENOMEM : proj_users_get_by_key(api->users, reg->key, user);
	reg->exists = rc == ORN_OK && user->erasure != USER_ERASED;
	if (user != NULL) {
		sodium_memzero(user, sizeof *user);
		free(user);
	}
	if (rc != ORN_OK && rc != ORN_ENOTFOUND) {
		log_error("users model unreadable", "error", orn_strerror(rc));
		gw_respond_error(r, rc == ORN_ENOMEM ? 500 : 503, "cannot register now; try again");
		return false;
	}
	return true;
}

/* A random public user id: 32 hex digits (not the email key, which starts
 * with 'u' and has 33 characters; the id reveals nothing about the address).
 * Also an emailed link's request id. */
void gw_public_new_random_id(char *out, size_t cap)
{
	unsigned char random[16];
	randombytes_buf(random, sizeof random);
	sodium_bin2hex(out, cap, random, sizeof random);
}

void gw_public_register(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body = NULL;
	registration *reg = NULL;
	int64_t retry_ms = 0;
	orn_rc rc;
	if (!gw_request_json(r, register_schema, &body))
		return;
	const char *name = gw_json_string(body, "name", "");
	if (strlen(name) > NAME_BYTES_MAX) {
		gw_api_respond_field_error(r, 400, BODY_INVALID, "name",
		                           "must be at most 100 bytes of UTF-8");
		goto done;
	}
	if ((reg = calloc(1, sizeof *reg)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	if (user_email_normalize(gw_json_string(body, "email", ""), reg->email, sizeof reg->email) !=
	            ORN_OK ||
	    !user_email_syntax_valid(reg->email)) {
		gw_api_respond_field_error(r, 400, BODY_INVALID, "email", EMAIL_RULE);
		goto done;
	}
	if (api->keys == NULL) {
		gw_respond_error(r, 503, "cannot register now; try again");
		goto done;
	}
	ks_blind_index(api->keys, reg->email, reg->key); /* never the address in a subject (ADR 027) */
	if (!registration_lookup(r, api, reg))
		goto done;
	/* ADR 022: common and email-derived passwords are refused before any hashing */
	char why[PASSWORD_REASON_MAX];
	rc = gw_password_quality(gw_json_string(body, "password", ""), reg->email, why, sizeof why);
	if (rc == ORN_EINVAL) {
		gw_api_respond_field_error(r, 400, BODY_INVALID, "password", why);
		goto done;
	} else if (rc != ORN_OK) {
		log_error("cannot check a password's quality", "error", orn_strerror(rc));
		gw_respond_error(r, 503, "cannot register now; try again");
		goto done;
	}
	char address_key[8 + GW_LIMIT_ADDRESS_MAX];
	snprintf(address_key, sizeof address_key, "ip:%s", gw_request_client_addr(r));
	if (!limit_take(api->login_by_address, address_key, monotonic_ms(), &retry_ms)) {
		respond_rate_limited(r, retry_ms);
		goto done;
	}
	reg->api = api;
	reg->command.kind = USER_REGISTER;
	reg->command.fields.role = USER_ROLE_CUSTOMER;
	snprintf(reg->name, sizeof reg->name, "%s", name);
	gw_public_new_random_id(reg->command.fields.user_id, sizeof reg->command.fields.user_id);
	gw_public_new_random_id(reg->request_id, sizeof reg->request_id);
	reg->now = (int64_t)time(NULL);
	reg->started_ms = monotonic_ms();
	gw_api_new_id(reg->command_id, sizeof reg->command_id);
	if ((reg->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done; /* answered 500 */
	rc = gw_password_hash_async(api->passwords, gw_json_string(body, "password", ""), registration_hashed,
	                            reg);
	if (password_work_started(reg->async, rc, "cannot register now; try again"))
		reg = NULL; /* registration_hashed owns it now */
done:
	if (reg != NULL)
		registration_free(reg);
	json_decref(body);
}

/* ---- POST /api/v1/auth/login --------------------------------------------- */

static const gw_field login_schema[] = {
        {.name = "email", .type = GW_STRING, .required = true, .max = 254},
        {.name = "password", .type = GW_STRING, .required = true, .max = 256},
        {0},
};

/* One login in flight; owned by login_verified. The limiter keys charged
 * before hashing, given back if the password is right. */
typedef struct login {
	gw_api *api;
	gw_async *async;
	bool known; /* the account exists (else the dummy hash was verified) */
	bool account_charged;
	char user_id[USER_ID_MAX];
	gw_role role;
	int64_t token_version;
	char address_key[8 + GW_LIMIT_ADDRESS_MAX];
	char pair_key[8 + USER_EMAIL_MAX + GW_LIMIT_ADDRESS_MAX];
	char account_key[8 + USER_EMAIL_MAX];
	char sealed[USER_SEALED_MAX]; /* the account's password hash as the model keeps it */
} login;

static void login_free(login *attempt)
{
	sodium_memzero(attempt, sizeof *attempt);
	free(attempt);
}

/* The right password: the attempt costs no budget, and the address may pass
 * the account's ceiling from now on. */
static void login_succeeded(login *attempt)
{
	gw_api *api = attempt->api;
	if (api->login_by_address != NULL)
		gw_ratelimit_refund(api->login_by_address, attempt->address_key);
	if (api->login_by_pair != NULL)
		gw_ratelimit_refund(api->login_by_pair, attempt->pair_key);
	if (api->login_by_account != NULL && attempt->account_charged)
		gw_ratelimit_refund(api->login_by_account, attempt->account_key);
	if (api->login_known != NULL)
		gw_ratelimit_take(api->login_known, attempt->pair_key, monotonic_ms(), NULL);
}

static void login_verified(orn_rc rc, const char *hash, bool match, void *arg)
{
	login *attempt = arg;
	char *token = NULL;
	(void)hash;
	if (rc != ORN_OK) {
		gw_async_complete_problem(attempt->async,
		                          gw_problem_new(503, "cannot log in now; try again"));
	} else if (!attempt->known || !match) {
		gw_async_complete_problem(attempt->async, gw_problem_new(401, CREDENTIALS_REJECTED));
	} else if ((rc = gw_jwt_sign(attempt->api->jwt, attempt->user_id, attempt->role,
	                             attempt->token_version, (int64_t)time(NULL), attempt->api->token_ttl_s,
	                             &token)) != ORN_OK) {
		log_error("cannot sign a token", "error", orn_strerror(rc));
		gw_async_complete_problem(attempt->async, gw_problem_new(500, NULL));
	} else {
		login_succeeded(attempt);
		gw_async_complete_json(attempt->async, 200,
		                       json_pack("{s:s, s:s, s:I}", "access_token", token, "token_type",
		                                 "Bearer", "expires_in",
		                                 (json_int_t)attempt->api->token_ttl_s));
		sodium_memzero(token, strlen(token));
		free(token);
	}
	login_free(attempt);
}

/* The gateway role of a model role; false for a role no token may carry. */
static bool token_role(user_role role, gw_role *out)
{
	switch (role) {
	case USER_ROLE_CUSTOMER:
		*out = GW_ROLE_CUSTOMER;
		return true;
	case USER_ROLE_ADMIN:
		*out = GW_ROLE_ADMIN;
		return true;
	default:
		return false;
	}
}

/* Takes one failure from every login budget of the attempt (see the top of
 * the file). False, with *retry_ms the longest wait, when one refuses: the
 * tokens already taken are given back (the attempt does not happen). */
static bool login_charge(login *attempt, const char *address, const char *email, int64_t *retry_ms)
{
	gw_api *api = attempt->api;
	int64_t now_ms = monotonic_ms();
	snprintf(attempt->address_key, sizeof attempt->address_key, "ip:%s", address);
	snprintf(attempt->pair_key, sizeof attempt->pair_key, "pair:%s|%s", address, email);
	snprintf(attempt->account_key, sizeof attempt->account_key, "acct:%s", email);
	bool by_address = limit_take(api->login_by_address, attempt->address_key, now_ms, retry_ms);
	bool by_pair = limit_take(api->login_by_pair, attempt->pair_key, now_ms, retry_ms);
	if (by_address && by_pair) {
		/* the ceiling: an address the account logged in from passes it */
		attempt->account_charged =
		        limit_take(api->login_by_account, attempt->account_key, now_ms, retry_ms);
		if (attempt->account_charged ||
		    (api->login_known != NULL && gw_ratelimit_tracked(api->login_known, attempt->pair_key)))
			return true;
	}
	if (by_address && api->login_by_address != NULL)
		gw_ratelimit_refund(api->login_by_address, attempt->address_key);
	if (by_pair && api->login_by_pair != NULL)
		gw_ratelimit_refund(api->login_by_pair, attempt->pair_key);
	return false;
}

void gw_public_login(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body = NULL;
	login *attempt = NULL;
	proj_user *user = NULL;
	char email[USER_EMAIL_MAX];
	int64_t retry_ms = 0;
	orn_rc rc;
	if (!gw_request_json(r, login_schema, &body))
		return;
	if (user_email_normalize(gw_json_string(body, "email", ""), email, sizeof email) != ORN_OK) {
		gw_api_respond_field_error(r, 400, BODY_INVALID, "email", "must be a valid email address");
		goto done;
	}
	if ((attempt = calloc(1, sizeof *attempt)) == NULL || (user = malloc(sizeof *user)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	attempt->api = api;
	/* every budget is charged before any hashing (see the top of the file) */
	if (!login_charge(attempt, gw_request_client_addr(r), email, &retry_ms)) {
		respond_rate_limited(r, retry_ms);
		goto done;
	}
	char index[PD_INDEX_MAX];
	rc = ORN_EUNAVAILABLE;
	if (api->keys != NULL) {
		ks_blind_index(api->keys, email, index);
		rc = proj_users_get_by_key(api->users, index, user);
	}
	/* only an active account logs in */
	if (rc == ORN_OK && user->erasure != USER_ACTIVE)
		rc = ORN_ENOTFOUND;
	if (rc == ORN_OK && token_role(user->role, &attempt->role)) {
		attempt->known = true;
		attempt->token_version = user->token_version;
		snprintf(attempt->user_id, sizeof attempt->user_id, "%s", user->user_id);
		memcpy(attempt->sealed, user->password_hash, sizeof attempt->sealed);
	} else if (rc != ORN_OK && rc != ORN_ENOTFOUND && rc != ORN_EINVAL) {
		log_error("users model unreadable", "error", orn_strerror(rc));
		gw_respond_error(r, 503, "cannot log in now; try again");
		goto done;
	}
	if ((attempt->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done; /* answered 500 */
	/* an unknown account verifies the dummy hash: the answer takes as long */
	gw_async *async = attempt->async; /* login_verified may free attempt before the call returns */
	rc = gw_api_check_password(api, attempt->known ? attempt->sealed : NULL,
	                           gw_json_string(body, "password", ""), login_verified, attempt);
	if (password_work_started(async, rc, "cannot log in now; try again"))
		attempt = NULL; /* login_verified owns it now */
done:
	if (user != NULL) {
		sodium_memzero(user, sizeof *user);
		free(user);
	}
	if (attempt != NULL)
		login_free(attempt);
	json_decref(body);
}

/* ---- GET /api/v1/me ------------------------------------------------------ */

/* One GET /me in flight: the account's sealed fields and, once opened, clear. */
typedef struct me_view {
	gw_api *api;
	gw_async *async;
	proj_user account;
	char email[USER_EMAIL_MAX], name[USER_NAME_MAX];
	orn_rc opened;
} me_view;

static void me_free(me_view *v)
{
	sodium_memzero(v, sizeof *v);
	free(v);
}

/* Opens the email and the name (off the loop when their key is not cached). */
static void me_open(void *arg)
{
	me_view *v = arg;
	v->opened = gw_api_open_person(v->api, v->account.email, v->account.name, v->email, sizeof v->email,
	                               v->name, sizeof v->name);
}

/* 200 {id, email, name, role}; 503 if the fields cannot be opened now. */
static void me_opened(void *arg, bool run)
{
	me_view *v = arg;
	const proj_user *user = &v->account;
	if (run && v->opened == ORN_OK) {
		gw_async_complete_json(v->async, 200,
		                       user_json(user->user_id, v->email, v->name, user->role));
	} else if (run) {
		log_error("an account's fields do not open", "error", orn_strerror(v->opened));
		gw_async_complete_problem(v->async,
		                          gw_problem_new(503, "the account cannot be read now; try again"));
	}
	me_free(v);
}

void gw_public_answer_account(gw_api *api, gw_async *async, const proj_user *account)
{
	me_view *v = calloc(1, sizeof *v);
	if (v == NULL) {
		gw_async_complete_problem(async, gw_problem_new(500, NULL));
		return;
	}
	v->api = api;
	v->async = async;
	v->account = *account;
	const char *tokens[] = {v->account.email, v->account.name};
	orn_rc rc = gw_api_keys_run(api, tokens, ORN_ARRAY_LEN(tokens), me_open, me_opened, v);
	if (rc != ORN_OK) {
		gw_async_complete_problem(async,
		                          gw_problem_new(503, "the account cannot be read now; try again"));
		me_free(v);
	}
}

void gw_public_me(gw_request *r, gw_api *api, const gw_caller *caller)
{
	gw_async *async = gw_request_defer(r, GW_API_DEFER_MS);
	if (async != NULL)                                              /* else answered 500 */
		gw_public_answer_account(api, async, &caller->account); /* read by the access check */
}

/* ---- POST /api/v1/me/password -------------------------------------------- */

static const gw_field password_change_schema[] = {
        {.name = "current_password", .type = GW_STRING, .required = true, .max = 256},
        {.name = "new_password", .type = GW_STRING, .required = true, .min = 8, .max = 256},
        {0},
};

#define PASSWORD_UNAVAILABLE "cannot change the password now; try again"

/* One password change in flight; owned by whichever callback runs next.
 * Steps: the current password checked (gw_api_check_password), the new one
 * taken to a sealed hash (gw_api_new_password: its quality, the hash, the
 * seal), ChangePassword sent, the answer once this gateway's users model
 * holds it (every earlier token refused here, as after a logout). */
typedef struct password_change {
	gw_api *api;
	gw_async *async;
	proj_user account; /* sealed fields, as the users model holds them */
	char address_key[8 + GW_LIMIT_ADDRESS_MAX];
	char command_id[40];
	char password[GW_NEW_PASSWORD_MAX + 1]; /* the new one, until handed on */
	user_command command;
} password_change;

static void password_change_free(password_change *pc)
{
	sodium_memzero(pc, sizeof *pc);
	free(pc);
}

static void password_change_fail(password_change *pc, int status, const char *detail)
{
	gw_async_complete_problem(pc->async, gw_problem_new(status, detail));
	password_change_free(pc);
}

static void password_change_visible(void *closure, orn_rc rc)
{
	password_change *pc = closure;
	if (rc != ORN_OK)
		log_warn("password change answered before the users model caught up", "error",
		         orn_strerror(rc));
	gw_async_complete_empty(pc->async, 204);
	password_change_free(pc);
}

static void password_change_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	password_change *pc = closure;
	if (rc != ORN_OK || reply->outcome != BUS_ACCEPTED) {
		gw_api_complete_failure(pc->async, rc, reply);
		password_change_free(pc);
		return;
	}
	/* answered once this gateway refuses every earlier token (ADR 021) */
	gw_api_wait_for(pc->api, reply->seq, password_change_visible, pc);
}

/* The new password sealed (or refused): ChangePassword sent. */
static void password_change_sealed(void *owner, gw_new_password_outcome outcome, const char *why,
                                   const char *sealed)
{
	password_change *pc = owner;
	user_fields *f = &pc->command.fields;
	mp_writer *payload = NULL;
	orn_rc rc = ORN_OK;
	if (outcome == GW_NEW_PASSWORD_CANCELLED) { /* the request is answered by its deadline */
		password_change_free(pc);
		return;
	}
	if (outcome == GW_NEW_PASSWORD_WEAK) {
		gw_async_complete_problem(pc->async,
		                          gw_api_field_problem(400, BODY_INVALID, "new_password", why));
		password_change_free(pc);
		return;
	}
	if (outcome != GW_NEW_PASSWORD_SEALED) {
		password_change_fail(pc, 503, PASSWORD_UNAVAILABLE);
		return;
	}
	snprintf(f->password_hash, sizeof f->password_hash, "%s", sealed);
	if ((payload = mp_writer_create()) == NULL)
		rc = ORN_ENOMEM;
	if (rc == ORN_OK)
		rc = user_command_encode(payload, &pc->command);
	if (rc == ORN_OK)
		rc = gw_api_send(pc->api, USER_AGGREGATE, pc->account.key,
		                 user_command_type(USER_CHANGE_PASSWORD), payload, pc->command_id,
		                 pc->account.user_id, password_change_replied, pc);
	mp_writer_destroy(payload);
	if (rc != ORN_OK) {
		log_warn("password change failed", "error", orn_strerror(rc));
		password_change_fail(pc, 503, PASSWORD_UNAVAILABLE);
	}
}

/* The current password: a wrong one costs a token of the address's login
 * budget, as a failed login does; the right one gives it back. */
static void password_change_current_checked(orn_rc rc, const char *hash, bool match, void *arg)
{
	password_change *pc = arg;
	gw_api *api = pc->api;
	(void)hash;
	if (rc != ORN_OK) {
		password_change_fail(pc, 503, PASSWORD_UNAVAILABLE);
		return;
	}
	if (!match) {
		password_change_fail(pc, 401, "the current password is not the account's");
		return;
	}
	if (api->login_by_address != NULL)
		gw_ratelimit_refund(api->login_by_address, pc->address_key);
	/* the callback may free pc before the call returns: nothing of pc after it but on failure */
	char password[GW_NEW_PASSWORD_MAX + 1];
	memcpy(password, pc->password, sizeof password);
	sodium_memzero(pc->password, sizeof pc->password);
	gw_async *async = pc->async;
	rc = gw_api_new_password(api, &pc->account, password, pc->command_id, password_change_sealed, pc);
	sodium_memzero(password, sizeof password);
	if (rc != ORN_OK) {
		gw_async_complete_problem(async, gw_problem_new(503, PASSWORD_UNAVAILABLE));
		password_change_free(pc);
	}
}

/* Sets a new password: ChangePassword{password_hash} to the account, which
 * ends every token issued so far, the caller's too (204). */
void gw_public_change_password(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body = NULL;
	password_change *pc = NULL;
	int64_t retry_ms = 0;
	if (!gw_request_json(r, password_change_schema, &body))
		return;
	if (api->keys == NULL || api->key_work == NULL) {
		gw_respond_error(r, 503, PASSWORD_UNAVAILABLE);
		goto done;
	}
	if ((pc = calloc(1, sizeof *pc)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	pc->api = api;
	/* the access check wiped the hash it read: read the account again */
	orn_rc rc = proj_users_get_by_id(api->users, caller->claims.sub, &pc->account);
	if (rc != ORN_OK) {
		if (rc == ORN_ENOTFOUND)
			gw_respond_error(r, 401, "the account no longer exists");
		else
			gw_respond_error(r, 503, PASSWORD_UNAVAILABLE);
		goto done;
	}
	snprintf(pc->address_key, sizeof pc->address_key, "ip:%s", gw_request_client_addr(r));
	if (!limit_take(api->login_by_address, pc->address_key, monotonic_ms(), &retry_ms)) {
		respond_rate_limited(r, retry_ms);
		goto done;
	}
	pc->command.kind = USER_CHANGE_PASSWORD;
	gw_api_new_id(pc->command_id, sizeof pc->command_id);
	snprintf(pc->password, sizeof pc->password, "%s", gw_json_string(body, "new_password", ""));
	if ((pc->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done;           /* answered 500 */
	gw_async *async = pc->async; /* the callback may free pc before the call returns */
	rc = gw_api_check_password(api, pc->account.password_hash,
	                           gw_json_string(body, "current_password", ""),
	                           password_change_current_checked, pc);
	if (password_work_started(async, rc == ORN_EINVAL ? ORN_EUNAVAILABLE : rc, PASSWORD_UNAVAILABLE))
		pc = NULL; /* the callbacks own it now */
done:
	if (pc != NULL)
		password_change_free(pc);
	json_decref(body);
}

/* ---- POST /api/v1/auth/logout ------------------------------------------- */

/* One logout in flight; owned by whichever callback runs next. */
typedef struct logout {
	gw_api *api;
	gw_async *async;
} logout;

static void logout_visible(void *closure, orn_rc rc)
{
	logout *op = closure;
	if (rc != ORN_OK)
		log_warn("logout answered before the users model caught up", "error", orn_strerror(rc));
	gw_async_complete_empty(op->async, 204);
	free(op);
}

static void logout_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	logout *op = closure;
	if (rc != ORN_OK || reply->outcome != BUS_ACCEPTED) {
		gw_api_complete_failure(op->async, rc, reply);
		free(op);
		return;
	}
	/* answered once this gateway refuses the token (read-your-writes); the
	 * others follow as their projectors apply the event (ADR 021) */
	gw_api_wait_for(op->api, reply->seq, logout_visible, op);
}

/* Ends the caller's token: RevokeToken{jti, expires_at} to its account. */
void gw_public_logout(gw_request *r, gw_api *api, const gw_caller *caller)
{
	static const gw_field no_fields[] = {{0}};
	const gw_claims *claims = &caller->claims;
	user_command command = {.kind = USER_REVOKE_TOKEN};
	char command_id[16 + GW_JWT_ID_MAX];
	logout *op = NULL;
	mp_writer *payload = NULL;
	json_t *body = NULL;
	size_t len = 0;
	gw_request_body(r, &len);
	if (len > 0 && !gw_request_json(r, no_fields, &body)) /* none, or {} */
		return;
	json_decref(body);
	snprintf(command.fields.jti, sizeof command.fields.jti, "%s", claims->jti);
	command.fields.expires_at = claims->exp;
	snprintf(command_id, sizeof command_id, "logout:%s", claims->jti);
	if ((op = calloc(1, sizeof *op)) == NULL || (payload = mp_writer_create()) == NULL ||
	    user_command_encode(payload, &command) != ORN_OK) {
		free(op);
		mp_writer_destroy(payload);
		gw_respond_error(r, 500, NULL);
		return;
	}
	op->api = api;
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL) {
		free(op);
		mp_writer_destroy(payload);
		return; /* answered 500 */
	}
	orn_rc rc =
	        gw_api_send(api, USER_AGGREGATE, caller->account.key, user_command_type(USER_REVOKE_TOKEN),
	                    payload, command_id, claims->sub, logout_replied, op);
	mp_writer_destroy(payload);
	if (rc != ORN_OK) {
		gw_api_complete_failure(op->async, rc, NULL);
		free(op);
	}
}

/* ---- GET /api/v1/products and /api/v1/products/{id} ---------------------- */

/* limit: decimal digits only, 1..PROJ_CATALOG_PAGE_MAX. */
static bool parse_limit(const char *text, unsigned *out)
{
	unsigned value = 0;
	size_t n = strlen(text);
	if (n == 0 || n > 3)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
		value = value * 10 + (unsigned)(text[i] - '0');
	}
	if (value < 1 || value > PROJ_CATALOG_PAGE_MAX)
		return false;
	*out = value;
	return true;
}

/* [a-z0-9-]{1,64}, the contract's Category. */
static bool valid_category(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > PRODUCT_CATEGORY_MAX - 1)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* Whether q is within the search bounds (bytes and distinct words). */
static bool valid_search(const char *q)
{
	char tokens[PROJ_CATALOG_QUERY_WORDS][PROJ_CATALOG_TOKEN_MAX + 1];
	size_t count = 0;
	return strlen(q) <= Q_BYTES_MAX && proj_catalog_tokenize(q, tokens, PROJ_CATALOG_QUERY_WORDS, &count);
}

/* Appends {field, message} to problem (which may be NULL after a failed
 * allocation: the caller then answers 500) and notes the error. */
static void query_error(json_t *problem, bool *bad, const char *field, const char *message)
{
	*bad = true;
	if (problem != NULL)
		gw_problem_add_error(problem, field, message);
}

/* Reads and checks the query of GET /products into q; on false the request
 * has been answered (400 listing every bad parameter, or 500). */
static bool read_catalog_query(gw_request *r, proj_catalog_query *q)
{
	bool bad = false;
	json_t *problem = gw_problem_new(400, QUERY_INVALID);
	const char *limit = gw_request_query(r, "limit");
	memset(q, 0, sizeof *q);
	q->limit = LIMIT_DEFAULT;
	q->q = gw_request_query(r, "q");
	q->category = gw_request_query(r, "category");
	q->cursor = gw_request_query(r, "cursor");
	if (limit != NULL && !parse_limit(limit, &q->limit))
		query_error(problem, &bad, "limit", "must be an integer from 1 to 100");
	if (q->category != NULL && !valid_category(q->category))
		query_error(problem, &bad, "category", "must be 1 to 64 characters of a-z, 0-9 and '-'");
	if (q->q != NULL && !valid_search(q->q))
		query_error(problem, &bad, "q", "must be at most 200 bytes and 16 distinct words");
	if (q->cursor != NULL && strlen(q->cursor) > CURSOR_BYTES_MAX)
		query_error(problem, &bad, "cursor", "is not a cursor this server issued");
	if (!bad) {
		json_decref(problem);
		return true;
	}
	if (problem == NULL)
		gw_respond_error(r, 500, NULL);
	else
		gw_respond_problem(r, problem);
	return false;
}

/* Writes {items, next_cursor} of a page into w. */
static void write_page_json(mp_writer *w, const proj_catalog_page *page)
{
	mp_write_raw(w, "{\"items\":[", 10);
	for (size_t i = 0; i < page->count; i++) {
		if (i > 0)
			mp_write_raw(w, ",", 1);
		gw_view_product(w, &page->items[i], false);
	}
	mp_write_raw(w, "],\"next_cursor\":", 16);
	if (page->next_cursor[0] != '\0')
		mp_json_string(w, page->next_cursor, strlen(page->next_cursor));
	else
		mp_write_raw(w, "null", 4);
	mp_write_raw(w, "}", 1);
}

void gw_public_products(gw_request *r, gw_api *api, const gw_caller *caller)
{
	proj_catalog_query query;
	if (!read_catalog_query(r, &query))
		return;
	/* One page buffer and one text buffer per API, reused: the loop runs one
	 * handler at a time, and a fresh 450 KB page per request cost an mmap. */
	proj_catalog_page *page = gw_api_page_buffer(api);
	mp_writer *w = gw_api_text_buffer(api);
	if (page == NULL || w == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	orn_rc rc = proj_catalog_list(api->catalog, &query, page);
	if (rc == ORN_OK) {
		write_page_json(w, page);
		gw_api_respond_written(r, 200, w);
	} else if (rc == ORN_EINVAL) {
		/* every other parameter was checked above: the cursor is not ours */
		gw_api_respond_field_error(r, 400, QUERY_INVALID, "cursor",
		                           "is not a cursor this server issued");
	} else {
		log_error("catalog unreadable", "error", orn_strerror(rc));
		gw_respond_error(r, 503, "the catalog cannot be read now; try again");
	}
}

void gw_public_product(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const char *id = gw_request_param(r, "id");
	proj_product *product = NULL;
	if (id == NULL || !gw_valid_id(id)) {
		gw_api_respond_field_error(r, 400, "invalid product id", "id",
		                           "must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -");
		return;
	}
	if ((product = malloc(sizeof *product)) == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	orn_rc rc = proj_catalog_get(api->catalog, id, product);
	mp_writer *w = gw_api_text_buffer(api);
	if (rc == ORN_OK && w != NULL) {
		gw_view_product(w, product, false);
		gw_api_respond_written(r, 200, w);
	} else if (rc == ORN_OK) {
		gw_respond_error(r, 500, NULL);
	} else if (rc == ORN_ENOTFOUND || rc == ORN_EINVAL) {
		gw_respond_error(r, 404, "no such product");
	} else {
		log_error("catalog unreadable", "error", orn_strerror(rc));
		gw_respond_error(r, 503, "the catalog cannot be read now; try again");
	}
	free(product);
}
