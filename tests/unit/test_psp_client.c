/* test_psp_client.c — the pure parts of payment/psp_client.c: form encoding,
 * the provider key, response parsing and classification, on the literal
 * answers of ADR 028 section 1. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#include "psp_client.h"

static void init(void)
{
	cr_assert_geq(sodium_init(), 0);
}

TestSuite(psp_client, .init = init);

Test(psp_client, form_values_are_percent_escaped_and_keys_keep_brackets)
{
	char buf[256];
	size_t len = 0;

	cr_assert_eq(pspc_form_add(buf, sizeof buf, &len, "metadata[note]", "Ann O'Neil & Co=1+2/é"), ORN_OK);
	cr_assert_str_eq(buf, "metadata[note]=Ann%20O%27Neil%20%26%20Co%3D1%2B2%2F%C3%A9");
	cr_assert_eq(pspc_form_add(buf, sizeof buf, &len, "amount", "1250"), ORN_OK);
	cr_assert_str_eq(buf, "metadata[note]=Ann%20O%27Neil%20%26%20Co%3D1%2B2%2F%C3%A9&amount=1250");
	cr_assert_eq(len, strlen(buf));
}

Test(psp_client, a_form_that_does_not_fit_is_refused_and_unchanged)
{
	char buf[16];
	size_t len = 0;

	cr_assert_eq(pspc_form_add(buf, sizeof buf, &len, "a", "1"), ORN_OK);
	cr_assert_eq(pspc_form_add(buf, sizeof buf, &len, "b", "pm_0123456789abcdef"), ORN_ETOOBIG);
	cr_assert_eq(len, 3);
	cr_assert_str_eq(buf, "a=1");
}

Test(psp_client, the_intent_form_creates_and_confirms_with_the_order)
{
	char buf[PSPC_FORM_MAX];
	size_t len = 0;
	pspc_intent_request r = {.amount = 5500,
	                         .currency = "EUR",
	                         .payment_method = "pm_123",
	                         .order_id = "o-1",
	                         .return_url = "https://shop.example/orders/o-1"};

	cr_assert_eq(pspc_intent_form(&r, buf, sizeof buf, &len), ORN_OK);
	cr_assert_str_eq(buf,
	                 "amount=5500&currency=EUR&payment_method=pm_123&confirm=true&metadata[order_id]=o-1&"
	                 "return_url=https%3A%2F%2Fshop.example%2Forders%2Fo-1");
	cr_assert_eq(len, strlen(buf));
	r.return_url = NULL;
	cr_assert_eq(pspc_intent_form(&r, buf, sizeof buf, &len), ORN_OK);
	cr_assert_str_eq(
	        buf, "amount=5500&currency=EUR&payment_method=pm_123&confirm=true&metadata[order_id]=o-1");
	cr_assert_eq(pspc_intent_form(&r, buf, 20, &len), ORN_ETOOBIG);
	cr_assert_eq(len, 0);
	cr_assert_str_eq(buf, "");
	r.amount = 0;
	cr_assert_eq(pspc_intent_form(&r, buf, sizeof buf, &len), ORN_EINVAL);
	r.amount = PSPC_AMOUNT_MAX + 1;
	cr_assert_eq(pspc_intent_form(&r, buf, sizeof buf, &len), ORN_EINVAL);
	r.amount = 1;
	r.payment_method = NULL;
	cr_assert_eq(pspc_intent_form(&r, buf, sizeof buf, &len), ORN_EINVAL);
}

Test(psp_client, payment_method_ids_are_checked)
{
	char longest[PSPC_ID_MAX];

	cr_assert(pspc_payment_method_valid("pm_1"));
	cr_assert(pspc_payment_method_valid("pm_1MqLiz2eZvKYlo2C"));
	cr_assert_not(pspc_payment_method_valid("pm_"));
	cr_assert_not(pspc_payment_method_valid("card_1"));
	cr_assert_not(pspc_payment_method_valid("pm_1 2"));
	cr_assert_not(pspc_payment_method_valid("pm_\xc3\xa9"));
	cr_assert_not(pspc_payment_method_valid("4242424242424242"));
	cr_assert_not(pspc_payment_method_valid(""));
	cr_assert_not(pspc_payment_method_valid(NULL));
	memset(longest, 'x', sizeof longest);
	memcpy(longest, "pm_", 3);
	longest[PSPC_ID_MAX - 1] = '\0';
	cr_assert(pspc_payment_method_valid(longest)); /* 128 */
	char too_long[PSPC_ID_MAX + 1];
	memset(too_long, 'x', sizeof too_long);
	memcpy(too_long, "pm_", 3);
	too_long[PSPC_ID_MAX] = '\0';
	cr_assert_not(pspc_payment_method_valid(too_long)); /* 129 */
}

