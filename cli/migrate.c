/* migrate.c — `orion migrate-personal-data`: the event log written before
 * ADR 027 copied into one whose personal fields are sealed and whose
 * accounts live on the blind index, then put in the place of ORION_EVT
 * (docs/adr/032-migrating-personal-data.md).
 *
 * Every step is decided from what NATS holds, so a run killed anywhere is
 * finished by running it again:
 *   copy     ORION_EVT -> ORION_EVT_MIGRATE (subjects orion.migrate.evt.>),
 *            sequence for sequence, sealed (privacy/migration.h);
 *   verify   the copy against ORION_EVT, event by event, every token opened;
 *            the durable consumers' positions are written into the copy's
 *            description, which marks it verified;
 *   replace  ORION_EVT deleted, created again with its configuration and a
 *            mark, the copy written back byte for byte, compared, the
 *            consumers restored at their ack floors, ORION_SNAP emptied,
 *            the copy deleted. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "evstream.h"
#include "log.h"
#include "migration.h"
#include "progress.h"

#define STAGING          "ORION_EVT_MIGRATE"
#define STAGING_PREFIX   "orion.migrate.evt"
#define STAGING_SUBJECTS STAGING_PREFIX ".>"
#define EVT_SUBJECTS     ES_EVT_PREFIX ".>"
#define PHASE_COPY       "orion migrate-personal-data: copy of ORION_EVT"
#define PHASE_VERIFIED   "orion migrate-personal-data: verified copy of ORION_EVT"
#define SEALED_MARK      "orion event log, personal data sealed (migrate-personal-data, ADR 032)"
#define STOP_WAIT_S      15 /* how long the consumers of processes that just stopped may take to go */
#define FINDINGS_MAX     20 /* findings printed by --verify */

typedef struct migration {
	es_store *store;
	ks_store *ks;
	mg_plan *plan;
	mp_writer *w;
	bool quiet;
	const char *fault; /* ORION_FAULT_MIGRATE_KILL: the tests' kill -9 at a step */
	/* check_log */
	uint64_t commits, events, erased, findings;
	cli_progress progress;
	uint64_t bound;
} migration;

static int usage(FILE *out, const char *message)
{
	if (message != NULL)
		fprintf(stderr, "orion migrate-personal-data: %s\n", message);
	fprintf(out, "usage: orion migrate-personal-data [--verify] [--quiet]\n"
	             "  copies the event stream into one whose personal fields (emails, names, password\n"
	             "  hashes, recipients) are sealed with a data key per customer and whose accounts\n"
	             "  live on the blind index, verifies the copy against the old stream, and puts it in\n"
	             "  its place (docs/adr/032-migrating-personal-data.md). The shop must be stopped:\n"
	             "  it refuses while consumers of the stream are in use. Restartable: a run killed\n"
	             "  anywhere is finished by running it again; a migrated log is left as it is.\n"
	             "  Afterwards rebuild the read models (orion rebuild), then start the shop.\n"
	             "  --verify  change nothing: check a copy under way against its source, and that\n"
	             "            ORION_EVT decodes, holds no clear personal field, every token opens\n"
	             "            and every account is on its blind index\n"
	             "  --quiet   no progress on stderr\n"
	             "  -h, --help  this text\n"
	             "  exit 0: done (or nothing to do, or verified); 1: refused or findings; 2: errors\n");
	return message != NULL ? 2 : 0;
}

/* The tests' crash at a step (ORION_FAULT_MIGRATE_KILL = copy:SEQ, deleted,
 * back:SEQ): killed with SIGKILL there. */
static void fault_point(const migration *m, const char *step, uint64_t seq)
{
	char point[48];
	snprintf(point, sizeof point, seq > 0 ? "%s:%" PRIu64 : "%s", step, seq);
	if (m->fault != NULL && strcmp(m->fault, point) == 0) {
		fprintf(stderr, "orion migrate-personal-data: fault injected at %s\n", point);
		fflush(stdout);
		kill(getpid(), SIGKILL);
	}
}

