/* verify_log.c — `orion verify-log`: walks every aggregate's commit chain
 * (ADR 015, addendum "verify-log") and reports
 *   void commits        a commit whose recorded version (Orion-Prev) is not
 *                       the sequence of the previous valid commit of its
 *                       subject: its sequence, subject, the version it
 *                       recorded, the valid version it should have named, and
 *                       what it would have done (its events, as replay prints
 *                       them);
 *   impossible states   what no decision of an aggregate's decider can
 *                       produce, found by folding the valid commits with the
 *                       actors' own evolve functions (the kind tables of
 *                       actors/<kind>.h; mail with mail_log_evolve): reserved above
 *                       on hand, an order both paid and cancelled, two charges
 *                       of one order, and the other rules of `rules` below.
 *
 * One es_scan of orion.evt.> from 1 to a bound fixed when it starts (the
 * stream's last sequence, or --to), in stream order, so every subject's chain
 * is folded from its first commit and the valid version a void commit should
 * have named is known. Findings are printed as they are met (a line each, or
 * JSON lines with --json), then one summary line. Exit 0 without impossible
 * states, 1 with any (or, with --strict, any void commit), 2 on errors,
 * including a read that fails or stops short.
 *
 * Memory: an aggregate's state is kept between its commits as its kind's
 * snapshot (the compact form the actor runtime writes), restored for each of
 * its commits; stock items, whose histories are long and whose snapshots
 * carry their closed reservation ids, stay live, as in verify-stock. An order
 * or email that reached a final status keeps only that status: no valid event
 * may follow it, and one that does is reported. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cart.h"
#include "common.h"
#include "evstore.h"
#include "hashmap.h"
#include "log.h"
#include "mail_log.h"
#include "order.h"
#include "payment.h"
#include "product.h"
#include "progress.h"
#include "sku.h"
#include "stock.h"
#include "user.h"

#define VL_FILTER    "orion.evt.>"
#define VL_PREFIX    "orion.evt."
#define DETAIL_MAX   320
#define PROGRESS_GAP 4096 /* commits between two progress updates */

typedef struct vl_rules vl_rules;

/* One aggregate as the walk has folded it so far. */
typedef struct vl_aggregate {
	const vl_rules *rules; /* NULL: a kind verify-log does not fold (its chain is still walked) */
	uint64_t last_valid;   /* sequence of its last valid commit, 0 if none */
	void *state;           /* live kinds: the folded state (NULL before its first valid commit) */
	uint8_t *snapshot;     /* other kinds: the folded state as the kind's snapshot */
	size_t snapshot_len;
	const char *settled; /* a final status reached (state freed); NULL otherwise */
	uint64_t settled_seq;
	bool broken; /* a level rule is broken now: reported once until it holds again */
} vl_aggregate;

/* The walk: counters, output, and where the current commit stands. */
typedef struct vl_walk {
	hmap *aggregates; /* subject -> vl_aggregate */
	bool json;
	mp_writer *line;
	uint64_t commits, voids, impossible;
	const char *subject; /* the commit or aggregate being checked */
	uint64_t seq;
	void *scratch; /* a payment state or a cart event: before/after comparisons, decoding */
	cli_progress progress;
	uint64_t bound;
} vl_walk;

/* What verify-log knows of one aggregate kind. */
struct vl_rules {
	const char *aggregate;
	const act_kind *kind; /* its actor kind; NULL: mail (mail_log_evolve) */
	size_t state_size;
	bool live;                 /* kept live between commits, not as a snapshot */
	void (*init)(void *state); /* without a kind: sets an empty state that owns nothing */
	/* Checks event e against state, reports what no decision of the kind's
	 * decider emits from it, and folds e. ORN_ENOMEM only: an event that
	 * cannot be folded is itself a finding. */
	orn_rc (*fold)(vl_walk *w, void *state, const env_envelope *e);
	/* After a valid commit: true while a level rule is broken (reported when
	 * it breaks). NULL: no level rule. */
	bool (*levels)(vl_walk *w, const void *state, bool report);
	/* The final status of state, NULL if none. NULL: the kind has none. */
	const char *(*final_status)(const void *state);
	/* The rule an event of a valid commit after final status breaks. */
	const char *(*after_final)(const char *status, const char *type);
	/* At the end of the walk: state rules (charges). NULL: none. */
	void (*at_end)(vl_walk *w, const void *state);
};

