/* orn.h — the one status type shared by every Orion module.
 *
 * Library-specific codes (natsStatus, MDB_*, CURLcode) are converted to an
 * orn_rc at the module boundary and never leak upward. Domain rejections
 * (out of stock, ...) are values of the domain, not errors. */
#ifndef ORION_ORN_H
#define ORION_ORN_H

#include <stdbool.h>

typedef enum orn_rc {
	ORN_OK = 0,
	ORN_ENOTFOUND,    /* the thing asked for does not exist */
	ORN_ECONFLICT,    /* optimistic concurrency: somebody else wrote first */
	ORN_EINVAL,       /* bad argument or bad input data */
	ORN_EDECODE,      /* bytes that do not decode (truncated, hostile, wrong type) */
	ORN_ENOMEM,       /* allocation failed */
	ORN_ETIMEOUT,     /* a dependency did not answer in time */
	ORN_EUNAVAILABLE, /* a dependency is down or not reachable */
	ORN_EIO,          /* I/O error talking to a dependency */
	ORN_ETOOBIG,      /* input larger than a configured bound */
	ORN_EEXISTS,      /* already exists */
	ORN_EINTERNAL,    /* a bug or an unexpected answer */
	ORN_RC_COUNT
} orn_rc;

/* Returns a static, human-readable description of rc (never NULL). */
const char *orn_strerror(orn_rc rc);

/* Returns the short stable name of rc ("ENOTFOUND", ...), for logs and replies. */
const char *orn_rc_name(orn_rc rc);

#define ORN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Characters of an aggregate or public id, NUL excluded. */
#define ORN_ID_MAX 64

/* True if id matches [A-Za-z0-9_-]{1,64}: the one rule for every id that can
 * end up in a subject, a key or a URL (anything else could address other
 * subjects). NULL is not valid. */
bool orn_id_valid(const char *id);

#endif
