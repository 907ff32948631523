/* test_user.c — unit tests of the user aggregate (actors/user.c).
 *
 * Given-when-then: given events applied with user_evolve, when a command is
 * decided, then the expected events or rejection. Further tests cover email
 * normalization and the aggregate key, the field bounds, the payload codecs,
 * snapshot/restore, the view and the kind table through an act_decision. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "failalloc.h"
#include "user.h"

#define HASH "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"

static user_state state;
static user_events out;
static user_verdict verdict;
static mp_writer *writer;

/* The test's data key: ada()'s personal fields are sealed with it, as the
 * gateway seals them (ADR 027). */
static uint8_t data_key[PD_KEY_BYTES];
static char data_kid[PD_KID_MAX];

static void setup(void)
{
	cr_assert_geq(sodium_init(), 0);
	pd_key_new(data_kid, data_key);
	user_state_init(&state);
	writer = mp_writer_create();
	cr_assert_not_null(writer);
}

static void teardown(void)
{
	mp_writer_destroy(writer);
}

TestSuite(user, .init = setup, .fini = teardown);

/* Ada's account as typed: what a sealer checks (user_clear_invalid_field). */
static user_fields ada_clear(void)
{
	user_fields f = {.role = USER_ROLE_CUSTOMER};

	strcpy(f.user_id, "usr_7f3a-X");
	strcpy(f.email, "ada@example.org");
	strcpy(f.name, "Ada Lovelace \xc3\xa9");
	strcpy(f.password_hash, HASH);
	return f;
}

/* f's personal fields sealed with the test key for the event "cmd-register". */
static user_fields sealed(user_fields f)
{
	char *fields[] = {f.email, f.name, f.password_hash};
	const char *names[] = {"email", "name", "password_hash"};
	for (size_t i = 0; i < 3; i++) {
		char token[PD_TOKEN_MAX];
		cr_assert_eq(pd_seal(data_key, data_kid, names[i], "cmd-register", fields[i],
		                     strlen(fields[i]), token, sizeof token),
		             ORN_OK);
		strcpy(fields[i], token);
	}
	strcpy(f.kid, data_kid);
	return f;
}

/* Ada's account as a RegisterUser carries it: sealed, once per test so that
 * every call gives the same tokens. */
static user_fields ada(void)
{
	static user_fields cached;
	static char cached_kid[PD_KID_MAX];
	if (strcmp(cached_kid, data_kid) != 0) {
		cached = sealed(ada_clear());
		strcpy(cached_kid, data_kid);
	}
	return cached;
}

static user_event registered(user_fields f)
{
	return (user_event){.kind = USER_REGISTERED, .fields = f};
}

static user_event role_changed(user_role role)
{
	return (user_event){.kind = USER_ROLE_CHANGED, .fields = {.role = role}};
}

static user_command register_user(user_fields f)
{
	return (user_command){.kind = USER_REGISTER, .fields = f};
}

static user_command change_role(user_role role)
{
	return (user_command){.kind = USER_CHANGE_ROLE, .fields = {.role = role}};
}

static void given(user_event e)
{
	user_evolve(&state, &e);
}

static void when(user_command c)
{
	verdict = user_decide(&state, &c, &out);
}

static void assert_fields_eq(const user_fields *a, const user_fields *b)
{
	cr_assert_str_eq(a->user_id, b->user_id);
	cr_assert_str_eq(a->email, b->email);
	cr_assert_str_eq(a->name, b->name);
	cr_assert_str_eq(a->password_hash, b->password_hash);
	cr_assert_eq(a->role, b->role);
	cr_assert_str_eq(a->jti, b->jti);
	cr_assert_eq(a->expires_at, b->expires_at);
	cr_assert_eq(a->token_version, b->token_version);
	cr_assert_str_eq(a->kid, b->kid);
	cr_assert_eq(a->unverified, b->unverified);
	cr_assert_str_eq(a->request_id, b->request_id);
	cr_assert_str_eq(a->token_hash, b->token_hash);
	cr_assert_eq(a->at, b->at);
}

static void then_event(user_event expected)
{
	cr_assert_eq(verdict, USER_OK, "verdict %s", user_verdict_code(verdict));
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, expected.kind);
	assert_fields_eq(&out.items[0].fields, &expected.fields);
}

static void then_rejected(user_verdict expected)
{
	cr_assert_eq(verdict, expected, "verdict %s, expected %s", user_verdict_code(verdict),
	             user_verdict_code(expected));
	cr_assert_eq(out.count, 0);
}

static void and_applied(void)
{
	for (size_t i = 0; i < out.count; i++)
		user_evolve(&state, &out.items[i]);
}

/* ---- register ---- */

Test(user, register_emits_registered_with_every_field)
{
	user_fields admin = ada();

	when(register_user(ada()));
	then_event(registered(ada()));
	and_applied();
	cr_assert(state.exists);
	{
		user_fields expected = ada();
		assert_fields_eq(&state.fields, &expected);
	}
	admin.role = USER_ROLE_ADMIN;
	user_state_init(&state);
	when(register_user(admin));
	then_event(registered(admin));
}

Test(user, register_of_a_registered_address_is_exists)
{
	user_fields other = ada();

	given(registered(ada()));
	strcpy(other.user_id, "someone-else");
	when(register_user(other));
	then_rejected(USER_REJ_EXISTS);
}

/* Checks a new account as typed with one field changed by edit: the field
 * the sealer refuses (user_clear_invalid_field), and, when valid, that
 * register accepts it sealed. */
static void check_register(void (*edit)(user_fields *), const char *invalid_field)
{
	user_fields f = ada_clear();

	user_state_init(&state);
	edit(&f);
	if (invalid_field == NULL) {
		cr_assert_null(user_clear_invalid_field(&f), "field %s", user_clear_invalid_field(&f));
		when(register_user(sealed(f)));
		cr_assert_eq(verdict, USER_OK);
	} else {
		cr_assert_str_eq(user_clear_invalid_field(&f), invalid_field);
	}
}

static void id_empty(user_fields *f)
{
	f->user_id[0] = '\0';
}

static void id_dot(user_fields *f)
{
	strcpy(f->user_id, "u.1");
}

static void id_longest(user_fields *f)
{
	memset(f->user_id, 'i', USER_ID_MAX - 1);
}

static void id_unterminated(user_fields *f)
{
	memset(f->user_id, 'i', USER_ID_MAX);
}

static void email_upper(user_fields *f)
{
	strcpy(f->email, "Ada@example.org");
}

static void email_space(user_fields *f)
{
	strcpy(f->email, " ada@example.org");
}

static void email_no_at(user_fields *f)
{
	strcpy(f->email, "ada.example.org");
}

static void email_unicode(user_fields *f)
{
	strcpy(f->email, "j\xc3\xb6rg@b\xc3\xbc"
	                 "cher.de");
}

static void email_unterminated(user_fields *f)
{
	memset(f->email, 'e', USER_EMAIL_MAX);
}

static void name_empty(user_fields *f)
{
	f->name[0] = '\0';
}

static void name_control(user_fields *f)
{
	strcpy(f->name, "Ada\n");
}

static void name_bad_utf8(user_fields *f)
{
	strcpy(f->name, "Ad\xe1");
}

static void name_longest(user_fields *f)
{
	memset(f->name, 'n', USER_NAME_MAX - 1);
}

static void name_unterminated(user_fields *f)
{
	memset(f->name, 'n', USER_NAME_MAX);
}

static void name_three_and_four_bytes(user_fields *f)
{
	strcpy(f->name, "\xe2\x82\xac \xf0\x9f\x91\x95 \xe4\xb8\xad");
}

static void name_overlong(user_fields *f)
{
	strcpy(f->name, "\xe0\x80\xaf");
}

static void name_surrogate(user_fields *f)
{
	strcpy(f->name, "\xed\xb0\x80");
}

static void name_past_max(user_fields *f)
{
	strcpy(f->name, "\xf4\x90\x80\x80");
}

static void name_bad_lead(user_fields *f)
{
	strcpy(f->name, "\xc1\xbf");
}

static void name_truncated(user_fields *f)
{
	strcpy(f->name, "a\xf0\x9f\x91");
}

static void name_bad_continuation(user_fields *f)
{
	strcpy(f->name, "\xe2\x28\xa1");
}

static void name_c1(user_fields *f)
{
	strcpy(f->name, "a\xc2\x9b");
}

static void hash_argon2i(user_fields *f)
{
	strcpy(f->password_hash, "$argon2i$v=19$m=4096,t=3,p=1$c2FsdA$aGFzaA");
}

static void hash_prefix_only(user_fields *f)
{
	strcpy(f->password_hash, "$argon2id$");
}

static void hash_space(user_fields *f)
{
	strcpy(f->password_hash, "$argon2id$v=19 x");
}

static void hash_plain(user_fields *f)
{
	strcpy(f->password_hash, "hunter2");
}

static void hash_longest(user_fields *f)
{
	memset(f->password_hash, 'h', USER_PASSWORD_HASH_MAX - 1);
	memcpy(f->password_hash, "$argon2id$", 10);
}

