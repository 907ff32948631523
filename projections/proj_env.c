/* proj_env.c — the LMDB environment of the read models (see proj_env.h).
 *
 * Map growth. mdb_env_set_mapsize may only run while this process has no
 * transaction open. Two rules guarantee it: (1) only the projector thread
 * writes, and it grows the map itself after aborting its own transaction;
 * (2) every read transaction is held under a shared lock (readers_lock) for
 * its whole life, and growth takes that lock exclusively. The lock prefers
 * writers, so a steady stream of short queries cannot starve growth; a query
 * simply waits the few microseconds a remap takes. */
#include "proj_internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

#define MIB ((size_t)1024 * 1024)

struct proj_env {
	MDB_env *env;
	size_t map_size;
	size_t max_map_size;
	pthread_rwlock_t readers_lock; /* shared: an open read txn; exclusive: remap */
	pthread_mutex_t cache_lock;
	MDB_txn **cache; /* reset read transactions ready for mdb_txn_renew */
	unsigned cache_count, cache_cap;
	unsigned max_readers;
	uint64_t map_grows;  /* written by the writer thread only */
	uint64_t write_txns; /* idem */
	MDB_dbi checkpoints; /* projection name -> last applied stream sequence */

	/* Generations (proj_env_open_next / proj_env_adopt): the path as given
	 * (perhaps a symbolic link) and the directory it led to when opened. */
	proj_env_options opts; /* opts.path points at path */
	char path[PATH_MAX];
	char target[PATH_MAX];
	/* Every sub-database opened, in opening order (writer thread only). */
	struct {
		char name[PROJ_NAME_MAX];
		unsigned flags;
		MDB_dbi dbi;
	} dbs[PROJ_ENV_MAX_DBS];
	unsigned db_count;
};

void proj_env_options_init(proj_env_options *o)
{
	memset(o, 0, sizeof *o);
	o->map_size = 256 * MIB;
	o->max_map_size = 64 * 1024 * MIB;
	o->max_dbs = 64;
	o->max_readers = 126;
	o->reader_cache = 32;
}

orn_rc proj_rc(int mdb_rc)
{
	switch (mdb_rc) {
	case MDB_SUCCESS:
		return ORN_OK;
	case MDB_NOTFOUND:
		return ORN_ENOTFOUND;
	case MDB_KEYEXIST:
		return ORN_EEXISTS;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_DBS_FULL:
	case MDB_READERS_FULL:
	case MDB_BAD_VALSIZE:
		return ORN_ETOOBIG;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return ORN_EDECODE;
	case ENOMEM:
		return ORN_ENOMEM;
	case EINVAL:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_DBI:
		return ORN_EINVAL;
	case EACCES:
	case ENOENT:
	case EIO:
	case ENOSPC:
		return ORN_EIO;
	default:
		return ORN_EINTERNAL;
	}
}

static void log_mdb(const char *msg, int mdb_rc)
{
	log_error(msg, "error", mdb_strerror(mdb_rc));
}

