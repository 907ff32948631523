/* test_proj_catalog.c — the catalog read model (catalog.c) without NATS:
 * product and stock events are applied through the projection definitions in
 * write transactions, as the projector does. Given product events, when
 * queried, then products, indexes, searches and pages equal a brute-force
 * model. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "inventory.h"
#include "proj_internal.h"
#include "stock.h"

static char dir[64];
static proj_env *env;
static proj_catalog *cat;
static proj_inventory *inv;
static uint64_t next_seq = 1;

static void rmrf(const char *path)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	cr_assert_eq(system(cmd), 0);
}

static void setup(void)
{
	proj_env_options o;
	snprintf(dir, sizeof dir, "/tmp/orion-catunit-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = 1 << 20;
	o.max_map_size = (size_t)1 << 30;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_catalog_create(env, &cat), ORN_OK);
	cr_assert_eq(proj_inventory_create(env, &inv), ORN_OK);
}

static void teardown(void)
{
	proj_inventory_destroy(inv);
	proj_catalog_destroy(cat);
	cat = NULL;
	inv = NULL;
	proj_env_close(env);
	env = NULL;
	rmrf(dir);
}

TestSuite(proj_catalog, .init = setup, .fini = teardown, .timeout = 60);

/* ---- applying events ---- */

typedef struct one_event {
	const char *subject_prefix;
	const char *id;
	const proj_def *def;
	env_envelope e;
} one_event;

static orn_rc apply_envelope(proj_txn *t, void *closure)
{
	one_event *o = closure;
	char subject[ES_SUBJECT_MAX];
	snprintf(subject, sizeof subject, "%s%s", o->subject_prefix, o->id);
	return o->def->apply(o->def->self, t, next_seq++, subject, &o->e);
}

static orn_rc apply_product_in(proj_txn *t, const char *id, const product_event *ev)
{
	mp_writer *w = mp_writer_create();
	one_event o = {"orion.evt.product.", id, proj_catalog_def(cat), {.schema = 1}};
	cr_assert_eq(product_event_encode(w, ev), ORN_OK);
	strcpy(o.e.type, product_event_type(ev->kind));
	o.e.payload = mp_writer_data(w);
	o.e.payload_len = mp_writer_size(w);
	orn_rc rc = apply_envelope(t, &o);
	mp_writer_destroy(w);
	return rc;
}

typedef struct product_closure {
	const char *id;
	const product_event *ev;
} product_closure;

static orn_rc apply_product_closure(proj_txn *t, void *closure)
{
	product_closure *c = closure;
	return apply_product_in(t, c->id, c->ev);
}

static void apply_product(const char *id, const product_event *ev)
{
	product_closure c = {id, ev};
	cr_assert_eq(proj_env_write(env, apply_product_closure, &c), ORN_OK);
}

static product_event created(const char *sku, const char *name, const char *description, int64_t price,
                             const char *category)
{
	product_event ev = {.kind = PRODUCT_CREATED, .present = PRODUCT_FIELDS_ALL};
	snprintf(ev.fields.sku, sizeof ev.fields.sku, "%s", sku);
	snprintf(ev.fields.name, sizeof ev.fields.name, "%s", name);
	snprintf(ev.fields.description, sizeof ev.fields.description, "%s", description);
	ev.fields.price_cents = price;
	strcpy(ev.fields.currency, "EUR");
	snprintf(ev.fields.category, sizeof ev.fields.category, "%s", category);
	return ev;
}

static product_event updated(const char *name, const char *description, const char *category)
{
	product_event ev = {.kind = PRODUCT_UPDATED};
	if (name != NULL) {
		ev.present |= PRODUCT_FIELD_NAME;
		snprintf(ev.fields.name, sizeof ev.fields.name, "%s", name);
	}
	if (description != NULL) {
		ev.present |= PRODUCT_FIELD_DESCRIPTION;
		snprintf(ev.fields.description, sizeof ev.fields.description, "%s", description);
	}
	if (category != NULL) {
		ev.present |= PRODUCT_FIELD_CATEGORY;
		snprintf(ev.fields.category, sizeof ev.fields.category, "%s", category);
	}
	return ev;
}

static const product_event deleted_event = {.kind = PRODUCT_DELETED};

typedef struct stock_closure {
	const char *id;
	stock_event ev;
} stock_closure;

