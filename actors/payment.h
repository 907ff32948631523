/* payment.h — the payment aggregate: what happened at the card provider for
 * one order (ADR 009; ADR 028 section 2). The aggregate id is the order id.
 * It records the payment method id, brand, last 4 digits and the provider's
 * ids only: never a card number, a CVC or a holder name.
 *
 * An attempt is one payment intent at the provider, created and confirmed
 * with the attempt's provider key. Its story: PaymentAttempted (the claim,
 * before the call) → PaymentActionRequired{intent_id, url} (3-D Secure) →
 * PaymentSucceeded{intent_id, charge_id} | PaymentDeclined{code}. A
 * succeeded intent (a "charge" below) may be refunded:
 * PaymentRefundRequested{intent_id, refund_key} → PaymentRefunded |
 * PaymentRefundFailed, and after a failure requested again with n + 1.
 *
 * Status (derived after every event): succeeded once any intent succeeded;
 * else that of the current (last) attempt: declined, requires_action,
 * attempted; none without attempts. An attempt is open until it is declined
 * or an intent succeeds for it.
 *
 * Rules (the verdict in brackets). Every outcome command is an accepted
 * no-op when the state already holds that outcome: the provider's answer
 * and its webhooks report the same outcome in any order, more than once.
 *   RecordAttempt   with the provider key of the current attempt: a no-op in
 *                   any status (a redelivery or a client retry). Otherwise:
 *                   [in_progress] while the current attempt is open; after a
 *                   success [wrong_state]; past PAYMENT_ATTEMPTS_MAX [limit].
 *   RecordActionRequired{intent_id, url}  applies to the attempt naming the
 *                   intent, else to the current attempt if it has no intent
 *                   yet (the intent id is learned here); a no-op if that
 *                   attempt already requires an action or is settled (a
 *                   later outcome is held); no such attempt [wrong_state].
 *   RecordSuccess{intent_id, charge_id}  a no-op if that intent already
 *                   succeeded. Otherwise recorded whatever the status — also
 *                   for an attempt already declined: an intent declined once
 *                   (a failed 3-D Secure, a webhook of its first try) may
 *                   succeed later, and money the provider took must be in
 *                   the log, to be kept (the order still awaits payment) or
 *                   refunded (it moved on: ADR 009 section 3). It binds to
 *                   the attempt naming the intent, else to the current
 *                   attempt if it has no intent and no success yet, else to
 *                   none (a second charge, refunded). [wrong_state] without
 *                   any attempt; past PAYMENT_CHARGES_MAX [limit].
 *   RecordDecline{code, intent_id?}  declines the current open attempt. A
 *                   no-op when the current attempt is declined already (any
 *                   code: the outcome is held), or when intent_id names an
 *                   intent that succeeded, an earlier attempt, or not the
 *                   current attempt's intent (a stale report: a succeeded
 *                   intent never fails). [wrong_state] without an attempt, or
 *                   without intent_id when the current attempt succeeded.
 *   RecordRefundRequest{intent_id, refund_key, amount_cents}  the claim of a
 *                   refund, before the provider is called. refund_key must
 *                   end in ":refund:<intent_id>:<n>" (payment_refund_key)
 *                   with n = 1 for a first refund and the failed key's n + 1
 *                   after a failure [invalid]. The same key as the last
 *                   request: a no-op in any refund state (the caller replays
 *                   that key at the provider). Another key while requested
 *                   [in_progress], once refunded [wrong_state]. An intent that
 *                   did not succeed here [unknown_charge]. n past
 *                   PAYMENT_REFUND_TRIES_MAX [limit].
 *   RecordRefund{intent_id, refund_id, amount_cents}  a no-op once that
 *                   intent is refunded; otherwise recorded (requested, failed,
 *                   or none: a refund made elsewhere is still the truth).
 *                   [unknown_charge] as above.
 *   RecordRefundFailure{intent_id, refund_key, reason}  needs the requested
 *                   refund with that key; a no-op once refunded or failed
 *                   with that key; else [wrong_state]; [unknown_charge].
 *
 * Events written before ADR 028 still decode and evolve: PaymentAttempted
 * with brand and last4 and no payment method, PaymentSucceeded with a charge
 * id and no intent, PaymentRefunded{charge_id, refund_id, reason}.
 *
 * Bounds (rejection "invalid"): provider ids (payment method, intent,
 * charge, refund) 1..128 printable ASCII without space; the payment method
 * also starts "pm_"; keys 1..255 of the same; url 1..255 of the same; brand
 * 1..32 of [a-z0-9_-] and last4 4 digits, each also "" when a payment method
 * is given (the provider reports them); currency 3 uppercase letters;
 * amounts 1..10^10 cents (a refund's recorded amount also 0: not reported);
 * decline code and reasons 1..200 bytes of text (actors/text.h); times
 * 0..PAYMENT_TIME_MAX.
 *
 * Time arrives in every command (now_ms) and every event carries it (at_ms).
 * decide and evolve are pure: no I/O, no clock, no globals, no allocation. */
