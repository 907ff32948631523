/* chain_race.c — the raw canary of ADR 015: does the server store two
 * publishes that expect the same last subject sequence?
 *
 *   chain_race --stream NAME --replicas N [--rounds R]
 *
 * Creates stream NAME (subjects canary.NAME.>, N replicas, every other
 * setting copied from ORION_EVT, which must exist) on the cluster of
 * ORION_NATS_URL, as the ops user of ORION_NATS_CREDENTIALS. Each round publishes a first message on a fresh
 * subject, then two messages expecting that message's sequence
 * (Nats-Expected-Last-Subject-Sequence > 0), one on each of two connections,
 * both in flight at once, and waits for both answers. A correct check stores
 * one and refuses the other (jerr 10071); nats-server 2.9.10 on a clustered
 * stream checks before it proposes and may store both. Prints one JSON line:
 * {"stream","replicas","rounds","both_stored","one_refused","neither",
 *  "errors","first_error","stored","expected_stored"};
 * exit 0 when every round was answered (whatever the answers), 1 otherwise. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <nats/nats.h>

#include "cluster_client.h"
#include "log.h"

#define WRONG_LAST_SEQUENCE 10071 /* JSStreamWrongLastSequenceErrF */

typedef struct race {
	long rounds;
	atomic_int *stored;  /* per round: racing publishes acknowledged */
	atomic_int *refused; /* per round: racing publishes refused with 10071 */
	atomic_long errors;  /* any other answer */
	char first_error[160];
	pthread_mutex_t lock;
} race;

/* The round of a subject canary.<stream>.<round>. */
static long round_of(const char *subject)
{
	const char *dot = strrchr(subject, '.');
	return dot != NULL ? strtol(dot + 1, NULL, 10) : -1;
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	race *r = closure;
	long i = round_of(natsMsg_GetSubject(msg));
	(void)js;
	if (i < 0 || i >= r->rounds) {
		atomic_fetch_add(&r->errors, 1);
	} else if (pa != NULL) {
		atomic_fetch_add(&r->stored[i], 1);
	} else if (pae != NULL && pae->ErrCode == WRONG_LAST_SEQUENCE) {
		atomic_fetch_add(&r->refused[i], 1);
	} else {
		atomic_fetch_add(&r->errors, 1);
		pthread_mutex_lock(&r->lock);
		if (r->first_error[0] == '\0')
			snprintf(r->first_error, sizeof r->first_error, "%s (jerr %d)",
			         pae != NULL && pae->ErrText ? pae->ErrText : "no answer",
			         pae != NULL ? (int)pae->ErrCode : 0);
		pthread_mutex_unlock(&r->lock);
	}
	natsMsg_Destroy(msg);
}

/* Creates stream name on subjects with the given replicas and every other
 * setting of ORION_EVT as the server reports them (Orion's streams must exist). */
static orn_rc add_stream(jsCtx *js, const char *name, const char *subjects, int replicas)
{
	jsStreamInfo *evt = NULL, *si = NULL;
	jsErrCode jerr = 0;
	const char *list[1] = {subjects};
	natsStatus st = js_GetStreamInfo(&evt, js, ES_STREAM, NULL, &jerr);
	if (st == NATS_OK) {
		jsStreamConfig cfg = *evt->Config;
		cfg.Name = name;
		cfg.Subjects = list;
		cfg.SubjectsLen = 1;
		cfg.Replicas = replicas;
		cfg.Placement = NULL;
		st = js_AddStream(&si, js, &cfg, NULL, &jerr);
	}
	jsStreamInfo_Destroy(si);
	jsStreamInfo_Destroy(evt);
	if (st != NATS_OK) {
		fprintf(stderr, "chain_race: cannot create %s like %s: %s (jerr %d)\n", name, ES_STREAM,
		        natsStatus_GetText(st), (int)jerr);
		return ORN_EUNAVAILABLE;
	}
	return ORN_OK;
}

/* Publishes asynchronously on js, expecting expect (0: no expectation). */
static natsStatus publish(jsCtx *js, const char *subject, uint64_t expect, const char *data)
{
	natsMsg *msg = NULL;
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.ExpectLastSubjectSeq = expect;
	natsStatus st = natsMsg_Create(&msg, subject, NULL, data, (int)strlen(data));
	if (st == NATS_OK)
		st = js_PublishMsgAsync(js, &msg, &po);
	natsMsg_Destroy(msg);
	return st;
}

