/* proj_internal.h — what the files of projections/ share about LMDB.
 *
 * Only the .c files of projections/ (and their tests) include this header: it is where
 * MDB_* types and codes live. Public headers expose opaque handles only. */
#ifndef ORION_PROJ_INTERNAL_H
#define ORION_PROJ_INTERNAL_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mpack.h"
#include "proj_env.h"
#include "projector.h"

/* A write transaction as projections see it. mdb_error remembers the last
 * LMDB failure of a put/del, so that the writer can tell MDB_MAP_FULL (grow
 * and retry the whole batch) from other failures. */
struct proj_txn {
	MDB_txn *txn;
	proj_env *env;
	int mdb_error;
};

/* Converts an LMDB return code to an orn_rc (0 is ORN_OK). */
orn_rc proj_rc(int mdb_rc);

/* Runs fn in one write transaction and commits it. If the map is full
 * (during fn or at commit) the transaction is aborted, the map doubled and fn
 * run again from scratch: fn must depend only on its closure and the
 * transaction. Any other failure aborts and is returned. Call from the single
 * writer thread only. */
typedef orn_rc (*proj_write_fn)(proj_txn *t, void *closure);
orn_rc proj_env_write(proj_env *env, proj_write_fn fn, void *closure);

/* Starts a short read transaction (from the reader pool); end it with
 * proj_env_read_end on any thread. Never nest two on one thread: map growth
 * waits for every open reader. */
orn_rc proj_env_read_begin(proj_env *env, MDB_txn **out);
void proj_env_read_end(proj_env *env, MDB_txn *txn);

/* The sub-database of checkpoints (opened with the environment). */
#define PROJ_CHECKPOINT_DB "proj.checkpoints"
MDB_dbi proj_env_checkpoint_dbi(proj_env *env);

/* Opens (creating) a named sub-database in a write transaction. Names are
 * `<projection name>.<what>`: `orion rebuild --projection` finds a
 * projection's databases by that prefix. */
orn_rc proj_dbi_open(proj_txn *t, const char *name, unsigned flags, MDB_dbi *out);

/* proj_dbi_open that also tells whether the database is new (*fresh): a
 * model backfills an index added after its first version. */
orn_rc proj_dbi_open_fresh(proj_txn *t, const char *name, unsigned flags, MDB_dbi *out, bool *fresh);

/* One sub-database of a read model: its name, its flags and where its handle
 * lives in the model's struct. */
typedef struct proj_dbi_spec {
	const char *name;
	unsigned flags;
	size_t offset; /* of the MDB_dbi in the model */
} proj_dbi_spec;

/* Opens the count sub-databases of specs, in that order (the order keeps each
 * handle's number across generations), into model: ORN_OK or the first
 * failure (proj_dbi_open). */
orn_rc proj_dbis_open(proj_txn *t, void *model, const proj_dbi_spec *specs, size_t count);

/* ---- generations (a new environment switched in while serving) ----------
 *
 * The environment's path may be a symbolic link to a generation directory
 * (proj_gen.h). proj_env_moved tells whether the link now leads elsewhere;
 * the writer thread then opens that directory with proj_env_open_next, which
 * opens every sub-database in the same order so that each keeps its handle
 * number (the models hold handles), writes to it until it has caught up, and
 * makes it the environment's with proj_env_adopt: queries in flight finish on
 * the old one, the next ones read the new one, and the old one is closed. */
#define PROJ_ENV_MAX_DBS 64

const char *proj_env_path(const proj_env *env);
/* The directory the environment's data lives in now (the link resolved). */
const char *proj_env_target(const proj_env *env);
/* *moved = true and target = the new directory if the path now resolves to
 * another directory. ORN_EIO if it does not resolve at the moment. */
orn_rc proj_env_moved(proj_env *env, char *target, size_t cap, bool *moved);
/* Opens target as the next generation of live (live's options, the same
 * database handles). ORN_EINTERNAL if a handle would differ. */
orn_rc proj_env_open_next(proj_env *live, const char *target, proj_env **out);
/* Makes next's data live's (next is consumed): waits for open queries, closes
 * the old data, stores its directory in old_target. Writer thread only. */
