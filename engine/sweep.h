/* sweep.h — a safety net under a durable consumer (ADR 007 addendum, "Lost
 * deliveries").
 *
 * The nats-server we ship (Debian's 2.9) can skip the redelivery of a message
 * delivered to a process that died while a NATS node failed over: the
 * consumer's replicas never agreed on the delivery, and a later ack moves the
 * consumer past it (fixed upstream in 2.11, nats-server PR #6566). A role
 * whose work must not be lost pairs its durable consumer with a sweeper:
 *
 *   - it follows the same subjects with an ordered consumer of its own (R1,
 *     no acks: it finds gaps by sequence and resets itself), from
 *     max(2 * after_ms, one minute) before it started;
 *   - each commit the role's wants() keeps is queued, due after_ms after its
 *     first event's time; with newest_only, a commit is dropped once a newer
 *     one of the same subject is queued (the state a subject ends in is what
 *     counts);
 *   - when due, fn is called on the sweeper's own thread. It checks whether
 *     the role did the commit's work (the log says: a later event, a settled
 *     delivery) and does it if not; idempotent work, so a check that races
 *     the role's own consumer is harmless. ES_SWEEP_RETRY calls it again
 *     later, with a backoff.
 *
 * At most ES_SWEEP_QUEUE_MAX commits wait; beyond, new ones are not queued
 * (es_sweep_dropped counts them; the first is logged). */
#ifndef ORION_SWEEP_H
#define ORION_SWEEP_H

#include <stdbool.h>
#include <stdint.h>

#include "envelope.h"
#include "evstore.h"
#include "orn.h"

#define ES_SWEEP_QUEUE_MAX   200000
#define ES_SWEEP_LOOKBACK_MS 60000

typedef enum es_sweep_verdict { ES_SWEEP_DONE, ES_SWEEP_RETRY } es_sweep_verdict;

/* Whether a commit with event e (called for each event, on a cnats thread)
 * is to be swept; NULL: every commit. */
typedef bool es_sweep_wants_fn(void *closure, const env_envelope *e);

/* A due commit. type is its last event's type with newest_only (the state
 * its subject was left in), else its first wanted event's; correlation is
 * the correlation id of its first wanted event. */
typedef struct es_sweep_commit {
	const char *subject;
	uint64_t seq;
	const char *type;
	const char *correlation;
} es_sweep_commit;

/* Called on the sweeper's thread, one due commit at a time. */
typedef es_sweep_verdict es_sweep_fn(void *closure, const es_sweep_commit *c);

typedef struct es_sweep_options {
	const char *filter;     /* subjects followed, e.g. "orion.evt.order.>" */
	int64_t after_ms;       /* > 0 */
	bool newest_only;       /* only a subject's newest commit is due */
	int64_t retry_first_ms; /* after an ES_SWEEP_RETRY, doubling; default 100 */
	int64_t retry_max_ms;   /* default 10000 */
	es_sweep_wants_fn *wants;
	es_sweep_fn *fn;
	void *closure;
	const char *name; /* for the log lines */
} es_sweep_options;

typedef struct es_sweep es_sweep;

/* Starts following and the sweeper's thread. ORN_EINVAL for bad options,
 * what following returned if NATS refused it; nothing runs on failure. */
orn_rc es_sweep_start(es_store *s, const es_sweep_options *o, es_sweep **out);

/* Stops following, waits for a call of fn in progress, joins and frees. fn
 * should give up quickly once its role stops (ES_SWEEP_RETRY). NULL ok. */
void es_sweep_stop(es_sweep *sw);

/* For a role's fn: the aggregate id of subject if it is prefix followed by a
 * valid id (orn_id_valid, at most ORN_ID_MAX), else NULL. */
const char *es_sweep_id(const char *subject, const char *prefix);

/* For a role's fn: reads the commit at seq on subject again, calling fn for
 * each of its events (as es_read does). ORN_OK only if it was read whole. */
orn_rc es_sweep_reread(es_store *s, const char *subject, uint64_t seq, es_event_fn fn, void *closure);

/* Commits not queued because the queue was full. */
uint64_t es_sweep_dropped(es_sweep *sw);

#endif
