/* test_psp_sandbox.c — the card payment provider sandbox (psp/psp_sandbox.c)
 * over real HTTP with libcurl, against the contract of ADR 028 section 1
 * (payment methods, intents, 3-D Secure, refunds by intent, signed webhooks
 * to a small receiver run here) and ADR 009 section 1's idempotency.
 *
 * Each test starts its own sandbox in-process on 127.0.0.1:0 (and one test
 * the `orion psp-sandbox` binary): approvals, every decline card, auth,
 * strict parameters, idempotent replays and key reuse, the silent card
 * (client timeout, intent visible as succeeded, 409 while held, replay
 * after the hold), refunds, the list by metadata[order_id], and the state
 * file across a restart, which must never contain a card number. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>

#include "harness.h"
#include "psp_sandbox.h"

#define KEY         "sk_test_psp_suite"
#define PK          "pk_test_psp_suite"
#define WHSEC       "whsec_test_psp_suite"
#define SHOP        "https://shop.example"
#define HOLD_MS     3000
#define CARD_OK     "4242424242424242"
#define CARD_SIL    "4000000000000309"
#define CARD_3DS    "4000002500003155"
#define CARD_REFUND "4000000000005126"
#define CVC         "947"
#define PM_REST     "&card[exp_month]=12&card[exp_year]=2031&card[cvc]=" CVC

static psp_sandbox *sandbox;
static char base_url[64];
static char *work_dir;
static pid_t child;
static char hook_url[128]; /* "": no webhooks */

static void start_sandbox(const char *state_file)
{
	psp_sandbox_options o;
	psp_sandbox_options_init(&o);
	o.api_key = KEY;
	o.state_file = state_file;
	o.silent_hold_ms = HOLD_MS;
	o.publishable_key = PK;
	o.webhook_secret = WHSEC;
	o.webhook_url = hook_url;
	o.cors_origins = SHOP ", http://localhost:5173/";
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
	char allow_origin[128];
	char allow_headers[128];
	char vary[64];
	char location[512];
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
	header_value(data, size * n, "Access-Control-Allow-Origin", r->allow_origin, sizeof r->allow_origin);
	header_value(data, size * n, "Access-Control-Allow-Headers", r->allow_headers,
	             sizeof r->allow_headers);
	header_value(data, size * n, "Vary", r->vary, sizeof r->vary);
	header_value(data, size * n, "Location", r->location, sizeof r->location);
	if (strcmp(replayed, "true") == 0)
		r->replayed = true;
	return size * n;
}

/* One request; form NULL means GET (method, if not NULL, overrides it).
 * auth NULL sends no Authorization. */
static response request_method(const char *method, const char *base, const char *path, const char *form,
                               const char *auth, const char *idempotency_key, const char *extra_header,
                               long timeout_ms)
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
	if (method != NULL)
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
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

