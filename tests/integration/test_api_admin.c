/* test_api_admin.c — the admin routes through a real `orion serve`: products
 * (create with read-your-writes, get, patch, delete and sku reuse, duplicate
 * sku, Idempotency-Key), inventory (adjustments, list with below and paging),
 * and what must be refused (401, 403, mass assignment, invalid ids and
 * queries). One server per test, stopped with SIGTERM in .fini. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw_jwt.h"
#include "harness.h"
#include "http_client.h"
#include "stock_client.h"

#define ADMIN_EMAIL    "admin@orion.test"
#define ADMIN_PASSWORD "correct horse battery"

static char *data_dir;
static pid_t server_pid;
static int server_port;
static char base_url[64];
static char admin_token[GW_JWT_MAX_TOKEN];
static char customer_token[GW_JWT_MAX_TOKEN];

/* ---- a small curl client ------------------------------------------------ */

typedef hc_reply reply;

/* method path with an optional bearer token, JSON body and one extra header. */
static reply call(const char *method, const char *path, const char *token, const char *body,
                  const char *extra_header)
{
	return hc_call(base_url, method, path, token, body, 0, NULL, extra_header, 15000L);
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
                           const char *body)
{
	reply r = expect(status, method, path, token, body, NULL);
	cr_assert_not_null(strstr(r.body, "\"type\""), "problem body: %s", r.body);
	cr_assert_not_null(r.json, "problem body: %s", r.body);
	cr_assert_eq(json_integer_value(json_object_get(r.json, "status")), status);
	cr_assert_not_null(json_object_get(r.json, "title"));
	hc_reply_free(&r);
}

/* True if the problem in r lists an error for field. */
static bool has_error(const reply *r, const char *field)
{
	json_t *errors = json_object_get(r->json, "errors");
	size_t i;
	json_t *e;
	json_array_foreach(errors, i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "field")), field) == 0)
			return true;
	}
	return false;
}

static const char *str(const reply *r, const char *name)
{
	const char *s = json_string_value(json_object_get(r->json, name));
	cr_assert_not_null(s, "no string %s in %s", name, r->body);
	return s;
}

static long long num(const json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);
	cr_assert(json_is_integer(v), "no integer %s", name);
	return json_integer_value(v);
}

/* ---- the server ---------------------------------------------------------- */

/* The admin made at start-up logs in through the API. */
static void admin_login(void)
{
	hc_login_token(base_url, ADMIN_EMAIL, ADMIN_PASSWORD, admin_token, sizeof admin_token);
}

static void start_server(void)
{
	const char *env[] = {"ORION_ADMIN_EMAIL=" ADMIN_EMAIL, "ORION_ADMIN_PASSWORD=" ADMIN_PASSWORD,
	                     "ORION_NATS_URL=", "ORION_JWT_SECRET=", NULL};
	data_dir = th_tempdir("api-admin");
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, &server_port);
	admin_login();
	hc_customer_token(base_url, "customer-test@example.com", customer_token, sizeof customer_token);
}

static void stop_server(void)
{
	hc_serve_teardown(&server_pid, &data_dir);
}

TestSuite(api_admin, .init = start_server, .fini = stop_server, .timeout = 60);

/* ---- helpers over the API -------------------------------------------------- */

static char *product_body(const char *sku, const char *name, long long stock)
{
	static char body[1024];
	snprintf(body, sizeof body,
	         "{\"sku\":\"%s\",\"name\":\"%s\",\"description\":\"A test product.\",\"price_cents\":1250,"
	         "\"currency\":\"EUR\",\"category\":\"tests\",\"initial_stock\":%lld}",
	         sku, name, stock);
	return body;
}

/* Creates a product (201) and returns its id (malloc'd). */
static char *create(const char *sku, const char *name, long long stock)
{
	reply r = expect(201, "POST", "/api/v1/admin/products", admin_token, product_body(sku, name, stock),
	                 NULL);
	char *id = strdup(str(&r, "id"));
	hc_reply_free(&r);
	return id;
}

static char *path_of(const char *prefix, const char *id, const char *suffix)
{
	static char path[512];
	snprintf(path, sizeof path, "%s%s%s", prefix, id, suffix ? suffix : "");
	return path;
}

/* Sends first on a fresh connection to the server, reads its answer's
 * header block, then sends second (which should say "Connection: close")
 * and reads to the end, into *out (NUL-terminated; free it). */
static void two_requests_on_one_socket(const char *first, const char *second, char **out)
{
	char chunk[4096];
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	cr_assert_eq(send(fd, first, strlen(first), 0), (ssize_t)strlen(first));
	reply r = {0};
	hc_on_body("", 1, 0, &r);
	while (strstr(r.body, "\r\n\r\n") == NULL) {
		ssize_t n = recv(fd, chunk, sizeof chunk, 0);
		cr_assert_gt(n, 0, "the first answer: %s", r.body);
		hc_on_body(chunk, 1, (size_t)n, &r);
	}
	cr_assert_eq(send(fd, second, strlen(second), 0), (ssize_t)strlen(second));
	for (ssize_t n; (n = recv(fd, chunk, sizeof chunk, 0)) > 0;)
		hc_on_body(chunk, 1, (size_t)n, &r);
	close(fd);
	*out = r.body;
}

