/* evstore.c — the event store on NATS JetStream (see evstore.h). */
#include "evstore.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define EVT_PREFIX           "orion.evt"
#define SNAP_PREFIX          "orion.snap"
#define READ_IDLE_TIMEOUT_MS 5000
#define DIRECT_READ_MAX      32 /* commits read by direct get before an ordered consumer takes over */

struct es_store {
	char *url;
	char *user, *password, *tls_ca, *tls_cert, *tls_key; /* copies of es_options.auth */
	natsConnection *nc;
	jsCtx *js;
	int64_t timeout_ms;
	bool replicated; /* ORION_EVT has followers: a direct get may be answered by a lagging one */
};

void es_options_init(es_options *o)
{
	memset(o, 0, sizeof *o);
	o->replicas = 1;
	o->timeout_ms = 5000;
	o->dup_window_ms = 2 * 60 * 1000;
	o->create_streams = true;
}

orn_rc es_status_rc(natsStatus st, jsErrCode jerr)
{
	if (st == NATS_OK)
		return ORN_OK;
	if (jerr == JSStreamWrongLastSequenceErr)
		return ORN_ECONFLICT;
	if (jerr == JSNoMessageFoundErr || st == NATS_NOT_FOUND)
		return ORN_ENOTFOUND;
	switch (st) {
	case NATS_TIMEOUT:
		return ORN_ETIMEOUT;
	case NATS_NO_RESPONDERS:
	case NATS_NO_SERVER:
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_STALE_CONNECTION:
		return ORN_EUNAVAILABLE;
	case NATS_NO_MEMORY:
		return ORN_ENOMEM;
	case NATS_INVALID_ARG:
	case NATS_INVALID_SUBJECT:
		return ORN_EINVAL;
	case NATS_MAX_PAYLOAD:
		return ORN_ETOOBIG;
	case NATS_IO_ERROR:
		return ORN_EIO;
	default:
		return ORN_EINTERNAL;
	}
}

bool es_id_valid(const char *id)
{
	return orn_id_valid(id);
}

bool es_aggregate_valid(const char *aggregate)
{
	if (aggregate == NULL || !(aggregate[0] >= 'a' && aggregate[0] <= 'z'))
		return false;
	size_t n = 1;
	for (; aggregate[n] != '\0'; n++) {
		char c = aggregate[n];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') || n >= 32)
			return false;
	}
	return true;
}

orn_rc es_subject(char *out, size_t cap, const char *prefix, const char *aggregate, const char *id)
{
	if (!es_aggregate_valid(aggregate) || !es_id_valid(id))
		return ORN_EINVAL;
	int n = snprintf(out, cap, "%s.%s.%s", prefix, aggregate, id);
	if (n < 0 || (size_t)n >= cap)
		return ORN_ETOOBIG;
	return ORN_OK;
}

static orn_rc ensure_stream(es_store *s, const es_options *o, const char *name, const char *subjects,
                            int64_t max_per_subject, jsDiscardPolicy discard, bool deny_delete)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus st = js_GetStreamInfo(&si, s->js, name, NULL, &jerr);
	if (st == NATS_OK) {
		bool ok = si->Config != NULL && si->Config->SubjectsLen == 1 &&
		          strcmp(si->Config->Subjects[0], subjects) == 0 &&
		          si->Config->MaxMsgsPerSubject == max_per_subject;
		if (ok && strcmp(name, ES_STREAM) == 0)
			s->replicated = si->Config->Replicas > 1;
		jsStreamInfo_Destroy(si);
		if (!ok) {
			log_error("stream exists with another configuration", "stream", name);
			return ORN_EINVAL;
		}
		return ORN_OK;
	}
	if (st != NATS_NOT_FOUND || !o->create_streams)
		return es_status_rc(st, jerr) == ORN_ENOTFOUND ? ORN_ENOTFOUND : es_status_rc(st, jerr);
	jsStreamConfig cfg;
	jsStreamConfig_Init(&cfg);
	const char *subject_list[1] = {subjects};
	cfg.Name = name;
	cfg.Subjects = subject_list;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	cfg.MaxMsgsPerSubject = max_per_subject;
	cfg.Discard = discard;
	cfg.DenyDelete = deny_delete;
	cfg.DenyPurge = deny_delete;
	cfg.AllowDirect = true;
	cfg.Replicas = o->replicas > 0 ? o->replicas : 1;
	cfg.Duplicates = o->dup_window_ms * 1000000; /* nanoseconds */
	st = js_AddStream(&si, s->js, &cfg, NULL, &jerr);
	if (st == NATS_OK) {
		if (strcmp(name, ES_STREAM) == 0)
			s->replicated = cfg.Replicas > 1;
		jsStreamInfo_Destroy(si);
		log_info("stream created", "stream", name);
		return ORN_OK;
	}
	/* Another instance may have created it meanwhile. */
	if (js_GetStreamInfo(&si, s->js, name, NULL, NULL) == NATS_OK) {
		if (strcmp(name, ES_STREAM) == 0 && si->Config != NULL)
			s->replicated = si->Config->Replicas > 1;
		jsStreamInfo_Destroy(si);
		return ORN_OK;
	}
	log_error("cannot create stream", "stream", name, "error", natsStatus_GetText(st));
	return es_status_rc(st, jerr);
}

