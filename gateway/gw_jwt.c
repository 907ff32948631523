/* gw_jwt.c — HS256 tokens: libjwt signs, a hand-written verifier checks
 * (see gw_jwt.h for why). */
#include "gw_jwt.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <sodium.h>

#include "gw_validate.h"
#include "secret.h"

#define HEADER_MAX 256 /* decoded header bytes; ours is 27 */

struct gw_jwt {
	unsigned char *secret; /* sodium_malloc'd */
	char *issuer, *audience;
	int64_t leeway_s, max_lifetime_s;
};

const char *gw_role_name(gw_role role)
{
	return role == GW_ROLE_ADMIN ? "admin" : "customer";
}

gw_jwt *gw_jwt_create(const unsigned char secret[GW_JWT_SECRET_BYTES], const char *issuer,
                      const char *audience, int64_t leeway_s, int64_t max_lifetime_s)
{
	if (!secret || !issuer || !issuer[0] || !audience || !audience[0] || leeway_s < 0 ||
	    max_lifetime_s <= 0 || sodium_init() < 0)
		return NULL;
	gw_jwt *jwt = calloc(1, sizeof(*jwt));
	if (!jwt)
		return NULL;
	jwt->secret = sodium_malloc(GW_JWT_SECRET_BYTES);
	jwt->issuer = strdup(issuer);
	jwt->audience = strdup(audience);
	if (!jwt->secret || !jwt->issuer || !jwt->audience) {
		gw_jwt_destroy(jwt);
		return NULL;
	}
	memcpy(jwt->secret, secret, GW_JWT_SECRET_BYTES);
	sodium_mprotect_readonly(jwt->secret);
	jwt->leeway_s = leeway_s;
	jwt->max_lifetime_s = max_lifetime_s;
	return jwt;
}

void gw_jwt_destroy(gw_jwt *jwt)
{
	if (!jwt)
		return;
	sodium_free(jwt->secret); /* wipes */
	free(jwt->issuer);
	free(jwt->audience);
	free(jwt);
}

orn_rc gw_jwt_sign(const gw_jwt *jwt, const char *sub, gw_role role, int64_t ver, int64_t now_s,
                   int64_t ttl_s, char **token)
{
	orn_rc rc = ORN_EINTERNAL;
	jwt_t *t = NULL;
	unsigned char random[16];
	char jti[GW_JWT_ID_MAX];
	*token = NULL;
	if (!gw_valid_id(sub) || ttl_s <= 0 || ttl_s > jwt->max_lifetime_s || now_s < 0 || ver < 0 ||
	    (role != GW_ROLE_CUSTOMER && role != GW_ROLE_ADMIN))
		return ORN_EINVAL;
	if (jwt_new(&t) != 0)
		return ORN_ENOMEM;
	randombytes_buf(random, sizeof random);
	sodium_bin2hex(jti, sizeof jti, random, sizeof random);
	if (jwt_set_alg(t, JWT_ALG_HS256, jwt->secret, GW_JWT_SECRET_BYTES) != 0 ||
	    jwt_add_grant(t, "sub", sub) != 0 || jwt_add_grant(t, "role", gw_role_name(role)) != 0 ||
	    jwt_add_grant(t, "iss", jwt->issuer) != 0 || jwt_add_grant(t, "aud", jwt->audience) != 0 ||
	    jwt_add_grant_int(t, "iat", (long)now_s) != 0 ||
	    jwt_add_grant_int(t, "exp", (long)(now_s + ttl_s)) != 0 || jwt_add_grant(t, "jti", jti) != 0 ||
	    jwt_add_grant_int(t, "ver", (long)ver) != 0)
		goto fail;
	*token = jwt_encode_str(t);
	if (*token)
		rc = ORN_OK;
fail:
	jwt_free(t);
	return rc;
}

