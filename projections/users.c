/* users.c — the users read model (see users.h).
 *
 * Sub-databases (schemas/read-models.md):
 *   users.by_key      email key -> record (role, last seq, user_id, email, name, password hash)
 *   users.by_user_id  public user_id -> email key
 *   users.revoked     token id (jti) -> its expiry (u64 LE, seconds): tokens ended one by one
 *   users.revoked_by_exp  expiry (u64 BE) + jti -> "": prunes revoked tokens once they expired
 *
 * The record is rebuilt with user_evolve, the aggregate's own fold, so the
 * model and the aggregate agree on what every event means. */
#include "users.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "evstore.h"
#include "log.h"
#include "proj_internal.h"

#define BY_KEY_DB      "users.by_key"
#define BY_USER_ID_DB  "users.by_user_id"
#define SUBJECT_PREFIX "orion.evt." USER_AGGREGATE "."

#define REVOKED_DB        "users.revoked"
#define REVOKED_BY_EXP_DB "users.revoked_by_exp"
#define PRUNE_MAX         16 /* expired revocations dropped per revocation applied */

/* Record, format 3 (ADR 027): a 24-byte header, then user_id, email, name,
 * password hash (the last three sealed tokens, as the events hold them), kid
 * (no NULs), then the token version, u64 LE. Header: format, role, erasure,
 * flags (bit 0: the address is not verified yet, ADR 031; 0 in records
 * written before it: verified), the five text lengths as u16 LE, 2 zero bytes, last seq u64
 * LE. Formats 1 and 2 (a 16-byte header with one-byte lengths of the first
 * four texts, format 2 with the token version after them) still decode:
 * models built before ADR 027 are read until rebuilt. */
#define RECORD_FORMAT   3
#define FLAG_UNVERIFIED 0x01
#define RECORD_HEADER   24
#define OLD_HEADER      16
#define RECORD_TEXTS    5
#define RECORD_MAX      (RECORD_HEADER + USER_ID_MAX + 3 * USER_SEALED_MAX + PD_KID_MAX + 8)

struct proj_users {
	proj_model base; /* first: proj_model_create and _destroy take the model */
	MDB_dbi by_key;
	MDB_dbi by_user_id;
	MDB_dbi revoked, revoked_by_exp;
};

/* ---- records ---- */

static size_t record_encode(const user_state *s, uint64_t seq, uint8_t out[RECORD_MAX])
{
	const user_fields *f = &s->fields;
	const char *texts[RECORD_TEXTS] = {f->user_id, f->email, f->name, f->password_hash, f->kid};
	size_t n = RECORD_HEADER;
	memset(out, 0, RECORD_HEADER);
	out[0] = RECORD_FORMAT;
	out[1] = (uint8_t)f->role;
	out[2] = (uint8_t)s->erasure;
	out[3] = s->fields.unverified ? FLAG_UNVERIFIED : 0;
	proj_put_u64(out + 16, seq);
	for (size_t i = 0; i < RECORD_TEXTS; i++) {
		size_t len = strlen(texts[i]);
		out[4 + 2 * i] = (uint8_t)(len & 0xff);
		out[5 + 2 * i] = (uint8_t)(len >> 8);
		memcpy(out + n, texts[i], len);
		n += len;
	}
	proj_put_u64(out + n, (uint64_t)f->token_version);
	return n + 8;
}