#ifndef ORION_PAYMENT_H
#define ORION_PAYMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decision.h"

#define PAYMENT_AGGREGATE        "payment"
#define PAYMENT_ID_MAX           129 /* provider ids, NUL included */
#define PAYMENT_KEY_MAX          256 /* the provider's Idempotency-Keys, NUL included */
#define PAYMENT_URL_MAX          256 /* a challenge URL, NUL included (it is a reply's detail) */
#define PAYMENT_CURRENCY_MAX     4
#define PAYMENT_BRAND_MAX        33
#define PAYMENT_LAST4_MAX        5
#define PAYMENT_TEXT_MAX         201 /* decline code, reasons, NUL included */
#define PAYMENT_AMOUNT_MAX       10000000000LL
#define PAYMENT_TIME_MAX         (INT64_MAX / 4) /* ms */
#define PAYMENT_ATTEMPTS_MAX     16              /* attempts per order (card testing stops here) */
#define PAYMENT_CHARGES_MAX      8               /* succeeded intents per order */
#define PAYMENT_REFUND_TRIES_MAX 99              /* n of a refund key */
#define PAYMENT_SNAPSHOT_SCHEMA  2

/* Event type names as stored. */
#define PAYMENT_EV_ATTEMPTED        "PaymentAttempted"
#define PAYMENT_EV_SUCCEEDED        "PaymentSucceeded"
#define PAYMENT_EV_DECLINED         "PaymentDeclined"
#define PAYMENT_EV_REFUNDED         "PaymentRefunded"
#define PAYMENT_EV_ACTION_REQUIRED  "PaymentActionRequired"
#define PAYMENT_EV_REFUND_REQUESTED "PaymentRefundRequested"
#define PAYMENT_EV_REFUND_FAILED    "PaymentRefundFailed"

/* The decline code of an attempt the provider never answered usably,
 * closed once it had its time (no intent was found for the order). */
#define PAYMENT_UNANSWERED "provider_unanswered"
/* The decline code of an attempt the provider refused for its payment
 * method (unknown to it): closed, the order still awaits payment. */
#define PAYMENT_INVALID_METHOD "invalid_payment_method"

/* Command type names (decided in the payment role's process). */
#define PAYMENT_CMD_RECORD_ATTEMPT         "RecordAttempt"
#define PAYMENT_CMD_RECORD_SUCCESS         "RecordSuccess"
#define PAYMENT_CMD_RECORD_DECLINE         "RecordDecline"
#define PAYMENT_CMD_RECORD_REFUND          "RecordRefund"
#define PAYMENT_CMD_RECORD_ACTION_REQUIRED "RecordActionRequired"
#define PAYMENT_CMD_RECORD_REFUND_REQUEST  "RecordRefundRequest"
#define PAYMENT_CMD_RECORD_REFUND_FAILURE  "RecordRefundFailure"

typedef enum payment_status {
	PAYMENT_STATUS_NONE = 0, /* never attempted */
	PAYMENT_STATUS_ATTEMPTED,
	PAYMENT_STATUS_SUCCEEDED,
	PAYMENT_STATUS_DECLINED,
	PAYMENT_STATUS_REQUIRES_ACTION
} payment_status;

typedef enum payment_refund_status {
	PAYMENT_REFUND_STATUS_NONE = 0,
	PAYMENT_REFUND_STATUS_PENDING, /* requested, no outcome yet */
	PAYMENT_REFUND_STATUS_REFUNDED,
	PAYMENT_REFUND_STATUS_FAILED
} payment_refund_status;

