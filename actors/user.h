/* user.h — the user aggregate: one per normalized email address, so the event
 * store enforces email uniqueness (registration appends to a new subject with
 * ExpectNoMessage; a second registration of the same address conflicts or is
 * rejected "exists").
 *
 * The aggregate id is the email's key, "u" + 32 hex digits of a 16-byte
 * BLAKE2b hash of the normalized address (user_key_for_email): a valid subject
 * token for any address that keeps addresses out of subjects, logs and
 * metrics. The public id a client sees is the random user_id chosen at
 * registration; the users read model maps user_id and email to the key. See
 * docs/adr/005-uniqueness-of-sku-and-email.md.
 *
 * Bounds (checked by decide, rejection "invalid" naming the field):
 *   user_id        1..64 bytes of [A-Za-z0-9_-]
 *   email          normalized: 3..254 bytes, no ASCII uppercase, exactly one
 *                  '@' with non-empty sides, valid UTF-8 without spaces or
 *                  control characters
 *   name           1..100 bytes of UTF-8, no control characters
 *   password_hash  "$argon2id$..." (crypto_pwhash_str), printable ASCII
 *                  without spaces, at most 128 bytes
 *   role           "customer" or "admin"
 *   jti            a token id: 1..32 characters of [A-Za-z0-9_-]
 *   expires_at     a token's expiry, seconds since the epoch, > 0
 *   token_version  >= 0; a token carries the version it was issued at and
 *                  counts only while the account's version is the same
 *                  (docs/adr/021-tokens-orion-can-take-back.md)
 *   request_id     an emailed link's request: 1..32 characters of [A-Za-z0-9_-]
 *   token_hash     the lowercase hex SHA-256 of an emailed link's token
 *   at             the command's time, seconds since the epoch, > 0 (the
 *                  gateway's clock: the decider has none)
 *
 * Emailed links (docs/adr/031-verified-accounts-and-password-reset.md): a
 * verification or a password reset is a request (request_id, token_hash,
 * expires_at) kept in the state; the latest one of each purpose is the only
 * one that counts, and once used it never counts again. The emails the
 * account itself asks for ("you already have an account", reset links) are
 * limited to USER_MAILS_PER_WINDOW per USER_MAIL_WINDOW_S: past it a request
 * is accepted and changes nothing (the answer never tells).
 *
 * decide and evolve are pure: no I/O, no clock, no globals, no allocation. */
#ifndef ORION_USER_H
#define ORION_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decision.h"
#include "personal.h"

#define USER_AGGREGATE            "user"
#define USER_KEY_MAX              34  /* bytes of a key, NUL included: "u" + 32 hex digits */
#define USER_ID_MAX               65  /* bytes, NUL included */
#define USER_EMAIL_MIN            3   /* bytes of a normalized address */
#define USER_EMAIL_MAX            255 /* bytes, NUL included */
#define USER_NAME_MAX             101 /* bytes, NUL included */
#define USER_PASSWORD_HASH_MAX    129 /* bytes, NUL included */
#define USER_PASSWORD_HASH_PREFIX "$argon2id$"
#define USER_JTI_MAX              33           /* bytes of a token id, NUL included */
#define USER_SEALED_MAX           PD_TOKEN_MAX /* bytes of a personal field as stored: a sealed token */
#define USER_TOKEN_HASH_MAX       65           /* bytes of a token hash, NUL included: 64 hex digits */
#define USER_SNAPSHOT_SCHEMA      1
#define USER_MAIL_WINDOW_S        3600 /* the window of the account's mail budget */
#define USER_MAILS_PER_WINDOW     5    /* "account exists" and reset emails per window */

