/* gw_api_erase.c — erasure over HTTP (docs/adr/027-personal-data.md):
 * DELETE /me (the customer, password again) and
 * POST /admin/customers/{id}/erase (an admin). Both run the erasure of
 * `orion admin erase` (privacy/erasure.h): RequestErasure (logins and tokens
 * end), the customer's open orders cancelled (their stock released by the
 * saga) and their answers awaited, then the key destroyed and CustomerErased
 * recorded — those two on a key worker, as they wait on NATS — and the answer
 * once this gateway's read models show it (204).
 *
 * Every step's callback runs on the loop and either starts the next or
 * completes the request and frees the closure. */
#include "gw_api_erase.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "erasure.h"
#include "gw_api-internal.h"
#include "gw_problem.h"
#include "log.h"
#include "order.h"
#include "user.h"

#define UNAVAILABLE "the erasure cannot run now; try again"

/* One erasure in flight. */
typedef struct erasure {
	gw_api *api;
	gw_async *async;
	char key[USER_KEY_MAX];       /* the account's aggregate id */
	char user_id[USER_ID_MAX];    /* its public id: the orders' customer */
	size_t cancels;               /* CancelOrder commands not answered yet */
	bool cancels_sent;            /* every one sent */
	orn_rc finished;              /* er_finish's outcome, on the key worker */
	uint64_t seq;                 /* CustomerErased's */
	char sealed[USER_SEALED_MAX]; /* DELETE /me: the password hash, checked first */
} erasure;

static void erasure_free(erasure *e)
{
	sodium_memzero(e, sizeof *e);
	free(e);
}

static void erasure_fail(erasure *e, int status, const char *detail)
{
	gw_async_complete_problem(e->async, gw_problem_new(status, detail));
	erasure_free(e);
}

/* ---- 3. the key and CustomerErased, off the loop ---- */

static void erasure_visible(void *closure, orn_rc rc)
{
	erasure *e = closure;
	if (rc != ORN_OK)
		log_warn("erasure answered before the read models caught up", "error", orn_strerror(rc));
	gw_async_complete_empty(e->async, 204);
	erasure_free(e);
}

static void erasure_finish(void *arg)
{
	erasure *e = arg;
	e->finished = er_finish(e->api->store, e->api->keys, e->key, &e->seq);
}

static void erasure_finished(void *arg, bool run)
{
	erasure *e = arg;
	if (!run) {
		erasure_free(e);
	} else if (e->finished != ORN_OK) {
		log_error("erasure not finished (asking again completes it)", "error",
		          orn_strerror(e->finished));
		erasure_fail(e, 503, UNAVAILABLE);
	} else {
		log_info("customer erased", "user", e->user_id);
		gw_api_wait_for(e->api, e->seq, erasure_visible, e);
	}
}

static void erasure_destroy_key(erasure *e)
{
	if (e->api->store == NULL ||
	    gw_work_queue(e->api->key_work, erasure_finish, erasure_finished, e) != ORN_OK)
		erasure_fail(e, 503, UNAVAILABLE);
}

/* ---- 2. the open orders cancelled ---- */

static void cancel_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	erasure *e = closure;
	/* refused ones (wrong_state: it moved on meanwhile) are final already */
	if (rc != ORN_OK || reply->outcome == BUS_FAILED)
		log_warn("an erased customer's order was not cancelled", "user", e->user_id);
	if (--e->cancels == 0 && e->cancels_sent)
		erasure_destroy_key(e);
}

/* Sends CancelOrder to one open order; false if it could not be sent. */
static bool cancel_order(erasure *e, const char *order_id, mp_writer *w)
{
	char command_id[ER_COMMAND_ID_MAX];
	order_command c;
	er_cancel_command(order_id, orn_now_ms(), &c, command_id);
	mp_writer_reset(w);
	if (order_command_encode(w, &c) != ORN_OK ||
	    gw_api_send(e->api, ORDER_AGGREGATE, order_id, order_command_type(ORDER_CANCEL), w, command_id,
	                e->user_id, cancel_replied, e) != ORN_OK)
		return false;
	e->cancels++;
	return true;
}

/* Every open order of the customer (not yet paid, ended or shipped) gets
 * CancelOrder; the key goes once each has answered. A paid order is not
 * cancelled for an erasure: it is the shop's to ship or refund. */
static void cancel_open_orders(erasure *e)
{
	proj_orders_page *page = malloc(sizeof *page);
	mp_writer *w = mp_writer_create();
	char cursor[PROJ_CURSOR_MAX] = "";
	orn_rc rc = page == NULL || w == NULL ? ORN_ENOMEM : ORN_OK;
	bool sent = true;
	do {
		if (rc == ORN_OK)
			rc = proj_orders_list(e->api->orders, e->user_id, PROJ_ORDERS_PAGE_MAX, cursor, page);
		for (size_t i = 0; rc == ORN_OK && sent && i < page->count; i++)
			if (order_status_is_open(page->items[i].status))
				sent = cancel_order(e, page->items[i].id, w);
		if (rc == ORN_OK)
			snprintf(cursor, sizeof cursor, "%s", page->next_cursor);
	} while (rc == ORN_OK && sent && cursor[0] != '\0');
	free(page);
	mp_writer_destroy(w);
	e->cancels_sent = true;
	if (rc != ORN_OK || !sent) {
		log_error("an erased customer's orders cannot be cancelled now", "error", orn_strerror(rc));
		if (e->cancels == 0)
			erasure_fail(e, 503, UNAVAILABLE);
		else
			e->cancels_sent = false; /* the last answer frees it: nothing more is done */
		return;
	}
	if (e->cancels == 0)
		erasure_destroy_key(e);
}

