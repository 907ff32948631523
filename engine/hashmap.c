/* hashmap.c — string → pointer map: open addressing with linear probing over a
 * power-of-two table, load factor at most 0.7, and backward-shift deletion
 * (no tombstones, so lookups never slow down after many removals). */
#include "hashmap.h"

#include <stdlib.h>
#include <string.h>

#define INITIAL_CAPACITY 16

typedef struct slot {
	char *key; /* NULL: empty */
	void *value;
	uint64_t hash;
} slot;

struct hmap {
	slot *slots;
	size_t capacity; /* a power of two */
	size_t count;
};

uint64_t hmap_hash(const char *key)
{
	uint64_t h = 14695981039346656037ULL;
	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	return h;
}

hmap *hmap_create(void)
{
	hmap *m = calloc(1, sizeof *m);
	if (m == NULL)
		return NULL;
	m->slots = calloc(INITIAL_CAPACITY, sizeof *m->slots);
	if (m->slots == NULL) {
		free(m);
		return NULL;
	}
	m->capacity = INITIAL_CAPACITY;
	return m;
}

void hmap_destroy(hmap *m)
{
	if (m == NULL)
		return;
	hmap_clear(m);
	free(m->slots);
	free(m);
}

size_t hmap_count(const hmap *m)
{
	return m->count;
}

/* Index of key's slot, or of the empty slot where it would go. */
static size_t find_slot(const hmap *m, const char *key, uint64_t hash)
{
	size_t mask = m->capacity - 1;
	size_t i = (size_t)hash & mask;
	while (m->slots[i].key != NULL) {
		if (m->slots[i].hash == hash && strcmp(m->slots[i].key, key) == 0)
			break;
		i = (i + 1) & mask;
	}
	return i;
}

void *hmap_get(const hmap *m, const char *key)
{
	if (key == NULL)
		return NULL;
	const slot *s = &m->slots[find_slot(m, key, hmap_hash(key))];
	return s->key != NULL ? s->value : NULL;
}

static orn_rc grow(hmap *m)
{
	size_t capacity = m->capacity * 2; /* calloc checks capacity * size */
	slot *slots = calloc(capacity, sizeof *slots);
	if (slots == NULL)
		return ORN_ENOMEM;
	for (size_t i = 0; i < m->capacity; i++) {
		if (m->slots[i].key == NULL)
			continue;
		size_t j = (size_t)m->slots[i].hash & (capacity - 1);
		while (slots[j].key != NULL)
			j = (j + 1) & (capacity - 1);
		slots[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = slots;
	m->capacity = capacity;
	return ORN_OK;
}

orn_rc hmap_put(hmap *m, const char *key, void *value)
{
	if (key == NULL || value == NULL)
		return ORN_EINVAL;
	uint64_t hash = hmap_hash(key);
	size_t i = find_slot(m, key, hash);
	if (m->slots[i].key != NULL) {
		m->slots[i].value = value;
		return ORN_OK;
	}
	/* Keep count / capacity <= 0.7 after the insert. */
	if ((m->count + 1) * 10 > m->capacity * 7) {
		orn_rc rc = grow(m);
		if (rc != ORN_OK)
			return rc;
		i = find_slot(m, key, hash);
	}
	char *copy = strdup(key);
	if (copy == NULL)
		return ORN_ENOMEM;
	m->slots[i] = (slot){copy, value, hash};
	m->count++;
	return ORN_OK;
}

void *hmap_remove(hmap *m, const char *key)
{
	if (key == NULL)
		return NULL;
	size_t mask = m->capacity - 1;
	size_t hole = find_slot(m, key, hmap_hash(key));
	if (m->slots[hole].key == NULL)
		return NULL;
	void *value = m->slots[hole].value;
	free(m->slots[hole].key);
	/* Backward shift: pull later entries of the probe run into the hole
	 * unless their home slot lies cyclically in (hole, j]. */
	for (size_t j = (hole + 1) & mask; m->slots[j].key != NULL; j = (j + 1) & mask) {
		size_t home = (size_t)m->slots[j].hash & mask;
		bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
		if (stays)
			continue;
		m->slots[hole] = m->slots[j];
		hole = j;
	}
	m->slots[hole] = (slot){NULL, NULL, 0};
	m->count--;
	return value;
}

void hmap_clear(hmap *m)
{
	for (size_t i = 0; i < m->capacity; i++) {
		free(m->slots[i].key);
		m->slots[i] = (slot){NULL, NULL, 0};
	}
	m->count = 0;
}

bool hmap_next(const hmap *m, size_t *cursor, const char **key, void **value)
{
	for (size_t i = *cursor; i < m->capacity; i++) {
		if (m->slots[i].key == NULL)
			continue;
		if (key != NULL)
			*key = m->slots[i].key;
		if (value != NULL)
			*value = m->slots[i].value;
		*cursor = i + 1;
		return true;
	}
	*cursor = m->capacity;
	return false;
}
