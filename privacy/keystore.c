/* keystore.c — data keys in the ORION_KEYS stream, wrapped by the master key,
 * with a small cache of unwrapped keys in locked memory (keystore.h). */
#include "keystore.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>
#include <sodium.h>

#include "log.h"
#include "secret.h"

#define SUBJECT_MASTER "orion.keys.master"
#define SUBJECT_INDEX  "orion.keys.index"
#define SUBJECT_DATA   "orion.keys.data."
#define CACHE_SLOTS    1024 /* direct-mapped by the kid's first hex digits */

typedef struct cache_slot {
	char kid[PD_KID_MAX];
	uint8_t key[PD_KEY_BYTES];
	int64_t loaded_ms;
} cache_slot;

/* What sodium_malloc holds: the master and index keys and the cache. */
typedef struct secrets {
	uint8_t master[PD_KEY_BYTES];
	uint8_t index[PD_KEY_BYTES];
	uint8_t links[PD_KEY_BYTES]; /* derived from index (pd_link_key) */
	cache_slot cache[CACHE_SLOTS];
} secrets;

struct ks_store {
	jsCtx *js;
	ks_options opt;
	secrets *sec;
	pthread_mutex_t lock;
};

void ks_options_init(ks_options *o)
{
	memset(o, 0, sizeof *o);
	o->replicas = 1;
	o->create = true;
	o->cache_ttl_ms = 60000;
	o->timeout_ms = 5000;
}

orn_rc ks_master_key_load(const char *env_value, const char *data_dir, uint8_t master[PD_KEY_BYTES])
{
	_Static_assert(PD_KEY_BYTES == ORN_SECRET_BYTES, "the master key is a secret of secret.h");
	return orn_secret_load(env_value, data_dir, KS_MASTER_KEY_FILE, master);
}

static orn_rc nats_rc(natsStatus st, jsErrCode jerr)
{
	if (st == NATS_OK)
		return ORN_OK;
	if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
		return ORN_ENOTFOUND;
	return es_status_rc(st, jerr);
}

static orn_rc ensure_stream(ks_store *ks)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus st = js_GetStreamInfo(&si, ks->js, KS_STREAM, NULL, &jerr);
	if (st == NATS_OK) {
		bool ok = si->Config != NULL && si->Config->SubjectsLen == 1 &&
		          strcmp(si->Config->Subjects[0], KS_SUBJECTS) == 0;
		jsStreamInfo_Destroy(si);
		if (!ok)
			log_error("stream exists with another configuration", "stream", KS_STREAM);
		return ok ? ORN_OK : ORN_EINVAL;
	}
	if (st != NATS_NOT_FOUND)
		return nats_rc(st, jerr);
	if (!ks->opt.create)
		return ORN_ENOTFOUND;
	jsStreamConfig cfg;
	jsStreamConfig_Init(&cfg);
	const char *subjects[1] = {KS_SUBJECTS};
	cfg.Name = KS_STREAM;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	cfg.Discard = js_DiscardNew;
	cfg.DenyPurge = true; /* keys go one at a time, by erasure, never in bulk */
	cfg.AllowDirect = true;
	cfg.Replicas = ks->opt.replicas > 0 ? ks->opt.replicas : 1;
	st = js_AddStream(&si, ks->js, &cfg, NULL, &jerr);
	if (st == NATS_OK) {
		jsStreamInfo_Destroy(si);
		log_info("stream created", "stream", KS_STREAM);
		return ORN_OK;
	}
	if (js_GetStreamInfo(&si, ks->js, KS_STREAM, NULL, NULL) == NATS_OK) { /* another starter won */
		jsStreamInfo_Destroy(si);
		return ORN_OK;
	}
	return nats_rc(st, jerr);
}

static jsOptions *call_options(ks_store *ks, jsOptions *o)
{
	jsOptions_Init(o);
	o->Wait = ks->opt.timeout_ms;
	return o;
}

/* The wrapped key at subject (its stream sequence into *seq if not NULL).
 * ORN_ENOTFOUND if the subject has none. */
