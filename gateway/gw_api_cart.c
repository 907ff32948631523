/* gw_api_cart.c — the customer's cart: GET /cart, POST /cart/items,
 * PUT and DELETE /cart/items/{product_id}, DELETE /cart.
 *
 * The cart aggregate's id is the caller's user id (any logged-in role), so
 * nobody can address another's cart. The view is the cart's quote
 * (projections/proj_quote.h: the carts read model priced from the catalog
 * in one read): names and prices shown are the catalog's current ones, and
 * a line whose product was deleted is dropped from the view with a notice
 * while a RemoveItem is sent for it (fire and forget: the next view no
 * longer has it either way; gw_api_quote). AddItem snapshots the current name
 * and price into the command, as actors/cart.h expects.
 *
 * Writes are one command each: the handler validates, defers the request and
 * hands a heap cart_op to the bus; the reply's callback waits for
 * read-your-writes (gw_consistency) and answers with the cart, or maps the
 * rejection. The op is freed exactly once, by whichever callback answers. */
#include "gw_api_cart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_api-internal.h"
#include "gw_problem.h"
#include "gw_views.h"
#include "log.h"

static const gw_field add_schema[] = {
        {.name = "product_id",
         .type = GW_STRING,
         .required = true,
         .min = 1,
         .max = 64,
         .pattern = GW_PATTERN_ID},
        {.name = "quantity", .type = GW_INT, .required = true, .min = 1, .max = CART_QUANTITY_MAX},
        {.name = NULL},
};

static const gw_field set_schema[] = {
        {.name = "quantity", .type = GW_INT, .required = true, .min = 0, .max = CART_QUANTITY_MAX},
        {.name = NULL},
};

/* One cart write in flight, owned by its chain. */
typedef struct cart_op {
	gw_api *api;
	gw_async *async;
	char customer[CART_ID_MAX];
	cart_command command;
	uint64_t seq;
	int status; /* the success status: 200 with the cart, 204 without */
} cart_op;

/* ---- the view ------------------------------------------------------------ */

/* The cart view answered now (r) or through async (a): 200, or 503. */
static void answer_cart(gw_api *api, const char *customer, gw_request *r, gw_async *a)
{
	proj_quote *quote = malloc(sizeof *quote);
	mp_writer *w = gw_api_text_buffer(api);
	orn_rc rc = quote != NULL && w != NULL ? gw_api_quote(api, customer, quote) : ORN_ENOMEM;
	if (rc == ORN_OK) {
		/* after the quote: its RemoveItem commands used the text buffer */
		mp_writer_reset(w);
		gw_view_quote(w, quote);
		if (r != NULL)
			gw_api_respond_written(r, 200, w);
		else
			gw_api_complete_written(a, 200, w);
	} else {
		json_t *problem = gw_problem_new(rc == ORN_ENOMEM ? 500 : 503,
		                                 rc == ORN_ENOMEM ? NULL : "the cart is unavailable");
		if (r != NULL)
			gw_respond_problem(r, problem);
		else
			gw_async_complete_problem(a, problem);
	}
	free(quote);
}

/* ---- writes -------------------------------------------------------------- */

static void op_answer(void *closure, orn_rc wait_rc)
{
	cart_op *op = closure;
	if (wait_rc != ORN_OK)
		log_warn("read models late after a cart write", "wait", orn_strerror(wait_rc));
	if (op->status == 204)
		gw_async_complete_empty(op->async, 204);
	else
		answer_cart(op->api, op->customer, NULL, op->async);
	free(op);
}

/* The status and text for a rejection of the cart decider. */
static void rejection(const cart_op *op, const bus_reply *reply, int *status, const char **detail)
{
	*status = gw_api_rejection_status(reply->code);
	*detail = reply->detail[0] ? reply->detail : NULL;
	if (strcmp(reply->code, "not_found") == 0) {
		*status = 404;
		*detail = "this product is not in the cart";
	} else if (strcmp(reply->code, "too_many_lines") == 0) {
		*detail = "a cart holds at most 50 products";
	} else if (strcmp(reply->code, "currency_mismatch") == 0) {
		*detail = "every product in a cart must have the same currency";
	} else if (strcmp(reply->code, "invalid") == 0 && op->command.kind == CART_ADD_ITEM) {
		/* the add is checked by the schema first: what the decider still
		 * refuses is a line that would pass CART_QUANTITY_MAX */
		*status = 409;
		*detail = "a cart line holds at most 999 units: adding this quantity would pass that";
	} else if (strcmp(reply->code, "invalid") == 0) {
		*status = 400;
	}
}

static void on_cart_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	cart_op *op = closure;
	if (rc != ORN_OK || reply->outcome == BUS_FAILED) {
		gw_api_complete_failure(op->async, rc, reply);
		free(op);
		return;
	}
	if (reply->outcome == BUS_REJECTED) {
		int status;
		const char *detail;
		rejection(op, reply, &status, &detail);
		gw_async_complete_problem(op->async, gw_problem_new(status, detail));
		free(op);
		return;
	}
	op->seq = reply->seq;
	gw_api_wait_for(op->api, op->seq, op_answer, op);
}

