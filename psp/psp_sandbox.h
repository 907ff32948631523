/* psp_sandbox.h — the card payment provider sandbox: a Stripe-shaped HTTP
 * API on libevent's evhttp. ADR 028 section 1 is its contract (ADR 009
 * section 1 for the idempotency it keeps; its charge API is gone).
 *
 * Routes ("Authorization: Bearer <key>", else 401; the publishable key only
 * on /v1/payment_methods, 401 elsewhere):
 *   POST /v1/payment_methods       publishable or secret key; CORS (below)
 *   GET  /v1/payment_methods/{id}  the payment method (brand, last 4, expiry:
 *                                  what the merchant records), 404
 *                                  resource_missing
 *   POST /v1/payment_intents       confirm at creation: 200 succeeded or
 *                                  requires_action (3-D Secure), 402 with
 *                                  error.payment_intent when declined; the
 *                                  silent card's connection is held
 *   GET  /v1/payment_intents[/{id}] ?metadata[order_id]=X, newest first
 *   POST /v1/refunds               payment_intent[, amount]; any other
 *                                  parameter (charge too): 400
 *                                  parameter_unknown
 *   GET  /v1/events                ?type=&limit= (1..100, default 10),
 *                                  newest first, with delivery_count (tries
 *                                  made) and delivered
 *   GET, POST /v1/3ds/{pi}         the challenge page, no key (a browser)
 * JSON answers with a Request-Id header; bodies above 16 KiB: 413.
 *
 * Idempotency-Key on every POST but the 3-D Secure form: the first answer
 * that created something is replayed byte for byte ("Idempotent-Replayed:
 * true"); other parameters or another endpoint: 400 idempotency_error;
 * while the silent card's request is held: 409. Answers that created
 * nothing (400, 401, 404) are not kept.
 *
 * CORS (POST /v1/payment_methods only): an Origin in cors_origins gets
 * Access-Control-Allow-Origin echoing it (and, on the OPTIONS preflight,
 * the allowed methods and the headers Authorization and Content-Type);
 * every answer there has "Vary: Origin"; other origins get no CORS header.
 *
 * Webhooks: each outcome (payment_intent.succeeded, .payment_failed,
 * charge.refunded, charge.refund.updated for a failed refund) is one event
 * with a stable id, POSTed to webhook_url with "Orion-PSP-Signature:
 * t=<unix s>,v1=<hex HMAC-SHA256(webhook_secret, t "." body)>", retried
 * until a 2xx, 0.5 s after the first failure, doubling, at most 30 s apart.
 *
 * State. With state_file, payment methods, intents (each change), refunds,
 * events and their delivery counts and idempotency records are appended as
 * JSON lines and read back at start (a torn last line is skipped, and so
 * are the charge lines older sandboxes wrote); undelivered events are sent
 * again. A card number, a CVC or a
 * holder name never reaches the file or a log line: payment methods keep
 * brand, last 4, expiry and the test card's behaviour.
 *
 * Threads: the sandbox runs its own event_base on its own thread, webhook
 * deliveries included (evhttp's client, never blocking the loop); all state
 * lives on that thread. start, set_site and stop are called from others. */
#ifndef ORION_PSP_SANDBOX_H
#define ORION_PSP_SANDBOX_H

#include <stdint.h>

#include "orn.h"
#include "role.h"

typedef struct psp_sandbox_options {
	const char *listen;      /* "127.0.0.1:0" picks a free port */
	const char *api_key;     /* required */
	const char *state_file;  /* NULL: state in memory; else JSON lines appended and reloaded at start */
	unsigned silent_hold_ms; /* how long the silent card's connection is held before the sandbox
	                            closes it without an answer; default 120000 */
	const char *publishable_key; /* NULL or "": only the secret key creates payment methods */
	const char *webhook_url;     /* http:// URL events are POSTed to; NULL or "": kept, not sent */
	const char *webhook_secret;  /* signs the webhooks; required with webhook_url */
	const char *cors_origins;    /* comma-separated exact origins (scheme://host[:port]) allowed to
	                                call POST /v1/payment_methods from a browser; NULL: none */
	const char *public_url;      /* base of the 3-D Secure page URL; NULL or "":
	                                http://127.0.0.1:<port> */
} psp_sandbox_options;

