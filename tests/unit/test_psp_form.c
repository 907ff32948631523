/* test_psp_form.c — unit tests of the provider sandbox's pure parts
 * (psp/psp_form.c): strict form decoding, the idempotency digest, Luhn and
 * brands, and the checks of payment methods (with the test card table of
 * ADR 028) and payment intents.
 *
 * Given a body or a set of parameters, when it is decoded or checked, then
 * the values, the error (status, code and parameter) or the behaviour are
 * the contract's, and no error message repeats a card number. */
#include <criterion/criterion.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "failalloc.h"
#include "psp_form.h"

#define NOW_YEAR  2026
#define NOW_MONTH 11

static psp_form form;

static void setup(void)
{
	cr_assert_geq(sodium_init(), 0);
	memset(&form, 0, sizeof form);
}

static void teardown(void)
{
	failalloc_off();
	psp_form_dispose(&form);
}

TestSuite(psp_form, .init = setup, .fini = teardown);

static orn_rc parse(const char *text)
{
	char bad[64];
	psp_form_dispose(&form);
	return psp_form_parse(text, strlen(text), &form, bad, sizeof bad);
}

/* ---- decoding ------------------------------------------------------------- */

Test(psp_form, decodes_percent_plus_and_bracket_keys)
{
	cr_assert_eq(parse("amount=1000&card%5Bnumber%5D=4242+4242&card[name]=Ann%20Lee&e=&flag"), ORN_OK);
	cr_assert_eq(form.count, 5);
	cr_assert_str_eq(psp_form_get(&form, "amount"), "1000");
	cr_assert_str_eq(psp_form_get(&form, "card[number]"), "4242 4242");
	cr_assert_str_eq(psp_form_get(&form, "card[name]"), "Ann Lee");
	cr_assert_str_eq(psp_form_get(&form, "e"), "");
	cr_assert_str_eq(psp_form_get(&form, "flag"), "");
	cr_assert_null(psp_form_get(&form, "missing"));
}

Test(psp_form, decodes_utf8_and_skips_empty_segments)
{
	cr_assert_eq(parse("&name=Jos%C3%A9&&x=1&"), ORN_OK);
	cr_assert_eq(form.count, 2);
	cr_assert_str_eq(psp_form_get(&form, "name"), "Jos\xc3\xa9");
	cr_assert_eq(parse(""), ORN_OK);
	cr_assert_eq(form.count, 0);
}

Test(psp_form, rejects_malformed_input)
{
	const char *bad[] = {"a=%",   "a=%4",  "a=%zz",    "=1",          "a=1&=2",
	                     "a=%00", "a=%C3", "a=%C0%AF", "a=%ED%A0%80", "k%FF=1"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(parse(bad[i]), ORN_EINVAL, "%s", bad[i]);
		cr_assert_eq(form.count, 0, "%s", bad[i]);
	}
}

Test(psp_form, repeated_key_names_the_key_even_when_encoded_differently)
{
	char bad[64];
	const char *text = "card[cvc]=123&card%5Bcvc%5D=456";
	cr_assert_eq(psp_form_parse(text, strlen(text), &form, bad, sizeof bad), ORN_EEXISTS);
	cr_assert_str_eq(bad, "card[cvc]");
	cr_assert_eq(form.count, 0);
}

Test(psp_form, too_many_pairs_is_too_big)
{
	char text[PSP_FORM_MAX_PARAMS * 8 + 16] = "";
	for (int i = 0; i <= PSP_FORM_MAX_PARAMS; i++)
		snprintf(text + strlen(text), sizeof text - strlen(text), "k%d=1&", i);
	cr_assert_eq(parse(text), ORN_ETOOBIG);
}

Test(psp_form, unknown_finds_the_first_key_not_allowed)
{
	static const char *const allowed[] = {"a", "b", NULL};
	cr_assert_eq(parse("a=1&b=2"), ORN_OK);
	cr_assert_null(psp_form_unknown(&form, allowed));
	cr_assert_eq(parse("a=1&c=3&d=4"), ORN_OK);
	cr_assert_str_eq(psp_form_unknown(&form, allowed), "c");
}

