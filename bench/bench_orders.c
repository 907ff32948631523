/* bench_orders.c — order placement benchmark at a fixed offered load.
 *
 * Against a running Orion (every role; scripts/bench-orders starts one with a
 * real SMTP server), it measures:
 *   - POST /orders latency (request sent -> 202 received);
 *   - time to awaiting_confirmation: from the scheduled send time of
 *     POST /orders to the moment the OrderReserved commit of that order is
 *     seen on NATS (a core subscription on orion.evt.order.>, same clock);
 *   - the achieved placement rate and how many orders were reserved,
 *     refused or never settled.
 * Open loop: order i is scheduled at start + i / rate and its latency counts
 * from that instant, so a slow server cannot hide latency by slowing the
 * sender (no coordinated omission). Each order belongs to one customer for its
 * lifetime (cart add, then POST /orders); a customer places its next order
 * only after its previous one was answered.
 *
 * usage: bench_orders --url http://127.0.0.1:PORT --nats nats://127.0.0.1:PORT
 *          --admin-email E --admin-password P [--rate 500] [--duration 10]
 *          [--customers 200] [--threads 48] [--products 50]
 *          [--varz http://127.0.0.1:MONITOR_PORT] [--mailbox MAILDIR]
 * With --mailbox it also waits (up to two minutes) until every reserved
 * order's confirmation email reached the SMTP sink's Maildir and reports the
 * CPU of the watched processes from the load's start to then: the whole work
 * of an order, not only what fit in the sending window. With --varz it
 * reports nats-server's in_msgs and out_msgs over the same span per order,
 * less the idle rate measured for 3 s before the setup.
 * Prints a result table and a line "RESULT key=value ..." for the script. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>

#include <curl/curl.h>
#include <jansson.h>
#include <nats/nats.h>

#include "envelope.h"
#include "hashmap.h"

#define MAX_THREADS 256
#define MAX_WATCHED 8

typedef struct settings {
	const char *url, *nats_url, *admin_email, *admin_password;
	const char *varz;    /* nats-server's monitoring base URL (--varz), or NULL */
	const char *mailbox; /* the SMTP sink's Maildir (--mailbox), or NULL */
	double rate;
	double duration_s;
	int customers, threads, products;
} settings;

typedef struct order_sample {
	char id[80];
	int64_t scheduled_ns, sent_ns, answered_ns;
	int status; /* HTTP status of POST /orders */
} order_sample;

/* processes whose CPU time is reported for the load phase (--watch name=pid) */
static struct {
	const char *name;
	int pid;
	double cpu_s[3]; /* at the start and at the end of the load, once the emails were out */
} watched[MAX_WATCHED];
static int watched_count;

/* utime + stime of pid (0: this process) in seconds, from /proc; -1 if unknown. */
static double cpu_seconds(int pid)
{
	char path[64], buf[1024];
	if (pid == 0)
		snprintf(path, sizeof path, "/proc/self/stat");
	else
		snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	unsigned long utime = 0, stime = 0;
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void sample_cpu(int which)
{
	for (int i = 0; i < watched_count; i++)
		watched[i].cpu_s[which] = cpu_seconds(watched[i].pid);
}

static settings cfg = {.rate = 500, .duration_s = 10, .customers = 200, .threads = 48, .products = 50};
static char **tokens;      /* per customer */
static char **product_ids; /* per product */
static order_sample *samples;
static size_t sample_count;
static atomic_size_t next_order;
static int64_t start_ns;

/* order id -> seen time (ns) of OrderReserved (value > 0) or OrderCancelled (value < 0) */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static hmap *seen;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t t)
{
	int64_t d = t - now_ns();
	if (d > 0) {
		struct timespec ts = {.tv_sec = d / 1000000000LL, .tv_nsec = d % 1000000000LL};
		nanosleep(&ts, NULL);
	}
}

/* ---- HTTP ----------------------------------------------------------------- */

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

/* One request with a body (every call here is a POST) on a kept-alive handle; returns the HTTP status (0 on a
 * transport error) and the parsed JSON body in *out (may be NULL). */
static long http(CURL *c, const char *method, const char *path, const char *token, const char *body,
                 json_t **out)
{
	char url[512], auth[2048];
	buffer b = {0};
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (token != NULL) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
		headers = curl_slist_append(headers, auth);
	}
	snprintf(url, sizeof url, "%s/api/v1%s", cfg.url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
	long status = 0;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	if (out != NULL)
		*out = b.data != NULL ? json_loads(b.data, 0, NULL) : NULL;
	free(b.data);
	return status;
}

