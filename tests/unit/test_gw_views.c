/* test_gw_views.c — the API's shared JSON writers (gateway/gw_views.c): each
 * view is parsed back with jansson and compared member by member with what
 * API.md promises (the public and the admin product from one writer, the
 * order as placed and once paid, a history entry, a cart quote with its
 * notices), and hostile text stays inside its string. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "gw_views.h"

static mp_writer *w;

static void setup(void)
{
	w = mp_writer_create();
	cr_assert_not_null(w);
}

static void teardown(void)
{
	mp_writer_destroy(w);
}

TestSuite(gw_views, .init = setup, .fini = teardown);

/* The text written so far, parsed (the caller decrefs). */
static json_t *parsed(void)
{
	json_error_t error;
	cr_assert_eq(mp_writer_status(w), ORN_OK);
	json_t *j = json_loadb((const char *)mp_writer_data(w), mp_writer_size(w), JSON_REJECT_DUPLICATES,
	                       &error);
	cr_assert_not_null(j, "%.*s: %s", (int)mp_writer_size(w), (const char *)mp_writer_data(w),
	                   error.text);
	return j;
}

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	cr_assert_not_null(s, "%s", key);
	return s;
}

static json_int_t num(const json_t *o, const char *key)
{
	cr_assert(json_is_integer(json_object_get(o, key)), "%s", key);
	return json_integer_value(json_object_get(o, key));
}

static proj_product product(void)
{
	proj_product p = {.price_cents = 2750,
	                  .on_hand = 9,
	                  .reserved = 2,
	                  .available = 7,
	                  .low_stock_threshold = 5,
	                  .low = false,
	                  .has_stock = true};
	strcpy(p.id, "p1");
	strcpy(p.sku, "TEA-1");
	strcpy(p.name, "Teapot \"Big\" \\ <b>\n");
	strcpy(p.description, "Holds \xE2\x80\xA8 a litre");
	strcpy(p.currency, "EUR");
	strcpy(p.category, "kitchen");
	return p;
}

Test(gw_views, one_product_writer_serves_the_public_and_the_admin_view)
{
	proj_product p = product();
	gw_view_product(w, &p, false);
	json_t *j = parsed();
	cr_assert_eq(json_object_size(j), 8);
	cr_assert_str_eq(str(j, "id"), "p1");
	cr_assert_str_eq(str(j, "sku"), "TEA-1");
	cr_assert_str_eq(str(j, "name"), p.name, "escaped and back");
	cr_assert_str_eq(str(j, "description"), p.description);
	cr_assert_eq(num(j, "price_cents"), 2750);
	cr_assert_str_eq(str(j, "currency"), "EUR");
	cr_assert_str_eq(str(j, "category"), "kitchen");
	cr_assert_eq(num(j, "available"), 7);
	cr_assert_null(json_object_get(j, "on_hand"), "no stock levels in the public view");
	json_decref(j);

	mp_writer_reset(w);
	p.low = true;
	gw_view_product(w, &p, true);
	j = parsed();
	cr_assert_eq(json_object_size(j), 12);
	cr_assert_eq(num(j, "on_hand"), 9);
	cr_assert_eq(num(j, "reserved"), 2);
	cr_assert_eq(num(j, "low_stock_threshold"), 5);
	cr_assert(json_is_true(json_object_get(j, "low")));
	json_decref(j);
}

static order_state placed_order(void)
{
	order_state s;
	order_state_init(&s);
	s.status = ORDER_PENDING;
	s.line_count = 2;
	strcpy(s.lines[0].product_id, "p1");
	strcpy(s.lines[0].name, "Teapot");
	s.lines[0].unit_price_cents = 2750;
	s.lines[0].quantity = 2;
	strcpy(s.lines[1].product_id, "p2");
	strcpy(s.lines[1].name, "Cup");
	s.lines[1].unit_price_cents = 500;
	s.lines[1].quantity = 1;
	strcpy(s.currency, "EUR");
	s.history[0] = (order_history_entry){.status = ORDER_PENDING, .at_ms = 1767225600250};
	s.history_count = 1;
	return s;
}

