/* kit_service.c — requests on a subject, handed to worker threads (see
 * kit.h). The client's delivery thread only queues a request (or answers
 * "overloaded" past queue_max); each worker takes one at a time, calls the
 * role's serve function and answers what it did not. */
#include "kit-internal.h"

#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore-internal.h"
#include "log.h"

#define DRAIN_WAIT_MS 5000

struct kit_request {
	kit_request *next;
	kit_service *service;
	natsMsg *msg;
	bool answered;
};

typedef struct worker {
	kit_service *s;
	pthread_t thread;
	bool started;
	void *ctx;
} worker;

struct kit_service {
	es_store *store;
	kit_service_options o;
	char *name;
	natsConnection *nc; /* the role's serve user: requests arrive and are answered here */
	natsSubscription *sub;
	pthread_mutex_t lock; /* the queue */
	pthread_cond_t wake;
	kit_request *head, *tail;
	size_t queued;
	atomic_bool stopping;
	worker *workers;
};

const char *kit_request_subject(const kit_request *r)
{
	return natsMsg_GetSubject(r->msg);
}

const uint8_t *kit_request_data(const kit_request *r, size_t *len)
{
	*len = (size_t)natsMsg_GetDataLength(r->msg);
	return (const uint8_t *)natsMsg_GetData(r->msg);
}

/* Answers msg's requester with reply (if it asked for an answer). */
static void answer(kit_service *s, natsMsg *msg, const bus_reply *reply)
{
	const char *to = natsMsg_GetReply(msg);
	mp_writer *w;
	if (to == NULL || to[0] == '\0' || (w = mp_writer_create()) == NULL)
		return;
	if (bus_reply_encode(w, reply) == ORN_OK)
		natsConnection_Publish(s->nc, to, mp_writer_data(w), (int)mp_writer_size(w));
	mp_writer_destroy(w);
}

static void answer_failed(kit_service *s, natsMsg *msg, const char *code, const char *detail)
{
	bus_reply r;
	memset(&r, 0, sizeof r);
	r.outcome = BUS_FAILED;
	snprintf(r.code, sizeof r.code, "%s", code);
	snprintf(r.detail, sizeof r.detail, "%s", detail);
	r.attempts = 1;
	answer(s, msg, &r);
}

void kit_request_reply(kit_request *r, const bus_reply *reply)
{
	if (r->answered)
		return;
	r->answered = true;
	answer(r->service, r->msg, reply);
}

