/* saga.c — the checkout saga's imperative shell: the durable pull consumer of
 * order events and the worker threads that execute plans (saga_plan.h) over
 * the command bus. Deadlines are not kept here: the timers role fires them
 * from the orders read model (ADR 010).
 *
 * A step is one order event: load the order (es_load + order_evolve, so the
 * saga keeps no state of its own beyond its consumer position), send the
 * plan's commands one by one, follow with the next plan, then ack. Any command without a final answer naks
 * the event with a backoff; redoing the whole step is safe because every command id is deterministic. A
 * stopping saga abandons a step between two commands and naks it at once, so another instance (or the next
 * start) picks it up.
 *
 * The sweeper (sweep.h, ADR 007 addendum) does not trust the durable consumer
 * alone: ORION_SWEEP_AFTER_MS after an order's last event it loads the
 * order, and if that event is still its last, it runs the step again if the
 * step moves stock (placed and still pending, paid, cancelled, payment
 * failed), and the cart's checkout step if the order was ever reserved. The
 * deterministic command ids (and the cart's memory of its last orders) make
 * a step already done a no-op; a step that had been lost appends, and is
 * counted and logged as repaired. */
#include "saga.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "log.h"
#include "metrics.h"
#include "order.h"
#include "saga_plan.h"
#include "stock.h"
#include "sweep.h"

#define ORDER_FILTER      "orion.evt.order.>"
#define ORDER_PREFIX      "orion.evt.order."
#define ACK_WAIT_MS       30000
#define MAX_ACK_PENDING   20000
#define FETCH_BATCH       1   /* one event per fetch spreads a burst over every worker */
#define FETCH_WAIT_MS     500 /* also bounds how long a stop waits for an idle worker */
#define RETRY_FIRST_MS    100 /* nak delay after the first failed delivery, doubling */
#define RETRY_MAX_MS      10000
#define PROGRESS_EVERY_MS 10000 /* a long step tells JetStream it is still at work */
#define SWEEP_AFTER_MS    40000 /* default: after AckWait, so the consumer's own redelivery comes first */

/* The durable consumer of order events every worker binds to. */
static const es_durable_options CONSUMER = {
        .durable = SAGA_CONSUMER,
        .filter = ORDER_FILTER,
        .ack_wait_ms = ACK_WAIT_MS,
        .max_ack_pending = MAX_ACK_PENDING,
};

typedef struct worker worker;

struct saga {
	es_store *store;
	saga_options o;
	atomic_bool stopping;
	atomic_bool bound;    /* a worker has bound to the durable consumer */
	pthread_mutex_t lock; /* guards the wait on wake */
	pthread_cond_t wake;  /* signalled by saga_stop */
	pthread_t *workers;
	unsigned workers_started;
	es_sweep *sweep; /* the sweeper (ADR 007 addendum) and its worker */
	worker *sweep_worker;
	atomic_uint_least64_t swept, repaired, unheld_commits;
};

/* What became of one step. */
typedef enum step_end {
	STEP_DONE,     /* ack */
	STEP_RETRY,    /* nak with a backoff */
	STEP_ABANDONED /* stopping: nak now */
} step_end;

/* A worker's scratch space, allocated once. */
struct worker {
	saga *s;
	saga_plan *plan, *next;
	order_state *order;
	order_event *event;
	env_envelope *envelopes;
	mp_writer *payload;
	natsMsg *msg;               /* the event in hand */
	int64_t progress_ms;        /* when JetStream last heard of it */
	es_position at;             /* of the order as loaded */
	uint64_t event_seq;         /* the commit in hand, looked for while loading */
	bool event_valid;           /* it was met among the valid commits (ADR 015) */
	order_event_kind last_kind; /* of the last event loaded */
	unsigned appended;          /* commands whose answer appended (not a duplicate or a no-op) */
	char order_id[SAGA_ID_MAX];
};

