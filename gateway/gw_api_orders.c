/* gw_api_orders.c — the orders routes: place (POST /orders), list, read,
 * confirm (JSON, or the HTML page and its form), cancel, the live status
 * stream (GET /orders/{id}/events, Server-Sent Events), and the admin's
 * cancel, ship and deliver (POST /admin/orders/{id}/..., ADR 028 §3).
 *
 * Ownership. Every route but confirm needs a login and answers 404 for an
 * order that is not the caller's, exactly as for an order that does not
 * exist: nothing reveals another customer's order. Confirm needs no login:
 * the token of the confirmation email is the credential (actors/order_token.h)
 * and only its hash travels in the command.
 *
 * Placing is thin (docs/adr/025): the gateway asks the cart's quote
 * (projections/proj_quote.h: the lines with the catalog's current names and
 * prices, deleted products dropped, one read) and sends PlaceOrder with the
 * ttl; the order decider names the order after the cart's version
 * (order_id_for: one version of a cart places one order however often it is
 * submitted, ADR 015) and sets its deadline. The body is {} or nothing, so
 * the request hash of every placement is order_request_hash("{}"). An order
 * placed already is answered by the decider ("exists", or a keyed repeat):
 * 200 with that order when the request hash matches, 422 when it does not;
 * so is a cart submitted again after its checkout emptied it, unchanged
 * since (read from the model). A body the strict check refuses is 422 when
 * this cart's version placed an order (the same cart or key, another
 * request), else 400. The answer to a new placement is the order as placed
 * (202, status pending): read from the model up to the placement's history
 * entry, or built from the command when the model is late.
 *
 * Confirming needs no login, so every confirmation request (JSON, form and
 * the page) first takes an attempt from the client address's "confirm"
 * bucket (api->login_by_address): 429 with Retry-After past it, before any
 * command is sent.
 *
 * Streams. Each GET .../events holds one gw_stream, one order buffer and one
 * 200 ms timer on the loop that reads the order's version (the record's
 * head, no replay) and re-reads the whole order only when that changed; it
 * sends the history entries it has not sent (event id = the stream sequence
 * of the entry's event, so Last-Event-ID resumes), a keep-alive comment every
 * 15 s, and once the checkout is done (order_status_checkout_done: paid, or
 * ended unpaid) a large "retry:" and the end of the stream. A client that
 * reconnects anyway with a Last-Event-ID at or past that entry gets 204 No
 * Content, which tells an EventSource to stop reconnecting.
 * The stream's closed callback (client gone, server destroyed) frees the
 * timer and the buffer; gw_http caps how many streams are open. */
#include "gw_api_orders.h"

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include "gw_api-internal.h"
#include "gw_problem.h"
#include "gw_sse.h"
#include "gw_views.h"
#include "holds.h"
#include "log.h"
#include "user.h"

#define LIST_DEFAULT_LIMIT 20
#define STREAM_TICK_MS     200
#define FINAL_RETRY_MS     3600000   /* the reconnection delay a finished stream asks for */
#define CONFIRM_SCOPE      "confirm" /* the rate limiter's bucket of the confirmation routes */

static const gw_field empty_schema[] = {{.name = NULL}};

static const gw_field confirm_schema[] = {
        {.name = "token", .type = GW_STRING, .required = true, .min = 1, .max = 256},
        {.name = NULL},
};

/* ---- small helpers ------------------------------------------------------- */

static json_t *time_json(int64_t ms)
{
	return gw_view_time_json(ms, false);
}

/* 43 characters of base64url: the shape of every confirmation token. */
static bool token_shape_valid(const char *token)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	return token != NULL && strlen(token) == ORDER_TOKEN_LEN &&
	       strspn(token, alphabet) == ORDER_TOKEN_LEN;
}

/* The {id} path parameter if it is an id; else answers 400 and NULL. */
static const char *path_id(gw_request *r)
{
	return gw_api_path_id(r, "id");
}

static bool available(gw_request *r, const gw_api *api)
{
	if (api->orders != NULL && api->carts != NULL && api->catalog != NULL && api->users != NULL)
		return true;
	gw_respond_error(r, 503, "orders are unavailable");
	return false;
}

static json_t *read_problem(orn_rc rc)
{
	if (rc == ORN_ENOTFOUND)
		return gw_problem_new(404, "no such order");
	if (rc == ORN_ENOMEM)
		return gw_problem_new(500, NULL);
	return gw_problem_new(503, "orders are unavailable");
}

/* Writes the order view of the first history_count entries of s into the
 * text buffer; NULL when it cannot (no buffer, no entry: answer 500). */
static const mp_writer *order_view(gw_api *api, const char *id, const order_state *s, size_t history_count)
{
	mp_writer *w = gw_api_text_buffer(api);
	return w != NULL && gw_api_write_order(api, w, id, s, history_count) ? w : NULL;
}

/* Answers the order (every history entry) with status: now (r) or through a. */
static void answer_order(gw_api *api, gw_request *r, gw_async *a, int status, const char *id,
                         const order_state *s, size_t history_count)
{
	const mp_writer *w = order_view(api, id, s, history_count);
	if (w != NULL && r != NULL)
		gw_api_respond_written(r, status, w);
	else if (w != NULL)
		gw_api_complete_written(a, status, w);
	else if (r != NULL)
		gw_respond_error(r, 500, NULL);
	else
		gw_async_complete_problem(a, gw_problem_new(500, NULL));
}

/* ---- commands: one chain per request, owned by its callbacks ---------------- */

typedef enum op_kind { OP_PLACE, OP_CONFIRM, OP_CANCEL, OP_SHIP, OP_DELIVER } op_kind;

typedef struct order_op {
	gw_api *api;
	gw_async *async;
	op_kind kind;
	bool html;   /* confirm posted by the HTML form: answer a page */
	bool exists; /* place: refused "exists", answer the existing order */
	bool held;   /* place: the customer's holds opened the order (ADR 026) */
	char customer[ORDER_ID_MAX];
	char order_id[ORDER_ID_MAX];
	uint64_t seq;
	gw_api_keyed keyed;       /* the command's id and the keyed request's fingerprint ("" if none) */
	char actor[ORDER_ID_MAX]; /* the user acting, "" for none */
	order_command command;
} order_op;

