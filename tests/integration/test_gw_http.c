/* test_gw_http.c — gateway/gw_http.c end to end: a real server on a free
 * loopback port in a thread, driven with libcurl. Security headers, 404,
 * 405 + Allow, body and header limits, CORS and preflight, deferred answers
 * completed from another thread or not at all (503 at the deadline), JSON
 * validation, the operations routes and metrics, answers without a body
 * (204) on a kept-alive connection, and the wiping JSON allocator. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "gw_http.h"
#include "gw_metrics.h"
#include "gw_ops.h"
#include "gw_problem.h"
#include "http_client.h"
#include "log.h"

#define ALLOWED_ORIGIN "https://shop.example"
#define OPENAPI_TEXT   "openapi: 3.1.0\ninfo:\n  title: Orion\n"

static gw_server *server;
static gw_metrics *metrics;
static gw_ops *ops;
static pthread_t loop_thread;
static char base_url[64];
static char openapi_path[64];
static gw_async *never_answered; /* held by the "never" handler */

/* ---- handlers ----------------------------------------------------------- */

static void echo(gw_request *r, void *arg)
{
	const char *q = gw_request_query(r, "q");
	gw_respond_json(r, 200, json_pack("{s:s?, s:s}", "q", q, "client", gw_request_client_addr(r)));
}

static void item(gw_request *r, void *arg)
{
	gw_respond_json(r, 200, json_pack("{s:s}", "id", gw_request_param(r, "id")));
}

static void *complete_later(void *arg)
{
	usleep(50 * 1000);
	gw_async_complete_json(arg, 200, json_pack("{s:b}", "done", 1));
	return NULL;
}

static void async_handler(gw_request *r, void *arg)
{
	pthread_t thread;
	gw_async *a = gw_request_defer(r, 2000);
	cr_assert_not_null(a);
	pthread_create(&thread, NULL, complete_later, a);
	pthread_detach(thread);
}

static void never(gw_request *r, void *arg)
{
	never_answered = gw_request_defer(r, 300);
}

/* 204 handed a body anyway: the server must not send it. */
static void nothing(gw_request *r, void *arg)
{
	gw_respond(r, 204, "application/json", "{}", 2);
}

static void *complete_empty_later(void *arg)
{
	usleep(20 * 1000);
	gw_async_complete_empty(arg, 204);
	return NULL;
}

static void *complete_json_204_later(void *arg)
{
	usleep(20 * 1000);
	gw_async_complete_json(arg, 204, json_object());
	return NULL;
}

/* Deferred 204s: gw_async_complete_empty, or a JSON body the server drops. */
static void nothing_later(gw_request *r, void *arg)
{
	pthread_t thread;
	gw_async *a = gw_request_defer(r, 2000);
	cr_assert_not_null(a);
	pthread_create(&thread, NULL, arg != NULL ? complete_json_204_later : complete_empty_later, a);
	pthread_detach(thread);
}

static const gw_field upload_schema[] = {
        {.name = "name", .type = GW_STRING, .required = true, .min = 1, .max = 100},
        {.name = "quantity", .type = GW_INT, .required = true, .min = 1, .max = 999},
        {.name = "blob", .type = GW_STRING},
        {0},
};

static void upload(gw_request *r, void *arg)
{
	json_t *body;
	if (!gw_request_json(r, upload_schema, &body))
		return;
	gw_respond_json(r, 201, json_pack("{s:I}", "quantity", (json_int_t)gw_json_int(body, "quantity", 0)));
	json_decref(body);
}

/* ---- server lifecycle --------------------------------------------------- */

static void *run_loop(void *arg)
{
	gw_server_run(server);
	return NULL;
}

