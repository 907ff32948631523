/* mail_marks.c — the sent markers of one host (mail-internal.h): the key of
 * each email written right after the server accepted it, in an LMDB
 * environment under the role's state directory. They close the one window the
 * delivery log cannot: a kill between the server's acceptance and the log's
 * MailDelivered. The claims that hold across hosts are the log's (ADR 024). */
#include "mail-internal.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MARKS_MAP_SIZE ((size_t)1 << 30) /* ~10 million markers */

struct mail_marks {
	MDB_env *env;
	MDB_dbi sent;
};

static orn_rc lmdb_rc(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return ORN_OK;
	case MDB_NOTFOUND:
		return ORN_ENOTFOUND;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_READERS_FULL:
		return ORN_ETOOBIG;
	case ENOMEM:
		return ORN_ENOMEM;
	default:
		return ORN_EIO;
	}
}

orn_rc mail_marks_open(const char *dir, mail_marks **out)
{
	MDB_txn *txn = NULL;
	mail_marks *marks = calloc(1, sizeof *marks);
	*out = NULL;
	if (marks == NULL)
		return ORN_ENOMEM;
	int rc = mdb_env_create(&marks->env);
	if (rc == MDB_SUCCESS)
		rc = mdb_env_set_mapsize(marks->env, MARKS_MAP_SIZE);
	if (rc == MDB_SUCCESS)
		rc = mdb_env_set_maxdbs(marks->env, 2);
	if (rc == MDB_SUCCESS)
		/* MDB_NOSYNC: a commit is in the page cache when it returns, which
		 * survives a kill of this process; only a crash of the machine can
		 * lose the last markers (and resend those emails). A synchronous
		 * commit would hold the window between the SMTP server's 250 and the
		 * marker (the only way to send twice) open for an fsync. */
		rc = mdb_env_open(marks->env, dir, MDB_NOTLS | MDB_NOSYNC, 0600);
	if (rc == MDB_SUCCESS)
		rc = mdb_txn_begin(marks->env, NULL, 0, &txn);
	if (rc == MDB_SUCCESS)
		rc = mdb_dbi_open(txn, "sent", MDB_CREATE, &marks->sent);
	if (rc == MDB_SUCCESS) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (rc != MDB_SUCCESS) {
		log_error("mail cannot open its sent markers", "dir", dir, "error", mdb_strerror(rc));
		mail_marks_close(marks);
		return ORN_EIO;
	}
	*out = marks;
	return ORN_OK;
}

void mail_marks_close(mail_marks *marks)
{
	if (marks == NULL)
		return;
	if (marks->env != NULL)
		mdb_env_close(marks->env);
	free(marks);
}

orn_rc mail_marks_get(mail_marks *marks, const char *key, int64_t *sent_ms)
{
	MDB_txn *txn = NULL;
	MDB_val k = {strlen(key), (void *)key}, v;
	int rc = mdb_txn_begin(marks->env, NULL, MDB_RDONLY, &txn);
	*sent_ms = 0;
	if (rc == MDB_SUCCESS) {
		rc = mdb_get(txn, marks->sent, &k, &v);
		if (rc == MDB_SUCCESS && v.mv_size == 16)
			memcpy(sent_ms, (const uint8_t *)v.mv_data + 8, 8);
		mdb_txn_abort(txn);
	}
	return lmdb_rc(rc);
}

orn_rc mail_marks_put(mail_marks *marks, const char *key, uint64_t seq, int64_t sent_ms)
{
	MDB_txn *txn = NULL;
	uint8_t value[16];
	memcpy(value, &seq, 8);
	memcpy(value + 8, &sent_ms, 8);
	MDB_val k = {strlen(key), (void *)key}, v = {sizeof value, value};
	int rc = mdb_txn_begin(marks->env, NULL, 0, &txn);
	if (rc == MDB_SUCCESS) {
		rc = mdb_put(txn, marks->sent, &k, &v, 0);
		if (rc == MDB_SUCCESS)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	return lmdb_rc(rc);
}