Test(gw_views, an_order_as_placed)
{
	order_state s = placed_order();
	cr_assert(gw_view_order(w, "o1", &s, ORDER_HISTORY_MAX, NULL));
	json_t *j = parsed();
	cr_assert_eq(json_object_size(j), 11);
	cr_assert_str_eq(str(j, "id"), "o1");
	cr_assert_str_eq(str(j, "status"), "pending");
	cr_assert_eq(num(j, "total_cents"), 6000);
	cr_assert_str_eq(str(j, "currency"), "EUR");
	cr_assert_str_eq(str(j, "created_at"), "2026-01-01T00:00:00.250Z");
	cr_assert_str_eq(str(j, "updated_at"), "2026-01-01T00:00:00.250Z");
	json_t *items = json_object_get(j, "items");
	cr_assert_eq(json_array_size(items), 2);
	cr_assert_str_eq(str(json_array_get(items, 1), "name"), "Cup");
	cr_assert_eq(num(json_array_get(items, 0), "quantity"), 2);
	cr_assert_null(json_object_get(json_array_get(items, 0), "line_total_cents"));
	json_t *history = json_object_get(j, "history");
	cr_assert_eq(json_array_size(history), 1);
	cr_assert(json_is_null(json_object_get(json_array_get(history, 0), "reason")));
	cr_assert(json_is_null(json_object_get(j, "payment")));
	cr_assert(json_is_null(json_object_get(j, "refund")));
	cr_assert(json_is_null(json_object_get(j, "shipment")));
	json_decref(j);
}

/* An order awaiting payment whose payment asked for 3-D Secure, or, once it
 * was paid and cancelled, whose refund is under way. */
static payment_state *payment_with(payment_status status, const char *url)
{
	static payment_state p;
	payment_state_init(&p);
	p.status = status;
	p.attempt_count = 1;
	strcpy(p.attempts[0].provider_key, "o1:pay");
	strcpy(p.attempts[0].intent_id, "pi_1");
	snprintf(p.attempts[0].action_url, sizeof p.attempts[0].action_url, "%s", url);
	return &p;
}

Test(gw_views, a_payment_waiting_for_3ds_shows_where_to_go_while_the_order_awaits_payment)
{
	order_state s = placed_order();
	s.history[1] = (order_history_entry){.status = ORDER_AWAITING_CONFIRMATION, .at_ms = 1767225601000};
	s.history[2] = (order_history_entry){.status = ORDER_AWAITING_PAYMENT, .at_ms = 1767225602000};
	s.history_count = 3;
	s.status = ORDER_AWAITING_PAYMENT;
	payment_state *p =
	        payment_with(PAYMENT_STATUS_REQUIRES_ACTION, "http://psp.test/v1/3ds/pi_1?a=\"b\"");
	cr_assert(gw_view_order(w, "o1", &s, ORDER_HISTORY_MAX, p));
	json_t *j = parsed();
	json_t *payment = json_object_get(j, "payment");
	cr_assert_str_eq(str(payment, "status"), "requires_action");
	json_t *next = json_object_get(payment, "next_action");
	cr_assert_str_eq(str(next, "type"), "redirect_to_url");
	cr_assert_str_eq(str(next, "url"), "http://psp.test/v1/3ds/pi_1?a=\"b\"", "escaped, read back whole");
	json_decref(j);

	/* settled (declined, or the attempt has no page), or the order moved on: no challenge */
	mp_writer_reset(w);
	p = payment_with(PAYMENT_STATUS_DECLINED, "http://psp.test/v1/3ds/pi_1");
	cr_assert(gw_view_order(w, "o1", &s, ORDER_HISTORY_MAX, p));
	j = parsed();
	cr_assert(json_is_null(json_object_get(j, "payment")));
	json_decref(j);
	mp_writer_reset(w);
	p = payment_with(PAYMENT_STATUS_REQUIRES_ACTION, "http://psp.test/v1/3ds/pi_1");
	cr_assert(gw_view_order(w, "o1", &s, 2, p)); /* as it was awaiting confirmation */
	j = parsed();
	cr_assert(json_is_null(json_object_get(j, "payment")));
	json_decref(j);
}

