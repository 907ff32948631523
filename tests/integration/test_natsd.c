/* test_natsd.c — the nats-server launcher against the real nats-server:
 * JetStream is usable once natsd_start returns, kill loses no acknowledged
 * message, restart comes back on the same port and store. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "harness.h"
#include "natsd.h"

static natsd *server;
static char *scratch;

static void teardown(void)
{
	th_natsd_stop(server);
	server = NULL;
	th_rmrf(scratch);
	free(scratch);
	scratch = NULL;
}

TestSuite(natsd, .fini = teardown, .timeout = 60);

static natsConnection *connect_to(const char *url)
{
	natsOptions *opts = NULL;
	natsConnection *nc = NULL;
	cr_assert_eq(natsOptions_Create(&opts), NATS_OK);
	natsOptions_SetURL(opts, url);
	natsOptions_SetTimeout(opts, 2000);
	natsOptions_SetAllowReconnect(opts, false);
	natsStatus s = natsConnection_Connect(&nc, opts);
	natsOptions_Destroy(opts);
	return s == NATS_OK ? nc : NULL;
}

static void add_stream(jsCtx *js)
{
	jsStreamConfig cfg;
	jsStreamConfig_Init(&cfg);
	const char *subjects[] = {"t.>"};
	cfg.Name = "T";
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_AddStream(&si, js, &cfg, NULL, &jerr);
	cr_assert_eq(s, NATS_OK, "js_AddStream: %s (jerr %d)", natsStatus_GetText(s), (int)jerr);
	jsStreamInfo_Destroy(si);
}

static uint64_t publish(jsCtx *js, const char *subject, const char *data)
{
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_Publish(&ack, js, subject, data, (int)strlen(data), NULL, &jerr);
	cr_assert_eq(s, NATS_OK, "js_Publish: %s (jerr %d)", natsStatus_GetText(s), (int)jerr);
	uint64_t seq = ack->Sequence;
	jsPubAck_Destroy(ack);
	return seq;
}

static void expect_message(jsCtx *js, uint64_t seq, const char *data)
{
	natsMsg *msg = NULL;
	natsStatus s = js_GetMsg(&msg, js, "T", seq, NULL, NULL);
	cr_assert_eq(s, NATS_OK, "js_GetMsg(%llu): %s", (unsigned long long)seq, natsStatus_GetText(s));
	cr_assert_eq(natsMsg_GetDataLength(msg), (int)strlen(data));
	cr_assert_arr_eq(natsMsg_GetData(msg), data, strlen(data));
	natsMsg_Destroy(msg);
}

Test(natsd, starts_with_jetstream_ready_and_survives_kill_and_restart)
{
	server = th_natsd_start("natsd");
	int port = natsd_port(server);
	cr_assert_gt(port, 0);
	cr_assert_gt(natsd_pid(server), 0);
	char expected_url[64];
	snprintf(expected_url, sizeof(expected_url), "nats://127.0.0.1:%d", port);
	cr_assert_str_eq(natsd_url(server), expected_url);

	/* Given a stream with one acknowledged message. */
	natsConnection *nc = connect_to(natsd_url(server));
	cr_assert_not_null(nc);
	jsCtx *js = NULL;
	cr_assert_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	add_stream(js);
	uint64_t seq = publish(js, "t.a", "hello");
	cr_assert_eq(seq, 1);
	expect_message(js, seq, "hello");
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);

	/* When the server is killed, nobody can connect. */
	natsd_kill(server);
	cr_assert_eq(natsd_pid(server), 0);
	cr_assert_null(connect_to(expected_url));

	/* Then a restart serves the same port and the same data. */
	cr_assert_eq(natsd_restart(server), ORN_OK);
	cr_assert_eq(natsd_port(server), port);
	cr_assert_str_eq(natsd_url(server), expected_url);
	nc = connect_to(natsd_url(server));
	cr_assert_not_null(nc);
	cr_assert_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	expect_message(js, seq, "hello");
	cr_assert_eq(publish(js, "t.b", "again"), 2);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

