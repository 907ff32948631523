/* nats_auth.h — per-role NATS credentials and the permissions of each role.
 *
 * Every role of `orion serve` connects to NATS as a user of its own whose
 * permissions allow only the subjects the role publishes and subscribes to
 * (ADR 014). The table of permissions lives here, in one place; the server
 * side is rendered from it (na_render_authorization: the `authorization`
 * block of a nats-server configuration), the client side reads the same
 * credentials file: one line per role, "<role> <user> <password>", '#'
 * starting a comment. The "ops" role (the CLI tools, stream creation) has
 * every right. Passwords are never logged. */
#ifndef ORION_NATS_AUTH_H
#define ORION_NATS_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "orn.h"

#define NA_USER_MAX     64
#define NA_PASSWORD_MAX 128
/* The credentials file of the embedded server, under <data dir>/nats. */
#define NA_CREDENTIALS_FILE "credentials"

typedef enum na_role {
	NA_OPS,
	NA_GATEWAY,
	NA_PROJECTOR,
	NA_CART,
	NA_ORDER,
	NA_STOCK,
	NA_PRODUCT,
	NA_USER,
	NA_CHECKOUT,
	NA_PAYMENT,
	NA_MAIL,
	NA_TIMERS,
	NA_ROLE_COUNT
} na_role;

/* What one role may do; each list is NULL-terminated (NULL: empty). With
 * allow_responses the role may also publish one reply to the reply subject
 * of each request it received (the command replies), and nothing else there. */
typedef struct na_permissions {
	const char *const *pub_allow;
	const char *const *pub_deny;
	const char *const *sub_allow;
	const char *const *sub_deny;
	bool allow_responses;
} na_permissions;

/* The stable name of a role ("ops", "gateway", ...); NULL if out of range. */
const char *na_role_name(na_role r);
/* The role named name; false if none is. */
bool na_role_parse(const char *name, na_role *out);
/* The permissions of a role (static data); NULL if out of range. */
const na_permissions *na_role_permissions(na_role r);

typedef struct na_credential {
	bool present;
	char user[NA_USER_MAX];
	char password[NA_PASSWORD_MAX];
} na_credential;

/* The users of a credentials file, by role (absent roles: present false). */
typedef struct na_credentials {
	na_credential role[NA_ROLE_COUNT];
} na_credentials;

/* Parses a credentials file's text (out param out, wiped first). ORN_EDECODE
 * for a malformed line or an unknown role, ORN_EINVAL for a user or password
 * with characters other than printable ASCII, or too long. */
orn_rc na_credentials_parse(const char *text, size_t len, na_credentials *out);

/* Reads and parses the file at path. ORN_ENOTFOUND if it does not exist,
 * ORN_EIO if it cannot be read. Warns (without the content) when the file is
 * readable by group or others. */
orn_rc na_credentials_load(const char *path, na_credentials *out);

/* Loads the file at path or, if it does not exist, creates it (mode 0600)
 * with a user "orion-<role>" and a random password for every role. */
orn_rc na_credentials_ensure(const char *path, na_credentials *out);

/* Overwrites every password in c. */
void na_credentials_wipe(na_credentials *c);

/* The nats-server `authorization { users = [...] }` block for the present
 * roles of c, with their permissions, quoted (malloc'd, NUL-terminated; the
 * caller frees and wipes it: it holds the passwords). NULL if out of memory
 * or if c holds no role. */
char *na_render_authorization(const na_credentials *c);

/* Writes the authorization block to path (mode 0600, replaced atomically). */
orn_rc na_write_server_config(const na_credentials *c, const char *path);

/* How one connection authenticates: user and password (both NULL: none)
 * and TLS files (each may be NULL). Borrowed strings. */
typedef struct na_conn {
	const char *user;
	const char *password;
	const char *tls_ca;   /* CA bundle that verifies the servers; enables TLS */
	const char *tls_cert; /* client certificate chain (with tls_key): mutual TLS */
	const char *tls_key;
} na_conn;

#endif