static orn_rc apply_stock_closure(proj_txn *t, void *closure)
{
	stock_closure *c = closure;
	mp_writer *w = mp_writer_create();
	one_event o = {"orion.evt.stock.", c->id, proj_inventory_def(inv), {.schema = 1}};
	cr_assert_eq(stock_event_encode(w, &c->ev), ORN_OK);
	strcpy(o.e.type, stock_event_type(c->ev.kind));
	o.e.payload = mp_writer_data(w);
	o.e.payload_len = mp_writer_size(w);
	orn_rc rc = apply_envelope(t, &o);
	mp_writer_destroy(w);
	return rc;
}

static void apply_stock(const char *id, stock_event ev)
{
	stock_closure c = {id, ev};
	cr_assert_eq(proj_env_write(env, apply_stock_closure, &c), ORN_OK);
}

/* ---- queries ---- */

static proj_product *product(const char *id)
{
	static proj_product p;
	cr_assert_eq(proj_catalog_get(cat, id, &p), ORN_OK, "%s", id);
	return &p;
}

static orn_rc get_rc(const char *id)
{
	proj_product p;
	return proj_catalog_get(cat, id, &p);
}

/* The ids of one page (or of all pages when limit is 0) joined with ",". */
static char *ids_of(const char *q, const char *category, unsigned limit)
{
	static char text[8192];
	proj_catalog_page *page = malloc(sizeof *page);
	char cursor[PROJ_CURSOR_MAX] = "";
	text[0] = '\0';
	for (;;) {
		proj_catalog_query query = {
		        .q = q, .category = category, .limit = limit ? limit : 100, .cursor = cursor};
		cr_assert_eq(proj_catalog_list(cat, &query, page), ORN_OK, "q %s category %s", q, category);
		for (size_t i = 0; i < page->count; i++) {
			if (text[0] != '\0')
				strcat(text, ",");
			strcat(text, page->items[i].id);
		}
		if (limit != 0 || page->next_cursor[0] == '\0')
			break;
		strcpy(cursor, page->next_cursor);
	}
	free(page);
	return text;
}

static void seed(void)
{
	product_event ev = created("LAMP-1", "Desk Lamp", "A warm LED lamp, brass finish.", 4990, "lighting");
	apply_product("p1", &ev);
	ev = created("LAMP-2", "Floor lamp", "Tall; black steel; LED.", 12900, "lighting");
	apply_product("p2", &ev);
	ev = created("MUG-1", "Coffee mug", "Stoneware mug (350 ml) for coffee or tea.", 1290, "kitchen");
	apply_product("p3", &ev);
	ev = created("kettle.1", "Electric kettle", "", 3990, "kitchen");
	apply_product("p4", &ev);
}

Test(proj_catalog, a_created_product_is_found_by_id_and_sku)
{
	seed();
	proj_product *p = product("p1");
	cr_assert_str_eq(p->id, "p1");
	cr_assert_str_eq(p->sku, "LAMP-1");
	cr_assert_str_eq(p->name, "Desk Lamp");
	cr_assert_str_eq(p->description, "A warm LED lamp, brass finish.");
	cr_assert_eq(p->price_cents, 4990);
	cr_assert_str_eq(p->currency, "EUR");
	cr_assert_str_eq(p->category, "lighting");
	cr_assert_eq(p->version, 1);
	cr_assert_not(p->has_stock);
	cr_assert_eq(p->available, 0);
	proj_product q;
	cr_assert_eq(proj_catalog_get_by_sku(cat, "lamp-1", &q), ORN_OK, "skus compare case-insensitively");
	cr_assert_str_eq(q.id, "p1");
	cr_assert_eq(proj_catalog_get_by_sku(cat, "KETTLE.1", &q), ORN_OK);
	cr_assert_str_eq(q.id, "p4");
	cr_assert_eq(proj_catalog_get_by_sku(cat, "NOPE", &q), ORN_ENOTFOUND);
	cr_assert_eq(proj_catalog_get_by_sku(cat, "bad sku", &q), ORN_EINVAL);
	cr_assert_eq(proj_catalog_get_by_sku(cat, NULL, &q), ORN_EINVAL);
	cr_assert_eq(get_rc("p9"), ORN_ENOTFOUND);
	cr_assert_eq(get_rc("a.b"), ORN_EINVAL);
	cr_assert_eq(get_rc(""), ORN_EINVAL);
	cr_assert_str_eq(ids_of(NULL, NULL, 0), "p1,p2,p3,p4");
}

