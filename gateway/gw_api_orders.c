/* gw_api_orders.c — the orders routes: place (POST /orders), list, read,
 * confirm (JSON, or the HTML page and its form), cancel, and the live status
 * stream (GET /orders/{id}/events, Server-Sent Events).
 *
 * Ownership. Every route but confirm needs a login and answers 404 for an
 * order that is not the caller's, exactly as for an order that does not
 * exist: nothing reveals another customer's order. Confirm needs no login:
 * the token of the confirmation email is the credential (actors/order_token.h)
 * and only its hash travels in the command.
 *
 * Placing. The order id follows the order decider's rule (order_id_for):
 * from the Idempotency-Key with one (a retry finds the same order; another
 * customer never collides), else from the cart's version, so one version of
 * a cart places one order however often it is submitted (ADR 015). The
 * request hash is order_request_hash of the canonical body (sorted keys,
 * compact). An order placed already answers 200 with that order when the
 * request hash matches, 422 when it does not; so does a cart submitted again
 * after its checkout emptied it, unchanged since. The lines are the cart's,
 * with the catalog's current names and prices (deleted products dropped).
 * The answer to a new placement is the order as placed (202, status pending):
 * read from the model up to the placement's history entry, or built from the
 * command when the model is late.
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
 * 15 s, and after a final status a large "retry:" and the end of the stream.
 * A client that reconnects anyway with a Last-Event-ID at or past the final
 * entry gets 204 No Content, which tells an EventSource to stop reconnecting.
 * The stream's closed callback (client gone, server destroyed) frees the
 * timer and the buffer; gw_http caps how many streams are open. */
#include "gw_api.h"

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

#include "gw_problem.h"
#include "gw_sse.h"
#include "log.h"

#define LIST_DEFAULT_LIMIT 20
#define STREAM_TICK_MS     200
#define FINAL_RETRY_MS     3600000 /* the reconnection delay a finished stream asks for */
#define FORM_CONTENT_TYPE  "application/x-www-form-urlencoded"
#define FORM_BODY_MAX      1024
#define CONFIRM_SCOPE      "confirm" /* the rate limiter's bucket of the confirmation routes */

static const gw_field empty_schema[] = {{.name = NULL}};

static const gw_field confirm_schema[] = {
        {.name = "token", .type = GW_STRING, .required = true, .min = 1, .max = 256},
        {.name = NULL},
};

/* ---- small helpers ------------------------------------------------------- */

static json_t *time_json(int64_t ms)
{
	return gw_api_time_json(ms, false);
}

