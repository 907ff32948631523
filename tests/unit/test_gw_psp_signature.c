/* test_gw_psp_signature.c — gateway/gw_api_psp.c's webhook signature check
 * (ADR 028): HMAC-SHA256 over "t.body", any of several v1 digests, 300 s of
 * tolerance either way, and every malformed header refused. */
#include <criterion/criterion.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "gw_api_psp.h"

#define SECRET "whsec_test_orion"
#define BODY   "{\"id\":\"evt_1\",\"type\":\"payment_intent.succeeded\"}"
#define NOW    1796624248LL

/* "t=<t>,v1=<hex of HMAC(secret, t.body)>" into out. */
static void sign(char *out, size_t cap, const char *secret, long long t, const char *body)
{
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	char hex[2 * sizeof mac + 1], prefix[32];
	crypto_auth_hmacsha256_state st;
	snprintf(prefix, sizeof prefix, "%lld.", t);
	crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)prefix, strlen(prefix));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
	snprintf(out, cap, "t=%lld,v1=%s", t, hex);
}

static bool valid(const char *header, const char *body, long long now)
{
	return gw_psp_signature_valid(SECRET, header, (const unsigned char *)body, strlen(body), now);
}

static void init(void)
{
	cr_assert(sodium_init() >= 0);
}

Test(gw_psp_signature, a_fresh_signature_of_the_body_is_valid, .init = init)
{
	char header[256];
	sign(header, sizeof header, SECRET, NOW, BODY);
	cr_assert(valid(header, BODY, NOW));
	cr_assert(valid(header, BODY, NOW + 300), "300 s late is still in time");
	cr_assert(valid(header, BODY, NOW - 300), "a clock 300 s behind");
}

Test(gw_psp_signature, old_tampered_or_foreign_signatures_are_refused, .init = init)
{
	char header[256];
	sign(header, sizeof header, SECRET, NOW, BODY);
	cr_assert_not(valid(header, BODY, NOW + 301), "older than 300 s");
	cr_assert_not(valid(header, BODY, NOW - 301), "from the future");
	cr_assert_not(valid(header, "{\"id\":\"evt_2\",\"type\":\"payment_intent.succeeded\"}", NOW),
	              "another body");
	sign(header, sizeof header, "whsec_other", NOW, BODY);
	cr_assert_not(valid(header, BODY, NOW), "another secret");
	cr_assert_not(gw_psp_signature_valid("", header, (const unsigned char *)BODY, strlen(BODY), NOW),
	              "no secret configured");
}

Test(gw_psp_signature, one_matching_v1_among_several_is_enough, .init = init)
{
	char good[256], header[512];
	sign(good, sizeof good, SECRET, NOW, BODY);
	const char *v1 = strstr(good, "v1=");
	snprintf(header, sizeof header, "t=%lld,v1=%064d,%s,v0=abc", NOW, 0, v1);
	cr_assert(valid(header, BODY, NOW));
}

Test(gw_psp_signature, malformed_headers_are_refused, .init = init)
{
	char good[256], header[512];
	sign(good, sizeof good, SECRET, NOW, BODY);
	const char *v1 = strstr(good, "v1=");
	cr_assert_not(valid(NULL, BODY, NOW));
	cr_assert_not(valid("", BODY, NOW));
	cr_assert_not(valid(v1, BODY, NOW), "no t");
	snprintf(header, sizeof header, "t=%lld", NOW);
	cr_assert_not(valid(header, BODY, NOW), "no v1");
	snprintf(header, sizeof header, "t=%lldx,%s", NOW, v1);
	cr_assert_not(valid(header, BODY, NOW), "t not a number");
	snprintf(header, sizeof header, "t=,%s", v1);
	cr_assert_not(valid(header, BODY, NOW), "t empty");
	snprintf(header, sizeof header, "t=%lld,%.60s", NOW, v1);
	cr_assert_not(valid(header, BODY, NOW), "v1 cut short");
	snprintf(header, sizeof header, "t=%lld,v1=%064d", NOW, 0);
	cr_assert_not(valid(header, BODY, NOW), "v1 of zeros");
}
