/* gw_api_mail.c — GET /api/v1/admin/mail: the mail delivery log (role admin),
 * and the resends (ADR 023): POST /api/v1/orders/{id}/confirmation-email (the
 * order's customer, while it awaits confirmation) and POST
 * /api/v1/admin/mail/{id}/resend (admins). Both send RequestResend to the
 * email's delivery log (orion.cmd.mail.<mail id>), whose decider bounds the
 * resends (5, one a minute); the mail role then sends the email again. They
 * answer 202 once the request is recorded: the email follows.
 *
 * Answers at once from the mail read model (projections/mails.h): emails in
 * mail id order, optionally one order's (order_id) and/or one delivery state's
 * (status = pending | delivered | failed), a page of 1..100 (default 20) with
 * an opaque cursor. Each item: {id, order_id, product_id, kind, recipient,
 * status, attempts, last_error, delivered_at, updated_at}; order_id is null
 * for a low-stock alert, product_id null for an order's email. */
#include "gw_api_mail.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_api-internal.h"
#include "gw_problem.h"
#include "gw_views.h"
#include "log.h"
#include "mail_log.h"
#include "mail_render.h"
#include "mails.h"

#define RESEND_SCOPE "confirmation-email" /* the per-address budget of customers' resends */

#define MAIL_DEFAULT_LIMIT 20

/* RFC 3339 UTC with milliseconds, or null for 0 (no such time). */
static json_t *time_or_null(int64_t ms)
{
	return gw_view_time_json(ms, true);
}

static json_t *string_or_null(const char *s)
{
	return s[0] != '\0' ? json_string(s) : json_null();
}

void gw_mail_recipient_text(ks_store *keys, const mail_log_subject *s, char *out, size_t cap)
{
	const char *field = s->order_id[0] != '\0' ? "customer_email" : "email";
	orn_rc rc = s->recipient[0] == '\0' ? ORN_ENOTFOUND
	            : keys != NULL          ? ks_open_token(keys, s->recipient, field, NULL, out, cap)
	                                    : ORN_EUNAVAILABLE;
	if (rc == ORN_ENOTFOUND)
		snprintf(out, cap, "%s", PD_ERASED);
	else if (rc != ORN_OK)
		snprintf(out, cap, "%s", pd_is_sealed(s->recipient) ? "[sealed]" : s->recipient);
}

/* A page of the mail log whose recipients are being opened (off the loop
 * when a key is not cached). */
typedef struct mail_listing {
	gw_api *api;
	gw_async *async;
	proj_mail_page page;
	char recipients[PROJ_MAIL_PAGE_MAX][USER_EMAIL_MAX];
} mail_listing;

static void listing_free(mail_listing *l)
{
	sodium_memzero(l->recipients, sizeof l->recipients);
	free(l);
}

static void listing_open(void *arg)
{
	mail_listing *l = arg;
	for (size_t i = 0; i < l->page.count; i++)
		gw_mail_recipient_text(l->api->keys, &l->page.items[i].log.subject, l->recipients[i],
		                       sizeof l->recipients[i]);
}

static json_t *mail_json(const mail_listing *l);

static void listing_opened(void *arg, bool run)
{
	mail_listing *l = arg;
	if (run) {
		json_t *body = mail_json(l);
		if (body != NULL)
			gw_async_complete_json(l->async, 200, body);
		else
			gw_async_complete_problem(l->async, gw_problem_new(500, NULL));
	}
	listing_free(l);
}

json_t *gw_mail_entry_json(const proj_mail_entry *e, const char *recipient)
{
	const mail_log_state *s = &e->log;
	return json_pack("{s:s, s:o, s:o, s:s, s:s, s:s, s:I, s:o, s:o, s:o}", "id", e->id, "order_id",
	                 string_or_null(s->subject.order_id), "product_id",
	                 string_or_null(s->subject.product_id), "kind", s->subject.kind, "recipient",
	                 recipient, "status", mail_log_status_name(s->status), "attempts",
	                 (json_int_t)s->attempts, "last_error", string_or_null(s->last_error), "delivered_at",
	                 time_or_null(s->delivered_at_ms), "updated_at", time_or_null(s->updated_at_ms));
}

