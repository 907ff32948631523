/* bench_common.c — what the benchmarks share (see bench_common.h). */
#include "bench_common.h"
#include "natsd.h"
#include "proc.h"

#include <errno.h>
#include <ftw.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

int64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void bench_rmrf(const char *path)
{
	if (path != NULL && path[0] != '\0')
		nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

double bench_proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void read_key(const char *path, const char *key, char *out, size_t cap)
{
	FILE *f = fopen(path, "re");
	char line[512];
	out[0] = '\0';
	if (f == NULL)
		return;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, key, strlen(key)) != 0)
			continue;
		const char *colon = strchr(line, ':');
		if (colon == NULL)
			continue;
		colon++;
		while (*colon == ' ' || *colon == '\t')
			colon++;
		snprintf(out, cap, "%s", colon);
		out[strcspn(out, "\n")] = '\0';
		break;
	}
	fclose(f);
}

static const char *fs_name(const char *path, char *out, size_t cap)
{
	struct statfs sf;
	if (statfs(path, &sf) != 0) {
		snprintf(out, cap, "unknown");
		return out;
	}
	switch ((unsigned long)sf.f_type) {
	case 0xEF53UL:
		snprintf(out, cap, "ext4");
		break;
	case 0x01021994UL:
		snprintf(out, cap, "tmpfs");
		break;
	case 0x794C7630UL:
		snprintf(out, cap, "overlayfs");
		break;
	case 0x58465342UL:
		snprintf(out, cap, "xfs");
		break;
	case 0x9123683EUL:
		snprintf(out, cap, "btrfs");
		break;
	default:
		snprintf(out, cap, "fs 0x%lx", (unsigned long)sf.f_type);
	}
	return out;
}

