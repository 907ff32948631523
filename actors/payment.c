/* payment.c — the payment aggregate: a pure decider (decide, evolve), the
 * msgpack codecs of its command and event payloads, and the kind table the
 * actor runtime serves (see payment.h for the rules).
 *
 * Every payload is a subset of the keys of payment_data, described once in a
 * table (key, bit, kind of value, offset, size), so one encoder and one
 * strict decoder serve commands and events. A shape names the fields written
 * and the fields a reader requires; the rest of what it accepts is optional
 * (the shapes written before ADR 028). The snapshot is the event list that
 * rebuilds the state, and restore replays it through the event decoder and
 * evolve, so a snapshot can only produce a state the stream could. */
#include "payment.h"
#include "kind.h"
#include "text.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version of every command and event payload written and accepted here. */
#define PAYLOAD_SCHEMA 1

enum payload_field {
	FIELD_AMOUNT = 1u << 0,
	FIELD_CURRENCY = 1u << 1,
	FIELD_BRAND = 1u << 2,
	FIELD_LAST4 = 1u << 3,
	FIELD_PROVIDER_KEY = 1u << 4,
	FIELD_CHARGE_ID = 1u << 5,
	FIELD_REFUND_ID = 1u << 6,
	FIELD_CODE = 1u << 7,
	FIELD_REASON = 1u << 8,
	FIELD_NOW = 1u << 9,
	FIELD_AT = 1u << 10,
	FIELD_METHOD = 1u << 11,
	FIELD_INTENT = 1u << 12,
	FIELD_URL = 1u << 13,
	FIELD_REFUND_KEY = 1u << 14,
};

static const kind_field field_table[] = {
        {"provider_key", FIELD_PROVIDER_KEY, KIND_TEXT, offsetof(payment_data, provider_key), PAYMENT_KEY_MAX,
         NULL},
        {"payment_method", FIELD_METHOD, KIND_TEXT, offsetof(payment_data, payment_method), PAYMENT_ID_MAX,
         NULL},
        {"intent_id", FIELD_INTENT, KIND_TEXT, offsetof(payment_data, intent_id), PAYMENT_ID_MAX, NULL},
        {"url", FIELD_URL, KIND_TEXT, offsetof(payment_data, url), PAYMENT_URL_MAX, NULL},
        {"refund_key", FIELD_REFUND_KEY, KIND_TEXT, offsetof(payment_data, refund_key), PAYMENT_KEY_MAX,
         NULL},
        {"amount_cents", FIELD_AMOUNT, KIND_INT, offsetof(payment_data, amount_cents), 0, NULL},
        {"currency", FIELD_CURRENCY, KIND_TEXT, offsetof(payment_data, currency), PAYMENT_CURRENCY_MAX, NULL},
        {"brand", FIELD_BRAND, KIND_TEXT, offsetof(payment_data, brand), PAYMENT_BRAND_MAX, NULL},
        {"last4", FIELD_LAST4, KIND_TEXT, offsetof(payment_data, last4), PAYMENT_LAST4_MAX, NULL},
        {"charge_id", FIELD_CHARGE_ID, KIND_TEXT, offsetof(payment_data, charge_id), PAYMENT_ID_MAX, NULL},
        {"refund_id", FIELD_REFUND_ID, KIND_TEXT, offsetof(payment_data, refund_id), PAYMENT_ID_MAX, NULL},
        {"code", FIELD_CODE, KIND_TEXT, offsetof(payment_data, code), PAYMENT_TEXT_MAX, NULL},
        {"reason", FIELD_REASON, KIND_TEXT, offsetof(payment_data, reason), PAYMENT_TEXT_MAX, NULL},
        {"now_ms", FIELD_NOW, KIND_INT, offsetof(payment_data, time_ms), 0, NULL},
        {"at_ms", FIELD_AT, KIND_INT, offsetof(payment_data, time_ms), 0, NULL},
};

static const kind_fields fields_of = {KIND_FIELDS_OF(field_table)};

/* A payload: the fields written (all of them present when read, unless
 * also optional) and the fields only read, which may be absent. */
typedef struct payload_shape {
	const char *type;
	unsigned fields;
	unsigned optional;
} payload_shape;

#define ATTEMPT_FIELDS                                                                                       \
	(FIELD_PROVIDER_KEY | FIELD_METHOD | FIELD_AMOUNT | FIELD_CURRENCY | FIELD_BRAND | FIELD_LAST4)
#define REQUEST_FIELDS (FIELD_INTENT | FIELD_REFUND_KEY | FIELD_AMOUNT)
#define FAILURE_FIELDS (FIELD_INTENT | FIELD_REFUND_KEY | FIELD_REASON)
#define LEGACY_REFUND  (FIELD_CHARGE_ID | FIELD_REASON) /* PaymentRefunded before ADR 028 */

static const payload_shape command_shapes[] = {
        [PAYMENT_RECORD_ATTEMPT] = {PAYMENT_CMD_RECORD_ATTEMPT, ATTEMPT_FIELDS | FIELD_NOW, 0},
        [PAYMENT_RECORD_SUCCESS] = {PAYMENT_CMD_RECORD_SUCCESS, FIELD_INTENT | FIELD_CHARGE_ID | FIELD_NOW,
                                    0},
        [PAYMENT_RECORD_DECLINE] = {PAYMENT_CMD_RECORD_DECLINE, FIELD_INTENT | FIELD_CODE | FIELD_NOW, 0},
        [PAYMENT_RECORD_REFUND] = {PAYMENT_CMD_RECORD_REFUND,
                                   FIELD_INTENT | FIELD_REFUND_ID | FIELD_AMOUNT | FIELD_NOW, 0},
        [PAYMENT_RECORD_ACTION_REQUIRED] = {PAYMENT_CMD_RECORD_ACTION_REQUIRED,
                                            FIELD_INTENT | FIELD_URL | FIELD_NOW, 0},
        [PAYMENT_RECORD_REFUND_REQUEST] = {PAYMENT_CMD_RECORD_REFUND_REQUEST, REQUEST_FIELDS | FIELD_NOW, 0},
        [PAYMENT_RECORD_REFUND_FAILURE] = {PAYMENT_CMD_RECORD_REFUND_FAILURE, FAILURE_FIELDS | FIELD_NOW, 0},
};

