/* gw_api_accounts.c — the routes of emailed account links (ADR 031):
 * verifying an address (GET /auth/verify: the page with the form; POST
 * /auth/verify) and resetting a password (POST /auth/password-reset, POST
 * /auth/password-reset/confirm).
 *
 * A link's token names its account ("<account>.<mac>", personal.h); the
 * gateway sends the token's SHA-256 to that account, whose decider compares
 * it with the latest request of the purpose, checks the expiry against the
 * command's time and that it is unused. The gateway never stores a token.
 *
 * POST /auth/password-reset answers 202 whatever the address: it sends
 * RequestPasswordReset to the address's blind index in every case (an
 * unknown address is refused "not_found" by its empty aggregate, which writes
 * nothing), so a known and an unknown address cost the same round trip and
 * get the same answer. Only a known, active account within its mail budget
 * records the request the mail role sends the link for. */
#include "gw_api_accounts.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_api-internal.h"
#include "gw_api_public.h"
#include "gw_problem.h"
#include "log.h"
#include "user.h"

#define LINK_SCOPE         "links" /* the address limiter's bucket of the link routes */
#define BODY_INVALID       "the request body is invalid"
#define LINK_INVALID       "the link is not valid"
#define TOKEN_RULE         "must be the token of a link this server sent"
#define RESET_UNAVAILABLE  "cannot reset the password now; try again"
#define VERIFY_PAGE_ACTION "/api/v1/auth/verify"
#define VERIFY_PAGE_BUTTON "Verify my email address"

static const gw_field token_schema[] = {
        {.name = "token", .type = GW_STRING, .required = true, .min = 1, .max = PD_LINK_MAX - 1},
        {0},
};

/* ---- shared ---------------------------------------------------------------- */

/* The status and detail of a link's rejection by its account: 410 for a
 * used or expired link (it was valid once), 400 for any other. */
static int link_rejection(const bus_reply *reply, const char **detail)
{
	if (strcmp(reply->code, "token_used") == 0) {
		*detail = "the link was used already";
		return 410;
	}
	if (strcmp(reply->code, "token_expired") == 0) {
		*detail = "the link has expired; ask for a new one";
		return 410;
	}
	*detail = LINK_INVALID;
	return 400;
}

/* Whether a reply is a link's rejection (rather than a failure or another
 * rejection, answered by gw_api_complete_failure). */
static bool is_link_rejection(orn_rc rc, const bus_reply *reply)
{
	return rc == ORN_OK && reply->outcome == BUS_REJECTED &&
	       (strncmp(reply->code, "token_", 6) == 0 || strcmp(reply->code, "not_found") == 0 ||
	        strcmp(reply->code, "wrong_state") == 0);
}

/* One link request in flight; owned by whichever callback runs next. */
typedef struct link_op {
	gw_api *api;
	gw_async *async;
	bool html; /* posted by the page's form: answer a page */
	char account[ES_ID_MAX + 1];
	char command_id[40];
	char token_hash[PD_LINK_HASH_MAX];
	proj_user user;             /* reset: the account as the users model holds it */
	gw_consistency_fn *visible; /* after the account accepted: the answer */
	user_command command;
} link_op;

static void link_free(link_op *op)
{
	sodium_memzero(op, sizeof *op);
	free(op);
}

/* Completes op with a page (html) or a problem, and frees it. */
static void link_fail(link_op *op, int status, const char *detail)
{
	if (op->html) {
		gw_api_complete_page(op->async, status, status >= 500 ? "Please try again" : "Link not valid",
		                     detail);
	} else {
		gw_async_complete_problem(op->async, gw_problem_new(status, detail));
	}
	link_free(op);
}

/* The account a token names and the token's hash into op; false if the
 * token is not one this server can have sent. */
static bool link_read_token(link_op *op, const char *token)
{
	if (!pd_link_account(token, op->account, sizeof op->account))
		return false;
	pd_link_hash(token, op->token_hash);
	return true;
}

/* ---- GET /api/v1/auth/verify?token= ---------------------------------------- */

