/* test_mail_log.c — unit tests of the mail aggregate (actors/mail_log.c).
 *
 * Given-when-then: given events applied with mail_log_evolve, when an
 * outcome is decided, then the expected events or rejection. Further tests
 * cover the claims of attempts (ADR 024), the payload codecs (round trips and
 * hostile payloads), the two kind tables, the id and the error text's cap. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "decision.h"
#include "mail_log.h"

static mail_log_state state;
static mail_log_events out;
static mp_writer *writer;

static void setup(void)
{
	mail_log_state_init(&state);
	writer = mp_writer_create();
	cr_assert_not_null(writer);
}

static void teardown(void)
{
	mp_writer_destroy(writer);
}

TestSuite(mail_log, .init = setup, .fini = teardown);

static mail_log_command command(mail_log_command_kind kind, const char *error, int64_t at)
{
	mail_log_command c;
	memset(&c, 0, sizeof c);
	c.kind = kind;
	strcpy(c.subject.order_id, "o1");
	strcpy(c.subject.kind, "awaiting_confirmation");
	strcpy(c.subject.recipient, "ann@example.com");
	if (error != NULL)
		strcpy(c.error, error);
	c.at_ms = at;
	c.max_attempts = 3;
	return c;
}

/* Decides c against the state and applies what it emitted. */
static mail_log_verdict run(const mail_log_command *c)
{
	mail_log_verdict v = mail_log_decide(&state, c, &out);
	for (size_t i = 0; i < out.count; i++)
		mail_log_evolve(&state, &out.items[i]);
	return v;
}

Test(mail_log, a_first_successful_send_is_delivered_at_attempt_one)
{
	mail_log_command c = command(MAIL_LOG_RECORD_SENT, NULL, 1000);
	cr_assert_eq(run(&c), MAIL_LOG_OK);
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, MAIL_LOG_DELIVERED);
	cr_assert_eq(out.items[0].attempt, 1);
	cr_assert_eq(state.status, MAIL_LOG_STATUS_DELIVERED);
	cr_assert_eq(state.attempts, 1);
	cr_assert_eq(state.delivered_at_ms, 1000);
	cr_assert_eq(state.updated_at_ms, 1000);
	cr_assert_str_eq(state.subject.recipient, "ann@example.com");
}

Test(mail_log, failures_below_the_bound_stay_pending_and_count_attempts)
{
	mail_log_command c = command(MAIL_LOG_RECORD_FAILED, "Couldn't connect to server (smtp 0)", 10);
	cr_assert_eq(run(&c), MAIL_LOG_OK);
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, MAIL_LOG_ATTEMPT_FAILED);
	c.at_ms = 20;
	cr_assert_eq(run(&c), MAIL_LOG_OK);
	cr_assert_eq(out.items[0].attempt, 2);
	cr_assert_eq(state.status, MAIL_LOG_STATUS_PENDING);
	cr_assert_eq(state.attempts, 2);
	cr_assert_str_eq(state.last_error, "Couldn't connect to server (smtp 0)");

	/* then a success: delivered at the third attempt */
	mail_log_command ok = command(MAIL_LOG_RECORD_SENT, NULL, 30);
	cr_assert_eq(run(&ok), MAIL_LOG_OK);
	cr_assert_eq(out.items[0].attempt, 3);
	cr_assert_eq(state.status, MAIL_LOG_STATUS_DELIVERED);
	cr_assert_eq(state.delivered_at_ms, 30);
}

Test(mail_log, the_failure_at_the_bound_fails_the_email_in_the_same_commit)
{
	mail_log_command c = command(MAIL_LOG_RECORD_FAILED, "timeout", 10);
	run(&c);
	run(&c);
	cr_assert_eq(run(&c), MAIL_LOG_OK);
	cr_assert_eq(out.count, 2);
	cr_assert_eq(out.items[0].kind, MAIL_LOG_ATTEMPT_FAILED);
	cr_assert_eq(out.items[1].kind, MAIL_LOG_FAILED);
	cr_assert_eq(out.items[1].attempt, 3);
	cr_assert_str_eq(out.items[1].error, "timeout");
	cr_assert_eq(state.status, MAIL_LOG_STATUS_FAILED);
	cr_assert_eq(state.attempts, 3);
	cr_assert_eq(state.delivered_at_ms, 0);
}

