/* gw_api_admin.c — the admin routes (role admin): products and inventory.
 *
 * Reads (GET product, GET inventory) answer at once from LMDB. Writes are
 * chains of commands run on the event loop: the handler validates
 * everything, defers the request and hands a heap-allocated admin_op to the
 * first command; each bus callback sends the next step or finishes. The op
 * never lives in the request's arena: a chain that outlives the request's
 * deadline (the client got 503) still runs to its end, so a compensation is
 * never skipped; its late answer is discarded by gw_http.
 *
 * Create (docs/adr/005): ClaimSku -> CreateProduct -> CreateStockItem, then
 * read-your-writes (gw_consistency) and the answer from the read models.
 * A rejected CreateProduct releases the claim before answering. A timed-out
 * one does not: it may have been applied, and an orphaned claim fails safe
 * (a retry with the same Idempotency-Key completes it) where a wrong release
 * could let two products hold one sku.
 *
 * Idempotency-Key (POST /admin/products, POST .../adjustments): the product
 * id (or the adjustment's command id) is a hash of the admin's id and the
 * key, so a retried request finds its own product ("exists" counts as done)
 * and is answered with it. Nothing is stored per key: a replay with another
 * body returns the product the key created, except when its sku differs
 * (422, and the new claim is released). Claims and releases use a fresh
 * command id per attempt: their deciders are idempotent, and a deterministic
 * id would let the server's de-duplication window swallow a re-claim made
 * after a compensating release.
 *
 * Low-stock thresholds: a create sends CreateStockItem with the body's
 * low_stock_threshold, or the configured default (ORION_LOW_STOCK_THRESHOLD);
 * a PATCH with low_stock_threshold sends SetLowStockThreshold to the stock
 * item (after UpdateProduct when product fields come too). A threshold that
 * is not an integer 0..1e9 is answered 422 before anything else of the body
 * is looked at. */
#include "gw_api_admin.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "currency.h"
#include "gw_api-internal.h"
#include "gw_problem.h"
#include "gw_views.h"
#include "log.h"
#include "product.h"
#include "sku.h"
#include "stock.h"

#define IDEMPOTENCY_HEADER      "Idempotency-Key"
#define INVENTORY_DEFAULT_LIMIT 20
#define BELOW_MAX               STOCK_QUANTITY_MAX
#define THRESHOLD_FIELD         "low_stock_threshold"

static const gw_field create_schema[] = {
        {.name = "sku", .type = GW_STRING, .required = true, .min = 1, .max = SKU_MAX - 1},
        {.name = "name", .type = GW_STRING, .required = true, .min = 1, .max = PRODUCT_NAME_MAX - 1},
        {.name = "description",
         .type = GW_STRING,
         .required = true,
         .min = 0,
         .max = PRODUCT_DESCRIPTION_MAX - 1,
         .pattern = GW_PATTERN_TEXT},
        {.name = "price_cents", .type = GW_INT, .required = true, .min = 0, .max = PRODUCT_PRICE_MAX},
        {.name = "currency",
         .type = GW_STRING,
         .required = true,
         .min = 3,
         .max = 3,
         .pattern = GW_PATTERN_UPPER},
        {.name = "category",
         .type = GW_STRING,
         .required = true,
         .min = 1,
         .max = PRODUCT_CATEGORY_MAX - 1,
         .pattern = GW_PATTERN_SLUG},
        {.name = "initial_stock", .type = GW_INT, .required = true, .min = 0, .max = STOCK_QUANTITY_MAX},
        {.name = THRESHOLD_FIELD, .type = GW_INT, .min = 0, .max = STOCK_QUANTITY_MAX},
        {.name = NULL},
};

static const gw_field update_schema[] = {
        {.name = "name", .type = GW_STRING, .min = 1, .max = PRODUCT_NAME_MAX - 1},
        {.name = "description",
         .type = GW_STRING,
         .min = 0,
         .max = PRODUCT_DESCRIPTION_MAX - 1,
         .pattern = GW_PATTERN_TEXT},
        {.name = "price_cents", .type = GW_INT, .min = 0, .max = PRODUCT_PRICE_MAX},
        {.name = "category",
         .type = GW_STRING,
         .min = 1,
         .max = PRODUCT_CATEGORY_MAX - 1,
         .pattern = GW_PATTERN_SLUG},
        {.name = THRESHOLD_FIELD, .type = GW_INT, .min = 0, .max = STOCK_QUANTITY_MAX},
        {.name = NULL},
};

