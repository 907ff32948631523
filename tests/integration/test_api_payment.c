/* test_api_payment.c — POST /api/v1/orders/{id}/payment (gateway/
 * gw_api_payment.c) and the card guard of every route (gw_api.c, ADR 028)
 * through a real `orion serve` (embedded nats-server) on a free loopback
 * port, driven with libcurl.
 *
 * Without the payment service: login (401), owner only (404), the id, the
 * Idempotency-Key and the strict body {payment_method} (400, 413, 415),
 * card data refused on any route (400 card_data_refused, in no log line), a
 * cancelled order (409), and no payment service serving (503, the order
 * untouched). With it: a payment before the order awaits payment (409), an
 * unknown payment method (400, nothing charged), a card tokenized at the
 * provider's sandbox as a browser does (GET /payments/config, POST
 * /v1/payment_methods) and approved (200 confirmed, replayed for the same
 * key, 422 for the same key with another method, 409 for another key), a
 * declined one (200 payment_failed with the reason) and an order above the
 * provider's limit (422, still payable, no attempt left open).
 *
 * Against a fake payment service on the bus (suite api_payment_fake): five
 * requests at once with one Idempotency-Key are one Pay command and one
 * answer, the command id and payload follow ADR 028, a later retry is
 * replayed without a command, the service's answers map to statuses
 * (requires_action: 200 with the provider's page, not replayed), and the
 * provider's signed webhooks become PspEvent requests (the signature
 * checked, a redelivery the same command, 503 when it cannot be recorded).
 *
 * One server per test, stopped in .fini. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "bus-internal.h"
#include "bus.h"
#include "gw_jwt.h"
#include "harness.h"
#include "http_client.h"
#include "order.h"
#include "order_token.h"

#include <sodium.h>

#define ADMIN_EMAIL    "admin@orion.test"
#define ADMIN_PASSWORD "correct horse battery"
/* every role of issue 4: no payment service */
#define ROLES_WITHOUT_PAYMENT "stock,product,user,cart,order,checkout,projector,gateway,mail"

static char *data_dir;
static pid_t server_pid;
static char base_url[64];
static char admin_token[GW_JWT_MAX_TOKEN];

/* ---- a small curl client ------------------------------------------------ */

typedef hc_reply reply;

/* method path with an optional bearer token, body of content_type (JSON when
 * NULL) and one extra header. */
static reply call_as(const char *method, const char *path, const char *token, const char *body,
                     const char *content_type, const char *extra_header)
{
	reply r = hc_call(base_url, method, path, token, body, 0, content_type, extra_header, 45000L);
	return r;
}

static reply call(const char *method, const char *path, const char *token, const char *body,
                  const char *extra_header)
{
	return call_as(method, path, token, body, NULL, extra_header);
}

