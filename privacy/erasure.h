/* erasure.h — the steps of erasing a customer (docs/adr/027-personal-data.md,
 * "Erasure"), shared by `orion admin erase` and the gateway's routes.
 *
 * 1. RequestErasure → ErasureRequested: logins and tokens end at once;
 * (the caller cancels the customer's open orders here;)
 * 2. the account's data key, as the aggregate names it, destroyed;
 * 3. CompleteErasure → CustomerErased, which the read models apply.
 * Each command's id is derived from the account and the step, so every step
 * is idempotent and a run killed between any two is completed by the next.
 * Synchronous (bus_send): never on the gateway's event loop. */
#ifndef ORION_ERASURE_H
#define ORION_ERASURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "keystore.h"
#include "order.h"
#include "orn.h"
#include "user.h"

#define ER_COMMAND_ID_MAX 96

/* The id of the command of step ("request", "get", "complete") of the
 * erasure of the account user_key, into out (ER_COMMAND_ID_MAX bytes). */
void er_command_id(char out[ER_COMMAND_ID_MAX], const char *user_key, const char *step);

/* An account as its aggregate answers a Get. */
typedef struct er_account {
	bool exists;
	int64_t erasure; /* user_erasure */
	char kid[PD_KID_MAX];
	char user_id[USER_ID_MAX];
} er_account;

/* The CancelOrder an erasure sends to an open order of the customer, and its
 * command id (derived from the order: the gateway's and the command line's
 * cancels of one order are one command). */
void er_cancel_command(const char *order_id, int64_t now_ms, order_command *c,
                       char command_id[ER_COMMAND_ID_MAX]);

/* Between steps 1 and 2, for a caller without the orders read model (the
 * command line): every order of user_id that is still open (not yet paid,
 * ended or shipped) gets er_cancel_command, its answer awaited. The orders
 * are found by reading every order event of the log once. *cancelled (may be
 * NULL): how many the order actors accepted. ORN_EIO if an open order could
 * not be cancelled (no answer, or refused while still open); what es_read
 * returns. */
orn_rc er_cancel_open_orders(es_store *store, const char *user_id, size_t *cancelled);

/* Reads the account user_key from its aggregate (a Get) into *out.
 * ORN_EDECODE for a view that does not decode; what bus_send returns. */
orn_rc er_account_read(es_store *store, const char *user_key, er_account *out);

/* Step 1: RequestErasure to the account user_key. ORN_OK once accepted (also
 * when asked before); ORN_ENOTFOUND if there is no such account; ORN_EINVAL
 * if refused otherwise; what bus_send returns. */
orn_rc er_request(es_store *store, const char *user_key);

/* Steps 2 and 3: the key destroyed, CustomerErased recorded (*seq: its stream
 * sequence, or the account's version when it was recorded before; may be
 * NULL). ORN_EINVAL if the account refuses (no erasure was asked);
 * ORN_EDECODE for a view that does not decode; what bus_send and
 * ks_key_destroy return. */
orn_rc er_finish(es_store *store, ks_store *keys, const char *user_key, uint64_t *seq);

/* What er_again did. */
typedef struct er_again_counts {
	size_t accounts;   /* accounts whose erasure the log records */
	size_t finished;   /* asked for and not finished: finished now */
	size_t keys_again; /* finished, but their key was back (a restored keystore): destroyed */
	size_t orders_cancelled;
	size_t failed; /* could not be carried through now (asking again completes them) */
} er_again_counts;

/* Every erasure the log records, carried through again (ADR 027, "Backups"):
 * the accounts with ErasureRequested or CustomerErased are found by reading
 * the users' events once; one whose erasure was asked for but not finished
 * gets its open orders cancelled and steps 2 and 3; one erased whose data key
 * exists again (a keystore restored from a backup taken before the erasure)
 * gets the key destroyed. Idempotent. ORN_EIO if some account failed (see
 * out->failed); what es_read returns. */
orn_rc er_again(es_store *store, ks_store *keys, er_again_counts *out);

#endif
