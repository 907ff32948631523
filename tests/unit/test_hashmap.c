/* test_hashmap.c — the string → pointer map (engine/hashmap.c): basic
 * operations, growth to thousands of keys, iteration, and backward-shift
 * deletion checked against a reference model, including wrap-around runs. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"

#include "failalloc.h"

/* The nth allocation from now fails, once (0: off); skips the test where
 * injection is not available (sanitizer builds). */
static void fail_allocation(int nth)
{
	if (!failalloc_available())
		cr_skip_test("allocation failure injection needs glibc without ASan");
	failalloc_nth(nth);
}

static hmap *m;

static void setup(void)
{
	m = hmap_create();
	cr_assert_not_null(m);
}

static void teardown(void)
{
	hmap_destroy(m);
}

TestSuite(hashmap, .init = setup, .fini = teardown);

/* Values are distinct non-NULL pointers derived from an index. */
static char values[20000];

Test(hashmap, fnv1a_vectors)
{
	cr_assert_eq(hmap_hash(""), 0xcbf29ce484222325ULL);
	cr_assert_eq(hmap_hash("a"), 0xaf63dc4c8601ec8cULL);
	cr_assert_eq(hmap_hash("foobar"), 0x85944171f73967e8ULL);
}

Test(hashmap, put_get_replace_remove)
{
	cr_assert_eq(hmap_count(m), 0);
	cr_assert_null(hmap_get(m, "a"));
	cr_assert_eq(hmap_put(m, "a", &values[1]), ORN_OK);
	cr_assert_eq(hmap_put(m, "b", &values[2]), ORN_OK);
	cr_assert_eq(hmap_count(m), 2);
	cr_assert_eq(hmap_get(m, "a"), &values[1]);
	cr_assert_eq(hmap_put(m, "a", &values[3]), ORN_OK);
	cr_assert_eq(hmap_count(m), 2);
	cr_assert_eq(hmap_get(m, "a"), &values[3]);
	cr_assert_eq(hmap_remove(m, "a"), &values[3]);
	cr_assert_null(hmap_remove(m, "a"));
	cr_assert_null(hmap_get(m, "a"));
	cr_assert_eq(hmap_count(m), 1);
	cr_assert_eq(hmap_put(m, "", &values[4]), ORN_OK);
	cr_assert_eq(hmap_get(m, ""), &values[4]);
}

Test(hashmap, keys_are_copied)
{
	char key[8] = "k1";
	cr_assert_eq(hmap_put(m, key, &values[1]), ORN_OK);
	strcpy(key, "zz");
	cr_assert_eq(hmap_get(m, "k1"), &values[1]);
	cr_assert_null(hmap_get(m, "zz"));
}

Test(hashmap, null_arguments)
{
	cr_assert_eq(hmap_put(m, NULL, &values[1]), ORN_EINVAL);
	cr_assert_eq(hmap_put(m, "a", NULL), ORN_EINVAL);
	cr_assert_null(hmap_get(m, NULL));
	cr_assert_null(hmap_remove(m, NULL));
	cr_assert_eq(hmap_count(m), 0);
	hmap_destroy(NULL);
}

Test(hashmap, thousands_of_keys_grow_iterate_and_remove)
{
	enum { N = 20000 };
	char key[32];
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof key, "order-%d", i);
		cr_assert_eq(hmap_put(m, key, &values[i]), ORN_OK);
	}
	cr_assert_eq(hmap_count(m), N);
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof key, "order-%d", i);
		cr_assert_eq(hmap_get(m, key), &values[i], "%s", key);
	}
	/* Iteration visits every entry exactly once. */
	static unsigned char seen[N];
	memset(seen, 0, sizeof seen);
	size_t cursor = 0, visited = 0;
	const char *k;
	void *v;
	while (hmap_next(m, &cursor, &k, &v)) {
		int i = (int)((char *)v - values);
		snprintf(key, sizeof key, "order-%d", i);
		cr_assert_str_eq(k, key);
		cr_assert_eq(seen[i]++, 0);
		visited++;
	}
	cr_assert_eq(visited, N);
	cr_assert_not(hmap_next(m, &cursor, &k, &v), "stays at the end");
	/* Remove the odd keys; the even ones must all still be found. */
	for (int i = 1; i < N; i += 2) {
		snprintf(key, sizeof key, "order-%d", i);
		cr_assert_eq(hmap_remove(m, key), &values[i]);
	}
	cr_assert_eq(hmap_count(m), N / 2);
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof key, "order-%d", i);
		cr_assert_eq(hmap_get(m, key), i % 2 ? NULL : &values[i], "%s", key);
	}
	cursor = 0;
	visited = 0;
	while (hmap_next(m, &cursor, NULL, NULL))
		visited++;
	cr_assert_eq(visited, N / 2);
	hmap_clear(m);
	cr_assert_eq(hmap_count(m), 0);
	cursor = 0;
	cr_assert_not(hmap_next(m, &cursor, &k, &v));
	cr_assert_eq(hmap_put(m, "again", &values[0]), ORN_OK);
	cr_assert_eq(hmap_get(m, "again"), &values[0]);
}

