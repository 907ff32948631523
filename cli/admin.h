/* admin.h — accounts and the demo catalog from the command line and at
 * start-up (cli/admin.c). Synchronous: for the CLI and serve's start-up only,
 * never an event loop. Every function is idempotent. */
#ifndef ORION_CLI_ADMIN_H
#define ORION_CLI_ADMIN_H

#include "evstore.h"
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "keystore.h"
#include "product.h"
#include "settings.h"
#include "user.h"

/* Registers a user (Argon2id hash of password, a random public id), its
 * email, name and hash sealed with a new data key of keys (ADR 027) and its
 * subject the blind index of the address. *created is false if the email was
 * registered already. */
orn_rc cli_create_user(es_store *store, ks_store *keys, const char *email, const char *password,
                       const char *name, user_role role, bool *created);

/* Claims the sku, creates the product and its stock item (same id); gives the
 * sku back if the product cannot be created. ORN_EEXISTS if another product
 * holds the sku. */
orn_rc cli_create_product(es_store *store, const char *product_id, const product_fields *fields,
                          int64_t initial_stock);

/* Creates the demo catalog (36 products in 6 categories, with stock);
 * *count receives the number of products in place. */
orn_rc cli_seed_demo(es_store *store, unsigned *count);

/* Sends one user command c to the account of email (a fresh command id) and
 * waits for the reply (*reply; bus_reply_dispose it on ORN_OK). */
orn_rc cli_user_command(es_store *store, ks_store *keys, const char *email, const user_command *c,
                        bus_reply *reply);

/* Erases the account of email (ADR 027): RequestErasure (logins, tokens and
 * orders end), the account's data key destroyed (every sealed field of the
 * customer becomes unreadable), CompleteErasure (CustomerErased, which the
 * read models apply). Every step is idempotent, so a run killed between any
 * two is completed by running it again. ORN_ENOTFOUND if there is no such
 * account; what the bus and the keystore return otherwise. */
orn_rc cli_erase_user(es_store *store, ks_store *keys, const char *email);

/* `orion admin create-user ...`, `set-role`, `revoke-tokens`, `erase`. */
int cli_admin(int argc, char **argv, const cli_config *cfg);

#endif
