/* roles.c — the shop's list of roles (see roles.h). */
#include "roles.h"

#include "cart.h"
#include "holds.h"
#include "keystore.h"
#include "mail.h"
#include "mail_log.h"
#include "order.h"
#include "pay.h"
#include "product.h"
#include "psp_sandbox.h"
#include "saga.h"
#include "sku.h"
#include "stock.h"
#include "timers.h"
#include "user.h"

/* A role made of actor kinds alone: it appends to and answers the commands
 * of its aggregates (a parenthesised list), reads the events and snapshots
 * (act_runtime). */
#define LIST(...) __VA_ARGS__
#define ACTOR_ROLE(var, role_name, text, aggregates, ...)                                                    \
	static const char *const var##_aggregates[] = {LIST aggregates, NULL};                               \
	static const act_kind *const var##_kinds[] = {__VA_ARGS__, NULL};                                    \
	static const role_descriptor var = {                                                                 \
	        .name = role_name,                                                                           \
	        .summary = text,                                                                             \
	        .stage = ROLE_ANSWERS,                                                                       \
	        .nats = {.appends = var##_aggregates,                                                        \
	                 .serves = var##_aggregates,                                                         \
	                 .reads = true,                                                                      \
	                 .reads_snapshots = true},                                                           \
	        .kinds = var##_kinds,                                                                        \
	        .settings = role_actor_settings_table,                                                       \
	        .settings_size = sizeof(role_actor_settings),                                                \
	        .start = role_actors_start,                                                                  \
	        .stop = role_actors_stop,                                                                    \
	}

ACTOR_ROLE(stock_actor_role, "stock", "the stock items (actor)", (STOCK_AGGREGATE), &stock_kind);
ACTOR_ROLE(product_actor_role, "product", "the products and their SKU claims (actors)",
           (PRODUCT_AGGREGATE, SKU_AGGREGATE), &product_kind, &sku_kind);
ACTOR_ROLE(user_actor_role, "user", "the customers' and admins' accounts (actor)", (USER_AGGREGATE),
           &user_kind);
ACTOR_ROLE(cart_actor_role, "cart", "the carts (actor)", (CART_AGGREGATE), &cart_kind);
/* The holds (ADR 026) live beside the orders: every placement opens a hold
 * before its order, and both are cheap, so one role answers both. */
ACTOR_ROLE(order_actor_role, "order", "the orders and the customers' holds of unpaid orders (actors)",
           (ORDER_AGGREGATE, HOLDS_AGGREGATE), &order_kind, &holds_kind);

const role_descriptor cli_projector_role = {
        .name = "projector",
        .summary = "the read models (LMDB under <data dir>/lmdb)",
        .stage = ROLE_READS,
        .nats = {.reads = true},
};

static const char *const gateway_sends[] = {
        CART_AGGREGATE, ORDER_AGGREGATE, HOLDS_AGGREGATE,       STOCK_AGGREGATE,    PRODUCT_AGGREGATE,
        SKU_AGGREGATE,  USER_AGGREGATE,  PAY_SERVICE_AGGREGATE, MAIL_LOG_AGGREGATE, NULL};
static const char *const gateway_needs[] = {"projector", NULL};
/* The keystore (ADR 027): reading keys, storing a new one at registration,
 * erasing one (DELETE /me, POST /admin/customers/{id}/erase). */
static const char *const gateway_streams[] = {KS_STREAM, NULL};
static const char *const gateway_publishes[] = {"orion.keys.data.*", "$JS.API.STREAM.MSG.DELETE." KS_STREAM,
                                                NULL};

/* Its commands: the aggregates its routes act on and the payment service;
 * never the payment aggregate's own. */
const role_descriptor cli_gateway_role = {
        .name = "gateway",
        .summary = "the HTTP API on ORION_HTTP_ADDR (brings the projector)",
        .stage = ROLE_FRONT,
        .needs = gateway_needs,
        .nats = {.sends = gateway_sends,
                 .reads = true,
                 .never_appends = true,
                 .reads_streams = gateway_streams,
                 .publishes = gateway_publishes},
};

static const role_descriptor *const roles[] = {
        &stock_actor_role, &product_actor_role, &user_actor_role,    &cart_actor_role,
        &order_actor_role, &saga_role,          &timers_role,        &pay_role,
        &psp_role,         &mail_role,          &cli_projector_role, &cli_gateway_role,
};

static const na_grants ops_grants = {.all = true};

const role_descriptor *const *cli_roles(size_t *count)
{
	*count = ORN_ARRAY_LEN(roles);
	return roles;
}

size_t cli_role_names(const char **out, size_t cap)
{
	size_t n = 0;
	if (cap > 1)
		out[n++] = CLI_OPS_ROLE;
	for (size_t i = 0; i < ORN_ARRAY_LEN(roles) && n + 1 < cap; i++)
		if (!roles[i]->no_nats)
			out[n++] = roles[i]->name;
	if (cap > 0)
		out[n] = NULL;
	return n;
}

size_t cli_nats_users(na_role *out, size_t cap)
{
	size_t n = 0;
	if (cap > 0)
		out[n++] = (na_role){CLI_OPS_ROLE, &ops_grants};
	for (size_t i = 0; i < ORN_ARRAY_LEN(roles) && n < cap; i++)
		if (!roles[i]->no_nats)
			out[n++] = (na_role){roles[i]->name, &roles[i]->nats};
	return n;
}

const act_kind *cli_roles_kind(size_t i)
{
	for (size_t r = 0; r < ORN_ARRAY_LEN(roles); r++)
		for (size_t k = 0; roles[r]->kinds != NULL && roles[r]->kinds[k] != NULL; k++)
			if (i-- == 0)
				return roles[r]->kinds[k];
	return NULL;
}
