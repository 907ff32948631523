/* gw_ratelimit.c — LRU-bounded token buckets (see gw_ratelimit.h). */
#include "gw_ratelimit.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"

#define KEY_MAX 256

typedef struct bucket {
	struct bucket *prev, *next; /* LRU list, most recent first */
	char *key;
	double tokens;
	int64_t last_ms;
} bucket;

struct gw_ratelimit {
	pthread_mutex_t lock;
	double per_ms, burst;
	size_t max_keys;
	hmap *index;
	bucket *newest, *oldest;
};

gw_ratelimit *gw_ratelimit_create(double per_second, double burst, size_t max_keys)
{
	if (!(per_second > 0) || !(burst >= 1) || max_keys == 0)
		return NULL;
	gw_ratelimit *rl = calloc(1, sizeof(*rl));
	if (!rl)
		return NULL;
	rl->index = hmap_create();
	if (!rl->index) {
		free(rl);
		return NULL;
	}
	pthread_mutex_init(&rl->lock, NULL);
	rl->per_ms = per_second / 1000.0;
	rl->burst = burst;
	rl->max_keys = max_keys;
	return rl;
}

void gw_ratelimit_destroy(gw_ratelimit *rl)
{
	if (!rl)
		return;
	for (bucket *b = rl->newest; b;) {
		bucket *next = b->next;
		free(b->key);
		free(b);
		b = next;
	}
	hmap_destroy(rl->index);
	pthread_mutex_destroy(&rl->lock);
	free(rl);
}

static void unlink_bucket(gw_ratelimit *rl, bucket *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		rl->newest = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		rl->oldest = b->prev;
	b->prev = b->next = NULL;
}

static void push_newest(gw_ratelimit *rl, bucket *b)
{
	b->prev = NULL;
	b->next = rl->newest;
	if (rl->newest)
		rl->newest->prev = b;
	rl->newest = b;
	if (!rl->oldest)
		rl->oldest = b;
}

static void evict_oldest(gw_ratelimit *rl)
{
	bucket *b = rl->oldest;
	unlink_bucket(rl, b);
	hmap_remove(rl->index, b->key);
	free(b->key);
	free(b);
}

static bucket *add_bucket(gw_ratelimit *rl, const char *key, int64_t now_ms)
{
	if (hmap_count(rl->index) >= rl->max_keys)
		evict_oldest(rl);
	bucket *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->key = strdup(key);
	if (!b->key || hmap_put(rl->index, key, b) != ORN_OK) {
		free(b->key);
		free(b);
		return NULL;
	}
	b->tokens = rl->burst;
	b->last_ms = now_ms;
	push_newest(rl, b);
	return b;
}

/* key, or its prefix plus a hash in buffer when it is longer than KEY_MAX. */
static const char *bounded_key(const char *key, char buffer[KEY_MAX + 24])
{
	if (strlen(key) <= KEY_MAX)
		return key;
	snprintf(buffer, KEY_MAX + 24, "%.*s#%016" PRIx64, KEY_MAX - 20, key, hmap_hash(key));
	return buffer;
}

bool gw_ratelimit_take(gw_ratelimit *rl, const char *key, int64_t now_ms, int64_t *retry_after_ms)
{
	char short_key[KEY_MAX + 24];
	bool allowed = false;
	key = bounded_key(key, short_key);
	pthread_mutex_lock(&rl->lock);
	bucket *b = hmap_get(rl->index, key);
	if (!b) {
		b = add_bucket(rl, key, now_ms);
		if (!b)
			goto done;
	} else {
		if (now_ms > b->last_ms) {
			b->tokens = fmin(rl->burst, b->tokens + (double)(now_ms - b->last_ms) * rl->per_ms);
			b->last_ms = now_ms;
		}
		unlink_bucket(rl, b);
		push_newest(rl, b);
	}
	if (b->tokens >= 1) {
		b->tokens -= 1;
		allowed = true;
	}
done:
	if (!allowed && retry_after_ms) {
		double missing = b ? 1 - b->tokens : 1;
		int64_t wait = (int64_t)ceil(missing / rl->per_ms);
		*retry_after_ms = wait < 1 ? 1 : wait;
	}
	pthread_mutex_unlock(&rl->lock);
	return allowed;
}

void gw_ratelimit_refund(gw_ratelimit *rl, const char *key)
{
	char short_key[KEY_MAX + 24];
	key = bounded_key(key, short_key);
	pthread_mutex_lock(&rl->lock);
	bucket *b = hmap_get(rl->index, key);
	if (b != NULL)
		b->tokens = fmin(rl->burst, b->tokens + 1);
	pthread_mutex_unlock(&rl->lock);
}

bool gw_ratelimit_tracked(gw_ratelimit *rl, const char *key)
{
	char short_key[KEY_MAX + 24];
	key = bounded_key(key, short_key);
	pthread_mutex_lock(&rl->lock);
	bucket *b = hmap_get(rl->index, key);
	if (b != NULL) {
		unlink_bucket(rl, b);
		push_newest(rl, b);
	}
	pthread_mutex_unlock(&rl->lock);
	return b != NULL;
}

size_t gw_ratelimit_size(gw_ratelimit *rl)
{
	pthread_mutex_lock(&rl->lock);
	size_t n = hmap_count(rl->index);
	pthread_mutex_unlock(&rl->lock);
	return n;
}
