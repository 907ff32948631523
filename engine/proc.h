/* proc.h — child processes that never outlive their parent.
 *
 * Used for the embedded nats-server, by the test harness and by the
 * benchmarks: a crash of the parent must not leave servers behind. */
#ifndef ORION_PROC_H
#define ORION_PROC_H

#include <sys/types.h>

/* Starts argv[0] (executed as is if it holds a '/', else looked up on PATH)
 * with the current environment plus env_extra ("KEY=value" strings,
 * NULL-terminated, may be NULL; they override variables of the same name).
 * stdin is /dev/null; stdout and stderr are appended to log_path (NULL:
 * inherited). The child gets PR_SET_PDEATHSIG(SIGKILL) — it dies when the
 * calling THREAD exits, so spawn from a long-lived thread — a session and
 * process group of its own (setsid: signals sent to the parent's process
 * group, such as a terminal's Ctrl-C, do not reach it; the parent stops it),
 * an empty signal mask with default dispositions, and no descriptor above 2. If exec fails
 * the child exits with 127. Returns the pid, or -1 with errno set. */
pid_t proc_spawn(char *const argv[], char *const env_extra[], const char *log_path);

/* Waits up to timeout_ms for pid to exit and reaps it. Returns its exit code,
 * 128 + the signal number if a signal ended it, or -1 on timeout (the child
 * still runs) or if pid is not a child of ours. */
int proc_wait(pid_t pid, int timeout_ms);

#endif
