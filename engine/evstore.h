/* evstore.h — the event store on NATS JetStream.
 *
 * Stream ORION_EVT holds every commit on subject orion.evt.<aggregate>.<id>;
 * the version of an aggregate is the stream sequence of its last valid
 * commit. Every commit records the version it was decided on, and Orion, not
 * only the server, checks the chain: an appender confirms its commit after the
 * acknowledgement, and every reader applies es_chain_accepts (ADR 015).
 * Stream ORION_SNAP keeps the latest snapshot per aggregate on
 * orion.snap.<aggregate>.<id>.
 *
 * An es_store owns one NATS connection; it is safe to use from several
 * threads. No type of the NATS client appears here: the engine's own files
 * reach the connection through evstore-internal.h. */
#ifndef ORION_EVSTORE_H
#define ORION_EVSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "nats_auth.h"
#include "orn.h"

#define ES_STREAM      "ORION_EVT"
#define ES_SNAP_STREAM "ORION_SNAP"
#define ES_EVT_PREFIX  "orion.evt" /* commits: ES_EVT_PREFIX.<aggregate>.<id> */
#define ES_SUBJECT_MAX 256
#define ES_ID_MAX      64 /* characters of an aggregate id */

typedef struct es_store es_store;

typedef struct es_options {
	const char *url;       /* NATS URL(s), comma separated */
	const char *name;      /* connection name shown by the server (may be NULL) */
	int replicas;          /* stream replicas: 1, or 3 on a cluster */
	int64_t timeout_ms;    /* JetStream API and publish timeout */
	int64_t dup_window_ms; /* duplicate window for Nats-Msg-Id, default 2 min */
	bool create_streams;   /* create the streams if absent (else only verify) */
	const na_conn *auth;   /* user, password and TLS (copied); NULL: none */
} es_options;

/* Fills o with defaults: url NULL, replicas 1, timeout 5 s, window 2 min, create. */
void es_options_init(es_options *o);

/* Connects and creates or verifies the streams. On success *out owns the
 * connection; close with es_store_close. Some possible errors are:
 * ORN_EUNAVAILABLE (NATS is down), ORN_EINVAL (NATS refuses the user, or a
 * TLS file cannot be loaded), ORN_ENOTFOUND (a stream is missing and
 * create_streams is false). */
orn_rc es_store_open(const es_options *o, es_store **out);
/* Closes the connection and frees s; do not use it again. NULL ok. */
void es_store_close(es_store *s);

/* True while the store's connection is up. A stop skips every wait on a
 * connection that is gone (drains, flushes, consumer deletions). */
bool es_store_connected(const es_store *s);

/* Closes the store's connection at once if it is not up, so that nothing
 * waits on it any more (requests in flight fail with ORN_EUNAVAILABLE); the
 * store is still closed with es_store_close. For a stop with NATS gone. NULL ok. */
void es_store_abandon(es_store *s);

/* Fault tests only: with on, appends carry no ExpectLastSubjectSeq, as on a
 * replicated stream whose server does not check it against publishes in
 * flight (nats-server 2.9.10, R3): concurrent appends on one version are all
 * stored, and the commit chain alone must tell the valid one (ADR 015). */
void es_store_fault_unchecked(es_store *s, bool on);

/* The URL the store connected to (owned by the store). */
const char *es_store_url(es_store *s);

/* True if id matches [A-Za-z0-9_-]{1,64}: anything else could address other subjects. */
bool es_id_valid(const char *id);
/* True if name matches [a-z][a-z0-9_]{0,31} (aggregate type names). */
bool es_aggregate_valid(const char *aggregate);

/* Writes "<prefix>.<aggregate>.<id>" into out; ORN_EINVAL for invalid parts,
 * ORN_ETOOBIG if it does not fit. */
orn_rc es_subject(char *out, size_t cap, const char *prefix, const char *aggregate, const char *id);

/* Where an aggregate stands in the stream (ADR 015). A commit is decided on
 * `version`; JetStream checks `last_seq`. They differ when void commits
 * (see es_chain_accepts) follow the last valid one. */
