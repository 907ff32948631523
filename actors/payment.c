/* payment.c — the payment aggregate: a pure decider (decide, evolve), the
 * msgpack codecs of its command and event payloads, and the kind table the
 * actor runtime serves (see payment.h for the rules).
 *
 * Every payload is a subset of the keys of payment_data, described once in a
 * table (key, bit, kind of value, offset, size), so one encoder and one
 * strict decoder serve commands and events. The snapshot is the event list
 * that rebuilds the state, and restore replays it through the event decoder
 * and evolve, so a snapshot can only produce a state the stream could. */
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
};

static const struct {
	const char *key;
	unsigned field;
	bool integer;
	size_t offset;
	size_t cap; /* strings: buffer size */
} field_table[] = {
        {"amount_cents", FIELD_AMOUNT, true, offsetof(payment_data, amount_cents), 0},
        {"currency", FIELD_CURRENCY, false, offsetof(payment_data, currency), PAYMENT_CURRENCY_MAX},
        {"brand", FIELD_BRAND, false, offsetof(payment_data, brand), PAYMENT_BRAND_MAX},
        {"last4", FIELD_LAST4, false, offsetof(payment_data, last4), PAYMENT_LAST4_MAX},
        {"provider_key", FIELD_PROVIDER_KEY, false, offsetof(payment_data, provider_key), PAYMENT_KEY_MAX},
        {"charge_id", FIELD_CHARGE_ID, false, offsetof(payment_data, charge_id), PAYMENT_ID_MAX},
        {"refund_id", FIELD_REFUND_ID, false, offsetof(payment_data, refund_id), PAYMENT_ID_MAX},
        {"code", FIELD_CODE, false, offsetof(payment_data, code), PAYMENT_TEXT_MAX},
        {"reason", FIELD_REASON, false, offsetof(payment_data, reason), PAYMENT_TEXT_MAX},
        {"now_ms", FIELD_NOW, true, offsetof(payment_data, time_ms), 0},
        {"at_ms", FIELD_AT, true, offsetof(payment_data, time_ms), 0},
};

typedef struct payload_shape {
	const char *type;
	unsigned fields;
} payload_shape;

#define ATTEMPT_FIELDS (FIELD_AMOUNT | FIELD_CURRENCY | FIELD_BRAND | FIELD_LAST4 | FIELD_PROVIDER_KEY)
#define REFUND_FIELDS  (FIELD_CHARGE_ID | FIELD_REFUND_ID | FIELD_REASON)

static const payload_shape command_shapes[] = {
        [PAYMENT_RECORD_ATTEMPT] = {PAYMENT_CMD_RECORD_ATTEMPT, ATTEMPT_FIELDS | FIELD_NOW},
        [PAYMENT_RECORD_SUCCESS] = {PAYMENT_CMD_RECORD_SUCCESS, FIELD_CHARGE_ID | FIELD_NOW},
        [PAYMENT_RECORD_DECLINE] = {PAYMENT_CMD_RECORD_DECLINE, FIELD_CODE | FIELD_NOW},
        [PAYMENT_RECORD_REFUND] = {PAYMENT_CMD_RECORD_REFUND, REFUND_FIELDS | FIELD_NOW},
};

