/* chain_load.c — races commands through two Orion instances on a cluster,
 * then folds what the stream holds and compares it with what the actors
 * answered (tests/cluster/test_chain.py; ADR 015).
 *
 *   chain_load reserve --tag T [--items 50] [--units 10] [--commands 2000] [--wave N] [--send URL]...
 *       creates items T-i<k> with `units` on hand, then sends the
 *       ReserveStock commands (reservation T-r<n>, quantity 1), two in a row
 *       to each item in turn: commands 2j and 2j+1 go to item j % items.
 *   chain_load pay-cancel --tag T [--orders 200] [--wave N] [--send URL]...
 *       brings orders T-o<k> to awaiting_payment (PlaceOrder, MarkReserved,
 *       Confirm), then sends a MarkPaid and a Cancel (reason expired, past
 *       the payment deadline) of every order, in a row on different
 *       connections, either one first.
 *
 * Before a race every aggregate is read a few times (warm_up) so that both
 * instances hold it. --wave N sends the race's commands N at a time (each
 * wave once the previous one is answered; default: all at once): the two
 * instances work through their queues at different speeds, and the shorter
 * the queues the closer in time two commands sent in a row are decided. --send URL (repeatable, at most
 * CC_MAX_CONNS) opens one client connection per URL (default: two to ORION_NATS_URL); commands go out
 * alternating between them, and the queue group orion.<aggregate> gives each to either instance. The stream
 * is read with es_scan, ADR 015's fold rule (commits written before the chain count as valid), as the ops
 * user of ORION_NATS_CREDENTIALS.
 *
 * Output, JSON lines on stdout: reserve prints one {"item": ...} per item and
 * pay-cancel one {"order": ...} per order whose story is not a clean race (both
 * accepted, none, both in the log, an answer the fold disagrees with, a void
 * commit), then one {"summary": ...}. Exit 0 when every command was answered,
 * 2 when the setup or the run could not be completed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "cluster_client.h"
#include "log.h"
#include "order.h"
#include "order_token.h"
#include "stock.h"

#define STALL_MS  60000
#define WARM_GETS 6 /* Gets per aggregate before a race */

typedef struct options {
	const char *mode;
	const char *tag;
	long items, units, commands, orders;
	long wave; /* commands per wave of a race, 0: all at once */
	const char *send[CC_MAX_CONNS];
	int sends;
} options;

/* ---- batches ---------------------------------------------------------------- */

static cc_request *requests_new(long count)
{
	cc_request *r = calloc((size_t)(count > 0 ? count : 1), sizeof *r);
	if (r == NULL)
		fprintf(stderr, "chain_load: out of memory\n");
	return r;
}

static void requests_free(cc_request *reqs, long count)
{
	for (long i = 0; reqs != NULL && i < count; i++)
		cc_request_dispose(&reqs[i]);
	free(reqs);
}

/* Runs a batch whose every command must be accepted (the setup); says which
 * was not. */
static orn_rc run_setup(cc_sender *s, cc_request *reqs, long count, const char *what)
{
	orn_rc rc = cc_sender_run(s, reqs, count, STALL_MS);
	for (long i = 0; rc == ORN_OK && i < count; i++)
		if (!reqs[i].decoded || reqs[i].outcome != BUS_ACCEPTED) {
			fprintf(stderr, "chain_load: %s %ld on %s: %s %s\n", what, i, reqs[i].subject,
			        reqs[i].decoded ? bus_outcome_name(reqs[i].outcome) : "undecodable",
			        reqs[i].code);
			rc = ORN_EINTERNAL;
		}
	if (rc != ORN_OK)
		fprintf(stderr, "chain_load: %s: %s\n", what, orn_strerror(rc));
	return rc;
}

/* Sends the race reqs[0..count) in waves of wave commands (0: one wave) and
 * waits for every answer; *seconds is how long that took. */
