/* mail_render.h — the emails of an order, as bytes: templates, HTML
 * escaping and the RFC 5322 / MIME message (pure; no I/O, no clock).
 *
 * One email per (order, status) the customer hears about:
 *   OrderReserved            -> awaiting_confirmation (the confirmation link)
 *   OrderConfirmedByCustomer -> awaiting_payment (pay by the deadline)
 *   OrderPaid                -> confirmed (card brand and last 4)
 *   OrderCancelled           -> cancelled (out_of_stock naming the products, customer, admin,
 *                               expired; after payment: the amount is being refunded)
 *   OrderPaymentFailed       -> payment_failed (the reason)
 *   OrderShipped             -> shipped (carrier and tracking number)
 *   OrderDelivered           -> delivered
 * OrderPlaced sends nothing.
 *
 * Every email lists the items (name, quantity, unit price), the total with
 * its currency, the order id and the status, as multipart/alternative with a
 * text/plain and a text/html part (UTF-8). A part goes as it is (7bit) when
 * it is printable ASCII in lines of at most 998 octets, none starting with
 * "--" or ending in white space, so a person reading the raw file (a Maildir)
 * sees the confirmation link whole on its line; otherwise (a name with an
 * accent) as quoted-printable, lines of at most 76 characters. Either way no
 * body line can look like the MIME boundary. A value never breaks a line:
 * its control characters become spaces. Every value interpolated into the
 * HTML part is escaped (& < > " '). Header values are checked to be printable
 * ASCII without CR or LF, so nothing a customer typed can add a header; the
 * recipient is checked to be one bare address. The Message-ID is deterministic,
 * <order-id.status@orion>, so a receiver can drop a resent copy. */
#ifndef ORION_MAIL_RENDER_H
#define ORION_MAIL_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "order.h"
#include "orn.h"

#define MAIL_KEY_MAX        (ORDER_ID_MAX + 32) /* "<order id>/<status>", NUL included */
#define MAIL_MESSAGE_ID_MAX (ORDER_ID_MAX + 40) /* "<order-id.status@orion>", NUL included */
#define MAIL_DATE_MAX       40                  /* "Sun, 22 Nov 2026 00:43:10 +0000" */
#define MAIL_HEADER_MAX     900                 /* bytes of one header value */

/* What one email is made from. Strings are borrowed for the call. */
typedef struct mail_input {
	const char *order_id;
	const order_state *order; /* the state right after the triggering event */
	int64_t event_time_ms;    /* at_ms of the event: header X-Orion-Event-Time */
	int64_t date_ms;          /* the Date header */
	const char *from;         /* From header: "addr" or "Name <addr>" */
	const char *public_url;   /* base of links, no trailing slash */
	const char *token;        /* the confirmation token; awaiting_confirmation only */
	const char *to; /* the customer's address, opened (ADR 027); NULL: the order's customer_email */
} mail_input;

/* A rendered email. Every pointer is malloc'd and owned by the struct;
 * release with mail_message_dispose. */
typedef struct mail_message {
	order_status status;
	char *subject; /* header value */
	char *text;    /* the text/plain body, CRLF lines */
	char *html;    /* the text/html body */
	char *data;    /* the whole message, CRLF line endings */
	size_t len;    /* bytes of data */
} mail_message;

/* The status whose email an event of this kind triggers; ORDER_NONE when it
 * triggers none (OrderPlaced). */
order_status mail_status_for_event(order_event_kind kind);

/* Renders the email of in->order->status. On success *out owns its buffers.
 * ORN_EINVAL if the status sends no email, a header value or the recipient
 * is not acceptable, the order has no lines or no valid id, or the
 * confirmation email has no token; ORN_ENOMEM. On failure *out holds nothing
 * (disposing it is still safe). */
orn_rc mail_render(const mail_input *in, mail_message *out);

/* Wipes (sodium_memzero: the confirmation email holds the token) and frees
 * what m owns, and clears it. NULL ok. */
void mail_message_dispose(mail_message *m);

/* True if v is 1..MAIL_HEADER_MAX bytes of printable ASCII (space included):
 * no CR, LF or other control character, nothing outside ASCII. */
bool mail_header_value_valid(const char *v);

/* True if a is one bare address for SMTP and the To header: local@domain,
 * printable ASCII without space, quotes, brackets, commas or semicolons. */
