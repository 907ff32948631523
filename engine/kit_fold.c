/* kit_fold.c — an aggregate's state from its kind table (kit_fold), and
 * commands decided and appended in process (kit_execute); see kit.h.
 *
 * A fold is a record (where it stands, the last commits it met and whether
 * each was valid, the ids of the last commands applied) and the kind's state.
 * The hub keeps the latest folds of each kind whose state is copyable, in a
 * cache bounded by LRU: a fold starts from the cached record and reads only
 * the commits after it (es_load_from); the cache is never trusted for what
 * lies past its position, and a decision that appends nothing is checked
 * against the head before it is answered (as the actor runtime does). */
#include "kit-internal.h"

#include <stdlib.h>
#include <string.h>

#include "hashmap.h"
#include "log.h"

#define CACHE_CAPACITY 2048 /* folds kept per kind (an order is ~19 KiB) */
#define SEQS_MAX       16   /* commits a record remembers (for watch) */
#define IDS_MAX        8    /* command ids a record remembers (duplicates) */
#define EXECUTE_TRIES  8

typedef struct record {
	es_position at;
	uint64_t seqs[SEQS_MAX]; /* the last commits read, oldest first */
	bool valid[SEQS_MAX];
	size_t seq_count;
	bool seqs_whole;               /* every commit of the subject up to at.last_seq is listed */
	char ids[IDS_MAX][ENV_ID_MAX]; /* command ids of the last valid commits (ring) */
	uint64_t id_seqs[IDS_MAX];
	size_t ids_next;
} record;

typedef struct entry {
	struct entry *prev, *next; /* LRU: most recent first */
	char id[ES_ID_MAX + 1];
	record rec;
	unsigned char state[]; /* kind->state_size */
} entry;

struct kit_cache {
	const act_kind *kind;
	pthread_mutex_t lock;
	hmap *entries;
	entry *head, *tail;
	size_t count;
};

