/* roles.h — the shop's roles as `orion serve` runs them: the descriptors
 * (engine/role.h) the role modules export (checkout, timers, payment, psp,
 * mail) and those of the roles made of actor kinds alone, the projector and
 * the gateway, which live here. serve's list of roles, `--help`, the NATS
 * users and their authorization, and `orion contracts` are built from this
 * list alone. */
#ifndef ORION_CLI_ROLES_H
#define ORION_CLI_ROLES_H

#include <stddef.h>

#include "nats_auth.h"
#include "role.h"

/* The NATS user of the tools (every right, the only one that creates the
 * streams), beside a user per role. */
#define CLI_OPS_ROLE "ops"

/* The roles that serve starts itself (their descriptors' start is NULL). */
extern const role_descriptor cli_projector_role;
extern const role_descriptor cli_gateway_role;

/* Every role, in the order `orion serve --help` lists them; *count set. */
const role_descriptor *const *cli_roles(size_t *count);

/* The names a credentials file may hold: ops, then every role with NATS
 * (out param out, NULL-terminated; cap counts the NULL). The count. */
size_t cli_role_names(const char **out, size_t cap);

/* The NATS users of the shop (ops first), for the authorization block (out
 * param out, at most cap). The count. */
size_t cli_nats_users(na_role *out, size_t cap);

/* The actor kind of entry i of the list of the kinds the roles answer on the
 * bus, NULL past the end (for `orion contracts`). */
const act_kind *cli_roles_kind(size_t i);

#endif
