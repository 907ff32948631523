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

#include <sodium.h>

#include "actor.h"
#include "admin.h"
#include "common.h"
#include "bus.h"
#include "settings.h"
#include "evstore.h"
#include "log.h"
#include "natsd.h"
#include "cart.h"
#include "desk.h"
#include "holds.h"
#include "order.h"
#include "payment.h"
#include "product.h"
#include "sku.h"
#include "stock.h"
#include "user.h"

/* ---- replay --------------------------------------------------------------- */

/* What `orion replay` prints: every condition set here must hold (AND). */
typedef struct replay_filter {
	const char *type;                   /* --type: the envelope's type */
	const char *correlation;            /* --correlation: the envelope's correlation id */
	const char *order;                  /* --order: the order's story (proj_desk_in_story) */
	char order_subject[ES_SUBJECT_MAX]; /* checks --order is an id */
	bool has_since, has_until;
	int64_t since_ms, until_ms; /* --since / --until: time in [since, until] */
} replay_filter;

typedef struct replay_out {
	mp_writer *line;
	uint64_t events;
	const replay_filter *filter;
	bool with_void;  /* --void: void commits too, marked "void":true (ADR 015) */
	ks_store *keys;  /* opens sealed fields; NULL: they print as "[sealed]" (ADR 027) */
	mp_writer *open; /* the payload with its sealed fields opened */
} replay_out;

/* The clear value of a sealed field of an event into out: opened as the
 * field named key of the event (its causation), or as the email a recipient
 * copies (a mail log's recipient is its order's or admin's sealed email);
 * PD_ERASED once its key is destroyed, "[sealed]" when it cannot be opened. */
static void open_field(replay_out *out, const char *key, const char *token, const char *event_id, char *clear,
                       size_t cap)
{
	orn_rc rc = ORN_EUNAVAILABLE;
	if (out->keys != NULL) {
		rc = ks_open_token(out->keys, token, key, event_id, clear, cap);
		if (rc == ORN_EDECODE || rc == ORN_EINVAL)
			rc = ks_open_token(out->keys, token, "customer_email", NULL, clear, cap);
		if (rc == ORN_EDECODE || rc == ORN_EINVAL)
			rc = ks_open_token(out->keys, token, "email", NULL, clear, cap);
	}
	if (rc == ORN_ENOTFOUND)
		snprintf(clear, cap, "%s", PD_ERASED);
	else if (rc != ORN_OK)
		snprintf(clear, cap, "[sealed]");
}

/* payload as the replay shows it: a map's sealed string values opened
 * (open_field), anything else as it is. Returns the bytes to print. */
static orn_rc opened_payload(replay_out *out, const env_envelope *e, const uint8_t **data, size_t *len)
{
	mp_reader r;
	uint32_t count = 0;
	*data = e->payload;
	*len = e->payload_len;
	mp_reader_init(&r, e->payload, e->payload_len);
	if (memmem(e->payload, e->payload_len, PD_TOKEN_PREFIX, strlen(PD_TOKEN_PREFIX)) == NULL ||
	    mp_read_map(&r, &count) != ORN_OK)
		return ORN_OK;
	mp_writer_reset(out->open);
	mp_write_map(out->open, count);
	for (uint32_t i = 0; i < count; i++) {
		const char *key, *value;
		uint32_t key_len, value_len;
		char name[64], token[PD_TOKEN_MAX], clear[PD_PLAIN_MAX + 16];
		if (mp_read_str(&r, &key, &key_len) != ORN_OK)
			return ORN_OK;
		mp_write_str(out->open, key, key_len);
		size_t before = mp_reader_remaining(&r);
		const uint8_t *at = e->payload + (e->payload_len - before);
		if (mp_peek(&r) == MP_STR && mp_read_str(&r, &value, &value_len) == ORN_OK &&
		    value_len < sizeof token && key_len < sizeof name) {
			memcpy(token, value, value_len);
			token[value_len] = '\0';
			if (pd_is_sealed(token)) {
				snprintf(name, sizeof name, "%.*s", (int)key_len, key);
				open_field(out, name, token, e->causation, clear, sizeof clear);
				mp_write_cstr(out->open, clear);
				sodium_memzero(clear, sizeof clear);
				continue;
			}
			mp_write_raw(out->open, at, before - mp_reader_remaining(&r));
		} else if (mp_skip(&r) == ORN_OK) {
			mp_write_raw(out->open, at, before - mp_reader_remaining(&r));
		} else {
			return ORN_OK;
		}
	}
	if (mp_writer_status(out->open) != ORN_OK)
		return ORN_ENOMEM;
	*data = mp_writer_data(out->open);
	*len = mp_writer_size(out->open);
	return ORN_OK;
}

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

