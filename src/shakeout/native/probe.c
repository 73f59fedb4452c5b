/* probe.c — shared implementation of the probe line protocol (see probe.h). */
#define _GNU_SOURCE
#include "probe.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
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

int probe_parse_long(const char *text, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
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

static __attribute__((noreturn)) void bad_arg(const char *what, const char *value)
{
	struct jbuf reason = { 0 };
	jb_printf(&reason, "bad argument %s %s", what, value ? value : "(missing)");
	probe_emit_result("error", 0, 0, 0.0, "", "", jb_str(&reason));
	exit(PROBE_BROKEN);
}

static double parse_seconds(const char *name, const char *v)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || !(d > 0) || d > 86400 * 7)
		bad_arg(name, v);
	return d;
}

void probe_parse_args(int argc, char **argv, struct probe_opts *o, probe_extra_opt extra, void *ctx)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--keep-going")) {
			o->keep_going = 1;
			continue;
		}
		if (strncmp(a, "--", 2) || i + 1 >= argc)
			bad_arg(a, NULL);
		const char *v = argv[++i];
		if (!strcmp(a, "--duration")) {
			o->duration_s = parse_seconds(a, v);
		} else if (!strcmp(a, "--progress-interval")) {
			o->progress_interval_s = parse_seconds(a, v);
		} else if (!strcmp(a, "--workers")) {
			long n;
			if (probe_parse_long(v, 1, 1024, &n))
				bad_arg(a, v);
			o->workers = (int)n;
		} else if (!extra || extra(a + 2, v, ctx) != 0) {
			bad_arg(a, v);
		}
	}
}

void probe_emit_progress(uint64_t iterations, uint64_t exposures, double elapsed_s)
{
	printf("{\"event\":\"progress\",\"iterations\":%llu,\"exposures\":%llu,\"elapsed\":%.3f}\n",
	       (unsigned long long)iterations, (unsigned long long)exposures, elapsed_s);
	fflush(stdout);
}

void probe_emit_result(const char *verdict, uint64_t iterations, uint64_t exposures, double elapsed_s,
		       const char *metrics, const char *evidence, const char *reason)
{
	struct jbuf b = { 0 };
	jb_printf(&b, "{\"event\":\"result\",\"verdict\":");
	jb_string(&b, verdict);
	jb_printf(&b, ",\"iterations\":%llu,\"exposures\":%llu,\"elapsed\":%.3f,\"metrics\":{%s},\"evidence\":{%s}",
		  (unsigned long long)iterations, (unsigned long long)exposures, elapsed_s,
		  metrics ? metrics : "", evidence ? evidence : "");
	if (reason) {
		jb_printf(&b, ",\"reason\":");
		jb_string(&b, reason);
	}
	jb_printf(&b, "}\n");
	jb_emit_line(&b);
}

void probe_skip(const char *reason)
{
	probe_emit_result("skip", 0, 0, 0.0, "", "", reason);
	exit(PROBE_SKIP);
}

void probe_broken(const char *what, int err)
{
	char reason[256];
	snprintf(reason, sizeof reason, "%s failed: %s", what, err ? strerror(err) : "unknown error");
	probe_emit_result("error", 0, 0, 0.0, "", "", reason);
	exit(PROBE_BROKEN);
}
