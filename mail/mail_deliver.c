/* mail_deliver.c — the delivery protocol of one email (mail.h, ADR 013,
 * ADR 024), whatever made it (an order's status, a resend, a low-stock alert).
 *
 *   1. this process: a worker and the sweeper never deliver one email at once
 *      (the in-flight set);
 *   2. this host: a sent marker means it went out and the log missed it (a
 *      kill in between): the log gets its MailDelivered, nothing is sent;
 *   3. every host: the attempt is claimed in the delivery log (ClaimAttempt,
 *      an append on the log's version through kit_execute): a settled log or
 *      another instance's claim means nothing to send now;
 *   4. render, send, marker, then the outcome in the log (which ends the
 *      claim): MailDelivered, or MailAttemptFailed (and MailFailed at the
 *      bound, or past a confirmation's deadline).
 * A fresh email costs two appends: the claim (its log's first commit, valid on
 * its acknowledgement) and the outcome (one confirming read). */
#include "mail-internal.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define CLAIM_LEASE_MS                                                                                       \
	30000 /* a claim whose instance died lapses then (the ack wait: the redelivery's time) */

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

/* ---- the delivery log ---- */

static const char *log_key(const mail_email *e)
{
	return e->log_key[0] != '\0' ? e->log_key : e->key;
}

/* Executes a command of the delivery log (kit_execute): w->log receives the
 * log after it. */
static orn_rc execute(mail_worker *w, const mail_email *e, const mail_log_command *c, kit_result *out)
{
	mail_service *m = w->m;
	char id[MAIL_LOG_ID_MAX], command_id[ENV_ID_MAX];
	orn_rc rc = mail_log_id(id, log_key(e));
	mp_writer_reset(w->payload);
	if (rc == ORN_OK)
		rc = mail_log_command_encode(w->payload, c);
	if (rc != ORN_OK)
		return rc;
	snprintf(command_id, sizeof command_id, "%s:%s:%s:%lld", id, mail_log_command_type(c->kind),
	         kit_hub_instance(m->hub), (long long)c->at_ms);
	kit_command cmd = {.type = mail_log_command_type(c->kind),
	                   .payload = mp_writer_data(w->payload),
	                   .len = mp_writer_size(w->payload),
	                   .id = command_id,
	                   .correlation = e->correlation != NULL && e->correlation[0] != '\0' ? e->correlation
	                                                                                      : NULL,
	                   .actor = MAIL_ACTOR,
	                   .time_ms = c->at_ms,
	                   .likely_new = c->kind == MAIL_LOG_CLAIM && e->generation == 0 && !w->sweeping};
	return kit_execute(m->hub, m->store, &mail_log_writer_kind, id, &cmd, w->log, out);
}

static void command_init(mail_log_command *c, mail_log_command_kind kind, const mail_email *e, int64_t at_ms,
                         unsigned max_attempts, const char *error)
{
	memset(c, 0, sizeof *c);
	c->kind = kind;
	c->subject = e->subject;
	c->at_ms = at_ms;
	c->max_attempts = max_attempts;
	c->deadline_ms = e->deadline_ms;
	c->generation = e->generation;
	mail_log_error_set(c->error, error);
}

/* Appends an outcome: ORN_OK once the log has it (or is settled already).
 * *failed_for_good: the log failed the email. */
static orn_rc record(mail_worker *w, const mail_email *e, const mail_log_command *c, bool *failed_for_good)
{
	kit_result r;
	orn_rc rc = execute(w, e, c, &r);
	*failed_for_good = false;
	if (rc == ORN_OK && r.outcome == BUS_ACCEPTED) {
		*failed_for_good = w->log->status == MAIL_LOG_STATUS_FAILED;
		return ORN_OK;
	}
	if (rc == ORN_OK && r.outcome == BUS_REJECTED) {
		log_warn("mail cannot log an attempt", e->ref_name, e->ref, "reason", r.code);
		return strcmp(r.code, mail_log_verdict_code(MAIL_LOG_REJ_SETTLED)) == 0 ? ORN_OK : ORN_EINVAL;
	}
	log_warn("mail cannot append to its delivery log", e->ref_name, e->ref, "error",
	         rc != ORN_OK ? orn_rc_name(rc) : r.code);
	return rc != ORN_OK ? rc : ORN_EUNAVAILABLE;
}

static mail_outcome record_outcome(mail_worker *w, const mail_email *e, mail_log_command_kind kind,
                                   int64_t at_ms, unsigned max_attempts, const char *error)
{
	mail_log_command c;
	bool failed_for_good;
	command_init(&c, kind, e, at_ms, max_attempts, error);
	return record(w, e, &c, &failed_for_good) == ORN_OK ? MAIL_DONE : MAIL_RETRY;
}

