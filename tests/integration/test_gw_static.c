/* test_gw_static.c — gateway/gw_static.c end to end: a real server with a
 * routed API path and the static files as its fallback, over a temporary
 * directory, driven with libcurl. Content types, ETag and If-None-Match,
 * HEAD, the index of "/" and "/admin/", the storefront's and the admin
 * console's own pages, 404 problem+json for unknown files, directory
 * traversal (plain, encoded,
 * double-encoded, backslashes), dot files and symbolic links never served,
 * methods other than GET and HEAD, the CSP with the provider's origin, and
 * bad arguments at creation. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <zlib.h>

#include "gw_http.h"
#include "gw_static.h"
#include "http_client.h"
#include "log.h"

#define PROVIDER    "http://127.0.0.1:4099/psp"
#define INDEX       "<!doctype html><title>shop</title>"
#define APP_JS      "export const x = 1;\n"
#define ADMIN_INDEX "<!doctype html><title>admin</title>"

static char big_js[4096]; /* compresses well: served gzip to whoever accepts it */

static gw_server *server;
static gw_static *web;
static pthread_t loop_thread;
static char base_url[64];
static char root[128];
static char outside[160];

static void api_route(gw_request *r, void *arg)
{
	gw_respond_json(r, 200, json_pack("{s:b}", "api", 1));
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

static void *run_loop(void *arg)
{
	gw_server_run(server);
	return NULL;
}

static void setup(void)
{
	char path[256];
	log_set_level(LOG_ERROR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(root, sizeof root, "/tmp/orion-static-%ld", (long)getpid());
	snprintf(outside, sizeof outside, "%s-secret.txt", root);
	cr_assert_eq(mkdir(root, 0700), 0);
	snprintf(path, sizeof path, "%s/admin", root);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof path, "%s/.git", root);
	cr_assert_eq(mkdir(path, 0700), 0);
	write_file(root, "index.html", INDEX);
	write_file(root, "app.js", APP_JS);
	big_js[0] = '\0';
	for (int i = 0; strlen(big_js) + 64 < sizeof big_js; i++)
		snprintf(big_js + strlen(big_js), sizeof big_js - strlen(big_js),
		         "export const item%d = \"%d\";\n", i, i * 7);
	write_file(root, "big.js", big_js);
	write_file(root, "style.css", "body{}");
	write_file(root, "favicon.svg", "<svg/>");
	write_file(root, "admin/index.html", ADMIN_INDEX);
	write_file(root, ".env", "SECRET=1");
	write_file(root, ".git/config", "[core]");
	write_file(root, "with space.js", "x");
	FILE *f = fopen(outside, "w");
	cr_assert_not_null(f);
	fputs("top secret", f);
	fclose(f);
	snprintf(path, sizeof path, "%s/link.txt", root);
	cr_assert_eq(symlink(outside, path), 0);

	gw_server_options o;
	gw_server_options_init(&o);
	o.bind_addr = "127.0.0.1:0";
	cr_assert_eq(gw_server_create(&o, &server), ORN_OK);
	cr_assert_eq(gw_server_route(server, GW_GET, "/api/v1/thing", api_route, NULL), ORN_OK);
	cr_assert_eq(gw_static_create(root, PROVIDER, &web), ORN_OK);
	gw_static_serve(web, server);
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%u", gw_server_port(server));
	cr_assert_eq(pthread_create(&loop_thread, NULL, run_loop, NULL), 0);
}

static void teardown(void)
{
	char cmd[300];
	gw_server_stop(server);
	pthread_join(loop_thread, NULL);
	gw_server_destroy(server);
	gw_static_destroy(web);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", root, outside);
	cr_assert_eq(system(cmd), 0);
	curl_global_cleanup();
}

TestSuite(gw_static, .init = setup, .fini = teardown, .timeout = 30);

static hc_reply get(const char *method, const char *path, const char *header)
{
	const char *headers[] = {header, NULL};
	return hc_perform(base_url, method, path, header != NULL ? headers : NULL, NULL, 0, 5000);
}

static void assert_not_found(const char *path)
{
	hc_reply r = get("GET", path, NULL);
	cr_assert_eq(r.status, 404, "%s: %ld", path, r.status);
	cr_assert_str_eq(hc_header(&r, "Content-Type"), "application/problem+json", "%s", path);
	cr_assert_null(strstr(r.body ? r.body : "", "secret"), "%s", path);
	cr_assert_null(strstr(r.body ? r.body : "", "SECRET"), "%s", path);
	hc_reply_free(&r);
}

Test(gw_static, loads_only_plain_names)
{
	/* index.html, app.js, big.js, style.css, favicon.svg, admin/index.html:
	 * no dot file, nothing under .git, no name with a space, no symbolic link */
	cr_assert_eq(gw_static_count(web), 6);
}

Test(gw_static, serves_files_with_their_types)
{
	static const struct {
		const char *path, *type, *body;
	} cases[] = {
	        {"/", "text/html; charset=utf-8", INDEX},
	        {"/index.html", "text/html; charset=utf-8", INDEX},
	        {"/app.js", "text/javascript; charset=utf-8", APP_JS},
	        {"/style.css", "text/css; charset=utf-8", "body{}"},
	        {"/favicon.svg", "image/svg+xml", "<svg/>"},
	        {"/admin/", "text/html; charset=utf-8", ADMIN_INDEX},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		hc_reply r = get("GET", cases[i].path, NULL);
		cr_assert_eq(r.status, 200, "%s: %ld", cases[i].path, r.status);
		cr_assert_str_eq(hc_header(&r, "Content-Type"), cases[i].type, "%s", cases[i].path);
		cr_assert_eq(r.body_len, strlen(cases[i].body), "%s", cases[i].path);
		cr_assert_eq(memcmp(r.body, cases[i].body, r.body_len), 0, "%s", cases[i].path);
		cr_assert_str_eq(hc_header(&r, "Cache-Control"), "no-cache");
		cr_assert_str_eq(hc_header(&r, "X-Content-Type-Options"), "nosniff");
		cr_assert_str_eq(hc_header(&r, "X-Frame-Options"), "DENY");
		cr_assert_not_null(hc_header(&r, "ETag"));
		hc_reply_free(&r);
	}
}

Test(gw_static, csp_is_strict_and_names_the_provider)
{
	hc_reply r = get("GET", "/", NULL);
	const char *csp = hc_header(&r, "Content-Security-Policy");
	cr_assert_not_null(csp);
	cr_assert_not_null(strstr(csp, "default-src 'self'"));
	cr_assert_not_null(strstr(csp, "script-src 'self';"));
	cr_assert_not_null(strstr(csp, "frame-ancestors 'none'"));
	cr_assert_not_null(strstr(csp, "connect-src 'self' http://127.0.0.1:4099"), "%s", csp);
	cr_assert_null(strstr(csp, "/psp"), "an origin, not the URL's path: %s", csp);
	cr_assert_null(strstr(csp, "unsafe"), "%s", csp);
	cr_assert_str_eq(gw_static_csp(web), csp);
	hc_reply_free(&r);
}

Test(gw_static, etag_and_if_none_match)
{
	char inm[128];
	hc_reply r = get("GET", "/app.js", NULL);
	cr_assert_eq(r.status, 200);
	const char *etag = hc_header(&r, "ETag");
	cr_assert_eq(strlen(etag), 34);
	cr_assert_eq(etag[0], '"');
	snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
	hc_reply_free(&r);

	r = get("GET", "/app.js", inm);
	cr_assert_eq(r.status, 304);
	cr_assert_eq(r.body_len, 0);
	cr_assert_not_null(hc_header(&r, "ETag"));
	hc_reply_free(&r);

	char list[200];
	snprintf(list, sizeof list, "If-None-Match: \"other\", W/%s", inm + strlen("If-None-Match: "));
	r = get("GET", "/app.js", list);
	cr_assert_eq(r.status, 304, "a weak match in a list");
	hc_reply_free(&r);

	r = get("GET", "/app.js", "If-None-Match: *");
	cr_assert_eq(r.status, 304);
	hc_reply_free(&r);

	r = get("GET", "/style.css", inm);
	cr_assert_eq(r.status, 200, "another file's ETag does not match");
	hc_reply_free(&r);

	r = get("GET", "/app.js", "If-None-Match: \"0000\"");
	cr_assert_eq(r.status, 200);
	hc_reply_free(&r);
}

Test(gw_static, head_has_headers_and_no_body)
{
	hc_reply r = get("HEAD", "/app.js", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(r.body_len, 0);
	cr_assert_str_eq(hc_header(&r, "Content-Length"), "20");
	cr_assert_str_eq(hc_header(&r, "Content-Type"), "text/javascript; charset=utf-8");
	cr_assert_not_null(hc_header(&r, "ETag"));
	hc_reply_free(&r);
	/* the connection is still usable after it */
	r = get("GET", "/app.js", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(r.body_len, strlen(APP_JS));
	hc_reply_free(&r);
}

Test(gw_static, storefront_pages_answer_the_index)
{
	const char *pages[] = {"/orders/o_123", "/orders", "/products/p-1",
	                       "/cart",         "/login",  "/confirm/o_1"};
	for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
		hc_reply r = get("GET", pages[i], NULL);
		cr_assert_eq(r.status, 200, "%s: %ld", pages[i], r.status);
		cr_assert_eq(memcmp(r.body, INDEX, strlen(INDEX)), 0, "%s", pages[i]);
		hc_reply_free(&r);
	}
	assert_not_found("/orders/a/b");
	assert_not_found("/orders/");
	assert_not_found("/orders/x.js");
	assert_not_found("/ordersx");
}

Test(gw_static, console_pages_answer_the_console_index)
{
	const char *pages[] = {"/admin/login",        "/admin/products",  "/admin/products/new",
	                       "/admin/products/p-1", "/admin/inventory", "/admin/orders",
	                       "/admin/orders/o_123", "/admin/mail"};
	for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
		hc_reply r = get("GET", pages[i], NULL);
		cr_assert_eq(r.status, 200, "%s: %ld", pages[i], r.status);
		cr_assert_eq(r.body_len, strlen(ADMIN_INDEX), "%s", pages[i]);
		cr_assert_eq(memcmp(r.body, ADMIN_INDEX, r.body_len), 0, "%s", pages[i]);
		cr_assert_not_null(hc_header(&r, "Content-Security-Policy"), "%s", pages[i]);
		hc_reply_free(&r);
	}
	/* only the console's own pages, one segment deep, plain ids */
	assert_not_found("/admin/orders/a/b");
	assert_not_found("/admin/orders/");
	assert_not_found("/admin/orders/x.js");
	assert_not_found("/admin/ordersx");
	assert_not_found("/admin/cart");
	assert_not_found("/admin/confirm/o_1");
	assert_not_found("/admin/mail/%2e%2e");
	/* and the console's pages are not the shop's */
	assert_not_found("/inventory");
	assert_not_found("/mail");
}

Test(gw_static, directory_without_slash_redirects)
{
	hc_reply r = get("GET", "/admin", NULL);
	cr_assert_eq(r.status, 301);
	cr_assert_str_eq(hc_header(&r, "Location"), "/admin/");
	hc_reply_free(&r);
}

Test(gw_static, unknown_files_are_404_problems)
{
	assert_not_found("/nope.js");
	assert_not_found("/admin/nope.html");
	assert_not_found("/api/v1/nope");
	assert_not_found("/.env");
	assert_not_found("/.git/config");
	assert_not_found("/link.txt");
	assert_not_found("/with%20space.js");
	hc_reply r = get("GET", "/api/v1/thing", NULL);
	cr_assert_eq(r.status, 200, "routes still win");
	hc_reply_free(&r);
}

Test(gw_static, no_directory_traversal)
{
	char name[300];
	const char *base = strrchr(outside, '/') + 1;
	const char *prefixes[] = {"/../",
	                          "/admin/../../",
	                          "/%2e%2e/",
	                          "/%2E%2E%2F",
	                          "/..%2f",
	                          "/%252e%252e/",
	                          "/..%5c",
	                          "/admin/..%2F..%2F",
	                          "//../",
	                          "/./../",
	                          "/%2e%2e%2f%2e%2e%2f"};
	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
		snprintf(name, sizeof name, "%s%s", prefixes[i], base);
		assert_not_found(name);
	}
	assert_not_found("/../../../../etc/passwd");
	assert_not_found("/%2e%2e/%2e%2e/etc/passwd");
	assert_not_found("/admin/%2e%2e/index.html");
}