/* ---- findings ------------------------------------------------------------ */

/* The aggregate and id of a subject orion.evt.<aggregate>.<id> (out params,
 * "" when the subject has another shape). */
static void split_subject(const char *subject, char *aggregate, size_t aggregate_cap, const char **id)
{
	const char *rest =
	        strncmp(subject, VL_PREFIX, strlen(VL_PREFIX)) == 0 ? subject + strlen(VL_PREFIX) : "";
	const char *dot = strchr(rest, '.');
	size_t len = dot != NULL ? (size_t)(dot - rest) : 0;
	snprintf(aggregate, aggregate_cap, "%.*s", (int)(len < aggregate_cap ? len : aggregate_cap - 1),
	         rest);
	*id = dot != NULL ? dot + 1 : "";
}

static void json_text(mp_writer *w, const char *key, const char *value)
{
	mp_write_raw(w, ",", 1);
	mp_json_string(w, key, strlen(key));
	mp_write_raw(w, ":", 1);
	mp_json_string(w, value, strlen(value));
}

static void json_number(mp_writer *w, const char *key, uint64_t value)
{
	char text[64];
	snprintf(text, sizeof text, ",\"%s\":%llu", key, (unsigned long long)value);
	mp_write_raw(w, text, strlen(text));
}

/* Starts a JSON finding line: {"finding":what,"seq","subject","aggregate","id". */
static void json_begin(vl_walk *w, const char *what)
{
	char aggregate[ES_SUBJECT_MAX];
	const char *id;
	split_subject(w->subject, aggregate, sizeof aggregate, &id);
	mp_writer_reset(w->line);
	mp_write_raw(w->line, "{\"finding\":", 11);
	mp_json_string(w->line, what, strlen(what));
	json_number(w->line, "seq", w->seq);
	json_text(w->line, "subject", w->subject);
	json_text(w->line, "aggregate", aggregate);
	json_text(w->line, "id", id);
}

static orn_rc line_out(vl_walk *w)
{
	orn_rc rc = mp_writer_status(w->line);
	if (rc == ORN_OK)
		fwrite(mp_writer_data(w->line), 1, mp_writer_size(w->line), stdout);
	return rc;
}

/* Reports an impossible state at the commit or aggregate being checked. */
__attribute__((format(printf, 3, 4))) static void impossible(vl_walk *w, const char *rule, const char *format,
                                                             ...)
{
	char detail[DETAIL_MAX];
	va_list ap;
	va_start(ap, format);
	vsnprintf(detail, sizeof detail, format, ap);
	va_end(ap);
	w->impossible++;
	if (!w->json) {
		printf("impossible seq %llu %s %s: %s\n", (unsigned long long)w->seq, w->subject, rule,
		       detail);
		return;
	}
	json_begin(w, "impossible");
	json_text(w->line, "rule", rule);
	json_text(w->line, "detail", detail);
	mp_write_raw(w->line, "}\n", 2);
	if (line_out(w) != ORN_OK)
		printf("impossible seq %llu %s %s\n", (unsigned long long)w->seq, w->subject, rule);
}

/* Reports void commit c, which should have named valid_version. */
static orn_rc report_void(vl_walk *w, const es_commit *c, uint64_t valid_version)
{
	mp_writer *out = w->line;
	w->voids++;
	if (w->json) {
		json_begin(w, "void");
		json_number(out, "prev", c->prev);
		json_number(out, "valid_version", valid_version);
		mp_write_raw(out, ",\"events\":[", 11);
	} else {
		mp_writer_reset(out);
		char head[ES_SUBJECT_MAX + 160];
		snprintf(head, sizeof head,
		         "void seq %llu %s: decided on version %llu, the valid version was %llu; it would "
		         "have "
		         "done:",
		         (unsigned long long)c->seq, c->subject, (unsigned long long)c->prev,
		         (unsigned long long)valid_version);
		mp_write_raw(out, head, strlen(head));
	}
	for (size_t i = 0; i < c->count; i++) {
		const env_envelope *e = &c->events[i];
		mp_reader r;
		mp_reader_init(&r, e->payload, e->payload_len);
		if (w->json) {
			mp_write_raw(out, i == 0 ? "{\"type\":" : ",{\"type\":", i == 0 ? 8 : 9);
			mp_json_string(out, e->type, strlen(e->type));
			mp_write_raw(out, ",\"data\":", 8);
		} else {
			mp_write_raw(out, i == 0 ? " " : "; ", i == 0 ? 1 : 2);
			mp_write_raw(out, e->type, strlen(e->type));
			mp_write_raw(out, " ", 1);
		}
		if (mp_to_json(&r, out) != ORN_OK)
			return ORN_EDECODE;
		if (w->json)
			mp_write_raw(out, "}", 1);
	}
	mp_write_raw(out, w->json ? "]}\n" : "\n", w->json ? 3 : 1);
	return line_out(w);
}

