/* text.c — see text.h. */
#include "text.h"

#include <stdint.h>

/* Decodes the UTF-8 sequence at p (left bytes remain) into *cp; returns its
 * length, or 0 if it is malformed, overlong, a surrogate or past U+10FFFF. */
static size_t utf8_sequence(const unsigned char *p, size_t left, uint32_t *cp)
{
	size_t n = 0;

	if (p[0] < 0x80)
		n = 1, *cp = p[0];
	else if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, *cp = p[0] & 0x1fu;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, *cp = p[0] & 0x0fu;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, *cp = p[0] & 0x07u;
	if (n > left)
		n = 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			n = 0;
		*cp = (*cp << 6) | (p[i] & 0x3fu);
	}
	if ((n == 3 && *cp < 0x800) || (n == 4 && (*cp < 0x10000 || *cp > 0x10ffff)) ||
	    (*cp >= 0xd800 && *cp <= 0xdfff))
		n = 0;
	return n;
}

bool text_valid(const char *s, size_t len, unsigned allow)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 1;
	bool valid = true;
	uint32_t cp = 0;

	for (size_t i = 0; valid && i < len; i += n) {
		n = utf8_sequence(p + i, len - i, &cp);
		valid = n > 0 &&
		        ((cp > 0x20 && cp < 0x7f) || cp > 0x9f || (cp == ' ' && (allow & TEXT_SPACE)) ||
		         ((cp == '\n' || cp == '\r') && (allow & TEXT_LINE_BREAKS)));
	}
	return valid;
}
