/* bench_rebuild.c — rebuild benchmark: how fast `orion rebuild` turns the
 * stream into read models, against the raw ordered-consumer read rate of the
 * same stream, measured in one run on one machine.
 *
 *   1. starts its own nats-server (store in a temporary directory) and opens
 *      the event store (es_store_open creates ORION_EVT);
 *   2. FILL: N real commits on their real subjects, one event each, encoded
 *      as the stock actor encodes them (env_ + stock_ codecs, the headers of
 *      es_append_publish: Nats-Msg-Id = command id, expected last subject
 *      sequence = the item's version): StockItemCreated per item, optionally
 *      ProductCreated per product, then StockReserved round-robin over the
 *      items with unique reservation ids. Published async on one connection,
 *      so commit i gets sequence i + 1; the fill is checked (no error, stream
 *      last sequence == N);
 *   3. rounds, interleaved so that a change in the machine's speed touches
 *      both sides alike:
 *      RAW     one JetStream ordered consumer (DeliverAll, filter
 *              "orion.evt.>", pending limits off) reads every message up to
 *              sequence N, taking each one's data and metadata sequence as the
 *              projector does; timed from subscribe to the last message;
 *      REBUILD a fresh LMDB directory: proj_env_open, proj_models_open (every
 *              read model), proj_runner_start with stop_at = N, then
 *              proj_runner_wait(N); timed from before opening to position N.
 *              The result is checked (commits, poison, one item's levels);
 *   4. prints a table (medians, ratios, CPU of nats-server and of this
 *      process from /proc/<pid>/stat) and a markdown block for
 *      bench/RESULTS.md.
 *
 * The server is stopped and the temporary directory removed on every exit
 * path; nats-server also dies with this process (PR_SET_PDEATHSIG). */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
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
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bench_common.h"
#include "envelope.h"
#include "evstore-internal.h" /* a bench of the engine: its own reads of the stream */
#include "log.h"
#include "mpack.h"
#include "natsd.h"
#include "product.h"
#include "read_models.h"
#include "stock.h"

#define MAX_ROUNDS     BENCH_MAX_ROUNDS
#define STALL_LIMIT_NS (30LL * 1000000000LL) /* no progress for this long: give up */
#define WAIT_SLICE_MS  500
#define ITEM_ON_HAND   1000000LL
#define FILL_REPORT_NS (2LL * 1000000000LL)
#define RAW_NEXT_MS    1000

/* ---- options -------------------------------------------------------------- */

typedef struct bench_opts {
	long events;   /* commits in the stream (= events: one per commit) */
	int items;     /* stock items */
	long products; /* products (ProductCreated commits) among the events */
	int rounds;    /* interleaved raw / rebuild rounds */
	long batch;    /* runner batch_max */
	long pending;  /* cnats MaxPending of the fill */
} bench_opts;

/* ---- files, processes, machine ---------------------------------------------- */

/* ---- CPU per phase ---------------------------------------------------------- */

typedef struct cpu_mark {
	double nats, bench;
	int64_t t;
} cpu_mark;

typedef struct cpu_use {
	double nats, bench; /* percent of one core over the phase */
} cpu_use;

static pid_t nats_pid;

static cpu_mark cpu_now(void)
{
	cpu_mark m = {bench_proc_cpu_s(nats_pid), bench_proc_cpu_s(getpid()), bench_now_ns()};
	return m;
}

static cpu_use cpu_since(cpu_mark a)
{
	cpu_mark b = cpu_now();
	double secs = (double)(b.t - a.t) / 1e9;
	cpu_use u = {0, 0};
	if (secs > 0) {
		u.nats = 100.0 * (b.nats - a.nats) / secs;
		u.bench = 100.0 * (b.bench - a.bench) / secs;
	}
	return u;
}

/* ---- the fill: real commits on their real subjects --------------------------- */

typedef struct fill_acks {
	atomic_long acked, errors;
	char first_error[160];
	atomic_flag error_taken;
} fill_acks;

static void on_fill_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	fill_acks *a = closure;
	(void)js;
	if (pa != NULL) {
		atomic_fetch_add(&a->acked, 1);
	} else {
		atomic_fetch_add(&a->errors, 1);
		if (!atomic_flag_test_and_set(&a->error_taken))
			snprintf(a->first_error, sizeof a->first_error, "%s (jerr %d)",
			         pae != NULL && pae->ErrText != NULL ? pae->ErrText : "publish failed",
			         pae != NULL ? (int)pae->ErrCode : 0);
	}
	natsMsg_Destroy(msg);
}