/* strdup of s, NULL staying NULL; false if out of memory. */
static bool copy_opt(char **out, const char *s)
{
	*out = s != NULL ? strdup(s) : NULL;
	return s == NULL || *out != NULL;
}

static void free_secret(char *s)
{
	if (s != NULL) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

orn_rc es_store_nats_options(es_store *s, const char *name, natsOptions **out)
{
	natsOptions *opts = NULL;
	na_conn auth = {s->user, s->password, s->tls_ca, s->tls_cert, s->tls_key};
	orn_rc rc = ORN_OK;
	if (natsOptions_Create(&opts) != NATS_OK)
		return ORN_ENOMEM;
	if ((rc = es_nats_options_set_url(opts, s->url)) != ORN_OK ||
	    (rc = na_conn_apply(&auth, opts)) != ORN_OK)
		goto fail;
	if (natsOptions_SetMaxReconnect(opts, -1) != NATS_OK ||
	    natsOptions_SetReconnectWait(opts, 250) != NATS_OK ||
	    natsOptions_SetTimeout(opts, 2000) != NATS_OK ||
	    (name != NULL && natsOptions_SetName(opts, name) != NATS_OK)) {
		rc = ORN_EINVAL;
		goto fail;
	}
	*out = opts;
	return ORN_OK;
fail:
	natsOptions_Destroy(opts);
	return rc;
}

orn_rc es_store_open(const es_options *o, es_store **out)
{
	orn_rc rc = ORN_OK;
	natsOptions *opts = NULL;
	const na_conn *a = o->auth;
	es_store *s = calloc(1, sizeof *s);
	if (s == NULL)
		return ORN_ENOMEM;
	s->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
	s->url = strdup(o->url != NULL ? o->url : NATS_DEFAULT_URL);
	if (s->url == NULL ||
	    (a != NULL && (!copy_opt(&s->user, a->user) || !copy_opt(&s->password, a->password) ||
	                   !copy_opt(&s->tls_ca, a->tls_ca) || !copy_opt(&s->tls_cert, a->tls_cert) ||
	                   !copy_opt(&s->tls_key, a->tls_key)))) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	if ((rc = es_store_nats_options(s, o->name, &opts)) != ORN_OK)
		goto fail;
	natsStatus st = natsConnection_Connect(&s->nc, opts);
	if (st != NATS_OK) {
		/* The user's name may be logged; its password never is. */
		log_error("cannot connect to NATS", "url", o->url ? o->url : "(default)", "user",
		          s->user != NULL ? s->user : "(none)", "error", natsStatus_GetText(st));
		rc = st == NATS_NOT_PERMITTED || st == NATS_CONNECTION_AUTH_FAILED ? ORN_EINVAL
		                                                                   : ORN_EUNAVAILABLE;
		goto fail;
	}
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = s->timeout_ms;
	if (natsConnection_JetStream(&s->js, s->nc, &jo) != NATS_OK) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	if ((rc = ensure_stream(s, o, ES_STREAM, EVT_PREFIX ".>", -1, js_DiscardNew, true)) != ORN_OK)
		goto fail;
	if ((rc = ensure_stream(s, o, ES_SNAP_STREAM, SNAP_PREFIX ".>", 1, js_DiscardOld, false)) != ORN_OK)
		goto fail;
	natsOptions_Destroy(opts);
	*out = s;
	return ORN_OK;
fail:
	natsOptions_Destroy(opts);
	es_store_close(s);
	return rc;
}

void es_store_close(es_store *s)
{
	if (s == NULL)
		return;
	if (s->js != NULL) {
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = s->timeout_ms;
		js_PublishAsyncComplete(s->js, &po);
		jsCtx_Destroy(s->js);
	}
	if (s->nc != NULL) {
		natsConnection_FlushTimeout(s->nc, 1000);
		natsConnection_Destroy(s->nc);
	}
	free(s->url);
	free(s->user);
	free_secret(s->password);
	free(s->tls_ca);
	free(s->tls_cert);
	free(s->tls_key);
	free(s);
}

const char *es_store_url(es_store *s)
{
	return s->url;
}

orn_rc es_nats_options_set_url(natsOptions *opts, const char *url)
{
	orn_rc rc = ORN_OK;
	char *copy = NULL, **servers = NULL;
	int count = 1;
	if (url == NULL || strchr(url, ',') == NULL)
		return natsOptions_SetURL(opts, url) == NATS_OK ? ORN_OK : ORN_EINVAL;
	for (const char *p = url; (p = strchr(p, ',')) != NULL; p++)
		count++;
	copy = strdup(url);
	servers = calloc((size_t)count, sizeof *servers);
	if (copy == NULL || servers == NULL) {
		rc = ORN_ENOMEM;
		goto done;
	}
	int n = 0;
	for (char *entry = copy, *next; entry != NULL; entry = next) {
		next = strchr(entry, ',');
		if (next != NULL)
			*next++ = '\0';
		while (*entry == ' ')
			entry++;
		size_t len = strlen(entry);
		while (len > 0 && entry[len - 1] == ' ')
			entry[--len] = '\0';
		if (len == 0) {
			rc = ORN_EINVAL;
			goto done;
		}
		servers[n++] = entry;
	}
	if (natsOptions_SetServers(opts, (const char **)servers, n) != NATS_OK)
		rc = ORN_EINVAL;
done:
	free(servers);
	free(copy);
	return rc;
}

natsConnection *es_store_connection(es_store *s)
{
	return s->nc;
}

jsCtx *es_store_jetstream(es_store *s)
{
	return s->js;
}

/* Builds the message and publish options of one append. */
static orn_rc prepare_append(es_store *s, const char *aggregate, const char *id, uint64_t expected_version,
                             const char *msg_id, const void *commit, size_t len, natsMsg **msg,
                             jsPubOptions *po)
{
	char subject[ES_SUBJECT_MAX];
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	if (rc != ORN_OK)
		return rc;
	if (commit == NULL || len == 0 || len > INT32_MAX)
		return ORN_EINVAL;
	if (natsMsg_Create(msg, subject, NULL, commit, (int)len) != NATS_OK)
		return ORN_ENOMEM;
	jsPubOptions_Init(po);
	po->MaxWait = s->timeout_ms;
	po->MsgId = (msg_id != NULL && msg_id[0] != '\0') ? msg_id : NULL;
	if (expected_version == 0)
		po->ExpectNoMessage = true;
	else
		po->ExpectLastSubjectSeq = expected_version;
	return ORN_OK;
}

orn_rc es_append(es_store *s, const char *aggregate, const char *id, uint64_t expected_version,
                 const char *msg_id, const void *commit, size_t len, es_append_result *out)
{
	natsMsg *msg = NULL;
	jsPubOptions po;
	orn_rc rc = prepare_append(s, aggregate, id, expected_version, msg_id, commit, len, &msg, &po);
	if (rc != ORN_OK)
		return rc;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	natsStatus st = js_PublishMsg(&pa, s->js, msg, &po, &jerr);
	natsMsg_Destroy(msg);
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	if (out != NULL) {
		out->seq = pa->Sequence;
		out->duplicate = pa->Duplicate;
	}
	jsPubAck_Destroy(pa);
	return ORN_OK;
}

orn_rc es_append_publish(es_store *s, const char *aggregate, const char *id, uint64_t expected_version,
                         const char *msg_id, const void *commit, size_t len, const char *reply_to)
{
	char subject[ES_SUBJECT_MAX], expected[24];
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	if (rc != ORN_OK)
		return rc;
	if (commit == NULL || len == 0 || len > INT32_MAX || reply_to == NULL)
		return ORN_EINVAL;
	natsMsg *msg = NULL;
	if (natsMsg_Create(&msg, subject, reply_to, commit, (int)len) != NATS_OK)
		return ORN_ENOMEM;
	/* The headers js_PublishMsg would send; "0" means "no message yet". */
	snprintf(expected, sizeof expected, "%llu", (unsigned long long)expected_version);
	natsStatus st = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence", expected);
	if (st == NATS_OK && msg_id != NULL && msg_id[0] != '\0')
		st = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id);
	if (st == NATS_OK)
		st = natsConnection_PublishMsg(s->nc, msg);
	natsMsg_Destroy(msg);
	return es_status_rc(st, 0);
}

