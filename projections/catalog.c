/* catalog.c — the catalog read model (see catalog.h).
 *
 * Sub-databases (schemas/read-models.md):
 *   catalog.products     product id -> record (fields, deleted flag, last seq)
 *   catalog.by_sku       sku key (sku_key_for) -> product id, live products only
 *   catalog.by_category  DUPSORT: category -> product ids, live products only
 *   catalog.search       DUPSORT: token -> product ids, live products only
 * and it reads inventory.items (owned by inventory.c) for `available`.
 *
 * Indexes are kept as diffs: on every event the index keys of the product
 * before and after are computed from the records (tokenizing is
 * deterministic), and only the entries that differ are deleted or added. A
 * deleted product keeps its record (flagged) for the admin join, and leaves
 * every index.
 *
 * Listing. Each filter (the category, each token of q) is a posting list:
 * the duplicates of one key, sorted by id. The page is their intersection in
 * id order, found by a leapfrog join: the candidate is the largest head, and
 * every list is seeked to it (MDB_GET_BOTH_RANGE) until all agree. The cost
 * is O(seeks) bounded by the shortest list, not by the catalog size. Without
 * a filter the page is a scan of catalog.products from the cursor that skips
 * deleted records. */
#include "catalog.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proj_internal.h"
#include "sku.h"

#define PRODUCTS_DB    "catalog.products"
#define BY_SKU_DB      "catalog.by_sku"
#define BY_CATEGORY_DB "catalog.by_category"
#define SEARCH_DB      "catalog.search"
/* Owned by inventory.c (same name, flags 0, proj_stock_record values). */
#define INVENTORY_ITEMS_DB "inventory.items"
#define SUBJECT_PREFIX     "orion.evt." PRODUCT_AGGREGATE "."

/* Record: a 32-byte header, then sku, currency, category, name, description
 * (no NULs). Header: format, flags, sku len, currency len, category len, 3
 * zero bytes, price i64 LE, last seq u64 LE, name len u16 LE, description len
 * u16 LE, 4 zero bytes. */
#define RECORD_FORMAT  1
#define RECORD_HEADER  32
#define RECORD_DELETED 1u
#define RECORD_MAX                                                                                           \
	(RECORD_HEADER + PRODUCT_SKU_MAX + PRODUCT_CURRENCY_MAX + PRODUCT_CATEGORY_MAX + PRODUCT_NAME_MAX +  \
	 PRODUCT_DESCRIPTION_MAX)
#define POSTINGS_MAX (PROJ_CATALOG_QUERY_WORDS + 1)

typedef char token[PROJ_CATALOG_TOKEN_MAX + 1];

/* The index entries of one product state. */
typedef struct index_keys {
	bool live;
	char sku_key[SKU_KEY_MAX];
	char category[PRODUCT_CATEGORY_MAX];
	token tokens[PROJ_CATALOG_TOKENS_MAX]; /* sorted */
	size_t token_count;
} index_keys;

/* Working memory of apply (projector thread only): too large for comfort on a stack. */
typedef struct apply_scratch {
	product_event event;
	product_state before, after;
	index_keys keys_before, keys_after;
	uint8_t record[RECORD_MAX];
} apply_scratch;

struct proj_catalog {
	proj_model base; /* first: proj_model_create and _destroy take the model */
	MDB_dbi products;
	MDB_dbi by_sku;
	MDB_dbi by_category;
	MDB_dbi search;
	MDB_dbi stock; /* inventory.items */
	apply_scratch scratch;
};

/* ---- tokens ---- */

