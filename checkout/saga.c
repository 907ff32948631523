/* saga.c — the checkout saga's imperative shell: the durable pull consumer of
 * order events, the worker threads that execute plans (saga_plan.h) over the
 * command bus, the durable deadline timers in LMDB and the thread that fires
 * them.
 *
 * A step is one order event: load the order (es_load + order_evolve, so the
 * saga keeps no state of its own beyond its consumer position and timers),
 * write the timer change, send the plan's commands one by one, follow with
 * the next plan, then ack. Any command without a final answer naks the event
 * with a backoff; redoing the whole step is safe because every command id is
 * deterministic. A stopping saga abandons a step between two commands and
 * naks it at once, so another instance (or the next start) picks it up.
 *
 * Timers: two sub-databases of one LMDB environment,
 *   "by_deadline"  key deadline_ms (8 bytes, big endian) + order id -> empty
 *   "by_order"     key order id -> deadline_ms (8 bytes, big endian)
 * changed together in one write transaction. The environment syncs on every
 * commit: a timer lost in an OS crash would leave a reservation held forever. */
#include "saga.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "fsdir.h"
#include "log.h"
#include "order.h"
#include "saga_plan.h"

#define ORDER_FILTER       "orion.evt.order.>"
#define ORDER_PREFIX       "orion.evt.order."
#define ACK_WAIT_MS        30000
#define MAX_ACK_PENDING    20000
#define FETCH_BATCH        1   /* one event per fetch spreads a burst over every worker */
#define FETCH_WAIT_MS      500 /* also bounds how long a stop waits for an idle worker */
#define RETRY_FIRST_MS     100 /* nak delay after the first failed delivery, doubling */
#define RETRY_MAX_MS       10000
#define PROGRESS_EVERY_MS  10000 /* a long step tells JetStream it is still at work */
#define TIMER_BATCH        256   /* due timers read per scan */
#define TIMER_MAP_SIZE     (256u << 20)
#define DEADLINE_KEY_BYTES 8

/* The durable consumer of order events every worker binds to. */
static const es_durable_options CONSUMER = {
        .durable = SAGA_CONSUMER,
        .filter = ORDER_FILTER,
        .ack_wait_ms = ACK_WAIT_MS,
        .max_ack_pending = MAX_ACK_PENDING,
};

struct saga {
	es_store *store;
	saga_options o;
	char *state_dir;
	MDB_env *env;
	MDB_dbi by_deadline, by_order;
	atomic_bool stopping;
	pthread_mutex_t lock; /* guards the wait on wake */
	pthread_cond_t wake;  /* signalled by saga_stop */
	pthread_t *workers;
	unsigned workers_started;
	pthread_t timer_thread;
	bool timer_started;
};

/* What became of one step. */
typedef enum step_end {
	STEP_DONE,     /* ack */
	STEP_RETRY,    /* nak with a backoff */
	STEP_ABANDONED /* stopping: nak now */
} step_end;

/* A worker's scratch space, allocated once. */
typedef struct worker {
	saga *s;
	saga_plan *plan, *next;
	order_state *order;
	order_event *event;
	env_envelope *envelopes;
	mp_writer *payload;
	natsMsg *msg;        /* the event in hand */
	int64_t progress_ms; /* when JetStream last heard of it */
	uint64_t version;    /* stream sequence of the last order commit loaded */
	char order_id[SAGA_ID_MAX];
} worker;

void saga_options_init(saga_options *o)
{
	memset(o, 0, sizeof *o);
	o->workers = 8;
	o->command_timeout_ms = 5000;
	o->timer_scan_ms = 200;
}

static bool is_stopping(saga *s)
{
	return atomic_load(&s->stopping);
}

/* Sleeps up to ms, or less if the saga stops. */
static void pause_unless_stopping(saga *s, unsigned ms)
{
	struct timespec until = orn_monotonic_deadline(ms);

	pthread_mutex_lock(&s->lock);
	while (!is_stopping(s) && pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0)
		;
	pthread_mutex_unlock(&s->lock);
}

/* ---- durable timers (LMDB) ---- */

static void put_be64(uint8_t *out, int64_t value)
{
	uint64_t v = (uint64_t)value;

	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)v;
		v >>= 8;
	}
}

