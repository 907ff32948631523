/* test_holds.c — the holds aggregate (actors/holds.c): a customer's unpaid
 * orders against the limits of issue 14 (given events, when a command, then
 * events or a rejection), the codecs and the snapshot. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "decision.h"
#include "holds.h"

#define T0   1000000
#define HOUR 3600000

static holds_state state;
static holds_events out;
static holds_verdict verdict;

static void setup(void)
{
	holds_state_init(&state);
}

TestSuite(holds, .init = setup);

/* OpenOrder of order_id at now with "p1:2 p2:1"-style lines, limits 3 orders / 10 units. */
static holds_command open_order(const char *order_id, int64_t now, const char *lines)
{
	holds_command c = {
	        .kind = HOLDS_OPEN, .now_ms = now, .until_ms = now + HOUR, .max_open = 3, .max_units = 10};
	char copy[1024], *save = NULL;
	snprintf(c.order_id, sizeof c.order_id, "%s", order_id);
	snprintf(copy, sizeof copy, "%s", lines);
	for (char *t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
		holds_line *l = &c.lines[c.line_count++];
		char *colon = strchr(t, ':');
		*colon = '\0';
		snprintf(l->product_id, sizeof l->product_id, "%s", t);
		l->quantity = atoll(colon + 1);
	}
	return c;
}

static holds_command close_order(const char *order_id)
{
	holds_command c = {.kind = HOLDS_CLOSE};
	snprintf(c.order_id, sizeof c.order_id, "%s", order_id);
	return c;
}

static void when(holds_command c)
{
	verdict = holds_decide(&state, &c, &out);
}

static void given(holds_command c)
{
	when(c);
	cr_assert_eq(verdict, HOLDS_OK, "given: %s", holds_verdict_code(verdict));
	for (size_t i = 0; i < out.count; i++)
		holds_evolve(&state, &out.items[i]);
}

Test(holds, an_order_within_the_limits_is_opened_once)
{
	when(open_order("o1", T0, "p1:2 p2:1"));
	cr_assert_eq(verdict, HOLDS_OK);
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, HOLDS_OPENED);
	cr_assert_eq(out.items[0].at_ms, T0);
	holds_evolve(&state, &out.items[0]);
	cr_assert_eq(holds_open_orders(&state, T0), 1);
	cr_assert_eq(holds_units(&state, "p1", T0), 2);
	when(open_order("o1", T0 + 1, "p1:2 p2:1"));
	cr_assert_eq(verdict, HOLDS_OK);
	cr_assert_eq(out.count, 0, "placed again: nothing new");
}

Test(holds, past_max_open_orders_a_new_one_is_refused_until_one_closes_or_expires)
{
	given(open_order("o1", T0, "p1:1"));
	given(open_order("o2", T0, "p2:1"));
	given(open_order("o3", T0, "p3:1"));
	when(open_order("o4", T0 + 1, "p4:1"));
	cr_assert_eq(verdict, HOLDS_REJ_TOO_MANY_OPEN_ORDERS);
	given(close_order("o2"));
	when(open_order("o4", T0 + 2, "p4:1"));
	cr_assert_eq(verdict, HOLDS_OK);
	holds_evolve(&state, &out.items[0]);
	when(open_order("o5", T0 + 3, "p5:1"));
	cr_assert_eq(verdict, HOLDS_REJ_TOO_MANY_OPEN_ORDERS);
	/* an hour on, o1 and o3 stopped counting (their orders expired) */
	when(open_order("o5", T0 + HOUR, "p5:1"));
	cr_assert_eq(verdict, HOLDS_OK);
	holds_evolve(&state, &out.items[0]);
	cr_assert_eq(state.order_count, 2, "the expired ones made room: o4 and o5");
}

Test(holds, units_of_one_product_across_unpaid_orders_are_bounded)
{
	given(open_order("o1", T0, "p1:6"));
	when(open_order("o2", T0, "p1:5 p2:1"));
	cr_assert_eq(verdict, HOLDS_REJ_TOO_MANY_UNITS);
	when(open_order("o2", T0, "p1:4 p2:9"));
	cr_assert_eq(verdict, HOLDS_OK, "exactly the limit");
	holds_evolve(&state, &out.items[0]);
	cr_assert_eq(holds_units(&state, "p1", T0), 10);
	given(close_order("o1"));
	cr_assert_eq(holds_units(&state, "p1", T0), 4);
	cr_assert_eq(holds_units(&state, "p2", T0), 9);
	cr_assert_eq(state.entry_count, 2, "o1's lines left with it");
}

Test(holds, closing_an_order_not_open_changes_nothing)
{
	when(close_order("never"));
	cr_assert_eq(verdict, HOLDS_OK);
	cr_assert_eq(out.count, 0);
	given(open_order("o1", T0, "p1:1"));
	given(close_order("o1"));
	when(close_order("o1"));
	cr_assert_eq(out.count, 0, "closed twice: once");
}

