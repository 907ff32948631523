/* test_psp_sandbox.c — the card payment provider sandbox (psp/psp_sandbox.c)
 * over real HTTP with libcurl, against the contract of ADR 009 section 1.
 *
 * Each test starts its own sandbox in-process on 127.0.0.1:0 (and one test
 * the `orion psp-sandbox` binary): approvals, every decline card, auth,
 * strict parameters, idempotent replays and key reuse, the silent card
 * (client timeout, charge visible as succeeded, 409 while held, replay
 * after the hold), refunds, the list by metadata[order_id], and the state
 * file across a restart, which must never contain a card number. */
#include <criterion/criterion.h>

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "psp_sandbox.h"

#define KEY       "sk_test_psp_suite"
#define HOLD_MS   3000
#define CARD_OK   "4242424242424242"
#define CARD_SIL  "4000000000000309"
#define CVC       "947"
#define HOLDER    "Zelda Quixote-Holder"
#define CARD_REST "&card[exp_month]=12&card[exp_year]=2031&card[cvc]=" CVC "&card[name]=Zelda+Quixote-Holder"

static psp_sandbox *sandbox;
static char base_url[64];
static char *work_dir;
static pid_t child;

static void start_sandbox(const char *state_file)
{
	psp_sandbox_options o;
	psp_sandbox_options_init(&o);
	o.api_key = KEY;
	o.state_file = state_file;
	o.silent_hold_ms = HOLD_MS;
	cr_assert_eq(psp_sandbox_start(&o, &sandbox), ORN_OK);
	snprintf(base_url, sizeof base_url, "http://127.0.0.1:%u", (unsigned)psp_sandbox_port(sandbox));
}

static void setup(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	work_dir = th_tempdir("psp");
	start_sandbox(NULL);
}

static void teardown(void)
{
	psp_sandbox_stop(sandbox);
	sandbox = NULL;
	if (child > 0) {
		th_kill(child, SIGKILL);
		child = 0;
	}
	th_rmrf(work_dir);
	free(work_dir);
	work_dir = NULL;
	curl_global_cleanup();
}

TestSuite(psp_sandbox, .init = setup, .fini = teardown, .timeout = 60);

/* ---- a small curl client ------------------------------------------------ */

typedef struct response {
	CURLcode curl;
	long status;
	char *body;
	size_t len;
	char request_id[64];
	char content_type[64];
	bool replayed;
} response;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	response *r = arg;
	char *grown = realloc(r->body, r->len + size * n + 1);
	cr_assert_not_null(grown);
	memcpy(grown + r->len, data, size * n);
	r->len += size * n;
	grown[r->len] = '\0';
	r->body = grown;
	return size * n;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
	size_t n = strlen(name);
	if (len <= n + 1 || strncasecmp(line, name, n) != 0 || line[n] != ':')
		return;
	const char *v = line + n + 1;
	while (*v == ' ')
		v++;
	size_t vlen = len - (size_t)(v - line);
	while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
		vlen--;
	snprintf(out, cap, "%.*s", (int)vlen, v);
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	response *r = arg;
	char replayed[16] = "";
	header_value(data, size * n, "Request-Id", r->request_id, sizeof r->request_id);
	header_value(data, size * n, "Content-Type", r->content_type, sizeof r->content_type);
	header_value(data, size * n, "Idempotent-Replayed", replayed, sizeof replayed);
	if (strcmp(replayed, "true") == 0)
		r->replayed = true;
	return size * n;
}

/* One request; form NULL means GET. auth NULL sends no Authorization. */
static response request_full(const char *base, const char *path, const char *form, const char *auth,
                             const char *idempotency_key, const char *extra_header, long timeout_ms)
{
	response r = {0};
	char url[512], header[512];
	struct curl_slist *list = NULL;
	CURL *curl = curl_easy_init();
	cr_assert_not_null(curl);
	snprintf(url, sizeof url, "%s%s", base, path);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	if (auth != NULL) {
		snprintf(header, sizeof header, "Authorization: Bearer %s", auth);
		list = curl_slist_append(list, header);
	}
	if (idempotency_key != NULL) {
		snprintf(header, sizeof header, "Idempotency-Key: %s", idempotency_key);
		list = curl_slist_append(list, header);
	}
	if (extra_header != NULL)
		list = curl_slist_append(list, extra_header);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	if (form != NULL) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, form);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(form));
	}
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	r.curl = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(list);
	curl_easy_cleanup(curl);
	return r;
}

