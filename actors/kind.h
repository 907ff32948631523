/* kind.h — plumbing every aggregate's codec and kind adapter shares.
 *
 * The aggregates differ in their fields and rules, not in how a type name is
 * looked up or how decided events reach the act_decision: that part lives
 * here once. */
#ifndef ORION_KIND_H
#define ORION_KIND_H

#include <stddef.h>
#include <stdint.h>

#include "decision.h"
#include "mpack.h"

/* Index of the entry of table (count entries of stride bytes each) whose
 * FIRST member, a const char * type name, equals type; -1 if none or type is
 * NULL. Use KIND_TYPE_INDEX with an array. */
int kind_type_index(const void *table, size_t count, size_t stride, const char *type);
#define KIND_TYPE_INDEX(table, type)                                                                         \
	kind_type_index((table), ORN_ARRAY_LEN(table), sizeof((table)[0]), (type))

/* The FIRST member, a const char * name, of entry i of table (count entries of
 * stride bytes each); NULL if i is out of range. Use KIND_NAME_AT with an array. */
const char *kind_name_at(const void *table, size_t count, size_t stride, size_t i);
#define KIND_NAME_AT(table, i) kind_name_at((table), ORN_ARRAY_LEN(table), sizeof((table)[0]), (size_t)(i))

/* Defines the aggregate prefix's public name lookups over the file's tables:
 * prefix_verdict_code ("unknown" for a verdict out of verdicts_),
 * prefix_command_type and prefix_event_type (NULL out of their tables). Each
 * table is an array whose entries are, or start with, a const char * name. Use
 * once per aggregate, at file scope, followed by a semicolon. */
#define KIND_NAMES(prefix, verdicts_, commands_, events_)                                                    \
	const char *prefix##_verdict_code(prefix##_verdict v)                                                \
	{                                                                                                    \
		const char *code = KIND_NAME_AT(verdicts_, v);                                               \
		return code != NULL ? code : "unknown";                                                      \
	}                                                                                                    \
	const char *prefix##_command_type(prefix##_command_kind kind)                                        \
	{                                                                                                    \
		return KIND_NAME_AT(commands_, kind);                                                        \
	}                                                                                                    \
	const char *prefix##_event_type(prefix##_event_kind kind)                                            \
	{                                                                                                    \
		return KIND_NAME_AT(events_, kind);                                                          \
	}                                                                                                    \
	extern const act_kind prefix##_kind /* declared by its header: this only asks for the semicolon */

/* Encodes event i of an aggregate's typed event list into w (appending) and
 * sets *type to its type name. */
typedef orn_rc kind_encode_fn(mp_writer *w, const void *events, size_t i, const char **type);

/* Encodes the count events with encode and emits each into d with payload
 * schema. ORN_ENOMEM, or what encode or act_decision_emit returned. */
orn_rc kind_emit_events(act_decision *d, uint32_t schema, const void *events, size_t count,
                        kind_encode_fn *encode);

/* Reads one key/value pair of a payload map into out: a key in fields is
 * read, a repeated one rejected, any other handled as the aggregate's rules
 * say; *seen collects the fields read. */
typedef orn_rc kind_entry_fn(mp_reader *r, unsigned fields, unsigned *seen, void *out);

/* Zeroes the out_size bytes of out, then decodes a payload that is exactly one
 * map, each key/value pair with entry, holding every field of fields. Any
 * malformation (not a map, a field missing, an error from entry, trailing
 * bytes) is ORN_EDECODE. */
orn_rc kind_decode_map(const uint8_t *payload, size_t len, unsigned fields, kind_entry_fn *entry, void *out,
                       size_t out_size);

/* kind_decode_map for a payload that may also hold the fields of optional:
 * entry reads required | optional, only required must all be present; *seen
 * (may be NULL) receives the fields read. */
orn_rc kind_decode_map_optional(const uint8_t *payload, size_t len, unsigned required, unsigned optional,
                                kind_entry_fn *entry, void *out, size_t out_size, unsigned *seen);