/* "orion.evt.X" <-> "orion.migrate.evt.X". */
static orn_rc swap_prefix(const char *subject, const char *from, const char *to, char *out, size_t cap)
{
	size_t n = strlen(from);
	if (strncmp(subject, from, n) != 0 || subject[n] != '.')
		return ORN_EDECODE;
	int w = snprintf(out, cap, "%s%s", to, subject + n);
	return w >= 0 && (size_t)w < cap ? ORN_OK : ORN_ETOOBIG;
}

static bool same_prev(const es_raw *a, const es_raw *b)
{
	return a->chained == b->chained && (!a->chained || a->prev == b->prev);
}

/* Refuses while processes use ORION_EVT: a pull waiting on a durable, a
 * push subscription bound, or an ephemeral consumer (the projector's, the
 * actors' watches); those of processes that just stopped go within seconds.
 * Two looks a second apart must both find none (a role between two pulls
 * has none waiting for a moment). */
static orn_rc shop_stopped(migration *m)
{
	size_t active = 0, ephemeral = 0;
	int quiet = 0;
	orn_rc rc = ORN_OK;
	for (int waited = 0; waited <= STOP_WAIT_S; waited++) {
		if ((rc = es_stream_consumers(m->store, ES_STREAM, NULL, NULL, &active, &ephemeral)) ==
		    ORN_ENOTFOUND)
			return ORN_OK;
		if (rc != ORN_OK)
			return rc;
		quiet = active == 0 && ephemeral == 0 ? quiet + 1 : 0;
		if (quiet == 2)
			return ORN_OK;
		if (waited < STOP_WAIT_S)
			sleep(1);
	}
	fprintf(stderr,
	        "orion migrate-personal-data: the shop is running (%zu consumers of %s in use, %zu "
	        "ephemeral): stop every orion serve first (README, \"Migrating personal data\")\n",
	        active, ES_STREAM, ephemeral);
	return ORN_ECONFLICT;
}

/* ---- learning the old log ---- */

static orn_rc on_learn(void *closure, const es_commit *c)
{
	migration *m = closure;
	cli_progress_show(&m->progress, c->seq, m->bound, false);
	return mg_learn(m->plan, c->subject, c->valid, c->events, c->count);
}

static orn_rc learn(migration *m, uint64_t last)
{
	uint64_t read = 0;
	m->bound = last;
	cli_progress_init(&m->progress, "migrate: reading ORION_EVT", m->quiet, 0);
	orn_rc rc = last > 0 ? es_scan(m->store, EVT_SUBJECTS, 1, last, on_learn, m, &read) : ORN_OK;
	if (rc == ORN_OK && read != last)
		rc = ORN_EIO;
	if (rc == ORN_OK)
		cli_progress_show(&m->progress, last, last, true);
	return rc;
}

/* ---- copying and comparing, sequence by sequence ---- */

/* One direction of a copy: ORION_EVT into the copy, sealed (step 1), or the
 * copy into ORION_EVT as it is (step 3). */
typedef struct direction {
	const char *from, *to;               /* streams */
	const char *from_prefix, *to_prefix; /* their subjects' prefixes */
	bool seal;
	const char *label, *fault_step;
} direction;

static const direction SEALING = {
        ES_STREAM, STAGING, ES_EVT_PREFIX, STAGING_PREFIX, true, "migrate: sealing into " STAGING, "copy"};
static const direction BACK = {
        STAGING, ES_STREAM, STAGING_PREFIX, ES_EVT_PREFIX, false, "migrate: writing " ES_STREAM, "back"};