/* Offset of the value of the first "key" in a JSON text (after the colon and
 * spaces), or len if the key is absent. The ack is the server's own flat JSON,
 * so a scan is enough; it never reads past len. */
static size_t json_value_at(const char *text, size_t len, const char *key)
{
	size_t key_len = strlen(key);
	for (size_t i = 0; i + key_len <= len; i++) {
		if (memcmp(text + i, key, key_len) != 0)
			continue;
		size_t j = i + key_len;
		while (j < len && (text[j] == ' ' || text[j] == ':'))
			j++;
		return j;
	}
	return len;
}

/* The unsigned number that is the value of "key", or false. */
static bool json_uint_after(const char *text, size_t len, const char *key, uint64_t *out)
{
	size_t j = json_value_at(text, len, key);
	if (j >= len || text[j] < '0' || text[j] > '9')
		return false;
	uint64_t n = 0;
	for (; j < len && text[j] >= '0' && text[j] <= '9'; j++)
		n = n * 10 + (uint64_t)(text[j] - '0');
	*out = n;
	return true;
}

/* True if the value of "key" is true. */
static bool json_true_after(const char *text, size_t len, const char *key)
{
	size_t j = json_value_at(text, len, key);
	return len - j >= 4 && memcmp(text + j, "true", 4) == 0;
}

