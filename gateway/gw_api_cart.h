/* gw_api_cart.h — the cart routes' handlers (gw_api_cart.c).
 * Each is a gw_api_handler (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_CART_H
#define ORION_GW_API_CART_H

#include "gw_api.h"

gw_api_handler gw_cart_get;
gw_api_handler gw_cart_clear;
gw_api_handler gw_cart_add_item;
gw_api_handler gw_cart_set_quantity;
gw_api_handler gw_cart_remove_item;

#endif
