/* gw_api_payment.h — the payment route's handler (gw_api_payment.c).
 * Each is a gw_api_handler (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_PAYMENT_H
#define ORION_GW_API_PAYMENT_H

#include "gw_api.h"

gw_api_handler gw_payment_pay;
gw_api_handler gw_payment_retry_refund; /* POST /admin/orders/{id}/refund (ADR 028 §3) */

#endif
