/* desk.c — the admin order desk's read model (see desk.h).
 *
 * Sub-databases (schemas/read-models.md):
 *   desk.orders            created_at (order-preserving int64), order id -> customer id
 *   desk.order_created     order id -> created_at (8 bytes, order-preserving)
 *   desk.accounts          registered_at (order-preserving int64), user key -> empty
 *   desk.account_created   user key -> registered_at (8 bytes, order-preserving)
 *   desk.timeline          order id, 0x00, seq (8 bytes, big endian), index (2 bytes, big
 *                          endian) -> [aggregate, aggregate id, type, at_ms]
 *
 * An order enters desk.orders with its first event (OrderPlaced): its
 * customer and creation time come from the orders model's record, written
 * earlier in the same transaction, and never change. Status and total are
 * read from the orders model's customer index when a page is read, so this
 * model is rewritten by no later order event. An account enters
 * desk.accounts with UserRegistered, at the event's time. A story's index
 * numbers the events of one commit that belong to it: it is counted from the
 * rows already written under (order, seq), so a batch retried from scratch
 * numbers them the same way. */
#include "desk.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore.h"
#include "log.h"
#include "mail_log.h"
#include "proj_internal.h"

#define ORDERS_DB          "desk.orders"
#define ORDER_CREATED_DB   "desk.order_created"
#define ACCOUNTS_DB        "desk.accounts"
#define ACCOUNT_CREATED_DB "desk.account_created"
#define TIMELINE_DB        "desk.timeline"

#define EVT_PREFIX    "orion.evt."
#define ORDER_PREFIX  EVT_PREFIX ORDER_AGGREGATE "."
#define USER_PREFIX   EVT_PREFIX USER_AGGREGATE "."
#define MAIL_PREFIX   EVT_PREFIX MAIL_LOG_AGGREGATE "."
#define TIME_KEY_MAX  (8 + ES_ID_MAX)
#define STORY_KEY_MAX (ES_ID_MAX + 1 + 8 + 2)
#define STORY_FIELDS  4

struct proj_desk {
	proj_model base; /* first: proj_model_create and _destroy take the model */
	proj_orders *orders;
	MDB_dbi by_created, order_created, accounts, account_created, timeline;
};

/* ---- keys ---- */

static size_t time_key(uint8_t out[TIME_KEY_MAX], int64_t ms, const char *id, size_t id_len)
{
	proj_key_i64(out, ms);
	memcpy(out + 8, id, id_len);
	return 8 + id_len;
}

static size_t story_key(uint8_t out[STORY_KEY_MAX], const char *id, size_t id_len, uint64_t seq,
                        unsigned index)
{
	memcpy(out, id, id_len);
	out[id_len] = 0;
	for (int i = 7; i >= 0; i--, seq >>= 8)
		out[id_len + 1 + (size_t)i] = (uint8_t)seq;
	out[id_len + 9] = (uint8_t)(index >> 8);
	out[id_len + 10] = (uint8_t)index;
	return id_len + 11;
}

/* ---- applying events ---- */

static orn_rc desk_open(void *self, proj_txn *t)
{
	static const proj_dbi_spec dbis[] = {
	        {ORDERS_DB, 0, offsetof(proj_desk, by_created)},
	        {ORDER_CREATED_DB, 0, offsetof(proj_desk, order_created)},
	        {ACCOUNTS_DB, 0, offsetof(proj_desk, accounts)},
	        {ACCOUNT_CREATED_DB, 0, offsetof(proj_desk, account_created)},
	        {TIMELINE_DB, 0, offsetof(proj_desk, timeline)},
	};

	return proj_dbis_open(t, self, dbis, ORN_ARRAY_LEN(dbis));
}

/* Adds (key, time) to index and reverse unless key is there already. */
static orn_rc index_once(proj_txn *t, MDB_dbi index, MDB_dbi reverse, const char *key, int64_t ms,
                         const void *value, size_t value_len)
{
	MDB_val v;
	uint8_t k[TIME_KEY_MAX], stamp[8];
	size_t key_len = strlen(key);
	orn_rc rc = proj_get(t->txn, reverse, key, key_len, &v);
	if (rc != ORN_ENOTFOUND)
		return rc;
	proj_key_i64(stamp, ms);
	rc = proj_put(t, reverse, key, key_len, stamp, sizeof stamp, 0);
	if (rc == ORN_OK)
		rc = proj_put(t, index, k, time_key(k, ms, key, key_len), value, value_len, 0);
	return rc;
}