/* Keys whose home slot in the initial 16-slot table is `home`. */
static void key_with_home(size_t home, int nth, char *out, size_t cap)
{
	for (int i = 0, found = 0;; i++) {
		snprintf(out, cap, "h%zu-%d", home, i);
		if ((hmap_hash(out) & 15) == home && found++ == nth)
			return;
	}
}

Test(hashmap, backward_shift_across_the_table_end)
{
	/* A probe run that starts at slot 14 and wraps to 0, 1, 2; 11 entries
	 * stay under the 0.7 load factor of 16 slots. */
	char keys[8][32];
	size_t homes[8] = {14, 14, 15, 14, 0, 15, 1, 0};
	int nth[16] = {0};
	for (int i = 0; i < 8; i++)
		key_with_home(homes[i], nth[homes[i]]++, keys[i], sizeof keys[i]);
	for (int order = 0; order < 8; order++) {
		hmap_clear(m);
		for (int i = 0; i < 8; i++)
			cr_assert_eq(hmap_put(m, keys[i], &values[i]), ORN_OK);
		cr_assert_eq(hmap_remove(m, keys[order]), &values[order]);
		for (int i = 0; i < 8; i++)
			cr_assert_eq(hmap_get(m, keys[i]), i == order ? NULL : &values[i],
			             "removed %d, get %d", order, i);
	}
}

Test(hashmap, random_operations_match_a_model)
{
	enum { KEYS = 48, OPS = 200000 };
	void *model[KEYS] = {0};
	size_t live = 0;
	char key[16];
	srand(1234);
	for (int op = 0; op < OPS; op++) {
		int k = rand() % KEYS;
		snprintf(key, sizeof key, "k%d", k);
		switch (rand() % 3) {
		case 0:
			cr_assert_eq(hmap_put(m, key, &values[op % 20000]), ORN_OK);
			live += model[k] == NULL;
			model[k] = &values[op % 20000];
			break;
		case 1:
			cr_assert_eq(hmap_remove(m, key), model[k]);
			live -= model[k] != NULL;
			model[k] = NULL;
			break;
		default:
			cr_assert_eq(hmap_get(m, key), model[k]);
			break;
		}
		cr_assert_eq(hmap_count(m), live);
		if (op % 997 == 0) {
			for (int j = 0; j < KEYS; j++) {
				snprintf(key, sizeof key, "k%d", j);
				cr_assert_eq(hmap_get(m, key), model[j]);
			}
		}
	}
}

Test(hashmap, allocation_failures_leave_the_map_intact)
{
	char key[16];
	fail_allocation(1);
	cr_assert_null(hmap_create());
	fail_allocation(2);
	cr_assert_null(hmap_create());
	fail_allocation(1); /* the key copy */
	cr_assert_eq(hmap_put(m, "k", &values[0]), ORN_ENOMEM);
	fail_allocation(0);
	cr_assert_eq(hmap_count(m), 0);
	cr_assert_null(hmap_get(m, "k"));
	/* 11 entries fit in 16 slots; the 12th needs the table to grow. */
	for (int i = 0; i < 11; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(hmap_put(m, key, &values[i]), ORN_OK);
	}
	fail_allocation(1);
	cr_assert_eq(hmap_put(m, "k11", &values[11]), ORN_ENOMEM);
	fail_allocation(0);
	cr_assert_eq(hmap_count(m), 11);
	cr_assert_null(hmap_get(m, "k11"));
	for (int i = 0; i < 11; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(hmap_get(m, key), &values[i]);
	}
	cr_assert_eq(hmap_put(m, "k11", &values[11]), ORN_OK);
	cr_assert_eq(hmap_count(m), 12);
}
