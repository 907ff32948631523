/* harness.h — test support: real servers on free loopback ports, temp dirs,
 * child processes.
 *
 * Functions that cannot go on (no temp dir, server does not start) fail the
 * running Criterion test with cr_assert, so tests need no error handling for
 * their fixtures. Every child started here gets PR_SET_PDEATHSIG(SIGKILL):
 * a test process that crashes takes its servers with it. Still stop what you
 * start in the suite's .fini, which runs after a failed assertion too. */
#ifndef ORION_TEST_HARNESS_H
#define ORION_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "evstore.h"
#include "natsd.h"

/* Creates a fresh directory "$TMPDIR/orion-<tag>-XXXXXX" (TMPDIR default
 * /tmp). Returns a malloc'd path; the caller frees it (and th_rmrf's it). */
char *th_tempdir(const char *tag);

/* Removes path and everything under it (no symlink is followed). NULL ok. */
void th_rmrf(const char *path);

/* Starts nats-server -js on a random loopback port with its store in a new
 * temp dir. Never returns NULL: asserts on failure. */
natsd *th_natsd_start(const char *tag);

/* The store directory of a server from th_natsd_start. */
const char *th_natsd_dir(const natsd *d);

/* True if any regular file under root (recursively, links not followed)
 * holds the len bytes of needle; the first such path into found (cap bytes,
 * may be NULL). */
bool th_dir_contains(const char *root, const void *needle, size_t len, char *found, size_t cap);

/* Stops a server from th_natsd_start and removes its store dir. NULL ok. */
void th_natsd_stop(natsd *d);

/* An event store on d with the default options (streams created), asserted
 * to open; close it with es_store_close before th_natsd_stop. */
es_store *th_store_open(natsd *d);

/* The orion binary under test, from $ORION_BIN (set by tests/meson.build).
 * Asserts that it is set. */
const char *th_orion_bin(void);

/* Runs `<env> $ORION_BIN <args>` through the shell (env: "KEY='value' ..."
 * assignments, may be NULL; args shell words), stderr appended to
 * stderr_path. *out (may be NULL) receives all of stdout, malloc'd and
 * NUL-terminated. Returns the exit code; asserts that the
 * command ran and exited. */
int th_run_orion(const char *env, const char *args, const char *stderr_path, char **out);

/* Starts argv[0] (looked up on PATH if it has no '/') with the current
 * environment plus envp_extra ("KEY=value" strings, NULL-terminated, may be
 * NULL; they override variables of the same name). stdin is /dev/null; stdout
 * and stderr are appended to log_path (NULL: inherited). Returns the pid;
 * asserts that the fork succeeded. If exec fails the child exits with 127. */
pid_t th_spawn(char *const argv[], char *const envp_extra[], const char *log_path);

/* Waits up to timeout_ms for pid to exit and reaps it. Returns its exit code,
 * 128 + signal number if a signal ended it, or -1 on timeout (pid still runs). */
int th_wait_exit(pid_t pid, int timeout_ms);

/* Sends sig to pid; for SIGKILL also reaps it. Ignores pid <= 0. */
void th_kill(pid_t pid, int sig);

/* Polls the file at path until it contains needle, up to timeout_ms.
 * A file that does not exist yet counts as empty. */
bool th_wait_for_file_line(const char *path, const char *needle, int timeout_ms);

/* Same, and copies what follows needle on its line into rest (cap bytes,
 * NUL-terminated; rest may be NULL). */
bool th_wait_for_file_text(const char *path, const char *needle, char *rest, size_t cap, int timeout_ms);

/* Monotonic clock in milliseconds (for deadlines and measured durations). */
int64_t th_now_ms(void);

/* Sleeps for ms milliseconds. */
void th_sleep_ms(int ms);

#endif