static orn_rc add_order(proj_desk *m, proj_txn *t, const char *id)
{
	char customer[ORDER_ID_MAX];
	int64_t created = 0;
	orn_rc rc = proj_orders_head_in(m->orders, t->txn, id, customer, sizeof customer, &created);
	if (rc == ORN_ENOTFOUND || rc == ORN_EDECODE)
		return ORN_OK; /* an event the orders model refused: no order to list */
	if (rc != ORN_OK)
		return rc;
	return index_once(t, m->by_created, m->order_created, id, created, customer, strlen(customer));
}

/* Adds the event to the story of order id (a known order) at seq. */
static orn_rc add_to_story(proj_desk *m, proj_txn *t, const char *id, uint64_t seq, const char *subject,
                           const env_envelope *e)
{
	uint8_t key[STORY_KEY_MAX];
	char aggregate[ES_ID_MAX + 1] = "", aggregate_id[ES_ID_MAX + 1] = "";
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	unsigned index = 0;
	size_t id_len = strlen(id), prefix_len = id_len + 9;
	const char *rest = subject + strlen(EVT_PREFIX), *dot = strchr(rest, '.');
	if (strncmp(subject, EVT_PREFIX, strlen(EVT_PREFIX)) != 0 || dot == NULL ||
	    (size_t)(dot - rest) > ES_ID_MAX || strlen(dot + 1) > ES_ID_MAX)
		return ORN_OK; /* not a subject of an aggregate's events */
	memcpy(aggregate, rest, (size_t)(dot - rest));
	snprintf(aggregate_id, sizeof aggregate_id, "%s", dot + 1);
	size_t start_len = story_key(key, id, id_len, seq, 0);
	int mrc = mdb_cursor_open(t->txn, m->timeline, &cur);
	if (mrc == 0) {
		k = (MDB_val){start_len, key};
		mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	for (; mrc == 0 && k.mv_size == start_len && memcmp(k.mv_data, key, prefix_len) == 0;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		index++;
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		return proj_rc(mrc);
	if (index > 0xffff)
		return ORN_OK;
	mp_writer_reset(m->base.writer);
	mp_write_array(m->base.writer, STORY_FIELDS);
	mp_write_cstr(m->base.writer, aggregate);
	mp_write_cstr(m->base.writer, aggregate_id);
	mp_write_cstr(m->base.writer, e->type);
	mp_write_int(m->base.writer, e->time_ms);
	orn_rc rc = mp_writer_status(m->base.writer);
	if (rc == ORN_OK)
		rc = proj_put(t, m->timeline, key, story_key(key, id, id_len, seq, index),
		              mp_writer_data(m->base.writer), mp_writer_size(m->base.writer), 0);
	return rc;
}

/* ---- the story rule ---- */

/* Adds order id (len bytes) with flag by to refs (n of them), once; ids that
 * are not ids are left out. */
static void add_ref(proj_desk_story_ref *refs, size_t *n, const char *id, size_t len, unsigned by)
{
	char text[ES_ID_MAX + 1];
	if (len == 0 || len > ES_ID_MAX)
		return;
	memcpy(text, id, len);
	text[len] = '\0';
	if (!es_id_valid(text))
		return;
	for (size_t i = 0; i < *n; i++)
		if (strcmp(refs[i].order_id, text) == 0) {
			refs[i].by |= by;
			return;
		}
	if (*n < PROJ_DESK_STORY_REFS) {
		memcpy(refs[*n].order_id, text, len + 1);
		refs[(*n)++].by = by;
	}
}

size_t proj_desk_story_refs(const char *subject, const env_envelope *e,
                            proj_desk_story_ref out[PROJ_DESK_STORY_REFS])
{
	size_t n = 0;
	const char *colon = strchr(e->causation, ':');
	bool mail = strncmp(subject, MAIL_PREFIX, strlen(MAIL_PREFIX)) == 0;
	if (strncmp(subject, ORDER_PREFIX, strlen(ORDER_PREFIX)) == 0)
		add_ref(out, &n, subject + strlen(ORDER_PREFIX), strlen(subject + strlen(ORDER_PREFIX)),
		        PROJ_DESK_BY_SUBJECT);
	if (colon != NULL && !mail) /* a mail log's commands are "<mail id>:..." */
		add_ref(out, &n, e->causation, (size_t)(colon - e->causation), PROJ_DESK_BY_CAUSATION);
	if (mail) {
		mail_log_event ev;
		if (mail_log_event_decode(e->type, e->payload, e->payload_len, &ev) == ORN_OK)
			add_ref(out, &n, ev.subject.order_id, strlen(ev.subject.order_id), PROJ_DESK_BY_MAIL);
	}
	add_ref(out, &n, e->correlation, strlen(e->correlation), PROJ_DESK_BY_CORRELATION);
	return n;
}

bool proj_desk_in_story(const char *order_id, const char *subject, const env_envelope *e)
{
	proj_desk_story_ref refs[PROJ_DESK_STORY_REFS];
	size_t n = proj_desk_story_refs(subject, e, refs);
	for (size_t i = 0; i < n; i++)
		if (strcmp(refs[i].order_id, order_id) == 0)
			return true;
	return false;
}

/* Whether order id is known to the orders model in this transaction. */
static orn_rc order_known(proj_desk *m, proj_txn *t, const char *id, bool *known)
{
	char customer[ORDER_ID_MAX];
	int64_t created = 0;
	orn_rc rc = proj_orders_head_in(m->orders, t->txn, id, customer, sizeof customer, &created);
	*known = rc == ORN_OK;
	return rc == ORN_ENOTFOUND || rc == ORN_EDECODE ? ORN_OK : rc;
}

static orn_rc desk_apply(void *self, proj_txn *t, uint64_t seq, const char *subject, const env_envelope *e)
{
	proj_desk *m = self;
	proj_desk_story_ref refs[PROJ_DESK_STORY_REFS];
	orn_rc rc = ORN_OK;
	if (strncmp(subject, ORDER_PREFIX, strlen(ORDER_PREFIX)) == 0 &&
	    es_id_valid(subject + strlen(ORDER_PREFIX)))
		rc = add_order(m, t, subject + strlen(ORDER_PREFIX));
	else if (strncmp(subject, USER_PREFIX, strlen(USER_PREFIX)) == 0 &&
	         strcmp(e->type, USER_EV_REGISTERED) == 0 && es_id_valid(subject + strlen(USER_PREFIX)))
		rc = index_once(t, m->accounts, m->account_created, subject + strlen(USER_PREFIX), e->time_ms,
		                "", 0);
	size_t n = proj_desk_story_refs(subject, e, refs);
	for (size_t i = 0; i < n && rc == ORN_OK; i++) {
		/* A correlation id is most often a request's: only an order the orders
		 * model knows gets the row. The other refs name an order (the holds'
		 * OpenOrder, "<order>:hold", comes before OrderPlaced). */
		bool known = refs[i].by != PROJ_DESK_BY_CORRELATION;
		if (!known)
			rc = order_known(m, t, refs[i].order_id, &known);
		if (rc == ORN_OK && known)
			rc = add_to_story(m, t, refs[i].order_id, seq, subject, e);
	}
	return rc;
}

orn_rc proj_desk_create(proj_env *env, proj_orders *orders, proj_desk **out)
{
	static const proj_def def = {
	        .name = PROJ_DESK_NAME, .filter = PROJ_DESK_FILTER, .open = desk_open, .apply = desk_apply};
	orn_rc rc;

	if ((*out = proj_model_create(sizeof **out, env, &def, &rc)) != NULL)
		(*out)->orders = orders; /* read by apply only */
	return rc;
}

void proj_desk_destroy(proj_desk *m)
{
	proj_model_destroy(m);
}

PROJ_MODEL_DEF(proj_desk);
/* ---- queries ---- */

/* The time-index key the walk of index starts below: the cursor's item
 * (its time from reverse), or past the end. ORN_EINVAL for an unknown cursor. */
static orn_rc walk_start(MDB_txn *txn, MDB_dbi reverse, const char *after, uint8_t out[TIME_KEY_MAX],
                         size_t *out_len)
{
	MDB_val v;
	if (after == NULL) {
		memset(out, 0xff, 8);
		*out_len = 8; /* past every time key */
		return ORN_OK;
	}
	orn_rc rc = proj_get(txn, reverse, after, strlen(after), &v);
	if (rc == ORN_ENOTFOUND || (rc == ORN_OK && v.mv_size != 8))
		return ORN_EINVAL;
	if (rc == ORN_OK) {
		memcpy(out, v.mv_data, 8);
		memcpy(out + 8, after, strlen(after));
		*out_len = 8 + strlen(after);
	}
	return rc;
}

/* The id of a time-index key into out; false for a key time_key did not write. */
static bool time_key_id(const MDB_val *k, char out[ES_ID_MAX + 1])
{
	if (k->mv_size <= 8 || k->mv_size - 8 > ES_ID_MAX)
		return false;
	memcpy(out, (const uint8_t *)k->mv_data + 8, k->mv_size - 8);
	out[k->mv_size - 8] = '\0';
	return es_id_valid(out);
}

/* Whether an order row passes q (its summary read into *row). */
static orn_rc order_row(proj_desk *m, MDB_txn *txn, const proj_desk_query *q, const MDB_val *k,
                        const MDB_val *v, proj_desk_order *row, bool *pass)
{
	*pass = false;
	if (!time_key_id(k, row->summary.id) || v->mv_size == 0 || v->mv_size >= sizeof row->customer_id)
		return ORN_OK; /* not a row this model wrote: a rebuild drops it */
	memcpy(row->customer_id, v->mv_data, v->mv_size);
	row->customer_id[v->mv_size] = '\0';
	if (q->customer_id != NULL && strcmp(q->customer_id, row->customer_id) != 0)
		return ORN_OK;
	int64_t created = proj_key_i64_decode(k->mv_data);
	orn_rc rc =
	        proj_orders_row_in(m->orders, txn, row->customer_id, created, row->summary.id, &row->summary);
	if (rc == ORN_ENOTFOUND || rc == ORN_EDECODE)
		return ORN_OK;
	*pass = rc == ORN_OK && (!q->has_status || row->summary.status == q->status);
	return rc;
}

static orn_rc orders_in_txn(proj_desk *m, MDB_txn *txn, const proj_desk_query *q, const char *after,
                            proj_desk_orders_page *out, bool *more)
{
	uint8_t start[TIME_KEY_MAX];
	size_t start_len = 0;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	proj_desk_order row;
	orn_rc rc = walk_start(txn, m->order_created, after, start, &start_len);
	if (rc != ORN_OK)
		return rc;
	if (after == NULL && q->has_until && q->until_ms < INT64_MAX) {
		proj_key_i64(start, q->until_ms + 1); /* below the first key after until */
		start_len = 8;
	}
	int mrc = mdb_cursor_open(txn, m->by_created, &cur);
	if (mrc != 0)
		return proj_rc(mrc);
	mrc = proj_seek_below(cur, start, start_len, &k, &v);
	for (; mrc == 0 && rc == ORN_OK; mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
		bool pass = false;
		if (k.mv_size < 8)
			continue;
		int64_t created = proj_key_i64_decode(k.mv_data);
		if (q->has_since && created < q->since_ms)
			break;
		if (q->has_until && created > q->until_ms)
			continue;
		rc = order_row(m, txn, q, &k, &v, &row, &pass);
		if (rc != ORN_OK || !pass)
			continue;
		if (out->count == q->limit) {
			*more = true;
			break;
		}
		out->items[out->count++] = row;
	}
	if (rc == ORN_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	mdb_cursor_close(cur);
	return rc;
}

orn_rc proj_desk_orders(proj_desk *m, const proj_desk_query *q, proj_desk_orders_page *out)
{
	MDB_txn *txn = NULL;
	char after[ES_ID_MAX + 1];
	bool has_cursor = q->cursor != NULL && q->cursor[0] != '\0', more = false;
	out->count = 0;
	out->next_cursor[0] = '\0';
	if (q->limit < 1 || q->limit > PROJ_DESK_PAGE_MAX ||
	    (q->customer_id != NULL && !es_id_valid(q->customer_id)) ||
	    (has_cursor && proj_cursor_decode(q->cursor, after, sizeof after) != ORN_OK))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	rc = orders_in_txn(m, txn, q, has_cursor ? after : NULL, out, &more);
	proj_env_read_end(m->base.env, txn);
	if (rc == ORN_OK && more)
		rc = proj_cursor_encode(out->items[out->count - 1].summary.id, out->next_cursor,
		                        sizeof out->next_cursor);
	if (rc != ORN_OK)
		out->count = 0;
	return rc;
}

static orn_rc accounts_in_txn(proj_desk *m, MDB_txn *txn, unsigned limit, const char *after,
                              proj_desk_accounts_page *out, bool *more)
{
	uint8_t start[TIME_KEY_MAX];
	size_t start_len = 0;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	orn_rc rc = walk_start(txn, m->account_created, after, start, &start_len);
	if (rc != ORN_OK)
		return rc;
	int mrc = mdb_cursor_open(txn, m->accounts, &cur);
	if (mrc != 0)
		return proj_rc(mrc);
	mrc = proj_seek_below(cur, start, start_len, &k, &v);
	for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
		proj_desk_account *a = &out->items[out->count];
		char key[ES_ID_MAX + 1];
		if (!time_key_id(&k, key) || strlen(key) >= sizeof a->key)
			continue;
		if (out->count == limit) {
			*more = true;
			break;
		}
		memcpy(a->key, key, strlen(key) + 1);
		a->created_at_ms = proj_key_i64_decode(k.mv_data);
		out->count++;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	mdb_cursor_close(cur);
	return rc;
}

orn_rc proj_desk_accounts(proj_desk *m, unsigned limit, const char *cursor, proj_desk_accounts_page *out)
{
	MDB_txn *txn = NULL;
	char after[ES_ID_MAX + 1];
	bool has_cursor = cursor != NULL && cursor[0] != '\0', more = false;
	out->count = 0;
	out->next_cursor[0] = '\0';
	if (limit < 1 || limit > PROJ_DESK_PAGE_MAX ||
	    (has_cursor && proj_cursor_decode(cursor, after, sizeof after) != ORN_OK))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	rc = accounts_in_txn(m, txn, limit, has_cursor ? after : NULL, out, &more);
	proj_env_read_end(m->base.env, txn);
	if (rc == ORN_OK && more)
		rc = proj_cursor_encode(out->items[out->count - 1].key, out->next_cursor,
		                        sizeof out->next_cursor);
	if (rc != ORN_OK)
		out->count = 0;
	return rc;
}

orn_rc proj_desk_account_created(proj_desk *m, const char *key, int64_t *created_at_ms)
{
	MDB_txn *txn = NULL;
	MDB_val v;
	*created_at_ms = 0;
	if (key == NULL || !es_id_valid(key))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	rc = proj_get(txn, m->account_created, key, strlen(key), &v);
	if (rc == ORN_OK && v.mv_size != 8)
		rc = ORN_EDECODE;
	if (rc == ORN_OK)
		*created_at_ms = proj_key_i64_decode(v.mv_data);
	proj_env_read_end(m->base.env, txn);
	return rc;
}

/* One story row into *out; ORN_EDECODE for a row add_to_story did not write. */
static orn_rc story_decode(const MDB_val *k, size_t prefix_len, const MDB_val *v, proj_desk_event *out)
{
	mp_reader r;
	uint32_t count = 0;
	const uint8_t *key = k->mv_data;
	if (k->mv_size != prefix_len + 10)
		return ORN_EDECODE;
	out->seq = 0;
	for (size_t i = 0; i < 8; i++)
		out->seq = out->seq << 8 | key[prefix_len + i];
	mp_reader_init(&r, v->mv_data, v->mv_size);
	if (mp_read_array(&r, &count) != ORN_OK || count != STORY_FIELDS ||
	    mp_read_cstr(&r, out->aggregate, sizeof out->aggregate) != ORN_OK ||
	    mp_read_cstr(&r, out->aggregate_id, sizeof out->aggregate_id) != ORN_OK ||
	    mp_read_cstr(&r, out->type, sizeof out->type) != ORN_OK ||
	    mp_read_int(&r, &out->at_ms) != ORN_OK || mp_reader_remaining(&r) != 0)
		return ORN_EDECODE;
	return ORN_OK;
}

orn_rc proj_desk_timeline(proj_desk *m, const char *id, proj_desk_event *out, size_t cap, size_t *count,
                          bool *more)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	*count = 0;
	*more = false;
	if (id == NULL || !es_id_valid(id))
		return ORN_EINVAL;
	char prefix[ES_ID_MAX + 1];
	size_t prefix_len = strlen(id) + 1; /* "<order>\0" */
	memcpy(prefix, id, prefix_len);
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	int mrc = mdb_cursor_open(txn, m->timeline, &cur);
	if (mrc == 0) {
		k = (MDB_val){prefix_len, prefix};
		mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < prefix_len || memcmp(k.mv_data, id, prefix_len) != 0)
			break;
		if (*count == cap) {
			*more = true;
			break;
		}
		if (story_decode(&k, prefix_len, &v, &out[*count]) == ORN_OK)
			(*count)++;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND) {
		rc = proj_rc(mrc);
		*count = 0;
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	proj_env_read_end(m->base.env, txn);
	return rc;
}