static order_op *op_new(gw_api *api, op_kind kind, const char *customer, const char *order_id)
{
	order_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return NULL;
	op->api = api;
	op->kind = kind;
	snprintf(op->customer, sizeof op->customer, "%s", customer ? customer : "");
	snprintf(op->order_id, sizeof op->order_id, "%s", order_id);
	return op;
}

/* The page of the confirmation flow: with order_id and token, the form that
 * posts the token to the order's confirm route. */
static char *page_html(const char *title, const char *message, const char *order_id, const char *token)
{
	char action[ORDER_ID_MAX + 32] = "";
	if (order_id != NULL && token != NULL)
		snprintf(action, sizeof action, "/api/v1/orders/%s/confirm", order_id);
	return gw_api_page_html(title, message, action[0] != '\0' ? action : NULL, "Confirm my order", token);
}

static void respond_page(gw_request *r, int status, const char *title, const char *message,
                         const char *order_id, const char *token)
{
	char *html = page_html(title, message, order_id, token);
	if (html == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	gw_respond_html(r, status, html, strlen(html));
	free(html);
}

/* The 429 page of the confirmation flow (Retry-After is set already). */
static void respond_limited_page(gw_request *r)
{
	respond_page(r, 429, "Too many attempts",
	             "Too many confirmation attempts came from your address; please try again in a minute.",
	             NULL, NULL);
}

/* Finishes op with a problem, or with the page that says it for a form post. */
static void op_fail(order_op *op, int status, const char *detail)
{
	if (op->html) {
		const char *message = status == 403   ? "This link is not valid for this order."
		                      : status == 404 ? "There is no such order."
		                      : status == 409
		                              ? "This order cannot be confirmed now: it was confirmed or "
		                                "cancelled already, its link has expired, or its items are "
		                                "still being reserved (try again in a moment)."
		                              : "The order could not be confirmed; please try again later.";
		gw_api_complete_page(op->async, status,
		                     status == 409 ? "Not confirmed" : "Confirmation refused", message);
	} else {
		gw_async_complete_problem(op->async, gw_problem_new(status, detail));
	}
	free(op);
}

/* ---- the customer's holds (docs/adr/026) ------------------------------------ */

_Static_assert(ORDER_LINES_MAX <= HOLDS_LINES_MAX, "an order's lines fit a hold");
_Static_assert(ORDER_ID_MAX == HOLDS_ID_MAX, "ids of orders and holds have one size");

static void on_hold_closed(void *closure, orn_rc rc, bus_reply *reply)
{
	(void)closure;
	if (rc != ORN_OK || reply->outcome != BUS_ACCEPTED)
		log_warn("a placement's hold was not closed (it ends at its deadline)", "error",
		         rc != ORN_OK ? orn_strerror(rc) : reply->code);
}

/* Sends CloseOrder of op's order to the customer's holds without waiting:
 * its placement placed nothing, or it repeated an order that is final. Best
 * effort: a hold left open stops counting at its until_ms. */
static void close_hold(order_op *op)
{
	char command_id[40];
	holds_command *c = calloc(1, sizeof *c);
	mp_writer *w = gw_api_text_buffer(op->api);
	orn_rc rc = c != NULL && w != NULL ? ORN_OK : ORN_ENOMEM;
	if (rc == ORN_OK) {
		c->kind = HOLDS_CLOSE;
		memcpy(c->order_id, op->order_id, sizeof c->order_id);
		rc = holds_command_encode(w, c);
	}
	free(c);
	gw_api_new_id(command_id, sizeof command_id);
	if (rc == ORN_OK)
		rc = gw_api_send(op->api, HOLDS_AGGREGATE, op->customer, HOLDS_CMD_CLOSE, w, command_id,
		                 op->customer, on_hold_closed, NULL);
	if (rc != ORN_OK)
		log_warn("cannot send a placement's CloseOrder (it ends at its deadline)", "order",
		         op->order_id, "error", orn_strerror(rc));
}

/* The order as placed: the command's data as the decider would fold it. */
static void placed_state(const order_command *c, order_state *s)
{
	order_state_init(s);
	s->status = ORDER_PENDING;
	memcpy(s->lines, c->data.lines, sizeof s->lines);
	s->line_count = c->data.line_count;
	snprintf(s->currency, sizeof s->currency, "%s", c->data.currency);
	s->history[0] = (order_history_entry){.status = ORDER_PENDING, .at_ms = c->data.time_ms};
	s->history_count = 1;
}

/* The entries of order shown in the answer to op: a new placement shows the
 * order as placed (status pending: the entries up to the placement's
 * sequence); 0 when the model does not have them yet. */
static size_t shown_entries(const order_op *op, const proj_order *order)
{
	size_t shown = 0;
	if (op->kind != OP_PLACE || op->exists)
		return order->state.history_count;
	while (shown < order->state.history_count && order->history_seq[shown] <= op->seq)
		shown++;
	return shown;
}

/* Answers a settled op from the read model. */
static void op_answer(void *closure, orn_rc wait_rc)
{
	order_op *op = closure;
	proj_order *order = malloc(sizeof *order);
	int status = op->kind == OP_PLACE && !op->exists ? 202 : 200; /* placed before: the first order */
	if (wait_rc != ORN_OK)
		log_warn("read models late after an order command", "order", op->order_id, "wait",
		         orn_strerror(wait_rc));
	orn_rc rc = order != NULL ? proj_orders_get(op->api->orders, op->order_id, order) : ORN_ENOMEM;
	if (op->held && op->exists && rc == ORN_OK && order_status_checkout_done(order->state.status))
		close_hold(op); /* a repeat of a final order opened it again */
	if (op->html && op->kind == OP_CONFIRM) {
		gw_api_complete_page(op->async, 200, "Order confirmed",
		                     "Thank you: your order is confirmed and now awaits payment.");
		free(op);
	} else if (op->kind == OP_PLACE && op->exists && rc != ORN_OK) {
		op_fail(op, 503, "the order is being placed; retry with the same Idempotency-Key");
	} else if (op->kind == OP_PLACE && op->exists &&
	           (strcmp(order->state.customer_id, op->customer) != 0 ||
	            strcmp(order->state.request_hash, op->command.data.request_hash) != 0)) {
		/* the key's (or this cart version's) order, placed by another request */
		op_fail(op, 422, "this Idempotency-Key was used for another request");
	} else if (rc == ORN_OK && shown_entries(op, order) > 0) {
		answer_order(op->api, NULL, op->async, status, op->order_id, &order->state,
		             shown_entries(op, order));
		free(op);
	} else if (op->kind == OP_PLACE && order != NULL) {
		/* the model is late: the order as the command placed it */
		placed_state(&op->command, &order->state);
		answer_order(op->api, NULL, op->async, status, op->order_id, &order->state, 1);
		free(op);
	} else {
		op_fail(op, rc == ORN_ENOTFOUND ? 503 : 500,
		        "the order is late in the read model; read it again");
	}
	free(order);
}

static void op_wait(order_op *op, uint64_t seq)
{
	gw_api_wait_for(op->api, seq, op_answer, op);
}

/* The status and text for a rejection of the order decider. */
static int rejection_status(const order_op *op, const char *code, const char **detail)
{
	if (strcmp(code, "not_found") == 0) {
		*detail = "no such order";
		return 404;
	}
	if (strcmp(code, "bad_token") == 0) {
		*detail = "the confirmation token is not valid for this order";
		return 403;
	}
	if (strcmp(code, "expired") == 0) {
		*detail = "the confirmation link has expired; the order will be cancelled";
		return 409;
	}
	if (strcmp(code, "wrong_state") == 0) {
		*detail = op->kind == OP_CONFIRM
		                  ? "the order is not awaiting confirmation (already confirmed or "
		                    "cancelled, or its stock is still being reserved)"
		          : op->kind == OP_SHIP
		                  ? "the order cannot be shipped: it is not paid, or it shipped with "
		                    "another carrier or tracking number"
		          : op->kind == OP_DELIVER
		                  ? "the order has not shipped"
		                  : "the order can no longer be cancelled (it has shipped, or "
		                    "it ended)";
		return 409;
	}
	if (strcmp(code, "invalid") == 0) {
		*detail = "the order request is invalid";
		return op->kind == OP_PLACE ? 422 : 400;
	}
	*detail = NULL;
	return gw_api_rejection_status(code);
}

/* Whether a command of op (of aggregate) was served: decided, accepted or
 * refused. False after failing op with 503 (a timeout, NATS down, a failure). */
static bool op_served(order_op *op, const char *aggregate, orn_rc rc, const bus_reply *reply)
{
	if (rc == ORN_OK && reply->outcome != BUS_FAILED)
		return true;
	log_warn("command not served", "aggregate", aggregate, "order", op->order_id, "error",
	         rc != ORN_OK ? orn_strerror(rc) : reply->code);
	op_fail(op, 503, "a service did not answer; try again");
	return false;
}

static void on_order_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	order_op *op = closure;
	if (!op_served(op, ORDER_AGGREGATE, rc, reply))
		return;
	if (reply->outcome == BUS_REJECTED) {
		if (op->kind == OP_PLACE && strcmp(reply->code, "exists") == 0) {
			op->exists = true;
			op_wait(op, reply->version > reply->seq ? reply->version : reply->seq);
			return;
		}
		/* refused: nothing was placed, unless the key names another request */
		if (op->held && strcmp(reply->code, "idempotency_key_reused") != 0)
			close_hold(op);
		const char *detail;
		int status = rejection_status(op, reply->code, &detail);
		op_fail(op, status, detail);
		return;
	}
	op->seq = reply->seq;
	op->exists = op->kind == OP_PLACE && reply->duplicate; /* a keyed repeat: placed before */
	op_wait(op, reply->seq);
}