static const payload_shape event_shapes[] = {
        [PAYMENT_ATTEMPTED] = {PAYMENT_EV_ATTEMPTED, ATTEMPT_FIELDS | FIELD_AT},
        [PAYMENT_SUCCEEDED] = {PAYMENT_EV_SUCCEEDED, FIELD_CHARGE_ID | FIELD_AT},
        [PAYMENT_DECLINED] = {PAYMENT_EV_DECLINED, FIELD_CODE | FIELD_AT},
        [PAYMENT_REFUNDED] = {PAYMENT_EV_REFUNDED, REFUND_FIELDS | FIELD_AT},
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

_Static_assert(PAYMENT_RECORD_ATTEMPT == (int)PAYMENT_ATTEMPTED &&
                       PAYMENT_RECORD_SUCCESS == (int)PAYMENT_SUCCEEDED &&
                       PAYMENT_RECORD_DECLINE == (int)PAYMENT_DECLINED &&
                       PAYMENT_RECORD_REFUND == (int)PAYMENT_REFUNDED,
               "a command kind and the kind of its event share their value");

/* True if the fields of kind (a command or event kind: they share their
 * order) in d are within bounds. */
static bool data_valid(int kind, const payment_data *d)
{
	if (!time_valid(d->time_ms))
		return false;
	switch (kind) {
	case PAYMENT_RECORD_ATTEMPT:
		return d->amount_cents >= 1 && d->amount_cents <= PAYMENT_AMOUNT_MAX &&
		       currency_valid(d->currency) && brand_valid(d->brand) && last4_valid(d->last4) &&
		       token_valid(d->provider_key, PAYMENT_KEY_MAX);
	case PAYMENT_RECORD_SUCCESS:
		return token_valid(d->charge_id, PAYMENT_ID_MAX);
	case PAYMENT_RECORD_DECLINE:
		return text_field_valid(d->code, PAYMENT_TEXT_MAX);
	default:
		return token_valid(d->charge_id, PAYMENT_ID_MAX) &&
		       token_valid(d->refund_id, PAYMENT_ID_MAX) &&
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

/* Index of the charge with that id in s, or -1. */
static int charge_index(const payment_state *s, const char *charge_id)
{
	for (size_t i = 0; i < s->charge_count; i++)
		if (strcmp(s->charges[i].charge_id, charge_id) == 0)
			return (int)i;
	return -1;
}

const payment_charge *payment_find_charge(const payment_state *s, const char *charge_id)
{
	int i = charge_index(s, charge_id);

	return i >= 0 ? &s->charges[i] : NULL;
}

const char *payment_status_name(payment_status status)
{
	return (size_t)status < ORN_ARRAY_LEN(status_names) ? status_names[status] : NULL;
}

const char *payment_verdict_code(payment_verdict v)
{
	return (size_t)v < ORN_ARRAY_LEN(verdict_codes) ? verdict_codes[v] : "invalid";
}

const char *payment_command_type(payment_command_kind kind)
{
	return (size_t)kind < ORN_ARRAY_LEN(command_shapes) ? command_shapes[kind].type : NULL;
}

const char *payment_event_type(payment_event_kind kind)
{
	return (size_t)kind < ORN_ARRAY_LEN(event_shapes) ? event_shapes[kind].type : NULL;
}

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
	if (s->status == PAYMENT_STATUS_ATTEMPTED)
		return PAYMENT_REJ_IN_PROGRESS;
	if (s->status == PAYMENT_STATUS_SUCCEEDED)
		return PAYMENT_REJ_WRONG_STATE;
	if (s->attempt_count >= PAYMENT_ATTEMPTS_MAX)
		return PAYMENT_REJ_LIMIT;
	emit(out, PAYMENT_ATTEMPTED, d);
	return PAYMENT_OK;
}

static payment_verdict decide_success(const payment_state *s, const payment_data *d, payment_events *out)
{
	if (s->status == PAYMENT_STATUS_SUCCEEDED) {
		if (charge_index(s, d->charge_id) >= 0)
			return PAYMENT_OK; /* redelivered */
		if (s->charge_count >= PAYMENT_CHARGES_MAX)
			return PAYMENT_REJ_LIMIT;
	} else if (s->status != PAYMENT_STATUS_ATTEMPTED) {
		return PAYMENT_REJ_WRONG_STATE;
	}
	emit(out, PAYMENT_SUCCEEDED, d);
	return PAYMENT_OK;
}

static payment_verdict decide_decline(const payment_state *s, const payment_data *d, payment_events *out)
{
	if (s->status == PAYMENT_STATUS_DECLINED &&
	    strcmp(payment_current_attempt(s)->decline_code, d->code) == 0)
		return PAYMENT_OK; /* redelivered */
	if (s->status != PAYMENT_STATUS_ATTEMPTED)
		return PAYMENT_REJ_WRONG_STATE;
	emit(out, PAYMENT_DECLINED, d);
	return PAYMENT_OK;
}

static payment_verdict decide_refund(const payment_state *s, const payment_data *d, payment_events *out)
{
	const payment_charge *charge = payment_find_charge(s, d->charge_id);

	if (charge == NULL)
		return PAYMENT_REJ_UNKNOWN_CHARGE;
	if (charge->refunded)
		return strcmp(charge->refund_id, d->refund_id) == 0 ? PAYMENT_OK /* redelivered */
		                                                    : PAYMENT_REJ_WRONG_STATE;
	emit(out, PAYMENT_REFUNDED, d);
	return PAYMENT_OK;
}

payment_verdict payment_decide(const payment_state *s, const payment_command *c, payment_events *out)
{
	const payment_data *d = &c->data;

	out->count = 0;
	if (payment_command_type(c->kind) == NULL || !data_valid(c->kind, d))
		return PAYMENT_REJ_INVALID;
	switch (c->kind) {
	case PAYMENT_RECORD_ATTEMPT:
		return decide_attempt(s, d, out);
	case PAYMENT_RECORD_SUCCESS:
		return decide_success(s, d, out);
	case PAYMENT_RECORD_DECLINE:
		return decide_decline(s, d, out);
	default:
		return decide_refund(s, d, out);
	}
}

/* ---- evolve ---- */

static bool evolve_attempted(payment_state *s, const payment_data *d)
{
	payment_attempt *a;

	if ((s->status != PAYMENT_STATUS_NONE && s->status != PAYMENT_STATUS_DECLINED) ||
	    s->attempt_count >= PAYMENT_ATTEMPTS_MAX)
		return false;
	a = &s->attempts[s->attempt_count++];
	memset(a, 0, sizeof *a);
	memcpy(a->provider_key, d->provider_key, sizeof a->provider_key);
	a->amount_cents = d->amount_cents;
	memcpy(a->currency, d->currency, sizeof a->currency);
	memcpy(a->brand, d->brand, sizeof a->brand);
	memcpy(a->last4, d->last4, sizeof a->last4);
	a->at_ms = d->time_ms;
	s->status = PAYMENT_STATUS_ATTEMPTED;
	return true;
}

static bool evolve_succeeded(payment_state *s, const payment_data *d)
{
	payment_charge *c;

	if (s->status != PAYMENT_STATUS_ATTEMPTED &&
	    (s->status != PAYMENT_STATUS_SUCCEEDED || charge_index(s, d->charge_id) >= 0))
		return false;
	if (s->charge_count >= PAYMENT_CHARGES_MAX)
		return false;
	c = &s->charges[s->charge_count++];
	memset(c, 0, sizeof *c);
	memcpy(c->charge_id, d->charge_id, sizeof c->charge_id);
	c->at_ms = d->time_ms;
	s->status = PAYMENT_STATUS_SUCCEEDED;
	return true;
}

static bool evolve_declined(payment_state *s, const payment_data *d)
{
	payment_attempt *a;

	if (s->status != PAYMENT_STATUS_ATTEMPTED)
		return false;
	a = &s->attempts[s->attempt_count - 1];
	memcpy(a->decline_code, d->code, sizeof a->decline_code);
	a->declined_at_ms = d->time_ms;
	s->status = PAYMENT_STATUS_DECLINED;
	return true;
}

static bool evolve_refunded(payment_state *s, const payment_data *d)
{
	int i = charge_index(s, d->charge_id);
	payment_charge *c;

	if (i < 0 || s->charges[i].refunded)
		return false;
	c = &s->charges[i];
	c->refunded = true;
	memcpy(c->refund_id, d->refund_id, sizeof c->refund_id);
	memcpy(c->refund_reason, d->reason, sizeof c->refund_reason);
	c->refunded_at_ms = d->time_ms;
	return true;
}

bool payment_evolve(payment_state *s, const payment_event *e)
{
	switch (e->kind) {
	case PAYMENT_ATTEMPTED:
		return evolve_attempted(s, &e->data);
	case PAYMENT_SUCCEEDED:
		return evolve_succeeded(s, &e->data);
	case PAYMENT_DECLINED:
		return evolve_declined(s, &e->data);
	case PAYMENT_REFUNDED:
		return evolve_refunded(s, &e->data);
	}
	return false;
}

/* ---- payload codecs ---- */

/* True if every string field of fields in d is terminated. */
static bool encodable(const payment_data *d, unsigned fields)
{
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_table); i++)
		if ((fields & field_table[i].field) != 0 && !field_table[i].integer &&
		    strnlen((const char *)d + field_table[i].offset, field_table[i].cap) >=
		            field_table[i].cap)
			return false;
	return true;
}

