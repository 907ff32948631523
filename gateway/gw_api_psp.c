/* gw_api_psp.c — the card payment provider's two doors into the API (ADR 028):
 *
 *   GET  /api/v1/payments/config   {provider_url, publishable_key}: where a
 *        browser tokenizes a card (public; 503 when no provider is configured).
 *   POST /api/v1/webhooks/psp      the provider's signed events. The signature
 *        header "Orion-PSP-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret,
 *        t + "." + raw body)>" is checked before the body is parsed: a
 *        missing or malformed header, no v1 that matches (compared in
 *        constant time), or a t more than PSP_TOLERANCE_S away from now is
 *        400 and nothing is sent. A verified event becomes the bus request
 *        PspEvent to the payment service, command id "psp:<event id>", so a
 *        redelivered event is the same command; the payment aggregate records
 *        each outcome once, whatever order and however often events come.
 *        200 {"received": true} once the service answered (recorded, or
 *        nothing to do: an unknown type, an event of no order of ours); 503
 *        when it did not (the provider retries).
 *
 * Threading: the gateway's loop thread. */
#include "gw_api_psp.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_api-internal.h"
#include "gw_problem.h"
#include "log.h"

#define PSP_SERVICE        "pay" /* the payment service (payment/pay.h PAY_SERVICE_AGGREGATE) */
#define PSP_CMD_EVENT      "PspEvent"
#define PSP_SIGNATURE      "Orion-PSP-Signature"
#define PSP_TOLERANCE_S    300
#define PSP_BODY_MAX       (64 * 1024)
#define PSP_SIGNATURES_MAX 4 /* v1 entries looked at (the provider may send one per secret) */
#define PSP_TEXT_MAX       256
#define PSP_TIMEOUT_MS     10000

void gw_psp_config(gw_request *r, gw_api *api, const gw_caller *caller)
{
	(void)caller;
	if (api->psp_public_url[0] == '\0' || api->psp_publishable_key[0] == '\0') {
		gw_respond_error(r, 503, "no card payment provider is configured");
		return;
	}
	json_t *body = json_pack("{s:s, s:s}", "provider_url", api->psp_public_url, "publishable_key",
	                         api->psp_publishable_key);
	gw_respond_json(r, 200, body);
}

/* ---- the signature ---------------------------------------------------------- */

/* The parts of a signature header: t and up to PSP_SIGNATURES_MAX v1 digests. */
typedef struct psp_signature {
	int64_t t;
	unsigned char v1[PSP_SIGNATURES_MAX][crypto_auth_hmacsha256_BYTES];
	size_t v1_count;
} psp_signature;

/* Parses "t=<digits>,v1=<64 hex>[,v1=...][,other=...]"; false if t or
 * every v1 is missing or malformed. */
static bool parse_signature(const char *header, psp_signature *out)
{
	bool have_t = false;
	memset(out, 0, sizeof *out);
	if (header == NULL || strlen(header) > 1024)
		return false;
	const char *p = header;
	while (*p != '\0') {
		while (*p == ' ')
			p++;
		size_t len = strcspn(p, ",");
		if (len > 2 && p[0] == 't' && p[1] == '=') {
			int64_t t = 0;
			size_t digits = 0;
			for (size_t i = 2; i < len && p[i] >= '0' && p[i] <= '9' && digits < 12;
			     i++, digits++)
				t = t * 10 + (p[i] - '0');
			if (digits == 0 || digits != len - 2)
				return false;
			out->t = t;
			have_t = true;
		} else if (len == 3 + 2 * crypto_auth_hmacsha256_BYTES && strncmp(p, "v1=", 3) == 0 &&
		           out->v1_count < PSP_SIGNATURES_MAX) {
			size_t bin_len = 0;
			if (sodium_hex2bin(out->v1[out->v1_count], crypto_auth_hmacsha256_BYTES, p + 3,
			                   2 * crypto_auth_hmacsha256_BYTES, NULL, &bin_len, NULL) == 0 &&
			    bin_len == crypto_auth_hmacsha256_BYTES)
				out->v1_count++;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return have_t && out->v1_count > 0;
}

bool gw_psp_signature_valid(const char *secret, const char *header, const unsigned char *body, size_t len,
                            int64_t now_s)
{
	psp_signature sig;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	char t_text[24];
	crypto_auth_hmacsha256_state st;
	bool ok = false;
	if (secret == NULL || secret[0] == '\0' || !parse_signature(header, &sig))
		return false;
	if (sig.t < now_s - PSP_TOLERANCE_S || sig.t > now_s + PSP_TOLERANCE_S)
		return false;
	snprintf(t_text, sizeof t_text, "%lld.", (long long)sig.t);
	crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)t_text, strlen(t_text));
	crypto_auth_hmacsha256_update(&st, body, len);
	crypto_auth_hmacsha256_final(&st, mac);
	for (size_t i = 0; i < sig.v1_count; i++)
		if (sodium_memcmp(mac, sig.v1[i], sizeof mac) == 0)
			ok = true; /* every entry is compared: the time does not tell which matched */
	sodium_memzero(mac, sizeof mac);
	return ok;
}

