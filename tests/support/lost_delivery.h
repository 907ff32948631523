/* lost_delivery.h — makes a durable consumer lose what it holds, as the
 * nats-server 2.9 can when a delivery was not agreed by the consumer's
 * replicas (sweep.h): every commit the consumer would deliver now is taken
 * and acknowledged here, so no worker of its role ever gets it. Its role
 * must be stopped. */
#ifndef ORION_TEST_LOST_DELIVERY_H
#define ORION_TEST_LOST_DELIVERY_H

#include <stddef.h>

#include "evstore.h"

/* Takes and acks every commit durable (filter) holds; returns how many of
 * them were on subject (asserts the others are none). */
size_t tld_lose_all(es_store *store, const char *durable, const char *filter, const char *subject);

#endif
