/* mpack.h — strict msgpack reading and convenient msgpack writing.
 *
 * The reader is a bounds-checked cursor over a byte buffer: every read checks
 * the remaining length first, so truncated or hostile input yields ORN_EDECODE
 * and never reads out of bounds, allocates, or recurses without a limit.
 * Strings returned by the reader point into the caller's buffer (no copy).
 *
 * The writer wraps msgpack-c's packer over a growable buffer that it owns. */
#ifndef ORION_MPACK_H
#define ORION_MPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orn.h"

/* Deepest nesting mp_skip/mp_to_json accept; deeper input is rejected. */
#define MP_MAX_DEPTH 32

typedef struct mp_reader {
	const uint8_t *pos;
	const uint8_t *end;
} mp_reader;

typedef enum mp_type {
	MP_NIL,
	MP_BOOL,
	MP_INT, /* any integer, signed or unsigned */
	MP_FLOAT,
	MP_STR,
	MP_BIN,
	MP_ARRAY,
	MP_MAP,
	MP_EXT,
	MP_INVALID
} mp_type;

/* Starts reading len bytes at buf. buf must outlive every string read. */
void mp_reader_init(mp_reader *r, const void *buf, size_t len);

/* Bytes not yet consumed. */
size_t mp_reader_remaining(const mp_reader *r);

/* Type of the next value without consuming it; MP_INVALID at the end or on a
 * reserved byte. */
mp_type mp_peek(const mp_reader *r);

/* Each read consumes one value of the named type or returns ORN_EDECODE
 * (wrong type, truncated). On error the cursor position is unspecified. */
orn_rc mp_read_nil(mp_reader *r);
orn_rc mp_read_bool(mp_reader *r, bool *out);
orn_rc mp_read_int(mp_reader *r, int64_t *out);   /* rejects uint64 > INT64_MAX */
orn_rc mp_read_uint(mp_reader *r, uint64_t *out); /* rejects negatives */
orn_rc mp_read_str(mp_reader *r, const char **out, uint32_t *len);
orn_rc mp_read_bin(mp_reader *r, const uint8_t **out, uint32_t *len);
orn_rc mp_read_array(mp_reader *r, uint32_t *count);
orn_rc mp_read_map(mp_reader *r, uint32_t *count);

/* Reads a string into a NUL-terminated buffer of size cap; ORN_ETOOBIG if it
 * does not fit, ORN_EDECODE if it contains a NUL byte. */
orn_rc mp_read_cstr(mp_reader *r, char *out, size_t cap);

/* Skips one whole value (nested up to MP_MAX_DEPTH). */
orn_rc mp_skip(mp_reader *r);

/* Skips one value and reports where it lies in the buffer (out params). */
orn_rc mp_read_raw(mp_reader *r, const uint8_t **start, size_t *len);

/* True if the string (s, len) equals the NUL-terminated key. */
bool mp_str_eq(const char *s, uint32_t len, const char *key);

typedef struct mp_writer mp_writer;

/* Creates an empty writer; NULL on allocation failure. Free with mp_writer_destroy. */
mp_writer *mp_writer_create(void);
void mp_writer_destroy(mp_writer *w);
/* Empties the buffer, keeping its capacity, and clears the sticky status. */
void mp_writer_reset(mp_writer *w);
/* The bytes written so far; valid until the next write or destroy. */
const uint8_t *mp_writer_data(const mp_writer *w);
size_t mp_writer_size(const mp_writer *w);
/* First failure seen by any write (sticky), or ORN_OK: ORN_ENOMEM, or
 * ORN_ETOOBIG for a str/bin longer than msgpack's 2^32 - 1 bytes. */
orn_rc mp_writer_status(const mp_writer *w);

void mp_write_nil(mp_writer *w);
void mp_write_bool(mp_writer *w, bool v);
void mp_write_int(mp_writer *w, int64_t v);
void mp_write_uint(mp_writer *w, uint64_t v);
void mp_write_str(mp_writer *w, const char *s, size_t len);
void mp_write_cstr(mp_writer *w, const char *s); /* NULL writes nil */
void mp_write_bin(mp_writer *w, const void *data, size_t len);
void mp_write_array(mp_writer *w, uint32_t count);
void mp_write_map(mp_writer *w, uint32_t count);
/* Appends bytes that already are one encoded msgpack value. */
void mp_write_raw(mp_writer *w, const void *data, size_t len);

/* Converts one msgpack value to JSON text appended to out (a writer used as a
 * byte buffer). Strings are escaped; invalid UTF-8 bytes become U+FFFD; bin
 * and ext become base64 strings; a non-string map key becomes its JSON text
 * as a string; NaN and infinities become null. Returns ORN_EDECODE on
 * malformed input, and also for an array/map key nested inside another
 * array/map key (escaping it twice could blow up the output); ORN_ENOMEM on
 * allocation failure. On error nothing is appended. */
orn_rc mp_to_json(mp_reader *r, mp_writer *out);

/* Appends s (len bytes) to out as a quoted, escaped JSON string. */
void mp_json_string(mp_writer *out, const char *s, size_t len);

#endif