orn_rc es_parse_ack(natsMsg *ack, es_append_result *out)
{
	const char *body = natsMsg_GetData(ack);
	size_t len = (size_t)natsMsg_GetDataLength(ack);
	uint64_t n = 0;
	out->seq = 0;
	out->duplicate = false;
	if (len == 0) {
		const char *status = NULL;
		if (natsMsgHeader_Get(ack, "Status", &status) == NATS_OK && strcmp(status, "503") == 0)
			return ORN_EUNAVAILABLE; /* no responders: no stream for the subject */
		return ORN_EDECODE;
	}
	if (json_uint_after(body, len, "\"err_code\"", &n)) {
		if (n == JSStreamWrongLastSequenceErr)
			return ORN_ECONFLICT;
		char text[256];
		snprintf(text, sizeof text, "%.*s", (int)(len < 255 ? len : 255), body);
		log_error("append refused by JetStream", "reply", text);
		return ORN_EINTERNAL;
	}
	if (!json_uint_after(body, len, "\"seq\"", &out->seq) || out->seq == 0)
		return ORN_EDECODE;
	out->duplicate = json_true_after(body, len, "\"duplicate\"");
	return ORN_OK;
}

/* Sequence of the last message on an exact subject, 0 if none. */
static orn_rc last_seq_of(es_store *s, const char *stream, const char *subject, uint64_t *seq)
{
	natsMsg *msg = NULL;
	jsErrCode jerr = 0;
	natsStatus st = js_GetLastMsg(&msg, s->js, stream, subject, NULL, &jerr);
	if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
		*seq = 0;
		return ORN_OK;
	}
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	*seq = natsMsg_GetSequence(msg);
	natsMsg_Destroy(msg);
	return ORN_OK;
}

orn_rc es_head(es_store *s, const char *aggregate, const char *id, uint64_t *version)
{
	char subject[ES_SUBJECT_MAX];
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	if (rc != ORN_OK)
		return rc;
	return last_seq_of(s, ES_STREAM, subject, version);
}

/* Calls fn for each event of one commit message. */
static orn_rc deliver_commit(natsMsg *msg, uint64_t seq, env_envelope *events, es_event_fn fn, void *closure)
{
	size_t count = 0;
	const char *subject = natsMsg_GetSubject(msg);
	orn_rc rc = env_decode_commit(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), events,
	                              ENV_MAX_EVENTS, &count);
	if (rc != ORN_OK) {
		char seq_text[24];
		snprintf(seq_text, sizeof seq_text, "%llu", (unsigned long long)seq);
		log_error("undecodable commit in the stream", "subject", subject, "seq", seq_text);
		return rc;
	}
	for (size_t i = 0; i < count; i++)
		if ((rc = fn(closure, seq, subject, &events[i])) != ORN_OK)
			return rc;
	return ORN_OK;
}

