/* kit.h — the engine's kit for side-effect roles (ADR 024).
 *
 * A side-effect role (the checkout saga, mail, payment, timers) is a set of
 * handlers; the kit owns the loops, as Redis' ae.c owns the event loop:
 *
 *   kit_hub       what the roles of one process share: one follower per
 *                 subject filter (feeding every sweeper of the roles started
 *                 together), one fold cache per aggregate kind, and an
 *                 instance id for claims;
 *   kit_consumer  a durable consumer: pulls in batches, decodes each commit,
 *                 calls the handler, acks on KIT_DONE, naks with a backoff on
 *                 KIT_RETRY, binds again after a NATS restart, stops fast;
 *                 with a sweeper, the same handler gets the commits the
 *                 consumer may have lost (ADR 007 addendum);
 *   kit_fold      an aggregate's state as of a sequence, from its kind table,
 *                 with the chain's rule, and whether a given commit is valid;
 *   kit_execute   decide + append + confirm in process, for side-effect
 *                 aggregates (the mail log, the payment): claims that hold
 *                 across hosts;
 *   kit_sender    commands to other aggregates, several at once, retried on
 *                 a timeout with the same command id, never past a stop;
 *   kit_service   requests on a subject with a queue group (the payment
 *                 service's Pay), handed to worker threads.
 *
 * Threads: every handler runs on a thread the kit owns; the kit calls a
 * role's worker_create once per thread for its scratch space. */
#ifndef ORION_KIT_H
#define ORION_KIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "config.h"
#include "decision.h"
#include "envelope.h"
#include "evstore.h"
#include "orn.h"

#define KIT_INSTANCE_MAX 18 /* bytes of an instance id, NUL included: "i" + 16 hex digits */

/* ---- the process's shared pieces ---- */

typedef struct kit_hub kit_hub;

/* Creates the hub of one process. Its followers read through store (any
 * connection allowed to read events), which must outlive the hub. Some
 * possible errors are: ORN_ENOMEM, ORN_EINVAL (no store). */
orn_rc kit_hub_create(es_store *store, kit_hub **out);

/* Frees the hub; every consumer using it must be stopped. NULL ok. */
void kit_hub_destroy(kit_hub *hub);

/* From now until kit_hub_start, the followers of the listeners that join (the
 * sweepers of the consumers started) wait; kit_hub_start then starts one per
 * subject filter, from the earliest time any of its listeners asked for: the
 * roles of a process started in between share one follower and none misses
 * the history its sweeper looks back on. Outside such a window, a listener
 * that finds its filter followed already gets a follower of its own. */
void kit_hub_gather(kit_hub *hub);
/* Starts the followers gathered. Some possible errors are: ORN_EUNAVAILABLE,
 * ORN_ENOMEM (what could not start is logged; start it again later). */
orn_rc kit_hub_start(kit_hub *hub);

/* This process's instance id ("i" + 16 random hex digits, fixed at creation):
 * whose a claim is (kit_execute). */
const char *kit_hub_instance(const kit_hub *hub);

/* ---- consumers ---- */

typedef enum kit_verdict {
	KIT_DONE, /* the commit's work is done (or can never be done): ack */
	KIT_RETRY /* a dependency failed: deliver it again after a backoff */
} kit_verdict;

/* One commit as a handler sees it; valid during the call only. */
typedef struct kit_commit {
	const char *subject;
	const char *id; /* the aggregate id: the subject after the filter's prefix */
	uint64_t seq;
	bool chained; /* see es_commit */
	uint64_t prev;
	const env_envelope *events;
	size_t count;
	uint64_t delivered; /* 1 for the first delivery, 2 for the next...; 0 from the sweeper */
	void *delivery;     /* the kit's (kit_commit_working) */
} kit_commit;

/* Tells the server that c (a delivery, not a sweep) is still being worked on,
 * so that it is not delivered elsewhere meanwhile: for a handler that may take
 * longer than a third of the ack wait. */
void kit_commit_working(const kit_commit *c);