Test(proj_catalog, available_comes_from_the_stock_item)
{
	seed();
	apply_stock("p1", (stock_event){.kind = STOCK_CREATED, .quantity = 10});
	stock_event reserve = {.kind = STOCK_RESERVED, .quantity = 3};
	strcpy(reserve.reservation_id, "o1:p1");
	apply_stock("p1", reserve);
	proj_product *p = product("p1");
	cr_assert(p->has_stock);
	cr_assert_eq(p->on_hand, 10);
	cr_assert_eq(p->reserved, 3);
	cr_assert_eq(p->available, 7);
	proj_catalog_page *page = malloc(sizeof *page);
	proj_catalog_query q = {.q = "lamp", .limit = 10};
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_OK);
	cr_assert_eq(page->count, 2);
	cr_assert_eq(page->items[0].available, 7);
	cr_assert_not(page->items[1].has_stock);
	free(page);
}

Test(proj_catalog, search_matches_every_word_in_any_case)
{
	seed();
	cr_assert_str_eq(ids_of("lamp", NULL, 0), "p1,p2");
	cr_assert_str_eq(ids_of("LED", NULL, 0), "p1,p2", "description words count");
	cr_assert_str_eq(ids_of("led LAMP", NULL, 0), "p1,p2");
	cr_assert_str_eq(ids_of("warm lamp", NULL, 0), "p1", "several words: all of them");
	cr_assert_str_eq(ids_of("  Coffee,  MUG!! ", NULL, 0), "p3", "punctuation splits and is ignored");
	cr_assert_str_eq(ids_of("steel;black", NULL, 0), "p2");
	cr_assert_str_eq(ids_of("350", NULL, 0), "p3", "digits are words");
	cr_assert_str_eq(ids_of("coffee tea", NULL, 0), "p3");
	cr_assert_str_eq(ids_of("coffee lamp", NULL, 0), "", "no product has both");
	cr_assert_str_eq(ids_of("sofa", NULL, 0), "");
	cr_assert_str_eq(ids_of("lam", NULL, 0), "", "whole words only");
	cr_assert_str_eq(ids_of("a", NULL, 0), "", "nothing searchable matches nothing");
	cr_assert_str_eq(ids_of("a lamp", NULL, 0), "p1,p2", "one-letter words are ignored");
	cr_assert_str_eq(ids_of("lamp lamp LAMP", NULL, 0), "p1,p2", "repeated words count once");
	cr_assert_str_eq(ids_of("kettle.1", NULL, 0), "p4", "'1' is too short to count");
	cr_assert_str_eq(ids_of("ml", NULL, 0), "p3", "two letters are a word");
	cr_assert_str_eq(ids_of("electric", NULL, 0), "p4");
}

Test(proj_catalog, category_filters_alone_and_with_q)
{
	seed();
	cr_assert_str_eq(ids_of(NULL, "kitchen", 0), "p3,p4");
	cr_assert_str_eq(ids_of("", "lighting", 0), "p1,p2");
	cr_assert_str_eq(ids_of("coffee", "kitchen", 0), "p3");
	cr_assert_str_eq(ids_of("lamp", "kitchen", 0), "");
	cr_assert_str_eq(ids_of("led", "lighting", 1), "p1");
	cr_assert_str_eq(ids_of(NULL, "garden", 0), "");
}

Test(proj_catalog, an_update_moves_the_product_between_index_entries)
{
	seed();
	product_event ev = updated("Reading light", NULL, "office");
	apply_product("p1", &ev);
	proj_product *p = product("p1");
	cr_assert_str_eq(p->name, "Reading light");
	cr_assert_str_eq(p->description, "A warm LED lamp, brass finish.", "fields not in the event stay");
	cr_assert_str_eq(p->category, "office");
	cr_assert_eq(p->version, 5);
	cr_assert_str_eq(ids_of("desk", NULL, 0), "", "old name words are gone");
	cr_assert_str_eq(ids_of("reading", NULL, 0), "p1");
	cr_assert_str_eq(ids_of("lamp", NULL, 0), "p1,p2", "still in the description");
	cr_assert_str_eq(ids_of(NULL, "lighting", 0), "p2");
	cr_assert_str_eq(ids_of(NULL, "office", 0), "p1");
	ev = updated(NULL, "Dimmable.", NULL);
	apply_product("p1", &ev);
	cr_assert_str_eq(ids_of("lamp", NULL, 0), "p2");
	cr_assert_str_eq(ids_of("dimmable light", "office", 0), "p1");
	product_event price = {.kind = PRODUCT_UPDATED, .present = PRODUCT_FIELD_PRICE};
	price.fields.price_cents = 5990;
	apply_product("p1", &price);
	cr_assert_eq(product("p1")->price_cents, 5990);
	cr_assert_str_eq(ids_of("dimmable light", "office", 0), "p1");
	proj_product by_sku;
	cr_assert_eq(proj_catalog_get_by_sku(cat, "LAMP-1", &by_sku), ORN_OK);
	cr_assert_str_eq(by_sku.name, "Reading light");
}

