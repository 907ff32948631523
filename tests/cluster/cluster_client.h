/* cluster_client.h — what the cluster drivers (chain_race, chain_load) share:
 * connections to a cluster as Orion's ops user, options read from the
 * environment the tests give every process, and pipelined command requests
 * spread over several connections. */
#ifndef ORION_CLUSTER_CLIENT_H
#define ORION_CLUSTER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "bus.h"
#include "evstore.h"
#include "mpack.h"
#include "orn.h"

#define CC_MAX_CONNS 4

/* Where the cluster is: url (a comma-separated list of NATS URLs) and the
 * credentials file whose ops user every connection uses ("" or NULL: none).
 * cc_target_from_env fills both from ORION_NATS_URL and ORION_NATS_CREDENTIALS. */
typedef struct cc_target {
	const char *url;
	const char *credentials;
} cc_target;

void cc_target_from_env(cc_target *t);

/* Connects to url (NULL: t->url) as t's ops user; *out is the caller's
 * (natsConnection_Destroy). ORN_EINVAL for an unreadable credentials file or
 * a refused user, ORN_EUNAVAILABLE if no server answers. */
orn_rc cc_connect(const cc_target *t, const char *url, const char *name, natsConnection **out);

/* Opens the event store on t->url as the ops user, without creating streams;
 * close with es_store_close. */
orn_rc cc_store_open(const cc_target *t, es_store **out);

/* One command of a batch and, once answered, its reply. */
typedef struct cc_request {
	char subject[ES_SUBJECT_MAX];
	uint8_t *wire; /* the encoded command envelope (malloc'd, see cc_request_encode) */
	size_t len;
	int conn; /* which connection of the sender sends it */
	/* the reply */
	bool answered;
	bool decoded; /* false: the reply was not a bus reply */
	bus_outcome outcome;
	char code[BUS_CODE_MAX];
	uint64_t seq;
	bool duplicate;
} cc_request;

/* Encodes a command for aggregate id into r (payload: one msgpack value; the
 * command id is cmd_id) and clears its reply. ORN_EINVAL for a bad id,
 * ORN_ENOMEM. Free with cc_request_dispose. */
orn_rc cc_request_encode(cc_request *r, const char *aggregate, const char *id, const char *type,
                         const char *cmd_id, const mp_writer *payload, int conn);
void cc_request_dispose(cc_request *r);

/* Connections that send batches of requests and gather the replies. */
typedef struct cc_sender cc_sender;

/* Connects once to each of urls[0..count) (count 1..CC_MAX_CONNS); *out owns
 * the connections (cc_sender_destroy). */
orn_rc cc_sender_create(const cc_target *t, const char *const *urls, int count, cc_sender **out);
void cc_sender_destroy(cc_sender *s);
int cc_sender_conns(const cc_sender *s);

/* Sends every request of reqs[0..count) at once, each on its connection, in
 * index order, and waits for all replies; gives up when no reply came for
 * stall_ms. ORN_ETIMEOUT then (the answered ones are filled in), or
 * ORN_EUNAVAILABLE if a publish failed. */
orn_rc cc_sender_run(cc_sender *s, cc_request *reqs, long count, int64_t stall_ms);

#endif