static void hash_unterminated(user_fields *f)
{
	memset(f->password_hash, 'h', USER_PASSWORD_HASH_MAX);
	memcpy(f->password_hash, "$argon2id$", 10);
}

static void role_none(user_fields *f)
{
	f->role = USER_ROLE_NONE;
}

static void role_unknown(user_fields *f)
{
	f->role = (user_role)9;
}

Test(user, register_checks_every_field)
{
	check_register(id_empty, "user_id");
	check_register(id_dot, "user_id");
	check_register(id_longest, NULL);
	check_register(id_unterminated, "user_id");
	check_register(email_upper, "email");
	check_register(email_space, "email");
	check_register(email_no_at, "email");
	check_register(email_unicode, "email"); /* a new account: ASCII only (events may hold it) */
	check_register(email_unterminated, "email");
	check_register(name_empty, "name");
	check_register(name_control, "name");
	check_register(name_bad_utf8, "name");
	check_register(name_three_and_four_bytes, NULL);
	check_register(name_overlong, "name");
	check_register(name_surrogate, "name");
	check_register(name_past_max, "name");
	check_register(name_bad_lead, "name");
	check_register(name_truncated, "name");
	check_register(name_bad_continuation, "name");
	check_register(name_c1, "name");
	check_register(name_longest, NULL);
	check_register(name_unterminated, "name");
	check_register(hash_argon2i, "password_hash");
	check_register(hash_prefix_only, "password_hash");
	check_register(hash_space, "password_hash");
	check_register(hash_plain, "password_hash");
	check_register(hash_longest, NULL);
	check_register(hash_unterminated, "password_hash");
	check_register(role_none, "role");
	check_register(role_unknown, "role");
}

Test(user, a_real_libsodium_hash_is_accepted)
{
	user_fields f = ada_clear();

	cr_assert_eq(crypto_pwhash_str(f.password_hash, "correct horse", 13, crypto_pwhash_OPSLIMIT_MIN,
	                               crypto_pwhash_MEMLIMIT_MIN),
	             0);
	cr_assert_null(user_clear_invalid_field(&f));
	f = sealed(f);
	when(register_user(f));
	then_event(registered(f));
}

Test(user, register_refuses_clear_personal_fields_and_tokens_of_another_key)
{
	user_fields clear = ada_clear();
	user_command c = register_user(clear);
	when(c);
	then_rejected(USER_REJ_INVALID);
	cr_assert_str_eq(user_invalid_field(&c), "kid");
	strcpy(clear.kid, data_kid);
	c = register_user(clear);
	when(c);
	then_rejected(USER_REJ_INVALID);
	cr_assert_str_eq(user_invalid_field(&c), "kid", "clear fields with a kid are still clear");
	/* one field sealed with another key */
	user_fields mixed = ada();
	uint8_t other_key[PD_KEY_BYTES];
	char other_kid[PD_KID_MAX];
	pd_key_new(other_kid, other_key);
	cr_assert_eq(pd_seal(other_key, other_kid, "name", "cmd-register", "Ada", 3, mixed.name,
	                     sizeof mixed.name),
	             ORN_OK);
	c = register_user(mixed);
	when(c);
	then_rejected(USER_REJ_INVALID);
	/* no kid at all */
	user_fields no_kid = ada();
	no_kid.kid[0] = '\0';
	c = register_user(no_kid);
	when(c);
	then_rejected(USER_REJ_INVALID);
}

/* ---- change role ---- */

Test(user, change_role_emits_role_changed)
{
	given(registered(ada()));
	when(change_role(USER_ROLE_ADMIN));
	then_event(role_changed(USER_ROLE_ADMIN));
	and_applied();
	cr_assert_eq(state.fields.role, USER_ROLE_ADMIN);
	when(change_role(USER_ROLE_CUSTOMER));
	then_event(role_changed(USER_ROLE_CUSTOMER));
}

Test(user, change_to_the_same_role_is_no_change)
{
	given(registered(ada()));
	when(change_role(USER_ROLE_CUSTOMER));
	then_rejected(USER_REJ_NO_CHANGE);
}

Test(user, change_role_to_no_role_is_invalid)
{
	user_command c = change_role(USER_ROLE_NONE);

	given(registered(ada()));
	when(c);
	then_rejected(USER_REJ_INVALID);
	cr_assert_str_eq(user_invalid_field(&c), "role");
	/* change role looks at the role only */
	c = change_role(USER_ROLE_ADMIN);
	cr_assert_null(user_invalid_field(&c));
}

Test(user, commands_on_a_missing_user_are_not_found)
{
	when(change_role(USER_ROLE_ADMIN));
	then_rejected(USER_REJ_NOT_FOUND);
	when((user_command){.kind = (user_command_kind)11});
	then_rejected(USER_REJ_NOT_FOUND);
}

Test(user, an_unknown_command_kind_is_invalid)
{
	given(registered(ada()));
	when((user_command){.kind = (user_command_kind)11});
	then_rejected(USER_REJ_INVALID);
	cr_assert_null(user_invalid_field(&(user_command){.kind = (user_command_kind)11}));
}

Test(user, evolve_ignores_odd_role_changes)
{
	given(role_changed(USER_ROLE_ADMIN));
	cr_assert(!state.exists);
	cr_assert_eq(state.fields.role, USER_ROLE_NONE);
	given(registered(ada()));
	given(role_changed(USER_ROLE_NONE));
	given(role_changed((user_role)7));
	given((user_event){.kind = (user_event_kind)12});
	cr_assert_eq(state.fields.role, USER_ROLE_CUSTOMER);
}

/* ---- names ---- */

Test(user, codes_roles_and_type_names_are_stable)
{
	const char *codes[] = {"", "not_found", "exists", "invalid", "no_change", "wrong_state"};

	for (int v = USER_OK; v <= USER_REJ_WRONG_STATE; v++)
		cr_assert_str_eq(user_verdict_code((user_verdict)v), codes[v]);
	cr_assert_str_eq(user_verdict_code((user_verdict)50), "unknown");
	cr_assert_str_eq(user_role_name(USER_ROLE_CUSTOMER), "customer");
	cr_assert_str_eq(user_role_name(USER_ROLE_ADMIN), "admin");
	cr_assert_null(user_role_name(USER_ROLE_NONE));
	cr_assert_null(user_role_name((user_role)3));
	cr_assert_eq(user_role_parse("admin", 5), USER_ROLE_ADMIN);
	cr_assert_eq(user_role_parse("customer", 8), USER_ROLE_CUSTOMER);
	cr_assert_eq(user_role_parse("admin", 4), USER_ROLE_NONE);
	cr_assert_eq(user_role_parse("Admin", 5), USER_ROLE_NONE);
	cr_assert_eq(user_role_parse(NULL, 0), USER_ROLE_NONE);
	cr_assert_str_eq(user_command_type(USER_REGISTER), "RegisterUser");
	cr_assert_str_eq(user_command_type(USER_CHANGE_ROLE), "ChangeRole");
	cr_assert_str_eq(user_command_type(USER_REVOKE_TOKEN), "RevokeToken");
	cr_assert_str_eq(user_command_type(USER_REVOKE_TOKENS), "RevokeTokens");
	cr_assert_str_eq(user_command_type(USER_REQUEST_ERASURE), "RequestErasure");
	cr_assert_str_eq(user_command_type(USER_COMPLETE_ERASURE), "CompleteErasure");
	cr_assert_str_eq(user_command_type(USER_CHANGE_PASSWORD), "ChangePassword");
	cr_assert_null(user_command_type((user_command_kind)11));
	cr_assert_str_eq(user_event_type(USER_REGISTERED), "UserRegistered");
	cr_assert_str_eq(user_event_type(USER_ROLE_CHANGED), "RoleChanged");
	cr_assert_str_eq(user_event_type(USER_TOKEN_REVOKED), "TokenRevoked");
	cr_assert_str_eq(user_event_type(USER_TOKENS_REVOKED), "TokensRevoked");
	cr_assert_str_eq(user_event_type(USER_ERASURE_REQUESTED_EVENT), "ErasureRequested");
	cr_assert_str_eq(user_event_type(USER_ERASED_EVENT), "CustomerErased");
	cr_assert_str_eq(user_event_type(USER_PASSWORD_CHANGED), "PasswordChanged");
	cr_assert_null(user_event_type((user_event_kind)12));
}

/* ---- email normalization and the key ---- */

Test(user, emails_are_trimmed_and_lowercased)
{
	char email[USER_EMAIL_MAX];

	cr_assert_eq(user_email_normalize(" \t Ada.Lovelace+Shop@Example.ORG\r\n", email, sizeof email),
	             ORN_OK);
	cr_assert_str_eq(email, "ada.lovelace+shop@example.org");
	cr_assert(user_email_valid(email));
	cr_assert_eq(user_email_normalize("a@b", email, sizeof email), ORN_OK);
	cr_assert_str_eq(email, "a@b");
	cr_assert_eq(user_email_normalize("J\xc3\x96RG@B\xc3\x9c"
	                                  "CHER.DE",
	                                  email, sizeof email),
	             ORN_OK);
	cr_assert_str_eq(email, "j\xc3\x96rg@b\xc3\x9c"
	                        "cher.de"); /* only ASCII letters are folded */
}

