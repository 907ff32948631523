/* test_api_orders.c — the cart and order routes of gateway/gw_api_cart.c and
 * gateway/gw_api_orders.c through a real `orion serve` (every role, embedded
 * nats-server) on a free loopback port, driven with libcurl: cart CRUD with
 * totals and bounds, deleted products, placing with Idempotency-Key, the
 * order list, isolation between customers, confirmation (JSON, form and the
 * HTML page, rate limited per address) and the Server-Sent Events stream of
 * an order's status (ended with a long retry, 204 once the client has seen
 * the end). DELETE /cart's 204 leaves a kept-alive connection usable.
 *
 * Steps past `pending` need the checkout saga; tests that need it poll for
 * awaiting_confirmation and are skipped when `orion serve --help` does not
 * list the checkout role. One server per test, stopped in .fini. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw_jwt.h"
#include "harness.h"
#include "http_client.h"
#include "order_token.h"

#define ADMIN_EMAIL    "admin@orion.test"
#define ADMIN_PASSWORD "correct horse battery"
#define BAD_TOKEN      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* 43 base64url characters */

static char *data_dir;
static pid_t server_pid;
static int server_port;
static char base_url[64];
static char admin_token[GW_JWT_MAX_TOKEN];

/* ---- a small curl client ------------------------------------------------ */

typedef hc_reply reply;

/* method path with an optional bearer token, body of content_type (JSON when
 * NULL) and one extra header. Checks the security headers of every answer. */
static reply call_as(const char *method, const char *path, const char *token, const char *body,
                     const char *content_type, const char *extra_header)
{
	reply r = hc_call(base_url, method, path, token, body, 0, content_type, extra_header, 15000L);
	const char *nosniff = hc_header(&r, "X-Content-Type-Options");
	cr_assert(nosniff != NULL && strcmp(nosniff, "nosniff") == 0, "%s %s: no nosniff", method, path);
	cr_assert_not_null(hc_header(&r, "Content-Security-Policy"), "%s %s: no CSP", method, path);
	return r;
}

static reply call(const char *method, const char *path, const char *token, const char *body,
                  const char *extra_header)
{
	return call_as(method, path, token, body, NULL, extra_header);
}

/* Calls and asserts the status; returns the reply (free it). */
static reply expect(long status, const char *method, const char *path, const char *token, const char *body,
                    const char *extra_header)
{
	reply r = call(method, path, token, body, extra_header);
	cr_assert_eq(r.status, status, "%s %s: status %ld, expected %ld, body %s", method, path, r.status,
	             status, r.body);
	return r;
}

/* Like expect, for a problem+json answer; frees the reply. */
static void expect_problem(long status, const char *method, const char *path, const char *token,
                           const char *body, const char *extra_header)
{
	reply r = expect(status, method, path, token, body, extra_header);
	cr_assert_not_null(r.json, "problem body: %s", r.body);
	cr_assert_str_eq(hc_header(&r, "Content-Type"), "application/problem+json");
	cr_assert_eq(json_integer_value(json_object_get(r.json, "status")), status);
	cr_assert_not_null(json_object_get(r.json, "title"));
	hc_reply_free(&r);
}

static const char *str(const json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));
	cr_assert_not_null(s, "no string %s", name);
	return s;
}

static long long num(const json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);
	cr_assert(json_is_integer(v), "no integer %s", name);
	return json_integer_value(v);
}

/* ---- the server ---------------------------------------------------------- */

/* Starts serve with the standard environment plus extra (NULL-terminated,
 * may be NULL); logs the admin in when login_admin. */
static void start_server_with(const char *const *extra, bool login_admin)
{
	const char *env[16] = {"ORION_ADMIN_EMAIL=" ADMIN_EMAIL,
	                       "ORION_ADMIN_PASSWORD=" ADMIN_PASSWORD,
	                       "ORION_NATS_URL=",
	                       "ORION_JWT_SECRET=",
	                       "ORION_LOG_LEVEL=warn",
	                       NULL};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	data_dir = th_tempdir("api-orders");
	for (size_t i = 0, n = 5; extra != NULL && extra[i] != NULL && n + 1 < ORN_ARRAY_LEN(env); i++)
		env[n++] = extra[i];
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, &server_port);
	if (!login_admin)
		return;
	/* the admin account reaches the users read model shortly after start-up */
	for (int waited = 0; waited < 15000; waited += 100) {
		reply r = call("POST", "/api/v1/auth/login", NULL,
		               "{\"email\":\"" ADMIN_EMAIL "\",\"password\":\"" ADMIN_PASSWORD "\"}", NULL);
		bool ok = r.status == 200;
		if (ok)
			snprintf(admin_token, sizeof admin_token, "%s", str(r.json, "access_token"));
		hc_reply_free(&r);
		if (ok)
			return;
		usleep(100 * 1000);
	}
	cr_assert_fail("the admin could not log in");
}

static void start_server(void)
{
	start_server_with(NULL, true);
}

static void stop_server(void)
{
	hc_serve_teardown(&server_pid, &data_dir);
	curl_global_cleanup();
}

TestSuite(api_orders, .init = start_server, .fini = stop_server, .timeout = 90);

/* A budget of 3 attempts per address, one more a minute. */
static void start_limited_server(void)
{
	static const char *const limits[] = {"ORION_AUTH_ADDRESS_BURST=3", "ORION_AUTH_ADDRESS_PER_MINUTE=1",
	                                     NULL};
	start_server_with(limits, false);
}

TestSuite(api_orders_limited, .init = start_limited_server, .fini = stop_server, .timeout = 90);

/* Sends first on a fresh connection to the server, reads its answer's
 * header block, then sends second (which should say "Connection: close")
 * and reads to the end, into *out (free it). */
