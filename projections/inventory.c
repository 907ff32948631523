/* inventory.c — the inventory read model (see inventory.h).
 *
 * Sub-databases (schemas/read-models.md):
 *   inventory.items         item id -> record (on hand, reserved, last seq)
 *   inventory.by_available  DUPSORT: available (order-preserving int64) -> item ids
 *
 * "below" queries. Pages are ordered by item id, but the filter is on
 * available. The index groups ids by available value, each group sorted by
 * id, so the items with available < N are the union of the groups whose key
 * is < N: a page is a k-way merge of those sorted groups, each seeked past
 * the cursor (MDB_GET_BOTH_RANGE). The cost is O(groups) seeks plus
 * O(limit x groups) comparisons, independent of the number of items.
 * Low-stock thresholds are small, so there are few groups; when there are
 * more than MERGE_GROUPS_MAX, the filter is not selective in practice and a
 * scan of the primary database in id order, filtering, is cheaper. Both paths
 * return exactly the same rows. */
#include "inventory.h"

#include <stdio.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proj_internal.h"
#include "stock.h"

#define ITEMS_DB         "inventory.items"
#define BY_AVAILABLE_DB  "inventory.by_available"
#define SUBJECT_PREFIX   "orion.evt." STOCK_AGGREGATE "."
#define MERGE_GROUPS_MAX 256

struct proj_inventory {
	proj_model base; /* first: proj_model_create and _destroy take the model */
	MDB_dbi items;
	MDB_dbi by_available;
};

static orn_rc inventory_open(void *self, proj_txn *t)
{
	static const proj_dbi_spec dbis[] = {
	        {ITEMS_DB, 0, offsetof(proj_inventory, items)},
	        {BY_AVAILABLE_DB, MDB_DUPSORT, offsetof(proj_inventory, by_available)},
	};

	return proj_dbis_open(t, self, dbis, ORN_ARRAY_LEN(dbis));
}

static bool is_stock_event(const char *type)
{
	static const char *const types[] = {STOCK_EV_CREATED,   STOCK_EV_RESERVED,  STOCK_EV_RELEASED,
	                                    STOCK_EV_COMMITTED, STOCK_EV_ADJUSTED,  STOCK_EV_THRESHOLD,
	                                    STOCK_EV_LOW,       STOCK_EV_LOW_CLEAR, STOCK_EV_RETURNED};
	for (size_t i = 0; i < ORN_ARRAY_LEN(types); i++)
		if (strcmp(type, types[i]) == 0)
			return true;
	return false;
}

static void evolve(proj_stock_record *rec, const stock_event *ev)
{
	switch (ev->kind) {
	case STOCK_CREATED:
		rec->on_hand = ev->quantity;
		rec->reserved = 0;
		rec->threshold = ev->threshold; /* 0 in events stored before thresholds */
		break;
	case STOCK_RESERVED:
		rec->reserved += ev->quantity;
		break;
	case STOCK_RELEASED:
		rec->reserved -= ev->quantity;
		break;
	case STOCK_COMMITTED:
		rec->reserved -= ev->quantity;
		rec->on_hand -= ev->quantity;
		break;
	case STOCK_ADJUSTED:
		rec->on_hand += ev->delta;
		break;
	case STOCK_THRESHOLD_SET:
		rec->threshold = ev->threshold;
		break;
	case STOCK_LOW_DETECTED:
		rec->low = true;
		break;
	case STOCK_LOW_CLEARED:
		rec->low = false;
		break;
	case STOCK_RETURNED:
		rec->on_hand += ev->quantity; /* sold units back on hand (ADR 028) */
		break;
	}
}

/* Reads an item's record in any transaction: ORN_ENOTFOUND if absent. */
static orn_rc read_record(MDB_txn *txn, proj_inventory *inv, const char *id, size_t id_len,
                          proj_stock_record *rec)
{
	MDB_val v;
	orn_rc rc = proj_get(txn, inv->items, id, id_len, &v);
	if (rc == ORN_OK)
		rc = proj_stock_record_decode(v.mv_data, v.mv_size, rec);
	return rc;
}

