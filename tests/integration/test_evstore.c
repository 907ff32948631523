/* test_evstore.c — the event store against a real nats-server: optimistic
 * appends, de-duplication, loading, reading with filters, snapshots, and
 * following the stream live (es_follow). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evstore-internal.h"
#include "envelope.h"
#include "evstore.h"
#include "harness.h"
#include "log.h"

static natsd *server;
static es_store *store;

static void setup(void)
{
	server = th_natsd_start("evstore");
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &store), ORN_OK);
}

static void teardown(void)
{
	es_store_close(store);
	store = NULL;
	th_natsd_stop(server);
	server = NULL;
}

/* Encodes a commit of `count` events of type `type` with payload {"n": i}. */
static mp_writer *commit_of(const char *type, int count, const char *command_id)
{
	mp_writer *w = mp_writer_create(), *payload = mp_writer_create();
	env_commit_begin(w, (uint32_t)count);
	for (int i = 0; i < count; i++) {
		env_envelope e;
		memset(&e, 0, sizeof e);
		strcpy(e.type, type);
		e.schema = 1;
		e.time_ms = 1700000000000 + i;
		strcpy(e.correlation, "corr-1");
		snprintf(e.causation, sizeof e.causation, "%s", command_id);
		strcpy(e.actor, "tester");
		mp_writer_reset(payload);
		mp_write_map(payload, 1);
		mp_write_cstr(payload, "n");
		mp_write_int(payload, i);
		e.payload = mp_writer_data(payload);
		e.payload_len = mp_writer_size(payload);
		cr_assert_eq(env_encode(w, &e), ORN_OK);
	}
	mp_writer_destroy(payload);
	return w;
}

static orn_rc append(const char *id, uint64_t expected, const char *cmd, int count, es_append_result *out)
{
	mp_writer *w = commit_of("Thing", count, cmd);
	orn_rc rc = es_append(store, "thing", id, &(es_position){expected, expected}, cmd, mp_writer_data(w),
	                      mp_writer_size(w), out);
	mp_writer_destroy(w);
	return rc;
}

Test(evstore, appends_are_optimistic_per_aggregate, .init = setup, .fini = teardown)
{
	es_append_result r1, r2, r3;
	cr_assert_eq(append("a1", 0, "c1", 2, &r1), ORN_OK);
	cr_assert_gt(r1.seq, 0);
	cr_assert_eq(r1.duplicate, false);
	/* A second "create" of the same aggregate is a conflict (ExpectNoMessage). */
	cr_assert_eq(append("a1", 0, "c2", 1, &r2), ORN_ECONFLICT);
	/* A stale version is a conflict (jerr 10071). */
	cr_assert_eq(append("a1", r1.seq + 100, "c3", 1, &r2), ORN_ECONFLICT);
	cr_assert_eq(append("a1", r1.seq, "c4", 1, &r2), ORN_OK);
	/* Another aggregate's writes do not disturb a1's version. */
	cr_assert_eq(append("b1", 0, "c5", 1, &r3), ORN_OK);
	cr_assert_eq(append("a1", r2.seq, "c6", 1, &r3), ORN_OK);
	uint64_t head = 0;
	cr_assert_eq(es_head(store, "thing", "a1", &head), ORN_OK);
	cr_assert_eq(head, r3.seq);
	cr_assert_eq(es_head(store, "thing", "nobody", &head), ORN_OK);
	cr_assert_eq(head, 0);
}

Test(evstore, same_message_id_is_answered_with_the_original_sequence, .init = setup, .fini = teardown)
{
	es_append_result first, again;
	cr_assert_eq(append("d1", 0, "cmd-dup", 1, &first), ORN_OK);
	/* The retry carries the same expectation (the sender never saw the ack). */
	cr_assert_eq(append("d1", 0, "cmd-dup", 1, &again), ORN_OK);
	cr_assert(again.duplicate);
	cr_assert_eq(again.seq, first.seq);
}