Test(gw_views, an_order_cancelled_after_payment_shows_its_refund)
{
	order_state s = placed_order();
	s.history[1] = (order_history_entry){.status = ORDER_AWAITING_CONFIRMATION, .at_ms = 1767225601000};
	s.history[2] = (order_history_entry){.status = ORDER_AWAITING_PAYMENT, .at_ms = 1767225602000};
	s.history[3] = (order_history_entry){.status = ORDER_CONFIRMED, .at_ms = 1767225603000};
	s.history[4] = (order_history_entry){.status = ORDER_CANCELLED, .at_ms = 1767225604000};
	strcpy(s.history[4].reason, "customer");
	s.history_count = 5;
	s.status = ORDER_CANCELLED;
	s.cancelled_after_payment = true;
	strcpy(s.brand, "visa");
	strcpy(s.last4, "4242");

	/* the payment role has not asked the provider yet: pending, the order's total */
	cr_assert(gw_view_order(w, "o1", &s, ORDER_HISTORY_MAX, NULL));
	json_t *j = parsed();
	json_t *refund = json_object_get(j, "refund");
	cr_assert_str_eq(str(refund, "status"), "pending");
	cr_assert_eq(num(refund, "amount_cents"), 6000);
	cr_assert_str_eq(str(json_object_get(j, "payment"), "last4"), "4242");
	json_decref(j);

	payment_state *p = payment_with(PAYMENT_STATUS_SUCCEEDED, "");
	p->charge_count = 1;
	strcpy(p->charges[0].intent_id, "pi_1");
	static const struct {
		payment_refund_status status;
		const char *name;
	} cases[] = {{PAYMENT_REFUND_STATUS_PENDING, "pending"},
	             {PAYMENT_REFUND_STATUS_REFUNDED, "succeeded"},
	             {PAYMENT_REFUND_STATUS_FAILED, "failed"}};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		p->charges[0].refund = cases[i].status;
		p->charges[0].refund_amount_cents = 5999;
		mp_writer_reset(w);
		cr_assert(gw_view_order(w, "o1", &s, ORDER_HISTORY_MAX, p));
		j = parsed();
		refund = json_object_get(j, "refund");
		cr_assert_str_eq(str(refund, "status"), cases[i].name);
		cr_assert_eq(num(refund, "amount_cents"), 5999, "the provider's amount");
		json_decref(j);
	}

	/* a cancel before payment refunds nothing */
	s.cancelled_after_payment = false;
	mp_writer_reset(w);
	cr_assert(gw_view_order(w, "o1", &s, ORDER_HISTORY_MAX, p));
	j = parsed();
	cr_assert(json_is_null(json_object_get(j, "refund")));
	json_decref(j);
}

