/* rebuild.c — `orion rebuild`: the read models rebuilt from the stream.
 *
 *   orion rebuild [--projection NAME]           build a new generation aside
 *                                               and switch it in (proj_gen.h)
 *   orion rebuild --verify [--projection NAME]  build aside up to the live
 *                                               models' checkpoint, compare
 *                                               key by key, switch nothing
 *
 * A full rebuild starts an empty environment; --projection copies the live
 * environment and resets only that projection, so the others continue from
 * their checkpoints. The runner is the projector's own (projector.h), so a
 * rebuild applies exactly what the live projector applies. Progress goes to
 * stderr: a bar on a terminal, a line every 2 s otherwise; results to stdout. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "progress.h"
#include "proj_gen.h"
#include "proj_tools.h"
#include "read_models.h"

#define TICK_MS           200
#define MAX_DIFF_LINES    200
#define VALUE_PRINT_MAX   48
#define SNAPSHOT_ATTEMPTS 25 /* 200 ms apart: a catching-up projection gets 5 s */

typedef struct rebuild_args {
	const char *projection; /* NULL: all */
	bool verify;
	bool quiet;
} rebuild_args;

static void help(FILE *out)
{
	fprintf(out, "usage: orion rebuild [--projection NAME] [--verify] [--quiet]\n\n"
	             "Replays the stream into a new LMDB generation of the read models and switches\n"
	             "it in (a running projector follows between two batches).\n"
	             "  --projection NAME  only this one: inventory, catalog, users, orders, carts,\n"
	             "                     mail (default: all)\n"
	             "  --verify           rebuild aside up to the live checkpoint and compare with\n"
	             "                     the live read models key by key; exit 1 if they differ;\n"
	             "                     nothing is switched\n"
	             "  --quiet            no progress lines\n"
	             "  -h, --help         this text\n");
}

static int usage(const char *message)
{
	fprintf(stderr, "orion rebuild: %s\n", message);
	help(stderr);
	return 2;
}

static uint64_t stream_last(proj_runner *r)
{
	uint64_t lag = 0;
	if (proj_runner_lag(r, &lag) != ORN_OK)
		return 0;
	return proj_runner_position(r) + lag;
}

/* Runs the projections of m over the environment at dir: until stop_at when
 * it is not 0, else until caught up with the stream's end. */
static orn_rc run_to(es_store *store, proj_env *env, proj_models *m, uint64_t stop_at, const rebuild_args *a,
                     const char *what, uint64_t *position)
{
	proj_runner *r = NULL;
	proj_runner_options ro;
	proj_runner_options_init(&ro);
	ro.stop_at = stop_at;
	ro.batch_max = 2048;
	orn_rc rc = proj_runner_start(store, env, m->defs, PROJ_MODEL_COUNT, &ro, &r);
	if (rc != ORN_OK)
		return rc;
	cli_progress p;
	cli_progress_init(&p, what, a->quiet, proj_runner_position(r));
	uint64_t target = stop_at != 0 ? stop_at : stream_last(r);
	for (;;) {
		uint64_t pos = proj_runner_position(r);
		proj_runner_stats stats;
		proj_runner_stats_get(r, &stats);
		if (stats.last_error != ORN_OK && stats.failures > 3) {
			rc = stats.last_error;
			break;
		}
		if (stop_at == 0 && pos >= target) {
			uint64_t last = stream_last(r); /* caught up with what was there: close enough? */
			if (last <= pos + ro.batch_max)
				break;
			target = last;
		}
		if (stop_at != 0 && pos >= stop_at)
			break;
		cli_progress_show(&p, pos, target, false);
		if (proj_runner_wait(r, pos + 1, TICK_MS) == ORN_EUNAVAILABLE) {
			rc = ORN_EUNAVAILABLE;
			break;
		}
	}
	*position = proj_runner_position(r);
	cli_progress_show(&p, *position, *position > target ? *position : target, true);
	proj_runner_stop(r);
	return rc;
}

