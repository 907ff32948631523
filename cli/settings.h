/* settings.h — the settings of the orion process itself: NATS and its users,
 * the data directory, logs, the read side and the gateway. The roles bring
 * their own settings in their descriptors (engine/role.h): `orion serve
 * --help` lists both. */
#ifndef ORION_CLI_SETTINGS_H
#define ORION_CLI_SETTINGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "orn.h"

typedef struct cli_config {
	char nats_url[ORN_CONFIG_STR_MAX];     /* ORION_NATS_URL; "" = start an embedded server */
	char data_dir[ORN_CONFIG_STR_MAX];     /* ORION_DATA_DIR, default ./var */
	char http_addr[ORN_CONFIG_STR_MAX];    /* ORION_HTTP_ADDR, default 127.0.0.1:8080 */
	char metrics_addr[ORN_CONFIG_STR_MAX]; /* ORION_METRICS_ADDR; "" = /metrics only on the gateway */
	char log_level[16];                    /* ORION_LOG_LEVEL: debug|info|warn|error, default info */
	int stream_replicas;                   /* ORION_STREAM_REPLICAS, default 1 */
	long command_timeout_ms;               /* ORION_COMMAND_TIMEOUT_MS, default 5000 */
	char cors_origins[ORN_CONFIG_STR_MAX]; /* ORION_CORS_ORIGINS: comma-separated origins, "" = none */
	char public_url[ORN_CONFIG_STR_MAX];   /* ORION_PUBLIC_URL, default http://<ORION_HTTP_ADDR> */
	long reservation_ttl_s;                /* ORION_RESERVATION_TTL, default 900 (1..604800) */
	int64_t low_stock_threshold;           /* ORION_LOW_STOCK_THRESHOLD, default 5 (0..1e9) */
	long payment_timeout_ms;          /* ORION_PAYMENT_TIMEOUT_MS, default 25000: the gateway's wait */
	unsigned password_memory_kib;     /* ORION_PASSWORD_MEMORY_KIB, default 65536 (Argon2id memory) */
	unsigned auth_address_burst;      /* ORION_AUTH_ADDRESS_BURST, default 20 */
	unsigned auth_address_per_minute; /* ORION_AUTH_ADDRESS_PER_MINUTE, default 20 */
	/* issue 14: limits that protect accounts and the gateway (README "Limits") */
	unsigned auth_account_address_burst;    /* ORION_AUTH_ACCOUNT_ADDRESS_BURST, default 5 */
	unsigned auth_account_address_per_hour; /* ORION_AUTH_ACCOUNT_ADDRESS_PER_HOUR, default 60 */
	unsigned auth_account_per_hour;         /* ORION_AUTH_ACCOUNT_PER_HOUR, default 100 */
	unsigned token_ttl_s;                   /* ORION_TOKEN_TTL, default 3600 (60..86400) */
	/* ADR 031 */
	unsigned require_email_verification;       /* ORION_REQUIRE_EMAIL_VERIFICATION, default 1 (0..1) */
	unsigned verify_token_ttl_s;               /* ORION_VERIFY_TOKEN_TTL, default 86400 (1..2592000) */
	unsigned reset_token_ttl_s;                /* ORION_RESET_TOKEN_TTL, default 3600 (1..86400) */
	unsigned http_header_timeout_ms;           /* ORION_HTTP_HEADER_TIMEOUT_MS, default 10000 */
	unsigned http_body_timeout_ms;             /* ORION_HTTP_BODY_TIMEOUT_MS, default 30000 */
	unsigned http_max_connections;             /* ORION_HTTP_MAX_CONNECTIONS, default 10000 */
	unsigned http_max_connections_per_address; /* ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS, default 64 */
	unsigned max_streams_per_customer;         /* ORION_MAX_STREAMS_PER_CUSTOMER, default 8 */
	/* issue 14: limits that protect stock (ADR 026) */
	int64_t max_open_orders;       /* ORION_MAX_OPEN_ORDERS, default 3 (1..16) */
	int64_t max_units_per_product; /* ORION_MAX_UNITS_PER_PRODUCT, default 10 (1..1000000) */
	unsigned orders_burst;         /* ORION_ORDERS_BURST, default 10 */
	unsigned orders_per_minute;    /* ORION_ORDERS_PER_MINUTE, default 30 */
	/* ORION_NATS_CREDENTIALS: the per-role NATS users file (ADR 014); "" = none */
	char nats_credentials[ORN_CONFIG_STR_MAX];
	/* ORION_NATS_TLS_CA, _CERT, _KEY: TLS to NATS (CA; client certificate and key) */
	char nats_tls_ca[ORN_CONFIG_STR_MAX];
	char nats_tls_cert[ORN_CONFIG_STR_MAX];
	char nats_tls_key[ORN_CONFIG_STR_MAX];
	/* ORION_MASTER_KEY: wraps the customers' data keys (ADR 027); "" = <data dir>/master.key */
	char master_key[ORN_CONFIG_STR_MAX];
	/* the card payment provider as the gateway needs it (ADR 028) */
	char psp_url[ORN_CONFIG_STR_MAX];             /* ORION_PSP_URL; "" = the bundled sandbox */
	char psp_public_url[ORN_CONFIG_STR_MAX];      /* ORION_PSP_PUBLIC_URL; "" = ORION_PSP_URL */
	char psp_publishable_key[ORN_CONFIG_STR_MAX]; /* ORION_PSP_PUBLISHABLE_KEY */
	char psp_webhook_secret[ORN_CONFIG_STR_MAX];  /* ORION_PSP_WEBHOOK_SECRET */
} cli_config;

/* The table of the process's settings (ORN_SETTING_END-terminated). */
const orn_setting *cli_config_settings(void);

/* Fills c from the environment (defaults where unset), then derives the
 * public URL from the HTTP address when unset and drops its trailing slashes.
 * ORN_EINVAL with *bad (may be NULL) naming the variable for a bad value. */
orn_rc cli_config_load(cli_config *c, const char **bad);

/* Prints the settings of the process and of every role (cli/roles.h), each
 * variable once, for `--help`. */
void cli_settings_help(FILE *out);

#endif
