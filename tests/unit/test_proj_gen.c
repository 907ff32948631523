/* test_proj_gen.c — read model generations on disk (proj_gen.c), the offline
 * tools (proj_tools.c) and the environment's switch to a next generation
 * (proj_env_open_next / proj_env_adopt), without NATS: given directories and
 * environments written through proj_env, when prepared, reset, compared or
 * switched, then the files, links and records are as documented. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proj_gen.h"
#include "proj_internal.h"
#include "proj_tools.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/orion-projgen-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(proj_gen, .init = setup, .fini = teardown);

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static void link_target(char *out, size_t cap)
{
	char link[PATH_MAX];
	snprintf(link, sizeof link, "%s/lmdb", dir);
	ssize_t n = readlink(link, out, cap - 1);
	cr_assert_gt(n, 0, "lmdb is a link");
	out[n] = '\0';
}

Test(proj_gen, prepare_creates_a_first_generation_and_is_idempotent)
{
	char link[PATH_MAX], first[PATH_MAX], again[PATH_MAX];
	cr_assert_eq(proj_gen_prepare(dir, link, sizeof link), ORN_OK);
	link_target(first, sizeof first);
	cr_assert(strncmp(first, "lmdb.", 5) == 0, "%s", first);
	cr_assert_eq(proj_gen_prepare(dir, link, sizeof link), ORN_OK);
	link_target(again, sizeof again);
	cr_assert_str_eq(first, again);
}

Test(proj_gen, prepare_moves_a_plain_directory_into_generation_0)
{
	char link[PATH_MAX], path[PATH_MAX], target[PATH_MAX];
	snprintf(path, sizeof path, "%s/lmdb", dir);
	cr_assert_eq(mkdir(path, 0750), 0);
	snprintf(path, sizeof path, "%s/lmdb/data.mdb", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("old", f);
	fclose(f);
	cr_assert_eq(proj_gen_prepare(dir, link, sizeof link), ORN_OK);
	link_target(target, sizeof target);
	cr_assert_str_eq(target, "lmdb.0");
	snprintf(path, sizeof path, "%s/lmdb.0/data.mdb", dir);
	cr_assert(exists(path), "the data moved with the directory");
}

Test(proj_gen, prepare_sweeps_unused_generations_and_abandoned_builds_only)
{
	char link[PATH_MAX], path[PATH_MAX], live_build[PATH_MAX];
	cr_assert_eq(proj_gen_prepare(dir, link, sizeof link), ORN_OK);
	snprintf(path, sizeof path, "%s/lmdb.123", dir); /* an old generation */
	cr_assert_eq(mkdir(path, 0750), 0);
	snprintf(path, sizeof path, "%s/lmdb.124.999999999.building", dir); /* its builder is gone */
	cr_assert_eq(mkdir(path, 0750), 0);
	cr_assert_eq(proj_gen_create(dir, live_build, sizeof live_build), ORN_OK); /* ours: alive */
	snprintf(path, sizeof path, "%s/unrelated", dir);
	cr_assert_eq(mkdir(path, 0750), 0);
	cr_assert_eq(proj_gen_prepare(dir, link, sizeof link), ORN_OK);
	snprintf(path, sizeof path, "%s/lmdb.123", dir);
	cr_assert_not(exists(path));
	snprintf(path, sizeof path, "%s/lmdb.124.999999999.building", dir);
	cr_assert_not(exists(path));
	cr_assert(exists(live_build), "a build whose process lives stays");
	snprintf(path, sizeof path, "%s/unrelated", dir);
	cr_assert(exists(path), "only generations are touched");
}

Test(proj_gen, publish_renames_the_build_and_points_the_link)
{
	char link[PATH_MAX], build[PATH_MAX], target[PATH_MAX];
	cr_assert_eq(proj_gen_prepare(dir, link, sizeof link), ORN_OK);
	cr_assert_eq(proj_gen_create(dir, build, sizeof build), ORN_OK);
	cr_assert_eq(proj_gen_publish(dir, build), ORN_OK);
	link_target(target, sizeof target);
	cr_assert(strstr(build, target) != NULL && strstr(target, ".building") == NULL, "%s -> %s", build,
	          target);
	cr_assert_not(exists(build));
	cr_assert_eq(proj_gen_publish(dir, "/tmp/not-a-build"), ORN_EINVAL);
	char other[PATH_MAX];
	snprintf(other, sizeof other, "%s/not-a-generation", dir);
	cr_assert_eq(mkdir(other, 0750), 0);
	proj_gen_retire(other);
	cr_assert(exists(other), "a directory without a generation's name is left alone");
}