Test(evstore, invalid_ids_never_reach_the_stream, .init = setup, .fini = teardown)
{
	es_append_result r;
	const char *bad[] = {
	        "a.b",  "a*",       ">",
	        "a b",  "",         "../x",
	        "x\"y", "<script>", "0123456789012345678901234567890123456789012345678901234567890123456789"};
	for (size_t i = 0; i < ORN_ARRAY_LEN(bad); i++)
		cr_assert_eq(append(bad[i], 0, "c", 1, &r), ORN_EINVAL, "id '%s' accepted", bad[i]);
	cr_assert(es_id_valid("Az09_-"));
	cr_assert_not(es_aggregate_valid("Stock"));
	cr_assert_not(es_aggregate_valid("st.ock"));
	cr_assert(es_aggregate_valid("stock_item2"));
	char subject[16];
	cr_assert_eq(es_subject(subject, sizeof subject, "orion.evt", "stock", "abcdefghijkl"), ORN_ETOOBIG);
}

#define COLLECT_MAX 256

typedef struct collected {
	int events;
	uint64_t seqs[COLLECT_MAX];
	int n[COLLECT_MAX];
	char types[COLLECT_MAX][ENV_TYPE_MAX];
} collected;

static orn_rc collect(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	collected *c = closure;
	cr_assert_lt(c->events, COLLECT_MAX);
	c->seqs[c->events] = seq;
	strcpy(c->types[c->events], e->type);
	mp_reader r;
	uint32_t count;
	const char *key;
	uint32_t key_len;
	int64_t n = -1;
	mp_reader_init(&r, e->payload, e->payload_len);
	cr_assert_eq(mp_read_map(&r, &count), ORN_OK);
	cr_assert_eq(mp_read_str(&r, &key, &key_len), ORN_OK);
	cr_assert_eq(mp_read_int(&r, &n), ORN_OK);
	c->n[c->events] = (int)n;
	c->events++;
	return ORN_OK;
}

Test(evstore, load_returns_every_event_of_every_commit_in_order, .init = setup, .fini = teardown)
{
	es_append_result r;
	es_position v = {0, 0};
	cr_assert_eq(append("l1", 0, "c1", 3, &r), ORN_OK);
	uint64_t first = r.seq;
	cr_assert_eq(append("other", 0, "c2", 1, &r), ORN_OK);
	cr_assert_eq(append("l1", first, "c3", 2, &r), ORN_OK);
	collected c = {0};
	cr_assert_eq(es_load(store, "thing", "l1", 0, collect, &c, &v), ORN_OK);
	cr_assert_eq(v.version, r.seq);
	cr_assert_eq(c.events, 5);
	int expected_n[] = {0, 1, 2, 0, 1};
	for (int i = 0; i < 5; i++)
		cr_assert_eq(c.n[i], expected_n[i]);
	cr_assert_eq(c.seqs[0], first);
	cr_assert_eq(c.seqs[4], r.seq);
	/* Loading after the first commit gives the tail only. */
	collected tail = {0};
	cr_assert_eq(es_load(store, "thing", "l1", first, collect, &tail, &v), ORN_OK);
	cr_assert_eq(tail.events, 2);
	/* An aggregate with no events loads as version 0. */
	collected none = {0};
	cr_assert_eq(es_load(store, "thing", "ghost", 0, collect, &none, &v), ORN_OK);
	cr_assert_eq(v.version, 0);
	cr_assert_eq(none.events, 0);
}

/* A long aggregate: the first commits come by direct get, the rest from an
 * ordered consumer; together every commit once, in order, and a bound in the
 * middle of either part is respected. */
