/* evstream.h — whole JetStream streams, for the tools that move a log while
 * the shop is stopped (orion migrate-personal-data, ADR 032): a stream's
 * state, a new stream made with another's configuration, deletion, messages
 * read in order and written at a given sequence with their Orion-Prev
 * header (ADR 015), and
 * the durable consumers of a stream saved and restored at their ack floor.
 * Nothing here is meant for a running shop. */
#ifndef ORION_EVSTREAM_H
#define ORION_EVSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "orn.h"

#define ES_STREAM_DESCRIPTION_MAX 4096 /* nats-server's limit */
#define ES_DURABLE_NAME_MAX       64

/* What a stream holds, as its leader answers. */
typedef struct es_stream_state {
	bool exists;
	uint64_t first_seq, last_seq, msgs, deleted; /* deleted: interior gaps */
	char description[ES_STREAM_DESCRIPTION_MAX]; /* "" if none (truncated if longer) */
} es_stream_state;

/* The state of stream into *out (out->exists false, ORN_OK, when there is no
 * such stream). ORN_EUNAVAILABLE, ORN_ETIMEOUT. */
orn_rc es_stream_state_get(es_store *s, const char *stream, es_stream_state *out);

/* Creates stream name with the configuration of stream from (storage,
 * replicas, limits, duplicate window, deny delete and purge, direct gets),
 * its one subject filter replaced by subjects and its description by
 * description (NULL: none). ORN_OK if name exists already with that subject;
 * ORN_ENOTFOUND if from does not exist; ORN_EINVAL if name exists with
 * other subjects; ORN_EUNAVAILABLE, ORN_ETIMEOUT. */
orn_rc es_stream_create_like(es_store *s, const char *from, const char *name, const char *subjects,
                             const char *description);

/* Sets the description of stream (a tool's note that outlives a crash).
 * ORN_ENOTFOUND if there is no such stream; ORN_EUNAVAILABLE, ORN_ETIMEOUT. */
orn_rc es_stream_describe(es_store *s, const char *stream, const char *description);

/* Deletes stream with its messages and consumers; ORN_OK also when it does
 * not exist. A stream's DenyDelete governs its messages, not the stream. */
orn_rc es_stream_delete(es_store *s, const char *stream);

/* Empties stream by deleting it and creating it again with the same
 * configuration (for one that denies purges). ORN_OK if it does not exist. */
orn_rc es_stream_recreate_empty(es_store *s, const char *stream);

/* One message of a stream, read in order. */
typedef struct es_raw {
	uint64_t seq;
	const char *subject; /* owned by the message */
	const uint8_t *data; /* owned by the message */
	size_t len;
	bool chained;   /* it has an Orion-Prev header ... */
	uint64_t prev;  /* ... naming this version (es_stored_prev) */
	es_stored *msg; /* es_raw_dispose frees it */
} es_raw;

/* Reads a stream in order, every sequence, from an ordered consumer
 * (es_tail_open_stream): what a copy of the whole log reads. */
typedef struct es_stream_reader es_stream_reader;

/* Opens a reader of stream (filter: its subjects) from from_seq (>= 1).
 * *out is closed with es_stream_reader_close. ORN_EUNAVAILABLE, ORN_ENOMEM,
 * ORN_EINVAL. */
orn_rc es_stream_reader_open(es_store *s, const char *stream, const char *filter, uint64_t from_seq,
                             es_stream_reader **out);

/* The message at the reader's next sequence into *out (dispose it with
 * es_raw_dispose). ORN_EIO if the stream has another sequence next (a gap)
 * or stops delivering for 10 s; ORN_EDECODE if its Orion-Prev is not a
 * number; ORN_EUNAVAILABLE. */
orn_rc es_stream_reader_next(es_stream_reader *r, es_raw *out);

/* Closes the reader and frees it. NULL ok. */
void es_stream_reader_close(es_stream_reader *r);

/* Frees what r holds; r may be zeroed or disposed already. */
void es_raw_dispose(es_raw *r);

/* Stores data on subject in stream, with Orion-Prev: prev when chained, only
 * if the stream's last sequence is expect_last (so the message lands at
 * expect_last + 1: sequences are kept when a log is copied message by
 * message, and a copy resumed after a crash cannot store a message twice).
 * ORN_ECONFLICT if the stream's last sequence is another; ORN_EUNAVAILABLE,
 * ORN_ETIMEOUT (the outcome is unknown: read the stream's state). */
orn_rc es_stream_write(es_store *s, const char *stream, const char *subject, const void *data, size_t len,
                       bool chained, uint64_t prev, uint64_t expect_last);

/* A durable consumer of a stream, enough to create it again. */
typedef struct es_durable_state {
	char name[ES_DURABLE_NAME_MAX];
	char filter[ES_SUBJECT_MAX];
	int64_t ack_wait_ms;
	int max_ack_pending;
	uint64_t floor; /* stream sequence of its ack floor: every message up to it was acked */
} es_durable_state;

/* The consumers of stream: its durable ones into *out (malloc'd, the
 * caller's; *count of them), how many of them are in use (a pull waiting, a
 * push subscription bound) into *active and how many ephemeral consumers it
 * has (ordered consumers of running processes) into *ephemeral. Each of
 * the last three may be NULL. ORN_ENOTFOUND if there is no such stream. */
orn_rc es_stream_consumers(es_store *s, const char *stream, es_durable_state **out, size_t *count,
                           size_t *active, size_t *ephemeral);

/* Creates the durable consumer d on ES_STREAM as the roles do
 * (es_durable_ensure: every message from the start, explicit acks) and acks
 * every message up to d->floor without delivering it to anyone, so that it
 * goes on where it stood. Messages after the floor are left for the role
 * (naked, not acked). ORN_EUNAVAILABLE, ORN_ETIMEOUT, ORN_EIO if it does
 * not reach the floor. */
orn_rc es_durable_restore(es_store *s, const es_durable_state *d);

#endif
