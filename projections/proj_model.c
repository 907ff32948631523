/* proj_model.c — what every read model keeps alike (proj_internal.h). */
#include "proj_internal.h"

#include <stdlib.h>

/* proj_env_write's fn: the model's open. */
static orn_rc open_in_txn(proj_txn *t, void *closure)
{
	proj_model *m = closure;

	return m->def.open(m->def.self, t);
}

void *proj_model_create(size_t size, proj_env *env, const proj_def *def, orn_rc *rc)
{
	proj_model *m = calloc(1, size);

	*rc = ORN_ENOMEM;
	if (m == NULL || (m->writer = mp_writer_create()) == NULL)
		goto fail;
	m->env = env;
	m->def = *def;
	m->def.self = m;
	if ((*rc = proj_env_write(env, open_in_txn, m)) != ORN_OK)
		goto fail;
	return m;
fail:
	proj_model_destroy(m);
	return NULL;
}

void proj_model_destroy(void *model)
{
	proj_model *m = model;

	if (m == NULL)
		return;
	mp_writer_destroy(m->writer);
	free(m);
}

void proj_model_skip(proj_model *m, const char *msg, uint64_t seq, const char *subject, const char *type)
{
	__atomic_add_fetch(&m->undecodable, 1, __ATOMIC_RELAXED);
	proj_log_skip(msg, seq, subject, type);
}

uint64_t proj_model_undecodable(proj_model *m)
{
	return __atomic_load_n(&m->undecodable, __ATOMIC_RELAXED);
}
