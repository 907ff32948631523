/* psp_role.c — the role "psp" as it describes itself (see psp_sandbox.h). */
#include "psp_sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static const orn_setting psp_settings_table[] = {
        ORN_SETTING_TEXT_ROW("ORION_PSP_URL", psp_settings, url, "", "unset",
                             "card payment provider base URL; unset: the bundled sandbox"),
        ORN_SETTING_TEXT_ROW("ORION_PSP_KEY", psp_settings, key, "sk_test_orion", NULL,
                             "API key sent to the payment provider"),
        ORN_SETTING_TEXT_ROW("ORION_PSP_PUBLISHABLE_KEY", psp_settings, publishable_key, "pk_test_orion",
                             NULL, "the sandbox's publishable key (browsers create payment methods)"),
        ORN_SETTING_TEXT_ROW("ORION_PSP_WEBHOOK_SECRET", psp_settings, webhook_secret, "whsec_test_orion",
                             NULL, "the secret the sandbox signs its webhooks with"),
        ORN_SETTING_TEXT_ROW("ORION_PSP_WEBHOOK_URL", psp_settings, webhook_url, "",
                             "ORION_PUBLIC_URL/api/v1/webhooks/psp",
                             "where the sandbox sends its webhooks (an http:// URL)"),
        ORN_SETTING_TEXT_ROW("ORION_PSP_PUBLIC_URL", psp_settings, public_url, "", "the sandbox's URL",
                             "the provider's URL as browsers reach it (the 3-D Secure page's base)"),
        ORN_SETTING_END,
};

typedef struct psp_role_state {
	psp_sandbox *sandbox;
	bool webhook_defaulted; /* follows the public URL */
	char cors_extra[ORN_CONFIG_STR_MAX];
	char url[64];
} psp_role_state;

/* <public URL>/api/v1/webhooks/psp, or "" when it cannot be sent there (https:
 * the sandbox speaks plain HTTP; set ORION_PSP_WEBHOOK_URL). */
static void default_webhook_url(const char *public_url, char *out, size_t cap)
{
	out[0] = '\0';
	if (public_url == NULL || public_url[0] == '\0')
		return;
	if (strncmp(public_url, "http://", 7) != 0) {
		log_warn("the PSP sandbox sends no webhooks: the public URL is not http:// (set "
		         "ORION_PSP_WEBHOOK_URL)");
		return;
	}
	size_t n = strlen(public_url);
	while (n > 0 && public_url[n - 1] == '/')
		n--;
	snprintf(out, cap, "%.*s/api/v1/webhooks/psp", (int)n, public_url);
}

/* "<scheme>://<host[:port]>" of the public URL, then the extra origins. */
static void cors_list(const char *public_url, const char *extra, char *out, size_t cap)
{
	const char *host = public_url != NULL ? strstr(public_url, "://") : NULL;
	size_t n = 0;
	if (host != NULL) {
		const char *slash = strchr(host + 3, '/');
		n = slash != NULL ? (size_t)(slash - public_url) : strlen(public_url);
	}
	snprintf(out, cap, "%.*s%s%s", (int)n, n > 0 ? public_url : "",
	         n > 0 && extra != NULL && extra[0] != '\0' ? "," : "", extra != NULL ? extra : "");
}

static orn_rc psp_role_start(const role_context *ctx, void **handle)
{
	const psp_settings *set = ctx->settings;
	char state_file[ORN_CONFIG_STR_MAX + 32], webhook[ORN_CONFIG_STR_MAX + 32];
	char origins[2 * ORN_CONFIG_STR_MAX + 8];
	psp_sandbox_options o;
	*handle = NULL;
	if (set->url[0] != '\0') /* a provider elsewhere: nothing to run */
		return ORN_OK;
	const char *public_url = ctx->offer != NULL ? ctx->offer(ctx->host, PSP_NEEDS_PUBLIC_URL) : NULL;
	const char *extra = ctx->offer != NULL ? ctx->offer(ctx->host, PSP_NEEDS_CORS_ORIGINS) : NULL;
	psp_role_state *s = calloc(1, sizeof *s);
	if (s == NULL)
		return ORN_ENOMEM;
	snprintf(s->cors_extra, sizeof s->cors_extra, "%s", extra != NULL ? extra : "");
	s->webhook_defaulted = set->webhook_url[0] == '\0';
	if (s->webhook_defaulted)
		default_webhook_url(public_url, webhook, sizeof webhook);
	else
		snprintf(webhook, sizeof webhook, "%s", set->webhook_url);
	cors_list(public_url, s->cors_extra, origins, sizeof origins);
	snprintf(state_file, sizeof state_file, "%s/psp-sandbox.jsonl", ctx->data_dir);
	psp_sandbox_options_init(&o);
	o.listen = "127.0.0.1:0";
	o.api_key = set->key;
	o.state_file = state_file;
	o.publishable_key = set->publishable_key;
	o.webhook_secret = set->webhook_secret;
	o.webhook_url = webhook;
	o.cors_origins = origins;
	o.public_url = set->public_url;
	orn_rc rc = psp_sandbox_start(&o, &s->sandbox);
	if (rc != ORN_OK) {
		log_error("cannot start the payment provider sandbox", "error", orn_strerror(rc));
		free(s);
		return rc;
	}
	snprintf(s->url, sizeof s->url, "http://127.0.0.1:%u", (unsigned)psp_sandbox_port(s->sandbox));
	*handle = s;
	return ORN_OK;
}

void psp_role_public_url(void *handle, const char *public_url)
{
	psp_role_state *s = handle;
	char webhook[ORN_CONFIG_STR_MAX + 32], origins[2 * ORN_CONFIG_STR_MAX + 8];
	if (s == NULL || public_url == NULL)
		return;
	if (s->webhook_defaulted)
		default_webhook_url(public_url, webhook, sizeof webhook);
	cors_list(public_url, s->cors_extra, origins, sizeof origins);
	if (psp_sandbox_set_site(s->sandbox, s->webhook_defaulted ? webhook : NULL, origins) != ORN_OK)
		log_error("cannot point the PSP sandbox at the public URL");
}

static void psp_role_stop(void *handle)
{
	psp_role_state *s = handle;
	if (s == NULL)
		return;
	psp_sandbox_stop(s->sandbox);
	free(s);
}

static const void *psp_role_offers(const void *handle, const char *what)
{
	const psp_role_state *s = handle;
	return s != NULL && strcmp(what, PSP_OFFERS_URL) == 0 ? s->url : NULL;
}

const role_descriptor psp_role = {
        .name = "psp",
        .summary = "the card payment provider sandbox, when ORION_PSP_URL is unset",
        .stage = ROLE_SERVES,
        .no_nats = true,
        .settings = psp_settings_table,
        .settings_size = sizeof(psp_settings),
        .start = psp_role_start,
        .stop = psp_role_stop,
        .offers = psp_role_offers,
};