/* Opens dir, runs every model over it, closes. */
static orn_rc build(es_store *store, const char *dir, uint64_t stop_at, const rebuild_args *a,
                    const char *what, uint64_t *position)
{
	proj_env *env = NULL;
	proj_models m;
	proj_env_options eo;
	proj_env_options_init(&eo);
	eo.path = dir;
	eo.no_sync = true; /* nothing reads it before the end: one flush there */
	orn_rc rc = proj_env_open(&eo, &env);
	if (rc != ORN_OK)
		return rc;
	if ((rc = proj_models_open(env, &m)) == ORN_OK) {
		rc = run_to(store, env, &m, stop_at, a, what, position);
		proj_models_close(&m);
	}
	if (rc == ORN_OK)
		rc = proj_env_sync(env);
	proj_env_close(env);
	return rc;
}

/* ---- rebuild and switch ---- */

static int rebuild_switch(es_store *store, const cli_config *cfg, const rebuild_args *a)
{
	char link[PATH_MAX], dir[PATH_MAX], what[96];
	uint64_t position = 0;
	int64_t start = orn_monotonic_ns();
	orn_rc rc = proj_gen_prepare(cfg->data_dir, link, sizeof link);
	if (rc == ORN_OK)
		rc = proj_gen_create(cfg->data_dir, dir, sizeof dir);
	if (rc != ORN_OK) {
		fprintf(stderr, "orion rebuild: cannot prepare %s/lmdb: %s\n", cfg->data_dir,
		        orn_strerror(rc));
		return 1;
	}
	if (a->projection != NULL) {
		/* the others continue from the live checkpoints */
		rc = proj_env_snapshot(link, dir);
		if (rc == ORN_OK)
			rc = proj_env_reset_projection(dir, a->projection);
	}
	snprintf(what, sizeof what, "rebuild %s", a->projection ? a->projection : "all");
	if (rc == ORN_OK)
		rc = build(store, dir, 0, a, what, &position);
	if (rc == ORN_OK)
		rc = proj_gen_publish(cfg->data_dir, dir);
	if (rc != ORN_OK) {
		proj_env_remove_dir(dir);
		fprintf(stderr, "orion rebuild: failed: %s (the live read models are unchanged)\n",
		        orn_strerror(rc));
		return 1;
	}
	char target[PATH_MAX];
	if (realpath(link, target) == NULL)
		snprintf(target, sizeof target, "%s", link);
	printf("rebuilt %s up to stream sequence %llu in %.1f s: %s\n"
	       "a running projector switches to it within a second\n",
	       a->projection ? a->projection : "all projections", (unsigned long long)position,
	       cli_seconds_since(start), target);
	return 0;
}

/* ---- verify ---- */

static void print_bytes(const void *data, size_t len, bool value)
{
	const unsigned char *b = data;
	bool printable = true;
	for (size_t i = 0; i < len && printable; i++)
		printable = b[i] >= 0x20 && b[i] < 0x7f && b[i] != '"' && b[i] != '\\';
	if (printable && !value) {
		printf("\"%.*s\"", (int)len, (const char *)data);
		return;
	}
	printf("%zu bytes ", len);
	for (size_t i = 0; i < len && i < VALUE_PRINT_MAX; i++)
		printf("%02x", b[i]);
	if (len > VALUE_PRINT_MAX)
		printf("...");
}

static void on_diff(const proj_diff *d, void *closure)
{
	uint64_t *printed = closure;
	if (++*printed > MAX_DIFF_LINES) {
		if (*printed == MAX_DIFF_LINES + 1)
			printf("... (more differences not shown)\n");
		return;
	}
	printf("difference %s key ", d->db);
	print_bytes(d->key, d->key_len, false);
	printf(": live ");
	if (d->live != NULL)
		print_bytes(d->live, d->live_len, true);
	else
		printf("absent");
	printf(", rebuilt ");
	if (d->rebuilt != NULL)
		print_bytes(d->rebuilt, d->rebuilt_len, true);
	else
		printf("absent");
	printf("\n");
}

