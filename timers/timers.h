/* timers.h — the timers role: fires order deadlines derived from the event
 * log (ADR 010; ARCHITECTURE.md, "The checkout saga").
 *
 * An order has a deadline while pending or awaiting confirmation (the
 * confirmation deadline set by PlaceOrder) and while awaiting payment (the
 * payment deadline set by Confirm). The orders read model keeps those orders
 * in deadline order (proj_orders_due); a timers instance scans it every
 * scan_ms and sends, for each deadline due, the command the checkout saga's
 * timer thread used to send: Cancel{reason expired, now_ms} to order/<id>,
 * command id "<order>:expire:<deadline>" (saga_plan_expire).
 *
 * The role keeps no state that matters: any number of instances may run, each
 * over its own read model, and a new one fires every deadline of the log.
 * Instances that fire the same deadline send the same command: JetStream's
 * duplicate window or the order decider (the order has left the state:
 * wrong_state) answers all but the first without an event, and such an
 * answer counts as done. Cancel{expired} refused as early (the order's
 * deadline is later than this clock) or unanswered is retried with a backoff
 * while the read model still lists the deadline. */
#ifndef ORION_TIMERS_H
#define ORION_TIMERS_H

#include <stdint.h>

#include "evstore.h"
#include "orders.h"
#include "orn.h"
#include "role.h"

#define TIMERS_ACTOR     "timers" /* the envelope actor of every command sent */
#define TIMERS_BATCH_MAX 256      /* due deadlines read per scan */

typedef struct timers_options {
	unsigned scan_ms;           /* how often due deadlines are looked for; default 200 */
	int64_t command_timeout_ms; /* per Cancel sent; default 5000 */
	int64_t retry_max_ms;       /* backoff ceiling of a deadline not yet settled; default 10000 */
} timers_options;

/* Fills o with the defaults. */
void timers_options_init(timers_options *o);

typedef struct timers timers;

/* Starts the scanning thread: it reads orders (a model fed by a projector
 * runner) and sends commands on store's connection. store and orders must
 * outlive the timers; *out owns the thread. Some possible errors are:
 * ORN_EINVAL (no store or model), ORN_ENOMEM, ORN_EUNAVAILABLE (the reply
 * inbox cannot be subscribed); nothing is left running on failure. */
orn_rc timers_start(es_store *store, proj_orders *orders, const timers_options *o, timers **out);

/* Stops the thread (commands in flight are given up at once), joins, frees.
 * NULL ok. */
void timers_stop(timers *t);

typedef struct timers_stats {
	uint64_t scans;   /* reads of the due deadlines */
	uint64_t sent;    /* Cancel{expired} commands sent */
	uint64_t expired; /* accepted: the order expired (or a duplicate of that command) */
	uint64_t settled; /* refused, the order having left the state (wrong_state, not_found) */
	uint64_t retried; /* unanswered, or refused as early: sent again later */
} timers_stats;

/* Counters since start (out param). */
void timers_stats_get(timers *t, timers_stats *out);

/* What the role asks its process for (role_context.offer): the orders read
 * model (a proj_orders *) of a projector running beside it. */
#define TIMERS_NEEDS_ORDERS "orders_model"

/* The role "timers" (role.h): it brings the projector, sends Cancel{expired}
 * to the orders; its setting ORION_COMMAND_TIMEOUT_MS. */
extern const role_descriptor timers_role;

#endif
