/* verify_stock.c — `orion verify-stock`: re-derives every stock item's on
 * hand and reserved (and low-stock threshold and flag) from the events and
 * compares them with the inventory read model and with what live orders hold
 * (issue 6).
 *
 * Three views of one stock item, all at ONE stream sequence P:
 *   events       stream ORION_EVT read from 1 to P, every stock item folded
 *                with the stock actor's own kind table (stock_kind.evolve),
 *                so this is what the actor itself would load;
 *   read model   the inventory model of <data dir>/lmdb (a link to a
 *                generation is followed), read through projections/inventory.h;
 *   live orders  every order folded with order_kind.evolve; the quantities of
 *                the orders whose status holds stock: awaiting_confirmation
 *                and awaiting_payment hold every line, pending holds the
 *                lines the saga has reserved so far (in flight), confirmed
 *                has committed (reserved -> sold), cancelled and
 *                payment_failed have released.
 *
 * P is the read model's checkpoint: the model may lag the stream, so the
 * stream is folded only up to the sequence the model has applied, never
 * compared against a model that has not seen the same events. The model is
 * read while the projector may be writing: an item whose record was applied
 * past the checkpoint read first moved during the read; the read is retried,
 * and an item that still moved is left out of the read model comparison
 * (counted, never silently). --no-read-model folds up to the stream's last
 * sequence and compares events with live orders only.
 *
 * A stock item's own set of held reservation ids is the truth of who holds
 * what: every held id is matched with the order of that id (the saga uses the
 * order id as reservation id), so a reservation without a live order behind
 * it (an admin or API reserve, a release the saga never sent) is reported
 * with its id, as is a live order whose stock the item does not hold.
 * Levels the stock decider can never reach are reported per item with their
 * own explanation, whatever the other views say: on hand below zero, and more
 * units reserved than on hand (an oversell, as two commits decided on one
 * state leave it: ADR 015).
 * Orders reach no status past confirmed, cancelled or payment_failed
 * (order.h), so a finished order keeps only its status here: the fold stays
 * small however long the history. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "evstore.h"
#include "hashmap.h"
#include "inventory.h"
#include "log.h"
#include "order.h"
#include "progress.h"
#include "proj_env.h"
#include "projector.h"
#include "stock.h"

#define STOCK_SUBJECT_PREFIX "orion.evt." STOCK_AGGREGATE "."
#define ORDER_SUBJECT_PREFIX "orion.evt." ORDER_AGGREGATE "."
#define MODEL_READ_ATTEMPTS  3 /* reads of the model while items move past its checkpoint */
#define FIELD_MAX            (STOCK_RESERVATION_ID_MAX + 16)
#define NOTE_MAX             128

/* One stock item as the three views see it. */
typedef struct vs_item {
	char id[ES_ID_MAX + 1];
	bool folded;         /* state initialised by a first event */
	stock_state state;   /* events: folded with stock_kind */
	unsigned unreadable; /* events the stock actor could not fold */
	bool in_model;
	bool model_moved; /* applied past the checkpoint while read: not compared */
	proj_stock_level level;
	int64_t live; /* units held for live orders */
} vs_item;

/* One order: its full state while it may still hold stock, its status only
 * once it reached a final one. */
typedef struct vs_order {
	order_status status;
	order_state *state; /* NULL once confirmed, cancelled or payment_failed */
	unsigned unreadable;
} vs_order;

/* One difference, as printed. Absent values print as "-" (JSON null). */
typedef struct vs_diff {
	char item[STOCK_RESERVATION_ID_MAX]; /* a stock item, or "order:<id>" */
	int rank;                            /* print order within an item */
	char field[FIELD_MAX];
	bool has_events, has_model, has_live;
	int64_t events, model, live;
	char note[NOTE_MAX];
} vs_diff;

typedef struct verify {
	hmap *items;  /* id -> vs_item */
	hmap *orders; /* id -> vs_order */
	vs_diff *diffs;
	size_t diff_count, diff_cap;
	size_t compared;     /* items in the events or the read model */
	size_t not_compared; /* items that moved while the model was read */
	bool with_model;     /* false: --no-read-model, events and live orders only */
} verify;