/* ---- folding with the actors' own functions ----------------------------- */

/* Folds e with the kind's evolve (the actor's own fold); an event the actor
 * cannot fold is reported. *folded (may be NULL) tells whether it was. */
static orn_rc evolve(vl_walk *w, const act_kind *kind, void *state, const env_envelope *e, bool *folded)
{
	orn_rc rc = kind->evolve(state, e);
	if (folded != NULL)
		*folded = rc == ORN_OK;
	if (rc == ORN_ENOMEM)
		return rc;
	if (rc != ORN_OK)
		impossible(w, "unreadable", "%s: the %s actor cannot fold it (%s)", e->type, kind->aggregate,
		           orn_strerror(rc));
	return ORN_OK;
}

/* stock: decide emits StockItemCreated only for an item that does not exist
 * and nothing else before it; StockReserved only for an id it does not hold;
 * StockReleased and StockCommitted only for an id it holds (so a release
 * after the commit of the same order's units is impossible). */
static orn_rc fold_stock(vl_walk *w, void *state, const env_envelope *e)
{
	stock_state *s = state;
	stock_event ev;
	if (stock_event_decode(e->type, e->payload, e->payload_len, &ev) == ORN_OK) {
		int64_t held = s->exists && ev.kind != STOCK_CREATED ? stock_held(s, ev.reservation_id) : 0;
		if (ev.kind == STOCK_CREATED && s->exists)
			impossible(w, "no_decision", "%s of an item that exists", e->type);
		else if (ev.kind != STOCK_CREATED && !s->exists)
			impossible(w, "no_decision", "%s of an item never created", e->type);
		else if (ev.kind == STOCK_RESERVED && held != 0)
			impossible(w, "no_decision",
			           "%s of reservation %s, which the item holds already (%lld units)", e->type,
			           ev.reservation_id, (long long)held);
		else if ((ev.kind == STOCK_RELEASED || ev.kind == STOCK_COMMITTED) && held == 0)
			impossible(
			        w, "no_decision",
			        "%s of reservation %s, which the item does not hold (released, committed or "
			        "never reserved)",
			        e->type, ev.reservation_id);
	}
	return evolve(w, &stock_kind, state, e, NULL);
}

/* stock levels: no decision takes on hand below 0 or reserves above it. */
static bool stock_levels(vl_walk *w, const void *state, bool report)
{
	const stock_state *s = state;
	bool below = s->on_hand<0, above = s->reserved> s->on_hand;
	if (report && below)
		impossible(w, "on_hand_below_zero", "on hand %lld", (long long)s->on_hand);
	if (report && above)
		impossible(w, "reserved_above_on_hand", "reserved %lld > on hand %lld: %lld units oversold",
		           (long long)s->reserved, (long long)s->on_hand,
		           (long long)(s->reserved - s->on_hand));
	return below || above;
}

/* order: every event decide emits is a transition from the status it was
 * decided on; order_evolve appends one history entry per transition and
 * changes nothing for an event that is none. A paid order may be cancelled
 * (ADR 028 §3), but only by an OrderCancelled that says it was paid: any
 * other cancellation of a paid order is a race of legacy commits. */
static orn_rc fold_order(vl_walk *w, void *state, const env_envelope *e)
{
	order_state *s = state;
	size_t before = s->history_count;
	order_status was = s->status;
	const char *status = order_status_name(s->status);
	bool folded = false;
	orn_rc rc = evolve(w, &order_kind, state, e, &folded);
	if (folded && s->history_count == before && order_status_is_paid(was) &&
	    strcmp(e->type, ORDER_EV_CANCELLED) == 0)
		impossible(w, "paid_and_cancelled",
		           "%s after the order was %s, not as a cancellation after payment", e->type, status);
	else if (folded && s->history_count == before)
		impossible(w, "no_transition", "%s is no transition from %s", e->type, status);
	return rc;
}

