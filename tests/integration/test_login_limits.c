/* test_login_limits.c — the login limits of issue 14 (finding 2) and issue 19
 * (item 6) through a real `orion serve`: failed logins are limited per
 * (account, client address) and per address, a wrong password from one
 * address never stops the right one from another, successful logins cost no
 * budget, and Retry-After says what ADR 006 says (5 failures, then one a
 * minute). The clients connect from two loopback addresses, 127.0.0.2 (the
 * attacker) and 127.0.0.3 (the owner): the server sees them as two clients. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "http_client.h"

#define OWNER_EMAIL    "owner@example.com"
#define OWNER_PASSWORD "Quartz-lantern-orchard-71"
#define ATTACKER       "127.0.0.2"
#define OWNER          "127.0.0.3"

static char *data_dir;
static pid_t server_pid;
static char base_url[64];

static void start(void)
{
	const char *env[] = {"ORION_LOG_LEVEL=warn", NULL};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	data_dir = th_tempdir("login-limits");
	unsetenv("ORION_NATS_URL");
	unsetenv("ORION_JWT_SECRET");
	/* 0.0.0.0 would do too; 127.0.0.1 accepts from every 127/8 address */
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, NULL);
	hc_set_source_address(OWNER);
	hc_reply r =
	        hc_call(base_url, "POST", "/api/v1/auth/register", NULL,
	                "{\"email\":\"" OWNER_EMAIL "\",\"password\":\"" OWNER_PASSWORD "\",\"name\":\"O\"}",
	                0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 202, "register: %ld %s", r.status, r.body);
	hc_reply_free(&r);
}

static void stop(void)
{
	hc_set_source_address(NULL);
	hc_serve_teardown(&server_pid, &data_dir);
	curl_global_cleanup();
}

TestSuite(login_limits, .init = start, .fini = stop, .timeout = 120);

/* POST /auth/login from address; returns the status and copies Retry-After
 * (or "") into retry_after. */
static long login_from(const char *address, const char *email, const char *password, char *retry_after,
                       size_t cap)
{
	char body[256];
	snprintf(body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
	hc_set_source_address(address);
	hc_reply r = hc_call(base_url, "POST", "/api/v1/auth/login", NULL, body, 0, NULL, NULL, 15000L);
	const char *retry = hc_header(&r, "Retry-After");
	if (retry_after != NULL)
		snprintf(retry_after, cap, "%s", retry != NULL ? retry : "");
	if (r.status != 200) {
		cr_assert_not_null(r.json, "a problem body: %s", r.body);
		cr_assert_str_eq(hc_header(&r, "Content-Type"), "application/problem+json");
	}
	long status = r.status;
	hc_reply_free(&r);
	return status;
}

Test(login_limits, a_wrong_password_from_one_address_never_stops_the_right_one_from_another)
{
	char retry[32];
	/* the attacker guesses: 5 failures are answered 401, then 429 */
	for (int i = 1; i <= 5; i++)
		cr_assert_eq(login_from(ATTACKER, OWNER_EMAIL, "guess-number-one", retry, sizeof retry), 401,
		             "guess %d", i);
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(login_from(ATTACKER, OWNER_EMAIL, "guess-number-two", retry, sizeof retry), 429);
		/* one a minute: the next attempt is about a minute away */
		cr_assert(atoi(retry) > 50 && atoi(retry) <= 60, "Retry-After: '%s'", retry);
	}
	/* the attacker's address cannot try the right password either */
	cr_assert_eq(login_from(ATTACKER, OWNER_EMAIL, OWNER_PASSWORD, retry, sizeof retry), 429);
	/* the owner, from another address, gets in at once, again and again */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(login_from(OWNER, OWNER_EMAIL, OWNER_PASSWORD, NULL, 0), 200, "login %d", i);
	/* and a typo of the owner's is a plain 401: the attacker spent no budget of the owner's address */
	cr_assert_eq(login_from(OWNER, OWNER_EMAIL, "Quartz-lantern-orchard-17", NULL, 0), 401);
	cr_assert_eq(login_from(OWNER, OWNER_EMAIL, OWNER_PASSWORD, NULL, 0), 200);
}

Test(login_limits, successful_logins_cost_no_budget)
{
	/* far more than the 5 failures an (account, address) may have */
	for (int i = 0; i < 25; i++)
		cr_assert_eq(login_from(OWNER, OWNER_EMAIL, OWNER_PASSWORD, NULL, 0), 200, "login %d", i);
	/* failures still count after them */
	for (int i = 1; i <= 5; i++)
		cr_assert_eq(login_from(OWNER, OWNER_EMAIL, "not-the-password", NULL, 0), 401, "failure %d",
		             i);
	cr_assert_eq(login_from(OWNER, OWNER_EMAIL, "not-the-password", NULL, 0), 429);
}

Test(login_limits, one_address_spraying_many_accounts_is_limited_per_address)
{
	char email[64], retry[32];
	int limited_at = 0;
	/* one guess on each of many accounts: no (account, address) budget runs out */
	for (int i = 1; i <= 40 && limited_at == 0; i++) {
		snprintf(email, sizeof email, "user%d@example.com", i);
		long status = login_from(ATTACKER, email, "guess-number-one", retry, sizeof retry);
		if (status == 429)
			limited_at = i;
		else
			cr_assert_eq(status, 401);
	}
	/* 20 at once, then 20 a minute: a token or two may come back while the loop runs */
	cr_assert(limited_at >= 21 && limited_at <= 24, "the address budget (20) answered 429 at attempt %d",
	          limited_at);
	cr_assert_geq(atoi(retry), 1, "Retry-After: '%s'", retry);
	/* the owner's address is another client */
	cr_assert_eq(login_from(OWNER, OWNER_EMAIL, OWNER_PASSWORD, NULL, 0), 200);
}