static json_t *mail_json(const mail_listing *l)
{
	const proj_mail_page *page = &l->page;
	json_t *items = json_array();
	if (items == NULL)
		return NULL;
	for (size_t i = 0; i < page->count; i++) {
		json_t *item = gw_mail_entry_json(&page->items[i], l->recipients[i]);
		if (item == NULL || json_array_append_new(items, item) != 0) {
			json_decref(items);
			return NULL;
		}
	}
	return json_pack("{s:o, s:o}", "items", items, "next_cursor",
	                 page->next_cursor[0] ? json_string(page->next_cursor) : json_null());
}

void gw_mail_list(gw_request *r, gw_api *api, const gw_caller *caller)
{
	proj_mail_query q = {0};
	mail_listing *listing = NULL;
	json_t *problem = NULL;
	int64_t limit = MAIL_DEFAULT_LIMIT;
	bool has_limit;
	if ((problem = gw_problem_new(400, "the query is invalid")) == NULL) {
		gw_respond_error(r, 500, NULL);
		return;
	}
	bool ok = gw_api_query_int(r, "limit", 1, PROJ_MAIL_PAGE_MAX, &limit, &has_limit, problem);
	q.limit = (unsigned)limit;
	const char *status = gw_request_query(r, "status");
	if (status != NULL) {
		q.has_status = mail_log_status_parse(status, &q.status);
		if (!q.has_status) {
			gw_problem_add_error(problem, "status", "must be pending, delivered or failed");
			ok = false;
		}
	}
	q.order_id = gw_request_query(r, "order_id");
	if (q.order_id != NULL && !orn_id_valid(q.order_id)) {
		gw_problem_add_error(problem, "order_id", "must be 1 to 64 characters of [A-Za-z0-9_-]");
		ok = false;
	}
	ok &= gw_api_query_cursor(r, &q.cursor, problem);
	if (!ok) {
		gw_respond_problem(r, problem);
		return;
	}
	if (api->mail == NULL || (listing = calloc(1, sizeof *listing)) == NULL) {
		json_decref(problem);
		gw_respond_error(r, api->mail == NULL ? 503 : 500,
		                 api->mail == NULL ? "the mail log is unavailable" : NULL);
		return;
	}
	listing->api = api;
	orn_rc rc = proj_mail_list(api->mail, &q, &listing->page);
	if (rc != ORN_OK) {
		gw_api_answer_list(r, rc, NULL, problem, "the mail log is unavailable");
		listing_free(listing);
		return;
	}
	json_decref(problem);
	if ((listing->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL) {
		listing_free(listing);
		return; /* answered 500 */
	}
	const char *tokens[PROJ_MAIL_PAGE_MAX];
	for (size_t i = 0; i < listing->page.count; i++)
		tokens[i] = listing->page.items[i].log.subject.recipient;
	gw_async *async = listing->async; /* listing_opened may free listing before the call returns */
	rc = gw_api_keys_run(api, tokens, listing->page.count, listing_open, listing_opened, listing);
	if (rc != ORN_OK) {
		gw_async_complete_problem(async,
		                          gw_problem_new(503, "the mail log cannot be read now; try again"));
		listing_free(listing);
	}
}

/* ---- resends ------------------------------------------------------------- */

/* The status a refused RequestResend is answered with. */
static int resend_refusal_status(const char *code, bool customer)
{
	if (strcmp(code, "too_soon") == 0 || strcmp(code, "too_many") == 0)
		return 429;
	if (strcmp(code, "not_found") == 0)
		return customer ? 409 : 404; /* a customer's order exists: its email was not sent yet */
	return 409;
}

/* Sends RequestResend{by} to the log mail_id and defers r; the reply answers it. */
static void request_resend(gw_request *r, gw_api *api, const char *mail_id, const char *by, const char *actor,
                           gw_bus_fn *replied)
{
	mail_log_command c = {.kind = MAIL_LOG_REQUEST_RESEND, .at_ms = orn_now_ms()};
	char command_id[40];
	mp_writer *payload = mp_writer_create();
	snprintf(c.by, sizeof c.by, "%s", by);
	if (payload == NULL || mail_log_command_encode(payload, &c) != ORN_OK) {
		mp_writer_destroy(payload);
		gw_respond_error(r, 500, NULL);
		return;
	}
	gw_api_new_id(command_id, sizeof command_id);
	gw_async *a = gw_request_defer(r, GW_API_DEFER_MS);
	if (a != NULL) {
		orn_rc rc = gw_api_send(api, MAIL_LOG_AGGREGATE, mail_id, MAIL_LOG_CMD_REQUEST_RESEND,
		                        payload, command_id, actor, replied, a);
		if (rc != ORN_OK)
			gw_api_complete_failure(a, rc, NULL);
	}
	mp_writer_destroy(payload);
}

/* A refused resend: the status of its code, the decider's detail, and a
 * minute to wait when it came too soon. */
static void complete_resend(gw_async *a, orn_rc rc, bus_reply *reply, bool customer)
{
	if (rc == ORN_OK && reply->outcome == BUS_ACCEPTED) {
		gw_async_complete_json(a, 202, json_pack("{s:s}", "status", "requested"));
	} else if (rc == ORN_OK && reply->outcome == BUS_REJECTED) {
		const char *detail = strcmp(reply->code, "not_found") == 0 && customer
		                             ? "the confirmation email is not sent yet; retry in a moment"
		                             : reply->detail;
		gw_async_complete_problem(
		        a, gw_problem_new(resend_refusal_status(reply->code, customer), detail));
	} else {
		gw_api_complete_failure(a, rc, reply);
	}
}

static void customer_resend_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	complete_resend(closure, rc, reply, true);
}

