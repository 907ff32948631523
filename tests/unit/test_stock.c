/* test_stock.c — unit tests of the stock item decider (actors/stock.c).
 *
 * Given-when-then: given events applied with stock_evolve, when a command is
 * decided, then the expected events or the expected rejection. Further
 * suites cover evolve on odd streams, the invariants under a seeded random
 * command sequence, the payload codecs, snapshot/restore and the kind table
 * driven through an act_decision. */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stock.h"

/* ---- allocation failure injection ----
 *
 * As SQLite's OOM tests do, the binary makes allocations fail on purpose to
 * check that every ENOMEM path returns ORN_ENOMEM and leaves the state as it
 * was. glibc lets a program replace malloc, calloc, realloc and free together;
 * the replacements count the calling thread's allocations only, so Criterion's
 * own threads are never affected. Sanitizer builds keep their allocator and
 * skip the tests that need injection. */
#include "failalloc.h"

#define FAULT_INJECTION failalloc_available()

/* ---- given / when / then ---- */

static stock_state state;
static stock_events out;
static stock_verdict verdict;
static mp_writer *writer;

static void setup(void)
{
	cr_assert_eq(stock_state_init(&state), ORN_OK);
	writer = mp_writer_create();
	cr_assert_not_null(writer);
}

static void teardown(void)
{
	stock_state_dispose(&state);
	mp_writer_destroy(writer);
}

static stock_event created(int64_t quantity)
{
	return (stock_event){.kind = STOCK_CREATED, .quantity = quantity};
}

static stock_event reservation_event(stock_event_kind kind, const char *id, int64_t quantity)
{
	stock_event e = {.kind = kind, .quantity = quantity};

	snprintf(e.reservation_id, sizeof e.reservation_id, "%s", id);
	return e;
}

static stock_event reserved(const char *id, int64_t quantity)
{
	return reservation_event(STOCK_RESERVED, id, quantity);
}

static stock_event released(const char *id, int64_t quantity)
{
	return reservation_event(STOCK_RELEASED, id, quantity);
}

static stock_event committed(const char *id, int64_t quantity)
{
	return reservation_event(STOCK_COMMITTED, id, quantity);
}

static stock_event adjusted(int64_t delta, int64_t on_hand, const char *reason)
{
	stock_event e = {.kind = STOCK_ADJUSTED, .delta = delta, .on_hand = on_hand};

	snprintf(e.reason, sizeof e.reason, "%s", reason);
	return e;
}

static stock_command create(int64_t quantity)
{
	return (stock_command){.kind = STOCK_CREATE, .quantity = quantity};
}

static stock_command reservation_command(stock_command_kind kind, const char *id, int64_t quantity)
{
	stock_command c = {.kind = kind, .quantity = quantity};

	snprintf(c.reservation_id, sizeof c.reservation_id, "%s", id);
	return c;
}

static stock_command reserve(const char *id, int64_t quantity)
{
	return reservation_command(STOCK_RESERVE, id, quantity);
}

static stock_command release(const char *id)
{
	return reservation_command(STOCK_RELEASE, id, 0);
}

static stock_command commit(const char *id)
{
	return reservation_command(STOCK_COMMIT, id, 0);
}

static stock_command adjust(int64_t delta, const char *reason)
{
	stock_command c = {.kind = STOCK_ADJUST, .delta = delta};

	snprintf(c.reason, sizeof c.reason, "%s", reason);
	return c;
}

static void given_events(const stock_event *events, size_t count)
{
	for (size_t i = 0; i < count; i++)
		cr_assert_eq(stock_evolve(&state, &events[i]), ORN_OK, "given event %zu", i);
}

#define EVENTS(...)                                                                                          \
	(const stock_event[]){__VA_ARGS__}, sizeof((const stock_event[]){__VA_ARGS__}) / sizeof(stock_event)
#define GIVEN(...)       given_events(EVENTS(__VA_ARGS__))
#define THEN_EVENTS(...) then_events(EVENTS(__VA_ARGS__))

static void when(stock_command c)
{
	verdict = stock_decide(&state, &c, &out);
}

/* Compares the levels (on hand, reserved, threshold, available) only when
 * expected has them: most tests name the event, levels have their own. */
static void assert_event_eq(const stock_event *actual, const stock_event *expected)
{
	cr_assert_eq(actual->kind, expected->kind);
	cr_assert_str_eq(actual->reservation_id, expected->reservation_id);
	cr_assert_eq(actual->quantity, expected->quantity);
	cr_assert_eq(actual->delta, expected->delta);
	if (expected->kind == STOCK_ADJUSTED || expected->has_levels)
		cr_assert_eq(actual->on_hand, expected->on_hand);
	cr_assert_str_eq(actual->reason, expected->reason);
	if (expected->has_levels) {
		cr_assert(actual->has_levels);
		cr_assert_eq(actual->reserved, expected->reserved);
		cr_assert_eq(actual->threshold, expected->threshold);
		cr_assert_eq(actual->available, expected->available);
	}
}

/* Every event decide emits carries the levels after it. */
static void then_events(const stock_event *expected, size_t count)
{
	cr_assert_eq(verdict, STOCK_OK, "verdict %s", stock_verdict_code(verdict));
	cr_assert_eq(out.count, count);
	for (size_t i = 0; i < count; i++) {
		assert_event_eq(&out.items[i], &expected[i]);
		cr_assert(out.items[i].has_levels, "event %zu has levels", i);
	}
}

static void then_rejected(stock_verdict expected)
{
	cr_assert_eq(verdict, expected, "verdict %s, expected %s", stock_verdict_code(verdict),
	             stock_verdict_code(expected));
	cr_assert_eq(out.count, 0);
}

/* Accepted with no event: an idempotent no-op. */
static void then_nothing_happens(void)
{
	then_events(NULL, 0);
}

/* Applies the decided events, as the runtime does after appending them. */
static void and_applied(void)
{
	for (size_t i = 0; i < out.count; i++)
		cr_assert_eq(stock_evolve(&state, &out.items[i]), ORN_OK);
}

static void assert_counts(int64_t on_hand, int64_t reserved_units, int64_t sold)
{
	cr_assert_eq(state.on_hand, on_hand);
	cr_assert_eq(state.reserved, reserved_units);
	cr_assert_eq(state.sold, sold);
}

TestSuite(stock, .init = setup, .fini = teardown);

/* ---- create ---- */

Test(stock, create_on_a_new_item_emits_created)
{
	when(create(10));
	THEN_EVENTS(created(10));
	and_applied();
	cr_assert(state.exists);
	assert_counts(10, 0, 0);
}

Test(stock, create_accepts_zero_and_the_maximum)
{
	when(create(0));
	THEN_EVENTS(created(0));
	when(create(STOCK_QUANTITY_MAX));
	THEN_EVENTS(created(STOCK_QUANTITY_MAX));
}

Test(stock, create_rejects_a_quantity_out_of_range)
{
	when(create(-1));
	then_rejected(STOCK_REJ_INVALID);
	when(create(STOCK_QUANTITY_MAX + 1));
	then_rejected(STOCK_REJ_INVALID);
}

Test(stock, create_on_an_existing_item_is_rejected)
{
	GIVEN(created(5));
	when(create(5));
	then_rejected(STOCK_REJ_EXISTS);
}

/* ---- not found ---- */

Test(stock, every_command_but_create_on_a_missing_item_is_not_found)
{
	const stock_command commands[] = {reserve("o1:p1", 1),
	                                  release("o1:p1"),
	                                  commit("o1:p1"),
	                                  adjust(5, "delivery"),
	                                  {.kind = (stock_command_kind)42}};

	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		when(commands[i]);
		then_rejected(STOCK_REJ_NOT_FOUND);
	}
}

Test(stock, an_unknown_command_kind_is_invalid)
{
	GIVEN(created(5));
	when((stock_command){.kind = (stock_command_kind)42});
	then_rejected(STOCK_REJ_INVALID);
}

/* ---- reserve ---- */

Test(stock, reserve_within_available_emits_reserved)
{
	GIVEN(created(10));
	when(reserve("o1:p1", 3));
	THEN_EVENTS(reserved("o1:p1", 3));
	and_applied();
	assert_counts(10, 3, 0);
	cr_assert_eq(stock_available(&state), 7);
	cr_assert_eq(stock_held(&state, "o1:p1"), 3);
}

Test(stock, reserve_of_exactly_available_is_accepted)
{
	GIVEN(created(10), reserved("o1:p1", 4));
	when(reserve("o2:p1", 6));
	THEN_EVENTS(reserved("o2:p1", 6));
}

Test(stock, reserve_of_more_than_available_is_out_of_stock)
{
	GIVEN(created(10), reserved("o1:p1", 8));
	when(reserve("o2:p1", 3));
	then_rejected(STOCK_REJ_OUT_OF_STOCK);
}

Test(stock, reserve_on_an_item_with_nothing_on_hand_is_out_of_stock)
{
	GIVEN(created(0));
	when(reserve("o1:p1", 1));
	then_rejected(STOCK_REJ_OUT_OF_STOCK);
}

Test(stock, reserve_of_a_held_id_with_the_same_quantity_is_an_idempotent_no_op)
{
	GIVEN(created(3), reserved("o1:p1", 3));
	when(reserve("o1:p1", 3));
	then_nothing_happens();
}

Test(stock, reserve_of_a_held_id_with_another_quantity_is_a_mismatch)
{
	GIVEN(created(10), reserved("o1:p1", 3));
	when(reserve("o1:p1", 4));
	then_rejected(STOCK_REJ_MISMATCH);
}

Test(stock, reserve_of_a_released_id_is_closed)
{
	GIVEN(created(10), reserved("o1:p1", 3), released("o1:p1", 3));
	when(reserve("o1:p1", 3));
	then_rejected(STOCK_REJ_CLOSED);
}

Test(stock, reserve_of_a_committed_id_is_closed)
{
	GIVEN(created(10), reserved("o1:p1", 3), committed("o1:p1", 3));
	when(reserve("o1:p1", 3));
	then_rejected(STOCK_REJ_CLOSED);
}

Test(stock, reserve_rejects_a_quantity_out_of_range)
{
	const int64_t quantities[] = {0, -1, STOCK_QUANTITY_MAX + 1, INT64_MIN, INT64_MAX};

	GIVEN(created(10));
	for (size_t i = 0; i < sizeof quantities / sizeof quantities[0]; i++) {
		when(reserve("o1:p1", quantities[i]));
		then_rejected(STOCK_REJ_INVALID);
	}
}

Test(stock, reserve_rejects_empty_and_control_and_non_ascii_ids)
{
	const char *ids[] = {"", "o1\n", "o1\t:p", "\x7f", "caf\xc3\xa9", "\x1b[31m"};

	GIVEN(created(10));
	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		when(reserve(ids[i], 1));
		then_rejected(STOCK_REJ_INVALID);
	}
}

Test(stock, reserve_rejects_an_id_without_terminator)
{
	stock_command c = reserve("", 1);

	GIVEN(created(10));
	memset(c.reservation_id, 'a', sizeof c.reservation_id);
	when(c);
	then_rejected(STOCK_REJ_INVALID);
}