Test(evstore, a_long_aggregate_loads_whole_and_in_order, .init = setup, .fini = teardown)
{
	es_append_result r;
	es_position v = {0, 0};
	uint64_t expected = 0, noise = 0, seqs[80];
	char cmd[16];
	for (int i = 0; i < 80; i++) {
		snprintf(cmd, sizeof cmd, "long-%d", i);
		cr_assert_eq(append("long", expected, cmd, 1, &r), ORN_OK);
		seqs[i] = expected = r.seq;
		if (i % 10 == 0) { /* another subject interleaved */
			cr_assert_eq(append("noise", noise, cmd, 1, &r), ORN_OK);
			noise = r.seq;
		}
	}
	collected *c = calloc(1, sizeof *c);
	cr_assert_eq(es_load(store, "thing", "long", 0, collect, c, &v), ORN_OK);
	cr_assert_eq(v.version, seqs[79]);
	cr_assert_eq(c->events, 80);
	for (int i = 0; i < 80; i++)
		cr_assert_eq(c->seqs[i], seqs[i], "commit %d", i);
	memset(c, 0, sizeof *c);
	uint64_t last = 0;
	cr_assert_eq(es_read(store, "orion.evt.thing.long", seqs[5], seqs[50], collect, c, &last), ORN_OK);
	cr_assert_eq(c->events, 46);
	cr_assert_eq(last, seqs[50]);
	cr_assert_eq(c->seqs[0], seqs[5]);
	memset(c, 0, sizeof *c);
	cr_assert_eq(es_read(store, "orion.evt.thing.long", 1, seqs[10], collect, c, &last), ORN_OK);
	cr_assert_eq(c->events, 11);
	cr_assert_eq(last, seqs[10]);
	free(c);
}

/* Counts the direct-get requests the store sends, seen from another connection. */
static natsConnection *observer;
static natsSubscription *direct_gets;

static void observe_direct_gets(void)
{
	cr_assert_eq(natsConnection_ConnectTo(&observer, natsd_url(server)), NATS_OK);
	cr_assert_eq(natsConnection_SubscribeSync(&direct_gets, observer, "$JS.API.DIRECT.GET.>"), NATS_OK);
	cr_assert_eq(natsSubscription_SetPendingLimits(direct_gets, -1, -1), NATS_OK);
	cr_assert_eq(natsConnection_Flush(observer), NATS_OK);
}

/* The direct gets sent since observe_direct_gets (every one the server has
 * routed: the flush's PONG comes after them). */
static int direct_gets_seen(void)
{
	uint64_t queued = 0;
	cr_assert_eq(natsConnection_Flush(observer), NATS_OK);
	cr_assert_eq(natsSubscription_QueuedMsgs(direct_gets, &queued), NATS_OK);
	natsSubscription_Destroy(direct_gets);
	natsConnection_Destroy(observer);
	direct_gets = NULL;
	observer = NULL;
	return (int)queued;
}

/* More than two batches of direct gets after the snapshot: one batch, then
 * the ordered consumer reads the rest (not a second batch first). */
Test(evstore, a_very_long_tail_takes_one_direct_batch_then_the_ordered_consumer, .init = setup,
     .fini = teardown)
{
	enum { COMMITS = 160, SNAPSHOT_AT = 19 };
	es_append_result r;
	es_position v = {0, 0};
	uint64_t expected = 0, noise = 0, seqs[COMMITS];
	char cmd[16];
	for (int i = 0; i < COMMITS; i++) {
		snprintf(cmd, sizeof cmd, "vl-%d", i);
		cr_assert_eq(append("verylong", expected, cmd, 1, &r), ORN_OK);
		seqs[i] = expected = r.seq;
		if (i % 7 == 0) { /* another subject interleaved */
			cr_assert_eq(append("vlnoise", noise, cmd, 1, &r), ORN_OK);
			noise = r.seq;
		}
	}
	collected *c = calloc(1, sizeof *c);
	observe_direct_gets();
	/* as after a snapshot taken at commit SNAPSHOT_AT */
	cr_assert_eq(es_load(store, "thing", "verylong", seqs[SNAPSHOT_AT], collect, c, &v), ORN_OK);
	int gets = direct_gets_seen();
	cr_assert_eq(v.version, seqs[COMMITS - 1]);
	cr_assert_eq(c->events, COMMITS - SNAPSHOT_AT - 1);
	for (int i = 0; i < c->events; i++)
		cr_assert_eq(c->seqs[i], seqs[SNAPSHOT_AT + 1 + i], "commit %d", i);
	cr_assert_eq(gets, 32, "one batch of direct gets (DIRECT_READ_MAX), not %d", gets);

	/* es_read of an exact subject still reads the long way: direct, then ordered */
	memset(c, 0, sizeof *c);
	uint64_t last = 0;
	cr_assert_eq(es_read(store, "orion.evt.thing.verylong", 0, 0, collect, c, &last), ORN_OK);
	cr_assert_eq(c->events, COMMITS);
	cr_assert_eq(last, seqs[COMMITS - 1]);
	for (int i = 0; i < COMMITS; i++)
		cr_assert_eq(c->seqs[i], seqs[i], "commit %d", i);
	free(c);
}

