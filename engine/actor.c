/* actor.c — the actor runtime (see actor.h).
 *
 * Threads: cnats delivers commands on the subscription's thread, and append
 * acknowledgements and confirmation answers on the store connection's
 * thread; both only post work into a shard's mailbox. Everything that touches
 * aggregate state happens on the shard's own thread, so a state is never
 * shared between threads.
 *
 * One command's path (ADR 015): decide on `at` → publish the commit →
 * confirm it, then evolve and reply, or reload and decide again. When the
 * aggregate has been watched since at.last_seq, by the log's echo: a watch
 * of the kind's commits (headers only, posted to the shards) shows the
 * commit itself, known by its Nats-Msg-Id, and every commit before it, so
 * the commit goes out asking for no acknowledgement while no other writer's
 * commit of the aggregate has been echoed (then it asks, as before). When
 * one is echoed after at.last_seq first (a refusal or a duplicate would look
 * like that, and no echo of its own may ever come) the same message is
 * published once more asking for it, without ExpectLastSubjectSeq (ask_ack).
 * Otherwise on the acknowledgement ("<inbox>.a.<token>.<id>") by asking for
 * the subject's next commits after at.last_seq (answers to
 * "<inbox>.c.<token>.<id>"), until the commit is confirmed valid or found
 * void. An append whose outcome stays unknown is resolved by looking for the
 * command's commit after at.version before anything is decided again. */
#include "actor.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "evstore-internal.h"
#include "hashmap.h"
#include "idem.h"
#include "log.h"
#include "metrics.h"

typedef enum work_kind { WORK_COMMAND, WORK_APPENDED, WORK_CONFIRMED, WORK_ECHO } work_kind;

/* One item of a shard's mailbox. */
typedef struct work {
	work_kind kind;
	struct work *next;
	natsMsg *msg; /* COMMAND: the request; CONFIRMED: the answer; owned by the item */
	char id[ES_ID_MAX + 1];
	int64_t received_ns; /* COMMAND: when it arrived, where its budget starts */
	/* APPENDED and CONFIRMED */
	uint64_t token; /* which append this belongs to */
	orn_rc rc;
	es_append_result result;
	/* ECHO: a commit of id (seq 0 and no id: the watch has stopped) */
	uint64_t seq;
	bool chained;
	uint64_t prev;
	char msg_id[ES_MSG_ID_MAX];
} work;

typedef enum step { IDLE, APPENDING, CONFIRMING, AWAITING_ECHO } step;

/* A commit of an aggregate as its echo told it. */
typedef struct echo {
	uint64_t seq;
	bool chained;
	uint64_t prev;
} echo;

#define ECHO_MAX 16 /* echoes kept per aggregate past its last commit */

/* One live aggregate in a shard's cache. */
typedef struct entry {
	char id[ES_ID_MAX + 1];
	void *state;
	idem_ledger *ledger;
	bool loaded;
	es_position at;
	unsigned since_snapshot;
	/* the command being processed, if any */
	bool busy;
	natsMsg *request;
	env_envelope cmd; /* payload points into request's data */
	int64_t deadline_ns;
	unsigned attempts;
	mp_writer *commit;
	es_position base;       /* where the commit in flight was decided */
	es_append_result acked; /* its acknowledgement */
	es_confirm confirm;     /* and its confirmation */
	step phase;
	/* The log's echo: every commit of the aggregate at or after watched_from
	 * (0: not watched) reaches the entry; those after at.last_seq wait here,
	 * in order. echo_lost: more than ECHO_MAX came (watched no more). */
	uint64_t watched_from;
	echo *echoes; /* grown up to ECHO_MAX */
	unsigned echo_count, echo_cap;
	bool echo_lost;
	/* the flight is confirmed by echo: its commit's Nats-Msg-Id; asked:
	 * its acknowledgement is on its way (the commit was published asking
	 * for it, or again by ask_ack). contended: another writer's commit of
	 * the aggregate was echoed since the entry was made, so its appends ask
	 * for their acknowledgement (a refusal is told at once, no resend) */
	bool by_echo, asked, contended;
	char msg_id[ES_MSG_ID_MAX];
	/* the append in flight: its token, deadline, place in the flight list */
	uint64_t token;
	int64_t flight_deadline_ns;
	bool in_flight;
	struct entry *flight_prev, *flight_next;
	/* commands waiting for this aggregate, FIFO */
	work *waiting_head, *waiting_tail;
	size_t waiting;
	struct entry *lru_prev, *lru_next;
} entry;

typedef struct shard {
	struct act_runtime *rt;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	work *head, *tail;
	size_t posted;
	bool stopping;
	work *spare; /* recycled work items (under lock): no malloc per command */
	size_t spare_count;
	atomic_size_t commands; /* commands queued, waiting or running: what the bound counts */
	/* owned by the shard thread */
	hmap *entries;
	entry *lru_head, *lru_tail;       /* most recently used first */
	entry *flight_head, *flight_tail; /* appends in flight, oldest (first deadline) first */
	size_t live;
	size_t capacity;
	size_t busy_count;
	uint64_t echo_pos; /* the last echo this shard took: later ones are still to come */
	act_decision *decision;
	mp_writer *scratch;
	env_envelope *events; /* ENV_MAX_EVENTS, for decoding commits */
} shard;

struct act_runtime {
	es_store *store;
	natsConnection *nc; /* commands in, replies out: its own socket, apart from appends */
	const act_kind *kind;
	act_options opt;
	natsSubscription *sub;
	/* Appends are plain publishes whose JetStream acks, and the answers of
	 * their confirmations, come back to "<inbox>.<a|c>.<token>.<id>" on the
	 * store's connection. */
	natsInbox *inbox;
	size_t inbox_len;
	natsSubscription *inbox_sub;
	atomic_uint_fast64_t next_token;
	shard *shards;
	unsigned shard_count;
	size_t cmd_prefix_len;
	/* The watch of the kind's commits (es_watch_start): from watch_from on,
	 * while watch_ok. done under watch_lock once it has stopped. */
	es_follow *watch;
	uint64_t watch_from;
	atomic_bool watch_ok;
	pthread_mutex_t watch_lock;
	pthread_cond_t watch_stopped;
	bool watch_done;
	atomic_uint_fast64_t commands, appends, conflicts, voids, expired, overloaded, rehydrations,
	        snapshots, failures, by_echo, by_read, acks_asked, snapshot_lookups;
	atomic_bool stopping;  /* no retries once stopping: shutdown stays bounded */
	atomic_uint lost_acks; /* fault tests: acknowledgements still to ignore */
	bool loads_whole;      /* a load reads every commit stored before it (no replica to lag) */
};

void act_options_init(act_options *o)
{
	o->shards = 4;
	o->cache_capacity = 100000;
	o->snapshot_every = 100;
	o->max_attempts = 8;
	o->mailbox_capacity = 16384;
	o->aggregate_queue = 4096;
	o->append_timeout_ms = 5000;
	o->default_ttl_ms = 30000;
	o->fault_lost_acks = 0;
	o->fault_lagging_loads = false;
	o->confirm_by_read = false;
}

void act_options_apply(act_options *o, const act_options *set)
{
	o->shards = set->shards;
	o->cache_capacity = set->cache_capacity;
	o->snapshot_every = set->snapshot_every;
	o->confirm_by_read = set->confirm_by_read;
}

static shard *shard_of(act_runtime *rt, const char *id)
{
	return &rt->shards[hmap_hash(id) % rt->shard_count];
}

#define SPARE_MAX 4096

/* Takes a recycled work item of sh, or a new one; NULL on allocation failure. */
static work *work_new(shard *sh)
{
	pthread_mutex_lock(&sh->lock);
	work *w = sh->spare;
	if (w != NULL) {
		sh->spare = w->next;
		sh->spare_count--;
	}
	pthread_mutex_unlock(&sh->lock);
	if (w == NULL)
		w = malloc(sizeof *w);
	return w;
}

/* Gives w back to sh's spares (or frees it past SPARE_MAX). */
static void work_recycle(shard *sh, work *w)
{
	pthread_mutex_lock(&sh->lock);
	if (sh->spare_count < SPARE_MAX) {
		w->next = sh->spare;
		sh->spare = w;
		sh->spare_count++;
		w = NULL;
	}
	pthread_mutex_unlock(&sh->lock);
	free(w);
}

