/* test_http_client.c — the tests' HTTP client (tests/support/http_client.c)
 * read from many threads at once, as the concurrent placement tests do.
 *
 * hc_header answered from one static buffer shared by every thread: a
 * reply's Content-Type read on one thread could be overwritten by another
 * thread's before it was compared (test_order_limits saw a 409 problem+json
 * as "application/json", the Content-Type of a 200 read at the same time on
 * another thread). */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "http_client.h"

#define ROUNDS 200000

typedef struct reader {
	hc_reply reply;
	const char *expected;
	atomic_int *start;
	size_t wrong;
} reader;

static void *read_many(void *arg)
{
	reader *r = arg;
	while (atomic_load(r->start) == 0) {
	}
	for (int i = 0; i < ROUNDS; i++) {
		const char *got = hc_header(&r->reply, "Content-Type");
		if (got == NULL || strcmp(got, r->expected) != 0)
			r->wrong++;
	}
	return NULL;
}

static hc_reply reply_with(const char *headers)
{
	hc_reply r = {0};
	r.headers = strdup(headers);
	r.headers_len = strlen(headers);
	return r;
}

Test(http_client, headers_read_on_two_threads_at_once_stay_each_threads_own)
{
	atomic_int start = 0;
	reader readers[2] = {
	        {.reply = reply_with(
	                 "HTTP/1.1 409 Conflict\r\nContent-Type: application/problem+json\r\n\r\n"),
	         .expected = "application/problem+json",
	         .start = &start},
	        {.reply = reply_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"),
	         .expected = "application/json",
	         .start = &start},
	};
	pthread_t threads[2];
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&threads[i], NULL, read_many, &readers[i]), 0);
	atomic_store(&start, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	cr_expect_eq(readers[0].wrong, 0, "problem+json read as another thread's value %zu times",
	             readers[0].wrong);
	cr_expect_eq(readers[1].wrong, 0, "json read as another thread's value %zu times", readers[1].wrong);
	for (int i = 0; i < 2; i++)
		free(readers[i].reply.headers);
}
