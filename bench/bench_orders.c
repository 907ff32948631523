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
 *          [--customers 400] [--threads 48] [--products 50]
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

#include <curl/curl.h>
#include <jansson.h>

#include "bench_common.h"

#define MAX_THREADS 256

typedef struct settings {
	bench_shop_args shop; /* --url, --nats, --admin-email, --admin-password, --varz */
	const char *mailbox;  /* the SMTP sink's Maildir (--mailbox), or NULL */
	double rate;
	double duration_s;
	int customers, threads, products;
} settings;

typedef struct order_sample {
	char id[80];
	int64_t scheduled_ns, sent_ns, answered_ns;
	int status; /* HTTP status of POST /orders */
} order_sample;

/* processes whose CPU time is reported (--watch name=pid): marks at the
 * start and at the end of the load, and once the emails were out */
static bench_watch watched;

static settings cfg = {.rate = 500, .duration_s = 10, .customers = 400, .threads = 48, .products = 50};
static char **tokens;      /* per customer */
static char **product_ids; /* per product */
static order_sample *samples;
static size_t sample_count;
static atomic_size_t next_order;
static int64_t start_ns;

/* when each order was reserved or cancelled */
static bench_order_events *events;

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
		if (bench_http(c, cfg.shop.url, "POST", "/cart/items", token, body, NULL) != 200) {
			s->status = -1;
			continue;
		}
		bench_sleep_until_ns(s->scheduled_ns);
		json_t *reply = NULL;
		s->sent_ns = bench_now_ns();
		s->status = (int)bench_http(c, cfg.shop.url, "POST", "/orders", token, "{}", &reply);
		s->answered_ns = bench_now_ns();
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

static int setup_accounts(void)
{
	CURL *c = curl_easy_init();
	char *admin = bench_login(c, cfg.shop.url, cfg.shop.admin_email, cfg.shop.admin_password);
	if (admin == NULL) {
		fprintf(stderr, "bench_orders: admin login failed\n");
		return -1;
	}
	unsigned seed = (unsigned)time(NULL);
	product_ids = bench_create_products(c, cfg.shop.url, admin, cfg.products, 100000000L, seed, "o");
	free(admin);
	curl_easy_cleanup(c);
	if (product_ids == NULL)
		return -1;
	tokens = bench_register_customers(cfg.shop.url, cfg.customers, 4, seed);
	return tokens != NULL ? 0 : -1;
}

