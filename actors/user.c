/* user.c — the user aggregate: email normalization and the aggregate key, a
 * pure decider (decide, evolve), the msgpack codecs of its payloads and the
 * kind table the actor runtime serves.
 *
 * The key hash is BLAKE2b from libsodium (crypto_generichash), keyed with a
 * fixed, public domain-separation key: the address itself is in the
 * UserRegistered payload, so a secret key would hide nothing from a reader
 * of the stream, and one that could change would break uniqueness. Changing
 * EMAIL_KEY_DOMAIN re-keys every user: never do it. */
#include "user.h"
#include "kind.h"
#include "text.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

/* Version of every command and event payload written and accepted here. */
#define PAYLOAD_SCHEMA 1
/* BLAKE2b key of the email hash (16 bytes, crypto_generichash_KEYBYTES_MIN). */
#define EMAIL_KEY_DOMAIN "orion.user.email"
#define EMAIL_HASH_BYTES 16

/* The keys a payload may carry, as bits of a set. */
enum payload_field {
	FIELD_USER_ID = 1u << 0,
	FIELD_EMAIL = 1u << 1,
	FIELD_NAME = 1u << 2,
	FIELD_PASSWORD_HASH = 1u << 3,
	FIELD_ROLE = 1u << 4,
	FIELDS_ALL = (1u << 5) - 1, /* the account */
	FIELD_JTI = 1u << 5,
	FIELD_EXPIRES_AT = 1u << 6,
	FIELD_TOKEN_VERSION = 1u << 7,
	FIELD_KID = 1u << 9,
	FIELD_VERIFIED = 1u << 11,
	FIELD_REQUEST_ID = 1u << 12,
	FIELD_TOKEN_HASH = 1u << 13,
	FIELD_AT = 1u << 14,
};
/* An emailed link's request, as RegisterUser (unverified) and the events carry it. */
#define FIELDS_REQUEST (FIELD_REQUEST_ID | FIELD_TOKEN_HASH | FIELD_EXPIRES_AT)
/* The fields that hold personal data: sealed tokens since ADR 027. */
#define FIELDS_PERSONAL (FIELD_EMAIL | FIELD_NAME | FIELD_PASSWORD_HASH)
/* Snapshot keys beyond the fields. */
#define SNAPSHOT_EXISTS  (1u << 8)
#define SNAPSHOT_ERASURE (1u << 10)
/* What a snapshot holds (token_version, kid and erasure may be missing:
 * older snapshots). */
#define SNAPSHOT_FIELDS (FIELDS_ALL | FIELD_TOKEN_VERSION | FIELD_KID | FIELD_VERIFIED)
/* Snapshot keys of the requests and the mail budget (ADR 031); absent in
 * older snapshots. */
#define SNAPSHOT_VERIFICATION (1u << 15)
#define SNAPSHOT_RESET        (1u << 16)
#define SNAPSHOT_BUDGET       (1u << 17)
#define SNAPSHOT_OPTIONAL                                                                                    \
	(FIELD_TOKEN_VERSION | FIELD_KID | FIELD_VERIFIED | SNAPSHOT_ERASURE | SNAPSHOT_VERIFICATION |       \
	 SNAPSHOT_RESET | SNAPSHOT_BUDGET)

/* The user fields: payload key, bit, value, where it lives in user_fields,
 * its buffer size (texts) and the rule a rejection quotes. The own values:
 * "role" (a name, or nil for none) and "verified" (a bool on the wire,
 * user_fields.unverified inside). */
static const kind_field field_table[] = {
        {"user_id", FIELD_USER_ID, KIND_TEXT, offsetof(user_fields, user_id), USER_ID_MAX,
         "1..64 characters of [A-Za-z0-9_-]"},
        {"email", FIELD_EMAIL, KIND_TEXT, offsetof(user_fields, email), USER_SEALED_MAX,
         "a normalized address of RFC 5321 syntax: an ASCII dot-atom, '@', a domain of LDH labels (IDN as "
         "xn--)"},
        {"name", FIELD_NAME, KIND_TEXT, offsetof(user_fields, name), USER_SEALED_MAX,
         "1..100 bytes of UTF-8 text without control characters"},
        {"password_hash", FIELD_PASSWORD_HASH, KIND_TEXT, offsetof(user_fields, password_hash),
         USER_SEALED_MAX, "an argon2id hash string ($argon2id$...) of at most 128 printable characters"},
        {"role", FIELD_ROLE, KIND_OWN, offsetof(user_fields, role), 0, "customer or admin"},
        {"jti", FIELD_JTI, KIND_TEXT, offsetof(user_fields, jti), USER_JTI_MAX,
         "1..32 characters of [A-Za-z0-9_-]"},
        {"expires_at", FIELD_EXPIRES_AT, KIND_INT, offsetof(user_fields, expires_at), 0,
         "seconds since the epoch, above 0"},
        {"token_version", FIELD_TOKEN_VERSION, KIND_INT, offsetof(user_fields, token_version), 0,
         "an integer, 0 or more"},
        {"kid", FIELD_KID, KIND_TEXT, offsetof(user_fields, kid), PD_KID_MAX,
         "the data key id, 32 lowercase hex digits, that seals email, name and password_hash"},
        {"verified", FIELD_VERIFIED, KIND_OWN, offsetof(user_fields, unverified), 0, "a boolean"},
        {"request_id", FIELD_REQUEST_ID, KIND_TEXT, offsetof(user_fields, request_id), USER_JTI_MAX,
         "1..32 characters of [A-Za-z0-9_-]"},
        {"token_hash", FIELD_TOKEN_HASH, KIND_TEXT, offsetof(user_fields, token_hash), USER_TOKEN_HASH_MAX,
         "64 lowercase hex digits"},
        {"at", FIELD_AT, KIND_INT, offsetof(user_fields, at), 0, "seconds since the epoch, above 0"},
};

/* One payload shape: the type name, the keys it must carry and the keys it
 * may carry. */
typedef struct payload_shape {
	const char *type;
	unsigned fields;
	unsigned optional;
} payload_shape;

