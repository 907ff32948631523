/* psp_form.h — the pure parts of the card payment provider sandbox
 * (psp_sandbox.h; ADR 028 section 1): strict form decoding, the canonical
 * digest of a request's parameters for idempotency, and the checks of a
 * payment method's card and of a payment intent (Luhn and card brands are
 * actors/card.h's, as the payment service's).
 *
 * Form bodies and query strings are application/x-www-form-urlencoded:
 * pairs separated by '&', '+' decodes to a space, %XX to its byte; keys are
 * decoded too, so "card%5Bnumber%5D" and "card[number]" are the same key.
 * Decoded keys and values must be UTF-8 without NUL bytes.
 *
 * PCI: decoded values (a card number, a CVC) live only in the form and are
 * wiped (sodium_memzero) by psp_form_dispose. The digest never contains the
 * parameters in clear, and is keyed with a secret (the API key), so the
 * state file's digests cannot be searched for card numbers.
 *
 * No I/O, no clock: the caller passes the current month. libsodium must be
 * initialised. */
#ifndef ORION_PSP_FORM_H
#define ORION_PSP_FORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orn.h"

#define PSP_FORM_MAX_PARAMS 64
#define PSP_DIGEST_BYTES    32
#define PSP_IDEMPOTENCY_MAX 255

typedef struct psp_param {
	char *key;
	char *value;
	size_t key_len, value_len;
} psp_param;

typedef struct psp_form {
	psp_param items[PSP_FORM_MAX_PARAMS];
	size_t count;
} psp_form;

/* Decodes len bytes of text into f (which need not be initialised; empty
 * segments such as "a=1&&b=2" are skipped, a segment without '=' has an
 * empty value). ORN_EINVAL for a bad %-escape, an empty key, a NUL byte or
 * invalid UTF-8; ORN_EEXISTS for a key given twice (its decoded name copied
 * into bad); ORN_ETOOBIG for more than PSP_FORM_MAX_PARAMS pairs; ORN_ENOMEM.
 * On failure f holds nothing (no dispose needed, though it is harmless). */
orn_rc psp_form_parse(const char *text, size_t len, psp_form *f, char *bad, size_t bad_cap);

/* Wipes and frees every key and value; f is then empty. */
void psp_form_dispose(psp_form *f);

/* The decoded value of key, or NULL. */
const char *psp_form_get(const psp_form *f, const char *key);

/* The first key of f that is not in allowed (NULL-terminated), or NULL. */
const char *psp_form_unknown(const psp_form *f, const char *const *allowed);

/* SHA-256 (crypto_hash_sha256) of the canonical form of (secret, scope, f):
 * each part length-prefixed, the pairs sorted by key, so the digest does not
 * depend on the order or the %-encoding of the parameters. scope names the
 * endpoint ("POST /v1/payment_intents"): one key on two endpoints differs. */
void psp_form_digest(const psp_form *f, const char *secret, const char *scope, uint8_t out[PSP_DIGEST_BYTES]);

/* True if key is 1..255 printable ASCII characters (0x20..0x7e). */
bool psp_idempotency_key_valid(const char *key);

/* A 400 invalid_request_error: code is "parameter_missing",
 * "parameter_invalid" or "parameter_unknown"; param names the parameter;
 * message never contains a value. */
typedef struct psp_param_error {
	int status; /* 400; 402 for a card_error of psp_card_check */
	const char *code;
	char param[64];
	char message[160];
} psp_param_error;

/* ---- payment methods and intents (ADR 028 section 1) ---------------------- */

/* What a payment method's card does when an intent confirms it (ADR 028's
 * test cards); recorded on the payment method instead of the number. */
typedef enum psp_behaviour {
	PSP_BEHAVIOUR_APPROVE,            /* 4242424242424242 and any other Luhn-valid number */
	PSP_BEHAVIOUR_DECLINE_GENERIC,    /* 4000000000000002 */
	PSP_BEHAVIOUR_DECLINE_FUNDS,      /* 4000000000009995 */
	PSP_BEHAVIOUR_EXPIRED_CARD,       /* 4000000000000069 */
	PSP_BEHAVIOUR_INCORRECT_CVC,      /* 4000000000000127 */
	PSP_BEHAVIOUR_REQUIRES_3DS,       /* 4000002500003155 */
	PSP_BEHAVIOUR_SILENT,             /* 4000000000000309 */
	PSP_BEHAVIOUR_REFUND_FAILS_FIRST, /* 4000000000005126 */
} psp_behaviour;

/* The stable name of a behaviour ("approve", "requires_3ds", …) for the
 * state file, and back (false for an unknown name). */
const char *psp_behaviour_name(psp_behaviour b);
bool psp_behaviour_parse(const char *name, psp_behaviour *out);

/* The card error code, decline code and message of a declining behaviour
 * (card_declined / generic_decline, …); NULL code for the others. */
const char *psp_behaviour_code(psp_behaviour b);
const char *psp_behaviour_decline_code(psp_behaviour b);
const char *psp_behaviour_message(psp_behaviour b);

/* A valid card of POST /v1/payment_methods: what the sandbox keeps. */
typedef struct psp_card {
	char brand[16];
	char last4[5];
	int exp_month, exp_year;
	psp_behaviour behaviour;
} psp_card;

/* Checks POST /v1/payment_methods: type=card, card[number], card[exp_month],
 * card[exp_year], card[cvc] required, nothing else. ORN_OK with *out filled;
 * ORN_EINVAL with *err filled: err->status 400 (parameter_missing,
 * parameter_invalid, parameter_unknown) or 402, a card_error with code
 * incorrect_number (not 12..19 digits, or Luhn fails), invalid_expiry_month,
 * invalid_expiry_year (malformed, or before now_year/now_month) or
 * invalid_cvc. Neither *out nor *err ever holds the number or the CVC. */
orn_rc psp_card_check(const psp_form *f, int now_year, int now_month, psp_card *out, psp_param_error *err);

/* A valid POST /v1/payment_intents; strings borrowed from the form. */
typedef struct psp_intent_request {
	int64_t amount;
	char currency[4];
	const char *payment_method; /* "pm_…" as given (not yet looked up) */
	const char *order_id;       /* metadata[order_id] or NULL */
	const char *return_url;     /* an absolute http(s) URL or NULL */
} psp_intent_request;

/* Checks POST /v1/payment_intents: amount, currency, payment_method
 * required; confirm optional but only "true" (the sandbox confirms at
 * creation); metadata[order_id] (1..500 bytes of text) and return_url (an
 * http:// or https:// URL of at most 2000 bytes, no space or control
 * character) optional. ORN_EINVAL with *err (status 400) otherwise. */
orn_rc psp_intent_check(const psp_form *f, psp_intent_request *out, psp_param_error *err);

#endif
