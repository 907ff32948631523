/* test_migration.c — privacy/migration.c with a keystore on a real
 * nats-server (ADR 032): a commit written before ADR 027 is rewritten with
 * its fields sealed and its account moved to the blind index; every field of
 * one customer (account, order, mail log) is sealed with one key, the same
 * on a rerun; a sealed commit is left byte for byte; the comparison opens
 * every token and refuses a copy that lost, moved or kept a value in clear;
 * an address registered again since ADR 027 keeps the blind index and lends
 * its key to the old account. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore.h"
#include "harness.h"
#include "keystore.h"
#include "migration.h"
#include "user.h"

#define EMAIL "ada.migrated@example.com"
#define HASH  "$argon2id$v=19$m=8192,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"

static natsd *server;
static es_store *store;
static ks_store *ks;
static uint8_t master[PD_KEY_BYTES];
static void *owned[64]; /* the commits' bytes, freed by teardown */
static size_t owned_count;

static uint8_t *own(size_t len)
{
	cr_assert_lt(owned_count, sizeof owned / sizeof owned[0]);
	return owned[owned_count++] = malloc(len);
}

static void setup(void)
{
	cr_assert_geq(sodium_init(), 0);
	server = th_natsd_start("migration");
	store = th_store_open(server);
	randombytes_buf(master, sizeof master);
	ks_options ko;
	ks_options_init(&ko);
	ko.cache_ttl_ms = 0; /* every key read from the stream */
	cr_assert_eq(ks_open(store, master, &ko, &ks), ORN_OK);
}

static void teardown(void)
{
	while (owned_count > 0)
		free(owned[--owned_count]);
	ks_close(ks);
	es_store_close(store);
	th_natsd_stop(server);
}

TestSuite(migration, .init = setup, .fini = teardown, .timeout = 60);

/* One commit of one event: (key, value) string pairs as its payload map. */
typedef struct commit {
	char subject[ES_SUBJECT_MAX];
	uint8_t *data;
	size_t len;
} commit;

static commit make_commit(const char *subject, const char *type, const char *cause, const char *const *pairs)
{
	mp_writer *payload = mp_writer_create(), *w = mp_writer_create();
	uint32_t n = 0;
	while (pairs[2 * n] != NULL)
		n++;
	mp_write_map(payload, n);
	for (uint32_t i = 0; i < 2 * n; i++)
		mp_write_cstr(payload, pairs[i]);
	env_envelope e;
	memset(&e, 0, sizeof e);
	snprintf(e.type, sizeof e.type, "%s", type);
	e.schema = 1;
	e.time_ms = 1796000000000;
	snprintf(e.correlation, sizeof e.correlation, "%s", cause);
	snprintf(e.causation, sizeof e.causation, "%s", cause);
	snprintf(e.actor, sizeof e.actor, "cli");
	e.payload = mp_writer_data(payload);
	e.payload_len = mp_writer_size(payload);
	env_commit_begin(w, 1);
	cr_assert_eq(env_encode(w, &e), ORN_OK);
	commit c;
	snprintf(c.subject, sizeof c.subject, "%s", subject);
	c.len = mp_writer_size(w);
	c.data = own(c.len);
	memcpy(c.data, mp_writer_data(w), c.len);
	mp_writer_destroy(payload);
	mp_writer_destroy(w);
	return c;
}

static void learn(mg_plan *p, const commit *c)
{
	env_envelope events[ENV_MAX_EVENTS];
	size_t count = 0;
	cr_assert_eq(env_decode_commit(c->data, c->len, events, ENV_MAX_EVENTS, &count), ORN_OK);
	cr_assert_eq(mg_learn(p, c->subject, true, events, count), ORN_OK);
}

/* The commit c rewritten by p: its new subject and bytes. */
static commit rewrite(mg_plan *p, const commit *c, bool *changed)
{
	mp_writer *w = mp_writer_create();
	commit out;
	cr_assert_eq(mg_rewrite(p, c->subject, c->data, c->len, w, changed), ORN_OK);
	cr_assert_eq(mg_subject(p, c->subject, out.subject, sizeof out.subject), ORN_OK);
	out.len = *changed ? mp_writer_size(w) : c->len;
	out.data = own(out.len);
	memcpy(out.data, *changed ? mp_writer_data(w) : c->data, out.len);
	mp_writer_destroy(w);
	return out;
}

