/* test_metrics.c — engine/metrics.c: Prometheus text format 0.0.4 for
 * counters, gauges and histograms, label escaping, refused misuse, and the
 * process-wide registry every role records into. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static orn_metrics *m;

static void setup(void)
{
	m = orn_metrics_create();
	cr_assert_not_null(m);
}

static void teardown(void)
{
	orn_metrics_destroy(m);
}

TestSuite(metrics, .init = setup, .fini = teardown);

static char *render(void)
{
	size_t len = 0;
	char *text = orn_metrics_render(m, &len);
	cr_assert_not_null(text);
	cr_assert_eq(strlen(text), len);
	return text;
}

Test(metrics, counter_format)
{
	const char *const labels[] = {"kind", "login", NULL};
	cr_assert_eq(orn_metrics_counter_add(m, "orion_things_total", "Things.\nDone \\ here", labels, 2),
	             ORN_OK);
	cr_assert_eq(orn_metrics_counter_add(m, "orion_things_total", "ignored", labels, 1.5), ORN_OK);
	cr_assert_eq(orn_metrics_counter_add(m, "orion_plain_total", "Plain.", NULL, 1), ORN_OK);
	char *text = render();
	cr_assert_str_eq(text, "# HELP orion_things_total Things.\\nDone \\\\ here\n"
	                       "# TYPE orion_things_total counter\n"
	                       "orion_things_total{kind=\"login\"} 3.5\n"
	                       "# HELP orion_plain_total Plain.\n"
	                       "# TYPE orion_plain_total counter\n"
	                       "orion_plain_total 1\n");
	free(text);
}

Test(metrics, label_values_are_escaped)
{
	const char *const labels[] = {"route", "a\"b\\c\nd", NULL};
	cr_assert_eq(orn_metrics_counter_add(m, "x_total", "X.", labels, 1), ORN_OK);
	char *text = render();
	cr_assert_not_null(strstr(text, "x_total{route=\"a\\\"b\\\\c\\nd\"} 1\n"));
	free(text);
}

Test(metrics, histogram_format)
{
	const double buckets[] = {0.1, 0.5, 1};
	const char *const labels[] = {"route", "/r", NULL};
	cr_assert_eq(orn_metrics_observe(m, "lat_seconds", "Latency.", buckets, 3, labels, 0.05), ORN_OK);
	cr_assert_eq(orn_metrics_observe(m, "lat_seconds", "Latency.", buckets, 3, labels, 0.7), ORN_OK);
	cr_assert_eq(orn_metrics_observe(m, "lat_seconds", "Latency.", buckets, 3, labels, 3), ORN_OK);
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

Test(metrics, misuse_is_refused)
{
	const double buckets[] = {1, 0.5};
	const char *const bad_label[] = {"bad-name", "v", NULL};
	const char *const le_label[] = {"le", "v", NULL};
	cr_assert_eq(orn_metrics_counter_add(m, "1bad", "", NULL, 1), ORN_EINVAL);
	cr_assert_eq(orn_metrics_counter_add(m, "ok_total", "", NULL, -1), ORN_EINVAL);
	cr_assert_eq(orn_metrics_counter_add(m, "ok_total", "", bad_label, 1), ORN_EINVAL);
	cr_assert_eq(orn_metrics_observe(m, "h", "", buckets, 2, NULL, 1), ORN_EINVAL);
	cr_assert_eq(orn_metrics_observe(m, "ok_total", "", (const double[]){1}, 1, NULL, 1), ORN_EINVAL);
	cr_assert_eq(orn_metrics_observe(m, "h2", "", (const double[]){1}, 1, le_label, 1), ORN_EINVAL);
}

Test(metrics, gauge_format_and_last_value_wins)
{
	const char *const labels[] = {"model", "catalog", NULL};
	cr_assert_eq(orn_metrics_gauge_set(m, "orion_lag_events", "Lag.", labels, 7), ORN_OK);
	cr_assert_eq(orn_metrics_gauge_set(m, "orion_lag_events", "Lag.", labels, -2.5), ORN_OK);
	cr_assert_eq(orn_metrics_gauge_set(m, "orion_up", "Up.", NULL, 1), ORN_OK);
	char *text = render();
	cr_assert_str_eq(text, "# HELP orion_lag_events Lag.\n"
	                       "# TYPE orion_lag_events gauge\n"
	                       "orion_lag_events{model=\"catalog\"} -2.5\n"
	                       "# HELP orion_up Up.\n"
	                       "# TYPE orion_up gauge\n"
	                       "orion_up 1\n");
	free(text);
	/* a name keeps its type; NaN is no value */
	cr_assert_eq(orn_metrics_counter_add(m, "orion_up", "Up.", NULL, 1), ORN_EINVAL);
	cr_assert_eq(orn_metrics_gauge_set(m, "orion_up", "Up.", NULL, 0.0 / 0.0), ORN_EINVAL);
	cr_assert_eq(orn_metrics_gauge_set(m, "bad name", "x", NULL, 1), ORN_EINVAL);
}

Test(metrics, a_null_registry_records_and_renders_nothing)
{
	const double buckets[] = {1};
	cr_assert_eq(orn_metrics_counter_add(NULL, "a_total", "A.", NULL, 1), ORN_EINVAL);
	cr_assert_eq(orn_metrics_gauge_set(NULL, "a", "A.", NULL, 1), ORN_EINVAL);
	cr_assert_eq(orn_metrics_observe(NULL, "a_seconds", "A.", buckets, 1, NULL, 1), ORN_EINVAL);
	cr_assert_null(orn_metrics_render(NULL, NULL));
	orn_metrics_destroy(NULL);
}

static void *record_in_global(void *arg)
{
	const char *const labels[] = {"kind", "stock", NULL};
	for (int i = 0; i < 1000; i++)
		orn_metrics_counter_add(orn_metrics_global(), "test_global_total", "Global.", labels, 1);
	return NULL;
}

Test(metrics, the_global_registry_is_one_per_process_and_outlives_destroy)
{
	/* given two threads recording into the global registry */
	orn_metrics *g = orn_metrics_global();
	cr_assert_not_null(g);
	pthread_t a, b;
	cr_assert_eq(pthread_create(&a, NULL, record_in_global, NULL), 0);
	cr_assert_eq(pthread_create(&b, NULL, record_in_global, NULL), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	/* when someone destroys it (a gateway stopping) */
	orn_metrics_destroy(g);
	/* then it is the same registry still, holding every count */
	cr_assert_eq(orn_metrics_global(), g);
	char *text = orn_metrics_render(g, NULL);
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "test_global_total{kind=\"stock\"} 2000\n"), "%s", text);
	free(text);
}

Test(metrics, seconds_since_is_never_negative)
{
	cr_assert_eq(orn_metrics_seconds_since(INT64_MAX), 0);
	cr_assert_gt(orn_metrics_seconds_since(0), 0);
}
