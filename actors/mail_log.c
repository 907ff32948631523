/* mail_log.c — the mail aggregate (see mail_log.h): decide, evolve, the
 * payload codecs, the id and the kind table of RequestResend. */
#include "mail_log.h"
#include "kind.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {"pending", "delivered", "failed"};
static const char *const event_types[] = {MAIL_LOG_EV_ATTEMPT_FAILED, MAIL_LOG_EV_DELIVERED,
                                          MAIL_LOG_EV_FAILED, MAIL_LOG_EV_RESEND_REQUESTED,
                                          MAIL_LOG_EV_CLAIMED};
static const char *const command_types[] = {MAIL_LOG_CMD_RECORD_SENT, MAIL_LOG_CMD_RECORD_FAILED,
                                            MAIL_LOG_CMD_REQUEST_RESEND, MAIL_LOG_CMD_CLAIM};

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

static const char *const verdict_codes[] = {
        [MAIL_LOG_OK] = "",
        [MAIL_LOG_REJ_SETTLED] = "settled",
        [MAIL_LOG_REJ_INVALID] = "invalid",
        [MAIL_LOG_REJ_NOT_FOUND] = "not_found",
        [MAIL_LOG_REJ_NOT_RESENDABLE] = "not_resendable",
        [MAIL_LOG_REJ_TOO_SOON] = "too_soon",
        [MAIL_LOG_REJ_TOO_MANY] = "too_many",
        [MAIL_LOG_REJ_CLAIMED] = "claimed",
};

KIND_NAMES(mail_log, verdict_codes, command_types, event_types);

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
	/* an account's email (ADR 031, kind "account_*") names neither */
	bool account =
	        !order && !product &&
	        strncmp(s->kind, MAIL_LOG_KIND_ACCOUNT_PREFIX, strlen(MAIL_LOG_KIND_ACCOUNT_PREFIX)) == 0;
	return s->kind[0] != '\0' && s->recipient[0] != '\0' && (order != product || account) &&
	       (!order || orn_id_valid(s->order_id)) && (!product || orn_id_valid(s->product_id));
}

static bool by_valid(const char *by)
{
	return strcmp(by, "customer") == 0 || strcmp(by, "admin") == 0;
}

/* An instance id: 1..MAIL_LOG_BY_MAX-1 printable ASCII bytes, no space. */
static bool claimant_valid(const char *by)
{
	if (by[0] == '\0')
		return false;
	for (const char *c = by; *c != '\0'; c++)
		if (*c <= ' ' || *c > '~')
			return false;
	return true;
}

/* ClaimAttempt: the attempt is the claimant's for lease_ms (see mail_log.h). */
static mail_log_verdict decide_claim(const mail_log_state *s, const mail_log_command *c, mail_log_events *out)
{
	if (!claimant_valid(c->by) || c->lease_ms <= 0)
		return MAIL_LOG_REJ_INVALID;
	if (c->generation != s->generation)
		return MAIL_LOG_REJ_SETTLED; /* another sending's: that one is settled, or not ours */
	bool held = s->claimed_by[0] != '\0' && s->claim_until_ms > c->at_ms;
	if (held && strcmp(s->claimed_by, c->by) != 0)
		return MAIL_LOG_REJ_CLAIMED;
	if (held)
		return MAIL_LOG_OK; /* its own claim, asked again */
	mail_log_event *e = &out->items[out->count++];
	e->kind = MAIL_LOG_CLAIMED;
	e->subject = c->subject;
	e->attempt = s->attempts + 1;
	e->at_ms = c->at_ms;
	e->until_ms = c->at_ms + c->lease_ms;
	snprintf(e->by, sizeof e->by, "%s", c->by);
	return MAIL_LOG_OK;
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
	if (!subject_valid(&c->subject))
		return MAIL_LOG_REJ_INVALID;
	if (c->kind == MAIL_LOG_CLAIM)
		return decide_claim(s, c, out);
	if (c->max_attempts == 0)
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
		s->claimed_by[0] = '\0';
		s->claim_until_ms = 0;
		return;
	}
	if (s->status != MAIL_LOG_STATUS_PENDING)
		return;
	s->exists = true;
	s->subject = e->subject;
	s->updated_at_ms = e->at_ms;
	if (e->kind == MAIL_LOG_CLAIMED) {
		memcpy(s->claimed_by, e->by, sizeof s->claimed_by);
		s->claim_until_ms = e->until_ms;
		return;
	}
	s->claimed_by[0] = '\0'; /* an outcome ends the claim */
	s->claim_until_ms = 0;
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
	case MAIL_LOG_CLAIMED:
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
	bool product = e->subject.product_id[0] != '\0', claimed = e->kind == MAIL_LOG_CLAIMED;
	bool by = e->kind == MAIL_LOG_RESEND_REQUESTED || claimed;
	bool error = e->kind != MAIL_LOG_DELIVERED && !by;
	if (mail_log_event_type(e->kind) == NULL)
		return ORN_EINVAL;
	mp_write_map(w, 5u + product + error + by + claimed);
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
	if (by) {
		mp_write_cstr(w, "by");
		mp_write_cstr(w, e->by);
	}
	if (claimed) {
		mp_write_cstr(w, "until");
		mp_write_int(w, e->until_ms);
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
	F_BY = 128,
	F_UNTIL = 256,
	F_MAX_ATTEMPTS = 512,
	F_DEADLINE = 1024,
	F_LEASE = 2048,
	F_GENERATION = 4096
};

