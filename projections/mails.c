/* mails.c — the mail delivery log read model (see mails.h).
 *
 * Sub-databases (schemas/read-models.md):
 *   mail.mails     mail id -> record
 *   mail.by_order  DUPSORT: order id -> mail ids (alerts, which have no order, are not in it)
 *   mail.by_state  DUPSORT: state byte (mail_log_status) -> mail ids
 *   mail.by_kid    DUPSORT: data key id of a sealed recipient -> mail ids
 *   mail.erased    data key id -> empty: the customers erased (CustomerErased naming its kid)
 *
 * Erasure (ADR 027): a CustomerErased that names its kid blanks the
 * recipient of every mail sealed with it (found through by_kid) and records
 * the kid as erased, so a later event of such a mail, which carries the
 * recipient again, is blanked too. The tokens no longer open anyway (the key
 * is gone); the row keeps kind, order, status and times.
 *
 * Record: a msgpack array [format, status, order_id, product_id, kind,
 * recipient, attempts, last_error, delivered_at_ms, updated_at_ms, last seq].
 * Applying an event reads the record into a mail_log_state, folds the event
 * with mail_log_evolve (the aggregate's own fold) and writes it back, moving
 * the id between the by_state groups when the state changed.
 *
 * Listing walks one index group (the order's, else the state's) or the
 * primary database, in id order from the cursor, filtering on the state when
 * both filters are given (one order has a handful of emails). */
#include "mails.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "personal.h"
#include "proj_internal.h"
#include "user.h"

#define MAILS_DB       "mail.mails"
#define BY_ORDER_DB    "mail.by_order"
#define BY_STATE_DB    "mail.by_state"
#define BY_KID_DB      "mail.by_kid"
#define ERASED_DB      "mail.erased"
#define USER_PREFIX    "orion.evt." USER_AGGREGATE "."
#define SUBJECT_PREFIX "orion.evt." MAIL_LOG_AGGREGATE "."
#define RECORD_FORMAT  1
#define RECORD_FIELDS  11

struct proj_mail {
	proj_model base; /* first: proj_model_create and _destroy take the model */
	MDB_dbi mails;
	MDB_dbi by_order;
	MDB_dbi by_state;
	MDB_dbi by_kid;
	MDB_dbi erased;
};

/* ---- records ---- */

static orn_rc record_encode(mp_writer *w, const mail_log_state *s, uint64_t seq)
{
	mp_writer_reset(w);
	mp_write_array(w, RECORD_FIELDS);
	mp_write_uint(w, RECORD_FORMAT);
	mp_write_uint(w, (uint64_t)s->status);
	mp_write_cstr(w, s->subject.order_id);
	mp_write_cstr(w, s->subject.product_id);
	mp_write_cstr(w, s->subject.kind);
	mp_write_cstr(w, s->subject.recipient);
	mp_write_uint(w, s->attempts);
	mp_write_cstr(w, s->last_error);
	mp_write_int(w, s->delivered_at_ms);
	mp_write_int(w, s->updated_at_ms);
	mp_write_uint(w, seq);
	return mp_writer_status(w);
}

/* ORN_EDECODE for anything record_encode did not write. */
static orn_rc record_decode(const void *buf, size_t len, mail_log_state *s, uint64_t *seq)
{
	mp_reader r;
	uint32_t count = 0;
	uint64_t format = 0, status = 0, attempts = 0;
	mail_log_state_init(s);
	mp_reader_init(&r, buf, len);
	if (mp_read_array(&r, &count) != ORN_OK || count != RECORD_FIELDS ||
	    mp_read_uint(&r, &format) != ORN_OK || format != RECORD_FORMAT ||
	    mp_read_uint(&r, &status) != ORN_OK || mail_log_status_name((mail_log_status)status) == NULL ||
	    mp_read_cstr(&r, s->subject.order_id, sizeof s->subject.order_id) != ORN_OK ||
	    mp_read_cstr(&r, s->subject.product_id, sizeof s->subject.product_id) != ORN_OK ||
	    mp_read_cstr(&r, s->subject.kind, sizeof s->subject.kind) != ORN_OK ||
	    mp_read_cstr(&r, s->subject.recipient, sizeof s->subject.recipient) != ORN_OK ||
	    mp_read_uint(&r, &attempts) != ORN_OK || attempts > UINT32_MAX ||
	    mp_read_cstr(&r, s->last_error, sizeof s->last_error) != ORN_OK ||
	    mp_read_int(&r, &s->delivered_at_ms) != ORN_OK || mp_read_int(&r, &s->updated_at_ms) != ORN_OK ||
	    mp_read_uint(&r, seq) != ORN_OK || mp_reader_remaining(&r) != 0) {
		mail_log_state_init(s);
		return ORN_EDECODE;
	}
	s->exists = true;
	s->status = (mail_log_status)status;
	s->attempts = (uint32_t)attempts;
	return ORN_OK;
}

