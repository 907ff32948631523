/* test_sku.c — unit tests of the sku aggregate (actors/sku.c).
 *
 * Given-when-then: given events applied with sku_evolve, when a command is
 * decided, then the expected events or rejection. Further tests cover the
 * key derivation, the payload codecs, snapshot/restore, the view and the kind
 * table driven through an act_decision. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"
#include "sku.h"

static sku_state state;
static sku_events out;
static sku_verdict verdict;
static mp_writer *writer;

static void setup(void)
{
	sku_state_init(&state);
	writer = mp_writer_create();
	cr_assert_not_null(writer);
}

static void teardown(void)
{
	mp_writer_destroy(writer);
}

TestSuite(sku, .init = setup, .fini = teardown);

static sku_event claimed(const char *product_id)
{
	sku_event e = {.kind = SKU_CLAIMED};

	snprintf(e.product_id, sizeof e.product_id, "%s", product_id);
	return e;
}

static sku_event released(const char *product_id)
{
	sku_event e = {.kind = SKU_RELEASED};

	snprintf(e.product_id, sizeof e.product_id, "%s", product_id);
	return e;
}

static sku_command claim(const char *product_id)
{
	sku_command c = {.kind = SKU_CLAIM};

	snprintf(c.product_id, sizeof c.product_id, "%s", product_id);
	return c;
}

static sku_command release(const char *product_id)
{
	sku_command c = {.kind = SKU_RELEASE};

	snprintf(c.product_id, sizeof c.product_id, "%s", product_id);
	return c;
}

static void given_events(const sku_event *events, size_t count)
{
	for (size_t i = 0; i < count; i++)
		sku_evolve(&state, &events[i]);
}

#define EVENTS(...)                                                                                          \
	(const sku_event[]){__VA_ARGS__}, sizeof((const sku_event[]){__VA_ARGS__}) / sizeof(sku_event)
#define GIVEN(...) given_events(EVENTS(__VA_ARGS__))

static void when(sku_command c)
{
	verdict = sku_decide(&state, &c, &out);
}

static void then_event(sku_event expected)
{
	cr_assert_eq(verdict, SKU_OK, "verdict %s", sku_verdict_code(verdict));
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, expected.kind);
	cr_assert_str_eq(out.items[0].product_id, expected.product_id);
}

static void then_nothing_happens(void)
{
	cr_assert_eq(verdict, SKU_OK, "verdict %s", sku_verdict_code(verdict));
	cr_assert_eq(out.count, 0);
}

static void then_rejected(sku_verdict expected)
{
	cr_assert_eq(verdict, expected, "verdict %s", sku_verdict_code(verdict));
	cr_assert_eq(out.count, 0);
}

static void and_applied(void)
{
	for (size_t i = 0; i < out.count; i++)
		sku_evolve(&state, &out.items[i]);
}

/* ---- claim ---- */

Test(sku, claim_of_a_free_sku_emits_claimed)
{
	when(claim("p1"));
	then_event(claimed("p1"));
	and_applied();
	cr_assert(state.claimed);
	cr_assert_str_eq(state.owner, "p1");
}

Test(sku, claim_by_the_owner_is_an_idempotent_no_op)
{
	GIVEN(claimed("p1"));
	when(claim("p1"));
	then_nothing_happens();
}

Test(sku, claim_by_another_product_is_taken)
{
	GIVEN(claimed("p1"));
	when(claim("p2"));
	then_rejected(SKU_REJ_TAKEN);
}

Test(sku, claim_after_release_is_free_again)
{
	GIVEN(claimed("p1"), released("p1"));
	when(claim("p2"));
	then_event(claimed("p2"));
}

/* ---- release ---- */

Test(sku, release_by_the_owner_emits_released)
{
	GIVEN(claimed("p1"));
	when(release("p1"));
	then_event(released("p1"));
	and_applied();
	cr_assert(!state.claimed);
	cr_assert_str_eq(state.owner, "");
}

Test(sku, release_by_another_product_is_a_no_op)
{
	GIVEN(claimed("p1"));
	when(release("p2"));
	then_nothing_happens();
}

Test(sku, release_of_a_free_sku_is_a_no_op)
{
	when(release("p1"));
	then_nothing_happens();
	GIVEN(claimed("p1"), released("p1"));
	when(release("p1"));
	then_nothing_happens();
}