static void json_field_u64(mp_writer *w, const char *key, uint64_t value, bool first)
{
	char number[32];
	json_key(w, key, first);
	snprintf(number, sizeof number, "%llu", (unsigned long long)value);
	mp_write_raw(w, number, strlen(number));
}

static bool replay_match(const replay_filter *f, const char *subject, const env_envelope *e)
{
	if (f->type != NULL && strcmp(e->type, f->type) != 0)
		return false;
	if (f->correlation != NULL && strcmp(e->correlation, f->correlation) != 0)
		return false;
	/* --order: the rule the admin desk's timelines use (desk.h) */
	if (f->order != NULL && !proj_desk_in_story(f->order, subject, e))
		return false;
	if (f->has_since && e->time_ms < f->since_ms)
		return false;
	if (f->has_until && e->time_ms > f->until_ms)
		return false;
	return true;
}

/* One event of commit c as a JSON line (when it matches the filter). */
static orn_rc print_event(replay_out *out, const es_commit *c, const env_envelope *e)
{
	mp_writer *w = out->line;
	char number[64], stamp[64];
	uint64_t seq = c->seq;
	const char *subject = c->subject;
	if (!replay_match(out->filter, subject, e))
		return ORN_OK;
	time_t secs = (time_t)(e->time_ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(((e->time_ms % 1000) + 1000) % 1000));
	mp_writer_reset(w);
	mp_write_raw(w, "{", 1);
	json_field_u64(w, "seq", seq, true);
	json_field_str(w, "subject", subject);
	json_field_str(w, "type", e->type);
	json_key(w, "schema", false);
	snprintf(number, sizeof number, "%u", e->schema);
	mp_write_raw(w, number, strlen(number));
	json_field_str(w, "time", stamp);
	json_field_str(w, "correlation_id", e->correlation);
	json_field_str(w, "causation_id", e->causation);
	json_field_str(w, "actor", e->actor);
	if (c->chained)
		json_field_u64(w, "prev", c->prev, false);
	if (!c->valid) {
		json_key(w, "void", false);
		mp_write_raw(w, "true", 4);
	}
	json_key(w, "data", false);
	mp_reader r;
	const uint8_t *payload = NULL;
	size_t payload_len = 0;
	if (opened_payload(out, e, &payload, &payload_len) != ORN_OK)
		return ORN_ENOMEM;
	mp_reader_init(&r, payload, payload_len);
	if (mp_to_json(&r, w) != ORN_OK)
		return ORN_EDECODE;
	mp_write_raw(w, "}\n", 2);
	if (mp_writer_status(w) != ORN_OK)
		return ORN_ENOMEM;
	fwrite(mp_writer_data(w), 1, mp_writer_size(w), stdout);
	out->events++;
	return ORN_OK;
}

