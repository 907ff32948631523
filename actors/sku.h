/* sku.h — the sku aggregate: one per normalized sku, it records which product
 * holds the sku, so the event store enforces sku uniqueness.
 *
 * The aggregate id is derived from the sku (sku_key_for): uppercased, with
 * '.' written as 'd' (lowercase letters never occur in a normalized sku, so
 * the mapping is one-to-one and reversible). Two products whose skus differ
 * only in case therefore meet on the same aggregate. A product claims its sku
 * before it is created and releases it when it is deleted (or its creation
 * failed); see docs/adr/005-uniqueness-of-sku-and-email.md.
 *
 * decide and evolve are pure: no I/O, no clock, no globals, no allocation. */
#ifndef ORION_SKU_H
#define ORION_SKU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decision.h"

#define SKU_AGGREGATE       "sku"
#define SKU_MAX             65 /* bytes of a sku, NUL included: 1..64 of [A-Za-z0-9_.-] */
#define SKU_KEY_MAX         65 /* bytes of a derived aggregate id, NUL included */
#define SKU_PRODUCT_ID_MAX  65 /* bytes of a product id, NUL included: [A-Za-z0-9_-]{1,64} */
#define SKU_SNAPSHOT_SCHEMA 1

/* Event type names as stored. */
#define SKU_EV_CLAIMED  "SkuClaimed"
#define SKU_EV_RELEASED "SkuReleased"

/* Command type names on the bus. */
#define SKU_CMD_CLAIM   "ClaimSku"
#define SKU_CMD_RELEASE "ReleaseSku"

/* True if sku is 1..SKU_MAX-1 bytes of [A-Za-z0-9_.-]. */
bool sku_valid(const char *sku);

/* True if id is a valid product (aggregate) id: [A-Za-z0-9_-]{1,64}. */
bool sku_product_id_valid(const char *id);

/* Writes the aggregate id of sku into out (cap bytes, SKU_KEY_MAX suffice):
 * the sku uppercased, '.' written as 'd'. The result always matches
 * [A-Za-z0-9_-]{1,64}. ORN_EINVAL if sku is not valid, ORN_ETOOBIG if cap is
 * too small; out is then an empty string (when cap > 0). */
orn_rc sku_key_for(const char *sku, char *out, size_t cap);

typedef struct sku_state {
	bool claimed;
	char owner[SKU_PRODUCT_ID_MAX]; /* the product holding the sku; "" when free */
} sku_state;

typedef enum sku_command_kind { SKU_CLAIM, SKU_RELEASE } sku_command_kind;

typedef struct sku_command {
	sku_command_kind kind;
	char product_id[SKU_PRODUCT_ID_MAX];
} sku_command;

typedef enum sku_event_kind { SKU_CLAIMED, SKU_RELEASED } sku_event_kind;

typedef struct sku_event {
	sku_event_kind kind;
	char product_id[SKU_PRODUCT_ID_MAX];
} sku_event;

typedef enum sku_verdict {
	SKU_OK = 0,      /* accepted (possibly with no events: idempotent no-op) */
	SKU_REJ_INVALID, /* the product id is not a valid id */
	SKU_REJ_TAKEN    /* claim of a sku another product holds */
} sku_verdict;

#define SKU_MAX_EVENTS 1

typedef struct sku_events {
	sku_event items[SKU_MAX_EVENTS];
	size_t count;
} sku_events;

/* Sets an empty state (the sku is free). Owns nothing: no dispose needed. */
void sku_state_init(sku_state *s);

/* Pure decision: fills out (cleared first) and returns the verdict.
 * claim: free -> SkuClaimed; held by the same product -> no event; held by
 * another -> SKU_REJ_TAKEN. release: by the owner -> SkuReleased; by anyone
 * else or when free -> no event. */
sku_verdict sku_decide(const sku_state *s, const sku_command *c, sku_events *out);
/* Applies one event. A release by a product that does not hold the sku
 * changes nothing (the state is trusted over the event). */
void sku_evolve(sku_state *s, const sku_event *e);

/* Stable rejection code string ("sku_taken", ...); "" for SKU_OK. */
const char *sku_verdict_code(sku_verdict v);

/* Payload codecs (msgpack maps {product_id}). Encoders append to w and return
 * ORN_EINVAL for an unknown kind or an unterminated id. Decoders take the type
 * name: ORN_EINVAL for an unknown type, ORN_EDECODE for anything malformed
 * (unknown keys are skipped); event decoding also rejects an invalid id. */
orn_rc sku_command_encode(mp_writer *w, const sku_command *c);
orn_rc sku_command_decode(const char *type, const uint8_t *payload, size_t len, sku_command *out);
orn_rc sku_event_encode(mp_writer *w, const sku_event *e);
orn_rc sku_event_decode(const char *type, const uint8_t *payload, size_t len, sku_event *out);

/* Type names of a kind; NULL for an unknown kind. */
const char *sku_command_type(sku_command_kind kind);
const char *sku_event_type(sku_event_kind kind);

/* The kind table the actor runtime serves. */
extern const act_kind sku_kind;

#endif
