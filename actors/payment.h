/* payment.h — the payment aggregate: what happened at the card provider for
 * one order (ADR 009). The aggregate id is the order id. It records brand,
 * last 4 digits and ids only: never a card number, a CVC or a holder name.
 *
 *   none | declined ──RecordAttempt──> attempted   (PaymentAttempted)
 *   attempted ──RecordSuccess──> succeeded          (PaymentSucceeded)
 *   attempted ──RecordDecline──> declined           (PaymentDeclined)
 *   succeeded ──RecordSuccess(another charge)──> succeeded
 *   any ──RecordRefund(a succeeded charge)──> same status (PaymentRefunded)
 *
 * Rules (the verdict in brackets):
 *   RecordAttempt  with the provider key of the current (last) attempt: an
 *                  accepted no-op in any status (a redelivery or a client retry
 *                  with the same Idempotency-Key; the provider itself refuses
 *                  other parameters under a used key). Otherwise: allowed in
 *                  none and declined (the customer retries, maybe with another
 *                  card); while an attempt is open [in_progress] (its charge may
 *                  still succeed: a new key could charge twice); after a success
 *                  [wrong_state]; past PAYMENT_ATTEMPTS_MAX attempts [limit].
 *   RecordSuccess  needs an open attempt (attempted), else [wrong_state] — but
 *                  in succeeded: the same charge id again is a no-op, another
 *                  charge id is recorded too (a duplicate charge found at the
 *                  provider, to be refunded; at most PAYMENT_CHARGES_MAX
 *                  [limit]).
 *   RecordDecline  needs an open attempt, else [wrong_state]; in declined, the
 *                  same code again is a no-op (another code: [wrong_state]).
 *   RecordRefund   needs a succeeded charge id of this payment
 *                  [unknown_charge]; a no-op if already refunded with the same
 *                  refund id, [wrong_state] with another.
 *
 * Bounds (rejection "invalid"): charge and refund ids 1..128 printable ASCII
 * (no space); the provider key 1..255 printable ASCII (no space: "<order
 * id>:<64 hex>" needs up to 129, the provider takes 255); brand 1..32 of
 * [a-z0-9_-]; last4 4 digits; currency 3 uppercase letters; amount
 * 1..10^10 cents; decline code and refund reason 1..200 bytes of text
 * (actors/text.h, spaces allowed); now_ms 0..PAYMENT_TIME_MAX.
 *
 * Time arrives in every command (now_ms) and every event carries it (at_ms).
 * decide and evolve are pure: no I/O, no clock, no globals, no allocation. */
#ifndef ORION_PAYMENT_H
#define ORION_PAYMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decision.h"

#define PAYMENT_AGGREGATE       "payment"
#define PAYMENT_ID_MAX          129 /* charge and refund ids, NUL included */
#define PAYMENT_KEY_MAX         256 /* the provider's Idempotency-Key, NUL included */
#define PAYMENT_CURRENCY_MAX    4
#define PAYMENT_BRAND_MAX       33
#define PAYMENT_LAST4_MAX       5
#define PAYMENT_TEXT_MAX        201 /* decline code, refund reason, NUL included */
#define PAYMENT_AMOUNT_MAX      10000000000LL
#define PAYMENT_TIME_MAX        (INT64_MAX / 4) /* ms */
#define PAYMENT_ATTEMPTS_MAX    16              /* attempts per order (card testing stops here) */
#define PAYMENT_CHARGES_MAX     8               /* succeeded charges per order */
#define PAYMENT_SNAPSHOT_SCHEMA 1

/* Event type names as stored. */
#define PAYMENT_EV_ATTEMPTED "PaymentAttempted"
#define PAYMENT_EV_SUCCEEDED "PaymentSucceeded"
#define PAYMENT_EV_DECLINED  "PaymentDeclined"
#define PAYMENT_EV_REFUNDED  "PaymentRefunded"

/* The decline code of an attempt the provider never answered usably,
 * closed once it had its time (no charge was found for the order). */
#define PAYMENT_UNANSWERED "provider_unanswered"

/* Command type names on the bus. */
#define PAYMENT_CMD_RECORD_ATTEMPT "RecordAttempt"
#define PAYMENT_CMD_RECORD_SUCCESS "RecordSuccess"
#define PAYMENT_CMD_RECORD_DECLINE "RecordDecline"
#define PAYMENT_CMD_RECORD_REFUND  "RecordRefund"

typedef enum payment_status {
	PAYMENT_STATUS_NONE = 0, /* never attempted */
	PAYMENT_STATUS_ATTEMPTED,
	PAYMENT_STATUS_SUCCEEDED,
	PAYMENT_STATUS_DECLINED
} payment_status;

/* One attempt: what was sent to the provider and, if declined, its answer. */
typedef struct payment_attempt {
	char provider_key[PAYMENT_KEY_MAX];
	int64_t amount_cents;
	char currency[PAYMENT_CURRENCY_MAX];
	char brand[PAYMENT_BRAND_MAX];
	char last4[PAYMENT_LAST4_MAX];
	int64_t at_ms;
	char decline_code[PAYMENT_TEXT_MAX]; /* "" unless declined */
	int64_t declined_at_ms;              /* 0 unless declined */
} payment_attempt;

/* One succeeded charge and its refund, if any. */
typedef struct payment_charge {
	char charge_id[PAYMENT_ID_MAX];
	int64_t at_ms;
	bool refunded;
	char refund_id[PAYMENT_ID_MAX];       /* "" unless refunded */
	char refund_reason[PAYMENT_TEXT_MAX]; /* "" unless refunded */
	int64_t refunded_at_ms;               /* 0 unless refunded */
} payment_charge;

