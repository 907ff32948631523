/* evstore.c — the event store on NATS JetStream (see evstore.h). */
#include "evstore-internal.h"
#include "nats_auth-internal.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"
#include "log.h"

#define EVT_PREFIX           ES_EVT_PREFIX
#define SNAP_PREFIX          "orion.snap"
#define PREV_HEADER          "Orion-Prev" /* the version a commit was decided on (ADR 015) */
#define EXPECT_HEADER        "Nats-Expected-Last-Subject-Sequence"
#define READ_IDLE_TIMEOUT_MS 10000  /* a read that gets nothing this long short of its bound fails */
#define DIRECT_READ_MAX      32     /* commits read by direct get before an ordered consumer takes over */
#define ES_CHAIN_HEADS_MAX   100000 /* subjects whose chain a reader keeps in memory */
#define SNAP_FORMAT          1      /* snapshots written under the chain's rule */
#define MSG_ID_MAX           sodium_base64_ENCODED_LEN(16, sodium_base64_VARIANT_URLSAFE_NO_PADDING)
_Static_assert(MSG_ID_MAX <= ES_MSG_ID_MAX, "ES_MSG_ID_MAX holds a Nats-Msg-Id");

struct es_store {
	char *url;
	char *user, *password, *tls_ca, *tls_cert, *tls_key; /* copies of es_options.auth */
	natsConnection *nc;
	jsCtx *js;
	int64_t timeout_ms;
	bool replicated; /* ORION_EVT has followers: a direct get may be answered by a lagging one */
	bool unchecked;  /* fault tests: appends carry no ExpectLastSubjectSeq */
};

void es_store_fault_unchecked(es_store *s, bool on)
{
	s->unchecked = on;
}

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