/* ---- invalid ---- */

Test(sku, invalid_product_ids_are_rejected)
{
	const char *ids[] = {"", "p.1", "p 1", "p*", "p>", "caf\xc3\xa9", "p\n"};
	sku_command c = claim("");

	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		when(claim(ids[i]));
		then_rejected(SKU_REJ_INVALID);
		when(release(ids[i]));
		then_rejected(SKU_REJ_INVALID);
	}
	memset(c.product_id, 'a', sizeof c.product_id); /* no terminator */
	when(c);
	then_rejected(SKU_REJ_INVALID);
	when((sku_command){.kind = (sku_command_kind)7, .product_id = "p1"});
	then_rejected(SKU_REJ_INVALID);
}

Test(sku, the_longest_product_id_is_accepted)
{
	sku_command c = claim("");

	memset(c.product_id, 'Z', SKU_PRODUCT_ID_MAX - 1);
	when(c);
	cr_assert_eq(verdict, SKU_OK);
	cr_assert_eq(out.count, 1);
	cr_assert(sku_product_id_valid("aZ09_-"));
}

/* ---- evolve on odd streams ---- */

Test(sku, evolve_trusts_the_state_over_odd_events)
{
	GIVEN(claimed("p1"), released("p2"));
	cr_assert_str_eq(state.owner, "p1");
	GIVEN(claimed("p3")); /* a second claim moves the sku */
	cr_assert_str_eq(state.owner, "p3");
	GIVEN(claimed("bad id"), released("bad id"),
	      (sku_event){.kind = (sku_event_kind)9, .product_id = "p3"});
	cr_assert(state.claimed);
	cr_assert_str_eq(state.owner, "p3");
}

/* ---- names ---- */

Test(sku, codes_and_type_names_are_stable)
{
	cr_assert_str_eq(sku_verdict_code(SKU_OK), "");
	cr_assert_str_eq(sku_verdict_code(SKU_REJ_INVALID), "invalid");
	cr_assert_str_eq(sku_verdict_code(SKU_REJ_TAKEN), "sku_taken");
	cr_assert_str_eq(sku_verdict_code((sku_verdict)99), "unknown");
	cr_assert_str_eq(sku_command_type(SKU_CLAIM), "ClaimSku");
	cr_assert_str_eq(sku_command_type(SKU_RELEASE), "ReleaseSku");
	cr_assert_null(sku_command_type((sku_command_kind)5));
	cr_assert_str_eq(sku_event_type(SKU_CLAIMED), "SkuClaimed");
	cr_assert_str_eq(sku_event_type(SKU_RELEASED), "SkuReleased");
	cr_assert_null(sku_event_type((sku_event_kind)5));
}

/* ---- key derivation ---- */

Test(sku, keys_are_uppercase_with_dots_as_d)
{
	char key[SKU_KEY_MAX];

	cr_assert_eq(sku_key_for("abc-12.x_Y", key, sizeof key), ORN_OK);
	cr_assert_str_eq(key, "ABC-12dX_Y");
	cr_assert_eq(sku_key_for("...", key, sizeof key), ORN_OK);
	cr_assert_str_eq(key, "ddd");
	cr_assert_eq(sku_key_for("0", key, 2), ORN_OK);
	cr_assert_str_eq(key, "0");
}

Test(sku, skus_differing_in_case_share_a_key_and_others_do_not)
{
	char a[SKU_KEY_MAX], b[SKU_KEY_MAX];

	cr_assert_eq(sku_key_for("Tee-Shirt.L", a, sizeof a), ORN_OK);
	cr_assert_eq(sku_key_for("TEE-SHIRT.l", b, sizeof b), ORN_OK);
	cr_assert_str_eq(a, b);
	cr_assert_eq(sku_key_for("TEE-SHIRT-L", b, sizeof b), ORN_OK);
	cr_assert_str_neq(a, b);
}

/* True if key matches [A-Za-z0-9_-]{1,64}. */
static bool key_is_an_aggregate_id(const char *key)
{
	size_t len = strlen(key);

	return len >= 1 && len <= 64 &&
	       strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == len;
}

