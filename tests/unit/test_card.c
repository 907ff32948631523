/* test_card.c — unit tests of the card checks (actors/card.c).
 *
 * Given a card and a fixed clock, when it is validated, then the expected
 * error (the first rule broken) or the normalized digits, brand and last 4.
 * Every rule of ADR 009 with its edges: separators, 11/12/19/20 digits, Luhn,
 * each brand prefix and its neighbours, the expiry month boundary (the
 * current month is valid, the last is not) across years, year bounds, CVC
 * lengths per brand, holder bounds and text rules; errors never carry the
 * input, and a rejected card leaves nothing in the output. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "card.h"

/* UTC instants in ms. */
#define MAR_15_2030     1899806400000LL /* 2030-03-15T12:00:00Z */
#define MAR_01_2030     1898553600000LL /* 2030-03-01T00:00:00Z */
#define APR_01_2030     1901232000000LL /* 2030-04-01T00:00:00Z */
#define JAN_01_2030     1893456000000LL /* 2030-01-01T00:00:00Z */
#define FEB_29_2028     1835438400000LL /* 2028-02-29T12:00:00Z */
#define MAR_01_2100     4107542400000LL /* 2100-03-01T00:00:00Z */
#define DEC_31_1999     946598400000LL  /* 1999-12-31T00:00:00Z */
#define DEC_31_1969_23H (-3600000LL)    /* 1969-12-31T23:00:00Z */
#define MAR_01_1900     (-2203891200000LL)
#define NOW             MAR_15_2030
#define VISA            "4242424242424242"
#define AMEX            "378282246310005"
#define MASTERCARD      "5555555555554444"
#define MASTERCARD_2    "2223003122003222"
#define DISCOVER        "6011111111111117"

static card_input input;
static card_checked checked;
static card_error error;

static void setup(void)
{
	input = (card_input){
	        .number = VISA,
	        .exp_month = 12,
	        .exp_year = 2030,
	        .cvc = "123",
	        .holder_name = "Ann Lee",
	};
	memset(&checked, 0x5a, sizeof checked); /* validate must overwrite all of it */
}

TestSuite(card, .init = setup);

static void when_validated_at(int64_t now_ms)
{
	error = card_validate(&input, now_ms, &checked);
}

static void when_validated(void)
{
	when_validated_at(NOW);
}

static void then_ok(const char *digits, const char *brand, const char *last4)
{
	cr_assert_eq(error, CARD_OK, "error %s", card_error_code(error));
	cr_assert_str_eq(checked.digits, digits);
	cr_assert_str_eq(checked.brand, brand);
	cr_assert_str_eq(checked.last4, last4);
}

static void then_error(card_error expected)
{
	static const card_checked zero;

	cr_assert_eq(error, expected, "error %s, expected %s", card_error_code(error),
	             card_error_code(expected));
	cr_assert(memcmp(&checked, &zero, sizeof checked) == 0, "the output is not wiped");
}

/* Writes a Luhn-valid number of len digits starting with prefix into buf. */
static const char *luhn_number(const char *prefix, size_t len, char *buf)
{
	size_t n = strlen(prefix);

	memcpy(buf, prefix, n);
	memset(buf + n, '0', len - n);
	buf[len] = '\0';
	for (char check = '0'; check <= '9'; check++) {
		buf[len - 1] = check;
		if (card_luhn_valid(buf, len))
			return buf;
	}
	cr_assert_fail("no check digit");
	return NULL;
}

/* ---- numbers ---- */

Test(card, the_test_cards_are_valid_with_their_brands)
{
	static const struct {
		const char *number, *brand, *last4;
	} cards[] = {
	        {VISA, "visa", "4242"},
	        {"4000000000000002", "visa", "0002"},
	        {"4000000000009995", "visa", "9995"},
	        {"4000000000000069", "visa", "0069"},
	        {"4000000000000127", "visa", "0127"},
	        {"4000000000000309", "visa", "0309"},
	        {MASTERCARD, "mastercard", "4444"},
	        {MASTERCARD_2, "mastercard", "3222"},
	        {DISCOVER, "discover", "1117"},
	};

	for (size_t i = 0; i < sizeof cards / sizeof cards[0]; i++) {
		setup();
		input.number = cards[i].number;
		when_validated();
		then_ok(cards[i].number, cards[i].brand, cards[i].last4);
	}
	setup();
	input.number = AMEX;
	input.cvc = "1234";
	when_validated();
	then_ok(AMEX, "amex", "0005");
}