static const char *order_final(const void *state)
{
	const order_state *s = state;
	return order_status_is_final(s->status) ? order_status_name(s->status) : NULL;
}

static const char *order_after_final(const char *status, const char *type)
{
	order_status final = ORDER_NONE;
	(void)order_status_parse(status, &final); /* order_final's name */
	bool paid_then_cancelled = order_status_is_paid(final) && strcmp(type, ORDER_EV_CANCELLED) == 0;
	bool cancelled_then_paid = final == ORDER_CANCELLED && strcmp(type, ORDER_EV_PAID) == 0;
	return paid_then_cancelled || cancelled_then_paid ? "paid_and_cancelled" : "no_transition";
}

/* payment: payment_evolve changes nothing for an event decide could not
 * have emitted from the state (payment.h). */
static orn_rc fold_payment(vl_walk *w, void *state, const env_envelope *e)
{
	bool folded = false;
	memcpy(w->scratch, state, sizeof(payment_state));
	orn_rc rc = evolve(w, &payment_kind, state, e, &folded);
	if (folded && memcmp(w->scratch, state, sizeof(payment_state)) == 0)
		impossible(w, "no_decision", "%s changes nothing in status %s: no decision emits it", e->type,
		           payment_status_name(((const payment_state *)w->scratch)->status));
	return rc;
}

/* payment, at the end: a second charge is recorded only to be refunded. */
static void payment_at_end(vl_walk *w, const void *state)
{
	const payment_state *s = state;
	size_t live = 0;
	for (size_t i = 0; i < s->charge_count; i++)
		live += s->charges[i].refund != PAYMENT_REFUND_STATUS_REFUNDED;
	if (live >= 2)
		impossible(w, "charged_twice",
		           "%zu succeeded charges of one order are not refunded (first %s)", live,
		           s->charges[0].intent_id[0] != '\0' ? s->charges[0].intent_id
		                                              : s->charges[0].charge_id);
}

/* sku: a claim by one product while another holds the sku is rejected
 * (sku_taken); a claim by the holder and a release by anyone else emit
 * nothing. */
static orn_rc fold_sku(vl_walk *w, void *state, const env_envelope *e)
{
	const sku_state *s = state;
	sku_event ev;
	if (sku_event_decode(e->type, e->payload, e->payload_len, &ev) == ORN_OK) {
		bool holder = s->claimed && strcmp(s->owner, ev.product_id) == 0;
		if (ev.kind == SKU_CLAIMED && s->claimed && !holder)
			impossible(w, "sku_claimed_twice", "%s by product %s while product %s holds the sku",
			           e->type, ev.product_id, s->owner);
		else if (ev.kind == SKU_CLAIMED && holder)
			impossible(w, "no_decision", "%s by product %s, which holds it already", e->type,
			           ev.product_id);
		else if (ev.kind == SKU_RELEASED && !holder)
			impossible(w, "no_decision", "%s by product %s, which does not hold the sku", e->type,
			           ev.product_id);
	}
	return evolve(w, &sku_kind, state, e, NULL);
}

/* user: registration appends to a new subject only; roles change on an
 * account that exists. */
static orn_rc fold_user(vl_walk *w, void *state, const env_envelope *e)
{
	const user_state *s = state;
	user_event ev;
	if (user_event_decode(e->type, e->payload, e->payload_len, &ev) == ORN_OK) {
		if (ev.kind == USER_REGISTERED && s->exists)
			impossible(w, "email_registered_twice",
			           "%s of account %s on the email key of account %s", e->type,
			           ev.fields.user_id, s->fields.user_id);
		else if (ev.kind != USER_REGISTERED && !s->exists)
			impossible(w, "no_decision", "%s of an account never registered", e->type);
	}
	return evolve(w, &user_kind, state, e, NULL);
}

/* product: created once; updated and deleted while it exists and is not deleted. */
static orn_rc fold_product(vl_walk *w, void *state, const env_envelope *e)
{
	const product_state *s = state;
	product_event ev;
	if (product_event_decode(e->type, e->payload, e->payload_len, &ev) == ORN_OK) {
		if (ev.kind == PRODUCT_CREATED && s->exists)
			impossible(w, "no_decision", "%s of a product that exists", e->type);
		else if (ev.kind != PRODUCT_CREATED && (!s->exists || s->deleted))
			impossible(w, "no_decision", "%s of a product %s", e->type,
			           s->exists ? "deleted" : "never created");
	}
	return evolve(w, &product_kind, state, e, NULL);
}