/* ---- products ------------------------------------------------------------ */

Test(api_admin, create_get_patch_delete_and_reuse_the_sku)
{
	reply r = expect(201, "POST", "/api/v1/admin/products", admin_token, product_body("TEE-1", "Tee", 7),
	                 NULL);
	cr_assert_str_eq(str(&r, "sku"), "TEE-1");
	cr_assert_str_eq(str(&r, "name"), "Tee");
	cr_assert_str_eq(str(&r, "description"), "A test product.");
	cr_assert_str_eq(str(&r, "currency"), "EUR");
	cr_assert_str_eq(str(&r, "category"), "tests");
	cr_assert_eq(num(r.json, "price_cents"), 1250);
	cr_assert_eq(num(r.json, "on_hand"), 7);
	cr_assert_eq(num(r.json, "reserved"), 0);
	cr_assert_eq(num(r.json, "available"), 7);
	char *id = strdup(str(&r, "id"));
	hc_reply_free(&r);

	/* read-your-writes: the very next GET sees it, admin and public */
	r = expect(200, "GET", path_of("/api/v1/admin/products/", id, NULL), admin_token, NULL, NULL);
	cr_assert_str_eq(str(&r, "id"), id);
	cr_assert_str_eq(str(&r, "sku"), "TEE-1");
	cr_assert_eq(num(r.json, "on_hand"), 7);
	cr_assert_eq(num(r.json, "available"), 7);
	hc_reply_free(&r);

	/* a duplicate sku, also in another case */
	expect_problem(409, "POST", "/api/v1/admin/products", admin_token, product_body("TEE-1", "Other", 1));
	expect_problem(409, "POST", "/api/v1/admin/products", admin_token, product_body("tee-1", "Other", 1));

	/* patch a subset; the answer and the next GET show it */
	r = expect(200, "PATCH", path_of("/api/v1/admin/products/", id, NULL), admin_token,
	           "{\"name\":\"Tee v2\",\"price_cents\":1500}", NULL);
	cr_assert_str_eq(str(&r, "name"), "Tee v2");
	cr_assert_eq(num(r.json, "price_cents"), 1500);
	cr_assert_str_eq(str(&r, "description"), "A test product.");
	cr_assert_eq(num(r.json, "available"), 7);
	hc_reply_free(&r);
	r = expect(200, "GET", path_of("/api/v1/admin/products/", id, NULL), admin_token, NULL, NULL);
	cr_assert_str_eq(str(&r, "name"), "Tee v2");
	hc_reply_free(&r);
	/* the same patch again changes nothing: 200 with the product */
	r = expect(200, "PATCH", path_of("/api/v1/admin/products/", id, NULL), admin_token,
	           "{\"name\":\"Tee v2\"}", NULL);
	cr_assert_eq(num(r.json, "price_cents"), 1500);
	hc_reply_free(&r);
	/* immutable and unknown fields, an empty patch */
	r = expect(400, "PATCH", path_of("/api/v1/admin/products/", id, NULL), admin_token,
	           "{\"sku\":\"X\",\"currency\":\"USD\",\"role\":\"admin\"}", NULL);
	cr_assert(has_error(&r, "sku") && has_error(&r, "currency") && has_error(&r, "role"), "%s", r.body);
	hc_reply_free(&r);
	expect_problem(400, "PATCH", path_of("/api/v1/admin/products/", id, NULL), admin_token, "{}");
	expect_problem(404, "PATCH", "/api/v1/admin/products/nope", admin_token, "{\"name\":\"x\"}");

	/* delete: 204 (without a body: the next answer on the same kept-alive
	 * connection parses), then 404 everywhere, and the sku is free again */
	char first[GW_JWT_MAX_TOKEN + 256], second[GW_JWT_MAX_TOKEN + 256], *exchange;
	snprintf(first, sizeof first,
	         "DELETE /api/v1/admin/products/%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n",
	         id, admin_token);
	snprintf(second, sizeof second,
	         "GET /api/v1/admin/products/%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
	         "Connection: close\r\n\r\n",
	         id, admin_token);
	two_requests_on_one_socket(first, second, &exchange);
	cr_assert(strncmp(exchange, "HTTP/1.1 204 ", 13) == 0, "%s", exchange);
	size_t head = (size_t)(strstr(exchange, "\r\n\r\n") - exchange) + 4;
	cr_assert(strncmp(exchange + head, "HTTP/1.1 404 ", 13) == 0, "bytes after the 204: %s",
	          exchange + head);
	free(exchange);
	expect_problem(404, "GET", path_of("/api/v1/admin/products/", id, NULL), admin_token, NULL);
	expect_problem(404, "GET", path_of("/api/v1/products/", id, NULL), NULL, NULL);
	expect_problem(404, "DELETE", path_of("/api/v1/admin/products/", id, NULL), admin_token, NULL);
	expect_problem(404, "PATCH", path_of("/api/v1/admin/products/", id, NULL), admin_token,
	               "{\"name\":\"x\"}");
	expect_problem(404, "DELETE", "/api/v1/admin/products/never-created", admin_token, NULL);
	char *again = create("tee-1", "Tee reborn", 2);
	cr_assert_str_neq(again, id);
	free(again);
	free(id);
}

