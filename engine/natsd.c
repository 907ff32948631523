/* natsd.c — runs nats-server as a child process and knows when it is usable.
 *
 * The child is started with fork+exec (not posix_spawn) because it must ask
 * the kernel for PR_SET_PDEATHSIG: if we die, by a crash, an abort in a test or
 * SIGKILL, the server is killed too, so no test run ever leaks a server.
 * PDEATHSIG fires when the *thread* that forked exits, so call natsd_start
 * from a thread that lives as long as the server should (the main thread).
 *
 * Readiness has two parts. Identity: nats-server writes
 * "<name>_<pid>.ports" into --ports_file_dir once its client listener is
 * bound; finding that file for OUR pid proves that the port is ours and not
 * some other process's (and tells the port when we asked for a random one
 * with "-p -1", which has no bind-then-close race). Usability: a NATS
 * connection must get JetStream account info, so callers can create streams
 * at once. */
#include "natsd.h"
#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "log.h"

#define STOP_GRACE_MS         5000
#define DEFAULT_START_TIMEOUT 10000
#define POLL_INTERVAL_MS      10

struct natsd {
	char *binary;      /* resolved path of the executable */
	char *store_dir;   /* JetStream store, also where the ports file goes */
	char *log_file;    /* server log (stdout/stderr of the child go there too) */
	char *config_file; /* optional -c file */
	char *user;        /* the readiness check's user, or NULL */
	char *password;
	int port; /* 0 until the first start has learnt it */
	int start_timeout_ms;
	pid_t pid; /* 0 when no child is running */
	char url[64];
};

void natsd_options_init(natsd_options *o)
{
	memset(o, 0, sizeof(*o));
	o->binary = "nats-server";
	o->start_timeout_ms = DEFAULT_START_TIMEOUT;
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Creates dir and its parents (mode 0700); ok if they exist. */
static orn_rc mkdir_parents(const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);
	if (len == 0 || len >= sizeof(path))
		return ORN_EINVAL;
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return ORN_EIO;
		*p = '/';
	}
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return ORN_EIO;
	return ORN_OK;
}

/* Finds name on PATH unless it contains a '/'. Returns a malloc'd path or NULL. */
static char *resolve_binary(const char *name)
{
	if (strchr(name, '/'))
		return access(name, X_OK) == 0 ? strdup(name) : NULL;
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	char candidate[PATH_MAX];
	for (const char *dir = path; dir;) {
		const char *colon = strchr(dir, ':');
		size_t dir_len = colon ? (size_t)(colon - dir) : strlen(dir);
		int n = snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)dir_len, dir_len ? dir : ".",
		                 name);
		if (n > 0 && (size_t)n < sizeof(candidate) && access(candidate, X_OK) == 0)
			return strdup(candidate);
		dir = colon ? colon + 1 : NULL;
	}
	return NULL;
}

static void free_handle(natsd *d)
{
	if (!d)
		return;
	free(d->binary);
	free(d->store_dir);
	free(d->log_file);
	free(d->config_file);
	free(d->user);
	if (d->password != NULL)
		memset(d->password, 0, strlen(d->password));
	free(d->password);
	free(d);
}

/* Forks and execs the server on d->port (or a random port when 0). */
static orn_rc spawn(natsd *d)
{
	char port_arg[16];
	snprintf(port_arg, sizeof(port_arg), "%d", d->port > 0 ? d->port : -1);
	char *argv[16];
	int argc = 0;
	argv[argc++] = d->binary;
	argv[argc++] = "-js";
	argv[argc++] = "-a";
	argv[argc++] = "127.0.0.1";
	argv[argc++] = "-p";
	argv[argc++] = port_arg;
	argv[argc++] = "--store_dir";
	argv[argc++] = d->store_dir;
	argv[argc++] = "-l";
	argv[argc++] = d->log_file;
	argv[argc++] = "--ports_file_dir";
	argv[argc++] = d->store_dir;
	if (d->config_file) {
		argv[argc++] = "-c";
		argv[argc++] = d->config_file;
	}
	argv[argc] = NULL;

	pid_t pid = proc_spawn(argv, NULL, d->log_file);
	if (pid < 0)
		return ORN_EIO;
	d->pid = pid;
	return ORN_OK;
}