/* ---- 1. RequestErasure ---- */

static void request_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	erasure *e = closure;
	if (rc == ORN_OK && reply->outcome == BUS_REJECTED && strcmp(reply->code, "not_found") == 0) {
		erasure_fail(e, 404, "no such customer");
		return;
	}
	if (rc != ORN_OK || reply->outcome != BUS_ACCEPTED) {
		gw_api_complete_failure(e->async, rc, reply);
		erasure_free(e);
		return;
	}
	cancel_open_orders(e);
}

static void erasure_start(erasure *e)
{
	char command_id[ER_COMMAND_ID_MAX];
	mp_writer *w = gw_api_text_buffer(e->api);
	er_command_id(command_id, e->key, "request");
	if (w != NULL)
		mp_write_map(w, 0);
	if (w == NULL || gw_api_send(e->api, USER_AGGREGATE, e->key, USER_CMD_REQUEST_ERASURE, w, command_id,
	                             e->user_id, request_replied, e) != ORN_OK)
		erasure_fail(e, 503, UNAVAILABLE);
}

/* A new erasure of the account, its request deferred; NULL after answering. */
static erasure *erasure_new(gw_request *r, gw_api *api, const proj_user *account)
{
	erasure *e = NULL;
	if (api->keys == NULL || api->key_work == NULL || api->orders == NULL) {
		gw_respond_error(r, 503, UNAVAILABLE);
		return NULL;
	}
	if ((e = calloc(1, sizeof *e)) == NULL) {
		gw_respond_error(r, 500, NULL);
		return NULL;
	}
	e->api = api;
	snprintf(e->key, sizeof e->key, "%s", account->key);
	snprintf(e->user_id, sizeof e->user_id, "%s", account->user_id);
	memcpy(e->sealed, account->password_hash, sizeof e->sealed);
	if ((e->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL) {
		erasure_free(e);
		return NULL; /* answered 500 */
	}
	return e;
}

/* ---- DELETE /me ---- */

static const gw_field password_schema[] = {
        {.name = "password", .type = GW_STRING, .required = true, .max = 256},
        {0},
};

static void password_checked(orn_rc rc, const char *hash, bool match, void *arg)
{
	erasure *e = arg;
	(void)hash;
	if (rc != ORN_OK)
		erasure_fail(e, 503, UNAVAILABLE);
	else if (!match)
		erasure_fail(e, 401, "the password is not the account's");
	else
		erasure_start(e);
}

void gw_erase_me(gw_request *r, gw_api *api, const gw_caller *caller)
{
	json_t *body = NULL;
	proj_user account;
	if (!gw_request_json(r, password_schema, &body))
		return;
	/* the access check wiped the hash it read: read the account again */
	orn_rc rc = proj_users_get_by_id(api->users, caller->claims.sub, &account);
	erasure *e = NULL;
	if (rc != ORN_OK) {
		gw_respond_error(r, 503, UNAVAILABLE);
	} else if ((e = erasure_new(r, api, &account)) != NULL) {
		gw_async *async = e->async; /* password_checked may free e before the call returns */
		if (gw_api_check_password(api, e->sealed, gw_json_string(body, "password", ""),
		                          password_checked, e) != ORN_OK) {
			gw_async_complete_problem(async, gw_problem_new(503, UNAVAILABLE));
			erasure_free(e);
		}
	}
	sodium_memzero(&account, sizeof account);
	json_decref(body);
}

/* ---- POST /admin/customers/{id}/erase ---- */

void gw_erase_customer(gw_request *r, gw_api *api, const gw_caller *caller)
{
	static const gw_field no_fields[] = {{0}};
	const char *id = gw_api_path_id(r, "id");
	json_t *body = NULL;
	size_t len = 0;
	proj_user account;
	if (id == NULL)
		return;
	gw_request_body(r, &len);
	if (len > 0 && !gw_request_json(r, no_fields, &body)) /* none, or {} */
		return;
	json_decref(body);
	orn_rc rc = proj_users_get_by_id(api->users, id, &account);
	if (rc == ORN_ENOTFOUND || rc == ORN_EINVAL)
		gw_respond_error(r, 404, "no such customer");
	else if (rc != ORN_OK)
		gw_respond_error(r, 503, UNAVAILABLE);
	else if (account.erasure == USER_ERASED)
		gw_respond(r, 204, NULL, NULL, 0); /* erased already */
	else {
		erasure *e = erasure_new(r, api, &account);
		if (e != NULL)
			erasure_start(e);
	}
	sodium_memzero(&account, sizeof account);
}