/* Events: the fields a reader requires of both shapes are in fields minus
 * optional; PaymentAttempted, PaymentSucceeded and PaymentRefunded were
 * written with fewer (or other) fields before ADR 028. */
static const payload_shape event_shapes[] = {
        [PAYMENT_ATTEMPTED] = {PAYMENT_EV_ATTEMPTED, ATTEMPT_FIELDS | FIELD_AT, FIELD_METHOD},
        [PAYMENT_SUCCEEDED] = {PAYMENT_EV_SUCCEEDED, FIELD_INTENT | FIELD_CHARGE_ID | FIELD_AT, FIELD_INTENT},
        [PAYMENT_DECLINED] = {PAYMENT_EV_DECLINED, FIELD_CODE | FIELD_AT, 0},
        [PAYMENT_REFUNDED] = {PAYMENT_EV_REFUNDED, FIELD_INTENT | FIELD_REFUND_ID | FIELD_AMOUNT | FIELD_AT,
                              FIELD_INTENT | FIELD_AMOUNT | LEGACY_REFUND},
        [PAYMENT_ACTION_REQUIRED] = {PAYMENT_EV_ACTION_REQUIRED, FIELD_INTENT | FIELD_URL | FIELD_AT, 0},
        [PAYMENT_REFUND_REQUESTED] = {PAYMENT_EV_REFUND_REQUESTED, REQUEST_FIELDS | FIELD_AT, 0},
        [PAYMENT_REFUND_FAILED] = {PAYMENT_EV_REFUND_FAILED, FAILURE_FIELDS | FIELD_AT, 0},
};

static const char *const verdict_codes[] = {
        [PAYMENT_OK] = "",
        [PAYMENT_REJ_INVALID] = "invalid",
        [PAYMENT_REJ_WRONG_STATE] = "wrong_state",
        [PAYMENT_REJ_IN_PROGRESS] = "in_progress",
        [PAYMENT_REJ_UNKNOWN_CHARGE] = "unknown_charge",
        [PAYMENT_REJ_LIMIT] = "limit",
};

static const char *const status_names[] = {
        [PAYMENT_STATUS_NONE] = "none",
        [PAYMENT_STATUS_ATTEMPTED] = "attempted",
        [PAYMENT_STATUS_SUCCEEDED] = "succeeded",
        [PAYMENT_STATUS_DECLINED] = "declined",
        [PAYMENT_STATUS_REQUIRES_ACTION] = "requires_action",
};

static const char *const refund_status_names[] = {
        [PAYMENT_REFUND_STATUS_NONE] = "none",
        [PAYMENT_REFUND_STATUS_PENDING] = "pending",
        [PAYMENT_REFUND_STATUS_REFUNDED] = "succeeded",
        [PAYMENT_REFUND_STATUS_FAILED] = "failed",
};

/* ---- validation ---- */

/* 1..cap-1 printable ASCII characters, no space. */
static bool token_valid(const char *s, size_t cap)
{
	size_t len = strnlen(s, cap);
	bool valid = len > 0 && len < cap;

	for (size_t i = 0; valid && i < len; i++)
		valid = s[i] > 0x20 && s[i] < 0x7f;
	return valid;
}

static bool id_valid(const char *s)
{
	return token_valid(s, PAYMENT_ID_MAX);
}

/* "" or a valid id. */
static bool id_or_empty(const char *s)
{
	return s[0] == '\0' || id_valid(s);
}

static bool method_valid(const char *s)
{
	return id_valid(s) && strncmp(s, "pm_", 3) == 0 && s[3] != '\0';
}

static bool text_field_valid(const char *s, size_t cap)
{
	size_t len = strnlen(s, cap);

	return len > 0 && len < cap && text_valid(s, len, TEXT_SPACE);
}

static bool currency_valid(const char *s)
{
	bool valid = strnlen(s, PAYMENT_CURRENCY_MAX) == 3;

	for (size_t i = 0; valid && i < 3; i++)
		valid = s[i] >= 'A' && s[i] <= 'Z';
	return valid;
}

static bool brand_valid(const char *s)
{
	size_t len = strnlen(s, PAYMENT_BRAND_MAX);
	bool valid = len > 0 && len < PAYMENT_BRAND_MAX;

	for (size_t i = 0; valid && i < len; i++)
		valid = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		        s[i] == '-';
	return valid;
}

static bool last4_valid(const char *s)
{
	bool valid = strnlen(s, PAYMENT_LAST4_MAX) == 4;

	for (size_t i = 0; valid && i < 4; i++)
		valid = s[i] >= '0' && s[i] <= '9';
	return valid;
}

static bool time_valid(int64_t ms)
{
	return ms >= 0 && ms <= PAYMENT_TIME_MAX;
}

static bool amount_valid(int64_t cents)
{
	return cents >= 1 && cents <= PAYMENT_AMOUNT_MAX;
}