static int64_t get_be64(const uint8_t *in)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | in[i];
	return (int64_t)v;
}

static orn_rc timers_open(saga *s)
{
	MDB_txn *txn = NULL;
	int mrc;

	if (orn_make_dirs(s->state_dir) != ORN_OK) {
		log_error("saga cannot create its state directory", "path", s->state_dir);
		return ORN_EIO;
	}
	if ((mrc = mdb_env_create(&s->env)) != 0 || (mrc = mdb_env_set_maxdbs(s->env, 2)) != 0 ||
	    (mrc = mdb_env_set_mapsize(s->env, TIMER_MAP_SIZE)) != 0 ||
	    (mrc = mdb_env_open(s->env, s->state_dir, MDB_NOTLS, 0640)) != 0 ||
	    (mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0 ||
	    (mrc = mdb_dbi_open(txn, "by_deadline", MDB_CREATE, &s->by_deadline)) != 0 ||
	    (mrc = mdb_dbi_open(txn, "by_order", MDB_CREATE, &s->by_order)) != 0)
		goto fail;
	mrc = mdb_txn_commit(txn);
	txn = NULL;
	if (mrc == 0)
		return ORN_OK;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	log_error("saga cannot open its timers", "path", s->state_dir, "error", mdb_strerror(mrc));
	return ORN_EIO;
}

static void timers_close(saga *s)
{
	if (s->env != NULL)
		mdb_env_close(s->env);
	s->env = NULL;
}

/* The deadline stored for order_id into *deadline_ms (0 if none). */
static int timer_get(saga *s, MDB_txn *txn, const char *order_id, int64_t *deadline_ms)
{
	MDB_val key = {strlen(order_id), (void *)order_id}, value;
	int mrc = mdb_get(txn, s->by_order, &key, &value);

	*deadline_ms = 0;
	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc == 0 && value.mv_size == DEADLINE_KEY_BYTES)
		*deadline_ms = get_be64(value.mv_data);
	return mrc;
}

/* Removes order_id's timer (both entries) if it has one. */
static int timer_remove(saga *s, MDB_txn *txn, const char *order_id, int64_t deadline_ms)
{
	uint8_t buf[DEADLINE_KEY_BYTES + ORN_ID_MAX];
	size_t len = strlen(order_id);
	MDB_val key = {len, (void *)order_id};
	MDB_val dkey = {DEADLINE_KEY_BYTES + len, buf};
	int mrc;

	put_be64(buf, deadline_ms);
	memcpy(buf + DEADLINE_KEY_BYTES, order_id, len);
	if ((mrc = mdb_del(txn, s->by_deadline, &dkey, NULL)) != 0 && mrc != MDB_NOTFOUND)
		return mrc;
	mrc = mdb_del(txn, s->by_order, &key, NULL);
	return mrc == MDB_NOTFOUND ? 0 : mrc;
}

static int timer_put(saga *s, MDB_txn *txn, const char *order_id, int64_t deadline_ms)
{
	uint8_t buf[DEADLINE_KEY_BYTES + ORN_ID_MAX], value[DEADLINE_KEY_BYTES];
	size_t len = strlen(order_id);
	MDB_val key = {len, (void *)order_id}, val = {DEADLINE_KEY_BYTES, value};
	MDB_val dkey = {DEADLINE_KEY_BYTES + len, buf}, empty = {0, NULL};
	int mrc;

	put_be64(buf, deadline_ms);
	memcpy(buf + DEADLINE_KEY_BYTES, order_id, len);
	put_be64(value, deadline_ms);
	if ((mrc = mdb_put(txn, s->by_deadline, &dkey, &empty, 0)) != 0)
		return mrc;
	return mdb_put(txn, s->by_order, &key, &val, 0);
}

/* Writes a plan's timer change. With only_if_ms != 0, deletes only if the
 * stored deadline still is only_if_ms (a fired timer a step may have moved). */