/* The number of items of the inventory's first page of 100. */
static size_t inventory_count(void)
{
	reply r = expect(200, "GET", "/api/v1/admin/inventory?limit=100", admin_token, NULL, NULL);
	size_t n = json_array_size(json_object_get(r.json, "items"));
	hc_reply_free(&r);
	return n;
}

Test(api_admin, idempotency_key_replay_creates_one_product)
{
	const char *key = "Idempotency-Key: create-tee-42";
	reply first = expect(201, "POST", "/api/v1/admin/products", admin_token,
	                     product_body("IDEM-1", "Idem", 3), key);
	reply second = expect(201, "POST", "/api/v1/admin/products", admin_token,
	                      product_body("IDEM-1", "Idem", 3), key);
	cr_assert_str_eq(str(&first, "id"), str(&second, "id"));
	cr_assert_eq(num(second.json, "on_hand"), 3);
	cr_assert_eq(inventory_count(), 1);
	hc_reply_free(&second);
	/* the same key with another sku: 422, and that sku stays free */
	reply r = expect(422, "POST", "/api/v1/admin/products", admin_token,
	                 product_body("IDEM-2", "Idem", 3), key);
	hc_reply_free(&r);
	r = expect(200, "GET", path_of("/api/v1/admin/products/", str(&first, "id"), NULL), admin_token, NULL,
	           NULL);
	cr_assert_str_eq(str(&r, "sku"), "IDEM-1");
	hc_reply_free(&r);
	free(create("IDEM-2", "Idem two", 1));
	cr_assert_eq(inventory_count(), 2);
	/* another key is another product (and its sku is taken) */
	r = expect(409, "POST", "/api/v1/admin/products", admin_token, product_body("IDEM-1", "Idem", 3),
	           "Idempotency-Key: another");
	hc_reply_free(&r);
	r = expect(400, "POST", "/api/v1/admin/products", admin_token, product_body("IDEM-5", "Idem", 3),
	           "Idempotency-Key: not valid!");
	cr_assert(has_error(&r, "Idempotency-Key"), "%s", r.body);
	hc_reply_free(&r);
	hc_reply_free(&first);
}

/* ---- inventory ------------------------------------------------------------ */

