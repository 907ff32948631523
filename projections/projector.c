/* projector.c — the projector runner (see projector.h).
 *
 * Threads: cnats fills the ordered consumer's queue; the projector thread
 * alone takes messages from it, opens write transactions and grows the map;
 * any thread may read the position or wait on it (lock + condition variable).
 * The committed checkpoints live in LMDB and, mirrored, in `checkpoints`,
 * which only the projector thread touches after start. */
#include "proj_internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "proj_gen.h"

#define CONSUMER_FILTER "orion.evt.>"
/* The commit chain (ADR 015), folded once for every projection: */
#define CHAIN_HEADS_DB "proj.chain.heads" /* subject -> sequence of its last valid commit */
#define CHAIN_VOID_DB  "proj.chain.void"  /* sequence (8 bytes) -> subject, for each void commit */
#define CHAIN_KEY      "~chain" /* in the checkpoints: the last sequence folded (no projection's name) */
#define IDLE_POLL_MS   100      /* how often an idle projector looks at the stop flag */
#define RETRY_FIRST_MS 50
#define LINK_CHECK_MS  250 /* how often the runner looks where the environment's path leads */

typedef struct batch_msg {
	es_stored *msg;
	uint64_t seq;
} batch_msg;

struct proj_runner {
	es_store *store;
	proj_env *env;
	const proj_def *defs;
	size_t count;
	proj_runner_options o;
	es_tail *tail; /* an ordered consumer of the whole stream */
	pthread_t thread;
	bool thread_started;

	/* projector thread only */
	uint64_t *checkpoints; /* committed, one per projection */
	/* Where batches go: env and checkpoints, or while switching to a new
	 * generation, that generation and its own checkpoints (see switch_to). */
	proj_env *write_env;
	uint64_t *write_cps;
	uint64_t *write_chain; /* the chain's position in write_env: chain_pos or next_chain_pos */
	uint64_t chain_pos, next_chain_pos;
	uint64_t attempt_chain; /* the chain's position as the batch in hand leaves it */
	MDB_dbi chain_heads, chain_void;
	int64_t next_link_check_ns;
	char failed_target[PATH_MAX]; /* a generation that could not be switched to */
	batch_msg *batch;
	size_t batch_count;
	env_envelope *events;   /* ENV_MAX_EVENTS decoded envelopes */
	uint64_t poison_logged; /* highest poison sequence logged (a retried batch logs once) */
	uint64_t attempt_events, attempt_poison, attempt_void;

	pthread_mutex_t lock; /* guards what follows */
	pthread_cond_t changed;
	uint64_t position;
	bool stopping;
	proj_runner_stats stats;
};

void proj_runner_options_init(proj_runner_options *o)
{
	memset(o, 0, sizeof *o);
	o->batch_max = 512;
	o->batch_ms = 20;
	o->retry_max_ms = 5000;
	o->lag_timeout_ms = 2000;
}

static void seq_text(char out[24], uint64_t seq)
{
	snprintf(out, 24, "%llu", (unsigned long long)seq);
}

static bool name_valid(const char *name)
{
	size_t n = 0;
	if (name == NULL)
		return false;
	for (; name[n] != '\0'; n++) {
		char c = name[n];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
			return false;
	}
	return n > 0 && n < PROJ_NAME_MAX;
}

orn_rc proj_checkpoint_get(proj_env *env, const char *name, uint64_t *seq)
{
	MDB_txn *txn = NULL;
	MDB_val v;
	*seq = 0;
	orn_rc rc = proj_env_read_begin(env, &txn);
	if (rc != ORN_OK)
		return rc;
	rc = proj_get(txn, proj_env_checkpoint_dbi(env), name, strlen(name), &v);
	if (rc == ORN_OK && v.mv_size == 8)
		*seq = proj_get_u64(v.mv_data);
	else if (rc == ORN_OK)
		rc = ORN_EDECODE;
	else if (rc == ORN_ENOTFOUND)
		rc = ORN_OK;
	proj_env_read_end(env, txn);
	return rc;
}

