/* mail_log.c — the mail aggregate (see mail_log.h): decide, evolve, the
 * payload codecs, the id and the kind table of RequestResend. */
#include "mail_log.h"
#include "kind.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {"pending", "delivered", "failed"};
static const char *const event_types[] = {MAIL_LOG_EV_ATTEMPT_FAILED, MAIL_LOG_EV_DELIVERED,
                                          MAIL_LOG_EV_FAILED, MAIL_LOG_EV_RESEND_REQUESTED};

const char *mail_log_status_name(mail_log_status s)
{
	return (unsigned)s < ORN_ARRAY_LEN(status_names) ? status_names[s] : NULL;
}

bool mail_log_status_parse(const char *name, mail_log_status *out)
{
	for (size_t i = 0; name != NULL && i < ORN_ARRAY_LEN(status_names); i++)
		if (strcmp(name, status_names[i]) == 0) {
			*out = (mail_log_status)i;
			return true;
		}
	return false;
}

const char *mail_log_event_type(mail_log_event_kind kind)
{
	return (unsigned)kind < ORN_ARRAY_LEN(event_types) ? event_types[kind] : NULL;
}

const char *mail_log_verdict_code(mail_log_verdict v)
{
	switch (v) {
	case MAIL_LOG_OK:
		return "";
	case MAIL_LOG_REJ_SETTLED:
		return "settled";
	case MAIL_LOG_REJ_INVALID:
		return "invalid";
	case MAIL_LOG_REJ_NOT_FOUND:
		return "not_found";
	case MAIL_LOG_REJ_NOT_RESENDABLE:
		return "not_resendable";
	case MAIL_LOG_REJ_TOO_SOON:
		return "too_soon";
	case MAIL_LOG_REJ_TOO_MANY:
		return "too_many";
	}
	return "invalid";
}

void mail_log_state_init(mail_log_state *s)
{
	memset(s, 0, sizeof *s);
}

void mail_log_error_set(char out[MAIL_LOG_ERROR_MAX], const char *text)
{
	size_t n = text != NULL ? strlen(text) : 0;
	if (n > MAIL_LOG_ERROR_MAX - 1) {
		n = MAIL_LOG_ERROR_MAX - 1;
		while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
			n--; /* do not cut a UTF-8 sequence */
	}
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7F ? ' ' : text[i];
	out[n] = '\0';
}

static bool subject_valid(const mail_log_subject *s)
{
	bool order = s->order_id[0] != '\0', product = s->product_id[0] != '\0';
	return s->kind[0] != '\0' && s->recipient[0] != '\0' && order != product &&
	       (!order || orn_id_valid(s->order_id)) && (!product || orn_id_valid(s->product_id));
}

static bool by_valid(const char *by)
{
	return strcmp(by, "customer") == 0 || strcmp(by, "admin") == 0;
}

/* RequestResend: the log opens again for one more generation (see mail_log.h). */
static mail_log_verdict decide_resend(const mail_log_state *s, const mail_log_command *c,
                                      mail_log_events *out)
{
	if (!by_valid(c->by))
		return MAIL_LOG_REJ_INVALID;
	if (!s->exists)
		return MAIL_LOG_REJ_NOT_FOUND;
	if (s->subject.product_id[0] != '\0')
		return MAIL_LOG_REJ_NOT_RESENDABLE;
	if (s->status == MAIL_LOG_STATUS_PENDING)
		return MAIL_LOG_OK; /* being sent: nothing to add */
	if (s->generation >= MAIL_LOG_RESENDS_MAX)
		return MAIL_LOG_REJ_TOO_MANY;
	if (s->resend_requested_at_ms > 0 &&
	    c->at_ms - s->resend_requested_at_ms < MAIL_LOG_RESEND_INTERVAL_MS)
		return MAIL_LOG_REJ_TOO_SOON;
	mail_log_event *e = &out->items[out->count++];
	e->kind = MAIL_LOG_RESEND_REQUESTED;
	e->subject = s->subject;
	e->attempt = s->generation + 1;
	e->at_ms = c->at_ms;
	snprintf(e->by, sizeof e->by, "%s", c->by);
	return MAIL_LOG_OK;
}

