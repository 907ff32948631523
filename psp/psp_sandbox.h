/* psp_sandbox.h — the card payment provider sandbox: a Stripe-style HTTP API
 * on libevent's evhttp (ADR 009 section 1 is its contract).
 *
 * Routes (all need "Authorization: Bearer <api_key>", else 401):
 *   POST /v1/charges          form: amount, currency, card[number],
 *                             card[exp_month], card[exp_year], card[cvc],
 *                             card[name], optional description and
 *                             metadata[order_id] -> 200 charge, 402 card
 *                             error (a failed charge), 400 bad input
 *   GET  /v1/charges          ?metadata[order_id]=X: {"object":"list",
 *                             "data":[...]} newest first (all without it)
 *   GET  /v1/charges/{id}     the charge, or 404 resource_missing
 *   POST /v1/refunds          form: charge -> 200 refund (full amount); 400
 *                             charge_already_refunded; 400 parameter_invalid
 *                             for a failed charge; 404 resource_missing
 * Every answer is JSON (Content-Type: application/json) with a Request-Id
 * header. Bodies above 16 KiB: 413. Unknown paths 404, other methods 405.
 *
 * Idempotency (POSTs with an Idempotency-Key header, 1..255 printable
 * ASCII): the first response that created an object (200 or 402) is stored
 * with the SHA-256 of the request's canonical parameters (psp_form.h); the
 * same key with the same parameters returns it again, status and body
 * byte for byte, with "Idempotent-Replayed: true"; with other parameters
 * (or on the other endpoint) 400 idempotency_error; while the first request
 * is held (the silent card) 409 idempotency_error / idempotency_key_in_use.
 * Answers that created nothing (400, 401, 404) are not stored: the request
 * can be corrected and sent again with the same key, as with Stripe.
 *
 * The silent card, 4000000000000309: the charge is created as succeeded at
 * once (it shows in the list and by id) and the connection is held without
 * an answer for silent_hold_ms, then closed (or at stop). Its stored
 * idempotent response is the 200 with that charge: once the hold has ended,
 * a retry with the same key and parameters gets it, replayed, so a client
 * that gave up learns that the charge happened (ADR 009 section 4).
 *
 * State. With state_file, every charge, refund and idempotency record is
 * appended as one JSON line when it is made, and the file is read back at
 * start (a torn last line is skipped): charges, refunds and replays survive
 * a restart. A charge held silent when the process died is replayed as a
 * 200 after the restart. The state holds brand, last 4 and expiry of cards,
 * never a number, a CVC or a holder name; requests are never logged with
 * their parameters.
 *
 * Threads: the sandbox runs its own event_base on its own thread; all state
 * lives on that thread. start and stop are called from one other thread. */
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
} psp_sandbox_options;

/* Fills o with the defaults: listen "127.0.0.1:0", no key, no state file,
 * silent_hold_ms 120000. */
void psp_sandbox_options_init(psp_sandbox_options *o);

typedef struct psp_sandbox psp_sandbox;

/* Binds, loads the state file, and serves on its own thread (own
 * event_base). The option strings are copied. ORN_EINVAL for a bad listen
 * address or an empty api_key; ORN_EUNAVAILABLE if the address cannot be
 * bound; ORN_EIO if the state file cannot be opened or read. On failure
 * *out is NULL and nothing runs. */
orn_rc psp_sandbox_start(const psp_sandbox_options *o, psp_sandbox **out);

/* The bound TCP port. */
uint16_t psp_sandbox_port(const psp_sandbox *s);

/* Stops the loop, joins, closes the held connections, frees. NULL ok. */
void psp_sandbox_stop(psp_sandbox *s);

/* The role "psp" (role.h, psp_role.c): the sandbox in an `orion serve`
 * process, started only when ORION_PSP_URL is unset (a real provider needs
 * no sandbox), its charges kept in <data dir>/psp-sandbox.jsonl. It offers
 * its base URL (a string, "http://127.0.0.1:<port>") as PSP_OFFERS_URL. Its
 * settings fill a psp_settings. */
#define PSP_OFFERS_URL "psp_url"

typedef struct psp_settings {
	char url[ORN_CONFIG_STR_MAX]; /* ORION_PSP_URL: a provider elsewhere; "": the sandbox */
	char key[ORN_CONFIG_STR_MAX]; /* ORION_PSP_KEY: the API key */
} psp_settings;

extern const role_descriptor psp_role;

#endif
