/* config.h — Orion's configuration, read from the environment.
 *
 * Every variable is optional; orn_config_load fills defaults and validates
 * the values it reads (a bad number is an error, not a silent default). */
#ifndef ORION_CONFIG_H
#define ORION_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "orn.h"

#define ORN_CONFIG_STR_MAX 512

typedef struct orn_config {
	char nats_url[ORN_CONFIG_STR_MAX];     /* ORION_NATS_URL; "" = start an embedded server */
	char data_dir[ORN_CONFIG_STR_MAX];     /* ORION_DATA_DIR, default ./var */
	char http_addr[ORN_CONFIG_STR_MAX];    /* ORION_HTTP_ADDR, default 127.0.0.1:8080 */
	char metrics_addr[ORN_CONFIG_STR_MAX]; /* ORION_METRICS_ADDR; "" = /metrics only on the gateway */
	char log_level[16];                    /* ORION_LOG_LEVEL: debug|info|warn|error, default info */
	unsigned shards;                       /* ORION_SHARDS, default 4 */
	bool confirm_by_read;                  /* ORION_CONFIRM: echo (default) | read (ADR 015) */
	size_t cache_capacity;                 /* ORION_CACHE_CAPACITY, default 100000 */
	unsigned snapshot_every;               /* ORION_SNAPSHOT_EVERY, default 100 (0 = never) */
	int stream_replicas;                   /* ORION_STREAM_REPLICAS, default 1 */
	long command_timeout_ms;               /* ORION_COMMAND_TIMEOUT_MS, default 5000 */
	long sweep_after_ms;                   /* ORION_SWEEP_AFTER_MS, default 40000 (0 = no sweeper) */
	char cors_origins[ORN_CONFIG_STR_MAX]; /* ORION_CORS_ORIGINS: comma-separated origins, "" = none */
	char smtp_url[ORN_CONFIG_STR_MAX];     /* ORION_SMTP_URL; "" = Maildir under <data dir>/mail */
	char mail_from[ORN_CONFIG_STR_MAX];    /* ORION_MAIL_FROM, default orders@orion.localhost */
	unsigned mail_max_attempts;            /* ORION_MAIL_MAX_ATTEMPTS, default 20 (1..1000) */
	char public_url[ORN_CONFIG_STR_MAX];   /* ORION_PUBLIC_URL, default http://<ORION_HTTP_ADDR> */
	long reservation_ttl_s;                /* ORION_RESERVATION_TTL, default 900 (1..604800) */
	int64_t low_stock_threshold;           /* ORION_LOW_STOCK_THRESHOLD, default 5 (0..1e9) */
	char psp_url[ORN_CONFIG_STR_MAX];      /* ORION_PSP_URL; "" = start the bundled sandbox */
	char psp_key[ORN_CONFIG_STR_MAX];      /* ORION_PSP_KEY, default sk_test_orion */
	long payment_timeout_ms;          /* ORION_PAYMENT_TIMEOUT_MS, default 25000: the gateway's wait */
	unsigned password_memory_kib;     /* ORION_PASSWORD_MEMORY_KIB, default 65536 (Argon2id memory) */
	unsigned auth_address_burst;      /* ORION_AUTH_ADDRESS_BURST, default 20 */
	unsigned auth_address_per_minute; /* ORION_AUTH_ADDRESS_PER_MINUTE, default 20 */
	/* issue 14: limits that protect accounts and the gateway (README "Limits") */
	unsigned auth_account_address_burst;       /* ORION_AUTH_ACCOUNT_ADDRESS_BURST, default 5 */
	unsigned auth_account_address_per_hour;    /* ORION_AUTH_ACCOUNT_ADDRESS_PER_HOUR, default 60 */
	unsigned auth_account_per_hour;            /* ORION_AUTH_ACCOUNT_PER_HOUR, default 100 */
	unsigned token_ttl_s;                      /* ORION_TOKEN_TTL, default 3600 (60..86400) */
	unsigned http_header_timeout_ms;           /* ORION_HTTP_HEADER_TIMEOUT_MS, default 10000 */
	unsigned http_body_timeout_ms;             /* ORION_HTTP_BODY_TIMEOUT_MS, default 30000 */
	unsigned http_max_connections;             /* ORION_HTTP_MAX_CONNECTIONS, default 10000 */
	unsigned http_max_connections_per_address; /* ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS, default 64 */
	unsigned max_streams_per_customer;         /* ORION_MAX_STREAMS_PER_CUSTOMER, default 8 */

	/* ORION_NATS_CREDENTIALS: the per-role NATS users file (ADR 014); "" = none */
	char nats_credentials[ORN_CONFIG_STR_MAX];
	/* ORION_NATS_TLS_CA, _CERT, _KEY: TLS to NATS (CA; client certificate and key) */
	char nats_tls_ca[ORN_CONFIG_STR_MAX];
	char nats_tls_cert[ORN_CONFIG_STR_MAX];
	char nats_tls_key[ORN_CONFIG_STR_MAX];
} orn_config;

/* One variable the configuration reads, for `--help` listings. */
typedef struct orn_config_var {
	const char *name;
	const char *default_value;
	const char *meaning;
} orn_config_var;

/* Fills c with defaults, then applies the environment. On ORN_EINVAL, *bad_var
 * (may be NULL) names the offending variable. */
orn_rc orn_config_load(orn_config *c, const char **bad_var);

/* The table of variables (NULL-name terminated). */
const orn_config_var *orn_config_vars(void);

/* Prints the variables with defaults and meanings to out. */
void orn_config_print_help(FILE *out);

#endif