static orn_rc timers_apply(saga *s, const char *order_id, saga_timer_op op, int64_t deadline_ms,
                           int64_t only_if_ms)
{
	MDB_txn *txn = NULL;
	int64_t stored = 0, merged;
	int mrc;

	if (op == SAGA_TIMER_UNCHANGED || strlen(order_id) > ORN_ID_MAX)
		return ORN_OK;
	if ((mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0 ||
	    (mrc = timer_get(s, txn, order_id, &stored)) != 0)
		goto fail;
	if (op == SAGA_TIMER_DELETE) {
		if (stored != 0 && (only_if_ms == 0 || stored == only_if_ms))
			mrc = timer_remove(s, txn, order_id, stored);
	} else if ((merged = saga_timer_merge(stored, deadline_ms)) != stored) {
		if (stored == 0 || (mrc = timer_remove(s, txn, order_id, stored)) == 0)
			mrc = timer_put(s, txn, order_id, merged);
	}
	if (mrc != 0)
		goto fail;
	mrc = mdb_txn_commit(txn);
	txn = NULL;
	if (mrc == 0)
		return ORN_OK;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	log_error("saga cannot write a timer", "order_id", order_id, "error", mdb_strerror(mrc));
	return ORN_EIO;
}

typedef struct due_timer {
	char order_id[SAGA_ID_MAX];
	int64_t deadline_ms;
} due_timer;

/* Reads up to cap timers due at now_ms, earliest first, into due[*count]. */
static orn_rc timers_due(saga *s, int64_t now_ms, due_timer *due, size_t cap, size_t *count)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cursor = NULL;
	MDB_val key, value;
	int mrc;

	*count = 0;
	if ((mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (mrc = mdb_cursor_open(txn, s->by_deadline, &cursor)) != 0)
		goto done;
	for (mrc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); mrc == 0 && *count < cap;
	     mrc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
		size_t id_len = key.mv_size - DEADLINE_KEY_BYTES;
		if (key.mv_size <= DEADLINE_KEY_BYTES || id_len > ORN_ID_MAX)
			continue; /* not ours */
		int64_t deadline = get_be64(key.mv_data);
		if (deadline > now_ms)
			break;
		memcpy(due[*count].order_id, (const uint8_t *)key.mv_data + DEADLINE_KEY_BYTES, id_len);
		due[*count].order_id[id_len] = '\0';
		due[(*count)++].deadline_ms = deadline;
	}
	if (mrc == MDB_NOTFOUND)
		mrc = 0;
done:
	if (cursor != NULL)
		mdb_cursor_close(cursor);
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (mrc != 0)
		log_error("saga cannot read its timers", "error", mdb_strerror(mrc));
	return mrc == 0 ? ORN_OK : ORN_EIO;
}

/* ---- sending commands ---- */

/* Sends command i of p; ORN_OK with *reply filled (dispose it) or the
 * transport's error. */
static orn_rc send_command(saga *s, mp_writer *payload, const saga_plan *p, size_t i, bus_reply *reply)
{
	const saga_command *c = &p->commands[i];
	int64_t now = orn_now_ms();
	env_envelope cmd;
	orn_rc rc;

	mp_writer_reset(payload);
	if ((rc = saga_command_encode(p, i, now, payload)) != ORN_OK ||
	    (rc = bus_command_init(&cmd, saga_command_type(c->kind), now, c->command_id, p->order_id,
	                           SAGA_ACTOR, mp_writer_data(payload), mp_writer_size(payload))) != ORN_OK) {
		log_error("saga cannot build a command", "command_id", c->command_id, "error",
		          orn_rc_name(rc));
		return rc;
	}
	rc = bus_send(es_store_connection(s->store), saga_command_aggregate(c->kind), c->target, &cmd,
	              s->o.command_timeout_ms, reply);
	if (rc != ORN_OK)
		log_warn("saga command not answered", "command_id", c->command_id, "error", orn_rc_name(rc));
	return rc;
}

/* Tells JetStream the event in hand is still being worked on, now and then. */
static void keep_alive(worker *w)
{
	int64_t now = orn_now_ms();

	if (now - w->progress_ms < PROGRESS_EVERY_MS)
		return;
	natsMsg_InProgress(w->msg, NULL);
	w->progress_ms = now;
}