_Static_assert(PAYMENT_RECORD_ATTEMPT == (int)PAYMENT_ATTEMPTED &&
                       PAYMENT_RECORD_SUCCESS == (int)PAYMENT_SUCCEEDED &&
                       PAYMENT_RECORD_DECLINE == (int)PAYMENT_DECLINED &&
                       PAYMENT_RECORD_REFUND == (int)PAYMENT_REFUNDED &&
                       PAYMENT_RECORD_ACTION_REQUIRED == (int)PAYMENT_ACTION_REQUIRED &&
                       PAYMENT_RECORD_REFUND_REQUEST == (int)PAYMENT_REFUND_REQUESTED &&
                       PAYMENT_RECORD_REFUND_FAILURE == (int)PAYMENT_REFUND_FAILED,
               "a command kind and the kind of its event share their value");

/* The card of an attempt: with a payment method, brand and last4 each ""
 * or valid (the provider reports them); before ADR 028 both valid. */
static bool attempt_card_valid(const payment_data *d)
{
	if (d->payment_method[0] == '\0')
		return brand_valid(d->brand) && last4_valid(d->last4);
	return method_valid(d->payment_method) && (d->brand[0] == '\0' || brand_valid(d->brand)) &&
	       (d->last4[0] == '\0' || last4_valid(d->last4));
}

/* True if the fields of kind (a command or event kind: they share their
 * order) in d are within bounds. command: the command's stricter rules
 * (what is written now, not what was written before ADR 028). */
static bool data_valid(int kind, const payment_data *d, bool command)
{
	if (!time_valid(d->time_ms))
		return false;
	switch (kind) {
	case PAYMENT_RECORD_ATTEMPT:
		return amount_valid(d->amount_cents) && currency_valid(d->currency) &&
		       token_valid(d->provider_key, PAYMENT_KEY_MAX) && attempt_card_valid(d) &&
		       (!command || d->payment_method[0] != '\0');
	case PAYMENT_RECORD_SUCCESS:
		if (d->intent_id[0] == '\0')
			return !command && id_valid(d->charge_id);
		return id_valid(d->intent_id) && id_or_empty(d->charge_id);
	case PAYMENT_RECORD_DECLINE:
		return text_field_valid(d->code, PAYMENT_TEXT_MAX) && (!command || id_or_empty(d->intent_id));
	case PAYMENT_RECORD_REFUND:
		if (d->intent_id[0] == '\0')
			return !command && id_valid(d->charge_id) && id_valid(d->refund_id) &&
			       text_field_valid(d->reason, PAYMENT_TEXT_MAX);
		return id_valid(d->intent_id) && id_or_empty(d->refund_id) && d->amount_cents >= 0 &&
		       d->amount_cents <= PAYMENT_AMOUNT_MAX;
	case PAYMENT_RECORD_ACTION_REQUIRED:
		return id_valid(d->intent_id) && token_valid(d->url, PAYMENT_URL_MAX);
	case PAYMENT_RECORD_REFUND_REQUEST:
		return id_valid(d->intent_id) && token_valid(d->refund_key, PAYMENT_KEY_MAX) &&
		       amount_valid(d->amount_cents) &&
		       payment_refund_key_number(d->refund_key, d->intent_id) != 0;
	default:
		return id_valid(d->intent_id) && token_valid(d->refund_key, PAYMENT_KEY_MAX) &&
		       text_field_valid(d->reason, PAYMENT_TEXT_MAX);
	}
}

/* ---- state helpers ---- */

void payment_state_init(payment_state *s)
{
	memset(s, 0, sizeof *s);
}

const payment_attempt *payment_current_attempt(const payment_state *s)
{
	return s->attempt_count > 0 ? &s->attempts[s->attempt_count - 1] : NULL;
}

bool payment_attempt_open(const payment_attempt *a)
{
	return !a->succeeded && a->decline_code[0] == '\0';
}

/* Index of the attempt whose intent is intent_id, or -1. */
static int attempt_index(const payment_state *s, const char *intent_id)
{
	if (intent_id[0] == '\0')
		return -1;
	for (size_t i = 0; i < s->attempt_count; i++)
		if (strcmp(s->attempts[i].intent_id, intent_id) == 0)
			return (int)i;
	return -1;
}

const payment_attempt *payment_find_attempt(const payment_state *s, const char *intent_id)
{
	int i = attempt_index(s, intent_id);

	return i >= 0 ? &s->attempts[i] : NULL;
}

/* Index of the charge whose intent (by_intent) or charge id is id, or -1. */
static int charge_index(const payment_state *s, const char *id, bool by_intent)
{
	if (id[0] == '\0')
		return -1;
	for (size_t i = 0; i < s->charge_count; i++)
		if (strcmp(by_intent ? s->charges[i].intent_id : s->charges[i].charge_id, id) == 0)
			return (int)i;
	return -1;
}

const payment_charge *payment_find_intent(const payment_state *s, const char *intent_id)
{
	int i = charge_index(s, intent_id, true);

	return i >= 0 ? &s->charges[i] : NULL;
}

const payment_charge *payment_find_charge(const payment_state *s, const char *charge_id)
{
	int i = charge_index(s, charge_id, false);

	return i >= 0 ? &s->charges[i] : NULL;
}

orn_rc payment_refund_key(const char *order_id, const char *intent_id, unsigned n, char *out, size_t cap)
{
	int len;

	if (order_id == NULL || intent_id == NULL || order_id[0] == '\0' || intent_id[0] == '\0' || n < 1 ||
	    n > PAYMENT_REFUND_TRIES_MAX)
		return ORN_EINVAL;
	len = snprintf(out, cap, "%s:refund:%s:%u", order_id, intent_id, n);
	if (len < 0 || (size_t)len >= cap) {
		if (cap > 0)
			out[0] = '\0';
		return ORN_ETOOBIG;
	}
	return ORN_OK;
}