static orn_rc print_commit(void *closure, const es_commit *c)
{
	replay_out *out = closure;
	orn_rc rc = ORN_OK;
	for (size_t i = 0; (c->valid || out->with_void) && rc == ORN_OK && i < c->count; i++)
		rc = print_event(out, c, &c->events[i]);
	return rc;
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

/* Parses an RFC 3339 UTC time, "2026-11-22T01:00:00Z" with optional
 * fraction (milliseconds kept), into milliseconds since the epoch. */
static bool parse_time(const char *text, int64_t *out_ms)
{
	int year, month, day, hour, minute, second, used = 0;
	if (strlen(text) < 20 || text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != 't') ||
	    text[13] != ':' || text[16] != ':')
		return false;
	for (int i = 0; i < 19; i++)
		if (i != 4 && i != 7 && i != 10 && i != 13 && i != 16 && (text[i] < '0' || text[i] > '9'))
			return false;
	if (sscanf(text, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &year, &month, &day, &hour, &minute, &second,
	           &used) != 6 ||
	    used != 19)
		return false;
	if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
		return false;
	const char *p = text + 19;
	int64_t ms = 0;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*p - '0');
		if (digits == 0)
			return false;
		for (; digits < 3; digits++)
			ms *= 10;
	}
	if ((p[0] != 'Z' && p[0] != 'z') || p[1] != '\0')
		return false;
	struct tm tm = {.tm_year = year - 1900,
	                .tm_mon = month - 1,
	                .tm_mday = day,
	                .tm_hour = hour,
	                .tm_min = minute,
	                .tm_sec = second};
	time_t secs = timegm(&tm);
	if (tm.tm_mday != day) /* 31 February and the like were normalised */
		return false;
	*out_ms = (int64_t)secs * 1000 + ms;
	return true;
}

/* The kind tables --as-of folds with, by aggregate name. */
static const act_kind *replay_kind(const char *aggregate)
{
	static const act_kind *const kinds[] = {&stock_kind, &product_kind, &sku_kind,     &user_kind,
	                                        &cart_kind,  &order_kind,   &payment_kind, &holds_kind};
	for (size_t i = 0; i < ORN_ARRAY_LEN(kinds); i++)
		if (strcmp(kinds[i]->aggregate, aggregate) == 0)
			return kinds[i];
	return NULL;
}

typedef struct replay_fold {
	const act_kind *kind;
	void *state;
	uint64_t version; /* sequence of the last event folded */
	int64_t until_ms; /* --as-of TIME: events stamped later are not folded */
} replay_fold;

static orn_rc fold_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	replay_fold *f = closure;
	(void)subject;
	if (e->time_ms > f->until_ms)
		return ORN_OK;
	orn_rc rc = f->kind->evolve(f->state, e);
	if (rc == ORN_OK)
		f->version = seq;
	return rc;
}

/* --as-of TIME as given, echoed in the output. */
static char as_of_text[40];

/* Folds the aggregate's events up to as_of and prints
 * {"aggregate","id","as_of_seq","version","state"} as one JSON line. */
static orn_rc print_as_of(es_store *store, const act_kind *kind, const char *filter, const char *id,
                          uint64_t as_of, int64_t as_of_ms)
{
	replay_fold fold = {kind, calloc(1, kind->state_size), 0, as_of_ms};
	mp_writer *view = mp_writer_create(), *w = mp_writer_create();
	orn_rc rc = ORN_ENOMEM;
	if (fold.state == NULL || view == NULL || w == NULL)
		goto fail;
	kind->init(fold.state);
	if ((rc = es_read(store, filter, 1, as_of, fold_event, &fold, NULL)) != ORN_OK)
		goto fail;
	if ((rc = kind->view(fold.state, view)) != ORN_OK)
		goto fail;
	mp_write_raw(w, "{", 1);
	json_key(w, "aggregate", true);
	mp_json_string(w, kind->aggregate, strlen(kind->aggregate));
	json_field_str(w, "id", id);
	if (as_of_ms != INT64_MAX)
		json_field_str(w, "as_of_time", as_of_text);
	else
		json_field_u64(w, "as_of_seq", as_of, false);
	json_field_u64(w, "version", fold.version, false);
	json_key(w, "state", false);
	mp_reader r;
	mp_reader_init(&r, mp_writer_data(view), mp_writer_size(view));
	if ((rc = mp_to_json(&r, w)) != ORN_OK)
		goto fail;
	mp_write_raw(w, "}\n", 2);
	if ((rc = mp_writer_status(w)) != ORN_OK)
		goto fail;
	fwrite(mp_writer_data(w), 1, mp_writer_size(w), stdout);
fail:
	if (fold.state != NULL && kind->dispose != NULL)
		kind->dispose(fold.state);
	free(fold.state);
	mp_writer_destroy(view);
	mp_writer_destroy(w);
	return rc;
}

