/* proj_quote.c — a customer's cart priced from the catalog (see proj_quote.h).
 *
 * One read transaction: the cart's record (carts.c), then each line's product
 * record (catalog.c). A product whose record is absent or flagged deleted
 * drops its line; any other failure fails the quote (a price is never
 * guessed). */
#include "proj_quote.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "proj_internal.h"

/* Prices the lines of cart into out, reading the catalog in txn. */
static orn_rc price_lines(MDB_txn *txn, proj_catalog *catalog, const proj_cart *cart, proj_quote *out)
{
	product_state product;
	for (size_t i = 0; i < cart->state.line_count; i++) {
		const cart_line *line = &cart->state.lines[i];
		orn_rc rc = es_id_valid(line->product_id)
		                    ? proj_catalog_read_live(txn, catalog, line->product_id, &product)
		                    : ORN_ENOTFOUND;
		if (rc == ORN_ENOTFOUND) {
			memcpy(out->dropped[out->dropped_count++], line->product_id, sizeof line->product_id);
			continue;
		}
		if (rc != ORN_OK)
			return rc;
		cart_line *priced = &out->lines[out->count++];
		*priced = *line;
		memcpy(priced->name, product.fields.name, sizeof priced->name);
		priced->unit_price_cents = product.fields.price_cents;
		if (out->currency[0] == '\0')
			memcpy(out->currency, product.fields.currency, sizeof out->currency);
		/* bounded: 50 lines * 999 * 10^10 < 2^63 (actors/cart.h) */
		out->total_cents += priced->unit_price_cents * priced->quantity;
	}
	return ORN_OK;
}

orn_rc proj_quote_cart(proj_carts *carts, proj_catalog *catalog, const char *customer_id, proj_quote *out)
{
	MDB_txn *txn = NULL;
	proj_cart *cart = NULL;
	proj_env *env = proj_carts_env(carts);
	orn_rc rc = ORN_EINVAL;
	memset(out, 0, sizeof *out);
	assert(env == proj_catalog_env(catalog));
	if (!es_id_valid(customer_id))
		return rc;
	if ((cart = malloc(sizeof *cart)) == NULL)
		return ORN_ENOMEM;
	if ((rc = proj_env_read_begin(env, &txn)) != ORN_OK)
		goto done;
	rc = proj_carts_read(txn, carts, customer_id, cart);
	if (rc == ORN_OK) {
		out->cart_version = cart->version;
		if (cart->checked_out_at == cart->version)
			memcpy(out->checked_out_order, cart->state.last_order_id,
			       sizeof out->checked_out_order);
		rc = price_lines(txn, catalog, cart, out);
	} else if (rc == ORN_ENOTFOUND) {
		rc = ORN_OK; /* never had a cart: an empty one */
	}
	proj_env_read_end(env, txn);
done:
	if (rc != ORN_OK)
		memset(out, 0, sizeof *out);
	free(cart);
	return rc;
}
