/* gw_password.c — Argon2id hashing on a bounded worker pool. */
#include "gw_password.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_inbox.h"

typedef enum job_kind { JOB_HASH, JOB_VERIFY } job_kind;

typedef struct job {
	struct job *next;
	job_kind kind;
	char *password; /* wiped before free */
	char hash[GW_PASSWORD_HASH_MAX];
	orn_rc rc;
	bool match;
	gw_password_done *done;
	void *arg;
} job;

struct gw_password_pool {
	gw_password_options options;
	gw_inbox *inbox;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	job *head, *tail;
	size_t queued;
	bool stopping;
	pthread_t *threads;
	unsigned started;
};

void gw_password_options_init(gw_password_options *o)
{
	o->workers = 2;
	o->queue_max = 64;
	o->opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
	o->memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
}

orn_rc gw_password_hash(const gw_password_options *o, const char *password, char hash[GW_PASSWORD_HASH_MAX])
{
	gw_password_options defaults;
	size_t len = strnlen(password, GW_PASSWORD_MAX + 1);
	if (len > GW_PASSWORD_MAX)
		return ORN_EINVAL;
	if (!o) {
		gw_password_options_init(&defaults);
		o = &defaults;
	}
	if (sodium_init() < 0)
		return ORN_EINTERNAL;
	if (crypto_pwhash_str(hash, password, len, o->opslimit, o->memlimit) != 0)
		return ORN_ENOMEM;
	return ORN_OK;
}

orn_rc gw_password_verify(const char *hash, const char *password, bool *match)
{
	size_t len = strnlen(password, GW_PASSWORD_MAX + 1);
	*match = false;
	if (len > GW_PASSWORD_MAX)
		return ORN_EINVAL;
	if (sodium_init() < 0)
		return ORN_EINTERNAL;
	if (strnlen(hash, GW_PASSWORD_HASH_MAX) < GW_PASSWORD_HASH_MAX)
		*match = crypto_pwhash_str_verify(hash, password, len) == 0;
	return ORN_OK;
}

static void job_free(job *j)
{
	if (!j)
		return;
	if (j->password) {
		sodium_memzero(j->password, strlen(j->password));
		free(j->password);
	}
	free(j);
}

/* Runs on the loop thread (run) or at inbox destruction (!run): either way
 * the caller hears back exactly once, so it can free what it holds. */
static void job_deliver(void *arg, bool run)
{
	job *j = arg;
	if (run)
		j->done(j->rc, j->kind == JOB_HASH && j->rc == ORN_OK ? j->hash : NULL, j->match, j->arg);
	else
		j->done(ORN_EUNAVAILABLE, NULL, false, j->arg);
	job_free(j);
}

static void job_run(gw_password_pool *pool, job *j)
{
	if (j->kind == JOB_HASH)
		j->rc = gw_password_hash(&pool->options, j->password, j->hash);
	else
		j->rc = gw_password_verify(j->hash, j->password, &j->match);
	sodium_memzero(j->password, strlen(j->password));
}

static void *worker_main(void *arg)
{
	gw_password_pool *pool = arg;
	for (;;) {
		pthread_mutex_lock(&pool->lock);
		while (!pool->head && !pool->stopping)
			pthread_cond_wait(&pool->wake, &pool->lock);
		if (pool->stopping) {
			pthread_mutex_unlock(&pool->lock);
			return NULL;
		}
		job *j = pool->head;
		pool->head = j->next;
		if (!pool->head)
			pool->tail = NULL;
		pool->queued--;
		pthread_mutex_unlock(&pool->lock);
		job_run(pool, j);
		if (gw_inbox_post(pool->inbox, job_deliver, j) != ORN_OK)
			job_free(j); /* cannot deliver; the caller's deadline answers */
	}
}

gw_password_pool *gw_password_pool_create(struct event_base *base, const gw_password_options *o)
{
	gw_password_pool *pool = calloc(1, sizeof(*pool));
	if (!pool || sodium_init() < 0) {
		free(pool);
		return NULL;
	}
	if (o)
		pool->options = *o;
	else
		gw_password_options_init(&pool->options);
	if (pool->options.workers == 0)
		pool->options.workers = 1;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->wake, NULL);
	pool->inbox = gw_inbox_create(base);
	pool->threads = calloc(pool->options.workers, sizeof(*pool->threads));
	if (!pool->inbox || !pool->threads)
		goto fail;
	for (; pool->started < pool->options.workers; pool->started++)
		if (pthread_create(&pool->threads[pool->started], NULL, worker_main, pool) != 0)
			goto fail;
	return pool;
fail:
	gw_password_pool_destroy(pool);
	return NULL;
}

void gw_password_pool_destroy(gw_password_pool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->started; i++)
		pthread_join(pool->threads[i], NULL);
	for (job *j = pool->head; j;) { /* never started: answered as unavailable */
		job *next = j->next;
		j->done(ORN_EUNAVAILABLE, NULL, false, j->arg);
		job_free(j);
		j = next;
	}
	gw_inbox_destroy(pool->inbox); /* finished but undelivered: job_deliver(!run) */
	pthread_cond_destroy(&pool->wake);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool);
}

static orn_rc enqueue(gw_password_pool *pool, job_kind kind, const char *hash, const char *password,
                      gw_password_done *done, void *arg)
{
	if (strnlen(password, GW_PASSWORD_MAX + 1) > GW_PASSWORD_MAX)
		return ORN_EINVAL;
	job *j = calloc(1, sizeof(*j));
	if (!j)
		return ORN_ENOMEM;
	j->kind = kind;
	j->done = done;
	j->arg = arg;
	j->password = strdup(password);
	if (!j->password) {
		job_free(j);
		return ORN_ENOMEM;
	}
	if (hash)
		snprintf(j->hash, sizeof(j->hash), "%s", hash);
	pthread_mutex_lock(&pool->lock);
	if (pool->queued >= pool->options.queue_max || pool->stopping) {
		pthread_mutex_unlock(&pool->lock);
		job_free(j);
		return ORN_EUNAVAILABLE;
	}
	if (pool->tail)
		pool->tail->next = j;
	else
		pool->head = j;
	pool->tail = j;
	pool->queued++;
	pthread_cond_signal(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	return ORN_OK;
}

orn_rc gw_password_hash_async(gw_password_pool *pool, const char *password, gw_password_done *done, void *arg)
{
	return enqueue(pool, JOB_HASH, NULL, password, done, arg);
}

orn_rc gw_password_verify_async(gw_password_pool *pool, const char *hash, const char *password,
                                gw_password_done *done, void *arg)
{
	return enqueue(pool, JOB_VERIFY, hash, password, done, arg);
}
