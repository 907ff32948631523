/* gw_metrics.h — the gateway's names for the engine's Prometheus registry
 * (engine/metrics.h), plus the one helper that knows HTTP.
 *
 * The registry moved to the engine so that every role records into one
 * process-wide registry (orn_metrics_global); these aliases keep the
 * gateway's call sites unchanged. A gw_metrics is an orn_metrics. */
#ifndef ORION_GW_METRICS_H
#define ORION_GW_METRICS_H

#include <stddef.h>

#include "metrics.h"
#include "orn.h"

#define GW_METRICS_CONTENT_TYPE ORN_METRICS_CONTENT_TYPE
#define GW_METRICS_MAX_BUCKETS  ORN_METRICS_MAX_BUCKETS
#define GW_METRICS_MAX_LABELS   ORN_METRICS_MAX_LABELS

typedef orn_metrics gw_metrics;

#define gw_metrics_create      orn_metrics_create
#define gw_metrics_destroy     orn_metrics_destroy
#define gw_metrics_counter_add orn_metrics_counter_add
#define gw_metrics_gauge_set   orn_metrics_gauge_set
#define gw_metrics_observe     orn_metrics_observe
#define gw_metrics_render      orn_metrics_render

/* Records one HTTP request: orion_http_requests_total{method, route, code}
 * (code is the status class "2xx".."5xx") and
 * orion_http_request_duration_seconds{method, route}. */
void gw_metrics_observe_request(gw_metrics *m, const char *method, const char *route, int status,
                                double seconds);

#endif
