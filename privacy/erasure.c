/* erasure.c — the steps of an erasure (see erasure.h). */
#include "erasure.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"
#include "mpack.h"
#include "user.h"

#define COMMAND_TIMEOUT_MS 10000

void er_command_id(char out[ER_COMMAND_ID_MAX], const char *user_key, const char *step)
{
	snprintf(out, ER_COMMAND_ID_MAX, "erase:%s:%s", user_key, step);
}

/* One payload-less command of type to the account, its id that of step. */
static orn_rc step_send(es_store *store, const char *user_key, const char *type, const char *step,
                        bus_reply *r)
{
	char command_id[ER_COMMAND_ID_MAX];
	env_envelope cmd;
	mp_writer *w = mp_writer_create();
	orn_rc rc = w == NULL ? ORN_ENOMEM : ORN_OK;
	er_command_id(command_id, user_key, step);
	if (rc == ORN_OK) {
		mp_write_map(w, 0);
		rc = bus_command_init(&cmd, type, orn_now_ms(), command_id, NULL, "erasure",
		                      mp_writer_data(w), mp_writer_size(w));
	}
	if (rc == ORN_OK)
		rc = bus_send(store, USER_AGGREGATE, user_key, &cmd, COMMAND_TIMEOUT_MS, r);
	mp_writer_destroy(w);
	return rc;
}

/* Reads exists, kid and erasure from a user's view (user_kind's view map). */
static orn_rc read_view(const bus_reply *r, er_account *out)
{
	mp_reader rd;
	uint32_t count = 0;
	memset(out, 0, sizeof *out);
	if (r->view == NULL)
		return ORN_EDECODE;
	mp_reader_init(&rd, r->view, r->view_len);
	if (mp_read_map(&rd, &count) != ORN_OK)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < count; i++) {
		const char *key;
		uint32_t len;
		orn_rc rc = mp_read_str(&rd, &key, &len);
		if (rc == ORN_OK && mp_str_eq(key, len, "kid"))
			rc = mp_read_cstr(&rd, out->kid, sizeof out->kid);
		else if (rc == ORN_OK && mp_str_eq(key, len, "erasure"))
			rc = mp_read_int(&rd, &out->erasure);
		else if (rc == ORN_OK && mp_str_eq(key, len, "exists"))
			rc = mp_read_bool(&rd, &out->exists);
		else if (rc == ORN_OK)
			rc = mp_skip(&rd);
		if (rc != ORN_OK)
			return ORN_EDECODE;
	}
	return ORN_OK;
}

orn_rc er_account_read(es_store *store, const char *user_key, er_account *out)
{
	bus_reply r;
	orn_rc rc = step_send(store, user_key, BUS_CMD_GET, "get", &r);
	memset(out, 0, sizeof *out);
	if (rc == ORN_OK) {
		rc = read_view(&r, out);
		bus_reply_dispose(&r);
	}
	return rc;
}

orn_rc er_request(es_store *store, const char *user_key)
{
	bus_reply r;
	orn_rc rc = step_send(store, user_key, USER_CMD_REQUEST_ERASURE, "request", &r);
	if (rc != ORN_OK)
		return rc;
	rc = r.outcome == BUS_ACCEPTED          ? ORN_OK
	     : strcmp(r.code, "not_found") == 0 ? ORN_ENOTFOUND
	                                        : ORN_EINVAL;
	bus_reply_dispose(&r);
	return rc;
}

orn_rc er_finish(es_store *store, ks_store *keys, const char *user_key, uint64_t *seq)
{
	er_account account;
	bus_reply r;
	/* 2. the data key, as the account names it, destroyed: every sealed field
	 * of the customer is unreadable, everywhere */
	orn_rc rc = er_account_read(store, user_key, &account);
	if (rc == ORN_OK && account.erasure != USER_ERASED && account.kid[0] != '\0')
		rc = ks_key_destroy(keys, account.kid);
	if (rc == ORN_OK && getenv("ORION_FAULT_ERASE_KILL") != NULL &&
	    strcmp(getenv("ORION_FAULT_ERASE_KILL"), "after_key") == 0)
		raise(SIGKILL); /* fault tests only: the crash between the key and CustomerErased */
	/* 3. recorded: CustomerErased, which every read model applies */
	if (rc == ORN_OK &&
	    (rc = step_send(store, user_key, USER_CMD_COMPLETE_ERASURE, "complete", &r)) == ORN_OK) {
		rc = r.outcome == BUS_ACCEPTED ? ORN_OK : ORN_EINVAL;
		if (seq != NULL)
			*seq = r.seq > r.version ? r.seq : r.version;
		bus_reply_dispose(&r);
	}
	return rc;
}
