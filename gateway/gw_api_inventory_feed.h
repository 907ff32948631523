/* gw_api_inventory_feed.h — the inventory feed's handler (gw_api_inventory_feed.c).
 * Each is a gw_api_handler (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_INVENTORY_FEED_H
#define ORION_GW_API_INVENTORY_FEED_H

#include "gw_api.h"

gw_api_handler gw_inventory_feed;

#endif
