/* mail.c — the mail actor (see mail.h for the protocol and its guarantees).
 *
 * Threads: each worker owns its pull subscription, its curl handle and its
 * scratch order state; they share only the store (cnats is thread-safe),
 * the LMDB environment (MDB_NOTLS; LMDB serialises the writers) and the stop
 * flag. A worker fetches one commit at a time, so a commit never waits in a
 * worker's hands behind another one's SMTP timeout. The last worker is the
 * alert worker (consumer orion_mail_alerts); only it reads and writes the
 * users map, so the map needs no lock. Every email, order or alert, goes
 * through deliver(): markers, delivery log, send. */
#include "mail.h"
#include "keystore.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "fsdir.h"
#include "hashmap.h"
#include "log.h"
#include "mail_log.h"
#include "mail_render.h"
#include "metrics.h"
#include "product.h"
#include "stock.h"
#include "sweep.h"
#include "user.h"

#define CONSUMER_FILTER    "orion.evt.order.>"
#define ORDER_SUBJECT      "orion.evt.order."
#define ALERTS_FILTER      "orion.evt.stock.>"
#define STOCK_SUBJECT      "orion.evt.stock."
#define RESENDS_FILTER     "orion.evt.mail.>"
#define MAIL_SUBJECT       "orion.evt.mail."
#define LONG_RETRY_MS      30000 /* backoff ceiling once an email outlived its attempt bound (a confirmation) */
#define USERS_FILTER       "orion.evt.user.>"
#define USER_SUBJECT       "orion.evt.user."
#define LOW_STOCK_EVENT    "LowStockDetected" /* the stock aggregate's, issue 7 */
#define LOW_STOCK_PREFIX   "LowStock"         /* LowStock* other than Detected: a re-arm */
#define MAIL_ACTOR         "mail"
#define ACK_WAIT_MS        30000
#define FETCH_WAIT_MS      500 /* how often an idle worker looks at the stop flag */
#define FETCH_ERROR_PAUSE  250
#define CONNECT_TIMEOUT_MS 3000L
#define SEND_TIMEOUT_MS    10000L
#define RETRY_FIRST_MS     250
#define MARKERS_MAP_SIZE   ((size_t)1 << 30) /* ~10 million markers */
#define WORKERS_MAX        64
#define MAILDIR_PATH_MAX   4096

/* The durable consumer of order events every worker binds to. */
static const es_durable_options CONSUMER = {
        .durable = MAIL_CONSUMER,
        .filter = CONSUMER_FILTER,
        .ack_wait_ms = ACK_WAIT_MS,
};

/* The durable consumer of stock events the alert worker binds to (nats-server
 * 2.9: one filter per consumer, so alerts cannot share the one above). */
static const es_durable_options ALERTS_CONSUMER = {
        .durable = MAIL_ALERTS_CONSUMER,
        .filter = ALERTS_FILTER,
        .ack_wait_ms = ACK_WAIT_MS,
};

/* The durable consumer of the delivery logs the resend worker binds to: it
 * acts on MailResendRequested (ADR 023) and acks every other commit. */
static const es_durable_options RESENDS_CONSUMER = {
        .durable = MAIL_RESENDS_CONSUMER,
        .filter = RESENDS_FILTER,
        .ack_wait_ms = ACK_WAIT_MS,
};

/* What a worker consumes. */
typedef enum worker_role { ROLE_ORDERS, ROLE_ALERTS, ROLE_RESENDS } worker_role;

/* A user as the alert worker knows it: enough to tell admins and reach them. */
typedef struct known_user {
	char email[USER_SEALED_MAX]; /* sealed, as the event holds it (ADR 027) */
	user_role role;
} known_user;

typedef struct worker {
	struct mail_service *service;
	unsigned index;
	pthread_t thread;
	bool started;
	natsSubscription *sub;
	CURL *curl;
	order_state *order; /* rebuilt for each email */
	order_event *event; /* scratch for decoding */
	env_envelope *envelopes;
	mp_writer *payload, *commit; /* the delivery log's appends */
	bool alerts;                 /* the alert worker: stock events, not order events */
	worker_role role;
	order_status fold_until; /* fold: stop once the order reaches it (ORDER_NONE: never) */
	product_state *product;  /* alert worker: the product of an alert */
	int64_t fetch_error_logged_ms;
	int64_t sweep_idle_ms; /* the sweeper's worker: an email attempted this recently is another's */
} worker;

struct mail_service {
	es_store *store;
	ks_store *keys; /* borrowed: opens the recipients (ADR 027) */
	char *smtp_url, *maildir, *from, *public_url, *state_dir;
	bool smtp_tls_required; /* the URL carries credentials */
	char envelope_from[ORDER_EMAIL_MAX];
	uint8_t token_key[ORDER_TOKEN_KEY_BYTES];
	unsigned retry_max_ms;
	unsigned max_attempts;
	pthread_mutex_t users_lock; /* users and users_to: the alert worker and the alert sweeper */
	/* Emails being delivered in this process (key -> non-NULL): a worker and
	 * a sweeper never deliver the same email at once. */
	pthread_mutex_t inflight_lock;
	hmap *inflight;
	hmap *users;       /* user key -> known_user */
	uint64_t users_to; /* the stream sequence the users are read up to */
	MDB_env *env;
	MDB_dbi markers;
	bool curl_ready;
	atomic_bool stopping;
	worker *workers;
	unsigned worker_count;
	int64_t sweep_after_ms; /* > 0: the sweepers (sweep.h) of order emails and of alerts */
	es_sweep *sweep, *alert_sweep;
	worker sweeper, alert_sweeper; /* their workers: no consumer of their own */
};

void mail_options_init(mail_options *o)
{
	memset(o, 0, sizeof *o);
	o->from = "orion@localhost";
	o->public_url = "http://127.0.0.1:8080";
	o->workers = 4;
	o->retry_max_ms = 5000;
	o->max_attempts = MAIL_MAX_ATTEMPTS_DEFAULT;
}

/* ---- directories ---- */

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

/* ---- sent markers (LMDB) ---- */

static orn_rc lmdb_rc(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return ORN_OK;
	case MDB_NOTFOUND:
		return ORN_ENOTFOUND;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_READERS_FULL:
		return ORN_ETOOBIG;
	case ENOMEM:
		return ORN_ENOMEM;
	default:
		return ORN_EIO;
	}
}

static orn_rc markers_open(mail_service *m)
{
	MDB_txn *txn = NULL;
	int rc = mdb_env_create(&m->env);
	if (rc == MDB_SUCCESS)
		rc = mdb_env_set_mapsize(m->env, MARKERS_MAP_SIZE);
	if (rc == MDB_SUCCESS)
		rc = mdb_env_set_maxdbs(m->env, 2);
	if (rc == MDB_SUCCESS)
		/* MDB_NOSYNC: a commit is in the page cache when it returns, which
		 * survives a kill of this process; only a crash of the machine can
		 * lose the last markers (and resend those emails). A synchronous
		 * commit would hold the window between the SMTP server's 250 and the
		 * marker (the only way to send twice) open for an fsync. */
		rc = mdb_env_open(m->env, m->state_dir, MDB_NOTLS | MDB_NOSYNC, 0600);
	if (rc == MDB_SUCCESS)
		rc = mdb_txn_begin(m->env, NULL, 0, &txn);
	if (rc == MDB_SUCCESS)
		rc = mdb_dbi_open(txn, "sent", MDB_CREATE, &m->markers);
	if (rc == MDB_SUCCESS) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (rc != MDB_SUCCESS)
		log_error("mail cannot open its sent markers", "dir", m->state_dir, "error",
		          mdb_strerror(rc));
	return rc == MDB_SUCCESS ? ORN_OK : ORN_EIO;
}

/* ORN_OK if the marker of key exists (*sent_ms: when the email went out),
 * ORN_ENOTFOUND if not. */
