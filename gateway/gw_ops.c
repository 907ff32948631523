/* gw_ops.c — /healthz, /metrics and the OpenAPI document. */
#include "gw_ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_ops {
	gw_metrics *metrics;
	char *openapi;
	size_t openapi_len;
};

static void health(gw_request *r, void *arg)
{
	gw_respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static void metrics(gw_request *r, void *arg)
{
	gw_ops *ops = arg;
	size_t len = 0;
	char *text = gw_metrics_render(ops->metrics, &len);
	if (!text) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	gw_respond(r, 200, GW_METRICS_CONTENT_TYPE, text, len);
	free(text);
}

static void openapi(gw_request *r, void *arg)
{
	gw_ops *ops = arg;
	gw_respond(r, 200, "application/yaml", ops->openapi, ops->openapi_len);
}

static orn_rc read_file(const char *path, char **text, size_t *len)
{
	orn_rc rc = ORN_EIO;
	FILE *in = fopen(path, "rb");
	char *buffer = NULL;
	if (!in)
		return errno == ENOENT ? ORN_ENOTFOUND : ORN_EIO;
	buffer = malloc(GW_OPENAPI_MAX + 1);
	if (!buffer) {
		rc = ORN_ENOMEM;
		goto done;
	}
	size_t n = fread(buffer, 1, GW_OPENAPI_MAX + 1, in);
	if (ferror(in))
		goto done;
	if (n > GW_OPENAPI_MAX) {
		rc = ORN_ETOOBIG;
		goto done;
	}
	*text = buffer;
	*len = n;
	buffer = NULL;
	rc = ORN_OK;
done:
	free(buffer);
	fclose(in);
	return rc;
}

orn_rc gw_ops_register(gw_server *s, gw_metrics *m, const char *openapi_path, gw_ops **out)
{
	orn_rc rc;
	gw_ops *ops = calloc(1, sizeof(*ops));
	*out = NULL;
	if (!ops)
		return ORN_ENOMEM;
	ops->metrics = m;
	if (openapi_path && (rc = read_file(openapi_path, &ops->openapi, &ops->openapi_len)) != ORN_OK)
		goto fail;
	if ((rc = gw_server_route(s, GW_GET, "/healthz", health, ops)) != ORN_OK)
		goto fail;
	if (m && (rc = gw_server_route(s, GW_GET, "/metrics", metrics, ops)) != ORN_OK)
		goto fail;
	if (openapi_path && (rc = gw_server_route(s, GW_GET, "/api/v1/openapi.yaml", openapi, ops)) != ORN_OK)
		goto fail;
	*out = ops;
	return ORN_OK;
fail:
	gw_ops_destroy(ops);
	return rc;
}

void gw_ops_destroy(gw_ops *ops)
{
	if (!ops)
		return;
	free(ops->openapi);
	free(ops);
}