Test(proj_catalog, a_deleted_product_leaves_every_index)
{
	seed();
	apply_product("p1", &deleted_event);
	proj_product p;
	cr_assert_eq(get_rc("p1"), ORN_ENOTFOUND);
	cr_assert_eq(proj_catalog_get_by_sku(cat, "LAMP-1", &p), ORN_ENOTFOUND);
	cr_assert_str_eq(ids_of(NULL, NULL, 0), "p2,p3,p4");
	cr_assert_str_eq(ids_of(NULL, "lighting", 0), "p2");
	cr_assert_str_eq(ids_of("warm", NULL, 0), "");
	cr_assert_str_eq(ids_of("lamp", NULL, 0), "p2");
	/* Later events of a deleted product change nothing. */
	product_event ev = updated("Back again", NULL, NULL);
	apply_product("p1", &ev);
	apply_product("p1", &deleted_event);
	cr_assert_eq(get_rc("p1"), ORN_ENOTFOUND);
	cr_assert_str_eq(ids_of("back", NULL, 0), "");
	/* The admin join still names it. */
	const char *ids[] = {"p1", "p2", "p9", "bad.id"};
	proj_product_label labels[4];
	cr_assert_eq(proj_catalog_labels(cat, ids, 4, labels), ORN_OK);
	cr_assert(labels[0].found);
	cr_assert(labels[0].deleted);
	cr_assert_str_eq(labels[0].sku, "LAMP-1");
	cr_assert_str_eq(labels[0].name, "Desk Lamp");
	cr_assert(labels[1].found);
	cr_assert_not(labels[1].deleted);
	cr_assert_str_eq(labels[1].name, "Floor lamp");
	cr_assert_not(labels[2].found);
	cr_assert_not(labels[3].found);
	/* A deleted product's sku can be taken again by a new product. */
	ev = created("lamp-1", "Desk lamp II", "", 100, "lighting");
	apply_product("p5", &ev);
	cr_assert_eq(proj_catalog_get_by_sku(cat, "LAMP-1", &p), ORN_OK);
	cr_assert_str_eq(p.id, "p5");
	/* Deleting the old holder again does not take the sku from the new one. */
	cr_assert_eq(proj_catalog_get_by_sku(cat, "Lamp-1", &p), ORN_OK);
}

Test(proj_catalog, a_second_created_event_reindexes_from_scratch)
{
	seed();
	product_event ev = created("LAMP-9", "Lantern", "Paper", 100, "garden");
	apply_product("p1", &ev);
	proj_product p;
	cr_assert_eq(proj_catalog_get_by_sku(cat, "LAMP-1", &p), ORN_ENOTFOUND);
	cr_assert_eq(proj_catalog_get_by_sku(cat, "LAMP-9", &p), ORN_OK);
	cr_assert_str_eq(ids_of("lamp", NULL, 0), "p2");
	cr_assert_str_eq(ids_of("lantern paper", "garden", 0), "p1");
}