Test(stock, reserve_accepts_the_longest_id_and_any_printable_ascii)
{
	stock_command c = reserve("", 1);

	GIVEN(created(10));
	memset(c.reservation_id, 'x', STOCK_RESERVATION_ID_MAX - 1);
	c.reservation_id[STOCK_RESERVATION_ID_MAX - 1] = '\0';
	when(c);
	cr_assert_eq(verdict, STOCK_OK);
	cr_assert_eq(out.count, 1);
	when(reserve(" !~order 1.*>:{p}", 1));
	THEN_EVENTS(reserved(" !~order 1.*>:{p}", 1));
}

/* ---- release ---- */

Test(stock, release_of_a_held_id_emits_released_with_the_held_quantity)
{
	GIVEN(created(10), reserved("o1:p1", 3));
	when(release("o1:p1"));
	THEN_EVENTS(released("o1:p1", 3));
	and_applied();
	assert_counts(10, 0, 0);
	cr_assert_eq(stock_held(&state, "o1:p1"), 0);
}

Test(stock, release_of_an_id_not_held_is_an_idempotent_no_op)
{
	GIVEN(created(10));
	when(release("o1:p1"));
	then_nothing_happens();
}

Test(stock, release_twice_is_an_idempotent_no_op)
{
	GIVEN(created(10), reserved("o1:p1", 3), released("o1:p1", 3));
	when(release("o1:p1"));
	then_nothing_happens();
}

Test(stock, release_rejects_an_empty_id)
{
	GIVEN(created(10));
	when(release(""));
	then_rejected(STOCK_REJ_INVALID);
}

/* ---- commit ---- */

Test(stock, commit_of_a_held_id_moves_units_from_reserved_to_sold)
{
	GIVEN(created(10), reserved("o1:p1", 3), reserved("o2:p1", 2));
	when(commit("o1:p1"));
	THEN_EVENTS(committed("o1:p1", 3));
	and_applied();
	assert_counts(7, 2, 3);
	cr_assert_eq(stock_available(&state), 5);
}

Test(stock, commit_redelivered_after_commit_is_an_idempotent_no_op)
{
	GIVEN(created(10), reserved("o1:p1", 3), committed("o1:p1", 3));
	when(commit("o1:p1"));
	then_nothing_happens();
}

Test(stock, commit_of_a_recently_released_id_is_rejected)
{
	/* Released stock went back on sale: selling it now would oversell. */
	GIVEN(created(10), reserved("o1:p1", 3), released("o1:p1", 3));
	when(commit("o1:p1"));
	then_rejected(STOCK_REJ_CLOSED);
}

Test(stock, commit_of_a_recently_committed_id_is_a_no_op)
{
	GIVEN(created(10), reserved("o1:p1", 3), committed("o1:p1", 3));
	when(commit("o1:p1"));
	then_nothing_happens();
}

Test(stock, a_released_id_stays_released_through_a_snapshot)
{
	GIVEN(created(10), reserved("o1:p1", 3), released("o1:p1", 3), reserved("o2:p1", 1),
	      committed("o2:p1", 1));
	mp_writer *w = mp_writer_create();
	cr_assert_eq(stock_kind.snapshot(&state, w), ORN_OK);
	stock_state copy;
	stock_kind.init(&copy);
	cr_assert_eq(stock_kind.restore(&copy, mp_writer_data(w), mp_writer_size(w)), ORN_OK);
	stock_events events;
	stock_command c = {.kind = STOCK_COMMIT};
	strcpy(c.reservation_id, "o1:p1");
	cr_assert_eq(stock_decide(&copy, &c, &events), STOCK_REJ_CLOSED);
	strcpy(c.reservation_id, "o2:p1");
	cr_assert_eq(stock_decide(&copy, &c, &events), STOCK_OK);
	cr_assert_eq(events.count, 0);
	stock_kind.dispose(&copy);
	mp_writer_destroy(w);
}

Test(stock, commit_of_an_unknown_id_is_rejected)
{
	GIVEN(created(10), reserved("o1:p1", 3));
	when(commit("o2:p1"));
	then_rejected(STOCK_REJ_UNKNOWN_RESERVATION);
}

Test(stock, commit_rejects_a_control_character_id)
{
	GIVEN(created(10));
	when(commit("o1\r"));
	then_rejected(STOCK_REJ_INVALID);
}

/* ---- adjust ---- */

Test(stock, adjust_up_emits_adjusted_with_the_new_on_hand)
{
	GIVEN(created(10));
	when(adjust(5, "delivery"));
	THEN_EVENTS(adjusted(5, 15, "delivery"));
	and_applied();
	assert_counts(15, 0, 0);
}

Test(stock, adjust_down_to_exactly_reserved_is_accepted)
{
	GIVEN(created(10), reserved("o1:p1", 4));
	when(adjust(-6, "breakage"));
	THEN_EVENTS(adjusted(-6, 4, "breakage"));
	and_applied();
	cr_assert_eq(stock_available(&state), 0);
}

Test(stock, adjust_below_reserved_is_rejected)
{
	GIVEN(created(10), reserved("o1:p1", 4));
	when(adjust(-7, "breakage"));
	then_rejected(STOCK_REJ_BELOW_RESERVED);
}

Test(stock, adjust_below_zero_is_rejected)
{
	GIVEN(created(3));
	when(adjust(-4, "count"));
	then_rejected(STOCK_REJ_BELOW_RESERVED);
}

Test(stock, adjust_rejects_zero_and_out_of_range_deltas)
{
	const int64_t deltas[] = {0, STOCK_QUANTITY_MAX + 1, -STOCK_QUANTITY_MAX - 1, INT64_MIN, INT64_MAX};

	GIVEN(created(10));
	for (size_t i = 0; i < sizeof deltas / sizeof deltas[0]; i++) {
		when(adjust(deltas[i], "count"));
		then_rejected(STOCK_REJ_INVALID);
	}
}

Test(stock, adjust_rejects_an_empty_or_unterminated_reason)
{
	stock_command c = adjust(1, "");

	GIVEN(created(10));
	when(c);
	then_rejected(STOCK_REJ_INVALID);
	memset(c.reason, 'r', sizeof c.reason);
	when(c);
	then_rejected(STOCK_REJ_INVALID);
}

Test(stock, adjust_above_the_maximum_on_hand_is_invalid)
{
	GIVEN(created(STOCK_QUANTITY_MAX));
	when(adjust(1, "found one"));
	then_rejected(STOCK_REJ_INVALID);
	when(adjust(-STOCK_QUANTITY_MAX, "lost all"));
	THEN_EVENTS(adjusted(-STOCK_QUANTITY_MAX, 0, "lost all"));
}

/* ---- names ---- */

Test(stock, verdict_codes_are_stable)
{
	cr_assert_str_eq(stock_verdict_code(STOCK_OK), "");
	cr_assert_str_eq(stock_verdict_code(STOCK_REJ_NOT_FOUND), "not_found");
	cr_assert_str_eq(stock_verdict_code(STOCK_REJ_EXISTS), "exists");
	cr_assert_str_eq(stock_verdict_code(STOCK_REJ_INVALID), "invalid");
	cr_assert_str_eq(stock_verdict_code(STOCK_REJ_OUT_OF_STOCK), "out_of_stock");
	cr_assert_str_eq(stock_verdict_code(STOCK_REJ_MISMATCH), "reservation_mismatch");
	cr_assert_str_eq(stock_verdict_code(STOCK_REJ_CLOSED), "reservation_closed");
	cr_assert_str_eq(stock_verdict_code(STOCK_REJ_UNKNOWN_RESERVATION), "unknown_reservation");
	cr_assert_str_eq(stock_verdict_code(STOCK_REJ_BELOW_RESERVED), "below_reserved");
	cr_assert_str_eq(stock_verdict_code((stock_verdict)99), "unknown");
}

Test(stock, type_names_match_the_header)
{
	cr_assert_str_eq(stock_event_type(STOCK_CREATED), STOCK_EV_CREATED);
	cr_assert_str_eq(stock_event_type(STOCK_RESERVED), STOCK_EV_RESERVED);
	cr_assert_str_eq(stock_event_type(STOCK_RELEASED), STOCK_EV_RELEASED);
	cr_assert_str_eq(stock_event_type(STOCK_COMMITTED), STOCK_EV_COMMITTED);
	cr_assert_str_eq(stock_event_type(STOCK_ADJUSTED), STOCK_EV_ADJUSTED);
	cr_assert_null(stock_event_type((stock_event_kind)9));
	cr_assert_str_eq(stock_command_type(STOCK_CREATE), STOCK_CMD_CREATE);
	cr_assert_str_eq(stock_command_type(STOCK_RESERVE), STOCK_CMD_RESERVE);
	cr_assert_str_eq(stock_command_type(STOCK_RELEASE), STOCK_CMD_RELEASE);
	cr_assert_str_eq(stock_command_type(STOCK_COMMIT), STOCK_CMD_COMMIT);
	cr_assert_str_eq(stock_command_type(STOCK_ADJUST), STOCK_CMD_ADJUST);
	cr_assert_null(stock_command_type((stock_command_kind)9));
}

/* ---- evolve: closed memory and odd streams ---- */

static void reservation_id_of(unsigned i, char *id, size_t cap)
{
	snprintf(id, cap, "order-%u:sku", i);
}

/* Reserves and releases (or commits) n distinct ids, 1 unit each. */
static void given_closed_reservations(unsigned n, bool commit_them)
{
	char id[STOCK_RESERVATION_ID_MAX];

	for (unsigned i = 0; i < n; i++) {
		reservation_id_of(i, id, sizeof id);
		GIVEN(reserved(id, 1), commit_them ? committed(id, 1) : released(id, 1));
	}
}

Test(stock, closed_memory_forgets_the_oldest_id_past_its_capacity)
{
	char oldest[STOCK_RESERVATION_ID_MAX], second[STOCK_RESERVATION_ID_MAX];

	GIVEN(created(10));
	given_closed_reservations(STOCK_CLOSED_MEMORY + 1, false);
	cr_assert_eq(state.closed_count, STOCK_CLOSED_MEMORY);
	cr_assert_eq(hmap_count(state.closed_index), STOCK_CLOSED_MEMORY);
	reservation_id_of(0, oldest, sizeof oldest);
	reservation_id_of(1, second, sizeof second);
	when(reserve(oldest, 1));
	THEN_EVENTS(reserved(oldest, 1));
	when(reserve(second, 1));
	then_rejected(STOCK_REJ_CLOSED);
	when(commit(oldest));
	then_rejected(STOCK_REJ_UNKNOWN_RESERVATION);
}

Test(stock, commits_fill_the_closed_memory_too)
{
	GIVEN(created(STOCK_CLOSED_MEMORY + 10));
	given_closed_reservations(STOCK_CLOSED_MEMORY + 2, true);
	assert_counts(8, 0, STOCK_CLOSED_MEMORY + 2);
	cr_assert_eq(state.closed_count, STOCK_CLOSED_MEMORY);
	cr_assert_eq(state.closed_next, 2);
}

Test(stock, a_reserve_for_a_held_id_replaces_the_held_quantity)
{
	GIVEN(created(10), reserved("o1:p1", 3), reserved("o1:p1", 5));
	cr_assert_eq(state.reserved, 5);
	cr_assert_eq(stock_held(&state, "o1:p1"), 5);
}