static bool is_final(order_status status)
{
	return status == ORDER_CONFIRMED || status == ORDER_CANCELLED || status == ORDER_PAYMENT_FAILED;
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

/* ---- the order as JSON ----------------------------------------------------- */

static json_t *history_entry_json(const order_history_entry *h)
{
	return json_pack("{s:s, s:o, s:o}", "status", order_status_name(h->status), "at", time_json(h->at_ms),
	                 "reason", h->reason[0] ? json_string(h->reason) : json_null());
}

/* The order view of API.md from s, showing the first history_count entries
 * of its history (the status is the last one shown). Never the customer's
 * email, the token hash or the request hash. NULL on ENOMEM. */
static json_t *order_json(const char *id, const order_state *s, size_t history_count)
{
	json_t *items = json_array(), *history = json_array(), *o = NULL;
	int64_t total = 0;
	if (history_count > s->history_count)
		history_count = s->history_count;
	if (items == NULL || history == NULL || history_count == 0)
		goto fail;
	for (size_t i = 0; i < s->line_count; i++) {
		const order_line *l = &s->lines[i];
		json_t *item = json_pack("{s:s, s:s, s:I, s:I}", "product_id", l->product_id, "name", l->name,
		                         "unit_price_cents", (json_int_t)l->unit_price_cents, "quantity",
		                         (json_int_t)l->quantity);
		if (item == NULL || json_array_append_new(items, item) != 0)
			goto fail;
	}
	for (size_t i = 0; i < history_count; i++) {
		json_t *entry = history_entry_json(&s->history[i]);
		if (entry == NULL || json_array_append_new(history, entry) != 0)
			goto fail;
	}
	order_total(s, &total); /* bounded by the decider (actors/order.h) */
	const order_history_entry *last = &s->history[history_count - 1];
	json_t *payment = last->status == ORDER_CONFIRMED && s->brand[0]
	                          ? json_pack("{s:s, s:s}", "brand", s->brand, "last4", s->last4)
	                          : json_null();
	o = json_pack("{s:s, s:s, s:o, s:I, s:s, s:o, s:o, s:o, s:o}", "id", id, "status",
	              order_status_name(last->status), "items", items, "total_cents", (json_int_t)total,
	              "currency", s->currency, "created_at", time_json(s->history[0].at_ms), "updated_at",
	              time_json(last->at_ms), "history", history, "payment", payment);
	return o;
fail:
	json_decref(items);
	json_decref(history);
	return NULL;
}

/* The customer's order id into *out (heap, ~15 KB). ORN_ENOTFOUND also when
 * it belongs to somebody else; ORN_EUNAVAILABLE when the model fails. */
static orn_rc read_own_order(gw_api *api, const char *id, const char *customer, proj_order **out)
{
	*out = malloc(sizeof **out);
	if (*out == NULL)
		return ORN_ENOMEM;
	orn_rc rc = proj_orders_get(api->orders, id, *out);
	if (rc == ORN_OK && strcmp((*out)->state.customer_id, customer) != 0)
		rc = ORN_ENOTFOUND;
	if (rc == ORN_EINVAL)
		rc = ORN_ENOTFOUND;
	if (rc != ORN_OK && rc != ORN_ENOTFOUND)
		rc = ORN_EUNAVAILABLE;
	if (rc != ORN_OK) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

static json_t *read_problem(orn_rc rc)
{
	if (rc == ORN_ENOTFOUND)
		return gw_problem_new(404, "no such order");
	if (rc == ORN_ENOMEM)
		return gw_problem_new(500, NULL);
	return gw_problem_new(503, "orders are unavailable");
}

/* ---- commands: one chain per request, owned by its callbacks ---------------- */

typedef enum op_kind { OP_PLACE, OP_CONFIRM, OP_CANCEL } op_kind;

typedef struct order_op {
	gw_api *api;
	gw_async *async;
	op_kind kind;
	bool html;   /* confirm posted by the HTML form: answer a page */
	bool exists; /* place: refused "exists", answer the existing order */
	char customer[ORDER_ID_MAX];
	char order_id[ORDER_ID_MAX];
	uint64_t seq;
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

/* The small HTML page of the confirmation flow; every value is escaped. */
static char *page_html(const char *title, const char *message, const char *order_id, const char *token)
{
	static const char head[] =
	        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	        "<meta name=\"robots\" content=\"noindex\"><title>%s</title>"
	        "<style>body{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em}"
	        "button{font-size:1.1em;padding:.5em 1.5em}</style></head><body><h1>%s</h1><p>%s</p>";
	static const char form[] = "<form method=\"post\" action=\"/api/v1/orders/%s/confirm\">"
	                           "<input type=\"hidden\" name=\"token\" value=\"%s\">"
	                           "<button type=\"submit\">Confirm my order</button></form>";
	static const char tail[] = "</body></html>\n";
	const char *values[4] = {title, message, order_id ? order_id : "", token ? token : ""};
	char *text[4] = {NULL}, *out = NULL;
	for (size_t i = 0; i < 4; i++) {
		/* HTML-escape by hand: & < > " ' become entities */
		size_t len = strlen(values[i]), cap = len * 6 + 1, n = 0;
		if ((text[i] = malloc(cap)) == NULL)
			goto done;
		for (const char *p = values[i]; *p; p++) {
			const char *entity = *p == '&'    ? "&amp;"
			                     : *p == '<'  ? "&lt;"
			                     : *p == '>'  ? "&gt;"
			                     : *p == '"'  ? "&quot;"
			                     : *p == '\'' ? "&#39;"
			                                  : NULL;
			if (entity != NULL) {
				memcpy(text[i] + n, entity, strlen(entity));
				n += strlen(entity);
			} else {
				text[i][n++] = *p;
			}
		}
		text[i][n] = '\0';
	}
	size_t cap = sizeof head + sizeof form + sizeof tail + 2 * strlen(text[0]) + strlen(text[1]) +
	             strlen(text[2]) + strlen(text[3]) + 1;
	if ((out = malloc(cap)) == NULL)
		goto done;
	int n = snprintf(out, cap, head, text[0], text[0], text[1]);
	if (order_id != NULL && token != NULL)
		n += snprintf(out + n, cap - (size_t)n, form, text[2], text[3]);
	snprintf(out + n, cap - (size_t)n, "%s", tail);
done:
	for (size_t i = 0; i < 4; i++)
		free(text[i]);
	return out;
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
		char *html = page_html(status == 409 ? "Not confirmed" : "Confirmation refused", message,
		                       NULL, NULL);
		if (html != NULL)
			gw_async_complete_html(op->async, status, html, strlen(html));
		else
			gw_async_complete_problem(op->async, gw_problem_new(500, NULL));
		free(html);
	} else {
		gw_async_complete_problem(op->async, gw_problem_new(status, detail));
	}
	free(op);
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

/* Answers a settled op from the read model. */
static void op_answer(void *closure, orn_rc wait_rc)
{
	order_op *op = closure;
	proj_order *order = malloc(sizeof *order);
	json_t *body = NULL;
	int status = op->kind == OP_PLACE && !op->exists ? 202 : 200; /* placed before: the first order */
	if (wait_rc != ORN_OK)
		log_warn("read models late after an order command", "order", op->order_id, "wait",
		         orn_strerror(wait_rc));
	orn_rc rc = order != NULL ? proj_orders_get(op->api->orders, op->order_id, order) : ORN_ENOMEM;
	if (op->kind == OP_PLACE && op->exists) {
		/* the key's order: same customer and request, or a reuse of the key */
		if (rc != ORN_OK) {
			op_fail(op, 503, "the order is being placed; retry with the same Idempotency-Key");
			goto done;
		}
		if (strcmp(order->state.customer_id, op->customer) != 0 ||
		    strcmp(order->state.request_hash, op->command.data.request_hash) != 0) {
			op_fail(op, 422, "this Idempotency-Key was used for another request");
			goto done;
		}
		body = order_json(op->order_id, &order->state, ORDER_HISTORY_MAX);
	} else if (op->kind == OP_PLACE) {
		/* status pending, as placed: the entries up to the placement's sequence */
		size_t shown = 0;
		while (rc == ORN_OK && shown < order->state.history_count &&
		       order->history_seq[shown] <= op->seq)
			shown++;
		if (rc == ORN_OK && shown > 0) {
			body = order_json(op->order_id, &order->state, shown);
		} else if (order != NULL) {
			placed_state(&op->command, &order->state);
			body = order_json(op->order_id, &order->state, 1);
		}
	} else if (op->html && op->kind == OP_CONFIRM) {
		char *html =
		        page_html("Order confirmed",
		                  "Thank you: your order is confirmed and now awaits payment.", NULL, NULL);
		if (html != NULL)
			gw_async_complete_html(op->async, 200, html, strlen(html));
		else
			gw_async_complete_problem(op->async, gw_problem_new(500, NULL));
		free(html);
		free(op);
		goto done;
	} else if (rc == ORN_OK) {
		body = order_json(op->order_id, &order->state, ORDER_HISTORY_MAX);
	} else {
		op_fail(op, rc == ORN_ENOTFOUND ? 503 : 500,
		        "the order is late in the read model; read it again");
		goto done;
	}
	if (body != NULL)
		gw_async_complete_json(op->async, status, body);
	else
		gw_async_complete_problem(op->async, gw_problem_new(500, NULL));
	free(op);
done:
	free(order);
}

static void op_wait(order_op *op, uint64_t seq)
{
	if (op->api->consistency == NULL ||
	    gw_consistency_wait(op->api->consistency, seq, GW_API_READ_YOUR_WRITES_MS, op_answer, op) !=
	            ORN_OK)
		op_answer(op, ORN_OK);
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
		                  : "the order can no longer be cancelled";
		return 409;
	}
	if (strcmp(code, "invalid") == 0) {
		*detail = "the order request is invalid";
		return op->kind == OP_PLACE ? 422 : 400;
	}
	*detail = NULL;
	return gw_api_rejection_status(code);
}

static void on_order_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	order_op *op = closure;
	if (rc != ORN_OK || reply->outcome == BUS_FAILED) {
		log_warn("order command not served", "order", op->order_id, "error",
		         rc != ORN_OK ? orn_strerror(rc) : reply->code);
		op_fail(op, 503, "a service did not answer; try again");
		return;
	}
	if (reply->outcome == BUS_REJECTED) {
		if (op->kind == OP_PLACE && strcmp(reply->code, "exists") == 0) {
			op->exists = true;
			op_wait(op, reply->version > reply->seq ? reply->version : reply->seq);
			return;
		}
		const char *detail;
		int status = rejection_status(op, reply->code, &detail);
		op_fail(op, status, detail);
		return;
	}
	op->seq = reply->seq;
	op->exists = op->kind == OP_PLACE && reply->duplicate; /* a keyed repeat: placed before */
	op_wait(op, reply->seq);
}

/* Defers r and sends op->command to the order, keyed when request (the
 * fingerprint of a keyed request) is not ""; frees op on every failure. */
static void op_start(gw_request *r, order_op *op, const char *command_id, const char *request,
                     const char *actor)
{
	mp_writer *w = gw_api_text_buffer(op->api);
	if (w == NULL || order_command_encode(w, &op->command) != ORN_OK) {
		gw_respond_error(r, 500, NULL);
		free(op);
		return;
	}
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL) {
		free(op);
		return;
	}
	gw_api_keyed keyed = {0};
	snprintf(keyed.command_id, sizeof keyed.command_id, "%s", command_id);
	snprintf(keyed.request, sizeof keyed.request, "%s", request);
	orn_rc rc = gw_api_send_keyed(op->api, ORDER_AGGREGATE, op->order_id,
	                              order_command_type(op->command.kind), w, &keyed, actor,
	                              on_order_replied, op);
	if (rc != ORN_OK)
		op_fail(op, 503, "a service did not answer; try again");
}

