/* gw_ratelimit.h — token buckets keyed by string, with bounded memory.
 *
 * Used for failed logins per (account, client address), per address and per
 * account (ADR 006, "Login limits"), and for other per-address budgets. Each key has a bucket of `burst`
 * tokens refilled at `per_second`. Memory holds at most max_keys buckets: when full, the least recently used
 * key is evicted (its history is forgotten, so size max_keys well above the keys active within one refill
 * period). Time is passed in (ms, any monotonic origin) so tests control it. Thread-safe (one mutex). */
#ifndef ORION_GW_RATELIMIT_H
#define ORION_GW_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gw_ratelimit gw_ratelimit;

/* Creates a limiter. per_second > 0, burst >= 1, max_keys >= 1; NULL on bad
 * arguments or allocation failure. */
gw_ratelimit *gw_ratelimit_create(double per_second, double burst, size_t max_keys);
/* Frees the limiter. NULL is accepted. */
void gw_ratelimit_destroy(gw_ratelimit *rl);

/* Takes one token from key's bucket at now_ms. Returns true if allowed.
 * When refused and retry_after_ms is not NULL, it receives the wait until a
 * token is available (>= 1). Keys longer than 256 bytes are shortened to a
 * prefix plus a hash. An allocation failure refuses (fails closed). */
bool gw_ratelimit_take(gw_ratelimit *rl, const char *key, int64_t now_ms, int64_t *retry_after_ms);

/* Gives one token back to key's bucket (never above burst): for an attempt
 * that was taken before its outcome was known and turned out not to count
 * (a successful login). A key without a bucket is left alone. */
void gw_ratelimit_refund(gw_ratelimit *rl, const char *key);

/* True if key has a bucket (it was taken from and not evicted since); marks
 * it recently used. Lets a limiter double as a bounded set of keys seen. */
bool gw_ratelimit_tracked(gw_ratelimit *rl, const char *key);

/* Number of keys currently tracked. */
size_t gw_ratelimit_size(gw_ratelimit *rl);

#endif
