/* gw_api_export.c — GET /api/v1/me/export: everything Orion holds about the
 * caller (GDPR art. 15 and 20), as one JSON document:
 *
 *   {exported_at, profile: {id, email, name, role},
 *    orders: [the order view of GET /orders/{id}, newest first],
 *    emails: [the caller's orders' emails as GET /admin/mail shows them]}
 *
 * The orders and their emails are read from the orders and mail read models
 * on the loop (LMDB reads); the sealed fields (the email, the name, each
 * email's recipient) are opened like GET /me's, off the loop when their key
 * is not cached (gw_api_keys_run, ADR 027). Nothing of it is logged. */
#include "gw_api_export.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_api-internal.h"
#include "gw_api_mail.h"
#include "gw_problem.h"
#include "gw_views.h"
#include "log.h"
#include "user.h"

#define UNAVAILABLE "the export cannot be made now; try again"

/* One export in flight; owned by export_opened. */
typedef struct export_job {
	gw_api *api;
	gw_async *async;
	proj_user account; /* sealed fields, as the access check read them */
	char email[USER_EMAIL_MAX], name[USER_NAME_MAX];
	json_t *orders;         /* the order views */
	proj_mail_entry *mails; /* the emails of those orders */
	size_t mail_count, mail_cap;
	char (*recipients)[USER_EMAIL_MAX]; /* mail_count, once opened */
	const char **tokens;                /* the sealed fields to open */
	orn_rc opened;
} export_job;

static void export_free(export_job *x)
{
	json_decref(x->orders);
	if (x->recipients != NULL)
		sodium_memzero(x->recipients, x->mail_count * sizeof *x->recipients);
	free(x->recipients);
	free(x->mails);
	free(x->tokens);
	sodium_memzero(x, sizeof *x);
	free(x);
}

/* Appends the emails of order_id (every page) to x->mails. */
static orn_rc read_mails(export_job *x, proj_mail_page *page, const char *order_id)
{
	char cursor[PROJ_CURSOR_MAX] = "";
	do {
		proj_mail_query q = {.order_id = order_id, .limit = PROJ_MAIL_PAGE_MAX, .cursor = cursor};
		orn_rc rc = proj_mail_list(x->api->mail, &q, page);
		if (rc != ORN_OK)
			return rc;
		if (x->mail_count + page->count > x->mail_cap) {
			size_t cap = (x->mail_count + page->count) * 2;
			proj_mail_entry *grown = realloc(x->mails, cap * sizeof *grown);
			if (grown == NULL)
				return ORN_ENOMEM;
			x->mails = grown;
			x->mail_cap = cap;
		}
		if (page->count > 0) /* x->mails is NULL until the first email: no memcpy to NULL */
			memcpy(x->mails + x->mail_count, page->items, page->count * sizeof *page->items);
		x->mail_count += page->count;
		snprintf(cursor, sizeof cursor, "%s", page->next_cursor);
	} while (cursor[0] != '\0');
	return ORN_OK;
}

/* Appends the view of order id to x->orders, then its emails. */
static orn_rc read_order(export_job *x, proj_order *order, proj_mail_page *mails, mp_writer *w,
                         const char *id)
{
	orn_rc rc = proj_orders_get(x->api->orders, id, order);
	if (rc == ORN_ENOTFOUND)
		return ORN_OK; /* listed a moment ago: nothing to show */
	if (rc != ORN_OK)
		return rc;
	mp_writer_reset(w);
	if (gw_api_write_order(x->api, w, id, &order->state, ORDER_HISTORY_MAX)) {
		json_t *view = json_loadb((const char *)mp_writer_data(w), mp_writer_size(w), 0, NULL);
		if (view == NULL || json_array_append_new(x->orders, view) != 0)
			return ORN_ENOMEM;
	}
	return read_mails(x, mails, id);
}

