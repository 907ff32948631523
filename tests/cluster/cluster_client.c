/* cluster_client.c — ops connections to a cluster and batches of command
 * requests answered on one reply subscription per connection. */
#include "cluster_client.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "envelope.h"
#include "log.h"
#include "evstore-internal.h"
#include "nats_auth-internal.h"
#include "nats_auth.h"

void cc_target_from_env(cc_target *t)
{
	t->url = getenv("ORION_NATS_URL");
	t->credentials = getenv("ORION_NATS_CREDENTIALS");
}

/* The ops user of t's credentials file into *auth (borrowing creds). */
static orn_rc ops_auth(const cc_target *t, na_credentials *creds, na_conn *auth)
{
	memset(auth, 0, sizeof *auth);
	memset(creds, 0, sizeof *creds);
	if (t->credentials == NULL || t->credentials[0] == '\0')
		return ORN_OK;
	orn_rc rc = na_credentials_load(t->credentials, NULL, creds);
	const na_credential *ops = rc == ORN_OK ? na_credentials_find(creds, "ops") : NULL;
	if (ops == NULL) {
		fprintf(stderr, "no ops user in %s: %s\n", t->credentials, orn_strerror(rc));
		return ORN_EINVAL;
	}
	auth->user = ops->user;
	auth->password = ops->password;
	return ORN_OK;
}

orn_rc cc_connect(const cc_target *t, const char *url, const char *name, natsConnection **out)
{
	na_credentials creds;
	na_conn auth;
	natsOptions *o = NULL;
	orn_rc rc = ops_auth(t, &creds, &auth);
	*out = NULL;
	if (rc != ORN_OK)
		goto done;
	if (natsOptions_Create(&o) != NATS_OK) {
		rc = ORN_ENOMEM;
		goto done;
	}
	if ((rc = es_nats_options_set_url(o, url != NULL ? url : t->url)) != ORN_OK ||
	    (rc = na_conn_apply(&auth, o)) != ORN_OK)
		goto done;
	natsOptions_SetName(o, name);
	natsStatus st = natsConnection_Connect(out, o);
	if (st != NATS_OK) {
		fprintf(stderr, "cannot connect to %s: %s\n", url != NULL ? url : t->url,
		        natsStatus_GetText(st));
		rc = st == NATS_CONNECTION_AUTH_FAILED ? ORN_EINVAL : ORN_EUNAVAILABLE;
	}
done:
	natsOptions_Destroy(o);
	na_credentials_wipe(&creds);
	return rc;
}

orn_rc cc_store_open(const cc_target *t, es_store **out)
{
	na_credentials creds;
	na_conn auth;
	es_options o;
	orn_rc rc = ops_auth(t, &creds, &auth);
	*out = NULL;
	if (rc == ORN_OK) {
		es_options_init(&o);
		o.url = t->url;
		o.name = "chain-fold";
		o.create_streams = false;
		o.auth = &auth;
		o.timeout_ms = 10000;
		rc = es_store_open(&o, out);
	}
	na_credentials_wipe(&creds);
	return rc;
}

orn_rc cc_request_encode(cc_request *r, const char *aggregate, const char *id, const char *type,
                         const char *cmd_id, const mp_writer *payload, int conn)
{
	env_envelope cmd;
	mp_writer *wire = mp_writer_create();
	orn_rc rc = wire != NULL ? ORN_OK : ORN_ENOMEM;
	memset(r, 0, sizeof *r);
	r->conn = conn;
	if (rc == ORN_OK)
		rc = bus_command_subject(r->subject, sizeof r->subject, aggregate, id);
	if (rc == ORN_OK)
		rc = bus_command_init(&cmd, type, orn_now_ms(), cmd_id, NULL, "chain-load",
		                      mp_writer_data(payload), mp_writer_size(payload));
	if (rc == ORN_OK)
		rc = env_encode(wire, &cmd);
	if (rc == ORN_OK)
		rc = mp_writer_status(wire);
	if (rc == ORN_OK && (r->wire = malloc(mp_writer_size(wire))) == NULL)
		rc = ORN_ENOMEM;
	if (rc == ORN_OK) {
		r->len = mp_writer_size(wire);
		memcpy(r->wire, mp_writer_data(wire), r->len);
	}
	mp_writer_destroy(wire);
	return rc;
}

void cc_request_dispose(cc_request *r)
{
	free(r->wire);
	r->wire = NULL;
}

/* ---- the sender ---------------------------------------------------------- */

struct cc_sender {
	natsConnection *nc[CC_MAX_CONNS];
	natsSubscription *sub[CC_MAX_CONNS];
	char inbox[CC_MAX_CONNS][64];
	int conns;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* the batch under way, under lock */
	unsigned generation;
	cc_request *reqs;
	long count, answered;
};

/* Reply subjects are <inbox>.<generation>.<index>: a late reply to an earlier
 * batch is recognised and dropped. */