Test(proj_catalog, foreign_subjects_types_and_bad_payloads_are_skipped)
{
	static const uint8_t garbage[] = {0xc1};
	one_event o = {"orion.evt.product.", "p1", proj_catalog_def(cat), {.schema = 1}};
	strcpy(o.e.type, PRODUCT_EV_CREATED);
	o.e.payload = garbage;
	o.e.payload_len = sizeof garbage;
	cr_assert_eq(proj_env_write(env, apply_envelope, &o), ORN_OK);
	strcpy(o.e.type, "ProductRenamed");
	cr_assert_eq(proj_env_write(env, apply_envelope, &o), ORN_OK);
	o.subject_prefix = "orion.evt.stock.";
	strcpy(o.e.type, PRODUCT_EV_CREATED);
	cr_assert_eq(proj_env_write(env, apply_envelope, &o), ORN_OK);
	o.subject_prefix = "orion.evt.product.";
	o.id = "bad.id";
	cr_assert_eq(proj_env_write(env, apply_envelope, &o), ORN_OK);
	proj_catalog_stats st;
	proj_catalog_stats_get(cat, &st);
	cr_assert_eq(st.undecodable, 1);
	/* An update or delete of a product never created. */
	product_event ev = updated("Ghost", NULL, NULL);
	apply_product("p7", &ev);
	apply_product("p8", &deleted_event);
	cr_assert_eq(get_rc("p1"), ORN_ENOTFOUND);
	cr_assert_eq(get_rc("p7"), ORN_ENOTFOUND);
	cr_assert_str_eq(ids_of(NULL, NULL, 0), "");
	const char *ids[] = {"p8"};
	proj_product_label label;
	cr_assert_eq(proj_catalog_labels(cat, ids, 1, &label), ORN_OK);
	cr_assert_not(label.found);
}

Test(proj_catalog, queries_are_validated)
{
	proj_catalog_page *page = malloc(sizeof *page);
	proj_catalog_query q = {.limit = 0};
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_EINVAL);
	q.limit = PROJ_CATALOG_PAGE_MAX + 1;
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_EINVAL);
	q.limit = 10;
	q.cursor = "not-a-cursor!";
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_EINVAL);
	q.cursor = NULL;
	q.category = "Kitchen";
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_EINVAL);
	q.category = "kitchen stuff";
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_EINVAL);
	q.category = NULL;
	q.q = "w01 w02 w03 w04 w05 w06 w07 w08 w09 w10 w11 w12 w13 w14 w15 w16 w17";
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_EINVAL, "too many words");
	q.q = "w01 w02 w03 w04 w05 w06 w07 w08 w09 w10 w11 w12 w13 w14 w15 w16 w16";
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_OK, "16 distinct words");
	cr_assert_eq(page->count, 0);
	cr_assert_str_eq(page->next_cursor, "");
	free(page);
}

Test(proj_catalog, tokens_are_ascii_words_lowercased_and_capped)
{
	char tokens[8][PROJ_CATALOG_TOKEN_MAX + 1];
	size_t n = 0;
	cr_assert(proj_catalog_tokenize("Hello, WORLD! a hello caf\xc3\xa9 x2", tokens, 8, &n));
	cr_assert_eq(n, 4);
	cr_assert_str_eq(tokens[0], "hello");
	cr_assert_str_eq(tokens[1], "world");
	cr_assert_str_eq(tokens[2], "caf", "non-ASCII bytes separate");
	cr_assert_str_eq(tokens[3], "x2");
	n = 0;
	cr_assert_not(proj_catalog_tokenize("one two three", tokens, 2, &n));
	cr_assert_eq(n, 2);
	n = 0;
	cr_assert(proj_catalog_tokenize(NULL, tokens, 2, &n));
	cr_assert_eq(n, 0);
	char longword[100];
	memset(longword, 'z', sizeof longword - 1);
	longword[sizeof longword - 1] = '\0';
	cr_assert(proj_catalog_tokenize(longword, tokens, 2, &n));
	cr_assert_eq(strlen(tokens[0]), PROJ_CATALOG_TOKEN_MAX);
}

Test(proj_catalog, long_words_are_found_by_their_prefix_and_tokens_are_capped)
{
	char description[PRODUCT_DESCRIPTION_MAX] = "";
	for (int i = 0; i < 100; i++)
		snprintf(description + strlen(description), sizeof description - strlen(description),
		         "t%02d ", i);
	strcat(description, "supercalifragilisticexpialidocious-and-more");
	product_event ev = created("BIG-1", "Big thing", description, 1, "misc");
	apply_product("big", &ev);
	cr_assert_str_eq(ids_of("t00 big", NULL, 0), "big");
	cr_assert_str_eq(ids_of("t61", NULL, 0), "big", "62 description tokens fit with 2 of the name");
	cr_assert_str_eq(ids_of("t62", NULL, 0), "", "beyond the cap");
	cr_assert_str_eq(ids_of("supercalifragilisticexpialidocious", NULL, 0), "");
}

