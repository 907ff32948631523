/* gw_router.c — a linear route table; the gateway has a few dozen routes,
 * so a scan with a specificity score is simpler than a trie and fast enough. */
#include "gw_router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct route_segment {
	const char *text; /* literal text, or the parameter name without braces */
	size_t len;
	bool param;
} route_segment;

typedef struct route {
	gw_method method;
	char *pattern; /* as registered */
	char *split;   /* pattern copy cut into NUL-terminated segments */
	size_t segment_count;
	route_segment segments[GW_MAX_SEGMENTS];
	gw_handler *handler;
	void *arg;
} route;

struct gw_router {
	route **routes;
	size_t count, cap;
};

static const struct {
	gw_method method;
	const char *name;
} method_names[] = {
        {GW_GET, "GET"},     {GW_HEAD, "HEAD"},     {GW_POST, "POST"},       {GW_PUT, "PUT"},
        {GW_PATCH, "PATCH"}, {GW_DELETE, "DELETE"}, {GW_OPTIONS, "OPTIONS"},
};

const char *gw_method_name(gw_method method)
{
	for (size_t i = 0; i < ORN_ARRAY_LEN(method_names); i++)
		if (method_names[i].method == method)
			return method_names[i].name;
	return "OTHER";
}

gw_method gw_method_parse(const char *name)
{
	for (size_t i = 0; i < ORN_ARRAY_LEN(method_names); i++)
		if (strcmp(method_names[i].name, name) == 0)
			return method_names[i].method;
	return GW_METHOD_OTHER;
}

void gw_methods_format(unsigned allowed, char *out, size_t cap)
{
	size_t used = 0;
	if (cap == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < ORN_ARRAY_LEN(method_names); i++) {
		if (!(allowed & (unsigned)method_names[i].method))
			continue;
		size_t need = strlen(method_names[i].name) + (used ? 2 : 0);
		if (used + need + 1 > cap)
			break;
		if (used) {
			memcpy(out + used, ", ", 2);
			used += 2;
		}
		memcpy(out + used, method_names[i].name, strlen(method_names[i].name));
		used += strlen(method_names[i].name);
		out[used] = '\0';
	}
}

gw_router *gw_router_create(void)
{
	return calloc(1, sizeof(gw_router));
}

static void route_free(route *r)
{
	if (!r)
		return;
	free(r->pattern);
	free(r->split);
	free(r);
}

void gw_router_destroy(gw_router *router)
{
	if (!router)
		return;
	for (size_t i = 0; i < router->count; i++)
		route_free(router->routes[i]);
	free(router->routes);
	free(router);
}

static bool is_single_method(gw_method method)
{
	unsigned bits = (unsigned)method;
	return bits != 0 && (bits & (bits - 1)) == 0 && bits <= (unsigned)GW_OPTIONS;
}

/* Cuts r->split into segments; false if the pattern is malformed. */
static bool route_parse(route *r)
{
	char *cursor = r->split;
	size_t params = 0;
	if (cursor[0] != '/')
		return false;
	if (cursor[1] == '\0')
		return true; /* "/" has no segments */
	cursor++;
	for (;;) {
		char *slash = strchr(cursor, '/');
		if (slash)
			*slash = '\0';
		size_t len = strlen(cursor);
		if (len == 0 || r->segment_count == GW_MAX_SEGMENTS)
			return false;
		route_segment *segment = &r->segments[r->segment_count++];
		if (cursor[0] == '{') {
			if (len < 3 || cursor[len - 1] != '}' || ++params > GW_MAX_PARAMS)
				return false;
			cursor[len - 1] = '\0';
			segment->text = cursor + 1;
			segment->len = len - 2;
			segment->param = true;
			if (strpbrk(segment->text, "{}"))
				return false;
		} else {
			if (strpbrk(cursor, "{}"))
				return false;
			segment->text = cursor;
			segment->len = len;
			segment->param = false;
		}
		if (!slash)
			return true;
		cursor = slash + 1;
	}
}

static bool same_shape(const route *a, const route *b)
{
	if (a->segment_count != b->segment_count)
		return false;
	for (size_t i = 0; i < a->segment_count; i++) {
		const route_segment *x = &a->segments[i], *y = &b->segments[i];
		if (x->param != y->param)
			return false;
		if (!x->param && strcmp(x->text, y->text) != 0)
			return false;
	}
	return true;
}

