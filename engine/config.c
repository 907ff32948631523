/* config.c — defaults, environment parsing and the --help table. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const orn_config_var vars[] = {
        {"ORION_NATS_URL", "unset",
         "NATS URL; unset: start an embedded nats-server -js on a free loopback port"},
        {"ORION_DATA_DIR", "./var", "read models, embedded NATS store, Maildir, generated secrets"},
        {"ORION_NATS_CREDENTIALS", "unset",
         "per-role NATS users (lines ROLE USER PASSWORD); unset: the embedded server's own, else none"},
        {"ORION_NATS_TLS_CA", "unset", "CA file verifying the NATS servers (enables TLS)"},
        {"ORION_NATS_TLS_CERT", "unset", "client certificate for NATS (mutual TLS; with ORION_NATS_TLS_KEY)"},
        {"ORION_NATS_TLS_KEY", "unset", "private key of ORION_NATS_TLS_CERT"},
        {"ORION_HTTP_ADDR", "127.0.0.1:8080", "where the gateway listens (port 0: any free port, announced)"},
        {"ORION_METRICS_ADDR", "unset",
         "HOST:PORT serving GET /metrics in a process without the gateway role"},
        {"ORION_LOG_LEVEL", "info", "debug, info, warn or error"},
        {"ORION_SHARDS", "4", "actor shards (threads) per aggregate kind"},
        {"ORION_CONFIRM", "echo",
         "how actors confirm their commits (ADR 015): echo (the log's echo) or read (a read per commit)"},
        {"ORION_CACHE_CAPACITY", "100000", "live aggregate states kept in memory per kind"},
        {"ORION_SNAPSHOT_EVERY", "100", "events between aggregate snapshots (0: never)"},
        {"ORION_STREAM_REPLICAS", "1", "replicas of the JetStream streams (3 on a cluster)"},
        {"ORION_COMMAND_TIMEOUT_MS", "5000", "how long a command waits for its actor"},
        {"ORION_SWEEP_AFTER_MS", "40000",
         "age of an order event at which checkout, mail, payment check its work was done (0: never)"},
        {"ORION_SMTP_URL", "unset", "SMTP server (smtp://host:port, smtps://user:pass@host); unset: Maildir"},
        {"ORION_MAIL_FROM", "orders@orion.localhost", "sender address of the shop's emails"},
        {"ORION_MAIL_MAX_ATTEMPTS", "20", "send attempts per email before it is marked failed (1..1000)"},
        {"ORION_PUBLIC_URL", "http://ADDR", "base of links in emails (ADDR = the gateway's bound address)"},
        {"ORION_RESERVATION_TTL", "900", "seconds an unconfirmed or unpaid order holds its stock"},
        {"ORION_LOW_STOCK_THRESHOLD", "5", "low-stock threshold of a product created without one (0: none)"},
        {"ORION_PSP_URL", "unset", "card payment provider base URL; unset: the bundled sandbox"},
        {"ORION_PSP_KEY", "sk_test_orion", "API key sent to the payment provider"},
        {"ORION_PAYMENT_TIMEOUT_MS", "25000",
         "how long POST /orders/{id}/payment waits for the payment service (<= 25000)"},
        {"ORION_PASSWORD_MEMORY_KIB", "65536",
         "Argon2id memory per password hash (8192..1048576; below the default only for tests)"},
        {"ORION_AUTH_ADDRESS_BURST", "20", "logins/registrations one client address may make at once"},
        {"ORION_AUTH_ADDRESS_PER_MINUTE", "20", "then this many per minute (Argon2id work per address)"},
        /* issue 14: the limits that protect accounts and the gateway (limits[] below) */
        {"ORION_AUTH_ACCOUNT_ADDRESS_BURST", "5", "failed logins on one account from one address at once"},
        {"ORION_AUTH_ACCOUNT_ADDRESS_PER_HOUR", "60", "then this many an hour (one a minute)"},
        {"ORION_AUTH_ACCOUNT_PER_HOUR", "100",
         "failed logins on one account from all addresses an hour, above which only addresses it logged in "
         "from may try"},
        {"ORION_TOKEN_TTL", "3600", "seconds an access token lives; longer-lived tokens are refused"},
        {"ORION_HTTP_HEADER_TIMEOUT_MS", "10000",
         "time for a request's line and headers, from their first byte"},
        {"ORION_HTTP_BODY_TIMEOUT_MS", "30000", "time for a request's body, after its headers"},
        {"ORION_HTTP_MAX_CONNECTIONS", "10000", "open HTTP connections at most"},
        {"ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "64",
         "open HTTP connections from one client address at most"},
        {"ORION_MAX_STREAMS_PER_CUSTOMER", "8", "event streams (SSE) one account may hold open at once"},
        {"ORION_MASTER_KEY", "unset",
         "key wrapping the customers' data keys (64 hex digits, or a passphrase of 32+ characters); unset: "
         "DATA_DIR/master.key, made on first start (ADR 027)"},
        {NULL, NULL, NULL},
};