static void two_requests_on_one_socket(const char *first, const char *second, char **out)
{
	char chunk[4096];
	size_t len = 0;
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
	*out = NULL;
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	cr_assert_eq(send(fd, first, strlen(first), 0), (ssize_t)strlen(first));
	hc_append(out, &len, "", 0);
	while (strstr(*out, "\r\n\r\n") == NULL) {
		ssize_t n = recv(fd, chunk, sizeof chunk, 0);
		cr_assert_gt(n, 0, "the first answer: %s", *out);
		hc_append(out, &len, chunk, (size_t)n);
	}
	cr_assert_eq(send(fd, second, strlen(second), 0), (ssize_t)strlen(second));
	for (ssize_t n; (n = recv(fd, chunk, sizeof chunk, 0)) > 0;)
		hc_append(out, &len, chunk, (size_t)n);
	close(fd);
}

/* SIGTERM, and the exit code must be 0 (under ASan: no leak either). */
static void stop_cleanly(void)
{
	int code = hc_serve_stop(server_pid);
	server_pid = 0;
	cr_assert_eq(code, 0, "serve exited with %d", code);
}

/* Whether this orion runs the checkout saga (orders move past pending). */
static bool has_checkout(void)
{
	char command[600], line[512];
	bool found = false;
	snprintf(command, sizeof command, "'%s' serve --help 2>/dev/null", th_orion_bin());
	FILE *p = popen(command, "r");
	cr_assert_not_null(p);
	while (fgets(line, sizeof line, p) != NULL)
		found |= strstr(line, "checkout") != NULL;
	pclose(p);
	return found;
}

/* ---- helpers over the API -------------------------------------------------- */

typedef struct customer {
	char token[GW_JWT_MAX_TOKEN];
	char id[65];
} customer;

static customer sign_up(const char *email)
{
	customer c;
	hc_sign_up(base_url, email, "a long password", "Customer", c.token, sizeof c.token, c.id,
	           sizeof c.id);
	return c;
}

/* A product with stock; returns its id (static buffer per call site: copy). */
static void create_product(const char *sku, const char *name, long long price, char out[65])
{
	char body[512];
	snprintf(body, sizeof body,
	         "{\"sku\":\"%s\",\"name\":\"%s\",\"description\":\"A test product.\",\"price_cents\":%lld,"
	         "\"currency\":\"EUR\",\"category\":\"tests\",\"initial_stock\":1000}",
	         sku, name, price);
	reply r = expect(201, "POST", "/api/v1/admin/products", admin_token, body, NULL);
	snprintf(out, 65, "%s", str(r.json, "id"));
	hc_reply_free(&r);
}

static reply add_item(const customer *c, const char *product, long long quantity)
{
	char body[160];
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":%lld}", product, quantity);
	return call("POST", "/api/v1/cart/items", c->token, body, NULL);
}

/* The line of product in a cart reply, or NULL. */
static json_t *cart_line(const reply *r, const char *product)
{
	size_t i;
	json_t *item;
	json_array_foreach(json_object_get(r->json, "items"), i, item)
	{
		if (strcmp(str(item, "product_id"), product) == 0)
			return item;
	}
	return NULL;
}

/* Places an order (with an optional Idempotency-Key) and copies its id. */
static void place(const customer *c, const char *key, char id[65])
{
	char extra[200];
	snprintf(extra, sizeof extra, "Idempotency-Key: %s", key ? key : "");
	reply r = expect(202, "POST", "/api/v1/orders", c->token, "{}", key ? extra : NULL);
	cr_assert_str_eq(str(r.json, "status"), "pending");
	snprintf(id, 65, "%s", str(r.json, "id"));
	hc_reply_free(&r);
}

static void path_of(char *out, size_t cap, const char *prefix, const char *id, const char *suffix)
{
	snprintf(out, cap, "%s%s%s", prefix, id, suffix);
}

/* Polls GET /orders/{id} until its status is want; false after timeout_ms. */
static bool wait_status(const customer *c, const char *id, const char *want, int timeout_ms)
{
	char path[200];
	path_of(path, sizeof path, "/api/v1/orders/", id, "");
	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		reply r = expect(200, "GET", path, c->token, NULL, NULL);
		bool done = strcmp(str(r.json, "status"), want) == 0;
		hc_reply_free(&r);
		if (done)
			return true;
		usleep(100 * 1000);
	}
	return false;
}

/* The confirmation token the mail actor would send for order id. */
static void token_for(const char *id, char out[ORDER_TOKEN_MAX])
{
	char path[700];
	unsigned char secret[GW_JWT_SECRET_BYTES];
	uint8_t key[ORDER_TOKEN_KEY_BYTES];
	snprintf(path, sizeof path, "%s/%s", data_dir, GW_JWT_SECRET_FILE);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	cr_assert_eq(fread(secret, 1, sizeof secret, f), sizeof secret);
	fclose(f);
	cr_assert_eq(order_token_key_derive(secret, sizeof secret, key), ORN_OK);
	cr_assert_eq(order_token_make(key, id, out), ORN_OK);
}

/* ---- Server-Sent Events ------------------------------------------------------ */

typedef struct sse_client {
	reply r;
	const char *stop_when; /* abort once the body holds this, or NULL: read to the end */
	const char *trigger;   /* call action once the body holds this */
	void (*action)(void *arg);
	void *action_arg;
	bool triggered;
} sse_client;

static size_t on_sse(char *data, size_t size, size_t count, void *arg)
{
	sse_client *c = arg;
	hc_append(&c->r.body, &c->r.body_len, data, size * count);
	if (c->trigger != NULL && !c->triggered && strstr(c->r.body, c->trigger) != NULL) {
		c->triggered = true;
		c->action(c->action_arg);
	}
	if (c->stop_when != NULL && strstr(c->r.body, c->stop_when) != NULL)
		return 0; /* enough: abort */
	return size * count;
}

/* GET path as an event stream. Returns when the server ends the stream,
 * when stop_when was seen, or after timeout_ms; *ended says the server
 * ended it. */
