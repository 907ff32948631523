/* bench_reserve.c — reserve-command benchmark: the JetStream ceiling, Orion's
 * rate and Orion's latency, measured in one run on one machine.
 *
 *   1. starts its own nats-server (store in a temporary directory), then
 *      `orion serve --roles stock` against it, and creates the stock items;
 *   2. RAW: N async publishes of a real StockReserved commit's bytes to a
 *      fresh stream configured like ORION_EVT, with unique Nats-Msg-Ids over
 *      1000 subjects (the ceiling); then the same with ExpectLastSubjectSeq
 *      and one publish in flight per subject, which is what the runtime does;
 *   3. ORION THROUGHPUT: N ReserveStock commands pipelined (a window of W
 *      outstanding requests), every reply checked. Steps 2 and 3 repeat in
 *      interleaved rounds and the report gives medians, so that a change in
 *      the machine's speed during the run touches both sides alike;
 *   4. LATENCY: an open-loop sender at fixed rates (1000/s and 5000/s for 5 s
 *      by default), latency measured from each request's scheduled send time,
 *      so that a late sender cannot hide latency (no coordinated omission);
 *   5. prints a table and a markdown block for bench/RESULTS.md, with the CPU
 *      each process used in each phase (from /proc/<pid>/stat).
 *
 * With --cluster the server is three nats-servers clustered by routes and
 * every stream, ORION_EVT and the raw runs' alike, has three replicas (the
 * production layout); the CPU of the three nodes is summed.
 *
 * Everything it starts is stopped on every exit path and the temporary
 * directory is removed; children also die with it (PR_SET_PDEATHSIG). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bench_common.h"
#include "bus.h"
#include "envelope.h"
#include "evstore-internal.h" /* a bench of the engine: its own NATS options */
#include "log.h"
#include "mpack.h"
#include "natsd.h"
#include "proc.h"
#include "stock.h"

extern char **environ;

#define MAX_RATES          8
#define MAX_CONNS          8
#define MAX_CODES          8
#define LOST_AFTER_NS      (5LL * 1000000000LL)  /* a reply later than this is lost */
#define STALL_LIMIT_NS     (30LL * 1000000000LL) /* no reply for this long: give up */
#define READY_TIMEOUT_MS   30000
#define ORION_STOP_WAIT_MS 10000
#define MAX_ROUNDS         BENCH_MAX_ROUNDS

/* ---- options -------------------------------------------------------------- */

typedef struct bench_opts {
	const char *orion;    /* path of the orion binary */
	long raw_count;       /* raw publishes */
	long raw_pending;     /* cnats MaxPending of the raw publisher */
	bool raw_expect;      /* also run the ExpectLastSubjectSeq variant */
	long commands;        /* reserve commands of the throughput run */
	int items;            /* stock items (= subjects of the raw runs) */
	int window;           /* outstanding requests in the throughput run */
	int conns;            /* client connections of the throughput run */
	int rates[MAX_RATES]; /* offered loads of the latency runs (commands/s) */
	int rate_count;
	double duration_s;  /* seconds per latency run */
	const char *shards; /* ORION_SHARDS for the child, NULL = inherited/default */
	bool latency_asap;  /* latency client writes each request at once (no cnats flusher delay) */
	bool cluster;       /* three clustered nats-servers, R3 streams */
	const char *dump;   /* directory for per-request latency CSV files, or NULL */
	int rounds;         /* interleaved rounds of raw and Orion throughput runs */
} bench_opts;

static void sleep_until_ns(int64_t deadline)
{
	struct timespec ts = {.tv_sec = deadline / 1000000000LL, .tv_nsec = deadline % 1000000000LL};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !bench_interrupted)
		;
}

static void sleep_ms(int ms)
{
	sleep_until_ns(bench_now_ns() + (int64_t)ms * 1000000LL);
}

static void abs_deadline(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000L;
	ts->tv_nsec %= 1000000000L;
}

/* ---- files and processes ---------------------------------------------------- */

static bool file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return false;
	char line[4096];
	bool found = false;
	while (!found && fgets(line, sizeof line, f) != NULL)
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

static long count_lines_with(const char *path, const char *needle)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return 0;
	char line[4096];
	long n = 0;
	while (fgets(line, sizeof line, f) != NULL)
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static void print_tail(const char *path, int lines)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return;
	char ring[16][512];
	int n = 0;
	if (lines > 16)
		lines = 16;
	while (fgets(ring[n % lines], sizeof ring[0], f) != NULL)
		n++;
	fclose(f);
	for (int i = n > lines ? n - lines : 0; i < n; i++)
		fprintf(stderr, "  | %s", ring[i % lines]);
}

/* Starts argv with stdout and stderr appended to log_path; 0 on failure. */
static pid_t spawn(char *const argv[], char *const extra_env[], const char *log_path)
{
	pid_t pid = proc_spawn(argv, extra_env, log_path);
	return pid > 0 ? pid : 0;
}

/* SIGTERM, then SIGKILL after the grace period. Returns a description. */
static const char *stop_child(pid_t pid, char *out, size_t cap)
{
	kill(pid, SIGTERM);
	int code = proc_wait(pid, ORION_STOP_WAIT_MS);
	if (code < 0) {
		kill(pid, SIGKILL);
		proc_wait(pid, ORION_STOP_WAIT_MS);
		snprintf(out, cap, "did not stop in %d s: killed", ORION_STOP_WAIT_MS / 1000);
	} else if (code < 128) {
		snprintf(out, cap, "exited with status %d", code);
	} else {
		snprintf(out, cap, "died of signal %d", code - 128);
	}
	return out;
}

/* ---- bench_machine facts ---------------------------------------------------------- */

/* ---- statistics ------------------------------------------------------------- */