Test(mail_log, a_settled_log_rejects_every_outcome)
{
	mail_log_command sent = command(MAIL_LOG_RECORD_SENT, NULL, 1);
	run(&sent);
	cr_assert_eq(mail_log_decide(&state, &sent, &out), MAIL_LOG_REJ_SETTLED);
	cr_assert_eq(out.count, 0);
	mail_log_command failed = command(MAIL_LOG_RECORD_FAILED, "x", 2);
	cr_assert_eq(mail_log_decide(&state, &failed, &out), MAIL_LOG_REJ_SETTLED);
	cr_assert_str_eq(mail_log_verdict_code(MAIL_LOG_REJ_SETTLED), "settled");
	cr_assert_str_eq(mail_log_verdict_code(MAIL_LOG_OK), "");
}

Test(mail_log, an_event_after_the_log_settled_changes_nothing)
{
	mail_log_command sent = command(MAIL_LOG_RECORD_SENT, NULL, 5);
	run(&sent);
	mail_log_event late = out.items[0];
	late.kind = MAIL_LOG_ATTEMPT_FAILED;
	late.attempt = 9;
	late.at_ms = 99;
	mail_log_evolve(&state, &late);
	cr_assert_eq(state.attempts, 1);
	cr_assert_eq(state.updated_at_ms, 5);
}

Test(mail_log, invalid_commands_are_rejected)
{
	mail_log_command c = command(MAIL_LOG_RECORD_SENT, NULL, 1);
	c.max_attempts = 0;
	cr_assert_eq(mail_log_decide(&state, &c, &out), MAIL_LOG_REJ_INVALID);
	c = command(MAIL_LOG_RECORD_SENT, NULL, 1);
	c.subject.recipient[0] = '\0';
	cr_assert_eq(mail_log_decide(&state, &c, &out), MAIL_LOG_REJ_INVALID);
	c = command(MAIL_LOG_RECORD_SENT, NULL, 1);
	strcpy(c.subject.product_id, "p1"); /* an order and a product */
	cr_assert_eq(mail_log_decide(&state, &c, &out), MAIL_LOG_REJ_INVALID);
	c = command(MAIL_LOG_RECORD_SENT, NULL, 1);
	strcpy(c.subject.order_id, "o.1");
	cr_assert_eq(mail_log_decide(&state, &c, &out), MAIL_LOG_REJ_INVALID);
	cr_assert_str_eq(mail_log_verdict_code(MAIL_LOG_REJ_INVALID), "invalid");
}

Test(mail_log, an_alert_names_a_product_instead_of_an_order)
{
	mail_log_command c = command(MAIL_LOG_RECORD_SENT, NULL, 1);
	c.subject.order_id[0] = '\0';
	strcpy(c.subject.product_id, "p1");
	strcpy(c.subject.kind, MAIL_LOG_KIND_LOW_STOCK);
	cr_assert_eq(run(&c), MAIL_LOG_OK);
	cr_assert_str_eq(state.subject.product_id, "p1");
}

Test(mail_log, an_accounts_email_names_neither_an_order_nor_a_product)
{
	mail_log_command c = command(MAIL_LOG_RECORD_SENT, NULL, 1);
	c.subject.order_id[0] = '\0';
	strcpy(c.subject.kind, "account_verify");
	cr_assert_eq(run(&c), MAIL_LOG_OK);
	cr_assert_str_eq(state.subject.kind, "account_verify");
	/* any other kind still names exactly one */
	mail_log_state_init(&state);
	c = command(MAIL_LOG_RECORD_SENT, NULL, 1);
	c.subject.order_id[0] = '\0';
	cr_assert_eq(mail_log_decide(&state, &c, &out), MAIL_LOG_REJ_INVALID);
}

