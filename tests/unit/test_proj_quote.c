/* test_proj_quote.c — the cart quote (projections/proj_quote.c) without NATS:
 * product and cart events are applied through the catalog's and the carts'
 * projection definitions in write transactions of a real LMDB environment, as
 * the projector does. Given the catalog and a cart, when the cart is quoted,
 * then its lines carry the catalog's current names and prices, and the lines
 * of deleted products are dropped. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cart.h"
#include "carts.h"
#include "catalog.h"
#include "failalloc.h"
#include "proj_internal.h"
#include "proj_quote.h"

static char dir[64];
static proj_env *env;
static proj_carts *carts;
static proj_catalog *catalog;
static proj_quote *quote;
static uint64_t next_seq = 1;

static void setup(void)
{
	proj_env_options o;
	snprintf(dir, sizeof dir, "/tmp/orion-projquote-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = 1 << 20;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_catalog_create(env, &catalog), ORN_OK);
	cr_assert_eq(proj_carts_create(env, &carts), ORN_OK);
	cr_assert_not_null(quote = malloc(sizeof *quote));
}

static void teardown(void)
{
	char cmd[128];
	free(quote);
	proj_carts_destroy(carts);
	proj_catalog_destroy(catalog);
	proj_env_close(env);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(proj_quote, .init = setup, .fini = teardown, .timeout = 60);

/* ---- applying events ---- */

typedef struct one_event {
	const proj_def *def;
	char subject[ES_SUBJECT_MAX];
	env_envelope e;
} one_event;

static orn_rc apply_cb(proj_txn *t, void *closure)
{
	one_event *o = closure;
	return o->def->apply(o->def->self, t, next_seq++, o->subject, &o->e);
}

/* Applies the encoded event in w, of type, to aggregate/id through def. */
static void apply(const proj_def *def, const char *aggregate, const char *id, const char *type, mp_writer *w)
{
	one_event o = {.def = def, .e = {.schema = 1}};
	snprintf(o.subject, sizeof o.subject, "orion.evt.%s.%s", aggregate, id);
	snprintf(o.e.type, sizeof o.e.type, "%s", type);
	o.e.payload = mp_writer_data(w);
	o.e.payload_len = mp_writer_size(w);
	cr_assert_eq(proj_env_write(env, apply_cb, &o), ORN_OK);
	mp_writer_destroy(w);
}

static void product(const char *id, product_event ev)
{
	mp_writer *w = mp_writer_create();
	cr_assert_eq(product_event_encode(w, &ev), ORN_OK);
	apply(proj_catalog_def(catalog), PRODUCT_AGGREGATE, id, product_event_type(ev.kind), w);
}

static void cart(const char *customer, cart_event ev)
{
	mp_writer *w = mp_writer_create();
	cr_assert_eq(cart_event_encode(w, &ev), ORN_OK);
	apply(proj_carts_def(carts), CART_AGGREGATE, customer, cart_event_type(ev.kind), w);
}

static product_event created(const char *name, int64_t price, const char *currency)
{
	product_event ev = {.kind = PRODUCT_CREATED, .present = PRODUCT_FIELDS_ALL};
	snprintf(ev.fields.sku, sizeof ev.fields.sku, "SKU-%s", name);
	snprintf(ev.fields.name, sizeof ev.fields.name, "%s", name);
	snprintf(ev.fields.currency, sizeof ev.fields.currency, "%s", currency);
	strcpy(ev.fields.category, "things");
	ev.fields.price_cents = price;
	return ev;
}

static product_event repriced(const char *name, int64_t price)
{
	product_event ev = {.kind = PRODUCT_UPDATED, .present = PRODUCT_FIELD_NAME | PRODUCT_FIELD_PRICE};
	snprintf(ev.fields.name, sizeof ev.fields.name, "%s", name);
	ev.fields.price_cents = price;
	return ev;
}