static char *login(CURL *c, const char *email, const char *password)
{
	char body[512];
	json_t *reply = NULL;
	snprintf(body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
	long status = http(c, "POST", "/auth/login", NULL, body, &reply);
	char *token = NULL;
	if (status == 200 && reply != NULL)
		token = strdup(json_string_value(json_object_get(reply, "access_token")));
	json_decref(reply);
	return token;
}

/* ---- NATS: when each order was reserved ----------------------------------- */

static void on_order_event(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	int64_t t = now_ns();
	env_envelope events[4];
	size_t count = 0;
	const char *subject = natsMsg_GetSubject(msg);
	const char *id = strrchr(subject, '.');
	if (id != NULL && env_decode_commit(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), events,
	                                    4, &count) == ORN_OK) {
		for (size_t i = 0; i < count; i++) {
			bool reserved = strcmp(events[i].type, "OrderReserved") == 0;
			bool cancelled = strcmp(events[i].type, "OrderCancelled") == 0;
			if (!reserved && !cancelled)
				continue;
			int64_t *value = malloc(sizeof *value);
			if (value == NULL)
				break;
			*value = reserved ? t : -t;
			pthread_mutex_lock(&seen_lock);
			free(hmap_remove(seen, id + 1));
			hmap_put(seen, id + 1, value);
			pthread_mutex_unlock(&seen_lock);
		}
	}
	natsMsg_Destroy(msg);
}

/* ---- the load ------------------------------------------------------------- */

static void *worker(void *arg)
{
	int index = (int)(intptr_t)arg;
	CURL *c = curl_easy_init();
	char body[256];
	/* customers index, index + threads, ... belong to this worker */
	int customer = index;
	for (;;) {
		size_t i = atomic_fetch_add(&next_order, 1);
		if (i >= sample_count)
			break;
		order_sample *s = &samples[i];
		s->scheduled_ns = start_ns + (int64_t)((double)i * 1e9 / cfg.rate);
		const char *token = tokens[customer];
		snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}",
		         product_ids[i % (size_t)cfg.products]);
		if (http(c, "POST", "/cart/items", token, body, NULL) != 200) {
			s->status = -1;
			continue;
		}
		sleep_until(s->scheduled_ns);
		json_t *reply = NULL;
		s->sent_ns = now_ns();
		s->status = (int)http(c, "POST", "/orders", token, "{}", &reply);
		s->answered_ns = now_ns();
		if (s->status == 202 && reply != NULL)
			snprintf(s->id, sizeof s->id, "%s", json_string_value(json_object_get(reply, "id")));
		json_decref(reply);
		customer += cfg.threads;
		if (customer >= cfg.customers)
			customer = index;
	}
	curl_easy_cleanup(c);
	return NULL;
}

static int compare_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static double percentile_ms(int64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t k = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[k] / 1e6;
}

static int setup_accounts(void)
{
	CURL *c = curl_easy_init();
	char *admin = login(c, cfg.admin_email, cfg.admin_password);
	if (admin == NULL) {
		fprintf(stderr, "bench_orders: admin login failed\n");
		return -1;
	}
	product_ids = calloc((size_t)cfg.products, sizeof *product_ids);
	unsigned seed = (unsigned)time(NULL);
	for (int p = 0; p < cfg.products; p++) {
		char body[512];
		json_t *reply = NULL;
		snprintf(body, sizeof body,
		         "{\"sku\":\"BENCH-%u-%d\",\"name\":\"Bench product %d\",\"description\":\"bench\","
		         "\"price_cents\":1000,\"currency\":\"EUR\",\"category\":\"bench\",\"initial_stock\":"
		         "100000000}",
		         seed, p, p);
		if (http(c, "POST", "/admin/products", admin, body, &reply) != 201 || reply == NULL) {
			fprintf(stderr, "bench_orders: product create failed\n");
			return -1;
		}
		product_ids[p] = strdup(json_string_value(json_object_get(reply, "id")));
		json_decref(reply);
	}
	free(admin);
	tokens = calloc((size_t)cfg.customers, sizeof *tokens);
	for (int i = 0; i < cfg.customers; i++) {
		char body[512], email[128];
		snprintf(email, sizeof email, "bench-%u-%d@example.com", seed, i);
		snprintf(body, sizeof body,
		         "{\"email\":\"%s\",\"password\":\"bench-password-1\",\"name\":\"B\"}", email);
		if (http(c, "POST", "/auth/register", NULL, body, NULL) != 201 ||
		    (tokens[i] = login(c, email, "bench-password-1")) == NULL) {
			fprintf(stderr, "bench_orders: customer %d failed\n", i);
			return -1;
		}
	}
	curl_easy_cleanup(c);
	return 0;
}

