/* saga.h — the checkout saga: a process manager driven by order events
 * (ARCHITECTURE.md, "The checkout saga"; ADR 007).
 *
 * It is a handler on the engine's kit (kit.h, ADR 024): a durable consumer,
 * "orion_checkout", of orion.evt.order.>, shared by every instance. For each
 * commit it folds the order (kit_fold: the OrderPlaced commit it was
 * delivered seeds the fold, so its lines are not read again), executes the
 * plan of saga_plan.h (reserve, mark reserved, reject, check the cart out,
 * release, commit) with every command of a plan sent at once (kit_sender),
 * and answers KIT_DONE only when every command was answered: a failure or a
 * timeout is KIT_RETRY, so a step is redone, never lost. Commands carry
 * deterministic ids, so a redone step has no second effect.
 *
 * The kit's sweeper guards against a lost delivery (ADR 007, "Lost
 * deliveries"): sweep_after_ms after an order's last event, if that event
 * still is the last, the handler runs the step again if it moves stock, and
 * the cart's checkout step if the order was ever reserved.
 *
 * The saga keeps no state besides its durable consumer. Deadlines are fired
 * by the timers role (timers/timers.h, ADR 010) from the orders read model,
 * which derives them from the log. */
#ifndef ORION_SAGA_H
#define ORION_SAGA_H

#include <stdint.h>

#include "kit.h"
#include "orn.h"
#include "role.h"

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

/* Starts consuming on store's connection (the role's), sharing hub with the
 * process's other roles; *out owns the threads. store and hub must outlive
 * the saga. Some possible errors are: ORN_EINVAL (no store, hub or options),
 * ORN_ENOMEM, ORN_EUNAVAILABLE (NATS refused the consumer); nothing is left
 * running on failure. */
orn_rc saga_start(es_store *store, kit_hub *hub, const saga_options *o, saga **out);

/* Stops sending (a step in hand is abandoned and delivered again, here or
 * elsewhere), stops consuming, joins, frees. NULL ok. The durable consumer
 * stays. */
void saga_stop(saga *s);

/* The sweeper's counters so far (zeros for NULL). */
void saga_stats_get(saga *s, saga_stats *out);

/* True once a worker pulls from the durable consumer (it stays true); false
 * for NULL. For readiness. */
bool saga_consumer_bound(saga *s);

/* The role "checkout" (role.h): its settings ORION_COMMAND_TIMEOUT_MS and
 * ORION_SWEEP_AFTER_MS, its NATS grants (commands to the stock, the orders,
 * the carts and the holds; its durable consumer), start, stop and readiness. */
extern const role_descriptor saga_role;

#endif