Test(gw_views, a_shipped_order_shows_its_shipment_and_a_delivered_one_when)
{
	order_state s = placed_order();
	s.history[1] = (order_history_entry){.status = ORDER_AWAITING_CONFIRMATION, .at_ms = 1767225601000};
	s.history[2] = (order_history_entry){.status = ORDER_AWAITING_PAYMENT, .at_ms = 1767225602000};
	s.history[3] = (order_history_entry){.status = ORDER_CONFIRMED, .at_ms = 1767225603000};
	s.history[4] = (order_history_entry){.status = ORDER_SHIPPED, .at_ms = 1767225604000};
	s.history[5] = (order_history_entry){.status = ORDER_DELIVERED, .at_ms = 1767225605000};
	s.history_count = 6;
	s.status = ORDER_DELIVERED;
	strcpy(s.brand, "visa");
	strcpy(s.last4, "4242");
	strcpy(s.carrier, "DHL \"Express\"");
	strcpy(s.tracking_number, "JD<1>");
	s.shipped_at_ms = 1767225604000;
	s.delivered_at_ms = 1767225605000;

	cr_assert(gw_view_order(w, "o1", &s, 5, NULL)); /* up to shipped */
	json_t *j = parsed();
	cr_assert_str_eq(str(j, "status"), "shipped");
	json_t *shipment = json_object_get(j, "shipment");
	cr_assert_str_eq(str(shipment, "carrier"), "DHL \"Express\"");
	cr_assert_str_eq(str(shipment, "tracking_number"), "JD<1>");
	cr_assert_str_eq(str(shipment, "shipped_at"), "2026-01-01T00:00:04.000Z");
	cr_assert(json_is_null(json_object_get(shipment, "delivered_at")));
	cr_assert_str_eq(str(json_object_get(j, "payment"), "last4"), "4242", "a shipped order is paid");
	json_decref(j);

	mp_writer_reset(w);
	cr_assert(gw_view_order(w, "o1", &s, ORDER_HISTORY_MAX, NULL));
	j = parsed();
	cr_assert_str_eq(str(j, "status"), "delivered");
	cr_assert_eq(json_array_size(json_object_get(j, "history")), 6);
	shipment = json_object_get(j, "shipment");
	cr_assert_str_eq(str(shipment, "delivered_at"), "2026-01-01T00:00:05.000Z");
	json_decref(j);

	mp_writer_reset(w);
	cr_assert(gw_view_order(w, "o1", &s, 4, NULL)); /* confirmed: not shipped yet */
	j = parsed();
	cr_assert(json_is_null(json_object_get(j, "shipment")));
	json_decref(j);
}

Test(gw_views, an_order_shows_the_entries_asked_for_and_its_payment_once_paid)
{
	order_state s = placed_order();
	s.history[1] = (order_history_entry){.status = ORDER_AWAITING_CONFIRMATION, .at_ms = 1767225601000};
	s.history[2] = (order_history_entry){.status = ORDER_AWAITING_PAYMENT, .at_ms = 1767225602000};
	s.history[3] = (order_history_entry){.status = ORDER_CONFIRMED, .at_ms = 1767225603000};
	s.history_count = 4;
	s.status = ORDER_CONFIRMED;
	strcpy(s.brand, "visa");
	strcpy(s.last4, "4242");

	cr_assert(gw_view_order(w, "o1", &s, 2, NULL)); /* as the placement's answer shows it */
	json_t *j = parsed();
	cr_assert_str_eq(str(j, "status"), "awaiting_confirmation");
	cr_assert_eq(json_array_size(json_object_get(j, "history")), 2);
	cr_assert(json_is_null(json_object_get(j, "payment")), "not paid at that entry");
	json_decref(j);

	mp_writer_reset(w);
	cr_assert(gw_view_order(w, "o1", &s, 99, NULL)); /* more than there are: every one */
	j = parsed();
	cr_assert_str_eq(str(j, "status"), "confirmed");
	cr_assert_eq(json_array_size(json_object_get(j, "history")), 4);
	json_t *payment = json_object_get(j, "payment");
	cr_assert_str_eq(str(payment, "brand"), "visa");
	cr_assert_str_eq(str(payment, "last4"), "4242");
	cr_assert_str_eq(str(j, "updated_at"), "2026-01-01T00:00:03.000Z");
	json_decref(j);

	mp_writer_reset(w);
	cr_assert_not(gw_view_order(w, "o1", &s, 0, NULL), "no entry, no order");
	cr_assert_eq(mp_writer_size(w), 0);
}

Test(gw_views, a_history_entry_carries_its_reason)
{
	order_history_entry h = {.status = ORDER_CANCELLED, .at_ms = 0};
	strcpy(h.reason, "out_of_stock");
	gw_view_history_entry(w, &h);
	json_t *j = parsed();
	cr_assert_str_eq(str(j, "status"), "cancelled");
	cr_assert_str_eq(str(j, "at"), "1970-01-01T00:00:00.000Z");
	cr_assert_str_eq(str(j, "reason"), "out_of_stock");
	json_decref(j);
}

