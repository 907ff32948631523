/* metrics.c — the process-wide Prometheus registry (see metrics.h). */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"
#include "log.h"

typedef enum family_type { FAMILY_COUNTER, FAMILY_GAUGE, FAMILY_HISTOGRAM } family_type;

typedef struct series {
	char *labels; /* rendered and escaped: k="v",k2="v2" ("" for none) */
	double value; /* counter, gauge */
	uint64_t bucket_counts[ORN_METRICS_MAX_BUCKETS];
	uint64_t count;
	double sum;
} series;

typedef struct family {
	char *name, *help;
	family_type type;
	double buckets[ORN_METRICS_MAX_BUCKETS];
	size_t bucket_count;
	series **series;
	size_t series_count, series_cap;
	hmap *index; /* labels → series */
} family;

struct orn_metrics {
	pthread_mutex_t lock;
	family **families;
	size_t count, cap;
};

orn_metrics *orn_metrics_create(void)
{
	orn_metrics *m = calloc(1, sizeof(*m));
	if (m)
		pthread_mutex_init(&m->lock, NULL);
	return m;
}

static orn_metrics *global_registry;
static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_create(void)
{
	global_registry = orn_metrics_create();
	if (global_registry == NULL)
		log_error("metrics registry not created: out of memory");
}

orn_metrics *orn_metrics_global(void)
{
	pthread_once(&global_once, global_create);
	return global_registry;
}

double orn_metrics_seconds_since(int64_t start_ns)
{
	int64_t elapsed = orn_monotonic_ns() - start_ns;
	return elapsed > 0 ? (double)elapsed / 1e9 : 0;
}

static void family_free(family *f)
{
	for (size_t i = 0; i < f->series_count; i++) {
		free(f->series[i]->labels);
		free(f->series[i]);
	}
	free(f->series);
	hmap_destroy(f->index);
	free(f->name);
	free(f->help);
	free(f);
}

void orn_metrics_destroy(orn_metrics *m)
{
	if (!m || m == global_registry)
		return;
	for (size_t i = 0; i < m->count; i++)
		family_free(m->families[i]);
	free(m->families);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static bool valid_name(const char *name, bool allow_colon)
{
	if (!name || !name[0] || (name[0] >= '0' && name[0] <= '9'))
		return false;
	for (const char *p = name; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		          c == '_' || (allow_colon && c == ':');
		if (!ok)
			return false;
	}
	return true;
}

/* Writes s with the exposition format's escapes (\\, \n and, in label
 * values, \"). */
static void write_escaped(FILE *out, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", out);
		else if (*s == '\n')
			fputs("\\n", out);
		else if (quote && *s == '"')
			fputs("\\\"", out);
		else
			fputc(*s, out);
	}
}

/* Renders labels into a malloc'd string; NULL on bad labels or memory. */
static char *render_labels(const char *const *labels)
{
	char *text = NULL;
	size_t len = 0, pairs = 0;
	FILE *out = open_memstream(&text, &len);
	bool ok = out != NULL;
	for (size_t i = 0; ok && labels && labels[i]; i += 2) {
		if (!labels[i + 1] || !valid_name(labels[i], false) || ++pairs > ORN_METRICS_MAX_LABELS ||
		    strcmp(labels[i], "le") == 0) {
			ok = false;
			break;
		}
		fprintf(out, "%s%s=\"", i ? "," : "", labels[i]);
		write_escaped(out, labels[i + 1], true);
		fputc('"', out);
	}
	if (out && fclose(out) != 0)
		ok = false;
	if (!ok) {
		free(text);
		return NULL;
	}
	return text;
}

static family *find_family(orn_metrics *m, const char *name)
{
	for (size_t i = 0; i < m->count; i++)
		if (strcmp(m->families[i]->name, name) == 0)
			return m->families[i];
	return NULL;
}

static family *add_family(orn_metrics *m, const char *name, const char *help, family_type type)
{
	if (m->count == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 8;
		family **families = realloc(m->families, cap * sizeof(*families));
		if (!families)
			return NULL;
		m->families = families;
		m->cap = cap;
	}
	family *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	f->index = hmap_create();
	f->type = type;
	if (!f->name || !f->help || !f->index) {
		family_free(f);
		return NULL;
	}
	m->families[m->count++] = f;
	return f;
}