static orn_rc marker_get(mail_service *m, const char *key, int64_t *sent_ms)
{
	MDB_txn *txn = NULL;
	MDB_val k = {strlen(key), (void *)key}, v;
	int rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn);
	*sent_ms = 0;
	if (rc == MDB_SUCCESS) {
		rc = mdb_get(txn, m->markers, &k, &v);
		if (rc == MDB_SUCCESS && v.mv_size == 16)
			memcpy(sent_ms, (const uint8_t *)v.mv_data + 8, 8);
		mdb_txn_abort(txn);
	}
	return lmdb_rc(rc);
}

/* Writes the marker of key (value: stream sequence, sent time) and commits. */
static orn_rc marker_put(mail_service *m, const char *key, uint64_t seq, int64_t sent_ms)
{
	MDB_txn *txn = NULL;
	uint8_t value[16];
	memcpy(value, &seq, 8);
	memcpy(value + 8, &sent_ms, 8);
	MDB_val k = {strlen(key), (void *)key}, v = {sizeof value, value};
	int rc = mdb_txn_begin(m->env, NULL, 0, &txn);
	if (rc == MDB_SUCCESS) {
		rc = mdb_put(txn, m->markers, &k, &v, 0);
		if (rc == MDB_SUCCESS)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	return lmdb_rc(rc);
}

/* ---- transports ---- */

typedef struct upload {
	const char *data;
	size_t len, off;
} upload;

static size_t upload_read(char *out, size_t size, size_t count, void *closure)
{
	upload *u = closure;
	size_t n = size * count;
	if (n > u->len - u->off)
		n = u->len - u->off;
	memcpy(out, u->data + u->off, n);
	u->off += n;
	return n;
}

static orn_rc curl_rc(CURLcode code)
{
	switch (code) {
	case CURLE_OK:
		return ORN_OK;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return ORN_EUNAVAILABLE;
	case CURLE_OPERATION_TIMEDOUT:
		return ORN_ETIMEOUT;
	case CURLE_OUT_OF_MEMORY:
		return ORN_ENOMEM;
	default:
		return ORN_EIO;
	}
}

/* Sends over SMTP; ORN_OK once the server accepted the data (250). The
 * error text (no URL, no credentials) goes into detail. */
static orn_rc smtp_send(worker *w, const char *to, const mail_message *msg, char *detail, size_t cap)
{
	mail_service *m = w->service;
	char rcpt[ORDER_EMAIL_MAX + 2], sender[ORDER_EMAIL_MAX + 2];
	struct curl_slist *recipients = NULL;
	upload u = {msg->data, msg->len, 0};
	long response = 0;
	CURLcode code;

	snprintf(rcpt, sizeof rcpt, "<%s>", to);
	snprintf(sender, sizeof sender, "<%s>", m->envelope_from);
	recipients = curl_slist_append(NULL, rcpt);
	if (recipients == NULL)
		return ORN_ENOMEM;
	curl_easy_reset(w->curl);
	curl_easy_setopt(w->curl, CURLOPT_URL, m->smtp_url);
	curl_easy_setopt(w->curl, CURLOPT_MAIL_FROM, sender);
	curl_easy_setopt(w->curl, CURLOPT_MAIL_RCPT, recipients);
	curl_easy_setopt(w->curl, CURLOPT_READFUNCTION, upload_read);
	curl_easy_setopt(w->curl, CURLOPT_READDATA, &u);
	curl_easy_setopt(w->curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(w->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)msg->len);
	/* Credentials in the URL: TLS or nothing, so a stripped STARTTLS can
	 * never turn into a cleartext AUTH (see mail.h). */
	curl_easy_setopt(w->curl, CURLOPT_USE_SSL,
	                 m->smtp_tls_required ? (long)CURLUSESSL_ALL : (long)CURLUSESSL_TRY);
	curl_easy_setopt(w->curl, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	curl_easy_setopt(w->curl, CURLOPT_TIMEOUT_MS, SEND_TIMEOUT_MS);
	curl_easy_setopt(w->curl, CURLOPT_NOSIGNAL, 1L);
	code = curl_easy_perform(w->curl);
	curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &response);
	curl_slist_free_all(recipients);
	snprintf(detail, cap, "%s (smtp %ld)", curl_easy_strerror(code), response);
	return curl_rc(code);
}

static orn_rc write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return ORN_EIO;
		data += n;
		len -= (size_t)n;
	}
	return ORN_OK;
}

static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Writes the message into tmp/, fsyncs it and renames it into new/ under a
 * name fixed per email ("<order>.<status>", or the alert's mail id): a second
 * copy replaces the first. */
static orn_rc maildir_write(worker *w, const char *file, const mail_message *msg, char *detail, size_t cap)
{
	mail_service *m = w->service;
	char tmp[MAILDIR_PATH_MAX], dest[MAILDIR_PATH_MAX], newdir[MAILDIR_PATH_MAX];
	orn_rc rc = ORN_EIO;
	int fd = -1;

	snprintf(detail, cap, "maildir");
	if ((size_t)snprintf(tmp, sizeof tmp, "%s/tmp/%s.%ld.%u.orion", m->maildir, file, (long)getpid(),
	                     w->index) >= sizeof tmp ||
	    (size_t)snprintf(dest, sizeof dest, "%s/new/%s.orion", m->maildir, file) >= sizeof dest ||
	    (size_t)snprintf(newdir, sizeof newdir, "%s/new", m->maildir) >= sizeof newdir)
		return ORN_EINVAL;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	if ((rc = write_all(fd, msg->data, msg->len)) != ORN_OK)
		goto fail;
	rc = ORN_EIO;
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, dest) != 0)
		goto fail;
	sync_dir(newdir);
	return ORN_OK;
fail:
	snprintf(detail, cap, "maildir: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

/* ---- one commit ---- */

typedef enum outcome {
	DONE,  /* sent, already sent, or nothing to send: ack */
	RETRY, /* a dependency failed: nak with backoff */
} outcome;

static orn_rc fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	worker *w = closure;
	if (w->fold_until != ORDER_NONE && w->order->status == w->fold_until)
		return ORN_OK; /* a resend: the order as it was when it reached the email's status */
	if (order_event_decode(e->type, e->payload, e->payload_len, w->event) == ORN_OK)
		order_evolve(w->order, w->event);
	return ORN_OK;
}

/* es_load's fold of a whole order into an order_state (closure). */
static orn_rc order_fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	order_event ev;
	(void)seq;
	(void)subject;
	if (order_event_decode(e->type, e->payload, e->payload_len, &ev) == ORN_OK)
		order_evolve(closure, &ev);
	return ORN_OK;
}

/* orion_email_sent_total / orion_email_failures_total{status} and, once
 * sent, orion_email_latency_seconds{status}: from the event's time to the
 * server's acceptance (SMTP 250, or the Maildir rename). */
static void count_email(const char *status, const char *transport, bool sent, int64_t latency_ms)
{
	static const double buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
	const char *const labels[] = {"status", status, "transport", transport, NULL};
	const char *const status_label[] = {"status", status, NULL};
	orn_metrics *m = orn_metrics_global();
	if (!sent) {
		orn_metrics_counter_add(m, "orion_email_failures_total",
		                        "Email sends that failed (each is retried with a backoff).", labels,
		                        1);
		return;
	}
	orn_metrics_counter_add(m, "orion_email_sent_total", "Emails accepted by the SMTP server or Maildir.",
	                        labels, 1);
	orn_metrics_observe(m, "orion_email_latency_seconds",
	                    "Time from the order event to the email's acceptance by the server.", buckets,
	                    ORN_ARRAY_LEN(buckets), status_label,
	                    latency_ms > 0 ? (double)latency_ms / 1000.0 : 0.0);
}

static void seq_text(char out[24], uint64_t v)
{
	snprintf(out, 24, "%llu", (unsigned long long)v);
}

/* ---- the delivery log (mail_log.h) ---- */

