/* idem.h — the commands an aggregate has answered, for idempotency (ADR 015).
 *
 * Two memories, both folded from the aggregate's own valid commits (the
 * causation id of each) and kept in its snapshots, so they hold across
 * restarts and instances, not for a server's duplicate window:
 * - keyed requests: a client request with an Idempotency-Key becomes a
 *   command whose id is derived from the key and whose "req" field
 *   fingerprints the request (route and body); its events copy the
 *   fingerprint. An entry lives IDEM_TTL_MS after its commit; at most
 *   IDEM_CAPACITY live ones per aggregate, and past that new keyed requests
 *   are refused rather than an entry forgotten early;
 * - the last IDEM_RECENT commands of any kind, by command id: a command sent
 *   again after it was applied (a caller's retry) is answered, not applied
 *   twice.
 *
 * Pure: no I/O, no clock (times come from the commits and commands). */
#ifndef ORION_IDEM_H
#define ORION_IDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mpack.h"
#include "orn.h"

#define IDEM_TTL_MS   (24LL * 60 * 60 * 1000)
#define IDEM_CAPACITY 256
#define IDEM_RECENT   16

typedef struct idem_ledger idem_ledger;

typedef enum idem_verdict {
	IDEM_NEW,    /* not seen: decide the command */
	IDEM_REPEAT, /* the same request again: answer the first outcome (*seq) */
	IDEM_REUSED, /* the key came with another request: refuse */
	IDEM_FULL    /* IDEM_CAPACITY live keys: refuse until one expires */
} idem_verdict;

/* Creates an empty ledger; NULL if out of memory. Free with idem_destroy
 * (NULL accepted). */
idem_ledger *idem_create(void);
void idem_destroy(idem_ledger *l);
/* Forgets every entry. */
void idem_clear(idem_ledger *l);
/* Number of keyed entries held (live or not yet pruned). */
size_t idem_count(const idem_ledger *l);

/* What to do with the keyed command key (its id) carrying request (not ""),
 * at now_ms (the command's time), before deciding it. On IDEM_REPEAT, *seq
 * is the commit that answered it. */
idem_verdict idem_check(const idem_ledger *l, const char *key, const char *request, int64_t now_ms,
                        uint64_t *seq);

/* True, with the commit in *seq, if a recent commit answered the command
 * key: a command whose decision would append again is that commit's repeat.
 * (Asked after deciding, so that a repeat is still checked by the rules:
 * the same id with a wrong credential is refused, not answered.) */
bool idem_seen(const idem_ledger *l, const char *key, uint64_t *seq);

/* Records that the commit at seq, stored at time_ms, answered the command
 * key, keyed with request unless it is "" (a second record of the same seq
 * is a no-op). Keyed entries older than IDEM_TTL_MS before time_ms are
 * dropped. ORN_ENOMEM; ORN_EINVAL for an empty or over-long key or request. */
orn_rc idem_record(idem_ledger *l, const char *key, const char *request, uint64_t seq, int64_t time_ms);

/* The ledger as one msgpack value, and back (after idem_clear). ORN_EDECODE
 * for malformed bytes. */
orn_rc idem_encode(const idem_ledger *l, mp_writer *w);
orn_rc idem_decode(idem_ledger *l, mp_reader *r);

#endif
