/* proc.c — see proc.h. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* environ with env_extra's variables replacing those of the same name.
 * Built before fork because only async-signal-safe calls may follow it.
 * Returns a malloc'd array whose strings are borrowed. */
static char **merged_environment(char *const extra[])
{
	size_t n = 0, m = 0, k = 0;
	while (environ != NULL && environ[n] != NULL)
		n++;
	while (extra != NULL && extra[m] != NULL)
		m++;
	char **env = malloc((n + m + 1) * sizeof *env);
	if (env == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t key_len = eq != NULL ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		bool replaced = false;
		for (size_t j = 0; j < m && !replaced; j++)
			replaced = strncmp(extra[j], environ[i], key_len) == 0 && extra[j][key_len] == '=';
		if (!replaced)
			env[k++] = environ[i];
	}
	for (size_t j = 0; j < m; j++)
		env[k++] = extra[j];
	env[k] = NULL;
	return env;
}

/* Child side of fork: only async-signal-safe calls from here to exec.
 * gcov cannot see it (exec replaces the process before counters are written). */
/* GCOVR_EXCL_START */
static void exec_child(char *const argv[], char **env, int null_fd, int log_fd, pid_t parent)
{
	sigset_t none;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent) /* the parent died before prctl took effect */
		_exit(127);
	/* A session of its own: a terminal's Ctrl-C goes to the foreground
	 * process group, so it reaches the parent alone, which stops the child
	 * after everything that still uses it (PDEATHSIG survives setsid). */
	if (setsid() < 0)
		_exit(127);
	/* Blocked or ignored signals survive exec; the child must see SIGTERM. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	if (dup2(null_fd, STDIN_FILENO) < 0)
		_exit(127);
	if (log_fd >= 0 && (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0))
		_exit(127);
	/* Descriptors a library opened without O_CLOEXEC must not leak into the child. */
	if (close_range(3, ~0U, 0) != 0) {
		long max = sysconf(_SC_OPEN_MAX);
		for (int fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
			close(fd);
	}
	execvpe(argv[0], argv, env);
	_exit(127);
}
/* GCOVR_EXCL_STOP */

pid_t proc_spawn(char *const argv[], char *const env_extra[], const char *log_path)
{
	pid_t pid = -1;
	int null_fd = -1, log_fd = -1;
	char **env = NULL;
	if (argv == NULL || argv[0] == NULL) {
		errno = EINVAL;
		return -1;
	}
	if ((env = merged_environment(env_extra)) == NULL)
		goto done;
	if ((null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
		goto done;
	if (log_path != NULL &&
	    (log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0)
		goto done;
	pid_t parent = getpid();
	pid = fork();
	if (pid == 0)
		exec_child(argv, env, null_fd, log_fd, parent);
done:;
	int saved_errno = errno;
	free(env);
	if (null_fd >= 0)
		close(null_fd);
	if (log_fd >= 0)
		close(log_fd);
	errno = saved_errno;
	return pid;
}

int proc_wait(pid_t pid, int timeout_ms)
{
	struct timespec start, now, pause = {0, 5 * 1000 * 1000};
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		int status = 0;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
		if (r < 0 && errno != EINTR)
			return -1;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long elapsed_ms =
		        (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (elapsed_ms >= timeout_ms)
			return -1;
		nanosleep(&pause, NULL);
	}
}