Test(user, invalid_emails_are_refused)
{
	const char *bad[] = {"",       "   ",   "ab",      "@b",         "a@",     "a@@b",     "a@b@c",
	                     "ab c@d", "a\t@b", "a@b\x7f", "a@\xc2\x85", "a@\xff", "noatsign", "a@b\x01"};
	char email[USER_EMAIL_MAX], key[USER_KEY_MAX];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		strcpy(email, "junk");
		cr_assert_eq(user_email_normalize(bad[i], email, sizeof email), ORN_EINVAL, "case %zu", i);
		cr_assert_str_eq(email, "");
		cr_assert_eq(user_key_for_email(bad[i], key, sizeof key), ORN_EINVAL, "case %zu", i);
		cr_assert(!user_email_valid(bad[i]), "case %zu", i);
	}
}

Test(user, email_length_bounds)
{
	char raw[USER_EMAIL_MAX + 8], email[USER_EMAIL_MAX];

	memset(raw, 'a', sizeof raw);
	memcpy(raw + USER_EMAIL_MAX - 1 - 6, "@b.org", 6);
	raw[USER_EMAIL_MAX - 1] = '\0'; /* 254 bytes */
	cr_assert_eq(user_email_normalize(raw, email, sizeof email), ORN_OK);
	cr_assert(user_email_valid(email));
	cr_assert_eq(user_email_normalize(raw, email, USER_EMAIL_MAX - 1), ORN_ETOOBIG);
	cr_assert_str_eq(email, "");
	cr_assert_eq(user_email_normalize(raw, NULL, 0), ORN_ETOOBIG);
	memset(raw, 'a', sizeof raw);
	memcpy(raw + USER_EMAIL_MAX - 6, "@b.org", 6);
	raw[USER_EMAIL_MAX] = '\0'; /* 255 bytes */
	cr_assert_eq(user_email_normalize(raw, email, sizeof email), ORN_EINVAL);
	memset(email, 'a', sizeof email); /* unterminated */
	cr_assert(!user_email_valid(email));
}

Test(user, the_key_is_u_and_32_hex_digits_of_the_normalized_address)
{
	char a[USER_KEY_MAX], b[USER_KEY_MAX];
	unsigned char hash[16];
	char hex[33];

	cr_assert_eq(user_key_for_email("Ada@Example.org", a, sizeof a), ORN_OK);
	cr_assert_eq(user_key_for_email("  ada@example.ORG ", b, sizeof b), ORN_OK);
	cr_assert_str_eq(a, b);
	cr_assert_eq(strlen(a), 33);
	cr_assert_eq(a[0], 'u');
	cr_assert_eq(strspn(a + 1, "0123456789abcdef"), 32);
	cr_assert_null(strstr(a, "ada"));
	/* BLAKE2b-128 keyed with the public domain key */
	crypto_generichash(hash, sizeof hash, (const unsigned char *)"ada@example.org", 15,
	                   (const unsigned char *)"orion.user.email", 16);
	sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
	cr_assert_str_eq(a + 1, hex);
	cr_assert_eq(user_key_for_email("bob@example.org", b, sizeof b), ORN_OK);
	cr_assert_str_neq(a, b);
}

Test(user, the_key_is_stable_across_releases)
{
	char key[USER_KEY_MAX];

	/* a change here re-keys every user: the stream would no longer find them */
	cr_assert_eq(user_key_for_email("ada@example.org", key, sizeof key), ORN_OK);
	cr_assert_str_eq(key, "ubf3de24ce253f93561f5e1b3f19ff8f0");
}

Test(user, the_key_needs_room)
{
	char key[USER_KEY_MAX];

	strcpy(key, "junk");
	cr_assert_eq(user_key_for_email("ada@example.org", key, USER_KEY_MAX - 1), ORN_ETOOBIG);
	cr_assert_str_eq(key, "");
	cr_assert_eq(user_key_for_email("ada@example.org", NULL, 0), ORN_ETOOBIG);
}

/* ---- payload codecs ---- */

static void assert_command_round_trip(user_command c)
{
	user_command decoded;

	mp_writer_reset(writer);
	cr_assert_eq(user_command_encode(writer, &c), ORN_OK);
	cr_assert_eq(user_command_decode(user_command_type(c.kind), mp_writer_data(writer),
	                                 mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_eq(decoded.kind, c.kind);
	assert_fields_eq(&decoded.fields, &c.fields);
}

static void assert_event_round_trip(user_event e)
{
	user_event decoded;

	mp_writer_reset(writer);
	cr_assert_eq(user_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(user_event_decode(user_event_type(e.kind), mp_writer_data(writer),
	                               mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_eq(decoded.kind, e.kind);
	assert_fields_eq(&decoded.fields, &e.fields);
}

Test(user, commands_and_events_round_trip)
{
	user_fields odd = {.role = USER_ROLE_NONE};

	assert_command_round_trip(register_user(ada()));
	assert_command_round_trip(register_user(odd)); /* decide judges the values */
	assert_command_round_trip(change_role(USER_ROLE_ADMIN));
	assert_command_round_trip(change_role(USER_ROLE_NONE));
	assert_event_round_trip(registered(ada()));
	assert_event_round_trip(role_changed(USER_ROLE_ADMIN));
	assert_event_round_trip(role_changed(USER_ROLE_CUSTOMER));
}

Test(user, change_role_carries_only_the_role)
{
	user_command c = {.kind = USER_CHANGE_ROLE, .fields = ada()};
	mp_reader r;
	uint32_t count;

	c.fields.role = USER_ROLE_ADMIN;
	cr_assert_eq(user_command_encode(writer, &c), ORN_OK);
	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_read_map(&r, &count), ORN_OK);
	cr_assert_eq(count, 1);
}

Test(user, encoders_reject_unknown_kinds_and_unterminated_strings)
{
	user_command c = register_user(ada());
	user_event e = registered(ada());

	cr_assert_eq(user_command_encode(writer, &(user_command){.kind = (user_command_kind)11}), ORN_EINVAL);
	cr_assert_eq(user_event_encode(writer, &(user_event){.kind = (user_event_kind)12}), ORN_EINVAL);
	memset(c.fields.password_hash, 'h', sizeof c.fields.password_hash);
	cr_assert_eq(user_command_encode(writer, &c), ORN_EINVAL);
	memset(e.fields.email, 'e', sizeof e.fields.email);
	cr_assert_eq(user_event_encode(writer, &e), ORN_EINVAL);
	e.kind = USER_ROLE_CHANGED; /* the email is not part of it */
	cr_assert_eq(user_event_encode(writer, &e), ORN_OK);
}

static orn_rc decode_written_command(const char *type, user_command *c)
{
	return user_command_decode(type, mp_writer_data(writer), mp_writer_size(writer), c);
}

static orn_rc decode_written_event(const char *type)
{
	user_event e;

	return user_event_decode(type, mp_writer_data(writer), mp_writer_size(writer), &e);
}

static void write_single_key(const char *key)
{
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, key);
}

Test(user, decoders_are_strict)
{
	user_command c;
	user_event e;
	char long_name[USER_NAME_MAX + 1];

	cr_assert_eq(user_command_encode(writer, &(user_command){.kind = USER_REGISTER, .fields = ada()}),
	             ORN_OK);
	cr_assert_eq(decode_written_command("BecomeAdmin", &c), ORN_EINVAL);
	cr_assert_eq(decode_written_command(NULL, &c), ORN_EINVAL);
	cr_assert_eq(decode_written_event(USER_CMD_REGISTER), ORN_EINVAL);
	for (size_t len = 0; len < mp_writer_size(writer); len++) {
		cr_assert_eq(user_command_decode(USER_CMD_REGISTER, mp_writer_data(writer), len, &c),
		             ORN_EDECODE);
		cr_assert_eq(user_event_decode(USER_EV_REGISTERED, mp_writer_data(writer), len, &e),
		             ORN_EDECODE);
	}
	write_single_key("role");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_EDECODE);
	write_single_key("role");
	mp_write_bin(writer, "admin", 5);
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_EDECODE);
	write_single_key("role");
	mp_write_cstr(writer, "superuser"); /* decodes: decide rejects it */
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_OK);
	cr_assert_eq(c.fields.role, USER_ROLE_NONE);
	cr_assert_eq(decode_written_event(USER_EV_ROLE_CHANGED), ORN_EDECODE);
	write_single_key("role");
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_OK);
	cr_assert_eq(c.fields.role, USER_ROLE_NONE);
	cr_assert_eq(decode_written_event(USER_EV_ROLE_CHANGED), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "role");
	mp_write_cstr(writer, "admin");
	mp_write_cstr(writer, "role");
	mp_write_cstr(writer, "admin");
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 0);
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_array(writer, 0);
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_nil(writer);
	mp_write_cstr(writer, "admin");
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_EDECODE);
	write_single_key("role");
	mp_write_cstr(writer, "admin");
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_EDECODE);
	memset(long_name, 'n', sizeof long_name);
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "role");
	mp_write_cstr(writer, "admin");
	mp_write_cstr(writer, "name"); /* not a change-role key: skipped whatever its size */
	mp_write_str(writer, long_name, sizeof long_name);
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_OK);
	cr_assert_eq(c.fields.role, USER_ROLE_ADMIN);
	cr_assert_str_eq(c.fields.name, "");
}