/* cart: ItemAdded records the line's quantity after adding to what the cart
 * held (in the cart's currency, at most 50 lines); a change or removal names
 * a line of the cart; a checkout takes at most what a line holds, once per
 * order the cart remembers. */
static void check_cart_event(vl_walk *w, const cart_state *s, const char *type, const cart_event *ev)
{
	const cart_line *line =
	        ev->kind == CART_CHECKED_OUT_EVENT ? NULL : cart_find_line(s, ev->line.product_id);
	int64_t had = line != NULL ? line->quantity : 0;
	bool remembered = ev->kind == CART_CHECKED_OUT_EVENT && strcmp(s->last_order_id, ev->order_id) == 0;
	for (size_t i = 0; ev->kind == CART_CHECKED_OUT_EVENT && i < s->earlier_count; i++)
		remembered |= strcmp(s->earlier_orders[i], ev->order_id) == 0;
	switch (ev->kind) {
	case CART_ITEM_ADDED:
		if (ev->added > 0 && ev->line.quantity != had + ev->added)
			impossible(w, "no_decision",
			           "%s of %lld units of %s onto %lld recorded %lld: decided on another state",
			           type, (long long)ev->added, ev->line.product_id, (long long)had,
			           (long long)ev->line.quantity);
		else if (line == NULL && s->line_count >= CART_LINES_MAX)
			impossible(w, "no_decision", "%s of line %zu", type, s->line_count + 1);
		else if (s->line_count > 0 && strcmp(s->currency, ev->currency) != 0)
			impossible(w, "no_decision", "%s in %s to a cart in %s", type, ev->currency,
			           s->currency);
		break;
	case CART_QUANTITY_CHANGED:
	case CART_ITEM_REMOVED:
		if (line == NULL)
			impossible(w, "no_decision", "%s of %s, which the cart does not hold", type,
			           ev->line.product_id);
		break;
	case CART_CLEARED:
		if (s->line_count == 0)
			impossible(w, "no_decision", "%s of an empty cart", type);
		break;
	case CART_CHECKED_OUT_EVENT:
		if (remembered)
			impossible(w, "no_decision", "%s of order %s, checked out already", type,
			           ev->order_id);
		for (size_t i = 0; i < ev->checkout_count; i++) {
			const cart_line *taken = cart_find_line(s, ev->checkout[i].product_id);
			if (taken == NULL || ev->checkout[i].quantity > taken->quantity)
				impossible(w, "no_decision", "%s of order %s takes %lld of %s from %lld",
				           type, ev->order_id, (long long)ev->checkout[i].quantity,
				           ev->checkout[i].product_id,
				           (long long)(taken ? taken->quantity : 0));
		}
		break;
	}
}

static orn_rc fold_cart(vl_walk *w, void *state, const env_envelope *e)
{
	cart_event *ev = w->scratch; /* a few KB: not on the stack */
	if (cart_event_decode(e->type, e->payload, e->payload_len, ev) == ORN_OK)
		check_cart_event(w, state, e->type, ev);
	return evolve(w, &cart_kind, state, e, NULL);
}

/* mail: every attempt is numbered attempts + 1; a settled log takes nothing. */
static void mail_init(void *state)
{
	mail_log_state_init(state);
}

static orn_rc fold_mail(vl_walk *w, void *state, const env_envelope *e)
{
	mail_log_state *s = state;
	mail_log_event ev;
	orn_rc rc = mail_log_event_decode(e->type, e->payload, e->payload_len, &ev);
	if (rc != ORN_OK) {
		impossible(w, "unreadable", "%s: the mail role cannot fold it (%s)", e->type,
		           orn_strerror(rc));
		return ORN_OK;
	}
	if (ev.kind != MAIL_LOG_FAILED && ev.attempt != s->attempts + 1)
		impossible(w, "no_decision", "%s of attempt %u after %u attempts", e->type,
		           (unsigned)ev.attempt, (unsigned)s->attempts);
	mail_log_evolve(s, &ev);
	return ORN_OK;
}

static const char *mail_final(const void *state)
{
	const mail_log_state *s = state;
	return s->status != MAIL_LOG_STATUS_PENDING ? mail_log_status_name(s->status) : NULL;
}