Test(psp_client, the_provider_key_hashes_the_customer_key)
{
	char key[PSPC_KEY_MAX], again[PSPC_KEY_MAX], other[PSPC_KEY_MAX];

	cr_assert_eq(pspc_provider_key("o-1", "", key), ORN_OK);
	cr_assert_str_eq(key, "o-1:pay");
	cr_assert_eq(pspc_provider_key("o-1", NULL, key), ORN_OK);
	cr_assert_str_eq(key, "o-1:pay");
	cr_assert_eq(pspc_provider_key("o-1", "abc", key), ORN_OK);
	/* SHA-256("abc") */
	cr_assert_str_eq(key, "o-1:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	cr_assert_eq(pspc_provider_key("o-1", "abc", again), ORN_OK);
	cr_assert_str_eq(key, again);
	cr_assert_eq(pspc_provider_key("o-2", "abc", other), ORN_OK);
	cr_assert_str_neq(key, other);
	cr_assert_eq(pspc_provider_key("o 1", "abc", key), ORN_EINVAL);
}

/* The answers of ADR 028 section 1, literally. */
static const char succeeded[] =
        "{\"id\":\"pi_1\",\"object\":\"payment_intent\",\"amount\":5500,\"currency\":\"eur\","
        "\"status\":\"succeeded\",\"payment_method\":\"pm_1\",\"latest_charge\":\"ch_1\","
        "\"metadata\":{\"order_id\":\"o-1\"},\"last_payment_error\":null,\"next_action\":null,"
        "\"amount_refunded\":0,\"created\":1700000000}";

static const char requires_action[] =
        "{\"id\":\"pi_2\",\"object\":\"payment_intent\",\"amount\":5500,\"currency\":\"eur\","
        "\"status\":\"requires_action\",\"payment_method\":\"pm_2\",\"latest_charge\":null,"
        "\"metadata\":{\"order_id\":\"o-1\"},\"last_payment_error\":null,"
        "\"next_action\":{\"type\":\"redirect_to_url\",\"redirect_to_url\":{\"url\":"
        "\"http://127.0.0.1:4242/v1/3ds/pi_2\",\"return_url\":\"http://shop/orders/o-1\"}},"
        "\"amount_refunded\":0,\"created\":1700000000}";

static const char declined[] =
        "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\",\"decline_code\":"
        "\"insufficient_funds\",\"message\":\"Your card has insufficient funds.\",\"payment_intent\":"
        "{\"id\":\"pi_3\",\"object\":\"payment_intent\",\"amount\":5500,\"currency\":\"eur\","
        "\"status\":\"requires_payment_method\",\"payment_method\":\"pm_3\",\"latest_charge\":\"ch_3\","
        "\"metadata\":{\"order_id\":\"o-1\"},\"last_payment_error\":{\"type\":\"card_error\",\"code\":"
        "\"card_declined\",\"decline_code\":\"insufficient_funds\"},\"next_action\":null,"
        "\"amount_refunded\":0,\"created\":1700000000}}}";

Test(psp_client, a_succeeded_intent_is_parsed)
{
	pspc_intent pi;
	pspc_error err;

	cr_assert_eq(pspc_intent_outcome(200, succeeded, strlen(succeeded), &pi, &err), PSPC_SUCCEEDED);
	cr_assert_str_eq(pi.id, "pi_1");
	cr_assert_str_eq(pi.status, "succeeded");
	cr_assert_str_eq(pi.latest_charge, "ch_1");
	cr_assert_str_eq(pi.payment_method, "pm_1");
	cr_assert_str_eq(pi.order_id, "o-1");
	cr_assert_str_eq(pi.currency, "eur");
	cr_assert_eq(pi.amount, 5500);
	cr_assert_eq(pi.amount_refunded, 0);
	cr_assert_str_eq(pi.action_url, "");
	cr_assert_str_eq(pi.brand, "");
	cr_assert_str_eq(pi.last4, "");
}

Test(psp_client, an_intent_that_asks_for_3ds_gives_its_url)
{
	pspc_intent pi;
	pspc_error err;

	cr_assert_eq(pspc_intent_outcome(200, requires_action, strlen(requires_action), &pi, &err),
	             PSPC_ACTION_REQUIRED);
	cr_assert_str_eq(pi.id, "pi_2");
	cr_assert_str_eq(pi.action_url, "http://127.0.0.1:4242/v1/3ds/pi_2");
	cr_assert_str_eq(pi.latest_charge, "");
	/* requires_action without a URL is not something to show the shopper */
	const char no_url[] = "{\"id\":\"pi_2\",\"status\":\"requires_action\",\"next_action\":null}";
	cr_assert_eq(pspc_intent_outcome(200, no_url, strlen(no_url), &pi, &err), PSPC_REFUSED);
}

Test(psp_client, a_decline_is_parsed_with_its_intent_and_without_its_message)
{
	pspc_intent pi;
	pspc_error err;

	cr_assert_eq(pspc_intent_outcome(402, declined, strlen(declined), &pi, &err), PSPC_DECLINED);
	cr_assert_str_eq(err.type, "card_error");
	cr_assert_str_eq(err.code, "card_declined");
	cr_assert_str_eq(err.decline_code, "insufficient_funds");
	cr_assert_str_eq(pi.id, "pi_3");
	cr_assert_str_eq(pi.status, "requires_payment_method");
	cr_assert_str_eq(pi.error_code, "card_declined");
	cr_assert_str_eq(pi.error_decline_code, "insufficient_funds");
	cr_assert_str_eq(pspc_decline_code(&pi, &err), "insufficient_funds");
	/* the provider's text is not kept anywhere in what the caller gets */
	cr_assert_null(memmem(&err, sizeof err, "insufficient funds", strlen("insufficient funds")));
	cr_assert_null(memmem(&pi, sizeof pi, "Your card", strlen("Your card")));
	/* a 402 without its intent cannot be recorded against one */
	const char bare[] = "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\"}}";
	cr_assert_eq(pspc_intent_outcome(402, bare, strlen(bare), &pi, &err), PSPC_REFUSED);
}

Test(psp_client, a_failed_3ds_shows_as_requires_payment_method)
{
	const char body[] =
	        "{\"id\":\"pi_4\",\"object\":\"payment_intent\",\"status\":\"requires_payment_method\","
	        "\"last_payment_error\":{\"type\":\"card_error\",\"code\":"
	        "\"payment_intent_authentication_failure\"},\"latest_charge\":null}";
	pspc_intent pi;
	pspc_error err;

	cr_assert_eq(pspc_intent_outcome(200, body, strlen(body), &pi, &err), PSPC_DECLINED);
	cr_assert_str_eq(pspc_decline_code(&pi, &err), "payment_intent_authentication_failure");
	cr_assert_str_eq(pspc_decline_code(&pi, NULL), "payment_intent_authentication_failure");
	memset(&pi, 0, sizeof pi);
	memset(&err, 0, sizeof err);
	cr_assert_str_eq(pspc_decline_code(&pi, &err), "declined");
	strcpy(pi.status, "canceled");
	cr_assert_str_eq(pspc_decline_code(&pi, &err), "canceled");
	strcpy(err.code, "expired_card");
	cr_assert_str_eq(pspc_decline_code(&pi, &err), "expired_card");
}

Test(psp_client, busy_and_server_errors_are_retried_others_refused)
{
	const char in_use[] =
	        "{\"error\":{\"type\":\"idempotency_error\",\"code\":\"idempotency_key_in_use\"}}";
	const char bad[] = "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"resource_missing\","
	                   "\"param\":\"payment_method\",\"message\":\"No such PaymentMethod\"}}";
	const char idem[] = "{\"error\":{\"type\":\"idempotency_error\",\"message\":\"Keys for idempotent "
	                    "requests can only be used with the same parameters\"}}";
	const char processing[] = "{\"id\":\"pi_5\",\"status\":\"processing\"}";
	const char odd[] = "{\"id\":\"pi_5\",\"status\":\"requires_capture\"}";
	pspc_intent pi;
	pspc_error err;

	cr_assert_eq(pspc_intent_outcome(409, in_use, strlen(in_use), &pi, &err), PSPC_RETRY);
	cr_assert_str_eq(err.code, "idempotency_key_in_use");
	cr_assert_eq(pspc_intent_outcome(503, "", 0, &pi, &err), PSPC_RETRY);
	cr_assert_eq(pspc_intent_outcome(429, "", 0, &pi, &err), PSPC_RETRY);
	cr_assert_eq(pspc_intent_outcome(200, processing, strlen(processing), &pi, &err), PSPC_RETRY);
	cr_assert_eq(pspc_intent_outcome(400, bad, strlen(bad), &pi, &err), PSPC_REFUSED);
	cr_assert_str_eq(err.code, "resource_missing");
	cr_assert_str_eq(err.param, "payment_method");
	cr_assert_eq(pspc_intent_outcome(400, idem, strlen(idem), &pi, &err), PSPC_REFUSED);
	cr_assert_str_eq(err.type, "idempotency_error");
	cr_assert_eq(pspc_intent_outcome(200, odd, strlen(odd), &pi, &err), PSPC_REFUSED);
	cr_assert_eq(pspc_intent_outcome(200, "{", 1, &pi, &err), PSPC_REFUSED);
	cr_assert_eq(pspc_intent_outcome(402, "{}", 2, &pi, &err), PSPC_REFUSED);
	cr_assert_eq(pspc_intent_outcome(401, NULL, 0, &pi, &err), PSPC_REFUSED);
}

Test(psp_client, hostile_ids_urls_brands_and_last4_are_refused)
{
	static const char *const bodies[] = {
	        "{\"id\":\"pi 1\",\"status\":\"succeeded\"}",
	        "{\"id\":\"\",\"status\":\"succeeded\"}",
	        "{\"status\":\"succeeded\"}",
	        "{\"id\":\"pi_1\",\"status\":\"succeeded\",\"latest_charge\":\"ch 1\"}",
	        "{\"id\":\"pi_1\",\"status\":\"succeeded\",\"latest_charge\":7}",
	        "{\"id\":\"pi_1\",\"status\":\"succeeded\",\"amount\":\"5500\"}",
	        "{\"id\":\"pi_1\",\"status\":\"requires_action\",\"next_action\":{\"redirect_to_url\":{"
	        "\"url\":"
	        "\"http://a b\"}}}",
	        "{\"id\":\"pi_1\",\"status\":\"succeeded\",\"payment_method\":{\"id\":\"pm_1\",\"card\":"
	        "{\"brand\":\"Visa!\",\"last4\":\"4242\"}}}",
	        "{\"id\":\"pi_1\",\"status\":\"succeeded\",\"payment_method_details\":{\"card\":"
	        "{\"brand\":\"visa\",\"last4\":\"42x2\"}}}",
	        "{\"id\":\"pi_1\",\"id\":\"pi_2\",\"status\":\"succeeded\"}",
	        "[]",
	};
	pspc_intent pi;

	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
		cr_assert_eq(pspc_parse_intent(bodies[i], strlen(bodies[i]), &pi), ORN_EDECODE, "%s",
		             bodies[i]);
}

Test(psp_client, the_card_is_read_when_the_answer_carries_it)
{
	const char expanded[] =
	        "{\"id\":\"pi_1\",\"status\":\"succeeded\",\"payment_method\":{\"id\":\"pm_1\","
	        "\"card\":{\"brand\":\"visa\",\"last4\":\"4242\"}},\"latest_charge\":{\"id\":"
	        "\"ch_1\"}}";
	const char details[] = "{\"id\":\"pi_1\",\"status\":\"succeeded\",\"payment_method\":\"pm_1\","
	                       "\"payment_method_details\":{\"card\":{\"brand\":\"mastercard\",\"last4\":"
	                       "\"4444\"}}}";
	const char method[] = "{\"id\":\"pm_1\",\"object\":\"payment_method\",\"type\":\"card\",\"card\":"
	                      "{\"brand\":\"visa\",\"last4\":\"4242\",\"exp_month\":12,\"exp_year\":2030},"
	                      "\"created\":1700000000}";
	pspc_intent pi;
	pspc_card card;

	cr_assert_eq(pspc_parse_intent(expanded, strlen(expanded), &pi), ORN_OK);
	cr_assert_str_eq(pi.payment_method, "pm_1");
	cr_assert_str_eq(pi.latest_charge, "ch_1");
	cr_assert_str_eq(pi.brand, "visa");
	cr_assert_str_eq(pi.last4, "4242");
	cr_assert_eq(pspc_parse_intent(details, strlen(details), &pi), ORN_OK);
	cr_assert_str_eq(pi.brand, "mastercard");
	cr_assert_str_eq(pi.last4, "4444");
	cr_assert_eq(pspc_parse_payment_method(method, strlen(method), &card), ORN_OK);
	cr_assert_str_eq(card.brand, "visa");
	cr_assert_str_eq(card.last4, "4242");
	const char no_card[] = "{\"id\":\"pm_1\",\"type\":\"card\"}";
	cr_assert_eq(pspc_parse_payment_method(no_card, strlen(no_card), &card), ORN_EDECODE);
	cr_assert_str_eq(card.brand, "");
	const char bad_card[] = "{\"id\":\"pm_1\",\"card\":{\"brand\":\"visa\",\"last4\":\"42\"}}";
	cr_assert_eq(pspc_parse_payment_method(bad_card, strlen(bad_card), &card), ORN_EDECODE);
}

Test(psp_client, a_list_of_intents_is_parsed)
{
	char list[4096];
	pspc_intent out[4];
	size_t count = 0;

	snprintf(list, sizeof list, "{\"object\":\"list\",\"data\":[%s,%s]}", requires_action, succeeded);
	cr_assert_eq(pspc_parse_intent_list(list, strlen(list), out, 4, &count), ORN_OK);
	cr_assert_eq(count, 2);
	cr_assert_str_eq(out[0].id, "pi_2");
	cr_assert_str_eq(out[1].id, "pi_1");
	cr_assert_eq(pspc_parse_intent_list(list, strlen(list), out, 1, &count), ORN_OK);
	cr_assert_eq(count, 1);
	cr_assert_eq(pspc_parse_intent_list("{\"object\":\"list\",\"data\":[]}", 27, out, 4, &count), ORN_OK);
	cr_assert_eq(count, 0);
	cr_assert_eq(pspc_parse_intent_list("{\"data\":3}", 10, out, 4, &count), ORN_EDECODE);
	cr_assert_eq(pspc_parse_intent_list("{\"data\":[{\"id\":\"x y\"}]}", 22, out, 4, &count),
	             ORN_EDECODE);
	cr_assert_eq(count, 0);
}

Test(psp_client, refunds_are_parsed_succeeded_or_failed)
{
	const char ok[] =
	        "{\"id\":\"re_1\",\"object\":\"refund\",\"payment_intent\":\"pi_1\",\"charge\":\"ch_1\","
	        "\"amount\":5500,\"status\":\"succeeded\"}";
	const char failed[] = "{\"id\":\"re_2\",\"object\":\"refund\",\"payment_intent\":\"pi_1\",\"charge\":"
	                      "\"ch_1\",\"amount\":5500,\"status\":\"failed\",\"failure_reason\":"
	                      "\"expired_or_canceled_card\"}";
	const char refunded[] =
	        "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"charge_already_refunded\","
	        "\"message\":\"Charge ch_1 has already been refunded.\"}}";
	pspc_refund r;
	pspc_error err;

	cr_assert_eq(pspc_parse_refund(ok, strlen(ok), &r), ORN_OK);
	cr_assert_str_eq(r.id, "re_1");
	cr_assert_str_eq(r.payment_intent, "pi_1");
	cr_assert_str_eq(r.charge, "ch_1");
	cr_assert_str_eq(r.status, "succeeded");
	cr_assert_str_eq(r.failure_reason, "");
	cr_assert_eq(r.amount, 5500);
	cr_assert_eq(pspc_parse_refund(failed, strlen(failed), &r), ORN_OK);
	cr_assert_str_eq(r.status, "failed");
	cr_assert_str_eq(r.failure_reason, "expired_or_canceled_card");
	cr_assert_eq(pspc_parse_refund("{\"id\":\"re_1\"}", 13, &r), ORN_EDECODE); /* no status */
	cr_assert_str_eq(r.id, "");
	cr_assert_eq(pspc_parse_error(refunded, strlen(refunded), &err, NULL), ORN_OK);
	cr_assert_str_eq(err.code, "charge_already_refunded");
	cr_assert_eq(pspc_parse_error("{\"error\":{}}", 12, &err, NULL), ORN_EDECODE);
	cr_assert_eq(pspc_parse_error("nope", 4, &err, NULL), ORN_EDECODE);
}
