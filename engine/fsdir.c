/* fsdir.c — mkdir -p (see fsdir.h). */
#include "fsdir.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DIR_MODE 0700

/* Makes one directory; an existing directory is fine, anything else there is not. */
static orn_rc make_one(const char *path)
{
	struct stat st;
	if (mkdir(path, DIR_MODE) == 0)
		return ORN_OK;
	if (errno != EEXIST)
		return ORN_EIO;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? ORN_OK : ORN_EIO;
}

orn_rc orn_make_dirs(const char *path)
{
	orn_rc rc = ORN_OK;
	char *copy;

	if (path == NULL || path[0] == '\0')
		return ORN_EINVAL;
	copy = strdup(path);
	if (copy == NULL)
		return ORN_ENOMEM;
	/* Each parent in turn ("/a", "/a/b", ...), then the whole path. */
	for (char *p = copy + 1; rc == ORN_OK && *p != '\0'; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		rc = make_one(copy);
		*p = '/';
	}
	if (rc == ORN_OK)
		rc = make_one(copy);
	free(copy);
	return rc;
}
