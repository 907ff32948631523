/* mail_render.c — the templates and the message bytes (see mail_render.h).
 *
 * Each template is a short list of paragraphs written once through a `doc`,
 * which emits the text part and the HTML part side by side: the text part
 * gets the value as it is, the HTML part gets it escaped. Nothing is
 * interpolated into HTML any other way, so no template can forget to escape.
 *
 * The confirmation email carries the token, so no copy of its bytes is left
 * in freed memory: buffers grow by malloc + copy + wipe of the old block (no
 * realloc, which may leave the old block unwiped), and every buffer and
 * scratch copy is wiped before it is freed. */
#include "mail_render.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stock.h"

/* "=_" never occurs in a quoted-printable body (there "=" is always followed
 * by two hex digits or a line break), and no line of a 7bit part starts with
 * "--": no part can hold the boundary. */
#define BOUNDARY       "=_orion_alternative"
#define QP_LINE_MAX    76  /* RFC 2045 6.7 (5): encoded lines, soft break "=" included */
#define PLAIN_LINE_MAX 998 /* RFC 5322 2.1.1: octets of a line, CRLF excluded */

/* ---- a growable byte buffer; a failed allocation sticks until the end ---- */

typedef struct buf {
	char *data;
	size_t len, cap;
	bool failed;
} buf;

/* Wipes and frees len bytes at data (NULL ok). */
static void wipe_free(char *data, size_t len)
{
	if (data != NULL)
		sodium_memzero(data, len);
	free(data);
}

/* Wipes and frees the buffer's block and clears it. */
static void buf_dispose(buf *b)
{
	wipe_free(b->data, b->cap);
	memset(b, 0, sizeof *b);
}

static void buf_add(buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap > 0 ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *data = malloc(cap);
		if (data == NULL) {
			b->failed = true;
			return;
		}
		if (b->len > 0)
			memcpy(data, b->data, b->len);
		wipe_free(b->data, b->cap);
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void buf_str(buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void buf_printf(buf *b, const char *fmt, ...)
{
	char small[128]; /* most lines; a long name takes the heap */
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n < sizeof small) {
		buf_add(b, small, (size_t)n);
		sodium_memzero(small, sizeof small);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (big == NULL) {
		b->failed = true;
		sodium_memzero(small, sizeof small);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_add(b, big, (size_t)n);
	wipe_free(big, (size_t)n + 1);
	sodium_memzero(small, sizeof small);
}

/* A value on its line: control characters (CR and LF above all) become
 * spaces, so no value can start a line of its own in either part. */
static char flat(char c)
{
	return (unsigned char)c < 0x20 || c == 0x7f ? ' ' : c;
}

static void buf_text(buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		char c = flat(*s);
		buf_add(b, &c, 1);
	}
}

static void buf_html(buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			buf_str(b, "&amp;");
			break;
		case '<':
			buf_str(b, "&lt;");
			break;
		case '>':
			buf_str(b, "&gt;");
			break;
		case '"':
			buf_str(b, "&quot;");
			break;
		case '\'':
			buf_str(b, "&#39;");
			break;
		default: {
			char c = flat(*s);
			buf_add(b, &c, 1);
		}
		}
	}
}

/* Hands the buffer's bytes over (the caller checked that nothing failed). */
static char *buf_take(buf *b)
{
	char *data = b->data;
	memset(b, 0, sizeof *b);
	return data;
}

/* ---- the transfer encoding of a part ---- */

/* True if text can travel as it is, Content-Transfer-Encoding 7bit (RFC
 * 2045 2.7): printable ASCII and tabs in CRLF lines of at most
 * PLAIN_LINE_MAX octets, no line ending in white space (a relay may strip
 * it) and none starting with "--" (a boundary is never mistaken). A reader
 * of the raw file, a Maildir in var/mail/new above all, then sees the
 * confirmation link whole, on a line of its own, clickable. */
static bool plain_enough(const char *text)
{
	size_t line = 0;
	for (const char *p = text; *p != '\0'; p++) {
		if (p[0] == '\r' && p[1] == '\n') {
			if (line > 0 && (p[-1] == ' ' || p[-1] == '\t'))
				return false;
			line = 0;
			p++;
			continue;
		}
		if ((*p < 0x20 && *p != '\t') || *p > 0x7e || ++line > PLAIN_LINE_MAX)
			return false;
		if (line == 2 && p[-1] == '-' && p[0] == '-')
			return false;
	}
	return line == 0 || (text[strlen(text) - 1] != ' ' && text[strlen(text) - 1] != '\t');
}

