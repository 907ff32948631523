/* gw_work.c — a bounded pool of threads whose results come back on the
 * event loop (see gw_work.h). */
#include "gw_work.h"

#include <pthread.h>
#include <stdlib.h>

#include "gw_inbox.h"

typedef struct job {
	struct job *next;
	gw_work_fn *fn;
	gw_work_done *done;
	void *arg;
} job;

struct gw_work {
	size_t queue_max;
	gw_inbox *inbox;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	job *head, *tail;
	size_t queued;
	bool stopping;
	pthread_t *threads;
	unsigned count, started;
};

/* On the loop thread (run), or at the inbox's destruction (!run). */
static void job_deliver(void *arg, bool run)
{
	job *j = arg;
	j->done(j->arg, run);
	free(j);
}

static void *worker_main(void *arg)
{
	gw_work *w = arg;
	for (;;) {
		pthread_mutex_lock(&w->lock);
		while (w->head == NULL && !w->stopping)
			pthread_cond_wait(&w->wake, &w->lock);
		if (w->stopping) {
			pthread_mutex_unlock(&w->lock);
			return NULL;
		}
		job *j = w->head;
		w->head = j->next;
		if (w->head == NULL)
			w->tail = NULL;
		w->queued--;
		pthread_mutex_unlock(&w->lock);
		j->fn(j->arg);
		if (gw_inbox_post(w->inbox, job_deliver, j) != ORN_OK) {
			j->done(j->arg, false); /* cannot deliver; the caller's deadline answers */
			free(j);
		}
	}
}

gw_work *gw_work_create(struct event_base *base, unsigned workers, size_t queue_max)
{
	gw_work *w = calloc(1, sizeof *w);
	if (w == NULL)
		return NULL;
	w->queue_max = queue_max;
	w->count = workers > 0 ? workers : 1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	w->inbox = gw_inbox_create(base);
	w->threads = calloc(w->count, sizeof *w->threads);
	if (w->inbox == NULL || w->threads == NULL)
		goto fail;
	for (; w->started < w->count; w->started++)
		if (pthread_create(&w->threads[w->started], NULL, worker_main, w) != 0)
			goto fail;
	return w;
fail:
	gw_work_destroy(w);
	return NULL;
}

void gw_work_destroy(gw_work *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_broadcast(&w->wake);
	pthread_mutex_unlock(&w->lock);
	for (unsigned i = 0; i < w->started; i++)
		pthread_join(w->threads[i], NULL);
	for (job *j = w->head; j != NULL;) { /* never started */
		job *next = j->next;
		j->done(j->arg, false);
		free(j);
		j = next;
	}
	gw_inbox_destroy(w->inbox); /* finished but undelivered: job_deliver(!run) */
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	free(w->threads);
	free(w);
}

orn_rc gw_work_queue(gw_work *w, gw_work_fn *fn, gw_work_done *done, void *arg)
{
	job *j = calloc(1, sizeof *j);
	if (j == NULL)
		return ORN_ENOMEM;
	*j = (job){.fn = fn, .done = done, .arg = arg};
	pthread_mutex_lock(&w->lock);
	if (w->queued >= w->queue_max || w->stopping) {
		pthread_mutex_unlock(&w->lock);
		free(j);
		return ORN_EUNAVAILABLE;
	}
	if (w->tail != NULL)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	w->queued++;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	return ORN_OK;
}