static orn_rc inventory_apply(void *self, proj_txn *t, uint64_t seq, const char *subject,
                              const env_envelope *e)
{
	proj_inventory *inv = self;
	stock_event ev;
	proj_stock_record rec = {0};
	uint8_t old_key[8], new_key[8], value[PROJ_STOCK_RECORD_LEN];
	const char *id = subject + strlen(SUBJECT_PREFIX);
	orn_rc rc;

	if (strncmp(subject, SUBJECT_PREFIX, strlen(SUBJECT_PREFIX)) != 0 || !es_id_valid(id) ||
	    !is_stock_event(e->type))
		return ORN_OK; /* not ours, or a type of a later version: nothing to do */
	if (stock_event_decode(e->type, e->payload, e->payload_len, &ev) != ORN_OK) {
		proj_model_skip(&inv->base, "inventory skips an undecodable stock event", seq, subject,
		                e->type);
		return ORN_OK;
	}
	size_t id_len = strlen(id);
	rc = read_record(t->txn, inv, id, id_len, &rec);
	bool existed = rc == ORN_OK;
	if (rc == ORN_EDECODE) {
		proj_log_skip("inventory record unreadable; rebuilt from this event", seq, subject, e->type);
		memset(&rec, 0, sizeof rec);
	} else if (rc != ORN_OK && rc != ORN_ENOTFOUND) {
		return rc;
	}
	proj_key_i64(old_key, rec.on_hand - rec.reserved);
	evolve(&rec, &ev);
	rec.last_seq = seq;
	proj_key_i64(new_key, rec.on_hand - rec.reserved);
	if (existed && memcmp(old_key, new_key, sizeof old_key) != 0) {
		rc = proj_del(t, inv->by_available, old_key, sizeof old_key, id, id_len);
		if (rc != ORN_OK && rc != ORN_ENOTFOUND)
			return rc;
	}
	rc = proj_put(t, inv->by_available, new_key, sizeof new_key, id, id_len, MDB_NODUPDATA);
	if (rc != ORN_OK && rc != ORN_EEXISTS)
		return rc;
	proj_stock_record_encode(&rec, value);
	return proj_put(t, inv->items, id, id_len, value, sizeof value, 0);
}

PROJ_MODEL_FUNCTIONS(proj_inventory, PROJ_INVENTORY_NAME, PROJ_INVENTORY_FILTER, inventory_open,
                     inventory_apply);

static void fill_level(proj_stock_level *out, const char *id, size_t id_len, const proj_stock_record *rec)
{
	memcpy(out->id, id, id_len);
	out->id[id_len] = '\0';
	out->on_hand = rec->on_hand;
	out->reserved = rec->reserved;
	out->available = rec->on_hand - rec->reserved;
	out->version = rec->last_seq;
	out->threshold = rec->threshold;
	out->low = rec->low;
}

orn_rc proj_inventory_get(proj_inventory *inv, const char *id, proj_stock_level *out)
{
	MDB_txn *txn = NULL;
	proj_stock_record rec;
	if (!es_id_valid(id))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(inv->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	size_t id_len = strlen(id);
	if ((rc = read_record(txn, inv, id, id_len, &rec)) == ORN_OK)
		fill_level(out, id, id_len, &rec);
	proj_env_read_end(inv->base.env, txn);
	return rc;
}

/* ---- listing ---- */

typedef struct list_ctx {
	proj_inventory *inv;
	MDB_txn *txn;
	const proj_inventory_query *q;
	char after[ES_ID_MAX + 1]; /* cursor id, "" for the first page */
	size_t after_len;
	proj_inventory_page *out;
	bool more; /* a row exists after the page */
} list_ctx;

/* Adds a row, or notes that one more exists once the page is full.
 * Returns true when the listing can stop. */
static bool emit(list_ctx *c, const void *id, size_t id_len, const proj_stock_record *rec)
{
	if (c->out->count == c->q->limit) {
		c->more = true;
		return true;
	}
	fill_level(&c->out->items[c->out->count++], id, id_len, rec);
	return false;
}

/* Primary order scan from the cursor, filtering on available if asked. */
static orn_rc list_scan(list_ctx *c)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int mrc = mdb_cursor_open(c->txn, c->inv->items, &cur);
	if (mrc != 0)
		return proj_rc(mrc);
	mrc = proj_seek_after(cur, c->after, c->after_len, &k, &v);
	orn_rc rc = ORN_OK;
	for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		proj_stock_record rec;
		if (k.mv_size > ES_ID_MAX || proj_stock_record_decode(v.mv_data, v.mv_size, &rec) != ORN_OK) {
			rc = ORN_EDECODE;
			break;
		}
		if (c->q->has_below && !(rec.on_hand - rec.reserved < c->q->below))
			continue;
		if (emit(c, k.mv_data, k.mv_size, &rec))
			break;
	}
	if (rc == ORN_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	mdb_cursor_close(cur);
	return rc;
}

