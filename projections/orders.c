/* orders.c — the orders read model (see orders.h).
 *
 * Sub-databases (schemas/read-models.md):
 *   orders.orders       order id -> record
 *   orders.by_customer  customer id, 0x00, created_at (order-preserving int64), order id -> summary
 *   orders.by_deadline  deadline_ms (8 bytes, big endian), order id -> empty
 *
 * Record: a msgpack array [format, customer_id, created_at_ms, [seq of each
 * history entry], snapshot], where snapshot is the order aggregate's own
 * snapshot (order_kind: the list of events that rebuilds the state, one per
 * history entry). Reading a record replays that list through
 * order_event_decode and order_evolve, so a record only ever yields a state
 * the stream could produce, and the state's encoding lives in one place
 * (actors/order.c). The version is the seq of the last history entry: an
 * event order_evolve refuses changes nothing, not even the version. Customer
 * and creation time lead the record, so a page cursor (an order id) is
 * resolved to its index key without replaying the order.
 *
 * Summary: a msgpack array [status, total_cents, currency, updated_at_ms,
 * line count], rewritten on every event, so a page is read from the index
 * alone. Its key never changes: customer and creation time are set once, by
 * OrderPlaced.
 *
 * Listing walks the customer's index keys backwards (newest first; equal
 * times by id descending) from the cursor's key, or from the end of the
 * customer's range.
 *
 * Deadlines: by_deadline holds one key per order whose status has a deadline
 * (order_deadline: the confirmation deadline while pending or awaiting
 * confirmation, the payment deadline while awaiting payment), moved in the
 * same transaction as the record whenever an event changes it and removed
 * when the order leaves those states. It is what the timers role fires
 * (ADR 010). An environment written before the index existed gets it filled
 * from the records when the sub-database is first created. */
#include "orders.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proj_internal.h"
#include "user.h"

#define ORDERS_DB      "orders.orders"
#define BY_CUSTOMER_DB "orders.by_customer"
#define BY_DEADLINE_DB "orders.by_deadline"
#define SUBJECT_PREFIX "orion.evt." ORDER_AGGREGATE "."
#define USER_PREFIX    "orion.evt." USER_AGGREGATE "."

#define RECORD_FORMAT    1
#define RECORD_FIELDS    5
#define SUMMARY_FIELDS   5
#define INDEX_KEY_MAX    (ES_ID_MAX + 1 + 8 + ES_ID_MAX)
#define DEADLINE_BYTES   8
#define DEADLINE_KEY_MAX (DEADLINE_BYTES + ES_ID_MAX)

/* Working memory of apply (projector thread only): too large for a stack. */
typedef struct apply_scratch {
	order_event event;
	proj_order order;
} apply_scratch;

struct proj_orders {
	proj_model base; /* first: proj_model_create and _destroy take the model */
	MDB_dbi orders;
	MDB_dbi by_customer;
	MDB_dbi by_deadline;
	apply_scratch scratch;
};

/* What leads a record, read without replaying the order. */
typedef struct record_head {
	char customer_id[ORDER_ID_MAX];
	int64_t created_at_ms;
	uint64_t seqs[ORDER_HISTORY_MAX];
	uint32_t seq_count;
	const uint8_t *snapshot; /* points into the record */
	size_t snapshot_len;
} record_head;

/* ---- records, keys and summaries ---- */

static orn_rc record_encode(mp_writer *w, const proj_order *o)
{
	const order_state *s = &o->state;
	mp_writer_reset(w);
	mp_write_array(w, RECORD_FIELDS);
	mp_write_uint(w, RECORD_FORMAT);
	mp_write_cstr(w, s->customer_id);
	mp_write_int(w, s->history[0].at_ms);
	mp_write_array(w, (uint32_t)s->history_count);
	for (size_t i = 0; i < s->history_count; i++)
		mp_write_uint(w, o->history_seq[i]);
	orn_rc rc = order_kind.snapshot(s, w);
	return rc == ORN_OK ? mp_writer_status(w) : rc;
}