Test(stock, a_release_of_an_id_not_held_changes_no_count_but_closes_the_id)
{
	GIVEN(created(10), reserved("o1:p1", 3), released("o2:p1", 4), committed("o3:p1", 4));
	assert_counts(10, 3, 0);
	cr_assert_eq(state.closed_count, 2);
	when(reserve("o2:p1", 1));
	then_rejected(STOCK_REJ_CLOSED);
}

Test(stock, a_release_on_an_item_that_never_held_anything_only_closes_the_id)
{
	GIVEN(created(1), released("o1:p1", 1));
	assert_counts(1, 0, 0);
	cr_assert_null(state.held);
	cr_assert_eq(state.closed_count, 1);
}

Test(stock, closing_an_id_already_remembered_keeps_the_ring_as_it_is)
{
	GIVEN(created(10), reserved("a", 1), released("a", 1), reserved("b", 1), released("b", 1),
	      released("a", 1));
	cr_assert_eq(state.closed_count, 2);
	cr_assert_eq(state.closed_next, 2);
	cr_assert_str_eq(state.closed[0], "a");
}

Test(stock, events_breaking_the_payload_contract_are_ignored)
{
	stock_event unterminated = reserved("", 1);

	memset(unterminated.reservation_id, 'z', sizeof unterminated.reservation_id);
	GIVEN(created(10), reserved("", 1), reserved("o1:p1", 0), reserved("o1:p1", -2), released("", 1),
	      committed("bad\n", 1), unterminated, (stock_event){.kind = (stock_event_kind)77});
	assert_counts(10, 0, 0);
	cr_assert_eq(state.closed_count, 0);
	cr_assert_null(state.held);
}

Test(stock, a_second_created_event_resets_on_hand)
{
	GIVEN(created(10), created(4));
	cr_assert(state.exists);
	cr_assert_eq(state.on_hand, 4);
}

Test(stock, available_never_goes_negative)
{
	GIVEN(created(10), reserved("o1:p1", 8), adjusted(-9, 1, "stream written by hand"));
	cr_assert_eq(state.on_hand, 1);
	cr_assert_eq(stock_available(&state), 0);
	when(adjust(-1, "more"));
	then_rejected(STOCK_REJ_BELOW_RESERVED);
}

Test(stock, arithmetic_on_odd_states_saturates_instead_of_overflowing)
{
	GIVEN(created(0));
	state.on_hand = INT64_MAX - 1;
	GIVEN(adjusted(5, 0, "up"));
	cr_assert_eq(state.on_hand, INT64_MAX);
	when(adjust(1, "more"));
	then_rejected(STOCK_REJ_INVALID);
	state.on_hand = INT64_MIN + 1;
	GIVEN(adjusted(-5, 0, "down"));
	cr_assert_eq(state.on_hand, INT64_MIN);
	when(adjust(-1, "less"));
	then_rejected(STOCK_REJ_BELOW_RESERVED);
	cr_assert_eq(stock_available(&state), 0);
}

Test(stock, held_reports_zero_for_any_id_on_an_empty_state)
{
	cr_assert_eq(stock_held(&state, "o1:p1"), 0);
	cr_assert_eq(stock_available(&state), 0);
}

/* ---- invariants ---- */

/* xorshift64: a fixed seed makes the sequence, and any failure, repeatable. */
static uint64_t next_random(uint64_t *seed)
{
	*seed ^= *seed << 13;
	*seed ^= *seed >> 7;
	*seed ^= *seed << 17;
	return *seed;
}

static int64_t sum_of_held(const stock_state *s)
{
	size_t cursor = 0;
	const char *key;
	void *value;
	int64_t sum = 0;

	while (s->held != NULL && hmap_next(s->held, &cursor, &key, &value))
		sum += (int64_t)(intptr_t)value;
	return sum;
}

static stock_command random_command(uint64_t *seed)
{
	char id[STOCK_RESERVATION_ID_MAX];
	int64_t quantity = (int64_t)(next_random(seed) % 12) - 1;

	reservation_id_of((unsigned)(next_random(seed) % 1500), id, sizeof id);
	switch (next_random(seed) % 9) {
	case 0:
		return (stock_command){
		        .kind = STOCK_CREATE, .quantity = quantity * 10, .threshold = quantity};
	case 8:
		return (stock_command){.kind = STOCK_SET_THRESHOLD,
		                       .threshold = (int64_t)(next_random(seed) % 400) - 1};
	case 1:
	case 2:
	case 3:
		return reserve(id, quantity);
	case 4:
		return release(id);
	case 5:
	case 6:
		return commit(id);
	default:
		return adjust(quantity * 7 - 20, "recount");
	}
}

static void assert_invariants(const stock_state *s, unsigned step)
{
	cr_assert_geq(s->reserved, 0, "step %u", step);
	cr_assert_geq(s->on_hand, s->reserved, "step %u", step);
	cr_assert_eq(s->reserved, sum_of_held(s), "step %u", step);
	cr_assert_eq(stock_available(s), s->on_hand - s->reserved, "step %u", step);
	cr_assert_geq(s->sold, 0, "step %u", step);
	cr_assert_leq(s->closed_count, STOCK_CLOSED_MEMORY, "step %u", step);
	cr_assert_eq(s->closed_index != NULL ? hmap_count(s->closed_index) : 0, s->closed_count, "step %u",
	             step);
	cr_assert_eq(s->low, stock_is_low(s), "step %u: low exactly while below the threshold", step);
}

/* The levels every decided event carries are the state's after the decision. */
static void assert_levels_match(const stock_state *s, unsigned step)
{
	for (size_t i = 0; i < out.count; i++) {
		cr_assert(out.items[i].has_levels, "step %u", step);
		cr_assert_eq(out.items[i].on_hand, s->on_hand, "step %u", step);
		cr_assert_eq(out.items[i].reserved, s->reserved, "step %u", step);
		cr_assert_eq(out.items[i].threshold, s->threshold, "step %u", step);
	}
}

/* Snapshot bytes of s; equal bytes mean equal states. */
static void assert_same_state(const stock_state *a, const stock_state *b)
{
	mp_writer *wa = mp_writer_create(), *wb = mp_writer_create();

	cr_assert_eq(stock_kind.snapshot(a, wa), ORN_OK);
	cr_assert_eq(stock_kind.snapshot(b, wb), ORN_OK);
	cr_assert_eq(mp_writer_size(wa), mp_writer_size(wb));
	cr_assert_arr_eq(mp_writer_data(wa), mp_writer_data(wb), mp_writer_size(wa));
	mp_writer_destroy(wa);
	mp_writer_destroy(wb);
}

