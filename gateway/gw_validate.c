/* gw_validate.c — schema checks for request bodies (see gw_validate.h). */
#include "gw_validate.h"

#include <stdio.h>
#include <string.h>

#include "gw_problem.h"

#define FIELD_PATH_MAX 256

static const gw_field *find_field(const gw_field *schema, const char *name)
{
	for (const gw_field *f = schema; f->name; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

/* Code points in valid UTF-8 (jansson has validated the encoding). */
static int64_t utf8_length(const char *s, size_t len)
{
	int64_t count = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			count++;
	return count;
}

bool gw_valid_id(const char *s)
{
	return orn_id_valid(s);
}

static bool valid_email(const char *s, size_t len)
{
	const char *at = memchr(s, '@', len);
	if (!at || at == s || memchr(at + 1, '@', len - (size_t)(at - s) - 1))
		return false;
	const char *domain = at + 1;
	size_t domain_len = len - (size_t)(domain - s);
	if (domain_len < 3 || domain[0] == '.' || domain[domain_len - 1] == '.' ||
	    !memchr(domain, '.', domain_len))
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7F)
			return false;
	return true;
}

static bool matches_pattern(const char *s, size_t len, gw_pattern pattern)
{
	switch (pattern) {
	case GW_PATTERN_ANY:
	case GW_PATTERN_TEXT:
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)s[i];
			if (pattern == GW_PATTERN_TEXT && (c == '\n' || c == '\t'))
				continue;
			if (c < 0x20 || c == 0x7F)
				return false;
		}
		return true;
	case GW_PATTERN_ID:
		return len >= 1 && len <= 64 &&
		       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		                 "0123456789_-") == len;
	case GW_PATTERN_SLUG:
		return len >= 1 && s[0] != '-' && s[len - 1] != '-' &&
		       strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
	case GW_PATTERN_EMAIL:
		return valid_email(s, len);
	case GW_PATTERN_UPPER:
		return len >= 1 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == len;
	case GW_PATTERN_DIGITS:
		return len >= 1 && strspn(s, "0123456789") == len;
	}
	return false;
}

static void field_path(char *out, size_t cap, const char *prefix, const char *name)
{
	if (prefix[0])
		snprintf(out, cap, "%s.%s", prefix, name);
	else
		snprintf(out, cap, "%s", name);
}

static bool bounded(const gw_field *f)
{
	return f->min != 0 || f->max != 0;
}

/* Checks one present value; returns false after adding an error. */
static bool check_value(const gw_field *f, const json_t *value, const char *path, json_t *problem)
{
	switch (f->type) {
	case GW_STRING: {
		if (!json_is_string(value)) {
			gw_problem_add_error(problem, path, "must be a string");
			return false;
		}
		const char *s = json_string_value(value);
		size_t len = json_string_length(value);
		int64_t chars = utf8_length(s, len);
		if (bounded(f) && (chars < f->min || chars > f->max)) {
			gw_problem_add_error(problem, path, "length out of range");
			return false;
		}
		if (!matches_pattern(s, len, f->pattern)) {
			gw_problem_add_error(problem, path, "contains characters that are not allowed");
			return false;
		}
		return true;
	}
	case GW_INT:
		if (!json_is_integer(value)) {
			gw_problem_add_error(problem, path, "must be an integer");
			return false;
		}
		if (bounded(f) &&
		    (json_integer_value(value) < f->min || json_integer_value(value) > f->max)) {
			gw_problem_add_error(problem, path, "out of range");
			return false;
		}
		return true;
	case GW_BOOL:
		if (!json_is_boolean(value)) {
			gw_problem_add_error(problem, path, "must be a boolean");
			return false;
		}
		return true;
	case GW_OBJECT:
		if (!json_is_object(value)) {
			gw_problem_add_error(problem, path, "must be an object");
			return false;
		}
		return gw_validate_object(value, f->fields, path, problem);
	}
	return false;
}

bool gw_validate_object(const json_t *object, const gw_field *schema, const char *prefix, json_t *problem)
{
	char path[FIELD_PATH_MAX];
	bool ok = true;
	const char *key;
	json_t *value;
	/* jansson's iteration macros take a non-const object. */
	json_t *members = (json_t *)object;

	json_object_foreach(members, key, value)
	{
		if (!find_field(schema, key)) {
			field_path(path, sizeof(path), prefix, key);
			gw_problem_add_error(problem, path, "unknown field");
			ok = false;
		}
	}
	for (const gw_field *f = schema; f->name; f++) {
		field_path(path, sizeof(path), prefix, f->name);
		value = json_object_get(object, f->name);
		if (!value) {
			if (f->required) {
				gw_problem_add_error(problem, path, "is required");
				ok = false;
			}
			continue;
		}
		if (!check_value(f, value, path, problem))
			ok = false;
	}
	return ok;
}

