/* test_config_log.c — settings from the environment (engine/config.c, the
 * process's in cli/settings.c and the roles' in their descriptors),
 * structured logs (engine/log.c), the status descriptions (engine/orn.c) and
 * mkdir -p (engine/fsdir.c). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "roles.h"
#include "settings.h"
#include "fsdir.h"
#include "log.h"
#include "orn.h"

/* Every variable of the process and of the shop's roles. */
static void clear_environment(void)
{
	size_t count = 0;
	const role_descriptor *const *roles = cli_roles(&count);
	for (const orn_setting *v = cli_config_settings(); v->name != NULL; v++)
		unsetenv(v->name);
	for (size_t r = 0; r < count; r++)
		for (const orn_setting *v = roles[r]->settings; v != NULL && v->name != NULL; v++)
			unsetenv(v->name);
}

TestSuite(config, .init = clear_environment);

/* A role's settings loaded into a buffer of its size (the caller frees). */
static void *role_settings(const char *name, orn_rc *rc, const char **bad)
{
	size_t count = 0;
	const role_descriptor *const *roles = cli_roles(&count);
	const role_descriptor *d = role_find(roles, count, name);
	cr_assert_not_null(d, "no role %s", name);
	void *buf = calloc(1, d->settings_size);
	*rc = orn_settings_load(d->settings, buf, bad);
	return buf;
}

/* The row of var in role name's table, and the role's settings loaded
 * (*buf, the caller frees). */
static const orn_setting *loaded(const char *name, const char *var, unsigned char **buf)
{
	size_t count = 0;
	orn_rc rc;
	const role_descriptor *const *roles = cli_roles(&count);
	const orn_setting *s = orn_settings_find(role_find(roles, count, name)->settings, var);
	cr_assert_not_null(s, "%s has no %s", name, var);
	*buf = role_settings(name, &rc, NULL);
	cr_assert_eq(rc, ORN_OK);
	return s;
}

/* The integer or text a variable of role name holds once loaded. */
static long long role_int(const char *name, const char *var)
{
	unsigned char *buf = NULL;
	const orn_setting *s = loaded(name, var, &buf);
	long long v = s->size == 8   ? *(int64_t *)(buf + s->offset)
	              : s->size == 4 ? *(int32_t *)(buf + s->offset)
	              : s->size == 2 ? *(int16_t *)(buf + s->offset)
	                             : *(int8_t *)(buf + s->offset);
	free(buf);
	return v;
}

static void assert_role_text(const char *name, const char *var, const char *want)
{
	unsigned char *buf = NULL;
	const orn_setting *s = loaded(name, var, &buf);
	cr_assert_str_eq((const char *)buf + s->offset, want, "%s of %s", var, name);
	free(buf);
}