Test(psp_form, allocation_failure_is_enomem_and_leaves_nothing)
{
	if (!failalloc_available())
		cr_skip("allocation failure injection is not available in this build");
	for (long nth = 1; nth <= 4; nth++) {
		char bad[64];
		failalloc_nth(nth);
		orn_rc rc = psp_form_parse("a=1&b=2", 7, &form, bad, sizeof bad);
		failalloc_off();
		cr_assert_eq(rc, ORN_ENOMEM, "allocation %ld", nth);
		cr_assert_eq(form.count, 0);
	}
}

/* ---- the digest ----------------------------------------------------------- */

static void digest_of(const char *text, const char *secret, const char *scope, uint8_t out[PSP_DIGEST_BYTES])
{
	cr_assert_eq(parse(text), ORN_OK);
	psp_form_digest(&form, secret, scope, out);
}

Test(psp_form, digest_ignores_order_and_encoding)
{
	uint8_t a[PSP_DIGEST_BYTES], b[PSP_DIGEST_BYTES];
	digest_of("amount=100&card[number]=4242424242424242", "sk", "POST /v1/payment_intents", a);
	digest_of("card%5Bnumber%5D=4242424242424242&amount=1%30%30", "sk", "POST /v1/payment_intents", b);
	cr_assert_eq(memcmp(a, b, sizeof a), 0);
}

Test(psp_form, digest_differs_with_any_value_scope_or_secret)
{
	uint8_t base[PSP_DIGEST_BYTES], other[PSP_DIGEST_BYTES];
	digest_of("amount=100&currency=eur", "sk", "POST /v1/payment_intents", base);
	digest_of("amount=101&currency=eur", "sk", "POST /v1/payment_intents", other);
	cr_assert_neq(memcmp(base, other, sizeof base), 0);
	digest_of("amount=100&currency=eur&description=", "sk", "POST /v1/payment_intents", other);
	cr_assert_neq(memcmp(base, other, sizeof base), 0);
	digest_of("amount=100&currency=eur", "sk", "POST /v1/refunds", other);
	cr_assert_neq(memcmp(base, other, sizeof base), 0);
	digest_of("amount=100&currency=eur", "sk2", "POST /v1/payment_intents", other);
	cr_assert_neq(memcmp(base, other, sizeof base), 0);
	/* Length prefixes: moving a byte from a key to its value changes the digest. */
	digest_of("ab=c", "sk", "s", base);
	digest_of("a=bc", "sk", "s", other);
	cr_assert_neq(memcmp(base, other, sizeof base), 0);
}

Test(psp_form, idempotency_keys_are_1_to_255_printable_ascii)
{
	char longest[257];
	memset(longest, 'k', 255);
	longest[255] = '\0';
	cr_assert(psp_idempotency_key_valid("o1:abc def"));
	cr_assert(psp_idempotency_key_valid(longest));
	longest[255] = 'k';
	longest[256] = '\0';
	cr_assert_not(psp_idempotency_key_valid(longest));
	cr_assert_not(psp_idempotency_key_valid(""));
	cr_assert_not(psp_idempotency_key_valid(NULL));
	cr_assert_not(psp_idempotency_key_valid("tab\there"));
	cr_assert_not(psp_idempotency_key_valid("caf\xc3\xa9"));
}

Test(psp_form, dispose_wipes_and_empties)
{
	cr_assert_eq(parse("card[number]=4242424242424242"), ORN_OK);
	psp_form_dispose(&form);
	cr_assert_eq(form.count, 0);
	cr_assert_null(form.items[0].value);
	psp_form_dispose(&form); /* twice is harmless */
}

/* ---- payment methods and intents (ADR 028) ------------------------------- */

#define PM_REST "&card[exp_month]=12&card[exp_year]=2030&card[cvc]=123"

static orn_rc card_check_text(const char *text, psp_card *out, psp_param_error *err)
{
	cr_assert_eq(parse(text), ORN_OK, "%s", text);
	memset(err, 0, sizeof *err);
	return psp_card_check(&form, NOW_YEAR, NOW_MONTH, out, err);
}