/* Frees msg, wiping its bytes first when the service says so. */
static void discard(kit_service *s, natsMsg *msg)
{
	if (s->o.wipe && natsMsg_GetDataLength(msg) > 0)
		sodium_memzero((void *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	natsMsg_Destroy(msg);
}

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	kit_service *s = closure;
	kit_request *r = calloc(1, sizeof *r);
	bool queued = false;
	(void)nc;
	(void)sub;
	pthread_mutex_lock(&s->lock);
	if (r != NULL && !atomic_load(&s->stopping) && s->queued < s->o.queue_max) {
		r->service = s;
		r->msg = msg;
		if (s->tail != NULL)
			s->tail->next = r;
		else
			s->head = r;
		s->tail = r;
		s->queued++;
		queued = true;
		pthread_cond_signal(&s->wake);
	}
	pthread_mutex_unlock(&s->lock);
	if (queued)
		return;
	free(r);
	answer_failed(s, msg, "overloaded", "the service is busy");
	discard(s, msg);
}

static kit_request *next_request(kit_service *s)
{
	kit_request *r = NULL;
	pthread_mutex_lock(&s->lock);
	while (s->head == NULL && !atomic_load(&s->stopping))
		pthread_cond_wait(&s->wake, &s->lock);
	if (s->head != NULL && !atomic_load(&s->stopping)) {
		r = s->head;
		s->head = r->next;
		if (s->head == NULL)
			s->tail = NULL;
		s->queued--;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void finish(kit_service *s, kit_request *r)
{
	if (!r->answered)
		answer_failed(s, r->msg, "unavailable", "the request was not answered");
	discard(s, r->msg);
	free(r);
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	kit_request *r;
	while ((r = next_request(w->s)) != NULL) {
		w->s->o.serve(w->ctx, r);
		finish(w->s, r);
	}
	return NULL;
}

static void service_free(kit_service *s)
{
	atomic_store(&s->stopping, true);
	pthread_mutex_lock(&s->lock);
	pthread_cond_broadcast(&s->wake);
	pthread_mutex_unlock(&s->lock);
	if (s->o.stopping != NULL)
		s->o.stopping(s->o.closure);
	for (unsigned i = 0; s->workers != NULL && i < s->o.workers; i++) {
		worker *w = &s->workers[i];
		if (w->started)
			pthread_join(w->thread, NULL);
		if (w->ctx != NULL && s->o.worker_destroy != NULL)
			s->o.worker_destroy(w->ctx);
	}
	for (kit_request *r = s->head; r != NULL;) { /* queued, never started */
		kit_request *next = r->next;
		answer_failed(s, r->msg, "unavailable", "the service is stopping");
		discard(s, r->msg);
		free(r);
		r = next;
	}
	if (s->nc != NULL)
		natsConnection_FlushTimeout(s->nc, 1000); /* the last answers */
	natsConnection_Destroy(s->nc);
	free(s->workers);
	free(s->name);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

orn_rc kit_service_start(es_store *store, const kit_service_options *o, kit_service **out)
{
	kit_service *s;
	orn_rc rc = ORN_ENOMEM;
	*out = NULL;
	if (store == NULL || o == NULL || o->subject == NULL || o->queue == NULL || o->serve == NULL)
		return ORN_EINVAL;
	if ((s = calloc(1, sizeof *s)) == NULL)
		return ORN_ENOMEM;
	s->store = store;
	s->o = *o;
	if (s->o.workers == 0)
		s->o.workers = 4;
	if (s->o.queue_max == 0)
		s->o.queue_max = 4096;
	atomic_init(&s->stopping, false);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	s->name = strdup(o->name != NULL ? o->name : o->subject);
	if (s->name == NULL || (s->workers = calloc(s->o.workers, sizeof *s->workers)) == NULL)
		goto fail;
	for (unsigned i = 0; i < s->o.workers; i++) {
		worker *w = &s->workers[i];
		w->s = s;
		w->ctx = s->o.worker_create != NULL ? s->o.worker_create(s->o.closure) : s->o.closure;
		if ((s->o.worker_create != NULL && w->ctx == NULL) ||
		    pthread_create(&w->thread, NULL, worker_main, w) != 0)
			goto fail;
		w->started = true;
	}
	char name[96];
	snprintf(name, sizeof name, "orion-%s-serve", s->name);
	if ((rc = es_store_connect_serving(store, name, &s->nc)) != ORN_OK)
		goto fail;
	natsConnection *nc = s->nc;
	natsStatus st = natsConnection_QueueSubscribe(&s->sub, nc, o->subject, o->queue, on_request, s);
	if (st != NATS_OK) {
		s->sub = NULL;
		rc = es_status_rc(st, 0);
		goto fail;
	}
	natsSubscription_SetPendingLimits(s->sub, 100000, 256 * 1024 * 1024);
	natsConnection_Flush(nc);
	*out = s;
	return ORN_OK;
fail:
	service_free(s);
	return rc;
}

void kit_service_stop(kit_service *s)
{
	if (s == NULL)
		return;
	if (s->sub != NULL) {
		/* Hand the requests already sent to us to the workers; with NATS
		 * gone nothing more can arrive, and a drain would wait in vain. */
		if (natsConnection_Status(s->nc) == NATS_CONN_STATUS_CONNECTED &&
		    natsSubscription_Drain(s->sub) == NATS_OK)
			natsSubscription_WaitForDrainCompletion(s->sub, DRAIN_WAIT_MS);
		natsSubscription_Destroy(s->sub);
		s->sub = NULL;
	}
	service_free(s);
}