/* The sequence the read must reach: the last message present now. */
static orn_rc read_bound(es_store *s, const char *filter, uint64_t *bound)
{
	if (strpbrk(filter, "*>") == NULL)
		return last_seq_of(s, ES_STREAM, filter, bound);
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus st = js_GetStreamInfo(&si, s->js, ES_STREAM, NULL, &jerr);
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	*bound = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	return ORN_OK;
}

/* True if the consumer has neither delivered nor pending messages, so that a
 * filter matching nothing in range does not wait for the idle timeout. */
static bool nothing_to_read(natsSubscription *sub)
{
	jsConsumerInfo *ci = NULL;
	if (natsSubscription_GetConsumerInfo(&ci, sub, NULL, NULL) != NATS_OK)
		return false;
	bool empty = ci->NumPending == 0 && ci->Delivered.Consumer == 0;
	jsConsumerInfo_Destroy(ci);
	return empty;
}

/* True if a direct read of a replicated stream that ended at last (0: read
 * nothing) may have stopped short of up_to because a lagging follower
 * answered: the leader reads the rest. A bound past the subject's last
 * commit costs one ordered consumer that finds nothing more. */
static bool short_of(const es_store *s, uint64_t last, uint64_t up_to)
{
	return s->replicated && up_to != UINT64_MAX && last < up_to;
}

/* The commits of one subject from *from_seq to up_to by direct get (one
 * request each, answered by any replica): far cheaper than creating an
 * ordered consumer for the few commits of an order or a cart. Stops after
 * DIRECT_READ_MAX commits with *from_seq at the next one to read and *done
 * false; *done true when nothing of the subject is left up to up_to. */
static orn_rc read_direct(es_store *s, const char *subject, uint64_t *from_seq, uint64_t up_to,
                          env_envelope *events, es_event_fn fn, void *closure, uint64_t *last, bool *done)
{
	orn_rc rc = ORN_OK;
	*done = false;
	for (int i = 0; i < DIRECT_READ_MAX; i++) {
		jsDirectGetMsgOptions o;
		jsDirectGetMsgOptions_Init(&o);
		o.Sequence = *from_seq;
		o.NextBySubject = subject;
		natsMsg *msg = NULL;
		natsStatus st = js_DirectGetMsg(&msg, s->js, ES_STREAM, NULL, &o);
		if (st == NATS_NOT_FOUND) {
			*done = true;
			return ORN_OK;
		}
		if (st != NATS_OK)
			return es_status_rc(st, 0);
		const char *seq_text = NULL;
		char *end = NULL;
		uint64_t seq = 0;
		if (natsMsgHeader_Get(msg, "Nats-Sequence", &seq_text) == NATS_OK && seq_text != NULL)
			seq = strtoull(seq_text, &end, 10);
		if (seq == 0 || end == NULL || *end != '\0' || seq < *from_seq) {
			natsMsg_Destroy(msg);
			return ORN_EDECODE;
		}
		if (seq > up_to) {
			natsMsg_Destroy(msg);
			*done = true;
			return ORN_OK;
		}
		rc = deliver_commit(msg, seq, events, fn, closure);
		natsMsg_Destroy(msg);
		if (rc != ORN_OK)
			return rc;
		*last = seq;
		*from_seq = seq + 1;
		if (seq >= up_to) {
			*done = true;
			return ORN_OK;
		}
	}
	return ORN_OK;
}

/* The commits matching filter from from_seq to up_to (both >= 1) by an
 * ordered consumer; *last is the sequence of the last one delivered, left
 * as it was if none. */