typedef struct es_position {
	uint64_t version;  /* sequence of the last valid commit, 0 if none */
	uint64_t last_seq; /* sequence of the last commit, valid or void, 0 if none */
} es_position;

/* The fold rule of the commit chain (ADR 015): every commit records, in its
 * Orion-Prev header, the version it was decided on. It is valid when it
 * records none (written before the rule: chained false) or when the version
 * it records is last_valid, the sequence of the previous valid commit of its
 * subject (0: none). A void commit changes nothing anywhere; every fold of
 * Orion applies this one rule. */
bool es_chain_accepts(uint64_t last_valid, bool chained, uint64_t prev);

typedef struct es_append_result {
	uint64_t seq;   /* stream sequence of the commit: the new version */
	bool duplicate; /* the server already had this msg id: seq is the original */
} es_append_result;

/* Appends one commit (an encoded env commit) decided on at->version and
 * confirms it: it answers ORN_OK only once the commit is known to be the
 * first valid one after at->version (ADR 015), whatever the server's
 * version or replica count. The stored message carries Orion-Prev =
 * at->version, ExpectLastSubjectSeq = at->last_seq (ExpectNoMessage for 0)
 * and a Nats-Msg-Id hashed from the subject, msg_id and at->last_seq (msg_id
 * NULL or "": none), so a resend of the same attempt is de-duplicated and an
 * attempt on a later position is not. Some possible errors are: ORN_ECONFLICT (another commit
 * came first: reload and decide again), ORN_ETIMEOUT (the outcome is
 * unknown: reload and look for the command), ORN_EUNAVAILABLE, ORN_EINVAL.
 * at must be a position read from the stream (a valid version and the last
 * sequence after it): the confirmation trusts that the commits between
 * them are void. */
orn_rc es_append(es_store *s, const char *aggregate, const char *id, const es_position *at,
                 const char *msg_id, const void *commit, size_t len, es_append_result *out);

/* Sequence of an aggregate's last commit (valid or void), 0 if it has none:
 * what an append's ExpectLastSubjectSeq is checked against. */
orn_rc es_head(es_store *s, const char *aggregate, const char *id, uint64_t *last_seq);

/* The stream's last sequence (0 when empty), asked of the stream leader with
 * a timeout of its own (timeout_ms <= 0: the store's). */
orn_rc es_stream_last_seq(es_store *s, int64_t timeout_ms, uint64_t *out);

/* Called once per event of a valid commit while reading; a non-OK return
 * stops the read and is returned by the reader. subject and e are valid only
 * during the call. */
typedef orn_rc (*es_event_fn)(void *closure, uint64_t seq, const char *subject, const env_envelope *e);

/* One commit as read from the stream. */
typedef struct es_commit {
	uint64_t seq;
	const char *subject;
	int64_t time_ns; /* when the stream stored it (0 if unknown) */
	bool chained;    /* it records the version it was decided on */
	uint64_t prev;   /* that version (when chained) */
	bool valid;      /* by es_chain_accepts */
	/* The commit of the subject before this one (0: none), valid or void,
	 * when the reader knows it: it read the subject from its start or from
	 * a commit it was given (before_known false otherwise). */
	uint64_t before;
	bool before_known;
	const env_envelope *events;
	size_t count;
} es_commit;

/* Called once per commit, valid or void; see es_event_fn for the rest. */
typedef orn_rc (*es_commit_fn)(void *closure, const es_commit *c);

/* Reads every commit whose subject matches filter (may hold wildcards) with
 * stream sequence in [from_seq, up_to], in order, and tells for each whether
 * it is valid (reading the chain before from_seq of the subjects it meets,
 * when from_seq > 1). up_to 0 means "up to the last matching commit present
 * when called": the bound is fixed when the read starts, and the read either
 * delivers every matching commit up to it or fails. *last_seq (may be NULL)
 * receives the sequence of the last commit delivered (0 if none). Some
 * possible errors are: ORN_EIO (the stream stopped delivering short of the
 * bound), ORN_EDECODE (an undecodable commit), ORN_EUNAVAILABLE, ORN_ETIMEOUT,
 * or fn's own error. */
