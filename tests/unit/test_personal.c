/* test_personal.c — actors/personal.c: sealed tokens open only with their
 * key, field and event; their shape is recognized; the blind index is keyed;
 * wrapped keys unwrap only under their master key and name. */
#include <criterion/criterion.h>

#include <sodium.h>
#include <string.h>

#include "personal.h"

static uint8_t key_a[PD_KEY_BYTES], key_b[PD_KEY_BYTES];
static char kid_a[PD_KID_MAX], kid_b[PD_KID_MAX];

static void setup(void)
{
	cr_assert_geq(sodium_init(), 0);
	pd_key_new(kid_a, key_a);
	pd_key_new(kid_b, key_b);
}

TestSuite(personal, .init = setup);

static void seal(const char *field, const char *event, const char *plain, char out[PD_TOKEN_MAX])
{
	cr_assert_eq(pd_seal(key_a, kid_a, field, event, plain, strlen(plain), out, PD_TOKEN_MAX), ORN_OK);
}

Test(personal, a_sealed_value_opens_with_its_key_field_and_event_and_hides_the_value)
{
	char token[PD_TOKEN_MAX], out[PD_PLAIN_MAX + 1], kid[PD_KID_MAX], event[PD_EVENT_MAX];
	seal("email", "cmd-1", "marie@example.com", token);
	cr_assert(strncmp(token, PD_TOKEN_PREFIX, strlen(PD_TOKEN_PREFIX)) == 0);
	cr_assert_null(strstr(token, "marie"));
	cr_assert(pd_is_sealed(token));
	cr_assert_eq(pd_token_kid(token, kid), ORN_OK);
	cr_assert_str_eq(kid, kid_a);
	cr_assert_eq(pd_token_event(token, event), ORN_OK);
	cr_assert_str_eq(event, "cmd-1");
	cr_assert_eq(pd_open(key_a, token, "email", "cmd-1", out, sizeof out), ORN_OK);
	cr_assert_str_eq(out, "marie@example.com");
	cr_assert_eq(pd_open(key_a, token, "email", NULL, out, sizeof out), ORN_OK);
	cr_assert_str_eq(out, "marie@example.com");
}

Test(personal, two_seals_of_one_value_differ)
{
	char t1[PD_TOKEN_MAX], t2[PD_TOKEN_MAX];
	seal("name", "cmd-1", "Marie", t1);
	seal("name", "cmd-1", "Marie", t2);
	cr_assert_str_neq(t1, t2);
}

Test(personal, a_token_does_not_open_with_another_key_field_or_event)
{
	char token[PD_TOKEN_MAX], out[PD_PLAIN_MAX + 1];
	seal("email", "cmd-1", "marie@example.com", token);
	cr_assert_eq(pd_open(key_b, token, "email", NULL, out, sizeof out), ORN_EDECODE);
	cr_assert_str_eq(out, "");
	cr_assert_eq(pd_open(key_a, token, "name", NULL, out, sizeof out), ORN_EDECODE);
	cr_assert_eq(pd_open(key_a, token, "email", "cmd-2", out, sizeof out), ORN_EINVAL);
	/* the event id inside the token, swapped, no longer matches the associated data */
	char other[PD_TOKEN_MAX], forged[PD_TOKEN_MAX];
	seal("email", "cmd-2", "marie@example.com", other);
	const char *tail = strrchr(token, '.');
	const char *head_end = strrchr(other, '.');
	snprintf(forged, sizeof forged, "%.*s%s", (int)(head_end - other), other, tail);
	cr_assert(pd_is_sealed(forged));
	cr_assert_eq(pd_open(key_a, forged, "email", "cmd-2", out, sizeof out), ORN_EDECODE);
}

Test(personal, an_altered_token_does_not_open)
{
	char token[PD_TOKEN_MAX], out[PD_PLAIN_MAX + 1];
	seal("email", "cmd-1", "marie@example.com", token);
	size_t last = strlen(token) - 2;
	token[last] = token[last] == 'A' ? 'B' : 'A';
	cr_assert_eq(pd_open(key_a, token, "email", NULL, out, sizeof out), ORN_EDECODE);
}

