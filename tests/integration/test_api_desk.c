/* test_api_desk.c — the admin order desk's reads (gateway/gw_api_desk.c, ADR
 * 029) through a real `orion serve` (embedded nats-server, the bundled
 * payment sandbox) on a free loopback port, driven with libcurl.
 *
 * Given two customers' orders, one of them paid with a card tokenized at the
 * sandbox (as a browser does) and shipped: GET /admin/orders newest first,
 * each filter alone and combined (status, customer_email by exact address,
 * an unknown address is an empty list, since/until), a page at a time, and
 * 400 naming the field of a bad parameter; GET /admin/orders/{id} with the
 * customer and the timeline of the paid and shipped order across
 * aggregates, in stream order; GET /admin/customers newest first and by
 * exact address; an erased customer shown "erased" without email or name;
 * and a customer's token refused (403) on every route. One server per test. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_jwt.h"
#include "harness.h"
#include "http_client.h"
#include "order.h"
#include "order_token.h"

#define ADMIN_EMAIL    "admin@orion.test"
#define ADMIN_PASSWORD "correct horse battery"

static char *data_dir;
static pid_t server_pid;
static char base_url[64];
static char admin_token[GW_JWT_MAX_TOKEN];

typedef hc_reply reply;

static reply call(const char *method, const char *path, const char *token, const char *body)
{
	return hc_call(base_url, method, path, token, body, 0, NULL, NULL, 45000L);
}

static reply expect(long status, const char *method, const char *path, const char *token, const char *body)
{
	reply r = call(method, path, token, body);
	cr_assert_eq(r.status, status, "%s %s: status %ld, expected %ld, body %s", method, path, r.status,
	             status, r.body);
	return r;
}

static const char *str(const json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));
	cr_assert_not_null(s, "no string %s", name);
	return s;
}

/* GET path as the admin must be 400 with an error naming field. */
static void expect_field_error(const char *path, const char *field)
{
	reply r = expect(400, "GET", path, admin_token, NULL);
	const char *named = json_string_value(
	        json_object_get(json_array_get(json_object_get(r.json, "errors"), 0), "field"));
	cr_assert(named != NULL && strcmp(named, field) == 0, "%s names %s: %s", path, field, r.body);
	hc_reply_free(&r);
}

