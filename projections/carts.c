/* carts.c — the carts read model (see carts.h).
 *
 * Sub-database (schemas/read-models.md):
 *   carts.carts  customer id -> record
 *
 * Record: a msgpack array [format, version, snapshot, checked_out_at] (format 1
 * had no checked_out_at: read as 0), where snapshot is the
 * cart aggregate's own snapshot (cart_kind: the shortest event list that
 * rebuilds the state). Reading a record replays that list through
 * cart_event_decode and cart_evolve, so a record only ever yields a state the
 * stream could produce, and the state's encoding lives in one place
 * (actors/cart.c).
 *
 * The version moves to every cart event applied, as the aggregate's does
 * (an event evolve finds unfit still is the cart's last commit). An event
 * at or older than the version is a redelivery and is skipped: a cart commit
 * carries one event (CART_MAX_EVENTS), and CartCheckedOut subtracts what it
 * removed, so folding it twice would take out the same quantities again. */
#include "carts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proj_internal.h"

#define CARTS_DB       "carts.carts"
#define SUBJECT_PREFIX "orion.evt." CART_AGGREGATE "."

#define RECORD_FORMAT 2
#define RECORD_FIELDS 4

_Static_assert(CART_MAX_EVENTS == 1, "an event at the record's version is a redelivery");

/* Working memory of apply (projector thread only). */
typedef struct apply_scratch {
	cart_event event;
	proj_cart cart;
} apply_scratch;

struct proj_carts {
	proj_model base; /* first: proj_model_create and _destroy take the model */
	MDB_dbi carts;
	apply_scratch scratch;
};

/* ---- records ---- */

static orn_rc record_encode(mp_writer *w, const proj_cart *c)
{
	mp_writer_reset(w);
	mp_write_array(w, RECORD_FIELDS);
	mp_write_uint(w, RECORD_FORMAT);
	mp_write_uint(w, c->version);
	orn_rc rc = cart_kind.snapshot(&c->state, w);
	mp_write_uint(w, c->checked_out_at);
	return rc == ORN_OK ? mp_writer_status(w) : rc;
}

/* A customer without a cart (the id is left alone). */
static void cart_reset(proj_cart *c)
{
	cart_state_init(&c->state);
	c->version = 0;
	c->checked_out_at = 0;
}

/* The fields of a record of format (1 or RECORD_FORMAT), 0 for another. */
static uint32_t format_fields_of(uint64_t format)
{
	return format == 1 ? 3 : format == RECORD_FORMAT ? RECORD_FIELDS : 0;
}

/* Restores the cart (not its id). ORN_EDECODE for anything record_encode did
 * not write. */
static orn_rc record_decode(const void *buf, size_t len, proj_cart *c)
{
	mp_reader r;
	uint32_t count = 0;
	uint64_t format = 0;
	const uint8_t *snapshot = NULL;
	size_t snapshot_len = 0;
	orn_rc rc = ORN_EDECODE;
	cart_reset(c);
	mp_reader_init(&r, buf, len);
	if (mp_read_array(&r, &count) == ORN_OK && mp_read_uint(&r, &format) == ORN_OK && count != 0 &&
	    format_fields_of(format) == count && mp_read_uint(&r, &c->version) == ORN_OK && c->version > 0 &&
	    mp_read_raw(&r, &snapshot, &snapshot_len) == ORN_OK &&
	    (format == 1 || mp_read_uint(&r, &c->checked_out_at) == ORN_OK) && mp_reader_remaining(&r) == 0)
		rc = cart_kind.restore(&c->state, snapshot, snapshot_len);
	if (rc != ORN_OK)
		cart_reset(c);
	return rc;
}

static orn_rc read_record(MDB_txn *txn, proj_carts *m, const char *id, size_t id_len, proj_cart *c)
{
	MDB_val v;
	orn_rc rc = proj_get(txn, m->carts, id, id_len, &v);
	return rc == ORN_OK ? record_decode(v.mv_data, v.mv_size, c) : rc;
}

/* ---- applying cart events ---- */

static orn_rc carts_open(void *self, proj_txn *t)
{
	proj_carts *m = self;
	return proj_dbi_open(t, CARTS_DB, 0, &m->carts);
}

static orn_rc carts_apply(void *self, proj_txn *t, uint64_t seq, const char *subject, const env_envelope *e)
{
	proj_carts *m = self;
	apply_scratch *s = &m->scratch;
	proj_cart *c = &s->cart;
	const char *id = subject + strlen(SUBJECT_PREFIX);

	if (strncmp(subject, SUBJECT_PREFIX, strlen(SUBJECT_PREFIX)) != 0 || !es_id_valid(id))
		return ORN_OK; /* not ours */
	orn_rc rc = cart_event_decode(e->type, e->payload, e->payload_len, &s->event);
	if (rc == ORN_EINVAL)
		return ORN_OK; /* a type of a later version: nothing to do */
	if (rc != ORN_OK) {
		proj_model_skip(&m->base, "carts skips an undecodable cart event", seq, subject, e->type);
		return ORN_OK;
	}
	size_t id_len = strlen(id);
	rc = read_record(t->txn, m, id, id_len, c);
	if (rc == ORN_EDECODE)
		proj_log_skip("carts record unreadable; rebuilt from this event", seq, subject, e->type);
	else if (rc != ORN_OK && rc != ORN_ENOTFOUND)
		return rc;
	if (rc != ORN_OK)
		cart_reset(c);
	if (seq <= c->version)
		return ORN_OK; /* not newer than the cart's last event: a redelivery */
	cart_evolve(&c->state, &s->event);
	c->version = seq;
	if (s->event.kind == CART_CHECKED_OUT_EVENT)
		c->checked_out_at = seq;
	if ((rc = record_encode(m->base.writer, c)) != ORN_OK)
		return rc;
	return proj_put(t, m->carts, id, id_len, mp_writer_data(m->base.writer),
	                mp_writer_size(m->base.writer), 0);
}

PROJ_MODEL_FUNCTIONS(proj_carts, PROJ_CARTS_NAME, PROJ_CARTS_FILTER, carts_open, carts_apply);
/* ---- queries ---- */

proj_env *proj_carts_env(const proj_carts *m)
{
	return m->base.env;
}

orn_rc proj_carts_read(MDB_txn *txn, proj_carts *m, const char *customer_id, proj_cart *out)
{
	return read_record(txn, m, customer_id, strlen(customer_id), out);
}

orn_rc proj_carts_get(proj_carts *m, const char *customer_id, proj_cart *out)
{
	MDB_txn *txn = NULL;
	if (!es_id_valid(customer_id))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	size_t id_len = strlen(customer_id);
	rc = read_record(txn, m, customer_id, id_len, out);
	proj_env_read_end(m->base.env, txn);
	if (rc == ORN_OK) {
		memcpy(out->customer_id, customer_id, id_len);
		out->customer_id[id_len] = '\0';
	}
	return rc;
}