/* Appends text as quoted-printable (RFC 2045 6.7): CRLF stays a line break;
 * printable ASCII but "=" stays as it is; "=", other bytes (UTF-8 above
 * all, a stray CR or LF) and white space at the end of a line become =XX;
 * a line longer than QP_LINE_MAX is cut by soft breaks ("=" CRLF), after its
 * last space when it has one (words stay whole for a reader of the raw
 * file), never inside an =XX. */
static void buf_quoted_printable(buf *b, const char *text)
{
	static const char hex[] = "0123456789ABCDEF";
	char line[QP_LINE_MAX + 1];       /* the output line in hand, without its break */
	size_t used = 0, after_space = 0; /* after_space: length up to its last space */
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		if (p[0] == '\r' && p[1] == '\n') {
			buf_add(b, line, used);
			buf_str(b, "\r\n");
			used = after_space = 0;
			p++;
			continue;
		}
		bool at_end = p[1] == '\0' || (p[1] == '\r' && p[2] == '\n');
		bool space = *p == ' ' || *p == '\t';
		bool literal = (*p >= 0x21 && *p <= 0x7e && *p != '=') || (space && !at_end);
		char token[3] = {(char)*p, 0, 0};
		size_t n = 1;
		if (!literal) {
			token[0] = '=';
			token[1] = hex[*p >> 4];
			token[2] = hex[*p & 15];
			n = 3;
		}
		/* room for the token, and for the "=" of a soft break unless the
		 * line ends with this token */
		while (used + n > (at_end ? QP_LINE_MAX : QP_LINE_MAX - 1)) {
			size_t cut = after_space > 0 ? after_space : used;
			buf_add(b, line, cut);
			buf_str(b, "=\r\n");
			memmove(line, line + cut, used - cut);
			used -= cut;
			after_space = 0;
		}
		memcpy(line + used, token, n);
		used += n;
		if (space && literal)
			after_space = used;
	}
	buf_add(b, line, used);
	sodium_memzero(line, sizeof line);
}

/* ---- the two parts, written side by side ---- */

typedef struct doc {
	buf text, html;
} doc;

/* A paragraph: the text as is in the text part, escaped in <p> in the HTML part. */
static void paragraph(doc *d, const char *s)
{
	buf_text(&d->text, s);
	buf_str(&d->text, "\r\n\r\n");
	buf_str(&d->html, "<p>");
	buf_html(&d->html, s);
	buf_str(&d->html, "</p>\r\n");
}

/* A paragraph "<label><value>", value of any length (escaped in HTML). */
static void labelled(doc *d, const char *label, const char *value)
{
	buf_str(&d->text, label);
	buf_text(&d->text, value);
	buf_str(&d->text, "\r\n\r\n");
	buf_str(&d->html, "<p>");
	buf_html(&d->html, label);
	buf_html(&d->html, value);
	buf_str(&d->html, "</p>\r\n");
}

static void link_paragraph(doc *d, const char *url)
{
	buf_str(&d->text, url);
	buf_str(&d->text, "\r\n\r\n");
	buf_str(&d->html, "<p><a href=\"");
	buf_html(&d->html, url);
	buf_str(&d->html, "\">");
	buf_html(&d->html, url);
	buf_str(&d->html, "</a></p>\r\n");
}

/* A paragraph composed with printf: only short values (ids, money, dates,
 * reasons) go through here; the whole paragraph is escaped in HTML. */
__attribute__((format(printf, 2, 3))) static void paragraphf(doc *d, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof text)
		d->text.failed = true;
	else
		paragraph(d, text);
}

static void money(char *out, size_t cap, int64_t cents, const char *currency)
{
	snprintf(out, cap, "%lld.%02lld %s", (long long)(cents / 100), (long long)(cents % 100), currency);
}

/* "2026-11-22 00:43 UTC" */
static void deadline_text(char *out, size_t cap, int64_t ms)
{
	time_t seconds = (time_t)(ms / 1000);
	struct tm tm;
	if (ms <= 0 || gmtime_r(&seconds, &tm) == NULL || strftime(out, cap, "%Y-%m-%d %H:%M UTC", &tm) == 0)
		snprintf(out, cap, "(unknown)");
}

