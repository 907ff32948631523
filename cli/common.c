/* common.c — what the orion subcommands share: the data directory and the
 * connection to NATS (ORION_NATS_URL, the running `orion serve`, or an
 * embedded nats-server). */
#include "common.h"

#include <stdio.h>
#include <string.h>

#include "fsdir.h"
#include "log.h"

/* Where a running `orion serve` records its embedded server's URL, so that
 * other commands on the same data directory use it instead of starting a
 * second server on the same store. */
void cli_url_file_path(const orn_config *cfg, char *out, size_t cap)
{
	snprintf(out, cap, "%s/nats.url", cfg->data_dir);
}

bool cli_read_running_url(const orn_config *cfg, char *url, size_t cap)
{
	char path[ORN_CONFIG_STR_MAX + 32];
	cli_url_file_path(cfg, path, sizeof path);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	bool ok = fgets(url, (int)cap, f) != NULL;
	fclose(f);
	url[strcspn(url, "\n")] = '\0';
	return ok && strncmp(url, "nats://", 7) == 0;
}

/* Connects to ORION_NATS_URL, or starts the embedded server first (*server). */
orn_rc cli_connect_store(const orn_config *cfg, const char *name, bool owner, natsd **server,
                         es_store **store)
{
	char store_dir[ORN_CONFIG_STR_MAX + 32], running[128];
	const char *url = cfg->nats_url;
	orn_rc rc;
	*server = NULL;
	if (url[0] == '\0' && !owner && cli_read_running_url(cfg, running, sizeof running))
		url = running;
	if (url[0] == '\0') {
		snprintf(store_dir, sizeof store_dir, "%s/nats", cfg->data_dir);
		if ((rc = orn_make_dirs(store_dir)) != ORN_OK) {
			log_error("cannot create the data directory", "path", store_dir);
			return rc;
		}
		natsd_options o;
		natsd_options_init(&o);
		o.store_dir = store_dir;
		if ((rc = natsd_start(&o, server)) != ORN_OK) {
			log_error("cannot start the embedded nats-server", "error", orn_strerror(rc));
			return rc;
		}
		url = natsd_url(*server);
		log_info("embedded nats-server started", "url", url, "store", store_dir);
		if (owner) {
			char path[ORN_CONFIG_STR_MAX + 32];
			cli_url_file_path(cfg, path, sizeof path);
			FILE *f = fopen(path, "w");
			if (f != NULL) {
				fprintf(f, "%s\n", url);
				fclose(f);
			}
		}
	}
	es_options eo;
	es_options_init(&eo);
	eo.url = url;
	eo.name = name;
	eo.replicas = cfg->stream_replicas;
	if ((rc = es_store_open(&eo, store)) != ORN_OK) {
		natsd_stop(*server);
		*server = NULL;
	}
	return rc;
}
