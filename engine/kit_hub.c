/* kit_hub.c — what the side-effect roles of one process share (see kit.h):
 * the instance id, the fold caches (kit_fold.c), and one follower per subject
 * filter whose events go to every listener (the sweepers).
 *
 * A follower lives from its first listener to its last. Its follow may end
 * before (its connection closed: a crash of NATS, a stop with NATS gone) or
 * after the last listener leaves: whichever of the two comes second frees the
 * follower (the follow's done callback may run on a client thread after the
 * hub is gone: it touches only the follower). */
#include "kit-internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct follower follower;

struct kit_listener {
	follower *f;
	es_event_fn fn;
	void *closure;
	kit_listener *next;
};

struct follower {
	kit_hub *hub;
	follower *next; /* in the hub's list, while listened to */
	char *filter;
	es_follow *follow;    /* NULL while it waits for kit_hub_start */
	int64_t since_ms;     /* the earliest any listener asked for */
	pthread_mutex_t lock; /* the listeners, against the delivery thread; closed and left */
	kit_listener *listeners;
	bool closed; /* the follow's done was called */
	bool left;   /* its last listener left */
};

struct kit_hub {
	es_store *store;
	char instance[KIT_INSTANCE_MAX];
	pthread_mutex_t lock; /* followers and caches lists */
	follower *followers;
	bool gathering;     /* new followers wait for kit_hub_start */
	kit_cache **caches; /* one per kind met, in caches_count slots */
	const act_kind **cache_kinds;
	size_t caches_count;
};

orn_rc kit_hub_create(es_store *store, kit_hub **out)
{
	unsigned char random[8];
	kit_hub *hub;
	*out = NULL;
	if (store == NULL)
		return ORN_EINVAL;
	if (sodium_init() < 0 || (hub = calloc(1, sizeof *hub)) == NULL)
		return ORN_ENOMEM;
	hub->store = store;
	randombytes_buf(random, sizeof random);
	hub->instance[0] = 'i';
	sodium_bin2hex(hub->instance + 1, sizeof hub->instance - 1, random, sizeof random);
	pthread_mutex_init(&hub->lock, NULL);
	*out = hub;
	return ORN_OK;
}

void kit_hub_destroy(kit_hub *hub)
{
	if (hub == NULL)
		return;
	if (hub->followers != NULL)
		log_error("kit hub destroyed while followed: a consumer was not stopped");
	for (size_t i = 0; i < hub->caches_count; i++)
		kit_cache_destroy(hub->caches[i]);
	free(hub->caches);
	free(hub->cache_kinds);
	pthread_mutex_destroy(&hub->lock);
	free(hub);
}

const char *kit_hub_instance(const kit_hub *hub)
{
	return hub->instance;
}

size_t kit_hub_followers(kit_hub *hub)
{
	size_t n = 0;
	pthread_mutex_lock(&hub->lock);
	for (follower *f = hub->followers; f != NULL; f = f->next)
		n++;
	pthread_mutex_unlock(&hub->lock);
	return n;
}

es_store *kit_hub_store(kit_hub *hub)
{
	return hub->store;
}

/* ---- followers ---- */

static void follower_free(follower *f)
{
	pthread_mutex_destroy(&f->lock);
	free(f->filter);
	free(f);
}

/* The hub's fold cache of subject's kind ("<prefix>.<aggregate>.<id>") if
 * one was made, and the id in subject; NULL if none. */
static kit_cache *cache_of(kit_hub *hub, const char *subject, const char **id)
{
	static const size_t prefix = sizeof ES_EVT_PREFIX; /* with its dot */
	const char *dot = strlen(subject) > prefix ? strchr(subject + prefix, '.') : NULL;
	kit_cache *cache = NULL;
	if (dot == NULL)
		return NULL;
	size_t len = (size_t)(dot - (subject + prefix));
	pthread_mutex_lock(&hub->lock);
	for (size_t i = 0; i < hub->caches_count && cache == NULL; i++) {
		const char *aggregate = hub->cache_kinds[i]->aggregate;
		if (strlen(aggregate) == len && memcmp(aggregate, subject + prefix, len) == 0)
			cache = hub->caches[i];
	}
	pthread_mutex_unlock(&hub->lock);
	*id = dot + 1;
	return cache;
}

/* The follow's delivery: the fold cache of its kind, then the events of a
 * valid commit to every listener, in turn. */
static orn_rc on_commit(void *closure, const es_commit *c)
{
	follower *f = closure;
	const char *id = NULL;
	kit_cache *cache = cache_of(f->hub, c->subject, &id);
	if (cache != NULL)
		kit_cache_follow(cache, id, c);
	if (!c->valid)
		return ORN_OK;
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < c->count; i++)
		for (kit_listener *l = f->listeners; l != NULL; l = l->next)
			(void)l->fn(l->closure, c->seq, c->subject, &c->events[i]);
	pthread_mutex_unlock(&f->lock);
	return ORN_OK;
}

static void on_done(void *closure)
{
	follower *f = closure;
	pthread_mutex_lock(&f->lock);
	f->closed = true;
	bool free_now = f->left;
	pthread_mutex_unlock(&f->lock);
	if (free_now)
		follower_free(f);
}