orn_rc mail_log_settled(mail_worker *w, const char *key, uint32_t generation, bool *settled)
{
	char id[MAIL_LOG_ID_MAX];
	kit_folded at;
	orn_rc rc = mail_log_id(id, key);
	*settled = false;
	if (rc == ORN_OK)
		rc = kit_fold(w->m->hub, w->m->store, &mail_log_writer_kind, id, NULL, w->log, &at);
	if (rc == ORN_OK)
		*settled = w->log->status != MAIL_LOG_STATUS_PENDING || w->log->generation != generation;
	return rc;
}

/* ---- one email ---- */

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

/* The sweeper steps back from an email whose log a worker touched within the
 * sweeper's delay (a worker retrying through an SMTP outage), and from a
 * settled one: true when it goes on. *outcome otherwise. */
static bool sweep_goes_on(mail_worker *w, const mail_email *e, mail_outcome *outcome)
{
	bool settled = false;
	if (mail_log_settled(w, log_key(e), e->generation, &settled) != ORN_OK) {
		*outcome = MAIL_RETRY;
		return false;
	}
	*outcome = settled ? MAIL_DONE : MAIL_RETRY;
	return !settled && !(w->log->exists && w->log->updated_at_ms > orn_now_ms() - w->m->sweep_after_ms);
}

/* Claims the attempt in the delivery log: true when this instance holds it. */
static bool claim(mail_worker *w, const mail_email *e, mail_outcome *outcome)
{
	mail_log_command c;
	kit_result r;
	command_init(&c, MAIL_LOG_CLAIM, e, orn_now_ms(), w->m->max_attempts, NULL);
	snprintf(c.by, sizeof c.by, "%s", kit_hub_instance(w->m->hub));
	c.lease_ms = CLAIM_LEASE_MS;
	orn_rc rc = execute(w, e, &c, &r);
	*outcome = MAIL_RETRY;
	if (rc != ORN_OK || r.outcome == BUS_FAILED) {
		log_warn("mail cannot claim an attempt", e->ref_name, e->ref, "status", e->label, "error",
		         rc != ORN_OK ? orn_rc_name(rc) : r.code);
		return false;
	}
	if (r.outcome == BUS_ACCEPTED)
		return true;
	if (strcmp(r.code, mail_log_verdict_code(MAIL_LOG_REJ_CLAIMED)) == 0) {
		log_debug("mail attempt claimed by another instance", e->ref_name, e->ref, "status", e->label,
		          "by", w->log->claimed_by);
		return false; /* looked at again later: sent, or its claim lapsed */
	}
	if (strcmp(r.code, mail_log_verdict_code(MAIL_LOG_REJ_SETTLED)) != 0)
		log_error("mail cannot claim an attempt", e->ref_name, e->ref, "status", e->label, "reason",
		          r.code);
	log_debug("mail already settled", e->ref_name, e->ref, "status", e->label);
	*outcome = MAIL_DONE; /* settled, or another generation's (a resend is the resend worker's) */
	return false;
}

/* Renders, sends, marks and records; the attempt is claimed. */
static mail_outcome send_claimed(mail_worker *w, const mail_email *e)
{
	mail_service *m = w->m;
	char detail[256], seq_s[24], latency[24], attempt[16];
	mail_message msg = {0};
	bool failed_for_good = false;
	mail_log_command c;

	orn_rc rc = e->render(w, e, e->closure, &msg);
	if (rc == ORN_OK && e->generation > 0 && resend_message_id(&msg, e->generation) != ORN_OK)
		rc = ORN_ENOMEM; /* retried */
	if (rc == ORN_ENOMEM) {
		mail_message_dispose(&msg);
		return MAIL_RETRY; /* the claim lapses, or this instance takes it again */
	}
	if (rc != ORN_OK) {
		log_error("mail cannot render an email (bad recipient or options)", e->ref_name, e->ref,
		          "status", e->label, "error", orn_rc_name(rc));
		(void)record_outcome(w, e, MAIL_LOG_RECORD_FAILED, orn_now_ms(), 1,
		                     "cannot render the email");
		return MAIL_DONE;
	}
	rc = mail_transport_send(w->transport, e->to, e->file, &msg, detail, sizeof detail);
	/* The marker first: nothing may widen the window between the server's
	 * acceptance and the marker (see mail.h). */
	int64_t sent_ms = orn_now_ms();
	orn_rc marker_rc = rc == ORN_OK ? mail_marks_put(m->marks, e->key, e->seq, sent_ms) : ORN_OK;
	mail_message_dispose(&msg); /* wipes the buffers: they held the token */
	count_email(e->label, mail_transport_name(m), rc == ORN_OK, sent_ms - e->event_ms);
	snprintf(attempt, sizeof attempt, "%" PRIu32, w->log->attempts + 1);
	if (rc != ORN_OK) {
		log_warn("mail send failed", e->ref_name, e->ref, "status", e->label, "attempt", attempt,
		         "error", orn_rc_name(rc), "detail", detail);
		command_init(&c, MAIL_LOG_RECORD_FAILED, e, sent_ms, m->max_attempts, detail);
		if (record(w, e, &c, &failed_for_good) == ORN_OK && failed_for_good) {
			log_error("mail failed for good: the retry bound is reached", e->ref_name, e->ref,
			          "status", e->label, "attempts", attempt, "detail", detail);
			return MAIL_DONE;
		}
		return MAIL_RETRY;
	}
	snprintf(seq_s, sizeof seq_s, "%llu", (unsigned long long)e->seq);
	snprintf(latency, sizeof latency, "%lld", (long long)(sent_ms - e->event_ms));
	if (marker_rc != ORN_OK) /* sent: a redelivery could send it again, so say so loudly */
		log_error("mail sent but its marker was not written", e->ref_name, e->ref, "status", e->label,
		          "error", orn_rc_name(marker_rc));
	log_info("mail sent", e->ref_name, e->ref, "status", e->label, "transport", mail_transport_name(m),
	         "latency_ms", latency, "seq", seq_s, "attempt", attempt);
	/* A log that missed the delivery is completed by the redelivery (marker found). */
	return record_outcome(w, e, MAIL_LOG_RECORD_SENT, sent_ms, m->max_attempts, NULL);
}