static const char *mail_after_final(const char *status, const char *type)
{
	return strcmp(status, "delivered") == 0 && strcmp(type, MAIL_LOG_EV_DELIVERED) == 0
	               ? "delivered_twice"
	               : "no_decision";
}

#define KIND_RULES(kind_, fold_)                                                                             \
	.aggregate = #kind_, .kind = &kind_##_kind, .state_size = sizeof(kind_##_state), .fold = fold_

static const vl_rules rules[] = {
        {KIND_RULES(stock, fold_stock), .live = true, .levels = stock_levels},
        {KIND_RULES(order, fold_order), .final_status = order_final, .after_final = order_after_final},
        {KIND_RULES(payment, fold_payment), .at_end = payment_at_end},
        {KIND_RULES(sku, fold_sku)},
        {KIND_RULES(user, fold_user)},
        {KIND_RULES(product, fold_product)},
        {KIND_RULES(cart, fold_cart)},
        {.aggregate = MAIL_LOG_AGGREGATE,
         .state_size = sizeof(mail_log_state),
         .live = true,
         .init = mail_init,
         .fold = fold_mail,
         .final_status = mail_final,
         .after_final = mail_after_final},
};

static const vl_rules *rules_of(const char *subject)
{
	char aggregate[ES_SUBJECT_MAX];
	const char *id;
	split_subject(subject, aggregate, sizeof aggregate, &id);
	for (size_t i = 0; i < ORN_ARRAY_LEN(rules); i++)
		if (strcmp(rules[i].aggregate, aggregate) == 0)
			return &rules[i];
	return NULL;
}

/* ---- the states between commits ---------------------------------------- */

static void state_dispose(const vl_rules *r, void *state)
{
	if (state != NULL && r->kind != NULL && r->kind->dispose != NULL)
		r->kind->dispose(state);
	free(state);
}

/* The state of a for its next commit (*out): live, or restored from its
 * snapshot into a new state that state_put gives back. */
static orn_rc state_take(vl_aggregate *a, void **out)
{
	const vl_rules *r = a->rules;
	void *state = a->state;
	orn_rc rc = ORN_OK;
	*out = NULL;
	if (state == NULL) {
		if ((state = calloc(1, r->state_size)) == NULL)
			return ORN_ENOMEM;
		if (r->kind != NULL)
			r->kind->init(state);
		else
			r->init(state);
	}
	if (!r->live && a->snapshot != NULL &&
	    (rc = r->kind->restore(state, a->snapshot, a->snapshot_len)) != ORN_OK) {
		state_dispose(r, state);
		return rc == ORN_ENOMEM ? rc : ORN_EINTERNAL; /* its own snapshot: never expected */
	}
	if (r->live)
		a->state = state;
	*out = state;
	return ORN_OK;
}

/* Keeps state for a's next commit: live, or as its snapshot (state freed). */
static orn_rc state_put(vl_aggregate *a, void *state, mp_writer *w)
{
	const vl_rules *r = a->rules;
	if (r->live)
		return ORN_OK;
	mp_writer_reset(w);
	orn_rc rc = r->kind->snapshot(state, w);
	if (rc == ORN_OK)
		rc = mp_writer_status(w);
	uint8_t *copy = rc == ORN_OK ? malloc(mp_writer_size(w)) : NULL;
	if (rc == ORN_OK && copy == NULL)
		rc = ORN_ENOMEM;
	if (rc == ORN_OK) {
		memcpy(copy, mp_writer_data(w), mp_writer_size(w));
		free(a->snapshot);
		a->snapshot = copy;
		a->snapshot_len = mp_writer_size(w);
	}
	state_dispose(r, state);
	return rc;
}

/* a reached a final status: only that is kept. */
static void settle(vl_aggregate *a, const char *status, uint64_t seq)
{
	state_dispose(a->rules, a->state);
	a->state = NULL;
	free(a->snapshot);
	a->snapshot = NULL;
	a->settled = status;
	a->settled_seq = seq;
}

static vl_aggregate *aggregate_of(vl_walk *w, const char *subject)
{
	vl_aggregate *a = hmap_get(w->aggregates, subject);
	if (a != NULL)
		return a;
	if ((a = calloc(1, sizeof *a)) == NULL)
		return NULL;
	a->rules = rules_of(subject);
	if (hmap_put(w->aggregates, subject, a) != ORN_OK) {
		free(a);
		return NULL;
	}
	return a;
}

