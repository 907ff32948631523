/* test_log_reads.c — the tools read the whole log, every time (issue 19,
 * items 1 and 2): on a log of more than 1,000 events made by a real stock
 * actor, `orion replay --from 1` run 30 times prints every event of the
 * stream every time (its sequences compared with the stream's own, read
 * message by message with direct gets), `orion verify-stock` exits 0 every
 * time and `orion rebuild --verify` exits 0 — on a running shop (`orion
 * serve` on the data dir, idle) and on a stopped one (each command starts its
 * own nats-server on the store). Before the reader was fixed (b15018c), the
 * same test saw replay print part of the log in 2 to 9 of 30 runs and
 * verify-stock exit 2 in 3 to 10 (see make_command for why). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "log.h"
#include "stock_client.h"

#define PER_ITEM  10   /* commands per item: a creation, then adjustments */
#define COMMANDS  1100 /* one event each */
#define RUNS      30
#define VERIFIES  RUNS
#define SERVE_LOG "serve.log"

static char *data_dir;
static pid_t serve_pid;

static void setup(void)
{
	data_dir = th_tempdir("log-reads");
	unsetenv("ORION_NATS_URL");
}

static void teardown(void)
{
	if (serve_pid > 0) {
		th_kill(serve_pid, SIGTERM);
		if (th_wait_exit(serve_pid, 15000) < 0)
			th_kill(serve_pid, SIGKILL);
	}
	serve_pid = 0;
	th_rmrf(data_dir);
	free(data_dir);
}

/* ---- the log ---------------------------------------------------------------- */

/* Item after item, each created and adjusted PER_ITEM - 1 times, then left
 * alone: most subjects end long before the stream does, as orders, carts and
 * emails do in a shop. The old reader went wrong on exactly that shape: it
 * asked for the consumer's info while the consumer delivered, nats-server
 * 2.9.10 then recounted the pending messages of a wildcard filter from the
 * middle of a block and counted short when subjects had ended before that
 * point, and the read stopped at the first message with nothing "pending". */
static void make_command(long i, char *item, size_t item_cap, char *command_id, size_t id_cap,
                         stock_command *c, void *closure)
{
	(void)closure;
	snprintf(item, item_cap, "item-%03ld", i / PER_ITEM);
	snprintf(command_id, id_cap, "log-reads-%ld", i);
	*c = i % PER_ITEM == 0 ? tsc_create(1000) : tsc_adjust(1, "restock");
}

/* The stream's events as sequences, one entry per event, read message by
 * message with direct gets (not the reader under test). *count receives how
 * many; returns a malloc'd array. */
static uint64_t *stream_events(natsConnection *nc, size_t *count)
{
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	env_envelope *events = malloc(sizeof *events * ENV_MAX_EVENTS);
	cr_assert_not_null(events);
	cr_assert_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	cr_assert_eq(js_GetStreamInfo(&si, js, ES_STREAM, NULL, NULL), NATS_OK);
	uint64_t last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	size_t cap = (size_t)last * 2 + 16, n = 0;
	uint64_t *seqs = malloc(cap * sizeof *seqs);
	cr_assert_not_null(seqs);
	for (uint64_t seq = 1; seq <= last; seq++) {
		jsDirectGetMsgOptions o;
		natsMsg *msg = NULL;
		size_t in_commit = 0;
		jsDirectGetMsgOptions_Init(&o);
		o.Sequence = seq;
		cr_assert_eq(js_DirectGetMsg(&msg, js, ES_STREAM, NULL, &o), NATS_OK, "seq %llu",
		             (unsigned long long)seq);
		cr_assert_eq(env_decode_commit(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
		                               events, ENV_MAX_EVENTS, &in_commit),
		             ORN_OK);
		natsMsg_Destroy(msg);
		for (size_t i = 0; i < in_commit; i++) {
			if (n == cap) {
				cap *= 2;
				seqs = realloc(seqs, cap * sizeof *seqs);
				cr_assert_not_null(seqs);
			}
			seqs[n++] = seq;
		}
	}
	jsCtx_Destroy(js);
	free(events);
	*count = n;
	return seqs;
}

/* ---- the tools ---------------------------------------------------------------- */

static int run(const char *args, char **out)
{
	char env[700], err[700];
	snprintf(env, sizeof env, "ORION_DATA_DIR='%s'", data_dir);
	snprintf(err, sizeof err, "%s/tools.log", data_dir);
	return th_run_orion(env, args, err, out);
}

/* Compares the sequences of replay's lines with the stream's events: NULL
 * when they are the same, else a description (static). */
static const char *replay_differs(const char *out, const uint64_t *want, size_t count)
{
	static char why[256];
	size_t n = 0;
	for (const char *line = out; *line != '\0'; n++) {
		const char *end = strchr(line, '\n');
		unsigned long long seq = 0;
		if (end == NULL || sscanf(line, "{\"seq\":%llu,", &seq) != 1) {
			snprintf(why, sizeof why, "line %zu is not an event", n + 1);
			return why;
		}
		if (n >= count || seq != want[n]) {
			snprintf(why, sizeof why, "event %zu has seq %llu, the stream's has %llu", n + 1, seq,
			         n < count ? (unsigned long long)want[n] : 0ULL);
			return why;
		}
		line = end + 1;
	}
	if (n != count) {
		snprintf(why, sizeof why, "%zu events of %zu, the last at seq %llu", n, count,
		         n > 0 ? (unsigned long long)want[n - 1] : 0ULL);
		return why;
	}
	return NULL;
}