static reply expect(long status, const char *method, const char *path, const char *token, const char *body,
                    const char *extra_header)
{
	reply r = call(method, path, token, body, extra_header);
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

/* The field of the first entry of a problem's errors, or "". */
static const char *first_error_field(const reply *r)
{
	json_t *errors = json_object_get(r->json, "errors");
	const char *field = json_string_value(json_object_get(json_array_get(errors, 0), "field"));
	return field != NULL ? field : "";
}

/* A problem answer of status that echoes no card data of body. */
static reply expect_problem(long status, const char *path, const char *token, const char *body,
                            const char *extra_header)
{
	reply r = expect(status, "POST", path, token, body, extra_header);
	cr_assert_not_null(r.json, "problem body: %s", r.body);
	cr_assert_str_eq(hc_header(&r, "Content-Type"), "application/problem+json");
	cr_assert_eq(json_integer_value(json_object_get(r.json, "status")), status);
	cr_assert_null(strstr(r.body, "4242424242424242"), "card number echoed: %s", r.body);
	cr_assert_null(strstr(r.body, "4000000000000002"), "card number echoed: %s", r.body);
	cr_assert_null(strstr(r.body, "\"737\""), "cvc echoed: %s", r.body);
	return r;
}

/* ---- the server ---------------------------------------------------------- */

static natsd *nats; /* the fake-service suite's own nats-server, or NULL */

static void start(const char *roles)
{
	char nats_env[128] = "ORION_NATS_URL=";
	curl_global_init(CURL_GLOBAL_DEFAULT);
	data_dir = th_tempdir("api-payment");
	if (nats != NULL)
		snprintf(nats_env, sizeof nats_env, "ORION_NATS_URL=%s", natsd_url(nats));
	const char *with_roles[] = {"--roles", roles, NULL};
	const char *env[] = {"ORION_ADMIN_EMAIL=" ADMIN_EMAIL,
	                     "ORION_ADMIN_PASSWORD=" ADMIN_PASSWORD,
	                     nats_env,
	                     "ORION_JWT_SECRET=",
	                     "ORION_PSP_URL=",
	                     "ORION_LOG_LEVEL=warn",
	                     NULL};
	server_pid = hc_serve_start(data_dir, roles != NULL ? with_roles : NULL, env, base_url,
	                            sizeof base_url, NULL);
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

static void start_all(void)
{
	start(NULL);
}

static void start_without_payment(void)
{
	start(ROLES_WITHOUT_PAYMENT);
}

static void stop_server(void)
{
	hc_serve_teardown(&server_pid, &data_dir);
	th_natsd_stop(nats);
	nats = NULL;
	curl_global_cleanup();
}

TestSuite(api_payment, .init = start_all, .fini = stop_server, .timeout = 120);
TestSuite(api_payment_unserved, .init = start_without_payment, .fini = stop_server, .timeout = 120);

/* Whether `orion serve --help` lists the payment role (in the usage text,
 * before the environment variables). */
static bool has_payment(void)
{
	char command[600], line[512];
	bool found = false, in_usage = true;
	snprintf(command, sizeof command, "'%s' serve --help 2>/dev/null", th_orion_bin());
	FILE *p = popen(command, "r");
	cr_assert_not_null(p);
	while (fgets(line, sizeof line, p) != NULL) {
		if (strncmp(line, "Environment", 11) == 0)
			in_usage = false;
		found |= in_usage && strstr(line, "payment") != NULL;
	}
	pclose(p);
	return found;
}

/* SIGTERM, and the exit code must be 0 (under ASan: no leak either). */
static void stop_cleanly(void)
{
	int code = hc_serve_stop(server_pid);
	server_pid = 0;
	cr_assert_eq(code, 0, "serve exited with %d", code);
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

static void create_product(const char *sku, long long price, char out[65])
{
	char body[512];
	snprintf(body, sizeof body,
	         "{\"sku\":\"%s\",\"name\":\"Mug\",\"description\":\"A test product.\",\"price_cents\":%lld,"
	         "\"currency\":\"EUR\",\"category\":\"tests\",\"initial_stock\":1000}",
	         sku, price);
	reply r = expect(201, "POST", "/api/v1/admin/products", admin_token, body, NULL);
	snprintf(out, 65, "%s", str(r.json, "id"));
	hc_reply_free(&r);
}

/* Puts quantity of product in the cart and places an order; copies its id. */
static void place(const customer *c, const char *product, int quantity, char id[65])
{
	char body[160];
	snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":%d}", product, quantity);
	reply r = expect(200, "POST", "/api/v1/cart/items", c->token, body, NULL);
	hc_reply_free(&r);
	r = expect(202, "POST", "/api/v1/orders", c->token, "{}", NULL);
	snprintf(id, 65, "%s", str(r.json, "id"));
	hc_reply_free(&r);
}

static const char *status_of(const customer *c, const char *id)
{
	static char status[64];
	char path[200];
	snprintf(path, sizeof path, "/api/v1/orders/%s", id);
	reply r = expect(200, "GET", path, c->token, NULL, NULL);
	snprintf(status, sizeof status, "%s", str(r.json, "status"));
	hc_reply_free(&r);
	return status;
}

static bool wait_status(const customer *c, const char *id, const char *want, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		if (strcmp(status_of(c, id), want) == 0)
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

/* An order of c in awaiting_payment (placed, reserved, confirmed by token). */
static void awaiting_payment(const customer *c, const char *product, char id[65])
{
	char path[200], body[200], token[ORDER_TOKEN_MAX];
	place(c, product, 2, id);
	cr_assert(wait_status(c, id, "awaiting_confirmation", 20000), "the saga did not reserve the order");
	token_for(id, token);
	snprintf(body, sizeof body, "{\"token\":\"%s\"}", token);
	snprintf(path, sizeof path, "/api/v1/orders/%s/confirm", id);
	reply r = expect(200, "POST", path, NULL, body, NULL);
	cr_assert_str_eq(str(r.json, "status"), "awaiting_payment");
	hc_reply_free(&r);
}

/* {"payment_method":"<id>"}. */
static void pm_body(char *out, size_t cap, const char *method)
{
	snprintf(out, cap, "{\"payment_method\":\"%s\"}", method);
}

static void pay_path(char *out, size_t cap, const char *id)
{
	snprintf(out, cap, "/api/v1/orders/%s/payment", id);
}

/* {"payment_method": <a token of number>}. */
static void card_token_body(char *out, size_t cap, const char *number)
{
	char pm[128];
	hc_tokenize(base_url, number, pm);
	pm_body(out, cap, pm);
}

/* ---- without the payment service ------------------------------------------------ */

Test(api_payment, login_owner_id_key_and_a_strict_body_are_checked_first)
{
	char mug[65], id[65], path[200], body[512];
	create_product("PAY-1", 1250, mug);
	customer me = sign_up("payer@orion.test"), other = sign_up("other-payer@orion.test");
	place(&me, mug, 1, id);
	pay_path(path, sizeof path, id);
	pm_body(body, sizeof body, "pm_any");

	reply r = expect_problem(401, path, NULL, body, NULL);
	cr_assert_not_null(hc_header(&r, "WWW-Authenticate"));
	hc_reply_free(&r);
	r = expect_problem(401, path, "not-a-token", body, NULL);
	hc_reply_free(&r);
	/* somebody else's order and an unknown one look the same */
	r = expect_problem(404, path, other.token, body, NULL);
	hc_reply_free(&r);
	r = expect_problem(404, "/api/v1/orders/o-does-not-exist/payment", me.token, body, NULL);
	hc_reply_free(&r);
	r = expect_problem(400, "/api/v1/orders/a.b/payment", me.token, body, NULL);
	hc_reply_free(&r);
	/* the Idempotency-Key header: 1..128 printable ASCII */
	r = expect_problem(400, path, me.token, body, "Idempotency-Key;");
	cr_assert_str_eq(first_error_field(&r), "Idempotency-Key");
	hc_reply_free(&r);
	char long_key[200] = "Idempotency-Key: ";
	memset(long_key + strlen(long_key), 'k', 129);
	r = expect_problem(400, path, me.token, body, long_key);
	hc_reply_free(&r);

	/* the body: JSON, small, exactly {payment_method} */
	r = call_as("POST", path, me.token, body, "text/plain", NULL);
	cr_assert_eq(r.status, 415, "%s", r.body);
	hc_reply_free(&r);
	char *big = malloc(8192);
	cr_assert_not_null(big);
	snprintf(big, 8192, "{\"payment_method\":\"pm_%05000d\"}", 0);
	r = expect_problem(413, path, me.token, big, NULL);
	hc_reply_free(&r);
	free(big);
	r = expect_problem(400, path, me.token, "{}", NULL);
	cr_assert_str_eq(first_error_field(&r), "payment_method");
	hc_reply_free(&r);
	r = expect_problem(400, path, me.token, "not json", NULL);
	hc_reply_free(&r);
	r = expect_problem(400, path, me.token, "", NULL);
	hc_reply_free(&r);
	r = expect_problem(400, path, me.token, "{\"payment_method\":7}", NULL);
	cr_assert_str_eq(first_error_field(&r), "payment_method");
	hc_reply_free(&r);
	r = expect_problem(400, path, me.token, "{\"payment_method\":\"pm 1\"}", NULL);
	cr_assert_str_eq(first_error_field(&r), "payment_method");
	hc_reply_free(&r);
	/* mass assignment: no amount, currency or status from the client */
	r = expect_problem(400, path, me.token, "{\"amount_cents\":1,\"payment_method\":\"pm_1\"}", NULL);
	cr_assert_str_eq(first_error_field(&r), "amount_cents");
	hc_reply_free(&r);

	/* card data: refused before anything reads it, and never echoed */
	static const char *const with_card[] = {
	        "{\"card\":{\"number\":\"4242424242424242\",\"exp_month\":12,\"exp_year\":2030,"
	        "\"cvc\":\"737\",\"holder_name\":\"Ada\"}}",
	        "{\"payment_method\":\"pm_1\",\"card\":{}}",
	        "{\"payment_method\":\"4242424242424242\"}",
	        "{\"payment_method\":\"pm_1\",\"note\":\"4242 4242 4242 4242\"}",
	        "{\"card\":{\"4242424242424242\":\"737\"}}",
	};
	for (size_t i = 0; i < sizeof with_card / sizeof *with_card; i++) {
		r = expect_problem(400, path, me.token, with_card[i], "Idempotency-Key: card-1");
		cr_assert_str_eq(str(r.json, "code"), "card_data_refused", "%s", r.body);
		hc_reply_free(&r);
	}
	/* on every route, whoever calls */
	r = expect_problem(400, "/api/v1/cart/items", me.token,
	                   "{\"product_id\":\"p1\",\"quantity\":1,\"note\":\"5555555555554444\"}", NULL);
	cr_assert_str_eq(str(r.json, "code"), "card_data_refused", "%s", r.body);
	hc_reply_free(&r);
	r = expect_problem(400, "/api/v1/auth/login", NULL,
	                   "{\"email\":\"a@b.test\",\"password\":\"4000002500003155\"}", NULL);
	cr_assert_str_eq(str(r.json, "code"), "card_data_refused", "%s", r.body);
	hc_reply_free(&r);
	/* no line of the server's log holds a number sent */
	char log_path[600];
	snprintf(log_path, sizeof log_path, "%s/serve.log", data_dir);
	FILE *log = fopen(log_path, "r");
	cr_assert_not_null(log);
	char line[4096];
	while (fgets(line, sizeof line, log) != NULL) {
		cr_assert_null(strstr(line, "4242424242424242"), "%s", line);
		cr_assert_null(strstr(line, "5555555555554444"), "%s", line);
		cr_assert_null(strstr(line, "4000002500003155"), "%s", line);
	}
	fclose(log);

	/* nothing of it moved the order, and serve stops cleanly */
	cr_assert_neq(strcmp(status_of(&me, id), "confirmed"), 0);
	stop_cleanly();
}

Test(api_payment, a_cancelled_order_cannot_be_paid)
{
	char mug[65], id[65], path[200], body[512];
	create_product("PAY-2", 990, mug);
	customer me = sign_up("cancelled-payer@orion.test");
	place(&me, mug, 1, id);
	snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", id);
	reply r = expect(200, "POST", path, me.token, NULL, NULL);
	hc_reply_free(&r);
	pay_path(path, sizeof path, id);
	pm_body(body, sizeof body, "pm_any");
	r = expect_problem(409, path, me.token, body, NULL);
	hc_reply_free(&r);
	r = expect_problem(409, path, me.token, body, "Idempotency-Key: cancelled-1");
	hc_reply_free(&r);
	cr_assert_str_eq(status_of(&me, id), "cancelled");
}

Test(api_payment_unserved, no_payment_service_is_503_and_the_order_waits)
{
	char mug[65], id[65], path[200], body[512];
	create_product("PAY-3", 500, mug);
	customer me = sign_up("unserved@orion.test");
	awaiting_payment(&me, mug, id);
	pay_path(path, sizeof path, id);
	pm_body(body, sizeof body, "pm_any");
	int64_t start = th_now_ms();
	reply r = expect_problem(503, path, me.token, body, "Idempotency-Key: unserved-1");
	cr_assert_lt(th_now_ms() - start, 5000, "nobody serves payments: no need to wait");
	hc_reply_free(&r);
	/* not remembered: the same key is tried again (and fails the same way) */
	r = expect_problem(503, path, me.token, body, "Idempotency-Key: unserved-1");
	hc_reply_free(&r);
	cr_assert_str_eq(status_of(&me, id), "awaiting_payment");
	stop_cleanly();
}

/* ---- with the payment service ------------------------------------------------------- */

Test(api_payment, paying_before_the_order_awaits_payment_is_409)
{
	char mug[65], id[65], path[200], body[512];
	if (!has_payment())
		cr_skip_test("orion serve has no payment role yet");
	create_product("PAY-4", 700, mug);
	customer me = sign_up("early-payer@orion.test");
	place(&me, mug, 1, id);
	pay_path(path, sizeof path, id);
	pm_body(body, sizeof body, "pm_early");
	/* pending or already awaiting_confirmation: either way not payable */
	reply r = expect_problem(409, path, me.token, body, NULL);
	hc_reply_free(&r);
	cr_assert(wait_status(&me, id, "awaiting_confirmation", 20000));
	r = expect_problem(409, path, me.token, body, "Idempotency-Key: early-1");
	hc_reply_free(&r);
	cr_assert_str_eq(status_of(&me, id), "awaiting_confirmation");
}

Test(api_payment, an_unknown_payment_method_is_400_and_charges_nothing)
{
	char mug[65], id[65], path[200], body[512];
	if (!has_payment())
		cr_skip_test("orion serve has no payment role yet");
	create_product("PAY-5", 700, mug);
	customer me = sign_up("invalid-card@orion.test");
	awaiting_payment(&me, mug, id);
	pay_path(path, sizeof path, id);

	pm_body(body, sizeof body, "pm_nobody_issued_this");
	reply r = expect_problem(400, path, me.token, body, NULL);
	cr_assert_str_eq(first_error_field(&r), "payment_method", "%s", r.body);
	hc_reply_free(&r);
	cr_assert_str_eq(status_of(&me, id), "awaiting_payment");

	/* and a valid card still pays it afterwards */
	card_token_body(body, sizeof body, "4242424242424242");
	r = expect(200, "POST", path, me.token, body, "Idempotency-Key: valid-1");
	cr_assert_str_eq(str(r.json, "status"), "confirmed");
	hc_reply_free(&r);
}

Test(api_payment, an_approved_card_confirms_and_the_key_replays_it)
{
	char mug[65], id[65], path[200], body[512], other_body[512];
	if (!has_payment())
		cr_skip_test("orion serve has no payment role yet");
	create_product("PAY-6", 1999, mug);
	customer me = sign_up("approved@orion.test");
	awaiting_payment(&me, mug, id);
	pay_path(path, sizeof path, id);
	card_token_body(body, sizeof body, "4242424242424242");

	reply first = expect(200, "POST", path, me.token, body, "Idempotency-Key: pay-key-1");
	cr_assert_str_eq(str(first.json, "status"), "confirmed");
	json_t *payment = json_object_get(first.json, "payment");
	cr_assert_str_eq(str(payment, "brand"), "visa");
	cr_assert_str_eq(str(payment, "last4"), "4242");

	/* the same request again: the same answer */
	reply again = expect(200, "POST", path, me.token, body, "Idempotency-Key: pay-key-1");
	cr_assert_str_eq(again.body, first.body);
	hc_reply_free(&again);
	/* the same key with another card: 422; another key or none: 409 */
	card_token_body(other_body, sizeof other_body, "5555555555554444");
	reply r = expect_problem(422, path, me.token, other_body, "Idempotency-Key: pay-key-1");
	hc_reply_free(&r);
	r = expect_problem(409, path, me.token, body, "Idempotency-Key: pay-key-2");
	hc_reply_free(&r);
	r = expect_problem(409, path, me.token, body, NULL);
	hc_reply_free(&r);
	hc_reply_free(&first);
	cr_assert_str_eq(status_of(&me, id), "confirmed");
	stop_cleanly();
}

/* Pays id with the 3-D Secure card; answers the challenge page with action
 * (approve or decline) as the shopper's browser would; returns once the
 * order has left awaiting_payment (the provider's signed webhook). */
static void pay_through_3ds(const customer *me, const char *id, const char *action, const char *want)
{
	char path[200], body[512];
	pay_path(path, sizeof path, id);
	card_token_body(body, sizeof body, "4000002500003155");
	reply r = expect(200, "POST", path, me->token, body, "Idempotency-Key: three-ds-1");
	cr_assert_str_eq(str(r.json, "status"), "awaiting_payment", "%s", r.body);
	json_t *payment = json_object_get(r.json, "payment");
	cr_assert_str_eq(str(payment, "status"), "requires_action", "%s", r.body);
	json_t *next = json_object_get(payment, "next_action");
	cr_assert_str_eq(str(next, "type"), "redirect_to_url");
	char url[512];
	snprintf(url, sizeof url, "%s", str(next, "url"));
	hc_reply_free(&r);
	/* the same view on GET, as long as the challenge is open */
	char order_path[200];
	snprintf(order_path, sizeof order_path, "/api/v1/orders/%s", id);
	r = expect(200, "GET", order_path, me->token, NULL, NULL);
	cr_assert_str_eq(str(json_object_get(json_object_get(r.json, "payment"), "next_action"), "url"), url);
	hc_reply_free(&r);

	/* the shopper's browser: the page, then its form */
	const char *slash = strchr(url + strlen("http://"), '/');
	cr_assert_not_null(slash, "%s", url);
	char origin[200];
	snprintf(origin, sizeof origin, "%.*s", (int)(slash - url), url);
	hc_reply page = hc_perform(origin, "GET", slash, NULL, NULL, 0, 10000L);
	cr_assert_eq(page.status, 200, "%s", page.body);
	hc_reply_free(&page);
	char form[64];
	snprintf(form, sizeof form, "action=%s", action);
	const char *headers[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	hc_reply answered = hc_perform(origin, "POST", slash, headers, form, strlen(form), 10000L);
	cr_assert(answered.status == 200 || answered.status == 303, "%ld %s", answered.status, answered.body);
	hc_reply_free(&answered);
	cr_assert(wait_status(me, id, want, 20000), "the webhook should take the order to %s: %s", want,
	          status_of(me, id));
}

Test(api_payment, three_d_secure_approved_on_the_challenge_page_confirms_by_webhook)
{
	char mug[65], id[65], order_path[200];
	if (!has_payment())
		cr_skip_test("orion serve has no payment role yet");
	create_product("PAY-3DS-1", 1200, mug);
	customer me = sign_up("three-ds@orion.test");
	awaiting_payment(&me, mug, id);
	pay_through_3ds(&me, id, "approve", "confirmed");
	snprintf(order_path, sizeof order_path, "/api/v1/orders/%s", id);
	reply r = expect(200, "GET", order_path, me.token, NULL, NULL);
	cr_assert_str_eq(str(json_object_get(r.json, "payment"), "last4"), "3155", "%s", r.body);
	hc_reply_free(&r);
}

Test(api_payment, three_d_secure_declined_on_the_challenge_page_fails_the_payment)
{
	char mug[65], id[65];
	if (!has_payment())
		cr_skip_test("orion serve has no payment role yet");
	create_product("PAY-3DS-2", 1300, mug);
	customer me = sign_up("three-ds-declined@orion.test");
	awaiting_payment(&me, mug, id);
	pay_through_3ds(&me, id, "decline", "payment_failed");
}

Test(api_payment, a_declined_card_fails_the_payment_with_its_reason)
{
	char mug[65], id[65], path[200], body[512];
	if (!has_payment())
		cr_skip_test("orion serve has no payment role yet");
	create_product("PAY-7", 1500, mug);
	customer me = sign_up("declined@orion.test");
	awaiting_payment(&me, mug, id);
	pay_path(path, sizeof path, id);
	card_token_body(body, sizeof body, "4000000000009995");
	reply r = expect(200, "POST", path, me.token, body, "Idempotency-Key: declined-1");
	cr_assert_str_eq(str(r.json, "status"), "payment_failed");
	json_t *history = json_object_get(r.json, "history");
	json_t *last = json_array_get(history, json_array_size(history) - 1);
	cr_assert_str_eq(str(last, "reason"), "insufficient_funds");
	cr_assert(json_is_null(json_object_get(r.json, "payment")));
	hc_reply_free(&r);
	/* a failed order is final */
	card_token_body(body, sizeof body, "4242424242424242");
	r = expect_problem(409, path, me.token, body, NULL);
	hc_reply_free(&r);
}

Test(api_payment, an_order_above_the_provider_limit_is_422_and_stays_payable)
{
	char big[65], id[65], path[200], body[512];
	if (!has_payment())
		cr_skip_test("orion serve has no payment role yet");
	create_product("PAY-8", 10000000000LL, big); /* 2 x 10^10 cents: above the provider's 10^10 */
	customer me = sign_up("too-large@orion.test");
	awaiting_payment(&me, big, id);
	pay_path(path, sizeof path, id);
	pm_body(body, sizeof body, "pm_any");
	for (int i = 0; i < 2; i++) { /* the retry is refused the same way: nothing was left open */
		reply r = expect_problem(422, path, me.token, body, "Idempotency-Key: too-large-1");
		cr_assert_str_eq(str(r.json, "detail"),
		                 "the order's total is above what a card payment can charge", "%s", r.body);
		hc_reply_free(&r);
	}
	cr_assert_str_eq(status_of(&me, id), "awaiting_payment");
}

/* ---- the gateway's side of the contract, against a fake payment service --------------
 *
 * The suite runs serve without the payment role on a nats-server of its own
 * and answers orion.cmd.pay.* itself, as ADR 009 says the payment
 * service does: it checks the payload, counts the Pay commands, and answers
 * by card number. The approving card takes FAKE_DELAY_MS and marks the
 * order paid through the order actor, so the reply's seq is a real commit. */

#define FAKE_DELAY_MS 400
#define FAKE_APPROVE  "pm_fake_approve"
#define FAKE_OTHER    "pm_fake_other"    /* approves too */
#define FAKE_UNUSABLE "pm_fake_unusable" /* rejected invalid_payment_method */
#define FAKE_DOWN     "pm_fake_down"     /* failed unavailable */
#define FAKE_BUSY     "pm_fake_busy"     /* rejected in_progress */
#define FAKE_CONFLICT "pm_fake_conflict" /* rejected idempotency_conflict (the provider's key reused) */
#define FAKE_LIMIT    "pm_fake_limit"    /* rejected limit (the payment's attempts used up) */
#define FAKE_TOO_BIG  "pm_fake_too_big"  /* rejected amount_too_large */
#define FAKE_3DS      "pm_fake_3ds"      /* accepted requires_action */
#define FAKE_3DS_URL  "http://127.0.0.1:1/v1/3ds/pi_fake"

typedef struct fake_service {
	natsConnection *sub_nc, *cmd_nc;
	natsSubscription *sub;
	pthread_mutex_t lock;
	int pays;             /* Pay commands received */
	int bad_payloads;     /* Pay commands whose payload broke the contract */
	char command_id[256]; /* of the last Pay */
	char key[160];        /* its idempotency_key */
	int events;           /* PspEvent commands received */
	bool events_fail;     /* answer them failed unavailable */
	char event_command_id[256];
	char event_order[80], event_fields[1024]; /* of the last PspEvent: its subject's id, "k=v;..." */
} fake_service;

static fake_service fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void fake_reply(natsMsg *msg, bus_outcome outcome, const char *code, const char *detail, uint64_t seq)
{
	bus_reply r = {.outcome = outcome, .seq = seq, .attempts = 1};
	snprintf(r.code, sizeof r.code, "%s", code);
	snprintf(r.detail, sizeof r.detail, "%s", detail);
	mp_writer *w = mp_writer_create();
	if (w != NULL && bus_reply_encode(w, &r) == ORN_OK)
		natsConnection_Publish(fake.sub_nc, natsMsg_GetReply(msg), mp_writer_data(w),
		                       (int)mp_writer_size(w));
	mp_writer_destroy(w);
}

/* The Pay payload: exactly {customer_id, idempotency_key,
 * payment_method}; the method and key copied out. */
static bool fake_parse(const env_envelope *cmd, char *method, size_t method_cap, char *key, size_t key_cap)
{
	mp_reader rd;
	uint32_t n, len;
	const char *name;
	int fields = 0;
	mp_reader_init(&rd, cmd->payload, cmd->payload_len);
	if (mp_read_map(&rd, &n) != ORN_OK || n != 3)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_str(&rd, &name, &len) != ORN_OK)
			return false;
		bool ok = mp_str_eq(name, len, "customer_id") ? mp_skip(&rd) == ORN_OK
		          : mp_str_eq(name, len, "idempotency_key")
		                  ? mp_read_cstr(&rd, key, key_cap) == ORN_OK
		          : mp_str_eq(name, len, "payment_method")
		                  ? mp_read_cstr(&rd, method, method_cap) == ORN_OK
		                  : false;
		if (!ok)
			return false;
		fields++;
	}
	return fields == 3;
}

/* A PspEvent payload as "name=value;" pairs in its order (ADR 028: ten
 * members, amount_cents an integer, the rest strings). */
static bool fake_event_fields(const env_envelope *cmd, char *out, size_t cap)
{
	mp_reader rd;
	uint32_t n, len;
	const char *name;
	size_t used = 0;
	out[0] = '\0';
	mp_reader_init(&rd, cmd->payload, cmd->payload_len);
	if (mp_read_map(&rd, &n) != ORN_OK || n != 10)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		char value[300];
		int64_t amount;
		if (mp_read_str(&rd, &name, &len) != ORN_OK)
			return false;
		if (mp_str_eq(name, len, "amount_cents")) {
			if (mp_read_int(&rd, &amount) != ORN_OK)
				return false;
			snprintf(value, sizeof value, "%lld", (long long)amount);
		} else if (mp_read_cstr(&rd, value, sizeof value) != ORN_OK) {
			return false;
		}
		used += (size_t)snprintf(out + used, cap - used, "%.*s=%s;", (int)len, name, value);
		if (used >= cap)
			return false;
	}
	return true;
}

static void fake_on_event(natsMsg *msg, const env_envelope *cmd, const char *order_id)
{
	pthread_mutex_lock(&fake.lock);
	fake.events++;
	bool ok = fake_event_fields(cmd, fake.event_fields, sizeof fake.event_fields);
	fake.bad_payloads += !ok;
	snprintf(fake.event_command_id, sizeof fake.event_command_id, "%s", cmd->causation);
	snprintf(fake.event_order, sizeof fake.event_order, "%s", order_id);
	bool fail = fake.events_fail;
	pthread_mutex_unlock(&fake.lock);
	if (fail || !ok)
		fake_reply(msg, BUS_FAILED, "unavailable", "", 0);
	else
		fake_reply(msg, BUS_ACCEPTED, "", "", 0);
}

/* MarkPaid through the order actor; the seq of its commit, 0 on failure. */
static uint64_t fake_mark_paid(const env_envelope *cmd, const char *order_id)
{
	order_command c = {.kind = ORDER_MARK_PAID};
	snprintf(c.data.charge_id, sizeof c.data.charge_id, "ch_fake");
	snprintf(c.data.brand, sizeof c.data.brand, "visa");
	snprintf(c.data.last4, sizeof c.data.last4, "4242");
	c.data.time_ms = (int64_t)time(NULL) * 1000;
	mp_writer *w = mp_writer_create();
	env_envelope env;
	bus_reply answer = {0};
	char id[ENV_ID_MAX + 8];
	uint64_t seq = 0;
	snprintf(id, sizeof id, "%.150s:paid", cmd->causation);
	if (w != NULL && order_command_encode(w, &c) == ORN_OK &&
	    bus_command_init(&env, ORDER_CMD_MARK_PAID, c.data.time_ms, id, NULL, NULL, mp_writer_data(w),
	                     mp_writer_size(w)) == ORN_OK &&
	    bus_send_on(fake.cmd_nc, ORDER_AGGREGATE, order_id, &env, 5000, &answer) == ORN_OK &&
	    answer.outcome == BUS_ACCEPTED)
		seq = answer.seq;
	bus_reply_dispose(&answer);
	mp_writer_destroy(w);
	return seq;
}

static void fake_on_pay(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	env_envelope cmd;
	char number[64] = "", key[160] = "";
	const char *subject = natsMsg_GetSubject(msg);
	const char *order_id = strrchr(subject, '.') + 1;
	(void)nc, (void)sub, (void)closure;
	bool decoded =
	        env_decode_buffer(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &cmd) == ORN_OK;
	if (decoded && strcmp(cmd.type, "PspEvent") == 0) {
		fake_on_event(msg, &cmd, order_id);
		natsMsg_Destroy(msg);
		return;
	}
	bool ok = decoded && strcmp(cmd.type, "Pay") == 0 &&
	          fake_parse(&cmd, number, sizeof number, key, sizeof key);
	pthread_mutex_lock(&fake.lock);
	fake.pays++;
	fake.bad_payloads += !ok;
	if (ok) {
		snprintf(fake.command_id, sizeof fake.command_id, "%s", cmd.causation);
		snprintf(fake.key, sizeof fake.key, "%s", key);
	}
	pthread_mutex_unlock(&fake.lock);
	if (!ok)
		fake_reply(msg, BUS_FAILED, "invalid", "", 0);
	else if (strcmp(number, FAKE_UNUSABLE) == 0)
		fake_reply(msg, BUS_REJECTED, "invalid_payment_method", "", 0);
	else if (strcmp(number, FAKE_3DS) == 0)
		fake_reply(msg, BUS_ACCEPTED, "requires_action", FAKE_3DS_URL, 1);
	else if (strcmp(number, FAKE_DOWN) == 0)
		fake_reply(msg, BUS_FAILED, "unavailable", "", 0);
	else if (strcmp(number, FAKE_BUSY) == 0)
		fake_reply(msg, BUS_REJECTED, "in_progress", "", 0);
	else if (strcmp(number, FAKE_CONFLICT) == 0)
		fake_reply(msg, BUS_REJECTED, "idempotency_conflict", "", 0);
	else if (strcmp(number, FAKE_LIMIT) == 0)
		fake_reply(msg, BUS_REJECTED, "limit", "", 0);
	else if (strcmp(number, FAKE_TOO_BIG) == 0)
		fake_reply(msg, BUS_REJECTED, "amount_too_large", "", 0);
	else if (strcmp(number, FAKE_APPROVE) == 0 || strcmp(number, FAKE_OTHER) == 0) {
		th_sleep_ms(FAKE_DELAY_MS);
		uint64_t seq = fake_mark_paid(&cmd, order_id);
		if (seq > 0)
			fake_reply(msg, BUS_ACCEPTED, "", "", seq);
		else
			fake_reply(msg, BUS_REJECTED, "wrong_state", "", 0);
	}
	natsMsg_Destroy(msg);
}

static void start_with_fake(void)
{
	nats = th_natsd_start("api-payment-fake");
	start(ROLES_WITHOUT_PAYMENT);
	cr_assert_eq(natsConnection_ConnectTo(&fake.sub_nc, natsd_url(nats)), NATS_OK);
	cr_assert_eq(natsConnection_ConnectTo(&fake.cmd_nc, natsd_url(nats)), NATS_OK);
	cr_assert_eq(natsConnection_QueueSubscribe(&fake.sub, fake.sub_nc, "orion.cmd.pay.*", "orion.pay",
	                                           fake_on_pay, NULL),
	             NATS_OK);
	cr_assert_eq(natsConnection_Flush(fake.sub_nc), NATS_OK);
}

static void stop_with_fake(void)
{
	if (fake.sub != NULL) {
		natsSubscription_Unsubscribe(fake.sub);
		natsSubscription_Destroy(fake.sub);
	}
	natsConnection_Destroy(fake.sub_nc);
	natsConnection_Destroy(fake.cmd_nc);
	stop_server();
	nats_Close();
}

TestSuite(api_payment_fake, .init = start_with_fake, .fini = stop_with_fake, .timeout = 120);

static int fake_pays(void)
{
	pthread_mutex_lock(&fake.lock);
	int n = fake.pays;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

typedef struct click {
	const char *path, *token, *body, *key;
	reply r;
} click;

static void *click_main(void *arg)
{
	click *c = arg;
	c->r = call("POST", c->path, c->token, c->body, c->key);
	return NULL;
}

Test(api_payment_fake, a_double_click_is_one_command_and_the_same_answer, .timeout = 120)
{
	char mug[65], id[65], path[200], body[512], other[512];
	create_product("FAKE-1", 1250, mug);
	customer me = sign_up("fake-double@orion.test");
	awaiting_payment(&me, mug, id);
	pay_path(path, sizeof path, id);
	pm_body(body, sizeof body, FAKE_APPROVE);

	/* five requests at once with one key: the first is sent, the others wait for it */
	click clicks[5];
	pthread_t threads[5];
	for (int i = 0; i < 5; i++) {
		clicks[i] = (click){
		        .path = path, .token = me.token, .body = body, .key = "Idempotency-Key: dbl-1"};
		cr_assert_eq(pthread_create(&threads[i], NULL, click_main, &clicks[i]), 0);
	}
	for (int i = 0; i < 5; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(clicks[i].r.status, 200, "click %d: %ld %s", i, clicks[i].r.status,
		             clicks[i].r.body);
		cr_assert_str_eq(clicks[i].r.body, clicks[0].r.body);
	}
	cr_assert_str_eq(str(clicks[0].r.json, "status"), "confirmed");
	cr_assert_eq(fake_pays(), 1, "%d Pay commands for one key", fake_pays());
	pthread_mutex_lock(&fake.lock);
	char want[200];
	snprintf(want, sizeof want, "%s:pay:", id);
	cr_assert_eq(strncmp(fake.command_id, want, strlen(want)), 0, "command id %s", fake.command_id);
	cr_assert_eq(strlen(fake.command_id), strlen(want) + 64);
	cr_assert_str_eq(fake.key, "dbl-1");
	cr_assert_eq(fake.bad_payloads, 0);
	pthread_mutex_unlock(&fake.lock);

	/* later, the same request: the same answer, not sent again */
	reply r = expect(200, "POST", path, me.token, body, "Idempotency-Key: dbl-1");
	cr_assert_str_eq(r.body, clicks[0].r.body);
	hc_reply_free(&r);
	cr_assert_eq(fake_pays(), 1);
	/* the same key with another body: 422, not sent */
	pm_body(other, sizeof other, FAKE_OTHER);
	r = expect_problem(422, path, me.token, other, "Idempotency-Key: dbl-1");
	hc_reply_free(&r);
	cr_assert_eq(fake_pays(), 1);
	/* without a key, the confirmed order is not sent either */
	r = expect_problem(409, path, me.token, body, NULL);
	hc_reply_free(&r);
	cr_assert_eq(fake_pays(), 1);
	for (int i = 0; i < 5; i++)
		hc_reply_free(&clicks[i].r);
	stop_cleanly(); /* the kept answer is freed at exit (no leak under ASan) */
}

Test(api_payment_fake, the_service_answers_map_to_statuses)
{
	char mug[65], id[65], path[200], body[512];
	create_product("FAKE-2", 800, mug);
	customer me = sign_up("fake-map@orion.test");
	awaiting_payment(&me, mug, id);
	pay_path(path, sizeof path, id);

	pm_body(body, sizeof body, FAKE_UNUSABLE);
	reply r = expect_problem(400, path, me.token, body, "Idempotency-Key: map-1");
	cr_assert_str_eq(first_error_field(&r), "payment_method");
	hc_reply_free(&r);
	pm_body(body, sizeof body, FAKE_BUSY);
	r = expect_problem(409, path, me.token, body, NULL);
	hc_reply_free(&r);
	/* failed: 503, and not remembered: the retry with the key is sent again */
	pm_body(body, sizeof body, FAKE_DOWN);
	int before = fake_pays();
	r = expect_problem(503, path, me.token, body, "Idempotency-Key: map-2");
	hc_reply_free(&r);
	r = expect_problem(503, path, me.token, body, "Idempotency-Key: map-2");
	hc_reply_free(&r);
	cr_assert_eq(fake_pays(), before + 2);
	pthread_mutex_lock(&fake.lock);
	cr_assert_eq(strncmp(fake.command_id, id, strlen(id)), 0);
	cr_assert_eq(fake.bad_payloads, 0);
	pthread_mutex_unlock(&fake.lock);
	/* without a key the command id is random */
	pm_body(body, sizeof body, FAKE_BUSY);
	r = expect_problem(409, path, me.token, body, NULL);
	hc_reply_free(&r);
	pthread_mutex_lock(&fake.lock);
	cr_assert_neq(strncmp(fake.command_id, id, strlen(id)), 0, "%s", fake.command_id);
	cr_assert_str_eq(fake.key, "");
	pthread_mutex_unlock(&fake.lock);
	/* the provider saw the key with another payment method: 422, as a reused key */
	pm_body(body, sizeof body, FAKE_CONFLICT);
	r = expect_problem(422, path, me.token, body, "Idempotency-Key: map-3");
	cr_assert_str_eq(str(r.json, "detail"), "this Idempotency-Key was used for another request");
	hc_reply_free(&r);
	/* the payment's attempts are used up: 409 saying so */
	pm_body(body, sizeof body, FAKE_LIMIT);
	r = expect_problem(409, path, me.token, body, "Idempotency-Key: map-4");
	cr_assert_str_eq(str(r.json, "detail"), "this order has reached its limit of payment attempts");
	hc_reply_free(&r);
	/* a total above the provider's limit: 422 saying so */
	pm_body(body, sizeof body, FAKE_TOO_BIG);
	r = expect_problem(422, path, me.token, body, NULL);
	cr_assert_str_eq(str(r.json, "detail"), "the order's total is above what a card payment can charge");
	hc_reply_free(&r);
	/* 3-D Secure: 200, still awaiting payment (the view shows the challenge
	 * from the payments read model: the real service's test), not kept */
	pm_body(body, sizeof body, FAKE_3DS);
	before = fake_pays();
	for (int i = 0; i < 2; i++) {
		r = expect(200, "POST", path, me.token, body, "Idempotency-Key: map-5");
		cr_assert_str_eq(str(r.json, "status"), "awaiting_payment", "%s", r.body);
		hc_reply_free(&r);
	}
	cr_assert_eq(fake_pays(), before + 2, "a requires_action answer is asked again, not replayed");
	cr_assert_str_eq(status_of(&me, id), "awaiting_payment");
	stop_cleanly();
}

/* ---- the provider's webhooks (ADR 028) ------------------------------------------------- */

#define WEBHOOK_PATH   "/api/v1/webhooks/psp"
#define WEBHOOK_SECRET "whsec_test_orion" /* ORION_PSP_WEBHOOK_SECRET's default */

/* POSTs body to the webhook signed with secret at time t; the reply. */
static reply post_event(const char *body, const char *secret, long long t)
{
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	char hex[2 * sizeof mac + 1], prefix[32], header[256];
	crypto_auth_hmacsha256_state st;
	snprintf(prefix, sizeof prefix, "%lld.", t);
	crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)prefix, strlen(prefix));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
	snprintf(header, sizeof header, "Orion-PSP-Signature: t=%lld,v1=%s", t, hex);
	return call("POST", WEBHOOK_PATH, NULL, body, header);
}