Test(mail_log, every_event_round_trips_through_its_payload)
{
	mail_log_command c = command(MAIL_LOG_RECORD_FAILED, "refused", 77);
	c.max_attempts = 1;
	cr_assert_eq(mail_log_decide(&state, &c, &out), MAIL_LOG_OK);
	mail_log_event all[3] = {out.items[0], out.items[1], out.items[0]};
	all[2].kind = MAIL_LOG_DELIVERED;
	memset(all[2].error, 0, sizeof all[2].error);
	strcpy(all[2].subject.product_id, "p9");
	memset(all[2].subject.order_id, 0, sizeof all[2].subject.order_id);
	for (size_t i = 0; i < 3; i++) {
		mail_log_event back;
		mp_writer_reset(writer);
		cr_assert_eq(mail_log_event_encode(writer, &all[i]), ORN_OK);
		cr_assert_eq(mail_log_event_decode(mail_log_event_type(all[i].kind), mp_writer_data(writer),
		                                   mp_writer_size(writer), &back),
		             ORN_OK);
		cr_assert_eq(memcmp(&back, &all[i], sizeof back), 0, "event %zu", i);
	}
}

Test(mail_log, hostile_payloads_do_not_decode)
{
	mail_log_event e;
	cr_assert_eq(mail_log_event_decode("Nope", (const uint8_t *)"\x80", 1, &e), ORN_EINVAL);
	cr_assert_eq(mail_log_event_decode(NULL, (const uint8_t *)"\x80", 1, &e), ORN_EINVAL);
	cr_assert_eq(mail_log_event_decode(MAIL_LOG_EV_DELIVERED, (const uint8_t *)"\x80", 1, &e),
	             ORN_EDECODE); /* fields missing */
	cr_assert_eq(mail_log_event_decode(MAIL_LOG_EV_DELIVERED, (const uint8_t *)"\x01", 1, &e),
	             ORN_EDECODE); /* not a map */

	/* attempt 0, a repeated key, trailing bytes, a wrong type, an unknown key */
	mail_log_event good;
	memset(&good, 0, sizeof good);
	good.kind = MAIL_LOG_DELIVERED;
	strcpy(good.subject.order_id, "o1");
	strcpy(good.subject.kind, "cancelled");
	strcpy(good.subject.recipient, "a@b.c");
	good.attempt = 1;
	mp_writer_reset(writer);
	mp_write_map(writer, 6);
	mp_write_cstr(writer, "order_id");
	mp_write_cstr(writer, "o1");
	mp_write_cstr(writer, "kind");
	mp_write_cstr(writer, "cancelled");
	mp_write_cstr(writer, "recipient");
	mp_write_cstr(writer, "a@b.c");
	mp_write_cstr(writer, "attempt");
	mp_write_uint(writer, 0);
	mp_write_cstr(writer, "at");
	mp_write_int(writer, 1);
	mp_write_cstr(writer, "future");
	mp_write_bool(writer, true);
	cr_assert_eq(mail_log_event_decode(MAIL_LOG_EV_DELIVERED, mp_writer_data(writer),
	                                   mp_writer_size(writer), &e),
	             ORN_EDECODE);

	mp_writer_reset(writer);
	cr_assert_eq(mail_log_event_encode(writer, &good), ORN_OK);
	mp_write_nil(writer);
	cr_assert_eq(mail_log_event_decode(MAIL_LOG_EV_DELIVERED, mp_writer_data(writer),
	                                   mp_writer_size(writer), &e),
	             ORN_EDECODE);

	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "kind");
	mp_write_cstr(writer, "x");
	mp_write_cstr(writer, "kind");
	mp_write_cstr(writer, "y");
	cr_assert_eq(mail_log_event_decode(MAIL_LOG_EV_DELIVERED, mp_writer_data(writer),
	                                   mp_writer_size(writer), &e),
	             ORN_EDECODE);

	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "at");
	mp_write_cstr(writer, "yesterday");
	cr_assert_eq(mail_log_event_decode(MAIL_LOG_EV_DELIVERED, mp_writer_data(writer),
	                                   mp_writer_size(writer), &e),
	             ORN_EDECODE);

	mail_log_event bad = good;
	bad.kind = (mail_log_event_kind)7;
	cr_assert_eq(mail_log_event_encode(writer, &bad), ORN_EINVAL);
	cr_assert_null(mail_log_event_type((mail_log_event_kind)7));
}

