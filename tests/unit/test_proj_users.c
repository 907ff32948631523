/* test_proj_users.c — the users read model (users.c) without NATS: user
 * events are applied through the projection definition in write
 * transactions, as the projector does. Given user events, when queried by
 * email or by user id, then the user is as the events say. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proj_internal.h"
#include "users.h"

static char dir[64];
static proj_env *env;
static proj_users *users;
static uint64_t next_seq = 1;

#define HASH "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"

static void rmrf(const char *path)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	cr_assert_eq(system(cmd), 0);
}

static void setup(void)
{
	proj_env_options o;
	snprintf(dir, sizeof dir, "/tmp/orion-usersunit-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = 1 << 20;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_users_create(env, &users), ORN_OK);
}

static void teardown(void)
{
	proj_users_destroy(users);
	users = NULL;
	proj_env_close(env);
	env = NULL;
	rmrf(dir);
}

TestSuite(proj_users, .init = setup, .fini = teardown, .timeout = 60);

typedef struct one_event {
	char subject[ES_SUBJECT_MAX];
	env_envelope e;
} one_event;

static orn_rc apply_envelope(proj_txn *t, void *closure)
{
	one_event *o = closure;
	const proj_def *def = proj_users_def(users);
	return def->apply(def->self, t, next_seq++, o->subject, &o->e);
}

/* Applies ev on the subject of email's key, recorded at time_ms. */
static void apply_user_at(const char *email, const user_event *ev, int64_t time_ms)
{
	char key[USER_KEY_MAX];
	one_event o = {.e = {.schema = 1, .time_ms = time_ms}};
	mp_writer *w = mp_writer_create();
	cr_assert_eq(user_key_for_email(email, key, sizeof key), ORN_OK);
	snprintf(o.subject, sizeof o.subject, "orion.evt.user.%s", key);
	cr_assert_eq(user_event_encode(w, ev), ORN_OK);
	strcpy(o.e.type, user_event_type(ev->kind));
	o.e.payload = mp_writer_data(w);
	o.e.payload_len = mp_writer_size(w);
	cr_assert_eq(proj_env_write(env, apply_envelope, &o), ORN_OK);
	mp_writer_destroy(w);
}

/* The account on email's subject: these tests put accounts on the key of
 * user_key_for_email (an address as typed is normalized first), as logs
 * before ADR 027 did; the model looks them up by that key. */
static orn_rc get_by_email(proj_users *model, const char *email, proj_user *out)
{
	char key[USER_KEY_MAX];
	if (email == NULL || user_key_for_email(email, key, sizeof key) != ORN_OK)
		return ORN_EINVAL;
	return proj_users_get_by_key(model, key, out);
}

static void apply_user(const char *email, const user_event *ev)
{
	apply_user_at(email, ev, 0);
}

static user_event registered(const char *user_id, const char *email, const char *name, user_role role)
{
	user_event ev = {.kind = USER_REGISTERED};
	snprintf(ev.fields.user_id, sizeof ev.fields.user_id, "%s", user_id);
	snprintf(ev.fields.email, sizeof ev.fields.email, "%s", email);
	snprintf(ev.fields.name, sizeof ev.fields.name, "%s", name);
	snprintf(ev.fields.password_hash, sizeof ev.fields.password_hash, "%s", HASH);
	ev.fields.role = role;
	return ev;
}

static user_event role_changed(user_role role)
{
	return (user_event){.kind = USER_ROLE_CHANGED, .fields = {.role = role}};
}

Test(proj_users, a_registered_user_is_found_by_email_and_by_id)
{
	user_event ev = registered("usr_1", "ada@example.com", "Ada", USER_ROLE_CUSTOMER);
	apply_user("ada@example.com", &ev);
	proj_user u;
	cr_assert_eq(get_by_email(users, "  Ada@EXAMPLE.com ", &u), ORN_OK, "normalized first");
	cr_assert_str_eq(u.user_id, "usr_1");
	cr_assert_str_eq(u.email, "ada@example.com");
	cr_assert_str_eq(u.name, "Ada");
	cr_assert_eq(u.role, USER_ROLE_CUSTOMER);
	cr_assert_str_eq(u.password_hash, HASH);
	cr_assert_eq(u.version, 1);
	char key[USER_KEY_MAX];
	cr_assert_eq(user_key_for_email("ada@example.com", key, sizeof key), ORN_OK);
	cr_assert_str_eq(u.key, key);
	proj_user by_id;
	cr_assert_eq(proj_users_get_by_id(users, "usr_1", &by_id), ORN_OK);
	cr_assert_str_eq(by_id.key, u.key);
	cr_assert_str_eq(by_id.email, u.email);
	cr_assert_str_eq(by_id.name, u.name);
	cr_assert_str_eq(by_id.password_hash, u.password_hash);
	cr_assert_eq(by_id.role, u.role);
	cr_assert_eq(by_id.version, u.version);
}