/* ---- applying one batch (may run more than once: see proj_env_write) ---- */

static bool wanted_by(const proj_runner *r, size_t d, uint64_t seq, const char *subject)
{
	return seq > r->write_cps[d] && proj_subject_matches(r->defs[d].filter, subject);
}

/* Whether the commit m is valid (es_chain_accepts): folded into the chain the
 * first time the chain meets it; looked up in the void list after. */
static orn_rc chain_fold(proj_runner *r, proj_txn *t, const batch_msg *m, bool *valid)
{
	const char *subject = es_stored_subject(m->msg);
	uint8_t key[8], value[8];
	MDB_val v;
	uint64_t head = 0, prev = 0;
	bool chained = false;
	orn_rc rc;
	proj_put_u64(key, m->seq);
	if (m->seq <= r->attempt_chain) {
		rc = proj_get(t->txn, r->chain_void, key, sizeof key, &v);
		*valid = rc == ORN_ENOTFOUND;
		return rc == ORN_ENOTFOUND ? ORN_OK : rc;
	}
	rc = proj_get(t->txn, r->chain_heads, subject, strlen(subject), &v);
	if (rc == ORN_OK && v.mv_size == 8)
		head = proj_get_u64(v.mv_data);
	else if (rc != ORN_ENOTFOUND)
		return rc == ORN_OK ? ORN_EDECODE : rc;
	/* An Orion-Prev that does not read as a number is no valid commit. */
	*valid = es_stored_prev(m->msg, &chained, &prev) && es_chain_accepts(head, chained, prev);
	r->attempt_chain = m->seq;
	if (*valid) {
		proj_put_u64(value, m->seq);
		return proj_put(t, r->chain_heads, subject, strlen(subject), value, sizeof value, 0);
	}
	return proj_put(t, r->chain_void, key, sizeof key, subject, strlen(subject), 0);
}

static orn_rc apply_commit(proj_runner *r, proj_txn *t, const batch_msg *m)
{
	const char *subject = es_stored_subject(m->msg);
	bool wanted = false, valid = false;
	size_t count = 0, len = 0;
	orn_rc rc = chain_fold(r, t, m, &valid);
	if (rc != ORN_OK)
		return rc;
	for (size_t d = 0; d < r->count && !wanted; d++)
		wanted = wanted_by(r, d, m->seq, subject);
	if (!wanted)
		return ORN_OK;
	if (!valid) {
		r->attempt_void++; /* a void commit changes no read model */
		return ORN_OK;
	}
	const void *data = es_stored_data(m->msg, &len);
	rc = env_decode_commit(data, len, r->events, ENV_MAX_EVENTS, &count);
	if (rc != ORN_OK) {
		r->attempt_poison++;
		if (m->seq > r->poison_logged) {
			char seq[24];
			seq_text(seq, m->seq);
			log_error("projector skips an undecodable commit", "subject", subject, "seq", seq,
			          "error", orn_rc_name(rc));
			r->poison_logged = m->seq;
		}
		return ORN_OK;
	}
	for (size_t d = 0; d < r->count; d++) {
		if (!wanted_by(r, d, m->seq, subject))
			continue;
		for (size_t i = 0; i < count; i++) {
			rc = r->defs[d].apply(r->defs[d].self, t, m->seq, subject, &r->events[i]);
			if (rc != ORN_OK) {
				char seq[24];
				seq_text(seq, m->seq);
				log_error("projection failed to apply an event", "projection",
				          r->defs[d].name, "seq", seq, "type", r->events[i].type, "error",
				          orn_rc_name(rc));
				return rc;
			}
			r->attempt_events++;
		}
	}
	return ORN_OK;
}

