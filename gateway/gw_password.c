/* gw_password.c — Argon2id hashing on a bounded worker pool, and the
 * quality check of new passwords (libpwquality). */
#include "gw_password.h"

#include <pthread.h>
#include <pwquality.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw_work.h"

typedef enum job_kind { JOB_HASH, JOB_VERIFY } job_kind;

typedef struct job {
	const gw_password_options *options;
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
	gw_work *work;
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
	if (j->password) {
		sodium_memzero(j->password, strlen(j->password));
		free(j->password);
	}
	free(j);
}

/* On the loop thread (run) or at the pool's destruction (!run): either way
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

/* On a worker thread. */
static void job_run(void *arg)
{
	job *j = arg;
	if (j->kind == JOB_HASH)
		j->rc = gw_password_hash(j->options, j->password, j->hash);
	else
		j->rc = gw_password_verify(j->hash, j->password, &j->match);
	sodium_memzero(j->password, strlen(j->password));
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
	if ((pool->work = gw_work_create(base, pool->options.workers, pool->options.queue_max)) == NULL) {
		free(pool);
		return NULL;
	}
	return pool;
}

void gw_password_pool_destroy(gw_password_pool *pool)
{
	if (!pool)
		return;
	gw_work_destroy(pool->work); /* queued or undelivered: job_deliver(!run) */
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
	j->options = &pool->options;
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
	orn_rc rc = gw_work_queue(pool->work, job_run, job_deliver, j);
	if (rc != ORN_OK)
		job_free(j);
	return rc;
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

/* ---- the quality of a new password ---------------------------------------- */

#define USER_PART_MAX 64 /* bytes of an email local part (RFC 5321) */

/* libpwquality's settings: its defaults and /etc/security/pwquality.conf,
 * read once (NULL if that failed). */
static pwquality_settings_t *quality_settings;

static void quality_load(void)
{
	void *aux = NULL;
	pwquality_settings_t *settings = pwquality_default_settings();
	if (settings != NULL && pwquality_read_config(settings, NULL, &aux) != 0) {
		/* no configuration file: the library's defaults stand */
	}
	quality_settings = settings;
}

/* True if needle (its first len bytes, at least 3) occurs in haystack, ignoring ASCII case. */
static bool contains_folded(const char *haystack, const char *needle, size_t len)
{
	if (len < 3)
		return false;
	for (size_t n = strlen(haystack); n >= len; n--, haystack++)
		if (strncasecmp(haystack, needle, len) == 0)
			return true;
	return false;
}

orn_rc gw_password_quality(const char *password, const char *email, char *message, size_t cap)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	char user[USER_PART_MAX + 1];
	void *aux = NULL;
	const char *at = strchr(email, '@');
	size_t local_len = at != NULL ? (size_t)(at - email) : strlen(email);
	const char *domain = at != NULL ? at + 1 : "";
	size_t label_len = strcspn(domain, ".");
	pthread_once(&once, quality_load);
	if (quality_settings == NULL)
		return ORN_ENOMEM;
	if (contains_folded(password, email, local_len) || contains_folded(password, domain, label_len)) {
		snprintf(message, cap, "must not contain the email address or its parts");
		return ORN_EINVAL;
	}
	snprintf(user, sizeof user, "%.*s", (int)(local_len < USER_PART_MAX ? local_len : USER_PART_MAX),
	         email);
	int score = pwquality_check(quality_settings, password, NULL, user, &aux);
	if (score >= 0)
		return ORN_OK;
	char reason[PWQ_MAX_ERROR_MESSAGE_LEN];
	const char *text = pwquality_strerror(reason, sizeof reason, score, aux);
	if (score == PWQ_ERROR_CRACKLIB_CHECK && aux == NULL)
		return ORN_EINTERNAL; /* no dictionary: a setup fault, not the password's */
	snprintf(message, cap, "is too weak: %s", text != NULL ? text : "it fails the quality check");
	return ORN_EINVAL;
}
