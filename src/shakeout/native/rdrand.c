/*
 * rdrand.c — do RDRAND and RDSEED return random numbers when they say they do?
 *
 * Detects: the CPU's random-number instructions signalling success (CF=1) while returning a
 * constant, all ones or zero far more often than a random source can. Known cases: AMD Zen 2
 * (Ryzen 3000) before the AGESA 1.0.0.3ABB firmware returned all ones from RDRAND; AMD family
 * 15h/16h did so after suspend/resume on some firmware; AMD Zen 5 returned 0 with CF=1 from
 * the 16- and 32-bit forms of RDSEED in over 10 % of successes (AMD-SB-7055).
 *
 * Method: for each instruction available (CPUID) and each width (16, 32, 64 bits), --draws
 * attempts; an attempt executes the instruction until CF=1, at most RETRIES + 1 times (the
 * retry count Intel's DRNG guide recommends). Each group counts successes, failures (CF=0),
 * retries, exhausted attempts, zeros, all-ones values and repeats (a success equal to the
 * one before). A group fails when all its successes are one value (the kernel's own check,
 * 7879fc4bdc75, looks at 8), or when zeros, all-ones or repeats exceed the count a uniform
 * source reaches with probability below 1e-9 (an upper bound on the Poisson tail with
 * lambda = successes / 2^width). Failures alone are no finding: RDSEED may fail under load.
 *
 * Invariant: the same analysis (group_feed) sees hardware executions and recorded ones. An
 * instruction cannot be made to misbehave from inside a process, so --source FILE replays
 * recorded executions ("rdrand|rdseed 16|32|64 VALUE CF" per line) and proves the analysis
 * on the sequences the known bugs produce; the result then says it judged the file, not
 * this CPU. Deterministic: a fixed number of draws, no timing in the verdict.
 *
 * References: Intel Digital Random Number Generator Software Implementation Guide (retries);
 * Linux arch/x86/kernel/cpu/rdrand.c; systemd src/basic/random-util.c (0 and all-ones
 * treated as failures); AMD-SB-7055.
 */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

enum { RETRIES = 10, MIN_SUCCESSES = 8, INSNS = 2, WIDTHS = 3, MAX_LINE = 256 };
#define SOURCE_MAX_BYTES (64L << 20)
#define IMPOSSIBLE_P 1e-9

static const char *const insn_names[INSNS] = { "rdrand", "rdseed" };
static const int widths[WIDTHS] = { 16, 32, 64 };

/* What one (instruction, width) produced, and the state its analysis carries between draws. */
struct group {
	int present; /* the instruction exists (CPUID) or the file has lines for it */
	uint64_t executions, successes, failures, retries, exhausted;
	uint64_t zeros, ones, repeats;
	uint64_t first, previous;
	int differs; /* some success differs from the first */
	unsigned failure_run;
};

static struct group groups[INSNS][WIDTHS];

static uint64_t all_ones(int width)
{
	return width == 64 ? UINT64_MAX : (UINT64_C(1) << width) - 1;
}

/* One execution of the instruction, from the CPU or from the file: the one analysis both share. */
static void group_feed(struct group *g, int width, uint64_t value, int cf)
{
	g->executions++;
	if (!cf) {
		g->failures++;
		if (++g->failure_run == RETRIES + 1) {
			g->exhausted++;
			g->failure_run = 0;
		}
		return;
	}
	g->retries += g->failure_run;
	g->failure_run = 0;
	if (value == 0)
		g->zeros++;
	if (value == all_ones(width))
		g->ones++;
	if (g->successes == 0)
		g->first = value;
	else {
		if (value == g->previous)
			g->repeats++;
		if (value != g->first)
			g->differs = 1;
	}
	g->previous = value;
	g->successes++;
}

/*
 * The smallest count k with P(X >= k) < IMPOSSIBLE_P for X ~ Poisson(lambda), by the bound
 * P(X >= k) <= lambda^k / k! / (1 - lambda / (k + 1)) (valid while lambda < k + 1).
 */
static uint64_t impossible_count(double lambda)
{
	double term = 1.0; /* lambda^k / k! */
	for (uint64_t k = 1;; k++) {
		term *= lambda / (double)k;
		if (lambda < (double)(k + 1) && term / (1.0 - lambda / (double)(k + 1)) < IMPOSSIBLE_P)
			return k;
	}
}