/* Whether c is a valid commit (es_chain_accepts, ADR 015), by reading the
 * chain of its subject before it. For a
 * handler that acts on a commit without folding its aggregate (a handler that
 * folds asks kit_fold to watch the commit instead). Some possible errors are:
 * ORN_EUNAVAILABLE, ORN_ETIMEOUT, ORN_EIO. */
orn_rc kit_commit_check(es_store *store, const kit_commit *c, bool *valid);

/* A role's handler: called on a kit thread with that thread's worker (what
 * worker_create returned) for each commit. */
typedef kit_verdict kit_handle_fn(void *worker, const kit_commit *c);

typedef struct kit_consumer_options {
	const char *name;    /* for logs and metrics, e.g. "checkout" */
	const char *durable; /* the durable consumer's name */
	const char *filter;  /* "<prefix>.<aggregate>.>": the commits of one aggregate kind */
	int64_t ack_wait_ms; /* default 30000 */
	int max_ack_pending; /* 0: the server's default */
	unsigned workers;    /* threads; default 4 */
	unsigned batch;      /* commits asked for per pull by each worker; default 8 */
	int64_t retry_first_ms, retry_max_ms; /* nak backoff, doubling; default 100, 10000 */
	/* From this many deliveries on, the backoff ceiling is long_retry_max_ms
	 * (0: never), so a commit retried for long asks less often. */
	uint64_t long_retry_after;
	int64_t long_retry_max_ms;
	kit_handle_fn *handle;
	/* One worker per thread (and one for the sweeper): NULL worker_create
	 * makes the worker the closure itself. worker_create returning NULL fails
	 * the start (ORN_ENOMEM). */
	void *(*worker_create)(void *closure);
	void (*worker_destroy)(void *worker);
	void *closure;
	/* Optional: the events the handler acts on (NULL: every commit). A
	 * commit without one is acked without a call, and without a read. */
	bool (*wants)(void *closure, const env_envelope *e);
	/* Before the handler sees a delivered commit with a wanted event, the
	 * kit checks that it is a valid one (kit_commit_check) and acks a void
	 * one: for handlers that act on a commit without folding its aggregate
	 * (one that folds asks kit_fold to watch the commit instead). */
	bool check_valid;
	/* The sweeper (ADR 007 addendum): sweep_after_ms > 0 follows the filter
	 * through the hub's shared follower and, that long after each commit
	 * sweep_wants keeps (NULL: every commit), reads it again and calls the
	 * handler with delivered 0 (KIT_RETRY: again later, with a backoff). With
	 * sweep_newest_only, only a subject's newest commit falls due. The
	 * follower passes valid commits only. */
	int64_t sweep_after_ms;
	bool sweep_newest_only;
	bool (*sweep_wants)(void *closure, const env_envelope *e); /* NULL: wants */
} kit_consumer_options;

/* Settings rows (config.h) the side-effect roles share, into field (an
 * int64_t or long) of a role's settings struct type: the sweepers' delay
 * ORION_SWEEP_AFTER_MS (0: no sweeper; give the consumer -1 then) and the
 * commands' timeout ORION_COMMAND_TIMEOUT_MS (kit_sender). */
#define KIT_SWEEP_AFTER_SETTING(type, field)                                                                 \
	ORN_SETTING_INT_ROW(                                                                                 \
	        "ORION_SWEEP_AFTER_MS", type, field, 40000, 0, 86400000,                                     \
	        "age of an event at which the side-effect roles check that their work was done, "            \
	        "and do it if their consumer lost the event (0: never)")
#define KIT_COMMAND_TIMEOUT_SETTING(type, field)                                                             \
	ORN_SETTING_INT_ROW("ORION_COMMAND_TIMEOUT_MS", type, field, 5000, 10, 600000,                       \
	                    "how long a command waits for its actor")

typedef struct kit_consumer kit_consumer;

/* Creates or updates the durable consumer, starts the workers (and the
 * sweeper). store (the role's connection) and hub must outlive the consumer.
 * Some possible errors are: ORN_EINVAL (missing options, a filter without a
 * trailing ".>"), ORN_ENOMEM, ORN_EUNAVAILABLE (NATS refused the consumer).
 * Nothing is left running on failure. */
orn_rc kit_consumer_start(es_store *store, kit_hub *hub, const kit_consumer_options *o, kit_consumer **out);

