/* harness.c — fixtures for Criterion tests: temp dirs, nats-server, children. */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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

/* True if entry ("KEY=value") sets a key that one of extra sets too. */
static bool overridden(const char *entry, char *const extra[])
{
	const char *eq = strchr(entry, '=');
	size_t key_len = eq ? (size_t)(eq - entry) : strlen(entry);
	for (size_t i = 0; extra && extra[i]; i++) {
		if (strncmp(extra[i], entry, key_len) == 0 && extra[i][key_len] == '=')
			return true;
	}
	return false;
}

/* Builds the child's environment before fork: after fork only
 * async-signal-safe calls are allowed. Returns a malloc'd array whose strings
 * are borrowed. */
static char **merged_environment(char *const extra[])
{
	size_t n = 0, m = 0;
	while (environ && environ[n])
		n++;
	while (extra && extra[m])
		m++;
	char **env = calloc(n + m + 1, sizeof(*env));
	cr_assert(env != NULL);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (!overridden(environ[i], extra))
			env[k++] = environ[i];
	}
	for (size_t i = 0; i < m; i++)
		env[k++] = extra[i];
	env[k] = NULL;
	return env;
}

pid_t th_spawn(char *const argv[], char *const envp_extra[], const char *log_path)
{
	cr_assert(argv && argv[0]);
	char **env = merged_environment(envp_extra);
	int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cr_assert(null_fd >= 0);
	int log_fd = -1;
	if (log_path) {
		log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		cr_assert(log_fd >= 0, "open(%s): %s", log_path, strerror(errno));
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		dup2(null_fd, STDIN_FILENO);
		if (log_fd >= 0) {
			dup2(log_fd, STDOUT_FILENO);
			dup2(log_fd, STDERR_FILENO);
		}
		execvpe(argv[0], argv, env);
		_exit(127);
	}
	free(env);
	close(null_fd);
	if (log_fd >= 0)
		close(log_fd);
	cr_assert(pid > 0, "fork: %s", strerror(errno));
	return pid;
}

int th_wait_exit(pid_t pid, int timeout_ms)
{
	int64_t deadline = th_now_ms() + timeout_ms;
	for (;;) {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid) {
			if (WIFEXITED(status))
				return WEXITSTATUS(status);
			if (WIFSIGNALED(status))
				return 128 + WTERMSIG(status);
		} else if (r < 0 && errno != EINTR) {
			return -1;
		}
		if (th_now_ms() >= deadline)
			return -1;
		th_sleep_ms(5);
	}
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

/* True if the file at path currently contains needle. */
static bool file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	bool found = false;
	while (buf) {
		if (cap - len < 4096) {
			char *bigger = realloc(buf, cap * 2);
			if (!bigger)
				break;
			buf = bigger;
			cap *= 2;
		}
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		if (n == 0)
			break;
		len += n;
	}
	if (buf) {
		buf[len] = '\0';
		found = strstr(buf, needle) != NULL;
	}
	free(buf);
	fclose(f);
	return found;
}

bool th_wait_for_file_line(const char *path, const char *needle, int timeout_ms)
{
	int64_t deadline = th_now_ms() + timeout_ms;
	for (;;) {
		if (file_contains(path, needle))
			return true;
		if (th_now_ms() >= deadline)
			return false;
		th_sleep_ms(20);
	}
}
