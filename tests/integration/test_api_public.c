/* test_api_public.c — the public routes of gateway/gw_api_public.c end to
 * end: `orion serve` (every role, embedded nats-server, optionally --demo)
 * on a free loopback port, driven with libcurl as a client would. Accounts
 * (register, login, /me, duplicates, strict bodies, limits), login rate
 * limits, and the catalog (paging, filters, search, detail, bad queries).
 * Every response is checked for the security headers. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "http_client.h"

#define ADMIN_EMAIL    "root@orion.test"
#define ADMIN_PASSWORD "admin-password-1"

static char *data_dir;
static pid_t server_pid;
static char base_url[64];

/* ---- the server ------------------------------------------------------------ */

static void setup(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	data_dir = th_tempdir("api-public");
	unsetenv("ORION_NATS_URL");
	unsetenv("ORION_JWT_SECRET");
	server_pid = 0;
}

static void teardown(void)
{
	if (server_pid > 0) {
		hc_serve_stop(server_pid);
		server_pid = 0;
	}
	th_rmrf(data_dir);
	free(data_dir);
	curl_global_cleanup();
}

TestSuite(api_public, .init = setup, .fini = teardown, .timeout = 60);

/* Starts `orion serve [--demo]` and waits until it announces its URL. */
static void start_server(bool demo)
{
	const char *args[] = {demo ? "--demo" : NULL, NULL};
	const char *env[] = {"ORION_ADMIN_EMAIL=" ADMIN_EMAIL, "ORION_ADMIN_PASSWORD=" ADMIN_PASSWORD,
	                     "ORION_LOG_LEVEL=warn", NULL};
	server_pid = hc_serve_start(data_dir, args, env, base_url, sizeof base_url, NULL);
}

/* SIGTERM, then the exit code must be 0: a clean stop (under the sanitizer
 * build, no leak either). The .fini stops the server if a test failed first. */
static void stop_server(void)
{
	int code = hc_serve_stop(server_pid);
	server_pid = 0;
	cr_assert_eq(code, 0, "serve exited with %d", code);
}

/* ---- a small curl client --------------------------------------------------- */

typedef hc_reply reply;

static void expect_header(const reply *r, const char *name, const char *expected)
{
	const char *value = hc_header(r, name);
	cr_assert_not_null(value, "missing header %s", name);
	cr_assert_str_eq(value, expected, "header %s", name);
}

/* Performs method path with an optional bearer token and JSON body (len
 * bytes; 0 means strlen). Checks the security headers of every answer. */
static reply request(const char *method, const char *path, const char *token, const char *body, size_t len)
{
	reply r = hc_call(base_url, method, path, token, body, len, NULL, NULL, 15000L);
	expect_header(&r, "X-Content-Type-Options", "nosniff");
	expect_header(&r, "Content-Security-Policy", "default-src 'none'");
	expect_header(&r, "Referrer-Policy", "no-referrer");
	cr_assert_not_null(hc_header(&r, "Content-Type"), "%s %s has no Content-Type", method, path);
	return r;
}

static reply get(const char *path, const char *token)
{
	return request("GET", path, token, NULL, 0);
}

static reply post(const char *path, const char *body)
{
	return request("POST", path, NULL, body, 0);
}

static const char *str(const json_t *object, const char *key)
{
	const char *value = json_string_value(json_object_get(object, key));
	cr_assert_not_null(value, "no string %s", key);
	return value;
}

/* status with a problem+json body; returns the problem. */
static json_t *expect_problem(const reply *r, long status)
{
	cr_assert_eq(r->status, status, "status %ld (expected %ld), body %s", r->status, status, r->body);
	expect_header(r, "Content-Type", "application/problem+json");
	cr_assert_not_null(r->json, "body: %s", r->body);
	cr_assert_eq(json_integer_value(json_object_get(r->json, "status")), status);
	cr_assert_not_null(json_string_value(json_object_get(r->json, "type")));
	cr_assert_not_null(json_string_value(json_object_get(r->json, "title")));
	return r->json;
}