Test(stock, random_commands_keep_the_invariants_and_replay_exactly)
{
	uint64_t seed = 0x5eed0f0e1105ULL;
	stock_state replayed, restored;
	unsigned accepted = 0, rejected = 0, detected = 0, cleared = 0;

	stock_state_init(&replayed);
	stock_state_init(&restored);
	for (unsigned step = 0; step < 30000; step++) {
		when(random_command(&seed));
		accepted += verdict == STOCK_OK;
		rejected += verdict != STOCK_OK;
		for (size_t i = 0; i < out.count; i++) {
			cr_assert_eq(stock_evolve(&state, &out.items[i]), ORN_OK);
			cr_assert_eq(stock_evolve(&replayed, &out.items[i]), ORN_OK);
			detected += out.items[i].kind == STOCK_LOW_DETECTED;
			cleared += out.items[i].kind == STOCK_LOW_CLEARED;
		}
		assert_invariants(&state, step);
		assert_levels_match(&state, step);
		cr_assert_eq(detected - cleared, state.low ? 1u : 0u, "step %u: alerts alternate", step);
	}
	cr_assert_geq(cleared, 10, "the sequence crossed the threshold both ways");
	cr_assert_gt(accepted, 10000);
	cr_assert_gt(rejected, 1000);
	cr_assert_eq(state.closed_count, STOCK_CLOSED_MEMORY, "the ring wrapped");
	assert_same_state(&state, &replayed);
	cr_assert_eq(stock_kind.snapshot(&state, writer), ORN_OK);
	cr_assert_eq(stock_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	assert_same_state(&state, &restored);
	stock_state_dispose(&replayed);
	stock_state_dispose(&restored);
}

/* ---- payload codecs ---- */

static void assert_command_round_trip(const stock_command *c)
{
	stock_command decoded;

	mp_writer_reset(writer);
	cr_assert_eq(stock_command_encode(writer, c), ORN_OK);
	cr_assert_eq(stock_command_decode(stock_command_type(c->kind), mp_writer_data(writer),
	                                  mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_eq(decoded.kind, c->kind);
	cr_assert_str_eq(decoded.reservation_id, c->reservation_id);
	cr_assert_eq(decoded.quantity, c->quantity);
	cr_assert_eq(decoded.delta, c->delta);
	cr_assert_str_eq(decoded.reason, c->reason);
	cr_assert_eq(decoded.threshold, c->threshold);
}

static void assert_event_round_trip(const stock_event *e)
{
	stock_event decoded;

	mp_writer_reset(writer);
	cr_assert_eq(stock_event_encode(writer, e), ORN_OK);
	cr_assert_eq(stock_event_decode(stock_event_type(e->kind), mp_writer_data(writer),
	                                mp_writer_size(writer), &decoded),
	             ORN_OK);
	assert_event_eq(&decoded, e);
	cr_assert_eq(decoded.has_levels, e->has_levels);
}

Test(stock, commands_round_trip)
{
	const stock_command commands[] = {
	        create(0),         create(STOCK_QUANTITY_MAX), reserve("o1:p1", 7), release("o1:p1"),
	        commit("o 1:p/1"), adjust(-3, "breakage"),     adjust(1, "ok ünï")};

	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		assert_command_round_trip(&commands[i]);
}

Test(stock, commands_with_out_of_range_values_still_decode_for_decide_to_judge)
{
	assert_command_round_trip(&(stock_command){.kind = STOCK_RESERVE, .quantity = -5});
	assert_command_round_trip(&(stock_command){.kind = STOCK_ADJUST, .delta = INT64_MIN});
}

Test(stock, events_round_trip)
{
	const stock_event events[] = {created(0),
	                              created(12),
	                              reserved("o1:p1", 3),
	                              released("o1:p1", 3),
	                              committed("o2:p", 1),
	                              adjusted(-3, 0, "lost"),
	                              adjusted(STOCK_QUANTITY_MAX, STOCK_QUANTITY_MAX, "found")};

	for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
		assert_event_round_trip(&events[i]);
}

Test(stock, encoders_reject_unknown_kinds_and_unterminated_strings)
{
	stock_command c = reserve("", 1);
	stock_event e = adjusted(1, 2, "");

	cr_assert_eq(stock_command_encode(writer, &(stock_command){.kind = (stock_command_kind)9}),
	             ORN_EINVAL);
	cr_assert_eq(stock_event_encode(writer, &(stock_event){.kind = (stock_event_kind)9}), ORN_EINVAL);
	memset(c.reservation_id, 'a', sizeof c.reservation_id);
	cr_assert_eq(stock_command_encode(writer, &c), ORN_EINVAL);
	memset(e.reason, 'a', sizeof e.reason);
	cr_assert_eq(stock_event_encode(writer, &e), ORN_EINVAL);
	/* buffers a payload does not carry are not looked at */
	c.kind = STOCK_ADJUST;
	c.delta = 1;
	snprintf(c.reason, sizeof c.reason, "ok");
	cr_assert_eq(stock_command_encode(writer, &c), ORN_OK);
	e.kind = STOCK_CREATED;
	cr_assert_eq(stock_event_encode(writer, &e), ORN_OK);
}

Test(stock, decoders_reject_unknown_types)
{
	stock_command c;
	stock_event e;

	cr_assert_eq(
	        stock_command_encode(writer, &(stock_command){.kind = STOCK_RELEASE, .reservation_id = "a"}),
	        ORN_OK);
	cr_assert_eq(stock_command_decode("ExplodeStock", mp_writer_data(writer), mp_writer_size(writer), &c),
	             ORN_EINVAL);
	cr_assert_eq(stock_command_decode(NULL, mp_writer_data(writer), mp_writer_size(writer), &c),
	             ORN_EINVAL);
	cr_assert_eq(
	        stock_event_decode(STOCK_CMD_RELEASE, mp_writer_data(writer), mp_writer_size(writer), &e),
	        ORN_EINVAL);
}

Test(stock, every_truncation_of_a_payload_is_rejected)
{
	stock_command c;
	stock_event e;
	const stock_event event = adjusted(-3, 4, "inventory count");

	cr_assert_eq(stock_command_encode(writer, &(stock_command){.kind = STOCK_RESERVE,
	                                                           .reservation_id = "o1:p1",
	                                                           .quantity = 300}),
	             ORN_OK);
	for (size_t len = 0; len < mp_writer_size(writer); len++)
		cr_assert_eq(stock_command_decode(STOCK_CMD_RESERVE, mp_writer_data(writer), len, &c),
		             ORN_EDECODE, "length %zu", len);
	mp_writer_reset(writer);
	cr_assert_eq(stock_event_encode(writer, &event), ORN_OK);
	for (size_t len = 0; len < mp_writer_size(writer); len++)
		cr_assert_eq(stock_event_decode(STOCK_EV_ADJUSTED, mp_writer_data(writer), len, &e),
		             ORN_EDECODE, "length %zu", len);
	cr_assert_eq(stock_command_decode(STOCK_CMD_CREATE, NULL, 0, &c), ORN_EDECODE);
}

/* Decodes the writer's bytes as a command of type. */
static orn_rc decode_written_command(const char *type)
{
	stock_command c;

	return stock_command_decode(type, mp_writer_data(writer), mp_writer_size(writer), &c);
}

static orn_rc decode_written_event(const char *type)
{
	stock_event e;

	return stock_event_decode(type, mp_writer_data(writer), mp_writer_size(writer), &e);
}

/* Writes a one-entry map {key: <value written by the caller next>}. */
static void write_single_key(const char *key)
{
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, key);
}

Test(stock, wrong_value_types_are_rejected)
{
	write_single_key("quantity");
	mp_write_cstr(writer, "3");
	cr_assert_eq(decode_written_command(STOCK_CMD_CREATE), ORN_EDECODE);
	write_single_key("quantity");
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(STOCK_CMD_CREATE), ORN_EDECODE);
	write_single_key("quantity");
	mp_write_bool(writer, true);
	cr_assert_eq(decode_written_command(STOCK_CMD_CREATE), ORN_EDECODE);
	write_single_key("quantity");
	mp_write_raw(writer, "\xcb\x40\x08\x00\x00\x00\x00\x00\x00", 9); /* float64 3.0 */
	cr_assert_eq(decode_written_command(STOCK_CMD_CREATE), ORN_EDECODE);
	write_single_key("quantity");
	mp_write_uint(writer, (uint64_t)INT64_MAX + 1);
	cr_assert_eq(decode_written_command(STOCK_CMD_CREATE), ORN_EDECODE);
	write_single_key("reservation_id");
	mp_write_int(writer, 42);
	cr_assert_eq(decode_written_command(STOCK_CMD_RELEASE), ORN_EDECODE);
	write_single_key("reservation_id");
	mp_write_bin(writer, "o1", 2);
	cr_assert_eq(decode_written_command(STOCK_CMD_COMMIT), ORN_EDECODE);
}

Test(stock, a_payload_that_is_not_one_map_is_rejected)
{
	mp_write_array(writer, 1);
	mp_write_int(writer, 3);
	cr_assert_eq(decode_written_command(STOCK_CMD_CREATE), ORN_EDECODE);
	write_single_key("quantity");
	mp_write_int(writer, 3);
	mp_write_nil(writer); /* trailing value */
	cr_assert_eq(decode_written_command(STOCK_CMD_CREATE), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_int(writer, 1); /* non-string key */
	mp_write_int(writer, 3);
	cr_assert_eq(decode_written_command(STOCK_CMD_CREATE), ORN_EDECODE);
}

Test(stock, missing_and_repeated_keys_are_rejected)
{
	write_single_key("reservation_id");
	mp_write_cstr(writer, "o1:p1");
	cr_assert_eq(decode_written_command(STOCK_CMD_RESERVE), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 0);
	cr_assert_eq(decode_written_command(STOCK_CMD_COMMIT), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 2);
	cr_assert_eq(decode_written_command(STOCK_CMD_CREATE), ORN_EDECODE);
}

Test(stock, unknown_keys_and_keys_of_other_payloads_are_skipped)
{
	stock_command c;

	mp_write_map(writer, 4);
	mp_write_cstr(writer, "note");
	mp_write_array(writer, 2);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "x");
	mp_write_nil(writer);
	mp_write_bin(writer, "\x01\x02", 2);
	mp_write_cstr(writer, "delta");
	mp_write_cstr(writer, "not an int, but not ours either");
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 2);
	mp_write_cstr(writer, "reservation_id");
	mp_write_cstr(writer, "o1:p1");
	cr_assert_eq(
	        stock_command_decode(STOCK_CMD_RESERVE, mp_writer_data(writer), mp_writer_size(writer), &c),
	        ORN_OK);
	cr_assert_eq(c.kind, STOCK_RESERVE);
	cr_assert_eq(c.quantity, 2);
	cr_assert_str_eq(c.reservation_id, "o1:p1");
}

Test(stock, over_long_strings_and_embedded_nul_are_rejected)
{
	char id[STOCK_RESERVATION_ID_MAX + 1];
	char reason[STOCK_REASON_MAX];

	memset(id, 'i', sizeof id);
	write_single_key("reservation_id");
	mp_write_str(writer, id, STOCK_RESERVATION_ID_MAX);
	cr_assert_eq(decode_written_command(STOCK_CMD_RELEASE), ORN_EDECODE);
	write_single_key("reservation_id");
	mp_write_str(writer, id, STOCK_RESERVATION_ID_MAX - 1);
	cr_assert_eq(decode_written_command(STOCK_CMD_RELEASE), ORN_OK);
	write_single_key("reservation_id");
	mp_write_str(writer, "o1\0p1", 5);
	cr_assert_eq(decode_written_command(STOCK_CMD_RELEASE), ORN_EDECODE);
	memset(reason, 'r', sizeof reason);
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "delta");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "reason");
	mp_write_str(writer, reason, sizeof reason);
	cr_assert_eq(decode_written_command(STOCK_CMD_ADJUST), ORN_EDECODE);
}

/* Writes a reservation event payload with any quantity and id. */
static void write_reservation_payload(const char *id, int64_t quantity)
{
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "reservation_id");
	mp_write_cstr(writer, id);
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, quantity);
}

static void write_adjusted_payload(int64_t delta, int64_t on_hand, const char *reason)
{
	mp_writer_reset(writer);
	mp_write_map(writer, 3);
	mp_write_cstr(writer, "delta");
	mp_write_int(writer, delta);
	mp_write_cstr(writer, "on_hand");
	mp_write_int(writer, on_hand);
	mp_write_cstr(writer, "reason");
	mp_write_cstr(writer, reason);
}

Test(stock, events_decide_could_not_have_emitted_are_rejected)
{
	write_reservation_payload("o1:p1", 0);
	cr_assert_eq(decode_written_event(STOCK_EV_RESERVED), ORN_EDECODE);
	write_reservation_payload("o1:p1", STOCK_QUANTITY_MAX + 1);
	cr_assert_eq(decode_written_event(STOCK_EV_RELEASED), ORN_EDECODE);
	write_reservation_payload("", 1);
	cr_assert_eq(decode_written_event(STOCK_EV_COMMITTED), ORN_EDECODE);
	write_reservation_payload("o1\x01", 1);
	cr_assert_eq(decode_written_event(STOCK_EV_COMMITTED), ORN_EDECODE);
	write_single_key("quantity");
	mp_write_int(writer, -1);
	cr_assert_eq(decode_written_event(STOCK_EV_CREATED), ORN_EDECODE);
	write_adjusted_payload(0, 4, "count");
	cr_assert_eq(decode_written_event(STOCK_EV_ADJUSTED), ORN_EDECODE);
	write_adjusted_payload(1, -1, "count");
	cr_assert_eq(decode_written_event(STOCK_EV_ADJUSTED), ORN_EDECODE);
	write_adjusted_payload(1, 4, "");
	cr_assert_eq(decode_written_event(STOCK_EV_ADJUSTED), ORN_EDECODE);
	write_adjusted_payload(1, 4, "count");
	cr_assert_eq(decode_written_event(STOCK_EV_ADJUSTED), ORN_OK);
}

/* ---- snapshot and restore ---- */

static void given_a_busy_item(void)
{
	GIVEN(created(100), reserved("keep:1", 3), reserved("keep:2", 4), adjusted(10, 110, "delivery"));
	given_closed_reservations(STOCK_CLOSED_MEMORY + 5, false);
	GIVEN(reserved("sold:1", 2), committed("sold:1", 2));
}