static reply sse(sse_client *c, const char *path, const char *token, const char *last_event_id,
                 long timeout_ms, bool *ended)
{
	*ended = hc_stream(base_url, path, token, last_event_id, timeout_ms, on_sse, c, &c->r) == CURLE_OK;
	if (c->r.body == NULL)
		hc_append(&c->r.body, &c->r.body_len, "", 0);
	return c->r;
}

/* The id of the event whose data holds "status":"<status>", or 0. */
static unsigned long long event_id(const char *stream, const char *status)
{
	char needle[64];
	snprintf(needle, sizeof needle, "\"status\":\"%s\"", status);
	const char *data = strstr(stream, needle);
	if (data == NULL)
		return 0;
	const char *id = NULL;
	for (const char *p = strstr(stream, "id: "); p != NULL && p < data; p = strstr(p + 1, "\nid: "))
		id = p[0] == '\n' ? p + 1 : p;
	return id ? strtoull(id + 4, NULL, 10) : 0;
}

/* ---- cart -------------------------------------------------------------------- */

Test(api_orders, cart_crud_keeps_lines_and_totals)
{
	char mug[65], tea[65], path[200];
	create_product("MUG-1", "Mug", 1250, mug);
	create_product("TEA-1", "Tea", 300, tea);
	customer c = sign_up("crud@orion.test");

	reply r = expect(200, "GET", "/api/v1/cart", c.token, NULL, NULL);
	cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 0);
	cr_assert_eq(num(r.json, "total_cents"), 0);
	cr_assert(json_is_null(json_object_get(r.json, "currency")));
	hc_reply_free(&r);

	r = add_item(&c, mug, 2);
	cr_assert_eq(r.status, 200, "%s", r.body);
	hc_reply_free(&r);
	r = add_item(&c, tea, 1);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_assert_eq(num(r.json, "total_cents"), 2 * 1250 + 300);
	cr_assert_str_eq(str(r.json, "currency"), "EUR");
	json_t *line = cart_line(&r, mug);
	cr_assert_not_null(line);
	cr_assert_str_eq(str(line, "name"), "Mug");
	cr_assert_eq(num(line, "unit_price_cents"), 1250);
	cr_assert_eq(num(line, "line_total_cents"), 2500);
	hc_reply_free(&r);

	/* adding again adds to the line */
	r = add_item(&c, mug, 1);
	cr_assert_eq(num(cart_line(&r, mug), "quantity"), 3);
	hc_reply_free(&r);

	/* the catalog's current price is shown */
	path_of(path, sizeof path, "/api/v1/admin/products/", mug, "");
	r = expect(200, "PATCH", path, admin_token, "{\"price_cents\":1000}", NULL);
	hc_reply_free(&r);
	r = expect(200, "GET", "/api/v1/cart", c.token, NULL, NULL);
	cr_assert_eq(num(cart_line(&r, mug), "unit_price_cents"), 1000);
	cr_assert_eq(num(r.json, "total_cents"), 3 * 1000 + 300);
	hc_reply_free(&r);

	path_of(path, sizeof path, "/api/v1/cart/items/", mug, "");
	r = expect(200, "PUT", path, c.token, "{\"quantity\":5}", NULL);
	cr_assert_eq(num(cart_line(&r, mug), "quantity"), 5);
	cr_assert_eq(num(r.json, "total_cents"), 5 * 1000 + 300);
	hc_reply_free(&r);

	path_of(path, sizeof path, "/api/v1/cart/items/", tea, "");
	r = expect(200, "PUT", path, c.token, "{\"quantity\":0}", NULL);
	cr_assert_null(cart_line(&r, tea), "quantity 0 removes the line");
	hc_reply_free(&r);

	path_of(path, sizeof path, "/api/v1/cart/items/", mug, "");
	r = expect(200, "DELETE", path, c.token, NULL, NULL);
	cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 0);
	hc_reply_free(&r);

	r = add_item(&c, tea, 4);
	hc_reply_free(&r);
	/* DELETE /cart, then GET /cart on the same kept-alive connection: the
	 * 204 carries no body that would be read as the start of the next answer */
	char first[GW_JWT_MAX_TOKEN + 128], second[GW_JWT_MAX_TOKEN + 128];
	snprintf(first, sizeof first,
	         "DELETE /api/v1/cart HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n", c.token);
	snprintf(second, sizeof second,
	         "GET /api/v1/cart HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nConnection: "
	         "close\r\n\r\n",
	         c.token);
	char *exchange;
	two_requests_on_one_socket(first, second, &exchange);
	cr_assert(strncmp(exchange, "HTTP/1.1 204 ", 13) == 0, "%s", exchange);
	size_t head = (size_t)(strstr(exchange, "\r\n\r\n") - exchange) + 4;
	cr_assert(strncmp(exchange + head, "HTTP/1.1 200 ", 13) == 0, "bytes after the 204: %s",
	          exchange + head);
	cr_assert_not_null(strstr(exchange + head, "\"items\":[]"), "the cart is empty: %s", exchange);
	free(exchange);

	/* the cart is the caller's: another customer's is separate */
	customer other = sign_up("crud-other@orion.test");
	r = add_item(&c, tea, 1);
	hc_reply_free(&r);
	r = expect(200, "GET", "/api/v1/cart", other.token, NULL, NULL);
	cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 0);
	hc_reply_free(&r);
	stop_cleanly();
}