/* A 400 whose errors name field (among others). */
static void expect_field_error(const reply *r, const char *field)
{
	json_t *errors = json_object_get(expect_problem(r, 400), "errors");
	size_t i;
	json_t *e;
	cr_assert(json_is_array(errors), "no errors: %s", r->body);
	json_array_foreach(errors, i, e)
	{
		cr_assert_not_null(json_string_value(json_object_get(e, "message")));
		if (strcmp(str(e, "field"), field) == 0)
			return;
	}
	cr_assert_fail("no error for %s in %s", field, r->body);
}

/* The object has exactly these keys. */
static void expect_keys(const json_t *object, const char *const *keys, size_t count)
{
	cr_assert(json_is_object(object));
	cr_assert_eq(json_object_size(object), count, "keys of %s", json_dumps(object, JSON_COMPACT));
	for (size_t i = 0; i < count; i++)
		cr_assert_not_null(json_object_get(object, keys[i]), "missing %s", keys[i]);
}

static void expect_user(const json_t *user)
{
	static const char *const keys[] = {"id", "email", "name", "role"};
	expect_keys(user, keys, 4);
	for (size_t i = 0; i < 4; i++)
		cr_assert(json_is_string(json_object_get(user, keys[i])));
}

static void expect_product(const json_t *p)
{
	static const char *const keys[] = {"id",          "sku",      "name",     "description",
	                                   "price_cents", "currency", "category", "available"};
	expect_keys(p, keys, 8);
	cr_assert(json_is_integer(json_object_get(p, "price_cents")));
	cr_assert(json_is_integer(json_object_get(p, "available")));
	cr_assert_eq(strlen(str(p, "currency")), 3);
	str(p, "id");
	str(p, "sku");
	str(p, "name");
	str(p, "description");
	str(p, "category");
}