static const payload_shape command_shapes[] = {
        [USER_REGISTER] = {USER_CMD_REGISTER, FIELDS_ALL | FIELD_KID, FIELD_VERIFIED | FIELDS_REQUEST},
        [USER_CHANGE_ROLE] = {USER_CMD_CHANGE_ROLE, FIELD_ROLE, 0},
        [USER_REVOKE_TOKEN] = {USER_CMD_REVOKE_TOKEN, FIELD_JTI | FIELD_EXPIRES_AT, 0},
        [USER_REVOKE_TOKENS] = {USER_CMD_REVOKE_TOKENS, 0, 0},
        [USER_REQUEST_ERASURE] = {USER_CMD_REQUEST_ERASURE, 0, 0},
        [USER_COMPLETE_ERASURE] = {USER_CMD_COMPLETE_ERASURE, 0, 0},
        [USER_CHANGE_PASSWORD] = {USER_CMD_CHANGE_PASSWORD, FIELD_PASSWORD_HASH, 0},
        [USER_VERIFY_EMAIL] = {USER_CMD_VERIFY_EMAIL, FIELD_TOKEN_HASH | FIELD_AT, 0},
        [USER_REPEAT_REGISTRATION] = {USER_CMD_REPEAT_REGISTRATION, FIELD_REQUEST_ID | FIELD_AT, 0},
        [USER_REQUEST_PASSWORD_RESET] = {USER_CMD_REQUEST_PASSWORD_RESET, FIELDS_REQUEST | FIELD_AT, 0},
        [USER_RESET_PASSWORD] = {USER_CMD_RESET_PASSWORD, FIELD_TOKEN_HASH | FIELD_PASSWORD_HASH | FIELD_AT,
                                 0},
};

/* UserRegistered names its kid since ADR 027; earlier ones hold clear fields. */
static const payload_shape event_shapes[] = {
        [USER_REGISTERED] = {USER_EV_REGISTERED, FIELDS_ALL, FIELD_KID | FIELD_VERIFIED},
        [USER_ROLE_CHANGED] = {USER_EV_ROLE_CHANGED, FIELD_ROLE, 0},
        [USER_TOKEN_REVOKED] = {USER_EV_TOKEN_REVOKED, FIELD_JTI | FIELD_EXPIRES_AT, 0},
        [USER_TOKENS_REVOKED] = {USER_EV_TOKENS_REVOKED, FIELD_TOKEN_VERSION, 0},
        [USER_ERASURE_REQUESTED_EVENT] = {USER_EV_ERASURE_REQUESTED, 0, 0},
        /* names the account since issue 18's read models blank its rows; earlier ones name none */
        [USER_ERASED_EVENT] = {USER_EV_ERASED, 0, FIELD_USER_ID | FIELD_KID},
        [USER_PASSWORD_CHANGED] = {USER_EV_PASSWORD_CHANGED, FIELD_PASSWORD_HASH | FIELD_TOKEN_VERSION, 0},
        [USER_VERIFICATION_REQUESTED] = {USER_EV_VERIFICATION_REQUESTED, FIELDS_REQUEST, 0},
        [USER_EMAIL_VERIFIED] = {USER_EV_EMAIL_VERIFIED, FIELD_REQUEST_ID, 0},
        [USER_REGISTRATION_REPEATED] = {USER_EV_REGISTRATION_REPEATED, FIELD_REQUEST_ID | FIELD_AT, 0},
        [USER_PASSWORD_RESET_REQUESTED] = {USER_EV_PASSWORD_RESET_REQUESTED, FIELDS_REQUEST | FIELD_AT, 0},
        [USER_PASSWORD_RESET] = {USER_EV_PASSWORD_RESET,
                                 FIELD_REQUEST_ID | FIELD_PASSWORD_HASH | FIELD_TOKEN_VERSION, 0},
};

static const char *const verdict_codes[] = {
        [USER_OK] = "",
        [USER_REJ_NOT_FOUND] = "not_found",
        [USER_REJ_EXISTS] = "exists",
        [USER_REJ_INVALID] = "invalid",
        [USER_REJ_NO_CHANGE] = "no_change",
        [USER_REJ_WRONG_STATE] = "wrong_state",
        [USER_REJ_TOKEN_INVALID] = "token_invalid",
        [USER_REJ_TOKEN_USED] = "token_used",
        [USER_REJ_TOKEN_EXPIRED] = "token_expired",
};

static const char *const role_names[] = {[USER_ROLE_CUSTOMER] = "customer", [USER_ROLE_ADMIN] = "admin"};

static const char *const_string_at(const user_fields *f, size_t i)
{
	return (const char *)f + field_table[i].offset;
}

/* True if field i of f holds nothing (an optional field left out): an
 * empty text, a zero integer, "verified" true (the default), no role. */
static bool field_empty(const user_fields *f, size_t i)
{
	if (field_table[i].value == KIND_TEXT)
		return const_string_at(f, i)[0] == '\0';
	if (field_table[i].value == KIND_INT)
		return *(const int64_t *)((const char *)f + field_table[i].offset) == 0;
	return field_table[i].field == FIELD_VERIFIED ? !f->unverified : f->role == USER_ROLE_NONE;
}

/* ---- roles ---- */

const char *user_role_name(user_role role)
{
	if ((size_t)role >= ORN_ARRAY_LEN(role_names))
		return NULL;
	return role_names[role];
}

user_role user_role_parse(const char *name, size_t len)
{
	user_role role = USER_ROLE_NONE;

	for (size_t i = USER_ROLE_CUSTOMER; name != NULL && i < ORN_ARRAY_LEN(role_names); i++)
		if (strlen(role_names[i]) == len && memcmp(role_names[i], name, len) == 0)
			role = (user_role)i;
	return role;
}

/* ---- validation ---- */

static bool id_valid(const char *id)
{
	return strnlen(id, USER_ID_MAX) < USER_ID_MAX && orn_id_valid(id);
}

/* True if (s, len) is a valid normalized address. */
static bool email_check(const char *s, size_t len)
{
	const char *at = len > 0 ? memchr(s, '@', len) : NULL;
	bool valid = len >= USER_EMAIL_MIN && len < USER_EMAIL_MAX && at != NULL && at != s &&
	             at != s + len - 1 && memchr(at + 1, '@', (size_t)(s + len - at - 1)) == NULL &&
	             text_valid(s, len, 0);

	for (size_t i = 0; valid && i < len; i++)
		valid = !(s[i] >= 'A' && s[i] <= 'Z');
	return valid;
}