static void setup(void)
{
	log_set_level(LOG_ERROR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(openapi_path, sizeof(openapi_path), "/tmp/orion-gw-openapi-%ld.yaml", (long)getpid());
	FILE *f = fopen(openapi_path, "w");
	cr_assert_not_null(f);
	fputs(OPENAPI_TEXT, f);
	fclose(f);

	const char *origins[] = {ALLOWED_ORIGIN};
	gw_server_options o;
	gw_server_options_init(&o);
	o.bind_addr = "127.0.0.1:0";
	o.cors_origins = origins;
	o.cors_origin_count = 1;
	metrics = gw_metrics_create();
	o.metrics = metrics;
	cr_assert_eq(gw_server_create(&o, &server), ORN_OK);
	cr_assert_neq(gw_server_port(server), 0);
	cr_assert_eq(gw_ops_register(server, metrics, openapi_path, &ops), ORN_OK);
	cr_assert_eq(gw_server_route(server, GW_GET, "/echo", echo, NULL), ORN_OK);
	cr_assert_eq(gw_server_route(server, GW_GET, "/items/{id}", item, NULL), ORN_OK);
	cr_assert_eq(gw_server_route(server, GW_GET, "/async", async_handler, NULL), ORN_OK);
	cr_assert_eq(gw_server_route(server, GW_GET, "/never", never, NULL), ORN_OK);
	cr_assert_eq(gw_server_route(server, GW_POST, "/upload", upload, NULL), ORN_OK);
	cr_assert_eq(gw_server_route(server, GW_DELETE, "/no-content", nothing, NULL), ORN_OK);
	cr_assert_eq(gw_server_route(server, GW_DELETE, "/no-content/later", nothing_later, NULL), ORN_OK);
	cr_assert_eq(gw_server_route(server, GW_DELETE, "/no-content/later-json", nothing_later, "json"),
	             ORN_OK);
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%u", gw_server_port(server));
	cr_assert_eq(pthread_create(&loop_thread, NULL, run_loop, NULL), 0);
}

static void teardown(void)
{
	gw_server_stop(server);
	pthread_join(loop_thread, NULL);
	if (never_answered) {
		gw_async_cancel(never_answered);
		never_answered = NULL;
	}
	gw_server_destroy(server);
	gw_ops_destroy(ops);
	gw_metrics_destroy(metrics);
	unlink(openapi_path);
	curl_global_cleanup();
}

TestSuite(gw_http, .init = setup, .fini = teardown, .timeout = 60);

/* ---- a small curl client ------------------------------------------------ */

typedef hc_reply reply;

/* Performs method path with extra headers (NULL-terminated) and body. */
static reply request(const char *method, const char *path, const char *const *headers, const char *body,
                     size_t body_len)
{
	return hc_perform(base_url, method, path, headers, body, body_len, 10000L);
}

static void expect_header(const reply *r, const char *name, const char *expected)
{
	const char *value = hc_header(r, name);
	cr_assert_not_null(value, "missing header %s", name);
	cr_assert_str_eq(value, expected, "header %s", name);
}

static void expect_security_headers(const reply *r)
{
	expect_header(r, "X-Content-Type-Options", "nosniff");
	expect_header(r, "Content-Security-Policy", "default-src 'none'");
	expect_header(r, "Referrer-Policy", "no-referrer");
	cr_assert_not_null(hc_header(r, "Content-Type"));
}

static void expect_problem(const reply *r, long status)
{
	cr_assert_eq(r->status, status, "status %ld, body %s", r->status, r->body);
	expect_header(r, "Content-Type", "application/problem+json");
	expect_security_headers(r);
	json_t *problem = json_loads(r->body, 0, NULL);
	cr_assert_not_null(problem, "body: %s", r->body);
	cr_assert_eq(json_integer_value(json_object_get(problem, "status")), status);
	cr_assert(json_is_string(json_object_get(problem, "title")));
	cr_assert(json_is_string(json_object_get(problem, "type")));
	json_decref(problem);
}

/* ---- tests -------------------------------------------------------------- */

Test(gw_http, healthz_with_security_headers)
{
	reply r = request("GET", "/healthz", NULL, NULL, 0);
	cr_assert_eq(r.curl, CURLE_OK);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
	expect_header(&r, "Content-Type", "application/json");
	expect_security_headers(&r);
	cr_assert_null(hc_header(&r, "Cache-Control"));
	cr_assert_null(hc_header(&r, "Access-Control-Allow-Origin"));
	hc_reply_free(&r);

	const char *const auth[] = {"Authorization: Bearer x", NULL};
	r = request("GET", "/healthz", auth, NULL, 0);
	expect_header(&r, "Cache-Control", "no-store");
	hc_reply_free(&r);

	r = request("HEAD", "/healthz", NULL, NULL, 0);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(r.body_len, 0);
	hc_reply_free(&r);
}

Test(gw_http, unknown_route_is_404_problem)
{
	reply r = request("GET", "/nothing/here?x=1", NULL, NULL, 0);
	expect_problem(&r, 404);
	hc_reply_free(&r);
	r = request("GET", "/items/", NULL, NULL, 0);
	expect_problem(&r, 404);
	hc_reply_free(&r);
}

Test(gw_http, wrong_method_is_405_with_allow)
{
	reply r = request("DELETE", "/healthz", NULL, NULL, 0);
	expect_problem(&r, 405);
	expect_header(&r, "Allow", "GET, HEAD");
	hc_reply_free(&r);
	r = request("TRACE", "/upload", NULL, NULL, 0);
	expect_problem(&r, 405);
	expect_header(&r, "Allow", "POST");
	hc_reply_free(&r);
}

Test(gw_http, params_and_query)
{
	reply r = request("GET", "/items/a%2Fb", NULL, NULL, 0);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "{\"id\":\"a/b\"}");
	hc_reply_free(&r);
	r = request("GET", "/echo?q=a%20b&z=1", NULL, NULL, 0);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "{\"q\":\"a b\",\"client\":\"127.0.0.1\"}");
	hc_reply_free(&r);
}