static void items(doc *d, const order_state *o)
{
	char price[48], total[48];
	int64_t sum = 0;
	buf_str(&d->text, "Items:\r\n");
	buf_str(&d->html, "<table>\r\n<tr><th>Item</th><th>Quantity</th><th>Unit price</th></tr>\r\n");
	for (size_t i = 0; i < o->line_count; i++) {
		const order_line *l = &o->lines[i];
		money(price, sizeof price, l->unit_price_cents, o->currency);
		buf_printf(&d->text, "  %lld x ", (long long)l->quantity);
		buf_text(&d->text, l->name);
		buf_printf(&d->text, " at %s\r\n", price);
		buf_str(&d->html, "<tr><td>");
		buf_html(&d->html, l->name);
		buf_printf(&d->html, "</td><td>%lld</td><td>", (long long)l->quantity);
		buf_html(&d->html, price);
		buf_str(&d->html, "</td></tr>\r\n");
	}
	if (order_total(o, &sum))
		money(total, sizeof total, sum, o->currency);
	else
		snprintf(total, sizeof total, "(too large)");
	buf_printf(&d->text, "Total: %s\r\n\r\n", total);
	buf_str(&d->html, "<tr><td colspan=\"2\">Total</td><td>");
	buf_html(&d->html, total);
	buf_str(&d->html, "</td></tr>\r\n</table>\r\n");
}

/* The name of a product of the order, or its id if it has no line. */
static const char *product_name(const order_state *o, const char *product_id)
{
	for (size_t i = 0; i < o->line_count; i++)
		if (strcmp(o->lines[i].product_id, product_id) == 0)
			return o->lines[i].name;
	return product_id;
}

static const char *last_reason(const order_state *o)
{
	return o->history_count > 0 ? o->history[o->history_count - 1].reason : "";
}

/* A paid order cancelled (ADR 028 §3): the payment role refunds the charge. */
static void refund_paragraph(doc *d, const order_state *o, const char *by)
{
	char total[48];
	int64_t sum = 0;

	if (order_total(o, &sum))
		money(total, sizeof total, sum, o->currency);
	else
		snprintf(total, sizeof total, "the amount paid");
	paragraphf(d,
	           "Your order was cancelled %s after it was paid. We are refunding %s to your %s card "
	           "ending in %s; the refund may take a few days to appear.",
	           by, total, o->brand, o->last4);
}

static void cancelled_body(doc *d, const order_state *o)
{
	const char *reason = last_reason(o);
	if (strcmp(reason, ORDER_REASON_OUT_OF_STOCK) == 0) {
		buf p = {0};
		buf_str(&p, "Your order was cancelled because these products are out of stock: ");
		for (size_t i = 0; i < o->cancelled_product_count; i++) {
			buf_str(&p, i > 0 ? ", " : "");
			buf_str(&p, product_name(o, o->cancelled_products[i]));
		}
		buf_str(&p, ". Nothing was charged.");
		if (p.failed)
			d->text.failed = true;
		else
			paragraph(d, p.data);
		buf_dispose(&p);
	} else if (o->cancelled_after_payment) {
		refund_paragraph(d, o,
		                 strcmp(reason, ORDER_REASON_ADMIN) == 0 ? "by the shop" : "at your request");
	} else if (strcmp(reason, ORDER_REASON_CUSTOMER) == 0) {
		paragraph(d, "Your order was cancelled at your request. Nothing was charged.");
	} else if (strcmp(reason, ORDER_REASON_ADMIN) == 0) {
		paragraph(d, "Your order was cancelled by the shop. Nothing was charged.");
	} else if (strcmp(reason, ORDER_REASON_EXPIRED) == 0) {
		paragraph(d, "Your order was cancelled because it was not confirmed or paid in time. "
		             "Nothing was charged.");
	} else {
		paragraphf(d, "Your order was cancelled (reason: %s). Nothing was charged.", reason);
	}
	paragraphf(d, "Reason: %s", reason);
}

