/* pay_ledger.c — what the payment role writes and reads (pay-internal.h):
 * the payment aggregate, decided and appended in process (kit_execute), the
 * order folded from the log and sent its commands (kit_sender), and the
 * provider's list of an order's intents. */
#include "pay-internal.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

void pay_charge_command_id(char *out, size_t cap, const char *order_id, const char *step, const char *charge)
{
	uint8_t digest[16];
	char hex[sizeof digest * 2 + 1];

	crypto_generichash(digest, sizeof digest, (const unsigned char *)charge, strlen(charge), NULL, 0);
	sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
	snprintf(out, cap, "%s:%s:%s", order_id, step, hex);
}

void pay_step_id(char out[PAY_CMD_ID_MAX], const char *provider_key, const char *step)
{
	/* a provider key is at most "<64>:<64 hex>", so it fits */
	if (snprintf(out, PAY_CMD_ID_MAX, "%s:%s", provider_key, step) >= PAY_CMD_ID_MAX)
		out[0] = '\0'; /* bus_command_init refuses it */
}

orn_rc pay_record(pay_worker *w, const char *order_id, payment_command *c, const char *command_id,
                  kit_result *out)
{
	pay_service *p = w->p;
	orn_rc rc;

	c->data.time_ms = orn_now_ms();
	mp_writer_reset(w->payload);
	if ((rc = payment_command_encode(w->payload, c)) != ORN_OK)
		return rc;
	kit_command cmd = {.type = payment_command_type(c->kind),
	                   .payload = mp_writer_data(w->payload),
	                   .len = mp_writer_size(w->payload),
	                   .id = command_id,
	                   .correlation = w->correlation[0] != '\0' ? w->correlation : NULL,
	                   .actor = PAY_ACTOR,
	                   .time_ms = c->data.time_ms};
	rc = kit_execute(p->hub, p->store, &payment_kind, order_id, &cmd, w->payment, out);
	if (rc == ORN_OK && out->outcome == BUS_FAILED)
		log_warn("payment command not recorded", "command_id", command_id, "type", cmd.type, "code",
		         out->code);
	return rc;
}

orn_rc pay_load_payment(pay_worker *w, const char *order_id)
{
	kit_folded at;
	orn_rc rc = kit_fold(w->p->hub, w->p->store, &payment_kind, order_id, NULL, w->payment, &at);
	if (rc != ORN_OK)
		log_warn("payment cannot load the payment", "order_id", order_id, "error", orn_rc_name(rc));
	return rc;
}

orn_rc pay_load_order(pay_worker *w, const char *order_id, uint64_t *version)
{
	kit_folded at;
	orn_rc rc = kit_fold(w->p->hub, w->p->store, &order_kind, order_id, NULL, w->order, &at);
	*version = at.at.version;
	if (rc != ORN_OK)
		log_warn("payment cannot read the order", "order_id", order_id, "error", orn_rc_name(rc));
	return rc;
}

orn_rc pay_order_command(pay_worker *w, const char *order_id, const char *command_id, bus_reply *reply)
{
	orn_rc rc;

	w->order_cmd->data.time_ms = orn_now_ms();
	mp_writer_reset(w->payload);
	if ((rc = order_command_encode(w->payload, w->order_cmd)) != ORN_OK)
		return rc;
	kit_send send = {.aggregate = ORDER_AGGREGATE,
	                 .id = order_id,
	                 .type = order_command_type(w->order_cmd->kind),
	                 .command_id = command_id,
	                 .correlation = w->correlation[0] != '\0' ? w->correlation : NULL,
	                 .payload = mp_writer_data(w->payload),
	                 .len = mp_writer_size(w->payload)};
	if ((rc = kit_send_all(w->p->sender, &send, 1)) != ORN_OK) {
		log_warn("payment command not answered", "command_id", command_id, "type", send.type, "error",
		         orn_rc_name(rc));
		return rc;
	}
	*reply = send.reply;
	return ORN_OK;
}

void pay_observe_provider(const char *operation, orn_rc rc, long status, int64_t start_ns)
{
	static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
	static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
	long class_index = status / 100 - 1;
	const char *result = rc != ORN_OK                          ? "error"
	                     : class_index >= 0 && class_index < 5 ? classes[class_index]
	                                                           : "5xx";
	const char *const labels[] = {"operation", operation, "result", result, NULL};
	orn_metrics_observe(orn_metrics_global(), "orion_payment_provider_duration_seconds",
	                    "Time of one call to the card payment provider.", buckets, ORN_ARRAY_LEN(buckets),
	                    labels, orn_metrics_seconds_since(start_ns));
}

orn_rc pay_list_intents(pay_worker *w, const char *order_id, pspc_intent *list, size_t *count)
{
	pspc_response resp;
	int64_t start_ns = orn_monotonic_ns();
	orn_rc rc = pspc_intents_of_order(w->psp, order_id, w->p->call_timeout_ms, &resp);

	*count = 0;
	pay_observe_provider("list", rc, rc == ORN_OK ? resp.status : 0, start_ns);
	if (rc != ORN_OK) {
		log_warn("payment cannot list the order's intents", "order_id", order_id, "error",
		         orn_rc_name(rc));
		return rc;
	}
	rc = resp.status == 200 ? pspc_parse_intent_list(resp.body, resp.len, list, PSPC_LIST_MAX, count)
	                        : ORN_EUNAVAILABLE;
	pspc_response_dispose(&resp);
	if (rc != ORN_OK)
		log_warn("payment cannot read the order's intents", "order_id", order_id);
	return rc;
}
