/* secret.h — 32-byte secrets a process keeps: from the environment, else a
 * file in the data directory made on first start (mode 0600). The JWT
 * signing key (gateway/gw_jwt.h) and the keystore's master key
 * (privacy/keystore.h) are loaded this way. */
#ifndef ORION_SECRET_H
#define ORION_SECRET_H

#include "orn.h"

#define ORN_SECRET_BYTES 32

/* Loads a secret into out. With env_value non-NULL and non-empty: 64 hex
 * digits are the secret itself, any other value of at least 32 characters
 * is hashed to one (BLAKE2b-256). Otherwise <dir>/<file>: read if present
 * (a regular file of exactly 32 bytes, no group or other permission bits),
 * else created with 32 random bytes, mode 0600, linked into place so two
 * starters agree on one secret. ORN_EINVAL for a short env_value, a missing
 * dir or a file that is not as described; ORN_EIO if it cannot be read or
 * written; ORN_EINTERNAL if libsodium cannot start. */
orn_rc orn_secret_load(const char *env_value, const char *dir, const char *file,
                       unsigned char out[ORN_SECRET_BYTES]);

#endif
