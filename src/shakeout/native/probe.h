/*
 * probe.h — the skeleton every shakeout probe is built on, and the line protocol it speaks
 * (see DESIGN.md, "Probes"). A probe declares its options in a table, calls probe_start(),
 * runs its loop under probe_supervise(), and ends with probe_finish(); nothing else parses
 * arguments, paces progress or chooses an exit status.
 *
 * Command line: --duration S (required), --workers N, --keep-going, --progress-interval S,
 * then the probe's own options from its table ("--name value"). --describe prints the whole
 * table, common options included, as one JSON object on stdout and exits 0:
 *   {"probe":NAME,"summary":TEXT,"options":[{"name":..,"kind":"int|seconds|choice|list|flag|text",
 *    "min":..,"max":..,"choices":[..],"default":TEXT|null,"required":BOOL,"internal":BOOL,
 *    "common":BOOL,"help":TEXT}, ...]}
 * (min/max: the range of an int, of seconds (more than min, at most max), the length of a
 * text; choices for choice and list; common: one of the four options every probe takes). shakeout reads options, ranges, choices and defaults from there and restates none.
 *
 * stdout carries one JSON object per line, each written whole and flushed:
 *   {"event":"progress","iterations":N,"exposures":N,"elapsed":S}
 *       while running, every --progress-interval seconds (probe_supervise).
 *   {"event":"target","pid":P,"address":"0x..",...}
 *       a word in process P that shakeout's fault injectors may overwrite from outside (the
 *       selftest's memory writer); extra fields say what it is ("what", "mode", "instance")
 *       and, with "inject", how to act on it ("window": store only while the probe holds a
 *       window open; "bit-flip" with "flips": flip bits). Optional; before the run.
 *   {"event":"setup",...}, {"event":"status",...} and {"event":"error",...}
 *       memtest's description of its buffer, its periodic status and each error it read back
 *       (memtest.c says their fields); handed to the caller's event callback, never judged.
 *   {"event":"result","verdict":"pass|fail|error|skip","iterations":N,"exposures":N,
 *    "elapsed":S,"metrics":{..},"evidence":{..}[,"reason":TEXT]}
 *       exactly once, last (probe_finish).
 * Exit status matches the verdict: 0 pass, 1 fail (corruption reproduced), 2 error (broken:
 * could not run the test, or a bad argument), 4 skip (not applicable here).
 * stderr is free text for humans and is never parsed.
 */
#ifndef SHAKEOUT_PROBE_H
#define SHAKEOUT_PROBE_H

#include <stddef.h>
#include <stdint.h>

enum probe_exit { PROBE_PASS = 0, PROBE_FAIL = 1, PROBE_BROKEN = 2, PROBE_SKIP = 4 };

struct probe_opts {
	double duration_s;
	long long workers;    /* 0: the probe chooses its default */
	int keep_going;       /* do not stop at the first reproduced corruption */
	double progress_interval_s;
};

/* The kinds of option value; the destination's type follows from the kind. */
enum probe_option_kind {
	PROBE_OPT_INT,     /* long long; a decimal integer (ASCII digits) in [min, max] */
	PROBE_OPT_SECONDS, /* double; a decimal number of seconds more than min, at most max */
	PROBE_OPT_CHOICE,  /* int; the index of the value in choices */
	PROBE_OPT_LIST,    /* unsigned long long; a bit per choice named in a comma-separated list */
	PROBE_OPT_FLAG,    /* int; set to 1 by the bare option, which takes no value */
	PROBE_OPT_TEXT,    /* const char *; min to max bytes long */
};

enum probe_option_flags {
	PROBE_OPT_REQUIRED = 1, /* the command line must give it (there is no default) */
	PROBE_OPT_INTERNAL = 2, /* only shakeout itself sets it (a fixed mode, an injection switch) */
};

/*
 * One row of a probe's option table; a row with name NULL ends the table. default_text is
 * parsed like a command-line value before the command line is (the one statement of the
 * default); NULL leaves the destination as the probe initialised it (the probe chooses,
 * and help says how).
 */
struct probe_option {
	const char *name; /* without the leading "--" */
	enum probe_option_kind kind;
	double min, max;
	const char *const *choices; /* NULL-terminated; choice and list only */
	const char *default_text;
	const char *help; /* with units */
	void *dest;
	unsigned flags;   /* enum probe_option_flags */
};

struct probe_def {
	const char *name;    /* the binary's name */
	const char *summary; /* one line: what the probe detects */
	const char *workers_help; /* what --workers counts and its default */
	const struct probe_option *options;
};

/*
 * Parses the command line by the common options and def's table into o and the table's
 * destinations; answers --describe. A bad, unknown or missing argument ends the probe as
 * broken with one line naming the option and its range or choices.
 */
void probe_start(int argc, char **argv, const struct probe_def *def, struct probe_opts *o);

/*
 * How probe_supervise watches a run. tick does one slice of the supervisor's work in at most
 * about max_s seconds (sleeping, or killing an owner) and returns nonzero when the run must
 * end before its deadline; count fills the counters of a progress line; after_progress
 * (optional) adds lines of the probe's own after each progress line.
 */
struct probe_monitor {
	void *ctx;
	int (*tick)(void *ctx, double max_s);
	void (*count)(void *ctx, uint64_t *iterations, uint64_t *exposures);
	void (*after_progress)(void *ctx, double elapsed_s);
};

/* Runs from t0 until the duration is over or tick ends the run, emitting progress. */
void probe_supervise(const struct probe_opts *o, double t0, const struct probe_monitor *m);

/* Sleeps s seconds, at most 20 ms: the slice a polling tick waits. */
void probe_nap(double s);

/*
 * Emits the result line and exits with the status that matches the verdict; the only way a
 * probe ends. metrics and evidence are JSON object bodies without braces (may be empty).
 */
__attribute__((noreturn)) void probe_finish(enum probe_exit verdict, uint64_t iterations, uint64_t exposures,
					    double elapsed_s, const char *metrics, const char *evidence,
					    const char *reason);

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

/* The address of a symbol the vDSO exports, or NULL; *has_vdso tells whether there is one. */
void *probe_vdso_symbol(const char *name, int *has_vdso);

double probe_now_s(void);
int probe_online_cpus(void);

/* One progress line now (probe_supervise emits them while running). */
void probe_emit_progress(uint64_t iterations, uint64_t exposures, double elapsed_s);

__attribute__((noreturn)) void probe_skip(const char *reason);
__attribute__((noreturn)) void probe_broken(const char *what, int err);

#endif