static orn_rc read_record(MDB_txn *txn, proj_mail *m, const char *id, size_t id_len, mail_log_state *s,
                          uint64_t *seq)
{
	MDB_val v;
	orn_rc rc = proj_get(txn, m->mails, id, id_len, &v);
	return rc == ORN_OK ? record_decode(v.mv_data, v.mv_size, s, seq) : rc;
}

/* ---- applying ---- */

/* Puts a value into a DUPSORT group; an existing pair is no error. */
static orn_rc index_put(proj_txn *t, MDB_dbi dbi, const void *key, size_t key_len, const char *id,
                        size_t id_len)
{
	orn_rc rc = proj_put(t, dbi, key, key_len, id, id_len, MDB_NODUPDATA);
	return rc == ORN_EEXISTS ? ORN_OK : rc;
}

/* Indexes mail id under the kid of its sealed recipient (a clear or blank one has none). */
static orn_rc index_kid(proj_txn *t, proj_mail *m, const mail_log_state *s, const char *id, size_t id_len)
{
	char kid[PD_KID_MAX];
	if (pd_token_kid(s->subject.recipient, kid) != ORN_OK)
		return ORN_OK;
	return index_put(t, m->by_kid, kid, strlen(kid), id, id_len);
}

/* Fills a by_kid created just now from the records already there (an
 * environment written before the index existed). */
static orn_rc backfill_kids(proj_txn *t, proj_mail *m)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	mail_log_state s;
	uint64_t seq;
	orn_rc rc = ORN_OK;
	int mrc = mdb_cursor_open(t->txn, m->mails, &cur);
	if (mrc != 0)
		return proj_rc(mrc);
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == ORN_OK;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		if (record_decode(v.mv_data, v.mv_size, &s, &seq) == ORN_OK)
			rc = index_kid(t, m, &s, k.mv_data, k.mv_size);
	mdb_cursor_close(cur);
	if (rc == ORN_OK && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	return rc;
}

static orn_rc mail_open(void *self, proj_txn *t)
{
	static const proj_dbi_spec dbis[] = {
	        {MAILS_DB, 0, offsetof(proj_mail, mails)},
	        {BY_ORDER_DB, MDB_DUPSORT, offsetof(proj_mail, by_order)},
	        {BY_STATE_DB, MDB_DUPSORT, offsetof(proj_mail, by_state)},
	        {ERASED_DB, 0, offsetof(proj_mail, erased)},
	};
	proj_mail *m = self;
	bool fresh = false;
	orn_rc rc = proj_dbis_open(t, self, dbis, ORN_ARRAY_LEN(dbis));
	if (rc == ORN_OK &&
	    (rc = proj_dbi_open_fresh(t, BY_KID_DB, MDB_DUPSORT, &m->by_kid, &fresh)) == ORN_OK && fresh)
		rc = backfill_kids(t, m); /* an index added after the model's first version */
	return rc;
}

/* True if the recipient of s is sealed with the key of an erased customer. */
static bool recipient_erased(proj_txn *t, proj_mail *m, const mail_log_state *s)
{
	char kid[PD_KID_MAX];
	MDB_val v;
	return pd_token_kid(s->subject.recipient, kid) == ORN_OK &&
	       proj_get(t->txn, m->erased, kid, strlen(kid), &v) == ORN_OK;
}

/* CustomerErased naming kid: the kid is erased, and every mail sealed with it
 * loses its recipient. */