/* The string value of key in c's only event (static buffer). */
static const char *value_of(const commit *c, const char *key)
{
	static char out[PD_TOKEN_MAX];
	env_envelope e[ENV_MAX_EVENTS];
	size_t count = 0;
	uint32_t n = 0;
	mp_reader r;
	out[0] = '\0';
	cr_assert_eq(env_decode_commit(c->data, c->len, e, ENV_MAX_EVENTS, &count), ORN_OK);
	mp_reader_init(&r, e[0].payload, e[0].payload_len);
	cr_assert_eq(mp_read_map(&r, &n), ORN_OK);
	for (uint32_t i = 0; i < n; i++) {
		char k[64];
		cr_assert_eq(mp_read_cstr(&r, k, sizeof k), ORN_OK);
		if (strcmp(k, key) == 0)
			cr_assert_eq(mp_read_cstr(&r, out, sizeof out), ORN_OK);
		else
			cr_assert_eq(mp_skip(&r), ORN_OK);
	}
	return out;
}

static const char *causation_of(const commit *c)
{
	static env_envelope e[ENV_MAX_EVENTS];
	size_t count = 0;
	cr_assert_eq(env_decode_commit(c->data, c->len, e, ENV_MAX_EVENTS, &count), ORN_OK);
	return e[0].causation;
}

/* The three commits of a customer before ADR 027. */
typedef struct legacy {
	char old_id[USER_KEY_MAX];
	commit user, order, mail;
} legacy;

static legacy legacy_customer(void)
{
	legacy l;
	char subject[ES_SUBJECT_MAX], cause[64];
	cr_assert_eq(user_key_for_email(EMAIL, l.old_id, sizeof l.old_id), ORN_OK);
	snprintf(subject, sizeof subject, "orion.evt.user.%s", l.old_id);
	snprintf(cause, sizeof cause, "register:%s", l.old_id);
	l.user = make_commit(subject, USER_EV_REGISTERED, cause,
	                     (const char *[]){"user_id", "a1", "email", EMAIL, "name", "Ada Migrated",
	                                      "password_hash", HASH, "role", "customer", NULL});
	l.order = make_commit("orion.evt.order.o1", "OrderPlaced", "place-o1",
	                      (const char *[]){"customer_id", "a1", "customer_email", EMAIL, NULL});
	l.mail = make_commit("orion.evt.mail.m1", "MailDelivered", "deliver-m1",
	                     (const char *[]){"order_id", "o1", "kind", "placed", "recipient", EMAIL, NULL});
	return l;
}

static mg_plan *plan_of(const commit *const *commits)
{
	mg_plan *p = NULL;
	cr_assert_eq(mg_create(ks, &p), ORN_OK);
	for (size_t i = 0; commits[i] != NULL; i++)
		learn(p, commits[i]);
	mg_place(p);
	return p;
}

Test(migration, a_legacy_customer_is_sealed_with_one_key_and_moved_to_the_blind_index)
{
	legacy l = legacy_customer();
	mg_plan *p = plan_of((const commit *[]){&l.user, &l.order, &l.mail, NULL});
	cr_assert(mg_needed(p));
	cr_assert_eq(mg_counts_of(p)->accounts, 1);
	cr_assert_eq(mg_counts_of(p)->clear_fields, 5);
	bool changed = false;
	commit user = rewrite(p, &l.user, &changed);
	cr_assert(changed);
	char blind[PD_INDEX_MAX], expect[ES_SUBJECT_MAX], why[MG_WHY_MAX];
	ks_blind_index(ks, EMAIL, blind);
	snprintf(expect, sizeof expect, "orion.evt.user.%s", blind);
	cr_assert_str_eq(user.subject, expect);
	char cause[64];
	snprintf(cause, sizeof cause, "register:%s", blind);
	cr_assert_str_eq(causation_of(&user), cause, "the public hash is gone from the envelope too");
	char kid[PD_KID_MAX], token_kid[PD_KID_MAX], clear[PD_PLAIN_MAX + 1];
	snprintf(kid, sizeof kid, "%s", value_of(&user, "kid"));
	cr_assert(pd_kid_valid(kid));
	const char *fields[] = {"email", "name", "password_hash"}, *values[] = {EMAIL, "Ada Migrated", HASH};
	for (size_t i = 0; i < 3; i++) {
		const char *token = value_of(&user, fields[i]);
		cr_assert(pd_is_sealed(token), "%s sealed", fields[i]);
		cr_assert_eq(pd_token_kid(token, token_kid), ORN_OK);
		cr_assert_str_eq(token_kid, kid);
		cr_assert_eq(ks_open_token(ks, token, fields[i], cause, clear, sizeof clear), ORN_OK);
		cr_assert_str_eq(clear, values[i]);
	}
	cr_assert_eq(mg_compare(p, l.user.subject, l.user.data, l.user.len, user.subject, user.data, user.len,
	                        why),
	             ORN_OK, "%s", why);

	/* the order's email and the mail's recipient: the same key, bound as ADR 027 binds them */
	commit order = rewrite(p, &l.order, &changed), mail = rewrite(p, &l.mail, &changed);
	cr_assert_str_eq(order.subject, "orion.evt.order.o1");
	cr_assert_eq(pd_token_kid(value_of(&order, "customer_email"), token_kid), ORN_OK);
	cr_assert_str_eq(token_kid, kid);
	cr_assert_eq(ks_open_token(ks, value_of(&order, "customer_email"), "customer_email", "place-o1",
	                           clear, sizeof clear),
	             ORN_OK);
	cr_assert_str_eq(clear, EMAIL);
	cr_assert_eq(ks_open_token(ks, value_of(&mail, "recipient"), "customer_email", "place-o1", clear,
	                           sizeof clear),
	             ORN_OK, "the recipient is a token of the order's email, bound to its OrderPlaced");
	cr_assert_eq(mg_compare(p, l.mail.subject, l.mail.data, l.mail.len, mail.subject, mail.data, mail.len,
	                        why),
	             ORN_OK, "%s", why);

	/* the migrated commits on their own: nothing clear, every token opens, the account on its index */
	uint64_t erased = 0;
	const commit *migrated[] = {&user, &order, &mail};
	for (size_t i = 0; i < 3; i++) {
		env_envelope e[ENV_MAX_EVENTS];
		size_t count = 0;
		cr_assert_eq(
		        env_decode_commit(migrated[i]->data, migrated[i]->len, e, ENV_MAX_EVENTS, &count),
		        ORN_OK);
		cr_assert_eq(mg_check(p, migrated[i]->subject, e, count, &erased, why), ORN_OK, "%s", why);
	}
	cr_assert_eq(erased, 0);
	mg_destroy(p);

	/* a second plan over the migrated log: nothing to do, every commit left byte for byte */
	mg_plan *again = plan_of((const commit *[]){&user, &order, &mail, NULL});
	cr_assert_not(mg_needed(again));
	for (size_t i = 0; i < 3; i++) {
		commit same = rewrite(again, migrated[i], &changed);
		cr_assert_not(changed);
		cr_assert_str_eq(same.subject, migrated[i]->subject);
	}
	mg_destroy(again);
}

