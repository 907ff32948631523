/* test_mail_render.c — unit tests of the email templates (mail/mail_render.c).
 *
 * Given an order state as the order aggregate leaves it after an event, when
 * its email is rendered, then the subject, both parts and the message bytes
 * hold the facts of that status; every value in the HTML part is escaped; no
 * value can add a header; the message is CRLF throughout with short lines;
 * a plain ASCII part travels as it is (the link readable in the raw file),
 * any other as quoted-printable. */
#include <criterion/criterion.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"
#include "mail_render.h"
#include "mime.h"

#define T0       1795308190000LL /* Sun, 22 Nov 2026 00:43:10 UTC */
#define TOKEN    "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde"
#define HOSTILE  "<script>alert(\"x\")</script> & 'co'"
#define ORDER_ID "ord-42"

static order_state order;
static mail_message msg;
static mail_input in;

static void add_line(const char *product_id, const char *name, int64_t price, int64_t quantity)
{
	order_line *l = &order.lines[order.line_count++];
	snprintf(l->product_id, sizeof l->product_id, "%s", product_id);
	snprintf(l->name, sizeof l->name, "%s", name);
	l->unit_price_cents = price;
	l->quantity = quantity;
}

static void push_history(order_status status, const char *reason)
{
	order_history_entry *h = &order.history[order.history_count++];
	h->status = status;
	h->at_ms = T0;
	snprintf(h->reason, sizeof h->reason, "%s", reason);
	order.status = status;
}

static void setup(void)
{
	order_state_init(&order);
	strcpy(order.customer_id, "u1");
	strcpy(order.customer_email, "ann@example.com");
	strcpy(order.currency, "EUR");
	add_line("p1", "Blue mug", 250, 2);
	add_line("p2", "Teapot", 1500, 1);
	order.confirmation_deadline_ms = T0 + 15 * 60 * 1000;
	push_history(ORDER_PENDING, "");
	memset(&msg, 0, sizeof msg);
	in = (mail_input){.order_id = ORDER_ID,
	                  .order = &order,
	                  .event_time_ms = T0 - 5,
	                  .date_ms = T0,
	                  .from = "Orion Shop <shop@orion.test>",
	                  .public_url = "https://shop.test",
	                  .token = TOKEN};
}

static void teardown(void)
{
	mail_message_dispose(&msg);
}

TestSuite(mail_render, .init = setup, .fini = teardown);

static void render_ok(void)
{
	cr_assert_eq(mail_render(&in, &msg), ORN_OK);
	cr_assert_not_null(msg.data);
	cr_assert_eq(strlen(msg.data), msg.len);
}

/* The headers of msg.data: everything before the first empty line. */
static char *headers_of(const char *data)
{
	const char *end = strstr(data, "\r\n\r\n");
	cr_assert_not_null(end);
	return strndup(data, (size_t)(end - data) + 2);
}

/* The decoded body of the part with the given content type; its transfer
 * encoding goes to encoding (NULL: not wanted). */
static char *part_as(const char *data, const char *type, char encoding[32])
{
	char cte[32];
	char *body = mime_part(data, type, cte, sizeof cte);
	cr_assert_not_null(body, "no decodable part %s in:\n%s", type, data);
	if (encoding != NULL)
		snprintf(encoding, 32, "%s", cte);
	return body;
}

static char *part_of(const char *data, const char *type)
{
	return part_as(data, type, NULL);
}

static void assert_contains(const char *haystack, const char *needle)
{
	cr_assert_not_null(strstr(haystack, needle), "missing \"%s\" in:\n%s", needle, haystack);
}

static void assert_lacks(const char *haystack, const char *needle)
{
	cr_assert_null(strstr(haystack, needle), "unexpected \"%s\" in:\n%s", needle, haystack);
}

/* The wire form (RFC 5322 and 2045): every line ends in CRLF, no bare CR or
 * LF, only ASCII; the header lines and the lines of a quoted-printable part
 * at most 78 and 76 characters, a 7bit line at most 998 octets; no line of a
 * part starts with "--" unless it is the boundary, no 7bit line ends in white
 * space, and an "=" in a quoted-printable part is a soft break or =XX. */
static void assert_wire_form(const char *data, size_t len)
{
	enum { HEADERS, PART_HEADERS, PLAIN, QP } where = HEADERS;
	bool qp = false; /* the part's headers name quoted-printable */
	for (size_t i = 0, start = 0; i < len; i++) {
		cr_assert(data[i] > 0 && (unsigned char)data[i] < 0x80, "not ASCII at %zu", i);
		if (data[i] == '\n')
			cr_assert(i > 0 && data[i - 1] == '\r', "bare LF at %zu", i);
		if (data[i] != '\r')
			continue;
		cr_assert(i + 1 < len && data[i + 1] == '\n', "bare CR at %zu", i);
		const char *line = data + start;
		size_t n = i - start;
		if (strncmp(line, "--=_orion_alternative", 21) == 0) {
			where = PART_HEADERS;
			qp = false;
		} else if (where == HEADERS || where == PART_HEADERS) {
			cr_assert_leq(n, 78, "header line too long at %zu", start);
			qp |= n == 43 &&
			      strncmp(line, "Content-Transfer-Encoding: quoted-printable", 43) == 0;
			if (n == 0 && where == PART_HEADERS)
				where = qp ? QP : PLAIN;
		} else {
			cr_assert(n < 2 || strncmp(line, "--", 2) != 0, "a body line starts with -- at %zu",
			          start);
			if (where == QP) {
				cr_assert_leq(n, 76, "quoted-printable line too long at %zu", start);
				for (size_t k = 0; k < n; k++)
					if (line[k] == '=')
						cr_assert(k + 1 == n ||
						                  (isxdigit((unsigned char)line[k + 1]) &&
						                   isxdigit((unsigned char)line[k + 2])),
						          "a bare = at %zu", start + k);
			} else {
				cr_assert_leq(n, 998, "7bit line too long at %zu", start);
			}
			cr_assert(n == 0 || (line[n - 1] != ' ' && line[n - 1] != '\t'),
			          "white space at the end of the line at %zu", start);
		}
		i++;
		start = i + 1;
	}
	cr_assert(len >= 2 && data[len - 2] == '\r' && data[len - 1] == '\n');
}