Test(mail_log, the_error_text_is_capped_on_a_character_boundary_and_has_no_controls)
{
	char long_text[400], out_text[MAIL_LOG_ERROR_MAX];
	memset(long_text, 'a', sizeof long_text);
	memcpy(long_text + MAIL_LOG_ERROR_MAX - 2, "\xc3\xa9", 2); /* é across the cut */
	long_text[sizeof long_text - 1] = '\0';
	mail_log_error_set(out_text, long_text);
	cr_assert_eq(strlen(out_text), MAIL_LOG_ERROR_MAX - 2);
	mail_log_error_set(out_text, "line\r\nbreak");
	cr_assert_str_eq(out_text, "line  break");
	mail_log_error_set(out_text, NULL);
	cr_assert_str_eq(out_text, "");
}

Test(mail_log, the_id_is_derived_from_the_marker_key_and_is_a_valid_subject_token)
{
	char a[MAIL_LOG_ID_MAX], b[MAIL_LOG_ID_MAX], c[MAIL_LOG_ID_MAX];
	cr_assert_eq(mail_log_id(a, "o1/cancelled"), ORN_OK);
	cr_assert_eq(mail_log_id(b, "o1/cancelled"), ORN_OK);
	cr_assert_eq(mail_log_id(c, "o1/confirmed"), ORN_OK);
	cr_assert_str_eq(a, b);
	cr_assert_str_neq(a, c);
	cr_assert_eq(strlen(a), MAIL_LOG_ID_MAX - 1);
	cr_assert(orn_id_valid(a));
	cr_assert_eq(mail_log_id(a, ""), ORN_EINVAL);
	cr_assert_eq(mail_log_id(a, NULL), ORN_EINVAL);
}

Test(mail_log, status_names_parse_back)
{
	mail_log_status s;
	for (int i = 0; i < 3; i++) {
		cr_assert(mail_log_status_parse(mail_log_status_name((mail_log_status)i), &s));
		cr_assert_eq((int)s, i);
	}
	cr_assert_not(mail_log_status_parse("sent", &s));
	cr_assert_not(mail_log_status_parse(NULL, &s));
	cr_assert_null(mail_log_status_name((mail_log_status)9));
}

/* ---- lost confirmation links (issue 14, finding 8; ADR 023) ---- */

static mail_log_command resend(const char *by, int64_t at)
{
	mail_log_command c = {.kind = MAIL_LOG_REQUEST_RESEND, .at_ms = at};
	snprintf(c.by, sizeof c.by, "%s", by);
	return c;
}

Test(mail_log, with_a_deadline_failures_go_on_past_the_bound_until_the_deadline)
{
	for (int i = 1; i <= 6; i++) {
		mail_log_command c = command(MAIL_LOG_RECORD_FAILED, "down", 1000 * i);
		c.deadline_ms = 5500;
		cr_assert_eq(run(&c), MAIL_LOG_OK);
		cr_assert_eq(state.status, i < 6 ? MAIL_LOG_STATUS_PENDING : MAIL_LOG_STATUS_FAILED,
		             "attempt %d", i);
	}
	cr_assert_eq(state.attempts, 6, "the bound of 3 did not end it");
}