/* POST /auth/login; returns the token (malloc'd) or NULL with *status set. */
static char *login(const char *email, const char *password, long *status)
{
	char body[512];
	snprintf(body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
	reply r = post("/api/v1/auth/login", body);
	char *token = NULL;
	*status = r.status;
	if (r.status == 200) {
		static const char *const keys[] = {"access_token", "token_type", "expires_in"};
		expect_header(&r, "Content-Type", "application/json");
		expect_keys(r.json, keys, 3);
		cr_assert_str_eq(str(r.json, "token_type"), "Bearer");
		cr_assert_eq(json_integer_value(json_object_get(r.json, "expires_in")), 3600);
		token = strdup(str(r.json, "access_token"));
	}
	hc_reply_free(&r);
	return token;
}

/* ---- accounts -------------------------------------------------------------- */

Test(api_public, register_login_and_me)
{
	start_server(false);
	/* register: 202, the email is normalized, the role is customer */
	reply r =
	        post("/api/v1/auth/register",
	             "{\"email\":\"  Ada@Example.COM \",\"password\":\"correct horse\",\"name\":\"Ada L\"}");
	cr_assert_eq(r.status, 202, "body %s", r.body);
	expect_header(&r, "Content-Type", "application/json");
	cr_assert_str_eq(r.body, "{\"status\":\"verification_sent\"}");
	char *first = strdup(r.body);
	hc_reply_free(&r);

	/* the same address in another case: the same answer (ADR 031: no 409,
	 * nothing tells that the address has an account) */
	r = post("/api/v1/auth/register",
	         "{\"email\":\"ADA@example.com\",\"password\":\"other pass\",\"name\":\"X\"}");
	cr_assert_eq(r.status, 202, "body %s", r.body);
	cr_assert_str_eq(r.body, first);
	hc_reply_free(&r);
	free(first);

	/* login right after the 202 finds the account (read-your-writes) */
	long status;
	char *token = login("ada@example.com", "correct horse", &status);
	cr_assert_eq(status, 200);
	r = get("/api/v1/me", token);
	cr_assert_eq(r.status, 200, "body %s", r.body);
	expect_user(r.json);
	cr_assert_str_eq(str(r.json, "email"), "ada@example.com");
	cr_assert_str_eq(str(r.json, "name"), "Ada L");
	cr_assert_str_eq(str(r.json, "role"), "customer");
	expect_header(&r, "Cache-Control", "no-store");
	hc_reply_free(&r);
	free(token);

	/* /me without a token or with a bad one */
	r = get("/api/v1/me", NULL);
	expect_problem(&r, 401);
	expect_header(&r, "WWW-Authenticate", "Bearer");
	hc_reply_free(&r);
	r = get("/api/v1/me", "not.a.token");
	expect_problem(&r, 401);
	hc_reply_free(&r);

	/* wrong password and unknown email: the same answer */
	r = post("/api/v1/auth/login", "{\"email\":\"ada@example.com\",\"password\":\"wrong horse\"}");
	expect_problem(&r, 401);
	reply u = post("/api/v1/auth/login",
	               "{\"email\":\"nobody@example.com\",\"password\":\"correct horse\"}");
	expect_problem(&u, 401);
	cr_assert_str_eq(r.body, u.body, "the two failures must not be told apart");
	hc_reply_free(&r);
	hc_reply_free(&u);

	/* the admin from ORION_ADMIN_EMAIL logs in with role admin */
	token = login(ADMIN_EMAIL, ADMIN_PASSWORD, &status);
	cr_assert_eq(status, 200);
	r = get("/api/v1/me", token);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(str(r.json, "role"), "admin");
	hc_reply_free(&r);
	free(token);
	stop_server();
}

Test(api_public, register_rejects_bad_bodies_and_stores_nothing)
{
	start_server(false);
	/* an unknown field (trying to pick the role) */
	reply r = post("/api/v1/auth/register",
	               "{\"email\":\"eve@example.com\",\"password\":\"Velvet-canyon-94\","
	               "\"name\":\"Eve\",\"role\":\"admin\"}");
	expect_field_error(&r, "role");
	hc_reply_free(&r);
	long status;
	char *token = login("eve@example.com", "Velvet-canyon-94", &status);
	cr_assert_null(token);
	cr_assert_eq(status, 401, "nothing was stored");

	/* bad fields, each named */
	r = post("/api/v1/auth/register",
	         "{\"email\":\"not-an-address\",\"password\":\"Velvet-canyon-94\",\"name\":\"E\"}");
	expect_field_error(&r, "email");
	hc_reply_free(&r);
	r = post("/api/v1/auth/register",
	         "{\"email\":\"eve@example.com\",\"password\":\"short\",\"name\":\"E\"}");
	expect_field_error(&r, "password");
	hc_reply_free(&r);
	r = post("/api/v1/auth/register",
	         "{\"email\":\"eve@example.com\",\"password\":\"Velvet-canyon-94\",\"name\":\"\"}");
	expect_field_error(&r, "name");
	hc_reply_free(&r);
	r = post("/api/v1/auth/register",
	         "{\"email\":\"eve@example.com\",\"password\":\"Velvet-canyon-94\"}");
	expect_field_error(&r, "name");
	hc_reply_free(&r);
	/* a hostile field name comes back only as a JSON string of a problem
	 * (nosniff, no HTML), quotes and controls escaped */
	r = post("/api/v1/auth/register", "{\"email\":\"eve@example.com\",\"password\":\"Velvet-canyon-94\","
	                                  "\"name\":\"Eve\",\"<script>\\\"\\n\":1}");
	expect_field_error(&r, "<script>\"\n");
	cr_assert_null(strstr(r.body, "\n"), "a raw newline in %s", r.body);
	hc_reply_free(&r);
	r = post("/api/v1/auth/register", "[1,2]");
	expect_problem(&r, 400);
	hc_reply_free(&r);

	/* a body over 1 MiB */
	size_t big_len = 1024 * 1024 + 100;
	char *big = malloc(big_len + 1);
	cr_assert_not_null(big);
	memset(big, ' ', big_len);
	memcpy(big, "{\"name\":\"", 9);
	big[big_len] = '\0';
	r = request("POST", "/api/v1/auth/register", NULL, big, big_len);
	expect_problem(&r, 413);
	hc_reply_free(&r);
	free(big);

	/* after all that, the address is still free */
	r = post("/api/v1/auth/register",
	         "{\"email\":\"eve@example.com\",\"password\":\"Velvet-canyon-94\",\"name\":\"Eve\"}");
	cr_assert_eq(r.status, 202, "body %s", r.body);
	hc_reply_free(&r);
	token = login("eve@example.com", "Velvet-canyon-94", &status);
	cr_assert_eq(status, 200);
	free(token);

	/* login bodies are strict too */
	r = post("/api/v1/auth/login",
	         "{\"email\":\"eve@example.com\",\"password\":\"Velvet-canyon-94\",\"otp\":\"1\"}");
	expect_field_error(&r, "otp");
	hc_reply_free(&r);
	stop_server();
}

Test(api_public, login_is_rate_limited_before_the_password_is_checked)
{
	start_server(false);
	reply r = post("/api/v1/auth/register",
	               "{\"email\":\"mallory@example.com\",\"password\":\"the right one\",\"name\":\"M\"}");
	cr_assert_eq(r.status, 202, "body %s", r.body);
	hc_reply_free(&r);
	/* failures on one account until the limiter answers 429 */
	int limited_at = 0;
	for (int i = 1; i <= 12 && limited_at == 0; i++) {
		r = post("/api/v1/auth/login", "{\"email\":\"mallory@example.com\",\"password\":\"guess\"}");
		if (r.status == 429)
			limited_at = i;
		else
			expect_problem(&r, 401);
		hc_reply_free(&r);
	}
	cr_assert_gt(limited_at, 1, "a few failures are allowed, then 429 (limited at %d)", limited_at);
	/* now even the right password is refused, with Retry-After in seconds */
	r = post("/api/v1/auth/login", "{\"email\":\"Mallory@Example.com\",\"password\":\"the right one\"}");
	expect_problem(&r, 429);
	const char *retry = hc_header(&r, "Retry-After");
	cr_assert_not_null(retry);
	cr_assert_gt(atoi(retry), 0, "Retry-After: %s", retry);
	cr_assert_eq(strspn(retry, "0123456789"), strlen(retry));
	hc_reply_free(&r);
	/* the per-address limit stops guesses spread over many accounts */
	limited_at = 0;
	for (int i = 1; i <= 40 && limited_at == 0; i++) {
		char body[128];
		snprintf(body, sizeof body, "{\"email\":\"user%d@example.com\",\"password\":\"guess\"}", i);
		r = post("/api/v1/auth/login", body);
		if (r.status == 429) {
			limited_at = i;
			cr_assert_not_null(hc_header(&r, "Retry-After"));
		}
		hc_reply_free(&r);
	}
	cr_assert_gt(limited_at, 0, "the address limit never answered 429");
	stop_server();
}

/* ---- catalog --------------------------------------------------------------- */

/* Waits until the projected demo catalog holds all 36 products. */
static void wait_for_demo_catalog(void)
{
	int64_t deadline = th_now_ms() + 15000;
	for (;;) {
		reply r = get("/api/v1/products?limit=100", NULL);
		cr_assert_eq(r.status, 200, "body %s", r.body);
		size_t n = json_array_size(json_object_get(r.json, "items"));
		hc_reply_free(&r);
		if (n == 36)
			return;
		cr_assert_lt(th_now_ms(), deadline, "the catalog has %zu products", n);
		th_sleep_ms(100);
	}
}

/* GET path: 200 with a page; returns the item count and checks each item. */
static size_t list_count(const char *path, const char *expect_category)
{
	reply r = get(path, NULL);
	cr_assert_eq(r.status, 200, "%s: body %s", path, r.body);
	json_t *items = json_object_get(r.json, "items");
	cr_assert(json_is_array(items));
	cr_assert(json_is_null(json_object_get(r.json, "next_cursor")), "one page expected for %s", path);
	size_t i;
	json_t *item;
	json_array_foreach(items, i, item)
	{
		expect_product(item);
		if (expect_category)
			cr_assert_str_eq(str(item, "category"), expect_category);
	}
	size_t n = json_array_size(items);
	hc_reply_free(&r);
	return n;
}

Test(api_public, catalog_pages_filters_and_searches, .timeout = 90)
{
	start_server(true);
	wait_for_demo_catalog();

	/* every product exactly once over pages of 10, then next_cursor null */
	char seen[36][80], path[512], cursor[256] = "";
	size_t total = 0;
	int pages = 0;
	for (;;) {
		snprintf(path, sizeof path, "/api/v1/products?limit=10%s%s", cursor[0] ? "&cursor=" : "",
		         cursor);
		reply r = get(path, NULL);
		cr_assert_eq(r.status, 200, "body %s", r.body);
		static const char *const keys[] = {"items", "next_cursor"};
		expect_keys(r.json, keys, 2);
		json_t *items = json_object_get(r.json, "items");
		size_t i;
		json_t *item;
		cr_assert_leq(json_array_size(items), 10);
		json_array_foreach(items, i, item)
		{
			expect_product(item);
			cr_assert_lt(total, 36, "more than 36 products");
			for (size_t k = 0; k < total; k++)
				cr_assert_str_neq(seen[k], str(item, "id"), "duplicate %s", seen[k]);
			if (total > 0)
				cr_assert_gt(strcmp(str(item, "id"), seen[total - 1]), 0, "ordered by id");
			snprintf(seen[total++], sizeof seen[0], "%s", str(item, "id"));
		}
		pages++;
		json_t *next = json_object_get(r.json, "next_cursor");
		if (json_is_null(next)) {
			hc_reply_free(&r);
			break;
		}
		cr_assert(json_is_string(next));
		char *escaped = curl_easy_escape(NULL, json_string_value(next), 0);
		snprintf(cursor, sizeof cursor, "%s", escaped);
		curl_free(escaped);
		hc_reply_free(&r);
		cr_assert_lt(pages, 10);
	}
	cr_assert_eq(total, 36);
	cr_assert_eq(pages, 4);

	/* default limit 20 */
	reply r = get("/api/v1/products", NULL);
	cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 20);
	cr_assert(json_is_string(json_object_get(r.json, "next_cursor")));
	hc_reply_free(&r);

	/* filters and search */
	cr_assert_eq(list_count("/api/v1/products?category=coffee", "coffee"), 6);
	cr_assert_eq(list_count("/api/v1/products?category=audio&q=cable", "audio"), 2);
	cr_assert_eq(list_count("/api/v1/products?category=audio&q=braided+cable", "audio"), 1);
	cr_assert_eq(list_count("/api/v1/products?q=espresso", NULL), 1);
	cr_assert_eq(list_count("/api/v1/products?q=ESPRESSO", NULL), 1, "search ignores case");
	cr_assert_eq(list_count("/api/v1/products?q=steel", NULL), 2);
	cr_assert_eq(list_count("/api/v1/products?q=chocolate%20hazelnut", NULL), 1, "two words");
	cr_assert_eq(list_count("/api/v1/products?q=steel+knife", NULL), 1, "every word must match");
	cr_assert_eq(list_count("/api/v1/products?q=250", "coffee"), 3);
	cr_assert_eq(list_count("/api/v1/products?q=zeppelin", NULL), 0);
	cr_assert_eq(list_count("/api/v1/products?category=no-such-category", NULL), 0);

	/* one product, the same shape as in the list */
	r = get("/api/v1/products/demo-001", NULL);
	cr_assert_eq(r.status, 200, "body %s", r.body);
	expect_product(r.json);
	cr_assert_str_eq(str(r.json, "id"), "demo-001");
	cr_assert_str_eq(str(r.json, "name"), "The Pragmatic Shopkeeper");
	cr_assert_str_eq(str(r.json, "currency"), "EUR");
	cr_assert_eq(json_integer_value(json_object_get(r.json, "price_cents")), 2999);
	cr_assert_eq(json_integer_value(json_object_get(r.json, "available")), 40);
	hc_reply_free(&r);
	r = get("/api/v1/products/demo-999", NULL);
	expect_problem(&r, 404);
	hc_reply_free(&r);
	static const char *const bad_ids[] = {"a.b", "..%2Fx", "%3Cscript%3E", "x%20y", "%C3%A9t%C3%A9",
	                                      "a*",  "%3E",    "a%22b",        "a%27b", "orion.evt.%3E"};
	for (size_t i = 0; i < ORN_ARRAY_LEN(bad_ids); i++) {
		snprintf(path, sizeof path, "/api/v1/products/%s", bad_ids[i]);
		r = get(path, NULL);
		expect_field_error(&r, "id");
		cr_assert_null(strstr(r.body, "<script>"));
		hc_reply_free(&r);
	}
	stop_server();
}