bool user_email_valid(const char *email)
{
	size_t len = strnlen(email, USER_EMAIL_MAX);

	return len < USER_EMAIL_MAX && email_check(email, len);
}

/* RFC 5322 atext: what a dot-atom's atoms are made of (ASCII only). */
static bool is_atext(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}

/* Dot-atom: atoms of atext separated by single dots, 1..64 bytes. */
static bool local_part_valid(const char *s, size_t len)
{
	if (len == 0 || len > 64 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(is_atext(s[i]) || (s[i] == '.' && s[i + 1] != '.')))
			return false;
	return true;
}

/* A domain name of two or more LDH labels (lowercase: normalized), the top
 * one not all digits. */
static bool domain_valid(const char *s, size_t len)
{
	size_t labels = 0, start = 0;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.') {
			if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
				return false;
			continue;
		}
		size_t n = i - start;
		if (n == 0 || n > 63 || s[start] == '-' || s[i - 1] == '-')
			return false;
		labels++;
		if (i == len && strspn(s + start, "0123456789") == n)
			return false; /* a top-level label is never numeric: no IPv4 */
		start = i + 1;
	}
	return labels >= 2;
}

bool user_email_syntax_valid(const char *email)
{
	size_t len = strnlen(email, USER_EMAIL_MAX);
	const char *at = memchr(email, '@', len);
	return user_email_valid(email) && at != NULL && local_part_valid(email, (size_t)(at - email)) &&
	       domain_valid(at + 1, len - (size_t)(at + 1 - email));
}

static bool is_ascii_space(char ch)
{
	return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

orn_rc user_email_normalize(const char *email, char *out, size_t cap)
{
	size_t len = strlen(email);
	orn_rc rc = ORN_EINVAL;

	if (cap > 0)
		out[0] = '\0';
	while (len > 0 && is_ascii_space(email[0]))
		email++, len--;
	while (len > 0 && is_ascii_space(email[len - 1]))
		len--;
	if (len >= USER_EMAIL_MAX)
		goto fail;
	if (cap <= len) {
		rc = ORN_ETOOBIG;
		goto fail;
	}
	for (size_t i = 0; i < len; i++)
		out[i] = email[i] >= 'A' && email[i] <= 'Z' ? (char)(email[i] - 'A' + 'a') : email[i];
	out[len] = '\0';
	rc = email_check(out, len) ? ORN_OK : ORN_EINVAL;
	if (rc != ORN_OK)
		out[0] = '\0';
fail:
	return rc;
}

orn_rc user_key_for_email(const char *email, char *out, size_t cap)
{
	char normalized[USER_EMAIL_MAX];
	unsigned char hash[EMAIL_HASH_BYTES];
	orn_rc rc;

	if (cap > 0)
		out[0] = '\0';
	if ((rc = user_email_normalize(email, normalized, sizeof normalized)) != ORN_OK)
		goto fail;
	if (cap < USER_KEY_MAX) {
		rc = ORN_ETOOBIG;
		goto fail;
	}
	if (sodium_init() < 0) {
		rc = ORN_EINTERNAL;
		goto fail;
	}
	crypto_generichash(hash, sizeof hash, (const unsigned char *)normalized, strlen(normalized),
	                   (const unsigned char *)EMAIL_KEY_DOMAIN, strlen(EMAIL_KEY_DOMAIN));
	out[0] = 'u';
	sodium_bin2hex(out + 1, cap - 1, hash, sizeof hash);
fail:
	return rc;
}

static bool password_hash_valid(const char *hash)
{
	size_t len = strnlen(hash, USER_PASSWORD_HASH_MAX);
	size_t prefix = strlen(USER_PASSWORD_HASH_PREFIX);
	bool valid = len > prefix && len < USER_PASSWORD_HASH_MAX &&
	             strncmp(hash, USER_PASSWORD_HASH_PREFIX, prefix) == 0;

	for (size_t i = 0; valid && i < len; i++)
		valid = hash[i] > 0x20 && hash[i] < 0x7f;
	return valid;
}

/* 64 lowercase hex digits. */
static bool token_hash_valid(const char *hash)
{
	size_t len = strnlen(hash, USER_TOKEN_HASH_MAX);
	bool valid = len == USER_TOKEN_HASH_MAX - 1;
	for (size_t i = 0; valid && i < len; i++)
		valid = (hash[i] >= '0' && hash[i] <= '9') || (hash[i] >= 'a' && hash[i] <= 'f');
	return valid;
}

/* The rules of a clear value of field (personal fields as typed). */
static bool clear_valid(const user_fields *f, unsigned field)
{
	size_t len;

	if (field == FIELD_USER_ID)
		return id_valid(f->user_id);
	if (field == FIELD_EMAIL)
		return user_email_valid(f->email);
	if (field == FIELD_NAME) {
		len = strnlen(f->name, USER_NAME_MAX);
		return len > 0 && len < USER_NAME_MAX && text_valid(f->name, len, TEXT_SPACE);
	}
	if (field == FIELD_KID)
		return f->kid[0] == '\0' || pd_kid_valid(f->kid);
	if (field == FIELD_PASSWORD_HASH)
		return password_hash_valid(f->password_hash);
	if (field == FIELD_JTI)
		return strnlen(f->jti, USER_JTI_MAX) < USER_JTI_MAX && orn_id_valid(f->jti);
	if (field == FIELD_EXPIRES_AT)
		return f->expires_at > 0;
	if (field == FIELD_TOKEN_VERSION)
		return f->token_version >= 0;
	if (field == FIELD_REQUEST_ID)
		return strnlen(f->request_id, USER_JTI_MAX) < USER_JTI_MAX && orn_id_valid(f->request_id);
	if (field == FIELD_TOKEN_HASH)
		return token_hash_valid(f->token_hash);
	if (field == FIELD_AT)
		return f->at > 0;
	if (field == FIELD_VERIFIED)
		return true;
	return user_role_name(f->role) != NULL;
}

static const char *personal_value(const user_fields *f, unsigned field)
{
	return field == FIELD_EMAIL ? f->email : field == FIELD_NAME ? f->name : f->password_hash;
}

/* A personal field is valid sealed, or clear by its rule (events written
 * before ADR 027). */
static bool field_valid(const user_fields *f, unsigned field)
{
	if ((field & FIELDS_PERSONAL) != 0 && pd_is_sealed(personal_value(f, field)))
		return true;
	return clear_valid(f, field);
}

/* True if every personal field of f is sealed with f's kid. */
static bool sealed_with_kid(const user_fields *f)
{
	const unsigned fields[] = {FIELD_EMAIL, FIELD_NAME, FIELD_PASSWORD_HASH};
	char kid[PD_KID_MAX];
	bool sealed = pd_kid_valid(f->kid);
	for (size_t i = 0; sealed && i < ORN_ARRAY_LEN(fields); i++)
		sealed =
		        pd_token_kid(personal_value(f, fields[i]), kid) == ORN_OK && strcmp(kid, f->kid) == 0;
	return sealed;
}

/* Index in field_table of the first field of mask that is not valid, or -1. */
static int first_invalid(const user_fields *f, unsigned mask)
{
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_table); i++)
		if ((mask & field_table[i].field) != 0 && !field_valid(f, field_table[i].field))
			return (int)i;
	return -1;
}