/* ---- payload fields described by a table ----
 *
 * An aggregate whose payloads are maps of named fields of one data struct
 * describes each field once: its key, its bit, its kind of value, where it
 * lives in the struct; the codecs below read and write any set of them. */

typedef enum kind_value {
	KIND_TEXT, /* a NUL-terminated char[cap] */
	KIND_INT,  /* an int64_t */
	KIND_BOOL, /* a bool */
	KIND_OWN   /* anything else: the table's own functions write, read and check it */
} kind_value;

typedef struct kind_field {
	const char *key;
	unsigned field; /* its bit */
	kind_value value;
	size_t offset;    /* in the data struct */
	size_t cap;       /* KIND_TEXT: bytes of its buffer, the terminator included */
	const char *rule; /* the rule a rejection quotes (may be NULL) */
} kind_field;

typedef struct kind_fields {
	const kind_field *items;
	size_t count;
	/* For KIND_OWN fields (all NULL when there is none): whether data's value
	 * can be written (NULL: always), how it is written and how it is read. */
	bool (*own_fits)(const kind_field *f, const void *data);
	void (*own_write)(mp_writer *w, const kind_field *f, const void *data);
	orn_rc (*own_read)(mp_reader *r, const kind_field *f, void *data);
} kind_fields;

/* The members of a kind_fields that name the array table, for the start of its
 * initializer (the own functions, where needed, follow). */
#define KIND_FIELDS_OF(table) .items = (table), .count = ORN_ARRAY_LEN(table)

/* True when every field of fields in data can be written (each text
 * terminated within its buffer, each own value fits). */
bool kind_fields_fit(const kind_fields *t, unsigned fields, const void *data);

/* How many fields of t are among fields. */
uint32_t kind_fields_count(const kind_fields *t, unsigned fields);

/* Writes the key/value pairs of the fields of t among fields (no map header),
 * in the table's order. */
void kind_fields_write(mp_writer *w, const kind_fields *t, unsigned fields, const void *data);

/* Writes the map of the fields of t among fields: ORN_EINVAL (nothing written)
 * if one does not fit, else the writer's status. */
orn_rc kind_fields_encode(mp_writer *w, const kind_fields *t, unsigned fields, const void *data);

/* Reads the value of a pair whose key (key, len) was read: a field of t among
 * fields goes into data, a repeated one is ORN_EDECODE, any other key's value
 * is skipped; *seen collects the fields read. */
orn_rc kind_fields_read_value(mp_reader *r, const kind_fields *t, const char *key, uint32_t len,
                              unsigned fields, unsigned *seen, void *data);

/* kind_fields_read_value after reading the pair's key (a kind_entry_fn's work). */
orn_rc kind_fields_read_entry(mp_reader *r, const kind_fields *t, unsigned fields, unsigned *seen,
                              void *data);

/* An aggregate's typed functions behind void pointers: what kind_decide and
 * kind_evolve need to turn envelopes into its command and event structs and to
 * run its pure decide and evolve. One static const instance per aggregate. */
typedef struct kind_codec {
	uint32_t schema;            /* the payload schema of its commands and events */
	size_t command_size;        /* sizeof its command struct */
	size_t events_size;         /* sizeof its events struct (the decide output) */
	size_t events_count_offset; /* offsetof the size_t event count in that struct */
	size_t event_size;          /* sizeof its event struct */
	orn_rc (*decode_command)(const char *type, const uint8_t *payload, size_t len, void *command);
	/* The pure decide: 0 (accepted, events filled) or a rejection verdict. */
	int (*decide)(const void *state, const void *command, void *events);
	/* The stable code of a rejection verdict ("out_of_stock"). */
	const char *(*verdict_code)(int verdict);
	/* Optional (NULL: a rejection has no detail): writes the detail text of a
	 * rejection into detail, at most cap bytes with the terminator. */
	void (*describe)(int verdict, const void *state, const void *command, char *detail, size_t cap);
	kind_encode_fn *encode_event_at;
	orn_rc (*decode_event)(const char *type, const uint8_t *payload, size_t len, void *event);
	/* Applies a decoded event: ORN_OK, or an error that leaves state as it was. */
	orn_rc (*evolve)(void *state, const void *event);
} kind_codec;