static psp_behaviour behaviour_of(const char *number)
{
	char text[256];
	psp_card out;
	psp_param_error err;
	snprintf(text, sizeof text, "type=card&card[number]=%s" PM_REST, number);
	cr_assert_eq(card_check_text(text, &out, &err), ORN_OK, "%s: %s", number, err.message);
	return out.behaviour;
}

Test(psp_form, card_behaviours_of_the_test_cards)
{
	cr_assert_eq(behaviour_of("4242424242424242"), PSP_BEHAVIOUR_APPROVE);
	cr_assert_eq(behaviour_of("5555555555554444"), PSP_BEHAVIOUR_APPROVE);
	cr_assert_eq(behaviour_of("4000000000000002"), PSP_BEHAVIOUR_DECLINE_GENERIC);
	cr_assert_eq(behaviour_of("4000000000009995"), PSP_BEHAVIOUR_DECLINE_FUNDS);
	cr_assert_eq(behaviour_of("4000000000000069"), PSP_BEHAVIOUR_EXPIRED_CARD);
	cr_assert_eq(behaviour_of("4000000000000127"), PSP_BEHAVIOUR_INCORRECT_CVC);
	cr_assert_eq(behaviour_of("4000002500003155"), PSP_BEHAVIOUR_REQUIRES_3DS);
	cr_assert_eq(behaviour_of("4000000000000309"), PSP_BEHAVIOUR_SILENT);
	cr_assert_eq(behaviour_of("4000000000005126"), PSP_BEHAVIOUR_REFUND_FAILS_FIRST);
	for (int b = PSP_BEHAVIOUR_APPROVE; b <= PSP_BEHAVIOUR_REFUND_FAILS_FIRST; b++) {
		psp_behaviour back;
		cr_assert(psp_behaviour_parse(psp_behaviour_name((psp_behaviour)b), &back));
		cr_assert_eq(back, b);
	}
	psp_behaviour unused;
	cr_assert_not(psp_behaviour_parse("4242424242424242", &unused));
	cr_assert_str_eq(psp_behaviour_code(PSP_BEHAVIOUR_DECLINE_FUNDS), "card_declined");
	cr_assert_str_eq(psp_behaviour_decline_code(PSP_BEHAVIOUR_DECLINE_FUNDS), "insufficient_funds");
	cr_assert_null(psp_behaviour_code(PSP_BEHAVIOUR_REQUIRES_3DS));
}

Test(psp_form, card_keeps_brand_last4_expiry_only)
{
	psp_card out;
	psp_param_error err;
	cr_assert_eq(
	        card_check_text("type=card&card[number]=4242424242424242&card[exp_month]=3&card[exp_year]=29"
	                        "&card[cvc]=1234",
	                        &out, &err),
	        ORN_OK);
	cr_assert_str_eq(out.brand, "visa");
	cr_assert_str_eq(out.last4, "4242");
	cr_assert_eq(out.exp_month, 3);
	cr_assert_eq(out.exp_year, 2029);
}

static void expect_card_error(const char *text, int status, const char *code, const char *param)
{
	psp_card out;
	psp_param_error err;
	cr_assert_eq(card_check_text(text, &out, &err), ORN_EINVAL, "%s", text);
	cr_assert_eq(err.status, status, "%s: %d", text, err.status);
	cr_assert_str_eq(err.code, code, "%s", text);
	cr_assert_str_eq(err.param, param, "%s", text);
	cr_assert_null(strstr(err.message, "4242"), "%s", err.message);
}