static reply post_json(const char *body, size_t len, const char *content_type)
{
	char type_header[128];
	snprintf(type_header, sizeof(type_header), "Content-Type: %s", content_type);
	const char *const headers[] = {type_header, NULL};
	return request("POST", "/upload", headers, body, len);
}

Test(gw_http, json_validation_end_to_end)
{
	const char good[] = "{\"name\":\"x\",\"quantity\":2}";
	reply r = post_json(good, strlen(good), "application/json");
	cr_assert_eq(r.status, 201, "body %s", r.body);
	cr_assert_str_eq(r.body, "{\"quantity\":2}");
	hc_reply_free(&r);

	const char unknown[] = "{\"name\":\"x\",\"quantity\":2,\"admin\":true,\"<b>\":1}";
	r = post_json(unknown, strlen(unknown), "application/json; charset=utf-8");
	expect_problem(&r, 400);
	json_t *problem = json_loads(r.body, 0, NULL);
	cr_assert_eq(json_array_size(json_object_get(problem, "errors")), 2);
	json_decref(problem);
	hc_reply_free(&r);

	r = post_json(good, strlen(good), "text/plain");
	expect_problem(&r, 415);
	hc_reply_free(&r);

	const char bad_utf8[] = "{\"name\":\"\xff\",\"quantity\":2}";
	r = post_json(bad_utf8, strlen(bad_utf8), "application/json");
	expect_problem(&r, 400);
	hc_reply_free(&r);
}

/* A JSON body of exactly size bytes. */
static char *body_of_size(size_t size)
{
	char *body = malloc(size + 1);
	const char head[] = "{\"name\":\"x\",\"quantity\":1,\"blob\":\"";
	memcpy(body, head, sizeof(head) - 1);
	memset(body + sizeof(head) - 1, 'a', size - (sizeof(head) - 1) - 2);
	memcpy(body + size - 2, "\"}", 3);
	return body;
}