Test(api_admin, adjustments_change_stock_and_refuse_below_reserved)
{
	char *id = create("ADJ-1", "Adjusted", 5);
	const char *adjust = path_of("/api/v1/admin/inventory/", id, "/adjustments");
	char path[512];
	snprintf(path, sizeof path, "%s", adjust);
	reply r = expect(200, "POST", path, admin_token, "{\"delta\":10,\"reason\":\"delivery\"}", NULL);
	cr_assert_eq(num(r.json, "on_hand"), 15);
	cr_assert_eq(num(r.json, "reserved"), 0);
	cr_assert_eq(num(r.json, "available"), 15);
	cr_assert_eq(json_object_size(r.json), 5, "exactly the stock levels (StockLevels): %s", r.body);
	cr_assert_eq(num(r.json, "low_stock_threshold"), 5);
	cr_assert(json_is_false(json_object_get(r.json, "low")), "%s", r.body);
	hc_reply_free(&r);
	r = expect(200, "POST", path, admin_token, "{\"delta\":-4,\"reason\":\"damaged\"}", NULL);
	cr_assert_eq(num(r.json, "on_hand"), 11);
	cr_assert_eq(num(r.json, "available"), 11);
	hc_reply_free(&r);
	r = expect(200, "GET", path_of("/api/v1/admin/products/", id, NULL), admin_token, NULL, NULL);
	cr_assert_eq(num(r.json, "on_hand"), 11);
	hc_reply_free(&r);
	/* below zero (nothing is reserved yet: the floor is 0) */
	expect_problem(409, "POST", path, admin_token, "{\"delta\":-12,\"reason\":\"too many\"}");
	/* an Idempotency-Key makes a retried adjustment count once */
	r = expect(200, "POST", path, admin_token, "{\"delta\":1,\"reason\":\"found one\"}",
	           "Idempotency-Key: adj-1");
	cr_assert_eq(num(r.json, "on_hand"), 12);
	hc_reply_free(&r);
	r = expect(200, "POST", path, admin_token, "{\"delta\":1,\"reason\":\"found one\"}",
	           "Idempotency-Key: adj-1");
	cr_assert_eq(num(r.json, "on_hand"), 12);
	hc_reply_free(&r);
	/* reserve 8 of the 12 as an order would, straight on the bus */
	char url_path[600], url[128] = "";
	snprintf(url_path, sizeof url_path, "%s/nats.url", data_dir);
	FILE *f = fopen(url_path, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(url, sizeof url, f));
	fclose(f);
	url[strcspn(url, "\n")] = '\0';
	natsConnection *nc = tsc_connect_ops(url, data_dir);
	stock_command reserve = tsc_reserve("order-1:item", 8);
	bus_reply br;
	cr_assert_eq(tsc_send(nc, id, &reserve, "test-reserve-1", 10000, &br), ORN_OK);
	cr_assert_eq(br.outcome, BUS_ACCEPTED);
	bus_reply_dispose(&br);
	natsConnection_Destroy(nc);
	/* 12 - 5 = 7 < 8 reserved */
	expect_problem(409, "POST", path, admin_token, "{\"delta\":-5,\"reason\":\"recount\"}");
	r = expect(200, "POST", path, admin_token, "{\"delta\":-4,\"reason\":\"recount\"}", NULL);
	cr_assert_eq(num(r.json, "on_hand"), 8);
	cr_assert_eq(num(r.json, "reserved"), 8);
	cr_assert_eq(num(r.json, "available"), 0);
	hc_reply_free(&r);
	/* invalid bodies and unknown items */
	r = expect(400, "POST", path, admin_token, "{\"delta\":0,\"reason\":\"nothing\"}", NULL);
	cr_assert(has_error(&r, "delta"));
	hc_reply_free(&r);
	r = expect(400, "POST", path, admin_token, "{\"delta\":1,\"reason\":\"\",\"on_hand\":5}", NULL);
	cr_assert(has_error(&r, "reason") && has_error(&r, "on_hand"), "%s", r.body);
	hc_reply_free(&r);
	expect_problem(400, "POST", path, admin_token, "{\"delta\":1.5,\"reason\":\"x\"}");
	expect_problem(404, "POST", "/api/v1/admin/inventory/no-such-item/adjustments", admin_token,
	               "{\"delta\":1,\"reason\":\"x\"}");
	free(id);
}

Test(api_admin, inventory_lists_with_below_and_pages)
{
	char *ids[5];
	long long stocks[5] = {1, 50, 3, 80, 0};
	for (int i = 0; i < 5; i++) {
		char sku[16], name[16];
		snprintf(sku, sizeof sku, "INV-%d", i);
		snprintf(name, sizeof name, "Item %d", i);
		ids[i] = create(sku, name, stocks[i]);
	}
	/* below=5: the three low ones, with sku and name joined from the catalog */
	reply r = expect(200, "GET", "/api/v1/admin/inventory?below=5", admin_token, NULL, NULL);
	json_t *items = json_object_get(r.json, "items");
	cr_assert_eq(json_array_size(items), 3, "%s", r.body);
	cr_assert(json_is_null(json_object_get(r.json, "next_cursor")));
	size_t i;
	json_t *item;
	json_array_foreach(items, i, item)
	{
		cr_assert_lt(num(item, "available"), 5);
		const char *sku = json_string_value(json_object_get(item, "sku"));
		cr_assert(sku != NULL && strncmp(sku, "INV-", 4) == 0, "%s", r.body);
		cr_assert_not_null(json_string_value(json_object_get(item, "name")));
		cr_assert_not_null(json_string_value(json_object_get(item, "product_id")));
		num(item, "on_hand");
		num(item, "reserved");
		cr_assert_eq(num(item, "low_stock_threshold"), 5, "the configured default");
		cr_assert(json_is_true(json_object_get(item, "low")), "available below 5 is low: %s", r.body);
		cr_assert_eq(json_object_size(item), 8);
	}
	hc_reply_free(&r);
	/* pages of 2: 2 + 2 + 1, every id once */
	char cursor[256] = "", path[512];
	size_t seen = 0;
	for (int page = 0; page < 3; page++) {
		if (cursor[0] != '\0') {
			char *escaped = curl_easy_escape(NULL, cursor, 0);
			snprintf(path, sizeof path, "/api/v1/admin/inventory?limit=2&cursor=%s", escaped);
			curl_free(escaped);
		} else {
			snprintf(path, sizeof path, "/api/v1/admin/inventory?limit=2");
		}
		r = expect(200, "GET", path, admin_token, NULL, NULL);
		seen += json_array_size(json_object_get(r.json, "items"));
		json_t *next = json_object_get(r.json, "next_cursor");
		if (page < 2) {
			cr_assert(json_is_string(next), "page %d: %s", page, r.body);
			snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
		} else {
			cr_assert(json_is_null(next), "%s", r.body);
		}
		hc_reply_free(&r);
	}
	cr_assert_eq(seen, 5);
	/* a deleted product leaves the list */
	r = expect(204, "DELETE", path_of("/api/v1/admin/products/", ids[0], NULL), admin_token, NULL, NULL);
	hc_reply_free(&r);
	r = expect(200, "GET", "/api/v1/admin/inventory?below=5", admin_token, NULL, NULL);
	cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 2, "%s", r.body);
	hc_reply_free(&r);
	/* bad queries */
	static const char *const bad[] = {
	        "below=-1", "below=abc",           "limit=0",          "limit=101", "limit=",
	        "limit=2x", "cursor=not-a-cursor", "below=99999999999"};
	for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
		snprintf(path, sizeof path, "/api/v1/admin/inventory?%s", bad[b]);
		r = expect(400, "GET", path, admin_token, NULL, NULL);
		cr_assert_not_null(json_object_get(r.json, "errors"), "%s: %s", bad[b], r.body);
		hc_reply_free(&r);
	}
	for (int k = 0; k < 5; k++)
		free(ids[k]);
}

