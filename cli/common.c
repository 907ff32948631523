/* common.c — what the orion subcommands share: the data directory and the
 * connection to NATS (ORION_NATS_URL, the running `orion serve`, or an
 * embedded nats-server). */
#include "common.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fsdir.h"
#include "log.h"
#include "roles.h"

#define ROLE_NAMES_MAX 40

bool cli_is_help(const char *arg)
{
	return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* Where a running `orion serve` records its embedded server's URL, so that
 * other commands on the same data directory use it instead of starting a
 * second server on the same store. */
void cli_url_file_path(const cli_config *cfg, char *out, size_t cap)
{
	snprintf(out, cap, "%s/nats.url", cfg->data_dir);
}

#define ANSWER_TIMEOUT_MS 3000 /* a refused connection fails at once; a server greets at once */

/* Waits until deadline_ms (orn_monotonic_ns / 1e6) for events on fd: 1 when
 * they came, 0 at the deadline, -1 on an error. */
static int wait_fd(int fd, short events, int64_t deadline_ms)
{
	for (;;) {
		int64_t left = deadline_ms - orn_monotonic_ns() / 1000000;
		if (left <= 0)
			return 0;
		struct pollfd p = {.fd = fd, .events = events};
		int n = poll(&p, 1, (int)left);
		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

/* What is at one address: NATS (it greets with "INFO {...}"), nothing we
 * could use (refused, unreachable, closed, another protocol), or no answer
 * by the deadline. */
typedef enum { ADDRESS_NATS, ADDRESS_DEAD, ADDRESS_SILENT } address_state;

static address_state probe(const struct addrinfo *a, int64_t deadline_ms)
{
	char greeting[5];
	int error = 0, ready;
	socklen_t len = sizeof error;
	address_state state = ADDRESS_DEAD;
	int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
	if (fd < 0)
		return ADDRESS_DEAD;
	if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS)
		goto done;
	if ((ready = wait_fd(fd, POLLOUT, deadline_ms)) <= 0) {
		state = ready == 0 ? ADDRESS_SILENT : ADDRESS_DEAD;
		goto done;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0)
		goto done;
	if ((ready = wait_fd(fd, POLLIN, deadline_ms)) <= 0) {
		state = ready == 0 ? ADDRESS_SILENT : ADDRESS_DEAD;
		goto done;
	}
	if (recv(fd, greeting, sizeof greeting, MSG_PEEK | MSG_WAITALL) == (ssize_t)sizeof greeting &&
	    memcmp(greeting, "INFO ", sizeof greeting) == 0)
		state = ADDRESS_NATS;
done:
	close(fd);
	return state;
}

/* True when nothing can be running at url ("nats://host:port"): every
 * address of it refuses the connection (or is unreachable, or answers
 * something that is not NATS). A server that accepts and stays silent for
 * ANSWER_TIMEOUT_MS is given the benefit of the doubt: taking a starved
 * serve's address for stale would start a second nats-server on the same
 * store, which nats-server does not prevent. */
static bool address_stale(const char *url)
{
	char host[256], port[8];
	const char *authority = url + strlen("nats://"), *colon = strrchr(authority, ':');
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found = NULL;
	bool stale = true;
	if (colon == NULL || (size_t)(colon - authority) >= sizeof host || strlen(colon + 1) >= sizeof port)
		return true;
	snprintf(host, sizeof host, "%.*s", (int)(colon - authority), authority);
	snprintf(port, sizeof port, "%s", colon + 1);
	if (getaddrinfo(host, port, &hints, &found) != 0)
		return true;
	int64_t deadline = orn_monotonic_ns() / 1000000 + ANSWER_TIMEOUT_MS;
	for (struct addrinfo *a = found; a != NULL && stale; a = a->ai_next)
		stale = probe(a, deadline) == ADDRESS_DEAD;
	freeaddrinfo(found);
	return stale;
}

bool cli_read_running_url(const cli_config *cfg, char *url, size_t cap)
{
	static int live = -1; /* the address is probed once per process: -1 not yet */
	char path[ORN_CONFIG_STR_MAX + 32];
	cli_url_file_path(cfg, path, sizeof path);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	bool ok = fgets(url, (int)cap, f) != NULL;
	fclose(f);
	url[strcspn(url, "\n")] = '\0';
	if (!ok || strncmp(url, "nats://", 7) != 0)
		return false;
	if (live < 0) {
		live = !address_stale(url);
		if (!live)
			fprintf(stderr,
			        "orion: %s names %s, which does not answer (left by a stop that was not "
			        "clean); going on without it\n",
			        path, url);
	}
	return live == 1;
}

/* <data dir>/nats: the embedded server's store, credentials and configuration. */
static void nats_dir(const cli_config *cfg, char *out, size_t cap)
{
	snprintf(out, cap, "%s/nats", cfg->data_dir);
}

orn_rc cli_nats_credentials(const cli_config *cfg, bool generate, na_credentials *out, bool *enabled)
{
	char path[ORN_CONFIG_STR_MAX + 64], running[128];
	orn_rc rc;
	const char *names[ROLE_NAMES_MAX];
	*enabled = false;
	na_credentials_wipe(out);
	cli_role_names(names, ORN_ARRAY_LEN(names));
	if (cfg->nats_credentials[0] != '\0') {
		if ((rc = na_credentials_load(cfg->nats_credentials, names, out)) != ORN_OK) {
			log_error("cannot read ORION_NATS_CREDENTIALS", "path", cfg->nats_credentials,
			          "error", orn_strerror(rc));
			return rc;
		}
		*enabled = true;
		return ORN_OK;
	}
	/* Without ORION_NATS_URL the server is ours (embedded, or a running
	 * serve's on the same data dir): its credentials are in the data dir. */
	if (cfg->nats_url[0] != '\0')
		return ORN_OK;
	nats_dir(cfg, path, sizeof path);
	if (generate && (rc = orn_make_dirs(path)) != ORN_OK) {
		log_error("cannot create the data directory", "path", path);
		return rc;
	}
	snprintf(path + strlen(path), sizeof path - strlen(path), "/%s", NA_CREDENTIALS_FILE);
	rc = generate ? na_credentials_ensure(path, names, out) : na_credentials_load(path, names, out);
	if (rc == ORN_ENOTFOUND && !generate && !cli_read_running_url(cfg, running, sizeof running))
		return ORN_OK; /* no server yet: whoever starts it generates them */
	if (rc != ORN_OK) {
		log_error("cannot read the NATS credentials", "path", path, "error", orn_strerror(rc));
		return rc;
	}
	*enabled = true;
	return ORN_OK;
}

void cli_nats_conn(const cli_config *cfg, const na_credentials *creds, const char *role, na_conn *out)
{
	const na_credential *c = na_credentials_find(creds, role);
	memset(out, 0, sizeof *out);
	if (c != NULL) {
		out->user = c->user;
		out->password = c->password;
	}
	out->tls_ca = cfg->nats_tls_ca[0] != '\0' ? cfg->nats_tls_ca : NULL;
	out->tls_cert = cfg->nats_tls_cert[0] != '\0' ? cfg->nats_tls_cert : NULL;
	out->tls_key = cfg->nats_tls_key[0] != '\0' ? cfg->nats_tls_key : NULL;
}

/* Starts the embedded server; with credentials, under the authorization
 * block rendered from them (<data dir>/nats/server.conf, 0600). */
static orn_rc start_embedded(const cli_config *cfg, const na_credentials *creds, natsd **server)
{
	char store_dir[ORN_CONFIG_STR_MAX + 32], conf[ORN_CONFIG_STR_MAX + 64];
	orn_rc rc;
	nats_dir(cfg, store_dir, sizeof store_dir);
	if ((rc = orn_make_dirs(store_dir)) != ORN_OK) {
		log_error("cannot create the data directory", "path", store_dir);
		return rc;
	}
	natsd_options o;
	natsd_options_init(&o);
	o.store_dir = store_dir;
	if (creds != NULL) {
		na_role users[ROLE_NAMES_MAX];
		const na_credential *ops = na_credentials_find(creds, CLI_OPS_ROLE);
		size_t count = cli_nats_users(users, ORN_ARRAY_LEN(users));
		snprintf(conf, sizeof conf, "%s/server.conf", store_dir);
		if ((rc = na_write_server_config(creds, users, count, conf)) != ORN_OK) {
			log_error("cannot write the nats-server configuration", "path", conf);
			return rc;
		}
		o.config_file = conf;
		o.user = ops != NULL ? ops->user : NULL;
		o.password = ops != NULL ? ops->password : NULL;
	}
	if ((rc = natsd_start(&o, server)) != ORN_OK) {
		log_error("cannot start the embedded nats-server", "error", orn_strerror(rc));
		return rc;
	}
	log_info("embedded nats-server started", "url", natsd_url(*server), "store", store_dir, "auth",
	         creds != NULL ? "per-role users" : "none");
	return ORN_OK;
}

orn_rc cli_connect_store_as(const cli_config *cfg, const char *name, bool owner, const na_credentials *creds,
                            const char *role, natsd **server, es_store **store)
{
	char running[128];
	const char *url = cfg->nats_url;
	orn_rc rc;
	*server = NULL;
	if (url[0] == '\0' && !owner && cli_read_running_url(cfg, running, sizeof running))
		url = running;
	if (url[0] == '\0') {
		if ((rc = start_embedded(cfg, creds, server)) != ORN_OK)
			return rc;
		url = natsd_url(*server);
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
	na_conn auth;
	cli_nats_conn(cfg, creds, role, &auth);
	if (creds != NULL && auth.user == NULL) {
		log_error("the NATS credentials have no user for this role", "role", role);
		natsd_stop(*server);
		*server = NULL;
		return ORN_EINVAL;
	}
	es_options eo;
	es_options_init(&eo);
	eo.url = url;
	eo.name = name;
	eo.replicas = cfg->stream_replicas;
	eo.auth = &auth;
	/* Only the ops user may create the streams; the roles verify them. */
	eo.create_streams = creds == NULL || strcmp(role, CLI_OPS_ROLE) == 0;
	if ((rc = es_store_open(&eo, store)) != ORN_OK) {
		if (rc == ORN_ENOTFOUND)
			log_error("the streams do not exist and this user may not create them: start a "
			          "process with the ops credentials first",
			          "role", role);
		natsd_stop(*server);
		*server = NULL;
	}
	return rc;
}

/* Connects as the ops user (when there are credentials). */
orn_rc cli_connect_store(const cli_config *cfg, const char *name, bool owner, natsd **server,
                         es_store **store)
{
	na_credentials creds;
	bool enabled = false;
	orn_rc rc = cli_nats_credentials(cfg, true, &creds, &enabled);
	if (rc == ORN_OK)
		rc = cli_connect_store_as(cfg, name, owner, enabled ? &creds : NULL, CLI_OPS_ROLE, server,
		                          store);
	na_credentials_wipe(&creds);
	return rc;
}

orn_rc cli_open_keys(const cli_config *cfg, es_store *store, bool create, ks_store **out)
{
	uint8_t master[PD_KEY_BYTES];
	ks_options o;
	ks_options_init(&o);
	o.replicas = cfg->stream_replicas;
	o.create = create;
	*out = NULL;
	orn_rc rc = ks_master_key_load(cfg->master_key, cfg->data_dir, master);
	if (rc != ORN_OK)
		log_error("cannot load the master key (ORION_MASTER_KEY or <data dir>/master.key)", "error",
		          orn_strerror(rc));
	else if ((rc = ks_open(store, master, &o, out)) != ORN_OK && (create || rc != ORN_ENOTFOUND))
		log_error("cannot open the keystore", "stream", KS_STREAM, "error", orn_strerror(rc));
	sodium_memzero(master, sizeof master);
	return rc;
}

orn_rc cli_open_store(const cli_config *cfg, const char *url, es_store **out)
{
	na_credentials creds;
	na_conn auth;
	bool enabled = false;
	orn_rc rc = cli_nats_credentials(cfg, false, &creds, &enabled);
	*out = NULL;
	if (rc == ORN_OK) {
		cli_nats_conn(cfg, enabled ? &creds : NULL, CLI_OPS_ROLE, &auth);
		es_options eo;
		es_options_init(&eo);
		eo.url = url;
		eo.name = "orion-cli";
		eo.replicas = cfg->stream_replicas;
		eo.timeout_ms = cfg->command_timeout_ms;
		eo.create_streams = false; /* a tool of a running shop: its streams are there */
		eo.auth = &auth;
		rc = es_store_open(&eo, out);
	}
	na_credentials_wipe(&creds);
	return rc;
}
