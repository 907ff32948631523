/* gw_static.c — the web pages' static files, read once and served from
 * memory (gw_static.h). */
#include "gw_static.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <zlib.h>

#include "log.h"

#define URL_MAX  512
#define ETAG_LEN (2 + 32) /* quotes and 16 bytes in hex */
#define CSP_MAX  (sizeof(GW_STATIC_CSP_HEAD) + 300)
#define GZIP_MIN 256 /* smaller files are sent as they are: the headers would outweigh the gain */

/* The pages a browser may open directly (history routing): under each
 * app's base, "<base><name>" and "<base><name>/<one segment>" answer the
 * app's index.html. The storefront is at "/", the admin console at
 * "/admin/" (its base comes first: "/admin/orders" is the console's). */
static const char *const shop_routes[] = {"products",       "cart",   "checkout", "login",
                                          "register",       "orders", "confirm",  "forgot-password",
                                          "reset-password", NULL};
static const char *const console_routes[] = {"login", "products", "inventory", "orders", "mail", NULL};
static const struct {
	const char *base, *index;
	const char *const *routes;
} apps[] = {
        {"/admin/", "/admin/index.html", console_routes},
        {"/", "/index.html", shop_routes},
};

typedef struct static_file {
	char url[URL_MAX]; /* "/app.js", "/admin/index.html" */
	const char *type;
	char etag[ETAG_LEN + 1];
	unsigned char *body;
	size_t len;
	/* the gzip copy (NULL if the type does not compress or it gained under 10 %),
	 * with an ETag of its own: another representation (RFC 9110 8.8.3) */
	unsigned char *gz;
	size_t gz_len;
	char gz_etag[ETAG_LEN + 4];
} static_file;

struct gw_static {
	static_file *files;
	size_t count;
	size_t total;
	char csp[CSP_MAX];
};

static const struct {
	const char *ext, *type;
} types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".webp", "image/webp"},
        {".woff2", "font/woff2"},
        {".txt", "text/plain; charset=utf-8"},
};

