/* mail_log.h — the mail aggregate: the delivery log of one email.
 *
 * Every email the mail role sends (an order's status email, a low-stock alert
 * to one admin) is one aggregate on orion.evt.mail.<mail id>. Its events are
 * the attempts: MailAttemptFailed for each failed send, then MailDelivered
 * (accepted by the SMTP server or the Maildir) or, once the attempts reach
 * the bound, MailFailed; both end the log (the state is "settled"). The
 * attempt count is the number of attempts the log holds, so it survives a
 * restart and is shared by every instance of the mail role.
 *
 * A settled log can be opened again by MailResendRequested (RequestResend,
 * a command the mail role serves as an actor kind: a customer asking for
 * the confirmation email again, an admin resending from the log; ADR 023):
 * the log is pending again, its attempts count from 0 for the new
 * generation, and the mail role delivers the email once more. At most
 * MAIL_LOG_RESENDS_MAX resends, one every MAIL_LOG_RESEND_INTERVAL_MS.
 *
 * Before it sends, an instance of the mail role claims the attempt
 * (ClaimAttempt: MailAttemptClaimed, by its instance id, for a lease): the
 * claim is an append on the log's version, so of two instances on two hosts
 * only one claims it and sends; the other finds it claimed and looks again
 * later. The outcome (MailAttemptFailed, MailDelivered) ends the claim; a
 * claim whose lease ran out (its instance died mid-send) may be taken over
 * (ADR 024).
 *
 * The id is derived from the email's sent-marker key (mail_log_id), so every
 * instance finds the same aggregate for the same email. No event ever holds
 * the email's body or the confirmation token: only the recipient, the kind,
 * the attempt number and the transport's error text (capped).
 *
 * decide and evolve are pure: no I/O, no clock, no globals, no allocation. */
#ifndef ORION_MAIL_LOG_H
#define ORION_MAIL_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mpack.h"
#include "orn.h"
#include "personal.h"

#define MAIL_LOG_AGGREGATE           "mail"
#define MAIL_LOG_ID_MAX              34 /* bytes of an id, NUL included: "m" + 32 hex digits */
#define MAIL_LOG_REF_MAX             65 /* bytes of an order or product id, NUL included */
#define MAIL_LOG_KIND_MAX            33 /* bytes of a kind ("awaiting_payment", "low_stock"), NUL included */
#define MAIL_LOG_RECIPIENT_MAX       PD_TOKEN_MAX /* bytes of a recipient, sealed (ADR 027), NUL included */
#define MAIL_LOG_ERROR_MAX           201 /* bytes of an error text, NUL included: longer ones are cut */
#define MAIL_LOG_SCHEMA              1
#define MAIL_LOG_KIND_LOW_STOCK      "low_stock"
#define MAIL_LOG_KIND_ACCOUNT_PREFIX "account_" /* an account's email: no order, no product (ADR 031) */
#define MAIL_LOG_BY_MAX                                                                                      \
	24 /* bytes of who asked for a resend ("customer", "admin") or who                                   \
	       claimed an attempt (an instance id), NUL included */
#define MAIL_LOG_RESENDS_MAX        5
#define MAIL_LOG_RESEND_INTERVAL_MS 60000

/* Event type names as stored. */
#define MAIL_LOG_EV_ATTEMPT_FAILED   "MailAttemptFailed"
#define MAIL_LOG_EV_DELIVERED        "MailDelivered"
#define MAIL_LOG_EV_FAILED           "MailFailed"
#define MAIL_LOG_EV_RESEND_REQUESTED "MailResendRequested"
#define MAIL_LOG_EV_CLAIMED          "MailAttemptClaimed"

/* Command type names: RequestResend on the bus (orion.cmd.mail.<mail id>);
 * the others only in the mail role's process (mail_log_writer_kind). */
#define MAIL_LOG_CMD_REQUEST_RESEND "RequestResend"
#define MAIL_LOG_CMD_CLAIM          "ClaimAttempt"
#define MAIL_LOG_CMD_RECORD_SENT    "RecordSent"
#define MAIL_LOG_CMD_RECORD_FAILED  "RecordFailed"

typedef enum mail_log_status {
	MAIL_LOG_STATUS_PENDING = 0, /* no attempt yet, or attempts failed below the bound */
	MAIL_LOG_STATUS_DELIVERED,
	MAIL_LOG_STATUS_FAILED
} mail_log_status;