Test(proj_users, unknown_and_invalid_lookups_are_told_apart)
{
	proj_user u;
	cr_assert_eq(get_by_email(users, "nobody@example.com", &u), ORN_ENOTFOUND);
	cr_assert_eq(get_by_email(users, "not an address", &u), ORN_EINVAL);
	cr_assert_eq(get_by_email(users, NULL, &u), ORN_EINVAL);
	cr_assert_eq(proj_users_get_by_id(users, "usr_404", &u), ORN_ENOTFOUND);
	cr_assert_eq(proj_users_get_by_id(users, "a.b", &u), ORN_EINVAL);
	cr_assert_eq(proj_users_get_by_id(users, NULL, &u), ORN_EINVAL);
}

Test(proj_users, a_role_change_updates_the_record)
{
	user_event ev = registered("usr_2", "bob@example.com", "Bob", USER_ROLE_CUSTOMER);
	apply_user("bob@example.com", &ev);
	ev = role_changed(USER_ROLE_ADMIN);
	apply_user("bob@example.com", &ev);
	proj_user u;
	cr_assert_eq(proj_users_get_by_id(users, "usr_2", &u), ORN_OK);
	cr_assert_eq(u.role, USER_ROLE_ADMIN);
	cr_assert_str_eq(u.name, "Bob");
	cr_assert_str_eq(u.password_hash, HASH);
	cr_assert_eq(u.version, 2);
	ev = role_changed(USER_ROLE_CUSTOMER);
	apply_user("bob@example.com", &ev);
	cr_assert_eq(get_by_email(users, "BOB@example.com", &u), ORN_OK);
	cr_assert_eq(u.role, USER_ROLE_CUSTOMER);
}

Test(proj_users, a_role_change_of_an_unknown_user_changes_nothing)
{
	user_event ev = role_changed(USER_ROLE_ADMIN);
	apply_user("ghost@example.com", &ev);
	proj_user u;
	cr_assert_eq(get_by_email(users, "ghost@example.com", &u), ORN_ENOTFOUND);
}

Test(proj_users, a_second_registration_replaces_the_public_id)
{
	user_event ev = registered("usr_old", "eve@example.com", "Eve", USER_ROLE_CUSTOMER);
	apply_user("eve@example.com", &ev);
	ev = registered("usr_new", "eve@example.com", "Eve N", USER_ROLE_ADMIN);
	apply_user("eve@example.com", &ev);
	proj_user u;
	cr_assert_eq(proj_users_get_by_id(users, "usr_old", &u), ORN_ENOTFOUND);
	cr_assert_eq(proj_users_get_by_id(users, "usr_new", &u), ORN_OK);
	cr_assert_str_eq(u.name, "Eve N");
	/* The same registration again keeps the mapping. */
	apply_user("eve@example.com", &ev);
	cr_assert_eq(proj_users_get_by_id(users, "usr_new", &u), ORN_OK);
}

Test(proj_users, foreign_subjects_types_and_bad_payloads_are_skipped)
{
	static const uint8_t garbage[] = {0xc1};
	one_event o = {"orion.evt.user.u00", {.schema = 1}};
	strcpy(o.e.type, USER_EV_REGISTERED);
	o.e.payload = garbage;
	o.e.payload_len = sizeof garbage;
	cr_assert_eq(proj_env_write(env, apply_envelope, &o), ORN_OK);
	strcpy(o.e.type, "UserRenamed");
	cr_assert_eq(proj_env_write(env, apply_envelope, &o), ORN_OK);
	strcpy(o.subject, "orion.evt.product.u00");
	strcpy(o.e.type, USER_EV_ROLE_CHANGED);
	cr_assert_eq(proj_env_write(env, apply_envelope, &o), ORN_OK);
	strcpy(o.subject, "orion.evt.user.bad.key");
	cr_assert_eq(proj_env_write(env, apply_envelope, &o), ORN_OK);
	proj_users_stats st;
	proj_users_stats_get(users, &st);
	cr_assert_eq(st.undecodable, 1);
}

