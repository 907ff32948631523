/* role.c — roles described (see role.h). */
#include "role.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

const role_descriptor *role_find(const role_descriptor *const *roles, size_t count, const char *name)
{
	for (size_t i = 0; name != NULL && i < count; i++)
		if (strcmp(roles[i]->name, name) == 0)
			return roles[i];
	return NULL;
}

#define KINDS_MAX 8

struct role_kinds {
	size_t count;
	act_runtime *runtimes[KINDS_MAX];
};

const orn_setting role_actor_settings_table[] = {
        ACT_OPTIONS_SETTINGS(role_actor_settings, act),
        ORN_SETTING_END,
};

orn_rc role_kinds_start(es_store *store, const act_kind *const *kinds, const act_options *set,
                        role_kinds **out)
{
	act_options o;
	orn_rc rc = ORN_OK;
	*out = NULL;
	role_kinds *k = calloc(1, sizeof *k);
	if (k == NULL)
		return ORN_ENOMEM;
	act_options_init(&o);
	act_options_apply(&o, set);
	for (size_t i = 0; kinds != NULL && kinds[i] != NULL && rc == ORN_OK; i++) {
		if (k->count == KINDS_MAX)
			rc = ORN_EINVAL;
		else if ((rc = act_runtime_start(store, kinds[i], &o, &k->runtimes[k->count])) == ORN_OK)
			k->count++;
		else
			log_error("cannot start an actor kind", "kind", kinds[i]->aggregate, "error",
			          orn_strerror(rc));
	}
	if (rc != ORN_OK) {
		role_kinds_stop(k);
		return rc;
	}
	*out = k;
	return ORN_OK;
}

void role_kinds_stop(role_kinds *k)
{
	if (k == NULL)
		return;
	for (size_t i = 0; i < k->count; i++)
		act_runtime_stop(k->runtimes[i]);
	free(k);
}

orn_rc role_actors_start(const role_context *ctx, void **handle)
{
	const role_actor_settings *set = ctx->settings;
	role_kinds *k = NULL;
	orn_rc rc = role_kinds_start(ctx->store, ctx->role->kinds, &set->act, &k);
	*handle = k;
	return rc;
}

void role_actors_stop(void *handle)
{
	role_kinds_stop(handle);
}
