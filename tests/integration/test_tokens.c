/* test_tokens.c — tokens Orion can take back (issue 14, finding 6) through a
 * real `orion serve`: a token that claims to live longer than the configured
 * lifetime is refused even with a valid signature, a demoted admin loses
 * admin on the next request, POST /auth/logout ends that token (and only
 * that one), and `orion admin revoke-tokens` (the account's token version
 * moving on) ends every token issued before. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "harness.h"
#include "http_client.h"

#define ADMIN_EMAIL    "boss@example.com"
#define ADMIN_PASSWORD "Granite-willow-compass-48"
#define TOKEN_MAX      4096

static char *data_dir;
static pid_t server_pid;
static char base_url[64];

static void start(void)
{
	const char *env[] = {"ORION_LOG_LEVEL=warn", "ORION_ADMIN_EMAIL=" ADMIN_EMAIL,
	                     "ORION_ADMIN_PASSWORD=" ADMIN_PASSWORD, NULL};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	cr_assert_geq(sodium_init(), 0);
	data_dir = th_tempdir("tokens");
	unsetenv("ORION_NATS_URL");
	unsetenv("ORION_JWT_SECRET");
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, NULL);
}

static void stop(void)
{
	hc_serve_teardown(&server_pid, &data_dir);
	curl_global_cleanup();
}

TestSuite(tokens, .init = start, .fini = stop, .timeout = 120);

static long status_of(const char *method, const char *path, const char *token)
{
	hc_reply r = hc_call(base_url, method, path, token, NULL, 0, NULL, NULL, 15000L);
	long status = r.status;
	hc_reply_free(&r);
	return status;
}

/* Waits up to 3 s (the projector applies events within milliseconds) for
 * method path with token to answer status. */
static void expect_status_soon(long status, const char *method, const char *path, const char *token)
{
	int64_t deadline = th_now_ms() + 3000;
	long got;
	while ((got = status_of(method, path, token)) != status && th_now_ms() < deadline)
		th_sleep_ms(50);
	cr_assert_eq(got, status, "%s %s: %ld, expected %ld", method, path, got, status);
}

/* Runs `orion admin ARGS...` on the server's data dir; returns its exit code. */
static int orion_admin(const char *verb, const char *email, const char *role)
{
	char dir_env[600], log_path[700];
	char *argv[] = {(char *)th_orion_bin(), "admin",      (char *)verb, "--email", (char *)email,
	                role ? "--role" : NULL, (char *)role, NULL};
	char *env[] = {dir_env, "ORION_LOG_LEVEL=warn", NULL};
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", data_dir);
	snprintf(log_path, sizeof log_path, "%s/admin.log", data_dir);
	pid_t pid = th_spawn(argv, env, log_path);
	return th_wait_exit(pid, 30000);
}