static void start(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	data_dir = th_tempdir("api-desk");
	const char *env[] = {"ORION_ADMIN_EMAIL=" ADMIN_EMAIL,
	                     "ORION_ADMIN_PASSWORD=" ADMIN_PASSWORD,
	                     "ORION_NATS_URL=",
	                     "ORION_JWT_SECRET=",
	                     "ORION_PSP_URL=",
	                     "ORION_LOG_LEVEL=warn",
	                     NULL};
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, NULL);
	for (int waited = 0; waited < 15000; waited += 100) {
		reply r = call("POST", "/api/v1/auth/login", NULL,
		               "{\"email\":\"" ADMIN_EMAIL "\",\"password\":\"" ADMIN_PASSWORD "\"}");
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

static void stop(void)
{
	hc_serve_teardown(&server_pid, &data_dir);
	curl_global_cleanup();
}

TestSuite(api_desk, .init = start, .fini = stop, .timeout = 180);

/* ---- helpers over the API (as test_api_payment.c) ------------------------- */

typedef struct customer {
	char token[GW_JWT_MAX_TOKEN];
	char id[65];
} customer;

static customer sign_up(const char *email, const char *name)
{
	customer c;
	hc_sign_up(base_url, email, "a long password", name, c.token, sizeof c.token, c.id, sizeof c.id);
	return c;
}

static void create_product(const char *sku, char out[65])
{
	char body[512];
	snprintf(body, sizeof body,
	         "{\"sku\":\"%s\",\"name\":\"Mug\",\"description\":\"A test product.\",\"price_cents\":1250,"
	         "\"currency\":\"EUR\",\"category\":\"tests\",\"initial_stock\":1000}",
	         sku);
	reply r = expect(201, "POST", "/api/v1/admin/products", admin_token, body);
	snprintf(out, 65, "%s", str(r.json, "id"));
	hc_reply_free(&r);
}

static void place(const customer *c, const char *product, char id[65])
{
	char body[160];
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", product);
	reply r = expect(200, "POST", "/api/v1/cart/items", c->token, body);
	hc_reply_free(&r);
	r = expect(202, "POST", "/api/v1/orders", c->token, "{}");
	snprintf(id, 65, "%s", str(r.json, "id"));
	hc_reply_free(&r);
}

static bool wait_status(const customer *c, const char *id, const char *want, int timeout_ms)
{
	char path[200];
	snprintf(path, sizeof path, "/api/v1/orders/%s", id);
	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		reply r = expect(200, "GET", path, c->token, NULL);
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

/* Confirms order id by its token, pays it with 4242 and ships it. */
static void pay_and_ship(const customer *c, const char *id)
{
	char path[200], body[300], token[ORDER_TOKEN_MAX], pm[128];
	cr_assert(wait_status(c, id, "awaiting_confirmation", 20000), "the saga did not reserve %s", id);
	token_for(id, token);
	snprintf(body, sizeof body, "{\"token\":\"%s\"}", token);
	snprintf(path, sizeof path, "/api/v1/orders/%s/confirm", id);
	reply r = expect(200, "POST", path, NULL, body);
	hc_reply_free(&r);
	hc_tokenize(base_url, "4242424242424242", pm);
	snprintf(body, sizeof body, "{\"payment_method\":\"%s\"}", pm);
	snprintf(path, sizeof path, "/api/v1/orders/%s/payment", id);
	r = expect(200, "POST", path, c->token, body);
	cr_assert_str_eq(str(r.json, "status"), "confirmed");
	hc_reply_free(&r);
	snprintf(path, sizeof path, "/api/v1/admin/orders/%s/ship", id);
	r = expect(200, "POST", path, admin_token, "{\"carrier\":\"DHL\",\"tracking_number\":\"JD0001\"}");
	cr_assert_str_eq(str(r.json, "status"), "shipped");
	hc_reply_free(&r);
}

/* The ids of GET path's items, comma-separated, into out. */
static void ids_of(const char *path, char *out, size_t cap)
{
	reply r = expect(200, "GET", path, admin_token, NULL);
	size_t i, used = 0;
	json_t *item;
	out[0] = '\0';
	json_array_foreach(json_object_get(r.json, "items"), i, item) used +=
	        (size_t)snprintf(out + used, cap - used, "%s%s", i > 0 ? "," : "", str(item, "id"));
	hc_reply_free(&r);
}

/* Waits until GET path lists exactly want (ids, comma-separated). */
static void expect_ids(const char *path, const char *want)
{
	char got[1024] = "";
	for (int waited = 0; waited <= 10000; waited += 100) {
		ids_of(path, got, sizeof got);
		if (strcmp(got, want) == 0)
			return;
		usleep(100 * 1000);
	}
	cr_assert_fail("%s lists [%s], expected [%s]", path, got, want);
}

/* The item of id in GET path (a new reference), or NULL. */
static json_t *item_of(const char *path, const char *id)
{
	reply r = expect(200, "GET", path, admin_token, NULL);
	size_t i;
	json_t *item, *found = NULL;
	json_array_foreach(json_object_get(r.json, "items"), i, item) if (strcmp(str(item, "id"), id) == 0)
	        found = json_incref(item);
	hc_reply_free(&r);
	return found;
}

/* ---- the tests ------------------------------------------------------------ */

Test(api_desk, orders_filtered_paged_with_their_customers_and_a_timeline)
{
	char mug[65], o1[65], o2[65], o3[65], path[600], want[300], got[1024];
	create_product("DESK-1", mug);
	customer ann = sign_up("ann@desk.test", "Ann Example");
	customer bob = sign_up("bob@desk.test", "Bob Example");
	place(&ann, mug, o1);
	cr_assert(wait_status(&ann, o1, "awaiting_confirmation", 20000));
	place(&bob, mug, o2);
	cr_assert(wait_status(&bob, o2, "awaiting_confirmation", 20000));
	place(&ann, mug, o3);
	pay_and_ship(&ann, o3);

	/* newest first, every customer */
	snprintf(want, sizeof want, "%s,%s,%s", o3, o2, o1);
	expect_ids("/api/v1/admin/orders", want);
	json_t *item = item_of("/api/v1/admin/orders", o3);
	cr_assert_not_null(item);
	cr_assert_str_eq(str(item, "status"), "shipped");
	cr_assert_eq(json_integer_value(json_object_get(item, "total_cents")), 1250);
	cr_assert_str_eq(str(json_object_get(item, "customer"), "id"), ann.id);
	cr_assert_str_eq(str(json_object_get(item, "customer"), "email"), "ann@desk.test");
	json_decref(item);

	/* filters, alone and combined */
	snprintf(want, sizeof want, "%s,%s", o3, o1);
	expect_ids("/api/v1/admin/orders?customer_email=ann@desk.test", want);
	expect_ids("/api/v1/admin/orders?customer_email=ANN@desk.test", want); /* normalized as login does */
	expect_ids("/api/v1/admin/orders?status=shipped", o3);
	expect_ids("/api/v1/admin/orders?status=awaiting_confirmation&customer_email=ann@desk.test", o1);
	expect_ids("/api/v1/admin/orders?status=shipped&customer_email=bob@desk.test", "");
	expect_ids("/api/v1/admin/orders?customer_email=nobody@desk.test", ""); /* not an error */
	expect_ids("/api/v1/admin/orders?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00%2B01:00", "");
	snprintf(want, sizeof want, "%s,%s,%s", o3, o2, o1);
	expect_ids("/api/v1/admin/orders?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00.5Z", want);

	/* a page at a time */
	char cursor[200] = "", collected[300] = "";
	for (int page = 0; page < 4; page++) {
		snprintf(path, sizeof path, "/api/v1/admin/orders?limit=1%s%s", cursor[0] ? "&cursor=" : "",
		         cursor);
		reply r = expect(200, "GET", path, admin_token, NULL);
		json_t *items = json_object_get(r.json, "items"),
		       *next = json_object_get(r.json, "next_cursor");
		cr_assert_eq(json_array_size(items), 1, "page %d: %s", page, r.body);
		size_t used = strlen(collected);
		snprintf(collected + used, sizeof collected - used, "%s%s", page > 0 ? "," : "",
		         str(json_array_get(items, 0), "id"));
		bool last = json_is_null(next);
		if (!last)
			snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
		hc_reply_free(&r);
		if (last) {
			cr_assert_eq(page, 2, "three pages");
			break;
		}
	}
	cr_assert_str_eq(collected, want);

	/* bad parameters name their field */
	expect_field_error("/api/v1/admin/orders?status=lost", "status");
	expect_field_error("/api/v1/admin/orders?since=yesterday", "since");
	expect_field_error("/api/v1/admin/orders?until=2026-02-30T00:00:00Z", "until");
	expect_field_error("/api/v1/admin/orders?customer_email=not-an-address", "customer_email");
	expect_field_error("/api/v1/admin/orders?limit=0", "limit");
	expect_field_error("/api/v1/admin/orders?cursor=bogus", "cursor");

	/* one order: the customer's view, its customer, its story across aggregates */
	snprintf(path, sizeof path, "/api/v1/admin/orders/%s", o3);
	reply r = expect(200, "GET", path, admin_token, NULL);
	cr_assert_str_eq(str(r.json, "id"), o3);
	cr_assert_str_eq(str(r.json, "status"), "shipped");
	cr_assert_not_null(json_object_get(r.json, "history"));
	cr_assert_str_eq(str(json_object_get(r.json, "customer"), "email"), "ann@desk.test");
	json_t *timeline = json_object_get(r.json, "timeline"), *e;
	size_t i;
	long long last_seq = 0;
	bool placed = false, paid = false, shipped = false, stock = false, payment = false, holds = false,
	     cart = false, mail = false;
	cr_assert_gt(json_array_size(timeline), 4, "%s", r.body);
	json_array_foreach(timeline, i, e)
	{
		long long seq = json_integer_value(json_object_get(e, "seq"));
		const char *type = str(e, "type"), *aggregate = str(e, "aggregate");
		cr_assert_geq(seq, last_seq, "stream order: %s", r.body);
		last_seq = seq;
		cr_assert_not_null(json_string_value(json_object_get(e, "at")));
		cr_assert_not_null(json_string_value(json_object_get(e, "summary")));
		placed |= strcmp(type, "OrderPlaced") == 0;
		paid |= strcmp(type, "OrderPaid") == 0;
		shipped |= strcmp(type, "OrderShipped") == 0;
		stock |= strcmp(aggregate, "stock") == 0;
		payment |= strcmp(aggregate, "payment") == 0;
		holds |= strcmp(aggregate, "holds") == 0;
		cart |= strcmp(type, "CartCheckedOut") == 0;
		mail |= strcmp(type, "MailDelivered") == 0;
	}
	cr_assert(placed && paid && shipped, "the order's own events: %s", r.body);
	cr_assert(stock, "its stock reservation: %s", r.body);
	cr_assert(payment, "its payment: %s", r.body);
	cr_assert(holds, "its hold, opened before it was placed: %s", r.body);
	cr_assert(cart, "the cart's checkout: %s", r.body);
	cr_assert(mail, "the mail log of its emails: %s", r.body);
	cr_assert_null(strstr(r.body, "4242424242424242"));
	hc_reply_free(&r);
	r = expect(404, "GET", "/api/v1/admin/orders/no-such-order", admin_token, NULL);
	hc_reply_free(&r);

	/* a customer is refused on every desk route */
	const char *routes[] = {"/api/v1/admin/orders", path, "/api/v1/admin/customers"};
	for (size_t k = 0; k < 3; k++) {
		r = expect(403, "GET", routes[k], ann.token, NULL);
		hc_reply_free(&r);
		r = expect(401, "GET", routes[k], NULL, NULL);
		hc_reply_free(&r);
	}

	/* customers: newest first, by exact address, with their order counts */
	snprintf(want, sizeof want, "%s,%s", bob.id, ann.id);
	ids_of("/api/v1/admin/customers?limit=2", got, sizeof got);
	cr_assert_str_eq(got, want);
	expect_ids("/api/v1/admin/customers?q=ann@desk.test", ann.id);
	expect_ids("/api/v1/admin/customers?q=nobody@desk.test", "");
	expect_field_error("/api/v1/admin/customers?q=Ann", "q");
	item = item_of("/api/v1/admin/customers", ann.id);
	cr_assert_not_null(item);
	cr_assert_str_eq(str(item, "email"), "ann@desk.test");
	cr_assert_str_eq(str(item, "name"), "Ann Example");
	cr_assert_str_eq(str(item, "status"), "active");
	cr_assert_eq(json_integer_value(json_object_get(item, "order_count")), 2);
	cr_assert_not_null(json_string_value(json_object_get(item, "created_at")));
	json_decref(item);

	/* an erased customer: no email, no name, status erased; the orders stay */
	snprintf(path, sizeof path, "/api/v1/admin/customers/%s/erase", bob.id);
	r = expect(204, "POST", path, admin_token, NULL);
	hc_reply_free(&r);
	bool erased = false;
	for (int waited = 0; !erased && waited <= 15000; waited += 100) {
		item = item_of("/api/v1/admin/customers", bob.id);
		cr_assert_not_null(item);
		erased = strcmp(str(item, "status"), "erased") == 0;
		if (erased) {
			cr_assert(json_is_null(json_object_get(item, "email")));
			cr_assert(json_is_null(json_object_get(item, "name")));
		}
		json_decref(item);
		if (!erased)
			usleep(100 * 1000);
	}
	cr_assert(erased, "bob is shown erased");
	item = item_of("/api/v1/admin/orders", o2);
	cr_assert_not_null(item);
	cr_assert(json_is_null(json_object_get(json_object_get(item, "customer"), "email")));
	cr_assert_str_eq(str(json_object_get(item, "customer"), "id"), bob.id);
	json_decref(item);
	expect_ids("/api/v1/admin/orders?customer_email=bob@desk.test",
	           ""); /* the address leads nowhere now */
	expect_ids("/api/v1/admin/customers?q=bob@desk.test", "");

	/* SIGTERM, and the exit code must be 0 (under ASan: no error, no leak either) */
	int code = hc_serve_stop(server_pid);
	server_pid = 0;
	cr_assert_eq(code, 0, "serve exited with %d", code);
}
