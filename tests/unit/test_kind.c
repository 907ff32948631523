/* test_kind.c — actors/kind.c: type lookup over any shape table, the event
 * emission, decide, evolve and history restore every kind adapter shares, and
 * the KIND_ADAPTER binding of an aggregate's typed functions. */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- kind_decide, kind_evolve, kind_restore_history, KIND_ADAPTER ----
 *
 * A tally aggregate, named as actors/ names things so that KIND_ADAPTER binds
 * it: "Add" adds an amount to the total with one event "Added" (none for 0);
 * a negative amount is rejected. Payloads are one msgpack integer. */

#define TALLY_SCHEMA 3

typedef struct tally_state {
	int64_t total;
	size_t applied;
} tally_state;
typedef struct tally_command {
	int64_t amount;
} tally_command;
typedef struct tally_event {
	int kind; /* 0, Added: the only one */
	int64_t amount;
} tally_event;
typedef struct tally_events {
	tally_event items[2];
	size_t count;
} tally_events;
typedef enum { TALLY_OK = 0, TALLY_REJ_NEGATIVE } tally_verdict;
typedef int tally_command_kind;
typedef int tally_event_kind;

/* What KIND_NAMES defines (an aggregate's header declares them). */
const char *tally_verdict_code(tally_verdict v);
const char *tally_command_type(tally_command_kind kind);
const char *tally_event_type(tally_event_kind kind);

static const char *const verdict_codes[] = {"ok", "negative"};
static const struct {
	const char *type;
	int unused;
} command_shapes[] = {{"Add", 0}};
static const char *const event_types[] = {"Added"};

KIND_NAMES(tally, verdict_codes, command_shapes, event_types);

/* The amount of a payload of type expected; type "Broken" fails with ORN_EINVAL. */
static orn_rc decode_amount(const char *type, const char *expected, const uint8_t *payload, size_t len,
                            int64_t *amount)
{
	mp_reader r;

	if (strcmp(type, "Broken") == 0)
		return ORN_EINVAL;
	mp_reader_init(&r, payload, len);
	if (strcmp(type, expected) != 0 || mp_read_int(&r, amount) != ORN_OK || mp_reader_remaining(&r) != 0)
		return ORN_EDECODE;
	return ORN_OK;
}

static orn_rc tally_command_decode(const char *type, const uint8_t *payload, size_t len, tally_command *out)
{
	return decode_amount(type, "Add", payload, len, &out->amount);
}

static tally_verdict tally_decide(const tally_state *s, const tally_command *c, tally_events *out)
{
	(void)s;
	out->count = 0;
	if (c->amount < 0)
		return TALLY_REJ_NEGATIVE;
	if (c->amount > 0)
		out->items[out->count++] = (tally_event){.amount = c->amount};
	return TALLY_OK;
}

static orn_rc tally_event_encode(mp_writer *w, const tally_event *e)
{
	mp_write_int(w, e->amount);
	return mp_writer_status(w);
}

static orn_rc tally_event_decode(const char *type, const uint8_t *payload, size_t len, tally_event *out)
{
	out->kind = 0;
	return decode_amount(type, "Added", payload, len, &out->amount);
}

/* kind_codec.evolve: an amount of 1000 or more fails with ORN_ETOOBIG (as an
 * allocation may fail in a real evolve) and changes nothing. */
static orn_rc tally_apply(void *state, const void *event)
{
	tally_state *s = state;
	const tally_event *e = event;

	if (e->amount >= 1000)
		return ORN_ETOOBIG;
	s->total += e->amount;
	s->applied++;
	return ORN_OK;
}

/* kind_restore_history's apply: an amount of 13 is no transition. */
static bool tally_restore_apply(void *state, const void *event)
{
	return ((const tally_event *)event)->amount != 13 && tally_apply(state, event) == ORN_OK;
}

/* What KIND_ADAPTER's tally_kind_reset and tally_kind_apply and
 * KIND_RESTORE_TRANSITIONS call: a fresh tally is all zeros; an amount of 13 is
 * no transition. */
