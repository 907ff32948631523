/* orn.c — descriptions of the status codes. */
#include "orn.h"

#include <stddef.h>

static const struct {
	const char *name;
	const char *text;
} descriptions[ORN_RC_COUNT] = {
        [ORN_OK] = {"OK", "success"},
        [ORN_ENOTFOUND] = {"ENOTFOUND", "not found"},
        [ORN_ECONFLICT] = {"ECONFLICT", "concurrent modification"},
        [ORN_EINVAL] = {"EINVAL", "invalid argument"},
        [ORN_EDECODE] = {"EDECODE", "malformed encoded data"},
        [ORN_ENOMEM] = {"ENOMEM", "out of memory"},
        [ORN_ETIMEOUT] = {"ETIMEOUT", "timed out"},
        [ORN_EUNAVAILABLE] = {"EUNAVAILABLE", "dependency unavailable"},
        [ORN_EIO] = {"EIO", "input/output error"},
        [ORN_ETOOBIG] = {"ETOOBIG", "too large"},
        [ORN_EEXISTS] = {"EEXISTS", "already exists"},
        [ORN_EINTERNAL] = {"EINTERNAL", "internal error"},
};

const char *orn_strerror(orn_rc rc)
{
	if ((unsigned)rc >= ORN_RC_COUNT)
		return "unknown status";
	return descriptions[rc].text;
}

const char *orn_rc_name(orn_rc rc)
{
	if ((unsigned)rc >= ORN_RC_COUNT)
		return "EUNKNOWN";
	return descriptions[rc].name;
}

bool orn_id_valid(const char *id)
{
	size_t n = 0;
	if (id == NULL)
		return false;
	for (; id[n] != '\0'; n++) {
		char c = id[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		          c == '_' || c == '-';
		if (!ok || n >= ORN_ID_MAX)
			return false;
	}
	return n > 0;
}
