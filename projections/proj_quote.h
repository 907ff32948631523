/* proj_quote.h — the price of a customer's cart, read from the read models:
 * a query that sends no command.
 *
 * A quote joins the carts model (the customer's lines and quantities) with
 * the catalog (each product's current name, unit price and currency) in one
 * LMDB read transaction, so every line is priced from the same snapshot. A
 * line whose product was deleted is not priced: its id is listed as dropped
 * (the cart still holds it until a RemoveItem takes it out). What GET /cart
 * shows and what POST /orders places are both a quote. */
#ifndef ORION_PROJ_QUOTE_H
#define ORION_PROJ_QUOTE_H

#include <stddef.h>
#include <stdint.h>

#include "cart.h"
#include "carts.h"
#include "catalog.h"
#include "orn.h"

/* A priced cart (~18 KB: heap-allocate it). */
typedef struct proj_quote {
	cart_line lines[CART_LINES_MAX]; /* the cart's lines with the catalog's name and unit price */
	size_t count;
	char currency[CART_CURRENCY_MAX];          /* of the priced lines; "" when there is none */
	int64_t total_cents;                       /* sum of unit price * quantity (fits: actors/cart.h) */
	char dropped[CART_LINES_MAX][CART_ID_MAX]; /* lines whose product is no longer sold */
	size_t dropped_count;
	uint64_t cart_version;               /* the cart's version in the carts model; 0 for no cart */
	char checked_out_order[CART_ID_MAX]; /* the order its last change checked out, or "" */
} proj_quote;

/* Prices customer_id's cart into *out (cleared first). carts and catalog must
 * be models of one environment (proj_models_open). A customer without a cart
 * has an empty quote.
 * Returns ORN_OK, or: ORN_EINVAL for an invalid customer id; ORN_EDECODE for
 * a record the models did not write; another code when the environment
 * cannot be read. *out is an empty quote after any failure. */
orn_rc proj_quote_cart(proj_carts *carts, proj_catalog *catalog, const char *customer_id, proj_quote *out);

#endif