/* The message r of d.from written to d.to at the same sequence. */
static orn_rc copy_one(migration *m, const direction *d, const es_raw *r)
{
	char planned[ES_SUBJECT_MAX], subject[ES_SUBJECT_MAX];
	bool changed = false;
	orn_rc rc = ORN_OK;
	const char *from_subject = r->subject;
	if (d->seal) {
		if ((rc = mg_rewrite(m->plan, r->subject, r->data, r->len, m->w, &changed)) != ORN_OK ||
		    (rc = mg_subject(m->plan, r->subject, planned, sizeof planned)) != ORN_OK)
			return rc;
		from_subject = planned;
	}
	if ((rc = swap_prefix(from_subject, d->from_prefix, d->to_prefix, subject, sizeof subject)) != ORN_OK)
		return rc;
	return es_stream_write(m->store, d->to, subject, changed ? mp_writer_data(m->w) : r->data,
	                       changed ? mp_writer_size(m->w) : r->len, r->chained, r->prev, r->seq - 1);
}

/* Copies sequences from..last of d.from into d.to, which holds from - 1. */
static orn_rc copy_range(migration *m, const direction *d, uint64_t from, uint64_t last)
{
	char filter[ES_SUBJECT_MAX];
	es_stream_reader *reader = NULL;
	orn_rc rc = ORN_OK;
	if (from > last)
		return ORN_OK;
	snprintf(filter, sizeof filter, "%s.>", d->from_prefix);
	cli_progress_init(&m->progress, d->label, m->quiet, from - 1);
	if ((rc = es_stream_reader_open(m->store, d->from, filter, from, &reader)) != ORN_OK)
		return rc;
	for (uint64_t seq = from; seq <= last && rc == ORN_OK; seq++) {
		es_raw r;
		if ((rc = es_stream_reader_next(reader, &r)) != ORN_OK)
			break;
		if ((rc = copy_one(m, d, &r)) != ORN_OK)
			fprintf(stderr,
			        "orion migrate-personal-data: cannot copy the commit at %" PRIu64
			        " (%s): %s\n",
			        seq, r.subject, orn_strerror(rc));
		es_raw_dispose(&r);
		cli_progress_show(&m->progress, seq, last, false);
		fault_point(m, d->fault_step, seq);
	}
	es_stream_reader_close(reader);
	if (rc == ORN_OK)
		cli_progress_show(&m->progress, last, last, true);
	return rc;
}

/* Compares a message of ORION_EVT (now) with the copy's at its sequence,
 * whose subject is given back in ORION_EVT's terms: ORN_OK, or
 * ORN_ECONFLICT with why. */
typedef orn_rc compare_fn(migration *m, const es_raw *now, const es_raw *copy, const char *subject,
                          char why[MG_WHY_MAX]);

/* Step 2: the sealed copy of the old commit, by opening. */
static orn_rc compare_sealed(migration *m, const es_raw *old, const es_raw *copy, const char *subject,
                             char why[MG_WHY_MAX])
{
	return mg_compare(m->plan, old->subject, old->data, old->len, subject, copy->data, copy->len, why);
}

/* Step 3: the commit written back, byte for byte. */
static orn_rc compare_bytes(migration *m, const es_raw *now, const es_raw *copy, const char *subject,
                            char why[MG_WHY_MAX])
{
	(void)m;
	bool same = strcmp(subject, now->subject) == 0 && now->len == copy->len &&
	            memcmp(now->data, copy->data, now->len) == 0;
	if (!same)
		snprintf(why, MG_WHY_MAX, "%.200s: other bytes", subject);
	return same ? ORN_OK : ORN_ECONFLICT;
}

/* Compares sequences 1..last of ORION_EVT and the copy with fn, and their
 * Orion-Prev headers. */