/* Sends every command of p in order, recording the answers. */
static step_end execute(worker *w, saga_plan *p)
{
	bus_reply reply;

	for (size_t i = 0; i < p->count; i++) {
		if (is_stopping(w->s))
			return STEP_ABANDONED;
		keep_alive(w);
		if (send_command(w->s, w->payload, p, i, &reply) != ORN_OK)
			return STEP_RETRY;
		saga_reply r = saga_reply_classify(p->commands[i].kind, reply.outcome, reply.code);
		if (reply.outcome != BUS_ACCEPTED)
			log_write(r == SAGA_REPLY_RETRY ? LOG_WARN : LOG_INFO, "saga command not accepted",
			          "command_id", p->commands[i].command_id, "outcome",
			          bus_outcome_name(reply.outcome), "code", reply.code, "detail", reply.detail,
			          (const char *)0);
		bus_reply_dispose(&reply);
		if (r == SAGA_REPLY_RETRY)
			return STEP_RETRY;
		saga_plan_record(p, i, r);
	}
	return STEP_DONE;
}

/* ---- order state ---- */

static orn_rc fold_order(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	worker *w = closure;
	orn_rc rc = order_event_decode(e->type, e->payload, e->payload_len, w->event);

	if (rc == ORN_EINVAL)
		return ORN_OK; /* a type this version does not know changes nothing it acts on */
	if (rc == ORN_OK)
		order_evolve(w->order, w->event);
	return rc;
}

/* Loads the order's current state into w->order. */
static orn_rc load_order(worker *w)
{
	orn_rc rc;

	order_state_init(w->order);
	w->version = 0;
	rc = es_load(w->s->store, ORDER_AGGREGATE, w->order_id, 0, fold_order, w, &w->version);
	if (rc != ORN_OK)
		log_warn("saga cannot load the order", "order_id", w->order_id, "error", orn_rc_name(rc));
	return rc;
}

/* ---- steps ---- */

/* Runs the plans for one event of kind, w->order being the loaded order. */
static step_end run_event(worker *w, order_event_kind kind)
{
	saga_plan *swap;
	step_end end;

	if (saga_plan_for_event(w->plan, w->order_id, kind, w->order) != ORN_OK) {
		log_error("saga has no plan for the event", "order_id", w->order_id, "type",
		          order_event_type(kind));
		return STEP_DONE; /* nothing could ever change that */
	}
	if (timers_apply(w->s, w->order_id, w->plan->timer, w->plan->deadline_ms, 0) != ORN_OK)
		return STEP_RETRY;
	for (;;) {
		if ((end = execute(w, w->plan)) != STEP_DONE)
			return end;
		if (saga_plan_needs_reload(w->plan) && load_order(w) != ORN_OK)
			return STEP_RETRY;
		if (!saga_plan_next(w->plan, w->order, w->next))
			return STEP_DONE;
		swap = w->plan;
		w->plan = w->next;
		w->next = swap;
	}
}

/* Runs every event of the commit in w->msg. */
static step_end run_message(worker *w)
{
	const char *subject = natsMsg_GetSubject(w->msg);
	size_t count = 0, prefix = strlen(ORDER_PREFIX);
	step_end end = STEP_DONE;
	orn_rc rc;

	if (subject == NULL || strncmp(subject, ORDER_PREFIX, prefix) != 0 ||
	    strlen(subject + prefix) > ORN_ID_MAX || !orn_id_valid(subject + prefix) ||
	    env_decode_commit(natsMsg_GetData(w->msg), (size_t)natsMsg_GetDataLength(w->msg), w->envelopes,
	                      ENV_MAX_EVENTS, &count) != ORN_OK) {
		log_error("saga skips a message that is not an order commit", "subject",
		          subject ? subject : "");
		return STEP_DONE;
	}
	strcpy(w->order_id, subject + prefix);
	log_set_correlation(w->order_id);
	if (load_order(w) != ORN_OK) {
		end = STEP_RETRY;
		goto done;
	}
	/* Reads may be answered by a replica (direct get): one that has not yet
	 * got this very commit must not decide the step. */
	jsMsgMetaData *meta = NULL;
	if (natsMsg_GetMetaData(&meta, w->msg) == NATS_OK) {
		bool behind = w->version < meta->Sequence.Stream;
		jsMsgMetaData_Destroy(meta);
		if (behind) {
			log_info("saga read the order behind its event; retrying", "order_id", w->order_id);
			end = STEP_RETRY;
			goto done;
		}
	}
	for (size_t i = 0; i < count && end == STEP_DONE; i++) {
		const env_envelope *e = &w->envelopes[i];
		rc = order_event_decode(e->type, e->payload, e->payload_len, w->event);
		if (rc == ORN_OK)
			end = run_event(w, w->event->kind);
		else if (rc != ORN_EINVAL)
			log_error("saga skips an undecodable order event", "order_id", w->order_id, "type",
			          e->type);
	}
done:
	log_set_correlation(NULL);
	return end;
}