/* ---- what is refused ----------------------------------------------------------- */

Test(api_admin, every_route_needs_an_admin_token)
{
	char *id = create("AUTH-1", "Guarded", 4);
	char product[256], adjust[256];
	snprintf(product, sizeof product, "/api/v1/admin/products/%s", id);
	snprintf(adjust, sizeof adjust, "/api/v1/admin/inventory/%s/adjustments", id);
	const struct {
		const char *method, *path, *body;
	} routes[] = {
	        {"POST", "/api/v1/admin/products", product_body("AUTH-2", "Nope", 1)},
	        {"GET", product, NULL},
	        {"PATCH", product, "{\"name\":\"hacked\"}"},
	        {"DELETE", product, NULL},
	        {"GET", "/api/v1/admin/inventory", NULL},
	        {"POST", adjust, "{\"delta\":-4,\"reason\":\"theft\"}"},
	};
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		reply r = expect(403, routes[i].method, routes[i].path, customer_token, routes[i].body, NULL);
		hc_reply_free(&r);
		r = expect(401, routes[i].method, routes[i].path, NULL, routes[i].body, NULL);
		hc_reply_free(&r);
		r = expect(401, routes[i].method, routes[i].path, "not.a.token", routes[i].body, NULL);
		hc_reply_free(&r);
	}
	/* nothing changed */
	reply r = expect(200, "GET", product, admin_token, NULL, NULL);
	cr_assert_str_eq(str(&r, "name"), "Guarded");
	cr_assert_eq(num(r.json, "on_hand"), 4);
	hc_reply_free(&r);
	cr_assert_eq(inventory_count(), 1);
	free(id);
}

Test(api_admin, mass_assignment_and_invalid_input_are_refused)
{
	static const char *const extra[] = {"\"role\":\"admin\"", "\"id\":\"chosen-id\"",
	                                    "\"available\":999"};
	for (size_t i = 0; i < 3; i++) {
		char body[1024];
		snprintf(body, sizeof body,
		         "{\"sku\":\"MASS-%zu\",\"name\":\"Mass\",\"description\":\"\",\"price_cents\":1,"
		         "\"currency\":\"EUR\",\"category\":\"tests\",\"initial_stock\":1,%s}",
		         i, extra[i]);
		reply r = expect(400, "POST", "/api/v1/admin/products", admin_token, body, NULL);
		const char *field = i == 0 ? "role" : i == 1 ? "id" : "available";
		cr_assert(has_error(&r, field), "%s", r.body);
		hc_reply_free(&r);
	}
	expect_problem(404, "GET", "/api/v1/admin/products/chosen-id", admin_token, NULL);
	cr_assert_eq(inventory_count(), 0, "nothing was created");
	/* the mass-assigned skus are still free */
	free(create("MASS-0", "Mass", 1));

	/* field checks */
	reply r = expect(400, "POST", "/api/v1/admin/products", admin_token,
	                 "{\"sku\":\"bad sku!\",\"name\":\"\",\"description\":\"x\",\"price_cents\":-1,"
	                 "\"currency\":\"eur\",\"category\":\"Not A Slug\",\"initial_stock\":-5}",
	                 NULL);
	cr_assert(has_error(&r, "name") && has_error(&r, "price_cents") && has_error(&r, "currency") &&
	                  has_error(&r, "category") && has_error(&r, "initial_stock"),
	          "%s", r.body);
	hc_reply_free(&r);
	r = expect(400, "POST", "/api/v1/admin/products", admin_token, product_body("bad sku!", "Bad", 1),
	           NULL);
	cr_assert(has_error(&r, "sku"), "%s", r.body);
	hc_reply_free(&r);
	expect_problem(400, "POST", "/api/v1/admin/products", admin_token, "{\"sku\":\"MISSING\"}");
	expect_problem(400, "POST", "/api/v1/admin/products", admin_token, "not json");
	expect_problem(400, "POST", "/api/v1/admin/products", admin_token, "[1,2]");

	/* invalid ids in paths */
	static const char *const ids[] = {
	        "a.b",
	        "..%2Fx",
	        "%3Cscript%3E",
	        "x%20y",
	        "a*",
	        "%3E",
	        "a%22b",
	        "a%27b",
	        "orion.evt.%3E",
	        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		char path[256];
		snprintf(path, sizeof path, "/api/v1/admin/products/%s", ids[i]);
		expect_problem(400, "GET", path, admin_token, NULL);
		expect_problem(400, "PATCH", path, admin_token, "{\"name\":\"x\"}");
		expect_problem(400, "DELETE", path, admin_token, NULL);
		snprintf(path, sizeof path, "/api/v1/admin/inventory/%s/adjustments", ids[i]);
		expect_problem(400, "POST", path, admin_token, "{\"delta\":1,\"reason\":\"x\"}");
	}
	cr_assert_eq(inventory_count(), 1);
}

