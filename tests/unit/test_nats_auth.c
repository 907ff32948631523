/* test_nats_auth.c — the permissions rendered from what a role does, the
 * shop's roles' (cli/roles.h), credentials files and the rendering of the
 * nats-server authorization block (no server). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nats_auth-internal.h"
#include "nats_auth.h"
#include "roles.h"

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

/* The permissions of the shop's users (cli/roles.h), rendered once. */
static na_role users[40];
static size_t user_count;
static na_permissions perms[40], serve_perms[40]; /* a role's user, and its serve user's */

static void render_users(void)
{
	user_count = cli_nats_users(users, sizeof users / sizeof *users);
	for (size_t i = 0; i < user_count; i++) {
		cr_assert_eq(na_permissions_of(&users[i], users, user_count, &perms[i]), ORN_OK);
		cr_assert_eq(na_serve_permissions_of(&users[i], &serve_perms[i]), ORN_OK);
	}
}

static void dispose_users(void)
{
	for (size_t i = 0; i < user_count; i++) {
		na_permissions_dispose(&perms[i]);
		na_permissions_dispose(&serve_perms[i]);
	}
}

static size_t index_of(const char *role)
{
	for (size_t i = 0; i < user_count; i++)
		if (strcmp(users[i].name, role) == 0)
			return i;
	cr_assert_fail("no user %s", role);
	return 0;
}

static const na_permissions *perms_of(const char *role)
{
	return &perms[index_of(role)];
}

/* The user role's commands arrive on and are answered from (ADR 014). */
static const na_permissions *serve_perms_of(const char *role)
{
	cr_assert(na_role_serves(&users[index_of(role)]), "%s serves no command", role);
	return &serve_perms[index_of(role)];
}

static bool may_serve(const char *role, const char *subject)
{
	const na_permissions *p = serve_perms_of(role);
	return any_matches(p->sub_allow, subject) && p->allow_responses;
}

/* What the server would decide for a publish by role. */
static bool may_publish(const char *role, const char *subject)
{
	const na_permissions *p = perms_of(role);
	return any_matches(p->pub_allow, subject) && !any_matches(p->pub_deny, subject);
}

static bool may_subscribe(const char *role, const char *subject)
{
	return any_matches(perms_of(role)->sub_allow, subject);
}

TestSuite(nats_auth_table, .init = render_users, .fini = dispose_users);

Test(nats_auth_table, every_role_has_a_user_with_permissions)
{
	const char *names[40];
	size_t n = cli_role_names(names, 40);
	cr_assert_eq(n, user_count, "a credentials line per NATS user");
	cr_assert_str_eq(names[0], "ops");
	cr_assert_null(names[n]);
	for (size_t i = 0; i < user_count; i++) {
		const char *name = users[i].name;
		cr_assert_str_eq(names[i], name);
		cr_assert(perms[i].pub_allow != NULL && perms[i].pub_allow[0] != NULL, "%s publishes nothing",
		          name);
		/* every role hears replies: command answers and the JetStream API's */
		cr_assert(may_subscribe(name, "_INBOX.abc.1"), "%s", name);
		cr_assert(may_publish(name, "$JS.API.STREAM.INFO.ORION_EVT"), "%s", name);
		cr_assert_neq(strcmp(name, "psp"), 0, "the sandbox talks HTTP only");
	}
}

Test(nats_auth_table, the_gateway_sends_commands_but_never_writes_the_stream)
{
	cr_assert(may_publish("gateway", "orion.cmd.stock.item-1"));
	cr_assert(may_publish("gateway", "orion.cmd.pay.order-1"));
	cr_assert(may_publish("gateway", "orion.cmd.cart.c"));
	cr_assert(may_publish("gateway", "orion.cmd.order.o"));
	cr_assert(may_publish("gateway", "orion.cmd.product.p"));
	cr_assert(may_publish("gateway", "orion.cmd.sku.s"));
	cr_assert(may_publish("gateway", "orion.cmd.user.u"));
	/* only the routes' commands: not the payment aggregate's (the pay
	 * service's), not an aggregate without a route; the delivery logs'
	 * RequestResend has routes (ADR 023) */
	cr_assert_not(may_publish("gateway", "orion.cmd.payment.order-1"));
	cr_assert(may_publish("gateway", "orion.cmd.mail.m"));
	cr_assert_not(may_publish("gateway", "orion.cmd.timers.t"));
	cr_assert_not(may_publish("gateway", "orion.evt.stock.item-1"));
	cr_assert_not(may_publish("gateway", "orion.snap.stock.item-1"));
	cr_assert(list_has(perms_of("gateway")->pub_deny, "orion.evt.>"));
	cr_assert_not(may_subscribe("gateway", "orion.cmd.stock.item-1"));
	cr_assert_not(may_publish("gateway", "$JS.API.STREAM.DELETE.ORION_EVT"));
	cr_assert_not(may_publish("gateway", "$JS.API.CONSUMER.DELETE.ORION_EVT.orion_checkout"));
}