Test(gw_static, other_methods_are_405)
{
	hc_reply r = hc_perform(base_url, "POST", "/app.js", NULL, "x", 1, 5000);
	cr_assert_eq(r.status, 405);
	cr_assert_str_eq(hc_header(&r, "Allow"), "GET, HEAD");
	hc_reply_free(&r);
	r = hc_perform(base_url, "DELETE", "/", NULL, NULL, 0, 5000);
	cr_assert_eq(r.status, 405);
	hc_reply_free(&r);
	r = hc_perform(base_url, "POST", "/nope", NULL, "x", 1, 5000);
	cr_assert_eq(r.status, 404);
	hc_reply_free(&r);
}

Test(gw_static, creation_refuses_bad_arguments)
{
	gw_static *st = NULL;
	cr_assert_eq(gw_static_create("/nonexistent-orion-dir", NULL, &st), ORN_ENOTFOUND);
	cr_assert_null(st);
	cr_assert_eq(gw_static_create(root, "ftp://x", &st), ORN_EINVAL);
	cr_assert_eq(gw_static_create(root, "http://evil;script-src *", &st), ORN_EINVAL);
	cr_assert_eq(gw_static_create(root, "http://", &st), ORN_EINVAL);
	cr_assert_eq(gw_static_create(root, "", &st), ORN_OK);
	cr_assert_null(strstr(gw_static_csp(st), "connect-src 'self' "), "no provider: 'self' only");
	gw_static_destroy(st);
	cr_assert_eq(gw_static_create(root, "https://psp.example:8443/v1", &st), ORN_OK);
	cr_assert_not_null(strstr(gw_static_csp(st), "connect-src 'self' https://psp.example:8443"));
	gw_static_destroy(st);
}