Test(stock, restore_gives_back_the_replayed_state)
{
	stock_state restored;
	char forgotten[STOCK_RESERVATION_ID_MAX], kept[STOCK_RESERVATION_ID_MAX];
	const stock_event more[] = {reserved("late", 1), released("late", 1)};

	given_a_busy_item();
	stock_state_init(&restored);
	cr_assert_eq(stock_kind.snapshot(&state, writer), ORN_OK);
	cr_assert_eq(stock_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	assert_same_state(&state, &restored);
	cr_assert_eq(restored.on_hand, 108);
	cr_assert_eq(restored.reserved, 7);
	cr_assert_eq(restored.sold, 2);
	cr_assert_eq(stock_held(&restored, "keep:2"), 4);
	/* the ring keeps its order: the same id is forgotten next in both */
	for (size_t i = 0; i < 2; i++) {
		cr_assert_eq(stock_evolve(&state, &more[i]), ORN_OK);
		cr_assert_eq(stock_evolve(&restored, &more[i]), ORN_OK);
	}
	assert_same_state(&state, &restored);
	reservation_id_of(6, forgotten, sizeof forgotten);
	reservation_id_of(7, kept, sizeof kept);
	cr_assert_null(hmap_get(restored.closed_index, forgotten));
	cr_assert_not_null(hmap_get(restored.closed_index, kept));
	stock_state_dispose(&restored);
}

Test(stock, restore_of_an_empty_state_and_of_a_short_ring)
{
	stock_state restored;

	stock_state_init(&restored);
	cr_assert_eq(stock_kind.snapshot(&state, writer), ORN_OK);
	cr_assert_eq(stock_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	cr_assert(!restored.exists);
	assert_same_state(&state, &restored);
	GIVEN(created(9), reserved("a", 1), released("a", 1), reserved("b", 2));
	mp_writer_reset(writer);
	cr_assert_eq(stock_kind.snapshot(&state, writer), ORN_OK);
	cr_assert_eq(stock_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	assert_same_state(&state, &restored);
	cr_assert_eq(restored.closed_next, 1);
	stock_state_dispose(&restored);
}

/* Fields of a hand-written snapshot. */
typedef struct snapshot_spec {
	const char *held_id;
	int64_t held_quantity;
	int64_t reserved;
	const char *closed[3];
	const char *extra_key;
	bool schema_2; /* the layout before thresholds: no threshold, no low */
} snapshot_spec;

static void write_snapshot(const snapshot_spec *spec)
{
	uint32_t closed = 0;

	while (closed < 3 && spec->closed[closed] != NULL)
		closed++;
	mp_writer_reset(writer);
	mp_write_map(writer, (spec->extra_key != NULL ? 7 : 6) + (spec->schema_2 ? 0 : 2));
	mp_write_cstr(writer, "exists");
	mp_write_bool(writer, true);
	if (!spec->schema_2) {
		mp_write_cstr(writer, "threshold");
		mp_write_int(writer, 4);
		mp_write_cstr(writer, "low");
		mp_write_bool(writer, true);
	}
	mp_write_cstr(writer, "on_hand");
	mp_write_int(writer, 10);
	mp_write_cstr(writer, "reserved");
	mp_write_int(writer, spec->reserved);
	mp_write_cstr(writer, "sold");
	mp_write_int(writer, 0);
	mp_write_cstr(writer, "held");
	mp_write_map(writer, spec->held_id != NULL ? 1 : 0);
	if (spec->held_id != NULL) {
		mp_write_cstr(writer, spec->held_id);
		mp_write_int(writer, spec->held_quantity);
	}
	mp_write_cstr(writer, "closed");
	mp_write_array(writer, closed);
	for (uint32_t i = 0; i < closed; i++) {
		mp_write_array(writer, 2);
		mp_write_cstr(writer, spec->closed[i]);
		mp_write_bool(writer, i % 2 == 1);
	}
	if (spec->extra_key != NULL) {
		mp_write_cstr(writer, spec->extra_key);
		mp_write_int(writer, 1);
	}
}

static orn_rc restore_written(void)
{
	return stock_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer));
}

Test(stock, restore_accepts_a_well_formed_hand_written_snapshot)
{
	write_snapshot(&(snapshot_spec){"h", 2, 2, {"a", "b"}, "future_field", false});
	cr_assert_eq(restore_written(), ORN_OK);
	cr_assert_eq(stock_held(&state, "h"), 2);
	cr_assert_eq(state.closed_count, 2);
	cr_assert_eq(state.threshold, 4);
	cr_assert(state.low);
}

Test(stock, a_snapshot_of_the_layout_before_thresholds_is_rejected_not_misread)
{
	GIVEN(created(3));
	write_snapshot(&(snapshot_spec){"h", 2, 2, {"a", "b"}, NULL, true});
	cr_assert_eq(restore_written(), ORN_EDECODE);
	cr_assert_eq(state.on_hand, 3, "the state is left as it was");
	cr_assert_geq(stock_kind.snapshot_schema, 3, "the layout change bumped the schema");
}

Test(stock, restore_rejects_inconsistent_snapshots_and_keeps_the_state)
{
	const snapshot_spec bad[] = {
	        {"h", 2, 3, {NULL}, NULL, false},       /* reserved is not the sum held */
	        {"h", 0, 0, {NULL}, NULL, false},       /* held quantity 0 */
	        {"", 1, 1, {NULL}, NULL, false},        /* empty id */
	        {"h", 1, 1, {"a", "a"}, NULL, false},   /* closed id twice */
	        {"h", 1, 1, {"a\x02"}, NULL, false},    /* control character */
	        {"h", 1, 1, {NULL}, "reserved", false}, /* repeated key */
	};

	GIVEN(created(5), reserved("mine", 2));
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		write_snapshot(&bad[i]);
		cr_assert_eq(restore_written(), ORN_EDECODE, "case %zu", i);
		cr_assert_eq(stock_held(&state, "mine"), 2, "case %zu", i);
		cr_assert_eq(state.on_hand, 5, "case %zu", i);
	}
}

Test(stock, restore_rejects_malformed_bytes)
{
	size_t full;

	given_a_busy_item();
	cr_assert_eq(stock_kind.snapshot(&state, writer), ORN_OK);
	full = mp_writer_size(writer);
	for (size_t len = 0; len < full; len += 97)
		cr_assert_eq(stock_kind.restore(&state, mp_writer_data(writer), len), ORN_EDECODE,
		             "length %zu", len);
	mp_write_nil(writer);
	cr_assert_eq(stock_kind.restore(&state, mp_writer_data(writer), full + 1), ORN_EDECODE);
	write_single_key("exists");
	mp_write_int(writer, 1);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_array(writer, 0);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_nil(writer); /* a key that is not a string */
	mp_write_nil(writer);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_single_key("held");
	mp_write_array(writer, 0);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	cr_assert_eq(state.on_hand, 108);
}

Test(stock, restore_rejects_over_long_ids_and_an_oversized_ring)
{
	char id[STOCK_RESERVATION_ID_MAX + 1];

	memset(id, 'x', sizeof id);
	id[STOCK_RESERVATION_ID_MAX] = '\0';
	write_snapshot(&(snapshot_spec){id, 1, 1, {NULL}, NULL, false});
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(&(snapshot_spec){NULL, 0, 0, {id}, NULL, false});
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_single_key("closed");
	mp_write_array(writer, STOCK_CLOSED_MEMORY + 1);
	for (unsigned i = 0; i <= STOCK_CLOSED_MEMORY; i++)
		mp_write_cstr(writer, "x");
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_single_key("held");
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "h");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "h");
	mp_write_int(writer, 1);
	cr_assert_eq(restore_written(), ORN_EDECODE);
}

/* ---- the kind table through an act_decision ---- */

static act_decision *decision;

static void kind_setup(void)
{
	setup();
	decision = act_decision_create();
	cr_assert_not_null(decision);
}

static void kind_teardown(void)
{
	act_decision_destroy(decision);
	teardown();
}

TestSuite(stock_kind, .init = kind_setup, .fini = kind_teardown);

/* Decides a command envelope built from c through stock_kind. */
static orn_rc kind_decide(const stock_command *c)
{
	env_envelope cmd = {.schema = 1};

	mp_writer_reset(writer);
	cr_assert_eq(stock_command_encode(writer, c), ORN_OK);
	snprintf(cmd.type, sizeof cmd.type, "%s", stock_command_type(c->kind));
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	act_decision_clear(decision);
	return stock_kind.decide(&state, &cmd, decision);
}

/* Applies the decision's events through stock_kind.evolve. */
static void kind_apply(void)
{
	env_envelope event;

	for (size_t i = 0; i < act_decision_count(decision); i++) {
		cr_assert_eq(act_decision_event(decision, i, &event), ORN_OK);
		cr_assert_eq(stock_kind.evolve(&state, &event), ORN_OK);
	}
}

static void then_decision_rejected(const char *code, const char *detail)
{
	cr_assert_str_eq(act_decision_rejection(decision), code);
	cr_assert_eq(act_decision_count(decision), 0);
	if (detail != NULL)
		cr_assert_str_eq(act_decision_detail(decision), detail);
	else
		cr_assert_neq(act_decision_detail(decision)[0], '\0');
}

Test(stock_kind, describes_the_aggregate)
{
	cr_assert_str_eq(stock_kind.aggregate, "stock");
	cr_assert_eq(stock_kind.state_size, sizeof(stock_state));
	cr_assert_eq(stock_kind.snapshot_schema, STOCK_SNAPSHOT_SCHEMA);
}

Test(stock_kind, init_and_dispose_a_state_the_runtime_owns)
{
	stock_state *s = malloc(stock_kind.state_size);

	cr_assert_not_null(s);
	stock_kind.init(s);
	cr_assert(!s->exists);
	cr_assert_eq(
	        stock_evolve(s, &(stock_event){.kind = STOCK_RESERVED, .reservation_id = "a", .quantity = 1}),
	        ORN_OK);
	stock_kind.dispose(s);
	free(s);
}

Test(stock_kind, decide_emits_encoded_events_with_schema_1)
{
	env_envelope event;
	stock_event decoded;

	cr_assert_eq(kind_decide(&(stock_command){.kind = STOCK_CREATE, .quantity = 2}), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 1);
	cr_assert_eq(act_decision_event(decision, 0, &event), ORN_OK);
	cr_assert_str_eq(event.type, STOCK_EV_CREATED);
	cr_assert_eq(event.schema, 1);
	cr_assert_eq(stock_event_decode(event.type, event.payload, event.payload_len, &decoded), ORN_OK);
	cr_assert_eq(decoded.quantity, 2);
	kind_apply();
	cr_assert_eq(
	        kind_decide(&(stock_command){.kind = STOCK_RESERVE, .reservation_id = "o1", .quantity = 2}),
	        ORN_OK);
	kind_apply();
	cr_assert_eq(state.reserved, 2);
}

Test(stock_kind, an_idempotent_no_op_is_accepted_without_events)
{
	GIVEN(created(5));
	cr_assert_eq(kind_decide(&(stock_command){.kind = STOCK_RELEASE, .reservation_id = "o1"}), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 0);
}

Test(stock_kind, rejections_carry_the_code_and_a_detail)
{
	cr_assert_eq(kind_decide(&(stock_command){.kind = STOCK_COMMIT, .reservation_id = "o1"}), ORN_OK);
	then_decision_rejected("not_found", NULL);
	GIVEN(created(2), reserved("o1", 1), reserved("o2", 1), released("o2", 1));
	cr_assert_eq(kind_decide(&(stock_command){.kind = STOCK_CREATE, .quantity = 2}), ORN_OK);
	then_decision_rejected("exists", NULL);
	cr_assert_eq(
	        kind_decide(&(stock_command){.kind = STOCK_RESERVE, .reservation_id = "o3", .quantity = 3}),
	        ORN_OK);
	then_decision_rejected("out_of_stock", "requested 3, available 1");
	cr_assert_eq(
	        kind_decide(&(stock_command){.kind = STOCK_RESERVE, .reservation_id = "o1", .quantity = 2}),
	        ORN_OK);
	then_decision_rejected("reservation_mismatch", "reservation o1 holds 1, requested 2");
	cr_assert_eq(
	        kind_decide(&(stock_command){.kind = STOCK_RESERVE, .reservation_id = "o2", .quantity = 1}),
	        ORN_OK);
	then_decision_rejected("reservation_closed", "reservation o2 was released or committed");
	cr_assert_eq(kind_decide(&(stock_command){.kind = STOCK_COMMIT, .reservation_id = "o9"}), ORN_OK);
	then_decision_rejected("unknown_reservation", "reservation o9 is not held");
	cr_assert_eq(kind_decide(&(stock_command){.kind = STOCK_ADJUST, .delta = -2, .reason = "x"}), ORN_OK);
	then_decision_rejected("below_reserved", "on hand 2 -2 would fall below reserved 1");
	cr_assert_eq(kind_decide(&(stock_command){.kind = STOCK_ADJUST, .delta = 0, .reason = "x"}), ORN_OK);
	then_decision_rejected("invalid", NULL);
	cr_assert_eq(
	        kind_decide(&(stock_command){.kind = STOCK_RETURN, .reservation_id = "o1", .quantity = 1}),
	        ORN_OK);
	then_decision_rejected("not_committed", "reservation o1 is held, not yet committed");
	cr_assert_eq(
	        kind_decide(&(stock_command){.kind = STOCK_RETURN, .reservation_id = "o9", .quantity = 1}),
	        ORN_OK);
	then_decision_rejected("unknown_reservation", "reservation o9 is not known as committed");
}

