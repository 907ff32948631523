/* erasure.c — the steps of an erasure (see erasure.h). */
#include "erasure.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bus.h"
#include "hashmap.h"
#include "log.h"
#include "mpack.h"
#include "user.h"

#define COMMAND_TIMEOUT_MS 10000

void er_command_id(char out[ER_COMMAND_ID_MAX], const char *user_key, const char *step)
{
	snprintf(out, ER_COMMAND_ID_MAX, "erase:%s:%s", user_key, step);
}

/* One payload-less command of type to the account, its id that of step. */
static orn_rc step_send(es_store *store, const char *user_key, const char *type, const char *step,
                        bus_reply *r)
{
	char command_id[ER_COMMAND_ID_MAX];
	env_envelope cmd;
	mp_writer *w = mp_writer_create();
	orn_rc rc = w == NULL ? ORN_ENOMEM : ORN_OK;
	er_command_id(command_id, user_key, step);
	if (rc == ORN_OK) {
		mp_write_map(w, 0);
		rc = bus_command_init(&cmd, type, orn_now_ms(), command_id, NULL, "erasure",
		                      mp_writer_data(w), mp_writer_size(w));
	}
	if (rc == ORN_OK)
		rc = bus_send(store, USER_AGGREGATE, user_key, &cmd, COMMAND_TIMEOUT_MS, r);
	mp_writer_destroy(w);
	return rc;
}

/* Reads exists, kid and erasure from a user's view (user_kind's view map). */
static orn_rc read_view(const bus_reply *r, er_account *out)
{
	mp_reader rd;
	uint32_t count = 0;
	memset(out, 0, sizeof *out);
	if (r->view == NULL)
		return ORN_EDECODE;
	mp_reader_init(&rd, r->view, r->view_len);
	if (mp_read_map(&rd, &count) != ORN_OK)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++) {
		const char *key;
		uint32_t len;
		orn_rc rc = mp_read_str(&rd, &key, &len);
		if (rc == ORN_OK && mp_str_eq(key, len, "kid"))
			rc = mp_read_cstr(&rd, out->kid, sizeof out->kid);
		else if (rc == ORN_OK && mp_str_eq(key, len, "user_id"))
			rc = mp_read_cstr(&rd, out->user_id, sizeof out->user_id);
		else if (rc == ORN_OK && mp_str_eq(key, len, "erasure"))
			rc = mp_read_int(&rd, &out->erasure);
		else if (rc == ORN_OK && mp_str_eq(key, len, "exists"))
			rc = mp_read_bool(&rd, &out->exists);
		else if (rc == ORN_OK)
			rc = mp_skip(&rd);
		if (rc != ORN_OK)
			return ORN_EDECODE;
	}
	return ORN_OK;
}

orn_rc er_account_read(es_store *store, const char *user_key, er_account *out)
{
	bus_reply r;
	orn_rc rc = step_send(store, user_key, BUS_CMD_GET, "get", &r);
	memset(out, 0, sizeof *out);
	if (rc == ORN_OK) {
		rc = read_view(&r, out);
		bus_reply_dispose(&r);
	}
	return rc;
}

orn_rc er_request(es_store *store, const char *user_key)
{
	bus_reply r;
	orn_rc rc = step_send(store, user_key, USER_CMD_REQUEST_ERASURE, "request", &r);
	if (rc != ORN_OK)
		return rc;
	rc = r.outcome == BUS_ACCEPTED          ? ORN_OK
	     : strcmp(r.code, "not_found") == 0 ? ORN_ENOTFOUND
	                                        : ORN_EINVAL;
	bus_reply_dispose(&r);
	return rc;
}

