/* test_nats_auth.c — the roles' permission table, credentials files and the
 * rendering of the nats-server authorization block (no server). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nats_auth-internal.h"
#include "nats_auth.h"

static bool list_has(const char *const *list, const char *subject)
{
	for (size_t i = 0; list != NULL && list[i] != NULL; i++)
		if (strcmp(list[i], subject) == 0)
			return true;
	return false;
}

/* A NATS subject pattern p matches subject s (tokens, '*' and '>'). */
static bool matches(const char *p, const char *s)
{
	for (;;) {
		size_t pl = strcspn(p, "."), sl = strcspn(s, ".");
		if (pl == 1 && p[0] == '>')
			return sl > 0;
		if (!(pl == 1 && p[0] == '*') && (pl != sl || strncmp(p, s, pl) != 0))
			return false;
		if (p[pl] == '\0' || s[sl] == '\0')
			return p[pl] == '\0' && s[sl] == '\0';
		p += pl + 1;
		s += sl + 1;
	}
}

static bool any_matches(const char *const *list, const char *subject)
{
	for (size_t i = 0; list != NULL && list[i] != NULL; i++)
		if (matches(list[i], subject))
			return true;
	return false;
}

/* What the server would decide for a publish by role. */
static bool may_publish(na_role role, const char *subject)
{
	const na_permissions *p = na_role_permissions(role);
	return any_matches(p->pub_allow, subject) && !any_matches(p->pub_deny, subject);
}

static bool may_subscribe(na_role role, const char *subject)
{
	const na_permissions *p = na_role_permissions(role);
	return any_matches(p->sub_allow, subject) && !any_matches(p->sub_deny, subject);
}

Test(nats_auth_table, every_role_has_a_name_that_parses_back_and_permissions)
{
	for (unsigned i = 0; i < NA_ROLE_COUNT; i++) {
		na_role r = NA_ROLE_COUNT;
		cr_assert_not_null(na_role_name((na_role)i));
		cr_assert(na_role_parse(na_role_name((na_role)i), &r));
		cr_assert_eq(r, (na_role)i);
		const na_permissions *p = na_role_permissions((na_role)i);
		cr_assert_not_null(p);
		cr_assert(p->pub_allow != NULL && p->pub_allow[0] != NULL, "%s publishes nothing",
		          na_role_name((na_role)i));
		/* every role hears replies: command answers and the JetStream API's */
		cr_assert(may_subscribe((na_role)i, "_INBOX.abc.1"), "%s", na_role_name((na_role)i));
		cr_assert(may_publish((na_role)i, "$JS.API.STREAM.INFO.ORION_EVT"), "%s",
		          na_role_name((na_role)i));
	}
	na_role r;
	cr_assert_not(na_role_parse("psp", &r));
	cr_assert_not(na_role_parse(NULL, &r));
	cr_assert_null(na_role_name(NA_ROLE_COUNT));
	cr_assert_null(na_role_permissions(NA_ROLE_COUNT));
}

Test(nats_auth_table, the_gateway_sends_commands_but_never_writes_the_stream)
{
	cr_assert(may_publish(NA_GATEWAY, "orion.cmd.stock.item-1"));
	cr_assert(may_publish(NA_GATEWAY, "orion.cmd.pay.order-1"));
	cr_assert(may_publish(NA_GATEWAY, "orion.cmd.cart.c"));
	cr_assert(may_publish(NA_GATEWAY, "orion.cmd.order.o"));
	cr_assert(may_publish(NA_GATEWAY, "orion.cmd.product.p"));
	cr_assert(may_publish(NA_GATEWAY, "orion.cmd.sku.s"));
	cr_assert(may_publish(NA_GATEWAY, "orion.cmd.user.u"));
	/* only the routes' commands: not the payment aggregate's (the pay
	 * service's), not an aggregate without a route; the delivery logs'
	 * RequestResend has routes (ADR 023) */
	cr_assert_not(may_publish(NA_GATEWAY, "orion.cmd.payment.order-1"));
	cr_assert(may_publish(NA_GATEWAY, "orion.cmd.mail.m"));
	cr_assert_not(may_publish(NA_GATEWAY, "orion.cmd.timers.t"));
	cr_assert_not(may_publish(NA_GATEWAY, "orion.evt.stock.item-1"));
	cr_assert_not(may_publish(NA_GATEWAY, "orion.snap.stock.item-1"));
	cr_assert(list_has(na_role_permissions(NA_GATEWAY)->pub_deny, "orion.evt.>"));
	cr_assert_not(may_subscribe(NA_GATEWAY, "orion.cmd.stock.item-1"));
	cr_assert_not(may_publish(NA_GATEWAY, "$JS.API.STREAM.DELETE.ORION_EVT"));
	cr_assert_not(may_publish(NA_GATEWAY, "$JS.API.CONSUMER.DELETE.ORION_EVT.orion_checkout"));
}