static void handle_message(worker *w, natsMsg *msg)
{
	jsMsgMetaData *meta = NULL;
	uint64_t delivered = 1;
	step_end end;

	w->msg = msg;
	w->progress_ms = orn_now_ms();
	end = run_message(w);
	if (end == STEP_DONE) {
		natsMsg_Ack(msg, NULL);
	} else if (end == STEP_ABANDONED) {
		log_info("saga stopping: step left for redelivery", "order_id", w->order_id);
		natsMsg_Nak(msg, NULL);
	} else {
		if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
			delivered = meta->NumDelivered;
			jsMsgMetaData_Destroy(meta);
		}
		natsMsg_NakWithDelay(msg, es_backoff_ms(delivered, RETRY_FIRST_MS, RETRY_MAX_MS), NULL);
	}
	w->msg = NULL;
}

/* ---- workers ---- */

static orn_rc bind_consumer(saga *s, natsSubscription **sub)
{
	orn_rc rc = es_durable_bind(s->store, &CONSUMER, sub);

	if (rc != ORN_OK)
		log_warn("saga cannot bind to its consumer", "error", orn_rc_name(rc));
	return rc;
}

static void worker_free(worker *w)
{
	free(w->plan);
	free(w->next);
	free(w->order);
	free(w->event);
	free(w->envelopes);
	mp_writer_destroy(w->payload);
	free(w);
}

static worker *worker_create(saga *s)
{
	worker *w = calloc(1, sizeof *w);

	if (w == NULL)
		return NULL;
	w->s = s;
	w->plan = malloc(sizeof *w->plan);
	w->next = malloc(sizeof *w->next);
	w->order = malloc(sizeof *w->order);
	w->event = malloc(sizeof *w->event);
	w->envelopes = malloc(sizeof *w->envelopes * ENV_MAX_EVENTS);
	w->payload = mp_writer_create();
	if (w->plan == NULL || w->next == NULL || w->order == NULL || w->event == NULL ||
	    w->envelopes == NULL || w->payload == NULL) {
		worker_free(w);
		return NULL;
	}
	return w;
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	saga *s = w->s;
	natsSubscription *sub = NULL;
	natsMsgList list;
	jsErrCode jerr;
	natsStatus st;

	while (!is_stopping(s)) {
		if (sub == NULL && bind_consumer(s, &sub) != ORN_OK) {
			pause_unless_stopping(s, RETRY_MAX_MS / 10);
			continue;
		}
		memset(&list, 0, sizeof list);
		jerr = 0;
		st = natsSubscription_Fetch(&list, sub, FETCH_BATCH, FETCH_WAIT_MS, &jerr);
		for (int i = 0; i < list.Count; i++) {
			if (is_stopping(s))
				natsMsg_Nak(list.Msgs[i], NULL); /* not started: back to the others at once */
			else
				handle_message(w, list.Msgs[i]);
		}
		natsMsgList_Destroy(&list);
		if (st == NATS_OK || st == NATS_TIMEOUT)
			continue;
		log_warn("saga fetch failed", "error", natsStatus_GetText(st));
		if (st == NATS_INVALID_SUBSCRIPTION || st == NATS_CONNECTION_CLOSED) {
			natsSubscription_Destroy(sub);
			sub = NULL;
		}
		pause_unless_stopping(s, RETRY_MAX_MS / 10);
	}
	natsSubscription_Destroy(sub);
	worker_free(w);
	return NULL;
}

/* ---- the timer thread ---- */