orn_rc er_finish(es_store *store, ks_store *keys, const char *user_key, uint64_t *seq)
{
	er_account account;
	bus_reply r;
	/* 2. the data key, as the account names it, destroyed: every sealed field
	 * of the customer is unreadable, everywhere */
	orn_rc rc = er_account_read(store, user_key, &account);
	if (rc == ORN_OK && account.erasure != USER_ERASED && account.kid[0] != '\0')
		rc = ks_key_destroy(keys, account.kid);
	if (rc == ORN_OK && getenv("ORION_FAULT_ERASE_KILL") != NULL &&
	    strcmp(getenv("ORION_FAULT_ERASE_KILL"), "after_key") == 0)
		raise(SIGKILL); /* fault tests only: the crash between the key and CustomerErased */
	/* 3. recorded: CustomerErased, which every read model applies */
	if (rc == ORN_OK &&
	    (rc = step_send(store, user_key, USER_CMD_COMPLETE_ERASURE, "complete", &r)) == ORN_OK) {
		rc = r.outcome == BUS_ACCEPTED ? ORN_OK : ORN_EINVAL;
		if (seq != NULL)
			*seq = r.seq > r.version ? r.seq : r.version;
		bus_reply_dispose(&r);
	}
	return rc;
}

/* ---- the open orders, from the command line ---- */

void er_cancel_command(const char *order_id, int64_t now_ms, order_command *c,
                       char command_id[ER_COMMAND_ID_MAX])
{
	memset(c, 0, sizeof *c);
	c->kind = ORDER_CANCEL;
	snprintf(c->data.reason, sizeof c->data.reason, "%s", ORDER_REASON_CUSTOMER);
	c->data.time_ms = now_ms;
	snprintf(command_id, ER_COMMAND_ID_MAX, "erase:%s:cancel", order_id);
}

/* The customer's orders as the log tells them: order id -> order_state. */
typedef struct order_scan {
	const char *user_id;
	hmap *orders;
	order_event *event; /* scratch */
} order_scan;

static orn_rc scan_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	order_scan *sc = closure;
	const char *id = subject + strlen("orion.evt." ORDER_AGGREGATE ".");
	(void)seq;
	if (order_event_decode(e->type, e->payload, e->payload_len, sc->event) != ORN_OK)
		return ORN_OK; /* not an order event this version folds */
	order_state *s = hmap_get(sc->orders, id);
	if (s == NULL) {
		if (sc->event->kind != ORDER_PLACED || strcmp(sc->event->data.customer_id, sc->user_id) != 0)
			return ORN_OK; /* another customer's */
		if ((s = malloc(sizeof *s)) == NULL)
			return ORN_ENOMEM;
		order_state_init(s);
		orn_rc rc = hmap_put(sc->orders, id, s);
		if (rc != ORN_OK) {
			free(s);
			return rc;
		}
	}
	order_evolve(s, sc->event);
	return ORN_OK;
}

/* CancelOrder to order_id; ORN_OK when accepted or refused because it is no longer open. */
static orn_rc cancel_one(es_store *store, const char *order_id, mp_writer *w, bool *accepted)
{
	order_command c;
	char command_id[ER_COMMAND_ID_MAX];
	env_envelope cmd;
	bus_reply r;
	er_cancel_command(order_id, orn_now_ms(), &c, command_id);
	mp_writer_reset(w);
	orn_rc rc = order_command_encode(w, &c);
	if (rc == ORN_OK)
		rc = bus_command_init(&cmd, order_command_type(ORDER_CANCEL), orn_now_ms(), command_id, NULL,
		                      "erasure", mp_writer_data(w), mp_writer_size(w));
	if (rc == ORN_OK)
		rc = bus_send(store, ORDER_AGGREGATE, order_id, &cmd, COMMAND_TIMEOUT_MS, &r);
	if (rc != ORN_OK)
		return rc;
	*accepted = r.outcome == BUS_ACCEPTED;
	/* refused as wrong_state: it moved on meanwhile (paid, ended), final already */
	if (r.outcome == BUS_FAILED || (r.outcome == BUS_REJECTED && strcmp(r.code, "wrong_state") != 0))
		rc = ORN_EIO;
	bus_reply_dispose(&r);
	return rc;
}