Test(sku, every_valid_sku_gives_a_valid_aggregate_id)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
	char sku[SKU_MAX], key[SKU_KEY_MAX];
	uint64_t seed = 42;

	for (unsigned n = 0; n < 2000; n++) {
		size_t len = 1 + n % (SKU_MAX - 1);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			sku[i] = alphabet[(seed >> 33) % (sizeof alphabet - 1)];
		}
		sku[len] = '\0';
		cr_assert(sku_valid(sku));
		cr_assert_eq(sku_key_for(sku, key, sizeof key), ORN_OK, "%s", sku);
		cr_assert(key_is_an_aggregate_id(key), "%s -> %s", sku, key);
		cr_assert_eq(strlen(key), len);
	}
}

Test(sku, invalid_skus_and_short_buffers_are_refused)
{
	const char *skus[] = {"", "a b", "a/b", "a*", "a>", "caf\xc3\xa9", "a\t", "a:b"};
	char key[SKU_KEY_MAX], sku[SKU_MAX + 1];

	for (size_t i = 0; i < sizeof skus / sizeof skus[0]; i++) {
		strcpy(key, "junk");
		cr_assert(!sku_valid(skus[i]), "%s", skus[i]);
		cr_assert_eq(sku_key_for(skus[i], key, sizeof key), ORN_EINVAL, "%s", skus[i]);
		cr_assert_str_eq(key, "");
	}
	memset(sku, 'a', sizeof sku);
	sku[SKU_MAX] = '\0'; /* 65 characters */
	cr_assert(!sku_valid(sku));
	cr_assert_eq(sku_key_for(sku, key, sizeof key), ORN_EINVAL);
	sku[SKU_MAX - 1] = '\0'; /* 64 characters */
	cr_assert(sku_valid(sku));
	cr_assert_eq(sku_key_for(sku, key, sizeof key), ORN_OK);
	cr_assert_eq(sku_key_for(sku, key, SKU_MAX - 1), ORN_ETOOBIG);
	cr_assert_str_eq(key, "");
	cr_assert_eq(sku_key_for("abc", key, 3), ORN_ETOOBIG);
	cr_assert_eq(sku_key_for("abc", NULL, 0), ORN_ETOOBIG);
}

/* ---- payload codecs ---- */

Test(sku, commands_and_events_round_trip)
{
	const sku_command commands[] = {claim("p1"), release("P_2-x")};
	const sku_event events[] = {claimed("p1"), released("P_2-x")};
	sku_command c;
	sku_event e;

	for (size_t i = 0; i < 2; i++) {
		mp_writer_reset(writer);
		cr_assert_eq(sku_command_encode(writer, &commands[i]), ORN_OK);
		cr_assert_eq(sku_command_decode(sku_command_type(commands[i].kind), mp_writer_data(writer),
		                                mp_writer_size(writer), &c),
		             ORN_OK);
		cr_assert_eq(c.kind, commands[i].kind);
		cr_assert_str_eq(c.product_id, commands[i].product_id);
		mp_writer_reset(writer);
		cr_assert_eq(sku_event_encode(writer, &events[i]), ORN_OK);
		cr_assert_eq(sku_event_decode(sku_event_type(events[i].kind), mp_writer_data(writer),
		                              mp_writer_size(writer), &e),
		             ORN_OK);
		cr_assert_eq(e.kind, events[i].kind);
		cr_assert_str_eq(e.product_id, events[i].product_id);
	}
}

Test(sku, a_command_with_an_invalid_id_decodes_for_decide_to_judge)
{
	sku_command c;
	sku_event e;

	cr_assert_eq(
	        sku_command_encode(writer, &(sku_command){.kind = SKU_CLAIM, .product_id = "not valid!"}),
	        ORN_OK);
	cr_assert_eq(sku_command_decode(SKU_CMD_CLAIM, mp_writer_data(writer), mp_writer_size(writer), &c),
	             ORN_OK);
	cr_assert_str_eq(c.product_id, "not valid!");
	cr_assert_eq(sku_event_decode(SKU_EV_CLAIMED, mp_writer_data(writer), mp_writer_size(writer), &e),
	             ORN_EDECODE);
}