Test(config, defaults_when_nothing_is_set)
{
	cli_config c;
	cr_assert_eq(cli_config_load(&c, NULL), ORN_OK);
	cr_assert_str_eq(c.nats_url, "");
	cr_assert_str_eq(c.data_dir, "./var");
	cr_assert_str_eq(c.http_addr, "127.0.0.1:8080");
	cr_assert_str_eq(c.log_level, "info");
	cr_assert_eq(c.stream_replicas, 1);
	cr_assert_eq(c.command_timeout_ms, 5000);
	cr_assert_str_eq(c.public_url, "http://127.0.0.1:8080");
	cr_assert_eq(c.reservation_ttl_s, 900);
	cr_assert_eq(c.low_stock_threshold, 5);
	cr_assert_eq(c.auth_address_burst, 20);
	cr_assert_eq(c.auth_address_per_minute, 20);
	cr_assert_eq(c.payment_timeout_ms, 25000);
	cr_assert_eq(c.password_memory_kib, 65536);
	/* the roles' own */
	cr_assert_eq(role_int("stock", "ORION_SHARDS"), 4);
	cr_assert_eq(role_int("product", "ORION_CACHE_CAPACITY"), 100000);
	cr_assert_eq(role_int("order", "ORION_SNAPSHOT_EVERY"), 100);
	cr_assert_eq(role_int("mail", "ORION_SHARDS"), 4, "the delivery logs' runtime");
	assert_role_text("mail", "ORION_SMTP_URL", "");
	assert_role_text("mail", "ORION_MAIL_FROM", "orders@orion.localhost");
	cr_assert_eq(role_int("mail", "ORION_MAIL_MAX_ATTEMPTS"), 20);
	assert_role_text("payment", "ORION_PSP_URL", "");
	assert_role_text("payment", "ORION_PSP_KEY", "sk_test_orion");
	assert_role_text("psp", "ORION_PSP_KEY", "sk_test_orion");
	assert_role_text("psp", "ORION_PSP_PUBLISHABLE_KEY", "pk_test_orion");
	assert_role_text("psp", "ORION_PSP_WEBHOOK_SECRET", "whsec_test_orion");
	assert_role_text("psp", "ORION_PSP_WEBHOOK_URL", "");
	assert_role_text("psp", "ORION_PSP_PUBLIC_URL", "");
	cr_assert_eq(role_int("payment", "ORION_PAYMENT_TIMEOUT_MS"), 25000);
	for (const char *const *r = (const char *const[]){"checkout", "mail", "payment", NULL}; *r != NULL;
	     r++)
		cr_assert_eq(role_int(*r, "ORION_SWEEP_AFTER_MS"), 40000, "%s", *r);
	for (const char *const *r = (const char *const[]){"checkout", "timers", "payment", NULL}; *r != NULL;
	     r++)
		cr_assert_eq(role_int(*r, "ORION_COMMAND_TIMEOUT_MS"), 5000, "%s", *r);
}

Test(config, mail_links_and_reservations)
{
	setenv("ORION_HTTP_ADDR", "0.0.0.0:9000", 1);
	setenv("ORION_SMTP_URL", "smtp://127.0.0.1:2525", 1);
	setenv("ORION_MAIL_FROM", "shop@example.com", 1);
	setenv("ORION_RESERVATION_TTL", "5", 1);
	setenv("ORION_LOW_STOCK_THRESHOLD", "0", 1);
	cli_config c;
	cr_assert_eq(cli_config_load(&c, NULL), ORN_OK);
	cr_assert_eq(c.low_stock_threshold, 0);
	assert_role_text("mail", "ORION_SMTP_URL", "smtp://127.0.0.1:2525");
	assert_role_text("mail", "ORION_MAIL_FROM", "shop@example.com");
	cr_assert_str_eq(c.public_url, "http://0.0.0.0:9000", "defaults to the listening address");
	cr_assert_eq(c.reservation_ttl_s, 5);
	setenv("ORION_MAIL_MAX_ATTEMPTS", "3", 1);
	cr_assert_eq(role_int("mail", "ORION_MAIL_MAX_ATTEMPTS"), 3);
	setenv("ORION_AUTH_ADDRESS_BURST", "500", 1);
	setenv("ORION_AUTH_ADDRESS_PER_MINUTE", "6000", 1);
	cr_assert_eq(cli_config_load(&c, NULL), ORN_OK);
	cr_assert_eq(c.auth_address_burst, 500);
	cr_assert_eq(c.auth_address_per_minute, 6000);
	setenv("ORION_PUBLIC_URL", "https://shop.example.com//", 1);
	cr_assert_eq(cli_config_load(&c, NULL), ORN_OK);
	cr_assert_str_eq(c.public_url, "https://shop.example.com", "trailing slashes dropped");
	setenv("ORION_PSP_URL", "http://127.0.0.1:4010/", 1);
	setenv("ORION_PSP_KEY", "sk_live_x", 1);
	/* the payment role drops the trailing slash when it starts */
	assert_role_text("payment", "ORION_PSP_URL", "http://127.0.0.1:4010/");
	assert_role_text("payment", "ORION_PSP_KEY", "sk_live_x");
}