Test(api_orders, cart_refuses_bad_quantities_unknown_products_and_unknown_fields)
{
	char mug[65], path[200], body[200];
	create_product("MUG-2", "Mug", 1250, mug);
	customer c = sign_up("bounds@orion.test");

	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":0}", mug);
	expect_problem(400, "POST", "/api/v1/cart/items", c.token, body, NULL);
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1000}", mug);
	expect_problem(400, "POST", "/api/v1/cart/items", c.token, body, NULL);
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1,\"unit_price_cents\":1}", mug);
	expect_problem(400, "POST", "/api/v1/cart/items", c.token, body, NULL);
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":\"2\"}", mug);
	expect_problem(400, "POST", "/api/v1/cart/items", c.token, body, NULL);
	expect_problem(400, "POST", "/api/v1/cart/items", c.token, "{\"product_id\":\"a.b\",\"quantity\":1}",
	               NULL);
	expect_problem(404, "POST", "/api/v1/cart/items", c.token,
	               "{\"product_id\":\"p-does-not-exist\",\"quantity\":1}", NULL);
	expect_problem(401, "POST", "/api/v1/cart/items", NULL, "{\"product_id\":\"x\",\"quantity\":1}",
	               NULL);
	expect_problem(401, "GET", "/api/v1/cart", NULL, NULL, NULL);

	/* a line holds at most 999 units */
	reply r = add_item(&c, mug, 999);
	cr_assert_eq(r.status, 200, "%s", r.body);
	hc_reply_free(&r);
	r = add_item(&c, mug, 1);
	cr_assert_eq(r.status, 409, "%s", r.body);
	cr_assert_not_null(strstr(str(r.json, "detail"), "999"), "%s", r.body);
	hc_reply_free(&r);

	path_of(path, sizeof path, "/api/v1/cart/items/", mug, "");
	expect_problem(400, "PUT", path, c.token, "{\"quantity\":1000}", NULL);
	expect_problem(400, "PUT", path, c.token, "{\"quantity\":-1}", NULL);
	expect_problem(400, "PUT", path, c.token, "{\"quantity\":2,\"name\":\"free\"}", NULL);
	expect_problem(400, "PUT", "/api/v1/cart/items/a*b", c.token, "{\"quantity\":2}", NULL);
	expect_problem(404, "PUT", "/api/v1/cart/items/p-not-in-cart", c.token, "{\"quantity\":2}", NULL);
	r = expect(200, "GET", "/api/v1/cart", c.token, NULL, NULL);
	cr_assert_eq(num(cart_line(&r, mug), "quantity"), 999, "refused writes change nothing");
	hc_reply_free(&r);
}

Test(api_orders, a_deleted_product_is_dropped_from_the_cart_with_a_notice)
{
	char mug[65], tea[65], path[200];
	create_product("MUG-3", "Mug", 1250, mug);
	create_product("TEA-3", "Tea", 300, tea);
	customer c = sign_up("deleted@orion.test");
	reply r = add_item(&c, mug, 1);
	hc_reply_free(&r);
	r = add_item(&c, tea, 2);
	hc_reply_free(&r);
	path_of(path, sizeof path, "/api/v1/admin/products/", tea, "");
	r = expect(204, "DELETE", path, admin_token, NULL, NULL);
	hc_reply_free(&r);

	r = expect(200, "GET", "/api/v1/cart", c.token, NULL, NULL);
	cr_assert_null(cart_line(&r, tea));
	cr_assert_not_null(cart_line(&r, mug));
	cr_assert_eq(num(r.json, "total_cents"), 1250);
	json_t *notices = json_object_get(r.json, "notices");
	cr_assert_eq(json_array_size(notices), 1, "%s", r.body);
	cr_assert_str_eq(str(json_array_get(notices, 0), "product_id"), tea);
	cr_assert_not_null(json_object_get(json_array_get(notices, 0), "message"));
	hc_reply_free(&r);

	/* the line was removed from the cart: the notice shows once */
	bool gone = false;
	for (int i = 0; i < 50 && !gone; i++) {
		r = expect(200, "GET", "/api/v1/cart", c.token, NULL, NULL);
		gone = json_object_get(r.json, "notices") == NULL;
		hc_reply_free(&r);
		if (!gone)
			usleep(100 * 1000);
	}
	cr_assert(gone, "the deleted product's line stayed in the cart");
	/* and a deleted product cannot be added */
	r = add_item(&c, tea, 1);
	cr_assert_eq(r.status, 404, "%s", r.body);
	hc_reply_free(&r);
}

/* ---- placing and listing --------------------------------------------------------- */

Test(api_orders, placing_needs_items_and_honours_the_idempotency_key)
{
	char mug[65], first[65], again[65], path[200];
	create_product("MUG-4", "Mug", 1250, mug);
	customer c = sign_up("place@orion.test");

	expect_problem(422, "POST", "/api/v1/orders", c.token, "{}", NULL);
	expect_problem(401, "POST", "/api/v1/orders", NULL, "{}", NULL);
	reply r = add_item(&c, mug, 2);
	hc_reply_free(&r);
	expect_problem(400, "POST", "/api/v1/orders", c.token, "{\"items\":[]}", NULL);
	expect_problem(400, "POST", "/api/v1/orders", c.token, "{}", "Idempotency-Key;"); /* empty */
	char long_key[200] = "Idempotency-Key: ";
	memset(long_key + strlen(long_key), 'k', 129);
	expect_problem(400, "POST", "/api/v1/orders", c.token, "{}", long_key);

	r = expect(202, "POST", "/api/v1/orders", c.token, "{}", "Idempotency-Key: order-key-1");
	snprintf(first, sizeof first, "%s", str(r.json, "id"));
	cr_assert_str_eq(str(r.json, "status"), "pending");
	cr_assert_eq(num(r.json, "total_cents"), 2500);
	cr_assert_str_eq(str(r.json, "currency"), "EUR");
	cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 1);
	cr_assert_eq(json_array_size(json_object_get(r.json, "history")), 1);
	cr_assert(json_is_null(json_object_get(r.json, "payment")));
	const char *created = str(r.json, "created_at");
	cr_assert_eq(strlen(created), 24, "RFC 3339 with ms: %s", created);
	cr_assert_eq(created[23], 'Z');
	cr_assert_null(strstr(r.body, "token"), "no token hash in %s", r.body);
	cr_assert_null(strstr(r.body, "hash"), "no hash in %s", r.body);
	cr_assert_null(strstr(r.body, "place@orion.test"), "no email in %s", r.body);
	hc_reply_free(&r);

	/* a retry finds the same order (200: placed before); the same key with
	 * another body is refused */
	r = expect(200, "POST", "/api/v1/orders", c.token, "{}", "Idempotency-Key: order-key-1");
	snprintf(again, sizeof again, "%s", str(r.json, "id"));
	cr_assert_str_eq(again, first);
	hc_reply_free(&r);
	expect_problem(422, "POST", "/api/v1/orders", c.token, "{\"note\":\"x\"}",
	               "Idempotency-Key: order-key-1");
	/* another key is another order */
	r = add_item(&c, mug, 1);
	hc_reply_free(&r);
	r = expect(202, "POST", "/api/v1/orders", c.token, "{}", "Idempotency-Key: order-key-2");
	cr_assert_str_neq(str(r.json, "id"), first);
	hc_reply_free(&r);

	/* another customer with the same key gets an order of their own */
	customer other = sign_up("place-other@orion.test");
	r = add_item(&other, mug, 1);
	hc_reply_free(&r);
	r = expect(202, "POST", "/api/v1/orders", other.token, "{}", "Idempotency-Key: order-key-1");
	cr_assert_str_neq(str(r.json, "id"), first);
	hc_reply_free(&r);

	path_of(path, sizeof path, "/api/v1/orders/", first, "");
	r = expect(200, "GET", path, c.token, NULL, NULL);
	cr_assert_str_eq(str(r.json, "id"), first);
	cr_assert_eq(num(r.json, "total_cents"), 2500);
	hc_reply_free(&r);
	stop_cleanly();
}