/* ORN_EDECODE for anything record_encode (or an earlier format) did not write. */
static orn_rc record_decode(const void *buf, size_t len, user_state *s, uint64_t *seq)
{
	const uint8_t *b = buf;
	user_fields *f = &s->fields;
	char *texts[RECORD_TEXTS] = {f->user_id, f->email, f->name, f->password_hash, f->kid};
	const size_t caps[RECORD_TEXTS] = {sizeof f->user_id, sizeof f->email, sizeof f->name,
	                                   sizeof f->password_hash, sizeof f->kid};
	size_t lengths[RECORD_TEXTS] = {0}, texts_end, n, count = RECORD_TEXTS;
	bool current = len >= RECORD_HEADER && b[0] == RECORD_FORMAT;
	user_state_init(s); /* no stale bytes after the texts reach a caller */
	if (!current && (len < OLD_HEADER || (b[0] != 1 && b[0] != 2)))
		return ORN_EDECODE;
	n = current ? RECORD_HEADER : OLD_HEADER;
	count = current ? RECORD_TEXTS : 4;
	texts_end = n;
	for (size_t i = 0; i < count; i++)
		texts_end += lengths[i] =
		        current ? (size_t)b[4 + 2 * i] | (size_t)b[5 + 2 * i] << 8 : b[2 + i];
	bool versioned = b[0] != 1;
	if (user_role_name((user_role)b[1]) == NULL || len != texts_end + (versioned ? 8 : 0) ||
	    (current && (b[2] > USER_ERASED || (b[3] & ~FLAG_UNVERIFIED) != 0)))
		return ORN_EDECODE;
	if (versioned && (f->token_version = (int64_t)proj_get_u64(b + texts_end)) < 0)
		return ORN_EDECODE;
	for (size_t i = 0; i < count; i++) {
		if (lengths[i] >= caps[i] || memchr(b + n, '\0', lengths[i]) != NULL)
			return ORN_EDECODE;
		memcpy(texts[i], b + n, lengths[i]);
		texts[i][lengths[i]] = '\0';
		n += lengths[i];
	}
	f->role = (user_role)b[1];
	s->exists = true;
	s->erasure = current ? (user_erasure)b[2] : USER_ACTIVE;
	f->unverified = current && (b[3] & FLAG_UNVERIFIED) != 0;
	*seq = proj_get_u64(b + (current ? 16 : 8));
	return ORN_OK;
}

static orn_rc read_record(MDB_txn *txn, proj_users *users, const char *key, size_t key_len, user_state *s,
                          uint64_t *seq)
{
	MDB_val v;
	orn_rc rc = proj_get(txn, users->by_key, key, key_len, &v);
	if (rc == ORN_OK)
		rc = record_decode(v.mv_data, v.mv_size, s, seq);
	return rc;
}

/* ---- applying user events ---- */

static orn_rc users_open(void *self, proj_txn *t)
{
	static const proj_dbi_spec dbis[] = {
	        {BY_KEY_DB, 0, offsetof(proj_users, by_key)},
	        {BY_USER_ID_DB, 0, offsetof(proj_users, by_user_id)},
	        {REVOKED_DB, 0, offsetof(proj_users, revoked)},
	        {REVOKED_BY_EXP_DB, 0, offsetof(proj_users, revoked_by_exp)},
	};

	return proj_dbis_open(t, self, dbis, ORN_ARRAY_LEN(dbis));
}

/* Removes the user_id -> key entry of before if it names this key and after moved away from it. */
static orn_rc remove_user_id(proj_txn *t, proj_users *users, const char *key, size_t key_len,
                             const user_state *before, const user_state *after)
{
	MDB_val v;
	const char *old_id = before->fields.user_id;
	if (!before->exists || strcmp(old_id, after->fields.user_id) == 0)
		return ORN_OK;
	orn_rc rc = proj_get(t->txn, users->by_user_id, old_id, strlen(old_id), &v);
	if (rc == ORN_ENOTFOUND || (rc == ORN_OK && proj_bytes_cmp(v.mv_data, v.mv_size, key, key_len) != 0))
		return ORN_OK;
	if (rc == ORN_OK)
		rc = proj_del(t, users->by_user_id, old_id, strlen(old_id), NULL, 0);
	return rc;
}

/* The by-expiry key of a revoked token: expiry (u64 BE), then the jti. */
static size_t expiry_key(int64_t expires_at, const char *jti, uint8_t out[8 + USER_JTI_MAX])
{
	size_t len = strlen(jti);
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)((uint64_t)expires_at >> (56 - 8 * i));
	memcpy(out + 8, jti, len);
	return 8 + len;
}

/* Drops up to PRUNE_MAX revocations whose token expired before now_s: such a
 * token is refused by its expiry anyway. */