static orn_rc apply_batch(proj_txn *t, void *closure)
{
	proj_runner *r = closure;
	orn_rc rc = ORN_OK;
	uint8_t value[8];
	r->attempt_events = 0;
	r->attempt_poison = 0;
	r->attempt_void = 0;
	r->attempt_chain = *r->write_chain;
	for (size_t i = 0; i < r->batch_count; i++)
		if ((rc = apply_commit(r, t, &r->batch[i])) != ORN_OK)
			return rc;
	uint64_t last = r->batch[r->batch_count - 1].seq;
	if (r->attempt_chain > *r->write_chain) {
		proj_put_u64(value, r->attempt_chain);
		rc = proj_put(t, proj_env_checkpoint_dbi(r->write_env), CHAIN_KEY, strlen(CHAIN_KEY), value,
		              sizeof value, 0);
		if (rc != ORN_OK)
			return rc;
	}
	proj_put_u64(value, last);
	for (size_t d = 0; d < r->count; d++) {
		if (last <= r->write_cps[d])
			continue;
		rc = proj_put(t, proj_env_checkpoint_dbi(r->write_env), r->defs[d].name,
		              strlen(r->defs[d].name), value, sizeof value, 0);
		if (rc != ORN_OK)
			return rc;
	}
	return ORN_OK;
}

static uint64_t lowest(const proj_runner *r, const uint64_t *cps)
{
	uint64_t low = UINT64_MAX;
	for (size_t d = 0; d < r->count; d++)
		if (cps[d] < low)
			low = cps[d];
	return r->count > 0 ? low : 0;
}

static uint64_t lowest_checkpoint(const proj_runner *r)
{
	return lowest(r, r->checkpoints);
}

/* Where reading resumes in an environment with checkpoints cps and chain
 * position chain: an environment from before the chain (ADR 015) folds it
 * from the stream's start first, skipping what its projections have. */
static uint64_t resume_at(const proj_runner *r, const uint64_t *cps, uint64_t chain)
{
	uint64_t low = lowest(r, cps);
	return (chain < low ? chain : low) + 1;
}

/* Sleeps up to ms unless stopping; returns true if stopping. */
static bool pause_unless_stopping(proj_runner *r, unsigned ms)
{
	struct timespec until = orn_monotonic_deadline(ms);
	pthread_mutex_lock(&r->lock);
	while (!r->stopping && pthread_cond_timedwait(&r->changed, &r->lock, &until) == 0)
		;
	bool stopping = r->stopping;
	pthread_mutex_unlock(&r->lock);
	return stopping;
}

static bool is_stopping(proj_runner *r)
{
	pthread_mutex_lock(&r->lock);
	bool stopping = r->stopping;
	pthread_mutex_unlock(&r->lock);
	return stopping;
}

/* Commits the batch in hand, retrying with a backoff until it commits or the
 * runner stops; then releases the messages. */
static void commit_batch(proj_runner *r)
{
	unsigned wait_ms = RETRY_FIRST_MS;
	for (;;) {
		orn_rc rc = proj_env_write(r->write_env, apply_batch, r);
		if (rc == ORN_OK)
			break;
		pthread_mutex_lock(&r->lock);
		r->stats.failures++;
		r->stats.last_error = rc;
		pthread_mutex_unlock(&r->lock);
		char seq[24];
		seq_text(seq, r->batch[0].seq);
		log_error("projector batch aborted; retrying", "first_seq", seq, "error", orn_rc_name(rc));
		if (pause_unless_stopping(r, wait_ms))
			goto release; /* abandoned: nothing of it was committed */
		wait_ms = wait_ms * 2 > r->o.retry_max_ms ? r->o.retry_max_ms : wait_ms * 2;
	}
	uint64_t last = r->batch[r->batch_count - 1].seq;
	for (size_t d = 0; d < r->count; d++)
		if (last > r->write_cps[d])
			r->write_cps[d] = last;
	*r->write_chain = r->attempt_chain;
	pthread_mutex_lock(&r->lock);
	if (r->write_cps == r->checkpoints) /* a generation being caught up is not served yet */
		r->position = lowest_checkpoint(r);
	r->stats.commits += r->batch_count;
	r->stats.events += r->attempt_events;
	r->stats.poison += r->attempt_poison;
	r->stats.voids += r->attempt_void;
	r->stats.batches++;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
release:
	for (size_t i = 0; i < r->batch_count; i++)
		es_stored_free(r->batch[i].msg);
	r->batch_count = 0;
}