/* ---- POST /orders ---------------------------------------------------------- */

/* The request hash of the body: order_request_hash of its canonical form
 * (sorted keys, compact; an empty body counts as {}). It is taken before the
 * strict check, so a key reused with another body is told apart (422) from
 * a replay, as Stripe-style idempotency does. False when the body is not
 * one JSON object (the strict check then answers). */
static bool request_hash_of(gw_request *r, char hash[ORDER_TOKEN_HASH_MAX])
{
	size_t len;
	const unsigned char *raw = gw_request_body(r, &len);
	json_t *body =
	        len == 0 ? json_object() : json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
	char *canonical = json_is_object(body) ? json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
	json_decref(body);
	if (canonical == NULL)
		return false;
	order_request_hash(canonical, strlen(canonical), hash);
	free(canonical);
	return true;
}

/* The strict check of the body: {} or empty. False after answering 400. */
static bool body_is_empty_object(gw_request *r)
{
	size_t len;
	json_t *body = NULL;
	gw_request_body(r, &len);
	if (len > 0 && !gw_request_json(r, empty_schema, &body))
		return false;
	json_decref(body);
	return true;
}

/* Answers the order the customer's cart was last checked out into (200):
 * the cart submitted again, unchanged since (a retry after a lost answer, a
 * double click). */
