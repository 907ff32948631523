/* gw_views.c — the API's shared JSON objects written as text (see
 * gw_views.h). Each object is a fixed sequence of members: a literal key,
 * then a string (mp_json_string escapes it), an integer, a time or null. */
#include "gw_views.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define NOTICE_DROPPED "this product is no longer sold and was removed from your cart"

/* ---- members --------------------------------------------------------------- */

/* The text before a member's value: `,"name":` (every object starts with a
 * literal `{"first":`). Keys are literals, so they are written as they are. */
#define MEMBER(name) ",\"" name "\":"

static void raw(mp_writer *w, const char *text)
{
	mp_write_raw(w, text, strlen(text));
}

/* The comma before every element of an array but the first (index i). */
static void separate(mp_writer *w, size_t i)
{
	if (i > 0)
		raw(w, ",");
}

static void string(mp_writer *w, const char *value)
{
	mp_json_string(w, value, strlen(value));
}

static void member_string(mp_writer *w, const char *member, const char *value)
{
	raw(w, member);
	string(w, value);
}

/* A string member that is null when value is "". */
static void member_string_or_null(mp_writer *w, const char *member, const char *value)
{
	raw(w, member);
	if (value[0] != '\0')
		string(w, value);
	else
		raw(w, "null");
}

static void member_int(mp_writer *w, const char *member, int64_t value)
{
	char number[24]; /* 20 digits and a sign at most */
	raw(w, member);
	snprintf(number, sizeof number, "%" PRId64, value);
	raw(w, number);
}

static void member_time(mp_writer *w, const char *member, int64_t ms)
{
	char text[GW_VIEW_TIME_MAX];
	gw_view_format_time(ms, text);
	member_string(w, member, text);
}

/* ---- times ----------------------------------------------------------------- */

void gw_view_format_time(int64_t ms, char out[GW_VIEW_TIME_MAX])
{
	struct tm tm;
	int64_t frac = ms % 1000;
	if (frac < 0) /* before the epoch: the second below, and a positive fraction */
		frac += 1000;
	time_t seconds = (time_t)((ms - frac) / 1000);
	if (gmtime_r(&seconds, &tm) == NULL) {
		snprintf(out, GW_VIEW_TIME_MAX, "1970-01-01T00:00:00.000Z");
		return;
	}
	size_t n = strftime(out, GW_VIEW_TIME_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, GW_VIEW_TIME_MAX - n, ".%03dZ", (int)frac);
}

json_t *gw_view_time_json(int64_t ms, bool zero_is_null)
{
	char text[GW_VIEW_TIME_MAX];
	if (zero_is_null && ms <= 0)
		return json_null();
	gw_view_format_time(ms, text);
	return json_string(text);
}

static bool digits(const char *text, size_t n, int *out)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
		v = v * 10 + (text[i] - '0');
	}
	*out = v;
	return true;
}

bool gw_view_parse_time(const char *text, int64_t *out_ms)
{
	int year, month, day, hour, minute, second, off_h = 0, off_m = 0;
	int64_t ms = 0;
	if (text == NULL || strlen(text) < 20 || text[4] != '-' || text[7] != '-' ||
	    (text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':' ||
	    !digits(text, 4, &year) || !digits(text + 5, 2, &month) || !digits(text + 8, 2, &day) ||
	    !digits(text + 11, 2, &hour) || !digits(text + 14, 2, &minute) || !digits(text + 17, 2, &second))
		return false;
	if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
		return false;
	const char *p = text + 19;
	if (*p == '.') {
		int n = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, n++)
			if (n < 3)
				ms = ms * 10 + (*p - '0');
		if (n == 0 || n > 9)
			return false;
		for (; n < 3; n++)
			ms *= 10;
	}
	int sign = 0;
	if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0')
		sign = 0;
	else if ((p[0] == '+' || p[0] == '-') && strlen(p) == 6 && p[3] == ':' && digits(p + 1, 2, &off_h) &&
	         digits(p + 4, 2, &off_m) && off_h <= 23 && off_m <= 59)
		sign = p[0] == '+' ? 1 : -1;
	else
		return false;
	struct tm tm = {.tm_year = year - 1900,
	                .tm_mon = month - 1,
	                .tm_mday = day,
	                .tm_hour = hour,
	                .tm_min = minute,
	                .tm_sec = second};
	time_t secs = timegm(&tm);
	if (tm.tm_mday != day) /* 31 February and the like were normalised */
		return false;
	*out_ms = ((int64_t)secs - sign * ((int64_t)off_h * 3600 + off_m * 60)) * 1000 + ms;
	return true;
}