void saga_options_init(saga_options *o)
{
	memset(o, 0, sizeof *o);
	o->workers = 8;
	o->command_timeout_ms = 5000;
	o->sweep_after_ms = SWEEP_AFTER_MS;
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

/* ---- sending commands ---- */

/* Records orion_saga_step_duration_seconds{step, outcome} of one command's
 * round trip (and logs it at debug level); step is the command id's step ("<order>:<step>[:...]", a
 * bounded set: reserve, reserved, release, reject, checkout, commit, ...). */
static void observe_step(const char *command_id, const char *outcome, int64_t start_ns)
{
	static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
	char step[32] = "unknown";
	const char *colon = strchr(command_id, ':');
	if (colon != NULL) {
		size_t n = strcspn(colon + 1, ":");
		if (n > 0 && n < sizeof step)
			snprintf(step, sizeof step, "%.*s", (int)n, colon + 1);
	}
	const char *const labels[] = {"step", step, "outcome", outcome, NULL};
	orn_metrics_observe(orn_metrics_global(), "orion_saga_step_duration_seconds",
	                    "Round trip of one command the checkout saga sends, by plan step.", buckets,
	                    ORN_ARRAY_LEN(buckets), labels, orn_metrics_seconds_since(start_ns));
	log_debug("saga command answered", "command_id", command_id, "step", step, "outcome", outcome);
}

/* Sends command i of p; ORN_OK with *reply filled (dispose it) or the
 * transport's error. The command's correlation id is the thread's (set from
 * the event being handled: the request that started this story), else the
 * order id. */
static orn_rc send_command(const saga *s, mp_writer *payload, const saga_plan *p, size_t i, bus_reply *reply)
{
	const saga_command *c = &p->commands[i];
	const char *correlation = log_correlation()[0] != '\0' ? log_correlation() : p->order_id;
	int64_t now = orn_now_ms(), start_ns = orn_monotonic_ns();
	env_envelope cmd;
	orn_rc rc;

	mp_writer_reset(payload);
	if ((rc = saga_command_encode(p, i, now, payload)) != ORN_OK ||
	    (rc = bus_command_init(&cmd, saga_command_type(c->kind), now, c->command_id, correlation,
	                           SAGA_ACTOR, mp_writer_data(payload), mp_writer_size(payload))) != ORN_OK) {
		log_error("saga cannot build a command", "command_id", c->command_id, "error",
		          orn_rc_name(rc));
		return rc;
	}
	rc = bus_send(es_store_connection(s->store), saga_command_aggregate(c->kind), c->target, &cmd,
	              s->o.command_timeout_ms, reply);
	observe_step(c->command_id,
	             rc == ORN_ETIMEOUT ? "timeout"
	             : rc != ORN_OK     ? "unavailable"
	                                : bus_outcome_name(reply->outcome),
	             start_ns);
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

/* Adds n to orion_saga_unheld_commits_total{code}. */
static void count_unheld(const char *code, uint64_t n)
{
	const char *const labels[] = {"code", code, NULL};
	orn_metrics_counter_add(orn_metrics_global(), "orion_saga_unheld_commits_total",
	                        "CommitStock answers saying a paid order's units were not held by the item "
	                        "(reservation_closed: released; unknown_reservation: never held or "
	                        "forgotten). Any is an alarm: the item may have sold units twice.",
	                        labels, n);
}

/* A paid order's units were not held when its stock was committed: the item
 * may have sold them twice. Retrying cannot hold them again, so the step goes
 * on; operators are told (an error line, a counter to alert on, and
 * `orion verify-stock` to see what the item's history says). */
static void alarm_unheld(saga *s, const saga_plan *p, size_t i, const char *code)
{
	atomic_fetch_add(&s->unheld_commits, 1);
	log_error("paid order's units were not held: the item may have sold them twice", "order_id",
	          p->order_id, "product_id", p->commands[i].target, "code", code);
	count_unheld(code, 1);
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
		if (reply.outcome == BUS_ACCEPTED && reply.seq > 0 && !reply.duplicate)
			w->appended++;
		if (reply.outcome != BUS_ACCEPTED)
			log_write(r == SAGA_REPLY_RETRY ? LOG_WARN : LOG_INFO, "saga command not accepted",
			          "command_id", p->commands[i].command_id, "outcome",
			          bus_outcome_name(reply.outcome), "code", reply.code, "detail", reply.detail,
			          (const char *)0);
		if (saga_reply_sold_unheld(p->commands[i].kind, reply.outcome, reply.code))
			alarm_unheld(w->s, p, i, reply.code);
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

	if (seq == w->event_seq)
		w->event_valid = true;
	if (rc == ORN_EINVAL)
		return ORN_OK; /* a type this version does not know changes nothing it acts on */
	if (rc == ORN_OK) {
		order_evolve(w->order, w->event);
		w->last_kind = w->event->kind;
	}
	return rc;
}

/* Loads the order's current state into w->order, noting whether the commit
 * at w->event_seq is among its valid ones. */
static orn_rc load_order(worker *w)
{
	orn_rc rc;

	order_state_init(w->order);
	w->event_valid = false;
	rc = es_load(w->s->store, ORDER_AGGREGATE, w->order_id, 0, fold_order, w, &w->at);
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
	/* The commit's correlation id (the request that caused it) follows every
	 * command this step sends; older events without one fall back to the order id. */
	log_set_correlation(w->envelopes[0].correlation[0] != '\0' ? w->envelopes[0].correlation
	                                                           : w->order_id);
	jsMsgMetaData *meta = NULL;
	w->event_seq = 0;
	if (natsMsg_GetMetaData(&meta, w->msg) == NATS_OK) {
		w->event_seq = meta->Sequence.Stream;
		jsMsgMetaData_Destroy(meta);
	}
	if (load_order(w) != ORN_OK) {
		end = STEP_RETRY;
		goto done;
	}
	/* Reads may be answered by a replica (direct get): one that has not yet
	 * got this very commit must not decide the step. */
	if (w->at.last_seq < w->event_seq) {
		log_info("saga read the order behind its event; retrying", "order_id", w->order_id);
		end = STEP_RETRY;
		goto done;
	}
	if (!w->event_valid) {
		char seq[24], version[24];
		snprintf(seq, sizeof seq, "%llu", (unsigned long long)w->event_seq);
		snprintf(version, sizeof version, "%llu", (unsigned long long)w->at.version);
		log_info("saga skips a void order commit (ADR 015)", "order_id", w->order_id, "seq", seq,
		         "version", version);
		goto done;
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
	else
		atomic_store(&s->bound, true);
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

/* ---- the sweeper ---- */

/* True for the events whose step moves stock: the ones a lost delivery
 * would leave undone for good (an order pending forever, units held for a
 * paid or cancelled order). */
static bool step_moves_stock(order_event_kind kind, const order_state *order)
{
	switch (kind) {
	case ORDER_PLACED:
		return order->status == ORDER_PENDING;
	case ORDER_PAID:
	case ORDER_CANCELLED_EVENT:
	case ORDER_PAYMENT_FAILED_EVENT:
		return true;
	case ORDER_RESERVED:
	case ORDER_CONFIRMED_BY_CUSTOMER:
		break;
	}
	return false;
}

/* The sweeper's call for an order whose newest commit is due: if that
 * commit is still the order's last, runs its event's step again when the
 * step moves stock, and the cart's checkout step when the order was ever
 * reserved (a lost OrderReserved would leave the ordered lines in the cart;
 * the cart remembers its last orders, so a checkout done already is a
 * no-op). */
static es_sweep_verdict sweep_one(void *closure, const es_sweep_commit *c)
{
	saga *s = closure;
	worker *w = s->sweep_worker;
	step_end end = STEP_DONE;
	const char *order_id = es_sweep_id(c->subject, ORDER_PREFIX);

	if (order_id == NULL || strlen(order_id) >= sizeof w->order_id)
		return ES_SWEEP_DONE;
	strcpy(w->order_id, order_id);
	log_set_correlation(c->correlation[0] != '\0' ? c->correlation : w->order_id);
	w->event_seq = c->seq;
	if (load_order(w) != ORN_OK || w->at.last_seq < c->seq) {
		end = STEP_RETRY; /* NATS unavailable, or a read from before the event */
		goto done;
	}
	bool stock_step = step_moves_stock(w->last_kind, w->order);
	bool checkout_step = saga_plan_checkout_swept(w->order);
	if (!w->event_valid || w->at.version > c->seq || (!stock_step && !checkout_step))
		goto done; /* a void commit, the order moved on, or nothing to redo */
	w->appended = 0;
	if (checkout_step && (end = run_event(w, ORDER_RESERVED)) != STEP_DONE)
		goto done;
	if (stock_step)
		end = run_event(w, w->last_kind);
	if (end != STEP_DONE)
		goto done;
	atomic_fetch_add(&s->swept, 1);
	const char *outcome = "redone";
	if (w->appended > 0) {
		outcome = "repaired";
		atomic_fetch_add(&s->repaired, 1);
		log_warn("saga step repaired: its event had not been handled", "order_id", w->order_id,
		         "type", order_event_type(w->last_kind));
	}
	const char *const labels[] = {"outcome", outcome, NULL};
	orn_metrics_counter_add(orn_metrics_global(), "orion_saga_sweeps_total",
	                        "Saga steps run again by the sweeper because their order had not moved on: "
	                        "redone (nothing left to do) or repaired (the step had been lost).",
	                        labels, 1);
done:
	log_set_correlation(NULL);
	return end == STEP_DONE ? ES_SWEEP_DONE : ES_SWEEP_RETRY;
}

static orn_rc sweeper_start(saga *s)
{
	es_sweep_options o = {.filter = ORDER_FILTER,
	                      .after_ms = s->o.sweep_after_ms,
	                      .newest_only = true,
	                      .retry_first_ms = RETRY_FIRST_MS,
	                      .retry_max_ms = RETRY_MAX_MS,
	                      .fn = sweep_one,
	                      .closure = s,
	                      .name = "checkout"};

	if ((s->sweep_worker = worker_create(s)) == NULL)
		return ORN_ENOMEM;
	return es_sweep_start(s->store, &o, &s->sweep);
}

static void sweeper_stop(saga *s)
{
	es_sweep_stop(s->sweep);
	s->sweep = NULL;
	if (s->sweep_worker != NULL)
		worker_free(s->sweep_worker);
	s->sweep_worker = NULL;
}

bool saga_consumer_bound(saga *s)
{
	return s != NULL && atomic_load(&s->bound);
}

void saga_stats_get(saga *s, saga_stats *out)
{
	memset(out, 0, sizeof *out);
	if (s == NULL)
		return;
	out->swept = atomic_load(&s->swept);
	out->repaired = atomic_load(&s->repaired);
	out->sweep_dropped = es_sweep_dropped(s->sweep);
	out->unheld_commits = atomic_load(&s->unheld_commits);
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
	sweeper_stop(s);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s->workers);
	free(s);
}

orn_rc saga_start(es_store *store, const saga_options *o, saga **out)
{
	pthread_condattr_t attr;
	saga *s;
	orn_rc rc = ORN_ENOMEM;

	*out = NULL;
	if (store == NULL || o == NULL)
		return ORN_EINVAL;
	if ((s = calloc(1, sizeof *s)) == NULL)
		return ORN_ENOMEM;
	s->store = store;
	s->o = *o;
	if (s->o.workers == 0)
		s->o.workers = 8;
	if (s->o.command_timeout_ms <= 0)
		s->o.command_timeout_ms = 5000;
	if (s->o.sweep_after_ms == 0)
		s->o.sweep_after_ms = SWEEP_AFTER_MS;
	/* the alarm exists at 0 from the start, so an alert on it works at once */
	count_unheld(stock_verdict_code(STOCK_REJ_CLOSED), 0);
	count_unheld(stock_verdict_code(STOCK_REJ_UNKNOWN_RESERVATION), 0);
	atomic_init(&s->stopping, false);
	atomic_init(&s->bound, false);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake, &attr);
	pthread_condattr_destroy(&attr);
	s->workers = calloc(s->o.workers, sizeof *s->workers);
	if (s->workers == NULL)
		goto fail;
	if ((rc = es_durable_ensure(s->store, &CONSUMER)) != ORN_OK)
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
	if (s->o.sweep_after_ms > 0 && (rc = sweeper_start(s)) != ORN_OK)
		goto fail;
	log_info("checkout saga started", "consumer", SAGA_CONSUMER);
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
