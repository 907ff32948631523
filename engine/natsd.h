/* natsd.h — a nats-server child process (embedded default and tests).
 *
 * Starts `nats-server -js` on a free loopback port with its store under a
 * given directory, waits until it accepts connections, and stops it (SIGTERM,
 * then SIGKILL after a grace period). Used by `orion serve` when no
 * ORION_NATS_URL is set, and by the test harness. */
#ifndef ORION_NATSD_H
#define ORION_NATSD_H

#include <stdbool.h>
#include <sys/types.h>

#include "orn.h"

typedef struct natsd natsd;

typedef struct natsd_options {
	const char *binary;      /* default: "nats-server" found on PATH */
	const char *store_dir;   /* JetStream store directory (created if absent); required */
	const char *log_file;    /* server log; NULL: <store_dir>/nats-server.log */
	int port;                /* 0: pick a free loopback port */
	const char *config_file; /* optional extra -c config (clusters, accounts) */
	const char *user;        /* with config_file's authorization: who the readiness check is */
	const char *password;
	int start_timeout_ms; /* default 10000 */
} natsd_options;

void natsd_options_init(natsd_options *o);

/* Starts the server; *out owns the child. ORN_EUNAVAILABLE if it does not
 * come up in time (the child is then stopped). */
orn_rc natsd_start(const natsd_options *o, natsd **out);
/* Stops the child (SIGTERM, waits up to 5 s, then SIGKILL) and frees. NULL ok. */
void natsd_stop(natsd *d);
/* Kills the child at once with SIGKILL without freeing (for fault tests). */
void natsd_kill(natsd *d);
/* Restarts a stopped or killed server on the same port and store. */
orn_rc natsd_restart(natsd *d);
/* "nats://127.0.0.1:PORT" (owned by d). */
const char *natsd_url(const natsd *d);
int natsd_port(const natsd *d);
pid_t natsd_pid(const natsd *d);

/* Finds a free TCP port on 127.0.0.1 (bind to 0, read, close). 0 on failure. */
int natsd_free_port(void);

#endif