/* One attempt: what was sent to the provider and what it answered. */
typedef struct payment_attempt {
	char provider_key[PAYMENT_KEY_MAX];
	char payment_method[PAYMENT_ID_MAX]; /* "" before ADR 028 */
	int64_t amount_cents;
	char currency[PAYMENT_CURRENCY_MAX];
	char brand[PAYMENT_BRAND_MAX]; /* "" if not known */
	char last4[PAYMENT_LAST4_MAX]; /* "" if not known */
	int64_t at_ms;
	char intent_id[PAYMENT_ID_MAX];   /* "" until known */
	char action_url[PAYMENT_URL_MAX]; /* "" unless 3-D Secure was asked */
	int64_t action_at_ms;
	bool succeeded;                      /* an intent succeeded for it */
	char decline_code[PAYMENT_TEXT_MAX]; /* "" unless declined */
	int64_t declined_at_ms;              /* 0 unless declined */
} payment_attempt;

/* One succeeded intent (before ADR 028: a charge) and its refund. */
typedef struct payment_charge {
	char intent_id[PAYMENT_ID_MAX]; /* "" before ADR 028 */
	char charge_id[PAYMENT_ID_MAX]; /* "" if the provider named none */
	int64_t at_ms;
	payment_refund_status refund;
	unsigned refund_tries;                /* n of the last refund key, 0 if never requested */
	char refund_key[PAYMENT_KEY_MAX];     /* "" unless requested */
	int64_t refund_amount_cents;          /* requested, then refunded (0: not reported) */
	int64_t refund_requested_at_ms;       /* 0 unless requested */
	char refund_id[PAYMENT_ID_MAX];       /* "" unless reported */
	char refund_reason[PAYMENT_TEXT_MAX]; /* why it failed (before ADR 028: why refunded) */
	int64_t refund_done_at_ms;            /* refunded or failed; 0 otherwise */
} payment_charge;

typedef struct payment_state {
	payment_status status;
	payment_attempt attempts[PAYMENT_ATTEMPTS_MAX]; /* oldest first; the last is current */
	size_t attempt_count;
	payment_charge charges[PAYMENT_CHARGES_MAX]; /* oldest first */
	size_t charge_count;
} payment_state;

/* The payload of any payment command or event; each kind uses its fields
 * (ADR 028 section 2 lists the events'):
 *   record attempt / attempted            provider_key, payment_method, amount_cents,
 *                                         currency, brand, last4
 *   record action required / ...          intent_id, url
 *   record success / succeeded            intent_id, charge_id
 *   record decline / declined             code (the command also intent_id, optional)
 *   record refund request / requested     intent_id, refund_key, amount_cents
 *   record refund / refunded              intent_id, refund_id, amount_cents (before
 *                                         ADR 028: charge_id, refund_id, reason)
 *   record refund failure / failed        intent_id, refund_key, reason
 * time_ms is the command's now_ms (key "now_ms") or the event's at_ms. */
typedef struct payment_data {
	int64_t amount_cents;
	char currency[PAYMENT_CURRENCY_MAX];
	char brand[PAYMENT_BRAND_MAX];
	char last4[PAYMENT_LAST4_MAX];
	char provider_key[PAYMENT_KEY_MAX];
	char payment_method[PAYMENT_ID_MAX];
	char intent_id[PAYMENT_ID_MAX];
	char url[PAYMENT_URL_MAX];
	char refund_key[PAYMENT_KEY_MAX];
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
	PAYMENT_RECORD_REFUND,
	PAYMENT_RECORD_ACTION_REQUIRED,
	PAYMENT_RECORD_REFUND_REQUEST,
	PAYMENT_RECORD_REFUND_FAILURE
} payment_command_kind;

typedef struct payment_command {
	payment_command_kind kind;
	payment_data data;
} payment_command;

typedef enum payment_event_kind {
	PAYMENT_ATTEMPTED,
	PAYMENT_SUCCEEDED,
	PAYMENT_DECLINED,
	PAYMENT_REFUNDED,
	PAYMENT_ACTION_REQUIRED,
	PAYMENT_REFUND_REQUESTED,
	PAYMENT_REFUND_FAILED
} payment_event_kind;