Test(stock_kind, undecodable_commands_are_errors_not_rejections)
{
	env_envelope cmd = {
	        .type = STOCK_CMD_CREATE, .schema = 1, .payload = (const uint8_t *)"\xc0", .payload_len = 1};

	cr_assert_eq(stock_kind.decide(&state, &cmd, decision), ORN_EDECODE);
	snprintf(cmd.type, sizeof cmd.type, "SellEverything");
	cr_assert_eq(stock_kind.decide(&state, &cmd, decision), ORN_EINVAL);
	cr_assert_eq(kind_decide(&(stock_command){.kind = STOCK_CREATE, .quantity = 1}), ORN_OK);
	cmd = (env_envelope){.type = STOCK_CMD_CREATE, .schema = 2};
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	cr_assert_eq(stock_kind.decide(&state, &cmd, decision), ORN_EDECODE);
	cr_assert_null(act_decision_rejection(decision));
}

Test(stock_kind, evolve_rejects_undecodable_events)
{
	env_envelope event = {
	        .type = STOCK_EV_CREATED, .schema = 1, .payload = (const uint8_t *)"\x80", .payload_len = 1};

	cr_assert_eq(stock_kind.evolve(&state, &event), ORN_EDECODE);
	event.schema = 2;
	cr_assert_eq(stock_kind.evolve(&state, &event), ORN_EDECODE);
	event.schema = 1;
	snprintf(event.type, sizeof event.type, "StockStolen");
	cr_assert_eq(stock_kind.evolve(&state, &event), ORN_EINVAL);
	cr_assert(!state.exists);
}

Test(stock_kind, view_shows_the_counts)
{
	mp_reader r;
	uint32_t count, len;
	const char *key;
	int64_t value;
	bool exists = false;
	bool low = false;
	const char *keys[] = {"exists", "on_hand",   "reserved", "threshold",
	                      "low",    "available", "sold",     "held"};
	const int64_t expected[] = {0, 10, 3, 8, 0, 7, 2, 2};

	GIVEN(created(12), reserved("a", 1), reserved("b", 2), reserved("c", 2), committed("c", 2),
	      (stock_event){.kind = STOCK_THRESHOLD_SET, .threshold = 8},
	      (stock_event){.kind = STOCK_LOW_DETECTED, .threshold = 8});
	cr_assert_eq(stock_kind.view(&state, writer), ORN_OK);
	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_read_map(&r, &count), ORN_OK);
	cr_assert_eq(count, 8);
	for (uint32_t i = 0; i < count; i++) {
		cr_assert_eq(mp_read_str(&r, &key, &len), ORN_OK);
		cr_assert(mp_str_eq(key, len, keys[i]), "key %u", i);
		if (i == 0 || i == 4) {
			cr_assert_eq(mp_read_bool(&r, i == 0 ? &exists : &low), ORN_OK);
			continue;
		}
		cr_assert_eq(mp_read_int(&r, &value), ORN_OK);
		cr_assert_eq(value, expected[i], "%s", keys[i]);
	}
	cr_assert(exists);
	cr_assert(low);
	cr_assert_eq(mp_reader_remaining(&r), 0);
}

/* ---- low-stock thresholds ---- */

/* A created event as decide writes it: with levels and a threshold. */
static stock_event created_with(int64_t quantity, int64_t threshold)
{
	return (stock_event){.kind = STOCK_CREATED,
	                     .quantity = quantity,
	                     .has_levels = true,
	                     .on_hand = quantity,
	                     .threshold = threshold};
}

/* An expected event of kind with the levels after it. */
static stock_event with_levels(stock_event e, int64_t on_hand, int64_t reserved_units, int64_t threshold)
{
	e.has_levels = true;
	e.on_hand = on_hand;
	e.reserved = reserved_units;
	e.threshold = threshold;
	return e;
}

/* LowStockDetected (detected true) or LowStockCleared with its payload. */
static stock_event crossing(bool detected, int64_t threshold, int64_t on_hand, int64_t reserved_units)
{
	stock_event e = {.kind = detected ? STOCK_LOW_DETECTED : STOCK_LOW_CLEARED,
	                 .available = on_hand - reserved_units};

	return with_levels(e, on_hand, reserved_units, threshold);
}

static stock_command create_with(int64_t quantity, int64_t threshold)
{
	return (stock_command){.kind = STOCK_CREATE, .quantity = quantity, .threshold = threshold};
}

static stock_command set_threshold(int64_t threshold)
{
	return (stock_command){.kind = STOCK_SET_THRESHOLD, .threshold = threshold};
}

Test(stock, create_below_its_threshold_also_detects_low_stock)
{
	when(create_with(3, 5));
	THEN_EVENTS(created_with(3, 5), crossing(true, 5, 3, 0));
	and_applied();
	cr_assert_eq(state.threshold, 5);
	cr_assert(state.low);
}

Test(stock, create_at_its_threshold_or_with_none_is_not_low)
{
	when(create_with(5, 5));
	THEN_EVENTS(created_with(5, 5));
	stock_state_dispose(&state);
	stock_state_init(&state);
	when(create(0));
	THEN_EVENTS(created_with(0, 0));
}

Test(stock, create_rejects_a_threshold_out_of_range)
{
	when(create_with(3, -1));
	then_rejected(STOCK_REJ_INVALID);
	when(create_with(3, STOCK_QUANTITY_MAX + 1));
	then_rejected(STOCK_REJ_INVALID);
	when(create_with(3, STOCK_QUANTITY_MAX));
	THEN_EVENTS(created_with(3, STOCK_QUANTITY_MAX), crossing(true, STOCK_QUANTITY_MAX, 3, 0));
}

Test(stock, a_reserve_crossing_below_the_threshold_detects_low_stock_once)
{
	GIVEN(created_with(10, 5));
	when(reserve("a", 5));
	THEN_EVENTS(with_levels(reserved("a", 5), 10, 5, 5)); /* available 5: not below 5 */
	and_applied();
	when(reserve("b", 1));
	THEN_EVENTS(with_levels(reserved("b", 1), 10, 6, 5), crossing(true, 5, 10, 6));
	and_applied();
	when(reserve("c", 1));
	THEN_EVENTS(with_levels(reserved("c", 1), 10, 7, 5)); /* no second alert while low */
	and_applied();
	when(reserve("c", 1));
	then_nothing_happens(); /* a redelivered reserve: no event, no alert */
	cr_assert(state.low);
}

Test(stock, a_commit_while_low_changes_no_availability_and_emits_no_alert)
{
	GIVEN(created_with(10, 5), reserved("a", 6), crossing(true, 5, 10, 6));
	when(commit("a"));
	THEN_EVENTS(with_levels(committed("a", 6), 4, 0, 5));
	and_applied();
	cr_assert(state.low);
}

Test(stock, a_release_back_to_the_threshold_clears_and_re_arms)
{
	GIVEN(created_with(10, 5), reserved("a", 5), reserved("b", 1), crossing(true, 5, 10, 6),
	      reserved("c", 1));
	when(release("c"));
	THEN_EVENTS(with_levels(released("c", 1), 10, 6, 5)); /* still below */
	and_applied();
	when(release("b"));
	THEN_EVENTS(with_levels(released("b", 1), 10, 5, 5), crossing(false, 5, 10, 5));
	and_applied();
	cr_assert_not(state.low);
	when(release("b"));
	then_nothing_happens(); /* a redelivered release: no second clear */
	when(reserve("d", 1));
	THEN_EVENTS(with_levels(reserved("d", 1), 10, 6, 5), crossing(true, 5, 10, 6)); /* re-armed */
}

Test(stock, adjusting_down_detects_and_adjusting_up_clears)
{
	GIVEN(created_with(8, 5), reserved("a", 2));
	when(adjust(-2, "breakage"));
	THEN_EVENTS(with_levels(adjusted(-2, 6, "breakage"), 6, 2, 5), crossing(true, 5, 6, 2));
	and_applied();
	when(adjust(-1, "breakage"));
	THEN_EVENTS(with_levels(adjusted(-1, 5, "breakage"), 5, 2, 5));
	and_applied();
	when(adjust(2, "delivery"));
	THEN_EVENTS(with_levels(adjusted(2, 7, "delivery"), 7, 2, 5), crossing(false, 5, 7, 2));
	and_applied();
	cr_assert_not(state.low);
}

Test(stock, raising_the_threshold_above_available_detects_and_lowering_it_clears)
{
	stock_event set = {.kind = STOCK_THRESHOLD_SET};

	GIVEN(created(10), reserved("a", 3));
	when(set_threshold(7));
	THEN_EVENTS(with_levels(set, 10, 3, 7)); /* available 7 is not below 7 */
	and_applied();
	when(set_threshold(8));
	THEN_EVENTS(with_levels(set, 10, 3, 8), crossing(true, 8, 10, 3));
	and_applied();
	when(set_threshold(9));
	THEN_EVENTS(with_levels(set, 10, 3, 9)); /* still low: no second alert */
	and_applied();
	when(set_threshold(0));
	THEN_EVENTS(with_levels(set, 10, 3, 0), crossing(false, 0, 10, 3));
	and_applied();
	cr_assert_eq(state.threshold, 0);
	cr_assert_not(state.low);
}

Test(stock, setting_the_same_threshold_again_changes_nothing)
{
	GIVEN(created_with(10, 4));
	when(set_threshold(4));
	then_nothing_happens();
}

Test(stock, set_threshold_rejects_out_of_range_and_a_missing_item)
{
	when(set_threshold(3));
	then_rejected(STOCK_REJ_NOT_FOUND);
	GIVEN(created(1));
	when(set_threshold(-1));
	then_rejected(STOCK_REJ_INVALID);
	when(set_threshold(STOCK_QUANTITY_MAX + 1));
	then_rejected(STOCK_REJ_INVALID);
}

Test(stock, an_item_created_before_thresholds_is_never_low)
{
	GIVEN(created(0)); /* an old event: no levels, no threshold */
	cr_assert_eq(state.threshold, 0);
	when(adjust(1, "found"));
	THEN_EVENTS(with_levels(adjusted(1, 1, "found"), 1, 0, 0));
	and_applied();
	when(reserve("a", 1));
	THEN_EVENTS(with_levels(reserved("a", 1), 1, 1, 0));
}