Test(sku, encoders_reject_unknown_kinds_and_unterminated_ids)
{
	sku_command c = claim("");
	sku_event e = claimed("");

	cr_assert_eq(sku_command_encode(writer, &(sku_command){.kind = (sku_command_kind)3}), ORN_EINVAL);
	cr_assert_eq(sku_event_encode(writer, &(sku_event){.kind = (sku_event_kind)3}), ORN_EINVAL);
	memset(c.product_id, 'a', sizeof c.product_id);
	memset(e.product_id, 'a', sizeof e.product_id);
	cr_assert_eq(sku_command_encode(writer, &c), ORN_EINVAL);
	cr_assert_eq(sku_event_encode(writer, &e), ORN_EINVAL);
}

/* Writes a one-entry map {key: <value written by the caller next>}. */
static void write_single_key(const char *key)
{
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, key);
}

static orn_rc decode_written_command(void)
{
	sku_command c;

	return sku_command_decode(SKU_CMD_CLAIM, mp_writer_data(writer), mp_writer_size(writer), &c);
}

Test(sku, decoders_are_strict)
{
	sku_command c;
	sku_event e;
	char long_id[SKU_PRODUCT_ID_MAX + 1];

	cr_assert_eq(sku_command_encode(writer, &(sku_command){.kind = SKU_CLAIM, .product_id = "p1"}),
	             ORN_OK);
	cr_assert_eq(sku_command_decode("StealSku", mp_writer_data(writer), mp_writer_size(writer), &c),
	             ORN_EINVAL);
	cr_assert_eq(sku_command_decode(NULL, mp_writer_data(writer), mp_writer_size(writer), &c),
	             ORN_EINVAL);
	cr_assert_eq(sku_event_decode(SKU_CMD_CLAIM, mp_writer_data(writer), mp_writer_size(writer), &e),
	             ORN_EINVAL);
	for (size_t len = 0; len < mp_writer_size(writer); len++) {
		cr_assert_eq(sku_command_decode(SKU_CMD_CLAIM, mp_writer_data(writer), len, &c), ORN_EDECODE);
		cr_assert_eq(sku_event_decode(SKU_EV_CLAIMED, mp_writer_data(writer), len, &e), ORN_EDECODE);
	}
	write_single_key("product_id");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
	write_single_key("product_id");
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
	write_single_key("product_id");
	mp_write_bin(writer, "p1", 2);
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
	write_single_key("product_id");
	mp_write_str(writer, "p\0", 2);
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
	memset(long_id, 'p', sizeof long_id);
	write_single_key("product_id");
	mp_write_str(writer, long_id, SKU_PRODUCT_ID_MAX);
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
	write_single_key("product_id");
	mp_write_str(writer, long_id, SKU_PRODUCT_ID_MAX - 1);
	cr_assert_eq(decode_written_command(), ORN_OK);
	write_single_key("product_id");
	mp_write_cstr(writer, "p1");
	mp_write_nil(writer); /* trailing bytes */
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 0); /* missing key */
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_array(writer, 0); /* not a map */
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_int(writer, 1); /* non-string key */
	mp_write_cstr(writer, "p1");
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p1");
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
}

Test(sku, unknown_keys_are_skipped)
{
	sku_command c;

	mp_write_map(writer, 3);
	mp_write_cstr(writer, "note");
	mp_write_array(writer, 1);
	mp_write_nil(writer);
	mp_write_cstr(writer, "product_id");
	mp_write_cstr(writer, "p9");
	mp_write_cstr(writer, "sku");
	mp_write_int(writer, 1);
	cr_assert_eq(sku_command_decode(SKU_CMD_RELEASE, mp_writer_data(writer), mp_writer_size(writer), &c),
	             ORN_OK);
	cr_assert_eq(c.kind, SKU_RELEASE);
	cr_assert_str_eq(c.product_id, "p9");
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "note");
	mp_write_raw(writer, "\xc1", 1); /* an unknown key whose value does not parse */
	cr_assert_eq(decode_written_command(), ORN_EDECODE);
}

/* ---- snapshot, restore, view ---- */

