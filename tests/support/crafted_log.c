/* crafted_log.c — see crafted_log.h. */
#include "evstore-internal.h"
#include "crafted_log.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hashmap.h"
#include "log.h"

struct tcl_log {
	es_store *store;
	hmap *positions; /* subject -> es_position */
	unsigned commits;
};

/* Defines tcl_<name>: an event encoded with prefix_event_encode, its type
 * named by prefix_event_type. */
#define TCL_EVENT_FN(name, prefix)                                                                           \
	tcl_event tcl_##name(const prefix##_event *e)                                                        \
	{                                                                                                    \
		tcl_event out = {prefix##_event_type(e->kind), mp_writer_create()};                          \
		cr_assert_not_null(out.payload);                                                             \
		cr_assert_not_null(out.type);                                                                \
		cr_assert_eq(prefix##_event_encode(out.payload, e), ORN_OK, "cannot encode a %s", out.type); \
		return out;                                                                                  \
	}

TCL_EVENT_FN(stock, stock)
TCL_EVENT_FN(product, product)
TCL_EVENT_FN(sku, sku)
TCL_EVENT_FN(user, user)
TCL_EVENT_FN(cart, cart)
TCL_EVENT_FN(order, order)
TCL_EVENT_FN(payment, payment)
TCL_EVENT_FN(mail, mail_log)

#define HASH "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

tcl_event tcl_stock_event(stock_event_kind kind, const char *reservation_id, int64_t quantity)
{
	stock_event e;
	memset(&e, 0, sizeof e);
	e.kind = kind;
	snprintf(e.reservation_id, sizeof e.reservation_id, "%s", reservation_id ? reservation_id : "");
	e.quantity = quantity;
	e.delta = quantity;
	snprintf(e.reason, sizeof e.reason, "test");
	return tcl_stock(&e);
}

tcl_event tcl_order_event(order_event_kind kind, const char *product, int64_t quantity)
{
	order_event *e = calloc(1, sizeof *e); /* ~20 KB */
	cr_assert_not_null(e);
	order_data *d = &e->data;
	e->kind = kind;
	d->time_ms = orn_now_ms();
	d->deadline_ms = d->time_ms + 15 * 60 * 1000;
	strcpy(d->customer_id, "alice");
	strcpy(d->customer_email, "alice@example.com");
	strcpy(d->currency, "EUR");
	strcpy(d->token_hash, HASH);
	strcpy(d->request_hash, HASH);
	snprintf(d->lines[0].product_id, sizeof d->lines[0].product_id, "%s", product);
	strcpy(d->lines[0].name, "Teapot");
	d->lines[0].unit_price_cents = 2750;
	d->lines[0].quantity = quantity;
	d->line_count = 1;
	strcpy(d->charge_id, "ch_1");
	strcpy(d->brand, "visa");
	strcpy(d->last4, "4242");
	strcpy(d->reason, kind == ORDER_CANCELLED_EVENT ? ORDER_REASON_CUSTOMER : "card_declined");
	tcl_event out = tcl_order(e);
	free(e);
	return out;
}

tcl_event tcl_payment_event(payment_event_kind kind, const char *charge_id)
{
	payment_event e;
	memset(&e, 0, sizeof e);
	e.kind = kind;
	e.data.time_ms = orn_now_ms();
	e.data.amount_cents = 2750;
	strcpy(e.data.currency, "EUR");
	strcpy(e.data.brand, "visa");
	strcpy(e.data.last4, "4242");
	strcpy(e.data.provider_key, "key-1");
	snprintf(e.data.charge_id, sizeof e.data.charge_id, "%s", charge_id ? charge_id : "ch_1");
	snprintf(e.data.refund_id, sizeof e.data.refund_id, "re-%.100s", e.data.charge_id);
	strcpy(e.data.code, "card_declined");
	strcpy(e.data.reason, "order_cancelled");
	return tcl_payment(&e);
}

tcl_event tcl_sku_event(sku_event_kind kind, const char *product_id)
{
	sku_event e;
	memset(&e, 0, sizeof e);
	e.kind = kind;
	snprintf(e.product_id, sizeof e.product_id, "%s", product_id);
	return tcl_sku(&e);
}

tcl_event tcl_user_event(user_event_kind kind, const char *user_id, user_role role)
{
	user_event e;
	memset(&e, 0, sizeof e);
	e.kind = kind;
	snprintf(e.fields.user_id, sizeof e.fields.user_id, "%s", user_id);
	strcpy(e.fields.email, "alice@example.com");
	strcpy(e.fields.name, "Alice");
	strcpy(e.fields.password_hash,
	       "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA");
	e.fields.role = role;
	return tcl_user(&e);
}

tcl_event tcl_product_event(product_event_kind kind, const char *name, int64_t price_cents)
{
	product_event e;
	memset(&e, 0, sizeof e);
	e.kind = kind;
	e.present = kind == PRODUCT_CREATED   ? PRODUCT_FIELDS_ALL
	            : kind == PRODUCT_UPDATED ? PRODUCT_FIELD_NAME | PRODUCT_FIELD_PRICE
	                                      : 0;
	strcpy(e.fields.sku, "TEA-1");
	snprintf(e.fields.name, sizeof e.fields.name, "%s", name);
	e.fields.price_cents = price_cents;
	strcpy(e.fields.currency, "EUR");
	strcpy(e.fields.category, "kitchen");
	return tcl_product(&e);
}

tcl_event tcl_cart_event(cart_event_kind kind, const char *product, int64_t quantity, int64_t added)
{
	cart_event *e = calloc(1, sizeof *e);
	cr_assert_not_null(e);
	e->kind = kind;
	snprintf(e->line.product_id, sizeof e->line.product_id, "%s", product);
	strcpy(e->line.name, "Teapot");
	e->line.unit_price_cents = 2750;
	e->line.quantity = quantity;
	e->added = added;
	strcpy(e->currency, "EUR");
	strcpy(e->order_id, "o-cart");
	snprintf(e->checkout[0].product_id, sizeof e->checkout[0].product_id, "%s", product);
	e->checkout[0].quantity = quantity;
	e->checkout_count = kind == CART_CHECKED_OUT_EVENT ? 1 : 0;
	tcl_event out = tcl_cart(e);
	free(e);
	return out;
}

tcl_event tcl_mail_event(mail_log_event_kind kind, const char *order_id, uint32_t attempt)
{
	mail_log_event e;
	memset(&e, 0, sizeof e);
	e.kind = kind;
	snprintf(e.subject.order_id, sizeof e.subject.order_id, "%s", order_id);
	strcpy(e.subject.kind, "confirmed");
	strcpy(e.subject.recipient, "alice@example.com");
	e.attempt = attempt;
	if (kind != MAIL_LOG_DELIVERED)
		strcpy(e.error, "451 try again later");
	e.at_ms = orn_now_ms();
	return tcl_mail(&e);
}

tcl_log *tcl_create(es_store *store)
{
	tcl_log *log = calloc(1, sizeof *log);
	cr_assert_not_null(log);
	log->store = store;
	log->positions = hmap_create();
	cr_assert_not_null(log->positions);
	return log;
}

void tcl_destroy(tcl_log *log)
{
	size_t cursor = 0;
	const char *key;
	void *value;
	if (log == NULL)
		return;
	while (hmap_next(log->positions, &cursor, &key, &value))
		free(value);
	hmap_destroy(log->positions);
	free(log);
}

static es_position *position_of(tcl_log *log, const char *aggregate, const char *id)
{
	char subject[ES_SUBJECT_MAX];
	cr_assert_eq(es_subject(subject, sizeof subject, "orion.evt", aggregate, id), ORN_OK);
	es_position *p = hmap_get(log->positions, subject);
	if (p == NULL) {
		p = calloc(1, sizeof *p);
		cr_assert_not_null(p);
		cr_assert_eq(hmap_put(log->positions, subject, p), ORN_OK);
	}
	return p;
}

es_position tcl_position(tcl_log *log, const char *aggregate, const char *id)
{
	return *position_of(log, aggregate, id);
}

/* The commit of the events (their payloads freed), as the runtime writes one. */
static mp_writer *encode_commit(tcl_log *log, const tcl_event *events, size_t count, char *causation,
                                size_t cap)
{
	mp_writer *commit = mp_writer_create();
	cr_assert_not_null(commit);
	cr_assert(count >= 1 && count <= ENV_MAX_EVENTS);
	snprintf(causation, cap, "tcl-%lld-%u", (long long)orn_now_ms(), ++log->commits);
	env_commit_begin(commit, (uint32_t)count);
	for (size_t i = 0; i < count; i++) {
		env_envelope e;
		memset(&e, 0, sizeof e);
		snprintf(e.type, sizeof e.type, "%s", events[i].type);
		e.schema = 1;
		e.time_ms = orn_now_ms();
		snprintf(e.correlation, sizeof e.correlation, "%s", causation);
		snprintf(e.causation, sizeof e.causation, "%s", causation);
		snprintf(e.actor, sizeof e.actor, "test");
		e.payload = mp_writer_data(events[i].payload);
		e.payload_len = mp_writer_size(events[i].payload);
		cr_assert_eq(env_encode(commit, &e), ORN_OK);
		mp_writer_destroy(events[i].payload);
	}
	cr_assert_eq(mp_writer_status(commit), ORN_OK);
	return commit;
}

uint64_t tcl_valid(tcl_log *log, const char *aggregate, const char *id, const tcl_event *events, size_t count)
{
	char causation[64];
	es_position *at = position_of(log, aggregate, id);
	mp_writer *commit = encode_commit(log, events, count, causation, sizeof causation);
	es_append_result res;
	orn_rc rc = es_append(log->store, aggregate, id, at, causation, mp_writer_data(commit),
	                      mp_writer_size(commit), &res);
	cr_assert_eq(rc, ORN_OK, "valid commit on %s.%s: %s", aggregate, id, orn_strerror(rc));
	mp_writer_destroy(commit);
	at->version = at->last_seq = res.seq;
	return res.seq;
}

uint64_t tcl_void(tcl_log *log, const char *aggregate, const char *id, uint64_t stale,
                  const tcl_event *events, size_t count)
{
	char causation[64];
	es_position *at = position_of(log, aggregate, id);
	cr_assert(stale != at->version, "a commit on the version is valid, not void");
	mp_writer *commit = encode_commit(log, events, count, causation, sizeof causation);
	es_append_result res;
	orn_rc rc = es_append(log->store, aggregate, id, &(es_position){stale, at->last_seq}, causation,
	                      mp_writer_data(commit), mp_writer_size(commit), &res);
	/* The confirmation reads only after last_seq, which the caller vouches
	 * holds no valid commit after its version: with nothing racing, it
	 * answers OK for this commit; what matters is that the log voids it. */
	cr_assert(rc == ORN_OK || rc == ORN_ECONFLICT, "void commit on %s.%s: %s", aggregate, id,
	          orn_strerror(rc));
	mp_writer_destroy(commit);
	uint64_t seq = 0;
	cr_assert_eq(es_head(log->store, aggregate, id, &seq), ORN_OK);
	cr_assert_gt(seq, at->last_seq, "the server stored the void commit");
	char subject[ES_SUBJECT_MAX];
	cr_assert_eq(es_subject(subject, sizeof subject, "orion.evt", aggregate, id), ORN_OK);
	es_commit check = {.seq = seq, .subject = subject, .chained = true, .prev = stale};
	cr_assert_eq(es_commit_check(log->store, &check), ORN_OK);
	cr_assert_not(check.valid, "the crafted commit at %llu is valid", (unsigned long long)seq);
	at->last_seq = seq;
	return seq;
}

uint64_t tcl_legacy(tcl_log *log, const char *aggregate, const char *id, const tcl_event *events,
                    size_t count)
{
	char causation[64], subject[ES_SUBJECT_MAX];
	es_position *at = position_of(log, aggregate, id);
	mp_writer *commit = encode_commit(log, events, count, causation, sizeof causation);
	cr_assert_eq(es_subject(subject, sizeof subject, "orion.evt", aggregate, id), ORN_OK);
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus st = js_Publish(&ack, es_store_jetstream(log->store), subject, mp_writer_data(commit),
	                           (int)mp_writer_size(commit), NULL, &jerr);
	cr_assert_eq(st, NATS_OK, "legacy commit on %s: %s (%d)", subject, natsStatus_GetText(st), (int)jerr);
	uint64_t seq = ack->Sequence;
	jsPubAck_Destroy(ack);
	mp_writer_destroy(commit);
	at->version = at->last_seq = seq;
	return seq;
}

void tcl_world_start(tcl_world *w, const char *tag)
{
	es_options o;
	memset(w, 0, sizeof *w);
	w->server = th_natsd_start(tag);
	es_options_init(&o);
	o.url = natsd_url(w->server);
	cr_assert_eq(es_store_open(&o, &w->store), ORN_OK);
	w->log = tcl_create(w->store);
	w->data_dir = th_tempdir(tag);
}

void tcl_world_stop(tcl_world *w)
{
	tcl_destroy(w->log);
	es_store_close(w->store);
	th_natsd_stop(w->server);
	th_rmrf(w->data_dir);
	free(w->data_dir);
	memset(w, 0, sizeof *w);
}

uint64_t tcl_stream_last(const tcl_world *w)
{
	jsStreamInfo *si = NULL;
	cr_assert_eq(js_GetStreamInfo(&si, es_store_jetstream(w->store), ES_STREAM, NULL, NULL), NATS_OK);
	uint64_t last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	return last;
}

int tcl_run_orion(const tcl_world *w, const char *args, char **out)
{
	char env[1024], err[700];
	snprintf(env, sizeof env, "ORION_NATS_URL='%s' ORION_DATA_DIR='%s'", natsd_url(w->server),
	         w->data_dir);
	snprintf(err, sizeof err, "%s/stderr.log", w->data_dir);
	return th_run_orion(env, args, err, out);
}
