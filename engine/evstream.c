/* evstream.c — whole JetStream streams, for tools that move a log (see
 * evstream.h). */
#include "evstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore-internal.h"
#include "log.h"

#define RESTORE_BATCH 256
#define READ_IDLE_MS  10000 /* a reader that gets nothing this long fails */

static jsOptions *call_options(es_store *s, jsOptions *o)
{
	jsOptions_Init(o);
	o->Wait = es_store_timeout_ms(s);
	return o;
}

orn_rc es_stream_state_get(es_store *s, const char *stream, es_stream_state *out)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	memset(out, 0, sizeof *out);
	natsStatus st = js_GetStreamInfo(&si, es_store_jetstream(s), stream, call_options(s, &jo), &jerr);
	if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
		return ORN_OK;
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	out->exists = true;
	out->first_seq = si->State.FirstSeq;
	out->last_seq = si->State.LastSeq;
	out->msgs = si->State.Msgs;
	out->deleted = (uint64_t)si->State.NumDeleted;
	if (si->Config != NULL && si->Config->Description != NULL)
		snprintf(out->description, sizeof out->description, "%s", si->Config->Description);
	jsStreamInfo_Destroy(si);
	return ORN_OK;
}

/* Adds a stream with cfg, whose name, subject and description are replaced
 * for the call only (cfg stays owned by its info). */
static orn_rc add_like(es_store *s, jsStreamConfig *cfg, const char *name, const char *subjects,
                       const char *description)
{
	const char *saved_name = cfg->Name, *saved_description = cfg->Description;
	const char **saved_subjects = cfg->Subjects;
	int saved_len = cfg->SubjectsLen;
	const char *subject_list[1] = {subjects};
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	cfg->Name = name;
	cfg->Subjects = subject_list;
	cfg->SubjectsLen = 1;
	cfg->Description = description;
	natsStatus st = js_AddStream(&si, es_store_jetstream(s), cfg, call_options(s, &jo), &jerr);
	cfg->Name = saved_name;
	cfg->Subjects = saved_subjects;
	cfg->SubjectsLen = saved_len;
	cfg->Description = saved_description;
	jsStreamInfo_Destroy(si);
	if (st != NATS_OK)
		log_error("cannot create stream", "stream", name, "error", natsStatus_GetText(st));
	return es_status_rc(st, jerr);
}

orn_rc es_stream_create_like(es_store *s, const char *from, const char *name, const char *subjects,
                             const char *description)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	natsStatus st = js_GetStreamInfo(&si, es_store_jetstream(s), name, call_options(s, &jo), &jerr);
	if (st == NATS_OK) {
		bool same = si->Config != NULL && si->Config->SubjectsLen == 1 &&
		            strcmp(si->Config->Subjects[0], subjects) == 0;
		jsStreamInfo_Destroy(si);
		return same ? ORN_OK : ORN_EINVAL;
	}
	if (st != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr)
		return es_status_rc(st, jerr);
	si = NULL;
	jerr = 0;
	st = js_GetStreamInfo(&si, es_store_jetstream(s), from, call_options(s, &jo), &jerr);
	if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
		return ORN_ENOTFOUND;
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	orn_rc rc = si->Config != NULL ? add_like(s, si->Config, name, subjects, description) : ORN_EDECODE;
	jsStreamInfo_Destroy(si);
	return rc;
}

orn_rc es_stream_describe(es_store *s, const char *stream, const char *description)
{
	jsStreamInfo *si = NULL, *updated = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	natsStatus st = js_GetStreamInfo(&si, es_store_jetstream(s), stream, call_options(s, &jo), &jerr);
	if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
		return ORN_ENOTFOUND;
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	const char *saved = si->Config->Description;
	si->Config->Description = description;
	st = js_UpdateStream(&updated, es_store_jetstream(s), si->Config, call_options(s, &jo), &jerr);
	si->Config->Description = saved;
	if (st != NATS_OK)
		log_error("cannot update stream", "stream", stream, "error", nats_GetLastError(NULL));
	jsStreamInfo_Destroy(updated);
	jsStreamInfo_Destroy(si);
	return es_status_rc(st, jerr);
}

orn_rc es_stream_delete(es_store *s, const char *stream)
{
	jsErrCode jerr = 0;
	jsOptions jo;
	natsStatus st = js_DeleteStream(es_store_jetstream(s), stream, call_options(s, &jo), &jerr);
	if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
		return ORN_OK;
	if (st == NATS_OK)
		log_info("stream deleted", "stream", stream);
	return es_status_rc(st, jerr);
}

