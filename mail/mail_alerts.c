/* mail_alerts.c — low-stock alerts (ADR 013, item 7): the handler of the
 * durable consumer orion_mail_alerts (stock commits). For each
 * LowStockDetected it (1) skips a repeat of an open crossing of the same
 * product, (2) catches its map of users up with orion.evt.user.> (kept in
 * memory, read incrementally up to the stream's present), (3) folds the
 * product for its sku and name, and (4) sends one email to every admin
 * through the delivery protocol (mail_deliver), marker key
 * "low_stock/<product>/<seq>/<user key>". Every other stock commit is done at
 * once, without a read. */
#include "mail-internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stock.h"
#include "user.h"

#define USERS_FILTER     "orion.evt.user.>"
#define USER_SUBJECT     "orion.evt.user."
#define LOW_STOCK_EVENT  "LowStockDetected" /* the stock aggregate's, issue 7 */
#define LOW_STOCK_PREFIX "LowStock"         /* LowStock* other than Detected: a re-arm */

/* A user as the alert worker knows it: enough to tell admins and reach them. */
typedef struct known_user {
	char email[USER_SEALED_MAX]; /* sealed, as the event holds it (ADR 027) */
	user_role role;
} known_user;

/* Users read so far, shared by the alert worker and the alert sweeper. */
struct mail_users {
	pthread_mutex_t lock;
	hmap *users;       /* user key -> known_user */
	uint64_t users_to; /* the stream sequence the users are read up to */
};

orn_rc mail_users_create(mail_users **out)
{
	mail_users *u = calloc(1, sizeof *u);
	*out = NULL;
	if (u == NULL || (u->users = hmap_create()) == NULL) {
		free(u);
		return ORN_ENOMEM;
	}
	pthread_mutex_init(&u->lock, NULL);
	*out = u;
	return ORN_OK;
}

void mail_users_destroy(mail_users *u)
{
	size_t cursor = 0;
	const char *key;
	void *value;
	if (u == NULL)
		return;
	while (hmap_next(u->users, &cursor, &key, &value))
		free(value);
	hmap_destroy(u->users);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

/* ---- the crossing ---- */

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
	case STOCK_RETURNED:
		c->on_hand += ev.quantity;
		break;
	default:
		break;
	}
	if (c->on_hand - c->reserved >= c->threshold)
		c->open = false;
	return ORN_OK;
}

/* ---- the admins ---- */

/* Folds orion.evt.user.> into the map (its lock held). */
static orn_rc user_fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	mail_users *u = closure;
	user_event ev;
	(void)seq;
	if (strncmp(subject, USER_SUBJECT, strlen(USER_SUBJECT)) != 0 ||
	    user_event_decode(e->type, e->payload, e->payload_len, &ev) != ORN_OK)
		return ORN_OK;
	const char *key = subject + strlen(USER_SUBJECT);
	known_user *k = hmap_get(u->users, key);
	if (ev.kind == USER_REGISTERED) {
		if (k == NULL) {
			if ((k = calloc(1, sizeof *k)) == NULL)
				return ORN_ENOMEM;
			if (hmap_put(u->users, key, k) != ORN_OK) {
				free(k);
				return ORN_ENOMEM;
			}
		}
		memcpy(k->email, ev.fields.email, sizeof k->email);
		k->role = ev.fields.role;
	} else if (ev.kind == USER_ROLE_CHANGED && k != NULL) {
		k->role = ev.fields.role;
	}
	return ORN_OK;
}

/* An admin as one alert sees it. */
typedef struct admin_ref {
	char key[ES_ID_MAX + 1];
	char email[USER_SEALED_MAX]; /* sealed */
} admin_ref;

/* The admins now: the user events appended since the last call are read up
 * to the stream's present (an admin registered before the alert's event is
 * always known), then the admins are copied out, so that no lock is held
 * while the alerts go out. *out is the caller's to free. */