/* What commit i (0-based) of the fill is: item creations first, then product
 * creations, then reservations round-robin over the items. */
typedef struct fill_plan {
	const bench_opts *o;
	mp_writer *payload, *commit;
} fill_plan;

static void item_id(char *out, size_t cap, long k)
{
	snprintf(out, cap, "bench-item-%04ld", k);
}

static orn_rc encode_stock(fill_plan *p, long i, stock_event *ev)
{
	long first_reserve = p->o->items + p->o->products;
	memset(ev, 0, sizeof *ev);
	if (i < p->o->items) {
		ev->kind = STOCK_CREATED;
		ev->quantity = ITEM_ON_HAND;
	} else {
		ev->kind = STOCK_RESERVED;
		ev->quantity = 1;
		snprintf(ev->reservation_id, sizeof ev->reservation_id, "rb-%08ld", i - first_reserve);
	}
	return stock_event_encode(p->payload, ev);
}

static orn_rc encode_product(fill_plan *p, long n)
{
	product_event ev;
	memset(&ev, 0, sizeof ev);
	ev.kind = PRODUCT_CREATED;
	ev.present = PRODUCT_FIELDS_ALL;
	snprintf(ev.fields.sku, sizeof ev.fields.sku, "BENCH-%06ld", n);
	snprintf(ev.fields.name, sizeof ev.fields.name, "Bench product %ld", n);
	snprintf(ev.fields.description, sizeof ev.fields.description,
	         "A product of the rebuild benchmark, number %ld, with a description of ordinary length.", n);
	ev.fields.price_cents = 100 + n % 10000;
	snprintf(ev.fields.currency, sizeof ev.fields.currency, "EUR");
	snprintf(ev.fields.category, sizeof ev.fields.category, "bench-%ld", n % 10);
	return product_event_encode(p->payload, &ev);
}

/* Encodes commit i into p->commit (one envelope, as encode_commit in the
 * actor runtime writes it) and names its aggregate, id and command id. */
static orn_rc encode_fill_commit(fill_plan *p, long i, const char **aggregate, char *id, size_t id_cap,
                                 char *cmd_id, size_t cmd_cap)
{
	const char *type = NULL;
	orn_rc rc;
	mp_writer_reset(p->payload);
	snprintf(cmd_id, cmd_cap, "cmd-rb-%08ld", i);
	if (i >= p->o->items && i < p->o->items + p->o->products) {
		long n = i - p->o->items;
		*aggregate = PRODUCT_AGGREGATE;
		snprintf(id, id_cap, "bench-product-%06ld", n);
		type = PRODUCT_EV_CREATED;
		rc = encode_product(p, n);
	} else {
		stock_event ev;
		long k = i < p->o->items ? i : (i - p->o->items - p->o->products) % p->o->items;
		*aggregate = STOCK_AGGREGATE;
		item_id(id, id_cap, k);
		rc = encode_stock(p, i, &ev);
		type = stock_event_type(ev.kind);
	}
	if (rc == ORN_OK)
		rc = mp_writer_status(p->payload);
	if (rc != ORN_OK)
		return rc;
	env_envelope e;
	memset(&e, 0, sizeof e);
	if ((rc = env_set_field(e.type, sizeof e.type, type)) != ORN_OK ||
	    (rc = env_set_field(e.correlation, sizeof e.correlation, cmd_id)) != ORN_OK ||
	    (rc = env_set_field(e.causation, sizeof e.causation, cmd_id)) != ORN_OK ||
	    (rc = env_set_field(e.actor, sizeof e.actor, "bench")) != ORN_OK)
		return rc;
	e.schema = 1;
	e.time_ms = orn_now_ms();
	e.payload = mp_writer_data(p->payload);
	e.payload_len = mp_writer_size(p->payload);
	mp_writer_reset(p->commit);
	env_commit_begin(p->commit, 1);
	if ((rc = env_encode(p->commit, &e)) != ORN_OK)
		return rc;
	return mp_writer_status(p->commit);
}

