/* test_gw_password.c — gateway/gw_password.c: Argon2id hash and verify,
 * synchronously and on the pool with results on the loop thread; a full
 * queue is refused at once. Uses the lightest cost to stay fast. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <string.h>

#include <event2/event.h>

#include "gw_inbox.h"
#include "gw_password.h"

static gw_password_options light(void)
{
	gw_password_options o;
	gw_password_options_init(&o);
	o.opslimit = crypto_pwhash_OPSLIMIT_MIN;
	o.memlimit = crypto_pwhash_MEMLIMIT_MIN;
	return o;
}

Test(gw_password, defaults_are_interactive)
{
	gw_password_options o;
	gw_password_options_init(&o);
	cr_assert_eq(o.opslimit, crypto_pwhash_OPSLIMIT_INTERACTIVE);
	cr_assert_eq(o.memlimit, crypto_pwhash_MEMLIMIT_INTERACTIVE);
	cr_assert_eq(o.workers, 2);
}

Test(gw_password, hash_and_verify)
{
	gw_password_options o = light();
	char hash[GW_PASSWORD_HASH_MAX];
	bool match = true;
	cr_assert_eq(gw_password_hash(&o, "correct horse", hash), ORN_OK);
	cr_assert(strncmp(hash, "$argon2id$", 10) == 0);
	cr_assert_eq(gw_password_verify(hash, "correct horse", &match), ORN_OK);
	cr_assert(match);
	cr_assert_eq(gw_password_verify(hash, "correct horsf", &match), ORN_OK);
	cr_assert_not(match);
	cr_assert_eq(gw_password_verify("not a hash", "x", &match), ORN_OK);
	cr_assert_not(match);
	char too_long[GW_PASSWORD_MAX + 2];
	memset(too_long, 'p', sizeof(too_long) - 1);
	too_long[sizeof(too_long) - 1] = '\0';
	cr_assert_eq(gw_password_hash(&o, too_long, hash), ORN_EINVAL);
}

typedef struct result {
	int calls;
	orn_rc rc;
	bool match;
	char hash[GW_PASSWORD_HASH_MAX];
	pthread_t thread;
	struct event_base *base;
	int expected;
} result;

static void done(orn_rc rc, const char *hash, bool match, void *arg)
{
	result *r = arg;
	r->calls++;
	r->rc = rc;
	r->match = match;
	r->thread = pthread_self();
	if (hash)
		snprintf(r->hash, sizeof(r->hash), "%s", hash);
	if (r->calls == r->expected)
		event_base_loopbreak(r->base);
}

Test(gw_password, pool_delivers_on_the_loop_thread)
{
	struct event_base *base = gw_event_base_new();
	gw_password_options o = light();
	gw_password_pool *pool = gw_password_pool_create(base, &o);
	cr_assert_not_null(pool);
	result hashed = {.base = base, .expected = 1};
	cr_assert_eq(gw_password_hash_async(pool, "s3cret!", done, &hashed), ORN_OK);
	event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
	cr_assert_eq(hashed.calls, 1);
	cr_assert_eq(hashed.rc, ORN_OK);
	cr_assert(pthread_equal(hashed.thread, pthread_self()));

	result verified = {.base = base, .expected = 1};
	cr_assert_eq(gw_password_verify_async(pool, hashed.hash, "s3cret!", done, &verified), ORN_OK);
	event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
	cr_assert(verified.match);
	result wrong = {.base = base, .expected = 1};
	cr_assert_eq(gw_password_verify_async(pool, hashed.hash, "guess", done, &wrong), ORN_OK);
	event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
	cr_assert_eq(wrong.calls, 1);
	cr_assert_not(wrong.match);
	gw_password_pool_destroy(pool);
	event_base_free(base);
}

Test(gw_password, full_queue_is_refused)
{
	struct event_base *base = gw_event_base_new();
	gw_password_options o;
	gw_password_options_init(&o); /* interactive cost: slow enough to fill the queue */
	o.workers = 1;
	o.queue_max = 2;
	gw_password_pool *pool = gw_password_pool_create(base, &o);
	result r = {.base = base, .expected = 1000};
	int accepted = 0, refused = 0;
	for (int i = 0; i < 6; i++) {
		orn_rc rc = gw_password_hash_async(pool, "pw", done, &r);
		if (rc == ORN_OK)
			accepted++;
		else if (rc == ORN_EUNAVAILABLE)
			refused++;
	}
	cr_assert_geq(refused, 1);
	cr_assert_leq(accepted, 3); /* one running plus two queued at most */
	/* Destroying answers every accepted job exactly once (queued ones and the
	 * one running), so callers can always free what they hold. */
	gw_password_pool_destroy(pool);
	event_base_free(base);
	cr_assert_eq(r.calls, accepted);
}

/* ---- the quality of a new password (ADR 022) ---- */

Test(gw_password, common_and_email_derived_passwords_are_refused_with_a_reason)
{
	char why[192];
	static const char *const weak[] = {"password1", "qwertyuiop", "123456789", "short"};
	for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++) {
		why[0] = '\0';
		cr_assert_eq(gw_password_quality(weak[i], "pierre@example.net", why, sizeof why), ORN_EINVAL,
		             "%s", weak[i]);
		cr_assert_neq(why[0], '\0', "a reason for %s", weak[i]);
	}
	static const char *const derived[] = {"PIERRE-likes-tea-7", "my-Example-net-9", "zz-pierre-zz-77"};
	for (size_t i = 0; i < sizeof derived / sizeof derived[0]; i++)
		cr_assert_eq(gw_password_quality(derived[i], "pierre@example.net", why, sizeof why),
		             ORN_EINVAL, "%s", derived[i]);
	cr_assert_eq(gw_password_quality("Cobalt-thistle-ferry-64", "pierre@example.net", why, sizeof why),
	             ORN_OK);
	/* parts of two characters are not looked for */
	cr_assert_eq(gw_password_quality("Cobalt-thistle-ferry-64", "ab@cd.example", why, sizeof why),
	             ORN_OK);
}
