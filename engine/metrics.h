/* metrics.h — counters, gauges and histograms rendered in the Prometheus text
 * exposition format 0.0.4, and the process-wide registry every role records
 * into (orn_metrics_global): the gateway serves it at GET /metrics, a process
 * without the gateway at ORION_METRICS_ADDR (docs/metrics.md lists the names).
 *
 * A metric family is named on first use (name, help, type); a series is a
 * family plus a label set given as NULL-terminated "key", "value" pairs.
 * Label values are escaped (\\, \", \n) when rendered, so any string may be
 * used — but keep cardinality bounded: label with kinds, steps and route
 * patterns, never ids or raw paths. All functions are thread-safe (one mutex
 * per registry) and accept a NULL registry (recording is then refused with
 * ORN_EINVAL, rendering returns NULL), so a caller need not check that the
 * global registry could be allocated. */
#ifndef ORION_METRICS_H
#define ORION_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "orn.h"

#define ORN_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define ORN_METRICS_MAX_BUCKETS  16
#define ORN_METRICS_MAX_LABELS   4

typedef struct orn_metrics orn_metrics;

/* Creates an empty registry; NULL on allocation failure. */
orn_metrics *orn_metrics_create(void);
/* Frees the registry. NULL and the global registry are accepted (and the
 * global one is left alone: it lives as long as the process). */
void orn_metrics_destroy(orn_metrics *m);

/* The process-wide registry, created on first call; NULL only if that
 * allocation failed. Never free it. */
orn_metrics *orn_metrics_global(void);

/* Seconds elapsed since start_ns (an orn_monotonic_ns reading), >= 0. */
double orn_metrics_seconds_since(int64_t start_ns);

/* Adds value (>= 0) to the counter series name{labels}. labels: NULL or
 * "k1", "v1", ..., NULL (at most ORN_METRICS_MAX_LABELS pairs). ORN_EINVAL if
 * name is already another type, has a bad name, or the labels are malformed;
 * ORN_ENOMEM. */
orn_rc orn_metrics_counter_add(orn_metrics *m, const char *name, const char *help, const char *const *labels,
                               double value);

/* Sets the gauge series name{labels} to value (any finite number). Errors as
 * for counters (a name already used by another type is ORN_EINVAL). */
orn_rc orn_metrics_gauge_set(orn_metrics *m, const char *name, const char *help, const char *const *labels,
                             double value);

/* Records one observation in the histogram series name{labels}. buckets:
 * strictly increasing upper bounds (count <= ORN_METRICS_MAX_BUCKETS; +Inf is
 * implicit), fixed by the family's first use. Errors as for counters. */
orn_rc orn_metrics_observe(orn_metrics *m, const char *name, const char *help, const double *buckets,
                           size_t bucket_count, const char *const *labels, double value);

/* Renders every family. Returns a malloc'd NUL-terminated text (the caller
 * frees it) and its length in *len (may be NULL); NULL on allocation failure. */
char *orn_metrics_render(orn_metrics *m, size_t *len);

#endif
