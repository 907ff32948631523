/* gw_api_psp.h — the card payment provider's routes (gw_api_psp.c, ADR 028):
 * GET /payments/config and POST /webhooks/psp. Each is a gw_api_handler
 * (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_PSP_H
#define ORION_GW_API_PSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_api.h"

gw_api_handler gw_psp_config;
gw_api_handler gw_psp_webhook;

/* Whether header ("t=<unix s>,v1=<hex>[,v1=...]") signs body (len bytes)
 * with secret: HMAC-SHA256(secret, t + "." + body) equal, in constant time,
 * to one of the v1 digests, and t within 300 s of now_s. Pure. */
bool gw_psp_signature_valid(const char *secret, const char *header, const unsigned char *body, size_t len,
                            int64_t now_s);

#endif
