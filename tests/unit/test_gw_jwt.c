/* test_gw_jwt.c — gateway/gw_jwt.c: tokens signed by libjwt verify; every
 * forged, altered, expired or mis-addressed token is refused the same way;
 * the secret loader's file and environment rules. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "gw_jwt.h"

#define NOW 1700000000LL
#define ISS "orion"
#define AUD "orion-api"

static unsigned char secret[GW_JWT_SECRET_BYTES];
static gw_jwt *jwt;

static void setup(void)
{
	cr_assert_geq(sodium_init(), 0);
	memset(secret, 0x42, sizeof(secret));
	jwt = gw_jwt_create(secret, ISS, AUD, 30, 3600);
	cr_assert_not_null(jwt);
}

static void teardown(void)
{
	gw_jwt_destroy(jwt);
}

TestSuite(gw_jwt, .init = setup, .fini = teardown);

static char *b64url(const void *data, size_t len)
{
	size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *out = malloc(cap);
	sodium_bin2base64(out, cap, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return out;
}

/* A token with the given header and payload JSON, HMAC-SHA256 signed with key. */
static char *forge(const char *header, const char *payload, const unsigned char *key)
{
	char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
	size_t signing_len = strlen(h) + 1 + strlen(p);
	char *signing = malloc(signing_len + 1);
	snprintf(signing, signing_len + 1, "%s.%s", h, p);
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key, GW_JWT_SECRET_BYTES);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)signing, signing_len);
	crypto_auth_hmacsha256_final(&st, mac);
	char *s = b64url(mac, sizeof(mac));
	size_t len = signing_len + 1 + strlen(s) + 1;
	char *token = malloc(len);
	snprintf(token, len, "%s.%s", signing, s);
	free(h);
	free(p);
	free(signing);
	free(s);
	return token;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static char *claims_json(const char *sub, const char *role, const char *iss, const char *aud, long long iat,
                         long long exp)
{
	char *out = malloc(512);
	snprintf(out, 512,
	         "{\"sub\":\"%s\",\"role\":\"%s\",\"iss\":\"%s\",\"aud\":\"%s\",\"iat\":%lld,\"exp\":%lld,"
	         "\"jti\":\"0123456789abcdef\",\"ver\":0}",
	         sub, role, iss, aud, iat, exp);
	return out;
}

static void expect_rejected(const char *token)
{
	gw_claims claims;
	memset(&claims, 0x7f, sizeof(claims));
	cr_assert_eq(gw_jwt_verify(jwt, token, NOW, &claims), ORN_EINVAL, "accepted: %s",
	             token ? token : "(null)");
	cr_assert_eq(claims.sub[0], '\0');
}

static void expect_forged_rejected(const char *header, const char *payload)
{
	char *token = forge(header, payload, secret);
	expect_rejected(token);
	free(token);
}

Test(gw_jwt, round_trip_sign_and_verify)
{
	char *token = NULL;
	gw_claims claims;
	cr_assert_eq(gw_jwt_sign(jwt, "user_1-A", GW_ROLE_ADMIN, 7, NOW, 900, &token), ORN_OK);
	cr_assert_eq(gw_jwt_verify(jwt, token, NOW + 10, &claims), ORN_OK);
	cr_assert_str_eq(claims.sub, "user_1-A");
	cr_assert_eq(claims.ver, 7);
	cr_assert_eq(strlen(claims.jti), 32, "a random 128-bit id: %s", claims.jti);
	cr_assert_eq(claims.role, GW_ROLE_ADMIN);
	cr_assert_eq(claims.iat, NOW);
	cr_assert_eq(claims.exp, NOW + 900);
	/* After expiry plus leeway it is refused. */
	cr_assert_eq(gw_jwt_verify(jwt, token, NOW + 900 + 30, &claims), ORN_EINVAL);
	free(token);
}

Test(gw_jwt, hand_made_valid_token_is_accepted)
{
	char *payload = claims_json("u1", "customer", ISS, AUD, NOW, NOW + 60);
	char *token = forge(HS256, payload, secret);
	gw_claims claims;
	cr_assert_eq(gw_jwt_verify(jwt, token, NOW, &claims), ORN_OK);
	cr_assert_eq(claims.role, GW_ROLE_CUSTOMER);
	/* Header member order does not matter. */
	free(token);
	token = forge("{\"typ\":\"JWT\",\"alg\":\"HS256\"}", payload, secret);
	cr_assert_eq(gw_jwt_verify(jwt, token, NOW, &claims), ORN_OK);
	free(token);
	free(payload);
}

Test(gw_jwt, sign_refuses_bad_input)
{
	char *token = (char *)"x";
	cr_assert_eq(gw_jwt_sign(jwt, "bad id", GW_ROLE_CUSTOMER, 0, NOW, 60, &token), ORN_EINVAL);
	cr_assert_null(token);
	cr_assert_eq(gw_jwt_sign(jwt, "ok", GW_ROLE_CUSTOMER, 0, NOW, 0, &token), ORN_EINVAL);
	cr_assert_eq(gw_jwt_sign(jwt, "ok", GW_ROLE_CUSTOMER, 0, NOW, 3601, &token), ORN_EINVAL,
	             "longer than the maximum lifetime");
	cr_assert_eq(gw_jwt_sign(jwt, "ok", GW_ROLE_CUSTOMER, -1, NOW, 60, &token), ORN_EINVAL);
}