static orn_rc erase_recipients(proj_txn *t, proj_mail *m, const char *kid)
{
	size_t kid_len = strlen(kid);
	MDB_cursor *cur = NULL;
	MDB_val k = {kid_len, (void *)kid}, v;
	mail_log_state s;
	uint64_t seq = 0;
	orn_rc rc = proj_put(t, m->erased, kid, kid_len, "", 0, 0);
	if (rc != ORN_OK)
		return rc;
	int mrc = mdb_cursor_open(t->txn, m->by_kid, &cur);
	if (mrc != 0)
		return proj_rc(mrc);
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); mrc == 0 && rc == ORN_OK;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
		char id[ES_ID_MAX + 1]; /* a copy: the put below may move the page v points into */
		size_t id_len = v.mv_size < sizeof id ? v.mv_size : sizeof id - 1;
		memcpy(id, v.mv_data, id_len);
		rc = read_record(t->txn, m, id, id_len, &s, &seq);
		if (rc == ORN_ENOTFOUND || rc == ORN_EDECODE) {
			rc = ORN_OK; /* nothing readable to blank; a rebuild rewrites it */
			continue;
		}
		s.subject.recipient[0] = '\0';
		if (rc == ORN_OK && (rc = record_encode(m->base.writer, &s, seq)) == ORN_OK)
			rc = proj_put(t, m->mails, id, id_len, mp_writer_data(m->base.writer),
			              mp_writer_size(m->base.writer), 0);
	}
	mdb_cursor_close(cur);
	if (rc == ORN_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	if (rc == ORN_OK) /* nothing is sealed with it any more */
		rc = proj_del(t, m->by_kid, kid, kid_len, NULL, 0);
	return rc == ORN_ENOTFOUND ? ORN_OK : rc;
}

/* A CustomerErased that names its kid blanks the customer's recipients. */
static orn_rc apply_user_event(proj_txn *t, proj_mail *m, const env_envelope *e)
{
	user_event ev;
	if (strcmp(e->type, USER_EV_ERASED) != 0 ||
	    user_event_decode(e->type, e->payload, e->payload_len, &ev) != ORN_OK || ev.fields.kid[0] == '\0')
		return ORN_OK;
	return erase_recipients(t, m, ev.fields.kid);
}

static orn_rc mail_apply(void *self, proj_txn *t, uint64_t seq, const char *subject, const env_envelope *e)
{
	proj_mail *m = self;
	mail_log_event ev;
	mail_log_state s;
	uint64_t last = 0;
	const char *id = subject + strlen(SUBJECT_PREFIX);
	orn_rc rc;

	if (strncmp(subject, USER_PREFIX, strlen(USER_PREFIX)) == 0)
		return apply_user_event(t, m, e);
	if (strncmp(subject, SUBJECT_PREFIX, strlen(SUBJECT_PREFIX)) != 0 || !es_id_valid(id))
		return ORN_OK;
	rc = mail_log_event_decode(e->type, e->payload, e->payload_len, &ev);
	if (rc == ORN_EINVAL)
		return ORN_OK; /* a type of a later version: nothing to do */
	if (rc != ORN_OK) {
		proj_model_skip(&m->base, "mail log skips an undecodable mail event", seq, subject, e->type);
		return ORN_OK;
	}
	size_t id_len = strlen(id);
	mail_log_state_init(&s);
	rc = read_record(t->txn, m, id, id_len, &s, &last);
	if (rc == ORN_EDECODE) {
		proj_log_skip("mail log record unreadable; rebuilt from this event", seq, subject, e->type);
		mail_log_state_init(&s);
	} else if (rc != ORN_OK && rc != ORN_ENOTFOUND) {
		return rc;
	}
	bool existed = rc == ORN_OK;
	uint8_t old_state = (uint8_t)s.status;
	mail_log_evolve(&s, &ev);
	uint8_t new_state = (uint8_t)s.status;
	if (existed && old_state != new_state) {
		rc = proj_del(t, m->by_state, &old_state, 1, id, id_len);
		if (rc != ORN_OK && rc != ORN_ENOTFOUND)
			return rc;
	}
	if ((rc = index_put(t, m->by_state, &new_state, 1, id, id_len)) != ORN_OK)
		return rc;
	if (s.subject.order_id[0] != '\0' &&
	    (rc = index_put(t, m->by_order, s.subject.order_id, strlen(s.subject.order_id), id, id_len)) !=
	            ORN_OK)
		return rc;
	if (recipient_erased(t, m, &s))
		s.subject.recipient[0] = '\0'; /* an event after the erasure carries it again */
	else if ((rc = index_kid(t, m, &s, id, id_len)) != ORN_OK)
		return rc;
	if ((rc = record_encode(m->base.writer, &s, seq)) != ORN_OK)
		return rc;
	return proj_put(t, m->mails, id, id_len, mp_writer_data(m->base.writer),
	                mp_writer_size(m->base.writer), 0);
}

PROJ_MODEL_FUNCTIONS(proj_mail, PROJ_MAIL_NAME, PROJ_MAIL_FILTER, mail_open, mail_apply);

static void fill_entry(proj_mail_entry *out, const void *id, size_t id_len, const mail_log_state *s,
                       uint64_t seq)
{
	memcpy(out->id, id, id_len);
	out->id[id_len] = '\0';
	out->log = *s;
	out->version = seq;
}

