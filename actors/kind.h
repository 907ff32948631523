/* kind.h — plumbing every aggregate's codec and kind adapter shares.
 *
 * The aggregates differ in their fields and rules, not in how a type name is
 * looked up or how decided events reach the act_decision: that part lives
 * here once. */
#ifndef ORION_KIND_H
#define ORION_KIND_H

#include <stddef.h>
#include <stdint.h>

#include "decision.h"
#include "mpack.h"

/* Index of the entry of table (count entries of stride bytes each) whose
 * FIRST member, a const char * type name, equals type; -1 if none or type is
 * NULL. Use KIND_TYPE_INDEX with an array. */
int kind_type_index(const void *table, size_t count, size_t stride, const char *type);
#define KIND_TYPE_INDEX(table, type)                                                                         \
	kind_type_index((table), ORN_ARRAY_LEN(table), sizeof((table)[0]), (type))

/* Encodes event i of an aggregate's typed event list into w (appending) and
 * sets *type to its type name. */
typedef orn_rc kind_encode_fn(mp_writer *w, const void *events, size_t i, const char **type);

/* Encodes the count events with encode and emits each into d with payload
 * schema. ORN_ENOMEM, or what encode or act_decision_emit returned. */
orn_rc kind_emit_events(act_decision *d, uint32_t schema, const void *events, size_t count,
                        kind_encode_fn *encode);

#endif
