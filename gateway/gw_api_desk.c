/* gw_api_desk.c — the admin order desk's read routes (role admin; ADR 029):
 *   GET /api/v1/admin/orders?status=&customer_email=&since=&until=&limit=&cursor=
 *   GET /api/v1/admin/orders/{id}
 *   GET /api/v1/admin/customers?q=&limit=&cursor=
 *
 * Pages come from the desk read model (projections/desk.h), orders from the
 * orders model, accounts from the users model. An address in a query is
 * looked up as login looks it up, by its blind index (ADR 027): no clear
 * address is ever a key. The customers' emails and names are sealed there;
 * they are opened for the answer with the keystore, off the loop when a key
 * is not cached (gw_api_keys_run). An erased customer shows email (and name)
 * null and status "erased". Nothing personal is logged. */
#include "gw_api_desk.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "desk.h"
#include "gw_api-internal.h"
#include "gw_api_orders.h"
#include "gw_problem.h"
#include "gw_views.h"
#include "keystore.h"
#include "log.h"
#include "users.h"

#define DESK_DEFAULT_LIMIT 20
#define QUERY_INVALID      "invalid query parameters"
#define DESK_UNAVAILABLE   "the order desk cannot be read now; try again"

/* A customer as an answer shows it: sealed fields read from the users
 * model, opened by people_open. */
typedef struct person {
	bool found; /* the users model has the account */
	char user_id[USER_ID_MAX];
	char key[USER_KEY_MAX];
	user_erasure erasure;
	char email_token[USER_SEALED_MAX], name_token[USER_SEALED_MAX];
	char email[PD_PLAIN_MAX + 1], name[PD_PLAIN_MAX + 1];
	bool shown; /* email (and name) opened: not erased */
} person;

/* One answer being opened (off the loop when a key is not cached). */
typedef struct desk_answer {
	gw_api *api;
	gw_async *async;
	bool with_names;
	orn_rc opened; /* the first failure to open a field */
	size_t count;
	person people[PROJ_DESK_PAGE_MAX];
	/* GET /admin/orders */
	proj_desk_orders_page *orders;
	/* GET /admin/orders/{id} */
	proj_order *order;
	proj_desk_event *events;
	size_t event_count;
	bool events_more;
	/* GET /admin/customers */
	int64_t created_at_ms[PROJ_DESK_PAGE_MAX];
	size_t order_count[PROJ_DESK_PAGE_MAX];
	char next_cursor[PROJ_CURSOR_MAX];
} desk_answer;

static void answer_free(desk_answer *a)
{
	if (a == NULL)
		return;
	free(a->orders);
	free(a->order);
	free(a->events);
	sodium_memzero(a->people, sizeof a->people);
	free(a);
}

static bool available(gw_request *r, const gw_api *api)
{
	if (api->desk != NULL && api->orders != NULL && api->users != NULL && api->keys != NULL)
		return true;
	gw_respond_error(r, 503, "the order desk is unavailable");
	return false;
}

/* Copies the account's id, erasure and sealed fields into p. */
static void person_read(person *p, const proj_user *u)
{
	snprintf(p->user_id, sizeof p->user_id, "%s", u->user_id);
	snprintf(p->key, sizeof p->key, "%s", u->key);
	p->found = true;
	p->erasure = u->erasure;
	memcpy(p->email_token, u->email, sizeof p->email_token);
	memcpy(p->name_token, u->name, sizeof p->name_token);
}

/* The account user_id into p; one the users model lacks leaves p not found
 * (its orders still list, with email null). */
static orn_rc person_by_id(gw_api *api, const char *user_id, person *p)
{
	proj_user *u = malloc(sizeof *u);
	orn_rc rc = u != NULL ? proj_users_get_by_id(api->users, user_id, u) : ORN_ENOMEM;
	snprintf(p->user_id, sizeof p->user_id, "%s", user_id);
	if (rc == ORN_OK)
		person_read(p, u);
	else if (rc == ORN_ENOTFOUND || rc == ORN_EINVAL)
		rc = ORN_OK;
	if (u != NULL)
		sodium_memzero(u, sizeof *u);
	free(u);
	return rc;
}

