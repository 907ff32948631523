/* proj_gen.h — generations of the read model environment on disk.
 *
 * <data dir>/lmdb is a symbolic link to the generation in use,
 * <data dir>/lmdb.<id>. `orion rebuild` builds a new generation aside in
 * <data dir>/lmdb.<id>.building, renames it to <data dir>/lmdb.<id> when it is
 * complete and then replaces the link in one rename(2): a reader of the link
 * sees the old generation or the new one, never a half-built one. A running
 * projector notices the link's new target and switches to it while serving
 * (projector.h); it then removes the old generation's directory. */
#ifndef ORION_PROJ_GEN_H
#define ORION_PROJ_GEN_H

#include <stddef.h>

#include "orn.h"

/* Makes <data_dir>/lmdb a link to a generation: creates a first, empty one if
 * there is none, or moves an older layout's plain directory into generation
 * lmdb.0. Removes generations the link does not lead to and `.building`
 * directories whose builder process is gone. Writes the link's path to link. */
orn_rc proj_gen_prepare(const char *data_dir, char *link, size_t cap);

/* Creates a fresh `.building` directory for a new generation (out: its path). */
orn_rc proj_gen_create(const char *data_dir, char *dir, size_t cap);

/* Completes the `.building` directory dir (its environment closed) and points
 * the link at it. ORN_EIO with the link unchanged if a step fails. */
orn_rc proj_gen_publish(const char *data_dir, const char *dir);

/* Removes a generation directory (its LMDB files and the directory itself)
 * if its name is a generation's; anything else is left alone. */
void proj_gen_retire(const char *dir);

/* Removes an environment's directory (its LMDB files and itself), whatever
 * its name: for temporary environments. */
void proj_env_remove_dir(const char *dir);

#endif