Test(api_admin, hostile_text_round_trips_as_valid_json_through_the_public_routes)
{
	/* Quotes, backslashes, markup, a newline, a tab-free control-free unicode
	 * mix and the largest price: the public routes write this JSON by hand. */
	const char *name = "Quote \\\" back\\\\slash <b>tag</b> & caf\\u00e9 \\u2603 \\ud83d\\ude00";
	const char *expected_name = "Quote \" back\\slash <b>tag</b> & caf\u00e9 \u2603 \U0001F600";
	const char *description = "line one\\nline two \\u0027single\\u0027 </script>";
	const char *expected_description = "line one\nline two 'single' </script>";
	char body[1024];
	snprintf(body, sizeof body,
	         "{\"sku\":\"HOSTILE-1\",\"name\":\"%s\",\"description\":\"%s\",\"price_cents\":10000000000,"
	         "\"currency\":\"EUR\",\"category\":\"tests\",\"initial_stock\":1000000000}",
	         name, description);
	reply created = expect(201, "POST", "/api/v1/admin/products", admin_token, body, NULL);
	char *id = strdup(str(&created, "id"));
	hc_reply_free(&created);
	reply detail = expect(200, "GET", path_of("/api/v1/products/", id, NULL), NULL, NULL, NULL);
	cr_assert_not_null(detail.json, "detail is valid JSON: %s", detail.body);
	cr_assert_str_eq(str(&detail, "name"), expected_name);
	cr_assert_str_eq(str(&detail, "description"), expected_description);
	cr_assert_eq(num(detail.json, "price_cents"), 10000000000LL);
	cr_assert_eq(num(detail.json, "available"), 1000000000LL);
	hc_reply_free(&detail);
	reply list = expect(200, "GET", "/api/v1/products?category=tests&limit=100", NULL, NULL, NULL);
	cr_assert_not_null(list.json, "list is valid JSON: %s", list.body);
	json_t *items = json_object_get(list.json, "items");
	bool found = false;
	for (size_t i = 0; i < json_array_size(items); i++) {
		json_t *item = json_array_get(items, i);
		if (strcmp(json_string_value(json_object_get(item, "id")), id) == 0) {
			found = true;
			cr_assert_str_eq(json_string_value(json_object_get(item, "name")), expected_name);
			cr_assert_str_eq(json_string_value(json_object_get(item, "description")),
			                 expected_description);
		}
	}
	cr_assert(found);
	hc_reply_free(&list);
	free(id);
}

/* Longer than any cursor a list writes (PROJ_CURSOR_MAX). */
#define LONG_CURSOR                                                                                          \
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" \
	"AAAAAAAAAAAAAAAAAAAAAA"

Test(api_admin, the_mail_log_is_for_admins_and_validates_its_query)
{
	reply r = expect(403, "GET", "/api/v1/admin/mail", customer_token, NULL, NULL);
	hc_reply_free(&r);
	r = expect(401, "GET", "/api/v1/admin/mail?status=failed", NULL, NULL, NULL);
	hc_reply_free(&r);

	r = expect(200, "GET", "/api/v1/admin/mail?status=failed&limit=5", admin_token, NULL, NULL);
	cr_assert(json_is_array(json_object_get(r.json, "items")), "%s", r.body);
	cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 0);
	cr_assert(json_is_null(json_object_get(r.json, "next_cursor")));
	hc_reply_free(&r);

	const struct {
		const char *query, *field;
	} bad[] = {
	        {"?status=sent", "status"},
	        {"?status=", "status"},
	        {"?order_id=o.1", "order_id"},
	        {"?limit=0", "limit"},
	        {"?limit=101", "limit"},
	        {"?limit=1x", "limit"},
	        {"?cursor=nope", "cursor"},
	        {"?order_id=", "order_id"},
	        {"?limit=", "limit"},
	        {"?cursor=" LONG_CURSOR, "cursor"},
	        {"?limit=0&status=x", "status"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char path[256];
		snprintf(path, sizeof path, "/api/v1/admin/mail%s", bad[i].query);
		r = expect(400, "GET", path, admin_token, NULL, NULL);
		cr_assert_not_null(strstr(r.body, "\"type\""), "problem body: %s", r.body);
		cr_assert(has_error(&r, bad[i].field), "%s: %s", bad[i].query, r.body);
		hc_reply_free(&r);
	}
}

