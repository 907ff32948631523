/* mail.c — the mail role's life (see mail.h): options, directories, the sent
 * markers, and its four handlers registered on the kit. The handlers are in
 * mail_orders.c (order emails, resends), mail_alerts.c (low stock) and
 * mail_accounts.c (verification, "account exists", reset links); every
 * email goes through mail_deliver.c; mail_transport.c sends it.
 *
 * Threads: the kit's. Each worker owns its SMTP connection (kept open),
 * scratch order and delivery-log states; workers share the store, the
 * markers (MDB_NOTLS; LMDB serialises the writers), the in-flight set and the
 * map of users (each under its lock). */
#include "mail-internal.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsdir.h"
#include "log.h"

#define ORDERS_FILTER    "orion.evt.order.>"
#define ALERTS_FILTER    "orion.evt.stock.>"
#define RESENDS_FILTER   "orion.evt.mail.>"
#define ACCOUNTS_FILTER  "orion.evt.user.>"
#define ACK_WAIT_MS      30000
#define RETRY_FIRST_MS   250
#define LONG_RETRY_MS    30000 /* backoff ceiling once an email outlived its attempt bound (a confirmation) */
#define WORKERS_MAX      64
#define MAILDIR_PATH_MAX 4096

void mail_options_init(mail_options *o)
{
	memset(o, 0, sizeof *o);
	o->from = "orion@localhost";
	o->public_url = "http://127.0.0.1:8080";
	o->workers = 4;
	o->retry_max_ms = 5000;
	o->max_attempts = MAIL_MAX_ATTEMPTS_DEFAULT;
}

static orn_rc make_maildir(const char *root)
{
	static const char *const subdirs[] = {"tmp", "new", "cur"};
	char path[MAILDIR_PATH_MAX];
	orn_rc rc = orn_make_dirs(root);
	for (size_t i = 0; rc == ORN_OK && i < ORN_ARRAY_LEN(subdirs); i++) {
		if ((size_t)snprintf(path, sizeof path, "%s/%s", root, subdirs[i]) >= sizeof path)
			return ORN_EINVAL;
		rc = orn_make_dirs(path);
	}
	return rc;
}

/* ---- workers: one per kit thread ---- */

static void worker_destroy(void *arg)
{
	mail_worker *w = arg;
	if (w == NULL)
		return;
	mail_transport_destroy(w->transport);
	free(w->order);
	free(w->event);
	free(w->product);
	free(w->log);
	mp_writer_destroy(w->payload);
	free(w);
}

static void *worker_create(void *closure)
{
	mail_service *m = closure;
	mail_worker *w = calloc(1, sizeof *w);
	if (w == NULL)
		return NULL;
	w->m = m;
	w->index = atomic_fetch_add(&m->index, 1);
	w->order = malloc(sizeof *w->order);
	w->event = malloc(sizeof *w->event);
	w->product = malloc(sizeof *w->product);
	w->log = malloc(sizeof *w->log);
	w->payload = mp_writer_create();
	if (w->order == NULL || w->event == NULL || w->product == NULL || w->log == NULL ||
	    w->payload == NULL || mail_transport_create(m, w->index, &w->transport) != ORN_OK) {
		worker_destroy(w);
		return NULL;
	}
	return w;
}

/* ---- options ---- */

static char *copy(const char *s, orn_rc *rc)
{
	char *c = s != NULL ? strdup(s) : NULL;
	if (s != NULL && c == NULL)
		*rc = ORN_ENOMEM;
	return c;
}

static orn_rc options_take(mail_service *m, const mail_options *o)
{
	orn_rc rc = ORN_OK;
	bool smtp = o->smtp_url != NULL && o->smtp_url[0] != '\0';
	if (o->state_dir == NULL || o->state_dir[0] == '\0' ||
	    (!smtp && (o->maildir == NULL || o->maildir[0] == '\0')) ||
	    !mail_header_value_valid(o->public_url) ||
	    mail_address_of(o->from, m->envelope_from, sizeof m->envelope_from) != ORN_OK)
		return ORN_EINVAL;
	m->smtp_url = smtp ? copy(o->smtp_url, &rc) : NULL;
	m->smtp_tls_required = smtp && mail_smtp_url_has_credentials(o->smtp_url);
	m->maildir = smtp ? NULL : copy(o->maildir, &rc);
	m->from = copy(o->from, &rc);
	m->public_url = copy(o->public_url, &rc);
	for (size_t n = m->public_url != NULL ? strlen(m->public_url) : 0;
	     n > 0 && m->public_url[n - 1] == '/'; n--)
		m->public_url[n - 1] = '\0'; /* links are "<public_url>/api/v1/..." */
	m->state_dir = copy(o->state_dir, &rc);
	memcpy(m->token_key, o->token_key, sizeof m->token_key);
	m->retry_max_ms = o->retry_max_ms > 0 ? o->retry_max_ms : 5000;
	m->max_attempts = o->max_attempts > 0 ? o->max_attempts : MAIL_MAX_ATTEMPTS_DEFAULT;
	m->workers = o->workers == 0 ? 4 : o->workers > WORKERS_MAX ? WORKERS_MAX : o->workers;
	m->sweep_after_ms = o->sweep_after_ms == 0 ? MAIL_SWEEP_AFTER_MS_DEFAULT : o->sweep_after_ms;
	return rc;
}

/* ---- the consumers ---- */