static orn_rc read_ordered(es_store *s, const char *filter, uint64_t from_seq, uint64_t up_to,
                           env_envelope *events, es_event_fn fn, void *closure, uint64_t *last)
{
	orn_rc rc = ORN_OK;
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = ES_STREAM;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverByStartSequence;
	so.Config.OptStartSeq = from_seq;
	jsErrCode jerr = 0;
	natsStatus st = js_SubscribeSync(&sub, s->js, filter, NULL, &so, &jerr);
	if (st != NATS_OK) {
		rc = es_status_rc(st, jerr);
		goto done;
	}
	natsSubscription_SetPendingLimits(sub, -1, -1);
	if (nothing_to_read(sub))
		goto done;
	for (;;) {
		natsMsg *msg = NULL;
		st = natsSubscription_NextMsg(&msg, sub, READ_IDLE_TIMEOUT_MS);
		if (st == NATS_TIMEOUT)
			break; /* nothing more matched before the bound (messages may lie past it) */
		if (st != NATS_OK) {
			rc = es_status_rc(st, 0);
			goto done;
		}
		jsMsgMetaData *meta = NULL;
		if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
			natsMsg_Destroy(msg);
			rc = ORN_EDECODE;
			goto done;
		}
		uint64_t seq = meta->Sequence.Stream;
		uint64_t pending = meta->NumPending;
		jsMsgMetaData_Destroy(meta);
		if (seq > up_to) {
			natsMsg_Destroy(msg);
			break;
		}
		rc = deliver_commit(msg, seq, events, fn, closure);
		natsMsg_Destroy(msg);
		if (rc != ORN_OK)
			goto done;
		*last = seq;
		if (seq >= up_to || pending == 0)
			break;
	}
done:
	if (sub != NULL) {
		natsSubscription_Unsubscribe(sub);
		natsSubscription_Destroy(sub);
	}
	return rc;
}

orn_rc es_read(es_store *s, const char *filter, uint64_t from_seq, uint64_t up_to, es_event_fn fn,
               void *closure, uint64_t *last_seq)
{
	orn_rc rc = ORN_OK;
	env_envelope *events = NULL;
	uint64_t last = 0;
	if (from_seq == 0)
		from_seq = 1;
	if (up_to == 0 && (rc = read_bound(s, filter, &up_to)) != ORN_OK)
		goto done;
	if (up_to < from_seq)
		goto done;
	events = malloc(sizeof *events * ENV_MAX_EVENTS);
	if (events == NULL) {
		rc = ORN_ENOMEM;
		goto done;
	}
	if (strpbrk(filter, "*>") == NULL) {
		bool finished = false;
		rc = read_direct(s, filter, &from_seq, up_to, events, fn, closure, &last, &finished);
		if (rc != ORN_OK || (finished && !short_of(s, last, up_to)))
			goto done;
		/* not finished, or a lagging replica answered: the rest by the leader */
	}
	rc = read_ordered(s, filter, from_seq, up_to, events, fn, closure, &last);
done:
	free(events);
	if (last_seq != NULL)
		*last_seq = last;
	return rc;
}

orn_rc es_load(es_store *s, const char *aggregate, const char *id, uint64_t after_seq, es_event_fn fn,
               void *closure, uint64_t *version)
{
	char subject[ES_SUBJECT_MAX];
	uint64_t head = 0, last = 0, next = after_seq + 1;
	bool finished = false, head_known = false;
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	if (rc != ORN_OK)
		return rc;
	/* Most aggregates are short: read them by direct get to their end (a
	 * new aggregate costs one request answered "not found", no JetStream API
	 * call). The version is the last commit read; a commit appended after
	 * the read makes the caller's next append a conflict, as it should. */
	env_envelope *events = malloc(sizeof *events * ENV_MAX_EVENTS);
	if (events == NULL)
		return ORN_ENOMEM;
	rc = read_direct(s, subject, &next, UINT64_MAX, events, fn, closure, &last, &finished);
	if (rc != ORN_OK)
		goto done;
	if (finished && s->replicated) {
		/* A follower may answer a direct get before it has the latest
		 * commits; a state loaded from it would answer a read or a
		 * rejection (which no ExpectLastSubjectSeq checks) from the past.
		 * The leader's head says whether the read is complete. */
		if ((rc = last_seq_of(s, ES_STREAM, subject, &head)) != ORN_OK)
			goto done;
		head_known = true;
		finished = head < next;
	}
	if (finished) {
		*version = last > after_seq ? last : after_seq;
		goto done;
	}
	/* A long one: the rest up to the head by an ordered consumer at once
	 * (es_read would first spend another batch of direct gets). */
	after_seq = next - 1;
	if (!head_known && (rc = last_seq_of(s, ES_STREAM, subject, &head)) != ORN_OK)
		goto done;
	if (head > after_seq) {
		last = 0;
		if ((rc = read_ordered(s, subject, after_seq + 1, head, events, fn, closure, &last)) !=
		    ORN_OK)
			goto done;
		if (last != head) {
			rc = ORN_EIO; /* the ordered consumer stopped short of the head */
			goto done;
		}
	}
	*version = head > after_seq ? head : after_seq;
done:
	free(events);
	return rc;
}

