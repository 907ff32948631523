/* gw_metrics.c — the HTTP request metrics (see gw_metrics.h); the registry
 * itself is engine/metrics.c. */
#include "gw_metrics.h"

static const double request_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

void gw_metrics_observe_request(gw_metrics *m, const char *method, const char *route, int status,
                                double seconds)
{
	static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
	int class_index = status / 100 - 1;
	const char *code = class_index >= 0 && class_index < 5 ? classes[class_index] : "5xx";
	const char *const counter_labels[] = {"method", method, "route", route, "code", code, NULL};
	const char *const duration_labels[] = {"method", method, "route", route, NULL};
	orn_metrics_counter_add(m, "orion_http_requests_total", "HTTP requests answered, by status class.",
	                        counter_labels, 1);
	orn_metrics_observe(m, "orion_http_request_duration_seconds", "Time from request to response.",
	                    request_buckets, ORN_ARRAY_LEN(request_buckets), duration_labels, seconds);
}