Test(nats_auth_table, each_actor_writes_only_its_own_aggregates)
{
	cr_assert(may_publish(NA_STOCK, "orion.evt.stock.i"));
	cr_assert(may_publish(NA_STOCK, "orion.snap.stock.i"));
	cr_assert(may_subscribe(NA_STOCK, "orion.cmd.stock.i"));
	cr_assert_not(may_publish(NA_STOCK, "orion.evt.order.i"));
	cr_assert_not(may_publish(NA_STOCK, "orion.cmd.order.i"));
	cr_assert(may_publish(NA_PRODUCT, "orion.evt.sku.i"));
	cr_assert(may_subscribe(NA_PRODUCT, "orion.cmd.sku.i"));
	cr_assert_not(may_publish(NA_USER, "orion.evt.product.i"));
	cr_assert(na_role_permissions(NA_STOCK)->allow_responses);
	cr_assert_not(na_role_permissions(NA_GATEWAY)->allow_responses);
}

Test(nats_auth_table, the_side_effect_roles_send_only_their_commands)
{
	cr_assert(may_publish(NA_CHECKOUT, "orion.cmd.stock.i"));
	cr_assert(may_publish(NA_CHECKOUT, "orion.cmd.cart.c"));
	cr_assert_not(may_publish(NA_CHECKOUT, "orion.cmd.payment.o"));
	cr_assert_not(may_publish(NA_CHECKOUT, "orion.evt.order.o"));
	cr_assert(may_publish(NA_CHECKOUT, "$JS.ACK.ORION_EVT.orion_checkout.1.2.3.4.5"));
	cr_assert_not(may_publish(NA_CHECKOUT, "$JS.ACK.ORION_EVT.orion_payment.1.2.3.4.5"));
	cr_assert(may_publish(NA_TIMERS, "orion.cmd.order.o"));
	cr_assert_not(may_publish(NA_TIMERS, "orion.cmd.stock.i"));
	cr_assert(may_publish(NA_PAYMENT, "orion.cmd.order.o"));
	cr_assert(may_subscribe(NA_PAYMENT, "orion.cmd.pay.o"));
	/* mail: appends its own events, reads with two durables, sends no command */
	cr_assert(may_publish(NA_MAIL, "orion.evt.mail.m"));
	cr_assert_not(may_publish(NA_MAIL, "orion.cmd.stock.i"));
	cr_assert_not(may_publish(NA_MAIL, "orion.evt.stock.i"));
	cr_assert(may_publish(NA_MAIL, "$JS.API.CONSUMER.DURABLE.CREATE.ORION_EVT.orion_mail_alerts"));
	cr_assert(may_publish(NA_MAIL, "$JS.API.CONSUMER.MSG.NEXT.ORION_EVT.orion_mail"));
	cr_assert(may_publish(NA_MAIL, "$JS.API.CONSUMER.DURABLE.CREATE.ORION_EVT.orion_mail_resends"));
	cr_assert(may_subscribe(NA_MAIL, "orion.cmd.mail.m"), "the mail role serves RequestResend");
	cr_assert_not(may_subscribe(NA_MAIL, "orion.cmd.order.o"));
	cr_assert_not(may_publish(NA_MAIL, "$JS.API.CONSUMER.DURABLE.CREATE.ORION_EVT.orion_checkout"));
	cr_assert(may_publish(NA_OPS, "$JS.API.STREAM.CREATE.ORION_EVT"));
}

static const char good[] = "# comment\n"
                           "ops orion-ops pw-ops\n"
                           "\n"
                           "  gateway\torion-gateway  pw-gw  \r\n"
                           "mail orion-mail pw-mail";

Test(nats_auth_credentials, parses_lines_comments_and_blank_lines)
{
	na_credentials c;
	cr_assert_eq(na_credentials_parse(good, strlen(good), &c), ORN_OK);
	cr_assert(c.role[NA_OPS].present);
	cr_assert_str_eq(c.role[NA_GATEWAY].user, "orion-gateway");
	cr_assert_str_eq(c.role[NA_GATEWAY].password, "pw-gw");
	cr_assert_str_eq(c.role[NA_MAIL].password, "pw-mail");
	cr_assert_not(c.role[NA_STOCK].present);
	na_credentials_wipe(&c);
	cr_assert_not(c.role[NA_OPS].present);
	cr_assert_eq(c.role[NA_OPS].password[0], '\0');
}