orn_rc gw_validate_json(const void *body, size_t len, size_t max_len, const gw_field *schema, json_t **out,
                        json_t **problem)
{
	json_error_t error;
	json_t *root = NULL;
	char detail[96];
	*out = NULL;
	*problem = NULL;
	if (len > max_len)
		return ORN_ETOOBIG;
	if (len == 0)
		snprintf(detail, sizeof detail, "a JSON object body is required");
	else if ((root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &error)) == NULL)
		/* jansson's message may quote input; report the position only. */
		snprintf(detail, sizeof detail, "malformed JSON or invalid UTF-8 at line %d, column %d",
		         error.line, error.column);
	else if (!json_is_object(root))
		snprintf(detail, sizeof detail, "the body must be a JSON object");
	else if (gw_validate_object(root, schema, "", NULL)) {
		*out = root; /* valid: no problem was ever built (most requests) */
		return ORN_OK;
	} else
		detail[0] = '\0'; /* the errors say it */
	*problem = gw_problem_new(400, "the request body is invalid");
	if (*problem == NULL) {
		json_decref(root);
		return ORN_ENOMEM;
	}
	if (detail[0] != '\0')
		json_object_set_new(*problem, "detail", json_string(detail));
	else
		gw_validate_object(root, schema, "", *problem); /* again, listing every error */
	json_decref(root);
	return ORN_EINVAL;
}

const char *gw_json_string(const json_t *object, const char *name, const char *fallback)
{
	const json_t *value = json_object_get(object, name);
	return json_is_string(value) ? json_string_value(value) : fallback;
}

int64_t gw_json_int(const json_t *object, const char *name, int64_t fallback)
{
	const json_t *value = json_object_get(object, name);
	return json_is_integer(value) ? (int64_t)json_integer_value(value) : fallback;
}

bool gw_json_bool(const json_t *object, const char *name, bool fallback)
{
	const json_t *value = json_object_get(object, name);
	return json_is_boolean(value) ? json_is_true(value) : fallback;
}

const json_t *gw_json_object(const json_t *object, const char *name)
{
	const json_t *value = json_object_get(object, name);
	return json_is_object(value) ? value : NULL;
}

/* The Luhn check of count digits. */
static bool luhn(const unsigned char *digits, size_t count)
{
	unsigned sum = 0;
	for (size_t i = 0; i < count; i++) {
		unsigned d = digits[count - 1 - i];
		if (i % 2 == 1 && (d *= 2) > 9)
			d -= 9;
		sum += d;
	}
	return sum % 10 == 0;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* Whether body[at..] opens a member named "card": the quoted name (any
 * case), then optional whitespace and a colon. */
static bool card_member_at(const unsigned char *body, size_t len, size_t at)
{
	static const char name[] = "\"card\"";
	size_t n = sizeof name - 1;
	if (len - at < n)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)(body[at + i] | 0x20) != (unsigned char)(name[i] | 0x20))
			return false;
	for (at += n;
	     at < len && (body[at] == ' ' || body[at] == '\t' || body[at] == '\n' || body[at] == '\r'); at++)
		;
	return at < len && body[at] == ':';
}

static bool is_alnum(unsigned char c)
{
	return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

bool gw_has_card_data(const unsigned char *body, size_t len)
{
	unsigned char digits[20];
	size_t count = 0;
	bool standalone = false; /* the run did not start inside a word (a hex id, a token) */
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? body[i] : '\0';
		if (c == '"' && card_member_at(body, len, i))
			return true;
		if (is_digit(c)) {
			if (count == 0)
				standalone = i == 0 || !is_alnum(body[i - 1]);
			if (count < sizeof digits)
				digits[count] = (unsigned char)(c - '0');
			count++;
			continue;
		}
		/* one separator between two digits keeps the run going */
		if ((c == ' ' || c == '-') && count > 0 && i + 1 < len && is_digit(body[i + 1]))
			continue;
		if (standalone && !is_alnum(c) && count >= 12 && count <= 19 && digits[0] >= 2 &&
		    digits[0] <= 6 && luhn(digits, count))
			return true;
		count = 0;
	}
	return false;
}
