/* gw_sse.c — Server-Sent Events framing (see gw_sse.h). */
#include "gw_sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static bool one_line(const char *s)
{
	return s == NULL || strpbrk(s, "\r\n") == NULL;
}

orn_rc gw_sse_event(gw_stream *s, uint64_t id, const char *event, const char *data)
{
	char head[96];
	int n = 0;
	if (!one_line(event) || !one_line(data) || (event != NULL && strlen(event) > 32))
		return ORN_EINVAL;
	if (id > 0)
		n = snprintf(head, sizeof head, "id: %llu\n", (unsigned long long)id);
	if (event != NULL)
		n += snprintf(head + n, sizeof head - (size_t)n, "event: %s\n", event);
	size_t data_len = strlen(data);
	size_t len = (size_t)n + 6 + data_len + 2;
	char *frame = malloc(len + 1);
	if (frame == NULL)
		return ORN_ENOMEM;
	memcpy(frame, head, (size_t)n);
	memcpy(frame + n, "data: ", 6);
	memcpy(frame + n + 6, data, data_len);
	memcpy(frame + n + 6 + data_len, "\n\n", 2);
	orn_rc rc = gw_stream_write(s, frame, len);
	free(frame);
	return rc;
}

orn_rc gw_sse_comment(gw_stream *s, const char *text)
{
	char frame[160];
	if (!one_line(text) || strlen(text) > sizeof frame - 5)
		return ORN_EINVAL;
	int n = snprintf(frame, sizeof frame, ": %s\n\n", text);
	return gw_stream_write(s, frame, (size_t)n);
}

orn_rc gw_sse_keep_alive(gw_stream *s, int64_t *last_write_ns)
{
	int64_t now = orn_monotonic_ns();
	if (now - *last_write_ns < GW_SSE_KEEP_ALIVE_NS)
		return ORN_OK;
	*last_write_ns = now;
	return gw_sse_comment(s, "keep-alive");
}

orn_rc gw_sse_retry(gw_stream *s, unsigned ms)
{
	char frame[32];
	int n = snprintf(frame, sizeof frame, "retry: %u\n\n", ms);
	return gw_stream_write(s, frame, (size_t)n);
}

bool gw_sse_last_event_id(const char *header, uint64_t *out)
{
	uint64_t value = 0;
	*out = 0;
	if (header == NULL || header[0] == '\0')
		return true;
	size_t len = strlen(header);
	if (len > 19 || strspn(header, "0123456789") != len)
		return false;
	for (size_t i = 0; i < len; i++)
		value = value * 10 + (uint64_t)(header[i] - '0');
	*out = value;
	return true;
}
