/* test_inventory_feed.c — low-stock alerts and the admin inventory feed
 * (GET /admin/inventory/events, Server-Sent Events) through a real
 * `orion serve` on its own nats-server: a threshold crossing records exactly
 * one LowStockDetected and re-arms after the stock comes back; the feed
 * delivers the changes in stream order; a second connection with
 * Last-Event-ID (or ?after=) gets exactly the events after it, then live
 * ones, with no gap and no duplicate; a customer gets 403, no token 401, a
 * bad Last-Event-ID 400; an open feed does not keep the server from a clean
 * exit. One server per test, stopped in .fini. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"
#include "jwt_mint.h"

#define FEED_PATH  "/api/v1/admin/inventory/events"
#define EVENTS_MAX 64

static char *data_dir;
static pid_t server_pid;
static char base_url[64];
static char admin_token[GW_JWT_MAX_TOKEN];
static char customer_token[GW_JWT_MAX_TOKEN];

/* ---- the server ---------------------------------------------------------- */

static void start_server(void)
{
	const char *env[] = {
	        "ORION_NATS_URL=", "ORION_JWT_SECRET=", "ORION_ADMIN_EMAIL=admin-feed@example.com",
	        "ORION_ADMIN_PASSWORD=Lichen-copper-falcon-26", NULL};
	data_dir = th_tempdir("inventory-feed");
	server_pid = hc_serve_start(data_dir, NULL, env, base_url, sizeof base_url, NULL);
	hc_login_token(base_url, "admin-feed@example.com", "Lichen-copper-falcon-26", admin_token,
	               sizeof admin_token);
	hc_customer_token(base_url, "customer-feed@example.com", customer_token, sizeof customer_token);
}

static void stop_server(void)
{
	hc_serve_teardown(&server_pid, &data_dir);
}

TestSuite(inventory_feed, .init = start_server, .fini = stop_server, .timeout = 120);

/* ---- admin calls ----------------------------------------------------------- */

static hc_reply expect(long status, const char *method, const char *path, const char *token, const char *body)
{
	hc_reply r = hc_call(base_url, method, path, token, body, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, status, "%s %s: %ld %s", method, path, r.status, r.body);
	return r;
}

/* Creates a product with initial_stock and low_stock_threshold; returns its id (malloc'd). */
static char *create_product(const char *sku, long stock, long threshold)
{
	char body[512];
	snprintf(body, sizeof body,
	         "{\"sku\":\"%s\",\"name\":\"Feed item\",\"description\":\"\",\"price_cents\":100,"
	         "\"currency\":\"EUR\",\"category\":\"tests\",\"initial_stock\":%ld,\"low_stock_threshold\":%"
	         "ld}",
	         sku, stock, threshold);
	hc_reply r = expect(201, "POST", "/api/v1/admin/products", admin_token, body);
	char *id = strdup(json_string_value(json_object_get(r.json, "id")));
	hc_reply_free(&r);
	return id;
}

static void adjust(const char *product_id, long delta)
{
	char path[256], body[96];
	snprintf(path, sizeof path, "/api/v1/admin/inventory/%s/adjustments", product_id);
	snprintf(body, sizeof body, "{\"delta\":%ld,\"reason\":\"count\"}", delta);
	hc_reply r = expect(200, "POST", path, admin_token, body);
	hc_reply_free(&r);
}

/* ---- an SSE client ----------------------------------------------------------- */

typedef struct sse_event {
	unsigned long long id;
	char name[32];
	json_t *data;
} sse_event;

typedef struct sse_client {
	char *body;
	size_t body_len;
	long status;
	size_t stop_after;       /* abort once this many events are parsed */
	void (*on_open)(void *); /* called once, when the retry field arrives */
	void *on_open_arg;
	bool opened;
	sse_event events[EVENTS_MAX];
	size_t count;
	size_t parsed_to; /* bytes of body parsed into events */
} sse_client;

