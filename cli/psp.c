/* psp.c — `orion psp-sandbox`: runs the card payment provider sandbox
 * (psp/psp_sandbox.h) alone, in the foreground, until SIGINT or SIGTERM.
 *
 *   orion psp-sandbox [--listen ADDR] [--key KEY] [--state FILE] [--silent-hold-ms MS]
 *                     [--publishable-key KEY] [--webhook-url URL] [--webhook-secret SECRET]
 *                     [--cors-origins LIST] [--public-url URL]
 *
 * --listen defaults to 127.0.0.1:0 (a free port), --key to ORION_PSP_KEY,
 * --publishable-key to ORION_PSP_PUBLISHABLE_KEY, --webhook-secret to
 * ORION_PSP_WEBHOOK_SECRET, --webhook-url to ORION_PSP_WEBHOOK_URL (unset:
 * events are kept, not sent), --cors-origins to ORION_CORS_ORIGINS,
 * --public-url to ORION_PSP_PUBLIC_URL.
 * Once listening it prints "PSP sandbox listening on http://HOST:PORT" on
 * stdout (flushed), for scripts and tests to read the port from. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"
#include "psp_sandbox.h"

static void psp_usage(FILE *out)
{
	fprintf(out, "usage: orion psp-sandbox [--listen HOST:PORT] [--key KEY] [--state FILE]\n"
	             "                          [--silent-hold-ms MS] [--publishable-key KEY]\n"
	             "                          [--webhook-url URL] [--webhook-secret SECRET]\n"
	             "                          [--cors-origins LIST] [--public-url URL]\n"
	             "  --listen           address to serve on (default 127.0.0.1:0, a free port)\n"
	             "  --key              the API key servers must send as a Bearer token\n"
	             "                     (default ORION_PSP_KEY)\n"
	             "  --state            append payment methods (never a card number), intents,\n"
	             "                     refunds, webhook events and idempotency records to FILE\n"
	             "                     and reload them at start (default: in memory)\n"
	             "  --silent-hold-ms   how long the silent card 4000000000000309 holds its\n"
	             "                     connection before closing it unanswered (default 120000)\n"
	             "  --publishable-key  the key browsers use for POST /v1/payment_methods\n"
	             "                     (default ORION_PSP_PUBLISHABLE_KEY)\n"
	             "  --webhook-url      http:// URL the signed events are POSTed to\n"
	             "                     (default ORION_PSP_WEBHOOK_URL; unset: kept, not sent)\n"
	             "  --webhook-secret   the webhook signing secret (default ORION_PSP_WEBHOOK_SECRET)\n"
	             "  --cors-origins     comma-separated origins allowed to create payment methods\n"
	             "                     from a browser (default ORION_CORS_ORIGINS)\n"
	             "  --public-url       base of the 3-D Secure page's URL\n"
	             "                     (default ORION_PSP_PUBLIC_URL, else http://127.0.0.1:PORT)\n"
	             "  -h, --help         this text\n");
}

static bool parse_ms(const char *text, unsigned *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v == 0 || v > 86400000UL)
		return false;
	*out = (unsigned)v;
	return true;
}

int cli_psp_sandbox(int argc, char **argv, const cli_config *cfg)
{
	psp_sandbox_options o;
	psp_settings settings;
	const char *bad = NULL;
	if (orn_settings_load(psp_role.settings, &settings, &bad) != ORN_OK) {
		fprintf(stderr, "orion psp-sandbox: invalid value in %s\n", bad);
		return 2;
	}
	psp_sandbox_options_init(&o);
	o.api_key = settings.key;
	o.publishable_key = settings.publishable_key;
	o.webhook_secret = settings.webhook_secret;
	o.webhook_url = settings.webhook_url;
	o.cors_origins = cfg->cors_origins;
	o.public_url = settings.public_url;
	for (int i = 0; i < argc; i++) {
		bool has_value = i + 1 < argc;
		if (strcmp(argv[i], "--listen") == 0 && has_value) {
			o.listen = argv[++i];
		} else if (strcmp(argv[i], "--key") == 0 && has_value) {
			o.api_key = argv[++i];
		} else if (strcmp(argv[i], "--state") == 0 && has_value) {
			o.state_file = argv[++i];
		} else if (strcmp(argv[i], "--silent-hold-ms") == 0 && has_value) {
			if (!parse_ms(argv[++i], &o.silent_hold_ms)) {
				fprintf(stderr, "orion psp-sandbox: --silent-hold-ms needs 1..86400000\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--publishable-key") == 0 && has_value) {
			o.publishable_key = argv[++i];
		} else if (strcmp(argv[i], "--webhook-url") == 0 && has_value) {
			o.webhook_url = argv[++i];
		} else if (strcmp(argv[i], "--webhook-secret") == 0 && has_value) {
			o.webhook_secret = argv[++i];
		} else if (strcmp(argv[i], "--cors-origins") == 0 && has_value) {
			o.cors_origins = argv[++i];
		} else if (strcmp(argv[i], "--public-url") == 0 && has_value) {
			o.public_url = argv[++i];
		} else if (cli_is_help(argv[i])) {
			psp_usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "orion psp-sandbox: unknown option '%s'\n", argv[i]);
			psp_usage(stderr);
			return 2;
		}
	}
	if (o.api_key == NULL || o.api_key[0] == '\0') {
		fprintf(stderr, "orion psp-sandbox: the API key is empty (--key or ORION_PSP_KEY)\n");
		return 2;
	}
	/* The host part as given, brackets of an IPv6 address included. */
	const char *colon = strrchr(o.listen, ':');
	if (colon == NULL) {
		fprintf(stderr, "orion psp-sandbox: --listen needs HOST:PORT\n");
		return 2;
	}
	/* Block the stop signals in every thread; this one waits for them. */
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	psp_sandbox *sandbox = NULL;
	orn_rc rc = psp_sandbox_start(&o, &sandbox);
	if (rc != ORN_OK) {
		fprintf(stderr, "orion psp-sandbox: cannot start: %s\n", orn_strerror(rc));
		return rc == ORN_EINVAL ? 2 : 1;
	}
	printf("PSP sandbox listening on http://%.*s:%u\n", (int)(colon - o.listen), o.listen,
	       (unsigned)psp_sandbox_port(sandbox));
	fflush(stdout);
	log_info("psp sandbox started", "state", o.state_file != NULL ? o.state_file : "memory");
	int sig = 0;
	sigwait(&stop_signals, &sig);
	log_info("stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
	psp_sandbox_stop(sandbox);
	return 0;
}