typedef struct raw_put {
	const char *db;
	const char *key;
	const void *value;
	size_t len;
} raw_put;

static orn_rc put_raw(proj_txn *t, void *closure)
{
	raw_put *r = closure;
	MDB_dbi dbi;
	orn_rc rc = proj_dbi_open(t, r->db, 0, &dbi);
	if (rc == ORN_OK)
		rc = proj_put(t, dbi, r->key, strlen(r->key), r->value, r->len, 0);
	return rc;
}

static void write_raw(const char *db, const char *key, const void *value, size_t len)
{
	raw_put r = {db, key, value, len};
	cr_assert_eq(proj_env_write(env, put_raw, &r), ORN_OK);
}

Test(proj_users, damaged_records_are_reported_and_rebuilt)
{
	char key[USER_KEY_MAX];
	proj_user u;
	cr_assert_eq(user_key_for_email("kim@example.com", key, sizeof key), ORN_OK);
	uint8_t bad[17] = {1, USER_ROLE_ADMIN, 1}; /* a one-byte user_id that is a NUL */
	write_raw("users.by_key", key, bad, sizeof bad);
	cr_assert_eq(get_by_email(users, "kim@example.com", &u), ORN_EDECODE);
	bad[1] = 9; /* no such role */
	write_raw("users.by_key", key, bad, sizeof bad);
	cr_assert_eq(get_by_email(users, "kim@example.com", &u), ORN_EDECODE);
	/* A role change cannot apply to an unreadable record; a registration rebuilds it. */
	user_event ev = role_changed(USER_ROLE_ADMIN);
	apply_user("kim@example.com", &ev);
	ev = registered("usr_k", "kim@example.com", "Kim", USER_ROLE_CUSTOMER);
	apply_user("kim@example.com", &ev);
	cr_assert_eq(get_by_email(users, "kim@example.com", &u), ORN_OK);
	cr_assert_str_eq(u.name, "Kim");
	/* A user id naming a key that is too long or absent. */
	write_raw("users.by_user_id", "usr_x", "", 0);
	cr_assert_eq(proj_users_get_by_id(users, "usr_x", &u), ORN_EDECODE);
	write_raw("users.by_user_id", "usr_y", "u0", 2);
	cr_assert_eq(proj_users_get_by_id(users, "usr_y", &u), ORN_ENOTFOUND);
	/* A user id now held by another key is not removed by this one's re-registration. */
	write_raw("users.by_user_id", "usr_k", "u1", 2);
	ev = registered("usr_k2", "kim@example.com", "Kim", USER_ROLE_CUSTOMER);
	apply_user("kim@example.com", &ev);
	cr_assert_eq(proj_users_get_by_id(users, "usr_k", &u), ORN_ENOTFOUND, "u1 has no record");
	cr_assert_eq(proj_users_get_by_id(users, "usr_k2", &u), ORN_OK);
}

static user_event token_revoked(const char *jti, int64_t expires_at)
{
	user_event ev = {.kind = USER_TOKEN_REVOKED, .fields = {.expires_at = expires_at}};
	snprintf(ev.fields.jti, sizeof ev.fields.jti, "%s", jti);
	return ev;
}

