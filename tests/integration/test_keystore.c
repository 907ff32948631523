/* test_keystore.c — privacy/keystore.c against a real nats-server: keys are
 * stored wrapped and read back by another handle; a wrong master key is
 * refused; a destroyed key is gone for every handle and its wrapped bytes are
 * gone from the server's files; the index key is shared; the master key file
 * is made once, private. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "evstore.h"
#include "harness.h"
#include "keystore.h"

static natsd *server;
static es_store *store;
static uint8_t master[PD_KEY_BYTES];

static void setup(void)
{
	cr_assert_geq(sodium_init(), 0);
	server = th_natsd_start("keystore");
	es_options o;
	es_options_init(&o);
	o.url = natsd_url(server);
	cr_assert_eq(es_store_open(&o, &store), ORN_OK);
	randombytes_buf(master, sizeof master);
}

static void teardown(void)
{
	es_store_close(store);
	store = NULL;
	th_natsd_stop(server);
	server = NULL;
}

TestSuite(keystore, .init = setup, .fini = teardown, .timeout = 60);

static ks_store *open_with(const uint8_t key[PD_KEY_BYTES], unsigned cache_ttl_ms)
{
	ks_options o;
	ks_options_init(&o);
	o.cache_ttl_ms = cache_ttl_ms;
	ks_store *ks = NULL;
	cr_assert_eq(ks_open(store, key, &o, &ks), ORN_OK);
	return ks;
}

Test(keystore, a_key_created_by_one_handle_is_read_by_another)
{
	ks_store *a = open_with(master, 60000), *b = open_with(master, 0);
	char kid[PD_KID_MAX];
	uint8_t key[PD_KEY_BYTES], again[PD_KEY_BYTES];
	cr_assert_eq(ks_key_create(a, kid, key), ORN_OK);
	cr_assert(pd_kid_valid(kid));
	cr_assert_eq(ks_key_get(b, kid, again), ORN_OK);
	cr_assert_eq(memcmp(key, again, sizeof key), 0);
	/* the stored form is wrapped: the key itself is in no file of the server */
	cr_assert_not(th_dir_contains(th_natsd_dir(server), key, sizeof key, NULL, 0));
	/* both agree on the blind index */
	char ia[PD_INDEX_MAX], ib[PD_INDEX_MAX];
	ks_blind_index(a, "marie@example.com", ia);
	ks_blind_index(b, "marie@example.com", ib);
	cr_assert_str_eq(ia, ib);
	ks_close(a);
	ks_close(b);
}

Test(keystore, a_wrong_master_key_is_refused_at_open)
{
	ks_close(open_with(master, 0));
	uint8_t wrong[PD_KEY_BYTES];
	randombytes_buf(wrong, sizeof wrong);
	ks_store *ks = NULL;
	cr_assert_eq(ks_open(store, wrong, NULL, &ks), ORN_EINVAL);
	cr_assert_null(ks);
}

Test(keystore, without_create_a_missing_keystore_is_not_made)
{
	ks_options o;
	ks_options_init(&o);
	o.create = false;
	ks_store *ks = NULL;
	cr_assert_eq(ks_open(store, master, &o, &ks), ORN_ENOTFOUND);
}

Test(keystore, a_destroyed_key_is_gone_for_every_handle_and_from_the_files)
{
	ks_store *a = open_with(master, 60000), *b = open_with(master, 0);
	char kid[PD_KID_MAX], token[PD_TOKEN_MAX], out[PD_PLAIN_MAX + 1];
	uint8_t key[PD_KEY_BYTES];
	cr_assert_eq(ks_key_create(a, kid, key), ORN_OK);
	cr_assert_eq(ks_seal(a, kid, "email", "cmd-1", "marie@example.com", token, sizeof token), ORN_OK);
	cr_assert_eq(ks_open_token(b, token, "email", "cmd-1", out, sizeof out), ORN_OK);
	cr_assert_str_eq(out, "marie@example.com");
	/* the wrapped entry as stored */
	natsMsg *msg = NULL;
	jsCtx *js = NULL;
	char subject[64];
	snprintf(subject, sizeof subject, "orion.keys.data.%s", kid);
	cr_assert_eq(natsConnection_JetStream(&js, es_store_connection(store), NULL), NATS_OK);
	cr_assert_eq(js_GetLastMsg(&msg, js, KS_STREAM, subject, NULL, NULL), NATS_OK);
	uint8_t wrapped[PD_WRAPPED_BYTES];
	memcpy(wrapped, natsMsg_GetData(msg), sizeof wrapped);
	natsMsg_Destroy(msg);
	jsCtx_Destroy(js);
	cr_assert(th_dir_contains(th_natsd_dir(server), wrapped, sizeof wrapped, NULL, 0));

	cr_assert_eq(ks_key_destroy(b, kid), ORN_OK);
	cr_assert_eq(ks_key_destroy(b, kid), ORN_OK, "destroying twice is harmless");
	cr_assert_eq(ks_key_get(b, kid, key), ORN_ENOTFOUND);
	cr_assert_eq(ks_open_token(b, token, "email", NULL, out, sizeof out), ORN_ENOTFOUND);
	cr_assert_str_eq(out, "");
	/* a: its cache still held it; destroying through a drops it at once */
	cr_assert_eq(ks_key_destroy(a, kid), ORN_OK);
	cr_assert_eq(ks_key_get(a, kid, key), ORN_ENOTFOUND);
	char found[4096] = "";
	cr_assert_not(th_dir_contains(th_natsd_dir(server), wrapped, sizeof wrapped, found, sizeof found),
	              "the wrapped key is still in %s", found);
	ks_close(a);
	ks_close(b);
}

Test(keystore, values_written_before_sealing_pass_through_and_invalid_kids_are_refused)
{
	ks_store *ks = open_with(master, 0);
	char out[PD_PLAIN_MAX + 1];
	uint8_t key[PD_KEY_BYTES];
	cr_assert_eq(ks_open_token(ks, "legacy@example.com", "email", NULL, out, sizeof out), ORN_OK);
	cr_assert_str_eq(out, "legacy@example.com");
	cr_assert_eq(ks_key_get(ks, "not-a-kid", key), ORN_EINVAL);
	cr_assert_eq(ks_key_destroy(ks, "not-a-kid"), ORN_EINVAL);
	cr_assert_eq(ks_key_get(ks, "0123456789abcdef0123456789abcdef", key), ORN_ENOTFOUND);
	ks_close(ks);
}

Test(keystore, the_master_key_file_is_made_once_and_private)
{
	char *dir = th_tempdir("master");
	uint8_t first[PD_KEY_BYTES], second[PD_KEY_BYTES], from_env[PD_KEY_BYTES];
	cr_assert_eq(ks_master_key_load(NULL, dir, first), ORN_OK);
	cr_assert_eq(ks_master_key_load("", dir, second), ORN_OK);
	cr_assert_eq(memcmp(first, second, sizeof first), 0);
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, KS_MASTER_KEY_FILE);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(ks_master_key_load("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	                                dir, from_env),
	             ORN_OK);
	cr_assert_eq(from_env[1], 0x11);
	cr_assert_eq(ks_master_key_load("short", dir, from_env), ORN_EINVAL);
	chmod(path, 0644);
	cr_assert_eq(ks_master_key_load(NULL, dir, from_env), ORN_EINVAL, "a readable key file is refused");
	th_rmrf(dir);
	free(dir);
}