/* ---- low-stock thresholds ------------------------------------------------- */

/* A product body with an explicit low_stock_threshold (raw JSON text). */
static char *product_body_with_threshold(const char *sku, long long stock, const char *threshold)
{
	static char body[1024];
	snprintf(body, sizeof body,
	         "{\"sku\":\"%s\",\"name\":\"T\",\"description\":\"\",\"price_cents\":100,"
	         "\"currency\":\"EUR\",\"category\":\"tests\",\"initial_stock\":%lld,"
	         "\"low_stock_threshold\":%s}",
	         sku, stock, threshold);
	return body;
}

static bool flag(const json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);
	cr_assert(json_is_boolean(v), "no boolean %s", name);
	return json_is_true(v);
}

Test(api_admin, a_product_shows_its_threshold_and_whether_it_is_low)
{
	reply r = expect(201, "POST", "/api/v1/admin/products", admin_token,
	                 product_body_with_threshold("LOW-1", 3, "10"), NULL);
	char *id = strdup(str(&r, "id"));
	cr_assert_eq(num(r.json, "low_stock_threshold"), 10, "%s", r.body);
	cr_assert(flag(r.json, "low"), "3 available is below 10: %s", r.body);
	hc_reply_free(&r);
	char *plain = create("LOW-2", "Plenty", 50); /* no threshold: ORION_LOW_STOCK_THRESHOLD (5) */
	r = expect(200, "GET", path_of("/api/v1/admin/products/", plain, NULL), admin_token, NULL, NULL);
	cr_assert_eq(num(r.json, "low_stock_threshold"), 5, "%s", r.body);
	cr_assert_not(flag(r.json, "low"));
	hc_reply_free(&r);
	r = expect(200, "GET", path_of("/api/v1/admin/products/", id, NULL), admin_token, NULL, NULL);
	cr_assert_eq(num(r.json, "low_stock_threshold"), 10, "%s", r.body);
	cr_assert(flag(r.json, "low"));
	hc_reply_free(&r);
	free(plain);
	free(id);
}

Test(api_admin, patch_sets_the_threshold_alone_or_with_other_fields)
{
	char *id = create("LOW-3", "Patchable", 8);
	reply r = expect(200, "PATCH", path_of("/api/v1/admin/products/", id, NULL), admin_token,
	                 "{\"low_stock_threshold\":9}", NULL);
	cr_assert_eq(num(r.json, "low_stock_threshold"), 9, "%s", r.body);
	cr_assert(flag(r.json, "low"), "8 available is below 9: %s", r.body);
	hc_reply_free(&r);
	r = expect(200, "PATCH", path_of("/api/v1/admin/products/", id, NULL), admin_token,
	           "{\"name\":\"Renamed\",\"low_stock_threshold\":2}", NULL);
	cr_assert_str_eq(str(&r, "name"), "Renamed");
	cr_assert_eq(num(r.json, "low_stock_threshold"), 2, "%s", r.body);
	cr_assert_not(flag(r.json, "low"), "re-armed: %s", r.body);
	hc_reply_free(&r);
	r = expect(200, "GET", path_of("/api/v1/admin/products/", id, NULL), admin_token, NULL, NULL);
	cr_assert_str_eq(str(&r, "name"), "Renamed");
	cr_assert_eq(num(r.json, "low_stock_threshold"), 2);
	hc_reply_free(&r);
	r = expect(200, "PATCH", path_of("/api/v1/admin/products/", id, NULL), admin_token,
	           "{\"low_stock_threshold\":2}", NULL); /* the same again: no change, 200 */
	cr_assert_eq(num(r.json, "low_stock_threshold"), 2);
	hc_reply_free(&r);
	expect_problem(404, "PATCH", "/api/v1/admin/products/no-such-product", admin_token,
	               "{\"low_stock_threshold\":2}");
	free(id);
}