/* ---- the event ---------------------------------------------------------------- */

/* What the payment service needs of an event (ADR 028 PspEvent). */
typedef struct psp_event {
	char event_id[PSP_TEXT_MAX], type[PSP_TEXT_MAX], intent_id[PSP_TEXT_MAX], order_id[PSP_TEXT_MAX];
	char status[PSP_TEXT_MAX], charge_id[PSP_TEXT_MAX], decline_code[PSP_TEXT_MAX];
	char refund_id[PSP_TEXT_MAX], refund_status[PSP_TEXT_MAX];
	int64_t amount_cents;
} psp_event;

static void copy_string(char *out, const json_t *object, const char *name)
{
	const char *value = json_string_value(json_object_get(object, name));
	snprintf(out, PSP_TEXT_MAX, "%s", value != NULL && strlen(value) < PSP_TEXT_MAX ? value : "");
}

/* The fields of a parsed event; false if it has no id, type or object. */
static bool read_event(const json_t *root, psp_event *e)
{
	const json_t *object = json_object_get(json_object_get(root, "data"), "object");
	const json_t *error;
	memset(e, 0, sizeof *e);
	copy_string(e->event_id, root, "id");
	copy_string(e->type, root, "type");
	if (e->event_id[0] == '\0' || e->type[0] == '\0' || !json_is_object(object))
		return false;
	copy_string(e->order_id, json_object_get(object, "metadata"), "order_id");
	copy_string(e->status, object, "status");
	const char *kind = json_string_value(json_object_get(object, "object"));
	if (kind != NULL && strcmp(kind, "payment_intent") == 0) {
		copy_string(e->intent_id, object, "id");
		copy_string(e->charge_id, object, "latest_charge");
		error = json_object_get(object, "last_payment_error");
		copy_string(e->decline_code, error, "decline_code");
		if (e->decline_code[0] == '\0')
			copy_string(e->decline_code, error, "code");
		e->amount_cents = json_integer_value(json_object_get(object, "amount"));
	} else if (kind != NULL && strcmp(kind, "charge") == 0) {
		copy_string(e->charge_id, object, "id");
		copy_string(e->intent_id, object, "payment_intent");
		e->amount_cents = json_integer_value(json_object_get(object, "amount_refunded"));
		if (json_is_true(json_object_get(object, "refunded")) || e->amount_cents > 0)
			snprintf(e->refund_status, sizeof e->refund_status, "succeeded");
	} else if (kind != NULL && strcmp(kind, "refund") == 0) {
		copy_string(e->refund_id, object, "id");
		copy_string(e->intent_id, object, "payment_intent");
		copy_string(e->charge_id, object, "charge");
		copy_string(e->refund_status, object, "status");
		e->amount_cents = json_integer_value(json_object_get(object, "amount"));
	}
	return true;
}