orn_rc proj_env_open(const proj_env_options *o, proj_env **out)
{
	orn_rc rc = ORN_OK;
	int mrc = 0;
	proj_env *env = NULL;
	*out = NULL;
	if (o == NULL || o->path == NULL || o->map_size == 0 || o->max_map_size < o->map_size ||
	    o->max_dbs == 0 || o->max_dbs > PROJ_ENV_MAX_DBS || o->max_readers == 0 ||
	    strlen(o->path) >= PATH_MAX)
		return ORN_EINVAL;
	if (mkdir(o->path, 0750) != 0 && errno != EEXIST) {
		log_error("cannot create the read model directory", "path", o->path, "error",
		          strerror(errno));
		return ORN_EIO;
	}
	env = calloc(1, sizeof *env);
	if (env == NULL)
		return ORN_ENOMEM;
	env->cache_cap = o->reader_cache;
	env->cache = calloc(o->reader_cache + 1, sizeof *env->cache);
	if (env->cache == NULL) {
		free(env);
		return ORN_ENOMEM;
	}
	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&env->readers_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&env->cache_lock, NULL);
	env->max_readers = o->max_readers;
	env->max_map_size = o->max_map_size;
	env->opts = *o;
	snprintf(env->path, sizeof env->path, "%s", o->path);
	env->opts.path = env->path;
	if (realpath(o->path, env->target) == NULL)
		snprintf(env->target, sizeof env->target, "%s", o->path);
	if ((mrc = mdb_env_create(&env->env)) != 0 || (mrc = mdb_env_set_maxdbs(env->env, o->max_dbs)) != 0 ||
	    (mrc = mdb_env_set_maxreaders(env->env, o->max_readers)) != 0 ||
	    (mrc = mdb_env_set_mapsize(env->env, o->map_size)) != 0)
		goto fail;
	if ((mrc = mdb_env_open(env->env, o->path, MDB_NOTLS | MDB_NOMETASYNC | (o->no_sync ? MDB_NOSYNC : 0),
	                        0640)) != 0)
		goto fail;
	MDB_txn *txn = NULL;
	if ((mrc = mdb_txn_begin(env->env, NULL, 0, &txn)) != 0)
		goto fail;
	if ((mrc = mdb_dbi_open(txn, PROJ_CHECKPOINT_DB, MDB_CREATE, &env->checkpoints)) != 0) {
		mdb_txn_abort(txn);
		goto fail;
	}
	if ((mrc = mdb_txn_commit(txn)) != 0)
		goto fail;
	env->db_count = 1;
	snprintf(env->dbs[0].name, sizeof env->dbs[0].name, "%s", PROJ_CHECKPOINT_DB);
	env->dbs[0].dbi = env->checkpoints;
	/* An existing environment may already be larger than asked for. */
	MDB_envinfo info;
	mdb_env_info(env->env, &info);
	env->map_size = info.me_mapsize;
	if (env->map_size > env->max_map_size)
		env->max_map_size = env->map_size;
	*out = env;
	return ORN_OK;
fail:
	log_error("cannot open the read model environment", "path", o->path, "error", mdb_strerror(mrc));
	rc = proj_rc(mrc);
	if (rc == ORN_ENOTFOUND)
		rc = ORN_EIO;
	proj_env_close(env);
	return rc;
}

orn_rc proj_env_sync(proj_env *env)
{
	int mrc = mdb_env_sync(env->env, 1);
	if (mrc != 0)
		log_mdb("cannot flush the read models", mrc);
	return proj_rc(mrc);
}

void proj_env_close(proj_env *env)
{
	if (env == NULL)
		return;
	for (unsigned i = 0; i < env->cache_count; i++)
		mdb_txn_abort(env->cache[i]);
	if (env->env != NULL)
		mdb_env_close(env->env);
	pthread_mutex_destroy(&env->cache_lock);
	pthread_rwlock_destroy(&env->readers_lock);
	free(env->cache);
	free(env);
}

orn_rc proj_env_stats_get(proj_env *env, proj_env_stats *out)
{
	MDB_envinfo info;
	MDB_stat st;
	memset(out, 0, sizeof *out);
	pthread_rwlock_rdlock(&env->readers_lock);
	int mrc = mdb_env_info(env->env, &info);
	if (mrc == 0)
		mrc = mdb_env_stat(env->env, &st);
	pthread_rwlock_unlock(&env->readers_lock);
	if (mrc != 0)
		return proj_rc(mrc);
	out->map_size = info.me_mapsize;
	out->used_bytes = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
	out->map_grows = __atomic_load_n(&env->map_grows, __ATOMIC_RELAXED);
	out->write_txns = __atomic_load_n(&env->write_txns, __ATOMIC_RELAXED);
	out->readers_max = env->max_readers;
	return ORN_OK;
}

/* Sets the map size with no transaction of this process open (see top).
 * size 0 adopts the size another process has set. */