Test(natsd, restart_of_a_running_server_is_graceful_and_keeps_data)
{
	server = th_natsd_start("natsd");
	natsConnection *nc = connect_to(natsd_url(server));
	cr_assert_not_null(nc);
	jsCtx *js = NULL;
	cr_assert_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	add_stream(js);
	publish(js, "t.x", "kept");
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);

	pid_t before = natsd_pid(server);
	cr_assert_eq(natsd_restart(server), ORN_OK);
	cr_assert_neq(natsd_pid(server), before);
	cr_assert_eq(kill(before, 0), -1, "the old server must be gone");

	nc = connect_to(natsd_url(server));
	cr_assert_not_null(nc);
	cr_assert_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	expect_message(js, 1, "kept");
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

Test(natsd, stop_ends_the_child)
{
	server = th_natsd_start("natsd");
	pid_t pid = natsd_pid(server);
	char url[64];
	snprintf(url, sizeof(url), "%s", natsd_url(server));
	th_natsd_stop(server);
	server = NULL;
	cr_assert_eq(kill(pid, 0), -1);
	cr_assert_null(connect_to(url));
	natsd_stop(NULL); /* NULL is fine */
	natsd_kill(NULL);
	cr_assert_eq(natsd_restart(NULL), ORN_EINVAL);
}

Test(natsd, explicit_port_log_file_and_missing_store_parents)
{
	scratch = th_tempdir("natsd");
	char store[512], log_file[512];
	snprintf(store, sizeof(store), "%s/a/b/store", scratch);
	snprintf(log_file, sizeof(log_file), "%s/server.log", scratch);
	natsd_options opts;
	natsd_options_init(&opts);
	opts.store_dir = store;
	opts.log_file = log_file;
	opts.port = natsd_free_port();
	cr_assert_gt(opts.port, 0);
	natsd *d = NULL;
	cr_assert_eq(natsd_start(&opts, &d), ORN_OK);
	server = d; /* stopped by teardown */
	cr_assert_eq(natsd_port(d), opts.port);
	cr_assert(th_wait_for_file_line(log_file, "Server is ready", 5000));
	cr_assert_eq(access(store, F_OK), 0);
}

Test(natsd, a_taken_port_fails_fast_with_eunavailable)
{
	/* Occupy a port: nats-server cannot bind it and exits. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(addr);
	cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&addr, &len), 0);

	scratch = th_tempdir("natsd");
	natsd_options opts;
	natsd_options_init(&opts);
	opts.store_dir = scratch;
	opts.port = ntohs(addr.sin_port);
	opts.start_timeout_ms = 8000;
	natsd *d = NULL;
	int64_t t0 = th_now_ms();
	cr_assert_eq(natsd_start(&opts, &d), ORN_EUNAVAILABLE);
	cr_assert_null(d);
	cr_assert_lt(th_now_ms() - t0, 7000, "a dead child must be noticed before the timeout");
	close(fd);
}

Test(natsd, a_server_that_never_gets_ready_times_out)
{
	/* A "server" that runs but never listens. */
	scratch = th_tempdir("natsd");
	char fake[512];
	snprintf(fake, sizeof(fake), "%s/fake-server", scratch);
	FILE *f = fopen(fake, "w");
	cr_assert_not_null(f);
	fputs("#!/bin/sh\nexec sleep 30\n", f);
	fclose(f);
	chmod(fake, 0700);
	natsd_options opts;
	natsd_options_init(&opts);
	opts.binary = fake;
	opts.store_dir = scratch;
	opts.start_timeout_ms = 300;
	natsd *d = NULL;
	cr_assert_eq(natsd_start(&opts, &d), ORN_EUNAVAILABLE);
	cr_assert_null(d);
}