static void tally_state_init(tally_state *s)
{
	*s = (tally_state){0};
}

static bool tally_evolve(tally_state *s, const tally_event *e)
{
	if (e->amount == 13)
		return false;
	s->total += e->amount;
	s->applied++;
	return true;
}

static void tally_describe(int verdict, const void *state, const void *command, char *detail, size_t cap)
{
	const tally_state *s = state;
	const tally_command *c = command;

	snprintf(detail, cap, "verdict %d: adding %" PRId64 " to %" PRId64, verdict, c->amount, s->total);
}

KIND_ADAPTER(tally, TALLY_SCHEMA, tally_describe, tally_apply);
KIND_RESTORE_TRANSITIONS(tally);

static act_decision *decision;
static mp_writer *payload;
static tally_state tally;

static void tally_setup(void)
{
	decision = act_decision_create();
	payload = mp_writer_create();
	tally = (tally_state){.total = 10};
	cr_assert_not_null(decision);
	cr_assert_not_null(payload);
}

static void tally_teardown(void)
{
	act_decision_destroy(decision);
	mp_writer_destroy(payload);
}

/* An envelope of type and schema whose payload is the integer value. */
static env_envelope envelope(const char *type, uint32_t schema, int64_t value)
{
	env_envelope e = {.schema = schema};

	snprintf(e.type, sizeof e.type, "%s", type);
	mp_writer_reset(payload);
	mp_write_int(payload, value);
	e.payload = mp_writer_data(payload);
	e.payload_len = mp_writer_size(payload);
	return e;
}

/* The command adding amount. */
static env_envelope command(int64_t amount)
{
	return envelope("Add", TALLY_SCHEMA, amount);
}

Test(kind_adapter, decide_emits_the_decided_events_with_the_schema, .init = tally_setup,
     .fini = tally_teardown)
{
	env_envelope cmd = command(7), e;
	int64_t value = 0;
	mp_reader r;

	cr_assert_eq(tally_kind_decide(&tally, &cmd, decision), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 1);
	cr_assert_eq(act_decision_event(decision, 0, &e), ORN_OK);
	cr_assert_str_eq(e.type, "Added");
	cr_assert_eq(e.schema, TALLY_SCHEMA);
	mp_reader_init(&r, e.payload, e.payload_len);
	cr_assert_eq(mp_read_int(&r, &value), ORN_OK);
	cr_assert_eq(value, 7);

	act_decision_clear(decision);
	cmd = command(0);
	cr_assert_eq(kind_decide(&tally_codec, &tally, &cmd, decision), ORN_OK, "accepted, nothing to emit");
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 0);
}

Test(kind_adapter, decide_rejects_with_the_code_and_the_description, .init = tally_setup,
     .fini = tally_teardown)
{
	env_envelope cmd = command(-2);
	kind_codec quiet = tally_codec;

	cr_assert_eq(tally_kind_decide(&tally, &cmd, decision), ORN_OK, "a rejection is no error");
	cr_assert_str_eq(act_decision_rejection(decision), "negative");
	cr_assert_str_eq(act_decision_detail(decision), "verdict 1: adding -2 to 10");
	cr_assert_eq(act_decision_count(decision), 0);

	act_decision_clear(decision);
	quiet.describe = NULL;
	cr_assert_eq(kind_decide(&quiet, &tally, &cmd, decision), ORN_OK);
	cr_assert_str_eq(act_decision_rejection(decision), "negative");
	cr_assert_str_eq(act_decision_detail(decision), "", "no describe, no detail");
}

Test(kind_adapter, decide_refuses_another_schema_and_undecodable_commands, .init = tally_setup,
     .fini = tally_teardown)
{
	env_envelope cmd = envelope("Add", TALLY_SCHEMA + 1, 1);

	cr_assert_eq(tally_kind_decide(&tally, &cmd, decision), ORN_EDECODE, "another schema");
	cmd = envelope("Take", TALLY_SCHEMA, 1);
	cr_assert_eq(tally_kind_decide(&tally, &cmd, decision), ORN_EDECODE, "an unknown type");
	cmd = envelope("Broken", TALLY_SCHEMA, 1);
	cr_assert_eq(tally_kind_decide(&tally, &cmd, decision), ORN_EINVAL, "the decoder's error");
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 0);
}

