/* test_verify_log.c — `orion verify-log` against a real nats-server, run as an
 * operator runs it, on logs crafted commit by commit (tests/support/
 * crafted_log.h): a clean log verifies with exit 0; void commits (a lost race
 * on R3) are reported with their sequence, subject, recorded and valid
 * version and what they would have done, and fail only --strict; impossible
 * states, made with legacy commits that carry no Orion-Prev (so both sides of
 * a race count, as before the chain), are reported per rule with exit 1;
 * --json lines parse; --to stops early; bad usage exits 2. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "crafted_log.h"
#include "harness.h"
#include "log.h"

static tcl_world world;

static void start_all(void)
{
	tcl_world_start(&world, "verify-log");
}

static void stop_all(void)
{
	tcl_world_stop(&world);
}

/* Runs `orion verify-log --quiet args` against the test's server; stdout
 * returned in *out (malloc'd). Exit code. */
static int run_verify_log(const char *args, char **out)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "verify-log --quiet %s", args);
	return tcl_run_orion(&world, cmd, out);
}

/* Every line of a --json run parsed; the last is the summary. */
static json_t *json_lines(const char *out)
{
	json_t *lines = json_array();
	const char *p = out;
	while (*p != '\0') {
		const char *end = strchr(p, '\n');
		cr_assert_not_null(end, "unterminated line: %s", p);
		json_error_t err;
		json_t *line = json_loadb(p, (size_t)(end - p), 0, &err);
		cr_assert_not_null(line, "not JSON (%s): %.*s", err.text, (int)(end - p), p);
		json_array_append_new(lines, line);
		p = end + 1;
	}
	cr_assert_gt(json_array_size(lines), 0);
	json_t *summary = json_array_get(lines, json_array_size(lines) - 1);
	cr_assert_str_eq(json_string_value(json_object_get(summary, "summary")), "verify-log");
	return lines;
}

/* The finding of lines at seq with that finding kind, NULL if none. */
static json_t *finding_at(json_t *lines, const char *finding, uint64_t seq)
{
	size_t i;
	json_t *line;
	json_array_foreach(lines, i, line)
	{
		const char *what = json_string_value(json_object_get(line, "finding"));
		if (what != NULL && strcmp(what, finding) == 0 &&
		    (uint64_t)json_integer_value(json_object_get(line, "seq")) == seq)
			return line;
	}
	return NULL;
}

