/* card.c — card checks before any provider call: see card.h.
 *
 * The number is copied digit by digit into the caller's card_checked (the
 * only place it is kept), and that buffer is wiped on any error; messages and
 * field names are constant strings, so no path leads from the input to a text
 * that may be logged. */
#include "card.h"
#include "orn.h"
#include "text.h"

#include <sodium.h>
#include <string.h>

#define CVC_MAX_LEN 4

static const struct {
	const char *field;
	const char *code;
	const char *message;
} errors[] = {
        [CARD_OK] = {"", "", ""},
        [CARD_BAD_NUMBER] =
                {"card.number", "bad_number",
                 "the card number must be 12 to 19 digits, optionally grouped by spaces or dashes"},
        [CARD_BAD_LUHN] = {"card.number", "bad_luhn", "the card number is not valid"},
        [CARD_BAD_EXPIRY] = {"card.exp_month", "bad_expiry", "the expiry month must be 1 to 12"},
        [CARD_EXPIRED] = {"card.exp_month", "expired", "the card has expired"},
        [CARD_BAD_CVC] = {"card.cvc", "bad_cvc",
                          "the security code must be 3 digits (4 for American Express)"},
        [CARD_BAD_HOLDER] = {"card.holder_name", "bad_holder",
                             "the cardholder name must be 1 to 100 bytes of text"},
        [CARD_BAD_EXP_YEAR] = {"card.exp_year", "bad_exp_year",
                               "the expiry year must be 4 digits, 2000 to 2100"},
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_separator(char c)
{
	return c == ' ' || c == '-';
}

/* Copies the digits of number into digits (CARD_DIGITS_MAX bytes) and sets
 * *len; false unless number is 12..19 digits with single separators between
 * them. Stops reading at the first fault, so a long input is not scanned. */
static bool strip_number(const char *number, char *digits, size_t *len)
{
	size_t n = 0;

	if (number == NULL || !is_digit(number[0]))
		return false;
	for (const char *p = number; *p != '\0'; p++) {
		if (is_separator(*p)) {
			if (!is_digit(p[1])) /* doubled or trailing; the first char is a digit */
				return false;
			continue;
		}
		if (!is_digit(*p) || n == CARD_DIGITS_MAX - 1)
			return false;
		digits[n++] = *p;
	}
	digits[n] = '\0';
	*len = n;
	return n >= CARD_DIGITS_MIN_LEN;
}

bool card_luhn_valid(const char *digits, size_t len)
{
	unsigned sum = 0;

	if (digits == NULL || len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = digits[len - 1 - i];
		unsigned d;
		if (!is_digit(c))
			return false;
		d = (unsigned)(c - '0');
		if (i % 2 == 1) {
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
	}
	return sum % 10 == 0;
}

/* The number formed by the first n digits (n <= len), or -1. */
static int prefix(const char *digits, size_t len, size_t n)
{
	int value = 0;

	if (n > len)
		return -1;
	for (size_t i = 0; i < n; i++)
		value = value * 10 + (digits[i] - '0');
	return value;
}

const char *card_brand(const char *digits, size_t len)
{
	int p1 = prefix(digits, len, 1), p2 = prefix(digits, len, 2), p3 = prefix(digits, len, 3),
	    p4 = prefix(digits, len, 4);

	if (p1 == 4)
		return CARD_BRAND_VISA;
	if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720))
		return CARD_BRAND_MASTERCARD;
	if (p2 == 34 || p2 == 37)
		return CARD_BRAND_AMEX;
	if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649))
		return CARD_BRAND_DISCOVER;
	return CARD_BRAND_OTHER;
}

/* Year and month (1..12) of the UTC day holding now_ms (proleptic Gregorian;
 * H. Hinnant's civil_from_days). */
static void utc_year_month(int64_t now_ms, int64_t *year, int64_t *month)
{
	int64_t days = now_ms / 86400000, era, doe, yoe, doy, mp;

	if (now_ms % 86400000 < 0)
		days--;
	days += 719468;
	era = (days >= 0 ? days : days - 146096) / 146097;
	doe = days - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*month = mp < 10 ? mp + 3 : mp - 9;
	*year = yoe + era * 400 + (*month <= 2);
}

static bool cvc_valid(const char *cvc, const char *brand)
{
	size_t want = strcmp(brand, CARD_BRAND_AMEX) == 0 ? 4 : 3, len;

	if (cvc == NULL)
		return false;
	len = strnlen(cvc, CVC_MAX_LEN + 1);
	if (len != want)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_digit(cvc[i]))
			return false;
	return true;
}

/* 1..100 bytes of text, not only spaces. */
static bool holder_valid(const char *name)
{
	size_t len;

	if (name == NULL)
		return false;
	len = strnlen(name, CARD_HOLDER_MAX);
	if (len == 0 || len == CARD_HOLDER_MAX || !text_valid(name, len, TEXT_SPACE))
		return false;
	return strspn(name, " ") < len;
}

static card_error check(const card_input *in, int64_t now_ms, card_checked *out)
{
	int64_t year, month;
	size_t len;

	if (!strip_number(in->number, out->digits, &len))
		return CARD_BAD_NUMBER;
	if (!card_luhn_valid(out->digits, len))
		return CARD_BAD_LUHN;
	strcpy(out->brand, card_brand(out->digits, len));
	memcpy(out->last4, out->digits + len - 4, 4);
	out->last4[4] = '\0';
	if (in->exp_month < 1 || in->exp_month > 12)
		return CARD_BAD_EXPIRY;
	if (in->exp_year < CARD_YEAR_MIN || in->exp_year > CARD_YEAR_MAX)
		return CARD_BAD_EXP_YEAR;
	utc_year_month(now_ms, &year, &month);
	if (in->exp_year < year || (in->exp_year == year && in->exp_month < month))
		return CARD_EXPIRED;
	if (!cvc_valid(in->cvc, out->brand))
		return CARD_BAD_CVC;
	if (!holder_valid(in->holder_name))
		return CARD_BAD_HOLDER;
	return CARD_OK;
}

card_error card_validate(const card_input *in, int64_t now_ms, card_checked *out)
{
	card_error e;

	sodium_memzero(out, sizeof *out);
	e = check(in, now_ms, out);
	if (e != CARD_OK)
		sodium_memzero(out, sizeof *out);
	return e;
}

const char *card_error_field(card_error e)
{
	return (size_t)e < ORN_ARRAY_LEN(errors) ? errors[e].field : "";
}

const char *card_error_message(card_error e)
{
	return (size_t)e < ORN_ARRAY_LEN(errors) ? errors[e].message : "";
}

const char *card_error_code(card_error e)
{
	return (size_t)e < ORN_ARRAY_LEN(errors) ? errors[e].code : "";
}