Test(nats_auth_table, each_actor_writes_only_its_own_aggregates)
{
	cr_assert(may_publish("stock", "orion.evt.stock.i"));
	cr_assert(may_publish("stock", "orion.snap.stock.i"));
	cr_assert(may_publish("stock", "$JS.API.DIRECT.GET.ORION_SNAP.orion.snap.stock.i"));
	cr_assert(may_serve("stock", "orion.cmd.stock.i"));
	cr_assert_not(may_publish("stock", "orion.evt.order.i"));
	cr_assert_not(may_publish("stock", "orion.cmd.order.i"));
	cr_assert(may_publish("product", "orion.evt.sku.i"));
	cr_assert(may_serve("product", "orion.cmd.sku.i"));
	cr_assert_not(may_publish("user", "orion.evt.product.i"));
	cr_assert_not(may_serve("stock", "orion.cmd.order.i"));
	cr_assert_not(na_role_serves(&users[index_of("gateway")]));
}

/* A user with response permissions makes nats-server 2.9 walk every reply
 * subject delivered to one of its connections in the last two minutes, on
 * each delivery past 4,096 of them: JetStream delivers to a role's own
 * connection with a reply subject every time. So only the serve user, which
 * commands alone arrive on, answers; it publishes nothing else. (Before, the
 * role's own user held the response permission: this failed.) */
Test(nats_auth_table, only_the_serve_user_answers_requests)
{
	for (size_t i = 0; i < user_count; i++) {
		const char *name = users[i].name;
		cr_assert_not(perms[i].allow_responses, "%s's own user answers requests", name);
		cr_assert_not(any_matches(perms[i].sub_allow, "orion.cmd.x.y") && !users[i].grants->all,
		              "%s's own user hears commands", name);
		if (!na_role_serves(&users[i]) || users[i].grants->all)
			continue;
		cr_assert(serve_perms[i].allow_responses, "%s", name);
		cr_assert(list_has(serve_perms[i].pub_deny, ">"), "%s's serve user publishes", name);
		cr_assert_null(serve_perms[i].pub_allow, "%s", name);
		cr_assert_not(any_matches(serve_perms[i].sub_allow, "_INBOX.x"), "%s", name);
	}
}

Test(nats_auth_table, a_serve_user_is_derived_from_its_roles_credential)
{
	char user[NA_USER_MAX], password[NA_PASSWORD_MAX], again[NA_PASSWORD_MAX];
	cr_assert_eq(na_serve_user("orion-stock", "secret-1", user, password), ORN_OK);
	cr_assert_str_eq(user, "orion-stock-serve");
	cr_assert_gt(strlen(password), 20);
	cr_assert_eq(na_serve_user("orion-stock", "secret-1", user, again), ORN_OK);
	cr_assert_str_eq(password, again, "the same every time: a process and the server agree");
	cr_assert_eq(na_serve_user("orion-stock", "secret-2", user, again), ORN_OK);
	cr_assert_str_neq(password, again, "another role password, another serve password");
	char long_user[NA_USER_MAX];
	memset(long_user, 'u', sizeof long_user - 1);
	long_user[sizeof long_user - 1] = '\0';
	cr_assert_eq(na_serve_user(long_user, "p", user, again), ORN_EINVAL);
}

