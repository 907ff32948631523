/* stock_client.c — stock commands over real NATS for integration tests. */
#include "nats_auth-internal.h"
#include "bus-internal.h"
#include "stock_client.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "nats_auth.h"

orn_rc tsc_send(natsConnection *nc, const char *item, const stock_command *c, const char *command_id,
                int64_t timeout_ms, bus_reply *out)
{
	mp_writer *w = mp_writer_create();
	env_envelope cmd;
	orn_rc rc = stock_command_encode(w, c);
	if (rc == ORN_OK)
		rc = bus_command_init(&cmd, stock_command_type(c->kind), orn_now_ms(), command_id, NULL,
		                      "test", mp_writer_data(w), mp_writer_size(w));
	if (rc == ORN_OK)
		rc = bus_send_on(nc, STOCK_AGGREGATE, item, &cmd, timeout_ms, out);
	mp_writer_destroy(w);
	return rc;
}

static void read_view(const uint8_t *view, size_t len, int64_t *on_hand, int64_t *reserved, int64_t *sold,
                      int64_t *held)
{
	mp_reader r;
	uint32_t count = 0;
	mp_reader_init(&r, view, len);
	cr_assert_eq(mp_read_map(&r, &count), ORN_OK);
	for (uint32_t i = 0; i < count; i++) {
		const char *key = NULL;
		uint32_t key_len = 0;
		cr_assert_eq(mp_read_str(&r, &key, &key_len), ORN_OK);
		int64_t *target = mp_str_eq(key, key_len, "on_hand")    ? on_hand
		                  : mp_str_eq(key, key_len, "reserved") ? reserved
		                  : mp_str_eq(key, key_len, "sold")     ? sold
		                  : mp_str_eq(key, key_len, "held")     ? held
		                                                        : NULL;
		if (target != NULL)
			cr_assert_eq(mp_read_int(&r, target), ORN_OK);
		else
			cr_assert_eq(mp_skip(&r), ORN_OK);
	}
}

orn_rc tsc_get(natsConnection *nc, const char *item, int64_t *on_hand, int64_t *reserved, int64_t *sold,
               int64_t *held_count)
{
	env_envelope cmd;
	uint8_t nil = 0xc0;
	char id[64];
	bus_reply reply;
	int64_t scratch[4] = {0};
	snprintf(id, sizeof id, "get-%lld", (long long)orn_monotonic_ns());
	orn_rc rc = bus_command_init(&cmd, BUS_CMD_GET, orn_now_ms(), id, NULL, "test", &nil, 1);
	if (rc == ORN_OK)
		rc = bus_send_on(nc, STOCK_AGGREGATE, item, &cmd, 10000, &reply);
	if (rc != ORN_OK)
		return rc;
	cr_assert_eq(reply.outcome, BUS_ACCEPTED, "Get failed: %s %s", reply.code, reply.detail);
	cr_assert_not_null(reply.view);
	read_view(reply.view, reply.view_len, on_hand ? on_hand : &scratch[0],
	          reserved ? reserved : &scratch[1], sold ? sold : &scratch[2],
	          held_count ? held_count : &scratch[3]);
	bus_reply_dispose(&reply);
	return ORN_OK;
}

static orn_rc fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	stock_event ev;
	orn_rc rc = stock_event_decode(e->type, e->payload, e->payload_len, &ev);
	if (rc != ORN_OK)
		return rc;
	return stock_evolve(closure, &ev);
}

orn_rc tsc_rebuild(es_store *store, const char *item, stock_state *state, uint64_t *version)
{
	orn_rc rc = stock_state_init(state);
	if (rc != ORN_OK)
		return rc;
	es_position at = {0, 0};
	rc = es_load(store, STOCK_AGGREGATE, item, 0, fold, state, &at);
	*version = at.version;
	return rc;
}

stock_command tsc_create(int64_t quantity)
{
	stock_command c;
	memset(&c, 0, sizeof c);
	c.kind = STOCK_CREATE;
	c.quantity = quantity;
	return c;
}

stock_command tsc_reserve(const char *reservation_id, int64_t quantity)
{
	stock_command c;
	memset(&c, 0, sizeof c);
	c.kind = STOCK_RESERVE;
	snprintf(c.reservation_id, sizeof c.reservation_id, "%s", reservation_id);
	c.quantity = quantity;
	return c;
}

stock_command tsc_adjust(int64_t delta, const char *reason)
{
	stock_command c;
	memset(&c, 0, sizeof c);
	c.kind = STOCK_ADJUST;
	c.delta = delta;
	snprintf(c.reason, sizeof c.reason, "%s", reason);
	return c;
}

