/* kit_sender.c — commands to other aggregates, several at once (see kit.h).
 *
 * One reply inbox per sender, "<inbox>.<token>": every try of every command
 * gets a token, and the client's delivery thread hands each answer to the
 * slot its token names, under the sender's lock. kit_send_all publishes every
 * command of its batch, then waits on the batch's condition until each slot
 * is settled: answered for good, or out of tries. The waiting thread itself
 * times tries out and sends them again after their backoff, so the sender
 * has no thread of its own. */
#include "kit-internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore-internal.h"
#include "hashmap.h"
#include "log.h"

#define TOKEN_MAX 24

typedef struct batch batch;

typedef struct slot {
	batch *b;
	kit_send *send;
	mp_writer *bytes;    /* the encoded command */
	unsigned tries;      /* sent so far */
	int64_t deadline_ns; /* of the try in flight; 0: none in flight */
	int64_t resend_ns;   /* > 0: send again then */
	bool settled;
	char token[TOKEN_MAX];
} slot;

struct batch {
	size_t unsettled;
};

struct kit_sender {
	es_store *store;
	kit_sender_options o;
	char *actor;
	char *inbox;
	natsSubscription *sub;
	pthread_mutex_t lock; /* pending, every batch's slots */
	hmap *pending;        /* token -> slot of the try in flight */
	uint64_t next_token;
	pthread_cond_t changed; /* a slot settled or needs its waiter, or a stop */
	atomic_bool stopping;
	bool completed; /* the subscription's last callback returned */
	/* for the stop log (under lock): commands, tries sent, tries timed out,
	 * tries answered "try again" (by a reply or no responders) */
	uint64_t commands, tries, timeouts, retried;
	pthread_cond_t complete;
};

/* Whether a reply says "try again": the service could not decide now. */
static bool retryable(const bus_reply *r)
{
	static const char *const codes[] = {"unavailable", "overloaded", "conflict", "expired"};
	if (r->outcome != BUS_FAILED)
		return false;
	for (size_t i = 0; i < ORN_ARRAY_LEN(codes); i++)
		if (strcmp(r->code, codes[i]) == 0)
			return true;
	return false;
}

/* Settles sl with rc (lock held). */
static void settle(kit_sender *s, slot *sl, orn_rc rc)
{
	if (sl->settled)
		return;
	sl->settled = true;
	sl->send->rc = rc;
	sl->deadline_ns = sl->resend_ns = 0;
	if (--sl->b->unsettled == 0)
		pthread_cond_broadcast(&s->changed);
}

/* The try in flight failed with rc: another one after a backoff, or settled (lock held). */
static void failed_try(kit_sender *s, slot *sl, orn_rc rc)
{
	sl->deadline_ns = 0;
	if (rc == ORN_ETIMEOUT)
		s->timeouts++;
	else if (rc == ORN_EUNAVAILABLE)
		s->retried++;
	if (sl->tries >= s->o.tries || atomic_load(&s->stopping)) {
		settle(s, sl, rc);
		return;
	}
	int64_t backoff = es_backoff_ms(sl->tries, s->o.backoff_ms, s->o.backoff_max);
	sl->resend_ns = orn_monotonic_ns() + backoff * 1000000;
	pthread_cond_broadcast(&s->changed); /* the waiter recomputes its wake-up */
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	kit_sender *s = closure;
	const char *subject = natsMsg_GetSubject(msg);
	const char *dot = subject != NULL ? strrchr(subject, '.') : NULL;
	bus_reply reply;
	(void)nc;
	(void)sub;
	pthread_mutex_lock(&s->lock);
	slot *sl = dot != NULL ? hmap_remove(s->pending, dot + 1) : NULL;
	if (sl != NULL && !sl->settled) {
		if (natsMsg_IsNoResponders(msg)) {
			failed_try(s, sl, ORN_EUNAVAILABLE);
		} else if (bus_reply_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
		                            &reply) != ORN_OK) {
			failed_try(s, sl, ORN_EDECODE);
		} else if (retryable(&reply) && sl->tries < s->o.tries && !atomic_load(&s->stopping)) {
			bus_reply_dispose(&reply);
			failed_try(s, sl, ORN_EUNAVAILABLE);
		} else {
			sl->send->reply = reply;
			settle(s, sl, ORN_OK);
		}
	}
	pthread_mutex_unlock(&s->lock);
	natsMsg_Destroy(msg);
}