/* Publishes one commit with the headers es_append_publish sets. */
static natsStatus publish_commit(jsCtx *js, const char *subject, uint64_t expected, const char *msg_id,
                                 const mp_writer *commit)
{
	char expected_text[24];
	natsMsg *msg = NULL;
	snprintf(expected_text, sizeof expected_text, "%" PRIu64, expected);
	natsStatus st = natsMsg_Create(&msg, subject, NULL, (const char *)mp_writer_data(commit),
	                               (int)mp_writer_size(commit));
	if (st == NATS_OK)
		st = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence", expected_text);
	if (st == NATS_OK)
		st = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id);
	/* NATS_TIMEOUT: MaxPending reached for the stall wait; try again. */
	while (st == NATS_OK && (st = js_PublishMsgAsync(js, &msg, NULL)) == NATS_TIMEOUT &&
	       !bench_interrupted)
		;
	natsMsg_Destroy(msg); /* NULL after a successful publish: cnats owns it then */
	return st;
}

typedef struct fill_result {
	double seconds, rate;
	size_t stock_created_len, reserved_len, product_len; /* bytes of one commit of each kind */
	uint64_t last_seq;
	cpu_use cpu;
} fill_result;

static uint64_t stream_last_seq(es_store *store)
{
	jsStreamInfo *si = NULL;
	uint64_t last = 0;
	if (js_GetStreamInfo(&si, es_store_jetstream(store), ES_STREAM, NULL, NULL) == NATS_OK) {
		last = si->State.LastSeq;
		jsStreamInfo_Destroy(si);
	}
	return last;
}