Test(sku, restore_gives_back_the_state)
{
	sku_state restored;

	sku_state_init(&restored);
	GIVEN(claimed("p1"));
	cr_assert_eq(sku_kind.snapshot(&state, writer), ORN_OK);
	cr_assert_eq(sku_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	cr_assert_eq(memcmp(&state, &restored, sizeof state), 0);
	GIVEN(released("p1"));
	mp_writer_reset(writer);
	cr_assert_eq(sku_kind.snapshot(&state, writer), ORN_OK);
	cr_assert_eq(sku_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	cr_assert_eq(memcmp(&state, &restored, sizeof state), 0);
}

/* Writes a snapshot {claimed, owner, [extra: 1]}. */
static void write_snapshot(bool is_claimed, const char *owner, const char *extra)
{
	mp_writer_reset(writer);
	mp_write_map(writer, extra != NULL ? 3 : 2);
	mp_write_cstr(writer, "claimed");
	mp_write_bool(writer, is_claimed);
	mp_write_cstr(writer, "owner");
	mp_write_cstr(writer, owner);
	if (extra != NULL) {
		mp_write_cstr(writer, extra);
		mp_write_int(writer, 1);
	}
}

static orn_rc restore_written(void)
{
	return sku_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer));
}

Test(sku, restore_rejects_bad_snapshots_and_keeps_the_state)
{
	GIVEN(claimed("mine"));
	write_snapshot(true, "p2", "future");
	cr_assert_eq(restore_written(), ORN_OK);
	cr_assert_str_eq(state.owner, "p2");
	write_snapshot(true, "", NULL);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(true, "bad id", NULL);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(false, "p2", NULL);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(true, "p3", "claimed");
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(true, "p3", "owner");
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_single_key("claimed");
	mp_write_bool(writer, false);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_single_key("claimed");
	mp_write_int(writer, 0);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_nil(writer);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_nil(writer);
	mp_write_nil(writer);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(false, "", NULL);
	mp_write_nil(writer);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	cr_assert(state.claimed);
	cr_assert_str_eq(state.owner, "p2");
}

Test(sku, view_shows_the_owner_or_nil)
{
	mp_reader r;
	uint32_t count, len;
	const char *s;
	bool b;

	GIVEN(claimed("p1"));
	cr_assert_eq(sku_kind.view(&state, writer), ORN_OK);
	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_read_map(&r, &count), ORN_OK);
	cr_assert_eq(count, 2);
	cr_assert_eq(mp_read_str(&r, &s, &len), ORN_OK);
	cr_assert(mp_str_eq(s, len, "claimed"));
	cr_assert_eq(mp_read_bool(&r, &b), ORN_OK);
	cr_assert(b);
	cr_assert_eq(mp_read_str(&r, &s, &len), ORN_OK);
	cr_assert(mp_str_eq(s, len, "owner"));
	cr_assert_eq(mp_read_str(&r, &s, &len), ORN_OK);
	cr_assert(mp_str_eq(s, len, "p1"));
	sku_state_init(&state);
	mp_writer_reset(writer);
	cr_assert_eq(sku_kind.view(&state, writer), ORN_OK);
	cr_assert_eq(mp_writer_size(writer), 1 + 8 + 1 + 6 + 1);
	cr_assert_eq(mp_writer_data(writer)[mp_writer_size(writer) - 1], 0xc0);
}

/* ---- the kind table ---- */

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

TestSuite(sku_kind, .init = kind_setup, .fini = kind_teardown);

static orn_rc kind_decide(sku_command c)
{
	env_envelope cmd = {.schema = 1};

	mp_writer_reset(writer);
	cr_assert_eq(sku_command_encode(writer, &c), ORN_OK);
	snprintf(cmd.type, sizeof cmd.type, "%s", sku_command_type(c.kind));
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	act_decision_clear(decision);
	return sku_kind.decide(&state, &cmd, decision);
}

static void kind_apply(void)
{
	env_envelope event;

	for (size_t i = 0; i < act_decision_count(decision); i++) {
		cr_assert_eq(act_decision_event(decision, i, &event), ORN_OK);
		cr_assert_eq(sku_kind.evolve(&state, &event), ORN_OK);
	}
}