static orn_rc encode_fields(mp_writer *w, unsigned fields, const payment_data *d)
{
	uint32_t count = 0;

	if (!encodable(d, fields))
		return ORN_EINVAL;
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_table); i++)
		count += (fields & field_table[i].field) != 0;
	mp_write_map(w, count);
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_table); i++) {
		const void *value = (const char *)d + field_table[i].offset;
		if ((fields & field_table[i].field) == 0)
			continue;
		mp_write_cstr(w, field_table[i].key);
		if (field_table[i].integer)
			mp_write_int(w, *(const int64_t *)value);
		else
			mp_write_cstr(w, value);
	}
	return mp_writer_status(w);
}

static orn_rc decode_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out_)
{
	payment_data *out = out_;
	const char *key;
	uint32_t len;
	size_t index = 0;
	unsigned field = 0;
	void *value;
	orn_rc rc;

	if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
		return rc;
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_table); i++)
		if (mp_str_eq(key, len, field_table[i].key) && (fields & field_table[i].field) != 0) {
			field = field_table[i].field;
			index = i;
		}
	if ((*seen & field) != 0)
		return ORN_EDECODE;
	*seen |= field;
	if (field == 0)
		return mp_skip(r);
	value = (char *)out + field_table[index].offset;
	if (field_table[index].integer)
		return mp_read_int(r, value);
	return mp_read_cstr(r, value, field_table[index].cap);
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
	if (payment_event_type(e->kind) == NULL)
		return ORN_EINVAL;
	return encode_fields(w, event_shapes[e->kind].fields, &e->data);
}