orn_rc es_scan(es_store *s, const char *filter, uint64_t from_seq, uint64_t up_to, es_commit_fn fn,
               void *closure, uint64_t *last_seq);

/* As es_scan, calling fn for each event of each valid commit only. */
orn_rc es_read(es_store *s, const char *filter, uint64_t from_seq, uint64_t up_to, es_event_fn fn,
               void *closure, uint64_t *last_seq);

/* Loads one aggregate's valid events after after_seq (exclusive; a valid
 * commit such as a snapshot's version, or 0) up to its head. *at receives
 * its position: the last valid commit (after_seq if none after it) and the
 * last commit read. */
orn_rc es_load(es_store *s, const char *aggregate, const char *id, uint64_t after_seq, es_event_fn fn,
               void *closure, es_position *at);

/* As es_load, from a known position `from` (a valid commit and the last one
 * read, e.g. a cached fold) up to up_to (0: the head; else reading stops at
 * the first commit past it): only the commits after from.last_seq are read. */
orn_rc es_load_from(es_store *s, const char *aggregate, const char *id, const es_position *from,
                    uint64_t up_to, es_commit_fn fn, void *closure, es_position *at);

/* Sets c->valid by reading the chain of c's subject before c->seq. Some
 * possible errors are: ORN_EUNAVAILABLE, ORN_ETIMEOUT, ORN_EIO. */
orn_rc es_commit_check(es_store *s, es_commit *c);

/* Saves the latest snapshot of an aggregate (state bytes as written by the
 * aggregate kind, with its snapshot schema). Replaces the previous one.
 * With wait false the snapshot is published without waiting for JetStream's
 * acknowledgement (snapshots are an optimisation: a lost one only means a
 * longer replay), so an actor's shard never stalls behind in-flight appends. */
orn_rc es_snapshot_save(es_store *s, const char *aggregate, const char *id, uint32_t schema, uint64_t version,
                        const void *state, size_t len, bool wait);

/* Loads the latest snapshot. ORN_ENOTFOUND if none, or if its schema differs
 * from the one asked for. On success *state is malloc'd and owned by the caller. */
orn_rc es_snapshot_load(es_store *s, const char *aggregate, const char *id, uint32_t schema,
                        uint64_t *version, uint8_t **state, size_t *len);

/* The nak delay for delivery number `delivered` (1 = the first) of a message:
 * first_ms doubled once per earlier delivery, capped at max_ms. */
int64_t es_backoff_ms(uint64_t delivered, int64_t first_ms, int64_t max_ms);

/* ---- following the stream live ----
 * An ordered push consumer (no server state to clean up, gaps healed by the
 * client re-creating it from the last sequence seen) that calls fn for every
 * event of every valid commit (es_chain_accepts; the chain of a subject first
 * met mid-stream is looked up once) whose
 * subject matches filter, in stream order, each commit's events in a row, on
 * the client's delivery thread for the subscription (one at a time). fn's
 * return value is ignored; a commit that does not decode is logged and
 * skipped. */
typedef struct es_follow es_follow;

/* Called once, on a client thread, after es_follow_stop when fn will not be
 * called again: the closure may be freed from here. */
typedef void es_follow_done_fn(void *closure);

/* Starts following filter from stream sequence from_seq (>= 1), or with
 * from_seq 0 from the first commit stored after the call. On success *out is
 * the caller's until es_follow_stop; done is then called exactly once. On
 * failure (ORN_EUNAVAILABLE, ORN_ENOMEM, ...) *out is NULL and done is never
 * called. */
orn_rc es_follow_start(es_store *s, const char *filter, uint64_t from_seq, es_event_fn fn,
                       es_follow_done_fn *done, void *closure, es_follow **out);

/* As es_follow_start, from the first commit stored at or after since_ms
 * (UNIX ms, > 0: else ORN_EINVAL), with every commit, valid or void, to fn
 * (its `before` known: the chain of a subject first met is read from its
 * start). */
