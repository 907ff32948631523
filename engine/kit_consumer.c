/* kit_consumer.c — the durable consumer loop of the kit (see kit.h).
 *
 * Each worker thread owns a reply inbox and pulls from the durable with the
 * JetStream pull protocol itself: one request {batch, expires} to
 * $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>, then every commit handled as
 * it arrives (a batch fills while the first commits are handled), acked
 * ("+ACK") or naked with a delay ("-NAK {delay}") on the message's reply
 * subject, and the next request once the batch is in or the server closed it
 * (408). A request the server forgot (it restarted) is replaced after its
 * expiry; a consumer that is gone (409 Consumer Deleted, 503 no responders)
 * is created again. A stop wakes every worker with a message on its inbox;
 * the worker finishes the commit in hand, drains its inbox and naks every
 * commit that comes in until the server has its unsubscription (so another
 * instance takes them without waiting for the ack wait). With NATS gone, a
 * worker sees the stop within POLL_MS. */
#include "kit-internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore-internal.h"
#include "log.h"

#define POLL_MS         250  /* a worker looks at the stop flag at least this often */
#define PULL_EXPIRES_MS 5000 /* a pull request's life at the server */
#define PULL_GRACE_MS   1000 /* past its expiry, a request without an answer is forgotten */
#define ERROR_PAUSE_MS  250
#define ENSURE_PAUSE_MS 1000
#define STOP_MARK       "stop"
#define DRAIN_MS        2000 /* a stop waits this long at most for the server to take the unsubscription */

typedef struct worker {
	kit_consumer *c;
	pthread_t thread;
	bool started;
	void *ctx; /* the role's */
	natsSubscription *sub;
	char *inbox;
	env_envelope *events;
	unsigned asked;           /* commits asked for by the open request, not yet received */
	int64_t pull_deadline_ns; /* when the open request is forgotten */
	bool ensure;              /* the consumer must be created again */
	int64_t error_logged_ns;
	natsMsg *current; /* the delivery being handled */
} worker;

struct kit_consumer {
	es_store *store;
	kit_hub *hub;
	kit_consumer_options o;
	char *name, *durable, *filter, *prefix, *next_subject;
	es_durable_options durable_options;
	atomic_bool stopping, bound;
	worker *workers;
	kit_sweep *sweep;
	void *sweep_ctx;
	env_envelope *sweep_events;
	atomic_uint_least64_t handled, retried, swept;
};

static bool stopping(const kit_consumer *c)
{
	return atomic_load(&c->stopping);
}

static void pause_ms(const kit_consumer *c, int ms)
{
	for (int waited = 0; waited < ms && !stopping(c); waited += 50)
		orn_sleep_ms(50);
}

/* ---- one commit ---- */

static void answer(kit_consumer *c, natsMsg *msg, const char *body)
{
	const char *reply = natsMsg_GetReply(msg);
	if (reply != NULL && reply[0] != '\0')
		natsConnection_PublishString(es_store_connection(c->store), reply, body);
}

orn_rc kit_commit_check(es_store *store, const kit_commit *c, bool *valid)
{
	es_commit ec = {.seq = c->seq,
	                .subject = c->subject,
	                .chained = c->chained,
	                .prev = c->prev,
	                .events = c->events,
	                .count = c->count};
	orn_rc rc = es_commit_check(store, &ec);
	*valid = rc == ORN_OK && ec.valid;
	return rc;
}

void kit_commit_working(const kit_commit *c)
{
	const worker *w = c->delivery;
	if (w != NULL && w->current != NULL)
		answer(w->c, w->current, "+WPI");
}

/* Acks, or naks with the backoff of its delivery count (at once when stopping). */
static void settle(kit_consumer *c, natsMsg *msg, kit_verdict v, uint64_t delivered)
{
	char nak[64];
	if (v == KIT_DONE) {
		answer(c, msg, "+ACK");
		return;
	}
	atomic_fetch_add(&c->retried, 1);
	if (stopping(c)) {
		answer(c, msg, "-NAK");
		return;
	}
	int64_t ceiling = c->o.long_retry_after > 0 && delivered >= c->o.long_retry_after &&
	                                  c->o.long_retry_max_ms > c->o.retry_max_ms
	                          ? c->o.long_retry_max_ms
	                          : c->o.retry_max_ms;
	int64_t delay = es_backoff_ms(delivered, c->o.retry_first_ms, ceiling);
	snprintf(nak, sizeof nak, "-NAK {\"delay\":%lld}", (long long)delay * 1000000);
	answer(c, msg, nak);
}

