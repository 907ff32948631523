/* test_order_limits.c — issue 14, finding 1 (stock hoarding), through a real
 * `orion serve` and its nats-server on kernel-picked ports: the limits of
 * API.md "Limits that protect stock and accounts" (docs/adr/026-holds.md).
 *
 * - One customer fires 50 placements at once, each after adding another
 *   product to the cart (so most see a cart version of their own and name an
 *   order of their own): exactly ORION_MAX_OPEN_ORDERS (3) new orders are
 *   placed, every other answer is a repeat of one of them or a 409 naming
 *   the limit; once one of them is cancelled, its slot frees.
 * - Units: orders that would hold more than ORION_MAX_UNITS_PER_PRODUCT (10)
 *   units of one product are 409 too_many_units.
 * - Rate: past ORION_ORDERS_BURST placements at once, POST /orders is 429
 *   with Retry-After (a server of its own, with a burst of 2).
 *
 * Every refusal is problem+json. Before the holds were wired all 50 placements
 * were accepted (20 orders held the stock in the tester's report). */
#include <criterion/criterion.h>

#include <pthread.h>
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
#define PLACEMENTS     50
#define MAX_OPEN       3
#define WAIT_MS        30000

static char *data_dir;
static pid_t server_pid;
static char base_url[64];
static char admin[TOKEN_MAX];

static void start_with(const char *burst, const char *per_minute)
{
	static char burst_env[64], rate_env[64];
	snprintf(burst_env, sizeof burst_env, "ORION_ORDERS_BURST=%s", burst);
	snprintf(rate_env, sizeof rate_env, "ORION_ORDERS_PER_MINUTE=%s", per_minute);
	const char *env[] = {"ORION_LOG_LEVEL=warn",
	                     "ORION_ADMIN_EMAIL=" ADMIN_EMAIL,
	                     "ORION_ADMIN_PASSWORD=" ADMIN_PASSWORD,
	                     "ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS=256",
	                     burst_env,
	                     rate_env,
	                     NULL};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	data_dir = th_tempdir("order-limits");
	unsetenv("ORION_NATS_URL");
	unsetenv("ORION_JWT_SECRET");
	/* the defaults under test: the variables must not leak in from outside */
	unsetenv("ORION_MAX_OPEN_ORDERS");
	unsetenv("ORION_MAX_UNITS_PER_PRODUCT");
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, NULL);
	hc_login_token(base_url, ADMIN_EMAIL, ADMIN_PASSWORD, admin, sizeof admin);
}

/* The holds' limits, without the rate in the way. */
static void start(void)
{
	start_with("100000", "100000");
}

/* The rate: two placements at once, then one a minute. */
static void start_rated(void)
{
	start_with("2", "1");
}

static void stop(void)
{
	hc_serve_teardown(&server_pid, &data_dir);
	curl_global_cleanup();
}

TestSuite(order_limits, .init = start, .fini = stop, .timeout = 240);
TestSuite(order_rate, .init = start_rated, .fini = stop, .timeout = 120);

/* ---- helpers ---- */

/* Creates a product with 100 units; returns its id (malloc'd). */
static char *product(const char *sku)
{
	char body[512];
	snprintf(body, sizeof body,
	         "{\"sku\":\"%s\",\"name\":\"N\",\"description\":\"D\",\"price_cents\":500,\"currency\":"
	         "\"EUR\","
	         "\"category\":\"misc\",\"initial_stock\":100}",
	         sku);
	hc_reply r = hc_call(base_url, "POST", "/api/v1/admin/products", admin, body, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 201, "%s", r.body);
	char *id = strdup(json_string_value(json_object_get(r.json, "id")));
	hc_reply_free(&r);
	return id;
}

static void add_to_cart(const char *token, const char *product_id, int quantity)
{
	char body[160];
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":%d}", product_id, quantity);
	hc_reply r = hc_call(base_url, "POST", "/api/v1/cart/items", token, body, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 200, "add to cart: %ld %s", r.status, r.body);
	hc_reply_free(&r);
}