Test(gw_http, body_limit)
{
	size_t limit = GW_MAX_BODY_DEFAULT;
	char *body = body_of_size(limit);
	reply r = post_json(body, limit, "application/json");
	cr_assert_eq(r.status, 201, "a body of exactly the limit is accepted (%ld)", r.status);
	hc_reply_free(&r);
	free(body);

	body = body_of_size(limit + 1);
	r = post_json(body, limit + 1, "application/json");
	expect_problem(&r, 413);
	hc_reply_free(&r);
	free(body);

	/* Far above the limit: the guard answers 413 problem+json from the headers. */
	body = body_of_size(3 * limit);
	r = post_json(body, 3 * limit, "application/json");
	cr_assert_eq(r.status, 413, "curl %d", r.curl);
	expect_problem(&r, 413);
	hc_reply_free(&r);
	free(body);
}

Test(gw_http, oversized_headers_are_refused)
{
	size_t size = 20 * 1024;
	char *big = malloc(size + 16);
	strcpy(big, "X-Big: ");
	memset(big + 7, 'b', size);
	big[7 + size] = '\0';
	const char *const headers[] = {big, NULL};
	reply r = request("GET", "/healthz", headers, NULL, 0);
	/* the guard answers 431 problem+json and closes the connection */
	cr_assert_eq(r.status, 431, "status %ld curl %d", r.status, r.curl);
	expect_problem(&r, 431);
	hc_reply_free(&r);
	free(big);
	/* The server keeps serving. */
	r = request("GET", "/healthz", NULL, NULL, 0);
	cr_assert_eq(r.status, 200);
	hc_reply_free(&r);
}

Test(gw_http, cors_only_for_configured_origins)
{
	const char *const allowed[] = {"Origin: " ALLOWED_ORIGIN, NULL};
	reply r = request("GET", "/healthz", allowed, NULL, 0);
	expect_header(&r, "Access-Control-Allow-Origin", ALLOWED_ORIGIN);
	expect_header(&r, "Vary", "Origin");
	hc_reply_free(&r);

	const char *const other[] = {"Origin: https://evil.example", NULL};
	r = request("GET", "/healthz", other, NULL, 0);
	cr_assert_eq(r.status, 200);
	cr_assert_null(hc_header(&r, "Access-Control-Allow-Origin"));
	hc_reply_free(&r);

	const char *const prefix[] = {"Origin: " ALLOWED_ORIGIN ".evil", NULL};
	r = request("GET", "/healthz", prefix, NULL, 0);
	cr_assert_null(hc_header(&r, "Access-Control-Allow-Origin"));
	hc_reply_free(&r);

	const char *const preflight[] = {"Origin: " ALLOWED_ORIGIN, "Access-Control-Request-Method: POST",
	                                 "Access-Control-Request-Headers: content-type", NULL};
	r = request("OPTIONS", "/upload", preflight, NULL, 0);
	cr_assert_eq(r.status, 204);
	expect_header(&r, "Access-Control-Allow-Origin", ALLOWED_ORIGIN);
	expect_header(&r, "Access-Control-Allow-Methods", "POST, OPTIONS");
	cr_assert_not_null(strstr(hc_header(&r, "Access-Control-Allow-Headers"), "Content-Type"));
	expect_header(&r, "Allow", "POST, OPTIONS");
	expect_security_headers(&r);
	hc_reply_free(&r);

	const char *const bad_preflight[] = {"Origin: https://evil.example",
	                                     "Access-Control-Request-Method: POST", NULL};
	r = request("OPTIONS", "/upload", bad_preflight, NULL, 0);
	cr_assert_eq(r.status, 204);
	cr_assert_null(hc_header(&r, "Access-Control-Allow-Origin"));
	cr_assert_null(hc_header(&r, "Access-Control-Allow-Methods"));
	hc_reply_free(&r);

	r = request("OPTIONS", "/nothing", preflight, NULL, 0);
	expect_problem(&r, 404);
	hc_reply_free(&r);
}

Test(gw_http, deferred_answer_from_another_thread)
{
	reply r = request("GET", "/async", NULL, NULL, 0);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "{\"done\":true}");
	expect_security_headers(&r);
	hc_reply_free(&r);
}