static void body(doc *d, const mail_input *in, const char *url)
{
	const order_state *o = in->order;
	char when[48];
	switch (o->status) {
	case ORDER_AWAITING_CONFIRMATION:
		deadline_text(when, sizeof when, o->confirmation_deadline_ms);
		paragraphf(d, "Thank you for your order %s. We hold the items for you until %s.",
		           in->order_id, when);
		paragraph(d, "Please confirm the order by opening this link:");
		link_paragraph(d, url);
		paragraph(d, "If you did not place this order, ignore this email: it is cancelled at the "
		             "deadline.");
		break;
	case ORDER_AWAITING_PAYMENT:
		deadline_text(when, sizeof when, o->payment_deadline_ms);
		paragraphf(d,
		           "Thank you for confirming your order %s. Please pay by %s; after that the order "
		           "is cancelled and the items are released.",
		           in->order_id, when);
		break;
	case ORDER_CONFIRMED:
		paragraphf(d, "We received your payment by %s card ending in %s. Your order %s is confirmed.",
		           o->brand, o->last4, in->order_id);
		break;
	case ORDER_CANCELLED:
		cancelled_body(d, o);
		break;
	case ORDER_PAYMENT_FAILED:
		paragraphf(d, "The payment for your order %s failed: %s. The items have been released.",
		           in->order_id, last_reason(o));
		break;
	case ORDER_SHIPPED:
		paragraphf(d, "Good news: your order %s has shipped.", in->order_id);
		labelled(d, "Carrier: ", o->carrier);
		labelled(d, "Tracking number: ", o->tracking_number);
		break;
	case ORDER_DELIVERED:
		paragraphf(d, "Your order %s was delivered. Thank you for shopping with us.", in->order_id);
		break;
	default:
		break;
	}
}

/* The subject is before + order id + after. */
typedef struct subject_parts {
	const char *before, *after;
} subject_parts;

static bool subject_of(order_status status, subject_parts *out)
{
	switch (status) {
	case ORDER_AWAITING_CONFIRMATION:
		*out = (subject_parts){"Please confirm your order ", ""};
		return true;
	case ORDER_AWAITING_PAYMENT:
		*out = (subject_parts){"Order ", ": awaiting payment"};
		return true;
	case ORDER_CONFIRMED:
		*out = (subject_parts){"Order ", " is confirmed"};
		return true;
	case ORDER_CANCELLED:
		*out = (subject_parts){"Order ", " was cancelled"};
		return true;
	case ORDER_PAYMENT_FAILED:
		*out = (subject_parts){"Payment failed for order ", ""};
		return true;
	case ORDER_SHIPPED:
		*out = (subject_parts){"Order ", " has shipped"};
		return true;
	case ORDER_DELIVERED:
		*out = (subject_parts){"Order ", " was delivered"};
		return true;
	default:
		return false;
	}
}

static bool mailable(order_status status)
{
	subject_parts unused;
	return subject_of(status, &unused);
}

/* ---- public ---- */

order_status mail_status_for_event(order_event_kind kind)
{
	switch (kind) {
	case ORDER_RESERVED:
		return ORDER_AWAITING_CONFIRMATION;
	case ORDER_CONFIRMED_BY_CUSTOMER:
		return ORDER_AWAITING_PAYMENT;
	case ORDER_PAID:
		return ORDER_CONFIRMED;
	case ORDER_CANCELLED_EVENT:
		return ORDER_CANCELLED;
	case ORDER_PAYMENT_FAILED_EVENT:
		return ORDER_PAYMENT_FAILED;
	case ORDER_SHIPPED_EVENT:
		return ORDER_SHIPPED;
	case ORDER_DELIVERED_EVENT:
		return ORDER_DELIVERED;
	case ORDER_PLACED:
		return ORDER_NONE;
	}
	return ORDER_NONE;
}

bool mail_header_value_valid(const char *v)
{
	size_t n = 0;
	if (v == NULL)
		return false;
	for (; v[n] != '\0'; n++)
		if (v[n] < 0x20 || v[n] > 0x7e || n >= MAIL_HEADER_MAX)
			return false;
	return n > 0;
}

bool mail_address_valid(const char *a)
{
	const char *at = NULL;
	size_t n = 0;
	if (a == NULL)
		return false;
	for (; a[n] != '\0'; n++) {
		char c = a[n];
		if (c <= 0x20 || c > 0x7e || strchr("<>()[]\\,;:\"", c) != NULL || n >= ORDER_EMAIL_MAX)
			return false;
		if (c == '@') {
			if (at != NULL)
				return false;
			at = a + n;
		}
	}
	return at != NULL && at != a && at[1] != '\0';
}