Test(card, single_spaces_and_dashes_between_digits_are_stripped)
{
	static const char *const numbers[] = {
	        "4242 4242 4242 4242", "4242-4242-4242-4242",
	        "4242 4242-4242 4242", "4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2",
	        "42424242 42424242",
	};

	for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
		setup();
		input.number = numbers[i];
		when_validated();
		then_ok(VISA, "visa", "4242");
	}
}

Test(card, misplaced_separators_and_other_characters_are_bad_numbers)
{
	static const char *const numbers[] = {
	        "4242  4242 4242 4242", /* doubled */
	        "4242 -4242 4242 4242",
	        " 4242424242424242", /* leading */
	        "-4242424242424242",
	        "4242424242424242 ", /* trailing */
	        "4242424242424242-",
	        "4242_4242_4242_4242",
	        "4242.4242.4242.4242",
	        "4242\t4242424242424",
	        "42424242424242a2",
	        "４２４２４２４２４２４２４２４２", /* full-width digits */
	        "",
	};

	for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
		setup();
		input.number = numbers[i];
		when_validated();
		then_error(CARD_BAD_NUMBER);
	}
	setup();
	input.number = NULL;
	when_validated();
	then_error(CARD_BAD_NUMBER);
}

Test(card, a_number_has_12_to_19_digits)
{
	char buf[64];

	input.number = luhn_number("4", 11, buf);
	when_validated();
	then_error(CARD_BAD_NUMBER);
	input.number = luhn_number("4", 12, buf);
	when_validated();
	then_ok(buf, "visa", buf + 8);
	input.number = luhn_number("4", 19, buf);
	when_validated();
	then_ok(buf, "visa", buf + 15);
	input.number = luhn_number("4", 20, buf);
	when_validated();
	then_error(CARD_BAD_NUMBER);
	/* 19 digits grouped: the separators do not count */
	input.number = "4000 0000 0000 0000 006";
	when_validated();
	then_ok("4000000000000000006", "visa", "0006");
}

Test(card, a_very_long_number_is_refused_without_overflow)
{
	static char number[4096];

	memset(number, '4', sizeof number - 1);
	input.number = number;
	when_validated();
	then_error(CARD_BAD_NUMBER);
}

Test(card, the_check_digit_must_match)
{
	input.number = "4242424242424241";
	when_validated();
	then_error(CARD_BAD_LUHN);
	input.number = "4242 4242 4242 4243";
	when_validated();
	then_error(CARD_BAD_LUHN);
	input.number = "378282246310006";
	when_validated();
	then_error(CARD_BAD_LUHN);
}

Test(card, luhn)
{
	cr_assert(card_luhn_valid("79927398713", 11));
	cr_assert_not(card_luhn_valid("79927398710", 11));
	cr_assert(card_luhn_valid("0", 1));
	cr_assert(card_luhn_valid("18", 2));
	cr_assert_not(card_luhn_valid("19", 2));
	cr_assert(card_luhn_valid("59", 2)); /* 5 doubled is 10: 1 + 0 */
	cr_assert(card_luhn_valid(VISA, 16));
	cr_assert(card_luhn_valid(AMEX, 15));
	cr_assert(card_luhn_valid("4242424242424241", 15)); /* only len digits count */
	cr_assert_not(card_luhn_valid("4242424242424241", 16));
	cr_assert_not(card_luhn_valid("", 0));
	cr_assert_not(card_luhn_valid(NULL, 3));
	cr_assert_not(card_luhn_valid("0a", 2));
	cr_assert_not(card_luhn_valid("0 0", 3));
}

/* ---- brands ---- */