/* Decodes the commit of subject into kc: ORN_EDECODE (logged) if it is none,
 * or its subject is not the filter's prefix and an id. */
static orn_rc decode(kit_consumer *c, natsMsg *msg, env_envelope *events, es_commit *ec, kit_commit *kc)
{
	const char *subject = natsMsg_GetSubject(msg);
	size_t prefix = strlen(c->prefix);
	orn_rc rc = es_commit_decode(msg, events, ENV_MAX_EVENTS, ec);
	if (rc != ORN_OK || subject == NULL || strncmp(subject, c->prefix, prefix) != 0 ||
	    strlen(subject + prefix) > ES_ID_MAX || !es_id_valid(subject + prefix) || ec->count == 0) {
		char seq[24];
		snprintf(seq, sizeof seq, "%llu", (unsigned long long)ec->seq);
		log_error("kit skips a message that is not a commit of its filter", "consumer", c->name,
		          "subject", subject != NULL ? subject : "", "seq", seq);
		return ORN_EDECODE;
	}
	*kc = (kit_commit){.subject = subject,
	                   .id = subject + prefix,
	                   .seq = ec->seq,
	                   .chained = ec->chained,
	                   .prev = ec->prev,
	                   .events = events,
	                   .count = ec->count};
	return ORN_OK;
}

/* Calls the handler with the commit's correlation id in the log lines. */
static kit_verdict call(kit_consumer *c, void *ctx, const kit_commit *kc)
{
	const char *correlation = kc->events[0].correlation;
	log_set_correlation(correlation[0] != '\0' ? correlation : kc->id);
	kit_verdict v = c->o.handle(ctx, kc);
	log_set_correlation(NULL);
	return v;
}

/* Whether kc holds an event the handler acts on. */
static bool wanted(const kit_consumer *c, const kit_commit *kc)
{
	for (size_t i = 0; c->o.wants != NULL && i < kc->count; i++)
		if (c->o.wants(c->o.closure, &kc->events[i]))
			return true;
	return c->o.wants == NULL;
}

static void handle(worker *w, natsMsg *msg)
{
	kit_consumer *c = w->c;
	jsMsgMetaData *meta = NULL;
	es_commit ec;
	kit_commit kc;
	uint64_t delivered = 1;
	if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
		delivered = meta->NumDelivered;
		jsMsgMetaData_Destroy(meta);
	}
	atomic_fetch_add(&c->handled, 1);
	if (decode(c, msg, w->events, &ec, &kc) != ORN_OK) {
		answer(c, msg, "+ACK"); /* nothing could ever handle it */
		return;
	}
	kc.delivered = delivered;
	kc.delivery = w;
	bool valid = true;
	if (!wanted(c, &kc)) {
		answer(c, msg, "+ACK"); /* nothing the handler acts on */
		return;
	}
	if (c->o.check_valid && kit_commit_check(c->store, &kc, &valid) != ORN_OK) {
		settle(c, msg, KIT_RETRY, delivered);
		return;
	}
	if (!valid) {
		answer(c, msg, "+ACK"); /* a void commit changes nothing (ADR 015) */
		return;
	}
	w->current = msg;
	settle(c, msg, call(c, w->ctx, &kc), delivered);
	w->current = NULL;
}

/* ---- the pull loop ---- */

static orn_rc subscribe(worker *w)
{
	natsConnection *nc = es_store_connection(w->c->store);
	natsInbox *inbox = NULL;
	if (natsInbox_Create(&inbox) != NATS_OK)
		return ORN_ENOMEM;
	free(w->inbox);
	w->inbox = strdup(inbox);
	natsInbox_Destroy(inbox);
	if (w->inbox == NULL)
		return ORN_ENOMEM;
	natsStatus st = natsConnection_SubscribeSync(&w->sub, nc, w->inbox);
	if (st != NATS_OK) {
		w->sub = NULL;
		return es_status_rc(st, 0);
	}
	natsSubscription_SetPendingLimits(w->sub, -1, -1);
	w->asked = 0;
	return ORN_OK;
}

/* Asks for a batch; the answers come to the worker's inbox. */
static orn_rc pull(worker *w)
{
	kit_consumer *c = w->c;
	char body[96];
	int n = snprintf(body, sizeof body, "{\"batch\":%u,\"expires\":%lld}", c->o.batch,
	                 (long long)PULL_EXPIRES_MS * 1000000);
	natsStatus st = natsConnection_PublishRequest(es_store_connection(c->store), c->next_subject,
	                                              w->inbox, body, n);
	if (st != NATS_OK)
		return es_status_rc(st, 0);
	w->asked = c->o.batch;
	w->pull_deadline_ns = orn_monotonic_ns() + (int64_t)(PULL_EXPIRES_MS + PULL_GRACE_MS) * 1000000;
	return ORN_OK;
}