static orn_rc fill(es_store *store, const bench_opts *o, fill_result *out)
{
	fill_plan plan = {o, mp_writer_create(), mp_writer_create()};
	uint64_t *versions = calloc((size_t)o->items, sizeof *versions); /* last sequence per item */
	fill_acks *acks = calloc(1, sizeof *acks);
	jsCtx *js = NULL;
	jsPubOptions po;
	orn_rc rc = ORN_OK;
	natsStatus st = NATS_OK;
	memset(out, 0, sizeof *out);
	if (plan.payload == NULL || plan.commit == NULL || versions == NULL || acks == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	atomic_flag_clear(&acks->error_taken);
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 10000;
	jo.PublishAsync.MaxPending = o->pending;
	jo.PublishAsync.AckHandler = on_fill_ack;
	jo.PublishAsync.AckHandlerClosure = acks;
	if (natsConnection_JetStream(&js, es_store_connection(store), &jo) != NATS_OK) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	bench_say("fill: %ld commits (%d StockItemCreated, %ld ProductCreated, %ld StockReserved over %d "
	          "items)...",
	          o->events, o->items, o->products, o->events - o->items - o->products, o->items);
	cpu_mark cpu0 = cpu_now();
	int64_t start = bench_now_ns(), next_report = start + FILL_REPORT_NS;
	for (long i = 0; i < o->events && !bench_interrupted; i++) {
		const char *aggregate = NULL;
		char id[ES_ID_MAX + 1], cmd_id[64], subject[ES_SUBJECT_MAX];
		if ((rc = encode_fill_commit(&plan, i, &aggregate, id, sizeof id, cmd_id, sizeof cmd_id)) !=
		            ORN_OK ||
		    (rc = es_subject(subject, sizeof subject, "orion.evt", aggregate, id)) != ORN_OK)
			goto fail;
		/* One publisher in order on one connection: commit i becomes sequence i + 1,
		 * so the expected version of an item is known without waiting for acks. */
		uint64_t expected = 0;
		long k = -1;
		if (strcmp(aggregate, STOCK_AGGREGATE) == 0) {
			k = i < o->items ? i : (i - o->items - o->products) % o->items;
			expected = versions[k];
		}
		size_t len = mp_writer_size(plan.commit);
		if (i == 0)
			out->stock_created_len = len;
		else if (i == o->items && o->products > 0)
			out->product_len = len;
		else if (i == o->items + o->products)
			out->reserved_len = len;
		if ((st = publish_commit(js, subject, expected, cmd_id, plan.commit)) != NATS_OK) {
			bench_say("fill: publish %ld: %s", i, natsStatus_GetText(st));
			rc = ORN_EUNAVAILABLE;
			goto fail;
		}
		if (k >= 0)
			versions[k] = (uint64_t)i + 1;
		if (bench_now_ns() >= next_report) {
			bench_say("fill: %ld published, %ld acked", i + 1, atomic_load(&acks->acked));
			next_report += FILL_REPORT_NS;
		}
	}
	jsPubOptions_Init(&po);
	po.MaxWait = 60000;
	if (bench_interrupted) {
		rc = ORN_EUNAVAILABLE;
		goto fail;
	}
	if ((st = js_PublishAsyncComplete(js, &po)) != NATS_OK) {
		bench_say("fill: not every publish was acknowledged: %s", natsStatus_GetText(st));
		rc = ORN_ETIMEOUT;
		goto fail;
	}
	out->seconds = (double)(bench_now_ns() - start) / 1e9;
	out->cpu = cpu_since(cpu0);
	out->rate = out->seconds > 0 ? (double)o->events / out->seconds : 0;
	out->last_seq = stream_last_seq(store);
	bench_say("fill: %.0f commits/s, %ld acked, %ld errors, stream last sequence %" PRIu64, out->rate,
	          atomic_load(&acks->acked), atomic_load(&acks->errors), out->last_seq);
	if (atomic_load(&acks->errors) > 0 || out->last_seq != (uint64_t)o->events) {
		bench_say("fill: failed (first error: %s); expected last sequence %ld",
		          acks->first_error[0] ? acks->first_error : "none", o->events);
		rc = ORN_EINTERNAL;
		goto fail;
	}
fail:
	if (js != NULL) {
		if (rc != ORN_OK) {
			jsPubOptions_Init(&po);
			po.MaxWait = 5000;
			js_PublishAsyncComplete(js, &po);
		}
		jsCtx_Destroy(js);
	}
	free(acks);
	free(versions);
	mp_writer_destroy(plan.payload);
	mp_writer_destroy(plan.commit);
	return rc;
}

/* ---- RAW: one ordered consumer over the whole stream ------------------------- */

typedef struct phase_result {
	double seconds, rate;
	cpu_use cpu;
	uint64_t count; /* messages read (raw) or commits applied (rebuild) */
} phase_result;

static orn_rc raw_phase(es_store *store, const bench_opts *o, phase_result *out)
{
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	uint64_t expect_seq = 1, bytes = 0, target = (uint64_t)o->events;
	orn_rc rc = ORN_OK;
	memset(out, 0, sizeof *out);
	jsSubOptions_Init(&so);
	so.Stream = ES_STREAM;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverAll;
	cpu_mark cpu0 = cpu_now();
	int64_t start = bench_now_ns(), last_progress = start;
	natsStatus st = js_SubscribeSync(&sub, es_store_jetstream(store), "orion.evt.>", NULL, &so, &jerr);
	if (st != NATS_OK) {
		bench_say("raw: cannot subscribe: %s (jerr %d)", natsStatus_GetText(st), (int)jerr);
		sub = NULL;
		rc = ORN_EUNAVAILABLE;
		goto fail;
	}
	natsSubscription_SetPendingLimits(sub, -1, -1);
	while (expect_seq <= target && !bench_interrupted) {
		natsMsg *msg = NULL;
		st = natsSubscription_NextMsg(&msg, sub, RAW_NEXT_MS);
		if (st == NATS_TIMEOUT) {
			if (bench_now_ns() - last_progress > STALL_LIMIT_NS)
				break;
			continue;
		}
		if (st != NATS_OK)
			break;
		jsMsgMetaData *meta = NULL;
		if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
			/* touch what the projector touches: the data and the sequence */
			const char *data = natsMsg_GetData(msg);
			int len = natsMsg_GetDataLength(msg);
			bytes += (uint64_t)len + (len > 0 ? (unsigned char)data[0] : 0u);
			if (meta->Sequence.Stream == expect_seq)
				expect_seq++;
			jsMsgMetaData_Destroy(meta);
			last_progress = bench_now_ns();
		}
		natsMsg_Destroy(msg);
	}
	out->seconds = (double)(bench_now_ns() - start) / 1e9;
	out->cpu = cpu_since(cpu0);
	out->count = expect_seq - 1;
	if (out->count != target) {
		bench_say("raw: read %" PRIu64 " of %" PRIu64 " messages in order (%s)", out->count, target,
		          bench_interrupted ? "interrupted" : natsStatus_GetText(st));
		rc = ORN_ETIMEOUT;
		goto fail;
	}
	out->rate = out->seconds > 0 ? (double)out->count / out->seconds : 0;
	bench_say("raw: %.0f msgs/s (%" PRIu64 " messages, %" PRIu64 " data bytes, %.2f s)", out->rate,
	          out->count, bytes, out->seconds);
fail:
	if (sub != NULL) {
		natsSubscription_Unsubscribe(sub);
		natsSubscription_Destroy(sub);
	}
	return rc;
}

/* ---- REBUILD: every read model in a fresh environment ------------------------- */

/* Reservations the fill made on item k. */
static int64_t reserved_on(const bench_opts *o, long k)
{
	long reserves = o->events - o->items - o->products;
	return reserves / o->items + (k < reserves % o->items ? 1 : 0);
}