const char *user_invalid_field(const user_command *c)
{
	int invalid = -1;

	if ((size_t)c->kind < ORN_ARRAY_LEN(command_shapes))
		invalid = first_invalid(&c->fields, command_shapes[c->kind].fields);
	/* an unverified account comes with its verification request */
	if (invalid < 0 && c->kind == USER_REGISTER && c->fields.unverified)
		invalid = first_invalid(&c->fields, FIELDS_REQUEST);
	if (invalid >= 0)
		return field_table[invalid].key;
	if (c->kind == USER_REGISTER && !sealed_with_kid(&c->fields))
		return "kid"; /* a new account's personal fields are sealed, all with its key (ADR 027) */
	return NULL;
}

const char *user_clear_invalid_field(const user_fields *clear)
{
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_table); i++)
		if ((FIELDS_ALL & field_table[i].field) != 0 && !clear_valid(clear, field_table[i].field))
			return field_table[i].key;
	if (!user_email_syntax_valid(clear->email))
		return "email"; /* a new account's address: RFC 5321 syntax (events keep the looser check) */
	return NULL;
}

/* ---- decide and evolve ---- */

void user_state_init(user_state *s)
{
	memset(s, 0, sizeof *s);
}

/* Appends an event of kind with the given fields to out. */
static void emit(user_events *out, user_event_kind kind, const user_fields *fields)
{
	user_event *e;

	assert(out->count < USER_MAX_EVENTS);
	e = &out->items[out->count++];
	memset(e, 0, sizeof *e);
	e->kind = kind;
	e->fields = *fields;
}

/* The request fields of f alone (an emailed link's). */
static user_fields request_of(const user_fields *f, unsigned mask)
{
	user_fields r = {0};
	if (mask & FIELD_REQUEST_ID)
		memcpy(r.request_id, f->request_id, sizeof r.request_id);
	if (mask & FIELD_TOKEN_HASH)
		memcpy(r.token_hash, f->token_hash, sizeof r.token_hash);
	if (mask & FIELD_EXPIRES_AT)
		r.expires_at = f->expires_at;
	if (mask & FIELD_AT)
		r.at = f->at;
	return r;
}

/* A new account; an unverified one (registered through the API) with the
 * request of its verification link in the same commit. */
static user_verdict decide_register(const user_state *s, const user_command *c, user_events *out)
{
	if (s->exists && s->erasure != USER_ERASED) /* an erased address may open a new account */
		return USER_REJ_EXISTS;
	if (user_invalid_field(c) != NULL)
		return USER_REJ_INVALID;
	user_fields account = c->fields;
	memset(account.request_id, 0, sizeof account.request_id);
	memset(account.token_hash, 0, sizeof account.token_hash);
	account.expires_at = 0;
	account.at = 0;
	emit(out, USER_REGISTERED, &account);
	if (c->fields.unverified) {
		user_fields request = request_of(&c->fields, FIELDS_REQUEST);
		emit(out, USER_VERIFICATION_REQUESTED, &request);
	}
	return USER_OK;
}

/* Whether the account may ask for one more email at `at` (its budget). */
static bool mail_budget_left(const user_state *s, int64_t at)
{
	return s->mail_window_at == 0 || at - s->mail_window_at >= USER_MAIL_WINDOW_S ||
	       at < s->mail_window_at || s->mail_count < USER_MAILS_PER_WINDOW;
}

/* Counts one email asked for at `at` into the budget. */
static void mail_budget_spend(user_state *s, int64_t at)
{
	if (s->mail_window_at == 0 || at - s->mail_window_at >= USER_MAIL_WINDOW_S ||
	    at < s->mail_window_at) {
		s->mail_window_at = at;
		s->mail_count = 0;
	}
	s->mail_count++;
}

/* A link's token against the latest request of its purpose. */
static user_verdict check_token(const user_request *r, const user_command *c)
{
	if (r->token_hash[0] == '\0' || strcmp(r->token_hash, c->fields.token_hash) != 0)
		return USER_REJ_TOKEN_INVALID;
	if (r->used)
		return USER_REJ_TOKEN_USED;
	if (c->fields.at >= r->expires_at)
		return USER_REJ_TOKEN_EXPIRED;
	return USER_OK;
}

/* The verification link came back: the address is proven. */
static user_verdict decide_verify_email(const user_state *s, const user_command *c, user_events *out)
{
	user_verdict verdict;
	if (user_invalid_field(c) != NULL)
		return USER_REJ_INVALID;
	if (s->erasure != USER_ACTIVE)
		return USER_REJ_WRONG_STATE;
	if ((verdict = check_token(&s->verification, c)) == USER_OK) {
		user_fields f = {0};
		memcpy(f.request_id, s->verification.request_id, sizeof f.request_id);
		emit(out, USER_EMAIL_VERIFIED, &f);
	}
	return verdict;
}