Test(gw_http, unanswered_request_gets_503_at_its_deadline)
{
	int64_t start = orn_monotonic_ns();
	reply r = request("GET", "/never", NULL, NULL, 0);
	int64_t elapsed_ms = (orn_monotonic_ns() - start) / 1000000;
	expect_problem(&r, 503);
	cr_assert_geq(elapsed_ms, 250);
	cr_assert_lt(elapsed_ms, 3000);
	hc_reply_free(&r);
	/* A late completion is discarded; the server is unaffected. */
	gw_async_complete_json(never_answered, 200, json_pack("{s:b}", "late", 1));
	never_answered = NULL;
	r = request("GET", "/healthz", NULL, NULL, 0);
	cr_assert_eq(r.status, 200);
	hc_reply_free(&r);
}

Test(gw_http, openapi_document)
{
	reply r = request("GET", "/api/v1/openapi.yaml", NULL, NULL, 0);
	cr_assert_eq(r.status, 200);
	expect_header(&r, "Content-Type", "application/yaml");
	expect_security_headers(&r);
	cr_assert_str_eq(r.body, OPENAPI_TEXT);
	hc_reply_free(&r);
}

Test(gw_http, routes_are_listed)
{
	const gw_router *router = gw_server_router(server);
	bool seen_healthz = false, seen_upload = false;
	for (size_t i = 0; i < gw_router_count(router); i++) {
		gw_method method;
		const char *pattern;
		cr_assert(gw_router_route_at(router, i, &method, &pattern));
		seen_healthz |= method == GW_GET && strcmp(pattern, "/healthz") == 0;
		seen_upload |= method == GW_POST && strcmp(pattern, "/upload") == 0;
	}
	cr_assert(seen_healthz && seen_upload);
	cr_assert_eq(gw_router_count(router), 11);
}

Test(gw_http, metrics_count_requests)
{
	for (int i = 0; i < 3; i++) {
		reply r = request("GET", "/healthz", NULL, NULL, 0);
		hc_reply_free(&r);
	}
	reply r = request("GET", "/missing", NULL, NULL, 0);
	hc_reply_free(&r);
	r = request("GET", "/metrics", NULL, NULL, 0);
	cr_assert_eq(r.status, 200);
	expect_header(&r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	cr_assert_not_null(
	        strstr(r.body,
	               "orion_http_requests_total{method=\"GET\",route=\"/healthz\",code=\"2xx\"} 3\n"),
	        "%s", r.body);
	cr_assert_not_null(strstr(
	        r.body, "orion_http_requests_total{method=\"GET\",route=\"unmatched\",code=\"4xx\"} 1\n"));
	cr_assert_not_null(strstr(
	        r.body, "orion_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"} 3\n"));
	hc_reply_free(&r);
}

Test(gw_http, head_then_get_on_one_connection)
{
	reply r = {0};
	char url[128];
	long connections = 0;
	CURL *curl = curl_easy_init();
	snprintf(url, sizeof(url), "%s/healthz", base_url);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, hc_on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	cr_assert_eq(curl_easy_perform(curl), CURLE_OK);
	curl_easy_setopt(curl, CURLOPT_NOBODY, 0L);
	curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	cr_assert_eq(curl_easy_perform(curl), CURLE_OK);
	curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &connections);
	cr_assert_eq(connections, 0, "the second request reused the connection");
	cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
	curl_easy_cleanup(curl);
	free(r.body);
}

/* DELETE path (a 204) then GET /echo on one kept-alive connection: a body
 * written after the 204's header would be read as the start of the GET's
 * answer. */
static void expect_204_then_get_on_one_connection(const char *path)
{
	reply r = {0};
	char url[128];
	long status = 0, connections = 0;
	curl_off_t length = -1;
	CURL *curl = curl_easy_init();
	snprintf(url, sizeof(url), "%s%s", base_url, path);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, hc_on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, hc_on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	cr_assert_eq(curl_easy_perform(curl), CURLE_OK, "%s", path);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	cr_assert_eq(status, 204, "%s", path);
	cr_assert_null(r.body, "%s: no body after a 204", path);
	if (strcmp(path, "/no-content/later") == 0)
		cr_assert_null(hc_header(&r, "Content-Type"), "gw_async_complete_empty: no Content-Type");

	snprintf(url, sizeof(url), "%s/echo?q=after", base_url);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, NULL);
	curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	CURLcode rc = curl_easy_perform(curl);
	cr_assert_eq(rc, CURLE_OK, "%s then GET: %s", path, curl_easy_strerror(rc));
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &connections);
	curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
	cr_assert_eq(status, 200, "%s then GET", path);
	cr_assert_eq(connections, 0, "%s: the GET reused the connection", path);
	json_t *body = json_loads(r.body ? r.body : "", 0, NULL);
	cr_assert_not_null(body, "%s then GET: %s", path, r.body);
	cr_assert_str_eq(json_string_value(json_object_get(body, "q")), "after");
	json_decref(body);
	curl_easy_cleanup(curl);
	hc_reply_free(&r);
}

