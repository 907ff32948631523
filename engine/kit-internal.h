/* kit-internal.h — what the kit's files share (kit_hub.c, kit_consumer.c,
 * kit_sweep.c, kit_fold.c): the hub's followers, its fold caches, and the
 * sweeper the consumer pairs with. Included by the kit's files only. */
#ifndef ORION_KIT_INTERNAL_H
#define ORION_KIT_INTERNAL_H

#include <pthread.h>

#include "kit.h"

/* ---- the shared follower (kit_hub.c) ----
 * One es_follow per filter per hub, started by its first listener (from
 * since_ms) and stopped when its last listener leaves. Listeners are called
 * on the follow's delivery thread, under the follower's lock: they must be
 * quick (the sweepers only queue). */
typedef struct kit_listener kit_listener;

/* Adds a listener of filter's valid events; starts the follower if none
 * follows filter yet. ORN_ENOMEM, or what es_follow_since returned. */
orn_rc kit_hub_listen(kit_hub *hub, const char *filter, int64_t since_ms, es_event_fn fn, void *closure,
                      kit_listener **out);

/* Removes the listener: fn is not called after this returns. NULL ok. */
void kit_hub_unlisten(kit_hub *hub, kit_listener *l);

/* How many followers the hub runs now (one per filter listened to). */
size_t kit_hub_followers(kit_hub *hub);

/* The store the hub reads through. */
es_store *kit_hub_store(kit_hub *hub);

/* ---- fold caches (kit_fold.c) ---- */

typedef struct kit_cache kit_cache;

/* The hub's cache of kind, created on first use; NULL for a kind whose
 * states cannot be copied byte for byte, or out of memory. */
kit_cache *kit_hub_cache(kit_hub *hub, const act_kind *kind);

/* A new cache of kind's folds (the hub, on first use); NULL if out of memory. */
kit_cache *kit_cache_create(const act_kind *kind);

/* Frees a cache (the hub, at its end). */
void kit_cache_destroy(kit_cache *c);

/* A commit of id the hub's follower met (valid or void, c->before known):
 * extends id's cached fold when it stands at c->before, and starts one from
 * a subject's first commit. A fold read that comes after needs no read for
 * what the follower met (ADR 024, "what one order costs"). */
void kit_cache_follow(kit_cache *cache, const char *id, const es_commit *c);

/* ---- the sweeper (kit_sweep.c; ADR 007 addendum) ----
 * It listens to the hub's follower of filter and queues each commit whose
 * events wants keeps, due after_ms after its first event's time; with
 * newest_only, a commit is dropped once a newer one of its subject is queued.
 * When due, fn is called on the sweeper's own thread; KIT_RETRY calls it
 * again later with a backoff (retry_first_ms doubling up to retry_max_ms).
 * At most KIT_SWEEP_QUEUE_MAX commits wait; beyond, new ones are dropped
 * (counted; the first is logged). */
#define KIT_SWEEP_QUEUE_MAX   200000
#define KIT_SWEEP_LOOKBACK_MS 60000

typedef kit_verdict kit_sweep_fn(void *closure, const char *subject, uint64_t seq);

typedef struct kit_sweep_options {
	const char *name;
	const char *filter;
	int64_t after_ms; /* > 0 */
	bool newest_only;
	int64_t retry_first_ms, retry_max_ms;
	bool (*wants)(void *closure, const env_envelope *e); /* NULL: every commit */
	kit_sweep_fn *fn;
	void *closure;
} kit_sweep_options;

typedef struct kit_sweep kit_sweep;

/* Starts listening (from max(2 * after_ms, KIT_SWEEP_LOOKBACK_MS) ago, when
 * it is the filter's first listener) and the sweeper's thread. ORN_EINVAL,
 * ORN_ENOMEM, or what following returned; nothing runs on failure. */
orn_rc kit_sweep_start(kit_hub *hub, const kit_sweep_options *o, kit_sweep **out);

/* Stops listening, waits for a call of fn in progress, joins and frees. NULL ok. */
void kit_sweep_stop(kit_sweep *sw);

/* Commits not queued because the queue was full. */
uint64_t kit_sweep_dropped(const kit_sweep *sw);

#endif