Test(api_orders, the_list_is_newest_first_and_pages)
{
	char mug[65], ids[3][65];
	create_product("MUG-5", "Mug", 100, mug);
	customer c = sign_up("list@orion.test");
	for (int i = 0; i < 3; i++) {
		reply r = add_item(&c, mug, i + 1);
		hc_reply_free(&r);
		place(&c, NULL, ids[i]);
		usleep(5 * 1000); /* distinct created_at */
	}
	reply r = expect(200, "GET", "/api/v1/orders?limit=2", c.token, NULL, NULL);
	json_t *items = json_object_get(r.json, "items");
	cr_assert_eq(json_array_size(items), 2, "%s", r.body);
	cr_assert_str_eq(str(json_array_get(items, 0), "id"), ids[2]);
	cr_assert_str_eq(str(json_array_get(items, 1), "id"), ids[1]);
	json_t *first = json_array_get(items, 0);
	cr_assert_eq(num(first, "item_count"), 1);
	cr_assert_not_null(json_object_get(first, "total_cents"));
	cr_assert_not_null(json_object_get(first, "created_at"));
	cr_assert_not_null(json_object_get(first, "updated_at"));
	cr_assert_str_eq(str(first, "currency"), "EUR");
	char path[700];
	snprintf(path, sizeof path, "/api/v1/orders?limit=2&cursor=%s", str(r.json, "next_cursor"));
	hc_reply_free(&r);
	r = expect(200, "GET", path, c.token, NULL, NULL);
	items = json_object_get(r.json, "items");
	cr_assert_eq(json_array_size(items), 1, "%s", r.body);
	cr_assert_str_eq(str(json_array_get(items, 0), "id"), ids[0]);
	cr_assert(json_is_null(json_object_get(r.json, "next_cursor")));
	hc_reply_free(&r);

	expect_problem(400, "GET", "/api/v1/orders?limit=0", c.token, NULL, NULL);
	expect_problem(400, "GET", "/api/v1/orders?limit=101", c.token, NULL, NULL);
	expect_problem(400, "GET", "/api/v1/orders?cursor=forged", c.token, NULL, NULL);

	customer other = sign_up("list-other@orion.test");
	r = expect(200, "GET", "/api/v1/orders", other.token, NULL, NULL);
	cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 0, "only my own orders: %s", r.body);
	hc_reply_free(&r);
}

Test(api_orders, another_customer_cannot_see_cancel_or_stream_my_order)
{
	char mug[65], id[65], path[200];
	create_product("MUG-6", "Mug", 100, mug);
	customer me = sign_up("owner@orion.test"), other = sign_up("intruder@orion.test");
	reply r = add_item(&me, mug, 1);
	hc_reply_free(&r);
	place(&me, NULL, id);

	path_of(path, sizeof path, "/api/v1/orders/", id, "");
	expect_problem(404, "GET", path, other.token, NULL, NULL);
	expect_problem(404, "GET", "/api/v1/orders/o-does-not-exist", me.token, NULL, NULL);
	expect_problem(401, "GET", path, NULL, NULL, NULL);
	expect_problem(400, "GET", "/api/v1/orders/a.b", me.token, NULL, NULL);
	path_of(path, sizeof path, "/api/v1/orders/", id, "/cancel");
	expect_problem(404, "POST", path, other.token, NULL, NULL);
	path_of(path, sizeof path, "/api/v1/orders/", id, "/events");
	expect_problem(404, "GET", path, other.token, NULL, NULL);
	expect_problem(401, "GET", path, NULL, NULL, NULL);

	/* the order is untouched */
	path_of(path, sizeof path, "/api/v1/orders/", id, "");
	r = expect(200, "GET", path, me.token, NULL, NULL);
	cr_assert_neq(strcmp(str(r.json, "status"), "cancelled"), 0);
	hc_reply_free(&r);

	/* the owner cancels; again (a retry) answers what happened, and changes nothing */
	path_of(path, sizeof path, "/api/v1/orders/", id, "/cancel");
	r = expect(200, "POST", path, me.token, NULL, NULL);
	cr_assert_str_eq(str(r.json, "status"), "cancelled");
	json_t *history = json_object_get(r.json, "history");
	size_t entries = json_array_size(history);
	json_t *last = json_array_get(history, entries - 1);
	cr_assert_str_eq(str(last, "reason"), "customer");
	hc_reply_free(&r);
	r = expect(200, "POST", path, me.token, NULL, NULL);
	cr_assert_str_eq(str(r.json, "status"), "cancelled");
	cr_assert_eq(json_array_size(json_object_get(r.json, "history")), entries, "nothing appended");
	hc_reply_free(&r);
	expect_problem(400, "POST", path, me.token, "{\"reason\":\"x\"}", NULL);
}