Test(kind_adapter, decide_passes_on_what_emitting_returned, .init = tally_setup, .fini = tally_teardown)
{
	env_envelope cmd = command(3);

	for (size_t i = 0; i < ENV_MAX_EVENTS; i++)
		cr_assert_eq(act_decision_emit(decision, "Filler", 1, (const uint8_t *)"\xc0", 1), ORN_OK);
	cr_assert_eq(tally_kind_decide(&tally, &cmd, decision), ORN_ETOOBIG);
}

Test(kind_adapter, decide_reports_running_out_of_memory, .init = tally_setup, .fini = tally_teardown)
{
	env_envelope cmd = command(-2);

	if (!failalloc_available())
		cr_skip_test("allocation failure injection needs glibc without ASan");
	for (long nth = 1; nth <= 2; nth++) { /* the command, the events */
		failalloc_nth(nth);
		cr_assert_eq(tally_kind_decide(&tally, &cmd, decision), ORN_ENOMEM, "allocation %ld", nth);
		failalloc_off();
		cr_assert_null(act_decision_rejection(decision));
	}
	cr_assert_eq(tally_kind_decide(&tally, &cmd, decision), ORN_OK);
	cr_assert_str_eq(act_decision_rejection(decision), "negative");
}

Test(kind_adapter, evolve_applies_a_decoded_event, .init = tally_setup, .fini = tally_teardown)
{
	env_envelope e = envelope("Added", TALLY_SCHEMA, 5);

	cr_assert_eq(tally_kind_evolve(&tally, &e), ORN_OK);
	cr_assert_eq(tally.total, 15);
	e = envelope("Added", TALLY_SCHEMA, 1000);
	cr_assert_eq(kind_evolve(&tally_codec, &tally, &e), ORN_ETOOBIG, "what evolve returned");
	cr_assert_eq(tally.total, 15);
	cr_assert_eq(tally.applied, 1);
}

Test(kind_adapter, evolve_refuses_another_schema_and_undecodable_events, .init = tally_setup,
     .fini = tally_teardown)
{
	env_envelope e = envelope("Added", TALLY_SCHEMA - 1, 5);

	cr_assert_eq(tally_kind_evolve(&tally, &e), ORN_EDECODE, "another schema");
	e = envelope("Removed", TALLY_SCHEMA, 5);
	cr_assert_eq(tally_kind_evolve(&tally, &e), ORN_EDECODE, "an unknown type");
	e = envelope("Broken", TALLY_SCHEMA, 5);
	cr_assert_eq(tally_kind_evolve(&tally, &e), ORN_EINVAL, "the decoder's error");
	cr_assert_eq(tally.applied, 0);
}

Test(kind_adapter, evolve_reports_running_out_of_memory, .init = tally_setup, .fini = tally_teardown)
{
	env_envelope e = envelope("Added", TALLY_SCHEMA, 5);

	if (!failalloc_available())
		cr_skip_test("allocation failure injection needs glibc without ASan");
	failalloc_nth(1); /* the event */
	cr_assert_eq(tally_kind_evolve(&tally, &e), ORN_ENOMEM);
	failalloc_off();
	cr_assert_eq(tally.applied, 0);
}

/* Writes a history snapshot of the amounts (count of them) into payload. */
static void write_history(const int64_t *amounts, size_t count)
{
	mp_writer_reset(payload);
	mp_write_array(payload, (uint32_t)count);
	for (size_t i = 0; i < count; i++) {
		mp_write_array(payload, 2);
		mp_write_cstr(payload, "Added");
		mp_write_int(payload, amounts[i]);
	}
	cr_assert_eq(mp_writer_status(payload), ORN_OK);
}

static orn_rc restore_payload(void)
{
	return kind_restore_history(&tally_codec, sizeof tally, tally_restore_apply, &tally,
	                            mp_writer_data(payload), mp_writer_size(payload));
}