/* The gzip body of r inflated; asserts it is a gzip stream. */
static size_t gunzip(const hc_reply *r, char *out, size_t cap)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	cr_assert_eq(inflateInit2(&z, MAX_WBITS + 16), Z_OK);
	z.next_in = (unsigned char *)r->body;
	z.avail_in = (uInt)r->body_len;
	z.next_out = (unsigned char *)out;
	z.avail_out = (uInt)cap;
	cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
	size_t n = z.total_out;
	inflateEnd(&z);
	return n;
}

Test(gw_static, gzip_to_whoever_accepts_it_with_its_own_etag)
{
	static char plain[sizeof big_js];
	hc_reply r = get("GET", "/big.js", "Accept-Encoding: gzip, deflate, br");
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(hc_header(&r, "Content-Encoding"), "gzip");
	cr_assert_str_eq(hc_header(&r, "Vary"), "Accept-Encoding");
	cr_assert_str_eq(hc_header(&r, "Content-Type"), "text/javascript; charset=utf-8");
	char gz_etag[64];
	snprintf(gz_etag, sizeof gz_etag, "%s", hc_header(&r, "ETag"));
	cr_assert_not_null(strstr(gz_etag, "-gz\""), "%s", gz_etag);
	cr_assert_lt(r.body_len * 3, strlen(big_js), "at least three times smaller: %zu", r.body_len);
	size_t n = gunzip(&r, plain, sizeof plain);
	cr_assert_eq(n, strlen(big_js));
	cr_assert_eq(memcmp(plain, big_js, n), 0);
	hc_reply_free(&r);

	/* identity: the same file as it is, its own ETag, still Vary */
	r = get("GET", "/big.js", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert_null(hc_header(&r, "Content-Encoding"));
	cr_assert_str_eq(hc_header(&r, "Vary"), "Accept-Encoding");
	cr_assert_eq(r.body_len, strlen(big_js));
	char etag[64];
	snprintf(etag, sizeof etag, "%s", hc_header(&r, "ETag"));
	cr_assert_str_neq(etag, gz_etag);
	hc_reply_free(&r);

	/* revalidation names the representation it has */
	char header[160];
	const char *both[] = {"Accept-Encoding: gzip", header, NULL};
	snprintf(header, sizeof header, "If-None-Match: %s", gz_etag);
	r = hc_perform(base_url, "GET", "/big.js", both, NULL, 0, 5000);
	cr_assert_eq(r.status, 304);
	hc_reply_free(&r);
	r = get("GET", "/big.js", header);
	cr_assert_eq(r.status, 200, "the gzip ETag does not match the identity body");
	hc_reply_free(&r);
	snprintf(header, sizeof header, "If-None-Match: %s", etag);
	r = hc_perform(base_url, "GET", "/big.js", both, NULL, 0, 5000);
	cr_assert_eq(r.status, 200, "nor the identity ETag the gzip body");
	cr_assert_str_eq(hc_header(&r, "Content-Encoding"), "gzip");
	hc_reply_free(&r);

	/* HEAD tells the length of what a GET would send */
	r = get("HEAD", "/big.js", "Accept-Encoding: gzip");
	cr_assert_eq(r.status, 200);
	cr_assert_eq(r.body_len, 0);
	cr_assert_str_eq(hc_header(&r, "Content-Encoding"), "gzip");
	cr_assert_lt(atol(hc_header(&r, "Content-Length")), (long)strlen(big_js) / 3);
	hc_reply_free(&r);
}

Test(gw_static, accept_encoding_is_read_as_rfc_9110_says)
{
	static const struct {
		const char *header;
		bool gzip;
	} cases[] = {
	        {"Accept-Encoding: gzip", true},
	        {"Accept-Encoding: GZIP;q=0.5", true},
	        {"Accept-Encoding: x-gzip", true},
	        {"Accept-Encoding: br, *", true},
	        {"Accept-Encoding: gzip;q=0", false},
	        {"Accept-Encoding: gzip; q=0.000", false},
	        {"Accept-Encoding: deflate, br", false},
	        {"Accept-Encoding: identity", false},
	        {"Accept-Encoding: gzipx", false},
	        {"Accept-Encoding: *;q=0, br", false},
	        {"Accept-Encoding: ", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		hc_reply r = get("GET", "/big.js", cases[i].header);
		cr_assert_eq(r.status, 200);
		const char *ce = hc_header(&r, "Content-Encoding");
		cr_assert_eq(ce != NULL, cases[i].gzip, "%s", cases[i].header);
		hc_reply_free(&r);
	}
	/* a small file is sent as it is: no copy, no Vary */
	hc_reply r = get("GET", "/app.js", "Accept-Encoding: gzip");
	cr_assert_null(hc_header(&r, "Content-Encoding"));
	cr_assert_null(hc_header(&r, "Vary"));
	cr_assert_eq(r.body_len, strlen(APP_JS));
	hc_reply_free(&r);
}