unsigned payment_refund_key_number(const char *key, const char *intent_id)
{
	static const char infix[] = ":refund:";
	size_t klen = strnlen(key, PAYMENT_KEY_MAX), ilen = strlen(intent_id), digits = 0;
	unsigned n = 0;

	if (ilen == 0)
		return 0;
	while (digits < klen && digits < 3 && key[klen - 1 - digits] >= '0' && key[klen - 1 - digits] <= '9')
		digits++;
	/* "<order, at least 1>:refund:<intent>:<n>", n without a leading zero */
	if (digits == 0 || key[klen - digits] == '0' || klen < digits + 1 + ilen + sizeof infix ||
	    key[klen - digits - 1] != ':' || memcmp(key + klen - digits - 1 - ilen, intent_id, ilen) != 0 ||
	    memcmp(key + klen - digits - 1 - ilen - (sizeof infix - 1), infix, sizeof infix - 1) != 0)
		return 0;
	for (size_t i = klen - digits; i < klen; i++)
		n = n * 10 + (unsigned)(key[i] - '0');
	return n;
}

const char *payment_status_name(payment_status status)
{
	return (size_t)status < ORN_ARRAY_LEN(status_names) ? status_names[status] : NULL;
}

const char *payment_refund_status_name(payment_refund_status status)
{
	return (size_t)status < ORN_ARRAY_LEN(refund_status_names) ? refund_status_names[status] : NULL;
}

KIND_NAMES(payment, verdict_codes, command_shapes, event_shapes);

/* ---- decide ---- */

/* Appends an event of kind carrying the fields of data to out. */
static void emit(payment_events *out, payment_event_kind kind, const payment_data *data)
{
	payment_event *e;

	assert(out->count < PAYMENT_MAX_EVENTS);
	e = &out->items[out->count++];
	e->kind = kind;
	e->data = *data;
}

static payment_verdict decide_attempt(const payment_state *s, const payment_data *d, payment_events *out)
{
	const payment_attempt *current = payment_current_attempt(s);

	if (current != NULL && strcmp(current->provider_key, d->provider_key) == 0)
		return PAYMENT_OK; /* redelivered, or retried with the same key */
	if (current != NULL && payment_attempt_open(current))
		return PAYMENT_REJ_IN_PROGRESS;
	if (s->charge_count > 0)
		return PAYMENT_REJ_WRONG_STATE;
	if (s->attempt_count >= PAYMENT_ATTEMPTS_MAX)
		return PAYMENT_REJ_LIMIT;
	emit(out, PAYMENT_ATTEMPTED, d);
	return PAYMENT_OK;
}

/* Index of the attempt an intent's report is about: the attempt naming the
 * intent, else the current attempt if it names none yet and had no success
 * (it learns its intent here); -1 if none. */
static int target_attempt(const payment_state *s, const char *intent_id)
{
	int i = attempt_index(s, intent_id);
	const payment_attempt *current = payment_current_attempt(s);

	if (i >= 0)
		return i;
	if (current != NULL && current->intent_id[0] == '\0' && !current->succeeded)
		return (int)s->attempt_count - 1;
	return -1;
}

static payment_verdict decide_action(const payment_state *s, const payment_data *d, payment_events *out)
{
	int i = target_attempt(s, d->intent_id);

	if (i < 0)
		return PAYMENT_REJ_WRONG_STATE;
	if (s->attempts[i].action_url[0] != '\0' || !payment_attempt_open(&s->attempts[i]))
		return PAYMENT_OK; /* asked already, or a later outcome is held */
	emit(out, PAYMENT_ACTION_REQUIRED, d);
	return PAYMENT_OK;
}

static payment_verdict decide_success(const payment_state *s, const payment_data *d, payment_events *out)
{
	if (charge_index(s, d->intent_id, true) >= 0)
		return PAYMENT_OK; /* the outcome is held: redelivered, or the webhook after the answer */
	if (s->attempt_count == 0)
		return PAYMENT_REJ_WRONG_STATE;
	if (s->charge_count >= PAYMENT_CHARGES_MAX)
		return PAYMENT_REJ_LIMIT;
	emit(out, PAYMENT_SUCCEEDED, d);
	return PAYMENT_OK;
}

static payment_verdict decide_decline(const payment_state *s, const payment_data *d, payment_events *out)
{
	const payment_attempt *current = payment_current_attempt(s);

	if (current == NULL)
		return PAYMENT_REJ_WRONG_STATE;
	if (d->intent_id[0] != '\0' &&
	    (charge_index(s, d->intent_id, true) >= 0 ||
	     (current->intent_id[0] != '\0' && strcmp(current->intent_id, d->intent_id) != 0)))
		return PAYMENT_OK; /* stale: that intent succeeded, or is not the current attempt's */
	if (current->decline_code[0] != '\0')
		return PAYMENT_OK; /* the outcome is held */
	if (current->succeeded)
		return PAYMENT_REJ_WRONG_STATE;
	emit(out, PAYMENT_DECLINED, d);
	return PAYMENT_OK;
}

static payment_verdict decide_refund_request(const payment_state *s, const payment_data *d,
                                             payment_events *out)
{
	int i = charge_index(s, d->intent_id, true);
	unsigned n = payment_refund_key_number(d->refund_key, d->intent_id);
	const payment_charge *c;

	if (i < 0)
		return PAYMENT_REJ_UNKNOWN_CHARGE;
	c = &s->charges[i];
	if (c->refund_key[0] != '\0' && strcmp(c->refund_key, d->refund_key) == 0)
		return PAYMENT_OK; /* the claim is held: the caller replays this key */
	if (c->refund == PAYMENT_REFUND_STATUS_PENDING)
		return PAYMENT_REJ_IN_PROGRESS;
	if (c->refund == PAYMENT_REFUND_STATUS_REFUNDED)
		return PAYMENT_REJ_WRONG_STATE;
	if (n != c->refund_tries + 1)
		return PAYMENT_REJ_INVALID;
	if (n > PAYMENT_REFUND_TRIES_MAX)
		return PAYMENT_REJ_LIMIT;
	emit(out, PAYMENT_REFUND_REQUESTED, d);
	return PAYMENT_OK;
}