/* ---- the walk ----------------------------------------------------------- */

/* Folds one valid commit of a into its state and checks it. */
static orn_rc fold_commit(vl_walk *w, vl_aggregate *a, const es_commit *c)
{
	const vl_rules *r = a->rules;
	void *state = NULL;
	if (a->settled != NULL) {
		char aggregate[ES_SUBJECT_MAX];
		const char *id;
		split_subject(c->subject, aggregate, sizeof aggregate, &id);
		for (size_t i = 0; i < c->count; i++)
			impossible(w, r->after_final(a->settled, c->events[i].type),
			           "%s after the %s was %s at seq %llu", c->events[i].type, aggregate,
			           a->settled, (unsigned long long)a->settled_seq);
		return ORN_OK;
	}
	orn_rc rc = state_take(a, &state);
	for (size_t i = 0; rc == ORN_OK && i < c->count; i++)
		rc = r->fold(w, state, &c->events[i]);
	if (rc != ORN_OK) {
		if (!r->live)
			state_dispose(r, state);
		return rc;
	}
	if (r->levels != NULL)
		a->broken = r->levels(w, state, !a->broken);
	const char *final = r->final_status != NULL ? r->final_status(state) : NULL;
	if (!r->live)
		rc = state_put(a, state, w->line);
	if (rc == ORN_OK && final != NULL)
		settle(a, final, c->seq);
	return rc;
}

static orn_rc on_commit(void *closure, const es_commit *c)
{
	vl_walk *w = closure;
	vl_aggregate *a = aggregate_of(w, c->subject);
	if (a == NULL)
		return ORN_ENOMEM;
	w->commits++;
	w->subject = c->subject;
	w->seq = c->seq;
	if (w->commits % PROGRESS_GAP == 0)
		cli_progress_show(&w->progress, c->seq, w->bound, false);
	if (!c->valid)
		return report_void(w, c, a->last_valid);
	a->last_valid = c->seq;
	return a->rules != NULL ? fold_commit(w, a, c) : ORN_OK;
}

typedef struct vl_entry {
	const char *subject;
	vl_aggregate *a;
} vl_entry;

static int entry_cmp(const void *x, const void *y)
{
	const vl_entry *a = x, *b = y;
	return a->a->last_valid < b->a->last_valid ? -1 : a->a->last_valid > b->a->last_valid;
}

/* The rules that look at the states the walk ends with, in stream order of
 * the aggregates' last commits. */
static orn_rc check_ends(vl_walk *w)
{
	size_t cursor = 0, count = 0;
	const char *subject;
	void *value;
	vl_entry *list = malloc((hmap_count(w->aggregates) + 1) * sizeof *list);
	orn_rc rc = ORN_OK;
	if (list == NULL)
		return ORN_ENOMEM;
	while (hmap_next(w->aggregates, &cursor, &subject, &value)) {
		vl_aggregate *a = value;
		if (a->rules != NULL && a->rules->at_end != NULL && a->settled == NULL && a->last_valid > 0)
			list[count++] = (vl_entry){subject, a};
	}
	qsort(list, count, sizeof *list, entry_cmp);
	for (size_t i = 0; i < count && rc == ORN_OK; i++) {
		void *state = NULL;
		if ((rc = state_take(list[i].a, &state)) != ORN_OK)
			break;
		w->subject = list[i].subject;
		w->seq = list[i].a->last_valid;
		list[i].a->rules->at_end(w, state);
		if (!list[i].a->rules->live)
			state_dispose(list[i].a->rules, state);
	}
	free(list);
	return rc;
}

static void walk_dispose(vl_walk *w)
{
	size_t cursor = 0;
	const char *subject;
	void *value;
	while (w->aggregates != NULL && hmap_next(w->aggregates, &cursor, &subject, &value)) {
		vl_aggregate *a = value;
		if (a->rules != NULL)
			state_dispose(a->rules, a->state);
		free(a->snapshot);
		free(a);
	}
	hmap_destroy(w->aggregates);
	mp_writer_destroy(w->line);
	free(w->scratch);
}