static int fake_events(void)
{
	pthread_mutex_lock(&fake.lock);
	int n = fake.events;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

Test(api_payment_fake, signed_webhooks_become_one_payment_event_each)
{
	char event[1024];
	long long now = (long long)time(NULL);
	cr_assert(sodium_init() >= 0);
	snprintf(event, sizeof event,
	         "{\"id\":\"evt_1\",\"object\":\"event\",\"type\":\"payment_intent.succeeded\","
	         "\"created\":%lld,\"data\":{\"object\":{\"id\":\"pi_1\",\"object\":\"payment_intent\","
	         "\"amount\":1250,\"currency\":\"eur\",\"status\":\"succeeded\",\"payment_method\":\"pm_1\","
	         "\"latest_charge\":\"ch_1\",\"metadata\":{\"order_id\":\"o-webhook-1\"},"
	         "\"last_payment_error\":null,\"next_action\":null}}}",
	         now);

	/* no provider in this process: no config to hand out */
	reply r = call("GET", "/api/v1/payments/config", NULL, NULL, NULL);
	cr_assert_eq(r.status, 503, "%ld %s", r.status, r.body);
	hc_reply_free(&r);

	/* signed and fresh: one PspEvent to the order's payment service, 200 */
	int before = fake_events();
	r = post_event(event, WEBHOOK_SECRET, now);
	cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
	cr_assert(json_is_true(json_object_get(r.json, "received")), "%s", r.body);
	hc_reply_free(&r);
	cr_assert_eq(fake_events(), before + 1);
	char first_command[256];
	pthread_mutex_lock(&fake.lock);
	cr_assert_str_eq(fake.event_order, "o-webhook-1");
	cr_assert_str_eq(fake.event_fields,
	                 "event_id=evt_1;type=payment_intent.succeeded;intent_id=pi_1;order_id=o-webhook-1;"
	                 "status=succeeded;charge_id=ch_1;decline_code=;refund_id=;refund_status=;"
	                 "amount_cents=1250;");
	cr_assert_eq(strncmp(fake.event_command_id, "psp:", 4), 0, "%s", fake.event_command_id);
	snprintf(first_command, sizeof first_command, "%s", fake.event_command_id);
	cr_assert_eq(fake.bad_payloads, 0);
	pthread_mutex_unlock(&fake.lock);

	/* delivered again (re-signed later, as a provider retries): the same command */
	r = post_event(event, WEBHOOK_SECRET, now + 5);
	cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	pthread_mutex_lock(&fake.lock);
	cr_assert_str_eq(fake.event_command_id, first_command);
	pthread_mutex_unlock(&fake.lock);

	/* a decline and a refund carry their codes */
	char declined[1024];
	snprintf(declined, sizeof declined,
	         "{\"id\":\"evt_2\",\"type\":\"payment_intent.payment_failed\",\"data\":{\"object\":{"
	         "\"id\":\"pi_2\",\"object\":\"payment_intent\",\"amount\":990,\"status\":"
	         "\"requires_payment_method\",\"latest_charge\":null,\"metadata\":{\"order_id\":\"o-webhook-"
	         "2\"},"
	         "\"last_payment_error\":{\"type\":\"card_error\",\"code\":\"card_declined\","
	         "\"decline_code\":\"insufficient_funds\"}}}}");
	r = post_event(declined, WEBHOOK_SECRET, now);
	cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	pthread_mutex_lock(&fake.lock);
	cr_assert_str_eq(
	        fake.event_fields,
	        "event_id=evt_2;type=payment_intent.payment_failed;intent_id=pi_2;order_id=o-webhook-2;"
	        "status=requires_payment_method;charge_id=;decline_code=insufficient_funds;refund_id=;"
	        "refund_status=;amount_cents=990;");
	pthread_mutex_unlock(&fake.lock);
	char refunded[1024];
	snprintf(refunded, sizeof refunded,
	         "{\"id\":\"evt_3\",\"type\":\"charge.refunded\",\"data\":{\"object\":{\"id\":\"ch_1\","
	         "\"object\":\"charge\",\"payment_intent\":\"pi_1\",\"amount\":1250,\"amount_refunded\":1250,"
	         "\"refunded\":true,\"metadata\":{\"order_id\":\"o-webhook-1\"}}}}");
	r = post_event(refunded, WEBHOOK_SECRET, now);
	cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	pthread_mutex_lock(&fake.lock);
	cr_assert_str_eq(
	        fake.event_fields,
	        "event_id=evt_3;type=charge.refunded;intent_id=pi_1;order_id=o-webhook-1;status=;"
	        "charge_id=ch_1;decline_code=;refund_id=;refund_status=succeeded;amount_cents=1250;");
	pthread_mutex_unlock(&fake.lock);

	/* a bad, foreign, old or missing signature: 400, nothing sent */
	before = fake_events();
	r = post_event(event, "whsec_somebody_else", now);
	cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	r = post_event(event, WEBHOOK_SECRET, now - 301);
	cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	r = call("POST", WEBHOOK_PATH, NULL, event, NULL);
	cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	r = post_event("not json", WEBHOOK_SECRET, now);
	cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	cr_assert_eq(fake_events(), before);

	/* an event of no order of ours: 200, nothing to send */
	r = post_event("{\"id\":\"evt_4\",\"type\":\"customer.created\",\"data\":{\"object\":{"
	               "\"id\":\"cus_1\",\"object\":\"customer\"}}}",
	               WEBHOOK_SECRET, now);
	cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	cr_assert_eq(fake_events(), before);

	/* the service cannot record it now: 503, so the provider sends it again */
	pthread_mutex_lock(&fake.lock);
	fake.events_fail = true;
	pthread_mutex_unlock(&fake.lock);
	r = post_event(event, WEBHOOK_SECRET, now);
	cr_assert_eq(r.status, 503, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	pthread_mutex_lock(&fake.lock);
	fake.events_fail = false;
	pthread_mutex_unlock(&fake.lock);
	cr_assert_eq(fake_events(), before + 1);
	stop_cleanly();
}