/* Opens each shown person's email (and name), on a key worker or at once. */
static void people_open(void *arg)
{
	desk_answer *a = arg;
	for (size_t i = 0; i < a->count; i++) {
		person *p = &a->people[i];
		if (!p->found || p->erasure == USER_ERASED || p->email_token[0] == '\0')
			continue;
		orn_rc rc =
		        gw_api_open_person(a->api, p->email_token, p->name_token, p->email, sizeof p->email,
		                           a->with_names ? p->name : NULL, sizeof p->name);
		p->shown = rc == ORN_OK;
		if (rc != ORN_OK && rc != ORN_ENOTFOUND && a->opened == ORN_OK)
			a->opened = rc; /* ENOTFOUND: the key is gone, shown as erased */
	}
}

/* Runs people_open for a (gw_api_keys_run), then done; answers 503 when it
 * cannot start (a is freed then). */
static void open_people(desk_answer *a, gw_work_done *done)
{
	const char *tokens[2 * PROJ_DESK_PAGE_MAX];
	size_t n = 0;
	for (size_t i = 0; i < a->count; i++) {
		const person *p = &a->people[i];
		if (!p->found || p->erasure == USER_ERASED || p->email_token[0] == '\0')
			continue;
		tokens[n++] = p->email_token;
		if (a->with_names)
			tokens[n++] = p->name_token;
	}
	gw_async *async = a->async; /* done may free a before the call returns */
	if (gw_api_keys_run(a->api, tokens, n, people_open, done, a) != ORN_OK) {
		gw_async_complete_problem(async, gw_problem_new(503, DESK_UNAVAILABLE));
		answer_free(a);
	}
}

/* active, erasure_requested or erased; an account whose key is gone (its
 * fields did not open) is erased whatever the model says yet. */
static const char *person_status(const person *p)
{
	if (p->erasure == USER_ERASED || (!p->shown && p->erasure == USER_ACTIVE))
		return "erased";
	return p->erasure == USER_ERASURE_REQUESTED ? "erasure_requested" : "active";
}

static json_t *text_or_null(bool shown, const char *text)
{
	return shown ? json_string(text) : json_null();
}

/* {id, email}: email null once erased. */
static json_t *customer_json(const person *p)
{
	return json_pack("{s:s, s:o}", "id", p->user_id, "email", text_or_null(p->shown, p->email));
}

/* Completes a with body (500 when NULL), or 503 when a field did not open. */
static void complete(desk_answer *a, bool run, json_t *(*body_of)(desk_answer *a))
{
	if (run && a->opened != ORN_OK) {
		log_error("a customer's fields do not open", "error", orn_strerror(a->opened));
		gw_async_complete_problem(a->async, gw_problem_new(503, DESK_UNAVAILABLE));
	} else if (run) {
		json_t *body = body_of(a);
		if (body != NULL)
			gw_async_complete_json(a->async, 200, body);
		else
			gw_async_complete_problem(a->async, gw_problem_new(500, NULL));
	}
	answer_free(a);
}

static json_t *page_json(json_t *items, const char *next_cursor)
{
	return json_pack("{s:o, s:o}", "items", items, "next_cursor",
	                 next_cursor[0] != '\0' ? json_string(next_cursor) : json_null());
}

/* limit and cursor into *limit, *cursor; false after adding errors to problem. */
static bool page_query(gw_request *r, unsigned *limit, const char **cursor, json_t *problem)
{
	int64_t value = DESK_DEFAULT_LIMIT;
	bool present;
	bool ok = gw_api_query_int(r, "limit", 1, PROJ_DESK_PAGE_MAX, &value, &present, problem);
	ok &= gw_api_query_cursor(r, cursor, problem);
	*limit = (unsigned)value;
	return ok;
}

/* The account of an exact address (the query parameter name), looked up by
 * its blind index as login does. *found false for an unknown address or an
 * erased account. False
 * after adding an error naming the parameter to problem (not an address). */