/* A status message of the server about the open request: it ended (408
 * expired, 404), or the consumer is gone (409 Consumer Deleted, 503 no
 * responders: created again), or something else (logged, request again). */
static void on_status(worker *w, natsMsg *msg)
{
	const char *status = NULL, *description = NULL;
	natsMsgHeader_Get(msg, "Status", &status);
	natsMsgHeader_Get(msg, "Description", &description);
	if (status == NULL || strcmp(status, "100") == 0)
		return; /* a heartbeat */
	w->asked = 0;
	if (strcmp(status, "408") == 0 || strcmp(status, "404") == 0)
		return;
	if (strcmp(status, "503") == 0 || (description != NULL && strstr(description, "Deleted") != NULL))
		w->ensure = true;
	int64_t now = orn_monotonic_ns();
	if (now - w->error_logged_ns > 5000000000LL) {
		log_warn("kit consumer's pull refused", "consumer", w->c->name, "status", status,
		         "description", description != NULL ? description : "");
		w->error_logged_ns = now;
	}
}

/* A message that is the stop's wake-up: no reply subject, no header, STOP_MARK. */
static bool is_stop(natsMsg *msg)
{
	const char *reply = natsMsg_GetReply(msg);
	return (reply == NULL || reply[0] == '\0') && natsMsg_GetDataLength(msg) == (int)strlen(STOP_MARK) &&
	       memcmp(natsMsg_GetData(msg), STOP_MARK, strlen(STOP_MARK)) == 0;
}

static bool is_status(natsMsg *msg)
{
	const char *status = NULL;
	return natsMsg_GetDataLength(msg) == 0 && natsMsgHeader_Get(msg, "Status", &status) == NATS_OK;
}

/* Hands the commits the worker holds back to the server (stopping). A nak
 * (its own, or another worker's) may bring a commit back at once to any
 * pull request still open, and the server forgets a request only when its
 * inbox has no interest left: so the inbox is drained, not just dropped.
 * The drain sends the unsubscription and a ping; whatever the server sent
 * to the inbox before it took the unsubscription comes before the pong and
 * is naked here, and after it nothing can come (on a cluster, a delivery
 * already on its way from another node can still miss the inbox: it comes
 * back after the ack wait). */
static void give_back(worker *w)
{
	natsMsg *msg = NULL;
	if (w->sub == NULL)
		return;
	bool draining = natsSubscription_DrainTimeout(w->sub, DRAIN_MS) == NATS_OK;
	int64_t until = orn_monotonic_ns() + (int64_t)DRAIN_MS * 1000000;
	for (;;) {
		natsStatus st = natsSubscription_NextMsg(&msg, w->sub, draining ? POLL_MS : 0);
		if (st == NATS_OK) {
			if (!is_stop(msg) && !is_status(msg))
				answer(w->c, msg, "-NAK");
			natsMsg_Destroy(msg);
			continue;
		}
		/* a drained subscription is closed once its last message is taken */
		if (!draining || st != NATS_TIMEOUT || !natsSubscription_IsValid(w->sub) ||
		    orn_monotonic_ns() >= until)
			break;
	}
}

static void drop_subscription(worker *w)
{
	if (w->sub == NULL)
		return;
	natsSubscription_Unsubscribe(w->sub); /* a core subscription: nothing to wait for */
	natsSubscription_Destroy(w->sub);
	w->sub = NULL;
}