Test(proj_users, revoked_tokens_and_the_token_version_are_kept_and_expired_ones_pruned)
{
	proj_user u;
	bool revoked = true;
	user_event e = registered("id-1", "tok@example.com", "T", USER_ROLE_CUSTOMER);
	apply_user("tok@example.com", &e);
	cr_assert_eq(proj_users_check_token(users, "id-1", "jti-a", &u, &revoked), ORN_OK);
	cr_assert_not(revoked);
	cr_assert_eq(u.token_version, 0);
	e = token_revoked("jti-a", 100);
	apply_user_at("tok@example.com", &e, 50000);
	cr_assert_eq(proj_users_check_token(users, "id-1", "jti-a", &u, &revoked), ORN_OK);
	cr_assert(revoked);
	e = (user_event){.kind = USER_TOKENS_REVOKED, .fields = {.token_version = 2}};
	apply_user("tok@example.com", &e);
	cr_assert_eq(proj_users_check_token(users, "id-1", "jti-b", &u, &revoked), ORN_OK);
	cr_assert_eq(u.token_version, 2);
	cr_assert_eq(u.role, USER_ROLE_CUSTOMER);
	/* a later revocation, after jti-a expired, drops jti-a */
	e = token_revoked("jti-b", 5000);
	apply_user_at("tok@example.com", &e, 200000);
	cr_assert_eq(proj_users_check_token(users, "id-1", "jti-a", &u, &revoked), ORN_OK);
	cr_assert_not(revoked, "pruned: it expired at 100 s");
	cr_assert_eq(proj_users_check_token(users, "id-1", "jti-b", &u, &revoked), ORN_OK);
	cr_assert(revoked);
	cr_assert_eq(proj_users_check_token(users, "nobody", "jti-b", &u, &revoked), ORN_ENOTFOUND);
	cr_assert_eq(proj_users_check_token(users, "id-1", "bad jti", &u, &revoked), ORN_EINVAL);
}

Test(proj_users, a_password_change_replaces_the_hash_and_the_token_version)
{
	static const char new_hash[] = "$argon2id$v=19$m=65536,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA";
	proj_user u;
	user_event e = registered("id-pw", "pw@example.com", "P", USER_ROLE_CUSTOMER);
	apply_user("pw@example.com", &e);
	e = (user_event){.kind = USER_PASSWORD_CHANGED, .fields = {.token_version = 1}};
	snprintf(e.fields.password_hash, sizeof e.fields.password_hash, "%s", new_hash);
	apply_user("pw@example.com", &e);
	cr_assert_eq(get_by_email(users, "pw@example.com", &u), ORN_OK);
	cr_assert_str_eq(u.password_hash, new_hash, "login verifies the new hash");
	cr_assert_eq(u.token_version, 1, "every earlier token is refused");
	cr_assert_str_eq(u.email, "pw@example.com");
	cr_assert_eq(u.version, 2);
}

Test(proj_users, an_account_is_unverified_until_its_link_comes_back_or_a_reset)
{
	static const char new_hash[] = "$argon2id$v=19$m=65536,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA";
	proj_user u;
	user_event e = registered("id-v", "v@example.com", "V", USER_ROLE_CUSTOMER);
	apply_user("v@example.com", &e);
	cr_assert_eq(get_by_email(users, "v@example.com", &u), ORN_OK);
	cr_assert(u.verified, "an account without the field is verified (older logs)");
	e.fields.unverified = true;
	apply_user("w@example.com", &e);
	cr_assert_eq(get_by_email(users, "w@example.com", &u), ORN_OK);
	cr_assert(!u.verified);
	user_event verified = {.kind = USER_EMAIL_VERIFIED};
	strcpy(verified.fields.request_id, "req-1");
	apply_user("w@example.com", &verified);
	cr_assert_eq(get_by_email(users, "w@example.com", &u), ORN_OK);
	cr_assert(u.verified);
	/* a reset link proves the address too, and changes the password */
	e = registered("id-x", "x@example.com", "X", USER_ROLE_CUSTOMER);
	e.fields.unverified = true;
	apply_user("x@example.com", &e);
	user_event reset = {.kind = USER_PASSWORD_RESET, .fields = {.token_version = 1}};
	strcpy(reset.fields.request_id, "req-2");
	strcpy(reset.fields.password_hash, new_hash);
	apply_user("x@example.com", &reset);
	cr_assert_eq(get_by_email(users, "x@example.com", &u), ORN_OK);
	cr_assert(u.verified);
	cr_assert_str_eq(u.password_hash, new_hash);
	cr_assert_eq(u.token_version, 1);
	cr_assert_eq(proj_users_get_by_id(users, "id-x", &u), ORN_OK);
	cr_assert(u.verified);
}