static hc_reply place(const char *token)
{
	return hc_call(base_url, "POST", "/api/v1/orders", token, "{}", 0, NULL, NULL, 15000L);
}

/* The cart's line count. */
static size_t cart_lines(const char *token)
{
	hc_reply r = hc_call(base_url, "GET", "/api/v1/cart", token, NULL, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 200, "%s", r.body);
	size_t n = json_array_size(json_object_get(r.json, "items"));
	hc_reply_free(&r);
	return n;
}

/* Waits until the saga checked the customer's cart out (it has no line). */
static void wait_cart_empty(const char *token)
{
	int64_t until = th_now_ms() + WAIT_MS;
	while (cart_lines(token) != 0 && th_now_ms() < until)
		th_sleep_ms(50);
	cr_assert_eq(cart_lines(token), 0, "the placed order's lines left the cart");
}

/* A 409 of a holds limit: problem+json, its code, a detail naming the
 * setting and its value. */
static void expect_limit(const hc_reply *r, const char *code, const char *setting, const char *value)
{
	cr_expect_eq(r->status, 409, "%ld %s", r->status, r->body);
	cr_expect_str_eq(hc_header(r, "Content-Type"), "application/problem+json");
	const char *got = json_string_value(json_object_get(r->json, "code"));
	const char *detail = json_string_value(json_object_get(r->json, "detail"));
	cr_expect(got != NULL && strcmp(got, code) == 0, "code %s: %s", code, r->body);
	cr_expect(detail != NULL && strstr(detail, setting) != NULL && strstr(detail, value) != NULL,
	          "the detail names %s (%s): %s", setting, value, r->body);
}

/* ---- 50 placements of one customer at once ---- */

typedef struct placement {
	const char *token;
	const char *product_id;
	long add_status, status;
	char code[64];
	char detail[256];
	char order_id[80];
	char content_type[64];
} placement;

static pthread_barrier_t barrier;

/* The string member name of r's JSON body, "" if none. */
static const char *text_of(const hc_reply *r, const char *name)
{
	const char *s = json_string_value(json_object_get(r->json, name));
	return s != NULL ? s : "";
}

/* One client: adds its product to the cart, then places. hc_perform, not
 * hc_call: nothing may assert off the test's thread. */
static void *place_one(void *arg)
{
	placement *p = arg;
	char auth[4200], body[160];
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", p->token);
	const char *headers[] = {"Expect:", auth, "Content-Type: application/json", NULL};
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", p->product_id);
	pthread_barrier_wait(&barrier);
	hc_reply r = hc_perform(base_url, "POST", "/api/v1/cart/items", headers, body, strlen(body), 20000L);
	p->add_status = r.status;
	hc_reply_free(&r);
	r = hc_perform(base_url, "POST", "/api/v1/orders", headers, "{}", 2, 20000L);
	p->status = r.status;
	const char *type = hc_header(&r, "Content-Type");
	snprintf(p->code, sizeof p->code, "%s", text_of(&r, "code"));
	snprintf(p->detail, sizeof p->detail, "%s", text_of(&r, "detail"));
	snprintf(p->order_id, sizeof p->order_id, "%s", text_of(&r, "id"));
	snprintf(p->content_type, sizeof p->content_type, "%s", type != NULL ? type : "");
	hc_reply_free(&r);
	return NULL;
}