/* Fills o with the defaults: listen "127.0.0.1:0", no key, no state file,
 * silent_hold_ms 120000, no publishable key, no webhooks, no CORS origin,
 * the public URL from the bound port. */
void psp_sandbox_options_init(psp_sandbox_options *o);

typedef struct psp_sandbox psp_sandbox;

/* Binds, loads the state file, and serves on its own thread (own
 * event_base); webhooks not yet delivered when the state was written are
 * sent again. The option strings are copied. ORN_EINVAL for a bad listen
 * address, an empty api_key, a webhook_url that is not an http:// URL or
 * one without a webhook_secret; ORN_EUNAVAILABLE if the address cannot be
 * bound; ORN_EIO if the state file cannot be opened or read. On failure
 * *out is NULL and nothing runs. */
orn_rc psp_sandbox_start(const psp_sandbox_options *o, psp_sandbox **out);

/* Changes, from any thread, where webhooks go and which origins get CORS
 * headers (for a process whose public URL is known only once its gateway
 * is bound). webhook_url: an http:// URL, "" for none, NULL to keep it;
 * cors_origins: as in the options, NULL to keep them. Takes effect on the
 * sandbox's thread shortly after; undelivered events are tried at once.
 * ORN_EINVAL for a URL that is not http://; ORN_ENOMEM. */
orn_rc psp_sandbox_set_site(psp_sandbox *s, const char *webhook_url, const char *cors_origins);

/* The bound TCP port. */
uint16_t psp_sandbox_port(const psp_sandbox *s);

/* Stops the loop, joins, closes the held connections, frees. NULL ok. */
void psp_sandbox_stop(psp_sandbox *s);

/* The role "psp" (role.h, psp_role.c): the sandbox in an `orion serve`
 * process, started only when ORION_PSP_URL is unset (a real provider needs
 * no sandbox), its state kept in <data dir>/psp-sandbox.jsonl. It offers
 * its base URL (a string, "http://127.0.0.1:<port>") as PSP_OFFERS_URL. It
 * asks the process for its public URL (PSP_NEEDS_PUBLIC_URL: webhooks go to
 * <public URL>/api/v1/webhooks/psp unless ORION_PSP_WEBHOOK_URL says otherwise, and
 * the URL's origin gets CORS) and ORION_CORS_ORIGINS (PSP_NEEDS_CORS_ORIGINS,
 * a comma-separated string). Its settings fill a psp_settings. */
#define PSP_OFFERS_URL         "psp_url"
#define PSP_NEEDS_PUBLIC_URL   "public_url"
#define PSP_NEEDS_CORS_ORIGINS "cors_origins"

typedef struct psp_settings {
	char url[ORN_CONFIG_STR_MAX];             /* ORION_PSP_URL: a provider elsewhere; "": the sandbox */
	char key[ORN_CONFIG_STR_MAX];             /* ORION_PSP_KEY: the API key */
	char publishable_key[ORN_CONFIG_STR_MAX]; /* ORION_PSP_PUBLISHABLE_KEY */
	char webhook_secret[ORN_CONFIG_STR_MAX];  /* ORION_PSP_WEBHOOK_SECRET */
	char webhook_url[ORN_CONFIG_STR_MAX];     /* ORION_PSP_WEBHOOK_URL; "": from the public URL */
	char public_url[ORN_CONFIG_STR_MAX];      /* ORION_PSP_PUBLIC_URL; "": http://127.0.0.1:<port> */
} psp_settings;

extern const role_descriptor psp_role;

/* Tells a running psp role (its handle, NULL ok) the process's public URL
 * once it is final (the gateway bound, port 0 resolved): a defaulted
 * webhook URL and the public origin's CORS follow it. */
void psp_role_public_url(void *handle, const char *public_url);

#endif
