/* settings.c — the process's settings table (see settings.h). */
#include "settings.h"

#include <stdio.h>
#include <string.h>

#include "roles.h"

#define TEXT(name, field, def, shown, help) ORN_SETTING_TEXT_ROW(name, cli_config, field, def, shown, help)
#define INT(name, field, def, min, max, help)                                                                \
	ORN_SETTING_INT_ROW(name, cli_config, field, def, min, max, help)

static const orn_setting settings[] = {
        TEXT("ORION_NATS_URL", nats_url, "", "unset",
             "NATS URL; unset: start an embedded nats-server -js on a free loopback port"),
        TEXT("ORION_DATA_DIR", data_dir, "./var", NULL,
             "read models, embedded NATS store, Maildir, generated secrets"),
        TEXT("ORION_NATS_CREDENTIALS", nats_credentials, "", "unset",
             "per-role NATS users (lines ROLE USER PASSWORD); unset: the embedded server's own, else none"),
        TEXT("ORION_NATS_TLS_CA", nats_tls_ca, "", "unset",
             "CA file verifying the NATS servers (enables TLS)"),
        TEXT("ORION_NATS_TLS_CERT", nats_tls_cert, "", "unset",
             "client certificate for NATS (mutual TLS; with ORION_NATS_TLS_KEY)"),
        TEXT("ORION_NATS_TLS_KEY", nats_tls_key, "", "unset", "private key of ORION_NATS_TLS_CERT"),
        TEXT("ORION_HTTP_ADDR", http_addr, "127.0.0.1:8080", NULL,
             "where the gateway listens (port 0: any free port, announced)"),
        TEXT("ORION_METRICS_ADDR", metrics_addr, "", "unset",
             "HOST:PORT serving GET /metrics in a process without the gateway role"),
        TEXT("ORION_LOG_LEVEL", log_level, "info", NULL, "debug, info, warn or error"),
        INT("ORION_STREAM_REPLICAS", stream_replicas, 1, 1, 5,
            "replicas of the JetStream streams (3 on a cluster)"),
        INT("ORION_COMMAND_TIMEOUT_MS", command_timeout_ms, 5000, 10, 600000,
            "how long a command waits for its actor"),
        TEXT("ORION_CORS_ORIGINS", cors_origins, "", "unset",
             "origins a browser may call the API from, comma-separated"),
        TEXT("ORION_PUBLIC_URL", public_url, "", "http://ADDR",
             "base of links in emails (ADDR = the gateway's bound address)"),
        INT("ORION_RESERVATION_TTL", reservation_ttl_s, 900, 1, 604800,
            "seconds an unconfirmed or unpaid order holds its stock"),
        INT("ORION_LOW_STOCK_THRESHOLD", low_stock_threshold, 5, 0, 1000000000,
            "low-stock threshold of a product created without one (0: none)"),
        INT("ORION_PAYMENT_TIMEOUT_MS", payment_timeout_ms, 25000, 1000, 25000,
            "how long POST /orders/{id}/payment waits for the payment service (<= 25000)"),
        INT("ORION_PASSWORD_MEMORY_KIB", password_memory_kib, 65536, 8192, 1048576,
            "Argon2id memory per password hash (8192..1048576; below the default only for tests)"),
        INT("ORION_AUTH_ADDRESS_BURST", auth_address_burst, 20, 1, 1000000,
            "logins/registrations one client address may make at once"),
        INT("ORION_AUTH_ADDRESS_PER_MINUTE", auth_address_per_minute, 20, 1, 1000000,
            "then this many per minute (Argon2id work per address)"),
        /* issue 14: the limits that protect accounts and the gateway */
        INT("ORION_AUTH_ACCOUNT_ADDRESS_BURST", auth_account_address_burst, 5, 1, 1000000,
            "failed logins on one account from one address at once"),
        INT("ORION_AUTH_ACCOUNT_ADDRESS_PER_HOUR", auth_account_address_per_hour, 60, 1, 1000000,
            "then this many an hour (one a minute)"),
        INT("ORION_AUTH_ACCOUNT_PER_HOUR", auth_account_per_hour, 100, 1, 100000000,
            "failed logins on one account from all addresses an hour, above which only addresses it logged "
            "in "
            "from may try"),
        INT("ORION_TOKEN_TTL", token_ttl_s, 3600, 60, 86400,
            "seconds an access token lives; longer-lived tokens are refused"),
        /* ADR 031: verified accounts and password reset */
        INT("ORION_REQUIRE_EMAIL_VERIFICATION", require_email_verification, 1, 0, 1,
            "1: an account places orders only once its address is verified (POST /orders: 403); 0: "
            "at once"),
        INT("ORION_VERIFY_TOKEN_TTL", verify_token_ttl_s, 86400, 1, 2592000,
            "seconds an emailed verification link lives"),
        INT("ORION_RESET_TOKEN_TTL", reset_token_ttl_s, 3600, 1, 86400,
            "seconds an emailed password-reset link lives"),
        INT("ORION_HTTP_HEADER_TIMEOUT_MS", http_header_timeout_ms, 10000, 100, 600000,
            "time for a request's line and headers, from their first byte"),
        INT("ORION_HTTP_BODY_TIMEOUT_MS", http_body_timeout_ms, 30000, 100, 3600000,
            "time for a request's body, after its headers"),
        INT("ORION_HTTP_MAX_CONNECTIONS", http_max_connections, 10000, 1, 1000000,
            "open HTTP connections at most"),
        INT("ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS", http_max_connections_per_address, 64, 1, 1000000,
            "open HTTP connections from one client address at most"),
        INT("ORION_MAX_STREAMS_PER_CUSTOMER", max_streams_per_customer, 8, 1, 100000,
            "event streams (SSE) one account may hold open at once"),
        /* issue 14: the limits that protect stock (ADR 026) */
        INT("ORION_MAX_OPEN_ORDERS", max_open_orders, 3, 1, 16,
            "unpaid orders one customer may hold at once (POST /orders beyond: 409)"),
        INT("ORION_MAX_UNITS_PER_PRODUCT", max_units_per_product, 10, 1, 1000000,
            "units of one product one customer may hold across unpaid orders (beyond: 409)"),
        INT("ORION_ORDERS_BURST", orders_burst, 10, 1, 1000000,
            "orders one customer may place at once (POST /orders beyond: 429)"),
        INT("ORION_ORDERS_PER_MINUTE", orders_per_minute, 30, 1, 1000000, "then this many a minute"),
        /* ADR 028: what the gateway tells browsers and checks webhooks with */
        TEXT("ORION_PSP_URL", psp_url, "", "unset",
             "card payment provider base URL; unset: the bundled sandbox"),
        TEXT("ORION_PSP_PUBLIC_URL", psp_public_url, "", "ORION_PSP_URL",
             "the provider's base URL as browsers reach it (GET /payments/config)"),
        TEXT("ORION_PSP_PUBLISHABLE_KEY", psp_publishable_key, "pk_test_orion", NULL,
             "the provider's publishable key browsers tokenize cards with"),
        TEXT("ORION_PSP_WEBHOOK_SECRET", psp_webhook_secret, "whsec_test_orion", NULL,
             "the secret the provider signs its webhooks with (POST /webhooks/psp)"),
        TEXT("ORION_MASTER_KEY", master_key, "", "unset",
             "key wrapping the customers' data keys (64 hex digits, or a passphrase of 32+ characters); "
             "unset: DATA_DIR/master.key, made on first start (ADR 027)"),
        ORN_SETTING_END,
};