orn_rc es_stream_recreate_empty(es_store *s, const char *stream)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	natsStatus st = js_GetStreamInfo(&si, es_store_jetstream(s), stream, call_options(s, &jo), &jerr);
	if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
		return ORN_OK;
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	orn_rc rc = si->Config == NULL || si->Config->SubjectsLen != 1 ? ORN_EDECODE : ORN_OK;
	if (rc == ORN_OK && (rc = es_stream_delete(s, stream)) == ORN_OK)
		rc = add_like(s, si->Config, stream, si->Config->Subjects[0], si->Config->Description);
	jsStreamInfo_Destroy(si);
	return rc;
}

struct es_stream_reader {
	es_tail *tail;
	uint64_t next; /* the sequence the next message must have */
};

orn_rc es_stream_reader_open(es_store *s, const char *stream, const char *filter, uint64_t from_seq,
                             es_stream_reader **out)
{
	es_stream_reader *r = calloc(1, sizeof *r);
	*out = NULL;
	if (r == NULL)
		return ORN_ENOMEM;
	r->next = from_seq > 0 ? from_seq : 1;
	orn_rc rc = es_tail_open_stream(s, stream, filter, r->next, &r->tail);
	if (rc != ORN_OK) {
		free(r);
		return rc;
	}
	*out = r;
	return ORN_OK;
}

orn_rc es_stream_reader_next(es_stream_reader *r, es_raw *out)
{
	memset(out, 0, sizeof *out);
	orn_rc rc = es_tail_next(r->tail, READ_IDLE_MS, &out->msg);
	if (rc == ORN_ETIMEOUT)
		return ORN_EIO; /* the stream stopped delivering short of what the caller expects */
	if (rc != ORN_OK)
		return rc;
	out->seq = es_stored_seq(out->msg);
	out->subject = es_stored_subject(out->msg);
	out->data = es_stored_data(out->msg, &out->len);
	if (out->seq != r->next) {
		es_raw_dispose(out);
		return ORN_EIO;
	}
	r->next++;
	return es_stored_prev(out->msg, &out->chained, &out->prev) ? ORN_OK : ORN_EDECODE;
}

void es_stream_reader_close(es_stream_reader *r)
{
	if (r == NULL)
		return;
	es_tail_close(r->tail);
	free(r);
}

void es_raw_dispose(es_raw *r)
{
	es_stored_free(r->msg);
	memset(r, 0, sizeof *r);
}

orn_rc es_stream_write(es_store *s, const char *stream, const char *subject, const void *data, size_t len,
                       bool chained, uint64_t prev, uint64_t expect_last)
{
	natsMsg *msg = NULL;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	jsPubOptions po;
	char prev_text[24], last_text[24];
	snprintf(prev_text, sizeof prev_text, "%llu", (unsigned long long)prev);
	snprintf(last_text, sizeof last_text, "%llu", (unsigned long long)expect_last);
	natsStatus st = natsMsg_Create(&msg, subject, NULL, (const char *)data, (int)len);
	/* set by hand: the client leaves an expected last sequence of 0 out */
	if (st == NATS_OK)
		st = natsMsgHeader_Set(msg, "Nats-Expected-Last-Sequence", last_text);
	if (st == NATS_OK)
		st = natsMsgHeader_Set(msg, "Nats-Expected-Stream", stream);
	if (st == NATS_OK && chained)
		st = natsMsgHeader_Set(msg, "Orion-Prev", prev_text);
	jsPubOptions_Init(&po);
	po.MaxWait = es_store_timeout_ms(s);
	if (st == NATS_OK)
		st = js_PublishMsg(&ack, es_store_jetstream(s), msg, &po, &jerr);
	orn_rc rc = es_status_rc(st, jerr);
	if (rc == ORN_OK && ack->Sequence != expect_last + 1)
		rc = ORN_ECONFLICT;
	natsMsg_Destroy(msg);
	jsPubAck_Destroy(ack);
	return rc;
}