/* The protocol of e, once this process's in-flight set holds it. */
static mail_outcome deliver_held(mail_worker *w, const mail_email *e)
{
	mail_service *m = w->m;
	mail_outcome outcome = MAIL_RETRY;
	int64_t sent_ms = 0;
	orn_rc rc = mail_marks_get(m->marks, e->key, &sent_ms);
	if (rc != ORN_OK && rc != ORN_ENOTFOUND) {
		log_warn("mail cannot read its sent markers", e->ref_name, e->ref, "error", orn_rc_name(rc));
		return MAIL_RETRY;
	}
	if (w->sweeping && !sweep_goes_on(w, e, &outcome))
		return outcome;
	if (rc == ORN_OK) /* sent from here, but the log missed it (a kill, NATS down): complete the log */
		return record_outcome(w, e, MAIL_LOG_RECORD_SENT, sent_ms > 0 ? sent_ms : orn_now_ms(),
		                      m->max_attempts, NULL);
	if (!claim(w, e, &outcome))
		return outcome;
	if (e->matters != NULL && (w->log->attempts > 0 || e->generation > 0) && !e->matters(w, e)) {
		mail_email moot = *e;
		moot.deadline_ms = orn_now_ms(); /* the failed attempt recorded now is the last */
		log_info("mail gives up an email that no longer matters", e->ref_name, e->ref, "status",
		         e->label);
		return record_outcome(w, &moot, MAIL_LOG_RECORD_FAILED, moot.deadline_ms, m->max_attempts,
		                      "no longer needed: the order moved on");
	}
	return send_claimed(w, e);
}

/* Takes e's key for this caller if no other worker or sweeper of this
 * process is delivering it; false if one is (or memory ran out). */
static bool inflight_take(mail_service *m, const char *key)
{
	bool taken;
	pthread_mutex_lock(&m->inflight_lock);
	taken = hmap_get(m->inflight, key) == NULL && hmap_put(m->inflight, key, m) == ORN_OK;
	pthread_mutex_unlock(&m->inflight_lock);
	return taken;
}

static void inflight_drop(mail_service *m, const char *key)
{
	pthread_mutex_lock(&m->inflight_lock);
	hmap_remove(m->inflight, key);
	pthread_mutex_unlock(&m->inflight_lock);
}

orn_rc mail_open_recipient(mail_service *m, const char *token, const char *field, char *out, size_t cap)
{
	orn_rc rc = ORN_EUNAVAILABLE;
	if (token[0] == '\0')
		rc = ORN_ENOTFOUND; /* blanked: an erased customer's */
	else if (m->keys != NULL)
		rc = ks_open_token(m->keys, token, field, NULL, out, cap);
	else if (!pd_is_sealed(token))
		rc = (size_t)snprintf(out, cap, "%s", token) < cap ? ORN_OK : ORN_ETOOBIG;
	if (rc != ORN_OK && rc != ORN_ENOTFOUND)
		log_warn("mail cannot open a recipient", "error", orn_rc_name(rc));
	return rc;
}

mail_outcome mail_deliver(mail_worker *w, const mail_email *e)
{
	mail_service *m = w->m;
	/* The claim of the log is this instance's for a worker and the sweeper
	 * alike: within the process, the in-flight set keeps them apart. */
	if (!inflight_take(m, e->key)) {
		log_debug("mail in flight elsewhere in this process", e->ref_name, e->ref, "status",
		          e->label);
		return MAIL_RETRY;
	}
	mail_outcome o = deliver_held(w, e);
	inflight_drop(m, e->key);
	return o;
}
