/* gw_api_new_password.c — a new password on its way into an account's
 * command (POST /me/password, POST /auth/password-reset/confirm): checked
 * by registration's rules against the account's address (ADR 022; the
 * address opened on a key worker when its key is not cached), hashed on the
 * password pool, and sealed with the account's own data key for the event of
 * the command (ADR 027). Each step's callback runs on the loop and starts
 * the next; done is called exactly once at the end. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_api-internal.h"
#include "gw_password.h"
#include "log.h"

struct gw_new_password {
	gw_api *api;
	proj_user account;
	char command_id[GW_NEW_PASSWORD_ID_MAX];
	char password[GW_NEW_PASSWORD_MAX + 1]; /* until hashed */
	char hash[USER_PASSWORD_HASH_MAX];      /* until sealed */
	char why[GW_NEW_PASSWORD_WHY_MAX];
	char sealed[USER_SEALED_MAX];
	orn_rc opened, quality, sealed_rc;
	gw_new_password_fn *done;
	void *owner;
};

static void finish(gw_new_password *np, gw_new_password_outcome outcome)
{
	np->done(np->owner, outcome, np->why, np->sealed);
	sodium_memzero(np, sizeof *np);
	free(np);
}

/* Off the loop when the key is not cached: the hash sealed for the event. */
static void seal(void *arg)
{
	gw_new_password *np = arg;
	np->sealed_rc = ks_seal(np->api->keys, np->account.kid, "password_hash", np->command_id, np->hash,
	                        np->sealed, sizeof np->sealed);
	sodium_memzero(np->hash, sizeof np->hash);
}

static void sealed(void *arg, bool run)
{
	gw_new_password *np = arg;
	finish(np, !run                      ? GW_NEW_PASSWORD_CANCELLED
	           : np->sealed_rc == ORN_OK ? GW_NEW_PASSWORD_SEALED
	                                     : GW_NEW_PASSWORD_UNAVAILABLE);
}

static void hashed(orn_rc rc, const char *hash, bool match, void *arg)
{
	gw_new_password *np = arg;
	(void)match;
	sodium_memzero(np->password, sizeof np->password);
	if (rc != ORN_OK || hash == NULL || strlen(hash) >= USER_PASSWORD_HASH_MAX) {
		finish(np, GW_NEW_PASSWORD_UNAVAILABLE);
		return;
	}
	snprintf(np->hash, sizeof np->hash, "%s", hash);
	const char *tokens[] = {np->account.password_hash}; /* sealed with the same kid */
	if (gw_api_keys_run(np->api, tokens, ORN_ARRAY_LEN(tokens), seal, sealed, np) != ORN_OK)
		finish(np, GW_NEW_PASSWORD_UNAVAILABLE);
}

/* Off the loop when the key is not cached: the address opened, the new
 * password checked against it. */
static void check(void *arg)
{
	gw_new_password *np = arg;
	char email[USER_EMAIL_MAX];
	np->opened = ks_open_token(np->api->keys, np->account.email, "email", NULL, email, sizeof email);
	if (np->opened == ORN_OK)
		np->quality = gw_password_quality(np->password, email, np->why, sizeof np->why);
	sodium_memzero(email, sizeof email);
}

static void checked(void *arg, bool run)
{
	gw_new_password *np = arg;
	if (!run) {
		finish(np, GW_NEW_PASSWORD_CANCELLED);
		return;
	}
	if (np->opened == ORN_ENOTFOUND) {
		finish(np, GW_NEW_PASSWORD_ERASED);
		return;
	}
	if (np->opened != ORN_OK || (np->quality != ORN_OK && np->quality != ORN_EINVAL)) {
		log_error("cannot check a new password", "error",
		          orn_strerror(np->opened != ORN_OK ? np->opened : np->quality));
		finish(np, GW_NEW_PASSWORD_UNAVAILABLE);
		return;
	}
	if (np->quality == ORN_EINVAL) {
		finish(np, GW_NEW_PASSWORD_WEAK);
		return;
	}
	if (gw_password_hash_async(np->api->passwords, np->password, hashed, np) != ORN_OK)
		finish(np, GW_NEW_PASSWORD_UNAVAILABLE);
}

orn_rc gw_api_new_password(gw_api *api, const proj_user *account, const char *password,
                           const char *command_id, gw_new_password_fn *done, void *owner)
{
	gw_new_password *np;
	if (strlen(password) > GW_NEW_PASSWORD_MAX || strlen(command_id) >= GW_NEW_PASSWORD_ID_MAX)
		return ORN_EINVAL;
	if ((np = calloc(1, sizeof *np)) == NULL)
		return ORN_ENOMEM;
	np->api = api;
	np->account = *account;
	np->done = done;
	np->owner = owner;
	snprintf(np->command_id, sizeof np->command_id, "%s", command_id);
	snprintf(np->password, sizeof np->password, "%s", password);
	const char *tokens[] = {np->account.email};
	orn_rc rc = gw_api_keys_run(api, tokens, ORN_ARRAY_LEN(tokens), check, checked, np);
	if (rc != ORN_OK) {
		sodium_memzero(np, sizeof *np);
		free(np);
	}
	return rc;
}
