/* test_proj_mails.c — the mail delivery log read model (projections/mails.c)
 * without NATS: mail events are applied through the model's projection
 * definition in write transactions, as the projector does. Given the events
 * of several emails, when listed by order, by state or both, then the rows,
 * their fold and the pages are as expected. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mails.h"
#include "personal.h"
#include "proj_internal.h"
#include "user.h"

static char dir[64];
static proj_env *env;
static proj_mail *model;
static uint64_t next_seq = 1;

static void setup(void)
{
	proj_env_options o;
	snprintf(dir, sizeof dir, "/tmp/orion-projmail-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	proj_env_options_init(&o);
	o.path = dir;
	o.map_size = 1 << 20;
	o.max_map_size = (size_t)1 << 30;
	cr_assert_eq(proj_env_open(&o, &env), ORN_OK);
	cr_assert_eq(proj_mail_create(env, &model), ORN_OK);
	next_seq = 1;
}

static void teardown(void)
{
	char cmd[128];
	proj_mail_destroy(model);
	model = NULL;
	proj_env_close(env);
	env = NULL;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(proj_mails, .init = setup, .fini = teardown);

typedef struct one_event {
	const char *subject, *type;
	const uint8_t *payload;
	size_t len;
} one_event;

static orn_rc apply_one(proj_txn *t, void *closure)
{
	one_event *o = closure;
	const proj_def *def = proj_mail_def(model);
	env_envelope e;
	memset(&e, 0, sizeof e);
	snprintf(e.type, sizeof e.type, "%s", o->type);
	e.schema = MAIL_LOG_SCHEMA;
	e.payload = o->payload;
	e.payload_len = o->len;
	return def->apply(def->self, t, next_seq++, o->subject, &e);
}

/* Applies one event of type on subject, as the projector does. */
static void apply_on(const char *subject, const char *type, const uint8_t *payload, size_t len)
{
	one_event o = {subject, type, payload, len};
	cr_assert_eq(proj_env_write(env, apply_one, &o), ORN_OK);
}

static void apply_raw(const char *id, const char *type, const uint8_t *payload, size_t len)
{
	char subject[ES_SUBJECT_MAX];
	snprintf(subject, sizeof subject, "orion.evt.mail.%s", id);
	apply_on(subject, type, payload, len);
}

static void apply(const char *id, mail_log_event ev)
{
	mp_writer *w = mp_writer_create();
	cr_assert_eq(mail_log_event_encode(w, &ev), ORN_OK);
	apply_raw(id, mail_log_event_type(ev.kind), mp_writer_data(w), mp_writer_size(w));
	mp_writer_destroy(w);
}

static mail_log_event event(mail_log_event_kind kind, const char *order_id, uint32_t attempt, int64_t at)
{
	mail_log_event e;
	memset(&e, 0, sizeof e);
	e.kind = kind;
	if (order_id != NULL) {
		snprintf(e.subject.order_id, sizeof e.subject.order_id, "%s", order_id);
		snprintf(e.subject.kind, sizeof e.subject.kind, "cancelled");
	} else {
		snprintf(e.subject.product_id, sizeof e.subject.product_id, "p1");
		snprintf(e.subject.kind, sizeof e.subject.kind, MAIL_LOG_KIND_LOW_STOCK);
	}
	snprintf(e.subject.recipient, sizeof e.subject.recipient, "ann@example.com");
	e.attempt = attempt;
	if (kind != MAIL_LOG_DELIVERED)
		snprintf(e.error, sizeof e.error, "Couldn't connect to server (smtp 0)");
	e.at_ms = at;
	return e;
}

static proj_mail_page page;

static size_t list(const char *order_id, int status, unsigned limit, const char *cursor)
{
	proj_mail_query q = {.order_id = order_id,
	                     .has_status = status >= 0,
	                     .status = (mail_log_status)(status >= 0 ? status : 0),
	                     .limit = limit,
	                     .cursor = cursor};
	cr_assert_eq(proj_mail_list(model, &q, &page), ORN_OK);
	return page.count;
}

/* m1: o1 delivered at attempt 1; m2: o1 failed after 2 attempts; m3: o2
 * pending after one failure; m4: an alert, delivered at attempt 2. */
static void given_four_emails(void)
{
	apply("m1", event(MAIL_LOG_DELIVERED, "o1", 1, 100));
	apply("m2", event(MAIL_LOG_ATTEMPT_FAILED, "o1", 1, 110));
	apply("m2", event(MAIL_LOG_ATTEMPT_FAILED, "o1", 2, 120));
	apply("m2", event(MAIL_LOG_FAILED, "o1", 2, 120));
	apply("m3", event(MAIL_LOG_ATTEMPT_FAILED, "o2", 1, 130));
	apply("m4", event(MAIL_LOG_ATTEMPT_FAILED, NULL, 1, 140));
	apply("m4", event(MAIL_LOG_DELIVERED, NULL, 2, 150));
}

