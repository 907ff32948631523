/* crafted_log.c — see crafted_log.h. */
#include "crafted_log.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"
#include "log.h"

struct tcl_log {
	es_store *store;
	hmap *positions; /* subject -> es_position */
	unsigned commits;
};

/* Defines tcl_<name>: an event encoded with prefix_event_encode, its type
 * named by prefix_event_type. */
#define TCL_EVENT_FN(name, prefix)                                                                           \
	tcl_event tcl_##name(const prefix##_event *e)                                                        \
	{                                                                                                    \
		tcl_event out = {prefix##_event_type(e->kind), mp_writer_create()};                          \
		cr_assert_not_null(out.payload);                                                             \
		cr_assert_not_null(out.type);                                                                \
		cr_assert_eq(prefix##_event_encode(out.payload, e), ORN_OK, "cannot encode a %s", out.type); \
		return out;                                                                                  \
	}

TCL_EVENT_FN(stock, stock)
TCL_EVENT_FN(product, product)
TCL_EVENT_FN(sku, sku)
TCL_EVENT_FN(user, user)
TCL_EVENT_FN(cart, cart)
TCL_EVENT_FN(order, order)
TCL_EVENT_FN(payment, payment)
TCL_EVENT_FN(mail, mail_log)

tcl_log *tcl_create(es_store *store)
{
	tcl_log *log = calloc(1, sizeof *log);
	cr_assert_not_null(log);
	log->store = store;
	log->positions = hmap_create();
	cr_assert_not_null(log->positions);
	return log;
}

void tcl_destroy(tcl_log *log)
{
	size_t cursor = 0;
	const char *key;
	void *value;
	if (log == NULL)
		return;
	while (hmap_next(log->positions, &cursor, &key, &value))
		free(value);
	hmap_destroy(log->positions);
	free(log);
}

static es_position *position_of(tcl_log *log, const char *aggregate, const char *id)
{
	char subject[ES_SUBJECT_MAX];
	cr_assert_eq(es_subject(subject, sizeof subject, "orion.evt", aggregate, id), ORN_OK);
	es_position *p = hmap_get(log->positions, subject);
	if (p == NULL) {
		p = calloc(1, sizeof *p);
		cr_assert_not_null(p);
		cr_assert_eq(hmap_put(log->positions, subject, p), ORN_OK);
	}
	return p;
}

es_position tcl_position(tcl_log *log, const char *aggregate, const char *id)
{
	return *position_of(log, aggregate, id);
}

/* The commit of the events (their payloads freed), as the runtime writes one. */
static mp_writer *encode_commit(tcl_log *log, const tcl_event *events, size_t count, char *causation,
                                size_t cap)
{
	mp_writer *commit = mp_writer_create();
	cr_assert_not_null(commit);
	cr_assert(count >= 1 && count <= ENV_MAX_EVENTS);
	snprintf(causation, cap, "tcl-%lld-%u", (long long)orn_now_ms(), ++log->commits);
	env_commit_begin(commit, (uint32_t)count);
	for (size_t i = 0; i < count; i++) {
		env_envelope e;
		memset(&e, 0, sizeof e);
		snprintf(e.type, sizeof e.type, "%s", events[i].type);
		e.schema = 1;
		e.time_ms = orn_now_ms();
		snprintf(e.correlation, sizeof e.correlation, "%s", causation);
		snprintf(e.causation, sizeof e.causation, "%s", causation);
		snprintf(e.actor, sizeof e.actor, "test");
		e.payload = mp_writer_data(events[i].payload);
		e.payload_len = mp_writer_size(events[i].payload);
		cr_assert_eq(env_encode(commit, &e), ORN_OK);
		mp_writer_destroy(events[i].payload);
	}
	cr_assert_eq(mp_writer_status(commit), ORN_OK);
	return commit;
}

uint64_t tcl_valid(tcl_log *log, const char *aggregate, const char *id, const tcl_event *events, size_t count)
{
	char causation[64];
	es_position *at = position_of(log, aggregate, id);
	mp_writer *commit = encode_commit(log, events, count, causation, sizeof causation);
	es_append_result res;
	orn_rc rc = es_append(log->store, aggregate, id, at, causation, mp_writer_data(commit),
	                      mp_writer_size(commit), &res);
	cr_assert_eq(rc, ORN_OK, "valid commit on %s.%s: %s", aggregate, id, orn_strerror(rc));
	mp_writer_destroy(commit);
	at->version = at->last_seq = res.seq;
	return res.seq;
}

uint64_t tcl_void(tcl_log *log, const char *aggregate, const char *id, uint64_t stale,
                  const tcl_event *events, size_t count)
{
	char causation[64];
	es_position *at = position_of(log, aggregate, id);
	cr_assert(stale != at->version, "a commit on the version is valid, not void");
	mp_writer *commit = encode_commit(log, events, count, causation, sizeof causation);
	es_append_result res;
	orn_rc rc = es_append(log->store, aggregate, id, &(es_position){stale, at->last_seq}, causation,
	                      mp_writer_data(commit), mp_writer_size(commit), &res);
	cr_assert_eq(rc, ORN_ECONFLICT, "void commit on %s.%s: %s", aggregate, id, orn_strerror(rc));
	mp_writer_destroy(commit);
	uint64_t seq = 0;
	cr_assert_eq(es_head(log->store, aggregate, id, &seq), ORN_OK);
	cr_assert_gt(seq, at->last_seq, "the server stored the void commit");
	at->last_seq = seq;
	return seq;
}

uint64_t tcl_legacy(tcl_log *log, const char *aggregate, const char *id, const tcl_event *events,
                    size_t count)
{
	char causation[64], subject[ES_SUBJECT_MAX];
	es_position *at = position_of(log, aggregate, id);
	mp_writer *commit = encode_commit(log, events, count, causation, sizeof causation);
	cr_assert_eq(es_subject(subject, sizeof subject, "orion.evt", aggregate, id), ORN_OK);
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus st = js_Publish(&ack, es_store_jetstream(log->store), subject, mp_writer_data(commit),
	                           (int)mp_writer_size(commit), NULL, &jerr);
	cr_assert_eq(st, NATS_OK, "legacy commit on %s: %s (%d)", subject, natsStatus_GetText(st), (int)jerr);
	uint64_t seq = ack->Sequence;
	jsPubAck_Destroy(ack);
	mp_writer_destroy(commit);
	at->version = at->last_seq = seq;
	return seq;
}
