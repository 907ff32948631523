/* saga.h — the checkout saga: a process manager driven by order events
 * (ARCHITECTURE.md, "The checkout saga"; ADR 007).
 *
 * It consumes orion.evt.order.> from ES_STREAM through one durable JetStream
 * pull consumer, "orion_checkout", shared by its worker threads (and by every
 * other instance: they split the work). For each event it loads the order's
 * state, executes the plan of saga_plan.h (reserve, mark reserved, reject,
 * check the cart out, release, commit), and acknowledges the event only when
 * every command was answered: a failure or a timeout naks it with a backoff,
 * so a step is redone, never lost. Commands carry deterministic ids, so a
 * redone step has no second effect.
 *
 * A sweeper thread guards against a lost delivery (ADR 007, "Lost
 * deliveries"): sweep_after_ms after an order's last event, if that event
 * still is the last, it runs the step again if it moves stock, and the
 * cart's checkout step if the order was ever reserved.
 *
 * The saga keeps no state besides its durable consumer. Deadlines are fired
 * by the timers role (timers/timers.h, ADR 010) from the orders read model,
 * which derives them from the log. */
#ifndef ORION_SAGA_H
#define ORION_SAGA_H

#include <stdint.h>

#include "evstore.h"
#include "orn.h"

#define SAGA_CONSUMER "orion_checkout"

typedef struct saga_options {
	unsigned workers;           /* threads consuming order events; default 8 */
	int64_t command_timeout_ms; /* per command sent; default 5000 */
	int64_t sweep_after_ms;     /* the sweeper's delay (see below); default 40000, < 0: no sweeper */
} saga_options;

/* What the sweeper did: steps run again because their order had not moved
 * on (swept), of which the ones that appended something (repaired: the
 * consumer had lost their event), and events left unswept (queue full).
 * unheld_commits: CommitStock answers saying a paid order's units were not
 * held (saga_reply_sold_unheld), counted per answer. */
typedef struct saga_stats {
	uint64_t swept, repaired, sweep_dropped, unheld_commits;
} saga_stats;

/* Fills o with the defaults. */
void saga_options_init(saga_options *o);

typedef struct saga saga;

/* Starts consuming on store's connection; *out owns the threads. The store
 * must outlive the saga. ORN_EINVAL without a store or options, what the
 * consumer's creation returned if NATS refuses it; nothing is left running on
 * failure. */
orn_rc saga_start(es_store *store, const saga_options *o, saga **out);

/* Stops consuming, finishes or abandons (unacked -> redelivered later) the
 * work in hand, joins, frees. NULL ok. The durable consumer stays. */
void saga_stop(saga *s);

/* The sweeper's counters so far (zeros for NULL). */
void saga_stats_get(saga *s, saga_stats *out);

/* True once a worker has bound a pull subscription to the durable consumer
 * (it stays true); false for NULL. For readiness. */
bool saga_consumer_bound(saga *s);

#endif