static const gw_field adjust_schema[] = {
        {.name = "delta",
         .type = GW_INT,
         .required = true,
         .min = -STOCK_QUANTITY_MAX,
         .max = STOCK_QUANTITY_MAX},
        {.name = "reason", .type = GW_STRING, .required = true, .min = 1, .max = STOCK_REASON_MAX - 1},
        {.name = NULL},
};

/* One write in flight: everything its chain needs, owned by the chain. */
typedef struct admin_op {
	gw_api *api;
	gw_async *async;
	char actor[ENV_ID_MAX];
	char product_id[SKU_PRODUCT_ID_MAX];
	char sku_key[SKU_KEY_MAX];
	char command_id[ENV_ID_MAX]; /* update and adjust: the command's id */
	char request[ENV_REQ_MAX];   /* adjust with an Idempotency-Key: its fingerprint (ADR 015) */
	product_command product;     /* create, update */
	stock_command stock;         /* create (quantity, threshold), adjust, update (threshold) */
	bool update_fields;          /* update: the body has product fields */
	bool update_threshold;       /* update: the body has a low-stock threshold */
	uint64_t seq;                /* highest stream sequence committed by the chain */
	bool created;                /* create: this request created the product */
	bool was_deleted;            /* delete: the product was deleted before */
	/* create: the answer held while the compensating release runs */
	orn_rc failed_rc;
	bus_reply failed_reply;
} admin_op;

/* ---- small helpers ----------------------------------------------------- */

static admin_op *op_new(gw_api *api, const gw_claims *claims, const char *product_id)
{
	admin_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return NULL;
	op->api = api;
	snprintf(op->actor, sizeof op->actor, "%s", claims->sub);
	snprintf(op->product_id, sizeof op->product_id, "%s", product_id);
	return op;
}

/* Answers with a problem and frees the op. */
static void op_finish_problem(admin_op *op, int status, const char *detail)
{
	gw_async_complete_problem(op->async, gw_problem_new(status, detail));
	free(op);
}

static void op_finish_failure(admin_op *op, orn_rc rc, const bus_reply *reply)
{
	gw_api_complete_failure(op->async, rc, reply);
	free(op);
}

static void op_note_seq(admin_op *op, const bus_reply *reply)
{
	if (reply->seq > op->seq)
		op->seq = reply->seq;
}

static bool accepted(orn_rc rc, const bus_reply *reply)
{
	return rc == ORN_OK && reply->outcome == BUS_ACCEPTED;
}

static bool rejected_with(orn_rc rc, const bus_reply *reply, const char *code)
{
	return rc == ORN_OK && reply->outcome == BUS_REJECTED && strcmp(reply->code, code) == 0;
}

/* Calls fn(op, rc) once the read models hold op->seq. */
static void op_wait(admin_op *op, gw_consistency_fn *fn)
{
	gw_api_wait_for(op->api, op->seq, fn, op);
}

/* "<prefix>-<32 hex>" from fresh randomness. */
static void random_id(char *out, size_t cap, const char *prefix)
{
	unsigned char bytes[16];
	char hex[2 * sizeof bytes + 1];
	randombytes_buf(bytes, sizeof bytes);
	sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
	snprintf(out, cap, "%s%s", prefix, hex);
}

/* "<prefix><32 hex>" hashed from the admin, the purpose and the key: the
 * same retried request gets the same id, another admin never does. */
static void derived_id(char *out, size_t cap, const char *prefix, const char *purpose, const char *sub,
                       const char *key)
{
	static const unsigned char domain[] = "orion.admin.idem";
	unsigned char digest[16];
	char hex[2 * sizeof digest + 1];
	crypto_generichash_state st;
	crypto_generichash_init(&st, domain, sizeof domain - 1, sizeof digest);
	crypto_generichash_update(&st, (const unsigned char *)purpose, strlen(purpose) + 1);
	crypto_generichash_update(&st, (const unsigned char *)sub, strlen(sub) + 1);
	crypto_generichash_update(&st, (const unsigned char *)key, strlen(key));
	crypto_generichash_final(&st, digest, sizeof digest);
	sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
	snprintf(out, cap, "%s%s", prefix, hex);
}

/* The Idempotency-Key header into *key (NULL when absent). False, after
 * answering 400, when it is not 1..64 id characters. */
static bool idempotency_key(gw_request *r, const char **key)
{
	*key = gw_request_header(r, IDEMPOTENCY_HEADER);
	if (*key == NULL || gw_valid_id(*key))
		return true;
	gw_api_respond_field_error(r, 400, "the Idempotency-Key header is invalid", IDEMPOTENCY_HEADER,
	                           "must be 1..64 characters of [A-Za-z0-9_-]");
	return false;
}