enum { RANK_IMPOSSIBLE, RANK_ON_HAND, RANK_RESERVED, RANK_RESERVATION, RANK_LOW_STOCK, RANK_UNREADABLE };

/* ---- the fold ----------------------------------------------------------- */

/* The item of id, created empty if absent; NULL on allocation failure. */
static vs_item *item_get(verify *v, const char *id)
{
	vs_item *it = hmap_get(v->items, id);
	if (it != NULL)
		return it;
	if ((it = calloc(1, sizeof *it)) == NULL)
		return NULL;
	snprintf(it->id, sizeof it->id, "%s", id);
	if (hmap_put(v->items, id, it) != ORN_OK) {
		free(it);
		return NULL;
	}
	return it;
}

static orn_rc fold_stock(verify *v, const char *id, const env_envelope *e)
{
	vs_item *it = item_get(v, id);
	orn_rc rc;
	if (it == NULL)
		return ORN_ENOMEM;
	if (!it->folded) {
		if ((rc = stock_state_init(&it->state)) != ORN_OK)
			return rc;
		it->folded = true;
	}
	rc = stock_kind.evolve(&it->state, e);
	if (rc == ORN_ENOMEM)
		return rc;
	if (rc != ORN_OK)
		it->unreadable++; /* the actor itself could not load this item */
	return ORN_OK;
}

static orn_rc fold_order(verify *v, const char *id, const env_envelope *e)
{
	vs_order *o = hmap_get(v->orders, id);
	if (o == NULL) {
		if ((o = calloc(1, sizeof *o)) == NULL || (o->state = malloc(sizeof *o->state)) == NULL ||
		    hmap_put(v->orders, id, o) != ORN_OK) {
			if (o != NULL)
				free(o->state);
			free(o);
			return ORN_ENOMEM;
		}
		order_kind.init(o->state);
	}
	if (o->state == NULL)
		return ORN_OK; /* the checkout is done: its reservations are settled */
	orn_rc rc = order_kind.evolve(o->state, e);
	if (rc == ORN_ENOMEM)
		return rc;
	if (rc != ORN_OK)
		o->unreadable++;
	o->status = o->state->status;
	if (order_status_checkout_done(o->status)) {
		free(o->state);
		o->state = NULL;
	}
	return ORN_OK;
}

static orn_rc fold_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	verify *v = closure;
	size_t stock_len = strlen(STOCK_SUBJECT_PREFIX), order_len = strlen(ORDER_SUBJECT_PREFIX);
	(void)seq;
	if (strncmp(subject, STOCK_SUBJECT_PREFIX, stock_len) == 0 && es_id_valid(subject + stock_len))
		return fold_stock(v, subject + stock_len, e);
	if (strncmp(subject, ORDER_SUBJECT_PREFIX, order_len) == 0 && es_id_valid(subject + order_len))
		return fold_order(v, subject + order_len, e);
	return ORN_OK;
}

/* ---- the read model ----------------------------------------------------- */

typedef struct level_list {
	proj_stock_level *items;
	size_t count, cap;
} level_list;

/* Reads every item of the model into out (emptied first). */
static orn_rc list_levels(proj_inventory *inv, level_list *out)
{
	proj_inventory_page *page = malloc(sizeof *page);
	char cursor[PROJ_CURSOR_MAX] = "";
	orn_rc rc = ORN_ENOMEM;
	out->count = 0;
	if (page == NULL)
		goto fail;
	for (;;) {
		proj_inventory_query q = {.limit = PROJ_INVENTORY_PAGE_MAX, .cursor = cursor};
		if ((rc = proj_inventory_list(inv, &q, page)) != ORN_OK)
			goto fail;
		if (out->count + page->count > out->cap) {
			size_t cap = out->cap == 0 ? 256 : out->cap * 2;
			while (cap < out->count + page->count)
				cap *= 2;
			proj_stock_level *grown = realloc(out->items, cap * sizeof *grown);
			if (grown == NULL) {
				rc = ORN_ENOMEM;
				goto fail;
			}
			out->items = grown;
			out->cap = cap;
		}
		memcpy(out->items + out->count, page->items, page->count * sizeof *page->items);
		out->count += page->count;
		if (page->next_cursor[0] == '\0')
			break;
		snprintf(cursor, sizeof cursor, "%s", page->next_cursor);
	}
	rc = ORN_OK;
fail:
	free(page);
	return rc;
}