Test(card, brands_by_prefix_with_their_neighbours)
{
	static const struct {
		const char *prefix, *brand;
	} cases[] = {
	        {"4", "visa"},          {"49", "visa"},         {"3", "other"},         {"51", "mastercard"},
	        {"53", "mastercard"},   {"55", "mastercard"},   {"50", "other"},        {"56", "other"},
	        {"2221", "mastercard"}, {"2500", "mastercard"}, {"2720", "mastercard"}, {"2220", "other"},
	        {"2721", "other"},      {"34", "amex"},         {"37", "amex"},         {"35", "other"},
	        {"36", "other"},        {"6011", "discover"},   {"6010", "other"},      {"6012", "other"},
	        {"65", "discover"},     {"644", "discover"},    {"646", "discover"},    {"649", "discover"},
	        {"643", "other"},       {"640", "other"},       {"66", "other"},        {"1", "other"},
	        {"9", "other"},         {"0", "other"},
	};
	char buf[32];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		luhn_number(cases[i].prefix, 16, buf);
		cr_assert_str_eq(card_brand(buf, 16), cases[i].brand, "prefix %s", cases[i].prefix);
		setup();
		input.number = buf;
		input.cvc = strcmp(cases[i].brand, "amex") == 0 ? "1234" : "123";
		when_validated();
		then_ok(buf, cases[i].brand, buf + 12);
	}
}

Test(card, brand_of_short_input)
{
	cr_assert_str_eq(card_brand("4", 1), "visa");
	cr_assert_str_eq(card_brand("65", 2), "discover");
	cr_assert_str_eq(card_brand("601", 3), "other");
	cr_assert_str_eq(card_brand("", 0), "other");
	cr_assert_str_eq(card_brand("4242", 0), "other"); /* only len digits count */
}

/* ---- expiry ---- */

Test(card, the_current_month_is_valid_the_last_is_not)
{
	input.exp_year = 2030;
	input.exp_month = 3;
	when_validated_at(MAR_15_2030);
	then_ok(VISA, "visa", "4242");
	when_validated_at(APR_01_2030 - 1); /* the last millisecond of March */
	then_ok(VISA, "visa", "4242");
	when_validated_at(APR_01_2030);
	then_error(CARD_EXPIRED);
	input.exp_month = 2;
	when_validated_at(MAR_01_2030 - 1);
	then_ok(VISA, "visa", "4242");
	when_validated_at(MAR_01_2030);
	then_error(CARD_EXPIRED);
	when_validated_at(MAR_15_2030);
	then_error(CARD_EXPIRED);
}

Test(card, expiry_across_years)
{
	input.exp_year = 2029;
	input.exp_month = 12;
	when_validated_at(JAN_01_2030 - 1);
	then_ok(VISA, "visa", "4242");
	when_validated_at(JAN_01_2030);
	then_error(CARD_EXPIRED);
	/* an earlier month of a later year is fine; a later month of an earlier year is not */
	input.exp_year = 2031;
	input.exp_month = 1;
	when_validated_at(MAR_15_2030);
	then_ok(VISA, "visa", "4242");
	input.exp_year = 2029;
	input.exp_month = 12;
	when_validated_at(MAR_15_2030);
	then_error(CARD_EXPIRED);
}

Test(card, expiry_on_calendar_edges)
{
	/* 29 February is in February */
	input.exp_year = 2028;
	input.exp_month = 2;
	when_validated_at(FEB_29_2028);
	then_ok(VISA, "visa", "4242");
	/* 2100 is not a leap year: 1 March follows 28 February */
	input.exp_year = 2100;
	when_validated_at(MAR_01_2100 - 1);
	then_ok(VISA, "visa", "4242");
	when_validated_at(MAR_01_2100);
	then_error(CARD_EXPIRED);
	/* clocks before 2000, and before 1970 */
	input.exp_year = 2000;
	input.exp_month = 1;
	when_validated_at(DEC_31_1999);
	then_ok(VISA, "visa", "4242");
	when_validated_at(DEC_31_1969_23H);
	then_ok(VISA, "visa", "4242");
	when_validated_at(MAR_01_1900);
	then_ok(VISA, "visa", "4242");
	/* the clock's extremes: no overflow; far past is before any card's expiry, far future after */
	when_validated_at(INT64_MIN);
	then_ok(VISA, "visa", "4242");
	when_validated_at(INT64_MAX);
	then_error(CARD_EXPIRED);
}

