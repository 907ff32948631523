/* test_small_gaps.c — issue 14, finding 9, through a real `orion serve`: a
 * stock adjustment on a deleted product is 404 (as GET is), the
 * adjustment's answer has every field of StockLevels, a currency must be an
 * ISO 4217 code (not any three letters), and an order that would total 0
 * cannot be placed (422). (The response bodies of a whole flow are checked
 * against the OpenAPI document by tests/contracts/test_response_bodies.py.) */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "http_client.h"

#define ADMIN_EMAIL    "keeper@example.com"
#define ADMIN_PASSWORD "Basalt-orchid-lantern-57"
#define TOKEN_MAX      4096

static char *data_dir;
static pid_t server_pid;
static char base_url[64];
static char admin[TOKEN_MAX];

static void start(void)
{
	const char *env[] = {"ORION_LOG_LEVEL=warn", "ORION_ADMIN_EMAIL=" ADMIN_EMAIL,
	                     "ORION_ADMIN_PASSWORD=" ADMIN_PASSWORD, NULL};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	data_dir = th_tempdir("small-gaps");
	unsetenv("ORION_NATS_URL");
	unsetenv("ORION_JWT_SECRET");
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, NULL);
	hc_login_token(base_url, ADMIN_EMAIL, ADMIN_PASSWORD, admin, sizeof admin);
}

static void stop(void)
{
	hc_serve_teardown(&server_pid, &data_dir);
	curl_global_cleanup();
}

TestSuite(small_gaps, .init = start, .fini = stop, .timeout = 120);

/* POST /admin/products; returns the reply (free it). */
static hc_reply create_product(const char *sku, const char *currency, int price_cents)
{
	char body[512];
	snprintf(
	        body, sizeof body,
	        "{\"sku\":\"%s\",\"name\":\"N\",\"description\":\"D\",\"price_cents\":%d,\"currency\":\"%s\","
	        "\"category\":\"misc\",\"initial_stock\":10}",
	        sku, price_cents, currency);
	return hc_call(base_url, "POST", "/api/v1/admin/products", admin, body, 0, NULL, NULL, 15000L);
}

/* Creates a product; returns its id (malloc'd). */
static char *product(const char *sku, int price_cents)
{
	hc_reply r = create_product(sku, "EUR", price_cents);
	cr_assert_eq(r.status, 201, "%s", r.body);
	char *id = strdup(json_string_value(json_object_get(r.json, "id")));
	hc_reply_free(&r);
	return id;
}

static bool names_field(const hc_reply *r, const char *field)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(r->json, "errors"), i, e)
	{
		const char *name = json_string_value(json_object_get(e, "field"));
		if (name != NULL && strcmp(name, field) == 0)
			return true;
	}
	return false;
}

Test(small_gaps, an_adjustment_answers_every_stock_level_and_404_once_deleted)
{
	char path[160];
	char *id = product("GAP-1", 500);
	snprintf(path, sizeof path, "/api/v1/admin/inventory/%s/adjustments", id);
	hc_reply r = hc_call(base_url, "POST", path, admin, "{\"delta\":5,\"reason\":\"count\"}", 0, NULL,
	                     NULL, 15000L);
	cr_assert_eq(r.status, 200, "%s", r.body);
	static const char *const keys[] = {"on_hand", "reserved", "available", "low_stock_threshold", "low"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		cr_assert_not_null(json_object_get(r.json, keys[i]), "%s missing in %s", keys[i], r.body);
	cr_assert(json_is_boolean(json_object_get(r.json, "low")), "%s", r.body);
	cr_assert_eq(json_integer_value(json_object_get(r.json, "on_hand")), 15);
	hc_reply_free(&r);
	char product_path[160];
	snprintf(product_path, sizeof product_path, "/api/v1/admin/products/%s", id);
	r = hc_call(base_url, "DELETE", product_path, admin, NULL, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 204, "%s", r.body);
	hc_reply_free(&r);
	r = hc_call(base_url, "GET", product_path, admin, NULL, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 404);
	hc_reply_free(&r);
	r = hc_call(base_url, "POST", path, admin, "{\"delta\":5,\"reason\":\"count\"}", 0, NULL, NULL,
	            15000L);
	cr_assert_eq(r.status, 404, "an adjustment of a deleted product: %ld %s", r.status, r.body);
	cr_assert_str_eq(hc_header(&r, "Content-Type"), "application/problem+json");
	hc_reply_free(&r);
	free(id);
}

Test(small_gaps, a_currency_is_an_iso_4217_code)
{
	static const char *const refused[] = {"ABC", "XXX", "XAU", "QQQ"};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		char sku[32];
		snprintf(sku, sizeof sku, "CUR-%zu", i);
		hc_reply r = create_product(sku, refused[i], 100);
		cr_assert_eq(r.status, 400, "%s: %ld %s", refused[i], r.status, r.body);
		cr_assert(names_field(&r, "currency"), "%s", r.body);
		hc_reply_free(&r);
	}
	static const char *const accepted[] = {"EUR", "USD", "JPY", "CHF", "XOF"};
	for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
		char sku[32];
		snprintf(sku, sizeof sku, "CUROK-%zu", i);
		hc_reply r = create_product(sku, accepted[i], 100);
		cr_assert_eq(r.status, 201, "%s: %ld %s", accepted[i], r.status, r.body);
		hc_reply_free(&r);
	}
}

Test(small_gaps, an_order_that_would_total_0_cannot_be_placed)
{
	char customer[TOKEN_MAX], body[160];
	char *id = product("FREE-1", 0);
	hc_customer_token(base_url, "freeloader@example.com", customer, sizeof customer);
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":2}", id);
	hc_reply r = hc_call(base_url, "POST", "/api/v1/cart/items", customer, body, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 200, "%s", r.body);
	hc_reply_free(&r);
	r = hc_call(base_url, "POST", "/api/v1/orders", customer, "{}", 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 422, "an order of 0: %ld %s", r.status, r.body);
	cr_assert_str_eq(hc_header(&r, "Content-Type"), "application/problem+json");
	hc_reply_free(&r);
	free(id);
}