/* The facts every email carries: items, total, id, status, headers. */
static void assert_common(const char *status, const char *subject)
{
	char *h = headers_of(msg.data), *text = part_of(msg.data, "text/plain"),
	     *html = part_of(msg.data, "text/html");
	char line[256];
	cr_assert_str_eq(msg.subject, subject);
	snprintf(line, sizeof line, "\r\nSubject: %s\r\n", subject);
	assert_contains(h, line);
	assert_contains(h, "\r\nTo: ann@example.com\r\n");
	assert_contains(h, "\r\nFrom: Orion Shop <shop@orion.test>\r\n");
	cr_assert_eq(strncmp(h, "Date: Sun, 22 Nov 2026 00:43:10 +0000\r\n", 39), 0);
	snprintf(line, sizeof line, "\r\nMessage-ID: <" ORDER_ID ".%s@orion>\r\n", status);
	assert_contains(h, line);
	snprintf(line, sizeof line, "\r\nX-Orion-Event-Time: %lld\r\n", (long long)(T0 - 5));
	assert_contains(h, line);
	assert_contains(h, "\r\nMIME-Version: 1.0\r\n");
	assert_contains(h, "\r\nContent-Type: multipart/alternative; boundary=\"=_orion_alternative\"\r\n");
	cr_assert_str_eq(text, msg.text);
	cr_assert_str_eq(html, msg.html);
	for (int part = 0; part < 2; part++) {
		const char *body = part == 0 ? text : html;
		assert_contains(body, "Blue mug");
		assert_contains(body, "Teapot");
		assert_contains(body, "2.50 EUR");
		assert_contains(body, "15.00 EUR");
		assert_contains(body, "20.00 EUR"); /* 2 x 2.50 + 15.00 */
		assert_contains(body, ORDER_ID);
		snprintf(line, sizeof line, "Status: %s", status);
		assert_contains(body, line);
	}
	assert_contains(text, "  2 x Blue mug at 2.50 EUR\r\n");
	assert_contains(html, "<td>Blue mug</td><td>2</td><td>2.50 EUR</td>");
	assert_contains(msg.data, "--=_orion_alternative--\r\n");
	assert_wire_form(msg.data, msg.len);
	free(h);
	free(text);
	free(html);
}

Test(mail_render, events_map_to_the_statuses_that_send_email)
{
	cr_assert_eq(mail_status_for_event(ORDER_PLACED), ORDER_NONE);
	cr_assert_eq(mail_status_for_event(ORDER_RESERVED), ORDER_AWAITING_CONFIRMATION);
	cr_assert_eq(mail_status_for_event(ORDER_CONFIRMED_BY_CUSTOMER), ORDER_AWAITING_PAYMENT);
	cr_assert_eq(mail_status_for_event(ORDER_PAID), ORDER_CONFIRMED);
	cr_assert_eq(mail_status_for_event(ORDER_CANCELLED_EVENT), ORDER_CANCELLED);
	cr_assert_eq(mail_status_for_event(ORDER_PAYMENT_FAILED_EVENT), ORDER_PAYMENT_FAILED);
	cr_assert_eq(mail_status_for_event(ORDER_SHIPPED_EVENT), ORDER_SHIPPED);
	cr_assert_eq(mail_status_for_event(ORDER_DELIVERED_EVENT), ORDER_DELIVERED);
	cr_assert_eq(mail_status_for_event((order_event_kind)99), ORDER_NONE);
}

Test(mail_render, the_confirmation_request_carries_the_link_with_token_and_id)
{
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	render_ok();
	cr_assert_eq(msg.status, ORDER_AWAITING_CONFIRMATION);
	assert_common("awaiting_confirmation", "Please confirm your order " ORDER_ID);
	const char *url = "https://shop.test/api/v1/orders/" ORDER_ID "/confirm?token=" TOKEN;
	assert_contains(msg.text, url);
	assert_contains(msg.html,
	                "<a href=\"https://shop.test/api/v1/orders/" ORDER_ID "/confirm?token=" TOKEN "\">");
	assert_contains(msg.text, "2026-11-22 00:58 UTC"); /* the confirmation deadline */
}

/* What a person opening the file in var/mail/new sees: plain ASCII parts go
 * as they are, so the link is there whole, on a line of its own. */
