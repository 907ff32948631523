/* mail_role.c — the role "mail" as it describes itself (role.h): its
 * settings, its NATS grants, and a start that runs the mail service and the
 * delivery logs' RequestResend (mail_log_kind on the bus, ADR 023). */
#include "mail.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mail_log.h"

typedef struct mail_settings {
	char smtp_url[ORN_CONFIG_STR_MAX];
	char from[ORN_CONFIG_STR_MAX];
	int max_attempts;
	int64_t sweep_after_ms;
	act_options act;
} mail_settings;

static const orn_setting mail_settings_table[] = {
        ORN_SETTING_TEXT_ROW("ORION_SMTP_URL", mail_settings, smtp_url, "", "unset",
                             "SMTP server (smtp://host:port, smtps://user:pass@host); unset: Maildir"),
        ORN_SETTING_TEXT_ROW("ORION_MAIL_FROM", mail_settings, from, "orders@orion.localhost", NULL,
                             "sender address of the shop's emails"),
        ORN_SETTING_INT_ROW("ORION_MAIL_MAX_ATTEMPTS", mail_settings, max_attempts, MAIL_MAX_ATTEMPTS_DEFAULT,
                            1, 1000, "send attempts per email before it is marked failed (1..1000)"),
        KIT_SWEEP_AFTER_SETTING(mail_settings, sweep_after_ms),
        ACT_OPTIONS_SETTINGS(mail_settings, act),
        ORN_SETTING_END,
};

typedef struct mail_role_state {
	role_kinds *resends; /* RequestResend on the delivery logs */
	mail_service *mail;
} mail_role_state;

static void mail_role_stop(void *handle)
{
	mail_role_state *s = handle;
	if (s == NULL)
		return;
	mail_stop(s->mail);
	role_kinds_stop(s->resends);
	free(s);
}

static orn_rc mail_role_start(const role_context *ctx, void **handle)
{
	const mail_settings *set = ctx->settings;
	char state_dir[ORN_CONFIG_STR_MAX + 32], maildir[ORN_CONFIG_STR_MAX + 32];
	const uint8_t *key = ctx->offer != NULL ? ctx->offer(ctx->host, MAIL_NEEDS_TOKEN_KEY) : NULL;
	const char *public_url = ctx->offer != NULL ? ctx->offer(ctx->host, MAIL_NEEDS_PUBLIC_URL) : NULL;
	ks_store *keys = ctx->offer != NULL ? (ks_store *)ctx->offer(ctx->host, MAIL_NEEDS_KEYS) : NULL;
	mail_role_state *s = calloc(1, sizeof *s);
	mail_options mo;
	orn_rc rc = ORN_EINVAL;
	*handle = NULL;
	if (s == NULL)
		return ORN_ENOMEM;
	if (key == NULL || public_url == NULL || keys == NULL) {
		log_error(
		        "the mail role needs the token key, the public URL and the keystore of its process");
		goto fail;
	}
	snprintf(state_dir, sizeof state_dir, "%s/mail-state", ctx->data_dir);
	snprintf(maildir, sizeof maildir, "%s/mail", ctx->data_dir);
	mail_options_init(&mo);
	memcpy(mo.token_key, key, sizeof mo.token_key);
	mo.keys = keys;
	mo.smtp_url = set->smtp_url;
	mo.maildir = maildir;
	mo.from = set->from;
	mo.public_url = public_url;
	mo.state_dir = state_dir;
	mo.max_attempts = (unsigned)set->max_attempts;
	mo.sweep_after_ms = set->sweep_after_ms > 0 ? set->sweep_after_ms : -1;
	if ((rc = role_kinds_start(ctx->store, ctx->role->kinds, &set->act, &s->resends)) == ORN_OK)
		rc = mail_start(ctx->store, ctx->hub, &mo, &s->mail);
	sodium_memzero(mo.token_key, sizeof mo.token_key);
	if (rc == ORN_OK) {
		*handle = s;
		return ORN_OK;
	}
	log_error("cannot start the mail role", "error", orn_strerror(rc));
fail:
	mail_role_stop(s);
	return rc;
}

static bool mail_role_ready(const void *handle)
{
	const mail_role_state *s = handle;
	return s != NULL && mail_bound(s->mail);
}

static const char *const mail_aggregates[] = {MAIL_LOG_AGGREGATE, NULL};
static const char *const mail_streams[] = {KS_STREAM, NULL}; /* the keys that open recipients */
static const char *const mail_durables[] = {MAIL_CONSUMER, MAIL_ALERTS_CONSUMER, MAIL_RESENDS_CONSUMER,
                                            MAIL_ACCOUNTS_CONSUMER, NULL};
static const act_kind *const mail_kinds[] = {&mail_log_kind, NULL};

const role_descriptor mail_role = {
        .name = "mail",
        .summary = "sends the orders' emails, low-stock alerts and resends (SMTP or a Maildir)",
        .stage = ROLE_SENDS,
        .nats = {.appends = mail_aggregates,
                 .serves = mail_aggregates,
                 .durables = mail_durables,
                 .reads = true,
                 .reads_streams = mail_streams,
                 .never_sends = true},
        .kinds = mail_kinds,
        .settings = mail_settings_table,
        .settings_size = sizeof(mail_settings),
        .start = mail_role_start,
        .stop = mail_role_stop,
        .ready = mail_role_ready,
};
