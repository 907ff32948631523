/* gw_api_cart.c — the customer's cart: GET /cart, POST /cart/items,
 * PUT and DELETE /cart/items/{product_id}, DELETE /cart.
 *
 * The cart aggregate's id is the caller's user id (any logged-in role), so
 * nobody can address another's cart. Reads come from the carts read model
 * joined with the catalog: names and prices shown are the catalog's current
 * ones, and a line whose product was deleted is dropped from the view with a
 * notice while a RemoveItem is sent for it (fire and forget: the next view
 * no longer has it either way). AddItem snapshots the current name and price
 * into the command, as actors/cart.h expects.
 *
 * Writes are one command each: the handler validates, defers the request and
 * hands a heap cart_op to the bus; the reply's callback waits for
 * read-your-writes (gw_consistency) and answers with the cart, or maps the
 * rejection. The op is freed exactly once, by whichever callback answers. */
#include "gw_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_problem.h"
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

static void on_dropped_line_removed(void *closure, orn_rc rc, bus_reply *reply)
{
	(void)closure;
	if (rc != ORN_OK || reply->outcome != BUS_ACCEPTED)
		log_warn("a deleted product's cart line was not removed", "error",
		         rc != ORN_OK ? orn_strerror(rc) : reply->code);
}

/* Sends RemoveItem{product_id} to the customer's cart, without waiting. */
static void remove_dropped_line(gw_api *api, const char *customer, const char *product_id)
{
	char command_id[40];
	cart_command c = {.kind = CART_REMOVE_ITEM};
	mp_writer *w = gw_api_text_buffer(api);
	snprintf(c.line.product_id, sizeof c.line.product_id, "%s", product_id);
	gw_api_new_id(command_id, sizeof command_id);
	if (w == NULL || cart_command_encode(w, &c) != ORN_OK ||
	    gw_api_send(api, CART_AGGREGATE, customer, CART_CMD_REMOVE_ITEM, w, command_id, customer,
	                on_dropped_line_removed, NULL) != ORN_OK)
		log_warn("cannot send the removal of a deleted product's cart line", "product", product_id);
}

orn_rc gw_api_cart_read(gw_api *api, const char *customer, gw_cart_view *out)
{
	proj_cart *cart = NULL;
	proj_product *product = NULL;
	orn_rc rc = ORN_ENOMEM;
	memset(out, 0, sizeof *out);
	if (api->carts == NULL || api->catalog == NULL)
		return ORN_EUNAVAILABLE;
	if ((cart = malloc(sizeof *cart)) == NULL || (product = malloc(sizeof *product)) == NULL)
		goto done;
	rc = proj_carts_get(api->carts, customer, cart);
	if (rc == ORN_ENOTFOUND) {
		rc = ORN_OK; /* never had a cart: an empty one */
		goto done;
	}
	if (rc != ORN_OK) {
		rc = rc == ORN_EINVAL ? ORN_EINVAL : ORN_EUNAVAILABLE;
		goto done;
	}
	out->version = cart->version;
	if (cart->checked_out_at == cart->version)
		snprintf(out->checked_out_order, sizeof out->checked_out_order, "%s",
		         cart->state.last_order_id);
	for (size_t i = 0; i < cart->state.line_count; i++) {
		const cart_line *line = &cart->state.lines[i];
		orn_rc found = proj_catalog_get(api->catalog, line->product_id, product);
		if (found == ORN_ENOTFOUND || found == ORN_EINVAL) {
			snprintf(out->dropped[out->dropped_count++], CART_ID_MAX, "%s", line->product_id);
			continue;
		}
		if (found != ORN_OK) {
			rc = ORN_EUNAVAILABLE;
			goto done;
		}
		cart_line *shown = &out->lines[out->count++];
		*shown = *line;
		snprintf(shown->name, sizeof shown->name, "%s", product->name);
		shown->unit_price_cents = product->price_cents;
		if (out->currency[0] == '\0')
			snprintf(out->currency, sizeof out->currency, "%s", product->currency);
		/* bounded: 50 lines * 999 * 10^10 < 2^63 (actors/cart.h) */
		out->total_cents += product->price_cents * line->quantity;
	}
	for (size_t i = 0; i < out->dropped_count; i++)
		remove_dropped_line(api, customer, out->dropped[i]);
	rc = ORN_OK;
done:
	free(product);
	free(cart);
	return rc;
}

json_t *gw_api_cart_json(const gw_cart_view *view)
{
	json_t *items = json_array(), *o = NULL;
	if (items == NULL)
		return NULL;
	for (size_t i = 0; i < view->count; i++) {
		const cart_line *l = &view->lines[i];
		json_t *item = json_pack("{s:s, s:s, s:I, s:I, s:I}", "product_id", l->product_id, "name",
		                         l->name, "unit_price_cents", (json_int_t)l->unit_price_cents,
		                         "quantity", (json_int_t)l->quantity, "line_total_cents",
		                         (json_int_t)(l->unit_price_cents * l->quantity));
		if (item == NULL || json_array_append_new(items, item) != 0)
			goto fail;
	}
	o = json_pack("{s:o, s:I, s:o}", "items", items, "total_cents", (json_int_t)view->total_cents,
	              "currency", view->currency[0] ? json_string(view->currency) : json_null());
	items = NULL;
	if (o == NULL || view->dropped_count == 0)
		return o;
	json_t *notices = json_array();
	if (notices == NULL || json_object_set_new(o, "notices", notices) != 0)
		goto fail;
	for (size_t i = 0; i < view->dropped_count; i++) {
		json_t *n = json_pack("{s:s, s:s}", "product_id", view->dropped[i], "message",
		                      "this product is no longer sold and was removed from your cart");
		if (n == NULL || json_array_append_new(notices, n) != 0)
			goto fail;
	}
	return o;
fail:
	json_decref(items);
	json_decref(o);
	return NULL;
}