/* ---- messages and work until the emails are out ------------------------ */

typedef struct varz {
	double in, out; /* in_msgs, out_msgs */
	int64_t at_ns;
} varz;

/* nats-server's /varz counters (false if it does not answer). */
static bool varz_sample(varz *v)
{
	char url[512];
	buffer b = {0};
	bool ok = false;
	CURL *c = curl_easy_init();
	if (c == NULL || cfg.varz == NULL)
		goto done;
	snprintf(url, sizeof url, "%s/varz", cfg.varz);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	if (curl_easy_perform(c) == CURLE_OK && b.data != NULL) {
		json_t *j = json_loads(b.data, 0, NULL);
		if (j != NULL && json_is_number(json_object_get(j, "in_msgs"))) {
			v->in = json_number_value(json_object_get(j, "in_msgs"));
			v->out = json_number_value(json_object_get(j, "out_msgs"));
			v->at_ns = now_ns();
			ok = true;
		}
		json_decref(j);
	}
done:
	free(b.data);
	if (c != NULL)
		curl_easy_cleanup(c);
	return ok;
}

/* Files delivered into the Maildir (new/ and cur/). */
static size_t mailbox_count(void)
{
	size_t n = 0;
	for (int i = 0; i < 2 && cfg.mailbox != NULL; i++) {
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", cfg.mailbox, i == 0 ? "new" : "cur");
		DIR *d = opendir(path);
		for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
			n += e->d_name[0] != '.';
		if (d != NULL)
			closedir(d);
	}
	return n;
}

static bool parse_args(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (strcmp(k, "--url") == 0)
			cfg.url = v;
		else if (strcmp(k, "--nats") == 0)
			cfg.nats_url = v;
		else if (strcmp(k, "--admin-email") == 0)
			cfg.admin_email = v;
		else if (strcmp(k, "--admin-password") == 0)
			cfg.admin_password = v;
		else if (strcmp(k, "--rate") == 0)
			cfg.rate = atof(v);
		else if (strcmp(k, "--duration") == 0)
			cfg.duration_s = atof(v);
		else if (strcmp(k, "--customers") == 0)
			cfg.customers = atoi(v);
		else if (strcmp(k, "--threads") == 0)
			cfg.threads = atoi(v);
		else if (strcmp(k, "--products") == 0)
			cfg.products = atoi(v);
		else if (strcmp(k, "--varz") == 0)
			cfg.varz = v;
		else if (strcmp(k, "--mailbox") == 0)
			cfg.mailbox = v;
		else if (strcmp(k, "--watch") == 0 && watched_count < MAX_WATCHED && strchr(v, '=') != NULL) {
			watched[watched_count].name = strndup(v, (size_t)(strchr(v, '=') - v));
			watched[watched_count++].pid = atoi(strchr(v, '=') + 1);
		} else
			return false;
	}
	return cfg.url && cfg.nats_url && cfg.admin_email && cfg.admin_password && cfg.rate > 0 &&
	       cfg.duration_s > 0 && cfg.threads > 0 && cfg.threads <= MAX_THREADS &&
	       cfg.customers >= cfg.threads && cfg.products > 0;
}