Test(config, values_from_the_environment)
{
	setenv("ORION_NATS_URL", "nats://10.0.0.1:4222", 1);
	setenv("ORION_DATA_DIR", "/srv/orion", 1);
	setenv("ORION_LOG_LEVEL", "debug", 1);
	setenv("ORION_SHARDS", "8", 1);
	setenv("ORION_SNAPSHOT_EVERY", "0", 1);
	setenv("ORION_STREAM_REPLICAS", "3", 1);
	setenv("ORION_SWEEP_AFTER_MS", "0", 1);
	setenv("ORION_CONFIRM", "read", 1);
	cli_config c;
	cr_assert_eq(cli_config_load(&c, NULL), ORN_OK);
	cr_assert_str_eq(c.nats_url, "nats://10.0.0.1:4222");
	cr_assert_str_eq(c.data_dir, "/srv/orion");
	cr_assert_str_eq(c.log_level, "debug");
	cr_assert_eq(role_int("stock", "ORION_SHARDS"), 8);
	cr_assert_eq(role_int("cart", "ORION_SNAPSHOT_EVERY"), 0);
	cr_assert_eq(role_int("checkout", "ORION_SWEEP_AFTER_MS"), 0);
	cr_assert_eq(role_int("order", "ORION_CONFIRM"), 1, "read");
	cr_assert_eq(c.stream_replicas, 3);
}

Test(config, an_empty_variable_means_the_default)
{
	setenv("ORION_DATA_DIR", "", 1);
	setenv("ORION_SHARDS", "", 1);
	cli_config c;
	cr_assert_eq(cli_config_load(&c, NULL), ORN_OK);
	cr_assert_str_eq(c.data_dir, "./var");
	cr_assert_eq(role_int("user", "ORION_SHARDS"), 4);
	cr_assert_eq(role_int("stock", "ORION_CONFIRM"), 0, "by the log's echo unless told");
}

Test(config, bad_values_are_errors_naming_the_variable)
{
	const struct {
		const char *role, *name, *value; /* role NULL: the process's */
	} bad[] = {
	        {"stock", "ORION_SHARDS", "abc"},
	        {"stock", "ORION_SHARDS", "0"},
	        {"stock", "ORION_SHARDS", "4x"},
	        {"stock", "ORION_SHARDS", "99999999999999999999"},
	        {"stock", "ORION_CONFIRM", "scan"},
	        {"order", "ORION_CACHE_CAPACITY", "-1"},
	        {"mail", "ORION_SNAPSHOT_EVERY", "1e3"},
	        {NULL, "ORION_STREAM_REPLICAS", "9"},
	        {NULL, "ORION_COMMAND_TIMEOUT_MS", "1"},
	        {"checkout", "ORION_COMMAND_TIMEOUT_MS", "1"},
	        {NULL, "ORION_LOG_LEVEL", "verbose"},
	        {NULL, "ORION_RESERVATION_TTL", "0"},
	        {NULL, "ORION_RESERVATION_TTL", "604801"},
	        {"mail", "ORION_MAIL_MAX_ATTEMPTS", "0"},
	        {"payment", "ORION_SWEEP_AFTER_MS", "-1"},
	        {NULL, "ORION_LOW_STOCK_THRESHOLD", "-1"},
	        {NULL, "ORION_LOW_STOCK_THRESHOLD", "1000000001"},
	        {NULL, "ORION_AUTH_ADDRESS_BURST", "0"},
	        {NULL, "ORION_PAYMENT_TIMEOUT_MS", "999"},
	        {"payment", "ORION_PAYMENT_TIMEOUT_MS", "25001"},
	        {NULL, "ORION_PASSWORD_MEMORY_KIB", "4096"},
	};
	char long_value[ORN_CONFIG_STR_MAX + 8];
	memset(long_value, 'x', sizeof long_value - 1);
	long_value[sizeof long_value - 1] = '\0';
	for (size_t i = 0; i < ORN_ARRAY_LEN(bad); i++) {
		clear_environment();
		setenv(bad[i].name, bad[i].value, 1);
		cli_config c;
		const char *which = NULL;
		orn_rc rc = ORN_OK;
		if (bad[i].role == NULL)
			rc = cli_config_load(&c, &which);
		else
			free(role_settings(bad[i].role, &rc, &which));
		cr_assert_eq(rc, ORN_EINVAL, "%s=%s accepted", bad[i].name, bad[i].value);
		cr_assert_str_eq(which, bad[i].name);
	}
	clear_environment();
	setenv("ORION_DATA_DIR", long_value, 1);
	cli_config c;
	const char *which = NULL;
	cr_assert_eq(cli_config_load(&c, &which), ORN_EINVAL);
	cr_assert_str_eq(which, "ORION_DATA_DIR");
	clear_environment();
	setenv("ORION_MAIL_FROM", long_value, 1);
	orn_rc rc = ORN_OK;
	free(role_settings("mail", &rc, &which));
	cr_assert_eq(rc, ORN_EINVAL);
	cr_assert_str_eq(which, "ORION_MAIL_FROM");
}