Test(stock, replaying_a_history_with_alerts_gives_the_same_threshold_and_low)
{
	stock_command history[] = {create_with(6, 4), reserve("a", 3), reserve("b", 1),       release("a"),
	                           set_threshold(9),  commit("b"),     adjust(10, "delivery")};
	stock_event stored[16];
	size_t count = 0;
	stock_state replayed;

	for (size_t i = 0; i < sizeof history / sizeof history[0]; i++) {
		when(history[i]);
		cr_assert_eq(verdict, STOCK_OK, "command %zu", i);
		for (size_t j = 0; j < out.count; j++)
			stored[count++] = out.items[j];
		and_applied();
	}
	cr_assert_eq(count, 11, "7 events and 4 crossings");
	stock_state_init(&replayed);
	for (size_t i = 0; i < count; i++)
		cr_assert_eq(stock_evolve(&replayed, &stored[i]), ORN_OK);
	cr_assert_eq(replayed.threshold, 9);
	cr_assert_eq(replayed.low, state.low);
	cr_assert_not(replayed.low, "available 14 is not below 9");
	stock_state_dispose(&replayed);
}

Test(stock, low_stock_events_round_trip_with_every_key)
{
	stock_event events[] = {crossing(true, 5, 10, 6), crossing(false, 5, 10, 5),
	                        with_levels((stock_event){.kind = STOCK_THRESHOLD_SET}, 3, 1, 7),
	                        with_levels(reserved("o1", 2), 9, 2, 4), created_with(4, 9)};
	const char *keys[] = {"threshold", "available", "on_hand", "reserved"};

	for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
		assert_event_round_trip(&events[i]);
	mp_writer_reset(writer);
	cr_assert_eq(stock_event_encode(writer, &events[0]), ORN_OK);
	for (size_t i = 0; i < 4; i++) {
		mp_reader r;
		uint32_t count;
		bool found = false;
		mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
		cr_assert_eq(mp_read_map(&r, &count), ORN_OK);
		cr_assert_eq(count, 4, "exactly the four documented keys");
		for (uint32_t k = 0; k < count; k++) {
			const char *key;
			uint32_t len;
			int64_t value;
			cr_assert_eq(mp_read_str(&r, &key, &len), ORN_OK);
			cr_assert_eq(mp_read_int(&r, &value), ORN_OK, "int values");
			found |= mp_str_eq(key, len, keys[i]);
		}
		cr_assert(found, "key %s", keys[i]);
	}
	cr_assert_str_eq(stock_event_type(STOCK_LOW_DETECTED), "LowStockDetected");
	cr_assert_str_eq(stock_event_type(STOCK_LOW_CLEARED), "LowStockCleared");
	cr_assert_str_eq(stock_event_type(STOCK_THRESHOLD_SET), "LowStockThresholdSet");
	cr_assert_str_eq(stock_command_type(STOCK_SET_THRESHOLD), "SetLowStockThreshold");
}

Test(stock, threshold_commands_round_trip)
{
	assert_command_round_trip(&(stock_command){.kind = STOCK_CREATE, .quantity = 3, .threshold = 5});
	assert_command_round_trip(&(stock_command){.kind = STOCK_SET_THRESHOLD, .threshold = 0});
	assert_command_round_trip(&(stock_command){.kind = STOCK_SET_THRESHOLD, .threshold = 12});
}

Test(stock, payloads_written_before_thresholds_still_decode)
{
	stock_command c;
	stock_event e;

	mp_write_map(writer, 1); /* CreateStockItem {quantity} */
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 7);
	cr_assert_eq(
	        stock_command_decode(STOCK_CMD_CREATE, mp_writer_data(writer), mp_writer_size(writer), &c),
	        ORN_OK);
	cr_assert_eq(c.quantity, 7);
	cr_assert_eq(c.threshold, 0);
	cr_assert_eq(stock_event_decode(STOCK_EV_CREATED, mp_writer_data(writer), mp_writer_size(writer), &e),
	             ORN_OK);
	cr_assert_not(e.has_levels);
	cr_assert_eq(e.threshold, 0);
	mp_writer_reset(writer); /* StockReserved {reservation_id, quantity, on_hand}: levels incomplete */
	mp_write_map(writer, 3);
	mp_write_cstr(writer, "reservation_id");
	mp_write_cstr(writer, "o1");
	mp_write_cstr(writer, "quantity");
	mp_write_int(writer, 2);
	mp_write_cstr(writer, "on_hand");
	mp_write_int(writer, 9);
	cr_assert_eq(
	        stock_event_decode(STOCK_EV_RESERVED, mp_writer_data(writer), mp_writer_size(writer), &e),
	        ORN_OK);
	cr_assert_not(e.has_levels);
	cr_assert_eq(e.quantity, 2);
	mp_writer_reset(writer); /* an old event without levels encodes as it was */
	cr_assert_eq(stock_event_encode(writer, &(stock_event){.kind = STOCK_CREATED, .quantity = 1}),
	             ORN_OK);
	cr_assert_eq(mp_writer_size(writer), 1 + 9 + 1);
}

Test(stock, low_stock_payloads_missing_a_key_or_out_of_range_are_rejected)
{
	stock_event e;
	const char *keys[] = {"threshold", "available", "on_hand", "reserved"};

	for (size_t skip = 0; skip < 5; skip++) {
		mp_writer_reset(writer);
		mp_write_map(writer, skip < 4 ? 3 : 4);
		for (size_t i = 0; i < 4; i++) {
			if (i == skip)
				continue;
			mp_write_cstr(writer, keys[i]);
			mp_write_int(writer, skip == 4 && i == 0 ? -1 : 2);
		}
		cr_assert_eq(
		        stock_event_decode(STOCK_EV_LOW, mp_writer_data(writer), mp_writer_size(writer), &e),
		        ORN_EDECODE, "case %zu", skip);
	}
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "threshold");
	mp_write_int(writer, -1);
	cr_assert_eq(stock_command_decode(STOCK_CMD_THRESHOLD, mp_writer_data(writer), mp_writer_size(writer),
	                                  &(stock_command){0}),
	             ORN_OK, "decide judges the range");
}

Test(stock, threshold_and_low_survive_a_snapshot)
{
	stock_state restored;

	GIVEN(created_with(3, 5), crossing(true, 5, 3, 0));
	cr_assert_eq(stock_kind.snapshot(&state, writer), ORN_OK);
	stock_state_init(&restored);
	cr_assert_eq(stock_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	cr_assert_eq(restored.threshold, 5);
	cr_assert(restored.low);
	stock_state_dispose(&restored);
}

/* ---- allocation failures ---- */

/* Snapshot bytes of the fixture's state, taken with no allocation limit. */
static void snapshot_into(mp_writer *w)
{
	mp_writer_reset(w);
	cr_assert_eq(stock_kind.snapshot(&state, w), ORN_OK);
}

/* Applies e with the n-th allocation failing, n = 0, 1, ... until it goes
 * through; every failure must be ORN_ENOMEM and change nothing. Returns the
 * number of failures seen. */
static unsigned evolve_through_failures(stock_event e)
{
	mp_writer *before = mp_writer_create(), *after = mp_writer_create();
	unsigned failures = 0;
	orn_rc rc;

	snapshot_into(before);
	for (long n = 0;; n++) {
		failalloc_after(n);
		rc = stock_evolve(&state, &e);
		failalloc_off();
		if (rc == ORN_OK)
			break;
		cr_assert_eq(rc, ORN_ENOMEM);
		snapshot_into(after);
		cr_assert_eq(mp_writer_size(after), mp_writer_size(before));
		cr_assert_arr_eq(mp_writer_data(after), mp_writer_data(before), mp_writer_size(before));
		failures++;
	}
	mp_writer_destroy(before);
	mp_writer_destroy(after);
	return failures;
}

Test(stock, evolve_leaves_the_state_unchanged_when_memory_runs_out)
{
	char id[STOCK_RESERVATION_ID_MAX];

	if (!FAULT_INJECTION)
		cr_skip_test("allocation failure injection needs glibc without sanitizers");
	GIVEN(created(STOCK_CLOSED_MEMORY * 2));
	cr_assert_gt(evolve_through_failures(reserved("first", 2)), 0, "creates the held map");
	cr_assert_gt(evolve_through_failures(released("first", 2)), 0, "creates the ring");
	for (unsigned i = 0; i < STOCK_CLOSED_MEMORY + 3; i++) {
		reservation_id_of(i, id, sizeof id);
		evolve_through_failures(reserved(id, 1));
		evolve_through_failures(i % 2 ? committed(id, 1) : released(id, 1));
	}
	cr_assert_eq(state.closed_count, STOCK_CLOSED_MEMORY);
	cr_assert_eq(state.reserved, 0);
}

Test(stock, snapshot_and_restore_report_running_out_of_memory)
{
	stock_state restored;
	unsigned failures = 0;
	orn_rc rc;

	if (!FAULT_INJECTION)
		cr_skip_test("allocation failure injection needs glibc without sanitizers");
	given_a_busy_item();
	snapshot_into(writer);
	stock_state_init(&restored);
	for (long n = 0;; n++, failures++) {
		failalloc_after(n);
		rc = stock_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer));
		failalloc_off();
		if (rc == ORN_OK)
			break;
		cr_assert_eq(rc, ORN_ENOMEM, "allocation %ld", n);
		cr_assert(!restored.exists);
		cr_assert_null(restored.held);
	}
	cr_assert_gt(failures, 3);
	assert_same_state(&state, &restored);
	stock_state_dispose(&restored);
	mp_writer_reset(writer);
	failalloc_after(0);
	rc = stock_kind.snapshot(&state, writer);
	failalloc_off();
	cr_assert_eq(rc, ORN_ENOMEM);
}

Test(stock_kind, decide_reports_running_out_of_memory)
{
	stock_command adjustment = {.kind = STOCK_ADJUST, .delta = 1};
	env_envelope cmd = {.type = STOCK_CMD_ADJUST, .schema = 1};
	unsigned failures = 0;
	orn_rc rc;

	if (!FAULT_INJECTION)
		cr_skip_test("allocation failure injection needs glibc without sanitizers");
	GIVEN(created(5));
	memset(adjustment.reason, 'r',
	       sizeof adjustment.reason - 1); /* a payload that outgrows a new writer */
	cr_assert_eq(stock_command_encode(writer, &adjustment), ORN_OK);
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	for (long n = 0;; n++, failures++) {
		act_decision_clear(decision);
		failalloc_after(n);
		rc = stock_kind.decide(&state, &cmd, decision);
		failalloc_off();
		if (rc == ORN_OK)
			break;
		cr_assert_eq(rc, ORN_ENOMEM, "allocation %ld", n);
	}
	cr_assert_geq(failures, 3);
	cr_assert_eq(act_decision_count(decision), 1);
}

Test(stock_kind, decide_passes_on_a_full_decision)
{
	for (size_t i = 0; i < ENV_MAX_EVENTS; i++)
		cr_assert_eq(act_decision_emit(decision, "Filler", 1, (const uint8_t *)"\xc0", 1), ORN_OK);
	cr_assert_eq(stock_command_encode(writer, &(stock_command){.kind = STOCK_CREATE, .quantity = 1}),
	             ORN_OK);
	cr_assert_eq(stock_kind.decide(&state,
	                               &(env_envelope){.type = STOCK_CMD_CREATE,
	                                               .schema = 1,
	                                               .payload = mp_writer_data(writer),
	                                               .payload_len = mp_writer_size(writer)},
	                               decision),
	             ORN_ETOOBIG);
}