static response request(const char *path, const char *form, const char *idempotency_key)
{
	response r = request_full(base_url, path, form, KEY, idempotency_key, NULL, 10000);
	cr_assert_eq(r.curl, CURLE_OK, "%s: %s", path, curl_easy_strerror(r.curl));
	cr_assert_str_eq(r.content_type, "application/json");
	cr_assert_eq(strncmp(r.request_id, "req_", 4), 0, "Request-Id '%s'", r.request_id);
	return r;
}

static json_t *json_of(const response *r)
{
	json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
	cr_assert_not_null(j, "not JSON: %s", r->body ? r->body : "");
	return j;
}

static const char *jstr(json_t *root, const char *path)
{
	json_t *node = root;
	char copy[128];
	snprintf(copy, sizeof copy, "%s", path);
	for (char *save = NULL, *part = strtok_r(copy, ".", &save); part != NULL;
	     part = strtok_r(NULL, ".", &save))
		node = json_object_get(node, part);
	return json_string_value(node);
}

static json_int_t jint(json_t *root, const char *path)
{
	json_t *node = root;
	char copy[128];
	snprintf(copy, sizeof copy, "%s", path);
	for (char *save = NULL, *part = strtok_r(copy, ".", &save); part != NULL;
	     part = strtok_r(NULL, ".", &save))
		node = json_object_get(node, part);
	cr_assert(json_is_integer(node), "%s is not an integer", path);
	return json_integer_value(node);
}

static void charge_form(char *out, size_t cap, long amount, const char *number, const char *order_id)
{
	snprintf(out, cap, "amount=%ld&currency=EUR&card[number]=%s" CARD_REST "%s%s", amount, number,
	         order_id ? "&metadata[order_id]=" : "", order_id ? order_id : "");
}

static response charge(long amount, const char *number, const char *order_id, const char *key)
{
	char form[512];
	charge_form(form, sizeof form, amount, number, order_id);
	return request("/v1/charges", form, key);
}