Test(kind_adapter, restore_history_replays_onto_a_fresh_state, .init = tally_setup, .fini = tally_teardown)
{
	write_history((const int64_t[]){4, 6, 1}, 3);
	cr_assert_eq(restore_payload(), ORN_OK);
	cr_assert_eq(tally.total, 11, "the total of 10 before is replaced");
	cr_assert_eq(tally.applied, 3);
	write_history(NULL, 0);
	cr_assert_eq(restore_payload(), ORN_OK);
	cr_assert_eq(tally.total, 0);
	cr_assert_eq(tally.applied, 0);
}

Test(kind_adapter, restore_history_refuses_a_bad_history_and_keeps_the_state, .init = tally_setup,
     .fini = tally_teardown)
{
	write_history((const int64_t[]){4, 13}, 2);
	cr_assert_eq(restore_payload(), ORN_EDECODE, "no transition");
	write_history((const int64_t[]){4, 1000}, 2);
	cr_assert_eq(restore_payload(), ORN_EDECODE, "not applied");
	mp_writer_reset(payload);
	mp_write_map(payload, 0);
	cr_assert_eq(restore_payload(), ORN_EDECODE, "not an array");
	mp_writer_reset(payload);
	mp_write_array(payload, 1);
	mp_write_array(payload, 3);
	cr_assert_eq(restore_payload(), ORN_EDECODE, "not a pair");
	mp_writer_reset(payload);
	mp_write_array(payload, 1);
	mp_write_array(payload, 2);
	mp_write_cstr(payload, "AddedAddedAddedAddedAddedAddedAdded"); /* longer than any type */
	mp_write_int(payload, 1);
	cr_assert_eq(restore_payload(), ORN_EDECODE, "a type too long");
	mp_writer_reset(payload);
	mp_write_array(payload, 1);
	mp_write_array(payload, 2);
	mp_write_cstr(payload, "Added");
	cr_assert_eq(restore_payload(), ORN_EDECODE, "no payload");
	mp_writer_reset(payload);
	mp_write_array(payload, 1);
	mp_write_array(payload, 2);
	mp_write_cstr(payload, "Broken");
	mp_write_int(payload, 1);
	cr_assert_eq(restore_payload(), ORN_EDECODE, "an undecodable event");
	write_history((const int64_t[]){4}, 1);
	mp_write_int(payload, 0);
	cr_assert_eq(restore_payload(), ORN_EDECODE, "trailing bytes");
	cr_assert_eq(tally.total, 10);
	cr_assert_eq(tally.applied, 0);
}

Test(kind_adapter, restore_history_reports_running_out_of_memory, .init = tally_setup, .fini = tally_teardown)
{
	if (!failalloc_available())
		cr_skip_test("allocation failure injection needs glibc without ASan");
	write_history((const int64_t[]){4}, 1);
	for (long nth = 1; nth <= 2; nth++) { /* the fresh state, the event */
		failalloc_nth(nth);
		cr_assert_eq(restore_payload(), ORN_ENOMEM, "allocation %ld", nth);
		failalloc_off();
		cr_assert_eq(tally.total, 10);
	}
	cr_assert_eq(restore_payload(), ORN_OK);
	cr_assert_eq(tally.total, 4);
}

Test(kind_adapter, names_come_from_the_tables_and_say_when_out_of_range)
{
	cr_assert_str_eq(tally_verdict_code(TALLY_OK), "ok");
	cr_assert_str_eq(tally_verdict_code(TALLY_REJ_NEGATIVE), "negative");
	cr_assert_str_eq(tally_verdict_code((tally_verdict)2), "unknown");
	cr_assert_str_eq(tally_verdict_code((tally_verdict)-1), "unknown");
	cr_assert_str_eq(tally_command_type(0), "Add", "the first member of a struct entry");
	cr_assert_null(tally_command_type(1));
	cr_assert_str_eq(tally_event_type(0), "Added", "a plain array of names");
	cr_assert_null(tally_event_type(-1));
}

