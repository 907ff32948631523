/* gw_sse.h — Server-Sent Events framing over a gw_stream (gw_http.h).
 *
 * Writes events in the text/event-stream format of the WHATWG HTML standard:
 * "id: <n>\nevent: <name>\ndata: <one line>\n\n", comments (": text\n\n")
 * that keep proxies and clients from timing the stream out, and the
 * reconnection delay ("retry: <ms>\n\n"). Data must be one
 * line (compact JSON is): a line break would split it into another field.
 * Loop thread only, like the stream. */
#ifndef ORION_GW_SSE_H
#define ORION_GW_SSE_H

#include <stdint.h>

#include "gw_http.h"
#include "orn.h"

#define GW_SSE_CONTENT_TYPE  "text/event-stream"
#define GW_SSE_KEEP_ALIVE_NS (15000 * 1000000LL) /* the longest silence of a stream */

/* Writes one event: id (0: no id line), event name (NULL: the default
 * "message"), data one line of text. ORN_EINVAL if name or data hold a line
 * break; else as gw_stream_write. */
orn_rc gw_sse_event(gw_stream *s, uint64_t id, const char *event, const char *data);

/* Writes a comment line (": text"); text must not hold a line break. */
orn_rc gw_sse_comment(gw_stream *s, const char *text);

/* Writes a keep-alive comment when nothing was written for
 * GW_SSE_KEEP_ALIVE_NS since *last_write_ns (orn_monotonic_ns), which it
 * then moves; ORN_OK when none is due. As gw_stream_write. */
orn_rc gw_sse_keep_alive(gw_stream *s, int64_t *last_write_ns);

/* Writes a "retry: <ms>" field (and the blank line that ends it): the
 * client's reconnection delay from now on. As gw_stream_write. */
orn_rc gw_sse_retry(gw_stream *s, unsigned ms);

/* Parses a Last-Event-ID header: decimal digits (at most 19) into *out.
 * NULL or "" gives 0 and true; anything else not a number gives false. */
bool gw_sse_last_event_id(const char *header, uint64_t *out);

#endif