Test(evstore, read_with_wildcards_and_ranges, .init = setup, .fini = teardown)
{
	es_append_result r;
	uint64_t last = 0;
	for (int i = 0; i < 5; i++) {
		char id[16];
		snprintf(id, sizeof id, "w%d", i);
		cr_assert_eq(append(id, 0, id, 1, &r), ORN_OK);
	}
	collected all = {0};
	cr_assert_eq(es_read(store, "orion.evt.thing.>", 0, 0, collect, &all, &last), ORN_OK);
	cr_assert_eq(all.events, 5);
	cr_assert_eq(last, r.seq);
	collected middle = {0};
	cr_assert_eq(es_read(store, "orion.evt.>", 2, 3, collect, &middle, &last), ORN_OK);
	cr_assert_eq(middle.events, 2);
	cr_assert_eq(middle.seqs[0], 2);
	cr_assert_eq(last, 3);
	collected nothing = {0};
	cr_assert_eq(es_read(store, "orion.evt.nothing.>", 0, 0, collect, &nothing, &last), ORN_OK);
	cr_assert_eq(nothing.events, 0);
}

static orn_rc stop_at_two(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	int *n = closure;
	return ++*n == 2 ? ORN_EINVAL : ORN_OK;
}

Test(evstore, a_callback_error_stops_the_read, .init = setup, .fini = teardown)
{
	es_append_result r;
	es_position v;
	cr_assert_eq(append("s1", 0, "c1", 3, &r), ORN_OK);
	int n = 0;
	cr_assert_eq(es_load(store, "thing", "s1", 0, stop_at_two, &n, &v), ORN_EINVAL);
	cr_assert_eq(n, 2);
}

Test(evstore, snapshots_keep_the_latest_and_check_the_schema, .init = setup, .fini = teardown)
{
	uint64_t version = 0;
	uint8_t *state = NULL;
	size_t len = 0;
	cr_assert_eq(es_snapshot_load(store, "thing", "snap", 1, &version, &state, &len), ORN_ENOTFOUND);
	cr_assert_eq(es_snapshot_save(store, "thing", "snap", 1, 10, "old", 3, true), ORN_OK);
	cr_assert_eq(es_snapshot_save(store, "thing", "snap", 1, 20, "newer", 5, true), ORN_OK);
	cr_assert_eq(es_snapshot_load(store, "thing", "snap", 1, &version, &state, &len), ORN_OK);
	cr_assert_eq(version, 20);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(state, "newer", 5), 0);
	free(state);
	/* A snapshot written with another layout is ignored. */
	cr_assert_eq(es_snapshot_load(store, "thing", "snap", 2, &version, &state, &len), ORN_ENOTFOUND);
}

Test(evstore, reopening_verifies_existing_streams, .init = setup, .fini = teardown)
{
	es_store *again = NULL;
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	o.create_streams = false;
	cr_assert_eq(es_store_open(&o, &again), ORN_OK);
	es_store_close(again);
}

Test(evstore, a_missing_server_is_unavailable_not_a_hang, .timeout = 30)
{
	es_store *s = NULL;
	es_options o;
	es_options_init(&o);
	char url[64];
	snprintf(url, sizeof url, "nats://127.0.0.1:%d", natsd_free_port());
	o.url = url;
	int64_t start = th_now_ms();
	cr_assert_eq(es_store_open(&o, &s), ORN_EUNAVAILABLE);
	cr_assert_lt(th_now_ms() - start, 20000);
}

