/* saga_plan.h — the checkout saga's decisions, as pure functions.
 *
 * The saga (saga.c) reacts to order events. Everything it decides lives here:
 * which commands to send for an event, given the order's current state (its
 * events folded with order_evolve); what follows once those commands are
 * answered; which replies are final; and the expiry the timers role sends
 * when an order's deadline falls due (ADR 010: deadlines are read from the
 * orders read model, not kept by the saga). The shell only executes plans: it
 * sends the commands in order, records each answer, asks for the next plan,
 * and acknowledges the event when none follows.
 *
 *   event                      commands (in order)
 *   OrderPlaced, pending       ReserveStock per line            (stage RESERVE)
 *     all accepted             MarkReserved                     (stage MARK)
 *     any refused              RejectForStock{refused}          (stage REJECT)
 *       then                   reload; cancelled -> ReleaseStock per line
 *     MarkReserved refused     reload; cancelled -> ReleaseStock per line
 *   OrderPlaced, cancelled     ReleaseStock per line (a late reserve may hold)
 *   OrderReserved              CheckedOut{order, its lines} to cart/<customer>
 *   OrderConfirmedByCustomer   nothing
 *   OrderCancelled             ReleaseStock per line
 *   OrderCancelled, paid       ReturnStock{order, line quantity} per line (the sold units go
 *     (cancelled in confirmed)   back on hand; the compensation of the commit. A return
 *                                refused not_committed is retried: the commit of OrderPaid's
 *                                step has not run yet. The refund is the payment role's.)
 *   OrderPaymentFailed         ReleaseStock per line
 *   OrderPaid                  CommitStock per line
 *   OrderShipped               nothing (the units were sold at OrderPaid)
 *   OrderDelivered             nothing
 *   and whenever the checkout  CloseOrder{order} to holds/<customer> (its slot and units
 *   is done after the event    no longer count against the customer's limits, ADR 026;
 *   (paid, or ended unpaid)    order_status_checkout_done)
 *   a deadline due (timers)    Cancel{expired} to order/<order>   (saga_plan_expire)
 *
 * Every command has a deterministic id, "<order>:reserve:<product>",
 * "<order>:reserved", "<order>:release:<product>", "<order>:reject",
 * "<order>:checkout", "<order>:commit:<product>", "<order>:return:<product>",
 * "<order>:expire:<deadline>", "<order>:close",
 * so a redelivered event re-sends the same commands and the deciders (or
 * JetStream's duplicate window) answer them without a second effect. The
 * reservation id on every stock item is the order id.
 *
 * No I/O, no clock, no globals: time arrives as now_ms. */
#ifndef ORION_SAGA_PLAN_H
#define ORION_SAGA_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "envelope.h"
#include "mpack.h"
#include "order.h"
#include "orn.h"

#define SAGA_ACTOR          "checkout" /* the envelope actor of every command sent */
#define SAGA_ID_MAX         (ORN_ID_MAX + 1)
#define SAGA_COMMAND_ID_MAX ENV_ID_MAX
#define SAGA_COMMANDS_MAX   (ORDER_LINES_MAX + 1) /* releases + RejectForStock, or + CloseOrder */

typedef enum saga_command_kind {
	SAGA_RESERVE_STOCK,    /* stock/<product> ReserveStock{order, quantity} */
	SAGA_RELEASE_STOCK,    /* stock/<product> ReleaseStock{order} */
	SAGA_COMMIT_STOCK,     /* stock/<product> CommitStock{order} */
	SAGA_MARK_RESERVED,    /* order/<order> MarkReserved */
	SAGA_REJECT_FOR_STOCK, /* order/<order> RejectForStock{the refused products} */
	SAGA_CHECKED_OUT,      /* cart/<customer> CheckedOut{order, lines} */
	SAGA_EXPIRE,           /* order/<order> Cancel{expired} */
	SAGA_CLOSE_HOLDS,      /* holds/<customer> CloseOrder{order} */
	SAGA_RETURN_STOCK      /* stock/<product> ReturnStock{order, quantity} */
} saga_command_kind;

/* How one command was answered, as far as the plan cares. */
typedef enum saga_result {
	SAGA_RESULT_NONE = 0, /* not answered yet */
	SAGA_RESULT_DONE,     /* accepted, or a rejection that ends the command (see saga_reply_classify) */
	SAGA_RESULT_REFUSED   /* a rejection the next plan acts on (reserve, MarkReserved) */
} saga_result;

/* What the shell does with a reply. */
typedef enum saga_reply {
	SAGA_REPLY_DONE,    /* record SAGA_RESULT_DONE, go on */
	SAGA_REPLY_REFUSED, /* record SAGA_RESULT_REFUSED, go on */
	SAGA_REPLY_RETRY    /* the outcome is unknown or temporary: redo the step later */
} saga_reply;

/* After the commands of a plan have all been answered. */
typedef enum saga_stage {
	SAGA_STAGE_DONE,    /* nothing follows: acknowledge the event */
	SAGA_STAGE_RESERVE, /* reserves sent: MarkReserved or the rejection follows */
	SAGA_STAGE_MARK,    /* MarkReserved sent: a refusal is compensated after a reload */
	SAGA_STAGE_REJECT   /* RejectForStock sent: the releases follow a reload that finds the
	                       order cancelled (another executor of the step may have marked it
	                       reserved with reservations this one must not release) */
} saga_stage;

