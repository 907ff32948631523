/* gw_validate.h — strict, declarative validation of JSON request bodies.
 *
 * A schema is an array of gw_field ending with a field whose name is NULL.
 * The body must be one JSON object (UTF-8, no duplicate keys, no NUL in
 * strings — jansson checks), each member must be declared (unknown members
 * are errors, never ignored), of the declared type, within its bounds and
 * character class; required members must be present. Every problem found is
 * listed in the 400 problem's "errors" (up to GW_PROBLEM_MAX_ERRORS). Error
 * messages are fixed strings; input appears only as (escaped) field names. */
#ifndef ORION_GW_VALIDATE_H
#define ORION_GW_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "orn.h"

#define GW_MAX_BODY_DEFAULT (1024 * 1024)

typedef enum gw_type { GW_STRING, GW_INT, GW_BOOL, GW_OBJECT } gw_type;

/* Character classes for strings (applied after the length check). */
typedef enum gw_pattern {
	GW_PATTERN_ANY = 0, /* any UTF-8 without control characters */
	GW_PATTERN_TEXT,    /* like ANY but also allows \n and \t (descriptions) */
	GW_PATTERN_ID,      /* [A-Za-z0-9_-]{1,64} (the length bounds still apply) */
	GW_PATTERN_SLUG,    /* [a-z0-9-]+, not starting or ending with '-' */
	GW_PATTERN_EMAIL,   /* local@domain, printable ASCII, one '@', a dot in domain */
	GW_PATTERN_UPPER,   /* [A-Z]+ (currency codes) */
	GW_PATTERN_DIGITS,  /* [0-9]+ (card numbers) */
} gw_pattern;

typedef struct gw_field {
	const char *name;
	gw_type type;
	bool required;
	/* GW_STRING: length in code points, GW_INT: value range. Both 0 means
	 * unbounded (strings still obey the body limit). */
	int64_t min, max;
	gw_pattern pattern;
	const struct gw_field *fields; /* GW_OBJECT: nested schema (required) */
} gw_field;

/* Validates body (len bytes) against schema. On ORN_OK, *out is the parsed
 * object (new reference, the caller json_decrefs it) and *problem is NULL.
 * On ORN_EINVAL, *problem is a 400 problem (new reference) listing every
 * error and *out is NULL. ORN_ETOOBIG if len > max_len (no problem built:
 * the caller answers 413), ORN_ENOMEM. */
orn_rc gw_validate_json(const void *body, size_t len, size_t max_len, const gw_field *schema, json_t **out,
                        json_t **problem);

/* Validates an already parsed object; appends errors under prefix ("" at the
 * top; nested fields are reported as "card.number") to problem, unless it
 * is NULL (a check only). Returns true if no error was found. */
bool gw_validate_object(const json_t *object, const gw_field *schema, const char *prefix, json_t *problem);

/* Whether s matches the id class [A-Za-z0-9_-]{1,64} (ids in paths). */
bool gw_valid_id(const char *s);

/* Card data in a request body (ADR 028: a card number never reaches Orion):
 * true if body holds a JSON member named "card" (any case, optionally
 * with whitespace before the colon) or a run of 12 to 19 digits, single
 * spaces or dashes allowed between them, that starts with 2..6 (the card
 * networks' first digits), passes the Luhn check and stands alone: not part
 * of a longer word of letters and digits (a hex id, a token), as a card
 * number is always written. Such a body is refused before any handler reads
 * it. A run longer than 19 digits is not a card number. Pure; the body need
 * not be NUL-terminated. */
bool gw_has_card_data(const unsigned char *body, size_t len);

/* Typed access to a validated object: the value of member name, or fallback
 * when absent (the schema guarantees the type when present). */
const char *gw_json_string(const json_t *object, const char *name, const char *fallback);
int64_t gw_json_int(const json_t *object, const char *name, int64_t fallback);
bool gw_json_bool(const json_t *object, const char *name, bool fallback);
const json_t *gw_json_object(const json_t *object, const char *name);

#endif