/* Copies a subject's last token (the aggregate id) into w->id. */
static void set_id(work *w, const char *subject, size_t prefix_len)
{
	size_t n = strlen(subject);
	n = n > prefix_len ? n - prefix_len : 0;
	if (n > ES_ID_MAX)
		n = ES_ID_MAX; /* es_id_valid refuses it anyway */
	memcpy(w->id, subject + (n > 0 ? prefix_len : 0), n);
	w->id[n] = '\0';
}

/* Queues w on shard sh. A command is refused (false) when the shard holds
 * mailbox_capacity commands or is stopping; other work always goes in. */
static bool post(act_runtime *rt, shard *sh, work *w)
{
	bool command = w->kind == WORK_COMMAND;
	pthread_mutex_lock(&sh->lock);
	if (command && (sh->stopping || atomic_load(&sh->commands) >= rt->opt.mailbox_capacity)) {
		pthread_mutex_unlock(&sh->lock);
		return false;
	}
	if (command)
		atomic_fetch_add(&sh->commands, 1);
	w->next = NULL;
	if (sh->tail != NULL)
		sh->tail->next = w;
	else
		sh->head = w;
	sh->tail = w;
	/* A shard that is busy draining its batch needs no wake-up call. */
	if (++sh->posted == 1)
		pthread_cond_signal(&sh->wake);
	pthread_mutex_unlock(&sh->lock);
	return true;
}

/* Publishes a reply to request (if it asked for one). */
static void send_reply(act_runtime *rt, natsMsg *request, const bus_reply *r, mp_writer *buf)
{
	const char *to = natsMsg_GetReply(request);
	if (to == NULL || to[0] == '\0')
		return;
	mp_writer_reset(buf);
	if (bus_reply_encode(buf, r) != ORN_OK)
		return;
	natsConnection_Publish(rt->nc, to, mp_writer_data(buf), (int)mp_writer_size(buf));
}

/* orion_commands_refused_total{kind, reason}: commands answered without a
 * decision because of a bound (reason NULL creates the series at 0). */
static void count_refusal(act_runtime *rt, const char *reason)
{
	static const char *const reasons[] = {"expired", "overloaded_shard", "overloaded_aggregate",
	                                      "too_many_keys"};
	orn_metrics *m = orn_metrics_global();
	for (size_t i = 0; i < ORN_ARRAY_LEN(reasons); i++) {
		if (reason != NULL && strcmp(reason, reasons[i]) != 0)
			continue;
		const char *const labels[] = {"kind", rt->kind->aggregate, "reason", reasons[i], NULL};
		orn_metrics_counter_add(m, "orion_commands_refused_total",
		                        "Commands answered without a decision: past their deadline, or a "
		                        "queue or ledger full.",
		                        labels, reason != NULL ? 1 : 0);
	}
}

static void reply_simple(act_runtime *rt, natsMsg *request, bus_outcome outcome, const char *code,
                         const char *detail, mp_writer *buf)
{
	bus_reply r;
	memset(&r, 0, sizeof r);
	r.outcome = outcome;
	snprintf(r.code, sizeof r.code, "%s", code);
	snprintf(r.detail, sizeof r.detail, "%s", detail ? detail : "");
	r.attempts = 1;
	if (outcome == BUS_FAILED)
		atomic_fetch_add(&rt->failures, 1);
	atomic_fetch_add(&rt->commands, 1);
	send_reply(rt, request, &r, buf);
}

/* Answers "overloaded" to a command no queue takes, and drops it. */
static void refuse_overloaded(act_runtime *rt, natsMsg *msg, const char *scope, mp_writer *buf)
{
	mp_writer *own = buf == NULL ? mp_writer_create() : NULL;
	atomic_fetch_add(&rt->overloaded, 1);
	count_refusal(rt, scope);
	if (buf != NULL || own != NULL)
		reply_simple(rt, msg, BUS_FAILED, "overloaded", "too many commands are waiting; retry later",
		             buf != NULL ? buf : own);
	mp_writer_destroy(own);
	natsMsg_Destroy(msg);
}

/* cnats subscription callback: route the command to its shard. */
static void on_command(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	act_runtime *rt = closure;
	work probe;
	set_id(&probe, natsMsg_GetSubject(msg), rt->cmd_prefix_len);
	if (!es_id_valid(probe.id)) {
		mp_writer *buf = mp_writer_create();
		if (buf != NULL)
			reply_simple(rt, msg, BUS_FAILED, "invalid", "invalid aggregate id", buf);
		mp_writer_destroy(buf);
		natsMsg_Destroy(msg);
		return;
	}
	shard *sh = shard_of(rt, probe.id);
	work *w = work_new(sh);
	if (w != NULL) {
		w->kind = WORK_COMMAND;
		w->msg = msg;
		w->received_ns = orn_monotonic_ns();
		memcpy(w->id, probe.id, sizeof w->id);
		if (post(rt, sh, w))
			return;
		work_recycle(sh, w);
	}
	refuse_overloaded(rt, msg, "overloaded_shard", NULL);
}

/* cnats callback for "<inbox>.<a|c>.<token>.<id>": an append's ack or a
 * confirmation's answer, routed to the aggregate's shard. */
static void on_inbox(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	act_runtime *rt = closure;
	const char *subject = natsMsg_GetSubject(msg);
	char *end = NULL;
	uint64_t token = 0;
	work probe;
	size_t len = strlen(subject);
	char what = len > rt->inbox_len + 2 ? subject[rt->inbox_len + 1] : '\0';
	if ((what == 'a' || what == 'c') && subject[rt->inbox_len + 2] == '.')
		token = strtoull(subject + rt->inbox_len + 3, &end, 10);
	if (token == 0 || end == NULL || *end != '.') {
		natsMsg_Destroy(msg);
		return;
	}
	set_id(&probe, end + 1, 0);
	shard *sh = shard_of(rt, probe.id);
	work *w = work_new(sh);
	if (w == NULL) {
		log_error("append outcome lost: out of memory", "subject", subject);
		natsMsg_Destroy(msg); /* the append times out and is resolved */
		return;
	}
	w->token = token;
	memcpy(w->id, probe.id, sizeof w->id);
	if (what != 'c' && atomic_load(&rt->lost_acks) > 0) {
		atomic_fetch_sub(&rt->lost_acks, 1); /* fault test: as if lost on the way */
		natsMsg_Destroy(msg);
		work_recycle(sh, w);
		return;
	}
	if (what == 'a') {
		w->kind = WORK_APPENDED;
		w->msg = NULL;
		w->rc = es_parse_ack(msg, &w->result);
		natsMsg_Destroy(msg);
	} else {
		w->kind = WORK_CONFIRMED;
		w->msg = msg;
	}
	post(rt, sh, w);
}

/* es_watch_fn: a commit of the kind, to the shard of its aggregate. */
static void on_echo(void *closure, uint64_t seq, const char *id, bool chained, uint64_t prev,
                    const char *msg_id)
{
	act_runtime *rt = closure;
	work probe;
	set_id(&probe, id, 0);
	if (!es_id_valid(probe.id))
		return; /* no actor serves it */
	shard *sh = shard_of(rt, probe.id);
	work *w = work_new(sh);
	if (w == NULL) {
		/* An echo lost: nothing the watch says is complete any more. */
		log_error("echo lost: out of memory; confirming by reading from now on", "id", probe.id);
		atomic_store(&rt->watch_ok, false);
		return;
	}
	w->kind = WORK_ECHO;
	w->msg = NULL;
	memcpy(w->id, probe.id, sizeof w->id);
	w->seq = seq;
	w->chained = chained;
	w->prev = prev;
	size_t len = strnlen(msg_id, sizeof w->msg_id - 1);
	memcpy(w->msg_id, msg_id, len); /* no snprintf per echo: this is the hot path */
	w->msg_id[len] = '\0';
	post(rt, sh, w);
}

/* es_follow_done_fn of the watch: it delivers no more. Flights awaiting an
 * echo are confirmed by reading instead (an empty echo tells each shard). */
static void on_watch_done(void *closure)
{
	act_runtime *rt = closure;
	atomic_store(&rt->watch_ok, false);
	for (unsigned i = 0; i < rt->shard_count; i++) {
		shard *sh = &rt->shards[i];
		work *w = work_new(sh);
		if (w == NULL)
			continue; /* its flights fall back at their deadline */
		memset(w, 0, sizeof *w);
		w->kind = WORK_ECHO;
		post(rt, sh, w);
	}
	pthread_mutex_lock(&rt->watch_lock);
	rt->watch_done = true;
	pthread_cond_broadcast(&rt->watch_stopped);
	pthread_mutex_unlock(&rt->watch_lock);
}

