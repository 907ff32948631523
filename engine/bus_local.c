/* bus_local.c — commands between the roles of one process without a round
 * trip through NATS (ADR 033; see bus-internal.h).
 *
 * One small table under one lock: the kinds this process's actor runtimes
 * serve, and the reply inboxes its senders listen on. A call through a row
 * (a post to a runtime, a reply to a listener) runs outside the lock; the
 * row counts its calls in progress, and taking a row out waits until they
 * have returned, so neither side is freed under a call. */
#include "bus-internal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ROWS_MAX 96

typedef struct row {
	bool inbox; /* a listener's reply inbox; else a served kind */
	char *name; /* the kind, or the inbox */
	size_t len;
	bus_local_post_fn *post;
	bus_local_reply_fn *reply;
	void *owner; /* the runtime, or the listener's closure; NULL: a free row */
	unsigned calls;
} row;

static struct {
	pthread_mutex_t lock;
	pthread_cond_t idle; /* a call returned */
	row rows[ROWS_MAX];
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER};

/* Whether r answers to name: a kind exactly, an inbox as the prefix of
 * "<inbox>.<token>". */
static bool matches(const row *r, bool inbox, const char *name)
{
	if (r->owner == NULL || r->inbox != inbox)
		return false;
	return inbox ? strncmp(name, r->name, r->len) == 0 && name[r->len] == '.'
	             : strcmp(name, r->name) == 0;
}

/* The row answering to name, with one more call in progress; NULL if none. */
static row *take(bool inbox, const char *name)
{
	row *r = NULL;
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < ROWS_MAX && r == NULL; i++)
		if (matches(&reg.rows[i], inbox, name))
			r = &reg.rows[i];
	if (r != NULL)
		r->calls++;
	pthread_mutex_unlock(&reg.lock);
	return r;
}

static void release(row *r)
{
	pthread_mutex_lock(&reg.lock);
	r->calls--;
	pthread_cond_broadcast(&reg.idle);
	pthread_mutex_unlock(&reg.lock);
}

/* Adds a row unless one answers to name already: ORN_EEXISTS, ORN_ETOOBIG
 * (the table is full), ORN_ENOMEM. */
static orn_rc add(row r)
{
	orn_rc rc = ORN_ETOOBIG;
	pthread_mutex_lock(&reg.lock);
	row *free_row = NULL;
	for (size_t i = 0; i < ROWS_MAX && rc != ORN_EEXISTS; i++) {
		if (reg.rows[i].owner == NULL && free_row == NULL)
			free_row = &reg.rows[i];
		else if (reg.rows[i].owner != NULL && reg.rows[i].inbox == r.inbox &&
		         strcmp(reg.rows[i].name, r.name) == 0)
			rc = ORN_EEXISTS;
	}
	if (rc != ORN_EEXISTS && free_row != NULL) {
		r.len = strlen(r.name);
		r.name = strdup(r.name);
		r.calls = 0;
		*free_row = r;
		rc = r.name != NULL ? ORN_OK : ORN_ENOMEM;
		if (rc != ORN_OK)
			free_row->owner = NULL;
	}
	pthread_mutex_unlock(&reg.lock);
	return rc;
}

/* Takes out every row of owner once no call through it is in progress. */
static void remove_rows(const void *owner)
{
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < ROWS_MAX; i++) {
		row *r = &reg.rows[i];
		if (owner == NULL || r->owner != owner)
			continue;
		while (r->calls > 0)
			pthread_cond_wait(&reg.idle, &reg.lock);
		free(r->name);
		r->name = NULL;
		r->owner = NULL;
	}
	pthread_mutex_unlock(&reg.lock);
}

bool bus_local_serve(const char *aggregate, bus_local_post_fn *post, void *runtime)
{
	return runtime != NULL &&
	       add((row){.inbox = false, .name = (char *)aggregate, .post = post, .owner = runtime}) ==
	               ORN_OK;
}

void bus_local_unserve(void *runtime)
{
	remove_rows(runtime);
}

bool bus_local_request(const char *aggregate, const char *subject, const char *reply, const void *data,
                       size_t len)
{
	row *r = take(false, aggregate);
	if (r == NULL)
		return false;
	natsMsg *msg = NULL;
	bool taken =
	        natsMsg_Create(&msg, subject, reply, data, (int)len) == NATS_OK && r->post(r->owner, msg);
	if (!taken)
		natsMsg_Destroy(msg);
	release(r);
	return taken;
}

orn_rc bus_local_listen(const char *inbox, bus_local_reply_fn *fn, void *closure)
{
	if (inbox == NULL || closure == NULL)
		return ORN_EINVAL;
	return add((row){.inbox = true, .name = (char *)inbox, .reply = fn, .owner = closure});
}

void bus_local_unlisten(void *closure)
{
	remove_rows(closure);
}

bool bus_local_reply(const char *to, const void *data, size_t len)
{
	row *r = take(true, to);
	if (r == NULL)
		return false;
	r->reply(r->owner, to, data, len);
	release(r);
	return true;
}
