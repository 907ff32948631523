/* gw_problem.h — RFC 9457 problem details ("application/problem+json").
 *
 * A problem is a jansson object {type, title, status, detail} with an
 * optional "errors":[{field, message}] list for validation failures. Input
 * may appear only as JSON string values (jansson escapes them, and field
 * names are truncated); never in headers, never as raw bytes. */
#ifndef ORION_GW_PROBLEM_H
#define ORION_GW_PROBLEM_H

#include <jansson.h>

#define GW_PROBLEM_CONTENT_TYPE "application/problem+json"

/* Maximum entries in "errors" (later ones are dropped) and the longest field
 * name copied into one (longer names are cut at a UTF-8 boundary). */
#define GW_PROBLEM_MAX_ERRORS     32
#define GW_PROBLEM_MAX_FIELD_NAME 128

/* The standard reason phrase for an HTTP status ("Not Found"), or "Error". */
const char *gw_status_title(int status);

/* A new problem: type "about:blank", title = the status phrase, detail
 * (omitted if NULL). Returns a new reference, NULL on allocation failure. */
json_t *gw_problem_new(int status, const char *detail);

/* Appends {field, message} to problem's "errors" (created on first use).
 * Returns 0, or -1 on allocation failure, when the list is full or when
 * problem is NULL. */
int gw_problem_add_error(json_t *problem, const char *field, const char *message);

/* The status of a problem object (0 if absent). */
int gw_problem_status(const json_t *problem);

#endif