Test(kind_adapter, reset_and_apply_serve_an_evolve_that_cannot_fail, .init = tally_setup,
     .fini = tally_teardown)
{
	tally_event e = {.amount = 5};

	cr_assert_eq(tally_kind_apply(&tally, &e), ORN_OK);
	cr_assert_eq(tally.total, 15);
	e.amount = 13;
	cr_assert_eq(tally_kind_apply(&tally, &e), ORN_OK, "no transition is no error");
	cr_assert_eq(tally.total, 15);
	tally_kind_reset(&tally);
	cr_assert_eq(tally.total, 0);
	cr_assert_eq(tally.applied, 0);
}

Test(kind_adapter, restore_transitions_refuses_an_event_that_is_none, .init = tally_setup,
     .fini = tally_teardown)
{
	write_history((const int64_t[]){4, 6}, 2);
	cr_assert_eq(tally_restore(&tally, mp_writer_data(payload), mp_writer_size(payload)), ORN_OK);
	cr_assert_eq(tally.total, 10);
	cr_assert_eq(tally.applied, 2);
	write_history((const int64_t[]){4, 13}, 2);
	cr_assert_eq(tally_restore(&tally, mp_writer_data(payload), mp_writer_size(payload)), ORN_EDECODE);
	cr_assert_eq(tally.applied, 2, "the state as it was");
}

/* ---- kind_restore_map: a snapshot map {"total": n, "applied": n} of a tally
 * whose state owns a heap counter, so that dispose is seen ---- */

static int owned_live; /* owned tallies set up and not yet disposed of */

typedef struct owned {
	int64_t total, applied;
	int *token; /* heap memory the state owns */
} owned;

static void owned_init(void *state)
{
	owned *o = state;

	*o = (owned){.token = malloc(sizeof(int))};
	owned_live++;
}

static void owned_dispose(void *state)
{
	owned *o = state;

	free(o->token);
	o->token = NULL;
	owned_live--;
}

/* kind_fields.own_read of "fail": as an allocation that fails. */
static orn_rc fail_read(mp_reader *r, const kind_field *f, void *data)
{
	(void)r;
	(void)f;
	(void)data;
	return ORN_ENOMEM;
}

static const kind_field owned_table[] = {
        {"total", 1u, KIND_INT, offsetof(owned, total), 0, NULL},
        {"applied", 2u, KIND_INT, offsetof(owned, applied), 0, NULL},
        {"fail", 4u, KIND_OWN, 0, 0, NULL},
};

static const kind_fields owned_fields = {KIND_FIELDS_OF(owned_table), .own_read = fail_read};

/* "total" is bit 1, "applied" bit 2; "fail" fails with ORN_ENOMEM; a repeated
 * key is refused; others are skipped (the kind_fields codec). */
static orn_rc owned_entry(mp_reader *r, void *state, unsigned *seen)
{
	return kind_fields_read_entry(r, &owned_fields, 7u, seen, state);
}

/* Whole: both keys, and no more applied than the total. */
static bool owned_whole(const void *state, unsigned seen)
{
	const owned *o = state;

	return seen == 3u && o->applied <= o->total;
}

/* Writes a map of count entries, keys[i] to values[i], into w (reset first). */
static void write_map(mp_writer *w, const char *const *keys, const int64_t *values, uint32_t count)
{
	mp_writer_reset(w);
	mp_write_map(w, count);
	for (uint32_t i = 0; i < count; i++) {
		mp_write_cstr(w, keys[i]);
		mp_write_int(w, values[i]);
	}
}

static orn_rc restore_owned(owned *o, const char *const *keys, const int64_t *values, uint32_t count)
{
	write_map(payload, keys, values, count);
	return kind_restore_map(sizeof *o, owned_init, owned_dispose, owned_entry, owned_whole, o,
	                        mp_writer_data(payload), mp_writer_size(payload));
}

