/* desk.h — the admin order desk's read model (docs/adr/029-admin-order-desk.md):
 * every order newest first, every account newest first, and each order's
 * story (timeline) across aggregates.
 *
 * Fed by every event (orion.evt.>). It keeps no order state of its own: an
 * order's customer and creation time are read from the orders model in the
 * same write transaction (the orders model is registered before it), its
 * status and total from the orders model when a page is read. Personal
 * fields never reach a key: accounts are keyed by their blind index, as the
 * users model keys them (ADR 027).
 *
 * The story of an order is the rule `orion replay --order` applies
 * (proj_desk_story_refs): the order's own events, every event whose causation
 * id is "<order>:..." or whose correlation id is the order's id, and the mail
 * log of its emails. The runner feeds valid commits only: a void commit never
 * enters a story. */
#ifndef ORION_PROJ_DESK_H
#define ORION_PROJ_DESK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "orders.h"
#include "orn.h"
#include "proj_cursor.h"
#include "proj_env.h"
#include "projector.h"
#include "user.h"

#define PROJ_DESK_NAME         "desk"
#define PROJ_DESK_FILTER       "orion.evt.>"
#define PROJ_DESK_PAGE_MAX     100
#define PROJ_DESK_TIMELINE_MAX 256 /* events of one story a read returns, oldest first */
#define PROJ_DESK_TYPE_MAX     64  /* bytes of an event type kept, NUL included */

/* The orders whose story an event may belong to: the one definition that
 * `orion replay --order` and this model share (ADR 029). */
#define PROJ_DESK_STORY_REFS 4

typedef enum proj_desk_story_by {
	PROJ_DESK_BY_SUBJECT = 1,     /* orion.evt.order.<order> */
	PROJ_DESK_BY_CAUSATION = 2,   /* causation "<order>:..." (the saga's, the holds', the payment
	                                 service's command ids); not for a mail log's own ids */
	PROJ_DESK_BY_MAIL = 4,        /* a mail log event (orion.evt.mail.*) of the order's email */
	PROJ_DESK_BY_CORRELATION = 8, /* correlation id = the order id */
} proj_desk_story_by;

typedef struct proj_desk_story_ref {
	char order_id[ES_ID_MAX + 1];
	unsigned by; /* proj_desk_story_by flags */
} proj_desk_story_ref;

/* The orders the event (on subject) names as above, each once (its flags
 * or-ed), into out; returns their number. A mail log payload that does not
 * decode names no order. */
size_t proj_desk_story_refs(const char *subject, const env_envelope *e,
                            proj_desk_story_ref out[PROJ_DESK_STORY_REFS]);

/* True if the event (on subject) belongs to the story of order_id: one of
 * proj_desk_story_refs. */
bool proj_desk_in_story(const char *order_id, const char *subject, const env_envelope *e);

/* Filters of proj_desk_orders (all optional; they combine). */
typedef struct proj_desk_query {
	bool has_status;
	order_status status;
	const char *customer_id; /* NULL: every customer */
	bool has_since, has_until;
	int64_t since_ms, until_ms; /* created_at in [since, until] */
	unsigned limit;             /* 1..PROJ_DESK_PAGE_MAX */
	const char *cursor;         /* NULL or "": the first page */
} proj_desk_query;

typedef struct proj_desk_order {
	proj_order_summary summary;
	char customer_id[ORDER_ID_MAX];
} proj_desk_order;

typedef struct proj_desk_orders_page {
	proj_desk_order items[PROJ_DESK_PAGE_MAX];
	size_t count;
	char next_cursor[PROJ_CURSOR_MAX]; /* "" at the end */
} proj_desk_orders_page;

/* One account of the accounts list: its users-model key and registration time. */
typedef struct proj_desk_account {
	char key[USER_KEY_MAX];
	int64_t created_at_ms;
} proj_desk_account;

typedef struct proj_desk_accounts_page {
	proj_desk_account items[PROJ_DESK_PAGE_MAX];
	size_t count;
	char next_cursor[PROJ_CURSOR_MAX]; /* "" at the end */
} proj_desk_accounts_page;

/* One event of an order's story. */
typedef struct proj_desk_event {
	uint64_t seq;
	int64_t at_ms;
	char aggregate[ES_ID_MAX + 1];
	char aggregate_id[ES_ID_MAX + 1];
	char type[PROJ_DESK_TYPE_MAX];
} proj_desk_event;

typedef struct proj_desk proj_desk;

/* Creates the model over env, reading orders (which must be fed by the same
 * runner, before it), and opens (creating) its sub-databases. *out is owned
 * by the caller: proj_desk_destroy after the runner that feeds it stopped. */
orn_rc proj_desk_create(proj_env *env, proj_orders *orders, proj_desk **out);
void proj_desk_destroy(proj_desk *m);

/* The projection definition to hand to proj_runner_start (owned by m). */
const proj_def *proj_desk_def(proj_desk *m);

/* Orders newest first (created_at desc, then id desc) that pass q's filters,
 * into out (caller-owned, ~30 KB). ORN_EINVAL for a bad limit or cursor
 * (or an invalid customer id); count 0 on error. A filter that few orders
 * pass walks many rows: the cost is written in ADR 029. */
orn_rc proj_desk_orders(proj_desk *m, const proj_desk_query *q, proj_desk_orders_page *out);

/* Accounts newest first (registration time desc, then key desc), limit
 * 1..PROJ_DESK_PAGE_MAX, cursor NULL/"" for the first page, into out
 * (caller-owned). ORN_EINVAL for a bad limit or cursor; count 0 on error. */
orn_rc proj_desk_accounts(proj_desk *m, unsigned limit, const char *cursor, proj_desk_accounts_page *out);

/* The registration time of the account keyed key into *created_at_ms.
 * ORN_ENOTFOUND if the model has no such account, ORN_EINVAL for a bad key. */
orn_rc proj_desk_account_created(proj_desk *m, const char *key, int64_t *created_at_ms);

/* The story of order id, oldest first (stream order), at most cap events
 * into out (caller-owned), their number in *count; *more when some were left
 * out. ORN_EINVAL for an invalid id; an order without events: ORN_OK, 0. */
orn_rc proj_desk_timeline(proj_desk *m, const char *id, proj_desk_event *out, size_t cap, size_t *count,
                          bool *more);

#endif