/* Someone registered the address again: its owner hears of it, within the
 * mail budget; an account being erased hears nothing. Never a rejection but
 * for bounds: the registration's answer must not tell. */
static user_verdict decide_repeat_registration(const user_state *s, const user_command *c, user_events *out)
{
	if (user_invalid_field(c) != NULL)
		return USER_REJ_INVALID;
	if (s->erasure == USER_ACTIVE && mail_budget_left(s, c->fields.at)) {
		user_fields f = request_of(&c->fields, FIELD_REQUEST_ID | FIELD_AT);
		emit(out, USER_REGISTRATION_REPEATED, &f);
	}
	return USER_OK;
}

/* A reset link is asked for: the latest request replaces every earlier one,
 * within the mail budget. */
static user_verdict decide_request_password_reset(const user_state *s, const user_command *c,
                                                  user_events *out)
{
	if (user_invalid_field(c) != NULL)
		return USER_REJ_INVALID;
	if (s->erasure == USER_ACTIVE && mail_budget_left(s, c->fields.at)) {
		user_fields f = request_of(&c->fields, FIELDS_REQUEST | FIELD_AT);
		emit(out, USER_PASSWORD_RESET_REQUESTED, &f);
	}
	return USER_OK;
}

/* The reset link came back with a new password hash, sealed with the
 * account's key: the password changes, every earlier token ends (ADR 021),
 * the link is used. */
static user_verdict decide_reset_password(const user_state *s, const user_command *c, user_events *out)
{
	char kid[PD_KID_MAX];
	user_verdict verdict;
	if (s->erasure != USER_ACTIVE)
		return USER_REJ_WRONG_STATE;
	if (user_invalid_field(c) != NULL || s->fields.token_version == INT64_MAX ||
	    pd_token_kid(c->fields.password_hash, kid) != ORN_OK || strcmp(kid, s->fields.kid) != 0)
		return USER_REJ_INVALID;
	if ((verdict = check_token(&s->reset, c)) != USER_OK)
		return verdict;
	user_fields f = {.token_version = s->fields.token_version + 1};
	memcpy(f.request_id, s->reset.request_id, sizeof f.request_id);
	memcpy(f.password_hash, c->fields.password_hash, sizeof f.password_hash);
	emit(out, USER_PASSWORD_RESET, &f);
	return USER_OK;
}

static user_verdict decide_change_role(const user_state *s, const user_command *c, user_events *out)
{
	user_verdict verdict = USER_OK;

	if (user_invalid_field(c) != NULL)
		verdict = USER_REJ_INVALID;
	else if (c->fields.role == s->fields.role)
		verdict = USER_REJ_NO_CHANGE;
	else
		emit(out, USER_ROLE_CHANGED, &(user_fields){.role = c->fields.role});
	return verdict;
}

/* One token ends: always recorded (a repeat is harmless to the readers). */
static user_verdict decide_revoke_token(const user_command *c, user_events *out)
{
	if (user_invalid_field(c) != NULL)
		return USER_REJ_INVALID;
	user_fields f = {.expires_at = c->fields.expires_at};
	snprintf(f.jti, sizeof f.jti, "%s", c->fields.jti);
	emit(out, USER_TOKEN_REVOKED, &f);
	return USER_OK;
}

/* Every token issued so far ends: the account's version moves on. */
static user_verdict decide_revoke_tokens(const user_state *s, user_events *out)
{
	if (s->fields.token_version == INT64_MAX)
		return USER_REJ_INVALID;
	emit(out, USER_TOKENS_REVOKED, &(user_fields){.token_version = s->fields.token_version + 1});
	return USER_OK;
}

/* A new password hash, sealed with the account's own data key (ADR 027: no
 * clear hash enters the log), and every earlier token ends: the version moves
 * on with it (ADR 021). Only an active account changes its password. */
static user_verdict decide_change_password(const user_state *s, const user_command *c, user_events *out)
{
	char kid[PD_KID_MAX];
	if (s->erasure != USER_ACTIVE)
		return USER_REJ_WRONG_STATE;
	if (user_invalid_field(c) != NULL || s->fields.token_version == INT64_MAX ||
	    pd_token_kid(c->fields.password_hash, kid) != ORN_OK || strcmp(kid, s->fields.kid) != 0)
		return USER_REJ_INVALID;
	user_fields f = {.token_version = s->fields.token_version + 1};
	memcpy(f.password_hash, c->fields.password_hash, sizeof f.password_hash);
	emit(out, USER_PASSWORD_CHANGED, &f);
	return USER_OK;
}

/* Asked again while asked or done: accepted, nothing new. */
static user_verdict decide_request_erasure(const user_state *s, user_events *out)
{
	if (s->erasure == USER_ACTIVE)
		emit(out, USER_ERASURE_REQUESTED_EVENT, &(user_fields){0});
	return USER_OK;
}

/* Only an erasure asked for completes; completing twice records it once. */
static user_verdict decide_complete_erasure(const user_state *s, user_events *out)
{
	if (s->erasure == USER_ACTIVE)
		return USER_REJ_WRONG_STATE;
	if (s->erasure == USER_ERASURE_REQUESTED) {
		/* the account and its key id: the read models find the customer's rows by them */
		user_fields f = {0};
		memcpy(f.user_id, s->fields.user_id, sizeof f.user_id);
		memcpy(f.kid, s->fields.kid, sizeof f.kid);
		emit(out, USER_ERASED_EVENT, &f);
	}
	return USER_OK;
}