/* Makes the worker ready to pull: subscribed, the consumer there. */
static bool ready_to_pull(worker *w)
{
	kit_consumer *c = w->c;
	if (w->sub == NULL && subscribe(w) != ORN_OK) {
		pause_ms(c, ERROR_PAUSE_MS);
		return false;
	}
	if (w->ensure) {
		if (es_durable_ensure(c->store, &c->durable_options) != ORN_OK) {
			pause_ms(c, ENSURE_PAUSE_MS);
			return false;
		}
		w->ensure = false;
	}
	if ((w->asked == 0 || orn_monotonic_ns() >= w->pull_deadline_ns) && pull(w) != ORN_OK) {
		pause_ms(c, ERROR_PAUSE_MS);
		return false;
	}
	atomic_store(&c->bound, true);
	return true;
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	kit_consumer *c = w->c;
	while (!stopping(c)) {
		natsMsg *msg = NULL;
		if (!ready_to_pull(w))
			continue;
		int64_t left_ms = (w->pull_deadline_ns - orn_monotonic_ns()) / 1000000 + 1;
		natsStatus st = natsSubscription_NextMsg(&msg, w->sub, left_ms < POLL_MS ? left_ms : POLL_MS);
		if (st == NATS_TIMEOUT)
			continue;
		if (st != NATS_OK) {
			drop_subscription(w); /* the connection closed under it: a new one */
			pause_ms(c, ERROR_PAUSE_MS);
			continue;
		}
		if (is_stop(msg)) {
			natsMsg_Destroy(msg);
			break;
		}
		if (is_status(msg)) {
			on_status(w, msg);
		} else {
			if (w->asked > 0)
				w->asked--;
			if (stopping(c))
				answer(c, msg, "-NAK"); /* not started: to another instance at once */
			else
				handle(w, msg);
		}
		natsMsg_Destroy(msg);
	}
	if (es_store_connected(c->store))
		give_back(w);
	drop_subscription(w);
	return NULL;
}

/* ---- the sweeper's call: the due commit read again, then the handler ---- */

static kit_verdict sweep_due(void *closure, const char *subject, uint64_t seq)
{
	kit_consumer *c = closure;
	jsDirectGetMsgOptions o;
	natsMsg *msg = NULL;
	es_commit ec;
	kit_commit kc;
	if (stopping(c))
		return KIT_RETRY;
	jsDirectGetMsgOptions_Init(&o);
	o.Sequence = seq;
	if (js_DirectGetMsg(&msg, es_store_jetstream(c->store), ES_STREAM, NULL, &o) != NATS_OK)
		return KIT_RETRY; /* NATS failing over, or a replica behind: later */
	kit_verdict v = KIT_DONE;
	const char *got = natsMsg_GetSubject(msg);
	if (got != NULL && strcmp(got, subject) == 0 && decode(c, msg, c->sweep_events, &ec, &kc) == ORN_OK) {
		kc.delivered = 0;
		atomic_fetch_add(&c->swept, 1);
		v = call(c, c->sweep_ctx, &kc);
	}
	natsMsg_Destroy(msg);
	return v;
}

/* ---- lifecycle ---- */

/* The role's worker for a new thread (the closure itself without
 * worker_create); false if worker_create failed. */
static bool worker_new(kit_consumer *c, void **out)
{
	*out = c->o.worker_create != NULL ? c->o.worker_create(c->o.closure) : c->o.closure;
	return c->o.worker_create == NULL || *out != NULL;
}

static void consumer_free(kit_consumer *c)
{
	atomic_store(&c->stopping, true);
	kit_sweep_stop(c->sweep);
	if (c->workers != NULL) {
		bool up = es_store_connected(c->store);
		for (unsigned i = 0; i < c->o.workers; i++)
			if (up && c->workers[i].started && c->workers[i].inbox != NULL)
				natsConnection_PublishString(es_store_connection(c->store),
				                             c->workers[i].inbox, STOP_MARK);
		for (unsigned i = 0; i < c->o.workers; i++) {
			worker *w = &c->workers[i];
			if (w->started)
				pthread_join(w->thread, NULL);
			if (w->ctx != NULL && c->o.worker_destroy != NULL)
				c->o.worker_destroy(w->ctx);
			free(w->events);
			free(w->inbox);
		}
	}
	if (c->sweep_ctx != NULL && c->o.worker_destroy != NULL)
		c->o.worker_destroy(c->sweep_ctx);
	free(c->sweep_events);
	free(c->workers);
	free(c->name);
	free(c->durable);
	free(c->filter);
	free(c->prefix);
	free(c->next_subject);
	free(c);
}

