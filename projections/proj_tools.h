/* proj_tools.h — offline operations on read model environments, for
 * `orion rebuild`: a consistent copy, the reset of one projection, and the
 * key-by-key comparison of two environments (`orion rebuild --verify`).
 *
 * Each works on a directory and opens its own LMDB handle; the source of a
 * copy may be in use by a running projector (LMDB allows several processes). */
#ifndef ORION_PROJ_TOOLS_H
#define ORION_PROJ_TOOLS_H

#include <stddef.h>
#include <stdint.h>

#include "orn.h"

/* Copies the environment at src into dst (an existing empty directory): one
 * consistent snapshot, compacted. */
orn_rc proj_env_snapshot(const char *src, const char *dst);

/* In the environment at dir (not in use): empties every sub-database named
 * "<name>.*" and deletes name's checkpoint, so that a runner rebuilds that
 * projection from the start while the others continue from theirs. */
orn_rc proj_env_reset_projection(const char *dir, const char *name);

/* The checkpoint of projection name in the environment at dir (0 if none). */
orn_rc proj_env_read_checkpoint(const char *dir, const char *name, uint64_t *seq);

/* One difference: a record present on one side only (the other is NULL) or
 * with different values. For a database with duplicate keys, each
 * (key, value) pair is a record. */
typedef struct proj_diff {
	const char *db;
	const void *key;
	size_t key_len;
	const void *live; /* NULL: absent from live */
	size_t live_len;
	const void *rebuilt; /* NULL: absent from rebuilt */
	size_t rebuilt_len;
} proj_diff;

typedef void (*proj_diff_fn)(const proj_diff *d, void *closure);

typedef struct proj_compare_result {
	uint64_t databases;   /* sub-databases compared */
	uint64_t records;     /* records read, both sides */
	uint64_t differences; /* reported to fn */
} proj_compare_result;

/* Compares every sub-database of the environments at live_dir and
 * rebuilt_dir key by key (with prefix non-NULL: only the databases named
 * "<prefix>.*" and prefix's checkpoint), calling fn for each difference. */
orn_rc proj_env_compare(const char *live_dir, const char *rebuilt_dir, const char *prefix, proj_diff_fn fn,
                        void *closure, proj_compare_result *out);

#endif