Test(psp_form, card_errors_are_402_card_errors_or_400)
{
	expect_card_error("type=card&card[number]=4242424242424241" PM_REST, 402, "incorrect_number",
	                  "card[number]");
	expect_card_error("type=card&card[number]=42424242" PM_REST, 402, "incorrect_number", "card[number]");
	expect_card_error("type=card&card[number]=4242424242424242&card[exp_month]=13&card[exp_year]=2030"
	                  "&card[cvc]=123",
	                  402, "invalid_expiry_month", "card[exp_month]");
	expect_card_error("type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=2025"
	                  "&card[cvc]=123",
	                  402, "invalid_expiry_year", "card[exp_year]");
	expect_card_error("type=card&card[number]=4242424242424242&card[exp_month]=10&card[exp_year]=2026"
	                  "&card[cvc]=123",
	                  402, "invalid_expiry_month", "card[exp_month]");
	expect_card_error("type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=2030"
	                  "&card[cvc]=12",
	                  402, "invalid_cvc", "card[cvc]");
	expect_card_error("type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=2030",
	                  400, "parameter_missing", "card[cvc]");
	expect_card_error("card[number]=4242424242424242" PM_REST, 400, "parameter_missing", "type");
	expect_card_error("type=sepa&card[number]=4242424242424242" PM_REST, 400, "parameter_invalid",
	                  "type");
	expect_card_error("type=card&card[number]=4242424242424242" PM_REST "&card[name]=A", 400,
	                  "parameter_unknown", "card[name]");
}

static const char *brand_of(const char *number)
{
	static psp_card out;
	psp_param_error err;
	char text[256];
	snprintf(text, sizeof text, "type=card&card[number]=%s" PM_REST, number);
	cr_assert_eq(card_check_text(text, &out, &err), ORN_OK, "%s: %s", number, err.message);
	return out.brand;
}

/* ---- cards (Luhn and brands: actors/card.h, through the card check) ------- */

Test(psp_form, luhn)
{
	const char *valid[] = {"4242424242424242", "4000000000000002", "4000000000009995",
	                       "4000000000000069", "4000000000000127", "4000000000000309",
	                       "5555555555554444", "378282246310005",  "6011111111111117"};
	for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
		behaviour_of(valid[i]); /* asserts ORN_OK */
	expect_card_error("type=card&card[number]=4242424242424241" PM_REST, 402, "incorrect_number",
	                  "card[number]");
	expect_card_error("type=card&card[number]=5555555555554445" PM_REST, 402, "incorrect_number",
	                  "card[number]");
	expect_card_error("type=card&card[number]=378282246310006" PM_REST, 402, "incorrect_number",
	                  "card[number]");
}

Test(psp_form, brands_by_prefix)
{
	cr_assert_str_eq(brand_of("4242424242424242"), "visa");
	cr_assert_str_eq(brand_of("5555555555554444"), "mastercard");
	cr_assert_str_eq(brand_of("2223003122003222"), "mastercard");
	cr_assert_str_eq(brand_of("378282246310005"), "amex");
	cr_assert_str_eq(brand_of("6011111111111117"), "discover");
	cr_assert_str_eq(brand_of("6445644564456445"), "discover");
	cr_assert_str_eq(brand_of("3566002020360505"), "other");
	cr_assert_str_eq(brand_of("1200000000000006"), "other");
}