static volatile sig_atomic_t replay_stop;

static void replay_on_signal(int sig)
{
	(void)sig;
	replay_stop = 1;
}

/* --follow: after the history, polls for new commits every FOLLOW_POLL_MS and
 * prints those that match, until SIGINT or SIGTERM. */
#define FOLLOW_POLL_MS 200

static orn_rc replay_follow(es_store *store, const char *filter, uint64_t from, replay_out *out)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = replay_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	orn_rc rc = ORN_OK;
	while (!replay_stop) {
		uint64_t last = 0;
		if ((rc = es_scan(store, filter, from, 0, print_commit, out, &last)) != ORN_OK)
			break;
		fflush(stdout);
		if (last >= from)
			from = last + 1;
		struct timespec pause = {0, FOLLOW_POLL_MS * 1000000L};
		nanosleep(&pause, NULL);
	}
	return rc;
}

static void replay_help(FILE *out)
{
	fprintf(out, "usage: orion replay [--aggregate TYPE] [--id ID] [--from SEQ] [--to SEQ]\n"
	             "                    [--type EVENT_TYPE] [--correlation ID] [--since TIME]\n"
	             "                    [--until TIME] [--follow] [--void]\n"
	             "       orion replay --order ID\n"
	             "       orion replay --aggregate TYPE --id ID --as-of SEQ|TIME\n\n"
	             "Prints the events of the log as JSON lines (seq, time, subject, type, correlation\n"
	             "and causation ids, actor, data); the filters combine with AND.\n"
	             "  --aggregate TYPE     events of one aggregate type (stock, order, user, ...)\n"
	             "  --id ID              of one aggregate (needs --aggregate)\n"
	             "  --from SEQ, --to SEQ stream sequences, inclusive\n"
	             "  --type EVENT_TYPE    events of one type (StockReserved, ...)\n"
	             "  --correlation ID     events of one correlation id\n"
	             "  --since TIME, --until TIME\n"
	             "                       by the event's time, inclusive; TIME is RFC 3339 UTC\n"
	             "                       (2026-11-22T01:00:00Z)\n"
	             "  --follow             keep printing new matching events until Ctrl-C\n"
	             "  --void               also the void commits of the commit chain (ADR 015), marked\n"
	             "                       \"void\":true; every line carries the \"prev\" it recorded\n"
	             "  --order ID           an order's whole story: its own events, every event\n"
	             "                       caused by a command for it (hold, saga, payment) or\n"
	             "                       correlated to it, and the mail log of its emails\n"
	             "                       (the admin desk's timeline: ADR 029)\n"
	             "  --as-of SEQ|TIME     the aggregate's state as it stood at stream sequence SEQ\n"
	             "                       or at TIME, as one JSON object\n"
	             "  -h, --help           this text\n\n"
	             "With no ORION_NATS_URL and no running serve on the data directory, replay starts\n"
	             "its own nats-server on the store there.\n");
}

static int replay_usage(const char *message)
{
	fprintf(stderr, "orion replay: %s (orion replay --help)\n", message);
	return 2;
}