/* Reads the value of key into e; *seen collects the fields read. */
static orn_rc decode_entry(mp_reader *r, const char *key, uint32_t key_len, mail_log_event *e, unsigned *seen)
{
	const char *error_key = e->kind == MAIL_LOG_FAILED ? "last_error" : "error";
	bool resend = e->kind == MAIL_LOG_RESEND_REQUESTED, claimed = e->kind == MAIL_LOG_CLAIMED;
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
	} else if (e->kind != MAIL_LOG_DELIVERED && !resend && !claimed &&
	           mp_str_eq(key, key_len, error_key)) {
		field = F_ERROR;
		rc = mp_read_cstr(r, e->error, sizeof e->error);
	} else if ((resend || claimed) && mp_str_eq(key, key_len, "by")) {
		field = F_BY;
		rc = mp_read_cstr(r, e->by, sizeof e->by);
		if (rc == ORN_OK && (resend ? !by_valid(e->by) : !claimant_valid(e->by)))
			rc = ORN_EDECODE;
	} else if (claimed && mp_str_eq(key, key_len, "until")) {
		field = F_UNTIL;
		rc = mp_read_int(r, &e->until_ms);
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
	else if (e.kind == MAIL_LOG_CLAIMED)
		required |= F_BY | F_UNTIL;
	else if (e.kind != MAIL_LOG_DELIVERED)
		required |= F_ERROR;
	if (mp_reader_remaining(&r) != 0 || (seen & required) != required || !subject_valid(&e.subject))
		return ORN_EDECODE;
	*out = e;
	return ORN_OK;
}

/* ---- commands: RequestResend on the bus, the others in the mail role ---- */

/* The subject's fields of a command (every one but RequestResend). */
static void write_subject(mp_writer *w, const mail_log_subject *s)
{
	mp_write_cstr(w, "order_id");
	mp_write_cstr(w, s->order_id);
	if (s->product_id[0] != '\0') {
		mp_write_cstr(w, "product_id");
		mp_write_cstr(w, s->product_id);
	}
	mp_write_cstr(w, "kind");
	mp_write_cstr(w, s->kind);
	mp_write_cstr(w, "recipient");
	mp_write_cstr(w, s->recipient);
}

orn_rc mail_log_command_encode(mp_writer *w, const mail_log_command *c)
{
	uint32_t subject = 3u + (c->subject.product_id[0] != '\0');
	switch (c->kind) {
	case MAIL_LOG_REQUEST_RESEND:
		mp_write_map(w, 2);
		break;
	case MAIL_LOG_CLAIM:
		mp_write_map(w, subject + 4);
		write_subject(w, &c->subject);
		mp_write_cstr(w, "by");
		mp_write_cstr(w, c->by);
		mp_write_cstr(w, "lease");
		mp_write_int(w, c->lease_ms);
		mp_write_cstr(w, "generation");
		mp_write_uint(w, c->generation);
		break;
	case MAIL_LOG_RECORD_SENT:
	case MAIL_LOG_RECORD_FAILED:
		mp_write_map(w, subject + (c->kind == MAIL_LOG_RECORD_FAILED ? 4 : 2));
		write_subject(w, &c->subject);
		mp_write_cstr(w, "max_attempts");
		mp_write_uint(w, c->max_attempts);
		if (c->kind == MAIL_LOG_RECORD_FAILED) {
			mp_write_cstr(w, "deadline");
			mp_write_int(w, c->deadline_ms);
			mp_write_cstr(w, "error");
			mp_write_cstr(w, c->error);
		}
		break;
	default:
		return ORN_EINVAL;
	}
	if (c->kind == MAIL_LOG_REQUEST_RESEND) {
		mp_write_cstr(w, "by");
		mp_write_cstr(w, c->by);
	}
	mp_write_cstr(w, "at");
	mp_write_int(w, c->at_ms);
	return mp_writer_status(w);
}

