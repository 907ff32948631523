/* proj_gen.c — generations of the read model environment (see proj_gen.h). */
#include "proj_gen.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LINK_NAME  "lmdb"
#define GEN_PREFIX "lmdb."
#define BUILDING   ".building"
#define LOCK_NAME  "lmdb-generations.lock" /* held while generations are swept or published */

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_generation_name(const char *base)
{
	return strncmp(base, GEN_PREFIX, strlen(GEN_PREFIX)) == 0 && base[strlen(GEN_PREFIX)] != '\0' &&
	       strchr(base, '/') == NULL;
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

void proj_env_remove_dir(const char *dir)
{
	char file[PATH_MAX + 16];
	static const char *const files[] = {"data.mdb", "lock.mdb"};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(file, sizeof file, "%s/%s", dir, files[i]);
		unlink(file);
	}
	if (rmdir(dir) != 0 && errno != ENOENT)
		log_warn("cannot remove a read model directory", "path", dir, "error", strerror(errno));
}

void proj_gen_retire(const char *dir)
{
	const char *slash = strrchr(dir, '/');
	if (is_generation_name(slash != NULL ? slash + 1 : dir))
		proj_env_remove_dir(dir);
}

/* The pid in "lmdb.<id>.<pid>.building", 0 if none. */
static pid_t builder_pid(const char *base)
{
	char copy[NAME_MAX + 1];
	snprintf(copy, sizeof copy, "%s", base);
	copy[strlen(copy) - strlen(BUILDING)] = '\0';
	const char *dot = strrchr(copy, '.');
	return dot != NULL ? (pid_t)strtol(dot + 1, NULL, 10) : 0;
}

/* Takes the data directory's generations lock (flock, released when the
 * returned descriptor is closed, or with the process): a sweep never runs
 * between a publish's rename and its link swap, where the fresh generation
 * is neither a build nor the link's target. -1 if it cannot be had. */
static int lock_generations(const char *data_dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", data_dir, LOCK_NAME);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		log_error("cannot open the read model generations lock", "path", path, "error",
		          strerror(errno));
		return -1;
	}
	while (flock(fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* Removes generations other than current and abandoned builds. */
static void sweep(const char *data_dir, const char *current)
{
	DIR *d = opendir(data_dir);
	struct dirent *e;
	char path[PATH_MAX];
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		if (!is_generation_name(e->d_name) || strcmp(e->d_name, current) == 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", data_dir, e->d_name);
		if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode))
			continue;
		if (ends_with(e->d_name, BUILDING)) {
			pid_t pid = builder_pid(e->d_name);
			if (pid > 0 && (kill(pid, 0) == 0 || errno == EPERM))
				continue; /* still being built */
		}
		log_info("removing an unused read model generation", "path", path);
		proj_gen_retire(path);
	}
	closedir(d);
}

static orn_rc point_link(const char *data_dir, const char *base)
{
	char tmp[PATH_MAX], link[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s/%s.tmp-%ld", data_dir, LINK_NAME, (long)getpid());
	snprintf(link, sizeof link, "%s/%s", data_dir, LINK_NAME);
	unlink(tmp);
	if (symlink(base, tmp) != 0 || rename(tmp, link) != 0) {
		log_error("cannot point the read model link", "path", link, "error", strerror(errno));
		unlink(tmp);
		return ORN_EIO;
	}
	fsync_dir(data_dir);
	return ORN_OK;
}

static void generation_name(char *out, size_t cap, const char *suffix)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(out, cap, "%s%lld%09ld%s", GEN_PREFIX, (long long)ts.tv_sec, ts.tv_nsec, suffix);
}

orn_rc proj_gen_prepare(const char *data_dir, char *link, size_t cap)
{
	char target[NAME_MAX + 1], path[PATH_MAX];
	struct stat st;
	if ((size_t)snprintf(link, cap, "%s/%s", data_dir, LINK_NAME) >= cap)
		return ORN_ETOOBIG;
	if (lstat(link, &st) == 0 && S_ISDIR(st.st_mode)) {
		/* the layout before generations: the directory becomes generation 0 */
		snprintf(path, sizeof path, "%s/%s0", data_dir, GEN_PREFIX);
		if (rename(link, path) != 0 || point_link(data_dir, GEN_PREFIX "0") != ORN_OK) {
			log_error("cannot move the read models into a generation", "path", link, "error",
			          strerror(errno));
			return ORN_EIO;
		}
	} else if (lstat(link, &st) != 0) {
		generation_name(target, sizeof target, "");
		snprintf(path, sizeof path, "%s/%s", data_dir, target);
		if (mkdir(path, 0750) != 0 || point_link(data_dir, target) != ORN_OK)
			return ORN_EIO;
	} else if (!S_ISLNK(st.st_mode)) {
		log_error("the read model path is neither a directory nor a link", "path", link);
		return ORN_EIO;
	}
	int lock = lock_generations(data_dir);
	ssize_t n = readlink(link, target, sizeof target - 1);
	if (lock < 0 || n <= 0) {
		if (lock >= 0)
			close(lock);
		return ORN_EIO;
	}
	target[n] = '\0';
	sweep(data_dir, target);
	close(lock);
	return ORN_OK;
}

orn_rc proj_gen_create(const char *data_dir, char *dir, size_t cap)
{
	char base[NAME_MAX + 1], suffix[48];
	snprintf(suffix, sizeof suffix, ".%ld%s", (long)getpid(), BUILDING);
	generation_name(base, sizeof base, suffix);
	if ((size_t)snprintf(dir, cap, "%s/%s", data_dir, base) >= cap)
		return ORN_ETOOBIG;
	if (mkdir(dir, 0750) != 0) {
		log_error("cannot create a read model generation", "path", dir, "error", strerror(errno));
		return ORN_EIO;
	}
	return ORN_OK;
}

orn_rc proj_gen_publish(const char *data_dir, const char *dir)
{
	char final[PATH_MAX];
	const char *slash = strrchr(dir, '/');
	const char *base = slash != NULL ? slash + 1 : dir;
	if (!ends_with(base, BUILDING) || strlen(dir) >= sizeof final)
		return ORN_EINVAL;
	snprintf(final, sizeof final, "%s", dir);
	final[strlen(final) - strlen(BUILDING)] = '\0';
	int lock = lock_generations(data_dir);
	if (lock < 0)
		return ORN_EIO;
	orn_rc rc = ORN_EIO;
	if (rename(dir, final) != 0) {
		log_error("cannot complete a read model generation", "path", dir, "error", strerror(errno));
		goto done;
	}
	slash = strrchr(final, '/');
	rc = point_link(data_dir, slash != NULL ? slash + 1 : final);
done:
	close(lock);
	return rc;
}
