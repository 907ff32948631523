/* mail_orders.c — the emails of an order's statuses, and their resends (ADR
 * 008, 013, 023): the handlers of the durable consumers orion_mail (order
 * commits) and orion_mail_resends (delivery log commits).
 *
 * An email shows the order as it was right after the event: the order is
 * folded up to the event's commit (kit_fold), which also says whether that
 * commit is a valid one (ADR 015) without another read. A resend shows it as
 * it was when it first reached the email's status. */
#include "mail-internal.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "user.h"

typedef struct order_email {
	const char *order_id;
	order_status status;
} order_email;

/* Renders the email of the order w->order holds (deliver_order folded it). */
static orn_rc render_order(mail_worker *w, const mail_email *e, void *closure, mail_message *msg)
{
	order_email *oe = closure;
	mail_service *m = w->m;
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
	                 .to = e->to};
	orn_rc rc = mail_render(&in, msg);
	sodium_memzero(token, sizeof token);
	return rc;
}

/* Whether a confirmation email still matters: its order, as the log has it
 * now, still awaits the confirmation (a cancelled or expired order needs no
 * link). A log that cannot be read counts as mattering (retried). */
static bool confirmation_matters(mail_worker *w, const mail_email *e)
{
	order_state *now = malloc(sizeof *now);
	kit_folded at;
	bool matters = true;
	if (now == NULL)
		return true;
	if (kit_fold(w->m->hub, w->m->store, &order_kind, e->ref, NULL, now, &at) == ORN_OK)
		matters = now->status == ORDER_AWAITING_CONFIRMATION;
	free(now);
	return matters;
}

static bool reached(const void *state, void *closure)
{
	const order_state *order = state;
	return order->status == *(const order_status *)closure;
}

/* The email of (order_id, status), generation 0 (the first sending, the order
 * folded up to seq, whose validity *valid tells) or a resend (the order
 * folded up to its first event that reached status). The delivery log
 * records the customer's address; a confirmation is retried until the
 * order's confirmation deadline while the order still awaits it (ADR 023). */
static mail_outcome deliver_order(mail_worker *w, const char *order_id, uint64_t seq, order_status status,
                                  int64_t event_ms, const char *correlation, uint32_t generation)
{
	order_email oe = {order_id, status};
	mail_email e = {.label = order_status_name(status),
	                .ref_name = "order",
	                .ref = order_id,
	                .seq = seq,
	                .event_ms = event_ms,
	                .correlation = correlation,
	                .generation = generation,
	                .render = render_order,
	                .closure = &oe};
	if (mail_key(e.log_key, order_id, status) != ORN_OK)
		return MAIL_DONE;
	if (generation == 0) {
		snprintf(e.key, sizeof e.key, "%s", e.log_key);
		snprintf(e.file, sizeof e.file, "%s.%s", order_id, e.label);
	} else {
		snprintf(e.key, sizeof e.key, "%s#r%" PRIu32, e.log_key, generation);
		snprintf(e.file, sizeof e.file, "%s.%s.r%" PRIu32, order_id, e.label, generation);
	}
	kit_fold_query q = {.up_to = seq, .watch = generation == 0 ? seq : 0};
	if (generation > 0) {
		q.until = reached;
		q.closure = &status;
	}
	kit_folded at;
	orn_rc rc = kit_fold(w->m->hub, w->m->store, &order_kind, order_id, &q, w->order, &at);
	if (rc != ORN_OK || (at.at.last_seq < seq && !(generation > 0 && w->order->status == status))) {
		log_warn("mail cannot load the order", "order", order_id, "error",
		         orn_rc_name(rc != ORN_OK ? rc : ORN_EUNAVAILABLE));
		return MAIL_RETRY;
	}
	if (generation == 0 && !at.watched_valid)
		return MAIL_DONE; /* a void commit changes nothing (ADR 015) */
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
	switch (mail_open_recipient(w->m, w->order->customer_email, "customer_email", to, sizeof to)) {
	case ORN_OK:
		break;
	case ORN_ENOTFOUND:
		log_info("mail not sent: the customer was erased", "order", order_id, "status", e.label);
		return MAIL_DONE;
	default:
		return MAIL_RETRY;
	}
	e.to = to;
	mail_outcome result = mail_deliver(w, &e);
	sodium_memzero(to, sizeof to);
	return result;
}

