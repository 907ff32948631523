/* bench_flash.c — a flash sale against a running Orion (every role;
 * scripts/bench-flash starts one, mail to its Maildir).
 *
 * Setup, not timed: an admin creates one hot product with --hot-stock units
 * (default 500) and --products normal products with plenty of stock;
 * --customers customers (default 5000) register and log in, and each fills
 * its cart: the hot product x1 and one normal product (customer i: normal
 * product i mod --products) x1.
 * Then every customer sends POST /orders, the sends spread evenly over
 * --window-ms (default 1000 ms: all within one second) by --threads senders;
 * the bench follows the order events on NATS (a core subscription on
 * orion.evt.order.>) until every order settled: OrderReserved (the order
 * holds its lines: awaiting_confirmation) or OrderCancelled.
 *
 * Reported: orders settled per second (settled orders over the span from the
 * first send to the last settlement), time to settle from each POST's send
 * to its OrderReserved/OrderCancelled on NATS (p50/p99/max), POST /orders
 * latency, the CPU of the watched processes per order (--watch name=pid)
 * until every order settled and until every order's email reached the
 * Maildir (--maildir), and nats-server's messages per order (--varz).
 *
 * Asserted (exit status 1 if one fails): every POST /orders answered 202 and
 * every order settled; exactly --hot-stock orders reserved, every other one
 * cancelled with reason out_of_stock; and, on the admin inventory API
 * (polled until the read model caught up, up to 30 s), the hot product has
 * available 0 and reserved --hot-stock, and each normal product's reserved
 * count equals the winners' lines of it: the losers' reservations were
 * released.
 *
 * usage: bench_flash --url URL --nats URL --admin-email E --admin-password P
 *          [--customers 5000] [--hot-stock 500] [--products 50]
 *          [--window-ms 1000] [--threads 200] [--watch name=pid ...]
 *          [--varz MONITOR_URL] [--maildir DIR] [--settle-wait-s 600]
 * (the orders that have not settled --settle-wait-s after the last send are
 * reported unsettled, and the run fails)
 * Prints a result table and a line "RESULT key=value ..." for the script. */
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
#include "order.h"

#define MAX_THREADS   1000
#define NORMAL_STOCK  100000L
#define SETUP_THREADS 8
#define MAIL_WAIT_NS  (120LL * 1000000000LL)
#define STOCK_WAIT_NS (30LL * 1000000000LL)

typedef struct settings {
	bench_shop_args shop; /* --url, --nats, --admin-email, --admin-password, --varz */
	const char *maildir;  /* the mail role's Maildir, or NULL */
	int customers, hot_stock, products, window_ms, threads;
	int settle_wait_s; /* how long to wait for the orders to settle after the last send */
} settings;

typedef struct order_sample {
	char id[80];
	int64_t scheduled_ns, sent_ns, answered_ns;
	int status; /* HTTP status of POST /orders; -1: the cart was not filled */
	int normal; /* index of the normal product in the cart */
	bench_settled settled;
	bool is_settled;
} order_sample;

static settings cfg = {.customers = 5000,
                       .hot_stock = 500,
                       .products = 50,
                       .window_ms = 1000,
                       .threads = 200,
                       .settle_wait_s = 600};
static bench_watch watched; /* marks: burst start, every order settled, every email out */
static char **tokens, **normal_ids, *hot_id;
static order_sample *samples;
static int64_t start_ns;

/* ---- setup: the carts ------------------------------------------------------ */

static atomic_int next_cart;
static atomic_bool cart_failed;

static void *fill_carts(void *arg)
{
	CURL *c = curl_easy_init();
	char body[256];
	(void)arg;
	for (int i; c != NULL && (i = atomic_fetch_add(&next_cart, 1)) < cfg.customers;) {
		snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", hot_id);
		long hot = bench_http(c, cfg.shop.url, "POST", "/cart/items", tokens[i], body, NULL);
		snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}",
		         normal_ids[samples[i].normal]);
		long normal =
		        hot == 200 ? bench_http(c, cfg.shop.url, "POST", "/cart/items", tokens[i], body, NULL)
		                   : 0;
		if (hot != 200 || normal != 200) {
			bench_say("customer %d: cart add HTTP %ld / %ld", i, hot, normal);
			samples[i].status = -1;
			atomic_store(&cart_failed, true);
		}
	}
	curl_easy_cleanup(c);
	return NULL;
}