orn_rc payment_event_decode(const char *type, const uint8_t *payload, size_t len, payment_event *out)
{
	int shape = KIND_TYPE_INDEX(event_shapes, type);
	orn_rc rc;

	if (shape < 0)
		return ORN_EINVAL;
	if ((rc = kind_decode_map(payload, len, event_shapes[shape].fields, decode_entry, &out->data,
	                          sizeof out->data)) != ORN_OK)
		return rc;
	if (!data_valid(shape, &out->data))
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

/* Writes the events that rebuild the attempts of s (each attempt, then its
 * decline if it was declined: all but an open or succeeded last one) into w,
 * using e as scratch. */
static orn_rc write_attempt_events(mp_writer *w, const payment_state *s, payment_event *e)
{
	payment_data *d = &e->data;
	orn_rc rc = ORN_OK;

	for (size_t i = 0; rc == ORN_OK && i < s->attempt_count; i++) {
		/* a copy: GCC 12 with -fsanitize=undefined cannot tell &s->attempts[i]
		 * from NULL and warns on the memcpy calls (-Warray-bounds) */
		const payment_attempt copy = s->attempts[i], *a = &copy;
		reset_event(e, PAYMENT_ATTEMPTED, a->at_ms);
		memcpy(d->provider_key, a->provider_key, sizeof d->provider_key);
		d->amount_cents = a->amount_cents;
		memcpy(d->currency, a->currency, sizeof d->currency);
		memcpy(d->brand, a->brand, sizeof d->brand);
		memcpy(d->last4, a->last4, sizeof d->last4);
		rc = write_event(w, e);
		if (rc != ORN_OK || a->decline_code[0] == '\0')
			continue;
		reset_event(e, PAYMENT_DECLINED, a->declined_at_ms);
		memcpy(d->code, a->decline_code, sizeof d->code);
		rc = write_event(w, e);
	}
	return rc;
}

/* Writes the events that rebuild the charges of s (each charge's success,
 * then its refund) into w, using e as scratch. */
static orn_rc write_charge_events(mp_writer *w, const payment_state *s, payment_event *e)
{
	payment_data *d = &e->data;
	orn_rc rc = ORN_OK;

	for (size_t i = 0; rc == ORN_OK && i < s->charge_count; i++) {
		const payment_charge copy = s->charges[i], *c = &copy; /* see above */
		reset_event(e, PAYMENT_SUCCEEDED, c->at_ms);
		memcpy(d->charge_id, c->charge_id, sizeof d->charge_id);
		rc = write_event(w, e);
		if (rc != ORN_OK || !c->refunded)
			continue;
		reset_event(e, PAYMENT_REFUNDED, c->refunded_at_ms);
		memcpy(d->charge_id, c->charge_id, sizeof d->charge_id);
		memcpy(d->refund_id, c->refund_id, sizeof d->refund_id);
		memcpy(d->reason, c->refund_reason, sizeof d->reason);
		rc = write_event(w, e);
	}
	return rc;
}

/* Snapshot: [[type, payload], ...]: each attempt and its decline, then each
 * charge's success and its refund. */
static orn_rc payment_snapshot(const void *state, mp_writer *w)
{
	const payment_state *s = state;
	payment_event *e = malloc(sizeof *e);
	size_t count = s->attempt_count + s->charge_count;
	orn_rc rc;

	if (e == NULL)
		return ORN_ENOMEM;
	for (size_t i = 0; i < s->attempt_count; i++)
		count += s->attempts[i].decline_code[0] != '\0';
	for (size_t i = 0; i < s->charge_count; i++)
		count += s->charges[i].refunded;
	mp_write_array(w, (uint32_t)count);
	rc = write_attempt_events(w, s, e);
	if (rc == ORN_OK)
		rc = write_charge_events(w, s, e);
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
		mp_write_map(w, 8);
		mp_write_cstr(w, "provider_key");
		mp_write_cstr(w, a->provider_key);
		mp_write_cstr(w, "amount_cents");
		mp_write_int(w, a->amount_cents);
		mp_write_cstr(w, "currency");
		mp_write_cstr(w, a->currency);
		mp_write_cstr(w, "brand");
		mp_write_cstr(w, a->brand);
		mp_write_cstr(w, "last4");
		mp_write_cstr(w, a->last4);
		mp_write_cstr(w, "at_ms");
		mp_write_int(w, a->at_ms);
		write_str_or_nil(w, "decline_code", a->decline_code);
		write_time_or_nil(w, "declined_at_ms", a->decline_code[0] != '\0', a->declined_at_ms);
	}
}

