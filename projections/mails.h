/* mails.h — the mail delivery log read model ("mail"): one row per email.
 *
 * Fed by the mail aggregate's events (MailAttemptFailed, MailDelivered,
 * MailFailed) on orion.evt.mail.<mail id> (actors/mail_log.h), folded with
 * the aggregate's own mail_log_evolve, it keeps per email its order (or the
 * product of a low-stock alert), kind, recipient, attempts, last error,
 * delivered time and state (pending, delivered, failed), and answers
 * GET /admin/mail?order_id=&status=&limit=&cursor= : emails in mail id order,
 * optionally only one order's and/or one state's, a page of 1..100 at a
 * time with an opaque cursor (proj_cursor.h). */
#ifndef ORION_PROJ_MAILS_H
#define ORION_PROJ_MAILS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "mail_log.h"
#include "orn.h"
#include "proj_cursor.h"
#include "proj_env.h"
#include "projector.h"

#define PROJ_MAIL_NAME     "mail"
#define PROJ_MAIL_FILTER   "orion.evt.>" /* the mail log's, and CustomerErased (ADR 027) */
#define PROJ_MAIL_PAGE_MAX 100

/* One email of the log. */
typedef struct proj_mail_entry {
	char id[MAIL_LOG_ID_MAX];
	mail_log_state
	        log;      /* status, subject (order/product, kind, recipient), attempts, last error, times */
	uint64_t version; /* stream sequence of the last event applied */
} proj_mail_entry;

typedef struct proj_mail proj_mail;

/* Creates the model over env and opens (creating) its sub-databases.
 * *out is owned by the caller: proj_mail_destroy after the runner that feeds
 * it has stopped. */
orn_rc proj_mail_create(proj_env *env, proj_mail **out);
void proj_mail_destroy(proj_mail *m);

/* The projection definition to hand to proj_runner_start (owned by m). */
const proj_def *proj_mail_def(proj_mail *m);

/* One email by mail id (out param). ORN_ENOTFOUND if absent, ORN_EINVAL for
 * an invalid id. */
orn_rc proj_mail_get(proj_mail *m, const char *id, proj_mail_entry *out);

typedef struct proj_mail_query {
	const char *order_id; /* NULL or "": every order's (and the alerts) */
	bool has_status;      /* only emails in status */
	mail_log_status status;
	unsigned limit;     /* 1..PROJ_MAIL_PAGE_MAX */
	const char *cursor; /* NULL or "" for the first page */
} proj_mail_query;

typedef struct proj_mail_page {
	proj_mail_entry items[PROJ_MAIL_PAGE_MAX];
	size_t count;
	char next_cursor[PROJ_CURSOR_MAX]; /* "" when there is no next page */
} proj_mail_page;

/* One page in mail id order (out param, caller-owned, ~60 KB: callers may
 * heap-allocate it). ORN_EINVAL for a limit out of range, an invalid order id
 * or a cursor this module did not write. */
orn_rc proj_mail_list(proj_mail *m, const proj_mail_query *q, proj_mail_page *out);

typedef struct proj_mail_stats {
	uint64_t undecodable; /* mail events whose payload did not decode, logged and skipped */
} proj_mail_stats;

void proj_mail_stats_get(proj_mail *m, proj_mail_stats *out);

#endif