static int usage(void)
{
	fprintf(stderr, "usage: chain_race --stream NAME --replicas N [--rounds R]\n"
	                "(the cluster: ORION_NATS_URL, ORION_NATS_CREDENTIALS)\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *stream = NULL;
	int replicas = 0;
	long rounds = 500;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--stream") == 0)
			stream = argv[i + 1];
		else if (strcmp(argv[i], "--replicas") == 0)
			replicas = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--rounds") == 0)
			rounds = atol(argv[i + 1]);
		else
			return usage();
	}
	if (stream == NULL || replicas < 1 || rounds < 1 || argc % 2 == 0)
		return usage();
	log_set_level(LOG_WARN);

	cc_target target;
	cc_target_from_env(&target);
	natsConnection *nc[2] = {NULL, NULL};
	jsCtx *js[2] = {NULL, NULL};
	race r = {.rounds = rounds, .lock = PTHREAD_MUTEX_INITIALIZER};
	uint64_t *first = calloc((size_t)rounds, sizeof *first);
	r.stored = calloc((size_t)rounds, sizeof *r.stored);
	r.refused = calloc((size_t)rounds, sizeof *r.refused);
	char subjects[128], subject[160];
	int status = 1;
	jsStreamInfo *si = NULL;
	if (first == NULL || r.stored == NULL || r.refused == NULL)
		goto done;
	for (int k = 0; k < 2; k++) {
		char name[32];
		jsOptions jo;
		snprintf(name, sizeof name, "chain-race-%d", k);
		if (cc_connect(&target, NULL, name, &nc[k]) != ORN_OK)
			goto done;
		jsOptions_Init(&jo);
		jo.Wait = 10000;
		jo.PublishAsync.AckHandler = on_ack;
		jo.PublishAsync.AckHandlerClosure = &r;
		if (natsConnection_JetStream(&js[k], nc[k], &jo) != NATS_OK)
			goto done;
	}
	snprintf(subjects, sizeof subjects, "canary.%s.>", stream);
	if (add_stream(js[0], stream, subjects, replicas) != ORN_OK)
		goto done;

	/* the first message of every round's subject */
	for (long i = 0; i < rounds; i++) {
		jsPubAck *pa = NULL;
		jsErrCode jerr = 0;
		snprintf(subject, sizeof subject, "canary.%s.%ld", stream, i);
		natsStatus st = js_Publish(&pa, js[0], subject, "first", 5, NULL, &jerr);
		if (st != NATS_OK) {
			fprintf(stderr, "chain_race: first publish on %s: %s (jerr %d)\n", subject,
			        natsStatus_GetText(st), (int)jerr);
			goto done;
		}
		first[i] = pa->Sequence;
		jsPubAck_Destroy(pa);
	}

	/* the races: one publish on each connection, both in flight */
	jsPubOptions wait;
	jsPubOptions_Init(&wait);
	wait.MaxWait = 20000;
	for (long i = 0; i < rounds; i++) {
		snprintf(subject, sizeof subject, "canary.%s.%ld", stream, i);
		if (publish(js[i % 2], subject, first[i], "racer-a") != NATS_OK ||
		    publish(js[(i + 1) % 2], subject, first[i], "racer-b") != NATS_OK) {
			fprintf(stderr, "chain_race: publish failed in round %ld\n", i);
			goto done;
		}
		if (js_PublishAsyncComplete(js[0], &wait) != NATS_OK ||
		    js_PublishAsyncComplete(js[1], &wait) != NATS_OK) {
			fprintf(stderr, "chain_race: round %ld not answered\n", i);
			goto done;
		}
	}

	long both = 0, one = 0, neither = 0, acked = 0;
	for (long i = 0; i < rounds; i++) {
		int stored = atomic_load(&r.stored[i]), refused = atomic_load(&r.refused[i]);
		acked += stored;
		if (stored == 2)
			both++;
		else if (stored == 1 && refused == 1)
			one++;
		else if (stored == 0 && refused == 2)
			neither++;
	}
	if (js_GetStreamInfo(&si, js[0], stream, NULL, NULL) != NATS_OK) {
		fprintf(stderr, "chain_race: no stream info for %s\n", stream);
		goto done;
	}
	json_t *out =
	        json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:I}", "stream", stream, "replicas",
	                  replicas, "rounds", (json_int_t)rounds, "both_stored", (json_int_t)both,
	                  "one_refused", (json_int_t)one, "neither", (json_int_t)neither, "errors",
	                  (json_int_t)atomic_load(&r.errors), "first_error", r.first_error, "stored",
	                  (json_int_t)si->State.Msgs, "expected_stored", (json_int_t)(rounds + acked));
	if (out != NULL) {
		json_dumpf(out, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(out);
		status = 0;
	}
done:
	jsStreamInfo_Destroy(si);
	for (int k = 0; k < 2; k++) {
		jsCtx_Destroy(js[k]);
		natsConnection_Destroy(nc[k]);
	}
	free(first);
	free((void *)r.stored);
	free((void *)r.refused);
	nats_Close();
	return status;
}