static int cmd_replay(int argc, char **argv, const cli_config *cfg)
{
	const char *aggregate = NULL, *id = NULL;
	uint64_t from = 1, to = 0, as_of = 0;
	int64_t as_of_ms = INT64_MAX;
	bool has_as_of = false, follow = false, with_void = false;
	replay_filter f = {0};
	for (int i = 0; i < argc; i++) {
		bool has_value = i + 1 < argc;
		const char *opt = argv[i];
		if (cli_is_help(opt)) {
			replay_help(stdout);
			return 0;
		}
		if (strcmp(opt, "--follow") == 0) {
			follow = true;
			continue;
		}
		if (strcmp(opt, "--void") == 0) {
			with_void = true;
			continue;
		}
		if (!has_value) {
			fprintf(stderr, "orion replay: unknown option or missing value '%s'\n", opt);
			return 2;
		}
		const char *value = argv[++i];
		if (strcmp(opt, "--aggregate") == 0) {
			aggregate = value;
		} else if (strcmp(opt, "--id") == 0) {
			id = value;
		} else if (strcmp(opt, "--from") == 0) {
			if (!parse_seq(value, &from))
				return replay_usage("--from needs a sequence number");
		} else if (strcmp(opt, "--to") == 0) {
			if (!parse_seq(value, &to))
				return replay_usage("--to needs a sequence number");
		} else if (strcmp(opt, "--type") == 0) {
			f.type = value;
		} else if (strcmp(opt, "--correlation") == 0) {
			f.correlation = value;
		} else if (strcmp(opt, "--order") == 0) {
			f.order = value;
		} else if (strcmp(opt, "--since") == 0) {
			if (!parse_time(value, &f.since_ms))
				return replay_usage(
				        "--since needs an RFC 3339 UTC time (2026-11-22T01:00:00Z)");
			f.has_since = true;
		} else if (strcmp(opt, "--until") == 0) {
			if (!parse_time(value, &f.until_ms))
				return replay_usage(
				        "--until needs an RFC 3339 UTC time (2026-11-22T01:00:00Z)");
			f.has_until = true;
		} else if (strcmp(opt, "--as-of") == 0) {
			if (parse_time(value, &as_of_ms))
				snprintf(as_of_text, sizeof as_of_text, "%s", value);
			else if (!parse_seq(value, &as_of) || as_of == 0)
				return replay_usage(
				        "--as-of needs a sequence number or an RFC 3339 UTC time");
			has_as_of = true;
		} else {
			fprintf(stderr, "orion replay: unknown option '%s'\n", opt);
			return 2;
		}
	}
	char filter[ES_SUBJECT_MAX];
	const act_kind *kind = NULL;
	if (id != NULL && aggregate == NULL)
		return replay_usage("--id needs --aggregate");
	if (aggregate != NULL && !es_aggregate_valid(aggregate))
		return replay_usage("invalid aggregate type");
	if (f.order != NULL) {
		if (aggregate != NULL || f.correlation != NULL || has_as_of)
			return replay_usage(
			        "--order cannot be combined with --aggregate, --correlation or --as-of");
		if (es_subject(f.order_subject, sizeof f.order_subject, "orion.evt", ORDER_AGGREGATE,
		               f.order) != ORN_OK)
			return replay_usage("invalid order id (allowed: [A-Za-z0-9_-]{1,64})");
	}
	if (follow && (has_as_of || to != 0))
		return replay_usage("--follow cannot be combined with --to or --as-of");
	if (has_as_of) {
		if (id == NULL)
			return replay_usage("--as-of needs --aggregate and --id");
		if (f.type != NULL || f.correlation != NULL || f.has_since || f.has_until || from != 1 ||
		    to != 0)
			return replay_usage("--as-of takes only --aggregate and --id");
		if ((kind = replay_kind(aggregate)) == NULL || kind->view == NULL)
			return replay_usage("--as-of: unknown aggregate type");
	}
	if (id != NULL) {
		if (es_subject(filter, sizeof filter, "orion.evt", aggregate, id) != ORN_OK)
			return replay_usage("invalid id (allowed: [A-Za-z0-9_-]{1,64})");
	} else if (aggregate != NULL) {
		snprintf(filter, sizeof filter, "orion.evt.%s.>", aggregate);
	} else {
		snprintf(filter, sizeof filter, "orion.evt.>");
	}
	natsd *server = NULL;
	es_store *store = NULL;
	int status = 1;
	replay_out out = {mp_writer_create(), 0, &f, with_void, NULL, mp_writer_create()};
	if (out.line == NULL || out.open == NULL ||
	    cli_connect_store(cfg, "orion-replay", false, &server, &store) != ORN_OK)
		goto done;
	if (cli_open_keys(cfg, store, false, &out.keys) != ORN_OK)
		out.keys = NULL; /* sealed fields print as "[sealed]" */
	uint64_t last = 0;
	orn_rc rc = has_as_of ? print_as_of(store, kind, filter, id, as_of, as_of_ms)
	                      : es_scan(store, filter, from, to, print_commit, &out, &last);
	fflush(stdout);
	if (rc == ORN_OK && follow)
		rc = replay_follow(store, filter, last >= from ? last + 1 : from, &out);
	if (rc != ORN_OK) {
		log_error("replay failed", "error", orn_strerror(rc));
		goto done;
	}
	status = 0;
done:
	mp_writer_destroy(out.line);
	mp_writer_destroy(out.open);
	ks_close(out.keys);
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

static void stock_help(FILE *out)
{
	fprintf(out, "usage: orion stock ITEM create QUANTITY | reserve RESERVATION QUANTITY\n"
	             "                  | release RESERVATION | commit RESERVATION\n"
	             "                  | adjust DELTA REASON | get\n\n"
	             "Sends one command to the stock item ITEM through a running `orion serve`\n"
	             "(ORION_NATS_URL, or the one recorded in <data dir>/nats.url) and prints the\n"
	             "reply as JSON. Exit 0 accepted, 1 rejected (a business answer such as\n"
	             "out_of_stock), 3 failed or no service answered.\n"
	             "  -h, --help  this text\n");
}

static int cmd_stock(int argc, char **argv, const cli_config *cfg)
{
	stock_command c;
	bool is_get = false;
	char url[ORN_CONFIG_STR_MAX], command_id[64];
	if (argc >= 1 && cli_is_help(argv[0])) {
		stock_help(stdout);
		return 0;
	}
	if (argc < 2 || !parse_stock_command(argc - 1, argv + 1, &c, &is_get)) {
		stock_help(stderr);
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
	es_store *store = NULL;
	mp_writer *payload = mp_writer_create();
	env_envelope cmd;
	bus_reply reply;
	int status = 3;
	uint8_t nil = 0xc0;
	snprintf(command_id, sizeof command_id, "cli-%lld-%d", (long long)orn_now_ms(), (int)getpid());
	if (payload == NULL || cli_open_store(cfg, url, &store) != ORN_OK) {
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
		rc = bus_send(store, STOCK_AGGREGATE, argv[0], &cmd, cfg->command_timeout_ms, &reply);
	if (rc != ORN_OK) {
		fprintf(stderr, "orion stock: %s\n", orn_strerror(rc));
		goto done;
	}
	print_reply(&reply);
	status = reply.outcome == BUS_ACCEPTED ? 0 : reply.outcome == BUS_REJECTED ? 1 : 3;
	bus_reply_dispose(&reply);
done:
	mp_writer_destroy(payload);
	es_store_close(store);
	return status;
}

static int run_replay(int argc, char **argv, const cli_config *cfg)
{
	return cmd_replay(argc, argv, cfg);
}

static int run_stock(int argc, char **argv, const cli_config *cfg)
{
	return cmd_stock(argc, argv, cfg);
}

static int run_contracts(int argc, char **argv, const cli_config *cfg)
{
	(void)cfg;
	return cli_contracts(argc, argv);
}

/* Every command. main dispatches through this table and `orion --help`
 * lists it, so a command cannot exist without its line in the help; each
 * answers `--help` and `-h` itself with its usage and options, on stdout,
 * before it looks at NATS or the data directory
 * (tests/contracts/test_cli_help.py asks every one). */
static const struct command {
	const char *name;
	int (*run)(int argc, char **argv, const cli_config *cfg);
	const char *summary;
} commands[] = {
        {"serve", cli_serve,
         "run roles (default: all): actors, checkout, payment, psp, mail, timers,\n"
         "projector, gateway; the embedded nats-server without ORION_NATS_URL"},
        {"replay", run_replay,
         "print events as JSON lines (filters, --follow), an order's whole\n"
         "story (--order), or an aggregate's state as of a time (--as-of)"},
        {"stock", run_stock, "send one command to a running stock service, print the reply"},
        {"admin", cli_admin,
         "administration through a running serve (create-user, set-role, revoke-tokens, erase)"},
        {"rebuild", cli_rebuild,
         "rebuild the read models from the stream into a new LMDB generation\n"
         "and switch it in (--verify: rebuild aside and compare)"},
        {"verify-stock", cli_verify_stock,
         "re-derive every stock item from the events and compare with\n"
         "the inventory read model and with what live orders hold"},
        {"verify-log", cli_verify_log,
         "walk every aggregate's commit chain: void commits and\n"
         "impossible states (reserved above on hand, paid and cancelled, ...)"},
        {"migrate-personal-data", cli_migrate_personal_data,
         "copy the event log written before ADR 027 into one with personal\n"
         "data sealed and put it in place (shop stopped; --verify)"},
        {"nats-config", cli_nats_config, "print the nats-server authorization block (a user per role)"},
        {"routes", cli_routes, "list the HTTP routes the gateway serves"},
        {"psp-sandbox", cli_psp_sandbox, "run the card payment provider sandbox alone"},
        {"contracts", run_contracts, "list the event and command types of every kind (for the tests)"},
};

static void usage(FILE *out)
{
	int width = 14; /* the names' column: the longest name and two spaces */
	for (size_t i = 0; i < ORN_ARRAY_LEN(commands); i++)
		if ((int)strlen(commands[i].name) + 2 > width)
			width = (int)strlen(commands[i].name) + 2;
	fprintf(out, "usage: orion <command> [options]\n"
	             "       orion <command> --help   the command's usage and options\n\n"
	             "commands:\n");
	for (size_t i = 0; i < ORN_ARRAY_LEN(commands); i++) {
		const char *line = commands[i].summary;
		fprintf(out, "  %-*s", width, commands[i].name);
		for (const char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1)
			fprintf(out, "%.*s\n  %-*s", (int)(nl - line), line, width, "");
		fprintf(out, "%s\n", line);
	}
	fprintf(out, "  %-*s%s\n\n", width, "help", "this text");
	cli_settings_help(out);
}

int main(int argc, char **argv)
{
	cli_config cfg;
	const char *bad = NULL;
	if (argc < 2 || strcmp(argv[1], "help") == 0 || cli_is_help(argv[1])) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const struct command *command = NULL;
	for (size_t i = 0; i < ORN_ARRAY_LEN(commands) && command == NULL; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			command = &commands[i];
	if (command == NULL) {
		fprintf(stderr, "orion: unknown command '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	if (cli_config_load(&cfg, &bad) != ORN_OK) {
		fprintf(stderr, "orion: invalid value in %s\n", bad);
		return 2;
	}
	log_set_level((log_level)log_level_parse(cfg.log_level));
	signal(SIGPIPE, SIG_IGN);
	return command->run(argc - 2, argv + 2, &cfg);
}