Test(mail_render, the_link_is_readable_in_the_raw_message)
{
	char encoding[32];
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	render_ok();
	assert_contains(msg.data,
	                "\r\nhttps://shop.test/api/v1/orders/" ORDER_ID "/confirm?token=" TOKEN "\r\n");
	free(part_as(msg.data, "text/plain", encoding));
	cr_assert_str_eq(encoding, "7bit");
	free(part_as(msg.data, "text/html", encoding));
	cr_assert_str_eq(encoding, "7bit");
	assert_contains(msg.data, "Content-Transfer-Encoding: 7bit\r\n");
	assert_lacks(msg.data, "base64");
}

/* A name with an accent: both parts go quoted-printable (lines of at most 76
 * characters, "=" and the UTF-8 bytes as =XX) and decode to what was written;
 * the link decodes whole, and in the raw file it is split only by soft breaks
 * (its "=" written =3D). */
Test(mail_render, a_part_that_is_not_plain_ascii_goes_quoted_printable)
{
	char encoding[32];
	const char *url = "https://shop.test/api/v1/orders/" ORDER_ID "/confirm?token=" TOKEN;
	snprintf(order.lines[0].name, sizeof order.lines[0].name, "Caf\xc3\xa9 cr\xc3\xa8me = 250 g");
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	render_ok();
	char *text = part_as(msg.data, "text/plain", encoding), *html;
	cr_assert_str_eq(encoding, "quoted-printable");
	cr_assert_str_eq(text, msg.text);
	assert_contains(text, url);
	assert_contains(text, "  2 x Caf\xc3\xa9 cr\xc3\xa8me = 250 g at 2.50 EUR\r\n");
	html = part_as(msg.data, "text/html", encoding);
	cr_assert_str_eq(encoding, "quoted-printable");
	cr_assert_str_eq(html, msg.html);
	assert_contains(msg.data, "Caf=C3=A9 cr=C3=A8me =3D 250 g");
	assert_contains(msg.data, "Content-Transfer-Encoding: quoted-printable\r\n");

	/* the raw text part with its soft breaks joined holds the link, "=" as =3D */
	const char *raw = strstr(msg.data, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	cr_assert_not_null(raw);
	char *joined = strdup(raw), *w = joined;
	for (const char *r = joined; *r != '\0'; r++) {
		if (r[0] == '=' && r[1] == '\r' && r[2] == '\n') {
			r += 2;
			continue;
		}
		*w++ = *r;
	}
	*w = '\0';
	assert_contains(joined,
	                "\r\nhttps://shop.test/api/v1/orders/" ORDER_ID "/confirm?token=3D" TOKEN "\r\n");
	/* a soft break falls after a space when its line has one: words stay whole */
	size_t soft = 0;
	for (const char *line = raw, *end; (end = strstr(line, "\r\n")) != NULL; line = end + 2) {
		if (end == line || end[-1] != '=')
			continue;
		soft++;
		if (memchr(line, ' ', (size_t)(end - line)) != NULL)
			cr_assert_eq(end[-2], ' ', "a word cut by a soft break: %.*s", (int)(end - line),
			             line);
	}
	cr_assert_gt(soft, 0);
	assert_wire_form(msg.data, msg.len);
	free(joined);
	free(text);
	free(html);
}

/* White space at the end of a line would not survive every relay: such a
 * part goes quoted-printable, the space as =20. */
Test(mail_render, white_space_at_the_end_of_a_line_is_encoded)
{
	char encoding[32];
	push_history(ORDER_CANCELLED, "fraud ");
	render_ok();
	char *text = part_as(msg.data, "text/plain", encoding);
	cr_assert_str_eq(encoding, "quoted-printable");
	cr_assert_str_eq(text, msg.text);
	assert_contains(msg.text, "Reason: fraud \r\n");
	assert_contains(msg.data, "Reason: fraud=20\r\n");
	assert_wire_form(msg.data, msg.len);
	free(text);
}

/* A long line of a quoted-printable part is cut by soft breaks at 76
 * characters, never inside an =XX, and decodes whole. */
Test(mail_render, long_quoted_printable_lines_are_cut_by_soft_breaks)
{
	char encoding[32];
	size_t n = 0;
	for (; n + 2 < ORDER_NAME_MAX - 1; n += 2)
		memcpy(order.lines[0].name + n, "\xc3\xa9", 2); /* each é is =C3=A9 */
	order.lines[0].name[n] = '\0';
	push_history(ORDER_AWAITING_PAYMENT, "");
	render_ok();
	char *text = part_as(msg.data, "text/plain", encoding);
	cr_assert_str_eq(encoding, "quoted-printable");
	cr_assert_str_eq(text, msg.text);
	assert_contains(msg.data, "=\r\n");
	assert_wire_form(msg.data, msg.len);
	free(text);
}

/* A value holding the boundary cannot end a part: values never start a line,
 * and a delimiter is only one at the start of a line. */
Test(mail_render, a_value_cannot_end_a_part)
{
	snprintf(order.lines[0].name, sizeof order.lines[0].name,
	         "x\r\n--=_orion_alternative--\r\nContent-Type: text/html\r\n\r\n<script>");
	push_history(ORDER_AWAITING_PAYMENT, "");
	render_ok();
	size_t delimiters = 0;
	for (const char *p = strstr(msg.data, "\n--=_orion_alternative"); p != NULL;
	     p = strstr(p + 1, "\n--=_orion_alternative"))
		delimiters++;
	cr_assert_eq(delimiters, 3, "two parts and the close:\n%s", msg.data);
	char *text = part_of(msg.data, "text/plain"), *html = part_of(msg.data, "text/html");
	cr_assert_str_eq(text, msg.text);
	cr_assert_str_eq(html, msg.html);
	assert_lacks(html, "<script>");
	assert_wire_form(msg.data, msg.len);
	free(text);
	free(html);
}

Test(mail_render, awaiting_payment_names_the_payment_deadline)
{
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	push_history(ORDER_AWAITING_PAYMENT, "");
	order.payment_deadline_ms = T0 + 60 * 60 * 1000;
	in.token = NULL;
	render_ok();
	assert_common("awaiting_payment", "Order " ORDER_ID ": awaiting payment");
	assert_contains(msg.text, "Please pay by 2026-11-22 01:43 UTC");
	assert_lacks(msg.text, "confirm?token");
}

Test(mail_render, confirmed_names_the_card)
{
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	push_history(ORDER_AWAITING_PAYMENT, "");
	push_history(ORDER_CONFIRMED, "");
	strcpy(order.brand, "visa");
	strcpy(order.last4, "4242");
	render_ok();
	assert_common("confirmed", "Order " ORDER_ID " is confirmed");
	assert_contains(msg.text, "visa card ending in 4242");
	assert_contains(msg.html, "visa card ending in 4242");
}

Test(mail_render, cancelled_out_of_stock_names_the_products)
{
	push_history(ORDER_CANCELLED, ORDER_REASON_OUT_OF_STOCK);
	strcpy(order.cancelled_products[0], "p2");
	strcpy(order.cancelled_products[1], "p9"); /* no line: named by its id */
	order.cancelled_product_count = 2;
	render_ok();
	assert_common("cancelled", "Order " ORDER_ID " was cancelled");
	assert_contains(msg.text, "these products are out of stock: Teapot, p9.");
	assert_contains(msg.text, "Reason: out_of_stock");
}

Test(mail_render, cancelled_by_the_customer_or_expired_says_why)
{
	push_history(ORDER_CANCELLED, ORDER_REASON_CUSTOMER);
	render_ok();
	assert_contains(msg.text, "cancelled at your request");
	assert_contains(msg.text, "Reason: customer");
	mail_message_dispose(&msg);

	strcpy(order.history[order.history_count - 1].reason, ORDER_REASON_EXPIRED);
	render_ok();
	assert_contains(msg.text, "not confirmed or paid in time");
	assert_contains(msg.html, "Reason: expired");
	mail_message_dispose(&msg);

	strcpy(order.history[order.history_count - 1].reason, "fraud");
	render_ok();
	assert_contains(msg.text, "cancelled (reason: fraud)");
}

/* ---- after payment (ADR 028 §3) ---- */

static void given_paid(void)
{
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	push_history(ORDER_AWAITING_PAYMENT, "");
	push_history(ORDER_CONFIRMED, "");
	strcpy(order.brand, "visa");
	strcpy(order.last4, "4242");
	strcpy(order.charge_id, "ch_1");
}

Test(mail_render, shipped_names_the_carrier_and_the_tracking_number_escaped)
{
	given_paid();
	push_history(ORDER_SHIPPED, "");
	strcpy(order.carrier, "DHL <Express> & Co");
	strcpy(order.tracking_number, "JD0146\"<b>'");
	render_ok();
	assert_common("shipped", "Order " ORDER_ID " has shipped");
	assert_contains(msg.text, "Carrier: DHL <Express> & Co");
	assert_contains(msg.text, "Tracking number: JD0146\"<b>'");
	assert_contains(msg.html, "Carrier: DHL &lt;Express&gt; &amp; Co");
	assert_contains(msg.html, "Tracking number: JD0146&quot;&lt;b&gt;&#39;");
	assert_lacks(msg.html, "<b>'");
	assert_wire_form(msg.data, msg.len);
}

Test(mail_render, delivered_says_so)
{
	given_paid();
	push_history(ORDER_SHIPPED, "");
	strcpy(order.carrier, "DHL");
	strcpy(order.tracking_number, "JD1");
	push_history(ORDER_DELIVERED, "");
	render_ok();
	assert_common("delivered", "Order " ORDER_ID " was delivered");
	assert_contains(msg.text, "was delivered");
}

Test(mail_render, a_paid_order_cancelled_says_the_amount_is_refunded)
{
	given_paid();
	push_history(ORDER_CANCELLED, ORDER_REASON_CUSTOMER);
	order.cancelled_after_payment = true;
	render_ok();
	assert_common("cancelled", "Order " ORDER_ID " was cancelled");
	assert_contains(msg.text, "cancelled at your request after it was paid");
	assert_contains(msg.text, "We are refunding 20.00 EUR to your visa card ending in 4242");
	assert_lacks(msg.text, "Nothing was charged");
	mail_message_dispose(&msg);

	strcpy(order.history[order.history_count - 1].reason, ORDER_REASON_ADMIN);
	render_ok();
	assert_contains(msg.text, "cancelled by the shop after it was paid");
	assert_contains(msg.text, "Reason: admin");
	mail_message_dispose(&msg);

	order.lines[0].unit_price_cents = INT64_MAX; /* no total: the sentence still reads */
	render_ok();
	assert_contains(msg.text, "We are refunding the amount paid to your visa card");
	mail_message_dispose(&msg);

	order.lines[0].unit_price_cents = 250;
	order.cancelled_after_payment = false;
	render_ok();
	assert_contains(msg.text, "cancelled by the shop. Nothing was charged.");
}

Test(mail_render, payment_failed_gives_the_reason)
{
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	push_history(ORDER_AWAITING_PAYMENT, "");
	push_history(ORDER_PAYMENT_FAILED, "card_declined <b>");
	render_ok();
	assert_common("payment_failed", "Payment failed for order " ORDER_ID);
	assert_contains(msg.text, "failed: card_declined <b>.");
	assert_contains(msg.html, "failed: card_declined &lt;b&gt;.");
}

Test(mail_render, hostile_product_names_are_escaped_in_html_and_kept_in_text)
{
	snprintf(order.lines[0].name, sizeof order.lines[0].name, "%s", HOSTILE);
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	render_ok();
	assert_lacks(msg.html, "<script>");
	assert_lacks(msg.html, "\"x\"");
	assert_lacks(msg.html, "'co'");
	assert_contains(msg.html, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;");
	assert_contains(msg.text, HOSTILE);
	assert_wire_form(msg.data, msg.len);
}

Test(mail_render, values_in_the_html_title_and_link_are_escaped)
{
	in.public_url = "https://shop.test/\"><script>";
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	render_ok();
	assert_lacks(msg.html, "<script>");
	assert_contains(msg.html, "href=\"https://shop.test/&quot;&gt;&lt;script&gt;/api/v1/orders/");
}

Test(mail_render, no_value_can_add_a_header)
{
	char *h;
	/* a name with line breaks (the aggregate refuses it; the renderer must not care) */
	snprintf(order.lines[0].name, sizeof order.lines[0].name, "mug\r\nBcc: eve@evil.test\r\n\r\nhi");
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	render_ok();
	h = headers_of(msg.data);
	assert_lacks(h, "Bcc");
	assert_lacks(msg.data, "\r\nBcc:");
	assert_contains(msg.text, "  2 x mug  Bcc: eve@evil.test    hi at 2.50 EUR\r\n"); /* one line */
	for (const char *p = h; *p != '\0'; p++) /* only the expected header names start a line */
		cr_assert(p == h || p[-1] != '\n' || strncmp(p, "Date:", 5) == 0 ||
		                  strncmp(p, "From:", 5) == 0 || strncmp(p, "To:", 3) == 0 ||
		                  strncmp(p, "Subject:", 8) == 0 || strncmp(p, "Message-ID:", 11) == 0 ||
		                  strncmp(p, "X-Orion-", 8) == 0 || strncmp(p, "Auto-Submitted:", 15) == 0 ||
		                  strncmp(p, "MIME-Version:", 13) == 0 ||
		                  strncmp(p, "Content-Type:", 13) == 0 || *p == '\0',
		          "unexpected header line: %s", p);
	free(h);
	mail_message_dispose(&msg);

	strcpy(order.customer_email, "ann@example.com\r\nBcc: eve@evil.test");
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL);
	cr_assert_null(msg.data);
	strcpy(order.customer_email, "ann@example.com, eve@evil.test");
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL);
	strcpy(order.customer_email, "ann@example.com");

	in.from = "shop@orion.test\r\nBcc: eve@evil.test";
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL);
	in.from = "shop@orion.test";
	in.public_url = "https://shop.test\r\nBcc: eve@evil.test";
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL);
	in.public_url = "https://shop.test";
	in.token = "tok\nen";
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL);
	in.token = TOKEN;
	render_ok();
}