/* Reads the model's checkpoint and every item; retried while items were
 * applied past the checkpoint during the read. The items of the last read go
 * into v; *checkpoint receives the sequence they are compared at. */
static orn_rc read_model(verify *v, proj_env *env, proj_inventory *inv, uint64_t *checkpoint)
{
	level_list levels = {0};
	size_t moved = 0;
	orn_rc rc = ORN_OK;
	for (int attempt = 0; attempt < MODEL_READ_ATTEMPTS; attempt++) {
		if ((rc = proj_checkpoint_get(env, PROJ_INVENTORY_NAME, checkpoint)) != ORN_OK ||
		    (rc = list_levels(inv, &levels)) != ORN_OK)
			goto fail;
		moved = 0;
		for (size_t i = 0; i < levels.count; i++)
			if (levels.items[i].version > *checkpoint)
				moved++;
		if (moved == 0)
			break;
	}
	for (size_t i = 0; i < levels.count; i++) {
		vs_item *it = item_get(v, levels.items[i].id);
		if (it == NULL) {
			rc = ORN_ENOMEM;
			goto fail;
		}
		it->in_model = true;
		it->level = levels.items[i];
		it->model_moved = levels.items[i].version > *checkpoint;
	}
fail:
	free(levels.items);
	return rc;
}

/* ---- the comparison ----------------------------------------------------- */

static vs_diff *diff_add(verify *v, const char *item, int rank, const char *field)
{
	if (v->diff_count == v->diff_cap) {
		size_t cap = v->diff_cap == 0 ? 16 : v->diff_cap * 2;
		vs_diff *grown = realloc(v->diffs, cap * sizeof *grown);
		if (grown == NULL)
			return NULL;
		v->diffs = grown;
		v->diff_cap = cap;
	}
	vs_diff *d = &v->diffs[v->diff_count++];
	memset(d, 0, sizeof *d);
	snprintf(d->item, sizeof d->item, "%s", item);
	snprintf(d->field, sizeof d->field, "%s", field);
	d->rank = rank;
	return d;
}

/* A reservation of item for reservation id rid: held by the item (events),
 * owed to a live order (live orders), with why they differ. */
static orn_rc diff_reservation(verify *v, const char *item, const char *rid, int64_t held, int64_t owed,
                               const char *note)
{
	char field[FIELD_MAX];
	snprintf(field, sizeof field, "reservation:%s", rid);
	vs_diff *d = diff_add(v, item, RANK_RESERVATION, field);
	if (d == NULL)
		return ORN_ENOMEM;
	d->has_events = d->has_live = true;
	d->events = held;
	d->live = owed;
	snprintf(d->note, sizeof d->note, "%s", note);
	return ORN_OK;
}

static const order_line *order_line_of(const order_state *s, const char *product)
{
	for (size_t i = 0; i < s->line_count; i++)
		if (strcmp(s->lines[i].product_id, product) == 0)
			return &s->lines[i];
	return NULL;
}

/* Sums what live orders hold per item, and reports the live orders whose
 * stock an item does not hold as it should. */
