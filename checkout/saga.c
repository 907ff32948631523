/* saga.c — the checkout saga's handler on the kit (see saga.h): plans of
 * saga_plan.h executed over the command bus. Deadlines are not kept here: the
 * timers role fires them from the orders read model (ADR 010).
 *
 * A step is one order commit: fold the order (kit_fold, which also says
 * whether the commit is a valid one, ADR 015), send every command of the plan
 * at once, record the answers, follow with the next plan, then KIT_DONE. Any
 * command without a final answer makes the step KIT_RETRY; redoing the whole
 * step is safe because every command id is deterministic. A stopping saga
 * abandons a step between two plans (the kit gives it back at once).
 *
 * Only OrderPlaced needs the order as it is now (a redelivered OrderPlaced
 * reserves only while the order is still pending); every other step acts on
 * the order's lines, which never change, so the fold stops at the commit
 * delivered. The sweeper (ADR 007 addendum) calls the same handler with
 * delivered 0: if the commit is still the order's last, it runs the step
 * again if the step moves stock (placed and still pending, paid, cancelled,
 * payment failed), and the cart's checkout step if the order was ever
 * reserved; a step that appended something had been lost (repaired). */
#include "saga.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "cart.h"
#include "holds.h"
#include "log.h"
#include "metrics.h"
#include "order.h"
#include "saga_plan.h"
#include "stock.h"

#define ORDER_FILTER    "orion.evt.order.>"
#define ACK_WAIT_MS     30000
#define MAX_ACK_PENDING 20000
#define FETCH_BATCH     4
#define RETRY_FIRST_MS  100 /* delay after the first failed delivery, doubling */
#define RETRY_MAX_MS    10000
#define SWEEP_AFTER_MS  40000 /* default: after AckWait, so the consumer's own redelivery comes first */

struct saga {
	es_store *store;
	kit_hub *hub;
	saga_options o;
	kit_sender *sender;
	kit_consumer *consumer;
	atomic_uint_least64_t swept, repaired, unheld_commits;
};

/* What became of one step. */
typedef enum step_end {
	STEP_DONE,  /* every command answered for good */
	STEP_RETRY, /* an answer is missing or temporary: the step is redone later */
} step_end;

/* A worker's scratch space, allocated once. */
typedef struct worker {
	saga *s;
	saga_plan *plan, *next;
	order_state *order;
	order_event *event;
	mp_writer *payloads; /* the plan's payloads, back to back */
	kit_send *sends;     /* SAGA_COMMANDS_MAX */
	kit_folded folded;   /* the order's position as folded */
	unsigned appended;   /* commands whose answer appended (not a duplicate or a no-op) */
	const kit_commit *commit;
} worker;