static orn_rc remap(proj_env *env, size_t size)
{
	pthread_rwlock_wrlock(&env->readers_lock);
	int mrc = mdb_env_set_mapsize(env->env, size);
	if (mrc == 0) {
		MDB_envinfo info;
		mdb_env_info(env->env, &info);
		env->map_size = info.me_mapsize;
	}
	pthread_rwlock_unlock(&env->readers_lock);
	if (mrc != 0)
		log_mdb("cannot resize the read model map", mrc);
	return proj_rc(mrc);
}

static orn_rc grow(proj_env *env)
{
	if (env->map_size >= env->max_map_size) {
		char size[32];
		snprintf(size, sizeof size, "%zu", env->map_size);
		log_error("read model map is full at its maximum size", "map_size", size);
		return ORN_ETOOBIG;
	}
	size_t next = env->map_size > env->max_map_size / 2 ? env->max_map_size : env->map_size * 2;
	orn_rc rc = remap(env, next);
	if (rc == ORN_OK) {
		char size[32];
		snprintf(size, sizeof size, "%zu", env->map_size);
		log_info("read model map grown", "map_size", size);
		__atomic_add_fetch(&env->map_grows, 1, __ATOMIC_RELAXED);
	}
	return rc;
}

orn_rc proj_env_write(proj_env *env, proj_write_fn fn, void *closure)
{
	for (;;) {
		proj_txn t = {.env = env};
		int mrc = mdb_txn_begin(env->env, NULL, 0, &t.txn);
		if (mrc == MDB_MAP_RESIZED) { /* another process grew the map */
			orn_rc rc = remap(env, 0);
			if (rc != ORN_OK)
				return rc;
			continue;
		}
		if (mrc != 0) {
			log_mdb("cannot begin a read model write", mrc);
			return proj_rc(mrc);
		}
		orn_rc rc = fn(&t, closure);
		if (rc == ORN_OK) {
			mrc = mdb_txn_commit(t.txn); /* frees the txn whatever the outcome */
			if (mrc == 0) {
				__atomic_add_fetch(&env->write_txns, 1, __ATOMIC_RELAXED);
				return ORN_OK;
			}
			t.mdb_error = mrc;
			rc = proj_rc(mrc);
		} else {
			mdb_txn_abort(t.txn);
		}
		if (t.mdb_error != MDB_MAP_FULL) {
			if (t.mdb_error != 0)
				log_mdb("read model write failed", t.mdb_error);
			return rc;
		}
		if ((rc = grow(env)) != ORN_OK)
			return rc;
	}
}

orn_rc proj_env_read_begin(proj_env *env, MDB_txn **out)
{
	MDB_txn *txn = NULL;
	int mrc = 0;
	*out = NULL;
	pthread_rwlock_rdlock(&env->readers_lock);
	pthread_mutex_lock(&env->cache_lock);
	if (env->cache_count > 0)
		txn = env->cache[--env->cache_count];
	pthread_mutex_unlock(&env->cache_lock);
	if (txn != NULL && (mrc = mdb_txn_renew(txn)) != 0) {
		mdb_txn_abort(txn);
		txn = NULL;
	}
	if (txn == NULL)
		mrc = mdb_txn_begin(env->env, NULL, MDB_RDONLY, &txn);
	if (mrc != 0) {
		pthread_rwlock_unlock(&env->readers_lock);
		log_mdb("cannot begin a read model query", mrc);
		return proj_rc(mrc);
	}
	*out = txn;
	return ORN_OK;
}

void proj_env_read_end(proj_env *env, MDB_txn *txn)
{
	bool kept = false;
	if (txn == NULL)
		return;
	mdb_txn_reset(txn);
	pthread_mutex_lock(&env->cache_lock);
	if (env->cache_count < env->cache_cap) {
		env->cache[env->cache_count++] = txn;
		kept = true;
	}
	pthread_mutex_unlock(&env->cache_lock);
	if (!kept)
		mdb_txn_abort(txn);
	pthread_rwlock_unlock(&env->readers_lock);
}

MDB_dbi proj_env_checkpoint_dbi(proj_env *env)
{
	return env->checkpoints;
}

/* Records (or updates: a retried transaction may get another handle) the
 * handle of a sub-database, in first-opening order. */