/* Parses the complete frames of c->body past parsed_to into events. */
static void parse_frames(sse_client *c)
{
	char *end;
	while ((end = strstr(c->body + c->parsed_to, "\n\n")) != NULL) {
		char *frame = c->body + c->parsed_to;
		*end = '\0';
		sse_event e = {0};
		char *data = NULL;
		for (char *line = strtok(frame, "\n"); line != NULL; line = strtok(NULL, "\n")) {
			if (strncmp(line, "id: ", 4) == 0)
				e.id = strtoull(line + 4, NULL, 10);
			else if (strncmp(line, "event: ", 7) == 0)
				snprintf(e.name, sizeof e.name, "%s", line + 7);
			else if (strncmp(line, "data: ", 6) == 0)
				data = line + 6;
			else if (strncmp(line, "retry: ", 7) == 0)
				c->opened = true;
		}
		if (data != NULL) {
			cr_assert_lt(c->count, EVENTS_MAX);
			e.data = json_loads(data, 0, NULL);
			cr_assert_not_null(e.data, "data is JSON: %s", data);
			c->events[c->count++] = e;
		}
		c->parsed_to = (size_t)(end - c->body) + 2;
	}
}

static size_t on_sse(char *data, size_t size, size_t count, void *arg)
{
	sse_client *c = arg;
	bool was_open = c->opened;
	hc_append(&c->body, &c->body_len, data, size * count);
	parse_frames(c);
	if (c->opened && !was_open && c->on_open != NULL)
		c->on_open(c->on_open_arg);
	if (c->stop_after > 0 && c->count >= c->stop_after)
		return 0; /* enough: abort */
	return size * count;
}

/* GET path (with an optional Last-Event-ID) as an event stream until
 * stop_after events arrived or timeout_ms passed. */
static void sse(sse_client *c, const char *path, const char *token, const char *last_event_id,
                long timeout_ms)
{
	hc_reply r = {0};
	hc_stream(base_url, path, token, last_event_id, timeout_ms, on_sse, c, &r);
	c->status = r.status;
	hc_reply_free(&r);
	if (c->body == NULL)
		hc_append(&c->body, &c->body_len, "", 0);
}

static void sse_free(sse_client *c)
{
	for (size_t i = 0; i < c->count; i++)
		json_decref(c->events[i].data);
	free(c->body);
}

static const char *text(const sse_event *e, const char *name)
{
	const char *s = json_string_value(json_object_get(e->data, name));
	cr_assert_not_null(s, "no %s in event %llu", name, e->id);
	return s;
}

static long long integer(const sse_event *e, const char *name)
{
	json_t *v = json_object_get(e->data, name);
	cr_assert(json_is_integer(v), "no integer %s in event %llu", name, e->id);
	return json_integer_value(v);
}

/* ---- the scenario -------------------------------------------------------------- */

typedef struct changes {
	const char *product_id;
	const long *deltas;
	size_t count;
} changes;

static void make_changes(void *arg)
{
	const changes *c = arg;
	for (size_t i = 0; i < c->count; i++)
		adjust(c->product_id, c->deltas[i]);
}

/* The events expected for the five adjustments of the scenario, in order:
 * StockAdjusted (available after), and the crossing it causes. */
static const struct {
	const char *name;
	long long available;
} scenario[] = {
        {"stock", 7},             /* -3: 7, not below 5 */
        {"stock", 4},             /* -3: 4 ... */
        {"low_stock", 4},         /* ... crosses below 5: one alert */
        {"stock", 3},             /* -1: 3, still low: no second alert */
        {"stock", 8},             /* +5: 8 ... */
        {"low_stock_cleared", 8}, /* ... back up: re-armed */
        {"stock", 4},             /* -4: 4 ... */
        {"low_stock", 4},         /* ... the second crossing alerts again */
};
static const long deltas[] = {-3, -3, -1, 5, -4};

static void assert_scenario(const sse_event *events, size_t count, const char *product_id)
{
	cr_assert_eq(count, ORN_ARRAY_LEN(scenario));
	for (size_t i = 0; i < count; i++) {
		const sse_event *e = &events[i];
		cr_assert_str_eq(e->name, scenario[i].name, "event %zu", i);
		cr_assert_str_eq(text(e, "product_id"), product_id);
		cr_assert_eq(integer(e, "available"), scenario[i].available, "event %zu", i);
		cr_assert_eq(integer(e, "on_hand") - integer(e, "reserved"), scenario[i].available);
		cr_assert_gt(e->id, 0);
		if (i > 0)
			cr_assert_geq(e->id, events[i - 1].id, "stream order");
		bool crossing = strcmp(e->name, "stock") != 0;
		if (crossing) {
			cr_assert_eq(integer(e, "threshold"), 5);
			cr_assert_eq(e->id, events[i - 1].id, "recorded in the commit that caused it");
		} else {
			cr_assert_str_eq(text(e, "type"), "StockAdjusted");
			cr_assert_eq(integer(e, "low_stock_threshold"), 5);
			cr_assert(json_is_boolean(json_object_get(e->data, "low")));
			cr_assert_eq(json_is_true(json_object_get(e->data, "low")),
			             scenario[i].available < 5);
		}
		cr_assert_eq(strlen(text(e, "at")), 24, "RFC 3339 with ms");
	}
}