void saga_options_init(saga_options *o)
{
	memset(o, 0, sizeof *o);
	o->workers = 8;
	o->command_timeout_ms = 5000;
	o->sweep_after_ms = SWEEP_AFTER_MS;
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

/* Encodes every command of p into w->payloads and w->sends. */
static orn_rc prepare(worker *w, const saga_plan *p, const char *correlation)
{
	int64_t now = orn_now_ms();
	size_t offsets[SAGA_COMMANDS_MAX + 1];
	orn_rc rc = ORN_OK;
	mp_writer_reset(w->payloads);
	for (size_t i = 0; i < p->count && rc == ORN_OK; i++) {
		offsets[i] = mp_writer_size(w->payloads);
		rc = saga_command_encode(p, i, now, w->payloads);
	}
	if (rc == ORN_OK)
		rc = mp_writer_status(w->payloads);
	offsets[p->count] = mp_writer_size(w->payloads);
	for (size_t i = 0; i < p->count && rc == ORN_OK; i++) {
		const saga_command *c = &p->commands[i];
		w->sends[i] = (kit_send){.aggregate = saga_command_aggregate(c->kind),
		                         .id = c->target,
		                         .type = saga_command_type(c->kind),
		                         .command_id = c->command_id,
		                         .correlation = correlation,
		                         .payload = mp_writer_data(w->payloads) + offsets[i],
		                         .len = offsets[i + 1] - offsets[i]};
	}
	if (rc != ORN_OK)
		log_error("saga cannot build its commands", "order_id", p->order_id, "error",
		          orn_rc_name(rc));
	return rc;
}

/* Records the answer to command i of p; false if the step must be redone. */
static bool record(worker *w, saga_plan *p, size_t i, int64_t start_ns)
{
	const kit_send *sent = &w->sends[i];
	const bus_reply *reply = &sent->reply;
	const saga_command *c = &p->commands[i];
	observe_step(c->command_id,
	             sent->rc == ORN_ETIMEOUT ? "timeout"
	             : sent->rc != ORN_OK     ? "unavailable"
	                                      : bus_outcome_name(reply->outcome),
	             start_ns);
	if (sent->rc != ORN_OK) {
		log_warn("saga command not answered", "command_id", c->command_id, "error",
		         orn_rc_name(sent->rc));
		return false;
	}
	saga_reply r = saga_reply_classify(c->kind, reply->outcome, reply->code);
	if (reply->outcome == BUS_ACCEPTED && reply->seq > 0 && !reply->duplicate)
		w->appended++;
	if (reply->outcome != BUS_ACCEPTED)
		log_write(r == SAGA_REPLY_RETRY ? LOG_WARN : LOG_INFO, "saga command not accepted",
		          "command_id", c->command_id, "outcome", bus_outcome_name(reply->outcome), "code",
		          reply->code, "detail", reply->detail, (const char *)0);
	if (saga_reply_sold_unheld(c->kind, reply->outcome, reply->code))
		alarm_unheld(w->s, p, i, reply->code);
	if (r == SAGA_REPLY_RETRY)
		return false;
	saga_plan_record(p, i, r);
	return true;
}

/* Sends every command of p at once and records the answers. */
static step_end execute(worker *w, saga_plan *p)
{
	const char *correlation = log_correlation()[0] != '\0' ? log_correlation() : p->order_id;
	int64_t start_ns = orn_monotonic_ns();
	bool all = true;
	if (p->count == 0)
		return STEP_DONE;
	if (kit_sender_stopping(w->s->sender) || prepare(w, p, correlation) != ORN_OK)
		return STEP_RETRY;
	(void)kit_send_all(w->s->sender, w->sends, p->count);
	for (size_t i = 0; i < p->count; i++) {
		all &= record(w, p, i, start_ns);
		if (w->sends[i].rc == ORN_OK)
			bus_reply_dispose(&w->sends[i].reply);
	}
	return all ? STEP_DONE : STEP_RETRY;
}

/* ---- order state ---- */

/* Folds the order of the commit in hand into w->order: up to its head, or
 * up to the commit itself (up_to), watching whether the commit is valid. */
static orn_rc fold_order(worker *w, uint64_t up_to)
{
	kit_fold_query q = {.up_to = up_to, .watch = w->commit->seq};
	orn_rc rc = kit_fold(w->s->hub, w->s->store, &order_kind, w->commit->id, &q, w->order, &w->folded);
	if (rc != ORN_OK)
		log_warn("saga cannot load the order", "order_id", w->commit->id, "error", orn_rc_name(rc));
	return rc;
}

/* ---- steps ---- */

/* Runs the plans for one event of kind, w->order being the folded order. */
static step_end run_event(worker *w, order_event_kind kind)
{
	const char *order_id = w->commit->id;
	saga_plan *swap;
	step_end end;

	if (saga_plan_for_event(w->plan, order_id, kind, w->order) != ORN_OK) {
		log_error("saga has no plan for the event", "order_id", order_id, "type",
		          order_event_type(kind));
		return STEP_DONE; /* nothing could ever change that */
	}
	for (;;) {
		if ((end = execute(w, w->plan)) != STEP_DONE)
			return end;
		if (saga_plan_needs_reload(w->plan) && fold_order(w, 0) != ORN_OK)
			return STEP_RETRY;
		if (!saga_plan_next(w->plan, w->order, w->next))
			return STEP_DONE;
		if (kit_sender_stopping(w->s->sender))
			return STEP_RETRY; /* abandoned between two plans: given back at once */
		swap = w->plan;
		w->plan = w->next;
		w->next = swap;
	}
}

/* The kind of event e, or false for a type this version does not act on. */
static bool event_kind(worker *w, const env_envelope *e, order_event_kind *kind)
{
	orn_rc rc = order_event_decode(e->type, e->payload, e->payload_len, w->event);
	if (rc == ORN_OK) {
		*kind = w->event->kind;
		return true;
	}
	if (rc != ORN_EINVAL)
		log_error("saga skips an undecodable order event", "order_id", w->commit->id, "type",
		          e->type);
	return false;
}

/* True if the commit holds an OrderPlaced: its step depends on the order now. */
static bool needs_present(worker *w, const kit_commit *c)
{
	order_event_kind kind;
	for (size_t i = 0; i < c->count; i++)
		if (event_kind(w, &c->events[i], &kind) && kind == ORDER_PLACED)
			return true;
	return false;
}

/* Logs a void commit (it changes nothing, ADR 015). */
static void skip_void(worker *w, const kit_commit *c)
{
	char seq[24], version[24];
	snprintf(seq, sizeof seq, "%llu", (unsigned long long)c->seq);
	snprintf(version, sizeof version, "%llu", (unsigned long long)w->folded.at.version);
	log_info("saga skips a void order commit (ADR 015)", "order_id", c->id, "seq", seq, "version",
	         version);
}

/* A delivery of the consumer: every event of the commit in turn. */
static step_end run_delivery(worker *w, const kit_commit *c)
{
	step_end end = STEP_DONE;
	order_event_kind kind;
	if (fold_order(w, needs_present(w, c) ? 0 : c->seq) != ORN_OK)
		return STEP_RETRY;
	/* Reads may be answered by a replica (direct get): one that has not yet
	 * got this very commit must not decide the step. */
	if (w->folded.at.last_seq < c->seq) {
		log_info("saga read the order behind its event; retrying", "order_id", c->id);
		return STEP_RETRY;
	}
	if (!w->folded.watched_valid) {
		skip_void(w, c);
		return STEP_DONE;
	}
	for (size_t i = 0; i < c->count && end == STEP_DONE; i++)
		if (event_kind(w, &c->events[i], &kind))
			end = run_event(w, kind);
	return end;
}

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
	case ORDER_SHIPPED_EVENT:
	case ORDER_DELIVERED_EVENT:
		break;
	}
	return false;
}

