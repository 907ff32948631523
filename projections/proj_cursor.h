/* proj_cursor.h — opaque pagination cursors of the read-model queries.
 *
 * A cursor names the last item of a page; the next page starts after it. The
 * text is base64url (no padding) of a format byte and the item id, so clients
 * cannot build one by accident and the format can change behind the byte. */
#ifndef ORION_PROJ_CURSOR_H
#define ORION_PROJ_CURSOR_H

#include <stddef.h>

#include "orn.h"

#define PROJ_CURSOR_MAX 96 /* bytes of a cursor string, NUL included */

/* Writes the cursor "after id" into out (cap bytes). ORN_EINVAL if id is not a
 * valid aggregate id, ORN_ETOOBIG if out is too small. */
orn_rc proj_cursor_encode(const char *id, char *out, size_t cap);

/* Reads a cursor into id (cap bytes, NUL-terminated). ORN_EINVAL for anything
 * that is not a cursor this module wrote (untrusted input: never asserts). */
orn_rc proj_cursor_decode(const char *cursor, char *id, size_t cap);

#endif