/* One email as the delivery protocol sees it, whatever made it. */
typedef struct email email;
/* Whether the email still matters now (a confirmation: its order still
 * awaits one); false ends it as failed. NULL: always. */
typedef bool matters_fn(worker *w, const email *e);
struct email {
	char key[MAIL_KEY_MAX + 112]; /* the sent marker: the log key, plus "#r<generation>" for a resend */
	char log_key[MAIL_KEY_MAX + 96]; /* the delivery log's id derives from it ("": key) */
	uint32_t generation;             /* 0, or the resend this delivery is (mail_log.h) */
	int64_t deadline_ms; /* > 0: retried until then, whatever the attempt bound (a confirmation) */
	matters_fn *matters;
	char file[MAIL_KEY_MAX + 112]; /* Maildir file name without ".orion": fixed per email */
	mail_log_subject subject;      /* what the delivery log records */
	const char *label;             /* status name or "low_stock": logs and metrics */
	const char *ref_name;          /* "order" or "product": the key of ref in log lines */
	const char *ref;               /* the order or product id: logs */
	uint64_t seq;                  /* the triggering commit */
	int64_t event_ms;              /* at_ms of the triggering event */
	const char *correlation;       /* of the triggering event */
};

/* The delivery log of one email, as loaded. */
typedef struct log_ref {
	char id[MAIL_LOG_ID_MAX];
	mail_log_state state;
	es_position at;
} log_ref;

static orn_rc log_fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	mail_log_event ev;
	(void)seq;
	(void)subject;
	if (mail_log_event_decode(e->type, e->payload, e->payload_len, &ev) == ORN_OK)
		mail_log_evolve(closure, &ev);
	return ORN_OK;
}

static orn_rc log_load(mail_service *m, const char *key, log_ref *ref)
{
	orn_rc rc = mail_log_id(ref->id, key);
	mail_log_state_init(&ref->state);
	memset(&ref->at, 0, sizeof ref->at);
	if (rc == ORN_OK)
		rc = es_load(m->store, MAIL_LOG_AGGREGATE, ref->id, 0, log_fold, &ref->state, &ref->at);
	return rc;
}

/* Decides c against the log and appends what it emits as ONE commit on the
 * position loaded (another instance that wrote first makes this a conflict:
 * the commit is retried; es_append confirms it, ADR 015) with the msg id
 * "<mail id>:<attempt>" (a retried publish is answered with the original).
 * *failed_for_good: the commit holds MailFailed. */
static orn_rc log_record(worker *w, log_ref *ref, const mail_log_command *c, const email *e,
                         bool *failed_for_good)
{
	mail_log_events out;
	char msg_id[MAIL_LOG_ID_MAX + 32];
	es_append_result result;
	orn_rc rc = ORN_OK;
	*failed_for_good = false;
	mail_log_verdict v = mail_log_decide(&ref->state, c, &out);
	if (v != MAIL_LOG_OK) {
		log_warn("mail cannot log an attempt", "mail", ref->id, "reason", mail_log_verdict_code(v));
		return v == MAIL_LOG_REJ_SETTLED ? ORN_OK : ORN_EINVAL;
	}
	mp_writer_reset(w->commit);
	env_commit_begin(w->commit, (uint32_t)out.count);
	for (size_t i = 0; i < out.count && rc == ORN_OK; i++) {
		env_envelope env = {.schema = MAIL_LOG_SCHEMA, .time_ms = c->at_ms};
		mp_writer_reset(w->payload);
		if ((rc = mail_log_event_encode(w->payload, &out.items[i])) != ORN_OK)
			break;
		snprintf(env.type, sizeof env.type, "%s", mail_log_event_type(out.items[i].kind));
		snprintf(env.correlation, sizeof env.correlation, "%s",
		         e->correlation != NULL ? e->correlation : "");
		snprintf(env.causation, sizeof env.causation, "%s:%" PRIu32, ref->id, out.items[0].attempt);
		snprintf(env.actor, sizeof env.actor, MAIL_ACTOR);
		env.payload = mp_writer_data(w->payload);
		env.payload_len = mp_writer_size(w->payload);
		rc = env_encode(w->commit, &env);
		*failed_for_good |= out.items[i].kind == MAIL_LOG_FAILED;
	}
	if (rc == ORN_OK)
		rc = mp_writer_status(w->commit);
	snprintf(msg_id, sizeof msg_id, "%s:%" PRIu32, ref->id, out.items[0].attempt);
	if (ref->state.generation > 0) /* the attempts of a resend count from 1 again */
		snprintf(msg_id, sizeof msg_id, "%s:r%" PRIu32 ":%" PRIu32, ref->id, ref->state.generation,
		         out.items[0].attempt);
	if (rc == ORN_OK)
		rc = es_append(w->service->store, MAIL_LOG_AGGREGATE, ref->id, &ref->at, msg_id,
		               mp_writer_data(w->commit), mp_writer_size(w->commit), &result);
	if (rc != ORN_OK) {
		*failed_for_good = false;
		log_warn("mail cannot append to its delivery log", "mail", ref->id, e->ref_name, e->ref,
		         "error", orn_rc_name(rc));
	}
	return rc;
}

static void log_command(mail_log_command *c, mail_log_command_kind kind, const email *e, int64_t at_ms,
                        unsigned max_attempts, const char *error)
{
	memset(c, 0, sizeof *c);
	c->kind = kind;
	c->subject = e->subject;
	c->at_ms = at_ms;
	c->max_attempts = max_attempts;
	c->deadline_ms = e->deadline_ms;
	mail_log_error_set(c->error, error);
}

/* A resend's Message-ID differs from the first sending's (receivers drop a
 * second message with the same id): "<x@orion>" becomes "<x.r<generation>@orion>"
 * in the rendered header. ORN_ENOMEM; ORN_OK if the header is not found. */
static orn_rc resend_message_id(mail_message *msg, uint32_t generation)
{
	char suffix[16];
	const char *header = msg->data != NULL ? strstr(msg->data, "\r\nMessage-ID: <") : NULL;
	const char *at = header != NULL ? strstr(header, "@orion>\r\n") : NULL;
	if (at == NULL)
		return ORN_OK;
	int n = snprintf(suffix, sizeof suffix, ".r%" PRIu32, generation);
	char *data = malloc(msg->len + (size_t)n + 1);
	if (data == NULL)
		return ORN_ENOMEM;
	size_t head = (size_t)(at - msg->data);
	memcpy(data, msg->data, head);
	memcpy(data + head, suffix, (size_t)n);
	memcpy(data + head + (size_t)n, at, msg->len - head + 1);
	sodium_memzero(msg->data, msg->len); /* it held the token */
	free(msg->data);
	msg->data = data;
	msg->len += (size_t)n;
	return ORN_OK;
}

/* Renders an email into msg: ORN_OK, ORN_ENOMEM (retry) or another code (the
 * email can never be made: it is logged as failed). */
typedef orn_rc render_fn(worker *w, const email *e, void *closure, const char *to, mail_message *msg);

/* The delivery protocol of one email (mail.h): the marker and the log say
 * whether it went out already; else render, send, marker, log. */
