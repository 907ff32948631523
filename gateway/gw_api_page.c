/* gw_api_page.c — the small server-made HTML pages of emailed links (an
 * order's confirmation, an account's verification): a title, a message and,
 * when the link carries a token, a form that POSTs it. The GET of a link
 * changes nothing (mail scanners follow links); the form does. No script at
 * all, so the gateway's strict CSP holds (ADR 030). */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "gw_api-internal.h"
#include "gw_problem.h"

#define FORM_CONTENT_TYPE "application/x-www-form-urlencoded"
#define FORM_BODY_MAX     1024
#define PAGE_VALUES       5

/* value HTML-escaped (& < > " ' become entities) into a new string. */
static char *escaped(const char *value)
{
	size_t len = strlen(value), n = 0;
	char *out = malloc(len * 6 + 1);
	if (out == NULL)
		return NULL;
	for (const char *p = value; *p; p++) {
		const char *entity = *p == '&'    ? "&amp;"
		                     : *p == '<'  ? "&lt;"
		                     : *p == '>'  ? "&gt;"
		                     : *p == '"'  ? "&quot;"
		                     : *p == '\'' ? "&#39;"
		                                  : NULL;
		if (entity != NULL) {
			memcpy(out + n, entity, strlen(entity));
			n += strlen(entity);
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
	return out;
}

char *gw_api_page_html(const char *title, const char *message, const char *action, const char *button,
                       const char *token)
{
	static const char head[] =
	        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	        "<meta name=\"robots\" content=\"noindex\"><title>%s</title>"
	        "<style>body{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em}"
	        "button{font-size:1.1em;padding:.5em 1.5em}</style></head><body><h1>%s</h1><p>%s</p>";
	static const char form[] = "<form method=\"post\" action=\"%s\">"
	                           "<input type=\"hidden\" name=\"token\" value=\"%s\">"
	                           "<button type=\"submit\">%s</button></form>";
	static const char tail[] = "</body></html>\n";
	const char *values[PAGE_VALUES] = {title, message, action ? action : "", token ? token : "",
	                                   button ? button : ""};
	char *text[PAGE_VALUES] = {NULL}, *out = NULL;
	size_t cap = sizeof head + sizeof form + sizeof tail + 1;
	for (size_t i = 0; i < PAGE_VALUES; i++) {
		if ((text[i] = escaped(values[i])) == NULL)
			goto done;
		cap += strlen(text[i]) * (i == 0 ? 2 : 1);
	}
	if ((out = malloc(cap)) == NULL)
		goto done;
	int n = snprintf(out, cap, head, text[0], text[0], text[1]);
	if (action != NULL && token != NULL)
		n += snprintf(out + n, cap - (size_t)n, form, text[2], text[3], text[4]);
	snprintf(out + n, cap - (size_t)n, "%s", tail);
done:
	for (size_t i = 0; i < PAGE_VALUES; i++)
		free(text[i]);
	return out;
}

void gw_api_complete_page(gw_async *a, int status, const char *title, const char *message)
{
	char *html = gw_api_page_html(title, message, NULL, NULL, NULL);
	if (html != NULL)
		gw_async_complete_html(a, status, html, strlen(html));
	else
		gw_async_complete_problem(a, gw_problem_new(500, NULL));
	free(html);
}

bool gw_api_is_form(gw_request *r)
{
	const char *type = gw_request_header(r, "Content-Type");
	size_t len = sizeof FORM_CONTENT_TYPE - 1;
	return type != NULL && strncasecmp(type, FORM_CONTENT_TYPE, len) == 0 &&
	       (type[len] == '\0' || type[len] == ';' || type[len] == ' ');
}

/* The token of a form body "token=..." (nothing else) into out; false if the
 * body is not exactly that. */
bool gw_api_form_token(gw_request *r, char *out, size_t cap)
{
	size_t len;
	const unsigned char *body = gw_request_body(r, &len);
	struct evkeyvalq fields;
	bool ok = false;
	if (len == 0 || len > FORM_BODY_MAX)
		return false;
	char *text = gw_request_alloc(r, len + 1);
	if (text == NULL)
		return false;
	memcpy(text, body, len);
	text[len] = '\0';
	TAILQ_INIT(&fields);
	/* %00 would cut a value short where it is decoded (ADR 020) */
	if (strlen(text) == len && strstr(text, "%00") == NULL &&
	    evhttp_parse_query_str(text, &fields) == 0) {
		const struct evkeyval *first = TAILQ_FIRST(&fields);
		ok = first != NULL && TAILQ_NEXT(first, next) == NULL && strcmp(first->key, "token") == 0 &&
		     strlen(first->value) < cap;
		if (ok)
			snprintf(out, cap, "%s", first->value);
	}
	evhttp_clear_headers(&fields);
	return ok;
}