kit_cache *kit_cache_create(const act_kind *kind)
{
	kit_cache *c = calloc(1, sizeof *c);
	if (c == NULL || (c->entries = hmap_create()) == NULL) {
		free(c);
		return NULL;
	}
	c->kind = kind;
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void kit_cache_destroy(kit_cache *c)
{
	if (c == NULL)
		return;
	for (entry *e = c->head; e != NULL;) {
		entry *next = e->next;
		free(e);
		e = next;
	}
	hmap_destroy(c->entries);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void lru_unlink(kit_cache *c, entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_front(kit_cache *c, entry *e)
{
	e->next = c->head;
	e->prev = NULL;
	if (c->head != NULL)
		c->head->prev = e;
	else
		c->tail = e;
	c->head = e;
}

/* A new entry for id, at the front: the least recently used one reused when
 * the cache is full (lock held); NULL if out of memory. */
static entry *entry_add(kit_cache *c, const char *id)
{
	entry *e;
	if (c->count >= CACHE_CAPACITY && c->tail != NULL) {
		e = c->tail; /* reused for id */
		lru_unlink(c, e);
		hmap_remove(c->entries, e->id);
		c->count--;
	} else if ((e = malloc(sizeof *e + c->kind->state_size)) == NULL) {
		return NULL;
	}
	snprintf(e->id, sizeof e->id, "%s", id);
	if (hmap_put(c->entries, e->id, e) != ORN_OK) {
		free(e);
		return NULL;
	}
	c->count++;
	lru_front(c, e);
	return e;
}

/* Stores (state, rec) as id's fold if it is ahead of what the cache holds
 * (lock not held). Out of memory only means a colder next fold. */
static void cache_store(kit_cache *c, const char *id, const void *state, const record *rec)
{
	pthread_mutex_lock(&c->lock);
	entry *e = hmap_get(c->entries, id);
	if (e != NULL && e->rec.at.last_seq >= rec->at.last_seq) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	if (e != NULL) {
		lru_unlink(c, e);
		lru_front(c, e);
	} else if ((e = entry_add(c, id)) == NULL) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	e->rec = *rec;
	memcpy(e->state, state, c->kind->state_size);
	pthread_mutex_unlock(&c->lock);
}

/* Copies id's cached fold into state and rec if usable for q; false if not. */
static bool cache_take(kit_cache *c, const char *id, const kit_fold_query *q, void *state, record *rec);

/* ---- folding ---- */

static bool record_find(const record *rec, uint64_t seq, bool *valid)
{
	for (size_t i = 0; i < rec->seq_count; i++)
		if (rec->seqs[i] == seq) {
			*valid = rec->valid[i];
			return true;
		}
	*valid = false;
	return false;
}

static void record_commit(record *rec, uint64_t seq, bool valid, const char *command_id)
{
	if (rec->seq_count == SEQS_MAX) {
		memmove(rec->seqs, rec->seqs + 1, (SEQS_MAX - 1) * sizeof rec->seqs[0]);
		memmove(rec->valid, rec->valid + 1, (SEQS_MAX - 1) * sizeof rec->valid[0]);
		rec->seq_count--;
		rec->seqs_whole = false;
	}
	rec->seqs[rec->seq_count] = seq;
	rec->valid[rec->seq_count++] = valid;
	rec->at.last_seq = seq;
	if (!valid)
		return;
	rec->at.version = seq;
	if (command_id != NULL && command_id[0] != '\0') {
		snprintf(rec->ids[rec->ids_next], ENV_ID_MAX, "%s", command_id);
		rec->id_seqs[rec->ids_next] = seq;
		rec->ids_next = (rec->ids_next + 1) % IDS_MAX;
	}
}

/* The commit of a valid commit caused by command_id among the last ones, 0 if none. */
static uint64_t record_applied(const record *rec, const char *command_id)
{
	for (size_t i = 0; i < IDS_MAX; i++)
		if (rec->id_seqs[i] != 0 && strcmp(rec->ids[i], command_id) == 0)
			return rec->id_seqs[i];
	return 0;
}

static void record_init(record *rec)
{
	memset(rec, 0, sizeof *rec);
	rec->seqs_whole = true;
}

/* Evolves state with the events of a valid commit; ORN_EDECODE (and a log
 * line) for an event the kind cannot fold. */
static orn_rc evolve_events(const act_kind *kind, void *state, const es_commit *c)
{
	for (size_t i = 0; i < c->count; i++) {
		orn_rc rc = kind->evolve(state, &c->events[i]);
		if (rc != ORN_OK && rc != ORN_EINVAL) { /* EINVAL: a type this version does not know */
			char seq[24];
			snprintf(seq, sizeof seq, "%llu", (unsigned long long)c->seq);
			log_error("kit cannot fold an event", "subject", c->subject, "seq", seq, "type",
			          c->events[i].type);
			return ORN_EDECODE;
		}
	}
	return ORN_OK;
}

typedef struct folding {
	const act_kind *kind;
	void *state;
	record *rec;
	const kit_fold_query *q;
	bool stopped; /* q->until said so: the rest is not folded */
} folding;

#define FOLD_STOP ORN_EEXISTS /* es_load_from stops on an error: this one means "until" */

static orn_rc fold_commit(void *closure, const es_commit *c)
{
	folding *f = closure;
	orn_rc rc = ORN_OK;
	if (c->valid && (rc = evolve_events(f->kind, f->state, c)) != ORN_OK)
		return rc;
	record_commit(f->rec, c->seq, c->valid, c->count > 0 ? c->events[0].causation : NULL);
	if (f->q != NULL && f->q->until != NULL && f->q->until(f->state, f->q->closure)) {
		f->stopped = true;
		return FOLD_STOP;
	}
	return ORN_OK;
}

static bool cache_take(kit_cache *c, const char *id, const kit_fold_query *q, void *state, record *rec)
{
	bool usable = false, valid;
	pthread_mutex_lock(&c->lock);
	entry *e = hmap_get(c->entries, id);
	if (e != NULL && (q->up_to == 0 || e->rec.at.last_seq <= q->up_to) &&
	    (q->watch == 0 || q->watch > e->rec.at.last_seq || e->rec.seqs_whole ||
	     record_find(&e->rec, q->watch, &valid))) {
		memcpy(state, e->state, c->kind->state_size);
		*rec = e->rec;
		lru_unlink(c, e);
		lru_front(c, e);
		usable = true;
	}
	pthread_mutex_unlock(&c->lock);
	return usable;
}

/* Folds from rec (and the state it goes with) as q asks, then caches. */
static orn_rc fold_on(kit_cache *cache, es_store *store, const act_kind *kind, const char *id,
                      const kit_fold_query *q, void *state, record *rec)
{
	folding f = {kind, state, rec, q, false};
	es_position from = rec->at, at;
	orn_rc rc = ORN_OK;
	if (q->up_to == 0 || q->up_to > from.last_seq)
		rc = es_load_from(store, kind->aggregate, id, &from, q->up_to, fold_commit, &f, &at);
	if (rc == FOLD_STOP && f.stopped)
		return ORN_OK; /* a partial fold: never cached */
	if (rc == ORN_OK && cache != NULL && q->until == NULL)
		cache_store(cache, id, state, rec);
	return rc;
}

orn_rc kit_fold(kit_hub *hub, es_store *store, const act_kind *kind, const char *id, const kit_fold_query *q,
                void *state, kit_folded *out)
{
	static const kit_fold_query to_head = {0};
	kit_cache *cache = q == NULL || q->until == NULL ? kit_hub_cache(hub, kind) : NULL;
	record rec;
	orn_rc rc;
	memset(out, 0, sizeof *out);
	if (q == NULL)
		q = &to_head;
	if (store == NULL || kind == NULL || state == NULL || !es_id_valid(id))
		return ORN_EINVAL;
	if (cache == NULL || !cache_take(cache, id, q, state, &rec)) {
		kind->init(state);
		record_init(&rec);
	}
	if ((rc = fold_on(cache, store, kind, id, q, state, &rec)) != ORN_OK)
		return rc;
	out->at = rec.at;
	if (q->watch != 0 && q->watch <= rec.at.last_seq &&
	    !record_find(&rec, q->watch, &out->watched_valid) && !rec.seqs_whole) {
		/* the record has forgotten it: fold from the start, without the cache */
		kit_fold_query again = *q;
		kind->init(state);
		record_init(&rec);
		if ((rc = fold_on(NULL, store, kind, id, &again, state, &rec)) != ORN_OK)
			return rc;
		out->at = rec.at;
		(void)record_find(&rec, q->watch, &out->watched_valid);
	}
	return ORN_OK;
}

/* ---- what the follower meets ---- */

void kit_cache_follow(kit_cache *c, const char *id, const es_commit *commit)
{
	const act_kind *kind = c->kind;
	if (!commit->before_known)
		return;
	pthread_mutex_lock(&c->lock);
	entry *e = hmap_get(c->entries, id);
	if (e == NULL && commit->before == 0 && (e = entry_add(c, id)) != NULL) {
		kind->init(e->state); /* a subject's first commit: the fold starts empty */
		record_init(&e->rec);
	}
	if (e == NULL || e->rec.at.last_seq != commit->before) {
		pthread_mutex_unlock(&c->lock); /* not where the fold stands: left to reads */
		return;
	}
	/* The fold stands at the commit before: whether this one is valid, its
	 * own record says (the chain's rule on its last valid commit). */
	bool valid = es_chain_accepts(e->rec.at.version, commit->chained, commit->prev);
	if (valid && evolve_events(kind, e->state, commit) != ORN_OK) {
		lru_unlink(c, e); /* a state half evolved is no fold: dropped */
		hmap_remove(c->entries, e->id);
		c->count--;
		free(e);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	record_commit(&e->rec, commit->seq, valid, commit->count > 0 ? commit->events[0].causation : NULL);
	lru_unlink(c, e);
	lru_front(c, e);
	pthread_mutex_unlock(&c->lock);
}

/* ---- executing ---- */

typedef struct execution {
	kit_hub *hub;
	es_store *store;
	const act_kind *kind;
	kit_cache *cache;
	const char *id;
	env_envelope cmd;
	void *state;
	record rec;
	bool fresh; /* the state was read up to the head, not taken on trust */
	act_decision *decision;
	mp_writer *commit;
	env_envelope events[ENV_MAX_EVENTS];
} execution;

static void result_set(kit_result *out, bus_outcome outcome, const char *code, const char *detail,
                       uint64_t seq, bool duplicate)
{
	out->outcome = outcome;
	snprintf(out->code, sizeof out->code, "%s", code != NULL ? code : "");
	snprintf(out->detail, sizeof out->detail, "%s", detail != NULL ? detail : "");
	out->seq = seq;
	out->duplicate = duplicate;
}

/* The state up to the head: from the cache (or empty) onwards. */
static orn_rc reload(execution *x)
{
	static const kit_fold_query to_head = {0};
	if (x->cache == NULL || !cache_take(x->cache, x->id, &to_head, x->state, &x->rec)) {
		x->kind->init(x->state);
		record_init(&x->rec);
	}
	x->fresh = true;
	return fold_on(x->cache, x->store, x->kind, x->id, &to_head, x->state, &x->rec);
}

/* Where to decide first: the cached fold, an empty state for a likely new
 * aggregate, or a read to the head. */
static orn_rc start(execution *x, bool likely_new)
{
	static const kit_fold_query to_head = {0};
	if (x->cache != NULL && cache_take(x->cache, x->id, &to_head, x->state, &x->rec)) {
		x->fresh = false;
		return ORN_OK;
	}
	if (likely_new) {
		x->kind->init(x->state);
		record_init(&x->rec);
		x->fresh = false;
		return ORN_OK;
	}
	return reload(x);
}

/* A decision that appends nothing, made on a state taken on trust: true if
 * the head says another writer moved the aggregate on (reloaded then). */
static orn_rc stale(execution *x, bool *moved)
{
	uint64_t head = 0;
	orn_rc rc = ORN_OK;
	*moved = false;
	if (x->fresh)
		return ORN_OK;
	if ((rc = es_head(x->store, x->kind->aggregate, x->id, &head)) != ORN_OK)
		return rc;
	if (head != x->rec.at.last_seq) {
		*moved = true;
		return reload(x);
	}
	x->fresh = true;
	return ORN_OK;
}

/* The appended commit, decoded from the bytes stored, folded into the state. */
static orn_rc applied(execution *x, uint64_t seq)
{
	es_commit c = {.seq = seq, .valid = true, .events = x->events};
	orn_rc rc = env_decode_commit(mp_writer_data(x->commit), mp_writer_size(x->commit), x->events,
	                              ENV_MAX_EVENTS, &c.count);
	if (rc == ORN_OK)
		rc = evolve_events(x->kind, x->state, &c);
	if (rc != ORN_OK)
		return rc;
	record_commit(&x->rec, seq, true, x->cmd.causation);
	if (x->cache != NULL)
		cache_store(x->cache, x->id, x->state, &x->rec);
	return ORN_OK;
}

/* One decision and its append. true when *out is the answer; false to try
 * again (a conflict or a void commit: x reloaded). */
static bool attempt(execution *x, kit_result *out)
{
	uint64_t seen;
	bool moved = false;
	es_append_result appended;
	orn_rc rc;
	act_decision_clear(x->decision);
	if ((rc = x->kind->decide(x->state, &x->cmd, x->decision)) != ORN_OK) {
		result_set(out, BUS_FAILED, "invalid", orn_strerror(rc), 0, false);
		return true;
	}
	if (act_decision_rejection(x->decision) != NULL || act_decision_count(x->decision) == 0) {
		if ((rc = stale(x, &moved)) != ORN_OK || moved) {
			if (rc == ORN_OK)
				return false;
			result_set(out, BUS_FAILED, "unavailable", orn_strerror(rc), 0, false);
			return true;
		}
		if (act_decision_rejection(x->decision) != NULL)
			result_set(out, BUS_REJECTED, act_decision_rejection(x->decision),
			           act_decision_detail(x->decision), 0, false);
		else
			result_set(out, BUS_ACCEPTED, "", "", 0, false);
		return true;
	}
	if ((seen = record_applied(&x->rec, x->cmd.causation)) != 0) {
		result_set(out, BUS_ACCEPTED, "", "duplicate command", seen, true);
		return true;
	}
	if ((rc = act_decision_commit(x->decision, &x->cmd, orn_now_ms(), x->commit)) != ORN_OK) {
		result_set(out, BUS_FAILED, "invalid", orn_strerror(rc), 0, false);
		return true;
	}
	es_position at = x->rec.at;
	rc = es_append(x->store, x->kind->aggregate, x->id, &at, x->cmd.causation, mp_writer_data(x->commit),
	               mp_writer_size(x->commit), &appended);
	if (rc == ORN_OK && !appended.duplicate && applied(x, appended.seq) == ORN_OK) {
		result_set(out, BUS_ACCEPTED, "", "", appended.seq, false);
		return true;
	}
	if (rc == ORN_OK || rc == ORN_ECONFLICT || rc == ORN_ETIMEOUT || rc == ORN_EUNAVAILABLE) {
		/* another writer, a duplicate of an earlier try, or an outcome to look for */
		if ((rc = reload(x)) == ORN_OK) {
			if ((seen = record_applied(&x->rec, x->cmd.causation)) != 0) {
				result_set(out, BUS_ACCEPTED, "", "duplicate command", seen, true);
				return true;
			}
			return false;
		}
	}
	result_set(out, BUS_FAILED, "unavailable", orn_strerror(rc), 0, false);
	return true;
}

orn_rc kit_execute(kit_hub *hub, es_store *store, const act_kind *kind, const char *aggregate_id,
                   const kit_command *cmd, void *state, kit_result *out)
{
	execution *x = NULL;
	orn_rc rc = ORN_EINVAL;
	memset(out, 0, sizeof *out);
	if (hub == NULL || store == NULL || kind == NULL || cmd == NULL || !es_id_valid(aggregate_id) ||
	    (state != NULL && !kind->copyable))
		return ORN_EINVAL;
	if ((x = calloc(1, sizeof *x)) == NULL || (x->state = malloc(kind->state_size)) == NULL ||
	    (x->decision = act_decision_create()) == NULL || (x->commit = mp_writer_create()) == NULL) {
		rc = ORN_ENOMEM;
		goto done;
	}
	x->hub = hub;
	x->store = store;
	x->kind = kind;
	x->cache = kit_hub_cache(hub, kind);
	x->id = aggregate_id;
	if ((rc = bus_command_init(&x->cmd, cmd->type, cmd->time_ms, cmd->id, cmd->correlation, cmd->actor,
	                           cmd->payload, cmd->len)) != ORN_OK)
		goto done;
	if ((rc = start(x, cmd->likely_new)) != ORN_OK) {
		result_set(out, BUS_FAILED, "unavailable", orn_strerror(rc), 0, false);
		rc = ORN_OK;
		goto answered;
	}
	int tries = 0;
	while (!attempt(x, out))
		if (++tries >= EXECUTE_TRIES) {
			result_set(out, BUS_FAILED, "conflict", "too many concurrent writers", 0, false);
			break;
		}
answered:
	out->at = x->rec.at;
	if (state != NULL)
		memcpy(state, x->state, kind->state_size);
	rc = ORN_OK;
done:
	if (x != NULL) {
		if (x->state != NULL)
			kind->dispose(x->state);
		free(x->state);
		act_decision_destroy(x->decision);
		mp_writer_destroy(x->commit);
	}
	free(x);
	return rc;
}