bool mail_address_valid(const char *a);

/* The address of a From value ("addr" or "Name <addr>") into out (cap
 * bytes), for MAIL FROM. ORN_EINVAL if there is no valid address. */
orn_rc mail_address_of(const char *from, char *out, size_t cap);

/* "<order id>/<status>": the key of the sent marker. ORN_EINVAL for an
 * invalid id or a status without email. */
orn_rc mail_key(char out[MAIL_KEY_MAX], const char *order_id, order_status status);

/* "<order-id.status@orion>", with the angle brackets. Same errors as mail_key. */
orn_rc mail_message_id(char out[MAIL_MESSAGE_ID_MAX], const char *order_id, order_status status);

/* The RFC 5322 date of ms since the epoch, in UTC ("Sun, 22 Nov 2026 00:43:10 +0000"). */
void mail_format_date(char out[MAIL_DATE_MAX], int64_t ms);

/* What one low-stock alert email (to one admin) is made from. Strings are
 * borrowed for the call. */
typedef struct mail_alert_input {
	const char *product_id; /* valid id */
	const char *sku, *name; /* of the product; "" if the product is unknown */
	int64_t threshold, available, on_hand, reserved;
	const char *to;         /* the admin's address */
	const char *mail_id;    /* the delivery log's id: Message-ID <mail_id@orion> */
	int64_t event_time_ms;  /* at_ms of LowStockDetected: header X-Orion-Event-Time */
	int64_t date_ms;        /* the Date header */
	const char *from;       /* From header: "addr" or "Name <addr>" */
	const char *public_url; /* base of links, no trailing slash */
} mail_alert_input;

/* Renders the alert "Low stock: <name> (<available> left)" with the sku,
 * name, available, threshold, on hand, reserved and the link
 * <public_url>/api/v1/admin/products/<id>. When only reservations make it
 * low (stock_low_only_reserved) the subject reads "Low stock (reserved): ..."
 * and the text says "available N because M units are reserved by unpaid
 * orders; on hand is P". A subject that is not printable
 * ASCII (a name in another script) is written as RFC 2047 encoded words.
 * out->status is ORDER_NONE. ORN_EINVAL for an invalid id, mail id,
 * recipient, from or public_url; ORN_ENOMEM. On failure *out holds nothing. */
orn_rc mail_render_low_stock(const mail_alert_input *in, mail_message *out);

/* The emails of an account (ADR 031). */
typedef enum mail_account_kind {
	MAIL_ACCOUNT_VERIFY, /* the verification link: <public_url>/api/v1/auth/verify?token= */
	MAIL_ACCOUNT_EXISTS, /* "you already have an account", a hint: <public_url>/forgot-password */
	MAIL_ACCOUNT_RESET   /* the reset link: <public_url>/reset-password?token= (the storefront) */
} mail_account_kind;

/* "account_verify", "account_exists", "account_reset" (the delivery log's
 * kind and the X-Orion-Status header); NULL for another value. */
const char *mail_account_kind_name(mail_account_kind kind);

/* What one account email is made from. Strings are borrowed for the call. */
typedef struct mail_account_input {
	mail_account_kind kind;
	const char *token;      /* the link's token (verify, reset); NULL for exists */
	const char *to;         /* the account's address, opened */
	const char *mail_id;    /* the delivery log's id: Message-ID <mail_id@orion> */
	int64_t event_time_ms;  /* at_ms of the event: header X-Orion-Event-Time */
	int64_t date_ms;        /* the Date header */
	const char *from;       /* From header: "addr" or "Name <addr>" */
	const char *public_url; /* base of links, no trailing slash */
} mail_account_input;

/* Renders an account email: the subject, what happened, the link on a line
 * of its own, and what to do when the reader did not ask. ORN_EINVAL for an
 * unknown kind, an invalid mail id, recipient, from or public_url, or a
 * missing token; ORN_ENOMEM. On failure *out holds nothing. */
orn_rc mail_render_account(const mail_account_input *in, mail_message *out);

/* True if the SMTP URL carries credentials (a userinfo, "user:pass@", in
 * its authority): the mail actor then requires TLS (see mail.h). A URL
 * without "://" is read as all authority. NULL is false. */
bool mail_smtp_url_has_credentials(const char *url);

#endif