Test(evstore, status_mapping)
{
	cr_assert_eq(es_status_rc(NATS_OK, 0), ORN_OK);
	cr_assert_eq(es_status_rc(NATS_ERR, JSStreamWrongLastSequenceErr), ORN_ECONFLICT);
	cr_assert_eq(es_status_rc(NATS_NOT_FOUND, 0), ORN_ENOTFOUND);
	cr_assert_eq(es_status_rc(NATS_TIMEOUT, 0), ORN_ETIMEOUT);
	cr_assert_eq(es_status_rc(NATS_NO_RESPONDERS, 0), ORN_EUNAVAILABLE);
	cr_assert_eq(es_status_rc(NATS_CONNECTION_CLOSED, 0), ORN_EUNAVAILABLE);
	cr_assert_eq(es_status_rc(NATS_NO_MEMORY, 0), ORN_ENOMEM);
	cr_assert_eq(es_status_rc(NATS_INVALID_ARG, 0), ORN_EINVAL);
	cr_assert_eq(es_status_rc(NATS_MAX_PAYLOAD, 0), ORN_ETOOBIG);
	cr_assert_eq(es_status_rc(NATS_IO_ERROR, 0), ORN_EIO);
	cr_assert_eq(es_status_rc(NATS_ILLEGAL_STATE, 0), ORN_EINTERNAL);
}

/* Publishes a commit with es_append_publish (with ExpectLastSubjectSeq when
 * checked) and reads its ack from an inbox. */
static orn_rc publish_ack(const char *id, uint64_t expected, const char *cmd, bool checked,
                          es_append_result *out)
{
	natsConnection *nc = es_store_connection(store);
	natsSubscription *sub = NULL;
	natsMsg *ack = NULL;
	char inbox[64];
	snprintf(inbox, sizeof inbox, "_INBOX.evstore-test.%s", cmd);
	cr_assert_eq(natsConnection_SubscribeSync(&sub, nc, inbox), NATS_OK);
	mp_writer *w = commit_of("Thing", 1, cmd);
	cr_assert_eq(es_append_publish(store, "thing", id, &(es_position){expected, expected}, cmd, checked,
	                               mp_writer_data(w), mp_writer_size(w), inbox),
	             ORN_OK);
	mp_writer_destroy(w);
	cr_assert_eq(natsSubscription_NextMsg(&ack, sub, 5000), NATS_OK, "no ack");
	orn_rc rc = es_parse_ack(ack, out);
	natsMsg_Destroy(ack);
	natsSubscription_Destroy(sub);
	return rc;
}

static orn_rc publish_and_read_ack(const char *id, uint64_t expected, const char *cmd, es_append_result *out)
{
	return publish_ack(id, expected, cmd, true, out);
}