orn_rc er_cancel_open_orders(es_store *store, const char *user_id, size_t *cancelled)
{
	order_scan sc = {.user_id = user_id, .orders = hmap_create(), .event = malloc(sizeof(order_event))};
	mp_writer *w = mp_writer_create();
	orn_rc rc = sc.orders == NULL || sc.event == NULL || w == NULL ? ORN_ENOMEM : ORN_OK;
	if (user_id[0] == '\0')
		rc = ORN_EINVAL; /* an account before user ids: nothing can be its */
	size_t n = 0, cursor = 0;
	const char *id;
	void *value;
	if (rc == ORN_OK)
		rc = es_read(store, "orion.evt." ORDER_AGGREGATE ".>", 1, 0, scan_event, &sc, NULL);
	while (sc.orders != NULL && hmap_next(sc.orders, &cursor, &id, &value)) {
		order_state *s = value;
		bool accepted = false;
		orn_rc one = ORN_OK;
		if (rc == ORN_OK && order_status_is_open(s->status))
			one = cancel_one(store, id, w, &accepted);
		if (one != ORN_OK) {
			log_warn("an erased customer's order was not cancelled", "order", id, "error",
			         orn_strerror(one));
			rc = ORN_EIO;
		}
		n += accepted;
		free(s);
	}
	hmap_destroy(sc.orders);
	free(sc.event);
	mp_writer_destroy(w);
	if (cancelled != NULL)
		*cancelled = n;
	return rc;
}

/* ---- every erasure of the log, again ---- */

static orn_rc collect_erasure(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	hmap *accounts = closure;
	const char *key = subject + strlen("orion.evt." USER_AGGREGATE ".");
	(void)seq;
	if (strcmp(e->type, USER_EV_ERASURE_REQUESTED) != 0 && strcmp(e->type, USER_EV_ERASED) != 0)
		return ORN_OK;
	return hmap_get(accounts, key) != NULL ? ORN_OK : hmap_put(accounts, key, (void *)accounts);
}

/* One account of er_again. */
static orn_rc again_one(es_store *store, ks_store *keys, const char *key, er_again_counts *out)
{
	er_account account;
	uint8_t data_key[PD_KEY_BYTES];
	size_t cancelled = 0;
	orn_rc rc = er_account_read(store, key, &account);
	if (rc != ORN_OK || !account.exists)
		return rc == ORN_OK ? ORN_OK : rc;
	if (account.erasure == USER_ERASURE_REQUESTED) {
		if (account.user_id[0] != '\0')
			rc = er_cancel_open_orders(store, account.user_id, &cancelled);
		out->orders_cancelled += cancelled;
		if (rc == ORN_OK && (rc = er_finish(store, keys, key, NULL)) == ORN_OK)
			out->finished++;
	} else if (account.erasure == USER_ERASED && account.kid[0] != '\0') {
		rc = ks_key_get(keys, account.kid, data_key);
		sodium_memzero(data_key, sizeof data_key);
		if (rc == ORN_OK && (rc = ks_key_destroy(keys, account.kid)) == ORN_OK)
			out->keys_again++;
		else if (rc == ORN_ENOTFOUND)
			rc = ORN_OK; /* gone, as it should be */
	}
	return rc;
}

orn_rc er_again(es_store *store, ks_store *keys, er_again_counts *out)
{
	hmap *accounts = hmap_create();
	orn_rc rc = accounts == NULL ? ORN_ENOMEM : ORN_OK;
	size_t cursor = 0;
	const char *key;
	void *value;
	memset(out, 0, sizeof *out);
	if (rc == ORN_OK)
		rc = es_read(store, "orion.evt." USER_AGGREGATE ".>", 1, 0, collect_erasure, accounts, NULL);
	while (rc == ORN_OK && hmap_next(accounts, &cursor, &key, &value)) {
		out->accounts++;
		orn_rc one = again_one(store, keys, key, out);
		if (one != ORN_OK) {
			log_warn("an erasure could not be carried through now", "user", key, "error",
			         orn_strerror(one));
			out->failed++;
		}
	}
	hmap_destroy(accounts);
	return rc == ORN_OK && out->failed > 0 ? ORN_EIO : rc;
}