Test(gw_jwt, alg_none_is_rejected)
{
	char *payload = claims_json("u1", "customer", ISS, AUD, NOW, NOW + 60);
	char *h = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}", 27), *p = b64url(payload, strlen(payload));
	char token[1024];
	snprintf(token, sizeof(token), "%s.%s.", h, p);
	expect_rejected(token);
	expect_forged_rejected("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload);
	free(h);
	free(p);
	free(payload);
}

Test(gw_jwt, swapped_or_extended_header_is_rejected)
{
	char *payload = claims_json("u1", "customer", ISS, AUD, NOW, NOW + 60);
	expect_forged_rejected("{\"alg\":\"HS384\",\"typ\":\"JWT\"}", payload);
	expect_forged_rejected("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload);
	expect_forged_rejected("{\"alg\":\"hs256\",\"typ\":\"JWT\"}", payload);
	expect_forged_rejected("{\"alg\":\"HS256\"}", payload);
	expect_forged_rejected("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"x\"}", payload);
	expect_forged_rejected("{\"alg\":\"HS256\",\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload);
	expect_forged_rejected("[\"HS256\"]", payload);
	free(payload);
}

Test(gw_jwt, bad_signature_is_rejected)
{
	unsigned char other[GW_JWT_SECRET_BYTES];
	memset(other, 0x43, sizeof(other));
	char *payload = claims_json("u1", "admin", ISS, AUD, NOW, NOW + 60);
	char *token = forge(HS256, payload, other);
	expect_rejected(token);
	free(token);
	/* Flip one signature character, and truncate the signature. */
	token = forge(HS256, payload, secret);
	size_t len = strlen(token);
	token[len - 2] = token[len - 2] == 'A' ? 'B' : 'A';
	expect_rejected(token);
	token[len - 4] = '\0';
	expect_rejected(token);
	free(token);
	/* A valid signature over a changed payload (customer → admin). */
	char *good = forge(HS256, payload, secret);
	char *customer = claims_json("u1", "customer", ISS, AUD, NOW, NOW + 60);
	char *p = b64url(customer, strlen(customer));
	char *dot1 = strchr(good, '.'), *dot2 = strrchr(good, '.');
	char spliced[2048];
	snprintf(spliced, sizeof(spliced), "%.*s.%s%s", (int)(dot1 - good), good, p, dot2);
	expect_rejected(spliced);
	free(good);
	free(customer);
	free(p);
	free(payload);
}

Test(gw_jwt, expired_and_time_claims)
{
	char *p = claims_json("u1", "customer", ISS, AUD, NOW - 3600, NOW - 31);
	expect_forged_rejected(HS256, p);
	free(p);
	/* Inside the leeway is still accepted. */
	p = claims_json("u1", "customer", ISS, AUD, NOW - 3600, NOW - 29);
	char *token = forge(HS256, p, secret);
	gw_claims claims;
	cr_assert_eq(gw_jwt_verify(jwt, token, NOW, &claims), ORN_OK);
	free(token);
	free(p);
	/* Issued in the future. */
	p = claims_json("u1", "customer", ISS, AUD, NOW + 3600, NOW + 7200);
	expect_forged_rejected(HS256, p);
	free(p);
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":1700000000}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":1700000000,\"exp\":\"1800000000\"}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":1700000000,\"exp\":1800000000.5}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"exp\":1800000000}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":1700000000,\"exp\":1800000000,\"nbf\":1800000000}");
}

Test(gw_jwt, extreme_time_claims_do_not_overflow)
{
	/* Signed with the key, so only the time checks decide; UBSan builds would
	 * report an overflow if a claim entered the arithmetic. */
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":1700000000,\"exp\":9223372036854775807,\"jti\":\"a\",\"ver\":0}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":-9223372036854775807,\"exp\":1700000100,\"jti\":\"a\",\"ver\":0}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":1700000000,\"exp\":-9223372036854775807}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":9223372036854775807,\"exp\":9223372036854775807}");
}

Test(gw_jwt, a_token_that_claims_to_live_longer_than_the_maximum_is_refused)
{
	/* exp of 2^62: signed with the key, refused for its lifetime */
	char *p = claims_json("u1", "customer", ISS, AUD, NOW, 4611686018427387904LL);
	expect_forged_rejected(HS256, p);
	free(p);
	p = claims_json("u1", "customer", ISS, AUD, NOW, NOW + 3601);
	expect_forged_rejected(HS256, p);
	free(p);
	p = claims_json("u1", "customer", ISS, AUD, NOW, NOW); /* exp must follow iat */
	expect_forged_rejected(HS256, p);
	free(p);
	p = claims_json("u1", "customer", ISS, AUD, NOW, NOW + 3600);
	char *token = forge(HS256, p, secret);
	gw_claims claims;
	cr_assert_eq(gw_jwt_verify(jwt, token, NOW, &claims), ORN_OK, "exactly the maximum");
	free(token);
	free(p);
	/* without jti or ver, or with a bad one */
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":1700000000,\"exp\":1700000060,\"ver\":0}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":1700000000,\"exp\":1700000060,\"jti\":\"a\"}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":1700000000,\"exp\":1700000060,\"jti\":\"a.b\",\"ver\":0}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	               "\"iat\":1700000000,\"exp\":1700000060,\"jti\":\"a\",\"ver\":-1}");
}