static void on_complete(void *closure)
{
	kit_sender *s = closure;
	pthread_mutex_lock(&s->lock);
	s->completed = true;
	pthread_cond_broadcast(&s->complete);
	pthread_mutex_unlock(&s->lock);
}

/* Sends one try of sl (lock held). */
static void send_try(kit_sender *s, slot *sl)
{
	char reply_to[ES_SUBJECT_MAX], subject[ES_SUBJECT_MAX];
	orn_rc rc = bus_command_subject(subject, sizeof subject, sl->send->aggregate, sl->send->id);
	sl->resend_ns = 0;
	sl->tries++;
	s->tries++;
	s->commands += sl->tries == 1;
	snprintf(sl->token, sizeof sl->token, "%llu", (unsigned long long)++s->next_token);
	snprintf(reply_to, sizeof reply_to, "%s.%s", s->inbox, sl->token);
	if (rc == ORN_OK && (rc = hmap_put(s->pending, sl->token, sl)) == ORN_OK) {
		rc = es_status_rc(natsConnection_PublishRequest(es_store_connection(s->store), subject,
		                                                reply_to, mp_writer_data(sl->bytes),
		                                                (int)mp_writer_size(sl->bytes)),
		                  0);
		if (rc != ORN_OK)
			hmap_remove(s->pending, sl->token);
	}
	if (rc == ORN_EINVAL) {
		settle(s, sl, rc);
		return;
	}
	if (rc != ORN_OK) {
		failed_try(s, sl, rc);
		return;
	}
	sl->deadline_ns = orn_monotonic_ns() + s->o.timeout_ms * 1000000;
}

/* Encodes send's command once for every try. */
static orn_rc encode(kit_sender *s, kit_send *send, mp_writer *w)
{
	env_envelope cmd;
	orn_rc rc = bus_command_init(&cmd, send->type, orn_now_ms(), send->command_id, send->correlation,
	                             s->actor, send->payload, send->len);
	if (rc != ORN_OK)
		return rc;
	cmd.ttl_ms = s->o.timeout_ms <= UINT32_MAX ? (uint32_t)s->o.timeout_ms : 0; /* ADR 015, point 5 */
	return env_encode(w, &cmd);
}

/* Times out tries and sends again what is due (lock held); the next time
 * something is due, or 0. */
static int64_t step(kit_sender *s, slot *slots, size_t count)
{
	int64_t now = orn_monotonic_ns(), next = 0;
	for (size_t i = 0; i < count; i++) {
		slot *sl = &slots[i];
		if (sl->settled)
			continue;
		if (atomic_load(&s->stopping)) {
			if (sl->deadline_ns != 0)
				hmap_remove(s->pending, sl->token);
			settle(s, sl, ORN_EUNAVAILABLE);
			continue;
		}
		if (sl->deadline_ns != 0 && now >= sl->deadline_ns) {
			hmap_remove(s->pending, sl->token);
			failed_try(s, sl, ORN_ETIMEOUT);
		}
		if (!sl->settled && sl->deadline_ns == 0 && sl->resend_ns != 0 && now >= sl->resend_ns)
			send_try(s, sl);
		int64_t due = sl->deadline_ns != 0 ? sl->deadline_ns : sl->resend_ns;
		if (!sl->settled && due != 0 && (next == 0 || due < next))
			next = due;
	}
	return next;
}