/* ORN_EDECODE for anything record_encode did not write. */
static orn_rc record_head_decode(const void *buf, size_t len, record_head *h)
{
	mp_reader r;
	uint32_t count = 0;
	uint64_t format = 0;
	mp_reader_init(&r, buf, len);
	if (mp_read_array(&r, &count) != ORN_OK || count != RECORD_FIELDS ||
	    mp_read_uint(&r, &format) != ORN_OK || format != RECORD_FORMAT ||
	    mp_read_cstr(&r, h->customer_id, sizeof h->customer_id) != ORN_OK ||
	    mp_read_int(&r, &h->created_at_ms) != ORN_OK || mp_read_array(&r, &h->seq_count) != ORN_OK ||
	    h->seq_count == 0 || h->seq_count > ORDER_HISTORY_MAX)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < h->seq_count; i++)
		if (mp_read_uint(&r, &h->seqs[i]) != ORN_OK || (i > 0 && h->seqs[i] < h->seqs[i - 1]))
			return ORN_EDECODE;
	if (mp_read_raw(&r, &h->snapshot, &h->snapshot_len) != ORN_OK || mp_reader_remaining(&r) != 0)
		return ORN_EDECODE;
	return ORN_OK;
}

/* An order never placed (the id is left alone). */
static void order_reset(proj_order *o)
{
	order_state_init(&o->state);
	memset(o->history_seq, 0, sizeof o->history_seq);
	o->version = 0;
}

/* Restores the whole order (not its id). ORN_EDECODE for a bad record. */
static orn_rc record_decode(const void *buf, size_t len, proj_order *o)
{
	record_head h;
	order_state *s = &o->state;
	order_reset(o);
	orn_rc rc = record_head_decode(buf, len, &h);
	if (rc == ORN_OK)
		rc = order_kind.restore(s, h.snapshot, h.snapshot_len);
	if (rc == ORN_OK && (s->history_count != h.seq_count || strcmp(s->customer_id, h.customer_id) != 0 ||
	                     s->history[0].at_ms != h.created_at_ms))
		rc = ORN_EDECODE;
	if (rc != ORN_OK) {
		order_reset(o);
		return rc;
	}
	memcpy(o->history_seq, h.seqs, h.seq_count * sizeof h.seqs[0]);
	o->version = h.seqs[h.seq_count - 1];
	return ORN_OK;
}

static orn_rc read_record(MDB_txn *txn, proj_orders *m, const char *id, size_t id_len, proj_order *o)
{
	MDB_val v;
	orn_rc rc = proj_get(txn, m->orders, id, id_len, &v);
	return rc == ORN_OK ? record_decode(v.mv_data, v.mv_size, o) : rc;
}

/* The by_customer key of an order; returns its length. */
static size_t index_key(uint8_t out[INDEX_KEY_MAX], const char *customer_id, int64_t created_at_ms,
                        const char *id, size_t id_len)
{
	size_t n = strlen(customer_id);
	memcpy(out, customer_id, n);
	out[n++] = 0;
	proj_key_i64(out + n, created_at_ms);
	n += 8;
	memcpy(out + n, id, id_len);
	return n + id_len;
}

static void summary_of(const proj_order *o, proj_order_summary *out)
{
	const order_state *s = &o->state;
	out->status = s->status;
	out->total_cents = 0;
	(void)order_total(s, &out->total_cents); /* the decoder's bounds make it fit */
	memcpy(out->currency, s->currency, sizeof out->currency);
	out->created_at_ms = s->history[0].at_ms;
	out->updated_at_ms = s->history[s->history_count - 1].at_ms;
	out->item_count = s->line_count;
}

static orn_rc summary_encode(mp_writer *w, const proj_order_summary *sum)
{
	mp_writer_reset(w);
	mp_write_array(w, SUMMARY_FIELDS);
	mp_write_uint(w, (uint64_t)sum->status);
	mp_write_int(w, sum->total_cents);
	mp_write_cstr(w, sum->currency);
	mp_write_int(w, sum->updated_at_ms);
	mp_write_uint(w, sum->item_count);
	return mp_writer_status(w);
}

/* Fills status, total, currency, updated_at and item_count. ORN_EDECODE for
 * anything summary_encode did not write. */
static orn_rc summary_decode(const void *buf, size_t len, proj_order_summary *out)
{
	mp_reader r;
	uint32_t count = 0;
	uint64_t status = 0, items = 0;
	mp_reader_init(&r, buf, len);
	if (mp_read_array(&r, &count) != ORN_OK || count != SUMMARY_FIELDS ||
	    mp_read_uint(&r, &status) != ORN_OK || status == ORDER_NONE ||
	    order_status_name((order_status)status) == NULL || mp_read_int(&r, &out->total_cents) != ORN_OK ||
	    mp_read_cstr(&r, out->currency, sizeof out->currency) != ORN_OK ||
	    mp_read_int(&r, &out->updated_at_ms) != ORN_OK || mp_read_uint(&r, &items) != ORN_OK ||
	    items > ORDER_LINES_MAX || mp_reader_remaining(&r) != 0)
		return ORN_EDECODE;
	out->status = (order_status)status;
	out->item_count = (size_t)items;
	return ORN_OK;
}