Test(inventory_feed, crossings_alert_once_re_arm_and_the_feed_resumes_without_gaps_or_duplicates)
{
	char *product = create_product("FEED-1", 10, 5);
	changes first = {product, deltas, ORN_ARRAY_LEN(deltas)};

	/* live: connected first, the five changes made once the stream is open */
	sse_client live = {
	        .stop_after = ORN_ARRAY_LEN(scenario), .on_open = make_changes, .on_open_arg = &first};
	sse(&live, FEED_PATH, admin_token, NULL, 30000);
	cr_assert_eq(live.status, 200, "%s", live.body);
	cr_assert(live.opened, "a retry field first: %s", live.body);
	assert_scenario(live.events, live.count, product);

	/* resume after the k-th id: exactly what followed it, then a live change */
	size_t k = 1; /* the id of the second commit (stock 4 + low_stock) */
	char last[32];
	snprintf(last, sizeof last, "%llu", live.events[k].id);
	static const long one_more[] = {1}; /* 5: back to the threshold, cleared */
	changes second = {product, one_more, 1};
	size_t expected = ORN_ARRAY_LEN(scenario) - (k + 2) + 2;
	sse_client resumed = {.stop_after = expected, .on_open = make_changes, .on_open_arg = &second};
	sse(&resumed, FEED_PATH, admin_token, last, 30000);
	cr_assert_eq(resumed.status, 200, "%s", resumed.body);
	cr_assert_eq(resumed.count, expected, "%s", resumed.body);
	for (size_t i = 0; i < expected - 2; i++) {
		const sse_event *want = &live.events[k + 2 + i], *got = &resumed.events[i];
		cr_assert_eq(got->id, want->id, "event %zu: no gap, no duplicate", i);
		cr_assert_str_eq(got->name, want->name);
		cr_assert(json_equal(got->data, want->data), "event %zu is the same", i);
	}
	const sse_event *adjusted = &resumed.events[expected - 2], *cleared = &resumed.events[expected - 1];
	cr_assert_gt(adjusted->id, live.events[ORN_ARRAY_LEN(scenario) - 1].id, "the live one follows");
	cr_assert_str_eq(adjusted->name, "stock");
	cr_assert_eq(integer(adjusted, "available"), 5);
	cr_assert_str_eq(cleared->name, "low_stock_cleared");
	cr_assert_eq(cleared->id, adjusted->id);

	/* ?after= from the start: the creation, then everything in the same order */
	sse_client all = {.stop_after = 1 + ORN_ARRAY_LEN(scenario) + 2};
	sse(&all, FEED_PATH "?after=0", admin_token, NULL, 30000);
	cr_assert_eq(all.count, 1 + ORN_ARRAY_LEN(scenario) + 2, "%s", all.body);
	cr_assert_str_eq(text(&all.events[0], "type"), "StockItemCreated");
	cr_assert_eq(integer(&all.events[0], "on_hand"), 10);
	cr_assert(json_is_false(json_object_get(all.events[0].data, "low")));
	assert_scenario(all.events + 1, ORN_ARRAY_LEN(scenario), product);
	size_t alerts = 0;
	for (size_t i = 0; i < all.count; i++)
		alerts += strcmp(all.events[i].name, "low_stock") == 0;
	cr_assert_eq(alerts, 2, "exactly one LowStockDetected per crossing in the stream");

	sse_free(&all);
	sse_free(&resumed);
	sse_free(&live);
	free(product);
	/* the closed feeds left nothing behind that keeps the server from a clean exit */
	cr_assert_eq(hc_serve_stop(server_pid), 0, "orion serve exits cleanly");
	server_pid = 0;
}