/* Event type names as stored. */
#define USER_EV_REGISTERED               "UserRegistered"
#define USER_EV_ROLE_CHANGED             "RoleChanged"
#define USER_EV_TOKEN_REVOKED            "TokenRevoked"  /* one token ended (logout) */
#define USER_EV_TOKENS_REVOKED           "TokensRevoked" /* every earlier token ended: the version moved on */
#define USER_EV_ERASURE_REQUESTED        "ErasureRequested" /* logins and orders end; the erasure follows */
#define USER_EV_ERASED                   "CustomerErased" /* the data key is destroyed: personal fields are gone */
#define USER_EV_PASSWORD_CHANGED         "PasswordChanged" /* a new password hash; every earlier token ended */
#define USER_EV_VERIFICATION_REQUESTED   "VerificationRequested" /* a verification link is emailed */
#define USER_EV_EMAIL_VERIFIED           "EmailVerified" /* the link came back: the address is the owner's */
#define USER_EV_REGISTRATION_REPEATED    "RegistrationRepeated"   /* someone registered the address again */
#define USER_EV_PASSWORD_RESET_REQUESTED "PasswordResetRequested" /* a reset link is emailed */
#define USER_EV_PASSWORD_RESET           "PasswordReset" /* a new password by a reset link; tokens ended */

/* The purposes of emailed links (personal.h's pd_link_token). */
#define USER_LINK_VERIFY "verify"
#define USER_LINK_RESET  "reset"

/* Command type names on the bus. */
#define USER_CMD_REGISTER               "RegisterUser"
#define USER_CMD_CHANGE_ROLE            "ChangeRole"
#define USER_CMD_REVOKE_TOKEN           "RevokeToken"
#define USER_CMD_REVOKE_TOKENS          "RevokeTokens"
#define USER_CMD_REQUEST_ERASURE        "RequestErasure"
#define USER_CMD_COMPLETE_ERASURE       "CompleteErasure"
#define USER_CMD_CHANGE_PASSWORD        "ChangePassword"
#define USER_CMD_VERIFY_EMAIL           "VerifyEmail"
#define USER_CMD_REPEAT_REGISTRATION    "RepeatRegistration"
#define USER_CMD_REQUEST_PASSWORD_RESET "RequestPasswordReset"
#define USER_CMD_RESET_PASSWORD         "ResetPassword"

typedef enum user_role {
	USER_ROLE_NONE = 0, /* no role: a user not registered, or a role name not known */
	USER_ROLE_CUSTOMER,
	USER_ROLE_ADMIN
} user_role;

/* "customer", "admin"; NULL for USER_ROLE_NONE or an unknown value. */
const char *user_role_name(user_role role);
/* The role named by (name, len); USER_ROLE_NONE for any other string. */
user_role user_role_parse(const char *name, size_t len);

/* Normalizes an address as typed: trims ASCII whitespace at both ends and
 * lowercases ASCII letters, then checks the email bounds above. Writes the
 * result into out (cap bytes; USER_EMAIL_MAX suffice). ORN_EINVAL if the
 * address is not valid, ORN_ETOOBIG if cap is too small; out is then an empty
 * string (when cap > 0). */
orn_rc user_email_normalize(const char *email, char *out, size_t cap);

/* Writes the aggregate id of an address (normalized first, as above) into
 * out (cap bytes; USER_KEY_MAX suffice). ORN_EINVAL for an invalid address,
 * ORN_ETOOBIG if cap is too small, ORN_EINTERNAL if libsodium cannot start. */
orn_rc user_key_for_email(const char *email, char *out, size_t cap);

/* True if email is already normalized and valid (the bounds above: what
 * any event of the log may hold). */
bool user_email_valid(const char *email);

/* True if a normalized email is an address a new account may have
 * (docs/adr/022-email-addresses-and-passwords.md): RFC 5321 syntax with an
 * ASCII dot-atom local part of at most 64 bytes (no quoted strings, no
 * comments), "@", and a domain name of at least two labels, each 1..63 of
 * [a-z0-9-] not starting or ending with '-', the last not all digits (no
 * address literals); internationalized domains only in their punycode form
 * (xn--). Anything else — non-ASCII look-alikes such as fullwidth letters,
 * "a,b@x.org", "\"<script>\"@x.org", "a@x.org>" — is refused. RegisterUser is
 * decided with it; older events keep the looser check above. */
bool user_email_syntax_valid(const char *email);

/* The fields of a user (and of its commands and events). email, name and
 * password_hash are sealed tokens under the data key kid (personal.h, ADR
 * 027); events written before ADR 027 hold them clear and no kid. */