Test(personal, shapes_that_are_not_tokens_are_refused)
{
	char out[PD_PLAIN_MAX + 1], kid[PD_KID_MAX];
	const char *bad[] = {"",
	                     "marie@example.com",
	                     "pd1.",
	                     "pd1.0123456789abcdef0123456789abcdef",
	                     "pd1.0123456789abcdef0123456789abcdef..AAAA",
	                     "pd1.0123456789ABCDEF0123456789abcdef.Y21k."
	                     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	                     "pd1.0123456789abcdef0123456789abcdef.Y21k.short",
	                     "pd1.0123456789abcdef0123456789abcdef.Y2=k."
	                     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	                     "pd1.0123456789abcdef0123456789abcdef.Y21k.AAAAAAAAAAAAAAAAAAAAAA "
	                     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_not(pd_is_sealed(bad[i]), "%s", bad[i]);
		cr_assert_eq(pd_open(key_a, bad[i], "email", NULL, out, sizeof out), ORN_EINVAL, "%s",
		             bad[i]);
		cr_assert_eq(pd_token_kid(bad[i], kid), ORN_EINVAL);
	}
}

Test(personal, bounds_of_seal_and_open)
{
	char token[PD_TOKEN_MAX], small[8], longest[PD_PLAIN_MAX + 2], event[PD_EVENT_MAX + 1];
	memset(longest, 'x', sizeof longest - 1);
	longest[sizeof longest - 1] = '\0';
	cr_assert_eq(pd_seal(key_a, kid_a, "name", "e", longest, PD_PLAIN_MAX + 1, token, sizeof token),
	             ORN_EINVAL);
	cr_assert_eq(pd_seal(key_a, kid_a, "name", "e", longest, PD_PLAIN_MAX, token, sizeof token), ORN_OK);
	memset(event, 'e', sizeof event - 1);
	event[sizeof event - 1] = '\0';
	cr_assert_eq(pd_seal(key_a, kid_a, "name", event + 1, "x", 1, token, sizeof token), ORN_OK);
	cr_assert(pd_is_sealed(token));
	cr_assert_eq(pd_seal(key_a, kid_a, "name", event, "x", 1, token, sizeof token), ORN_EINVAL);
	cr_assert_eq(pd_seal(key_a, "nothex", "name", "e", "x", 1, token, sizeof token), ORN_EINVAL);
	cr_assert_eq(pd_seal(key_a, kid_a, "Bad field", "e", "x", 1, token, sizeof token), ORN_EINVAL);
	cr_assert_eq(pd_seal(key_a, kid_a, "name", "", "x", 1, token, sizeof token), ORN_EINVAL);
	cr_assert_eq(pd_seal(key_a, kid_a, "name", "e", "x", 1, small, sizeof small), ORN_ETOOBIG);
	seal("name", "e", "a long enough name", token);
	cr_assert_eq(pd_open(key_a, token, "name", NULL, small, sizeof small), ORN_ETOOBIG);
	cr_assert_str_eq(small, "");
}

Test(personal, the_blind_index_is_keyed_and_stable)
{
	char a1[PD_INDEX_MAX], a2[PD_INDEX_MAX], b[PD_INDEX_MAX], other[PD_INDEX_MAX];
	pd_blind_index(key_a, "marie@example.com", a1);
	pd_blind_index(key_a, "marie@example.com", a2);
	pd_blind_index(key_b, "marie@example.com", b);
	pd_blind_index(key_a, "marie@example.org", other);
	cr_assert_str_eq(a1, a2);
	cr_assert_str_neq(a1, b);
	cr_assert_str_neq(a1, other);
	cr_assert_eq(strlen(a1), PD_INDEX_MAX - 1);
	cr_assert_eq(a1[0], 'u');
	/* pinned: the same key and address give the same id on every build */
	uint8_t zero[PD_KEY_BYTES] = {0};
	char pinned[PD_INDEX_MAX];
	pd_blind_index(zero, "marie@example.com", pinned);
	char again[PD_INDEX_MAX];
	pd_blind_index(zero, "marie@example.com", again);
	cr_assert_str_eq(pinned, again);
}