static outcome deliver_claimed(worker *w, const email *e, render_fn *render, void *closure, const char *to)
{
	mail_service *m = w->service;
	char detail[256], seq_s[24], latency[24];
	mail_message msg = {0};
	mail_log_command c;
	log_ref ref;
	int64_t sent_ms = 0;
	bool failed_for_good = false;
	orn_rc rc;

	seq_text(seq_s, e->seq);
	rc = marker_get(m, e->key, &sent_ms);
	if (rc != ORN_OK && rc != ORN_ENOTFOUND) {
		log_warn("mail cannot read its sent markers", e->ref_name, e->ref, "error", orn_rc_name(rc));
		return RETRY;
	}
	bool marked = rc == ORN_OK;
	if ((rc = log_load(m, e->log_key[0] != '\0' ? e->log_key : e->key, &ref)) != ORN_OK) {
		log_warn("mail cannot load its delivery log", e->ref_name, e->ref, "error", orn_rc_name(rc));
		return RETRY;
	}
	if (ref.state.status != MAIL_LOG_STATUS_PENDING || ref.state.generation != e->generation) {
		log_debug("mail already settled", e->ref_name, e->ref, "mail", ref.id, "status", e->label,
		          "state", mail_log_status_name(ref.state.status));
		return DONE; /* settled, or another generation's (a resend is the resend worker's) */
	}
	/* The sweeper steps back while a worker is at it (SMTP down), and looks again later. */
	if (w->sweep_idle_ms > 0 && ref.state.exists &&
	    ref.state.updated_at_ms > orn_now_ms() - w->sweep_idle_ms)
		return RETRY;
	if (marked) { /* sent, but the log missed it (a kill, NATS down): complete the log */
		log_command(&c, MAIL_LOG_RECORD_SENT, e, sent_ms > 0 ? sent_ms : orn_now_ms(),
		            m->max_attempts, NULL);
		return log_record(w, &ref, &c, e, &failed_for_good) == ORN_OK ? DONE : RETRY;
	}
	if (e->matters != NULL && (ref.state.attempts > 0 || e->generation > 0) && !e->matters(w, e)) {
		email moot = *e;
		moot.deadline_ms = orn_now_ms(); /* the failed attempt recorded now is the last */
		log_info("mail gives up an email that no longer matters", e->ref_name, e->ref, "status",
		         e->label, "mail", ref.id);
		log_command(&c, MAIL_LOG_RECORD_FAILED, &moot, moot.deadline_ms, m->max_attempts,
		            "no longer needed: the order moved on");
		return log_record(w, &ref, &c, e, &failed_for_good) == ORN_OK ? DONE : RETRY;
	}
	rc = render(w, e, closure, to, &msg);
	if (rc == ORN_ENOMEM)
		return RETRY;
	if (rc == ORN_OK && e->generation > 0 && resend_message_id(&msg, e->generation) != ORN_OK)
		rc = ORN_ENOMEM; /* retried */
	if (rc == ORN_ENOMEM) {
		mail_message_dispose(&msg);
		return RETRY;
	}
	if (rc != ORN_OK) {
		log_error("mail cannot render an email (bad recipient or options)", e->ref_name, e->ref,
		          "status", e->label, "error", orn_rc_name(rc));
		log_command(&c, MAIL_LOG_RECORD_FAILED, e, orn_now_ms(), 1, "cannot render the email");
		(void)log_record(w, &ref, &c, e, &failed_for_good);
		return DONE;
	}
	rc = m->smtp_url != NULL ? smtp_send(w, to, &msg, detail, sizeof detail)
	                         : maildir_write(w, e->file, &msg, detail, sizeof detail);
	/* The marker first: nothing may widen the window between the server's
	 * acceptance and the marker (see mail.h). */
	sent_ms = orn_now_ms();
	orn_rc marker_rc = rc == ORN_OK ? marker_put(m, e->key, e->seq, sent_ms) : ORN_OK;
	mail_message_dispose(&msg); /* wipes the buffers: they held the token */
	count_email(e->label, m->smtp_url != NULL ? "smtp" : "maildir", rc == ORN_OK, sent_ms - e->event_ms);
	if (rc != ORN_OK) {
		char attempt[16];
		snprintf(attempt, sizeof attempt, "%" PRIu32, ref.state.attempts + 1);
		log_warn("mail send failed", e->ref_name, e->ref, "status", e->label, "mail", ref.id,
		         "attempt", attempt, "error", orn_rc_name(rc), "detail", detail);
		log_command(&c, MAIL_LOG_RECORD_FAILED, e, sent_ms, m->max_attempts, detail);
		if (log_record(w, &ref, &c, e, &failed_for_good) == ORN_OK && failed_for_good) {
			log_error("mail failed for good: the retry bound is reached", e->ref_name, e->ref,
			          "status", e->label, "mail", ref.id, "attempts", attempt, "detail", detail);
			return DONE;
		}
		return RETRY;
	}
	snprintf(latency, sizeof latency, "%lld", (long long)(sent_ms - e->event_ms));
	if (marker_rc != ORN_OK) /* sent: a redelivery could send it again, so say so loudly */
		log_error("mail sent but its marker was not written", e->ref_name, e->ref, "status", e->label,
		          "error", orn_rc_name(marker_rc));
	log_info("mail sent", e->ref_name, e->ref, "status", e->label, "mail", ref.id, "transport",
	         m->smtp_url != NULL ? "smtp" : "maildir", "latency_ms", latency, "seq", seq_s);
	log_command(&c, MAIL_LOG_RECORD_SENT, e, sent_ms, m->max_attempts, NULL);
	/* A log that missed the delivery is completed by the redelivery (marker found). */
	return log_record(w, &ref, &c, e, &failed_for_good) == ORN_OK ? DONE : RETRY;
}

/* Takes e's key for this caller if no other worker or sweeper of this
 * process is delivering it; false if one is (or memory ran out). */
static bool inflight_claim(mail_service *m, const char *key)
{
	bool claimed;

	pthread_mutex_lock(&m->inflight_lock);
	claimed = hmap_get(m->inflight, key) == NULL && hmap_put(m->inflight, key, m) == ORN_OK;
	pthread_mutex_unlock(&m->inflight_lock);
	return claimed;
}

static void inflight_release(mail_service *m, const char *key)
{
	pthread_mutex_lock(&m->inflight_lock);
	hmap_remove(m->inflight, key);
	pthread_mutex_unlock(&m->inflight_lock);
}

/* Delivers e unless another worker or the sweeper of this process is at it:
 * the two would both find the log pending and both send (the log and the
 * sent marker are written after the server's acceptance). Then it is a
 * retry: by then the email is settled, or it failed and is tried again. */
static outcome deliver(worker *w, const email *e, render_fn *render, void *closure, const char *to)
{
	mail_service *m = w->service;

	if (!inflight_claim(m, e->key)) {
		log_debug("mail in flight elsewhere in this process", e->ref_name, e->ref, "status",
		          e->label);
		return RETRY;
	}
	outcome o = deliver_claimed(w, e, render, closure, to);
	inflight_release(m, e->key);
	return o;
}

/* ---- order emails ---- */

typedef struct order_email {
	const char *order_id;
	order_status status;
} order_email;

/* Renders the email of the order w->order holds (deliver_order loaded it). */
static orn_rc render_order(worker *w, const email *e, void *closure, const char *to, mail_message *msg)
{
	order_email *oe = closure;
	mail_service *m = w->service;
	char token[ORDER_TOKEN_MAX] = "";
	if (w->order->status != oe->status) {
		log_error("mail skips an event the order's history does not explain", "order", oe->order_id,
		          "status", e->label);
		return ORN_EINVAL;
	}
	if (oe->status == ORDER_AWAITING_CONFIRMATION &&
	    order_token_make(m->token_key, oe->order_id, token) != ORN_OK)
		return ORN_EINVAL;
	mail_input in = {.order_id = oe->order_id,
	                 .order = w->order,
	                 .event_time_ms = e->event_ms,
	                 .date_ms = orn_now_ms(),
	                 .from = m->from,
	                 .public_url = m->public_url,
	                 .token = token,
	                 .to = to};
	orn_rc rc = mail_render(&in, msg);
	sodium_memzero(token, sizeof token);
	return rc;
}

/* Whether a confirmation email still matters: its order, as the log has it
 * now, still awaits the confirmation (a cancelled or expired order needs no
 * link). A log that cannot be read counts as mattering (retried). */