static bool parse_args(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (bench_shop_arg(&cfg.shop, &watched, k, v))
			;
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
		else if (strcmp(k, "--mailbox") == 0)
			cfg.mailbox = v;
		else
			return false;
	}
	return bench_shop_args_complete(&cfg.shop) && cfg.rate > 0 && cfg.duration_s > 0 && cfg.threads > 0 &&
	       cfg.threads <= MAX_THREADS && cfg.customers >= cfg.threads && cfg.products > 0;
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
	if ((events = bench_order_events_follow(cfg.shop.nats_url)) == NULL)
		return 1;
	/* the idle traffic (pull requests, heartbeats): subtracted from the load's */
	bench_varz idle0 = {0}, idle1 = {0}, load0 = {0}, load1 = {0};
	bool have_varz = bench_varz_sample(cfg.shop.varz, &idle0);
	if (have_varz) {
		sleep(3);
		have_varz = bench_varz_sample(cfg.shop.varz, &idle1);
	}
	size_t mail_before = bench_maildir_count(cfg.mailbox);
	if (setup_accounts() != 0)
		return 1;
	sample_count = (size_t)(cfg.rate * cfg.duration_s);
	samples = calloc(sample_count, sizeof *samples);
	pthread_t threads[MAX_THREADS];
	start_ns = bench_now_ns() + 200000000LL;
	bench_watch_sample(&watched, 0);
	have_varz = have_varz && bench_varz_sample(cfg.shop.varz, &load0);
	json_t *connz0 = bench_connz_sample(cfg.shop.varz);
	mail_before = bench_maildir_count(cfg.mailbox);
	for (int t = 0; t < cfg.threads; t++)
		pthread_create(&threads[t], NULL, worker, (void *)(intptr_t)t);
	for (int t = 0; t < cfg.threads; t++)
		pthread_join(threads[t], NULL);
	int64_t sending_ended = bench_now_ns();
	/* CPU over the sending window only (each order's cart add included);
	 * work still queued at its end is not counted, so below capacity this
	 * is the cost per order, above it an underestimate. */
	bench_watch_sample(&watched, 1);
	double load_s = (double)(sending_ended - start_ns) / 1e9;
	/* let every order settle (up to a minute), so that the percentiles
	 * include the slow ones rather than leaving them out as unsettled */
	int64_t settle_deadline = bench_now_ns() + 60000000000LL;
	size_t settled = 0, placed = 0;
	do {
		usleep(100000);
		settled = placed = 0;
		for (size_t i = 0; i < sample_count; i++) {
			if (samples[i].status != 202)
				continue;
			placed++;
			settled += bench_order_events_get(events, samples[i].id, NULL);
		}
	} while (settled < placed && bench_now_ns() < settle_deadline);

	/* then until every reserved order's confirmation email reached the sink
	 * (up to two minutes): the work an order costs, not only the sending window's */
	size_t reserved_now = 0, mails = 0;
	for (size_t i = 0; i < sample_count; i++) {
		bench_settled t;
		reserved_now += samples[i].status == 202 &&
		                bench_order_events_get(events, samples[i].id, &t) && t.reserved;
	}
	int64_t mail_deadline = bench_now_ns() + 120000000000LL;
	while (cfg.mailbox != NULL &&
	       (mails = bench_maildir_count(cfg.mailbox) - mail_before) < reserved_now &&
	       bench_now_ns() < mail_deadline)
		usleep(100000);
	int64_t emails_out_ns = bench_now_ns();
	bench_watch_sample(&watched, 2);
	have_varz = have_varz && bench_varz_sample(cfg.shop.varz, &load1);
	json_t *connz1 = bench_connz_sample(cfg.shop.varz);

	int64_t *post = calloc(sample_count, sizeof *post), *reserve = calloc(sample_count, sizeof *reserve);
	size_t n_post = 0, n_reserve = 0, cancelled = 0, unsettled = 0, lines = 0, lines_max = 0;
	static bench_failures failed; /* [1]: the cart add failed */
	int64_t last_sent = 0;
	for (size_t i = 0; i < sample_count; i++) {
		order_sample *s = &samples[i];
		if (!bench_placed(&failed, s->status))
			continue;
		post[n_post++] = s->answered_ns - s->sent_ns;
		last_sent = s->sent_ns > last_sent ? s->sent_ns : last_sent;
		bench_settled t;
		bool seen = bench_order_events_get(events, s->id, &t);
		lines += seen ? t.lines : 0;
		lines_max = seen && t.lines > lines_max ? t.lines : lines_max;
		if (!seen)
			unsettled++;
		else if (!t.reserved)
			cancelled++;
		else
			reserve[n_reserve++] = t.at_ns - s->scheduled_ns;
	}
	bench_sort_i64(post, n_post);
	bench_sort_i64(reserve, n_reserve);
	double span_s = (double)(last_sent - start_ns) / 1e9;
	double achieved = span_s > 0 ? (double)n_post / span_s : 0;
	double lag_s = (double)(sending_ended - start_ns) / 1e9 - cfg.duration_s;
	printf("offered %.0f orders/s for %.0f s (%zu orders, %d customers, %d threads, %d products)\n",
	       cfg.rate, cfg.duration_s, sample_count, cfg.customers, cfg.threads, cfg.products);
	printf("placed %zu (202), failed %zu, reserved %zu, cancelled %zu, unsettled %zu; achieved %.0f/s; "
	       "sender lag %.2f s\n",
	       n_post, failed.total, n_reserve, cancelled, unsettled, achieved, lag_s);
	bench_failures_print(&failed);
	double lines_mean = n_post > unsettled ? (double)lines / (double)(n_post - unsettled) : 0;
	/* one item is added per order: more lines mean a placement took an earlier one's too */
	printf("lines per order %.2f (max %zu; the bench adds one item per order)\n", lines_mean, lines_max);
	for (int i = 0; i < watched.count; i++) {
		double used = bench_watch_used(&watched, watched.p[i].name, 0, 1);
		printf("cpu %-12s %.1f s over %.1f s of sending (%.0f%% of one core, %.0f us per "
		       "order with its cart add)\n",
		       watched.p[i].name, used, load_s, 100.0 * used / load_s,
		       n_post > 0 ? 1e6 * used / (double)n_post : 0);
	}
	double work_s = (double)(emails_out_ns - start_ns) / 1e9;
	double cpu_orion_us = -1, cpu_nats_us = -1;
	if (cfg.mailbox != NULL) {
		printf("until the confirmation emails were out (%zu of %zu, %.1f s after the load began):\n",
		       mails, reserved_now, work_s);
		for (int i = 0; i < watched.count && n_post > 0; i++) {
			double used = bench_watch_used(&watched, watched.p[i].name, 0, 2);
			printf("  cpu %-12s %.1f s, %.0f us per order with its cart add\n", watched.p[i].name,
			       used, 1e6 * used / (double)n_post);
			if (strcmp(watched.p[i].name, "orion") == 0)
				cpu_orion_us = 1e6 * used / (double)n_post;
			if (strcmp(watched.p[i].name, "nats-server") == 0)
				cpu_nats_us = 1e6 * used / (double)n_post;
		}
	}
	double msgs_in = -1, msgs_out = -1;
	if (have_varz && n_post > 0) {
		double span = (double)(load1.at_ns - load0.at_ns) / 1e9;
		bench_varz_per_op(&idle0, &idle1, &load0, &load1, (double)n_post, &msgs_in, &msgs_out);
		printf("NATS messages per order with its cart add (nats-server /varz over %.1f s, the idle "
		       "rate subtracted): in %.1f, out %.1f, total %.1f\n",
		       span, msgs_in, msgs_out, msgs_in + msgs_out);
	}
	if (connz0 != NULL && connz1 != NULL && n_post > 0) {
		printf("NATS messages per order by connection (nats-server /connz over the same span, "
		       "idle traffic included; in = sent by the connection):\n");
		bench_connz_print(connz0, connz1, (double)n_post);
	}
	json_decref(connz0);
	json_decref(connz1);
	printf("POST /orders -> 202          p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
	       bench_percentile_ms(post, n_post, 0.50), bench_percentile_ms(post, n_post, 0.99),
	       bench_percentile_ms(post, n_post, 1.0));
	printf("scheduled -> awaiting_conf.  p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
	       bench_percentile_ms(reserve, n_reserve, 0.50), bench_percentile_ms(reserve, n_reserve, 0.99),
	       bench_percentile_ms(reserve, n_reserve, 1.0));
	printf("RESULT rate=%.0f duration=%.0f placed=%zu failed=%zu reserved=%zu cancelled=%zu "
	       "unsettled=%zu "
	       "achieved=%.0f post_p50=%.2f post_p99=%.2f reserve_p50=%.2f reserve_p99=%.2f "
	       "reserve_max=%.2f cpu_orion_us=%.0f cpu_nats_us=%.0f msgs_in=%.1f msgs_out=%.1f work_s=%.1f "
	       "lines_mean=%.2f lines_max=%zu\n",
	       cfg.rate, cfg.duration_s, n_post, failed.total, n_reserve, cancelled, unsettled, achieved,
	       bench_percentile_ms(post, n_post, 0.50), bench_percentile_ms(post, n_post, 0.99),
	       bench_percentile_ms(reserve, n_reserve, 0.50), bench_percentile_ms(reserve, n_reserve, 0.99),
	       bench_percentile_ms(reserve, n_reserve, 1.0), cpu_orion_us, cpu_nats_us, msgs_in, msgs_out,
	       work_s, lines_mean, lines_max);
	bench_order_events_stop(events);
	curl_global_cleanup();
	return failed.total == 0 && unsettled == 0 ? 0 : 1;
}
