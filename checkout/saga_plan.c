/* saga_plan.c — the checkout saga's decisions: which commands an order event
 * calls for, what follows their answers, and the expiry of a deadline. Pure: no
 * I/O, no clock, no globals but const tables (see saga_plan.h). */
#include "saga_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cart.h"
#include "holds.h"
#include "stock.h"

/* CheckedOut carries every line of an order. */
_Static_assert(ORDER_LINES_MAX <= CART_LINES_MAX, "an order's lines fit a checkout");
_Static_assert(ORDER_ID_MAX == CART_ID_MAX, "product ids of orders and carts have one size");

static const struct {
	const char *aggregate;
	const char *type;
	const char *step; /* the command id's step token */
} command_names[] = {
        [SAGA_RESERVE_STOCK] = {STOCK_AGGREGATE, STOCK_CMD_RESERVE, "reserve"},
        [SAGA_RELEASE_STOCK] = {STOCK_AGGREGATE, STOCK_CMD_RELEASE, "release"},
        [SAGA_COMMIT_STOCK] = {STOCK_AGGREGATE, STOCK_CMD_COMMIT, "commit"},
        [SAGA_MARK_RESERVED] = {ORDER_AGGREGATE, ORDER_CMD_MARK_RESERVED, "reserved"},
        [SAGA_REJECT_FOR_STOCK] = {ORDER_AGGREGATE, ORDER_CMD_REJECT_FOR_STOCK, "reject"},
        [SAGA_CHECKED_OUT] = {CART_AGGREGATE, CART_CMD_CHECKED_OUT, "checkout"},
        [SAGA_EXPIRE] = {ORDER_AGGREGATE, ORDER_CMD_CANCEL, "expire"},
        [SAGA_CLOSE_HOLDS] = {HOLDS_AGGREGATE, HOLDS_CMD_CLOSE, "close"},
        [SAGA_RETURN_STOCK] = {STOCK_AGGREGATE, STOCK_CMD_RETURN, "return"},
};

static bool kind_known(saga_command_kind kind)
{
	return (size_t)kind < ORN_ARRAY_LEN(command_names);
}

const char *saga_command_aggregate(saga_command_kind kind)
{
	return kind_known(kind) ? command_names[kind].aggregate : NULL;
}

const char *saga_command_type(saga_command_kind kind)
{
	return kind_known(kind) ? command_names[kind].type : NULL;
}

/* ---- building plans ---- */

/* Empties p for order_id; false if the id is not valid. */
static bool plan_reset(saga_plan *p, const char *order_id)
{
	memset(p, 0, sizeof *p);
	if (!orn_id_valid(order_id))
		return false;
	strcpy(p->order_id, order_id);
	return true;
}

/* Appends a command of kind to target; its id is "<order>:<step>" followed by
 * ":<suffix>" when suffix is not NULL. False if an id does not fit. */
static bool plan_add(saga_plan *p, saga_command_kind kind, const char *target, const char *suffix)
{
	char id[SAGA_COMMAND_ID_MAX];
	saga_command *c;
	int n;

	if (p->count >= SAGA_COMMANDS_MAX || strlen(target) >= sizeof c->target)
		return false;
	if (suffix != NULL)
		n = snprintf(id, sizeof id, "%s:%s:%s", p->order_id, command_names[kind].step, suffix);
	else
		n = snprintf(id, sizeof id, "%s:%s", p->order_id, command_names[kind].step);
	if (n < 0 || (size_t)n >= sizeof id)
		return false;
	c = &p->commands[p->count];
	memset(c, 0, sizeof *c);
	c->kind = kind;
	strcpy(c->target, target);
	strcpy(c->command_id, id);
	p->results[p->count++] = SAGA_RESULT_NONE;
	return true;
}