/* ---- confirmation ------------------------------------------------------------------ */

Test(api_orders, confirm_checks_the_token)
{
	char mug[65], id[65], path[200], body[200], token[ORDER_TOKEN_MAX];
	create_product("MUG-7", "Mug", 100, mug);
	customer c = sign_up("confirm@orion.test");
	reply r = add_item(&c, mug, 1);
	hc_reply_free(&r);
	place(&c, NULL, id);
	path_of(path, sizeof path, "/api/v1/orders/", id, "/confirm");

	/* malformed tokens and bodies: 400, no login needed or looked at */
	expect_problem(400, "POST", path, NULL, "{\"token\":\"short\"}", NULL);
	expect_problem(400, "POST", path, NULL, "{\"token\":\"" BAD_TOKEN "!\"}", NULL);
	expect_problem(400, "POST", path, NULL, "{\"token\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+/\"}",
	               NULL);
	expect_problem(400, "POST", path, NULL, "{\"token\":\"" BAD_TOKEN "\",\"status\":\"confirmed\"}",
	               NULL);
	expect_problem(400, "POST", path, NULL, "{}", NULL);
	expect_problem(404, "POST", "/api/v1/orders/o-unknown/confirm", NULL, "{\"token\":\"" BAD_TOKEN "\"}",
	               NULL);
	r = call_as("POST", path, NULL, "token=short", "application/x-www-form-urlencoded", NULL);
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(hc_header(&r, "Content-Type"), "text/html"));
	hc_reply_free(&r);

	if (!has_checkout())
		cr_skip_test("orion serve has no checkout role yet: orders stay pending");
	cr_assert(wait_status(&c, id, "awaiting_confirmation", 20000), "the saga did not reserve the order");

	expect_problem(403, "POST", path, NULL, "{\"token\":\"" BAD_TOKEN "\"}", NULL);
	r = call_as("POST", path, NULL, "token=" BAD_TOKEN, "application/x-www-form-urlencoded", NULL);
	cr_assert_eq(r.status, 403, "%s", r.body);
	cr_assert_not_null(strstr(hc_header(&r, "Content-Type"), "text/html"));
	hc_reply_free(&r);

	token_for(id, token);
	snprintf(body, sizeof body, "{\"token\":\"%s\"}", token);
	r = expect(200, "POST", path, NULL, body, NULL);
	cr_assert_str_eq(str(r.json, "status"), "awaiting_payment");
	hc_reply_free(&r);
	/* the link used again (a retry after a lost answer) answers what happened */
	r = expect(200, "POST", path, NULL, body, NULL);
	cr_assert_str_eq(str(r.json, "status"), "awaiting_payment");
	cr_assert_eq(json_array_size(json_object_get(r.json, "history")), 3, "nothing appended");
	hc_reply_free(&r);
	expect_problem(403, "POST", path, NULL, "{\"token\":\"" BAD_TOKEN "\"}", NULL);
	/* a cancelled order is not confirmed by its link */
	char cancel[200];
	path_of(cancel, sizeof cancel, "/api/v1/orders/", id, "/cancel");
	r = expect(200, "POST", cancel, c.token, NULL, NULL);
	hc_reply_free(&r);
	expect_problem(409, "POST", path, NULL, body, NULL);
}