static payment_verdict decide_refund(const payment_state *s, const payment_data *d, payment_events *out)
{
	int i = charge_index(s, d->intent_id, true);

	if (i < 0)
		return PAYMENT_REJ_UNKNOWN_CHARGE;
	if (s->charges[i].refund == PAYMENT_REFUND_STATUS_REFUNDED)
		return PAYMENT_OK; /* the outcome is held */
	emit(out, PAYMENT_REFUNDED, d);
	return PAYMENT_OK;
}

static payment_verdict decide_refund_failure(const payment_state *s, const payment_data *d,
                                             payment_events *out)
{
	int i = charge_index(s, d->intent_id, true);
	const payment_charge *c;

	if (i < 0)
		return PAYMENT_REJ_UNKNOWN_CHARGE;
	c = &s->charges[i];
	if (c->refund == PAYMENT_REFUND_STATUS_REFUNDED ||
	    (c->refund == PAYMENT_REFUND_STATUS_FAILED && strcmp(c->refund_key, d->refund_key) == 0))
		return PAYMENT_OK; /* the outcome is held, or a later one */
	if (c->refund != PAYMENT_REFUND_STATUS_PENDING || strcmp(c->refund_key, d->refund_key) != 0)
		return PAYMENT_REJ_WRONG_STATE;
	emit(out, PAYMENT_REFUND_FAILED, d);
	return PAYMENT_OK;
}

payment_verdict payment_decide(const payment_state *s, const payment_command *c, payment_events *out)
{
	const payment_data *d = &c->data;

	out->count = 0;
	if (payment_command_type(c->kind) == NULL || !data_valid(c->kind, d, true))
		return PAYMENT_REJ_INVALID;
	switch (c->kind) {
	case PAYMENT_RECORD_ATTEMPT:
		return decide_attempt(s, d, out);
	case PAYMENT_RECORD_ACTION_REQUIRED:
		return decide_action(s, d, out);
	case PAYMENT_RECORD_SUCCESS:
		return decide_success(s, d, out);
	case PAYMENT_RECORD_DECLINE:
		return decide_decline(s, d, out);
	case PAYMENT_RECORD_REFUND_REQUEST:
		return decide_refund_request(s, d, out);
	case PAYMENT_RECORD_REFUND_FAILURE:
		return decide_refund_failure(s, d, out);
	default:
		return decide_refund(s, d, out);
	}
}

/* ---- evolve ---- */

/* The status the attempts and charges of s say (payment.h). */
static payment_status derived_status(const payment_state *s)
{
	const payment_attempt *current = payment_current_attempt(s);

	if (s->charge_count > 0)
		return PAYMENT_STATUS_SUCCEEDED;
	if (current == NULL)
		return PAYMENT_STATUS_NONE;
	if (current->decline_code[0] != '\0')
		return PAYMENT_STATUS_DECLINED;
	if (current->action_url[0] != '\0')
		return PAYMENT_STATUS_REQUIRES_ACTION;
	return PAYMENT_STATUS_ATTEMPTED;
}

static bool evolve_attempted(payment_state *s, const payment_data *d)
{
	const payment_attempt *current = payment_current_attempt(s);
	payment_attempt *a;

	if ((current != NULL && payment_attempt_open(current)) || s->charge_count > 0 ||
	    s->attempt_count >= PAYMENT_ATTEMPTS_MAX)
		return false;
	a = &s->attempts[s->attempt_count++];
	memset(a, 0, sizeof *a);
	memcpy(a->provider_key, d->provider_key, sizeof a->provider_key);
	memcpy(a->payment_method, d->payment_method, sizeof a->payment_method);
	a->amount_cents = d->amount_cents;
	memcpy(a->currency, d->currency, sizeof a->currency);
	memcpy(a->brand, d->brand, sizeof a->brand);
	memcpy(a->last4, d->last4, sizeof a->last4);
	a->at_ms = d->time_ms;
	return true;
}

static bool evolve_action(payment_state *s, const payment_data *d)
{
	int i = target_attempt(s, d->intent_id);
	payment_attempt *a;

	if (i < 0 || s->attempts[i].action_url[0] != '\0' || !payment_attempt_open(&s->attempts[i]))
		return false;
	a = &s->attempts[i];
	memcpy(a->intent_id, d->intent_id, sizeof a->intent_id);
	memcpy(a->action_url, d->url, sizeof a->action_url);
	a->action_at_ms = d->time_ms;
	return true;
}

static bool evolve_succeeded(payment_state *s, const payment_data *d)
{
	bool legacy = d->intent_id[0] == '\0';
	payment_attempt *current = s->attempt_count > 0 ? &s->attempts[s->attempt_count - 1] : NULL;
	int i;
	payment_charge *c;

	if (s->charge_count >= PAYMENT_CHARGES_MAX || current == NULL)
		return false;
	if (legacy) { /* before ADR 028: the open attempt's charge, or a second charge */
		if (charge_index(s, d->charge_id, false) >= 0 ||
		    (s->charge_count == 0 && !payment_attempt_open(current)))
			return false;
		i = s->charge_count == 0 ? (int)s->attempt_count - 1 : -1;
	} else {
		if (charge_index(s, d->intent_id, true) >= 0)
			return false;
		i = target_attempt(s, d->intent_id);
	}
	if (i >= 0) {
		memcpy(s->attempts[i].intent_id, d->intent_id, sizeof s->attempts[i].intent_id);
		s->attempts[i].succeeded = true;
	}
	c = &s->charges[s->charge_count++];
	memset(c, 0, sizeof *c);
	memcpy(c->intent_id, d->intent_id, sizeof c->intent_id);
	memcpy(c->charge_id, d->charge_id, sizeof c->charge_id);
	c->at_ms = d->time_ms;
	return true;
}