static orn_rc account_orders(verify *v)
{
	size_t cursor = 0;
	const char *order_id;
	void *value;
	char note[NOTE_MAX];
	while (hmap_next(v->orders, &cursor, &order_id, &value)) {
		const vs_order *o = value;
		if (o->state == NULL || o->status == ORDER_NONE)
			continue;
		bool awaiting = order_status_awaits_customer(o->status);
		for (size_t i = 0; i < o->state->line_count; i++) {
			const order_line *l = &o->state->lines[i];
			vs_item *it = item_get(v, l->product_id);
			if (it == NULL)
				return ORN_ENOMEM;
			int64_t held = it->folded ? stock_held(&it->state, order_id) : 0;
			if (!awaiting && held == 0)
				continue; /* pending: the saga has not reserved this line yet */
			it->live += l->quantity;
			if (held == l->quantity)
				continue;
			if (held == 0)
				snprintf(note, sizeof note, "order is %s but the item holds nothing for it",
				         order_status_name(o->status));
			else
				snprintf(note, sizeof note,
				         "the item holds another quantity than the %s order's line",
				         order_status_name(o->status));
			orn_rc rc = diff_reservation(v, it->id, order_id, held, l->quantity, note);
			if (rc != ORN_OK)
				return rc;
		}
		if (o->unreadable > 0) {
			char item[STOCK_RESERVATION_ID_MAX];
			snprintf(item, sizeof item, "order:%s", order_id);
			vs_diff *d = diff_add(v, item, RANK_UNREADABLE, "unreadable_events");
			if (d == NULL)
				return ORN_ENOMEM;
			d->has_events = true;
			d->events = o->unreadable;
			snprintf(d->note, sizeof d->note, "events the order actor cannot fold");
		}
	}
	return ORN_OK;
}

/* Reports every reservation an item holds with no live order line behind it. */
static orn_rc check_holds(verify *v, vs_item *it)
{
	size_t cursor = 0;
	const char *rid;
	void *value;
	char note[NOTE_MAX];
	if (!it->folded || it->state.held == NULL)
		return ORN_OK;
	while (hmap_next(it->state.held, &cursor, &rid, &value)) {
		int64_t held = (int64_t)(intptr_t)value;
		const vs_order *o = hmap_get(v->orders, rid);
		if (o == NULL || o->status == ORDER_NONE) {
			snprintf(note, sizeof note, "no order has this id");
		} else if (o->state == NULL) {
			snprintf(note, sizeof note, "order is %s: its reservation should have been %s",
			         order_status_name(o->status),
			         order_status_is_paid(o->status) ? "committed" : "released");
		} else if (order_line_of(o->state, it->id) == NULL) {
			snprintf(note, sizeof note, "order is %s and has no line for this item",
			         order_status_name(o->status));
		} else {
			continue; /* a live order's line: account_orders compared it */
		}
		orn_rc rc = diff_reservation(v, it->id, rid, held, 0, note);
		if (rc != ORN_OK)
			return rc;
	}
	return ORN_OK;
}

/* Reports the levels the stock decider can never reach (ADR 002): on hand
 * below zero, or more units reserved than on hand (an oversell, as two
 * commits decided on one state leave it). The events are the truth here; the
 * read model's value is shown beside them. */
static orn_rc check_possible(verify *v, const vs_item *it, bool has_model)
{
	const stock_state *s = &it->state;
	if (s->on_hand < 0) {
		vs_diff *d = diff_add(v, it->id, RANK_IMPOSSIBLE, "on_hand_below_zero");
		if (d == NULL)
			return ORN_ENOMEM;
		d->has_events = true;
		d->events = s->on_hand;
		d->has_model = has_model;
		d->model = has_model ? it->level.on_hand : 0;
		snprintf(d->note, sizeof d->note,
		         "impossible: the stock decider never takes on hand below 0");
	}
	if (s->reserved > s->on_hand) {
		vs_diff *d = diff_add(v, it->id, RANK_IMPOSSIBLE, "reserved_above_on_hand");
		if (d == NULL)
			return ORN_ENOMEM;
		d->has_events = true;
		d->events = s->reserved;
		d->has_model = has_model;
		d->model = has_model ? it->level.reserved : 0;
		snprintf(d->note, sizeof d->note,
		         "impossible: on hand %lld, %lld units reserved beyond it: an oversell, see orion "
		         "verify-log",
		         (long long)s->on_hand, (long long)(s->reserved - s->on_hand));
	}
	return ORN_OK;
}