user_verdict user_decide(const user_state *s, const user_command *c, user_events *out)
{
	user_verdict verdict = USER_REJ_INVALID;

	out->count = 0;
	if (c->kind == USER_REGISTER)
		verdict = decide_register(s, c, out);
	else if (!s->exists)
		verdict = USER_REJ_NOT_FOUND;
	else if (c->kind == USER_REQUEST_ERASURE)
		verdict = decide_request_erasure(s, out);
	else if (c->kind == USER_COMPLETE_ERASURE)
		verdict = decide_complete_erasure(s, out);
	else if (c->kind == USER_CHANGE_PASSWORD)
		verdict = decide_change_password(s, c, out);
	else if (c->kind == USER_VERIFY_EMAIL)
		verdict = decide_verify_email(s, c, out);
	else if (c->kind == USER_REPEAT_REGISTRATION)
		verdict = decide_repeat_registration(s, c, out);
	else if (c->kind == USER_REQUEST_PASSWORD_RESET)
		verdict = decide_request_password_reset(s, c, out);
	else if (c->kind == USER_RESET_PASSWORD)
		verdict = decide_reset_password(s, c, out);
	else if (s->erasure == USER_ERASED)
		verdict = USER_REJ_NOT_FOUND; /* an erased account is gone for everything else */
	else if (c->kind == USER_CHANGE_ROLE)
		verdict = decide_change_role(s, c, out);
	else if (c->kind == USER_REVOKE_TOKEN)
		verdict = decide_revoke_token(c, out);
	else if (c->kind == USER_REVOKE_TOKENS)
		verdict = decide_revoke_tokens(s, out);
	return verdict;
}

/* The request an event names, as the state keeps it. */
static void request_set(user_request *r, const user_fields *f)
{
	memset(r, 0, sizeof *r);
	memcpy(r->request_id, f->request_id, sizeof r->request_id);
	memcpy(r->token_hash, f->token_hash, sizeof r->token_hash);
	r->expires_at = f->expires_at;
}

/* The emailed links' events (ADR 031); false for another kind. */
static bool evolve_link(user_state *s, const user_event *e)
{
	bool active = s->exists && s->erasure == USER_ACTIVE;
	if (e->kind == USER_VERIFICATION_REQUESTED && active) {
		request_set(&s->verification, &e->fields);
	} else if (e->kind == USER_EMAIL_VERIFIED && active) {
		s->fields.unverified = false;
		s->verification.used = true;
	} else if (e->kind == USER_REGISTRATION_REPEATED && active) {
		mail_budget_spend(s, e->fields.at);
	} else if (e->kind == USER_PASSWORD_RESET_REQUESTED && active) {
		request_set(&s->reset, &e->fields);
		mail_budget_spend(s, e->fields.at);
	} else if (e->kind == USER_PASSWORD_RESET && active &&
	           e->fields.token_version > s->fields.token_version) {
		memcpy(s->fields.password_hash, e->fields.password_hash, sizeof s->fields.password_hash);
		s->fields.token_version = e->fields.token_version;
		s->fields.unverified = false; /* the reset link reached the address */
		s->reset.used = true;
	} else {
		return e->kind >= USER_VERIFICATION_REQUESTED;
	}
	return true;
}

void user_evolve(user_state *s, const user_event *e)
{
	if (evolve_link(s, e))
		return;
	if (e->kind == USER_REGISTERED) {
		user_state_init(s);
		s->exists = true;
		s->erasure = USER_ACTIVE;
		s->fields = e->fields;
		s->fields.token_version = 0;
	} else if (e->kind == USER_ERASURE_REQUESTED_EVENT && s->exists && s->erasure == USER_ACTIVE) {
		s->erasure = USER_ERASURE_REQUESTED;
	} else if (e->kind == USER_ERASED_EVENT && s->exists && s->erasure != USER_ERASED) {
		s->erasure = USER_ERASED;
		memset(s->fields.email, 0, sizeof s->fields.email);
		memset(s->fields.name, 0, sizeof s->fields.name);
		memset(s->fields.password_hash, 0, sizeof s->fields.password_hash);
		memset(&s->verification, 0, sizeof s->verification);
		memset(&s->reset, 0, sizeof s->reset);
	} else if (e->kind == USER_ROLE_CHANGED && s->exists && user_role_name(e->fields.role) != NULL) {
		s->fields.role = e->fields.role;
	} else if (e->kind == USER_TOKENS_REVOKED && s->exists &&
	           e->fields.token_version > s->fields.token_version) {
		s->fields.token_version = e->fields.token_version;
	} else if (e->kind == USER_PASSWORD_CHANGED && s->exists && s->erasure == USER_ACTIVE &&
	           e->fields.token_version > s->fields.token_version) {
		memcpy(s->fields.password_hash, e->fields.password_hash, sizeof s->fields.password_hash);
		s->fields.token_version = e->fields.token_version;
	}
}

KIND_NAMES(user, verdict_codes, command_shapes, event_shapes);

/* ---- payload codecs ---- */

/* Reads a role: a known name, nil or an unknown name (USER_ROLE_NONE). */
static orn_rc read_role(mp_reader *r, user_role *role)
{
	const char *name;
	uint32_t len;
	orn_rc rc;

	*role = USER_ROLE_NONE;
	if (mp_peek(r) == MP_NIL)
		return mp_read_nil(r);
	if ((rc = mp_read_str(r, &name, &len)) == ORN_OK)
		*role = user_role_parse(name, len);
	return rc;
}

/* Reads "verified" into its inverse. */
static orn_rc read_verified(mp_reader *r, bool *unverified)
{
	bool verified = true;
	orn_rc rc = mp_read_bool(r, &verified);
	*unverified = !verified;
	return rc;
}

/* The optional fields of mask that f holds: an optional field is written
 * when it holds a value, an empty one is absent (so a verified account's
 * UserRegistered is what it always was). */
static unsigned present_optional(const user_fields *f, unsigned mask)
{
	unsigned present = 0;
	for (size_t i = 0; i < ORN_ARRAY_LEN(field_table); i++)
		if ((mask & field_table[i].field) != 0 && !field_empty(f, i))
			present |= field_table[i].field;
	return present;
}

/* kind_fields.own_write: "verified", or the role's name (nil for none). */
static void own_write(mp_writer *w, const kind_field *f, const void *data)
{
	const user_fields *u = data;

	if (f->field == FIELD_VERIFIED)
		mp_write_bool(w, !u->unverified);
	else
		mp_write_cstr(w, user_role_name(u->role));
}

/* kind_fields.own_read: "verified", or the role. */
static orn_rc own_read(mp_reader *r, const kind_field *f, void *data)
{
	user_fields *u = data;

	return f->field == FIELD_VERIFIED ? read_verified(r, &u->unverified) : read_role(r, &u->role);
}

static const kind_fields fields_of = {KIND_FIELDS_OF(field_table), .own_write = own_write,
                                      .own_read = own_read};

