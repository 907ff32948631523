/* timers.c — the timers role's thread (see timers.h): scan the due deadlines
 * of the orders read model, send Cancel{expired} for every one at once (the
 * kit's sender), and remember for a while what was sent.
 *
 * The memory is a list of the deadlines of the last scan with, for each, when
 * it may be fired again: soon after a final answer (the local read model
 * normally drops the deadline within milliseconds; if it still lists it then,
 * the same command is sent again, which is harmless), later and later after
 * an unanswered or early one. A deadline the read model no longer lists is
 * forgotten. Losing this memory (a restart) costs one more command per due
 * deadline, nothing else: correctness rests on the deterministic command id
 * and the order decider, not on it. */
#include "timers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "kit.h"
#include "log.h"
#include "saga_plan.h"

#define SETTLED_HOLD_MS 1000 /* a deadline answered for good is not sent again before this */

/* A deadline seen in the last scan and when it may be fired again. */
typedef struct fired {
	proj_order_due due;
	int64_t next_ms;   /* 0: fire at once */
	uint64_t attempts; /* answers that were not final */
} fired;

struct timers {
	es_store *store;
	proj_orders *orders;
	timers_options o;
	atomic_bool stopping;
	pthread_mutex_t lock; /* guards the wait on wake */
	pthread_cond_t wake;  /* signalled by timers_stop */
	pthread_t thread;
	bool started;
	kit_sender *sender; /* the expiries of a scan, all at once */
	/* the scanning thread's working memory */
	saga_plan *plans;     /* TIMERS_BATCH_MAX */
	mp_writer **payloads; /* TIMERS_BATCH_MAX */
	kit_send *sends;      /* TIMERS_BATCH_MAX */
	proj_order_due *due;
	fired *memory, *next_memory;
	size_t memory_count;
	/* counters, read by timers_stats_get on any thread */
	atomic_uint_least64_t scans, sent, expired, settled, retried;
};

void timers_options_init(timers_options *o)
{
	memset(o, 0, sizeof *o);
	o->scan_ms = 200;
	o->command_timeout_ms = 5000;
	o->retry_max_ms = 10000;
}

static bool is_stopping(timers *t)
{
	return atomic_load(&t->stopping);
}

/* Sleeps up to ms, or less if the timers stop. */
static void pause_unless_stopping(timers *t, unsigned ms)
{
	struct timespec until = orn_monotonic_deadline(ms);

	pthread_mutex_lock(&t->lock);
	while (!is_stopping(t) && pthread_cond_timedwait(&t->wake, &t->lock, &until) == 0)
		;
	pthread_mutex_unlock(&t->lock);
}

/* The memory of the last scan about d, NULL if it had none. */
static const fired *recall(const timers *t, const proj_order_due *d)
{
	for (size_t i = 0; i < t->memory_count; i++) {
		const fired *f = &t->memory[i];
		if (f->due.deadline_ms == d->deadline_ms && strcmp(f->due.id, d->id) == 0)
			return f;
	}
	return NULL;
}

/* Builds Cancel{expired} for d as sends[n] (its plan in plans[n], its
 * payload in payloads[n]); false if d is no order id (nothing could expire it). */
static bool prepare(timers *t, const proj_order_due *d, int64_t now_ms, size_t n)
{
	saga_plan *p = &t->plans[n];
	mp_writer *w = t->payloads[n];
	if (saga_plan_expire(p, d->id, d->deadline_ms) != ORN_OK)
		return false;
	const saga_command *c = &p->commands[0];
	mp_writer_reset(w);
	orn_rc rc = saga_command_encode(p, 0, now_ms, w);
	if (rc == ORN_OK)
		rc = mp_writer_status(w);
	if (rc != ORN_OK) {
		log_error("timers cannot build an expiry", "command_id", c->command_id, "error",
		          orn_rc_name(rc));
		return false;
	}
	t->sends[n] = (kit_send){.aggregate = saga_command_aggregate(c->kind),
	                         .id = c->target,
	                         .type = saga_command_type(c->kind),
	                         .command_id = c->command_id,
	                         .correlation = p->order_id,
	                         .payload = mp_writer_data(w),
	                         .len = mp_writer_size(w)};
	return true;
}