/* Non-blocking: true if the child has exited (and reaps it). */
static bool child_exited(natsd *d)
{
	int status;
	pid_t r = waitpid(d->pid, &status, WNOHANG);
	if (r == d->pid || (r < 0 && errno == ECHILD)) {
		d->pid = 0;
		return true;
	}
	return false;
}

/* Looks for "<anything>_<pid>.ports" in the store dir; on success reads the
 * client port from it ({"nats":["nats://127.0.0.1:PORT"]}) and removes it. */
static bool read_ports_file(natsd *d, int *port)
{
	char suffix[32], path[PATH_MAX], buf[512];
	snprintf(suffix, sizeof(suffix), "_%ld.ports", (long)d->pid);
	size_t suffix_len = strlen(suffix);
	bool found = false;
	DIR *dir = opendir(d->store_dir);
	if (!dir)
		return false;
	struct dirent *e;
	while (!found && (e = readdir(dir)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len <= suffix_len || strcmp(e->d_name + len - suffix_len, suffix) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", d->store_dir, e->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		const char *at = strstr(buf, "nats://127.0.0.1:");
		if (!at || !strchr(at, '"')) /* not fully written yet */
			continue;
		*port = atoi(at + strlen("nats://127.0.0.1:"));
		found = *port > 0;
		if (found)
			unlink(path);
	}
	closedir(dir);
	return found;
}

/* One attempt: connect and ask for JetStream account info. */
static bool jetstream_answers(const natsd *d, int64_t timeout_ms)
{
	const char *url = d->url;
	natsOptions *opts = NULL;
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsAccountInfo *info = NULL;
	bool ok = false;
	if (natsOptions_Create(&opts) != NATS_OK)
		goto done;
	if (natsOptions_SetURL(opts, url) != NATS_OK || natsOptions_SetTimeout(opts, timeout_ms) != NATS_OK ||
	    natsOptions_SetAllowReconnect(opts, false) != NATS_OK ||
	    (d->user != NULL && natsOptions_SetUserInfo(opts, d->user, d->password) != NATS_OK))
		goto done;
	if (natsConnection_Connect(&nc, opts) != NATS_OK)
		goto done;
	if (natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		goto done;
	jsOptions js_opts;
	jsOptions_Init(&js_opts);
	js_opts.Wait = timeout_ms;
	ok = js_GetAccountInfo(&info, js, &js_opts, NULL) == NATS_OK;
done:
	jsAccountInfo_Destroy(info);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(opts);
	return ok;
}

static void kill_and_reap(natsd *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGKILL);
	while (waitpid(d->pid, NULL, 0) < 0 && errno == EINTR)
		;
	d->pid = 0;
}

/* Polls until the child owns its port and JetStream answers. */
static orn_rc wait_ready(natsd *d)
{
	int64_t deadline = monotonic_ms() + d->start_timeout_ms;
	bool bound = false;
	while (monotonic_ms() < deadline) {
		if (child_exited(d)) {
			log_error("nats-server exited during start", "log", d->log_file);
			return ORN_EUNAVAILABLE;
		}
		if (!bound) {
			int port = 0;
			if (read_ports_file(d, &port)) {
				if (d->port > 0 && port != d->port) {
					log_error("nats-server listens on an unexpected port", "log",
					          d->log_file);
					break;
				}
				d->port = port;
				snprintf(d->url, sizeof(d->url), "nats://127.0.0.1:%d", port);
				bound = true;
				continue;
			}
		} else {
			int64_t left = deadline - monotonic_ms();
			if (left > 0 && jetstream_answers(d, left < 2000 ? left : 2000))
				return ORN_OK;
		}
		orn_sleep_ms(POLL_INTERVAL_MS);
	}
	log_error("nats-server did not become ready in time", "log", d->log_file);
	kill_and_reap(d);
	return ORN_EUNAVAILABLE;
}

static orn_rc start_child(natsd *d)
{
	orn_rc rc = spawn(d);
	if (rc != ORN_OK) {
		log_error("cannot start nats-server", "binary", d->binary, "error", strerror(errno));
		return rc;
	}
	rc = wait_ready(d);
	if (rc == ORN_OK) {
		char pid_text[24];
		snprintf(pid_text, sizeof(pid_text), "%ld", (long)d->pid);
		log_info("nats-server ready", "url", d->url, "pid", pid_text, "store", d->store_dir);
	}
	return rc;
}

static char *strdup_or_null(const char *s, bool *failed)
{
	if (!s)
		return NULL;
	char *copy = strdup(s);
	if (!copy)
		*failed = true;
	return copy;
}

orn_rc natsd_start(const natsd_options *o, natsd **out)
{
	orn_rc rc;
	*out = NULL;
	if (!o || !o->store_dir || !*o->store_dir || o->port < 0 || o->port > 65535)
		return ORN_EINVAL;
	natsd *d = calloc(1, sizeof(*d));
	if (!d)
		return ORN_ENOMEM;
	bool failed = false;
	d->store_dir = strdup_or_null(o->store_dir, &failed);
	d->config_file = strdup_or_null(o->config_file, &failed);
	d->user = strdup_or_null(o->user, &failed);
	d->password = strdup_or_null(o->password, &failed);
	if (o->log_file) {
		d->log_file = strdup_or_null(o->log_file, &failed);
	} else if (asprintf(&d->log_file, "%s/nats-server.log", o->store_dir) < 0) {
		d->log_file = NULL;
		failed = true;
	}
	if (failed) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	d->port = o->port;
	d->start_timeout_ms = o->start_timeout_ms > 0 ? o->start_timeout_ms : DEFAULT_START_TIMEOUT;
	d->binary = resolve_binary(o->binary ? o->binary : "nats-server");
	if (!d->binary) {
		log_error("nats-server binary not found", "binary", o->binary ? o->binary : "nats-server");
		rc = ORN_ENOTFOUND;
		goto fail;
	}
	if ((rc = mkdir_parents(d->store_dir)) != ORN_OK) {
		log_error("cannot create the nats-server store directory", "dir", d->store_dir);
		goto fail;
	}
	if ((rc = start_child(d)) != ORN_OK)
		goto fail;
	*out = d;
	return ORN_OK;
fail:
	free_handle(d);
	return rc;
}

/* SIGTERM, wait up to grace_ms, then SIGKILL. */
static void terminate(natsd *d, int grace_ms)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	int64_t deadline = monotonic_ms() + grace_ms;
	while (monotonic_ms() < deadline) {
		if (child_exited(d))
			return;
		orn_sleep_ms(POLL_INTERVAL_MS);
	}
	log_error("nats-server ignored SIGTERM; killing it", "url", d->url);
	kill_and_reap(d);
}

void natsd_stop(natsd *d)
{
	if (!d)
		return;
	terminate(d, STOP_GRACE_MS);
	free_handle(d);
}

void natsd_kill(natsd *d)
{
	if (d)
		kill_and_reap(d);
}

orn_rc natsd_restart(natsd *d)
{
	if (!d)
		return ORN_EINVAL;
	terminate(d, STOP_GRACE_MS);
	return start_child(d);
}

const char *natsd_url(const natsd *d)
{
	return d->url;
}

int natsd_port(const natsd *d)
{
	return d->port;
}

pid_t natsd_pid(const natsd *d)
{
	return d->pid;
}

int natsd_free_port(void)
{
	int port = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(addr);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
		port = ntohs(addr.sin_port);
	close(fd);
	return port;
}