Test(migration, a_rerun_takes_the_same_key)
{
	char a[PD_KID_MAX], b[PD_KID_MAX], c[PD_KID_MAX];
	uint8_t ka[PD_KEY_BYTES], kb[PD_KEY_BYTES], kc[PD_KEY_BYTES];
	cr_assert_eq(ks_key_for(ks, EMAIL, a, ka), ORN_OK);
	ks_store *other = NULL;
	cr_assert_eq(ks_open(store, master, NULL, &other), ORN_OK);
	cr_assert_eq(ks_key_for(other, EMAIL, b, kb), ORN_OK);
	cr_assert_str_eq(a, b);
	cr_assert_eq(memcmp(ka, kb, sizeof ka), 0, "the stored key, read back");
	cr_assert_eq(ks_key_for(other, "someone.else@example.com", c, kc), ORN_OK);
	cr_assert_str_neq(a, c);
	ks_close(other);
}

Test(migration, a_copy_that_lost_moved_or_kept_a_value_is_refused)
{
	legacy l = legacy_customer();
	mg_plan *p = plan_of((const commit *[]){&l.user, &l.order, &l.mail, NULL});
	char why[MG_WHY_MAX], kid[PD_KID_MAX];
	uint8_t key[PD_KEY_BYTES];
	/* the old commit copied as it was: the clear fields remain */
	char blind[PD_INDEX_MAX], moved[ES_SUBJECT_MAX];
	ks_blind_index(ks, EMAIL, blind);
	snprintf(moved, sizeof moved, "orion.evt.user.%s", blind);
	cr_assert_eq(mg_compare(p, l.order.subject, l.order.data, l.order.len, l.order.subject, l.order.data,
	                        l.order.len, why),
	             ORN_ECONFLICT);
	cr_assert(strstr(why, "clear personal field") != NULL, "%s", why);
	/* a token of another value */
	char token[PD_TOKEN_MAX];
	cr_assert_eq(ks_key_for(ks, EMAIL, kid, key), ORN_OK);
	cr_assert_eq(
	        pd_seal(key, kid, "customer_email", "place-o1", "eve@example.com", 15, token, sizeof token),
	        ORN_OK);
	commit other = make_commit("orion.evt.order.o1", "OrderPlaced", "place-o1",
	                           (const char *[]){"customer_id", "a1", "customer_email", token, NULL});
	cr_assert_eq(mg_compare(p, l.order.subject, l.order.data, l.order.len, other.subject, other.data,
	                        other.len, why),
	             ORN_ECONFLICT);
	cr_assert(strstr(why, "does not open to the old value") != NULL, "%s", why);
	/* a token of the right value sealed for another event */
	cr_assert_eq(
	        pd_seal(key, kid, "customer_email", "place-o2", EMAIL, strlen(EMAIL), token, sizeof token),
	        ORN_OK);
	commit moved_token =
	        make_commit("orion.evt.order.o1", "OrderPlaced", "place-o1",
	                    (const char *[]){"customer_id", "a1", "customer_email", token, NULL});
	cr_assert_eq(mg_compare(p, l.order.subject, l.order.data, l.order.len, moved_token.subject,
	                        moved_token.data, moved_token.len, why),
	             ORN_ECONFLICT);
	/* another value of a field that is not personal */
	bool changed;
	commit good = rewrite(p, &l.order, &changed);
	commit lost = make_commit("orion.evt.order.o1", "OrderPlaced", "place-o1",
	                          (const char *[]){"customer_id", "a2", "customer_email",
	                                           value_of(&good, "customer_email"), NULL});
	cr_assert_eq(mg_compare(p, l.order.subject, l.order.data, l.order.len, lost.subject, lost.data,
	                        lost.len, why),
	             ORN_ECONFLICT);
	/* the account left on its public subject */
	commit user = rewrite(p, &l.user, &changed);
	cr_assert_eq(mg_compare(p, l.user.subject, l.user.data, l.user.len, l.user.subject, user.data,
	                        user.len, why),
	             ORN_ECONFLICT);
	cr_assert(strstr(why, "not the subject planned") != NULL, "%s", why);
	mg_destroy(p);
}

