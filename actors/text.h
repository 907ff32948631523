/* text.h — validation of text that users type (names, descriptions, emails),
 * shared by the aggregates. Pure functions. */
#ifndef ORION_TEXT_H
#define ORION_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* What text_valid accepts beyond printable characters. */
enum text_allow {
	TEXT_SPACE = 1u << 0,       /* U+0020 */
	TEXT_LINE_BREAKS = 1u << 1, /* LF and CR */
};

/* True if the len bytes at s are valid UTF-8 (no overlong form, surrogate or
 * code point past U+10FFFF) without control characters (C0, DEL, C1); spaces
 * and line breaks only as allowed (a mask of enum text_allow). */
bool text_valid(const char *s, size_t len, unsigned allow);

#endif
