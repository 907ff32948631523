/* orion.c — the orion binary: `serve` (cli/serve.c) runs the roles, `replay`
 * prints events, `stock` sends stock commands.
 *
 * With no ORION_NATS_URL both start their own nats-server child with its store
 * under ORION_DATA_DIR (the embedded default) and stop it on exit. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "actor.h"
#include "admin.h"
#include "common.h"
#include "bus.h"
#include "config.h"
#include "evstore.h"
#include "log.h"
#include "natsd.h"
#include "stock.h"

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: orion <command> [options]\n\n"
	        "commands:\n"
	        "  serve [--roles ROLE,...]   run roles: stock, product, user, cart, order, payment, psp,\n"
	        "                             checkout, mail, projector, gateway (default: all)\n"
	        "  replay [--aggregate TYPE] [--id ID] [--from SEQ] [--to SEQ]\n"
	        "                             print events as JSON lines\n"
	        "  stock ITEM create QUANTITY | reserve RESERVATION QUANTITY | release RESERVATION\n"
	        "        | commit RESERVATION | adjust DELTA REASON | get\n"
	        "                             send one command to a running stock service and\n"
	        "                             print the reply as JSON (exit 0 accepted, 1 rejected,\n"
	        "                             3 failed or no service)\n"
	        "  admin create-user --email E --password P [--name N] [--role admin|customer]\n"
	        "                             register an account with a running serve\n"
	        "  routes                     list the HTTP routes the gateway serves\n"
	        "  psp-sandbox [--listen ADDR] [--key KEY] [--state FILE]\n"
	        "                             run the card payment provider sandbox alone\n"
	        "  help                       this text\n\n");
	orn_config_print_help(out);
}

/* ---- replay --------------------------------------------------------------- */

typedef struct replay_out {
	mp_writer *line;
	uint64_t events;
} replay_out;

static void json_key(mp_writer *w, const char *key, bool first)
{
	if (!first)
		mp_write_raw(w, ",", 1);
	mp_json_string(w, key, strlen(key));
	mp_write_raw(w, ":", 1);
}

static void json_field_str(mp_writer *w, const char *key, const char *value)
{
	json_key(w, key, false);
	mp_json_string(w, value, strlen(value));
}

static orn_rc print_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	replay_out *out = closure;
	mp_writer *w = out->line;
	char number[64], stamp[64];
	time_t secs = (time_t)(e->time_ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(((e->time_ms % 1000) + 1000) % 1000));
	mp_writer_reset(w);
	mp_write_raw(w, "{", 1);
	json_key(w, "seq", true);
	snprintf(number, sizeof number, "%llu", (unsigned long long)seq);
	mp_write_raw(w, number, strlen(number));
	json_field_str(w, "subject", subject);
	json_field_str(w, "type", e->type);
	json_key(w, "schema", false);
	snprintf(number, sizeof number, "%u", e->schema);
	mp_write_raw(w, number, strlen(number));
	json_field_str(w, "time", stamp);
	json_field_str(w, "correlation_id", e->correlation);
	json_field_str(w, "causation_id", e->causation);
	json_field_str(w, "actor", e->actor);
	json_key(w, "data", false);
	mp_reader r;
	mp_reader_init(&r, e->payload, e->payload_len);
	if (mp_to_json(&r, w) != ORN_OK)
		return ORN_EDECODE;
	mp_write_raw(w, "}\n", 2);
	if (mp_writer_status(w) != ORN_OK)
		return ORN_ENOMEM;
	fwrite(mp_writer_data(w), 1, mp_writer_size(w), stdout);
	out->events++;
	return ORN_OK;
}

static bool parse_seq(const char *text, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
		return false;
	*out = n;
	return true;
}