typedef struct payment_state {
	payment_status status;
	payment_attempt attempts[PAYMENT_ATTEMPTS_MAX]; /* oldest first; the last is current */
	size_t attempt_count;
	payment_charge charges[PAYMENT_CHARGES_MAX]; /* oldest first */
	size_t charge_count;
} payment_state;

/* The payload of any payment command or event; each kind uses its fields:
 *   record attempt / attempted   amount_cents, currency, brand, last4, provider_key
 *   record success / succeeded   charge_id
 *   record decline / declined    code
 *   record refund / refunded     charge_id, refund_id, reason
 * time_ms is the command's now_ms (key "now_ms") or the event's at_ms. */
typedef struct payment_data {
	int64_t amount_cents;
	char currency[PAYMENT_CURRENCY_MAX];
	char brand[PAYMENT_BRAND_MAX];
	char last4[PAYMENT_LAST4_MAX];
	char provider_key[PAYMENT_KEY_MAX];
	char charge_id[PAYMENT_ID_MAX];
	char refund_id[PAYMENT_ID_MAX];
	char code[PAYMENT_TEXT_MAX];
	char reason[PAYMENT_TEXT_MAX];
	int64_t time_ms;
} payment_data;

typedef enum payment_command_kind {
	PAYMENT_RECORD_ATTEMPT,
	PAYMENT_RECORD_SUCCESS,
	PAYMENT_RECORD_DECLINE,
	PAYMENT_RECORD_REFUND
} payment_command_kind;

typedef struct payment_command {
	payment_command_kind kind;
	payment_data data;
} payment_command;

typedef enum payment_event_kind {
	PAYMENT_ATTEMPTED,
	PAYMENT_SUCCEEDED,
	PAYMENT_DECLINED,
	PAYMENT_REFUNDED
} payment_event_kind;

typedef struct payment_event {
	payment_event_kind kind;
	payment_data data;
} payment_event;

typedef enum payment_verdict {
	PAYMENT_OK = 0,
	PAYMENT_REJ_INVALID,        /* a field out of bounds */
	PAYMENT_REJ_WRONG_STATE,    /* the command does not apply in the current status */
	PAYMENT_REJ_IN_PROGRESS,    /* a new attempt while another one is open */
	PAYMENT_REJ_UNKNOWN_CHARGE, /* refund of a charge this payment never succeeded with */
	PAYMENT_REJ_LIMIT           /* PAYMENT_ATTEMPTS_MAX or PAYMENT_CHARGES_MAX reached */
} payment_verdict;

#define PAYMENT_MAX_EVENTS 1

typedef struct payment_events {
	payment_event items[PAYMENT_MAX_EVENTS];
	size_t count;
} payment_events;

/* Sets an empty state (never attempted). Owns nothing. */
void payment_state_init(payment_state *s);

/* Pure decision: fills out (cleared first) and returns the verdict. An
 * accepted no-op returns PAYMENT_OK with no event. */
payment_verdict payment_decide(const payment_state *s, const payment_command *c, payment_events *out);
/* Applies one event. An event decide could not have emitted from s changes
 * nothing (returns false); otherwise returns true. */
bool payment_evolve(payment_state *s, const payment_event *e);

/* The current (last) attempt; NULL if none. */
const payment_attempt *payment_current_attempt(const payment_state *s);
/* The charge with that id; NULL if none. */
const payment_charge *payment_find_charge(const payment_state *s, const char *charge_id);

/* Stable status name ("none", "attempted", "succeeded", "declined"); NULL if unknown. */
const char *payment_status_name(payment_status status);
/* Stable rejection code string ("invalid", "wrong_state", "in_progress",
 * "unknown_charge", "limit"); "" for PAYMENT_OK. */
const char *payment_verdict_code(payment_verdict v);

/* Payload codecs (msgpack maps). Encoders append to w; ORN_EINVAL for an
 * unknown kind or an unterminated string. Decoders take the type name:
 * ORN_EINVAL for an unknown type, ORN_EDECODE for anything malformed (wrong
 * types, missing or repeated keys, over-long strings, trailing bytes); other
 * keys are skipped. Event decoding also rejects values decide could not have
 * emitted (bounds). */
orn_rc payment_command_encode(mp_writer *w, const payment_command *c);
orn_rc payment_command_decode(const char *type, const uint8_t *payload, size_t len, payment_command *out);
orn_rc payment_event_encode(mp_writer *w, const payment_event *e);
orn_rc payment_event_decode(const char *type, const uint8_t *payload, size_t len, payment_event *out);

/* Type names of a kind; NULL for an unknown kind. */
const char *payment_command_type(payment_command_kind kind);
const char *payment_event_type(payment_event_kind kind);

/* The kind table the actor runtime serves. The view is {status,
 * attempt_count, attempts: [{provider_key, amount_cents, currency, brand,
 * last4, at_ms, decline_code|nil, declined_at_ms|nil}], charges:
 * [{charge_id, at_ms, refunded, refund_id|nil, refund_reason|nil,
 * refunded_at_ms|nil}]}. The snapshot is the event list that rebuilds the
 * state ([[type, payload], ...]: each attempt, then its decline; then each
 * charge's success, then its refund); restore replays it. */
extern const act_kind payment_kind;

#endif