/* One of the role's consumers: its own part of the options. */
typedef struct consumer_spec {
	const char *name, *durable, *filter;
	unsigned workers;
	kit_handle_fn *handle;
	bool (*wants)(void *closure, const env_envelope *e);
	bool check_valid; /* the handler folds no aggregate of the commit */
	bool sweep;
	kit_consumer **out;
} consumer_spec;

static orn_rc consumers_start(mail_service *m)
{
	const consumer_spec specs[] = {
	        /* order emails: the handler folds the order up to the commit, which says it is valid */
	        {"mail", MAIL_CONSUMER, ORDERS_FILTER, m->workers, mail_order_commit, mail_order_wants, false,
	         true, &m->orders},
	        {"mail alerts", MAIL_ALERTS_CONSUMER, ALERTS_FILTER, 1, mail_alert_commit, mail_alert_wants,
	         true, true, &m->alerts},
	        {"mail resends", MAIL_RESENDS_CONSUMER, RESENDS_FILTER, 1, mail_resend_commit,
	         mail_resend_wants, true, false, &m->resends},
	        /* account emails: the handler folds the account up to the commit */
	        {"mail accounts", MAIL_ACCOUNTS_CONSUMER, ACCOUNTS_FILTER, 1, mail_account_commit,
	         mail_account_wants, false, false, &m->accounts},
	};
	orn_rc rc = ORN_OK;
	for (size_t i = 0; i < ORN_ARRAY_LEN(specs) && rc == ORN_OK; i++) {
		const consumer_spec *s = &specs[i];
		kit_consumer_options o = {
		        .name = s->name,
		        .durable = s->durable,
		        .filter = s->filter,
		        .ack_wait_ms = ACK_WAIT_MS,
		        .workers = s->workers,
		        .retry_first_ms = RETRY_FIRST_MS,
		        .retry_max_ms = m->retry_max_ms,
		        /* past the attempt bound only confirmations still retry (until
		         * their order's deadline): a longer ceiling keeps their log short */
		        .long_retry_after = m->max_attempts,
		        .long_retry_max_ms = LONG_RETRY_MS,
		        .handle = s->handle,
		        .worker_create = worker_create,
		        .worker_destroy = worker_destroy,
		        .closure = m,
		        .wants = s->wants,
		        .check_valid = s->check_valid,
		        .sweep_after_ms = s->sweep && m->sweep_after_ms > 0 ? m->sweep_after_ms : 0};
		rc = kit_consumer_start(m->store, m->hub, &o, s->out);
	}
	return rc;
}

/* ---- lifecycle ---- */

orn_rc mail_start(es_store *store, kit_hub *hub, const mail_options *o, mail_service **out)
{
	mail_service *m = calloc(1, sizeof *m);
	orn_rc rc = ORN_ENOMEM;
	*out = NULL;
	if (m == NULL)
		return ORN_ENOMEM;
	m->store = store;
	m->hub = hub;
	m->keys = o->keys;
	atomic_init(&m->index, 0);
	pthread_mutex_init(&m->inflight_lock, NULL);
	if ((m->inflight = hmap_create()) == NULL)
		goto fail;
	if (store == NULL || hub == NULL || o == NULL) {
		rc = ORN_EINVAL;
		goto fail;
	}
	if ((rc = options_take(m, o)) != ORN_OK)
		goto fail;
	if ((rc = orn_make_dirs(m->state_dir)) != ORN_OK ||
	    (m->maildir != NULL && (rc = make_maildir(m->maildir)) != ORN_OK)) {
		log_error("mail cannot create its directories", "error", orn_rc_name(rc));
		goto fail;
	}
	if ((rc = mail_marks_open(m->state_dir, &m->marks)) != ORN_OK ||
	    (rc = mail_users_create(&m->users)) != ORN_OK)
		goto fail;
	if (m->smtp_url != NULL) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			rc = ORN_EINTERNAL;
			goto fail;
		}
		m->curl_ready = true;
	}
	if ((rc = consumers_start(m)) != ORN_OK)
		goto fail;
	log_info("mail started", "transport", mail_transport_name(m), "tls",
	         m->smtp_url == NULL    ? "none"
	         : m->smtp_tls_required ? "required"
	                                : "opportunistic",
	         "consumer", MAIL_CONSUMER, "instance", kit_hub_instance(hub));
	*out = m;
	return ORN_OK;
fail:
	mail_stop(m);
	return rc;
}

void mail_stop(mail_service *m)
{
	if (m == NULL)
		return;
	kit_consumer_stop(m->orders);
	kit_consumer_stop(m->alerts);
	kit_consumer_stop(m->resends);
	kit_consumer_stop(m->accounts);
	mail_users_destroy(m->users);
	mail_marks_close(m->marks);
	if (m->curl_ready)
		curl_global_cleanup();
	sodium_memzero(m->token_key, sizeof m->token_key);
	if (m->smtp_url != NULL) /* it may hold the SMTP password */
		sodium_memzero(m->smtp_url, strlen(m->smtp_url));
	free(m->smtp_url);
	free(m->maildir);
	free(m->from);
	free(m->public_url);
	free(m->state_dir);
	hmap_destroy(m->inflight);
	pthread_mutex_destroy(&m->inflight_lock);
	free(m);
}

bool mail_bound(const mail_service *m)
{
	return m != NULL && kit_consumer_bound(m->orders) && kit_consumer_bound(m->alerts) &&
	       kit_consumer_bound(m->resends) && kit_consumer_bound(m->accounts);
}