static orn_rc race(cc_sender *s, cc_request *reqs, long count, long wave, double *seconds)
{
	orn_rc rc = ORN_OK;
	long step = wave > 0 ? wave : count;
	int64_t started = orn_monotonic_ns();
	for (long at = 0; rc == ORN_OK && at < count; at += step)
		rc = cc_sender_run(s, reqs + at, count - at < step ? count - at : step, STALL_MS);
	*seconds = (double)(orn_monotonic_ns() - started) / 1e9;
	if (rc != ORN_OK)
		fprintf(stderr, "chain_load: the race was not answered: %s\n", orn_strerror(rc));
	return rc;
}

/* The number in an id "<tag>-<letter><n>", -1 for another id. */
static long id_number(const char *tag, char letter, const char *id)
{
	size_t n = strlen(tag);
	if (strncmp(id, tag, n) != 0 || id[n] != '-' || id[n + 1] != letter || id[n + 2] == '\0')
		return -1;
	char *end = NULL;
	long v = strtol(id + n + 2, &end, 10);
	return *end == '\0' && v >= 0 ? v : -1;
}

static void print_json(json_t *j)
{
	if (j == NULL)
		return;
	json_dumpf(j, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	json_decref(j);
}

static const char *outcome_name(const cc_request *r)
{
	return r->decoded ? bus_outcome_name(r->outcome) : "undecodable";
}

static bool accepted(const cc_request *r)
{
	return r->decoded && r->outcome == BUS_ACCEPTED;
}

/* Counts r's answer under "<outcome>/<code>" in codes. */
static void count_code(json_t *codes, const cc_request *r)
{
	char key[BUS_CODE_MAX + 16];
	snprintf(key, sizeof key, "%s/%s", outcome_name(r), r->code);
	json_object_set_new(codes, key, json_integer(json_integer_value(json_object_get(codes, key)) + 1));
}

/* ---- the fold ------------------------------------------------------------------ */

/* What the stream holds for the aggregates <tag>-<letter><k> (k < count) of
 * one kind: each one's state folded from its valid commits (es_scan applies
 * ADR 015's rule), and its void commits. */
typedef struct fold {
	const act_kind *kind;
	const char *tag;
	char letter;
	long count;
	uint8_t *states; /* count states of kind->state_size bytes */
	long *voids;
	json_t **void_lists; /* per aggregate: [{"seq","prev","types","command"}] */
	uint64_t last_seq;   /* the last sequence read */
	/* called with each event of a valid commit, once folded (may be NULL) */
	orn_rc (*visit)(void *closure, long k, const es_commit *c, const env_envelope *e);
	void *closure;
} fold;

static orn_rc fold_init(fold *f, const act_kind *kind, const char *tag, char letter, long count)
{
	*f = (fold){.kind = kind, .tag = tag, .letter = letter};
	f->states = calloc((size_t)count, kind->state_size);
	f->voids = calloc((size_t)count, sizeof *f->voids);
	f->void_lists = calloc((size_t)count, sizeof *f->void_lists);
	if (f->states == NULL || f->voids == NULL || f->void_lists == NULL)
		return ORN_ENOMEM;
	for (; f->count < count; f->count++) {
		kind->init(f->states + (size_t)f->count * kind->state_size);
		if ((f->void_lists[f->count] = json_array()) == NULL)
			return ORN_ENOMEM;
	}
	return ORN_OK;
}

static void *fold_state(const fold *f, long k)
{
	return f->states + (size_t)k * f->kind->state_size;
}

/* Hands the void commits of aggregate k to the caller (a JSON array). */
static json_t *fold_take_voids(fold *f, long k)
{
	json_t *list = f->void_lists[k];
	f->void_lists[k] = NULL;
	return list != NULL ? list : json_array();
}

static void fold_dispose(fold *f)
{
	for (long k = 0; k < f->count; k++) {
		if (f->kind->dispose != NULL)
			f->kind->dispose(fold_state(f, k));
		json_decref(f->void_lists[k]);
	}
	free(f->states);
	free(f->voids);
	free(f->void_lists);
}

static orn_rc fold_commit(void *closure, const es_commit *c)
{
	fold *f = closure;
	const char *id = strrchr(c->subject, '.');
	long k = id != NULL ? id_number(f->tag, f->letter, id + 1) : -1;
	if (k < 0 || k >= f->count)
		return ORN_OK;
	if (!c->valid) {
		json_t *types = json_array();
		for (size_t i = 0; i < c->count; i++)
			json_array_append_new(types, json_string(c->events[i].type));
		f->voids[k]++;
		json_array_append_new(f->void_lists[k],
		                      json_pack("{s:I, s:I, s:o, s:s}", "seq", (json_int_t)c->seq, "prev",
		                                (json_int_t)c->prev, "types", types, "command",
		                                c->count > 0 ? c->events[0].causation : ""));
		return ORN_OK;
	}
	for (size_t i = 0; i < c->count; i++) {
		orn_rc rc = f->kind->evolve(fold_state(f, k), &c->events[i]);
		if (rc == ORN_OK && f->visit != NULL)
			rc = f->visit(f->closure, k, c, &c->events[i]);
		if (rc != ORN_OK)
			return rc;
	}
	return ORN_OK;
}

/* Reads every commit of the kind from the stream's start to its end. */
static orn_rc fold_read(fold *f, es_store *store)
{
	char filter[ES_SUBJECT_MAX];
	snprintf(filter, sizeof filter, "orion.evt.%s.*", f->kind->aggregate);
	orn_rc rc = es_scan(store, filter, 1, 0, fold_commit, f, &f->last_seq);
	if (rc != ORN_OK)
		fprintf(stderr, "chain_load: reading the stream: %s\n", orn_strerror(rc));
	return rc;
}

/* Sends WARM_GETS Gets of every aggregate <tag>-<letter><k> (k < count),
 * alternating connections. A queue group gives each to either instance at
 * random: afterwards both hold nearly every aggregate in their caches, as in
 * a service under load, so that both decide at once when the race starts
 * (an instance that must first load the aggregate comes too late to race). */
static orn_rc warm_up(cc_sender *s, const char *aggregate, const char *tag, char letter, long count)
{
	char id[ES_ID_MAX + 1], cmd_id[ES_ID_MAX + 32];
	long total = count * WARM_GETS;
	mp_writer *payload = mp_writer_create();
	cc_request *gets = requests_new(total);
	orn_rc rc = payload != NULL && gets != NULL ? ORN_OK : ORN_ENOMEM;
	if (rc == ORN_OK)
		mp_write_map(payload, 0);
	for (long i = 0; rc == ORN_OK && i < total; i++) {
		snprintf(id, sizeof id, "%s-%c%ld", tag, letter, i % count);
		snprintf(cmd_id, sizeof cmd_id, "%s-get-%ld", id, i / count);
		rc = cc_request_encode(&gets[i], aggregate, id, BUS_CMD_GET, cmd_id, payload,
		                       (int)(i / count % cc_sender_conns(s)));
	}
	if (rc == ORN_OK)
		rc = run_setup(s, gets, total, "Get");
	requests_free(gets, total);
	mp_writer_destroy(payload);
	return rc;
}

/* ---- reserve ---------------------------------------------------------------- */

/* The item of reserve n: two in a row to each item in turn. */
static long reserve_item(long n, long items)
{
	return n / 2 % items;
}

/* fold.visit: the valid commit that holds each reservation <tag>-r<n>. */
typedef struct reserved_at {
	const options *o;
	uint64_t *seq; /* per reserve command, 0: none */
} reserved_at;

static orn_rc visit_reserved(void *closure, long k, const es_commit *c, const env_envelope *e)
{
	reserved_at *at = closure;
	stock_event ev;
	(void)k;
	orn_rc rc = stock_event_decode(e->type, e->payload, e->payload_len, &ev);
	long n = rc == ORN_OK && ev.kind == STOCK_RESERVED ? id_number(at->o->tag, 'r', ev.reservation_id)
	                                                   : -1;
	if (n >= 0 && n < at->o->commands)
		at->seq[n] = c->seq;
	return rc;
}

/* Prints item k's line: its answers against its fold; true if they agree. */
static bool report_item(const options *o, fold *f, const cc_request *reserves, const reserved_at *at, long k,
                        long *accepted_out, long *out_of_stock_out)
{
	char id[ES_ID_MAX + 1], rid[STOCK_RESERVATION_ID_MAX];
	long accepted_n = 0, out_of_stock = 0, not_held = 0, seq_differs = 0;
	const stock_state *st = fold_state(f, k);
	json_t *others = json_object();
	for (long n = 0; n < o->commands; n++) {
		const cc_request *r = &reserves[n];
		if (reserve_item(n, o->items) != k)
			continue;
		snprintf(rid, sizeof rid, "%s-r%ld", o->tag, n);
		if (accepted(r)) {
			accepted_n++;
			not_held += stock_held(st, rid) != 1;
			seq_differs += at->seq[n] != r->seq;
		} else if (r->decoded && r->outcome == BUS_REJECTED && strcmp(r->code, "out_of_stock") == 0) {
			out_of_stock++;
		} else {
			count_code(others, r);
		}
	}
	long held = st->held != NULL ? (long)hmap_count(st->held) : 0;
	snprintf(id, sizeof id, "%s-i%ld", o->tag, k);
	print_json(json_pack("{s:s, s:i, s:i, s:o, s:{s:I, s:I, s:I, s:i}, s:i, s:i, s:i, s:o}", "item", id,
	                     "accepted", (int)accepted_n, "out_of_stock", (int)out_of_stock, "other", others,
	                     "fold", "on_hand", (json_int_t)st->on_hand, "reserved", (json_int_t)st->reserved,
	                     "sold", (json_int_t)st->sold, "held", (int)held, "accepted_not_held",
	                     (int)not_held, "accepted_seq_differs", (int)seq_differs, "void_commits",
	                     (int)f->voids[k], "void", fold_take_voids(f, k)));
	*accepted_out += accepted_n;
	*out_of_stock_out += out_of_stock;
	return not_held == 0 && seq_differs == 0 && held == accepted_n && st->reserved == accepted_n;
}

static int run_reserve(const options *o, cc_sender *s, es_store *store)
{
	char id[ES_ID_MAX + 1], cmd_id[STOCK_RESERVATION_ID_MAX + 16];
	int conns = cc_sender_conns(s), status = 2;
	long items = o->items, count = o->commands;
	double seconds = 0;
	mp_writer *payload = mp_writer_create();
	cc_request *creates = requests_new(items), *reserves = requests_new(count);
	reserved_at at = {o, calloc((size_t)count, sizeof(uint64_t))};
	fold f;
	orn_rc rc = fold_init(&f, &stock_kind, o->tag, 'i', items);
	f.visit = visit_reserved;
	f.closure = &at;
	if (rc == ORN_OK && (payload == NULL || creates == NULL || reserves == NULL || at.seq == NULL))
		rc = ORN_ENOMEM;
	for (long k = 0; rc == ORN_OK && k < items; k++) {
		stock_command c = {.kind = STOCK_CREATE, .quantity = o->units};
		snprintf(id, sizeof id, "%s-i%ld", o->tag, k);
		snprintf(cmd_id, sizeof cmd_id, "%s-create", id);
		mp_writer_reset(payload);
		if ((rc = stock_command_encode(payload, &c)) == ORN_OK)
			rc = cc_request_encode(&creates[k], STOCK_AGGREGATE, id, STOCK_CMD_CREATE, cmd_id,
			                       payload, (int)(k % conns));
	}
	for (long n = 0; rc == ORN_OK && n < count; n++) {
		stock_command c = {.kind = STOCK_RESERVE, .quantity = 1};
		snprintf(id, sizeof id, "%s-i%ld", o->tag, reserve_item(n, items));
		snprintf(c.reservation_id, sizeof c.reservation_id, "%s-r%ld", o->tag, n);
		snprintf(cmd_id, sizeof cmd_id, "%s-reserve", c.reservation_id);
		mp_writer_reset(payload);
		if ((rc = stock_command_encode(payload, &c)) == ORN_OK)
			rc = cc_request_encode(&reserves[n], STOCK_AGGREGATE, id, STOCK_CMD_RESERVE, cmd_id,
			                       payload, (int)(n % conns));
	}
	if (rc != ORN_OK || run_setup(s, creates, items, "CreateStockItem") != ORN_OK ||
	    warm_up(s, STOCK_AGGREGATE, o->tag, 'i', items) != ORN_OK ||
	    race(s, reserves, count, o->wave, &seconds) != ORN_OK || fold_read(&f, store) != ORN_OK)
		goto done;

	long total_accepted = 0, total_out_of_stock = 0, total_voids = 0, oversold = 0, disagree = 0;
	for (long k = 0; k < items; k++) {
		const stock_state *st = fold_state(&f, k);
		long accepted_before = total_accepted;
		total_voids += f.voids[k];
		disagree += !report_item(o, &f, reserves, &at, k, &total_accepted, &total_out_of_stock);
		oversold += st->reserved > st->on_hand || total_accepted - accepted_before > o->units;
	}
	print_json(json_pack("{s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:I, s:i}}",
	                     "summary", "items", (int)items, "units", (int)o->units, "commands", (int)count,
	                     "accepted", (int)total_accepted, "out_of_stock", (int)total_out_of_stock,
	                     "items_oversold", (int)oversold, "items_disagreeing", (int)disagree,
	                     "void_commits", (int)total_voids, "connections", conns, "wave", (int)o->wave,
	                     "seconds", seconds, "last_seq", (json_int_t)f.last_seq, "reserves_per_s",
	                     (int)(seconds > 0 ? (double)count / seconds : 0)));
	status = 0;
done:
	fold_dispose(&f);
	free(at.seq);
	requests_free(creates, items);
	requests_free(reserves, count);
	mp_writer_destroy(payload);
	return status;
}

/* ---- pay-cancel -------------------------------------------------------------- */

enum { STEP_PLACE, STEP_RESERVED, STEP_CONFIRM, STEP_COUNT };

/* fold.visit: each order's valid OrderPaid and OrderCancelled commits. */
typedef struct paid_or_cancelled {
	uint64_t *paid_seq, *cancel_seq; /* the first valid one, 0: none */
	long *paid, *cancelled;          /* valid commits of each */
} paid_or_cancelled;

static orn_rc visit_order(void *closure, long k, const es_commit *c, const env_envelope *e)
{
	paid_or_cancelled *p = closure;
	bool paid = strcmp(e->type, ORDER_EV_PAID) == 0;
	if (!paid && strcmp(e->type, ORDER_EV_CANCELLED) != 0)
		return ORN_OK;
	uint64_t *seq = paid ? &p->paid_seq[k] : &p->cancel_seq[k];
	(paid ? p->paid : p->cancelled)[k]++;
	if (*seq == 0)
		*seq = c->seq;
	return ORN_OK;
}

/* Encodes the order command of kind for order id (through connection conn). */
static orn_rc order_request(cc_request *r, mp_writer *payload, const char *id, order_command_kind kind,
                            const char *step, int conn)
{
	char cmd_id[128], token_hash[ORDER_TOKEN_HASH_MAX];
	order_command *c = calloc(1, sizeof *c);
	if (c == NULL)
		return ORN_ENOMEM;
	int64_t now = orn_now_ms();
	order_token_hash(id, strlen(id), token_hash); /* any 64 hex digits will do: the same in both */
	c->kind = kind;
	c->data.time_ms = now;
	switch (kind) {
	case ORDER_PLACE:
		snprintf(c->data.customer_id, sizeof c->data.customer_id, "chain-customer");
		snprintf(c->data.customer_email, sizeof c->data.customer_email, "chain@example.com");
		order_request_hash(id, strlen(id), c->data.request_hash);
		c->data.line_count = 1;
		snprintf(c->data.lines[0].product_id, sizeof c->data.lines[0].product_id, "chain-product");
		snprintf(c->data.lines[0].name, sizeof c->data.lines[0].name, "Chain");
		c->data.lines[0].unit_price_cents = 1000;
		c->data.lines[0].quantity = 1;
		snprintf(c->data.currency, sizeof c->data.currency, "EUR");
		memcpy(c->data.token_hash, token_hash, sizeof token_hash);
		c->data.ttl_ms = 3600 * 1000;
		break;
	case ORDER_CONFIRM:
		memcpy(c->data.token_hash, token_hash, sizeof token_hash);
		c->data.ttl_ms = 3600 * 1000;
		break;
	case ORDER_CANCEL:
		/* the deadline's cancel, past the payment deadline Confirm set: since
		 * ADR 028 a customer may cancel a paid order (paid, then cancelled, is a
		 * story), but the deadline never cancels one, so MarkPaid and this
		 * Cancel exclude each other whatever their order */
		snprintf(c->data.reason, sizeof c->data.reason, ORDER_REASON_EXPIRED);
		c->data.time_ms = now + 3600 * 1000 + 1000;
		break;
	case ORDER_MARK_PAID:
		snprintf(c->data.charge_id, sizeof c->data.charge_id, "ch_%s", id);
		snprintf(c->data.brand, sizeof c->data.brand, "visa");
		snprintf(c->data.last4, sizeof c->data.last4, "4242");
		break;
	default:
		break;
	}
	snprintf(cmd_id, sizeof cmd_id, "%s-%s", id, step);
	mp_writer_reset(payload);
	orn_rc rc = order_command_encode(payload, c);
	if (rc == ORN_OK)
		rc = cc_request_encode(r, ORDER_AGGREGATE, id, order_command_type(kind), cmd_id, payload,
		                       conn);
	free(c);
	return rc;
}

static int run_pay_cancel(const options *o, cc_sender *s, es_store *store)
{
	char id[ES_ID_MAX + 1];
	int conns = cc_sender_conns(s), status = 2;
	long n = o->orders;
	double seconds = 0;
	mp_writer *payload = mp_writer_create();
	cc_request *steps[STEP_COUNT] = {requests_new(n), requests_new(n), requests_new(n)};
	cc_request *race_reqs = requests_new(2 * n); /* order k: 2k and 2k+1, MarkPaid or Cancel first */
	paid_or_cancelled pc = {calloc((size_t)n, sizeof(uint64_t)), calloc((size_t)n, sizeof(uint64_t)),
	                        calloc((size_t)n, sizeof(long)), calloc((size_t)n, sizeof(long))};
	fold f;
	orn_rc rc = fold_init(&f, &order_kind, o->tag, 'o', n);
	f.visit = visit_order;
	f.closure = &pc;
	if (rc == ORN_OK && (payload == NULL || race_reqs == NULL || pc.paid_seq == NULL ||
	                     pc.cancel_seq == NULL || pc.paid == NULL || pc.cancelled == NULL))
		rc = ORN_ENOMEM;
	for (int i = 0; i < STEP_COUNT; i++)
		if (steps[i] == NULL)
			rc = ORN_ENOMEM;
	for (long k = 0; rc == ORN_OK && k < n; k++) {
		int a = (int)(k % conns), b = (int)((k + 1) % conns);
		/* which connection takes MarkPaid, and which command goes out first, alternate */
		int paid_conn = (k / 2) % 2 ? a : b;
		long paid = 2 * k + (k % 2), cancel = 2 * k + 1 - (k % 2);
		snprintf(id, sizeof id, "%s-o%ld", o->tag, k);
		if ((rc = order_request(&steps[STEP_PLACE][k], payload, id, ORDER_PLACE, "place", a)) !=
		            ORN_OK ||
		    (rc = order_request(&steps[STEP_RESERVED][k], payload, id, ORDER_MARK_RESERVED,
		                        "reserved", a)) != ORN_OK ||
		    (rc = order_request(&steps[STEP_CONFIRM][k], payload, id, ORDER_CONFIRM, "confirm", a)) !=
		            ORN_OK ||
		    (rc = order_request(&race_reqs[paid], payload, id, ORDER_MARK_PAID, "paid", paid_conn)) !=
		            ORN_OK)
			break;
		rc = order_request(&race_reqs[cancel], payload, id, ORDER_CANCEL, "cancel",
		                   paid_conn == a ? b : a);
	}
	static const char *const step_names[STEP_COUNT] = {"PlaceOrder", "MarkReserved", "Confirm"};
	for (int i = 0; rc == ORN_OK && i < STEP_COUNT; i++)
		rc = run_setup(s, steps[i], n, step_names[i]);
	if (rc != ORN_OK || warm_up(s, ORDER_AGGREGATE, o->tag, 'o', n) != ORN_OK ||
	    race(s, race_reqs, 2 * n, o->wave, &seconds) != ORN_OK || fold_read(&f, store) != ORN_OK)
		goto done;

	long both_accepted = 0, none_accepted = 0, paid_won = 0, cancel_won = 0, both_in_log = 0;
	long disagree = 0, total_voids = 0, other_answers = 0;
	json_t *codes = json_object();
	for (long k = 0; k < n; k++) {
		const cc_request *paid = &race_reqs[2 * k + (k % 2)],
		                 *cancel = &race_reqs[2 * k + 1 - (k % 2)];
		const order_state *st = fold_state(&f, k);
		bool p = accepted(paid), c = accepted(cancel);
		const char *status_name = order_status_name(st->status);
		both_accepted += p && c;
		none_accepted += !p && !c;
		paid_won += p && !c;
		cancel_won += c && !p;
		both_in_log += pc.paid[k] > 0 && pc.cancelled[k] > 0;
		total_voids += f.voids[k];
		for (int i = 0; i < 2; i++) {
			const cc_request *r = i == 0 ? paid : cancel;
			if (!accepted(r) && !(r->decoded && strcmp(r->code, "wrong_state") == 0)) {
				other_answers++;
				count_code(codes, r);
			}
		}
		/* the accepted command is the effective one, at the sequence it answered */
		bool agrees = (p && !c && st->status == ORDER_CONFIRMED && pc.paid_seq[k] == paid->seq) ||
		              (c && !p && st->status == ORDER_CANCELLED && pc.cancel_seq[k] == cancel->seq);
		disagree += !agrees;
		if (!agrees || f.voids[k] > 0 || pc.paid[k] + pc.cancelled[k] != 1) {
			snprintf(id, sizeof id, "%s-o%ld", o->tag, k);
			print_json(json_pack(
			        "{s:s, s:{s:s, s:s, s:I}, s:{s:s, s:s, s:I}, s:s, s:i, s:i, s:b, s:i, s:o}",
			        "order", id, "paid", "outcome", outcome_name(paid), "code", paid->code, "seq",
			        (json_int_t)paid->seq, "cancel", "outcome", outcome_name(cancel), "code",
			        cancel->code, "seq", (json_int_t)cancel->seq, "fold_status",
			        status_name ? status_name : "?", "paid_in_log", (int)pc.paid[k],
			        "cancelled_in_log", (int)pc.cancelled[k], "answers_agree", agrees,
			        "void_commits", (int)f.voids[k], "void", fold_take_voids(&f, k)));
		}
	}
	print_json(json_pack("{s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:i, s:i, s:f, s:I}}",
	                     "summary", "orders", (int)n, "paid_won", (int)paid_won, "cancel_won",
	                     (int)cancel_won, "both_accepted", (int)both_accepted, "none_accepted",
	                     (int)none_accepted, "both_in_log", (int)both_in_log, "answers_disagree",
	                     (int)disagree, "void_commits", (int)total_voids, "other_answers",
	                     (int)other_answers, "other_codes", codes, "connections", conns, "wave",
	                     (int)o->wave, "seconds", seconds, "last_seq", (json_int_t)f.last_seq));
	status = 0;
done:
	fold_dispose(&f);
	free(pc.paid_seq);
	free(pc.cancel_seq);
	free(pc.paid);
	free(pc.cancelled);
	for (int i = 0; i < STEP_COUNT; i++)
		requests_free(steps[i], n);
	requests_free(race_reqs, 2 * n);
	mp_writer_destroy(payload);
	return status;
}

/* ---- main -------------------------------------------------------------------- */

static int usage(void)
{
	fprintf(stderr,
	        "usage: chain_load reserve --tag T [--items N] [--units U] [--commands C] [--wave N]\n"
	        "                          [--send URL]...\n"
	        "       chain_load pay-cancel --tag T [--orders N] [--wave N] [--send URL]...\n"
	        "(the cluster: ORION_NATS_URL, ORION_NATS_CREDENTIALS)\n");
	return 2;
}

static bool parse_count(const char *text, long max, long *out)
{
	char *end = NULL;
	long v = strtol(text, &end, 10);
	if (end == text || *end != '\0' || v < 1 || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_options(int argc, char **argv, options *o)
{
	*o = (options){.items = 50, .units = 10, .commands = 2000, .orders = 200};
	if (argc < 2)
		return false;
	o->mode = argv[1];
	for (int i = 2; i + 1 < argc; i += 2) {
		const char *opt = argv[i], *val = argv[i + 1];
		bool ok = true;
		if (strcmp(opt, "--tag") == 0)
			o->tag = val;
		else if (strcmp(opt, "--items") == 0)
			ok = parse_count(val, 10000, &o->items);
		else if (strcmp(opt, "--units") == 0)
			ok = parse_count(val, 1000000, &o->units);
		else if (strcmp(opt, "--commands") == 0)
			ok = parse_count(val, 1000000, &o->commands);
		else if (strcmp(opt, "--wave") == 0)
			ok = parse_count(val, 1000000, &o->wave);
		else if (strcmp(opt, "--orders") == 0)
			ok = parse_count(val, 100000, &o->orders);
		else if (strcmp(opt, "--send") == 0 && o->sends < CC_MAX_CONNS)
			o->send[o->sends++] = val;
		else
			ok = false;
		if (!ok)
			return false;
	}
	return argc % 2 == 0 && o->tag != NULL && orn_id_valid(o->tag) && strlen(o->tag) <= 40 &&
	       (strcmp(o->mode, "reserve") == 0 || strcmp(o->mode, "pay-cancel") == 0);
}

int main(int argc, char **argv)
{
	options o;
	if (!parse_options(argc, argv, &o))
		return usage();
	log_set_level(LOG_WARN);
	if (sodium_init() < 0)
		return 2;
	cc_target target;
	cc_target_from_env(&target);
	if (o.sends == 0) {
		o.send[o.sends++] = target.url;
		o.send[o.sends++] = target.url;
	}
	cc_sender *sender = NULL;
	es_store *store = NULL;
	int status = 2;
	if (cc_sender_create(&target, o.send, o.sends, &sender) != ORN_OK ||
	    cc_store_open(&target, &store) != ORN_OK) {
		fprintf(stderr, "chain_load: cannot connect to the cluster\n");
		goto done;
	}
	status = strcmp(o.mode, "reserve") == 0 ? run_reserve(&o, sender, store)
	                                        : run_pay_cancel(&o, sender, store);
done:
	cc_sender_destroy(sender);
	es_store_close(store);
	nats_Close();
	return status;
}