Test(psp_form, behaviour_codes_and_messages)
{
	const struct {
		psp_behaviour b;
		const char *code, *decline_code;
	} cases[] = {
	        {PSP_BEHAVIOUR_APPROVE, NULL, NULL},
	        {PSP_BEHAVIOUR_REQUIRES_3DS, NULL, NULL},
	        {PSP_BEHAVIOUR_SILENT, NULL, NULL},
	        {PSP_BEHAVIOUR_REFUND_FAILS_FIRST, NULL, NULL},
	        {PSP_BEHAVIOUR_DECLINE_GENERIC, "card_declined", "generic_decline"},
	        {PSP_BEHAVIOUR_DECLINE_FUNDS, "card_declined", "insufficient_funds"},
	        {PSP_BEHAVIOUR_EXPIRED_CARD, "expired_card", "expired_card"},
	        {PSP_BEHAVIOUR_INCORRECT_CVC, "incorrect_cvc", "incorrect_cvc"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *name = psp_behaviour_name(cases[i].b);
		if (cases[i].code == NULL) {
			cr_assert_null(psp_behaviour_code(cases[i].b), "%s", name);
			cr_assert_null(psp_behaviour_decline_code(cases[i].b), "%s", name);
			continue;
		}
		cr_assert_str_eq(psp_behaviour_code(cases[i].b), cases[i].code, "%s", name);
		cr_assert_str_eq(psp_behaviour_decline_code(cases[i].b), cases[i].decline_code, "%s", name);
		cr_assert_not_null(psp_behaviour_message(cases[i].b), "%s", name);
	}
	cr_assert_str_eq(psp_behaviour_message(PSP_BEHAVIOUR_DECLINE_FUNDS),
	                 "Your card has insufficient funds.");
	cr_assert_str_eq(psp_behaviour_message(PSP_BEHAVIOUR_EXPIRED_CARD), "Your card has expired.");
}

Test(psp_form, expiry_this_month_is_valid_before_it_is_refused)
{
	psp_card out;
	psp_param_error err;
	cr_assert_eq(card_check_text("type=card&card[number]=4242424242424242&card[exp_month]=11"
	                             "&card[exp_year]=26&card[cvc]=123",
	                             &out, &err),
	             ORN_OK, "%s", err.message);
	cr_assert_eq(out.exp_year, 2026);
	cr_assert_eq(out.exp_month, 11);
	cr_assert_eq(out.behaviour, PSP_BEHAVIOUR_APPROVE);
	expect_card_error("type=card&card[number]=4242424242424242&card[exp_month]=10&card[exp_year]=26"
	                  "&card[cvc]=123",
	                  402, "invalid_expiry_month", "card[exp_month]");
}

Test(psp_form, card_missing_invalid_and_unknown_parameters)
{
	static const char *const params[] = {"type", "card[number]", "card[exp_month]", "card[exp_year]",
	                                     "card[cvc]"};
	static const char *const values[] = {"card", "4242424242424242", "12", "2030", "123"};
	/* each required parameter left out in turn */
	for (size_t leave = 0; leave < 5; leave++) {
		char text[256] = "";
		for (size_t i = 0; i < 5; i++)
			if (i != leave)
				snprintf(text + strlen(text), sizeof text - strlen(text), "%s%s=%s",
				         text[0] != '\0' ? "&" : "", params[i], values[i]);
		expect_card_error(text, 400, "parameter_missing", params[leave]);
	}
	const struct {
		const char *number_or_rest;
		const char *code, *param;
	} cases[] = {
	        {"4242+4242+4242+4242" PM_REST, "incorrect_number", "card[number]"},
	        {"4242-4242-4242-4242" PM_REST, "incorrect_number", "card[number]"},
	        {"42424242424" PM_REST, "incorrect_number", "card[number]"},
	        {"42424242424242424242" PM_REST, "incorrect_number", "card[number]"},
	        {"4242424242424242&card[exp_month]=0&card[exp_year]=2030&card[cvc]=123",
	         "invalid_expiry_month", "card[exp_month]"},
	        {"4242424242424242&card[exp_month]=012&card[exp_year]=2030&card[cvc]=123",
	         "invalid_expiry_month", "card[exp_month]"},
	        {"4242424242424242&card[exp_month]=12&card[exp_year]=230&card[cvc]=123",
	         "invalid_expiry_year", "card[exp_year]"},
	        {"4242424242424242&card[exp_month]=12&card[exp_year]=2030&card[cvc]=12345", "invalid_cvc",
	         "card[cvc]"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[256];
		snprintf(text, sizeof text, "type=card&card[number]=%s", cases[i].number_or_rest);
		expect_card_error(text, 402, cases[i].code, cases[i].param);
	}
	expect_card_error("type=card&card[number]=4242424242424242" PM_REST "&capture=false", 400,
	                  "parameter_unknown", "capture");
	expect_card_error("type=card&card[number]=4242424242424242" PM_REST "&metadata[order_id]=o1", 400,
	                  "parameter_unknown", "metadata[order_id]");
}

static void expect_intent_error(const char *text, const char *code, const char *param)
{
	psp_intent_request out;
	psp_param_error err;
	cr_assert_eq(parse(text), ORN_OK, "%s", text);
	cr_assert_eq(psp_intent_check(&form, &out, &err), ORN_EINVAL, "%s", text);
	cr_assert_eq(err.status, 400);
	cr_assert_str_eq(err.code, code, "%s", text);
	cr_assert_str_eq(err.param, param, "%s", text);
}

Test(psp_form, intent_request)
{
	psp_intent_request out;
	psp_param_error err;
	cr_assert_eq(
	        parse("amount=0001250&currency=EuR&payment_method=pm_1&confirm=true&metadata[order_id]=o1"
	              "&return_url=https://shop.example/orders/o1"),
	        ORN_OK);
	cr_assert_eq(psp_intent_check(&form, &out, &err), ORN_OK, "%s", err.message);
	cr_assert_eq(out.amount, 1250);
	cr_assert_str_eq(out.currency, "eur");
	cr_assert_str_eq(out.payment_method, "pm_1");
	cr_assert_str_eq(out.order_id, "o1");
	cr_assert_str_eq(out.return_url, "https://shop.example/orders/o1");
	expect_intent_error("currency=eur&payment_method=pm_1", "parameter_missing", "amount");
	expect_intent_error("amount=1&currency=eur", "parameter_missing", "payment_method");
	expect_intent_error("amount=0&currency=eur&payment_method=pm_1", "parameter_invalid", "amount");
	expect_intent_error("amount=1&currency=eur&payment_method=pm_1&confirm=false", "parameter_invalid",
	                    "confirm");
	expect_intent_error("amount=1&currency=eur&payment_method=pm_1&return_url=javascript:alert(1)",
	                    "parameter_invalid", "return_url");
	expect_intent_error("amount=1&currency=eur&payment_method=pm_1&return_url=https://a%0d%0aX:y",
	                    "parameter_invalid", "return_url");
	expect_intent_error("amount=1&currency=eur&payment_method=pm_1&capture_method=manual",
	                    "parameter_unknown", "capture_method");
}

Test(psp_form, intent_missing_invalid_and_unknown_parameters)
{
	expect_intent_error("amount=1&payment_method=pm_1", "parameter_missing", "currency");
	const struct {
		const char *text, *param;
	} cases[] = {
	        {"amount=10000000001&currency=eur&payment_method=pm_1", "amount"},
	        {"amount=-5&currency=eur&payment_method=pm_1", "amount"},
	        {"amount=1.5&currency=eur&payment_method=pm_1", "amount"},
	        {"amount=12x&currency=eur&payment_method=pm_1", "amount"},
	        {"amount=1&currency=eu&payment_method=pm_1", "currency"},
	        {"amount=1&currency=euro&payment_method=pm_1", "currency"},
	        {"amount=1&currency=e1r&payment_method=pm_1", "currency"},
	        {"amount=1&currency=eur&payment_method=", "payment_method"},
	        {"amount=1&currency=eur&payment_method=pm_1&metadata[order_id]=", "metadata[order_id]"},
	        {"amount=1&currency=eur&payment_method=pm_1&metadata[order_id]=a%0Ab", "metadata[order_id]"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		expect_intent_error(cases[i].text, "parameter_invalid", cases[i].param);
	psp_intent_request out;
	psp_param_error err;
	cr_assert_eq(parse("amount=10000000000&currency=eur&payment_method=pm_1"), ORN_OK);
	cr_assert_eq(psp_intent_check(&form, &out, &err), ORN_OK, "%s", err.message);
	cr_assert_eq(out.amount, 10000000000LL);
	cr_assert_null(out.order_id);
	cr_assert_null(out.return_url);
	expect_intent_error("amount=1&currency=eur&payment_method=pm_1&metadata[other]=x",
	                    "parameter_unknown", "metadata[other]");
	expect_intent_error("amount=1&currency=eur&payment_method=pm_1&description=x", "parameter_unknown",
	                    "description");
	expect_intent_error("amount=1&currency=eur&payment_method=pm_1&card[number]=4242424242424242",
	                    "parameter_unknown", "card[number]");
}