Test(evstore, asynchronous_appends_report_sequence_duplicate_and_conflict, .init = setup, .fini = teardown)
{
	es_append_result first, again, r;
	cr_assert_eq(publish_and_read_ack("p1", 0, "pc1", &first), ORN_OK);
	cr_assert_gt(first.seq, 0);
	cr_assert_not(first.duplicate);
	cr_assert_eq(publish_and_read_ack("p1", 0, "pc1", &again), ORN_OK,
	             "a resend is answered, not refused");
	cr_assert(again.duplicate);
	cr_assert_eq(again.seq, first.seq);
	cr_assert_eq(publish_and_read_ack("p1", 0, "pc2", &r), ORN_ECONFLICT, "p1 exists already");
	cr_assert_eq(publish_and_read_ack("p1", first.seq + 7, "pc3", &r), ORN_ECONFLICT);
	cr_assert_eq(publish_and_read_ack("p1", first.seq, "pc4", &r), ORN_OK);
	cr_assert_eq(r.seq, first.seq + 1);
	cr_assert_eq(es_append_publish(store, "thing", "bad.id", 0, "x", true, "\x90", 1, "_INBOX.x"),
	             ORN_EINVAL);
	/* no acknowledgement asked (an appender confirming by the log's echo):
	 * stored all the same, the next append is checked against it */
	mp_writer *w = commit_of("Thing", 1, "pc5");
	cr_assert_eq(es_append_publish(store, "thing", "p1", &(es_position){r.seq, r.seq}, "pc5", true,
	                               mp_writer_data(w), mp_writer_size(w), NULL),
	             ORN_OK);
	mp_writer_destroy(w);
	es_append_result after;
	cr_assert_eq(publish_and_read_ack("p1", r.seq, "pc6", &after), ORN_ECONFLICT,
	             "the unacknowledged commit is stored");
	cr_assert_eq(publish_and_read_ack("p1", r.seq + 1, "pc6", &after), ORN_OK);
	cr_assert_eq(after.seq, r.seq + 2);
	/* sent again without ExpectLastSubjectSeq (the actor asking what became
	 * of a commit it sent unacknowledged): a stored one is a duplicate naming
	 * the first copy; one never stored is stored, its stale version for the
	 * chain rule to judge, not refused */
	es_append_result resent;
	cr_assert_eq(publish_ack("p1", r.seq, "pc5", false, &resent), ORN_OK);
	cr_assert(resent.duplicate);
	cr_assert_eq(resent.seq, r.seq + 1);
	cr_assert_eq(publish_ack("p1", r.seq, "pc8", false, &resent), ORN_OK, "no expected sequence checked");
	cr_assert_not(resent.duplicate);
	cr_assert_eq(resent.seq, r.seq + 3);
}

static orn_rc parse(const char *body, const char *status)
{
	natsMsg *m = NULL;
	es_append_result r;
	cr_assert_eq(natsMsg_Create(&m, "_INBOX.x", NULL, body, (int)strlen(body)), NATS_OK);
	if (status != NULL)
		cr_assert_eq(natsMsgHeader_Set(m, "Status", status), NATS_OK);
	orn_rc rc = es_parse_ack(m, &r);
	natsMsg_Destroy(m);
	return rc;
}

Test(evstore, acknowledgements_that_are_not_a_success)
{
	cr_assert_eq(nats_Open(-1), NATS_OK); /* no server here: messages only */
	cr_assert_eq(parse("", "503"), ORN_EUNAVAILABLE, "no responders: no stream for the subject");
	cr_assert_eq(parse("", NULL), ORN_EDECODE);
	cr_assert_eq(parse("", "408"), ORN_EDECODE);
	cr_assert_eq(parse("{\"error\":{\"code\":503,\"err_code\":10077,\"description\":\"maximum messages "
	                   "exceeded\"}}",
	                   NULL),
	             ORN_EINTERNAL);
	cr_assert_eq(parse("{\"error\":{\"code\":400,\"err_code\":10071,\"description\":\"wrong last "
	                   "sequence: 4\"}}",
	                   NULL),
	             ORN_ECONFLICT);
	cr_assert_eq(parse("{\"stream\":\"ORION_EVT\"}", NULL), ORN_EDECODE, "no sequence");
	cr_assert_eq(parse("{\"stream\":\"ORION_EVT\", \"seq\":0}", NULL), ORN_EDECODE);
	cr_assert_eq(parse("{\"stream\":\"ORION_EVT\", \"seq\":x}", NULL), ORN_EDECODE);
	cr_assert_eq(parse("garbage", NULL), ORN_EDECODE);
	cr_assert_eq(parse("{\"stream\":\"ORION_EVT\", \"seq\":12,\"duplicate\": false}", NULL), ORN_OK);
}

/* The consumer's configuration as the server holds it. */
static jsConsumerInfo *consumer_info(const char *durable)
{
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	cr_assert_eq(js_GetConsumerInfo(&ci, es_store_jetstream(store), ES_STREAM, durable, NULL, &jerr),
	             NATS_OK);
	cr_assert_not_null(ci);
	return ci;
}