static void respond_page(gw_request *r, int status, const char *title, const char *message, const char *token)
{
	char *html = gw_api_page_html(title, message, token != NULL ? VERIFY_PAGE_ACTION : NULL,
	                              VERIFY_PAGE_BUTTON, token);
	if (html == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	gw_respond_html(r, status, html, strlen(html));
	free(html);
}

void gw_accounts_verify_page(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const char *token = gw_request_query(r, "token");
	char account[ES_ID_MAX + 1];
	(void)caller;
	if (token == NULL || !pd_link_account(token, account, sizeof account)) {
		respond_page(r, 400, "Invalid link", "This verification link is not valid.", NULL);
		return;
	}
	if (!gw_api_address_allowed(api, r, LINK_SCOPE)) {
		respond_page(r, 429, "Too many attempts", "Please try again in a minute.", NULL);
		return;
	}
	respond_page(r, 200, "Verify your email address",
	             "Please confirm that this is your email address. You can place orders once it is "
	             "verified.",
	             token);
}

/* ---- POST /api/v1/auth/verify ---------------------------------------------- */

static void verify_visible(void *closure, orn_rc rc)
{
	link_op *op = closure;
	if (rc != ORN_OK)
		log_warn("verification answered before the users model caught up", "error", orn_strerror(rc));
	if (op->html) {
		gw_api_complete_page(op->async, 200, "Email address verified",
		                     "Thank you: your email address is verified. You can place orders now.");
		link_free(op);
		return;
	}
	rc = proj_users_get_by_key(op->api->users, op->account, &op->user);
	if (rc != ORN_OK) {
		link_fail(op, 503, "the account cannot be read now; try again");
		return;
	}
	gw_public_answer_account(op->api, op->async, &op->user);
	link_free(op);
}

/* The account's answer to a link's command: a rejection of the link (400,
 * 410), a failure (503), or accepted: op->visible once this gateway's users
 * model holds it. */
static void link_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	link_op *op = closure;
	const char *detail = NULL;
	if (is_link_rejection(rc, reply)) {
		int status = link_rejection(reply, &detail);
		link_fail(op, status, detail);
		return;
	}
	if (rc != ORN_OK || reply->outcome != BUS_ACCEPTED) {
		if (op->html) {
			link_fail(op, 503, "The link could not be used now; please try again later.");
			return;
		}
		gw_api_complete_failure(op->async, rc, reply);
		link_free(op);
		return;
	}
	gw_api_wait_for(op->api, reply->seq, op->visible, op);
}

/* Sends op->command to op->account with done as its callback; on failure
 * completes op (503). */
static void link_send(link_op *op, gw_bus_fn *done)
{
	mp_writer *payload = mp_writer_create();
	orn_rc rc = payload == NULL ? ORN_ENOMEM : user_command_encode(payload, &op->command);
	if (rc == ORN_OK)
		rc = gw_api_send(op->api, USER_AGGREGATE, op->account, user_command_type(op->command.kind),
		                 payload, op->command_id, NULL, done, op);
	mp_writer_destroy(payload);
	if (rc != ORN_OK) {
		log_warn("an account link's command failed", "error", orn_strerror(rc));
		link_fail(op, 503, "cannot answer now; try again");
	}
}

/* The token of the request: a form's "token=" (html) or JSON {token}. False
 * after answering 400. */
static bool read_posted_token(gw_request *r, bool html, char *token, size_t cap)
{
	json_t *body = NULL;
	char account[ES_ID_MAX + 1];
	bool ok;
	if (html) {
		ok = gw_api_form_token(r, token, cap) && pd_link_account(token, account, sizeof account);
		if (!ok)
			respond_page(r, 400, "Invalid link", "This verification link is not valid.", NULL);
		return ok;
	}
	if (!gw_request_json(r, token_schema, &body))
		return false;
	snprintf(token, cap, "%s", gw_json_string(body, "token", ""));
	json_decref(body);
	ok = pd_link_account(token, account, sizeof account);
	if (!ok)
		gw_api_respond_field_error(r, 400, BODY_INVALID, "token", TOKEN_RULE);
	return ok;
}

