/* read_models.c — the full set of read models (see read_models.h). */
#include "read_models.h"

#include <stdio.h>
#include <string.h>

orn_rc proj_models_open(proj_env *env, proj_models *m)
{
	orn_rc rc;
	memset(m, 0, sizeof *m);
	if ((rc = proj_inventory_create(env, &m->inventory)) != ORN_OK ||
	    (rc = proj_catalog_create(env, &m->catalog)) != ORN_OK ||
	    (rc = proj_users_create(env, &m->users)) != ORN_OK ||
	    (rc = proj_orders_create(env, &m->orders)) != ORN_OK ||
	    (rc = proj_carts_create(env, &m->carts)) != ORN_OK ||
	    (rc = proj_mail_create(env, &m->mail)) != ORN_OK ||
	    (rc = proj_payments_create(env, &m->payments)) != ORN_OK ||
	    (rc = proj_desk_create(env, m->orders, &m->desk)) != ORN_OK) {
		proj_models_close(m);
		return rc;
	}
	m->defs[0] = *proj_inventory_def(m->inventory);
	m->defs[1] = *proj_catalog_def(m->catalog);
	m->defs[2] = *proj_users_def(m->users);
	m->defs[3] = *proj_orders_def(m->orders);
	m->defs[4] = *proj_carts_def(m->carts);
	m->defs[5] = *proj_mail_def(m->mail);
	m->defs[6] = *proj_payments_def(m->payments);
	m->defs[7] = *proj_desk_def(m->desk); /* after orders: it reads the batch's order records */
	return ORN_OK;
}

void proj_models_close(proj_models *m)
{
	proj_desk_destroy(m->desk);
	proj_payments_destroy(m->payments);
	proj_mail_destroy(m->mail);
	proj_carts_destroy(m->carts);
	proj_orders_destroy(m->orders);
	proj_users_destroy(m->users);
	proj_catalog_destroy(m->catalog);
	proj_inventory_destroy(m->inventory);
	memset(m, 0, sizeof *m);
}

void proj_models_names(const proj_models *m, char *out, size_t cap)
{
	size_t used = 0;
	out[0] = '\0';
	for (size_t i = 0; i < PROJ_MODEL_COUNT && used < cap; i++)
		used += (size_t)snprintf(out + used, cap - used, "%s%s", i > 0 ? ", " : "", m->defs[i].name);
}

int proj_models_find(const proj_models *m, const char *name)
{
	for (int i = 0; i < PROJ_MODEL_COUNT; i++)
		if (m->defs[i].name != NULL && strcmp(m->defs[i].name, name) == 0)
			return i;
	return -1;
}