Test(config, help_lists_every_variable_once)
{
	char *text = NULL;
	size_t len = 0, count = 0, role_count = 0;
	FILE *out = open_memstream(&text, &len);
	cli_settings_help(out);
	fclose(out);
	const role_descriptor *const *roles = cli_roles(&role_count);
	const orn_setting *tables[32] = {cli_config_settings()};
	for (size_t r = 0; r < role_count; r++)
		tables[r + 1] = roles[r]->settings;
	for (size_t t = 0; t <= role_count; t++)
		for (const orn_setting *v = tables[t]; v != NULL && v->name != NULL; v++, count++) {
			char needle[64];
			snprintf(needle, sizeof needle, "  %s ", v->name);
			const char *at = strstr(text, needle);
			cr_assert_not_null(at, "%s missing from --help", v->name);
			cr_assert_null(strstr(at + 1, needle), "%s listed twice", v->name);
		}
	cr_assert_geq(count, 30);
	cr_assert_not_null(strstr(text, "ORION_SMTP_URL             default unset"));
	cr_assert_not_null(strstr(text, "ORION_SHARDS               default 4 "));
	free(text);
}

/* ---- logs ------------------------------------------------------------------- */

/* Runs fn with stderr redirected to a temporary file; returns what it wrote. */
static char *capture_stderr(void (*fn)(void))
{
	char path[] = "/tmp/orion-log-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	off_t size = lseek(fd, 0, SEEK_END);
	char *text = calloc(1, (size_t)size + 1);
	cr_assert_eq(pread(fd, text, (size_t)size, 0), size);
	close(fd);
	unlink(path);
	return text;
}

static void write_hostile_line(void)
{
	log_set_level(LOG_INFO);
	log_set_correlation("order-42");
	log_info("quote \" backslash \\ newline \n tab \t bell \a", "key \"1\"", "value\x01\x7f", "empty",
	         NULL);
	log_set_correlation(NULL);
	log_debug("not written at info level");
}

Test(log, lines_are_valid_json_with_escaped_values_and_the_correlation_id)
{
	char *text = capture_stderr(write_hostile_line);
	char *newline = strchr(text, '\n');
	cr_assert_not_null(newline, "one line, ended");
	cr_assert_eq(newline[1], '\0', "the debug line was filtered out");
	json_error_t err;
	json_t *line = json_loads(text, 0, &err);
	cr_assert_not_null(line, "not JSON: %s in %s", err.text, text);
	cr_assert_str_eq(json_string_value(json_object_get(line, "level")), "info");
	cr_assert_str_eq(json_string_value(json_object_get(line, "msg")),
	                 "quote \" backslash \\ newline \n tab \t bell \a");
	cr_assert_str_eq(json_string_value(json_object_get(line, "correlation_id")), "order-42");
	cr_assert_str_eq(json_string_value(json_object_get(line, "key \"1\"")), "value\x01\x7f");
	cr_assert_str_eq(json_string_value(json_object_get(line, "empty")), "", "a NULL value logs as empty");
	const char *ts = json_string_value(json_object_get(line, "ts"));
	cr_assert_not_null(ts);
	cr_assert_eq(strlen(ts), strlen("2026-11-21T22:00:00.000Z"));
	cr_assert_eq(ts[strlen(ts) - 1], 'Z');
	json_decref(line);
	free(text);
}

static void write_huge_line(void)
{
	static char big[10000];
	memset(big, 'a', sizeof big - 1);
	log_set_level(LOG_DEBUG);
	log_warn("huge", "field", big, "second", big, "third", "x");
	log_error("after");
}