/* RUNS replays, RUNS verify-stocks and VERIFIES rebuild --verify, each
 * expected to read the whole log; what stays short or fails is counted and
 * asserted at the end, so one run shows all of it. */
static void read_repeatedly(const char *shop, const uint64_t *want, size_t count)
{
	int short_replays = 0, failed_replays = 0, failed_verifies = 0, failed_rebuilds = 0;
	const char *first_short = NULL;
	char first_short_text[320] = "";
	int64_t start = th_now_ms();
	for (int i = 0; i < RUNS; i++) {
		char *out = NULL;
		int code = run("replay --from 1", &out);
		const char *why = code == 0 ? replay_differs(out, want, count) : "exit status not 0";
		failed_replays += code != 0;
		short_replays += code == 0 && why != NULL;
		if (why != NULL && first_short == NULL) {
			snprintf(first_short_text, sizeof first_short_text, "run %d: %s", i + 1, why);
			first_short = first_short_text;
		}
		free(out);
	}
	int64_t replayed = th_now_ms();
	for (int i = 0; i < RUNS; i++) {
		char *out = NULL;
		int code = run("verify-stock", &out);
		if (code != 0 && failed_verifies++ == 0)
			cr_log_error("%s shop: verify-stock exit %d:\n%s", shop, code, out);
		free(out);
	}
	int64_t verified = th_now_ms();
	for (int i = 0; i < VERIFIES; i++) {
		char *out = NULL;
		int code = run("rebuild --verify --quiet", &out);
		if ((code != 0 || strstr(out, " 0 differences\n") == NULL) && failed_rebuilds++ == 0)
			cr_log_error("%s shop: rebuild --verify exit %d:\n%s", shop, code, out);
		free(out);
	}
	cr_log_info(
	        "%s shop, %zu events: %d replays in %lld ms, %d verify-stock in %lld ms, %d rebuild --verify "
	        "in %lld ms",
	        shop, count, RUNS, (long long)(replayed - start), RUNS, (long long)(verified - replayed),
	        VERIFIES, (long long)(th_now_ms() - verified));
	cr_expect_eq(short_replays + failed_replays, 0,
	             "%s shop: replay printed part of the log in %d of %d runs, failed in %d (first: %s)",
	             shop, short_replays, RUNS, failed_replays, first_short ? first_short : "-");
	cr_expect_eq(failed_verifies, 0, "%s shop: verify-stock failed in %d of %d runs", shop,
	             failed_verifies, RUNS);
	cr_expect_eq(failed_rebuilds, 0, "%s shop: rebuild --verify failed in %d of %d runs", shop,
	             failed_rebuilds, VERIFIES);
}

Test(log_reads, every_tool_reads_the_whole_log_every_time, .init = setup, .fini = teardown, .timeout = 300)
{
	char log_path[700], dir_env[600], url[256];
	snprintf(log_path, sizeof log_path, "%s/%s", data_dir, SERVE_LOG);
	snprintf(dir_env, sizeof dir_env, "ORION_DATA_DIR=%s", data_dir);
	char *argv[] = {(char *)th_orion_bin(), "serve", "--roles", "stock,projector", NULL};
	char *env[] = {dir_env, NULL};
	serve_pid = th_spawn(argv, env, log_path);
	cr_assert(th_wait_for_file_line(log_path, "Orion is running against NATS", 30000),
	          "serve did not come up");

	snprintf(log_path, sizeof log_path, "%s/nats.url", data_dir);
	FILE *f = fopen(log_path, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(url, sizeof url, f));
	fclose(f);
	url[strcspn(url, "\n")] = '\0';
	natsConnection *nc = tsc_connect_ops(url, data_dir);
	long accepted = 0;
	cr_assert_eq(tsc_send_many(nc, COMMANDS, 64, make_command, NULL, 30000, &accepted), ORN_OK);
	cr_assert_eq(accepted, COMMANDS);
	size_t count = 0;
	uint64_t *want = stream_events(nc, &count);
	natsConnection_Destroy(nc);
	cr_assert_geq(count, 1000, "a log of at least 1,000 events");

	/* the projector has caught up when verify-stock compares at the stream's end */
	int64_t until = th_now_ms() + 30000;
	for (;;) {
		char *out = NULL, expect[64];
		run("verify-stock --json", &out);
		snprintf(expect, sizeof expect, "\"position\":%llu,", (unsigned long long)want[count - 1]);
		bool caught_up = strstr(out, expect) != NULL;
		free(out);
		if (caught_up)
			break;
		cr_assert_lt(th_now_ms(), until, "the projector never caught up");
		th_sleep_ms(100);
	}
	read_repeatedly("running", want, count);

	th_kill(serve_pid, SIGTERM);
	cr_assert_eq(th_wait_exit(serve_pid, 15000), 0, "serve exits cleanly");
	serve_pid = 0;
	read_repeatedly("stopped", want, count);
	free(want);
}