/* The numeric limits of issue 14: name, bounds, default, where they go. */
static const struct {
	const char *name;
	long long min, max, default_value;
	size_t offset;
} limits[] = {
        {"ORION_AUTH_ACCOUNT_ADDRESS_BURST", 1, 1000000, 5, offsetof(orn_config, auth_account_address_burst)},
        {"ORION_AUTH_ACCOUNT_ADDRESS_PER_HOUR", 1, 1000000, 60,
         offsetof(orn_config, auth_account_address_per_hour)},
        {"ORION_AUTH_ACCOUNT_PER_HOUR", 1, 100000000, 100, offsetof(orn_config, auth_account_per_hour)},
        {"ORION_TOKEN_TTL", 60, 86400, 3600, offsetof(orn_config, token_ttl_s)},
        {"ORION_HTTP_HEADER_TIMEOUT_MS", 100, 600000, 10000, offsetof(orn_config, http_header_timeout_ms)},
        {"ORION_HTTP_BODY_TIMEOUT_MS", 100, 3600000, 30000, offsetof(orn_config, http_body_timeout_ms)},
        {"ORION_HTTP_MAX_CONNECTIONS", 1, 1000000, 10000, offsetof(orn_config, http_max_connections)},
        {"ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS", 1, 1000000, 64,
         offsetof(orn_config, http_max_connections_per_address)},
        {"ORION_MAX_STREAMS_PER_CUSTOMER", 1, 100000, 8, offsetof(orn_config, max_streams_per_customer)},
};

const orn_config_var *orn_config_vars(void)
{
	return vars;
}

void orn_config_print_help(FILE *out)
{
	fprintf(out, "Environment (all optional):\n");
	for (const orn_config_var *v = vars; v->name != NULL; v++)
		fprintf(out, "  %-26s default %-16s %s\n", v->name, v->default_value, v->meaning);
}

static orn_rc read_string(const char *name, char *out, size_t cap)
{
	const char *value = getenv(name);
	if (value == NULL || value[0] == '\0')
		return ORN_OK;
	if (strlen(value) >= cap)
		return ORN_EINVAL;
	memcpy(out, value, strlen(value) + 1);
	return ORN_OK;
}

static orn_rc read_number(const char *name, long long min, long long max, long long *out)
{
	const char *value = getenv(name);
	if (value == NULL || value[0] == '\0')
		return ORN_OK;
	char *end = NULL;
	errno = 0;
	long long n = strtoll(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || n < min || n > max)
		return ORN_EINVAL;
	*out = n;
	return ORN_OK;
}