Test(inventory_feed, a_threshold_raised_above_available_alerts_once)
{
	char *product = create_product("FEED-2", 6, 0);
	char path[256];
	snprintf(path, sizeof path, "/api/v1/admin/products/%s", product);
	hc_reply r = expect(200, "PATCH", path, admin_token, "{\"low_stock_threshold\":8}");
	cr_assert(json_is_true(json_object_get(r.json, "low")), "%s", r.body);
	hc_reply_free(&r);
	r = expect(200, "PATCH", path, admin_token, "{\"low_stock_threshold\":9}"); /* still low: no alert */
	hc_reply_free(&r);
	sse_client all = {.stop_after = 4};
	sse(&all, FEED_PATH "?after=0", admin_token, NULL, 30000);
	cr_assert_eq(all.count, 4, "%s", all.body);
	cr_assert_str_eq(text(&all.events[1], "type"), "LowStockThresholdSet");
	cr_assert_eq(integer(&all.events[1], "low_stock_threshold"), 8);
	cr_assert_str_eq(all.events[2].name, "low_stock");
	cr_assert_eq(integer(&all.events[2], "threshold"), 8);
	cr_assert_eq(integer(&all.events[2], "available"), 6);
	cr_assert_str_eq(text(&all.events[3], "type"), "LowStockThresholdSet");
	cr_assert_eq(integer(&all.events[3], "low_stock_threshold"), 9);
	sse_free(&all);
	free(product);
}

Test(inventory_feed, only_admins_with_a_valid_event_id_may_stream)
{
	hc_reply r = hc_call(base_url, "GET", FEED_PATH, NULL, NULL, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 401, "%s", r.body);
	hc_reply_free(&r);
	r = hc_call(base_url, "GET", FEED_PATH, customer_token, NULL, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 403, "%s", r.body);
	cr_assert_not_null(strstr(hc_header(&r, "Content-Type"), "application/problem+json"));
	hc_reply_free(&r);
	const char *bad[] = {"Last-Event-ID: abc", "Last-Event-ID: -1", "Last-Event-ID: 99999999999999999999",
	                     "Last-Event-ID: 1.5"};
	for (size_t i = 0; i < ORN_ARRAY_LEN(bad); i++) {
		r = hc_call(base_url, "GET", FEED_PATH, admin_token, NULL, 0, NULL, bad[i], 15000L);
		cr_assert_eq(r.status, 400, "%s: %ld %s", bad[i], r.status, r.body);
		hc_reply_free(&r);
	}
	r = hc_call(base_url, "GET", FEED_PATH "?after=x", admin_token, NULL, 0, NULL, NULL, 15000L);
	cr_assert_eq(r.status, 400, "%s", r.body);
	hc_reply_free(&r);
}

/* ---- a feed open while the server stops ---------------------------------------- */

typedef struct background_feed {
	pthread_t thread;
	sse_client client;
	bool opened; /* under the lock: the stream's retry field arrived */
	pthread_mutex_t lock;
} background_feed;

static void mark_open(void *arg)
{
	background_feed *b = arg;
	pthread_mutex_lock(&b->lock);
	b->opened = true;
	pthread_mutex_unlock(&b->lock);
}

/* Reads the feed until the server ends it (no asserts off the test thread). */
static void *read_feed(void *arg)
{
	background_feed *b = arg;
	char url[512], auth[GW_JWT_MAX_TOKEN + 32];
	CURL *curl = curl_easy_init();
	struct curl_slist *list = NULL;
	snprintf(url, sizeof url, "%s%s", base_url, FEED_PATH);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", admin_token);
	list = curl_slist_append(list, auth);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_sse);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b->client);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 60000L);
	curl_easy_perform(curl);
	curl_slist_free_all(list);
	curl_easy_cleanup(curl);
	return NULL;
}

Test(inventory_feed, an_open_feed_does_not_keep_the_server_from_stopping_cleanly)
{
	background_feed b = {.lock = PTHREAD_MUTEX_INITIALIZER};
	b.client.on_open = mark_open;
	b.client.on_open_arg = &b;
	cr_assert_eq(pthread_create(&b.thread, NULL, read_feed, &b), 0);
	bool opened = false;
	for (int i = 0; i < 200 && !opened; i++) {
		usleep(50 * 1000);
		pthread_mutex_lock(&b.lock);
		opened = b.opened;
		pthread_mutex_unlock(&b.lock);
	}
	cr_assert(opened, "the feed opened");
	cr_assert_eq(hc_serve_stop(server_pid), 0, "orion serve exits cleanly with a feed open");
	server_pid = 0;
	pthread_join(b.thread, NULL);
	sse_free(&b.client);
}
