/* projector.h — the projector runner: the stream into the read models.
 *
 * A runner consumes stream ORION_EVT through one long-lived JetStream ordered
 * consumer (filter "orion.evt.>") from the lowest checkpoint of its
 * projections, on ONE thread. It applies events in batches (up to
 * batch_max events or batch_ms), each batch in ONE LMDB write transaction that
 * also stores every projection's checkpoint (the last stream sequence
 * applied): a crash replays at most the uncommitted batch, and an event at or
 * below a projection's checkpoint is skipped, so applying is idempotent.
 *
 * A commit that does not decode is logged with its sequence, counted and
 * skipped: a poison message never stops the read side. A projection that
 * fails (I/O, memory) aborts the batch: nothing of it is committed, the
 * checkpoints stay, and the batch is retried with a backoff.
 *
 * Generations: when the environment's path is a link that comes to lead to
 * another directory (`orion rebuild` publishes one, proj_gen.h), the runner
 * switches to it between two batches without a pause in queries (see
 * proj_internal.h); its position never moves backwards. */
#ifndef ORION_PROJECTOR_H
#define ORION_PROJECTOR_H

#include <stdint.h>

#include "envelope.h"
#include "evstore.h"
#include "orn.h"
#include "proj_env.h"

#define PROJ_NAME_MAX 64 /* bytes of a projection name, NUL included */

/* A write transaction handed to projections (opaque outside projections/). */
typedef struct proj_txn proj_txn;

/* A projection: a name (the key of its checkpoint, [a-z0-9_.]), the subjects
 * it wants, and two callbacks run on the projector thread:
 *   open  creates its sub-databases (once, at start);
 *   apply applies one event; it must not fail on bad event data (log, skip,
 *         return ORN_OK): a non-OK return aborts the whole batch.
 * Both may be run again on the same data after a batch was aborted (map
 * growth, failure), so they must depend only on the transaction. */
typedef struct proj_def {
	const char *name;
	const char *filter; /* NATS subject filter, e.g. "orion.evt.stock.>" */
	orn_rc (*open)(void *self, proj_txn *t);
	orn_rc (*apply)(void *self, proj_txn *t, uint64_t seq, const char *subject, const env_envelope *e);
	void *self;
} proj_def;

typedef struct proj_runner_options {
	unsigned batch_max;     /* events (commits) per write transaction; default 512 */
	unsigned batch_ms;      /* longest wait to fill a batch; default 20 */
	unsigned retry_max_ms;  /* backoff ceiling after a failed batch; default 5000 */
	int64_t lag_timeout_ms; /* JetStream API timeout of proj_runner_lag; default 2000 */
	uint64_t stop_at;       /* apply nothing past this stream sequence; 0 = no end (default) */
} proj_runner_options;

void proj_runner_options_init(proj_runner_options *o);

typedef struct proj_runner proj_runner;

/* Opens every projection's sub-databases, reads the checkpoints and starts
 * the projector thread. defs (count entries) and what they point to, store
 * and env must outlive the runner. *out owns the thread; stop it with
 * proj_runner_stop. ORN_EINVAL for bad or duplicate names. */
orn_rc proj_runner_start(es_store *store, proj_env *env, const proj_def *defs, size_t count,
                         const proj_runner_options *o, proj_runner **out);

/* Stops consuming, lets the batch in hand finish (or abandons a failing one),
 * joins the thread and frees. NULL is ignored. No other thread may still use
 * r (a proj_runner_wait in progress, a query of its position) when it is called. */
void proj_runner_stop(proj_runner *r);

/* The last stream sequence applied by every projection (committed to LMDB). */
uint64_t proj_runner_position(proj_runner *r);

/* Waits until position >= seq (read-your-writes after a command returned its
 * sequence). ORN_ETIMEOUT after timeout_ms, ORN_EUNAVAILABLE once stopping. */
orn_rc proj_runner_wait(proj_runner *r, uint64_t seq, int64_t timeout_ms);

/* The stream's last sequence now (out param *last; 0 for an empty stream).
 * Asks JetStream: ORN_EUNAVAILABLE/ORN_ETIMEOUT when NATS does not answer. */
orn_rc proj_runner_head(proj_runner *r, uint64_t *last);

/* Stream last sequence minus position (out param), 0 when caught up. Same
 * errors as proj_runner_head. */
orn_rc proj_runner_lag(proj_runner *r, uint64_t *lag);

typedef struct proj_runner_stats {
	uint64_t position; /* as proj_runner_position */
	uint64_t commits;  /* stream messages consumed and committed (skipped ones too) */
	uint64_t events;   /* events handed to apply callbacks */
	uint64_t batches;  /* write transactions committed */
	uint64_t poison;   /* undecodable commits skipped */
	uint64_t voids;    /* void commits skipped (ADR 015) */
	uint64_t failures; /* batches aborted by a failure (each retried) */
	orn_rc last_error; /* of the last failed batch, ORN_OK if none */
	uint64_t switches; /* new generations of the environment switched to */
} proj_runner_stats;

/* Counters since start (out param). */
void proj_runner_stats_get(proj_runner *r, proj_runner_stats *out);

/* Reads a projection's checkpoint from env (0 if it has none), e.g. for
 * tests and `orion rebuild --verify`. */
orn_rc proj_checkpoint_get(proj_env *env, const char *name, uint64_t *seq);

#endif