/* Compares one item's totals across the three views. */
static orn_rc check_item(verify *v, vs_item *it)
{
	bool has_events = it->folded && it->state.exists;
	bool has_model = it->in_model && !it->model_moved;
	int64_t events_reserved = has_events ? it->state.reserved : 0;
	orn_rc rc = has_events ? check_possible(v, it, has_model && v->with_model) : ORN_OK;
	if (rc != ORN_OK)
		return rc;
	if (has_events || it->in_model || it->live != 0)
		v->compared++;
	if (it->model_moved)
		v->not_compared++;
	bool model_compared = v->with_model && !it->model_moved;
	bool model_differs = model_compared && has_events != has_model;
	if (model_differs || (has_events && has_model && it->state.on_hand != it->level.on_hand)) {
		vs_diff *d = diff_add(v, it->id, RANK_ON_HAND, "on_hand");
		if (d == NULL)
			return ORN_ENOMEM;
		d->has_events = has_events;
		d->has_model = has_model;
		d->events = has_events ? it->state.on_hand : 0;
		d->model = has_model ? it->level.on_hand : 0;
		if (model_differs)
			snprintf(d->note, sizeof d->note, "%s",
			         has_events ? "not in the read model" : "not in the events");
	}
	bool reserved_differs = model_differs || events_reserved != it->live ||
	                        (has_events && has_model && it->state.reserved != it->level.reserved);
	if (reserved_differs) {
		vs_diff *d = diff_add(v, it->id, RANK_RESERVED, "reserved");
		if (d == NULL)
			return ORN_ENOMEM;
		d->has_events = has_events;
		d->has_model = has_model;
		d->has_live = true;
		d->events = events_reserved;
		d->model = has_model ? it->level.reserved : 0;
		d->live = it->live;
	}
	if (has_events && has_model &&
	    (it->state.threshold != it->level.threshold || it->state.low != it->level.low)) {
		vs_diff *d = diff_add(v, it->id, RANK_LOW_STOCK, "low_stock_threshold");
		if (d == NULL)
			return ORN_ENOMEM;
		d->has_events = true;
		d->has_model = true;
		d->events = it->state.threshold;
		d->model = it->level.threshold;
		snprintf(d->note, sizeof d->note, "low: events %s, read model %s",
		         it->state.low ? "yes" : "no", it->level.low ? "yes" : "no");
	}
	if (it->unreadable > 0) {
		vs_diff *d = diff_add(v, it->id, RANK_UNREADABLE, "unreadable_events");
		if (d == NULL)
			return ORN_ENOMEM;
		d->has_events = true;
		d->events = it->unreadable;
		snprintf(d->note, sizeof d->note, "events the stock actor cannot fold");
	}
	return check_holds(v, it);
}

static int diff_cmp(const void *a, const void *b)
{
	const vs_diff *x = a, *y = b;
	int c = strcmp(x->item, y->item);
	if (c == 0)
		c = x->rank - y->rank;
	return c != 0 ? c : strcmp(x->field, y->field);
}

static orn_rc compare(verify *v)
{
	size_t cursor = 0;
	const char *id;
	void *value;
	orn_rc rc = account_orders(v);
	while (rc == ORN_OK && hmap_next(v->items, &cursor, &id, &value))
		rc = check_item(v, value);
	if (rc == ORN_OK && v->diff_count > 1)
		qsort(v->diffs, v->diff_count, sizeof *v->diffs, diff_cmp);
	return rc;
}

/* ---- output ------------------------------------------------------------- */

static void json_number(mp_writer *w, const char *key, bool present, int64_t value)
{
	char text[48];
	snprintf(text, sizeof text, ",\"%s\":", key);
	mp_write_raw(w, text, strlen(text));
	if (present)
		snprintf(text, sizeof text, "%lld", (long long)value);
	else
		snprintf(text, sizeof text, "null");
	mp_write_raw(w, text, strlen(text));
}

static void text_value(char *out, size_t cap, bool present, int64_t value)
{
	if (present)
		snprintf(out, cap, "%lld", (long long)value);
	else
		snprintf(out, cap, "-");
}