Test(api_public, catalog_rejects_bad_queries)
{
	start_server(false);
	static const char *const bad_limits[] = {"0",   "101", "abc",  "-1",         "",
	                                         "1e2", "20x", "0x10", "99999999999"};
	char path[1024];
	for (size_t i = 0; i < ORN_ARRAY_LEN(bad_limits); i++) {
		snprintf(path, sizeof path, "/api/v1/products?limit=%s", bad_limits[i]);
		reply r = get(path, NULL);
		expect_field_error(&r, "limit");
		hc_reply_free(&r);
	}
	static const char *const bad_categories[] = {"Coffee", "a_b", "", "%3Cscript%3E", "caf%C3%A9"};
	for (size_t i = 0; i < ORN_ARRAY_LEN(bad_categories); i++) {
		snprintf(path, sizeof path, "/api/v1/products?category=%s", bad_categories[i]);
		reply r = get(path, NULL);
		expect_field_error(&r, "category");
		cr_assert_null(strstr(r.body, "<script>"));
		hc_reply_free(&r);
	}
	char long_category[80];
	memset(long_category, 'a', 65);
	long_category[65] = '\0';
	snprintf(path, sizeof path, "/api/v1/products?category=%s", long_category);
	reply r = get(path, NULL);
	expect_field_error(&r, "category");
	hc_reply_free(&r);

	r = get("/api/v1/products?cursor=garbage", NULL);
	expect_field_error(&r, "cursor");
	hc_reply_free(&r);

	/* q: at most 200 bytes and 16 distinct words */
	char q[260];
	memset(q, 'a', 201);
	q[201] = '\0';
	snprintf(path, sizeof path, "/api/v1/products?q=%s", q);
	r = get(path, NULL);
	expect_field_error(&r, "q");
	hc_reply_free(&r);
	snprintf(path, sizeof path, "/api/v1/products?q=");
	for (int i = 0; i < 17; i++)
		snprintf(path + strlen(path), sizeof path - strlen(path), "w%02d+", i);
	r = get(path, NULL);
	expect_field_error(&r, "q");
	hc_reply_free(&r);

	/* every bad parameter is listed at once */
	r = get("/api/v1/products?limit=0&category=BAD", NULL);
	expect_field_error(&r, "limit");
	expect_field_error(&r, "category");
	hc_reply_free(&r);

	/* empty catalog: an empty page */
	r = get("/api/v1/products?limit=1", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 0);
	cr_assert(json_is_null(json_object_get(r.json, "next_cursor")));
	hc_reply_free(&r);
	stop_server();
}
