/* gw_metrics.h — counters, gauges and histograms rendered in the Prometheus text
 * exposition format 0.0.4.
 *
 * A metric family is named on first use (name, help, type); a series is a
 * family plus a label set given as NULL-terminated "key", "value" pairs.
 * Label values are escaped (\\, \", \n) when rendered, so any string may be
 * used — but keep cardinality bounded: label with route patterns, never raw
 * paths. All functions are thread-safe (one mutex). */
#ifndef ORION_GW_METRICS_H
#define ORION_GW_METRICS_H

#include <stddef.h>

#include "orn.h"

#define GW_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define GW_METRICS_MAX_BUCKETS  16
#define GW_METRICS_MAX_LABELS   4

typedef struct gw_metrics gw_metrics;

/* Creates an empty registry; NULL on allocation failure. */
gw_metrics *gw_metrics_create(void);
/* Frees the registry. NULL is accepted. */
void gw_metrics_destroy(gw_metrics *m);

/* Adds value (>= 0) to the counter series name{labels}. labels: NULL or
 * "k1", "v1", ..., NULL (at most GW_METRICS_MAX_LABELS pairs). ORN_EINVAL if
 * name is already a histogram, has a bad name, or the labels are malformed;
 * ORN_ENOMEM. */
orn_rc gw_metrics_counter_add(gw_metrics *m, const char *name, const char *help, const char *const *labels,
                              double value);

/* Sets the gauge series name{labels} to value (any finite number). Errors as
 * for counters (a name already used by another type is ORN_EINVAL). */
orn_rc gw_metrics_gauge_set(gw_metrics *m, const char *name, const char *help, const char *const *labels,
                            double value);

/* Records one observation in the histogram series name{labels}. buckets:
 * strictly increasing upper bounds (count <= GW_METRICS_MAX_BUCKETS; +Inf is
 * implicit), fixed by the family's first use. Errors as for counters. */
orn_rc gw_metrics_observe(gw_metrics *m, const char *name, const char *help, const double *buckets,
                          size_t bucket_count, const char *const *labels, double value);

/* Records one HTTP request: orion_http_requests_total{method, route, code}
 * (code is the status class "2xx".."5xx") and
 * orion_http_request_duration_seconds{method, route}. */
void gw_metrics_observe_request(gw_metrics *m, const char *method, const char *route, int status,
                                double seconds);

/* Renders every family. Returns a malloc'd NUL-terminated text (the caller
 * frees it) and its length in *len (may be NULL); NULL on allocation failure. */
char *gw_metrics_render(gw_metrics *m, size_t *len);

#endif
