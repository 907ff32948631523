/* gw_api_public.h — the public routes' handlers (gw_api_public.c): accounts and the catalog.
 * Each is a gw_api_handler (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_PUBLIC_H
#define ORION_GW_API_PUBLIC_H

#include "gw_api.h"

gw_api_handler gw_public_register;
gw_api_handler gw_public_login;
gw_api_handler gw_public_logout;
gw_api_handler gw_public_me;
gw_api_handler gw_public_change_password;
gw_api_handler gw_public_products;
gw_api_handler gw_public_product;

#endif
