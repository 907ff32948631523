/* payments.c — the payments read model (see payments.h).
 *
 * Sub-database (schemas/read-models.md):
 *   payments.payments  order id -> record
 *
 * Record: a msgpack array [format 1, version, snapshot], where snapshot is
 * the payment aggregate's own snapshot (payment_kind: the event list that
 * rebuilds the state). Reading a record replays that list through
 * payment_kind's restore, so a record only ever yields a state the stream
 * could produce, and the state's encoding lives in one place
 * (actors/payment.c).
 *
 * An event at or older than the version is a redelivery and is skipped (a
 * payment commit carries one event, PAYMENT_MAX_EVENTS). An event evolve
 * finds unfit changes nothing but still moves the version, as the
 * aggregate's does. */
#include "payments.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proj_internal.h"

#define PAYMENTS_DB    "payments.payments"
#define SUBJECT_PREFIX "orion.evt." PAYMENT_AGGREGATE "."

#define RECORD_FORMAT 1
#define RECORD_FIELDS 3

_Static_assert(PAYMENT_MAX_EVENTS == 1, "an event at the record's version is a redelivery");

struct proj_payments {
	proj_model base; /* first: proj_model_create and _destroy take the model */
	MDB_dbi payments;
	payment_event event;  /* projector thread only */
	proj_payment scratch; /* projector thread only */
};

/* ---- records ---- */

static orn_rc record_encode(mp_writer *w, const proj_payment *p)
{
	mp_writer_reset(w);
	mp_write_array(w, RECORD_FIELDS);
	mp_write_uint(w, RECORD_FORMAT);
	mp_write_uint(w, p->version);
	orn_rc rc = payment_kind.snapshot(&p->state, w);
	return rc == ORN_OK ? mp_writer_status(w) : rc;
}

static void payment_reset(proj_payment *p)
{
	payment_state_init(&p->state);
	p->version = 0;
}

/* Restores the payment (not its id). ORN_EDECODE for anything record_encode
 * did not write. */
static orn_rc record_decode(const void *buf, size_t len, proj_payment *p)
{
	mp_reader r;
	uint32_t count = 0;
	uint64_t format = 0;
	const uint8_t *snapshot = NULL;
	size_t snapshot_len = 0;
	orn_rc rc = ORN_EDECODE;
	payment_reset(p);
	mp_reader_init(&r, buf, len);
	if (mp_read_array(&r, &count) == ORN_OK && count == RECORD_FIELDS &&
	    mp_read_uint(&r, &format) == ORN_OK && format == RECORD_FORMAT &&
	    mp_read_uint(&r, &p->version) == ORN_OK && p->version > 0 &&
	    mp_read_raw(&r, &snapshot, &snapshot_len) == ORN_OK && mp_reader_remaining(&r) == 0)
		rc = payment_kind.restore(&p->state, snapshot, snapshot_len);
	if (rc != ORN_OK)
		payment_reset(p);
	return rc;
}

static orn_rc read_record(MDB_txn *txn, proj_payments *m, const char *id, size_t id_len, proj_payment *p)
{
	MDB_val v;
	orn_rc rc = proj_get(txn, m->payments, id, id_len, &v);
	return rc == ORN_OK ? record_decode(v.mv_data, v.mv_size, p) : rc;
}

/* ---- applying payment events ---- */

static orn_rc payments_open(void *self, proj_txn *t)
{
	proj_payments *m = self;
	return proj_dbi_open(t, PAYMENTS_DB, 0, &m->payments);
}

static orn_rc payments_apply(void *self, proj_txn *t, uint64_t seq, const char *subject,
                             const env_envelope *e)
{
	proj_payments *m = self;
	proj_payment *p = &m->scratch;
	const char *id = subject + strlen(SUBJECT_PREFIX);

	if (strncmp(subject, SUBJECT_PREFIX, strlen(SUBJECT_PREFIX)) != 0 || !es_id_valid(id))
		return ORN_OK; /* not ours */
	orn_rc rc = payment_event_decode(e->type, e->payload, e->payload_len, &m->event);
	if (rc == ORN_EINVAL)
		return ORN_OK; /* a type of a later version: nothing to do */
	if (rc != ORN_OK) {
		proj_model_skip(&m->base, "payments skips an undecodable payment event", seq, subject,
		                e->type);
		return ORN_OK;
	}
	size_t id_len = strlen(id);
	rc = read_record(t->txn, m, id, id_len, p);
	if (rc == ORN_EDECODE)
		proj_log_skip("payments record unreadable; rebuilt from this event", seq, subject, e->type);
	else if (rc != ORN_OK && rc != ORN_ENOTFOUND)
		return rc;
	if (rc != ORN_OK)
		payment_reset(p);
	if (seq <= p->version)
		return ORN_OK; /* not newer than the payment's last event: a redelivery */
	payment_evolve(&p->state, &m->event);
	p->version = seq;
	if ((rc = record_encode(m->base.writer, p)) != ORN_OK)
		return rc;
	return proj_put(t, m->payments, id, id_len, mp_writer_data(m->base.writer),
	                mp_writer_size(m->base.writer), 0);
}

PROJ_MODEL_FUNCTIONS(proj_payments, PROJ_PAYMENTS_NAME, PROJ_PAYMENTS_FILTER, payments_open, payments_apply);

/* ---- queries ---- */

orn_rc proj_payments_get(proj_payments *m, const char *order_id, proj_payment *out)
{
	MDB_txn *txn = NULL;
	if (!es_id_valid(order_id))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(m->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	size_t id_len = strlen(order_id);
	rc = read_record(txn, m, order_id, id_len, out);
	proj_env_read_end(m->base.env, txn);
	if (rc == ORN_OK) {
		memcpy(out->order_id, order_id, id_len);
		out->order_id[id_len] = '\0';
	}
	return rc;
}