/* Sends first on a fresh connection, reads its answer's header block, then
 * sends second ("Connection: close") and reads to the end. Returns
 * everything read (free it). */
static char *two_requests_on_one_socket(const char *first, const char *second)
{
	char chunk[4096], *all = NULL;
	size_t len = 0;
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(gw_server_port(server))};
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	cr_assert_eq(send(fd, first, strlen(first), 0), (ssize_t)strlen(first));
	hc_append(&all, &len, "", 0);
	while (strstr(all, "\r\n\r\n") == NULL) {
		ssize_t n = recv(fd, chunk, sizeof chunk, 0);
		cr_assert_gt(n, 0, "the first answer: %s", all);
		hc_append(&all, &len, chunk, (size_t)n);
	}
	cr_assert_eq(send(fd, second, strlen(second), 0), (ssize_t)strlen(second));
	for (ssize_t n; (n = recv(fd, chunk, sizeof chunk, 0)) > 0;)
		hc_append(&all, &len, chunk, (size_t)n);
	close(fd);
	return all;
}

/* The bytes that follow a 204's header block must be the next answer. */
static void expect_nothing_after_the_204(const char *path)
{
	char first[256];
	snprintf(first, sizeof first, "DELETE %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
	char *all = two_requests_on_one_socket(
	        first, "GET /echo?q=after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	cr_assert(strncmp(all, "HTTP/1.1 204 ", 13) == 0, "%s", all);
	const char *next = strstr(all, "\r\n\r\n") + 4;
	cr_assert(strncmp(next, "HTTP/1.1 200 ", 13) == 0, "%s: bytes after the 204: %s", path, next);
	cr_assert_not_null(strstr(next, "\"q\":\"after\""), "%s", next);
	free(all);
}

Test(gw_http, a_204_sends_no_body_and_keeps_the_connection_usable)
{
	expect_nothing_after_the_204("/no-content");
	expect_nothing_after_the_204("/no-content/later");
	expect_nothing_after_the_204("/no-content/later-json");
	expect_204_then_get_on_one_connection("/no-content");
	expect_204_then_get_on_one_connection("/no-content/later");
	expect_204_then_get_on_one_connection("/no-content/later-json");
}

Test(gw_http, the_server_makes_jansson_free_through_the_wiping_free)
{
	json_malloc_t alloc = NULL;
	json_free_t release = NULL;
	json_get_alloc_funcs(&alloc, &release);
	cr_assert(release == gw_wiping_free, "jansson frees without wiping");
	cr_assert(alloc == malloc);
	/* and values still come and go through it */
	json_t *card = json_pack("{s:s}", "number", "4242424242424242");
	cr_assert_not_null(card);
	char *text = json_dumps(card, JSON_COMPACT);
	cr_assert_str_eq(text, "{\"number\":\"4242424242424242\"}");
	release(text);
	json_decref(card);
}
