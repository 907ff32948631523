/* gw_router.h — method + path pattern routing for the gateway.
 *
 * Patterns are absolute paths whose segments are literals or {name}
 * parameters ("/api/v1/products/{id}"). A literal segment beats a parameter
 * at the same position, so "/orders/export" wins over "/orders/{id}".
 * Matching splits the raw (percent-encoded) path on '/' first and decodes
 * each segment after, so an encoded "%2F" never creates a segment. The
 * router is built before the server runs and is read-only afterwards. */
#ifndef ORION_GW_ROUTER_H
#define ORION_GW_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "orn.h"

typedef enum gw_method {
	GW_METHOD_OTHER = 0,
	GW_GET = 1 << 0,
	GW_HEAD = 1 << 1,
	GW_POST = 1 << 2,
	GW_PUT = 1 << 3,
	GW_PATCH = 1 << 4,
	GW_DELETE = 1 << 5,
	GW_OPTIONS = 1 << 6,
} gw_method;

#define GW_MAX_PARAMS   8
#define GW_MAX_PATH     2048 /* longer paths never match (404) */
#define GW_MAX_SEGMENTS 32

typedef struct gw_request gw_request;

/* A request handler; runs on the loop thread. It must answer r (directly or
 * through gw_request_defer), see gw_http.h. */
typedef void gw_handler(gw_request *r, void *arg);

typedef struct gw_router gw_router;

/* Path parameters of a match. names point into the router's patterns,
 * values into storage (decoded, NUL-terminated). */
typedef struct gw_params {
	size_t count;
	const char *names[GW_MAX_PARAMS];
	const char *values[GW_MAX_PARAMS];
	char storage[GW_MAX_PATH + GW_MAX_SEGMENTS];
} gw_params;

typedef enum gw_route_result {
	GW_ROUTE_FOUND,
	GW_ROUTE_NOT_FOUND,
	GW_ROUTE_METHOD_NOT_ALLOWED,
} gw_route_result;

typedef struct gw_route_match {
	gw_handler *handler;
	void *arg;
	const char *pattern; /* the matched route's pattern (owned by the router) */
	unsigned allowed;    /* gw_method bits of every route whose pattern matches the path */
	gw_params params;
} gw_route_match;

/* "GET", "POST", ... ; "OTHER" for GW_METHOD_OTHER. */
const char *gw_method_name(gw_method method);
/* Parses an upper-case method name; GW_METHOD_OTHER if unknown. */
gw_method gw_method_parse(const char *name);
/* Writes "GET, HEAD, POST" for the bits in allowed (in a fixed order) into
 * out (size cap, always NUL-terminated). */
void gw_methods_format(unsigned allowed, char *out, size_t cap);

/* Creates an empty router; NULL on allocation failure. */
gw_router *gw_router_create(void);
/* Frees the router and its copies of the patterns. NULL is accepted. */
void gw_router_destroy(gw_router *router);

/* Adds method + pattern → handler(arg). The pattern is copied. ORN_EINVAL
 * for a malformed pattern (not starting with '/', empty or unbalanced
 * braces, more than GW_MAX_PARAMS parameters, one method bit expected),
 * ORN_EEXISTS if the same method and shape (parameter names aside) is
 * already routed, ORN_ENOMEM. */
orn_rc gw_router_add(gw_router *router, gw_method method, const char *pattern, gw_handler *handler,
                     void *arg);

/* Matches method and raw path (no query string). HEAD falls back to GET
 * routes. On GW_ROUTE_FOUND, out has the handler and parameters; on
 * GW_ROUTE_METHOD_NOT_ALLOWED, out->allowed lists the methods the path
 * accepts. out is always written. */
gw_route_result gw_router_match(const gw_router *router, gw_method method, const char *raw_path,
                                gw_route_match *out);

/* Value of the parameter name, or NULL. */
const char *gw_params_get(const gw_params *params, const char *name);

/* Number of routes, and the i-th one (registration order) for listings
 * such as the OpenAPI cross-check. false if i is out of range. */
size_t gw_router_count(const gw_router *router);
bool gw_router_route_at(const gw_router *router, size_t i, gw_method *method, const char **pattern);

#endif