static void write_pair(mp_writer *w, const char *name, const char *value)
{
	mp_write_cstr(w, name);
	mp_write_cstr(w, value);
}

static orn_rc encode_event(mp_writer *w, const psp_event *e)
{
	mp_write_map(w, 10);
	write_pair(w, "event_id", e->event_id);
	write_pair(w, "type", e->type);
	write_pair(w, "intent_id", e->intent_id);
	write_pair(w, "order_id", e->order_id);
	write_pair(w, "status", e->status);
	write_pair(w, "charge_id", e->charge_id);
	write_pair(w, "decline_code", e->decline_code);
	write_pair(w, "refund_id", e->refund_id);
	write_pair(w, "refund_status", e->refund_status);
	mp_write_cstr(w, "amount_cents");
	mp_write_int(w, e->amount_cents);
	return mp_writer_status(w);
}

/* "psp:" + hex(BLAKE2b-128(event id)): the same event, the same command. */
static void event_command_id(const char *event_id, char out[ENV_ID_MAX])
{
	unsigned char digest[16];
	char hex[2 * sizeof digest + 1];
	crypto_generichash(digest, sizeof digest, (const unsigned char *)event_id, strlen(event_id), NULL, 0);
	sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
	snprintf(out, ENV_ID_MAX, "psp:%s", hex);
}

static void answer_received(gw_async *a)
{
	gw_async_complete_json(a, 200, json_pack("{s:b}", "received", 1));
}

static void on_event_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	gw_async *a = closure;
	if (rc != ORN_OK || reply->outcome == BUS_FAILED) {
		log_warn("payment event not recorded; the provider will send it again", "error",
		         rc != ORN_OK ? orn_strerror(rc) : reply->code);
		gw_async_complete_problem(a, gw_problem_new(503, "the event could not be recorded now"));
		return;
	}
	if (reply->outcome == BUS_REJECTED)
		log_info("payment event refused by the payment service", "code", reply->code);
	answer_received(a);
}

void gw_psp_webhook(gw_request *r, gw_api *api, const gw_caller *caller)
{
	size_t len = 0;
	const unsigned char *raw = gw_request_body(r, &len);
	psp_event e;
	char command_id[ENV_ID_MAX];
	(void)caller;
	if (api->psp_webhook_secret[0] == '\0' || api->bus == NULL) {
		gw_respond_error(r, 503, "payment events are not received here");
		return;
	}
	if (len > PSP_BODY_MAX) {
		gw_respond_error(r, 413, "the event is too large");
		return;
	}
	if (!gw_psp_signature_valid(api->psp_webhook_secret, gw_request_header(r, PSP_SIGNATURE), raw, len,
	                            orn_now_ms() / 1000)) {
		gw_respond_error(r, 400, "the event's signature is missing, wrong or too old");
		return;
	}
	json_t *root = len > 0 ? json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	bool readable = json_is_object(root) && read_event(root, &e);
	json_decref(root);
	if (!readable) {
		gw_respond_error(r, 400, "the event is not a provider event");
		return;
	}
	if (!gw_valid_id(e.order_id)) { /* not an order of ours: nothing to do */
		log_info("payment event without an order of ours", "type", e.type);
		gw_respond_json(r, 200, json_pack("{s:b}", "received", 1));
		return;
	}
	mp_writer *w = gw_api_text_buffer(api);
	if (w == NULL || encode_event(w, &e) != ORN_OK) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	gw_async *a = gw_request_defer(r, PSP_TIMEOUT_MS + 1000);
	if (a == NULL)
		return;
	event_command_id(e.event_id, command_id);
	orn_rc rc = gw_api_send_within(api, PSP_SERVICE, e.order_id, PSP_CMD_EVENT, w, command_id, NULL,
	                               PSP_TIMEOUT_MS, on_event_replied, a);
	if (rc != ORN_OK) {
		log_warn("payment event not sent", "error", orn_strerror(rc));
		gw_async_complete_problem(a, gw_problem_new(503, "the event could not be recorded now"));
	}
}