static orn_rc compare_range(migration *m, const char *label, compare_fn *fn, uint64_t last)
{
	char subject[ES_SUBJECT_MAX], why[MG_WHY_MAX];
	es_stream_reader *evt = NULL, *staging = NULL;
	orn_rc rc = ORN_OK;
	cli_progress_init(&m->progress, label, m->quiet, 0);
	if (last > 0 &&
	    ((rc = es_stream_reader_open(m->store, ES_STREAM, EVT_SUBJECTS, 1, &evt)) != ORN_OK ||
	     (rc = es_stream_reader_open(m->store, STAGING, STAGING_SUBJECTS, 1, &staging)) != ORN_OK))
		last = 0;
	for (uint64_t seq = 1; seq <= last && rc == ORN_OK; seq++) {
		es_raw now, copy;
		if ((rc = es_stream_reader_next(evt, &now)) != ORN_OK)
			break;
		if ((rc = es_stream_reader_next(staging, &copy)) == ORN_OK &&
		    (rc = swap_prefix(copy.subject, STAGING_PREFIX, ES_EVT_PREFIX, subject,
		                      sizeof subject)) == ORN_OK &&
		    (rc = fn(m, &now, &copy, subject, why)) == ORN_OK && !same_prev(&now, &copy)) {
			snprintf(why, sizeof why, "%.200s: Orion-Prev differs", subject);
			rc = ORN_ECONFLICT;
		}
		if (rc == ORN_ECONFLICT)
			fprintf(stderr,
			        "orion migrate-personal-data: %s and its copy differ at %" PRIu64 ": %s\n",
			        ES_STREAM, seq, why);
		es_raw_dispose(&copy);
		es_raw_dispose(&now);
		cli_progress_show(&m->progress, seq, last, false);
	}
	es_stream_reader_close(staging);
	es_stream_reader_close(evt);
	if (rc == ORN_OK)
		cli_progress_show(&m->progress, last, last, true);
	return rc;
}

/* The consumers' positions into the copy's description: marks it verified. */
static orn_rc mark_verified(migration *m)
{
	es_durable_state *durables = NULL;
	size_t count = 0;
	char *text = malloc(ES_STREAM_DESCRIPTION_MAX);
	orn_rc rc = text == NULL ? ORN_ENOMEM
	                         : es_stream_consumers(m->store, ES_STREAM, &durables, &count, NULL, NULL);
	if (rc == ORN_OK) {
		size_t n = (size_t)snprintf(text, ES_STREAM_DESCRIPTION_MAX, "%s", PHASE_VERIFIED);
		for (size_t i = 0; i < count && n < ES_STREAM_DESCRIPTION_MAX; i++)
			n += (size_t)snprintf(text + n, ES_STREAM_DESCRIPTION_MAX - n,
			                      "; durable %s %" PRIu64 " %" PRId64 " %d %s", durables[i].name,
			                      durables[i].floor, durables[i].ack_wait_ms,
			                      durables[i].max_ack_pending, durables[i].filter);
		rc = n < ES_STREAM_DESCRIPTION_MAX ? es_stream_describe(m->store, STAGING, text)
		                                   : ORN_ETOOBIG;
	}
	free(durables);
	free(text);
	return rc;
}

/* Every durable consumer the verified copy's description names, at its
 * floor (entries after "; ": the client writes no newline into JSON). */
static orn_rc restore_consumers(migration *m, const char *description)
{
	const char *line = strstr(description, "; ");
	orn_rc rc = ORN_OK;
	while (rc == ORN_OK && line != NULL) {
		line += 2;
		es_durable_state d;
		memset(&d, 0, sizeof d);
		if (sscanf(line, "durable %63s %" SCNu64 " %" SCNd64 " %d %255[^; ]", d.name, &d.floor,
		           &d.ack_wait_ms, &d.max_ack_pending, d.filter) == 5) {
			if ((rc = es_durable_restore(m->store, &d)) != ORN_OK)
				log_error("cannot restore a durable consumer", "durable", d.name, "error",
				          orn_strerror(rc));
			else if (!m->quiet)
				fprintf(stderr, "migrate: consumer %s restored at %" PRIu64 "\n", d.name,
				        d.floor);
		}
		line = strstr(line, "; ");
	}
	return rc;
}

/* ---- the check of a migrated log (--verify, and the end of a run) ---- */