typedef struct group {
	uint8_t key[8];
	char id[ES_ID_MAX];
	size_t id_len;
	bool live;
} group;

/* Positions g on the first id of its group after `after` (or the first). */
static int group_seek(MDB_cursor *cur, group *g, const char *after, size_t after_len)
{
	MDB_val v;
	int mrc = proj_seek_dup(cur, g->key, 8, after, after_len, true, &v);
	g->live = false;
	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc != 0)
		return mrc;
	if (v.mv_size == 0 || v.mv_size > ES_ID_MAX)
		return MDB_CORRUPTED;
	memcpy(g->id, v.mv_data, v.mv_size);
	g->id_len = v.mv_size;
	g->live = true;
	return 0;
}

/* Collects the index keys below the threshold; *count > max means "too many". */
static int collect_groups(list_ctx *c, MDB_cursor *cur, group *groups, size_t max, size_t *count)
{
	uint8_t limit[8];
	MDB_val k, v;
	proj_key_i64(limit, c->q->below);
	*count = 0;
	int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_NODUP)) {
		if (k.mv_size != 8)
			return MDB_CORRUPTED;
		if (memcmp(k.mv_data, limit, 8) >= 0)
			break;
		if (*count == max) {
			(*count)++;
			return 0;
		}
		memcpy(groups[(*count)++].key, k.mv_data, 8);
	}
	return mrc == MDB_NOTFOUND ? 0 : mrc;
}

/* k-way merge of the index groups below the threshold, in id order. */
static orn_rc list_merge(list_ctx *c, bool *too_many)
{
	MDB_cursor *cur = NULL;
	size_t count = 0;
	orn_rc rc = ORN_OK;
	group *groups = malloc(sizeof *groups * MERGE_GROUPS_MAX);
	int mrc = groups == NULL ? ENOMEM : mdb_cursor_open(c->txn, c->inv->by_available, &cur);
	*too_many = false;
	if (mrc == 0)
		mrc = collect_groups(c, cur, groups, MERGE_GROUPS_MAX, &count);
	if (mrc == 0 && count > MERGE_GROUPS_MAX) {
		*too_many = true;
		goto done;
	}
	for (size_t i = 0; mrc == 0 && i < count; i++)
		mrc = group_seek(cur, &groups[i], c->after, c->after_len);
	while (mrc == 0) {
		group *low = NULL;
		for (size_t i = 0; i < count; i++)
			if (groups[i].live && (low == NULL || proj_bytes_cmp(groups[i].id, groups[i].id_len,
			                                                     low->id, low->id_len) < 0))
				low = &groups[i];
		if (low == NULL)
			break;
		proj_stock_record rec;
		if ((rc = read_record(c->txn, c->inv, low->id, low->id_len, &rec)) != ORN_OK) {
			if (rc == ORN_ENOTFOUND) /* the index names an item that is not there */
				rc = ORN_EDECODE;
			break;
		}
		if (emit(c, low->id, low->id_len, &rec))
			break;
		char id[ES_ID_MAX];
		size_t id_len = low->id_len;
		memcpy(id, low->id, id_len);
		mrc = group_seek(cur, low, id, id_len);
	}
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	free(groups);
	return rc != ORN_OK ? rc : proj_rc(mrc);
}

orn_rc proj_inventory_list(proj_inventory *inv, const proj_inventory_query *q, proj_inventory_page *out)
{
	list_ctx c = {.inv = inv, .q = q, .out = out};
	orn_rc rc;
	out->count = 0;
	out->next_cursor[0] = '\0';
	if (q->limit < 1 || q->limit > PROJ_INVENTORY_PAGE_MAX)
		return ORN_EINVAL;
	if (q->cursor != NULL && q->cursor[0] != '\0') {
		if (proj_cursor_decode(q->cursor, c.after, sizeof c.after) != ORN_OK)
			return ORN_EINVAL;
		c.after_len = strlen(c.after);
	}
	if ((rc = proj_env_read_begin(inv->base.env, &c.txn)) != ORN_OK)
		return rc;
	bool too_many = true;
	if (q->has_below)
		rc = list_merge(&c, &too_many);
	if (rc == ORN_OK && too_many) {
		out->count = 0;
		c.more = false;
		rc = list_scan(&c);
	}
	proj_env_read_end(inv->base.env, c.txn);
	return proj_page_end(rc, c.more, &out->count, out->count > 0 ? out->items[out->count - 1].id : NULL,
	                     out->next_cursor, sizeof out->next_cursor);
}