/* The cart view answered now (r) or through async (a): 200, or 503. */
static void answer_cart(gw_api *api, const char *customer, gw_request *r, gw_async *a)
{
	gw_cart_view *view = malloc(sizeof *view);
	orn_rc rc = view != NULL ? gw_api_cart_read(api, customer, view) : ORN_ENOMEM;
	json_t *body = rc == ORN_OK ? gw_api_cart_json(view) : NULL;
	free(view);
	if (body != NULL) {
		if (r != NULL)
			gw_respond_json(r, 200, body);
		else
			gw_async_complete_json(a, 200, body);
		return;
	}
	json_t *problem = gw_problem_new(rc == ORN_ENOMEM || rc == ORN_OK ? 500 : 503,
	                                 rc == ORN_ENOMEM || rc == ORN_OK ? NULL : "the cart is unavailable");
	if (r != NULL)
		gw_respond_problem(r, problem);
	else
		gw_async_complete_problem(a, problem);
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
	if (op->api->consistency == NULL ||
	    gw_consistency_wait(op->api->consistency, op->seq, GW_API_READ_YOUR_WRITES_MS, op_answer, op) !=
	            ORN_OK)
		op_answer(op, ORN_OK);
}

/* Defers r and sends op->command, keyed when r has an Idempotency-Key (a
 * retry is then answered as the first time, never applied twice; ADR 015);
 * answers and frees op on every failure. */
static void op_start(gw_request *r, cart_op *op, int status)
{
	gw_api_keyed keyed = {0};
	const char *key = NULL;
	mp_writer *w = gw_api_text_buffer(op->api);
	op->status = status;
	if (!gw_api_idempotency_key(r, &key)) {
		free(op);
		return;
	}
	if (w == NULL || cart_command_encode(w, &op->command) != ORN_OK) {
		gw_respond_error(r, 500, NULL);
		free(op);
		return;
	}
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL) {
		free(op);
		return;
	}
	if (key != NULL)
		gw_api_keyed_init(&keyed, r, "cart", op->customer, key);
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

/* The caller's claims and a fresh op; false after answering. */
static bool begin(gw_request *r, gw_api *api, gw_claims *claims, cart_op **op)
{
	*op = NULL;
	if (!gw_api_authorize(r, api, false, claims))
		return false;
	if (api->carts == NULL || api->catalog == NULL) {
		gw_respond_error(r, 503, "the cart is unavailable");
		return false;
	}
	if ((*op = calloc(1, sizeof **op)) == NULL) {
		gw_respond_error(r, 500, NULL);
		return false;
	}
	(*op)->api = api;
	snprintf((*op)->customer, sizeof(*op)->customer, "%s", claims->sub);
	return true;
}

/* The {product_id} path parameter if it is an id; else answers 400, NULL. */
static const char *path_product(gw_request *r)
{
	return gw_api_path_id(r, "product_id");
}

/* ---- routes -------------------------------------------------------------- */

static void get_cart(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	if (!gw_api_authorize(r, api, false, &claims))
		return;
	answer_cart(api, claims.sub, r, NULL);
}

static void add_item(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	json_t *body = NULL;
	cart_op *op = NULL;
	proj_product *p = NULL;
	if (!begin(r, api, &claims, &op) || !gw_request_json(r, add_schema, &body))
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
	op_start(r, op, 200);
	op = NULL;
done:
	free(p);
	free(op);
	json_decref(body);
}

static void set_quantity(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	json_t *body = NULL;
	cart_op *op = NULL;
	const char *product_id;
	if (!begin(r, api, &claims, &op) || (product_id = path_product(r)) == NULL ||
	    !gw_request_json(r, set_schema, &body))
		goto done;
	op->command.kind = CART_SET_QUANTITY;
	snprintf(op->command.line.product_id, sizeof op->command.line.product_id, "%s", product_id);
	op->command.line.quantity = gw_json_int(body, "quantity", 0);
	op_start(r, op, 200);
	op = NULL;
done:
	free(op);
	json_decref(body);
}

static void remove_item(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	cart_op *op = NULL;
	const char *product_id;
	if (!begin(r, api, &claims, &op) || (product_id = path_product(r)) == NULL) {
		free(op);
		return;
	}
	op->command.kind = CART_REMOVE_ITEM;
	snprintf(op->command.line.product_id, sizeof op->command.line.product_id, "%s", product_id);
	op_start(r, op, 200);
}

static void clear_cart(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	cart_op *op = NULL;
	if (!begin(r, api, &claims, &op))
		return;
	op->command.kind = CART_CLEAR;
	op_start(r, op, 204);
}

orn_rc gw_api_register_cart(gw_api *api)
{
	static const gw_api_route routes[] = {
	        {GW_GET, "/api/v1/cart", get_cart},
	        {GW_DELETE, "/api/v1/cart", clear_cart},
	        {GW_POST, "/api/v1/cart/items", add_item},
	        {GW_PUT, "/api/v1/cart/items/{product_id}", set_quantity},
	        {GW_DELETE, "/api/v1/cart/items/{product_id}", remove_item},
	};
	return gw_api_register_routes(api, routes, ORN_ARRAY_LEN(routes));
}
