/* crafted_log.h — commits written by hand for tests of the commit chain
 * (ADR 015), with the aggregates' real event payloads so that folds apply
 * them:
 *   valid   appended at the aggregate's position (es_append);
 *   void    decided on a stale version while JetStream's check names the
 *           subject's real last sequence: the server stores it and its
 *           Orion-Prev names the stale version — what a lost race on an R3
 *           stream leaves in the log (es_commit_check confirms it is void);
 *   legacy  published with no Orion-Prev at all, as every commit was before
 *           the chain: always valid, so two of them decided on one state both
 *           count (the pre-fix oversell).
 * The log object remembers each aggregate's position (last valid commit and
 * last commit) as these calls moved it; nothing else may write to the
 * aggregates it crafts. Every call asserts (Criterion) on failure. */
#ifndef ORION_TEST_CRAFTED_LOG_H
#define ORION_TEST_CRAFTED_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "cart.h"
#include "evstore.h"
#include "natsd.h"
#include "mail_log.h"
#include "order.h"
#include "payment.h"
#include "product.h"
#include "sku.h"
#include "stock.h"
#include "user.h"

/* One event of a crafted commit: its type and msgpack payload (owned: the
 * commit calls below free it). */
typedef struct tcl_event {
	const char *type;
	mp_writer *payload;
} tcl_event;

/* An event of each kind, encoded with the kind's own codec. */
tcl_event tcl_stock(const stock_event *e);
tcl_event tcl_product(const product_event *e);
tcl_event tcl_sku(const sku_event *e);
tcl_event tcl_user(const user_event *e);
tcl_event tcl_cart(const cart_event *e);
tcl_event tcl_order(const order_event *e);
tcl_event tcl_payment(const payment_event *e);
tcl_event tcl_mail(const mail_log_event *e);

/* Example events of each kind with valid values (the decoders refuse what
 * decide could not have emitted), encoded as above. */
tcl_event tcl_stock_event(stock_event_kind kind, const char *reservation_id, int64_t quantity);
/* An order of one line of quantity units of product; the other fields fixed
 * (paid with charge "ch_1", cancelled by the customer). */
tcl_event tcl_order_event(order_event_kind kind, const char *product, int64_t quantity);
/* attempted: provider key "key-1", 2750 EUR by visa 4242; succeeded and
 * refunded: charge_id (refund "re-<charge_id>"); declined: card_declined. */
tcl_event tcl_payment_event(payment_event_kind kind, const char *charge_id);
tcl_event tcl_sku_event(sku_event_kind kind, const char *product_id);
/* registered: account user_id of alice@example.com with role; role changed: role. */
tcl_event tcl_user_event(user_event_kind kind, const char *user_id, user_role role);
/* created: every field (sku "TEA-1", EUR, kitchen); updated: name and price. */
tcl_event tcl_product_event(product_event_kind kind, const char *name, int64_t price_cents);
/* item added: the line of product at quantity (added units: added), EUR;
 * quantity changed / item removed: the line; checked out: order "o-cart"
 * taking quantity of product. */
tcl_event tcl_cart_event(cart_event_kind kind, const char *product, int64_t quantity, int64_t added);
/* The "confirmed" email of order_id to alice@example.com, attempt attempt. */
tcl_event tcl_mail_event(mail_log_event_kind kind, const char *order_id, uint32_t attempt);

typedef struct tcl_log tcl_log;

/* A log writer on store (borrowed; it must outlive the log). */
tcl_log *tcl_create(es_store *store);
void tcl_destroy(tcl_log *log);

/* The aggregate's position as the calls below left it ({0, 0}: none yet). */
es_position tcl_position(tcl_log *log, const char *aggregate, const char *id);

/* Appends a valid commit of count events at the aggregate's position; returns
 * its sequence (the new version). */
uint64_t tcl_valid(tcl_log *log, const char *aggregate, const char *id, const tcl_event *events,
                   size_t count);

/* Appends a commit decided on stale (an older valid version, 0: "new") that
 * the server stores after the aggregate's last commit and the chain voids;
 * returns its sequence. */
uint64_t tcl_void(tcl_log *log, const char *aggregate, const char *id, uint64_t stale,
                  const tcl_event *events, size_t count);

/* Publishes a commit with no Orion-Prev header (written before ADR 015) and
 * no expected sequence; returns its sequence. */
uint64_t tcl_legacy(tcl_log *log, const char *aggregate, const char *id, const tcl_event *events,
                    size_t count);

/* What a test of the commit chain starts: a nats-server of its own, a store
 * on it, a log writer on the store and a data directory for the orion
 * binary. tcl_world_stop stops and removes all of it (also on a world never
 * started). */
typedef struct tcl_world {
	natsd *server;
	es_store *store;
	tcl_log *log;
	char *data_dir;
} tcl_world;

void tcl_world_start(tcl_world *w, const char *tag);
void tcl_world_stop(tcl_world *w);

/* The last sequence of the event stream. */
uint64_t tcl_stream_last(const tcl_world *w);

/* Runs `orion args` (th_run_orion) against w's server with w's data dir,
 * stderr appended to <data dir>/stderr.log; *out (may be NULL) gets stdout. */
int tcl_run_orion(const tcl_world *w, const char *args, char **out);

#endif
