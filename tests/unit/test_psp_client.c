/* test_psp_client.c — the pure parts of payment/psp_client.c: form encoding,
 * the provider key, response parsing and classification. */
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

	cr_assert_eq(pspc_form_add(buf, sizeof buf, &len, "card[name]", "Ann O'Neil & Co=1+2/é"), ORN_OK);
	cr_assert_str_eq(buf, "card[name]=Ann%20O%27Neil%20%26%20Co%3D1%2B2%2F%C3%A9");
	cr_assert_eq(pspc_form_add(buf, sizeof buf, &len, "amount", "1250"), ORN_OK);
	cr_assert_str_eq(buf, "card[name]=Ann%20O%27Neil%20%26%20Co%3D1%2B2%2F%C3%A9&amount=1250");
	cr_assert_eq(len, strlen(buf));
}

Test(psp_client, a_form_that_does_not_fit_is_refused_and_unchanged)
{
	char buf[16];
	size_t len = 0;

	cr_assert_eq(pspc_form_add(buf, sizeof buf, &len, "a", "1"), ORN_OK);
	cr_assert_eq(pspc_form_add(buf, sizeof buf, &len, "b", "4242424242424242"), ORN_ETOOBIG);
	cr_assert_eq(len, 3);
	cr_assert_str_eq(buf, "a=1");
}

