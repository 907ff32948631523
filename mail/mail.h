/* mail.h — the mail actor: one email per (order, status), sent over SMTP
 * (libcurl) or written into a Maildir (ARCHITECTURE.md, "Payments and
 * mail"; ADR 007 item 6). The templates are in mail_render.h.
 *
 * Consuming. One durable JetStream pull consumer, "orion_mail", on ES_STREAM
 * with the filter orion.evt.order.>, explicit acks, unlimited deliveries and
 * an ack wait of 30 s; `workers` threads each own a pull subscription bound
 * to it and fetch one commit at a time. Several processes running the mail
 * role share the consumer. For an event that triggers an email the worker
 * rebuilds the order as it was right after the event (its events up to the
 * commit's stream sequence, folded with order_evolve): no state of its own
 * beyond the sent markers, so it is correct after any restart. Sweepers
 * (engine/sweep.h, ADR 007 addendum) go over every order commit that asks
 * for an email, and every LowStockDetected, sweep_after_ms after it, in
 * case the consumer lost it: an email the delivery log has settled is
 * skipped, one a worker attempted within sweep_after_ms is looked at again
 * later, any other is delivered.
 *
 * Exactly once, as far as SMTP allows. The sent marker of an email is the key
 * "<order id>/<status>" in an LMDB environment under state_dir:
 *   1. marker present -> ack the commit; nothing is sent;
 *   2. send (SMTP answered 250 to the data, or the file was renamed into
 *      Maildir new/);
 *   3. at once, write the marker and commit the LMDB transaction (MDB_NOSYNC:
 *      the commit is in the page cache, which a killed process cannot lose,
 *      in microseconds; an fsync would hold the window below open for
 *      milliseconds; a machine crash may lose recent markers and resend);
 *   4. ack the commit.
 * A redelivered commit (a lost ack, a restart, a second instance) finds the
 * marker and sends nothing. Within one process, a worker and the sweeper
 * never deliver the same email at once (an in-flight set, checked before 1:
 * the one that finds it taken retries later and finds it settled); without
 * it, both would find no marker while a slow server holds step 2, and both
 * would send. Two instances racing on one email can still both send (the
 * markers are per host). The one window left is a kill between 2 and 3:
 * the email went out, no marker was written, and the redelivered commit
 * sends it again. SMTP offers no idempotent submission, so the copy carries
 * the same deterministic Message-ID, <order-id.status@orion>, for receivers
 * to drop, and in Maildir mode the file name is deterministic per (order,
 * status), so the second copy replaces the first.
 *
 * TLS. An smtp_url with credentials (smtp://user:pass@host, smtps://...)
 * requires TLS (CURLUSESSL_ALL): smtps:// is TLS from the first byte, and an
 * smtp:// server that does not offer STARTTLS, or whose offer an attacker on
 * the path strips, gets no AUTH and no message; the send fails and is
 * retried like any other. An smtp_url without credentials uses TLS when the
 * server offers STARTTLS and goes on in clear when it does not
 * (CURLUSESSL_TRY), which suits a relay on loopback (and the tests' aiosmtpd).
 *
 * Delivery log (actors/mail_log.h, ADR 013). Every attempt is an event of
 * the email's mail aggregate, orion.evt.mail.<mail id>, the id derived from
 * the marker key: MailAttemptFailed per failed send, MailDelivered once sent,
 * MailFailed when the failed attempt number max_attempts is reached. Each
 * outcome is ONE commit appended with ExpectLastSubjectSeq = the log's
 * version and Nats-Msg-Id "<mail id>:<attempt>", so a redelivery or a second
 * instance never records an attempt twice (the loser of a race retries the
 * commit). Before sending, a settled log (delivered or failed) means nothing
 * to do, whichever instance settled it; a marker with a log that missed the
 * delivery (killed between the two) gets its MailDelivered then. The attempt
 * number is the log's, so it survives restarts and is shared by instances.
 *
 * SMTP down. A failed send is answered NakWithDelay(250 ms * 2^(deliveries-1),
 * capped at retry_max_ms) and the worker moves on to other commits at once:
 * no worker sleeps for a backoff. At the bound the email is marked failed
 * (MailFailed) and the commit acked: never dropped silently, and never
 * holding up other emails. A confirmation email is retried past the bound
 * (ceiling 30 s) until its order's deadline, and given up as soon as the order
 * no longer awaits confirmation (ADR 023).
 *
 * Resends (ADR 023). A third durable consumer, "orion_mail_resends" on
 * orion.evt.mail.>, served by one resend worker, sends an order email again
 * for each MailResendRequested (appended by the mail aggregate's actor kind,
 * mail_log_kind, on RequestResend): marker "<key>#r<generation>", Message-ID
 * <order.status.r<generation>@orion>.
 *
 * Low-stock alerts. A second durable consumer, "orion_mail_alerts", on
 * orion.evt.stock.> (nats-server 2.9: one filter per consumer), served by one
 * alert worker, acks every stock commit without a LowStockDetected at once.
 * For each LowStockDetected it (1) skips it if it repeats an open crossing of
 * the same product (an earlier LowStockDetected with no re-arm since: no
 * event took available back to the threshold or above, and no other
 * LowStock* event came), (2) catches its set of users up with
 * orion.evt.user.> (kept in memory, read incrementally up to the stream's
 * present), (3) folds the product's events for its sku and name, and (4)
 * sends one email to every admin through the same protocol, marker key
 * "low_stock/<product>/<seq>/<user key>" and kind "low_stock" in the log. Each worker owns one curl easy
 * handle with a connect timeout of 3 s and a total timeout of 10 s, far below the ack wait, so a commit is
 * never redelivered to another worker mid-send.
 *
 * Logs: every send at info, "mail sent" with order (or product, for an
 * alert), status (or low_stock), mail (the log's id), transport and
 * latency_ms (accepted time minus the event's at_ms); failures at warn, an
 * email failed for good at error. The
 * confirmation token never enters a log line, an event or LMDB. */
#ifndef ORION_MAIL_H
#define ORION_MAIL_H

#include <stdint.h>

#include "evstore.h"
#include "keystore.h"
#include "order_token.h"
#include "orn.h"

#define MAIL_CONSUMER               "orion_mail"
#define MAIL_ALERTS_CONSUMER        "orion_mail_alerts"
#define MAIL_RESENDS_CONSUMER       "orion_mail_resends"
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

/* Opens the markers, creates or updates the two consumers and starts the
 * workers (and the alert worker). The strings of o are copied; the store must outlive the service;
 * libsodium must be initialised. ORN_EINVAL for a missing state_dir, a
 * missing maildir without SMTP, or an unusable from or public_url;
 * ORN_EIO if a directory or the LMDB environment cannot be made;
 * ORN_EUNAVAILABLE (or another code) if JetStream refuses the consumer.
 * On failure nothing is left running and *out is NULL. */
orn_rc mail_start(es_store *store, const mail_options *o, mail_service **out);

/* Stops fetching, lets each worker finish the commit in hand, joins the
 * workers and frees everything. The consumer stays on the server. NULL ok. */
void mail_stop(mail_service *m);

#endif