Test(migration, an_address_registered_again_keeps_the_blind_index_and_lends_its_key)
{
	legacy l = legacy_customer();
	/* the same address registered since ADR 027, on its blind index, with a key of its own */
	char blind[PD_INDEX_MAX], subject[ES_SUBJECT_MAX], kid[PD_KID_MAX], cause[64];
	char email[PD_TOKEN_MAX], name[PD_TOKEN_MAX], hash[PD_TOKEN_MAX];
	uint8_t key[PD_KEY_BYTES];
	ks_blind_index(ks, EMAIL, blind);
	snprintf(subject, sizeof subject, "orion.evt.user.%s", blind);
	snprintf(cause, sizeof cause, "register:%s", blind);
	cr_assert_eq(ks_key_create(ks, kid, key), ORN_OK);
	cr_assert_eq(pd_seal(key, kid, "email", cause, EMAIL, strlen(EMAIL), email, sizeof email), ORN_OK);
	cr_assert_eq(pd_seal(key, kid, "name", cause, "Ada", 3, name, sizeof name), ORN_OK);
	cr_assert_eq(pd_seal(key, kid, "password_hash", cause, HASH, strlen(HASH), hash, sizeof hash),
	             ORN_OK);
	commit newer =
	        make_commit(subject, USER_EV_REGISTERED, cause,
	                    (const char *[]){"user_id", "a9", "email", email, "name", name, "password_hash",
	                                     hash, "role", "admin", "kid", kid, NULL});
	mg_plan *p = plan_of((const commit *[]){&l.user, &newer, NULL});
	cr_assert_eq(mg_counts_of(p)->superseded, 1);
	size_t cursor = 0;
	const char *user_id = NULL;
	cr_assert(mg_next_superseded(p, &cursor, &user_id));
	cr_assert_str_eq(user_id, "a1", "the old account's id, for the operator");
	cr_assert_not(mg_next_superseded(p, &cursor, &user_id));
	bool changed;
	commit old = rewrite(p, &l.user, &changed), same = rewrite(p, &newer, &changed);
	cr_assert_not(changed, "the newer account is left as it is");
	cr_assert_str_eq(same.subject, subject);
	cr_assert_str_neq(old.subject, subject, "the old account does not share the blind index");
	cr_assert(strstr(old.subject, l.old_id) == NULL, "nor keeps its public subject");
	cr_assert_str_eq(value_of(&old, "kid"), kid,
	                 "sealed with the newer account's key: one erasure takes both");
	char why[MG_WHY_MAX];
	uint64_t erased = 0;
	env_envelope e[ENV_MAX_EVENTS];
	size_t count = 0;
	cr_assert_eq(env_decode_commit(old.data, old.len, e, ENV_MAX_EVENTS, &count), ORN_OK);
	cr_assert_eq(mg_check(p, old.subject, e, count, &erased, why), ORN_OK, "%s", why);
	/* erased: the key gone, its tokens are counted, not reported */
	cr_assert_eq(ks_key_destroy(ks, kid), ORN_OK);
	cr_assert_eq(mg_check(p, old.subject, e, count, &erased, why), ORN_OK, "%s", why);
	cr_assert_eq(erased, 3);
	mg_destroy(p);
}