static bool evolve_declined(payment_state *s, const payment_data *d)
{
	payment_attempt *a = s->attempt_count > 0 ? &s->attempts[s->attempt_count - 1] : NULL;

	if (a == NULL || !payment_attempt_open(a))
		return false;
	memcpy(a->decline_code, d->code, sizeof a->decline_code);
	a->declined_at_ms = d->time_ms;
	return true;
}

static bool evolve_refund_requested(payment_state *s, const payment_data *d)
{
	int i = charge_index(s, d->intent_id, true);
	unsigned n = payment_refund_key_number(d->refund_key, d->intent_id);
	payment_charge *c;

	if (i < 0 || n <= s->charges[i].refund_tries ||
	    (s->charges[i].refund != PAYMENT_REFUND_STATUS_NONE &&
	     s->charges[i].refund != PAYMENT_REFUND_STATUS_FAILED))
		return false;
	c = &s->charges[i];
	c->refund = PAYMENT_REFUND_STATUS_PENDING;
	c->refund_tries = n;
	memcpy(c->refund_key, d->refund_key, sizeof c->refund_key);
	c->refund_amount_cents = d->amount_cents;
	c->refund_requested_at_ms = d->time_ms;
	memset(c->refund_id, 0, sizeof c->refund_id); /* a new request: no outcome yet */
	memset(c->refund_reason, 0, sizeof c->refund_reason);
	c->refund_done_at_ms = 0;
	return true;
}

static bool evolve_refunded(payment_state *s, const payment_data *d)
{
	bool legacy = d->intent_id[0] == '\0';
	int i = legacy ? charge_index(s, d->charge_id, false) : charge_index(s, d->intent_id, true);
	payment_charge *c;

	if (i < 0 || s->charges[i].refund == PAYMENT_REFUND_STATUS_REFUNDED)
		return false;
	c = &s->charges[i];
	c->refund = PAYMENT_REFUND_STATUS_REFUNDED;
	memcpy(c->refund_id, d->refund_id, sizeof c->refund_id);
	if (d->amount_cents > 0)
		c->refund_amount_cents = d->amount_cents;
	if (legacy)
		memcpy(c->refund_reason, d->reason, sizeof c->refund_reason);
	else
		memset(c->refund_reason, 0, sizeof c->refund_reason);
	c->refund_done_at_ms = d->time_ms;
	return true;
}

static bool evolve_refund_failed(payment_state *s, const payment_data *d)
{
	int i = charge_index(s, d->intent_id, true);
	payment_charge *c;

	if (i < 0 || s->charges[i].refund != PAYMENT_REFUND_STATUS_PENDING ||
	    strcmp(s->charges[i].refund_key, d->refund_key) != 0)
		return false;
	c = &s->charges[i];
	c->refund = PAYMENT_REFUND_STATUS_FAILED;
	memcpy(c->refund_reason, d->reason, sizeof c->refund_reason);
	c->refund_done_at_ms = d->time_ms;
	return true;
}

bool payment_evolve(payment_state *s, const payment_event *e)
{
	bool changed = false;

	switch (e->kind) {
	case PAYMENT_ATTEMPTED:
		changed = evolve_attempted(s, &e->data);
		break;
	case PAYMENT_ACTION_REQUIRED:
		changed = evolve_action(s, &e->data);
		break;
	case PAYMENT_SUCCEEDED:
		changed = evolve_succeeded(s, &e->data);
		break;
	case PAYMENT_DECLINED:
		changed = evolve_declined(s, &e->data);
		break;
	case PAYMENT_REFUND_REQUESTED:
		changed = evolve_refund_requested(s, &e->data);
		break;
	case PAYMENT_REFUNDED:
		changed = evolve_refunded(s, &e->data);
		break;
	case PAYMENT_REFUND_FAILED:
		changed = evolve_refund_failed(s, &e->data);
		break;
	}
	if (changed)
		s->status = derived_status(s);
	return changed;
}

/* ---- payload codecs ---- */

static orn_rc encode_fields(mp_writer *w, unsigned fields, const payment_data *d)
{
	return kind_fields_encode(w, &fields_of, fields, d);
}

static orn_rc decode_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out)
{
	return kind_fields_read_entry(r, &fields_of, fields, seen, out);
}

orn_rc payment_command_encode(mp_writer *w, const payment_command *c)
{
	if (payment_command_type(c->kind) == NULL)
		return ORN_EINVAL;
	return encode_fields(w, command_shapes[c->kind].fields, &c->data);
}

orn_rc payment_command_decode(const char *type, const uint8_t *payload, size_t len, payment_command *out)
{
	int shape = KIND_TYPE_INDEX(command_shapes, type);
	orn_rc rc;

	if (shape < 0)
		return ORN_EINVAL;
	if ((rc = kind_decode_map(payload, len, command_shapes[shape].fields, decode_entry, &out->data,
	                          sizeof out->data)) != ORN_OK)
		return rc;
	out->kind = (payment_command_kind)shape;
	return ORN_OK;
}

