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

/* Completes async with 200 {id, email, name, role} of account (its sealed
 * fields opened off the loop when their key is not cached), or 503. */
void gw_public_answer_account(gw_api *api, gw_async *async, const proj_user *account);

/* Answers at once every registration whose answer waits (ADR 031's
 * padding): gw_api_stop calls it, while the server is there. */
void gw_public_answer_waiting(gw_api *api);

/* 32 random hex digits into out (cap >= 33): a public user id, a link's
 * request id. */
void gw_public_new_random_id(char *out, size_t cap);

#endif