/* Answers 422 and returns true when the body has a low_stock_threshold that
 * is not an integer 0..STOCK_QUANTITY_MAX. A body that does not parse is left
 * to the schema (400). */
static bool threshold_refused(gw_request *r)
{
	size_t len = 0;
	const unsigned char *raw = gw_request_body(r, &len);
	json_t *body = raw != NULL && len > 0
	                       ? json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL)
	                       : NULL;
	json_t *value = json_is_object(body) ? json_object_get(body, THRESHOLD_FIELD) : NULL;
	bool refused = value != NULL && (!json_is_integer(value) || json_integer_value(value) < 0 ||
	                                 json_integer_value(value) > STOCK_QUANTITY_MAX);
	if (refused)
		gw_api_respond_field_error(r, 422, "the low-stock threshold is invalid", THRESHOLD_FIELD,
		                           "must be an integer 0..1000000000");
	json_decref(body);
	return refused;
}

/* Copies member name of body into out (cap bytes). False, after adding an
 * error to problem, when its bytes do not fit: the schema bounds code points,
 * the domain bounds bytes. */
static bool copy_text(const json_t *body, const char *name, char *out, size_t cap, json_t *problem)
{
	const char *s = gw_json_string(body, name, NULL);
	if (s == NULL)
		return true;
	if (strlen(s) >= cap) {
		gw_problem_add_error(problem, name, "too long in UTF-8 bytes");
		return false;
	}
	memcpy(out, s, strlen(s) + 1);
	return true;
}

/* Sends one encoded command for op; on a send error answers 503 and frees. */
static bool op_send(admin_op *op, const char *aggregate, const char *id, const char *type, const mp_writer *w,
                    const char *command_id, gw_bus_fn *fn)
{
	gw_api_keyed keyed = {0};
	snprintf(keyed.command_id, sizeof keyed.command_id, "%s", command_id);
	snprintf(keyed.request, sizeof keyed.request, "%s", op->request);
	orn_rc rc = gw_api_send_keyed(op->api, aggregate, id, type, w, &keyed, op->actor, fn, op);
	if (rc == ORN_OK)
		return true;
	op_finish_failure(op, rc, NULL);
	return false;
}

/* Encodes c as a sku command and sends it to the op's sku with a fresh id. */
static void send_sku(admin_op *op, sku_command_kind kind, gw_bus_fn *fn)
{
	char command_id[ENV_ID_MAX];
	sku_command c = {.kind = kind};
	snprintf(c.product_id, sizeof c.product_id, "%s", op->product_id);
	random_id(command_id, sizeof command_id, kind == SKU_CLAIM ? "claim-sku-" : "release-sku-");
	mp_writer *w = mp_writer_create();
	if (w == NULL || sku_command_encode(w, &c) != ORN_OK) {
		mp_writer_destroy(w);
		op_finish_problem(op, 500, NULL);
		return;
	}
	op_send(op, SKU_AGGREGATE, op->sku_key, sku_command_type(kind), w, command_id, fn);
	mp_writer_destroy(w);
}

static void send_product(admin_op *op, const char *command_id, gw_bus_fn *fn)
{
	mp_writer *w = mp_writer_create();
	if (w == NULL || product_command_encode(w, &op->product) != ORN_OK) {
		mp_writer_destroy(w);
		op_finish_problem(op, 500, NULL);
		return;
	}
	op_send(op, PRODUCT_AGGREGATE, op->product_id, product_command_type(op->product.kind), w, command_id,
	        fn);
	mp_writer_destroy(w);
}

static void send_stock(admin_op *op, const char *command_id, gw_bus_fn *fn)
{
	mp_writer *w = mp_writer_create();
	if (w == NULL || stock_command_encode(w, &op->stock) != ORN_OK) {
		mp_writer_destroy(w);
		op_finish_problem(op, 500, NULL);
		return;
	}
	op_send(op, STOCK_AGGREGATE, op->product_id, stock_command_type(op->stock.kind), w, command_id, fn);
	mp_writer_destroy(w);
}

/* ---- JSON of the answers ---------------------------------------------- */

/* The StockLevels of the contract. */
static json_t *levels_json(const proj_stock_level *level)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:b}", "on_hand", (json_int_t)level->on_hand, "reserved",
	                 (json_int_t)level->reserved, "available", (json_int_t)level->available,
	                 THRESHOLD_FIELD, (json_int_t)level->threshold, "low", level->low);
}

