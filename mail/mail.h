/* mail.h — the mail role: one email per (order, status), a low-stock alert
 * per admin, and resends on request, sent over SMTP (libcurl) or written into
 * a Maildir (ARCHITECTURE.md, "Payments and mail"). The templates are in
 * mail_render.h; the protocol is in ADR 008 (tokens and markers), ADR 013 (the
 * delivery log), ADR 023 (resends) and ADR 024 (claims across hosts).
 *
 * Four handlers on the engine's kit (kit.h): the durable consumers
 * orion_mail (orion.evt.order.>), orion_mail_alerts (orion.evt.stock.>; one
 * filter per consumer on nats-server 2.9), orion_mail_resends
 * (orion.evt.mail.>) and orion_mail_accounts (orion.evt.user.>: the
 * verification, "account exists" and password-reset emails, ADR 031), shared
 * by every instance; the first two with a sweeper for the commits a consumer
 * may lose. Each email is claimed in its delivery
 * log before it is sent, so two instances on two hosts never send it twice;
 * a sent marker per host (LMDB under state_dir) closes the window between the
 * server's acceptance and the log. The Message-ID is deterministic
 * (<order-id.status@orion>) for receivers to drop the copy the one window left
 * may send (a kill between the server's 250 and the marker).
 *
 * TLS: an smtp_url with credentials (smtp://user:pass@host, smtps://...)
 * requires TLS (CURLUSESSL_ALL); one without uses STARTTLS when offered
 * (CURLUSESSL_TRY), which suits a relay on loopback.
 *
 * Logs: every send at info, "mail sent" with order (or product), status (or
 * low_stock), transport and latency_ms (accepted time minus the event's
 * at_ms). The confirmation token never enters a log line, an event or LMDB. */
#ifndef ORION_MAIL_H
#define ORION_MAIL_H

#include <stdint.h>

#include "keystore.h"
#include "kit.h"
#include "order_token.h"
#include "orn.h"
#include "role.h"

#define MAIL_CONSUMER               "orion_mail"
#define MAIL_ALERTS_CONSUMER        "orion_mail_alerts"
#define MAIL_RESENDS_CONSUMER       "orion_mail_resends"
#define MAIL_ACCOUNTS_CONSUMER      "orion_mail_accounts"
#define MAIL_MAX_ATTEMPTS_DEFAULT   20
#define MAIL_SWEEP_AFTER_MS_DEFAULT 40000 /* after the consumer's AckWait (30 s) */

typedef struct mail_options {
	const char *smtp_url;   /* NULL or "": write to the Maildir instead; else smtp://host:port or
	                           smtps://user:pass@host; credentials require TLS (see above) */
	const char *maildir;    /* Maildir root used when smtp_url is empty (tmp/ new/ cur/ created) */
	const char *from;       /* sender address */
	const char *public_url; /* base of links, no trailing slash, e.g. http://127.0.0.1:8080 */
	uint8_t token_key[ORDER_TOKEN_KEY_BYTES]; /* actors/order_token.h */
	ks_store *keys; /* borrowed, outlives the service: opens the sealed recipients (ADR 027); NULL: only
	                   clear recipients (logs written before it) can be sent to */
	const char *state_dir;  /* LMDB directory of the sent markers; created if absent; required */
	unsigned workers;       /* default 4 */
	unsigned retry_max_ms;  /* backoff ceiling while SMTP fails; default 5000 */
	unsigned max_attempts;  /* attempts per email before it is marked failed; default 20, 0 = 20 */
	int64_t sweep_after_ms; /* the order emails' sweeper (sweep.h): default MAIL_SWEEP_AFTER_MS_DEFAULT,
	                           < 0: none */
} mail_options;

/* Fills o with the defaults: no SMTP, no directories, from
 * "orion@localhost", public_url "http://127.0.0.1:8080", a zero key,
 * 4 workers, retry_max_ms 5000, max_attempts 20. */
void mail_options_init(mail_options *o);

typedef struct mail_service mail_service;

/* Opens the markers, creates or updates the three consumers and starts their
 * workers. The strings of o are copied; store (the role's connection) and hub
 * must outlive the service; libsodium must be initialised. Some possible
 * errors are: ORN_EINVAL (a missing state_dir, a missing maildir without
 * SMTP, an unusable from or public_url), ORN_EIO (a directory or the LMDB
 * environment cannot be made), ORN_EUNAVAILABLE (JetStream refuses a
 * consumer). On failure nothing is left running and *out is NULL. */
orn_rc mail_start(es_store *store, kit_hub *hub, const mail_options *o, mail_service **out);

/* Stops pulling, lets each worker finish the commit in hand, joins the
 * workers and frees everything. The consumers stay on the server. NULL ok. */
void mail_stop(mail_service *m);

/* True once every consumer has a worker pulling from it; false for NULL. */
bool mail_bound(const mail_service *m);

/* What the role asks its process for (role_context.offer): the orders'
 * token key (ORDER_TOKEN_KEY_BYTES bytes, derived from the gateway's signing
 * secret, ADR 008), the base of the links (a string, no trailing slash) and
 * the keystore that opens the recipients (a ks_store, ADR 027). */
#define MAIL_NEEDS_TOKEN_KEY  "token_key"
#define MAIL_NEEDS_PUBLIC_URL "public_url"
#define MAIL_NEEDS_KEYS       "keys"

/* The role "mail" (role.h, mail_role.c): the service above and RequestResend
 * on the delivery logs; its settings ORION_SMTP_URL, ORION_MAIL_FROM,
 * ORION_MAIL_MAX_ATTEMPTS, ORION_SWEEP_AFTER_MS and the runtime's; Maildir and
 * markers under its data directory. */
extern const role_descriptor mail_role;

#endif