/* Appends the group's findings to why (comma-separated); returns how many. */
static int group_findings(const struct group *g, int width, struct jbuf *why, uint64_t limits[3])
{
	double space = width == 64 ? 18446744073709551616.0 : (double)(UINT64_C(1) << width);
	limits[0] = impossible_count((double)g->successes / space);
	limits[1] = limits[0];
	limits[2] = impossible_count((double)(g->successes ? g->successes - 1 : 0) / space);
	int n = 0;
	if (g->successes < MIN_SUCCESSES)
		return 0;
#define FINDING(...)                                    \
	do {                                            \
		jb_printf(why, "%s", n++ ? ", " : "");  \
		jb_printf(why, __VA_ARGS__);            \
	} while (0)
	if (!g->differs)
		FINDING("all %" PRIu64 " successes returned %#" PRIx64, g->successes, g->first);
	if (g->zeros >= limits[0])
		FINDING("%" PRIu64 " zeros with CF=1 in %" PRIu64 " successes (a random source: fewer than %" PRIu64 ")",
			g->zeros, g->successes, limits[0]);
	if (g->ones >= limits[1] && g->differs)
		FINDING("%" PRIu64 " all-ones values in %" PRIu64 " successes (a random source: fewer than %" PRIu64 ")",
			g->ones, g->successes, limits[1]);
	if (g->repeats >= limits[2] && g->differs)
		FINDING("%" PRIu64 " repeats of the previous value (a random source: fewer than %" PRIu64 ")", g->repeats,
			limits[2]);
#undef FINDING
	return n;
}

#if defined(__x86_64__)
static int exec_insn(int insn, int width, uint64_t *value)
{
	unsigned char ok;
	if (width == 16) {
		uint16_t v;
		if (insn == 0)
			__asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok)::"cc");
		else
			__asm__ volatile("rdseed %0; setc %1" : "=r"(v), "=qm"(ok)::"cc");
		*value = v;
	} else if (width == 32) {
		uint32_t v;
		if (insn == 0)
			__asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok)::"cc");
		else
			__asm__ volatile("rdseed %0; setc %1" : "=r"(v), "=qm"(ok)::"cc");
		*value = v;
	} else {
		uint64_t v;
		if (insn == 0)
			__asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok)::"cc");
		else
			__asm__ volatile("rdseed %0; setc %1" : "=r"(v), "=qm"(ok)::"cc");
		*value = v;
	}
	return ok;
}

static void detect_instructions(void)
{
	unsigned a, b, c, d;
	int rdrand = __get_cpuid(1, &a, &b, &c, &d) && (c >> 30 & 1);
	int rdseed = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 18 & 1);
	for (int w = 0; w < WIDTHS; w++) {
		groups[0][w].present = rdrand;
		groups[1][w].present = rdseed;
	}
}

/* --draws attempts per present group; stops early (with what it has) past the deadline. */
static int draw_from_cpu(long long draws, double deadline)
{
	detect_instructions();
	if (!groups[0][0].present && !groups[1][0].present)
		probe_skip("CPUID reports neither RDRAND nor RDSEED on this CPU");
	for (int i = 0; i < INSNS; i++)
		for (int w = 0; w < WIDTHS; w++) {
			struct group *g = &groups[i][w];
			for (long long n = 0; g->present && n < draws; n++) {
				uint64_t value = 0;
				int cf = 0;
				for (int t = 0; t <= RETRIES && !cf; t++) {
					cf = exec_insn(i, widths[w], &value);
					group_feed(g, widths[w], value, cf);
				}
				if ((n & 255) == 255 && probe_now_s() > deadline)
					return 0;
			}
		}
	return 1;
}
#else
static int draw_from_cpu(long long draws, double deadline)
{
	(void)draws;
	(void)deadline;
	probe_skip("RDRAND and RDSEED are x86-64 instructions; this probe runs only there (--source works anywhere)");
}
#endif

