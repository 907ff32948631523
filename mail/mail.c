/* mail.c — the mail actor (see mail.h for the protocol and its guarantees).
 *
 * Threads: each worker owns its pull subscription, its curl handle and its
 * scratch order state; they share only the store (cnats is thread-safe),
 * the LMDB environment (MDB_NOTLS; LMDB serialises the writers) and the stop
 * flag. A worker fetches one commit at a time, so a commit never waits in a
 * worker's hands behind another one's SMTP timeout. */
#include "mail.h"

#include <errno.h>
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
#include "log.h"
#include "mail_render.h"
#include "metrics.h"

#define CONSUMER_FILTER    "orion.evt.order.>"
#define ORDER_SUBJECT      "orion.evt.order."
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
	int64_t fetch_error_logged_ms;
} worker;

struct mail_service {
	es_store *store;
	char *smtp_url, *maildir, *from, *public_url, *state_dir;
	bool smtp_tls_required; /* the URL carries credentials */
	char envelope_from[ORDER_EMAIL_MAX];
	uint8_t token_key[ORDER_TOKEN_KEY_BYTES];
	unsigned retry_max_ms;
	MDB_env *env;
	MDB_dbi markers;
	bool curl_ready;
	atomic_bool stopping;
	worker *workers;
	unsigned worker_count;
};

