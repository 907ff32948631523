/* test_http_guard.c — strict HTTP/1.1 framing and slow clients (issue 14,
 * findings 3 and 4) against a real `orion serve`, over raw sockets: what a
 * request smuggler or a slowloris sends, byte for byte.
 *
 * Framing: two Content-Length headers, "Content-Length :", a
 * Transfer-Encoding other than exactly chunked or beside Content-Length are
 * answered 400 problem+json, the connection is closed and the bytes after
 * the head never run as a second request; %00 in a query is 400; the error
 * pages libevent would write in HTML are problem+json. Slow clients: 500
 * connections from one address trickling a header byte at a time get at
 * most the per-address cap, are closed at the header deadline, and another
 * client is served all along. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "http_client.h"

#define ATTACKER     "127.0.0.2"
#define BYSTANDER    "127.0.0.3"
#define SLOW_CLIENTS 500
#define PER_ADDRESS  50

static char *data_dir;
static pid_t server_pid;
static char base_url[64];
static int port;

static void start(void)
{
	struct rlimit files;
	const char *env[] = {"ORION_LOG_LEVEL=warn", "ORION_HTTP_HEADER_TIMEOUT_MS=1000",
	                     "ORION_HTTP_BODY_TIMEOUT_MS=1000", "ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS=50",
	                     NULL};
	/* the test holds SLOW_CLIENTS sockets */
	if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
		files.rlim_cur = files.rlim_max;
		setrlimit(RLIMIT_NOFILE, &files);
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	data_dir = th_tempdir("http-guard");
	unsetenv("ORION_NATS_URL");
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, &port);
}

static void stop(void)
{
	hc_set_source_address(NULL);
	hc_serve_teardown(&server_pid, &data_dir);
	curl_global_cleanup();
}

TestSuite(http_guard, .init = start, .fini = stop, .timeout = 120);

/* ---- raw sockets ----------------------------------------------------------- */

/* A connected socket from source (NULL: any), with a receive timeout. */
static int dial(const char *source)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = 5};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	if (source != NULL) {
		struct sockaddr_in from = {.sin_family = AF_INET};
		inet_pton(AF_INET, source, &from.sin_addr);
		cr_assert_eq(bind(fd, (struct sockaddr *)&from, sizeof from), 0, "bind %s: %s", source,
		             strerror(errno));
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0, "connect: %s", strerror(errno));
	return fd;
}

/* Sends request on a fresh connection and reads until the server closes it
 * (or 5 s pass: then *closed is false). Returns everything read (free it). */
static char *exchange(const char *request, size_t len, bool *closed)
{
	char chunk[4096], *all = NULL;
	size_t total = 0;
	int fd = dial(NULL);
	cr_assert_eq(send(fd, request, len, MSG_NOSIGNAL), (ssize_t)len);
	hc_append(&all, &total, "", 0);
	*closed = false;
	for (;;) {
		ssize_t n = recv(fd, chunk, sizeof chunk, 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET)) {
			*closed = true;
			break;
		}
		if (n < 0)
			break; /* the timeout: the server kept the connection open */
		hc_append(&all, &total, chunk, (size_t)n);
	}
	close(fd);
	return all;
}

/* How many answers (status lines) are in text. */
static int answers_in(const char *text)
{
	int n = 0;
	for (const char *p = text; (p = strstr(p, "HTTP/1.1 ")) != NULL; p += 9)
		n += strspn(p + 9, "0123456789") == 3 && p[12] == ' ';
	return n;
}