/* What the answer to sends[n] means for the plan (logged and counted). */
static saga_reply settle(timers *t, size_t n)
{
	const kit_send *sent = &t->sends[n];
	const saga_command *c = &t->plans[n].commands[0];
	const char *order_id = t->plans[n].order_id;
	saga_reply r = SAGA_REPLY_RETRY;
	log_set_correlation(order_id);
	atomic_fetch_add(&t->sent, 1);
	if (sent->rc != ORN_OK) {
		log_warn("expiry not answered, will retry", "command_id", c->command_id, "error",
		         orn_rc_name(sent->rc));
		atomic_fetch_add(&t->retried, 1);
		log_set_correlation(NULL);
		return r;
	}
	const bus_reply *reply = &sent->reply;
	r = saga_reply_classify(c->kind, reply->outcome, reply->code);
	if (reply->outcome == BUS_ACCEPTED)
		log_info("order expired", "order_id", order_id, "command_id", c->command_id);
	else if (r == SAGA_REPLY_RETRY)
		log_warn("expiry not accepted, will retry", "order_id", order_id, "outcome",
		         bus_outcome_name(reply->outcome), "code", reply->code);
	else
		log_info("expiry not needed: the order left that state", "order_id", order_id, "code",
		         reply->code);
	atomic_fetch_add(reply->outcome == BUS_ACCEPTED ? &t->expired
	                 : r == SAGA_REPLY_RETRY        ? &t->retried
	                                                : &t->settled,
	                 1);
	log_set_correlation(NULL);
	return r;
}

/* One scan: fires at once every deadline due and not held back, and keeps
 * the memory of exactly the deadlines listed now. */
static void scan(timers *t)
{
	size_t count = 0, kept = 0, fired_count = 0;
	size_t fired_at[TIMERS_BATCH_MAX]; /* memory slot of each command sent */
	int64_t now = orn_now_ms();

	atomic_fetch_add(&t->scans, 1);
	if (proj_orders_due(t->orders, now, t->due, TIMERS_BATCH_MAX, &count) != ORN_OK) {
		log_warn("timers cannot read the due deadlines");
		return;
	}
	for (size_t i = 0; i < count; i++) {
		const fired *before = recall(t, &t->due[i]);
		fired *f = &t->next_memory[kept++];
		f->due = t->due[i];
		f->next_ms = before != NULL ? before->next_ms : 0;
		f->attempts = before != NULL ? before->attempts : 0;
		if (f->next_ms > now)
			continue;
		if (!prepare(t, &t->due[i], now, fired_count)) {
			f->next_ms = now + SETTLED_HOLD_MS; /* not an order id: nothing could expire it */
			continue;
		}
		fired_at[fired_count++] = kept - 1;
	}
	if (fired_count > 0 && !is_stopping(t))
		(void)kit_send_all(t->sender, t->sends, fired_count);
	for (size_t n = 0; n < fired_count; n++) {
		fired *f = &t->next_memory[fired_at[n]];
		if (settle(t, n) == SAGA_REPLY_RETRY)
			f->next_ms =
			        orn_now_ms() + es_backoff_ms(++f->attempts, t->o.scan_ms, t->o.retry_max_ms);
		else
			f->next_ms = orn_now_ms() + SETTLED_HOLD_MS;
		if (t->sends[n].rc == ORN_OK)
			bus_reply_dispose(&t->sends[n].reply);
	}
	fired *swap = t->memory;
	t->memory = t->next_memory;
	t->next_memory = swap;
	t->memory_count = kept;
}

static void *timers_main(void *arg)
{
	timers *t = arg;

	while (!is_stopping(t)) {
		scan(t);
		pause_unless_stopping(t, t->o.scan_ms);
	}
	return NULL;
}

/* Joins the thread if it runs and frees. */
static void timers_free(timers *t)
{
	atomic_store(&t->stopping, true);
	pthread_mutex_lock(&t->lock);
	pthread_cond_broadcast(&t->wake);
	pthread_mutex_unlock(&t->lock);
	kit_sender_stop(t->sender); /* a scan in progress gives up at once */
	if (t->started)
		pthread_join(t->thread, NULL);
	kit_sender_destroy(t->sender);
	pthread_cond_destroy(&t->wake);
	pthread_mutex_destroy(&t->lock);
	for (size_t i = 0; t->payloads != NULL && i < TIMERS_BATCH_MAX; i++)
		mp_writer_destroy(t->payloads[i]);
	free(t->payloads);
	free(t->plans);
	free(t->sends);
	free(t->due);
	free(t->memory);
	free(t->next_memory);
	free(t);
}