/* Records the command's id, the keyed request's fingerprint (request, ""
 * when not keyed) and the user acting (actor, may be NULL) in op. */
static void op_key(order_op *op, const char *command_id, const char *request, const char *actor)
{
	snprintf(op->keyed.command_id, sizeof op->keyed.command_id, "%s", command_id);
	snprintf(op->keyed.request, sizeof op->keyed.request, "%s", request);
	snprintf(op->actor, sizeof op->actor, "%s", actor != NULL ? actor : "");
}

/* Sends op->command, written in w, to the order as op_key said; fails op
 * when it cannot be sent. */
static void op_send_written(order_op *op, const mp_writer *w)
{
	orn_rc rc = gw_api_send_keyed(op->api, ORDER_AGGREGATE, op->order_id,
	                              order_command_type(op->command.kind), w, &op->keyed,
	                              op->actor[0] != '\0' ? op->actor : NULL, on_order_replied, op);
	if (rc == ORN_OK)
		return;
	if (op->held)
		close_hold(op);
	op_fail(op, 503, "a service did not answer; try again");
}

/* Defers r and sends op->command to the order, keyed when request (the
 * fingerprint of a keyed request) is not ""; frees op on every failure. */
static void op_start(gw_request *r, order_op *op, const char *command_id, const char *request,
                     const char *actor)
{
	mp_writer *w = gw_api_text_buffer(op->api);
	op_key(op, command_id, request, actor);
	op->async = gw_api_defer_encoded(r, w != NULL ? order_command_encode(w, &op->command) : ORN_ENOMEM);
	if (op->async == NULL) {
		free(op);
		return;
	}
	op_send_written(op, w);
}

/* ---- POST /orders ---------------------------------------------------------- */