static void count_sweep(saga *s, worker *w, order_event_kind last)
{
	atomic_fetch_add(&s->swept, 1);
	const char *outcome = "redone";
	if (w->appended > 0) {
		outcome = "repaired";
		atomic_fetch_add(&s->repaired, 1);
		log_warn("saga step repaired: its event had not been handled", "order_id", w->commit->id,
		         "type", order_event_type(last));
	}
	const char *const labels[] = {"outcome", outcome, NULL};
	orn_metrics_counter_add(orn_metrics_global(), "orion_saga_sweeps_total",
	                        "Saga steps run again by the sweeper because their order had not moved on: "
	                        "redone (nothing left to do) or repaired (the step had been lost).",
	                        labels, 1);
}

/* The sweeper's call for an order whose newest commit is due: if that
 * commit is still the order's last, runs its event's step again when the
 * step moves stock, and the cart's checkout step when the order was ever
 * reserved (a lost OrderReserved would leave the ordered lines in the cart;
 * the cart remembers its last orders, so a checkout done already is a
 * no-op). */
static step_end run_sweep(worker *w, const kit_commit *c)
{
	order_event_kind last = ORDER_PLACED;
	bool known = false;
	step_end end = STEP_DONE;
	if (fold_order(w, 0) != ORN_OK || w->folded.at.last_seq < c->seq)
		return STEP_RETRY; /* NATS unavailable, or a read from before the event */
	for (size_t i = 0; i < c->count; i++)
		known |= event_kind(w, &c->events[i], &last);
	bool stock_step = known && step_moves_stock(last, w->order);
	bool checkout_step = saga_plan_checkout_swept(w->order);
	if (!w->folded.watched_valid || w->folded.at.version > c->seq || (!stock_step && !checkout_step))
		return STEP_DONE; /* a void commit, the order moved on, or nothing to redo */
	w->appended = 0;
	if (checkout_step && (end = run_event(w, ORDER_RESERVED)) != STEP_DONE)
		return end;
	if (stock_step && (end = run_event(w, last)) != STEP_DONE)
		return end;
	count_sweep(w->s, w, last);
	return STEP_DONE;
}

static kit_verdict handle(void *arg, const kit_commit *c)
{
	worker *w = arg;
	w->commit = c;
	step_end end = c->delivered == 0 ? run_sweep(w, c) : run_delivery(w, c);
	if (end != STEP_DONE && kit_sender_stopping(w->s->sender))
		log_info("saga stopping: step left for redelivery", "order_id", c->id);
	w->commit = NULL;
	return end == STEP_DONE ? KIT_DONE : KIT_RETRY;
}

/* ---- workers ---- */

static void worker_destroy(void *arg)
{
	worker *w = arg;
	if (w == NULL)
		return;
	free(w->plan);
	free(w->next);
	free(w->order);
	free(w->event);
	free(w->sends);
	mp_writer_destroy(w->payloads);
	free(w);
}