Test(nats_auth_table, the_side_effect_roles_send_only_their_commands)
{
	cr_assert(may_publish("checkout", "orion.cmd.stock.i"));
	cr_assert(may_publish("checkout", "orion.cmd.cart.c"));
	cr_assert_not(may_publish("checkout", "orion.cmd.payment.o"));
	cr_assert_not(may_publish("checkout", "orion.evt.order.o"));
	cr_assert(may_publish("checkout", "$JS.ACK.ORION_EVT.orion_checkout.1.2.3.4.5"));
	cr_assert_not(may_publish("checkout", "$JS.ACK.ORION_EVT.orion_payment.1.2.3.4.5"));
	cr_assert(may_publish("timers", "orion.cmd.order.o"));
	cr_assert_not(may_publish("timers", "orion.cmd.stock.i"));
	/* payment: appends its aggregate in process (kit_execute), answers Pay,
	 * marks orders; nobody sends commands to the payment aggregate */
	cr_assert(may_publish("payment", "orion.cmd.order.o"));
	cr_assert(may_publish("payment", "orion.evt.payment.o"));
	cr_assert_not(may_publish("payment", "orion.cmd.payment.o"));
	cr_assert(may_serve("payment", "orion.cmd.pay.o"));
	cr_assert_not(may_serve("payment", "orion.cmd.payment.o"));
	/* mail: appends its own events, reads with three durables, sends no command */
	cr_assert(may_publish("mail", "orion.evt.mail.m"));
	cr_assert_not(may_publish("mail", "orion.cmd.stock.i"));
	cr_assert_not(may_publish("mail", "orion.cmd.mail.m"));
	cr_assert_not(may_publish("mail", "orion.evt.stock.i"));
	cr_assert(may_publish("mail", "$JS.API.CONSUMER.DURABLE.CREATE.ORION_EVT.orion_mail_alerts"));
	cr_assert(may_publish("mail", "$JS.API.CONSUMER.MSG.NEXT.ORION_EVT.orion_mail"));
	cr_assert(may_publish("mail", "$JS.API.CONSUMER.DURABLE.CREATE.ORION_EVT.orion_mail_resends"));
	cr_assert(may_serve("mail", "orion.cmd.mail.m"), "the mail role serves RequestResend");
	cr_assert_not(may_serve("mail", "orion.cmd.order.o"));
	cr_assert_not(may_publish("mail", "$JS.API.CONSUMER.DURABLE.CREATE.ORION_EVT.orion_checkout"));
	cr_assert(may_publish("ops", "$JS.API.STREAM.CREATE.ORION_EVT"));
	/* no role deletes a durable, its own included; ops may */
	cr_assert_not(may_publish("mail", "$JS.API.CONSUMER.DELETE.ORION_EVT.orion_mail"));
	cr_assert_not(may_publish("projector", "$JS.API.CONSUMER.DELETE.ORION_EVT.orion_payment"));
	cr_assert(may_publish("projector", "$JS.API.CONSUMER.DELETE.ORION_EVT.ordered-1"));
	cr_assert(may_publish("ops", "$JS.API.CONSUMER.DELETE.ORION_EVT.orion_mail"));
}

Test(nats_auth_grants, are_rendered_from_what_a_role_does)
{
	static const char *const appends[] = {"a", NULL}, *const sends[] = {"b", "c", NULL},
	                         *const durables[] = {"d1", NULL};
	const na_grants g = {.appends = appends, .serves = appends, .sends = sends, .durables = durables};
	const na_grants none = {.never_appends = true, .never_sends = true};
	const na_role roles[] = {{"r", &g}, {"quiet", &none}};
	na_permissions p, q;
	cr_assert_eq(na_permissions_of(&roles[0], roles, 2, &p), ORN_OK);
	cr_assert(list_has(p.pub_allow, "orion.evt.a.>"));
	cr_assert(list_has(p.pub_allow, "orion.snap.a.>"));
	cr_assert(list_has(p.pub_allow, "orion.cmd.c.*"));
	cr_assert(list_has(p.pub_allow, "$JS.API.CONSUMER.MSG.NEXT.ORION_EVT.d1"));
	cr_assert(list_has(p.pub_deny, "$JS.API.CONSUMER.DELETE.ORION_EVT.d1"));
	cr_assert_not(list_has(p.pub_allow, "$JS.API.DIRECT.GET.ORION_EVT"), "reads not granted");
	cr_assert_not(list_has(p.sub_allow, "orion.cmd.a.*"), "its serve user hears its commands");
	cr_assert_not(p.allow_responses);
	na_permissions_dispose(&p);
	cr_assert(na_role_serves(&roles[0]));
	cr_assert_not(na_role_serves(&roles[1]));
	cr_assert_eq(na_serve_permissions_of(&roles[0], &p), ORN_OK);
	cr_assert(list_has(p.sub_allow, "orion.cmd.a.*"));
	cr_assert(p.allow_responses);
	cr_assert(list_has(p.pub_deny, ">"));
	cr_assert_eq(na_permissions_of(&roles[1], roles, 2, &q), ORN_OK);
	cr_assert(list_has(q.pub_deny, "orion.evt.>"));
	cr_assert(list_has(q.pub_deny, "orion.cmd.>"));
	cr_assert(list_has(q.pub_deny, "$JS.API.CONSUMER.DELETE.ORION_EVT.d1"));
	cr_assert_not(q.allow_responses);
	na_permissions_dispose(&p);
	na_permissions_dispose(&q);
	cr_assert_null(p.pub_allow);
}

static const char *names[40];

static void name_roles(void)
{
	cli_role_names(names, 40);
	render_users();
}

TestSuite(nats_auth_credentials, .init = name_roles, .fini = dispose_users);
TestSuite(nats_auth_render, .init = name_roles, .fini = dispose_users);

static const char good[] = "# comment\n"
                           "ops orion-ops pw-ops\n"
                           "\n"
                           "  gateway\torion-gateway  pw-gw  \r\n"
                           "mail orion-mail pw-mail";

