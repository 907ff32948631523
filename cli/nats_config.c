/* nats_config.c — `orion nats-config`: the nats-server side of the per-role
 * NATS users (ADR 014).
 *
 * Prints the `authorization { users = [...] }` block, with every role's
 * permissions, for a credentials file (--credentials FILE, else
 * ORION_NATS_CREDENTIALS, else the embedded server's in the data dir), so
 * that operators paste or include it into their cluster's configuration.
 * --generate creates the file first (mode 0600, random passwords) when it
 * does not exist. The output holds the passwords: it goes to stdout only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common.h"
#include "log.h"
#include "roles.h"

#define ROLE_NAMES_MAX 40

static void help(FILE *out)
{
	fprintf(out, "usage: orion nats-config [--credentials FILE] [--generate]\n\n"
	             "Prints the nats-server authorization block (the users and permissions of\n"
	             "every role, ADR 014) for a credentials file, to stdout.\n"
	             "  --credentials FILE  the file (default: ORION_NATS_CREDENTIALS, else\n"
	             "                      <data dir>/nats/credentials)\n"
	             "  --generate          create FILE (mode 0600, random passwords) if absent\n"
	             "  -h, --help          this text\n");
}

int cli_nats_config(int argc, char **argv, const cli_config *cfg)
{
	const char *path = cfg->nats_credentials[0] != '\0' ? cfg->nats_credentials : NULL;
	char default_path[ORN_CONFIG_STR_MAX + 64];
	bool generate = false;
	na_credentials creds;
	const char *names[ROLE_NAMES_MAX];
	na_role users[ROLE_NAMES_MAX];
	size_t count = cli_nats_users(users, ORN_ARRAY_LEN(users));
	int status = 1;
	cli_role_names(names, ORN_ARRAY_LEN(names));
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--credentials") == 0 && i + 1 < argc) {
			path = argv[++i];
		} else if (strcmp(argv[i], "--generate") == 0) {
			generate = true;
		} else {
			help(cli_is_help(argv[i]) ? stdout : stderr);
			return cli_is_help(argv[i]) ? 0 : 2;
		}
	}
	if (path == NULL) {
		snprintf(default_path, sizeof default_path, "%s/nats/%s", cfg->data_dir, NA_CREDENTIALS_FILE);
		path = default_path;
	}
	orn_rc rc = generate ? na_credentials_ensure(path, names, &creds)
	                     : na_credentials_load(path, names, &creds);
	if (rc != ORN_OK) {
		fprintf(stderr, "orion nats-config: cannot read %s: %s\n", path, orn_strerror(rc));
		return 1;
	}
	char *text = na_render_authorization(&creds, users, count);
	if (text == NULL) {
		fprintf(stderr, "orion nats-config: %s holds no user\n", path);
		goto done;
	}
	fputs(text, stdout);
	status = fflush(stdout) == 0 ? 0 : 1;
	sodium_memzero(text, strlen(text));
	free(text);
done:
	na_credentials_wipe(&creds);
	return status;
}