mail_log_verdict mail_log_decide(const mail_log_state *s, const mail_log_command *c, mail_log_events *out)
{
	memset(out, 0, sizeof *out);
	if (c->kind == MAIL_LOG_REQUEST_RESEND)
		return decide_resend(s, c, out);
	if (s->status != MAIL_LOG_STATUS_PENDING)
		return MAIL_LOG_REJ_SETTLED;
	if (!subject_valid(&c->subject) || c->max_attempts == 0)
		return MAIL_LOG_REJ_INVALID;
	mail_log_event *e = &out->items[out->count++];
	e->subject = c->subject;
	e->attempt = s->attempts + 1;
	e->at_ms = c->at_ms;
	if (c->kind == MAIL_LOG_RECORD_SENT) {
		e->kind = MAIL_LOG_DELIVERED;
		return MAIL_LOG_OK;
	}
	e->kind = MAIL_LOG_ATTEMPT_FAILED;
	mail_log_error_set(e->error, c->error);
	if (c->deadline_ms > 0 ? c->at_ms >= c->deadline_ms : e->attempt >= c->max_attempts) {
		mail_log_event *f = &out->items[out->count++];
		*f = *e;
		f->kind = MAIL_LOG_FAILED;
	}
	return MAIL_LOG_OK;
}

void mail_log_evolve(mail_log_state *s, const mail_log_event *e)
{
	if (e->kind == MAIL_LOG_RESEND_REQUESTED) {
		if (!s->exists || e->attempt != s->generation + 1)
			return; /* only the next generation opens the log */
		s->generation = e->attempt;
		s->status = MAIL_LOG_STATUS_PENDING;
		s->attempts = 0;
		s->last_error[0] = '\0';
		s->delivered_at_ms = 0;
		s->resend_requested_at_ms = s->updated_at_ms = e->at_ms;
		return;
	}
	if (s->status != MAIL_LOG_STATUS_PENDING)
		return;
	s->exists = true;
	s->subject = e->subject;
	s->updated_at_ms = e->at_ms;
	switch (e->kind) {
	case MAIL_LOG_ATTEMPT_FAILED:
		s->attempts = e->attempt > s->attempts ? e->attempt : s->attempts;
		memcpy(s->last_error, e->error, sizeof s->last_error);
		break;
	case MAIL_LOG_DELIVERED:
		s->attempts = e->attempt > s->attempts ? e->attempt : s->attempts;
		s->status = MAIL_LOG_STATUS_DELIVERED;
		s->delivered_at_ms = e->at_ms;
		break;
	case MAIL_LOG_FAILED:
		s->attempts = e->attempt > s->attempts ? e->attempt : s->attempts;
		memcpy(s->last_error, e->error, sizeof s->last_error);
		s->status = MAIL_LOG_STATUS_FAILED;
		break;
	case MAIL_LOG_RESEND_REQUESTED:
		break;
	}
}

orn_rc mail_log_id(char out[MAIL_LOG_ID_MAX], const char *key)
{
	unsigned char hash[16];
	out[0] = '\0';
	if (key == NULL || key[0] == '\0')
		return ORN_EINVAL;
	if (sodium_init() < 0)
		return ORN_EINTERNAL;
	crypto_generichash(hash, sizeof hash, (const unsigned char *)key, strlen(key), NULL, 0);
	out[0] = 'm';
	sodium_bin2hex(out + 1, MAIL_LOG_ID_MAX - 1, hash, sizeof hash);
	return ORN_OK;
}

/* ---- codec ---- */

/* The key of the attempt number: each event names it for what it counts. */
static const char *attempt_key(mail_log_event_kind kind)
{
	return kind == MAIL_LOG_FAILED             ? "attempts"
	       : kind == MAIL_LOG_RESEND_REQUESTED ? "generation"
	                                           : "attempt";
}