typedef struct lat_summary {
	long n;
	double p50, p90, p99, p999, max; /* ms */
} lat_summary;

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n). */
static double pct_ms(const int64_t *v, long n, double p)
{
	if (n <= 0)
		return 0;
	long rank = (long)(p / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1e6;
}

/* Sorts the latencies in [0, LOST_AFTER_NS] out of lat[0..count) (negative =
 * no reply) and summarises them. */
static lat_summary summarise(const int64_t *lat, long count)
{
	lat_summary s;
	memset(&s, 0, sizeof s);
	int64_t *v = malloc(sizeof *v * (size_t)(count > 0 ? count : 1));
	if (v == NULL)
		return s;
	for (long i = 0; i < count; i++)
		if (lat[i] >= 0 && lat[i] <= LOST_AFTER_NS)
			v[s.n++] = lat[i];
	qsort(v, (size_t)s.n, sizeof *v, cmp_i64);
	s.p50 = pct_ms(v, s.n, 50);
	s.p90 = pct_ms(v, s.n, 90);
	s.p99 = pct_ms(v, s.n, 99);
	s.p999 = pct_ms(v, s.n, 99.9);
	s.max = s.n > 0 ? (double)v[s.n - 1] / 1e6 : 0;
	free(v);
	return s;
}

typedef struct cpu_mark {
	double nats, orion, bench;
	int64_t t;
} cpu_mark;

typedef struct cpu_use {
	double nats, orion, bench; /* percent of one core over the phase */
} cpu_use;

static pid_t nats_pids[BENCH_CLUSTER_NODES], orion_pid; /* nats_pids: 0 for none */

static cpu_mark cpu_now(void)
{
	cpu_mark m = {0, orion_pid > 0 ? bench_proc_cpu_s(orion_pid) : 0, bench_proc_cpu_s(getpid()),
	              bench_now_ns()};
	for (int i = 0; i < BENCH_CLUSTER_NODES; i++)
		m.nats += nats_pids[i] > 0 ? bench_proc_cpu_s(nats_pids[i]) : 0;
	return m;
}

static cpu_use cpu_since(cpu_mark a)
{
	cpu_mark b = cpu_now();
	double secs = (double)(b.t - a.t) / 1e9;
	cpu_use u = {0, 0, 0};
	if (secs > 0) {
		u.nats = 100.0 * (b.nats - a.nats) / secs;
		u.orion = 100.0 * (b.orion - a.orion) / secs;
		u.bench = 100.0 * (b.bench - a.bench) / secs;
	}
	return u;
}

/* ---- the payload: one real StockReserved commit ------------------------------ */

static void reservation_ids(const char *tag, long i, char *rid, size_t rid_cap, char *cmd_id, size_t cmd_cap)
{
	snprintf(rid, rid_cap, "%s-%07ld", tag, i);
	snprintf(cmd_id, cmd_cap, "cmd-%s-%07ld", tag, i);
}

/* Encodes the commit the runtime appends for reserve i of a throughput round
 * (ids "t<round>-<i>", the same length as the raw runs' "tp-<i>"). */
static orn_rc encode_reserved_commit(mp_writer *out, long i)
{
	char rid[64], cmd_id[96];
	reservation_ids("tp", i, rid, sizeof rid, cmd_id, sizeof cmd_id);
	stock_event ev;
	memset(&ev, 0, sizeof ev);
	ev.kind = STOCK_RESERVED;
	ev.quantity = 1;
	snprintf(ev.reservation_id, sizeof ev.reservation_id, "%s", rid);
	mp_writer *payload = mp_writer_create();
	if (payload == NULL)
		return ORN_ENOMEM;
	orn_rc rc = stock_event_encode(payload, &ev);
	env_envelope e;
	memset(&e, 0, sizeof e);
	if (rc == ORN_OK &&
	    ((rc = env_set_field(e.type, sizeof e.type, stock_event_type(ev.kind))) != ORN_OK ||
	     (rc = env_set_field(e.correlation, sizeof e.correlation, cmd_id)) != ORN_OK ||
	     (rc = env_set_field(e.causation, sizeof e.causation, cmd_id)) != ORN_OK ||
	     (rc = env_set_field(e.actor, sizeof e.actor, "bench")) != ORN_OK))
		rc = ORN_EINVAL;
	if (rc == ORN_OK) {
		e.schema = 1;
		e.time_ms = orn_now_ms();
		e.payload = mp_writer_data(payload);
		e.payload_len = mp_writer_size(payload);
		mp_writer_reset(out);
		env_commit_begin(out, 1);
		rc = env_encode(out, &e);
		if (rc == ORN_OK)
			rc = mp_writer_status(out);
	}
	mp_writer_destroy(payload);
	return rc;
}

/* ---- RAW: JetStream async publish ------------------------------------------ */

typedef struct raw_run {
	jsCtx *js;
	bool expect; /* ExpectLastSubjectSeq chains, one publish in flight per subject */
	long total;
	const uint8_t *payload;
	size_t len;
	atomic_long issued, acked, errors, duplicates, completed;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int64_t end_ns;
	char first_error[160];
} raw_run;

static void raw_error(raw_run *r, const char *what, natsStatus st, int code)
{
	atomic_fetch_add(&r->errors, 1);
	pthread_mutex_lock(&r->lock);
	if (r->first_error[0] == '\0')
		snprintf(r->first_error, sizeof r->first_error, "%s: %s (jerr %d)", what,
		         natsStatus_GetText(st), code);
	pthread_mutex_unlock(&r->lock);
}

static void raw_complete(raw_run *r)
{
	if (atomic_fetch_add(&r->completed, 1) + 1 == r->total) {
		pthread_mutex_lock(&r->lock);
		r->end_ns = bench_now_ns();
		r->done = true;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
	}
}

/* Publishes the next message of a chain on subject (expect mode); after_seq is
 * the sequence of the subject's last message, 0 for none. */
static void raw_issue(raw_run *r, const char *subject, uint64_t after_seq)
{
	long i = atomic_fetch_add(&r->issued, 1);
	if (i >= r->total)
		return;
	char msg_id[48];
	snprintf(msg_id, sizeof msg_id, "rawx-%07ld", i);
	natsMsg *msg = NULL;
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MsgId = msg_id;
	if (after_seq == 0)
		po.ExpectNoMessage = true;
	else
		po.ExpectLastSubjectSeq = after_seq;
	natsStatus st = natsMsg_Create(&msg, subject, NULL, (const char *)r->payload, (int)r->len);
	if (st == NATS_OK)
		st = js_PublishMsgAsync(r->js, &msg, &po);
	natsMsg_Destroy(msg);
	if (st != NATS_OK) {
		raw_error(r, "publish", st, 0);
		raw_complete(r);
	}
}

static void raw_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	raw_run *r = closure;
	(void)js;
	if (pa != NULL) {
		atomic_fetch_add(&r->acked, 1);
		if (pa->Duplicate)
			atomic_fetch_add(&r->duplicates, 1);
		if (r->expect)
			raw_issue(r, natsMsg_GetSubject(msg), pa->Sequence);
	} else {
		raw_error(r, pae != NULL && pae->ErrText != NULL ? pae->ErrText : "ack",
		          pae != NULL ? pae->Err : NATS_ERR, pae != NULL ? (int)pae->ErrCode : 0);
	}
	natsMsg_Destroy(msg);
	raw_complete(r);
}

