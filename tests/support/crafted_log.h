/* crafted_log.h — commits written by hand for tests of the commit chain
 * (ADR 015), with the aggregates' real event payloads so that folds apply
 * them:
 *   valid   appended at the aggregate's position (es_append);
 *   void    decided on a stale version while JetStream's check names the
 *           subject's real last sequence: the server stores it, its
 *           Orion-Prev names the stale version, es_append answers
 *           ORN_ECONFLICT after confirming it — what a lost race on an R3
 *           stream leaves in the log;
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

#endif