Test(gw_jwt, wrong_issuer_audience_subject_role)
{
	char *p = claims_json("u1", "customer", "evil", AUD, NOW, NOW + 60);
	expect_forged_rejected(HS256, p);
	free(p);
	p = claims_json("u1", "customer", ISS, "other-api", NOW, NOW + 60);
	expect_forged_rejected(HS256, p);
	free(p);
	p = claims_json("", "customer", ISS, AUD, NOW, NOW + 60);
	expect_forged_rejected(HS256, p);
	free(p);
	p = claims_json("u.1", "customer", ISS, AUD, NOW, NOW + 60);
	expect_forged_rejected(HS256, p);
	free(p);
	p = claims_json("u1", "root", ISS, AUD, NOW, NOW + 60);
	expect_forged_rejected(HS256, p);
	free(p);
	expect_forged_rejected(HS256, "{\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	                              "\"iat\":1700000000,\"exp\":1800000000}");
	expect_forged_rejected(HS256, "{\"sub\":\"u1\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	                              "\"iat\":1700000000,\"exp\":1800000000}");
	expect_forged_rejected(
	        HS256, "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":[\"orion-api\"],"
	               "\"iat\":1700000000,\"exp\":1800000000}");
	expect_forged_rejected(HS256, "[1,2,3]");
	expect_forged_rejected(HS256, "not json");
}

Test(gw_jwt, garbage_and_oversized_tokens)
{
	expect_rejected(NULL);
	expect_rejected("");
	expect_rejected(".");
	expect_rejected("..");
	expect_rejected("a.b.c");
	expect_rejected("a.b.c.d");
	expect_rejected("Bearer x");
	expect_rejected("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.!!!!");
	/* Padding and standard-alphabet characters are not base64url. */
	char *p = claims_json("u1", "customer", ISS, AUD, NOW, NOW + 60);
	char *token = forge(HS256, p, secret);
	size_t len = strlen(token);
	char *padded = malloc(len + 2);
	snprintf(padded, len + 2, "%s=", token);
	expect_rejected(padded);
	free(padded);
	free(token);
	/* A valid token made longer than the bound by a big claim. */
	char *big = malloc(GW_JWT_MAX_TOKEN + 200);
	int n = snprintf(big, 200,
	                 "{\"sub\":\"u1\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\","
	                 "\"iat\":%lld,\"exp\":%lld,\"pad\":\"",
	                 NOW, NOW + 60);
	memset(big + n, 'x', GW_JWT_MAX_TOKEN);
	strcpy(big + n + GW_JWT_MAX_TOKEN, "\"}");
	expect_forged_rejected(HS256, big);
	free(big);
	free(p);
}

Test(gw_jwt, secret_from_environment)
{
	unsigned char key[GW_JWT_SECRET_BYTES], again[GW_JWT_SECRET_BYTES];
	cr_assert_eq(gw_jwt_secret_load("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	                                NULL, key),
	             ORN_OK);
	cr_assert_eq(key[0], 0x00);
	cr_assert_eq(key[1], 0x11);
	cr_assert_eq(key[31], 0xff);
	cr_assert_eq(gw_jwt_secret_load("a passphrase that is long enough to be used", NULL, key), ORN_OK);
	cr_assert_eq(gw_jwt_secret_load("a passphrase that is long enough to be used", NULL, again), ORN_OK);
	cr_assert_arr_eq(key, again, sizeof(key));
	cr_assert_eq(gw_jwt_secret_load("short", NULL, key), ORN_EINVAL);
}

Test(gw_jwt, secret_file_is_generated_once_with_mode_0600)
{
	char dir[] = "/tmp/orion-gw-jwt-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char data_dir[256], path[300];
	snprintf(data_dir, sizeof(data_dir), "%s/var", dir);
	snprintf(path, sizeof(path), "%s/%s", data_dir, GW_JWT_SECRET_FILE);
	unsigned char first[GW_JWT_SECRET_BYTES], second[GW_JWT_SECRET_BYTES];
	cr_assert_eq(gw_jwt_secret_load(NULL, data_dir, first), ORN_OK);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(st.st_size, GW_JWT_SECRET_BYTES);
	cr_assert_eq(gw_jwt_secret_load("", data_dir, second), ORN_OK);
	cr_assert_arr_eq(first, second, sizeof(first));
	/* A key file readable by others is refused. */
	cr_assert_eq(chmod(path, 0644), 0);
	cr_assert_eq(gw_jwt_secret_load(NULL, data_dir, second), ORN_EINVAL);
	unlink(path);
	rmdir(data_dir);
	rmdir(dir);
}