static int rebuild_verify(es_store *store, const cli_config *cfg, const rebuild_args *a)
{
	char link[PATH_MAX], base[PATH_MAX], live[PATH_MAX + 8], rebuilt[PATH_MAX + 16];
	struct stat st;
	uint64_t upto = UINT64_MAX, position = 0, printed = 0;
	int code = 2;
	snprintf(link, sizeof link, "%s/lmdb", cfg->data_dir);
	if (stat(link, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "orion rebuild --verify: no read models at %s\n", link);
		return 2;
	}
	snprintf(base, sizeof base, "%s/verify.%ld", cfg->data_dir, (long)getpid());
	snprintf(live, sizeof live, "%s/live", base);
	snprintf(rebuilt, sizeof rebuilt, "%s/rebuilt", base);
	if (mkdir(base, 0750) != 0 || mkdir(live, 0750) != 0 || mkdir(rebuilt, 0750) != 0) {
		fprintf(stderr, "orion rebuild --verify: cannot create %s: %s\n", base, strerror(errno));
		return 2;
	}
	/* One consistent snapshot of the live models, every compared projection at
	 * the same checkpoint (right after a one-projection switch, the rebuilt one
	 * may still be catching up: take the snapshot again); rebuild exactly up to it. */
	static const char *const names[] = {PROJ_INVENTORY_NAME, PROJ_CATALOG_NAME, PROJ_USERS_NAME,
	                                    PROJ_ORDERS_NAME, PROJ_CARTS_NAME};
	orn_rc rc = ORN_OK;
	for (int attempt = 0;; attempt++) {
		uint64_t high = 0;
		upto = UINT64_MAX;
		if ((rc = proj_env_snapshot(link, live)) != ORN_OK)
			break;
		for (size_t i = 0; i < sizeof names / sizeof names[0] && rc == ORN_OK; i++) {
			uint64_t cp = 0;
			if (a->projection != NULL && strcmp(a->projection, names[i]) != 0)
				continue;
			rc = proj_env_read_checkpoint(live, names[i], &cp);
			upto = cp < upto ? cp : upto;
			high = cp > high ? cp : high;
		}
		if (rc != ORN_OK || high == upto || attempt == SNAPSHOT_ATTEMPTS)
			break;
		proj_env_remove_dir(live);
		struct timespec pause = {0, 200 * 1000000L};
		nanosleep(&pause, NULL);
		if (mkdir(live, 0750) != 0) {
			rc = ORN_EIO;
			break;
		}
	}
	if (rc == ORN_OK && upto != UINT64_MAX && upto > 0)
		rc = build(store, rebuilt, upto, a, "verify: rebuild", &position);
	proj_compare_result res;
	if (rc == ORN_OK)
		rc = proj_env_compare(live, rebuilt, a->projection, on_diff, &printed, &res);
	if (rc == ORN_OK) {
		printf("verify %s at stream sequence %llu: %llu databases, %llu records, %llu differences\n",
		       a->projection ? a->projection : "all projections", (unsigned long long)upto,
		       (unsigned long long)res.databases, (unsigned long long)res.records,
		       (unsigned long long)res.differences);
		code = res.differences == 0 ? 0 : 1;
	} else {
		fprintf(stderr, "orion rebuild --verify: failed: %s\n", orn_strerror(rc));
	}
	proj_env_remove_dir(live);
	proj_env_remove_dir(rebuilt);
	rmdir(base);
	return code;
}

int cli_rebuild(int argc, char **argv, const cli_config *cfg)
{
	rebuild_args a = {0};
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--verify") == 0)
			a.verify = true;
		else if (strcmp(argv[i], "--quiet") == 0)
			a.quiet = true;
		else if (strcmp(argv[i], "--projection") == 0 && i + 1 < argc)
			a.projection = argv[++i];
		else if (cli_is_help(argv[i]))
			return help(stdout), 0;
		else
			return usage("unknown option or missing value");
	}
	if (a.projection != NULL) {
		static const char *const known[] = {PROJ_INVENTORY_NAME, PROJ_CATALOG_NAME, PROJ_USERS_NAME,
		                                    PROJ_ORDERS_NAME, PROJ_CARTS_NAME};
		bool found = false;
		for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
			found |= strcmp(a.projection, known[i]) == 0;
		if (!found)
			return usage("unknown projection");
	}
	natsd *server = NULL;
	es_store *store = NULL;
	if (cli_connect_store(cfg, "orion-rebuild", false, &server, &store) != ORN_OK) {
		fprintf(stderr, "orion rebuild: cannot reach NATS (ORION_NATS_URL)\n");
		return 2;
	}
	int code = a.verify ? rebuild_verify(store, cfg, &a) : rebuild_switch(store, cfg, &a);
	es_store_close(store);
	natsd_stop(server);
	return code;
}
