/* mail_accounts.c — the emails of accounts (ADR 031): the handler of the
 * durable consumer orion_mail_accounts (user commits). For a
 * VerificationRequested, a RegistrationRepeated or a PasswordResetRequested
 * it folds the account up to the commit (which also says whether the commit
 * is a valid one, ADR 015), opens its sealed address, computes the link's
 * token again from the request id (the event holds only its hash; the link
 * key is derived from the index key, personal.h) and sends the email through
 * the delivery protocol (mail_deliver: sent marker, claim in the delivery
 * log, so that two instances never both send it). Marker key
 * "<kind>/<account>/<request id>". Every other user commit is done at once. */
#include "mail-internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "user.h"

typedef struct account_email {
	mail_account_kind kind;
	const char *token; /* the link's, NULL for "account exists" */
} account_email;

static orn_rc render_account(mail_worker *w, const mail_email *e, void *closure, mail_message *msg)
{
	const account_email *ae = closure;
	mail_service *m = w->m;
	char id[MAIL_LOG_ID_MAX];
	orn_rc rc = mail_log_id(id, e->key);
	if (rc != ORN_OK)
		return rc;
	mail_account_input in = {.kind = ae->kind,
	                         .token = ae->token,
	                         .to = e->to,
	                         .mail_id = id,
	                         .event_time_ms = e->event_ms,
	                         .date_ms = orn_now_ms(),
	                         .from = m->from,
	                         .public_url = m->public_url};
	return mail_render_account(&in, msg);
}

/* The email an event type asks for; false for none. */
static bool kind_for_type(const char *type, mail_account_kind *kind)
{
	if (strcmp(type, USER_EV_VERIFICATION_REQUESTED) == 0)
		*kind = MAIL_ACCOUNT_VERIFY;
	else if (strcmp(type, USER_EV_REGISTRATION_REPEATED) == 0)
		*kind = MAIL_ACCOUNT_EXISTS;
	else if (strcmp(type, USER_EV_PASSWORD_RESET_REQUESTED) == 0)
		*kind = MAIL_ACCOUNT_RESET;
	else
		return false;
	return true;
}

bool mail_account_wants(void *closure, const env_envelope *e)
{
	mail_account_kind kind;
	(void)closure;
	return kind_for_type(e->type, &kind);
}

/* The email of one event of the commit c. */
static mail_outcome deliver_account(mail_worker *w, const kit_commit *c, const env_envelope *env,
                                    mail_account_kind kind)
{
	mail_service *m = w->m;
	user_event ev;
	user_state *account = NULL;
	char token[PD_LINK_MAX] = "", to[USER_EMAIL_MAX] = "";
	const char *label = mail_account_kind_name(kind);
	account_email ae = {.kind = kind, .token = kind == MAIL_ACCOUNT_EXISTS ? NULL : token};
	mail_email e = {.label = label,
	                .ref_name = "account",
	                .ref = c->id,
	                .seq = c->seq,
	                .event_ms = env->time_ms,
	                .correlation = env->correlation,
	                .to = to,
	                .render = render_account,
	                .closure = &ae};
	mail_outcome result = MAIL_DONE;
	if (user_event_decode(env->type, env->payload, env->payload_len, &ev) != ORN_OK) {
		log_error("mail skips an undecodable account event", "account", c->id, "type", env->type);
		return MAIL_DONE;
	}
	snprintf(e.key, sizeof e.key, "%s/%s/%s", label, c->id, ev.fields.request_id);
	char id[MAIL_LOG_ID_MAX];
	if (mail_log_id(id, e.key) != ORN_OK)
		return MAIL_DONE;
	snprintf(e.file, sizeof e.file, "%s", id);
	if ((account = malloc(sizeof *account)) == NULL)
		return MAIL_RETRY;
	kit_fold_query q = {.up_to = c->seq, .watch = c->seq};
	kit_folded at;
	orn_rc rc = kit_fold(m->hub, m->store, &user_kind, c->id, &q, account, &at);
	if (rc != ORN_OK || at.at.last_seq < c->seq) {
		log_warn("mail cannot load the account", "account", c->id, "error",
		         orn_rc_name(rc != ORN_OK ? rc : ORN_EUNAVAILABLE));
		result = MAIL_RETRY;
		goto done;
	}
	if (!at.watched_valid || !account->exists || account->erasure != USER_ACTIVE)
		goto done; /* a void commit changes nothing (ADR 015); an erased account hears nothing */
	snprintf(e.subject.kind, sizeof e.subject.kind, "%s", label);
	snprintf(e.subject.recipient, sizeof e.subject.recipient, "%s", account->fields.email);
	switch (mail_open_recipient(m, account->fields.email, "email", to, sizeof to)) {
	case ORN_OK:
		break;
	case ORN_ENOTFOUND:
		log_info("mail not sent: the customer was erased", "account", c->id, "kind", label);
		goto done;
	default:
		result = MAIL_RETRY;
		goto done;
	}
	if (ae.token != NULL &&
	    (m->keys == NULL ||
	     ks_link_token(m->keys, kind == MAIL_ACCOUNT_VERIFY ? USER_LINK_VERIFY : USER_LINK_RESET, c->id,
	                   ev.fields.request_id, token) != ORN_OK)) {
		log_error("mail cannot make an account link", "account", c->id, "kind", label);
		result = m->keys == NULL ? MAIL_RETRY : MAIL_DONE;
		goto done;
	}
	result = mail_deliver(w, &e);
done:
	sodium_memzero(token, sizeof token);
	sodium_memzero(to, sizeof to);
	free(account);
	return result;
}

kit_verdict mail_account_commit(void *worker, const kit_commit *c)
{
	mail_worker *w = worker;
	mail_outcome result = MAIL_DONE;
	mail_account_kind kind;
	w->sweeping = c->delivered == 0;
	for (size_t i = 0; i < c->count && result == MAIL_DONE; i++)
		if (kind_for_type(c->events[i].type, &kind))
			result = deliver_account(w, c, &c->events[i], kind);
	return result == MAIL_DONE ? KIT_DONE : KIT_RETRY;
}
