/* bench_common.h — what the benchmarks share: time, temporary directories,
 * process CPU, the machine's facts for the report, spreads over rounds,
 * option parsing, signals and messages, and a three-node nats-server cluster. */
#ifndef ORION_BENCH_COMMON_H
#define ORION_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include <nats/nats.h>

/* Set by SIGINT or SIGTERM once bench_catch_signals has run: loops stop early. */
extern volatile sig_atomic_t bench_interrupted;

/* SIGINT and SIGTERM set bench_interrupted; SIGPIPE is ignored. */
void bench_catch_signals(void);

/* "bench: " + the formatted message + a line break, on stderr. */
__attribute__((format(printf, 1, 2))) void bench_say(const char *fmt, ...);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* Removes path and everything below it (NULL or "" ignored). */
void bench_rmrf(const char *path);

/* CPU seconds (user + system) process pid has used so far; 0 if unknown. */
double bench_proc_cpu_s(pid_t pid);

/* Facts printed with every result. */
typedef struct bench_machine {
	long nproc;
	char cpu[128];
	long mem_mib;
	char kernel[192];
	char nats_server[128];
	char cnats[32];
	char store_fs[32];
} bench_machine;

/* Fills m; store_fs is the file system of store_dir. */
void bench_machine_facts(bench_machine *m, const char *store_dir);

/* Median, min and max of v[0..n) (n <= BENCH_MAX_ROUNDS). */
#define BENCH_MAX_ROUNDS 20
typedef struct bench_spread {
	double median, min, max;
} bench_spread;
bench_spread bench_spread_of(const double *v, int n);

/* strtol of all of s within [min, max]. */
bool bench_parse_long(const char *s, long min, long max, long *out);

/* The command shown in a report: $BENCH_COMMAND, else argv joined. */
void bench_command_line(int argc, char **argv, char *out, size_t cap);

/* Creates stream name on subjects (one pattern) with the settings of ORION_EVT
 * and the given replicas; false (and why, said) if the server refuses. */
bool bench_add_stream(natsConnection *nc, const char *name, const char *subjects, int replicas);

/* Three nats-servers with JetStream clustered by routes on loopback ports,
 * the production layout of README "Production layout" without TLS or users. */
#define BENCH_CLUSTER_NODES 3
typedef struct bench_cluster {
	pid_t pid[BENCH_CLUSTER_NODES]; /* 0: not running */
	int port[BENCH_CLUSTER_NODES];
	char url[256]; /* the client URLs, comma separated */
} bench_cluster;

/* Starts the nodes (configuration, store and log of node i under dir/n<i>)
 * and waits until JetStream answers through each, i.e. a meta leader is
 * elected. False (the nodes stopped, the reason said) if that takes more
 * than 30 s. The children die with the calling thread (proc_spawn). */
bool bench_cluster_start(const char *dir, bench_cluster *out);

/* SIGTERM to every node, SIGKILL after 10 s; safe on a cluster never started. */
void bench_cluster_stop(bench_cluster *c);

#endif