/* "pending", "delivered", "failed"; NULL for another value. */
const char *mail_log_status_name(mail_log_status s);
/* The status named by name; false if name is none of them. */
bool mail_log_status_parse(const char *name, mail_log_status *out);

/* What an email is: the same in every event of one log. */
typedef struct mail_log_subject {
	char order_id[MAIL_LOG_REF_MAX];   /* the order of a status email, "" for an alert or an account's */
	char product_id[MAIL_LOG_REF_MAX]; /* the product of a low-stock alert, "" for an order email */
	char kind[MAIL_LOG_KIND_MAX];      /* the order status of the email, or "low_stock" */
	char recipient[MAIL_LOG_RECIPIENT_MAX];
} mail_log_subject;

typedef struct mail_log_state {
	bool exists; /* one attempt at least */
	mail_log_status status;
	mail_log_subject subject;
	uint32_t attempts;
	char last_error[MAIL_LOG_ERROR_MAX];
	int64_t delivered_at_ms;          /* 0 unless delivered */
	int64_t updated_at_ms;            /* at_ms of the last event */
	uint32_t generation;              /* resends requested so far: 0 for the first sending */
	int64_t resend_requested_at_ms;   /* at_ms of the last MailResendRequested, 0 if none */
	char claimed_by[MAIL_LOG_BY_MAX]; /* the instance whose attempt is under way, "" if none */
	int64_t claim_until_ms;           /* when its claim lapses */
} mail_log_state;

typedef enum mail_log_command_kind {
	MAIL_LOG_RECORD_SENT,    /* the server accepted the email */
	MAIL_LOG_RECORD_FAILED,  /* the send failed with error */
	MAIL_LOG_REQUEST_RESEND, /* send it again (by, at_ms): the only command on the bus */
	MAIL_LOG_CLAIM           /* the instance `by` is about to send, for lease_ms */
} mail_log_command_kind;

typedef struct mail_log_command {
	mail_log_command_kind kind;
	mail_log_subject subject;
	char error[MAIL_LOG_ERROR_MAX]; /* failed: the transport's error */
	int64_t at_ms;
	uint32_t max_attempts; /* the bound: the failed attempt with this number fails the email (>= 1) */
	/* failed, when > 0: the email matters until then (a confirmation: the
	 * order's deadline) and fails at the first failed attempt at or past it,
	 * whatever max_attempts says */
	int64_t deadline_ms;
	char by[MAIL_LOG_BY_MAX]; /* request resend: "customer" or "admin"; claim: the instance */
	int64_t lease_ms;         /* claim: how long the claim holds, > 0 */
	uint32_t generation;      /* claim: the sending it is for (0, or the resend's generation) */
} mail_log_command;

typedef enum mail_log_event_kind {
	MAIL_LOG_ATTEMPT_FAILED,
	MAIL_LOG_DELIVERED,
	MAIL_LOG_FAILED,
	MAIL_LOG_RESEND_REQUESTED,
	MAIL_LOG_CLAIMED
} mail_log_event_kind;

typedef struct mail_log_event {
	mail_log_event_kind kind;
	mail_log_subject subject;
	uint32_t attempt; /* attempt failed, delivered, claimed: its number; failed: the attempts
	                     made; resend requested: the new generation (1, 2, ...) */
	char error[MAIL_LOG_ERROR_MAX]; /* attempt failed: error; failed: last_error; others: "" */
	char by[MAIL_LOG_BY_MAX];       /* resend requested: who asked; claimed: the instance */
	int64_t until_ms;               /* claimed: when the claim lapses */
	int64_t at_ms;
} mail_log_event;

typedef enum mail_log_verdict {
	MAIL_LOG_OK = 0,
	MAIL_LOG_REJ_SETTLED,        /* the log already ends in MailDelivered or MailFailed */
	MAIL_LOG_REJ_INVALID,        /* no kind or recipient, no order or product, a bound of 0, a bad "by" */
	MAIL_LOG_REJ_NOT_FOUND,      /* resend: the email was never attempted */
	MAIL_LOG_REJ_NOT_RESENDABLE, /* resend: a low-stock alert (it says how things stood then) */
	MAIL_LOG_REJ_TOO_SOON,       /* resend: the last one was asked less than the interval ago */
	MAIL_LOG_REJ_TOO_MANY,       /* resend: MAIL_LOG_RESENDS_MAX already */
	MAIL_LOG_REJ_CLAIMED         /* claim: another instance's claim holds */
} mail_log_verdict;

#define MAIL_LOG_MAX_EVENTS 2

