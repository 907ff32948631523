/* gw_views.h — the API's JSON objects that several routes answer, one
 * writer each: a product (the public view and the admin's, with stock
 * levels), an order, one entry of an order's history (the order stream's
 * event), a cart's quote; and times in RFC 3339.
 *
 * The writers append JSON text to an mp_writer used as a byte buffer rather
 * than build jansson trees: the catalog list renders up to 100 products per
 * request and every placement answers an order, and building and dumping a
 * tree was most of their cost (bench/RESULTS.md, docs/adr/025). A writer
 * never fails on its own: an allocation failure stays in the mp_writer
 * (mp_writer_status), which the answer checks (gw_api_respond_written). */
#ifndef ORION_GW_VIEWS_H
#define ORION_GW_VIEWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "catalog.h"
#include "mpack.h"
#include "order.h"
#include "payment.h"
#include "proj_quote.h"

#define GW_VIEW_TIME_MAX 32 /* bytes of gw_view_format_time's text, NUL included */

/* RFC 3339 UTC with milliseconds ("2026-01-31T12:00:00.250Z") of ms since
 * the epoch into out. */
void gw_view_format_time(int64_t ms, char out[GW_VIEW_TIME_MAX]);

/* gw_view_format_time as a jansson string; JSON null when ms <= 0 and
 * zero_is_null (a time that is not there yet). NULL on ENOMEM. */
json_t *gw_view_time_json(int64_t ms, bool zero_is_null);

/* Parses an RFC 3339 date-time ("2026-01-31T12:00:00Z", optional fraction
 * of a second, "Z" or a "+hh:mm"/"-hh:mm" offset) into ms since the epoch
 * (*out_ms; milliseconds kept). False for anything else (untrusted input). */
bool gw_view_parse_time(const char *text, int64_t *out_ms);

/* The Product of the contract: {id, sku, name, description, price_cents,
 * currency, category, available}; with_levels adds the stock levels of the
 * AdminProduct: on_hand, reserved, low_stock_threshold, low. */
void gw_view_product(mp_writer *w, const proj_product *p, bool with_levels);

/* The order view of API.md: {id, status, items, total_cents, currency,
 * created_at, updated_at, history, payment, refund, shipment: {carrier,
 * tracking_number, shipped_at, delivered_at|null}|null}, showing the first
 * history_count entries of s's history (at most ORDER_HISTORY_MAX; the
 * status is the last one shown). payment (NULL: none known) is the order's
 * payment aggregate as the payments read model has it (ADR 028):
 *   payment  {brand, last4} once paid; {status: "requires_action",
 *            next_action: {type: "redirect_to_url", url}} while the order
 *            awaits payment and the current attempt waits for 3-D Secure;
 *            null otherwise;
 *   refund   {status: "pending"|"succeeded"|"failed", amount_cents} for an
 *            order cancelled after payment (pending until the payment role
 *            asked the provider; the amount the order's total until the
 *            provider reports its own), else null.
 * Never the customer's email, the token hash or the request hash. Returns
 * false, writing nothing, when no entry is shown (an order always has one). */
bool gw_view_order(mp_writer *w, const char *id, const order_state *s, size_t history_count,
                   const payment_state *payment);

/* One history entry: {status, at, reason|null}. */
void gw_view_history_entry(mp_writer *w, const order_history_entry *h);

/* The cart as GET /cart shows it: {items:[{product_id, name,
 * unit_price_cents, quantity, line_total_cents}], total_cents,
 * currency|null}, plus notices:[{product_id, message}] for dropped lines. */
void gw_view_quote(mp_writer *w, const proj_quote *q);

#endif