static int cmd_replay(int argc, char **argv, const orn_config *cfg)
{
	const char *aggregate = NULL, *id = NULL;
	uint64_t from = 1, to = 0;
	for (int i = 0; i < argc; i++) {
		bool has_value = i + 1 < argc;
		if (strcmp(argv[i], "--aggregate") == 0 && has_value) {
			aggregate = argv[++i];
		} else if (strcmp(argv[i], "--id") == 0 && has_value) {
			id = argv[++i];
		} else if (strcmp(argv[i], "--from") == 0 && has_value) {
			if (!parse_seq(argv[++i], &from)) {
				fprintf(stderr, "orion replay: --from needs a sequence number\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--to") == 0 && has_value) {
			if (!parse_seq(argv[++i], &to)) {
				fprintf(stderr, "orion replay: --to needs a sequence number\n");
				return 2;
			}
		} else {
			fprintf(stderr, "orion replay: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	char filter[ES_SUBJECT_MAX];
	if (id != NULL && aggregate == NULL) {
		fprintf(stderr, "orion replay: --id needs --aggregate\n");
		return 2;
	}
	if (aggregate != NULL && !es_aggregate_valid(aggregate)) {
		fprintf(stderr, "orion replay: invalid aggregate type\n");
		return 2;
	}
	if (id != NULL) {
		if (es_subject(filter, sizeof filter, "orion.evt", aggregate, id) != ORN_OK) {
			fprintf(stderr, "orion replay: invalid id (allowed: [A-Za-z0-9_-]{1,64})\n");
			return 2;
		}
	} else if (aggregate != NULL) {
		snprintf(filter, sizeof filter, "orion.evt.%s.>", aggregate);
	} else {
		snprintf(filter, sizeof filter, "orion.evt.>");
	}
	natsd *server = NULL;
	es_store *store = NULL;
	int status = 1;
	replay_out out = {mp_writer_create(), 0};
	if (out.line == NULL || cli_connect_store(cfg, "orion-replay", false, &server, &store) != ORN_OK)
		goto done;
	orn_rc rc = es_read(store, filter, from, to, print_event, &out, NULL);
	fflush(stdout);
	if (rc != ORN_OK) {
		log_error("replay failed", "error", orn_strerror(rc));
		goto done;
	}
	status = 0;
done:
	mp_writer_destroy(out.line);
	es_store_close(store);
	natsd_stop(server);
	return status;
}

/* ---- stock client ----------------------------------------------------------- */

static bool parse_quantity(const char *text, int64_t *out)
{
	char *end = NULL;
	errno = 0;
	long long n = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0')
		return false;
	*out = n;
	return true;
}

/* Fills c from the words after the item id; false on bad usage. */
static bool parse_stock_command(int argc, char **argv, stock_command *c, bool *is_get)
{
	memset(c, 0, sizeof *c);
	*is_get = false;
	if (argc == 1 && strcmp(argv[0], "get") == 0) {
		*is_get = true;
		return true;
	}
	if (argc == 2 && strcmp(argv[0], "create") == 0) {
		c->kind = STOCK_CREATE;
		return parse_quantity(argv[1], &c->quantity);
	}
	if (argc == 3 && strcmp(argv[0], "reserve") == 0) {
		c->kind = STOCK_RESERVE;
		snprintf(c->reservation_id, sizeof c->reservation_id, "%s", argv[1]);
		return strlen(argv[1]) < sizeof c->reservation_id && parse_quantity(argv[2], &c->quantity);
	}
	if (argc == 2 && (strcmp(argv[0], "release") == 0 || strcmp(argv[0], "commit") == 0)) {
		c->kind = strcmp(argv[0], "release") == 0 ? STOCK_RELEASE : STOCK_COMMIT;
		snprintf(c->reservation_id, sizeof c->reservation_id, "%s", argv[1]);
		return strlen(argv[1]) < sizeof c->reservation_id;
	}
	if (argc == 3 && strcmp(argv[0], "adjust") == 0) {
		c->kind = STOCK_ADJUST;
		snprintf(c->reason, sizeof c->reason, "%s", argv[2]);
		return strlen(argv[2]) < sizeof c->reason && parse_quantity(argv[1], &c->delta);
	}
	return false;
}

static void print_reply(const bus_reply *r)
{
	mp_writer *w = mp_writer_create();
	char number[64];
	if (w == NULL)
		return;
	mp_write_raw(w, "{", 1);
	json_key(w, "outcome", true);
	mp_json_string(w, bus_outcome_name(r->outcome), strlen(bus_outcome_name(r->outcome)));
	json_field_str(w, "code", r->code);
	json_field_str(w, "detail", r->detail);
	json_key(w, "version", false);
	snprintf(number, sizeof number, "%llu", (unsigned long long)r->version);
	mp_write_raw(w, number, strlen(number));
	json_key(w, "seq", false);
	snprintf(number, sizeof number, "%llu", (unsigned long long)r->seq);
	mp_write_raw(w, number, strlen(number));
	if (r->view != NULL) {
		mp_reader rd;
		json_key(w, "state", false);
		mp_reader_init(&rd, r->view, r->view_len);
		if (mp_to_json(&rd, w) != ORN_OK)
			mp_write_raw(w, "null", 4);
	}
	mp_write_raw(w, "}\n", 2);
	fwrite(mp_writer_data(w), 1, mp_writer_size(w), stdout);
	mp_writer_destroy(w);
}

static int cmd_stock(int argc, char **argv, const orn_config *cfg)
{
	stock_command c;
	bool is_get = false;
	char url[ORN_CONFIG_STR_MAX], command_id[64];
	if (argc < 2 || !parse_stock_command(argc - 1, argv + 1, &c, &is_get)) {
		fprintf(stderr,
		        "orion stock: usage: orion stock ITEM create QTY | reserve RES QTY | release RES | "
		        "commit RES | adjust DELTA REASON | get\n");
		return 2;
	}
	if (!es_id_valid(argv[0])) {
		fprintf(stderr, "orion stock: invalid item id (allowed: [A-Za-z0-9_-]{1,64})\n");
		return 2;
	}
	snprintf(url, sizeof url, "%s", cfg->nats_url);
	if (url[0] == '\0' && !cli_read_running_url(cfg, url, sizeof url)) {
		fprintf(stderr, "orion stock: no running `orion serve` in %s; set ORION_NATS_URL\n",
		        cfg->data_dir);
		return 3;
	}
	natsConnection *nc = NULL;
	mp_writer *payload = mp_writer_create();
	env_envelope cmd;
	bus_reply reply;
	int status = 3;
	uint8_t nil = 0xc0;
	snprintf(command_id, sizeof command_id, "cli-%lld-%d", (long long)orn_now_ms(), (int)getpid());
	if (payload == NULL || natsConnection_ConnectTo(&nc, url) != NATS_OK) {
		fprintf(stderr, "orion stock: cannot connect to %s\n", url);
		goto done;
	}
	orn_rc rc =
	        is_get ? bus_command_init(&cmd, BUS_CMD_GET, orn_now_ms(), command_id, NULL, "cli", &nil, 1)
	               : stock_command_encode(payload, &c);
	if (rc == ORN_OK && !is_get)
		rc = bus_command_init(&cmd, stock_command_type(c.kind), orn_now_ms(), command_id, NULL, "cli",
		                      mp_writer_data(payload), mp_writer_size(payload));
	if (rc == ORN_OK)
		rc = bus_send(nc, STOCK_AGGREGATE, argv[0], &cmd, cfg->command_timeout_ms, &reply);
	if (rc != ORN_OK) {
		fprintf(stderr, "orion stock: %s\n", orn_strerror(rc));
		goto done;
	}
	print_reply(&reply);
	status = reply.outcome == BUS_ACCEPTED ? 0 : reply.outcome == BUS_REJECTED ? 1 : 3;
	bus_reply_dispose(&reply);
done:
	mp_writer_destroy(payload);
	natsConnection_Destroy(nc);
	return status;
}

int main(int argc, char **argv)
{
	orn_config cfg;
	const char *bad = NULL;
	if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (orn_config_load(&cfg, &bad) != ORN_OK) {
		fprintf(stderr, "orion: invalid value in %s\n", bad);
		return 2;
	}
	log_set_level((log_level)log_level_parse(cfg.log_level));
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(argv[1], "serve") == 0)
		return cli_serve(argc - 2, argv + 2, &cfg);
	if (strcmp(argv[1], "replay") == 0)
		return cmd_replay(argc - 2, argv + 2, &cfg);
	if (strcmp(argv[1], "stock") == 0)
		return cmd_stock(argc - 2, argv + 2, &cfg);
	if (strcmp(argv[1], "admin") == 0)
		return cli_admin(argc - 2, argv + 2, &cfg);
	if (strcmp(argv[1], "routes") == 0)
		return cli_routes(argc - 2, argv + 2, &cfg);
	if (strcmp(argv[1], "psp-sandbox") == 0)
		return cli_psp_sandbox(argc - 2, argv + 2, &cfg);
	fprintf(stderr, "orion: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
