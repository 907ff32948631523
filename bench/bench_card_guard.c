/* bench_card_guard.c — what the card-data guard (gateway/gw_validate.c
 * gw_has_card_data, ADR 028) costs every request with a body, against the
 * ceiling of reading the same bytes once (a byte sum the compiler cannot
 * drop), in one run.
 *
 * Bodies: a cart line (60 B), a product as an admin creates it (~1 KB of
 * text with digits), a provider's webhook event (~0.5 KB), and a 64 KiB
 * body of digits and separators (the worst case: every byte a digit run).
 * Prints per body: ns per call for the guard and the ceiling (median of 15
 * rounds), their ratio, and MB/s.
 *
 * usage: bench_card_guard [rounds] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_validate.h"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static volatile unsigned sink;

static unsigned byte_sum(const unsigned char *p, size_t n)
{
	unsigned s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	return s;
}

/* Median ns per call of guard (or the ceiling) over 15 rounds of iters calls. */
static double measure(const unsigned char *body, size_t len, long iters, int guard)
{
	double rounds[15];
	for (int r = 0; r < 15; r++) {
		int64_t t0 = now_ns();
		for (long i = 0; i < iters; i++)
			sink += guard ? (unsigned)gw_has_card_data(body, len) : byte_sum(body, len);
		rounds[r] = (double)(now_ns() - t0) / (double)iters;
	}
	qsort(rounds, 15, sizeof *rounds, cmp);
	return rounds[7];
}

int main(int argc, char **argv)
{
	long scale = argc > 1 ? atol(argv[1]) : 1;
	static char product[2048], webhook[2048];
	static unsigned char digits[65536];
	snprintf(product, sizeof product,
	         "{\"sku\":\"TEA-2026-0001\",\"name\":\"Sencha 100 g, harvest 2026\",\"description\":\"%s\","
	         "\"price_cents\":890,\"currency\":\"EUR\",\"category\":\"tea\",\"initial_stock\":25,"
	         "\"low_stock_threshold\":5}",
	         "Green tea from Shizuoka, first flush of 2026-05-02. Steep 70 C for 60 s; 3 g per 200 ml. "
	         "Batch 4711-0815, packed 2026-05-10, best before 2028-05-10. Call +49 30 1234 5678 for "
	         "wholesale orders of 100 to 1000 units. Order number 20260510-000123. Lorem ipsum dolor "
	         "sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
	         "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris "
	         "nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in "
	         "voluptate velit esse cillum dolore eu fugiat nulla pariatur.");
	snprintf(
	        webhook, sizeof webhook,
	        "{\"id\":\"evt_3QxYzAbCdEfGhIjKlMnOpQrS\",\"object\":\"event\",\"type\":\"payment_intent."
	        "succeeded\",\"created\":1796624248,\"data\":{\"object\":{\"id\":\"pi_3QxYzAbCdEfGhIjKlMn\","
	        "\"object\":\"payment_intent\",\"amount\":2599,\"currency\":\"eur\",\"status\":\"succeeded\","
	        "\"payment_method\":\"pm_1QxYzAbCdEfGhIjKlMnOpQ\",\"latest_charge\":\"ch_3QxYzAbCdEfGh\","
	        "\"metadata\":{\"order_id\":\"o019a7dc7e10f42623f7bdbd49aeef8e1\"},\"last_payment_error\":"
	        "null,\"next_action\":null,\"amount_refunded\":0,\"created\":1796624247}}}");
	for (size_t i = 0; i < sizeof digits; i++)
		digits[i] = i % 17 == 16 ? ' ' : (unsigned char)('0' + (i * 7) % 10);
	const struct {
		const char *name;
		const unsigned char *body;
		size_t len;
		long iters;
	} cases[] = {
	        {"cart line", (const unsigned char *)"{\"product_id\":\"demo-007\",\"quantity\":2}", 40,
	         200000},
	        {"admin product", (const unsigned char *)product, strlen(product), 50000},
	        {"webhook event", (const unsigned char *)webhook, strlen(webhook), 50000},
	        {"64 KiB of digits", digits, sizeof digits, 1000},
	};
	printf("| body | bytes | guard ns/call | read-once ceiling ns/call | guard / ceiling | guard MB/s "
	       "|\n");
	printf("|---|---|---|---|---|---|\n");
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		long iters = cases[c].iters * scale;
		double guard = measure(cases[c].body, cases[c].len, iters, 1);
		double ceiling = measure(cases[c].body, cases[c].len, iters, 0);
		printf("| %s | %zu | %.0f | %.0f | %.1f | %.0f |\n", cases[c].name, cases[c].len, guard,
		       ceiling, guard / ceiling, (double)cases[c].len / guard * 1000.0);
	}
	return (int)(sink & 0);
}
