/* idem.c — the commands an aggregate has answered (see idem.h). Keyed
 * requests in a short array in commit order; recent commands in a ring of
 * 64-bit hashes of their ids. Ledgers are small and rarely touched. */
#include "idem.h"

#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "hashmap.h"

typedef struct idem_entry {
	char key[ENV_ID_MAX];
	char request[ENV_REQ_MAX];
	uint64_t seq;
	int64_t time_ms;
} idem_entry;

typedef struct idem_recent {
	uint64_t key_hash;
	uint64_t seq;
} idem_recent;

struct idem_ledger {
	idem_entry *entries; /* keyed, oldest first */
	size_t count, cap;
	idem_recent recent[IDEM_RECENT]; /* a ring: next is where the next one goes */
	size_t recent_count, next;
	uint64_t last_seq; /* of the last commit recorded */
};

idem_ledger *idem_create(void)
{
	return calloc(1, sizeof(idem_ledger));
}

void idem_destroy(idem_ledger *l)
{
	if (l == NULL)
		return;
	free(l->entries);
	free(l);
}

void idem_clear(idem_ledger *l)
{
	l->count = 0;
	l->recent_count = 0;
	l->next = 0;
	l->last_seq = 0;
}

size_t idem_count(const idem_ledger *l)
{
	return l->count;
}

static bool live(const idem_entry *e, int64_t now_ms)
{
	return now_ms - e->time_ms < IDEM_TTL_MS;
}

idem_verdict idem_check(const idem_ledger *l, const char *key, const char *request, int64_t now_ms,
                        uint64_t *seq)
{
	size_t alive = 0;
	for (size_t i = 0; i < l->count; i++) {
		const idem_entry *e = &l->entries[i];
		if (strcmp(e->key, key) == 0) {
			if (strcmp(e->request, request) != 0)
				return IDEM_REUSED;
			*seq = e->seq;
			return IDEM_REPEAT;
		}
		alive += live(e, now_ms);
	}
	return alive >= IDEM_CAPACITY ? IDEM_FULL : IDEM_NEW;
}

bool idem_seen(const idem_ledger *l, const char *key, uint64_t *seq)
{
	uint64_t hash = hmap_hash(key);
	for (size_t i = 0; i < l->recent_count; i++) {
		if (l->recent[i].key_hash == hash) {
			*seq = l->recent[i].seq;
			return true;
		}
	}
	return false;
}

/* Drops the keyed entries that expired before now_ms (they are oldest first). */
static void prune(idem_ledger *l, int64_t now_ms)
{
	size_t dead = 0;
	while (dead < l->count && !live(&l->entries[dead], now_ms))
		dead++;
	if (dead == 0)
		return; /* also: no entries yet, and memmove takes no NULL */
	memmove(l->entries, l->entries + dead, (l->count - dead) * sizeof *l->entries);
	l->count -= dead;
}

static orn_rc record_keyed(idem_ledger *l, const char *key, const char *request, uint64_t seq,
                           int64_t time_ms)
{
	prune(l, time_ms);
	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		idem_entry *grown = realloc(l->entries, cap * sizeof *grown);
		if (grown == NULL)
			return ORN_ENOMEM;
		l->entries = grown;
		l->cap = cap;
	}
	idem_entry *e = &l->entries[l->count++];
	memset(e, 0, sizeof *e);
	memcpy(e->key, key, strlen(key));
	memcpy(e->request, request, strlen(request));
	e->seq = seq;
	e->time_ms = time_ms;
	return ORN_OK;
}

static void record_recent(idem_ledger *l, uint64_t key_hash, uint64_t seq)
{
	l->recent[l->next] = (idem_recent){key_hash, seq};
	l->next = (l->next + 1) % IDEM_RECENT;
	if (l->recent_count < IDEM_RECENT)
		l->recent_count++;
}

orn_rc idem_record(idem_ledger *l, const char *key, const char *request, uint64_t seq, int64_t time_ms)
{
	if (key == NULL || request == NULL || key[0] == '\0' || strlen(key) >= ENV_ID_MAX ||
	    strlen(request) >= ENV_REQ_MAX)
		return ORN_EINVAL;
	if (seq == l->last_seq)
		return ORN_OK; /* the commit's second event */
	if (request[0] != '\0') {
		orn_rc rc = record_keyed(l, key, request, seq, time_ms);
		if (rc != ORN_OK)
			return rc;
	}
	record_recent(l, hmap_hash(key), seq);
	l->last_seq = seq;
	return ORN_OK;
}

orn_rc idem_encode(const idem_ledger *l, mp_writer *w)
{
	mp_write_array(w, 2);
	mp_write_array(w, (uint32_t)l->count);
	for (size_t i = 0; i < l->count; i++) {
		const idem_entry *e = &l->entries[i];
		mp_write_array(w, 4);
		mp_write_cstr(w, e->key);
		mp_write_cstr(w, e->request);
		mp_write_uint(w, e->seq);
		mp_write_int(w, e->time_ms);
	}
	/* the ring, oldest first */
	mp_write_array(w, (uint32_t)l->recent_count * 2);
	for (size_t i = 0; i < l->recent_count; i++) {
		const idem_recent *r =
		        &l->recent[(l->next + IDEM_RECENT - l->recent_count + i) % IDEM_RECENT];
		mp_write_uint(w, r->key_hash);
		mp_write_uint(w, r->seq);
	}
	return mp_writer_status(w);
}

orn_rc idem_decode(idem_ledger *l, mp_reader *r)
{
	uint32_t parts = 0, count = 0, fields = 0;
	idem_clear(l);
	if (mp_read_array(r, &parts) != ORN_OK || parts != 2 || mp_read_array(r, &count) != ORN_OK)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++) {
		char key[ENV_ID_MAX], request[ENV_REQ_MAX];
		uint64_t seq = 0;
		int64_t time_ms = 0;
		if (mp_read_array(r, &fields) != ORN_OK || fields != 4 ||
		    mp_read_cstr(r, key, sizeof key) != ORN_OK ||
		    mp_read_cstr(r, request, sizeof request) != ORN_OK || request[0] == '\0' ||
		    mp_read_uint(r, &seq) != ORN_OK || mp_read_int(r, &time_ms) != ORN_OK)
			return ORN_EDECODE;
		if (record_keyed(l, key, request, seq, time_ms) != ORN_OK)
			return ORN_ENOMEM;
	}
	if (mp_read_array(r, &count) != ORN_OK || count % 2 != 0 || count / 2 > IDEM_RECENT)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count / 2; i++) {
		uint64_t hash = 0, seq = 0;
		if (mp_read_uint(r, &hash) != ORN_OK || mp_read_uint(r, &seq) != ORN_OK)
			return ORN_EDECODE;
		record_recent(l, hash, seq);
		l->last_seq = seq;
	}
	return ORN_OK;
}