/* Answers the AdminProduct p with status, now (r) or through op's async. */
static void answer_product(gw_api *api, gw_request *r, gw_async *a, int status, const proj_product *p)
{
	mp_writer *w = gw_api_text_buffer(api);
	if (w != NULL)
		gw_view_product(w, p, true);
	if (w == NULL && r != NULL)
		gw_respond_error(r, 500, NULL);
	else if (w == NULL)
		gw_async_complete_problem(a, gw_problem_new(500, NULL));
	else if (r != NULL)
		gw_api_respond_written(r, status, w);
	else
		gw_api_complete_written(a, status, w);
}

/* The product as the read models hold it; the stock levels from the
 * inventory model when the catalog's snapshot has none. */
static orn_rc read_product(gw_api *api, const char *id, proj_product *p)
{
	orn_rc rc = proj_catalog_get(api->catalog, id, p);
	proj_stock_level level;
	if (rc == ORN_OK && !p->has_stock && api->inventory != NULL &&
	    proj_inventory_get(api->inventory, id, &level) == ORN_OK) {
		p->has_stock = true;
		p->on_hand = level.on_hand;
		p->reserved = level.reserved;
		p->available = level.available;
		p->low_stock_threshold = level.threshold;
		p->low = level.low;
	}
	return rc;
}

/* ---- POST /admin/products ---------------------------------------------- */

static void on_mismatch_released(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	if (!accepted(rc, reply))
		log_warn("sku claim left after an Idempotency-Key mismatch", "product", op->product_id, "sku",
		         op->sku_key);
	op_finish_problem(op, 422, "this Idempotency-Key was used for a product with another sku");
}

static void on_create_visible(void *closure, orn_rc wait_rc)
{
	admin_op *op = closure;
	proj_product *p = malloc(sizeof *p);
	char key[SKU_KEY_MAX];
	if (p == NULL) {
		op_finish_problem(op, 500, NULL);
		return;
	}
	orn_rc rc = read_product(op->api, op->product_id, p);
	if (rc == ORN_OK) {
		if (sku_key_for(p->sku, key, sizeof key) == ORN_OK && strcmp(key, op->sku_key) != 0) {
			/* a replayed key with another sku: give back what this request claimed */
			free(p);
			send_sku(op, SKU_RELEASE, on_mismatch_released);
			return;
		}
	} else if (op->created) {
		/* the read models are late (wait_rc): answer with what was written */
		memset(p, 0, sizeof *p);
		snprintf(p->id, sizeof p->id, "%s", op->product_id);
		const product_fields *f = &op->product.fields;
		memcpy(p->sku, f->sku, sizeof p->sku);
		memcpy(p->name, f->name, sizeof p->name);
		memcpy(p->description, f->description, sizeof p->description);
		memcpy(p->currency, f->currency, sizeof p->currency);
		memcpy(p->category, f->category, sizeof p->category);
		p->price_cents = f->price_cents;
		p->on_hand = p->available = op->stock.quantity;
		p->low_stock_threshold = op->stock.threshold;
		p->low = op->stock.quantity < op->stock.threshold;
		log_warn("read models late after a create", "product", op->product_id, "wait",
		         orn_strerror(wait_rc));
	} else {
		/* "exists" but not readable yet: the first request with this key still runs */
		free(p);
		op_finish_problem(op, 409, "a request with this Idempotency-Key is still in progress; retry");
		return;
	}
	answer_product(op->api, NULL, op->async, 201, p);
	free(p);
	free(op);
}

static void on_stock_created(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	if (!accepted(rc, reply) && !rejected_with(rc, reply, "exists")) {
		/* the product exists without stock: a retry with the same key completes it */
		op_finish_failure(op, rc, reply);
		return;
	}
	op_note_seq(op, reply);
	op_wait(op, on_create_visible);
}

static void continue_with_stock(admin_op *op)
{
	char command_id[ENV_ID_MAX];
	snprintf(command_id, sizeof command_id, "%s:stock", op->product_id);
	op->stock.kind = STOCK_CREATE;
	send_stock(op, command_id, on_stock_created);
}

static void on_create_released(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	if (!accepted(rc, reply))
		log_warn("sku claim left after a refused create", "product", op->product_id, "sku",
		         op->sku_key);
	if (strcmp(op->failed_reply.code, "deleted") == 0)
		op_finish_problem(op, 409, "the product of this Idempotency-Key was deleted; use a new key");
	else
		op_finish_failure(op, op->failed_rc, &op->failed_reply);
}

