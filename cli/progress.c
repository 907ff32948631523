/* progress.c — see progress.h: the stream's end and a tool's progress on stderr. */
#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#include "log.h"

#define PLAIN_EVERY_MS 2000
#define BAR_WIDTH      30

orn_rc cli_stream_last_seq(es_store *store, uint64_t *out)
{
	return es_stream_last_seq(store, 0, out);
}

double cli_seconds_since(int64_t ns)
{
	return (double)(orn_monotonic_ns() - ns) / 1e9;
}

void cli_progress_init(cli_progress *p, const char *what, bool quiet, uint64_t from)
{
	p->what = what;
	p->tty = isatty(STDERR_FILENO) == 1;
	p->quiet = quiet;
	p->start_ns = orn_monotonic_ns();
	p->last_print_ns = 0;
	p->from = from;
}

void cli_progress_show(cli_progress *p, uint64_t position, uint64_t target, bool final)
{
	if (p->quiet)
		return;
	int64_t now = orn_monotonic_ns();
	if (!p->tty && !final && now - p->last_print_ns < (int64_t)PLAIN_EVERY_MS * 1000000)
		return;
	p->last_print_ns = now;
	double elapsed = cli_seconds_since(p->start_ns);
	uint64_t done = position > p->from ? position - p->from : 0;
	uint64_t total = target > p->from ? target - p->from : 0;
	double rate = elapsed > 0 ? (double)done / elapsed : 0;
	double pct = total > 0 ? 100.0 * (double)(done > total ? total : done) / (double)total : 100.0;
	double eta = rate > 0 && target > position ? (double)(target - position) / rate : 0;
	if (p->tty) {
		char bar[BAR_WIDTH + 1];
		int filled = (int)(pct * BAR_WIDTH / 100);
		for (int i = 0; i < BAR_WIDTH; i++)
			bar[i] = i < filled ? '#' : '-';
		bar[BAR_WIDTH] = '\0';
		fprintf(stderr, "\r%s [%s] %3.0f%%  %llu/%llu  %.0f events/s  ETA %.0fs   %s", p->what, bar,
		        pct, (unsigned long long)position, (unsigned long long)target, rate, eta,
		        final ? "\n" : "");
	} else {
		fprintf(stderr, "%s: %llu/%llu (%.0f%%), %.0f events/s, ETA %.0f s\n", p->what,
		        (unsigned long long)position, (unsigned long long)target, pct, rate, eta);
	}
	fflush(stderr);
}
