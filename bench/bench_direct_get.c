/* bench_direct_get.c — what the commit chain's confirmation costs the server
 * (ADR 015): a direct get of "the subject's next message from sequence S"
 * against one of "the subject's last message", on a stream filled the way
 * ORION_EVT fills under load (commits of many aggregates interleaved).
 *
 * For each --items N it starts its own nats-server, fills a stream with the
 * settings of ORION_EVT (bench_add_stream) with --messages publishes round-robin over N
 * subjects (so an aggregate's consecutive commits lie N messages apart),
 * then sends --gets direct gets pipelined on one connection, first
 * {"seq": previous commit + 1, "next_by_subj": subject} (what es_confirm_publish
 * asks after an append), then {"last_by_subj": subject}, and reports the
 * rate and the server's CPU per get (from /proc/<pid>/stat). Prints a
 * markdown table for bench/RESULTS.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bench_common.h"
#include "log.h"
#include "natsd.h"

#define MAX_ITEMS_RUNS 8
#define STREAM         "BENCH_DG"

typedef struct result {
	long items;
	double rate[2], cpu_us[2]; /* [0] next_by_subj from the previous commit + 1, [1] last_by_subj */
	long answered[2];
} result;

static bool fill(jsCtx *js, long items, long messages)
{
	static const char payload[130] = {0};
	char subject[64];
	for (long i = 0; i < messages && !bench_interrupted; i++) {
		snprintf(subject, sizeof subject, "dg.item.%ld", i % items);
		natsStatus st;
		while ((st = js_PublishAsync(js, subject, payload, sizeof payload, NULL)) == NATS_TIMEOUT)
			;
		if (st != NATS_OK)
			return false;
	}
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = 120000;
	return js_PublishAsyncComplete(js, &po) == NATS_OK;
}

/* Sends gets direct gets of one kind at once and waits for every answer. */
static void run_gets(natsConnection *nc, natsSubscription *sub, pid_t server, long items, long messages,
                     long gets, int kind, result *out)
{
	char subject[64], body[160];
	long rounds = messages / items;
	double cpu0 = bench_proc_cpu_s(server);
	int64_t t0 = bench_now_ns();
	for (long k = 0; k < gets; k++) {
		long item = k % items;
		/* item's last two messages are at (rounds - 2) * items + item + 1 and one round later */
		unsigned long long previous = (unsigned long long)((rounds - 2) * items + item + 1);
		snprintf(subject, sizeof subject, "dg.item.%ld", item);
		int n = kind == 0 ? snprintf(body, sizeof body, "{\"seq\":%llu,\"next_by_subj\":\"%s\"}",
		                             previous + 1, subject)
		                  : snprintf(body, sizeof body, "{\"last_by_subj\":\"%s\"}", subject);
		natsConnection_PublishRequest(nc, "$JS.API.DIRECT.GET." STREAM, "_INBOX.dg.answer", body, n);
	}
	natsConnection_Flush(nc);
	for (long k = 0; k < gets && !bench_interrupted; k++) {
		natsMsg *m = NULL;
		if (natsSubscription_NextMsg(&m, sub, 30000) != NATS_OK)
			break;
		const char *seq = NULL;
		out->answered[kind] += natsMsgHeader_Get(m, "Nats-Sequence", &seq) == NATS_OK;
		natsMsg_Destroy(m);
	}
	double seconds = (double)(bench_now_ns() - t0) / 1e9;
	out->rate[kind] = seconds > 0 ? (double)gets / seconds : 0;
	out->cpu_us[kind] = (bench_proc_cpu_s(server) - cpu0) * 1e6 / (double)gets;
}

