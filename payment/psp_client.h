/* psp_client.h — the client side of the card payment provider's HTTP API
 * (Stripe-shaped; ADR 028 section 1): form encoding, the provider's
 * Idempotency-Key of a payment, response parsing (pure), and the libcurl
 * calls (POST /v1/payment_intents, GET /v1/payment_intents?metadata[order_id]=,
 * GET /v1/payment_methods/{id}, POST /v1/refunds).
 *
 * No card data: the shopper's browser tokenizes the card at the provider,
 * Orion sends only the payment method id (pm_…). Error texts of the provider
 * ("message") are never parsed nor returned. Response buffers are wiped on
 * dispose all the same.
 *
 * A pspc_client owns one curl easy handle: use it from one thread at a time
 * (one client per worker). curl_global_init must have been called. */
#ifndef ORION_PSP_CLIENT_H
#define ORION_PSP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orn.h"

#define PSPC_KEY_MAX      256 /* bytes of an Idempotency-Key, NUL included (1..255 chars) */
#define PSPC_ID_MAX       129 /* bytes of an intent, charge, refund or payment method id, NUL included */
#define PSPC_URL_MAX      256 /* bytes of a challenge URL, NUL included */
#define PSPC_CODE_MAX     64  /* bytes of an error type, code, decline code, param or reason */
#define PSPC_STATUS_MAX   32
#define PSPC_BRAND_MAX    33
#define PSPC_LAST4_MAX    5
#define PSPC_CURRENCY_MAX 4
#define PSPC_ORDER_MAX    65
#define PSPC_FORM_MAX     2048          /* an intent's form body always fits (bounded fields) */
#define PSPC_LIST_MAX     32            /* intents of one order read from a list */
#define PSPC_AMOUNT_MAX   10000000000LL /* the provider's largest payment, minor units (10^10) */

/* ---- pure ---- */

/* The provider's Idempotency-Key of a payment into out: "<order_id>:" +
 * lowercase hex SHA-256 of customer_key, or "<order_id>:pay" if customer_key
 * is NULL or "". ORN_EINVAL if order_id is not a valid id. libsodium must be
 * initialised. */
orn_rc pspc_provider_key(const char *order_id, const char *customer_key, char out[PSPC_KEY_MAX]);

/* Appends "key=value" (with a leading '&' unless *len is 0) to buf (cap
 * bytes, kept NUL-terminated), percent-escaping the value as
 * application/x-www-form-urlencoded (every byte but A-Z a-z 0-9 - . _ ~
 * becomes %XX) and the key likewise except '[' and ']' (Stripe's nested
 * names). ORN_ETOOBIG if it does not fit (buf then holds what it held). */
orn_rc pspc_form_add(char *buf, size_t cap, size_t *len, const char *key, const char *value);

/* True if s is a payment method id as a Pay request may carry it: "pm_"
 * then 1..125 more printable ASCII characters, no space (1..128 in all). */
bool pspc_payment_method_valid(const char *s);

/* What an intent needs. Strings are borrowed. */
typedef struct pspc_intent_request {
	int64_t amount;             /* minor units, 1..PSPC_AMOUNT_MAX */
	const char *currency;       /* 3 letters */
	const char *payment_method; /* pm_… */
	const char *order_id;       /* metadata[order_id] */
	const char *return_url;     /* where 3-D Secure sends the shopper back; NULL or "": none */
} pspc_intent_request;

/* The form body of POST /v1/payment_intents into buf (PSPC_FORM_MAX is
 * enough): amount, currency, payment_method, confirm=true,
 * metadata[order_id], return_url. ORN_EINVAL for a NULL string or an amount
 * out of range, ORN_ETOOBIG if cap is too small. */
orn_rc pspc_intent_form(const pspc_intent_request *r, char *buf, size_t cap, size_t *len);

/* An intent as the provider shows it (ADR 028 section 1). Absent or null
 * strings are "". */
typedef struct pspc_intent {
	char id[PSPC_ID_MAX];
	char status[PSPC_STATUS_MAX]; /* succeeded, requires_action, requires_payment_method, ... */
	int64_t amount, amount_refunded;
	char currency[PSPC_CURRENCY_MAX];
	char payment_method[PSPC_ID_MAX];
	char latest_charge[PSPC_ID_MAX];
	char order_id[PSPC_ORDER_MAX];          /* metadata[order_id] */
	char error_code[PSPC_CODE_MAX];         /* last_payment_error.code */
	char error_decline_code[PSPC_CODE_MAX]; /* last_payment_error.decline_code */
	char action_url[PSPC_URL_MAX];          /* next_action.redirect_to_url.url */
	/* The card, when the answer carries it (an expanded payment_method
	 * {card:{brand, last4}}, or payment_method_details.card); "" if not. */
	char brand[PSPC_BRAND_MAX];
	char last4[PSPC_LAST4_MAX];
} pspc_intent;

/* An error body {"error":{type, code, decline_code, param, payment_intent}};
 * absent fields are "". The message is ignored on purpose. */
