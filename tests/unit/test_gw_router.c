/* test_gw_router.c — gateway/gw_router.c: literal and parameter segments,
 * specificity, 404 vs 405 with the allowed methods, decoding, listings. */
#include <criterion/criterion.h>

#include <string.h>

#include "gw_router.h"

static int tags[8];
static void handler(gw_request *r, void *arg)
{
}

static gw_router *router;
static gw_route_match match;

static void setup(void)
{
	router = gw_router_create();
	cr_assert_eq(gw_router_add(router, GW_GET, "/api/v1/products", handler, &tags[0]), ORN_OK);
	cr_assert_eq(gw_router_add(router, GW_GET, "/api/v1/products/{id}", handler, &tags[1]), ORN_OK);
	cr_assert_eq(gw_router_add(router, GW_PATCH, "/api/v1/products/{id}", handler, &tags[2]), ORN_OK);
	cr_assert_eq(gw_router_add(router, GW_GET, "/api/v1/products/export", handler, &tags[3]), ORN_OK);
	cr_assert_eq(gw_router_add(router, GW_PUT, "/api/v1/cart/items/{product_id}", handler, &tags[4]),
	             ORN_OK);
	cr_assert_eq(gw_router_add(router, GW_GET, "/", handler, &tags[5]), ORN_OK);
	cr_assert_eq(gw_router_add(router, GW_POST, "/api/v1/orders/{id}/payment", handler, &tags[6]),
	             ORN_OK);
}

static void teardown(void)
{
	gw_router_destroy(router);
}

TestSuite(gw_router, .init = setup, .fini = teardown);

Test(gw_router, literal_and_parameter_routes)
{
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/products", &match), GW_ROUTE_FOUND);
	cr_assert_eq(match.arg, &tags[0]);
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/products/p-1", &match), GW_ROUTE_FOUND);
	cr_assert_eq(match.arg, &tags[1]);
	cr_assert_str_eq(match.pattern, "/api/v1/products/{id}");
	cr_assert_str_eq(gw_params_get(&match.params, "id"), "p-1");
	cr_assert_null(gw_params_get(&match.params, "other"));
	cr_assert_eq(gw_router_match(router, GW_POST, "/api/v1/orders/o9/payment", &match), GW_ROUTE_FOUND);
	cr_assert_str_eq(gw_params_get(&match.params, "id"), "o9");
	cr_assert_eq(gw_router_match(router, GW_GET, "/", &match), GW_ROUTE_FOUND);
	cr_assert_eq(match.arg, &tags[5]);
}

Test(gw_router, literal_beats_parameter)
{
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/products/export", &match), GW_ROUTE_FOUND);
	cr_assert_eq(match.arg, &tags[3]);
	/* PATCH only exists on the parameter route, which still matches. */
	cr_assert_eq(gw_router_match(router, GW_PATCH, "/api/v1/products/export", &match), GW_ROUTE_FOUND);
	cr_assert_eq(match.arg, &tags[2]);
}

Test(gw_router, not_found_and_method_not_allowed)
{
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/nothing", &match), GW_ROUTE_NOT_FOUND);
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/products/", &match), GW_ROUTE_NOT_FOUND);
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/products/a/b", &match), GW_ROUTE_NOT_FOUND);
	cr_assert_eq(gw_router_match(router, GW_GET, "api/v1/products", &match), GW_ROUTE_NOT_FOUND);
	cr_assert_eq(gw_router_match(router, GW_DELETE, "/api/v1/products/p1", &match),
	             GW_ROUTE_METHOD_NOT_ALLOWED);
	char allow[64];
	gw_methods_format(match.allowed, allow, sizeof(allow));
	cr_assert_str_eq(allow, "GET, HEAD, PATCH");
	cr_assert_eq(gw_router_match(router, GW_METHOD_OTHER, "/api/v1/products", &match),
	             GW_ROUTE_METHOD_NOT_ALLOWED);
}

Test(gw_router, head_uses_get)
{
	cr_assert_eq(gw_router_match(router, GW_HEAD, "/api/v1/products/x", &match), GW_ROUTE_FOUND);
	cr_assert_eq(match.arg, &tags[1]);
}

Test(gw_router, segments_are_decoded_after_splitting)
{
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/products/a%2Fb", &match), GW_ROUTE_FOUND);
	cr_assert_str_eq(gw_params_get(&match.params, "id"), "a/b");
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/%70roducts", &match), GW_ROUTE_FOUND);
	cr_assert_eq(match.arg, &tags[0]);
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/products/a%00", &match), GW_ROUTE_NOT_FOUND);
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/products/a%zz", &match), GW_ROUTE_NOT_FOUND);
	cr_assert_eq(gw_router_match(router, GW_GET, "/api/v1/products/a%4", &match), GW_ROUTE_NOT_FOUND);
	char long_path[GW_MAX_PATH + 10];
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	cr_assert_eq(gw_router_match(router, GW_GET, long_path, &match), GW_ROUTE_NOT_FOUND);
}

Test(gw_router, bad_patterns_and_duplicates)
{
	cr_assert_eq(gw_router_add(router, GW_GET, "no-slash", handler, NULL), ORN_EINVAL);
	cr_assert_eq(gw_router_add(router, GW_GET, "/a//b", handler, NULL), ORN_EINVAL);
	cr_assert_eq(gw_router_add(router, GW_GET, "/a/{}", handler, NULL), ORN_EINVAL);
	cr_assert_eq(gw_router_add(router, GW_GET, "/a/{x", handler, NULL), ORN_EINVAL);
	cr_assert_eq(gw_router_add(router, GW_GET, "/a/x}", handler, NULL), ORN_EINVAL);
	cr_assert_eq(gw_router_add(router, GW_GET | GW_POST, "/a", handler, NULL), ORN_EINVAL);
	cr_assert_eq(gw_router_add(router, GW_GET, "/api/v1/products/{other}", handler, NULL), ORN_EEXISTS);
	cr_assert_eq(gw_router_add(router, GW_DELETE, "/api/v1/products/{other}", handler, NULL), ORN_OK);
}

Test(gw_router, every_route_is_listed_in_order)
{
	gw_method method;
	const char *pattern;
	cr_assert_eq(gw_router_count(router), 7);
	cr_assert(gw_router_route_at(router, 2, &method, &pattern));
	cr_assert_eq(method, GW_PATCH);
	cr_assert_str_eq(pattern, "/api/v1/products/{id}");
	cr_assert_not(gw_router_route_at(router, 7, &method, &pattern));
	cr_assert_str_eq(gw_method_name(GW_DELETE), "DELETE");
	cr_assert_eq(gw_method_parse("PATCH"), GW_PATCH);
	cr_assert_eq(gw_method_parse("patch"), GW_METHOD_OTHER);
}
