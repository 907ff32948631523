/* bus-internal.h — bus_send on a NATS connection of the caller's: for the
 * engine's own files and its tests (a test's client of its own). */
#ifndef ORION_BUS_INTERNAL_H
#define ORION_BUS_INTERNAL_H

#include <nats/nats.h>

#include "bus.h"

/* As bus_send, on nc. */
orn_rc bus_send_on(natsConnection *nc, const char *aggregate, const char *id, const env_envelope *cmd,
                   int64_t timeout_ms, bus_reply *out);

#endif