Test(user, over_long_strings_and_embedded_nul_do_not_decode)
{
	user_command c = register_user(ada());
	char name[USER_NAME_MAX + 1];

	memset(name, 'n', sizeof name);
	mp_write_map(writer, 5);
	mp_write_cstr(writer, "user_id");
	mp_write_cstr(writer, c.fields.user_id);
	mp_write_cstr(writer, "email");
	mp_write_cstr(writer, c.fields.email);
	mp_write_cstr(writer, "name");
	mp_write_str(writer, name, USER_NAME_MAX);
	mp_write_cstr(writer, "password_hash");
	mp_write_cstr(writer, c.fields.password_hash);
	mp_write_cstr(writer, "role");
	mp_write_cstr(writer, "admin");
	cr_assert_eq(decode_written_command(USER_CMD_REGISTER, &c), ORN_EDECODE);
	write_single_key("role");
	mp_write_str(writer, "admin\0", 6);
	cr_assert_eq(decode_written_command(USER_CMD_CHANGE_ROLE, &c), ORN_OK);
	cr_assert_eq(c.fields.role, USER_ROLE_NONE);
}

Test(user, events_decide_could_not_have_emitted_are_rejected)
{
	user_fields f = ada();

	strcpy(f.email, "Ada@example.org");
	cr_assert_eq(user_event_encode(writer, &(user_event){.kind = USER_REGISTERED, .fields = f}), ORN_OK);
	cr_assert_eq(decode_written_event(USER_EV_REGISTERED), ORN_EDECODE);
	f = ada();
	f.role = USER_ROLE_NONE;
	mp_writer_reset(writer);
	cr_assert_eq(user_event_encode(writer, &(user_event){.kind = USER_REGISTERED, .fields = f}), ORN_OK);
	cr_assert_eq(decode_written_event(USER_EV_REGISTERED), ORN_EDECODE);
}

/* ---- snapshot, restore, view ---- */

static void assert_snapshot_round_trip(void)
{
	user_state restored;

	user_state_init(&restored);
	mp_writer_reset(writer);
	cr_assert_eq(user_kind.snapshot(&state, writer), ORN_OK);
	cr_assert_eq(user_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	cr_assert_eq(restored.exists, state.exists);
	assert_fields_eq(&restored.fields, &state.fields);
}

Test(user, restore_gives_back_the_replayed_state)
{
	assert_snapshot_round_trip();
	given(registered(ada()));
	assert_snapshot_round_trip();
	given(role_changed(USER_ROLE_ADMIN));
	assert_snapshot_round_trip();
}

static orn_rc restore_written(void)
{
	return user_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer));
}

/* Writes the snapshot of a state (and an extra key when given). */
static void write_snapshot(bool exists, user_fields f, const char *extra)
{
	user_state s = {.exists = exists, .fields = f};
	size_t size;
	uint8_t *copy;

	mp_writer_reset(writer);
	cr_assert_eq(user_kind.snapshot(&s, writer), ORN_OK);
	if (extra == NULL)
		return;
	size = mp_writer_size(writer);
	copy = malloc(size);
	cr_assert_not_null(copy);
	memcpy(copy, mp_writer_data(writer), size);
	mp_writer_reset(writer);
	mp_write_map(writer, (uint32_t)(copy[0] & 0x0f) + 1);
	mp_write_raw(writer, copy + 1, size - 1); /* the pairs after the fixmap header */
	mp_write_cstr(writer, extra);
	mp_write_bool(writer, true);
	free(copy);
}

Test(user, restore_rejects_inconsistent_snapshots_and_keeps_the_state)
{
	user_fields bad = ada();

	given(registered(ada()));
	write_snapshot(true, ada(), "future");
	cr_assert_eq(restore_written(), ORN_OK);
	strcpy(bad.password_hash, "plain");
	write_snapshot(true, bad, NULL);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(false, ada(), NULL);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(true, ada(), "exists");
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(true, ada(), "email");
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_single_key("exists");
	mp_write_bool(writer, false);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_single_key("exists");
	mp_write_nil(writer);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_int(writer, 3);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_int(writer, 3);
	mp_write_int(writer, 3);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(false, (user_fields){0}, NULL);
	mp_write_nil(writer);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	cr_assert(state.exists);
	cr_assert_str_eq(state.fields.user_id, "usr_7f3a-X");
	write_snapshot(false, (user_fields){0}, NULL);
	cr_assert_eq(restore_written(), ORN_OK);
	cr_assert(!state.exists);
}

Test(user, snapshot_reports_an_unterminated_field)
{
	user_state s = {.exists = true, .fields = ada()};

	memset(s.fields.name, 'n', sizeof s.fields.name);
	cr_assert_eq(user_kind.snapshot(&s, writer), ORN_EINVAL);
}

/* The writer's value as JSON text. */
static void written_json(char *json, size_t cap)
{
	mp_reader r;
	mp_writer *text = mp_writer_create();

	cr_assert_not_null(text);
	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_to_json(&r, text), ORN_OK);
	snprintf(json, cap, "%.*s", (int)mp_writer_size(text), (const char *)mp_writer_data(text));
	mp_writer_destroy(text);
}