/* Copies and checks the options, with their defaults. */
static orn_rc take_options(kit_consumer *c, const kit_consumer_options *o)
{
	size_t n = o->filter != NULL ? strlen(o->filter) : 0;
	if (o->durable == NULL || o->durable[0] == '\0' || o->handle == NULL || n < 3 ||
	    strcmp(o->filter + n - 2, ".>") != 0)
		return ORN_EINVAL;
	c->o = *o;
	if (c->o.ack_wait_ms <= 0)
		c->o.ack_wait_ms = 30000;
	if (c->o.workers == 0)
		c->o.workers = 4;
	if (c->o.batch == 0)
		c->o.batch = 8;
	if (c->o.retry_first_ms <= 0)
		c->o.retry_first_ms = 100;
	if (c->o.retry_max_ms <= 0)
		c->o.retry_max_ms = 10000;
	c->name = strdup(o->name != NULL ? o->name : o->durable);
	c->durable = strdup(o->durable);
	c->filter = strdup(o->filter);
	c->prefix = strndup(o->filter, n - 1);
	size_t cap = strlen("$JS.API.CONSUMER.MSG.NEXT." ES_STREAM ".") + strlen(o->durable) + 1;
	if ((c->next_subject = malloc(cap)) != NULL)
		snprintf(c->next_subject, cap, "$JS.API.CONSUMER.MSG.NEXT." ES_STREAM ".%s", o->durable);
	if (c->name == NULL || c->durable == NULL || c->filter == NULL || c->prefix == NULL ||
	    c->next_subject == NULL)
		return ORN_ENOMEM;
	c->o.name = c->name;
	c->o.durable = c->durable;
	c->o.filter = c->filter;
	c->durable_options = (es_durable_options){.durable = c->durable,
	                                          .filter = c->filter,
	                                          .ack_wait_ms = c->o.ack_wait_ms,
	                                          .max_ack_pending = c->o.max_ack_pending};
	return ORN_OK;
}

static orn_rc start_sweeper(kit_consumer *c)
{
	kit_sweep_options so = {.name = c->name,
	                        .filter = c->filter,
	                        .after_ms = c->o.sweep_after_ms,
	                        .newest_only = c->o.sweep_newest_only,
	                        .retry_first_ms = c->o.retry_first_ms,
	                        .retry_max_ms = c->o.retry_max_ms,
	                        .wants = c->o.sweep_wants != NULL ? c->o.sweep_wants : c->o.wants,
	                        .fn = sweep_due,
	                        .closure = c};
	if ((c->sweep_events = malloc(sizeof *c->sweep_events * ENV_MAX_EVENTS)) == NULL ||
	    !worker_new(c, &c->sweep_ctx))
		return ORN_ENOMEM;
	return kit_sweep_start(c->hub, &so, &c->sweep);
}

orn_rc kit_consumer_start(es_store *store, kit_hub *hub, const kit_consumer_options *o, kit_consumer **out)
{
	kit_consumer *c;
	orn_rc rc;
	*out = NULL;
	if (store == NULL || hub == NULL || o == NULL)
		return ORN_EINVAL;
	if ((c = calloc(1, sizeof *c)) == NULL)
		return ORN_ENOMEM;
	c->store = store;
	c->hub = hub;
	atomic_init(&c->stopping, false);
	atomic_init(&c->bound, false);
	if ((rc = take_options(c, o)) != ORN_OK)
		goto fail;
	if ((rc = es_durable_ensure(store, &c->durable_options)) != ORN_OK)
		goto fail;
	rc = ORN_ENOMEM;
	if ((c->workers = calloc(c->o.workers, sizeof *c->workers)) == NULL)
		goto fail;
	for (unsigned i = 0; i < c->o.workers; i++) {
		worker *w = &c->workers[i];
		w->c = c;
		if ((w->events = malloc(sizeof *w->events * ENV_MAX_EVENTS)) == NULL ||
		    !worker_new(c, &w->ctx) || subscribe(w) != ORN_OK)
			goto fail;
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
			goto fail;
		w->started = true;
	}
	if (c->o.sweep_after_ms > 0 && (rc = start_sweeper(c)) != ORN_OK)
		goto fail;
	log_info("kit consumer started", "consumer", c->name, "durable", c->durable, "filter", c->filter);
	*out = c;
	return ORN_OK;
fail:
	consumer_free(c);
	return rc;
}

void kit_consumer_stop(kit_consumer *c)
{
	if (c == NULL)
		return;
	char *name = strdup(c->name);
	consumer_free(c);
	log_info("kit consumer stopped", "consumer", name != NULL ? name : "");
	free(name);
}

bool kit_consumer_bound(const kit_consumer *c)
{
	return c != NULL && atomic_load(&c->bound);
}

void kit_consumer_stats_get(const kit_consumer *c, kit_consumer_stats *out)
{
	memset(out, 0, sizeof *out);
	if (c == NULL)
		return;
	out->handled = atomic_load(&c->handled);
	out->retried = atomic_load(&c->retried);
	out->swept = atomic_load(&c->swept);
	out->sweep_dropped = kit_sweep_dropped(c->sweep);
}
