/* mime.c — see mime.h. */
#include "mime.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

char *mime_quoted_printable_decode(const char *text, size_t len)
{
	char *out = malloc(len + 1);
	size_t n = 0;
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (text[i] != '=') {
			out[n++] = text[i];
			continue;
		}
		if (i + 1 < len && text[i + 1] == '\n') { /* soft break, LF */
			i += 1;
		} else if (i + 2 < len && text[i + 1] == '\r' && text[i + 2] == '\n') { /* soft break */
			i += 2;
		} else if (i + 2 < len && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
			out[n++] = (char)(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
			i += 2;
		} else {
			free(out);
			return NULL;
		}
	}
	out[n] = '\0';
	return out;
}

/* The value of header name in the header block [from, to), into out. */
static bool header_value(const char *from, const char *to, const char *name, char *out, size_t cap)
{
	size_t name_len = strlen(name);
	for (const char *line = from; line < to;) {
		const char *end = memchr(line, '\n', (size_t)(to - line));
		if (end == NULL)
			end = to;
		if ((size_t)(end - line) > name_len && strncasecmp(line, name, name_len) == 0 &&
		    line[name_len] == ':') {
			const char *v = line + name_len + 1;
			while (v < end && (*v == ' ' || *v == '\t'))
				v++;
			size_t n = (size_t)(end - v);
			while (n > 0 && isspace((unsigned char)v[n - 1]))
				n--;
			snprintf(out, cap, "%.*s", (int)n, v);
			return true;
		}
		line = end + 1;
	}
	return false;
}

/* Where the header block starting at from ends (the empty line), and where
 * the body after it starts. */
static const char *headers_end(const char *from, const char **body)
{
	const char *crlf = strstr(from, "\r\n\r\n"), *lf = strstr(from, "\n\n");
	if (crlf != NULL && (lf == NULL || crlf < lf)) {
		*body = crlf + 4;
		return crlf + 2;
	}
	if (lf != NULL) {
		*body = lf + 2;
		return lf + 1;
	}
	return NULL;
}

char *mime_part(const char *message, const char *type, char *encoding, size_t cap)
{
	char boundary[200], content_type[200], delimiter[210], cte[64] = "7bit";
	const char *body = NULL, *top_end = headers_end(message, &body);
	if (top_end == NULL ||
	    !header_value(message, top_end, "Content-Type", content_type, sizeof content_type))
		return NULL;
	const char *b = strstr(content_type, "boundary=\"");
	if (b == NULL)
		return NULL;
	b += strlen("boundary=\"");
	snprintf(boundary, sizeof boundary, "%.*s", (int)strcspn(b, "\""), b);
	snprintf(delimiter, sizeof delimiter, "\n--%s", boundary);
	/* each part starts after a delimiter line */
	for (const char *at = strstr(message, delimiter); at != NULL; at = strstr(at + 1, delimiter)) {
		const char *part = strchr(at + 1, '\n');
		if (part == NULL)
			return NULL;
		part++;
		const char *part_body = NULL, *part_end = headers_end(part, &part_body);
		if (part_end == NULL ||
		    !header_value(part, part_end, "Content-Type", content_type, sizeof content_type))
			continue;
		if (strncasecmp(content_type, type, strlen(type)) != 0)
			continue;
		header_value(part, part_end, "Content-Transfer-Encoding", cte, sizeof cte);
		for (char *c = cte; *c != '\0'; c++)
			*c = (char)tolower((unsigned char)*c);
		if (encoding != NULL)
			snprintf(encoding, cap, "%s", cte);
		const char *end = strstr(part_body, delimiter);
		if (end == NULL)
			return NULL;
		if (end > part_body && end[-1] == '\r') /* the line break belongs to the delimiter */
			end--;
		size_t len = (size_t)(end - part_body);
		if (strcmp(cte, "quoted-printable") == 0)
			return mime_quoted_printable_decode(part_body, len);
		if (strcmp(cte, "7bit") == 0 || strcmp(cte, "8bit") == 0 || strcmp(cte, "binary") == 0)
			return strndup(part_body, len);
		return NULL;
	}
	return NULL;
}