Test(card, the_month_is_1_to_12)
{
	static const int64_t months[] = {0, 13, -1, 100, INT64_MIN, INT64_MAX};

	for (size_t i = 0; i < sizeof months / sizeof months[0]; i++) {
		input.exp_month = months[i];
		when_validated();
		then_error(CARD_BAD_EXPIRY);
	}
	input.exp_month = 1;
	input.exp_year = 2031;
	when_validated();
	then_ok(VISA, "visa", "4242");
	input.exp_month = 12;
	when_validated();
	then_ok(VISA, "visa", "4242");
}

Test(card, the_year_has_4_digits_2000_to_2100)
{
	static const int64_t years[] = {30, 99, 1999, 2101, 9999, -2030, INT64_MAX};

	for (size_t i = 0; i < sizeof years / sizeof years[0]; i++) {
		input.exp_year = years[i];
		when_validated();
		then_error(CARD_BAD_EXP_YEAR);
	}
	input.exp_year = 2100;
	when_validated();
	then_ok(VISA, "visa", "4242");
	input.exp_year = 2000;
	when_validated_at(DEC_31_1999);
	then_ok(VISA, "visa", "4242");
	when_validated();
	then_error(CARD_EXPIRED);
}

/* ---- CVC ---- */

Test(card, the_cvc_has_3_digits_or_4_for_amex)
{
	static const char *const bad[] = {"12", "1234", "", "12a", "1 3", "-12", "12345"};
	static const char *const bad_amex[] = {"123", "12345", "123a", ""};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		input.cvc = bad[i];
		when_validated();
		then_error(CARD_BAD_CVC);
	}
	input.cvc = NULL;
	when_validated();
	then_error(CARD_BAD_CVC);
	input.cvc = "000";
	when_validated();
	then_ok(VISA, "visa", "4242");
	input.number = MASTERCARD;
	input.cvc = "999";
	when_validated();
	then_ok(MASTERCARD, "mastercard", "4444");
	input.number = AMEX;
	for (size_t i = 0; i < sizeof bad_amex / sizeof bad_amex[0]; i++) {
		input.cvc = bad_amex[i];
		when_validated();
		then_error(CARD_BAD_CVC);
	}
	input.cvc = "0000";
	when_validated();
	then_ok(AMEX, "amex", "0005");
}

/* ---- holder ---- */

Test(card, the_holder_name_is_1_to_100_bytes_of_text)
{
	char name[CARD_HOLDER_MAX + 8];

	memset(name, 'a', 100);
	name[100] = '\0';
	input.holder_name = name;
	when_validated();
	then_ok(VISA, "visa", "4242");
	name[100] = 'a';
	name[101] = '\0';
	when_validated();
	then_error(CARD_BAD_HOLDER);
	/* 100 bytes of two-byte characters */
	for (size_t i = 0; i < 100; i += 2)
		memcpy(name + i, "\xc3\xab", 2);
	name[100] = '\0';
	when_validated();
	then_ok(VISA, "visa", "4242");
	input.holder_name = "A";
	when_validated();
	then_ok(VISA, "visa", "4242");
	input.holder_name = "Zoë Ünal-O'Brien";
	when_validated();
	then_ok(VISA, "visa", "4242");
	input.holder_name = " Ann ";
	when_validated();
	then_ok(VISA, "visa", "4242");
}

Test(card, bad_holder_names)
{
	static const char *const names[] = {
	        "",
	        "   ",          /* only spaces */
	        "Ann\nLee",     /* line break */
	        "Ann\tLee",     /* control */
	        "Ann\x7fLee",   /* DEL */
	        "Ann\xc2\x85",  /* C1 (NEL) */
	        "Ann\xc3\x28",  /* broken UTF-8 */
	        "Ann\xc0\xae",  /* overlong */
	        "\xed\xa0\x80", /* surrogate */
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		input.holder_name = names[i];
		when_validated();
		then_error(CARD_BAD_HOLDER);
	}
	input.holder_name = NULL;
	when_validated();
	then_error(CARD_BAD_HOLDER);
}

