/* decision.c — the decision object a kind's decide function fills. */
#include "decision.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

struct act_decision {
	char rejection[64];
	char detail[256];
	bool rejected;
	size_t count;
	struct {
		char type[ENV_TYPE_MAX];
		uint32_t schema;
		size_t offset, len;
	} events[ENV_MAX_EVENTS];
	mp_writer *payloads; /* every payload, back to back */
};

act_decision *act_decision_create(void)
{
	act_decision *d = calloc(1, sizeof *d);
	if (d == NULL)
		return NULL;
	d->payloads = mp_writer_create();
	if (d->payloads == NULL) {
		free(d);
		return NULL;
	}
	return d;
}

void act_decision_destroy(act_decision *d)
{
	if (d == NULL)
		return;
	mp_writer_destroy(d->payloads);
	free(d);
}

void act_decision_clear(act_decision *d)
{
	d->rejected = false;
	d->rejection[0] = '\0';
	d->detail[0] = '\0';
	d->count = 0;
	mp_writer_reset(d->payloads);
}

orn_rc act_decision_emit(act_decision *d, const char *type, uint32_t schema, const uint8_t *payload,
                         size_t len)
{
	if (d->count >= ENV_MAX_EVENTS)
		return ORN_ETOOBIG;
	if (type == NULL || type[0] == '\0' || strlen(type) >= ENV_TYPE_MAX || payload == NULL || len == 0 ||
	    schema == 0)
		return ORN_EINVAL;
	/* The payload must be exactly one msgpack value: catch a domain bug here,
	 * not later as an unencodable commit. */
	mp_reader r;
	mp_reader_init(&r, payload, len);
	if (mp_skip(&r) != ORN_OK || mp_reader_remaining(&r) != 0)
		return ORN_EINVAL;
	size_t offset = mp_writer_size(d->payloads);
	mp_write_raw(d->payloads, payload, len);
	if (mp_writer_status(d->payloads) != ORN_OK)
		return ORN_ENOMEM;
	strcpy(d->events[d->count].type, type);
	d->events[d->count].schema = schema;
	d->events[d->count].offset = offset;
	d->events[d->count].len = len;
	d->count++;
	return ORN_OK;
}

void act_decision_reject(act_decision *d, const char *code, const char *detail)
{
	d->rejected = true;
	d->count = 0;
	mp_writer_reset(d->payloads);
	snprintf(d->rejection, sizeof d->rejection, "%s", code ? code : "rejected");
	snprintf(d->detail, sizeof d->detail, "%s", detail ? detail : "");
}

const char *act_decision_rejection(const act_decision *d)
{
	return d->rejected ? d->rejection : NULL;
}

const char *act_decision_detail(const act_decision *d)
{
	return d->detail;
}

size_t act_decision_count(const act_decision *d)
{
	return d->count;
}

orn_rc act_decision_event(const act_decision *d, size_t i, env_envelope *out)
{
	if (i >= d->count)
		return ORN_ENOTFOUND;
	memset(out, 0, sizeof *out);
	strcpy(out->type, d->events[i].type);
	out->schema = d->events[i].schema;
	out->payload = mp_writer_data(d->payloads) + d->events[i].offset;
	out->payload_len = d->events[i].len;
	return ORN_OK;
}

orn_rc act_decision_commit(const act_decision *d, const env_envelope *cmd, int64_t time_ms, mp_writer *w)
{
	if (d->rejected || d->count == 0)
		return ORN_EINVAL;
	mp_writer_reset(w);
	env_commit_begin(w, (uint32_t)d->count);
	for (size_t i = 0; i < d->count; i++) {
		env_envelope ev;
		orn_rc rc = act_decision_event(d, i, &ev);
		if (rc != ORN_OK)
			return rc;
		ev.time_ms = cmd->time_ms > 0 ? cmd->time_ms : time_ms;
		memcpy(ev.correlation, cmd->correlation, sizeof ev.correlation);
		memcpy(ev.causation, cmd->causation, sizeof ev.causation);
		memcpy(ev.actor, cmd->actor, sizeof ev.actor);
		memcpy(ev.request, cmd->request, sizeof ev.request);
		if ((rc = env_encode(w, &ev)) != ORN_OK)
			return rc;
	}
	return mp_writer_status(w);
}
