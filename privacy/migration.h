/* migration.h — the personal fields of events written before ADR 027,
 * sealed for a copy of the log (orion migrate-personal-data,
 * docs/adr/032-migrating-personal-data.md).
 *
 * A plan is learnt from the old log first (every account's email and the
 * public subject it lives on, every order's email and the event its token is
 * bound to); each commit is then rewritten on its own:
 *   - user subjects on the public hash of ADR 005 move to the blind index
 *     (personal.h; mg_place for an address registered again), and the old
 *     id is replaced by the new one in the envelopes' correlation and
 *     causation ("register:<key>");
 *   - a clear email, name or password hash of a user event, an order's
 *     customer_email and a mail log's recipient are sealed with the
 *     customer's data key (the key of its account registered since ADR 027
 *     if any, else ks_key_for of the normalized email: one key per
 *     customer, the same on a rerun), bound to the event's id, the
 *     rewritten causation; a recipient gets the token of its order's email
 *     (or of its admin's email), as the mail role writes it since ADR 027;
 *   - a UserRegistered that held clear fields gets the kid that seals them;
 *   - anything already sealed, and every other commit, is left as it is.
 * Sealing draws random nonces: a rewrite is not a function of its input, and
 * copies are compared by opening (mg_compare). */
#ifndef ORION_MIGRATION_H
#define ORION_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "keystore.h"
#include "mpack.h"
#include "orn.h"

#define MG_WHY_MAX 256

typedef struct mg_plan mg_plan;

/* What a plan found and did. */
typedef struct mg_counts {
	uint64_t accounts;      /* user subjects on the public hash, to move */
	uint64_t superseded;    /* of those, addresses registered again since ADR 027 */
	uint64_t clear_fields;  /* clear personal fields met by mg_learn */
	uint64_t sealed_fields; /* fields sealed by mg_rewrite */
	uint64_t commits_changed;
} mg_counts;

/* A new plan using ks (borrowed: it must outlive the plan). ORN_ENOMEM. */
orn_rc mg_create(ks_store *ks, mg_plan **out);
void mg_destroy(mg_plan *p);
const mg_counts *mg_counts_of(const mg_plan *p);

/* Learns from one commit of the old log (in stream order; void commits
 * too). ORN_EDECODE for a payload that is not a map. */
orn_rc mg_learn(mg_plan *p, const char *subject, bool valid, const env_envelope *events, size_t count);

/* After learning, before rewriting: where each account goes. An account on
 * a public subject moves to the blind index of its address; if the address
 * has an account there already (registered again after ADR 027, e.g. the
 * start-up admin of a shop started before migrating), that one keeps the
 * blind index and the old account moves to a pseudonymous subject of its
 * own, sealed with the newer account's key (one key per customer: an
 * erasure takes both). */
void mg_place(mg_plan *p);

/* After mg_place: the user id of the next account kept apart that way
 * (*cursor starts at 0); false after the last. */
bool mg_next_superseded(const mg_plan *p, size_t *cursor, const char **user_id);

/* True when the old log holds anything to migrate (counts). */
bool mg_needed(const mg_plan *p);

/* The subject a commit of subject is written to in the new log (out: cap
 * bytes; ES_SUBJECT_MAX suffice). */
orn_rc mg_subject(const mg_plan *p, const char *subject, char *out, size_t cap);

/* Rewrites the commit data (len bytes) of subject: *changed false when it
 * stays byte for byte (w untouched), else w holds the new commit. What
 * ks_key_for and pd_seal return, ORN_EDECODE for a commit that does not
 * decode. */
orn_rc mg_rewrite(mg_plan *p, const char *subject, const uint8_t *data, size_t len, mp_writer *w,
                  bool *changed);

/* Compares a rewritten commit with its old one: the same events in the same
 * order, every key equal, a sealed field opening (bound to its event) to the
 * old clear value, no clear personal field left, the subject moved as
 * planned. ORN_OK if so; ORN_ECONFLICT with why otherwise; ORN_EDECODE if
 * either does not decode; ORN_EUNAVAILABLE, ORN_ETIMEOUT from the keystore. */
orn_rc mg_compare(mg_plan *p, const char *old_subject, const uint8_t *old, size_t old_len,
                  const char *new_subject, const uint8_t *new_data, size_t new_len, char why[MG_WHY_MAX]);

/* Checks one commit of a migrated log on its own: no clear personal field,
 * every token opens (bound to its event where it is the event's own), a
 * user subject is the blind index of its registration's email. ORN_OK;
 * ORN_ECONFLICT with why; *erased counts tokens whose key is gone (erased
 * customers: they cannot open, by design). */
orn_rc mg_check(mg_plan *p, const char *subject, const env_envelope *events, size_t count, uint64_t *erased,
                char why[MG_WHY_MAX]);

#endif
