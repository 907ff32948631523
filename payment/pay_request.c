/* pay_request.c — the request service's handler (pay-internal.h): a request
 * on orion.cmd.pay.<order id> decoded strictly by its type (Pay, PspEvent,
 * RetryRefund; ADR 028 section 2), handed to its handler, answered. */
#include "pay-internal.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

/* One string key of a request: where it goes. */
typedef struct string_key {
	const char *key;
	char *out;
	size_t cap;
} string_key;

/* Reads the map of a request: keys is every string key it may hold
 * (count), amount (NULL: none) the one integer key amount_cents. With
 * exact, every key must be there and no other (Pay); without, absent keys
 * stay "" / 0, nil reads as absent and other keys are skipped (PspEvent, as
 * ADR 028 says of it). A string too long for its buffer is ORN_ETOOBIG when
 * too_long is NULL, else sets *too_long and reads as "". */
static orn_rc decode_map(const uint8_t *payload, size_t len, const string_key *keys, size_t count,
                         int64_t *amount, bool exact, const char **too_long)
{
	mp_reader r;
	uint32_t entries = 0, klen, seen = 0;
	const char *key;
	orn_rc rc;

	mp_reader_init(&r, payload, len);
	if (mp_read_map(&r, &entries) != ORN_OK)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < entries; i++) {
		size_t k = 0;
		if (mp_read_str(&r, &key, &klen) != ORN_OK)
			return ORN_EDECODE;
		while (k < count && !mp_str_eq(key, klen, keys[k].key))
			k++;
		if (amount != NULL && mp_str_eq(key, klen, "amount_cents")) {
			rc = !exact && mp_peek(&r) == MP_NIL ? mp_read_nil(&r) : mp_read_int(&r, amount);
		} else if (k == count) {
			if (exact)
				return ORN_EDECODE;
			rc = mp_skip(&r);
			k = 32; /* no bit */
		} else if ((seen & (1u << k)) != 0) {
			return ORN_EDECODE;
		} else if (!exact && mp_peek(&r) == MP_NIL) {
			rc = mp_read_nil(&r);
		} else {
			rc = mp_read_cstr(&r, keys[k].out, keys[k].cap);
			if (rc == ORN_ETOOBIG && too_long != NULL && *too_long == NULL) {
				*too_long = keys[k].key;
				keys[k].out[0] = '\0';
				rc = ORN_OK;
			}
		}
		if (rc != ORN_OK)
			return rc == ORN_ETOOBIG ? ORN_ETOOBIG : ORN_EDECODE;
		if (k < count)
			seen |= 1u << k;
	}
	if (mp_reader_remaining(&r) != 0 || (exact && seen != (1u << count) - 1))
		return ORN_EDECODE;
	return ORN_OK;
}

/* Pay {customer_id, idempotency_key, payment_method}: exactly these. */
static orn_rc decode_pay(const uint8_t *payload, size_t len, pay_request *req)
{
	const char *too_long = NULL;
	const string_key keys[] = {{"customer_id", req->customer_id, sizeof req->customer_id},
	                           {"idempotency_key", req->idempotency_key, sizeof req->idempotency_key},
	                           {"payment_method", req->payment_method, sizeof req->payment_method}};

	if (decode_map(payload, len, keys, ORN_ARRAY_LEN(keys), NULL, true, &too_long) != ORN_OK ||
	    (too_long != NULL && strcmp(too_long, "payment_method") != 0) || !orn_id_valid(req->customer_id))
		return ORN_EDECODE;
	for (const char *c = req->idempotency_key; *c != '\0'; c++)
		if (*c < '!' || *c > '~')
			return ORN_EDECODE;
	req->payment_method_valid = too_long == NULL && pspc_payment_method_valid(req->payment_method);
	return ORN_OK;
}

/* PspEvent {event_id, type, intent_id, order_id, status, charge_id,
 * decline_code, refund_id, refund_status, amount_cents}. */