/* Defers r and sends op->command, keyed when r has an Idempotency-Key (a
 * retry is then answered as the first time, never applied twice; ADR 015);
 * body is r's parsed body (NULL if it has none). Answers and frees op on
 * every failure. */
static void op_start(gw_request *r, cart_op *op, int status, const json_t *body)
{
	gw_api_keyed keyed = {0};
	const char *key = NULL;
	mp_writer *w = gw_api_text_buffer(op->api);
	op->status = status;
	if (!gw_api_idempotency_key(r, &key) ||
	    (op->async = gw_api_defer_encoded(r, w != NULL ? cart_command_encode(w, &op->command)
	                                                   : ORN_ENOMEM)) == NULL) {
		free(op);
		return;
	}
	if (key != NULL)
		gw_api_keyed_init(&keyed, r, "cart", op->customer, key, body);
	else
		gw_api_new_id(keyed.command_id, sizeof keyed.command_id);
	orn_rc rc =
	        gw_api_send_keyed(op->api, CART_AGGREGATE, op->customer, cart_command_type(op->command.kind),
	                          w, &keyed, op->customer, on_cart_replied, op);
	if (rc != ORN_OK) {
		gw_api_complete_failure(op->async, rc, NULL);
		free(op);
	}
}

/* A fresh op for the caller; false after answering. */
static bool begin(gw_request *r, gw_api *api, const gw_caller *caller, cart_op **op)
{
	*op = NULL;
	if (api->carts == NULL || api->catalog == NULL) {
		gw_respond_error(r, 503, "the cart is unavailable");
		return false;
	}
	if ((*op = calloc(1, sizeof **op)) == NULL) {
		gw_respond_error(r, 500, NULL);
		return false;
	}
	(*op)->api = api;
	snprintf((*op)->customer, sizeof(*op)->customer, "%s", caller->claims.sub);
	return true;
}

/* The {product_id} path parameter if it is an id; else answers 400, NULL. */
static const char *path_product(gw_request *r)
{
	return gw_api_path_id(r, "product_id");
}

/* ---- routes -------------------------------------------------------------- */

void gw_cart_get(gw_request *r, gw_api *api, const gw_caller *caller)
{
	answer_cart(api, caller->claims.sub, r, NULL);
}

void gw_cart_add_item(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body = NULL;
	cart_op *op = NULL;
	proj_product *p = NULL;
	if (!begin(r, api, caller, &op) || !gw_request_json(r, add_schema, &body))
		goto done;
	const char *product_id = gw_json_string(body, "product_id", "");
	int64_t quantity = gw_json_int(body, "quantity", 0);
	if ((p = malloc(sizeof *p)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	orn_rc rc = proj_catalog_get(api->catalog, product_id, p);
	if (rc == ORN_ENOTFOUND || rc == ORN_EINVAL) {
		gw_respond_error(r, 404, "no such product");
		goto done;
	}
	if (rc != ORN_OK) {
		gw_respond_error(r, 503, "the catalog is unavailable");
		goto done;
	}
	/* a line past CART_QUANTITY_MAX is the decider's to refuse (409 below) */
	cart_command *c = &op->command;
	c->kind = CART_ADD_ITEM;
	snprintf(c->line.product_id, sizeof c->line.product_id, "%s", product_id);
	snprintf(c->line.name, sizeof c->line.name, "%s", p->name);
	c->line.unit_price_cents = p->price_cents;
	c->line.quantity = quantity;
	snprintf(c->currency, sizeof c->currency, "%s", p->currency);
	op_start(r, op, 200, body);
	op = NULL;
done:
	free(p);
	free(op);
	json_decref(body);
}

void gw_cart_set_quantity(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body = NULL;
	cart_op *op = NULL;
	const char *product_id;
	if (!begin(r, api, caller, &op) || (product_id = path_product(r)) == NULL ||
	    !gw_request_json(r, set_schema, &body))
		goto done;
	op->command.kind = CART_SET_QUANTITY;
	snprintf(op->command.line.product_id, sizeof op->command.line.product_id, "%s", product_id);
	op->command.line.quantity = gw_json_int(body, "quantity", 0);
	op_start(r, op, 200, body);
	op = NULL;
done:
	free(op);
	json_decref(body);
}

void gw_cart_remove_item(gw_request *r, gw_api *api, const gw_caller *caller)
{
	cart_op *op = NULL;
	const char *product_id;
	if (!begin(r, api, caller, &op) || (product_id = path_product(r)) == NULL) {
		free(op);
		return;
	}
	op->command.kind = CART_REMOVE_ITEM;
	snprintf(op->command.line.product_id, sizeof op->command.line.product_id, "%s", product_id);
	op_start(r, op, 200, NULL);
}

void gw_cart_clear(gw_request *r, gw_api *api, const gw_caller *caller)
{
	cart_op *op = NULL;
	if (!begin(r, api, caller, &op))
		return;
	op->command.kind = CART_CLEAR;
	op_start(r, op, 204, NULL);
}
