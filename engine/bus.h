/* bus.h — the command bus: commands as NATS requests, replies as msgpack.
 *
 * A command is one env_envelope sent as a request on orion.cmd.<aggregate>.<id>
 * (the envelope's causation field is the command id). Services subscribe with
 * the queue group orion.<aggregate>. The reply is a msgpack map:
 *   "outcome" str  ("accepted" | "rejected" | "failed")
 *   "code"    str  (rejection or failure code, "" when accepted)
 *   "detail"  str
 *   "version" uint (aggregate version after the command)
 *   "seq"     uint (stream sequence of the commit, 0 if nothing was appended)
 *   "attempts" uint (1 + number of conflict retries)
 *   "duplicate" bool (the command id had already been applied)
 *   "view"    any  (optional: the aggregate's state, for "Get")  */
#ifndef ORION_BUS_H
#define ORION_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "evstore.h"
#include "mpack.h"
#include "orn.h"

#define BUS_CODE_MAX   64
#define BUS_DETAIL_MAX 256
/* The command type every aggregate kind answers with its state view. */
#define BUS_CMD_GET "Get"

typedef enum bus_outcome { BUS_ACCEPTED, BUS_REJECTED, BUS_FAILED } bus_outcome;

typedef struct bus_reply {
	bus_outcome outcome;
	char code[BUS_CODE_MAX];
	char detail[BUS_DETAIL_MAX];
	uint64_t version;
	uint64_t seq;
	uint32_t attempts;
	bool duplicate;
	uint8_t *view; /* malloc'd copy of the view value, or NULL; see bus_reply_dispose */
	size_t view_len;
} bus_reply;

/* Encodes r into w. */
orn_rc bus_reply_encode(mp_writer *w, const bus_reply *r);
/* Decodes a reply (out param r, owning a copy of the view); ORN_EDECODE on bad bytes. */
orn_rc bus_reply_decode(const void *buf, size_t len, bus_reply *r);
/* Frees what r owns; r may be reused after. */
void bus_reply_dispose(bus_reply *r);
/* Stable name of an outcome. */
const char *bus_outcome_name(bus_outcome o);

/* Writes orion.cmd.<aggregate>.<id> into out. */
orn_rc bus_command_subject(char *out, size_t cap, const char *aggregate, const char *id);

/* Sends cmd to the aggregate on store's connection and waits for the reply
 * (out param, dispose it). Some possible errors are: ORN_ETIMEOUT (no reply
 * in timeout_ms), ORN_EUNAVAILABLE (no service listens, or NATS is down),
 * ORN_EDECODE (an unreadable reply). kit_send_all sends several at once. */
orn_rc bus_send(es_store *store, const char *aggregate, const char *id, const env_envelope *cmd,
                int64_t timeout_ms, bus_reply *out);

/* Fills a command envelope: type, time, command id, correlation id (defaults to
 * the command id when NULL), actor, and payload (one msgpack value, borrowed). */
orn_rc bus_command_init(env_envelope *cmd, const char *type, int64_t time_ms, const char *command_id,
                        const char *correlation, const char *actor, const uint8_t *payload, size_t len);

#endif