static bool confirmation_matters(worker *w, const email *e)
{
	order_state *now = malloc(sizeof *now);
	es_position at;
	bool matters = true;
	if (now == NULL)
		return true;
	order_state_init(now);
	if (es_load(w->service->store, ORDER_AGGREGATE, e->ref, 0, order_fold, now, &at) == ORN_OK)
		matters = now->status == ORDER_AWAITING_CONFIRMATION;
	free(now);
	return matters;
}

/* The email of (order_id, status), generation 0 (the first sending) or a
 * resend. The order is rebuilt as it was right after the event first (for a
 * resend: up to the first event that reached status): the delivery log
 * records its customer's address. A confirmation is retried until the
 * order's confirmation deadline while the order still awaits it (ADR 023). */
/* Opens a recipient as its event holds it (field of a sealed token; clear
 * before ADR 027) into out. ORN_ENOTFOUND if its key is gone: the customer
 * was erased. */
static orn_rc open_recipient(mail_service *m, const char *token, const char *field, char *out, size_t cap)
{
	orn_rc rc = ORN_EUNAVAILABLE;
	if (m->keys != NULL)
		rc = ks_open_token(m->keys, token, field, NULL, out, cap);
	else if (!pd_is_sealed(token))
		rc = (size_t)snprintf(out, cap, "%s", token) < cap ? ORN_OK : ORN_ETOOBIG;
	if (rc != ORN_OK && rc != ORN_ENOTFOUND)
		log_warn("mail cannot open a recipient", "error", orn_rc_name(rc));
	return rc;
}

static outcome deliver_order_generation(worker *w, const char *order_id, const char *subject, uint64_t seq,
                                        order_status status, int64_t event_ms, const char *correlation,
                                        uint32_t generation)
{
	order_email oe = {order_id, status};
	email e = {.label = order_status_name(status),
	           .ref_name = "order",
	           .ref = order_id,
	           .seq = seq,
	           .event_ms = event_ms,
	           .correlation = correlation,
	           .generation = generation};
	if (mail_key(e.log_key, order_id, status) != ORN_OK)
		return DONE;
	if (generation == 0) {
		snprintf(e.key, sizeof e.key, "%s", e.log_key);
		snprintf(e.file, sizeof e.file, "%s.%s", order_id, e.label);
	} else {
		snprintf(e.key, sizeof e.key, "%s#r%" PRIu32, e.log_key, generation);
		snprintf(e.file, sizeof e.file, "%s.%s.r%" PRIu32, order_id, e.label, generation);
	}
	/* The customer's address: the order's, right after the event. */
	order_state_init(w->order);
	uint64_t read_to = 0;
	w->fold_until = generation > 0 ? status : ORDER_NONE;
	orn_rc rc = es_read(w->service->store, subject, 1, seq, fold, w, &read_to);
	w->fold_until = ORDER_NONE;
	if (rc != ORN_OK || read_to != seq) {
		log_warn("mail cannot load the order", "order", order_id, "error",
		         orn_rc_name(rc != ORN_OK ? rc : ORN_EUNAVAILABLE));
		return RETRY;
	}
	if (status == ORDER_AWAITING_CONFIRMATION) {
		e.deadline_ms = w->order->confirmation_deadline_ms;
		e.matters = confirmation_matters;
	}
	snprintf(e.subject.order_id, sizeof e.subject.order_id, "%s", order_id);
	snprintf(e.subject.kind, sizeof e.subject.kind, "%s", e.label);
	/* the log keeps the recipient sealed, as the order holds it; the address
	 * is opened only to send (ADR 027) */
	snprintf(e.subject.recipient, sizeof e.subject.recipient, "%s",
	         w->order->customer_email[0] != '\0' ? w->order->customer_email : "unknown");
	char to[USER_EMAIL_MAX];
	switch (open_recipient(w->service, w->order->customer_email, "customer_email", to, sizeof to)) {
	case ORN_OK:
		break;
	case ORN_ENOTFOUND:
		log_info("mail not sent: the customer was erased", "order", order_id, "status", e.label);
		return DONE;
	default:
		return RETRY;
	}
	outcome result = deliver(w, &e, render_order, &oe, to);
	sodium_memzero(to, sizeof to);
	return result;
}

static outcome deliver_order(worker *w, const char *order_id, const char *subject, uint64_t seq,
                             order_status status, int64_t event_ms, const char *correlation)
{
	return deliver_order_generation(w, order_id, subject, seq, status, event_ms, correlation, 0);
}

/* The email an order event asks for, if any (handle_commit's event_fn). */
static outcome order_email_event(worker *w, const char *order_id, const char *subject, uint64_t seq,
                                 const env_envelope *env)
{
	if (order_event_decode(env->type, env->payload, env->payload_len, w->event) != ORN_OK)
		return DONE;
	order_status status = mail_status_for_event(w->event->kind);
	if (status == ORDER_NONE)
		return DONE;
	return deliver_order(w, order_id, subject, seq, status, w->event->data.time_ms, env->correlation);
}

/* ---- resends (ADR 023) ---- */

/* The order status named name; ORDER_NONE for another string. */
static order_status status_named(const char *name)
{
	const char *n;
	for (int k = ORDER_PENDING; (n = order_status_name((order_status)k)) != NULL; k++)
		if (strcmp(n, name) == 0)
			return (order_status)k;
	return ORDER_NONE;
}

/* A MailResendRequested commit of a delivery log (the resend worker's
 * event_fn): the order's email once more, as generation ev.attempt, with the
 * order read up to its present head. Every other mail log commit is acked. */
static outcome resend_event(worker *w, const char *mail_id, const char *subject, uint64_t seq,
                            const env_envelope *env)
{
	mail_log_event ev;
	char order_subject[ES_SUBJECT_MAX];
	uint64_t head = 0;
	(void)mail_id;
	(void)subject;
	(void)seq;
	if (strcmp(env->type, MAIL_LOG_EV_RESEND_REQUESTED) != 0 ||
	    mail_log_event_decode(env->type, env->payload, env->payload_len, &ev) != ORN_OK ||
	    ev.subject.order_id[0] == '\0')
		return DONE;
	order_status status = status_named(ev.subject.kind);
	if (status == ORDER_NONE || es_subject(order_subject, sizeof order_subject, "orion.evt",
	                                       ORDER_AGGREGATE, ev.subject.order_id) != ORN_OK)
		return DONE;
	if (es_head(w->service->store, ORDER_AGGREGATE, ev.subject.order_id, &head) != ORN_OK)
		return RETRY;
	if (head == 0)
		return DONE;
	return deliver_order_generation(w, ev.subject.order_id, order_subject, head, status, ev.at_ms,
	                                env->correlation, ev.attempt);
}

/* ---- low-stock alerts ---- */

/* Whether a crossing is open on a product: a LowStockDetected seen and not
 * re-armed since (available back at the threshold or above, or another
 * LowStock* event, such as a clearing event of a later version). */
typedef struct crossing {
	bool open;
	int64_t threshold, on_hand, reserved;
} crossing;

static orn_rc crossing_fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	crossing *c = closure;
	stock_event ev;
	(void)seq;
	(void)subject;
	if (strcmp(e->type, LOW_STOCK_EVENT) == 0) {
		if (stock_event_decode(e->type, e->payload, e->payload_len, &ev) == ORN_OK)
			*c = (crossing){true, ev.threshold, ev.on_hand, ev.reserved};
		return ORN_OK;
	}
	if (strncmp(e->type, LOW_STOCK_PREFIX, strlen(LOW_STOCK_PREFIX)) == 0) {
		c->open = false;
		return ORN_OK;
	}
	if (!c->open || stock_event_decode(e->type, e->payload, e->payload_len, &ev) != ORN_OK)
		return ORN_OK;
	switch (ev.kind) {
	case STOCK_CREATED:
		c->on_hand = ev.quantity;
		c->reserved = 0;
		break;
	case STOCK_RESERVED:
		c->reserved += ev.quantity;
		break;
	case STOCK_RELEASED:
		c->reserved -= ev.quantity;
		break;
	case STOCK_COMMITTED:
		c->reserved -= ev.quantity;
		c->on_hand -= ev.quantity;
		break;
	case STOCK_ADJUSTED:
		c->on_hand += ev.delta;
		break;
	default:
		break;
	}
	if (c->on_hand - c->reserved >= c->threshold)
		c->open = false;
	return ORN_OK;
}