orn_rc timers_start(es_store *store, proj_orders *orders, const timers_options *o, timers **out)
{
	pthread_condattr_t attr;
	timers *t;

	*out = NULL;
	if (store == NULL || orders == NULL || o == NULL)
		return ORN_EINVAL;
	if ((t = calloc(1, sizeof *t)) == NULL)
		return ORN_ENOMEM;
	t->store = store;
	t->orders = orders;
	t->o = *o;
	if (t->o.scan_ms == 0)
		t->o.scan_ms = 200;
	if (t->o.command_timeout_ms <= 0)
		t->o.command_timeout_ms = 5000;
	if (t->o.retry_max_ms < (int64_t)t->o.scan_ms)
		t->o.retry_max_ms = 10000;
	atomic_init(&t->stopping, false);
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&t->wake, &attr);
	pthread_condattr_destroy(&attr);
	t->plans = malloc(sizeof *t->plans * TIMERS_BATCH_MAX);
	t->payloads = calloc(TIMERS_BATCH_MAX, sizeof *t->payloads);
	t->sends = calloc(TIMERS_BATCH_MAX, sizeof *t->sends);
	t->due = malloc(sizeof *t->due * TIMERS_BATCH_MAX);
	t->memory = malloc(sizeof *t->memory * TIMERS_BATCH_MAX);
	t->next_memory = malloc(sizeof *t->next_memory * TIMERS_BATCH_MAX);
	bool ok = t->plans != NULL && t->payloads != NULL && t->sends != NULL && t->due != NULL &&
	          t->memory != NULL && t->next_memory != NULL;
	for (size_t i = 0; ok && i < TIMERS_BATCH_MAX; i++)
		ok = (t->payloads[i] = mp_writer_create()) != NULL;
	kit_sender_options so = {.actor = TIMERS_ACTOR, .timeout_ms = t->o.command_timeout_ms, .tries = 1};
	orn_rc rc = ok ? kit_sender_create(store, &so, &t->sender) : ORN_ENOMEM;
	if (rc == ORN_OK && pthread_create(&t->thread, NULL, timers_main, t) != 0)
		rc = ORN_ENOMEM;
	if (rc != ORN_OK) {
		timers_free(t);
		return rc;
	}
	t->started = true;
	log_info("timers started");
	*out = t;
	return ORN_OK;
}

void timers_stop(timers *t)
{
	if (t == NULL)
		return;
	timers_free(t);
	log_info("timers stopped");
}

void timers_stats_get(timers *t, timers_stats *out)
{
	out->scans = atomic_load(&t->scans);
	out->sent = atomic_load(&t->sent);
	out->expired = atomic_load(&t->expired);
	out->settled = atomic_load(&t->settled);
	out->retried = atomic_load(&t->retried);
}

/* ---- the role's descriptor (role.h) ---- */

typedef struct timers_settings {
	long command_timeout_ms;
} timers_settings;

static const orn_setting timers_settings_table[] = {
        KIT_COMMAND_TIMEOUT_SETTING(timers_settings, command_timeout_ms),
        ORN_SETTING_END,
};

/* It reads the orders read model the process's projector offers. */
static orn_rc timers_role_start(const role_context *ctx, void **handle)
{
	const timers_settings *set = ctx->settings;
	proj_orders *orders =
	        ctx->offer != NULL ? (proj_orders *)ctx->offer(ctx->host, TIMERS_NEEDS_ORDERS) : NULL;
	timers_options o;
	timers *t = NULL;
	if (orders == NULL) {
		log_error("the timers role needs the orders read model of a projector in its process");
		return ORN_EINVAL;
	}
	timers_options_init(&o);
	o.command_timeout_ms = set->command_timeout_ms;
	orn_rc rc = timers_start(ctx->store, orders, &o, &t);
	*handle = t;
	return rc;
}

static void timers_role_stop(void *handle)
{
	timers_stop(handle);
}

static const char *const timers_sends[] = {ORDER_AGGREGATE, NULL};
static const char *const timers_needs[] = {"projector", NULL};

const role_descriptor timers_role = {
        .name = "timers",
        .summary = "fires the orders' deadlines (brings the projector)",
        .stage = ROLE_SENDS,
        .needs = timers_needs,
        .nats = {.sends = timers_sends},
        .settings = timers_settings_table,
        .settings_size = sizeof(timers_settings),
        .start = timers_role_start,
        .stop = timers_role_stop,
};