/* ItemAdded: the line as the cart snapshot it (name, price), quantity after. */
static cart_event added(const char *product_id, const char *name, int64_t price, int64_t quantity)
{
	cart_event e = {.kind = CART_ITEM_ADDED, .added = quantity};
	snprintf(e.line.product_id, sizeof e.line.product_id, "%s", product_id);
	snprintf(e.line.name, sizeof e.line.name, "%s", name);
	e.line.unit_price_cents = price;
	e.line.quantity = quantity;
	strcpy(e.currency, "EUR");
	return e;
}

static cart_event checked_out(const char *order_id, const char *product_id, int64_t quantity)
{
	cart_event e = {.kind = CART_CHECKED_OUT_EVENT, .checkout_count = 1};
	snprintf(e.order_id, sizeof e.order_id, "%s", order_id);
	snprintf(e.checkout[0].product_id, sizeof e.checkout[0].product_id, "%s", product_id);
	e.checkout[0].quantity = quantity;
	return e;
}

static void then_line(size_t i, const char *product_id, const char *name, int64_t price, int64_t quantity)
{
	cr_assert_lt(i, quote->count);
	cr_assert_str_eq(quote->lines[i].product_id, product_id);
	cr_assert_str_eq(quote->lines[i].name, name);
	cr_assert_eq(quote->lines[i].unit_price_cents, price, "%s", product_id);
	cr_assert_eq(quote->lines[i].quantity, quantity);
}

/* The catalog sells p1 (a teapot, 2750) and p2 (a cup, 500) in currency;
 * u1's cart holds teapots and cups of them. */
static void given_teapots_and_cups(const char *currency, int64_t teapots, int64_t cups)
{
	product("p1", created("Teapot", 2750, currency));
	product("p2", created("Cup", 500, currency));
	cart("u1", added("p1", "Teapot", 2750, teapots));
	cart("u1", added("p2", "Cup", 500, cups));
}

/* ---- tests ---- */

Test(proj_quote, no_cart_is_an_empty_quote)
{
	cr_assert_eq(proj_quote_cart(carts, catalog, "u1", quote), ORN_OK);
	cr_assert_eq(quote->count, 0);
	cr_assert_eq(quote->dropped_count, 0);
	cr_assert_eq(quote->total_cents, 0);
	cr_assert_str_eq(quote->currency, "");
	cr_assert_eq(quote->cart_version, 0);
	cr_assert_str_eq(quote->checked_out_order, "");
}

Test(proj_quote, lines_carry_the_catalogs_current_names_and_prices)
{
	given_teapots_and_cups("EUR", 2, 3);
	product("p1", repriced("Teapot, blue", 3000)); /* after the cart took its snapshot */
	uint64_t version = next_seq - 2;               /* the cart's last event */

	cr_assert_eq(proj_quote_cart(carts, catalog, "u1", quote), ORN_OK);
	cr_assert_eq(quote->count, 2);
	then_line(0, "p1", "Teapot, blue", 3000, 2);
	then_line(1, "p2", "Cup", 500, 3);
	cr_assert_eq(quote->total_cents, 2 * 3000 + 3 * 500);
	cr_assert_str_eq(quote->currency, "EUR");
	cr_assert_eq(quote->dropped_count, 0);
	cr_assert_eq(quote->cart_version, version);
	cr_assert_str_eq(quote->checked_out_order, "");
}

Test(proj_quote, a_deleted_products_line_is_dropped_not_priced)
{
	given_teapots_and_cups("USD", 1, 1);
	cart("u1", added("p9", "Never sold", 100, 1)); /* no such product in the catalog */
	product("p1", (product_event){.kind = PRODUCT_DELETED});

	cr_assert_eq(proj_quote_cart(carts, catalog, "u1", quote), ORN_OK);
	cr_assert_eq(quote->count, 1);
	then_line(0, "p2", "Cup", 500, 1);
	cr_assert_eq(quote->total_cents, 500);
	cr_assert_str_eq(quote->currency, "USD");
	cr_assert_eq(quote->dropped_count, 2);
	cr_assert_str_eq(quote->dropped[0], "p1");
	cr_assert_str_eq(quote->dropped[1], "p9");

	product("p2", (product_event){.kind = PRODUCT_DELETED}); /* every line dropped: no currency */
	cr_assert_eq(proj_quote_cart(carts, catalog, "u1", quote), ORN_OK);
	cr_assert_eq(quote->count, 0);
	cr_assert_eq(quote->dropped_count, 3);
	cr_assert_str_eq(quote->currency, "");
	cr_assert_eq(quote->total_cents, 0);
}