static bool account_by_email(gw_api *api, const char *name, const char *email, proj_user *out, bool *found,
                             orn_rc *rc, json_t *problem)
{
	char normalized[USER_EMAIL_MAX], index[PD_INDEX_MAX];
	*found = false;
	*rc = ORN_OK;
	if (user_email_normalize(email, normalized, sizeof normalized) != ORN_OK) {
		gw_problem_add_error(problem, name, "must be an email address");
		return false;
	}
	ks_blind_index(api->keys, normalized, index); /* never the address in a key (ADR 027) */
	*rc = proj_users_get_by_key(api->users, index, out);
	/* an erased account is nobody's address any more: its row stays under the
	 * blind index, but finding it would tie the address to its orders again */
	*found = *rc == ORN_OK && out->erasure != USER_ERASED;
	if (*rc == ORN_ENOTFOUND || *rc == ORN_EINVAL)
		*rc = ORN_OK;
	sodium_memzero(normalized, sizeof normalized);
	return true;
}

/* ---- GET /api/v1/admin/orders -------------------------------------------- */

static json_t *orders_json(desk_answer *a)
{
	json_t *items = json_array();
	for (size_t i = 0; items != NULL && i < a->orders->count; i++) {
		json_t *item = gw_orders_summary_json(&a->orders->items[i].summary);
		json_t *customer = customer_json(&a->people[i]);
		if (item == NULL || customer == NULL ||
		    json_object_set_new(item, "customer", customer) != 0 ||
		    json_array_append_new(items, item) != 0) {
			json_decref(item);
			json_decref(items);
			return NULL;
		}
	}
	return items != NULL ? page_json(items, a->orders->next_cursor) : NULL;
}

static void orders_opened(void *arg, bool run)
{
	complete(arg, run, orders_json);
}

/* A time query parameter (RFC 3339) into *ms, *has; false after adding an
 * error naming it to problem. */
static bool time_query(gw_request *r, const char *name, int64_t *ms, bool *has, json_t *problem)
{
	const char *text = gw_request_query(r, name);
	*has = text != NULL;
	if (text == NULL || gw_view_parse_time(text, ms))
		return true;
	gw_problem_add_error(problem, name, "must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z");
	return false;
}

/* The filters of GET /admin/orders into q (customer_email resolved into
 * customer, *nobody when no account has it); false after answering. */
static bool orders_query(gw_request *r, gw_api *api, proj_desk_query *q, proj_user *customer, bool *nobody)
{
	json_t *problem = gw_problem_new(400, QUERY_INVALID);
	orn_rc rc = ORN_OK;
	if (problem == NULL) {
		gw_respond_error(r, 500, NULL);
		return false;
	}
	bool ok = page_query(r, &q->limit, &q->cursor, problem);
	const char *status = gw_request_query(r, "status");
	if (status != NULL && !(q->has_status = order_status_parse(status, &q->status))) {
		gw_problem_add_error(problem, "status",
		                     "must be pending, awaiting_confirmation, awaiting_payment, confirmed, "
		                     "payment_failed, cancelled, shipped or delivered");
		ok = false;
	}
	ok &= time_query(r, "since", &q->since_ms, &q->has_since, problem);
	ok &= time_query(r, "until", &q->until_ms, &q->has_until, problem);
	if (q->has_since && q->has_until && q->since_ms > q->until_ms) {
		gw_problem_add_error(problem, "since", "must not be after until");
		ok = false;
	}
	const char *email = gw_request_query(r, "customer_email");
	if (email != NULL) {
		bool found = false;
		ok &= account_by_email(api, "customer_email", email, customer, &found, &rc, problem);
		*nobody = !found;
		q->customer_id = found ? customer->user_id : NULL;
	}
	if (!ok) {
		gw_respond_problem(r, problem);
		return false;
	}
	json_decref(problem);
	if (rc != ORN_OK) {
		gw_respond_error(r, 503, DESK_UNAVAILABLE);
		return false;
	}
	return true;
}

