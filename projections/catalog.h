/* catalog.h — the catalog read model: products, their indexes and search.
 *
 * Fed by the product events (ProductCreated, ProductUpdated, ProductDeleted)
 * on orion.evt.product.<id>, it answers GET /products?q=&category=&limit=&cursor=
 * and GET /products/{id}: products ordered by id, optionally only those of one
 * category and/or containing every word of q (in name or description), a page
 * of 1..100 at a time with an opaque cursor (proj_cursor.h). Deleted products
 * disappear from every query (ORN_ENOTFOUND from the getters).
 *
 * `available` (on hand - reserved) is not projected here: it is read from the
 * inventory model's records (stock item id = product id) in the same read
 * transaction as the product, so both come from one snapshot. It is right
 * only when the inventory projection runs in the same environment and runner
 * (they then share every batch transaction); a product without a stock item
 * reads as has_stock false, available 0.
 *
 * Search. Name and description are split into tokens: runs of ASCII letters
 * and digits, lowercased; every other byte (punctuation, spaces, non-ASCII)
 * separates. Tokens shorter than PROJ_CATALOG_TOKEN_MIN are ignored, longer
 * ones are cut to PROJ_CATALOG_TOKEN_MAX bytes, and a product is indexed under
 * at most PROJ_CATALOG_TOKENS_MAX distinct tokens (name first). A query's q is
 * tokenized the same way; a product matches when it has every token of q. */
#ifndef ORION_PROJ_CATALOG_H
#define ORION_PROJ_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "orn.h"
#include "product.h"
#include "proj_cursor.h"
#include "proj_env.h"
#include "projector.h"

#define PROJ_CATALOG_NAME        "catalog"
#define PROJ_CATALOG_FILTER      "orion.evt.product.>"
#define PROJ_CATALOG_PAGE_MAX    100
#define PROJ_CATALOG_TOKEN_MIN   2  /* bytes; shorter words are not indexed */
#define PROJ_CATALOG_TOKEN_MAX   32 /* bytes; longer words are cut */
#define PROJ_CATALOG_TOKENS_MAX  64 /* distinct tokens indexed per product */
#define PROJ_CATALOG_QUERY_WORDS 16 /* distinct tokens in one q */

/* A product as the catalog serves it. */
typedef struct proj_product {
	char id[ES_ID_MAX + 1];
	char sku[PRODUCT_SKU_MAX];
	char name[PRODUCT_NAME_MAX];
	char description[PRODUCT_DESCRIPTION_MAX];
	int64_t price_cents;
	char currency[PRODUCT_CURRENCY_MAX];
	char category[PRODUCT_CATEGORY_MAX];
	uint64_t version; /* stream sequence of the last product event applied */
	bool has_stock;   /* the inventory model has a stock item with this id */
	int64_t on_hand;  /* of that stock item; 0 without one */
	int64_t reserved;
	int64_t available;           /* on_hand - reserved */
	int64_t low_stock_threshold; /* of that stock item (0: none) */
	bool low;                    /* that stock item is low (LowStockDetected not cleared) */
} proj_product;

typedef struct proj_catalog proj_catalog;

/* Creates the model over env and opens (creating) its sub-databases and the
 * inventory records it reads. *out is owned by the caller:
 * proj_catalog_destroy after the runner that feeds it has stopped. */
orn_rc proj_catalog_create(proj_env *env, proj_catalog **out);
void proj_catalog_destroy(proj_catalog *cat);

/* The projection definition to hand to proj_runner_start (owned by cat). */
const proj_def *proj_catalog_def(proj_catalog *cat);

/* One product by id (out param). ORN_ENOTFOUND if there is none or it was
 * deleted, ORN_EINVAL for an invalid id. */
orn_rc proj_catalog_get(proj_catalog *cat, const char *id, proj_product *out);

/* One product by sku (out param). Skus compare as the sku aggregate does
 * (case-insensitively), so "abc-1" finds "ABC-1". ORN_ENOTFOUND if no live
 * product holds it, ORN_EINVAL for an invalid sku. */
orn_rc proj_catalog_get_by_sku(proj_catalog *cat, const char *sku, proj_product *out);

typedef struct proj_catalog_query {
	const char *q;        /* NULL or "": no search; else every token must match */
	const char *category; /* NULL or "": any category; else [a-z0-9-]{1,64} */
	unsigned limit;       /* 1..PROJ_CATALOG_PAGE_MAX */
	const char *cursor;   /* NULL or "" for the first page */
} proj_catalog_query;

/* A page is large (descriptions): allocate it on the heap. */
typedef struct proj_catalog_page {
	proj_product items[PROJ_CATALOG_PAGE_MAX];
	size_t count;
	char next_cursor[PROJ_CURSOR_MAX]; /* "" when there is no next page */
} proj_catalog_page;

/* One page of live products ordered by id (out param, caller-owned). A q with
 * no token of PROJ_CATALOG_TOKEN_MIN bytes or more matches nothing.
 * ORN_EINVAL for a limit out of range, a cursor this module did not write, a
 * category that is not one, or a q with more than PROJ_CATALOG_QUERY_WORDS
 * distinct tokens. */
orn_rc proj_catalog_list(proj_catalog *cat, const proj_catalog_query *q, proj_catalog_page *out);

/* What the admin inventory page shows of a product next to its stock row. */
typedef struct proj_product_label {
	bool found;   /* the catalog knows the id (live or deleted) */
	bool deleted; /* the product was deleted (sku and name are its last ones) */
	char sku[PRODUCT_SKU_MAX];
	char name[PRODUCT_NAME_MAX];
} proj_product_label;

/* The labels of count product ids (ids[i] -> out[i]), read in one
 * transaction: the join of GET /admin/inventory. An unknown or invalid id
 * gives found false. */
orn_rc proj_catalog_labels(proj_catalog *cat, const char *const *ids, size_t count, proj_product_label *out);

typedef struct proj_catalog_stats {
	/* product events whose payload did not decode, logged and skipped
	 * (counted again if their batch is retried) */
	uint64_t undecodable;
} proj_catalog_stats;

void proj_catalog_stats_get(proj_catalog *cat, proj_catalog_stats *out);

/* Splits text into the search tokens described above, appending distinct
 * ones to tokens (each PROJ_CATALOG_TOKEN_MAX + 1 bytes, NUL-terminated) up to
 * max in all; *count is in and out. Returns false if a distinct token did not
 * fit (it and later ones are dropped). Exposed for the tests and the gateway's
 * validation of q. */
bool proj_catalog_tokenize(const char *text, char (*tokens)[PROJ_CATALOG_TOKEN_MAX + 1], size_t max,
                           size_t *count);

#endif