static orn_rc prune_revoked(proj_txn *t, proj_users *users, int64_t now_s)
{
	uint8_t keys[PRUNE_MAX][8 + USER_JTI_MAX];
	size_t lens[PRUNE_MAX], n = 0;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int mrc = mdb_cursor_open(t->txn, users->revoked_by_exp, &cur);
	if (mrc != 0)
		return proj_rc(mrc);
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && n < PRUNE_MAX;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		int64_t expires_at = 0;
		if (k.mv_size < 8 || k.mv_size > sizeof keys[0])
			break;
		for (int i = 0; i < 8; i++)
			expires_at = (int64_t)((uint64_t)expires_at << 8 | ((const uint8_t *)k.mv_data)[i]);
		if (expires_at >= now_s)
			break;
		memcpy(keys[n], k.mv_data, k.mv_size);
		lens[n++] = k.mv_size;
	}
	mdb_cursor_close(cur);
	orn_rc rc = ORN_OK;
	for (size_t i = 0; i < n && rc == ORN_OK; i++) {
		rc = proj_del(t, users->revoked_by_exp, keys[i], lens[i], NULL, 0);
		if (rc == ORN_OK || rc == ORN_ENOTFOUND)
			rc = proj_del(t, users->revoked, keys[i] + 8, lens[i] - 8, NULL, 0);
		if (rc == ORN_ENOTFOUND)
			rc = ORN_OK;
	}
	return rc;
}

/* TokenRevoked: the token is refused from now on, until it would expire anyway. */
static orn_rc apply_token_revoked(proj_txn *t, proj_users *users, const user_event *ev, int64_t time_ms)
{
	uint8_t value[8], key[8 + USER_JTI_MAX];
	proj_put_u64(value, (uint64_t)ev->fields.expires_at);
	orn_rc rc =
	        proj_put(t, users->revoked, ev->fields.jti, strlen(ev->fields.jti), value, sizeof value, 0);
	if (rc == ORN_OK)
		rc = proj_put(t, users->revoked_by_exp, key,
		              expiry_key(ev->fields.expires_at, ev->fields.jti, key), "", 0, 0);
	if (rc == ORN_OK)
		rc = prune_revoked(t, users, time_ms / 1000);
	return rc;
}

static orn_rc users_apply(void *self, proj_txn *t, uint64_t seq, const char *subject, const env_envelope *e)
{
	proj_users *users = self;
	const char *key = subject + strlen(SUBJECT_PREFIX);
	user_event ev;
	user_state before = {0}, after;
	uint8_t record[RECORD_MAX];
	uint64_t old_seq = 0;

	if (strncmp(subject, SUBJECT_PREFIX, strlen(SUBJECT_PREFIX)) != 0 || !es_id_valid(key) ||
	    (strcmp(e->type, USER_EV_REGISTERED) != 0 && strcmp(e->type, USER_EV_ROLE_CHANGED) != 0 &&
	     strcmp(e->type, USER_EV_TOKEN_REVOKED) != 0 && strcmp(e->type, USER_EV_TOKENS_REVOKED) != 0 &&
	     strcmp(e->type, USER_EV_PASSWORD_CHANGED) != 0 && strcmp(e->type, USER_EV_EMAIL_VERIFIED) != 0 &&
	     strcmp(e->type, USER_EV_PASSWORD_RESET) != 0 &&
	     strcmp(e->type, USER_EV_ERASURE_REQUESTED) != 0 && strcmp(e->type, USER_EV_ERASED) != 0))
		return ORN_OK; /* not ours, or a type of a later version: nothing to do */
	if (user_event_decode(e->type, e->payload, e->payload_len, &ev) != ORN_OK) {
		proj_model_skip(&users->base, "users skips an undecodable user event", seq, subject, e->type);
		return ORN_OK;
	}
	if (ev.kind == USER_TOKEN_REVOKED)
		return apply_token_revoked(t, users, &ev, e->time_ms);
	size_t key_len = strlen(key);
	user_state_init(&before);
	orn_rc rc = read_record(t->txn, users, key, key_len, &before, &old_seq);
	if (rc == ORN_EDECODE) {
		user_state_init(&before);
		proj_log_skip("users record unreadable; rebuilt from this event", seq, subject, e->type);
	} else if (rc != ORN_OK && rc != ORN_ENOTFOUND) {
		return rc;
	}
	after = before;
	user_evolve(&after, &ev);
	if (!after.exists)
		return ORN_OK; /* a role change of a user never registered */
	rc = remove_user_id(t, users, key, key_len, &before, &after);
	if (rc == ORN_OK)
		rc = proj_put(t, users->by_user_id, after.fields.user_id, strlen(after.fields.user_id), key,
		              key_len, 0);
	if (rc == ORN_OK) {
		size_t n = record_encode(&after, seq, record); /* erased: the tokens are gone from the row */
		rc = proj_put(t, users->by_key, key, key_len, record, n, 0);
	}
	return rc;
}

