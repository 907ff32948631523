/* nats_auth-internal.h — applying a role's credentials to a NATS client's
 * options: for the engine's own files (the event store's connections). */
#ifndef ORION_NATS_AUTH_INTERNAL_H
#define ORION_NATS_AUTH_INTERNAL_H

#include <nats/nats.h>

#include "nats_auth.h"

/* Applies c (may be NULL: nothing) to opts: user info, and TLS (secure, CA,
 * client certificate) when any TLS file is set. ORN_EINVAL if a TLS file
 * cannot be loaded (its path is logged, never the password). */
orn_rc na_conn_apply(const na_conn *c, natsOptions *opts);

#endif
