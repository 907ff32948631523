/* lost_delivery.c — see lost_delivery.h. */
#include "evstore-internal.h"
#include "lost_delivery.h"

#include <criterion/criterion.h>
#include <nats/nats.h>
#include <string.h>

size_t tld_lose_all(es_store *store, const char *durable, const char *filter, const char *subject)
{
	natsSubscription *sub = NULL;
	jsSubOptions so;
	size_t taken = 0;

	jsSubOptions_Init(&so);
	so.Stream = ES_STREAM;
	so.Consumer = durable;
	cr_assert_eq(js_PullSubscribe(&sub, es_store_jetstream(store), filter, durable, NULL, &so, NULL),
	             NATS_OK);
	for (;;) {
		natsMsgList list;
		memset(&list, 0, sizeof list);
		natsStatus st = natsSubscription_Fetch(&list, sub, 16, 500, NULL);
		for (int k = 0; k < list.Count; k++) {
			cr_assert_str_eq(natsMsg_GetSubject(list.Msgs[k]), subject,
			                 "only the lost events wait");
			cr_assert_eq(natsMsg_AckSync(list.Msgs[k], NULL, NULL), NATS_OK);
			taken++;
		}
		natsMsgList_Destroy(&list);
		if (st != NATS_OK)
			break; /* nothing more within the wait */
	}
	natsSubscription_Destroy(sub); /* the durable consumer stays */
	return taken;
}