static orn_rc print_diff(const vs_diff *d, bool json, mp_writer *w)
{
	if (json) {
		mp_writer_reset(w);
		mp_write_raw(w, "{\"item\":", 8);
		mp_json_string(w, d->item, strlen(d->item));
		mp_write_raw(w, ",\"field\":", 9);
		mp_json_string(w, d->field, strlen(d->field));
		json_number(w, "events", d->has_events, d->events);
		json_number(w, "read_model", d->has_model, d->model);
		json_number(w, "live_orders", d->has_live, d->live);
		if (d->note[0] != '\0') {
			mp_write_raw(w, ",\"note\":", 8);
			mp_json_string(w, d->note, strlen(d->note));
		}
		mp_write_raw(w, "}\n", 2);
		if (mp_writer_status(w) != ORN_OK)
			return ORN_ENOMEM;
		fwrite(mp_writer_data(w), 1, mp_writer_size(w), stdout);
		return ORN_OK;
	}
	char events[32], model[32], live[32];
	text_value(events, sizeof events, d->has_events, d->events);
	text_value(model, sizeof model, d->has_model, d->model);
	text_value(live, sizeof live, d->has_live, d->live);
	printf("%s %s: events %s, read model %s, live orders %s%s%s%s\n", d->item, d->field, events, model,
	       live, d->note[0] != '\0' ? " (" : "", d->note, d->note[0] != '\0' ? ")" : "");
	return ORN_OK;
}

static void print_summary(const verify *v, bool json, bool with_model, uint64_t position,
                          uint64_t stream_last)
{
	if (json) {
		printf("{\"summary\":\"verify-stock\",\"items\":%zu,\"differences\":%zu,\"position\":%llu,"
		       "\"position_is\":\"%s\",\"stream_last\":%llu,\"not_compared\":%zu}\n",
		       v->compared, v->diff_count, (unsigned long long)position,
		       with_model ? "read_model_checkpoint" : "stream_last", (unsigned long long)stream_last,
		       v->not_compared);
		return;
	}
	printf("verify-stock: compared at stream sequence %llu (%s); the stream ends at %llu\n",
	       (unsigned long long)position, with_model ? "the read model's checkpoint" : "no read model",
	       (unsigned long long)stream_last);
	if (v->not_compared > 0)
		printf("verify-stock: %zu items changed in the read model while it was read: compared with "
		       "live orders only\n",
		       v->not_compared);
	printf("verify-stock: %zu items, %zu differences\n", v->compared, v->diff_count);
}

/* ---- the command -------------------------------------------------------- */

static void verify_dispose(verify *v)
{
	size_t cursor = 0;
	const char *id;
	void *value;
	while (v->items != NULL && hmap_next(v->items, &cursor, &id, &value)) {
		vs_item *it = value;
		if (it->folded)
			stock_kind.dispose(&it->state);
		free(it);
	}
	cursor = 0;
	while (v->orders != NULL && hmap_next(v->orders, &cursor, &id, &value)) {
		vs_order *o = value;
		free(o->state);
		free(o);
	}
	hmap_destroy(v->items);
	hmap_destroy(v->orders);
	free(v->diffs);
}

/* Opens the model at <data dir>/lmdb; it must exist (never created here). */
static orn_rc open_model(const cli_config *cfg, proj_env **env, proj_inventory **inv)
{
	char path[ORN_CONFIG_STR_MAX + 16];
	struct stat st;
	snprintf(path, sizeof path, "%s/lmdb", cfg->data_dir);
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr,
		        "orion verify-stock: no read model at %s (run the projector role first, or pass "
		        "--no-read-model)\n",
		        path);
		return ORN_ENOTFOUND;
	}
	proj_env_options o;
	proj_env_options_init(&o);
	o.path = path;
	orn_rc rc = proj_env_open(&o, env);
	if (rc == ORN_OK)
		rc = proj_inventory_create(*env, inv);
	if (rc != ORN_OK)
		log_error("cannot open the inventory read model", "path", path, "error", orn_strerror(rc));
	return rc;
}