static const char *type_of(const char *name)
{
	const char *dot = strrchr(name, '.');
	if (dot != NULL)
		for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
			if (strcmp(dot, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

static bool name_ok(const char *name)
{
	if (name[0] == '\0' || name[0] == '.')
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

static orn_rc read_fd(int fd, size_t size, unsigned char **out)
{
	unsigned char *body = malloc(size > 0 ? size : 1);
	size_t got = 0;
	if (body == NULL)
		return ORN_ENOMEM;
	while (got < size) {
		ssize_t n = read(fd, body + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(body);
			return ORN_EIO;
		}
		got += (size_t)n;
	}
	*out = body;
	return ORN_OK;
}

static bool compressible(const char *type)
{
	return strncmp(type, "text/", 5) == 0 || strcmp(type, "application/json") == 0 ||
	       strcmp(type, "image/svg+xml") == 0;
}

/* Makes f's gzip copy when it pays (level 9, once at start; the header's
 * time is 0, so the bytes and their ETag depend on the content alone). */
static orn_rc add_gzip(static_file *f)
{
	z_stream z;
	if (f->len < GZIP_MIN || !compressible(f->type))
		return ORN_OK;
	memset(&z, 0, sizeof z);
	if (deflateInit2(&z, 9, Z_DEFLATED, MAX_WBITS + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		return ORN_ENOMEM;
	uLong cap = deflateBound(&z, (uLong)f->len);
	unsigned char *out = malloc(cap);
	int zrc = Z_MEM_ERROR;
	if (out != NULL) {
		z.next_in = f->body;
		z.avail_in = (uInt)f->len;
		z.next_out = out;
		z.avail_out = (uInt)cap;
		zrc = deflate(&z, Z_FINISH);
	}
	size_t n = z.total_out;
	deflateEnd(&z);
	if (zrc != Z_STREAM_END || n * 10 > f->len * 9) {
		free(out);
		return zrc == Z_STREAM_END ? ORN_OK : ORN_ENOMEM;
	}
	f->gz = out;
	f->gz_len = n;
	snprintf(f->gz_etag, sizeof f->gz_etag, "%.*s-gz\"", ETAG_LEN - 1, f->etag);
	return ORN_OK;
}

static orn_rc add_file(gw_static *st, int dirfd, const char *name, const char *url)
{
	struct stat sb;
	orn_rc rc;
	if (st->count == GW_STATIC_FILES_MAX)
		return ORN_ETOOBIG;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return ORN_EIO;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return ORN_OK; /* not a regular file: skipped */
	}
	if ((size_t)sb.st_size > GW_STATIC_FILE_MAX || st->total + (size_t)sb.st_size > GW_STATIC_TOTAL_MAX) {
		close(fd);
		return ORN_ETOOBIG;
	}
	static_file *f = &st->files[st->count];
	memset(f, 0, sizeof *f);
	rc = read_fd(fd, (size_t)sb.st_size, &f->body);
	close(fd);
	if (rc != ORN_OK)
		return rc;
	f->len = (size_t)sb.st_size;
	snprintf(f->url, sizeof f->url, "%s", url);
	f->type = type_of(name);
	unsigned char hash[16];
	crypto_generichash(hash, sizeof hash, f->body, f->len, NULL, 0);
	f->etag[0] = '"';
	sodium_bin2hex(f->etag + 1, 33, hash, sizeof hash);
	f->etag[ETAG_LEN - 1] = '"';
	f->etag[ETAG_LEN] = '\0';
	if ((rc = add_gzip(f)) != ORN_OK) {
		free(f->body);
		return rc;
	}
	st->total += f->len;
	st->count++;
	return ORN_OK;
}

static orn_rc walk(gw_static *st, int dirfd, const char *prefix, int depth)
{
	orn_rc rc = ORN_OK;
	DIR *d = fdopendir(dirfd);
	if (d == NULL) {
		close(dirfd);
		return ORN_EIO;
	}
	struct dirent *e;
	while (rc == ORN_OK && (e = readdir(d)) != NULL) {
		char url[URL_MAX];
		struct stat sb;
		if (!name_ok(e->d_name))
			continue;
		if ((size_t)snprintf(url, sizeof url, "%s/%s", prefix, e->d_name) >= sizeof url)
			continue;
		if (fstatat(dirfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			if (depth >= GW_STATIC_DEPTH)
				continue;
			int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				continue;
			rc = walk(st, sub, url, depth + 1);
		} else if (S_ISREG(sb.st_mode)) {
			rc = add_file(st, dirfd, e->d_name, url);
		}
	}
	closedir(d);
	return rc;
}

/* Copies provider_url's origin ("https://host:port") into out; false if it
 * is not one. */
static bool origin_of(const char *url, char *out, size_t cap)
{
	size_t scheme = strncmp(url, "https://", 8) == 0 ? 8 : strncmp(url, "http://", 7) == 0 ? 7 : 0;
	if (scheme == 0)
		return false;
	size_t end = scheme;
	while (url[end] != '\0' && url[end] != '/' && url[end] != '?' && url[end] != '#') {
		char c = url[end];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
			return false;
		end++;
	}
	if (end == scheme || end >= cap)
		return false;
	memcpy(out, url, end);
	out[end] = '\0';
	return true;
}

orn_rc gw_static_create(const char *root, const char *provider_url, gw_static **out)
{
	char origin[256] = "";
	orn_rc rc;
	*out = NULL;
	if (provider_url != NULL && provider_url[0] != '\0' &&
	    !origin_of(provider_url, origin, sizeof origin))
		return ORN_EINVAL;
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? ORN_ENOTFOUND : ORN_EIO;
	gw_static *st = calloc(1, sizeof *st);
	if (st == NULL || (st->files = calloc(GW_STATIC_FILES_MAX, sizeof *st->files)) == NULL) {
		close(fd);
		free(st);
		return ORN_ENOMEM;
	}
	snprintf(st->csp, sizeof st->csp, "%s%s%s", GW_STATIC_CSP_HEAD, origin[0] ? " " : "", origin);
	if ((rc = walk(st, fd, "", 0)) != ORN_OK) {
		gw_static_destroy(st);
		return rc;
	}
	*out = st;
	return ORN_OK;
}

static const static_file *find(const gw_static *st, const char *url)
{
	for (size_t i = 0; i < st->count; i++)
		if (strcmp(st->files[i].url, url) == 0)
			return &st->files[i];
	return NULL;
}

/* The index.html that answers path if it is one of an app's pages
 * ("<base><route>" or "<base><route>/<segment>"), else NULL. */
static const char *app_index(const char *path)
{
	for (size_t a = 0; a < sizeof apps / sizeof apps[0]; a++) {
		size_t b = strlen(apps[a].base);
		if (strncmp(path, apps[a].base, b) != 0)
			continue;
		for (size_t i = 0; apps[a].routes[i] != NULL; i++) {
			size_t n = strlen(apps[a].routes[i]);
			if (strncmp(path + b, apps[a].routes[i], n) != 0)
				continue;
			const char *rest = path + b + n;
			if (rest[0] == '\0')
				return apps[a].index;
			if (rest[0] != '/' || rest[1] == '\0')
				continue;
			for (const char *p = rest + 1; *p; p++)
				if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
					return NULL;
			return apps[a].index;
		}
		return NULL; /* under an app's base, only its own pages */
	}
	return NULL;
}

/* Whether the If-None-Match list names etag ("*" names any). */
static bool etag_matches(const char *header, const char *etag)
{
	size_t n = strlen(etag);
	const char *p = header;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2; /* weak comparison, as RFC 9110 asks for If-None-Match */
		if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
			return true;
		while (*p && *p != ',')
			p++;
	}
	return false;
}

/* Whether an Accept-Encoding value accepts gzip: "gzip", "x-gzip" or "*"
 * without q=0 (RFC 9110 12.5.3; parameters other than q are ignored). */
static bool accepts_gzip(const char *header)
{
	const char *p = header;
	while (p != NULL && *p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		size_t n = strcspn(p, " \t;,");
		bool named = (n == 4 && strncasecmp(p, "gzip", 4) == 0) ||
		             (n == 6 && strncasecmp(p, "x-gzip", 6) == 0) || (n == 1 && *p == '*');
		const char *end = p + strcspn(p, ",");
		bool refused = false;
		for (const char *q = p + n; q < end; q++)
			if (*q == ';') {
				while (q[1] == ' ' || q[1] == '\t')
					q++;
				if ((q[1] == 'q' || q[1] == 'Q') && q[2] == '=') {
					refused = strtod(q + 3, NULL) <= 0.0;
					break;
				}
			}
		if (named && !refused)
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}

static void handle(gw_request *r, void *arg)
{
	gw_static *st = arg;
	const char *path = gw_request_path(r);
	char url[URL_MAX];
	const static_file *f = NULL;
	size_t len = strlen(path);

	if (len + sizeof "/index.html" <= sizeof url) {
		memcpy(url, path, len + 1);
		if (path[len - 1] == '/') {
			memcpy(url + len, "index.html", sizeof "index.html");
			f = find(st, url);
		} else if ((f = find(st, path)) == NULL) {
			memcpy(url + len, "/index.html", sizeof "/index.html");
			if (find(st, url) != NULL) { /* a directory: to its trailing slash */
				url[len + 1] = '\0';
				gw_response_header(r, "Location", url);
				gw_respond(r, 301, "text/plain; charset=utf-8", NULL, 0);
				return;
			}
			const char *index = app_index(path);
			if (index != NULL)
				f = find(st, index);
		}
	}
	if (f == NULL) {
		gw_respond_error(r, 404, "no resource at this path");
		return;
	}
	gw_method m = gw_request_method(r);
	if (m != GW_GET && m != GW_HEAD) {
		gw_response_header(r, "Allow", "GET, HEAD");
		gw_respond_error(r, 405, "this method is not allowed on this resource");
		return;
	}
	bool gz = f->gz != NULL && accepts_gzip(gw_request_header(r, "Accept-Encoding"));
	const char *etag = gz ? f->gz_etag : f->etag;
	const unsigned char *body = gz ? f->gz : f->body;
	size_t body_len = gz ? f->gz_len : f->len;
	gw_response_header(r, "ETag", etag);
	gw_response_header(r, "Cache-Control", "no-cache");
	gw_response_header(r, "Content-Security-Policy", st->csp);
	gw_response_header(r, "X-Frame-Options", "DENY");
	if (f->gz != NULL) /* the answer depends on Accept-Encoding: caches must key on it */
		gw_response_header(r, "Vary", "Accept-Encoding");
	const char *inm = gw_request_header(r, "If-None-Match");
	if (inm != NULL && etag_matches(inm, etag)) {
		gw_respond(r, 304, f->type, NULL, 0);
		return;
	}
	if (gz)
		gw_response_header(r, "Content-Encoding", "gzip");
	if (m == GW_HEAD) {
		char length[24];
		snprintf(length, sizeof length, "%zu", body_len);
		gw_response_header(r, "Content-Length", length);
	}
	gw_respond(r, 200, f->type, body, body_len);
}

void gw_static_serve(gw_static *st, gw_server *s)
{
	gw_server_fallback(s, handle, st);
}

const char *gw_static_csp(const gw_static *st)
{
	return st->csp;
}

size_t gw_static_count(const gw_static *st)
{
	return st->count;
}

void gw_static_destroy(gw_static *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < st->count; i++) {
		free(st->files[i].body);
		free(st->files[i].gz);
	}
	free(st->files);
	free(st);
}