Test(proj_mails, each_email_is_the_fold_of_its_events)
{
	proj_mail_entry e;
	given_four_emails();
	cr_assert_eq(proj_mail_get(model, "m1", &e), ORN_OK);
	cr_assert_eq(e.log.status, MAIL_LOG_STATUS_DELIVERED);
	cr_assert_eq(e.log.attempts, 1);
	cr_assert_eq(e.log.delivered_at_ms, 100);
	cr_assert_str_eq(e.log.subject.recipient, "ann@example.com");
	cr_assert_eq(proj_mail_get(model, "m2", &e), ORN_OK);
	cr_assert_eq(e.log.status, MAIL_LOG_STATUS_FAILED);
	cr_assert_eq(e.log.attempts, 2);
	cr_assert_str_eq(e.log.last_error, "Couldn't connect to server (smtp 0)");
	cr_assert_eq(e.log.delivered_at_ms, 0);
	cr_assert_eq(e.log.updated_at_ms, 120);
	cr_assert_eq(e.version, 4);
	cr_assert_eq(proj_mail_get(model, "m4", &e), ORN_OK);
	cr_assert_str_eq(e.log.subject.product_id, "p1");
	cr_assert_str_eq(e.log.subject.kind, "low_stock");
	cr_assert_eq(e.log.attempts, 2);
	cr_assert_eq(proj_mail_get(model, "m9", &e), ORN_ENOTFOUND);
	cr_assert_eq(proj_mail_get(model, "m.9", &e), ORN_EINVAL);
}

Test(proj_mails, lists_filter_by_order_by_state_and_both)
{
	given_four_emails();
	cr_assert_eq(list(NULL, -1, 100, NULL), 4);
	cr_assert_eq(list("o1", -1, 100, NULL), 2);
	cr_assert_str_eq(page.items[0].id, "m1");
	cr_assert_str_eq(page.items[1].id, "m2");
	cr_assert_eq(list(NULL, MAIL_LOG_STATUS_FAILED, 100, NULL), 1);
	cr_assert_str_eq(page.items[0].id, "m2");
	cr_assert_eq(list(NULL, MAIL_LOG_STATUS_DELIVERED, 100, NULL), 2);
	cr_assert_eq(list(NULL, MAIL_LOG_STATUS_PENDING, 100, NULL), 1);
	cr_assert_str_eq(page.items[0].id, "m3");
	cr_assert_eq(list("o1", MAIL_LOG_STATUS_DELIVERED, 100, NULL), 1);
	cr_assert_str_eq(page.items[0].id, "m1");
	cr_assert_eq(list("o2", MAIL_LOG_STATUS_DELIVERED, 100, NULL), 0);
	cr_assert_eq(list("o9", -1, 100, NULL), 0);
}

Test(proj_mails, pages_follow_the_cursor_without_gaps_or_repeats)
{
	given_four_emails();
	const char *expected[] = {"m1", "m2", "m3", "m4"};
	char cursor[PROJ_CURSOR_MAX] = "";
	size_t seen = 0;
	do {
		list(NULL, -1, 3, cursor);
		for (size_t i = 0; i < page.count; i++)
			cr_assert_str_eq(page.items[i].id, expected[seen++]);
		snprintf(cursor, sizeof cursor, "%s", page.next_cursor);
	} while (cursor[0] != '\0');
	cr_assert_eq(seen, 4);

	/* the same through the state index */
	cr_assert_eq(list(NULL, MAIL_LOG_STATUS_DELIVERED, 1, NULL), 1);
	cr_assert_str_eq(page.items[0].id, "m1");
	snprintf(cursor, sizeof cursor, "%s", page.next_cursor);
	cr_assert_eq(list(NULL, MAIL_LOG_STATUS_DELIVERED, 1, cursor), 1);
	cr_assert_str_eq(page.items[0].id, "m4");
	cr_assert_str_eq(page.next_cursor, "");
}

Test(proj_mails, bad_queries_are_refused)
{
	proj_mail_query q = {.limit = 0};
	cr_assert_eq(proj_mail_list(model, &q, &page), ORN_EINVAL);
	q.limit = 101;
	cr_assert_eq(proj_mail_list(model, &q, &page), ORN_EINVAL);
	q.limit = 10;
	q.cursor = "not-a-cursor!";
	cr_assert_eq(proj_mail_list(model, &q, &page), ORN_EINVAL);
	q.cursor = NULL;
	q.order_id = "o 1";
	cr_assert_eq(proj_mail_list(model, &q, &page), ORN_EINVAL);
	q.order_id = NULL;
	q.has_status = true;
	q.status = (mail_log_status)7;
	cr_assert_eq(proj_mail_list(model, &q, &page), ORN_EINVAL);
}

Test(proj_mails, undecodable_and_foreign_events_are_skipped)
{
	proj_mail_stats stats;
	apply_raw("m1", MAIL_LOG_EV_DELIVERED, (const uint8_t *)"\x80", 1);
	apply_raw("m1", "MailBounced", (const uint8_t *)"\x80", 1); /* a later version's type */
	proj_mail_stats_get(model, &stats);
	cr_assert_eq(stats.undecodable, 1);
	cr_assert_eq(list(NULL, -1, 10, NULL), 0);
}