/* Stops pulling, gives the commits not yet handled back to the server at
 * once (unless NATS is gone: each worker drains its inbox, so a commit its
 * open pull request still gets is given back too, up to 2 s), waits for the
 * handlers in progress, joins and
 * frees (worker_destroy for each worker). The durable consumer stays on the
 * server. NULL ok. */
void kit_consumer_stop(kit_consumer *c);

/* True once the durable consumer exists and a worker pulls from it (it stays
 * true); false for NULL. For readiness. */
bool kit_consumer_bound(const kit_consumer *c);

typedef struct kit_consumer_stats {
	uint64_t handled;       /* deliveries handled */
	uint64_t retried;       /* of which answered KIT_RETRY */
	uint64_t swept;         /* commits the sweeper handed to the handler */
	uint64_t sweep_dropped; /* commits the sweeper could not queue (queue full) */
} kit_consumer_stats;

/* Counters so far (zeros for NULL). */
void kit_consumer_stats_get(const kit_consumer *c, kit_consumer_stats *out);

/* ---- folding an aggregate ---- */

typedef struct kit_fold_query {
	uint64_t up_to; /* fold the commits up to this sequence; 0: up to the head */
	uint64_t watch; /* 0, or a commit: watched_valid says whether it is a valid one */
	/* Optional: stop folding once it returns true for the state (a resend
	 * needs the order as it was when it reached a status). Not cached. */
	bool (*until)(const void *state, void *closure);
	void *closure;
} kit_fold_query;

typedef struct kit_folded {
	es_position at;     /* the last valid commit folded, the last commit read */
	bool watched_valid; /* the commit q->watch is among the valid commits folded */
} kit_folded;

/* Folds id's valid commits (kind->init, kind->evolve; es_chain_accepts) into
 * state (kind->state_size bytes, the caller's; init'ed first) as q asks. For
 * a kind with copyable states, the hub keeps the latest folds and reads only
 * what came after them. A caller that folds up to a commit it was delivered
 * needs no other read to know that commit's validity (watched_valid). Some
 * possible errors are: ORN_EUNAVAILABLE, ORN_ETIMEOUT, ORN_EIO, ORN_EINVAL
 * (an invalid id), ORN_EDECODE (an event the kind cannot fold). */
orn_rc kit_fold(kit_hub *hub, es_store *store, const act_kind *kind, const char *id, const kit_fold_query *q,
                void *state, kit_folded *out);

/* ---- executing a command in process ---- */

typedef struct kit_command {
	const char *type;
	const uint8_t *payload; /* one msgpack value, the kind's codec */
	size_t len;
	const char *id;          /* the command id: causation of the events and base of the msg id */
	const char *correlation; /* NULL: the command id */
	const char *actor;
	int64_t time_ms;
	bool likely_new; /* the aggregate probably has no commit yet: decide on empty first */
} kit_command;

typedef struct kit_result {
	bus_outcome outcome; /* accepted, rejected (code, detail), failed (code "unavailable", "invalid") */
	char code[BUS_CODE_MAX];
	char detail[BUS_DETAIL_MAX];
	uint64_t seq;   /* the commit appended (or found), 0 if nothing was */
	bool duplicate; /* the command had been applied before: seq is that commit */
	es_position at; /* the aggregate's position after */
} kit_result;

/* Decides cmd against id's state and appends the events as one commit,
 * confirmed (es_append): the way the actor runtime runs a command, without
 * the round trip to an actor, for aggregates only side-effect roles write.
 * A conflict (another writer, another host) reloads and decides again, up to
 * 8 times; an outcome left unknown looks for the command's own commit first.
 * A rejection or a no-op decided on a cached state is checked against the
 * head before it is answered. state (may be NULL; only for a kind with
 * copyable states) receives the state after. Returns ORN_OK with *out filled
 * (the outcome says what happened), ORN_EINVAL for bad arguments, ORN_ENOMEM. */
orn_rc kit_execute(kit_hub *hub, es_store *store, const act_kind *kind, const char *aggregate_id,
                   const kit_command *cmd, void *state, kit_result *out);