Test(sku_kind, describes_the_aggregate)
{
	sku_state *s = malloc(sku_kind.state_size);

	cr_assert_str_eq(sku_kind.aggregate, "sku");
	cr_assert_eq(sku_kind.state_size, sizeof(sku_state));
	cr_assert_eq(sku_kind.snapshot_schema, SKU_SNAPSHOT_SCHEMA);
	cr_assert_not_null(s);
	sku_kind.init(s);
	cr_assert(!s->claimed);
	sku_kind.dispose(s);
	free(s);
}

Test(sku_kind, claim_and_release_through_the_kind_table)
{
	env_envelope event;

	cr_assert_eq(kind_decide(claim("p1")), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 1);
	cr_assert_eq(act_decision_event(decision, 0, &event), ORN_OK);
	cr_assert_str_eq(event.type, SKU_EV_CLAIMED);
	cr_assert_eq(event.schema, 1);
	kind_apply();
	cr_assert_str_eq(state.owner, "p1");
	cr_assert_eq(kind_decide(claim("p1")), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 0);
	cr_assert_eq(kind_decide(claim("p2")), ORN_OK);
	cr_assert_str_eq(act_decision_rejection(decision), "sku_taken");
	cr_assert_str_eq(act_decision_detail(decision), "the sku is held by product p1");
	cr_assert_eq(kind_decide(claim("p 2")), ORN_OK);
	cr_assert_str_eq(act_decision_rejection(decision), "invalid");
	cr_assert_str_eq(act_decision_detail(decision), "product_id: 1..64 characters of [A-Za-z0-9_-]");
	cr_assert_eq(kind_decide(release("p1")), ORN_OK);
	cr_assert_eq(act_decision_count(decision), 1);
	kind_apply();
	cr_assert(!state.claimed);
}

Test(sku_kind, undecodable_commands_and_events_are_errors)
{
	env_envelope env = {
	        .type = SKU_CMD_CLAIM, .schema = 1, .payload = (const uint8_t *)"\x80", .payload_len = 1};

	cr_assert_eq(sku_kind.decide(&state, &env, decision), ORN_EDECODE);
	env.schema = 2;
	cr_assert_eq(sku_kind.decide(&state, &env, decision), ORN_EDECODE);
	snprintf(env.type, sizeof env.type, "%s", SKU_EV_CLAIMED);
	cr_assert_eq(sku_kind.evolve(&state, &env), ORN_EDECODE);
	env.schema = 1;
	cr_assert_eq(sku_kind.evolve(&state, &env), ORN_EDECODE);
	snprintf(env.type, sizeof env.type, "SkuStolen");
	cr_assert_eq(sku_kind.evolve(&state, &env), ORN_EINVAL);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert(!state.claimed);
}

Test(sku_kind, decide_reports_running_out_of_memory_and_a_full_decision)
{
	orn_rc rc;

	if (failalloc_available()) {
		for (long n = 0;; n++) {
			act_decision_clear(decision);
			mp_writer_reset(writer);
			cr_assert_eq(sku_command_encode(
			                     writer, &(sku_command){.kind = SKU_CLAIM, .product_id = "p1"}),
			             ORN_OK);
			failalloc_after(n);
			rc = sku_kind.decide(&state,
			                     &(env_envelope){.type = SKU_CMD_CLAIM,
			                                     .schema = 1,
			                                     .payload = mp_writer_data(writer),
			                                     .payload_len = mp_writer_size(writer)},
			                     decision);
			failalloc_off();
			if (rc == ORN_OK)
				break;
			cr_assert_eq(rc, ORN_ENOMEM, "allocation %ld", n);
		}
		cr_assert_eq(act_decision_count(decision), 1);
	}
	act_decision_clear(decision);
	for (size_t i = 0; i < ENV_MAX_EVENTS; i++)
		cr_assert_eq(act_decision_emit(decision, "Filler", 1, (const uint8_t *)"\xc0", 1), ORN_OK);
	mp_writer_reset(writer);
	cr_assert_eq(sku_command_encode(writer, &(sku_command){.kind = SKU_CLAIM, .product_id = "p1"}),
	             ORN_OK);
	cr_assert_eq(sku_kind.decide(&state,
	                             &(env_envelope){.type = SKU_CMD_CLAIM,
	                                             .schema = 1,
	                                             .payload = mp_writer_data(writer),
	                                             .payload_len = mp_writer_size(writer)},
	                             decision),
	             ORN_ETOOBIG);
}