static void write_charges(mp_writer *w, const payment_state *s)
{
	mp_write_array(w, (uint32_t)s->charge_count);
	for (size_t i = 0; i < s->charge_count; i++) {
		const payment_charge *c = &s->charges[i];
		mp_write_map(w, 6);
		mp_write_cstr(w, "charge_id");
		mp_write_cstr(w, c->charge_id);
		mp_write_cstr(w, "at_ms");
		mp_write_int(w, c->at_ms);
		mp_write_cstr(w, "refunded");
		mp_write_bool(w, c->refunded);
		write_str_or_nil(w, "refund_id", c->refund_id);
		write_str_or_nil(w, "refund_reason", c->refund_reason);
		write_time_or_nil(w, "refunded_at_ms", c->refunded, c->refunded_at_ms);
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

static void payment_kind_init(void *state)
{
	payment_state_init(state);
}

static void payment_kind_dispose(void *state)
{
	payment_state_init(state);
}

/* A fixed text per verdict: it names no id, key or amount. */
static void describe_rejection(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	const payment_state *s = state;
	const payment_command *c = command;

	if (verdict == PAYMENT_REJ_WRONG_STATE)
		snprintf(detail, cap, "%s is not accepted while the payment is %s",
		         payment_command_type(c->kind), payment_status_name(s->status));
	else if (verdict == PAYMENT_REJ_IN_PROGRESS)
		snprintf(detail, cap, "another attempt of this payment is still open");
	else if (verdict == PAYMENT_REJ_UNKNOWN_CHARGE)
		snprintf(detail, cap, "the charge is not a succeeded charge of this payment");
	else if (verdict == PAYMENT_REJ_LIMIT)
		snprintf(detail, cap, "the payment has reached its limit of attempts or charges");
	else
		snprintf(detail, cap, "%s: a field is out of bounds (see the payment contract)",
		         payment_command_type(c->kind));
}

/* kind_codec.evolve: payment_evolve; an event that is no transition changes nothing, not an error. */
static orn_rc apply_event(void *state, const void *event)
{
	(void)payment_evolve(state, event);
	return ORN_OK;
}

/* payment_kind_decide and payment_kind_evolve: the adapter every aggregate shares (kind.h). */
KIND_ADAPTER(payment, PAYLOAD_SCHEMA, describe_rejection, apply_event);

/* kind_restore_history's apply: payment_evolve, which refuses an event that is no transition. */
static bool restore_event(void *state, const void *event)
{
	return payment_evolve(state, event);
}

/* Restores by replaying the snapshot's events into a fresh state, copied in
 * only when whole; every event must be a transition. */
static orn_rc payment_restore(void *state, const uint8_t *buf, size_t len)
{
	return kind_restore_history(&payment_codec, sizeof(payment_state), restore_event, state, buf, len);
}

const act_kind payment_kind = {
        .aggregate = PAYMENT_AGGREGATE,
        .state_size = sizeof(payment_state),
        .snapshot_schema = PAYMENT_SNAPSHOT_SCHEMA,
        .init = payment_kind_init,
        .dispose = payment_kind_dispose,
        .decide = payment_kind_decide,
        .evolve = payment_kind_evolve,
        .snapshot = payment_snapshot,
        .restore = payment_restore,
        .view = payment_view,
        .copyable = true,
};