Test(kind_restore_map, moves_a_whole_state_in_and_disposes_of_the_old, .init = tally_setup,
     .fini = tally_teardown)
{
	owned o;
	int *before;

	owned_init(&o);
	before = o.token;
	cr_assert_eq(restore_owned(&o, (const char *const[]){"applied", "other", "total"},
	                           (const int64_t[]){2, 99, 7}, 3),
	             ORN_OK);
	cr_assert_eq(o.total, 7);
	cr_assert_eq(o.applied, 2);
	cr_assert_not_null(o.token);
	cr_assert_neq(o.token, before, "the fresh state's memory, the old one's released");
	cr_assert_eq(owned_live, 1);
	owned_dispose(&o);
	cr_assert_eq(owned_live, 0);
}

Test(kind_restore_map, refuses_what_is_not_whole_and_keeps_the_state, .init = tally_setup,
     .fini = tally_teardown)
{
	owned o;
	int *before;

	owned_init(&o);
	o.total = 5;
	before = o.token;
	cr_assert_eq(restore_owned(&o, (const char *const[]){"total"}, (const int64_t[]){7}, 1), ORN_EDECODE,
	             "a key missing");
	cr_assert_eq(restore_owned(&o, (const char *const[]){"total", "applied"}, (const int64_t[]){1, 2}, 2),
	             ORN_EDECODE, "not consistent");
	cr_assert_eq(restore_owned(&o, (const char *const[]){"total", "total"}, (const int64_t[]){1, 2}, 2),
	             ORN_EDECODE, "a key twice");
	cr_assert_eq(restore_owned(&o, (const char *const[]){"total", "fail"}, (const int64_t[]){1, 2}, 2),
	             ORN_ENOMEM, "an entry out of memory");
	mp_writer_reset(payload);
	mp_write_array(payload, 0);
	cr_assert_eq(kind_restore_map(sizeof o, owned_init, owned_dispose, owned_entry, owned_whole, &o,
	                              mp_writer_data(payload), mp_writer_size(payload)),
	             ORN_EDECODE, "not a map");
	mp_writer_reset(payload);
	mp_write_map(payload, 2);
	mp_write_cstr(payload, "total");
	mp_write_int(payload, 3);
	mp_write_cstr(payload, "applied");
	mp_write_int(payload, 1);
	mp_write_int(payload, 0);
	cr_assert_eq(kind_restore_map(sizeof o, owned_init, owned_dispose, owned_entry, owned_whole, &o,
	                              mp_writer_data(payload), mp_writer_size(payload)),
	             ORN_EDECODE, "trailing bytes");
	cr_assert_eq(o.total, 5);
	cr_assert_eq(o.token, before);
	cr_assert_eq(owned_live, 1, "every fresh state disposed of");
	owned_dispose(&o);
}

Test(kind_restore_map, reports_running_out_of_memory, .init = tally_setup, .fini = tally_teardown)
{
	owned o = {.total = 5};

	if (!failalloc_available())
		cr_skip_test("allocation failure injection needs glibc without ASan");
	cr_assert_eq(restore_owned(&o, (const char *const[]){"total", "applied"}, (const int64_t[]){3, 1}, 2),
	             ORN_OK, "the payload written, and restorable");
	owned_dispose(&o);
	o.total = 5;
	failalloc_nth(1); /* the fresh state */
	cr_assert_eq(kind_restore_map(sizeof o, owned_init, owned_dispose, owned_entry, owned_whole, &o,
	                              mp_writer_data(payload), mp_writer_size(payload)),
	             ORN_ENOMEM);
	failalloc_off();
	cr_assert_eq(o.total, 5);
}

/* kind_decode_map: a map of two integer fields, "a" and "b". */
typedef struct pair {
	int64_t a, b;
} pair;

/* The entry of a pair: "a" and "b" if in fields, once each; "fail" fails with
 * ORN_ENOMEM; any other key is skipped. */
