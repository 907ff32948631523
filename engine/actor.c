/* actor.c — the actor runtime (see actor.h).
 *
 * Threads: cnats delivers commands on the subscription's thread and append
 * acknowledgements on the JetStream reply thread; both only post work into a
 * shard's mailbox. Everything that touches aggregate state happens on the
 * shard's own thread, so a state is never shared between threads. */
#include "actor.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "hashmap.h"
#include "log.h"
#include "metrics.h"

typedef enum work_kind { WORK_COMMAND, WORK_APPENDED } work_kind;

/* One item of a shard's mailbox. */
typedef struct work {
	work_kind kind;
	struct work *next;
	natsMsg *msg; /* WORK_COMMAND: the request, owned by the item */
	char id[ES_ID_MAX + 1];
	/* WORK_APPENDED */
	uint64_t token; /* which append this outcome belongs to */
	orn_rc rc;
	es_append_result result;
} work;

/* One live aggregate in a shard's cache. */
typedef struct entry {
	char id[ES_ID_MAX + 1];
	void *state;
	bool loaded;
	uint64_t version;
	unsigned since_snapshot;
	/* the command being processed, if any */
	bool busy;
	natsMsg *request;
	env_envelope cmd; /* payload points into request's data */
	unsigned attempts;
	mp_writer *commit;
	/* the append in flight: its token, deadline, place in the flight list */
	uint64_t token;
	int64_t deadline_ns;
	bool in_flight;
	struct entry *flight_prev, *flight_next;
	/* commands waiting for this aggregate, FIFO */
	work *waiting_head, *waiting_tail;
	struct entry *lru_prev, *lru_next;
} entry;

typedef struct shard {
	struct act_runtime *rt;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	work *head, *tail;
	size_t queued;
	bool stopping;
	work *spare; /* recycled work items (under lock): no malloc per command */
	size_t spare_count;
	/* owned by the shard thread */
	hmap *entries;
	entry *lru_head, *lru_tail;       /* most recently used first */
	entry *flight_head, *flight_tail; /* appends in flight, oldest (first deadline) first */
	size_t live;
	size_t capacity;
	size_t busy_count;
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
	/* Appends are plain publishes whose JetStream acks come back to
	 * "<ack_inbox>.<token>.<id>" on the store's connection. */
	natsInbox *ack_inbox;
	size_t ack_prefix_len;
	natsSubscription *ack_sub;
	atomic_uint_fast64_t next_token;
	shard *shards;
	unsigned shard_count;
	size_t cmd_prefix_len;
	atomic_uint_fast64_t commands, appends, conflicts, rehydrations, snapshots, failures;
	atomic_bool stopping; /* no retries once stopping: shutdown stays bounded */
};

void act_options_init(act_options *o)
{
	o->shards = 4;
	o->cache_capacity = 100000;
	o->snapshot_every = 100;
	o->max_attempts = 8;
	o->mailbox_capacity = 65536;
	o->append_timeout_ms = 5000;
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

/* Queues w on shard sh; false if the mailbox is full or stopping. */
static bool post(act_runtime *rt, shard *sh, work *w, bool bounded)
{
	pthread_mutex_lock(&sh->lock);
	if (bounded && (sh->stopping || sh->queued >= rt->opt.mailbox_capacity)) {
		pthread_mutex_unlock(&sh->lock);
		return false;
	}
	w->next = NULL;
	if (sh->tail != NULL)
		sh->tail->next = w;
	else
		sh->head = w;
	sh->tail = w;
	sh->queued++;
	/* A shard that is busy draining its batch needs no wake-up call. */
	if (sh->queued == 1)
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
		memcpy(w->id, probe.id, sizeof w->id);
		if (post(rt, sh, w, true))
			return;
		work_recycle(sh, w);
	}
	mp_writer *buf = mp_writer_create();
	if (buf != NULL)
		reply_simple(rt, msg, BUS_FAILED, "overloaded", "the actor's mailbox is full", buf);
	mp_writer_destroy(buf);
	natsMsg_Destroy(msg);
}