static orn_rc subscribe(proj_runner *r, uint64_t from_seq)
{
	orn_rc rc = es_tail_open(r->store, CONSUMER_FILTER, from_seq, &r->tail);
	if (rc != ORN_OK) {
		r->tail = NULL;
		log_error("projector cannot subscribe", "error", orn_rc_name(rc));
	}
	return rc;
}

static void unsubscribe(proj_runner *r)
{
	es_tail_close(r->tail); /* no wait on a consumer deletion nobody answers */
	r->tail = NULL;
}

/* Fills the batch: waits up to IDLE_POLL_MS for a first message, then up to
 * batch_ms for more. Returns what ended the wait (ORN_ETIMEOUT, or ORN_OK
 * when full, are normal; ORN_EUNAVAILABLE: the tail is broken). */
static orn_rc gather(proj_runner *r)
{
	int64_t deadline = 0;
	while (r->batch_count < r->o.batch_max) {
		int64_t timeout = IDLE_POLL_MS;
		if (r->batch_count > 0) {
			timeout = (deadline - orn_monotonic_ns()) / 1000000;
			if (timeout <= 0)
				return ORN_ETIMEOUT;
		}
		es_stored *msg = NULL;
		orn_rc rc = es_tail_next(r->tail, timeout, &msg);
		if (rc != ORN_OK)
			return rc;
		uint64_t seq = es_stored_seq(msg);
		if (r->o.stop_at != 0 && seq > r->o.stop_at) {
			es_stored_free(msg); /* past the end asked for */
			continue;
		}
		if (r->batch_count == 0)
			deadline = orn_monotonic_ns() + (int64_t)r->o.batch_ms * 1000000;
		r->batch[r->batch_count++] = (batch_msg){msg, seq};
	}
	return ORN_OK;
}

/* ---- switching to a new generation of the environment ---- */

static orn_rc open_all(proj_txn *t, void *closure);

/* Consumes into next (write_env/write_cps) until every projection there has
 * reached the served position. ORN_EUNAVAILABLE if stopping meanwhile. */
static orn_rc catch_up(proj_runner *r)
{
	while (lowest(r, r->write_cps) < proj_runner_position(r)) {
		if (is_stopping(r))
			return ORN_EUNAVAILABLE;
		orn_rc rc = gather(r);
		if (r->batch_count > 0)
			commit_batch(r);
		if (rc != ORN_OK && rc != ORN_ETIMEOUT)
			return ORN_EUNAVAILABLE;
	}
	return ORN_OK;
}

/* The environment's path leads to target, a generation built aside (`orion
 * rebuild`): open it, bring it up to the served position (queries keep
 * reading the current one, frozen at that position for the catch-up's few
 * milliseconds), make it the environment's, continue from its checkpoints,
 * and remove the old directory if it was a generation. */
static orn_rc switch_to(proj_runner *r, const char *target)
{
	proj_env *next = NULL;
	uint64_t *cps = calloc(r->count, sizeof *cps);
	char old[PATH_MAX];
	orn_rc rc = cps != NULL ? proj_env_open_next(r->env, target, &next) : ORN_ENOMEM;
	if (rc == ORN_OK)
		rc = proj_env_write(next, open_all, r);
	for (size_t d = 0; d < r->count && rc == ORN_OK; d++)
		rc = proj_checkpoint_get(next, r->defs[d].name, &cps[d]);
	if (rc == ORN_OK)
		rc = proj_checkpoint_get(next, CHAIN_KEY, &r->next_chain_pos);
	if (rc == ORN_OK) {
		unsubscribe(r);
		r->write_env = next;
		r->write_cps = cps;
		r->write_chain = &r->next_chain_pos;
		rc = subscribe(r, resume_at(r, cps, r->next_chain_pos));
		if (rc == ORN_OK)
			rc = catch_up(r);
		r->write_env = r->env;
		r->write_cps = r->checkpoints;
		r->write_chain = &r->chain_pos;
	}
	if (rc != ORN_OK) {
		unsubscribe(r); /* runner_main resubscribes from the position */
		proj_env_close(next);
		free(cps);
		return rc;
	}
	proj_env_adopt(r->env, next, old, sizeof old);
	memcpy(r->checkpoints, cps, r->count * sizeof *cps);
	r->chain_pos = r->next_chain_pos;
	free(cps);
	pthread_mutex_lock(&r->lock);
	r->position = lowest_checkpoint(r);
	r->stats.switches++;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
	proj_gen_retire(old);
	return ORN_OK;
}

