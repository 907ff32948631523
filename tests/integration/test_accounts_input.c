/* test_accounts_input.c — issue 14, finding 5, through a real `orion serve`:
 * registration refuses addresses the mailer cannot send to and non-ASCII
 * look-alikes (RFC 5321 syntax, IDN only as punycode), normalizes before
 * uniqueness, and refuses common and email-derived passwords (libpwquality
 * and cracklib's dictionary), each with a field error. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "http_client.h"

#define GOOD_PASSWORD "Cobalt-thistle-ferry-64"

static char *data_dir;
static pid_t server_pid;
static char base_url[64];

static void start(void)
{
	const char *env[] = {"ORION_LOG_LEVEL=warn", "ORION_AUTH_ADDRESS_BURST=1000", NULL};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	data_dir = th_tempdir("accounts-input");
	unsetenv("ORION_NATS_URL");
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, NULL);
}

static void stop(void)
{
	hc_serve_teardown(&server_pid, &data_dir);
	curl_global_cleanup();
}

TestSuite(accounts_input, .init = start, .fini = stop, .timeout = 120);

/* POST /auth/register with the email as a raw JSON string literal. */
static hc_reply register_raw(const char *email_json, const char *password)
{
	char body[512];
	snprintf(body, sizeof body, "{\"email\":%s,\"password\":\"%s\",\"name\":\"N\"}", email_json,
	         password);
	return hc_call(base_url, "POST", "/api/v1/auth/register", NULL, body, 0, NULL, NULL, 15000L);
}

/* 400 with an error naming field. */
static void expect_field_error(hc_reply *r, const char *field, const char *what)
{
	size_t i;
	json_t *e;
	cr_assert_eq(r->status, 400, "%s: %ld %s", what, r->status, r->body);
	cr_assert_str_eq(hc_header(r, "Content-Type"), "application/problem+json");
	json_array_foreach(json_object_get(r->json, "errors"), i, e)
	{
		const char *name = json_string_value(json_object_get(e, "field"));
		if (name != NULL && strcmp(name, field) == 0) {
			cr_assert_not_null(json_string_value(json_object_get(e, "message")));
			hc_reply_free(r);
			return;
		}
	}
	cr_assert_fail("%s: no error for %s in %s", what, field, r->body);
}

Test(accounts_input, addresses_the_mailer_cannot_send_to_are_refused)
{
	static const char *const refused[] = {
	        "\"a,b@example.com\"",
	        "\"\\\"<script>\\\"@example.com\"",
	        "\"a@example.com>\"",
	        "\"\xef\xbd\x81"
	        "dmin@example.com\"",           /* a fullwidth a: a look-alike of admin@ */
	        "\"admin@ex\xc3\xa4mple.com\"", /* an IDN not in punycode */
	        "\"admin@localhost\"",
	        "\"admin@[127.0.0.1]\"",
	        "\"ad..min@example.com\"",
	};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		hc_reply r = register_raw(refused[i], GOOD_PASSWORD);
		expect_field_error(&r, "email", refused[i]);
	}
	/* punycode is the way in for an international domain */
	hc_reply r = register_raw("\"admin@xn--exmple-cua.com\"", GOOD_PASSWORD);
	cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
}

Test(accounts_input, an_address_is_normalized_before_it_is_compared)
{
	char token[4096];
	hc_reply r = register_raw("\"  Marie.Curie@Example.ORG \"", GOOD_PASSWORD);
	cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	hc_login_token(base_url, "marie.curie@example.org", GOOD_PASSWORD, token, sizeof token);
	/* the same address in other forms is the same account: the same answer
	 * (ADR 031), and the other password does not become the account's */
	static const char *const same[] = {"\"marie.curie@example.org\"", "\"MARIE.CURIE@EXAMPLE.ORG\""};
	for (size_t i = 0; i < 2; i++) {
		r = register_raw(same[i], "Quartz-harbour-lantern-27");
		cr_assert_eq(r.status, 202, "%s: %ld %s", same[i], r.status, r.body);
		hc_reply_free(&r);
	}
	r = hc_call(base_url, "POST", "/api/v1/auth/login", NULL,
	            "{\"email\":\"Marie.Curie@example.org\",\"password\":\"Quartz-harbour-lantern-27\"}", 0,
	            NULL, NULL, 15000L);
	cr_assert_eq(r.status, 401, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	hc_login_token(base_url, "MARIE.curie@example.org", GOOD_PASSWORD, token, sizeof token);
}

Test(accounts_input, common_and_email_derived_passwords_are_refused)
{
	static const char *const weak[] = {"password1", "qwertyuiop", "123456789", "iloveyou2"};
	for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++) {
		hc_reply r = register_raw("\"pierre@example.net\"", weak[i]);
		expect_field_error(&r, "password", weak[i]);
	}
	static const char *const derived[] = {"pierre2024!x", "Pierre-Sorbonne", "my-example-net-9"};
	for (size_t i = 0; i < sizeof derived / sizeof derived[0]; i++) {
		hc_reply r = register_raw("\"pierre@example.net\"", derived[i]);
		expect_field_error(&r, "password", derived[i]);
	}
	/* none of that was stored: the address is still free */
	hc_reply r = register_raw("\"pierre@example.net\"", GOOD_PASSWORD);
	cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	char token[4096];
	hc_login_token(base_url, "pierre@example.net", GOOD_PASSWORD, token, sizeof token);
}
