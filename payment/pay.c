/* pay.c — the payment role's life (see pay.h): options, workers, and its two
 * handlers registered on the kit: the request service (pay_request.c; Pay in
 * pay_charge.c, PspEvent and RetryRefund in pay_webhook.c) and the reconciler
 * of cancelled orders (pay_reconcile.c). Outcomes are settled in
 * pay_settle.c, refunds made in pay_refund.c; what it writes and reads is in
 * pay_ledger.c.
 *
 * Threads: the kit's. Each worker has its own provider client (psp_client.h)
 * and scratch states; they share the store and the set of orders being
 * charged in this process (under lock). */
#include "pay-internal.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "log.h"

#define ORDER_FILTER       "orion.evt.order.>"
#define ACK_WAIT_MS        60000
#define RECONCILERS        2
#define RETRY_FIRST_MS     100 /* backoff of the reconciler, doubling */
#define RETRY_MAX_MS       10000
#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TRIES      3
#define COMMAND_BACKOFF_MS 200
#define REQUEST_BUDGET_MS  20000 /* default: under the gateway's 25 s wait (ORION_PAYMENT_TIMEOUT_MS) */
#define NO_SLOT            (~0u) /* a reconciler's index: it never pays */

void pay_options_init(pay_options *o)
{
	memset(o, 0, sizeof *o);
	o->workers = 8;
	o->call_timeout_ms = 10000;
	o->command_timeout_ms = 5000;
	o->request_budget_ms = REQUEST_BUDGET_MS;
	o->sweep_after_ms = PAY_SWEEP_AFTER_MS_DEFAULT;
}

bool pay_stopping(pay_service *p)
{
	return atomic_load(&p->stopping);
}

void pay_pause(pay_service *p, int64_t ms)
{
	struct timespec until = orn_monotonic_deadline(ms);

	pthread_mutex_lock(&p->lock);
	while (!pay_stopping(p) && pthread_cond_timedwait(&p->wake, &p->lock, &until) == 0)
		;
	pthread_mutex_unlock(&p->lock);
}

/* ---- workers ---- */

static void worker_destroy(void *arg)
{
	pay_worker *w = arg;
	if (w == NULL)
		return;
	pspc_client_destroy(w->psp);
	mp_writer_destroy(w->payload);
	free(w->payment);
	free(w->order);
	free(w->order_cmd);
	free(w);
}

static pay_worker *worker_create(pay_service *p, unsigned index)
{
	pay_worker *w = calloc(1, sizeof *w);

	if (w == NULL)
		return NULL;
	w->p = p;
	w->index = index;
	w->payload = mp_writer_create();
	w->payment = malloc(sizeof *w->payment);
	w->order = malloc(sizeof *w->order);
	w->order_cmd = malloc(sizeof *w->order_cmd);
	if (w->payload == NULL || w->payment == NULL || w->order == NULL || w->order_cmd == NULL ||
	    pspc_client_create(p->psp_url, p->psp_key, CONNECT_TIMEOUT_MS, &w->psp) != ORN_OK) {
		worker_destroy(w);
		return NULL;
	}
	return w;
}

/* A request worker: its number is its slot among the orders being charged. */
static void *request_worker_create(void *closure)
{
	pay_service *p = closure;
	unsigned index = atomic_fetch_add(&p->index, 1);
	return index < p->workers ? worker_create(p, index) : NULL;
}

static void *reconciler_create(void *closure)
{
	return worker_create(closure, NO_SLOT);
}

/* ---- lifecycle ---- */

/* The handlers give up: a provider loop stops at its next retry, nothing
 * more is sent (kit_service_stop calls it once the requests are in). */
static void stopping(void *closure)
{
	pay_service *p = closure;
	atomic_store(&p->stopping, true);
	pthread_mutex_lock(&p->lock);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	kit_sender_stop(p->sender);
}