static void admin_resend_replied(void *closure, orn_rc rc, bus_reply *reply)
{
	complete_resend(closure, rc, reply, false);
}

/* Strict body: none, or {}. False after answering 400. */
static bool empty_body(gw_request *r)
{
	static const gw_field none[] = {{0}};
	size_t len = 0;
	json_t *body = NULL;
	gw_request_body(r, &len);
	if (len > 0 && !gw_request_json(r, none, &body))
		return false;
	json_decref(body);
	return true;
}

/* POST /api/v1/orders/{id}/confirmation-email */
void gw_mail_resend_confirmation(gw_request *r, gw_api *api, const gw_caller *caller)
{
	proj_order *order = NULL;
	char key[MAIL_KEY_MAX], mail_id[MAIL_LOG_ID_MAX];
	const char *id;
	if ((id = gw_api_path_id(r, "id")) == NULL || !empty_body(r))
		return;
	if (!gw_api_address_allowed(api, r, RESEND_SCOPE)) {
		gw_respond_error(r, 429, "too many requests from this address; retry later");
		return;
	}
	orn_rc rc = gw_api_read_own_order(api, id, caller->claims.sub, &order);
	if (rc == ORN_ENOTFOUND)
		gw_respond_error(r, 404, "no such order");
	else if (rc != ORN_OK)
		gw_respond_error(r, rc == ORN_ENOMEM ? 500 : 503, "the orders cannot be read now; try again");
	else if (order->state.status != ORDER_AWAITING_CONFIRMATION)
		gw_respond_error(r, 409, "the order does not await confirmation");
	else if (mail_key(key, id, ORDER_AWAITING_CONFIRMATION) != ORN_OK ||
	         mail_log_id(mail_id, key) != ORN_OK)
		gw_respond_error(r, 500, NULL);
	else
		request_resend(r, api, mail_id, "customer", caller->claims.sub, customer_resend_replied);
	free(order);
}

/* POST /api/v1/admin/mail/{id}/resend */
void gw_mail_resend(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const char *id;
	if ((id = gw_api_path_id(r, "id")) == NULL || !empty_body(r))
		return;
	request_resend(r, api, id, "admin", caller->claims.sub, admin_resend_replied);
}
