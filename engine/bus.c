/* bus.c — command requests and the reply codec (see bus.h). */
#include "bus.h"

#include <stdlib.h>
#include <string.h>

#include "bus-internal.h"
#include "evstore-internal.h"

static const char *outcome_names[] = {"accepted", "rejected", "failed"};

const char *bus_outcome_name(bus_outcome o)
{
	return (unsigned)o < 3 ? outcome_names[o] : "failed";
}

orn_rc bus_reply_encode(mp_writer *w, const bus_reply *r)
{
	mp_write_map(w, r->view != NULL ? 8 : 7);
	mp_write_cstr(w, "outcome");
	mp_write_cstr(w, bus_outcome_name(r->outcome));
	mp_write_cstr(w, "code");
	mp_write_cstr(w, r->code);
	mp_write_cstr(w, "detail");
	mp_write_cstr(w, r->detail);
	mp_write_cstr(w, "version");
	mp_write_uint(w, r->version);
	mp_write_cstr(w, "seq");
	mp_write_uint(w, r->seq);
	mp_write_cstr(w, "attempts");
	mp_write_uint(w, r->attempts);
	mp_write_cstr(w, "duplicate");
	mp_write_bool(w, r->duplicate);
	if (r->view != NULL) {
		mp_write_cstr(w, "view");
		mp_write_raw(w, r->view, r->view_len);
	}
	return mp_writer_status(w);
}

static orn_rc read_outcome(mp_reader *rd, bus_outcome *out)
{
	const char *s = NULL;
	uint32_t n = 0;
	if (mp_read_str(rd, &s, &n) != ORN_OK)
		return ORN_EDECODE;
	for (int i = 0; i < 3; i++)
		if (mp_str_eq(s, n, outcome_names[i])) {
			*out = (bus_outcome)i;
			return ORN_OK;
		}
	return ORN_EDECODE;
}

static orn_rc read_reply_field(mp_reader *rd, const char *key, uint32_t key_len, bus_reply *r)
{
	uint64_t n = 0;
	if (mp_str_eq(key, key_len, "outcome"))
		return read_outcome(rd, &r->outcome);
	if (mp_str_eq(key, key_len, "code"))
		return mp_read_cstr(rd, r->code, sizeof r->code) == ORN_OK ? ORN_OK : ORN_EDECODE;
	if (mp_str_eq(key, key_len, "detail"))
		return mp_read_cstr(rd, r->detail, sizeof r->detail) == ORN_OK ? ORN_OK : ORN_EDECODE;
	if (mp_str_eq(key, key_len, "version"))
		return mp_read_uint(rd, &r->version);
	if (mp_str_eq(key, key_len, "seq"))
		return mp_read_uint(rd, &r->seq);
	if (mp_str_eq(key, key_len, "attempts")) {
		if (mp_read_uint(rd, &n) != ORN_OK || n > UINT32_MAX)
			return ORN_EDECODE;
		r->attempts = (uint32_t)n;
		return ORN_OK;
	}
	if (mp_str_eq(key, key_len, "duplicate"))
		return mp_read_bool(rd, &r->duplicate);
	if (mp_str_eq(key, key_len, "view")) {
		const uint8_t *start = NULL;
		size_t len = 0;
		if (mp_read_raw(rd, &start, &len) != ORN_OK || r->view != NULL)
			return ORN_EDECODE;
		r->view = malloc(len);
		if (r->view == NULL)
			return ORN_ENOMEM;
		memcpy(r->view, start, len);
		r->view_len = len;
		return ORN_OK;
	}
	return mp_skip(rd);
}

orn_rc bus_reply_decode(const void *buf, size_t len, bus_reply *r)
{
	mp_reader rd;
	uint32_t count = 0;
	orn_rc rc = ORN_OK;
	memset(r, 0, sizeof *r);
	r->outcome = BUS_FAILED;
	mp_reader_init(&rd, buf, len);
	if (mp_read_map(&rd, &count) != ORN_OK)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++) {
		const char *key = NULL;
		uint32_t key_len = 0;
		if (mp_read_str(&rd, &key, &key_len) != ORN_OK) {
			rc = ORN_EDECODE;
			goto fail;
		}
		if ((rc = read_reply_field(&rd, key, key_len, r)) != ORN_OK)
			goto fail;
	}
	if (mp_reader_remaining(&rd) != 0) {
		rc = ORN_EDECODE;
		goto fail;
	}
	return ORN_OK;
fail:
	bus_reply_dispose(r);
	return rc == ORN_ENOMEM ? rc : ORN_EDECODE;
}

void bus_reply_dispose(bus_reply *r)
{
	free(r->view);
	r->view = NULL;
	r->view_len = 0;
}

orn_rc bus_command_subject(char *out, size_t cap, const char *aggregate, const char *id)
{
	return es_subject(out, cap, "orion.cmd", aggregate, id);
}

orn_rc bus_command_init(env_envelope *cmd, const char *type, int64_t time_ms, const char *command_id,
                        const char *correlation, const char *actor, const uint8_t *payload, size_t len)
{
	memset(cmd, 0, sizeof *cmd);
	cmd->schema = 1;
	cmd->time_ms = time_ms;
	cmd->payload = payload;
	cmd->payload_len = len;
	if (env_set_field(cmd->type, sizeof cmd->type, type) != ORN_OK ||
	    env_set_field(cmd->causation, sizeof cmd->causation, command_id) != ORN_OK ||
	    env_set_field(cmd->correlation, sizeof cmd->correlation,
	                  correlation ? correlation : command_id) != ORN_OK ||
	    env_set_field(cmd->actor, sizeof cmd->actor, actor ? actor : "") != ORN_OK)
		return ORN_EINVAL;
	return ORN_OK;
}

orn_rc bus_send(es_store *store, const char *aggregate, const char *id, const env_envelope *cmd,
                int64_t timeout_ms, bus_reply *out)
{
	return bus_send_on(es_store_connection(store), aggregate, id, cmd, timeout_ms, out);
}

orn_rc bus_send_on(natsConnection *nc, const char *aggregate, const char *id, const env_envelope *cmd,
                   int64_t timeout_ms, bus_reply *out)
{
	char subject[ES_SUBJECT_MAX];
	orn_rc rc = bus_command_subject(subject, sizeof subject, aggregate, id);
	if (rc != ORN_OK)
		return rc;
	mp_writer *w = mp_writer_create();
	if (w == NULL)
		return ORN_ENOMEM;
	natsMsg *reply = NULL;
	env_envelope budgeted = *cmd; /* the actor drops it once we stop waiting (ADR 015) */
	if (budgeted.ttl_ms == 0 && timeout_ms > 0 && timeout_ms <= UINT32_MAX)
		budgeted.ttl_ms = (uint32_t)timeout_ms;
	if ((rc = env_encode(w, &budgeted)) != ORN_OK)
		goto done;
	natsStatus st = natsConnection_Request(&reply, nc, subject, mp_writer_data(w), (int)mp_writer_size(w),
	                                       timeout_ms);
	if (st != NATS_OK) {
		rc = es_status_rc(st, 0);
		goto done;
	}
	rc = bus_reply_decode(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), out);
done:
	natsMsg_Destroy(reply);
	mp_writer_destroy(w);
	return rc;
}
