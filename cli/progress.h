/* progress.h — what the orion tools that read the whole stream share
 * (cli/progress.c): where the stream ends, and their progress on stderr (a
 * bar on a terminal, a line every 2 s otherwise, nothing when quiet). */
#ifndef ORION_CLI_PROGRESS_H
#define ORION_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "evstore.h"

/* The last sequence of ES_STREAM (out param out): the bound a whole-log read
 * fixes when it starts. An error of the store (es_status_rc) otherwise. */
orn_rc cli_stream_last_seq(es_store *store, uint64_t *out);

/* One tool's progress through stream sequences; caller-owned, no resources. */
typedef struct cli_progress {
	const char *what; /* label, e.g. "verify-log" (borrowed) */
	bool tty, quiet;
	int64_t start_ns, last_print_ns;
	uint64_t from; /* position when started */
} cli_progress;

/* Starts p at position from: a bar if stderr is a terminal, plain lines
 * otherwise, nothing when quiet. */
void cli_progress_init(cli_progress *p, const char *what, bool quiet, uint64_t from);

/* Shows position of target with rate and ETA: a bar at every call on a
 * terminal, else a line at most every 2 s; final ends the bar's line (and
 * always prints). */
void cli_progress_show(cli_progress *p, uint64_t position, uint64_t target, bool final);

/* Seconds since the monotonic time ns (orn_monotonic_ns). */
double cli_seconds_since(int64_t ns);

#endif