/* One answer of status with a problem+json body, then the close. */
static void expect_one_problem(const char *request, int status)
{
	bool closed;
	char prefix[32];
	char *all = exchange(request, strlen(request), &closed);
	snprintf(prefix, sizeof prefix, "HTTP/1.1 %d ", status);
	cr_assert(strncmp(all, prefix, strlen(prefix)) == 0, "expected %d for:\n%s\ngot:\n%s", status,
	          request, all);
	cr_assert_eq(answers_in(all), 1, "one answer only (no smuggled second request):\n%s", all);
	cr_assert_not_null(strcasestr(all, "\r\nContent-Type: application/problem+json\r\n"), "%s", all);
	const char *body = strstr(all, "\r\n\r\n");
	cr_assert_not_null(body);
	json_t *problem = json_loads(body + 4, 0, NULL);
	cr_assert_not_null(problem, "a JSON problem: %s", body + 4);
	cr_assert_eq(json_integer_value(json_object_get(problem, "status")), status, "%s", body + 4);
	cr_assert(json_is_string(json_object_get(problem, "detail")));
	json_decref(problem);
	cr_assert(closed, "the connection is closed after the answer:\n%s", all);
	free(all);
}

/* ---- framing ----------------------------------------------------------------- */

/* Each head is followed by a body of "{}" and a second request that must never run. */
#define SMUGGLED "GET /api/v1/products/smuggled HTTP/1.1\r\nHost: t\r\n\r\n"

Test(http_guard, two_content_lengths_are_400_and_close)
{
	expect_one_problem("POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	                   "Content-Length: 2\r\nContent-Length: 54\r\n\r\n{}" SMUGGLED,
	                   400);
	expect_one_problem("POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	                   "Content-Length: 2, 2\r\n\r\n{}" SMUGGLED,
	                   400);
}

Test(http_guard, whitespace_before_the_colon_is_400_and_close)
{
	expect_one_problem("POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	                   "Content-Length : 54\r\n\r\n{}" SMUGGLED,
	                   400);
}

Test(http_guard, a_transfer_encoding_other_than_chunked_is_400_and_close)
{
	expect_one_problem("POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	                   "Transfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" SMUGGLED,
	                   400);
	expect_one_problem("POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	                   "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" SMUGGLED,
	                   400);
	/* chunked beside Content-Length */
	expect_one_problem(
	        "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	        "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" SMUGGLED,
	        400);
	/* chunk extensions and trailers */
	expect_one_problem("POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	                   "Transfer-Encoding: chunked\r\n\r\n2;x=1\r\n{}\r\n0\r\n\r\n" SMUGGLED,
	                   400);
	expect_one_problem(
	        "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nAuthorization: x\r\n\r\n" SMUGGLED,
	        400);
	/* folded header fields, bare LF, no Host */
	expect_one_problem("GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n", 400);
	expect_one_problem("GET /healthz HTTP/1.1\nHost: t\r\n\r\n", 400);
	expect_one_problem("GET /healthz HTTP/1.1\r\n\r\n", 400);
}

Test(http_guard, valid_chunked_and_pipelined_requests_are_served)
{
	bool closed;
	const char request[] =
	        "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	        "Transfer-Encoding: chunked\r\n\r\n"
	        "a\r\n{\"email\":\"\r\n"
	        "2b\r\nnobody@example.com\",\"password\":\"wrong one\"}\r\n"
	        "0\r\n\r\n"
	        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
	char *all = exchange(request, sizeof request - 1, &closed);
	cr_assert(strncmp(all, "HTTP/1.1 401 ", 13) == 0, "the chunked login ran:\n%s", all);
	cr_assert_eq(answers_in(all), 2, "%s", all);
	cr_assert_not_null(strstr(all, "HTTP/1.1 200 "), "%s", all);
	cr_assert(closed);
	free(all);
}

Test(http_guard, nul_in_a_query_value_is_400)
{
	hc_reply r = hc_call(base_url, "GET", "/api/v1/products?limit=5%00", NULL, NULL, 0, NULL, NULL, 5000);
	cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
	cr_assert_str_eq(hc_header(&r, "Content-Type"), "application/problem+json");
	hc_reply_free(&r);
	r = hc_call(base_url, "GET", "/api/v1/products?q=a%00b", NULL, NULL, 0, NULL, NULL, 5000);
	cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
	/* a form value: the confirmation form's token, a well-shaped one cut by %00 */
	r = hc_call(base_url, "POST", "/api/v1/orders/o-any/confirm", NULL,
	            "token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%00tail", 0,
	            "application/x-www-form-urlencoded", NULL, 5000);
	cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
	hc_reply_free(&r);
}

