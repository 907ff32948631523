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
#include "proj_internal.h"

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
	const char *id, *type;
	const uint8_t *payload;
	size_t len;
} one_event;

static orn_rc apply_one(proj_txn *t, void *closure)
{
	one_event *o = closure;
	const proj_def *def = proj_mail_def(model);
	env_envelope e;
	char subject[ES_SUBJECT_MAX];
	memset(&e, 0, sizeof e);
	snprintf(e.type, sizeof e.type, "%s", o->type);
	e.schema = MAIL_LOG_SCHEMA;
	e.payload = o->payload;
	e.payload_len = o->len;
	snprintf(subject, sizeof subject, "orion.evt.mail.%s", o->id);
	return def->apply(def->self, t, next_seq++, subject, &e);
}

static void apply_raw(const char *id, const char *type, const uint8_t *payload, size_t len)
{
	one_event o = {id, type, payload, len};
	cr_assert_eq(proj_env_write(env, apply_one, &o), ORN_OK);
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
