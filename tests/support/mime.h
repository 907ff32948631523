/* mime.h — the emails Orion writes, read back as a mail client reads them:
 * one part of a multipart message, decoded from its transfer encoding.
 * For the tests of the mail role (unit and integration). */
#ifndef ORION_TEST_MIME_H
#define ORION_TEST_MIME_H

#include <stddef.h>

/* The body of the first part of message whose Content-Type is type (e.g.
 * "text/plain"), decoded from its Content-Transfer-Encoding: 7bit, 8bit and
 * binary as they are, quoted-printable (RFC 2045 6.7: soft breaks joined,
 * =XX decoded). message may have CRLF or LF line ends (a Maildir written by
 * another server). Writes the encoding's name, lower case, to encoding (cap
 * bytes; NULL: not wanted). Returns a malloc'd NUL-terminated string, or NULL
 * if there is no such part, the boundary is missing or the encoding is
 * another (base64 included) or malformed. */
char *mime_part(const char *message, const char *type, char *encoding, size_t cap);

/* Decodes quoted-printable text (as above). Returns a malloc'd string, or
 * NULL when an "=" is followed by neither two hex digits nor a line end. */
char *mime_quoted_printable_decode(const char *text, size_t len);

#endif
