/* log.c — JSON-lines logging with a per-thread correlation id. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static atomic_int min_level = LOG_INFO;
static _Thread_local char correlation[160];

static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level level)
{
	atomic_store(&min_level, (int)level);
}

bool log_enabled(log_level level)
{
	return (int)level >= atomic_load(&min_level);
}

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
		if (name != NULL && strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

void log_set_correlation(const char *correlation_id)
{
	/* set several times per command on the actors' threads: no snprintf */
	size_t len = correlation_id != NULL ? strnlen(correlation_id, sizeof correlation - 1) : 0;
	memcpy(correlation, correlation_id != NULL ? correlation_id : "", len);
	correlation[len] = '\0';
}

const char *log_correlation(void)
{
	return correlation;
}

int64_t orn_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t orn_monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void orn_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

struct timespec orn_monotonic_deadline(int64_t ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (ms < 0)
		ms = 0;
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	return until;
}

/* Appends s to buf as a JSON string body (without quotes), bounded by cap. */
static size_t append_escaped(char *buf, size_t used, size_t cap, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && used + 7 < cap; p++) {
		switch (*p) {
		case '"':
			used += (size_t)snprintf(buf + used, cap - used, "\\\"");
			break;
		case '\\':
			used += (size_t)snprintf(buf + used, cap - used, "\\\\");
			break;
		case '\n':
			used += (size_t)snprintf(buf + used, cap - used, "\\n");
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				used += (size_t)snprintf(buf + used, cap - used, "\\u%04x", *p);
			else
				buf[used++] = (char)*p;
		}
	}
	return used;
}

static size_t append_raw(char *buf, size_t used, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (used + n >= cap)
		n = cap - used - 1;
	memcpy(buf + used, s, n);
	return used + n;
}

/* Room a field needs beyond its value: the key, quotes, colon, comma. A line
 * too full for that takes no more fields, so a cut line stays valid JSON. */
#define FIELD_RESERVE 80

static size_t append_field(char *buf, size_t used, size_t cap, const char *key, const char *value)
{
	if (cap - used < FIELD_RESERVE + strlen(key))
		return used;
	used = append_raw(buf, used, cap, ",\"");
	used = append_escaped(buf, used, cap, key);
	used = append_raw(buf, used, cap, "\":\"");
	used = append_escaped(buf, used, cap, value ? value : "");
	return append_raw(buf, used, cap, "\"");
}

/* The line's start, {"ts", "level", "msg" and the thread's correlation id,
 * into line (cap bytes, room for "}\n" kept): the bytes used. */
static size_t line_begin(char *line, size_t cap, log_level level, const char *msg)
{
	int64_t now = orn_now_ms();
	time_t secs = (time_t)(now / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t used = (size_t)snprintf(line, cap,
	                               "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\"",
	                               tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                               tm.tm_sec, (int)(now % 1000), level_names[level]);
	used = append_field(line, used, cap, "msg", msg);
	if (correlation[0] != '\0')
		used = append_field(line, used, cap, "correlation_id", correlation);
	return used;
}

/* Ends the line begun in line with used bytes and writes it. */
static void line_end(char *line, size_t used)
{
	line[used++] = '}';
	line[used++] = '\n';
	fwrite(line, 1, used, stderr);
}

void log_write(log_level level, const char *msg, ...)
{
	if ((int)level < atomic_load(&min_level))
		return;
	char line[4096];
	size_t cap = sizeof line - 2; /* room for "}\n" */
	size_t used = line_begin(line, cap, level, msg);
	va_list ap;
	va_start(ap, msg);
	for (;;) {
		const char *key = va_arg(ap, const char *);
		if (key == NULL)
			break;
		const char *value = va_arg(ap, const char *);
		used = append_field(line, used, cap, key, value);
	}
	va_end(ap);
	line_end(line, used);
}

void log_counters(const char *msg, const char *key, const char *value, const char *const *names,
                  const uint64_t *counts, size_t count)
{
	if ((int)LOG_INFO < atomic_load(&min_level))
		return;
	char line[4096], number[24];
	size_t cap = sizeof line - 2; /* room for "}\n" */
	size_t used = append_field(line, line_begin(line, cap, LOG_INFO, msg), cap, key, value);
	for (size_t i = 0; i < count; i++) {
		snprintf(number, sizeof number, "%llu", (unsigned long long)counts[i]);
		used = append_field(line, used, cap, names[i], number);
	}
	line_end(line, used);
}