/* ---- erasure (ADR 027) ---- */

static char kid_ann[PD_KID_MAX], kid_bob[PD_KID_MAX];

/* A mail of order_id to a recipient sealed with kid (the key itself is not needed here). */
static mail_log_event sealed_event(mail_log_event_kind kind, const char *order_id, const char *kid,
                                   int64_t at)
{
	uint8_t key[PD_KEY_BYTES];
	char ignored[PD_KID_MAX];
	mail_log_event e = event(kind, order_id, 1, at);
	pd_key_new(ignored, key);
	cr_assert_eq(pd_seal(key, kid, "customer_email", "evt-1", "ann@example.com", 15, e.subject.recipient,
	                     sizeof e.subject.recipient),
	             ORN_OK);
	return e;
}

/* CustomerErased naming kid (or nothing: an event before it named one). */
static void apply_erased(const char *kid)
{
	user_event ev = {.kind = USER_ERASED_EVENT};
	if (kid[0] != '\0') {
		strcpy(ev.fields.user_id, "usr_1");
		snprintf(ev.fields.kid, sizeof ev.fields.kid, "%s", kid);
	}
	mp_writer *w = mp_writer_create();
	cr_assert_eq(user_event_encode(w, &ev), ORN_OK);
	apply_on("orion.evt.user.u0123", USER_EV_ERASED, mp_writer_data(w), mp_writer_size(w));
	mp_writer_destroy(w);
}

static void expect_recipient_sealed(const char *id, bool sealed)
{
	proj_mail_entry e;
	cr_assert_eq(proj_mail_get(model, id, &e), ORN_OK, "%s", id);
	if (sealed)
		cr_assert(pd_is_sealed(e.log.subject.recipient), "%s keeps its recipient", id);
	else
		cr_assert_str_eq(e.log.subject.recipient, "", "%s loses its recipient", id);
}

static void given_mails_of_ann_and_bob(void)
{
	uint8_t key[PD_KEY_BYTES];
	pd_key_new(kid_ann, key);
	pd_key_new(kid_bob, key);
	apply("m1", sealed_event(MAIL_LOG_DELIVERED, "o1", kid_ann, 100));
	apply("m2", sealed_event(MAIL_LOG_ATTEMPT_FAILED, "o2", kid_ann, 110));
	apply("m3", sealed_event(MAIL_LOG_DELIVERED, "o3", kid_bob, 120));
	apply("m4", event(MAIL_LOG_DELIVERED, "o4", 1, 130)); /* a clear recipient (before ADR 027) */
}

Test(proj_mails, a_customer_erased_leaves_their_mails_without_recipient_for_good)
{
	given_mails_of_ann_and_bob();
	apply_erased(""); /* names no key: nothing changes */
	expect_recipient_sealed("m1", true);
	apply_erased(kid_ann);
	expect_recipient_sealed("m1", false);
	expect_recipient_sealed("m2", false);
	expect_recipient_sealed("m3", true);
	proj_mail_entry e;
	cr_assert_eq(proj_mail_get(model, "m4", &e), ORN_OK);
	cr_assert_str_eq(e.log.subject.recipient, "ann@example.com");
	cr_assert_eq(proj_mail_get(model, "m1", &e), ORN_OK);
	cr_assert_eq(e.log.status, MAIL_LOG_STATUS_DELIVERED, "the row keeps its status");
	cr_assert_str_eq(e.log.subject.order_id, "o1");
	/* a later event of such a mail carries the recipient again: blanked too */
	apply("m2", sealed_event(MAIL_LOG_DELIVERED, "o2", kid_ann, 140));
	expect_recipient_sealed("m2", false);
	cr_assert_eq(proj_mail_get(model, "m2", &e), ORN_OK);
	cr_assert_eq(e.log.status, MAIL_LOG_STATUS_DELIVERED);
	/* erased again (a redelivery): the same */
	apply_erased(kid_ann);
	expect_recipient_sealed("m3", true);
	cr_assert_eq(list("o2", -1, 10, NULL), 1);
}

static orn_rc drop_kid_index(proj_txn *t, void *closure)
{
	(void)closure;
	MDB_dbi dbi;
	cr_assert_eq(mdb_dbi_open(t->txn, "mail.by_kid", 0, &dbi), 0);
	cr_assert_eq(mdb_drop(t->txn, dbi, 1), 0);
	return ORN_OK;
}

Test(proj_mails, a_model_written_before_the_key_index_gets_it_filled)
{
	given_mails_of_ann_and_bob();
	cr_assert_eq(proj_env_write(env, drop_kid_index, NULL), ORN_OK);
	proj_mail_destroy(model);
	cr_assert_eq(proj_mail_create(env, &model), ORN_OK); /* fills the index from the records */
	apply_erased(kid_bob);
	expect_recipient_sealed("m3", false);
	expect_recipient_sealed("m1", true);
}