static bool is_word_byte(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

static bool has_token(token *tokens, size_t count, const char *t)
{
	for (size_t i = 0; i < count; i++)
		if (strcmp(tokens[i], t) == 0)
			return true;
	return false;
}

bool proj_catalog_tokenize(const char *text, token *tokens, size_t max, size_t *count)
{
	const char *p = text != NULL ? text : "";
	while (*p != '\0') {
		token t;
		size_t n = 0;
		while (*p != '\0' && !is_word_byte(*p))
			p++;
		for (; is_word_byte(*p); p++)
			if (n < PROJ_CATALOG_TOKEN_MAX)
				t[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
		t[n] = '\0';
		if (n < PROJ_CATALOG_TOKEN_MIN || has_token(tokens, *count, t))
			continue;
		if (*count == max)
			return false;
		memcpy(tokens[(*count)++], t, n + 1);
	}
	return true;
}

static int token_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void index_keys_of(const product_state *s, index_keys *out)
{
	out->live = s->exists && !s->deleted;
	out->token_count = 0;
	out->sku_key[0] = '\0';
	out->category[0] = '\0';
	if (!out->live)
		return;
	if (sku_key_for(s->fields.sku, out->sku_key, sizeof out->sku_key) != ORN_OK)
		out->sku_key[0] = '\0';
	memcpy(out->category, s->fields.category, sizeof out->category);
	proj_catalog_tokenize(s->fields.name, out->tokens, PROJ_CATALOG_TOKENS_MAX, &out->token_count);
	proj_catalog_tokenize(s->fields.description, out->tokens, PROJ_CATALOG_TOKENS_MAX, &out->token_count);
	qsort(out->tokens, out->token_count, sizeof out->tokens[0], token_cmp);
}

/* ---- records ---- */

static size_t put_text(uint8_t *out, const char *s, size_t n)
{
	memcpy(out, s, n);
	return n;
}

static size_t record_encode(const product_state *s, uint64_t seq, uint8_t out[RECORD_MAX])
{
	const product_fields *f = &s->fields;
	size_t sku = strlen(f->sku), currency = strlen(f->currency), category = strlen(f->category);
	size_t name = strlen(f->name), description = strlen(f->description);
	memset(out, 0, RECORD_HEADER);
	out[0] = RECORD_FORMAT;
	out[1] = s->deleted ? RECORD_DELETED : 0;
	out[2] = (uint8_t)sku;
	out[3] = (uint8_t)currency;
	out[4] = (uint8_t)category;
	proj_put_u64(out + 8, (uint64_t)f->price_cents);
	proj_put_u64(out + 16, seq);
	out[24] = (uint8_t)name;
	out[25] = (uint8_t)(name >> 8);
	out[26] = (uint8_t)description;
	out[27] = (uint8_t)(description >> 8);
	size_t n = RECORD_HEADER;
	n += put_text(out + n, f->sku, sku);
	n += put_text(out + n, f->currency, currency);
	n += put_text(out + n, f->category, category);
	n += put_text(out + n, f->name, name);
	n += put_text(out + n, f->description, description);
	return n;
}

/* Copies n bytes of text at *p into out (cap bytes); false if they do not fit or hold a NUL. */
static bool get_text(const uint8_t **p, size_t n, char *out, size_t cap)
{
	if (n >= cap || memchr(*p, '\0', n) != NULL)
		return false;
	memcpy(out, *p, n);
	out[n] = '\0';
	*p += n;
	return true;
}

/* ORN_EDECODE for anything record_encode did not write. */
static orn_rc record_decode(const void *buf, size_t len, product_state *s, uint64_t *seq)
{
	const uint8_t *b = buf, *p = b + RECORD_HEADER;
	product_fields *f = &s->fields;
	memset(f, 0, sizeof *f); /* no stale bytes after the texts reach a caller */
	if (len < RECORD_HEADER || b[0] != RECORD_FORMAT || (b[1] & ~RECORD_DELETED) != 0)
		return ORN_EDECODE;
	size_t name = b[24] | (size_t)b[25] << 8, description = b[26] | (size_t)b[27] << 8;
	if (len != RECORD_HEADER + b[2] + b[3] + b[4] + name + description)
		return ORN_EDECODE;
	if (!get_text(&p, b[2], f->sku, sizeof f->sku) ||
	    !get_text(&p, b[3], f->currency, sizeof f->currency) ||
	    !get_text(&p, b[4], f->category, sizeof f->category) ||
	    !get_text(&p, name, f->name, sizeof f->name) ||
	    !get_text(&p, description, f->description, sizeof f->description))
		return ORN_EDECODE;
	s->exists = true;
	s->deleted = (b[1] & RECORD_DELETED) != 0;
	f->price_cents = (int64_t)proj_get_u64(b + 8);
	*seq = proj_get_u64(b + 16);
	return ORN_OK;
}

/* Reads a product's record in any transaction: ORN_ENOTFOUND if absent. */
static orn_rc read_record(MDB_txn *txn, proj_catalog *cat, const char *id, size_t id_len, product_state *s,
                          uint64_t *seq)
{
	MDB_val v;
	orn_rc rc = proj_get(txn, cat->products, id, id_len, &v);
	if (rc == ORN_OK)
		rc = record_decode(v.mv_data, v.mv_size, s, seq);
	return rc;
}

/* ---- applying product events ---- */

static orn_rc catalog_open(void *self, proj_txn *t)
{
	static const proj_dbi_spec dbis[] = {
	        {PRODUCTS_DB, 0, offsetof(proj_catalog, products)},
	        {BY_SKU_DB, 0, offsetof(proj_catalog, by_sku)},
	        {BY_CATEGORY_DB, MDB_DUPSORT, offsetof(proj_catalog, by_category)},
	        {SEARCH_DB, MDB_DUPSORT, offsetof(proj_catalog, search)},
	        {INVENTORY_ITEMS_DB, 0, offsetof(proj_catalog, stock)},
	};

	return proj_dbis_open(t, self, dbis, ORN_ARRAY_LEN(dbis));
}

static bool is_product_event(const char *type)
{
	return strcmp(type, PRODUCT_EV_CREATED) == 0 || strcmp(type, PRODUCT_EV_UPDATED) == 0 ||
	       strcmp(type, PRODUCT_EV_DELETED) == 0;
}

static orn_rc posting_add(proj_txn *t, MDB_dbi dbi, const char *key, const char *id, size_t id_len)
{
	orn_rc rc = proj_put(t, dbi, key, strlen(key), id, id_len, MDB_NODUPDATA);
	return rc == ORN_EEXISTS ? ORN_OK : rc;
}

static orn_rc posting_remove(proj_txn *t, MDB_dbi dbi, const char *key, const char *id, size_t id_len)
{
	orn_rc rc = proj_del(t, dbi, key, strlen(key), id, id_len);
	return rc == ORN_ENOTFOUND ? ORN_OK : rc;
}

/* Removes the tokens only in old, adds those only in new (both sorted). */
static orn_rc update_tokens(proj_txn *t, proj_catalog *cat, const char *id, size_t id_len,
                            const index_keys *old, const index_keys *new)
{
	size_t i = 0, j = 0;
	orn_rc rc = ORN_OK;
	while (rc == ORN_OK && (i < old->token_count || j < new->token_count)) {
		int c = i == old->token_count   ? 1
		        : j == new->token_count ? -1
		                                : strcmp(old->tokens[i], new->tokens[j]);
		if (c < 0)
			rc = posting_remove(t, cat->search, old->tokens[i++], id, id_len);
		else if (c > 0)
			rc = posting_add(t, cat->search, new->tokens[j++], id, id_len);
		else
			i++, j++;
	}
	return rc;
}

/* Removes the sku entry of old if it still names this product and new does not keep it. */
static orn_rc remove_sku(proj_txn *t, proj_catalog *cat, const char *id, size_t id_len, const index_keys *old,
                         const index_keys *new)
{
	MDB_val v;
	if (!old->live || old->sku_key[0] == '\0' || (new->live &&strcmp(old->sku_key, new->sku_key) == 0))
		return ORN_OK;
	orn_rc rc = proj_get(t->txn, cat->by_sku, old->sku_key, strlen(old->sku_key), &v);
	if (rc == ORN_ENOTFOUND || (rc == ORN_OK && proj_bytes_cmp(v.mv_data, v.mv_size, id, id_len) != 0))
		return ORN_OK;
	if (rc == ORN_OK)
		rc = proj_del(t, cat->by_sku, old->sku_key, strlen(old->sku_key), NULL, 0);
	return rc;
}

static orn_rc update_indexes(proj_txn *t, proj_catalog *cat, const char *id, size_t id_len,
                             const index_keys *old, const index_keys *new)
{
	orn_rc rc = remove_sku(t, cat, id, id_len, old, new);
	if (rc == ORN_OK && new->live &&new->sku_key[0] != '\0')
		rc = proj_put(t, cat->by_sku, new->sku_key, strlen(new->sku_key), id, id_len, 0);
	if (rc == ORN_OK && old->live && (!new->live || strcmp(old->category, new->category) != 0))
		rc = posting_remove(t, cat->by_category, old->category, id, id_len);
	if (rc == ORN_OK && new->live)
		rc = posting_add(t, cat->by_category, new->category, id, id_len);
	if (rc == ORN_OK)
		rc = update_tokens(t, cat, id, id_len, old, new);
	return rc;
}

static orn_rc catalog_apply(void *self, proj_txn *t, uint64_t seq, const char *subject, const env_envelope *e)
{
	proj_catalog *cat = self;
	apply_scratch *s = &cat->scratch;
	const char *id = subject + strlen(SUBJECT_PREFIX);
	uint64_t old_seq = 0;

	if (strncmp(subject, SUBJECT_PREFIX, strlen(SUBJECT_PREFIX)) != 0 || !es_id_valid(id) ||
	    !is_product_event(e->type))
		return ORN_OK; /* not ours, or a type of a later version: nothing to do */
	if (product_event_decode(e->type, e->payload, e->payload_len, &s->event) != ORN_OK) {
		proj_model_skip(&cat->base, "catalog skips an undecodable product event", seq, subject,
		                e->type);
		return ORN_OK;
	}
	size_t id_len = strlen(id);
	product_state_init(&s->before);
	orn_rc rc = read_record(t->txn, cat, id, id_len, &s->before, &old_seq);
	if (rc == ORN_EDECODE) {
		/* Its index entries cannot be found any more; a rebuild removes them. */
		proj_log_skip("catalog record unreadable; rebuilt from this event", seq, subject, e->type);
		product_state_init(&s->before);
	} else if (rc != ORN_OK && rc != ORN_ENOTFOUND) {
		return rc;
	}
	s->after = s->before;
	product_evolve(&s->after, &s->event);
	if (!s->after.exists)
		return ORN_OK; /* an update or delete of a product never created */
	index_keys_of(&s->before, &s->keys_before);
	index_keys_of(&s->after, &s->keys_after);
	rc = update_indexes(t, cat, id, id_len, &s->keys_before, &s->keys_after);
	if (rc == ORN_OK) {
		size_t n = record_encode(&s->after, seq, s->record);
		rc = proj_put(t, cat->products, id, id_len, s->record, n, 0);
	}
	return rc;
}

PROJ_MODEL_FUNCTIONS(proj_catalog, PROJ_CATALOG_NAME, PROJ_CATALOG_FILTER, catalog_open, catalog_apply);
/* ---- queries ---- */

/* Fills out from a live product and its stock item, read in txn. */
static orn_rc fill_product(MDB_txn *txn, proj_catalog *cat, const char *id, size_t id_len,
                           const product_state *s, uint64_t seq, proj_product *out)
{
	const product_fields *f = &s->fields;
	proj_stock_record stock = {0};
	MDB_val v;
	orn_rc rc = proj_get(txn, cat->stock, id, id_len, &v);
	out->has_stock = rc == ORN_OK;
	if (rc == ORN_OK)
		rc = proj_stock_record_decode(v.mv_data, v.mv_size, &stock);
	else if (rc == ORN_ENOTFOUND)
		rc = ORN_OK;
	memcpy(out->id, id, id_len);
	out->id[id_len] = '\0';
	memcpy(out->sku, f->sku, sizeof out->sku);
	memcpy(out->name, f->name, sizeof out->name);
	memcpy(out->description, f->description, sizeof out->description);
	out->price_cents = f->price_cents;
	memcpy(out->currency, f->currency, sizeof out->currency);
	memcpy(out->category, f->category, sizeof out->category);
	out->version = seq;
	out->on_hand = stock.on_hand;
	out->reserved = stock.reserved;
	out->available = stock.on_hand - stock.reserved;
	out->low_stock_threshold = stock.threshold;
	out->low = stock.low;
	return rc;
}

proj_env *proj_catalog_env(const proj_catalog *cat)
{
	return cat->base.env;
}

orn_rc proj_catalog_read_live(MDB_txn *txn, proj_catalog *cat, const char *id, product_state *out)
{
	uint64_t seq = 0;
	orn_rc rc = read_record(txn, cat, id, strlen(id), out, &seq);
	return rc == ORN_OK && out->deleted ? ORN_ENOTFOUND : rc;
}

/* Reads a live product into out: ORN_ENOTFOUND if absent or deleted. */
static orn_rc get_live(MDB_txn *txn, proj_catalog *cat, const char *id, size_t id_len, proj_product *out)
{
	product_state s;
	uint64_t seq = 0;
	orn_rc rc = read_record(txn, cat, id, id_len, &s, &seq);
	if (rc == ORN_OK && s.deleted)
		rc = ORN_ENOTFOUND;
	if (rc == ORN_OK)
		rc = fill_product(txn, cat, id, id_len, &s, seq, out);
	return rc;
}

orn_rc proj_catalog_get(proj_catalog *cat, const char *id, proj_product *out)
{
	MDB_txn *txn = NULL;
	if (!es_id_valid(id))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(cat->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	rc = get_live(txn, cat, id, strlen(id), out);
	proj_env_read_end(cat->base.env, txn);
	return rc;
}

orn_rc proj_catalog_get_by_sku(proj_catalog *cat, const char *sku, proj_product *out)
{
	MDB_txn *txn = NULL;
	MDB_val v;
	char key[SKU_KEY_MAX], id[ES_ID_MAX + 1];
	if (sku == NULL || sku_key_for(sku, key, sizeof key) != ORN_OK)
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(cat->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	rc = proj_get(txn, cat->by_sku, key, strlen(key), &v);
	if (rc == ORN_OK && (v.mv_size == 0 || v.mv_size > ES_ID_MAX))
		rc = ORN_EDECODE;
	if (rc == ORN_OK) {
		memcpy(id, v.mv_data, v.mv_size);
		rc = get_live(txn, cat, id, v.mv_size, out);
	}
	proj_env_read_end(cat->base.env, txn);
	return rc;
}

orn_rc proj_catalog_labels(proj_catalog *cat, const char *const *ids, size_t count, proj_product_label *out)
{
	MDB_txn *txn = NULL;
	product_state s;
	uint64_t seq;
	orn_rc rc = proj_env_read_begin(cat->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	for (size_t i = 0; rc == ORN_OK && i < count; i++) {
		memset(&out[i], 0, sizeof out[i]);
		if (!es_id_valid(ids[i]))
			continue;
		rc = read_record(txn, cat, ids[i], strlen(ids[i]), &s, &seq);
		if (rc == ORN_ENOTFOUND) {
			rc = ORN_OK;
			continue;
		}
		if (rc != ORN_OK)
			break;
		out[i].found = true;
		out[i].deleted = s.deleted;
		memcpy(out[i].sku, s.fields.sku, sizeof out[i].sku);
		memcpy(out[i].name, s.fields.name, sizeof out[i].name);
	}
	proj_env_read_end(cat->base.env, txn);
	return rc;
}

/* ---- listing ---- */

typedef struct list_ctx {
	proj_catalog *cat;
	MDB_txn *txn;
	unsigned limit;
	char after[ES_ID_MAX + 1]; /* cursor id, "" for the first page */
	size_t after_len;
	proj_catalog_page *out;
	bool more; /* a row exists after the page */
} list_ctx;

/* Adds a row (s: its record, or NULL to read it), or notes that one more
 * exists once the page is full (*stop). */
static orn_rc emit(list_ctx *c, const char *id, size_t id_len, const product_state *s, uint64_t seq,
                   bool *stop)
{
	proj_product *row = &c->out->items[c->out->count];
	orn_rc rc;
	if (c->out->count == c->limit) {
		c->more = true;
		*stop = true;
		return ORN_OK;
	}
	if (s != NULL)
		rc = fill_product(c->txn, c->cat, id, id_len, s, seq, row);
	else if ((rc = get_live(c->txn, c->cat, id, id_len, row)) == ORN_ENOTFOUND)
		rc = ORN_EDECODE; /* an index names a product that is not live */
	if (rc == ORN_OK)
		c->out->count++;
	return rc;
}

/* Primary order scan from the cursor, skipping deleted products. */
static orn_rc list_scan(list_ctx *c)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	product_state s;
	uint64_t seq;
	bool stop = false;
	int mrc = mdb_cursor_open(c->txn, c->cat->products, &cur);
	if (mrc != 0)
		return proj_rc(mrc);
	mrc = proj_seek_after(cur, c->after, c->after_len, &k, &v);
	orn_rc rc = ORN_OK;
	for (; mrc == 0 && rc == ORN_OK && !stop; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size == 0 || k.mv_size > ES_ID_MAX ||
		    record_decode(v.mv_data, v.mv_size, &s, &seq) != ORN_OK)
			rc = ORN_EDECODE;
		else if (!s.deleted)
			rc = emit(c, k.mv_data, k.mv_size, &s, seq, &stop);
	}
	if (rc == ORN_OK && !stop && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	mdb_cursor_close(cur);
	return rc;
}

/* The ids under one key of a DUPSORT index, read in order. */
typedef struct posting {
	MDB_dbi dbi;
	const char *key;
	MDB_cursor *cur;
	char head[ES_ID_MAX]; /* the id the cursor is on */
	size_t head_len;
} posting;

/* Moves p to its first id >= target (> target if strict; the first id if
 * target is empty). ORN_ENOTFOUND when the list has no such id. */
static orn_rc posting_seek(posting *p, const char *target, size_t target_len, bool strict)
{
	MDB_val v;
	int mrc = proj_seek_dup(p->cur, p->key, strlen(p->key), target, target_len, strict, &v);
	if (mrc == 0 && (v.mv_size == 0 || v.mv_size > ES_ID_MAX))
		mrc = MDB_CORRUPTED;
	if (mrc == 0) {
		memcpy(p->head, v.mv_data, v.mv_size);
		p->head_len = v.mv_size;
	}
	return proj_rc(mrc);
}

/* Leapfrog join of count posting lists from the cursor, in id order. */
static orn_rc list_join(list_ctx *c, posting *p, size_t count)
{
	char candidate[ES_ID_MAX];
	size_t candidate_len = 0, agreed = 1, i = 0;
	bool stop = false;
	orn_rc rc = posting_seek(&p[0], c->after, c->after_len, true);
	if (rc == ORN_OK) {
		memcpy(candidate, p[0].head, p[0].head_len);
		candidate_len = p[0].head_len;
		i = 1 % count;
	}
	while (rc == ORN_OK) {
		if (agreed == count) {
			if ((rc = emit(c, candidate, candidate_len, NULL, 0, &stop)) != ORN_OK || stop)
				break;
			rc = posting_seek(&p[i], candidate, candidate_len, true);
		} else {
			rc = posting_seek(&p[i], candidate, candidate_len, false);
		}
		if (rc != ORN_OK)
			break;
		if (agreed < count &&
		    proj_bytes_cmp(p[i].head, p[i].head_len, candidate, candidate_len) == 0) {
			agreed++;
		} else {
			memcpy(candidate, p[i].head, p[i].head_len);
			candidate_len = p[i].head_len;
			agreed = 1;
		}
		i = (i + 1) % count;
	}
	return rc == ORN_ENOTFOUND ? ORN_OK : rc;
}

static orn_rc list_postings(list_ctx *c, posting *p, size_t count)
{
	orn_rc rc = ORN_OK;
	size_t opened = 0;
	for (; opened < count && rc == ORN_OK; opened++)
		rc = proj_rc(mdb_cursor_open(c->txn, p[opened].dbi, &p[opened].cur));
	if (rc == ORN_OK)
		rc = list_join(c, p, count);
	else
		opened--; /* the failed open left no cursor */
	for (size_t i = 0; i < opened; i++)
		mdb_cursor_close(p[i].cur);
	return rc;
}

static bool category_valid(const char *category)
{
	size_t n = strlen(category);
	return n >= 1 && n < PRODUCT_CATEGORY_MAX &&
	       strspn(category, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

orn_rc proj_catalog_list(proj_catalog *cat, const proj_catalog_query *q, proj_catalog_page *out)
{
	list_ctx c = {.cat = cat, .limit = q->limit, .out = out};
	token words[PROJ_CATALOG_QUERY_WORDS];
	posting postings[POSTINGS_MAX];
	size_t word_count = 0, count = 0;
	bool has_category = q->category != NULL && q->category[0] != '\0';
	bool has_q = q->q != NULL && q->q[0] != '\0';
	orn_rc rc;

	out->count = 0;
	out->next_cursor[0] = '\0';
	if (q->limit < 1 || q->limit > PROJ_CATALOG_PAGE_MAX ||
	    (has_category && !category_valid(q->category)))
		return ORN_EINVAL;
	if (q->cursor != NULL && q->cursor[0] != '\0') {
		if (proj_cursor_decode(q->cursor, c.after, sizeof c.after) != ORN_OK)
			return ORN_EINVAL;
		c.after_len = strlen(c.after);
	}
	if (has_q && !proj_catalog_tokenize(q->q, words, PROJ_CATALOG_QUERY_WORDS, &word_count))
		return ORN_EINVAL;
	if (has_q && word_count == 0)
		return ORN_OK; /* nothing searchable: nothing matches */
	if (has_category)
		postings[count++] = (posting){.dbi = cat->by_category, .key = q->category};
	for (size_t i = 0; i < word_count; i++)
		postings[count++] = (posting){.dbi = cat->search, .key = words[i]};
	if ((rc = proj_env_read_begin(cat->base.env, &c.txn)) != ORN_OK)
		return rc;
	rc = count == 0 ? list_scan(&c) : list_postings(&c, postings, count);
	proj_env_read_end(cat->base.env, c.txn);
	return proj_page_end(rc, c.more, &out->count, out->count > 0 ? out->items[out->count - 1].id : NULL,
	                     out->next_cursor, sizeof out->next_cursor);
}