/* Starts f's follow from the earliest time its listeners asked for (hub's lock held). */
static orn_rc start_following(kit_hub *hub, follower *f)
{
	orn_rc rc = es_follow_since(hub->store, f->filter, f->since_ms, on_commit, on_done, f, &f->follow);
	if (rc != ORN_OK) {
		f->follow = NULL;
		log_warn("kit cannot follow", "filter", f->filter, "error", orn_rc_name(rc));
	}
	return rc;
}

orn_rc kit_hub_listen(kit_hub *hub, const char *filter, int64_t since_ms, es_event_fn fn, void *closure,
                      kit_listener **out)
{
	kit_listener *l = calloc(1, sizeof *l);
	follower *f;
	orn_rc rc = ORN_OK;
	*out = NULL;
	if (l == NULL)
		return ORN_ENOMEM;
	l->fn = fn;
	l->closure = closure;
	pthread_mutex_lock(&hub->lock);
	/* Only a follower that has not started is shared: one already running
	 * went past the history this listener asks for. */
	for (f = hub->followers; f != NULL && (f->follow != NULL || strcmp(f->filter, filter) != 0);
	     f = f->next)
		;
	if (f == NULL) {
		if ((f = calloc(1, sizeof *f)) == NULL || (f->filter = strdup(filter)) == NULL) {
			free(f);
			rc = ORN_ENOMEM;
			goto done;
		}
		pthread_mutex_init(&f->lock, NULL);
		f->hub = hub;
		f->since_ms = since_ms;
		f->next = hub->followers;
		hub->followers = f;
	}
	if (since_ms < f->since_ms)
		f->since_ms = since_ms;
	/* listening before the follow starts: nothing it delivers is missed */
	l->f = f;
	pthread_mutex_lock(&f->lock);
	l->next = f->listeners;
	f->listeners = l;
	pthread_mutex_unlock(&f->lock);
	if (!hub->gathering && (rc = start_following(hub, f)) != ORN_OK) {
		pthread_mutex_unlock(&hub->lock);
		kit_hub_unlisten(hub, l);
		return rc;
	}
done:
	pthread_mutex_unlock(&hub->lock);
	if (rc != ORN_OK) {
		free(l);
		return rc;
	}
	*out = l;
	return ORN_OK;
}

void kit_hub_gather(kit_hub *hub)
{
	pthread_mutex_lock(&hub->lock);
	hub->gathering = true;
	pthread_mutex_unlock(&hub->lock);
}

orn_rc kit_hub_start(kit_hub *hub)
{
	orn_rc rc = ORN_OK;
	pthread_mutex_lock(&hub->lock);
	hub->gathering = false;
	for (follower *f = hub->followers; f != NULL && rc == ORN_OK; f = f->next)
		if (f->follow == NULL)
			rc = start_following(hub, f);
	pthread_mutex_unlock(&hub->lock);
	return rc;
}

void kit_hub_unlisten(kit_hub *hub, kit_listener *l)
{
	if (l == NULL)
		return;
	follower *f = l->f;
	pthread_mutex_lock(&hub->lock);
	pthread_mutex_lock(&f->lock);
	for (kit_listener **at = &f->listeners; *at != NULL; at = &(*at)->next)
		if (*at == l) {
			*at = l->next;
			break;
		}
	bool last = f->listeners == NULL;
	pthread_mutex_unlock(&f->lock);
	if (last)
		for (follower **at = &hub->followers; *at != NULL; at = &(*at)->next)
			if (*at == f) {
				*at = f->next;
				break;
			}
	pthread_mutex_unlock(&hub->lock);
	free(l);
	if (!last)
		return;
	es_follow *follow = f->follow;
	pthread_mutex_lock(&f->lock);
	f->left = true;
	bool closed = f->closed;
	pthread_mutex_unlock(&f->lock);
	es_follow_stop(
	        follow); /* its done (now, or later on a client thread) frees f unless closed already */
	if (follow == NULL || closed)
		follower_free(f);
}

/* ---- caches ---- */

kit_cache *kit_hub_cache(kit_hub *hub, const act_kind *kind)
{
	kit_cache *cache = NULL;
	if (kind == NULL || !kind->copyable)
		return NULL;
	pthread_mutex_lock(&hub->lock);
	for (size_t i = 0; i < hub->caches_count && cache == NULL; i++)
		if (hub->cache_kinds[i] == kind)
			cache = hub->caches[i];
	if (cache == NULL) {
		kit_cache **caches = realloc(hub->caches, (hub->caches_count + 1) * sizeof *caches);
		const act_kind **kinds =
		        caches != NULL ? realloc(hub->cache_kinds, (hub->caches_count + 1) * sizeof *kinds)
		                       : NULL;
		if (caches != NULL)
			hub->caches = caches;
		if (kinds != NULL)
			hub->cache_kinds = kinds;
		if (caches != NULL && kinds != NULL && (cache = kit_cache_create(kind)) != NULL) {
			hub->caches[hub->caches_count] = cache;
			hub->cache_kinds[hub->caches_count++] = kind;
		}
	}
	pthread_mutex_unlock(&hub->lock);
	return cache;
}