static orn_rc remember_db(proj_env *env, const char *name, unsigned flags, MDB_dbi dbi)
{
	unsigned i = 0;
	while (i < env->db_count && strcmp(env->dbs[i].name, name) != 0)
		i++;
	if (i == env->db_count) {
		if (i == PROJ_ENV_MAX_DBS || strlen(name) >= PROJ_NAME_MAX)
			return ORN_ETOOBIG;
		snprintf(env->dbs[i].name, sizeof env->dbs[i].name, "%s", name);
		env->db_count++;
	}
	env->dbs[i].flags = flags;
	env->dbs[i].dbi = dbi;
	return ORN_OK;
}

orn_rc proj_dbi_open(proj_txn *t, const char *name, unsigned flags, MDB_dbi *out)
{
	int mrc = mdb_dbi_open(t->txn, name, flags | MDB_CREATE, out);
	if (mrc != 0) {
		t->mdb_error = mrc;
		log_error("cannot open a read model database", "name", name, "error", mdb_strerror(mrc));
		return proj_rc(mrc);
	}
	return remember_db(t->env, name, flags, *out);
}

orn_rc proj_dbi_open_fresh(proj_txn *t, const char *name, unsigned flags, MDB_dbi *out, bool *fresh)
{
	MDB_dbi probe;

	*fresh = mdb_dbi_open(t->txn, name, flags, &probe) == MDB_NOTFOUND;
	return proj_dbi_open(t, name, flags, out);
}

orn_rc proj_dbis_open(proj_txn *t, void *model, const proj_dbi_spec *specs, size_t count)
{
	orn_rc rc = ORN_OK;
	for (size_t i = 0; rc == ORN_OK && i < count; i++)
		rc = proj_dbi_open(t, specs[i].name, specs[i].flags,
		                   (MDB_dbi *)((char *)model + specs[i].offset));
	return rc;
}

/* ---- generations --------------------------------------------------------- */

const char *proj_env_path(const proj_env *env)
{
	return env->path;
}

const char *proj_env_target(const proj_env *env)
{
	return env->target;
}

orn_rc proj_env_moved(proj_env *env, char *target, size_t cap, bool *moved)
{
	char now[PATH_MAX];
	*moved = false;
	if (realpath(env->path, now) == NULL)
		return ORN_EIO; /* between a link's removal and its replacement: look again later */
	if (strcmp(now, env->target) == 0)
		return ORN_OK;
	if (strlen(now) >= cap)
		return ORN_ETOOBIG;
	memcpy(target, now, strlen(now) + 1);
	*moved = true;
	return ORN_OK;
}

/* Opens every sub-database live has opened, in the same order, so that each
 * gets the same handle number in next as in live: the models keep their
 * handles across the switch. */
static orn_rc mirror_dbs(proj_txn *t, void *closure)
{
	const proj_env *live = closure;
	for (unsigned i = 1; i < live->db_count; i++) {
		MDB_dbi dbi = 0;
		orn_rc rc = proj_dbi_open(t, live->dbs[i].name, live->dbs[i].flags, &dbi);
		if (rc != ORN_OK)
			return rc;
		if (dbi != live->dbs[i].dbi) {
			log_error("a new read model generation numbers its databases differently", "name",
			          live->dbs[i].name);
			return ORN_EINTERNAL;
		}
	}
	return ORN_OK;
}

orn_rc proj_env_open_next(proj_env *live, const char *target, proj_env **out)
{
	proj_env_options o = live->opts;
	proj_env *next = NULL;
	o.path = target;
	o.map_size = o.map_size < live->map_size ? live->map_size : o.map_size;
	if (o.max_map_size < o.map_size)
		o.max_map_size = o.map_size;
	orn_rc rc = proj_env_open(&o, &next);
	if (rc == ORN_OK && next->checkpoints != live->checkpoints)
		rc = ORN_EINTERNAL;
	if (rc == ORN_OK)
		rc = proj_env_write(next, mirror_dbs, live);
	if (rc != ORN_OK) {
		proj_env_close(next);
		return rc;
	}
	*out = next;
	return ORN_OK;
}