/* The ids of the customer's orders that are not cancelled (out param ids). */
static size_t live_orders(const char *token, char ids[][80], size_t cap)
{
	size_t i, n = 0;
	json_t *o;
	hc_reply r = hc_call(base_url, "GET", "/api/v1/orders?limit=100", token, NULL, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_array_foreach(json_object_get(r.json, "items"), i, o)
	{
		const char *status = json_string_value(json_object_get(o, "status"));
		if (status != NULL && strcmp(status, "cancelled") != 0 && n < cap)
			snprintf(ids[n++], 80, "%s", json_string_value(json_object_get(o, "id")));
	}
	hc_reply_free(&r);
	return n;
}

Test(order_limits, fifty_placements_of_one_customer_at_once_open_exactly_the_limit)
{
	char token[TOKEN_MAX], sku[32];
	static placement p[PLACEMENTS];
	static char *products[PLACEMENTS + 1];
	pthread_t threads[PLACEMENTS];
	hc_customer_token(base_url, "hoarder@example.com", token, sizeof token);
	for (int i = 0; i <= PLACEMENTS; i++) {
		snprintf(sku, sizeof sku, "HOARD-%d", i);
		products[i] = product(sku);
	}
	cr_assert_eq(pthread_barrier_init(&barrier, NULL, PLACEMENTS), 0);
	for (int i = 0; i < PLACEMENTS; i++) {
		p[i] = (placement){.token = token, .product_id = products[i]};
		cr_assert_eq(pthread_create(&threads[i], NULL, place_one, &p[i]), 0);
	}
	for (int i = 0; i < PLACEMENTS; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&barrier);

	char placed[PLACEMENTS][80];
	size_t placed_count = 0, repeats = 0, limited = 0;
	for (int i = 0; i < PLACEMENTS; i++) {
		cr_expect_eq(p[i].add_status, 200, "add %d: %ld", i, p[i].add_status);
		if (p[i].status == 202) {
			snprintf(placed[placed_count++], 80, "%s", p[i].order_id);
		} else if (p[i].status == 200) {
			repeats++; /* the same cart version as another placement: its order again */
		} else {
			limited++;
			cr_expect_eq(p[i].status, 409, "placement %d: %ld %s", i, p[i].status, p[i].detail);
			cr_expect_str_eq(p[i].content_type, "application/problem+json");
			cr_expect_str_eq(p[i].code, "too_many_open_orders", "%s", p[i].detail);
			cr_expect(strstr(p[i].detail, "ORION_MAX_OPEN_ORDERS") && strstr(p[i].detail, "3"),
			          "%s", p[i].detail);
		}
	}
	fprintf(stderr, "50 placements: %zu placed, %zu repeats, %zu refused\n", placed_count, repeats,
	        limited);
	cr_assert_eq(placed_count, MAX_OPEN, "exactly ORION_MAX_OPEN_ORDERS placed: %zu", placed_count);
	/* How many placements saw a cart version of their own (and were refused)
	 * rather than one placed already (a repeat) is the race's: with every
	 * add in before the first placement, all 47 are repeats. Refusal is shown
	 * below with a cart version that was never placed. */
	for (int i = 0; i < PLACEMENTS; i++)
		if (p[i].status == 200)
			cr_expect(strcmp(p[i].order_id, placed[0]) == 0 ||
			                  strcmp(p[i].order_id, placed[1]) == 0 ||
			                  strcmp(p[i].order_id, placed[2]) == 0,
			          "a repeat answers one of the placed orders: %s", p[i].order_id);
	char live[PLACEMENTS][80];
	cr_assert_eq(live_orders(token, live, PLACEMENTS), MAX_OPEN, "the customer has exactly 3 orders");

	/* with the limit reached, a cart version never placed is refused */
	char *extra = product("HOARD-EXTRA");
	add_to_cart(token, extra, 1);
	hc_reply refused = place(token);
	expect_limit(&refused, "too_many_open_orders", "ORION_MAX_OPEN_ORDERS", "3");
	hc_reply_free(&refused);
	free(extra);
	cr_assert_eq(live_orders(token, live, PLACEMENTS), MAX_OPEN, "still exactly 3 orders");

	/* a cancelled order frees its slot (the saga closes its hold) */
	char path[160];
	snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", placed[0]);
	int64_t until = th_now_ms() + WAIT_MS;
	hc_reply r = hc_call(base_url, "POST", path, token, "{}", 0, NULL, NULL, 15000L);
	while (r.status == 409 && th_now_ms() < until) { /* still being reserved */
		hc_reply_free(&r);
		th_sleep_ms(50);
		r = hc_call(base_url, "POST", path, token, "{}", 0, NULL, NULL, 15000L);
	}
	cr_assert_eq(r.status, 200, "cancel: %ld %s", r.status, r.body);
	hc_reply_free(&r);
	add_to_cart(token, products[PLACEMENTS], 1); /* a cart version never placed */
	r = place(token);
	while (r.status == 409 && th_now_ms() < until) {
		hc_reply_free(&r);
		th_sleep_ms(100);
		r = place(token);
	}
	cr_assert_eq(r.status, 202, "the freed slot takes a new order: %ld %s", r.status, r.body);
	hc_reply_free(&r);
	for (int i = 0; i <= PLACEMENTS; i++)
		free(products[i]);
}

/* ---- units of one product ---- */

Test(order_limits, orders_over_ten_units_of_one_product_are_refused)
{
	char token[TOKEN_MAX];
	char *id = product("UNITS-1");
	hc_customer_token(base_url, "bulk@example.com", token, sizeof token);
	add_to_cart(token, id, 11);
	hc_reply r = place(token);
	expect_limit(&r, "too_many_units", "ORION_MAX_UNITS_PER_PRODUCT", "10");
	hc_reply_free(&r);
	hc_reply c = hc_call(base_url, "DELETE", "/api/v1/cart", token, NULL, 0, NULL, NULL, 15000L);
	cr_assert(c.status == 200 || c.status == 204, "%ld %s", c.status, c.body);
	hc_reply_free(&c);
	add_to_cart(token, id, 6);
	r = place(token);
	cr_assert_eq(r.status, 202, "6 units: %ld %s", r.status, r.body);
	hc_reply_free(&r);
	wait_cart_empty(token);
	add_to_cart(token, id, 5); /* 6 + 5 across two unpaid orders */
	r = place(token);
	expect_limit(&r, "too_many_units", "ORION_MAX_UNITS_PER_PRODUCT", "10");
	hc_reply_free(&r);
	char path[160];
	snprintf(path, sizeof path, "/api/v1/cart/items/%s", id);
	c = hc_call(base_url, "PUT", path, token, "{\"quantity\":4}", 0, NULL, NULL, 15000L);
	cr_assert_eq(c.status, 200, "%ld %s", c.status, c.body);
	hc_reply_free(&c);
	r = place(token); /* 6 + 4: at the limit, not over it */
	cr_assert_eq(r.status, 202, "10 units: %ld %s", r.status, r.body);
	hc_reply_free(&r);
	free(id);
}

/* ---- placements per customer ---- */

Test(order_rate, placements_past_the_burst_are_429_with_retry_after)
{
	char token[TOKEN_MAX], other[TOKEN_MAX];
	hc_customer_token(base_url, "eager@example.com", token, sizeof token);
	hc_customer_token(base_url, "calm@example.com", other, sizeof other);
	for (int i = 0; i < 2; i++) { /* an empty cart: 422, but each counts */
		hc_reply r = place(token);
		cr_assert_eq(r.status, 422, "%ld %s", r.status, r.body);
		hc_reply_free(&r);
	}
	hc_reply r = place(token);
	cr_assert_eq(r.status, 429, "the third at once: %ld %s", r.status, r.body);
	cr_expect_str_eq(hc_header(&r, "Content-Type"), "application/problem+json");
	const char *after = hc_header(&r, "Retry-After");
	cr_assert_not_null(after, "Retry-After");
	cr_expect_geq(atoi(after), 1, "%s", after);
	cr_expect_leq(atoi(after), 60, "%s", after);
	hc_reply_free(&r);
	r = place(other); /* per customer: another customer is not limited */
	cr_expect_eq(r.status, 422, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
}
