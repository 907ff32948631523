/* keystore.h — the customers' data keys, apart from the event stream
 * (docs/adr/027-personal-data.md).
 *
 * Keys live in their own JetStream stream, ORION_KEYS (subjects
 * orion.keys.>, file storage, the event stream's replica count, so it
 * survives what the log survives), each wrapped by the master key
 * (XChaCha20-Poly1305, personal.h's pd_wrap):
 *   orion.keys.master       a check value: a wrong master key is refused at
 *                           open instead of showing every customer erased
 *   orion.keys.index        the blind index key (personal.h)
 *   orion.keys.data.<kid>   one customer's data key
 * Each entry is written once (Nats-Expected-Last-Subject-Sequence: 0, which
 * the server checks at apply, also on R3). Destroying a data key erases its
 * message (JetStream's secure erase: the bytes on disk are overwritten); its
 * tokens never open again, anywhere.
 *
 * The master key comes from ORION_MASTER_KEY (64 hex digits, or a passphrase
 * of 32+ characters that is hashed), else <data dir>/master.key, made on
 * first start with mode 0600 (engine/secret.h).
 *
 * Unwrapped data keys are cached in locked memory (sodium_malloc) for
 * cache_ttl_ms, so a key destroyed by another process stops opening here
 * within that time at the latest; one destroyed here stops at once.
 * Thread-safe. */
#ifndef ORION_KEYSTORE_H
#define ORION_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "orn.h"
#include "personal.h"

#define KS_STREAM          "ORION_KEYS"
#define KS_SUBJECTS        "orion.keys.>"
#define KS_MASTER_KEY_FILE "master.key"

typedef struct ks_store ks_store;

typedef struct ks_options {
	int replicas;          /* of a stream it creates; default 1 */
	bool create;           /* create the stream and the first entries if absent; default true */
	unsigned cache_ttl_ms; /* how long an unwrapped key is kept; default 60000, 0: not cached */
	unsigned timeout_ms;   /* of each JetStream call; default 5000 */
} ks_options;

void ks_options_init(ks_options *o);

/* Loads the master key: env_value (ORION_MASTER_KEY) when set, else
 * <data_dir>/master.key, created if absent. See orn_secret_load for the
 * codes. */
orn_rc ks_master_key_load(const char *env_value, const char *data_dir, uint8_t master[PD_KEY_BYTES]);

/* Opens the keystore on store's connection with the master key (copied into
 * locked memory): makes sure of the stream, checks the master key against the
 * check value and loads the index key, creating both on first use. *out is
 * freed with ks_close. ORN_EINVAL if the master key does not open the
 * keystore (or the stream has another configuration); ORN_ENOTFOUND if the
 * stream or its first entries are missing and o->create is false;
 * ORN_EUNAVAILABLE, ORN_ETIMEOUT when NATS does not answer; ORN_ENOMEM. */
orn_rc ks_open(es_store *store, const uint8_t master[PD_KEY_BYTES], const ks_options *o, ks_store **out);

/* Zeroes and frees the keys held; the handle is freed, do not use it again. */
void ks_close(ks_store *ks);

/* A new data key, stored before it is returned: its id into kid
 * (PD_KID_MAX bytes) and the key into key. ORN_EUNAVAILABLE, ORN_ETIMEOUT. */
orn_rc ks_key_create(ks_store *ks, char kid[PD_KID_MAX], uint8_t key[PD_KEY_BYTES]);

/* The data key of a customer named by a stable string (a migrated
 * account's normalized email, ADR 032): its kid is derived from name under
 * the index key, so the same name always gets the same kid and no address
 * can be found from a kid; the key is made and stored when absent, read when
 * present (a migration resumed after a crash takes the key it stored).
 * kid: PD_KID_MAX bytes out. What ks_key_create and ks_key_get return. */
orn_rc ks_key_for(ks_store *ks, const char *name, char kid[PD_KID_MAX], uint8_t key[PD_KEY_BYTES]);

/* The data key kid into key. ORN_ENOTFOUND if there is none (destroyed, or
 * never stored); ORN_EINVAL for an invalid kid; ORN_EDECODE if the stored
 * entry does not unwrap; ORN_EUNAVAILABLE, ORN_ETIMEOUT. */
orn_rc ks_key_get(ks_store *ks, const char *kid, uint8_t key[PD_KEY_BYTES]);

/* True when token opens without waiting on NATS: it is not sealed, or its
 * key is in this process's cache (a later ks_open_token may still have to
 * read it if the cache entry lapses in between). Never blocks. */
bool ks_token_ready(ks_store *ks, const char *token);

/* Destroys the data key kid: its message is erased (overwritten on disk)
 * and dropped from this process's cache. ORN_OK also when it was gone
 * already; ORN_EINVAL for an invalid kid; ORN_EUNAVAILABLE, ORN_ETIMEOUT. */
orn_rc ks_key_destroy(ks_store *ks, const char *kid);

/* The blind index of a normalized email (personal.h). */
void ks_blind_index(ks_store *ks, const char *email, char out[PD_INDEX_MAX]);

/* The token of an emailed link (pd_link_token, ADR 031) under the link key
 * derived from the index key. ORN_EINVAL for an invalid account or request
 * id. */
orn_rc ks_link_token(ks_store *ks, const char *purpose, const char *account, const char *request_id,
                     char out[PD_LINK_MAX]);

/* Seals the NUL-terminated plain as field of event event_id with the data
 * key kid (pd_seal). What ks_key_get or pd_seal return. */
orn_rc ks_seal(ks_store *ks, const char *kid, const char *field, const char *event_id, const char *plain,
               char *out, size_t cap);

/* Opens a sealed token (pd_open) with its key from the keystore. A value
 * that is not sealed (written before ADR 027) is copied as it is.
 * ORN_ENOTFOUND if its key is gone (the customer was erased: show
 * PD_ERASED); what pd_open or ks_key_get return otherwise. */
orn_rc ks_open_token(ks_store *ks, const char *token, const char *field, const char *expect_event, char *out,
                     size_t cap);

#endif