orn_rc orn_config_load(orn_config *c, const char **bad_var)
{
	memset(c, 0, sizeof *c);
	strcpy(c->data_dir, "./var");
	strcpy(c->http_addr, "127.0.0.1:8080");
	strcpy(c->log_level, "info");
	strcpy(c->mail_from, "orders@orion.localhost");
	strcpy(c->psp_key, "sk_test_orion");
	long long payment_timeout = 25000, password_memory = 65536;
	long long ttl = 900, address_burst = 20, address_rate = 20, mail_attempts = 20, low_stock = 5;
	long long shards = 4, cache = 100000, snapshot = 100, replicas = 1, timeout = 5000,
	          sweep_after = 40000;
	const char *bad = NULL;
	char confirm[8] = "echo";

#define TRY(name, call)                                                                                      \
	do {                                                                                                 \
		if ((call) != ORN_OK) {                                                                      \
			bad = (name);                                                                        \
			goto fail;                                                                           \
		}                                                                                            \
	} while (0)
	TRY("ORION_NATS_URL", read_string("ORION_NATS_URL", c->nats_url, sizeof c->nats_url));
	TRY("ORION_DATA_DIR", read_string("ORION_DATA_DIR", c->data_dir, sizeof c->data_dir));
	TRY("ORION_NATS_CREDENTIALS",
	    read_string("ORION_NATS_CREDENTIALS", c->nats_credentials, sizeof c->nats_credentials));
	TRY("ORION_NATS_TLS_CA", read_string("ORION_NATS_TLS_CA", c->nats_tls_ca, sizeof c->nats_tls_ca));
	TRY("ORION_NATS_TLS_CERT",
	    read_string("ORION_NATS_TLS_CERT", c->nats_tls_cert, sizeof c->nats_tls_cert));
	TRY("ORION_NATS_TLS_KEY", read_string("ORION_NATS_TLS_KEY", c->nats_tls_key, sizeof c->nats_tls_key));
	TRY("ORION_HTTP_ADDR", read_string("ORION_HTTP_ADDR", c->http_addr, sizeof c->http_addr));
	TRY("ORION_METRICS_ADDR", read_string("ORION_METRICS_ADDR", c->metrics_addr, sizeof c->metrics_addr));
	TRY("ORION_LOG_LEVEL", read_string("ORION_LOG_LEVEL", c->log_level, sizeof c->log_level));
	TRY("ORION_CONFIRM", read_string("ORION_CONFIRM", confirm, sizeof confirm));
	if (strcmp(confirm, "echo") != 0 && strcmp(confirm, "read") != 0) {
		bad = "ORION_CONFIRM";
		goto fail;
	}
	c->confirm_by_read = strcmp(confirm, "read") == 0;
	TRY("ORION_CORS_ORIGINS", read_string("ORION_CORS_ORIGINS", c->cors_origins, sizeof c->cors_origins));
	TRY("ORION_SMTP_URL", read_string("ORION_SMTP_URL", c->smtp_url, sizeof c->smtp_url));
	TRY("ORION_MAIL_FROM", read_string("ORION_MAIL_FROM", c->mail_from, sizeof c->mail_from));
	TRY("ORION_PUBLIC_URL", read_string("ORION_PUBLIC_URL", c->public_url, sizeof c->public_url));
	TRY("ORION_PSP_URL", read_string("ORION_PSP_URL", c->psp_url, sizeof c->psp_url));
	TRY("ORION_PSP_KEY", read_string("ORION_PSP_KEY", c->psp_key, sizeof c->psp_key));
	TRY("ORION_PAYMENT_TIMEOUT_MS",
	    read_number("ORION_PAYMENT_TIMEOUT_MS", 1000, 25000, &payment_timeout));
	TRY("ORION_PASSWORD_MEMORY_KIB",
	    read_number("ORION_PASSWORD_MEMORY_KIB", 8192, 1048576, &password_memory));
	TRY("ORION_RESERVATION_TTL", read_number("ORION_RESERVATION_TTL", 1, 604800, &ttl));
	TRY("ORION_MAIL_MAX_ATTEMPTS", read_number("ORION_MAIL_MAX_ATTEMPTS", 1, 1000, &mail_attempts));
	TRY("ORION_LOW_STOCK_THRESHOLD", read_number("ORION_LOW_STOCK_THRESHOLD", 0, 1000000000, &low_stock));
	TRY("ORION_AUTH_ADDRESS_BURST", read_number("ORION_AUTH_ADDRESS_BURST", 1, 1000000, &address_burst));
	TRY("ORION_AUTH_ADDRESS_PER_MINUTE",
	    read_number("ORION_AUTH_ADDRESS_PER_MINUTE", 1, 1000000, &address_rate));
	TRY("ORION_SHARDS", read_number("ORION_SHARDS", 1, 256, &shards));
	TRY("ORION_CACHE_CAPACITY", read_number("ORION_CACHE_CAPACITY", 1, 100000000, &cache));
	TRY("ORION_SNAPSHOT_EVERY", read_number("ORION_SNAPSHOT_EVERY", 0, 1000000, &snapshot));
	TRY("ORION_STREAM_REPLICAS", read_number("ORION_STREAM_REPLICAS", 1, 5, &replicas));
	TRY("ORION_COMMAND_TIMEOUT_MS", read_number("ORION_COMMAND_TIMEOUT_MS", 10, 600000, &timeout));
	TRY("ORION_SWEEP_AFTER_MS", read_number("ORION_SWEEP_AFTER_MS", 0, 86400000, &sweep_after));
	for (size_t i = 0; i < ORN_ARRAY_LEN(limits); i++) {
		long long value = limits[i].default_value;
		TRY(limits[i].name, read_number(limits[i].name, limits[i].min, limits[i].max, &value));
		*(unsigned *)((char *)c + limits[i].offset) = (unsigned)value;
	}
#undef TRY
	if (strcmp(c->log_level, "debug") != 0 && strcmp(c->log_level, "info") != 0 &&
	    strcmp(c->log_level, "warn") != 0 && strcmp(c->log_level, "error") != 0) {
		bad = "ORION_LOG_LEVEL";
		goto fail;
	}
	c->shards = (unsigned)shards;
	c->cache_capacity = (size_t)cache;
	c->snapshot_every = (unsigned)snapshot;
	c->stream_replicas = (int)replicas;
	c->command_timeout_ms = (long)timeout;
	c->sweep_after_ms = (long)sweep_after;
	c->reservation_ttl_s = (long)ttl;
	c->mail_max_attempts = (unsigned)mail_attempts;
	c->low_stock_threshold = (int64_t)low_stock;
	c->payment_timeout_ms = (long)payment_timeout;
	c->password_memory_kib = (unsigned)password_memory;
	c->auth_address_burst = (unsigned)address_burst;
	c->auth_address_per_minute = (unsigned)address_rate;
	if (c->public_url[0] == '\0' && snprintf(c->public_url, sizeof c->public_url, "http://%s",
	                                         c->http_addr) >= (int)sizeof c->public_url) {
		bad = "ORION_HTTP_ADDR";
		goto fail;
	}
	for (size_t n = strlen(c->psp_url); n > 0 && c->psp_url[n - 1] == '/'; n--)
		c->psp_url[n - 1] = '\0';
	/* A trailing slash would double the one the links add. */
	for (size_t n = strlen(c->public_url); n > 0 && c->public_url[n - 1] == '/'; n--)
		c->public_url[n - 1] = '\0';
	return ORN_OK;
fail:
	if (bad_var != NULL)
		*bad_var = bad;
	return ORN_EINVAL;
}
