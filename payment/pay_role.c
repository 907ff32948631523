/* pay_role.c — the role "payment" as it describes itself (role.h): its
 * settings, its NATS grants, start, stop and readiness (see pay.h). */
#include "pay.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "order.h"
#include "payment.h"

typedef struct pay_settings {
	char psp_url[ORN_CONFIG_STR_MAX];
	char psp_key[ORN_CONFIG_STR_MAX];
	int64_t payment_timeout_ms;
	int64_t command_timeout_ms;
	int64_t sweep_after_ms;
} pay_settings;

static const orn_setting pay_settings_table[] = {
        ORN_SETTING_TEXT_ROW("ORION_PSP_URL", pay_settings, psp_url, "", "unset",
                             "payment provider base URL; unset: the psp role of the same process"),
        ORN_SETTING_TEXT_ROW("ORION_PSP_KEY", pay_settings, psp_key, "sk_test_orion", NULL,
                             "API key sent to the payment provider"),
        ORN_SETTING_INT_ROW("ORION_PAYMENT_TIMEOUT_MS", pay_settings, payment_timeout_ms, 25000, 1000, 25000,
                            "how long POST /orders/{id}/payment waits for the payment service (<= 25000)"),
        KIT_COMMAND_TIMEOUT_SETTING(pay_settings, command_timeout_ms),
        KIT_SWEEP_AFTER_SETTING(pay_settings, sweep_after_ms),
        ORN_SETTING_END,
};

static orn_rc pay_role_start(const role_context *ctx, void **handle)
{
	const pay_settings *set = ctx->settings;
	const char *offered = ctx->offer != NULL ? ctx->offer(ctx->host, PAY_NEEDS_PSP_URL) : NULL;
	const char *public_url = ctx->offer != NULL ? ctx->offer(ctx->host, PAY_NEEDS_PUBLIC_URL) : NULL;
	char psp_url[ORN_CONFIG_STR_MAX];
	pay_service *p = NULL;
	pay_options o;
	*handle = NULL;
	if (set->psp_url[0] == '\0' && offered == NULL) {
		log_error("the payment role needs ORION_PSP_URL, or the psp role in the same process");
		return ORN_EINVAL;
	}
	snprintf(psp_url, sizeof psp_url, "%s", set->psp_url[0] != '\0' ? set->psp_url : offered);
	/* A trailing slash would double the one the paths start with. */
	for (size_t n = strlen(psp_url); n > 0 && psp_url[n - 1] == '/'; n--)
		psp_url[n - 1] = '\0';
	pay_options_init(&o);
	o.psp_url = psp_url;
	o.psp_key = set->psp_key;
	o.public_url = public_url;
	o.command_timeout_ms = set->command_timeout_ms;
	o.sweep_after_ms = set->sweep_after_ms > 0 ? set->sweep_after_ms : -1;
	/* The gateway waits payment_timeout_ms: answer well before it gives up. */
	o.request_budget_ms = set->payment_timeout_ms > 6000 ? set->payment_timeout_ms - 5000 : 1000;
	orn_rc rc = pay_start(ctx->store, ctx->hub, &o, &p);
	if (rc != ORN_OK) {
		log_error("cannot start the payment service", "error", orn_strerror(rc));
		return rc;
	}
	log_info("payment service started", "provider", psp_url);
	*handle = p;
	return ORN_OK;
}

static void pay_role_stop(void *handle)
{
	pay_stop(handle);
}

static bool pay_role_ready(const void *handle)
{
	return pay_bound(handle);
}

static const char *const pay_appends[] = {PAYMENT_AGGREGATE, NULL};
static const char *const pay_serves[] = {PAY_SERVICE_AGGREGATE, NULL};
static const char *const pay_sends[] = {ORDER_AGGREGATE, NULL};
static const char *const pay_durables[] = {PAY_CONSUMER, NULL};

const role_descriptor pay_role = {
        .name = "payment",
        .summary = "pays orders at the provider (intents, 3-D Secure, webhooks) and refunds them",
        .stage = ROLE_SENDS,
        .nats = {.appends = pay_appends,
                 .serves = pay_serves,
                 .sends = pay_sends,
                 .durables = pay_durables,
                 .reads = true},
        .settings = pay_settings_table,
        .settings_size = sizeof(pay_settings),
        .start = pay_role_start,
        .stop = pay_role_stop,
        .ready = pay_role_ready,
};