/* ---- order of checks ---- */

Test(card, the_first_broken_rule_is_reported)
{
	input = (card_input){.number = "4242", .exp_month = 13, .exp_year = 1, .cvc = "x", .holder_name = ""};
	when_validated();
	then_error(CARD_BAD_NUMBER);
	input.number = "4242424242424241";
	when_validated();
	then_error(CARD_BAD_LUHN);
	input.number = VISA;
	when_validated();
	then_error(CARD_BAD_EXPIRY);
	input.exp_month = 1;
	when_validated();
	then_error(CARD_BAD_EXP_YEAR);
	input.exp_year = 2030;
	when_validated();
	then_error(CARD_EXPIRED);
	input.exp_year = 2031;
	when_validated();
	then_error(CARD_BAD_CVC);
	input.cvc = "123";
	when_validated();
	then_error(CARD_BAD_HOLDER);
	input.holder_name = "Ann";
	when_validated();
	then_ok(VISA, "visa", "4242");
}

/* ---- errors say nothing of the input ---- */

Test(card, fields_codes_and_messages)
{
	static const struct {
		card_error e;
		const char *field, *code;
	} cases[] = {
	        {CARD_BAD_NUMBER, "card.number", "bad_number"},
	        {CARD_BAD_LUHN, "card.number", "bad_luhn"},
	        {CARD_BAD_EXPIRY, "card.exp_month", "bad_expiry"},
	        {CARD_EXPIRED, "card.exp_month", "expired"},
	        {CARD_BAD_CVC, "card.cvc", "bad_cvc"},
	        {CARD_BAD_HOLDER, "card.holder_name", "bad_holder"},
	        {CARD_BAD_EXP_YEAR, "card.exp_year", "bad_exp_year"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cr_assert_str_eq(card_error_field(cases[i].e), cases[i].field);
		cr_assert_str_eq(card_error_code(cases[i].e), cases[i].code);
		cr_assert_gt(strlen(card_error_message(cases[i].e)), 10);
	}
	cr_assert_str_eq(card_error_field(CARD_OK), "");
	cr_assert_str_eq(card_error_code(CARD_OK), "");
	cr_assert_str_eq(card_error_message(CARD_OK), "");
	cr_assert_str_eq(card_error_field((card_error)99), "");
	cr_assert_str_eq(card_error_code((card_error)99), "");
	cr_assert_str_eq(card_error_message((card_error)99), "");
	cr_assert_str_eq(card_error_field((card_error)-1), "");
}

Test(card, errors_never_carry_the_number_cvc_or_name)
{
	static const card_input inputs[] = {
	        {"4242424242424241", 12, 2030, "123", "Ann"},
	        {"4242424242424242x", 12, 2030, "123", "Ann"},
	        {"4000056655665556", 13, 2030, "123", "Ann"},
	        {"4000056655665556", 12, 1999, "123", "Ann"},
	        {"4000056655665556", 1, 2030, "123", "Ann"},
	        {"4000056655665556", 12, 2030, "9876", "Ann"},
	        {"4000056655665556", 12, 2030, "987", "Ann\nSecret Holder"},
	};
	const char *texts[3];

	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
		card_error e = card_validate(&inputs[i], NOW, &checked);
		cr_assert_neq(e, CARD_OK, "input %zu", i);
		texts[0] = card_error_message(e);
		texts[1] = card_error_field(e);
		texts[2] = card_error_code(e);
		for (size_t t = 0; t < 3; t++) {
			cr_assert_null(strstr(texts[t], "4242424242"), "%s", texts[t]);
			cr_assert_null(strstr(texts[t], "5556"), "%s", texts[t]);
			cr_assert_null(strstr(texts[t], "0000566"), "%s", texts[t]);
			cr_assert_null(strstr(texts[t], "987"), "%s", texts[t]);
			cr_assert_null(strstr(texts[t], "Secret"), "%s", texts[t]);
		}
	}
}