orn_rc es_store_connect_serving(es_store *s, const char *name, natsConnection **out)
{
	static atomic_bool warned;
	char user[NA_USER_MAX], password[NA_PASSWORD_MAX];
	natsOptions *opts = NULL;
	natsStatus st = NATS_OK;
	orn_rc rc = es_store_nats_options(s, name, &opts);
	*out = NULL;
	if (rc != ORN_OK)
		return rc;
	bool serve = s->user != NULL && na_serve_user(s->user, s->password, user, password) == ORN_OK;
	if (serve && natsOptions_SetUserInfo(opts, user, password) != NATS_OK)
		rc = ORN_EINVAL;
	if (rc == ORN_OK && (st = natsConnection_Connect(out, opts)) == NATS_CONNECTION_AUTH_FAILED &&
	    serve) {
		/* a server configured before the serve users (ADR 014): the role's own user */
		if (!atomic_exchange(&warned, true))
			log_warn(
			        "no serve user on the NATS server: commands are served with the role's user; "
			        "generate its authorization again (orion nats-config --generate)",
			        "user", user);
		if (natsOptions_SetUserInfo(opts, s->user, s->password) != NATS_OK)
			rc = ORN_EINVAL;
		else
			st = natsConnection_Connect(out, opts);
	}
	if (rc == ORN_OK && st != NATS_OK)
		rc = es_status_rc(st, 0);
	sodium_memzero(password, sizeof password);
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

bool es_store_connected(const es_store *s)
{
	return s->nc != NULL && natsConnection_Status(s->nc) == NATS_CONN_STATUS_CONNECTED;
}

void es_store_abandon(es_store *s)
{
	if (s != NULL && s->nc != NULL && !es_store_connected(s))
		natsConnection_Close(s->nc);
}

void es_store_close(es_store *s)
{
	if (s == NULL)
		return;
	bool up = es_store_connected(s); /* with NATS gone, nothing in flight can complete */
	if (s->js != NULL) {
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = s->timeout_ms;
		if (up)
			js_PublishAsyncComplete(s->js, &po);
		jsCtx_Destroy(s->js);
	}
	if (s->nc != NULL) {
		if (up)
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

bool es_store_replicated(const es_store *s)
{
	return s->replicated;
}

int64_t es_store_timeout_ms(const es_store *s)
{
	return s->timeout_ms;
}

/* ---- appending ---- */

bool es_chain_accepts(uint64_t last_valid, bool chained, uint64_t prev)
{
	return !chained || prev == last_valid;
}

/* The Nats-Msg-Id of an attempt: a hash of the subject, the caller's msg id
 * and the position decided on. The server's window is stream-wide: the same
 * command id on two subjects, or decided again on a later position after a
 * void commit, is not a duplicate; the same attempt sent again is. */
static void dedup_id(char out[MSG_ID_MAX], const char *subject, const char *msg_id, uint64_t last_seq)
{
	unsigned char hash[16], position[8];
	crypto_generichash_state h;
	for (int i = 0; i < 8; i++)
		position[i] = (unsigned char)(last_seq >> (8 * i));
	crypto_generichash_init(&h, NULL, 0, sizeof hash);
	crypto_generichash_update(&h, (const unsigned char *)subject, strlen(subject) + 1);
	crypto_generichash_update(&h, (const unsigned char *)msg_id, strlen(msg_id) + 1);
	crypto_generichash_update(&h, position, sizeof position);
	crypto_generichash_final(&h, hash, sizeof hash);
	sodium_bin2base64(out, MSG_ID_MAX, hash, sizeof hash, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

orn_rc es_msg_id(char out[ES_MSG_ID_MAX], const char *aggregate, const char *id, const char *msg_id,
                 uint64_t last_seq)
{
	char subject[ES_SUBJECT_MAX];
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	out[0] = '\0';
	if (rc == ORN_OK && msg_id != NULL && msg_id[0] != '\0')
		dedup_id(out, subject, msg_id, last_seq);
	return rc;
}

/* The message of one append: the commit on its subject with the chain's and
 * JetStream's headers (see es_append), nats_msg_id its Nats-Msg-Id (es_msg_id;
 * none when ""), ExpectLastSubjectSeq only when checked. reply_to may be NULL. */
static orn_rc commit_message(const es_store *s, const char *aggregate, const char *id, const es_position *at,
                             const char *nats_msg_id, bool checked, const void *commit, size_t len,
                             const char *reply_to, natsMsg **out)
{
	char subject[ES_SUBJECT_MAX], number[24];
	natsMsg *msg = NULL;
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	*out = NULL;
	if (rc != ORN_OK)
		return rc;
	if (commit == NULL || len == 0 || len > INT32_MAX || at->version > at->last_seq)
		return ORN_EINVAL;
	if (natsMsg_Create(&msg, subject, reply_to, commit, (int)len) != NATS_OK)
		return ORN_ENOMEM;
	/* "0" means "no message yet" to the server, as ExpectNoMessage. */
	snprintf(number, sizeof number, "%llu", (unsigned long long)at->last_seq);
	natsStatus st = s->unchecked || !checked ? NATS_OK : natsMsgHeader_Set(msg, EXPECT_HEADER, number);
	if (st == NATS_OK && nats_msg_id[0] != '\0')
		st = natsMsgHeader_Set(msg, "Nats-Msg-Id", nats_msg_id);
	snprintf(number, sizeof number, "%llu", (unsigned long long)at->version);
	if (st == NATS_OK)
		st = natsMsgHeader_Set(msg, PREV_HEADER, number);
	if (st != NATS_OK) {
		natsMsg_Destroy(msg);
		return es_status_rc(st, 0);
	}
	*out = msg;
	return ORN_OK;
}

orn_rc es_append(es_store *s, const char *aggregate, const char *id, const es_position *at,
                 const char *msg_id, const void *commit, size_t len, es_append_result *out)
{
	natsMsg *msg = NULL, *ack = NULL;
	es_append_result result = {0};
	es_confirm c;
	char dedup[ES_MSG_ID_MAX];
	orn_rc rc = es_msg_id(dedup, aggregate, id, msg_id, at->last_seq);
	if (rc == ORN_OK)
		rc = commit_message(s, aggregate, id, at, dedup, true, commit, len, NULL, &msg);
	if (rc != ORN_OK)
		return rc;
	natsStatus st = natsConnection_RequestMsg(&ack, s->nc, msg, s->timeout_ms);
	if (st != NATS_OK) {
		rc = es_status_rc(st, 0);
		goto done;
	}
	if ((rc = es_parse_ack(ack, &result)) != ORN_OK)
		goto done;
	es_confirm_init(&c, at, result.seq);
	if ((rc = es_confirm_wait(s, aggregate, id, &c)) == ORN_OK && out != NULL)
		*out = result;
done:
	natsMsg_Destroy(ack);
	natsMsg_Destroy(msg);
	return rc;
}

orn_rc es_append_publish(es_store *s, const char *aggregate, const char *id, const es_position *at,
                         const char *nats_msg_id, bool checked, const void *commit, size_t len,
                         const char *reply_to)
{
	natsMsg *msg = NULL;
	orn_rc rc = commit_message(s, aggregate, id, at, nats_msg_id, checked, commit, len, reply_to, &msg);
	if (rc != ORN_OK)
		return rc;
	rc = es_status_rc(natsConnection_PublishMsg(s->nc, msg), 0);
	natsMsg_Destroy(msg);
	return rc;
}

/* Offset of the value of the first "key" in a JSON text (after the colon and
 * spaces), or len if the key is absent. The server's answers are its own flat
 * JSON whose strings hold no quotes, so a scan is enough; it never reads past
 * len. */
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

/* ---- confirming ---- */

/* A decimal uint64 of exactly len bytes. */
static bool parse_u64(const char *text, size_t len, uint64_t *out)
{
	uint64_t n = 0;
	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9' || n > (UINT64_MAX - 9) / 10)
			return false;
		n = n * 10 + (uint64_t)(text[i] - '0');
	}
	*out = n;
	return true;
}

bool es_msg_prev(natsMsg *msg, bool *chained, uint64_t *prev)
{
	const char *value = NULL;
	*chained = false;
	*prev = 0;
	if (natsMsgHeader_Get(msg, PREV_HEADER, &value) != NATS_OK || value == NULL)
		return true;
	*chained = true;
	return parse_u64(value, strlen(value), prev);
}

void es_confirm_init(es_confirm *c, const es_position *at, uint64_t seq)
{
	c->seq = seq;
	c->last_valid = at->version;
	c->from = at->last_seq + 1;
}

es_verdict es_confirm_step(es_confirm *c, uint64_t seq, bool chained, uint64_t prev)
{
	if (seq == c->seq)
		return ES_VALID;
	if (seq > c->seq || seq < c->from)
		return ES_ASK_LEADER; /* an answer no up-to-date replica gives */
	if (es_chain_accepts(c->last_valid, chained, prev))
		return ES_VOID;
	c->from = seq + 1;
	return ES_LOOK_AGAIN;
}

/* The JSON of a "next commit of subject from c->from" request. */
static int next_request(char *out, size_t cap, const char *subject, const es_confirm *c)
{
	return snprintf(out, cap, "{\"seq\":%llu,\"next_by_subj\":\"%s\"}", (unsigned long long)c->from,
	                subject);
}

orn_rc es_confirm_publish(es_store *s, const char *aggregate, const char *id, const es_confirm *c,
                          const char *reply_to)
{
	char subject[ES_SUBJECT_MAX], body[ES_SUBJECT_MAX + 64];
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	if (rc != ORN_OK)
		return rc;
	int n = next_request(body, sizeof body, subject, c);
	return es_status_rc(
	        natsConnection_PublishRequest(s->nc, "$JS.API.DIRECT.GET." ES_STREAM, reply_to, body, n), 0);
}

es_verdict es_confirm_answer(es_confirm *c, natsMsg *answer)
{
	const char *value = NULL;
	uint64_t seq = 0, prev = 0;
	bool chained = false;
	if (natsMsgHeader_Get(answer, "Nats-Sequence", &value) != NATS_OK || value == NULL ||
	    !parse_u64(value, strlen(value), &seq) || !es_msg_prev(answer, &chained, &prev))
		return ES_ASK_LEADER; /* 404 from a replica behind, or an answer we cannot read */
	return es_confirm_step(c, seq, chained, prev);
}

/* The Orion-Prev header in a raw header block ("NATS/1.0\r\nKey: value\r\n..."). */
static bool block_prev(const char *block, size_t len, bool *chained, uint64_t *prev)
{
	const char key[] = "\r\n" PREV_HEADER ":";
	*chained = false;
	for (size_t i = 0; i + sizeof key - 1 <= len; i++) {
		if (memcmp(block + i, key, sizeof key - 1) != 0)
			continue;
		size_t j = i + sizeof key - 1, end;
		while (j < len && block[j] == ' ')
			j++;
		for (end = j; end < len && block[end] >= '0' && block[end] <= '9'; end++)
			;
		*chained = true;
		return parse_u64(block + j, end - j, prev);
	}
	return true;
}

/* Asks the stream leader (JetStream's message get API, not a direct get) for
 * the next commit of subject from c->from: ORN_OK with the verdict,
 * ORN_ENOTFOUND if the leader has nothing there yet. */
static orn_rc ask_leader(es_store *s, const char *subject, es_confirm *c, es_verdict *verdict)
{
	char body[ES_SUBJECT_MAX + 64];
	natsMsg *answer = NULL;
	unsigned char *block = NULL;
	orn_rc rc = ORN_OK;
	int n = next_request(body, sizeof body, subject, c);
	natsStatus st = natsConnection_Request(&answer, s->nc, "$JS.API.STREAM.MSG.GET." ES_STREAM, body, n,
	                                       s->timeout_ms);
	if (st != NATS_OK)
		return es_status_rc(st, 0);
	const char *text = natsMsg_GetData(answer);
	size_t len = (size_t)natsMsg_GetDataLength(answer), at, end, block_len = 0;
	uint64_t seq = 0, code = 0, prev = 0;
	bool chained = false;
	if (json_uint_after(text, len, "\"code\"", &code)) {
		rc = code == 404 ? ORN_ENOTFOUND : ORN_EINTERNAL;
		goto done;
	}
	if (!json_uint_after(text, len, "\"seq\"", &seq)) {
		rc = ORN_EDECODE;
		goto done;
	}
	at = json_value_at(text, len, "\"hdrs\"");
	if (at < len && text[at] == '"') {
		for (end = at + 1; end < len && text[end] != '"'; end++)
			;
		block = malloc(end - at);
		if (block == NULL) {
			rc = ORN_ENOMEM;
			goto done;
		}
		if (sodium_base642bin(block, end - at, text + at + 1, end - at - 1, NULL, &block_len, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
		    !block_prev((const char *)block, block_len, &chained, &prev)) {
			rc = ORN_EDECODE;
			goto done;
		}
	}
	*verdict = es_confirm_step(c, seq, chained, prev);
	if (*verdict == ES_ASK_LEADER)
		rc = ORN_EINTERNAL; /* the leader itself contradicts the acknowledgement */
done:
	free(block);
	natsMsg_Destroy(answer);
	return rc;
}

orn_rc es_confirm_wait(es_store *s, const char *aggregate, const char *id, es_confirm *c)
{
	char subject[ES_SUBJECT_MAX];
	es_verdict verdict = ES_LOOK_AGAIN;
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	int64_t deadline = orn_monotonic_ns() + s->timeout_ms * 1000000;
	unsigned pause_ms = 1;
	while (rc == ORN_OK) {
		rc = ask_leader(s, subject, c, &verdict);
		if (rc == ORN_ENOTFOUND) {
			/* A new leader that has not applied the commit yet. */
			if (orn_monotonic_ns() >= deadline)
				return ORN_ETIMEOUT;
			orn_sleep_ms(pause_ms);
			pause_ms = pause_ms < 64 ? pause_ms * 2 : 64;
			rc = ORN_OK;
			continue;
		}
		if (rc != ORN_OK || verdict == ES_VALID)
			return rc;
		if (verdict == ES_VOID)
			return ORN_ECONFLICT;
	}
	return rc;
}

/* Sequence of the last message matching subject (wildcards allowed), 0 if none. */
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

orn_rc es_head(es_store *s, const char *aggregate, const char *id, uint64_t *last_seq)
{
	char subject[ES_SUBJECT_MAX];
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	if (rc != ORN_OK)
		return rc;
	return last_seq_of(s, ES_STREAM, subject, last_seq);
}

/* ---- reading, with the chain's rule ---- */

/* The last valid commit of one subject, as a reader has folded it so far. */
typedef struct chain_head {
	uint64_t last_valid;
	uint64_t last_seq; /* the last commit met, valid or void, when seq_known */
	bool seq_known;
} chain_head;

/* A read in progress: where its commits go and the chain it folds. */
typedef struct scan {
	es_store *s;
	es_commit_fn fn; /* NULL: only fold the chain */
	void *closure;
	env_envelope *events; /* ENV_MAX_EVENTS */
	bool from_start;      /* every commit of a subject is read: no chain to look up first */
	chain_head single;    /* one subject's chain */
	bool single_known;
	hmap *heads; /* several subjects: subject -> chain_head */
	uint64_t last;
} scan;

static orn_rc scan_subject(es_store *s, scan *sc, const char *subject, uint64_t from, uint64_t bound,
                           bool *complete);

static orn_rc scan_init(scan *sc, es_store *s, bool several, es_commit_fn fn, void *closure)
{
	memset(sc, 0, sizeof *sc);
	sc->s = s;
	sc->fn = fn;
	sc->closure = closure;
	sc->events = malloc(sizeof *sc->events * ENV_MAX_EVENTS);
	if (sc->events == NULL)
		return ORN_ENOMEM;
	if (several && (sc->heads = hmap_create()) == NULL)
		return ORN_ENOMEM;
	return ORN_OK;
}

static void heads_clear(hmap *heads)
{
	size_t cursor = 0;
	const char *key = NULL;
	void *value = NULL;
	if (heads == NULL)
		return;
	while (hmap_next(heads, &cursor, &key, &value))
		free(value);
	hmap_clear(heads);
}

static void scan_dispose(scan *sc)
{
	heads_clear(sc->heads);
	hmap_destroy(sc->heads);
	free(sc->events);
}

/* The chain of subject before seq, folded from its first commit: its last
 * valid commit and its last commit. */
static orn_rc chain_before(es_store *s, const char *subject, uint64_t seq, chain_head *out)
{
	scan sc;
	bool complete = seq <= 1;
	orn_rc rc = scan_init(&sc, s, false, NULL, NULL);
	memset(out, 0, sizeof *out);
	sc.from_start = true;
	if (rc == ORN_OK && !complete)
		rc = scan_subject(s, &sc, subject, 1, seq - 1, &complete);
	if (rc == ORN_OK && !complete)
		rc = ORN_EIO;
	out->last_valid = sc.single.last_valid;
	out->last_seq = sc.single.last_seq;
	out->seq_known = rc == ORN_OK;
	scan_dispose(&sc);
	return rc;
}

/* The chain of subject in sc, first met at seq: looked up when sc did not
 * read the subject from its start. */
static orn_rc head_of(scan *sc, const char *subject, uint64_t seq, chain_head **out)
{
	orn_rc rc = ORN_OK;
	chain_head *h = NULL;
	if (sc->heads == NULL) {
		if (!sc->single_known && !sc->from_start)
			rc = chain_before(sc->s, subject, seq, &sc->single);
		else if (!sc->single_known)
			sc->single.seq_known = true; /* read from the start */
		sc->single_known = rc == ORN_OK;
		*out = &sc->single;
		return rc;
	}
	if ((h = hmap_get(sc->heads, subject)) != NULL) {
		*out = h;
		return ORN_OK;
	}
	if (hmap_count(sc->heads) >= ES_CHAIN_HEADS_MAX) {
		heads_clear(sc->heads);
		sc->from_start = false; /* forgotten heads are looked up again */
	}
	if ((h = calloc(1, sizeof *h)) == NULL)
		return ORN_ENOMEM;
	h->seq_known = sc->from_start;
	if ((!sc->from_start && (rc = chain_before(sc->s, subject, seq, h)) != ORN_OK) ||
	    (rc = hmap_put(sc->heads, subject, h)) != ORN_OK) {
		free(h);
		return rc;
	}
	*out = h;
	return ORN_OK;
}

/* es_commit_decode of a message whose stream sequence is known (seq). */
static orn_rc decode_at(natsMsg *msg, uint64_t seq, env_envelope *events, size_t cap, es_commit *out)
{
	memset(out, 0, sizeof *out);
	out->subject = natsMsg_GetSubject(msg);
	out->events = events;
	out->seq = seq;
	if (out->seq == 0 || !es_msg_prev(msg, &out->chained, &out->prev))
		return ORN_EDECODE;
	return env_decode_commit(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), events, cap,
	                         &out->count);
}

orn_rc es_commit_decode(natsMsg *msg, env_envelope *events, size_t cap, es_commit *out)
{
	jsMsgMetaData *meta = NULL;
	uint64_t seq;
	if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
		seq = meta->Sequence.Stream;
		jsMsgMetaData_Destroy(meta);
	} else {
		seq = natsMsg_GetSequence(msg); /* a direct get's answer */
	}
	return decode_at(msg, seq, events, cap, out);
}

orn_rc es_commit_check(es_store *s, es_commit *c)
{
	chain_head chain;
	orn_rc rc = chain_before(s, c->subject, c->seq, &chain);
	uint64_t last_valid = chain.last_valid;
	c->valid = rc == ORN_OK && es_chain_accepts(last_valid, c->chained, c->prev);
	c->before = chain.last_seq;
	c->before_known = chain.seq_known;
	if (rc == ORN_OK && !c->valid) {
		char seq[24], prev[24], head[24];
		snprintf(seq, sizeof seq, "%llu", (unsigned long long)c->seq);
		snprintf(prev, sizeof prev, "%llu", (unsigned long long)c->prev);
		snprintf(head, sizeof head, "%llu", (unsigned long long)last_valid);
		log_info("a void commit changes nothing (ADR 015)", "subject", c->subject, "seq", seq, "prev",
		         prev, "last_valid", head);
	}
	return rc;
}

/* Folds one stored commit into sc's chain and hands it on. */
static orn_rc scan_message(scan *sc, natsMsg *msg, uint64_t seq)
{
	es_commit c;
	chain_head *head = NULL;
	orn_rc rc = decode_at(msg, seq, sc->events, ENV_MAX_EVENTS, &c);
	if (rc != ORN_OK) {
		char seq_text[24];
		snprintf(seq_text, sizeof seq_text, "%llu", (unsigned long long)seq);
		log_error("undecodable commit in the stream", "subject", c.subject, "seq", seq_text);
		return rc;
	}
	if ((rc = head_of(sc, c.subject, seq, &head)) != ORN_OK)
		return rc;
	c.valid = es_chain_accepts(head->last_valid, c.chained, c.prev);
	if (c.valid)
		head->last_valid = seq;
	c.before = head->last_seq;
	c.before_known = head->seq_known;
	head->last_seq = seq;
	head->seq_known = true; /* a reader meets a subject's commits in order, none left out */
	sc->last = seq;
	return sc->fn != NULL ? sc->fn(sc->closure, &c) : ORN_OK;
}

/* What a read of one subject does with its next message msg, at seq (msg is
 * destroyed here): past bound the read is done; else the message is scanned,
 * *from_seq moves past it, and at bound the read is done. */
static orn_rc take_read(scan *sc, natsMsg *msg, uint64_t seq, uint64_t *from_seq, uint64_t bound, bool *done)
{
	orn_rc rc = ORN_OK;

	if (seq > bound) {
		*done = true;
	} else if ((rc = scan_message(sc, msg, seq)) == ORN_OK) {
		*from_seq = seq + 1;
		*done = seq >= bound;
	}
	natsMsg_Destroy(msg);
	return rc;
}

/* The commits of one subject from *from_seq to bound by direct get (one
 * request each, answered by any replica): far cheaper than creating an
 * ordered consumer for the few commits of an order or a cart. Stops after
 * DIRECT_READ_MAX commits with *from_seq at the next one to read and *done
 * false; *done true when the subject has nothing more up to bound (as far as
 * the replica that answered knows). */
static orn_rc read_direct(scan *sc, const char *subject, uint64_t *from_seq, uint64_t bound, bool *done)
{
	*done = false;
	for (int i = 0; i < DIRECT_READ_MAX; i++) {
		jsDirectGetMsgOptions o;
		jsDirectGetMsgOptions_Init(&o);
		o.Sequence = *from_seq;
		o.NextBySubject = subject;
		natsMsg *msg = NULL;
		natsStatus st = js_DirectGetMsg(&msg, sc->s->js, ES_STREAM, NULL, &o);
		if (st == NATS_NOT_FOUND) {
			*done = true;
			return ORN_OK;
		}
		if (st != NATS_OK)
			return es_status_rc(st, 0);
		uint64_t seq = natsMsg_GetSequence(msg);
		if (seq == 0 || seq < *from_seq) {
			natsMsg_Destroy(msg);
			return ORN_EDECODE;
		}
		orn_rc rc = take_read(sc, msg, seq, from_seq, bound, done);
		if (rc != ORN_OK || *done)
			return rc;
	}
	return ORN_OK;
}

/* The string value of "key" in a JSON answer of the server into a fresh
 * buffer (its strings hold no quotes or escapes: subjects, base64); NULL if
 * absent or on ENOMEM. */
static char *json_string_dup(const char *text, size_t len, const char *key, size_t *out_len)
{
	size_t at = json_value_at(text, len, key), end;
	if (at >= len || text[at] != '"')
		return NULL;
	for (end = at + 1; end < len && text[end] != '"'; end++)
		;
	if (end >= len)
		return NULL;
	char *out = malloc(end - at);
	if (out != NULL) {
		memcpy(out, text + at + 1, end - at - 1);
		out[end - at - 1] = '\0';
		*out_len = end - at - 1;
	}
	return out;
}

/* base64 text (text_len chars) into a fresh buffer; NULL on a bad text or ENOMEM. */
static unsigned char *base64_dup(const char *text, size_t text_len, size_t *out_len)
{
	unsigned char *out = malloc(text_len + 1);
	if (out != NULL && sodium_base642bin(out, text_len + 1, text, text_len, NULL, out_len, NULL,
	                                     sodium_base64_VARIANT_ORIGINAL) != 0) {
		free(out);
		out = NULL;
	}
	return out;
}

/* The message of a JetStream message-get answer ({"message":{"subject",
 * "seq", "hdrs", "data"}}) as a natsMsg with its headers, into *out, and its
 * sequence. ORN_ENOTFOUND for the server's 404, ORN_EDECODE for an answer
 * that is not one. */
static orn_rc leader_message(const char *text, size_t len, natsMsg **out, uint64_t *seq)
{
	uint64_t code = 0;
	size_t subject_len = 0, hdrs_len = 0, data_len = 0, block_len = 0, bytes_len = 0;
	char *subject = NULL, *hdrs = NULL, *data = NULL;
	unsigned char *block = NULL, *bytes = NULL;
	orn_rc rc = ORN_EDECODE;
	*out = NULL;
	if (json_uint_after(text, len, "\"code\"", &code))
		return code == 404 ? ORN_ENOTFOUND : ORN_EINTERNAL;
	if (!json_uint_after(text, len, "\"seq\"", seq) ||
	    (subject = json_string_dup(text, len, "\"subject\"", &subject_len)) == NULL)
		goto done;
	hdrs = json_string_dup(text, len, "\"hdrs\"", &hdrs_len);
	data = json_string_dup(text, len, "\"data\"", &data_len);
	if ((hdrs != NULL && (block = base64_dup(hdrs, hdrs_len, &block_len)) == NULL) ||
	    (data != NULL && (bytes = base64_dup(data, data_len, &bytes_len)) == NULL))
		goto done;
	if (natsMsg_Create(out, subject, NULL, (const char *)bytes, (int)bytes_len) != NATS_OK) {
		rc = ORN_ENOMEM;
		goto done;
	}
	/* the header block: "NATS/1.0\r\nKey: value\r\n...\r\n" */
	rc = ORN_OK;
	for (size_t i = 0; block != NULL && i < block_len && rc == ORN_OK;) {
		size_t end = i;
		while (end + 1 < block_len && !(block[end] == '\r' && block[end + 1] == '\n'))
			end++;
		if (end + 1 >= block_len)
			break;
		const char *line = (const char *)block + i;
		size_t line_len = end - i;
		const char *colon = memchr(line, ':', line_len);
		if (i > 0 && colon != NULL) {
			char key[128], value[512];
			size_t key_len = (size_t)(colon - line), at = key_len + 1;
			while (at < line_len && line[at] == ' ')
				at++;
			if (key_len >= sizeof key || line_len - at >= sizeof value) {
				rc = ORN_EDECODE;
				break;
			}
			memcpy(key, line, key_len);
			key[key_len] = '\0';
			memcpy(value, line + at, line_len - at);
			value[line_len - at] = '\0';
			if (natsMsgHeader_Add(*out, key, value) != NATS_OK)
				rc = ORN_ENOMEM;
		}
		i = end + 2;
	}
done:
	if (rc != ORN_OK) {
		natsMsg_Destroy(*out);
		*out = NULL;
	}
	free(subject);
	free(hdrs);
	free(data);
	free(block);
	free(bytes);
	return rc;
}

/* read_direct, asking the stream leader (JetStream's message get API) instead
 * of any replica: on a replicated stream a replica may answer from a copy
 * that is not the log (behind, or, after a leader was killed on nats-server
 * 2.9.10, a tail the cluster never committed), and a fold, a chain check or a
 * handler's read must see the log itself. *done true when the leader has
 * nothing more up to bound. */
static orn_rc read_leader(scan *sc, const char *subject, uint64_t *from_seq, uint64_t bound, bool *done)
{
	*done = false;
	for (int i = 0; i < DIRECT_READ_MAX; i++) {
		char body[ES_SUBJECT_MAX + 64];
		int n = snprintf(body, sizeof body, "{\"seq\":%llu,\"next_by_subj\":\"%s\"}",
		                 (unsigned long long)*from_seq, subject);
		natsMsg *answer = NULL, *msg = NULL;
		uint64_t seq = 0;
		natsStatus st = natsConnection_Request(
		        &answer, sc->s->nc, "$JS.API.STREAM.MSG.GET." ES_STREAM, body, n, sc->s->timeout_ms);
		if (st != NATS_OK)
			return es_status_rc(st, 0);
		orn_rc rc = leader_message(natsMsg_GetData(answer), (size_t)natsMsg_GetDataLength(answer),
		                           &msg, &seq);
		natsMsg_Destroy(answer);
		if (rc == ORN_ENOTFOUND) {
			*done = true;
			return ORN_OK;
		}
		if (rc == ORN_OK && (seq == 0 || seq < *from_seq))
			rc = ORN_EDECODE;
		if (rc != ORN_OK) {
			natsMsg_Destroy(msg);
			return rc;
		}
		if ((rc = take_read(sc, msg, seq, from_seq, bound, done)) != ORN_OK || *done)
			return rc;
	}
	return ORN_OK;
}

/* The commits matching filter from from_seq to bound (>= from_seq, a commit
 * that matches filter or a sequence past which the caller wants nothing) by
 * an ordered consumer. Fails with ORN_EIO if the stream stops delivering
 * before bound. */
static orn_rc read_ordered(scan *sc, const char *filter, uint64_t from_seq, uint64_t bound)
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
	natsStatus st = js_SubscribeSync(&sub, sc->s->js, filter, NULL, &so, &jerr);
	if (st != NATS_OK) {
		rc = es_status_rc(st, jerr);
		goto done;
	}
	natsSubscription_SetPendingLimits(sub, -1, -1);
	for (;;) {
		natsMsg *msg = NULL;
		st = natsSubscription_NextMsg(&msg, sub, READ_IDLE_TIMEOUT_MS);
		if (st == NATS_TIMEOUT) {
			char bound_text[24], last_text[24];
			snprintf(bound_text, sizeof bound_text, "%llu", (unsigned long long)bound);
			snprintf(last_text, sizeof last_text, "%llu", (unsigned long long)sc->last);
			log_error("the stream read stopped short", "filter", filter, "bound", bound_text,
			          "last_read", last_text);
			rc = ORN_EIO;
			goto done;
		}
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
		jsMsgMetaData_Destroy(meta);
		if (seq < from_seq || (sc->last != 0 && seq <= sc->last)) {
			/* before the read's start or read already: the ordered
			 * consumer was created again from sequence 1 (see es_follow) */
			natsMsg_Destroy(msg);
			continue;
		}
		if (seq > bound) {
			natsMsg_Destroy(msg);
			break; /* nothing more matched up to the bound */
		}
		rc = scan_message(sc, msg, seq);
		natsMsg_Destroy(msg);
		if (rc != ORN_OK || seq >= bound)
			goto done;
	}
done:
	if (sub != NULL) {
		natsSubscription_Unsubscribe(sub);
		natsSubscription_Destroy(sub);
	}
	return rc;
}

/* One subject from `from` to bound: direct gets, then an ordered consumer
 * for a long subject or where a lagging replica answered. *complete is true
 * when nothing of the subject up to bound is left unread. */
static orn_rc scan_subject(es_store *s, scan *sc, const char *subject, uint64_t from, uint64_t bound,
                           bool *complete)
{
	bool finished = false;
	uint64_t head = 0;
	orn_rc rc = s->replicated ? read_leader(sc, subject, &from, bound, &finished)
	                          : read_direct(sc, subject, &from, bound, &finished);
	*complete = false;
	if (rc != ORN_OK)
		return rc;
	if (finished && (!s->replicated || from > bound)) {
		*complete = true;
		return ORN_OK;
	}
	/* Not finished, or a replica that may lag said "no more": the leader
	 * says where the subject ends, and an ordered consumer reads the rest. */
	if ((rc = last_seq_of(s, ES_STREAM, subject, &head)) != ORN_OK)
		return rc;
	if (head < bound)
		bound = head;
	if (bound >= from && (rc = read_ordered(sc, subject, from, bound)) != ORN_OK)
		return rc;
	*complete = true;
	return ORN_OK;
}

orn_rc es_scan(es_store *s, const char *filter, uint64_t from_seq, uint64_t up_to, es_commit_fn fn,
               void *closure, uint64_t *last_seq)
{
	scan sc;
	uint64_t bound = 0;
	bool several = strpbrk(filter, "*>") != NULL, complete = false;
	orn_rc rc = scan_init(&sc, s, several, fn, closure);
	if (from_seq == 0)
		from_seq = 1;
	sc.from_start = from_seq == 1;
	if (rc != ORN_OK || (rc = last_seq_of(s, ES_STREAM, filter, &bound)) != ORN_OK)
		goto done;
	if (up_to != 0 && up_to < bound)
		bound = up_to;
	if (bound < from_seq)
		goto done;
	rc = several ? read_ordered(&sc, filter, from_seq, bound)
	             : scan_subject(s, &sc, filter, from_seq, bound, &complete);
done:
	if (last_seq != NULL)
		*last_seq = sc.last;
	scan_dispose(&sc);
	return rc;
}

/* es_read's and es_load's closure: the events of valid commits to an es_event_fn. */
typedef struct each_event {
	es_event_fn fn;
	void *closure;
} each_event;

static orn_rc on_valid_commit(void *closure, const es_commit *c)
{
	each_event *each = closure;
	orn_rc rc = ORN_OK;
	for (size_t i = 0; c->valid && rc == ORN_OK && i < c->count; i++)
		rc = each->fn(each->closure, c->seq, c->subject, &c->events[i]);
	return rc;
}

orn_rc es_read(es_store *s, const char *filter, uint64_t from_seq, uint64_t up_to, es_event_fn fn,
               void *closure, uint64_t *last_seq)
{
	each_event each = {fn, closure};
	return es_scan(s, filter, from_seq, up_to, on_valid_commit, &each, last_seq);
}

orn_rc es_load(es_store *s, const char *aggregate, const char *id, uint64_t after_seq, es_event_fn fn,
               void *closure, es_position *at)
{
	char subject[ES_SUBJECT_MAX];
	each_event each = {fn, closure};
	scan sc;
	bool complete = false;
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	if (rc != ORN_OK || (rc = scan_init(&sc, s, false, on_valid_commit, &each)) != ORN_OK)
		return rc;
	/* after_seq is a valid commit (or 0): the chain starts there. The read
	 * goes to the subject's end: a commit appended after it makes the
	 * caller's next append a conflict, as it should. */
	sc.single.last_valid = after_seq;
	sc.single_known = true;
	if ((rc = scan_subject(s, &sc, subject, after_seq + 1, UINT64_MAX, &complete)) == ORN_OK) {
		at->version = sc.single.last_valid;
		at->last_seq = sc.last > after_seq ? sc.last : after_seq;
	}
	scan_dispose(&sc);
	return rc;
}

orn_rc es_load_from(es_store *s, const char *aggregate, const char *id, const es_position *from,
                    uint64_t up_to, es_commit_fn fn, void *closure, es_position *at)
{
	char subject[ES_SUBJECT_MAX];
	scan sc;
	bool complete = false;
	orn_rc rc = es_subject(subject, sizeof subject, EVT_PREFIX, aggregate, id);
	if (rc != ORN_OK || (rc = scan_init(&sc, s, false, fn, closure)) != ORN_OK)
		return rc;
	sc.single.last_valid = from->version;
	sc.single.last_seq = from->last_seq;
	sc.single.seq_known = true;
	sc.single_known = true;
	*at = *from;
	if (up_to == 0 || up_to > from->last_seq)
		rc = scan_subject(s, &sc, subject, from->last_seq + 1, up_to != 0 ? up_to : UINT64_MAX,
		                  &complete);
	if (rc == ORN_OK) {
		at->version = sc.single.last_valid;
		at->last_seq = sc.last > from->last_seq ? sc.last : from->last_seq;
	}
	scan_dispose(&sc);
	return rc;
}

orn_rc es_stream_last_seq(es_store *s, int64_t timeout_ms, uint64_t *out)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	*out = 0;
	jsOptions_Init(&jo);
	jo.Wait = timeout_ms > 0 ? timeout_ms : s->timeout_ms;
	natsStatus st = js_GetStreamInfo(&si, s->js, ES_STREAM, &jo, &jerr);
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	*out = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	return ORN_OK;
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
	mp_write_array(w, 4);
	mp_write_uint(w, schema);
	mp_write_uint(w, version);
	mp_write_bin(w, state, len);
	mp_write_uint(w, SNAP_FORMAT);
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
	uint64_t stored_schema = 0, format = 0;
	const uint8_t *bin = NULL;
	mp_reader_init(&r, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	if (mp_read_array(&r, &count) != ORN_OK || (count != 3 && count != 4) ||
	    mp_read_uint(&r, &stored_schema) != ORN_OK || mp_read_uint(&r, version) != ORN_OK ||
	    mp_read_bin(&r, &bin, &bin_len) != ORN_OK ||
	    (count == 4 && mp_read_uint(&r, &format) != ORN_OK)) {
		rc = ORN_EDECODE;
		goto done;
	}
	/* A snapshot from before the chain's rule (ADR 015) may hold the effect
	 * of a void commit; one of an older layout cannot be read: either way
	 * the events are folded instead. */
	if (format != SNAP_FORMAT || stored_schema != schema) {
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

int64_t es_backoff_ms(uint64_t delivered, int64_t first_ms, int64_t max_ms)
{
	int64_t delay = first_ms;

	for (uint64_t i = 1; i < delivered && delay > 0 && delay < max_ms; i++)
		delay = delay > max_ms / 2 ? max_ms : delay * 2;
	return delay < max_ms ? delay : max_ms;
}

/* ---- following the stream live ---- */

/* A follow ends by two events in either order: es_follow_stop, and cnats
 * closing the subscription (after an unsubscribe, or when the connection
 * closes). Under lock: whichever sets its flag second frees f, and done is
 * called once, by whichever comes first to call it. With NATS gone, a stop
 * does not unsubscribe (that would wait on a consumer deletion nobody
 * answers): it marks f stopped, waits for a delivery under way, calls done,
 * and leaves the subscription to close with its connection; deliveries that
 * still come are dropped. */
struct es_follow {
	es_store *store;
	natsSubscription *sub;
	each_event each;
	es_follow_done_fn *done;
	es_watch_fn *watch; /* a watch (es_watch_start): headers only, no fold */
	size_t id_at;       /* a watch: where the id starts in a subject */
	scan chain;         /* the delivery thread's: commits' validity, scratch events */
	/* What the follow was asked for: commits from floor_seq, stored at or
	 * after floor_ns; last_seq is the last one handed on. cnats creates an
	 * ordered consumer again from the last sequence it delivered plus one,
	 * which is 1 for one that has delivered nothing yet (a reconnect after a
	 * NATS node restarted): what comes before the start, or again, is dropped. */
	uint64_t floor_seq, last_seq;
	int64_t floor_ns;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	bool stopped, closed, done_called, delivering;
};

static void follow_free(es_follow *f)
{
	scan_dispose(&f->chain);
	pthread_cond_destroy(&f->idle);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* A watched commit: its sequence, id and Orion-Prev to the watch. An
 * Orion-Prev that is not a number names no version: such a commit is void. */
static void watch_message(es_follow *f, natsMsg *msg, uint64_t seq)
{
	const char *subject = natsMsg_GetSubject(msg), *msg_id = NULL;
	bool chained = false;
	uint64_t prev = 0;
	if (strlen(subject) <= f->id_at)
		return;
	if (!es_msg_prev(msg, &chained, &prev)) {
		chained = true;
		prev = UINT64_MAX;
	}
	if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &msg_id) != NATS_OK || msg_id == NULL)
		msg_id = "";
	f->watch(f->each.closure, seq, subject + f->id_at, chained, prev, msg_id);
}

uint64_t es_delivered_seq(const char *reply)
{
	int64_t stored_ns = 0;
	return es_delivered_position(reply, &stored_ns);
}

uint64_t es_delivered_position(const char *reply, int64_t *stored_ns)
{
	const char *tokens[13];
	size_t lengths[13], count = 0;
	*stored_ns = 0;
	if (reply == NULL || strncmp(reply, "$JS.ACK.", 8) != 0)
		return 0;
	for (const char *p = reply; count < 13;) {
		const char *dot = strchr(p, '.');
		tokens[count] = p;
		lengths[count++] = dot != NULL ? (size_t)(dot - p) : strlen(p);
		if (dot == NULL)
			break;
		p = dot + 1;
	}
	uint64_t seq = 0, ns = 0;
	size_t at = count == 9 ? 5 : count == 11 || count == 12 ? 7 : 0;
	if (at == 0 || !parse_u64(tokens[at], lengths[at], &seq))
		return 0;
	if (parse_u64(tokens[at + 2], lengths[at + 2], &ns) && ns <= INT64_MAX)
		*stored_ns = (int64_t)ns;
	return seq;
}

static void follow_on_message(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	es_follow *f = arg;
	(void)nc;
	(void)sub;
	pthread_mutex_lock(&f->lock);
	bool stopped = f->stopped;
	f->delivering = !stopped;
	pthread_mutex_unlock(&f->lock);
	int64_t stored_ns = 0;
	uint64_t seq = stopped ? 0 : es_delivered_position(natsMsg_GetReply(msg), &stored_ns);
	if (seq != 0 && (seq < f->floor_seq || seq <= f->last_seq || stored_ns < f->floor_ns))
		seq = 0; /* before the follow's start, or delivered already */
	if (seq != 0) {
		f->last_seq = seq;
		if (f->watch != NULL)
			watch_message(f, msg, seq);
		else
			(void)scan_message(&f->chain, msg, seq);
	}
	natsMsg_Destroy(msg);
	pthread_mutex_lock(&f->lock);
	f->delivering = false;
	pthread_cond_broadcast(&f->idle);
	pthread_mutex_unlock(&f->lock);
}

/* After the subscription is closed and its last message handler returned. */
static void follow_on_complete(void *arg)
{
	es_follow *f = arg;
	pthread_mutex_lock(&f->lock);
	bool call_done = !f->done_called, free_now = f->stopped;
	f->done_called = f->closed = true;
	pthread_mutex_unlock(&f->lock);
	if (call_done)
		f->done(f->each.closure);
	if (free_now)
		follow_free(f);
}

/* What a follow reads: filter from from_seq, or from since_ns (UNIX ns)
 * when from_seq is 0 and since_ns is not, else only new commits; events of
 * valid commits to fn, or with watch set the headers of every commit. */
typedef struct follow_spec {
	const char *filter;
	uint64_t from_seq;
	int64_t since_ns;
	es_event_fn fn;
	es_commit_fn commit_fn; /* instead of fn: every commit, valid or void */
	es_watch_fn *watch;
	size_t id_at;
} follow_spec;

static orn_rc follow_start(es_store *s, const follow_spec *spec, es_follow_done_fn *done, void *closure,
                           es_follow **out)
{
	es_follow *f = calloc(1, sizeof *f);
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus st;
	orn_rc rc = ORN_OK;

	*out = NULL;
	if (f == NULL)
		return ORN_ENOMEM;
	f->store = s;
	f->each.fn = spec->fn;
	f->each.closure = closure;
	f->done = done;
	f->watch = spec->watch;
	f->id_at = spec->id_at;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->idle, NULL);
	/* Subjects are met mid-stream: each one's chain is looked up once. */
	if (f->watch == NULL &&
	    (rc = spec->commit_fn != NULL
	                  ? scan_init(&f->chain, s, true, spec->commit_fn, closure)
	                  : scan_init(&f->chain, s, true, on_valid_commit, &f->each)) != ORN_OK)
		goto fail;
	f->chain.from_start = spec->from_seq == 1;
	f->floor_seq = spec->from_seq;
	f->floor_ns = spec->from_seq == 0 ? spec->since_ns : 0;
	jsSubOptions_Init(&so);
	so.Stream = ES_STREAM;
	so.Ordered = true;
	so.Config.HeadersOnly = f->watch != NULL;
	if (spec->from_seq == 0 && spec->since_ns <= 0) {
		/* Only new commits: from the one after the last stored now, a
		 * position the follow can hold its deliveries to (not "new", which
		 * a consumer created again would take from the start). */
		jsStreamInfo *si = NULL;
		jsErrCode jerr_info = 0;
		st = js_GetStreamInfo(&si, s->js, ES_STREAM, NULL, &jerr_info);
		if (st != NATS_OK) {
			rc = es_status_rc(st, jerr_info);
			goto fail;
		}
		f->floor_seq = si->State.LastSeq + 1;
		jsStreamInfo_Destroy(si);
	}
	if (f->floor_seq != 0) {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = f->floor_seq;
	} else {
		so.Config.DeliverPolicy = js_DeliverByStartTime;
		so.Config.OptStartTime = spec->since_ns;
	}
	if ((st = js_Subscribe(&f->sub, s->js, spec->filter, follow_on_message, f, NULL, &so, &jerr)) !=
	    NATS_OK) {
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
	follow_free(f);
	return rc;
}

orn_rc es_follow_start(es_store *s, const char *filter, uint64_t from_seq, es_event_fn fn,
                       es_follow_done_fn *done, void *closure, es_follow **out)
{
	follow_spec spec = {.filter = filter, .from_seq = from_seq, .fn = fn};
	return follow_start(s, &spec, done, closure, out);
}

orn_rc es_follow_since(es_store *s, const char *filter, int64_t since_ms, es_commit_fn fn,
                       es_follow_done_fn *done, void *closure, es_follow **out)
{
	follow_spec spec = {.filter = filter, .since_ns = since_ms * 1000000, .commit_fn = fn};
	if (since_ms <= 0) {
		*out = NULL;
		return ORN_EINVAL;
	}
	return follow_start(s, &spec, done, closure, out);
}

orn_rc es_watch_start(es_store *s, const char *aggregate, es_watch_fn *fn, es_follow_done_fn *done,
                      void *closure, es_follow **out, uint64_t *from_seq)
{
	char filter[ES_SUBJECT_MAX];
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	*out = NULL;
	if (!es_aggregate_valid(aggregate) || fn == NULL)
		return ORN_EINVAL;
	snprintf(filter, sizeof filter, "%s.%s.*", EVT_PREFIX, aggregate);
	/* From the commit after the last one stored now: a position the caller
	 * can compare its own with. */
	natsStatus st = js_GetStreamInfo(&si, s->js, ES_STREAM, NULL, &jerr);
	if (st != NATS_OK)
		return es_status_rc(st, jerr);
	follow_spec spec = {.filter = filter,
	                    .from_seq = si->State.LastSeq + 1,
	                    .watch = fn,
	                    .id_at = strlen(EVT_PREFIX) + strlen(aggregate) + 2};
	jsStreamInfo_Destroy(si);
	orn_rc rc = follow_start(s, &spec, done, closure, out);
	if (rc == ORN_OK)
		*from_seq = spec.from_seq;
	return rc;
}

void es_follow_stop(es_follow *f)
{
	if (f == NULL)
		return;
	natsSubscription *sub = f->sub;
	es_follow_done_fn *done = f->done;
	void *closure = f->each.closure; /* f may be freed by the completion once unlocked */
	bool up = es_store_connected(f->store);
	pthread_mutex_lock(&f->lock);
	f->stopped = true;
	bool closed = f->closed;
	while (!up && f->delivering)
		pthread_cond_wait(&f->idle, &f->lock);
	bool call_done = !up && !f->done_called;
	f->done_called |= call_done;
	pthread_mutex_unlock(&f->lock);
	if (up && !closed)
		natsSubscription_Unsubscribe(sub); /* the completion calls done and frees f */
	natsSubscription_Destroy(sub);
	if (call_done)
		done(closure);
	if (closed)
		follow_free(f);
}

/* ---- tailing ---- */

struct es_tail {
	es_store *store;
	natsSubscription *sub;
};

struct es_stored {
	natsMsg *msg;
	uint64_t seq;
};

orn_rc es_tail_open(es_store *s, const char *filter, uint64_t from_seq, es_tail **out)
{
	return es_tail_open_stream(s, ES_STREAM, filter, from_seq, out);
}

orn_rc es_tail_open_stream(es_store *s, const char *stream, const char *filter, uint64_t from_seq,
                           es_tail **out)
{
	jsSubOptions so;
	jsErrCode jerr = 0;
	es_tail *t = calloc(1, sizeof *t);
	*out = NULL;
	if (t == NULL)
		return ORN_ENOMEM;
	t->store = s;
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverByStartSequence;
	so.Config.OptStartSeq = from_seq > 0 ? from_seq : 1;
	natsStatus st = js_SubscribeSync(&t->sub, s->js, filter, NULL, &so, &jerr);
	if (st != NATS_OK) {
		free(t);
		return es_status_rc(st, jerr);
	}
	natsSubscription_SetPendingLimits(t->sub, -1, -1);
	*out = t;
	return ORN_OK;
}

orn_rc es_tail_next(es_tail *t, int64_t timeout_ms, es_stored **out)
{
	int64_t deadline = orn_monotonic_ns() + timeout_ms * 1000000;
	*out = NULL;
	for (;;) {
		int64_t left = (deadline - orn_monotonic_ns()) / 1000000;
		natsMsg *msg = NULL;
		natsStatus st = natsSubscription_NextMsg(&msg, t->sub, left > 0 ? left : 0);
		if (st == NATS_TIMEOUT)
			return ORN_ETIMEOUT;
		if (st != NATS_OK)
			return ORN_EUNAVAILABLE;
		jsMsgMetaData *meta = NULL;
		if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
			natsMsg_Destroy(msg); /* not a stream message */
			continue;
		}
		es_stored *m = malloc(sizeof *m);
		if (m == NULL) {
			jsMsgMetaData_Destroy(meta);
			natsMsg_Destroy(msg);
			return ORN_ENOMEM;
		}
		m->msg = msg;
		m->seq = meta->Sequence.Stream;
		jsMsgMetaData_Destroy(meta);
		*out = m;
		return ORN_OK;
	}
}

void es_tail_close(es_tail *t)
{
	if (t == NULL)
		return;
	if (es_store_connected(t->store)) /* else it waits on a consumer deletion nobody answers */
		natsSubscription_Unsubscribe(t->sub);
	natsSubscription_Destroy(t->sub);
	free(t);
}

uint64_t es_stored_seq(const es_stored *m)
{
	return m->seq;
}

const char *es_stored_subject(const es_stored *m)
{
	return natsMsg_GetSubject(m->msg);
}

const void *es_stored_data(const es_stored *m, size_t *len)
{
	*len = (size_t)natsMsg_GetDataLength(m->msg);
	return natsMsg_GetData(m->msg);
}

bool es_stored_prev(const es_stored *m, bool *chained, uint64_t *prev)
{
	return es_msg_prev(m->msg, chained, prev);
}

void es_stored_free(es_stored *m)
{
	if (m == NULL)
		return;
	natsMsg_Destroy(m->msg);
	free(m);
}
