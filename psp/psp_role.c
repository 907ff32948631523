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
        ORN_SETTING_END,
};

typedef struct psp_role_state {
	psp_sandbox *sandbox;
	char url[64];
} psp_role_state;

static orn_rc psp_role_start(const role_context *ctx, void **handle)
{
	const psp_settings *set = ctx->settings;
	char state_file[ORN_CONFIG_STR_MAX + 32];
	psp_sandbox_options o;
	*handle = NULL;
	if (set->url[0] != '\0') /* a provider elsewhere: nothing to run */
		return ORN_OK;
	psp_role_state *s = calloc(1, sizeof *s);
	if (s == NULL)
		return ORN_ENOMEM;
	snprintf(state_file, sizeof state_file, "%s/psp-sandbox.jsonl", ctx->data_dir);
	psp_sandbox_options_init(&o);
	o.listen = "127.0.0.1:0";
	o.api_key = set->key;
	o.state_file = state_file;
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