static orn_rc read_entry(ks_store *ks, const char *subject, uint8_t wrapped[PD_WRAPPED_BYTES], uint64_t *seq)
{
	natsMsg *msg = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	orn_rc rc =
	        nats_rc(js_GetLastMsg(&msg, ks->js, KS_STREAM, subject, call_options(ks, &jo), &jerr), jerr);
	if (rc != ORN_OK)
		return rc;
	if (natsMsg_GetDataLength(msg) != PD_WRAPPED_BYTES) {
		rc = ORN_EDECODE;
	} else {
		memcpy(wrapped, natsMsg_GetData(msg), PD_WRAPPED_BYTES);
		if (seq != NULL)
			*seq = natsMsg_GetSequence(msg);
	}
	natsMsg_Destroy(msg);
	return rc;
}

/* Stores a wrapped key at subject, only if the subject has no message yet.
 * ORN_ECONFLICT if it has one. */
static orn_rc write_entry(ks_store *ks, const char *subject, const uint8_t wrapped[PD_WRAPPED_BYTES])
{
	natsMsg *msg = NULL;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	jsPubOptions po;
	natsStatus st = natsMsg_Create(&msg, subject, NULL, (const char *)wrapped, PD_WRAPPED_BYTES);
	if (st == NATS_OK)
		st = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence", "0");
	jsPubOptions_Init(&po);
	po.MaxWait = ks->opt.timeout_ms;
	if (st == NATS_OK)
		st = js_PublishMsg(&ack, ks->js, msg, &po, &jerr);
	natsMsg_Destroy(msg);
	jsPubAck_Destroy(ack);
	if (st != NATS_OK && jerr == JSStreamWrongLastSequenceErr)
		return ORN_ECONFLICT;
	return nats_rc(st, jerr);
}

/* The key of a fixed entry (master check, index): read and unwrapped, or,
 * when absent and allowed, made, stored and read back (two starters agree
 * on the first one stored). */
static orn_rc fixed_key(ks_store *ks, const char *subject, const char *name, uint8_t key[PD_KEY_BYTES])
{
	uint8_t wrapped[PD_WRAPPED_BYTES], fresh[PD_KEY_BYTES];
	orn_rc rc = read_entry(ks, subject, wrapped, NULL);
	if (rc == ORN_ENOTFOUND && ks->opt.create) {
		randombytes_buf(fresh, sizeof fresh);
		pd_wrap(ks->sec->master, name, fresh, wrapped);
		sodium_memzero(fresh, sizeof fresh);
		rc = write_entry(ks, subject, wrapped);
		if (rc == ORN_OK || rc == ORN_ECONFLICT)
			rc = read_entry(ks, subject, wrapped, NULL);
	}
	if (rc == ORN_OK)
		rc = pd_unwrap(ks->sec->master, name, wrapped, key) == ORN_OK ? ORN_OK : ORN_EINVAL;
	return rc;
}

orn_rc ks_open(es_store *store, const uint8_t master[PD_KEY_BYTES], const ks_options *o, ks_store **out)
{
	uint8_t check[PD_KEY_BYTES];
	ks_store *ks = calloc(1, sizeof *ks);
	orn_rc rc = ORN_ENOMEM;
	*out = NULL;
	if (ks == NULL || sodium_init() < 0 || (ks->sec = sodium_malloc(sizeof *ks->sec)) == NULL)
		goto fail;
	memset(ks->sec, 0, sizeof *ks->sec);
	pthread_mutex_init(&ks->lock, NULL);
	if (o != NULL)
		ks->opt = *o;
	else
		ks_options_init(&ks->opt);
	memcpy(ks->sec->master, master, PD_KEY_BYTES);
	if ((rc = es_status_rc(natsConnection_JetStream(&ks->js, es_store_connection(store), NULL), 0)) !=
	            ORN_OK ||
	    (rc = ensure_stream(ks)) != ORN_OK)
		goto fail;
	rc = fixed_key(ks, SUBJECT_MASTER, "master", check);
	sodium_memzero(check, sizeof check);
	if (rc == ORN_EINVAL)
		log_error("the master key does not open the keystore (ORION_MASTER_KEY or <data "
		          "dir>/master.key)",
		          "stream", KS_STREAM);
	if (rc != ORN_OK || (rc = fixed_key(ks, SUBJECT_INDEX, "index", ks->sec->index)) != ORN_OK)
		goto fail;
	pd_link_key(ks->sec->index, ks->sec->links);
	*out = ks;
	return ORN_OK;
fail:
	ks_close(ks);
	return rc;
}

