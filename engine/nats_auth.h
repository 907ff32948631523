/* nats_auth.h — NATS users and permissions for the roles of a process
 * (ADR 014).
 *
 * Every role connects to NATS as a user of its own whose permissions allow
 * only what the role does. A role says what it does in the engine's terms
 * (na_grants: which aggregates it appends to, which commands it answers and
 * sends, which durable consumers it pulls from, whether it reads the
 * streams); na_render_authorization turns the roles the process brings into
 * the nats-server `authorization` block, so the server never disagrees with
 * the code. The credentials file holds one line per role, "<role> <user>
 * <password>", '#' starting a comment. Passwords are never logged. The engine
 * names no role: the process brings them. */
#ifndef ORION_NATS_AUTH_H
#define ORION_NATS_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "orn.h"

#define NA_ROLE_MAX     32 /* bytes of a role's name, NUL included */
#define NA_USER_MAX     64
#define NA_PASSWORD_MAX 128
#define NA_ROLES_MAX    32 /* roles of one credentials file */
/* The credentials file of the embedded server, under <data dir>/nats. */
#define NA_CREDENTIALS_FILE "credentials"

/* What one role does on NATS. Lists are NULL-terminated (NULL: empty). */
typedef struct na_grants {
	bool all; /* every right: the user of the tools, the only one that creates the streams */
	const char *const *appends;  /* aggregates whose commits and snapshots it writes */
	const char *const *serves;   /* command subjects orion.cmd.<x>.* it answers (with their replies) */
	const char *const *sends;    /* command subjects orion.cmd.<x>.* it sends to */
	const char *const *durables; /* its durable consumers: create, pull, ack */
	bool reads;                  /* reads the event stream (gets, direct gets, ordered consumers) */
	bool reads_snapshots;        /* reads the snapshot stream */
	bool never_appends;          /* denied every event and snapshot subject */
	bool never_sends;            /* denied every command subject */
	/* Other streams it reads by subject (stream info, message get, direct
	 * get), e.g. the keystore's ORION_KEYS (ADR 027). */
	const char *const *reads_streams;
	const char *const *publishes; /* other subjects it publishes to, e.g. a new key's */
} na_grants;

/* A user of a process: a role's name and what it does. */
typedef struct na_role {
	const char *name;
	const na_grants *grants;
} na_role;

/* What one user may do, as rendered for the server; each list NULL-terminated. */
typedef struct na_permissions {
	const char **pub_allow, **pub_deny, **sub_allow;
	bool allow_responses;
} na_permissions;

/* The permissions of role among roles (every role's durables are denied
 * deletion to all but an `all` role). On success *out is the caller's: free
 * with na_permissions_dispose. ORN_ENOMEM. A role that serves commands
 * answers them with a second user (na_serve_permissions_of). */
orn_rc na_permissions_of(const na_role *role, const na_role *roles, size_t count, na_permissions *out);

/* Whether role has a serve user: it answers commands (or has every right). */
bool na_role_serves(const na_role *role);

/* The permissions of role's serve user, the connection its commands arrive
 * on: it subscribes to them and publishes only its answers (allow_responses).
 * A user with response permissions costs nats-server 2.9 a walk of every
 * reply subject delivered to one of its connections in the last two minutes
 * on each delivery once there are more than 4,096 (client.go,
 * pruneReplyPerms): a role's own connection, which JetStream delivers to with
 * a reply subject each time, must not be that user (ADR 014). ORN_ENOMEM. */
orn_rc na_serve_permissions_of(const na_role *role, na_permissions *out);

/* The serve user of the user and password given (out param out): the user
 * name with "-serve" appended and a password derived from the password (so a
 * credentials file holds one line per role). ORN_EINVAL if too long. */
orn_rc na_serve_user(const char *user, const char *password, char out_user[NA_USER_MAX],
                     char out_password[NA_PASSWORD_MAX]);
void na_permissions_dispose(na_permissions *p);

typedef struct na_credential {
	char role[NA_ROLE_MAX];
	char user[NA_USER_MAX];
	char password[NA_PASSWORD_MAX];
} na_credential;

/* The users of a credentials file. */
typedef struct na_credentials {
	size_t count;
	na_credential items[NA_ROLES_MAX];
} na_credentials;

/* The credential of role, NULL if the file has none. */
const na_credential *na_credentials_find(const na_credentials *c, const char *role);

/* Parses a credentials file's text (out param out, wiped first); roles names
 * the roles a line may name (NULL-terminated; NULL: any name). ORN_EDECODE for a malformed
 * line, an unknown or repeated role; ORN_EINVAL for a user or password with
 * characters other than printable ASCII, or too long. */
orn_rc na_credentials_parse(const char *text, size_t len, const char *const *roles, na_credentials *out);

/* Reads and parses the file at path. ORN_ENOTFOUND if it does not exist,
 * ORN_EIO if it cannot be read. Warns (without the content) when the file is
 * readable by group or others. */
orn_rc na_credentials_load(const char *path, const char *const *roles, na_credentials *out);

/* Loads the file at path or, if it does not exist, creates it (mode 0600)
 * with a user "orion-<role>" and a random password for every role of roles. */
orn_rc na_credentials_ensure(const char *path, const char *const *roles, na_credentials *out);

/* Overwrites every password in c. */
void na_credentials_wipe(na_credentials *c);

/* The nats-server `authorization { users = [...] }` block for the roles of
 * roles that c has a user for (malloc'd, NUL-terminated; the caller frees and
 * wipes it: it holds the passwords). NULL if out of memory or if c holds none
 * of them. */
char *na_render_authorization(const na_credentials *c, const na_role *roles, size_t count);

/* Writes the authorization block to path (mode 0600, replaced atomically). */
orn_rc na_write_server_config(const na_credentials *c, const na_role *roles, size_t count, const char *path);

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
