/* decision.h — what the domain gives the actor runtime: a kind table of pure
 * functions, and the decision object its decide function fills.
 *
 * Nothing here does I/O; the domain (actors/) depends on this header and the
 * codec only, never on NATS. */
#ifndef ORION_DECISION_H
#define ORION_DECISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "mpack.h"
#include "orn.h"

/* What decide produced: events to append, or a rejection. Owned by the runtime
 * (or by a test through act_decision_create). */
typedef struct act_decision act_decision;

/* Emits one event: type, payload schema version, payload (one msgpack value,
 * copied). ORN_ETOOBIG past ENV_MAX_EVENTS, ORN_ENOMEM on allocation failure. */
orn_rc act_decision_emit(act_decision *d, const char *type, uint32_t schema, const uint8_t *payload,
                         size_t len);
/* Rejects the command: code is a short stable string ("out_of_stock"), detail
 * free text (may be NULL). Discards any event emitted before. */
void act_decision_reject(act_decision *d, const char *code, const char *detail);

/* For tests and tools: a stand-alone decision. */
act_decision *act_decision_create(void);
void act_decision_destroy(act_decision *d);
void act_decision_clear(act_decision *d);
/* Inspection: rejected code (NULL if accepted), number of events, event i as
 * an envelope with only type, schema and payload set (valid until the next change). */
const char *act_decision_rejection(const act_decision *d);
const char *act_decision_detail(const act_decision *d);
size_t act_decision_count(const act_decision *d);
orn_rc act_decision_event(const act_decision *d, size_t i, env_envelope *out);

/* Encodes the decided events as one commit into w (reset first): each event
 * carries the command's correlation, causation (the command id), actor and
 * request, and its time (time_ms when the command has none). ORN_EINVAL for
 * a rejection or no event, or what the codec returned. */
orn_rc act_decision_commit(const act_decision *d, const env_envelope *cmd, int64_t time_ms, mp_writer *w);

typedef struct act_kind {
	const char *aggregate; /* subject token, e.g. "stock" */
	size_t state_size;     /* bytes of the state struct */
	uint32_t snapshot_schema;
	/* Sets an empty state (the aggregate does not exist yet). */
	void (*init)(void *state);
	/* Frees what the state owns (not the struct). */
	void (*dispose)(void *state);
	/* Validates cmd against state: emit events or reject. ORN_EDECODE/ORN_EINVAL
	 * for an undecodable command (the runtime replies "failed", code "invalid"). */
	orn_rc (*decide)(const void *state, const env_envelope *cmd, act_decision *d);
	/* Applies one stored event. Errors only for undecodable payloads. */
	orn_rc (*evolve)(void *state, const env_envelope *event);
	/* Optional: state → bytes, bytes → state (after init). */
	orn_rc (*snapshot)(const void *state, mp_writer *w);
	orn_rc (*restore)(void *state, const uint8_t *buf, size_t len);
	/* Optional: the state as one msgpack value, returned by the "Get" command. */
	orn_rc (*view)(const void *state, mp_writer *w);
	/* The state owns no memory (dispose only resets it): a byte copy is a
	 * copy, so folds of it may be cached (kit.h). */
	bool copyable;
} act_kind;

#endif