void gw_accounts_verify(gw_request *r, gw_api *api, const gw_caller *caller)
{
	char token[PD_LINK_MAX + 1] = "";
	bool html = gw_api_is_form(r);
	link_op *op = NULL;
	(void)caller;
	if (!read_posted_token(r, html, token, sizeof token))
		goto done;
	/* no login: the address's budget bounds what guessing tokens costs */
	if (!gw_api_address_allowed(api, r, LINK_SCOPE)) {
		if (html)
			respond_page(r, 429, "Too many attempts", "Please try again in a minute.", NULL);
		else
			gw_respond_error(r, 429, "too many attempts; retry later");
		goto done;
	}
	if ((op = calloc(1, sizeof *op)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	op->api = api;
	op->html = html;
	link_read_token(op, token); /* checked by read_posted_token */
	op->command.kind = USER_VERIFY_EMAIL;
	op->command.fields.at = (int64_t)time(NULL);
	memcpy(op->command.fields.token_hash, op->token_hash, sizeof op->command.fields.token_hash);
	gw_api_new_id(op->command_id, sizeof op->command_id);
	op->visible = verify_visible;
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done; /* answered 500 */
	link_send(op, link_replied);
	op = NULL; /* link_send completed or handed it on */
done:
	if (op != NULL)
		link_free(op);
	sodium_memzero(token, sizeof token);
}

/* ---- POST /api/v1/auth/password-reset --------------------------------------- */

static const gw_field reset_schema[] = {
        {.name = "email", .type = GW_STRING, .required = true, .min = 1, .max = 254},
        {0},
};

/* Any answer of the account, even "not_found" (an unknown address): 202.
 * Only a failure to reach it is told (503), the same for every address. */
static void reset_requested(void *closure, orn_rc rc, bus_reply *reply)
{
	link_op *op = closure;
	if (rc != ORN_OK || reply->outcome == BUS_FAILED) {
		gw_api_complete_failure(op->async, rc, reply);
		link_free(op);
		return;
	}
	gw_async_complete_json(op->async, 202, json_pack("{s:s}", "status", "reset_sent"));
	link_free(op);
}

void gw_accounts_password_reset(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body = NULL;
	link_op *op = NULL;
	char email[USER_EMAIL_MAX], token[PD_LINK_MAX];
	(void)caller;
	if (!gw_request_json(r, reset_schema, &body))
		return;
	if (user_email_normalize(gw_json_string(body, "email", ""), email, sizeof email) != ORN_OK) {
		gw_api_respond_field_error(r, 400, BODY_INVALID, "email", "must be a valid email address");
		goto done;
	}
	if (api->keys == NULL) {
		gw_respond_error(r, 503, RESET_UNAVAILABLE);
		goto done;
	}
	if (!gw_api_address_allowed(api, r, LINK_SCOPE)) {
		gw_respond_error(r, 429, "too many attempts; retry later");
		goto done;
	}
	if ((op = calloc(1, sizeof *op)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	op->api = api;
	ks_blind_index(api->keys, email, op->account);
	user_fields *f = &op->command.fields;
	op->command.kind = USER_REQUEST_PASSWORD_RESET;
	gw_public_new_random_id(f->request_id, sizeof f->request_id);
	f->at = (int64_t)time(NULL);
	f->expires_at = f->at + api->reset_ttl_s;
	if (ks_link_token(api->keys, USER_LINK_RESET, op->account, f->request_id, token) != ORN_OK) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	pd_link_hash(token, f->token_hash);
	sodium_memzero(token, sizeof token);
	gw_api_new_id(op->command_id, sizeof op->command_id);
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done; /* answered 500 */
	link_send(op, reset_requested);
	op = NULL;
done:
	if (op != NULL)
		link_free(op);
	sodium_memzero(email, sizeof email);
	json_decref(body);
}

/* ---- POST /api/v1/auth/password-reset/confirm -------------------------------- */

static const gw_field reset_confirm_schema[] = {
        {.name = "token", .type = GW_STRING, .required = true, .min = 1, .max = PD_LINK_MAX - 1},
        {.name = "password", .type = GW_STRING, .required = true, .min = 8, .max = 256},
        {0},
};

/* Steps: the account read from the users model; the new password taken to
 * a sealed hash (gw_api_new_password: registration's rules, the hash, the
 * seal with the account's key); ResetPassword sent; 204 once this gateway's
 * users model holds it (every earlier token refused). */

static void reset_visible(void *closure, orn_rc rc)
{
	link_op *op = closure;
	if (rc != ORN_OK)
		log_warn("password reset answered before the users model caught up", "error",
		         orn_strerror(rc));
	gw_async_complete_empty(op->async, 204);
	link_free(op);
}

static void reset_sealed(void *owner, gw_new_password_outcome outcome, const char *why, const char *sealed)
{
	link_op *op = owner;
	if (outcome == GW_NEW_PASSWORD_CANCELLED) { /* the request is answered by its deadline */
		link_free(op);
	} else if (outcome == GW_NEW_PASSWORD_WEAK) {
		gw_async_complete_problem(op->async,
		                          gw_api_field_problem(400, BODY_INVALID, "password", why));
		link_free(op);
	} else if (outcome == GW_NEW_PASSWORD_ERASED) {
		link_fail(op, 400, LINK_INVALID);
	} else if (outcome != GW_NEW_PASSWORD_SEALED) {
		link_fail(op, 503, RESET_UNAVAILABLE);
	} else {
		snprintf(op->command.fields.password_hash, sizeof op->command.fields.password_hash, "%s",
		         sealed);
		op->visible = reset_visible;
		link_send(op, link_replied);
	}
}

void gw_accounts_password_reset_confirm(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body = NULL;
	link_op *op = NULL;
	(void)caller;
	if (!gw_request_json(r, reset_confirm_schema, &body))
		return;
	if (api->keys == NULL || api->key_work == NULL) {
		gw_respond_error(r, 503, RESET_UNAVAILABLE);
		goto done;
	}
	if ((op = calloc(1, sizeof *op)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	op->api = api;
	if (!link_read_token(op, gw_json_string(body, "token", ""))) {
		gw_api_respond_field_error(r, 400, BODY_INVALID, "token", TOKEN_RULE);
		goto done;
	}
	/* each try hashes a password: the address's budget bounds it */
	if (!gw_api_address_allowed(api, r, LINK_SCOPE)) {
		gw_respond_error(r, 429, "too many attempts; retry later");
		goto done;
	}
	orn_rc rc = proj_users_get_by_key(api->users, op->account, &op->user);
	if (rc == ORN_OK && op->user.erasure != USER_ACTIVE)
		rc = ORN_ENOTFOUND;
	if (rc == ORN_ENOTFOUND || rc == ORN_EINVAL) {
		gw_respond_error(r, 400, LINK_INVALID);
		goto done;
	} else if (rc != ORN_OK) {
		gw_respond_error(r, 503, RESET_UNAVAILABLE);
		goto done;
	}
	op->command.kind = USER_RESET_PASSWORD;
	op->command.fields.at = (int64_t)time(NULL);
	memcpy(op->command.fields.token_hash, op->token_hash, sizeof op->command.fields.token_hash);
	gw_api_new_id(op->command_id, sizeof op->command_id);
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done;           /* answered 500 */
	gw_async *async = op->async; /* reset_sealed may free op before the call returns */
	if (gw_api_new_password(api, &op->user, gw_json_string(body, "password", ""), op->command_id,
	                        reset_sealed, op) != ORN_OK) {
		gw_async_complete_problem(async, gw_problem_new(503, RESET_UNAVAILABLE));
		goto done;
	}
	op = NULL; /* the callbacks own it */
done:
	if (op != NULL)
		link_free(op);
	json_decref(body);
}