orn_rc mail_log_event_encode(mp_writer *w, const mail_log_event *e)
{
	bool product = e->subject.product_id[0] != '\0', resend = e->kind == MAIL_LOG_RESEND_REQUESTED;
	bool error = e->kind != MAIL_LOG_DELIVERED && !resend;
	if (mail_log_event_type(e->kind) == NULL)
		return ORN_EINVAL;
	mp_write_map(w, 5u + product + error + resend);
	mp_write_cstr(w, "order_id");
	mp_write_cstr(w, e->subject.order_id);
	if (product) {
		mp_write_cstr(w, "product_id");
		mp_write_cstr(w, e->subject.product_id);
	}
	mp_write_cstr(w, "kind");
	mp_write_cstr(w, e->subject.kind);
	mp_write_cstr(w, "recipient");
	mp_write_cstr(w, e->subject.recipient);
	mp_write_cstr(w, attempt_key(e->kind));
	mp_write_uint(w, e->attempt);
	if (resend) {
		mp_write_cstr(w, "by");
		mp_write_cstr(w, e->by);
	}
	if (error) {
		mp_write_cstr(w, e->kind == MAIL_LOG_FAILED ? "last_error" : "error");
		mp_write_cstr(w, e->error);
	}
	mp_write_cstr(w, "at");
	mp_write_int(w, e->at_ms);
	return mp_writer_status(w);
}

enum {
	F_ORDER = 1,
	F_PRODUCT = 2,
	F_KIND = 4,
	F_RECIPIENT = 8,
	F_ATTEMPT = 16,
	F_ERROR = 32,
	F_AT = 64,
	F_BY = 128
};

/* Reads the value of key into e; *seen collects the fields read. */
static orn_rc decode_entry(mp_reader *r, const char *key, uint32_t key_len, mail_log_event *e, unsigned *seen)
{
	const char *error_key = e->kind == MAIL_LOG_FAILED ? "last_error" : "error";
	bool resend = e->kind == MAIL_LOG_RESEND_REQUESTED;
	unsigned field = 0;
	uint64_t n = 0;
	orn_rc rc;
	if (mp_str_eq(key, key_len, "order_id")) {
		field = F_ORDER;
		rc = mp_read_cstr(r, e->subject.order_id, sizeof e->subject.order_id);
	} else if (mp_str_eq(key, key_len, "product_id")) {
		field = F_PRODUCT;
		rc = mp_read_cstr(r, e->subject.product_id, sizeof e->subject.product_id);
	} else if (mp_str_eq(key, key_len, "kind")) {
		field = F_KIND;
		rc = mp_read_cstr(r, e->subject.kind, sizeof e->subject.kind);
	} else if (mp_str_eq(key, key_len, "recipient")) {
		field = F_RECIPIENT;
		rc = mp_read_cstr(r, e->subject.recipient, sizeof e->subject.recipient);
	} else if (mp_str_eq(key, key_len, attempt_key(e->kind))) {
		field = F_ATTEMPT;
		rc = mp_read_uint(r, &n);
		if (rc == ORN_OK && (n == 0 || n > UINT32_MAX))
			rc = ORN_EDECODE;
		e->attempt = (uint32_t)n;
	} else if (e->kind != MAIL_LOG_DELIVERED && !resend && mp_str_eq(key, key_len, error_key)) {
		field = F_ERROR;
		rc = mp_read_cstr(r, e->error, sizeof e->error);
	} else if (resend && mp_str_eq(key, key_len, "by")) {
		field = F_BY;
		rc = mp_read_cstr(r, e->by, sizeof e->by);
		if (rc == ORN_OK && !by_valid(e->by))
			rc = ORN_EDECODE;
	} else if (mp_str_eq(key, key_len, "at")) {
		field = F_AT;
		rc = mp_read_int(r, &e->at_ms);
	} else {
		return mp_skip(r) == ORN_OK ? ORN_OK : ORN_EDECODE;
	}
	if (rc != ORN_OK || (*seen & field) != 0)
		return ORN_EDECODE;
	*seen |= field;
	return ORN_OK;
}