Test(nats_auth_credentials, parses_lines_comments_and_blank_lines)
{
	na_credentials c;
	cr_assert_eq(na_credentials_parse(good, strlen(good), names, &c), ORN_OK);
	cr_assert_eq(c.count, 3);
	cr_assert_not_null(na_credentials_find(&c, "ops"));
	cr_assert_str_eq(na_credentials_find(&c, "gateway")->user, "orion-gateway");
	cr_assert_str_eq(na_credentials_find(&c, "gateway")->password, "pw-gw");
	cr_assert_str_eq(na_credentials_find(&c, "mail")->password, "pw-mail");
	cr_assert_null(na_credentials_find(&c, "stock"));
	cr_assert_null(na_credentials_find(&c, NULL));
	na_credentials_wipe(&c);
	cr_assert_null(na_credentials_find(&c, "ops"));
	cr_assert_eq(c.items[0].password[0], '\0');
	/* without a list of roles, any name */
	const char other[] = "anyone u p\n";
	cr_assert_eq(na_credentials_parse(other, strlen(other), NULL, &c), ORN_OK);
	cr_assert_not_null(na_credentials_find(&c, "anyone"));
}

Test(nats_auth_credentials, refuses_malformed_lines)
{
	na_credentials c;
	const char *bad[] = {"ops orion-ops\n", "ops a b c\n", "psp orion-psp pw\n", "ops a pw\nops b pw\n"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		cr_assert_eq(na_credentials_parse(bad[i], strlen(bad[i]), names, &c), ORN_EDECODE, "%s",
		             bad[i]);
		cr_assert_eq(c.count, 0);
	}
	const char control[] = "ops orion-ops pw\x01x\n";
	cr_assert_eq(na_credentials_parse(control, strlen(control), names, &c), ORN_EINVAL);
	char long_line[300];
	memset(long_line, 'a', sizeof long_line);
	memcpy(long_line, "ops u ", 6);
	long_line[sizeof long_line - 1] = '\0';
	cr_assert_eq(na_credentials_parse(long_line, strlen(long_line), names, &c), ORN_EINVAL);
}

Test(nats_auth_render, every_present_role_with_quoted_strings)
{
	na_credentials c;
	cr_assert_eq(na_credentials_parse(good, strlen(good), names, &c), ORN_OK);
	/* quotes and backslashes never end a string early */
	strcpy((char *)na_credentials_find(&c, "mail")->password, "p\"w\\x");
	char *text = na_render_authorization(&c, users, user_count);
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "authorization {"));
	cr_assert_not_null(strstr(text, "{user: \"orion-ops\", password: \"pw-ops\""));
	cr_assert_not_null(strstr(text, "password: \"p\\\"w\\\\x\""));
	cr_assert_not_null(strstr(text, "deny: [\"orion.evt.>\""));
	cr_assert_null(strstr(text, "orion-stock"));
	cr_assert_not_null(strstr(text, "\"$JS.ACK.ORION_EVT.orion_mail_alerts.>\""));
	free(text);
	na_credentials_wipe(&c);
	cr_assert_null(na_render_authorization(&c, users, user_count), "no user: no block");
}

Test(nats_auth_render, a_generated_file_has_every_role_and_stays_private)
{
	char dir[] = "/tmp/orion-natsauth-unit-XXXXXX", path[128], conf[128];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/credentials", dir);
	snprintf(conf, sizeof conf, "%s/server.conf", dir);
	na_credentials first, again;
	cr_assert_eq(na_credentials_load(path, names, &first), ORN_ENOTFOUND);
	cr_assert_eq(na_credentials_ensure(path, names, &first), ORN_OK);
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600);
	cr_assert_eq(first.count, user_count);
	for (size_t i = 0; i < user_count; i++) {
		cr_assert_not_null(na_credentials_find(&first, users[i].name));
		cr_assert_geq(strlen(na_credentials_find(&first, users[i].name)->password), 32);
	}
	cr_assert_str_neq(na_credentials_find(&first, "ops")->password,
	                  na_credentials_find(&first, "gateway")->password);
	/* a second start reuses the file */
	cr_assert_eq(na_credentials_ensure(path, names, &again), ORN_OK);
	cr_assert_str_eq(na_credentials_find(&again, "mail")->password,
	                 na_credentials_find(&first, "mail")->password);
	cr_assert_eq(na_write_server_config(&first, users, user_count, conf), ORN_OK);
	cr_assert_eq(stat(conf, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600);
	FILE *f = fopen(conf, "r");
	char text[65536];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	for (size_t i = 0; i < user_count; i++) {
		char needle[96];
		snprintf(needle, sizeof needle, "{user: \"orion-%s\"", users[i].name);
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