Test(stock, low_only_because_of_reservations_when_on_hand_alone_is_not_low)
{
	cr_expect(stock_low_only_reserved(40, 3, 5), "40 on hand, 37 reserved, threshold 5");
	cr_expect(stock_low_only_reserved(5, 4, 5), "on hand at the threshold is not low");
	cr_expect_not(stock_low_only_reserved(4, 3, 5), "on hand alone is below the threshold");
	cr_expect_not(stock_low_only_reserved(40, 5, 5), "not low at all");
	cr_expect_not(stock_low_only_reserved(40, 3, 0), "no threshold: never low");
}

/* ---- returns (ADR 028 §3) ---- */

static stock_command return_units(const char *id, int64_t quantity)
{
	return reservation_command(STOCK_RETURN, id, quantity);
}

static stock_event returned_event(const char *id, int64_t quantity, int64_t on_hand, int64_t reserved_units)
{
	stock_event e = reservation_event(STOCK_RETURNED, id, quantity);

	e.has_levels = true;
	e.on_hand = on_hand;
	e.reserved = reserved_units;
	return e;
}

Test(stock, return_of_a_committed_id_moves_sold_units_back_on_hand)
{
	GIVEN(created(10), reserved("o1", 3), committed("o1", 3), reserved("o2", 2));
	assert_counts(7, 2, 3);
	when(return_units("o1", 3));
	THEN_EVENTS(returned_event("o1", 3, 10, 2));
	and_applied();
	assert_counts(10, 2, 0);
	cr_assert_eq(stock_available(&state), 8);
	cr_assert_eq(state.closed_count, 1, "the returned id keeps its place in the ring");
}

Test(stock, a_second_return_is_an_accepted_no_op)
{
	GIVEN(created(10), reserved("o1", 3), committed("o1", 3));
	when(return_units("o1", 3));
	and_applied();
	when(return_units("o1", 3));
	then_nothing_happens();
	when(return_units("o1", 1));
	then_nothing_happens();
	assert_counts(10, 0, 0);
	/* and a replayed StockReturned changes nothing either */
	GIVEN(returned_event("o1", 3, 10, 0));
	assert_counts(10, 0, 0);
}

Test(stock, a_returned_id_is_neither_committed_nor_reserved_again)
{
	GIVEN(created(10), reserved("o1", 3), committed("o1", 3), returned_event("o1", 3, 10, 0));
	when(commit("o1"));
	then_nothing_happens();
	when(reserve("o1", 3));
	then_rejected(STOCK_REJ_CLOSED);
	when(release("o1"));
	then_nothing_happens();
}

Test(stock, return_of_a_reservation_never_committed_is_refused)
{
	GIVEN(created(10), reserved("held", 2), reserved("gone", 1), released("gone", 1));
	when(return_units("held", 2));
	then_rejected(STOCK_REJ_NOT_COMMITTED);
	when(return_units("gone", 1));
	then_rejected(STOCK_REJ_CLOSED);
	when(return_units("never", 1));
	then_rejected(STOCK_REJ_UNKNOWN_RESERVATION);
	assert_counts(10, 2, 0);
}

Test(stock, return_checks_its_fields)
{
	GIVEN(created(10), reserved("o1", 3), committed("o1", 3));
	when(return_units("o1", 0));
	then_rejected(STOCK_REJ_INVALID);
	when(return_units("o1", STOCK_QUANTITY_MAX + 1));
	then_rejected(STOCK_REJ_INVALID);
	when(return_units("", 1));
	then_rejected(STOCK_REJ_INVALID);
	when(return_units("o1", 4));
	then_rejected(STOCK_REJ_INVALID); /* more than was ever sold */
	GIVEN(adjusted(STOCK_QUANTITY_MAX - 7, STOCK_QUANTITY_MAX, "restock"));
	when(return_units("o1", 3));
	then_rejected(STOCK_REJ_INVALID); /* on hand would pass its maximum */
	stock_state_dispose(&state);
	stock_state_init(&state);
	when(return_units("o1", 1));
	then_rejected(STOCK_REJ_NOT_FOUND);
}

Test(stock, a_return_that_crosses_the_threshold_clears_low_stock)
{
	stock_event cleared = {.kind = STOCK_LOW_CLEARED,
	                       .has_levels = true,
	                       .on_hand = 5,
	                       .reserved = 0,
	                       .threshold = 3,
	                       .available = 5};
	stock_command threshold = {.kind = STOCK_SET_THRESHOLD, .threshold = 3};

	GIVEN(created(5), reserved("o1", 4), committed("o1", 4));
	when(threshold);
	and_applied();
	cr_assert(state.low);
	when(return_units("o1", 4));
	cr_assert_eq(verdict, STOCK_OK);
	cr_assert_eq(out.count, 2);
	cr_assert_eq(out.items[0].kind, STOCK_RETURNED);
	cr_assert_eq(out.items[0].threshold, 3);
	assert_event_eq(&out.items[1], &cleared);
	and_applied();
	cr_assert(!state.low);
}

Test(stock, a_return_the_ring_forgot_is_refused_never_applied_twice)
{
	char oldest[STOCK_RESERVATION_ID_MAX];

	GIVEN(created(STOCK_CLOSED_MEMORY + 10));
	given_closed_reservations(1, true);
	reservation_id_of(0, oldest, sizeof oldest);
	when(return_units(oldest, 1));
	and_applied();
	for (unsigned i = 0; i < STOCK_CLOSED_MEMORY; i++) {
		char id[STOCK_RESERVATION_ID_MAX];
		snprintf(id, sizeof id, "later-%u", i);
		GIVEN(reserved(id, 1), committed(id, 1));
	}
	cr_assert_eq(state.closed_count, STOCK_CLOSED_MEMORY);
	when(return_units(oldest, 1));
	then_rejected(STOCK_REJ_UNKNOWN_RESERVATION);
	cr_assert_eq(state.sold, STOCK_CLOSED_MEMORY, "the forgotten return was applied once");
}

Test(stock, returned_ids_survive_a_snapshot)
{
	GIVEN(created(10), reserved("o1", 3), committed("o1", 3), returned_event("o1", 3, 10, 0),
	      reserved("o2", 1), committed("o2", 1), reserved("o3", 1), released("o3", 1));
	mp_writer *w = mp_writer_create();
	cr_assert_eq(stock_kind.snapshot(&state, w), ORN_OK);
	stock_state copy;
	stock_kind.init(&copy);
	cr_assert_eq(stock_kind.restore(&copy, mp_writer_data(w), mp_writer_size(w)), ORN_OK);
	cr_assert_eq(copy.on_hand, 9);
	cr_assert_eq(copy.sold, 1);
	stock_events events;
	stock_command again = return_units("o1", 3), o2 = return_units("o2", 1), o3 = return_units("o3", 1);
	cr_assert_eq(stock_decide(&copy, &again, &events), STOCK_OK);
	cr_assert_eq(events.count, 0, "o1 stays returned");
	cr_assert_eq(stock_decide(&copy, &o2, &events), STOCK_OK);
	cr_assert_eq(events.count, 1, "o2 stays committed");
	cr_assert_eq(stock_decide(&copy, &o3, &events), STOCK_REJ_CLOSED);
	stock_kind.dispose(&copy);
	mp_writer_destroy(w);
}

Test(stock, a_snapshot_naming_a_returned_id_that_is_not_committed_is_rejected)
{
	mp_writer_reset(writer);
	mp_write_map(writer, 9);
	mp_write_cstr(writer, "exists");
	mp_write_bool(writer, true);
	mp_write_cstr(writer, "on_hand");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "reserved");
	mp_write_int(writer, 0);
	mp_write_cstr(writer, "sold");
	mp_write_int(writer, 0);
	mp_write_cstr(writer, "threshold");
	mp_write_int(writer, 0);
	mp_write_cstr(writer, "low");
	mp_write_bool(writer, false);
	mp_write_cstr(writer, "held");
	mp_write_map(writer, 0);
	mp_write_cstr(writer, "closed");
	mp_write_array(writer, 1);
	mp_write_array(writer, 2);
	mp_write_cstr(writer, "r");
	mp_write_bool(writer, false);
	mp_write_cstr(writer, "returned");
	mp_write_array(writer, 1);
	mp_write_cstr(writer, "r");
	cr_assert_eq(stock_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer)), ORN_EDECODE);
	cr_assert(!state.exists, "the state is left as it was");
}

/* A well-formed snapshot of one committed id "r", then "returned" written by fn. */
static void write_snapshot_returning(void (*fn)(void))
{
	mp_writer_reset(writer);
	mp_write_map(writer, 9);
	mp_write_cstr(writer, "exists");
	mp_write_bool(writer, true);
	mp_write_cstr(writer, "on_hand");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "reserved");
	mp_write_int(writer, 0);
	mp_write_cstr(writer, "sold");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "threshold");
	mp_write_int(writer, 0);
	mp_write_cstr(writer, "low");
	mp_write_bool(writer, false);
	mp_write_cstr(writer, "held");
	mp_write_map(writer, 0);
	mp_write_cstr(writer, "closed");
	mp_write_array(writer, 1);
	mp_write_array(writer, 2);
	mp_write_cstr(writer, "r");
	mp_write_bool(writer, true);
	mp_write_cstr(writer, "returned");
	fn();
}

static void returned_not_an_array(void)
{
	mp_write_int(writer, 1);
}

static void returned_not_strings(void)
{
	mp_write_array(writer, 1);
	mp_write_int(writer, 7);
}

static void returned_r(void)
{
	mp_write_array(writer, 1);
	mp_write_cstr(writer, "r");
}

Test(stock, the_returned_ids_of_a_snapshot_are_typed)
{
	write_snapshot_returning(returned_not_an_array);
	cr_assert_eq(stock_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer)), ORN_EDECODE);
	write_snapshot_returning(returned_not_strings);
	cr_assert_eq(stock_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer)), ORN_EDECODE);
	write_snapshot_returning(returned_r);
	cr_assert_eq(stock_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	when(return_units("r", 1));
	then_nothing_happens();
}

Test(stock, return_round_trips_and_names_are_stable)
{
	stock_command c = return_units("o1:p1", 2), dc;
	stock_event e = returned_event("o1:p1", 2, 7, 1), de;

	cr_assert_str_eq(stock_command_type(STOCK_RETURN), "ReturnStock");
	cr_assert_str_eq(stock_event_type(STOCK_RETURNED), "StockReturned");
	cr_assert_str_eq(stock_verdict_code(STOCK_REJ_NOT_COMMITTED), "not_committed");
	mp_writer_reset(writer);
	cr_assert_eq(stock_command_encode(writer, &c), ORN_OK);
	cr_assert_eq(stock_command_decode("ReturnStock", mp_writer_data(writer), mp_writer_size(writer), &dc),
	             ORN_OK);
	cr_assert_eq(dc.kind, STOCK_RETURN);
	cr_assert_str_eq(dc.reservation_id, "o1:p1");
	cr_assert_eq(dc.quantity, 2);
	mp_writer_reset(writer);
	cr_assert_eq(stock_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(stock_event_decode("StockReturned", mp_writer_data(writer), mp_writer_size(writer), &de),
	             ORN_OK);
	assert_event_eq(&de, &e);
}
