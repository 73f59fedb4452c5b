/*
 * probe.h — the line protocol every shakeout probe speaks (see DESIGN.md, "Probes").
 *
 * stdout carries one JSON object per line: {"event":"progress",...} while running and
 * exactly one {"event":"result",...} at the end. Exit status: 0 pass, 1 corruption
 * reproduced, 2 broken (could not run the test), 4 skip (not applicable here).
 * stderr is free text for humans and is never parsed.
 */
#ifndef SHAKEOUT_PROBE_H
#define SHAKEOUT_PROBE_H

#include <stddef.h>
#include <stdint.h>

enum probe_exit { PROBE_PASS = 0, PROBE_FAIL = 1, PROBE_BROKEN = 2, PROBE_SKIP = 4 };

struct probe_opts {
	double duration_s;
	int workers;          /* 0: the probe chooses its default */
	int keep_going;       /* do not stop at the first reproduced corruption */
	double progress_interval_s;
};

/* A growable buffer for building JSON fragments. Allocation failure is fatal (broken). */
struct jbuf {
	char *data;
	size_t len, cap;
};

void jb_printf(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jb_string(struct jbuf *b, const char *s);      /* a quoted, escaped JSON string */
void jb_hex(struct jbuf *b, const uint8_t *p, size_t n); /* a quoted hex string */
const char *jb_str(struct jbuf *b);                 /* "" when empty */
void jb_free(struct jbuf *b);
void jb_emit_line(struct jbuf *b);                  /* one protocol line on stdout, flushed; frees b */

/*
 * Parses --duration S, --workers N, --keep-going, --progress-interval S. Any other
 * "--name value" pair is handed to extra(name, value, ctx), which returns 0 when it
 * accepted it. Bad arguments end the probe as broken with a one-line reason.
 */
typedef int (*probe_extra_opt)(const char *name, const char *value, void *ctx);
void probe_parse_args(int argc, char **argv, struct probe_opts *o, probe_extra_opt extra, void *ctx);

/* A decimal integer in [min, max]; 0 on success, -1 otherwise (*out untouched). */
int probe_parse_long(const char *text, long min, long max, long *out);

/* The address of a symbol the vDSO exports, or NULL; *has_vdso tells whether there is one. */
void *probe_vdso_symbol(const char *name, int *has_vdso);

double probe_now_s(void);
int probe_online_cpus(void);

void probe_emit_progress(uint64_t iterations, uint64_t exposures, double elapsed_s);
/* metrics and evidence are JSON object bodies without braces (may be empty). */
void probe_emit_result(const char *verdict, uint64_t iterations, uint64_t exposures, double elapsed_s,
		       const char *metrics, const char *evidence, const char *reason);

__attribute__((noreturn)) void probe_skip(const char *reason);
__attribute__((noreturn)) void probe_broken(const char *what, int err);

#endif
