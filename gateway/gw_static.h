/* gw_static.h — the web pages' static files (the storefront at "/", the
 * admin console at "/admin/"), served by the gateway beside the API.
 *
 * Every file under the root directory is read into memory once, at start:
 * nothing on disk is opened per request, so no request path can reach a file
 * outside the set (no directory traversal, no symbolic link followed, no
 * dot file). Only names of [A-Za-z0-9._-] that do not start with '.' are
 * taken, at most GW_STATIC_DEPTH directories deep.
 *
 * Answers (GET and HEAD; other methods on a served path: 405):
 * - a file's exact path ("/app.js", "/admin/admin.css"), a directory's path
 *   with a trailing slash for its index.html ("/", "/admin/"), and a
 *   directory without it redirected there (301 "/admin" → "/admin/");
 * - the storefront's own pages ("/products/{id}", "/orders/{id}", "/cart",
 *   ...) with the root's index.html, so a link, a reload or the payment
 *   provider's return to /orders/{id} opens the page; the admin console's
 *   ("/admin/products/{id}", "/admin/orders/{id}", "/admin/inventory", ...)
 *   with /admin/index.html (the tables in gw_static.c);
 * - Content-Type by extension (text with charset=utf-8), a strong ETag (a
 *   BLAKE2b hash of the bytes), If-None-Match → 304, Cache-Control: no-cache
 *   (the names carry no hash: every use revalidates, a 304 costs no body);
 * - Content-Security-Policy GW_STATIC_CSP with the payment provider's origin
 *   added to connect-src (the browser tokenizes the card there), and
 *   X-Frame-Options: DENY beside frame-ancestors 'none';
 * - anything else: 404 problem+json, as for any unknown path. */
#ifndef ORION_GW_STATIC_H
#define ORION_GW_STATIC_H

#include "gw_http.h"
#include "orn.h"

#define GW_STATIC_DEPTH     4                  /* directory levels below the root */
#define GW_STATIC_FILE_MAX  (2u * 1024 * 1024) /* bytes of one file */
#define GW_STATIC_TOTAL_MAX (32u * 1024 * 1024)
#define GW_STATIC_FILES_MAX 512

/* The policy without connect-src's extra origin: scripts, styles, images and
 * fonts from the gateway only; no inline script, no eval, no plugin, no
 * <base>, forms post only here, never framed. */
#define GW_STATIC_CSP_HEAD                                                                                   \
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "   \
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; connect-src 'self'"

typedef struct gw_static gw_static;

/* Reads every file under root. provider_url (may be NULL or "") is the
 * payment provider's URL browsers tokenize at: its origin (scheme, host and
 * port) joins connect-src; ORN_EINVAL if it is not an http(s) URL of
 * [A-Za-z0-9.:[]-] in its host part. ORN_ENOTFOUND if root is not a
 * directory, ORN_ETOOBIG past the limits above, ORN_EIO, ORN_ENOMEM. */
orn_rc gw_static_create(const char *root, const char *provider_url, gw_static **out);

/* Serves st on s as its fallback (gw_server_fallback): before gw_server_run. */
void gw_static_serve(gw_static *st, gw_server *s);

/* The Content-Security-Policy the files are served with (owned by st). */
const char *gw_static_csp(const gw_static *st);

/* Files loaded. */
size_t gw_static_count(const gw_static *st);

/* Frees everything; after the server is destroyed. NULL is accepted. */
void gw_static_destroy(gw_static *st);

#endif