static char *b64url(const void *data, size_t len)
{
	size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *out = malloc(cap);
	sodium_bin2base64(out, cap, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return out;
}

/* A token for payload signed with the server's key (its data dir's jwt.secret). */
static void forge(const char *payload, char out[TOKEN_MAX])
{
	unsigned char key[32], mac[crypto_auth_hmacsha256_BYTES];
	char path[700];
	snprintf(path, sizeof path, "%s/jwt.secret", data_dir);
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(read(fd, key, sizeof key), (ssize_t)sizeof key);
	close(fd);
	const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
	char signing[TOKEN_MAX / 2];
	cr_assert_lt(strlen(h) + strlen(p) + 2, sizeof signing);
	snprintf(signing, sizeof signing, "%s.%s", h, p);
	crypto_auth_hmacsha256(mac, (const unsigned char *)signing, strlen(signing), key);
	char *s = b64url(mac, sizeof mac);
	snprintf(out, TOKEN_MAX, "%s.%s", signing, s);
	free(h);
	free(p);
	free(s);
}

/* The id of the account behind token (GET /me). */
static void user_id(const char *token, char *out, size_t cap)
{
	hc_reply r = hc_call(base_url, "GET", "/api/v1/me", token, NULL, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 200, "%s", r.body);
	snprintf(out, cap, "%s", json_string_value(json_object_get(r.json, "id")));
	hc_reply_free(&r);
}

/* A customer token for id issued at iat, expiring at exp, signed with the server's key. */
static void forge_lifetime(const char *id, long long iat, long long exp, char out[TOKEN_MAX])
{
	char payload[512];
	snprintf(payload, sizeof payload,
	         "{\"sub\":\"%s\",\"role\":\"customer\",\"iss\":\"orion\",\"aud\":\"orion-api\",\"iat\":%lld,"
	         "\"exp\":%lld,\"jti\":\"0123456789abcdef0123456789abcdef\",\"ver\":0}",
	         id, iat, exp);
	forge(payload, out);
}

Test(tokens, a_token_claiming_to_live_longer_than_the_lifetime_is_refused)
{
	char token[TOKEN_MAX], forged[TOKEN_MAX], id[80];
	hc_customer_token(base_url, "long-lived@example.com", token, sizeof token);
	user_id(token, id, sizeof id);
	long long now = (long long)time(NULL);
	/* exp of 2^62, signed with the server's own key */
	forge_lifetime(id, now, 4611686018427387904LL, forged);
	cr_assert_eq(status_of("GET", "/api/v1/me", forged), 401);
	/* one second more than the lifetime (3600 s) */
	forge_lifetime(id, now, now + 3601, forged);
	cr_assert_eq(status_of("GET", "/api/v1/me", forged), 401);
	/* the same within the lifetime is a good token */
	forge_lifetime(id, now, now + 3600, forged);
	cr_assert_eq(status_of("GET", "/api/v1/me", forged), 200);
}

Test(tokens, a_demoted_admin_loses_admin_at_once)
{
	char token[TOKEN_MAX];
	hc_login_token(base_url, ADMIN_EMAIL, ADMIN_PASSWORD, token, sizeof token);
	cr_assert_eq(status_of("GET", "/api/v1/admin/inventory", token), 200);
	cr_assert_eq(orion_admin("set-role", ADMIN_EMAIL, "customer"), 0, "orion admin set-role");
	/* the same token, not a new login */
	expect_status_soon(403, "GET", "/api/v1/admin/inventory", token);
	hc_reply r = hc_call(base_url, "GET", "/api/v1/me", token, NULL, 0, NULL, NULL, 15000L);
	cr_assert_str_eq(json_string_value(json_object_get(r.json, "role")), "customer", "%s", r.body);
	hc_reply_free(&r);
	/* promoted again: the token that was issued as admin is admin again */
	cr_assert_eq(orion_admin("set-role", ADMIN_EMAIL, "admin"), 0);
	expect_status_soon(200, "GET", "/api/v1/admin/inventory", token);
}

Test(tokens, logout_ends_this_token_and_no_other)
{
	char first[TOKEN_MAX], second[TOKEN_MAX];
	hc_customer_token(base_url, "leaving@example.com", first, sizeof first);
	hc_customer_token(base_url, "leaving@example.com", second, sizeof second);
	cr_assert_eq(status_of("GET", "/api/v1/me", first), 200);
	cr_assert_eq(status_of("POST", "/api/v1/auth/logout", first), 204);
	/* at once, on every route */
	cr_assert_eq(status_of("GET", "/api/v1/me", first), 401);
	cr_assert_eq(status_of("GET", "/api/v1/cart", first), 401);
	cr_assert_eq(status_of("POST", "/api/v1/auth/logout", first), 401);
	cr_assert_eq(status_of("GET", "/api/v1/me", second), 200, "the other session goes on");
	cr_assert_eq(status_of("POST", "/api/v1/auth/logout", NULL), 401);
}

Test(tokens, revoking_every_token_of_an_account_moves_its_version_on)
{
	char first[TOKEN_MAX], second[TOKEN_MAX], fresh[TOKEN_MAX];
	hc_customer_token(base_url, "stolen@example.com", first, sizeof first);
	hc_customer_token(base_url, "stolen@example.com", second, sizeof second);
	cr_assert_eq(orion_admin("revoke-tokens", "stolen@example.com", NULL), 0,
	             "orion admin revoke-tokens");
	expect_status_soon(401, "GET", "/api/v1/me", first);
	cr_assert_eq(status_of("GET", "/api/v1/me", second), 401);
	/* a login after it carries the new version */
	hc_customer_token(base_url, "stolen@example.com", fresh, sizeof fresh);
	cr_assert_eq(status_of("GET", "/api/v1/me", fresh), 200);
}
