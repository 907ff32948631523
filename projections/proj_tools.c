/* proj_tools.c — offline operations on read model environments (see proj_tools.h). */
#include "proj_tools.h"

#include <errno.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proj_internal.h"

#define NAME_CAP 256

static orn_rc open_dir(const char *dir, unsigned flags, MDB_env **out)
{
	int mrc = mdb_env_create(out);
	if (mrc == 0)
		mrc = mdb_env_set_maxdbs(*out, PROJ_ENV_MAX_DBS);
	if (mrc == 0)
		mrc = mdb_env_open(*out, dir, flags | MDB_NOTLS, 0640);
	if (mrc != 0) {
		log_error("cannot open a read model environment", "path", dir, "error", mdb_strerror(mrc));
		if (*out != NULL)
			mdb_env_close(*out);
		*out = NULL;
		return mrc == ENOENT ? ORN_ENOTFOUND : proj_rc(mrc);
	}
	return ORN_OK;
}

orn_rc proj_env_snapshot(const char *src, const char *dst)
{
	MDB_env *env = NULL;
	orn_rc rc = open_dir(src, MDB_RDONLY, &env);
	if (rc != ORN_OK)
		return rc;
	int mrc = mdb_env_copy2(env, dst, MDB_CP_COMPACT);
	mdb_env_close(env);
	if (mrc != 0)
		log_error("cannot copy a read model environment", "from", src, "to", dst, "error",
		          mdb_strerror(mrc));
	return proj_rc(mrc);
}

/* The names of the sub-databases of txn's environment, sorted (LMDB order),
 * as one buffer of NUL-terminated names. */
static orn_rc list_dbs(MDB_txn *txn, char **names, size_t *count)
{
	MDB_dbi main;
	MDB_cursor *c = NULL;
	MDB_val k, v;
	size_t used = 0, cap = 1024;
	char *buf = malloc(cap);
	*names = NULL;
	*count = 0;
	int mrc = buf != NULL ? mdb_dbi_open(txn, NULL, 0, &main) : ENOMEM;
	if (mrc == 0)
		mrc = mdb_cursor_open(txn, main, &c);
	for (int op = MDB_FIRST; mrc == 0; op = MDB_NEXT) {
		if ((mrc = mdb_cursor_get(c, &k, &v, op)) != 0)
			break;
		if (k.mv_size == 0 || k.mv_size >= NAME_CAP || memchr(k.mv_data, '\0', k.mv_size) != NULL)
			continue;
		if (used + k.mv_size + 1 > cap) {
			char *grown = realloc(buf, cap * 2 + k.mv_size);
			if (grown == NULL) {
				mrc = ENOMEM;
				break;
			}
			buf = grown;
			cap = cap * 2 + k.mv_size;
		}
		memcpy(buf + used, k.mv_data, k.mv_size);
		buf[used + k.mv_size] = '\0';
		used += k.mv_size + 1;
		(*count)++;
	}
	if (c != NULL)
		mdb_cursor_close(c);
	if (mrc != MDB_NOTFOUND) {
		free(buf);
		*count = 0;
		return proj_rc(mrc);
	}
	*names = buf;
	return ORN_OK;
}

static const char *next_name(const char *name)
{
	return name + strlen(name) + 1;
}

static bool has_prefix(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(name, prefix, n) == 0 && name[n] == '.';
}

orn_rc proj_env_reset_projection(const char *dir, const char *name)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	char *names = NULL;
	size_t count = 0;
	orn_rc rc = open_dir(dir, 0, &env);
	if (rc != ORN_OK)
		return rc;
	int mrc = mdb_txn_begin(env, NULL, 0, &txn);
	if (mrc == 0 && (rc = list_dbs(txn, &names, &count)) != ORN_OK)
		mrc = EIO;
	const char *n = names;
	for (size_t i = 0; i < count && mrc == 0; i++, n = next_name(n)) {
		MDB_dbi dbi;
		if (!has_prefix(n, name))
			continue;
		if ((mrc = mdb_dbi_open(txn, n, 0, &dbi)) == 0)
			mrc = mdb_drop(txn, dbi, 0);
	}
	if (mrc == 0) {
		MDB_dbi cps;
		MDB_val k = {strlen(name), (void *)name};
		if ((mrc = mdb_dbi_open(txn, PROJ_CHECKPOINT_DB, MDB_CREATE, &cps)) == 0) {
			mrc = mdb_del(txn, cps, &k, NULL);
			if (mrc == MDB_NOTFOUND)
				mrc = 0;
		}
	}
	if (mrc == 0)
		mrc = mdb_txn_commit(txn);
	else if (txn != NULL)
		mdb_txn_abort(txn);
	free(names);
	mdb_env_close(env);
	if (mrc != 0) {
		log_error("cannot reset a projection", "path", dir, "projection", name, "error",
		          mdb_strerror(mrc));
		return rc != ORN_OK ? rc : proj_rc(mrc);
	}
	return ORN_OK;
}