Test(api_orders, the_confirmation_form_confirms_with_an_html_answer)
{
	char mug[65], id[65], path[200], body[200], token[ORDER_TOKEN_MAX];
	create_product("MUG-8", "Mug", 100, mug);
	customer c = sign_up("form@orion.test");
	reply r = add_item(&c, mug, 1);
	hc_reply_free(&r);
	place(&c, NULL, id);
	if (!has_checkout())
		cr_skip_test("orion serve has no checkout role yet: orders stay pending");
	cr_assert(wait_status(&c, id, "awaiting_confirmation", 20000), "the saga did not reserve the order");
	token_for(id, token);
	path_of(path, sizeof path, "/api/v1/orders/", id, "/confirm");
	snprintf(body, sizeof body, "token=%s", token);
	r = call_as("POST", path, NULL, body, "application/x-www-form-urlencoded", NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_assert_not_null(strstr(hc_header(&r, "Content-Type"), "text/html"));
	cr_assert_not_null(strstr(r.body, "confirmed"));
	cr_assert_null(strstr(r.body, token), "the answer does not repeat the token");
	hc_reply_free(&r);
	cr_assert(wait_status(&c, id, "awaiting_payment", 5000));
	/* the form sent again (a double submit) shows the same confirmation */
	r = call_as("POST", path, NULL, body, "application/x-www-form-urlencoded", NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_assert_not_null(strstr(r.body, "confirmed"));
	hc_reply_free(&r);
}

Test(api_orders_limited, confirmations_are_rate_limited_per_address)
{
	char form[100];
	/* given a budget of 3: three well-shaped attempts reach the order actor */
	for (int i = 0; i < 3; i++)
		expect_problem(404, "POST", "/api/v1/orders/o-unknown/confirm", NULL,
		               "{\"token\":\"" BAD_TOKEN "\"}", NULL);
	/* then the address is refused, before anything is sent */
	reply r = expect(429, "POST", "/api/v1/orders/o-unknown/confirm", NULL,
	                 "{\"token\":\"" BAD_TOKEN "\"}", NULL);
	cr_assert_str_eq(hc_header(&r, "Content-Type"), "application/problem+json");
	const char *retry = hc_header(&r, "Retry-After");
	cr_assert_not_null(retry);
	cr_assert_geq(atoi(retry), 1, "Retry-After: %s", retry);
	hc_reply_free(&r);
	/* the form and the page share the budget, and answer a page */
	snprintf(form, sizeof form, "token=%s", BAD_TOKEN);
	r = call_as("POST", "/api/v1/orders/o-unknown/confirm", NULL, form,
	            "application/x-www-form-urlencoded", NULL);
	cr_assert_eq(r.status, 429, "%s", r.body);
	cr_assert_not_null(strstr(hc_header(&r, "Content-Type"), "text/html"));
	cr_assert_not_null(hc_header(&r, "Retry-After"));
	hc_reply_free(&r);
	r = call("GET", "/api/v1/orders/o-unknown/confirm?token=" BAD_TOKEN, NULL, NULL, NULL);
	cr_assert_eq(r.status, 429, "%s", r.body);
	cr_assert_not_null(strstr(hc_header(&r, "Content-Type"), "text/html"));
	hc_reply_free(&r);
	/* malformed requests cost nothing and are still told so */
	expect_problem(400, "POST", "/api/v1/orders/o-unknown/confirm", NULL, "{\"token\":\"short\"}", NULL);
	stop_cleanly();
}

Test(api_orders, the_confirmation_page_is_escaped_html_with_a_form)
{
	char path[300];
	snprintf(path, sizeof path, "/api/v1/orders/o-page_1/confirm?token=%s",
	         "Ab-_0123456789abcdefghijklmnopqrstuvwxyzABC");
	reply r = expect(200, "GET", path, NULL, NULL, NULL);
	cr_assert_not_null(strstr(hc_header(&r, "Content-Type"), "text/html"));
	const char *csp = hc_header(&r, "Content-Security-Policy");
	cr_assert_not_null(strstr(csp, "default-src 'none'"), "%s", csp);
	cr_assert_not_null(strstr(csp, "form-action 'self'"), "%s", csp);
	cr_assert_not_null(strstr(csp, "style-src 'unsafe-inline'"), "%s", csp);
	cr_assert_str_eq(hc_header(&r, "Cache-Control"), "no-store");
	cr_assert_not_null(
	        strstr(r.body, "<form method=\"post\" action=\"/api/v1/orders/o-page_1/confirm\">"), "%s",
	        r.body);
	cr_assert_not_null(
	        strstr(r.body, "name=\"token\" value=\"Ab-_0123456789abcdefghijklmnopqrstuvwxyzABC\""));
	hc_reply_free(&r);

	/* hostile values never reach the page: 400 page, nothing echoed */
	r = call("GET", "/api/v1/orders/o1/confirm?token=%3Cscript%3Ealert(1)%3C%2Fscript%3E", NULL, NULL,
	         NULL);
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(hc_header(&r, "Content-Type"), "text/html"));
	cr_assert_null(strstr(r.body, "<script"), "%s", r.body);
	hc_reply_free(&r);
	r = call("GET", "/api/v1/orders/%3Cb%3E/confirm?token=" BAD_TOKEN, NULL, NULL, NULL);
	cr_assert_eq(r.status, 400);
	cr_assert_null(strstr(r.body, "<b>"), "%s", r.body);
	hc_reply_free(&r);
	r = call("GET", "/api/v1/orders/o1/confirm", NULL, NULL, NULL);
	cr_assert_eq(r.status, 400);
	hc_reply_free(&r);
}

/* ---- the event stream ------------------------------------------------------------- */

typedef struct cancel_arg {
	const customer *c;
	const char *id;
	long status;
} cancel_arg;

static void cancel_now(void *arg)
{
	cancel_arg *a = arg;
	char path[200];
	path_of(path, sizeof path, "/api/v1/orders/", a->id, "/cancel");
	reply r = call("POST", path, a->c->token, NULL, NULL);
	a->status = r.status;
	hc_reply_free(&r);
}

Test(api_orders, the_event_stream_sends_history_then_live_changes_and_resumes)
{
	char mug[65], id[65], path[200], last[32];
	bool ended;
	create_product("MUG-9", "Mug", 100, mug);
	customer c = sign_up("stream@orion.test");
	reply r = add_item(&c, mug, 1);
	hc_reply_free(&r);
	place(&c, NULL, id);
	path_of(path, sizeof path, "/api/v1/orders/", id, "/events");

	/* history on connect, then the cancellation live; the stream ends after it */
	cancel_arg arg = {.c = &c, .id = id};
	sse_client client = {.trigger = "\"status\":\"pending\"", .action = cancel_now, .action_arg = &arg};
	reply s = sse(&client, path, c.token, NULL, 20000, &ended);
	cr_assert_eq(s.status, 200, "%s", s.body);
	cr_assert_not_null(strstr(hc_header(&s, "Content-Type"), "text/event-stream"));
	cr_assert_str_eq(hc_header(&s, "Cache-Control"), "no-store");
	cr_assert_eq(arg.status, 200, "the cancel during the stream");
	cr_assert(ended, "the stream ends after a final status: %s", s.body);
	unsigned long long pending = event_id(s.body, "pending"), cancelled = event_id(s.body, "cancelled");
	cr_assert_gt(pending, 0, "%s", s.body);
	cr_assert_gt(cancelled, pending, "%s", s.body);
	cr_assert_not_null(strstr(s.body, "event: status\n"));
	cr_assert_not_null(strstr(s.body, "\"reason\":\"customer\""));
	/* a finished stream asks the client to wait long before reconnecting */
	const char *retry = strstr(s.body, "\nretry: ");
	cr_assert_not_null(retry, "no retry field: %s", s.body);
	cr_assert_geq(strtoull(retry + 8, NULL, 10), 60000, "%s", s.body);
	cr_assert_gt(retry - s.body, strstr(s.body, "\"status\":\"cancelled\"") - s.body,
	             "the retry follows the final event: %s", s.body);
	hc_reply_free(&s);

	/* Last-Event-ID: only what came after it */
	snprintf(last, sizeof last, "%llu", pending);
	sse_client resumed = {0};
	s = sse(&resumed, path, c.token, last, 10000, &ended);
	cr_assert_eq(s.status, 200);
	cr_assert(ended);
	cr_assert_eq(event_id(s.body, "pending"), 0, "%s", s.body);
	cr_assert_eq(event_id(s.body, "cancelled"), cancelled, "%s", s.body);
	cr_assert_not_null(strstr(s.body, "\nretry: "), "%s", s.body);
	hc_reply_free(&s);
	/* a client that has seen the final status: 204, which stops an
	 * EventSource from reconnecting (an empty 200 would make it reconnect
	 * every few seconds forever) */
	for (unsigned long long seen = cancelled; seen <= cancelled + 1; seen++) {
		snprintf(last, sizeof last, "%llu", seen);
		sse_client caught_up = {0};
		s = sse(&caught_up, path, c.token, last, 10000, &ended);
		cr_assert(ended, "nothing more will come after a final status");
		cr_assert_eq(s.status, 204, "Last-Event-ID %s: %ld %s", last, s.status, s.body);
		cr_assert_eq(s.body_len, 0, "%s", s.body);
		hc_reply_free(&s);
	}

	expect_problem(400, "GET", path, c.token, NULL, "Last-Event-ID: abc");
	stop_cleanly();
}

Test(api_orders, an_open_stream_does_not_keep_the_server_from_stopping)
{
	char mug[65], id[65], path[200];
	bool ended;
	create_product("MUG-10", "Mug", 100, mug);
	customer c = sign_up("stop@orion.test");
	reply r = add_item(&c, mug, 1);
	hc_reply_free(&r);
	place(&c, NULL, id);
	path_of(path, sizeof path, "/api/v1/orders/", id, "/events");
	/* read until the pending event, then leave the connection open while stopping */
	sse_client client = {.stop_when = "\"status\":\"pending\""};
	reply s = sse(&client, path, c.token, NULL, 10000, &ended);
	cr_assert_not_null(strstr(s.body, "pending"));
	hc_reply_free(&s);
	stop_cleanly();
}

Test(api_orders, the_stream_delivers_awaiting_confirmation)
{
	char mug[65], id[65], path[200];
	bool ended;
	if (!has_checkout())
		cr_skip_test("orion serve has no checkout role yet: orders stay pending");
	create_product("MUG-11", "Mug", 100, mug);
	customer c = sign_up("saga@orion.test");
	reply r = add_item(&c, mug, 1);
	hc_reply_free(&r);
	place(&c, NULL, id);
	path_of(path, sizeof path, "/api/v1/orders/", id, "/events");
	sse_client client = {.stop_when = "\"status\":\"awaiting_confirmation\""};
	reply s = sse(&client, path, c.token, NULL, 20000, &ended);
	cr_assert_eq(s.status, 200);
	unsigned long long pending = event_id(s.body, "pending");
	unsigned long long reserved = event_id(s.body, "awaiting_confirmation");
	cr_assert_gt(pending, 0, "%s", s.body);
	cr_assert_gt(reserved, pending, "%s", s.body);
	hc_reply_free(&s);
}

/* ADR 015: one version of a cart places one order, however often it is
 * submitted (a double click, a retry after a lost answer), with or without a
 * key; once the checkout emptied the cart, submitting it again answers the
 * same order; a cart change makes the next submission a new order. */
Test(api_orders, one_cart_version_places_one_order)
{
	char mug[65], first[65], path[200];
	create_product("MUG-ONE", "Mug", 300, mug);
	customer c = sign_up("one-cart@orion.test");
	reply r = add_item(&c, mug, 1);
	hc_reply_free(&r);
	place(&c, NULL, first);
	r = expect(200, "POST", "/api/v1/orders", c.token, "{}", NULL);
	cr_assert_str_eq(str(r.json, "id"), first, "the same cart: the same order");
	hc_reply_free(&r);
	if (!has_checkout())
		cr_skip_test("orion serve has no checkout role yet: carts are never checked out");
	cr_assert(wait_status(&c, first, "awaiting_confirmation", 20000),
	          "the saga did not reserve the order");
	/* the checkout emptied the cart: submitted again, it is still that order */
	for (int waited = 0; waited < 5000; waited += 100) {
		r = expect(200, "GET", "/api/v1/cart", c.token, NULL, NULL);
		size_t lines = json_array_size(json_object_get(r.json, "items"));
		hc_reply_free(&r);
		if (lines == 0)
			break;
		usleep(100 * 1000);
	}
	r = expect(200, "POST", "/api/v1/orders", c.token, "{}", NULL);
	cr_assert_str_eq(str(r.json, "id"), first);
	hc_reply_free(&r);
	/* a changed cart is another order */
	r = add_item(&c, mug, 2);
	hc_reply_free(&r);
	char second[65];
	place(&c, NULL, second);
	cr_assert_str_neq(second, first);
	path_of(path, sizeof path, "/api/v1/orders/", first, "");
	r = expect(200, "GET", path, c.token, NULL, NULL);
	cr_assert_eq(num(r.json, "total_cents"), 300, "the first order kept its lines");
	hc_reply_free(&r);
}

/* ADR 015: a cart change with an Idempotency-Key is applied once; the key
 * with another body is refused; without a key, a resend is a new change. */
Test(api_orders, a_keyed_cart_change_counts_once)
{
	char mug[65], body[160];
	create_product("MUG-KEY", "Mug", 100, mug);
	customer c = sign_up("keyed-cart@orion.test");
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":2}", mug);
	for (int i = 0; i < 3; i++) {
		reply r = expect(200, "POST", "/api/v1/cart/items", c.token, body, "Idempotency-Key: add-1");
		cr_assert_eq(num(cart_line(&r, mug), "quantity"), 2, "try %d: %s", i, r.body);
		hc_reply_free(&r);
	}
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":3}", mug);
	expect_problem(422, "POST", "/api/v1/cart/items", c.token, body, "Idempotency-Key: add-1");
	reply r = expect(200, "POST", "/api/v1/cart/items", c.token, body, NULL);
	cr_assert_eq(num(cart_line(&r, mug), "quantity"), 5);
	hc_reply_free(&r);
}