Test(mail_log, a_resend_opens_a_settled_log_for_one_more_generation)
{
	mail_log_command sent = command(MAIL_LOG_RECORD_SENT, NULL, 1000);
	run(&sent);
	mail_log_command r = resend("customer", 2000);
	cr_assert_eq(run(&r), MAIL_LOG_OK);
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, MAIL_LOG_RESEND_REQUESTED);
	cr_assert_eq(out.items[0].attempt, 1);
	cr_assert_str_eq(out.items[0].subject.order_id, "o1");
	cr_assert_eq(state.status, MAIL_LOG_STATUS_PENDING);
	cr_assert_eq(state.generation, 1);
	cr_assert_eq(state.attempts, 0);
	/* pending: a second request is accepted with nothing to add */
	r = resend("customer", 2001);
	cr_assert_eq(run(&r), MAIL_LOG_OK);
	cr_assert_eq(out.count, 0);
	/* the new generation is delivered at its attempt 1 */
	sent = command(MAIL_LOG_RECORD_SENT, NULL, 3000);
	run(&sent);
	cr_assert_eq(state.status, MAIL_LOG_STATUS_DELIVERED);
	cr_assert_eq(state.attempts, 1);
	/* too soon after the last request, then fine a minute later */
	r = resend("admin", 2000 + MAIL_LOG_RESEND_INTERVAL_MS - 1);
	cr_assert_eq(run(&r), MAIL_LOG_REJ_TOO_SOON);
	cr_assert_str_eq(mail_log_verdict_code(MAIL_LOG_REJ_TOO_SOON), "too_soon");
	r = resend("admin", 2000 + MAIL_LOG_RESEND_INTERVAL_MS);
	cr_assert_eq(run(&r), MAIL_LOG_OK);
	cr_assert_eq(state.generation, 2);
	/* an older generation's event opens nothing */
	mail_log_event stale = {.kind = MAIL_LOG_RESEND_REQUESTED, .subject = state.subject, .attempt = 1};
	mail_log_evolve(&state, &stale);
	cr_assert_eq(state.generation, 2);
}

Test(mail_log, resends_are_bounded_and_need_an_attempted_order_email)
{
	mail_log_command r = resend("customer", 1000);
	cr_assert_eq(run(&r), MAIL_LOG_REJ_NOT_FOUND);
	r = resend("nobody", 1000);
	cr_assert_eq(run(&r), MAIL_LOG_REJ_INVALID);
	mail_log_command sent = command(MAIL_LOG_RECORD_SENT, NULL, 0);
	for (int i = 1; i <= MAIL_LOG_RESENDS_MAX; i++) {
		run(&sent);
		r = resend("admin", (int64_t)i * MAIL_LOG_RESEND_INTERVAL_MS);
		cr_assert_eq(run(&r), MAIL_LOG_OK, "resend %d", i);
	}
	run(&sent);
	r = resend("admin", 100LL * MAIL_LOG_RESEND_INTERVAL_MS);
	cr_assert_eq(run(&r), MAIL_LOG_REJ_TOO_MANY);
	cr_assert_str_eq(mail_log_verdict_code(MAIL_LOG_REJ_TOO_MANY), "too_many");
	/* an alert is never resent */
	mail_log_state_init(&state);
	mail_log_command alert = command(MAIL_LOG_RECORD_SENT, NULL, 0);
	alert.subject.order_id[0] = '\0';
	strcpy(alert.subject.product_id, "p1");
	strcpy(alert.subject.kind, MAIL_LOG_KIND_LOW_STOCK);
	run(&alert);
	r = resend("admin", 1000);
	cr_assert_eq(run(&r), MAIL_LOG_REJ_NOT_RESENDABLE);
	cr_assert_str_eq(mail_log_verdict_code(MAIL_LOG_REJ_NOT_FOUND), "not_found");
	cr_assert_str_eq(mail_log_verdict_code(MAIL_LOG_REJ_NOT_RESENDABLE), "not_resendable");
}

Test(mail_log, the_resend_event_and_command_round_trip)
{
	mail_log_event e = {.kind = MAIL_LOG_RESEND_REQUESTED, .attempt = 2, .at_ms = 77};
	mail_log_event back;
	strcpy(e.subject.order_id, "o1");
	strcpy(e.subject.kind, "awaiting_confirmation");
	strcpy(e.subject.recipient, "ann@example.com");
	strcpy(e.by, "admin");
	mp_writer_reset(writer);
	cr_assert_eq(mail_log_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(mail_log_event_decode(MAIL_LOG_EV_RESEND_REQUESTED, mp_writer_data(writer),
	                                   mp_writer_size(writer), &back),
	             ORN_OK);
	cr_assert_eq(back.attempt, 2);
	cr_assert_str_eq(back.by, "admin");
	cr_assert_eq(back.at_ms, 77);
	mail_log_command c = resend("customer", 42), d;
	mp_writer_reset(writer);
	cr_assert_eq(mail_log_command_encode(writer, &c), ORN_OK);
	cr_assert_eq(mail_log_command_decode(MAIL_LOG_CMD_REQUEST_RESEND, mp_writer_data(writer),
	                                     mp_writer_size(writer), &d),
	             ORN_OK);
	cr_assert_eq(d.kind, MAIL_LOG_REQUEST_RESEND);
	cr_assert_str_eq(d.by, "customer");
	cr_assert_eq(d.at_ms, 42);
	cr_assert_eq(mail_log_command_decode("Other", mp_writer_data(writer), mp_writer_size(writer), &d),
	             ORN_EINVAL);
	mail_log_command unknown = command((mail_log_command_kind)99, NULL, 0);
	cr_assert_eq(mail_log_command_encode(writer, &unknown), ORN_EINVAL);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "by");
	mp_write_cstr(writer, "admin");
	cr_assert_eq(mail_log_command_decode(MAIL_LOG_CMD_REQUEST_RESEND, mp_writer_data(writer),
	                                     mp_writer_size(writer), &d),
	             ORN_EDECODE, "at is required");
}

