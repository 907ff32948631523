/* config.c — settings from the environment by table (see config.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void put_int(void *field, size_t size, long long value)
{
	int8_t i8 = (int8_t)value;
	int16_t i16 = (int16_t)value;
	int32_t i32 = (int32_t)value;
	int64_t i64 = (int64_t)value;
	const void *from = size == 1   ? (const void *)&i8
	                   : size == 2 ? (const void *)&i16
	                   : size == 4 ? (const void *)&i32
	                               : (const void *)&i64;
	memcpy(field, from, size);
}

static orn_rc read_int(const char *value, const orn_setting *s, long long *out)
{
	char *end = NULL;
	errno = 0;
	long long n = strtoll(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || n < s->min || n > s->max)
		return ORN_EINVAL;
	*out = n;
	return ORN_OK;
}

/* The index of word among choices ('|'-separated), -1 if it is not one. */
static long long choice_index(const char *choices, const char *word)
{
	size_t n = strlen(word);
	long long i = 0;
	for (const char *c = choices; c != NULL; i++) {
		const char *end = strchr(c, '|');
		size_t len = end != NULL ? (size_t)(end - c) : strlen(c);
		if (len == n && strncmp(c, word, n) == 0)
			return i;
		c = end != NULL ? end + 1 : NULL;
	}
	return -1;
}

orn_rc orn_settings_load(const orn_setting *table, void *out, const char **bad)
{
	for (const orn_setting *s = table; s->name != NULL; s++) {
		char *field = (char *)out + s->offset;
		const char *value = getenv(s->name);
		bool set = value != NULL && value[0] != '\0';
		orn_rc rc = ORN_OK;
		if (s->kind == ORN_SETTING_TEXT) {
			const char *text = set ? value : s->default_text != NULL ? s->default_text : "";
			if (strlen(text) >= s->size)
				rc = ORN_EINVAL;
			else
				memcpy(field, text, strlen(text) + 1);
		} else if (s->kind == ORN_SETTING_CHOICE) {
			long long n = choice_index(s->choices, set ? value : s->default_text);
			if (n < 0)
				rc = ORN_EINVAL;
			else
				put_int(field, s->size, n);
		} else {
			long long n = s->default_int;
			if (set)
				rc = read_int(value, s, &n);
			if (rc == ORN_OK)
				put_int(field, s->size, n);
		}
		if (rc != ORN_OK) {
			if (bad != NULL)
				*bad = s->name;
			return rc;
		}
	}
	return ORN_OK;
}

const orn_setting *orn_settings_find(const orn_setting *table, const char *name)
{
	for (const orn_setting *s = table; s != NULL && s->name != NULL; s++)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

/* True if an earlier table (or an earlier row of its own) names name. */
static bool shown_before(const orn_setting *const *tables, size_t t, const orn_setting *row)
{
	for (size_t i = 0; i <= t; i++)
		for (const orn_setting *s = tables[i]; s != NULL && s->name != NULL; s++) {
			if (i == t && s == row)
				return false;
			if (strcmp(s->name, row->name) == 0)
				return true;
		}
	return false;
}

void orn_settings_help(const orn_setting *const *tables, size_t count, FILE *out)
{
	char number[24];
	fprintf(out, "Environment (all optional):\n");
	for (size_t t = 0; t < count; t++)
		for (const orn_setting *s = tables[t]; s != NULL && s->name != NULL; s++) {
			if (shown_before(tables, t, s))
				continue;
			const char *shown = s->shown;
			if (shown == NULL && s->kind == ORN_SETTING_INT) {
				snprintf(number, sizeof number, "%lld", s->default_int);
				shown = number;
			}
			fprintf(out, "  %-26s default %-16s %s%s%s%s\n", s->name,
			        shown != NULL ? shown : s->default_text, s->help,
			        s->choices != NULL ? " (" : "", s->choices != NULL ? s->choices : "",
			        s->choices != NULL ? ")" : "");
		}
}