void proj_env_adopt(proj_env *live, proj_env *next, char *old_target, size_t cap);

/* Writes and deletes that record LMDB failures in t->mdb_error. */
orn_rc proj_put(proj_txn *t, MDB_dbi dbi, const void *key, size_t key_len, const void *val, size_t val_len,
                unsigned flags);
/* Deletes key (with val for a DUPSORT database, else NULL). ORN_ENOTFOUND if absent. */
orn_rc proj_del(proj_txn *t, MDB_dbi dbi, const void *key, size_t key_len, const void *val, size_t val_len);
/* Reads key in any transaction; *val points into the map until the txn ends. */
orn_rc proj_get(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_len, MDB_val *val);

/* Logs (error) that a model skipped or rebuilt something at event seq on
 * subject, of type: msg says what. One line shape for every model. */
void proj_log_skip(const char *msg, uint64_t seq, const char *subject, const char *type);

/* ---- what every read model keeps alike ----------------------------------
 *
 * The first member of each read model's struct (carts, catalog, desk,
 * inventory, mails, orders, payments, users): its environment, its projector
 * definition (self is the model), a writer for its records (projector thread
 * only) and the count of events it skipped as undecodable. */
typedef struct proj_model {
	proj_env *env;
	proj_def def;
	mp_writer *writer;
	uint64_t undecodable; /* atomic */
} proj_model;

/* Allocates a zeroed read model of size bytes whose first member is a
 * proj_model, sets that up over env with def (self: the model) and a writer,
 * and runs def->open in a write transaction. The model, or NULL with *rc
 * ORN_ENOMEM or what open returned. */
void *proj_model_create(size_t size, proj_env *env, const proj_def *def, orn_rc *rc);
/* Releases what proj_model_create made, and the model; NULL is a no-op. */
void proj_model_destroy(void *model);
/* Counts an event of type at seq on subject that did not decode and logs that
 * the model (msg says what) skipped it. */
void proj_model_skip(proj_model *m, const char *msg, uint64_t seq, const char *subject, const char *type);
/* The events skipped so far (any thread). */
uint64_t proj_model_undecodable(proj_model *m);

/* Defines the public proj_<model>_def of the read model type (a struct whose
 * proj_model is its member base). */
#define PROJ_MODEL_DEF(type)                                                                                 \
	const proj_def *type##_def(type *m)                                                                  \
	{                                                                                                    \
		return &m->base.def;                                                                         \
	}                                                                                                    \
	extern int proj_model_def_needs_a_semicolon_
/* Defines the public functions of the read model type whose create takes only
 * the environment: type_create (proj_model_create with the projector
 * definition name_, filter_, open_, apply_), type_destroy, PROJ_MODEL_DEF and
 * type_stats_get (its undecodable count). Use once, at file scope, followed by
 * a semicolon. */
#define PROJ_MODEL_FUNCTIONS(type, name_, filter_, open_, apply_)                                            \
	orn_rc type##_create(proj_env *env, type **out)                                                      \
	{                                                                                                    \
		static const proj_def def = {                                                                \
		        .name = (name_), .filter = (filter_), .open = (open_), .apply = (apply_)};           \
		orn_rc rc;                                                                                   \
		*out = proj_model_create(sizeof **out, env, &def, &rc);                                      \
		return rc;                                                                                   \
	}                                                                                                    \
	void type##_destroy(type *m)                                                                         \
	{                                                                                                    \
		proj_model_destroy(m);                                                                       \
	}                                                                                                    \
	void type##_stats_get(type *m, type##_stats *out)                                                    \
	{                                                                                                    \
		out->undecodable = proj_model_undecodable(&m->base);                                         \
	}                                                                                                    \
	PROJ_MODEL_DEF(type)

/* Keyset pagination. Positions cur on the first key after `after` (the
 * first key when after_len is 0) and fills *k and *v: an LMDB code,
 * MDB_NOTFOUND past the end. */
int proj_seek_after(MDB_cursor *cur, const void *after, size_t after_len, MDB_val *k, MDB_val *v);

/* Newest first: positions cur on the last key before below (the last key of
 * all when none is at or after below) and fills *k and *v: an LMDB code,
 * MDB_NOTFOUND when there is none. */