static orn_rc admins_now(mail_service *m, admin_ref **out, size_t *count)
{
	mail_users *u = m->users;
	uint64_t last = 0;
	size_t cursor = 0, n = 0;
	const char *key;
	void *value;

	*out = NULL;
	*count = 0;
	pthread_mutex_lock(&u->lock);
	orn_rc rc = es_read(m->store, USERS_FILTER, u->users_to + 1, 0, user_fold, u, &last);
	if (rc == ORN_OK && last > u->users_to)
		u->users_to = last;
	if (rc == ORN_OK && hmap_count(u->users) > 0 &&
	    (*out = calloc(hmap_count(u->users), sizeof **out)) == NULL)
		rc = ORN_ENOMEM;
	while (rc == ORN_OK && hmap_next(u->users, &cursor, &key, &value)) {
		const known_user *k = value;
		if (k->role != USER_ROLE_ADMIN)
			continue;
		snprintf((*out)[n].key, sizeof(*out)[n].key, "%s", key);
		memcpy((*out)[n].email, k->email, sizeof(*out)[n].email);
		n++;
	}
	pthread_mutex_unlock(&u->lock);
	*count = n;
	return rc;
}

/* ---- one alert ---- */

static orn_rc render_alert(mail_worker *w, const mail_email *e, void *closure, mail_message *msg)
{
	const stock_event *ls = closure; /* LowStockDetected */
	mail_service *m = w->m;
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
	                       .to = e->to,
	                       .mail_id = id,
	                       .event_time_ms = e->event_ms,
	                       .date_ms = orn_now_ms(),
	                       .from = m->from,
	                       .public_url = m->public_url};
	return mail_render_low_stock(&in, msg);
}

/* The key of the alert of (product, stock event seq) to the user key. */
static void alert_key(char *out, size_t cap, const char *product_id, uint64_t seq, const char *user_key)
{
	snprintf(out, cap, "%s/%s/%llu/%s", MAIL_LOG_KIND_LOW_STOCK, product_id, (unsigned long long)seq,
	         user_key);
}

/* Whether every admin's alert of this event is settled in the delivery log
 * (false with no admin: the full path logs that). */
static orn_rc alerts_settled(mail_worker *w, const char *product_id, uint64_t seq, bool *settled)
{
	admin_ref *admins = NULL;
	size_t count = 0;
	char key[MAIL_KEY_BYTES];
	orn_rc rc = admins_now(w->m, &admins, &count);

	*settled = rc == ORN_OK && count > 0;
	for (size_t i = 0; rc == ORN_OK && *settled && i < count; i++) {
		alert_key(key, sizeof key, product_id, seq, admins[i].key);
		rc = mail_log_settled(w, key, 0, settled);
	}
	free(admins);
	return rc;
}

/* Whether the crossing of this LowStockDetected was alerted already (a
 * repeat), from the item's history before it. */
static orn_rc repeats_open_crossing(mail_service *m, const char *subject, uint64_t seq, bool *repeat)
{
	crossing c = {0};
	orn_rc rc = seq > 1 ? es_read(m->store, subject, 1, seq - 1, crossing_fold, &c, NULL) : ORN_OK;
	*repeat = rc == ORN_OK && c.open;
	return rc;
}