Test(mail_render, refuses_what_sends_no_email_or_is_incomplete)
{
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL); /* pending */
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	in.token = NULL;
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL); /* no token */
	in.token = TOKEN;
	in.order_id = "a.b";
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL);
	in.order_id = ORDER_ID;
	in.public_url = NULL;
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL);
	in.public_url = "https://shop.test";
	order.line_count = 0;
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL);
	order.line_count = 2;
	in.order = NULL;
	cr_assert_eq(mail_render(&in, &msg), ORN_EINVAL);
	in.order = &order;
	render_ok();
}

Test(mail_render, a_total_that_overflows_and_odd_times_still_render)
{
	order.lines[0].unit_price_cents = INT64_MAX / 2;
	order.lines[0].quantity = 3;
	order.confirmation_deadline_ms = 0;
	in.date_ms = -1;
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	render_ok();
	assert_contains(msg.text, "Total: (too large)");
	assert_contains(msg.text, "until (unknown)");
	assert_contains(msg.data, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n");
}

Test(mail_render, long_names_keep_lines_short)
{
	for (size_t i = 0; i < ORDER_NAME_MAX - 1; i++)
		order.lines[1].name[i] = i % 2 ? '&' : '"';
	order.lines[1].name[ORDER_NAME_MAX - 1] = '\0';
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	render_ok();
	assert_wire_form(msg.data, msg.len);
	char *html = part_of(msg.data, "text/html");
	cr_assert_str_eq(html, msg.html);
	free(html);
}

Test(mail_render, a_failed_allocation_is_enomem_and_leaves_nothing)
{
	if (!failalloc_available())
		cr_skip("allocation failure injection not available");
	push_history(ORDER_CANCELLED, ORDER_REASON_OUT_OF_STOCK);
	strcpy(order.cancelled_products[0], "p1");
	order.cancelled_product_count = 1;
	memset(order.lines[0].name, 'n', ORDER_NAME_MAX - 1); /* a long line: buf_printf's heap path */
	order.lines[0].name[ORDER_NAME_MAX - 1] = '\0';       /* a long line: buf_printf's heap path */
	bool succeeded = false, failed = false;
	for (long n = 1; n < 400; n++) {
		failalloc_nth(n);
		orn_rc rc = mail_render(&in, &msg);
		failalloc_off();
		cr_assert(rc == ORN_OK || rc == ORN_ENOMEM, "allocation %ld: %s", n, orn_rc_name(rc));
		if (rc == ORN_ENOMEM)
			cr_assert_null(msg.data);
		succeeded |= rc == ORN_OK;
		failed |= rc == ORN_ENOMEM;
		mail_message_dispose(&msg);
	}
	cr_assert(failed);
	cr_assert(succeeded);
}

Test(mail_render, the_html_part_escapes_the_five_and_nothing_else)
{
	snprintf(order.lines[0].name, sizeof order.lines[0].name, "a&b<c>d\"e'f plain");
	push_history(ORDER_AWAITING_PAYMENT, "");
	render_ok();
	assert_contains(msg.html, "<td>a&amp;b&lt;c&gt;d&quot;e&#39;f plain</td>");
	assert_contains(msg.text, "  2 x a&b<c>d\"e'f plain at 2.50 EUR\r\n");
}

Test(mail_render, an_smtp_url_has_credentials_when_its_authority_has_a_userinfo)
{
	cr_assert(mail_smtp_url_has_credentials("smtp://user:pass@mail.test:587"));
	cr_assert(mail_smtp_url_has_credentials("smtps://user:pass@mail.test"));
	cr_assert(mail_smtp_url_has_credentials("smtp://user@mail.test"));
	cr_assert(mail_smtp_url_has_credentials("smtp://us%40er:p@ss@mail.test/"));
	cr_assert(mail_smtp_url_has_credentials("user:pass@mail.test:25"), "no scheme: all authority");
	cr_assert_not(mail_smtp_url_has_credentials("smtp://127.0.0.1:2525"));
	cr_assert_not(mail_smtp_url_has_credentials("smtp://mail.test/client@orion.test"));
	cr_assert_not(mail_smtp_url_has_credentials("smtp://mail.test?x=@"));
	cr_assert_not(mail_smtp_url_has_credentials("smtp://mail.test#@"));
	cr_assert_not(mail_smtp_url_has_credentials(""));
	cr_assert_not(mail_smtp_url_has_credentials(NULL));
}

Test(mail_render, header_values_are_printable_ascii_of_bounded_length)
{
	char big[MAIL_HEADER_MAX + 2];
	cr_assert(mail_header_value_valid("Order 1 is confirmed"));
	cr_assert_not(mail_header_value_valid(""));
	cr_assert_not(mail_header_value_valid(NULL));
	cr_assert_not(mail_header_value_valid("a\rb"));
	cr_assert_not(mail_header_value_valid("a\nb"));
	cr_assert_not(mail_header_value_valid("a\tb"));
	cr_assert_not(mail_header_value_valid("caf\xc3\xa9"));
	cr_assert_not(mail_header_value_valid("del\x7f"));
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	cr_assert_not(mail_header_value_valid(big));
	big[MAIL_HEADER_MAX] = '\0';
	cr_assert(mail_header_value_valid(big));
}

Test(mail_render, addresses_are_bare_and_from_yields_its_address)
{
	char out[ORDER_EMAIL_MAX];
	cr_assert(mail_address_valid("ann@example.com"));
	cr_assert(mail_address_valid("a.b+c@x"));
	const char *bad[] = {NULL,    "",      "ann",   "@x",      "x@",      "a@b@c",        "a b@x",
	                     "<a@x>", "a,b@x", "a;b@x", "\"a\"@x", "a@x\r\n", "caf\xc3\xa9@x"};
	for (size_t i = 0; i < ORN_ARRAY_LEN(bad); i++)
		cr_assert_not(mail_address_valid(bad[i]), "accepted %s", bad[i] ? bad[i] : "NULL");

	cr_assert_eq(mail_address_of("Orion Shop <shop@orion.test>", out, sizeof out), ORN_OK);
	cr_assert_str_eq(out, "shop@orion.test");
	cr_assert_eq(mail_address_of("shop@orion.test", out, sizeof out), ORN_OK);
	cr_assert_str_eq(out, "shop@orion.test");
	cr_assert_eq(mail_address_of("Shop <shop@orion.test> x", out, sizeof out), ORN_EINVAL);
	cr_assert_eq(mail_address_of("Shop <shop@orion.test", out, sizeof out), ORN_EINVAL);
	cr_assert_eq(mail_address_of("Shop <>", out, sizeof out), ORN_EINVAL);
	cr_assert_str_eq(out, "");
	cr_assert_eq(mail_address_of("Shop", out, sizeof out), ORN_EINVAL);
	cr_assert_eq(mail_address_of("shop@orion.test\r\n", out, sizeof out), ORN_EINVAL);
	cr_assert_eq(mail_address_of(NULL, out, sizeof out), ORN_EINVAL);
	cr_assert_eq(mail_address_of("shop@orion.test", out, 5), ORN_EINVAL);
}

Test(mail_render, key_and_message_id_are_deterministic_per_order_and_status)
{
	char key[MAIL_KEY_MAX], id[MAIL_MESSAGE_ID_MAX];
	cr_assert_eq(mail_key(key, "o-1", ORDER_CANCELLED), ORN_OK);
	cr_assert_str_eq(key, "o-1/cancelled");
	cr_assert_eq(mail_message_id(id, "o-1", ORDER_AWAITING_CONFIRMATION), ORN_OK);
	cr_assert_str_eq(id, "<o-1.awaiting_confirmation@orion>");
	cr_assert_eq(mail_key(key, "o-1", ORDER_PENDING), ORN_EINVAL);
	cr_assert_str_eq(key, "");
	cr_assert_eq(mail_key(key, "o.1", ORDER_CANCELLED), ORN_EINVAL);
	cr_assert_eq(mail_message_id(id, "o-1", ORDER_NONE), ORN_EINVAL);
	cr_assert_eq(mail_message_id(id, "o/1", ORDER_CONFIRMED), ORN_EINVAL);
	cr_assert_eq(mail_message_id(id, "o-1", (order_status)42), ORN_EINVAL);
	cr_assert_eq(mail_key(key, "o-1", ORDER_SHIPPED), ORN_OK);
	cr_assert_str_eq(key, "o-1/shipped");
	cr_assert_eq(mail_key(key, "o-1", ORDER_DELIVERED), ORN_OK);
	cr_assert_str_eq(key, "o-1/delivered");
}

Test(mail_render, dates_are_rfc_5322_in_utc)
{
	char date[MAIL_DATE_MAX];
	mail_format_date(date, T0);
	cr_assert_str_eq(date, "Sun, 22 Nov 2026 00:43:10 +0000");
	mail_format_date(date, 0);
	cr_assert_str_eq(date, "Thu, 01 Jan 1970 00:00:00 +0000");
	mail_format_date(date, INT64_MAX);
	cr_assert_str_eq(date, "Thu, 01 Jan 1970 00:00:00 +0000");
}

Test(mail_render, dispose_takes_null_and_clears)
{
	mail_message_dispose(NULL);
	push_history(ORDER_AWAITING_CONFIRMATION, "");
	render_ok();
	mail_message_dispose(&msg);
	cr_assert_null(msg.data);
	cr_assert_null(msg.subject);
	cr_assert_eq(msg.len, 0);
}

/* ---- the low-stock alert ---- */

static mail_alert_input alert_input(const char *name)
{
	mail_alert_input a = {.product_id = "p1",
	                      .sku = "MUG-1",
	                      .name = name,
	                      .threshold = 5,
	                      .available = 3,
	                      .on_hand = 4,
	                      .reserved = 1,
	                      .to = "root@orion.test",
	                      .mail_id = "m0123456789abcdef0123456789abcdef",
	                      .event_time_ms = 1000,
	                      .date_ms = 1779408190000,
	                      .from = "Orion Shop <shop@orion.test>",
	                      .public_url = "https://shop.test"};
	return a;
}

Test(mail_render, the_low_stock_alert_names_the_product_levels_and_link)
{
	mail_alert_input a = alert_input("<b>Blue</b> & 'mug'");
	cr_assert_eq(mail_render_low_stock(&a, &msg), ORN_OK);
	assert_wire_form(msg.data, msg.len);
	cr_assert_str_eq(msg.subject, "Low stock: <b>Blue</b> & 'mug' (3 left)");
	char *headers = headers_of(msg.data), *text = part_of(msg.data, "text/plain"),
	     *html = part_of(msg.data, "text/html");
	assert_contains(headers, "To: root@orion.test\r\n");
	assert_contains(headers, "Subject: Low stock: <b>Blue</b> & 'mug' (3 left)\r\n");
	assert_contains(headers, "Message-ID: <m0123456789abcdef0123456789abcdef@orion>\r\n");
	assert_contains(headers, "X-Orion-Status: low_stock\r\n");
	assert_contains(text, "SKU: MUG-1");
	assert_contains(text, "Available: 3 (threshold 5)");
	assert_contains(text, "On hand: 4, reserved: 1");
	assert_contains(text, "https://shop.test/api/v1/admin/products/p1");
	assert_lacks(html, "<b>Blue</b>");
	assert_contains(html, "&lt;b&gt;Blue&lt;/b&gt; &amp; &#39;mug&#39;");
	free(headers);
	free(text);
	free(html);
}

Test(mail_render, an_alert_caused_only_by_reservations_says_so)
{
	mail_alert_input a = alert_input("Blue mug");
	a.on_hand = 40;  /* not low on its own: 40 >= 5 */
	a.reserved = 37; /* unpaid orders hold 37 */
	a.available = 3;
	cr_assert_eq(mail_render_low_stock(&a, &msg), ORN_OK);
	assert_wire_form(msg.data, msg.len);
	cr_assert_str_eq(msg.subject, "Low stock (reserved): Blue mug (3 left)");
	char *text = part_of(msg.data, "text/plain"), *html = part_of(msg.data, "text/html");
	assert_contains(text, "available 3 because 37 units are reserved by unpaid orders; on hand is 40");
	assert_contains(text, "not below the threshold");
	assert_contains(html, "available 3 because 37 units are reserved by unpaid orders; on hand is 40");
	assert_lacks(text, "has fallen below its low-stock threshold");
	free(text);
	free(html);
}

Test(mail_render, an_alert_with_little_on_hand_does_not_blame_the_reservations)
{
	mail_alert_input a = alert_input("Blue mug"); /* on hand 4 < threshold 5 */
	cr_assert_eq(mail_render_low_stock(&a, &msg), ORN_OK);
	cr_assert_str_eq(msg.subject, "Low stock: Blue mug (3 left)");
	char *text = part_of(msg.data, "text/plain");
	assert_lacks(text, "reserved by unpaid orders");
	assert_contains(text, "has fallen below its low-stock threshold");
	free(text);
}

Test(mail_render, a_non_ascii_alert_subject_is_encoded_in_short_words)
{
	char name[180] = "";
	for (int i = 0; i < 40; i++)
		strcat(name, "ü"); /* 80 bytes: two encoded words at least */
	mail_alert_input a = alert_input(name);
	cr_assert_eq(mail_render_low_stock(&a, &msg), ORN_OK);
	assert_wire_form(msg.data, msg.len);
	char *headers = headers_of(msg.data);
	assert_contains(headers, "Subject: =?UTF-8?B?");
	assert_contains(headers, "?=\r\n =?UTF-8?B?");
	free(headers);
}

Test(mail_render, a_bad_alert_input_is_refused)
{
	mail_alert_input a = alert_input("Mug\r\nBcc: eve@evil.test");
	cr_assert_eq(mail_render_low_stock(&a, &msg), ORN_EINVAL);
	a = alert_input("Mug");
	a.to = "a@b.c, eve@evil.test";
	cr_assert_eq(mail_render_low_stock(&a, &msg), ORN_EINVAL);
	a = alert_input("Mug");
	a.product_id = "p.1";
	cr_assert_eq(mail_render_low_stock(&a, &msg), ORN_EINVAL);
	a = alert_input("Mug");
	a.mail_id = NULL;
	cr_assert_eq(mail_render_low_stock(&a, &msg), ORN_EINVAL);
	a = alert_input(""); /* an unknown product: its id stands in for the name */
	a.sku = NULL;
	cr_assert_eq(mail_render_low_stock(&a, &msg), ORN_OK);
	cr_assert_str_eq(msg.subject, "Low stock: p1 (3 left)");
}

/* ---- account emails (ADR 031) ---- */

static mail_account_input account_input(mail_account_kind kind)
{
	mail_account_input a = {
	        .kind = kind,
	        .token = "u0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	        .to = "ada@example.org",
	        .mail_id = "m0123456789abcdef0123456789abcdef",
	        .event_time_ms = 1000,
	        .date_ms = 1779408190000,
	        .from = "Orion Shop <shop@orion.test>",
	        .public_url = "https://shop.test"};
	return a;
}

Test(mail_render, the_verification_email_holds_its_link_whole_on_a_line)
{
	mail_account_input a = account_input(MAIL_ACCOUNT_VERIFY);
	cr_assert_eq(mail_render_account(&a, &msg), ORN_OK);
	assert_wire_form(msg.data, msg.len);
	cr_assert_str_eq(msg.subject, "Verify your email address");
	char *headers = headers_of(msg.data), *text = part_of(msg.data, "text/plain");
	assert_contains(headers, "To: ada@example.org\r\n");
	assert_contains(headers, "Message-ID: <m0123456789abcdef0123456789abcdef@orion>\r\n");
	assert_contains(headers, "X-Orion-Status: account_verify\r\n");
	assert_contains(text,
	                "\r\nhttps://shop.test/api/v1/auth/verify?token=u0123456789abcdef0123456789abcdef."
	                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n");
	free(headers);
	free(text);
}

Test(mail_render, the_reset_and_exists_emails_link_to_the_storefront)
{
	mail_account_input a = account_input(MAIL_ACCOUNT_RESET);
	cr_assert_eq(mail_render_account(&a, &msg), ORN_OK);
	cr_assert_str_eq(msg.subject, "Reset your password");
	char *text = part_of(msg.data, "text/plain");
	assert_contains(text, "https://shop.test/reset-password?token=u0123456789abcdef");
	assert_contains(text, "every device is logged out");
	free(text);
	mail_message_dispose(&msg);
	a = account_input(MAIL_ACCOUNT_EXISTS);
	a.token = NULL; /* no link of its own */
	cr_assert_eq(mail_render_account(&a, &msg), ORN_OK);
	cr_assert_str_eq(msg.subject, "You already have an account");
	text = part_of(msg.data, "text/plain");
	assert_contains(text, "https://shop.test/forgot-password");
	assert_lacks(text, "token=");
	free(text);
	cr_assert_str_eq(mail_account_kind_name(MAIL_ACCOUNT_EXISTS), "account_exists");
	cr_assert_str_eq(mail_account_kind_name(MAIL_ACCOUNT_RESET), "account_reset");
	cr_assert_null(mail_account_kind_name((mail_account_kind)9));
}

Test(mail_render, a_bad_account_email_input_is_refused)
{
	mail_account_input a = account_input(MAIL_ACCOUNT_VERIFY);
	a.token = NULL;
	cr_assert_eq(mail_render_account(&a, &msg), ORN_EINVAL);
	a = account_input(MAIL_ACCOUNT_VERIFY);
	a.token = "abc\r\nBcc: eve@evil.test";
	cr_assert_eq(mail_render_account(&a, &msg), ORN_EINVAL);
	a = account_input(MAIL_ACCOUNT_VERIFY);
	a.to = "a@b.c, eve@evil.test";
	cr_assert_eq(mail_render_account(&a, &msg), ORN_EINVAL);
	a = account_input((mail_account_kind)9);
	cr_assert_eq(mail_render_account(&a, &msg), ORN_EINVAL);
	a = account_input(MAIL_ACCOUNT_RESET);
	a.mail_id = "m.1";
	cr_assert_eq(mail_render_account(&a, &msg), ORN_EINVAL);
}
