/* evstore-internal.h — what the engine's own files (the actor runtime, the
 * command bus, the kit) use of the event store's NATS connection. Included by
 * engine .c files only (and by the engine's own tests); roles see evstore.h
 * and kit.h. */
#ifndef ORION_EVSTORE_INTERNAL_H
#define ORION_EVSTORE_INTERNAL_H

#include <nats/nats.h>

#include "evstore.h"

/* The underlying connection and JetStream context (owned by the store). */
natsConnection *es_store_connection(es_store *s);
jsCtx *es_store_jetstream(es_store *s);
/* Whether ORION_EVT has replicas: a direct get may then be answered by one
 * that lags behind what the stream has stored and delivered. */
bool es_store_replicated(const es_store *s);
/* The store's JetStream API timeout. */
int64_t es_store_timeout_ms(const es_store *s);

/* New options (*out, destroy with natsOptions_Destroy) that connect like the
 * store: its URL(s), user, password and TLS, reconnecting forever, with the
 * given connection name (may be NULL). For a second connection of a role. */
orn_rc es_store_nats_options(es_store *s, const char *name, natsOptions **out);

/* Connects (*out, the caller's) as the store's role does, but with the
 * role's serve user (na_serve_user): the connection commands arrive on and
 * are answered on, the only one with response permissions (ADR 014). A
 * server that has no such user (configured before it) is connected to with
 * the role's own user, logged once. Without a user, as the store connects.
 * ORN_EUNAVAILABLE, ORN_EINVAL, ORN_ENOMEM. */
orn_rc es_store_connect_serving(es_store *s, const char *name, natsConnection **out);

/* Sets the server(s) of opts from url: one NATS URL or a comma-separated
 * list (a cluster's seed servers; spaces around the commas are ignored).
 * NULL sets the default URL. cnats splits such a list only in
 * natsConnection_ConnectTo, so every natsOptions of Orion goes through this.
 * ORN_EINVAL for an empty entry, ORN_ENOMEM if out of memory. */
orn_rc es_nats_options_set_url(natsOptions *opts, const char *url);

/* Converts a natsStatus (and JetStream error code) to an orn_rc. */
orn_rc es_status_rc(natsStatus st, jsErrCode jerr);

/* The Nats-Msg-Id an append of aggregate id with msg_id decided after
 * reading up to last_seq carries ("" when msg_id is NULL or ""): how an
 * appender knows its own commit in the log's echo. */
#define ES_MSG_ID_MAX 24
orn_rc es_msg_id(char out[ES_MSG_ID_MAX], const char *aggregate, const char *id, const char *msg_id,
                 uint64_t last_seq);

/* Starts an append without waiting: the commit goes out as a plain NATS
 * message with the same headers as es_append, nats_msg_id its Nats-Msg-Id as
 * es_msg_id derives it ("" for none), and JetStream publishes its
 * acknowledgement to reply_to, a subject the caller subscribes to. Read the
 * acknowledgement with es_parse_ack, then confirm the commit (es_confirm_*).
 * reply_to NULL asks for no acknowledgement: for an appender that learns
 * its commit's fate from the log's echo (ADR 015 §3). checked false leaves
 * ExpectLastSubjectSeq out: the message sent again to learn what became of
 * one sent unacknowledged must be answered by JetStream's deduplication
 * (a duplicate when the first was stored), which a replicated stream's
 * leader checks only after that header (it would answer "wrong last
 * sequence", the first copy being the reason). The chain rule decides such
 * a commit's validity as any other's. The caller owns timeouts. */
orn_rc es_append_publish(es_store *s, const char *aggregate, const char *id, const es_position *at,
                         const char *nats_msg_id, bool checked, const void *commit, size_t len,
                         const char *reply_to);

/* Reads a JetStream publish acknowledgement (out param out): ORN_OK with the
 * sequence (and duplicate flag); ORN_ECONFLICT if the expected version was
 * wrong (jerr 10071); ORN_EUNAVAILABLE if no stream took the message (a
 * no-responders status); ORN_EINTERNAL for another JetStream error;
 * ORN_EDECODE if the reply is unreadable. */
orn_rc es_parse_ack(natsMsg *ack, es_append_result *out);