orn_rc gw_router_add(gw_router *router, gw_method method, const char *pattern, gw_handler *handler, void *arg)
{
	orn_rc rc = ORN_OK;
	route *r = NULL;
	if (!is_single_method(method) || !pattern || !handler || strlen(pattern) >= GW_MAX_PATH)
		return ORN_EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return ORN_ENOMEM;
	r->pattern = strdup(pattern);
	r->split = strdup(pattern);
	if (!r->pattern || !r->split) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	if (!route_parse(r)) {
		rc = ORN_EINVAL;
		goto fail;
	}
	r->method = method;
	r->handler = handler;
	r->arg = arg;
	for (size_t i = 0; i < router->count; i++) {
		if (router->routes[i]->method == method && same_shape(router->routes[i], r)) {
			rc = ORN_EEXISTS;
			goto fail;
		}
	}
	if (router->count == router->cap) {
		size_t cap = router->cap ? router->cap * 2 : 16;
		route **routes = realloc(router->routes, cap * sizeof(*routes));
		if (!routes) {
			rc = ORN_ENOMEM;
			goto fail;
		}
		router->routes = routes;
		router->cap = cap;
	}
	router->routes[router->count++] = r;
	return ORN_OK;
fail:
	route_free(r);
	return rc;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Splits raw_path into decoded segments stored in storage; false if the path
 * is malformed (no leading '/', too long or deep, bad or NUL escapes). */
static bool split_path(const char *raw_path, char *storage, const char **segments, size_t *count)
{
	size_t n = 0;
	char *out = storage;
	const char *p = raw_path;
	if (!p || p[0] != '/' || strlen(p) >= GW_MAX_PATH)
		return false;
	*count = 0;
	if (p[1] == '\0')
		return true;
	p++;
	for (;;) {
		if (n == GW_MAX_SEGMENTS)
			return false;
		segments[n++] = out;
		while (*p && *p != '/') {
			if (*p == '%') {
				int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
				if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
					return false;
				*out++ = (char)(hi * 16 + lo);
				p += 3;
			} else {
				*out++ = *p++;
			}
		}
		*out++ = '\0';
		if (*p == '\0')
			break;
		p++;
	}
	*count = n;
	return true;
}

/* Literal segments earlier in the path weigh more; -1 if no match. */
static int64_t route_score(const route *r, const char *const *segments, size_t count)
{
	int64_t score = 0;
	if (r->segment_count != count)
		return -1;
	for (size_t i = 0; i < count; i++) {
		const route_segment *s = &r->segments[i];
		if (s->param) {
			if (segments[i][0] == '\0')
				return -1;
		} else {
			if (strcmp(s->text, segments[i]) != 0)
				return -1;
			score |= (int64_t)1 << (GW_MAX_SEGMENTS - 1 - i);
		}
	}
	return score;
}

static const route *best_route(const gw_router *router, gw_method method, const char *const *segments,
                               size_t count, unsigned *allowed)
{
	const route *best = NULL;
	int64_t best_score = -1;
	for (size_t i = 0; i < router->count; i++) {
		const route *r = router->routes[i];
		int64_t score = route_score(r, segments, count);
		if (score < 0)
			continue;
		if (allowed)
			*allowed |= (unsigned)r->method;
		if (r->method == method && score > best_score) {
			best = r;
			best_score = score;
		}
	}
	return best;
}

gw_route_result gw_router_match(const gw_router *router, gw_method method, const char *raw_path,
                                gw_route_match *out)
{
	const char *segments[GW_MAX_SEGMENTS];
	size_t count = 0;
	memset(out, 0, offsetof(gw_route_match, params));
	out->params.count = 0;
	if (!split_path(raw_path, out->params.storage, segments, &count))
		return GW_ROUTE_NOT_FOUND;
	const route *r = best_route(router, method, segments, count, &out->allowed);
	if (!r && method == GW_HEAD)
		r = best_route(router, GW_GET, segments, count, NULL);
	if (out->allowed & (unsigned)GW_GET)
		out->allowed |= (unsigned)GW_HEAD;
	if (!r)
		return out->allowed ? GW_ROUTE_METHOD_NOT_ALLOWED : GW_ROUTE_NOT_FOUND;
	out->handler = r->handler;
	out->arg = r->arg;
	out->pattern = r->pattern;
	for (size_t i = 0; i < r->segment_count; i++) {
		if (!r->segments[i].param)
			continue;
		out->params.names[out->params.count] = r->segments[i].text;
		out->params.values[out->params.count] = segments[i];
		out->params.count++;
	}
	return GW_ROUTE_FOUND;
}

const char *gw_params_get(const gw_params *params, const char *name)
{
	for (size_t i = 0; i < params->count; i++)
		if (strcmp(params->names[i], name) == 0)
			return params->values[i];
	return NULL;
}

size_t gw_router_count(const gw_router *router)
{
	return router->count;
}

bool gw_router_route_at(const gw_router *router, size_t i, gw_method *method, const char **pattern)
{
	if (i >= router->count)
		return false;
	*method = router->routes[i]->method;
	*pattern = router->routes[i]->pattern;
	return true;
}