/* Checks one item's levels in the rebuilt inventory against the fill. */
static orn_rc check_inventory(const bench_opts *o, proj_inventory *inv)
{
	char id[ES_ID_MAX + 1];
	proj_stock_level level;
	long k = o->items - 1;
	item_id(id, sizeof id, k);
	orn_rc rc = proj_inventory_get(inv, id, &level);
	if (rc != ORN_OK) {
		bench_say("rebuild: item %s not in the inventory: %s", id, orn_strerror(rc));
		return rc;
	}
	if (level.on_hand != ITEM_ON_HAND || level.reserved != reserved_on(o, k)) {
		bench_say("rebuild: item %s has on hand %" PRId64 ", reserved %" PRId64
		          "; expected %lld, %" PRId64,
		          id, level.on_hand, level.reserved, ITEM_ON_HAND, reserved_on(o, k));
		return ORN_EINTERNAL;
	}
	return ORN_OK;
}

typedef struct rebuild_result {
	phase_result phase;
	proj_runner_stats stats;
	proj_env_stats env;
} rebuild_result;

static orn_rc rebuild_phase(es_store *store, const bench_opts *o, const char *dir, rebuild_result *out)
{
	proj_env *env = NULL;
	proj_models m;
	bool models_open = false;
	proj_runner *runner = NULL;
	proj_env_options eo;
	proj_runner_options ro;
	uint64_t target = (uint64_t)o->events, last_position = 0;
	orn_rc rc;
	memset(out, 0, sizeof *out);
	bench_rmrf(dir);
	proj_env_options_init(&eo);
	eo.path = dir;
	eo.no_sync = true; /* as `orion rebuild`: one flush at the end, timed */
	proj_runner_options_init(&ro);
	ro.stop_at = target;
	ro.batch_max = (unsigned)o->batch;
	cpu_mark cpu0 = cpu_now();
	int64_t start = bench_now_ns(), last_progress = start;
	if ((rc = proj_env_open(&eo, &env)) != ORN_OK || (rc = proj_models_open(env, &m)) != ORN_OK)
		goto fail;
	models_open = true;
	if ((rc = proj_runner_start(store, env, m.defs, PROJ_MODEL_COUNT, &ro, &runner)) != ORN_OK)
		goto fail;
	for (;;) {
		rc = proj_runner_wait(runner, target, WAIT_SLICE_MS);
		if (rc == ORN_OK)
			break;
		proj_runner_stats_get(runner, &out->stats);
		if (rc != ORN_ETIMEOUT || bench_interrupted ||
		    (out->stats.failures > 3 && out->stats.last_error != ORN_OK))
			goto fail;
		if (out->stats.position != last_position) {
			last_position = out->stats.position;
			last_progress = bench_now_ns();
		} else if (bench_now_ns() - last_progress > STALL_LIMIT_NS) {
			bench_say("rebuild: no progress at position %" PRIu64 " for 30 s", last_position);
			rc = ORN_ETIMEOUT;
			goto fail;
		}
	}
	if ((rc = proj_env_sync(env)) != ORN_OK)
		goto fail;
	out->phase.seconds = (double)(bench_now_ns() - start) / 1e9;
	out->phase.cpu = cpu_since(cpu0);
	proj_runner_stats_get(runner, &out->stats);
	proj_env_stats_get(env, &out->env);
	out->phase.count = out->stats.commits;
	out->phase.rate = out->phase.seconds > 0 ? (double)target / out->phase.seconds : 0;
	bench_say("rebuild: %.0f events/s (%" PRIu64 " commits, %" PRIu64 " events, %" PRIu64
	          " batches, %.2f s)",
	          out->phase.rate, out->stats.commits, out->stats.events, out->stats.batches,
	          out->phase.seconds);
	if (out->stats.commits != target || out->stats.events != target || out->stats.poison != 0 ||
	    out->stats.failures != 0) {
		bench_say("rebuild: expected %" PRIu64
		          " commits and events, no poison, no failure; got %" PRIu64 ", %" PRIu64 ", %" PRIu64
		          ", %" PRIu64,
		          target, out->stats.commits, out->stats.events, out->stats.poison,
		          out->stats.failures);
		rc = ORN_EINTERNAL;
		goto fail;
	}
	rc = check_inventory(o, m.inventory);
fail:
	if (rc != ORN_OK)
		bench_say("rebuild failed: %s", orn_strerror(rc));
	proj_runner_stop(runner);
	if (models_open)
		proj_models_close(&m);
	proj_env_close(env);
	bench_rmrf(dir);
	return rc;
}