/* ---- products -------------------------------------------------------------- */

void gw_view_product(mp_writer *w, const proj_product *p, bool with_levels)
{
	raw(w, "{\"id\":");
	string(w, p->id);
	member_string(w, MEMBER("sku"), p->sku);
	member_string(w, MEMBER("name"), p->name);
	member_string(w, MEMBER("description"), p->description);
	member_int(w, MEMBER("price_cents"), p->price_cents);
	member_string(w, MEMBER("currency"), p->currency);
	member_string(w, MEMBER("category"), p->category);
	member_int(w, MEMBER("available"), p->available);
	if (with_levels) {
		member_int(w, MEMBER("on_hand"), p->on_hand);
		member_int(w, MEMBER("reserved"), p->reserved);
		member_int(w, MEMBER("low_stock_threshold"), p->low_stock_threshold);
		raw(w, p->low ? MEMBER("low") "true" : MEMBER("low") "false");
	}
	raw(w, "}");
}

/* ---- orders ---------------------------------------------------------------- */

void gw_view_history_entry(mp_writer *w, const order_history_entry *h)
{
	raw(w, "{\"status\":");
	string(w, order_status_name(h->status));
	member_time(w, MEMBER("at"), h->at_ms);
	member_string_or_null(w, MEMBER("reason"), h->reason);
	raw(w, "}");
}

/* One line of an order or a cart: {product_id, name, unit_price_cents,
 * quantity} and, for a cart, line_total_cents. */
static void write_line(mp_writer *w, const char *product_id, const char *name, int64_t unit_price_cents,
                       int64_t quantity, bool with_total)
{
	raw(w, "{\"product_id\":");
	string(w, product_id);
	member_string(w, MEMBER("name"), name);
	member_int(w, MEMBER("unit_price_cents"), unit_price_cents);
	member_int(w, MEMBER("quantity"), quantity);
	if (with_total) /* bounded: 999 * 10^10 (actors/cart.h) */
		member_int(w, MEMBER("line_total_cents"), unit_price_cents * quantity);
	raw(w, "}");
}

/* shipment: {carrier, tracking_number, shipped_at, delivered_at|null} once
 * a shown history entry is shipped, else null (ADR 028 §3). */
static void write_shipment(mp_writer *w, const order_state *s, size_t history_count)
{
	bool shipped = false, delivered = false;
	for (size_t i = 0; i < history_count; i++) {
		shipped |= s->history[i].status == ORDER_SHIPPED;
		delivered |= s->history[i].status == ORDER_DELIVERED;
	}
	raw(w, MEMBER("shipment"));
	if (!shipped || s->carrier[0] == '\0') {
		raw(w, "null");
		return;
	}
	raw(w, "{\"carrier\":");
	string(w, s->carrier);
	member_string(w, MEMBER("tracking_number"), s->tracking_number);
	member_time(w, MEMBER("shipped_at"), s->shipped_at_ms);
	if (delivered)
		member_time(w, MEMBER("delivered_at"), s->delivered_at_ms);
	else
		raw(w, MEMBER("delivered_at") "null");
	raw(w, "}");
}

/* The current attempt of payment when it waits for 3-D Secure; NULL otherwise. */
static const payment_attempt *awaiting_action(const payment_state *payment)
{
	const payment_attempt *a = payment != NULL ? payment_current_attempt(payment) : NULL;
	return a != NULL && payment->status == PAYMENT_STATUS_REQUIRES_ACTION && a->action_url[0] != '\0'
	               ? a
	               : NULL;
}

