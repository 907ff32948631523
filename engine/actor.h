/* actor.h — the actor runtime: single-threaded aggregates over NATS.
 *
 * A runtime serves one aggregate kind. It subscribes to orion.cmd.<kind>.*
 * with the queue group orion.<kind>, routes each command to a shard chosen by
 * hashing the aggregate id (a shard is one thread), and runs an aggregate's
 * commands strictly one at a time: load state (cache, else snapshot + tail),
 * decide, append the resulting events as ONE commit, confirm that the commit
 * is the first valid one after the version it was decided on (ADR 015),
 * evolve, reply. Appends of different aggregates are pipelined (async
 * publish); each aggregate has at most one in flight. On a conflict (another
 * writer came first) the aggregate is reloaded and the command decided again,
 * up to a bound; after an append of unknown outcome it looks for the
 * command's own commit first, so a command never answers a rejection of its
 * own success. A command carries its caller's time budget ("ttl"): one that
 * waited past it is answered "expired" and never applied. Queues are bounded
 * per shard and per aggregate ("overloaded" beyond). Keyed client requests
 * are answered from the aggregate's ledger (idem.h). Live states sit in a
 * bounded LRU cache per shard.
 *
 * A kind is a table of pure functions (see act_kind in decision.h); the
 * runtime does all I/O. */
#ifndef ORION_ACTOR_H
#define ORION_ACTOR_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "decision.h"
#include "evstore.h"
#include "orn.h"

typedef struct act_options {
	unsigned shards;         /* threads; default 4 */
	size_t cache_capacity;   /* live states kept, over all shards; default 100000 */
	unsigned snapshot_every; /* events between snapshots, 0 = never; default 100 */
	unsigned max_attempts;   /* tries of a command on conflict; default 8 */
	size_t mailbox_capacity; /* commands queued or running per shard before refusing; default 16384 */
	size_t aggregate_queue;  /* commands waiting for one aggregate before refusing; default 4096 */
	/* An append not acknowledged (or confirmed) by then has an unknown
	 * outcome: the runtime looks for the command's commit, else decides it
	 * again (the msg id makes a resend safe); default 5000. */
	unsigned append_timeout_ms;
	/* The budget of a command that carries none; default 30000. */
	unsigned default_ttl_ms;
	/* Fault tests only: this many append acknowledgements are ignored, as
	 * if lost (the append lands; its outcome stays unknown); default 0. */
	unsigned fault_lost_acks;
	/* Fault tests only: every load is taken as one a lagging replica may
	 * have answered, as on a replicated stream: an aggregate's first append
	 * after its load is confirmed by reading (ADR 015 §3); default false. */
	bool fault_lagging_loads;
	/* Confirm every append by reading the subject's next commits (direct
	 * gets) instead of by the log's echo (ADR 015); for measurements and
	 * tests of that path; default false. */
	bool confirm_by_read;
} act_options;

void act_options_init(act_options *o);

/* The rows of a settings table (config.h) for the options a process sets on
 * the runtimes of its roles: ORION_SHARDS, ORION_CACHE_CAPACITY,
 * ORION_SNAPSHOT_EVERY and ORION_CONFIRM, into field (an act_options) of a role's settings
 * struct type. The role copies them over act_options_init's defaults with
 * act_options_apply. */
#define ACT_OPTIONS_SETTINGS(type, field)                                                                    \
	ORN_SETTING_INT_ROW("ORION_SHARDS", type, field.shards, 4, 1, 256,                                   \
	                    "actor shards (threads) per aggregate kind"),                                    \
	        ORN_SETTING_INT_ROW("ORION_CACHE_CAPACITY", type, field.cache_capacity, 100000, 1,           \
	                            100000000, "live aggregate states kept in memory per kind"),             \
	        ORN_SETTING_INT_ROW("ORION_SNAPSHOT_EVERY", type, field.snapshot_every, 100, 0, 1000000,     \
	                            "events between aggregate snapshots (0: never)"),                        \
	        ORN_SETTING_CHOICE_ROW(                                                                      \
	                "ORION_CONFIRM", type, field.confirm_by_read, "echo", "echo|read",                   \
	                "how actors confirm their commits (ADR 015): the log's echo, or a read")

/* Sets o's shards, cache capacity, snapshot interval and way of confirming
 * to those of set (the field ACT_OPTIONS_SETTINGS filled). */
void act_options_apply(act_options *o, const act_options *set);

typedef struct act_runtime act_runtime;

/* Starts serving kind on store's connection. *out owns the shard threads;
 * stop with act_runtime_stop. The store must outlive the runtime. */
orn_rc act_runtime_start(es_store *store, const act_kind *kind, const act_options *o, act_runtime **out);
/* Unsubscribes, finishes queued work, joins the threads and frees. */
void act_runtime_stop(act_runtime *rt);

typedef struct act_stats {
	uint64_t commands;          /* commands answered */
	uint64_t appends;           /* commits appended */
	uint64_t conflicts;         /* conflicts seen, refused or void commits (each caused a reload) */
	uint64_t voids;             /* commits of this runtime found void after their acknowledgement */
	uint64_t expired;           /* commands that waited past their deadline */
	uint64_t overloaded;        /* commands refused because a queue was full */
	uint64_t rehydrations;      /* cache misses that loaded from the store */
	uint64_t snapshots;         /* snapshots written */
	uint64_t failures;          /* commands answered "failed" */
	uint64_t confirmed_by_echo; /* appends confirmed by the log's echo */
	uint64_t confirmed_by_read; /* appends confirmed by reading (not watched since their base) */
	uint64_t acks_asked;        /* appends published asking for their acknowledgement */
	uint64_t snapshot_lookups;  /* loads that asked for a snapshot (not those of new aggregates) */
} act_stats;

/* Counters since start (approximate while running). */
void act_runtime_stats(act_runtime *rt, act_stats *out);

#endif
