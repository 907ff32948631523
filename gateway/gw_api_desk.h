/* gw_api_desk.h — the admin order desk's read routes (gw_api_desk.c): every
 * order with filters, one order with its customer and its story, and the
 * accounts (docs/adr/029-admin-order-desk.md). Each is a gw_api_handler
 * (gw_api.h), routed by gw_routes.c with GW_ACCESS_ADMIN. */
#ifndef ORION_GW_API_DESK_H
#define ORION_GW_API_DESK_H

#include "gw_api.h"

gw_api_handler gw_desk_orders_list;
gw_api_handler gw_desk_order_get;
gw_api_handler gw_desk_customers_list;

#endif
