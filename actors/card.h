/* card.h — card checks before any provider call (ADR 009, section 2).
 *
 * Pure: no I/O, no clock, no globals, no allocation. The caller passes the
 * wall clock. What a check finds is said by an error code, a field name and a
 * fixed text: none of them ever contains or depends on the input's bytes, so
 * they may be logged and sent to the customer. The number, once normalized,
 * lives only in the caller's card_checked, which the caller wipes
 * (sodium_memzero) as soon as the provider call is done; on any error
 * card_validate leaves it wiped.
 *
 * Rules, checked in this order (the first failure is reported):
 *   number       digits, optionally grouped by single spaces or dashes between
 *                digits (no leading, trailing or doubled separator); 12..19
 *                digits once stripped (CARD_BAD_NUMBER), passing the Luhn check
 *                (CARD_BAD_LUHN)
 *   brand        from the prefix: 4 visa; 51-55 and 2221-2720 mastercard; 34
 *                and 37 amex; 6011, 65 and 644-649 discover; else other
 *   exp_month    1..12 (CARD_BAD_EXPIRY)
 *   exp_year     4 digits, 2000..2100 (CARD_BAD_EXP_YEAR)
 *   expiry       the card is valid through the last millisecond (UTC) of its
 *                month: expired once now_ms reaches the first day of the next
 *                month (CARD_EXPIRED)
 *   cvc          all digits, 3 of them (4 for amex) (CARD_BAD_CVC)
 *   holder_name  1..100 bytes of valid UTF-8 without control characters,
 *                spaces allowed (actors/text.h) (CARD_BAD_HOLDER)
 * A NULL string counts as missing: the error of its field. */
#ifndef ORION_CARD_H
#define ORION_CARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CARD_DIGITS_MAX     20  /* 19 digits + NUL */
#define CARD_DIGITS_MIN_LEN 12  /* digits of the shortest number accepted */
#define CARD_BRAND_MAX      16  /* bytes of a brand name, NUL included */
#define CARD_HOLDER_MAX     101 /* bytes of a holder name, NUL included */
#define CARD_YEAR_MIN       2000
#define CARD_YEAR_MAX       2100

/* Brand names as card_checked.brand holds them. */
#define CARD_BRAND_VISA       "visa"
#define CARD_BRAND_MASTERCARD "mastercard"
#define CARD_BRAND_AMEX       "amex"
#define CARD_BRAND_DISCOVER   "discover"
#define CARD_BRAND_OTHER      "other"

typedef enum card_error {
	CARD_OK = 0,
	CARD_BAD_NUMBER,  /* not 12..19 digits with single separators between them */
	CARD_BAD_LUHN,    /* the check digit does not match */
	CARD_BAD_EXPIRY,  /* exp_month not 1..12 */
	CARD_EXPIRED,     /* the expiry month is over */
	CARD_BAD_CVC,     /* not 3 digits (4 for amex) */
	CARD_BAD_HOLDER,  /* not 1..100 bytes of text */
	CARD_BAD_EXP_YEAR /* exp_year not 2000..2100 */
} card_error;

typedef struct card_input {
	const char *number; /* digits, spaces or dashes allowed between digits */
	int64_t exp_month, exp_year;
	const char *cvc;
	const char *holder_name;
} card_input;

typedef struct card_checked {
	char digits[CARD_DIGITS_MAX]; /* the number, digits only: wipe it (sodium_memzero) after use */
	char brand[CARD_BRAND_MAX];   /* visa, mastercard, amex, discover, other */
	char last4[5];
} card_checked;

/* Checks in against the rules above at now_ms, the wall clock in ms (UTC); a
 * card expires after the last day of its month. On CARD_OK fills out (the
 * digits, the brand and the last 4 digits); on any error out is all zeros.
 * in and out must not be NULL. */
card_error card_validate(const card_input *in, int64_t now_ms, card_checked *out);

/* True if the len bytes at digits are all decimal digits (len >= 1) and pass
 * the Luhn (mod 10) check. */
bool card_luhn_valid(const char *digits, size_t len);

/* The brand of a digits-only number by its prefix (see above); "other" for
 * an unknown prefix. Never NULL. */
const char *card_brand(const char *digits, size_t len);

/* The request field an error is about: "card.number" (BAD_NUMBER,
 * BAD_LUHN), "card.exp_month" (BAD_EXPIRY, EXPIRED), "card.exp_year"
 * (BAD_EXP_YEAR), "card.cvc", "card.holder_name"; "" for CARD_OK and unknown
 * codes. */
const char *card_error_field(card_error e);

/* A fixed human text for e, never containing the input; "" for CARD_OK. */
const char *card_error_message(card_error e);

/* Stable machine code of e ("bad_number", "bad_luhn", "bad_expiry",
 * "expired", "bad_cvc", "bad_holder", "bad_exp_year"); "" for CARD_OK and
 * unknown codes. */
const char *card_error_code(card_error e);

#endif
