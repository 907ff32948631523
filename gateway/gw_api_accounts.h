/* gw_api_accounts.h — the routes of emailed account links (gw_api_accounts.c,
 * ADR 031): verification and password reset. Each is a gw_api_handler
 * (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_ACCOUNTS_H
#define ORION_GW_API_ACCOUNTS_H

#include "gw_api.h"

gw_api_handler gw_accounts_verify_page;
gw_api_handler gw_accounts_verify;
gw_api_handler gw_accounts_password_reset;
gw_api_handler gw_accounts_password_reset_confirm;

#endif
