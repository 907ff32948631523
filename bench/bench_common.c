/* bench_common.c — what the benchmarks share (see bench_common.h). */
#include "bench_common.h"
#include "envelope.h"
#include "hashmap.h"
#include "natsd.h"
#include "order.h"
#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <nats/nats.h>
#include <pthread.h>
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

void bench_sleep_until_ns(int64_t t)
{
	int64_t d = t - bench_now_ns();
	if (d > 0) {
		struct timespec ts = {.tv_sec = d / 1000000000LL, .tv_nsec = d % 1000000000LL};
		nanosleep(&ts, NULL);
	}
}

static int compare_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

void bench_sort_i64(int64_t *v, size_t n)
{
	if (n > 0)
		qsort(v, n, sizeof *v, compare_i64);
}

double bench_percentile_ms(const int64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t k = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[k] / 1e6;
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

/* ---- a running shop: its HTTP API ----------------------------------------- */

typedef struct buffer {
	char *data;
	size_t len;
} buffer;

static size_t on_body(char *data, size_t size, size_t count, void *arg)
{
	buffer *b = arg;
	size_t n = size * count;
	char *grown = realloc(b->data, b->len + n + 1);
	if (grown == NULL)
		return 0;
	memcpy(grown + b->len, data, n);
	b->len += n;
	grown[b->len] = '\0';
	b->data = grown;
	return n;
}

/* GET url into b (the caller frees b->data); the transfer's status, 0 on a transport error. */
static long get_into(CURL *c, const char *url, buffer *b)
{
	long status = 0;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, NULL);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

long bench_http(CURL *c, const char *base, const char *method, const char *path, const char *token,
                const char *body, json_t **out)
{
	char url[1024], auth[2048];
	buffer b = {0};
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (token != NULL) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
		headers = curl_slist_append(headers, auth);
	}
	snprintf(url, sizeof url, "%s/api/v1%s", base, path);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	long status = 0;
	if (body == NULL && strcmp(method, "GET") == 0) {
		status = get_into(c, url, &b);
	} else {
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(headers);
	if (out != NULL)
		*out = b.data != NULL ? json_loads(b.data, 0, NULL) : NULL;
	free(b.data);
	return status;
}

char *bench_login(CURL *c, const char *base, const char *email, const char *password)
{
	char body[512];
	json_t *reply = NULL;
	snprintf(body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
	long status = bench_http(c, base, "POST", "/auth/login", NULL, body, &reply);
	const char *token = json_string_value(json_object_get(reply, "access_token"));
	char *copy = status == 200 && token != NULL ? strdup(token) : NULL;
	json_decref(reply);
	return copy;
}

char **bench_create_products(CURL *c, const char *base, const char *admin_token, int count, long stock,
                             unsigned seed, const char *tag)
{
	char **ids = calloc((size_t)count, sizeof *ids);
	for (int p = 0; ids != NULL && p < count; p++) {
		char body[512];
		json_t *reply = NULL;
		snprintf(body, sizeof body,
		         "{\"sku\":\"BENCH-%u-%s-%d\",\"name\":\"Bench product %s "
		         "%d\",\"description\":\"bench\","
		         "\"price_cents\":1000,\"currency\":\"EUR\",\"category\":\"bench\",\"initial_stock\":"
		         "%ld}",
		         seed, tag, p, tag, p, stock);
		long status = bench_http(c, base, "POST", "/admin/products", admin_token, body, &reply);
		const char *id = json_string_value(json_object_get(reply, "id"));
		if (status != 201 || id == NULL || (ids[p] = strdup(id)) == NULL) {
			bench_say("creating product %s %d: HTTP %ld", tag, p, status);
			json_decref(reply);
			return NULL; /* the process ends: not freed */
		}
		json_decref(reply);
	}
	return ids;
}

typedef struct registrar {
	const char *base;
	char **tokens;
	int count, threads, index;
	unsigned seed;
	bool failed;
} registrar;

static void *register_some(void *arg)
{
	registrar *r = arg;
	CURL *c = curl_easy_init();
	for (int i = r->index; c != NULL && i < r->count && !bench_interrupted; i += r->threads) {
		char body[512], email[128];
		snprintf(email, sizeof email, "bench-%u-%d@example.com", r->seed, i);
		snprintf(body, sizeof body,
		         "{\"email\":\"%s\",\"password\":\"bench-password-1\",\"name\":\"B\"}", email);
		long status = bench_http(c, r->base, "POST", "/auth/register", NULL, body, NULL);
		/* a login right after the 202 may briefly be refused until the users model has the account
		 * (the shop runs with ORION_REQUIRE_EMAIL_VERIFICATION=0: these customers order at once) */
		for (int attempt = 0; status == 202 && r->tokens[i] == NULL && attempt < 50; attempt++) {
			if (attempt > 0)
				bench_sleep_until_ns(bench_now_ns() + 100000000LL);
			r->tokens[i] = bench_login(c, r->base, email, "bench-password-1");
		}
		if (r->tokens[i] == NULL) {
			bench_say("customer %d: registration HTTP %ld, login %s", i, status,
			          status == 202 ? "failed" : "not tried");
			r->failed = true;
			break;
		}
	}
	if (c == NULL)
		r->failed = true;
	curl_easy_cleanup(c);
	return NULL;
}

char **bench_register_customers(const char *base, int count, int threads, unsigned seed)
{
	char **tokens = calloc((size_t)count, sizeof *tokens);
	registrar *r = calloc((size_t)threads, sizeof *r);
	pthread_t *tid = calloc((size_t)threads, sizeof *tid);
	bool ok = tokens != NULL && r != NULL && tid != NULL;
	int started = 0;
	for (; ok && started < threads; started++) {
		r[started] = (registrar){.base = base,
		                         .tokens = tokens,
		                         .count = count,
		                         .threads = threads,
		                         .index = started,
		                         .seed = seed};
		if (pthread_create(&tid[started], NULL, register_some, &r[started]) != 0)
			ok = false;
	}
	for (int t = 0; t < started; t++) {
		pthread_join(tid[t], NULL);
		ok = ok && !r[t].failed;
	}
	free(r);
	free(tid);
	return ok ? tokens : NULL; /* on failure the process ends: not freed */
}

bool bench_shop_arg(bench_shop_args *a, bench_watch *watch, const char *k, const char *v)
{
	if (strcmp(k, "--url") == 0)
		a->url = v;
	else if (strcmp(k, "--nats") == 0)
		a->nats_url = v;
	else if (strcmp(k, "--admin-email") == 0)
		a->admin_email = v;
	else if (strcmp(k, "--admin-password") == 0)
		a->admin_password = v;
	else if (strcmp(k, "--varz") == 0)
		a->varz = v;
	else
		return strcmp(k, "--watch") == 0 && bench_watch_add(watch, v);
	return true;
}

bool bench_shop_args_complete(const bench_shop_args *a)
{
	return a->url != NULL && a->nats_url != NULL && a->admin_email != NULL && a->admin_password != NULL;
}

bool bench_placed(bench_failures *f, int status)
{
	if (status == 202)
		return true;
	f->total++;
	f->by_status[status < 0 ? 1 : (status < 600 ? status : 0)]++;
	return false;
}

void bench_failures_print(const bench_failures *f)
{
	for (int code = 0; code < 600; code++)
		if (f->by_status[code] > 0)
			printf("  failed: %zu x %s%d\n", f->by_status[code],
			       code == 1 ? "cart add (status of POST /cart/items) " : "HTTP ", code);
}

/* ---- a running shop: its order events on NATS ------------------------------ */

struct bench_order_events {
	natsConnection *nc;
	natsSubscription *sub;
	pthread_mutex_t lock;
	hmap *seen; /* order id -> bench_settled */
};

static void on_order_event(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	bench_order_events *f = closure;
	int64_t t = bench_now_ns();
	env_envelope events[4];
	size_t count = 0;
	const char *id = strrchr(natsMsg_GetSubject(msg), '.');
	(void)nc;
	(void)sub;
	if (id != NULL && env_decode_commit(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), events,
	                                    4, &count) == ORN_OK) {
		for (size_t i = 0; i < count; i++) {
			bool placed = strcmp(events[i].type, ORDER_EV_PLACED) == 0;
			bool reserved = strcmp(events[i].type, ORDER_EV_RESERVED) == 0;
			if (!placed && !reserved && strcmp(events[i].type, ORDER_EV_CANCELLED) != 0)
				continue;
			order_event e;
			bool decoded = (placed || !reserved) &&
			               order_event_decode(events[i].type, events[i].payload,
			                                  events[i].payload_len, &e) == ORN_OK;
			pthread_mutex_lock(&f->lock);
			bench_settled *s = hmap_get(f->seen, id + 1);
			if (s == NULL && (s = calloc(1, sizeof *s)) != NULL &&
			    hmap_put(f->seen, id + 1, s) != ORN_OK) {
				free(s);
				s = NULL;
			}
			if (s != NULL && placed) {
				s->lines = decoded ? e.data.line_count : 0;
			} else if (s != NULL) {
				s->at_ns = t;
				s->reserved = reserved;
				s->settled = true;
				snprintf(s->reason, sizeof s->reason, "%s", decoded ? e.data.reason : "");
			}
			pthread_mutex_unlock(&f->lock);
		}
	}
	natsMsg_Destroy(msg);
}

bench_order_events *bench_order_events_follow(const char *nats_url)
{
	bench_order_events *f = calloc(1, sizeof *f);
	if (f == NULL || (f->seen = hmap_create()) == NULL) {
		free(f);
		return NULL;
	}
	pthread_mutex_init(&f->lock, NULL);
	if (natsConnection_ConnectTo(&f->nc, nats_url) != NATS_OK ||
	    natsConnection_Subscribe(&f->sub, f->nc, "orion.evt.order.>", on_order_event, f) != NATS_OK ||
	    natsSubscription_SetPendingLimits(f->sub, -1, -1) != NATS_OK) {
		bench_say("cannot subscribe to the order events on NATS");
		bench_order_events_stop(f);
		return NULL;
	}
	return f;
}

bool bench_order_events_get(bench_order_events *f, const char *id, bench_settled *out)
{
	pthread_mutex_lock(&f->lock);
	const bench_settled *s = id[0] != '\0' ? hmap_get(f->seen, id) : NULL;
	if (s != NULL && out != NULL)
		*out = *s;
	pthread_mutex_unlock(&f->lock);
	return s != NULL && s->settled;
}

void bench_order_events_stop(bench_order_events *f)
{
	if (f == NULL)
		return;
	if (f->sub != NULL)
		natsSubscription_Unsubscribe(f->sub);
	natsSubscription_Destroy(f->sub);
	natsConnection_Destroy(f->nc);
	size_t cursor = 0;
	const char *key;
	void *value;
	while (f->seen != NULL && hmap_next(f->seen, &cursor, &key, &value))
		free(value);
	hmap_destroy(f->seen);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* ---- a running shop: the processes and the server's counters ------------- */

bool bench_watch_add(bench_watch *w, const char *spec)
{
	const char *eq = strchr(spec, '=');
	if (eq == NULL || w->count >= BENCH_MAX_WATCHED || (size_t)(eq - spec) >= sizeof w->p[0].name)
		return false;
	snprintf(w->p[w->count].name, sizeof w->p[0].name, "%.*s", (int)(eq - spec), spec);
	w->p[w->count++].pid = (pid_t)atoi(eq + 1);
	return true;
}

void bench_watch_sample(bench_watch *w, int mark)
{
	for (int i = 0; i < w->count; i++)
		w->p[i].cpu_s[mark] = bench_proc_cpu_s(w->p[i].pid > 0 ? w->p[i].pid : getpid());
}

double bench_watch_used(const bench_watch *w, const char *name, int from, int to)
{
	for (int i = 0; i < w->count; i++)
		if (strcmp(w->p[i].name, name) == 0)
			return w->p[i].cpu_s[to] - w->p[i].cpu_s[from];
	return -1;
}

bool bench_varz_sample(const char *monitor_base, bench_varz *v)
{
	char url[512];
	buffer b = {0};
	bool ok = false;
	CURL *c = monitor_base != NULL ? curl_easy_init() : NULL;
	if (c == NULL)
		return false;
	snprintf(url, sizeof url, "%s/varz", monitor_base);
	if (get_into(c, url, &b) == 200 && b.data != NULL) {
		json_t *j = json_loads(b.data, 0, NULL);
		if (j != NULL && json_is_number(json_object_get(j, "in_msgs"))) {
			v->in = json_number_value(json_object_get(j, "in_msgs"));
			v->out = json_number_value(json_object_get(j, "out_msgs"));
			v->at_ns = bench_now_ns();
			ok = true;
		}
		json_decref(j);
	}
	free(b.data);
	curl_easy_cleanup(c);
	return ok;
}

json_t *bench_connz_sample(const char *monitor_base)
{
	char url[512];
	buffer b = {0};
	json_t *j = NULL;
	CURL *c = monitor_base != NULL ? curl_easy_init() : NULL;
	if (c == NULL)
		return NULL;
	snprintf(url, sizeof url, "%s/connz?limit=4096", monitor_base);
	if (get_into(c, url, &b) == 200 && b.data != NULL)
		j = json_loads(b.data, 0, NULL);
	free(b.data);
	curl_easy_cleanup(c);
	return j;
}

/* The counters of connection cid in a /connz answer; 0 if it was not there. */
static void connz_counts(const json_t *connz, json_int_t cid, double *in, double *out)
{
	size_t i;
	json_t *c;
	*in = *out = 0;
	json_array_foreach(json_object_get(connz, "connections"), i, c)
	{
		if (json_integer_value(json_object_get(c, "cid")) != cid)
			continue;
		*in = json_number_value(json_object_get(c, "in_msgs"));
		*out = json_number_value(json_object_get(c, "out_msgs"));
		return;
	}
}

void bench_connz_print(const json_t *before, const json_t *after, double ops)
{
	json_t *by_name = json_object(), *c, *sums;
	size_t i;
	const char *name;
	json_array_foreach(json_object_get(after, "connections"), i, c)
	{
		double in0, out0, in1 = json_number_value(json_object_get(c, "in_msgs")),
		                  out1 = json_number_value(json_object_get(c, "out_msgs"));
		connz_counts(before, json_integer_value(json_object_get(c, "cid")), &in0, &out0);
		name = json_string_value(json_object_get(c, "name"));
		if (name == NULL || name[0] == '\0')
			name = "(unnamed)";
		json_t *sum = json_object_get(by_name, name);
		if (sum == NULL) {
			sum = json_pack("{s:f,s:f}", "in", 0.0, "out", 0.0);
			json_object_set_new(by_name, name, sum);
		}
		json_object_set_new(sum, "in",
		                    json_real(json_real_value(json_object_get(sum, "in")) + in1 - in0));
		json_object_set_new(sum, "out",
		                    json_real(json_real_value(json_object_get(sum, "out")) + out1 - out0));
	}
	/* the busiest first: picked one by one (a few dozen names) */
	while (json_object_size(by_name) > 0) {
		const char *top = NULL;
		double best = -1;
		json_object_foreach(by_name, name, sums)
		{
			double total = json_real_value(json_object_get(sums, "in")) +
			               json_real_value(json_object_get(sums, "out"));
			if (total > best) {
				best = total;
				top = name;
			}
		}
		sums = json_object_get(by_name, top);
		printf("  %-36s in %6.1f  out %6.1f  per order\n", top,
		       json_real_value(json_object_get(sums, "in")) / ops,
		       json_real_value(json_object_get(sums, "out")) / ops);
		json_object_del(by_name, top);
	}
	json_decref(by_name);
}

void bench_varz_per_op(const bench_varz *idle0, const bench_varz *idle1, const bench_varz *load0,
                       const bench_varz *load1, double ops, double *in, double *out)
{
	double idle_s = (double)(idle1->at_ns - idle0->at_ns) / 1e9,
	       span = (double)(load1->at_ns - load0->at_ns) / 1e9;
	double idle_in = idle_s > 0 ? (idle1->in - idle0->in) / idle_s : 0,
	       idle_out = idle_s > 0 ? (idle1->out - idle0->out) / idle_s : 0;
	*in = ((load1->in - load0->in) - idle_in * span) / ops;
	*out = ((load1->out - load0->out) - idle_out * span) / ops;
}

size_t bench_maildir_count(const char *dir)
{
	size_t n = 0;
	for (int i = 0; i < 2 && dir != NULL; i++) {
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", dir, i == 0 ? "new" : "cur");
		DIR *d = opendir(path);
		for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
			n += e->d_name[0] != '.';
		if (d != NULL)
			closedir(d);
	}
	return n;
}