/* act_kind.decide of the aggregate k describes: decodes cmd, decides it against
 * state and emits the events into d, or rejects the command in d with the
 * verdict's code and description. ORN_EDECODE if cmd's schema is not k's,
 * what decode_command returned if it fails, ORN_ENOMEM, or what
 * kind_emit_events returned. A rejection is ORN_OK. */
orn_rc kind_decide(const kind_codec *k, const void *state, const env_envelope *cmd, act_decision *d);

/* act_kind.evolve of the aggregate k describes: decodes event and applies it to
 * state. ORN_EDECODE if event's schema is not k's, what decode_event returned
 * if it fails, ORN_ENOMEM, or what evolve returned. */
orn_rc kind_evolve(const kind_codec *k, void *state, const env_envelope *event);

/* Applies a decoded event to a state while restoring a history: false if the
 * event is no transition from the state (the history is then invalid). */
typedef bool kind_apply_fn(void *state, const void *event);

/* act_kind.restore of an aggregate whose snapshot is its history (an array of
 * [type, payload] pairs, payloads decoded with k) and whose state owns nothing
 * and starts all zeros: replays the history with apply onto a fresh state of
 * state_size bytes and copies that over state only when all of it applies.
 * ORN_EDECODE for a malformed or invalid history (state unchanged), ORN_ENOMEM. */
orn_rc kind_restore_history(const kind_codec *k, size_t state_size, kind_apply_fn *apply, void *state,
                            const uint8_t *buf, size_t len);

/* Reads one key/value pair of a snapshot map into state; *seen collects the
 * keys read. */
typedef orn_rc kind_snapshot_entry_fn(mp_reader *r, void *state, unsigned *seen);

/* Whether a state read from a snapshot map, with the keys seen, is whole and
 * consistent. */
typedef bool kind_snapshot_whole_fn(const void *state, unsigned seen);

/* act_kind.restore of an aggregate whose snapshot is one map: reads each pair
 * with entry into a fresh state of state_size bytes (set up by init, released
 * by dispose) and, when whole says so and no byte trails, disposes of state and
 * moves the fresh one into it. ORN_ENOMEM, or ORN_EDECODE with state
 * unchanged for any other failure. */
orn_rc kind_restore_map(size_t state_size, void (*init)(void *), void (*dispose)(void *),
                        kind_snapshot_entry_fn *entry, kind_snapshot_whole_fn *whole, void *state,
                        const uint8_t *buf, size_t len);

/* Defines the kind adapter of the aggregate prefix, whose typed functions and
 * types follow the naming of actors/ (prefix_command_decode, prefix_decide,
 * prefix_verdict_code, prefix_event_type, prefix_event_encode,
 * prefix_event_decode; prefix_command, prefix_events with items and count,
 * prefix_event, prefix_verdict): a static kind_codec prefix_codec of them and
 * the static functions prefix_kind_decide and prefix_kind_evolve for the
 * aggregate's act_kind prefix_kind, which run kind_decide and kind_evolve with
 * it. describe is its kind_codec.describe or NULL; evolve its kind_codec.evolve,
 * written by hand since the aggregates' evolve functions return different
 * things (prefix_kind_apply serves one that cannot fail or whose result only
 * says whether it was a transition). It also defines prefix_kind_reset, which
 * sets a state up with prefix_state_init (act_kind.init, and .dispose of a state
 * that owns nothing). Use once per aggregate, at file scope, followed by a
 * semicolon. */