static size_t list_count(const char *order_id, json_t **out)
{
	char path[256];
	snprintf(path, sizeof path, "/v1/charges?metadata%%5Border_id%%5D=%s", order_id);
	response r = request(path, NULL, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *j = json_of(&r);
	free(r.body);
	cr_assert_str_eq(jstr(j, "object"), "list");
	size_t n = json_array_size(json_object_get(j, "data"));
	if (out != NULL)
		*out = j;
	else
		json_decref(j);
	return n;
}

static void assert_error(const response *r, long status, const char *type, const char *code,
                         const char *param)
{
	cr_assert_eq(r->status, status, "%ld: %s", r->status, r->body);
	json_t *j = json_of(r);
	cr_assert_str_eq(jstr(j, "error.type"), type, "%s", r->body);
	if (code != NULL)
		cr_assert_str_eq(jstr(j, "error.code"), code, "%s", r->body);
	if (param != NULL)
		cr_assert_str_eq(jstr(j, "error.param"), param, "%s", r->body);
	cr_assert_not_null(jstr(j, "error.message"), "%s", r->body);
	json_decref(j);
}

/* ---- charges -------------------------------------------------------------- */

Test(psp_sandbox, approved_charge_has_the_contract_shape)
{
	response r = charge(1250, CARD_OK, "ord-1", NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *j = json_of(&r);
	const char *id = jstr(j, "id");
	cr_assert_eq(strncmp(id, "ch_", 3), 0);
	cr_assert_eq(strlen(id), 3 + 24);
	cr_assert_str_eq(jstr(j, "object"), "charge");
	cr_assert_eq(jint(j, "amount"), 1250);
	cr_assert_str_eq(jstr(j, "currency"), "eur");
	cr_assert_str_eq(jstr(j, "status"), "succeeded");
	cr_assert(json_is_true(json_object_get(j, "paid")));
	cr_assert(json_is_false(json_object_get(j, "refunded")));
	cr_assert_str_eq(jstr(j, "metadata.order_id"), "ord-1");
	cr_assert_str_eq(jstr(j, "payment_method_details.type"), "card");
	cr_assert_str_eq(jstr(j, "payment_method_details.card.brand"), "visa");
	cr_assert_str_eq(jstr(j, "payment_method_details.card.last4"), "4242");
	cr_assert_eq(jint(j, "payment_method_details.card.exp_month"), 12);
	cr_assert_eq(jint(j, "payment_method_details.card.exp_year"), 2031);
	cr_assert_gt(jint(j, "created"), 1700000000);
	cr_assert_null(strstr(r.body, CARD_OK));
	cr_assert_null(strstr(r.body, HOLDER));
	/* GET by id answers the same charge. */
	char path[64];
	snprintf(path, sizeof path, "/v1/charges/%s", id);
	response g = request(path, NULL, NULL);
	cr_assert_eq(g.status, 200);
	cr_assert_str_eq(g.body, r.body);
	json_decref(j);
	free(r.body);
	free(g.body);
}

Test(psp_sandbox, each_decline_card_is_a_402_card_error_with_a_failed_charge)
{
	const struct {
		const char *number, *code, *decline_code;
	} cases[] = {
	        {"4000000000000002", "card_declined", "generic_decline"},
	        {"4000000000009995", "card_declined", "insufficient_funds"},
	        {"4000000000000069", "expired_card", "expired_card"},
	        {"4000000000000127", "incorrect_cvc", "incorrect_cvc"},
	        {"4242424242424241", "incorrect_number", "incorrect_number"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		response r = charge(500, cases[i].number, "ord-d", NULL);
		cr_assert_eq(r.status, 402, "%s: %s", cases[i].number, r.body);
		json_t *j = json_of(&r);
		cr_assert_str_eq(jstr(j, "error.type"), "card_error");
		cr_assert_str_eq(jstr(j, "error.code"), cases[i].code, "%s", cases[i].number);
		cr_assert_str_eq(jstr(j, "error.decline_code"), cases[i].decline_code, "%s", cases[i].number);
		cr_assert_not_null(jstr(j, "error.message"));
		const char *id = jstr(j, "error.charge");
		cr_assert_not_null(id);
		char path[64];
		snprintf(path, sizeof path, "/v1/charges/%s", id);
		response g = request(path, NULL, NULL);
		cr_assert_eq(g.status, 200);
		json_t *c = json_of(&g);
		cr_assert_str_eq(jstr(c, "status"), "failed");
		cr_assert(json_is_false(json_object_get(c, "paid")));
		cr_assert_str_eq(jstr(c, "failure_code"), cases[i].code);
		cr_assert_str_eq(jstr(c, "payment_method_details.card.last4"), cases[i].number + 12);
		json_decref(c);
		json_decref(j);
		free(r.body);
		free(g.body);
	}
	cr_assert_eq(list_count("ord-d", NULL), 5);
}

Test(psp_sandbox, other_luhn_valid_numbers_approve)
{
	response r = charge(100, "5555555555554444", NULL, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *j = json_of(&r);
	cr_assert_str_eq(jstr(j, "payment_method_details.card.brand"), "mastercard");
	cr_assert_eq(json_object_size(json_object_get(j, "metadata")), 0);
	json_decref(j);
	free(r.body);
}

Test(psp_sandbox, wrong_or_missing_key_is_401_and_charges_nothing)
{
	char form[512];
	charge_form(form, sizeof form, 100, CARD_OK, "ord-auth");
	const char *keys[] = {NULL, "sk_test_wrong", KEY "x", ""};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		response r = request_full(base_url, "/v1/charges", form, keys[i], NULL, NULL, 10000);
		cr_assert_eq(r.curl, CURLE_OK);
		assert_error(&r, 401, "invalid_request_error", NULL, NULL);
		cr_assert_null(strstr(r.body, KEY));
		free(r.body);
	}
	response basic = request_full(base_url, "/v1/charges?metadata[order_id]=x", NULL, NULL, NULL,
	                              "Authorization: Basic c2tfdGVzdDo=", 10000);
	assert_error(&basic, 401, "invalid_request_error", NULL, NULL);
	free(basic.body);
	cr_assert_eq(list_count("ord-auth", NULL), 0);
}

Test(psp_sandbox, bad_input_is_400_and_charges_nothing)
{
	response r = request("/v1/charges",
	                     "currency=eur&card[number]=" CARD_OK CARD_REST "&metadata[order_id]=b", NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_missing", "amount");
	free(r.body);
	r = request("/v1/charges",
	            "amount=12x&currency=eur&card[number]=" CARD_OK CARD_REST "&metadata[order_id]=b", NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_invalid", "amount");
	free(r.body);
	r = request("/v1/charges",
	            "amount=1&currency=euro&card[number]=" CARD_OK CARD_REST "&metadata[order_id]=b", NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_invalid", "currency");
	free(r.body);
	r = request("/v1/charges",
	            "amount=1&currency=eur&card[number]=" CARD_OK CARD_REST
	            "&metadata[order_id]=b&capture=no",
	            NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_unknown", "capture");
	free(r.body);
	r = request("/v1/charges",
	            "amount=1&amount=2&currency=eur&card[number]=" CARD_OK CARD_REST "&metadata[order_id]=b",
	            NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_invalid", "amount");
	free(r.body);
	r = request("/v1/charges", "amount=1&currency=eur&card[number]=%ZZ" CARD_REST "&metadata[order_id]=b",
	            NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_invalid", NULL);
	cr_assert_null(strstr(r.body, CVC));
	free(r.body);
	r = request("/v1/charges", "amount=1&currency=eur&card[number]=4242-4242-4242-4242" CARD_REST, NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_invalid", "card[number]");
	cr_assert_null(strstr(r.body, "4242-4242"));
	free(r.body);
	r = request_full(base_url, "/v1/charges", "{\"amount\":1}", KEY, NULL,
	                 "Content-Type: application/json", 10000);
	assert_error(&r, 415, "invalid_request_error", NULL, NULL);
	free(r.body);
	r = request("/v1/charges", "amount=1&currency=eur&card[number]=" CARD_OK CARD_REST, "bad\tkey");
	assert_error(&r, 400, "invalid_request_error", "parameter_invalid", "Idempotency-Key");
	free(r.body);
	/* 16 KiB at most. */
	size_t big = 17 * 1024;
	char *huge = malloc(big + 64);
	cr_assert_not_null(huge);
	strcpy(huge, "amount=1&description=");
	memset(huge + strlen(huge), 'x', big);
	huge[big + 20] = '\0';
	r = request("/v1/charges", huge, NULL);
	assert_error(&r, 413, "invalid_request_error", NULL, NULL);
	free(r.body);
	free(huge);
	cr_assert_eq(list_count("b", NULL), 0);
	cr_assert_eq(list_count("", NULL), 0);
}

Test(psp_sandbox, unknown_paths_404_and_other_methods_405)
{
	response r = request("/v1/customers", NULL, NULL);
	assert_error(&r, 404, "invalid_request_error", NULL, NULL);
	free(r.body);
	r = request("/v1/charges/ch_doesnotexist", NULL, NULL);
	assert_error(&r, 404, "invalid_request_error", "resource_missing", NULL);
	free(r.body);
	r = request("/v1/refunds", NULL, NULL);
	assert_error(&r, 405, "invalid_request_error", NULL, NULL);
	free(r.body);
	r = request("/v1/charges?limit=3", NULL, NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_unknown", "limit");
	free(r.body);
}

/* ---- idempotency ---------------------------------------------------------- */

Test(psp_sandbox, same_key_same_parameters_replays_the_first_response)
{
	response first = charge(700, CARD_OK, "ord-i", "ord-i:k1");
	cr_assert_eq(first.status, 200);
	cr_assert_not(first.replayed);
	response again = charge(700, CARD_OK, "ord-i", "ord-i:k1");
	cr_assert_eq(again.status, 200);
	cr_assert(again.replayed, "no Idempotent-Replayed: true");
	cr_assert_str_eq(again.body, first.body);
	cr_assert_str_neq(again.request_id, first.request_id);
	/* The same parameters in another order and encoding are the same request. */
	response reordered = request(
	        "/v1/charges",
	        "metadata%5Border_id%5D=ord-i&card[name]=Zelda+Quixote-Holder&card[cvc]=" CVC
	        "&card[exp_year]=2031&card[exp_month]=12&card[number]=" CARD_OK "&currency=EUR&amount=700",
	        "ord-i:k1");
	cr_assert_eq(reordered.status, 200);
	cr_assert(reordered.replayed);
	cr_assert_str_eq(reordered.body, first.body);
	cr_assert_eq(list_count("ord-i", NULL), 1);
	/* A declined first response is replayed too: status and body. */
	response declined = charge(700, "4000000000000002", "ord-i", "ord-i:k2");
	cr_assert_eq(declined.status, 402);
	response declined_again = charge(700, "4000000000000002", "ord-i", "ord-i:k2");
	cr_assert_eq(declined_again.status, 402);
	cr_assert(declined_again.replayed);
	cr_assert_str_eq(declined_again.body, declined.body);
	cr_assert_eq(list_count("ord-i", NULL), 2);
	free(first.body);
	free(again.body);
	free(reordered.body);
	free(declined.body);
	free(declined_again.body);
}

Test(psp_sandbox, same_key_other_parameters_is_an_idempotency_error)
{
	response first = charge(700, CARD_OK, "ord-j", "ord-j:k");
	cr_assert_eq(first.status, 200);
	response other = charge(701, CARD_OK, "ord-j", "ord-j:k");
	assert_error(&other, 400, "idempotency_error", NULL, NULL);
	cr_assert_not(other.replayed);
	response other_card = charge(700, "5555555555554444", "ord-j", "ord-j:k");
	assert_error(&other_card, 400, "idempotency_error", NULL, NULL);
	/* The key of a charge cannot be used for a refund. */
	json_t *j = json_of(&first);
	char form[128];
	snprintf(form, sizeof form, "charge=%s", jstr(j, "id"));
	response refund = request("/v1/refunds", form, "ord-j:k");
	assert_error(&refund, 400, "idempotency_error", NULL, NULL);
	cr_assert_eq(list_count("ord-j", NULL), 1);
	json_decref(j);
	free(first.body);
	free(other.body);
	free(other_card.body);
	free(refund.body);
}

Test(psp_sandbox, a_request_rejected_as_invalid_is_not_stored_under_its_key)
{
	response bad = request("/v1/charges", "amount=1&currency=eur", "ord-v:k");
	assert_error(&bad, 400, "invalid_request_error", "parameter_missing", NULL);
	response good = charge(100, CARD_OK, "ord-v", "ord-v:k");
	cr_assert_eq(good.status, 200, "%s", good.body);
	cr_assert_not(good.replayed);
	free(bad.body);
	free(good.body);
}

/* ---- the silent card ------------------------------------------------------ */

Test(psp_sandbox, silent_card_charges_holds_then_replays)
{
	char form[512];
	charge_form(form, sizeof form, 990, CARD_SIL, "ord-s");
	int64_t t0 = th_now_ms();
	response r = request_full(base_url, "/v1/charges", form, KEY, "ord-s:k", NULL, 700);
	cr_assert_eq(r.curl, CURLE_OPERATION_TIMEDOUT, "%s", curl_easy_strerror(r.curl));
	cr_assert_eq(r.status, 0);
	free(r.body);
	/* The charge happened at the provider. */
	json_t *list = NULL;
	cr_assert_eq(list_count("ord-s", &list), 1);
	json_t *c = json_array_get(json_object_get(list, "data"), 0);
	cr_assert_str_eq(jstr(c, "status"), "succeeded");
	cr_assert_str_eq(jstr(c, "payment_method_details.card.last4"), "0309");
	char id[64];
	snprintf(id, sizeof id, "%s", jstr(c, "id"));
	json_decref(list);
	/* While held: 409 in use (the hold is 3 s; we are about 0.7 s in). */
	response busy = request("/v1/charges", form, "ord-s:k");
	cr_assert_lt(th_now_ms() - t0, HOLD_MS, "too slow to see the hold");
	assert_error(&busy, 409, "idempotency_error", "idempotency_key_in_use", NULL);
	free(busy.body);
	/* Another key is a new request: it is held as well, and is a second charge. */
	response other = request_full(base_url, "/v1/charges", form, KEY, "ord-s:other", NULL, 300);
	cr_assert_eq(other.curl, CURLE_OPERATION_TIMEDOUT);
	free(other.body);
	cr_assert_eq(list_count("ord-s", NULL), 2);
	/* After the hold: the stored 200 of that charge, replayed. */
	response after = {0};
	int64_t deadline = th_now_ms() + HOLD_MS + 10000;
	do {
		free(after.body);
		th_sleep_ms(100);
		after = request("/v1/charges", form, "ord-s:k");
	} while (after.status == 409 && th_now_ms() < deadline);
	cr_assert_eq(after.status, 200, "%s", after.body);
	cr_assert(after.replayed);
	cr_assert_geq(th_now_ms() - t0, HOLD_MS - 100);
	json_t *j = json_of(&after);
	cr_assert_str_eq(jstr(j, "id"), id);
	cr_assert_str_eq(jstr(j, "status"), "succeeded");
	json_decref(j);
	free(after.body);
	cr_assert_eq(list_count("ord-s", NULL), 2);
}

Test(psp_sandbox, a_held_connection_is_closed_unanswered_when_the_hold_ends)
{
	char form[512];
	charge_form(form, sizeof form, 990, CARD_SIL, "ord-h");
	int64_t t0 = th_now_ms();
	response r = request_full(base_url, "/v1/charges", form, KEY, NULL, NULL, HOLD_MS + 10000);
	int64_t waited = th_now_ms() - t0;
	cr_assert_eq(r.curl, CURLE_GOT_NOTHING, "%s", curl_easy_strerror(r.curl));
	cr_assert_geq(waited, HOLD_MS - 100);
	cr_assert_lt(waited, HOLD_MS + 5000);
	free(r.body);
	cr_assert_eq(list_count("ord-h", NULL), 1);
}

/* ---- refunds -------------------------------------------------------------- */

Test(psp_sandbox, refund_once_then_already_refunded)
{
	response c = charge(4200, CARD_OK, "ord-r", NULL);
	json_t *cj = json_of(&c);
	char form[128], path[64];
	snprintf(form, sizeof form, "charge=%s", jstr(cj, "id"));
	snprintf(path, sizeof path, "/v1/charges/%s", jstr(cj, "id"));
	response r = request("/v1/refunds", form, "ord-r:refund");
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *rj = json_of(&r);
	cr_assert_eq(strncmp(jstr(rj, "id"), "re_", 3), 0);
	cr_assert_eq(strlen(jstr(rj, "id")), 3 + 24);
	cr_assert_str_eq(jstr(rj, "object"), "refund");
	cr_assert_str_eq(jstr(rj, "charge"), jstr(cj, "id"));
	cr_assert_eq(jint(rj, "amount"), 4200);
	cr_assert_str_eq(jstr(rj, "status"), "succeeded");
	response g = request(path, NULL, NULL);
	json_t *gj = json_of(&g);
	cr_assert(json_is_true(json_object_get(gj, "refunded")));
	/* A retry with the same key replays the refund; without it, it is refused. */
	response again = request("/v1/refunds", form, "ord-r:refund");
	cr_assert_eq(again.status, 200);
	cr_assert(again.replayed);
	cr_assert_str_eq(again.body, r.body);
	response twice = request("/v1/refunds", form, NULL);
	assert_error(&twice, 400, "invalid_request_error", "charge_already_refunded", NULL);
	response twice_new_key = request("/v1/refunds", form, "ord-r:refund2");
	assert_error(&twice_new_key, 400, "invalid_request_error", "charge_already_refunded", NULL);
	json_decref(cj);
	json_decref(rj);
	json_decref(gj);
	free(c.body);
	free(r.body);
	free(g.body);
	free(again.body);
	free(twice.body);
	free(twice_new_key.body);
}

Test(psp_sandbox, refund_errors)
{
	response r = request("/v1/refunds", "charge=ch_nope", NULL);
	assert_error(&r, 404, "invalid_request_error", "resource_missing", "charge");
	free(r.body);
	r = request("/v1/refunds", "", NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_missing", "charge");
	free(r.body);
	r = request("/v1/refunds", "charge=ch_x&amount=5", NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_unknown", "amount");
	free(r.body);
	response d = charge(100, "4000000000000002", "ord-rf", NULL);
	json_t *dj = json_of(&d);
	char form[128];
	snprintf(form, sizeof form, "charge=%s", jstr(dj, "error.charge"));
	r = request("/v1/refunds", form, NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_invalid", "charge");
	free(r.body);
	json_decref(dj);
	free(d.body);
}

/* ---- the list ------------------------------------------------------------- */

Test(psp_sandbox, list_by_order_is_that_order_newest_first)
{
	char ids[3][64];
	const char *orders[] = {"ord-a", "ord-b", "ord-a"};
	for (int i = 0; i < 3; i++) {
		response r = charge(100 + i, CARD_OK, orders[i], NULL);
		json_t *j = json_of(&r);
		snprintf(ids[i], sizeof ids[i], "%s", jstr(j, "id"));
		json_decref(j);
		free(r.body);
	}
	json_t *list = NULL;
	cr_assert_eq(list_count("ord-a", &list), 2);
	json_t *data = json_object_get(list, "data");
	cr_assert_str_eq(jstr(json_array_get(data, 0), "id"), ids[2]);
	cr_assert_str_eq(jstr(json_array_get(data, 1), "id"), ids[0]);
	json_decref(list);
	cr_assert_eq(list_count("ord-b", NULL), 1);
	cr_assert_eq(list_count("ord-zzz", NULL), 0);
	/* Unencoded brackets work too; with no filter, every charge. */
	response all = request("/v1/charges?metadata[order_id]=ord-b", NULL, NULL);
	json_t *aj = json_of(&all);
	cr_assert_eq(json_array_size(json_object_get(aj, "data")), 1);
	json_decref(aj);
	free(all.body);
	all = request("/v1/charges", NULL, NULL);
	aj = json_of(&all);
	cr_assert_eq(json_array_size(json_object_get(aj, "data")), 3);
	json_decref(aj);
	free(all.body);
}

/* ---- the state file ------------------------------------------------------- */

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		fwrite(buf, 1, n, mem);
	fclose(f);
	fclose(mem);
	return text;
}

Test(psp_sandbox, state_file_survives_a_restart_without_card_numbers)
{
	char state[512];
	snprintf(state, sizeof state, "%s/psp-state.jsonl", work_dir);
	psp_sandbox_stop(sandbox);
	start_sandbox(state);
	response ok = charge(1000, CARD_OK, "ord-p", "ord-p:k");
	cr_assert_eq(ok.status, 200);
	response declined = charge(1000, "4000000000009995", "ord-p", "ord-p:k2");
	cr_assert_eq(declined.status, 402);
	char form[512];
	charge_form(form, sizeof form, 1000, CARD_SIL, "ord-p");
	response silent = request_full(base_url, "/v1/charges", form, KEY, "ord-p:silent", NULL, 300);
	cr_assert_eq(silent.curl, CURLE_OPERATION_TIMEDOUT);
	free(silent.body);
	json_t *okj = json_of(&ok);
	char refund_form[128];
	snprintf(refund_form, sizeof refund_form, "charge=%s", jstr(okj, "id"));
	response refund = request("/v1/refunds", refund_form, "ord-p:refund");
	cr_assert_eq(refund.status, 200);
	/* Stopped while the silent request is still held. */
	psp_sandbox_stop(sandbox);
	sandbox = NULL;

	char *text = read_all(state);
	const char *secrets[] = {CARD_OK, "4000000000009995", CARD_SIL, HOLDER, "Zelda", "\"cvc\"", "card["};
	for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
		cr_assert_null(strstr(text, secrets[i]), "the state file holds '%s'", secrets[i]);
	cr_assert_not_null(strstr(text, "\"last4\":\"4242\""));
	free(text);

	start_sandbox(state);
	json_t *list = NULL;
	cr_assert_eq(list_count("ord-p", &list), 3);
	json_t *data = json_object_get(list, "data");
	cr_assert_str_eq(jstr(json_array_get(data, 2), "id"), jstr(okj, "id"));
	cr_assert(json_is_true(json_object_get(json_array_get(data, 2), "refunded")));
	cr_assert_str_eq(jstr(json_array_get(data, 1), "status"), "failed");
	cr_assert_str_eq(jstr(json_array_get(data, 0), "status"), "succeeded");
	json_decref(list);
	/* Replays survive, the silent one included (the charge happened). */
	response again = charge(1000, CARD_OK, "ord-p", "ord-p:k");
	cr_assert_eq(again.status, 200);
	cr_assert(again.replayed);
	cr_assert_str_eq(again.body, ok.body);
	response declined_again = charge(1000, "4000000000009995", "ord-p", "ord-p:k2");
	cr_assert_eq(declined_again.status, 402);
	cr_assert(declined_again.replayed);
	cr_assert_str_eq(declined_again.body, declined.body);
	response silent_again = request("/v1/charges", form, "ord-p:silent");
	cr_assert_eq(silent_again.status, 200, "%s", silent_again.body);
	cr_assert(silent_again.replayed);
	response refund_twice = request("/v1/refunds", refund_form, NULL);
	assert_error(&refund_twice, 400, "invalid_request_error", "charge_already_refunded", NULL);
	response refund_again = request("/v1/refunds", refund_form, "ord-p:refund");
	cr_assert_eq(refund_again.status, 200);
	cr_assert_str_eq(refund_again.body, refund.body);
	/* New charges still work and are appended. */
	response fresh = charge(5, CARD_OK, "ord-p", NULL);
	cr_assert_eq(fresh.status, 200);
	cr_assert_eq(list_count("ord-p", NULL), 4);
	json_decref(okj);
	free(ok.body);
	free(declined.body);
	free(refund.body);
	free(again.body);
	free(declined_again.body);
	free(silent_again.body);
	free(refund_twice.body);
	free(refund_again.body);
	free(fresh.body);
}

Test(psp_sandbox, a_torn_last_line_is_skipped)
{
	char state[512];
	snprintf(state, sizeof state, "%s/torn.jsonl", work_dir);
	psp_sandbox_stop(sandbox);
	start_sandbox(state);
	response ok = charge(1000, CARD_OK, "ord-t", NULL);
	cr_assert_eq(ok.status, 200);
	free(ok.body);
	psp_sandbox_stop(sandbox);
	sandbox = NULL;
	FILE *f = fopen(state, "a");
	cr_assert_not_null(f);
	fputs("{\"type\":\"charge\",\"charge\":{\"id\":\"ch_tor", f);
	fclose(f);
	start_sandbox(state);
	cr_assert_eq(list_count("ord-t", NULL), 1);
	response second = charge(1000, CARD_OK, "ord-t", NULL);
	cr_assert_eq(second.status, 200);
	free(second.body);
	psp_sandbox_stop(sandbox);
	sandbox = NULL;
	start_sandbox(state);
	cr_assert_eq(list_count("ord-t", NULL), 2);
}

Test(psp_sandbox, start_rejects_bad_options)
{
	psp_sandbox_options o;
	psp_sandbox *s = NULL;
	psp_sandbox_options_init(&o);
	cr_assert_eq(psp_sandbox_start(&o, &s), ORN_EINVAL); /* no key */
	cr_assert_null(s);
	o.api_key = KEY;
	o.listen = "127.0.0.1";
	cr_assert_eq(psp_sandbox_start(&o, &s), ORN_EINVAL);
	o.listen = "127.0.0.1:99999";
	cr_assert_eq(psp_sandbox_start(&o, &s), ORN_EINVAL);
	char taken[64];
	snprintf(taken, sizeof taken, "127.0.0.1:%u", (unsigned)psp_sandbox_port(sandbox));
	o.listen = taken;
	cr_assert_eq(psp_sandbox_start(&o, &s), ORN_EUNAVAILABLE);
	o.listen = "127.0.0.1:0";
	o.state_file = work_dir; /* a directory */
	cr_assert_neq(psp_sandbox_start(&o, &s), ORN_OK);
	cr_assert_null(s);
}

/* ---- the binary ----------------------------------------------------------- */

Test(psp_sandbox, orion_psp_sandbox_command)
{
	char log_path[512], state[512], url[128];
	snprintf(log_path, sizeof log_path, "%s/psp.log", work_dir);
	snprintf(state, sizeof state, "%s/bin-state.jsonl", work_dir);
	char *argv[] = {
	        (char *)th_orion_bin(), "psp-sandbox", "--listen", "127.0.0.1:0", "--state", state, NULL};
	char *env[] = {"ORION_PSP_KEY=sk_test_from_env", NULL};
	child = th_spawn(argv, env, log_path);
	cr_assert(th_wait_for_file_line(log_path, "PSP sandbox listening on http://127.0.0.1:", 10000),
	          "the sandbox did not come up");
	char *text = read_all(log_path);
	const char *at = strstr(text, "PSP sandbox listening on ");
	unsigned port = 0;
	cr_assert_eq(sscanf(at, "PSP sandbox listening on http://127.0.0.1:%u", &port), 1);
	free(text);
	cr_assert_gt(port, 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%u", port);
	char form[512];
	charge_form(form, sizeof form, 321, CARD_OK, "ord-bin");
	response bad = request_full(url, "/v1/charges", form, KEY, NULL, NULL, 10000);
	cr_assert_eq(bad.status, 401);
	free(bad.body);
	response r = request_full(url, "/v1/charges", form, "sk_test_from_env", NULL, NULL, 10000);
	cr_assert_eq(r.curl, CURLE_OK);
	cr_assert_eq(r.status, 200, "%s", r.body);
	free(r.body);
	th_kill(child, SIGTERM);
	cr_assert_eq(th_wait_exit(child, 10000), 0);
	child = 0;
	text = read_all(log_path);
	cr_assert_null(strstr(text, CARD_OK), "the log holds the card number");
	cr_assert_null(strstr(text, "Zelda"), "the log holds the holder's name");
	free(text);
	text = read_all(state);
	cr_assert_not_null(strstr(text, "ord-bin"));
	cr_assert_null(strstr(text, CARD_OK));
	free(text);
}