/* Issue 13: a projector starting (proj_gen_prepare sweeps unused
 * generations) while a rebuild publishes (the build renamed, then the link
 * swapped) must never delete the fresh generation. A child process prepares
 * in a tight loop while this one publishes 300 generations; each must be
 * there when its link is read. */
Test(proj_gen, a_projector_starting_during_a_publish_never_deletes_the_fresh_generation, .timeout = 60)
{
	char link[PATH_MAX], build[PATH_MAX], target[NAME_MAX + 1], path[PATH_MAX];
	cr_assert_eq(proj_gen_prepare(dir, link, sizeof link), ORN_OK);
	pid_t sweeper = fork();
	cr_assert_geq(sweeper, 0);
	if (sweeper == 0) {
		for (;;)
			proj_gen_prepare(dir, link, sizeof link);
	}
	int lost = 0;
	for (int i = 0; i < 300; i++) {
		cr_assert_eq(proj_gen_create(dir, build, sizeof build), ORN_OK);
		orn_rc rc = proj_gen_publish(dir, build);
		link_target(target, sizeof target);
		snprintf(path, sizeof path, "%s/%s", dir, target);
		struct stat st;
		if (rc != ORN_OK || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
			lost++;
	}
	kill(sweeper, SIGKILL);
	waitpid(sweeper, NULL, 0);
	cr_assert_eq(lost, 0, "%d of 300 published generations were deleted under their link", lost);
}

/* ---- environments ---- */

static proj_env *open_at(const char *path)
{
	proj_env *env = NULL;
	proj_env_options o;
	proj_env_options_init(&o);
	o.path = path;
	o.map_size = (size_t)1 << 20;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	return env;
}

typedef struct put_spec {
	const char *db;
	unsigned flags;
	const char *key, *val;
	MDB_dbi *dbi;
} put_spec;

static orn_rc put_one(proj_txn *t, void *closure)
{
	put_spec *p = closure;
	MDB_dbi dbi;
	orn_rc rc = proj_dbi_open(t, p->db, p->flags, &dbi);
	if (rc == ORN_OK && p->key != NULL)
		rc = proj_put(t, dbi, p->key, strlen(p->key), p->val, strlen(p->val), 0);
	if (p->dbi != NULL)
		*p->dbi = dbi;
	return rc;
}

static void put(proj_env *env, const char *db, unsigned flags, const char *key, const char *val)
{
	put_spec p = {db, flags, key, val, NULL};
	cr_assert_eq(proj_env_write(env, put_one, &p), ORN_OK);
}

static orn_rc put_checkpoint(proj_txn *t, void *closure)
{
	uint8_t v[8];
	proj_put_u64(v, 42);
	return proj_put(t, proj_env_checkpoint_dbi(t->env), closure, strlen(closure), v, sizeof v, 0);
}

typedef struct seen {
	int count;
	char lines[8][128];
} seen;

static void on_diff(const proj_diff *d, void *closure)
{
	seen *s = closure;
	if (s->count < 8)
		snprintf(s->lines[s->count], sizeof s->lines[0], "%s %.*s %s %s", d->db, (int)d->key_len,
		         (const char *)d->key, d->live ? "live" : "-", d->rebuilt ? "rebuilt" : "-");
	s->count++;
}

Test(proj_gen, compare_reports_changed_missing_and_extra_records_including_duplicates)
{
	char a[PATH_MAX], b[PATH_MAX];
	snprintf(a, sizeof a, "%s/a", dir);
	snprintf(b, sizeof b, "%s/b", dir);
	proj_env *ea = open_at(a), *eb = open_at(b);
	put(ea, "inventory.items", 0, "k1", "same");
	put(eb, "inventory.items", 0, "k1", "same");
	put(ea, "inventory.items", 0, "k2", "live");
	put(eb, "inventory.items", 0, "k2", "rebuilt");
	put(ea, "catalog.search", MDB_DUPSORT, "w", "p1");
	put(eb, "catalog.search", MDB_DUPSORT, "w", "p1");
	put(eb, "catalog.search", MDB_DUPSORT, "w", "p2");
	put(ea, "orders.only_live", 0, "x", "1");
	proj_env_close(ea);
	proj_env_close(eb);

	seen s = {0};
	proj_compare_result res;
	cr_assert_eq(proj_env_compare(a, b, NULL, on_diff, &s, &res), ORN_OK);
	cr_assert_eq(res.differences, 3, "changed k2, extra dup p2, live-only x");
	cr_assert_eq(s.count, 3);
	cr_assert_str_eq(s.lines[0], "catalog.search w - rebuilt");
	cr_assert_str_eq(s.lines[1], "inventory.items k2 live rebuilt");
	cr_assert_str_eq(s.lines[2], "orders.only_live x live -");

	memset(&s, 0, sizeof s);
	cr_assert_eq(proj_env_compare(a, b, "inventory", on_diff, &s, &res), ORN_OK);
	cr_assert_eq(res.differences, 1, "only inventory.* with a prefix");
	cr_assert_eq(proj_env_compare(a, "/nonexistent/orion", NULL, NULL, NULL, &res), ORN_ENOTFOUND);
}

Test(proj_gen, snapshot_then_reset_empties_one_projection_and_its_checkpoint)
{
	char live[PATH_MAX], copy[PATH_MAX];
	uint64_t seq = 0;
	snprintf(live, sizeof live, "%s/live", dir);
	snprintf(copy, sizeof copy, "%s/copy", dir);
	proj_env *env = open_at(live);
	put(env, "catalog.products", 0, "p", "1");
	put(env, "inventory.items", 0, "i", "2");
	cr_assert_eq(proj_env_write(env, put_checkpoint, "catalog"), ORN_OK);
	cr_assert_eq(proj_env_write(env, put_checkpoint, "inventory"), ORN_OK);
	cr_assert_eq(mkdir(copy, 0750), 0);
	cr_assert_eq(proj_env_snapshot(live, copy), ORN_OK, "a copy while the source is open");
	proj_env_close(env);
	cr_assert_eq(proj_env_reset_projection(copy, "catalog"), ORN_OK);
	cr_assert_eq(proj_env_read_checkpoint(copy, "catalog", &seq), ORN_OK);
	cr_assert_eq(seq, 0);
	cr_assert_eq(proj_env_read_checkpoint(copy, "inventory", &seq), ORN_OK);
	cr_assert_eq(seq, 42);
	proj_compare_result res;
	seen s = {0};
	cr_assert_eq(proj_env_compare(live, copy, NULL, on_diff, &s, &res), ORN_OK);
	cr_assert_eq(res.differences, 2, "catalog's record and checkpoint are gone, inventory's stay");
	cr_assert_str_eq(s.lines[0], "catalog.products p live -");
	cr_assert_eq(proj_env_snapshot("/nonexistent/orion", copy), ORN_ENOTFOUND);
}

Test(proj_gen, an_environment_adopts_its_next_generation_with_the_same_handles)
{
	char link[PATH_MAX], build[PATH_MAX], target[PATH_MAX], old[PATH_MAX];
	bool moved = true;
	cr_assert_eq(proj_gen_prepare(dir, link, sizeof link), ORN_OK);
	proj_env *env = open_at(link);
	MDB_dbi items = 0, items_next = 0;
	put_spec p = {"inventory.items", 0, "k", "old", &items};
	cr_assert_eq(proj_env_write(env, put_one, &p), ORN_OK);
	cr_assert_eq(proj_env_moved(env, target, sizeof target, &moved), ORN_OK);
	cr_assert_not(moved);

	/* a new generation with other data, published */
	cr_assert_eq(proj_gen_create(dir, build, sizeof build), ORN_OK);
	proj_env *other = open_at(build);
	put(other, "inventory.by_available", MDB_DUPSORT, NULL, NULL); /* another opening order there */
	put(other, "inventory.items", 0, "k", "new");
	proj_env_close(other);
	cr_assert_eq(proj_gen_publish(dir, build), ORN_OK);
	cr_assert_eq(proj_env_moved(env, target, sizeof target, &moved), ORN_OK);
	cr_assert(moved);

	proj_env *next = NULL;
	cr_assert_eq(proj_env_open_next(env, target, &next), ORN_OK);
	p = (put_spec){"inventory.items", 0, NULL, NULL, &items_next};
	cr_assert_eq(proj_env_write(next, put_one, &p), ORN_OK);
	cr_assert_eq(items_next, items, "the handle numbers are kept");
	proj_env_adopt(env, next, old, sizeof old);
	cr_assert_str_eq(proj_env_target(env), target);
	MDB_txn *txn = NULL;
	MDB_val v;
	cr_assert_eq(proj_env_read_begin(env, &txn), ORN_OK);
	cr_assert_eq(proj_get(txn, items, "k", 1, &v), ORN_OK);
	cr_assert_eq(v.mv_size, 3);
	cr_assert(memcmp(v.mv_data, "new", 3) == 0, "reads see the new generation");
	proj_env_read_end(env, txn);
	proj_gen_retire(old);
	cr_assert_not(exists(old), "the old generation is removed");
	cr_assert_eq(proj_env_moved(env, target, sizeof target, &moved), ORN_OK);
	cr_assert_not(moved);
	proj_env_close(env);
}