/* cnats callback for JetStream acks ("<ack_inbox>.<token>.<id>"): route the
 * outcome to the aggregate's shard. */
static void on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	act_runtime *rt = closure;
	const char *subject = natsMsg_GetSubject(msg);
	char *end = NULL;
	uint64_t token = 0;
	work probe;
	if (strlen(subject) > rt->ack_prefix_len)
		token = strtoull(subject + rt->ack_prefix_len, &end, 10);
	if (token == 0 || end == NULL || *end != '.') {
		natsMsg_Destroy(msg);
		return;
	}
	set_id(&probe, end + 1, 0);
	shard *sh = shard_of(rt, probe.id);
	work *w = work_new(sh);
	if (w == NULL) {
		log_error("append outcome lost: out of memory", "subject", subject);
		natsMsg_Destroy(msg); /* the append times out and is retried */
		return;
	}
	w->kind = WORK_APPENDED;
	w->msg = NULL;
	w->token = token;
	memcpy(w->id, probe.id, sizeof w->id);
	w->rc = es_parse_ack(msg, &w->result);
	natsMsg_Destroy(msg);
	post(rt, sh, w, false);
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
	e->version = 0;
	e->since_snapshot = 0;
}

static void entry_free(shard *sh, entry *e)
{
	unload(sh, e);
	mp_writer_destroy(e->commit);
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
	if (e->state == NULL || e->commit == NULL || hmap_put(sh->entries, id, e) != ORN_OK) {
		mp_writer_destroy(e->commit);
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
	void *state;
	unsigned events;
} replay_ctx;

static orn_rc evolve_one(void *closure, uint64_t seq, const char *subject, const env_envelope *ev)
{
	replay_ctx *ctx = closure;
	ctx->events++;
	return ctx->kind->evolve(ctx->state, ev);
}

/* Loads e's state from the latest snapshot plus the events after it. */
static orn_rc rehydrate(shard *sh, entry *e)
{
	act_runtime *rt = sh->rt;
	const act_kind *kind = rt->kind;
	uint8_t *snap = NULL;
	size_t snap_len = 0;
	uint64_t version = 0;
	kind->init(e->state);
	e->loaded = true;
	atomic_fetch_add(&rt->rehydrations, 1);
	if (kind->restore != NULL) {
		orn_rc rc = es_snapshot_load(rt->store, kind->aggregate, e->id, kind->snapshot_schema,
		                             &version, &snap, &snap_len);
		if (rc == ORN_OK && kind->restore(e->state, snap, snap_len) != ORN_OK) {
			log_warn("unusable snapshot, replaying all events", "aggregate", kind->aggregate,
			         "id", e->id);
			kind->dispose(e->state);
			kind->init(e->state);
			version = 0;
		} else if (rc != ORN_OK) {
			version = 0;
		}
		free(snap);
	}
	replay_ctx ctx = {kind, e->state, 0};
	orn_rc rc = es_load(rt->store, kind->aggregate, e->id, version, evolve_one, &ctx, &e->version);
	if (rc != ORN_OK) {
		unload(sh, e);
		return rc;
	}
	e->since_snapshot = ctx.events; /* a long tail earns a snapshot soon */
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
	e->deadline_ns = orn_monotonic_ns() + (int64_t)sh->rt->opt.append_timeout_ms * 1000000;
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
	sh->busy_count--;
	log_set_correlation(NULL);
}

static void reply_to(shard *sh, entry *e, bus_outcome outcome, const char *code, const char *detail,
                     uint64_t seq, bool duplicate)
{
	act_runtime *rt = sh->rt;
	char attempts[16];
	bus_reply r;
	snprintf(attempts, sizeof attempts, "%u", e->attempts);
	log_debug("command answered", "aggregate", rt->kind->aggregate, "id", e->id, "type", e->cmd.type,
	          "command_id", e->cmd.causation, "outcome", bus_outcome_name(outcome), "code",
	          code ? code : "", "attempts", attempts);
	memset(&r, 0, sizeof r);
	r.outcome = outcome;
	snprintf(r.code, sizeof r.code, "%s", code ? code : "");
	snprintf(r.detail, sizeof r.detail, "%s", detail ? detail : "");
	r.version = e->version;
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
	r.version = e->version;
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
	act_decision *d = sh->decision;
	size_t count = act_decision_count(d);
	mp_writer_reset(e->commit);
	env_commit_begin(e->commit, (uint32_t)count);
	for (size_t i = 0; i < count; i++) {
		env_envelope ev;
		orn_rc rc = act_decision_event(d, i, &ev);
		if (rc != ORN_OK)
			return rc;
		ev.time_ms = e->cmd.time_ms > 0 ? e->cmd.time_ms : orn_now_ms();
		memcpy(ev.correlation, e->cmd.correlation, sizeof ev.correlation);
		memcpy(ev.causation, e->cmd.causation, sizeof ev.causation);
		memcpy(ev.actor, e->cmd.actor, sizeof ev.actor);
		if ((rc = env_encode(e->commit, &ev)) != ORN_OK)
			return rc;
	}
	return mp_writer_status(e->commit);
}

/* Whether another instance appended to e's aggregate since e's state was
 * loaded. An answer that appends nothing (a rejection, a no-op, a read) is
 * not checked by ExpectLastSubjectSeq, so a cached state is checked against
 * the stream's head before one is given. If the head cannot be read (NATS
 * failing over) the cached state does not answer: another instance may have
 * moved the aggregate on, and a rejection from the past would be final for
 * its caller (the saga takes a refused reserve as out of stock). */
typedef enum cache_check { CACHE_CURRENT, CACHE_STALE, CACHE_UNKNOWN } cache_check;

static cache_check check_cache(shard *sh, const entry *e)
{
	uint64_t head = 0;
	if (es_head(sh->rt->store, sh->rt->kind->aggregate, e->id, &head) != ORN_OK)
		return CACHE_UNKNOWN;
	return head != e->version ? CACHE_STALE : CACHE_CURRENT;
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
reload:
	if (!e->loaded && (rc = rehydrate(sh, e)) != ORN_OK) {
		reply_to(sh, e, BUS_FAILED, "unavailable", orn_strerror(rc), 0, false);
		return true;
	}
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
	char reply_to_subject[ES_SUBJECT_MAX];
	e->token = atomic_fetch_add(&rt->next_token, 1) + 1;
	snprintf(reply_to_subject, sizeof reply_to_subject, "%s.%llu.%s", rt->ack_inbox,
	         (unsigned long long)e->token, e->id);
	if ((rc = encode_commit(sh, e)) != ORN_OK ||
	    (rc = es_append_publish(rt->store, kind->aggregate, e->id, e->version, e->cmd.causation,
	                            mp_writer_data(e->commit), mp_writer_size(e->commit),
	                            reply_to_subject)) != ORN_OK) {
		reply_to(sh, e, BUS_FAILED, "unavailable", orn_strerror(rc), 0, false);
		return true;
	}
	flight_push(sh, e);
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
		e->busy = true;
		sh->busy_count++;
		e->request = w->msg;
		e->attempts = 0;
		work_recycle(sh, w);
		if (env_decode_buffer(natsMsg_GetData(e->request), (size_t)natsMsg_GetDataLength(e->request),
		                      &e->cmd) != ORN_OK) {
			reply_to(sh, e, BUS_FAILED, "invalid", "undecodable command envelope", 0, false);
			finish(sh, e);
			continue;
		}
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
	if (rt->kind->snapshot(e->state, sh->scratch) != ORN_OK)
		return;
	orn_rc rc =
	        es_snapshot_save(rt->store, rt->kind->aggregate, e->id, rt->kind->snapshot_schema, e->version,
	                         mp_writer_data(sh->scratch), mp_writer_size(sh->scratch), false);
	if (rc == ORN_OK) {
		e->since_snapshot = 0;
		atomic_fetch_add(&rt->snapshots, 1);
	} else {
		log_warn("snapshot not saved", "aggregate", rt->kind->aggregate, "id", e->id, "error",
		         orn_strerror(rc));
	}
}

/* orion_command_conflicts_total / orion_command_retries_total of kind; with
 * cause NULL, creates both at 0 (a scrape sees them before the first one). */
static void count_conflict(const act_kind *kind, bool conflict, const char *cause)
{
	const char *const kind_label[] = {"kind", kind->aggregate, NULL};
	const char *const retry_labels[] = {"kind", kind->aggregate, "cause", cause ? cause : "conflict",
	                                    NULL};
	orn_metrics *m = orn_metrics_global();
	orn_metrics_counter_add(
	        m, "orion_command_conflicts_total",
	        "Appends refused because another writer appended first (wrong last sequence).", kind_label,
	        conflict ? 1 : 0);
	orn_metrics_counter_add(m, "orion_command_retries_total",
	                        "Commands tried again after a conflict or an append of unknown outcome.",
	                        retry_labels, cause != NULL ? 1 : 0);
}

/* Applies the events just appended (decoded from the exact bytes stored). */
static orn_rc evolve_commit(shard *sh, entry *e)
{
	size_t count = 0;
	orn_rc rc = env_decode_commit(mp_writer_data(e->commit), mp_writer_size(e->commit), sh->events,
	                              ENV_MAX_EVENTS, &count);
	for (size_t i = 0; rc == ORN_OK && i < count; i++)
		rc = sh->rt->kind->evolve(e->state, &sh->events[i]);
	e->since_snapshot += (unsigned)count;
	return rc;
}

static void on_append_outcome(shard *sh, work *w)
{
	act_runtime *rt = sh->rt;
	entry *e = hmap_get(sh->entries, w->id);
	if (e == NULL || !e->in_flight || e->token != w->token)
		return; /* the ack of an append that already timed out and was retried */
	flight_unlink(sh, e);
	log_set_correlation(e->cmd.correlation);
	if (w->rc == ORN_OK && !w->result.duplicate) {
		atomic_fetch_add(&rt->appends, 1);
		orn_rc rc = evolve_commit(sh, e);
		e->version = w->result.seq;
		reply_to(sh, e, BUS_ACCEPTED, "", "", w->result.seq, false);
		if (rc == ORN_OK)
			maybe_snapshot(sh, e);
		else
			unload(sh, e); /* reload from the stream next time */
	} else if (w->rc == ORN_OK) {
		/* Applied earlier (a retried command id): our state may predate it. */
		e->version = w->result.seq;
		reply_to(sh, e, BUS_ACCEPTED, "", "duplicate command", w->result.seq, true);
		unload(sh, e);
	} else {
		if (w->rc == ORN_ECONFLICT)
			atomic_fetch_add(&rt->conflicts, 1);
		unload(sh, e); /* another writer, or an unknown outcome: reload */
		/* A conflict resolves with one reload; an unknown outcome (NATS
		 * down) is not retried once stopping, so shutdown stays bounded. */
		bool retry = w->rc == ORN_ECONFLICT || !atomic_load(&rt->stopping);
		retry = retry && e->attempts < rt->opt.max_attempts;
		count_conflict(rt->kind, w->rc == ORN_ECONFLICT,
		               !retry                   ? NULL
		               : w->rc == ORN_ECONFLICT ? "conflict"
		                                        : "unknown_outcome");
		if (retry) {
			if (!attempt(sh, e))
				return; /* retry in flight */
		} else {
			reply_to(sh, e, BUS_FAILED, w->rc == ORN_ECONFLICT ? "conflict" : "unavailable",
			         orn_strerror(w->rc), 0, false);
		}
	}
	finish(sh, e);
	run_waiting(sh, e);
}

static void on_command_work(shard *sh, work *w)
{
	entry *e = entry_get(sh, w->id);
	if (e == NULL) {
		reply_simple(sh->rt, w->msg, BUS_FAILED, "unavailable", "out of memory", sh->scratch);
		natsMsg_Destroy(w->msg);
		work_recycle(sh, w);
		return;
	}
	w->next = NULL;
	if (e->waiting_tail != NULL)
		e->waiting_tail->next = w;
	else
		e->waiting_head = w;
	e->waiting_tail = w;
	run_waiting(sh, e);
}

/* Appends whose ack did not come in time: their outcome is unknown, which
 * the retry path handles (reload; the same msg id makes a resend safe). */
static void expire_appends(shard *sh)
{
	int64_t now = orn_monotonic_ns();
	while (sh->flight_head != NULL && sh->flight_head->deadline_ns <= now) {
		entry *e = sh->flight_head;
		work timeout = {.kind = WORK_APPENDED, .token = e->token, .rc = ORN_ETIMEOUT};
		memcpy(timeout.id, e->id, sizeof timeout.id);
		log_warn("append not acknowledged in time", "id", e->id);
		on_append_outcome(sh, &timeout);
	}
}

/* Waits for work, or for the first append deadline. Called with the lock held. */
static void wait_for_work(shard *sh)
{
	while (sh->head == NULL && !(sh->stopping && sh->busy_count == 0)) {
		if (sh->flight_head == NULL) {
			pthread_cond_wait(&sh->wake, &sh->lock);
			continue;
		}
		struct timespec until = {(time_t)(sh->flight_head->deadline_ns / 1000000000),
		                         (long)(sh->flight_head->deadline_ns % 1000000000)};
		if (pthread_cond_timedwait(&sh->wake, &sh->lock, &until) == ETIMEDOUT)
			return;
	}
}

static void *shard_main(void *arg)
{
	shard *sh = arg;
	for (;;) {
		pthread_mutex_lock(&sh->lock);
		wait_for_work(sh);
		work *batch = sh->head;
		sh->head = sh->tail = NULL;
		sh->queued = 0;
		bool done = batch == NULL && sh->stopping && sh->busy_count == 0;
		pthread_mutex_unlock(&sh->lock);
		if (done)
			break;
		while (batch != NULL) {
			work *w = batch;
			batch = w->next;
			if (w->kind == WORK_COMMAND) {
				on_command_work(sh, w); /* takes ownership of w */
			} else {
				on_append_outcome(sh, w);
				work_recycle(sh, w);
			}
		}
		expire_appends(sh);
		evict(sh);
	}
	return NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void shard_dispose(shard *sh)
{
	size_t cursor = 0;
	const char *key = NULL;
	void *value = NULL;
	while (sh->entries != NULL && hmap_next(sh->entries, &cursor, &key, &value)) {
		entry *e = value;
		for (work *w = e->waiting_head; w != NULL;) {
			work *next = w->next;
			natsMsg_Destroy(w->msg);
			free(w);
			w = next;
		}
		natsMsg_Destroy(e->request);
		entry_free(sh, e);
	}
	for (work *w = sh->head; w != NULL;) { /* posted after the thread stopped */
		work *next = w->next;
		natsMsg_Destroy(w->msg);
		free(w);
		w = next;
	}
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
 * do not queue behind appends on the store's socket. */
static orn_rc connect_commands(act_runtime *rt)
{
	natsOptions *opts = NULL;
	char name[64];
	orn_rc rc = ORN_OK;
	snprintf(name, sizeof name, "orion-%s-commands", rt->kind->aggregate);
	/* The store's URL, user and TLS: the same role on a second connection. */
	if ((rc = es_store_nats_options(rt->store, name, &opts)) != ORN_OK)
		return rc;
	if (natsConnection_Connect(&rt->nc, opts) != NATS_OK)
		rc = ORN_EUNAVAILABLE;
	natsOptions_Destroy(opts);
	return rc;
}

/* Subscribes to the runtime's ack inbox on the store's connection (the one
 * appends are published on). */
static orn_rc subscribe_acks(act_runtime *rt)
{
	char pattern[128];
	if (natsInbox_Create(&rt->ack_inbox) != NATS_OK)
		return ORN_ENOMEM;
	rt->ack_prefix_len = strlen(rt->ack_inbox) + 1;
	snprintf(pattern, sizeof pattern, "%s.>", rt->ack_inbox);
	natsStatus st =
	        natsConnection_Subscribe(&rt->ack_sub, es_store_connection(rt->store), pattern, on_ack, rt);
	if (st != NATS_OK)
		return es_status_rc(st, 0);
	natsSubscription_SetPendingLimits(rt->ack_sub, 1000000, 1024 * 1024 * 1024);
	return ORN_OK;
}

/* Stops the ack subscription once every callback has returned. */
static void unsubscribe_acks(act_runtime *rt)
{
	if (rt->ack_sub != NULL) {
		if (natsSubscription_Drain(rt->ack_sub) == NATS_OK)
			natsSubscription_WaitForDrainCompletion(rt->ack_sub, 5000);
		natsSubscription_Destroy(rt->ack_sub);
		rt->ack_sub = NULL;
	}
	natsInbox_Destroy(rt->ack_inbox);
	rt->ack_inbox = NULL;
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
	if (o != NULL)
		rt->opt = *o;
	else
		act_options_init(&rt->opt);
	if (rt->opt.shards == 0)
		rt->opt.shards = 1;
	if (rt->opt.max_attempts == 0)
		rt->opt.max_attempts = 1;
	rt->shard_count = rt->opt.shards;
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
	if ((rc = subscribe_acks(rt)) != ORN_OK)
		goto fail;
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
	count_conflict(kind, false, NULL);
	log_info("actor runtime started", "aggregate", kind->aggregate, "queue", queue);
	*out = rt;
	return ORN_OK;
fail:
	if (rt->sub != NULL)
		natsSubscription_Destroy(rt->sub);
	natsConnection_Destroy(rt->nc);
	stop_shards(rt, started);
	unsubscribe_acks(rt);
	if (rt->shards != NULL)
		for (unsigned i = 0; i < rt->shard_count; i++)
			shard_dispose(&rt->shards[i]);
	free(rt->shards);
	free(rt);
	return rc;
}

void act_runtime_stop(act_runtime *rt)
{
	if (rt == NULL)
		return;
	atomic_store(&rt->stopping, true);
	if (rt->sub != NULL) {
		/* Drain: take no new commands, but hand every received one to a shard. */
		if (natsSubscription_Drain(rt->sub) == NATS_OK)
			natsSubscription_WaitForDrainCompletion(rt->sub, 5000);
		natsSubscription_Destroy(rt->sub);
	}
	stop_shards(rt, rt->shard_count);
	unsubscribe_acks(rt);
	natsConnection_FlushTimeout(rt->nc, 1000); /* the last replies */
	natsConnection_Destroy(rt->nc);
	for (unsigned i = 0; i < rt->shard_count; i++)
		shard_dispose(&rt->shards[i]);
	free(rt->shards);
	log_info("actor runtime stopped", "aggregate", rt->kind->aggregate);
	free(rt);
}

void act_runtime_stats(act_runtime *rt, act_stats *out)
{
	out->commands = atomic_load(&rt->commands);
	out->appends = atomic_load(&rt->appends);
	out->conflicts = atomic_load(&rt->conflicts);
	out->rehydrations = atomic_load(&rt->rehydrations);
	out->snapshots = atomic_load(&rt->snapshots);
	out->failures = atomic_load(&rt->failures);
}