PROJ_MODEL_FUNCTIONS(proj_users, PROJ_USERS_NAME, PROJ_USERS_FILTER, users_open, users_apply);

/* ---- queries ---- */

static orn_rc get_in_txn(MDB_txn *txn, proj_users *users, const char *key, size_t key_len, proj_user *out)
{
	user_state s;
	const user_fields *f = &s.fields;
	uint64_t seq = 0;
	orn_rc rc = read_record(txn, users, key, key_len, &s, &seq);
	if (rc != ORN_OK)
		return rc;
	memcpy(out->key, key, key_len);
	out->key[key_len] = '\0';
	memcpy(out->user_id, f->user_id, sizeof out->user_id);
	memcpy(out->email, f->email, sizeof out->email);
	memcpy(out->name, f->name, sizeof out->name);
	out->role = f->role;
	memcpy(out->password_hash, f->password_hash, sizeof out->password_hash);
	memcpy(out->kid, f->kid, sizeof out->kid);
	out->erasure = s.erasure;
	out->version = seq;
	out->token_version = f->token_version;
	out->verified = !f->unverified;
	sodium_memzero(&s, sizeof s);
	return ORN_OK;
}

orn_rc proj_users_get_by_key(proj_users *users, const char *key, proj_user *out)
{
	MDB_txn *txn = NULL;
	orn_rc rc = key != NULL && es_id_valid(key) ? ORN_OK : ORN_EINVAL;
	if (rc != ORN_OK)
		return rc;
	if ((rc = proj_env_read_begin(users->base.env, &txn)) != ORN_OK)
		return rc;
	rc = get_in_txn(txn, users, key, strlen(key), out);
	proj_env_read_end(users->base.env, txn);
	return rc;
}

static orn_rc get_by_id_in_txn(MDB_txn *txn, proj_users *users, const char *user_id, proj_user *out)
{
	MDB_val v;
	char key[USER_KEY_MAX];
	orn_rc rc = proj_get(txn, users->by_user_id, user_id, strlen(user_id), &v);
	if (rc == ORN_OK && (v.mv_size == 0 || v.mv_size >= sizeof key))
		rc = ORN_EDECODE;
	if (rc == ORN_OK) {
		memcpy(key, v.mv_data, v.mv_size);
		rc = get_in_txn(txn, users, key, v.mv_size, out);
	}
	return rc;
}

orn_rc proj_users_get_by_id(proj_users *users, const char *user_id, proj_user *out)
{
	MDB_txn *txn = NULL;
	if (!orn_id_valid(user_id))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(users->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	rc = get_by_id_in_txn(txn, users, user_id, out);
	proj_env_read_end(users->base.env, txn);
	return rc;
}

orn_rc proj_users_check_token(proj_users *users, const char *user_id, const char *jti, proj_user *out,
                              bool *revoked)
{
	MDB_txn *txn = NULL;
	MDB_val v;
	*revoked = false;
	if (!orn_id_valid(user_id) || jti == NULL || !orn_id_valid(jti))
		return ORN_EINVAL;
	orn_rc rc = proj_env_read_begin(users->base.env, &txn);
	if (rc != ORN_OK)
		return rc;
	rc = get_by_id_in_txn(txn, users, user_id, out);
	if (rc == ORN_OK && out->erasure != USER_ACTIVE)
		rc = ORN_ENOTFOUND; /* asked to be erased: every token of the account ends (ADR 027) */
	if (rc == ORN_OK) {
		orn_rc found = proj_get(txn, users->revoked, jti, strlen(jti), &v);
		if (found == ORN_OK)
			*revoked = true;
		else if (found != ORN_ENOTFOUND)
			rc = found;
	}
	proj_env_read_end(users->base.env, txn);
	return rc;
}