void gw_desk_orders_list(gw_request *r, gw_api *api, const gw_caller *caller)
{
	proj_desk_query q = {0};
	proj_user *customer = NULL;
	desk_answer *a = NULL;
	bool nobody = false;
	(void)caller;
	if (!available(r, api))
		return;
	if ((customer = calloc(1, sizeof *customer)) == NULL || (a = calloc(1, sizeof *a)) == NULL ||
	    (a->orders = calloc(1, sizeof *a->orders)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	if (!orders_query(r, api, &q, customer, &nobody))
		goto done;
	a->api = api;
	orn_rc rc = nobody ? ORN_OK : proj_desk_orders(api->desk, &q, a->orders); /* unknown email: empty */
	if (rc == ORN_EINVAL) {
		json_t *problem = gw_problem_new(400, QUERY_INVALID);
		gw_api_bad_cursor(problem);
		gw_respond_problem(r, problem);
		goto done;
	}
	a->count = a->orders->count;
	for (size_t i = 0; rc == ORN_OK && i < a->count; i++)
		rc = person_by_id(api, a->orders->items[i].customer_id, &a->people[i]);
	if (rc != ORN_OK) {
		gw_respond_error(r, rc == ORN_ENOMEM ? 500 : 503, DESK_UNAVAILABLE);
		goto done;
	}
	if ((a->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done; /* answered 500 */
	open_people(a, orders_opened);
	a = NULL;
done:
	if (customer != NULL)
		sodium_memzero(customer, sizeof *customer);
	free(customer);
	answer_free(a);
}

/* ---- GET /api/v1/admin/orders/{id} --------------------------------------- */

static json_t *event_json(const proj_desk_event *e)
{
	char summary[PROJ_DESK_TYPE_MAX + 2 * ES_ID_MAX + 16];
	snprintf(summary, sizeof summary, "%s on %s %s", e->type, e->aggregate, e->aggregate_id);
	return json_pack("{s:I, s:o, s:s, s:s, s:s, s:s}", "seq", (json_int_t)e->seq, "at",
	                 gw_view_time_json(e->at_ms, false), "aggregate", e->aggregate, "aggregate_id",
	                 e->aggregate_id, "type", e->type, "summary", summary);
}

static json_t *order_json(desk_answer *a)
{
	mp_writer *w = gw_api_text_buffer(a->api);
	json_t *body = NULL, *timeline = json_array(), *customer = customer_json(&a->people[0]);
	if (w == NULL || timeline == NULL || customer == NULL ||
	    !gw_api_write_order(a->api, w, a->order->id, &a->order->state, ORDER_HISTORY_MAX) ||
	    (body = json_loadb((const char *)mp_writer_data(w), mp_writer_size(w), 0, NULL)) == NULL)
		goto fail;
	for (size_t i = 0; i < a->event_count; i++)
		if (json_array_append_new(timeline, event_json(&a->events[i])) != 0)
			goto fail;
	if (json_object_set_new(body, "customer", customer) != 0)
		goto fail_body;
	customer = NULL;
	if (json_object_set_new(body, "timeline", timeline) != 0)
		goto fail_body;
	timeline = NULL;
	if (json_object_set_new(body, "timeline_truncated", json_boolean(a->events_more)) != 0)
		goto fail_body;
	return body;
fail_body:
	json_decref(body);
fail:
	json_decref(timeline);
	json_decref(customer);
	return NULL;
}

static void order_opened(void *arg, bool run)
{
	complete(arg, run, order_json);
}

void gw_desk_order_get(gw_request *r, gw_api *api, const gw_caller *caller)
{
	const char *id;
	desk_answer *a = NULL;
	(void)caller;
	if (!available(r, api) || (id = gw_api_path_id(r, "id")) == NULL)
		return;
	if ((a = calloc(1, sizeof *a)) == NULL || (a->order = malloc(sizeof *a->order)) == NULL ||
	    (a->events = calloc(PROJ_DESK_TIMELINE_MAX, sizeof *a->events)) == NULL) {
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	a->api = api;
	orn_rc rc = proj_orders_get(api->orders, id, a->order);
	if (rc == ORN_ENOTFOUND || rc == ORN_EINVAL) {
		gw_respond_error(r, 404, "no such order");
		goto done;
	}
	if (rc == ORN_OK)
		rc = proj_desk_timeline(api->desk, id, a->events, PROJ_DESK_TIMELINE_MAX, &a->event_count,
		                        &a->events_more);
	a->count = 1;
	if (rc == ORN_OK)
		rc = person_by_id(api, a->order->state.customer_id, &a->people[0]);
	if (rc != ORN_OK) {
		gw_respond_error(r, rc == ORN_ENOMEM ? 500 : 503, DESK_UNAVAILABLE);
		goto done;
	}
	if ((a->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done; /* answered 500 */
	open_people(a, order_opened);
	a = NULL;
done:
	answer_free(a);
}

/* ---- GET /api/v1/admin/customers ----------------------------------------- */

static json_t *customers_json(desk_answer *a)
{
	json_t *items = json_array();
	for (size_t i = 0; items != NULL && i < a->count; i++) {
		const person *p = &a->people[i];
		json_t *item =
		        json_pack("{s:s, s:o, s:o, s:o, s:I, s:s}", "id", p->user_id, "email",
		                  text_or_null(p->shown, p->email), "name", text_or_null(p->shown, p->name),
		                  "created_at", gw_view_time_json(a->created_at_ms[i], true), "order_count",
		                  (json_int_t)a->order_count[i], "status", person_status(p));
		if (item == NULL || json_array_append_new(items, item) != 0) {
			json_decref(items);
			return NULL;
		}
	}
	return items != NULL ? page_json(items, a->next_cursor) : NULL;
}

static void customers_opened(void *arg, bool run)
{
	complete(arg, run, customers_json);
}

/* Adds the account (read into u) as the answer's next row. */
static orn_rc add_account(gw_api *api, desk_answer *a, const proj_user *u)
{
	size_t i = a->count++;
	person_read(&a->people[i], u);
	orn_rc rc = proj_orders_count(api->orders, u->user_id, &a->order_count[i]);
	if (rc == ORN_OK) {
		rc = proj_desk_account_created(api->desk, u->key, &a->created_at_ms[i]);
		if (rc == ORN_ENOTFOUND)
			rc = ORN_OK; /* the desk model is behind: created_at null */
	}
	return rc;
}

void gw_desk_customers_list(gw_request *r, gw_api *api, const gw_caller *caller)
{
	desk_answer *a = NULL;
	proj_desk_accounts_page *page = NULL;
	proj_user *u = NULL;
	unsigned limit = DESK_DEFAULT_LIMIT;
	const char *cursor = NULL, *q = gw_request_query(r, "q");
	bool found = false;
	orn_rc rc = ORN_OK;
	(void)caller;
	if (!available(r, api))
		return;
	json_t *problem = gw_problem_new(400, QUERY_INVALID);
	if (problem == NULL || (a = calloc(1, sizeof *a)) == NULL || (u = calloc(1, sizeof *u)) == NULL ||
	    (page = calloc(1, sizeof *page)) == NULL) {
		json_decref(problem);
		gw_respond_error(r, 500, NULL);
		goto done;
	}
	a->api = api;
	a->with_names = true;
	bool ok = page_query(r, &limit, &cursor, problem);
	if (ok && q != NULL) /* an exact address only: names are sealed, never in a key (ADR 029) */
		ok = account_by_email(api, "q", q, u, &found, &rc, problem);
	if (!ok) {
		gw_respond_problem(r, problem);
		goto done;
	}
	if (q != NULL) {
		if (rc == ORN_OK && found)
			rc = add_account(api, a, u);
	} else {
		rc = proj_desk_accounts(api->desk, limit, cursor, page);
		if (rc == ORN_EINVAL) {
			gw_api_bad_cursor(problem);
			gw_respond_problem(r, problem);
			goto done;
		}
		for (size_t i = 0; rc == ORN_OK && i < page->count; i++) {
			rc = proj_users_get_by_key(api->users, page->items[i].key, u);
			if (rc == ORN_ENOTFOUND) {
				rc = ORN_OK; /* the users model is behind the desk's: next time */
				continue;
			}
			if (rc == ORN_OK)
				rc = add_account(api, a, u);
		}
		memcpy(a->next_cursor, page->next_cursor, sizeof a->next_cursor);
	}
	json_decref(problem);
	if (rc != ORN_OK) {
		gw_respond_error(r, rc == ORN_ENOMEM ? 500 : 503, DESK_UNAVAILABLE);
		goto done;
	}
	if ((a->async = gw_request_defer(r, GW_API_DEFER_MS)) == NULL)
		goto done; /* answered 500 */
	open_people(a, customers_opened);
	a = NULL;
done:
	if (u != NULL)
		sodium_memzero(u, sizeof *u);
	free(u);
	free(page);
	answer_free(a);
}