/* One key/value of a command into the mail_log_command out (kind_decode_map's entry). */
static orn_rc command_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out)
{
	mail_log_command *c = out;
	const char *key;
	uint32_t key_len;
	uint64_t n = 0;
	orn_rc rc = mp_read_str(r, &key, &key_len);
	static const struct {
		const char *key;
		unsigned field;
	} keys[] = {{"order_id", F_ORDER},
	            {"product_id", F_PRODUCT},
	            {"kind", F_KIND},
	            {"recipient", F_RECIPIENT},
	            {"by", F_BY},
	            {"at", F_AT},
	            {"max_attempts", F_MAX_ATTEMPTS},
	            {"deadline", F_DEADLINE},
	            {"error", F_ERROR},
	            {"lease", F_LEASE},
	            {"generation", F_GENERATION}};
	unsigned field = 0;
	for (size_t i = 0; rc == ORN_OK && i < ORN_ARRAY_LEN(keys) && field == 0; i++)
		if (mp_str_eq(key, key_len, keys[i].key) && (fields & keys[i].field) != 0)
			field = keys[i].field;
	if (rc != ORN_OK || (*seen & field) != 0)
		return ORN_EDECODE;
	*seen |= field;
	switch (field) {
	case F_ORDER:
		return mp_read_cstr(r, c->subject.order_id, sizeof c->subject.order_id);
	case F_PRODUCT:
		return mp_read_cstr(r, c->subject.product_id, sizeof c->subject.product_id);
	case F_KIND:
		return mp_read_cstr(r, c->subject.kind, sizeof c->subject.kind);
	case F_RECIPIENT:
		return mp_read_cstr(r, c->subject.recipient, sizeof c->subject.recipient);
	case F_BY:
		return mp_read_cstr(r, c->by, sizeof c->by);
	case F_AT:
		return mp_read_int(r, &c->at_ms);
	case F_MAX_ATTEMPTS:
	case F_GENERATION:
		if ((rc = mp_read_uint(r, &n)) == ORN_OK && n > UINT32_MAX)
			rc = ORN_EDECODE;
		*(field == F_MAX_ATTEMPTS ? &c->max_attempts : &c->generation) = (uint32_t)n;
		return rc;
	case F_DEADLINE:
		return mp_read_int(r, &c->deadline_ms);
	case F_ERROR:
		if ((rc = mp_read_str(r, &key, &key_len)) != ORN_OK)
			return rc;
		if (key_len >= MAIL_LOG_ERROR_MAX)
			return ORN_EDECODE;
		memcpy(c->error, key, key_len);
		c->error[key_len] = '\0';
		return ORN_OK;
	case F_LEASE:
		return mp_read_int(r, &c->lease_ms);
	}
	return mp_skip(r);
}

orn_rc mail_log_command_decode(const char *type, const uint8_t *payload, size_t len, mail_log_command *out)
{
	static const unsigned subject = F_ORDER | F_KIND | F_RECIPIENT;
	static const unsigned required[] = {
	        [MAIL_LOG_RECORD_SENT] = subject | F_MAX_ATTEMPTS | F_AT,
	        [MAIL_LOG_RECORD_FAILED] = subject | F_MAX_ATTEMPTS | F_DEADLINE | F_ERROR | F_AT,
	        [MAIL_LOG_REQUEST_RESEND] = F_BY | F_AT,
	        [MAIL_LOG_CLAIM] = subject | F_BY | F_LEASE | F_GENERATION | F_AT,
	};
	mail_log_command c;
	int kind = -1;
	for (size_t i = 0; type != NULL && i < ORN_ARRAY_LEN(command_types); i++)
		if (strcmp(type, command_types[i]) == 0)
			kind = (int)i;
	if (kind < 0)
		return ORN_EINVAL;
	unsigned optional = kind == MAIL_LOG_REQUEST_RESEND ? 0 : F_PRODUCT;
	if (kind_decode_map_optional(payload, len, required[kind], optional, command_entry, &c, sizeof c,
	                             NULL) != ORN_OK)
		return ORN_EDECODE;
	c.kind = (mail_log_command_kind)kind;
	*out = c;
	return ORN_OK;
}

/* ---- the kind table ---- */

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

KIND_ADAPTER(mail_log, MAIL_LOG_SCHEMA, describe_rejection, mail_log_kind_apply);

/* The bus takes RequestResend only: the attempts are the mail role's own. */
static orn_rc bus_decide(const void *state, const env_envelope *cmd, act_decision *d)
{
	if (strcmp(cmd->type, MAIL_LOG_CMD_REQUEST_RESEND) != 0) {
		act_decision_reject(d, mail_log_verdict_code(MAIL_LOG_REJ_INVALID),
		                    "not a command of the bus");
		return ORN_OK;
	}
	return mail_log_kind_decide(state, cmd, d);
}

const act_kind mail_log_writer_kind = {
        KIND_MEMBERS(mail_log, MAIL_LOG_AGGREGATE, MAIL_LOG_SCHEMA),
        .copyable = true,
};

const act_kind mail_log_kind = {
        .aggregate = MAIL_LOG_AGGREGATE,
        .state_size = sizeof(mail_log_state),
        .snapshot_schema = MAIL_LOG_SCHEMA,
        .init = mail_log_kind_reset,
        .dispose = mail_log_kind_reset,
        .decide = bus_decide,
        .evolve = mail_log_kind_evolve,
        .copyable = true,
};