Test(user, view_leaves_the_password_hash_out)
{
	char json[4096], expected[4096];

	cr_assert_eq(user_kind.view(&state, writer), ORN_OK);
	written_json(json, sizeof json);
	cr_assert_str_eq(json,
	                 "{\"exists\":false,\"erasure\":0,\"user_id\":\"\",\"email\":\"\",\"name\":\"\","
	                 "\"role\":null,\"token_version\":0,\"kid\":\"\",\"verified\":true}");
	given(registered(ada()));
	mp_writer_reset(writer);
	cr_assert_eq(user_kind.view(&state, writer), ORN_OK);
	written_json(json, sizeof json);
	user_fields f = ada();
	snprintf(expected, sizeof expected,
	         "{\"exists\":true,\"erasure\":0,\"user_id\":\"usr_7f3a-X\",\"email\":\"%s\",\"name\":\"%s\","
	         "\"role\":\"customer\",\"token_version\":0,\"kid\":\"%s\",\"verified\":true}",
	         f.email, f.name, f.kid);
	cr_assert_str_eq(json, expected);
	cr_assert_null(strstr(json, "ada@example.org"), "the view holds the sealed fields, as stored");
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

TestSuite(user_kind, .init = kind_setup, .fini = kind_teardown);

static orn_rc kind_decide(user_command c)
{
	env_envelope cmd = {.schema = 1};

	mp_writer_reset(writer);
	cr_assert_eq(user_command_encode(writer, &c), ORN_OK);
	snprintf(cmd.type, sizeof cmd.type, "%s", user_command_type(c.kind));
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	act_decision_clear(decision);
	return user_kind.decide(&state, &cmd, decision);
}

static void kind_apply(void)
{
	env_envelope event;

	for (size_t i = 0; i < act_decision_count(decision); i++) {
		cr_assert_eq(act_decision_event(decision, i, &event), ORN_OK);
		cr_assert_eq(user_kind.evolve(&state, &event), ORN_OK);
	}
}

static void then_decision_rejected(const char *code, const char *detail)
{
	cr_assert_str_eq(act_decision_rejection(decision), code);
	cr_assert_eq(act_decision_count(decision), 0);
	cr_assert_str_eq(act_decision_detail(decision), detail);
}

Test(user_kind, describes_the_aggregate)
{
	user_state *s = malloc(user_kind.state_size);

	cr_assert_str_eq(user_kind.aggregate, "user");
	cr_assert_eq(user_kind.state_size, sizeof(user_state));
	cr_assert_eq(user_kind.snapshot_schema, USER_SNAPSHOT_SCHEMA);
	cr_assert_not_null(s);
	user_kind.init(s);
	cr_assert(!s->exists);
	user_kind.dispose(s);
	free(s);
}

Test(user_kind, a_user_registers_and_changes_role_through_the_kind_table)
{
	env_envelope event;

	cr_assert_eq(kind_decide(register_user(ada())), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 1);
	cr_assert_eq(act_decision_event(decision, 0, &event), ORN_OK);
	cr_assert_str_eq(event.type, USER_EV_REGISTERED);
	cr_assert_eq(event.schema, 1);
	kind_apply();
	cr_assert(state.exists);
	cr_assert_eq(kind_decide(change_role(USER_ROLE_ADMIN)), ORN_OK);
	kind_apply();
	cr_assert_eq(state.fields.role, USER_ROLE_ADMIN);
}

Test(user_kind, rejections_carry_the_code_and_a_detail)
{
	user_fields f = ada();

	cr_assert_eq(kind_decide(change_role(USER_ROLE_ADMIN)), ORN_OK);
	then_decision_rejected("not_found", "the user does not exist");
	strcpy(f.email, "nope");
	cr_assert_eq(kind_decide(register_user(f)), ORN_OK);
	then_decision_rejected("invalid",
	                       "email: a normalized address of RFC 5321 syntax: an ASCII dot-atom, "
	                       "'@', a domain of LDH labels (IDN as xn--)");
	given(registered(ada()));
	cr_assert_eq(kind_decide(register_user(ada())), ORN_OK);
	then_decision_rejected("exists", "a user with this email already exists");
	cr_assert_eq(kind_decide(change_role(USER_ROLE_CUSTOMER)), ORN_OK);
	then_decision_rejected("no_change", "the user already has the role customer");
	cr_assert_eq(kind_decide(change_role(USER_ROLE_NONE)), ORN_OK);
	then_decision_rejected("invalid", "role: customer or admin");
}

Test(user_kind, undecodable_commands_and_events_are_errors)
{
	env_envelope env = {.type = USER_CMD_CHANGE_ROLE,
	                    .schema = 1,
	                    .payload = (const uint8_t *)"\x80",
	                    .payload_len = 1};

	cr_assert_eq(user_kind.decide(&state, &env, decision), ORN_EDECODE);
	env.schema = 2;
	cr_assert_eq(user_kind.decide(&state, &env, decision), ORN_EDECODE);
	snprintf(env.type, sizeof env.type, "%s", USER_EV_ROLE_CHANGED);
	cr_assert_eq(user_kind.evolve(&state, &env), ORN_EDECODE);
	env.schema = 1;
	cr_assert_eq(user_kind.evolve(&state, &env), ORN_EDECODE);
	snprintf(env.type, sizeof env.type, "UserHacked");
	cr_assert_eq(user_kind.evolve(&state, &env), ORN_EINVAL);
	cr_assert_null(act_decision_rejection(decision));
}

Test(user_kind, decide_reports_running_out_of_memory_and_a_full_decision)
{
	env_envelope cmd = {.type = USER_CMD_REGISTER, .schema = 1};
	orn_rc rc;

	cr_assert_eq(user_command_encode(writer, &(user_command){.kind = USER_REGISTER, .fields = ada()}),
	             ORN_OK);
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	if (failalloc_available()) {
		for (long n = 0;; n++) {
			act_decision_clear(decision);
			failalloc_after(n);
			rc = user_kind.decide(&state, &cmd, decision);
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
	cr_assert_eq(user_kind.decide(&state, &cmd, decision), ORN_ETOOBIG);
}

/* ---- tokens Orion can take back (issue 14, finding 6) ---- */

static user_command revoke_token(const char *jti, int64_t expires_at)
{
	user_command c = {.kind = USER_REVOKE_TOKEN, .fields = {.expires_at = expires_at}};
	snprintf(c.fields.jti, sizeof c.fields.jti, "%s", jti);
	return c;
}

Test(user, revoking_one_token_records_its_id_and_expiry)
{
	user_event expected = {.kind = USER_TOKEN_REVOKED, .fields = {.expires_at = 1900000000}};
	strcpy(expected.fields.jti, "0123456789abcdef0123456789abcdef");
	given(registered(ada()));
	when(revoke_token("0123456789abcdef0123456789abcdef", 1900000000));
	then_event(expected);
	and_applied();
	cr_assert_eq(state.fields.token_version, 0, "one token: the version stays");
	assert_command_round_trip(revoke_token("0123456789abcdef0123456789abcdef", 1900000000));
	assert_event_round_trip(expected);
}

Test(user, a_revocation_needs_an_account_a_token_id_and_an_expiry)
{
	when(revoke_token("abc", 1900000000));
	then_rejected(USER_REJ_NOT_FOUND);
	given(registered(ada()));
	user_command c = revoke_token("has space", 1900000000);
	when(c);
	then_rejected(USER_REJ_INVALID);
	cr_assert_str_eq(user_invalid_field(&c), "jti");
	c = revoke_token("", 1900000000);
	cr_assert_str_eq(user_invalid_field(&c), "jti");
	c = revoke_token("abc", 0);
	when(c);
	then_rejected(USER_REJ_INVALID);
	cr_assert_str_eq(user_invalid_field(&c), "expires_at");
}

Test(user, revoking_every_token_moves_the_version_on)
{
	given(registered(ada()));
	when((user_command){.kind = USER_REVOKE_TOKENS});
	then_event((user_event){.kind = USER_TOKENS_REVOKED, .fields = {.token_version = 1}});
	and_applied();
	cr_assert_eq(state.fields.token_version, 1);
	when((user_command){.kind = USER_REVOKE_TOKENS});
	then_event((user_event){.kind = USER_TOKENS_REVOKED, .fields = {.token_version = 2}});
	and_applied();
	/* an older version never goes back */
	given((user_event){.kind = USER_TOKENS_REVOKED, .fields = {.token_version = 1}});
	cr_assert_eq(state.fields.token_version, 2);
	assert_command_round_trip((user_command){.kind = USER_REVOKE_TOKENS});
	assert_event_round_trip((user_event){.kind = USER_TOKENS_REVOKED, .fields = {.token_version = 2}});
	/* a negative version does not decode */
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "token_version");
	mp_write_int(writer, -1);
	user_event e;
	cr_assert_eq(
	        user_event_decode(USER_EV_TOKENS_REVOKED, mp_writer_data(writer), mp_writer_size(writer), &e),
	        ORN_EDECODE);
}

Test(user, the_snapshot_keeps_the_version_and_an_older_one_restores_with_0)
{
	user_fields f = ada();
	f.token_version = 3;
	write_snapshot(true, f, NULL);
	cr_assert_eq(restore_written(), ORN_OK);
	cr_assert_eq(state.fields.token_version, 3);
	/* written before token versions: the six account pairs only */
	mp_writer_reset(writer);
	mp_write_map(writer, 6);
	mp_write_cstr(writer, "exists");
	mp_write_bool(writer, true);
	mp_write_cstr(writer, "user_id");
	mp_write_cstr(writer, f.user_id);
	mp_write_cstr(writer, "email");
	mp_write_cstr(writer, f.email);
	mp_write_cstr(writer, "name");
	mp_write_cstr(writer, f.name);
	mp_write_cstr(writer, "password_hash");
	mp_write_cstr(writer, f.password_hash);
	mp_write_cstr(writer, "role");
	mp_write_cstr(writer, "customer");
	cr_assert_eq(restore_written(), ORN_OK);
	cr_assert_eq(state.fields.token_version, 0);
}

/* ---- RFC 5321 syntax of a new account's address (issue 14, finding 5) ---- */

Test(user, a_new_accounts_address_has_rfc_5321_syntax)
{
	static const char *const good[] = {"ada@example.org",
	                                   "a.b+tag@mail.example.co.uk",
	                                   "o'neil@example.org",
	                                   "x@xn--bcher-kva.example",
	                                   "1@a1.io",
	                                   "a!#$%&'*+/=?^_`{|}~-@ex-ample.org"};
	static const char *const bad[] = {
	        "a,b@example.com",
	        "\"<script>\"@example.com",
	        "a@example.com>",
	        "\xef\xbd\x81"
	        "dmin@example.com", /* fullwidth a */
	        "ada@example",
	        "ada@localhost",
	        "ada@1.2.3.4",
	        "ada@[127.0.0.1]",
	        ".ada@example.org",
	        "ada.@example.org",
	        "a..da@example.org",
	        "ada@-example.org",
	        "ada@example-.org",
	        "ada@exa_mple.org",
	        "ada@example..org",
	        "ada@b\xc3\xbc"
	        "cher.example",
	        "ada(comment)@example.org",
	        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org", /* 65 */
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		cr_assert(user_email_syntax_valid(good[i]), "%s", good[i]);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_not(user_email_syntax_valid(bad[i]), "%s", bad[i]);
	/* a new account with such an address is refused naming the email, before it is sealed */
	user_fields f = ada_clear();
	strcpy(f.email, "a,b@example.com");
	cr_assert_str_eq(user_clear_invalid_field(&f), "email");
	/* an event that holds one still decodes: the log stays readable */
	assert_event_round_trip(registered(f));
}

/* ---- erasure (ADR 027) ---- */

static user_command command_of(user_command_kind kind)
{
	return (user_command){.kind = kind};
}

static user_event event_of(user_event_kind kind)
{
	return (user_event){.kind = kind};
}

/* CustomerErased as the decider emits it for ada(): naming her account and key. */
static user_event erased_of_ada(void)
{
	user_event e = event_of(USER_ERASED_EVENT);
	strcpy(e.fields.user_id, "usr_7f3a-X");
	strcpy(e.fields.kid, data_kid);
	return e;
}

Test(user, an_erasure_is_asked_once_then_completed_once_and_blanks_the_personal_fields)
{
	given(registered(ada()));
	when(command_of(USER_REQUEST_ERASURE));
	then_event(event_of(USER_ERASURE_REQUESTED_EVENT));
	and_applied();
	cr_assert_eq(state.erasure, USER_ERASURE_REQUESTED);
	when(command_of(USER_REQUEST_ERASURE));
	cr_assert_eq(verdict, USER_OK);
	cr_assert_eq(out.count, 0, "asked again: nothing new");
	when(command_of(USER_COMPLETE_ERASURE));
	then_event(erased_of_ada()); /* names the account and its key: the read models blank by them */
	and_applied();
	cr_assert_eq(state.erasure, USER_ERASED);
	cr_assert_str_eq(state.fields.email, "");
	cr_assert_str_eq(state.fields.name, "");
	cr_assert_str_eq(state.fields.password_hash, "");
	cr_assert_str_eq(state.fields.user_id, "usr_7f3a-X", "the pseudonymous id stays");
	cr_assert_str_eq(state.fields.kid, data_kid);
	when(command_of(USER_COMPLETE_ERASURE));
	cr_assert_eq(verdict, USER_OK);
	cr_assert_eq(out.count, 0, "completed twice: recorded once");
	when(command_of(USER_REQUEST_ERASURE));
	cr_assert_eq(out.count, 0);
}

Test(user, an_erasure_nobody_asked_for_does_not_complete)
{
	when(command_of(USER_COMPLETE_ERASURE));
	then_rejected(USER_REJ_NOT_FOUND);
	given(registered(ada()));
	when(command_of(USER_COMPLETE_ERASURE));
	then_rejected(USER_REJ_WRONG_STATE);
	when(command_of(USER_REQUEST_ERASURE));
	cr_assert_eq(out.count, 1);
}

Test(user, an_erased_account_takes_no_other_command_and_its_address_may_register_again)
{
	given(registered(ada()));
	given(event_of(USER_ERASURE_REQUESTED_EVENT));
	when(register_user(ada()));
	then_rejected(USER_REJ_EXISTS);
	given(event_of(USER_ERASED_EVENT));
	when(change_role(USER_ROLE_ADMIN));
	then_rejected(USER_REJ_NOT_FOUND);
	when((user_command){.kind = USER_REVOKE_TOKENS});
	then_rejected(USER_REJ_NOT_FOUND);
	user_fields again = sealed(ada_clear());
	strcpy(again.user_id, "usr_new");
	when(register_user(again));
	then_event(registered(again));
	and_applied();
	cr_assert_eq(state.erasure, USER_ACTIVE);
	cr_assert_str_eq(state.fields.user_id, "usr_new");
}

Test(user, evolve_ignores_erasure_events_out_of_order)
{
	given(event_of(USER_ERASED_EVENT));
	cr_assert_not(state.exists);
	cr_assert_eq(state.erasure, USER_ACTIVE);
	given(registered(ada()));
	given(event_of(USER_ERASED_EVENT)); /* never asked: still recorded by the log, applied as erased */
	cr_assert_eq(state.erasure, USER_ERASED);
	given(event_of(USER_ERASURE_REQUESTED_EVENT));
	cr_assert_eq(state.erasure, USER_ERASED);
}

Test(user, an_erased_state_snapshots_and_restores)
{
	given(registered(ada()));
	given(event_of(USER_ERASURE_REQUESTED_EVENT));
	mp_writer_reset(writer);
	cr_assert_eq(user_kind.snapshot(&state, writer), ORN_OK);
	user_state restored;
	user_state_init(&restored);
	cr_assert_eq(user_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	cr_assert_eq(restored.erasure, USER_ERASURE_REQUESTED);
	cr_assert_str_eq(restored.fields.email, state.fields.email);
	given(event_of(USER_ERASED_EVENT));
	mp_writer_reset(writer);
	cr_assert_eq(user_kind.snapshot(&state, writer), ORN_OK);
	cr_assert_null(memmem(mp_writer_data(writer), mp_writer_size(writer), "pd1.", 4),
	               "an erased state's snapshot holds no token");
	user_state_init(&restored);
	cr_assert_eq(user_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	cr_assert_eq(restored.erasure, USER_ERASED);
	cr_assert_str_eq(restored.fields.user_id, "usr_7f3a-X");
}

Test(user, registered_events_round_trip_sealed_and_clear_ones_still_decode)
{
	user_event e = registered(ada()), back;
	mp_writer_reset(writer);
	cr_assert_eq(user_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(
	        user_event_decode(USER_EV_REGISTERED, mp_writer_data(writer), mp_writer_size(writer), &back),
	        ORN_OK);
	assert_fields_eq(&back.fields, &e.fields);
	/* written before ADR 027: clear, no kid */
	user_event legacy = registered(ada_clear());
	mp_writer_reset(writer);
	cr_assert_eq(user_event_encode(writer, &legacy), ORN_OK);
	cr_assert_eq(
	        user_event_decode(USER_EV_REGISTERED, mp_writer_data(writer), mp_writer_size(writer), &back),
	        ORN_OK);
	cr_assert_str_eq(back.fields.email, "ada@example.org");
	cr_assert_str_eq(back.fields.kid, "");
	/* a kid with clear fields is no event decide could have written */
	user_event odd = registered(ada_clear());
	strcpy(odd.fields.kid, data_kid);
	mp_writer_reset(writer);
	cr_assert_eq(user_event_encode(writer, &odd), ORN_OK);
	cr_assert_eq(
	        user_event_decode(USER_EV_REGISTERED, mp_writer_data(writer), mp_writer_size(writer), &back),
	        ORN_EDECODE);
	/* CustomerErased written before it named the account carries nothing, and still decodes */
	user_event erased = event_of(USER_ERASED_EVENT);
	mp_writer_reset(writer);
	cr_assert_eq(user_event_encode(writer, &erased), ORN_OK);
	cr_assert_eq(mp_writer_size(writer), 1);
	cr_assert_eq(user_event_decode(USER_EV_ERASED, mp_writer_data(writer), mp_writer_size(writer), &back),
	             ORN_OK);
	cr_assert_eq(back.kind, USER_ERASED_EVENT);
	cr_assert_str_eq(back.fields.user_id, "");
	/* one naming the account round-trips; a bad user id or kid does not decode */
	assert_event_round_trip(erased_of_ada());
	erased = erased_of_ada();
	strcpy(erased.fields.kid, "not-a-kid");
	mp_writer_reset(writer);
	cr_assert_eq(user_event_encode(writer, &erased), ORN_OK);
	cr_assert_eq(user_event_decode(USER_EV_ERASED, mp_writer_data(writer), mp_writer_size(writer), &back),
	             ORN_EDECODE);
	erased = erased_of_ada();
	strcpy(erased.fields.user_id, "bad id!");
	mp_writer_reset(writer);
	cr_assert_eq(user_event_encode(writer, &erased), ORN_OK);
	cr_assert_eq(user_event_decode(USER_EV_ERASED, mp_writer_data(writer), mp_writer_size(writer), &back),
	             ORN_EDECODE);
}

/* A new password hash sealed with key/kid for the event "cmd-password". */
static user_command change_password(const uint8_t key[PD_KEY_BYTES], const char *kid)
{
	user_command c = {.kind = USER_CHANGE_PASSWORD};
	const char *hash = "$argon2id$v=19$m=65536,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA";
	cr_assert_eq(pd_seal(key, kid, "password_hash", "cmd-password", hash, strlen(hash),
	                     c.fields.password_hash, sizeof c.fields.password_hash),
	             ORN_OK);
	return c;
}

Test(user, changing_the_password_sets_the_hash_and_moves_the_version_on)
{
	given(registered(ada()));
	given((user_event){.kind = USER_TOKENS_REVOKED, .fields = {.token_version = 3}});
	user_command c = change_password(data_key, data_kid);
	when(c);
	user_event expected = {.kind = USER_PASSWORD_CHANGED, .fields = {.token_version = 4}};
	strcpy(expected.fields.password_hash, c.fields.password_hash);
	then_event(expected);
	and_applied();
	cr_assert_str_eq(state.fields.password_hash, c.fields.password_hash);
	cr_assert_eq(state.fields.token_version, 4);
	/* the email, name and kid stay */
	cr_assert_str_eq(state.fields.email, ada().email);
	cr_assert_str_eq(state.fields.kid, data_kid);
	/* an older PasswordChanged never takes the version back */
	user_event older = expected;
	older.fields.token_version = 2;
	strcpy(older.fields.password_hash, ada().password_hash);
	given(older);
	cr_assert_eq(state.fields.token_version, 4);
	cr_assert_str_eq(state.fields.password_hash, c.fields.password_hash);
	assert_command_round_trip(c);
	assert_event_round_trip(expected);
	cr_assert_str_eq(user_command_type(USER_CHANGE_PASSWORD), "ChangePassword");
	cr_assert_str_eq(user_event_type(USER_PASSWORD_CHANGED), "PasswordChanged");
}

Test(user, a_password_change_is_sealed_with_the_accounts_own_key)
{
	given(registered(ada()));
	/* a clear hash never enters the log */
	user_command c = {.kind = USER_CHANGE_PASSWORD};
	strcpy(c.fields.password_hash, HASH);
	when(c);
	then_rejected(USER_REJ_INVALID);
	/* sealed with another customer's key */
	char other_kid[PD_KID_MAX];
	uint8_t other_key[PD_KEY_BYTES];
	pd_key_new(other_kid, other_key);
	when(change_password(other_key, other_kid));
	then_rejected(USER_REJ_INVALID);
	/* not a hash at all */
	when((user_command){.kind = USER_CHANGE_PASSWORD});
	then_rejected(USER_REJ_INVALID);
}

Test(user, a_password_change_needs_an_active_account)
{
	when(change_password(data_key, data_kid));
	then_rejected(USER_REJ_NOT_FOUND);
	given(registered(ada()));
	given(event_of(USER_ERASURE_REQUESTED_EVENT));
	when(change_password(data_key, data_kid));
	then_rejected(USER_REJ_WRONG_STATE);
	given(event_of(USER_ERASED_EVENT));
	when(change_password(data_key, data_kid));
	then_rejected(USER_REJ_WRONG_STATE);
	/* a PasswordChanged after the erasure changes nothing */
	user_event e = {.kind = USER_PASSWORD_CHANGED, .fields = {.token_version = 9}};
	strcpy(e.fields.password_hash, ada().password_hash);
	given(e);
	cr_assert_eq(state.fields.password_hash[0], '\0');
}

/* ---- emailed links: verification, "account exists", password reset (ADR 031) ---- */

#define NOW     1800000000 /* the command's time, seconds */
#define HASH_A  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B  "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define EXPIRES (NOW + 3600)

/* Ada's account as the API registers it: unverified, with its link's request. */
static user_command register_unverified(void)
{
	user_command c = register_user(ada());
	c.fields.unverified = true;
	strcpy(c.fields.request_id, "req-verify-1");
	strcpy(c.fields.token_hash, HASH_A);
	c.fields.expires_at = EXPIRES;
	return c;
}

static user_command token_command(user_command_kind kind, const char *hash, int64_t at)
{
	user_command c = {.kind = kind, .fields = {.at = at}};
	strcpy(c.fields.token_hash, hash);
	return c;
}

static user_command repeat_registration(const char *request_id, int64_t at)
{
	user_command c = {.kind = USER_REPEAT_REGISTRATION, .fields = {.at = at}};
	strcpy(c.fields.request_id, request_id);
	return c;
}

static user_command request_reset(const char *request_id, const char *hash, int64_t at)
{
	user_command c = {.kind = USER_REQUEST_PASSWORD_RESET, .fields = {.at = at, .expires_at = at + 3600}};
	strcpy(c.fields.request_id, request_id);
	strcpy(c.fields.token_hash, hash);
	return c;
}

static user_command reset_password(const char *hash, int64_t at)
{
	user_command c = change_password(data_key, data_kid);
	c.kind = USER_RESET_PASSWORD;
	c.fields.at = at;
	strcpy(c.fields.token_hash, hash);
	return c;
}

static void given_unverified(void)
{
	when(register_unverified());
	cr_assert_eq(verdict, USER_OK);
	and_applied();
}

Test(user, an_api_registration_is_unverified_and_asks_for_its_link_in_the_same_commit)
{
	user_command c = register_unverified();
	when(c);
	cr_assert_eq(verdict, USER_OK);
	cr_assert_eq(out.count, 2);
	cr_assert_eq(out.items[0].kind, USER_REGISTERED);
	cr_assert(out.items[0].fields.unverified);
	cr_assert_str_eq(out.items[0].fields.request_id, "", "the account event holds no link");
	cr_assert_eq(out.items[1].kind, USER_VERIFICATION_REQUESTED);
	cr_assert_str_eq(out.items[1].fields.request_id, "req-verify-1");
	cr_assert_str_eq(out.items[1].fields.token_hash, HASH_A);
	cr_assert_eq(out.items[1].fields.expires_at, EXPIRES);
	assert_command_round_trip(c);
	assert_event_round_trip(out.items[0]);
	assert_event_round_trip(out.items[1]);
	and_applied();
	cr_assert(state.fields.unverified);
	cr_assert_str_eq(state.verification.token_hash, HASH_A);
	/* without its request, an unverified registration is invalid */
	user_state_init(&state);
	c.fields.token_hash[0] = '\0';
	when(c);
	then_rejected(USER_REJ_INVALID);
	cr_assert_str_eq(user_invalid_field(&c), "token_hash");
	c = register_unverified();
	c.fields.expires_at = 0;
	cr_assert_str_eq(user_invalid_field(&c), "expires_at");
}

Test(user, a_registration_without_verified_is_a_verified_account_as_before)
{
	when(register_user(ada()));
	then_event(registered(ada()));
	and_applied();
	cr_assert(!state.fields.unverified);
	/* the payload is what it always was: no "verified" key */
	mp_writer_reset(writer);
	cr_assert_eq(user_event_encode(writer, &out.items[0]), ORN_OK);
	mp_reader r;
	uint32_t count = 0;
	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_read_map(&r, &count), ORN_OK);
	cr_assert_eq(count, 6);
	/* an old event with "verified": false written by hand decodes unverified */
	user_event e = registered(ada());
	e.fields.unverified = true;
	assert_event_round_trip(e);
}

Test(user, the_verification_link_verifies_once_before_it_expires)
{
	given_unverified();
	when(token_command(USER_VERIFY_EMAIL, HASH_B, NOW));
	then_rejected(USER_REJ_TOKEN_INVALID);
	when(token_command(USER_VERIFY_EMAIL, HASH_A, EXPIRES));
	then_rejected(USER_REJ_TOKEN_EXPIRED);
	user_command c = token_command(USER_VERIFY_EMAIL, HASH_A, EXPIRES - 1);
	when(c);
	user_event expected = {.kind = USER_EMAIL_VERIFIED};
	strcpy(expected.fields.request_id, "req-verify-1");
	then_event(expected);
	assert_command_round_trip(c);
	assert_event_round_trip(expected);
	and_applied();
	cr_assert(!state.fields.unverified);
	when(c);
	then_rejected(USER_REJ_TOKEN_USED);
	/* bounds */
	when(token_command(USER_VERIFY_EMAIL, "nothex", NOW));
	then_rejected(USER_REJ_INVALID);
	when(token_command(USER_VERIFY_EMAIL, HASH_A, 0));
	then_rejected(USER_REJ_INVALID);
}

Test(user, an_account_without_a_request_has_no_valid_link)
{
	when(token_command(USER_VERIFY_EMAIL, HASH_A, NOW));
	then_rejected(USER_REJ_NOT_FOUND);
	given(registered(ada())); /* verified: created by the CLI */
	when(token_command(USER_VERIFY_EMAIL, HASH_A, NOW));
	then_rejected(USER_REJ_TOKEN_INVALID);
	when(reset_password(HASH_A, NOW));
	then_rejected(USER_REJ_TOKEN_INVALID);
	given(event_of(USER_ERASURE_REQUESTED_EVENT));
	when(token_command(USER_VERIFY_EMAIL, HASH_A, NOW));
	then_rejected(USER_REJ_WRONG_STATE);
	when(reset_password(HASH_A, NOW));
	then_rejected(USER_REJ_WRONG_STATE);
}

Test(user, a_repeated_registration_is_told_to_the_owner_within_the_mail_budget)
{
	given(registered(ada()));
	user_command c = repeat_registration("req-r0", NOW);
	when(c);
	user_event expected = {.kind = USER_REGISTRATION_REPEATED, .fields = {.at = NOW}};
	strcpy(expected.fields.request_id, "req-r0");
	then_event(expected);
	assert_command_round_trip(c);
	assert_event_round_trip(expected);
	and_applied();
	for (int i = 1; i < USER_MAILS_PER_WINDOW; i++) {
		when(repeat_registration("req-rn", NOW + i));
		cr_assert_eq(out.count, 1);
		and_applied();
	}
	/* the budget is spent: accepted, nothing new (the answer never tells) */
	when(repeat_registration("req-rx", NOW + 10));
	cr_assert_eq(verdict, USER_OK);
	cr_assert_eq(out.count, 0);
	/* a new window */
	when(repeat_registration("req-ry", NOW + USER_MAIL_WINDOW_S));
	cr_assert_eq(out.count, 1);
	and_applied();
	cr_assert_eq(state.mail_window_at, NOW + USER_MAIL_WINDOW_S);
	cr_assert_eq(state.mail_count, 1);
	/* a clock that went back starts a window too */
	when(repeat_registration("req-rz", NOW - 5));
	cr_assert_eq(out.count, 1);
	/* bounds; an account being erased hears nothing */
	when(repeat_registration("bad id", NOW));
	then_rejected(USER_REJ_INVALID);
	given(event_of(USER_ERASURE_REQUESTED_EVENT));
	when(repeat_registration("req-r9", NOW + 2 * USER_MAIL_WINDOW_S));
	cr_assert_eq(verdict, USER_OK);
	cr_assert_eq(out.count, 0);
	when(request_reset("req-p9", HASH_A, NOW + 2 * USER_MAIL_WINDOW_S));
	cr_assert_eq(verdict, USER_OK);
	cr_assert_eq(out.count, 0);
}

Test(user, a_password_reset_sets_the_hash_ends_every_token_and_verifies_the_address)
{
	given_unverified();
	given((user_event){.kind = USER_TOKENS_REVOKED, .fields = {.token_version = 2}});
	user_command ask = request_reset("req-p1", HASH_A, NOW);
	when(ask);
	user_event asked = {.kind = USER_PASSWORD_RESET_REQUESTED,
	                    .fields = {.at = NOW, .expires_at = NOW + 3600}};
	strcpy(asked.fields.request_id, "req-p1");
	strcpy(asked.fields.token_hash, HASH_A);
	then_event(asked);
	assert_command_round_trip(ask);
	assert_event_round_trip(asked);
	and_applied();
	/* a later request replaces it: the first link no longer counts */
	when(request_reset("req-p2", HASH_B, NOW + 1));
	and_applied();
	when(reset_password(HASH_A, NOW + 2));
	then_rejected(USER_REJ_TOKEN_INVALID);
	when(reset_password(HASH_B, NOW + 1 + 3600));
	then_rejected(USER_REJ_TOKEN_EXPIRED);
	user_command c = reset_password(HASH_B, NOW + 2);
	when(c);
	user_event expected = {.kind = USER_PASSWORD_RESET, .fields = {.token_version = 3}};
	strcpy(expected.fields.request_id, "req-p2");
	strcpy(expected.fields.password_hash, c.fields.password_hash);
	then_event(expected);
	assert_command_round_trip(c);
	assert_event_round_trip(expected);
	and_applied();
	cr_assert_str_eq(state.fields.password_hash, c.fields.password_hash);
	cr_assert_eq(state.fields.token_version, 3);
	cr_assert(!state.fields.unverified, "the link reached the address");
	when(c);
	then_rejected(USER_REJ_TOKEN_USED);
	/* a reset that is older than the version changes nothing */
	expected.fields.token_version = 1;
	given(expected);
	cr_assert_eq(state.fields.token_version, 3);
}

Test(user, a_reset_password_is_sealed_with_the_accounts_own_key)
{
	given(registered(ada()));
	when(request_reset("req-p1", HASH_A, NOW));
	and_applied();
	user_command c = reset_password(HASH_A, NOW);
	strcpy(c.fields.password_hash, HASH); /* clear */
	when(c);
	then_rejected(USER_REJ_INVALID);
	when(request_reset("bad id", HASH_A, NOW));
	then_rejected(USER_REJ_INVALID);
	state.fields.token_version = INT64_MAX;
	when(reset_password(HASH_A, NOW));
	then_rejected(USER_REJ_INVALID);
}

Test(user, the_reset_budget_is_shared_with_repeated_registrations)
{
	given(registered(ada()));
	for (int i = 0; i < USER_MAILS_PER_WINDOW; i++) {
		when(i % 2 == 0 ? repeat_registration("req-r", NOW) : request_reset("req-p", HASH_A, NOW));
		cr_assert_eq(out.count, 1);
		and_applied();
	}
	when(request_reset("req-p9", HASH_B, NOW));
	cr_assert_eq(verdict, USER_OK);
	cr_assert_eq(out.count, 0);
	cr_assert_str_eq(state.reset.token_hash, HASH_A, "the last link granted still counts");
}

Test(user, link_events_change_nothing_on_an_account_missing_or_erased)
{
	user_event e = {.kind = USER_EMAIL_VERIFIED};
	given(e);
	cr_assert(!state.exists);
	given_unverified();
	given(event_of(USER_ERASURE_REQUESTED_EVENT));
	given(event_of(USER_ERASED_EVENT));
	cr_assert_str_eq(state.verification.token_hash, "", "an erasure forgets the links");
	given(e);
	cr_assert(state.fields.unverified);
	user_event asked = {.kind = USER_PASSWORD_RESET_REQUESTED, .fields = {.at = NOW}};
	given(asked);
	cr_assert_eq(state.mail_count, 0);
}

Test(user, the_snapshot_keeps_the_links_and_the_budget)
{
	user_state restored;
	given_unverified();
	when(request_reset("req-p1", HASH_B, NOW));
	and_applied();
	when(token_command(USER_VERIFY_EMAIL, HASH_A, NOW));
	and_applied();
	cr_assert_eq(user_kind.snapshot(&state, writer), ORN_OK);
	user_state_init(&restored);
	cr_assert_eq(user_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	assert_fields_eq(&restored.fields, &state.fields);
	cr_assert_eq(memcmp(&restored.verification, &state.verification, sizeof state.verification), 0);
	cr_assert_eq(memcmp(&restored.reset, &state.reset, sizeof state.reset), 0);
	cr_assert_eq(restored.mail_window_at, NOW);
	cr_assert_eq(restored.mail_count, 1);
}

/* A snapshot of ada with one extra key and value (msgpack, written by hand). */
static orn_rc restore_with(void (*extra)(mp_writer *))
{
	user_state s;
	user_state_init(&s);
	s.exists = true;
	s.fields = ada();
	mp_writer_reset(writer);
	/* the map header of the real snapshot plus one */
	mp_writer *tmp = mp_writer_create();
	cr_assert_eq(user_kind.snapshot(&s, tmp), ORN_OK);
	mp_reader r;
	uint32_t count = 0;
	mp_reader_init(&r, mp_writer_data(tmp), mp_writer_size(tmp));
	cr_assert_eq(mp_read_map(&r, &count), ORN_OK);
	mp_write_map(writer, count + 1);
	size_t header = mp_writer_size(tmp) - mp_reader_remaining(&r);
	mp_write_raw(writer, (const char *)mp_writer_data(tmp) + header, mp_writer_size(tmp) - header);
	extra(writer);
	mp_writer_destroy(tmp);
	user_state_init(&state);
	return user_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer));
}

static void extra_verified_twice(mp_writer *w)
{
	mp_write_cstr(w, "verified");
	mp_write_bool(w, false);
}

static void extra_budget_short(mp_writer *w)
{
	mp_write_cstr(w, "mail_budget");
	mp_write_array(w, 1);
	mp_write_int(w, 1);
}

Test(user, restore_refuses_repeated_or_malformed_link_state)
{
	cr_assert_eq(restore_with(extra_verified_twice), ORN_EDECODE);
	cr_assert_eq(restore_with(extra_budget_short), ORN_EDECODE);
}

static void snapshot_with_request(const user_request *req)
{
	user_state s;
	user_state_init(&s);
	s.exists = true;
	s.fields = ada();
	s.reset = *req;
	mp_writer_reset(writer);
	cr_assert_eq(user_kind.snapshot(&s, writer), ORN_OK);
}

Test(user, restore_refuses_a_request_that_is_not_whole)
{
	user_request bad = {.expires_at = EXPIRES};
	strcpy(bad.token_hash, "nothex");
	strcpy(bad.request_id, "req");
	snapshot_with_request(&bad);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	user_request half = {.used = true}; /* used, but no hash */
	snapshot_with_request(&half);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	user_request good = {.expires_at = EXPIRES};
	strcpy(good.token_hash, HASH_A);
	strcpy(good.request_id, "req");
	snapshot_with_request(&good);
	cr_assert_eq(restore_written(), ORN_OK);
	cr_assert_str_eq(state.reset.token_hash, HASH_A);
}

Test(user_kind, link_rejections_carry_their_code_and_detail)
{
	cr_assert_eq(kind_decide(register_unverified()), ORN_OK);
	kind_apply();
	cr_assert(state.fields.unverified);
	cr_assert_eq(kind_decide(token_command(USER_VERIFY_EMAIL, HASH_B, NOW)), ORN_OK);
	then_decision_rejected("token_invalid", "the link is not valid (a later one may have replaced it)");
	cr_assert_eq(kind_decide(token_command(USER_VERIFY_EMAIL, HASH_A, EXPIRES)), ORN_OK);
	then_decision_rejected("token_expired", "the link has expired");
	cr_assert_eq(kind_decide(token_command(USER_VERIFY_EMAIL, HASH_A, NOW)), ORN_OK);
	kind_apply();
	cr_assert(!state.fields.unverified);
	cr_assert_eq(kind_decide(token_command(USER_VERIFY_EMAIL, HASH_A, NOW)), ORN_OK);
	then_decision_rejected("token_used", "the link was used already");
	/* a hash sealed with another customer's key */
	char other_kid[PD_KID_MAX];
	uint8_t other_key[PD_KEY_BYTES];
	pd_key_new(other_kid, other_key);
	user_command c = change_password(other_key, other_kid);
	c.kind = USER_RESET_PASSWORD;
	c.fields.at = NOW;
	strcpy(c.fields.token_hash, HASH_A);
	cr_assert_eq(kind_decide(c), ORN_OK);
	then_decision_rejected("invalid", "password_hash: sealed with the account's own data key");
	cr_assert_eq(kind_decide(command_of(USER_COMPLETE_ERASURE)), ORN_OK);
	then_decision_rejected("wrong_state", "no erasure of this account was asked for");
	given(event_of(USER_ERASURE_REQUESTED_EVENT));
	cr_assert_eq(kind_decide(reset_password(HASH_A, NOW)), ORN_OK);
	then_decision_rejected("wrong_state", "the account is erased or being erased");
}
