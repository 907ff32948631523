/* proj_cursor.h — opaque pagination cursors of the read-model queries.
 *
 * A cursor names the last item of a page; the next page starts after it. The
 * text is base64url (no padding) of a format byte and the item id, so clients
 * cannot build one by accident and the format can change behind the byte. */
#ifndef ORION_PROJ_CURSOR_H
#define ORION_PROJ_CURSOR_H

#include <stdbool.h>
#include <stddef.h>

#include "orn.h"

#define PROJ_CURSOR_MAX 96 /* bytes of a cursor string, NUL included */

/* Writes the cursor "after id" into out (cap bytes). ORN_EINVAL if id is not a
 * valid aggregate id, ORN_ETOOBIG if out is too small. */
orn_rc proj_cursor_encode(const char *id, char *out, size_t cap);

/* Ends a page listing that returned rc: when it succeeded and more rows follow
 * a page of *count items, writes the cursor after last_id (the page's last item)
 * into next_cursor (cap bytes); when anything failed, the page is empty (*count
 * 0). rc, or what encoding the cursor returned. */
orn_rc proj_page_end(orn_rc rc, bool more, size_t *count, const char *last_id, char *next_cursor, size_t cap);

/* Reads a cursor into id (cap bytes, NUL-terminated). ORN_EINVAL for anything
 * that is not a cursor this module wrote (untrusted input: never asserts). */
orn_rc proj_cursor_decode(const char *cursor, char *id, size_t cap);

#endif
