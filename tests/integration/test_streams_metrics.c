/* test_streams_metrics.c — issue 14, finding 7, through a real `orion
 * serve`: one account cannot hold more than ORION_MAX_STREAMS_PER_CUSTOMER
 * event streams (another account still can open its own), and /metrics is
 * not served on the public listener, only on ORION_METRICS_ADDR. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "http_client.h"

#define ADMIN_EMAIL    "watcher@example.com"
#define ADMIN_PASSWORD "Harbor-juniper-signal-39"
#define OTHER_EMAIL    "second-watcher@example.com"
#define TOKEN_MAX      4096

static char *data_dir;
static pid_t server_pid;
static char base_url[64];
static int port;

static void start(void)
{
	const char *env[] = {"ORION_LOG_LEVEL=info",
	                     "ORION_ADMIN_EMAIL=" ADMIN_EMAIL,
	                     "ORION_ADMIN_PASSWORD=" ADMIN_PASSWORD,
	                     "ORION_MAX_STREAMS_PER_CUSTOMER=2",
	                     "ORION_METRICS_ADDR=127.0.0.1:0",
	                     NULL};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	data_dir = th_tempdir("streams-metrics");
	unsetenv("ORION_NATS_URL");
	unsetenv("ORION_JWT_SECRET");
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, &port);
}

static void stop(void)
{
	hc_serve_teardown(&server_pid, &data_dir);
	curl_global_cleanup();
}

TestSuite(streams_metrics, .init = start, .fini = stop, .timeout = 120);

/* Opens GET path as an event stream with token on a raw socket; returns the
 * socket after the status line, and the status in *status. */
static int open_stream(const char *path, const char *token, int *status)
{
	char request[TOKEN_MAX + 256], head[512];
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = 5};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0, "connect: %s", strerror(errno));
	int n = snprintf(
	        request, sizeof request,
	        "GET %s HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\nAuthorization: Bearer %s\r\n\r\n",
	        path, token);
	cr_assert_eq(send(fd, request, (size_t)n, MSG_NOSIGNAL), n);
	ssize_t got = recv(fd, head, sizeof head - 1, 0);
	cr_assert_gt(got, 12, "an answer to %s", path);
	head[got] = '\0';
	*status = atoi(head + 9);
	return fd;
}

Test(streams_metrics, one_account_cannot_hold_more_than_its_streams)
{
	char admin[TOKEN_MAX], other[TOKEN_MAX], email_arg[128], dir_env[600], log_path[700];
	int status, fds[3];
	hc_login_token(base_url, ADMIN_EMAIL, ADMIN_PASSWORD, admin, sizeof admin);
	for (int i = 0; i < 2; i++) {
		fds[i] = open_stream("/api/v1/admin/inventory/events", admin, &status);
		cr_assert_eq(status, 200, "stream %d", i);
	}
	/* a third stream of the same account is refused */
	fds[2] = open_stream("/api/v1/admin/inventory/events", admin, &status);
	cr_assert_eq(status, 429, "the per-account cap");
	close(fds[2]);
	/* another account opens its own */
	snprintf(email_arg, sizeof email_arg, "%s", OTHER_EMAIL);
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", data_dir);
	snprintf(log_path, sizeof log_path, "%s/admin.log", data_dir);
	char *argv[] = {(char *)th_orion_bin(), "admin",        "create-user", "--email", email_arg,
	                "--password",           ADMIN_PASSWORD, NULL};
	char *envp[] = {dir_env, NULL};
	cr_assert_eq(th_wait_exit(th_spawn(argv, envp, log_path), 30000), 0, "orion admin create-user");
	hc_login_token(base_url, OTHER_EMAIL, ADMIN_PASSWORD, other, sizeof other);
	int other_fd = open_stream("/api/v1/admin/inventory/events", other, &status);
	cr_assert_eq(status, 200, "another account is not limited by the first");
	close(other_fd);
	/* once the account closes one, it may open another */
	close(fds[0]);
	int64_t deadline = th_now_ms() + 3000;
	for (;;) {
		fds[0] = open_stream("/api/v1/admin/inventory/events", admin, &status);
		if (status == 200 || th_now_ms() > deadline)
			break;
		close(fds[0]);
		th_sleep_ms(50);
	}
	cr_assert_eq(status, 200);
	close(fds[0]);
	close(fds[1]);
}

Test(streams_metrics, metrics_are_not_on_the_public_listener)
{
	hc_reply r = hc_call(base_url, "GET", "/metrics", NULL, NULL, 0, NULL, NULL, 5000);
	cr_assert_eq(r.status, 404, "/metrics on the public listener: %ld", r.status);
	hc_reply_free(&r);
	/* on ORION_METRICS_ADDR (port 0: the kernel's pick, announced in the log) */
	char log_path[700], rest[256], url[64];
	snprintf(log_path, sizeof log_path, "%s/serve.log", data_dir);
	cr_assert(th_wait_for_file_text(log_path, "\"msg\":\"metrics listening\"", rest, sizeof rest, 10000));
	const char *p = strstr(rest, "\"port\":\"");
	cr_assert_not_null(p, "%s", rest);
	snprintf(url, sizeof url, "http://127.0.0.1:%d", atoi(p + 8));
	/* the monitor thread sets the connection gauge once a second: a scrape right after the
	 * listener is announced may come before its first round (CI run of 12:05, 2026-12-07) */
	int64_t until = th_now_ms() + 10000;
	for (;;) {
		r = hc_call(url, "GET", "/metrics", NULL, NULL, 0, NULL, NULL, 5000);
		cr_assert_eq(r.status, 200);
		bool found = strstr(r.body, "orion_nats_connected") != NULL;
		if (found || th_now_ms() > until)
			cr_assert(found, "%s", r.body);
		hc_reply_free(&r);
		if (found)
			break;
		th_sleep_ms(100);
	}
}