orn_rc es_follow_since(es_store *s, const char *filter, int64_t since_ms, es_commit_fn fn,
                       es_follow_done_fn *done, void *closure, es_follow **out);

/* Stops following and returns at once; a call of fn may still be running or
 * start until done is called, which may happen here (with NATS gone: no
 * wait on the server) or later on a client thread; f is freed once both
 * happened. NULL is accepted. */
void es_follow_stop(es_follow *f);

/* ---- tailing the stream, one message at a time ----
 * An ordered consumer read synchronously by one thread (the projector): the
 * caller takes each stored message in stream order, with its sequence, and
 * decides what to keep. */
typedef struct es_tail es_tail;
/* One stored message handed out by es_tail_next; free with es_stored_free. */
typedef struct es_stored es_stored;

/* Opens a tail of filter from stream sequence from_seq (>= 1). Some possible
 * errors are: ORN_EUNAVAILABLE, ORN_ENOMEM, ORN_EINVAL. */
orn_rc es_tail_open(es_store *s, const char *filter, uint64_t from_seq, es_tail **out);

/* As es_tail_open, on another stream than ES_STREAM (a tool's copy of the
 * log, evstream.h). */
orn_rc es_tail_open_stream(es_store *s, const char *stream, const char *filter, uint64_t from_seq,
                           es_tail **out);

/* Waits up to timeout_ms for the next message: ORN_OK with *out (the
 * caller's), ORN_ETIMEOUT when none came, ORN_EUNAVAILABLE when the tail is
 * broken (reopen it from the last sequence kept). */
orn_rc es_tail_next(es_tail *t, int64_t timeout_ms, es_stored **out);

/* Closes the tail (no wait on the server when NATS is gone) and frees it. NULL ok. */
void es_tail_close(es_tail *t);

/* The message's stream sequence, subject, and bytes (a commit: decode it
 * with env_decode_commit; owned by m). */
uint64_t es_stored_seq(const es_stored *m);
const char *es_stored_subject(const es_stored *m);
const void *es_stored_data(const es_stored *m, size_t *len);
/* Its Orion-Prev header, as es_commit's chained and prev: false when present
 * but not a number (no valid commit). */
bool es_stored_prev(const es_stored *m, bool *chained, uint64_t *prev);
/* Frees m. NULL ok. */
void es_stored_free(es_stored *m);

/* ---- the gateway's bus, until it moves to bus_client (issue 15, part 1) ----
 * gateway/gw_bus.c and the gateway's wiring in cli/serve.c still hold the
 * NATS connection itself. Every other library is built with
 * ORION_HIDE_NATS_CLIENT defined, so none of them can see these two. */
#ifndef ORION_HIDE_NATS_CLIENT
#include <nats/nats.h>
/* The store's connection (owned by the store). */
natsConnection *es_store_connection(es_store *s);
/* Converts a natsStatus (and JetStream error code) to an orn_rc. */
orn_rc es_status_rc(natsStatus st, jsErrCode jerr);
#endif

/* Called by a watch for every commit of its aggregate kind, valid or void,
 * in stream order, with the aggregate's id and the commit's Orion-Prev
 * (chained false: none; a malformed one is passed as chained with prev
 * UINT64_MAX, which no chain accepts) and Nats-Msg-Id ("" if none). On
 * cnats' delivery thread. */
typedef void es_watch_fn(void *closure, uint64_t seq, const char *id, bool chained, uint64_t prev,
                         const char *msg_id);

/* A watch: an es_follow of every commit of one aggregate kind from the
 * commit after the last one stored when called (*from_seq: no commit at
 * or after it is missed), headers only (ADR 015: how an actor confirms its
 * appends by the log's echo). Stop it with es_follow_stop; done as there. */
orn_rc es_watch_start(es_store *s, const char *aggregate, es_watch_fn *fn, es_follow_done_fn *done,
                      void *closure, es_follow **out, uint64_t *from_seq);

#endif
