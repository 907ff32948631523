/* harness.c — fixtures for Criterion tests: temp dirs, nats-server, children. */
#include "harness.h"
#include "proc.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* th_natsd_stop must remove the store dir, which the natsd handle does not
 * expose; remember it here. A test process runs few servers at once. */
#define MAX_SERVERS 16
static struct {
	natsd *server;
	char *dir;
} servers[MAX_SERVERS];

int64_t th_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

char *th_tempdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	char *path = NULL;
	cr_assert(asprintf(&path, "%s/orion-%s-XXXXXX", base, tag ? tag : "test") > 0);
	cr_assert(mkdtemp(path) != NULL, "mkdtemp(%s): %s", path, strerror(errno));
	return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

void th_rmrf(const char *path)
{
	if (path && *path)
		nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

natsd *th_natsd_start(const char *tag)
{
	char *dir = th_tempdir(tag);
	natsd_options opts;
	natsd_options_init(&opts);
	opts.store_dir = dir;
	natsd *d = NULL;
	orn_rc rc = natsd_start(&opts, &d);
	if (rc != ORN_OK) {
		th_rmrf(dir);
		free(dir);
		cr_assert_fail("natsd_start: %s", orn_strerror(rc));
	}
	for (size_t i = 0; i < MAX_SERVERS; i++) {
		if (!servers[i].server) {
			servers[i].server = d;
			servers[i].dir = dir;
			return d;
		}
	}
	natsd_stop(d);
	th_rmrf(dir);
	free(dir);
	cr_assert_fail("more than %d servers in one test", MAX_SERVERS);
	return NULL;
}

const char *th_natsd_dir(const natsd *d)
{
	for (size_t i = 0; i < MAX_SERVERS; i++)
		if (servers[i].server == d)
			return servers[i].dir;
	cr_assert_fail("th_natsd_dir: not a server of th_natsd_start");
	return NULL;
}

bool th_dir_contains(const char *root, const void *needle, size_t len, char *found, size_t cap)
{
	DIR *dir = opendir(root);
	struct dirent *entry;
	bool hit = false;
	if (dir == NULL)
		return false;
	while (!hit && (entry = readdir(dir)) != NULL) {
		char path[4096];
		struct stat st;
		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", root, entry->d_name);
		if (lstat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			hit = th_dir_contains(path, needle, len, found, cap);
		} else if (S_ISREG(st.st_mode)) {
			FILE *f = fopen(path, "rb");
			char *data = f != NULL && st.st_size > 0 ? malloc((size_t)st.st_size) : NULL;
			if (data != NULL && fread(data, 1, (size_t)st.st_size, f) == (size_t)st.st_size &&
			    memmem(data, (size_t)st.st_size, needle, len) != NULL) {
				hit = true;
				if (found != NULL)
					snprintf(found, cap, "%s", path);
			}
			free(data);
			if (f != NULL)
				fclose(f);
		}
	}
	closedir(dir);
	return hit;
}

es_store *th_store_open(natsd *d)
{
	es_options o;
	es_store *store = NULL;
	es_options_init(&o);
	o.url = natsd_url(d);
	cr_assert_eq(es_store_open(&o, &store), ORN_OK, "the event store opens on %s", natsd_url(d));
	return store;
}

void th_natsd_stop(natsd *d)
{
	if (!d)
		return;
	natsd_stop(d);
	for (size_t i = 0; i < MAX_SERVERS; i++) {
		if (servers[i].server == d) {
			th_rmrf(servers[i].dir);
			free(servers[i].dir);
			servers[i].server = NULL;
			servers[i].dir = NULL;
		}
	}
}

const char *th_orion_bin(void)
{
	const char *bin = getenv("ORION_BIN");
	cr_assert(bin && *bin, "ORION_BIN is not set (run the tests with meson test)");
	return bin;
}

int th_run_orion(const char *env, const char *args, const char *stderr_path, char **out)
{
	const char *tmp = getenv("TMPDIR");
	char out_path[512];
	snprintf(out_path, sizeof out_path, "%s/orion-run-XXXXXX",
	         tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	int fd = mkstemp(out_path);
	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	close(fd);
	size_t cap =
	        strlen(env ? env : "") + strlen(th_orion_bin()) + strlen(args) + strlen(stderr_path) + 64;
	char *cmd = malloc(cap + sizeof out_path);
	cr_assert_not_null(cmd);
	snprintf(cmd, cap + sizeof out_path, "%s '%s' %s > '%s' 2>> '%s'", env ? env : "", th_orion_bin(),
	         args, out_path, stderr_path);
	int status = system(cmd);
	free(cmd);
	cr_assert(status != -1 && WIFEXITED(status), "orion %s did not exit", args);
	if (out != NULL) {
		FILE *f = fopen(out_path, "r");
		cr_assert_not_null(f);
		cr_assert_eq(fseek(f, 0, SEEK_END), 0);
		long size = ftell(f);
		cr_assert_geq(size, 0);
		rewind(f);
		char *text = malloc((size_t)size + 1);
		cr_assert_not_null(text);
		size_t n = fread(text, 1, (size_t)size, f);
		text[n] = '\0';
		fclose(f);
		*out = text;
	}
	unlink(out_path);
	return WEXITSTATUS(status);
}

pid_t th_spawn(char *const argv[], char *const envp_extra[], const char *log_path)
{
	cr_assert(argv && argv[0]);
	pid_t pid = proc_spawn(argv, envp_extra, log_path);
	cr_assert(pid > 0, "spawn %s: %s", argv[0], strerror(errno));
	return pid;
}

int th_wait_exit(pid_t pid, int timeout_ms)
{
	return proc_wait(pid, timeout_ms);
}

void th_kill(pid_t pid, int sig)
{
	if (pid <= 0)
		return;
	kill(pid, sig);
	if (sig == SIGKILL) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
}

/* The rest of the first line of the file at path that follows needle (at
 * most cap - 1 bytes, without the newline) into out; false if no line has it. */
static bool file_line_after(const char *path, const char *needle, char *out, size_t cap)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	size_t buf_cap = 1 << 16, len = 0;
	char *buf = malloc(buf_cap);
	bool found = false;
	while (buf) {
		if (buf_cap - len < 4096) {
			char *bigger = realloc(buf, buf_cap * 2);
			if (!bigger)
				break;
			buf = bigger;
			buf_cap *= 2;
		}
		size_t n = fread(buf + len, 1, buf_cap - len - 1, f);
		if (n == 0)
			break;
		len += n;
	}
	if (buf) {
		buf[len] = '\0';
		const char *at = strstr(buf, needle);
		if ((found = at != NULL) && out != NULL && cap > 0) {
			at += strlen(needle);
			snprintf(out, cap, "%.*s", (int)strcspn(at, "\n"), at);
		}
	}
	free(buf);
	fclose(f);
	return found;
}

bool th_wait_for_file_text(const char *path, const char *needle, char *rest, size_t cap, int timeout_ms)
{
	int64_t deadline = th_now_ms() + timeout_ms;
	for (;;) {
		if (file_line_after(path, needle, rest, cap))
			return true;
		if (th_now_ms() >= deadline)
			return false;
		th_sleep_ms(20);
	}
}

bool th_wait_for_file_line(const char *path, const char *needle, int timeout_ms)
{
	return th_wait_for_file_text(path, needle, NULL, 0, timeout_ms);
}