/* ---- claims (ADR 024) ---- */

static mail_log_command claim_by(const char *by, int64_t at, int64_t lease)
{
	mail_log_command c = command(MAIL_LOG_CLAIM, NULL, at);
	snprintf(c.by, sizeof c.by, "%s", by);
	c.lease_ms = lease;
	return c;
}

Test(mail_log, a_claim_holds_the_attempt_for_its_lease_against_another_instance)
{
	mail_log_command a = claim_by("ia", 1000, 30000), b = claim_by("ib", 2000, 30000);
	cr_assert_eq(run(&a), MAIL_LOG_OK);
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, MAIL_LOG_CLAIMED);
	cr_assert_eq(out.items[0].attempt, 1, "the attempt it claims: attempts + 1");
	cr_assert_eq(out.items[0].until_ms, 31000);
	cr_assert_str_eq(state.claimed_by, "ia");
	cr_assert_eq(state.attempts, 0, "a claim is no attempt made");
	cr_assert(state.exists);
	cr_assert_eq(run(&b), MAIL_LOG_REJ_CLAIMED, "another instance waits");
	cr_assert_str_eq(mail_log_verdict_code(MAIL_LOG_REJ_CLAIMED), "claimed");
	a.at_ms = 5000;
	cr_assert_eq(run(&a), MAIL_LOG_OK, "its own claim again");
	cr_assert_eq(out.count, 0, "no second event");
	b.at_ms = 31000;
	cr_assert_eq(run(&b), MAIL_LOG_OK, "a lapsed claim is taken over");
	cr_assert_eq(out.count, 1);
	cr_assert_str_eq(state.claimed_by, "ib");
}

Test(mail_log, an_outcome_ends_the_claim_and_a_settled_log_refuses_it)
{
	mail_log_command a = claim_by("ia", 1000, 30000), b = claim_by("ib", 1500, 30000);
	mail_log_command failed = command(MAIL_LOG_RECORD_FAILED, "refused", 1200);
	cr_assert_eq(run(&a), MAIL_LOG_OK);
	cr_assert_eq(run(&failed), MAIL_LOG_OK);
	cr_assert_str_eq(state.claimed_by, "", "the outcome ended it");
	cr_assert_eq(state.attempts, 1);
	cr_assert_eq(run(&b), MAIL_LOG_OK, "the next attempt is anyone's");
	cr_assert_eq(out.items[0].attempt, 2);
	mail_log_command sent = command(MAIL_LOG_RECORD_SENT, NULL, 1600);
	cr_assert_eq(run(&sent), MAIL_LOG_OK);
	cr_assert_eq(state.status, MAIL_LOG_STATUS_DELIVERED);
	cr_assert_eq(run(&a), MAIL_LOG_REJ_SETTLED);
}

Test(mail_log, a_claim_of_another_generation_or_without_a_lease_is_refused)
{
	mail_log_command c = claim_by("ia", 1000, 30000);
	c.generation = 1;
	cr_assert_eq(run(&c), MAIL_LOG_REJ_SETTLED, "the first sending's log is no resend's");
	c.generation = 0;
	c.lease_ms = 0;
	cr_assert_eq(run(&c), MAIL_LOG_REJ_INVALID);
	c = claim_by("", 1000, 30000);
	cr_assert_eq(run(&c), MAIL_LOG_REJ_INVALID, "an instance id is needed");
	c = claim_by("has space", 1000, 30000);
	cr_assert_eq(run(&c), MAIL_LOG_REJ_INVALID);
}