orn_rc es_stream_consumers(es_store *s, const char *stream, es_durable_state **out, size_t *count,
                           size_t *active, size_t *ephemeral)
{
	jsConsumerInfoList *list = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	size_t n = 0, in_use = 0, ephemerals = 0;
	es_durable_state *durables = NULL;
	if (out != NULL)
		*out = NULL;
	natsStatus st = js_Consumers(&list, es_store_jetstream(s), stream, call_options(s, &jo), &jerr);
	if (st != NATS_OK && st != NATS_NOT_FOUND)
		log_error("cannot list consumers", "stream", stream, "error", nats_GetLastError(NULL));
	if (st == NATS_NOT_FOUND && jerr != JSStreamNotFoundErr && list == NULL)
		st = NATS_OK; /* a stream without consumers */
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	int total = list != NULL ? list->Count : 0;
	if (total > 0 && (durables = calloc((size_t)total, sizeof *durables)) == NULL) {
		jsConsumerInfoList_Destroy(list);
		return ORN_ENOMEM;
	}
	for (int i = 0; i < total; i++) {
		const jsConsumerInfo *ci = list->List[i];
		const jsConsumerConfig *cc = ci->Config;
		if (cc == NULL || cc->Durable == NULL || cc->Durable[0] == '\0') {
			ephemerals++;
			continue;
		}
		if (ci->PushBound || ci->NumWaiting > 0)
			in_use++;
		es_durable_state *d = &durables[n++];
		snprintf(d->name, sizeof d->name, "%s", cc->Durable);
		snprintf(d->filter, sizeof d->filter, "%s",
		         cc->FilterSubject != NULL ? cc->FilterSubject : "");
		d->ack_wait_ms = cc->AckWait / 1000000;
		d->max_ack_pending = (int)cc->MaxAckPending;
		d->floor = ci->AckFloor.Stream;
	}
	jsConsumerInfoList_Destroy(list);
	if (out != NULL)
		*out = durables;
	else
		free(durables);
	if (count != NULL)
		*count = n;
	if (active != NULL)
		*active = in_use;
	if (ephemeral != NULL)
		*ephemeral = ephemerals;
	return ORN_OK;
}

/* The durable's ack floor now (stream sequence), and whether it has nothing
 * left to deliver or waiting for an ack. */
static orn_rc durable_floor(es_store *s, const char *name, uint64_t *floor, bool *drained)
{
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	natsStatus st =
	        js_GetConsumerInfo(&ci, es_store_jetstream(s), ES_STREAM, name, call_options(s, &jo), &jerr);
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	*floor = ci->AckFloor.Stream;
	*drained = ci->NumPending == 0 && ci->NumAckPending == 0;
	jsConsumerInfo_Destroy(ci);
	return ORN_OK;
}

orn_rc es_durable_restore(es_store *s, const es_durable_state *d)
{
	es_durable_options o = {d->name, d->filter, d->ack_wait_ms, d->max_ack_pending};
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	uint64_t floor = 0;
	bool drained = false, past = false;
	orn_rc rc = es_durable_ensure(s, &o);
	if (rc != ORN_OK || (rc = durable_floor(s, d->name, &floor, &drained)) != ORN_OK)
		return rc;
	if (floor >= d->floor || drained) /* nothing to skip (the server moves the floor of a */
		return ORN_OK;            /* filtered consumer past messages it does not take) */
	jsSubOptions_Init(&so);
	so.Stream = ES_STREAM;
	so.Consumer = d->name;
	if ((rc = es_status_rc(
	             js_PullSubscribe(&sub, es_store_jetstream(s), d->filter, d->name, NULL, &so, &jerr),
	             jerr)) != ORN_OK)
		return rc;
	while (rc == ORN_OK && !past && floor < d->floor && !drained) {
		natsMsgList list = {0};
		natsStatus st =
		        natsSubscription_Fetch(&list, sub, RESTORE_BATCH, es_store_timeout_ms(s), &jerr);
		if (st != NATS_OK) {
			rc = es_status_rc(st, jerr);
			break;
		}
		int sync =
		        -1; /* the last message to ack in this batch: acked synchronously, after the others */
		for (int i = 0; rc == ORN_OK && i < list.Count; i++) {
			jsMsgMetaData *meta = NULL;
			if (natsMsg_GetMetaData(&meta, list.Msgs[i]) != NATS_OK) {
				rc = ORN_EDECODE;
				break;
			}
			if (meta->Sequence.Stream <= d->floor && !past)
				sync = i;
			else
				past = true;
			jsMsgMetaData_Destroy(meta);
		}
		for (int i = 0; rc == ORN_OK && i < list.Count; i++) {
			if (i < sync)
				natsMsg_Ack(list.Msgs[i], NULL);
			else if (i == sync)
				rc = es_status_rc(natsMsg_AckSync(list.Msgs[i], NULL, &jerr), jerr);
			else
				natsMsg_Nak(list.Msgs[i], NULL); /* the role's, from where it stood */
		}
		natsMsgList_Destroy(&list);
		if (rc == ORN_OK)
			rc = durable_floor(s, d->name, &floor, &drained);
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	if (rc == ORN_OK && floor < d->floor && !drained && !past)
		rc = ORN_EIO;
	return rc;
}