orn_rc proj_env_read_checkpoint(const char *dir, const char *name, uint64_t *seq)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi cps;
	MDB_val v;
	*seq = 0;
	orn_rc rc = open_dir(dir, MDB_RDONLY, &env);
	if (rc != ORN_OK)
		return rc;
	int mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (mrc == 0)
		mrc = mdb_dbi_open(txn, PROJ_CHECKPOINT_DB, 0, &cps);
	if (mrc == 0) {
		rc = proj_get(txn, cps, name, strlen(name), &v);
		if (rc == ORN_OK && v.mv_size == 8)
			*seq = proj_get_u64(v.mv_data);
		else if (rc == ORN_OK)
			rc = ORN_EDECODE;
		else if (rc == ORN_ENOTFOUND)
			rc = ORN_OK;
	} else if (mrc == MDB_NOTFOUND) {
		mrc = 0; /* no checkpoints at all */
	} else {
		rc = proj_rc(mrc);
	}
	if (txn != NULL)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	return rc;
}

/* ---- comparison ---- */

typedef struct side {
	MDB_cursor *c;
	MDB_val k, v;
	bool done;
} side;

static int step(side *s, int op)
{
	int mrc = mdb_cursor_get(s->c, &s->k, &s->v, op);
	s->done = mrc == MDB_NOTFOUND;
	return mrc == MDB_NOTFOUND ? 0 : mrc;
}

/* -1, 0, 1: which record comes first (key, then value for duplicates). */
static int record_cmp(const side *a, const side *b, bool dups)
{
	int c = proj_bytes_cmp(a->k.mv_data, a->k.mv_size, b->k.mv_data, b->k.mv_size);
	if (c == 0 && dups)
		c = proj_bytes_cmp(a->v.mv_data, a->v.mv_size, b->v.mv_data, b->v.mv_size);
	return c;
}

typedef struct compare {
	MDB_txn *live, *rebuilt;
	const char *prefix;
	proj_diff_fn fn;
	void *closure;
	proj_compare_result *out;
} compare;

static void report(compare *cmp, const char *db, const side *key_side, const side *live, const side *rebuilt)
{
	proj_diff d = {db,
	               key_side->k.mv_data,
	               key_side->k.mv_size,
	               live ? live->v.mv_data : NULL,
	               live ? live->v.mv_size : 0,
	               rebuilt ? rebuilt->v.mv_data : NULL,
	               rebuilt ? rebuilt->v.mv_size : 0};
	cmp->out->differences++;
	if (cmp->fn != NULL)
		cmp->fn(&d, cmp->closure);
}

/* Opens name in txn if it exists there (*found false if not). */
static int open_db(MDB_txn *txn, const char *name, MDB_dbi *dbi, bool *found)
{
	int mrc = mdb_dbi_open(txn, name, 0, dbi);
	*found = mrc == 0;
	return mrc == MDB_NOTFOUND ? 0 : mrc;
}

