/* probe.c — the probe skeleton: option table, supervision loop, protocol lines (see probe.h). */
#define _GNU_SOURCE
#include "probe.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

void jb_printf(struct jbuf *b, const char *fmt, ...)
{
	for (;;) {
		size_t room = b->cap - b->len;
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			probe_broken("vsnprintf", errno);
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *p = realloc(b->data, cap);
		if (!p)
			probe_broken("realloc", ENOMEM);
		b->data = p;
		b->cap = cap;
	}
}

void jb_string(struct jbuf *b, const char *s)
{
	jb_printf(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			jb_printf(b, "\\%c", c);
		else if (c < 0x20)
			jb_printf(b, "\\u%04x", c);
		else
			jb_printf(b, "%c", c);
	}
	jb_printf(b, "\"");
}

void jb_hex(struct jbuf *b, const uint8_t *p, size_t n)
{
	jb_printf(b, "\"");
	for (size_t i = 0; i < n; i++)
		jb_printf(b, "%02x", p[i]);
	jb_printf(b, "\"");
}

const char *jb_str(struct jbuf *b)
{
	return b->data ? b->data : "";
}

void jb_free(struct jbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void jb_emit_line(struct jbuf *b)
{
	fputs(jb_str(b), stdout);
	fflush(stdout);
	jb_free(b);
}

void *probe_vdso_symbol(const char *name, int *has_vdso)
{
	const unsigned char *base = (const unsigned char *)getauxval(AT_SYSINFO_EHDR);
	*has_vdso = base != NULL;
	if (!base)
		return NULL;
	const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)base;
	const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(base + eh->e_shoff);
	for (int i = 0; i < eh->e_shnum; i++) {
		if (sh[i].sh_type != SHT_DYNSYM || !sh[i].sh_entsize)
			continue;
		const ElfW(Sym) *sym = (const ElfW(Sym) *)(base + sh[i].sh_offset);
		const char *strtab = (const char *)(base + sh[sh[i].sh_link].sh_offset);
		for (size_t k = 0; k < sh[i].sh_size / sh[i].sh_entsize; k++)
			if (sym[k].st_shndx != SHN_UNDEF && !strcmp(strtab + sym[k].st_name, name))
				return (void *)(base + sym[k].st_value);
	}
	return NULL;
}

double probe_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int probe_online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/* ---- the option table -------------------------------------------------------------------- */

#define MAX_SECONDS (7 * 86400.0)

static const char *const kind_names[] = {
	[PROBE_OPT_INT] = "int",       [PROBE_OPT_SECONDS] = "seconds", [PROBE_OPT_CHOICE] = "choice",
	[PROBE_OPT_LIST] = "list",     [PROBE_OPT_FLAG] = "flag",       [PROBE_OPT_TEXT] = "text",
};

#define COMMON_OPTIONS 4

/* The options every probe takes (pointing into o), then the probe's table, in one array. */
static struct probe_option *all_options(const struct probe_def *def, struct probe_opts *o, size_t *count)
{
	const struct probe_option common[COMMON_OPTIONS] = {
		{ "duration", PROBE_OPT_SECONDS, 0, MAX_SECONDS, NULL, NULL, "how long to run, in seconds",
		  &o->duration_s, PROBE_OPT_REQUIRED },
		{ "workers", PROBE_OPT_INT, 1, 1024, NULL, NULL, def->workers_help, &o->workers, 0 },
		{ "keep-going", PROBE_OPT_FLAG, 0, 1, NULL, NULL, "do not stop at the first reproduced corruption",
		  &o->keep_going, 0 },
		{ "progress-interval", PROBE_OPT_SECONDS, 0, MAX_SECONDS, NULL, "1",
		  "seconds between progress lines", &o->progress_interval_s, 0 },
	};
	size_t own = 0;
	while (def->options && def->options[own].name)
		own++;
	struct probe_option *rows = calloc(COMMON_OPTIONS + own + 1, sizeof *rows);
	if (!rows)
		probe_broken("calloc", ENOMEM);
	memcpy(rows, common, sizeof common);
	if (own)
		memcpy(rows + COMMON_OPTIONS, def->options, own * sizeof *rows);
	*count = COMMON_OPTIONS + own;
	return rows;
}