/* The email of one admin about ls. */
static mail_outcome alert_admin(mail_worker *w, const kit_commit *c, const env_envelope *env, stock_event *ls,
                                const admin_ref *admin)
{
	char id[MAIL_LOG_ID_MAX];
	char to[USER_EMAIL_MAX];
	mail_email e = {.label = MAIL_LOG_KIND_LOW_STOCK,
	                .ref_name = "product",
	                .ref = c->id,
	                .seq = c->seq,
	                .event_ms = env->time_ms,
	                .correlation = env->correlation,
	                .to = to,
	                .render = render_alert,
	                .closure = ls};
	alert_key(e.key, sizeof e.key, c->id, c->seq, admin->key);
	if (mail_log_id(id, e.key) != ORN_OK)
		return MAIL_RETRY;
	snprintf(e.file, sizeof e.file, "%s", id);
	snprintf(e.subject.product_id, sizeof e.subject.product_id, "%s", c->id);
	snprintf(e.subject.kind, sizeof e.subject.kind, "%s", MAIL_LOG_KIND_LOW_STOCK);
	snprintf(e.subject.recipient, sizeof e.subject.recipient, "%s", admin->email);
	orn_rc opened = mail_open_recipient(w->m, admin->email, "email", to, sizeof to);
	if (opened == ORN_ENOTFOUND)
		return MAIL_DONE; /* an admin erased since */
	mail_outcome result = opened == ORN_OK ? mail_deliver(w, &e) : MAIL_RETRY;
	sodium_memzero(to, sizeof to);
	return result;
}

/* Emails every admin about one LowStockDetected. */
static mail_outcome alert(mail_worker *w, const kit_commit *c, const env_envelope *env)
{
	mail_service *m = w->m;
	char seq_s[24];
	stock_event ls;
	mail_outcome result = MAIL_DONE;
	admin_ref *admins = NULL;
	size_t admin_count = 0;
	bool repeat = false;
	kit_folded at;
	orn_rc rc;

	snprintf(seq_s, sizeof seq_s, "%llu", (unsigned long long)c->seq);
	if (stock_event_decode(env->type, env->payload, env->payload_len, &ls) != ORN_OK) {
		log_error("mail skips an undecodable LowStockDetected", "product", c->id, "seq", seq_s);
		return MAIL_DONE;
	}
	if ((rc = repeats_open_crossing(m, c->subject, c->seq, &repeat)) != ORN_OK) {
		log_warn("mail cannot read the stock item", "product", c->id, "error", orn_rc_name(rc));
		return MAIL_RETRY;
	}
	if (repeat) {
		log_info("mail skips a LowStockDetected of a crossing already alerted", "product", c->id,
		         "seq", seq_s);
		return MAIL_DONE;
	}
	if ((rc = kit_fold(m->hub, m->store, &product_kind, c->id, NULL, w->product, &at)) != ORN_OK) {
		log_warn("mail cannot load the product", "product", c->id, "error", orn_rc_name(rc));
		return MAIL_RETRY;
	}
	if ((rc = admins_now(m, &admins, &admin_count)) != ORN_OK) {
		log_warn("mail cannot read the users", "error", orn_rc_name(rc));
		free(admins);
		return MAIL_RETRY;
	}
	for (size_t i = 0; i < admin_count; i++)
		if (alert_admin(w, c, env, &ls, &admins[i]) == MAIL_RETRY)
			result = MAIL_RETRY; /* the others go on; the redelivery finds their markers */
	if (admin_count == 0)
		log_warn("mail has no admin to alert of low stock", "product", c->id, "seq", seq_s);
	free(admins);
	return result;
}

bool mail_alert_wants(void *closure, const env_envelope *e)
{
	(void)closure;
	return strcmp(e->type, LOW_STOCK_EVENT) == 0;
}

kit_verdict mail_alert_commit(void *worker, const kit_commit *c)
{
	mail_worker *w = worker;
	mail_outcome result = MAIL_DONE;
	bool settled = false;
	w->sweeping = c->delivered == 0;
	for (size_t i = 0; i < c->count && result == MAIL_DONE; i++) {
		if (!mail_alert_wants(NULL, &c->events[i]))
			continue;
		/* the sweeper: every admin's entry settled means no read of the item's history */
		if (w->sweeping && alerts_settled(w, c->id, c->seq, &settled) != ORN_OK)
			return KIT_RETRY;
		if (!settled)
			result = alert(w, c, &c->events[i]);
	}
	return result == MAIL_DONE ? KIT_DONE : KIT_RETRY;
}
