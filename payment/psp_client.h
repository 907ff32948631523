/* pspc_client.h — the client side of the card payment provider's HTTP API
 * (Stripe-style; ADR 009 section 1): form encoding, the provider's
 * Idempotency-Key of a payment, response parsing (pure), and the libcurl
 * calls (POST /v1/charges, GET /v1/charges?metadata[order_id]=,
 * POST /v1/refunds).
 *
 * PCI: a charge's form body holds the card number and CVC. It is built into
 * a buffer the caller owns (and wipes); the client never copies it, never
 * logs it, and wipes its own response buffers on dispose. Error texts of the
 * provider ("message") are never parsed nor returned.
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
#define PSPC_ID_MAX       129 /* bytes of a charge or refund id, NUL included */
#define PSPC_CODE_MAX     64  /* bytes of an error type, code, decline code or param */
#define PSPC_STATUS_MAX   16
#define PSPC_BRAND_MAX    33
#define PSPC_LAST4_MAX    5
#define PSPC_CURRENCY_MAX 4
#define PSPC_ORDER_MAX    65
#define PSPC_FORM_MAX     2048          /* a charge's form body always fits (bounded fields) */
#define PSPC_LIST_MAX     32            /* charges of one order read from a list */
#define PSPC_AMOUNT_MAX   10000000000LL /* the provider's largest charge, minor units (10^10) */

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

/* What a charge needs. Strings are borrowed. */
typedef struct pspc_charge_request {
	int64_t amount;       /* minor units, 1..PSPC_AMOUNT_MAX */
	const char *currency; /* 3 letters */
	const char *card_number;
	int exp_month, exp_year;
	const char *cvc;
	const char *holder_name;
	const char *order_id; /* metadata[order_id] */
} pspc_charge_request;

/* The form body of POST /v1/charges into buf (PSPC_FORM_MAX is enough).
 * The buffer then holds the card: wipe it. ORN_EINVAL for a NULL string or
 * an amount out of range, ORN_ETOOBIG if cap is too small. */
orn_rc pspc_charge_form(const pspc_charge_request *r, char *buf, size_t cap, size_t *len);

/* A charge as the provider shows it (brand, last 4 and ids only). */
typedef struct pspc_charge {
	char id[PSPC_ID_MAX];
	char status[PSPC_STATUS_MAX]; /* "succeeded", "failed", ... */
	bool paid, refunded;
	int64_t amount;
	char currency[PSPC_CURRENCY_MAX];
	char brand[PSPC_BRAND_MAX];    /* "" if absent */
	char last4[PSPC_LAST4_MAX];    /* "" if absent */
	char order_id[PSPC_ORDER_MAX]; /* metadata[order_id], "" if absent */
} pspc_charge;

/* An error body {"error":{type, code, decline_code, param, charge}}; absent
 * fields are "". The message is ignored on purpose. */
typedef struct pspc_error {
	char type[PSPC_CODE_MAX];
	char code[PSPC_CODE_MAX];
	char decline_code[PSPC_CODE_MAX];
	char param[PSPC_CODE_MAX];
	char charge[PSPC_ID_MAX];
} pspc_error;

/* A refund. */
typedef struct pspc_refund {
	char id[PSPC_ID_MAX];
	char charge[PSPC_ID_MAX];
	char status[PSPC_STATUS_MAX];
} pspc_refund;

/* Parse JSON bodies (len bytes, need not be NUL-terminated). ORN_EDECODE for
 * anything else, including an id that is not 1..128 printable ASCII without
 * spaces, a brand not 1..32 of [a-z0-9_-] or a last4 not 4 digits (so that
 * what is parsed is what the order aggregate accepts). */
orn_rc pspc_parse_charge(const char *json, size_t len, pspc_charge *out);
orn_rc pspc_parse_error(const char *json, size_t len, pspc_error *out);
orn_rc pspc_parse_refund(const char *json, size_t len, pspc_refund *out);
/* A list {"object":"list","data":[charges]}: the first cap charges into
 * out, their number into *count. */
orn_rc pspc_parse_charge_list(const char *json, size_t len, pspc_charge *out, size_t cap, size_t *count);

/* What the answer to POST /v1/charges means. */
typedef enum pspc_outcome {
	PSPC_APPROVED, /* 200 with a succeeded, paid charge: *charge filled */
	PSPC_DECLINED, /* 402 card_error: *error filled (code, decline_code, charge) */
	PSPC_RETRY,    /* 409 idempotency_key_in_use, 429, 5xx: ask again with the same key */
	PSPC_REFUSED   /* anything else (400, 401, an unreadable body): a bug or a bad setup */
} pspc_outcome;

/* Classifies an HTTP status and body of a charge call. */
pspc_outcome pspc_charge_outcome(long status, const char *body, size_t len, pspc_charge *charge,
                                 pspc_error *error);

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
 * transport error, ORN_ENOMEM. On error out is empty. */

/* POST /v1/charges with form (from pspc_charge_form) and Idempotency-Key idem_key. */
orn_rc pspc_charge_post(pspc_client *c, const char *form, size_t form_len, const char *idem_key,
                        int64_t timeout_ms, pspc_response *out);
/* GET /v1/charges?metadata[order_id]=<order_id>. */
orn_rc pspc_charges_of_order(pspc_client *c, const char *order_id, int64_t timeout_ms, pspc_response *out);
/* POST /v1/refunds charge=<charge_id> with Idempotency-Key idem_key. */
orn_rc pspc_refund_post(pspc_client *c, const char *charge_id, const char *idem_key, int64_t timeout_ms,
                        pspc_response *out);

/* Wipes and frees the body; r may be reused. */
void pspc_response_dispose(pspc_response *r);

#endif