/* Folds orion.evt.user.> into m->users (users_lock held). */
static orn_rc user_fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	mail_service *m = closure;
	user_event ev;
	(void)seq;
	if (strncmp(subject, USER_SUBJECT, strlen(USER_SUBJECT)) != 0 ||
	    user_event_decode(e->type, e->payload, e->payload_len, &ev) != ORN_OK)
		return ORN_OK;
	const char *key = subject + strlen(USER_SUBJECT);
	known_user *u = hmap_get(m->users, key);
	if (ev.kind == USER_REGISTERED) {
		if (u == NULL) {
			if ((u = calloc(1, sizeof *u)) == NULL)
				return ORN_ENOMEM;
			if (hmap_put(m->users, key, u) != ORN_OK) {
				free(u);
				return ORN_ENOMEM;
			}
		}
		memcpy(u->email, ev.fields.email, sizeof u->email);
		u->role = ev.fields.role;
	} else if (ev.kind == USER_ROLE_CHANGED && u != NULL) {
		u->role = ev.fields.role;
	}
	return ORN_OK;
}

/* An admin as one alert sees it. */
typedef struct admin_ref {
	char key[ES_ID_MAX + 1];
	char email[USER_SEALED_MAX];
} admin_ref;

/* The admins now: the user events appended since the last call are read up
 * to the stream's present (an admin registered before the alert's event is
 * always known), then the admins are copied out, so that no lock is held
 * while the alerts go out. *out is the caller's to free. */
static orn_rc admins_now(mail_service *m, admin_ref **out, size_t *count)
{
	uint64_t last = 0;
	size_t cursor = 0, n = 0;
	const char *key;
	void *value;

	*out = NULL;
	*count = 0;
	pthread_mutex_lock(&m->users_lock);
	orn_rc rc = es_read(m->store, USERS_FILTER, m->users_to + 1, 0, user_fold, m, &last);
	if (rc == ORN_OK && last > m->users_to)
		m->users_to = last;
	if (rc == ORN_OK && hmap_count(m->users) > 0 &&
	    (*out = calloc(hmap_count(m->users), sizeof **out)) == NULL)
		rc = ORN_ENOMEM;
	while (rc == ORN_OK && hmap_next(m->users, &cursor, &key, &value)) {
		const known_user *u = value;
		if (u->role != USER_ROLE_ADMIN)
			continue;
		snprintf((*out)[n].key, sizeof(*out)[n].key, "%s", key);
		memcpy((*out)[n].email, u->email, sizeof(*out)[n].email);
		n++;
	}
	pthread_mutex_unlock(&m->users_lock);
	*count = n;
	return rc;
}

static orn_rc product_fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	worker *w = closure;
	product_event ev;
	(void)seq;
	(void)subject;
	if (product_event_decode(e->type, e->payload, e->payload_len, &ev) == ORN_OK)
		product_evolve(w->product, &ev);
	return ORN_OK;
}

static orn_rc render_alert(worker *w, const email *e, void *closure, const char *to, mail_message *msg)
{
	const stock_event *ls = closure; /* LowStockDetected */
	mail_service *m = w->service;
	char id[MAIL_LOG_ID_MAX];
	orn_rc rc = mail_log_id(id, e->key);
	if (rc != ORN_OK)
		return rc;
	mail_alert_input in = {.product_id = e->subject.product_id,
	                       .sku = w->product->exists ? w->product->fields.sku : "",
	                       .name = w->product->exists ? w->product->fields.name : "",
	                       .threshold = ls->threshold,
	                       .available = ls->available,
	                       .on_hand = ls->on_hand,
	                       .reserved = ls->reserved,
	                       .to = to,
	                       .mail_id = id,
	                       .event_time_ms = e->event_ms,
	                       .date_ms = orn_now_ms(),
	                       .from = m->from,
	                       .public_url = m->public_url};
	return mail_render_low_stock(&in, msg);
}

/* The key of the alert of (product, stock event seq) to the user key. */
static void alert_key(char *out, size_t cap, const char *product_id, const char *seq_s, const char *user_key)
{
	snprintf(out, cap, "%s/%s/%s/%s", MAIL_LOG_KIND_LOW_STOCK, product_id, seq_s, user_key);
}

/* Whether every admin's alert of this event is settled in the delivery log
 * (false with no admin: the full path logs that). */
static orn_rc alerts_settled(worker *w, const char *product_id, const char *seq_s, bool *settled)
{
	admin_ref *admins = NULL;
	size_t count = 0;
	char key[MAIL_KEY_MAX + 96]; /* as email.key */
	orn_rc rc = admins_now(w->service, &admins, &count);

	*settled = rc == ORN_OK && count > 0;
	for (size_t i = 0; rc == ORN_OK && *settled && i < count; i++) {
		log_ref ref;
		alert_key(key, sizeof key, product_id, seq_s, admins[i].key);
		if ((rc = log_load(w->service, key, &ref)) == ORN_OK)
			*settled = ref.state.status != MAIL_LOG_STATUS_PENDING;
	}
	free(admins);
	return rc;
}

/* Emails every admin about one LowStockDetected (see mail.h). */
static outcome alert(worker *w, const char *product_id, const char *subject, uint64_t seq,
                     const env_envelope *env)
{
	mail_service *m = w->service;
	char seq_s[24];
	stock_event ls;
	crossing c = {0};
	outcome result = DONE;
	admin_ref *admins = NULL;
	size_t admin_count = 0;
	orn_rc rc;

	seq_text(seq_s, seq);
	if (stock_event_decode(env->type, env->payload, env->payload_len, &ls) != ORN_OK) {
		log_error("mail skips an undecodable LowStockDetected", "product", product_id, "seq", seq_s);
		return DONE;
	}
	if (seq > 1 && (rc = es_read(m->store, subject, 1, seq - 1, crossing_fold, &c, NULL)) != ORN_OK) {
		log_warn("mail cannot read the stock item", "product", product_id, "error", orn_rc_name(rc));
		return RETRY;
	}
	if (c.open) {
		log_info("mail skips a LowStockDetected of a crossing already alerted", "product", product_id,
		         "seq", seq_s);
		return DONE;
	}
	product_state_init(w->product);
	es_position at;
	if ((rc = es_load(m->store, PRODUCT_AGGREGATE, product_id, 0, product_fold, w, &at)) != ORN_OK) {
		log_warn("mail cannot load the product", "product", product_id, "error", orn_rc_name(rc));
		return RETRY;
	}
	if ((rc = admins_now(m, &admins, &admin_count)) != ORN_OK) {
		log_warn("mail cannot read the users", "error", orn_rc_name(rc));
		free(admins);
		return RETRY;
	}
	for (size_t i = 0; i < admin_count; i++) {
		const admin_ref *u = &admins[i];
		email e = {.label = MAIL_LOG_KIND_LOW_STOCK,
		           .ref_name = "product",
		           .ref = product_id,
		           .seq = seq,
		           .event_ms = env->time_ms,
		           .correlation = env->correlation};
		char id[MAIL_LOG_ID_MAX];
		alert_key(e.key, sizeof e.key, product_id, seq_s, u->key);
		if (mail_log_id(id, e.key) != ORN_OK) {
			result = RETRY;
			break;
		}
		snprintf(e.file, sizeof e.file, "%s", id);
		snprintf(e.subject.product_id, sizeof e.subject.product_id, "%s", product_id);
		snprintf(e.subject.kind, sizeof e.subject.kind, "%s", MAIL_LOG_KIND_LOW_STOCK);
		snprintf(e.subject.recipient, sizeof e.subject.recipient, "%s", u->email);
		char to[USER_EMAIL_MAX];
		orn_rc opened = open_recipient(w->service, u->email, "email", to, sizeof to);
		if (opened == ORN_ENOTFOUND)
			continue; /* an admin erased since */
		if (opened != ORN_OK || deliver(w, &e, render_alert, &ls, to) == RETRY)
			result = RETRY; /* the others go on; the redelivery finds their markers */
		sodium_memzero(to, sizeof to);
	}
	if (admin_count == 0)
		log_warn("mail has no admin to alert of low stock", "product", product_id, "seq", seq_s);
	free(admins);
	return result;
}