static orn_rc on_check(void *closure, const es_commit *c)
{
	migration *m = closure;
	char why[MG_WHY_MAX];
	m->commits++;
	m->events += c->count;
	cli_progress_show(&m->progress, c->seq, m->bound, false);
	orn_rc rc = mg_check(m->plan, c->subject, c->events, c->count, &m->erased, why);
	if (rc == ORN_ECONFLICT) {
		if (m->findings++ < FINDINGS_MAX)
			printf("seq %" PRIu64 ": %s\n", c->seq, why);
		rc = ORN_OK;
	}
	return rc;
}

/* Reads ORION_EVT through es_scan (as replay and verify-log do): every
 * commit decodes; mg_check on each. */
static orn_rc check_log(migration *m)
{
	uint64_t last = 0, read = 0;
	orn_rc rc = cli_stream_last_seq(m->store, &last);
	m->commits = m->events = m->erased = m->findings = 0;
	m->bound = last;
	cli_progress_init(&m->progress, "migrate: checking " ES_STREAM, m->quiet, 0);
	if (rc == ORN_OK && last > 0)
		rc = es_scan(m->store, EVT_SUBJECTS, 1, last, on_check, m, &read);
	if (rc == ORN_OK && read != last)
		rc = ORN_EIO;
	if (rc == ORN_OK) {
		cli_progress_show(&m->progress, last, last, true);
		printf("verify: %" PRIu64 " commits, %" PRIu64 " events, %" PRIu64 " findings, %" PRIu64
		       " tokens of erased customers\n",
		       m->commits, m->events, m->findings, m->erased);
	}
	return rc;
}

/* ---- the steps, decided from what NATS holds ---- */

/* Step 1 and 2 on the old ORION_EVT: ORN_OK with *done when there is
 * nothing to migrate. */
static orn_rc copy_and_verify(migration *m, const es_stream_state *evt, const es_stream_state *staging,
                              bool *done)
{
	orn_rc rc;
	*done = false;
	if (evt->msgs > 0 && (evt->first_seq != 1 || evt->deleted > 0 || evt->msgs != evt->last_seq)) {
		fprintf(stderr,
		        "orion migrate-personal-data: %s does not hold every sequence from 1 (first %" PRIu64
		        ", %" PRIu64 " deleted): its commit chain could not be kept\n",
		        ES_STREAM, evt->first_seq, evt->deleted);
		return ORN_ECONFLICT;
	}
	if ((rc = learn(m, evt->last_seq)) != ORN_OK)
		return rc;
	const mg_counts *counts = mg_counts_of(m->plan);
	if (!staging->exists && !mg_needed(m->plan)) {
		printf("migrate-personal-data: nothing to migrate (%" PRIu64
		       " commits, no clear personal field, "
		       "no account on a public subject)\n",
		       evt->last_seq);
		*done = true;
		return ORN_OK;
	}
	mg_place(m->plan);
	printf("migrate-personal-data: %" PRIu64 " commits, %" PRIu64
	       " accounts to move to the blind index (%" PRIu64
	       " registered again since ADR 027: kept apart), %" PRIu64 " clear personal fields\n",
	       evt->last_seq, counts->accounts, counts->superseded, counts->clear_fields);
	size_t cursor = 0;
	for (const char *user_id; mg_next_superseded(m->plan, &cursor, &user_id);)
		printf("migrate-personal-data: account %s kept apart: its address has a newer account "
		       "(ADR 032)\n",
		       user_id);
	if (!staging->exists && (rc = es_stream_create_like(m->store, ES_STREAM, STAGING, STAGING_SUBJECTS,
	                                                    PHASE_COPY)) != ORN_OK)
		return rc;
	uint64_t copied = staging->exists ? staging->last_seq : 0;
	if (copied > evt->last_seq) {
		fprintf(stderr,
		        "orion migrate-personal-data: %s holds more than %s: delete it and run again\n",
		        STAGING, ES_STREAM);
		return ORN_ECONFLICT;
	}
	if ((rc = copy_range(m, &SEALING, copied + 1, evt->last_seq)) != ORN_OK)
		return rc;
	if ((rc = compare_range(m, "migrate: verifying " STAGING, compare_sealed, evt->last_seq)) != ORN_OK)
		return rc;
	printf("migrate-personal-data: the copy equals %s (%" PRIu64 " commits; %" PRIu64
	       " fields sealed by this run, each opened to its old value)\n",
	       ES_STREAM, evt->last_seq, counts->sealed_fields);
	/* nothing may have been written meanwhile: the last look before the delete */
	es_stream_state now;
	if ((rc = shop_stopped(m)) != ORN_OK ||
	    (rc = es_stream_state_get(m->store, ES_STREAM, &now)) != ORN_OK)
		return rc;
	if (now.last_seq != evt->last_seq) {
		fprintf(stderr,
		        "orion migrate-personal-data: %s grew during the copy: stop the shop and run again\n",
		        ES_STREAM);
		return ORN_ECONFLICT;
	}
	return mark_verified(m);
}

