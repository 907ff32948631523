/* gw_inbox.c — a thread-safe closure queue drained on the event loop. */
#include "gw_inbox.h"

#include <pthread.h>
#include <stdlib.h>

#include <event2/event.h>
#include <event2/thread.h>

typedef struct inbox_item {
	struct inbox_item *next;
	gw_inbox_fn *fn;
	void *arg;
} inbox_item;

struct gw_inbox {
	pthread_mutex_t lock;
	inbox_item *head, *tail;
	struct event *wakeup;
};

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;

static void threads_init_once(void)
{
	evthread_use_pthreads();
}

void gw_threads_init(void)
{
	pthread_once(&threads_once, threads_init_once);
}

struct event_base *gw_event_base_new(void)
{
	gw_threads_init();
	return event_base_new();
}

/* Takes the whole list under the lock, then runs it without the lock so a
 * closure may post again. */
static void inbox_drain(evutil_socket_t fd, short what, void *arg)
{
	gw_inbox *inbox = arg;
	pthread_mutex_lock(&inbox->lock);
	inbox_item *item = inbox->head;
	inbox->head = inbox->tail = NULL;
	pthread_mutex_unlock(&inbox->lock);
	while (item) {
		inbox_item *next = item->next;
		item->fn(item->arg, true);
		free(item);
		item = next;
	}
}

gw_inbox *gw_inbox_create(struct event_base *base)
{
	gw_inbox *inbox = calloc(1, sizeof(*inbox));
	if (!inbox)
		return NULL;
	pthread_mutex_init(&inbox->lock, NULL);
	inbox->wakeup = event_new(base, -1, 0, inbox_drain, inbox);
	if (!inbox->wakeup) {
		pthread_mutex_destroy(&inbox->lock);
		free(inbox);
		return NULL;
	}
	return inbox;
}

void gw_inbox_destroy(gw_inbox *inbox)
{
	if (!inbox)
		return;
	event_free(inbox->wakeup);
	inbox_item *item = inbox->head;
	while (item) {
		inbox_item *next = item->next;
		item->fn(item->arg, false);
		free(item);
		item = next;
	}
	pthread_mutex_destroy(&inbox->lock);
	free(inbox);
}

orn_rc gw_inbox_post(gw_inbox *inbox, gw_inbox_fn *fn, void *arg)
{
	inbox_item *item = malloc(sizeof(*item));
	if (!item)
		return ORN_ENOMEM;
	item->next = NULL;
	item->fn = fn;
	item->arg = arg;
	pthread_mutex_lock(&inbox->lock);
	if (inbox->tail)
		inbox->tail->next = item;
	else
		inbox->head = item;
	inbox->tail = item;
	/* Activating an already active event is a no-op; the drain takes all. */
	event_active(inbox->wakeup, 0, 0);
	pthread_mutex_unlock(&inbox->lock);
	return ORN_OK;
}
