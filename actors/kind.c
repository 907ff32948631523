/* kind.c — see kind.h. */
#include "kind.h"

#include <string.h>

int kind_type_index(const void *table, size_t count, size_t stride, const char *type)
{
	const unsigned char *entry = table;
	for (size_t i = 0; type != NULL && i < count; i++, entry += stride) {
		const char *name;
		memcpy(&name, entry, sizeof name); /* the first member */
		if (strcmp(name, type) == 0)
			return (int)i;
	}
	return -1;
}

orn_rc kind_emit_events(act_decision *d, uint32_t schema, const void *events, size_t count,
                        kind_encode_fn *encode)
{
	orn_rc rc = ORN_OK;
	mp_writer *w = NULL;
	if (count == 0)
		return ORN_OK;
	if ((w = mp_writer_create()) == NULL)
		return ORN_ENOMEM;
	for (size_t i = 0; i < count && rc == ORN_OK; i++) {
		const char *type = NULL;
		mp_writer_reset(w);
		/* decide emits only encodable events: an error here is the decision's */
		if ((rc = encode(w, events, i, &type)) == ORN_OK)
			rc = act_decision_emit(d, type, schema, mp_writer_data(w), mp_writer_size(w));
	}
	mp_writer_destroy(w);
	return rc;
}