static int compare_db(compare *cmp, const char *name)
{
	MDB_dbi ldbi = 0, rdbi = 0;
	bool lfound, rfound, checkpoints = strcmp(name, PROJ_CHECKPOINT_DB) == 0;
	unsigned lflags = 0, rflags = 0;
	side l = {0}, r = {0};
	int mrc = open_db(cmp->live, name, &ldbi, &lfound);
	if (mrc == 0)
		mrc = open_db(cmp->rebuilt, name, &rdbi, &rfound);
	if (mrc != 0)
		return mrc;
	if (lfound)
		mdb_dbi_flags(cmp->live, ldbi, &lflags);
	if (rfound)
		mdb_dbi_flags(cmp->rebuilt, rdbi, &rflags);
	bool dups = ((lflags | rflags) & MDB_DUPSORT) != 0;
	cmp->out->databases++;
	l.done = !lfound;
	r.done = !rfound;
	if (lfound && (mrc = mdb_cursor_open(cmp->live, ldbi, &l.c)) == 0)
		mrc = step(&l, MDB_FIRST);
	if (mrc == 0 && rfound && (mrc = mdb_cursor_open(cmp->rebuilt, rdbi, &r.c)) == 0)
		mrc = step(&r, MDB_FIRST);
	while (mrc == 0 && !(l.done && r.done)) {
		int c = l.done ? 1 : r.done ? -1 : record_cmp(&l, &r, dups);
		side *key_side = c <= 0 ? &l : &r;
		bool selected = !checkpoints || cmp->prefix == NULL ||
		                (key_side->k.mv_size == strlen(cmp->prefix) &&
		                 memcmp(key_side->k.mv_data, cmp->prefix, key_side->k.mv_size) == 0);
		if (c == 0) {
			cmp->out->records += 2;
			if (selected && !dups &&
			    proj_bytes_cmp(l.v.mv_data, l.v.mv_size, r.v.mv_data, r.v.mv_size) != 0)
				report(cmp, name, &l, &l, &r);
			if ((mrc = step(&l, MDB_NEXT)) == 0)
				mrc = step(&r, MDB_NEXT);
		} else if (c < 0) {
			cmp->out->records++;
			if (selected)
				report(cmp, name, &l, &l, NULL);
			mrc = step(&l, MDB_NEXT);
		} else {
			cmp->out->records++;
			if (selected)
				report(cmp, name, &r, NULL, &r);
			mrc = step(&r, MDB_NEXT);
		}
	}
	if (l.c != NULL)
		mdb_cursor_close(l.c);
	if (r.c != NULL)
		mdb_cursor_close(r.c);
	return mrc;
}

static bool selected_db(const char *name, const char *prefix)
{
	return prefix == NULL || has_prefix(name, prefix) || strcmp(name, PROJ_CHECKPOINT_DB) == 0;
}

orn_rc proj_env_compare(const char *live_dir, const char *rebuilt_dir, const char *prefix, proj_diff_fn fn,
                        void *closure, proj_compare_result *out)
{
	MDB_env *le = NULL, *re = NULL;
	char *lnames = NULL, *rnames = NULL;
	size_t lcount = 0, rcount = 0;
	compare cmp = {NULL, NULL, prefix, fn, closure, out};
	int mrc = 0;
	memset(out, 0, sizeof *out);
	orn_rc rc = open_dir(live_dir, MDB_RDONLY, &le);
	if (rc == ORN_OK)
		rc = open_dir(rebuilt_dir, MDB_RDONLY, &re);
	if (rc == ORN_OK && ((mrc = mdb_txn_begin(le, NULL, MDB_RDONLY, &cmp.live)) != 0 ||
	                     (mrc = mdb_txn_begin(re, NULL, MDB_RDONLY, &cmp.rebuilt)) != 0))
		rc = proj_rc(mrc);
	if (rc == ORN_OK && (rc = list_dbs(cmp.live, &lnames, &lcount)) == ORN_OK)
		rc = list_dbs(cmp.rebuilt, &rnames, &rcount);
	/* Walk both sorted name lists as one merged list. */
	const char *ln = lnames, *rn = rnames;
	size_t li = 0, ri = 0;
	while (rc == ORN_OK && (li < lcount || ri < rcount)) {
		int c = li == lcount ? 1 : ri == rcount ? -1 : strcmp(ln, rn);
		const char *name = c <= 0 ? ln : rn;
		if (selected_db(name, prefix) && (mrc = compare_db(&cmp, name)) != 0)
			rc = proj_rc(mrc);
		if (c <= 0) {
			ln = next_name(ln);
			li++;
		}
		if (c >= 0) {
			rn = next_name(rn);
			ri++;
		}
	}
	if (cmp.rebuilt != NULL)
		mdb_txn_abort(cmp.rebuilt);
	if (cmp.live != NULL)
		mdb_txn_abort(cmp.live);
	free(lnames);
	free(rnames);
	if (re != NULL)
		mdb_env_close(re);
	if (le != NULL)
		mdb_env_close(le);
	return rc;
}