static void print_summary(const vl_walk *w)
{
	if (w->json) {
		printf("{\"summary\":\"verify-log\",\"commits\":%llu,\"void\":%llu,\"impossible\":%llu,"
		       "\"bound\":%llu}\n",
		       (unsigned long long)w->commits, (unsigned long long)w->voids,
		       (unsigned long long)w->impossible, (unsigned long long)w->bound);
		return;
	}
	printf("verify-log: read stream sequences 1 to %llu\n", (unsigned long long)w->bound);
	printf("verify-log: %llu commits, %llu void, %llu impossible states\n",
	       (unsigned long long)w->commits, (unsigned long long)w->voids,
	       (unsigned long long)w->impossible);
}

static int usage(FILE *out, const char *message)
{
	if (message != NULL)
		fprintf(stderr, "orion verify-log: %s\n", message);
	fprintf(out,
	        "usage: orion verify-log [--json] [--strict] [--to SEQ] [--quiet]\n"
	        "  walks every aggregate's commit chain from stream sequence 1 to the stream's end\n"
	        "  when it starts (or SEQ) and reports every void commit and every impossible state\n"
	        "  (docs/adr/015-commit-chain.md, \"verify-log\"), one line each\n"
	        "  --json    JSON lines instead of text\n"
	        "  --strict  void commits count as findings too\n"
	        "  --to SEQ  stop at stream sequence SEQ\n"
	        "  --quiet   no progress on stderr\n"
	        "  -h, --help  this text\n"
	        "  exit 0: no impossible state (and, with --strict, no void commit); 1: some; 2: errors\n");
	return message != NULL ? 2 : 0;
}

static bool parse_seq(const char *text, uint64_t *out)
{
	char *end = NULL;
	unsigned long long n = strtoull(text, &end, 10);
	if (end == text || *end != '\0' || text[0] == '-' || n == 0)
		return false;
	*out = n;
	return true;
}

int cli_verify_log(int argc, char **argv, const cli_config *cfg)
{
	bool strict = false, quiet = false;
	uint64_t to = 0, last = 0;
	vl_walk w = {.json = false};
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			w.json = true;
		else if (strcmp(argv[i], "--strict") == 0)
			strict = true;
		else if (strcmp(argv[i], "--quiet") == 0)
			quiet = true;
		else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
			if (!parse_seq(argv[++i], &to))
				return usage(stderr, "--to needs a sequence number (>= 1)");
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return usage(stdout, NULL);
		else
			return usage(stderr, "unknown option or missing value");
	}
	natsd *server = NULL;
	es_store *store = NULL;
	int status = 2;
	w.aggregates = hmap_create();
	w.line = mp_writer_create();
	w.scratch = malloc(sizeof(payment_state) > sizeof(cart_event) ? sizeof(payment_state)
	                                                              : sizeof(cart_event));
	orn_rc rc = ORN_ENOMEM;
	if (w.aggregates == NULL || w.line == NULL || w.scratch == NULL)
		goto done;
	if ((rc = cli_connect_store(cfg, "orion-verify-log", false, &server, &store)) != ORN_OK) {
		log_error("cannot open the event store", "error", orn_strerror(rc));
		goto done;
	}
	if ((rc = cli_stream_last_seq(store, &w.bound)) != ORN_OK) {
		log_error("cannot read the event stream's state", "error", orn_strerror(rc));
		goto done;
	}
	if (to != 0 && to < w.bound)
		w.bound = to;
	cli_progress_init(&w.progress, "verify-log", quiet, 0);
	if (w.bound > 0 && (rc = es_scan(store, VL_FILTER, 1, w.bound, on_commit, &w, &last)) != ORN_OK) {
		log_error("cannot read the event stream", "error", orn_strerror(rc));
		goto done;
	}
	if (last != w.bound) { /* every message of the stream is a commit on orion.evt.> */
		char read_text[24], bound_text[24];
		snprintf(read_text, sizeof read_text, "%llu", (unsigned long long)last);
		snprintf(bound_text, sizeof bound_text, "%llu", (unsigned long long)w.bound);
		log_error("the stream read stopped short", "last_read", read_text, "bound", bound_text);
		rc = ORN_EIO;
		goto done;
	}
	cli_progress_show(&w.progress, last, w.bound, true);
	if ((rc = check_ends(&w)) != ORN_OK)
		goto done;
	print_summary(&w);
	status = w.impossible > 0 || (strict && w.voids > 0) ? 1 : 0;
done:
	fflush(stdout);
	if (status == 2)
		fprintf(stderr, "orion verify-log: %s\n", orn_strerror(rc));
	walk_dispose(&w);
	es_store_close(store);
	natsd_stop(server);
	return status;
}