orn_rc es_snapshot_save(es_store *s, const char *aggregate, const char *id, uint32_t schema, uint64_t version,
                        const void *state, size_t len, bool wait)
{
	char subject[ES_SUBJECT_MAX];
	orn_rc rc = es_subject(subject, sizeof subject, SNAP_PREFIX, aggregate, id);
	if (rc != ORN_OK)
		return rc;
	mp_writer *w = mp_writer_create();
	if (w == NULL)
		return ORN_ENOMEM;
	mp_write_array(w, 3);
	mp_write_uint(w, schema);
	mp_write_uint(w, version);
	mp_write_bin(w, state, len);
	if ((rc = mp_writer_status(w)) != ORN_OK)
		goto done;
	if (wait) {
		jsPubAck *pa = NULL;
		jsErrCode jerr = 0;
		natsStatus st = js_Publish(&pa, s->js, subject, mp_writer_data(w), (int)mp_writer_size(w),
		                           NULL, &jerr);
		rc = es_status_rc(st, jerr);
		jsPubAck_Destroy(pa);
	} else {
		/* A core publish: the stream stores it, nobody waits for the ack. */
		rc = es_status_rc(
		        natsConnection_Publish(s->nc, subject, mp_writer_data(w), (int)mp_writer_size(w)), 0);
	}
done:
	mp_writer_destroy(w);
	return rc;
}

orn_rc es_snapshot_load(es_store *s, const char *aggregate, const char *id, uint32_t schema,
                        uint64_t *version, uint8_t **state, size_t *len)
{
	char subject[ES_SUBJECT_MAX];
	orn_rc rc = es_subject(subject, sizeof subject, SNAP_PREFIX, aggregate, id);
	if (rc != ORN_OK)
		return rc;
	natsMsg *msg = NULL;
	jsErrCode jerr = 0;
	natsStatus st = js_GetLastMsg(&msg, s->js, ES_SNAP_STREAM, subject, NULL, &jerr);
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	mp_reader r;
	uint32_t count = 0, bin_len = 0;
	uint64_t stored_schema = 0;
	const uint8_t *bin = NULL;
	mp_reader_init(&r, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	if (mp_read_array(&r, &count) != ORN_OK || count != 3 || mp_read_uint(&r, &stored_schema) != ORN_OK ||
	    mp_read_uint(&r, version) != ORN_OK || mp_read_bin(&r, &bin, &bin_len) != ORN_OK) {
		rc = ORN_EDECODE;
		goto done;
	}
	if (stored_schema != schema) {
		rc = ORN_ENOTFOUND; /* an older layout: rebuild from the events instead */
		goto done;
	}
	*state = malloc(bin_len > 0 ? bin_len : 1);
	if (*state == NULL) {
		rc = ORN_ENOMEM;
		goto done;
	}
	memcpy(*state, bin, bin_len);
	*len = bin_len;
done:
	natsMsg_Destroy(msg);
	return rc;
}

/* ---- durable consumers ---- */

static void durable_config(jsConsumerConfig *cc, const es_durable_options *o)
{
	jsConsumerConfig_Init(cc);
	cc->Durable = o->durable;
	cc->FilterSubject = o->filter;
	cc->DeliverPolicy = js_DeliverAll;
	cc->AckPolicy = js_AckExplicit;
	cc->AckWait = o->ack_wait_ms * 1000 * 1000;
	cc->MaxDeliver = -1;
	if (o->max_ack_pending > 0)
		cc->MaxAckPending = o->max_ack_pending;
}

orn_rc es_durable_ensure(es_store *s, const es_durable_options *o)
{
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus st;

	durable_config(&cc, o);
	st = js_AddConsumer(&ci, s->js, ES_STREAM, &cc, NULL, &jerr);
	if (st != NATS_OK && jerr == JSConsumerNameExistErr) { /* it exists with another configuration */
		jerr = 0;
		st = js_UpdateConsumer(&ci, s->js, ES_STREAM, &cc, NULL, &jerr);
	}
	jsConsumerInfo_Destroy(ci);
	if (st == NATS_OK)
		return ORN_OK;
	log_error("cannot create a durable consumer", "durable", o->durable, "error", natsStatus_GetText(st));
	return es_status_rc(st, jerr);
}

orn_rc es_durable_bind(es_store *s, const es_durable_options *o, natsSubscription **out)
{
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus st;

	jsSubOptions_Init(&so);
	so.Stream = ES_STREAM;
	so.Consumer = o->durable;
	st = js_PullSubscribe(out, s->js, o->filter, o->durable, NULL, &so, &jerr);
	if (st == NATS_OK)
		return ORN_OK;
	*out = NULL;
	return es_status_rc(st, jerr);
}

int64_t es_backoff_ms(uint64_t delivered, int64_t first_ms, int64_t max_ms)
{
	int64_t delay = first_ms;

	for (uint64_t i = 1; i < delivered && delay > 0 && delay < max_ms; i++)
		delay = delay > max_ms / 2 ? max_ms : delay * 2;
	return delay < max_ms ? delay : max_ms;
}

/* ---- following the stream live ---- */

struct es_follow {
	natsSubscription *sub;
	es_event_fn fn;
	es_follow_done_fn *done;
	void *closure;
	env_envelope events[ENV_MAX_EVENTS]; /* the delivery thread's scratch */
};

static void follow_on_message(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	es_follow *f = arg;
	jsMsgMetaData *meta = NULL;
	(void)nc;
	(void)sub;
	if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
		(void)deliver_commit(msg, meta->Sequence.Stream, f->events, f->fn, f->closure);
		jsMsgMetaData_Destroy(meta);
	}
	natsMsg_Destroy(msg);
}