Test(evstore, a_durable_is_created_then_brought_to_a_changed_config, .init = setup, .fini = teardown)
{
	es_durable_options o = {.durable = "test_durable",
	                        .filter = "orion.evt.thing.>",
	                        .ack_wait_ms = 30000,
	                        .max_ack_pending = 20000};
	cr_assert_eq(es_durable_ensure(store, &o), ORN_OK);
	jsConsumerInfo *ci = consumer_info("test_durable");
	cr_assert_str_eq(ci->Config->Durable, "test_durable");
	cr_assert_str_eq(ci->Config->FilterSubject, "orion.evt.thing.>");
	cr_assert_eq(ci->Config->AckWait, 30000LL * 1000 * 1000);
	cr_assert_eq(ci->Config->MaxAckPending, 20000);
	cr_assert_eq(ci->Config->MaxDeliver, -1);
	cr_assert_eq(ci->Config->AckPolicy, js_AckExplicit);
	cr_assert_eq(ci->Config->DeliverPolicy, js_DeliverAll);
	jsConsumerInfo_Destroy(ci);

	/* The same configuration again is fine; a changed ack wait updates the consumer. */
	cr_assert_eq(es_durable_ensure(store, &o), ORN_OK);
	o.ack_wait_ms = 45000;
	cr_assert_eq(es_durable_ensure(store, &o), ORN_OK);
	ci = consumer_info("test_durable");
	cr_assert_eq(ci->Config->AckWait, 45000LL * 1000 * 1000);
	cr_assert_eq(ci->Config->MaxAckPending, 20000);
	jsConsumerInfo_Destroy(ci);
}

Test(evstore, a_durable_without_max_ack_pending_gets_the_server_default, .init = setup, .fini = teardown)
{
	es_durable_options o = {
	        .durable = "test_default", .filter = "orion.evt.thing.>", .ack_wait_ms = 60000};
	cr_assert_eq(es_durable_ensure(store, &o), ORN_OK);
	jsConsumerInfo *ci = consumer_info("test_default");
	cr_assert_eq(ci->Config->AckWait, 60000LL * 1000 * 1000);
	cr_assert_gt(ci->Config->MaxAckPending, 0); /* the server's default, not "unlimited" */
	jsConsumerInfo_Destroy(ci);
}

/* ---- es_follow ---- */

/* What a follow saw: (seq, event index) pairs, and whether done came. */
typedef struct followed {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	uint64_t seqs[64];
	char subjects[64][64];
	size_t count;
	int done;
} followed;

static orn_rc on_followed(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	followed *f = closure;
	(void)e;
	pthread_mutex_lock(&f->lock);
	if (f->count < 64) {
		f->seqs[f->count] = seq;
		snprintf(f->subjects[f->count], sizeof f->subjects[0], "%s", subject);
		f->count++;
	}
	pthread_cond_broadcast(&f->changed);
	pthread_mutex_unlock(&f->lock);
	return ORN_OK;
}

static void on_follow_done(void *closure)
{
	followed *f = closure;
	pthread_mutex_lock(&f->lock);
	f->done++;
	pthread_cond_broadcast(&f->changed);
	pthread_mutex_unlock(&f->lock);
}

/* Waits up to 10 s until at least count events (or done) were seen. */
static void wait_followed(followed *f, size_t count, bool done)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 10;
	pthread_mutex_lock(&f->lock);
	while ((f->count < count || (done && f->done == 0)) &&
	       pthread_cond_timedwait(&f->changed, &f->lock, &deadline) == 0)
		;
	pthread_mutex_unlock(&f->lock);
}