static int index_of(const char *name, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

static __attribute__((noreturn)) void source_error(const char *path, long line, const char *what)
{
	fprintf(stderr, "rdrand: %s:%ld: %s\n", path, line, what);
	struct jbuf reason = { 0 };
	jb_printf(&reason, "recorded draws %s, line %ld: %s", path, line, what);
	probe_finish(PROBE_BROKEN, 0, 0, 0.0, "", "", jb_str(&reason));
}

/* One recorded execution, "rdrand 32 0xffffffff 1"; blank lines and # comments are skipped. */
static void feed_line(const char *path, long number, char *line)
{
	char *hash = strchr(line, '#');
	if (hash)
		*hash = '\0';
	char insn[16], width_text[8], value_text[32], cf_text[8], extra[2];
	int fields = sscanf(line, "%15s %7s %31s %7s %1s", insn, width_text, value_text, cf_text, extra);
	if (fields <= 0)
		return;
	if (fields != 4)
		source_error(path, number, "expected 'rdrand|rdseed 16|32|64 VALUE CF'");
	int i = index_of(insn, insn_names, INSNS);
	int w = -1;
	for (int k = 0; k < WIDTHS; k++)
		if (atoi(width_text) == widths[k] && strlen(width_text) == 2)
			w = k;
	if (i < 0 || w < 0)
		source_error(path, number, "the instruction must be rdrand or rdseed and the width 16, 32 or 64");
	char *end;
	errno = 0;
	unsigned long long value = strtoull(value_text, &end, 0);
	if (errno || *end || value_text[0] == '-' || value > all_ones(widths[w]))
		source_error(path, number, "VALUE must be an unsigned number that fits the width");
	if (strcmp(cf_text, "0") && strcmp(cf_text, "1"))
		source_error(path, number, "CF must be 0 or 1");
	groups[i][w].present = 1;
	group_feed(&groups[i][w], widths[w], value, cf_text[0] == '1');
}

/* Replays a regular file of recorded executions (a device or FIFO is refused: it may never end). */
static void draw_from_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		source_error(path, 0, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		source_error(path, 0, "not a regular file");
	if (st.st_size > SOURCE_MAX_BYTES)
		source_error(path, 0, "larger than 64 MiB");
	FILE *f = fdopen(fd, "r");
	if (!f)
		source_error(path, 0, strerror(errno));
	char line[MAX_LINE];
	long number = 0;
	while (fgets(line, sizeof line, f)) {
		number++;
		if (!strchr(line, '\n') && !feof(f))
			source_error(path, number, "line longer than 255 bytes");
		feed_line(path, number, line);
	}
	fclose(f);
}

static void group_json(struct jbuf *ev, int i, int w, const uint64_t limits[3], const char *findings)
{
	const struct group *g = &groups[i][w];
	jb_printf(ev,
		  "{\"insn\":\"%s\",\"width\":%d,\"executions\":%" PRIu64 ",\"successes\":%" PRIu64
		  ",\"failures\":%" PRIu64 ",\"retries\":%" PRIu64 ",\"exhausted\":%" PRIu64 ",\"zeros\":%" PRIu64
		  ",\"all_ones\":%" PRIu64 ",\"repeats\":%" PRIu64 ",\"constant\":%s,\"first\":\"%#" PRIx64
		  "\",\"limits\":{\"zeros\":%" PRIu64 ",\"all_ones\":%" PRIu64 ",\"repeats\":%" PRIu64 "},\"findings\":",
		  insn_names[i], widths[w], g->executions, g->successes, g->failures, g->retries, g->exhausted, g->zeros,
		  g->ones, g->repeats, g->successes >= MIN_SUCCESSES && !g->differs ? "true" : "false", g->first,
		  limits[0], limits[1], limits[2]);
	jb_string(ev, findings);
	jb_printf(ev, "}");
}

int main(int argc, char **argv)
{
	static long long draws;
	static const char *source;
	static const struct probe_option options[] = {
		{ "draws", PROBE_OPT_INT, 64, 1000000, NULL, "4096",
		  "attempts per instruction and width (16, 32, 64 bits); each retries up to 10 times while CF=0",
		  &draws, 0 },
		{ "source", PROBE_OPT_TEXT, 1, 4096, NULL, NULL,
		  "a file of recorded executions to analyse instead of this CPU's: lines 'rdrand|rdseed 16|32|64 VALUE CF'",
		  &source, 0 },
		{ 0 },
	};
	static const struct probe_def def = {
		"rdrand",
		"RDRAND/RDSEED returning constant, all-ones or zero values while signalling success",
		"unused: the probe runs on one thread",
		options,
	};
	struct probe_opts o;
	probe_start(argc, argv, &def, &o);
	double t0 = probe_now_s();
	int complete = 1;
	if (source)
		draw_from_file(source);
	else
		complete = draw_from_cpu(draws, t0 + o.duration_s);

	struct jbuf ev = { 0 }, why = { 0 };
	uint64_t executions = 0, successes = 0;
	int analysed = 0, failed = 0;
	jb_printf(&ev, "\"deterministic\":true,\"source\":");
	jb_string(&ev, source ? source : "cpu");
	jb_printf(&ev, ",\"complete\":%s,\"groups\":[", complete ? "true" : "false");
	for (int i = 0; i < INSNS; i++)
		for (int w = 0; w < WIDTHS; w++) {
			if (!groups[i][w].present)
				continue;
			struct jbuf findings = { 0 };
			uint64_t limits[3];
			int n = group_findings(&groups[i][w], widths[w], &findings, limits);
			jb_printf(&ev, "%s", executions ? "," : "");
			group_json(&ev, i, w, limits, jb_str(&findings));
			executions += groups[i][w].executions;
			successes += groups[i][w].successes;
			analysed += groups[i][w].successes >= MIN_SUCCESSES;
			if (n) {
				jb_printf(&why, "%s%s%d: %s", failed++ ? "; " : "", insn_names[i], widths[w],
					  jb_str(&findings));
			}
			jb_free(&findings);
		}
	jb_printf(&ev, "],\"summary\":");
	double elapsed = probe_now_s() - t0;
	struct jbuf summary = { 0 };
	jb_printf(&summary, "%" PRIu64 " successful draws in %d instruction/width groups from %s%s", successes,
		  analysed, source ? "the recorded file " : "this CPU", source ? source : "");
	jb_string(&ev, jb_str(&summary));
	if (failed)
		probe_finish(PROBE_FAIL, executions, successes, elapsed, "", jb_str(&ev), jb_str(&why));
	if (!analysed)
		probe_finish(PROBE_BROKEN, executions, successes, elapsed, "", jb_str(&ev),
			     "no instruction/width succeeded 8 times: nothing to analyse");
	jb_printf(&summary, ": none constant, zeros, all-ones and repeats as rare as from a random source");
	probe_finish(PROBE_PASS, executions, successes, elapsed, "", jb_str(&ev), jb_str(&summary));
}