Test(holds, bad_commands_are_invalid)
{
	holds_command c = open_order("o 1", T0, "p1:1");
	when(c);
	cr_assert_eq(verdict, HOLDS_REJ_INVALID);
	when(open_order("o1", T0, "p1:1 p1:2"));
	cr_assert_eq(verdict, HOLDS_REJ_INVALID, "a product twice");
	when(open_order("o1", T0, "p1:0"));
	cr_assert_eq(verdict, HOLDS_REJ_INVALID);
	c = open_order("o1", T0, "p1:1");
	c.until_ms = T0;
	when(c);
	cr_assert_eq(verdict, HOLDS_REJ_INVALID);
	c = open_order("o1", T0, "p1:1");
	c.max_open = HOLDS_ORDERS_MAX + 1;
	when(c);
	cr_assert_eq(verdict, HOLDS_REJ_INVALID);
	c = open_order("o1", T0, "");
	when(c);
	cr_assert_eq(verdict, HOLDS_REJ_INVALID, "no lines");
	when(close_order("bad id!"));
	cr_assert_eq(verdict, HOLDS_REJ_INVALID);
}

Test(holds, the_entries_are_bounded)
{
	char lines[1024] = "";
	for (int i = 0; i < HOLDS_LINES_MAX; i++) {
		char one[16];
		snprintf(one, sizeof one, "%sq%d:1", i ? " " : "", i);
		strcat(lines, one);
	}
	/* three orders of 50 lines (the default limit of open orders, each as
	 * large as an order may be) fit; a fourth passes the entries */
	for (int i = 0; i < 3; i++) {
		char id[8];
		snprintf(id, sizeof id, "o%d", i + 1);
		holds_command big = open_order(id, T0, lines);
		big.max_open = HOLDS_ORDERS_MAX;
		given(big);
	}
	holds_command next = open_order("o4", T0, lines);
	next.max_open = HOLDS_ORDERS_MAX;
	when(next);
	cr_assert_eq(verdict, HOLDS_REJ_TOO_MANY_UNITS, "4 x 50 lines pass the %d entries",
	             HOLDS_ENTRIES_MAX);
}

Test(holds, the_kind_decides_through_the_codecs_with_a_detail_and_its_snapshot_is_its_history)
{
	act_decision *d = act_decision_create();
	mp_writer *w = mp_writer_create();
	env_envelope cmd;
	holds_state *copy = malloc(sizeof *copy);
	given(open_order("o1", T0, "p1:7"));
	holds_command c = open_order("o2", T0, "p1:4");
	cr_assert_eq(holds_command_encode(w, &c), ORN_OK);
	memset(&cmd, 0, sizeof cmd);
	strcpy(cmd.type, HOLDS_CMD_OPEN);
	cmd.schema = 1;
	cmd.payload = mp_writer_data(w);
	cmd.payload_len = mp_writer_size(w);
	cr_assert_eq(holds_kind.decide(&state, &cmd, d), ORN_OK);
	cr_assert_str_eq(act_decision_rejection(d), "too_many_units");
	cr_assert_not_null(strstr(act_decision_detail(d), "product p1"), "%s", act_decision_detail(d));
	cr_assert_not_null(strstr(act_decision_detail(d), "7 held"), "%s", act_decision_detail(d));
	/* snapshot and restore */
	given(open_order("o3", T0, "p2:1 p3:2"));
	mp_writer_reset(w);
	cr_assert_eq(holds_kind.snapshot(&state, w), ORN_OK);
	holds_kind.init(copy);
	cr_assert_eq(holds_kind.restore(copy, mp_writer_data(w), mp_writer_size(w)), ORN_OK);
	cr_assert_eq(copy->order_count, 2);
	cr_assert_eq(holds_units(copy, "p3", T0), 2);
	cr_assert_eq(copy->orders[1].until_ms, T0 + HOUR);
	for (size_t cut = 0; cut < mp_writer_size(w); cut++)
		cr_assert_neq(holds_kind.restore(copy, mp_writer_data(w), cut), ORN_OK, "cut at %zu", cut);
	/* events: encoded, decoded, refused when decide could not emit them */
	holds_event e = {.kind = HOLDS_OPENED, .line_count = 1, .until_ms = T0 + 5, .at_ms = T0};
	strcpy(e.order_id, "o9");
	strcpy(e.lines[0].product_id, "p9");
	e.lines[0].quantity = 3;
	mp_writer_reset(w);
	cr_assert_eq(holds_event_encode(w, &e), ORN_OK);
	holds_event back;
	cr_assert_eq(holds_event_decode(HOLDS_EV_OPENED, mp_writer_data(w), mp_writer_size(w), &back),
	             ORN_OK);
	cr_assert_eq(back.lines[0].quantity, 3);
	cr_assert_eq(back.at_ms, T0);
	cr_assert_eq(holds_event_decode("Nope", mp_writer_data(w), mp_writer_size(w), &back), ORN_EINVAL);
	e.lines[0].quantity = 0;
	mp_writer_reset(w);
	cr_assert_eq(holds_event_encode(w, &e), ORN_OK);
	cr_assert_eq(holds_event_decode(HOLDS_EV_OPENED, mp_writer_data(w), mp_writer_size(w), &back),
	             ORN_EDECODE);
	free(copy);
	mp_writer_destroy(w);
	act_decision_destroy(d);
}
