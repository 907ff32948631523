/* gw_api_erase.h — the erasure routes' handlers (gw_api_erase.c): DELETE /me
 * and POST /admin/customers/{id}/erase (ADR 027). Each is a gw_api_handler
 * (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_ERASE_H
#define ORION_GW_API_ERASE_H

#include "gw_api.h"

gw_api_handler gw_erase_me;
gw_api_handler gw_erase_customer;

#endif