static void drop_cache(proj_env *env)
{
	pthread_mutex_lock(&env->cache_lock);
	for (unsigned i = 0; i < env->cache_count; i++)
		mdb_txn_abort(env->cache[i]);
	env->cache_count = 0;
	pthread_mutex_unlock(&env->cache_lock);
}

void proj_env_adopt(proj_env *live, proj_env *next, char *old_target, size_t cap)
{
	drop_cache(next);
	pthread_rwlock_wrlock(&live->readers_lock); /* waits for the queries in flight */
	drop_cache(live);
	mdb_env_close(live->env);
	live->env = next->env;
	live->map_size = next->map_size;
	live->max_map_size = next->max_map_size;
	snprintf(old_target, cap, "%s", live->target);
	memcpy(live->target, next->target, sizeof live->target);
	pthread_rwlock_unlock(&live->readers_lock);
	next->env = NULL;
	proj_env_close(next);
}

orn_rc proj_put(proj_txn *t, MDB_dbi dbi, const void *key, size_t key_len, const void *val, size_t val_len,
                unsigned flags)
{
	MDB_val k = {key_len, (void *)key}, v = {val_len, (void *)val};
	int mrc = mdb_put(t->txn, dbi, &k, &v, flags);
	if (mrc != 0 && mrc != MDB_KEYEXIST)
		t->mdb_error = mrc;
	return proj_rc(mrc);
}

orn_rc proj_del(proj_txn *t, MDB_dbi dbi, const void *key, size_t key_len, const void *val, size_t val_len)
{
	MDB_val k = {key_len, (void *)key}, v = {val_len, (void *)val};
	int mrc = mdb_del(t->txn, dbi, &k, val != NULL ? &v : NULL);
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		t->mdb_error = mrc;
	return proj_rc(mrc);
}

void proj_log_skip(const char *msg, uint64_t seq, const char *subject, const char *type)
{
	char text[24];
	snprintf(text, sizeof text, "%llu", (unsigned long long)seq);
	log_error(msg, "seq", text, "subject", subject, "type", type);
}

orn_rc proj_get(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_len, MDB_val *val)
{
	MDB_val k = {key_len, (void *)key};
	return proj_rc(mdb_get(txn, dbi, &k, val));
}

int proj_seek_after(MDB_cursor *cur, const void *after, size_t after_len, MDB_val *k, MDB_val *v)
{
	*k = (MDB_val){after_len, (void *)after};
	int mrc = mdb_cursor_get(cur, k, v, after_len > 0 ? MDB_SET_RANGE : MDB_FIRST);
	if (mrc == 0 && after_len > 0 && proj_bytes_cmp(k->mv_data, k->mv_size, after, after_len) == 0)
		mrc = mdb_cursor_get(cur, k, v, MDB_NEXT);
	return mrc;
}

int proj_seek_below(MDB_cursor *cur, const void *below, size_t below_len, MDB_val *k, MDB_val *v)
{
	*k = (MDB_val){below_len, (void *)below};
	int mrc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
	if (mrc == 0)
		mrc = mdb_cursor_get(cur, k, v, MDB_PREV);
	else if (mrc == MDB_NOTFOUND)
		mrc = mdb_cursor_get(cur, k, v, MDB_LAST);
	return mrc;
}

int proj_seek_dup(MDB_cursor *cur, const void *key, size_t key_len, const void *target, size_t target_len,
                  bool strict, MDB_val *v)
{
	MDB_val k = {key_len, (void *)key};
	*v = (MDB_val){target_len, (void *)target};
	if (target_len == 0)
		return mdb_cursor_get(cur, &k, v, MDB_SET_KEY);
	int mrc = mdb_cursor_get(cur, &k, v, MDB_GET_BOTH_RANGE);
	if (mrc == 0 && strict && proj_bytes_cmp(v->mv_data, v->mv_size, target, target_len) == 0)
		mrc = mdb_cursor_get(cur, &k, v, MDB_NEXT_DUP);
	return mrc;
}
