/* read_models.h — the full set of Orion's read models on one environment.
 *
 * `orion serve` (projector, gateway), `orion rebuild` and the tests open the
 * same models the same way, in the same order: the order fixes the handle
 * numbers of their sub-databases, which a generation switch relies on. */
#ifndef ORION_READ_MODELS_H
#define ORION_READ_MODELS_H

#include "carts.h"
#include "catalog.h"
#include "desk.h"
#include "inventory.h"
#include "mails.h"
#include "orders.h"
#include "payments.h"
#include "proj_env.h"
#include "projector.h"
#include "users.h"

#define PROJ_MODEL_COUNT 8

typedef struct proj_models {
	proj_inventory *inventory;
	proj_catalog *catalog; /* reads inventory's records: same environment, same runner */
	proj_users *users;
	proj_orders *orders;
	proj_carts *carts;
	proj_mail *mail;
	proj_payments *payments;
	proj_desk *desk;                 /* last: the models before it keep their handle numbers */
	proj_def defs[PROJ_MODEL_COUNT]; /* a runner keeps pointing at these */
} proj_models;

/* Creates every model on env and fills m (zeroed first). On failure nothing
 * is left to free. */
orn_rc proj_models_open(proj_env *env, proj_models *m);
/* Destroys the models (after the runner using them stopped). */
void proj_models_close(proj_models *m);
/* Writes the names of the projections, comma-separated, for messages. */
void proj_models_names(const proj_models *m, char *out, size_t cap);
/* The index of the projection named name in m->defs, or -1. */
int proj_models_find(const proj_models *m, const char *name);

#endif