/* ---- applying order events ---- */

/* The by_deadline key of an order: deadline (big endian, so keys sort by
 * time) then id; returns its length. Deadlines are positive. */
static size_t deadline_key(uint8_t out[DEADLINE_KEY_MAX], int64_t deadline_ms, const char *id, size_t id_len)
{
	uint64_t v = (uint64_t)deadline_ms;
	for (int i = DEADLINE_BYTES - 1; i >= 0; i--, v >>= 8)
		out[i] = (uint8_t)v;
	memcpy(out + DEADLINE_BYTES, id, id_len);
	return DEADLINE_BYTES + id_len;
}

static int64_t deadline_key_time(const uint8_t *key)
{
	uint64_t v = 0;
	for (int i = 0; i < DEADLINE_BYTES; i++)
		v = v << 8 | key[i];
	return (int64_t)v;
}

/* Moves the order's deadline key from old_ms to new_ms (0: none). */
static orn_rc move_deadline(proj_txn *t, proj_orders *m, const char *id, size_t id_len, int64_t old_ms,
                            int64_t new_ms)
{
	uint8_t key[DEADLINE_KEY_MAX];
	orn_rc rc = ORN_OK;
	if (old_ms == new_ms)
		return ORN_OK;
	if (old_ms > 0) {
		rc = proj_del(t, m->by_deadline, key, deadline_key(key, old_ms, id, id_len), NULL, 0);
		if (rc == ORN_ENOTFOUND)
			rc = ORN_OK;
	}
	if (rc == ORN_OK && new_ms > 0)
		rc = proj_put(t, m->by_deadline, key, deadline_key(key, new_ms, id, id_len), "", 0, 0);
	return rc;
}

/* Fills a by_deadline created just now from the records already there (an
 * environment written before the index existed). */
static orn_rc backfill_deadlines(proj_txn *t, proj_orders *m)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	uint64_t filled = 0;
	orn_rc rc = ORN_OK;
	proj_order *o = &m->scratch.order;
	int mrc = mdb_cursor_open(t->txn, m->orders, &cur);
	if (mrc != 0)
		return proj_rc(mrc);
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == ORN_OK;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size > ES_ID_MAX || record_decode(v.mv_data, v.mv_size, o) != ORN_OK)
			continue; /* unreadable: a rebuild drops it */
		int64_t deadline = order_deadline(&o->state);
		rc = move_deadline(t, m, k.mv_data, k.mv_size, 0, deadline);
		filled += deadline > 0;
	}
	mdb_cursor_close(cur);
	if (rc == ORN_OK && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	if (rc == ORN_OK && filled > 0) {
		char text[24];
		snprintf(text, sizeof text, "%llu", (unsigned long long)filled);
		log_info("orders deadline index filled from the records", "orders", text);
	}
	return rc;
}

static orn_rc orders_open(void *self, proj_txn *t)
{
	static const proj_dbi_spec dbis[] = {
	        {ORDERS_DB, 0, offsetof(proj_orders, orders)},
	        {BY_CUSTOMER_DB, 0, offsetof(proj_orders, by_customer)},
	};
	proj_orders *m = self;
	bool fresh = false;
	orn_rc rc = proj_dbis_open(t, self, dbis, ORN_ARRAY_LEN(dbis));
	if (rc == ORN_OK &&
	    (rc = proj_dbi_open_fresh(t, BY_DEADLINE_DB, 0, &m->by_deadline, &fresh)) == ORN_OK && fresh)
		rc = backfill_deadlines(t, m); /* an index added after the model's first version */
	return rc;
}

/* Stores the order's record and its row in the customer's index. */
static orn_rc write_order(proj_txn *t, proj_orders *m, const char *id, size_t id_len, const proj_order *o)
{
	uint8_t key[INDEX_KEY_MAX];
	proj_order_summary sum;
	orn_rc rc = record_encode(m->base.writer, o);
	if (rc == ORN_OK)
		rc = proj_put(t, m->orders, id, id_len, mp_writer_data(m->base.writer),
		              mp_writer_size(m->base.writer), 0);
	summary_of(o, &sum);
	if (rc == ORN_OK)
		rc = summary_encode(m->base.writer, &sum);
	if (rc == ORN_OK) {
		size_t key_len = index_key(key, o->state.customer_id, sum.created_at_ms, id, id_len);
		rc = proj_put(t, m->by_customer, key, key_len, mp_writer_data(m->base.writer),
		              mp_writer_size(m->base.writer), 0);
	}
	return rc;
}