orn_rc mail_log_event_decode(const char *type, const uint8_t *payload, size_t len, mail_log_event *out)
{
	mp_reader r;
	mail_log_event e;
	uint32_t count = 0;
	unsigned seen = 0;
	int kind = -1;
	for (size_t i = 0; type != NULL && i < ORN_ARRAY_LEN(event_types); i++)
		if (strcmp(type, event_types[i]) == 0)
			kind = (int)i;
	if (kind < 0)
		return ORN_EINVAL;
	memset(&e, 0, sizeof e);
	e.kind = (mail_log_event_kind)kind;
	mp_reader_init(&r, payload, len);
	if (mp_read_map(&r, &count) != ORN_OK)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++) {
		const char *key;
		uint32_t key_len;
		if (mp_read_str(&r, &key, &key_len) != ORN_OK ||
		    decode_entry(&r, key, key_len, &e, &seen) != ORN_OK)
			return ORN_EDECODE;
	}
	unsigned required = F_ORDER | F_KIND | F_RECIPIENT | F_ATTEMPT | F_AT;
	if (e.kind == MAIL_LOG_RESEND_REQUESTED)
		required |= F_BY;
	else if (e.kind != MAIL_LOG_DELIVERED)
		required |= F_ERROR;
	if (mp_reader_remaining(&r) != 0 || (seen & required) != required || !subject_valid(&e.subject))
		return ORN_EDECODE;
	*out = e;
	return ORN_OK;
}

/* ---- the command on the bus: RequestResend {by, at} ---- */

orn_rc mail_log_command_encode(mp_writer *w, const mail_log_command *c)
{
	if (c->kind != MAIL_LOG_REQUEST_RESEND)
		return ORN_EINVAL;
	mp_write_map(w, 2);
	mp_write_cstr(w, "by");
	mp_write_cstr(w, c->by);
	mp_write_cstr(w, "at");
	mp_write_int(w, c->at_ms);
	return mp_writer_status(w);
}

/* One key/value of RequestResend into the mail_log_command out (kind_decode_map's entry). */
static orn_rc command_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out)
{
	mail_log_command *c = out;
	const char *key;
	uint32_t key_len;
	orn_rc rc = mp_read_str(r, &key, &key_len);
	unsigned field = rc != ORN_OK                    ? 0
	                 : mp_str_eq(key, key_len, "by") ? F_BY
	                 : mp_str_eq(key, key_len, "at") ? F_AT
	                                                 : 0;
	(void)fields;
	if (rc != ORN_OK || (*seen & field) != 0)
		return ORN_EDECODE;
	*seen |= field;
	if (field == F_BY)
		return mp_read_cstr(r, c->by, sizeof c->by);
	return field == F_AT ? mp_read_int(r, &c->at_ms) : mp_skip(r);
}

orn_rc mail_log_command_decode(const char *type, const uint8_t *payload, size_t len, mail_log_command *out)
{
	mail_log_command c;
	if (type == NULL || strcmp(type, MAIL_LOG_CMD_REQUEST_RESEND) != 0)
		return ORN_EINVAL;
	if (kind_decode_map(payload, len, F_BY | F_AT, command_entry, &c, sizeof c) != ORN_OK)
		return ORN_EDECODE;
	c.kind = MAIL_LOG_REQUEST_RESEND;
	*out = c;
	return ORN_OK;
}

/* ---- the kind table ---- */

static void mail_log_kind_init(void *state)
{
	mail_log_state_init(state);
}

static void mail_log_kind_dispose(void *state)
{
	mail_log_state_init(state);
}

static void describe_rejection(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	(void)state;
	(void)command;
	switch ((mail_log_verdict)verdict) {
	case MAIL_LOG_REJ_NOT_FOUND:
		snprintf(detail, cap, "this email was never sent");
		break;
	case MAIL_LOG_REJ_NOT_RESENDABLE:
		snprintf(detail, cap, "low-stock alerts are not sent again");
		break;
	case MAIL_LOG_REJ_TOO_SOON:
		snprintf(detail, cap, "this email was asked for less than a minute ago");
		break;
	case MAIL_LOG_REJ_TOO_MANY:
		snprintf(detail, cap, "this email was sent again %d times already", MAIL_LOG_RESENDS_MAX);
		break;
	default:
		snprintf(detail, cap, "the request is not valid");
		break;
	}
}

static orn_rc apply_event(void *state, const void *event)
{
	mail_log_evolve(state, event);
	return ORN_OK;
}

KIND_ADAPTER(mail_log, MAIL_LOG_SCHEMA, describe_rejection, apply_event);

const act_kind mail_log_kind = {
        .aggregate = MAIL_LOG_AGGREGATE,
        .state_size = sizeof(mail_log_state),
        .snapshot_schema = MAIL_LOG_SCHEMA,
        .init = mail_log_kind_init,
        .dispose = mail_log_kind_dispose,
        .decide = mail_log_kind_decide,
        .evolve = mail_log_kind_evolve,
};