/* A limit of the customer's holds refused the placement: 409 whose detail
 * names the limit and its value (the holds decider's text) and whose code is
 * the rejection's; another refusal (invalid) is 422. */
static void hold_refused(order_op *op, const bus_reply *reply)
{
	bool limit = strcmp(reply->code, holds_verdict_code(HOLDS_REJ_TOO_MANY_OPEN_ORDERS)) == 0 ||
	             strcmp(reply->code, holds_verdict_code(HOLDS_REJ_TOO_MANY_UNITS)) == 0;
	json_t *problem = gw_problem_new(limit ? 409 : 422, reply->detail[0] != '\0' ? reply->detail : NULL);
	if (problem != NULL && limit)
		json_object_set_new(problem, "code", json_string(reply->code));
	gw_async_complete_problem(op->async, problem);
	free(op);
}

/* The answer to OpenOrder: a limit reached is answered; accepted (or open
 * already: a repeat), PlaceOrder follows. */
static void on_hold_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	order_op *op = closure;
	if (!op_served(op, HOLDS_AGGREGATE, rc, reply))
		return;
	if (reply->outcome == BUS_REJECTED) {
		hold_refused(op, reply);
		return;
	}
	op->held = true;
	mp_writer *w = gw_api_text_buffer(op->api);
	if (w == NULL || order_command_encode(w, &op->command) != ORN_OK) {
		close_hold(op);
		op_fail(op, 500, NULL);
		return;
	}
	op_send_written(op, w);
}

/* Opens op's order (its request deferred) in the customer's holds: OpenOrder with its
 * lines and the limits, counting until the latest its order can hold stock
 * (the confirmation deadline, then as long again for the payment); PlaceOrder
 * follows (on_hold_replied). Frees op on every failure. */
static void hold_start(order_op *op)
{
	gw_api *api = op->api;
	const order_data *d = &op->command.data;
	char command_id[ORDER_ID_MAX + 8];
	holds_command *c = calloc(1, sizeof *c);
	mp_writer *w = gw_api_text_buffer(api);
	orn_rc rc = c != NULL && w != NULL ? ORN_OK : ORN_ENOMEM;
	if (rc == ORN_OK) {
		c->kind = HOLDS_OPEN;
		memcpy(c->order_id, op->order_id, sizeof c->order_id);
		for (size_t i = 0; i < d->line_count; i++) {
			memcpy(c->lines[i].product_id, d->lines[i].product_id, sizeof c->lines[i].product_id);
			c->lines[i].quantity = d->lines[i].quantity;
		}
		c->line_count = d->line_count;
		c->now_ms = d->time_ms;
		c->until_ms = d->time_ms + 2 * d->ttl_ms;
		c->max_open = api->order_limits.max_open_orders;
		c->max_units = api->order_limits.max_units_per_product;
		rc = holds_command_encode(w, c);
	}
	free(c);
	if (rc != ORN_OK) {
		op_fail(op, 500, NULL);
		return;
	}
	snprintf(command_id, sizeof command_id, "%s:hold", op->order_id);
	if (gw_api_send(api, HOLDS_AGGREGATE, op->customer, HOLDS_CMD_OPEN, w, command_id, op->customer,
	                on_hold_replied, op) != ORN_OK)
		op_fail(op, 503, "a service did not answer; try again");
}

/* A placement in the making: the request as the strict check saw it. */
typedef struct placement {
	const char *key;   /* the Idempotency-Key, or NULL */
	json_t *body;      /* the body as parsed, NULL when empty or refused */
	json_t *problem;   /* the strict check's answer to a body other than {}, or NULL */
	bool same_request; /* the body means {} (the only request POST /orders takes) */
} placement;

/* The strict check of the body ({} or nothing), without answering a body
 * that is one JSON object: that is another request than a placement, 422
 * if this cart placed an order already (Stripe-style: a key reused with
 * another body is told apart from a malformed request), else 400 (kept in
 * p->problem). False after answering a body that is not one JSON object. */
static bool check_body(gw_request *r, placement *p)
{
	size_t len;
	const unsigned char *raw = gw_request_body(r, &len);
	p->same_request = true;
	if (len == 0 || gw_request_validate(r, empty_schema, &p->body, &p->problem) == ORN_OK)
		return true;
	/* refused: the rare path parses once more to tell the two cases apart */
	json_t *parsed = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
	bool object = json_is_object(parsed);
	p->same_request = object && json_object_size(parsed) == 0; /* {} of another Content-Type */
	json_decref(parsed);
	if (object)
		return true;
	gw_respond_problem(r, p->problem);
	p->problem = NULL;
	return false;
}

/* Answers with the customer's order_id, which this cart placed: 200 with it
 * for the same request, 422 for another one; 503 when the model does not
 * have it (yet), 400 (p->problem) when there is none and the body was
 * refused. */
static void answer_placed(gw_request *r, gw_api *api, const order_op *op, const char *order_id, placement *p)
{
	proj_order *order = NULL;
	orn_rc rc = gw_api_read_own_order(api, order_id, op->customer, &order);
	if (rc == ORN_OK &&
	    (!p->same_request || strcmp(order->state.request_hash, op->command.data.request_hash) != 0))
		gw_respond_error(r, 422, "this cart was placed as an order with another request");
	else if (rc == ORN_OK)
		answer_order(api, r, NULL, 200, order_id, &order->state, ORDER_HISTORY_MAX);
	else if (rc == ORN_ENOTFOUND && p->problem != NULL)
		gw_respond_problem(r, p->problem);
	else
		gw_respond_problem(r, read_problem(rc == ORN_ENOTFOUND ? ORN_EUNAVAILABLE : rc));
	if (rc == ORN_ENOTFOUND)
		p->problem = NULL; /* answered */
	free(order);
}

/* Fills op->command (PlaceOrder) from the cart's quote and the caller's
 * account, the order named after the cart's version (order_id_for). False
 * after answering: the order a cart unchanged since its checkout placed
 * (200, or 422 for another request), a refused body (422 when the cart's
 * version placed an order, else 400), an empty cart (422), 503. */