Test(gw_views, a_quote_with_line_totals_and_notices)
{
	proj_quote q;
	memset(&q, 0, sizeof q);
	strcpy(q.lines[0].product_id, "p2");
	strcpy(q.lines[0].name, "Cup");
	q.lines[0].unit_price_cents = 500;
	q.lines[0].quantity = 3;
	q.count = 1;
	q.total_cents = 1500;
	strcpy(q.currency, "USD");
	strcpy(q.dropped[0], "p1");
	q.dropped_count = 1;
	gw_view_quote(w, &q);
	json_t *j = parsed();
	cr_assert_eq(num(j, "total_cents"), 1500);
	cr_assert_str_eq(str(j, "currency"), "USD");
	json_t *item = json_array_get(json_object_get(j, "items"), 0);
	cr_assert_eq(num(item, "line_total_cents"), 1500);
	cr_assert_eq(num(item, "unit_price_cents"), 500);
	json_t *notice = json_array_get(json_object_get(j, "notices"), 0);
	cr_assert_str_eq(str(notice, "product_id"), "p1");
	cr_assert_not_null(strstr(str(notice, "message"), "no longer sold"));
	json_decref(j);

	mp_writer_reset(w);
	memset(&q, 0, sizeof q);
	gw_view_quote(w, &q); /* an empty cart */
	j = parsed();
	cr_assert_eq(json_array_size(json_object_get(j, "items")), 0);
	cr_assert(json_is_null(json_object_get(j, "currency")));
	cr_assert_null(json_object_get(j, "notices"), "notices only when a line was dropped");
	json_decref(j);
}

Test(gw_views, times_are_rfc3339_with_milliseconds)
{
	char text[GW_VIEW_TIME_MAX];
	gw_view_format_time(1767225600250, text);
	cr_assert_str_eq(text, "2026-01-01T00:00:00.250Z");
	gw_view_format_time(-1, text); /* before the epoch: the second below, a positive fraction */
	cr_assert_str_eq(text, "1969-12-31T23:59:59.999Z");
	json_t *t = gw_view_time_json(0, true);
	cr_assert(json_is_null(t));
	json_decref(t);
	t = gw_view_time_json(0, false);
	cr_assert_str_eq(json_string_value(t), "1970-01-01T00:00:00.000Z");
	json_decref(t);
}

Test(gw_views, rfc3339_times_parse_with_fractions_and_offsets_and_nothing_else)
{
	int64_t ms = 0;
	cr_assert(gw_view_parse_time("2026-01-01T00:00:00Z", &ms));
	cr_assert_eq(ms, 1767225600000);
	cr_assert(gw_view_parse_time("2026-01-01T00:00:00.250Z", &ms));
	cr_assert_eq(ms, 1767225600250);
	cr_assert(gw_view_parse_time("2026-01-01t00:00:00.25z", &ms));
	cr_assert_eq(ms, 1767225600250);
	cr_assert(gw_view_parse_time("2026-01-01T01:30:00+01:30", &ms));
	cr_assert_eq(ms, 1767225600000);
	cr_assert(gw_view_parse_time("2025-12-31T23:00:00-01:00", &ms));
	cr_assert_eq(ms, 1767225600000);
	char text[GW_VIEW_TIME_MAX];
	gw_view_format_time(1767225600250, text); /* what the API writes, it reads */
	cr_assert(gw_view_parse_time(text, &ms));
	cr_assert_eq(ms, 1767225600250);
	const char *bad[] = {"",
	                     "yesterday",
	                     "2026-01-01",
	                     "2026-01-01T00:00:00",
	                     "2026-01-01 00:00:00Z",
	                     "2026-02-30T00:00:00Z",
	                     "2026-13-01T00:00:00Z",
	                     "2026-01-01T24:00:00Z",
	                     "2026-01-01T00:00:00.Z",
	                     "2026-01-01T00:00:00+0100",
	                     "2026-01-01T00:00:00+25:00",
	                     "2026-01-01T00:00:00Zjunk",
	                     "+026-01-01T00:00:00Z"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_not(gw_view_parse_time(bad[i], &ms), "%s", bad[i]);
	cr_assert_not(gw_view_parse_time(NULL, &ms));
}