static int is_ascii_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A decimal integer: an optional '-', then 1 to 18 ASCII digits (nothing strtoll would skip). */
static int parse_int(const char *text, long long *out)
{
	const char *p = text + (*text == '-');
	size_t n = strlen(p);
	if (n == 0 || n > 18)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!is_ascii_digit(p[i]))
			return -1;
	*out = strtoll(text, NULL, 10);
	return 0;
}

/* A finite decimal number: ASCII digits, '.', and an exponent; no spaces, hex, inf or nan. */
static int parse_number(const char *text, double *out)
{
	if (!*text || strspn(text, "0123456789.eE+-") != strlen(text))
		return -1;
	char *end;
	errno = 0;
	double d = strtod(text, &end);
	if (errno || *end || !isfinite(d))
		return -1;
	*out = d;
	return 0;
}

static int choice_index(const char *const *choices, const char *text, size_t len)
{
	for (int i = 0; choices[i]; i++)
		if (strlen(choices[i]) == len && !strncmp(choices[i], text, len))
			return i;
	return -1;
}

static int parse_list(const char *const *choices, const char *text, unsigned long long *out)
{
	unsigned long long bits = 0;
	for (const char *p = text;; p++) {
		size_t len = strcspn(p, ",");
		int i = choice_index(choices, p, len);
		if (i < 0 || i >= 64)
			return -1;
		bits |= 1ULL << i;
		p += len;
		if (!*p)
			break;
	}
	*out = bits;
	return 0;
}

/* Stores text into the option's destination; 0 on success, -1 when it is not a valid value. */
static int set_value(const struct probe_option *opt, const char *text)
{
	switch (opt->kind) {
	case PROBE_OPT_INT: {
		long long v;
		if (parse_int(text, &v) || v < opt->min || v > opt->max)
			return -1;
		*(long long *)opt->dest = v;
		return 0;
	}
	case PROBE_OPT_SECONDS: {
		double d;
		if (parse_number(text, &d) || !(d > opt->min) || d > opt->max)
			return -1;
		*(double *)opt->dest = d;
		return 0;
	}
	case PROBE_OPT_CHOICE: {
		int i = choice_index(opt->choices, text, strlen(text));
		if (i < 0)
			return -1;
		*(int *)opt->dest = i;
		return 0;
	}
	case PROBE_OPT_LIST:
		return parse_list(opt->choices, text, (unsigned long long *)opt->dest);
	case PROBE_OPT_FLAG:
		*(int *)opt->dest = 1;
		return 0;
	case PROBE_OPT_TEXT: {
		size_t n = strlen(text);
		if ((double)n < opt->min || (double)n > opt->max)
			return -1;
		*(const char **)opt->dest = text;
		return 0;
	}
	}
	return -1;
}

static void jb_choices(struct jbuf *b, const char *const *choices, const char *sep, int quoted)
{
	for (int i = 0; choices[i]; i++) {
		jb_printf(b, "%s", i ? sep : "");
		if (quoted)
			jb_string(b, choices[i]);
		else
			jb_printf(b, "%s", choices[i]);
	}
}

/* What a valid value is, for a bad-argument reason. */
static void jb_allowed(struct jbuf *b, const struct probe_option *opt)
{
	switch (opt->kind) {
	case PROBE_OPT_INT:
		jb_printf(b, "an integer from %.0f to %.0f", opt->min, opt->max);
		break;
	case PROBE_OPT_SECONDS:
		jb_printf(b, "seconds, more than %g and at most %g", opt->min, opt->max);
		break;
	case PROBE_OPT_CHOICE:
		jb_printf(b, "one of ");
		jb_choices(b, opt->choices, ", ", 0);
		break;
	case PROBE_OPT_LIST:
		jb_printf(b, "a comma-separated list of ");
		jb_choices(b, opt->choices, ", ", 0);
		break;
	case PROBE_OPT_FLAG:
		jb_printf(b, "no value");
		break;
	case PROBE_OPT_TEXT:
		jb_printf(b, "text of %.0f to %.0f bytes", opt->min, opt->max);
		break;
	}
}

