/* pay_request.c — the Pay request service's handler (pay-internal.h): the
 * request decoded strictly, handed to pay_charge, answered; every buffer that
 * held the card wiped (the request's own bytes by the kit, wipe: true). */
#include "pay-internal.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

/* Reads a card string; too long marks the field instead of failing. */
static orn_rc read_card_string(mp_reader *r, char *out, size_t cap, const char *field, pay_request *req)
{
	orn_rc rc = mp_read_cstr(r, out, cap);

	if (rc == ORN_ETOOBIG) {
		sodium_memzero(out, cap);
		if (req->too_long == NULL)
			req->too_long = field;
		return ORN_OK;
	}
	return rc;
}

/* Decodes the card map: exactly its five keys. */
static orn_rc decode_card(mp_reader *r, pay_request *req)
{
	uint32_t count = 0, len, seen = 0;
	const char *key;
	orn_rc rc;

	if ((rc = mp_read_map(r, &count)) != ORN_OK || count != 5)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++) {
		if (mp_read_str(r, &key, &len) != ORN_OK)
			return ORN_EDECODE;
		uint32_t bit;
		if (mp_str_eq(key, len, "number")) {
			bit = 1;
			rc = read_card_string(r, req->number, sizeof req->number, "card.number", req);
		} else if (mp_str_eq(key, len, "exp_month")) {
			bit = 2;
			rc = mp_read_int(r, &req->exp_month);
		} else if (mp_str_eq(key, len, "exp_year")) {
			bit = 4;
			rc = mp_read_int(r, &req->exp_year);
		} else if (mp_str_eq(key, len, "cvc")) {
			bit = 8;
			rc = read_card_string(r, req->cvc, sizeof req->cvc, "card.cvc", req);
		} else if (mp_str_eq(key, len, "holder_name")) {
			bit = 16;
			rc = read_card_string(r, req->holder_name, sizeof req->holder_name,
			                      "card.holder_name", req);
		} else {
			return ORN_EDECODE;
		}
		if (rc != ORN_OK || (seen & bit) != 0)
			return ORN_EDECODE;
		seen |= bit;
	}
	return seen == 31 ? ORN_OK : ORN_EDECODE;
}

/* Decodes the Pay payload strictly: exactly customer_id, idempotency_key, card. */
static orn_rc decode_pay(const uint8_t *payload, size_t len, pay_request *req)
{
	mp_reader r;
	uint32_t count = 0, klen, seen = 0;
	const char *key;
	orn_rc rc;

	mp_reader_init(&r, payload, len);
	if (mp_read_map(&r, &count) != ORN_OK || count != 3)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t bit;
		if (mp_read_str(&r, &key, &klen) != ORN_OK)
			return ORN_EDECODE;
		if (mp_str_eq(key, klen, "customer_id")) {
			bit = 1;
			rc = mp_read_cstr(&r, req->customer_id, sizeof req->customer_id);
		} else if (mp_str_eq(key, klen, "idempotency_key")) {
			bit = 2;
			rc = mp_read_cstr(&r, req->idempotency_key, sizeof req->idempotency_key);
		} else if (mp_str_eq(key, klen, "card")) {
			bit = 4;
			rc = decode_card(&r, req);
		} else {
			return ORN_EDECODE;
		}
		if (rc != ORN_OK || (seen & bit) != 0)
			return ORN_EDECODE;
		seen |= bit;
	}
	if (seen != 7 || mp_reader_remaining(&r) != 0 || !orn_id_valid(req->customer_id))
		return ORN_EDECODE;
	for (const char *c = req->idempotency_key; *c != '\0'; c++)
		if (*c < '!' || *c > '~')
			return ORN_EDECODE;
	return ORN_OK;
}

/* The order id of a request's subject, orion.cmd.pay.<order id>; false if none. */
static bool order_of(const char *subject, pay_request *req)
{
	static const char prefix[] = "orion.cmd." PAY_SERVICE_AGGREGATE ".";
	size_t n = sizeof prefix - 1;
	if (subject == NULL || strncmp(subject, prefix, n) != 0 || strlen(subject + n) > ORN_ID_MAX ||
	    !orn_id_valid(subject + n))
		return false;
	strcpy(req->order_id, subject + n);
	return true;
}

void pay_serve(void *worker, kit_request *r)
{
	pay_worker *w = worker;
	pay_request *req = NULL;
	env_envelope cmd;
	pay_reply out;
	bus_reply reply;
	size_t len = 0;
	const uint8_t *data = kit_request_data(r, &len);

	memset(&out, 0, sizeof out);
	memset(&cmd, 0, sizeof cmd);
	pay_reply_set(&out, BUS_FAILED, "invalid", "undecodable Pay request", 0);
	w->correlation[0] = '\0';
	if ((req = sodium_malloc(sizeof *req)) == NULL) {
		pay_reply_set(&out, BUS_FAILED, "unavailable", "out of memory", 0);
		goto done;
	}
	memset(req, 0, sizeof *req);
	if (!order_of(kit_request_subject(r), req)) {
		pay_reply_set(&out, BUS_FAILED, "invalid", "invalid order id", 0);
		goto done;
	}
	if (env_decode_buffer(data, len, &cmd) != ORN_OK || strcmp(cmd.type, PAY_CMD_PAY) != 0 ||
	    decode_pay(cmd.payload, cmd.payload_len, req) != ORN_OK)
		goto done;
	memcpy(w->correlation, cmd.correlation, sizeof w->correlation);
	log_set_correlation(cmd.correlation);
	pay_charge(w, req, &out);
done:
	if (req != NULL)
		sodium_free(req); /* wipes */
	memset(&cmd, 0, sizeof cmd);
	memset(&reply, 0, sizeof reply);
	reply.outcome = out.outcome;
	memcpy(reply.code, out.code, sizeof reply.code);
	memcpy(reply.detail, out.detail, sizeof reply.detail);
	reply.seq = out.seq;
	reply.attempts = 1;
	kit_request_reply(r, &reply);
	log_set_correlation(NULL);
}