/* CustomerErased of user_id: the customer's address leaves every order's
 * record (the order keeps items, amounts and status; ADR 027). Only the
 * records change: summaries and index keys hold no address. */
static orn_rc erase_customer(proj_txn *t, proj_orders *m, const char *user_id)
{
	uint8_t start[INDEX_KEY_MAX];
	size_t prefix_len = strlen(user_id) + 1; /* "<customer>\0" */
	proj_order *o = &m->scratch.order;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	orn_rc rc = ORN_OK;

	memcpy(start, user_id, prefix_len);
	int mrc = mdb_cursor_open(t->txn, m->by_customer, &cur);
	if (mrc != 0)
		return proj_rc(mrc);
	k = (MDB_val){prefix_len, start};
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0 && rc == ORN_OK;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size <= prefix_len + 8 || memcmp(k.mv_data, user_id, prefix_len) != 0)
			break;          /* the next customer's keys */
		char id[ES_ID_MAX + 1]; /* a copy: the put below may move the page k points into */
		size_t id_len = k.mv_size - prefix_len - 8;
		if (id_len >= sizeof id)
			continue;
		memcpy(id, (const char *)k.mv_data + prefix_len + 8, id_len);
		rc = read_record(t->txn, m, id, id_len, o);
		if (rc == ORN_EDECODE || rc == ORN_ENOTFOUND) {
			rc = ORN_OK; /* nothing readable to blank; a rebuild rewrites it */
			continue;
		}
		if (rc != ORN_OK || o->state.customer_email[0] == '\0')
			continue;
		memset(o->state.customer_email, 0, sizeof o->state.customer_email);
		if ((rc = record_encode(m->base.writer, o)) == ORN_OK)
			rc = proj_put(t, m->orders, id, id_len, mp_writer_data(m->base.writer),
			              mp_writer_size(m->base.writer), 0);
	}
	if (rc == ORN_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	mdb_cursor_close(cur);
	return rc;
}

/* A CustomerErased that names its account blanks the account's orders. */
static orn_rc apply_user_event(proj_txn *t, proj_orders *m, const env_envelope *e)
{
	user_event ev;
	if (strcmp(e->type, USER_EV_ERASED) != 0 ||
	    user_event_decode(e->type, e->payload, e->payload_len, &ev) != ORN_OK ||
	    ev.fields.user_id[0] == '\0')
		return ORN_OK;
	return erase_customer(t, m, ev.fields.user_id);
}

static orn_rc orders_apply(void *self, proj_txn *t, uint64_t seq, const char *subject, const env_envelope *e)
{
	proj_orders *m = self;
	apply_scratch *s = &m->scratch;
	proj_order *o = &s->order;
	const char *id = subject + strlen(SUBJECT_PREFIX);

	if (strncmp(subject, USER_PREFIX, strlen(USER_PREFIX)) == 0)
		return apply_user_event(t, m, e);
	if (strncmp(subject, SUBJECT_PREFIX, strlen(SUBJECT_PREFIX)) != 0 || !es_id_valid(id))
		return ORN_OK; /* not ours */
	orn_rc rc = order_event_decode(e->type, e->payload, e->payload_len, &s->event);
	if (rc == ORN_EINVAL)
		return ORN_OK; /* a type of a later version: nothing to do */
	if (rc != ORN_OK) {
		proj_model_skip(&m->base, "orders skips an undecodable order event", seq, subject, e->type);
		return ORN_OK;
	}
	size_t id_len = strlen(id);
	rc = read_record(t->txn, m, id, id_len, o);
	if (rc == ORN_EDECODE) /* its index row cannot be found any more; a rebuild removes it */
		proj_log_skip("orders record unreadable; rebuilt from this event", seq, subject, e->type);
	else if (rc != ORN_OK && rc != ORN_ENOTFOUND)
		return rc;
	if (rc != ORN_OK)
		order_reset(o);
	int64_t old_deadline = order_deadline(&o->state);
	/* Older than the order's last event: a redelivery. An event at the same
	 * seq is folded again (a commit may carry several); evolve refuses any
	 * event already applied, since every one moves the status forward. */
	if (seq < o->version || !order_evolve(&o->state, &s->event))
		return ORN_OK;
	o->history_seq[o->state.history_count - 1] = seq;
	o->version = seq;
	rc = write_order(t, m, id, id_len, o);
	if (rc == ORN_OK)
		rc = move_deadline(t, m, id, id_len, old_deadline, order_deadline(&o->state));
	return rc;
}