orn_rc mail_address_of(const char *from, char *out, size_t cap)
{
	const char *open, *close;
	size_t n;
	if (cap > 0)
		out[0] = '\0';
	if (!mail_header_value_valid(from))
		return ORN_EINVAL;
	open = strrchr(from, '<');
	if (open != NULL) {
		close = strchr(open, '>');
		if (close == NULL || close[1] != '\0')
			return ORN_EINVAL;
		from = open + 1;
		n = (size_t)(close - from);
	} else {
		n = strlen(from);
	}
	if (n >= cap)
		return ORN_EINVAL;
	memcpy(out, from, n);
	out[n] = '\0';
	if (!mail_address_valid(out)) {
		out[0] = '\0';
		return ORN_EINVAL;
	}
	return ORN_OK;
}

orn_rc mail_key(char out[MAIL_KEY_MAX], const char *order_id, order_status status)
{
	const char *name = order_status_name(status);
	out[0] = '\0';
	if (!orn_id_valid(order_id) || !mailable(status) || name == NULL)
		return ORN_EINVAL;
	snprintf(out, MAIL_KEY_MAX, "%s/%s", order_id, name);
	return ORN_OK;
}

orn_rc mail_message_id(char out[MAIL_MESSAGE_ID_MAX], const char *order_id, order_status status)
{
	const char *name = order_status_name(status);
	out[0] = '\0';
	if (!orn_id_valid(order_id) || !mailable(status) || name == NULL)
		return ORN_EINVAL;
	snprintf(out, MAIL_MESSAGE_ID_MAX, "<%s.%s@orion>", order_id, name);
	return ORN_OK;
}