static response request_full(const char *base, const char *path, const char *form, const char *auth,
                             const char *idempotency_key, const char *extra_header, long timeout_ms)
{
	return request_method(NULL, base, path, form, auth, idempotency_key, extra_header, timeout_ms);
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

/* ---- payment methods and intents ------------------------------------------ */

/* A payment method of number, made with the publishable key; its id. */
static char *payment_method(const char *number)
{
	char form[256];
	snprintf(form, sizeof form, "type=card&card[number]=%s" PM_REST, number);
	response r = request_full(base_url, "/v1/payment_methods", form, PK, NULL, NULL, 10000);
	cr_assert_eq(r.status, 200, "%s: %s", number, r.body);
	json_t *j = json_of(&r);
	char *id = strdup(jstr(j, "id"));
	json_decref(j);
	free(r.body);
	return id;
}

/* POST /v1/payment_intents for a new payment method of number. */
static response intent_for(const char *number, long amount, const char *order_id, const char *return_url,
                           const char *key)
{
	char form[1024];
	char *pm = payment_method(number);
	snprintf(form, sizeof form, "amount=%ld&currency=eur&payment_method=%s&confirm=true%s%s%s%s", amount,
	         pm, order_id != NULL ? "&metadata[order_id]=" : "", order_id != NULL ? order_id : "",
	         return_url != NULL ? "&return_url=" : "", return_url != NULL ? return_url : "");
	free(pm);
	return request("/v1/payment_intents", form, key);
}

/* The intent of an answer (the body, or error.payment_intent of a 402). */
static json_t *intent_of(const response *r)
{
	json_t *j = json_of(r);
	json_t *pi = json_object_get(json_object_get(j, "error"), "payment_intent");
	json_t *out = json_incref(pi != NULL ? pi : j);
	json_decref(j);
	return out;
}

static json_t *get_intent(const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/payment_intents/%s", id);
	response r = request(path, NULL, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *j = json_of(&r);
	free(r.body);
	return j;
}

static size_t list_intents(const char *order_id)
{
	char path[256];
	snprintf(path, sizeof path, "/v1/payment_intents?metadata%%5Border_id%%5D=%s", order_id);
	response r = request(path, NULL, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *j = json_of(&r);
	size_t n = json_array_size(json_object_get(j, "data"));
	json_decref(j);
	free(r.body);
	return n;
}

static response refund_of(const char *intent_id, const char *amount, const char *key)
{
	char form[128];
	snprintf(form, sizeof form, "payment_intent=%s%s%s", intent_id, amount != NULL ? "&amount=" : "",
	         amount != NULL ? amount : "");
	return request("/v1/refunds", form, key);
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
	char ok_form[256], declined_form[256], silent_form[256];
	char *pm = payment_method(CARD_OK);
	snprintf(ok_form, sizeof ok_form,
	         "amount=1000&currency=eur&payment_method=%s&metadata[order_id]=ord-p", pm);
	free(pm);
	pm = payment_method("4000000000009995");
	snprintf(declined_form, sizeof declined_form,
	         "amount=1000&currency=eur&payment_method=%s&metadata[order_id]=ord-p", pm);
	free(pm);
	pm = payment_method(CARD_SIL);
	snprintf(silent_form, sizeof silent_form,
	         "amount=1000&currency=eur&payment_method=%s&metadata[order_id]=ord-p", pm);
	free(pm);
	response ok = request("/v1/payment_intents", ok_form, "ord-p:k");
	cr_assert_eq(ok.status, 200);
	response declined = request("/v1/payment_intents", declined_form, "ord-p:k2");
	cr_assert_eq(declined.status, 402);
	response silent =
	        request_full(base_url, "/v1/payment_intents", silent_form, KEY, "ord-p:silent", NULL, 300);
	cr_assert_eq(silent.curl, CURLE_OPERATION_TIMEDOUT);
	free(silent.body);
	json_t *okj = json_of(&ok);
	response refund = refund_of(jstr(okj, "id"), NULL, "ord-p:refund");
	cr_assert_eq(refund.status, 200);
	/* Stopped while the silent request is still held. */
	psp_sandbox_stop(sandbox);
	sandbox = NULL;

	char *text = read_all(state);
	const char *secrets[] = {CARD_OK,       "4000000000009995", CARD_SIL, "=" CVC,
	                         "\"" CVC "\"", "\"cvc\"",          "card["};
	for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
		cr_assert_null(strstr(text, secrets[i]), "the state file holds '%s'", secrets[i]);
	cr_assert_not_null(strstr(text, "\"last4\":\"4242\""));
	free(text);

	start_sandbox(state);
	response list = request("/v1/payment_intents?metadata%5Border_id%5D=ord-p", NULL, NULL);
	json_t *lj = json_of(&list);
	free(list.body);
	json_t *data = json_object_get(lj, "data");
	cr_assert_eq(json_array_size(data), 3);
	cr_assert_str_eq(jstr(json_array_get(data, 2), "id"), jstr(okj, "id"));
	cr_assert_eq(jint(json_array_get(data, 2), "amount_refunded"), 1000);
	cr_assert_str_eq(jstr(json_array_get(data, 1), "status"), "requires_payment_method");
	cr_assert_str_eq(jstr(json_array_get(data, 0), "status"), "succeeded");
	json_decref(lj);
	/* Replays survive, the silent one included (the payment happened). */
	response again = request("/v1/payment_intents", ok_form, "ord-p:k");
	cr_assert_eq(again.status, 200);
	cr_assert(again.replayed);
	cr_assert_str_eq(again.body, ok.body);
	response declined_again = request("/v1/payment_intents", declined_form, "ord-p:k2");
	cr_assert_eq(declined_again.status, 402);
	cr_assert(declined_again.replayed);
	cr_assert_str_eq(declined_again.body, declined.body);
	response silent_again = request("/v1/payment_intents", silent_form, "ord-p:silent");
	cr_assert_eq(silent_again.status, 200, "%s", silent_again.body);
	cr_assert(silent_again.replayed);
	response refund_twice = refund_of(jstr(okj, "id"), NULL, NULL);
	assert_error(&refund_twice, 400, "invalid_request_error", "charge_already_refunded", NULL);
	response refund_again = refund_of(jstr(okj, "id"), NULL, "ord-p:refund");
	cr_assert_eq(refund_again.status, 200);
	cr_assert_str_eq(refund_again.body, refund.body);
	/* New intents still work and are appended. */
	response fresh = request("/v1/payment_intents", ok_form, NULL);
	cr_assert_eq(fresh.status, 200);
	cr_assert_eq(list_intents("ord-p"), 4);
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
	response ok = intent_for(CARD_OK, 1000, "ord-t", NULL, NULL);
	cr_assert_eq(ok.status, 200);
	free(ok.body);
	psp_sandbox_stop(sandbox);
	sandbox = NULL;
	FILE *f = fopen(state, "a");
	cr_assert_not_null(f);
	fputs("{\"type\":\"intent\",\"intent\":{\"id\":\"pi_tor", f);
	fclose(f);
	start_sandbox(state);
	cr_assert_eq(list_intents("ord-t"), 1);
	response second = intent_for(CARD_OK, 1000, "ord-t", NULL, NULL);
	cr_assert_eq(second.status, 200);
	free(second.body);
	psp_sandbox_stop(sandbox);
	sandbox = NULL;
	start_sandbox(state);
	cr_assert_eq(list_intents("ord-t"), 2);
}

/* Starts the sandbox on state with stderr (the log) going to log_path. */
static void start_sandbox_logging(const char *state, const char *log_path)
{
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	FILE *log = fopen(log_path, "w");
	cr_assert(saved >= 0 && log != NULL);
	dup2(fileno(log), STDERR_FILENO);
	start_sandbox(state);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	fclose(log);
}

static size_t count_lines_with(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *at = strstr(text, needle); at != NULL; at = strstr(at + 1, needle))
		n++;
	return n;
}

/* The line of text holding needle (copied into out), or false. */
static bool line_with(const char *text, const char *needle, char *out, size_t cap)
{
	const char *at = strstr(text, needle);
	if (at == NULL)
		return false;
	const char *start = at, *end = strchr(at, '\n');
	while (start > text && start[-1] != '\n')
		start--;
	snprintf(out, cap, "%.*s", (int)(end != NULL ? end - start : (long)strlen(start)), start);
	return true;
}

/* A state file of a sandbox that still had ADR 009's charge API: its charge
 * and refund-by-charge lines are skipped with one info line, never a failed
 * start; everything else in it is back. */
Test(psp_sandbox, a_state_file_with_charges_of_before_still_loads)
{
	static const char charge_body[] =
	        "{\\\"id\\\":\\\"ch_old1\\\",\\\"object\\\":\\\"charge\\\",\\\"amount\\\":1000}";
	char state[512], log_path[512];
	snprintf(state, sizeof state, "%s/old.jsonl", work_dir);
	snprintf(log_path, sizeof log_path, "%s/old.log", work_dir);
	FILE *f = fopen(state, "w");
	cr_assert_not_null(f);
	fputs("{\"type\":\"charge\",\"charge\":{\"id\":\"ch_old1\",\"object\":\"charge\",\"amount\":1000,"
	      "\"currency\":\"eur\",\"status\":\"succeeded\",\"paid\":true,\"refunded\":false,\"metadata\":"
	      "{\"order_id\":\"ord-old\"},\"payment_method_details\":{\"type\":\"card\",\"card\":{\"brand\":"
	      "\"visa\",\"last4\":\"4242\",\"exp_month\":12,\"exp_year\":2031}},\"created\":1760000000}}\n",
	      f);
	fprintf(f,
	        "{\"type\":\"idempotency\",\"key\":\"ord-old:k\",\"digest\":\"%064d\",\"status\":200,"
	        "\"body\":\"%s\"}\n",
	        0, charge_body);
	fputs("{\"type\":\"charge\",\"charge\":{\"id\":\"ch_old2\",\"object\":\"charge\",\"amount\":500,"
	      "\"currency\":\"eur\",\"status\":\"failed\",\"paid\":false,\"refunded\":false,\"metadata\":{},"
	      "\"payment_method_details\":{\"type\":\"card\",\"card\":{\"brand\":\"visa\",\"last4\":\"0002\","
	      "\"exp_month\":12,\"exp_year\":2031}},\"created\":1760000001,\"failure_code\":\"card_"
	      "declined\"}}\n",
	      f);
	fputs("{\"type\":\"refund\",\"refund\":{\"id\":\"re_old1\",\"object\":\"refund\",\"charge\":\"ch_"
	      "old1\","
	      "\"amount\":1000,\"currency\":\"eur\",\"status\":\"succeeded\",\"created\":1760000002}}\n",
	      f);
	fputs("{\"type\":\"payment_method\",\"payment_method\":{\"id\":\"pm_old1\",\"object\":\"payment_"
	      "method\","
	      "\"type\":\"card\",\"card\":{\"brand\":\"visa\",\"last4\":\"4242\",\"exp_month\":12,\"exp_"
	      "year\":"
	      "2031},\"created\":1760000003,\"behaviour\":\"approve\"}}\n",
	      f);
	fputs("{\"type\":\"intent\",\"intent\":{\"id\":\"pi_old1\",\"amount\":700,\"currency\":\"eur\","
	      "\"status\":"
	      "\"succeeded\",\"payment_method\":\"pm_old1\",\"behaviour\":\"approve\",\"charge\":\"ch_old3\","
	      "\"order_id\":\"ord-old\",\"return_url\":null,\"error_code\":\"\",\"decline_code\":\"\","
	      "\"amount_refunded\":0,\"refund_attempts\":0,\"created\":1760000004}}\n",
	      f);
	fclose(f);
	psp_sandbox_stop(sandbox);
	start_sandbox_logging(state, log_path);
	char *log = read_all(log_path), line[512];
	cr_assert_eq(count_lines_with(log, "charge API is gone"), 1, "%s", log);
	cr_assert(line_with(log, "charge API is gone", line, sizeof line));
	cr_assert_not_null(strstr(line, "\"level\":\"info\""), "%s", line);
	cr_assert_not_null(strstr(line, "\"lines\":\"3\""), "two charges and a refund: %s", line);
	cr_assert_null(strstr(log, "bad line"), "%s", log);
	cr_assert_null(strstr(log, "\"level\":\"warn\""), "%s", log);
	cr_assert_null(strstr(log, "\"level\":\"error\""), "%s", log);
	free(log);
	/* the intent and its payment method are back, and refundable */
	json_t *pi = get_intent("pi_old1");
	cr_assert_str_eq(jstr(pi, "status"), "succeeded");
	cr_assert_str_eq(jstr(pi, "latest_charge"), "ch_old3");
	json_decref(pi);
	cr_assert_eq(list_intents("ord-old"), 1);
	response r = request("/v1/payment_methods/pm_old1", NULL, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	free(r.body);
	r = refund_of("pi_old1", "200", NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	free(r.body);
	/* the charges are not */
	r = request("/v1/charges/ch_old1", NULL, NULL);
	assert_error(&r, 404, "invalid_request_error", NULL, NULL);
	free(r.body);
	r = request("/v1/refunds", "charge=ch_old1", NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_unknown", "charge");
	free(r.body);
	/* the old key keeps its record: it names another endpoint's request */
	r = request("/v1/payment_intents", "amount=100&currency=eur&payment_method=pm_old1", "ord-old:k");
	assert_error(&r, 400, "idempotency_error", NULL, NULL);
	free(r.body);
	/* and the file, appended to, loads again the same way */
	response fresh =
	        request("/v1/payment_intents",
	                "amount=100&currency=eur&payment_method=pm_old1&metadata[order_id]=ord-old", NULL);
	cr_assert_eq(fresh.status, 200, "%s", fresh.body);
	free(fresh.body);
	psp_sandbox_stop(sandbox);
	sandbox = NULL;
	start_sandbox_logging(state, log_path);
	log = read_all(log_path);
	cr_assert_eq(count_lines_with(log, "charge API is gone"), 1, "%s", log);
	free(log);
	cr_assert_eq(list_intents("ord-old"), 2);
	pi = get_intent("pi_old1");
	cr_assert_eq(jint(pi, "amount_refunded"), 200);
	json_decref(pi);
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
	char *argv[] = {(char *)th_orion_bin(),
	                "psp-sandbox",
	                "--listen",
	                "127.0.0.1:0",
	                "--state",
	                state,
	                "--publishable-key",
	                "pk_test_from_flag",
	                "--cors-origins",
	                SHOP,
	                "--public-url",
	                "https://psp.example/",
	                NULL};
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
	/* the key from the environment, not another */
	snprintf(form, sizeof form, "type=card&card[number]=%s" PM_REST, CARD_OK);
	response r = request_full(url, "/v1/payment_methods", form, "sk_test_from_env", NULL, NULL, 10000);
	cr_assert_eq(r.curl, CURLE_OK);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *pm = json_of(&r);
	free(r.body);
	snprintf(form, sizeof form, "amount=321&currency=eur&payment_method=%s&metadata[order_id]=ord-bin",
	         jstr(pm, "id"));
	json_decref(pm);
	response bad = request_full(url, "/v1/payment_intents", form, KEY, NULL, NULL, 10000);
	cr_assert_eq(bad.status, 401);
	free(bad.body);
	r = request_full(url, "/v1/payment_intents", form, "sk_test_from_env", NULL, NULL, 10000);
	cr_assert_eq(r.curl, CURLE_OK);
	cr_assert_eq(r.status, 200, "%s", r.body);
	free(r.body);
	/* a refused card's holder name reaches neither the log nor the state */
	r = request_full(url, "/v1/payment_methods",
	                 "type=card&card[number]=" CARD_OK PM_REST "&card[name]=Zelda+Quixote-Holder",
	                 "sk_test_from_env", NULL, NULL, 10000);
	cr_assert_eq(r.status, 400, "%s", r.body);
	free(r.body);
	/* the ADR 028 options */
	snprintf(form, sizeof form, "type=card&card[number]=%s" PM_REST, CARD_3DS);
	r = request_full(url, "/v1/payment_methods", form, "pk_test_from_flag", NULL, "Origin: " SHOP, 10000);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_assert_str_eq(r.allow_origin, SHOP);
	pm = json_of(&r);
	free(r.body);
	snprintf(form, sizeof form, "amount=100&currency=eur&payment_method=%s", jstr(pm, "id"));
	json_decref(pm);
	r = request_full(url, "/v1/payment_intents", form, "sk_test_from_env", NULL, NULL, 10000);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *pi = json_of(&r);
	cr_assert_eq(
	        strncmp(jstr(pi, "next_action.redirect_to_url.url"), "https://psp.example/v1/3ds/pi_", 30), 0,
	        "%s", r.body);
	json_decref(pi);
	free(r.body);
	th_kill(child, SIGTERM);
	cr_assert_eq(th_wait_exit(child, 10000), 0);
	child = 0;
	text = read_all(log_path);
	cr_assert_null(strstr(text, CARD_OK), "the log holds the card number");
	cr_assert_null(strstr(text, CARD_3DS), "the log holds the card number");
	cr_assert_null(strstr(text, "Zelda"), "the log holds the holder's name");
	free(text);
	text = read_all(state);
	cr_assert_not_null(strstr(text, "ord-bin"));
	cr_assert_null(strstr(text, CARD_OK));
	cr_assert_null(strstr(text, "Zelda"));
	cr_assert_null(strstr(text, CARD_3DS));
	cr_assert_not_null(strstr(text, "\"behaviour\":\"requires_3ds\""));
	free(text);
}

/* ==== ADR 028: payment methods, intents, 3-D Secure, refunds, webhooks ==== */

Test(psp_sandbox, payment_method_keeps_no_number_and_checks_the_card)
{
	char form[256];
	snprintf(form, sizeof form, "type=card&card[number]=%s" PM_REST, CARD_OK);
	response r = request_full(base_url, "/v1/payment_methods", form, PK, NULL, NULL, 10000);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *j = json_of(&r);
	cr_assert_eq(strncmp(jstr(j, "id"), "pm_", 3), 0);
	cr_assert_str_eq(jstr(j, "object"), "payment_method");
	cr_assert_str_eq(jstr(j, "type"), "card");
	cr_assert_str_eq(jstr(j, "card.brand"), "visa");
	cr_assert_str_eq(jstr(j, "card.last4"), "4242");
	cr_assert_eq(jint(j, "card.exp_month"), 12);
	cr_assert_eq(jint(j, "card.exp_year"), 2031);
	cr_assert_gt(jint(j, "created"), 1700000000);
	cr_assert_null(strstr(r.body, CARD_OK));
	cr_assert_null(strstr(r.body, CVC));
	/* the merchant reads it back with the secret key (brand and last 4 for its records) */
	char path[128];
	snprintf(path, sizeof path, "/v1/payment_methods/%s", jstr(j, "id"));
	json_decref(j);
	free(r.body);
	r = request(path, NULL, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	j = json_of(&r);
	cr_assert_str_eq(jstr(j, "card.brand"), "visa");
	cr_assert_str_eq(jstr(j, "card.last4"), "4242");
	cr_assert_null(strstr(r.body, CARD_OK));
	json_decref(j);
	free(r.body);
	r = request("/v1/payment_methods/pm_nobody", NULL, NULL);
	assert_error(&r, 404, "invalid_request_error", "resource_missing", "id");
	free(r.body);
	r = request_full(base_url, path, NULL, PK, NULL, NULL, 10000);
	cr_assert_eq(r.status, 401, "reading a payment method takes the secret key: %s", r.body);
	free(r.body);
	/* the secret key may create one too */
	r = request("/v1/payment_methods", form, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	free(r.body);
	const struct {
		const char *form;
		long status;
		const char *type, *code, *param;
	} cases[] = {
	        {"type=card&card[number]=4242424242424241" PM_REST, 402, "card_error", "incorrect_number",
	         "card[number]"},
	        {"type=card&card[number]=4242424242424242&card[exp_month]=13&card[exp_year]=2031&card[cvc]="
	         "123",
	         402, "card_error", "invalid_expiry_month", "card[exp_month]"},
	        {"type=card&card[number]=4242424242424242&card[exp_month]=1&card[exp_year]=2020&card[cvc]="
	         "123",
	         402, "card_error", "invalid_expiry_year", "card[exp_year]"},
	        {"type=card&card[number]=4242424242424242&card[exp_month]=1&card[exp_year]=2031&card[cvc]="
	         "1x3",
	         402, "card_error", "invalid_cvc", "card[cvc]"},
	        {"type=card&card[number]=4242424242424242&card[exp_month]=1&card[exp_year]=2031", 400,
	         "invalid_request_error", "parameter_missing", "card[cvc]"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		r = request_full(base_url, "/v1/payment_methods", cases[i].form, PK, NULL, NULL, 10000);
		assert_error(&r, cases[i].status, cases[i].type, cases[i].code, cases[i].param);
		cr_assert_null(strstr(r.body, "424242424242"), "%s", r.body);
		free(r.body);
	}
	/* the publishable key is for payment methods only */
	r = request_full(base_url, "/v1/payment_intents", "amount=1&currency=eur&payment_method=pm_x", PK,
	                 NULL, NULL, 10000);
	assert_error(&r, 401, "invalid_request_error", NULL, NULL);
	free(r.body);
	r = request_full(base_url, "/v1/events", NULL, PK, NULL, NULL, 10000);
	cr_assert_eq(r.status, 401);
	free(r.body);
}

Test(psp_sandbox, cors_for_allowed_origins_only)
{
	char form[256];
	snprintf(form, sizeof form, "type=card&card[number]=%s" PM_REST, CARD_OK);
	response pre = request_method("OPTIONS", base_url, "/v1/payment_methods", NULL, NULL, NULL,
	                              "Origin: " SHOP, 10000);
	cr_assert_eq(pre.status, 204);
	cr_assert_str_eq(pre.allow_origin, SHOP);
	cr_assert_str_eq(pre.vary, "Origin");
	cr_assert_not_null(strstr(pre.allow_headers, "Authorization"));
	cr_assert_not_null(strstr(pre.allow_headers, "Content-Type"));
	free(pre.body);
	response post = request_full(base_url, "/v1/payment_methods", form, PK, NULL, "Origin: " SHOP, 10000);
	cr_assert_eq(post.status, 200, "%s", post.body);
	cr_assert_str_eq(post.allow_origin, SHOP);
	cr_assert_str_eq(post.vary, "Origin");
	free(post.body);
	/* the second origin of the list, given with a trailing slash */
	post = request_full(base_url, "/v1/payment_methods", form, PK, NULL, "Origin: http://localhost:5173",
	                    10000);
	cr_assert_str_eq(post.allow_origin, "http://localhost:5173");
	free(post.body);
	/* an error answer carries them too (the browser must be able to read it) */
	post = request_full(base_url, "/v1/payment_methods", "type=card", PK, NULL, "Origin: " SHOP, 10000);
	cr_assert_eq(post.status, 400);
	cr_assert_str_eq(post.allow_origin, SHOP);
	free(post.body);
	pre = request_method("OPTIONS", base_url, "/v1/payment_methods", NULL, NULL, NULL,
	                     "Origin: https://evil.example", 10000);
	cr_assert_eq(pre.status, 204);
	cr_assert_str_eq(pre.allow_origin, "");
	cr_assert_str_eq(pre.allow_headers, "");
	cr_assert_str_eq(pre.vary, "Origin");
	free(pre.body);
	post = request_full(base_url, "/v1/payment_methods", form, PK, NULL, "Origin: https://evil.example",
	                    10000);
	cr_assert_eq(post.status, 200);
	cr_assert_str_eq(post.allow_origin, "");
	free(post.body);
	post = request_full(base_url, "/v1/payment_methods", form, PK, NULL,
	                    "Origin: https://shop.example.evil", 10000);
	cr_assert_str_eq(post.allow_origin, "");
	free(post.body);
	/* no CORS on the server-side routes */
	response list =
	        request_full(base_url, "/v1/payment_intents", NULL, KEY, NULL, "Origin: " SHOP, 10000);
	cr_assert_eq(list.status, 200);
	cr_assert_str_eq(list.allow_origin, "");
	free(list.body);
}

Test(psp_sandbox, each_test_card_confirms_to_its_outcome)
{
	const struct {
		const char *number;
		long status;
		const char *intent_status, *code, *decline_code;
	} cases[] = {
	        {CARD_OK, 200, "succeeded", NULL, NULL},
	        {"5555555555554444", 200, "succeeded", NULL, NULL},
	        {CARD_REFUND, 200, "succeeded", NULL, NULL},
	        {"4000000000000002", 402, "requires_payment_method", "card_declined", "generic_decline"},
	        {"4000000000009995", 402, "requires_payment_method", "card_declined", "insufficient_funds"},
	        {"4000000000000069", 402, "requires_payment_method", "expired_card", "expired_card"},
	        {"4000000000000127", 402, "requires_payment_method", "incorrect_cvc", "incorrect_cvc"},
	        {CARD_3DS, 200, "requires_action", NULL, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		response r = intent_for(cases[i].number, 1250, "ord-cards", NULL, NULL);
		cr_assert_eq(r.status, cases[i].status, "%s: %s", cases[i].number, r.body);
		json_t *pi = intent_of(&r);
		cr_assert_eq(strncmp(jstr(pi, "id"), "pi_", 3), 0);
		cr_assert_str_eq(jstr(pi, "object"), "payment_intent");
		cr_assert_eq(jint(pi, "amount"), 1250);
		cr_assert_str_eq(jstr(pi, "currency"), "eur");
		cr_assert_str_eq(jstr(pi, "status"), cases[i].intent_status, "%s", cases[i].number);
		cr_assert_eq(strncmp(jstr(pi, "payment_method"), "pm_", 3), 0);
		cr_assert_str_eq(jstr(pi, "metadata.order_id"), "ord-cards");
		cr_assert_eq(jint(pi, "amount_refunded"), 0);
		if (cases[i].status == 402) {
			json_t *j = json_of(&r);
			cr_assert_str_eq(jstr(j, "error.type"), "card_error");
			cr_assert_str_eq(jstr(j, "error.code"), cases[i].code);
			cr_assert_str_eq(jstr(j, "error.decline_code"), cases[i].decline_code);
			cr_assert_not_null(jstr(j, "error.message"));
			json_decref(j);
			cr_assert_str_eq(jstr(pi, "last_payment_error.type"), "card_error");
			cr_assert_str_eq(jstr(pi, "last_payment_error.code"), cases[i].code);
			cr_assert_str_eq(jstr(pi, "last_payment_error.decline_code"), cases[i].decline_code);
			cr_assert(json_is_null(json_object_get(pi, "latest_charge")));
		} else {
			cr_assert(json_is_null(json_object_get(pi, "last_payment_error")));
		}
		if (strcmp(cases[i].intent_status, "succeeded") == 0) {
			cr_assert_eq(strncmp(jstr(pi, "latest_charge"), "ch_", 3), 0);
			cr_assert(json_is_null(json_object_get(pi, "next_action")));
		}
		if (strcmp(cases[i].intent_status, "requires_action") == 0) {
			char url[256];
			snprintf(url, sizeof url, "%s/v1/3ds/%s", base_url, jstr(pi, "id"));
			cr_assert_str_eq(jstr(pi, "next_action.type"), "redirect_to_url");
			cr_assert_str_eq(jstr(pi, "next_action.redirect_to_url.url"), url);
			cr_assert(json_is_null(json_object_get(pi, "latest_charge")));
		}
		/* GET by id answers the same intent */
		json_t *again = get_intent(jstr(pi, "id"));
		cr_assert(json_equal(again, pi), "%s", cases[i].number);
		json_decref(again);
		json_decref(pi);
		free(r.body);
	}
	/* the list by order, newest first */
	response list = request("/v1/payment_intents?metadata%5Border_id%5D=ord-cards", NULL, NULL);
	json_t *lj = json_of(&list);
	json_t *data = json_object_get(lj, "data");
	cr_assert_str_eq(jstr(lj, "object"), "list");
	cr_assert_eq(json_array_size(data), sizeof cases / sizeof cases[0]);
	cr_assert_str_eq(jstr(json_array_get(data, 0), "status"), "requires_action");
	json_decref(lj);
	free(list.body);
	list = request("/v1/payment_intents?metadata%5Border_id%5D=nobody", NULL, NULL);
	lj = json_of(&list);
	cr_assert_eq(json_array_size(json_object_get(lj, "data")), 0);
	json_decref(lj);
	free(list.body);
	/* unknown payment method, unknown intent */
	response r = request("/v1/payment_intents", "amount=5&currency=eur&payment_method=pm_nope", NULL);
	assert_error(&r, 400, "invalid_request_error", "resource_missing", "payment_method");
	free(r.body);
	r = request("/v1/payment_intents/pi_nope", NULL, NULL);
	assert_error(&r, 404, "invalid_request_error", "resource_missing", NULL);
	free(r.body);
}

Test(psp_sandbox, wrong_or_missing_key_is_401_and_creates_nothing)
{
	char form[256];
	char *pm = payment_method(CARD_OK);
	snprintf(form, sizeof form, "amount=100&currency=eur&payment_method=%s&metadata[order_id]=ord-auth",
	         pm);
	free(pm);
	const char *keys[] = {NULL, "sk_test_wrong", KEY "x", ""};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		response r = request_full(base_url, "/v1/payment_intents", form, keys[i], NULL, NULL, 10000);
		cr_assert_eq(r.curl, CURLE_OK);
		assert_error(&r, 401, "invalid_request_error", NULL, NULL);
		cr_assert_null(strstr(r.body, KEY));
		free(r.body);
	}
	response basic = request_full(base_url, "/v1/payment_intents?metadata[order_id]=x", NULL, NULL, NULL,
	                              "Authorization: Basic c2tfdGVzdDo=", 10000);
	assert_error(&basic, 401, "invalid_request_error", NULL, NULL);
	free(basic.body);
	cr_assert_eq(list_intents("ord-auth"), 0);
}

Test(psp_sandbox, bad_input_is_400_and_creates_nothing)
{
	char form[512];
	char *pm = payment_method(CARD_OK);
	const struct {
		const char *before, *after; /* the form around the payment method's id */
		const char *code, *param;
	} cases[] = {
	        {"currency=eur&payment_method=", "&metadata[order_id]=b", "parameter_missing", "amount"},
	        {"amount=12x&currency=eur&payment_method=", "&metadata[order_id]=b", "parameter_invalid",
	         "amount"},
	        {"amount=1&currency=euro&payment_method=", "&metadata[order_id]=b", "parameter_invalid",
	         "currency"},
	        {"amount=1&currency=eur&payment_method=", "&metadata[order_id]=b&capture=no",
	         "parameter_unknown", "capture"},
	        {"amount=1&amount=2&currency=eur&payment_method=", "&metadata[order_id]=b",
	         "parameter_invalid", "amount"},
	        {"amount=1&currency=eur&payment_method=", "%ZZ&metadata[order_id]=b", "parameter_invalid",
	         NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(form, sizeof form, "%s%s%s", cases[i].before, pm, cases[i].after);
		response r = request("/v1/payment_intents", form, NULL);
		assert_error(&r, 400, "invalid_request_error", cases[i].code, cases[i].param);
		free(r.body);
	}
	/* where the card goes: a bad escape or a formatted number is refused without echo */
	response r = request("/v1/payment_methods", "type=card&card[number]=%ZZ" PM_REST, NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_invalid", NULL);
	cr_assert_null(strstr(r.body, CVC));
	free(r.body);
	r = request("/v1/payment_methods", "type=card&card[number]=4242-4242-4242-4242" PM_REST, NULL);
	assert_error(&r, 402, "card_error", "incorrect_number", "card[number]");
	cr_assert_null(strstr(r.body, "4242-4242"));
	free(r.body);
	r = request_full(base_url, "/v1/payment_intents", "{\"amount\":1}", KEY, NULL,
	                 "Content-Type: application/json", 10000);
	assert_error(&r, 415, "invalid_request_error", NULL, NULL);
	free(r.body);
	snprintf(form, sizeof form, "amount=1&currency=eur&payment_method=%s&metadata[order_id]=b", pm);
	r = request("/v1/payment_intents", form, "bad\tkey");
	assert_error(&r, 400, "invalid_request_error", "parameter_invalid", "Idempotency-Key");
	free(r.body);
	/* 16 KiB at most. */
	size_t big = 17 * 1024;
	char *huge = malloc(big + 64);
	cr_assert_not_null(huge);
	strcpy(huge, "amount=1&metadata[order_id]=");
	memset(huge + strlen(huge), 'x', big);
	huge[big + 28] = '\0';
	r = request("/v1/payment_intents", huge, NULL);
	assert_error(&r, 413, "invalid_request_error", NULL, NULL);
	free(r.body);
	free(huge);
	free(pm);
	cr_assert_eq(list_intents("b"), 0);
	r = request("/v1/payment_intents", NULL, NULL);
	json_t *all = json_of(&r);
	cr_assert_eq(json_array_size(json_object_get(all, "data")), 0, "%s", r.body);
	json_decref(all);
	free(r.body);
}

Test(psp_sandbox, unknown_paths_404_and_other_methods_405)
{
	response r = request("/v1/customers", NULL, NULL);
	assert_error(&r, 404, "invalid_request_error", NULL, NULL);
	free(r.body);
	r = request("/v1/payment_intents/pi_doesnotexist", NULL, NULL);
	assert_error(&r, 404, "invalid_request_error", "resource_missing", NULL);
	free(r.body);
	r = request("/v1/refunds", NULL, NULL);
	assert_error(&r, 405, "invalid_request_error", NULL, NULL);
	free(r.body);
	r = request_method("DELETE", base_url, "/v1/payment_intents", NULL, KEY, NULL, NULL, 10000);
	assert_error(&r, 405, "invalid_request_error", NULL, NULL);
	free(r.body);
	r = request("/v1/payment_intents?limit=3", NULL, NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_unknown", "limit");
	free(r.body);
	/* ADR 009's charge API is gone: its URLs are unknown ones */
	const char *gone[] = {"/v1/charges", "/v1/charges?metadata[order_id]=x", "/v1/charges/ch_x"};
	for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
		r = request(gone[i], NULL, NULL);
		assert_error(&r, 404, "invalid_request_error", NULL, NULL);
		json_t *j = json_of(&r);
		cr_assert_null(jstr(j, "error.code"), "%s: %s", gone[i], r.body);
		json_decref(j);
		free(r.body);
	}
	r = request("/v1/charges", "amount=100&currency=eur&card[number]=" CARD_OK PM_REST, NULL);
	assert_error(&r, 404, "invalid_request_error", NULL, NULL);
	cr_assert_null(strstr(r.body, CARD_OK));
	free(r.body);
}

Test(psp_sandbox, list_by_order_is_that_order_newest_first)
{
	char ids[3][64];
	const char *orders[] = {"ord-a", "ord-b", "ord-a"};
	for (int i = 0; i < 3; i++) {
		response r = intent_for(CARD_OK, 100 + i, orders[i], NULL, NULL);
		cr_assert_eq(r.status, 200, "%s", r.body);
		json_t *j = json_of(&r);
		snprintf(ids[i], sizeof ids[i], "%s", jstr(j, "id"));
		json_decref(j);
		free(r.body);
	}
	response r = request("/v1/payment_intents?metadata%5Border_id%5D=ord-a", NULL, NULL);
	json_t *list = json_of(&r);
	free(r.body);
	json_t *data = json_object_get(list, "data");
	cr_assert_str_eq(jstr(list, "object"), "list");
	cr_assert_eq(json_array_size(data), 2);
	cr_assert_str_eq(jstr(json_array_get(data, 0), "id"), ids[2]);
	cr_assert_str_eq(jstr(json_array_get(data, 1), "id"), ids[0]);
	json_decref(list);
	cr_assert_eq(list_intents("ord-b"), 1);
	cr_assert_eq(list_intents("ord-zzz"), 0);
	/* Unencoded brackets work too; with no filter, every intent. */
	response all = request("/v1/payment_intents?metadata[order_id]=ord-b", NULL, NULL);
	json_t *aj = json_of(&all);
	cr_assert_eq(json_array_size(json_object_get(aj, "data")), 1);
	json_decref(aj);
	free(all.body);
	all = request("/v1/payment_intents", NULL, NULL);
	aj = json_of(&all);
	cr_assert_eq(json_array_size(json_object_get(aj, "data")), 3);
	json_decref(aj);
	free(all.body);
}

/* ---- the silent card ------------------------------------------------------ */

Test(psp_sandbox, silent_card_intent_succeeds_holds_then_replays)
{
	char form[256];
	char *pm = payment_method(CARD_SIL);
	snprintf(form, sizeof form, "amount=990&currency=eur&payment_method=%s&metadata[order_id]=ord-s", pm);
	int64_t t0 = th_now_ms();
	response r = request_full(base_url, "/v1/payment_intents", form, KEY, "ord-s:k", NULL, 700);
	cr_assert_eq(r.curl, CURLE_OPERATION_TIMEDOUT, "%s", curl_easy_strerror(r.curl));
	cr_assert_eq(r.status, 0);
	free(r.body);
	/* The payment happened at the provider. */
	response list = request("/v1/payment_intents?metadata%5Border_id%5D=ord-s", NULL, NULL);
	json_t *lj = json_of(&list);
	free(list.body);
	cr_assert_eq(json_array_size(json_object_get(lj, "data")), 1);
	json_t *pi = json_array_get(json_object_get(lj, "data"), 0);
	cr_assert_str_eq(jstr(pi, "status"), "succeeded");
	cr_assert_eq(strncmp(jstr(pi, "latest_charge"), "ch_", 3), 0);
	cr_assert_str_eq(jstr(pi, "payment_method"), pm);
	char id[64];
	snprintf(id, sizeof id, "%s", jstr(pi, "id"));
	json_decref(lj);
	/* While held: 409 in use (the hold is 3 s; we are about 0.7 s in). */
	response busy = request("/v1/payment_intents", form, "ord-s:k");
	cr_assert_lt(th_now_ms() - t0, HOLD_MS, "too slow to see the hold");
	assert_error(&busy, 409, "idempotency_error", "idempotency_key_in_use", NULL);
	free(busy.body);
	/* Another key is a new request: it is held as well, and is a second intent. */
	response other = request_full(base_url, "/v1/payment_intents", form, KEY, "ord-s:other", NULL, 300);
	cr_assert_eq(other.curl, CURLE_OPERATION_TIMEDOUT);
	free(other.body);
	cr_assert_eq(list_intents("ord-s"), 2);
	/* After the hold: the stored 200 of that intent, replayed. */
	response after = {0};
	int64_t deadline = th_now_ms() + HOLD_MS + 10000;
	do {
		free(after.body);
		th_sleep_ms(100);
		after = request("/v1/payment_intents", form, "ord-s:k");
	} while (after.status == 409 && th_now_ms() < deadline);
	cr_assert_eq(after.status, 200, "%s", after.body);
	cr_assert(after.replayed);
	cr_assert_geq(th_now_ms() - t0, HOLD_MS - 100);
	json_t *j = json_of(&after);
	cr_assert_str_eq(jstr(j, "id"), id);
	cr_assert_str_eq(jstr(j, "status"), "succeeded");
	json_decref(j);
	free(after.body);
	cr_assert_eq(list_intents("ord-s"), 2);
	free(pm);
}

Test(psp_sandbox, a_held_connection_is_closed_unanswered_when_the_hold_ends)
{
	char form[256];
	char *pm = payment_method(CARD_SIL);
	snprintf(form, sizeof form, "amount=990&currency=eur&payment_method=%s&metadata[order_id]=ord-h", pm);
	free(pm);
	int64_t t0 = th_now_ms();
	response r = request_full(base_url, "/v1/payment_intents", form, KEY, NULL, NULL, HOLD_MS + 10000);
	int64_t waited = th_now_ms() - t0;
	cr_assert_eq(r.curl, CURLE_GOT_NOTHING, "%s", curl_easy_strerror(r.curl));
	cr_assert_geq(waited, HOLD_MS - 100);
	cr_assert_lt(waited, HOLD_MS + 5000);
	free(r.body);
	cr_assert_eq(list_intents("ord-h"), 1);
}

/* ---- idempotency ---------------------------------------------------------- */

Test(psp_sandbox, intent_idempotency_replays_and_refuses_other_parameters)
{
	char form[256], other[256];
	char *pm = payment_method(CARD_OK), *declining = payment_method("4000000000009995");
	snprintf(form, sizeof form, "amount=900&currency=eur&payment_method=%s&metadata[order_id]=ord-i", pm);
	snprintf(other, sizeof other, "amount=901&currency=eur&payment_method=%s&metadata[order_id]=ord-i",
	         pm);
	response first = request("/v1/payment_intents", form, "ord-i:1");
	cr_assert_eq(first.status, 200, "%s", first.body);
	cr_assert_not(first.replayed);
	response again = request("/v1/payment_intents", form, "ord-i:1");
	cr_assert_eq(again.status, 200);
	cr_assert(again.replayed, "no Idempotent-Replayed: true");
	cr_assert_str_eq(again.body, first.body);
	cr_assert_str_neq(again.request_id, first.request_id);
	/* The same parameters in another order and encoding are the same request. */
	char reordered_form[256];
	snprintf(reordered_form, sizeof reordered_form,
	         "metadata%%5Border_id%%5D=ord-i&payment_method=%s&currency=eu%%72&amount=900", pm);
	response reordered = request("/v1/payment_intents", reordered_form, "ord-i:1");
	cr_assert_eq(reordered.status, 200);
	cr_assert(reordered.replayed);
	cr_assert_str_eq(reordered.body, first.body);
	response mismatch = request("/v1/payment_intents", other, "ord-i:1");
	assert_error(&mismatch, 400, "idempotency_error", NULL, NULL);
	cr_assert_not(mismatch.replayed);
	/* another card under the same key */
	char *other_pm = payment_method("5555555555554444");
	snprintf(other, sizeof other, "amount=900&currency=eur&payment_method=%s&metadata[order_id]=ord-i",
	         other_pm);
	response other_card = request("/v1/payment_intents", other, "ord-i:1");
	assert_error(&other_card, 400, "idempotency_error", NULL, NULL);
	free(other_pm);
	/* the same key on another endpoint */
	response elsewhere = request("/v1/refunds", "payment_intent=pi_x", "ord-i:1");
	assert_error(&elsewhere, 400, "idempotency_error", NULL, NULL);
	cr_assert_eq(list_intents("ord-i"), 1);
	/* a decline is replayed as the same 402 */
	snprintf(form, sizeof form, "amount=900&currency=eur&payment_method=%s&metadata[order_id]=ord-i",
	         declining);
	response declined = request("/v1/payment_intents", form, "ord-i:2");
	cr_assert_eq(declined.status, 402);
	response declined_again = request("/v1/payment_intents", form, "ord-i:2");
	cr_assert_eq(declined_again.status, 402);
	cr_assert(declined_again.replayed);
	cr_assert_str_eq(declined_again.body, declined.body);
	cr_assert_eq(list_intents("ord-i"), 2);
	free(pm);
	free(declining);
	free(first.body);
	free(again.body);
	free(reordered.body);
	free(mismatch.body);
	free(other_card.body);
	free(elsewhere.body);
	free(declined.body);
	free(declined_again.body);
}

Test(psp_sandbox, a_request_rejected_as_invalid_is_not_stored_under_its_key)
{
	char form[256];
	char *pm = payment_method(CARD_OK);
	response bad = request("/v1/payment_intents", "amount=1&currency=eur", "ord-v:k");
	assert_error(&bad, 400, "invalid_request_error", "parameter_missing", NULL);
	response unknown_pm =
	        request("/v1/payment_intents", "amount=100&currency=eur&payment_method=pm_nope", "ord-v:k");
	assert_error(&unknown_pm, 400, "invalid_request_error", "resource_missing", "payment_method");
	cr_assert_not(unknown_pm.replayed);
	snprintf(form, sizeof form, "amount=100&currency=eur&payment_method=%s&metadata[order_id]=ord-v", pm);
	response good = request("/v1/payment_intents", form, "ord-v:k");
	cr_assert_eq(good.status, 200, "%s", good.body);
	cr_assert_not(good.replayed);
	free(pm);
	free(bad.body);
	free(unknown_pm.body);
	free(good.body);
}

/* ---- 3-D Secure ----------------------------------------------------------- */

static response page(const char *method, const char *url_path, const char *form)
{
	response r = request_method(method, base_url, url_path, form, NULL, NULL, NULL, 10000);
	cr_assert_eq(r.curl, CURLE_OK);
	return r;
}

Test(psp_sandbox, three_d_secure_approve_redirects_and_succeeds)
{
	response r = intent_for(CARD_3DS, 4200, "<script>alert(1)</script>",
	                        "https://shop.example/orders/o1?paid=1", "ord-3:1");
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *pi = intent_of(&r);
	const char *id = jstr(pi, "id");
	cr_assert_str_eq(jstr(pi, "status"), "requires_action");
	cr_assert_str_eq(jstr(pi, "next_action.redirect_to_url.return_url"),
	                 "https://shop.example/orders/o1?paid=1");
	const char *url = jstr(pi, "next_action.redirect_to_url.url");
	const char *path = url + strlen(base_url);
	response get = page("GET", path, NULL);
	cr_assert_eq(get.status, 200);
	cr_assert_eq(strncmp(get.content_type, "text/html", 9), 0);
	cr_assert_not_null(strstr(get.body, "<form method=\"post\""));
	cr_assert_not_null(strstr(get.body, "value=\"approve\""));
	cr_assert_not_null(strstr(get.body, "value=\"decline\""));
	cr_assert_not_null(strstr(get.body, "42.00 EUR"));
	cr_assert_null(strstr(get.body, "<script>"), "the order id is not escaped");
	cr_assert_not_null(strstr(get.body, "&lt;script&gt;alert(1)&lt;/script&gt;"));
	free(get.body);
	response post = page("POST", path, "action=approve");
	cr_assert_eq(post.status, 303);
	cr_assert_str_eq(post.location, "https://shop.example/orders/o1?paid=1");
	free(post.body);
	json_t *after = get_intent(id);
	cr_assert_str_eq(jstr(after, "status"), "succeeded");
	cr_assert_eq(strncmp(jstr(after, "latest_charge"), "ch_", 3), 0);
	cr_assert(json_is_null(json_object_get(after, "next_action")));
	/* a second POST changes nothing */
	post = page("POST", path, "action=decline");
	cr_assert_eq(post.status, 303);
	free(post.body);
	json_t *still = get_intent(id);
	cr_assert(json_equal(still, after));
	/* the page now says there is nothing to do */
	get = page("GET", path, NULL);
	cr_assert_eq(get.status, 200);
	cr_assert_null(strstr(get.body, "<form"));
	free(get.body);
	/* a bad action, an unknown intent */
	post = page("POST", path, "action=maybe");
	cr_assert_eq(post.status, 400);
	free(post.body);
	get = page("GET", "/v1/3ds/pi_nope", NULL);
	cr_assert_eq(get.status, 404);
	free(get.body);
	json_decref(still);
	json_decref(after);
	json_decref(pi);
	free(r.body);
}

Test(psp_sandbox, three_d_secure_decline_fails_the_intent)
{
	response r = intent_for(CARD_3DS, 4200, "ord-3d", NULL, NULL);
	json_t *pi = intent_of(&r);
	char path[128];
	snprintf(path, sizeof path, "/v1/3ds/%s", jstr(pi, "id"));
	response post = page("POST", path, "action=decline");
	cr_assert_eq(post.status, 200, "no return_url: a page");
	cr_assert_eq(strncmp(post.content_type, "text/html", 9), 0);
	cr_assert_not_null(strstr(post.body, "close this page"));
	free(post.body);
	json_t *after = get_intent(jstr(pi, "id"));
	cr_assert_str_eq(jstr(after, "status"), "requires_payment_method");
	cr_assert_str_eq(jstr(after, "last_payment_error.code"), "payment_intent_authentication_failure");
	cr_assert(json_is_null(json_object_get(after, "latest_charge")));
	post = page("POST", path, "action=approve");
	cr_assert_eq(post.status, 200);
	free(post.body);
	json_t *still = get_intent(jstr(pi, "id"));
	cr_assert_str_eq(jstr(still, "status"), "requires_payment_method");
	/* a failed intent cannot be refunded */
	char form[128];
	snprintf(form, sizeof form, "payment_intent=%s", jstr(pi, "id"));
	response refund = request("/v1/refunds", form, NULL);
	assert_error(&refund, 400, "invalid_request_error", "parameter_invalid", "payment_intent");
	free(refund.body);
	json_decref(still);
	json_decref(after);
	json_decref(pi);
	free(r.body);
}

/* ---- refunds by intent ------------------------------------------------------ */

Test(psp_sandbox, refunds_by_intent_partial_full_and_none_left)
{
	response r = intent_for(CARD_OK, 1000, "ord-rf2", NULL, NULL);
	json_t *pi = intent_of(&r);
	const char *id = jstr(pi, "id");
	response part = refund_of(id, "300", "ord-rf2:refund:1");
	cr_assert_eq(part.status, 200, "%s", part.body);
	json_t *pj = json_of(&part);
	cr_assert_eq(strncmp(jstr(pj, "id"), "re_", 3), 0);
	cr_assert_eq(strlen(jstr(pj, "id")), 3 + 24);
	cr_assert_str_eq(jstr(pj, "object"), "refund");
	cr_assert_str_eq(jstr(pj, "payment_intent"), id);
	cr_assert_str_eq(jstr(pj, "charge"), jstr(pi, "latest_charge"));
	cr_assert_eq(jint(pj, "amount"), 300);
	cr_assert_str_eq(jstr(pj, "status"), "succeeded");
	cr_assert_null(json_object_get(pj, "failure_reason"));
	response replay = refund_of(id, "300", "ord-rf2:refund:1");
	cr_assert(replay.replayed);
	cr_assert_str_eq(replay.body, part.body);
	response too_much = refund_of(id, "701", NULL);
	assert_error(&too_much, 400, "invalid_request_error", "parameter_invalid", "amount");
	response rest = refund_of(id, NULL, NULL);
	cr_assert_eq(rest.status, 200, "%s", rest.body);
	json_t *rj = json_of(&rest);
	cr_assert_eq(jint(rj, "amount"), 700);
	json_t *after = get_intent(id);
	cr_assert_eq(jint(after, "amount_refunded"), 1000);
	response none = refund_of(id, NULL, NULL);
	assert_error(&none, 400, "invalid_request_error", "charge_already_refunded", NULL);
	response none_new_key = refund_of(id, NULL, "ord-rf2:refund:2");
	assert_error(&none_new_key, 400, "invalid_request_error", "charge_already_refunded", NULL);
	/* the first key still replays its refund */
	response replay_after = refund_of(id, "300", "ord-rf2:refund:1");
	cr_assert(replay_after.replayed);
	cr_assert_str_eq(replay_after.body, part.body);
	response missing = refund_of("pi_nope", NULL, NULL);
	assert_error(&missing, 404, "invalid_request_error", "resource_missing", "payment_intent");
	json_decref(after);
	json_decref(rj);
	json_decref(pj);
	json_decref(pi);
	free(r.body);
	free(part.body);
	free(replay.body);
	free(too_much.body);
	free(rest.body);
	free(none.body);
	free(none_new_key.body);
	free(replay_after.body);
	free(missing.body);
}

Test(psp_sandbox, refund_errors_and_the_charge_parameter_of_before)
{
	response r = request("/v1/refunds", "", NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_missing", "payment_intent");
	free(r.body);
	/* ADR 009's refund by charge: an unknown parameter, as Stripe answers one */
	r = request("/v1/refunds", "charge=ch_x", "ord-rf:k");
	assert_error(&r, 400, "invalid_request_error", "parameter_unknown", "charge");
	free(r.body);
	r = request("/v1/refunds", "payment_intent=pi_x&charge=ch_x", NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_unknown", "charge");
	free(r.body);
	r = request("/v1/refunds", "payment_intent=pi_x&reason=duplicate", NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_unknown", "reason");
	free(r.body);
	/* a declined intent has nothing to refund */
	response d = intent_for("4000000000000002", 100, "ord-rf", NULL, NULL);
	cr_assert_eq(d.status, 402, "%s", d.body);
	json_t *dj = intent_of(&d);
	r = refund_of(jstr(dj, "id"), NULL, NULL);
	assert_error(&r, 400, "invalid_request_error", "parameter_invalid", "payment_intent");
	free(r.body);
	/* amounts: digits, from 1 to what is left */
	response ok = intent_for(CARD_OK, 100, "ord-rf", NULL, NULL);
	json_t *oj = intent_of(&ok);
	const char *amounts[] = {"0", "abc", "-1", "1.5", "101"};
	for (size_t i = 0; i < sizeof amounts / sizeof amounts[0]; i++) {
		r = refund_of(jstr(oj, "id"), amounts[i], NULL);
		assert_error(&r, 400, "invalid_request_error", "parameter_invalid", "amount");
		free(r.body);
	}
	/* none of these was kept under its key */
	r = refund_of(jstr(oj, "id"), NULL, "ord-rf:k");
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_assert_not(r.replayed);
	free(r.body);
	json_decref(oj);
	json_decref(dj);
	free(ok.body);
	free(d.body);
}

Test(psp_sandbox, the_5126_card_fails_its_first_refund_only)
{
	response r = intent_for(CARD_REFUND, 2500, "ord-5126", NULL, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *pi = intent_of(&r);
	const char *id = jstr(pi, "id");
	response first = refund_of(id, NULL, "ord-5126:refund:1");
	cr_assert_eq(first.status, 200, "%s", first.body);
	json_t *fj = json_of(&first);
	cr_assert_str_eq(jstr(fj, "status"), "failed");
	cr_assert_str_eq(jstr(fj, "failure_reason"), "expired_or_canceled_card");
	json_t *after = get_intent(id);
	cr_assert_eq(jint(after, "amount_refunded"), 0);
	/* the replay of the first key stays the failure; a new key succeeds */
	response replay = refund_of(id, NULL, "ord-5126:refund:1");
	cr_assert(replay.replayed);
	cr_assert_str_eq(replay.body, first.body);
	response second = refund_of(id, NULL, "ord-5126:refund:2");
	cr_assert_eq(second.status, 200);
	json_t *sj = json_of(&second);
	cr_assert_str_eq(jstr(sj, "status"), "succeeded");
	cr_assert_eq(jint(sj, "amount"), 2500);
	json_t *done = get_intent(id);
	cr_assert_eq(jint(done, "amount_refunded"), 2500);
	json_decref(done);
	json_decref(sj);
	json_decref(after);
	json_decref(fj);
	json_decref(pi);
	free(r.body);
	free(first.body);
	free(replay.body);
	free(second.body);
}

/* ---- webhooks: a receiver on its own thread and event_base ---------------- */

#define HOOK_MAX 64

typedef struct delivery {
	char *body;
	char signature[256];
	int status; /* what the receiver answered */
} delivery;

static struct {
	pthread_mutex_t lock;
	struct event_base *base;
	struct evhttp *http;
	pthread_t thread;
	bool running;
	int fail_next; /* answer 500 to this many requests; -1: always */
	size_t count;
	delivery got[HOOK_MAX];
} hook = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_hook(struct evhttp_request *req, void *arg)
{
	(void)arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *signature =
	        evhttp_find_header(evhttp_request_get_input_headers(req), "Orion-PSP-Signature");
	int status = 200;
	pthread_mutex_lock(&hook.lock);
	if (hook.fail_next != 0) {
		status = 500;
		if (hook.fail_next > 0)
			hook.fail_next--;
	}
	if (hook.count < HOOK_MAX) {
		delivery *d = &hook.got[hook.count++];
		d->body = calloc(1, len + 1);
		evbuffer_copyout(in, d->body, len);
		snprintf(d->signature, sizeof d->signature, "%s", signature != NULL ? signature : "");
		d->status = status;
	}
	pthread_mutex_unlock(&hook.lock);
	evhttp_send_reply(req, status, status == 200 ? "OK" : "Internal Server Error", NULL);
}

static void *hook_main(void *arg)
{
	(void)arg;
	event_base_dispatch(hook.base);
	return NULL;
}

/* Starts the receiver on a free port; hook_url names it. */
static void hook_start(int fail_next)
{
	evthread_use_pthreads();
	hook.fail_next = fail_next;
	hook.base = event_base_new();
	hook.http = evhttp_new(hook.base);
	cr_assert_not_null(hook.http);
	evhttp_set_gencb(hook.http, on_hook, NULL);
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(hook.http, "127.0.0.1", 0);
	cr_assert_not_null(bound);
	struct sockaddr_in address;
	socklen_t len = sizeof address;
	cr_assert_eq(getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&address, &len), 0);
	snprintf(hook_url, sizeof hook_url, "http://127.0.0.1:%u/api/v1/webhooks/psp?v=1",
	         ntohs(address.sin_port));
	cr_assert_eq(pthread_create(&hook.thread, NULL, hook_main, NULL), 0);
	hook.running = true;
}

static void hook_stop(void)
{
	if (!hook.running)
		return;
	event_base_loopbreak(hook.base);
	pthread_join(hook.thread, NULL);
	evhttp_free(hook.http);
	event_base_free(hook.base);
	hook.running = false;
}

static size_t hook_count(void)
{
	pthread_mutex_lock(&hook.lock);
	size_t n = hook.count;
	pthread_mutex_unlock(&hook.lock);
	return n;
}

/* Waits until the receiver got at least n requests. */
static void hook_wait(size_t n, long timeout_ms)
{
	for (long waited = 0; hook_count() < n && waited < timeout_ms; waited += 20)
		usleep(20 * 1000);
	cr_assert_geq(hook_count(), n, "the receiver got %zu requests, not %zu", hook_count(), n);
}

/* The test's own check of a signature over body. */
static void assert_signed(const delivery *d)
{
	long long t = 0;
	char v1[65] = "", expected[65], stamp[24];
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;
	cr_assert_eq(sscanf(d->signature, "t=%lld,v1=%64[0-9a-f]", &t, v1), 2, "'%s'", d->signature);
	cr_assert_leq(llabs((long long)time(NULL) - t), 60);
	snprintf(stamp, sizeof stamp, "%lld", t);
	crypto_auth_hmacsha256_init(&st, (const uint8_t *)WHSEC, strlen(WHSEC));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)stamp, strlen(stamp));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)d->body, strlen(d->body));
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(expected, sizeof expected, mac, sizeof mac);
	cr_assert_str_eq(v1, expected, "the signature does not verify");
}

/* Criterion runs the suite's init before a test's own, and the suite's fini
 * after: these only stop the suite's sandbox (each test starts its own,
 * pointed at the receiver) and stop the receiver. */
static void hook_setup(void)
{
	psp_sandbox_stop(sandbox);
	sandbox = NULL;
}

static void hook_teardown(void)
{
	psp_sandbox_stop(sandbox);
	sandbox = NULL;
	hook_stop();
	for (size_t i = 0; i < hook.count; i++)
		free(hook.got[i].body);
	hook.count = 0;
	hook_url[0] = '\0';
}

static json_t *events_of(const char *type)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/events?type=%s&limit=100", type);
	response r = request(path, NULL, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *j = json_of(&r);
	free(r.body);
	return j;
}

Test(psp_sandbox, webhooks_are_signed_retried_until_2xx_with_one_id, .init = hook_setup,
     .fini = hook_teardown)
{
	hook_start(1); /* the first request gets a 500 */
	start_sandbox(NULL);
	response r = intent_for(CARD_OK, 1500, "ord-wh", NULL, NULL);
	cr_assert_eq(r.status, 200);
	json_t *pi = intent_of(&r);
	hook_wait(2, 5000);
	pthread_mutex_lock(&hook.lock);
	delivery first = hook.got[0], second = hook.got[1];
	pthread_mutex_unlock(&hook.lock);
	cr_assert_eq(first.status, 500);
	cr_assert_eq(second.status, 200);
	cr_assert_str_eq(first.body, second.body, "a retry sends the same body");
	assert_signed(&first);
	assert_signed(&second);
	json_t *ev = json_loads(second.body, 0, NULL);
	cr_assert_not_null(ev);
	cr_assert_eq(strncmp(jstr(ev, "id"), "evt_", 4), 0);
	cr_assert_str_eq(jstr(ev, "object"), "event");
	cr_assert_str_eq(jstr(ev, "type"), "payment_intent.succeeded");
	cr_assert_str_eq(jstr(ev, "data.object.id"), jstr(pi, "id"));
	cr_assert_str_eq(jstr(ev, "data.object.status"), "succeeded");
	cr_assert_str_eq(jstr(ev, "data.object.metadata.order_id"), "ord-wh");
	/* listed with its delivery count */
	json_t *list = events_of("payment_intent.succeeded");
	json_t *item = json_array_get(json_object_get(list, "data"), 0);
	cr_assert_str_eq(jstr(item, "id"), jstr(ev, "id"));
	cr_assert_eq(jint(item, "delivery_count"), 2);
	cr_assert(json_is_true(json_object_get(item, "delivered")));
	json_decref(list);
	usleep(700 * 1000);
	cr_assert_eq(hook_count(), 2, "a delivered event is not sent again");

	/* every other outcome makes its event */
	response d = intent_for("4000000000000002", 100, "ord-wh", NULL, NULL);
	cr_assert_eq(d.status, 402);
	response f = intent_for(CARD_REFUND, 800, "ord-wh", NULL, NULL);
	json_t *fpi = intent_of(&f);
	response rf1 = refund_of(jstr(fpi, "id"), NULL, NULL);
	response rf2 = refund_of(jstr(fpi, "id"), NULL, NULL);
	hook_wait(6, 5000);
	json_t *failed = events_of("payment_intent.payment_failed");
	item = json_array_get(json_object_get(failed, "data"), 0);
	cr_assert_str_eq(jstr(item, "data.object.last_payment_error.decline_code"), "generic_decline");
	json_t *updated = events_of("charge.refund.updated");
	item = json_array_get(json_object_get(updated, "data"), 0);
	cr_assert_str_eq(jstr(item, "data.object.object"), "refund");
	cr_assert_str_eq(jstr(item, "data.object.status"), "failed");
	cr_assert_str_eq(jstr(item, "data.object.failure_reason"), "expired_or_canceled_card");
	json_t *refunded = events_of("charge.refunded");
	item = json_array_get(json_object_get(refunded, "data"), 0);
	cr_assert_str_eq(jstr(item, "data.object.object"), "charge");
	cr_assert_str_eq(jstr(item, "data.object.id"), jstr(fpi, "latest_charge"));
	cr_assert_str_eq(jstr(item, "data.object.payment_intent"), jstr(fpi, "id"));
	cr_assert_eq(jint(item, "data.object.amount_refunded"), 800);
	cr_assert(json_is_true(
	        json_object_get(json_object_get(json_object_get(item, "data"), "object"), "refunded")));
	cr_assert_str_eq(jstr(item, "data.object.metadata.order_id"), "ord-wh");
	/* all of them, newest first, limited */
	response all = request("/v1/events?limit=2", NULL, NULL);
	json_t *aj = json_of(&all);
	cr_assert_eq(json_array_size(json_object_get(aj, "data")), 2);
	cr_assert(json_is_true(json_object_get(aj, "has_more")));
	cr_assert_str_eq(jstr(json_array_get(json_object_get(aj, "data"), 0), "type"), "charge.refunded");
	json_decref(aj);
	free(all.body);
	response bad = request("/v1/events?limit=0", NULL, NULL);
	assert_error(&bad, 400, "invalid_request_error", "parameter_invalid", "limit");
	free(bad.body);
	json_decref(failed);
	json_decref(updated);
	json_decref(refunded);
	json_decref(fpi);
	json_decref(ev);
	json_decref(pi);
	free(r.body);
	free(d.body);
	free(f.body);
	free(rf1.body);
	free(rf2.body);
}

Test(psp_sandbox, a_restart_keeps_intents_and_resumes_undelivered_webhooks, .init = hook_setup,
     .fini = hook_teardown)
{
	char state[512];
	snprintf(state, sizeof state, "%s/intents.jsonl", work_dir);
	hook_start(-1); /* every request gets a 500 */
	start_sandbox(state);
	response ok = intent_for(CARD_OK, 1100, "ord-rs", NULL, "ord-rs:1");
	cr_assert_eq(ok.status, 200);
	response tds = intent_for(CARD_3DS, 1200, "ord-rs", "https://shop.example/back", NULL);
	cr_assert_eq(tds.status, 200);
	response declined = intent_for("4000000000009995", 1300, "ord-rs", NULL, NULL);
	cr_assert_eq(declined.status, 402);
	json_t *okj = intent_of(&ok), *tdsj = intent_of(&tds);
	hook_wait(2, 5000); /* both events tried at least once */
	psp_sandbox_stop(sandbox);
	sandbox = NULL;

	char *text = read_all(state);
	const char *secrets[] = {
	        CARD_OK,       CARD_3DS, "4000000000009995", "4000000000005126", "400000000000",
	        "\"" CVC "\"", "=" CVC,  "card[number]",     "\"cvc\"",          "card[cvc]"};
	for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
		cr_assert_null(strstr(text, secrets[i]), "the state file holds '%s'", secrets[i]);
	cr_assert_not_null(strstr(text, "\"last4\":\"4242\""));
	free(text);

	pthread_mutex_lock(&hook.lock);
	hook.fail_next = 0; /* the receiver is well again */
	size_t before = hook.count;
	char first_id[64] = "";
	json_t *fe = json_loads(hook.got[0].body, 0, NULL);
	snprintf(first_id, sizeof first_id, "%s", jstr(fe, "id"));
	json_decref(fe);
	pthread_mutex_unlock(&hook.lock);
	start_sandbox(state);
	/* the intents are back */
	json_t *again = get_intent(jstr(okj, "id"));
	cr_assert(json_equal(again, okj));
	json_decref(again);
	again = get_intent(jstr(tdsj, "id"));
	cr_assert_str_eq(jstr(again, "status"), "requires_action");
	cr_assert_str_eq(jstr(again, "next_action.redirect_to_url.return_url"), "https://shop.example/back");
	json_decref(again);
	cr_assert_eq(list_intents("ord-rs"), 3);
	/* the idempotent answer too */
	char *pm_id = strdup(jstr(okj, "payment_method"));
	char form[256];
	snprintf(form, sizeof form,
	         "amount=1100&currency=eur&payment_method=%s&confirm=true"
	         "&metadata[order_id]=ord-rs",
	         pm_id);
	response replay = request("/v1/payment_intents", form, "ord-rs:1");
	cr_assert(replay.replayed);
	cr_assert_str_eq(replay.body, ok.body);
	/* the two undelivered events arrive, with their ids of before */
	hook_wait(before + 2, 5000);
	json_t *list = events_of("payment_intent.succeeded");
	json_t *item = json_array_get(json_object_get(list, "data"), 0);
	cr_assert_str_eq(jstr(item, "id"), first_id);
	cr_assert(json_is_true(json_object_get(item, "delivered")));
	cr_assert_gt(jint(item, "delivery_count"), 1);
	json_decref(list);
	bool seen = false;
	pthread_mutex_lock(&hook.lock);
	for (size_t i = before; i < hook.count; i++) {
		assert_signed(&hook.got[i]);
		seen = seen || strstr(hook.got[i].body, first_id) != NULL;
	}
	pthread_mutex_unlock(&hook.lock);
	cr_assert(seen, "the event of before the restart was sent again");
	/* the 3-D Secure challenge still works after the restart */
	char path[128];
	snprintf(path, sizeof path, "/v1/3ds/%s", jstr(tdsj, "id"));
	response post = page("POST", path, "action=approve");
	cr_assert_eq(post.status, 303);
	free(post.body);
	again = get_intent(jstr(tdsj, "id"));
	cr_assert_str_eq(jstr(again, "status"), "succeeded");
	json_decref(again);
	free(pm_id);
	free(replay.body);
	json_decref(okj);
	json_decref(tdsj);
	free(ok.body);
	free(tds.body);
	free(declined.body);
}

Test(psp_sandbox, set_site_points_webhooks_and_cors_later, .init = hook_setup, .fini = hook_teardown)
{
	start_sandbox(NULL); /* no webhook URL yet */
	response r = intent_for(CARD_OK, 100, "ord-site", NULL, NULL);
	cr_assert_eq(r.status, 200);
	free(r.body);
	hook_start(0);
	cr_assert_eq(psp_sandbox_set_site(sandbox, "https://tls.example/webhooks/psp", NULL), ORN_EINVAL);
	cr_assert_eq(psp_sandbox_set_site(sandbox, hook_url, "https://late.example"), ORN_OK);
	hook_wait(1, 5000);
	pthread_mutex_lock(&hook.lock);
	assert_signed(&hook.got[0]);
	pthread_mutex_unlock(&hook.lock);
	char form[256];
	snprintf(form, sizeof form, "type=card&card[number]=%s" PM_REST, CARD_OK);
	response late = request_full(base_url, "/v1/payment_methods", form, PK, NULL,
	                             "Origin: https://late.example", 10000);
	cr_assert_str_eq(late.allow_origin, "https://late.example");
	free(late.body);
	response old = request_full(base_url, "/v1/payment_methods", form, PK, NULL, "Origin: " SHOP, 10000);
	cr_assert_str_eq(old.allow_origin, "", "the list was replaced");
	free(old.body);
}

/* ---- the psp role: its settings, the public URL and CORS origins ---------- */

static const char *role_public_url = "http://127.0.0.1:0"; /* as serve knows it before the gateway binds */

static const void *role_offer(void *host, const char *what)
{
	(void)host;
	if (strcmp(what, PSP_NEEDS_PUBLIC_URL) == 0)
		return role_public_url;
	if (strcmp(what, PSP_NEEDS_CORS_ORIGINS) == 0)
		return "http://localhost:5173";
	return NULL;
}

Test(psp_sandbox, the_role_follows_the_public_url_for_webhooks_and_cors, .init = hook_setup,
     .fini = hook_teardown)
{
	psp_settings set;
	const char *bad = NULL;
	cr_assert_eq(orn_settings_load(psp_role.settings, &set, &bad), ORN_OK);
	cr_assert_str_eq(set.publishable_key, "pk_test_orion");
	cr_assert_str_eq(set.webhook_secret, "whsec_test_orion");
	role_context ctx = {.role = &psp_role, .data_dir = work_dir, .settings = &set, .offer = role_offer};
	void *handle = NULL;
	cr_assert_eq(psp_role.start(&ctx, &handle), ORN_OK);
	const char *url = psp_role.offers(handle, PSP_OFFERS_URL);
	cr_assert_not_null(url);
	snprintf(base_url, sizeof base_url, "%s", url);
	/* the gateway is bound: webhooks go to <public URL>/api/v1/webhooks/psp */
	hook_start(0);
	char public_url[128];
	snprintf(public_url, sizeof public_url, "%.*s",
	         (int)(strstr(hook_url, "/api/v1/webhooks/psp") - hook_url), hook_url);
	psp_role_public_url(handle, public_url);
	char form[256];
	snprintf(form, sizeof form, "type=card&card[number]=%s" PM_REST, CARD_OK);
	char intent_form[256] = "";
	const char *origins[] = {public_url, "http://localhost:5173"};
	for (size_t i = 0; i < 2; i++) {
		char origin[160];
		snprintf(origin, sizeof origin, "Origin: %s", origins[i]);
		response pm = request_full(base_url, "/v1/payment_methods", form, "pk_test_orion", NULL,
		                           origin, 10000);
		cr_assert_eq(pm.status, 200, "%s", pm.body);
		cr_assert_str_eq(pm.allow_origin, origins[i]);
		if (i == 0) {
			json_t *pj = json_of(&pm);
			snprintf(intent_form, sizeof intent_form, "amount=100&currency=eur&payment_method=%s",
			         jstr(pj, "id"));
			json_decref(pj);
		}
		free(pm.body);
	}
	response pi = request_full(base_url, "/v1/payment_intents", intent_form, "sk_test_orion", NULL, NULL,
	                           10000);
	cr_assert_eq(pi.status, 200, "%s", pi.body);
	free(pi.body);
	hook_wait(1, 5000);
	pthread_mutex_lock(&hook.lock);
	delivery d = hook.got[0];
	pthread_mutex_unlock(&hook.lock);
	/* signed with the default secret */
	long long t = 0;
	char v1[65] = "", expected[65], stamp[24];
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;
	cr_assert_eq(sscanf(d.signature, "t=%lld,v1=%64[0-9a-f]", &t, v1), 2);
	snprintf(stamp, sizeof stamp, "%lld", t);
	crypto_auth_hmacsha256_init(&st, (const uint8_t *)"whsec_test_orion", 16);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)stamp, strlen(stamp));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)d.body, strlen(d.body));
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(expected, sizeof expected, mac, sizeof mac);
	cr_assert_str_eq(v1, expected);
	psp_role.stop(handle);
	/* its state is in the data directory, without the card number */
	char state[512];
	snprintf(state, sizeof state, "%s/psp-sandbox.jsonl", work_dir);
	char *text = read_all(state);
	cr_assert_not_null(strstr(text, "payment_intent.succeeded"));
	cr_assert_null(strstr(text, CARD_OK));
	free(text);
}
