/* test_gw_metrics.c — gateway/gw_metrics.c: the HTTP request helper, and
 * the gateway's names for the engine registry (tests/unit/test_metrics.c
 * covers the registry itself). */
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

Test(gw_metrics, the_gateway_names_reach_the_engine_registry)
{
	/* given a series recorded through the engine's name */
	cr_assert_eq(orn_metrics_counter_add(m, "orion_saga_things_total", "Things.", NULL, 2), ORN_OK);
	/* when the gateway adds through its own */
	cr_assert_eq(gw_metrics_counter_add(m, "orion_saga_things_total", "Things.", NULL, 1), ORN_OK);
	/* then both land in one series, in the one content type */
	char *text = render();
	cr_assert_not_null(strstr(text, "orion_saga_things_total 3\n"), "%s", text);
	cr_assert_str_eq(GW_METRICS_CONTENT_TYPE, ORN_METRICS_CONTENT_TYPE);
	free(text);
}