static bool fill_placement(gw_request *r, order_op *op, const gw_caller *caller, placement *p)
{
	gw_api *api = op->api;
	order_data *d = &op->command.data;
	proj_quote *quote = malloc(sizeof *quote);
	char token[ORDER_TOKEN_MAX];
	bool ok = false;
	orn_rc rc = quote != NULL ? gw_api_quote(api, op->customer, quote) : ORN_ENOMEM;
	order_request_hash("{}", 2, d->request_hash); /* the canonical body of every placement */
	if (rc != ORN_OK) {
		gw_respond_error(r, rc == ORN_ENOMEM ? 500 : 503,
		                 rc == ORN_ENOMEM ? NULL : "the cart is unavailable");
		goto done;
	}
	if (quote->count == 0 && quote->checked_out_order[0] != '\0' && quote->dropped_count == 0) {
		answer_placed(r, api, op, quote->checked_out_order, p);
		goto done;
	}
	order_id_for(op->customer, NULL, quote->cart_version, op->order_id);
	if (p->problem != NULL) {
		answer_placed(r, api, op, op->order_id, p);
		goto done;
	}
	if (quote->count == 0) {
		gw_respond_error(r, 422,
		                 quote->dropped_count > 0
		                         ? "the cart is empty: its products are no longer sold"
		                         : "the cart is empty");
		goto done;
	}
	if (quote->total_cents == 0) { /* nothing to pay: the provider would refuse it (issue 14) */
		gw_respond_error(r, 422, "the order would total 0: nothing to pay");
		goto done;
	}
	if (order_token_make(api->order_token_key, op->order_id, token) != ORN_OK) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	op->command.kind = ORDER_PLACE;
	snprintf(d->customer_id, sizeof d->customer_id, "%s", op->customer);
	snprintf(d->customer_email, sizeof d->customer_email, "%s", caller->account.email);
	for (size_t i = 0; i < quote->count; i++) {
		order_line *l = &d->lines[i];
		memcpy(l->product_id, quote->lines[i].product_id, sizeof l->product_id);
		memcpy(l->name, quote->lines[i].name, sizeof l->name);
		l->unit_price_cents = quote->lines[i].unit_price_cents;
		l->quantity = quote->lines[i].quantity;
	}
	d->line_count = quote->count;
	memcpy(d->currency, quote->currency, sizeof d->currency);
	d->cart_version = (int64_t)quote->cart_version;
	order_token_hash(token, strlen(token), d->token_hash);
	sodium_memzero(token, sizeof token);
	d->time_ms = orn_now_ms();
	d->ttl_ms = api->reservation_ttl_ms; /* the decider sets the deadline from it */
	ok = true;
done:
	free(quote);
	return ok;
}

/* A placement whose customer email is being sealed for its event (ADR 027). */
typedef struct sealing {
	order_op *op; /* its command's id, request and actor set (op_key) */
	orn_rc rc;
} sealing;

/* The customer's email, sealed again for this order's event (the key may be
 * read over NATS: off the loop then). */
static void sealing_run(void *arg)
{
	sealing *s = arg;
	order_data *d = &s->op->command.data;
	s->rc = gw_api_reseal(s->op->api, d->customer_email, "customer_email", s->op->keyed.command_id,
	                      d->customer_email, sizeof d->customer_email);
}

/* On the loop: the placement goes to the customer's holds first (ADR 026)
 * when orders are limited, then to its order. */
static void sealing_done(void *arg, bool run)
{
	sealing *s = arg;
	order_op *op = s->op;
	mp_writer *w = gw_api_text_buffer(op->api);
	if (!run) {
		free(op);
	} else if (s->rc != ORN_OK) {
		log_error("the customer's email cannot be sealed", "error", orn_strerror(s->rc));
		op_fail(op, 503, "accounts are unavailable; try again");
	} else if (op->api->order_limited) {
		hold_start(op);
	} else if (w == NULL || order_command_encode(w, &op->command) != ORN_OK) {
		op_fail(op, 500, NULL);
	} else {
		op_send_written(op, w);
	}
	free(s);
}

