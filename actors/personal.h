/* personal.h — personal data in events: sealed fields, the blind index of
 * an email, and the wrapping of keys (docs/adr/027-personal-data.md).
 *
 * A personal field (an email, a name, a password hash, a recipient) is
 * written to the log as a sealed token, a printable string:
 *
 *   "pd1." kid "." base64url(event id) "." base64url(nonce || ciphertext)
 *
 * kid is the customer's data key id (32 lowercase hex digits), the event id
 * is the id of the command that caused the event (its envelope's causation),
 * and the ciphertext is XChaCha20-Poly1305 (IETF) under the data key with the
 * associated data "orion.pd.v1", kid, the field's name and the event id, so a
 * token opens only as the field of the event it was sealed for. Readers of
 * the log check that the token's event id is the event's causation
 * (pd_open's expect_event); read models keep the token as it is.
 *
 * Destroying the data key (privacy/keystore.h) makes every token of that
 * customer unreadable: what "erasure" means for the log.
 *
 * The blind index of an email is its keyed BLAKE2b-128 under a secret index
 * key, "u" + 32 hex digits: the user aggregate's id and the users read
 * model's key, so lookups by email never put the address, nor a hash anyone
 * could compute from it, into a subject, a key or a file.
 *
 * Pure functions over caller buffers; libsodium must be initialised. */
#ifndef ORION_PERSONAL_H
#define ORION_PERSONAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orn.h"

#define PD_KEY_BYTES     32
#define PD_KID_LEN       32 /* hex digits */
#define PD_KID_MAX       (PD_KID_LEN + 1)
#define PD_EVENT_MAX     161                      /* bytes of an event id (a command id), NUL included */
#define PD_PLAIN_MAX     255                      /* bytes of a clear value, NUL excluded */
#define PD_TOKEN_MAX     800                      /* bytes of a sealed token, NUL included */
#define PD_INDEX_MAX     34                       /* "u" + 32 hex digits, NUL included */
#define PD_WRAPPED_BYTES (24 + PD_KEY_BYTES + 16) /* nonce, key, tag */
#define PD_TOKEN_PREFIX  "pd1."
#define PD_ERASED        "[erased]" /* what a reader shows for a token whose key is gone */

/* A new random key id (out: PD_KID_MAX bytes) and data key. */
void pd_key_new(char kid[PD_KID_MAX], uint8_t key[PD_KEY_BYTES]);

/* True if kid is 32 lowercase hex digits. */
bool pd_kid_valid(const char *kid);

/* Seals the len bytes of plain (at most PD_PLAIN_MAX) as field of the event
 * event_id (1..PD_EVENT_MAX-1 bytes) under the data key kid: writes the token
 * into out (cap bytes; PD_TOKEN_MAX suffice). ORN_EINVAL for an invalid kid,
 * field or event id, or a value too long; ORN_ETOOBIG if cap is too small. */
orn_rc pd_seal(const uint8_t key[PD_KEY_BYTES], const char *kid, const char *field, const char *event_id,
               const char *plain, size_t len, char *out, size_t cap);

/* True if token has the shape of a sealed token (prefix, a valid kid, an
 * event id and a ciphertext of a possible length, nothing else): what an
 * event may carry where a personal field is sealed. Says nothing of whether
 * it opens. */
bool pd_is_sealed(const char *token);

/* The key id of a sealed token (out: PD_KID_MAX bytes). ORN_EINVAL if token
 * is not sealed. */
orn_rc pd_token_kid(const char *token, char kid[PD_KID_MAX]);

/* The event id a sealed token was sealed for (out: PD_EVENT_MAX bytes).
 * ORN_EINVAL if token is not sealed. */
orn_rc pd_token_event(const char *token, char event_id[PD_EVENT_MAX]);

/* Opens a sealed token of field with its data key: the clear value into out
 * (cap bytes, NUL-terminated; PD_PLAIN_MAX + 1 suffice). With expect_event
 * non-NULL, the token must have been sealed for that event. ORN_EINVAL if
 * token is not sealed or was sealed for another event; ORN_EDECODE if it does
 * not open (another key, field or event, altered bytes); ORN_ETOOBIG if cap
 * is too small. out is "" on failure (cap > 0). */
orn_rc pd_open(const uint8_t key[PD_KEY_BYTES], const char *token, const char *field,
               const char *expect_event, char *out, size_t cap);

/* The blind index of a normalized email under the index key (out:
 * PD_INDEX_MAX bytes): "u" + hex(BLAKE2b-128(index key, "orion.user.email"
 * NUL email)). */
void pd_blind_index(const uint8_t index_key[PD_KEY_BYTES], const char *email, char out[PD_INDEX_MAX]);

/* ---- emailed links' tokens (docs/adr/031-verified-accounts-and-password-reset.md) ----
 *
 * A link's token is "<account>.<mac>": the account's aggregate id, then
 * base64url (no padding) of BLAKE2b-256 keyed with the link key over
 * "orion.link.v1" NUL purpose NUL account NUL request id. Derived, never
 * stored: the event holds the request id and the token's SHA-256
 * (pd_link_hash); whoever has the link key (the mail role, to write the
 * link) computes it again, nobody else can. The link key is derived from the
 * index key (pd_link_key), so it lives in the keystore, wrapped by the master
 * key, without an entry of its own. */
#define PD_LINK_MAC_LEN  43                             /* base64url of 32 bytes, no padding */
#define PD_LINK_MAX      (64 + 1 + PD_LINK_MAC_LEN + 1) /* account id (<= 64), '.', mac, NUL */
#define PD_LINK_HASH_MAX 65                             /* hex SHA-256, NUL included */

/* The link key derived from the index key (out: PD_KEY_BYTES). */
void pd_link_key(const uint8_t index_key[PD_KEY_BYTES], uint8_t out[PD_KEY_BYTES]);

/* The token of (purpose, account, request_id) into out. ORN_EINVAL if the
 * account or request id is not an id (orn_id_valid) or purpose is empty. */
orn_rc pd_link_token(const uint8_t link_key[PD_KEY_BYTES], const char *purpose, const char *account,
                     const char *request_id, char out[PD_LINK_MAX]);

/* The account a token names into account (ES id bytes, 65 suffice): false
 * for anything pd_link_token cannot have written (the token is checked by
 * its hash in the account, not here). */
bool pd_link_account(const char *token, char *account, size_t cap);

/* The lowercase hex SHA-256 of a token: what the events hold. */
void pd_link_hash(const char *token, char out[PD_LINK_HASH_MAX]);

/* Wraps a key under the master key for the keystore entry name (the
 * associated data): out is nonce || ciphertext || tag. */
void pd_wrap(const uint8_t master[PD_KEY_BYTES], const char *name, const uint8_t key[PD_KEY_BYTES],
             uint8_t out[PD_WRAPPED_BYTES]);

/* Unwraps a key wrapped for name. ORN_EDECODE if it does not open (another
 * master key or name, altered bytes); key is zeroed then. */
orn_rc pd_unwrap(const uint8_t master[PD_KEY_BYTES], const char *name,
                 const uint8_t wrapped[PD_WRAPPED_BYTES], uint8_t key[PD_KEY_BYTES]);

#endif
