/* log.h — structured JSON logs, one object per line on stderr.
 *
 * Every line has "ts" (RFC 3339 UTC, ms), "level", "msg", the calling
 * thread's correlation id when one is set, and optional key/value fields.
 * Values are escaped; never log a card number, CVC, password or token. */
#ifndef ORION_LOG_H
#define ORION_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Sets the minimum level written (default LOG_INFO). */
void log_set_level(log_level level);
/* Whether lines of level are written: a hot path formats a debug line's
 * fields only when they will be. */
bool log_enabled(log_level level);
/* Parses "debug"|"info"|"warn"|"error"; returns -1 if unknown. */
int log_level_parse(const char *name);
/* Sets the correlation id attached to this thread's lines (NULL clears it). */
void log_set_correlation(const char *correlation_id);
const char *log_correlation(void);

/* Writes one line. fields: alternating key, value strings ending with NULL;
 * values are JSON-escaped strings. */
void log_write(log_level level, const char *msg, ...);

/* An info line of what something counted: key and value name it, then each
 * names[i] with counts[i] in decimal (count of them). */
void log_counters(const char *msg, const char *key, const char *value, const char *const *names,
                  const uint64_t *counts, size_t count);

/* log_info("message", "key", "value", ...): the list is NULL-terminated for you. */
#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__, (const char *)0)
#define log_info(...)  log_write(LOG_INFO, __VA_ARGS__, (const char *)0)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__, (const char *)0)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__, (const char *)0)

/* Milliseconds since the Unix epoch (wall clock) and a monotonic clock in ns. */
int64_t orn_now_ms(void);
int64_t orn_monotonic_ns(void);
/* Sleeps ms milliseconds (resumed after a signal). */
void orn_sleep_ms(unsigned ms);
/* The CLOCK_MONOTONIC instant ms milliseconds from now (negative counts as
 * 0), for pthread_cond_timedwait on a condition set to that clock. */
struct timespec orn_monotonic_deadline(int64_t ms);

#endif
