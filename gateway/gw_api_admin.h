/* gw_api_admin.h — the admin routes' handlers (gw_api_admin.c): products and stock.
 * Each is a gw_api_handler (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_ADMIN_H
#define ORION_GW_API_ADMIN_H

#include "gw_api.h"

gw_api_handler gw_admin_create_product;
gw_api_handler gw_admin_get_product;
gw_api_handler gw_admin_update_product;
gw_api_handler gw_admin_delete_product;
gw_api_handler gw_admin_list_inventory;
gw_api_handler gw_admin_adjust_stock;

#endif