/* ---- sending commands to other aggregates ---- */

typedef struct kit_sender_options {
	const char *actor;   /* the envelope actor of every command, e.g. "checkout" */
	int64_t timeout_ms;  /* one try; default 5000 */
	unsigned tries;      /* tries per command; default 1 */
	int64_t backoff_ms;  /* pause before the second try, doubling; default 100 */
	int64_t backoff_max; /* default 2000 */
} kit_sender_options;

typedef struct kit_sender kit_sender;

/* One command and, once kit_send_all returns, its answer. */
typedef struct kit_send {
	const char *aggregate, *id; /* the target */
	const char *type;
	const char *command_id;  /* deterministic: a retry is the same command */
	const char *correlation; /* NULL: the command id */
	const uint8_t *payload;  /* one msgpack value */
	size_t len;
	orn_rc rc; /* ORN_OK: reply is final; else ORN_ETIMEOUT, ORN_EUNAVAILABLE (no service, or stopped) */
	bus_reply reply; /* with rc ORN_OK: dispose it (bus_reply_dispose) */
} kit_send;

/* Subscribes the sender's reply inbox on store (the role's connection, which
 * must outlive it). Some possible errors are: ORN_ENOMEM, ORN_EUNAVAILABLE. */
orn_rc kit_sender_create(es_store *store, const kit_sender_options *o, kit_sender **out);

/* Sends the count commands at once and waits for their answers. A try that
 * times out, finds no service, or is answered failed "unavailable",
 * "overloaded", "conflict" or "expired" is tried again with the same command
 * id, up to o->tries, unless the sender is stopping. Returns ORN_OK when every
 * command has a final answer (each rc ORN_OK), else the first error; each
 * sends[i] says what happened to it. */
orn_rc kit_send_all(kit_sender *s, kit_send *sends, size_t count);

/* From now on every kit_send_all returns at once with ORN_EUNAVAILABLE for
 * the commands not yet answered: nothing is sent past a stop. */
void kit_sender_stop(kit_sender *s);

/* Frees the sender (after kit_sender_stop and once no call is in progress). NULL ok. */
void kit_sender_destroy(kit_sender *s);

/* True once kit_sender_stop was called. */
bool kit_sender_stopping(const kit_sender *s);

/* ---- serving requests ---- */

typedef struct kit_request kit_request;

/* The subject a request came on, its bytes (which the handler may wipe), and
 * the answer: a bus_reply sent to the requester (one per request; a request
 * left unanswered is answered failed "unavailable" when the handler returns). */
const char *kit_request_subject(const kit_request *r);
const uint8_t *kit_request_data(const kit_request *r, size_t *len);
void kit_request_reply(kit_request *r, const bus_reply *reply);

typedef void kit_serve_fn(void *worker, kit_request *r);

typedef struct kit_service_options {
	const char *name;    /* for logs */
	const char *subject; /* e.g. "orion.cmd.pay.*" */
	const char *queue;   /* queue group, e.g. "orion.pay" */
	unsigned workers;    /* default 4 */
	size_t queue_max;    /* requests waiting for a worker before "overloaded"; default 4096 */
	bool wipe;           /* zero every request's bytes once done (they hold a card) */
	kit_serve_fn *serve;
	void *(*worker_create)(void *closure); /* as for consumers */
	void (*worker_destroy)(void *worker);
	void *closure;
	/* Optional: called by kit_service_stop once no request can come any more,
	 * before it waits for the handlers in progress: the role tells them to
	 * give up (a provider's retries). */
	void (*stopping)(void *closure);
} kit_service_options;

typedef struct kit_service kit_service;

/* Starts the workers and subscribes. store must outlive the service. Some
 * possible errors are: ORN_EINVAL, ORN_ENOMEM, ORN_EUNAVAILABLE. */
orn_rc kit_service_start(es_store *store, const kit_service_options *o, kit_service **out);

/* Unsubscribes (draining what was sent to it, unless NATS is gone), answers
 * the requests still queued failed "unavailable", calls o->stopping, waits
 * for the handlers in progress, joins and frees. NULL ok. */
void kit_service_stop(kit_service *s);

#endif