typedef struct payment_event {
	payment_event_kind kind;
	payment_data data;
} payment_event;

typedef enum payment_verdict {
	PAYMENT_OK = 0,
	PAYMENT_REJ_INVALID,        /* a field out of bounds */
	PAYMENT_REJ_WRONG_STATE,    /* the command does not apply in the current status */
	PAYMENT_REJ_IN_PROGRESS,    /* a new attempt or refund while another one is open */
	PAYMENT_REJ_UNKNOWN_CHARGE, /* a refund of an intent that never succeeded here */
	PAYMENT_REJ_LIMIT           /* PAYMENT_ATTEMPTS_MAX, _CHARGES_MAX or _REFUND_TRIES_MAX */
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
/* True if the attempt is neither declined nor succeeded. */
bool payment_attempt_open(const payment_attempt *a);
/* The attempt whose intent is intent_id; NULL if none (or intent_id ""). */
const payment_attempt *payment_find_attempt(const payment_state *s, const char *intent_id);
/* The succeeded intent intent_id; NULL if none (or intent_id ""). */
const payment_charge *payment_find_intent(const payment_state *s, const char *intent_id);
/* The succeeded charge with that charge id; NULL if none. */
const payment_charge *payment_find_charge(const payment_state *s, const char *charge_id);

/* The refund key of the n-th refund of intent_id of order order_id,
 * "<order_id>:refund:<intent_id>:<n>", into out (cap bytes). ORN_EINVAL for
 * an empty id or n outside 1..PAYMENT_REFUND_TRIES_MAX, ORN_ETOOBIG if it
 * does not fit. The one definition of the key (ADR 028 section 3). */
orn_rc payment_refund_key(const char *order_id, const char *intent_id, unsigned n, char *out, size_t cap);
/* The n of a refund key of intent_id; 0 if key is not one. */
unsigned payment_refund_key_number(const char *key, const char *intent_id);

/* Stable status name ("none", "attempted", "succeeded", "declined",
 * "requires_action"); NULL if unknown. */
const char *payment_status_name(payment_status status);
/* Stable refund status name ("none", "pending", "succeeded", "failed", as
 * the order view's refund.status); NULL if unknown. */
const char *payment_refund_status_name(payment_refund_status status);
/* Stable rejection code string ("invalid", "wrong_state", "in_progress",
 * "unknown_charge", "limit"); "" for PAYMENT_OK. */
const char *payment_verdict_code(payment_verdict v);

/* Payload codecs (msgpack maps). Encoders append to w; ORN_EINVAL for an
 * unknown kind or an unterminated string. Decoders take the type name:
 * ORN_EINVAL for an unknown type, ORN_EDECODE for anything malformed (wrong
 * types, missing or repeated keys, over-long strings, trailing bytes); other
 * keys are skipped. Event decoding also rejects values decide could not have
 * emitted (bounds), and reads the shapes written before ADR 028. */
orn_rc payment_command_encode(mp_writer *w, const payment_command *c);
orn_rc payment_command_decode(const char *type, const uint8_t *payload, size_t len, payment_command *out);
orn_rc payment_event_encode(mp_writer *w, const payment_event *e);
orn_rc payment_event_decode(const char *type, const uint8_t *payload, size_t len, payment_event *out);

/* Type names of a kind; NULL for an unknown kind. */
const char *payment_command_type(payment_command_kind kind);
const char *payment_event_type(payment_event_kind kind);

/* The kind table the actor runtime serves. The view is {status,
 * attempt_count, attempts: [{provider_key, payment_method|nil, amount_cents,
 * currency, brand|nil, last4|nil, at_ms, intent_id|nil, action_url|nil,
 * decline_code|nil, declined_at_ms|nil}], charges: [{intent_id|nil,
 * charge_id|nil, at_ms, refunded, refund (a refund status name), refund_key|nil,
 * refund_amount_cents, refund_id|nil, refund_reason|nil}]}. The snapshot is
 * the event list that rebuilds the state ([[type, payload], ...]: each
 * attempt with its action and decline; then each success with its last
 * refund request and outcome); restore replays it. */
extern const act_kind payment_kind;

#endif