static orn_rc pair_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out)
{
	pair *p = out;
	const char *key;
	uint32_t len;
	unsigned field = 0;
	orn_rc rc;

	if ((rc = mp_read_str(r, &key, &len)) != ORN_OK)
		return rc;
	if (mp_str_eq(key, len, "fail"))
		return ORN_ENOMEM;
	if (mp_str_eq(key, len, "a"))
		field = 1u & fields;
	else if (mp_str_eq(key, len, "b"))
		field = 2u & fields;
	if ((*seen & field) != 0)
		return ORN_EDECODE;
	*seen |= field;
	if (field == 0)
		return mp_skip(r);
	return mp_read_int(r, field == 1u ? &p->a : &p->b);
}

static orn_rc decode_pair(mp_writer *w, unsigned fields, pair *out)
{
	return kind_decode_map(mp_writer_data(w), mp_writer_size(w), fields, pair_entry, out, sizeof *out);
}

Test(kind_decode_map, zeroes_out_and_reads_every_field)
{
	mp_writer *w = mp_writer_create();
	pair p = {.a = 7, .b = 9};

	cr_assert_not_null(w);
	write_map(w, (const char *const[]){"b", "other", "a"}, (const int64_t[]){2, 5, 1}, 3);
	cr_assert_eq(decode_pair(w, 3u, &p), ORN_OK, "an unknown key is the entry's to skip");
	cr_assert_eq(p.a, 1);
	cr_assert_eq(p.b, 2);
	write_map(w, (const char *const[]){"a"}, (const int64_t[]){4}, 1);
	cr_assert_eq(decode_pair(w, 1u, &p), ORN_OK);
	cr_assert_eq(p.a, 4);
	cr_assert_eq(p.b, 0, "out is zeroed first");
	mp_writer_destroy(w);
}

Test(kind_decode_map, refuses_a_missing_or_repeated_field)
{
	mp_writer *w = mp_writer_create();
	pair p;

	cr_assert_not_null(w);
	write_map(w, (const char *const[]){"a"}, (const int64_t[]){1}, 1);
	cr_assert_eq(decode_pair(w, 3u, &p), ORN_EDECODE, "b is missing");
	write_map(w, (const char *const[]){"a", "b", "a"}, (const int64_t[]){1, 2, 3}, 3);
	cr_assert_eq(decode_pair(w, 3u, &p), ORN_EDECODE, "a is repeated");
	mp_writer_destroy(w);
}

Test(kind_decode_map, refuses_trailing_bytes_and_a_non_map)
{
	mp_writer *w = mp_writer_create();
	pair p;

	cr_assert_not_null(w);
	write_map(w, (const char *const[]){"a"}, (const int64_t[]){1}, 1);
	mp_write_int(w, 0);
	cr_assert_eq(decode_pair(w, 1u, &p), ORN_EDECODE, "trailing bytes");
	mp_writer_reset(w);
	mp_write_array(w, 0);
	cr_assert_eq(decode_pair(w, 0u, &p), ORN_EDECODE, "an array");
	cr_assert_eq(kind_decode_map(NULL, 0, 0u, pair_entry, &p, sizeof p), ORN_EDECODE, "no bytes");
	mp_writer_destroy(w);
}

Test(kind_decode_map, maps_an_entry_error_to_a_decode_error)
{
	mp_writer *w = mp_writer_create();
	pair p;

	cr_assert_not_null(w);
	write_map(w, (const char *const[]){"a", "fail"}, (const int64_t[]){1, 0}, 2);
	cr_assert_eq(decode_pair(w, 1u, &p), ORN_EDECODE, "ORN_ENOMEM from the entry");
	mp_writer_reset(w);
	mp_write_map(w, 1);
	mp_write_int(w, 1); /* a key that is no string */
	mp_write_int(w, 1);
	cr_assert_eq(decode_pair(w, 1u, &p), ORN_EDECODE);
	mp_writer_destroy(w);
}

/* ---- kind_fields: a record of a text, an integer, a bool and an own value
 * (a count written as an array of that many nils) ---- */

typedef struct record {
	char name[8];
	int64_t amount;
	bool flag;
	uint32_t nils;
} record;

enum { R_NAME = 1, R_AMOUNT = 2, R_FLAG = 4, R_NILS = 8, R_ALL = 15 };

