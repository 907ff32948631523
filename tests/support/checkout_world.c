/* checkout_world.c — see checkout_world.h. */
#include "checkout_world.h"

#include <criterion/criterion.h>
#include <string.h>

#include "cart.h"
#include "harness.h"
#include "holds.h"
#include "order.h"
#include "stock.h"
#include "stock_client.h"

void tcw_start(tcw_world *w, const char *name)
{
	act_options ao;
	es_options o;

	memset(w, 0, sizeof *w);
	w->server = th_natsd_start(name);
	es_options_init(&o);
	o.url = natsd_url(w->server);
	cr_assert_eq(es_store_open(&o, &w->store), ORN_OK);
	act_options_init(&ao);
	cr_assert_eq(act_runtime_start(w->store, &stock_kind, &ao, &w->stock), ORN_OK);
	cr_assert_eq(act_runtime_start(w->store, &cart_kind, &ao, &w->cart), ORN_OK);
	cr_assert_eq(act_runtime_start(w->store, &order_kind, &ao, &w->order), ORN_OK);
	cr_assert_eq(act_runtime_start(w->store, &holds_kind, &ao, &w->holds), ORN_OK);
	cr_assert_eq(kit_hub_create(w->store, &w->hub), ORN_OK);
	w->client = tsc_connect(natsd_url(w->server));
}

void tcw_stop(tcw_world *w)
{
	act_runtime_stop(w->holds);
	act_runtime_stop(w->order);
	act_runtime_stop(w->cart);
	act_runtime_stop(w->stock);
	if (w->client != NULL)
		natsConnection_Destroy(w->client);
	kit_hub_destroy(w->hub);
	es_store_close(w->store);
	th_natsd_stop(w->server);
	memset(w, 0, sizeof *w);
}