Test(mail_log, the_claim_event_and_every_command_round_trip)
{
	mail_log_event e = {.kind = MAIL_LOG_CLAIMED, .attempt = 3, .until_ms = 99, .at_ms = 9};
	mail_log_event back;
	strcpy(e.subject.product_id, "p1");
	strcpy(e.subject.kind, "low_stock");
	strcpy(e.subject.recipient, "admin@example.com");
	strcpy(e.by, "i0123456789abcdef");
	cr_assert_eq(mail_log_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(mail_log_event_decode(MAIL_LOG_EV_CLAIMED, mp_writer_data(writer),
	                                   mp_writer_size(writer), &back),
	             ORN_OK);
	cr_assert_eq(back.attempt, 3);
	cr_assert_eq(back.until_ms, 99);
	cr_assert_str_eq(back.by, "i0123456789abcdef");
	cr_assert_str_eq(back.subject.product_id, "p1");
	cr_assert_str_eq(mail_log_event_type(MAIL_LOG_CLAIMED), MAIL_LOG_EV_CLAIMED);

	mail_log_command kinds[] = {claim_by("ib", 5, 7), command(MAIL_LOG_RECORD_SENT, NULL, 6),
	                            command(MAIL_LOG_RECORD_FAILED, "no route", 8)};
	kinds[0].generation = 2;
	kinds[2].deadline_ms = 123;
	strcpy(kinds[1].subject.product_id, "p9");
	for (size_t i = 0; i < ORN_ARRAY_LEN(kinds); i++) {
		mail_log_command d;
		mp_writer_reset(writer);
		cr_assert_eq(mail_log_command_encode(writer, &kinds[i]), ORN_OK);
		cr_assert_eq(mail_log_command_decode(mail_log_command_type(kinds[i].kind),
		                                     mp_writer_data(writer), mp_writer_size(writer), &d),
		             ORN_OK, "%zu", i);
		cr_assert_eq(d.kind, kinds[i].kind);
		cr_assert_str_eq(d.subject.recipient, kinds[i].subject.recipient);
		cr_assert_str_eq(d.subject.product_id, kinds[i].subject.product_id);
		cr_assert_eq(d.at_ms, kinds[i].at_ms);
		cr_assert_eq(d.max_attempts, kinds[i].kind == MAIL_LOG_CLAIM ? 0u : kinds[i].max_attempts);
		cr_assert_eq(d.generation, kinds[i].generation);
		cr_assert_eq(d.lease_ms, kinds[i].lease_ms);
		cr_assert_eq(d.deadline_ms, kinds[i].deadline_ms);
		cr_assert_str_eq(d.error, kinds[i].error);
		cr_assert_str_eq(d.by, kinds[i].by);
	}
	cr_assert_null(mail_log_command_type((mail_log_command_kind)99));
}

Test(mail_log, the_bus_takes_only_resend_requests_and_the_writer_every_command)
{
	act_decision *d = act_decision_create();
	mail_log_command c = claim_by("ia", 10, 1000);
	env_envelope cmd;
	cr_assert_eq(mail_log_command_encode(writer, &c), ORN_OK);
	memset(&cmd, 0, sizeof cmd);
	strcpy(cmd.type, MAIL_LOG_CMD_CLAIM);
	cmd.schema = MAIL_LOG_SCHEMA;
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	mail_log_state_init(&state);
	cr_assert_eq(mail_log_kind.decide(&state, &cmd, d), ORN_OK);
	cr_assert_str_eq(act_decision_rejection(d), "invalid", "no claim from the bus");
	act_decision_clear(d);
	cr_assert_eq(mail_log_writer_kind.decide(&state, &cmd, d), ORN_OK);
	cr_assert_null(act_decision_rejection(d));
	cr_assert_eq(act_decision_count(d), 1);
	cr_assert(mail_log_writer_kind.copyable);
	act_decision_destroy(d);
}