/* ---- confirming an acknowledged commit (ADR 015) ----
 * A commit at seq, decided on at->version after reading up to at->last_seq,
 * is valid iff no valid commit of its subject lies between at->last_seq and
 * seq. The confirmation reads the subject's next commits after at->last_seq
 * (direct gets, answered by any replica; the stream leader when a replica
 * has not got that far) until it meets seq (valid) or a valid commit before
 * it (void). */
typedef struct es_confirm {
	uint64_t seq;        /* the commit being confirmed */
	uint64_t last_valid; /* the last valid commit before `from` */
	uint64_t from;       /* where the next look starts */
} es_confirm;

typedef enum es_verdict {
	ES_VALID,      /* the commit is the first valid one after its version */
	ES_VOID,       /* a valid commit came first: the commit changes nothing */
	ES_LOOK_AGAIN, /* a void commit came first: look again from c->from */
	ES_ASK_LEADER  /* the replica that answered has not got to seq: es_confirm_wait */
} es_verdict;

/* Starts the confirmation of the commit at seq decided on at. */
void es_confirm_init(es_confirm *c, const es_position *at, uint64_t seq);
/* Asks for the next commit of the subject from c->from; the answer goes to
 * reply_to (read it with es_confirm_answer). */
orn_rc es_confirm_publish(es_store *s, const char *aggregate, const char *id, const es_confirm *c,
                          const char *reply_to);
/* One step of a confirmation: the subject's next commit from c->from is at
 * seq with the given Orion-Prev (chained false: none). Advances c on a void
 * commit before c->seq (ES_LOOK_AGAIN); ES_ASK_LEADER for a commit no
 * up-to-date reader can meet there. */
es_verdict es_confirm_step(es_confirm *c, uint64_t seq, bool chained, uint64_t prev);
/* Reads one answer to es_confirm_publish and advances c. */
es_verdict es_confirm_answer(es_confirm *c, natsMsg *answer);
/* Confirms synchronously from where c stands, asking the stream leader when
 * a replica lags, for up to the store's timeout: ORN_OK valid, ORN_ECONFLICT
 * void, ORN_ETIMEOUT undecided, or an error of the store. */
orn_rc es_confirm_wait(es_store *s, const char *aggregate, const char *id, es_confirm *c);

/* Decodes a commit delivered by a consumer of the stream (a durable or an
 * ordered one) or a direct get: its sequence, subject, time, Orion-Prev
 * and its events (into events[0..cap)); valid
 * is left false. The commit points into msg. ORN_EDECODE if msg is not a
 * commit. */
orn_rc es_commit_decode(natsMsg *msg, env_envelope *events, size_t cap, es_commit *out);

/* The Orion-Prev header of a stored message: *chained false when absent.
 * False when present but not a number (no valid commit). */
bool es_msg_prev(natsMsg *msg, bool *chained, uint64_t *prev);

/* The stream sequence in a JetStream delivery's reply subject, without
 * cnats' allocating parser: "$JS.ACK.<stream>.<consumer>.<delivered>.<seq>.
 * <consumer seq>.<time>.<pending>" (9 tokens), or with "<domain>.<account
 * hash>" after "$JS.ACK" (11 or 12 tokens). 0 if it is neither. */
uint64_t es_delivered_seq(const char *reply);

/* As es_delivered_seq, and *stored_ns the time the stream stored the message
 * (UNIX ns; 0 if the reply does not say). */
uint64_t es_delivered_position(const char *reply, int64_t *stored_ns);

/* ---- durable pull consumers (the kit's consumer loop, kit.h) ---- */
typedef struct es_durable_options {
	const char *durable; /* consumer name */
	const char *filter;  /* filter subject, e.g. "orion.evt.order.>" */
	int64_t ack_wait_ms; /* redelivery after this long without an ack */
	int max_ack_pending; /* 0: the server's default */
} es_durable_options;

/* Creates the durable consumer (every message from the start, explicit acks,
 * redelivered forever), or updates it when it exists with another
 * configuration. Logs a failure (with the durable's name). */
orn_rc es_durable_ensure(es_store *s, const es_durable_options *o);

#endif
