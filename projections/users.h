/* users.h — the users read model: accounts by blind index and by public
 * user id.
 *
 * Fed by the user events (UserRegistered, RoleChanged, TokenRevoked,
 * TokensRevoked, PasswordChanged, EmailVerified, PasswordReset,
 * ErasureRequested, CustomerErased) on
 * orion.evt.user.<key>, where <key> is the blind index of the address
 * (actors/personal.h; before ADR 027 the public hash of user_key_for_email).
 * It answers login (by key, with the sealed password hash to verify) and the
 * token owner's lookups (by the public user_id that JWTs carry).
 *
 * Personal fields stay sealed here, as the events hold them: whoever shows
 * one opens it with the keystore (privacy/keystore.h). A CustomerErased
 * blanks them; the row keeps the user id, role and erasure, so the tokens of
 * an account asked to be erased are refused at once (ADR 027). */
#ifndef ORION_PROJ_USERS_H
#define ORION_PROJ_USERS_H

#include <stdbool.h>
#include <stdint.h>

#include "orn.h"
#include "proj_env.h"
#include "projector.h"
#include "user.h"

#define PROJ_USERS_NAME   "users"
#define PROJ_USERS_FILTER "orion.evt.user.>"

/* A user as the model keeps it.
 *
 * password_hash is the Argon2id string needed to verify a login. It is not a
 * secret by itself, but it MUST NEVER be serialized to a client, logged or
 * put in a token: views of a user copy the other fields only. */
typedef struct proj_user {
	char key[USER_KEY_MAX]; /* aggregate id: the blind index of the address */
	char user_id[USER_ID_MAX];
	char email[USER_SEALED_MAX]; /* sealed (clear in models of logs before ADR 027); "" once erased */
	char name[USER_SEALED_MAX];  /* sealed, likewise */
	user_role role;
	char password_hash[USER_SEALED_MAX]; /* sealed; never to a client (see above) */
	char kid[PD_KID_MAX];                /* the data key of the three; "" before ADR 027 */
	user_erasure erasure;                /* active accounts only log in and hold tokens */
	uint64_t version;                    /* stream sequence of the last user event applied */
	int64_t token_version;               /* tokens of another version are refused */
	bool verified;                       /* the address is proven (ADR 031); false: no orders */
} proj_user;

typedef struct proj_users proj_users;

/* Creates the model over env and opens (creating) its sub-databases.
 * *out is owned by the caller: proj_users_destroy after the runner that
 * feeds it has stopped. */
orn_rc proj_users_create(proj_env *env, proj_users **out);
void proj_users_destroy(proj_users *users);

/* The projection definition to hand to proj_runner_start (owned by users). */
const proj_def *proj_users_def(proj_users *users);

/* The user whose aggregate id is key (the blind index of the address, as
 * ks_blind_index computes it). Out param. ORN_ENOTFOUND if none, ORN_EINVAL
 * for a key that is not an id. */
orn_rc proj_users_get_by_key(proj_users *users, const char *key, proj_user *out);

/* The user with public id user_id (out param). ORN_ENOTFOUND if none,
 * ORN_EINVAL for an invalid id. */
orn_rc proj_users_get_by_id(proj_users *users, const char *user_id, proj_user *out);

/* What a bearer token's checks need, in one read: the user with public id
 * user_id (out param, as proj_users_get_by_id) and whether the token jti
 * was revoked (*revoked; a revocation is kept until the token's expiry).
 * ORN_ENOTFOUND if there is no such user, ORN_EINVAL for an invalid id or
 * jti. docs/adr/021-tokens-orion-can-take-back.md. */
orn_rc proj_users_check_token(proj_users *users, const char *user_id, const char *jti, proj_user *out,
                              bool *revoked);

typedef struct proj_users_stats {
	/* user events whose payload did not decode, logged and skipped (counted
	 * again if their batch is retried) */
	uint64_t undecodable;
} proj_users_stats;

void proj_users_stats_get(proj_users *users, proj_users_stats *out);

#endif