static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	cc_sender *s = closure;
	unsigned generation = 0;
	long index = -1;
	const char *subject = natsMsg_GetSubject(msg);
	const char *tail = strrchr(subject, '.');
	const char *mid = tail != NULL ? tail - 1 : NULL;
	(void)nc;
	(void)sub;
	while (mid != NULL && mid > subject && *mid != '.')
		mid--;
	if (tail != NULL && mid != NULL && *mid == '.') {
		generation = (unsigned)strtoul(mid + 1, NULL, 10);
		index = strtol(tail + 1, NULL, 10);
	}
	bus_reply reply;
	bool decoded =
	        bus_reply_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &reply) == ORN_OK;
	pthread_mutex_lock(&s->lock);
	if (generation == s->generation && s->reqs != NULL && index >= 0 && index < s->count &&
	    !s->reqs[index].answered) {
		cc_request *r = &s->reqs[index];
		r->answered = true;
		r->decoded = decoded;
		if (decoded) {
			r->outcome = reply.outcome;
			snprintf(r->code, sizeof r->code, "%s", reply.code);
			r->seq = reply.seq;
			r->duplicate = reply.duplicate;
		}
		s->answered++;
		pthread_cond_signal(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	if (decoded)
		bus_reply_dispose(&reply);
	natsMsg_Destroy(msg);
}

orn_rc cc_sender_create(const cc_target *t, const char *const *urls, int count, cc_sender **out)
{
	orn_rc rc = ORN_OK;
	char name[32], pattern[80];
	cc_sender *s = calloc(1, sizeof *s);
	*out = NULL;
	if (s == NULL || count < 1 || count > CC_MAX_CONNS) {
		free(s);
		return s == NULL ? ORN_ENOMEM : ORN_EINVAL;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	for (; rc == ORN_OK && s->conns < count; s->conns++) {
		int k = s->conns;
		snprintf(name, sizeof name, "chain-load-%d", k);
		if ((rc = cc_connect(t, urls[k], name, &s->nc[k])) != ORN_OK)
			break;
		snprintf(s->inbox[k], sizeof s->inbox[k], "_INBOX.chain.%d.%d", (int)getpid(), k);
		snprintf(pattern, sizeof pattern, "%s.>", s->inbox[k]);
		if (natsConnection_Subscribe(&s->sub[k], s->nc[k], pattern, on_reply, s) != NATS_OK ||
		    natsSubscription_SetPendingLimits(s->sub[k], -1, -1) != NATS_OK ||
		    natsConnection_Flush(s->nc[k]) != NATS_OK)
			rc = ORN_EUNAVAILABLE;
	}
	if (rc != ORN_OK) {
		cc_sender_destroy(s);
		return rc;
	}
	*out = s;
	return ORN_OK;
}

void cc_sender_destroy(cc_sender *s)
{
	if (s == NULL)
		return;
	for (int k = 0; k < CC_MAX_CONNS; k++) {
		if (s->sub[k] != NULL) {
			natsSubscription_Unsubscribe(s->sub[k]);
			natsSubscription_Destroy(s->sub[k]);
		}
		natsConnection_Destroy(s->nc[k]);
	}
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

int cc_sender_conns(const cc_sender *s)
{
	return s->conns;
}

orn_rc cc_sender_run(cc_sender *s, cc_request *reqs, long count, int64_t stall_ms)
{
	char reply_to[128];
	orn_rc rc = ORN_OK;
	pthread_mutex_lock(&s->lock);
	s->generation++;
	s->reqs = reqs;
	s->count = count;
	s->answered = 0;
	unsigned generation = s->generation;
	pthread_mutex_unlock(&s->lock);
	for (long i = 0; rc == ORN_OK && i < count; i++) {
		cc_request *r = &reqs[i];
		int k = r->conn >= 0 && r->conn < s->conns ? r->conn : 0;
		snprintf(reply_to, sizeof reply_to, "%s.%u.%ld", s->inbox[k], generation, i);
		if (natsConnection_PublishRequest(s->nc[k], r->subject, reply_to, r->wire, (int)r->len) !=
		    NATS_OK)
			rc = ORN_EUNAVAILABLE;
	}
	for (int k = 0; rc == ORN_OK && k < s->conns; k++)
		if (natsConnection_FlushTimeout(s->nc[k], 10000) != NATS_OK)
			rc = ORN_EUNAVAILABLE;
	pthread_mutex_lock(&s->lock);
	long last = -1;
	int64_t progress = orn_monotonic_ns();
	while (rc == ORN_OK && s->answered < count) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (s->answered != last) {
			last = s->answered;
			progress = orn_monotonic_ns();
		} else if (orn_monotonic_ns() - progress > stall_ms * 1000000LL) {
			rc = ORN_ETIMEOUT;
		}
	}
	s->reqs = NULL; /* late replies are dropped from here on */
	pthread_mutex_unlock(&s->lock);
	return rc;
}