PROJ_MODEL_FUNCTIONS(proj_orders, PROJ_ORDERS_NAME, PROJ_ORDERS_FILTER, orders_open, orders_apply);

/* ---- queries ---- */

orn_rc proj_orders_get(proj_orders *m, const char *id, proj_order *out)
{
	MDB_txn *txn = NULL;
	if (!es_id_valid(id))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	size_t id_len = strlen(id);
	rc = read_record(txn, m, id, id_len, out);
	proj_env_read_end(m->base.env, txn);
	if (rc == ORN_OK) {
		memcpy(out->id, id, id_len);
		out->id[id_len] = '\0';
	}
	return rc;
}

orn_rc proj_orders_version(proj_orders *m, const char *id, uint64_t *version)
{
	MDB_txn *txn = NULL;
	MDB_val v;
	record_head h;
	*version = 0;
	if (!es_id_valid(id))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	rc = proj_get(txn, m->orders, id, strlen(id), &v);
	if (rc == ORN_OK)
		rc = record_head_decode(v.mv_data, v.mv_size, &h);
	proj_env_read_end(m->base.env, txn);
	if (rc == ORN_OK)
		*version = h.seqs[h.seq_count - 1];
	return rc;
}

/* Fills a row from an index entry (key without the customer prefix). */
static orn_rc row_decode(const uint8_t *key, size_t key_len, const MDB_val *v, proj_order_summary *out)
{
	size_t id_len = key_len - 8;
	if (key_len <= 8 || id_len > ES_ID_MAX)
		return ORN_EDECODE;
	memcpy(out->id, key + 8, id_len);
	out->id[id_len] = '\0';
	if (!es_id_valid(out->id))
		return ORN_EDECODE;
	out->created_at_ms = proj_key_i64_decode(key);
	return summary_decode(v->mv_data, v->mv_size, out);
}

/* The key the walk starts below: the cursor's order (which must be the
 * customer's: ORN_EINVAL otherwise), or the end of the customer's range. */
static orn_rc start_key(MDB_txn *txn, proj_orders *m, const char *customer_id, const char *after,
                        uint8_t out[INDEX_KEY_MAX], size_t *out_len)
{
	MDB_val v;
	record_head h;
	size_t n = strlen(customer_id);
	if (after == NULL) {
		memcpy(out, customer_id, n);
		out[n] = 1; /* just past every "<customer>\0..." key */
		*out_len = n + 1;
		return ORN_OK;
	}
	orn_rc rc = proj_get(txn, m->orders, after, strlen(after), &v);
	if (rc == ORN_OK)
		rc = record_head_decode(v.mv_data, v.mv_size, &h);
	if (rc == ORN_ENOTFOUND || (rc == ORN_OK && strcmp(h.customer_id, customer_id) != 0))
		rc = ORN_EINVAL;
	if (rc == ORN_OK)
		*out_len = index_key(out, customer_id, h.created_at_ms, after, strlen(after));
	return rc;
}

/* Fills the page from the customer's index, newest first; *more if a row
 * follows it. */
static orn_rc list_in_txn(MDB_txn *txn, proj_orders *m, const char *customer_id, const char *after,
                          unsigned limit, proj_orders_page *out, bool *more)
{
	uint8_t start[INDEX_KEY_MAX];
	size_t start_len = 0, prefix_len = strlen(customer_id) + 1; /* "<customer>\0" */
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	orn_rc rc = start_key(txn, m, customer_id, after, start, &start_len);
	if (rc != ORN_OK)
		return rc;
	int mrc = mdb_cursor_open(txn, m->by_customer, &cur);
	if (mrc != 0)
		return proj_rc(mrc);
	mrc = proj_seek_below(cur, start, start_len, &k, &v);
	for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
		if (k.mv_size < prefix_len || memcmp(k.mv_data, customer_id, prefix_len) != 0)
			break; /* the previous customer's keys */
		if (out->count == limit) {
			*more = true;
			break;
		}
		rc = row_decode((const uint8_t *)k.mv_data + prefix_len, k.mv_size - prefix_len, &v,
		                &out->items[out->count]);
		if (rc != ORN_OK)
			break;
		out->count++;
	}
	if (rc == ORN_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	mdb_cursor_close(cur);
	return rc;
}

