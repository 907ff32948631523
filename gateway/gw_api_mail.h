/* gw_api_mail.h — the mail routes' handlers (gw_api_mail.c): the delivery log and resends.
 * Each is a gw_api_handler (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_MAIL_H
#define ORION_GW_API_MAIL_H

#include "gw_api.h"

gw_api_handler gw_mail_list;
gw_api_handler gw_mail_resend;
gw_api_handler gw_mail_resend_confirmation;

#endif
