/* gw_api_mail.c — GET /api/v1/admin/mail: the mail delivery log (role admin).
 *
 * Answers at once from the mail read model (projections/mails.h): emails in
 * mail id order, optionally one order's (order_id) and/or one delivery state's
 * (status = pending | delivered | failed), a page of 1..100 (default 20) with
 * an opaque cursor. Each item: {id, order_id, product_id, kind, recipient,
 * status, attempts, last_error, delivered_at, updated_at}; order_id is null
 * for a low-stock alert, product_id null for an order's email. */
#include "gw_api.h"

#include <stdlib.h>
#include <string.h>

#include "gw_problem.h"
#include "mails.h"

#define MAIL_DEFAULT_LIMIT 20

/* RFC 3339 UTC with milliseconds, or null for 0 (no such time). */
static json_t *time_or_null(int64_t ms)
{
	return gw_api_time_json(ms, true);
}

static json_t *string_or_null(const char *s)
{
	return s[0] != '\0' ? json_string(s) : json_null();
}

static json_t *mail_json(const proj_mail_page *page)
{
	json_t *items = json_array();
	if (items == NULL)
		return NULL;
	for (size_t i = 0; i < page->count; i++) {
		const proj_mail_entry *e = &page->items[i];
		const mail_log_state *s = &e->log;
		json_t *item = json_pack(
		        "{s:s, s:o, s:o, s:s, s:s, s:s, s:I, s:o, s:o, s:o}", "id", e->id, "order_id",
		        string_or_null(s->subject.order_id), "product_id",
		        string_or_null(s->subject.product_id), "kind", s->subject.kind, "recipient",
		        s->subject.recipient, "status", mail_log_status_name(s->status), "attempts",
		        (json_int_t)s->attempts, "last_error", string_or_null(s->last_error), "delivered_at",
		        time_or_null(s->delivered_at_ms), "updated_at", time_or_null(s->updated_at_ms));
		if (item == NULL || json_array_append_new(items, item) != 0) {
			json_decref(items);
			return NULL;
		}
	}
	return json_pack("{s:o, s:o}", "items", items, "next_cursor",
	                 page->next_cursor[0] ? json_string(page->next_cursor) : json_null());
}

static void list_mail(gw_request *r, void *arg)
{
	gw_api *api = arg;
	gw_claims claims;
	proj_mail_query q = {0};
	proj_mail_page *page = NULL;
	json_t *problem = NULL;
	int64_t limit = MAIL_DEFAULT_LIMIT;
	bool has_limit;
	if (!gw_api_authorize(r, api, true, &claims))
		return;
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
	if (!ok)
		goto invalid;
	if (api->mail == NULL) {
		gw_respond_error(r, 503, "the mail log is unavailable");
		goto done;
	}
	if ((page = malloc(sizeof *page)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	orn_rc rc = proj_mail_list(api->mail, &q, page);
	gw_api_answer_list(r, rc, rc == ORN_OK ? mail_json(page) : NULL, problem,
	                   "the mail log is unavailable");
	problem = NULL;
	goto done;
invalid:
	gw_respond_problem(r, problem);
	problem = NULL;
done:
	json_decref(problem);
	free(page);
}

orn_rc gw_api_register_mail(gw_api *api)
{
	static const gw_api_route routes[] = {
	        {GW_GET, "/api/v1/admin/mail", list_mail},
	};
	return gw_api_register_routes(api, routes, ORN_ARRAY_LEN(routes));
}
