/* test_gw_metrics.c — gateway/gw_metrics.c: Prometheus text format 0.0.4
 * for counters and histograms, label escaping, the HTTP request helper. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "gw_metrics.h"

static gw_metrics *m;

static void setup(void)
{
	m = gw_metrics_create();
	cr_assert_not_null(m);
}

static void teardown(void)
{
	gw_metrics_destroy(m);
}

TestSuite(gw_metrics, .init = setup, .fini = teardown);

static char *render(void)
{
	size_t len = 0;
	char *text = gw_metrics_render(m, &len);
	cr_assert_not_null(text);
	cr_assert_eq(strlen(text), len);
	return text;
}

Test(gw_metrics, counter_format)
{
	const char *const labels[] = {"kind", "login", NULL};
	cr_assert_eq(gw_metrics_counter_add(m, "orion_things_total", "Things.\nDone \\ here", labels, 2),
	             ORN_OK);
	cr_assert_eq(gw_metrics_counter_add(m, "orion_things_total", "ignored", labels, 1.5), ORN_OK);
	cr_assert_eq(gw_metrics_counter_add(m, "orion_plain_total", "Plain.", NULL, 1), ORN_OK);
	char *text = render();
	cr_assert_str_eq(text, "# HELP orion_things_total Things.\\nDone \\\\ here\n"
	                       "# TYPE orion_things_total counter\n"
	                       "orion_things_total{kind=\"login\"} 3.5\n"
	                       "# HELP orion_plain_total Plain.\n"
	                       "# TYPE orion_plain_total counter\n"
	                       "orion_plain_total 1\n");
	free(text);
}

Test(gw_metrics, label_values_are_escaped)
{
	const char *const labels[] = {"route", "a\"b\\c\nd", NULL};
	cr_assert_eq(gw_metrics_counter_add(m, "x_total", "X.", labels, 1), ORN_OK);
	char *text = render();
	cr_assert_not_null(strstr(text, "x_total{route=\"a\\\"b\\\\c\\nd\"} 1\n"));
	free(text);
}

Test(gw_metrics, histogram_format)
{
	const double buckets[] = {0.1, 0.5, 1};
	const char *const labels[] = {"route", "/r", NULL};
	cr_assert_eq(gw_metrics_observe(m, "lat_seconds", "Latency.", buckets, 3, labels, 0.05), ORN_OK);
	cr_assert_eq(gw_metrics_observe(m, "lat_seconds", "Latency.", buckets, 3, labels, 0.7), ORN_OK);
	cr_assert_eq(gw_metrics_observe(m, "lat_seconds", "Latency.", buckets, 3, labels, 3), ORN_OK);
	char *text = render();
	cr_assert_str_eq(text, "# HELP lat_seconds Latency.\n"
	                       "# TYPE lat_seconds histogram\n"
	                       "lat_seconds_bucket{route=\"/r\",le=\"0.1\"} 1\n"
	                       "lat_seconds_bucket{route=\"/r\",le=\"0.5\"} 1\n"
	                       "lat_seconds_bucket{route=\"/r\",le=\"1\"} 2\n"
	                       "lat_seconds_bucket{route=\"/r\",le=\"+Inf\"} 3\n"
	                       "lat_seconds_sum{route=\"/r\"} 3.75\n"
	                       "lat_seconds_count{route=\"/r\"} 3\n");
	free(text);
}

Test(gw_metrics, misuse_is_refused)
{
	const double buckets[] = {1, 0.5};
	const char *const bad_label[] = {"bad-name", "v", NULL};
	const char *const le_label[] = {"le", "v", NULL};
	cr_assert_eq(gw_metrics_counter_add(m, "1bad", "", NULL, 1), ORN_EINVAL);
	cr_assert_eq(gw_metrics_counter_add(m, "ok_total", "", NULL, -1), ORN_EINVAL);
	cr_assert_eq(gw_metrics_counter_add(m, "ok_total", "", bad_label, 1), ORN_EINVAL);
	cr_assert_eq(gw_metrics_observe(m, "h", "", buckets, 2, NULL, 1), ORN_EINVAL);
	cr_assert_eq(gw_metrics_observe(m, "ok_total", "", (const double[]){1}, 1, NULL, 1), ORN_EINVAL);
	cr_assert_eq(gw_metrics_observe(m, "h2", "", (const double[]){1}, 1, le_label, 1), ORN_EINVAL);
}

Test(gw_metrics, http_requests_by_route_and_status_class)
{
	gw_metrics_observe_request(m, "GET", "/api/v1/products/{id}", 200, 0.002);
	gw_metrics_observe_request(m, "GET", "/api/v1/products/{id}", 404, 0.002);
	gw_metrics_observe_request(m, "GET", "/api/v1/products/{id}", 204, 0.002);
	char *text = render();
	cr_assert_not_null(strstr(text,
	                          "orion_http_requests_total{method=\"GET\",route=\"/api/v1/products/{id}\","
	                          "code=\"2xx\"} 2\n"));
	cr_assert_not_null(strstr(text, "code=\"4xx\"} 1\n"));
	cr_assert_not_null(strstr(text, "orion_http_request_duration_seconds_count{method=\"GET\","
	                                "route=\"/api/v1/products/{id}\"} 3\n"));
	cr_assert_not_null(strstr(text, "# TYPE orion_http_request_duration_seconds histogram\n"));
	free(text);
}

Test(gw_metrics, gauge_format_and_last_value_wins)
{
	const char *const labels[] = {"model", "catalog", NULL};
	cr_assert_eq(gw_metrics_gauge_set(m, "orion_lag_events", "Lag.", labels, 7), ORN_OK);
	cr_assert_eq(gw_metrics_gauge_set(m, "orion_lag_events", "Lag.", labels, -2.5), ORN_OK);
	cr_assert_eq(gw_metrics_gauge_set(m, "orion_up", "Up.", NULL, 1), ORN_OK);
	char *text = render();
	cr_assert_str_eq(text, "# HELP orion_lag_events Lag.\n"
	                       "# TYPE orion_lag_events gauge\n"
	                       "orion_lag_events{model=\"catalog\"} -2.5\n"
	                       "# HELP orion_up Up.\n"
	                       "# TYPE orion_up gauge\n"
	                       "orion_up 1\n");
	free(text);
	/* a name keeps its type; NaN is no value */
	cr_assert_eq(gw_metrics_counter_add(m, "orion_up", "Up.", NULL, 1), ORN_EINVAL);
	cr_assert_eq(gw_metrics_gauge_set(m, "orion_up", "Up.", NULL, 0.0 / 0.0), ORN_EINVAL);
	cr_assert_eq(gw_metrics_gauge_set(m, "bad name", "x", NULL, 1), ORN_EINVAL);
}