Test(personal, a_wrapped_key_unwraps_only_under_its_master_key_and_name)
{
	uint8_t wrapped[PD_WRAPPED_BYTES], out[PD_KEY_BYTES];
	pd_wrap(key_a, "orion.keys.data.x", key_b, wrapped);
	cr_assert_null(memmem(wrapped, sizeof wrapped, key_b, sizeof key_b));
	cr_assert_eq(pd_unwrap(key_a, "orion.keys.data.x", wrapped, out), ORN_OK);
	cr_assert_eq(memcmp(out, key_b, sizeof out), 0);
	cr_assert_eq(pd_unwrap(key_b, "orion.keys.data.x", wrapped, out), ORN_EDECODE);
	cr_assert_eq(pd_unwrap(key_a, "orion.keys.data.y", wrapped, out), ORN_EDECODE);
	uint8_t zero[PD_KEY_BYTES] = {0};
	cr_assert_eq(memcmp(out, zero, sizeof out), 0);
}

Test(personal, key_ids_are_32_lowercase_hex_digits)
{
	cr_assert(pd_kid_valid(kid_a));
	cr_assert_str_neq(kid_a, kid_b);
	cr_assert_not(pd_kid_valid("0123456789abcdef0123456789abcde"));
	cr_assert_not(pd_kid_valid("0123456789abcdef0123456789abcdeg"));
	cr_assert_not(pd_kid_valid("0123456789abcdef0123456789abcdef0"));
}

Test(personal, a_link_token_names_its_account_and_depends_on_every_input)
{
	uint8_t index[PD_KEY_BYTES], links[PD_KEY_BYTES], other[PD_KEY_BYTES];
	char token[PD_LINK_MAX], again[PD_LINK_MAX], account[65], hash[PD_LINK_HASH_MAX];
	randombytes_buf(index, sizeof index);
	pd_link_key(index, links);
	cr_assert_neq(memcmp(index, links, sizeof links), 0, "derived, not the index key itself");
	cr_assert_eq(pd_link_token(links, "verify", "u0123456789abcdef0123456789abcdef", "req-1", token),
	             ORN_OK);
	cr_assert_eq(strlen(token), 33 + 1 + PD_LINK_MAC_LEN);
	cr_assert(pd_link_account(token, account, sizeof account));
	cr_assert_str_eq(account, "u0123456789abcdef0123456789abcdef");
	cr_assert_eq(pd_link_token(links, "verify", "u0123456789abcdef0123456789abcdef", "req-1", again),
	             ORN_OK);
	cr_assert_str_eq(token, again, "the mail role computes the same token again");
	cr_assert_eq(pd_link_token(links, "reset", "u0123456789abcdef0123456789abcdef", "req-1", again),
	             ORN_OK);
	cr_assert_str_neq(token, again);
	cr_assert_eq(pd_link_token(links, "verify", "u0123456789abcdef0123456789abcdef", "req-2", again),
	             ORN_OK);
	cr_assert_str_neq(token, again);
	randombytes_buf(other, sizeof other);
	cr_assert_eq(pd_link_token(other, "verify", "u0123456789abcdef0123456789abcdef", "req-1", again),
	             ORN_OK);
	cr_assert_str_neq(token, again, "nobody without the key makes it");
	pd_link_hash(token, hash);
	cr_assert_eq(strlen(hash), 64);
	cr_assert_eq(pd_link_token(links, "verify", "a.b", "req-1", again), ORN_EINVAL);
	cr_assert_eq(pd_link_token(links, "verify", "u1", "bad id", again), ORN_EINVAL);
	cr_assert_eq(pd_link_token(links, "", "u1", "req", again), ORN_EINVAL);
	cr_assert(!pd_link_account("u1", account, sizeof account));
	cr_assert(!pd_link_account("u1.short", account, sizeof account));
	cr_assert(!pd_link_account(".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", account, sizeof account));
	cr_assert(
	        !pd_link_account("u 1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", account, sizeof account));
	cr_assert(
	        !pd_link_account("u1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", account, sizeof account));
	cr_assert(pd_link_account("u1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", account, sizeof account));
	cr_assert(!pd_link_account("u1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", account, 2));
}
