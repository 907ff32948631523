/* envelope.h — the event envelope and the commit codec (msgpack).
 *
 * An envelope carries one event (or one command): its type, payload schema
 * version, time in ms since the epoch, correlation id, causation id (for an
 * event: the id of the command that caused it; for a command: the command's
 * own id), actor (user or service id) and the payload, itself one msgpack
 * value whose bytes are kept as they are.
 *
 * Wire form of one envelope: a msgpack map with the keys
 *   "type" str, "v" uint, "t" int, "corr" str, "cause" str, "actor" str, "data" any
 * and two optional ones, written only when set:
 *   "req" str  the fingerprint of a keyed client request (Idempotency-Key):
 *              commands carry it, and the events they cause copy it, so that
 *              the keys an aggregate has seen are part of its history (ADR 015)
 *   "ttl" uint a command's time budget in ms when it was sent (commands only)
 * Unknown keys are skipped (forward compatibility); missing required keys,
 * wrong types and over-long strings are errors.
 *
 * A commit (one JetStream message) is a msgpack array of 1..ENV_MAX_EVENTS
 * envelopes. Decoding never allocates: decoded envelopes copy their short
 * strings into fixed fields and point at the payload inside the input buffer,
 * which must outlive them. */
#ifndef ORION_ENVELOPE_H
#define ORION_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "mpack.h"
#include "orn.h"

#define ENV_TYPE_MAX   64  /* bytes of a type name, NUL included */
#define ENV_ID_MAX     160 /* bytes of an id (correlation, causation, actor), NUL included */
#define ENV_MAX_EVENTS 64
#define ENV_REQ_MAX    48 /* bytes of a request fingerprint, NUL included */

typedef struct env_envelope {
	char type[ENV_TYPE_MAX];
	uint32_t schema; /* payload schema version, >= 1 */
	int64_t time_ms; /* milliseconds since the Unix epoch */
	char correlation[ENV_ID_MAX];
	char causation[ENV_ID_MAX];
	char actor[ENV_ID_MAX];
	const uint8_t *payload; /* one msgpack value; points into the decoded buffer */
	size_t payload_len;
	char request[ENV_REQ_MAX]; /* "" unless the command was a keyed client request */
	uint32_t ttl_ms;           /* commands: the sender's time budget, 0 if none */
} env_envelope;

/* Appends one envelope as a msgpack map to w. payload must hold exactly one
 * msgpack value (payload_len > 0); ORN_EINVAL otherwise. */
orn_rc env_encode(mp_writer *w, const env_envelope *e);

/* Decodes one envelope from r (out param e). ORN_EDECODE on malformed input. */
orn_rc env_decode(mp_reader *r, env_envelope *e);

/* Decodes a whole buffer holding exactly one envelope (no trailing bytes). */
orn_rc env_decode_buffer(const void *buf, size_t len, env_envelope *e);

/* Decodes a commit: fills out[0..*count) (cap entries available).
 * ORN_EDECODE if malformed, empty, larger than cap, or with trailing bytes. */
orn_rc env_decode_commit(const void *buf, size_t len, env_envelope *out, size_t cap, size_t *count);

/* Writes a commit header for count events; follow with count env_encode calls. */
void env_commit_begin(mp_writer *w, uint32_t count);

/* Copies a NUL-terminated string into a fixed envelope field; ORN_ETOOBIG if it
 * does not fit. */
orn_rc env_set_field(char *field, size_t cap, const char *value);

#endif