static orn_rc decode_psp_event(const uint8_t *payload, size_t len, pay_request *req)
{
	const string_key keys[] = {{"event_id", req->event_id, sizeof req->event_id},
	                           {"type", req->type, sizeof req->type},
	                           {"intent_id", req->intent_id, sizeof req->intent_id},
	                           {"order_id", req->event_order_id, sizeof req->event_order_id},
	                           {"status", req->status, sizeof req->status},
	                           {"charge_id", req->charge_id, sizeof req->charge_id},
	                           {"decline_code", req->decline_code, sizeof req->decline_code},
	                           {"refund_id", req->refund_id, sizeof req->refund_id},
	                           {"refund_status", req->refund_status, sizeof req->refund_status}};
	orn_rc rc = decode_map(payload, len, keys, ORN_ARRAY_LEN(keys), &req->amount_cents, false, NULL);

	if (rc != ORN_OK)
		return rc;
	/* the ids the payment records: as its decider bounds them, else unusable */
	for (size_t i = 0; i < ORN_ARRAY_LEN(keys); i++)
		for (const char *c = keys[i].out; *c != '\0'; c++)
			if (*c < '!' || *c > '~')
				return ORN_EDECODE;
	return ORN_OK;
}

/* RetryRefund {actor}. */
static orn_rc decode_retry_refund(const uint8_t *payload, size_t len, pay_request *req)
{
	const string_key keys[] = {{"actor", req->actor, sizeof req->actor}};

	return decode_map(payload, len, keys, ORN_ARRAY_LEN(keys), NULL, true, NULL);
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

/* Decodes and handles one request of type. */
static void handle(pay_worker *w, const env_envelope *cmd, pay_request *req, pay_reply *out)
{
	const char *type = cmd->type;

	if (strcmp(type, PAY_CMD_PAY) == 0) {
		if (decode_pay(cmd->payload, cmd->payload_len, req) == ORN_OK)
			pay_charge(w, req, out);
	} else if (strcmp(type, PAY_CMD_PSP_EVENT) == 0) {
		orn_rc rc = decode_psp_event(cmd->payload, cmd->payload_len, req);
		if (rc == ORN_OK)
			pay_psp_event(w, req, out);
		else if (rc == ORN_ETOOBIG) /* no id of ours is that long: nothing to record */
			pay_reply_set(out, BUS_ACCEPTED, "", "a field is longer than any this role records",
			              0);
	} else if (strcmp(type, PAY_CMD_RETRY_REFUND) == 0) {
		if (decode_retry_refund(cmd->payload, cmd->payload_len, req) == ORN_OK)
			pay_retry_refund(w, req, out);
	}
}

void pay_serve(void *worker, kit_request *r)
{
	pay_worker *w = worker;
	pay_request req;
	env_envelope cmd;
	pay_reply out;
	bus_reply reply;
	size_t len = 0;
	const uint8_t *data = kit_request_data(r, &len);

	memset(&out, 0, sizeof out);
	memset(&cmd, 0, sizeof cmd);
	memset(&req, 0, sizeof req);
	pay_reply_set(&out, BUS_FAILED, "invalid", "undecodable payment request", 0);
	w->correlation[0] = '\0';
	if (!order_of(kit_request_subject(r), &req)) {
		pay_reply_set(&out, BUS_FAILED, "invalid", "invalid order id", 0);
		goto done;
	}
	if (env_decode_buffer(data, len, &cmd) != ORN_OK)
		goto done;
	memcpy(w->correlation, cmd.correlation, sizeof w->correlation);
	log_set_correlation(cmd.correlation);
	handle(w, &cmd, &req, &out);
done:
	memset(&reply, 0, sizeof reply);
	reply.outcome = out.outcome;
	memcpy(reply.code, out.code, sizeof reply.code);
	memcpy(reply.detail, out.detail, sizeof reply.detail);
	reply.seq = out.seq;
	reply.attempts = 1;
	kit_request_reply(r, &reply);
	log_set_correlation(NULL);
}