/* Step 3, from a verified copy. */
static orn_rc replace(migration *m, const es_stream_state *staging)
{
	es_stream_state evt;
	orn_rc rc = es_stream_state_get(m->store, ES_STREAM, &evt);
	if (rc != ORN_OK)
		return rc;
	if (evt.exists && strcmp(evt.description, SEALED_MARK) != 0) {
		/* the old stream (or an empty one a starter made after the delete) */
		if (evt.msgs != 0 && evt.last_seq != staging->last_seq) {
			fprintf(stderr,
			        "orion migrate-personal-data: %s holds %" PRIu64
			        " commits, the verified copy %" PRIu64
			        ": was the shop started during the migration? Nothing is deleted\n",
			        ES_STREAM, evt.last_seq, staging->last_seq);
			return ORN_ECONFLICT;
		}
		if ((rc = es_stream_delete(m->store, ES_STREAM)) != ORN_OK)
			return rc;
		fault_point(m, "deleted", 0);
		evt.exists = false;
	}
	if (!evt.exists) {
		if ((rc = es_stream_create_like(m->store, STAGING, ES_STREAM, EVT_SUBJECTS, SEALED_MARK)) !=
		    ORN_OK)
			return rc;
		evt.last_seq = 0;
	}
	if ((rc = copy_range(m, &BACK, evt.last_seq + 1, staging->last_seq)) != ORN_OK ||
	    (rc = compare_range(m, "migrate: verifying " ES_STREAM, compare_bytes, staging->last_seq)) !=
	            ORN_OK)
		return rc;
	if ((rc = restore_consumers(m, staging->description)) != ORN_OK)
		return rc;
	if ((rc = es_stream_recreate_empty(m->store, ES_SNAP_STREAM)) != ORN_OK)
		return rc;
	printf("migrate-personal-data: %s replaced (%" PRIu64 " commits), %s emptied\n", ES_STREAM,
	       staging->last_seq, ES_SNAP_STREAM);
	return es_stream_delete(m->store, STAGING);
}

static orn_rc run(migration *m)
{
	es_stream_state evt, staging;
	bool done = false;
	orn_rc rc;
	if ((rc = shop_stopped(m)) != ORN_OK ||
	    (rc = es_stream_state_get(m->store, ES_STREAM, &evt)) != ORN_OK ||
	    (rc = es_stream_state_get(m->store, STAGING, &staging)) != ORN_OK)
		return rc;
	bool verified =
	        staging.exists && strncmp(staging.description, PHASE_VERIFIED, strlen(PHASE_VERIFIED)) == 0;
	if (!verified) {
		if ((rc = copy_and_verify(m, &evt, &staging, &done)) != ORN_OK || done)
			return rc;
		if ((rc = es_stream_state_get(m->store, STAGING, &staging)) != ORN_OK)
			return rc;
	}
	if ((rc = replace(m, &staging)) != ORN_OK || (rc = check_log(m)) != ORN_OK)
		return rc;
	if (m->findings > 0)
		return ORN_ECONFLICT;
	printf("migrate-personal-data: done; now rebuild the read models (orion rebuild) and start the "
	       "shop\n");
	return ORN_OK;
}