static void service_free(pay_service *p)
{
	kit_service_stop(p->service); /* the requests received are handled, then stopping() */
	stopping(p);
	kit_consumer_stop(p->reconciler);
	kit_sender_destroy(p->sender);
	if (p->curl_ready)
		curl_global_cleanup();
	if (p->psp_key != NULL)
		sodium_memzero(p->psp_key, strlen(p->psp_key));
	free(p->psp_key);
	free(p->psp_url);
	free(p->return_base);
	free(p->in_flight);
	free(p->seen);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static orn_rc handlers_start(pay_service *p)
{
	kit_sender_options so = {.actor = PAY_ACTOR,
	                         .timeout_ms = p->command_timeout_ms,
	                         .tries = COMMAND_TRIES,
	                         .backoff_ms = COMMAND_BACKOFF_MS};
	kit_service_options vo = {.name = "payment",
	                          .subject = "orion.cmd." PAY_SERVICE_AGGREGATE ".*",
	                          .queue = PAY_QUEUE,
	                          .workers = p->workers,
	                          .wipe = false,
	                          .serve = pay_serve,
	                          .worker_create = request_worker_create,
	                          .worker_destroy = worker_destroy,
	                          .closure = p,
	                          .stopping = stopping};
	kit_consumer_options co = {.name = "payment",
	                           .durable = PAY_CONSUMER,
	                           .filter = ORDER_FILTER,
	                           .ack_wait_ms = ACK_WAIT_MS,
	                           .workers = RECONCILERS,
	                           .retry_first_ms = RETRY_FIRST_MS,
	                           .retry_max_ms = RETRY_MAX_MS,
	                           .handle = pay_reconcile_commit,
	                           .worker_create = reconciler_create,
	                           .worker_destroy = worker_destroy,
	                           .closure = p,
	                           .wants = pay_reconcile_wants,
	                           .check_valid = true,
	                           .sweep_after_ms = p->sweep_after_ms > 0 ? p->sweep_after_ms : 0};
	orn_rc rc;
	if ((rc = kit_sender_create(p->store, &so, &p->sender)) != ORN_OK ||
	    (rc = kit_consumer_start(p->store, p->hub, &co, &p->reconciler)) != ORN_OK)
		return rc;
	return kit_service_start(p->store, &vo, &p->service);
}

orn_rc pay_start(es_store *store, kit_hub *hub, const pay_options *o, pay_service **out)
{
	pthread_condattr_t attr;
	pay_service *p;
	const char *fault = getenv(PAY_FAULT_ENV), *refund_fault = getenv(PAY_FAULT_REFUND_ENV);
	orn_rc rc = ORN_ENOMEM;

	*out = NULL;
	if (store == NULL || hub == NULL || o == NULL || o->psp_url == NULL || o->psp_url[0] == '\0' ||
	    o->psp_key == NULL || o->psp_key[0] == '\0')
		return ORN_EINVAL;
	prctl(PR_SET_DUMPABLE, 0); /* no core dump may carry the provider's key */
	if ((p = calloc(1, sizeof *p)) == NULL)
		return ORN_ENOMEM;
	p->store = store;
	p->hub = hub;
	p->workers = o->workers > 0 ? o->workers : 8;
	p->call_timeout_ms = o->call_timeout_ms > 0 ? o->call_timeout_ms : 10000;
	p->command_timeout_ms = o->command_timeout_ms > 0 ? o->command_timeout_ms : 5000;
	p->request_budget_ms = o->request_budget_ms > 0 ? o->request_budget_ms : REQUEST_BUDGET_MS;
	p->sweep_after_ms = o->sweep_after_ms;
	p->kill_after_charge = fault != NULL && strcmp(fault, "1") == 0;
	p->kill_after_refund = refund_fault != NULL && strcmp(refund_fault, "1") == 0;
	atomic_init(&p->stopping, false);
	atomic_init(&p->index, 0);
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &attr);
	pthread_condattr_destroy(&attr);
	p->psp_url = strdup(o->psp_url);
	p->psp_key = strdup(o->psp_key);
	p->in_flight = calloc(p->workers, sizeof *p->in_flight);
	p->seen = calloc(PAY_SEEN_ORDERS, sizeof *p->seen);
	if (o->public_url != NULL && o->public_url[0] != '\0' &&
	    (p->return_base = strdup(o->public_url)) == NULL)
		goto fail;
	if (p->psp_url == NULL || p->psp_key == NULL || p->in_flight == NULL || p->seen == NULL)
		goto fail;
	for (size_t n = p->return_base != NULL ? strlen(p->return_base) : 0;
	     n > 0 && p->return_base[n - 1] == '/'; n--)
		p->return_base[n - 1] = '\0';
	for (size_t n = strlen(p->psp_url); n > 0 && p->psp_url[n - 1] == '/'; n--)
		p->psp_url[n - 1] = '\0';
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		rc = ORN_EINTERNAL;
		goto fail;
	}
	p->curl_ready = true;
	if ((rc = handlers_start(p)) != ORN_OK)
		goto fail;
	log_info("payment service started", "queue", PAY_QUEUE, "consumer", PAY_CONSUMER);
	*out = p;
	return ORN_OK;
fail:
	service_free(p);
	return rc;
}

bool pay_bound(const pay_service *p)
{
	return p != NULL && kit_consumer_bound(p->reconciler);
}

void pay_stop(pay_service *p)
{
	if (p == NULL)
		return;
	service_free(p);
	log_info("payment service stopped");
}