/* Every order of the caller (every page) with its emails. */
static orn_rc read_orders(export_job *x)
{
	char cursor[PROJ_CURSOR_MAX] = "";
	proj_orders_page *page = malloc(sizeof *page);
	proj_order *order = malloc(sizeof *order);
	proj_mail_page *mails = malloc(sizeof *mails);
	mp_writer *w = mp_writer_create();
	orn_rc rc = page == NULL || order == NULL || mails == NULL || w == NULL ? ORN_ENOMEM : ORN_OK;
	if (rc == ORN_OK && (x->orders = json_array()) == NULL)
		rc = ORN_ENOMEM;
	while (rc == ORN_OK) {
		rc = proj_orders_list(x->api->orders, x->account.user_id, PROJ_ORDERS_PAGE_MAX, cursor, page);
		for (size_t i = 0; rc == ORN_OK && i < page->count; i++)
			rc = read_order(x, order, mails, w, page->items[i].id);
		if (rc != ORN_OK || page->next_cursor[0] == '\0')
			break;
		snprintf(cursor, sizeof cursor, "%s", page->next_cursor);
	}
	mp_writer_destroy(w);
	free(mails);
	free(order);
	free(page);
	return rc;
}

/* Off the loop when a key is not cached: the profile's fields and each
 * email's recipient opened. */
static void export_open(void *arg)
{
	export_job *x = arg;
	ks_store *keys = x->api->keys;
	x->opened = gw_api_open_person(x->api, x->account.email, x->account.name, x->email, sizeof x->email,
	                               x->name, sizeof x->name);
	for (size_t i = 0; x->opened == ORN_OK && i < x->mail_count; i++)
		gw_mail_recipient_text(keys, &x->mails[i].log.subject, x->recipients[i],
		                       sizeof x->recipients[i]);
}

static json_t *export_json(const export_job *x)
{
	const char *role = user_role_name(x->account.role);
	json_t *emails = json_array();
	for (size_t i = 0; emails != NULL && i < x->mail_count; i++) {
		json_t *item = gw_mail_entry_json(&x->mails[i], x->recipients[i]);
		if (item == NULL || json_array_append_new(emails, item) != 0) {
			json_decref(emails);
			emails = NULL;
		}
	}
	if (emails == NULL)
		return NULL;
	return json_pack("{s:o, s:{s:s, s:s, s:s, s:s}, s:O, s:o}", "exported_at",
	                 gw_view_time_json((int64_t)time(NULL) * 1000, false), "profile", "id",
	                 x->account.user_id, "email", x->email, "name", x->name, "role",
	                 role != NULL ? role : "customer", "orders", x->orders, "emails", emails);
}

/* 200 with the document; 503 if the fields cannot be opened now. */
static void export_opened(void *arg, bool run)
{
	export_job *x = arg;
	if (run && x->opened == ORN_OK) {
		json_t *body = export_json(x);
		if (body != NULL)
			gw_async_complete_json(x->async, 200, body);
		else
			gw_async_complete_problem(x->async, gw_problem_new(500, NULL));
	} else if (run) {
		log_error("an account's fields do not open", "error", orn_strerror(x->opened));
		gw_async_complete_problem(x->async, gw_problem_new(503, UNAVAILABLE));
	}
	export_free(x);
}

void gw_export_me(gw_request *r, gw_api *api, const gw_caller *caller)
{
	export_job *x = NULL;
	if (api->orders == NULL || api->mail == NULL || api->keys == NULL) {
		gw_respond_error(r, 503, UNAVAILABLE);
		return;
	}
	if ((x = calloc(1, sizeof *x)) == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	x->api = api;
	x->account = caller->account; /* read by the access check */
	orn_rc rc = read_orders(x);
	size_t count = 2 + x->mail_count;
	if (rc == ORN_OK && ((x->tokens = calloc(count, sizeof *x->tokens)) == NULL ||
	                     (x->recipients = calloc(x->mail_count + 1, sizeof *x->recipients)) == NULL))
		rc = ORN_ENOMEM;
	if (rc != ORN_OK) {
		if (rc != ORN_ENOMEM)
			log_error("the read models are unreadable", "error", orn_strerror(rc));
		gw_respond_error(r, rc == ORN_ENOMEM ? 500 : 503, rc == ORN_ENOMEM ? NULL : UNAVAILABLE);
		export_free(x);
		return;
	}
	x->tokens[0] = x->account.email;
	x->tokens[1] = x->account.name;
	for (size_t i = 0; i < x->mail_count; i++)
		x->tokens[2 + i] = x->mails[i].log.subject.recipient;
	if ((x->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL) {
		export_free(x);
		return; /* answered 500 */
	}
	gw_async *async = x->async; /* export_opened may free x before the call returns */
	rc = gw_api_keys_run(api, x->tokens, count, export_open, export_opened, x);
	if (rc != ORN_OK) {
		gw_async_complete_problem(async, gw_problem_new(503, UNAVAILABLE));
		export_free(x);
	}
}