static void write_payment(mp_writer *w, const order_state *s, order_status status,
                          const payment_state *payment)
{
	const payment_attempt *action = status == ORDER_AWAITING_PAYMENT ? awaiting_action(payment) : NULL;
	raw(w, MEMBER("payment"));
	if ((order_status_is_paid(status) || s->cancelled_after_payment) && s->brand[0] != '\0') {
		raw(w, "{\"brand\":");
		string(w, s->brand);
		member_string(w, MEMBER("last4"), s->last4);
		raw(w, "}");
	} else if (action != NULL) {
		raw(w,
		    "{\"status\":\"requires_action\"" MEMBER("next_action") "{\"type\":\"redirect_to_url\"");
		member_string(w, MEMBER("url"), action->action_url);
		raw(w, "}}");
	} else {
		raw(w, "null");
	}
}

/* The refund of an order cancelled after payment: the last charge's refund
 * the provider was asked for, else pending for the order's total. */
static void write_refund(mp_writer *w, const order_state *s, order_status status, int64_t total,
                         const payment_state *payment)
{
	static const char *const names[] = {
	        [PAYMENT_REFUND_STATUS_NONE] = "pending",
	        [PAYMENT_REFUND_STATUS_PENDING] = "pending",
	        [PAYMENT_REFUND_STATUS_REFUNDED] = "succeeded",
	        [PAYMENT_REFUND_STATUS_FAILED] = "failed",
	};
	const payment_charge *charge = NULL;
	raw(w, MEMBER("refund"));
	if (status != ORDER_CANCELLED || !s->cancelled_after_payment) {
		raw(w, "null");
		return;
	}
	for (size_t i = 0; payment != NULL && i < payment->charge_count; i++)
		if (payment->charges[i].refund != PAYMENT_REFUND_STATUS_NONE)
			charge = &payment->charges[i];
	payment_refund_status refund = charge != NULL ? charge->refund : PAYMENT_REFUND_STATUS_NONE;
	raw(w, "{\"status\":");
	string(w, names[refund]);
	member_int(w, MEMBER("amount_cents"),
	           charge != NULL && charge->refund_amount_cents > 0 ? charge->refund_amount_cents : total);
	raw(w, "}");
}

bool gw_view_order(mp_writer *w, const char *id, const order_state *s, size_t history_count,
                   const payment_state *payment)
{
	int64_t total = 0;
	if (history_count > s->history_count)
		history_count = s->history_count;
	if (history_count == 0)
		return false;
	const order_history_entry *last = &s->history[history_count - 1];
	order_total(s, &total); /* bounded by the decider (actors/order.h) */
	raw(w, "{\"id\":");
	string(w, id);
	member_string(w, MEMBER("status"), order_status_name(last->status));
	raw(w, MEMBER("items") "[");
	for (size_t i = 0; i < s->line_count; i++) {
		const order_line *l = &s->lines[i];
		separate(w, i);
		write_line(w, l->product_id, l->name, l->unit_price_cents, l->quantity, false);
	}
	raw(w, "]");
	member_int(w, MEMBER("total_cents"), total);
	member_string(w, MEMBER("currency"), s->currency);
	member_time(w, MEMBER("created_at"), s->history[0].at_ms);
	member_time(w, MEMBER("updated_at"), last->at_ms);
	raw(w, MEMBER("history") "[");
	for (size_t i = 0; i < history_count; i++) {
		separate(w, i);
		gw_view_history_entry(w, &s->history[i]);
	}
	raw(w, "]");
	write_payment(w, s, last->status, payment);
	write_refund(w, s, last->status, total, payment);
	write_shipment(w, s, history_count);
	raw(w, "}");
	return true;
}

/* ---- the cart -------------------------------------------------------------- */

void gw_view_quote(mp_writer *w, const proj_quote *q)
{
	raw(w, "{\"items\":[");
	for (size_t i = 0; i < q->count; i++) {
		const cart_line *l = &q->lines[i];
		separate(w, i);
		write_line(w, l->product_id, l->name, l->unit_price_cents, l->quantity, true);
	}
	raw(w, "]");
	member_int(w, MEMBER("total_cents"), q->total_cents);
	member_string_or_null(w, MEMBER("currency"), q->currency);
	if (q->dropped_count > 0) {
		raw(w, MEMBER("notices") "[");
		for (size_t i = 0; i < q->dropped_count; i++) {
			raw(w, i > 0 ? ",{\"product_id\":" : "{\"product_id\":");
			string(w, q->dropped[i]);
			member_string(w, MEMBER("message"), NOTICE_DROPPED);
			raw(w, "}");
		}
		raw(w, "]");
	}
	raw(w, "}");
}