static __attribute__((noreturn)) void bad_option(const struct probe_option *opt, const char *value)
{
	struct jbuf reason = { 0 };
	jb_printf(&reason, "bad argument --%s ", opt->name);
	jb_string(&reason, value);
	jb_printf(&reason, ": ");
	jb_allowed(&reason, opt);
	probe_finish(PROBE_BROKEN, 0, 0, 0.0, "", "", jb_str(&reason));
}

static __attribute__((noreturn)) void usage_error(const char *what, const char *arg)
{
	struct jbuf reason = { 0 };
	jb_printf(&reason, "%s ", what);
	jb_string(&reason, arg);
	jb_printf(&reason, " (--describe lists the options)");
	probe_finish(PROBE_BROKEN, 0, 0, 0.0, "", "", jb_str(&reason));
}

static void jb_option(struct jbuf *b, const struct probe_option *opt, int common)
{
	jb_printf(b, "{\"name\":");
	jb_string(b, opt->name);
	jb_printf(b, ",\"kind\":\"%s\"", kind_names[opt->kind]);
	if (opt->kind == PROBE_OPT_INT || opt->kind == PROBE_OPT_TEXT)
		jb_printf(b, ",\"min\":%.0f,\"max\":%.0f", opt->min, opt->max);
	else if (opt->kind == PROBE_OPT_SECONDS)
		jb_printf(b, ",\"min\":%.17g,\"max\":%.17g", opt->min, opt->max);
	if (opt->choices) {
		jb_printf(b, ",\"choices\":[");
		jb_choices(b, opt->choices, ",", 1);
		jb_printf(b, "]");
	}
	jb_printf(b, ",\"default\":");
	if (opt->default_text)
		jb_string(b, opt->default_text);
	else
		jb_printf(b, "null");
	jb_printf(b, ",\"required\":%s,\"internal\":%s,\"common\":%s,\"help\":",
		  opt->flags & PROBE_OPT_REQUIRED ? "true" : "false", opt->flags & PROBE_OPT_INTERNAL ? "true" : "false",
		  common ? "true" : "false");
	jb_string(b, opt->help ? opt->help : "");
	jb_printf(b, "}");
}

static __attribute__((noreturn)) void describe(const struct probe_def *def, const struct probe_option *rows)
{
	struct jbuf b = { 0 };
	jb_printf(&b, "{\"probe\":");
	jb_string(&b, def->name);
	jb_printf(&b, ",\"summary\":");
	jb_string(&b, def->summary);
	jb_printf(&b, ",\"options\":[");
	for (const struct probe_option *opt = rows; opt->name; opt++) {
		jb_printf(&b, "%s", opt == rows ? "" : ",");
		jb_option(&b, opt, opt - rows < COMMON_OPTIONS);
	}
	jb_printf(&b, "]}\n");
	jb_emit_line(&b);
	exit(0);
}

/* The index of the row "--name" names, or -1. */
static int find_option(const struct probe_option *rows, const char *arg)
{
	if (strncmp(arg, "--", 2))
		return -1;
	for (int i = 0; rows[i].name; i++)
		if (!strcmp(rows[i].name, arg + 2))
			return i;
	return -1;
}

/* The table's own defaults; one that does not parse is a bug in the probe. */
static void apply_defaults(const struct probe_option *rows)
{
	for (const struct probe_option *opt = rows; opt->name; opt++)
		if (opt->default_text && set_value(opt, opt->default_text))
			bad_option(opt, opt->default_text);
}

