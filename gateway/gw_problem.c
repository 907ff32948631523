/* gw_problem.c — builders for RFC 9457 problem objects. */
#include "gw_problem.h"

#include <string.h>

static const struct {
	int status;
	const char *title;
} titles[] = {
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {409, "Conflict"},
        {413, "Content Too Large"},
        {415, "Unsupported Media Type"},
        {422, "Unprocessable Content"},
        {429, "Too Many Requests"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
};

const char *gw_status_title(int status)
{
	for (size_t i = 0; i < sizeof(titles) / sizeof(titles[0]); i++)
		if (titles[i].status == status)
			return titles[i].title;
	return "Error";
}

json_t *gw_problem_new(int status, const char *detail)
{
	json_t *problem = json_pack("{s:s, s:s, s:i}", "type", "about:blank", "title",
	                            gw_status_title(status), "status", status);
	if (problem && detail && json_object_set_new(problem, "detail", json_string(detail)) != 0) {
		json_decref(problem);
		return NULL;
	}
	return problem;
}

/* Length of at most max bytes of s, not cutting a UTF-8 sequence. */
static size_t utf8_prefix(const char *s, size_t max)
{
	size_t len = strlen(s);
	if (len <= max)
		return len;
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	return max;
}

int gw_problem_add_error(json_t *problem, const char *field, const char *message)
{
	if (problem == NULL)
		return -1;
	json_t *errors = json_object_get(problem, "errors");
	if (!errors) {
		errors = json_array();
		if (!errors || json_object_set_new(problem, "errors", errors) != 0)
			return -1;
	}
	if (json_array_size(errors) >= GW_PROBLEM_MAX_ERRORS)
		return -1;
	json_t *entry = json_pack("{s:s%, s:s}", "field", field,
	                          utf8_prefix(field, GW_PROBLEM_MAX_FIELD_NAME), "message", message);
	if (!entry)
		return -1;
	return json_array_append_new(errors, entry);
}

int gw_problem_status(const json_t *problem)
{
	return (int)json_integer_value(json_object_get(problem, "status"));
}
