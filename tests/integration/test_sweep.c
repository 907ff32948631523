/* test_sweep.c — the sweeper under a durable consumer (engine/sweep.h)
 * against a real nats-server: a commit falls due after the delay, counted
 * from its event time; a retry backs off and is not held up behind commits
 * due later; newest_only keeps a subject's last commit; wants filters; the
 * lookback covers commits from before the start; bad options are refused. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "envelope.h"
#include "evstore.h"
#include "harness.h"
#include "log.h"
#include "mpack.h"
#include "sweep.h"

#define FILTER  "orion.evt.thing.>"
#define PREFIX  "orion.evt.thing."
#define WAIT_MS 20000
#define CALLS   16

static natsd *server;
static es_store *store;
static es_sweep *sweep;

/* What the sweeper called: under lock; retries_left says how often fn answers
 * ES_SWEEP_RETRY for the commit of subject retry_subject. */
static struct {
	pthread_mutex_t lock;
	size_t count;
	struct {
		char id[32];
		char type[32];
		uint64_t seq;
		int64_t at_ms;
	} calls[CALLS];
	char retry_id[32];
	int retries_left;
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

static es_sweep_verdict record(void *closure, const es_sweep_commit *c)
{
	const char *id = es_sweep_id(c->subject, PREFIX);
	es_sweep_verdict v = ES_SWEEP_DONE;
	(void)closure;
	cr_assert_not_null(id, "%s", c->subject);
	cr_assert_str_eq(c->correlation, "corr-sweep");
	pthread_mutex_lock(&seen.lock);
	if (seen.count < CALLS) {
		snprintf(seen.calls[seen.count].id, sizeof seen.calls[0].id, "%s", id);
		snprintf(seen.calls[seen.count].type, sizeof seen.calls[0].type, "%s", c->type);
		seen.calls[seen.count].seq = c->seq;
		seen.calls[seen.count].at_ms = orn_now_ms();
		seen.count++;
	}
	if (strcmp(id, seen.retry_id) == 0 && seen.retries_left > 0) {
		seen.retries_left--;
		v = ES_SWEEP_RETRY;
	}
	pthread_mutex_unlock(&seen.lock);
	return v;
}

static bool not_skip(void *closure, const env_envelope *e)
{
	(void)closure;
	return strcmp(e->type, "Skip") != 0;
}

static void setup(void)
{
	server = th_natsd_start("sweep");
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &store), ORN_OK);
}

static void teardown(void)
{
	es_sweep_stop(sweep);
	sweep = NULL;
	es_store_close(store);
	store = NULL;
	th_natsd_stop(server);
	server = NULL;
}

TestSuite(sweep, .init = setup, .fini = teardown, .timeout = 60);

static void start(int64_t after_ms, bool newest_only)
{
	es_sweep_options o = {.filter = FILTER,
	                      .after_ms = after_ms,
	                      .newest_only = newest_only,
	                      .retry_first_ms = 100,
	                      .retry_max_ms = 400,
	                      .wants = not_skip,
	                      .fn = record,
	                      .name = "test"};
	cr_assert_eq(es_sweep_start(store, &o, &sweep), ORN_OK);
}

/* Appends one commit to thing id (its next version): one event of type, or
 * two for "A+B"; returns its stream sequence and sets *time_ms to the
 * events' time. */
static uint64_t append(const char *id, const char *type, int64_t *time_ms)
{
	char types[2][32] = {"", ""};
	int count = sscanf(type, "%31[^+]+%31s", types[0], types[1]);
	static char last_id[32];
	static uint64_t version;
	mp_writer *w = mp_writer_create();
	env_envelope e;
	es_append_result r;
	char cmd[64];

	if (strcmp(id, last_id) != 0)
		es_head(store, "thing", id, &version);
	snprintf(last_id, sizeof last_id, "%s", id);
	memset(&e, 0, sizeof e);
	e.schema = 1;
	e.time_ms = orn_now_ms();
	strcpy(e.correlation, "corr-sweep");
	snprintf(cmd, sizeof cmd, "%s-%llu", id, (unsigned long long)version + 1);
	snprintf(e.causation, sizeof e.causation, "%s", cmd);
	e.payload = (const uint8_t *)"\x80"; /* {} */
	e.payload_len = 1;
	env_commit_begin(w, (uint32_t)count);
	for (int i = 0; i < count; i++) {
		snprintf(e.type, sizeof e.type, "%s", types[i]);
		cr_assert_eq(env_encode(w, &e), ORN_OK);
	}
	cr_assert_eq(es_append(store, "thing", id, &(es_position){version, version}, cmd, mp_writer_data(w),
	                       mp_writer_size(w), &r),
	             ORN_OK);
	mp_writer_destroy(w);
	version = r.seq;
	if (time_ms != NULL)
		*time_ms = e.time_ms;
	return r.seq;
}