/* Answers the placement with order_id, an order placed from this cart
 * before: 200 with it for the same request, 422 for another one; with
 * placed_before, ORN_ENOTFOUND (nothing answered) when there is no such
 * order in the read model yet, else ORN_OK. */
static orn_rc answer_if_placed(gw_request *r, gw_api *api, const order_op *op, const char *order_id,
                               bool must_exist)
{
	proj_order *order = NULL;
	orn_rc rc = read_own_order(api, order_id, op->customer, &order);
	if (rc == ORN_OK && strcmp(order->state.request_hash, op->command.data.request_hash) != 0)
		gw_respond_error(r, 422, "this cart was placed as an order with another request");
	else if (rc == ORN_OK)
		gw_respond_json(r, 200, order_json(order_id, &order->state, ORDER_HISTORY_MAX));
	else if (rc != ORN_ENOTFOUND || must_exist)
		gw_respond_problem(r, read_problem(rc == ORN_ENOTFOUND ? ORN_EUNAVAILABLE : rc));
	free(order);
	return rc == ORN_ENOTFOUND && !must_exist ? ORN_ENOTFOUND : ORN_OK;
}

/* The cart unchanged since its checkout into order_id: that order. */
static void answer_placed(gw_request *r, gw_api *api, const order_op *op, const char *order_id)
{
	(void)answer_if_placed(r, api, op, order_id, true);
}