static void *worker_create(void *closure)
{
	worker *w = calloc(1, sizeof *w);
	if (w == NULL)
		return NULL;
	w->s = closure;
	w->plan = malloc(sizeof *w->plan);
	w->next = malloc(sizeof *w->next);
	w->order = malloc(sizeof *w->order);
	w->event = malloc(sizeof *w->event);
	w->sends = calloc(SAGA_COMMANDS_MAX, sizeof *w->sends);
	w->payloads = mp_writer_create();
	if (w->plan == NULL || w->next == NULL || w->order == NULL || w->event == NULL || w->sends == NULL ||
	    w->payloads == NULL) {
		worker_destroy(w);
		return NULL;
	}
	return w;
}

bool saga_consumer_bound(saga *s)
{
	return s != NULL && kit_consumer_bound(s->consumer);
}

void saga_stats_get(saga *s, saga_stats *out)
{
	kit_consumer_stats ks;
	memset(out, 0, sizeof *out);
	if (s == NULL)
		return;
	kit_consumer_stats_get(s->consumer, &ks);
	out->swept = atomic_load(&s->swept);
	out->repaired = atomic_load(&s->repaired);
	out->sweep_dropped = ks.sweep_dropped;
	out->unheld_commits = atomic_load(&s->unheld_commits);
}

/* ---- lifecycle ---- */

static void saga_free(saga *s)
{
	kit_sender_stop(s->sender);
	kit_consumer_stop(s->consumer);
	kit_sender_destroy(s->sender);
	free(s);
}

orn_rc saga_start(es_store *store, kit_hub *hub, const saga_options *o, saga **out)
{
	saga *s;
	orn_rc rc;

	*out = NULL;
	if (store == NULL || hub == NULL || o == NULL)
		return ORN_EINVAL;
	if ((s = calloc(1, sizeof *s)) == NULL)
		return ORN_ENOMEM;
	s->store = store;
	s->hub = hub;
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
	kit_sender_options so = {.actor = SAGA_ACTOR, .timeout_ms = s->o.command_timeout_ms, .tries = 1};
	if ((rc = kit_sender_create(store, &so, &s->sender)) != ORN_OK)
		goto fail;
	kit_consumer_options co = {.name = "checkout",
	                           .durable = SAGA_CONSUMER,
	                           .filter = ORDER_FILTER,
	                           .ack_wait_ms = ACK_WAIT_MS,
	                           .max_ack_pending = MAX_ACK_PENDING,
	                           .workers = s->o.workers,
	                           .batch = FETCH_BATCH,
	                           .retry_first_ms = RETRY_FIRST_MS,
	                           .retry_max_ms = RETRY_MAX_MS,
	                           .handle = handle,
	                           .worker_create = worker_create,
	                           .worker_destroy = worker_destroy,
	                           .closure = s,
	                           .sweep_after_ms = s->o.sweep_after_ms > 0 ? s->o.sweep_after_ms : 0,
	                           .sweep_newest_only = true};
	if ((rc = kit_consumer_start(store, hub, &co, &s->consumer)) != ORN_OK)
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

/* ---- the role's descriptor (role.h) ---- */

typedef struct checkout_settings {
	long command_timeout_ms;
	long sweep_after_ms;
} checkout_settings;

static const orn_setting checkout_settings_table[] = {
        KIT_COMMAND_TIMEOUT_SETTING(checkout_settings, command_timeout_ms),
        KIT_SWEEP_AFTER_SETTING(checkout_settings, sweep_after_ms),
        ORN_SETTING_END,
};

static orn_rc checkout_start(const role_context *ctx, void **handle)
{
	const checkout_settings *set = ctx->settings;
	saga_options o;
	saga *s = NULL;
	saga_options_init(&o);
	o.command_timeout_ms = set->command_timeout_ms;
	o.sweep_after_ms = set->sweep_after_ms > 0 ? set->sweep_after_ms : -1;
	orn_rc rc = saga_start(ctx->store, ctx->hub, &o, &s);
	*handle = s;
	return rc;
}

static void checkout_stop(void *handle)
{
	saga_stop(handle);
}

static bool checkout_ready(const void *handle)
{
	return saga_consumer_bound((saga *)handle);
}

static const char *const checkout_sends[] = {STOCK_AGGREGATE, ORDER_AGGREGATE, CART_AGGREGATE,
                                             HOLDS_AGGREGATE, NULL};
static const char *const checkout_durables[] = {SAGA_CONSUMER, NULL};

const role_descriptor saga_role = {
        .name = "checkout",
        .summary = "the checkout saga: reserves, marks, releases and commits the stock of orders, closes "
                   "their holds",
        .stage = ROLE_SENDS,
        .nats = {.sends = checkout_sends, .durables = checkout_durables, .reads = true},
        .settings = checkout_settings_table,
        .settings_size = sizeof(checkout_settings),
        .start = checkout_start,
        .stop = checkout_stop,
        .ready = checkout_ready,
};