typedef struct mail_log_events {
	mail_log_event items[MAIL_LOG_MAX_EVENTS];
	size_t count;
} mail_log_events;

/* Sets an empty log (no attempt). Owns nothing. */
void mail_log_state_init(mail_log_state *s);

/* Pure decision (out is cleared first). Sent: MailDelivered with attempt
 * attempts + 1. Failed: MailAttemptFailed with attempt attempts + 1, followed
 * by MailFailed when that attempt reaches max_attempts (or, with a deadline,
 * when at_ms reaches the deadline). A settled log rejects both. Request
 * resend: MailResendRequested (generation + 1) on an attempted log that is
 * not an alert, within the bounds (MAIL_LOG_RESENDS_MAX, one every
 * MAIL_LOG_RESEND_INTERVAL_MS); a pending log accepts it with no event (the
 * email is being sent). Claim: MailAttemptClaimed (attempt attempts + 1,
 * until at_ms + lease_ms) on a pending log of the generation asked for
 * (another: settled) that no other instance's claim holds at at_ms
 * (claimed); no event if `by` holds it already. An outcome or a resend ends
 * the claim. */
mail_log_verdict mail_log_decide(const mail_log_state *s, const mail_log_command *c, mail_log_events *out);

/* Applies one event; an event after the log settled changes nothing, but
 * MailResendRequested, which opens it again. */
void mail_log_evolve(mail_log_state *s, const mail_log_event *e);

/* Stable rejection code ("settled", "invalid", "not_found",
 * "not_resendable", "too_soon", "too_many", "claimed"); "" for MAIL_LOG_OK. */
const char *mail_log_verdict_code(mail_log_verdict v);

/* Copies text into an error field, cut at MAIL_LOG_ERROR_MAX - 1 bytes (on a
 * UTF-8 boundary) and with control characters replaced by spaces. */
void mail_log_error_set(char out[MAIL_LOG_ERROR_MAX], const char *text);

/* The id of the email whose sent-marker key is key: "m" + 32 hex digits of
 * BLAKE2b-128(key). ORN_EINVAL for an empty key, ORN_EINTERNAL if libsodium
 * cannot start. */
orn_rc mail_log_id(char out[MAIL_LOG_ID_MAX], const char *key);

/* Payload codecs: msgpack maps {order_id, kind, recipient, attempt, error?,
 * at} (MailAttemptFailed: error; MailDelivered: none; MailFailed: attempts
 * and last_error instead of attempt and error), plus product_id when set.
 * The encoder appends to w (ORN_EINVAL for an unknown kind). The decoder
 * takes the type name: ORN_EINVAL for an unknown type, ORN_EDECODE for
 * anything malformed (wrong types, missing keys, over-long strings, an
 * attempt of 0); unknown keys are skipped. */
orn_rc mail_log_event_encode(mp_writer *w, const mail_log_event *e);
orn_rc mail_log_event_decode(const char *type, const uint8_t *payload, size_t len, mail_log_event *out);

/* The type name of a kind; NULL for an unknown kind. */
const char *mail_log_event_type(mail_log_event_kind kind);

/* MailResendRequested's payload is {order_id, product_id?, kind, recipient,
 * generation, by, at}; MailAttemptClaimed's {order_id, product_id?, kind,
 * recipient, attempt, by, until, at}.
 *
 * Commands: RequestResend {by, at}; ClaimAttempt {order_id, product_id?,
 * kind, recipient, by, lease, generation, at}; RecordSent {order_id, product_id?, kind,
 * recipient, max_attempts, at}; RecordFailed the same with deadline and error
 * (encode: ORN_EINVAL for an unknown kind; decode: ORN_EINVAL for an unknown
 * type, ORN_EDECODE for anything malformed). */
orn_rc mail_log_command_encode(mp_writer *w, const mail_log_command *c);
orn_rc mail_log_command_decode(const char *type, const uint8_t *payload, size_t len, mail_log_command *out);
/* The type name of a command kind; NULL for an unknown kind. */
const char *mail_log_command_type(mail_log_command_kind kind);

/* The kind table the mail role serves on orion.cmd.mail.<mail id>:
 * RequestResend only (any other command is refused "invalid"). No snapshot:
 * a log is a handful of events. */
struct act_kind;
extern const struct act_kind mail_log_kind;

/* The same aggregate for the mail role's own commands, decided in its process
 * (kit_execute): every command of mail_log_command_kind. */
extern const struct act_kind mail_log_writer_kind;

#endif