static bool run_parallel(void *(*fn)(void *), int threads)
{
	pthread_t tid[MAX_THREADS];
	int started = 0;
	for (; started < threads; started++)
		if (pthread_create(&tid[started], NULL, fn, (void *)(intptr_t)started) != 0)
			break;
	for (int t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
	return started == threads;
}

static int setup(void)
{
	CURL *c = curl_easy_init();
	char *admin = bench_login(c, cfg.shop.url, cfg.shop.admin_email, cfg.shop.admin_password);
	if (admin == NULL) {
		bench_say("admin login failed");
		return -1;
	}
	unsigned seed = (unsigned)time(NULL);
	char **hot = bench_create_products(c, cfg.shop.url, admin, 1, cfg.hot_stock, seed, "hot");
	normal_ids = bench_create_products(c, cfg.shop.url, admin, cfg.products, NORMAL_STOCK, seed, "n");
	free(admin);
	curl_easy_cleanup(c);
	if (hot == NULL || normal_ids == NULL)
		return -1;
	hot_id = hot[0];
	bench_say("registering %d customers...", cfg.customers);
	if ((tokens = bench_register_customers(cfg.shop.url, cfg.customers, SETUP_THREADS, seed)) == NULL)
		return -1;
	bench_say("filling %d carts...", cfg.customers);
	for (int i = 0; i < cfg.customers; i++)
		samples[i].normal = i % cfg.products;
	if (!run_parallel(fill_carts, SETUP_THREADS) || atomic_load(&cart_failed))
		return -1;
	return 0;
}

/* ---- the burst --------------------------------------------------------------- */

static void *place_orders(void *arg)
{
	int index = (int)(intptr_t)arg;
	CURL *c = curl_easy_init();
	/* customers index, index + threads, ...: in the order of their scheduled instants */
	for (int i = index; c != NULL && i < cfg.customers; i += cfg.threads) {
		order_sample *s = &samples[i];
		if (s->status < 0)
			continue;
		bench_sleep_until_ns(s->scheduled_ns);
		json_t *reply = NULL;
		s->sent_ns = bench_now_ns();
		s->status = (int)bench_http(c, cfg.shop.url, "POST", "/orders", tokens[i], "{}", &reply);
		s->answered_ns = bench_now_ns();
		const char *id = json_string_value(json_object_get(reply, "id"));
		if (s->status == 202 && id != NULL)
			snprintf(s->id, sizeof s->id, "%s", id);
		json_decref(reply);
	}
	curl_easy_cleanup(c);
	return NULL;
}

/* Orders settled so far (the samples' settled fields filled); *placed: those answered 202. */
static int count_settled(bench_order_events *events, int *placed)
{
	int settled = 0;
	*placed = 0;
	for (int i = 0; i < cfg.customers; i++) {
		order_sample *s = &samples[i];
		if (s->status != 202)
			continue;
		(*placed)++;
		if (!s->is_settled)
			s->is_settled = bench_order_events_get(events, s->id, &s->settled);
		settled += s->is_settled;
	}
	return settled;
}

/* ---- the stock, as the admin inventory API shows it -------------------------- */

typedef struct level {
	long long reserved, available;
	bool found;
} level;

/* The hot product's and the normal products' levels; false if the API fails. */
static bool read_levels(CURL *c, const char *admin, level *hot, level *normal)
{
	char path[512], cursor[256] = "";
	memset(hot, 0, sizeof *hot);
	memset(normal, 0, sizeof *normal * (size_t)cfg.products);
	for (int page = 0; page < 1000; page++) {
		json_t *reply = NULL;
		snprintf(path, sizeof path, "/admin/inventory?limit=100%s%s", cursor[0] ? "&cursor=" : "",
		         cursor);
		if (bench_http(c, cfg.shop.url, "GET", path, admin, NULL, &reply) != 200 || reply == NULL) {
			json_decref(reply);
			return false;
		}
		size_t k;
		json_t *item;
		json_array_foreach(json_object_get(reply, "items"), k, item)
		{
			const char *id = json_string_value(json_object_get(item, "product_id"));
			level l = {json_integer_value(json_object_get(item, "reserved")),
			           json_integer_value(json_object_get(item, "available")), true};
			if (id != NULL && strcmp(id, hot_id) == 0)
				*hot = l;
			for (int p = 0; id != NULL && p < cfg.products; p++)
				if (strcmp(id, normal_ids[p]) == 0)
					normal[p] = l;
		}
		const char *next = json_string_value(json_object_get(reply, "next_cursor"));
		snprintf(cursor, sizeof cursor, "%s", next != NULL ? next : "");
		json_decref(reply);
		if (cursor[0] == '\0')
			return true;
	}
	return true;
}

/* Compares the levels with the winners' lines; describes the first mismatch in why. */
static bool stock_consistent(const level *hot, const level *normal, const long long *expected, char *why,
                             size_t cap)
{
	if (!hot->found || hot->reserved != cfg.hot_stock || hot->available != 0) {
		snprintf(why, cap, "hot product: reserved %lld, available %lld (want %d and 0)",
		         hot->reserved, hot->available, cfg.hot_stock);
		return false;
	}
	for (int p = 0; p < cfg.products; p++)
		if (!normal[p].found || normal[p].reserved != expected[p] ||
		    normal[p].available != NORMAL_STOCK - expected[p]) {
			snprintf(why, cap,
			         "normal product %d: reserved %lld, available %lld (want %lld and %lld)", p,
			         normal[p].reserved, normal[p].available, expected[p],
			         NORMAL_STOCK - expected[p]);
			return false;
		}
	return true;
}

/* Polls the inventory until it matches the winners' lines (the read model
 * lags the log), up to STOCK_WAIT_NS; false (and why) if it never does. */
static bool check_stock(char *why, size_t cap)
{
	CURL *c = curl_easy_init();
	char *admin = bench_login(c, cfg.shop.url, cfg.shop.admin_email, cfg.shop.admin_password);
	level hot, *normal = calloc((size_t)cfg.products, sizeof *normal);
	long long *expected = calloc((size_t)cfg.products, sizeof *expected);
	bool ok = false;
	snprintf(why, cap, "the admin inventory API did not answer");
	for (int i = 0; i < cfg.customers; i++)
		if (samples[i].is_settled && samples[i].settled.reserved)
			expected[samples[i].normal]++;
	for (int64_t deadline = bench_now_ns() + STOCK_WAIT_NS;
	     admin != NULL && normal != NULL && expected != NULL && !ok && bench_now_ns() < deadline;) {
		ok = read_levels(c, admin, &hot, normal) &&
		     stock_consistent(&hot, normal, expected, why, cap);
		if (!ok)
			usleep(200000);
	}
	free(admin);
	free(normal);
	free(expected);
	curl_easy_cleanup(c);
	return ok;
}

/* ---- options ----------------------------------------------------------------- */

static bool parse_args(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		long n = 0;
		if (bench_shop_arg(&cfg.shop, &watched, k, v))
			;
		else if (strcmp(k, "--maildir") == 0)
			cfg.maildir = v;
		else if (strcmp(k, "--customers") == 0 && bench_parse_long(v, 1, 1000000, &n))
			cfg.customers = (int)n;
		else if (strcmp(k, "--hot-stock") == 0 && bench_parse_long(v, 1, 1000000, &n))
			cfg.hot_stock = (int)n;
		else if (strcmp(k, "--products") == 0 && bench_parse_long(v, 1, 1000, &n))
			cfg.products = (int)n;
		else if (strcmp(k, "--window-ms") == 0 && bench_parse_long(v, 1, 600000, &n))
			cfg.window_ms = (int)n;
		else if (strcmp(k, "--threads") == 0 && bench_parse_long(v, 1, MAX_THREADS, &n))
			cfg.threads = (int)n;
		else if (strcmp(k, "--settle-wait-s") == 0 && bench_parse_long(v, 1, 86400, &n))
			cfg.settle_wait_s = (int)n;
		else
			return false;
	}
	return bench_shop_args_complete(&cfg.shop) && cfg.hot_stock <= cfg.customers;
}

