/* gw_ops.h — the built-in operations routes.
 *
 * GET /healthz              200 {"status":"ok"} while the loop runs
 * GET /metrics              the registry in Prometheus text format 0.0.4
 * GET /api/v1/openapi.yaml  the OpenAPI document (application/yaml)
 * (/readyz arrives with the NATS and projection wiring.) */
#ifndef ORION_GW_OPS_H
#define ORION_GW_OPS_H

#include "gw_http.h"
#include "gw_metrics.h"

#define GW_OPENAPI_MAX (4 * 1024 * 1024)

typedef struct gw_ops gw_ops;

/* Registers the routes on s. metrics may be NULL (then /metrics is not
 * routed); openapi_path may be NULL (then the document is not routed),
 * otherwise the file is read now (at most GW_OPENAPI_MAX bytes) and served
 * from memory. *out receives the state the handlers use; free it with
 * gw_ops_destroy after the server. ORN_ENOTFOUND / ORN_EIO / ORN_ETOOBIG for
 * the file, route errors as gw_server_route. */
orn_rc gw_ops_register(gw_server *s, gw_metrics *metrics, const char *openapi_path, gw_ops **out);

/* Frees the handlers' state. NULL is accepted. */
void gw_ops_destroy(gw_ops *ops);

#endif