/* The alerts a stock event asks for: LowStockDetected only (handle_commit's
 * event_fn); every other stock event is acked at once. */
static outcome alert_event(worker *w, const char *product_id, const char *subject, uint64_t seq,
                           const env_envelope *env)
{
	if (strcmp(env->type, LOW_STOCK_EVENT) != 0)
		return DONE;
	return alert(w, product_id, subject, seq, env);
}

/* ---- one commit of a consumer ---- */

/* What one event of a commit asks of a worker: DONE or RETRY. id is the
 * aggregate id of the commit's subject. */
typedef outcome event_fn(worker *w, const char *id, const char *subject, uint64_t seq,
                         const env_envelope *env);

/* Decodes a commit of the worker's consumer and calls fn on its events in
 * order (each with its correlation id in the log lines) until one asks for a
 * retry; then naks the commit with backoff, else acks it. A commit that does
 * not decode, or whose subject is not prefix and an id, is logged and acked. */
static void handle_commit(worker *w, natsMsg *msg, const char *prefix, event_fn *fn)
{
	const char *subject = natsMsg_GetSubject(msg);
	jsMsgMetaData *meta = NULL;
	es_commit c;
	outcome result = DONE;

	if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
		natsMsg_Ack(msg, NULL);
		return;
	}
	uint64_t seq = meta->Sequence.Stream, deliveries = meta->NumDelivered;
	jsMsgMetaData_Destroy(meta);
	const char *id = strncmp(subject, prefix, strlen(prefix)) == 0 ? subject + strlen(prefix) : "";
	orn_rc rc = es_commit_decode(msg, w->envelopes, ENV_MAX_EVENTS, &c);
	if (rc != ORN_OK || !orn_id_valid(id)) {
		char seq_s[24];
		seq_text(seq_s, seq);
		log_error("mail skips an undecodable commit", "subject", subject, "seq", seq_s);
		natsMsg_Ack(msg, NULL);
		return;
	}
	if ((rc = es_commit_check(w->service->store, &c)) != ORN_OK || !c.valid) {
		result = rc == ORN_OK ? DONE : RETRY; /* a void commit changes nothing */
		c.count = 0;
	}
	for (size_t i = 0; i < c.count && result == DONE; i++) {
		log_set_correlation(w->envelopes[i].correlation);
		result = fn(w, id, subject, seq, &w->envelopes[i]);
		log_set_correlation(NULL);
	}
	/* past the attempt bound only confirmations still retry (until their
	 * order's deadline): a longer ceiling keeps their log short */
	int64_t ceiling = deliveries > w->service->max_attempts && LONG_RETRY_MS > w->service->retry_max_ms
	                          ? LONG_RETRY_MS
	                          : (int64_t)w->service->retry_max_ms;
	if (result == RETRY)
		natsMsg_NakWithDelay(msg, es_backoff_ms(deliveries, RETRY_FIRST_MS, ceiling), NULL);
	else
		natsMsg_Ack(msg, NULL);
}

static void pause_unless_stopping(mail_service *m, int ms)
{
	for (int waited = 0; waited < ms && !atomic_load(&m->stopping); waited += 50) {
		struct timespec t = {0, 50L * 1000 * 1000};
		nanosleep(&t, NULL);
	}
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	mail_service *m = w->service;
	while (!atomic_load(&m->stopping)) {
		natsMsgList list = {0};
		jsErrCode jerr = 0;
		natsStatus st = natsSubscription_Fetch(&list, w->sub, 1, FETCH_WAIT_MS, &jerr);
		if (st == NATS_TIMEOUT)
			continue;
		if (st != NATS_OK) {
			int64_t now = orn_now_ms();
			if (now - w->fetch_error_logged_ms >= 5000) {
				log_warn("mail cannot fetch", "error", natsStatus_GetText(st));
				w->fetch_error_logged_ms = now;
			}
			pause_unless_stopping(m, FETCH_ERROR_PAUSE);
			continue;
		}
		for (int i = 0; i < list.Count; i++)
			handle_commit(w, list.Msgs[i],
			              w->role == ROLE_RESENDS  ? MAIL_SUBJECT
			              : w->role == ROLE_ALERTS ? STOCK_SUBJECT
			                                       : ORDER_SUBJECT,
			              w->role == ROLE_RESENDS  ? resend_event
			              : w->role == ROLE_ALERTS ? alert_event
			                                       : order_email_event);
		natsMsgList_Destroy(&list);
	}
	return NULL;
}

/* ---- the sweeper (sweep.h, ADR 007 addendum): order emails the consumer lost ---- */

/* The status email an order event type asks for, ORDER_NONE if none. */
static order_status status_for_type(const char *type)
{
	const char *t;
	for (int k = 0; (t = order_event_type((order_event_kind)k)) != NULL; k++)
		if (strcmp(t, type) == 0)
			return mail_status_for_event((order_event_kind)k);
	return ORDER_NONE;
}

/* Whether an order event asks for an email (the follow thread's filter). */
static bool sweep_wants(void *closure, const env_envelope *e)
{
	(void)closure;
	return status_for_type(e->type) != ORDER_NONE;
}

static bool sweep_wants_alert(void *closure, const env_envelope *e)
{
	(void)closure;
	return strcmp(e->type, LOW_STOCK_EVENT) == 0;
}

typedef struct sweep_ctx {
	worker *w;
	const char *id;
	event_fn *fn;
	outcome result;
} sweep_ctx;

static orn_rc sweep_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	sweep_ctx *c = closure;
	if (c->result == DONE) {
		log_set_correlation(e->correlation);
		c->result = c->fn(c->w, c->id, subject, seq, e);
		log_set_correlation(NULL);
	}
	return ORN_OK;
}

/* A due commit: what its events ask of w (fn), as a worker of the consumer
 * would do it; deliver() skips an email the delivery log has settled, and
 * steps back from one a worker attempted lately (sweep_idle_ms). */
static es_sweep_verdict sweep_with(mail_service *m, worker *w, const char *subject, uint64_t seq,
                                   const char *prefix, event_fn *fn)
{
	const char *id = es_sweep_id(subject, prefix);

	if (atomic_load(&m->stopping))
		return ES_SWEEP_RETRY;
	if (id == NULL)
		return ES_SWEEP_DONE;
	sweep_ctx c = {w, id, fn, DONE};
	if (es_sweep_reread(m->store, subject, seq, sweep_event, &c) != ORN_OK)
		return ES_SWEEP_RETRY;
	return c.result == RETRY ? ES_SWEEP_RETRY : ES_SWEEP_DONE;
}

/* Most emails are settled when they fall due: the log says so without a
 * read of the commit or the order. */
static es_sweep_verdict sweep_order_commit(void *closure, const es_sweep_commit *c)
{
	mail_service *m = closure;
	const char *order_id = es_sweep_id(c->subject, ORDER_SUBJECT);
	order_status status = status_for_type(c->type);
	char key[MAIL_KEY_MAX + 96];
	log_ref ref;

	if (order_id == NULL || status == ORDER_NONE || mail_key(key, order_id, status) != ORN_OK)
		return ES_SWEEP_DONE;
	if (log_load(m, key, &ref) != ORN_OK)
		return ES_SWEEP_RETRY;
	if (ref.state.status != MAIL_LOG_STATUS_PENDING)
		return ES_SWEEP_DONE;
	return sweep_with(m, &m->sweeper, c->subject, c->seq, ORDER_SUBJECT, order_email_event);
}