orn_rc proj_orders_list(proj_orders *m, const char *customer_id, unsigned limit, const char *cursor,
                        proj_orders_page *out)
{
	MDB_txn *txn = NULL;
	char after[ES_ID_MAX + 1];
	bool has_cursor = cursor != NULL && cursor[0] != '\0', more = false;
	out->count = 0;
	out->next_cursor[0] = '\0';
	if (!es_id_valid(customer_id) || limit < 1 || limit > PROJ_ORDERS_PAGE_MAX ||
	    (has_cursor && proj_cursor_decode(cursor, after, sizeof after) != ORN_OK))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	rc = list_in_txn(txn, m, customer_id, has_cursor ? after : NULL, limit, out, &more);
	proj_env_read_end(m->base.env, txn);
	if (rc == ORN_OK && more)
		rc = proj_cursor_encode(out->items[out->count - 1].id, out->next_cursor,
		                        sizeof out->next_cursor);
	if (rc != ORN_OK)
		out->count = 0;
	return rc;
}

orn_rc proj_orders_due(proj_orders *m, int64_t now_ms, proj_order_due *out, size_t cap, size_t *count)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	*count = 0;
	if (cap > 0 && out == NULL)
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	int mrc = mdb_cursor_open(txn, m->by_deadline, &cur);
	if (mrc == 0)
		mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; mrc == 0 && *count < cap; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		size_t id_len = k.mv_size - DEADLINE_BYTES;
		if (k.mv_size <= DEADLINE_BYTES || id_len > ES_ID_MAX)
			continue; /* not a key deadline_key writes */
		int64_t deadline = deadline_key_time(k.mv_data);
		if (deadline > now_ms)
			break;
		proj_order_due *d = &out[*count];
		memcpy(d->id, (const uint8_t *)k.mv_data + DEADLINE_BYTES, id_len);
		d->id[id_len] = '\0';
		d->deadline_ms = deadline;
		*count += es_id_valid(d->id);
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	if (cur != NULL)
		mdb_cursor_close(cur);
	proj_env_read_end(m->base.env, txn);
	if (rc != ORN_OK)
		*count = 0;
	return rc;
}

/* ---- what the desk model reads (proj_internal.h) and order counts ---- */

orn_rc proj_orders_head_in(proj_orders *m, MDB_txn *txn, const char *id, char *customer_id, size_t cap,
                           int64_t *created_at_ms)
{
	MDB_val v;
	record_head h;
	orn_rc rc = proj_get(txn, m->orders, id, strlen(id), &v);
	if (rc == ORN_OK)
		rc = record_head_decode(v.mv_data, v.mv_size, &h);
	if (rc == ORN_OK && strlen(h.customer_id) >= cap)
		rc = ORN_EDECODE;
	if (rc == ORN_OK) {
		memcpy(customer_id, h.customer_id, strlen(h.customer_id) + 1);
		*created_at_ms = h.created_at_ms;
	}
	return rc;
}

orn_rc proj_orders_row_in(proj_orders *m, MDB_txn *txn, const char *customer_id, int64_t created_at_ms,
                          const char *id, proj_order_summary *out)
{
	uint8_t key[INDEX_KEY_MAX];
	MDB_val v;
	size_t id_len = strlen(id), prefix_len = strlen(customer_id) + 1;
	if (id_len > ES_ID_MAX || prefix_len > ES_ID_MAX + 1)
		return ORN_EINVAL;
	size_t key_len = index_key(key, customer_id, created_at_ms, id, id_len);
	orn_rc rc = proj_get(txn, m->by_customer, key, key_len, &v);
	if (rc == ORN_OK)
		rc = row_decode(key + prefix_len, key_len - prefix_len, &v, out);
	return rc;
}

orn_rc proj_orders_count(proj_orders *m, const char *customer_id, size_t *count)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	char prefix[ES_ID_MAX + 1];
	size_t prefix_len = 0;
	*count = 0;
	if (customer_id == NULL || !es_id_valid(customer_id))
		return ORN_EINVAL;
	prefix_len = strlen(customer_id) + 1; /* "<customer>\0" */
	memcpy(prefix, customer_id, prefix_len);
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	int mrc = mdb_cursor_open(txn, m->by_customer, &cur);
	if (mrc == 0) {
		k = (MDB_val){prefix_len, prefix};
		mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < prefix_len || memcmp(k.mv_data, customer_id, prefix_len) != 0)
			break;
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