const orn_setting *cli_config_settings(void)
{
	return settings;
}

orn_rc cli_config_load(cli_config *c, const char **bad)
{
	static const char *const levels[] = {"debug", "info", "warn", "error"};
	bool level_known = false;
	memset(c, 0, sizeof *c);
	orn_rc rc = orn_settings_load(settings, c, bad);
	if (rc != ORN_OK)
		return rc;
	for (size_t i = 0; i < ORN_ARRAY_LEN(levels); i++)
		level_known |= strcmp(c->log_level, levels[i]) == 0;
	const char *wrong = !level_known ? "ORION_LOG_LEVEL" : NULL;
	if (wrong == NULL && c->public_url[0] == '\0' &&
	    snprintf(c->public_url, sizeof c->public_url, "http://%s", c->http_addr) >=
	            (int)sizeof c->public_url)
		wrong = "ORION_HTTP_ADDR";
	if (wrong != NULL) {
		if (bad != NULL)
			*bad = wrong;
		return ORN_EINVAL;
	}
	/* A trailing slash would double the one the links add. */
	for (size_t n = strlen(c->public_url); n > 0 && c->public_url[n - 1] == '/'; n--)
		c->public_url[n - 1] = '\0';
	return ORN_OK;
}

void cli_settings_help(FILE *out)
{
	const orn_setting *tables[32];
	size_t count = 0, role_count = 0;
	const role_descriptor *const *roles = cli_roles(&role_count);
	tables[count++] = settings;
	for (size_t i = 0; i < role_count && count < ORN_ARRAY_LEN(tables); i++)
		if (roles[i]->settings != NULL)
			tables[count++] = roles[i]->settings;
	orn_settings_help(tables, count, out);
}