static uint64_t stream_msgs(natsConnection *nc, const char *name)
{
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	uint64_t n = 0;
	if (natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		return 0;
	if (js_GetStreamInfo(&si, js, name, NULL, NULL) == NATS_OK) {
		n = si->State.Msgs;
		jsStreamInfo_Destroy(si);
	}
	jsCtx_Destroy(js);
	return n;
}

typedef struct raw_result {
	bool ran;
	long count, acked, errors, duplicates;
	uint64_t stored;
	double seconds, rate;
	cpu_use cpu;
	char first_error[160];
} raw_result;

/* Round r publishes to its own fresh stream BENCH_RAW<r> (or BENCH_RAWX<r>)
 * on subjects bench.raw<r>.stock.<item> (bench.rawx<r>...). */
static orn_rc raw_phase(natsConnection *nc, const bench_opts *o, bool expect, int round,
                        const uint8_t *payload, size_t len, raw_result *out)
{
	char stream[32], prefix[32], subjects[64];
	snprintf(stream, sizeof stream, "BENCH_RAW%s%d", expect ? "X" : "", round);
	snprintf(prefix, sizeof prefix, "bench.raw%s%d", expect ? "x" : "", round);
	snprintf(subjects, sizeof subjects, "%s.>", prefix);
	memset(out, 0, sizeof *out);
	out->count = o->raw_count;
	orn_rc rc = bench_add_stream(nc, stream, subjects, o->cluster ? BENCH_CLUSTER_NODES : 1)
	                    ? ORN_OK
	                    : ORN_EUNAVAILABLE;
	if (rc != ORN_OK)
		return rc;
	raw_run *r = calloc(1, sizeof *r);
	if (r == NULL)
		return ORN_ENOMEM;
	r->expect = expect;
	r->total = o->raw_count;
	r->payload = payload;
	r->len = len;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 10000;
	jo.PublishAsync.MaxPending = o->raw_pending;
	jo.PublishAsync.AckHandler = raw_on_ack;
	jo.PublishAsync.AckHandlerClosure = r;
	if (natsConnection_JetStream(&r->js, nc, &jo) != NATS_OK) {
		rc = ORN_ENOMEM;
		goto done;
	}
	bench_say("raw%s: %ld async publishes of %zu bytes over %d subjects...",
	          expect ? " (ExpectLastSubjectSeq)" : "", o->raw_count, len, o->items);
	char subject[96], msg_id[48];
	cpu_mark cpu0 = cpu_now();
	int64_t start = bench_now_ns();
	if (expect) {
		/* One chain per subject: each ack publishes the subject's next message. */
		for (int s = 0; s < o->items && s < o->raw_count; s++) {
			snprintf(subject, sizeof subject, "%s.stock.bench-item-%04d", prefix, s);
			raw_issue(r, subject, 0);
		}
	} else {
		for (long i = 0; i < o->raw_count && !bench_interrupted; i++) {
			snprintf(subject, sizeof subject, "%s.stock.bench-item-%04ld", prefix, i % o->items);
			snprintf(msg_id, sizeof msg_id, "raw-%07ld", i);
			natsMsg *msg = NULL;
			jsPubOptions po;
			jsPubOptions_Init(&po);
			po.MsgId = msg_id;
			natsStatus st = natsMsg_Create(&msg, subject, NULL, (const char *)payload, (int)len);
			/* NATS_TIMEOUT: MaxPending reached for StallWait; try again. */
			while (st == NATS_OK && (st = js_PublishMsgAsync(r->js, &msg, &po)) == NATS_TIMEOUT &&
			       !bench_interrupted)
				;
			natsMsg_Destroy(msg);
			if (st != NATS_OK) {
				raw_error(r, "publish", st, 0);
				raw_complete(r);
			}
		}
	}
	/* Wait for every ack (or error), giving up if none comes for a while. */
	long last_completed = -1;
	int64_t last_progress = bench_now_ns();
	pthread_mutex_lock(&r->lock);
	while (!r->done && !bench_interrupted) {
		struct timespec ts;
		abs_deadline(&ts, 100);
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
		long c = atomic_load(&r->completed);
		if (c != last_completed) {
			last_completed = c;
			last_progress = bench_now_ns();
		} else if (bench_now_ns() - last_progress > STALL_LIMIT_NS) {
			break;
		}
	}
	bool done = r->done;
	int64_t end = r->end_ns;
	pthread_mutex_unlock(&r->lock);
	out->cpu = cpu_since(cpu0);
	out->ran = true;
	out->acked = atomic_load(&r->acked);
	out->errors = atomic_load(&r->errors);
	out->duplicates = atomic_load(&r->duplicates);
	snprintf(out->first_error, sizeof out->first_error, "%s", r->first_error);
	if (!done) {
		bench_say("raw: stalled or interrupted after %ld of %ld acks", atomic_load(&r->completed),
		          r->total);
		rc = ORN_ETIMEOUT;
		goto done;
	}
	out->seconds = (double)(end - start) / 1e9;
	out->rate = out->seconds > 0 ? (double)out->acked / out->seconds : 0;
	out->stored = stream_msgs(nc, stream);
	bench_say("raw%s: %.0f msgs/s (%ld acked, %ld errors, %" PRIu64 " stored)", expect ? " (expect)" : "",
	          out->rate, out->acked, out->errors, out->stored);
	if (out->errors > 0)
		bench_say("raw: first error: %s", out->first_error);
done:
	if (r->js != NULL) {
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = 5000;
		js_PublishAsyncComplete(r->js, &po);
		jsCtx_Destroy(r->js);
	}
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
	return rc;
}

/* ---- Orion: pipelined requests over a reply inbox ---------------------------- */

typedef struct outcome_counts {
	long accepted, rejected, failed, undecodable;
	struct {
		char outcome_code[BUS_CODE_MAX + 16];
		long n;
	} other[MAX_CODES];
} outcome_counts;

static void count_outcome(outcome_counts *c, orn_rc rc, const bus_reply *r)
{
	char key[BUS_CODE_MAX + 16];
	if (rc != ORN_OK) {
		c->undecodable++;
		return;
	}
	if (r->outcome == BUS_ACCEPTED) {
		c->accepted++;
		return;
	}
	if (r->outcome == BUS_REJECTED)
		c->rejected++;
	else
		c->failed++;
	snprintf(key, sizeof key, "%s/%s", bus_outcome_name(r->outcome), r->code);
	for (int i = 0; i < MAX_CODES; i++) {
		if (c->other[i].n == 0)
			snprintf(c->other[i].outcome_code, sizeof c->other[i].outcome_code, "%s", key);
		if (strcmp(c->other[i].outcome_code, key) == 0) {
			c->other[i].n++;
			return;
		}
	}
}

static void merge_outcomes(outcome_counts *into, const outcome_counts *from)
{
	into->accepted += from->accepted;
	into->rejected += from->rejected;
	into->failed += from->failed;
	into->undecodable += from->undecodable;
	for (int i = 0; i < MAX_CODES && from->other[i].n > 0; i++)
		for (int j = 0; j < MAX_CODES; j++) {
			if (into->other[j].n == 0)
				snprintf(into->other[j].outcome_code, sizeof into->other[j].outcome_code,
				         "%s", from->other[i].outcome_code);
			if (strcmp(into->other[j].outcome_code, from->other[i].outcome_code) == 0) {
				into->other[j].n += from->other[i].n;
				break;
			}
		}
}

static void describe_others(const outcome_counts *c, char *out, size_t cap)
{
	size_t used = 0;
	out[0] = '\0';
	for (int i = 0; i < MAX_CODES && c->other[i].n > 0 && used < cap; i++) {
		int n = snprintf(out + used, cap - used, "%s%s x%ld", used ? ", " : "",
		                 c->other[i].outcome_code, c->other[i].n);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (c->undecodable > 0 && used < cap)
		snprintf(out + used, cap - used, "%sundecodable x%ld", used ? ", " : "", c->undecodable);
}

/* What one run sends: creates (one per item) or reserves. */
typedef struct run_spec {
	bool create;
	const char *tag; /* reservation id prefix of reserves */
	int items;
	long count;
	int64_t quantity; /* create: units on hand */
} run_spec;

static orn_rc build_command(const run_spec *rs, long i, char *subject, size_t cap, mp_writer *payload,
                            mp_writer *wire)
{
	char item[32], cmd_id[96];
	stock_command c;
	env_envelope cmd;
	memset(&c, 0, sizeof c);
	snprintf(item, sizeof item, "bench-item-%04ld", i % rs->items);
	if (rs->create) {
		c.kind = STOCK_CREATE;
		c.quantity = rs->quantity;
		snprintf(cmd_id, sizeof cmd_id, "create-%s", item);
	} else {
		c.kind = STOCK_RESERVE;
		c.quantity = 1;
		reservation_ids(rs->tag, i, c.reservation_id, sizeof c.reservation_id, cmd_id, sizeof cmd_id);
	}
	mp_writer_reset(payload);
	mp_writer_reset(wire);
	orn_rc rc = stock_command_encode(payload, &c);
	if (rc == ORN_OK)
		rc = bus_command_init(&cmd, stock_command_type(c.kind), orn_now_ms(), cmd_id, NULL, "bench",
		                      mp_writer_data(payload), mp_writer_size(payload));
	if (rc == ORN_OK)
		rc = env_encode(wire, &cmd);
	if (rc == ORN_OK)
		rc = mp_writer_status(wire);
	if (rc == ORN_OK)
		rc = bus_command_subject(subject, cap, STOCK_AGGREGATE, item);
	return rc;
}

/* Per-request timing shared by the connections of one run. */
typedef struct timings {
	long count;
	_Atomic int64_t *start_ns; /* send (or scheduled send) time */
	int64_t *lat_ns;           /* reply time - start, -1 while unanswered */
} timings;

static orn_rc timings_init(timings *t, long count)
{
	t->count = count;
	t->start_ns = calloc((size_t)(count > 0 ? count : 1), sizeof *t->start_ns);
	t->lat_ns = malloc(sizeof *t->lat_ns * (size_t)(count > 0 ? count : 1));
	if (t->start_ns == NULL || t->lat_ns == NULL)
		return ORN_ENOMEM;
	for (long i = 0; i < count; i++)
		t->lat_ns[i] = -1;
	return ORN_OK;
}

static void timings_free(timings *t)
{
	free((void *)t->start_ns);
	free(t->lat_ns);
	t->start_ns = NULL;
	t->lat_ns = NULL;
}

/* One client connection with one reply subscription per run. */
typedef struct client {
	natsConnection *nc;
	natsSubscription *sub;
	char inbox[96];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* per run, under lock */
	timings *t;
	long sent, received;
	int64_t first_send_ns, last_send_ns, last_reply_ns;
	outcome_counts outcomes;
	/* the sender thread of a throughput run */
	const run_spec *spec;
	int index, stride, window;
	orn_rc rc;
} client;

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	client *c = closure;
	int64_t t = bench_now_ns();
	(void)nc;
	(void)sub;
	const char *subject = natsMsg_GetSubject(msg);
	const char *dot = strrchr(subject, '.');
	long i = dot != NULL ? strtol(dot + 1, NULL, 10) : -1;
	bus_reply r;
	orn_rc rc = bus_reply_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &r);
	pthread_mutex_lock(&c->lock);
	if (c->t != NULL && i >= 0 && i < c->t->count && c->t->lat_ns[i] < 0) {
		c->t->lat_ns[i] = t - atomic_load_explicit(&c->t->start_ns[i], memory_order_acquire);
		c->received++;
		c->last_reply_ns = t;
		count_outcome(&c->outcomes, rc, &r);
		pthread_cond_signal(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
	if (rc == ORN_OK)
		bus_reply_dispose(&r);
	natsMsg_Destroy(msg);
}

static orn_rc client_open(client *c, const char *url, int n, bool asap)
{
	natsOptions *no = NULL;
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	char name[32];
	snprintf(name, sizeof name, "bench-client-%d", n);
	natsStatus st = natsOptions_Create(&no);
	if (st == NATS_OK)
		st = es_nats_options_set_url(no, url) == ORN_OK ? NATS_OK : NATS_ERR;
	if (st == NATS_OK)
		st = natsOptions_SetName(no, name);
	/* Without SendAsap, cnats' flusher thread waits 1 ms to batch writes. */
	if (st == NATS_OK)
		st = natsOptions_SetSendAsap(no, asap);
	if (st == NATS_OK)
		st = natsConnection_Connect(&c->nc, no);
	natsOptions_Destroy(no);
	if (st != NATS_OK) {
		bench_say("cannot connect to %s: %s", url, natsStatus_GetText(st));
		return ORN_EUNAVAILABLE;
	}
	return ORN_OK;
}

static void client_close(client *c)
{
	natsConnection_Destroy(c->nc);
	c->nc = NULL;
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
}

/* Subscribes a fresh inbox for one run and resets the run's counters. */
static orn_rc client_begin(client *c, timings *t, const char *run)
{
	char pattern[128];
	snprintf(c->inbox, sizeof c->inbox, "_INBOX.bench.%s.%d.%lld", run, c->index,
	         (long long)bench_now_ns());
	snprintf(pattern, sizeof pattern, "%s.*", c->inbox);
	pthread_mutex_lock(&c->lock);
	c->t = t;
	c->sent = c->received = 0;
	c->first_send_ns = c->last_send_ns = c->last_reply_ns = 0;
	memset(&c->outcomes, 0, sizeof c->outcomes);
	pthread_mutex_unlock(&c->lock);
	natsStatus st = natsConnection_Subscribe(&c->sub, c->nc, pattern, on_reply, c);
	if (st == NATS_OK)
		st = natsSubscription_SetPendingLimits(c->sub, -1, -1);
	if (st == NATS_OK)
		st = natsConnection_Flush(c->nc);
	if (st != NATS_OK) {
		bench_say("cannot subscribe %s: %s", pattern, natsStatus_GetText(st));
		return ORN_EUNAVAILABLE;
	}
	return ORN_OK;
}

/* Ends a run's subscription; after this no callback touches the run's data. */
static void client_end(client *c)
{
	if (c->sub != NULL) {
		if (natsSubscription_Drain(c->sub) == NATS_OK)
			natsSubscription_WaitForDrainCompletion(c->sub, 10000);
		natsSubscription_Destroy(c->sub);
		c->sub = NULL;
	}
	pthread_mutex_lock(&c->lock);
	c->t = NULL;
	pthread_mutex_unlock(&c->lock);
}

static natsStatus send_request(client *c, const char *subject, long i, const mp_writer *wire)
{
	char reply_to[128];
	snprintf(reply_to, sizeof reply_to, "%s.%ld", c->inbox, i);
	return natsConnection_PublishRequest(c->nc, subject, reply_to, mp_writer_data(wire),
	                                     (int)mp_writer_size(wire));
}

/* Waits until every request sent on c is answered, or no reply came for
 * stall_ns, or (deadline_ns > 0) the deadline passed. True if all answered. */
static bool wait_replies(client *c, int64_t stall_ns, int64_t deadline_ns)
{
	pthread_mutex_lock(&c->lock);
	long last = c->received;
	int64_t progress = bench_now_ns();
	while (c->received < c->sent && !bench_interrupted) {
		struct timespec ts;
		abs_deadline(&ts, 50);
		pthread_cond_timedwait(&c->cond, &c->lock, &ts);
		int64_t t = bench_now_ns();
		if (c->received != last) {
			last = c->received;
			progress = t;
		}
		if ((stall_ns > 0 && t - progress > stall_ns) || (deadline_ns > 0 && t > deadline_ns))
			break;
	}
	bool all = c->received >= c->sent;
	pthread_mutex_unlock(&c->lock);
	return all;
}

/* Closed loop: requests index, index+stride, ... with at most window outstanding. */
static void *pipeline_main(void *arg)
{
	client *c = arg;
	const run_spec *rs = c->spec;
	mp_writer *payload = mp_writer_create(), *wire = mp_writer_create();
	char subject[ES_SUBJECT_MAX];
	c->rc = payload != NULL && wire != NULL ? ORN_OK : ORN_ENOMEM;
	for (long i = c->index; c->rc == ORN_OK && i < rs->count && !bench_interrupted; i += c->stride) {
		pthread_mutex_lock(&c->lock);
		int64_t progress = bench_now_ns();
		long last = c->received;
		while (c->sent - c->received >= c->window && !bench_interrupted) {
			struct timespec ts;
			abs_deadline(&ts, 100);
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
			if (c->received != last) {
				last = c->received;
				progress = bench_now_ns();
			} else if (bench_now_ns() - progress > STALL_LIMIT_NS) {
				c->rc = ORN_ETIMEOUT;
				break;
			}
		}
		pthread_mutex_unlock(&c->lock);
		if (c->rc != ORN_OK)
			break;
		if ((c->rc = build_command(rs, i, subject, sizeof subject, payload, wire)) != ORN_OK)
			break;
		int64_t t = bench_now_ns();
		atomic_store_explicit(&c->t->start_ns[i], t, memory_order_release);
		pthread_mutex_lock(&c->lock);
		if (c->sent == 0)
			c->first_send_ns = t;
		c->sent++;
		c->last_send_ns = t;
		pthread_mutex_unlock(&c->lock);
		natsStatus st = send_request(c, subject, i, wire);
		if (st != NATS_OK) {
			bench_say("publish: %s", natsStatus_GetText(st));
			c->rc = ORN_EUNAVAILABLE;
		}
	}
	natsConnection_FlushTimeout(c->nc, 5000);
	if (c->rc == ORN_OK && !wait_replies(c, STALL_LIMIT_NS, 0))
		c->rc = bench_interrupted ? ORN_EINTERNAL : ORN_ETIMEOUT;
	mp_writer_destroy(payload);
	mp_writer_destroy(wire);
	return NULL;
}

/* Writes "index,start_ms,latency_ms" lines (start relative to the first
 * request; latency -1 when unanswered) to <dir>/<run>.csv. */
static void dump_timings(const char *dir, const char *run, const timings *t)
{
	char path[1024];
	if (dir == NULL)
		return;
	snprintf(path, sizeof path, "%s/%s.csv", dir, run);
	FILE *f = fopen(path, "we");
	if (f == NULL) {
		bench_say("cannot write %s: %s", path, strerror(errno));
		return;
	}
	int64_t base = t->count > 0 ? atomic_load(&t->start_ns[0]) : 0;
	fprintf(f, "index,start_ms,latency_ms\n");
	for (long i = 0; i < t->count; i++)
		fprintf(f, "%ld,%.3f,%.3f\n", i, (double)(atomic_load(&t->start_ns[i]) - base) / 1e6,
		        t->lat_ns[i] < 0 ? -1.0 : (double)t->lat_ns[i] / 1e6);
	fclose(f);
}

typedef struct tput_result {
	long count, answered;
	outcome_counts outcomes;
	double seconds, rate;
	lat_summary lat; /* closed-loop latency under saturation */
	cpu_use cpu;
} tput_result;

static orn_rc throughput_run(client *clients, int conns, const run_spec *rs, int window, const char *run,
                             const char *dump, tput_result *out)
{
	timings t;
	orn_rc rc = timings_init(&t, rs->count);
	pthread_t threads[MAX_CONNS];
	int started = 0;
	memset(out, 0, sizeof *out);
	out->count = rs->count;
	for (int k = 0; rc == ORN_OK && k < conns; k++) {
		clients[k].index = k;
		clients[k].stride = conns;
		clients[k].window = window / conns > 0 ? window / conns : 1;
		clients[k].spec = rs;
		rc = client_begin(&clients[k], &t, run);
	}
	cpu_mark cpu0 = cpu_now();
	for (; rc == ORN_OK && started < conns; started++)
		if (pthread_create(&threads[started], NULL, pipeline_main, &clients[started]) != 0)
			rc = ORN_ENOMEM;
	for (int k = 0; k < started; k++) {
		pthread_join(threads[k], NULL);
		if (rc == ORN_OK)
			rc = clients[k].rc;
	}
	out->cpu = cpu_since(cpu0);
	int64_t first = 0, last = 0;
	for (int k = 0; k < conns; k++) {
		client_end(&clients[k]);
		out->answered += clients[k].received;
		merge_outcomes(&out->outcomes, &clients[k].outcomes);
		if (clients[k].first_send_ns > 0 && (first == 0 || clients[k].first_send_ns < first))
			first = clients[k].first_send_ns;
		if (clients[k].last_reply_ns > last)
			last = clients[k].last_reply_ns;
	}
	out->seconds = last > first ? (double)(last - first) / 1e9 : 0;
	out->rate = out->seconds > 0 ? (double)out->outcomes.accepted / out->seconds : 0;
	out->lat = summarise(t.lat_ns, t.count);
	dump_timings(dump, run, &t);
	timings_free(&t);
	return rc;
}

typedef struct latency_result {
	int rate;
	long count, answered, lost;
	double seconds, offered_rate, answered_rate;
	double lag_max_ms; /* worst lateness of the sender against its schedule */
	lat_summary lat;
	outcome_counts outcomes;
	cpu_use cpu;
} latency_result;

/* Open loop: request i is due at t0 + i/rate, whatever the replies do. */
static orn_rc latency_run(client *c, const run_spec *rs, int rate, const char *run, const char *dump,
                          latency_result *out)
{
	timings t;
	memset(out, 0, sizeof *out);
	out->rate = rate;
	out->count = rs->count;
	orn_rc rc = timings_init(&t, rs->count);
	mp_writer *payload = mp_writer_create(), *wire = mp_writer_create();
	char subject[ES_SUBJECT_MAX];
	if (rc == ORN_OK && (payload == NULL || wire == NULL))
		rc = ORN_ENOMEM;
	c->index = 0;
	if (rc == ORN_OK)
		rc = client_begin(c, &t, run);
	bench_say("latency: %d commands/s for %.1f s (%ld commands)...", rate, (double)rs->count / rate,
	          rs->count);
	cpu_mark cpu0 = cpu_now();
	int64_t t0 = bench_now_ns() + 1000000, last_due = t0, lag_max = 0;
	for (long i = 0; rc == ORN_OK && i < rs->count && !bench_interrupted; i++) {
		int64_t due = t0 + (int64_t)((double)i * 1e9 / rate);
		if ((rc = build_command(rs, i, subject, sizeof subject, payload, wire)) != ORN_OK)
			break;
		if (bench_now_ns() < due)
			sleep_until_ns(due); /* absolute: a late wake-up sends every due request at once */
		int64_t sent = bench_now_ns();
		if (sent - due > lag_max)
			lag_max = sent - due;
		/* Latency counts from the scheduled time: a late sender shows as latency. */
		atomic_store_explicit(&t.start_ns[i], due, memory_order_release);
		pthread_mutex_lock(&c->lock);
		if (c->sent == 0)
			c->first_send_ns = sent;
		c->sent++;
		c->last_send_ns = sent;
		pthread_mutex_unlock(&c->lock);
		last_due = due;
		natsStatus st = send_request(c, subject, i, wire);
		if (st != NATS_OK) {
			bench_say("publish: %s", natsStatus_GetText(st));
			rc = ORN_EUNAVAILABLE;
		}
	}
	int64_t send_end = bench_now_ns();
	if (rc == ORN_OK) {
		natsConnection_FlushTimeout(c->nc, 5000);
		wait_replies(c, 0, last_due + LOST_AFTER_NS);
	}
	out->cpu = cpu_since(cpu0);
	client_end(c);
	out->answered = c->received;
	out->outcomes = c->outcomes;
	out->lat = summarise(t.lat_ns, t.count);
	out->lost = c->sent - out->lat.n; /* unanswered, or answered after 5 s */
	out->seconds = (double)(send_end - t0) / 1e9;
	out->offered_rate = out->seconds > 0 ? (double)c->sent / out->seconds : 0;
	out->answered_rate = out->seconds > 0 ? (double)out->lat.n / out->seconds : 0;
	out->lag_max_ms = (double)lag_max / 1e6;
	if (bench_interrupted && rc == ORN_OK)
		rc = ORN_EINTERNAL;
	dump_timings(dump, run, &t);
	timings_free(&t);
	mp_writer_destroy(payload);
	mp_writer_destroy(wire);
	return rc;
}

/* ---- the orion child --------------------------------------------------------- */

static pid_t start_orion(const bench_opts *o, const char *url, const char *dir, const char *log_path)
{
	char url_env[300], dir_env[640], shards_env[64], replicas_env[64];
	char *argv[] = {(char *)o->orion, "serve", "--roles", "stock", NULL};
	char *env[5] = {url_env, dir_env, NULL, NULL, NULL};
	int envc = 2;
	snprintf(url_env, sizeof url_env, "ORION_NATS_URL=%s", url);
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", dir);
	if (o->shards != NULL) {
		snprintf(shards_env, sizeof shards_env, "ORION_SHARDS=%s", o->shards);
		env[envc++] = shards_env;
	}
	if (o->cluster) {
		snprintf(replicas_env, sizeof replicas_env, "ORION_STREAM_REPLICAS=%d", BENCH_CLUSTER_NODES);
		env[envc++] = replicas_env;
	}
	pid_t pid = spawn(argv, env, log_path);
	if (pid == 0) {
		bench_say("cannot start %s", o->orion);
		return 0;
	}
	int64_t deadline = bench_now_ns() + (int64_t)READY_TIMEOUT_MS * 1000000LL;
	while (!file_contains(log_path, "orion ready")) {
		int status = 0;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			bench_say("orion exited before it was ready; its log:");
			print_tail(log_path, 12);
			return 0;
		}
		if (bench_now_ns() > deadline || bench_interrupted) {
			char why[64];
			bench_say("orion not ready in %d s (%s); its log:", READY_TIMEOUT_MS / 1000,
			          stop_child(pid, why, sizeof why));
			print_tail(log_path, 12);
			return 0;
		}
		sleep_ms(20);
	}
	return pid;
}

/* ---- report -------------------------------------------------------------------- */

/* The servers and the streams' replicas, with ORION_EVT's leader on a cluster. */
static void describe_layout(natsConnection *nc, const bench_opts *o, char *out, size_t cap)
{
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	const char *leader = "unknown";
	if (!o->cluster) {
		snprintf(out, cap, "one nats-server, R1 streams");
		return;
	}
	if (natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
	    js_GetStreamInfo(&si, js, ES_STREAM, NULL, NULL) == NATS_OK && si->Cluster != NULL &&
	    si->Cluster->Leader != NULL)
		leader = si->Cluster->Leader;
	snprintf(out, cap, "%d nats-servers clustered by routes, R%d streams (%s led by %s)",
	         BENCH_CLUSTER_NODES, BENCH_CLUSTER_NODES, ES_STREAM, leader);
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
}

typedef struct report {
	bench_machine m;
	char date[64];
	char command[1024];
	const bench_opts *o;
	size_t payload_len;
	int rounds; /* rounds completed */
	raw_result raw[MAX_ROUNDS], rawx[MAX_ROUNDS];
	tput_result setup, tput[MAX_ROUNDS];
	latency_result lat[MAX_RATES];
	int lat_count;
	const char *shards;
	char layout[160]; /* the servers and the replicas of the streams */
	long orion_warn, orion_error;
	char orion_exit[96];
} report;

/* Medians and means over the rounds. */
typedef struct summary {
	bench_spread raw, rawx, orion, ratio, ratio_x;
	cpu_use raw_cpu, rawx_cpu, orion_cpu;
	int median_round; /* the Orion round whose rate is closest to the median */
} summary;

static summary summarize_rounds(const report *r)
{
	double raw[MAX_ROUNDS], rawx[MAX_ROUNDS], orion[MAX_ROUNDS], ratio[MAX_ROUNDS], ratio_x[MAX_ROUNDS];
	summary s;
	int n = r->rounds;
	memset(&s, 0, sizeof s);
	for (int i = 0; i < n; i++) {
		raw[i] = r->raw[i].rate;
		rawx[i] = r->rawx[i].rate;
		orion[i] = r->tput[i].rate;
		ratio[i] = raw[i] > 0 ? orion[i] / raw[i] : 0;
		ratio_x[i] = rawx[i] > 0 ? orion[i] / rawx[i] : 0;
		s.raw_cpu.nats += r->raw[i].cpu.nats / n;
		s.raw_cpu.bench += r->raw[i].cpu.bench / n;
		s.rawx_cpu.nats += r->rawx[i].cpu.nats / n;
		s.rawx_cpu.bench += r->rawx[i].cpu.bench / n;
		s.orion_cpu.nats += r->tput[i].cpu.nats / n;
		s.orion_cpu.orion += r->tput[i].cpu.orion / n;
		s.orion_cpu.bench += r->tput[i].cpu.bench / n;
	}
	s.raw = bench_spread_of(raw, n);
	s.rawx = bench_spread_of(rawx, n);
	s.orion = bench_spread_of(orion, n);
	s.ratio = bench_spread_of(ratio, n);
	s.ratio_x = bench_spread_of(ratio_x, n);
	for (int i = 1; i < n; i++)
		if ((orion[i] - s.orion.median) * (orion[i] - s.orion.median) <
		    (orion[s.median_round] - s.orion.median) * (orion[s.median_round] - s.orion.median))
			s.median_round = i;
	return s;
}

static const char *met(bool ok)
{
	return ok ? "met" : "NOT met";
}

/* The ratio target compares the medians of the same run. */
static double headline_ratio(const summary *s)
{
	return s->raw.median > 0 ? s->orion.median / s->raw.median : 0;
}

static void print_targets(FILE *f, const report *r, const summary *s, const char *bold)
{
	double ratio = headline_ratio(s);
	fprintf(f, "Targets: Orion >= 50%% of raw: %s%s%s (%.1f%%)", bold, met(ratio >= 0.5), bold,
	        100.0 * ratio);
	for (int i = 0; i < r->lat_count; i++)
		if (r->lat[i].rate == 1000)
			fprintf(f, "; p99 < 5 ms at 1000/s: %s%s%s (%.2f ms)", bold,
			        met(r->lat[i].lat.p99 < 5.0 && r->lat[i].lost == 0), bold, r->lat[i].lat.p99);
	fprintf(f, ".\n");
}

static void print_text(FILE *f, const report *r, const summary *s)
{
	const bench_opts *o = r->o;
	char others[512];
	const tput_result *mid = &r->tput[s->median_round];
	fprintf(f, "\n==================== bench_reserve ====================\n");
	fprintf(f, "date      %s\n", r->date);
	fprintf(f, "machine   %ld CPU (%s), %ld MiB RAM, %s\n", r->m.nproc, r->m.cpu, r->m.mem_mib,
	        r->m.kernel);
	fprintf(f, "layout    %s\n", r->layout);
	fprintf(f, "software  nats-server %s, cnats %s, store on %s, orion shards %s\n", r->m.nats_server,
	        r->m.cnats, r->m.store_fs, r->shards);
	fprintf(f, "command   %s\n", r->command);
	fprintf(f, "payload   %zu bytes (one encoded StockReserved commit), %d subjects/items\n",
	        r->payload_len, o->items);
	fprintf(f,
	        "rounds    %d x (raw %ld msgs, raw+expect %ld msgs, Orion %ld reserves, window %d, %d "
	        "conn)\n\n",
	        r->rounds, o->raw_count, o->raw_expect ? o->raw_count : 0, o->commands, o->window, o->conns);
	fprintf(f, "%-46s %9s %9s %9s   %s\n", "rate per second", "median", "min", "max",
	        "mean CPU % of a core: nats / orion / bench");
	fprintf(f, "%-46s %9.0f %9.0f %9.0f   %3.0f /   - / %3.0f\n", "raw JetStream async publish (ceiling)",
	        s->raw.median, s->raw.min, s->raw.max, s->raw_cpu.nats, s->raw_cpu.bench);
	if (o->raw_expect)
		fprintf(f, "%-46s %9.0f %9.0f %9.0f   %3.0f /   - / %3.0f\n",
		        "raw + ExpectLastSubjectSeq, 1 in flight/subj", s->rawx.median, s->rawx.min,
		        s->rawx.max, s->rawx_cpu.nats, s->rawx_cpu.bench);
	fprintf(f, "%-46s %9.0f %9.0f %9.0f   %3.0f / %3.0f / %3.0f\n",
	        "Orion ReserveStock through the runtime", s->orion.median, s->orion.min, s->orion.max,
	        s->orion_cpu.nats, s->orion_cpu.orion, s->orion_cpu.bench);
	fprintf(f, "%-46s %8.0f%% %8.0f%% %8.0f%%\n", "Orion / raw, per round", 100 * s->ratio.median,
	        100 * s->ratio.min, 100 * s->ratio.max);
	if (o->raw_expect)
		fprintf(f, "%-46s %8.0f%% %8.0f%% %8.0f%%\n", "Orion / raw+expect, per round",
		        100 * s->ratio_x.median, 100 * s->ratio_x.min, 100 * s->ratio_x.max);
	fprintf(f, "\nper round:  raw/s  raw+expect/s  Orion/s  Orion p50/p99/max ms (closed loop)\n");
	for (int i = 0; i < r->rounds; i++) {
		char rawx[32] = "-";
		if (o->raw_expect)
			snprintf(rawx, sizeof rawx, "%.0f", r->rawx[i].rate);
		fprintf(f, "  %d %12.0f %13s %8.0f  %.1f / %.1f / %.1f", i + 1, r->raw[i].rate, rawx,
		        r->tput[i].rate, r->tput[i].lat.p50, r->tput[i].lat.p99, r->tput[i].lat.max);
		describe_others(&r->tput[i].outcomes, others, sizeof others);
		fprintf(f, "%s%s\n", others[0] ? "  other outcomes: " : "", others);
	}
	fprintf(f, "\n%-10s %9s %9s %7s %7s %7s %7s %7s %7s %6s   %s\n", "offered/s", "achieved", "answered",
	        "p50 ms", "p90", "p99", "p99.9", "max", "lag ms", "lost", "CPU nats/orion/bench");
	fprintf(f, "%-10s %9.0f %9ld %7.2f %7.2f %7.2f %7.2f %7.2f %7s %6ld   %3.0f / %3.0f / %3.0f\n",
	        "closed", mid->rate, mid->lat.n, mid->lat.p50, mid->lat.p90, mid->lat.p99, mid->lat.p999,
	        mid->lat.max, "-", mid->count - mid->outcomes.accepted, mid->cpu.nats, mid->cpu.orion,
	        mid->cpu.bench);
	for (int i = 0; i < r->lat_count; i++) {
		const latency_result *l = &r->lat[i];
		fprintf(f,
		        "%-10d %9.0f %9ld %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %6ld   %3.0f / %3.0f / %3.0f\n",
		        l->rate, l->offered_rate, l->lat.n, l->lat.p50, l->lat.p90, l->lat.p99, l->lat.p999,
		        l->lat.max, l->lag_max_ms, l->lost, l->cpu.nats, l->cpu.orion, l->cpu.bench);
		describe_others(&l->outcomes, others, sizeof others);
		if (others[0] != '\0')
			fprintf(f, "           other outcomes: %s\n", others);
	}
	fprintf(f,
	        "(closed = the median Orion round; latency runs: open loop, from the scheduled send time, "
	        "client %s)\n\n",
	        o->latency_asap ? "writes at once" : "buffered by cnats");
	print_targets(f, r, s, "");
	fprintf(f, "orion: %s; log lines: %ld warn, %ld error\n", r->orion_exit, r->orion_warn,
	        r->orion_error);
}

static void print_markdown(FILE *f, const report *r, const summary *s)
{
	const bench_opts *o = r->o;
	const tput_result *mid = &r->tput[s->median_round];
	fprintf(f, "### %s\n\n", r->date);
	fprintf(f, "- command: `%s`\n", r->command);
	fprintf(f, "- machine: %ld CPU (%s), %ld MiB RAM, %s; store on %s\n", r->m.nproc, r->m.cpu,
	        r->m.mem_mib, r->m.kernel, r->m.store_fs);
	fprintf(f, "- layout: %s\n", r->layout);
	fprintf(f,
	        "- software: nats-server %s, cnats %s, orion shards %s; server, Orion and load generator on "
	        "the same machine\n",
	        r->m.nats_server, r->m.cnats, r->shards);
	fprintf(f,
	        "- %d rounds, interleaved: raw %ld msgs, raw+expect %ld msgs, Orion %ld reserves (window %d, "
	        "%d "
	        "conn); payload %zu bytes (one StockReserved commit); %d items/subjects\n\n",
	        r->rounds, o->raw_count, o->raw_expect ? o->raw_count : 0, o->commands, o->window, o->conns,
	        r->payload_len, o->items);
	fprintf(f, "| rate | median | min – max | mean CPU %% of a core (nats / orion / bench) |\n");
	fprintf(f, "|---|---:|---:|---|\n");
	fprintf(f, "| raw JetStream async publish (ceiling) | %.0f msg/s | %.0f – %.0f | %.0f / - / %.0f |\n",
	        s->raw.median, s->raw.min, s->raw.max, s->raw_cpu.nats, s->raw_cpu.bench);
	if (o->raw_expect)
		fprintf(f,
		        "| raw + ExpectLastSubjectSeq, 1 in flight per subject | %.0f msg/s | %.0f – %.0f | "
		        "%.0f / - "
		        "/ %.0f |\n",
		        s->rawx.median, s->rawx.min, s->rawx.max, s->rawx_cpu.nats, s->rawx_cpu.bench);
	fprintf(f,
	        "| Orion ReserveStock through the runtime | %.0f cmd/s | %.0f – %.0f | %.0f / %.0f / %.0f "
	        "|\n",
	        s->orion.median, s->orion.min, s->orion.max, s->orion_cpu.nats, s->orion_cpu.orion,
	        s->orion_cpu.bench);
	fprintf(f, "| Orion / raw (per round) | %.0f%% | %.0f%% – %.0f%% | |\n", 100 * s->ratio.median,
	        100 * s->ratio.min, 100 * s->ratio.max);
	if (o->raw_expect)
		fprintf(f, "| Orion / raw+expect (per round) | %.0f%% | %.0f%% – %.0f%% | |\n",
		        100 * s->ratio_x.median, 100 * s->ratio_x.min, 100 * s->ratio_x.max);
	fprintf(f, "\n| load | achieved | p50 | p90 | p99 | p99.9 | max | lost | CPU (nats / orion / bench) "
	           "|\n");
	fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
	fprintf(f,
	        "| closed loop, window %d (median round) | %.0f/s | %.2f ms | %.2f ms | %.2f ms | %.2f ms | "
	        "%.2f ms "
	        "| %ld | %.0f / %.0f / %.0f |\n",
	        o->window, mid->rate, mid->lat.p50, mid->lat.p90, mid->lat.p99, mid->lat.p999, mid->lat.max,
	        mid->count - mid->outcomes.accepted, mid->cpu.nats, mid->cpu.orion, mid->cpu.bench);
	for (int i = 0; i < r->lat_count; i++) {
		const latency_result *l = &r->lat[i];
		fprintf(f,
		        "| open loop %d/s for %.0f s | %.0f/s | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f "
		        "ms | %ld | "
		        "%.0f / %.0f / %.0f |\n",
		        l->rate, o->duration_s, l->offered_rate, l->lat.p50, l->lat.p90, l->lat.p99,
		        l->lat.p999, l->lat.max, l->lost, l->cpu.nats, l->cpu.orion, l->cpu.bench);
	}
	fprintf(f, "\n");
	print_targets(f, r, s, "**");
}

static void print_report(FILE *f, const report *r)
{
	summary s = summarize_rounds(r);
	print_text(f, r, &s);
	fprintf(f, "\n----- markdown for bench/RESULTS.md -----\n");
	print_markdown(f, r, &s);
	fprintf(f, "----- end of markdown -----\n");
}

/* ---- options --------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_reserve --orion PATH [options]\n\n"
	           "  --orion PATH        the orion binary (default: $ORION_BIN)\n"
	           "  --raw-count N       raw JetStream publishes (default 100000)\n"
	           "  --raw-pending N     max async publishes in flight in the raw run (default 65536)\n"
	           "  --no-raw-expect     skip the raw run with ExpectLastSubjectSeq\n"
	           "  --commands N        reserve commands of the throughput run (default 100000)\n"
	           "  --items N           stock items, also the raw runs' subjects (default 1000)\n"
	           "  --window N          outstanding requests in the throughput run (default 2000)\n"
	           "  --conns N           client connections of the throughput run (default 1)\n"
	           "  --rounds N          interleaved rounds of raw and Orion throughput runs; the report\n"
	           "                      gives medians (default 3, at most 20)\n"
	           "  --rates A,B,...     offered loads of the latency runs, commands/s (default 1000,5000)\n"
	           "  --duration S        seconds per latency run (default 5)\n"
	           "  --shards N          ORION_SHARDS for the orion child (default: inherited, else 4)\n"
	           "  --cluster           three clustered nats-servers and R3 streams (ORION_EVT and the\n"
	           "                      raw runs' alike) instead of one server\n"
	           "  --latency-flush M   asap (default): the latency client writes each request at once;\n"
	           "                      buffered: through cnats' flusher, which waits 1 ms to batch\n"
	           "  --dump DIR          write per-request latencies to DIR/<run>.csv\n\n"
	           "Starts its own nats-server (or three) and `orion serve --roles stock`; prints a table "
	           "and a\n"
	           "markdown block for bench/RESULTS.md. BENCH_COMMAND (set by scripts/bench) is the\n"
	           "command shown in the report.\n");
}

static int parse_args(int argc, char **argv, bench_opts *o)
{
	long v = 0;
	o->orion = getenv("ORION_BIN");
	o->raw_count = 100000;
	o->raw_pending = 65536;
	o->raw_expect = true;
	o->commands = 100000;
	o->items = 1000;
	o->window = 2000;
	o->conns = 1;
	o->rates[0] = 1000;
	o->rates[1] = 5000;
	o->rate_count = 2;
	o->duration_s = 5;
	o->shards = NULL;
	o->latency_asap = true;
	o->rounds = 3;
	o->dump = NULL;
	o->cluster = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--no-raw-expect") == 0) {
			o->raw_expect = false;
			takes = false;
		} else if (strcmp(a, "--cluster") == 0) {
			o->cluster = true;
			takes = false;
		} else if (val == NULL) {
			bench_say("option %s needs a value (see --help)", a);
			return 2;
		} else if (strcmp(a, "--orion") == 0) {
			o->orion = val;
		} else if (strcmp(a, "--raw-count") == 0 && bench_parse_long(val, 1, 100000000, &v)) {
			o->raw_count = v;
		} else if (strcmp(a, "--raw-pending") == 0 && bench_parse_long(val, 1, 10000000, &v)) {
			o->raw_pending = v;
		} else if (strcmp(a, "--commands") == 0 && bench_parse_long(val, 1, 100000000, &v)) {
			o->commands = v;
		} else if (strcmp(a, "--items") == 0 && bench_parse_long(val, 1, 9999, &v)) {
			o->items = (int)v;
		} else if (strcmp(a, "--window") == 0 && bench_parse_long(val, 1, 1000000, &v)) {
			o->window = (int)v;
		} else if (strcmp(a, "--conns") == 0 && bench_parse_long(val, 1, MAX_CONNS, &v)) {
			o->conns = (int)v;
		} else if (strcmp(a, "--duration") == 0 && bench_parse_long(val, 1, 3600, &v)) {
			o->duration_s = (double)v;
		} else if (strcmp(a, "--shards") == 0 && bench_parse_long(val, 1, 256, &v)) {
			o->shards = val;
		} else if (strcmp(a, "--rounds") == 0 && bench_parse_long(val, 1, MAX_ROUNDS, &v)) {
			o->rounds = (int)v;
		} else if (strcmp(a, "--dump") == 0) {
			o->dump = val;
		} else if (strcmp(a, "--latency-flush") == 0 &&
		           (strcmp(val, "asap") == 0 || strcmp(val, "buffered") == 0)) {
			o->latency_asap = strcmp(val, "asap") == 0;
		} else if (strcmp(a, "--rates") == 0) {
			char buf[256], *save = NULL;
			snprintf(buf, sizeof buf, "%s", val);
			o->rate_count = 0;
			for (char *tok = strtok_r(buf, ",", &save); tok != NULL;
			     tok = strtok_r(NULL, ",", &save)) {
				if (o->rate_count >= MAX_RATES || !bench_parse_long(tok, 1, 1000000, &v)) {
					bench_say("bad --rates '%s' (at most %d rates, each 1..1000000)", val,
					          MAX_RATES);
					return 2;
				}
				o->rates[o->rate_count++] = (int)v;
			}
		} else {
			bench_say("unknown option or bad value: %s %s (see --help)", a, val);
			return 2;
		}
		if (takes)
			i++;
	}
	if (o->orion == NULL || o->orion[0] == '\0') {
		bench_say("no orion binary: pass --orion PATH or set ORION_BIN");
		return 2;
	}
	if (access(o->orion, X_OK) != 0) {
		bench_say("%s is not executable", o->orion);
		return 2;
	}
	if (o->conns > o->window)
		o->conns = o->window;
	return -1;
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	bench_opts o;
	int status = parse_args(argc, argv, &o);
	if (status >= 0)
		return status;
	status = 1;

	bench_catch_signals();
	log_set_level(LOG_WARN);

	static report rep;
	rep.o = &o;
	bench_command_line(argc, argv, rep.command, sizeof rep.command);
	const char *env_shards = getenv("ORION_SHARDS");
	char shards_text[64];
	snprintf(shards_text, sizeof shards_text, "%s",
	         o.shards ? o.shards : (env_shards && *env_shards ? env_shards : "4 (default)"));
	rep.shards = shards_text;
	snprintf(rep.orion_exit, sizeof rep.orion_exit, "not started");

	const char *tmp = getenv("TMPDIR");
	char dir[512], store_dir[600], orion_dir[600], orion_log[600];
	snprintf(dir, sizeof dir, "%s/orion-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		bench_say("mkdtemp(%s): %s", dir, strerror(errno));
		return 1;
	}
	snprintf(store_dir, sizeof store_dir, "%s/nats", dir);
	snprintf(orion_dir, sizeof orion_dir, "%s/orion", dir);
	snprintf(orion_log, sizeof orion_log, "%s/orion.log", dir);
	mkdir(orion_dir, 0700);

	natsd *server = NULL;
	bench_cluster cluster = {{0}, {0}, ""};
	natsConnection *raw_nc = NULL;
	client clients[MAX_CONNS + 1]; /* the throughput connections, then the latency one */
	int clients_open = 0;
	mp_writer *commit = mp_writer_create();
	uint8_t *payload = NULL;
	size_t payload_len = 0;
	orn_rc rc = ORN_OK;
	char others[512];

	time_t wall = time(NULL);
	struct tm tm;
	gmtime_r(&wall, &tm);
	strftime(rep.date, sizeof rep.date, "%Y-%m-%d %H:%M UTC", &tm);
	bench_machine_facts(&rep.m, dir);

	if (commit == NULL || encode_reserved_commit(commit, 0) != ORN_OK) {
		bench_say("cannot encode the sample commit");
		goto cleanup;
	}
	payload_len = mp_writer_size(commit);
	payload = malloc(payload_len);
	if (payload == NULL)
		goto cleanup;
	memcpy(payload, mp_writer_data(commit), payload_len);
	rep.payload_len = payload_len;

	/* 1. the server(s), the orion child and the stock items */
	const char *url = NULL;
	if (o.cluster) {
		if (!bench_cluster_start(store_dir, &cluster))
			goto cleanup;
		memcpy(nats_pids, cluster.pid, sizeof nats_pids);
		url = cluster.url;
	} else {
		natsd_options no;
		natsd_options_init(&no);
		no.store_dir = store_dir;
		if (natsd_start(&no, &server) != ORN_OK) {
			bench_say("cannot start nats-server");
			goto cleanup;
		}
		nats_pids[0] = natsd_pid(server);
		url = natsd_url(server);
	}
	bench_say("nats-server %s at %s, store %s (%s)", rep.m.nats_server, url, store_dir, rep.m.store_fs);
	natsOptions *nopts = NULL;
	if (natsOptions_Create(&nopts) != NATS_OK || es_nats_options_set_url(nopts, url) != ORN_OK ||
	    natsOptions_SetName(nopts, "bench-raw") != NATS_OK ||
	    natsConnection_Connect(&raw_nc, nopts) != NATS_OK) {
		natsOptions_Destroy(nopts);
		bench_say("cannot connect to %s", url);
		goto cleanup;
	}
	natsOptions_Destroy(nopts);

	bench_say("starting %s serve --roles stock...", o.orion);
	orion_pid = start_orion(&o, url, orion_dir, orion_log);
	if (orion_pid == 0)
		goto cleanup;
	snprintf(rep.orion_exit, sizeof rep.orion_exit, "running");
	for (; clients_open <= o.conns; clients_open++)
		if (client_open(&clients[clients_open], url, clients_open,
		                clients_open == o.conns && o.latency_asap) != ORN_OK)
			goto cleanup;
	run_spec create = {.create = true, .items = o.items, .count = o.items, .quantity = 1000000};
	bench_say("creating %d stock items...", o.items);
	rc = throughput_run(clients, 1, &create, o.items, "create", NULL, &rep.setup);
	if (rc != ORN_OK || rep.setup.outcomes.accepted != o.items) {
		describe_others(&rep.setup.outcomes, others, sizeof others);
		bench_say("item creation: %s; %ld of %d accepted %s", orn_strerror(rc),
		          rep.setup.outcomes.accepted, o.items, others);
		goto cleanup;
	}

	describe_layout(raw_nc, &o, rep.layout, sizeof rep.layout);
	bench_say("layout: %s", rep.layout);

	/* 2-3. rounds of RAW and ORION THROUGHPUT, interleaved so that a change in
	 * the machine's speed during the run affects both sides alike */
	for (int r = 0; r < o.rounds; r++) {
		bench_say("round %d of %d", r + 1, o.rounds);
		if (raw_phase(raw_nc, &o, false, r + 1, payload, payload_len, &rep.raw[r]) != ORN_OK ||
		    bench_interrupted)
			goto cleanup;
		if (o.raw_expect &&
		    (raw_phase(raw_nc, &o, true, r + 1, payload, payload_len, &rep.rawx[r]) != ORN_OK ||
		     bench_interrupted))
			goto cleanup;
		char tag[16];
		snprintf(tag, sizeof tag, "t%d", r + 1);
		run_spec reserve = {.create = false, .tag = tag, .items = o.items, .count = o.commands};
		bench_say("orion: %ld reserve commands, window %d, %d connection(s)...", o.commands, o.window,
		          o.conns);
		rc = throughput_run(clients, o.conns, &reserve, o.window, tag, o.dump, &rep.tput[r]);
		bench_say("orion: %.0f commands/s (%ld accepted of %ld in %.2f s)", rep.tput[r].rate,
		          rep.tput[r].outcomes.accepted, o.commands, rep.tput[r].seconds);
		if (rc != ORN_OK || rep.tput[r].outcomes.accepted != o.commands) {
			describe_others(&rep.tput[r].outcomes, others, sizeof others);
			bench_say("orion run incomplete: %s; %ld answered; %s", orn_strerror(rc),
			          rep.tput[r].answered, others);
			goto cleanup;
		}
		rep.rounds = r + 1;
	}

	/* 4. LATENCY */
	for (int i = 0; i < o.rate_count; i++) {
		char tag[16];
		snprintf(tag, sizeof tag, "l%d", i + 1);
		run_spec spec = {.create = false,
		                 .tag = tag,
		                 .items = o.items,
		                 .count = (long)((double)o.rates[i] * o.duration_s)};
		rc = latency_run(&clients[o.conns], &spec, o.rates[i], tag, o.dump, &rep.lat[i]);
		rep.lat_count = i + 1;
		bench_say("latency at %d/s: p50 %.2f ms, p99 %.2f ms, max %.2f ms, lost %ld", o.rates[i],
		          rep.lat[i].lat.p50, rep.lat[i].lat.p99, rep.lat[i].lat.max, rep.lat[i].lost);
		describe_others(&rep.lat[i].outcomes, others, sizeof others);
		if (rc != ORN_OK || others[0] != '\0') {
			bench_say("latency run failed: %s %s", orn_strerror(rc), others);
			goto cleanup;
		}
	}
	status = 0;

cleanup:
	for (int k = 0; k < clients_open; k++)
		client_close(&clients[k]);
	natsConnection_Destroy(raw_nc);
	if (orion_pid > 0) {
		stop_child(orion_pid, rep.orion_exit, sizeof rep.orion_exit);
		orion_pid = 0;
		rep.orion_warn = count_lines_with(orion_log, "\"level\":\"warn\"");
		rep.orion_error = count_lines_with(orion_log, "\"level\":\"error\"");
		if (rep.orion_warn + rep.orion_error > 0 || status != 0) {
			bench_say("orion log (last lines):");
			print_tail(orion_log, 8);
		}
	}
	natsd_stop(server);
	bench_cluster_stop(&cluster);
	bench_rmrf(dir);
	free(payload);
	mp_writer_destroy(commit);
	if (status == 0)
		print_report(stdout, &rep);
	else
		bench_say("benchmark failed%s", bench_interrupted ? " (interrupted)" : "");
	nats_Close();
	return status;
}
