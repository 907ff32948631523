/* gw_api_orders.h — the order routes' handlers (gw_api_orders.c): place, list, read, confirm, cancel, the
 * status stream, and the admin's cancel, ship and deliver (ADR 028 §3). Each is a gw_api_handler
 * (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_ORDERS_H
#define ORION_GW_API_ORDERS_H

#include <jansson.h>

#include "gw_api.h"
#include "orders.h"

gw_api_handler gw_orders_place;
gw_api_handler gw_orders_list;
gw_api_handler gw_orders_get;
gw_api_handler gw_orders_confirm;
gw_api_handler gw_orders_confirm_page;
gw_api_handler gw_orders_cancel;
gw_api_handler gw_orders_events;
gw_api_handler gw_admin_orders_cancel;
gw_api_handler gw_admin_orders_ship;
gw_api_handler gw_admin_orders_deliver;

/* An order summary as GET /orders lists it: {id, status, total_cents,
 * currency, created_at, updated_at, item_count}. NULL on ENOMEM. */
json_t *gw_orders_summary_json(const proj_order_summary *s);

#endif
