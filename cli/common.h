/* common.h — helpers shared by the orion subcommands. */
#ifndef ORION_CLI_COMMON_H
#define ORION_CLI_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "keystore.h"
#include "settings.h"
#include "evstore.h"
#include "nats_auth.h"
#include "natsd.h"

/* True for "--help" and "-h": every command answers them with its usage
 * and options on stdout, exit 0, needing neither NATS nor the data dir. */
bool cli_is_help(const char *arg);

/* Where a running `orion serve` records its embedded server's URL
 * (<data dir>/nats.url), so that other commands use it instead of starting a
 * second server on the same store. */
void cli_url_file_path(const cli_config *cfg, char *out, size_t cap);

/* The URL a running `orion serve` recorded (out param url), if the file
 * names one that may be live. An address that refuses the connection (or
 * answers something other than NATS's INFO greeting) was left by a stop that
 * was not clean: the file counts as absent, and the first call in the
 * process says so on stderr. One that accepts and stays silent for 3 s
 * counts as live (a starved serve must never get a second nats-server on
 * its store). The file is left in place (the next serve replaces it). */
bool cli_read_running_url(const cli_config *cfg, char *url, size_t cap);

/* The per-role NATS users (ADR 014), out param out, *enabled true if any:
 * ORION_NATS_CREDENTIALS; else, without ORION_NATS_URL, <data dir>/nats/
 * credentials (created when generate); else none (a server without auth).
 * Wipe out with na_credentials_wipe. */
orn_rc cli_nats_credentials(const cli_config *cfg, bool generate, na_credentials *out, bool *enabled);

/* How role connects (out param out, borrowing from creds and cfg): its user
 * and password when creds (may be NULL) has it, and ORION_NATS_TLS_*. */
void cli_nats_conn(const cli_config *cfg, const na_credentials *creds, const char *role, na_conn *out);

/* Connects as role (with creds; NULL: no user) to ORION_NATS_URL; else,
 * unless owner, to a running serve's server; else starts the embedded server
 * (*server, stop it with natsd_stop; with creds under their authorization
 * block) and, when owner, records its URL. Only ops (or no auth) creates the
 * streams. On success *store owns the connection. */
orn_rc cli_connect_store_as(const cli_config *cfg, const char *name, bool owner, const na_credentials *creds,
                            const char *role, natsd **server, es_store **store);

/* cli_connect_store_as as the ops user of cli_nats_credentials (generated
 * when this starts the embedded server), or without a user when there are none. */
orn_rc cli_connect_store(const cli_config *cfg, const char *name, bool owner, natsd **server,
                         es_store **store);

/* A store on url as the ops user (if any) with ORION_NATS_TLS_*, for the
 * tools that send commands to a running shop (it verifies the streams). */
orn_rc cli_open_store(const cli_config *cfg, const char *url, es_store **out);

/* Opens the keystore (ADR 027) on store's connection with the master key of
 * ORION_MASTER_KEY, else of <data dir>/master.key (made on first use); with
 * create, the keystore too if it has none. *out is ks_close'd by the caller.
 * What ks_master_key_load and ks_open return (ORN_ENOTFOUND without create
 * and no keystore); logs why. */
orn_rc cli_open_keys(const cli_config *cfg, es_store *store, bool create, ks_store **out);

/* `orion nats-config` (cli/nats_config.c): prints the nats-server
 * authorization block for the credentials file given or configured. */
int cli_nats_config(int argc, char **argv, const cli_config *cfg);

/* The serve subcommand, and `routes` (cli/serve.c). */
int cli_serve(int argc, char **argv, const cli_config *cfg);
int cli_routes(int argc, char **argv, const cli_config *cfg);

/* The hidden contracts subcommand (cli/contracts.c): the event and command
 * types of every kind serve runs, for tests/contracts/. */
int cli_contracts(int argc, char **argv);

/* The rebuild subcommand (cli/rebuild.c): read models rebuilt from the stream. */
int cli_rebuild(int argc, char **argv, const cli_config *cfg);

/* The psp-sandbox subcommand (cli/psp.c): the card payment provider sandbox alone. */
int cli_psp_sandbox(int argc, char **argv, const cli_config *cfg);

/* The verify-stock subcommand (cli/verify_stock.c): every stock item re-derived
 * from the events, compared with the inventory read model and with what live
 * orders hold. Exit 0 no difference, 1 differences, 2 errors. */
int cli_verify_stock(int argc, char **argv, const cli_config *cfg);

/* The verify-log subcommand (cli/verify_log.c): every aggregate's commit chain
 * walked for void commits and impossible states (ADR 015). Exit 0 no
 * impossible state, 1 some (or void commits with --strict), 2 errors. */
int cli_verify_log(int argc, char **argv, const cli_config *cfg);

/* The migrate-personal-data subcommand (cli/migrate.c, ADR 032): the log
 * written before ADR 027 copied with its personal fields sealed, verified, and
 * put in the place of ORION_EVT. Exit 0 done or verified, 1 refused or
 * findings, 2 errors. */
int cli_migrate_personal_data(int argc, char **argv, const cli_config *cfg);

/* True (and logged) when a migration of personal data is under way on
 * store's server: its copy of the log exists, so ORION_EVT may be the old log
 * or a part of the new one. false when it is not, or NATS does not say. */
bool cli_migration_under_way(es_store *store);

#endif