static void on_product_created(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	if (accepted(rc, reply) || rejected_with(rc, reply, "exists")) {
		op->created = accepted(rc, reply) && !reply->duplicate;
		op_note_seq(op, reply);
		continue_with_stock(op);
		return;
	}
	if (rc != ORN_OK || reply->outcome != BUS_REJECTED) {
		/* unknown outcome: keep the claim (fails safe, a retry completes) */
		op_finish_failure(op, rc, reply);
		return;
	}
	/* refused for good: compensate, then answer */
	op->failed_rc = rc;
	op->failed_reply = *reply;
	op->failed_reply.view = NULL;
	send_sku(op, SKU_RELEASE, on_create_released);
}

static void on_sku_claimed(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	char command_id[ENV_ID_MAX];
	if (!accepted(rc, reply)) {
		op_finish_failure(op, rc, reply); /* sku_taken: 409 */
		return;
	}
	op_note_seq(op, reply);
	snprintf(command_id, sizeof command_id, "%s:create", op->product_id);
	send_product(op, command_id, on_product_created);
}

void gw_admin_create_product(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const gw_claims *claims = &caller->claims;
	json_t *body = NULL, *problem = NULL;
	const char *key;
	char product_id[SKU_PRODUCT_ID_MAX];
	admin_op *op = NULL;
	if (!idempotency_key(r, &key) || threshold_refused(r) || !gw_request_json(r, create_schema, &body))
		return;
	if (key != NULL)
		derived_id(product_id, sizeof product_id, "p", "product", claims->sub, key);
	else
		random_id(product_id, sizeof product_id, "p");
	if ((op = op_new(api, claims, product_id)) == NULL ||
	    (problem = gw_problem_new(400, "the request body is invalid")) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	product_fields *f = &op->product.fields;
	op->product.kind = PRODUCT_CREATE;
	bool ok = copy_text(body, "sku", f->sku, sizeof f->sku, problem);
	if (ok && (!sku_valid(f->sku) || sku_key_for(f->sku, op->sku_key, sizeof op->sku_key) != ORN_OK)) {
		gw_problem_add_error(problem, "sku", "must be 1..64 characters of [A-Za-z0-9_.-]");
		ok = false;
	}
	ok &= copy_text(body, "name", f->name, sizeof f->name, problem);
	ok &= copy_text(body, "description", f->description, sizeof f->description, problem);
	bool currency = copy_text(body, "currency", f->currency, sizeof f->currency, problem);
	if (currency && !currency_valid_iso4217(f->currency)) {
		gw_problem_add_error(problem, "currency",
		                     "must be an ISO 4217 code of a currency in circulation");
		currency = false;
	}
	ok &= currency;
	ok &= copy_text(body, "category", f->category, sizeof f->category, problem);
	f->price_cents = gw_json_int(body, "price_cents", 0);
	op->stock.quantity = gw_json_int(body, "initial_stock", 0);
	op->stock.threshold = gw_json_int(body, THRESHOLD_FIELD, api->low_stock_threshold);
	if (!ok) {
		gw_respond_problem(r, problem);
		problem = NULL;
		goto done;
	}
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done;
	send_sku(op, SKU_CLAIM, on_sku_claimed);
	op = NULL; /* the chain owns it */
done:
	json_decref(problem);
	json_decref(body);
	free(op);
}

/* ---- GET /admin/products/{id} ------------------------------------------ */

void gw_admin_get_product(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const char *id;
	proj_product *p = NULL;
	if ((id = gw_api_path_id(r, "id")) == NULL)
		return;
	if ((p = malloc(sizeof *p)) == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	orn_rc rc = read_product(api, id, p);
	if (rc == ORN_OK)
		answer_product(api, r, NULL, 200, p);
	else if (rc == ORN_ENOTFOUND || rc == ORN_EINVAL)
		gw_respond_error(r, 404, "no such product");
	else
		gw_respond_error(r, 503, "the catalog is unavailable");
	free(p);
}

/* ---- PATCH /admin/products/{id} ---------------------------------------- */

static void answer_updated(admin_op *op)
{
	proj_product *p = malloc(sizeof *p);
	orn_rc rc = p != NULL ? read_product(op->api, op->product_id, p) : ORN_ENOMEM;
	if (rc == ORN_OK)
		answer_product(op->api, NULL, op->async, 200, p);
	else if (rc == ORN_ENOTFOUND)
		gw_async_complete_problem(op->async, gw_problem_new(404, "no such product"));
	else
		gw_async_complete_problem(op->async, gw_problem_new(503, "the catalog is unavailable"));
	free(p);
	free(op);
}

static void on_update_visible(void *closure, orn_rc wait_rc)
{
	admin_op *op = closure;
	if (wait_rc != ORN_OK)
		log_warn("read models late after an update", "product", op->product_id, "wait",
		         orn_strerror(wait_rc));
	answer_updated(op);
}

static void on_threshold_set(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	if (!accepted(rc, reply)) {
		op_finish_failure(op, rc, reply); /* not_found: 404 */
		return;
	}
	op_note_seq(op, reply);
	op_wait(op, on_update_visible);
}

/* SetLowStockThreshold to the product's stock item (a fresh command id: the
 * same threshold again is a no-op of the decider, not of the stream). */
static void send_threshold(admin_op *op)
{
	char command_id[ENV_ID_MAX];
	random_id(command_id, sizeof command_id, "threshold-");
	send_stock(op, command_id, on_threshold_set);
}

static void on_product_updated(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	bool no_change = rejected_with(rc, reply, "no_change");
	if (!no_change && !accepted(rc, reply)) {
		op_finish_failure(op, rc, reply); /* not_found, deleted: 404; invalid: 400 */
		return;
	}
	if (!no_change)
		op_note_seq(op, reply);
	if (op->update_threshold)
		send_threshold(op);
	else if (no_change)
		answer_updated(op);
	else
		op_wait(op, on_update_visible);
}

void gw_admin_update_product(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const gw_claims *claims = &caller->claims;
	json_t *body = NULL, *problem = NULL;
	const char *id;
	admin_op *op = NULL;
	if ((id = gw_api_path_id(r, "id")) == NULL || threshold_refused(r) ||
	    !gw_request_json(r, update_schema, &body))
		return;
	if ((op = op_new(api, claims, id)) == NULL ||
	    (problem = gw_problem_new(400, "the request body is invalid")) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	product_command *c = &op->product;
	c->kind = PRODUCT_UPDATE;
	bool ok = true;
	if (json_object_size(body) == 0) {
		gw_problem_add_error(problem, "body",
		                     "at least one of name, description, price_cents, category, "
		                     "low_stock_threshold is required");
		ok = false;
	}
	ok &= copy_text(body, "name", c->fields.name, sizeof c->fields.name, problem);
	ok &= copy_text(body, "description", c->fields.description, sizeof c->fields.description, problem);
	ok &= copy_text(body, "category", c->fields.category, sizeof c->fields.category, problem);
	if (!ok) {
		gw_respond_problem(r, problem);
		problem = NULL;
		goto done;
	}
	c->fields.price_cents = gw_json_int(body, "price_cents", 0);
	c->present = (json_object_get(body, "name") ? PRODUCT_FIELD_NAME : 0) |
	             (json_object_get(body, "description") ? PRODUCT_FIELD_DESCRIPTION : 0) |
	             (json_object_get(body, "price_cents") ? PRODUCT_FIELD_PRICE : 0) |
	             (json_object_get(body, "category") ? PRODUCT_FIELD_CATEGORY : 0);
	op->update_threshold = json_object_get(body, THRESHOLD_FIELD) != NULL;
	op->update_fields = c->present != 0;
	op->stock.kind = STOCK_SET_THRESHOLD;
	op->stock.threshold = gw_json_int(body, THRESHOLD_FIELD, 0);
	random_id(op->command_id, sizeof op->command_id, "update-");
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done;
	if (op->update_fields)
		send_product(op, op->command_id, on_product_updated);
	else
		send_threshold(op);
	op = NULL;
done:
	json_decref(problem);
	json_decref(body);
	free(op);
}

/* ---- DELETE /admin/products/{id} --------------------------------------- */

static void on_delete_visible(void *closure, orn_rc wait_rc)
{
	admin_op *op = closure;
	(void)wait_rc; /* late read models only delay the 404 of a later GET */
	if (op->was_deleted)
		op_finish_problem(op, 404, "no such product");
	else {
		gw_async_complete_empty(op->async, 204);
		free(op);
	}
}

static void on_delete_released(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	if (!accepted(rc, reply)) {
		/* deleted but the sku is still held: a retried DELETE releases it */
		log_warn("sku not released after a delete", "product", op->product_id, "sku", op->sku_key);
		op_finish_failure(op, rc, reply);
		return;
	}
	op_note_seq(op, reply);
	op_wait(op, on_delete_visible);
}

static void on_product_deleted(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	if (rejected_with(rc, reply, "deleted")) {
		op->was_deleted = true;
	} else if (!accepted(rc, reply)) {
		op_finish_failure(op, rc, reply);
		return;
	}
	op_note_seq(op, reply);
	send_sku(op, SKU_RELEASE, on_delete_released);
}

/* The product's own view (not the catalog, which may lag, and which forgets
 * the sku of a deleted product) says whether it exists and which sku to
 * release, also for a DELETE retried after a crash between the two steps. */
static void on_product_viewed(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	char command_id[ENV_ID_MAX];
	product_state state;
	if (!accepted(rc, reply) || reply->view == NULL) {
		op_finish_failure(op, rc, rc == ORN_OK && reply->outcome != BUS_ACCEPTED ? reply : NULL);
		return;
	}
	product_state_init(&state);
	if (product_kind.restore(&state, reply->view, reply->view_len) != ORN_OK) {
		op_finish_problem(op, 503, "the product could not be read");
		return;
	}
	if (!state.exists) {
		op_finish_problem(op, 404, "no such product");
		return;
	}
	if (sku_key_for(state.fields.sku, op->sku_key, sizeof op->sku_key) != ORN_OK) {
		op_finish_problem(op, 500, NULL);
		return;
	}
	if (state.deleted) {
		op->was_deleted = true;
		send_sku(op, SKU_RELEASE, on_delete_released);
		return;
	}
	op->product.kind = PRODUCT_DELETE;
	snprintf(command_id, sizeof command_id, "%s:delete", op->product_id);
	send_product(op, command_id, on_product_deleted);
}

void gw_admin_delete_product(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const gw_claims *claims = &caller->claims;
	const char *id;
	char command_id[ENV_ID_MAX];
	admin_op *op;
	if ((id = gw_api_path_id(r, "id")) == NULL)
		return;
	if ((op = op_new(api, claims, id)) == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL) {
		free(op);
		return;
	}
	mp_writer *w = mp_writer_create();
	if (w != NULL)
		mp_write_nil(w);
	if (w == NULL || mp_writer_status(w) != ORN_OK) {
		mp_writer_destroy(w);
		op_finish_problem(op, 500, NULL);
		return;
	}
	random_id(command_id, sizeof command_id, "get-");
	op_send(op, PRODUCT_AGGREGATE, op->product_id, BUS_CMD_GET, w, command_id, on_product_viewed);
	mp_writer_destroy(w);
}

/* ---- GET /admin/inventory ---------------------------------------------- */

static json_t *inventory_json(const proj_inventory_page *page, const proj_product_label *labels)
{
	json_t *items = json_array(), *o = NULL;
	if (items == NULL)
		return NULL;
	for (size_t i = 0; i < page->count; i++) {
		const proj_stock_level *s = &page->items[i];
		if (labels[i].found && labels[i].deleted)
			continue; /* deleted products are gone from every listing */
		json_t *item =
		        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "product_id", s->id, "sku",
		                  labels[i].found ? labels[i].sku : "", "name",
		                  labels[i].found ? labels[i].name : "", "on_hand", (json_int_t)s->on_hand,
		                  "reserved", (json_int_t)s->reserved, "available", (json_int_t)s->available,
		                  THRESHOLD_FIELD, (json_int_t)s->threshold, "low", (int)s->low);
		if (item == NULL || json_array_append_new(items, item) != 0)
			goto fail;
	}
	o = json_pack("{s:o, s:o}", "items", items, "next_cursor",
	              page->next_cursor[0] ? json_string(page->next_cursor) : json_null());
	return o;
fail:
	json_decref(items);
	return NULL;
}

void gw_admin_list_inventory(gw_request *r, gw_api *api, const gw_caller *caller)
{
	int64_t below = 0, limit = INVENTORY_DEFAULT_LIMIT;
	bool has_below, has_limit;
	proj_inventory_page *page = NULL;
	proj_product_label *labels = NULL;
	const char *ids[PROJ_INVENTORY_PAGE_MAX];
	json_t *problem = NULL;
	if ((problem = gw_problem_new(400, "the query is invalid")) == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	const char *cursor;
	bool ok = gw_api_query_int(r, "below", 0, BELOW_MAX, &below, &has_below, problem);
	ok &= gw_api_query_int(r, "limit", 1, PROJ_INVENTORY_PAGE_MAX, &limit, &has_limit, problem);
	ok &= gw_api_query_cursor(r, &cursor, problem);
	if (!ok) {
		gw_respond_problem(r, problem);
		return;
	}
	proj_inventory_query q = {
	        .has_below = has_below, .below = below, .limit = (unsigned)limit, .cursor = cursor};
	page = malloc(sizeof *page);
	labels = malloc(sizeof *labels * PROJ_INVENTORY_PAGE_MAX);
	if (page == NULL || labels == NULL) {
		json_decref(problem);
		gw_respond_error(r, 500, NULL);
	} else {
		orn_rc rc = proj_inventory_list(api->inventory, &q, page);
		for (size_t i = 0; rc == ORN_OK && i < page->count; i++)
			ids[i] = page->items[i].id;
		if (rc == ORN_OK && page->count > 0 &&
		    proj_catalog_labels(api->catalog, ids, page->count, labels) != ORN_OK)
			rc = ORN_EUNAVAILABLE; /* not the cursor's fault */
		gw_api_answer_list(r, rc, rc == ORN_OK ? inventory_json(page, labels) : NULL, problem,
		                   "the inventory is unavailable");
	}
	free(labels);
	free(page);
}

/* ---- POST /admin/inventory/{product_id}/adjustments --------------------- */

/* True if product id is in the catalog (not deleted); else answers 404 (or
 * 503 when the catalog cannot be read) and returns false. */
static bool product_listed(gw_request *r, gw_api *api, const char *id)
{
	proj_product *p = malloc(sizeof *p);
	orn_rc rc = p != NULL ? proj_catalog_get(api->catalog, id, p) : ORN_ENOMEM;
	free(p);
	if (rc == ORN_ENOTFOUND || rc == ORN_EINVAL)
		gw_respond_error(r, 404, "no such product");
	else if (rc != ORN_OK)
		gw_respond_error(r, rc == ORN_ENOMEM ? 500 : 503,
		                 "the catalog cannot be read now; try again");
	return rc == ORN_OK;
}

static void on_adjust_visible(void *closure, orn_rc wait_rc)
{
	admin_op *op = closure;
	proj_stock_level level;
	if (wait_rc != ORN_OK)
		log_warn("read models late after an adjustment", "item", op->product_id, "wait",
		         orn_strerror(wait_rc));
	orn_rc rc = proj_inventory_get(op->api->inventory, op->product_id, &level);
	if (rc == ORN_OK)
		gw_async_complete_json(op->async, 200, levels_json(&level));
	else
		gw_async_complete_problem(op->async,
		                          gw_problem_new(503, "the inventory is late; read it again"));
	free(op);
}

static void on_stock_adjusted(void *closure, orn_rc rc, bus_reply *reply)
{
	admin_op *op = closure;
	if (!accepted(rc, reply)) {
		op_finish_failure(op, rc, reply); /* not_found 404, below_reserved 409 */
		return;
	}
	op_note_seq(op, reply);
	op_wait(op, on_adjust_visible);
}

void gw_admin_adjust_stock(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const gw_claims *claims = &caller->claims;
	json_t *body = NULL;
	const char *id, *key;
	admin_op *op = NULL;
	if ((id = gw_api_path_id(r, "product_id")) == NULL || !idempotency_key(r, &key) ||
	    !gw_request_json(r, adjust_schema, &body))
		return;
	const char *reason = gw_json_string(body, "reason", "");
	int64_t delta = gw_json_int(body, "delta", 0);
	if (delta == 0 || strlen(reason) >= STOCK_REASON_MAX) {
		gw_api_respond_field_error(r, 400, "the request body is invalid",
		                           delta == 0 ? "delta" : "reason",
		                           delta == 0 ? "must not be zero" : "too long in UTF-8 bytes");
		goto done;
	}
	/* a deleted product's stock item outlives it: 404 as GET answers (issue 14) */
	if (!product_listed(r, api, id))
		goto done;
	if ((op = op_new(api, claims, id)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	op->stock.kind = STOCK_ADJUST;
	op->stock.delta = delta;
	snprintf(op->stock.reason, sizeof op->stock.reason, "%s", reason);
	if (key != NULL) {
		/* the item's ledger keeps the key for 24 hours: a retry is answered
		 * as the first time, the key with another delta is refused (422) */
		gw_api_keyed keyed;
		gw_api_keyed_init(&keyed, r, "adjust", claims->sub, key, body);
		memcpy(op->command_id, keyed.command_id, sizeof keyed.command_id);
		memcpy(op->request, keyed.request, sizeof keyed.request);
	} else {
		random_id(op->command_id, sizeof op->command_id, "adjust-");
	}
	if ((op->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done;
	send_stock(op, op->command_id, on_stock_adjusted);
	op = NULL;
done:
	json_decref(body);
	free(op);
}