/* One command of kind per line of the order, to the line's stock item. */
static bool plan_add_per_line(saga_plan *p, saga_command_kind kind, const order_state *order)
{
	for (size_t i = 0; i < order->line_count; i++) {
		if (!plan_add(p, kind, order->lines[i].product_id, order->lines[i].product_id))
			return false;
		p->commands[p->count - 1].quantity = order->lines[i].quantity;
	}
	return true;
}

/* CheckedOut{order, its lines} to the customer's cart: the cart takes out
 * only what the order took. */
static bool plan_add_checkout(saga_plan *p, const order_state *order)
{
	if (!plan_add(p, SAGA_CHECKED_OUT, order->customer_id, NULL))
		return false;
	for (size_t i = 0; i < order->line_count; i++) {
		strcpy(p->checkout[i].product_id, order->lines[i].product_id);
		p->checkout[i].quantity = order->lines[i].quantity;
	}
	p->checkout_count = order->line_count;
	p->placed_from = order->cart_version;
	return true;
}

orn_rc saga_plan_for_event(saga_plan *p, const char *order_id, order_event_kind kind,
                           const order_state *order)
{
	bool ok = plan_reset(p, order_id);

	if (!ok)
		goto fail;
	switch (kind) {
	case ORDER_PLACED:
		/* Past pending, MarkReserved or an exit was decided already; after
		 * an exit, a reserve still in flight when it released may hold. */
		if (order->status == ORDER_PENDING) {
			ok = plan_add_per_line(p, SAGA_RESERVE_STOCK, order);
			p->stage = SAGA_STAGE_RESERVE;
		} else if (order_status_releases_stock(order->status)) {
			ok = plan_add_per_line(p, SAGA_RELEASE_STOCK, order);
		}
		break;
	case ORDER_RESERVED:
		ok = order->customer_id[0] == '\0' || plan_add_checkout(p, order);
		break;
	case ORDER_CONFIRMED_BY_CUSTOMER:
	case ORDER_SHIPPED_EVENT:
	case ORDER_DELIVERED_EVENT:
		break;
	case ORDER_CANCELLED_EVENT:
		/* cancelled is the last status: the state says how it was cancelled */
		ok = plan_add_per_line(
		        p, order->cancelled_after_payment ? SAGA_RETURN_STOCK : SAGA_RELEASE_STOCK, order);
		break;
	case ORDER_PAYMENT_FAILED_EVENT:
		ok = plan_add_per_line(p, SAGA_RELEASE_STOCK, order);
		break;
	case ORDER_PAID:
		ok = plan_add_per_line(p, SAGA_COMMIT_STOCK, order);
		break;
	}
	/* An order whose checkout is done no longer counts against its
	 * customer's limits: paid (and anything after), cancelled (by the
	 * customer, an admin, for stock, or expired) or failed. Closing an order
	 * closed already, or never opened, is a no-op. */
	if (ok && order_status_checkout_done(order->status) && order->customer_id[0] != '\0')
		ok = plan_add(p, SAGA_CLOSE_HOLDS, order->customer_id, NULL);
	if (!ok)
		goto fail;
	return ORN_OK;
fail:
	memset(p, 0, sizeof *p);
	return ORN_EINVAL;
}

bool saga_plan_checkout_swept(const order_state *order)
{
	if (order->customer_id[0] == '\0')
		return false;
	for (size_t i = 0; i < order->history_count; i++)
		if (order->history[i].status == ORDER_AWAITING_CONFIRMATION)
			return true;
	return false;
}

orn_rc saga_plan_expire(saga_plan *p, const char *order_id, int64_t deadline_ms)
{
	char suffix[24];

	snprintf(suffix, sizeof suffix, "%lld", (long long)deadline_ms);
	if (!plan_reset(p, order_id) || !plan_add(p, SAGA_EXPIRE, order_id, suffix)) {
		memset(p, 0, sizeof *p);
		return ORN_EINVAL;
	}
	p->commands[0].deadline_ms = deadline_ms;
	return ORN_OK;
}

/* ---- answers ---- */