/* The cart's version placed an order already (a double submission, a retry):
 * answered, or ORN_ENOTFOUND when the read model has none (the actor's
 * "exists" then answers a placement the model has not seen yet). */
static orn_rc placed_before(gw_request *r, gw_api *api, const order_op *op)
{
	return answer_if_placed(r, api, op, op->order_id, false);
}

/* Fills op->command (PlaceOrder) from the cart and the account and names the
 * order after the cart's version (one version, one order: order_id_for).
 * False after answering (400 for a body that is not {}, 422 empty cart, 503,
 * or the order a cart unchanged since its checkout placed: 200, or 422 for
 * another request). */
static bool fill_placement(gw_request *r, order_op *op)
{
	gw_api *api = op->api;
	order_data *d = &op->command.data;
	gw_cart_view *cart = malloc(sizeof *cart);
	proj_user *user = malloc(sizeof *user);
	char token[ORDER_TOKEN_MAX];
	bool ok = false;
	orn_rc rc = cart != NULL && user != NULL ? gw_api_cart_read(api, op->customer, cart) : ORN_ENOMEM;
	if (rc != ORN_OK) {
		gw_respond_error(r, rc == ORN_ENOMEM ? 500 : 503,
		                 rc == ORN_ENOMEM ? NULL : "the cart is unavailable");
		goto done;
	}
	if (cart->count == 0 && cart->checked_out_order[0] != '\0' && cart->dropped_count == 0) {
		answer_placed(r, api, op, cart->checked_out_order);
		goto done;
	}
	order_id_for(op->customer, NULL, cart->version, op->order_id);
	if ((rc = placed_before(r, api, op)) != ORN_ENOTFOUND || !body_is_empty_object(r))
		goto done; /* answered */
	if (cart->count == 0) {
		gw_respond_error(r, 422,
		                 cart->dropped_count > 0
		                         ? "the cart is empty: its products are no longer sold"
		                         : "the cart is empty");
		goto done;
	}
	if (cart->total_cents == 0) { /* nothing to pay: the provider would refuse it (issue 14) */
		gw_respond_error(r, 422, "the order would total 0: nothing to pay");
		goto done;
	}
	d->cart_version = (int64_t)cart->version;
	rc = proj_users_get_by_id(api->users, op->customer, user);
	if (rc != ORN_OK) {
		gw_respond_error(r, rc == ORN_ENOTFOUND || rc == ORN_EINVAL ? 422 : 503,
		                 rc == ORN_ENOTFOUND || rc == ORN_EINVAL
		                         ? "no account with an email for this token"
		                         : "accounts are unavailable");
		goto done;
	}
	op->command.kind = ORDER_PLACE;
	snprintf(d->customer_id, sizeof d->customer_id, "%s", op->customer);
	snprintf(d->customer_email, sizeof d->customer_email, "%s", user->email);
	for (size_t i = 0; i < cart->count; i++) {
		order_line *l = &d->lines[i];
		snprintf(l->product_id, sizeof l->product_id, "%s", cart->lines[i].product_id);
		snprintf(l->name, sizeof l->name, "%s", cart->lines[i].name);
		l->unit_price_cents = cart->lines[i].unit_price_cents;
		l->quantity = cart->lines[i].quantity;
	}
	d->line_count = cart->count;
	snprintf(d->currency, sizeof d->currency, "%s", cart->currency);
	if (order_token_make(api->order_token_key, op->order_id, token) != ORN_OK) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	order_token_hash(token, strlen(token), d->token_hash);
	sodium_memzero(token, sizeof token);
	d->time_ms = orn_now_ms();
	d->deadline_ms = d->time_ms + api->reservation_ttl_ms;
	ok = true;
done:
	free(user);
	free(cart);
	return ok;
}