orn_rc kit_send_all(kit_sender *s, kit_send *sends, size_t count)
{
	slot *slots = calloc(count > 0 ? count : 1, sizeof *slots);
	batch b = {.unsettled = count};
	orn_rc rc = ORN_OK;
	if (slots == NULL)
		return ORN_ENOMEM;
	for (size_t i = 0; i < count; i++) {
		memset(&sends[i].reply, 0, sizeof sends[i].reply);
		slots[i] = (slot){.b = &b, .send = &sends[i], .bytes = mp_writer_create()};
		if (slots[i].bytes == NULL ||
		    (sends[i].rc = encode(s, &sends[i], slots[i].bytes)) != ORN_OK) {
			slots[i].settled = true;
			b.unsettled--;
			if (sends[i].rc == ORN_OK)
				sends[i].rc = ORN_ENOMEM;
		}
	}
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < count; i++)
		if (!slots[i].settled) {
			if (atomic_load(&s->stopping))
				settle(s, &slots[i], ORN_EUNAVAILABLE);
			else
				send_try(s, &slots[i]);
		}
	while (b.unsettled > 0) {
		int64_t next = step(s, slots, count);
		if (b.unsettled == 0)
			break;
		struct timespec until =
		        orn_monotonic_deadline(next > 0 ? (next - orn_monotonic_ns()) / 1000000 + 1 : 1000);
		pthread_cond_timedwait(&s->changed, &s->lock, &until);
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < count; i++) {
		mp_writer_destroy(slots[i].bytes);
		if (rc == ORN_OK && sends[i].rc != ORN_OK)
			rc = sends[i].rc;
	}
	free(slots);
	return rc;
}

orn_rc kit_sender_create(es_store *store, const kit_sender_options *o, kit_sender **out)
{
	kit_sender *s;
	natsInbox *inbox = NULL;
	char pattern[ES_SUBJECT_MAX];
	orn_rc rc = ORN_ENOMEM;
	*out = NULL;
	if (store == NULL || o == NULL)
		return ORN_EINVAL;
	if ((s = calloc(1, sizeof *s)) == NULL)
		return ORN_ENOMEM;
	s->store = store;
	s->o = *o;
	if (s->o.timeout_ms <= 0)
		s->o.timeout_ms = 5000;
	if (s->o.tries == 0)
		s->o.tries = 1;
	if (s->o.backoff_ms <= 0)
		s->o.backoff_ms = 100;
	if (s->o.backoff_max <= 0)
		s->o.backoff_max = 2000;
	atomic_init(&s->stopping, false);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->changed, &attr);
	pthread_cond_init(&s->complete, &attr);
	pthread_condattr_destroy(&attr);
	s->actor = strdup(o->actor != NULL ? o->actor : "");
	s->pending = hmap_create();
	if (s->actor == NULL || s->pending == NULL || natsInbox_Create(&inbox) != NATS_OK)
		goto fail;
	s->inbox = strdup(inbox);
	natsInbox_Destroy(inbox);
	if (s->inbox == NULL)
		goto fail;
	snprintf(pattern, sizeof pattern, "%s.*", s->inbox);
	natsStatus st = natsConnection_Subscribe(&s->sub, es_store_connection(store), pattern, on_reply, s);
	if (st != NATS_OK) {
		rc = es_status_rc(st, 0);
		goto fail;
	}
	natsSubscription_SetPendingLimits(s->sub, -1, -1);
	if (natsSubscription_SetOnCompleteCB(s->sub, on_complete, s) != NATS_OK) {
		rc = ORN_EINTERNAL;
		goto fail;
	}
	*out = s;
	return ORN_OK;
fail:
	kit_sender_destroy(s);
	return rc;
}

void kit_sender_stop(kit_sender *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->stopping, true);
	pthread_mutex_lock(&s->lock);
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

bool kit_sender_stopping(const kit_sender *s)
{
	return s != NULL && atomic_load(&s->stopping);
}

void kit_sender_destroy(kit_sender *s)
{
	if (s == NULL)
		return;
	if (s->sub != NULL) {
		/* a core subscription: no server wait; its last callback may still run */
		natsSubscription_Unsubscribe(s->sub);
		struct timespec until = orn_monotonic_deadline(2000);
		pthread_mutex_lock(&s->lock);
		while (!s->completed && pthread_cond_timedwait(&s->complete, &s->lock, &until) == 0)
			;
		static const char *const names[] = {"commands", "tries", "timeouts", "retried"};
		const uint64_t counts[] = {s->commands, s->tries, s->timeouts, s->retried};
		pthread_mutex_unlock(&s->lock);
		log_counters("command sender stopped", "actor", s->actor, names, counts,
		             ORN_ARRAY_LEN(counts));
		natsSubscription_Destroy(s->sub);
	}
	hmap_destroy(s->pending);
	pthread_cond_destroy(&s->changed);
	pthread_cond_destroy(&s->complete);
	pthread_mutex_destroy(&s->lock);
	free(s->actor);
	free(s->inbox);
	free(s);
}
