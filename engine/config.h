/* config.h — settings read from the environment, described by tables.
 *
 * A module that has settings describes each one in a table of orn_setting
 * rows (its variable, default, bounds, help, and where the value goes in the
 * module's own struct); orn_settings_load fills the struct from the
 * environment, orn_settings_help prints the tables for `--help`. The engine
 * names no setting of its own: the process and its roles bring the tables. */
#ifndef ORION_CONFIG_H
#define ORION_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "orn.h"

#define ORN_CONFIG_STR_MAX 512 /* bytes of a text setting's field, by convention */

typedef enum orn_setting_kind {
	ORN_SETTING_TEXT,  /* a string copied into a char array */
	ORN_SETTING_INT,   /* a decimal integer within [min, max] */
	ORN_SETTING_CHOICE /* one word of choices ("echo|read"): its index, an integer */
} orn_setting_kind;

/* One setting; a table ends with a row whose name is NULL. */
typedef struct orn_setting {
	const char *name; /* the environment variable */
	orn_setting_kind kind;
	const char *default_text;        /* TEXT: the value when the variable is unset or empty */
	long long default_int, min, max; /* INT */
	size_t offset,
	        size; /* the field: a char array of size bytes, or an integer of size bytes (1, 2, 4, 8) */
	const char *shown;   /* the default as --help shows it; NULL: the default itself */
	const char *help;    /* one line */
	const char *choices; /* CHOICE: the words allowed, '|'-separated; default_text is one of them */
} orn_setting;

/* Rows for a field of struct type. */
#define ORN_SETTING_TEXT_ROW(name, type, field, def, shown, help)                                            \
	{                                                                                                    \
		(name), ORN_SETTING_TEXT, (def), 0, 0, 0, offsetof(type, field), sizeof(((type *)0)->field), \
		        (shown), (help), NULL                                                                \
	}
#define ORN_SETTING_INT_ROW(name, type, field, def, min, max, help)                                          \
	{                                                                                                    \
		(name), ORN_SETTING_INT, NULL, (def), (min), (max), offsetof(type, field),                   \
		        sizeof(((type *)0)->field), NULL, (help), NULL                                       \
	}
#define ORN_SETTING_CHOICE_ROW(name, type, field, def, choices, help)                                        \
	{                                                                                                    \
		(name), ORN_SETTING_CHOICE, (def), 0, 0, 0, offsetof(type, field),                           \
		        sizeof(((type *)0)->field), NULL, (help), (choices)                                  \
	}
#define ORN_SETTING_END                                                                                      \
	{                                                                                                    \
		NULL, ORN_SETTING_TEXT, NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL                                \
	}

/* Sets every field the table describes in out to its default, then to the
 * environment's value where the variable is set and not empty. ORN_EINVAL
 * for a value that is not a number within the bounds, or a text too long for
 * its field, or a word not among a choice's: *bad (may be NULL) then names
 * the variable. Fields the table
 * does not describe are left as they are. */
orn_rc orn_settings_load(const orn_setting *table, void *out, const char **bad);

/* The row of name in table, NULL if none. */
const orn_setting *orn_settings_find(const orn_setting *table, const char *name);

/* Prints "Environment (all optional):" and one line per variable of the
 * count tables, each variable once (the first table naming it describes it). */
void orn_settings_help(const orn_setting *const *tables, size_t count, FILE *out);

#endif