static void require_given(const struct probe_option *rows, const char *given)
{
	for (int i = 0; rows[i].name; i++)
		if ((rows[i].flags & PROBE_OPT_REQUIRED) && !given[i]) {
			struct jbuf reason = { 0 };
			jb_printf(&reason, "missing --%s (%s; required: ", rows[i].name, rows[i].help);
			jb_allowed(&reason, &rows[i]);
			jb_printf(&reason, ")");
			probe_finish(PROBE_BROKEN, 0, 0, 0.0, "", "", jb_str(&reason));
		}
}

void probe_start(int argc, char **argv, const struct probe_def *def, struct probe_opts *o)
{
	size_t count;
	struct probe_option *rows = all_options(def, o, &count);
	apply_defaults(rows);
	char *given = calloc(count, 1);
	if (!given)
		probe_broken("calloc", ENOMEM);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--describe")) /* where an option may stand, not as a value */
			describe(def, rows);
		int row = find_option(rows, argv[i]);
		if (row < 0)
			usage_error("unknown option", argv[i]);
		given[row] = 1;
		if (rows[row].kind == PROBE_OPT_FLAG) {
			set_value(&rows[row], "");
			continue;
		}
		if (i + 1 >= argc)
			usage_error("no value after", argv[i]);
		if (set_value(&rows[row], argv[++i]))
			bad_option(&rows[row], argv[i]);
	}
	require_given(rows, given);
	free(given);
	free(rows);
}

/* ---- the run ------------------------------------------------------------------------------ */

void probe_nap(double s)
{
	if (s > 0.02)
		s = 0.02;
	if (s > 0)
		usleep((useconds_t)(s * 1e6));
}

void probe_supervise(const struct probe_opts *o, double t0, const struct probe_monitor *m)
{
	double deadline = t0 + o->duration_s;
	double next_progress = t0 + o->progress_interval_s;
	for (;;) {
		double now = probe_now_s();
		if (now >= deadline)
			return;
		if (now >= next_progress) {
			uint64_t iterations = 0, exposures = 0;
			m->count(m->ctx, &iterations, &exposures);
			probe_emit_progress(iterations, exposures, now - t0);
			if (m->after_progress)
				m->after_progress(m->ctx, now - t0);
			next_progress = now + o->progress_interval_s;
		}
		double wake = next_progress < deadline ? next_progress : deadline;
		if (m->tick(m->ctx, wake - now))
			return;
	}
}

static const char *const verdict_names[] = {
	[PROBE_PASS] = "pass", [PROBE_FAIL] = "fail", [PROBE_BROKEN] = "error", [PROBE_SKIP] = "skip"
};

void probe_emit_progress(uint64_t iterations, uint64_t exposures, double elapsed_s)
{
	printf("{\"event\":\"progress\",\"iterations\":%llu,\"exposures\":%llu,\"elapsed\":%.3f}\n",
	       (unsigned long long)iterations, (unsigned long long)exposures, elapsed_s);
	fflush(stdout);
}

void probe_finish(enum probe_exit verdict, uint64_t iterations, uint64_t exposures, double elapsed_s,
		  const char *metrics, const char *evidence, const char *reason)
{
	struct jbuf b = { 0 };
	jb_printf(&b, "{\"event\":\"result\",\"verdict\":\"%s\"", verdict_names[verdict]);
	jb_printf(&b, ",\"iterations\":%llu,\"exposures\":%llu,\"elapsed\":%.3f,\"metrics\":{%s},\"evidence\":{%s}",
		  (unsigned long long)iterations, (unsigned long long)exposures, elapsed_s,
		  metrics ? metrics : "", evidence ? evidence : "");
	if (reason) {
		jb_printf(&b, ",\"reason\":");
		jb_string(&b, reason);
	}
	jb_printf(&b, "}\n");
	jb_emit_line(&b);
	exit(verdict);
}

void probe_skip(const char *reason)
{
	probe_finish(PROBE_SKIP, 0, 0, 0.0, "", "", reason);
}

void probe_broken(const char *what, int err)
{
	char reason[256];
	snprintf(reason, sizeof reason, "%s failed: %s", what, err ? strerror(err) : "unknown error");
	probe_finish(PROBE_BROKEN, 0, 0, 0.0, "", "", reason);
}