/* After the subscription is closed and its last message handler returned. */
static void follow_on_complete(void *arg)
{
	es_follow *f = arg;
	f->done(f->closure);
	free(f);
}

/* es_follow_start and es_follow_since: deliver from from_seq, from since_ns
 * (UNIX ns) when from_seq is 0 and since_ns is not, else only new commits. */
static orn_rc follow_start(es_store *s, const char *filter, uint64_t from_seq, int64_t since_ns,
                           es_event_fn fn, es_follow_done_fn *done, void *closure, es_follow **out)
{
	es_follow *f = calloc(1, sizeof *f);
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus st;
	orn_rc rc = ORN_OK;

	*out = NULL;
	if (f == NULL)
		return ORN_ENOMEM;
	f->fn = fn;
	f->done = done;
	f->closure = closure;
	jsSubOptions_Init(&so);
	so.Stream = ES_STREAM;
	so.Ordered = true;
	if (from_seq != 0) {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = from_seq;
	} else if (since_ns > 0) {
		so.Config.DeliverPolicy = js_DeliverByStartTime;
		so.Config.OptStartTime = since_ns;
	} else {
		so.Config.DeliverPolicy = js_DeliverNew;
	}
	if ((st = js_Subscribe(&f->sub, s->js, filter, follow_on_message, f, NULL, &so, &jerr)) != NATS_OK) {
		rc = es_status_rc(st, jerr);
		goto fail;
	}
	natsSubscription_SetPendingLimits(f->sub, -1, -1);
	if ((st = natsSubscription_SetOnCompleteCB(f->sub, follow_on_complete, f)) != NATS_OK) {
		/* cnats refuses only closed or synchronous subscriptions: not this
		 * one. A handler may already run, so f is left to it (not freed). */
		natsSubscription_Unsubscribe(f->sub);
		natsSubscription_Destroy(f->sub);
		return es_status_rc(st, 0);
	}
	*out = f;
	return ORN_OK;
fail:
	free(f);
	return rc;
}

orn_rc es_follow_start(es_store *s, const char *filter, uint64_t from_seq, es_event_fn fn,
                       es_follow_done_fn *done, void *closure, es_follow **out)
{
	return follow_start(s, filter, from_seq, 0, fn, done, closure, out);
}

orn_rc es_follow_since(es_store *s, const char *filter, int64_t since_ms, es_event_fn fn,
                       es_follow_done_fn *done, void *closure, es_follow **out)
{
	if (since_ms <= 0) {
		*out = NULL;
		return ORN_EINVAL;
	}
	return follow_start(s, filter, 0, since_ms * 1000000, fn, done, closure, out);
}

void es_follow_stop(es_follow *f)
{
	natsSubscription *sub;

	if (f == NULL)
		return;
	sub = f->sub; /* f may be freed by follow_on_complete once unsubscribed */
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
}
