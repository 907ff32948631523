/* gw_password.h — Argon2id password hashing off the event loop.
 *
 * Hashes use libsodium's crypto_pwhash_str (Argon2id). The default cost is
 * OPSLIMIT_INTERACTIVE / MEMLIMIT_INTERACTIVE (64 MiB, ~0.1 s on one core):
 * MODERATE would take 256 MiB per hash, too much for the 2-core machines the
 * project targets. crypto_pwhash_str_verify reads the cost from the stored
 * hash, so lighter test hashes and a later cost increase verify alike.
 *
 * A pool runs hashes on `workers` threads (bounding concurrent hashes, hence
 * memory) with at most `queue_max` jobs waiting; a full queue is refused at
 * once (the caller answers 503). Results come back on the loop thread through
 * a gw_inbox, so callbacks may touch libevent and HTTP requests. */
#ifndef ORION_GW_PASSWORD_H
#define ORION_GW_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#include <sodium.h>

#include "orn.h"

struct event_base;

#define GW_PASSWORD_HASH_MAX crypto_pwhash_STRBYTES /* including the NUL */
#define GW_PASSWORD_MAX      1024                   /* longer passwords are refused */

typedef struct gw_password_options {
	unsigned workers;            /* concurrent hashes, default 2 */
	size_t queue_max;            /* waiting jobs, default 64 */
	unsigned long long opslimit; /* default crypto_pwhash_OPSLIMIT_INTERACTIVE */
	size_t memlimit;             /* default crypto_pwhash_MEMLIMIT_INTERACTIVE */
} gw_password_options;

/* Fills o with the defaults above. */
void gw_password_options_init(gw_password_options *o);

/* Hashes password synchronously with o's cost (NULL: defaults) into hash
 * (GW_PASSWORD_HASH_MAX bytes). ORN_EINVAL if the password is too long,
 * ORN_ENOMEM if Argon2 cannot get its memory. For the CLI and tests. */
orn_rc gw_password_hash(const gw_password_options *o, const char *password, char hash[GW_PASSWORD_HASH_MAX]);

/* Verifies synchronously: ORN_OK with *match set, ORN_EINVAL for a password
 * too long. A malformed hash is simply no match. */
orn_rc gw_password_verify(const char *hash, const char *password, bool *match);

typedef struct gw_password_pool gw_password_pool;

/* Result on the loop thread. rc: ORN_OK or ORN_ENOMEM. For a hash, hash is
 * the encoded string (valid during the call); for a verify, match. */
typedef void gw_password_done(orn_rc rc, const char *hash, bool match, void *arg);

/* Starts the workers; results are delivered on base's loop (base must come
 * from gw_event_base_new or follow gw_threads_init). NULL on failure. */
gw_password_pool *gw_password_pool_create(struct event_base *base, const gw_password_options *o);

/* Stops and joins the workers. Jobs still queued and results not yet
 * delivered are answered with ORN_EUNAVAILABLE (from this call), so every
 * caller hears back exactly once. Call on the loop thread (or with the loop
 * stopped). NULL is accepted. */
void gw_password_pool_destroy(gw_password_pool *pool);

/* Queues a hash (password is copied and wiped after use). ORN_EUNAVAILABLE
 * if the queue is full, ORN_EINVAL if the password is too long, ORN_ENOMEM.
 * On ORN_OK, done is called exactly once, later, on the loop thread. */
orn_rc gw_password_hash_async(gw_password_pool *pool, const char *password, gw_password_done *done,
                              void *arg);

/* Queues a verification against hash; same contract as the hash. */
orn_rc gw_password_verify_async(gw_password_pool *pool, const char *hash, const char *password,
                                gw_password_done *done, void *arg);

/* Checks a new password before it is hashed (ADR 022): it must not contain
 * the account's email local part or domain name (3 characters or more, any
 * case), and must pass libpwquality with the system's settings
 * (/etc/security/pwquality.conf, else the library's defaults: length and
 * classes, the cracklib dictionary of common passwords and their variants,
 * the user name — here the local part — in any form). ORN_OK; ORN_EINVAL
 * with a reason for the client in message (cap bytes; it names no secret);
 * ORN_EINTERNAL when the dictionary cannot be read; ORN_ENOMEM. Thread-safe. */
orn_rc gw_password_quality(const char *password, const char *email, char *message, size_t cap);

#endif
