/* bench_common.h — what the benchmarks share: time, temporary directories,
 * process CPU, the machine's facts for the report, spreads over rounds,
 * option parsing, signals and messages, and a three-node nats-server cluster;
 * and, for the benchmarks that drive a running shop over its HTTP API
 * (bench_orders, bench_flash): the API calls, the setup of products and
 * customers, the order events followed on NATS, watched processes' CPU,
 * nats-server's message counters and a Maildir's count. */
#ifndef ORION_BENCH_COMMON_H
#define ORION_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <jansson.h>
#include <nats/nats.h>

/* Set by SIGINT or SIGTERM once bench_catch_signals has run: loops stop early. */
extern volatile sig_atomic_t bench_interrupted;

/* SIGINT and SIGTERM set bench_interrupted; SIGPIPE is ignored. */
void bench_catch_signals(void);

/* "bench: " + the formatted message + a line break, on stderr. */
__attribute__((format(printf, 1, 2))) void bench_say(const char *fmt, ...);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* Sleeps until bench_now_ns() reaches t (returns at once if it has). */
void bench_sleep_until_ns(int64_t t);

/* Removes path and everything below it (NULL or "" ignored). */
void bench_rmrf(const char *path);

/* CPU seconds (user + system) process pid has used so far; 0 if unknown. */
double bench_proc_cpu_s(pid_t pid);

/* Sorts v[0..n) ascending. */
void bench_sort_i64(int64_t *v, size_t n);

/* The p-quantile (0..1, nearest rank) of sorted nanoseconds v[0..n), in ms; 0 if n == 0. */
double bench_percentile_ms(const int64_t *v, size_t n, double p);

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

/* ---- a running shop: its HTTP API ----------------------------------------- */

/* One request on a kept-alive handle to base + "/api/v1" + path: GET when
 * body is NULL and method is "GET", else method with body (JSON, "" if NULL).
 * Returns the HTTP status (0 on a transport error) and the parsed JSON body
 * in *out if out is not NULL (NULL if none). token: a bearer token or NULL. */
long bench_http(CURL *c, const char *base, const char *method, const char *path, const char *token,
                const char *body, json_t **out);

/* The access token of a login (malloc'd), NULL on failure. */
char *bench_login(CURL *c, const char *base, const char *email, const char *password);

/* Creates count products "BENCH-<seed>-<tag>-<i>" priced 10.00 EUR with
 * stock units each, as the admin; returns their ids (malloc'd array of
 * malloc'd strings), NULL (and why, said) on failure. */
char **bench_create_products(CURL *c, const char *base, const char *admin_token, int count, long stock,
                             unsigned seed, const char *tag);

/* Registers customers bench-<seed>-<i>@example.com and logs each in, with
 * threads parallel senders (registration is Argon2id work in the gateway);
 * returns their tokens (malloc'd array), NULL (and why, said) on failure. */
char **bench_register_customers(const char *base, int count, int threads, unsigned seed);

/* The options every shop bench takes: --url, --nats, --admin-email,
 * --admin-password, --varz (nats-server's monitoring base URL) and --watch
 * name=pid (into *watch). */
typedef struct bench_shop_args {
	const char *url, *nats_url, *admin_email, *admin_password, *varz;
} bench_shop_args;

/* Takes option k with value v if it is one of those; false otherwise. */
struct bench_watch;
bool bench_shop_arg(bench_shop_args *a, struct bench_watch *watch, const char *k, const char *v);

/* True when the required ones (all but --varz) are set. */
bool bench_shop_args_complete(const bench_shop_args *a);

/* Placements that failed, by HTTP status ([0]: transport error, [1]: the
 * cart could not be filled, passed as status -1). */
typedef struct bench_failures {
	size_t total, by_status[600];
} bench_failures;

/* True if status is 202; otherwise counts it in f and returns false. */
bool bench_placed(bench_failures *f, int status);

/* "  failed: N x HTTP S" lines for each status counted. */
void bench_failures_print(const bench_failures *f);

/* ---- a running shop: its order events on NATS ------------------------------ */

/* How an order settled, as seen on NATS. */
typedef struct bench_settled {
	int64_t at_ns;    /* bench_now_ns() when the event arrived */
	bool reserved;    /* OrderReserved (awaiting_confirmation); else OrderCancelled */
	char reason[208]; /* OrderCancelled's reason ("out_of_stock", ...) */
	size_t lines;     /* the lines of its OrderPlaced (0 if not seen) */
	bool settled;     /* reserved or cancelled seen */
} bench_settled;

typedef struct bench_order_events bench_order_events;

/* Follows orion.evt.order.> with a core subscription (no pending limits) and
 * records, per order id, the lines of its OrderPlaced and the last
 * OrderReserved or OrderCancelled seen. NULL
 * (and why, said: not the URL, which may hold a password) on failure. */
bench_order_events *bench_order_events_follow(const char *nats_url);

/* How order id settled; false if it has not yet. */
bool bench_order_events_get(bench_order_events *f, const char *id, bench_settled *out);

/* Unsubscribes, closes and frees (NULL ignored). */
void bench_order_events_stop(bench_order_events *f);

/* ---- a running shop: the processes and the server's counters ------------- */

/* Processes whose CPU is reported (--watch name=pid; pid 0 is this process),
 * sampled at up to BENCH_WATCH_MARKS instants. */
#define BENCH_MAX_WATCHED 8
#define BENCH_WATCH_MARKS 3
typedef struct bench_watch {
	struct {
		char name[32];
		pid_t pid;
		double cpu_s[BENCH_WATCH_MARKS];
	} p[BENCH_MAX_WATCHED];
	int count;
} bench_watch;

/* Adds "name=pid"; false if malformed or full. */
bool bench_watch_add(bench_watch *w, const char *spec);

/* Samples every watched process's CPU seconds into cpu_s[mark]. */
void bench_watch_sample(bench_watch *w, int mark);

/* CPU seconds process name used between marks from and to; -1 if not watched. */
double bench_watch_used(const bench_watch *w, const char *name, int from, int to);

/* nats-server's /varz message counters at an instant. */
typedef struct bench_varz {
	double in, out; /* in_msgs, out_msgs */
	int64_t at_ns;
} bench_varz;

/* Reads monitor_base + "/varz"; false if it does not answer (or base is NULL). */
bool bench_varz_sample(const char *monitor_base, bench_varz *v);

/* NATS messages per operation between load0 and load1, less the idle rate
 * seen between idle0 and idle1: *in and *out (in_msgs, out_msgs). */
void bench_varz_per_op(const bench_varz *idle0, const bench_varz *idle1, const bench_varz *load0,
                       const bench_varz *load1, double ops, double *in, double *out);

/* nats-server's /connz (every connection's counters) at an instant: the
 * parsed answer (json_decref it), or NULL. */
json_t *bench_connz_sample(const char *monitor_base);

/* Prints, per connection name (a role's connection, the bench's own), the
 * messages it sent (in) and was sent (out) between two /connz samples per
 * operation, the busiest first; the idle traffic is included. */
void bench_connz_print(const json_t *before, const json_t *after, double ops);

/* Files delivered into a Maildir (new/ and cur/); 0 if dir is NULL. */
size_t bench_maildir_count(const char *dir);

#endif