void bench_machine_facts(bench_machine *m, const char *store_dir)
{
	char text[128];
	struct utsname u;
	memset(m, 0, sizeof *m);
	m->nproc = sysconf(_SC_NPROCESSORS_ONLN);
	read_key("/proc/cpuinfo", "model name", m->cpu, sizeof m->cpu);
	read_key("/proc/meminfo", "MemTotal", text, sizeof text);
	m->mem_mib = strtol(text, NULL, 10) / 1024;
	if (uname(&u) == 0)
		snprintf(m->kernel, sizeof m->kernel, "%s %s", u.sysname, u.release);
	snprintf(m->cnats, sizeof m->cnats, "%s", nats_GetVersion());
	fs_name(store_dir, m->store_fs, sizeof m->store_fs);
	snprintf(m->nats_server, sizeof m->nats_server, "unknown");
	FILE *p = popen("nats-server --version 2>&1", "r");
	if (p != NULL) {
		if (fgets(text, sizeof text, p) != NULL) {
			text[strcspn(text, "\n")] = '\0';
			const char *v = strrchr(text, ' '); /* "nats-server: v2.9.10" */
			snprintf(m->nats_server, sizeof m->nats_server, "%s", v != NULL ? v + 1 : text);
		}
		pclose(p);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

bench_spread bench_spread_of(const double *v, int n)
{
	double sorted[BENCH_MAX_ROUNDS];
	bench_spread s = {0, 0, 0};
	if (n <= 0)
		return s;
	memcpy(sorted, v, sizeof *v * (size_t)n);
	qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
	s.min = sorted[0];
	s.max = sorted[n - 1];
	s.median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
	return s;
}

bool bench_parse_long(const char *s, long min, long max, long *out)
{
	char *end = NULL;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

void bench_command_line(int argc, char **argv, char *out, size_t cap)
{
	const char *given = getenv("BENCH_COMMAND");
	if (given != NULL && given[0] != '\0') {
		snprintf(out, cap, "%s", given);
		return;
	}
	size_t used = 0;
	out[0] = '\0';
	for (int i = 0; i < argc && used < cap; i++) {
		int n = snprintf(out + used, cap - used, "%s%s", i ? " " : "", argv[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

volatile sig_atomic_t bench_interrupted;

static void on_signal(int sig)
{
	(void)sig;
	bench_interrupted = 1;
}

void bench_catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

void bench_say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

bool bench_add_stream(natsConnection *nc, const char *name, const char *subjects, int replicas)
{
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	jsStreamConfig cfg;
	const char *list[1] = {subjects};
	if (natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		return false;
	/* The settings of ORION_EVT (engine/evstore.c). */
	jsStreamConfig_Init(&cfg);
	cfg.Name = name;
	cfg.Subjects = list;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	cfg.MaxMsgsPerSubject = -1;
	cfg.Discard = js_DiscardNew;
	cfg.DenyDelete = true;
	cfg.DenyPurge = true;
	cfg.AllowDirect = true;
	cfg.Replicas = replicas;
	cfg.Duplicates = 2LL * 60 * 1000000000LL;
	natsStatus st = js_AddStream(&si, js, &cfg, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	if (st != NATS_OK) {
		bench_say("cannot create stream %s: %s (jerr %d)", name, natsStatus_GetText(st), (int)jerr);
		return false;
	}
	return true;
}

/* ---- a three-node cluster --------------------------------------------------- */

#define CLUSTER_READY_MS 30000

static bool write_node_config(const char *path, const char *store, int index, const int *ports,
                              const int *routes)
{
	FILE *f = fopen(path, "we");
	if (f == NULL)
		return false;
	fprintf(f, "server_name: n%d\nlisten: 127.0.0.1:%d\njetstream { store_dir: \"%s\" }\n", index,
	        ports[index], store);
	fprintf(f, "cluster {\n  name: bench\n  listen: 127.0.0.1:%d\n  routes: [", routes[index]);
	for (int i = 0; i < BENCH_CLUSTER_NODES; i++)
		fprintf(f, "%s nats-route://127.0.0.1:%d", i ? "," : "", routes[i]);
	fprintf(f, " ]\n}\n");
	return fclose(f) == 0;
}

/* True once a JetStream request through url is answered (a meta leader is elected). */
static bool jetstream_ready(const char *url)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsAccountInfo *info = NULL;
	jsOptions jo;
	bool ok = false;
	jsOptions_Init(&jo);
	jo.Wait = 1000;
	if (natsOptions_Create(&o) == NATS_OK && natsOptions_SetURL(o, url) == NATS_OK &&
	    natsOptions_SetTimeout(o, 1000) == NATS_OK &&
	    natsOptions_SetAllowReconnect(o, false) == NATS_OK && natsConnection_Connect(&nc, o) == NATS_OK &&
	    natsConnection_JetStream(&js, nc, &jo) == NATS_OK)
		ok = js_GetAccountInfo(&info, js, NULL, NULL) == NATS_OK;
	jsAccountInfo_Destroy(info);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	return ok;
}

bool bench_cluster_start(const char *dir, bench_cluster *c)
{
	int routes[BENCH_CLUSTER_NODES];
	char node_dir[600], conf[700], log_path[700], url[64];
	size_t used = 0;
	memset(c, 0, sizeof *c);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		bench_say("mkdir %s: %s", dir, strerror(errno));
		return false;
	}
	for (int i = 0; i < BENCH_CLUSTER_NODES; i++) {
		c->port[i] = natsd_free_port();
		routes[i] = natsd_free_port();
		if (c->port[i] == 0 || routes[i] == 0)
			return false;
		snprintf(url, sizeof url, "%snats://127.0.0.1:%d", i ? "," : "", c->port[i]);
		used += (size_t)snprintf(c->url + used, sizeof c->url - used, "%s", url);
	}
	for (int i = 0; i < BENCH_CLUSTER_NODES; i++) {
		snprintf(node_dir, sizeof node_dir, "%s/n%d", dir, i);
		snprintf(conf, sizeof conf, "%s/n%d.conf", dir, i);
		snprintf(log_path, sizeof log_path, "%s/n%d.log", dir, i);
		mkdir(node_dir, 0700);
		char *argv[] = {"nats-server", "-c", conf, NULL};
		if (!write_node_config(conf, node_dir, i, c->port, routes) ||
		    (c->pid[i] = proc_spawn(argv, NULL, log_path)) <= 0) {
			c->pid[i] = 0;
			bench_say("cannot start nats-server n%d (%s)", i, log_path);
			bench_cluster_stop(c);
			return false;
		}
	}
	int64_t deadline = bench_now_ns() + (int64_t)CLUSTER_READY_MS * 1000000LL;
	for (int i = 0; i < BENCH_CLUSTER_NODES; i++) {
		snprintf(url, sizeof url, "nats://127.0.0.1:%d", c->port[i]);
		while (!jetstream_ready(url)) {
			if (bench_now_ns() > deadline || bench_interrupted) {
				bench_say("the cluster has no JetStream meta leader after %d s (logs in %s)",
				          CLUSTER_READY_MS / 1000, dir);
				bench_cluster_stop(c);
				return false;
			}
			struct timespec ts = {0, 50000000L};
			nanosleep(&ts, NULL);
		}
	}
	return true;
}

void bench_cluster_stop(bench_cluster *c)
{
	for (int i = 0; i < BENCH_CLUSTER_NODES; i++)
		if (c->pid[i] > 0)
			kill(c->pid[i], SIGTERM);
	for (int i = 0; i < BENCH_CLUSTER_NODES; i++) {
		if (c->pid[i] > 0 && proc_wait(c->pid[i], 10000) < 0) {
			kill(c->pid[i], SIGKILL);
			proc_wait(c->pid[i], 10000);
		}
		c->pid[i] = 0;
	}
}