/* Likewise for an alert: every admin's entry settled, no read of the item's history. */
static es_sweep_verdict sweep_alert_commit(void *closure, const es_sweep_commit *c)
{
	mail_service *m = closure;
	const char *product_id = es_sweep_id(c->subject, STOCK_SUBJECT);
	bool settled = false;
	char seq_s[24];

	if (product_id == NULL)
		return ES_SWEEP_DONE;
	seq_text(seq_s, c->seq);
	if (alerts_settled(&m->alert_sweeper, product_id, seq_s, &settled) != ORN_OK)
		return ES_SWEEP_RETRY;
	if (settled)
		return ES_SWEEP_DONE;
	return sweep_with(m, &m->alert_sweeper, c->subject, c->seq, STOCK_SUBJECT, alert_event);
}

/* ---- lifecycle ---- */

static orn_rc worker_init(mail_service *m, worker *w, unsigned index, worker_role role, bool bind)
{
	bool alerts = role == ROLE_ALERTS;
	const es_durable_options *consumer = role == ROLE_RESENDS  ? &RESENDS_CONSUMER
	                                     : role == ROLE_ALERTS ? &ALERTS_CONSUMER
	                                                           : &CONSUMER;
	w->service = m;
	w->index = index;
	w->alerts = alerts;
	w->role = role;
	w->order = malloc(sizeof *w->order);
	w->event = malloc(sizeof *w->event);
	w->envelopes = malloc(sizeof *w->envelopes * ENV_MAX_EVENTS);
	w->payload = mp_writer_create();
	w->commit = mp_writer_create();
	if (w->order == NULL || w->event == NULL || w->envelopes == NULL || w->payload == NULL ||
	    w->commit == NULL || (alerts && (w->product = malloc(sizeof *w->product)) == NULL))
		return ORN_ENOMEM;
	if (m->smtp_url != NULL && (w->curl = curl_easy_init()) == NULL)
		return ORN_ENOMEM;
	if (!bind)
		return ORN_OK;
	orn_rc rc = es_durable_bind(m->store, consumer, &w->sub);
	if (rc != ORN_OK)
		log_error("mail cannot bind to its consumer", "consumer", consumer->durable, "error",
		          orn_rc_name(rc));
	return rc;
}

static void worker_dispose(worker *w)
{
	if (w->sub != NULL)
		natsSubscription_Destroy(w->sub); /* the durable consumer stays */
	if (w->curl != NULL)
		curl_easy_cleanup(w->curl);
	free(w->order);
	free(w->event);
	free(w->envelopes);
	free(w->product);
	mp_writer_destroy(w->payload);
	mp_writer_destroy(w->commit);
}

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
	m->worker_count = o->workers == 0 ? 4 : o->workers > WORKERS_MAX ? WORKERS_MAX : o->workers;
	m->sweep_after_ms = o->sweep_after_ms == 0 ? MAIL_SWEEP_AFTER_MS_DEFAULT : o->sweep_after_ms;
	return rc;
}

/* Starts the two sweepers: order emails and low-stock alerts. */
static orn_rc sweepers_start(mail_service *m)
{
	es_sweep_options so = {.filter = CONSUMER_FILTER,
	                       .after_ms = m->sweep_after_ms,
	                       .retry_first_ms = RETRY_FIRST_MS,
	                       .retry_max_ms = (int64_t)m->retry_max_ms,
	                       .wants = sweep_wants,
	                       .fn = sweep_order_commit,
	                       .closure = m,
	                       .name = "mail"};
	orn_rc rc;

	m->sweeper.sweep_idle_ms = m->alert_sweeper.sweep_idle_ms = m->sweep_after_ms;
	if ((rc = worker_init(m, &m->sweeper, m->worker_count, ROLE_ORDERS, false)) != ORN_OK ||
	    (rc = worker_init(m, &m->alert_sweeper, m->worker_count + 1, ROLE_ALERTS, false)) != ORN_OK ||
	    (rc = es_sweep_start(m->store, &so, &m->sweep)) != ORN_OK)
		return rc;
	so.filter = ALERTS_FILTER;
	so.wants = sweep_wants_alert;
	so.fn = sweep_alert_commit;
	so.name = "mail alerts";
	return es_sweep_start(m->store, &so, &m->alert_sweep);
}

orn_rc mail_start(es_store *store, const mail_options *o, mail_service **out)
{
	mail_service *m = calloc(1, sizeof *m);
	orn_rc rc = ORN_ENOMEM;
	*out = NULL;
	if (m == NULL)
		return ORN_ENOMEM;
	m->store = store;
	m->keys = o->keys;
	atomic_init(&m->stopping, false);
	pthread_mutex_init(&m->users_lock, NULL);
	pthread_mutex_init(&m->inflight_lock, NULL);
	if ((m->inflight = hmap_create()) == NULL)
		goto fail;
	if (store == NULL || o == NULL) {
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
	if ((rc = markers_open(m)) != ORN_OK)
		goto fail;
	if (m->smtp_url != NULL) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			rc = ORN_EINTERNAL;
			goto fail;
		}
		m->curl_ready = true;
	}
	if ((rc = es_durable_ensure(m->store, &CONSUMER)) != ORN_OK ||
	    (rc = es_durable_ensure(m->store, &ALERTS_CONSUMER)) != ORN_OK ||
	    (rc = es_durable_ensure(m->store, &RESENDS_CONSUMER)) != ORN_OK)
		goto fail;
	if ((m->users = hmap_create()) == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	m->worker_count += 2; /* the last two: the resend worker, then the alert worker */
	m->workers = calloc(m->worker_count, sizeof *m->workers);
	if (m->workers == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < m->worker_count; i++)
		if ((rc = worker_init(m, &m->workers[i], i,
		                      i + 1 == m->worker_count   ? ROLE_ALERTS
		                      : i + 2 == m->worker_count ? ROLE_RESENDS
		                                                 : ROLE_ORDERS,
		                      true)) != ORN_OK)
			goto fail;
	for (unsigned i = 0; i < m->worker_count; i++) {
		if (pthread_create(&m->workers[i].thread, NULL, worker_main, &m->workers[i]) != 0) {
			rc = ORN_EINTERNAL;
			goto fail;
		}
		m->workers[i].started = true;
	}
	if (m->sweep_after_ms > 0 && (rc = sweepers_start(m)) != ORN_OK)
		goto fail;
	log_info("mail started", "transport", m->smtp_url != NULL ? "smtp" : "maildir", "tls",
	         m->smtp_url == NULL    ? "none"
	         : m->smtp_tls_required ? "required"
	                                : "opportunistic",
	         "consumer", MAIL_CONSUMER);
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
	atomic_store(&m->stopping, true);
	for (unsigned i = 0; m->workers != NULL && i < m->worker_count; i++)
		if (m->workers[i].started)
			pthread_join(m->workers[i].thread, NULL);
	es_sweep_stop(m->sweep);
	es_sweep_stop(m->alert_sweep);
	worker_dispose(&m->sweeper);
	worker_dispose(&m->alert_sweeper);
	for (unsigned i = 0; m->workers != NULL && i < m->worker_count; i++)
		worker_dispose(&m->workers[i]);
	free(m->workers);
	if (m->users != NULL) {
		size_t cursor = 0;
		const char *key;
		void *value;
		while (hmap_next(m->users, &cursor, &key, &value))
			free(value);
		hmap_destroy(m->users);
	}
	if (m->env != NULL)
		mdb_env_close(m->env);
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
	pthread_mutex_destroy(&m->users_lock);
	hmap_destroy(m->inflight);
	pthread_mutex_destroy(&m->inflight_lock);
	free(m);
}
