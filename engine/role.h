/* role.h — a role as it describes itself to the process that runs it: its
 * name, what it does on NATS (the permissions of its user are rendered from
 * it, nats_auth.h), its settings with their defaults and help (config.h), and
 * how it starts, stops and says it is ready. `orion serve` builds its list of
 * roles, `--help`, the NATS authorization and the order of start and stop
 * from these descriptors (ADR 024). */
#ifndef ORION_ROLE_H
#define ORION_ROLE_H

#include <stdbool.h>
#include <stddef.h>

#include "actor.h"
#include "config.h"
#include "evstore.h"
#include "kit.h"
#include "nats_auth.h"
#include "orn.h"

/* When a role starts in a process (in this order) and stops (the front
 * first, then the roles that send commands, then those that serve other
 * roles, then the readers and the answerers together). */
typedef enum role_stage {
	ROLE_ANSWERS, /* answers commands (the actor kinds) */
	ROLE_READS,   /* reads the stream into the read models */
	ROLE_SERVES,  /* a service the process's other roles call (the provider sandbox) */
	ROLE_FRONT,   /* takes requests from the outside (the gateway) */
	ROLE_SENDS    /* sends commands and side effects (checkout, mail, payment, timers) */
} role_stage;

struct role_descriptor;

/* What the process gives a role it starts; valid for the role's life. */
typedef struct role_context {
	const struct role_descriptor *role; /* the role started */
	es_store *store;                    /* the role's own connection, as its NATS user */
	kit_hub *hub;                       /* what the side-effect roles of the process share */
	const char *data_dir;               /* where the role may keep files */
	const void *settings;               /* the role's settings, loaded (settings_size bytes) */
	/* What the process or its other roles offer by name (each role says what
	 * it asks for and what it offers); NULL if nobody offers it. */
	const void *(*offer)(void *host, const char *what);
	void *host;
} role_context;

typedef struct role_descriptor {
	const char *name;    /* "checkout"; also its NATS user's role */
	const char *summary; /* one line for `orion serve --help` */
	role_stage stage;
	const char *const *needs; /* roles it brings along in its process (NULL-terminated), or NULL */
	bool no_nats;             /* it talks HTTP only: no NATS user, no connection */
	na_grants nats;
	/* The actor kinds whose commands it answers on the bus (NULL-terminated),
	 * or NULL; role_actors_start runs them. */
	const act_kind *const *kinds;
	const orn_setting *settings; /* its settings (ORN_SETTING_END-terminated), or NULL */
	size_t settings_size;        /* bytes of the struct the settings fill */
	/* Starts the role; on success *handle is the role's, stopped with stop.
	 * NULL: the process starts this role itself. */
	orn_rc (*start)(const role_context *ctx, void **handle);
	void (*stop)(void *handle); /* NULL ok as handle */
	/* Optional: whether it can serve now (readiness); NULL: once started. */
	bool (*ready)(const void *handle);
	/* Optional: what the running role offers the others (see role_context). */
	const void *(*offers)(const void *handle, const char *what);
} role_descriptor;

/* The descriptor named name among count, NULL if none. */
const role_descriptor *role_find(const role_descriptor *const *roles, size_t count, const char *name);

/* ---- roles that answer commands: a runtime per kind (actor.h) ---- */

/* The settings of such a role: the runtime options a process sets
 * (ACT_OPTIONS_SETTINGS), the table role_actor_settings_table. */
typedef struct role_actor_settings {
	act_options act;
} role_actor_settings;

extern const orn_setting role_actor_settings_table[];

typedef struct role_kinds role_kinds;

/* Starts a runtime for each of kinds (NULL-terminated) on store, with the
 * shards, cache and snapshot interval of set over act_options_init's
 * defaults. Nothing is left running on failure. */
orn_rc role_kinds_start(es_store *store, const act_kind *const *kinds, const act_options *set,
                        role_kinds **out);

/* Stops the runtimes one after the other (each finishes its queued work),
 * frees. NULL ok. */
void role_kinds_stop(role_kinds *k);

/* A role's start and stop for a role made of its kinds alone: settings a
 * role_actor_settings, the kinds of ctx->role. */
orn_rc role_actors_start(const role_context *ctx, void **handle);
void role_actors_stop(void *handle);

#endif