orn_rc payment_event_encode(mp_writer *w, const payment_event *e)
{
	unsigned fields;

	if (payment_event_type(e->kind) == NULL)
		return ORN_EINVAL;
	fields = event_shapes[e->kind].fields;
	if (e->kind == PAYMENT_REFUNDED && e->data.intent_id[0] == '\0') /* a refund before ADR 028 */
		fields = LEGACY_REFUND | FIELD_REFUND_ID | FIELD_AT;
	return encode_fields(w, fields, &e->data);
}

orn_rc payment_event_decode(const char *type, const uint8_t *payload, size_t len, payment_event *out)
{
	int shape = KIND_TYPE_INDEX(event_shapes, type);
	const payload_shape *p;
	orn_rc rc;

	if (shape < 0)
		return ORN_EINVAL;
	p = &event_shapes[shape];
	if ((rc = kind_decode_map_optional(payload, len, p->fields & ~p->optional, p->optional, decode_entry,
	                                   &out->data, sizeof out->data, NULL)) != ORN_OK)
		return rc;
	if (!data_valid(shape, &out->data, false))
		return ORN_EDECODE;
	out->kind = (payment_event_kind)shape;
	return ORN_OK;
}

/* ---- snapshot, restore, view ---- */

/* Writes [type, payload] for one event. */
static orn_rc write_event(mp_writer *w, const payment_event *e)
{
	mp_write_array(w, 2);
	mp_write_cstr(w, payment_event_type(e->kind));
	return payment_event_encode(w, e);
}

/* Sets e to an event of kind at time_ms, zeroed but for those. */
static void reset_event(payment_event *e, payment_event_kind kind, int64_t time_ms)
{
	memset(e, 0, sizeof *e);
	e->kind = kind;
	e->data.time_ms = time_ms;
}

/* The events of one attempt: its claim, its action, its decline. *count
 * counts them; with w NULL nothing is written. */
static orn_rc write_attempt(mp_writer *w, const payment_attempt *a, payment_event *e, uint32_t *count)
{
	payment_data *d = &e->data;
	orn_rc rc = ORN_OK;

	*count += 1 + (a->action_url[0] != '\0') + (a->decline_code[0] != '\0');
	if (w == NULL)
		return ORN_OK;
	reset_event(e, PAYMENT_ATTEMPTED, a->at_ms);
	memcpy(d->provider_key, a->provider_key, sizeof d->provider_key);
	memcpy(d->payment_method, a->payment_method, sizeof d->payment_method);
	d->amount_cents = a->amount_cents;
	memcpy(d->currency, a->currency, sizeof d->currency);
	memcpy(d->brand, a->brand, sizeof d->brand);
	memcpy(d->last4, a->last4, sizeof d->last4);
	rc = write_event(w, e);
	if (rc == ORN_OK && a->action_url[0] != '\0') {
		reset_event(e, PAYMENT_ACTION_REQUIRED, a->action_at_ms);
		memcpy(d->intent_id, a->intent_id, sizeof d->intent_id);
		memcpy(d->url, a->action_url, sizeof d->url);
		rc = write_event(w, e);
	}
	if (rc == ORN_OK && a->decline_code[0] != '\0') {
		reset_event(e, PAYMENT_DECLINED, a->declined_at_ms);
		memcpy(d->code, a->decline_code, sizeof d->code);
		rc = write_event(w, e);
	}
	return rc;
}

/* The events of one charge: its success, its last refund request, the
 * refund's outcome. As write_attempt. */
static orn_rc write_charge(mp_writer *w, const payment_charge *c, payment_event *e, uint32_t *count)
{
	payment_data *d = &e->data;
	bool requested = c->refund_tries > 0, done = c->refund >= PAYMENT_REFUND_STATUS_REFUNDED;
	orn_rc rc;

	*count += 1 + requested + done;
	if (w == NULL)
		return ORN_OK;
	reset_event(e, PAYMENT_SUCCEEDED, c->at_ms);
	memcpy(d->intent_id, c->intent_id, sizeof d->intent_id);
	memcpy(d->charge_id, c->charge_id, sizeof d->charge_id);
	rc = write_event(w, e);
	if (rc == ORN_OK && requested) {
		reset_event(e, PAYMENT_REFUND_REQUESTED, c->refund_requested_at_ms);
		memcpy(d->intent_id, c->intent_id, sizeof d->intent_id);
		memcpy(d->refund_key, c->refund_key, sizeof d->refund_key);
		d->amount_cents = c->refund_amount_cents;
		rc = write_event(w, e);
	}
	if (rc == ORN_OK && done) {
		bool failed = c->refund == PAYMENT_REFUND_STATUS_FAILED;
		reset_event(e, failed ? PAYMENT_REFUND_FAILED : PAYMENT_REFUNDED, c->refund_done_at_ms);
		memcpy(d->intent_id, c->intent_id, sizeof d->intent_id);
		memcpy(d->charge_id, c->charge_id, sizeof d->charge_id);
		memcpy(d->refund_key, c->refund_key, sizeof d->refund_key);
		memcpy(d->refund_id, c->refund_id, sizeof d->refund_id);
		memcpy(d->reason, c->refund_reason, sizeof d->reason);
		d->amount_cents = c->refund_amount_cents;
		rc = write_event(w, e);
	}
	return rc;
}

/* Snapshot: [[type, payload], ...]: each attempt's events, then each
 * charge's. Replayed in this order, every charge binds to the attempt it
 * bound to (payment.h: a charge binds by intent, or to the last attempt,
 * after which no attempt can follow). */