/* Sends Cancel{expired} for one due timer and deletes or keeps the timer. */
static void fire(saga *s, saga_plan *p, mp_writer *payload, const due_timer *t)
{
	bus_reply reply;
	saga_timer_op op;

	if (saga_plan_expire(p, t->order_id, t->deadline_ms) != ORN_OK) {
		log_error("saga drops a timer of an invalid order id", "order_id", t->order_id);
		timers_apply(s, t->order_id, SAGA_TIMER_DELETE, 0, t->deadline_ms);
		return;
	}
	log_set_correlation(t->order_id);
	if (send_command(s, payload, p, 0, &reply) == ORN_OK) {
		op = saga_timer_after_expire(reply.outcome, reply.code);
		if (op == SAGA_TIMER_DELETE)
			timers_apply(s, t->order_id, SAGA_TIMER_DELETE, 0, t->deadline_ms);
		if (reply.outcome == BUS_ACCEPTED)
			log_info("order expired", "order_id", t->order_id);
		else if (op != SAGA_TIMER_DELETE)
			log_warn("expiry not accepted, will retry", "order_id", t->order_id, "outcome",
			         bus_outcome_name(reply.outcome), "code", reply.code);
		bus_reply_dispose(&reply);
	}
	log_set_correlation(NULL);
}

static void *timer_main(void *arg)
{
	saga *s = arg;
	saga_plan *plan = malloc(sizeof *plan);
	due_timer *due = malloc(sizeof *due * TIMER_BATCH);
	mp_writer *payload = mp_writer_create();
	size_t count = 0;

	if (plan == NULL || due == NULL || payload == NULL) {
		log_error("saga timer thread out of memory");
		goto done;
	}
	while (!is_stopping(s)) {
		if (timers_due(s, orn_now_ms(), due, TIMER_BATCH, &count) == ORN_OK)
			for (size_t i = 0; i < count && !is_stopping(s); i++)
				fire(s, plan, payload, &due[i]);
		pause_unless_stopping(s,
		                      s->o.timer_scan_ms); /* also between full batches: kept timers retry */
	}
done:
	free(plan);
	free(due);
	mp_writer_destroy(payload);
	return NULL;
}

/* ---- lifecycle ---- */

/* Joins whatever was started and frees. */
static void saga_free(saga *s)
{
	atomic_store(&s->stopping, true);
	pthread_mutex_lock(&s->lock);
	pthread_cond_broadcast(&s->wake);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < s->workers_started; i++)
		pthread_join(s->workers[i], NULL);
	if (s->timer_started)
		pthread_join(s->timer_thread, NULL);
	timers_close(s);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s->workers);
	free(s->state_dir);
	free(s);
}

orn_rc saga_start(es_store *store, const saga_options *o, saga **out)
{
	pthread_condattr_t attr;
	saga *s;
	orn_rc rc = ORN_ENOMEM;

	*out = NULL;
	if (store == NULL || o == NULL || o->state_dir == NULL || o->state_dir[0] == '\0')
		return ORN_EINVAL;
	if ((s = calloc(1, sizeof *s)) == NULL)
		return ORN_ENOMEM;
	s->store = store;
	s->o = *o;
	if (s->o.workers == 0)
		s->o.workers = 8;
	if (s->o.command_timeout_ms <= 0)
		s->o.command_timeout_ms = 5000;
	if (s->o.timer_scan_ms == 0)
		s->o.timer_scan_ms = 200;
	atomic_init(&s->stopping, false);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake, &attr);
	pthread_condattr_destroy(&attr);
	s->state_dir = strdup(o->state_dir);
	s->workers = calloc(s->o.workers, sizeof *s->workers);
	if (s->state_dir == NULL || s->workers == NULL)
		goto fail;
	if ((rc = timers_open(s)) != ORN_OK || (rc = es_durable_ensure(s->store, &CONSUMER)) != ORN_OK)
		goto fail;
	rc = ORN_ENOMEM;
	for (unsigned i = 0; i < s->o.workers; i++) {
		worker *w = worker_create(s);
		if (w == NULL)
			goto fail;
		if (pthread_create(&s->workers[i], NULL, worker_main, w) != 0) {
			worker_free(w);
			goto fail;
		}
		s->workers_started++;
	}
	if (pthread_create(&s->timer_thread, NULL, timer_main, s) != 0)
		goto fail;
	s->timer_started = true;
	log_info("checkout saga started", "consumer", SAGA_CONSUMER, "state_dir", s->state_dir);
	*out = s;
	return ORN_OK;
fail:
	saga_free(s);
	return rc;
}

void saga_stop(saga *s)
{
	if (s == NULL)
		return;
	saga_free(s);
	log_info("checkout saga stopped");
}
