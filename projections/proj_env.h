/* proj_env.h — the LMDB environment that holds Orion's read models.
 *
 * One environment (a directory) holds every read model as named
 * sub-databases. It is opened with an explicit map size that grows on
 * demand (doubling, up to a configured maximum), MDB_NOTLS so that read
 * transactions are not tied to threads (queries come from a reader pool), and
 * MDB_NOMETASYNC because read models are rebuildable from the stream.
 *
 * Writes come from ONE thread (the projector); queries from any thread.
 * No LMDB type crosses this header: other folders see an opaque handle and
 * the query functions of each model (inventory.h, ...). */
#ifndef ORION_PROJ_ENV_H
#define ORION_PROJ_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orn.h"

typedef struct proj_env proj_env;

typedef struct proj_env_options {
	const char *path;      /* directory of the environment (created if absent); required */
	size_t map_size;       /* initial map size in bytes; default 256 MiB */
	size_t max_map_size;   /* growth stops here (ORN_ETOOBIG); default 64 GiB */
	unsigned max_dbs;      /* named sub-databases; default 64 */
	unsigned max_readers;  /* concurrent read transactions; default 126 */
	unsigned reader_cache; /* idle read transactions kept for reuse; default 32 */
	bool no_sync;          /* no fsync per commit (a rebuild aside): call proj_env_sync at the end */
} proj_env_options;

/* Fills o with the defaults above (path NULL). */
void proj_env_options_init(proj_env_options *o);

/* Opens (creating if needed) the environment at o->path. On success *out owns
 * it; close with proj_env_close after every model and runner using it is gone.
 * ORN_EINVAL for bad options, ORN_EIO if the directory cannot be opened. */
orn_rc proj_env_open(const proj_env_options *o, proj_env **out);
/* Flushes every commit to disk (for an environment opened with no_sync). */
orn_rc proj_env_sync(proj_env *env);
/* Closes the environment and frees it. NULL is ignored. */
void proj_env_close(proj_env *env);

typedef struct proj_env_stats {
	size_t map_size;      /* current map size in bytes */
	size_t used_bytes;    /* pages in use x page size (last committed snapshot) */
	uint64_t map_grows;   /* times the map was grown after MDB_MAP_FULL */
	uint64_t write_txns;  /* write transactions committed */
	unsigned readers_max; /* configured maximum of read transactions */
} proj_env_stats;

/* Fills out with current figures (out param). */
orn_rc proj_env_stats_get(proj_env *env, proj_env_stats *out);

#endif