typedef struct saga_command {
	saga_command_kind kind;
	char target[SAGA_ID_MAX];             /* aggregate id: product, order or customer */
	char command_id[SAGA_COMMAND_ID_MAX]; /* deterministic, see above */
	int64_t quantity;                     /* reserve, return: the line's quantity */
	int64_t deadline_ms;                  /* expire: the deadline that fell due */
} saga_command;

/* One line of the order as CheckedOut carries it: the cart takes out at most
 * quantity of product_id. */
typedef struct saga_checkout_line {
	char product_id[ORDER_ID_MAX];
	int64_t quantity;
} saga_checkout_line;

/* A list of commands to send in order and what follows them. Large
 * (~20 KiB): allocate it. */
typedef struct saga_plan {
	char order_id[SAGA_ID_MAX]; /* reservation id and correlation id of every command */
	saga_stage stage;
	saga_command commands[SAGA_COMMANDS_MAX];
	saga_result results[SAGA_COMMANDS_MAX]; /* filled by the shell */
	size_t count;
	char refused[ORDER_LINES_MAX][ORDER_ID_MAX]; /* RejectForStock: the products refused */
	size_t refused_count;
	saga_checkout_line checkout[ORDER_LINES_MAX]; /* CheckedOut: the order's lines */
	size_t checkout_count;
	int64_t placed_from; /* SAGA_CHECKED_OUT: the cart version the order was placed from */
} saga_plan;

/* The plan for an order event of kind, given the order's state now (which may
 * be ahead of the event). ORN_EINVAL if order_id is not a valid id or an id
 * would not fit a command id; p is then empty. */
orn_rc saga_plan_for_event(saga_plan *p, const char *order_id, order_event_kind kind,
                           const order_state *order);

/* What a reply to a command of kind means. outcome BUS_FAILED is always a
 * retry; a rejection refuses a reserve or a MarkReserved, and ends every other
 * command (a release of a reservation never held, a commit of a released one,
 * a RejectForStock or CheckedOut that no longer applies: retrying cannot
 * change them) but an expiry: Cancel{expired} refused wrong_state (the order
 * left the state the deadline was for: final, or confirmed meanwhile) or
 * not_found is done; refused for any other reason (invalid: the order's
 * deadline is later than our clock) it is a retry; and a return: ReturnStock
 * refused not_committed (the reservation is still held: the commit of the
 * order's payment has not run yet) is a retry. code may be NULL. */
saga_reply saga_reply_classify(saga_command_kind kind, bus_outcome outcome, const char *code);

/* True if a reply says a paid order's units were sold without being held: a
 * CommitStock rejected because the item's reservation for the order was
 * released (reservation_closed) or is not known (unknown_reservation). The
 * step still ends (saga_reply_classify: retrying cannot hold the units
 * again), but the item may have sold a unit twice: the shell raises an alarm
 * (an error log line and orion_saga_unheld_commits_total). code may be NULL. */
bool saga_reply_sold_unheld(saga_command_kind kind, bus_outcome outcome, const char *code);

/* Records the answer to command i (SAGA_REPLY_RETRY records nothing). */
void saga_plan_record(saga_plan *p, size_t i, saga_reply reply);

/* True if the plan that follows done needs the order's state reloaded first
 * (a MarkReserved was refused, or a RejectForStock sent: is the order
 * cancelled?). */
bool saga_plan_needs_reload(const saga_plan *done);

/* The plan that follows done once all its commands are answered, given the
 * order's state (reloaded if saga_plan_needs_reload). Returns false (next
 * untouched) if nothing follows. done and next must not overlap. */
bool saga_plan_next(const saga_plan *done, const order_state *order, saga_plan *next);

/* True if the sweeper redoes the cart's checkout step (the plan for
 * OrderReserved) of this order: it was reserved at some point (its history
 * reached awaiting_confirmation) and has a customer. The step is a no-op for
 * a cart that checked the order out already (the cart remembers its last
 * CART_ORDERS_REMEMBERED orders). */
bool saga_plan_checkout_swept(const order_state *order);

/* A one-command plan: Cancel{expired} of order_id whose deadline fell due at
 * deadline_ms, command id "<order>:expire:<deadline>" (every instance of the
 * timers role firing that deadline sends the same command). ORN_EINVAL for
 * an invalid id. */
orn_rc saga_plan_expire(saga_plan *p, const char *order_id, int64_t deadline_ms);

/* Aggregate ("stock", "order", "cart", "holds") and command type name of kind; NULL if unknown. */
const char *saga_command_aggregate(saga_command_kind kind);
const char *saga_command_type(saga_command_kind kind);

/* Appends the payload of command i of p to w (one msgpack map); order
 * commands carry now_ms. ORN_EINVAL for an index out of range or a payload
 * the codecs refuse. */
orn_rc saga_command_encode(const saga_plan *p, size_t i, int64_t now_ms, mp_writer *w);

#endif
