/* gw_routes.h — Orion's API routes: the one table of {method, pattern,
 * handler, access} that gw_api_create registers (gw_api.h). openapi.yaml
 * documents the same routes; the contracts suite compares both ways, access
 * included (tests/contracts/test_openapi_routes.py, `orion routes`). */
#ifndef ORION_GW_ROUTES_H
#define ORION_GW_ROUTES_H

#include <stddef.h>

#include "gw_api.h"

/* The table (static storage) and its number of rows into *count. */
const gw_api_route *gw_routes_table(size_t *count);

#endif