/* ---- the report ------------------------------------------------------------------ */

typedef struct report {
	bench_machine m;
	char date[64];
	char command[1024];
	char commit[64];
	const bench_opts *o;
	fill_result fill;
	int rounds; /* completed */
	phase_result raw[MAX_ROUNDS];
	rebuild_result rebuild[MAX_ROUNDS];
} report;

typedef struct summary {
	bench_spread raw, rebuild, ratio;
	cpu_use raw_cpu, rebuild_cpu; /* means over the rounds */
	double ratio_of_medians;
} summary;

static summary summarize(const report *r)
{
	double raw[MAX_ROUNDS], rebuild[MAX_ROUNDS], ratio[MAX_ROUNDS];
	summary s;
	int n = r->rounds;
	memset(&s, 0, sizeof s);
	for (int i = 0; i < n; i++) {
		raw[i] = r->raw[i].rate;
		rebuild[i] = r->rebuild[i].phase.rate;
		ratio[i] = raw[i] > 0 ? rebuild[i] / raw[i] : 0;
		s.raw_cpu.nats += r->raw[i].cpu.nats / n;
		s.raw_cpu.bench += r->raw[i].cpu.bench / n;
		s.rebuild_cpu.nats += r->rebuild[i].phase.cpu.nats / n;
		s.rebuild_cpu.bench += r->rebuild[i].phase.cpu.bench / n;
	}
	s.raw = bench_spread_of(raw, n);
	s.rebuild = bench_spread_of(rebuild, n);
	s.ratio = bench_spread_of(ratio, n);
	s.ratio_of_medians = s.raw.median > 0 ? s.rebuild.median / s.raw.median : 0;
	return s;
}

static void print_verdict(FILE *f, const summary *s, const char *bold)
{
	fprintf(f, "%srebuild / raw = %.1f %% (target >= 50 %%): %s%s\n", bold, 100.0 * s->ratio_of_medians,
	        s->ratio_of_medians >= 0.5 ? "met" : "NOT met", bold);
}

static void print_text(FILE *f, const report *r, const summary *s)
{
	const bench_opts *o = r->o;
	fprintf(f, "\n==================== bench_rebuild ====================\n");
	fprintf(f, "date      %s\n", r->date);
	fprintf(f, "command   %s\n", r->command);
	fprintf(f, "machine   %ld CPU (%s), %ld MiB RAM, %s; temp dir on %s\n", r->m.nproc, r->m.cpu,
	        r->m.mem_mib, r->m.kernel, r->m.store_fs);
	fprintf(f, "software  nats-server %s, cnats %s\n", r->m.nats_server, r->m.cnats);
	fprintf(f,
	        "stream    %ld commits, one event each: %d StockItemCreated (%zu B), %ld ProductCreated%s, "
	        "%ld StockReserved (%zu B)\n",
	        o->events, o->items, r->fill.stock_created_len, o->products, o->products > 0 ? "" : " (none)",
	        o->events - o->items - o->products, r->fill.reserved_len);
	fprintf(f, "fill      %.0f commits/s (async, MaxPending %ld), %.1f s; last sequence %" PRIu64 "\n",
	        r->fill.rate, o->pending, r->fill.seconds, r->fill.last_seq);
	fprintf(f, "runner    batch_max %ld, %d read models\n\n", o->batch, PROJ_MODEL_COUNT);
	fprintf(f, "%-6s %12s %8s %10s   %12s %8s %10s %8s %9s   %7s\n", "round", "raw msg/s", "raw s",
	        "CPU n/b %", "rebuild ev/s", "s", "CPU n/b %", "batches", "map MiB", "ratio");
	for (int i = 0; i < r->rounds; i++) {
		const phase_result *raw = &r->raw[i];
		const rebuild_result *rb = &r->rebuild[i];
		char raw_cpu[24], rb_cpu[24];
		snprintf(raw_cpu, sizeof raw_cpu, "%.0f/%.0f", raw->cpu.nats, raw->cpu.bench);
		snprintf(rb_cpu, sizeof rb_cpu, "%.0f/%.0f", rb->phase.cpu.nats, rb->phase.cpu.bench);
		fprintf(f, "%-6d %12.0f %8.2f %10s   %12.0f %8.2f %10s %8" PRIu64 " %9.1f   %6.1f%%\n", i + 1,
		        raw->rate, raw->seconds, raw_cpu, rb->phase.rate, rb->phase.seconds, rb_cpu,
		        rb->stats.batches, (double)rb->env.used_bytes / 1048576.0,
		        raw->rate > 0 ? 100.0 * rb->phase.rate / raw->rate : 0);
	}
	fprintf(f, "\nraw      median %.0f msg/s (%.0f – %.0f), CPU %% of a core nats %.0f / bench %.0f\n",
	        s->raw.median, s->raw.min, s->raw.max, s->raw_cpu.nats, s->raw_cpu.bench);
	fprintf(f, "rebuild  median %.0f events/s (%.0f – %.0f), CPU %% of a core nats %.0f / bench %.0f\n",
	        s->rebuild.median, s->rebuild.min, s->rebuild.max, s->rebuild_cpu.nats, s->rebuild_cpu.bench);
	fprintf(f, "ratio    median / median %.1f %%; median of per-round ratios %.1f %% (%.1f – %.1f)\n\n",
	        100 * s->ratio_of_medians, 100 * s->ratio.median, 100 * s->ratio.min, 100 * s->ratio.max);
	print_verdict(f, s, "");
}