/* Writes the key/value pairs of the fields of mask (no map header).
 * ORN_EINVAL if a string does not fit its buffer. */
static orn_rc write_fields(mp_writer *w, const user_fields *f, unsigned mask)
{
	if (!kind_fields_fit(&fields_of, mask, f))
		return ORN_EINVAL;
	kind_fields_write(w, &fields_of, mask, f);
	return ORN_OK;
}

static orn_rc encode_payload(mp_writer *w, unsigned mask, const user_fields *f)
{
	return kind_fields_encode(w, &fields_of, mask, f);
}

static orn_rc decode_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out)
{
	return kind_fields_read_entry(r, &fields_of, fields, seen, out);
}

orn_rc user_command_encode(mp_writer *w, const user_command *c)
{
	if (user_command_type(c->kind) == NULL)
		return ORN_EINVAL;
	const payload_shape *shape = &command_shapes[c->kind];
	return encode_payload(w, shape->fields | present_optional(&c->fields, shape->optional), &c->fields);
}

orn_rc user_command_decode(const char *type, const uint8_t *payload, size_t len, user_command *out)
{
	int shape = KIND_TYPE_INDEX(command_shapes, type);
	user_command c;
	orn_rc rc = ORN_EINVAL;

	if (shape < 0)
		goto fail;
	memset(&c, 0, sizeof c);
	if ((rc = kind_decode_map_optional(payload, len, command_shapes[shape].fields,
	                                   command_shapes[shape].optional, decode_entry, &c.fields,
	                                   sizeof c.fields, NULL)) != ORN_OK)
		goto fail;
	c.kind = (user_command_kind)shape;
	*out = c;
fail:
	return rc;
}

orn_rc user_event_encode(mp_writer *w, const user_event *e)
{
	if (user_event_type(e->kind) == NULL)
		return ORN_EINVAL;
	unsigned optional = present_optional(&e->fields, event_shapes[e->kind].optional);
	return encode_payload(w, event_shapes[e->kind].fields | optional, &e->fields);
}

orn_rc user_event_decode(const char *type, const uint8_t *payload, size_t len, user_event *out)
{
	int shape = KIND_TYPE_INDEX(event_shapes, type);
	user_event e;
	orn_rc rc = ORN_EINVAL;

	if (shape < 0)
		goto fail;
	memset(&e, 0, sizeof e);
	unsigned seen = 0;
	if ((rc = kind_decode_map_optional(payload, len, event_shapes[shape].fields,
	                                   event_shapes[shape].optional, decode_entry, &e.fields,
	                                   sizeof e.fields, &seen)) != ORN_OK)
		goto fail;
	/* the optional fields present are checked; the personal ones are sealed with the kid */
	if (first_invalid(&e.fields, event_shapes[shape].fields | (seen & event_shapes[shape].optional)) >=
	            0 ||
	    ((event_shapes[shape].fields & FIELDS_PERSONAL) != 0 && e.fields.kid[0] != '\0' &&
	     !sealed_with_kid(&e.fields))) {
		rc = ORN_EDECODE;
		goto fail;
	}
	e.kind = (user_event_kind)shape;
	*out = e;
fail:
	return rc;
}

/* ---- snapshot, restore, view ---- */

/* Writes [request_id, token_hash, expires_at, used]. */
static void write_request(mp_writer *w, const char *key, const user_request *r)
{
	mp_write_cstr(w, key);
	mp_write_array(w, 4);
	mp_write_cstr(w, r->request_id);
	mp_write_cstr(w, r->token_hash);
	mp_write_int(w, r->expires_at);
	mp_write_bool(w, r->used);
}

/* Reads what write_request wrote: a request either empty or whole. */
static orn_rc read_request(mp_reader *r, user_request *out)
{
	uint32_t n = 0;
	orn_rc rc = mp_read_array(r, &n);
	if (rc == ORN_OK && n != 4)
		rc = ORN_EDECODE;
	if (rc == ORN_OK)
		rc = mp_read_cstr(r, out->request_id, sizeof out->request_id);
	if (rc == ORN_OK)
		rc = mp_read_cstr(r, out->token_hash, sizeof out->token_hash);
	if (rc == ORN_OK)
		rc = mp_read_int(r, &out->expires_at);
	if (rc == ORN_OK)
		rc = mp_read_bool(r, &out->used);
	if (rc == ORN_OK && out->token_hash[0] != '\0' &&
	    (!token_hash_valid(out->token_hash) || !orn_id_valid(out->request_id) || out->expires_at <= 0))
		rc = ORN_EDECODE;
	if (rc == ORN_OK && out->token_hash[0] == '\0' && (out->request_id[0] != '\0' || out->used))
		rc = ORN_EDECODE;
	return rc;
}

/* Writes {exists, erasure, [verification, reset, mail_budget,] <fields of mask>}. */
static orn_rc write_state(const user_state *s, mp_writer *w, unsigned mask, bool links)
{
	orn_rc rc;

	mp_write_map(w, (links ? 5 : 2) + kind_fields_count(&fields_of, mask));
	mp_write_cstr(w, "exists");
	mp_write_bool(w, s->exists);
	mp_write_cstr(w, "erasure");
	mp_write_int(w, s->erasure);
	if (links) {
		write_request(w, "verification", &s->verification);
		write_request(w, "reset", &s->reset);
		mp_write_cstr(w, "mail_budget");
		mp_write_array(w, 2);
		mp_write_int(w, s->mail_window_at);
		mp_write_int(w, s->mail_count);
	}
	if ((rc = write_fields(w, &s->fields, mask)) == ORN_OK)
		rc = mp_writer_status(w);
	return rc;
}

/* Snapshot: {exists, erasure, verification, reset, mail_budget, user_id, email, name,
 * password_hash (sealed), role (nil if none), token_version, kid, verified}. */
static orn_rc user_snapshot(const void *state, mp_writer *w)
{
	return write_state(state, w, SNAPSHOT_FIELDS, true);
}

/* View: the snapshot without the password hash and the links' requests. */
static orn_rc user_view(const void *state, mp_writer *w)
{
	return write_state(state, w, SNAPSHOT_FIELDS & ~FIELD_PASSWORD_HASH, false);
}