/* The series for labels in f, created if needed; NULL on error. */
static series *get_series(family *f, const char *const *labels)
{
	char *key = render_labels(labels);
	if (!key)
		return NULL;
	series *s = hmap_get(f->index, key);
	if (s) {
		free(key);
		return s;
	}
	if (f->series_count == f->series_cap) {
		size_t cap = f->series_cap ? f->series_cap * 2 : 8;
		series **list = realloc(f->series, cap * sizeof(*list));
		if (!list)
			goto fail;
		f->series = list;
		f->series_cap = cap;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail;
	s->labels = key;
	if (hmap_put(f->index, key, s) != ORN_OK) {
		free(s);
		goto fail;
	}
	f->series[f->series_count++] = s;
	return s;
fail:
	free(key);
	return NULL;
}

/* The series name{labels} of a family of type, the family created on first
 * use (a new histogram takes buckets[0..bucket_count)). NULL with *rc
 * ORN_ENOMEM, or ORN_EINVAL if name is a family of another type or the labels
 * are not valid; *fam is the family. Called with m->lock held. */
static series *series_of(orn_metrics *m, const char *name, const char *help, family_type type,
                         const double *buckets, size_t bucket_count, const char *const *labels, family **fam,
                         orn_rc *rc)
{
	family *f = find_family(m, name);
	if (!f && (f = add_family(m, name, help, type)) != NULL && type == FAMILY_HISTOGRAM) {
		memcpy(f->buckets, buckets, bucket_count * sizeof(*buckets));
		f->bucket_count = bucket_count;
	}
	if (!f) {
		*rc = ORN_ENOMEM;
		return NULL;
	}
	series *s = f->type == type ? get_series(f, labels) : NULL;
	if (!s)
		*rc = ORN_EINVAL;
	*fam = f;
	return s;
}

/* Adds value to (counter) or sets value of (gauge) the series name{labels}. */
static orn_rc scalar_update(orn_metrics *m, const char *name, const char *help, const char *const *labels,
                            double value, family_type type)
{
	orn_rc rc = ORN_OK;
	if (!m || !valid_name(name, true) || value != value || (type == FAMILY_COUNTER && !(value >= 0)))
		return ORN_EINVAL;
	pthread_mutex_lock(&m->lock);
	family *f = NULL;
	series *s = series_of(m, name, help, type, NULL, 0, labels, &f, &rc);
	if (s != NULL && type == FAMILY_COUNTER)
		s->value += value;
	else if (s != NULL)
		s->value = value;
	pthread_mutex_unlock(&m->lock);
	return rc;
}

orn_rc orn_metrics_counter_add(orn_metrics *m, const char *name, const char *help, const char *const *labels,
                               double value)
{
	return scalar_update(m, name, help, labels, value, FAMILY_COUNTER);
}

orn_rc orn_metrics_gauge_set(orn_metrics *m, const char *name, const char *help, const char *const *labels,
                             double value)
{
	return scalar_update(m, name, help, labels, value, FAMILY_GAUGE);
}

static bool valid_buckets(const double *buckets, size_t count)
{
	if (count == 0 || count > ORN_METRICS_MAX_BUCKETS)
		return false;
	for (size_t i = 0; i < count; i++)
		if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
			return false;
	return true;
}

orn_rc orn_metrics_observe(orn_metrics *m, const char *name, const char *help, const double *buckets,
                           size_t bucket_count, const char *const *labels, double value)
{
	orn_rc rc = ORN_OK;
	if (!m || !valid_name(name, true) || !valid_buckets(buckets, bucket_count) || isnan(value))
		return ORN_EINVAL;
	pthread_mutex_lock(&m->lock);
	family *f = NULL;
	series *s = series_of(m, name, help, FAMILY_HISTOGRAM, buckets, bucket_count, labels, &f, &rc);
	if (s != NULL) {
		for (size_t i = 0; i < f->bucket_count; i++)
			if (value <= f->buckets[i])
				s->bucket_counts[i]++;
		s->count++;
		s->sum += value;
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

#define NUMBER_TEXT_MAX 40

/* The shortest "%g" text that reads back as the same double. */
static void format_number(char *text, double value)
{
	if (isinf(value)) {
		snprintf(text, NUMBER_TEXT_MAX, "%s", value > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (int precision = 6; precision <= 17; precision++) {
		snprintf(text, NUMBER_TEXT_MAX, "%.*g", precision, value);
		if (strtod(text, NULL) == value)
			break;
	}
}

static void write_number(FILE *out, double value)
{
	char text[NUMBER_TEXT_MAX];
	format_number(text, value);
	fputs(text, out);
}

static void write_series_name(FILE *out, const char *name, const char *suffix, const char *labels,
                              const char *le)
{
	fprintf(out, "%s%s", name, suffix);
	if (labels[0] || le) {
		fputc('{', out);
		fputs(labels, out);
		if (le)
			fprintf(out, "%sle=\"%s\"", labels[0] ? "," : "", le);
		fputc('}', out);
	}
	fputc(' ', out);
}

static void render_family(FILE *out, const family *f)
{
	fprintf(out, "# HELP %s ", f->name);
	write_escaped(out, f->help, false);
	static const char *const type_names[] = {"counter", "gauge", "histogram"};
	fprintf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
	for (size_t i = 0; i < f->series_count; i++) {
		const series *s = f->series[i];
		if (f->type != FAMILY_HISTOGRAM) {
			write_series_name(out, f->name, "", s->labels, NULL);
			write_number(out, s->value);
			fputc('\n', out);
			continue;
		}
		for (size_t b = 0; b < f->bucket_count; b++) {
			char le[NUMBER_TEXT_MAX];
			format_number(le, f->buckets[b]);
			write_series_name(out, f->name, "_bucket", s->labels, le);
			fprintf(out, "%" PRIu64 "\n", s->bucket_counts[b]);
		}
		write_series_name(out, f->name, "_bucket", s->labels, "+Inf");
		fprintf(out, "%" PRIu64 "\n", s->count);
		write_series_name(out, f->name, "_sum", s->labels, NULL);
		write_number(out, s->sum);
		fputc('\n', out);
		write_series_name(out, f->name, "_count", s->labels, NULL);
		fprintf(out, "%" PRIu64 "\n", s->count);
	}
}

char *orn_metrics_render(orn_metrics *m, size_t *len)
{
	char *text = NULL;
	size_t size = 0;
	if (!m)
		return NULL;
	FILE *out = open_memstream(&text, &size);
	if (!out)
		return NULL;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->count; i++)
		render_family(out, m->families[i]);
	pthread_mutex_unlock(&m->lock);
	if (fclose(out) != 0) {
		free(text);
		return NULL;
	}
	if (len)
		*len = size;
	return text;
}