/* True if code is the order decider's rejection code for v. */
static bool order_code_is(const char *code, order_verdict v)
{
	return code != NULL && strcmp(code, order_verdict_code(v)) == 0;
}

saga_reply saga_reply_classify(saga_command_kind kind, bus_outcome outcome, const char *code)
{
	if (outcome == BUS_ACCEPTED)
		return SAGA_REPLY_DONE;
	if (outcome != BUS_REJECTED)
		return SAGA_REPLY_RETRY;
	if (kind == SAGA_RESERVE_STOCK || kind == SAGA_MARK_RESERVED)
		return SAGA_REPLY_REFUSED;
	if (kind == SAGA_EXPIRE && !order_code_is(code, ORDER_REJ_WRONG_STATE) &&
	    !order_code_is(code, ORDER_REJ_NOT_FOUND))
		return SAGA_REPLY_RETRY; /* early for the order's clock: it falls due later */
	if (kind == SAGA_RETURN_STOCK && code != NULL &&
	    strcmp(code, stock_verdict_code(STOCK_REJ_NOT_COMMITTED)) == 0)
		return SAGA_REPLY_RETRY; /* the commit comes first */
	return SAGA_REPLY_DONE;          /* the other rejections are handled alike; the shell logs the code */
}

bool saga_reply_sold_unheld(saga_command_kind kind, bus_outcome outcome, const char *code)
{
	return kind == SAGA_COMMIT_STOCK && outcome == BUS_REJECTED && code != NULL &&
	       (strcmp(code, stock_verdict_code(STOCK_REJ_CLOSED)) == 0 ||
	        strcmp(code, stock_verdict_code(STOCK_REJ_UNKNOWN_RESERVATION)) == 0);
}

void saga_plan_record(saga_plan *p, size_t i, saga_reply reply)
{
	if (i >= p->count || reply == SAGA_REPLY_RETRY)
		return;
	p->results[i] = reply == SAGA_REPLY_REFUSED ? SAGA_RESULT_REFUSED : SAGA_RESULT_DONE;
}

bool saga_plan_needs_reload(const saga_plan *done)
{
	return (done->stage == SAGA_STAGE_MARK && done->count == 1 &&
	        done->results[0] == SAGA_RESULT_REFUSED) ||
	       done->stage == SAGA_STAGE_REJECT;
}

/* After the reserves: MarkReserved if every line is held, else reject the
 * order naming the refused products; the releases wait for the order to be
 * cancelled (stage REJECT). Releasing first would be wrong when two
 * executors run the step at once (a redelivery and the sweeper): one's
 * refused reserve could release the other's accepted one just before that
 * one marks the order reserved, and the order would go on holding nothing. */
static bool next_after_reserves(const saga_plan *done, const order_state *order, saga_plan *next)
{
	bool all_held = true;

	plan_reset(next, done->order_id);
	for (size_t i = 0; i < done->count; i++) {
		if (done->results[i] != SAGA_RESULT_REFUSED)
			continue;
		all_held = false;
		strcpy(next->refused[next->refused_count++], done->commands[i].target);
	}
	if (all_held) {
		next->stage = SAGA_STAGE_MARK;
		return plan_add(next, SAGA_MARK_RESERVED, done->order_id, NULL);
	}
	next->stage = SAGA_STAGE_REJECT;
	return plan_add(next, SAGA_REJECT_FOR_STOCK, done->order_id, NULL);
}

bool saga_plan_next(const saga_plan *done, const order_state *order, saga_plan *next)
{
	switch (done->stage) {
	case SAGA_STAGE_RESERVE:
		return next_after_reserves(done, order, next);
	case SAGA_STAGE_MARK:
	case SAGA_STAGE_REJECT:
		/* A refused MarkReserved: the order left pending without us. A
		 * RejectForStock, ours or refused: the order is cancelled, or
		 * another executor marked it reserved. If it was cancelled, what
		 * the reserves hold must go back; if not, it keeps what it holds. */
		if (!saga_plan_needs_reload(done) || !order_status_releases_stock(order->status))
			return false;
		plan_reset(next, done->order_id);
		return plan_add_per_line(next, SAGA_RELEASE_STOCK, order);
	case SAGA_STAGE_DONE:
		break;
	}
	return false;
}