Test(natsd, bad_options_are_rejected)
{
	natsd_options opts;
	natsd_options_init(&opts);
	cr_assert_str_eq(opts.binary, "nats-server");
	cr_assert_eq(opts.start_timeout_ms, 10000);
	natsd *d = NULL;
	cr_assert_eq(natsd_start(&opts, &d), ORN_EINVAL, "store_dir is required");
	cr_assert_null(d);
	opts.store_dir = "/tmp/never-used";
	opts.port = 70000;
	cr_assert_eq(natsd_start(&opts, &d), ORN_EINVAL);
	opts.port = 0;
	opts.binary = "no-such-nats-server-binary";
	cr_assert_eq(natsd_start(&opts, &d), ORN_ENOTFOUND);
	opts.binary = "/nonexistent/nats-server";
	cr_assert_eq(natsd_start(&opts, &d), ORN_ENOTFOUND);
	cr_assert_null(d);
}

/* True if pid is gone or a zombie nobody has reaped yet. */
static bool process_gone(pid_t pid)
{
	char path[64], stat_line[256];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return true;
	size_t n = fread(stat_line, 1, sizeof(stat_line) - 1, f);
	fclose(f);
	stat_line[n] = '\0';
	const char *paren = strrchr(stat_line, ')');
	return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

Test(natsd, a_crashing_owner_takes_its_server_along)
{
	/* A child process starts a server and dies without stopping it. */
	scratch = th_tempdir("natsd");
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t owner = fork();
	cr_assert_geq(owner, 0);
	if (owner == 0) {
		natsd_options opts;
		natsd_options_init(&opts);
		opts.store_dir = scratch;
		natsd *d = NULL;
		pid_t server_pid = natsd_start(&opts, &d) == ORN_OK ? natsd_pid(d) : 0;
		ssize_t w = write(fds[1], &server_pid, sizeof(server_pid));
		_exit(w == sizeof(server_pid) ? 0 : 1);
	}
	close(fds[1]);
	pid_t server_pid = 0;
	cr_assert_eq(read(fds[0], &server_pid, sizeof(server_pid)), (ssize_t)sizeof(server_pid));
	close(fds[0]);
	cr_assert_gt(server_pid, 0);
	cr_assert_eq(th_wait_exit(owner, 5000), 0);

	int64_t deadline = th_now_ms() + 5000;
	while (!process_gone(server_pid) && th_now_ms() < deadline)
		th_sleep_ms(10);
	cr_assert(process_gone(server_pid), "nats-server %ld outlived its owner", (long)server_pid);
}

Test(natsd, free_port_is_bindable)
{
	int port = natsd_free_port();
	cr_assert_gt(port, 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
}

Test(natsd, spawned_children_get_extra_env_and_exit_codes)
{
	scratch = th_tempdir("spawn");
	char log_path[512];
	snprintf(log_path, sizeof(log_path), "%s/child.log", scratch);
	char *argv[] = {"sh", "-c", "echo \"value=$ORION_TEST_VALUE\"; exit 3", NULL};
	char *env[] = {"ORION_TEST_VALUE=42", NULL};
	pid_t pid = th_spawn(argv, env, log_path);
	cr_assert_eq(th_wait_exit(pid, 5000), 3);
	cr_assert(th_wait_for_file_line(log_path, "value=42", 1000));
	cr_assert_not(th_wait_for_file_line(log_path, "absent", 50));

	char *sleeper[] = {"sleep", "30", NULL};
	pid = th_spawn(sleeper, NULL, NULL);
	cr_assert_eq(th_wait_exit(pid, 50), -1);
	th_kill(pid, SIGTERM);
	cr_assert_eq(th_wait_exit(pid, 5000), 128 + SIGTERM);
	pid = th_spawn(sleeper, NULL, NULL);
	th_kill(pid, SIGKILL);
	th_kill(0, SIGKILL); /* ignored */

	cr_assert_eq(access(th_orion_bin(), X_OK), 0, "ORION_BIN points at the orion binary");

	char *missing[] = {"/nonexistent/program", NULL};
	pid = th_spawn(missing, NULL, log_path);
	cr_assert_eq(th_wait_exit(pid, 5000), 127);
}
