/* gw_api_export.h — GET /me/export (gw_api_export.c): everything Orion holds
 * about the caller. A gw_api_handler (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_EXPORT_H
#define ORION_GW_API_EXPORT_H

#include "gw_api.h"

gw_api_handler gw_export_me;

#endif
