/* hashmap.h — an open-addressing hash map from strings to pointers.
 *
 * Keys are copied into the map; values are the caller's (the map never frees
 * them). Used by the actor runtime's state cache and the domain's sets. */
#ifndef ORION_HASHMAP_H
#define ORION_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orn.h"

typedef struct hmap hmap;

/* Creates an empty map; NULL on allocation failure. */
hmap *hmap_create(void);
/* Frees the map and its key copies (not the values). NULL is accepted. */
void hmap_destroy(hmap *m);
/* Number of entries. */
size_t hmap_count(const hmap *m);
/* The value stored for key, or NULL (values may not be NULL). */
void *hmap_get(const hmap *m, const char *key);
/* Inserts or replaces key → value (value != NULL). ORN_ENOMEM on failure. */
orn_rc hmap_put(hmap *m, const char *key, void *value);
/* Removes key; returns its value or NULL if absent. */
void *hmap_remove(hmap *m, const char *key);
/* Removes every entry (keeps the capacity). */
void hmap_clear(hmap *m);

/* Iteration: start with *cursor = 0; returns false at the end. The map must
 * not change during iteration. */
bool hmap_next(const hmap *m, size_t *cursor, const char **key, void **value);

/* 64-bit FNV-1a of a NUL-terminated string (stable across processes). */
uint64_t hmap_hash(const char *key);

#endif