/* ---- paging against a brute-force model ---- */

#define PRODUCTS 240

typedef struct model_product {
	bool live;
	int a, b, c; /* name words a<a> b<b>, description word c<c> */
	const char *category;
} model_product;

static model_product model[PRODUCTS];
static const char *const categories[] = {"home", "garden", "toys"};

static void product_id(char *out, size_t cap, int i)
{
	snprintf(out, cap, "prod-%04d", i);
}

static product_event model_event(int i)
{
	char name[64], description[64], sku[32];
	snprintf(name, sizeof name, "Widget a%d B%d", model[i].a, model[i].b);
	snprintf(description, sizeof description, "Colour: c%d; size XL.", model[i].c);
	snprintf(sku, sizeof sku, "SKU-%d", i);
	return created(sku, name, description, 100 + i, model[i].category);
}

static orn_rc load_products(proj_txn *t, void *closure)
{
	char id[32];
	orn_rc rc = ORN_OK;
	for (int i = 0; rc == ORN_OK && i < PRODUCTS; i++) {
		model[i] = (model_product){true, i % 5, i % 7, i % 4, categories[i % 3]};
		product_event ev = model_event(i);
		product_id(id, sizeof id, i);
		rc = apply_product_in(t, id, &ev);
		if (rc == ORN_OK && i % 10 == 3) {
			model[i].live = false;
			rc = apply_product_in(t, id, &deleted_event);
		}
		if (rc == ORN_OK && i % 9 == 4) {
			char name[64];
			model[i].a = (model[i].a + 1) % 5;
			model[i].category = categories[(i + 1) % 3];
			snprintf(name, sizeof name, "Widget A%d b%d", model[i].a, model[i].b);
			product_event ev2 = updated(name, NULL, model[i].category);
			rc = apply_product_in(t, id, &ev2);
		}
	}
	return rc;
}

typedef struct model_query {
	const char *q;
	const char *category;
	int a, b, c; /* -1: any */
} model_query;

static bool model_matches(const model_query *mq, int i)
{
	const model_product *m = &model[i];
	return m->live && (mq->category == NULL || strcmp(mq->category, m->category) == 0) &&
	       (mq->a < 0 || mq->a == m->a) && (mq->b < 0 || mq->b == m->b) && (mq->c < 0 || mq->c == m->c);
}

static void check_paging(const model_query *mq, unsigned limit)
{
	proj_catalog_page *page = malloc(sizeof *page);
	char cursor[PROJ_CURSOR_MAX] = "";
	int expected = 0, pages = 0;
	for (;;) {
		proj_catalog_query q = {
		        .q = mq->q, .category = mq->category, .limit = limit, .cursor = cursor};
		cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_OK);
		pages++;
		for (size_t r = 0; r < page->count; r++) {
			while (expected < PRODUCTS && !model_matches(mq, expected))
				expected++;
			cr_assert_lt(expected, PRODUCTS, "extra row %s", page->items[r].id);
			char id[32];
			product_id(id, sizeof id, expected);
			cr_assert_str_eq(page->items[r].id, id, "q %s category %s page %d row %zu", mq->q,
			                 mq->category, pages, r);
			cr_assert_eq(page->items[r].price_cents, 100 + expected);
			expected++;
		}
		if (page->next_cursor[0] == '\0')
			break;
		cr_assert_eq(page->count, limit, "only full pages have a next cursor");
		strcpy(cursor, page->next_cursor);
	}
	while (expected < PRODUCTS && !model_matches(mq, expected))
		expected++;
	cr_assert_eq(expected, PRODUCTS, "rows missing after %d pages (q %s category %s limit %u)", pages,
	             mq->q, mq->category, limit);
	free(page);
}

Test(proj_catalog, pages_equal_a_brute_force_model)
{
	cr_assert_eq(proj_env_write(env, load_products, NULL), ORN_OK);
	static const model_query queries[] = {
	        {NULL, NULL, -1, -1, -1},    {"widget", NULL, -1, -1, -1},  {NULL, "garden", -1, -1, -1},
	        {"A1", NULL, 1, -1, -1},     {"a1 b2", NULL, 1, 2, -1},     {"C3 widget", "toys", -1, -1, 3},
	        {"a0 b0 c0", NULL, 0, 0, 0}, {"a4 b6 c3", "home", 4, 6, 3}, {"xl", "home", -1, -1, -1},
	};
	static const unsigned limits[] = {1, 7, 100};
	for (size_t i = 0; i < ORN_ARRAY_LEN(queries); i++)
		for (size_t l = 0; l < ORN_ARRAY_LEN(limits); l++)
			check_paging(&queries[i], limits[l]);
}