/* --verify: a copy under way against its source, then ORION_EVT on its own. */
static orn_rc verify_only(migration *m)
{
	es_stream_state evt, staging;
	orn_rc rc;
	if ((rc = es_stream_state_get(m->store, ES_STREAM, &evt)) != ORN_OK ||
	    (rc = es_stream_state_get(m->store, STAGING, &staging)) != ORN_OK)
		return rc;
	if (staging.exists && strncmp(staging.description, PHASE_VERIFIED, strlen(PHASE_VERIFIED)) != 0) {
		printf("verify: a copy is under way (%" PRIu64 " of %" PRIu64 " commits); comparing it\n",
		       staging.last_seq, evt.last_seq);
		if ((rc = learn(m, evt.last_seq)) != ORN_OK ||
		    (rc = compare_range(m, "migrate: verifying " STAGING, compare_sealed,
		                        staging.last_seq)) != ORN_OK)
			return rc;
		printf("verify: the copy equals %s so far; %s itself is not migrated yet\n", ES_STREAM,
		       ES_STREAM);
		return ORN_ECONFLICT;
	}
	if (staging.exists) {
		printf("verify: a verified copy is being put in place (%" PRIu64 " of %" PRIu64 " commits)\n",
		       evt.last_seq, staging.last_seq);
		if ((rc = compare_range(m, "migrate: verifying " ES_STREAM, compare_bytes, evt.last_seq)) !=
		    ORN_OK)
			return rc;
	}
	if ((rc = check_log(m)) != ORN_OK)
		return rc;
	return m->findings > 0 || staging.exists ? ORN_ECONFLICT : ORN_OK;
}

bool cli_migration_under_way(es_store *store)
{
	es_stream_state staging;
	if (es_stream_state_get(store, STAGING, &staging) != ORN_OK || !staging.exists)
		return false;
	log_error("a migration of personal data is under way: run orion migrate-personal-data to its end "
	          "before starting (README, \"Migrating personal data\")",
	          "stream", STAGING);
	return true;
}

int cli_migrate_personal_data(int argc, char **argv, const cli_config *cfg)
{
	bool verify = false;
	migration m;
	memset(&m, 0, sizeof m);
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--verify") == 0)
			verify = true;
		else if (strcmp(argv[i], "--quiet") == 0)
			m.quiet = true;
		else if (cli_is_help(argv[i]))
			return usage(stdout, NULL);
		else
			return usage(stderr, "unknown option");
	}
	m.fault = getenv("ORION_FAULT_MIGRATE_KILL");
	natsd *server = NULL;
	char url[ORN_CONFIG_STR_MAX];
	int status = 2;
	orn_rc rc = ORN_ENOMEM;
	if (!verify && cfg->nats_url[0] == '\0' && cli_read_running_url(cfg, url, sizeof url)) {
		fprintf(stderr,
		        "orion migrate-personal-data: orion serve is running on %s (%s): stop it first "
		        "(README, \"Migrating personal data\")\n",
		        cfg->data_dir, url);
		return 1;
	}
	if ((m.w = mp_writer_create()) == NULL)
		goto done;
	if ((rc = cli_connect_store(cfg, "orion-migrate-personal-data", false, &server, &m.store)) !=
	    ORN_OK) {
		log_error("cannot open the event store", "error", orn_strerror(rc));
		goto done;
	}
	if ((rc = cli_open_keys(cfg, m.store, true, &m.ks)) != ORN_OK ||
	    (rc = mg_create(m.ks, &m.plan)) != ORN_OK)
		goto done;
	rc = verify ? verify_only(&m) : run(&m);
	status = rc == ORN_OK ? 0 : rc == ORN_ECONFLICT ? 1 : 2;
done:
	fflush(stdout);
	if (status == 2)
		fprintf(stderr, "orion migrate-personal-data: %s\n", orn_strerror(rc));
	mg_destroy(m.plan);
	ks_close(m.ks);
	mp_writer_destroy(m.w);
	es_store_close(m.store);
	natsd_stop(server);
	return status;
}