Test(log, an_oversized_line_is_cut_but_stays_one_valid_json_object)
{
	char *text = capture_stderr(write_huge_line);
	char *second = strchr(text, '\n');
	cr_assert_not_null(second);
	*second = '\0';
	json_t *line = json_loads(text, 0, NULL);
	cr_assert_not_null(line, "the cut line is still JSON");
	cr_assert_str_eq(json_string_value(json_object_get(line, "level")), "warn");
	cr_assert_lt(strlen(json_string_value(json_object_get(line, "field"))), 4096);
	cr_assert_null(json_object_get(line, "third"), "no field after the cut");
	json_decref(line);
	line = json_loads(second + 1, 0, NULL);
	cr_assert_not_null(line);
	cr_assert_str_eq(json_string_value(json_object_get(line, "msg")), "after");
	json_decref(line);
	free(text);
}

static void write_counts(void)
{
	static const char *const names[] = {"commands", "tries"};
	const uint64_t counts[] = {0, UINT64_MAX};

	log_set_level(LOG_INFO);
	log_counters("sender stopped", "actor", "saga", names, counts, 2);
	log_set_level(LOG_WARN);
	log_counters("not written at warn level", "actor", "saga", names, counts, 2);
}

Test(log, counts_are_decimal_fields_after_the_name)
{
	char *text = capture_stderr(write_counts);
	char *newline = strchr(text, '\n');
	cr_assert_not_null(newline);
	cr_assert_eq(newline[1], '\0', "the line below the level was filtered out");
	json_t *line = json_loads(text, 0, NULL);
	cr_assert_not_null(line, "not JSON: %s", text);
	cr_assert_str_eq(json_string_value(json_object_get(line, "msg")), "sender stopped");
	cr_assert_str_eq(json_string_value(json_object_get(line, "actor")), "saga");
	cr_assert_str_eq(json_string_value(json_object_get(line, "commands")), "0");
	cr_assert_str_eq(json_string_value(json_object_get(line, "tries")), "18446744073709551615");
	json_decref(line);
	free(text);
}

Test(log, levels_and_clocks)
{
	cr_assert_eq(log_level_parse("debug"), LOG_DEBUG);
	cr_assert_eq(log_level_parse("error"), LOG_ERROR);
	cr_assert_eq(log_level_parse("loud"), -1);
	cr_assert_eq(log_level_parse(NULL), -1);
	log_set_correlation("abc");
	cr_assert_str_eq(log_correlation(), "abc");
	log_set_correlation(NULL);
	cr_assert_str_eq(log_correlation(), "");
	char longer[400];
	memset(longer, 'x', sizeof longer - 1);
	longer[sizeof longer - 1] = '\0';
	log_set_correlation(longer);
	cr_assert_eq(strlen(log_correlation()), 159, "cut to its buffer, still terminated");
	log_set_correlation(NULL);
	log_set_level(LOG_WARN);
	cr_assert(log_enabled(LOG_ERROR) && log_enabled(LOG_WARN));
	cr_assert(!log_enabled(LOG_INFO) && !log_enabled(LOG_DEBUG));
	log_set_level(LOG_DEBUG);
	cr_assert(log_enabled(LOG_DEBUG));
	log_set_level(LOG_INFO);
	int64_t a = orn_monotonic_ns(), b = orn_monotonic_ns();
	cr_assert_geq(b, a);
	cr_assert_gt(orn_now_ms(), 1700000000000LL, "wall clock in ms since the epoch");
}

Test(orn, every_status_has_a_name_and_a_description)
{
	for (int rc = 0; rc < ORN_RC_COUNT; rc++) {
		cr_assert_not_null(orn_strerror((orn_rc)rc));
		cr_assert_neq(orn_rc_name((orn_rc)rc)[0], '\0');
		cr_assert_neq(strcmp(orn_strerror((orn_rc)rc), "unknown status"), 0, "status %d undescribed",
		              rc);
	}
	cr_assert_str_eq(orn_rc_name(ORN_ECONFLICT), "ECONFLICT");
	cr_assert_str_eq(orn_strerror(ORN_RC_COUNT), "unknown status");
	cr_assert_str_eq(orn_rc_name((orn_rc)-1), "EUNKNOWN");
}