static void print_markdown(FILE *f, const report *r, const summary *s)
{
	const bench_opts *o = r->o;
	fprintf(f, "### %s, commit %s\n\n", r->date, r->commit);
	fprintf(f, "- command: `%s`\n", r->command);
	fprintf(f, "- machine: %ld CPU (%s), %ld MiB RAM, %s; store and LMDB on %s\n", r->m.nproc, r->m.cpu,
	        r->m.mem_mib, r->m.kernel, r->m.store_fs);
	fprintf(f, "- software: nats-server %s, cnats %s; server and bench on the same machine\n",
	        r->m.nats_server, r->m.cnats);
	fprintf(f,
	        "- stream: %ld commits of one event (%d StockItemCreated, %ld ProductCreated, %ld "
	        "StockReserved of %zu bytes over %d items); runner batch_max %ld; %d rounds, interleaved\n\n",
	        o->events, o->items, o->products, o->events - o->items - o->products, r->fill.reserved_len,
	        o->items, o->batch, r->rounds);
	fprintf(f, "| round | raw ordered consumer | rebuild (all read models) | rebuild / raw | CPU %% of a "
	           "core "
	           "raw (nats / bench) | CPU %% rebuild (nats / bench) |\n");
	fprintf(f, "|---:|---:|---:|---:|---|---|\n");
	for (int i = 0; i < r->rounds; i++)
		fprintf(f, "| %d | %.0f msg/s | %.0f events/s | %.1f %% | %.0f / %.0f | %.0f / %.0f |\n",
		        i + 1, r->raw[i].rate, r->rebuild[i].phase.rate,
		        r->raw[i].rate > 0 ? 100.0 * r->rebuild[i].phase.rate / r->raw[i].rate : 0,
		        r->raw[i].cpu.nats, r->raw[i].cpu.bench, r->rebuild[i].phase.cpu.nats,
		        r->rebuild[i].phase.cpu.bench);
	fprintf(f,
	        "| **median** | **%.0f** | **%.0f** | **%.1f %%** (per-round median %.1f %%) | %.0f / %.0f | "
	        "%.0f / %.0f |\n\n",
	        s->raw.median, s->rebuild.median, 100 * s->ratio_of_medians, 100 * s->ratio.median,
	        s->raw_cpu.nats, s->raw_cpu.bench, s->rebuild_cpu.nats, s->rebuild_cpu.bench);
	print_verdict(f, s, "**");
}

static void print_report(FILE *f, const report *r)
{
	summary s = summarize(r);
	print_text(f, r, &s);
	fprintf(f, "\n----- markdown for bench/RESULTS.md -----\n");
	print_markdown(f, r, &s);
	fprintf(f, "----- end of markdown -----\n");
}