static void maybe_switch(proj_runner *r)
{
	char target[PATH_MAX];
	bool moved = false;
	int64_t now = orn_monotonic_ns();
	if (now < r->next_link_check_ns)
		return;
	r->next_link_check_ns = now + (int64_t)LINK_CHECK_MS * 1000000;
	if (proj_env_moved(r->env, target, sizeof target, &moved) != ORN_OK || !moved ||
	    strcmp(target, r->failed_target) == 0)
		return;
	log_info("projector switches to a new read model generation", "from", proj_env_target(r->env), "to",
	         target);
	orn_rc rc = switch_to(r, target);
	if (rc == ORN_OK) {
		char seq[24];
		seq_text(seq, proj_runner_position(r));
		log_info("projector switched generation", "path", target, "position", seq);
		r->failed_target[0] = '\0';
	} else if (rc != ORN_EUNAVAILABLE) {
		log_error("projector cannot switch generation; keeps serving the current one", "path", target,
		          "error", orn_rc_name(rc));
		snprintf(r->failed_target, sizeof r->failed_target, "%s", target);
	}
}

static void *runner_main(void *arg)
{
	proj_runner *r = arg;
	unsigned wait_ms = RETRY_FIRST_MS;
	while (!is_stopping(r)) {
		maybe_switch(r);
		if (r->tail == NULL) {
			if (subscribe(r, resume_at(r, r->checkpoints, r->chain_pos)) != ORN_OK) {
				pause_unless_stopping(r, wait_ms);
				wait_ms = wait_ms * 2 > r->o.retry_max_ms ? r->o.retry_max_ms : wait_ms * 2;
				continue;
			}
			wait_ms = RETRY_FIRST_MS;
		}
		orn_rc rc = gather(r);
		if (r->batch_count > 0)
			commit_batch(r);
		if (rc == ORN_OK || rc == ORN_ETIMEOUT)
			continue;
		log_warn("projector consumer error", "error", orn_rc_name(rc));
		unsubscribe(r); /* resubscribe from the position */
		pause_unless_stopping(r, RETRY_FIRST_MS);
	}
	return NULL;
}

/* ---- lifecycle ---- */

static orn_rc open_all(proj_txn *t, void *closure)
{
	proj_runner *r = closure;
	orn_rc rc = proj_dbi_open(t, CHAIN_HEADS_DB, 0, &r->chain_heads);
	if (rc != ORN_OK || (rc = proj_dbi_open(t, CHAIN_VOID_DB, 0, &r->chain_void)) != ORN_OK)
		return rc;
	for (size_t d = 0; d < r->count && rc == ORN_OK; d++)
		rc = r->defs[d].open != NULL ? r->defs[d].open(r->defs[d].self, t) : ORN_OK;
	return rc;
}

static orn_rc check_defs(const proj_def *defs, size_t count)
{
	if (count == 0)
		return ORN_EINVAL;
	for (size_t d = 0; d < count; d++) {
		if (!name_valid(defs[d].name) || defs[d].filter == NULL || defs[d].apply == NULL)
			return ORN_EINVAL;
		for (size_t e = 0; e < d; e++)
			if (strcmp(defs[d].name, defs[e].name) == 0)
				return ORN_EINVAL;
	}
	return ORN_OK;
}