static size_t count_of(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* A small shop whose every commit is valid: a stock item reserved and
 * committed, an order placed, reserved, confirmed and paid, its payment and
 * its email. */
static void craft_clean_shop(void)
{
	tcl_valid(world.log, "stock", "p-1", (tcl_event[]){tcl_stock_event(STOCK_CREATED, NULL, 10)}, 1);
	tcl_valid(world.log, "stock", "p-1", (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-1", 3)}, 1);
	tcl_valid(world.log, "order", "o-1", (tcl_event[]){tcl_order_event(ORDER_PLACED, "p-1", 3)}, 1);
	tcl_valid(world.log, "order", "o-1", (tcl_event[]){tcl_order_event(ORDER_RESERVED, "p-1", 3)}, 1);
	tcl_valid(world.log, "order", "o-1",
	          (tcl_event[]){tcl_order_event(ORDER_CONFIRMED_BY_CUSTOMER, "p-1", 3)}, 1);
	tcl_valid(world.log, "payment", "o-1", (tcl_event[]){tcl_payment_event(PAYMENT_ATTEMPTED, NULL)}, 1);
	tcl_valid(world.log, "payment", "o-1", (tcl_event[]){tcl_payment_event(PAYMENT_SUCCEEDED, "ch_1")},
	          1);
	tcl_valid(world.log, "order", "o-1", (tcl_event[]){tcl_order_event(ORDER_PAID, "p-1", 3)}, 1);
	tcl_valid(world.log, "stock", "p-1", (tcl_event[]){tcl_stock_event(STOCK_COMMITTED, "o-1", 3)}, 1);
	tcl_valid(world.log, "mail", "m-1", (tcl_event[]){tcl_mail_event(MAIL_LOG_ATTEMPT_FAILED, "o-1", 1)},
	          1);
	tcl_valid(world.log, "mail", "m-1", (tcl_event[]){tcl_mail_event(MAIL_LOG_DELIVERED, "o-1", 2)}, 1);
}

Test(verify_log, an_empty_stream_verifies_clean, .init = start_all, .fini = stop_all, .timeout = 60)
{
	char *out = NULL;
	int code = run_verify_log("", &out);
	cr_assert_eq(code, 0, "%s", out);
	cr_expect_not_null(strstr(out, "verify-log: 0 commits, 0 void, 0 impossible states\n"), "%s", out);
	free(out);
}

Test(verify_log, a_clean_log_verifies_clean, .init = start_all, .fini = stop_all, .timeout = 60)
{
	char *out = NULL;
	craft_clean_shop();
	int code = run_verify_log("", &out);
	cr_assert_eq(code, 0, "%s", out);
	cr_expect_not_null(strstr(out, "verify-log: 11 commits, 0 void, 0 impossible states\n"), "%s", out);
	cr_expect_eq(count_of(out, "\n"), 2, "no finding lines: %s", out);
	free(out);
	code = run_verify_log("--strict", &out);
	cr_expect_eq(code, 0, "%s", out);
	free(out);
}

/* Expects the text line of the void commit at seq, decided on prev instead
 * of valid, whose events start with done. */
static void expect_void(const char *out, uint64_t seq, const char *subject, uint64_t prev, uint64_t valid,
                        const char *done)
{
	char want[512];
	snprintf(want, sizeof want,
	         "void seq %llu %s: decided on version %llu, the valid version was %llu; it would have done: "
	         "%s",
	         (unsigned long long)seq, subject, (unsigned long long)prev, (unsigned long long)valid, done);
	cr_expect_not_null(strstr(out, want), "want %s in:\n%s", want, out);
}

Test(verify_log, void_commits_are_reported_with_what_they_would_have_done, .init = start_all,
     .fini = stop_all, .timeout = 60)
{
	char *out = NULL;
	craft_clean_shop();
	/* two racing reserves of p-1 (7 left) decided on one version: the
	 * loser, 6 units, would have oversold; then a writer that took the void
	 * commit for the version */
	uint64_t version = tcl_position(world.log, "stock", "p-1").version;
	uint64_t won = tcl_valid(world.log, "stock", "p-1",
	                         (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-2", 4)}, 1);
	uint64_t lost = tcl_void(world.log, "stock", "p-1", version,
	                         (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-3", 6)}, 1);
	uint64_t built_on_void = tcl_void(world.log, "stock", "p-1", lost,
	                                  (tcl_event[]){tcl_stock_event(STOCK_RELEASED, "o-3", 6)}, 1);
	/* a MarkPaid and a Cancel of one order on one version: only the first counts */
	tcl_valid(world.log, "order", "o-9", (tcl_event[]){tcl_order_event(ORDER_PLACED, "p-1", 1)}, 1);
	tcl_valid(world.log, "order", "o-9", (tcl_event[]){tcl_order_event(ORDER_RESERVED, "p-1", 1)}, 1);
	uint64_t confirmed =
	        tcl_valid(world.log, "order", "o-9",
	                  (tcl_event[]){tcl_order_event(ORDER_CONFIRMED_BY_CUSTOMER, "p-1", 1)}, 1);
	uint64_t paid =
	        tcl_valid(world.log, "order", "o-9", (tcl_event[]){tcl_order_event(ORDER_PAID, "p-1", 1)}, 1);
	uint64_t cancelled = tcl_void(world.log, "order", "o-9", confirmed,
	                              (tcl_event[]){tcl_order_event(ORDER_CANCELLED_EVENT, "p-1", 1)}, 1);

	int code = run_verify_log("", &out);
	cr_assert_eq(code, 0, "void commits alone are no impossible state:\n%s", out);
	expect_void(out, lost, "orion.evt.stock.p-1", version, won,
	            "StockReserved {\"reservation_id\":\"o-3\",\"quantity\":6");
	expect_void(out, built_on_void, "orion.evt.stock.p-1", lost, won, "StockReleased {");
	expect_void(out, cancelled, "orion.evt.order.o-9", confirmed, paid, "OrderCancelled {");
	cr_expect_not_null(strstr(out, "verify-log: 19 commits, 3 void, 0 impossible states\n"), "%s", out);
	cr_expect_null(strstr(out, "impossible seq"), "the void oversell and cancel change nothing: %s", out);
	free(out);

	code = run_verify_log("--strict", &out);
	cr_expect_eq(code, 1, "--strict counts void commits: %s", out);
	free(out);

	code = run_verify_log("--json", &out);
	cr_assert_eq(code, 0, "%s", out);
	json_t *lines = json_lines(out);
	cr_expect_eq(json_array_size(lines), 4, "three void commits and the summary: %s", out);
	json_t *v = finding_at(lines, "void", lost);
	cr_assert_not_null(v, "%s", out);
	cr_expect_str_eq(json_string_value(json_object_get(v, "subject")), "orion.evt.stock.p-1");
	cr_expect_str_eq(json_string_value(json_object_get(v, "aggregate")), "stock");
	cr_expect_str_eq(json_string_value(json_object_get(v, "id")), "p-1");
	cr_expect_eq((uint64_t)json_integer_value(json_object_get(v, "prev")), version);
	cr_expect_eq((uint64_t)json_integer_value(json_object_get(v, "valid_version")), won);
	json_t *event = json_array_get(json_object_get(v, "events"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(event, "type")), "StockReserved");
	json_t *data = json_object_get(event, "data");
	cr_expect_str_eq(json_string_value(json_object_get(data, "reservation_id")), "o-3");
	cr_expect_eq(json_integer_value(json_object_get(data, "quantity")), 6);
	cr_expect_not_null(finding_at(lines, "void", built_on_void));
	cr_expect_not_null(finding_at(lines, "void", cancelled));
	json_t *summary = json_array_get(lines, json_array_size(lines) - 1);
	cr_expect_eq(json_integer_value(json_object_get(summary, "commits")), 19);
	cr_expect_eq(json_integer_value(json_object_get(summary, "void")), 3);
	cr_expect_eq(json_integer_value(json_object_get(summary, "impossible")), 0);
	json_decref(lines);
	free(out);
}

/* The rule of the impossible finding at seq in a --json run, "" if none. */
static const char *rule_at(json_t *lines, uint64_t seq)
{
	json_t *f = finding_at(lines, "impossible", seq);
	return f != NULL ? json_string_value(json_object_get(f, "rule")) : "";
}

/* Expects the text line of an impossible state at seq on subject, its rule
 * and detail starting with what. */
static void expect_impossible(const char *out, uint64_t seq, const char *subject, const char *what)
{
	char want[512];
	snprintf(want, sizeof want, "impossible seq %llu %s %s", (unsigned long long)seq, subject, what);
	cr_expect_not_null(strstr(out, want), "want %s in:\n%s", want, out);
}

Test(verify_log, legacy_commits_that_raced_leave_impossible_states, .init = start_all, .fini = stop_all,
     .timeout = 60)
{
	char *out = NULL, want[256];
	craft_clean_shop();
	/* The pre-fix oversell: two reserves of p-2 (10 units) decided on one
	 * state, written before commits recorded their version: both count. */
	tcl_valid(world.log, "stock", "p-2", (tcl_event[]){tcl_stock_event(STOCK_CREATED, NULL, 10)}, 1);
	tcl_legacy(world.log, "stock", "p-2", (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-a", 6)}, 1);
	uint64_t oversold = tcl_legacy(world.log, "stock", "p-2",
	                               (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-b", 6)}, 1);
	/* p-1's o-1 units were committed: a racing release of them */
	uint64_t release = tcl_legacy(world.log, "stock", "p-1",
	                              (tcl_event[]){tcl_stock_event(STOCK_RELEASED, "o-1", 3)}, 1);
	/* o-1 is paid (confirmed): a racing Cancel */
	uint64_t cancel = tcl_legacy(world.log, "order", "o-1",
	                             (tcl_event[]){tcl_order_event(ORDER_CANCELLED_EVENT, "p-1", 3)}, 1);
	/* o-1's payment succeeded with ch_1: a second attempt's success */
	uint64_t second_charge = tcl_legacy(world.log, "payment", "o-1",
	                                    (tcl_event[]){tcl_payment_event(PAYMENT_SUCCEEDED, "ch_2")}, 1);
	/* two products claim one sku */
	tcl_legacy(world.log, "sku", "TEA-1", (tcl_event[]){tcl_sku_event(SKU_CLAIMED, "p-1")}, 1);
	uint64_t claim =
	        tcl_legacy(world.log, "sku", "TEA-1", (tcl_event[]){tcl_sku_event(SKU_CLAIMED, "p-7")}, 1);
	/* two registrations of one email */
	tcl_legacy(world.log, "user", "u1",
	           (tcl_event[]){tcl_user_event(USER_REGISTERED, "alice-1", USER_ROLE_CUSTOMER)}, 1);
	uint64_t register2 =
	        tcl_legacy(world.log, "user", "u1",
	                   (tcl_event[]){tcl_user_event(USER_REGISTERED, "alice-2", USER_ROLE_CUSTOMER)}, 1);
	/* m-1 was delivered: a second delivery */
	uint64_t delivered = tcl_legacy(world.log, "mail", "m-1",
	                                (tcl_event[]){tcl_mail_event(MAIL_LOG_DELIVERED, "o-1", 3)}, 1);

	int code = run_verify_log("", &out);
	cr_assert_eq(code, 1, "exit %d:\n%s", code, out);
	expect_impossible(out, oversold, "orion.evt.stock.p-2",
	                  "reserved_above_on_hand: reserved 12 > on hand 10: 2 units oversold\n");
	expect_impossible(out, cancel, "orion.evt.order.o-1",
	                  "paid_and_cancelled: OrderCancelled after the order was confirmed");
	expect_impossible(out, second_charge, "orion.evt.payment.o-1", "charged_twice: 2 succeeded charges");
	cr_expect_not_null(strstr(out, "verify-log: 22 commits, 0 void, 7 impossible states\n"), "%s", out);
	free(out);

	code = run_verify_log("--json", &out);
	cr_assert_eq(code, 1, "%s", out);
	json_t *lines = json_lines(out);
	cr_expect_str_eq(rule_at(lines, oversold), "reserved_above_on_hand", "%s", out);
	cr_expect_str_eq(rule_at(lines, release), "no_decision", "%s", out);
	cr_expect_str_eq(rule_at(lines, cancel), "paid_and_cancelled", "%s", out);
	cr_expect_str_eq(rule_at(lines, second_charge), "charged_twice", "%s", out);
	cr_expect_str_eq(rule_at(lines, claim), "sku_claimed_twice", "%s", out);
	cr_expect_str_eq(rule_at(lines, register2), "email_registered_twice", "%s", out);
	cr_expect_str_eq(rule_at(lines, delivered), "delivered_twice", "%s", out);
	json_t *f = finding_at(lines, "impossible", release);
	cr_expect_not_null(strstr(json_string_value(json_object_get(f, "detail")), "reservation o-1"), "%s",
	                   out);
	json_t *summary = json_array_get(lines, json_array_size(lines) - 1);
	cr_expect_eq(json_integer_value(json_object_get(summary, "impossible")), 7);
	json_decref(lines);
	free(out);

	/* up to the commit before the oversell, nothing impossible had happened yet */
	char args[64];
	snprintf(args, sizeof args, "--to %llu", (unsigned long long)(oversold - 1));
	code = run_verify_log(args, &out);
	cr_expect_eq(code, 0, "%s", out);
	snprintf(want, sizeof want, "verify-log: read stream sequences 1 to %llu\n",
	         (unsigned long long)(oversold - 1));
	cr_expect_not_null(strstr(out, want), "%s", out);
	free(out);
}

Test(verify_log, an_oversell_is_reported_once_until_it_is_resolved, .init = start_all, .fini = stop_all,
     .timeout = 60)
{
	char *out = NULL;
	tcl_valid(world.log, "stock", "p-3", (tcl_event[]){tcl_stock_event(STOCK_CREATED, NULL, 2)}, 1);
	tcl_legacy(world.log, "stock", "p-3", (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-a", 2)}, 1);
	tcl_legacy(world.log, "stock", "p-3", (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-b", 2)}, 1);
	tcl_valid(world.log, "stock", "p-3", (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-c", 1)}, 1);
	tcl_valid(world.log, "stock", "p-3", (tcl_event[]){tcl_stock_event(STOCK_RELEASED, "o-a", 2)}, 1);
	tcl_valid(world.log, "stock", "p-3", (tcl_event[]){tcl_stock_event(STOCK_RELEASED, "o-b", 2)}, 1);
	tcl_valid(world.log, "stock", "p-3", (tcl_event[]){tcl_stock_event(STOCK_RESERVED, "o-d", 1)}, 1);
	int code = run_verify_log("", &out);
	cr_assert_eq(code, 1, "%s", out);
	cr_expect_eq(count_of(out, "reserved_above_on_hand"), 1, "%s", out);
	cr_expect_not_null(strstr(out, "verify-log: 7 commits, 0 void, 1 impossible states\n"), "%s", out);
	free(out);
}

Test(verify_log, bad_usage_and_unreachable_nats_exit_2, .init = start_all, .fini = stop_all, .timeout = 60)
{
	char *out = NULL;
	cr_expect_eq(run_verify_log("--bogus", &out), 2);
	free(out);
	cr_expect_eq(run_verify_log("--to", &out), 2);
	free(out);
	cr_expect_eq(run_verify_log("--to 0", &out), 2);
	free(out);
	cr_expect_eq(run_verify_log("--help", &out), 0);
	cr_expect_not_null(strstr(out, "usage: orion verify-log"), "%s", out);
	free(out);
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
	         "ORION_NATS_URL=nats://127.0.0.1:1 ORION_DATA_DIR='%s' '%s' verify-log --quiet > /dev/null "
	         "2>&1",
	         world.data_dir, th_orion_bin());
	int status = system(cmd);
	cr_assert(WIFEXITED(status));
	cr_expect_eq(WEXITSTATUS(status), 2);
}
