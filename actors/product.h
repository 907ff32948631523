/* product.h — the product aggregate: a pure decider over a catalog entry.
 *
 * A product is created once with all its fields, updated field by field (sku
 * and currency never change) and deleted; a deleted product keeps its id
 * forever and answers every later command with PRODUCT_REJ_DELETED. Sku
 * uniqueness is not decided here but by the sku aggregate (sku.h), which the
 * gateway claims before creating the product.
 *
 * Bounds (checked by decide, rejection "invalid" naming the field):
 *   sku          1..64 bytes of [A-Za-z0-9_.-]
 *   name         1..200 bytes of UTF-8, no control characters
 *   description  0..4000 bytes of UTF-8, no control characters but LF and CR
 *   price_cents  0..10^10
 *   currency     3 uppercase ASCII letters (ISO 4217 shape)
 *   category     1..64 bytes of [a-z0-9-]
 * Strings longer than their buffer do not decode at all (ORN_EDECODE).
 *
 * decide and evolve are pure: no I/O, no clock, no globals, no allocation. */
#ifndef ORION_PRODUCT_H
#define ORION_PRODUCT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decision.h"
#include "sku.h"

#define PRODUCT_AGGREGATE       "product"
#define PRODUCT_SKU_MAX         SKU_MAX /* bytes, NUL included */
#define PRODUCT_NAME_MAX        201     /* bytes, NUL included */
#define PRODUCT_DESCRIPTION_MAX 4001    /* bytes, NUL included */
#define PRODUCT_CURRENCY_MAX    4       /* bytes, NUL included */
#define PRODUCT_CATEGORY_MAX    65      /* bytes, NUL included */
#define PRODUCT_PRICE_MAX       10000000000LL
#define PRODUCT_SNAPSHOT_SCHEMA 1

/* Event type names as stored. */
#define PRODUCT_EV_CREATED "ProductCreated"
#define PRODUCT_EV_UPDATED "ProductUpdated"
#define PRODUCT_EV_DELETED "ProductDeleted"

/* Command type names on the bus. */
#define PRODUCT_CMD_CREATE "CreateProduct"
#define PRODUCT_CMD_UPDATE "UpdateProduct"
#define PRODUCT_CMD_DELETE "DeleteProduct"

/* The fields of a product as bits of a set: which fields an update sets or an
 * update event changed. */
enum product_field {
	PRODUCT_FIELD_SKU = 1u << 0,
	PRODUCT_FIELD_NAME = 1u << 1,
	PRODUCT_FIELD_DESCRIPTION = 1u << 2,
	PRODUCT_FIELD_PRICE = 1u << 3,
	PRODUCT_FIELD_CURRENCY = 1u << 4,
	PRODUCT_FIELD_CATEGORY = 1u << 5,
	PRODUCT_FIELDS_MUTABLE =
	        PRODUCT_FIELD_NAME | PRODUCT_FIELD_DESCRIPTION | PRODUCT_FIELD_PRICE | PRODUCT_FIELD_CATEGORY,
	PRODUCT_FIELDS_ALL = (1u << 6) - 1,
};

typedef struct product_fields {
	char sku[PRODUCT_SKU_MAX];
	char name[PRODUCT_NAME_MAX];
	char description[PRODUCT_DESCRIPTION_MAX];
	int64_t price_cents;
	char currency[PRODUCT_CURRENCY_MAX];
	char category[PRODUCT_CATEGORY_MAX];
} product_fields;

typedef struct product_state {
	bool exists;  /* created (stays true after deletion) */
	bool deleted; /* deleted: the id is spent */
	product_fields fields;
} product_state;

typedef enum product_command_kind { PRODUCT_CREATE, PRODUCT_UPDATE, PRODUCT_DELETE } product_command_kind;

typedef struct product_command {
	product_command_kind kind;
	unsigned present; /* update: the fields it sets (PRODUCT_FIELD_*); create: ignored, all are */
	product_fields fields;
} product_command;

typedef enum product_event_kind { PRODUCT_CREATED, PRODUCT_UPDATED, PRODUCT_DELETED } product_event_kind;

typedef struct product_event {
	product_event_kind kind;
	unsigned present; /* created: PRODUCT_FIELDS_ALL; updated: the changed fields; deleted: 0 */
	product_fields fields;
} product_event;

typedef enum product_verdict {
	PRODUCT_OK = 0,
	PRODUCT_REJ_NOT_FOUND, /* update or delete of a product never created */
	PRODUCT_REJ_EXISTS,    /* create of an existing product */
	PRODUCT_REJ_DELETED,   /* any command on a deleted product */
	PRODUCT_REJ_INVALID,   /* a field out of bounds, an immutable field in an update, an empty update */
	PRODUCT_REJ_NO_CHANGE  /* an update that changes nothing */
} product_verdict;

#define PRODUCT_MAX_EVENTS 1

typedef struct product_events {
	product_event items[PRODUCT_MAX_EVENTS];
	size_t count;
} product_events;

/* Sets an empty state (the product does not exist). Owns nothing. */
void product_state_init(product_state *s);

/* Pure decision: fills out (cleared first) and returns the verdict. An update
 * emits ProductUpdated carrying only the fields whose value changes. */
product_verdict product_decide(const product_state *s, const product_command *c, product_events *out);
/* Applies one event. Updates and deletes of a product that does not exist
 * (or is deleted) change nothing; a created event always sets every field. */
void product_evolve(product_state *s, const product_event *e);

/* Name of the first field of c that breaks its bounds ("sku", "name", ...,
 * also "sku"/"currency" when an update names them), "fields" for an update
 * that names no field, NULL when c is valid. */
const char *product_invalid_field(const product_command *c);

/* True if the fields listed in mask are within their bounds. */
bool product_fields_valid(const product_fields *f, unsigned mask);

/* Stable rejection code string ("not_found", ...); "" for PRODUCT_OK. */
const char *product_verdict_code(product_verdict v);

/* Payload codecs (msgpack maps keyed sku, name, description, price_cents,
 * currency, category). Encoders append to w: create/created write every field,
 * update/updated the present ones, delete/deleted an empty map; ORN_EINVAL for
 * an unknown kind or an unterminated string. Decoders take the type name:
 * ORN_EINVAL for an unknown type, ORN_EDECODE for anything malformed (wrong
 * types, missing or repeated keys, over-long strings). Keys a payload never
 * carries are skipped; an update's product keys set out->present, so an
 * update naming sku or currency decodes and decide rejects it. Event decoding
 * also rejects values decide could not have emitted. */
orn_rc product_command_encode(mp_writer *w, const product_command *c);
orn_rc product_command_decode(const char *type, const uint8_t *payload, size_t len, product_command *out);
orn_rc product_event_encode(mp_writer *w, const product_event *e);
orn_rc product_event_decode(const char *type, const uint8_t *payload, size_t len, product_event *out);

/* Type names of a kind; NULL for an unknown kind. */
const char *product_command_type(product_command_kind kind);
const char *product_event_type(product_event_kind kind);

/* The kind table the actor runtime serves. View and snapshot are the map
 * {exists, deleted, sku, name, description, price_cents, currency, category}. */
extern const act_kind product_kind;

#endif