Test(proj_catalog, a_cursor_past_a_deleted_product_still_pages_in_id_order)
{
	cr_assert_eq(proj_env_write(env, load_products, NULL), ORN_OK);
	proj_catalog_page *page = malloc(sizeof *page);
	proj_catalog_query q = {.q = "widget", .limit = 5};
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_OK);
	char last[ES_ID_MAX + 1], cursor[PROJ_CURSOR_MAX];
	strcpy(last, page->items[4].id);
	strcpy(cursor, page->next_cursor);
	apply_product(last, &deleted_event);
	for (int pass = 0; pass < 2; pass++) {
		q.cursor = cursor;
		q.q = pass == 0 ? "widget" : NULL;
		cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_OK);
		cr_assert_eq(page->count, 5);
		cr_assert_gt(strcmp(page->items[0].id, last), 0);
	}
	free(page);
}

/* ---- damaged storage ---- */

typedef struct raw_put {
	const char *db;
	unsigned flags;
	const char *key;
	const void *value;
	size_t len;
} raw_put;

static orn_rc put_raw(proj_txn *t, void *closure)
{
	raw_put *r = closure;
	MDB_dbi dbi;
	orn_rc rc = proj_dbi_open(t, r->db, r->flags, &dbi);
	if (rc == ORN_OK)
		rc = proj_put(t, dbi, r->key, strlen(r->key), r->value, r->len, 0);
	return rc;
}

static void write_raw(const char *db, unsigned flags, const char *key, const void *value, size_t len)
{
	raw_put r = {db, flags, key, value, len};
	cr_assert_eq(proj_env_write(env, put_raw, &r), ORN_OK);
}

Test(proj_catalog, damaged_records_are_reported_not_served)
{
	seed();
	static const uint8_t bad[40] = {1};
	uint8_t header[32] = {1, 0, 1};
	write_raw("catalog.products", 0, "p2", bad, sizeof bad);
	cr_assert_eq(get_rc("p2"), ORN_EDECODE);
	proj_catalog_page *page = malloc(sizeof *page);
	proj_catalog_query q = {.limit = 10};
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_EDECODE);
	cr_assert_eq(page->count, 0);
	q.category = "lighting";
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_EDECODE);
	const char *ids[] = {"p2"};
	proj_product_label label;
	cr_assert_eq(proj_catalog_labels(cat, ids, 1, &label), ORN_EDECODE);
	/* A record with a NUL in a text, and one with unknown flags. */
	uint8_t nul_sku[33] = {1, 0, 1}; /* sku of one byte: a NUL */
	write_raw("catalog.products", 0, "p3", nul_sku, sizeof nul_sku);
	cr_assert_eq(get_rc("p3"), ORN_EDECODE);
	header[1] = 0x80;
	header[2] = 0;
	write_raw("catalog.products", 0, "p3", header, sizeof header);
	cr_assert_eq(get_rc("p3"), ORN_EDECODE);
	/* The next event rebuilds the record from itself. */
	product_event ev = created("LAMP-2", "Floor lamp", "Tall.", 12900, "lighting");
	apply_product("p2", &ev);
	cr_assert_str_eq(product("p2")->description, "Tall.");
	/* A sku entry naming a product that is not there, a bad id, a bad stock record. */
	write_raw("catalog.by_sku", 0, "GHOST", "p9", 2);
	proj_product p;
	cr_assert_eq(proj_catalog_get_by_sku(cat, "ghost", &p), ORN_ENOTFOUND);
	write_raw("catalog.by_sku", 0, "EMPTY", "", 0);
	cr_assert_eq(proj_catalog_get_by_sku(cat, "empty", &p), ORN_EDECODE);
	write_raw("inventory.items", 0, "p1", bad, 5);
	cr_assert_eq(get_rc("p1"), ORN_EDECODE);
	/* An index entry naming a product that is not there. */
	write_raw("catalog.by_category", MDB_DUPSORT, "garden", "p9", 2);
	q.category = "garden";
	cr_assert_eq(proj_catalog_list(cat, &q, page), ORN_EDECODE);
	free(page);
}