Test(psp_client, the_charge_form_has_every_parameter)
{
	char buf[PSPC_FORM_MAX];
	size_t len = 0;
	pspc_charge_request r = {.amount = 5500,
	                         .currency = "EUR",
	                         .card_number = "4242424242424242",
	                         .exp_month = 12,
	                         .exp_year = 2030,
	                         .cvc = "123",
	                         .holder_name = "Ann Lee",
	                         .order_id = "o-1"};

	cr_assert_eq(pspc_charge_form(&r, buf, sizeof buf, &len), ORN_OK);
	cr_assert_str_eq(buf,
	                 "amount=5500&currency=EUR&card[number]=4242424242424242&card[exp_month]=12&"
	                 "card[exp_year]=2030&card[cvc]=123&card[name]=Ann%20Lee&metadata[order_id]=o-1");
	r.amount = 0;
	cr_assert_eq(pspc_charge_form(&r, buf, sizeof buf, &len), ORN_EINVAL);
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

static const char approved[] =
        "{\"id\":\"ch_123\",\"object\":\"charge\",\"amount\":5500,\"currency\":\"eur\",\"status\":"
        "\"succeeded\","
        "\"paid\":true,\"refunded\":false,\"metadata\":{\"order_id\":\"o-1\"},\"payment_method_details\":"
        "{\"type\":\"card\",\"card\":{\"brand\":\"visa\",\"last4\":\"4242\",\"exp_month\":12,\"exp_year\":"
        "2030}},\"created\":1700000000}";

Test(psp_client, an_approved_charge_is_parsed)
{
	pspc_charge ch;
	pspc_error err;

	cr_assert_eq(pspc_charge_outcome(200, approved, strlen(approved), &ch, &err), PSPC_APPROVED);
	cr_assert_str_eq(ch.id, "ch_123");
	cr_assert_str_eq(ch.brand, "visa");
	cr_assert_str_eq(ch.last4, "4242");
	cr_assert_str_eq(ch.order_id, "o-1");
	cr_assert_eq(ch.amount, 5500);
	cr_assert(ch.paid);
	cr_assert_not(ch.refunded);
}

Test(psp_client, a_decline_is_parsed_without_its_message)
{
	const char body[] =
	        "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\",\"decline_code\":"
	        "\"insufficient_funds\",\"message\":\"Your card has insufficient funds.\",\"charge\":"
	        "\"ch_9\"}}";
	pspc_charge ch;
	pspc_error err;

	memset(&ch, 0, sizeof ch);
	memset(&err, 0, sizeof err);
	cr_assert_eq(pspc_charge_outcome(402, body, strlen(body), &ch, &err), PSPC_DECLINED);
	cr_assert_str_eq(err.code, "card_declined");
	cr_assert_str_eq(err.decline_code, "insufficient_funds");
	cr_assert_str_eq(err.charge, "ch_9");
	/* the provider's text is not kept anywhere in what the caller gets */
	cr_assert_null(memmem(&err, sizeof err, "insufficient funds", strlen("insufficient funds")));
	cr_assert_null(memmem(&err, sizeof err, "Your card", strlen("Your card")));
	cr_assert_null(memmem(&ch, sizeof ch, "Your card", strlen("Your card")));
}

Test(psp_client, busy_and_server_errors_are_retried_others_refused)
{
	const char in_use[] =
	        "{\"error\":{\"type\":\"idempotency_error\",\"code\":\"idempotency_key_in_use\"}}";
	const char bad[] = "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"parameter_missing\","
	                   "\"param\":\"amount\"}}";
	pspc_charge ch;
	pspc_error err;

	cr_assert_eq(pspc_charge_outcome(409, in_use, strlen(in_use), &ch, &err), PSPC_RETRY);
	cr_assert_eq(pspc_charge_outcome(503, "", 0, &ch, &err), PSPC_RETRY);
	cr_assert_eq(pspc_charge_outcome(400, bad, strlen(bad), &ch, &err), PSPC_REFUSED);
	cr_assert_str_eq(err.param, "amount");
	cr_assert_eq(pspc_charge_outcome(200, "{", 1, &ch, &err), PSPC_REFUSED);
	cr_assert_eq(pspc_charge_outcome(402, "{}", 2, &ch, &err), PSPC_REFUSED);
}

Test(psp_client, hostile_ids_brands_and_last4_are_refused)
{
	const char space_id[] = "{\"id\":\"ch 1\",\"status\":\"succeeded\",\"paid\":true}";
	const char bad_brand[] =
	        "{\"id\":\"ch_1\",\"status\":\"succeeded\",\"paid\":true,"
	        "\"payment_method_details\":{\"card\":{\"brand\":\"Visa!\",\"last4\":\"4242\"}}}";
	const char bad_last4[] =
	        "{\"id\":\"ch_1\",\"status\":\"succeeded\",\"paid\":true,"
	        "\"payment_method_details\":{\"card\":{\"brand\":\"visa\",\"last4\":\"42x2\"}}}";
	pspc_charge ch;

	cr_assert_eq(pspc_parse_charge(space_id, strlen(space_id), &ch), ORN_EDECODE);
	cr_assert_eq(pspc_parse_charge(bad_brand, strlen(bad_brand), &ch), ORN_EDECODE);
	cr_assert_eq(pspc_parse_charge(bad_last4, strlen(bad_last4), &ch), ORN_EDECODE);
}

Test(psp_client, a_list_and_a_refund_are_parsed)
{
	char list[2048];
	pspc_charge out[4];
	pspc_refund refund;
	size_t count = 0;
	const char r[] = "{\"id\":\"re_1\",\"object\":\"refund\",\"charge\":\"ch_123\",\"amount\":5500,"
	                 "\"status\":\"succeeded\"}";

	snprintf(list, sizeof list, "{\"object\":\"list\",\"data\":[%s,%s]}", approved, approved);
	cr_assert_eq(pspc_parse_charge_list(list, strlen(list), out, 4, &count), ORN_OK);
	cr_assert_eq(count, 2);
	cr_assert_str_eq(out[1].id, "ch_123");
	cr_assert_eq(pspc_parse_charge_list(list, strlen(list), out, 1, &count), ORN_OK);
	cr_assert_eq(count, 1);
	cr_assert_eq(pspc_parse_refund(r, strlen(r), &refund), ORN_OK);
	cr_assert_str_eq(refund.id, "re_1");
	cr_assert_str_eq(refund.charge, "ch_123");
	cr_assert_eq(pspc_parse_charge_list("{\"data\":3}", 10, out, 4, &count), ORN_EDECODE);
}