Test(http_guard, libevents_html_error_pages_are_problem_json)
{
	char *big = malloc(20 * 1024 + 128);
	size_t n = (size_t)sprintf(big, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
	memset(big + n, 'b', 20 * 1024);
	strcpy(big + n + 20 * 1024, "\r\n\r\n");
	expect_one_problem(big, 431);
	free(big);
	expect_one_problem("FOO /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 501);
	expect_one_problem("GET /healthz\r\n\r\n", 400);
	expect_one_problem("GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", 505);
	expect_one_problem("POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nExpect: something\r\n"
	                   "Content-Length: 2\r\n\r\n{}",
	                   417);
	expect_one_problem("POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	                   "Content-Length: 3145728\r\n\r\n{}",
	                   413);
}

/* ---- slow clients ------------------------------------------------------------- */

typedef enum slow_end { STILL_OPEN, ANSWERED_503, ANSWERED_408, CLOSED_OTHERWISE } slow_end;

/* Reads what a slow client got, if anything; returns its end so far. */
static slow_end slow_read(int fd)
{
	char text[512];
	ssize_t n = recv(fd, text, sizeof text - 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return STILL_OPEN;
	if (n <= 0)
		return CLOSED_OTHERWISE;
	text[n] = '\0';
	if (strncmp(text, "HTTP/1.1 503 ", 13) == 0)
		return ANSWERED_503;
	if (strncmp(text, "HTTP/1.1 408 ", 13) == 0)
		return ANSWERED_408;
	return CLOSED_OTHERWISE;
}

Test(http_guard, a_slowloris_from_one_address_does_not_stop_others, .timeout = 90)
{
	int fds[SLOW_CLIENTS];
	slow_end ends[SLOW_CLIENTS];
	const char head[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ";
	int64_t start = th_now_ms();
	for (int i = 0; i < SLOW_CLIENTS; i++) {
		fds[i] = dial(ATTACKER);
		ends[i] = STILL_OPEN;
		send(fds[i], head, sizeof head - 1, MSG_NOSIGNAL);
	}
	/* for 4 s the attacker trickles a header byte every 250 ms on every
	 * connection still open, while a bystander is served within 1 s each time */
	int served = 0;
	while (th_now_ms() - start < 4000) {
		for (int i = 0; i < SLOW_CLIENTS; i++)
			if (ends[i] == STILL_OPEN && (ends[i] = slow_read(fds[i])) == STILL_OPEN)
				send(fds[i], "a", 1, MSG_NOSIGNAL);
		hc_set_source_address(BYSTANDER);
		int64_t before = th_now_ms();
		hc_reply r =
		        hc_call(base_url, "GET", "/api/v1/products?limit=1", NULL, NULL, 0, NULL, NULL, 5000);
		cr_assert_eq(r.status, 200, "the bystander is served (%ld)", r.status);
		cr_assert_lt(th_now_ms() - before, 1000, "the bystander waited %lld ms",
		             (long long)(th_now_ms() - before));
		hc_reply_free(&r);
		hc_set_source_address(NULL);
		served++;
		th_sleep_ms(250);
	}
	int open = 0, refused = 0, timed_out = 0, other = 0;
	for (int i = 0; i < SLOW_CLIENTS; i++) {
		if (ends[i] == STILL_OPEN)
			ends[i] = slow_read(fds[i]);
		open += ends[i] == STILL_OPEN;
		refused += ends[i] == ANSWERED_503;
		timed_out += ends[i] == ANSWERED_408;
		other += ends[i] == CLOSED_OTHERWISE;
		close(fds[i]);
	}
	cr_assert_gt(served, 5);
	cr_assert_eq(open, 0, "every slow connection is closed by now (%d open)", open);
	cr_assert_eq(refused, SLOW_CLIENTS - PER_ADDRESS, "past the cap: 503 at once (%d)", refused);
	cr_assert_eq(timed_out, PER_ADDRESS, "the held ones: 408 at the header deadline (%d, %d other)",
	             timed_out, other);
}