#define KIND_ADAPTER(prefix, schema_, describe_, evolve_)                                                    \
	static inline void prefix##_kind_reset(void *state)                                                  \
	{                                                                                                    \
		(void)prefix##_state_init(state);                                                            \
	}                                                                                                    \
	static inline orn_rc prefix##_kind_apply(void *state, const void *event)                             \
	{                                                                                                    \
		(void)prefix##_evolve(state, event);                                                         \
		return ORN_OK;                                                                               \
	}                                                                                                    \
	static orn_rc prefix##_codec_encode_event(mp_writer *w, const void *events, size_t i,                \
	                                          const char **type)                                         \
	{                                                                                                    \
		const prefix##_event *e = &((const prefix##_events *)events)->items[i];                      \
		*type = prefix##_event_type(e->kind);                                                        \
		return prefix##_event_encode(w, e);                                                          \
	}                                                                                                    \
	static orn_rc prefix##_codec_decode_command(const char *type, const uint8_t *payload, size_t len,    \
	                                            void *command)                                           \
	{                                                                                                    \
		return prefix##_command_decode(type, payload, len, command);                                 \
	}                                                                                                    \
	static int prefix##_codec_decide(const void *state, const void *command, void *events)               \
	{                                                                                                    \
		return (int)prefix##_decide(state, command, events);                                         \
	}                                                                                                    \
	static const char *prefix##_codec_verdict_code(int verdict)                                          \
	{                                                                                                    \
		return prefix##_verdict_code((prefix##_verdict)verdict);                                     \
	}                                                                                                    \
	static orn_rc prefix##_codec_decode_event(const char *type, const uint8_t *payload, size_t len,      \
	                                          void *event)                                               \
	{                                                                                                    \
		return prefix##_event_decode(type, payload, len, event);                                     \
	}                                                                                                    \
	static const kind_codec prefix##_codec = {                                                           \
	        .schema = (schema_),                                                                         \
	        .command_size = sizeof(prefix##_command),                                                    \
	        .events_size = sizeof(prefix##_events),                                                      \
	        .events_count_offset = offsetof(prefix##_events, count),                                     \
	        .event_size = sizeof(prefix##_event),                                                        \
	        .decode_command = prefix##_codec_decode_command,                                             \
	        .decide = prefix##_codec_decide,                                                             \
	        .verdict_code = prefix##_codec_verdict_code,                                                 \
	        .describe = (describe_),                                                                     \
	        .encode_event_at = prefix##_codec_encode_event,                                              \
	        .decode_event = prefix##_codec_decode_event,                                                 \
	        .evolve = (evolve_),                                                                         \
	};                                                                                                   \
	static orn_rc prefix##_kind_decide(const void *state, const env_envelope *cmd, act_decision *d)      \
	{                                                                                                    \
		return kind_decide(&prefix##_codec, state, cmd, d);                                          \
	}                                                                                                    \
	static orn_rc prefix##_kind_evolve(void *state, const env_envelope *event)                           \
	{                                                                                                    \
		return kind_evolve(&prefix##_codec, state, event);                                           \
	}                                                                                                    \
	extern const act_kind prefix##_kind /* declared by its header: this only asks for the semicolon */

/* The act_kind members every aggregate with a KIND_ADAPTER fills alike, for the
 * start of its act_kind initializer: its aggregate name, state size, snapshot
 * schema, prefix_kind_reset as init and dispose, and the adapter's decide and
 * evolve. */
#define KIND_MEMBERS(prefix, aggregate_, snapshot_schema_)                                                   \
	.aggregate = (aggregate_), .state_size = sizeof(prefix##_state),                                     \
	.snapshot_schema = (snapshot_schema_), .init = prefix##_kind_reset, .dispose = prefix##_kind_reset,  \
	.decide = prefix##_kind_decide, .evolve = prefix##_kind_evolve

/* Defines prefix_restore, the act_kind.restore of an aggregate whose snapshot is
 * its history and whose prefix_evolve returns whether an event was a
 * transition: kind_restore_history with the adapter's codec, every event a
 * transition. Use after KIND_ADAPTER, followed by a semicolon. */
#define KIND_RESTORE_TRANSITIONS(prefix)                                                                     \
	static bool prefix##_restore_transition(void *state, const void *event)                              \
	{                                                                                                    \
		return prefix##_evolve(state, event);                                                        \
	}                                                                                                    \
	static orn_rc prefix##_restore(void *state, const uint8_t *buf, size_t len)                          \
	{                                                                                                    \
		return kind_restore_history(&prefix##_codec, sizeof(prefix##_state),                         \
		                            prefix##_restore_transition, state, buf, len);                   \
	}                                                                                                    \
	extern const act_kind prefix##_kind

#endif
