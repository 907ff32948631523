/* gw_jwt.h — HS256 access tokens: signing, strict verification, the secret.
 *
 * Tokens are signed with libjwt (header {"alg":"HS256","typ":"JWT"}; claims
 * sub, role, iat, exp, iss, aud, jti (a random token id) and ver (the
 * account's token version when it was issued)). They are verified by hand, because libjwt
 * 1.10 checks neither exp nor the algorithm and compares signatures with
 * strcmp: the verifier bounds the length, decodes base64url strictly,
 * requires the header to be exactly {"alg":"HS256","typ":"JWT"}, recomputes
 * HMAC-SHA256 with libsodium and compares it with sodium_memcmp before it
 * reads a single claim, then requires exp (future, with leeway), iat (not in
 * the future, >= 0), exp - iat at most the configured lifetime (a token that
 * claims to live longer is refused whatever its signature), iss and aud
 * equal to the configured values, sub an id, a known role, a jti and a ver.
 * Every failure is the same ORN_EINVAL: the caller answers 401 without saying
 * why. Whether the token's account still exists, still has that role and
 * version and did not end the token is the API's check (gw_api_authorize,
 * ADR 021). */
#ifndef ORION_GW_JWT_H
#define ORION_GW_JWT_H

#include <stdint.h>

#include "orn.h"

#define GW_JWT_SECRET_BYTES 32
#define GW_JWT_MAX_TOKEN    4096 /* longer tokens are rejected unread */
#define GW_JWT_SECRET_FILE  "jwt.secret"
#define GW_JWT_ID_MAX       33 /* bytes of a jti, NUL included: 32 hex digits */

typedef enum gw_role { GW_ROLE_CUSTOMER, GW_ROLE_ADMIN } gw_role;

typedef struct gw_jwt gw_jwt;

typedef struct gw_claims {
	char sub[65]; /* an id: [A-Za-z0-9_-]{1,64} */
	gw_role role;
	int64_t iat, exp;        /* seconds since the epoch */
	char jti[GW_JWT_ID_MAX]; /* the token's id: [A-Za-z0-9_-]{1,32} */
	int64_t ver;             /* the account's token version at issue, >= 0 */
} gw_claims;

/* "customer" / "admin". */
const char *gw_role_name(gw_role role);

/* Creates a signer/verifier. issuer and audience are copied (non-empty);
 * leeway_s is the clock skew tolerated on exp and iat (e.g. 30);
 * max_lifetime_s > 0 the longest exp - iat signed or accepted. NULL on bad
 * arguments or allocation failure. The secret is copied into locked memory
 * where available and wiped on destroy. */
gw_jwt *gw_jwt_create(const unsigned char secret[GW_JWT_SECRET_BYTES], const char *issuer,
                      const char *audience, int64_t leeway_s, int64_t max_lifetime_s);
/* Wipes and frees. NULL is accepted. */
void gw_jwt_destroy(gw_jwt *jwt);

/* Signs a token for sub (an id), role and token version ver (>= 0), with a
 * fresh random jti, issued at now_s, valid ttl_s seconds (1..the maximum
 * lifetime). *token is malloc'd (the caller frees it). ORN_EINVAL for a bad
 * sub, ver or ttl, ORN_ENOMEM, ORN_EINTERNAL if libjwt fails. */
orn_rc gw_jwt_sign(const gw_jwt *jwt, const char *sub, gw_role role, int64_t ver, int64_t now_s,
                   int64_t ttl_s, char **token);

/* Verifies token at now_s. ORN_OK fills *claims; any failure is ORN_EINVAL
 * (claims are then zeroed). */
orn_rc gw_jwt_verify(const gw_jwt *jwt, const char *token, int64_t now_s, gw_claims *claims);

/* Loads the 32-byte signing key. If env_secret (ORION_JWT_SECRET) is non-NULL
 * and non-empty: 64 hex digits are taken as the key; any other value of at
 * least 32 bytes is hashed to the key with BLAKE2b-256; shorter values are
 * ORN_EINVAL (a weak key is refused, not padded). Otherwise the key is read
 * from <data_dir>/jwt.secret (exactly 32 bytes, a regular file not readable
 * by group or others, else ORN_EINVAL) or, if absent, generated with
 * randombytes_buf and written there with mode 0600 (data_dir is created with
 * 0700 if missing; a concurrent creator wins through link(2)). ORN_EIO on
 * I/O errors. */
orn_rc gw_jwt_secret_load(const char *env_secret, const char *data_dir,
                          unsigned char secret[GW_JWT_SECRET_BYTES]);

#endif