void mail_format_date(char out[MAIL_DATE_MAX], int64_t ms)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t seconds = (time_t)(ms / 1000);
	struct tm tm;
	if (ms < 0 || gmtime_r(&seconds, &tm) == NULL || tm.tm_year + 1900 > 9999) {
		seconds = 0;
		gmtime_r(&seconds, &tm);
	}
	snprintf(out, MAIL_DATE_MAX, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
	         months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Wipes and frees a NUL-terminated string (NULL ok). */
static void wipe_free_str(char *s)
{
	wipe_free(s, s != NULL ? strlen(s) : 0);
}

void mail_message_dispose(mail_message *m)
{
	if (m == NULL)
		return;
	wipe_free_str(m->subject);
	wipe_free_str(m->text);
	wipe_free_str(m->html);
	wipe_free(m->data, m->len);
	memset(m, 0, sizeof *m);
}

bool mail_smtp_url_has_credentials(const char *url)
{
	if (url == NULL)
		return false;
	const char *authority = strstr(url, "://");
	authority = authority != NULL ? authority + 3 : url;
	size_t n = strcspn(authority, "/?#");
	return memchr(authority, '@', n) != NULL;
}

static bool input_valid(const mail_input *in)
{
	const order_state *o = in->order;
	char address[ORDER_EMAIL_MAX];
	if (o == NULL || !mailable(o->status) || !orn_id_valid(in->order_id) || o->line_count == 0 ||
	    o->line_count > ORDER_LINES_MAX || in->public_url == NULL ||
	    !mail_header_value_valid(in->public_url) ||
	    mail_address_of(in->from, address, sizeof address) != ORN_OK ||
	    !mail_address_valid(in->to != NULL ? in->to : o->customer_email))
		return false;
	return o->status != ORDER_AWAITING_CONFIRMATION ||
	       (in->token != NULL && mail_header_value_valid(in->token));
}

static void headers(buf *b, const mail_input *in, const char *subject)
{
	char date[MAIL_DATE_MAX], message_id[MAIL_MESSAGE_ID_MAX];
	mail_format_date(date, in->date_ms);
	mail_message_id(message_id, in->order_id, in->order->status);
	buf_printf(b, "Date: %s\r\n", date);
	buf_printf(b, "From: %s\r\n", in->from);
	buf_printf(b, "To: %s\r\n", in->to != NULL ? in->to : in->order->customer_email);
	buf_printf(b, "Subject: %s\r\n", subject);
	buf_printf(b, "Message-ID: %s\r\n", message_id);
	buf_printf(b, "X-Orion-Event-Time: %lld\r\n", (long long)in->event_time_ms);
	buf_printf(b, "X-Orion-Order: %s\r\n", in->order_id);
	buf_printf(b, "X-Orion-Status: %s\r\n", order_status_name(in->order->status));
	buf_str(b, "Auto-Submitted: auto-generated\r\n");
	buf_str(b, "MIME-Version: 1.0\r\n");
	buf_str(b, "Content-Type: multipart/alternative; boundary=\"" BOUNDARY "\"\r\n\r\n");
}

/* One part: as it is when it is plain enough, else quoted-printable. The
 * CRLF after it belongs to the boundary that follows (RFC 2046 5.1.1), so
 * the part decodes to content exactly. */
static void part(buf *b, const char *type, const char *content)
{
	bool plain = plain_enough(content);
	buf_printf(b,
	           "--" BOUNDARY "\r\nContent-Type: %s; charset=UTF-8\r\n"
	           "Content-Transfer-Encoding: %s\r\n\r\n",
	           type, plain ? "7bit" : "quoted-printable");
	if (plain)
		buf_str(b, content);
	else
		buf_quoted_printable(b, content);
	buf_str(b, "\r\n");
}

/* The start of the HTML part: its head, titled subject, and <body>. */
static void html_begin(doc *d, const buf *subject)
{
	buf_str(&d->html, "<!DOCTYPE html>\r\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
	buf_html(&d->html, subject->failed ? "" : subject->data);
	buf_str(&d->html, "</title></head>\r\n<body>\r\n");
}

/* Ends a message whose headers are written: both parts of d and the closing
 * boundary. On success moves the message, the subject and the parts into out
 * (status is out's); ORN_ENOMEM otherwise. */
static orn_rc message_finish(buf *message, buf *subject, doc *d, order_status status, mail_message *out)
{
	buf_str(message, "This is a multi-part message in MIME format.\r\n\r\n");
	part(message, "text/plain", d->text.data);
	part(message, "text/html", d->html.data);
	buf_str(message, "--" BOUNDARY "--\r\n");
	if (message->failed)
		return ORN_ENOMEM;
	out->status = status;
	out->len = message->len;
	out->data = buf_take(message);
	out->subject = buf_take(subject);
	out->text = buf_take(&d->text);
	out->html = buf_take(&d->html);
	return ORN_OK;
}

/* Wipes and frees what a render did not hand over (message_finish empties
 * what it moved). */
static void render_dispose(buf *subject, buf *message, buf *url, doc *d)
{
	buf_dispose(subject);
	buf_dispose(message);
	buf_dispose(url);
	buf_dispose(&d->text);
	buf_dispose(&d->html);
}

orn_rc mail_render(const mail_input *in, mail_message *out)
{
	doc d = {0};
	buf subject = {0}, message = {0}, url = {0};
	const order_state *o = in->order;
	orn_rc rc = ORN_EINVAL;

	memset(out, 0, sizeof *out);
	if (!input_valid(in))
		goto fail;
	subject_parts parts = {"", ""};
	subject_of(o->status, &parts);
	buf_printf(&subject, "%s%s%s", parts.before, in->order_id, parts.after);
	if (o->status == ORDER_AWAITING_CONFIRMATION)
		buf_printf(&url, "%s/api/v1/orders/%s/confirm?token=%s", in->public_url, in->order_id,
		           in->token);

	html_begin(&d, &subject);
	body(&d, in, url.failed || url.data == NULL ? "" : url.data);
	items(&d, o);
	paragraphf(&d, "Order: %s", in->order_id);
	paragraphf(&d, "Status: %s", order_status_name(o->status));
	buf_str(&d.html, "</body></html>\r\n");

	if (subject.failed || url.failed || d.text.failed || d.html.failed) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	headers(&message, in, subject.data);
	rc = message_finish(&message, &subject, &d, o->status, out);
fail:
	render_dispose(&subject, &message, &url, &d);
	return rc;
}

/* ---- the low-stock alert ---- */

/* Appends subject as a header value: as is when it is printable ASCII, else
 * as RFC 2047 "B" encoded words of at most 39 bytes each (64 characters once
 * encoded, so "Subject: " and the first word fit a 78-character line), each
 * cut on a UTF-8 boundary, folded onto continuation lines. */
static void subject_header(buf *b, const char *subject)
{
	size_t len = strlen(subject);
	if (mail_header_value_valid(subject)) {
		buf_str(b, subject);
		return;
	}
	for (size_t off = 0; off < len;) {
		size_t n = len - off > 39 ? 39 : len - off;
		while (off + n < len && n > 1 && ((unsigned char)subject[off + n] & 0xC0) == 0x80)
			n--;
		char encoded[sodium_base64_ENCODED_LEN(39, sodium_base64_VARIANT_ORIGINAL)];
		sodium_bin2base64(encoded, sizeof encoded, (const unsigned char *)subject + off, n,
		                  sodium_base64_VARIANT_ORIGINAL);
		buf_printf(b, "%s=?UTF-8?B?%s?=", off > 0 ? "\r\n " : "", encoded);
		off += n;
	}
}

/* True if the subject's bytes are valid for a header once encoded: no
 * control characters (CR and LF above all). */
static bool no_controls(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7F)
			return false;
	return true;
}

/* The envelope of an email that is not an order's. */
typedef struct standalone {
	int64_t date_ms, event_time_ms;
	const char *from, *to, *mail_id;
	const char *status;          /* X-Orion-Status */
	char extra[MAIL_HEADER_MAX]; /* more header lines ("" for none), CRLF-ended */
} standalone;

/* Finishes an email that is not an order's: ORN_ENOMEM if a part could not
 * be made; else the headers (Date, From, To, Subject in encoded words when
 * not ASCII, Message-ID <mail_id@orion>, X-Orion-Event-Time, h->extra,
 * X-Orion-Status, Auto-Submitted, MIME) and the parts into out. */
static orn_rc standalone_finish(buf *message, buf *subject, const buf *url, doc *d, const standalone *h,
                                mail_message *out)
{
	char date[MAIL_DATE_MAX];
	buf_str(&d->html, "</body></html>\r\n");
	if (subject->failed || url->failed || d->text.failed || d->html.failed)
		return ORN_ENOMEM;
	mail_format_date(date, h->date_ms);
	buf_printf(message, "Date: %s\r\n", date);
	buf_printf(message, "From: %s\r\n", h->from);
	buf_printf(message, "To: %s\r\n", h->to);
	buf_str(message, "Subject: ");
	subject_header(message, subject->data);
	buf_str(message, "\r\n");
	buf_printf(message, "Message-ID: <%s@orion>\r\n", h->mail_id);
	buf_printf(message, "X-Orion-Event-Time: %lld\r\n", (long long)h->event_time_ms);
	buf_str(message, h->extra);
	buf_printf(message, "X-Orion-Status: %s\r\n", h->status);
	buf_str(message, "Auto-Submitted: auto-generated\r\n");
	buf_str(message, "MIME-Version: 1.0\r\n");
	buf_str(message, "Content-Type: multipart/alternative; boundary=\"" BOUNDARY "\"\r\n\r\n");
	return message_finish(message, subject, d, ORDER_NONE, out);
}

orn_rc mail_render_low_stock(const mail_alert_input *in, mail_message *out)
{
	doc d = {0};
	buf subject = {0}, message = {0}, url = {0};
	char address[ORDER_EMAIL_MAX];
	const char *name = in->name != NULL && in->name[0] != '\0' ? in->name : in->product_id;
	orn_rc rc = ORN_EINVAL;

	memset(out, 0, sizeof *out);
	if (!orn_id_valid(in->product_id) || in->mail_id == NULL || !orn_id_valid(in->mail_id) ||
	    in->to == NULL || !mail_address_valid(in->to) || in->public_url == NULL ||
	    !mail_header_value_valid(in->public_url) ||
	    mail_address_of(in->from, address, sizeof address) != ORN_OK || !no_controls(name) ||
	    (in->sku != NULL && !no_controls(in->sku)))
		goto fail;
	bool reserved_only = stock_low_only_reserved(in->on_hand, in->available, in->threshold);
	buf_printf(&subject, "Low stock%s: %s (%lld left)", reserved_only ? " (reserved)" : "", name,
	           (long long)in->available);
	buf_printf(&url, "%s/api/v1/admin/products/%s", in->public_url, in->product_id);

	html_begin(&d, &subject);
	if (reserved_only)
		paragraphf(
		        &d,
		        "A product is low only because of reservations: available %lld because %lld units "
		        "are reserved by unpaid orders; on hand is %lld, not below the threshold. The units "
		        "come back if those orders are cancelled or expire.",
		        (long long)in->available, (long long)in->reserved, (long long)in->on_hand);
	else
		paragraph(&d, "A product has fallen below its low-stock threshold.");
	labelled(&d, "Product: ", name);
	labelled(&d, "SKU: ", in->sku != NULL ? in->sku : "");
	paragraphf(&d, "Available: %lld (threshold %lld)", (long long)in->available,
	           (long long)in->threshold);
	paragraphf(&d, "On hand: %lld, reserved: %lld", (long long)in->on_hand, (long long)in->reserved);
	paragraph(&d, "Manage the product:");
	link_paragraph(&d, url.failed || url.data == NULL ? "" : url.data);
	standalone h = {.date_ms = in->date_ms,
	                .event_time_ms = in->event_time_ms,
	                .from = in->from,
	                .to = in->to,
	                .mail_id = in->mail_id,
	                .status = "low_stock"};
	snprintf(h.extra, sizeof h.extra, "X-Orion-Product: %s\r\n", in->product_id);
	rc = standalone_finish(&message, &subject, &url, &d, &h, out);
fail:
	render_dispose(&subject, &message, &url, &d);
	return rc;
}

/* The text of each account email: subject, what happened, what the link
 * does, what to do if it was not the reader. */
static const struct {
	mail_account_kind kind;
	const char *subject, *what, *link_label, *not_you;
} account_texts[] = {
        {MAIL_ACCOUNT_VERIFY, "Verify your email address",
         "Welcome! Please verify your email address to finish opening your account.",
         "Verify your address (the link works once and expires):",
         "If you did not open an account, ignore this email: nothing happens without the link."},
        {MAIL_ACCOUNT_EXISTS, "You already have an account",
         "Someone (probably you) tried to open an account with this email address, but you already "
         "have one. You can log in with your password.",
         "Forgot your password? Ask for a reset link here:",
         "If it was not you, ignore this email: your account is unchanged."},
        {MAIL_ACCOUNT_RESET, "Reset your password", "A new password was asked for your account.",
         "Choose a new password (the link works once and expires; every device is logged out):",
         "If you did not ask for it, ignore this email: your password stays as it is."},
};

orn_rc mail_render_account(const mail_account_input *in, mail_message *out)
{
	doc d = {0};
	buf subject = {0}, message = {0}, url = {0};
	char address[ORDER_EMAIL_MAX];
	size_t t = 0;
	orn_rc rc = ORN_EINVAL;

	memset(out, 0, sizeof *out);
	while (t < ORN_ARRAY_LEN(account_texts) && account_texts[t].kind != in->kind)
		t++;
	if (t == ORN_ARRAY_LEN(account_texts) || in->mail_id == NULL || !orn_id_valid(in->mail_id) ||
	    in->to == NULL || !mail_address_valid(in->to) || in->public_url == NULL ||
	    !mail_header_value_valid(in->public_url) ||
	    mail_address_of(in->from, address, sizeof address) != ORN_OK ||
	    (in->kind != MAIL_ACCOUNT_EXISTS && (in->token == NULL || !no_controls(in->token))))
		goto fail;
	buf_str(&subject, account_texts[t].subject);
	if (in->kind == MAIL_ACCOUNT_VERIFY)
		buf_printf(&url, "%s/api/v1/auth/verify?token=%s", in->public_url, in->token);
	else if (in->kind == MAIL_ACCOUNT_RESET)
		buf_printf(&url, "%s/reset-password?token=%s", in->public_url, in->token);
	else
		buf_printf(&url, "%s/forgot-password", in->public_url);

	html_begin(&d, &subject);
	paragraph(&d, account_texts[t].what);
	paragraph(&d, account_texts[t].link_label);
	link_paragraph(&d, url.failed || url.data == NULL ? "" : url.data);
	paragraph(&d, account_texts[t].not_you);
	standalone h = {.date_ms = in->date_ms,
	                .event_time_ms = in->event_time_ms,
	                .from = in->from,
	                .to = in->to,
	                .mail_id = in->mail_id,
	                .status = mail_account_kind_name(in->kind)};
	rc = standalone_finish(&message, &subject, &url, &d, &h, out);
fail:
	render_dispose(&subject, &message, &url, &d);
	return rc;
}

const char *mail_account_kind_name(mail_account_kind kind)
{
	switch (kind) {
	case MAIL_ACCOUNT_VERIFY:
		return "account_verify";
	case MAIL_ACCOUNT_EXISTS:
		return "account_exists";
	case MAIL_ACCOUNT_RESET:
		return "account_reset";
	}
	return NULL;
}