int proj_seek_below(MDB_cursor *cur, const void *below, size_t below_len, MDB_val *k, MDB_val *v);
/* Positions cur, on a DUPSORT database, on the first duplicate of key that
 * is >= target (> target if strict; the first one when target_len is 0) and
 * fills *v: an LMDB code, MDB_NOTFOUND when there is none. */
int proj_seek_dup(MDB_cursor *cur, const void *key, size_t key_len, const void *target, size_t target_len,
                  bool strict, MDB_val *v);

/* ---- pure codecs (proj_codec.c) ---------------------------------------- */

/* Little-endian fixed-width integers, independent of the host. */
void proj_put_u64(uint8_t out[8], uint64_t v);
uint64_t proj_get_u64(const uint8_t in[8]);

/* An int64 as 8 bytes whose memcmp order is the numeric order (sign bit
 * flipped, big-endian): the key of the by-available index. */
void proj_key_i64(uint8_t out[8], int64_t v);
int64_t proj_key_i64_decode(const uint8_t in[8]);

/* Order LMDB uses for keys and duplicates by default: memcmp, then length. */
int proj_bytes_cmp(const void *a, size_t a_len, const void *b, size_t b_len);

/* True if a NATS subject matches filter ("*" one token, ">" the rest). */
bool proj_subject_matches(const char *filter, const char *subject);

/* The inventory record: on hand, reserved, the stream sequence of the last
 * event applied to the item, the low-stock threshold and whether the item is
 * low (LowStockDetected not yet cleared). Version 1 records (32 bytes, before
 * thresholds) still decode, with threshold 0 and not low. */
#define PROJ_STOCK_RECORD_LEN     40
#define PROJ_STOCK_RECORD_VERSION 2
typedef struct proj_stock_record {
	int64_t on_hand;
	int64_t reserved;
	uint64_t last_seq;
	int64_t threshold;
	bool low;
} proj_stock_record;

void proj_stock_record_encode(const proj_stock_record *r, uint8_t out[PROJ_STOCK_RECORD_LEN]);
/* ORN_EDECODE for a wrong length or format version. */
orn_rc proj_stock_record_decode(const void *buf, size_t len, proj_stock_record *out);

/* ---- reads inside a caller's transaction (the quote joins two models) ---- */

typedef struct proj_carts proj_carts;
typedef struct proj_catalog proj_catalog;
struct proj_cart;
struct product_state;

/* The environment a model reads. */
proj_env *proj_carts_env(const proj_carts *m);
proj_env *proj_catalog_env(const proj_catalog *cat);

/* customer_id's cart read in txn into *out (customer_id not copied):
 * ORN_ENOTFOUND if there is none, ORN_EDECODE for a record carts.c did not
 * write. customer_id must be valid (es_id_valid). */
orn_rc proj_carts_read(MDB_txn *txn, proj_carts *m, const char *customer_id, struct proj_cart *out);

/* The live product id read in txn into *out: ORN_ENOTFOUND if it is absent
 * or deleted, ORN_EDECODE for a record catalog.c did not write. id must be
 * valid (es_id_valid). */
orn_rc proj_catalog_read_live(MDB_txn *txn, proj_catalog *cat, const char *id, struct product_state *out);

/* ---- what the desk model (desk.c) reads of the orders model (orders.c) ---- */

struct proj_orders;
struct proj_order_summary;

/* The customer (cap bytes) and creation time of order id, from its record's
 * head, in txn (a write transaction sees the batch's own writes).
 * ORN_ENOTFOUND if no such order, ORN_EDECODE for a bad record. */
orn_rc proj_orders_head_in(struct proj_orders *m, MDB_txn *txn, const char *id, char *customer_id, size_t cap,
                           int64_t *created_at_ms);

/* The summary row of order id of customer_id created at created_at_ms (the
 * customer's index row) into *out, in txn. ORN_ENOTFOUND, ORN_EDECODE. */
orn_rc proj_orders_row_in(struct proj_orders *m, MDB_txn *txn, const char *customer_id, int64_t created_at_ms,
                          const char *id, struct proj_order_summary *out);

#endif