Test(nats_auth_credentials, refuses_malformed_lines)
{
	na_credentials c;
	const char *bad[] = {"ops orion-ops\n", "ops a b c\n", "psp orion-psp pw\n", "ops a pw\nops b pw\n"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		cr_assert_eq(na_credentials_parse(bad[i], strlen(bad[i]), &c), ORN_EDECODE, "%s", bad[i]);
		cr_assert_not(c.role[NA_OPS].present);
	}
	const char control[] = "ops orion-ops pw\x01x\n";
	cr_assert_eq(na_credentials_parse(control, strlen(control), &c), ORN_EINVAL);
	char long_line[300];
	memset(long_line, 'a', sizeof long_line);
	memcpy(long_line, "ops u ", 6);
	long_line[sizeof long_line - 1] = '\0';
	cr_assert_eq(na_credentials_parse(long_line, strlen(long_line), &c), ORN_EINVAL);
}

Test(nats_auth_render, every_present_role_with_quoted_strings)
{
	na_credentials c;
	cr_assert_eq(na_credentials_parse(good, strlen(good), &c), ORN_OK);
	/* quotes and backslashes never end a string early */
	strcpy(c.role[NA_MAIL].password, "p\"w\\x");
	char *text = na_render_authorization(&c);
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "authorization {"));
	cr_assert_not_null(strstr(text, "{user: \"orion-ops\", password: \"pw-ops\""));
	cr_assert_not_null(strstr(text, "password: \"p\\\"w\\\\x\""));
	cr_assert_not_null(strstr(text, "deny: [\"orion.evt.>\""));
	cr_assert_null(strstr(text, "orion-stock"));
	cr_assert_not_null(strstr(text, "\"$JS.ACK.ORION_EVT.orion_mail_alerts.>\""));
	free(text);
	na_credentials_wipe(&c);
	cr_assert_null(na_render_authorization(&c), "no user: no block");
}

Test(nats_auth_render, a_generated_file_has_every_role_and_stays_private)
{
	char dir[] = "/tmp/orion-natsauth-unit-XXXXXX", path[128], conf[128];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/credentials", dir);
	snprintf(conf, sizeof conf, "%s/server.conf", dir);
	na_credentials first, again;
	cr_assert_eq(na_credentials_load(path, &first), ORN_ENOTFOUND);
	cr_assert_eq(na_credentials_ensure(path, &first), ORN_OK);
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600);
	for (unsigned i = 0; i < NA_ROLE_COUNT; i++) {
		cr_assert(first.role[i].present);
		cr_assert_geq(strlen(first.role[i].password), 32);
	}
	cr_assert_str_neq(first.role[NA_OPS].password, first.role[NA_GATEWAY].password);
	/* a second start reuses the file */
	cr_assert_eq(na_credentials_ensure(path, &again), ORN_OK);
	cr_assert_str_eq(again.role[NA_MAIL].password, first.role[NA_MAIL].password);
	cr_assert_eq(na_write_server_config(&first, conf), ORN_OK);
	cr_assert_eq(stat(conf, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600);
	FILE *f = fopen(conf, "r");
	char text[65536];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	for (unsigned i = 0; i < NA_ROLE_COUNT; i++) {
		char needle[96];
		snprintf(needle, sizeof needle, "{user: \"orion-%s\"", na_role_name((na_role)i));
		cr_assert_not_null(strstr(text, needle), "%s missing", needle);
	}
	unlink(conf);
	unlink(path);
	rmdir(dir);
	na_credentials_wipe(&first);
	na_credentials_wipe(&again);
}

Test(nats_auth_conn, applies_user_and_refuses_a_missing_tls_file)
{
	natsOptions *opts = NULL;
	cr_assert_eq(natsOptions_Create(&opts), NATS_OK);
	cr_assert_eq(na_conn_apply(NULL, opts), ORN_OK);
	na_conn c = {"u", "p", NULL, NULL, NULL};
	cr_assert_eq(na_conn_apply(&c, opts), ORN_OK);
	na_conn tls = {NULL, NULL, "/nonexistent/ca.pem", NULL, NULL};
	cr_assert_eq(na_conn_apply(&tls, opts), ORN_EINVAL);
	na_conn half = {NULL, NULL, NULL, "/nonexistent/cert.pem", NULL};
	cr_assert_eq(na_conn_apply(&half, opts), ORN_EINVAL);
	natsOptions_Destroy(opts);
}