/* Strict base64url (no padding, no whitespace, canonical trailing bits). */
static bool decode_segment(const char *text, size_t len, unsigned char *out, size_t cap, size_t *out_len)
{
	const char *end = NULL;
	if (len == 0)
		return false;
	if (sodium_base642bin(out, cap, text, len, NULL, out_len, &end,
	                      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return false;
	return end == text + len;
}

static bool header_is_hs256(const unsigned char *bytes, size_t len)
{
	json_t *header = json_loadb((const char *)bytes, len, JSON_REJECT_DUPLICATES, NULL);
	bool ok = json_is_object(header) && json_object_size(header) == 2 &&
	          json_is_string(json_object_get(header, "alg")) &&
	          json_is_string(json_object_get(header, "typ")) &&
	          strcmp(json_string_value(json_object_get(header, "alg")), "HS256") == 0 &&
	          strcmp(json_string_value(json_object_get(header, "typ")), "JWT") == 0;
	json_decref(header);
	return ok;
}

static bool claim_equals(const json_t *claims, const char *name, const char *expected)
{
	const json_t *value = json_object_get(claims, name);
	return json_is_string(value) && strcmp(json_string_value(value), expected) == 0;
}

/* Checks the claims of an authenticated payload. */
static bool claims_valid(const gw_jwt *jwt, const json_t *payload, int64_t now_s, gw_claims *claims)
{
	const json_t *exp = json_object_get(payload, "exp");
	const json_t *iat = json_object_get(payload, "iat");
	const json_t *nbf = json_object_get(payload, "nbf");
	const json_t *ver = json_object_get(payload, "ver");
	const char *sub = json_string_value(json_object_get(payload, "sub"));
	const char *role = json_string_value(json_object_get(payload, "role"));
	const char *jti = json_string_value(json_object_get(payload, "jti"));
	if (!json_is_object(payload) || !json_is_integer(exp) || !json_is_integer(iat) ||
	    !json_is_integer(ver))
		return false;
	/* Written so that no claim value enters an addition: a signed token with an
	 * absurd exp or iat must not overflow (now_s and the leeway are sane; with
	 * 0 <= iat < exp, exp - iat cannot overflow). */
	if (json_integer_value(exp) <= now_s - jwt->leeway_s ||
	    json_integer_value(iat) > now_s + jwt->leeway_s || json_integer_value(iat) < 0 ||
	    json_integer_value(exp) <= json_integer_value(iat) ||
	    json_integer_value(exp) - json_integer_value(iat) > jwt->max_lifetime_s)
		return false;
	if (json_integer_value(ver) < 0 || jti == NULL || strlen(jti) >= GW_JWT_ID_MAX || !gw_valid_id(jti))
		return false;
	if (nbf && (!json_is_integer(nbf) || json_integer_value(nbf) > now_s + jwt->leeway_s))
		return false;
	if (!claim_equals(payload, "iss", jwt->issuer) || !claim_equals(payload, "aud", jwt->audience))
		return false;
	if (!gw_valid_id(sub) || !role)
		return false;
	if (strcmp(role, "customer") == 0)
		claims->role = GW_ROLE_CUSTOMER;
	else if (strcmp(role, "admin") == 0)
		claims->role = GW_ROLE_ADMIN;
	else
		return false;
	snprintf(claims->sub, sizeof(claims->sub), "%s", sub);
	claims->iat = (int64_t)json_integer_value(iat);
	claims->exp = (int64_t)json_integer_value(exp);
	claims->ver = (int64_t)json_integer_value(ver);
	snprintf(claims->jti, sizeof(claims->jti), "%s", jti);
	return true;
}

orn_rc gw_jwt_verify(const gw_jwt *jwt, const char *token, int64_t now_s, gw_claims *claims)
{
	unsigned char header[HEADER_MAX], signature[crypto_auth_hmacsha256_BYTES + 1];
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	unsigned char *payload = NULL;
	json_t *payload_json = NULL;
	size_t len, header_len, signature_len, payload_len;
	bool ok = false;
	memset(claims, 0, sizeof(*claims));
	if (!token)
		return ORN_EINVAL;
	len = strnlen(token, GW_JWT_MAX_TOKEN + 1);
	if (len > GW_JWT_MAX_TOKEN)
		return ORN_EINVAL;
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
		return ORN_EINVAL;
	size_t payload_text_len = (size_t)(dot2 - dot1 - 1);

	/* 1. The header must name HS256 exactly: no "none", no key confusion. */
	if (!decode_segment(token, (size_t)(dot1 - token), header, sizeof(header), &header_len) ||
	    !header_is_hs256(header, header_len))
		goto done;
	/* 2. Authenticate header.payload before trusting any claim. */
	if (!decode_segment(dot2 + 1, len - (size_t)(dot2 + 1 - token), signature, sizeof(signature),
	                    &signature_len) ||
	    signature_len != crypto_auth_hmacsha256_BYTES)
		goto done;
	crypto_auth_hmacsha256_state state;
	crypto_auth_hmacsha256_init(&state, jwt->secret, GW_JWT_SECRET_BYTES);
	crypto_auth_hmacsha256_update(&state, (const unsigned char *)token,
	                              (unsigned long long)(dot2 - token));
	crypto_auth_hmacsha256_final(&state, mac);
	sodium_memzero(&state, sizeof(state));
	if (sodium_memcmp(mac, signature, sizeof(mac)) != 0)
		goto done;
	/* 3. Only now parse and check the claims. */
	payload = malloc(payload_text_len + 1);
	if (!payload ||
	    !decode_segment(dot1 + 1, payload_text_len, payload, payload_text_len + 1, &payload_len))
		goto done;
	payload_json = json_loadb((const char *)payload, payload_len, JSON_REJECT_DUPLICATES, NULL);
	ok = claims_valid(jwt, payload_json, now_s, claims);
done:
	json_decref(payload_json);
	free(payload);
	if (!ok)
		memset(claims, 0, sizeof(*claims));
	return ok ? ORN_OK : ORN_EINVAL;
}

orn_rc gw_jwt_secret_load(const char *env_secret, const char *data_dir,
                          unsigned char secret[GW_JWT_SECRET_BYTES])
{
	_Static_assert(GW_JWT_SECRET_BYTES == ORN_SECRET_BYTES, "the signing key is a secret of secret.h");
	return orn_secret_load(env_secret, data_dir, GW_JWT_SECRET_FILE, secret);
}