/* ---- payloads ---- */

static orn_rc encode_stock(const saga_plan *p, const saga_command *c, mp_writer *w)
{
	stock_command sc;

	memset(&sc, 0, sizeof sc);
	sc.kind = c->kind == SAGA_RESERVE_STOCK   ? STOCK_RESERVE
	          : c->kind == SAGA_RELEASE_STOCK ? STOCK_RELEASE
	          : c->kind == SAGA_RETURN_STOCK  ? STOCK_RETURN
	                                          : STOCK_COMMIT;
	strcpy(sc.reservation_id, p->order_id);
	sc.quantity = c->quantity;
	return stock_command_encode(w, &sc);
}

static orn_rc encode_order(const saga_plan *p, const saga_command *c, int64_t now_ms, mp_writer *w)
{
	order_command *oc = calloc(1, sizeof *oc);
	orn_rc rc;

	if (oc == NULL)
		return ORN_ENOMEM;
	oc->data.time_ms = now_ms;
	if (c->kind == SAGA_MARK_RESERVED) {
		oc->kind = ORDER_MARK_RESERVED;
	} else if (c->kind == SAGA_REJECT_FOR_STOCK) {
		oc->kind = ORDER_REJECT_FOR_STOCK;
		memcpy(oc->data.product_ids, p->refused, sizeof oc->data.product_ids);
		oc->data.product_count = p->refused_count;
	} else {
		oc->kind = ORDER_CANCEL;
		strcpy(oc->data.reason, ORDER_REASON_EXPIRED);
	}
	rc = order_command_encode(w, oc);
	free(oc);
	return rc;
}

static orn_rc encode_cart(const saga_plan *p, mp_writer *w)
{
	cart_command cc;

	memset(&cc, 0, sizeof cc);
	cc.kind = CART_CHECKED_OUT;
	strcpy(cc.order_id, p->order_id);
	for (size_t i = 0; i < p->checkout_count; i++) {
		strcpy(cc.checkout[i].product_id, p->checkout[i].product_id);
		cc.checkout[i].quantity = p->checkout[i].quantity;
	}
	cc.checkout_count = p->checkout_count;
	cc.placed_from = p->placed_from;
	return cart_command_encode(w, &cc);
}

static orn_rc encode_close(const saga_plan *p, mp_writer *w)
{
	holds_command *hc = calloc(1, sizeof *hc);
	orn_rc rc;

	if (hc == NULL)
		return ORN_ENOMEM;
	hc->kind = HOLDS_CLOSE;
	strcpy(hc->order_id, p->order_id);
	rc = holds_command_encode(w, hc);
	free(hc);
	return rc;
}

orn_rc saga_command_encode(const saga_plan *p, size_t i, int64_t now_ms, mp_writer *w)
{
	const saga_command *c;

	if (i >= p->count)
		return ORN_EINVAL;
	c = &p->commands[i];
	switch (c->kind) {
	case SAGA_RESERVE_STOCK:
	case SAGA_RELEASE_STOCK:
	case SAGA_COMMIT_STOCK:
	case SAGA_RETURN_STOCK:
		return encode_stock(p, c, w);
	case SAGA_MARK_RESERVED:
	case SAGA_REJECT_FOR_STOCK:
	case SAGA_EXPIRE:
		return encode_order(p, c, now_ms, w);
	case SAGA_CHECKED_OUT:
		return encode_cart(p, w);
	case SAGA_CLOSE_HOLDS:
		return encode_close(p, w);
	}
	return ORN_EINVAL;
}
