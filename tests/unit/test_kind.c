/* test_kind.c — actors/kind.c: type lookup over any shape table and the event
 * emission every kind adapter shares. */
#include <criterion/criterion.h>

#include <string.h>

#include "failalloc.h"
#include "kind.h"

/* A table whose entries are larger than a pointer: the stride matters. */
static const struct {
	const char *type;
	unsigned fields;
	char padding[40];
} table[] = {{"First", 1, ""}, {"Second", 2, ""}, {"Third", 4, ""}};

Test(kind, type_index_uses_the_first_member_and_the_stride)
{
	cr_assert_eq(KIND_TYPE_INDEX(table, "First"), 0);
	cr_assert_eq(KIND_TYPE_INDEX(table, "Third"), 2);
	cr_assert_eq(KIND_TYPE_INDEX(table, "Fourth"), -1);
	cr_assert_eq(KIND_TYPE_INDEX(table, "first"), -1, "names are case-sensitive");
	cr_assert_eq(KIND_TYPE_INDEX(table, NULL), -1);
}

/* Events are ints; each encodes as itself, a negative one fails. */
static orn_rc encode_int(mp_writer *w, const void *events, size_t i, const char **type)
{
	int value = ((const int *)events)[i];
	*type = value % 2 ? "Odd" : "Even";
	if (value < 0)
		return ORN_EINVAL;
	mp_write_int(w, value);
	return mp_writer_status(w);
}

Test(kind, emit_events_encodes_each_in_order)
{
	act_decision *d = act_decision_create();
	const int events[] = {4, 7, 10};
	env_envelope e;
	cr_assert_eq(kind_emit_events(d, 3, events, 3, encode_int), ORN_OK);
	cr_assert_eq(act_decision_count(d), 3);
	const char *types[] = {"Even", "Odd", "Even"};
	for (size_t i = 0; i < 3; i++) {
		int64_t value = 0;
		mp_reader r;
		cr_assert_eq(act_decision_event(d, i, &e), ORN_OK);
		cr_assert_str_eq(e.type, types[i]);
		cr_assert_eq(e.schema, 3);
		mp_reader_init(&r, e.payload, e.payload_len);
		cr_assert_eq(mp_read_int(&r, &value), ORN_OK);
		cr_assert_eq(value, events[i]);
	}
	act_decision_destroy(d);
}

Test(kind, emit_events_stops_at_the_first_error)
{
	act_decision *d = act_decision_create();
	const int events[] = {2, -1, 6};
	cr_assert_eq(kind_emit_events(d, 1, events, 3, encode_int), ORN_EINVAL);
	cr_assert_eq(act_decision_count(d), 1);
	cr_assert_eq(kind_emit_events(d, 1, events, 0, encode_int), ORN_OK, "nothing to emit");
	act_decision_destroy(d);
}

Test(kind, emit_events_reports_allocation_failure)
{
	if (!failalloc_available())
		cr_skip_test("allocation failure injection needs glibc without ASan");
	act_decision *d = act_decision_create();
	const int events[] = {1};
	failalloc_nth(1); /* the writer */
	cr_assert_eq(kind_emit_events(d, 1, events, 1, encode_int), ORN_ENOMEM);
	failalloc_off();
	cr_assert_eq(act_decision_count(d), 0);
	act_decision_destroy(d);
}