typedef struct user_fields {
	char user_id[USER_ID_MAX];
	char email[USER_SEALED_MAX];
	char name[USER_SEALED_MAX];
	char password_hash[USER_SEALED_MAX];
	user_role role;
	char kid[PD_KID_MAX];          /* the customer's data key id; "" before ADR 027 */
	char jti[USER_JTI_MAX];        /* revoke token / token revoked */
	int64_t expires_at;            /* revoke token / token revoked */
	int64_t token_version;         /* the state's; tokens revoked: the new one */
	bool unverified;               /* register / registered: "verified": false (absent: verified) */
	char request_id[USER_JTI_MAX]; /* an emailed link's request */
	char token_hash[USER_TOKEN_HASH_MAX]; /* its token's hash; with expires_at */
	int64_t at;                           /* commands: now (seconds); repeated, reset requested: when */
} user_fields;

/* One emailed link's request as the account keeps it (the latest of its
 * purpose). */
typedef struct user_request {
	char request_id[USER_JTI_MAX];
	char token_hash[USER_TOKEN_HASH_MAX]; /* "" when none was asked for */
	int64_t expires_at;
	bool used;
} user_request;

/* Where an account stands with its erasure (ADR 027). */
typedef enum user_erasure {
	USER_ACTIVE = 0,
	USER_ERASURE_REQUESTED, /* no login, no order; the erasure role finishes it */
	USER_ERASED             /* the data key is destroyed; the personal fields are empty */
} user_erasure;

typedef struct user_state {
	bool exists;
	user_erasure erasure;
	user_fields fields; /* fields.unverified: the address is not proven yet */
	user_request verification, reset;
	int64_t mail_window_at; /* start of the mail budget's window, seconds; 0: none yet */
	int64_t mail_count;     /* emails asked for in that window */
} user_state;

typedef enum user_command_kind {
	USER_REGISTER,
	USER_CHANGE_ROLE,
	USER_REVOKE_TOKEN,           /* {jti, expires_at}: this token ends (logout) */
	USER_REVOKE_TOKENS,          /* {}: every token issued so far ends (the version moves on) */
	USER_REQUEST_ERASURE,        /* {}: the customer (or an admin) asks for the erasure */
	USER_COMPLETE_ERASURE,       /* {}: the data key is destroyed; the erasure role records it */
	USER_CHANGE_PASSWORD,        /* {password_hash}: sealed with the account's kid; every token ends */
	USER_VERIFY_EMAIL,           /* {token_hash, at}: the verification link came back */
	USER_REPEAT_REGISTRATION,    /* {request_id, at}: the address was registered again */
	USER_REQUEST_PASSWORD_RESET, /* {request_id, token_hash, expires_at, at} */
	USER_RESET_PASSWORD          /* {token_hash, password_hash, at}: sealed with the account's kid */
} user_command_kind;

typedef struct user_command {
	user_command_kind kind;
	user_fields fields; /* register: the account's; change role: role; revoke token: jti, expires_at */
} user_command;

typedef enum user_event_kind {
	USER_REGISTERED,
	USER_ROLE_CHANGED,
	USER_TOKEN_REVOKED,
	USER_TOKENS_REVOKED,
	USER_ERASURE_REQUESTED_EVENT,
	USER_ERASED_EVENT,
	USER_PASSWORD_CHANGED,         /* {password_hash, token_version}: the new hash and the new version */
	USER_VERIFICATION_REQUESTED,   /* {request_id, token_hash, expires_at} */
	USER_EMAIL_VERIFIED,           /* {request_id} */
	USER_REGISTRATION_REPEATED,    /* {request_id, at} */
	USER_PASSWORD_RESET_REQUESTED, /* {request_id, token_hash, expires_at, at} */
	USER_PASSWORD_RESET            /* {request_id, password_hash, token_version}; verifies the address */
} user_event_kind;

typedef struct user_event {
	user_event_kind kind;
	user_fields fields; /* registered: the account's; role changed: role; token revoked: jti,
	                       expires_at; tokens revoked: token_version */
} user_event;

