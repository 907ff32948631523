/* secret.c — secrets from the environment or a private file (secret.h). */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define PATH_BUFFER 1024

static orn_rc secret_from_env(const char *value, unsigned char secret[ORN_SECRET_BYTES])
{
	size_t len = strlen(value), bin_len = 0;
	const char *end = NULL;
	if (len == 2 * ORN_SECRET_BYTES &&
	    sodium_hex2bin(secret, ORN_SECRET_BYTES, value, len, NULL, &bin_len, &end) == 0 &&
	    bin_len == ORN_SECRET_BYTES && end == value + len)
		return ORN_OK;
	if (len < ORN_SECRET_BYTES)
		return ORN_EINVAL;
	crypto_generichash(secret, ORN_SECRET_BYTES, (const unsigned char *)value, len, NULL, 0);
	return ORN_OK;
}

/* Reads an existing key file; ORN_ENOTFOUND if there is none. */
static orn_rc secret_read(const char *path, unsigned char secret[ORN_SECRET_BYTES])
{
	struct stat st;
	orn_rc rc = ORN_EINVAL;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? ORN_ENOTFOUND : ORN_EIO;
	if (fstat(fd, &st) != 0) {
		rc = ORN_EIO;
		goto done;
	}
	if (!S_ISREG(st.st_mode) || st.st_size != ORN_SECRET_BYTES || (st.st_mode & 077) != 0)
		goto done;
	if (read(fd, secret, ORN_SECRET_BYTES) != ORN_SECRET_BYTES) {
		rc = ORN_EIO;
		goto done;
	}
	rc = ORN_OK;
done:
	close(fd);
	return rc;
}

/* Writes a fresh key to a private temporary file and links it into place, so
 * a reader never sees a partial file and two starters agree on one key. */
static orn_rc secret_create(const char *path, unsigned char secret[ORN_SECRET_BYTES])
{
	char tmp[PATH_BUFFER + 48];
	orn_rc rc = ORN_EIO;
	unsigned char key[ORN_SECRET_BYTES];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%ld.%08x.tmp", path, (long)getpid(),
	                     randombytes_random()) >= sizeof(tmp))
		return ORN_EINVAL;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return ORN_EIO;
	randombytes_buf(key, sizeof(key));
	bool written = write(fd, key, sizeof(key)) == (ssize_t)sizeof(key) && fsync(fd) == 0;
	if (close(fd) != 0)
		written = false;
	if (written && link(tmp, path) == 0) {
		memcpy(secret, key, sizeof(key));
		rc = ORN_OK;
	} else if (written && errno == EEXIST) {
		rc = secret_read(path, secret); /* somebody else won the race */
	}
	unlink(tmp);
	sodium_memzero(key, sizeof(key));
	return rc;
}

orn_rc orn_secret_load(const char *env_value, const char *dir, const char *file,
                       unsigned char out[ORN_SECRET_BYTES])
{
	char path[PATH_BUFFER];
	if (sodium_init() < 0)
		return ORN_EINTERNAL;
	if (env_value && env_value[0])
		return secret_from_env(env_value, out);
	if (!dir || !dir[0] || !file || !file[0])
		return ORN_EINVAL;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
		return ORN_EINVAL;
	orn_rc rc = secret_read(path, out);
	if (rc != ORN_ENOTFOUND)
		return rc;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return ORN_EIO;
	return secret_create(path, out);
}