static void place_order(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	const char *key;
	char command_id[ORDER_ID_MAX + 8];
	gw_api_keyed keyed = {0};
	order_op *op = NULL;
	if (!gw_api_authorize(r, api, false, &claims) || !available(r, api) ||
	    !gw_api_idempotency_key(r, &key))
		return;
	if ((op = op_new(api, OP_PLACE, claims.sub, "")) == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	/* hashed before the strict check, so that a key reused with another body
	 * is told apart (422) from a malformed request, as Stripe-style
	 * idempotency does */
	if (!request_hash_of(r, op->command.data.request_hash)) {
		(void)body_is_empty_object(r); /* not one JSON object: the strict check answers */
		goto done;
	}
	if (!fill_placement(r, op))
		goto done;
	/* The id follows the cart's version; a key's repeat is answered by the
	 * order's ledger (the same request again: the first answer; another
	 * request: 422), another placement of the same cart by "exists". */
	if (key != NULL)
		gw_api_keyed_init(&keyed, r, "place", claims.sub, key);
	snprintf(command_id, sizeof command_id, "%s:place", op->order_id);
	/* the customer's email, sealed for this order's event (ADR 027) */
	if (gw_api_reseal(api, op->command.data.customer_email, "customer_email",
	                  key != NULL ? keyed.command_id : command_id, op->command.data.customer_email,
	                  sizeof op->command.data.customer_email) != ORN_OK) {
		gw_respond_error(r, 503, "accounts are unavailable");
		goto done;
	}
	op_start(r, op, key != NULL ? keyed.command_id : command_id, key != NULL ? keyed.request : "",
	         claims.sub);
	op = NULL;
done:
	free(op);
}

/* ---- GET /orders, GET /orders/{id} -------------------------------------------- */

static json_t *summary_json(const proj_order_summary *s)
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

static void list_orders(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	unsigned limit;
	const char *cursor;
	json_t *items = NULL;
	if (!gw_api_authorize(r, api, false, &claims) || !available(r, api) ||
	    !list_query(r, &limit, &cursor))
		return;
	proj_orders_page *page = malloc(sizeof *page);
	orn_rc rc =
	        page != NULL ? proj_orders_list(api->orders, claims.sub, limit, cursor, page) : ORN_ENOMEM;
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
		json_t *item = summary_json(&page->items[i]);
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

static void get_order(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	const char *id;
	proj_order *order = NULL;
	if (!gw_api_authorize(r, api, false, &claims) || !available(r, api) || (id = path_id(r)) == NULL)
		return;
	orn_rc rc = read_own_order(api, id, claims.sub, &order);
	if (rc == ORN_OK)
		gw_respond_json(r, 200, order_json(id, &order->state, ORDER_HISTORY_MAX));
	else
		gw_respond_problem(r, read_problem(rc));
	free(order);
}

/* ---- confirm ----------------------------------------------------------------- */

static bool is_form(gw_request *r)
{
	const char *type = gw_request_header(r, "Content-Type");
	size_t len = sizeof FORM_CONTENT_TYPE - 1;
	return type != NULL && strncasecmp(type, FORM_CONTENT_TYPE, len) == 0 &&
	       (type[len] == '\0' || type[len] == ';' || type[len] == ' ');
}

/* The token of a form body "token=..." (nothing else) into out; false if the
 * body is not exactly that. */
static bool form_token(gw_request *r, char *out, size_t cap)
{
	size_t len;
	const unsigned char *body = gw_request_body(r, &len);
	struct evkeyvalq fields;
	bool ok = false;
	if (len == 0 || len > FORM_BODY_MAX)
		return false;
	char *text = gw_request_alloc(r, len + 1);
	if (text == NULL)
		return false;
	memcpy(text, body, len);
	text[len] = '\0';
	TAILQ_INIT(&fields);
	/* %00 would cut a value short where it is decoded (ADR 020) */
	if (strlen(text) == len && strstr(text, "%00") == NULL &&
	    evhttp_parse_query_str(text, &fields) == 0) {
		const struct evkeyval *first = TAILQ_FIRST(&fields);
		ok = first != NULL && TAILQ_NEXT(first, next) == NULL && strcmp(first->key, "token") == 0 &&
		     strlen(first->value) < cap;
		if (ok)
			snprintf(out, cap, "%s", first->value);
	}
	evhttp_clear_headers(&fields);
	return ok;
}

static void confirm_order(gw_request *r, void *arg)
{
	gw_api *api = arg;
	char token[ORDER_TOKEN_MAX + 1] = "", command_id[ORDER_ID_MAX + 16];
	const char *id = gw_request_param(r, "id");
	bool html = is_form(r);
	json_t *body = NULL;
	order_op *op = NULL;
	if (html) {
		if (id == NULL || !gw_valid_id(id) || !form_token(r, token, sizeof token) ||
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
			json_t *problem = gw_problem_new(400, "the request body is invalid");
			gw_problem_add_error(problem, "token", "must be 43 characters of base64url");
			gw_respond_problem(r, problem);
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
static void confirm_page(gw_request *r, void *arg)
{
	gw_api *api = arg;
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

static void cancel_order(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	const char *id;
	size_t len;
	json_t *body = NULL;
	proj_order *order = NULL;
	char command_id[40];
	if (!gw_api_authorize(r, api, false, &claims) || !available(r, api) || (id = path_id(r)) == NULL)
		return;
	gw_request_body(r, &len);
	if (len > 0 && !gw_request_json(r, empty_schema, &body))
		return;
	json_decref(body);
	orn_rc rc = read_own_order(api, id, claims.sub, &order);
	free(order);
	if (rc != ORN_OK) {
		gw_respond_problem(r, read_problem(rc));
		return;
	}
	order_op *op = op_new(api, OP_CANCEL, claims.sub, id);
	if (op == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	op->command.kind = ORDER_CANCEL;
	snprintf(op->command.data.reason, sizeof op->command.data.reason, "%s", ORDER_REASON_CUSTOMER);
	op->command.data.time_ms = orn_now_ms();
	gw_api_new_id(command_id, sizeof command_id);
	op_start(r, op, command_id, "", claims.sub);
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

/* The stream sequence of the order's final history entry, or 0 while it
 * has none. */
static uint64_t final_seq(const proj_order *order)
{
	for (size_t i = 0; i < order->state.history_count; i++)
		if (is_final(order->state.history[i].status))
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
			os->final |= is_final(s->history[i].status);
			continue;
		}
		json_t *entry = history_entry_json(&s->history[i]);
		char *data = entry != NULL ? json_dumps(entry, JSON_COMPACT) : NULL;
		json_decref(entry);
		orn_rc rc = data != NULL ? gw_sse_event(os->stream, order->history_seq[i], "status", data)
		                         : ORN_ENOMEM;
		free(data);
		if (rc != ORN_OK)
			return false;
		os->sent_seq = order->history_seq[i];
		os->last_write_ns = orn_monotonic_ns();
		os->final |= is_final(s->history[i].status);
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

static void stream_order_events(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	const char *id;
	uint64_t last_id, final;
	proj_order *order = NULL;
	order_stream *os = NULL;
	if (!gw_api_authorize(r, api, false, &claims) || !available(r, api) || (id = path_id(r)) == NULL)
		return;
	if (!gw_sse_last_event_id(gw_request_header(r, "Last-Event-ID"), &last_id)) {
		json_t *problem = gw_problem_new(400, "the Last-Event-ID header is invalid");
		gw_problem_add_error(problem, "Last-Event-ID", "must be an event id of this stream");
		gw_respond_problem(r, problem);
		return;
	}
	orn_rc rc = read_own_order(api, id, claims.sub, &order);
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

orn_rc gw_api_register_orders(gw_api *api)
{
	static const gw_api_route routes[] = {
	        {GW_POST, "/api/v1/orders", place_order},
	        {GW_GET, "/api/v1/orders", list_orders},
	        {GW_GET, "/api/v1/orders/{id}", get_order},
	        {GW_POST, "/api/v1/orders/{id}/confirm", confirm_order},
	        {GW_GET, "/api/v1/orders/{id}/confirm", confirm_page},
	        {GW_POST, "/api/v1/orders/{id}/cancel", cancel_order},
	        {GW_GET, "/api/v1/orders/{id}/events", stream_order_events},
	};
	return gw_api_register_routes(api, routes, ORN_ARRAY_LEN(routes));
}

/* ---- shared with gw_api_payment.c ------------------------------------------------- */

json_t *gw_api_order_json(const char *id, const order_state *s)
{
	return order_json(id, s, ORDER_HISTORY_MAX);
}

orn_rc gw_api_read_own_order(gw_api *api, const char *id, const char *customer, proj_order **out)
{
	return read_own_order(api, id, customer, out);
}