static orn_rc payment_snapshot(const void *state, mp_writer *w)
{
	const payment_state *s = state;
	payment_event *e = malloc(sizeof *e);
	uint32_t count = 0;
	orn_rc rc = ORN_OK;

	if (e == NULL)
		return ORN_ENOMEM;
	for (size_t i = 0; i < s->attempt_count; i++)
		(void)write_attempt(NULL, &s->attempts[i], e, &count);
	for (size_t i = 0; i < s->charge_count; i++)
		(void)write_charge(NULL, &s->charges[i], e, &count);
	mp_write_array(w, count);
	for (size_t i = 0; rc == ORN_OK && i < s->attempt_count; i++) {
		/* a copy: GCC 12 with -fsanitize=undefined cannot tell &s->attempts[i]
		 * from NULL and warns on the memcpy calls (-Warray-bounds) */
		const payment_attempt copy = s->attempts[i];
		rc = write_attempt(w, &copy, e, &count);
	}
	for (size_t i = 0; rc == ORN_OK && i < s->charge_count; i++) {
		const payment_charge copy = s->charges[i]; /* see above */
		rc = write_charge(w, &copy, e, &count);
	}
	free(e);
	return rc == ORN_OK ? mp_writer_status(w) : rc;
}

static void write_str_or_nil(mp_writer *w, const char *key, const char *value)
{
	mp_write_cstr(w, key);
	mp_write_cstr(w, value[0] != '\0' ? value : NULL);
}

static void write_time_or_nil(mp_writer *w, const char *key, bool set, int64_t ms)
{
	mp_write_cstr(w, key);
	if (set)
		mp_write_int(w, ms);
	else
		mp_write_nil(w);
}

static void write_attempts(mp_writer *w, const payment_state *s)
{
	mp_write_array(w, (uint32_t)s->attempt_count);
	for (size_t i = 0; i < s->attempt_count; i++) {
		const payment_attempt *a = &s->attempts[i];
		mp_write_map(w, 11);
		mp_write_cstr(w, "provider_key");
		mp_write_cstr(w, a->provider_key);
		write_str_or_nil(w, "payment_method", a->payment_method);
		mp_write_cstr(w, "amount_cents");
		mp_write_int(w, a->amount_cents);
		mp_write_cstr(w, "currency");
		mp_write_cstr(w, a->currency);
		write_str_or_nil(w, "brand", a->brand);
		write_str_or_nil(w, "last4", a->last4);
		mp_write_cstr(w, "at_ms");
		mp_write_int(w, a->at_ms);
		write_str_or_nil(w, "intent_id", a->intent_id);
		write_str_or_nil(w, "action_url", a->action_url);
		write_str_or_nil(w, "decline_code", a->decline_code);
		write_time_or_nil(w, "declined_at_ms", a->decline_code[0] != '\0', a->declined_at_ms);
	}
}

static void write_charges(mp_writer *w, const payment_state *s)
{
	mp_write_array(w, (uint32_t)s->charge_count);
	for (size_t i = 0; i < s->charge_count; i++) {
		const payment_charge *c = &s->charges[i];
		mp_write_map(w, 9);
		write_str_or_nil(w, "intent_id", c->intent_id);
		write_str_or_nil(w, "charge_id", c->charge_id);
		mp_write_cstr(w, "at_ms");
		mp_write_int(w, c->at_ms);
		mp_write_cstr(w, "refunded");
		mp_write_bool(w, c->refund == PAYMENT_REFUND_STATUS_REFUNDED);
		mp_write_cstr(w, "refund");
		mp_write_cstr(w, payment_refund_status_name(c->refund));
		write_str_or_nil(w, "refund_key", c->refund_key);
		mp_write_cstr(w, "refund_amount_cents");
		mp_write_int(w, c->refund_amount_cents);
		write_str_or_nil(w, "refund_id", c->refund_id);
		write_str_or_nil(w, "refund_reason", c->refund_reason);
	}
}

/* View: see payment.h. */
static orn_rc payment_view(const void *state, mp_writer *w)
{
	const payment_state *s = state;

	mp_write_map(w, 4);
	mp_write_cstr(w, "status");
	mp_write_cstr(w, payment_status_name(s->status));
	mp_write_cstr(w, "attempt_count");
	mp_write_int(w, (int64_t)s->attempt_count);
	mp_write_cstr(w, "attempts");
	write_attempts(w, s);
	mp_write_cstr(w, "charges");
	write_charges(w, s);
	return mp_writer_status(w);
}

/* ---- the kind table ---- */

/* A fixed text per verdict: it names no id, key or amount. */
static void describe_rejection(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	const payment_state *s = state;
	const payment_command *c = command;

	if (verdict == PAYMENT_REJ_WRONG_STATE)
		snprintf(detail, cap, "%s is not accepted while the payment is %s",
		         payment_command_type(c->kind), payment_status_name(s->status));
	else if (verdict == PAYMENT_REJ_IN_PROGRESS)
		snprintf(detail, cap, "another attempt or refund of this payment is still open");
	else if (verdict == PAYMENT_REJ_UNKNOWN_CHARGE)
		snprintf(detail, cap, "the intent is not a succeeded intent of this payment");
	else if (verdict == PAYMENT_REJ_LIMIT)
		snprintf(detail, cap, "the payment has reached its limit of attempts, charges or refunds");
	else
		snprintf(detail, cap, "%s: a field is out of bounds (see the payment contract)",
		         payment_command_type(c->kind));
}

/* payment_kind_decide and payment_kind_evolve: the adapter every aggregate shares (kind.h). */
KIND_ADAPTER(payment, PAYLOAD_SCHEMA, describe_rejection, payment_kind_apply);

/* payment_restore: the snapshot is the history, every event a transition (kind.h). */
KIND_RESTORE_TRANSITIONS(payment);

const act_kind payment_kind = {
        KIND_MEMBERS(payment, PAYMENT_AGGREGATE, PAYMENT_SNAPSHOT_SCHEMA),
        .snapshot = payment_snapshot,
        .restore = payment_restore,
        .view = payment_view,
        .copyable = true,
};
