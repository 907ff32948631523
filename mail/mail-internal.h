/* mail-internal.h — what the mail role's files share: the service, a
 * worker's scratch space, one email as the delivery protocol sees it, and the
 * parts each file provides. Included by the mail role's .c files only. */
#ifndef ORION_MAIL_INTERNAL_H
#define ORION_MAIL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "hashmap.h"
#include "kit.h"
#include "mail.h"
#include "mail_log.h"
#include "mail_render.h"
#include "order.h"
#include "product.h"

#define MAIL_ACTOR         "mail"
#define MAIL_KEY_BYTES     (MAIL_KEY_MAX + 112) /* a sent marker's key, "#r<generation>" included */
#define MAIL_ORDER_SUBJECT "orion.evt.order."
#define MAIL_STOCK_SUBJECT "orion.evt.stock."

typedef struct mail_marks mail_marks;
typedef struct mail_transport mail_transport;
typedef struct mail_users mail_users;

typedef struct mail_service {
	es_store *store;
	kit_hub *hub;
	ks_store *keys; /* borrowed: opens the recipients (ADR 027) */
	char *smtp_url, *maildir, *from, *public_url, *state_dir;
	bool smtp_tls_required; /* the URL carries credentials */
	char envelope_from[ORDER_EMAIL_MAX];
	uint8_t token_key[ORDER_TOKEN_KEY_BYTES];
	unsigned retry_max_ms;
	unsigned max_attempts;
	unsigned workers;
	int64_t sweep_after_ms; /* > 0: the sweepers of order emails and of alerts */
	bool curl_ready;
	mail_marks *marks;
	mail_users *users; /* the alert worker's map of users */
	/* Emails being delivered in this process (key -> non-NULL): a worker and
	 * a sweeper never deliver the same email at once. */
	pthread_mutex_t inflight_lock;
	hmap *inflight;
	atomic_uint index; /* the next worker's number (Maildir temporary names) */
	kit_consumer *orders, *alerts, *resends, *accounts;
} mail_service;

/* A worker's things: one per kit thread. */
typedef struct mail_worker {
	mail_service *m;
	unsigned index;
	mail_transport *transport; /* its SMTP connection, kept open between emails */
	order_state *order;        /* rebuilt for each order email */
	order_event *event;
	product_state *product; /* alerts: the product of an alert */
	mail_log_state *log;    /* the delivery log, as last executed */
	mp_writer *payload;     /* a delivery log command */
	bool sweeping;          /* the commit in hand comes from the sweeper */
} mail_worker;

typedef enum mail_outcome {
	MAIL_DONE,  /* sent, already sent, or nothing to send */
	MAIL_RETRY, /* a dependency failed, or another instance is at it: later */
} mail_outcome;

/* One email as the delivery protocol sees it, whatever made it. */
typedef struct mail_email mail_email;

/* Renders an email into msg: ORN_OK, ORN_ENOMEM (retry) or another code (the
 * email can never be made: it is logged as failed). */
typedef orn_rc mail_render_fn(mail_worker *w, const mail_email *e, void *closure, mail_message *msg);

/* Whether the email still matters now (a confirmation: its order still
 * awaits one); false ends it as failed. */
typedef bool mail_matters_fn(mail_worker *w, const mail_email *e);

struct mail_email {
	char key[MAIL_KEY_BYTES]; /* the sent marker: the log key, plus "#r<generation>" for a resend */
	char log_key[MAIL_KEY_MAX + 96]; /* the delivery log's id derives from it ("": key) */
	uint32_t generation;             /* 0, or the resend this delivery is (mail_log.h) */
	int64_t deadline_ms;             /* > 0: retried until then, whatever the attempt bound */
	mail_matters_fn *matters;        /* NULL: always */
	char file[MAIL_KEY_BYTES];       /* Maildir file name without ".orion": fixed per email */
	mail_log_subject subject;        /* what the delivery log records */
	const char *label;               /* status name or "low_stock": logs and metrics */
	const char *ref_name;            /* "order" or "product": the key of ref in log lines */
	const char *ref;                 /* the order or product id: logs */
	uint64_t seq;                    /* the triggering commit */
	int64_t event_ms;                /* at_ms of the triggering event */
	const char *correlation;         /* of the triggering event */
	const char *to;                  /* the recipient's address, opened (ADR 027) */
	mail_render_fn *render;
	void *closure; /* render's */
};

/* ---- mail_deliver.c: the protocol of one email (mail.h) ---- */

/* Delivers e unless this process or another instance is at it already:
 * sent marker, claim in the delivery log, render, send, marker, outcome. */
mail_outcome mail_deliver(mail_worker *w, const mail_email *e);

/* Opens a recipient as its event holds it (field of a sealed token; clear
 * before ADR 027) into out. ORN_ENOTFOUND if its key is gone: the customer
 * was erased, nothing is sent. */
orn_rc mail_open_recipient(mail_service *m, const char *token, const char *field, char *out, size_t cap);

/* The delivery log of key (its id derived from key) as it stands: *settled
 * whether it ended for the sending of generation. */
orn_rc mail_log_settled(mail_worker *w, const char *key, uint32_t generation, bool *settled);

/* ---- mail_orders.c: order status emails and resends ---- */

kit_verdict mail_order_commit(void *worker, const kit_commit *c);
kit_verdict mail_resend_commit(void *worker, const kit_commit *c);
/* Whether a delivery log event asks for a resend (MailResendRequested). */
bool mail_resend_wants(void *closure, const env_envelope *e);
/* Whether an order event asks for an email (the sweeper's filter). */
bool mail_order_wants(void *closure, const env_envelope *e);

/* ---- mail_accounts.c: verification, "account exists" and reset emails (ADR 031) ---- */

kit_verdict mail_account_commit(void *worker, const kit_commit *c);
/* Whether a user event asks for an email. */
bool mail_account_wants(void *closure, const env_envelope *e);

/* ---- mail_alerts.c: low-stock alerts to every admin ---- */

orn_rc mail_users_create(mail_users **out);
void mail_users_destroy(mail_users *u);
kit_verdict mail_alert_commit(void *worker, const kit_commit *c);
bool mail_alert_wants(void *closure, const env_envelope *e);

/* ---- mail_transport.c: SMTP (one connection per worker, reused) and Maildir ---- */

orn_rc mail_transport_create(const mail_service *m, unsigned index, mail_transport **out);
void mail_transport_destroy(mail_transport *t);
/* Sends msg to `to` (SMTP) or writes it as file (Maildir): ORN_OK once the
 * server accepted it (250) or the file was renamed into new/; the error text
 * (no URL, no credentials) goes into detail. */
orn_rc mail_transport_send(mail_transport *t, const char *to, const char *file, const mail_message *msg,
                           char *detail, size_t cap);
/* "smtp" or "maildir". */
const char *mail_transport_name(const mail_service *m);

/* ---- mail_marks.c: the sent markers (LMDB, per host) ---- */

orn_rc mail_marks_open(const char *dir, mail_marks **out);
void mail_marks_close(mail_marks *marks);
/* ORN_OK if key's marker exists (*sent_ms: when it went out), ORN_ENOTFOUND if not. */
orn_rc mail_marks_get(mail_marks *marks, const char *key, int64_t *sent_ms);
/* Writes key's marker (the triggering commit, the time it went out) and commits. */
orn_rc mail_marks_put(mail_marks *marks, const char *key, uint64_t seq, int64_t sent_ms);

#endif