void ks_close(ks_store *ks)
{
	if (ks == NULL)
		return;
	if (ks->sec != NULL) {
		sodium_free(ks->sec); /* zeroes the pages */
		pthread_mutex_destroy(&ks->lock);
	}
	jsCtx_Destroy(ks->js);
	free(ks);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static cache_slot *slot_of(ks_store *ks, const char *kid)
{
	unsigned long prefix = strtoul(
	        (char[9]){kid[0], kid[1], kid[2], kid[3], kid[4], kid[5], kid[6], kid[7], 0}, NULL, 16);
	return &ks->sec->cache[prefix % CACHE_SLOTS];
}

static bool cache_get(ks_store *ks, const char *kid, uint8_t key[PD_KEY_BYTES])
{
	bool hit = false;
	if (ks->opt.cache_ttl_ms == 0)
		return false;
	pthread_mutex_lock(&ks->lock);
	cache_slot *slot = slot_of(ks, kid);
	if (strcmp(slot->kid, kid) == 0 && now_ms() - slot->loaded_ms < (int64_t)ks->opt.cache_ttl_ms) {
		memcpy(key, slot->key, PD_KEY_BYTES);
		hit = true;
	}
	pthread_mutex_unlock(&ks->lock);
	return hit;
}

bool ks_token_ready(ks_store *ks, const char *token)
{
	char kid[PD_KID_MAX];
	uint8_t key[PD_KEY_BYTES];
	if (!pd_is_sealed(token))
		return true;
	bool ready = pd_token_kid(token, kid) == ORN_OK && cache_get(ks, kid, key);
	sodium_memzero(key, sizeof key);
	return ready;
}

static void cache_put(ks_store *ks, const char *kid, const uint8_t key[PD_KEY_BYTES])
{
	if (ks->opt.cache_ttl_ms == 0)
		return;
	pthread_mutex_lock(&ks->lock);
	cache_slot *slot = slot_of(ks, kid);
	memcpy(slot->kid, kid, PD_KID_MAX);
	memcpy(slot->key, key, PD_KEY_BYTES);
	slot->loaded_ms = now_ms();
	pthread_mutex_unlock(&ks->lock);
}

static void cache_drop(ks_store *ks, const char *kid)
{
	pthread_mutex_lock(&ks->lock);
	cache_slot *slot = slot_of(ks, kid);
	if (strcmp(slot->kid, kid) == 0)
		sodium_memzero(slot, sizeof *slot);
	pthread_mutex_unlock(&ks->lock);
}

static void data_subject(char out[sizeof SUBJECT_DATA + PD_KID_MAX], const char *kid)
{
	snprintf(out, sizeof SUBJECT_DATA + PD_KID_MAX, "%s%s", SUBJECT_DATA, kid);
}

/* Stores key as the data key kid, written once (ORN_ECONFLICT if kid has
 * one); cached when stored, zeroed otherwise. */
static orn_rc store_key(ks_store *ks, const char *kid, uint8_t key[PD_KEY_BYTES])
{
	char subject[sizeof SUBJECT_DATA + PD_KID_MAX];
	uint8_t wrapped[PD_WRAPPED_BYTES];
	data_subject(subject, kid);
	pd_wrap(ks->sec->master, subject, key, wrapped);
	orn_rc rc = write_entry(ks, subject, wrapped);
	if (rc == ORN_OK)
		cache_put(ks, kid, key);
	else
		sodium_memzero(key, PD_KEY_BYTES);
	return rc;
}

orn_rc ks_key_create(ks_store *ks, char kid[PD_KID_MAX], uint8_t key[PD_KEY_BYTES])
{
	pd_key_new(kid, key);
	return store_key(ks, kid, key);
}

orn_rc ks_key_get(ks_store *ks, const char *kid, uint8_t key[PD_KEY_BYTES])
{
	char subject[sizeof SUBJECT_DATA + PD_KID_MAX];
	uint8_t wrapped[PD_WRAPPED_BYTES];
	if (!pd_kid_valid(kid))
		return ORN_EINVAL;
	if (cache_get(ks, kid, key))
		return ORN_OK;
	const char *delay = getenv("ORION_FAULT_KEY_READ_DELAY_MS");
	if (delay != NULL) /* fault tests only: a slow keystore (a far replica, a NATS stall) */
		usleep((useconds_t)strtoul(delay, NULL, 10) * 1000);
	data_subject(subject, kid);
	orn_rc rc = read_entry(ks, subject, wrapped, NULL);
	if (rc == ORN_OK && (rc = pd_unwrap(ks->sec->master, subject, wrapped, key)) == ORN_OK)
		cache_put(ks, kid, key);
	return rc;
}

orn_rc ks_key_for(ks_store *ks, const char *name, char kid[PD_KID_MAX], uint8_t key[PD_KEY_BYTES])
{
	static const char domain[] = "orion.migrate.kid"; /* NUL included: domain and name apart */
	uint8_t hash[PD_KID_LEN / 2];
	crypto_generichash_state st;
	crypto_generichash_init(&st, ks->sec->index, PD_KEY_BYTES, sizeof hash);
	crypto_generichash_update(&st, (const unsigned char *)domain, sizeof domain);
	crypto_generichash_update(&st, (const unsigned char *)name, strlen(name));
	crypto_generichash_final(&st, hash, sizeof hash);
	sodium_bin2hex(kid, PD_KID_MAX, hash, sizeof hash);
	orn_rc rc = ks_key_get(ks, kid, key);
	if (rc != ORN_ENOTFOUND)
		return rc;
	randombytes_buf(key, PD_KEY_BYTES);
	rc = store_key(ks, kid, key);
	return rc == ORN_ECONFLICT ? ks_key_get(ks, kid, key)
	                           : rc; /* stored meanwhile: that one is the key */
}

orn_rc ks_key_destroy(ks_store *ks, const char *kid)
{
	char subject[sizeof SUBJECT_DATA + PD_KID_MAX];
	uint8_t wrapped[PD_WRAPPED_BYTES];
	uint64_t seq = 0;
	jsErrCode jerr = 0;
	jsOptions jo;
	if (!pd_kid_valid(kid))
		return ORN_EINVAL;
	cache_drop(ks, kid);
	data_subject(subject, kid);
	orn_rc rc = read_entry(ks, subject, wrapped, &seq);
	sodium_memzero(wrapped, sizeof wrapped);
	if (rc == ORN_OK || rc == ORN_EDECODE) {
		rc = nats_rc(js_EraseMsg(ks->js, KS_STREAM, seq, call_options(ks, &jo), &jerr), jerr);
		if (rc == ORN_OK)
			log_info("data key destroyed", "kid", kid);
	}
	return rc == ORN_ENOTFOUND ? ORN_OK : rc;
}

void ks_blind_index(ks_store *ks, const char *email, char out[PD_INDEX_MAX])
{
	pd_blind_index(ks->sec->index, email, out);
}

orn_rc ks_link_token(ks_store *ks, const char *purpose, const char *account, const char *request_id,
                     char out[PD_LINK_MAX])
{
	return pd_link_token(ks->sec->links, purpose, account, request_id, out);
}

orn_rc ks_seal(ks_store *ks, const char *kid, const char *field, const char *event_id, const char *plain,
               char *out, size_t cap)
{
	uint8_t key[PD_KEY_BYTES];
	orn_rc rc = ks_key_get(ks, kid, key);
	if (rc == ORN_OK)
		rc = pd_seal(key, kid, field, event_id, plain, strlen(plain), out, cap);
	sodium_memzero(key, sizeof key);
	return rc;
}

orn_rc ks_open_token(ks_store *ks, const char *token, const char *field, const char *expect_event, char *out,
                     size_t cap)
{
	char kid[PD_KID_MAX];
	uint8_t key[PD_KEY_BYTES];
	orn_rc rc;
	if (!pd_is_sealed(token)) {
		if ((size_t)snprintf(out, cap, "%s", token) >= cap) {
			out[0] = '\0';
			return ORN_ETOOBIG;
		}
		return ORN_OK;
	}
	if (cap > 0)
		out[0] = '\0';
	if ((rc = pd_token_kid(token, kid)) == ORN_OK && (rc = ks_key_get(ks, kid, key)) == ORN_OK)
		rc = pd_open(key, token, field, expect_event, out, cap);
	sodium_memzero(key, sizeof key);
	return rc;
}