int main(int argc, char **argv)
{
	if (!parse_args(argc, argv)) {
		fprintf(stderr, "usage: bench_orders --url URL --nats URL --admin-email E --admin-password P "
		                "[--rate N] [--duration S] [--customers N (>= threads)] [--threads N] "
		                "[--products N] [--varz MONITOR_URL] [--mailbox MAILDIR]\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	seen = hmap_create();
	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	if (natsConnection_ConnectTo(&nc, cfg.nats_url) != NATS_OK ||
	    natsConnection_Subscribe(&sub, nc, "orion.evt.order.>", on_order_event, NULL) != NATS_OK ||
	    natsSubscription_SetPendingLimits(sub, -1, -1) != NATS_OK) {
		/* the URL may carry the ops user's password: not printed */
		fprintf(stderr, "bench_orders: cannot subscribe to the order events on NATS\n");
		return 1;
	}
	/* the idle traffic (pull requests, heartbeats): subtracted from the load's */
	varz idle0 = {0}, idle1 = {0}, load0 = {0}, load1 = {0};
	bool have_varz = varz_sample(&idle0);
	if (have_varz) {
		sleep(3);
		have_varz = varz_sample(&idle1);
	}
	size_t mail_before = mailbox_count();
	if (setup_accounts() != 0)
		return 1;
	sample_count = (size_t)(cfg.rate * cfg.duration_s);
	samples = calloc(sample_count, sizeof *samples);
	pthread_t threads[MAX_THREADS];
	start_ns = now_ns() + 200000000LL;
	sample_cpu(0);
	have_varz = have_varz && varz_sample(&load0);
	mail_before = mailbox_count();
	for (int t = 0; t < cfg.threads; t++)
		pthread_create(&threads[t], NULL, worker, (void *)(intptr_t)t);
	for (int t = 0; t < cfg.threads; t++)
		pthread_join(threads[t], NULL);
	int64_t sending_ended = now_ns();
	/* CPU over the sending window only (each order's cart add included);
	 * work still queued at its end is not counted, so below capacity this
	 * is the cost per order, above it an underestimate. */
	sample_cpu(1);
	double load_s = (double)(sending_ended - start_ns) / 1e9;
	/* let every order settle (up to a minute), so that the percentiles
	 * include the slow ones rather than leaving them out as unsettled */
	int64_t settle_deadline = now_ns() + 60000000000LL;
	size_t settled = 0, placed = 0;
	do {
		usleep(100000);
		settled = placed = 0;
		pthread_mutex_lock(&seen_lock);
		for (size_t i = 0; i < sample_count; i++) {
			if (samples[i].status != 202)
				continue;
			placed++;
			settled += hmap_get(seen, samples[i].id) != NULL;
		}
		pthread_mutex_unlock(&seen_lock);
	} while (settled < placed && now_ns() < settle_deadline);

	/* then until every reserved order's confirmation email reached the sink
	 * (up to two minutes): the work an order costs, not only the sending window's */
	size_t reserved_now = 0, mails = 0;
	pthread_mutex_lock(&seen_lock);
	for (size_t i = 0; i < sample_count; i++) {
		int64_t *t = samples[i].status == 202 ? hmap_get(seen, samples[i].id) : NULL;
		reserved_now += t != NULL && *t > 0;
	}
	pthread_mutex_unlock(&seen_lock);
	int64_t mail_deadline = now_ns() + 120000000000LL;
	while (cfg.mailbox != NULL && (mails = mailbox_count() - mail_before) < reserved_now &&
	       now_ns() < mail_deadline)
		usleep(100000);
	int64_t emails_out_ns = now_ns();
	sample_cpu(2);
	have_varz = have_varz && varz_sample(&load1);

	int64_t *post = calloc(sample_count, sizeof *post), *reserve = calloc(sample_count, sizeof *reserve);
	size_t n_post = 0, n_reserve = 0, cancelled = 0, unsettled = 0, failed = 0;
	size_t failed_by_status[600] = {0}; /* [0]: transport error, [1]: the cart add failed */
	int64_t last_sent = 0;
	pthread_mutex_lock(&seen_lock);
	for (size_t i = 0; i < sample_count; i++) {
		order_sample *s = &samples[i];
		if (s->status != 202) {
			failed++;
			failed_by_status[s->status < 0 ? 1 : (s->status < 600 ? s->status : 0)]++;
			continue;
		}
		post[n_post++] = s->answered_ns - s->sent_ns;
		last_sent = s->sent_ns > last_sent ? s->sent_ns : last_sent;
		int64_t *t = hmap_get(seen, s->id);
		if (t == NULL)
			unsettled++;
		else if (*t < 0)
			cancelled++;
		else
			reserve[n_reserve++] = *t - s->scheduled_ns;
	}
	pthread_mutex_unlock(&seen_lock);
	qsort(post, n_post, sizeof *post, compare_i64);
	qsort(reserve, n_reserve, sizeof *reserve, compare_i64);
	double span_s = (double)(last_sent - start_ns) / 1e9;
	double achieved = span_s > 0 ? (double)n_post / span_s : 0;
	double lag_s = (double)(sending_ended - start_ns) / 1e9 - cfg.duration_s;
	printf("offered %.0f orders/s for %.0f s (%zu orders, %d customers, %d threads, %d products)\n",
	       cfg.rate, cfg.duration_s, sample_count, cfg.customers, cfg.threads, cfg.products);
	printf("placed %zu (202), failed %zu, reserved %zu, cancelled %zu, unsettled %zu; achieved %.0f/s; "
	       "sender lag %.2f s\n",
	       n_post, failed, n_reserve, cancelled, unsettled, achieved, lag_s);
	for (int code = 0; code < 600; code++)
		if (failed_by_status[code] > 0)
			printf("  failed: %zu x %s%d\n", failed_by_status[code],
			       code == 1 ? "cart add (status of POST /cart/items) " : "HTTP ", code);
	for (int i = 0; i < watched_count; i++)
		if (watched[i].cpu_s[0] >= 0 && watched[i].cpu_s[1] >= 0)
			printf("cpu %-12s %.1f s over %.1f s of sending (%.0f%% of one core, %.0f us per "
			       "order with its cart add)\n",
			       watched[i].name, watched[i].cpu_s[1] - watched[i].cpu_s[0], load_s,
			       100.0 * (watched[i].cpu_s[1] - watched[i].cpu_s[0]) / load_s,
			       n_post > 0 ? 1e6 * (watched[i].cpu_s[1] - watched[i].cpu_s[0]) / (double)n_post
			                  : 0);
	double work_s = (double)(emails_out_ns - start_ns) / 1e9;
	double cpu_orion_us = -1, cpu_nats_us = -1;
	if (cfg.mailbox != NULL) {
		printf("until the confirmation emails were out (%zu of %zu, %.1f s after the load began):\n",
		       mails, reserved_now, work_s);
		for (int i = 0; i < watched_count; i++) {
			double used = watched[i].cpu_s[2] - watched[i].cpu_s[0];
			if (watched[i].cpu_s[0] < 0 || watched[i].cpu_s[2] < 0 || n_post == 0)
				continue;
			printf("  cpu %-12s %.1f s, %.0f us per order with its cart add\n", watched[i].name,
			       used, 1e6 * used / (double)n_post);
			if (strcmp(watched[i].name, "orion") == 0)
				cpu_orion_us = 1e6 * used / (double)n_post;
			if (strcmp(watched[i].name, "nats-server") == 0)
				cpu_nats_us = 1e6 * used / (double)n_post;
		}
	}
	double msgs_in = -1, msgs_out = -1;
	if (have_varz && n_post > 0) {
		double idle_s = (double)(idle1.at_ns - idle0.at_ns) / 1e9,
		       span = (double)(load1.at_ns - load0.at_ns) / 1e9;
		double idle_in = (idle1.in - idle0.in) / idle_s, idle_out = (idle1.out - idle0.out) / idle_s;
		msgs_in = ((load1.in - load0.in) - idle_in * span) / (double)n_post;
		msgs_out = ((load1.out - load0.out) - idle_out * span) / (double)n_post;
		printf("NATS messages per order with its cart add (nats-server /varz over %.1f s, idle %.0f "
		       "in + "
		       "%.0f out per s subtracted): in %.1f, out %.1f, total %.1f\n",
		       span, idle_in, idle_out, msgs_in, msgs_out, msgs_in + msgs_out);
	}
	printf("POST /orders -> 202          p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
	       percentile_ms(post, n_post, 0.50), percentile_ms(post, n_post, 0.99),
	       percentile_ms(post, n_post, 1.0));
	printf("scheduled -> awaiting_conf.  p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
	       percentile_ms(reserve, n_reserve, 0.50), percentile_ms(reserve, n_reserve, 0.99),
	       percentile_ms(reserve, n_reserve, 1.0));
	printf("RESULT rate=%.0f duration=%.0f placed=%zu failed=%zu reserved=%zu cancelled=%zu "
	       "unsettled=%zu "
	       "achieved=%.0f post_p50=%.2f post_p99=%.2f reserve_p50=%.2f reserve_p99=%.2f "
	       "reserve_max=%.2f cpu_orion_us=%.0f cpu_nats_us=%.0f msgs_in=%.1f msgs_out=%.1f work_s=%.1f\n",
	       cfg.rate, cfg.duration_s, n_post, failed, n_reserve, cancelled, unsettled, achieved,
	       percentile_ms(post, n_post, 0.50), percentile_ms(post, n_post, 0.99),
	       percentile_ms(reserve, n_reserve, 0.50), percentile_ms(reserve, n_reserve, 0.99),
	       percentile_ms(reserve, n_reserve, 1.0), cpu_orion_us, cpu_nats_us, msgs_in, msgs_out, work_s);
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	curl_global_cleanup();
	return failed == 0 && unsettled == 0 ? 0 : 1;
}