static const kind_field record_table[] = {
        {"name", R_NAME, KIND_TEXT, offsetof(record, name), 8, "a name"},
        {"amount", R_AMOUNT, KIND_INT, offsetof(record, amount), 0, NULL},
        {"flag", R_FLAG, KIND_BOOL, offsetof(record, flag), 0, NULL},
        {"nils", R_NILS, KIND_OWN, offsetof(record, nils), 0, NULL},
};

static bool nils_fit(const kind_field *f, const void *data)
{
	(void)f;
	return ((const record *)data)->nils <= 3;
}

static void nils_write(mp_writer *w, const kind_field *f, const void *data)
{
	const record *rec = data;

	(void)f;
	mp_write_array(w, rec->nils);
	for (uint32_t i = 0; i < rec->nils; i++)
		mp_write_nil(w);
}

static orn_rc nils_read(mp_reader *r, const kind_field *f, void *data)
{
	record *rec = data;
	orn_rc rc = mp_read_array(r, &rec->nils);

	(void)f;
	for (uint32_t i = 0; rc == ORN_OK && i < rec->nils; i++)
		rc = mp_read_nil(r);
	return rc;
}

static const kind_fields record_fields = {KIND_FIELDS_OF(record_table), .own_fits = nils_fit,
                                          .own_write = nils_write, .own_read = nils_read};

static orn_rc record_entry(mp_reader *r, unsigned fields, unsigned *seen, void *out)
{
	return kind_fields_read_entry(r, &record_fields, fields, seen, out);
}

Test(kind_fields, encode_then_decode_gives_the_fields_back)
{
	mp_writer *w = mp_writer_create();
	record in = {.name = "ann", .amount = -7, .flag = true, .nils = 2}, out;

	cr_assert_not_null(w);
	cr_assert_eq(kind_fields_count(&record_fields, R_NAME | R_NILS | 64), 2);
	cr_assert_eq(kind_fields_encode(w, &record_fields, R_ALL, &in), ORN_OK);
	cr_assert_eq(
	        kind_decode_map(mp_writer_data(w), mp_writer_size(w), R_ALL, record_entry, &out, sizeof out),
	        ORN_OK);
	cr_assert_str_eq(out.name, "ann");
	cr_assert_eq(out.amount, -7);
	cr_assert(out.flag);
	cr_assert_eq(out.nils, 2);
	mp_writer_reset(w);
	cr_assert_eq(kind_fields_encode(w, &record_fields, R_NAME | R_FLAG, &in), ORN_OK);
	cr_assert_eq(
	        kind_decode_map(mp_writer_data(w), mp_writer_size(w), R_NAME, record_entry, &out, sizeof out),
	        ORN_OK, "a key outside the fields read is skipped");
	cr_assert_eq(out.flag, false);
	mp_writer_destroy(w);
}

Test(kind_fields, refuses_what_does_not_fit_and_a_repeated_key)
{
	mp_writer *w = mp_writer_create();
	record in = {.name = "ann", .nils = 4}, out;

	cr_assert_not_null(w);
	cr_assert_not(kind_fields_fit(&record_fields, R_NILS, &in), "an own value that does not fit");
	cr_assert_eq(kind_fields_encode(w, &record_fields, R_ALL, &in), ORN_EINVAL);
	cr_assert_eq(mp_writer_size(w), 0, "nothing written");
	in.nils = 0;
	memset(in.name, 'x', sizeof in.name);
	cr_assert_eq(kind_fields_encode(w, &record_fields, R_ALL, &in), ORN_EINVAL, "a text without its end");
	cr_assert(kind_fields_fit(&record_fields, R_AMOUNT | R_FLAG, &in),
	          "the text is not among the fields");
	mp_write_map(w, 2);
	mp_write_cstr(w, "amount");
	mp_write_int(w, 1);
	mp_write_cstr(w, "amount");
	mp_write_int(w, 2);
	cr_assert_eq(kind_decode_map(mp_writer_data(w), mp_writer_size(w), R_AMOUNT, record_entry, &out,
	                             sizeof out),
	             ORN_EDECODE);
	mp_writer_destroy(w);
}