/* ---- orn_make_dirs ---- */

static char scratch[64];

static void scratch_make(void)
{
	snprintf(scratch, sizeof scratch, "/tmp/orion-fsdir-XXXXXX");
	cr_assert_not_null(mkdtemp(scratch));
}

static void scratch_remove(void)
{
	char command[128];
	snprintf(command, sizeof command, "rm -rf '%s'", scratch);
	cr_assert_eq(system(command), 0);
}

TestSuite(fsdir, .init = scratch_make, .fini = scratch_remove);

static bool is_dir_with_mode(const char *path, mode_t mode)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == mode;
}

Test(fsdir, creates_every_missing_parent_private_to_the_user)
{
	char path[128], parent[128];
	snprintf(path, sizeof path, "%s/a/b/c", scratch);
	snprintf(parent, sizeof parent, "%s/a", scratch);
	mode_t old = umask(022);
	orn_rc rc = orn_make_dirs(path);
	umask(old);
	cr_assert_eq(rc, ORN_OK);
	cr_assert(is_dir_with_mode(path, 0700));
	cr_assert(is_dir_with_mode(parent, 0700));
}

Test(fsdir, existing_directories_and_odd_slashes_are_fine)
{
	char path[128];
	cr_assert_eq(orn_make_dirs(scratch), ORN_OK);
	cr_assert_eq(chmod(scratch, 0750), 0);
	cr_assert_eq(orn_make_dirs(scratch), ORN_OK);
	cr_assert(is_dir_with_mode(scratch, 0750), "an existing directory keeps its mode");
	snprintf(path, sizeof path, "%s//x///y/", scratch);
	cr_assert_eq(orn_make_dirs(path), ORN_OK);
	cr_assert_eq(orn_make_dirs(path), ORN_OK);
	snprintf(path, sizeof path, "%s/x/y", scratch);
	cr_assert(is_dir_with_mode(path, 0700));
}

Test(fsdir, a_file_in_the_way_is_an_error)
{
	char file[128], below[128];
	snprintf(file, sizeof file, "%s/file", scratch);
	FILE *f = fopen(file, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(orn_make_dirs(file), ORN_EIO, "the last component is a file");
	snprintf(below, sizeof below, "%s/file/sub/dir", scratch);
	cr_assert_eq(orn_make_dirs(below), ORN_EIO, "a parent is a file");
}

Test(fsdir, no_path_is_invalid)
{
	cr_assert_eq(orn_make_dirs(NULL), ORN_EINVAL);
	cr_assert_eq(orn_make_dirs(""), ORN_EINVAL);
}

Test(config, the_limits_of_issue_14_have_defaults_and_bounds)
{
	cli_config c;
	cr_assert_eq(cli_config_load(&c, NULL), ORN_OK);
	cr_assert_eq(c.auth_account_address_burst, 5);
	cr_assert_eq(c.auth_account_address_per_hour, 60);
	cr_assert_eq(c.auth_account_per_hour, 100);
	cr_assert_eq(c.token_ttl_s, 3600);
	cr_assert_eq(c.http_header_timeout_ms, 10000);
	cr_assert_eq(c.http_body_timeout_ms, 30000);
	cr_assert_eq(c.http_max_connections, 10000);
	cr_assert_eq(c.http_max_connections_per_address, 64);
	cr_assert_eq(c.max_streams_per_customer, 8);
	setenv("ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "3", 1);
	cr_assert_eq(cli_config_load(&c, NULL), ORN_OK);
	cr_assert_eq(c.http_max_connections_per_address, 3);
	const char *bad = NULL;
	setenv("ORION_TOKEN_TTL", "999999999", 1);
	cr_assert_eq(cli_config_load(&c, &bad), ORN_EINVAL);
	cr_assert_str_eq(bad, "ORION_TOKEN_TTL");
	unsetenv("ORION_TOKEN_TTL");
	unsetenv("ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS");
}