Test(proj_quote, a_cart_unchanged_since_its_checkout_names_the_order)
{
	product("p1", created("Teapot", 2750, "EUR"));
	cart("u1", added("p1", "Teapot", 2750, 1));
	cart("u1", checked_out("o1", "p1", 1));
	uint64_t version = next_seq - 1;

	cr_assert_eq(proj_quote_cart(carts, catalog, "u1", quote), ORN_OK);
	cr_assert_eq(quote->count, 0);
	cr_assert_eq(quote->cart_version, version);
	cr_assert_str_eq(quote->checked_out_order, "o1");

	cart("u1", added("p1", "Teapot", 2750, 1)); /* changed since: a new placement */
	cr_assert_eq(proj_quote_cart(carts, catalog, "u1", quote), ORN_OK);
	cr_assert_str_eq(quote->checked_out_order, "");
	cr_assert_eq(quote->count, 1);
}

Test(proj_quote, customers_are_apart)
{
	product("p1", created("Teapot", 2750, "EUR"));
	cart("u1", added("p1", "Teapot", 2750, 4));
	cart("u2", added("p1", "Teapot", 2750, 1));

	cr_assert_eq(proj_quote_cart(carts, catalog, "u2", quote), ORN_OK);
	cr_assert_eq(quote->count, 1);
	then_line(0, "p1", "Teapot", 2750, 1);
}

Test(proj_quote, an_invalid_customer_id_is_refused)
{
	quote->count = 7;
	cr_assert_eq(proj_quote_cart(carts, catalog, "u 1", quote), ORN_EINVAL);
	cr_assert_eq(quote->count, 0);
	cr_assert_eq(proj_quote_cart(carts, catalog, "", quote), ORN_EINVAL);
}

/* Writes raw bytes as the catalog's record of id. */
static orn_rc corrupt_cb(proj_txn *t, void *closure)
{
	MDB_dbi dbi;
	orn_rc rc = proj_dbi_open(t, "catalog.products", 0, &dbi);
	return rc == ORN_OK ? proj_put(t, dbi, closure, strlen(closure), "junk", 4, 0) : rc;
}

Test(proj_quote, an_unreadable_product_fails_the_quote_rather_than_guess_a_price)
{
	given_teapots_and_cups("EUR", 1, 1);
	cr_assert_eq(proj_env_write(env, corrupt_cb, "p2"), ORN_OK);

	cr_assert_eq(proj_quote_cart(carts, catalog, "u1", quote), ORN_EDECODE);
	cr_assert_eq(quote->count, 0, "a failed quote is an empty one");
	cr_assert_eq(quote->total_cents, 0);
}

Test(proj_quote, an_allocation_failure_is_reported)
{
	if (!failalloc_available())
		cr_skip_test("no allocation failure injection in this build");
	product("p1", created("Teapot", 2750, "EUR"));
	cart("u1", added("p1", "Teapot", 2750, 1));
	failalloc_nth(1);
	orn_rc rc = proj_quote_cart(carts, catalog, "u1", quote);
	failalloc_off();
	cr_assert_eq(rc, ORN_ENOMEM);
	cr_assert_eq(quote->count, 0);
	cr_assert_eq(proj_quote_cart(carts, catalog, "u1", quote), ORN_OK);
	cr_assert_eq(quote->count, 1);
}