static bool measure(const char *tmp, long items, long messages, long gets, result *out)
{
	char dir[512], store[600];
	natsd *server = NULL;
	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	jsCtx *js = NULL;
	bool ok = false;
	memset(out, 0, sizeof *out);
	out->items = items;
	snprintf(dir, sizeof dir, "%s/orion-bench-dg-XXXXXX", tmp);
	if (mkdtemp(dir) == NULL) {
		bench_say("mkdtemp(%s): %s", dir, strerror(errno));
		return false;
	}
	snprintf(store, sizeof store, "%s/nats", dir);
	natsd_options no;
	natsd_options_init(&no);
	no.store_dir = store;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = 65536;
	if (natsd_start(&no, &server) != ORN_OK ||
	    natsConnection_ConnectTo(&nc, natsd_url(server)) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, &jo) != NATS_OK || !bench_add_stream(nc, STREAM, "dg.>", 1) ||
	    natsConnection_SubscribeSync(&sub, nc, "_INBOX.dg.answer") != NATS_OK ||
	    natsSubscription_SetPendingLimits(sub, -1, -1) != NATS_OK) {
		bench_say("cannot start nats-server or create the stream");
		goto done;
	}
	bench_say("items %ld: %ld publishes...", items, messages);
	if (!fill(js, items, messages)) {
		bench_say("the stream was not filled");
		goto done;
	}
	for (int kind = 0; kind < 2; kind++)
		run_gets(nc, sub, natsd_pid(server), items, messages, gets, kind, out);
	ok = out->answered[0] == gets && out->answered[1] == gets;
	if (!ok)
		bench_say("items %ld: %ld and %ld of %ld gets answered with a message", items,
		          out->answered[0], out->answered[1], gets);
done:
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsd_stop(server);
	bench_rmrf(dir);
	return ok;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_direct_get [--items N,N,...] [--messages N] [--gets N]\n\n"
	           "  --items N,...   subjects the stream's messages go round-robin to, one run each\n"
	           "                  (default 10,100,1000,3000)\n"
	           "  --messages N    messages in the stream (default 120000)\n"
	           "  --gets N        direct gets of each kind (default 20000)\n");
}

int main(int argc, char **argv)
{
	long items[MAX_ITEMS_RUNS] = {10, 100, 1000, 3000}, messages = 120000, gets = 20000, v = 0;
	int runs = 4;
	for (int i = 1; i < argc; i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (val != NULL && strcmp(argv[i], "--messages") == 0 &&
		           bench_parse_long(val, 1000, 100000000, &messages)) {
		} else if (val != NULL && strcmp(argv[i], "--gets") == 0 &&
		           bench_parse_long(val, 1, 10000000, &gets)) {
		} else if (val != NULL && strcmp(argv[i], "--items") == 0) {
			char buf[256], *save = NULL;
			snprintf(buf, sizeof buf, "%s", val);
			runs = 0;
			for (char *tok = strtok_r(buf, ",", &save); tok != NULL;
			     tok = strtok_r(NULL, ",", &save)) {
				if (runs >= MAX_ITEMS_RUNS || !bench_parse_long(tok, 1, 1000000, &v)) {
					usage(stderr);
					return 2;
				}
				items[runs++] = v;
			}
		} else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	bench_catch_signals();
	log_set_level(LOG_WARN);
	const char *tmp = getenv("TMPDIR");
	result results[MAX_ITEMS_RUNS];
	int done = 0;
	for (; done < runs && !bench_interrupted; done++) {
		if (messages / items[done] < 2) {
			bench_say("--messages must be at least twice every --items");
			return 2;
		}
		if (!measure(tmp && *tmp ? tmp : "/tmp", items[done], messages, gets, &results[done]))
			return 1;
	}
	bench_machine m;
	bench_machine_facts(&m, tmp && *tmp ? tmp : "/tmp");
	printf("nats-server %s, %ld CPU; %ld messages of 130 bytes, %ld pipelined direct gets of each "
	       "kind\n\n",
	       m.nats_server, m.nproc, messages, gets);
	printf("| subjects (messages between an aggregate's commits) | next_by_subj from the previous commit "
	       "+ 1: "
	       "gets/s, server CPU per get | last_by_subj: gets/s, server CPU per get |\n");
	printf("|---:|---:|---:|\n");
	for (int i = 0; i < done; i++)
		printf("| %ld | %.0f/s, %.1f µs | %.0f/s, %.1f µs |\n", results[i].items, results[i].rate[0],
		       results[i].cpu_us[0], results[i].rate[1], results[i].cpu_us[1]);
	nats_Close();
	return 0;
}