Test(evstore, follow_delivers_matching_commits_in_order_from_a_sequence_then_live, .init = setup,
     .fini = teardown)
{
	followed from_start = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
	followed only_new = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
	es_append_result r1, r2, r3, r4;
	es_follow *all = NULL, *fresh = NULL;
	cr_assert_eq(append("f1", 0, "fc1", 2, &r1), ORN_OK);
	cr_assert_eq(append("f2", 0, "fc2", 1, &r2), ORN_OK);
	cr_assert_eq(es_follow_start(store, "orion.evt.thing.>", r2.seq, on_followed, on_follow_done,
	                             &from_start, &all),
	             ORN_OK);
	cr_assert_eq(es_follow_start(store, "orion.evt.thing.f1", 0, on_followed, on_follow_done, &only_new,
	                             &fresh),
	             ORN_OK);
	wait_followed(&from_start, 1, false);
	cr_assert_eq(append("f1", r1.seq, "fc3", 3, &r3), ORN_OK); /* live, three events in one commit */
	cr_assert_eq(append("f2", r2.seq, "fc4", 1, &r4), ORN_OK);
	wait_followed(&from_start, 5, false);
	wait_followed(&only_new, 3, false);
	es_follow_stop(all);
	es_follow_stop(fresh);
	wait_followed(&from_start, 0, true);
	wait_followed(&only_new, 0, true);
	uint64_t want[] = {r2.seq, r3.seq, r3.seq, r3.seq, r4.seq};
	cr_assert_eq(from_start.count, 5, "from r2 on: not the first commit, every later one once");
	for (size_t i = 0; i < 5; i++)
		cr_assert_eq(from_start.seqs[i], want[i], "event %zu", i);
	cr_assert_str_eq(from_start.subjects[0], "orion.evt.thing.f2");
	cr_assert_eq(only_new.count, 3, "from now on, only f1's");
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(only_new.seqs[i], r3.seq);
	cr_assert_eq(from_start.done, 1, "done exactly once");
	cr_assert_eq(only_new.done, 1);
	es_follow_stop(NULL);
}

/* A follow's ordered consumer that has delivered nothing yet is created
 * again by cnats when its connection comes back (a NATS node restarted), and
 * cnats 3.4 starts the new one from the last sequence it delivered plus one:
 * sequence 1. What the stream held before the follow's start comes again;
 * the follow must hand on only what it was asked for. */
Test(evstore, a_follow_restarted_by_a_reconnect_delivers_nothing_before_its_start, .init = setup,
     .fini = teardown)
{
	followed from_seq = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
	followed only_new = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
	es_append_result r1, r2, r3;
	es_follow *a = NULL, *b = NULL;
	cr_assert_eq(append("g1", 0, "gc1", 1, &r1), ORN_OK);
	cr_assert_eq(append("g1", r1.seq, "gc2", 1, &r2), ORN_OK);
	cr_assert_eq(es_follow_start(store, "orion.evt.thing.>", r2.seq + 1, on_followed, on_follow_done,
	                             &from_seq, &a),
	             ORN_OK);
	cr_assert_eq(
	        es_follow_start(store, "orion.evt.thing.>", 0, on_followed, on_follow_done, &only_new, &b),
	        ORN_OK);
	natsd_kill(server);
	cr_assert_eq(natsd_restart(server), ORN_OK);
	/* the store's connection is back once an append goes through */
	orn_rc rc = ORN_EUNAVAILABLE;
	for (int i = 0; i < 100 && rc != ORN_OK; i++) {
		rc = append("g1", r2.seq, "gc3", 1, &r3);
		if (rc != ORN_OK)
			th_sleep_ms(100);
	}
	cr_assert_eq(rc, ORN_OK);
	wait_followed(&from_seq, 1, false);
	wait_followed(&only_new, 1, false);
	th_sleep_ms(500); /* anything else would have come by now */
	es_follow_stop(a);
	es_follow_stop(b);
	wait_followed(&from_seq, 0, true);
	wait_followed(&only_new, 0, true);
	cr_assert_eq(from_seq.count, 1, "only the commit appended after the start, got %zu (first %llu)",
	             from_seq.count, (unsigned long long)from_seq.seqs[0]);
	cr_assert_eq(from_seq.seqs[0], r3.seq);
	cr_assert_eq(only_new.count, 1, "only the new commit, got %zu (first %llu)", only_new.count,
	             (unsigned long long)only_new.seqs[0]);
	cr_assert_eq(only_new.seqs[0], r3.seq);
}