typedef enum user_verdict {
	USER_OK = 0,
	USER_REJ_NOT_FOUND,     /* change role of a user not registered */
	USER_REJ_EXISTS,        /* register of a registered address */
	USER_REJ_INVALID,       /* a field out of bounds */
	USER_REJ_NO_CHANGE,     /* change to the role the user has */
	USER_REJ_WRONG_STATE,   /* complete an erasure nobody asked for; change the password of an account
	                          erased or being erased */
	USER_REJ_TOKEN_INVALID, /* a link's token is not the account's latest of its purpose */
	USER_REJ_TOKEN_USED,    /* the link was used already */
	USER_REJ_TOKEN_EXPIRED  /* the link's time is over */
} user_verdict;

#define USER_MAX_EVENTS 2 /* registered (+ verification requested) */

typedef struct user_events {
	user_event items[USER_MAX_EVENTS];
	size_t count;
} user_events;

/* Sets an empty state (no user registered). Owns nothing. */
void user_state_init(user_state *s);

/* Pure decision: fills out (cleared first) and returns the verdict. */
user_verdict user_decide(const user_state *s, const user_command *c, user_events *out);
/* Applies one event. A role change of a user not registered changes nothing. */
void user_evolve(user_state *s, const user_event *e);

/* Name of the first field of c out of bounds ("user_id", "email", "name",
 * "password_hash", "role", "kid"), NULL when c is valid. RegisterUser's
 * personal fields must be sealed with its kid: the decider never lets a clear
 * one into the log (ADR 027). */
const char *user_invalid_field(const user_command *c);

/* Name of the first clear field of a new account out of bounds ("user_id",
 * "email", "name", "password_hash", "role"), NULL when valid: what a sealer
 * (the gateway, the CLI) checks before it seals, with the email's RFC 5321
 * syntax (ADR 022). */
const char *user_clear_invalid_field(const user_fields *clear);

/* Stable rejection code string ("exists", ...); "" for USER_OK. */
const char *user_verdict_code(user_verdict v);

/* Payload codecs (msgpack maps: register/registered {user_id, email, name,
 * password_hash, role, kid?, verified?} (register with verified false also
 * {request_id, token_hash, expires_at}; "verified" is written only when
 * false), change role/role changed {role}, revoke token/token revoked {jti,
 * expires_at}, revoke tokens {}, tokens revoked {token_version}, change
 * password {password_hash}, password changed {password_hash, token_version},
 * verification requested {request_id, token_hash, expires_at}, verify email
 * {token_hash, at}, email verified {request_id}, repeat registration /
 * registration repeated {request_id, at}, request password reset / password
 * reset requested {request_id, token_hash, expires_at, at}, reset password
 * {token_hash, password_hash, at}, password reset {request_id,
 * password_hash, token_version}). Encoders append to w;
 * ORN_EINVAL for an unknown kind or an unterminated string (a role without a
 * name is written as nil). Decoders take the type name: ORN_EINVAL for an
 * unknown type, ORN_EDECODE for anything malformed (wrong types, missing or
 * repeated keys, over-long strings); unknown keys are skipped. A command's
 * unknown role decodes as USER_ROLE_NONE for decide to reject; event decoding
 * rejects values decide could not have emitted. */
orn_rc user_command_encode(mp_writer *w, const user_command *c);
orn_rc user_command_decode(const char *type, const uint8_t *payload, size_t len, user_command *out);
orn_rc user_event_encode(mp_writer *w, const user_event *e);
orn_rc user_event_decode(const char *type, const uint8_t *payload, size_t len, user_event *out);

/* Type names of a kind; NULL for an unknown kind. */
const char *user_command_type(user_command_kind kind);
const char *user_event_type(user_event_kind kind);

/* The kind table the actor runtime serves. The snapshot holds the account
 * and its token_version (a snapshot without it, written before tokens could
 * be revoked, restores with version 0); the view {exists, user_id, email,
 * name, role, token_version} leaves the password hash out. */
extern const act_kind user_kind;

#endif