orn_rc proj_mail_get(proj_mail *m, const char *id, proj_mail_entry *out)
{
	MDB_txn *txn = NULL;
	mail_log_state s;
	uint64_t seq = 0;
	if (!es_id_valid(id) || strlen(id) >= MAIL_LOG_ID_MAX)
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	size_t id_len = strlen(id);
	if ((rc = read_record(txn, m, id, id_len, &s, &seq)) == ORN_OK)
		fill_entry(out, id, id_len, &s, seq);
	proj_env_read_end(m->base.env, txn);
	return rc;
}

/* ---- listing ---- */

typedef struct list_ctx {
	proj_mail *m;
	MDB_txn *txn;
	const proj_mail_query *q;
	char after[ES_ID_MAX + 1];
	size_t after_len;
	proj_mail_page *out;
	bool more;
} list_ctx;

/* Adds the email id to the page if it passes the state filter; *stop once
 * the page is full and one more row exists. */
static orn_rc consider(list_ctx *c, const void *id, size_t id_len, bool *stop)
{
	mail_log_state s;
	uint64_t seq = 0;
	*stop = false;
	if (id_len == 0 || id_len >= MAIL_LOG_ID_MAX)
		return ORN_EDECODE;
	orn_rc rc = read_record(c->txn, c->m, id, id_len, &s, &seq);
	if (rc == ORN_ENOTFOUND) /* the index names an email that is not there */
		rc = ORN_EDECODE;
	if (rc != ORN_OK)
		return rc;
	if (c->q->has_status && s.status != c->q->status)
		return ORN_OK;
	if (c->out->count == c->q->limit) {
		c->more = true;
		*stop = true;
		return ORN_OK;
	}
	fill_entry(&c->out->items[c->out->count++], id, id_len, &s, seq);
	return ORN_OK;
}

/* Walks the ids of one DUPSORT group (key) after the cursor, in id order. */
static orn_rc walk_group(list_ctx *c, MDB_dbi dbi, const void *key, size_t key_len)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int mrc = mdb_cursor_open(c->txn, dbi, &cur);
	orn_rc rc = ORN_OK;
	bool stop = false;
	if (mrc != 0)
		return proj_rc(mrc);
	mrc = proj_seek_dup(cur, key, key_len, c->after, c->after_len, true, &v);
	for (; mrc == 0 && rc == ORN_OK && !stop; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP))
		rc = consider(c, v.mv_data, v.mv_size, &stop);
	if (rc == ORN_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	mdb_cursor_close(cur);
	return rc;
}

/* Walks the primary database after the cursor, in id order. */
static orn_rc walk_all(list_ctx *c)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int mrc = mdb_cursor_open(c->txn, c->m->mails, &cur);
	orn_rc rc = ORN_OK;
	bool stop = false;
	if (mrc != 0)
		return proj_rc(mrc);
	mrc = proj_seek_after(cur, c->after, c->after_len, &k, &v);
	for (; mrc == 0 && rc == ORN_OK && !stop; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		rc = consider(c, k.mv_data, k.mv_size, &stop);
	if (rc == ORN_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = proj_rc(mrc);
	mdb_cursor_close(cur);
	return rc;
}

orn_rc proj_mail_list(proj_mail *m, const proj_mail_query *q, proj_mail_page *out)
{
	list_ctx c = {.m = m, .q = q, .out = out};
	bool by_order = q->order_id != NULL && q->order_id[0] != '\0';
	orn_rc rc;
	out->count = 0;
	out->next_cursor[0] = '\0';
	if (q->limit < 1 || q->limit > PROJ_MAIL_PAGE_MAX || (by_order && !es_id_valid(q->order_id)) ||
	    (q->has_status && mail_log_status_name(q->status) == NULL))
		return ORN_EINVAL;
	if (q->cursor != NULL && q->cursor[0] != '\0') {
		if (proj_cursor_decode(q->cursor, c.after, sizeof c.after) != ORN_OK)
			return ORN_EINVAL;
		c.after_len = strlen(c.after);
	}
	if ((rc = proj_env_read_begin(m->base.env, &c.txn)) != ORN_OK)
		return rc;
	uint8_t state = (uint8_t)q->status;
	if (by_order)
		rc = walk_group(&c, m->by_order, q->order_id, strlen(q->order_id));
	else if (q->has_status)
		rc = walk_group(&c, m->by_state, &state, 1);
	else
		rc = walk_all(&c);
	proj_env_read_end(m->base.env, c.txn);
	return proj_page_end(rc, c.more, &out->count, out->count > 0 ? out->items[out->count - 1].id : NULL,
	                     out->next_cursor, sizeof out->next_cursor);
}