/* ---- options --------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_rebuild [options]\n\n"
	           "  --events N     commits in the stream, one event each (default 300000)\n"
	           "  --items N      stock items; reservations go round-robin over them (default 1000)\n"
	           "  --products N   ProductCreated commits among the events, for the catalog (default 0)\n"
	           "  --rounds N     interleaved raw / rebuild rounds, at most 20 (default 3)\n"
	           "  --batch N      the runner's batch_max, events per LMDB transaction (default 2048)\n"
	           "  --pending N    cnats MaxPending of the fill's async publishes (default 65536)\n\n"
	           "Starts its own nats-server, fills ORION_EVT, then times a raw ordered consumer\n"
	           "against a rebuild of every read model; prints a table and a markdown block for\n"
	           "bench/RESULTS.md. BENCH_COMMAND and BENCH_COMMIT (set by scripts/bench-rebuild)\n"
	           "are the command and commit shown in the report.\n");
}

/* -1 to run, else the exit status. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
	long v = 0;
	o->events = 300000;
	o->items = 1000;
	o->products = 0;
	o->rounds = 3;
	o->batch = 2048;
	o->pending = 65536;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (val == NULL) {
			bench_say("option %s needs a value (see --help)", a);
			return 2;
		} else if (strcmp(a, "--events") == 0 && bench_parse_long(val, 1, 100000000, &v)) {
			o->events = v;
		} else if (strcmp(a, "--items") == 0 && bench_parse_long(val, 1, 9999, &v)) {
			o->items = (int)v;
		} else if (strcmp(a, "--products") == 0 && bench_parse_long(val, 0, 999999, &v)) {
			o->products = v;
		} else if (strcmp(a, "--rounds") == 0 && bench_parse_long(val, 1, MAX_ROUNDS, &v)) {
			o->rounds = (int)v;
		} else if (strcmp(a, "--batch") == 0 && bench_parse_long(val, 1, 1000000, &v)) {
			o->batch = v;
		} else if (strcmp(a, "--pending") == 0 && bench_parse_long(val, 1, 10000000, &v)) {
			o->pending = v;
		} else {
			bench_say("unknown option or bad value: %s %s (see --help)", a, val);
			return 2;
		}
		i++;
	}
	if (o->events <= o->items + o->products) {
		bench_say("--events must exceed --items + --products (there must be reservations)");
		return 2;
	}
	return -1;
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static bench_opts o;
	static report rep;
	int status = parse_args(argc, argv, &o);
	if (status >= 0)
		return status;
	status = 1;

	bench_catch_signals();
	log_set_level(LOG_WARN);

	rep.o = &o;
	bench_command_line(argc, argv, rep.command, sizeof rep.command);
	const char *commit = getenv("BENCH_COMMIT");
	snprintf(rep.commit, sizeof rep.commit, "%s", commit != NULL && commit[0] ? commit : "unknown");
	time_t wall = time(NULL);
	struct tm tm;
	gmtime_r(&wall, &tm);
	strftime(rep.date, sizeof rep.date, "%Y-%m-%d %H:%M UTC", &tm);

	const char *tmp = getenv("TMPDIR");
	char dir[512], store_dir[600], lmdb_dir[600];
	snprintf(dir, sizeof dir, "%s/orion-bench-rebuild-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		bench_say("mkdtemp(%s): %s", dir, strerror(errno));
		return 1;
	}
	snprintf(store_dir, sizeof store_dir, "%s/nats", dir);
	snprintf(lmdb_dir, sizeof lmdb_dir, "%s/lmdb", dir);
	bench_machine_facts(&rep.m, dir);

	natsd *server = NULL;
	es_store *store = NULL;
	natsd_options no;
	natsd_options_init(&no);
	no.store_dir = store_dir;
	if (natsd_start(&no, &server) != ORN_OK) {
		bench_say("cannot start nats-server");
		goto cleanup;
	}
	nats_pid = natsd_pid(server);
	bench_say("nats-server %s at %s, store %s (%s)", rep.m.nats_server, natsd_url(server), store_dir,
	          rep.m.store_fs);
	es_options eo;
	es_options_init(&eo);
	eo.url = natsd_url(server);
	eo.name = "bench-rebuild";
	eo.timeout_ms = 10000;
	if (es_store_open(&eo, &store) != ORN_OK) {
		bench_say("cannot open the event store at %s", natsd_url(server));
		goto cleanup;
	}

	if (fill(store, &o, &rep.fill) != ORN_OK)
		goto cleanup;

	for (int r = 0; r < o.rounds && !bench_interrupted; r++) {
		bench_say("round %d of %d", r + 1, o.rounds);
		if (raw_phase(store, &o, &rep.raw[r]) != ORN_OK ||
		    rebuild_phase(store, &o, lmdb_dir, &rep.rebuild[r]) != ORN_OK)
			goto cleanup;
		rep.rounds = r + 1;
	}
	if (!bench_interrupted)
		status = 0;

cleanup:
	es_store_close(store);
	natsd_stop(server);
	bench_rmrf(dir);
	if (status == 0)
		print_report(stdout, &rep);
	else
		bench_say("benchmark failed%s", bench_interrupted ? " (interrupted)" : "");
	nats_Close();
	return status;
}
