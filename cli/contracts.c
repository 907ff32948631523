/* contracts.c — `orion contracts` (hidden): the message types of every actor
 * kind that `orion serve` runs, one per line, for tests/contracts/ to compare
 * with asyncapi/asyncapi.yaml and schemas/:
 *
 *   event <aggregate> <Type>
 *   command <aggregate> <Type>
 *
 * The types come from each aggregate's own <prefix>_event_type and
 * <prefix>_command_type, iterated over their enums (they return NULL past the
 * last kind), plus the runtime's Get for a kind with a view, the payment
 * role's Pay (payment/pay.h), and the events of the aggregates the side-effect
 * roles append in process (kit_execute: the payment's; their commands never
 * travel on the bus). Exits 1 if serve runs a kind this file does not know. */
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "cart.h"
#include "common.h"
#include "decision.h"
#include "holds.h"
#include "mail_log.h"
#include "order.h"
#include "payment.h"
#include "roles.h"
#include "pay.h"
#include "product.h"
#include "sku.h"
#include "stock.h"
#include "user.h"

#define TYPES_MAX 64 /* a bound on the kinds of one enum, against a lister that never ends */

/* Type name of entry i of an aggregate's event or command enum; NULL past the end. */
typedef const char *type_at_fn(size_t i);

/* Defines prefix_event_at and prefix_command_at: the aggregate's type
 * functions behind a type_at_fn. */
#define TYPE_LISTERS(prefix)                                                                                 \
	static const char *prefix##_event_at(size_t i)                                                       \
	{                                                                                                    \
		return prefix##_event_type((prefix##_event_kind)i);                                          \
	}                                                                                                    \
	static const char *prefix##_command_at(size_t i)                                                     \
	{                                                                                                    \
		return prefix##_command_type((prefix##_command_kind)i);                                      \
	}

TYPE_LISTERS(stock)
TYPE_LISTERS(product)
TYPE_LISTERS(sku)
TYPE_LISTERS(user)
TYPE_LISTERS(cart)
TYPE_LISTERS(order)
TYPE_LISTERS(holds)

/* The payment: its events only (its commands are decided in the payment
 * role's process). */
static const char *payment_event_at(size_t i)
{
	return payment_event_type((payment_event_kind)i);
}

/* The delivery log: the mail role appends its events itself; the one command
 * on the bus is RequestResend (ADR 023). */
static const char *mail_log_event_at(size_t i)
{
	return mail_log_event_type((mail_log_event_kind)i);
}

static const char *mail_log_command_at(size_t i)
{
	return i == 0 ? MAIL_LOG_CMD_REQUEST_RESEND : NULL;
}

/* The type listers of each aggregate, by its subject token. */
static const struct {
	const char *aggregate;
	type_at_fn *event_at;
	type_at_fn *command_at;
} listers[] = {
        {STOCK_AGGREGATE, stock_event_at, stock_command_at},
        {PRODUCT_AGGREGATE, product_event_at, product_command_at},
        {SKU_AGGREGATE, sku_event_at, sku_command_at},
        {USER_AGGREGATE, user_event_at, user_command_at},
        {CART_AGGREGATE, cart_event_at, cart_command_at},
        {ORDER_AGGREGATE, order_event_at, order_command_at},
        {HOLDS_AGGREGATE, holds_event_at, holds_command_at},
        {MAIL_LOG_AGGREGATE, mail_log_event_at, mail_log_command_at},
};

/* Prints "<what> <aggregate> <Type>" for each type type_at lists; false if
 * it lists none or does not end within TYPES_MAX. */
static bool print_types(const char *what, const char *aggregate, type_at_fn *type_at)
{
	size_t i = 0;
	for (const char *type; i < TYPES_MAX && (type = type_at(i)) != NULL; i++)
		printf("%s %s %s\n", what, aggregate, type);
	return i > 0 && i < TYPES_MAX;
}

int cli_contracts(int argc, char **argv)
{
	if (argc == 1 && cli_is_help(argv[0])) {
		printf("usage: orion contracts\n\n"
		       "Prints \"event|command AGGREGATE TYPE\" for every event and command type of\n"
		       "every actor kind serve runs, the payment service's request and the mail\n"
		       "log's events (tests/contracts/ compares them with asyncapi/ and schemas/).\n"
		       "  -h, --help  this text\n");
		return 0;
	}
	if (argc != 0) {
		fprintf(stderr, "usage: orion contracts\n");
		return 2;
	}
	int status = 0;
	const struct act_kind *kind;
	for (size_t k = 0; (kind = cli_roles_kind(k)) != NULL; k++) {
		size_t l = 0;
		while (l < ORN_ARRAY_LEN(listers) && strcmp(listers[l].aggregate, kind->aggregate) != 0)
			l++;
		if (l == ORN_ARRAY_LEN(listers)) {
			fprintf(stderr,
			        "orion contracts: no type lister for aggregate '%s' (cli/contracts.c)\n",
			        kind->aggregate);
			status = 1;
			continue;
		}
		if (!print_types("event", kind->aggregate, listers[l].event_at) ||
		    !print_types("command", kind->aggregate, listers[l].command_at)) {
			fprintf(stderr, "orion contracts: bad type list of aggregate '%s'\n",
			        kind->aggregate);
			status = 1;
		}
		if (kind->view != NULL)
			printf("command %s %s\n", kind->aggregate, BUS_CMD_GET);
	}
	/* The payment role's aggregate: decided in its process (kit_execute), so
	 * its events are the log's and its commands are on no bus. */
	if (!print_types("event", PAYMENT_AGGREGATE, payment_event_at))
		status = 1;
	/* The payment role's requests: commands, though no actor kind's. */
	printf("command %s %s\n", PAY_SERVICE_AGGREGATE, PAY_CMD_PAY);
	printf("command %s %s\n", PAY_SERVICE_AGGREGATE, PAY_CMD_PSP_EVENT);
	printf("command %s %s\n", PAY_SERVICE_AGGREGATE, PAY_CMD_RETRY_REFUND);
	fflush(stdout);
	return status;
}