void mail_options_init(mail_options *o)
{
	memset(o, 0, sizeof *o);
	o->from = "orion@localhost";
	o->public_url = "http://127.0.0.1:8080";
	o->workers = 4;
	o->retry_max_ms = 5000;
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

/* ORN_OK if the marker of key exists, ORN_ENOTFOUND if not. */
static orn_rc marker_get(mail_service *m, const char *key)
{
	MDB_txn *txn = NULL;
	MDB_val k = {strlen(key), (void *)key}, v;
	int rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn);
	if (rc == MDB_SUCCESS) {
		rc = mdb_get(txn, m->markers, &k, &v);
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
 * name fixed by (order, status): a second copy replaces the first. */
static orn_rc maildir_write(worker *w, const char *order_id, const mail_message *msg, char *detail,
                            size_t cap)
{
	mail_service *m = w->service;
	char tmp[MAILDIR_PATH_MAX], dest[MAILDIR_PATH_MAX], newdir[MAILDIR_PATH_MAX];
	const char *status = order_status_name(msg->status);
	orn_rc rc = ORN_EIO;
	int fd = -1;

	snprintf(detail, cap, "maildir");
	if ((size_t)snprintf(tmp, sizeof tmp, "%s/tmp/%s.%s.%ld.%u.orion", m->maildir, order_id, status,
	                     (long)getpid(), w->index) >= sizeof tmp ||
	    (size_t)snprintf(dest, sizeof dest, "%s/new/%s.%s.orion", m->maildir, order_id, status) >=
	            sizeof dest ||
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
	if (order_event_decode(e->type, e->payload, e->payload_len, w->event) == ORN_OK)
		order_evolve(w->order, w->event);
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

/* Sends the email of (order_id, status) unless its marker exists. */
static outcome deliver(worker *w, const char *order_id, const char *subject, uint64_t seq,
                       order_status status, int64_t event_ms)
{
	mail_service *m = w->service;
	const char *status_name = order_status_name(status);
	char key[MAIL_KEY_MAX], token[ORDER_TOKEN_MAX] = "", detail[256], seq_s[24], latency[24];
	mail_message msg = {0};
	orn_rc rc;

	seq_text(seq_s, seq);
	if (mail_key(key, order_id, status) != ORN_OK)
		return DONE;
	rc = marker_get(m, key);
	if (rc == ORN_OK) {
		log_debug("mail already sent", "order", order_id, "status", status_name, "seq", seq_s);
		return DONE;
	}
	if (rc != ORN_ENOTFOUND) {
		log_warn("mail cannot read its sent markers", "order", order_id, "error", orn_rc_name(rc));
		return RETRY;
	}
	order_state_init(w->order);
	uint64_t read_to = 0;
	rc = es_read(m->store, subject, 1, seq, fold, w, &read_to);
	if (rc == ORN_OK && read_to != seq)
		rc = ORN_EUNAVAILABLE; /* a replica behind this commit answered: read again later */
	if (rc != ORN_OK) {
		log_warn("mail cannot load the order", "order", order_id, "seq", seq_s, "error",
		         orn_rc_name(rc));
		return RETRY;
	}
	if (w->order->status != status) {
		log_error("mail skips an event the order's history does not explain", "order", order_id,
		          "status", status_name, "seq", seq_s);
		return DONE;
	}
	if (status == ORDER_AWAITING_CONFIRMATION &&
	    order_token_make(m->token_key, order_id, token) != ORN_OK)
		return DONE;
	mail_input in = {.order_id = order_id,
	                 .order = w->order,
	                 .event_time_ms = event_ms,
	                 .date_ms = orn_now_ms(),
	                 .from = m->from,
	                 .public_url = m->public_url,
	                 .token = token};
	rc = mail_render(&in, &msg);
	sodium_memzero(token, sizeof token);
	if (rc == ORN_ENOMEM)
		return RETRY;
	if (rc != ORN_OK) {
		log_error("mail cannot render an email (bad recipient or options)", "order", order_id,
		          "status", status_name, "error", orn_rc_name(rc));
		return DONE;
	}
	rc = m->smtp_url != NULL ? smtp_send(w, w->order->customer_email, &msg, detail, sizeof detail)
	                         : maildir_write(w, order_id, &msg, detail, sizeof detail);
	/* The marker first: nothing may widen the window between the server's
	 * acceptance and the marker (see mail.h). */
	int64_t sent_ms = orn_now_ms();
	orn_rc marker_rc = rc == ORN_OK ? marker_put(m, key, seq, sent_ms) : ORN_OK;
	mail_message_dispose(&msg); /* wipes the buffers: they held the token */
	count_email(status_name, m->smtp_url != NULL ? "smtp" : "maildir", rc == ORN_OK, sent_ms - event_ms);
	if (rc != ORN_OK) {
		log_warn("mail send failed", "order", order_id, "status", status_name, "error",
		         orn_rc_name(rc), "detail", detail);
		return RETRY;
	}
	snprintf(latency, sizeof latency, "%lld", (long long)(sent_ms - event_ms));
	rc = marker_rc;
	if (rc != ORN_OK) /* sent: a redelivery could send it again, so say so loudly */
		log_error("mail sent but its marker was not written", "order", order_id, "status",
		          status_name, "error", orn_rc_name(rc));
	log_info("mail sent", "order", order_id, "status", status_name, "transport",
	         m->smtp_url != NULL ? "smtp" : "maildir", "latency_ms", latency, "seq", seq_s);
	return DONE;
}

static void handle(worker *w, natsMsg *msg)
{
	const char *subject = natsMsg_GetSubject(msg);
	jsMsgMetaData *meta = NULL;
	size_t count = 0;
	outcome result = DONE;

	if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
		natsMsg_Ack(msg, NULL);
		return;
	}
	uint64_t seq = meta->Sequence.Stream, deliveries = meta->NumDelivered;
	jsMsgMetaData_Destroy(meta);
	const char *order_id = strncmp(subject, ORDER_SUBJECT, strlen(ORDER_SUBJECT)) == 0
	                               ? subject + strlen(ORDER_SUBJECT)
	                               : "";
	orn_rc rc = env_decode_commit(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), w->envelopes,
	                              ENV_MAX_EVENTS, &count);
	if (rc != ORN_OK || !orn_id_valid(order_id)) {
		char seq_s[24];
		seq_text(seq_s, seq);
		log_error("mail skips an undecodable commit", "subject", subject, "seq", seq_s);
		natsMsg_Ack(msg, NULL);
		return;
	}
	for (size_t i = 0; i < count && result == DONE; i++) {
		if (order_event_decode(w->envelopes[i].type, w->envelopes[i].payload,
		                       w->envelopes[i].payload_len, w->event) != ORN_OK)
			continue;
		order_status status = mail_status_for_event(w->event->kind);
		if (status == ORDER_NONE)
			continue;
		log_set_correlation(w->envelopes[i].correlation);
		result = deliver(w, order_id, subject, seq, status, w->event->data.time_ms);
		log_set_correlation(NULL);
	}
	if (result == RETRY)
		natsMsg_NakWithDelay(
		        msg, es_backoff_ms(deliveries, RETRY_FIRST_MS, (int64_t)w->service->retry_max_ms),
		        NULL);
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
			handle(w, list.Msgs[i]);
		natsMsgList_Destroy(&list);
	}
	return NULL;
}

/* ---- lifecycle ---- */

static orn_rc worker_init(mail_service *m, worker *w, unsigned index)
{
	w->service = m;
	w->index = index;
	w->order = malloc(sizeof *w->order);
	w->event = malloc(sizeof *w->event);
	w->envelopes = malloc(sizeof *w->envelopes * ENV_MAX_EVENTS);
	if (w->order == NULL || w->event == NULL || w->envelopes == NULL)
		return ORN_ENOMEM;
	if (m->smtp_url != NULL && (w->curl = curl_easy_init()) == NULL)
		return ORN_ENOMEM;
	orn_rc rc = es_durable_bind(m->store, &CONSUMER, &w->sub);
	if (rc != ORN_OK)
		log_error("mail cannot bind to its consumer", "error", orn_rc_name(rc));
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
	m->worker_count = o->workers == 0 ? 4 : o->workers > WORKERS_MAX ? WORKERS_MAX : o->workers;
	return rc;
}

orn_rc mail_start(es_store *store, const mail_options *o, mail_service **out)
{
	mail_service *m = calloc(1, sizeof *m);
	orn_rc rc = ORN_ENOMEM;
	*out = NULL;
	if (m == NULL)
		return ORN_ENOMEM;
	m->store = store;
	atomic_init(&m->stopping, false);
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
	if ((rc = es_durable_ensure(m->store, &CONSUMER)) != ORN_OK)
		goto fail;
	m->workers = calloc(m->worker_count, sizeof *m->workers);
	if (m->workers == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < m->worker_count; i++)
		if ((rc = worker_init(m, &m->workers[i], i)) != ORN_OK)
			goto fail;
	for (unsigned i = 0; i < m->worker_count; i++) {
		if (pthread_create(&m->workers[i].thread, NULL, worker_main, &m->workers[i]) != 0) {
			rc = ORN_EINTERNAL;
			goto fail;
		}
		m->workers[i].started = true;
	}
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
	for (unsigned i = 0; m->workers != NULL && i < m->worker_count; i++)
		worker_dispose(&m->workers[i]);
	free(m->workers);
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
	free(m);
}
