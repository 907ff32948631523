/* bus_local.c — commands between the roles of one process without a round
 * trip through NATS (ADR 033; see bus-internal.h).
 *
 * Two small tables under one lock: the kinds this process's actor runtimes
 * serve, and the reply inboxes its senders listen on. A call into either
 * (a post to a runtime, a reply to a listener) runs outside the lock; the
 * entry counts its calls in progress, and taking an entry out waits until
 * they have returned, so neither side is freed under a call. */
#include "bus-internal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "evstore.h"

#define SERVES_MAX  16
#define KIND_MAX    32 /* es_aggregate_valid's bound */
#define LISTENS_MAX 64

typedef struct served {
	char aggregate[KIND_MAX + 1];
	bus_local_post_fn *post;
	void *runtime; /* NULL: a free row */
	unsigned calls;
} served;

typedef struct listener {
	char *inbox;
	size_t len;
	bus_local_reply_fn *fn;
	void *closure; /* NULL: a free row */
	unsigned calls;
} listener;

static struct {
	pthread_mutex_t lock;
	pthread_cond_t idle; /* a call returned */
	served serves[SERVES_MAX];
	listener listens[LISTENS_MAX];
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER};

/* One runtime per kind: a second of the same kind in the process (a test's
 * second host) is served over NATS only. */
bool bus_local_serve(const char *aggregate, bus_local_post_fn *post, void *runtime)
{
	bool taken = false;
	if (strlen(aggregate) > KIND_MAX || runtime == NULL)
		return false;
	pthread_mutex_lock(&reg.lock);
	served *free_row = NULL;
	for (size_t i = 0; i < SERVES_MAX && !taken; i++) {
		if (reg.serves[i].runtime == NULL && free_row == NULL)
			free_row = &reg.serves[i];
		taken = reg.serves[i].runtime != NULL && strcmp(reg.serves[i].aggregate, aggregate) == 0;
	}
	bool served_here = !taken && free_row != NULL;
	if (served_here) {
		strcpy(free_row->aggregate, aggregate);
		free_row->post = post;
		free_row->runtime = runtime;
		free_row->calls = 0;
	}
	pthread_mutex_unlock(&reg.lock);
	return served_here;
}

void bus_local_unserve(void *runtime)
{
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < SERVES_MAX; i++) {
		served *s = &reg.serves[i];
		if (s->runtime != runtime)
			continue;
		while (s->calls > 0)
			pthread_cond_wait(&reg.idle, &reg.lock);
		s->runtime = NULL;
	}
	pthread_mutex_unlock(&reg.lock);
}

bool bus_local_request(const char *aggregate, const char *subject, const char *reply, const void *data,
                       size_t len)
{
	served *s = NULL;
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < SERVES_MAX && s == NULL; i++)
		if (reg.serves[i].runtime != NULL && strcmp(reg.serves[i].aggregate, aggregate) == 0)
			s = &reg.serves[i];
	if (s != NULL)
		s->calls++;
	pthread_mutex_unlock(&reg.lock);
	if (s == NULL)
		return false;
	natsMsg *msg = NULL;
	bool taken =
	        natsMsg_Create(&msg, subject, reply, data, (int)len) == NATS_OK && s->post(s->runtime, msg);
	if (!taken)
		natsMsg_Destroy(msg);
	pthread_mutex_lock(&reg.lock);
	s->calls--;
	pthread_cond_broadcast(&reg.idle);
	pthread_mutex_unlock(&reg.lock);
	return taken;
}

orn_rc bus_local_listen(const char *inbox, bus_local_reply_fn *fn, void *closure)
{
	orn_rc rc = ORN_ETOOBIG;
	if (inbox == NULL || closure == NULL)
		return ORN_EINVAL;
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < LISTENS_MAX && rc == ORN_ETOOBIG; i++) {
		listener *l = &reg.listens[i];
		if (l->closure != NULL)
			continue;
		if ((l->inbox = strdup(inbox)) == NULL) {
			rc = ORN_ENOMEM;
			break;
		}
		l->len = strlen(inbox);
		l->fn = fn;
		l->closure = closure;
		l->calls = 0;
		rc = ORN_OK;
	}
	pthread_mutex_unlock(&reg.lock);
	return rc;
}

void bus_local_unlisten(void *closure)
{
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < LISTENS_MAX; i++) {
		listener *l = &reg.listens[i];
		if (l->closure != closure)
			continue;
		while (l->calls > 0)
			pthread_cond_wait(&reg.idle, &reg.lock);
		free(l->inbox);
		l->inbox = NULL;
		l->closure = NULL;
	}
	pthread_mutex_unlock(&reg.lock);
}

bool bus_local_reply(const char *to, const void *data, size_t len)
{
	listener *l = NULL;
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < LISTENS_MAX && l == NULL; i++) {
		listener *c = &reg.listens[i];
		if (c->closure != NULL && strncmp(to, c->inbox, c->len) == 0 && to[c->len] == '.')
			l = c;
	}
	if (l != NULL)
		l->calls++;
	pthread_mutex_unlock(&reg.lock);
	if (l == NULL)
		return false;
	l->fn(l->closure, to, data, len);
	pthread_mutex_lock(&reg.lock);
	l->calls--;
	pthread_cond_broadcast(&reg.idle);
	pthread_mutex_unlock(&reg.lock);
	return true;
}