void gw_orders_place(gw_request *r, gw_api *api, const gw_caller *caller)
{
	char command_id[ORDER_ID_MAX + 8];
	gw_api_keyed keyed = {0};
	placement p = {0};
	order_op *op = NULL;
	sealing *s = NULL;
	if (!available(r, api))
		return;
	/* ADR 031: an address nobody proved to receive mail at places no order
	 * (its confirmation email would go nowhere, or to a stranger) */
	if (!caller->account.verified && !api->unverified_may_order) {
		gw_respond_error(r, 403,
		                 "verify your email address first: follow the link in the email sent at "
		                 "registration (or reset your password to get a new one)");
		return;
	}
	if (!gw_api_limit_take(api->orders_by_customer, r, caller->claims.sub)) {
		gw_respond_error(r, 429, "too many orders placed: try again after Retry-After seconds");
		return;
	}
	if (!gw_api_idempotency_key(r, &p.key) || !check_body(r, &p))
		return;
	if ((op = op_new(api, OP_PLACE, caller->claims.sub, "")) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	if (!fill_placement(r, op, caller, &p))
		goto done;
	/* The id follows the cart's version; a key's repeat is answered by the
	 * order's ledger (the same request again: the first answer; another
	 * request: 422), another placement of the same cart by "exists". */
	if (p.key != NULL)
		gw_api_keyed_init(&keyed, r, "place", caller->claims.sub, p.key, p.body);
	snprintf(command_id, sizeof command_id, "%s:place", op->order_id);
	op_key(op, p.key != NULL ? keyed.command_id : command_id, p.key != NULL ? keyed.request : "",
	       caller->claims.sub);
	if ((s = calloc(1, sizeof *s)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	s->op = op;
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done; /* answered 500 */
	/* the customer's email, sealed for this order's event (ADR 027) */
	const char *tokens[] = {op->command.data.customer_email};
	order_op *placing = op;
	op = NULL;
	if (gw_api_keys_run(api, tokens, ORN_ARRAY_LEN(tokens), sealing_run, sealing_done, s) != ORN_OK) {
		op_fail(placing, 503, "accounts are unavailable; try again");
		goto done;
	}
	s = NULL; /* sealing_done owns it */
done:
	free(s);
	json_decref(p.problem);
	json_decref(p.body);
	free(op);
}

/* ---- GET /orders, GET /orders/{id} -------------------------------------------- */

json_t *gw_orders_summary_json(const proj_order_summary *s)
{
	return json_pack("{s:s, s:s, s:I, s:s, s:o, s:o, s:I}", "id", s->id, "status",
	                 order_status_name(s->status), "total_cents", (json_int_t)s->total_cents, "currency",
	                 s->currency, "created_at", time_json(s->created_at_ms), "updated_at",
	                 time_json(s->updated_at_ms), "item_count", (json_int_t)s->item_count);
}

/* limit (1..100, default 20) and cursor; false after answering 400. */
static bool list_query(gw_request *r, unsigned *limit, const char **cursor)
{
	json_t *problem = gw_problem_new(400, "invalid query parameters");
	int64_t value = LIST_DEFAULT_LIMIT;
	bool present;
	bool ok = gw_api_query_int(r, "limit", 1, PROJ_ORDERS_PAGE_MAX, &value, &present, problem) &&
	          gw_api_query_cursor(r, cursor, problem);
	*limit = (unsigned)value;
	if (ok) {
		json_decref(problem);
		return true;
	}
	gw_respond_problem(r, problem);
	return false;
}

void gw_orders_list(gw_request *r, gw_api *api, const gw_caller *caller)
{
	unsigned limit;
	const char *cursor;
	json_t *items = NULL;
	if (!available(r, api) || !list_query(r, &limit, &cursor))
		return;
	proj_orders_page *page = malloc(sizeof *page);
	orn_rc rc = page != NULL ? proj_orders_list(api->orders, caller->claims.sub, limit, cursor, page)
	                         : ORN_ENOMEM;
	if (rc == ORN_EINVAL) {
		json_t *problem = gw_problem_new(400, "invalid query parameters");
		gw_api_bad_cursor(problem);
		gw_respond_problem(r, problem);
		goto done;
	}
	if (rc != ORN_OK) {
		gw_respond_problem(r, read_problem(rc == ORN_ENOMEM ? rc : ORN_EUNAVAILABLE));
		goto done;
	}
	if ((items = json_array()) == NULL)
		goto fail;
	for (size_t i = 0; i < page->count; i++) {
		json_t *item = gw_orders_summary_json(&page->items[i]);
		if (item == NULL || json_array_append_new(items, item) != 0)
			goto fail;
	}
	gw_respond_json(r, 200,
	                json_pack("{s:o, s:o}", "items", items, "next_cursor",
	                          page->next_cursor[0] ? json_string(page->next_cursor) : json_null()));
	items = NULL;
	goto done;
fail:
	gw_respond_error(r, 500, NULL);
done:
	json_decref(items);
	free(page);
}

void gw_orders_get(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const char *id;
	proj_order *order = NULL;
	if (!available(r, api) || (id = path_id(r)) == NULL)
		return;
	orn_rc rc = gw_api_read_own_order(api, id, caller->claims.sub, &order);
	if (rc == ORN_OK)
		answer_order(api, r, NULL, 200, id, &order->state, ORDER_HISTORY_MAX);
	else
		gw_respond_problem(r, read_problem(rc));
	free(order);
}

/* ---- confirm ----------------------------------------------------------------- */

void gw_orders_confirm(gw_request *r, gw_api *api, const gw_caller *caller)
{
	char token[ORDER_TOKEN_MAX + 1] = "", command_id[ORDER_ID_MAX + 16];
	const char *id = gw_request_param(r, "id");
	bool html = gw_api_is_form(r);
	json_t *body = NULL;
	order_op *op = NULL;
	if (html) {
		if (id == NULL || !gw_valid_id(id) || !gw_api_form_token(r, token, sizeof token) ||
		    !token_shape_valid(token)) {
			respond_page(r, 400, "Invalid link", "This confirmation link is not valid.", NULL,
			             NULL);
			return;
		}
	} else {
		if ((id = path_id(r)) == NULL || !gw_request_json(r, confirm_schema, &body))
			return;
		const char *given = gw_json_string(body, "token", "");
		if (!token_shape_valid(given)) {
			gw_api_respond_field_error(r, 400, "the request body is invalid", "token",
			                           "must be 43 characters of base64url");
			goto done;
		}
		snprintf(token, sizeof token, "%s", given);
	}
	/* no login: the address's budget bounds what guessing tokens costs */
	if (!gw_api_address_allowed(api, r, CONFIRM_SCOPE)) {
		if (html)
			respond_limited_page(r);
		else
			gw_respond_error(r, 429, "too many confirmation attempts; retry later");
		goto done;
	}
	if (api->orders == NULL) {
		gw_respond_error(r, 503, "orders are unavailable");
		goto done;
	}
	if ((op = op_new(api, OP_CONFIRM, NULL, id)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	op->html = html;
	op->command.kind = ORDER_CONFIRM;
	order_token_hash(token, strlen(token), op->command.data.token_hash);
	op->command.data.ttl_ms = api->reservation_ttl_ms;
	op->command.data.time_ms = orn_now_ms();
	snprintf(command_id, sizeof command_id, "%s:confirm", id);
	op_start(r, op, command_id, "", NULL);
done:
	sodium_memzero(token, sizeof token);
	json_decref(body);
}

/* GET /orders/{id}/confirm?token= : the page with the form that confirms.
 * The GET itself changes nothing (mail scanners follow links). */
void gw_orders_confirm_page(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const char *id = gw_request_param(r, "id");
	const char *token = gw_request_query(r, "token");
	if (id == NULL || !gw_valid_id(id) || !token_shape_valid(token)) {
		respond_page(r, 400, "Invalid link", "This confirmation link is not valid.", NULL, NULL);
		return;
	}
	if (!gw_api_address_allowed(api, r, CONFIRM_SCOPE)) {
		respond_limited_page(r);
		return;
	}
	respond_page(r, 200, "Confirm your order",
	             "Please confirm your order. You will be asked to pay next.", id, token);
}

/* ---- POST /orders/{id}/cancel --------------------------------------------------- */

void gw_orders_cancel(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const char *id;
	size_t len;
	json_t *body = NULL;
	proj_order *order = NULL;
	char command_id[40];
	if (!available(r, api) || (id = path_id(r)) == NULL)
		return;
	gw_request_body(r, &len);
	if (len > 0 && !gw_request_json(r, empty_schema, &body))
		return;
	json_decref(body);
	orn_rc rc = gw_api_read_own_order(api, id, caller->claims.sub, &order);
	free(order);
	if (rc != ORN_OK) {
		gw_respond_problem(r, read_problem(rc));
		return;
	}
	order_op *op = op_new(api, OP_CANCEL, caller->claims.sub, id);
	if (op == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	op->command.kind = ORDER_CANCEL;
	snprintf(op->command.data.reason, sizeof op->command.data.reason, "%s", ORDER_REASON_CUSTOMER);
	op->command.data.time_ms = orn_now_ms();
	gw_api_new_id(command_id, sizeof command_id);
	op_start(r, op, command_id, "", caller->claims.sub);
}

/* ---- GET /orders/{id}/events ------------------------------------------------------ */

typedef struct order_stream {
	gw_api *api;
	gw_stream *stream;
	struct event *tick;
	proj_order *order; /* the buffer every read fills, allocated once */
	char order_id[ORDER_ID_MAX];
	uint64_t sent_seq; /* the last event id sent (or the client's Last-Event-ID) */
	uint64_t version;  /* the model's version of the order last looked at */
	bool final;        /* a final status was sent (or was before Last-Event-ID) */
	int64_t last_write_ns;
} order_stream;

static void stream_free(order_stream *os)
{
	if (os->tick != NULL)
		event_free(os->tick);
	free(os->order);
	free(os);
}

/* The client went away or the server stops: gw_http frees the stream. */
static void stream_closed(void *closure)
{
	stream_free(closure);
}

/* Ends the stream; after a final status first asks the client (an
 * EventSource) to wait FINAL_RETRY_MS before it reconnects, if it does. */
static void stream_end(order_stream *os)
{
	if (os->final)
		(void)gw_sse_retry(os->stream, FINAL_RETRY_MS); /* best effort: the stream ends anyway */
	gw_stream_end(os->stream);
	stream_free(os);
}

/* The stream sequence of the history entry that ended the order's checkout
 * (order_status_checkout_done: paid, or ended unpaid), or 0 while it has
 * none. The stream follows the checkout; later statuses (shipped, a cancel
 * after payment) are read with GET /orders/{id}. */
static uint64_t final_seq(const proj_order *order)
{
	for (size_t i = 0; i < order->state.history_count; i++)
		if (order_status_checkout_done(order->state.history[i].status))
			return order->history_seq[i];
	return 0;
}

/* Sends the entries of order newer than what was sent. Returns false when
 * the stream is over (a final status was sent, or the client does not read):
 * the caller ends it. */
static bool stream_send(order_stream *os, const proj_order *order)
{
	const order_state *s = &order->state;
	os->version = order->version;
	for (size_t i = 0; i < s->history_count; i++) {
		if (order->history_seq[i] <= os->sent_seq) {
			os->final |= order_status_checkout_done(s->history[i].status);
			continue;
		}
		mp_writer *w = gw_api_text_buffer(os->api);
		if (w != NULL) {
			gw_view_history_entry(w, &s->history[i]);
			mp_write_raw(w, "", 1); /* the event's data is a C string */
		}
		orn_rc rc = w != NULL && mp_writer_status(w) == ORN_OK
		                    ? gw_sse_event(os->stream, order->history_seq[i], "status",
		                                   (const char *)mp_writer_data(w))
		                    : ORN_ENOMEM;
		if (rc != ORN_OK)
			return false;
		os->sent_seq = order->history_seq[i];
		os->last_write_ns = orn_monotonic_ns();
		os->final |= order_status_checkout_done(s->history[i].status);
	}
	return !os->final;
}

/* Every STREAM_TICK_MS: the order's version, and the whole order only when
 * the version moved. */
static void stream_tick(evutil_socket_t fd, short what, void *arg)
{
	order_stream *os = arg;
	uint64_t version;
	bool open = true;
	(void)fd;
	(void)what;
	if (proj_orders_version(os->api->orders, os->order_id, &version) == ORN_OK &&
	    version != os->version && proj_orders_get(os->api->orders, os->order_id, os->order) == ORN_OK)
		open = stream_send(os, os->order);
	if (open)
		open = gw_sse_keep_alive(os->stream, &os->last_write_ns) == ORN_OK;
	if (!open)
		stream_end(os);
}

void gw_orders_events(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const char *id;
	uint64_t last_id, final;
	proj_order *order = NULL;
	order_stream *os = NULL;
	if (!available(r, api) || (id = path_id(r)) == NULL)
		return;
	if (!gw_sse_last_event_id(gw_request_header(r, "Last-Event-ID"), &last_id)) {
		gw_api_respond_field_error(r, 400, "the Last-Event-ID header is invalid", "Last-Event-ID",
		                           "must be an event id of this stream");
		return;
	}
	orn_rc rc = gw_api_read_own_order(api, id, caller->claims.sub, &order);
	if (rc != ORN_OK) {
		gw_respond_problem(r, read_problem(rc));
		return;
	}
	if ((final = final_seq(order)) != 0 && last_id >= final) {
		/* the client has seen the end: 204 makes an EventSource stop reconnecting */
		gw_respond(r, 204, NULL, NULL, 0);
		free(order);
		return;
	}
	if (gw_request_method(r) == GW_HEAD) {
		/* the headers of the stream, without one */
		gw_response_header(r, "Cache-Control", "no-store");
		gw_respond(r, 200, GW_SSE_CONTENT_TYPE, NULL, 0);
		free(order);
		return;
	}
	if ((os = calloc(1, sizeof *os)) == NULL ||
	    (os->tick = event_new(gw_server_base(api->server), -1, EV_PERSIST, stream_tick, os)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto fail;
	}
	os->api = api;
	os->order = order; /* the stream's buffer from now on */
	order = NULL;
	os->sent_seq = last_id;
	snprintf(os->order_id, sizeof os->order_id, "%s", id);
	gw_response_header(r, "X-Accel-Buffering", "no");
	if ((os->stream = gw_respond_stream(r, GW_SSE_CONTENT_TYPE, stream_closed, os)) == NULL)
		goto fail; /* answered 503 or 500 */
	os->last_write_ns = orn_monotonic_ns();
	struct timeval tv = {.tv_sec = 0, .tv_usec = STREAM_TICK_MS * 1000};
	if (!stream_send(os, os->order) || event_add(os->tick, &tv) != 0)
		stream_end(os);
	return;
fail:
	if (os != NULL)
		stream_free(os);
	free(order);
}

/* ---- admin: cancel, ship, deliver (ADR 028 §3) ----------------------------------- */

static const gw_field admin_cancel_schema[] = {
        {.name = "reason", .type = GW_STRING, .required = true, .min = 1, .max = 200},
        {.name = NULL},
};

static const gw_field ship_schema[] = {
        {.name = "carrier", .type = GW_STRING, .required = true, .min = 1, .max = ORDER_CARRIER_MAX - 1},
        {.name = "tracking_number",
         .type = GW_STRING,
         .required = true,
         .min = 1,
         .max = ORDER_TRACKING_MAX - 1},
        {.name = NULL},
};

/* True if the order id exists (any customer's); else answers 404 or 503. */
static bool admin_order_exists(gw_request *r, gw_api *api, const char *id)
{
	proj_order *order = malloc(sizeof *order);
	orn_rc rc = order != NULL ? proj_orders_get(api->orders, id, order) : ORN_ENOMEM;
	free(order);
	if (rc == ORN_EINVAL)
		rc = ORN_ENOTFOUND;
	if (rc != ORN_OK)
		gw_respond_problem(r, read_problem(rc));
	return rc == ORN_OK;
}

/* Sends op (its command filled in) for the admin caller; the answer is the
 * order after read-your-writes, as for the customer's routes. */
static void admin_start(gw_request *r, order_op *op, const gw_caller *caller)
{
	char command_id[40];
	op->command.data.time_ms = orn_now_ms();
	gw_api_new_id(command_id, sizeof command_id);
	op_start(r, op, command_id, "", caller->claims.sub);
}

/* Reads the body (schema; an empty body is {} when allow_empty) and the
 * order of the path: the order id, or NULL after answering. */
static const char *admin_request(gw_request *r, gw_api *api, const gw_field *schema, bool allow_empty,
                                 json_t **body)
{
	const char *id;
	size_t len;
	*body = NULL;
	if (!available(r, api) || (id = path_id(r)) == NULL)
		return NULL;
	gw_request_body(r, &len);
	if ((len > 0 || !allow_empty) && !gw_request_json(r, schema, body))
		return NULL;
	if (!admin_order_exists(r, api, id)) {
		json_decref(*body);
		*body = NULL;
		return NULL;
	}
	return id;
}

void gw_admin_orders_cancel(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body;
	const char *id = admin_request(r, api, admin_cancel_schema, false, &body);
	if (id == NULL)
		return;
	/* the admin's reason is for the log; the order records "admin" */
	log_info("an admin cancels an order", "order", id, "admin", caller->claims.sub, "reason",
	         gw_json_string(body, "reason", ""));
	json_decref(body);
	order_op *op = op_new(api, OP_CANCEL, NULL, id);
	if (op == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	op->command.kind = ORDER_CANCEL;
	snprintf(op->command.data.reason, sizeof op->command.data.reason, "%s", ORDER_REASON_ADMIN);
	admin_start(r, op, caller);
}

/* True if s is printable ASCII (a tracking number, order.h). */
static bool printable_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

void gw_admin_orders_ship(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body;
	const char *id = admin_request(r, api, ship_schema, false, &body);
	if (id == NULL)
		return;
	const char *carrier = gw_json_string(body, "carrier", "");
	const char *tracking = gw_json_string(body, "tracking_number", "");
	order_op *op = NULL;
	if (strlen(carrier) >= ORDER_CARRIER_MAX) {
		gw_api_respond_field_error(r, 400, "the request body is invalid", "carrier",
		                           "must be at most 100 bytes of UTF-8");
	} else if (strlen(tracking) >= ORDER_TRACKING_MAX || !printable_ascii(tracking)) {
		gw_api_respond_field_error(r, 400, "the request body is invalid", "tracking_number",
		                           "must be 1 to 100 printable ASCII characters");
	} else if ((op = op_new(api, OP_SHIP, NULL, id)) == NULL) {
		gw_respond_error(r, 500, NULL);
	} else {
		op->command.kind = ORDER_SHIP;
		snprintf(op->command.data.carrier, sizeof op->command.data.carrier, "%s", carrier);
		snprintf(op->command.data.tracking_number, sizeof op->command.data.tracking_number, "%s",
		         tracking);
		admin_start(r, op, caller);
	}
	json_decref(body);
}

void gw_admin_orders_deliver(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body;
	const char *id = admin_request(r, api, empty_schema, true, &body);
	if (id == NULL)
		return;
	json_decref(body);
	order_op *op = op_new(api, OP_DELIVER, NULL, id);
	if (op == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	op->command.kind = ORDER_DELIVER;
	admin_start(r, op, caller);
}