int cli_verify_stock(int argc, char **argv, const cli_config *cfg)
{
	bool json = false, with_model = true;
	for (int i = 0; i < argc; i++) {
		if (cli_is_help(argv[i])) {
			printf("usage: orion verify-stock [--json] [--no-read-model]\n\n"
			       "Re-derives every stock item's on hand and reserved from the events and\n"
			       "compares them with the inventory read model (at its checkpoint) and with\n"
			       "what live orders hold; one line per difference, then a summary. Exit 0 no\n"
			       "difference, 1 differences, 2 errors. Run it on a shop at rest.\n"
			       "  --json           the differences as JSON lines\n"
			       "  --no-read-model  compare the events with the live orders only\n"
			       "  -h, --help       this text\n");
			return 0;
		}
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--no-read-model") == 0) {
			with_model = false;
		} else {
			fprintf(stderr, "orion verify-stock: unknown option '%s'\n", argv[i]);
			fprintf(stderr, "usage: orion verify-stock [--json] [--no-read-model]\n");
			return 2;
		}
	}
	verify v = {hmap_create(), hmap_create(), NULL, 0, 0, 0, 0, with_model};
	proj_env *env = NULL;
	proj_inventory *inv = NULL;
	natsd *server = NULL;
	es_store *store = NULL;
	mp_writer *w = mp_writer_create();
	uint64_t position = 0, stream_last = 0, last_read = 0;
	int status = 2;
	orn_rc rc = ORN_ENOMEM;
	if (v.items == NULL || v.orders == NULL || w == NULL)
		goto done;
	if (with_model && (rc = open_model(cfg, &env, &inv)) != ORN_OK)
		goto done;
	if ((rc = cli_connect_store(cfg, "orion-verify-stock", false, &server, &store)) != ORN_OK) {
		log_error("cannot open the event store", "error", orn_strerror(rc));
		goto done;
	}
	/* The model first: its checkpoint fixes the sequence everything is folded to. */
	if (with_model && (rc = read_model(&v, env, inv, &position)) != ORN_OK) {
		log_error("cannot read the inventory read model", "error", orn_strerror(rc));
		goto done;
	}
	if ((rc = cli_stream_last_seq(store, &stream_last)) != ORN_OK) {
		log_error("cannot read the event stream's state", "error", orn_strerror(rc));
		goto done;
	}
	if (!with_model)
		position = stream_last;
	if (position > stream_last) {
		fprintf(stderr,
		        "orion verify-stock: the read model's checkpoint %llu is past the stream's last "
		        "sequence "
		        "%llu: it was built from another stream\n",
		        (unsigned long long)position, (unsigned long long)stream_last);
		rc = ORN_EINVAL;
		goto done;
	}
	if (position > 0 &&
	    (rc = es_read(store, "orion.evt.>", 1, position, fold_event, &v, &last_read)) != ORN_OK) {
		log_error("cannot read the event stream", "error", orn_strerror(rc));
		goto done;
	}
	if (last_read != position) { /* every message of the stream matches orion.evt.> */
		char read_text[24], want_text[24];
		snprintf(read_text, sizeof read_text, "%llu", (unsigned long long)last_read);
		snprintf(want_text, sizeof want_text, "%llu", (unsigned long long)position);
		log_error("the stream read stopped short", "last_read", read_text, "position", want_text);
		rc = ORN_EIO;
		goto done;
	}
	if ((rc = compare(&v)) != ORN_OK)
		goto done;
	for (size_t i = 0; i < v.diff_count && rc == ORN_OK; i++)
		rc = print_diff(&v.diffs[i], json, w);
	if (rc != ORN_OK)
		goto done;
	print_summary(&v, json, with_model, position, stream_last);
	status = v.diff_count > 0 ? 1 : 0;
done:
	fflush(stdout);
	if (status == 2 && rc != ORN_OK && rc != ORN_ENOTFOUND && rc != ORN_EINVAL)
		fprintf(stderr, "orion verify-stock: %s\n", orn_strerror(rc));
	mp_writer_destroy(w);
	verify_dispose(&v);
	es_store_close(store);
	natsd_stop(server);
	proj_inventory_destroy(inv);
	proj_env_close(env);
	return status;
}