/* ---- cache ---------------------------------------------------------------- */

static void lru_unlink(shard *sh, entry *e)
{
	if (e->lru_prev != NULL)
		e->lru_prev->lru_next = e->lru_next;
	else
		sh->lru_head = e->lru_next;
	if (e->lru_next != NULL)
		e->lru_next->lru_prev = e->lru_prev;
	else
		sh->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(shard *sh, entry *e)
{
	e->lru_next = sh->lru_head;
	e->lru_prev = NULL;
	if (sh->lru_head != NULL)
		sh->lru_head->lru_prev = e;
	sh->lru_head = e;
	if (sh->lru_tail == NULL)
		sh->lru_tail = e;
}

static void unload(shard *sh, entry *e)
{
	if (e->loaded)
		sh->rt->kind->dispose(e->state);
	e->loaded = false;
	e->at.version = e->at.last_seq = 0;
	e->since_snapshot = 0;
	e->watched_from = 0;
	e->echo_count = 0;
	e->echo_lost = false;
	e->by_echo = false;
	idem_clear(e->ledger);
}

static void entry_free(shard *sh, entry *e)
{
	unload(sh, e);
	mp_writer_destroy(e->commit);
	idem_destroy(e->ledger);
	free(e->echoes);
	free(e->state);
	free(e);
}

/* Drops least recently used idle entries while over capacity. */
static void evict(shard *sh)
{
	entry *e = sh->lru_tail;
	while (sh->live > sh->capacity && e != NULL) {
		entry *prev = e->lru_prev;
		if (!e->busy && e->waiting_head == NULL) {
			lru_unlink(sh, e);
			hmap_remove(sh->entries, e->id);
			entry_free(sh, e);
			sh->live--;
		}
		e = prev;
	}
}

static entry *entry_get(shard *sh, const char *id)
{
	entry *e = hmap_get(sh->entries, id);
	if (e != NULL) {
		lru_unlink(sh, e);
		lru_push_front(sh, e);
		return e;
	}
	e = calloc(1, sizeof *e);
	if (e == NULL)
		return NULL;
	e->state = calloc(1, sh->rt->kind->state_size);
	e->commit = mp_writer_create();
	e->ledger = idem_create();
	if (e->state == NULL || e->commit == NULL || e->ledger == NULL ||
	    hmap_put(sh->entries, id, e) != ORN_OK) {
		mp_writer_destroy(e->commit);
		idem_destroy(e->ledger);
		free(e->state);
		free(e);
		return NULL;
	}
	snprintf(e->id, sizeof e->id, "%s", id);
	lru_push_front(sh, e);
	sh->live++;
	return e;
}

/* ---- loading -------------------------------------------------------------- */

typedef struct replay_ctx {
	const act_kind *kind;
	entry *e;
	unsigned events;
} replay_ctx;

/* Applies one valid event: the kind's evolve, and the ledger of commands
 * answered (idem.h). */
static orn_rc evolve_one(void *closure, uint64_t seq, const char *subject, const env_envelope *ev)
{
	replay_ctx *ctx = closure;
	ctx->events++;
	if (ev->causation[0] != '\0' &&
	    idem_record(ctx->e->ledger, ev->causation, ev->request, seq, ev->time_ms) == ORN_ENOMEM)
		return ORN_ENOMEM;
	return ctx->kind->evolve(ctx->e->state, ev);
}

/* The snapshot's bytes: [kind state (bin), ledger]. */
static orn_rc snapshot_encode(shard *sh, entry *e, mp_writer *w)
{
	mp_writer *state = mp_writer_create();
	orn_rc rc = state == NULL ? ORN_ENOMEM : sh->rt->kind->snapshot(e->state, state);
	if (rc == ORN_OK) {
		mp_write_array(w, 2);
		mp_write_bin(w, mp_writer_data(state), mp_writer_size(state));
		rc = idem_encode(e->ledger, w);
	}
	mp_writer_destroy(state);
	return rc;
}

static orn_rc snapshot_restore(shard *sh, entry *e, const uint8_t *buf, size_t len)
{
	mp_reader r;
	uint32_t count = 0, state_len = 0;
	const uint8_t *state = NULL;
	mp_reader_init(&r, buf, len);
	if (mp_read_array(&r, &count) != ORN_OK || count != 2 ||
	    mp_read_bin(&r, &state, &state_len) != ORN_OK ||
	    sh->rt->kind->restore(e->state, state, state_len) != ORN_OK)
		return ORN_EDECODE;
	return idem_decode(e->ledger, &r) == ORN_OK && mp_reader_remaining(&r) == 0 ? ORN_OK : ORN_EDECODE;
}

/* Restores e from its aggregate's latest snapshot, if there is a usable one;
 * *version is where it stands (0: none, e left as initialised). */
static void restore_latest(shard *sh, entry *e, uint64_t *version)
{
	act_runtime *rt = sh->rt;
	const act_kind *kind = rt->kind;
	uint8_t *snap = NULL;
	size_t snap_len = 0;
	atomic_fetch_add(&rt->snapshot_lookups, 1);
	orn_rc rc = es_snapshot_load(rt->store, kind->aggregate, e->id, kind->snapshot_schema, version, &snap,
	                             &snap_len);
	if (rc == ORN_OK && snapshot_restore(sh, e, snap, snap_len) != ORN_OK) {
		log_warn("unusable snapshot, replaying all events", "aggregate", kind->aggregate, "id",
		         e->id);
		kind->dispose(e->state);
		kind->init(e->state);
		idem_clear(e->ledger);
		*version = 0;
	} else if (rc != ORN_OK) {
		*version = 0;
	}
	free(snap);
}

/* Loads e's state from the latest snapshot plus the events after it. An
 * aggregate without a commit has no snapshot either: for a kind with
 * snapshots one read of its last commit comes first (es_head: the stream's
 * index of subjects answers it at once; a read of a subject's first commit
 * walks the stream's blocks from its start on nats-server 2.9), and without
 * replicas that read is the whole load of a new aggregate (a replica may lag:
 * there the events are read to the leader's end all the same). An aggregate
 * with commits pays that read on top, once per load: on the order path those
 * loads are the new carts, orders and holds, the others stay in memory. */
static orn_rc rehydrate(shard *sh, entry *e)
{
	act_runtime *rt = sh->rt;
	const act_kind *kind = rt->kind;
	uint64_t version = 0, head = 1;
	kind->init(e->state);
	idem_clear(e->ledger);
	e->loaded = true;
	atomic_fetch_add(&rt->rehydrations, 1);
	if (kind->restore != NULL && es_head(rt->store, kind->aggregate, e->id, &head) != ORN_OK)
		head = 1; /* unknown: as if it had commits */
	if (head != 0 && kind->restore != NULL)
		restore_latest(sh, e, &version);
	replay_ctx ctx = {kind, e, 0};
	orn_rc rc = ORN_OK;
	if (head == 0 && rt->loads_whole)
		e->at = (es_position){0, 0};
	else
		rc = es_load(rt->store, kind->aggregate, e->id, version, evolve_one, &ctx, &e->at);
	if (rc != ORN_OK) {
		unload(sh, e);
		return rc;
	}
	e->since_snapshot = ctx.events; /* a long tail earns a snapshot soon */
	/* Echoes the shard has not taken yet are still to come: from here on
	 * every commit of the aggregate reaches the entry. And on a stream
	 * without replicas the load read every commit stored before it, so
	 * every one the shard has taken the echo of: none of the aggregate lies
	 * between its last commit and the next echo (ADR 015 §3). A replica may
	 * lag behind the echo; there the first append after a load is confirmed
	 * by reading. */
	if (atomic_load(&rt->watch_ok)) {
		e->watched_from = sh->echo_pos + 1 > rt->watch_from ? sh->echo_pos + 1 : rt->watch_from;
		if (rt->loads_whole && e->at.last_seq + 1 < e->watched_from)
			e->watched_from = e->at.last_seq + 1;
	}
	return ORN_OK;
}

/* ---- appends in flight ---------------------------------------------------- */

static void flight_unlink(shard *sh, entry *e)
{
	if (!e->in_flight)
		return;
	if (e->flight_prev != NULL)
		e->flight_prev->flight_next = e->flight_next;
	else
		sh->flight_head = e->flight_next;
	if (e->flight_next != NULL)
		e->flight_next->flight_prev = e->flight_prev;
	else
		sh->flight_tail = e->flight_prev;
	e->flight_prev = e->flight_next = NULL;
	e->in_flight = false;
}

/* Deadlines are send time + one constant, so appending keeps the list sorted. */
static void flight_push(shard *sh, entry *e)
{
	flight_unlink(sh, e);
	e->flight_deadline_ns = orn_monotonic_ns() + (int64_t)sh->rt->opt.append_timeout_ms * 1000000;
	e->flight_prev = sh->flight_tail;
	e->flight_next = NULL;
	if (sh->flight_tail != NULL)
		sh->flight_tail->flight_next = e;
	else
		sh->flight_head = e;
	sh->flight_tail = e;
	e->in_flight = true;
}

/* ---- processing ----------------------------------------------------------- */

static void finish(shard *sh, entry *e)
{
	natsMsg_Destroy(e->request);
	e->request = NULL;
	e->busy = false;
	e->phase = IDLE;
	sh->busy_count--;
	atomic_fetch_sub(&sh->commands, 1);
	log_set_correlation(NULL);
}

/* The debug line of an answer. */
static void log_answer(const char *aggregate, const entry *e, bus_outcome outcome, const char *code,
                       uint64_t seq, bool duplicate)
{
	char attempts[16], seq_text[24], base_version[24] = "", base_last_seq[24] = "";
	snprintf(attempts, sizeof attempts, "%u", e->attempts);
	snprintf(seq_text, sizeof seq_text, "%llu", (unsigned long long)seq);
	if (seq != 0 && e->phase != IDLE) {
		/* a commit of this flight: the position it was decided on, what
		 * its "accepted" rests on, for whoever reads the log of a lost step */
		snprintf(base_version, sizeof base_version, "%llu", (unsigned long long)e->base.version);
		snprintf(base_last_seq, sizeof base_last_seq, "%llu", (unsigned long long)e->base.last_seq);
	}
	log_debug("command answered", "aggregate", aggregate, "id", e->id, "type", e->cmd.type, "command_id",
	          e->cmd.causation, "outcome", bus_outcome_name(outcome), "code", code ? code : "",
	          "attempts", attempts, "seq", seq_text, "duplicate", duplicate ? "true" : "false",
	          "decided_on_version", base_version, "decided_on_last_seq", base_last_seq);
}

static void reply_to(shard *sh, entry *e, bus_outcome outcome, const char *code, const char *detail,
                     uint64_t seq, bool duplicate)
{
	act_runtime *rt = sh->rt;
	bus_reply r;
	if (log_enabled(LOG_DEBUG)) /* every answer passes here: format only what is written */
		log_answer(rt->kind->aggregate, e, outcome, code, seq, duplicate);
	memset(&r, 0, sizeof r);
	r.outcome = outcome;
	snprintf(r.code, sizeof r.code, "%s", code ? code : "");
	snprintf(r.detail, sizeof r.detail, "%s", detail ? detail : "");
	r.version = e->at.version;
	r.seq = seq;
	r.attempts = e->attempts;
	r.duplicate = duplicate;
	if (outcome == BUS_FAILED)
		atomic_fetch_add(&rt->failures, 1);
	atomic_fetch_add(&rt->commands, 1);
	send_reply(rt, e->request, &r, sh->scratch);
}

static void reply_view(shard *sh, entry *e)
{
	act_runtime *rt = sh->rt;
	mp_writer *view = mp_writer_create();
	bus_reply r;
	memset(&r, 0, sizeof r);
	r.outcome = BUS_ACCEPTED;
	r.version = e->at.version;
	r.attempts = e->attempts;
	if (view != NULL && rt->kind->view != NULL && rt->kind->view(e->state, view) == ORN_OK &&
	    mp_writer_size(view) > 0) {
		r.view = (uint8_t *)mp_writer_data(view);
		r.view_len = mp_writer_size(view);
	}
	atomic_fetch_add(&rt->commands, 1);
	send_reply(rt, e->request, &r, sh->scratch);
	mp_writer_destroy(view);
}

/* Encodes the decision's events as one commit into e->commit. */
static orn_rc encode_commit(shard *sh, entry *e)
{
	return act_decision_commit(sh->decision, &e->cmd, orn_now_ms(), e->commit);
}

/* Whether another instance appended to e's aggregate since e's state was
 * loaded. An answer that appends nothing (a rejection, a no-op, a read) is
 * not checked by any append, so a cached state is checked against the
 * stream's head before one is given. If the head cannot be read (NATS
 * failing over) the cached state does not answer: another instance may have
 * moved the aggregate on, and a rejection from the past would be final for
 * its caller (the saga takes a refused reserve as out of stock). */
typedef enum cache_check { CACHE_CURRENT, CACHE_STALE, CACHE_UNKNOWN } cache_check;

static cache_check check_cache(shard *sh, const entry *e)
{
	uint64_t head = 0;
	if (es_head(sh->rt->store, sh->rt->kind->aggregate, e->id, &head) != ORN_OK)
		return CACHE_UNKNOWN;
	return head != e->at.last_seq ? CACHE_STALE : CACHE_CURRENT;
}

/* True, after answering "expired", if e's command waited past its deadline:
 * it is never decided (let alone applied) after that. */
static bool expired(shard *sh, entry *e)
{
	if (orn_monotonic_ns() < e->deadline_ns)
		return false;
	atomic_fetch_add(&sh->rt->expired, 1);
	count_refusal(sh->rt, "expired");
	reply_to(sh, e, BUS_FAILED, "expired", "the command waited past its caller's deadline", 0, false);
	return true;
}

/* Answers a keyed request from the ledger (a repeat, or a key reused or
 * too many); false if it must be decided. */
static bool answered_by_ledger(shard *sh, entry *e)
{
	uint64_t seq = 0;
	if (e->cmd.request[0] == '\0')
		return false;
	switch (idem_check(e->ledger, e->cmd.causation, e->cmd.request, e->cmd.time_ms, &seq)) {
	case IDEM_NEW:
		return false;
	case IDEM_REPEAT:
		reply_to(sh, e, BUS_ACCEPTED, "", "the same request was answered before", seq, true);
		return true;
	case IDEM_REUSED:
		reply_to(sh, e, BUS_REJECTED, "idempotency_key_reused",
		         "this Idempotency-Key was used for another request", 0, false);
		return true;
	case IDEM_FULL:
		atomic_fetch_add(&sh->rt->overloaded, 1);
		count_refusal(sh->rt, "too_many_keys");
		reply_to(sh, e, BUS_REJECTED, "too_many_keyed_requests",
		         "too many requests with an Idempotency-Key on this resource in 24 hours", 0, false);
		return true;
	}
	return false;
}

/* True if every commit of e's aggregate after at->last_seq will be echoed
 * to the entry. */
static bool watched(act_runtime *rt, const entry *e, const es_position *at)
{
	return atomic_load(&rt->watch_ok) && e->watched_from != 0 && !e->echo_lost &&
	       at->last_seq + 1 >= e->watched_from;
}

/* Publishes e->commit decided on e->base, asking for its acknowledgement
 * ("<inbox>.a.<token>.<id>") when ack, with ExpectLastSubjectSeq when checked. */
static orn_rc publish_base(shard *sh, entry *e, bool ack, bool checked)
{
	act_runtime *rt = sh->rt;
	char reply[ES_SUBJECT_MAX];
	if (ack) {
		atomic_fetch_add(&rt->acks_asked, 1);
		snprintf(reply, sizeof reply, "%s.a.%llu.%s", rt->inbox, (unsigned long long)e->token, e->id);
	}
	return es_append_publish(rt->store, rt->kind->aggregate, e->id, &e->base, e->msg_id, checked,
	                         mp_writer_data(e->commit), mp_writer_size(e->commit), ack ? reply : NULL);
}

/* Publishes e->commit decided on e->at; confirmed by the log's echo, it asks
 * for no acknowledgement unless the aggregate is contended (ADR 015 §3). */
static orn_rc publish_commit(shard *sh, entry *e)
{
	act_runtime *rt = sh->rt;
	e->token = atomic_fetch_add(&rt->next_token, 1) + 1;
	e->base = e->at;
	e->phase = APPENDING;
	bool keyed = e->cmd.causation[0] != '\0' && es_msg_id(e->msg_id, rt->kind->aggregate, e->id,
	                                                      e->cmd.causation, e->base.last_seq) == ORN_OK;
	if (!keyed)
		e->msg_id[0] = '\0';
	e->by_echo = keyed && watched(rt, e, &e->base);
	e->asked = !e->by_echo || e->contended;
	orn_rc rc = publish_base(sh, e, e->asked, true);
	if (rc == ORN_OK)
		flight_push(sh, e);
	return rc;
}

/* One try of e's current command. Returns true if the command is finished
 * (answered), false if an append is in flight. */
static bool attempt(shard *sh, entry *e)
{
	act_runtime *rt = sh->rt;
	const act_kind *kind = rt->kind;
	orn_rc rc;
	bool fresh = !e->loaded, is_get = strcmp(e->cmd.type, BUS_CMD_GET) == 0;
	e->attempts++;
	if (expired(sh, e))
		return true;
	if (e->loaded && (e->echo_count > 0 || e->echo_lost)) {
		unload(sh, e); /* the log's echo shows commits past the cached state */
		fresh = true;
	}
reload:
	if (!e->loaded && (rc = rehydrate(sh, e)) != ORN_OK) {
		reply_to(sh, e, BUS_FAILED, "unavailable", orn_strerror(rc), 0, false);
		return true;
	}
	if (!is_get && answered_by_ledger(sh, e))
		return true;
	act_decision_clear(sh->decision);
	if (!is_get && (rc = kind->decide(e->state, &e->cmd, sh->decision)) != ORN_OK) {
		reply_to(sh, e, BUS_FAILED, "invalid", orn_strerror(rc), 0, false);
		return true;
	}
	if (!fresh && (is_get || act_decision_rejection(sh->decision) != NULL ||
	               act_decision_count(sh->decision) == 0)) {
		cache_check check = check_cache(sh, e);
		if (check == CACHE_UNKNOWN) {
			reply_to(sh, e, BUS_FAILED, "unavailable", "the cached state cannot be checked", 0,
			         false);
			return true;
		}
		if (check == CACHE_STALE) {
			unload(sh, e);
			fresh = true;
			goto reload;
		}
	}
	if (is_get) {
		reply_view(sh, e);
		return true;
	}
	if (act_decision_rejection(sh->decision) != NULL) {
		reply_to(sh, e, BUS_REJECTED, act_decision_rejection(sh->decision),
		         act_decision_detail(sh->decision), 0, false);
		return true;
	}
	if (act_decision_count(sh->decision) == 0) {
		reply_to(sh, e, BUS_ACCEPTED, "", "", 0, false);
		return true;
	}
	uint64_t seq = 0;
	if (idem_seen(e->ledger, e->cmd.causation, &seq)) {
		/* A caller sent again a command that was applied: it is not applied twice. */
		reply_to(sh, e, BUS_ACCEPTED, "", "duplicate command", seq, true);
		return true;
	}
	if ((rc = encode_commit(sh, e)) != ORN_OK || (rc = publish_commit(sh, e)) != ORN_OK) {
		reply_to(sh, e, BUS_FAILED, "unavailable", orn_strerror(rc), 0, false);
		return true;
	}
	return false;
}

/* Takes the next waiting commands of e until one leaves an append in flight. */
static void run_waiting(shard *sh, entry *e)
{
	while (!e->busy && e->waiting_head != NULL) {
		work *w = e->waiting_head;
		e->waiting_head = w->next;
		if (e->waiting_head == NULL)
			e->waiting_tail = NULL;
		e->waiting--;
		e->busy = true;
		sh->busy_count++;
		e->request = w->msg;
		e->attempts = 0;
		int64_t received_ns = w->received_ns;
		work_recycle(sh, w);
		if (env_decode_buffer(natsMsg_GetData(e->request), (size_t)natsMsg_GetDataLength(e->request),
		                      &e->cmd) != ORN_OK) {
			reply_to(sh, e, BUS_FAILED, "invalid", "undecodable command envelope", 0, false);
			finish(sh, e);
			continue;
		}
		uint32_t ttl_ms = e->cmd.ttl_ms != 0 ? e->cmd.ttl_ms : sh->rt->opt.default_ttl_ms;
		e->deadline_ns = received_ns + (int64_t)ttl_ms * 1000000;
		log_set_correlation(e->cmd.correlation);
		if (attempt(sh, e))
			finish(sh, e);
	}
}

static void maybe_snapshot(shard *sh, entry *e)
{
	act_runtime *rt = sh->rt;
	if (rt->kind->snapshot == NULL || rt->opt.snapshot_every == 0 ||
	    e->since_snapshot < rt->opt.snapshot_every)
		return;
	mp_writer_reset(sh->scratch);
	if (snapshot_encode(sh, e, sh->scratch) != ORN_OK)
		return;
	orn_rc rc = es_snapshot_save(rt->store, rt->kind->aggregate, e->id, rt->kind->snapshot_schema,
	                             e->at.version, mp_writer_data(sh->scratch), mp_writer_size(sh->scratch),
	                             false);
	if (rc == ORN_OK) {
		e->since_snapshot = 0;
		atomic_fetch_add(&rt->snapshots, 1);
	} else {
		log_warn("snapshot not saved", "aggregate", rt->kind->aggregate, "id", e->id, "error",
		         orn_strerror(rc));
	}
}

/* The retry counters of kind (orion_command_conflicts_total,
 * orion_commits_void_total, orion_command_retries_total); with cause NULL,
 * creates them at 0 (a scrape sees them before the first one). */
static void count_retry(const act_kind *kind, const char *cause)
{
	const char *const kind_label[] = {"kind", kind->aggregate, NULL};
	const char *const retry_labels[] = {"kind", kind->aggregate, "cause", cause ? cause : "conflict",
	                                    NULL};
	bool refused = cause != NULL && strcmp(cause, "conflict") == 0,
	     voided = cause != NULL && strcmp(cause, "void") == 0;
	orn_metrics *m = orn_metrics_global();
	orn_metrics_counter_add(
	        m, "orion_command_conflicts_total",
	        "Appends refused because another writer appended first (wrong last sequence).", kind_label,
	        refused ? 1 : 0);
	orn_metrics_counter_add(m, "orion_commits_void_total",
	                        "Commits acknowledged by JetStream but found void: another valid commit "
	                        "on the same version came first (ADR 015).",
	                        kind_label, voided ? 1 : 0);
	orn_metrics_counter_add(m, "orion_command_retries_total",
	                        "Commands decided again after a conflict, a void commit or an append of "
	                        "unknown outcome.",
	                        retry_labels, cause != NULL ? 1 : 0);
}

/* Applies the events just appended (decoded from the exact bytes stored). */
static orn_rc evolve_commit(shard *sh, entry *e, uint64_t seq)
{
	size_t count = 0;
	replay_ctx ctx = {sh->rt->kind, e, 0};
	orn_rc rc = env_decode_commit(mp_writer_data(e->commit), mp_writer_size(e->commit), sh->events,
	                              ENV_MAX_EVENTS, &count);
	for (size_t i = 0; rc == ORN_OK && i < count; i++)
		rc = evolve_one(&ctx, seq, NULL, &sh->events[i]);
	e->since_snapshot += (unsigned)count;
	return rc;
}

/* Forgets the echoes of commits up to e->at.last_seq. */
static void drop_echoes(entry *e)
{
	unsigned keep = 0;
	for (unsigned i = 0; i < e->echo_count; i++)
		if (e->echoes[i].seq > e->at.last_seq)
			e->echoes[keep++] = e->echoes[i];
	e->echo_count = keep;
}

/* The command's commit is confirmed valid at e->acked.seq. */
static void accept(shard *sh, entry *e)
{
	act_runtime *rt = sh->rt;
	uint64_t seq = e->acked.seq;
	flight_unlink(sh, e);
	atomic_fetch_add(&rt->appends, 1);
	if (e->acked.duplicate) {
		/* An earlier try of this command on the same position landed: our
		 * state may not be what it stored. */
		e->at.version = e->at.last_seq = seq;
		reply_to(sh, e, BUS_ACCEPTED, "", "duplicate command", seq, true);
		unload(sh, e);
		return;
	}
	orn_rc rc = evolve_commit(sh, e, seq);
	e->at.version = e->at.last_seq = seq;
	drop_echoes(e);
	reply_to(sh, e, BUS_ACCEPTED, "", "", seq, false);
	if (rc == ORN_OK)
		maybe_snapshot(sh, e);
	else
		unload(sh, e); /* reload from the stream next time */
}

/* Looks for the command's own valid commit after where it was decided;
 * *seq 0 if there is none (yet). */
typedef struct own_commit {
	const char *command_id;
	uint64_t seq;
} own_commit;

static orn_rc find_own(void *closure, uint64_t seq, const char *subject, const env_envelope *ev)
{
	own_commit *own = closure;
	if (own->seq == 0 && strcmp(ev->causation, own->command_id) == 0)
		own->seq = seq;
	return ORN_OK;
}

/* Decides e's command again after a conflict or a void commit (retry_cause
 * "conflict" or "void"), or after an outcome that stays unknown ("unknown":
 * first looks for the command's own commit, so that its success is what it
 * answers). Returns true if the command is finished. */
static bool try_again(shard *sh, entry *e, const char *cause, orn_rc why)
{
	act_runtime *rt = sh->rt;
	bool unknown = strcmp(cause, "unknown") == 0;
	flight_unlink(sh, e);
	e->phase = IDLE;
	if (unknown) {
		own_commit own = {e->cmd.causation, 0};
		es_position now;
		orn_rc rc =
		        es_load(rt->store, rt->kind->aggregate, e->id, e->base.version, find_own, &own, &now);
		if (rc == ORN_OK && own.seq != 0) {
			unload(sh, e);
			e->at = now;
			reply_to(sh, e, BUS_ACCEPTED, "", "found after an unknown outcome", own.seq, true);
			return true;
		}
		if (rc != ORN_OK)
			why = rc;
	}
	if (strcmp(cause, "void") == 0)
		atomic_fetch_add(&rt->voids, 1);
	if (!unknown)
		atomic_fetch_add(&rt->conflicts, 1);
	unload(sh, e); /* another writer, or an unknown outcome: reload */
	/* A conflict resolves with one reload; an unknown outcome (NATS down) is
	 * not retried once stopping, so shutdown stays bounded. */
	bool retry = (!unknown || !atomic_load(&rt->stopping)) && e->attempts < rt->opt.max_attempts;
	count_retry(rt->kind, retry ? cause : NULL);
	if (retry)
		return attempt(sh, e);
	reply_to(sh, e, BUS_FAILED, unknown ? "unavailable" : "conflict", orn_strerror(why), 0, false);
	return true;
}

/* e's commit went out without asking for an acknowledgement and another
 * writer's commit was echoed after its base first: whether its own was
 * stored (then its echo is still to come), refused, or is still on its way,
 * only JetStream can tell. The same message again, asking this time, and
 * without ExpectLastSubjectSeq: JetStream applies a stream's messages in
 * order, so the first copy, if it was taken, is stored before this one, and
 * the Nats-Msg-Id makes this one a duplicate naming it. Else this one is
 * stored, void or valid by the rule like any commit. With the header a
 * replicated stream's leader would answer "wrong last sequence" before it
 * deduplicates, the first copy itself being the reason, and the command
 * would be decided again over its own commit (the cluster suite saw such a
 * reserve answered with a sequence that holds nothing). Returns true if the
 * command is finished (the resend failed). */
static bool ask_ack(shard *sh, entry *e)
{
	e->asked = true;
	orn_rc rc = publish_base(sh, e, true, false);
	return rc == ORN_OK ? false : try_again(sh, e, "unknown", rc);
}

/* Asks for the next commit after where the confirmation stands. */
static bool confirm_next(shard *sh, entry *e)
{
	if (e->phase != CONFIRMING)
		atomic_fetch_add(&sh->rt->by_read, 1);
	act_runtime *rt = sh->rt;
	char reply[ES_SUBJECT_MAX];
	snprintf(reply, sizeof reply, "%s.c.%llu.%s", rt->inbox, (unsigned long long)e->token, e->id);
	e->phase = CONFIRMING;
	if (es_confirm_publish(rt->store, rt->kind->aggregate, e->id, &e->confirm, reply) != ORN_OK)
		return try_again(sh, e, "unknown", ORN_EUNAVAILABLE);
	flight_push(sh, e);
	return false;
}

/* Acts on a confirmation's verdict; true if the command is finished. */
static bool on_verdict(shard *sh, entry *e, es_verdict verdict)
{
	act_runtime *rt = sh->rt;
	orn_rc rc;
	switch (verdict) {
	case ES_VALID:
		accept(sh, e);
		return true;
	case ES_VOID:
		return try_again(sh, e, "void", ORN_ECONFLICT);
	case ES_LOOK_AGAIN:
		return confirm_next(sh, e);
	case ES_ASK_LEADER:
		rc = es_confirm_wait(rt->store, rt->kind->aggregate, e->id, &e->confirm);
		if (rc == ORN_OK) {
			accept(sh, e);
			return true;
		}
		return try_again(sh, e, rc == ORN_ECONFLICT ? "void" : "unknown", rc);
	}
	return try_again(sh, e, "unknown", ORN_EINTERNAL);
}

/* Confirms e's acknowledged commit by the echoes of its aggregate when it
 * has been watched since the commit's base, else by reading (confirm_next).
 * Waits for more echoes while the ones so far show only void commits. */
static bool confirm_by_echo(shard *sh, entry *e)
{
	act_runtime *rt = sh->rt;
	if (!watched(rt, e, &e->base) || e->acked.duplicate)
		return confirm_next(sh, e); /* a duplicate's commit was echoed before */
	if (e->phase != AWAITING_ECHO)
		atomic_fetch_add(&rt->by_echo, 1);
	for (unsigned i = 0; i < e->echo_count; i++) {
		const echo *x = &e->echoes[i];
		if (x->seq < e->confirm.from)
			continue;
		es_verdict verdict = es_confirm_step(&e->confirm, x->seq, x->chained, x->prev);
		if (verdict != ES_LOOK_AGAIN)
			return on_verdict(sh, e, verdict);
	}
	if (e->phase != AWAITING_ECHO) {
		e->phase = AWAITING_ECHO;
		flight_push(sh, e);
	}
	return false;
}

/* The entry whose in-flight step w answers, or NULL for a stale answer (of
 * a step that already timed out and was resolved). */
static entry *awaiting(shard *sh, const work *w, step phase)
{
	entry *e = hmap_get(sh->entries, w->id);
	if (e == NULL || !e->in_flight || e->token != w->token || e->phase != phase)
		return NULL;
	log_set_correlation(e->cmd.correlation);
	return e;
}

static void after_step(shard *sh, entry *e, bool finished)
{
	if (!finished)
		return; /* a next step is in flight */
	finish(sh, e);
	run_waiting(sh, e);
}

static void on_appended(shard *sh, const work *w)
{
	entry *e = awaiting(sh, w, APPENDING);
	if (e == NULL)
		return;
	bool finished;
	if (w->rc == ORN_OK) {
		e->acked = w->result;
		es_confirm_init(&e->confirm, &e->base, w->result.seq);
		finished = confirm_by_echo(sh, e);
	} else {
		finished = try_again(sh, e, w->rc == ORN_ECONFLICT ? "conflict" : "unknown", w->rc);
	}
	after_step(sh, e, finished);
}

static void on_confirmed(shard *sh, const work *w)
{
	entry *e = awaiting(sh, w, CONFIRMING);
	if (e == NULL)
		return;
	after_step(sh, e, on_verdict(sh, e, es_confirm_answer(&e->confirm, w->msg)));
}

/* A commit of one of the shard's aggregates, echoed by the watch; or, with
 * no id, word that the watch has stopped. */
static void on_echo_work(shard *sh, const work *w)
{
	if (w->id[0] == '\0') {
		/* Flights awaiting an echo are confirmed by reading instead; those
		 * that will not hear their acknowledgement are resolved as of
		 * unknown outcome (their commit is looked for in the log). */
		entry *e = sh->flight_head;
		while (e != NULL) {
			entry *next = e->flight_next;
			log_set_correlation(e->cmd.correlation);
			if (e->phase == AWAITING_ECHO)
				after_step(sh, e, confirm_next(sh, e));
			else if (e->phase == APPENDING && e->by_echo)
				after_step(sh, e, try_again(sh, e, "unknown", ORN_EUNAVAILABLE));
			e = next;
		}
		return;
	}
	if (w->seq > sh->echo_pos)
		sh->echo_pos = w->seq;
	entry *e = hmap_get(sh->entries, w->id);
	if (e == NULL || !e->loaded || e->watched_from == 0 || w->seq <= e->at.last_seq)
		return;
	if (e->echo_count == e->echo_cap) {
		unsigned cap = e->echo_cap == 0 ? 2 : e->echo_cap * 2;
		echo *grown = cap <= ECHO_MAX ? realloc(e->echoes, cap * sizeof *grown) : NULL;
		if (grown == NULL) {
			e->echo_lost = true; /* watched no more until reloaded */
		} else {
			e->echoes = grown;
			e->echo_cap = cap;
		}
	}
	if (!e->echo_lost)
		e->echoes[e->echo_count++] = (echo){w->seq, w->chained, w->prev};
	/* mine: the commit of the entry's append in flight, however it is confirmed */
	bool mine = e->in_flight && e->msg_id[0] != '\0' && strcmp(w->msg_id, e->msg_id) == 0;
	bool appending = e->phase == APPENDING && e->by_echo && e->in_flight;
	bool own = appending && mine;
	if (!mine)
		e->contended = true; /* past the entry's last commit and not its own: another writer's */
	if (own) {
		/* The commit itself: what its acknowledgement would have said. */
		log_set_correlation(e->cmd.correlation);
		e->acked = (es_append_result){.seq = w->seq, .duplicate = false};
		es_confirm_init(&e->confirm, &e->base, w->seq);
		after_step(sh, e, confirm_by_echo(sh, e));
	} else if (appending && !e->asked && w->seq > e->base.last_seq) {
		log_set_correlation(e->cmd.correlation);
		after_step(sh, e, ask_ack(sh, e));
	} else if (e->phase == AWAITING_ECHO) {
		log_set_correlation(e->cmd.correlation);
		after_step(sh, e, confirm_by_echo(sh, e));
	}
}

static void on_command_work(shard *sh, work *w)
{
	act_runtime *rt = sh->rt;
	entry *e = entry_get(sh, w->id);
	if (e == NULL) {
		reply_simple(rt, w->msg, BUS_FAILED, "unavailable", "out of memory", sh->scratch);
		natsMsg_Destroy(w->msg);
		work_recycle(sh, w);
		atomic_fetch_sub(&sh->commands, 1);
		return;
	}
	if (e->waiting >= rt->opt.aggregate_queue) {
		refuse_overloaded(rt, w->msg, "overloaded_aggregate", sh->scratch);
		work_recycle(sh, w);
		atomic_fetch_sub(&sh->commands, 1);
		return;
	}
	w->next = NULL;
	if (e->waiting_tail != NULL)
		e->waiting_tail->next = w;
	else
		e->waiting_head = w;
	e->waiting_tail = w;
	e->waiting++;
	run_waiting(sh, e);
}

/* True when stopping with NATS gone: answers in flight will never come. */
static bool abandoned(shard *sh)
{
	return atomic_load(&sh->rt->stopping) && !es_store_connected(sh->rt->store);
}

/* Steps whose answer did not come in time (or never will: abandoned):
 * their outcome is unknown, which try_again resolves (look for the commit;
 * the msg id makes a resend safe; once stopping nothing is sent again). */
static void expire_flights(shard *sh)
{
	int64_t now = abandoned(sh) ? INT64_MAX : orn_monotonic_ns();
	while (sh->flight_head != NULL && sh->flight_head->flight_deadline_ns <= now) {
		entry *e = sh->flight_head;
		log_set_correlation(e->cmd.correlation);
		if (e->phase == AWAITING_ECHO && now != INT64_MAX) {
			log_warn("no echo of an acknowledged append in time; confirming by reading", "id",
			         e->id);
			after_step(sh, e, confirm_next(sh, e));
			continue;
		}
		log_warn("append not acknowledged or confirmed in time", "id", e->id);
		after_step(sh, e, try_again(sh, e, "unknown", ORN_ETIMEOUT));
	}
}

/* Waits for work, or for the first flight deadline. Called with the lock held. */
static void wait_for_work(shard *sh)
{
	while (sh->head == NULL && !(sh->stopping && sh->busy_count == 0)) {
		if (sh->flight_head != NULL && abandoned(sh))
			return;
		if (sh->flight_head == NULL) {
			pthread_cond_wait(&sh->wake, &sh->lock);
			continue;
		}
		struct timespec until = {(time_t)(sh->flight_head->flight_deadline_ns / 1000000000),
		                         (long)(sh->flight_head->flight_deadline_ns % 1000000000)};
		if (pthread_cond_timedwait(&sh->wake, &sh->lock, &until) == ETIMEDOUT)
			return;
	}
}

/* orion_actor_commands_queued{kind}: commands queued, waiting or running. */
static void gauge_queued(act_runtime *rt)
{
	size_t total = 0;
	const char *const labels[] = {"kind", rt->kind->aggregate, NULL};
	for (unsigned i = 0; i < rt->shard_count; i++)
		total += atomic_load(&rt->shards[i].commands);
	orn_metrics_gauge_set(
	        orn_metrics_global(), "orion_actor_commands_queued",
	        "Commands an actor runtime holds: queued, waiting for their aggregate or running.", labels,
	        (double)total);
}

static void *shard_main(void *arg)
{
	shard *sh = arg;
	for (;;) {
		pthread_mutex_lock(&sh->lock);
		wait_for_work(sh);
		work *batch = sh->head;
		sh->head = sh->tail = NULL;
		sh->posted = 0;
		bool done = batch == NULL && sh->stopping && sh->busy_count == 0;
		pthread_mutex_unlock(&sh->lock);
		if (done)
			break;
		while (batch != NULL) {
			work *w = batch;
			batch = w->next;
			if (w->kind == WORK_COMMAND) {
				on_command_work(sh, w); /* takes ownership of w */
				continue;
			}
			if (w->kind == WORK_APPENDED)
				on_appended(sh, w);
			else if (w->kind == WORK_ECHO)
				on_echo_work(sh, w);
			else
				on_confirmed(sh, w);
			natsMsg_Destroy(w->msg);
			w->msg = NULL;
			work_recycle(sh, w);
		}
		expire_flights(sh);
		evict(sh);
		gauge_queued(sh->rt);
	}
	return NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void free_works(work *w)
{
	while (w != NULL) {
		work *next = w->next;
		natsMsg_Destroy(w->msg);
		free(w);
		w = next;
	}
}

static void shard_dispose(shard *sh)
{
	size_t cursor = 0;
	const char *key = NULL;
	void *value = NULL;
	while (sh->entries != NULL && hmap_next(sh->entries, &cursor, &key, &value)) {
		entry *e = value;
		free_works(e->waiting_head);
		natsMsg_Destroy(e->request);
		entry_free(sh, e);
	}
	free_works(sh->head); /* posted after the thread stopped */
	for (work *w = sh->spare; w != NULL;) {
		work *next = w->next;
		free(w);
		w = next;
	}
	hmap_destroy(sh->entries);
	act_decision_destroy(sh->decision);
	mp_writer_destroy(sh->scratch);
	free(sh->events);
	pthread_mutex_destroy(&sh->lock);
	pthread_cond_destroy(&sh->wake);
}

static orn_rc shard_init(act_runtime *rt, shard *sh, size_t capacity)
{
	sh->rt = rt;
	sh->capacity = capacity > 0 ? capacity : 1;
	pthread_mutex_init(&sh->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* deadlines use orn_monotonic_ns */
	pthread_cond_init(&sh->wake, &attr);
	pthread_condattr_destroy(&attr);
	atomic_init(&sh->commands, 0);
	sh->entries = hmap_create();
	sh->decision = act_decision_create();
	sh->scratch = mp_writer_create();
	sh->events = malloc(sizeof *sh->events * ENV_MAX_EVENTS);
	if (sh->entries == NULL || sh->decision == NULL || sh->scratch == NULL || sh->events == NULL)
		return ORN_ENOMEM;
	return ORN_OK;
}

static void stop_shards(act_runtime *rt, unsigned started)
{
	for (unsigned i = 0; i < started; i++) {
		shard *sh = &rt->shards[i];
		pthread_mutex_lock(&sh->lock);
		sh->stopping = true;
		pthread_cond_signal(&sh->wake);
		pthread_mutex_unlock(&sh->lock);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(rt->shards[i].thread, NULL);
}

/* Opens the runtime's own connection for commands and replies, so that they
 * do not queue behind appends on the store's socket: the role's serve user,
 * the only one that answers requests (ADR 014). */
static orn_rc connect_commands(act_runtime *rt)
{
	char name[64];
	snprintf(name, sizeof name, "orion-%s-commands", rt->kind->aggregate);
	return es_store_connect_serving(rt->store, name, &rt->nc) == ORN_OK ? ORN_OK : ORN_EUNAVAILABLE;
}

/* Subscribes to the runtime's inbox on the store's connection (the one
 * appends and confirmations are published on). */
static orn_rc subscribe_inbox(act_runtime *rt)
{
	char pattern[128];
	if (natsInbox_Create(&rt->inbox) != NATS_OK)
		return ORN_ENOMEM;
	rt->inbox_len = strlen(rt->inbox);
	snprintf(pattern, sizeof pattern, "%s.>", rt->inbox);
	natsStatus st = natsConnection_Subscribe(&rt->inbox_sub, es_store_connection(rt->store), pattern,
	                                         on_inbox, rt);
	if (st != NATS_OK)
		return es_status_rc(st, 0);
	natsSubscription_SetPendingLimits(rt->inbox_sub, 1000000, 1024 * 1024 * 1024);
	return ORN_OK;
}

/* Stops the inbox subscription once every callback has returned (drained
 * when the connection is up). */
static void unsubscribe_inbox(act_runtime *rt, bool up)
{
	if (rt->inbox_sub != NULL) {
		if (up && natsSubscription_Drain(rt->inbox_sub) == NATS_OK)
			natsSubscription_WaitForDrainCompletion(rt->inbox_sub, 5000);
		natsSubscription_Destroy(rt->inbox_sub);
		rt->inbox_sub = NULL;
	}
	natsInbox_Destroy(rt->inbox);
	rt->inbox = NULL;
}

/* Starts the watch of the kind's commits (unless confirm_by_read): without
 * it every append is confirmed by reading, which is correct and dearer. */
static void start_watch(act_runtime *rt)
{
	if (rt->opt.confirm_by_read)
		return;
	orn_rc rc = es_watch_start(rt->store, rt->kind->aggregate, on_echo, on_watch_done, rt, &rt->watch,
	                           &rt->watch_from);
	if (rc != ORN_OK) {
		log_warn("no watch of the log: appends are confirmed by reading", "aggregate",
		         rt->kind->aggregate, "error", orn_strerror(rc));
		return;
	}
	atomic_store(&rt->watch_ok, true);
}

/* Stops the watch and waits until it calls back no more. */
static void stop_watch(act_runtime *rt)
{
	if (rt->watch == NULL)
		return;
	es_follow_stop(rt->watch);
	pthread_mutex_lock(&rt->watch_lock);
	while (!rt->watch_done)
		pthread_cond_wait(&rt->watch_stopped, &rt->watch_lock);
	pthread_mutex_unlock(&rt->watch_lock);
	rt->watch = NULL;
}

orn_rc act_runtime_start(es_store *store, const act_kind *kind, const act_options *o, act_runtime **out)
{
	orn_rc rc = ORN_OK;
	unsigned started = 0;
	char subject[ES_SUBJECT_MAX], queue[64];
	if (!es_aggregate_valid(kind->aggregate))
		return ORN_EINVAL;
	act_runtime *rt = calloc(1, sizeof *rt);
	if (rt == NULL)
		return ORN_ENOMEM;
	rt->store = store;
	rt->kind = kind;
	pthread_mutex_init(&rt->watch_lock, NULL);
	pthread_cond_init(&rt->watch_stopped, NULL);
	if (o != NULL)
		rt->opt = *o;
	else
		act_options_init(&rt->opt);
	if (rt->opt.shards == 0)
		rt->opt.shards = 1;
	if (rt->opt.max_attempts == 0)
		rt->opt.max_attempts = 1;
	if (rt->opt.default_ttl_ms == 0)
		rt->opt.default_ttl_ms = 30000;
	rt->shard_count = rt->opt.shards;
	atomic_init(&rt->lost_acks, rt->opt.fault_lost_acks);
	rt->loads_whole = !es_store_replicated(store) && !rt->opt.fault_lagging_loads;
	rt->cmd_prefix_len = strlen("orion.cmd.") + strlen(kind->aggregate) + 1;
	rt->shards = calloc(rt->shard_count, sizeof *rt->shards);
	if (rt->shards == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < rt->shard_count; i++)
		if ((rc = shard_init(rt, &rt->shards[i], rt->opt.cache_capacity / rt->shard_count)) != ORN_OK)
			goto fail;
	for (; started < rt->shard_count; started++)
		if (pthread_create(&rt->shards[started].thread, NULL, shard_main, &rt->shards[started]) !=
		    0) {
			rc = ORN_ENOMEM;
			goto fail;
		}
	if ((rc = subscribe_inbox(rt)) != ORN_OK)
		goto fail;
	start_watch(rt);
	snprintf(subject, sizeof subject, "orion.cmd.%s.*", kind->aggregate);
	snprintf(queue, sizeof queue, "orion.%s", kind->aggregate);
	if ((rc = connect_commands(rt)) != ORN_OK)
		goto fail;
	natsStatus st = natsConnection_QueueSubscribe(&rt->sub, rt->nc, subject, queue, on_command, rt);
	if (st != NATS_OK) {
		rc = es_status_rc(st, 0);
		goto fail;
	}
	natsSubscription_SetPendingLimits(rt->sub, 1000000, 1024 * 1024 * 1024);
	natsConnection_Flush(rt->nc);
	count_retry(kind, NULL);
	count_refusal(rt, NULL);
	log_info("actor runtime started", "aggregate", kind->aggregate, "queue", queue);
	*out = rt;
	return ORN_OK;
fail:
	if (rt->sub != NULL)
		natsSubscription_Destroy(rt->sub);
	natsConnection_Destroy(rt->nc);
	stop_watch(rt);
	stop_shards(rt, started);
	unsubscribe_inbox(rt, true);
	if (rt->shards != NULL)
		for (unsigned i = 0; i < rt->shard_count; i++)
			shard_dispose(&rt->shards[i]);
	free(rt->shards);
	pthread_cond_destroy(&rt->watch_stopped);
	pthread_mutex_destroy(&rt->watch_lock);
	free(rt);
	return rc;
}

void act_runtime_stop(act_runtime *rt)
{
	if (rt == NULL)
		return;
	atomic_store(&rt->stopping, true);
	/* With NATS gone there is nothing to drain or flush: no wait on it. */
	bool up = natsConnection_Status(rt->nc) == NATS_CONN_STATUS_CONNECTED &&
	          natsConnection_Status(es_store_connection(rt->store)) == NATS_CONN_STATUS_CONNECTED;
	if (rt->sub != NULL) {
		/* Drain: take no new commands, but hand every received one to a shard. */
		if (up && natsSubscription_Drain(rt->sub) == NATS_OK)
			natsSubscription_WaitForDrainCompletion(rt->sub, 5000);
		natsSubscription_Destroy(rt->sub);
	}
	stop_watch(rt); /* flights awaiting an echo are confirmed by reading */
	stop_shards(rt, rt->shard_count);
	unsubscribe_inbox(rt, up);
	if (up)
		natsConnection_FlushTimeout(rt->nc, 1000); /* the last replies */
	natsConnection_Destroy(rt->nc);
	for (unsigned i = 0; i < rt->shard_count; i++)
		shard_dispose(&rt->shards[i]);
	free(rt->shards);
	static const char *const names[] = {"commands",  "appends", "confirmed_by_echo", "confirmed_by_read",
	                                    "conflicts", "expired", "overloaded"};
	const uint64_t counts[] = {atomic_load(&rt->commands),  atomic_load(&rt->appends),
	                           atomic_load(&rt->by_echo),   atomic_load(&rt->by_read),
	                           atomic_load(&rt->conflicts), atomic_load(&rt->expired),
	                           atomic_load(&rt->overloaded)};
	log_counters("actor runtime stopped", "aggregate", rt->kind->aggregate, names, counts,
	             ORN_ARRAY_LEN(counts));
	pthread_cond_destroy(&rt->watch_stopped);
	pthread_mutex_destroy(&rt->watch_lock);
	free(rt);
}

void act_runtime_stats(act_runtime *rt, act_stats *out)
{
	out->commands = atomic_load(&rt->commands);
	out->appends = atomic_load(&rt->appends);
	out->conflicts = atomic_load(&rt->conflicts);
	out->voids = atomic_load(&rt->voids);
	out->expired = atomic_load(&rt->expired);
	out->overloaded = atomic_load(&rt->overloaded);
	out->rehydrations = atomic_load(&rt->rehydrations);
	out->snapshots = atomic_load(&rt->snapshots);
	out->failures = atomic_load(&rt->failures);
	out->confirmed_by_echo = atomic_load(&rt->by_echo);
	out->confirmed_by_read = atomic_load(&rt->by_read);
	out->acks_asked = atomic_load(&rt->acks_asked);
	out->snapshot_lookups = atomic_load(&rt->snapshot_lookups);
}