orn_rc proj_runner_start(es_store *store, proj_env *env, const proj_def *defs, size_t count,
                         const proj_runner_options *o, proj_runner **out)
{
	orn_rc rc;
	proj_runner *r = NULL;
	*out = NULL;
	if (store == NULL || env == NULL || (rc = check_defs(defs, count)) != ORN_OK)
		return ORN_EINVAL;
	if ((r = calloc(1, sizeof *r)) == NULL)
		return ORN_ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->changed, &attr);
	pthread_condattr_destroy(&attr);
	r->store = store;
	r->env = env;
	r->write_env = env;
	r->defs = defs;
	r->count = count;
	if (o != NULL)
		r->o = *o;
	else
		proj_runner_options_init(&r->o);
	if (r->o.batch_max == 0 || r->o.batch_ms == 0 || r->o.retry_max_ms == 0) {
		rc = ORN_EINVAL;
		goto fail;
	}
	r->checkpoints = calloc(count, sizeof *r->checkpoints);
	r->write_cps = r->checkpoints;
	r->write_chain = &r->chain_pos;
	r->batch = calloc(r->o.batch_max, sizeof *r->batch);
	r->events = malloc(sizeof *r->events * ENV_MAX_EVENTS);
	if (r->checkpoints == NULL || r->batch == NULL || r->events == NULL) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	if ((rc = proj_env_write(env, open_all, r)) != ORN_OK)
		goto fail;
	for (size_t d = 0; d < count; d++)
		if ((rc = proj_checkpoint_get(env, defs[d].name, &r->checkpoints[d])) != ORN_OK)
			goto fail;
	if ((rc = proj_checkpoint_get(env, CHAIN_KEY, &r->chain_pos)) != ORN_OK)
		goto fail;
	r->position = lowest_checkpoint(r);
	r->stats.position = r->position;
	if ((rc = subscribe(r, resume_at(r, r->checkpoints, r->chain_pos))) != ORN_OK)
		goto fail;
	if (pthread_create(&r->thread, NULL, runner_main, r) != 0) {
		rc = ORN_ENOMEM;
		goto fail;
	}
	r->thread_started = true;
	char seq[24];
	seq_text(seq, r->position);
	log_info("projector started", "position", seq);
	*out = r;
	return ORN_OK;
fail:
	proj_runner_stop(r);
	return rc;
}

void proj_runner_stop(proj_runner *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
	if (r->thread_started)
		pthread_join(r->thread, NULL);
	unsubscribe(r);
	for (size_t i = 0; i < r->batch_count; i++)
		es_stored_free(r->batch[i].msg);
	pthread_cond_destroy(&r->changed);
	pthread_mutex_destroy(&r->lock);
	free(r->checkpoints);
	free(r->batch);
	free(r->events);
	free(r);
}

uint64_t proj_runner_position(proj_runner *r)
{
	pthread_mutex_lock(&r->lock);
	uint64_t position = r->position;
	pthread_mutex_unlock(&r->lock);
	return position;
}

orn_rc proj_runner_wait(proj_runner *r, uint64_t seq, int64_t timeout_ms)
{
	orn_rc rc = ORN_OK;
	struct timespec until = orn_monotonic_deadline(timeout_ms);
	pthread_mutex_lock(&r->lock);
	while (r->position < seq) {
		if (r->stopping) {
			rc = ORN_EUNAVAILABLE;
			break;
		}
		if (pthread_cond_timedwait(&r->changed, &r->lock, &until) != 0 && r->position < seq) {
			rc = ORN_ETIMEOUT;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

orn_rc proj_runner_head(proj_runner *r, uint64_t *last)
{
	return es_stream_last_seq(r->store, r->o.lag_timeout_ms, last);
}

orn_rc proj_runner_lag(proj_runner *r, uint64_t *lag)
{
	uint64_t last = 0;
	*lag = 0;
	orn_rc rc = proj_runner_head(r, &last);
	if (rc != ORN_OK)
		return rc;
	uint64_t position = proj_runner_position(r);
	*lag = last > position ? last - position : 0;
	return ORN_OK;
}

void proj_runner_stats_get(proj_runner *r, proj_runner_stats *out)
{
	pthread_mutex_lock(&r->lock);
	*out = r->stats;
	out->position = r->position;
	pthread_mutex_unlock(&r->lock);
}