/* ---- main -------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	if (argc % 2 == 0 || !parse_args(argc, argv)) {
		fprintf(stderr,
		        "usage: bench_flash --url URL --nats URL --admin-email E --admin-password P "
		        "[--customers N] [--hot-stock N (<= customers)] [--products N] [--window-ms MS] "
		        "[--threads N] [--watch name=pid ...] [--varz MONITOR_URL] [--maildir DIR] "
		        "[--settle-wait-s S]\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	bench_order_events *events = bench_order_events_follow(cfg.shop.nats_url);
	samples = calloc((size_t)cfg.customers, sizeof *samples);
	if (events == NULL || samples == NULL || setup() != 0) {
		bench_say("setup failed");
		return 1;
	}
	/* the idle traffic (pull requests, heartbeats): subtracted from the burst's */
	bench_varz idle0 = {0}, idle1 = {0}, load0 = {0}, load1 = {0};
	bool have_varz = bench_varz_sample(cfg.shop.varz, &idle0);
	sleep(3);
	have_varz = have_varz && bench_varz_sample(cfg.shop.varz, &idle1);
	size_t mail_before = bench_maildir_count(cfg.maildir);

	bench_say("%d orders over %d ms from %d senders...", cfg.customers, cfg.window_ms, cfg.threads);
	start_ns = bench_now_ns() + 200000000LL;
	for (int i = 0; i < cfg.customers; i++)
		samples[i].scheduled_ns = start_ns + (int64_t)i * cfg.window_ms * 1000000LL / cfg.customers;
	bench_watch_sample(&watched, 0);
	have_varz = have_varz && bench_varz_sample(cfg.shop.varz, &load0);
	run_parallel(place_orders, cfg.threads < cfg.customers ? cfg.threads : cfg.customers);

	int placed = 0, settled = 0;
	for (int64_t deadline = bench_now_ns() + (int64_t)cfg.settle_wait_s * 1000000000LL;
	     (settled = count_settled(events, &placed)) < placed && bench_now_ns() < deadline;)
		usleep(20000);
	int64_t settled_ns = bench_now_ns();
	bench_watch_sample(&watched, 1);
	/* every settled order gets an email (confirmation or cancellation) */
	size_t mails = 0;
	for (int64_t deadline = bench_now_ns() + MAIL_WAIT_NS;
	     cfg.maildir != NULL &&
	     (mails = bench_maildir_count(cfg.maildir) - mail_before) < (size_t)settled &&
	     bench_now_ns() < deadline;)
		usleep(100000);
	int64_t mailed_ns = bench_now_ns();
	bench_watch_sample(&watched, 2);
	have_varz = have_varz && bench_varz_sample(cfg.shop.varz, &load1);
	bench_order_events_stop(events);

	/* the outcome */
	int64_t *settle = calloc((size_t)cfg.customers, sizeof *settle);
	int64_t *post = calloc((size_t)cfg.customers, sizeof *post);
	size_t n_settle = 0, n_post = 0;
	int reserved = 0, out_of_stock = 0, other_cancel = 0;
	static bench_failures failed; /* [1]: the cart was not filled */
	int64_t first_sent = 0, last_sent = 0, last_settled = 0;
	for (int i = 0; i < cfg.customers; i++) {
		order_sample *s = &samples[i];
		if (!bench_placed(&failed, s->status))
			continue;
		post[n_post++] = s->answered_ns - s->sent_ns;
		first_sent = first_sent == 0 || s->sent_ns < first_sent ? s->sent_ns : first_sent;
		last_sent = s->sent_ns > last_sent ? s->sent_ns : last_sent;
		if (!s->is_settled)
			continue;
		settle[n_settle++] = s->settled.at_ns - s->sent_ns;
		last_settled = s->settled.at_ns > last_settled ? s->settled.at_ns : last_settled;
		if (s->settled.reserved)
			reserved++;
		else if (strcmp(s->settled.reason, ORDER_REASON_OUT_OF_STOCK) == 0)
			out_of_stock++;
		else
			other_cancel++;
	}
	bench_sort_i64(settle, n_settle);
	bench_sort_i64(post, n_post);
	double span_s = last_settled > first_sent ? (double)(last_settled - first_sent) / 1e9 : 0;
	double per_s = span_s > 0 ? (double)n_settle / span_s : 0;
	char why[256] = "not checked: orders unsettled";
	bool stock_ok = settled == placed && check_stock(why, sizeof why);

	printf("flash sale: %d customers, hot product %d units, %d normal products; orders sent over %d ms "
	       "by %d senders\n",
	       cfg.customers, cfg.hot_stock, cfg.products, cfg.window_ms, cfg.threads);
	printf("placed %zu (202), failed %zu; settled %zu: reserved %d, cancelled out_of_stock %d, cancelled "
	       "otherwise %d, unsettled %d\n",
	       n_post, failed.total, n_settle, reserved, out_of_stock, other_cancel, placed - settled);
	bench_failures_print(&failed);
	printf("sends: first %.0f ms, last %.0f ms after the burst's start (scheduled over %d ms)\n",
	       (double)(first_sent - start_ns) / 1e6, (double)(last_sent - start_ns) / 1e6, cfg.window_ms);
	printf("settled %.0f orders/s (%zu settled over %.2f s from the first send to the last "
	       "settlement)\n",
	       per_s, n_settle, span_s);
	printf("POST /orders -> 202         p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
	       bench_percentile_ms(post, n_post, 0.5), bench_percentile_ms(post, n_post, 0.99),
	       bench_percentile_ms(post, n_post, 1.0));
	printf("sent -> settled (on NATS)   p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
	       bench_percentile_ms(settle, n_settle, 0.5), bench_percentile_ms(settle, n_settle, 0.99),
	       bench_percentile_ms(settle, n_settle, 1.0));
	double cpu_us[2][2] = {{-1, -1}, {-1, -1}}; /* [settled, mailed][orion, nats-server] */
	for (int m = 1; m <= 2 && n_post > 0; m++) {
		if (m == 2 && cfg.maildir == NULL)
			break;
		double s = (double)((m == 1 ? settled_ns : mailed_ns) - start_ns) / 1e9;
		if (m == 1)
			printf("until every order settled or the wait for them ended (%d of %d, %.1f s after "
			       "the "
			       "burst's start):\n",
			       settled, placed, s);
		else
			printf("until every order's email was in the Maildir (%zu of %d, %.1f s after the "
			       "burst's "
			       "start):\n",
			       mails, settled, s);
		for (int i = 0; i < watched.count; i++) {
			double used = bench_watch_used(&watched, watched.p[i].name, 0, m);
			printf("  cpu %-12s %.1f s (%.0f%% of one core), %.0f us per order\n",
			       watched.p[i].name, used, 100.0 * used / s, 1e6 * used / (double)n_post);
			if (strcmp(watched.p[i].name, "orion") == 0)
				cpu_us[m - 1][0] = 1e6 * used / (double)n_post;
			if (strcmp(watched.p[i].name, "nats-server") == 0)
				cpu_us[m - 1][1] = 1e6 * used / (double)n_post;
		}
	}
	double msgs_in = -1, msgs_out = -1;
	if (have_varz && n_post > 0) {
		double span = (double)(load1.at_ns - load0.at_ns) / 1e9;
		bench_varz_per_op(&idle0, &idle1, &load0, &load1, (double)n_post, &msgs_in, &msgs_out);
		printf("NATS messages per order (nats-server /varz over %.1f s, idle rate subtracted): in "
		       "%.1f, "
		       "out %.1f\n",
		       span, msgs_in, msgs_out);
	}
	bool counts_ok = failed.total == 0 && settled == placed && reserved == cfg.hot_stock &&
	                 out_of_stock == cfg.customers - cfg.hot_stock && other_cancel == 0;
	printf("check: %d placed and settled, exactly %d reserved, the other %d cancelled out_of_stock: %s\n",
	       cfg.customers, cfg.hot_stock, cfg.customers - cfg.hot_stock, counts_ok ? "ok" : "FAILED");
	printf("check: hot product available 0 and reserved %d; normal products reserved = the winners' "
	       "lines "
	       "(the losers' released): %s%s%s\n",
	       cfg.hot_stock, stock_ok ? "ok" : "FAILED", stock_ok ? "" : ": ", stock_ok ? "" : why);
	printf("RESULT customers=%d hot_stock=%d placed=%zu failed=%zu settled=%zu reserved=%d "
	       "out_of_stock=%d "
	       "other_cancel=%d per_s=%.0f span_s=%.2f last_send_ms=%.0f post_p50=%.2f post_p99=%.2f "
	       "settle_p50=%.2f settle_p99=%.2f settle_max=%.2f cpu_orion_us=%.0f cpu_nats_us=%.0f "
	       "cpu_orion_settled_us=%.0f cpu_nats_settled_us=%.0f msgs_in=%.1f msgs_out=%.1f mails=%zu "
	       "counts_ok=%d stock_ok=%d\n",
	       cfg.customers, cfg.hot_stock, n_post, failed.total, n_settle, reserved, out_of_stock,
	       other_cancel, per_s, span_s, (double)(last_sent - start_ns) / 1e6,
	       bench_percentile_ms(post, n_post, 0.5), bench_percentile_ms(post, n_post, 0.99),
	       bench_percentile_ms(settle, n_settle, 0.5), bench_percentile_ms(settle, n_settle, 0.99),
	       bench_percentile_ms(settle, n_settle, 1.0), cpu_us[1][0], cpu_us[1][1], cpu_us[0][0],
	       cpu_us[0][1], msgs_in, msgs_out, mails, counts_ok, stock_ok);
	free(settle);
	free(post);
	curl_global_cleanup();
	return counts_ok && stock_ok ? 0 : 1;
}