/* Reads the snapshot's "verification", "reset" or "mail_budget" into s. */
static orn_rc read_link_state(mp_reader *r, const char *key, uint32_t len, user_state *s, unsigned *seen)
{
	unsigned bit = mp_str_eq(key, len, "verification") ? SNAPSHOT_VERIFICATION
	               : mp_str_eq(key, len, "reset")      ? SNAPSHOT_RESET
	                                                   : SNAPSHOT_BUDGET;
	uint32_t n = 0;
	orn_rc rc;
	if ((*seen & bit) != 0)
		return ORN_EDECODE;
	*seen |= bit;
	if (bit == SNAPSHOT_VERIFICATION)
		return read_request(r, &s->verification);
	if (bit == SNAPSHOT_RESET)
		return read_request(r, &s->reset);
	rc = mp_read_array(r, &n);
	if (rc == ORN_OK && n != 2)
		rc = ORN_EDECODE;
	if (rc == ORN_OK)
		rc = mp_read_int(r, &s->mail_window_at);
	if (rc == ORN_OK)
		rc = mp_read_int(r, &s->mail_count);
	if (rc == ORN_OK && (s->mail_window_at < 0 || s->mail_count < 0))
		rc = ORN_EDECODE;
	return rc;
}

/* Reads one snapshot key/value pair into s; unknown keys are skipped. */
static orn_rc read_snapshot_entry(mp_reader *r, void *state, unsigned *seen)
{
	user_state *s = state;
	const char *key;
	uint32_t len;
	orn_rc rc;

	int64_t erasure = 0;

	if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
		goto fail;
	if (mp_str_eq(key, len, "verification") || mp_str_eq(key, len, "reset") ||
	    mp_str_eq(key, len, "mail_budget")) {
		rc = read_link_state(r, key, len, s, seen);
	} else if (mp_str_eq(key, len, "erasure")) {
		if ((*seen & SNAPSHOT_ERASURE) != 0 || (rc = mp_read_int(r, &erasure)) != ORN_OK ||
		    erasure < USER_ACTIVE || erasure > USER_ERASED) {
			rc = ORN_EDECODE;
			goto fail;
		}
		*seen |= SNAPSHOT_ERASURE;
		s->erasure = (user_erasure)erasure;
	} else if (!mp_str_eq(key, len, "exists")) {
		rc = kind_fields_read_value(r, &fields_of, key, len, SNAPSHOT_FIELDS, seen, &s->fields);
	} else if ((*seen & SNAPSHOT_EXISTS) != 0) {
		rc = ORN_EDECODE;
	} else {
		*seen |= SNAPSHOT_EXISTS;
		rc = mp_read_bool(r, &s->exists);
	}
fail:
	return rc;
}

/* True if a restored state is one evolve can produce. */
static bool state_consistent(const user_state *s)
{
	static const user_fields empty;

	if (s->exists && s->erasure == USER_ERASED)
		return first_invalid(&s->fields, SNAPSHOT_FIELDS & ~FIELDS_PERSONAL) < 0 &&
		       s->fields.email[0] == '\0' && s->fields.name[0] == '\0' &&
		       s->fields.password_hash[0] == '\0' && s->fields.jti[0] == '\0';
	if (s->exists)
		return first_invalid(&s->fields, SNAPSHOT_FIELDS) < 0 && s->fields.jti[0] == '\0' &&
		       s->fields.expires_at == 0 && (s->fields.kid[0] == '\0' || sealed_with_kid(&s->fields));
	return s->erasure == USER_ACTIVE && memcmp(&s->fields, &empty, sizeof empty) == 0;
}

/* Whether a state read from a snapshot holds every key and is consistent. */
static bool snapshot_whole(const void *state, unsigned seen)
{
	return (seen & ~SNAPSHOT_OPTIONAL) == (FIELDS_ALL | SNAPSHOT_EXISTS) && state_consistent(state);
}

/* ---- the kind table ---- */

/* Detail text of a rejection for the reply. */
static void describe_rejection(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	const user_command *c = command;
	const char *field = user_invalid_field(c);
	size_t i = 0;

	(void)state;

	if (verdict == USER_REJ_NOT_FOUND)
		snprintf(detail, cap, "the user does not exist");
	else if (verdict == USER_REJ_EXISTS)
		snprintf(detail, cap, "a user with this email already exists");
	else if (verdict == USER_REJ_WRONG_STATE && c->kind == USER_COMPLETE_ERASURE)
		snprintf(detail, cap, "no erasure of this account was asked for");
	else if (verdict == USER_REJ_WRONG_STATE)
		snprintf(detail, cap, "the account is erased or being erased");
	else if (verdict == USER_REJ_TOKEN_INVALID)
		snprintf(detail, cap, "the link is not valid (a later one may have replaced it)");
	else if (verdict == USER_REJ_TOKEN_USED)
		snprintf(detail, cap, "the link was used already");
	else if (verdict == USER_REJ_TOKEN_EXPIRED)
		snprintf(detail, cap, "the link has expired");
	else if (verdict == USER_REJ_NO_CHANGE)
		snprintf(detail, cap, "the user already has the role %s", user_role_name(c->fields.role));
	else if (field == NULL) /* a password hash sealed with another key, or the last version */
		snprintf(detail, cap, "password_hash: sealed with the account's own data key");
	else {
		while (strcmp(field_table[i].key, field) != 0)
			i++;
		snprintf(detail, cap, "%s: %s", field, field_table[i].rule);
	}
}

/* user_kind_decide and user_kind_evolve: the adapter every aggregate shares (kind.h). */
KIND_ADAPTER(user, PAYLOAD_SCHEMA, describe_rejection, user_kind_apply);

/* Restores into a fresh state, moved in only when whole (kind.h). */
static orn_rc user_restore(void *state, const uint8_t *buf, size_t len)
{
	return kind_restore_map(sizeof(user_state), user_kind_reset, user_kind_reset, read_snapshot_entry,
	                        snapshot_whole, state, buf, len);
}

const act_kind user_kind = {
        KIND_MEMBERS(user, USER_AGGREGATE, USER_SNAPSHOT_SCHEMA),
        .snapshot = user_snapshot,
        .restore = user_restore,
        .view = user_view,
};