/* The status email an order event type asks for, ORDER_NONE if none. */
static order_status status_for_type(const char *type)
{
	const char *t;
	for (int k = 0; (t = order_event_type((order_event_kind)k)) != NULL; k++)
		if (strcmp(t, type) == 0)
			return mail_status_for_event((order_event_kind)k);
	return ORDER_NONE;
}

bool mail_order_wants(void *closure, const env_envelope *e)
{
	(void)closure;
	return status_for_type(e->type) != ORDER_NONE;
}

kit_verdict mail_order_commit(void *worker, const kit_commit *c)
{
	mail_worker *w = worker;
	mail_outcome result = MAIL_DONE;
	w->sweeping = c->delivered == 0;
	for (size_t i = 0; i < c->count && result == MAIL_DONE; i++) {
		const env_envelope *env = &c->events[i];
		order_status status = status_for_type(env->type);
		if (status == ORDER_NONE) /* most commits: no email, no read */
			continue;
		if (order_event_decode(env->type, env->payload, env->payload_len, w->event) != ORN_OK)
			continue;
		char key[MAIL_KEY_MAX + 96];
		bool settled = false;
		if (w->sweeping && mail_key(key, c->id, status) == ORN_OK) {
			/* most emails are settled when they fall due: the log says so
			 * without a read of the order */
			if (mail_log_settled(w, key, 0, &settled) != ORN_OK)
				return KIT_RETRY;
			if (settled)
				continue;
		}
		result = deliver_order(w, c->id, c->seq, status, w->event->data.time_ms, env->correlation, 0);
	}
	return result == MAIL_DONE ? KIT_DONE : KIT_RETRY;
}

/* The order status named name; ORDER_NONE for another string. */
static order_status status_named(const char *name)
{
	const char *n;
	for (int k = ORDER_PENDING; (n = order_status_name((order_status)k)) != NULL; k++)
		if (strcmp(n, name) == 0)
			return (order_status)k;
	return ORDER_NONE;
}

bool mail_resend_wants(void *closure, const env_envelope *e)
{
	(void)closure;
	return strcmp(e->type, MAIL_LOG_EV_RESEND_REQUESTED) == 0;
}

/* A MailResendRequested commit of a delivery log (a valid one: the kit
 * checks): the order's email once more, as generation ev.attempt, with the
 * order read up to its present head. */
kit_verdict mail_resend_commit(void *worker, const kit_commit *c)
{
	mail_worker *w = worker;
	mail_log_event ev;
	uint64_t head = 0;
	w->sweeping = false;
	for (size_t i = 0; i < c->count; i++) {
		const env_envelope *env = &c->events[i];
		if (!mail_resend_wants(NULL, env) ||
		    mail_log_event_decode(env->type, env->payload, env->payload_len, &ev) != ORN_OK ||
		    ev.subject.order_id[0] == '\0')
			continue;
		order_status status = status_named(ev.subject.kind);
		if (status == ORDER_NONE || !es_id_valid(ev.subject.order_id))
			continue;
		if (es_head(w->m->store, ORDER_AGGREGATE, ev.subject.order_id, &head) != ORN_OK)
			return KIT_RETRY;
		if (head == 0)
			continue;
		if (deliver_order(w, ev.subject.order_id, head, status, ev.at_ms, env->correlation,
		                  ev.attempt) != MAIL_DONE)
			return KIT_RETRY;
	}
	return KIT_DONE;
}