typedef struct pspc_error {
	char type[PSPC_CODE_MAX];
	char code[PSPC_CODE_MAX];
	char decline_code[PSPC_CODE_MAX];
	char param[PSPC_CODE_MAX];
} pspc_error;

/* A refund. */
typedef struct pspc_refund {
	char id[PSPC_ID_MAX];
	char payment_intent[PSPC_ID_MAX];
	char charge[PSPC_ID_MAX];
	char status[PSPC_STATUS_MAX]; /* succeeded, failed, pending */
	char failure_reason[PSPC_CODE_MAX];
	int64_t amount;
} pspc_refund;

/* A payment method's card (brand and last 4 only). */
typedef struct pspc_card {
	char brand[PSPC_BRAND_MAX];
	char last4[PSPC_LAST4_MAX];
} pspc_card;

/* Parse JSON bodies (len bytes, need not be NUL-terminated). ORN_EDECODE for
 * anything else, including an id that is not 1..128 printable ASCII without
 * spaces, a URL not 1..255 of the same, a brand not 1..32 of [a-z0-9_-] or a
 * last4 not 4 digits (so that what is parsed is what the payment and order
 * aggregates accept). */
orn_rc pspc_parse_intent(const char *json, size_t len, pspc_intent *out);
/* An error body; with intent non-NULL, also error.payment_intent (the
 * declined intent of a 402) into *intent, whose id is "" if there is none. */
orn_rc pspc_parse_error(const char *json, size_t len, pspc_error *out, pspc_intent *intent);
orn_rc pspc_parse_refund(const char *json, size_t len, pspc_refund *out);
/* A payment method {id, card:{brand, last4}}. */
orn_rc pspc_parse_payment_method(const char *json, size_t len, pspc_card *out);
/* A list {"object":"list","data":[intents]}: the first cap intents into
 * out, their number into *count. */
orn_rc pspc_parse_intent_list(const char *json, size_t len, pspc_intent *out, size_t cap, size_t *count);

/* What the answer to POST /v1/payment_intents (confirm=true) means. */
typedef enum pspc_outcome {
	PSPC_SUCCEEDED,       /* 200, status succeeded: *intent filled */
	PSPC_ACTION_REQUIRED, /* 200, status requires_action with a URL: *intent filled */
	PSPC_DECLINED,        /* 402 card_error with its intent, or 200 requires_payment_method:
	                       *intent and *error (code, decline_code) filled */
	PSPC_RETRY,           /* 409 idempotency_key_in_use, 429, 5xx: ask again with the same key */
	PSPC_REFUSED          /* anything else (400, 401, an unreadable body): *error if any */
} pspc_outcome;

/* Classifies an HTTP status and body of an intent call. */
pspc_outcome pspc_intent_outcome(long status, const char *body, size_t len, pspc_intent *intent,
                                 pspc_error *error);

/* The decline code an intent declined with: its decline_code, else its code,
 * else "declined". */
const char *pspc_decline_code(const pspc_intent *intent, const pspc_error *error);

/* ---- I/O ---- */

typedef struct pspc_client pspc_client;

/* An HTTP answer: status and body (malloc'd, NUL-terminated; wipe and free
 * with pspc_response_dispose). */
typedef struct pspc_response {
	long status;
	char *body;
	size_t len;
	bool replayed; /* Idempotent-Replayed: true */
} pspc_response;

/* A client of base_url (no trailing slash) with the Bearer api_key; both
 * copied. connect_timeout_ms bounds the TCP connect of each call.
 * ORN_EINVAL for a NULL or empty argument, ORN_ENOMEM. */
orn_rc pspc_client_create(const char *base_url, const char *api_key, int64_t connect_timeout_ms,
                          pspc_client **out);
/* Frees the client (wipes the key). NULL ok. */
void pspc_client_destroy(pspc_client *c);

/* Each call returns ORN_OK when the provider answered (any HTTP status; out
 * filled), ORN_ETIMEOUT when no full answer came within timeout_ms,
 * ORN_EUNAVAILABLE when it could not be reached, ORN_EIO for another
 * transport error, ORN_ENOMEM, ORN_EINVAL for a bad argument. On error out
 * is empty. */

/* POST /v1/payment_intents with form (from pspc_intent_form) and Idempotency-Key idem_key. */
orn_rc pspc_intent_post(pspc_client *c, const char *form, size_t form_len, const char *idem_key,
                        int64_t timeout_ms, pspc_response *out);
/* GET /v1/payment_intents?metadata[order_id]=<order_id> (newest first). */
orn_rc pspc_intents_of_order(pspc_client *c, const char *order_id, int64_t timeout_ms, pspc_response *out);
/* GET /v1/payment_methods/<id> (id: pspc_payment_method_valid). */
orn_rc pspc_payment_method_get(pspc_client *c, const char *id, int64_t timeout_ms, pspc_response *out);
/* POST /v1/refunds payment_intent=<intent_id> with Idempotency-Key idem_key. */
orn_rc pspc_refund_post(pspc_client *c, const char *intent_id, const char *idem_key, int64_t timeout_ms,
                        pspc_response *out);

/* Wipes and frees the body; r may be reused. */
void pspc_response_dispose(pspc_response *r);

#endif