Test(api_admin, a_threshold_that_is_not_a_non_negative_integer_is_422)
{
	const char *bad[] = {"-1", "\"5\"", "1.5", "true", "null", "1000000001"};
	char *id = create("LOW-4", "Strict", 8);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char sku[16], body[64];
		snprintf(sku, sizeof sku, "LOW-BAD-%zu", i);
		reply r = expect(422, "POST", "/api/v1/admin/products", admin_token,
		                 product_body_with_threshold(sku, 1, bad[i]), NULL);
		cr_assert(has_error(&r, "low_stock_threshold"), "%s: %s", bad[i], r.body);
		cr_assert_eq(num(r.json, "status"), 422);
		hc_reply_free(&r);
		snprintf(body, sizeof body, "{\"low_stock_threshold\":%s}", bad[i]);
		r = expect(422, "PATCH", path_of("/api/v1/admin/products/", id, NULL), admin_token, body,
		           NULL);
		cr_assert(has_error(&r, "low_stock_threshold"), "%s: %s", bad[i], r.body);
		hc_reply_free(&r);
	}
	reply r = expect(404, "GET", "/api/v1/admin/products/p-none", admin_token, NULL, NULL);
	hc_reply_free(&r);
	r = expect(200, "GET", path_of("/api/v1/admin/products/", id, NULL), admin_token, NULL, NULL);
	cr_assert_eq(num(r.json, "low_stock_threshold"), 5, "unchanged by the refused PATCHes");
	hc_reply_free(&r);
	expect_problem(401, "PATCH", path_of("/api/v1/admin/products/", id, NULL), NULL,
	               "{\"low_stock_threshold\":-1}");
	expect_problem(403, "PATCH", path_of("/api/v1/admin/products/", id, NULL), customer_token,
	               "{\"low_stock_threshold\":-1}");
	free(id);
}

Test(api_admin, below_filters_on_available_whatever_the_thresholds)
{
	/* a high threshold makes an item low, not "below": the query is unchanged */
	reply r = expect(201, "POST", "/api/v1/admin/products", admin_token,
	                 product_body_with_threshold("BELOW-1", 40, "100"), NULL);
	char *high = strdup(str(&r, "id"));
	hc_reply_free(&r);
	r = expect(201, "POST", "/api/v1/admin/products", admin_token,
	           product_body_with_threshold("BELOW-2", 2, "0"), NULL);
	char *none = strdup(str(&r, "id"));
	hc_reply_free(&r);
	r = expect(200, "GET", "/api/v1/admin/inventory?below=10", admin_token, NULL, NULL);
	json_t *items = json_object_get(r.json, "items");
	cr_assert_eq(json_array_size(items), 1, "%s", r.body);
	json_t *item = json_array_get(items, 0);
	cr_assert_str_eq(json_string_value(json_object_get(item, "product_id")), none);
	cr_assert_eq(num(item, "available"), 2);
	cr_assert_eq(num(item, "low_stock_threshold"), 0);
	cr_assert_not(flag(item, "low"), "threshold 0 is never low");
	hc_reply_free(&r);
	r = expect(200, "GET", "/api/v1/admin/inventory", admin_token, NULL, NULL);
	items = json_object_get(r.json, "items");
	cr_assert_eq(json_array_size(items), 2, "%s", r.body);
	size_t i;
	json_array_foreach(items, i, item)
	{
		bool is_high = strcmp(json_string_value(json_object_get(item, "product_id")), high) == 0;
		cr_assert_eq(flag(item, "low"), is_high, "%s", r.body);
	}
	hc_reply_free(&r);
	free(high);
	free(none);
}

/* ADR 015: an adjustment's Idempotency-Key is kept in the item's own ledger,
 * not by the server's 2-minute window of message ids: after other commits
 * moved the item on (a resend would carry another message id), the same key
 * still counts once, and the key with another delta is refused. */
Test(api_admin, an_adjustment_key_holds_after_the_item_moved_on)
{
	char *id = create("ADJ-KEY", "Keyed", 10);
	char path[512];
	snprintf(path, sizeof path, "%s", path_of("/api/v1/admin/inventory/", id, "/adjustments"));
	reply r = expect(200, "POST", path, admin_token, "{\"delta\":1,\"reason\":\"found\"}",
	                 "Idempotency-Key: k-1");
	cr_assert_eq(num(r.json, "on_hand"), 11);
	hc_reply_free(&r);
	r = expect(200, "POST", path, admin_token, "{\"delta\":2,\"reason\":\"delivery\"}", NULL);
	cr_assert_eq(num(r.json, "on_hand"), 13);
	hc_reply_free(&r);
	/* the same request again (the key re-serialised: keys in another order) */
	r = expect(200, "POST", path, admin_token, "{\"reason\":\"found\",\"delta\":1}",
	           "Idempotency-Key: k-1");
	cr_assert_eq(num(r.json, "on_hand"), 13, "a retry counts once: %s", r.body);
	hc_reply_free(&r);
	r = expect(422, "POST", path, admin_token, "{\"delta\":5,\"reason\":\"found\"}",
	           "Idempotency-Key: k-1");
	hc_reply_free(&r);
	r = expect(200, "GET", path_of("/api/v1/admin/products/", id, NULL), admin_token, NULL, NULL);
	cr_assert_eq(num(r.json, "on_hand"), 13);
	hc_reply_free(&r);
}