natsConnection *tsc_connect(const char *url)
{
	natsConnection *nc = NULL;
	natsOptions *o = NULL;
	cr_assert_eq(natsOptions_Create(&o), NATS_OK);
	natsOptions_SetURL(o, url);
	natsOptions_SetMaxReconnect(o, -1);
	natsOptions_SetReconnectWait(o, 100);
	cr_assert_eq(natsConnection_Connect(&nc, o), NATS_OK, "cannot connect to %s", url);
	natsOptions_Destroy(o);
	return nc;
}

natsConnection *tsc_connect_ops(const char *url, const char *data_dir)
{
	char path[1024];
	na_credentials creds;
	natsConnection *nc = NULL;
	natsOptions *o = NULL;
	snprintf(path, sizeof path, "%s/nats/credentials", data_dir);
	cr_assert_eq(na_credentials_load(path, NULL, &creds), ORN_OK, "no NATS credentials in %s", data_dir);
	const na_credential *ops = na_credentials_find(&creds, "ops");
	cr_assert_not_null(ops, "no ops user in %s", path);
	na_conn auth = {ops->user, ops->password, NULL, NULL, NULL};
	cr_assert_eq(natsOptions_Create(&o), NATS_OK);
	natsOptions_SetURL(o, url);
	cr_assert_eq(na_conn_apply(&auth, o), ORN_OK);
	cr_assert_eq(natsConnection_Connect(&nc, o), NATS_OK, "cannot connect to %s as ops", url);
	natsOptions_Destroy(o);
	na_credentials_wipe(&creds);
	return nc;
}

orn_rc tsc_send_many(natsConnection *nc, long count, int window, tsc_make_fn make, void *closure,
                     int64_t timeout_ms, long *accepted)
{
	char inbox[64], pattern[80], subject[192], reply[96], item[128], cmd_id[128];
	natsSubscription *sub = NULL;
	mp_writer *payload = mp_writer_create(), *wire = mp_writer_create();
	orn_rc rc = payload != NULL && wire != NULL ? ORN_OK : ORN_ENOMEM;
	long sent = 0, answered = 0;
	*accepted = 0;
	snprintf(inbox, sizeof inbox, "_INBOX.tsc.%lld", (long long)orn_monotonic_ns());
	snprintf(pattern, sizeof pattern, "%s.*", inbox);
	if (rc == ORN_OK && natsConnection_SubscribeSync(&sub, nc, pattern) != NATS_OK)
		rc = ORN_EUNAVAILABLE;
	if (sub != NULL)
		natsSubscription_SetPendingLimits(sub, -1, -1);
	while (rc == ORN_OK && answered < count) {
		while (rc == ORN_OK && sent < count && sent - answered < window) {
			stock_command c;
			env_envelope cmd;
			memset(&c, 0, sizeof c);
			make(sent, item, sizeof item, cmd_id, sizeof cmd_id, &c, closure);
			mp_writer_reset(payload);
			mp_writer_reset(wire);
			rc = stock_command_encode(payload, &c);
			if (rc == ORN_OK)
				rc = bus_command_init(&cmd, stock_command_type(c.kind), orn_now_ms(), cmd_id,
				                      NULL, "test", mp_writer_data(payload),
				                      mp_writer_size(payload));
			if (rc == ORN_OK && (rc = env_encode(wire, &cmd)) == ORN_OK)
				rc = bus_command_subject(subject, sizeof subject, STOCK_AGGREGATE, item);
			snprintf(reply, sizeof reply, "%s.%ld", inbox, sent);
			if (rc == ORN_OK &&
			    natsConnection_PublishRequest(nc, subject, reply, mp_writer_data(wire),
			                                  (int)mp_writer_size(wire)) != NATS_OK)
				rc = ORN_EUNAVAILABLE;
			sent++;
		}
		natsMsg *msg = NULL;
		if (rc != ORN_OK)
			break;
		if (natsSubscription_NextMsg(&msg, sub, timeout_ms) != NATS_OK) {
			rc = ORN_ETIMEOUT;
			break;
		}
		bus_reply r;
		if (bus_reply_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &r) ==
		    ORN_OK) {
			if (r.outcome == BUS_ACCEPTED)
				(*accepted)++;
			bus_reply_dispose(&r);
		}
		natsMsg_Destroy(msg);
		answered++;
	}
	natsSubscription_Destroy(sub);
	mp_writer_destroy(payload);
	mp_writer_destroy(wire);
	return rc;
}