static size_t calls(void)
{
	pthread_mutex_lock(&seen.lock);
	size_t n = seen.count;
	pthread_mutex_unlock(&seen.lock);
	return n;
}

static void wait_calls(size_t n)
{
	int64_t until = th_now_ms() + WAIT_MS;
	while (calls() < n) {
		cr_assert_lt(th_now_ms(), until, "%zu calls, not %zu", calls(), n);
		th_sleep_ms(10);
	}
}

Test(sweep, a_commit_falls_due_after_the_delay_and_a_retry_backs_off)
{
	int64_t at = 0;
	strcpy(seen.retry_id, "t1");
	seen.retries_left = 2;
	start(300, false);
	uint64_t seq = append("t1", "Thing", &at);
	wait_calls(3);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_str_eq(seen.calls[i].id, "t1");
		cr_assert_eq(seen.calls[i].seq, seq);
	}
	cr_assert_geq(seen.calls[0].at_ms, at + 300, "never before the delay");
	cr_assert_geq(seen.calls[1].at_ms - seen.calls[0].at_ms, 100, "the first retry waits retry_first_ms");
	cr_assert_geq(seen.calls[2].at_ms - seen.calls[1].at_ms, 200, "then twice as long");
	th_sleep_ms(600);
	cr_assert_eq(calls(), 3, "done after the answer ES_SWEEP_DONE");
}

Test(sweep, a_retry_is_not_held_up_behind_commits_due_later)
{
	strcpy(seen.retry_id, "early");
	seen.retries_left = 1;
	start(1500, false);
	append("early", "Thing", NULL);
	th_sleep_ms(1000);
	append("late", "Thing", NULL); /* queued behind "early", due 1 s after it */
	wait_calls(3);
	cr_assert_str_eq(seen.calls[1].id, "early", "the retry came before the later commit");
	cr_assert_str_eq(seen.calls[2].id, "late");
}

Test(sweep, newest_only_keeps_a_subjects_last_commit_and_wants_filters)
{
	start(300, true);
	append("n1", "Thing", NULL);
	append("n1", "Thing", NULL);
	uint64_t last = append("n1", "Thing+Final", NULL);
	append("n2", "Skip", NULL);
	uint64_t marker = append("n3", "Thing", NULL);
	wait_calls(2);
	th_sleep_ms(500);
	cr_assert_eq(calls(), 2, "one call for n1, none for n2 (not wanted), one for n3");
	cr_assert_str_eq(seen.calls[0].id, "n1");
	cr_assert_eq(seen.calls[0].seq, last, "the newest commit of n1");
	cr_assert_str_eq(seen.calls[0].type, "Final", "the state its last event left");
	cr_assert_str_eq(seen.calls[1].id, "n3");
	cr_assert_eq(seen.calls[1].seq, marker);
	cr_assert_str_eq(seen.calls[1].type, "Thing");
}

Test(sweep, the_lookback_covers_commits_from_before_the_start)
{
	uint64_t seq = append("before", "Thing", NULL);
	start(200, false);
	wait_calls(1);
	cr_assert_str_eq(seen.calls[0].id, "before");
	cr_assert_eq(seen.calls[0].seq, seq);
	cr_assert_eq(es_sweep_dropped(sweep), 0);
}

static orn_rc count_event(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	(void)seq;
	(void)subject;
	cr_assert_str_eq(e->type, "Thing");
	(*(int *)closure)++;
	return ORN_OK;
}

Test(sweep, bad_options_and_helpers)
{
	es_sweep_options o = {.filter = FILTER, .after_ms = 100, .fn = record};
	es_sweep *sw = NULL;

	o.after_ms = 0;
	cr_assert_eq(es_sweep_start(store, &o, &sw), ORN_EINVAL);
	o.after_ms = 100;
	o.fn = NULL;
	cr_assert_eq(es_sweep_start(store, &o, &sw), ORN_EINVAL);
	o.fn = record;
	cr_assert_eq(es_sweep_start(NULL, &o, &sw), ORN_EINVAL);
	cr_assert_null(sw);
	es_sweep_stop(NULL);
	cr_assert_eq(es_sweep_dropped(NULL), 0);
	cr_assert_str_eq(es_sweep_id("orion.evt.thing.abc", PREFIX), "abc");
	cr_assert_null(es_sweep_id("orion.evt.other.abc", PREFIX));
	cr_assert_null(es_sweep_id("orion.evt.thing.a.b", PREFIX));
	cr_assert_null(es_sweep_id("orion.evt.thing.", PREFIX));
	uint64_t seq = append("reread", "Thing", NULL);
	int events = 0;
	cr_assert_eq(es_sweep_reread(store, "orion.evt.thing.reread", seq, count_event, &events), ORN_OK);
	cr_assert_eq(events, 1);
	cr_assert_neq(es_sweep_reread(store, "orion.evt.thing.other", seq, count_event, &events), ORN_OK,
	              "no commit of that subject at seq");
	cr_assert_eq(events, 1);
}
