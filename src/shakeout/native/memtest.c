/*
 * memtest — a user-space RAM tester over locked memory: find weak cells from a running system.
 *
 * Detects: DRAM cells that do not hold their value (stuck, coupled or leaky bits), the
 * "impossible" crashes of seed 002's machine, where Memtest86+ found one weak bit that its
 * moving-inversions test with a random pattern caught fastest, and only with heat.
 *
 * Method: one buffer (mmap + mlock, so every page is resident RAM and stays put), cut into
 * one slice per thread; each thread is pinned to its own CPU and tests its slice; between
 * passes the slices rotate (thread t tests slice (t + pass) mod N), so every slice is
 * driven by every CPU. The threads run the same test at the same time (a barrier between
 * tests), as Memtest86+ does in SMP mode. Tests, in order (--tests picks a subset):
 *   address       own address, then its complement, in every word (address-line faults)
 *   walking       walking ones and zeros: in round r word i holds 1 << ((i + r) mod 64),
 *                 then its complement; 8 rounds per pass, every bit position every 8 passes
 *   mov-inv       moving inversions with fixed patterns 0 and 0x5555...: fill p; ascending,
 *                 check p and write ~p; descending, check ~p and write p
 *   mov-inv-rand  moving inversions with a random pattern (new each pass), two rounds
 *   block-move    fill the slice's first half, copy it rotated into the second half and
 *                 back, check both; a wrong copy of a source word that was already wrong
 *                 in the same way is attributed to the source cell and not reported again
 *                 (Memtest86+'s block move multiplies one weak cell into several reports)
 *   random        a pseudo-random stream, regenerated to check
 *   bit-fade      (not by default) fill 0, wait --fade-wait s, check; same with ~0
 *
 * Reaching DRAM, not the cache: on x86-64 every store is non-temporal (MOVNTDQ, as wide as
 * the CPU allows: SSE2, AVX2 or AVX-512, chosen at start and named in the evidence as
 * `vector`): it goes through the write-combining buffers to memory and evicts the line from
 * the caches, so the next load of that word is served from DRAM. An SFENCE ends each sweep,
 * so all of it is in memory before anything checks it. A mismatch is re-read after CLFLUSH:
 * `reread` tells a cell that holds the wrong value (reread = observed) from a transient on
 * the read path (reread = expected). Elsewhere stores are plain and buffers much larger than
 * the caches are what reaches DRAM (say so in the evidence: `non_temporal`).
 *
 * Speed: the sweeps (memtest_sweeps.h) move whole 64-byte lines in vector registers and
 * test one line at a time; only a line with a wrong word goes word by word, to report it.
 * Moving inversions check and rewrite a line at a time, the unit DRAM reads and writes.
 *
 * Each error line: {"event":"error"} with test, pass, virtual and physical address (from
 * /proc/self/pagemap, which shows frame numbers only to CAP_SYS_ADMIN: without it the
 * physical address is null and the setup event says why), expected, observed, reread,
 * the XOR and its bit numbers, the CPU and seconds since the start. After --max-error-lines
 * lines errors are only counted. With --announce N the probe names one word of its buffer in
 * a {"event":"target"} line, asking selftest's outside bit-flipper (process_vm_writev) for N
 * flips of it.
 *
 * Invariants: nothing is reported that was not read back wrong; bytes_verified counts only
 * words actually compared; the buffer is unlocked and freed by exit, including SIGKILL.
 * References: Memtest86+ test descriptions; memtester (Charles Cazabon); seed 002.
 */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define NON_TEMPORAL 1
#else
#define NON_TEMPORAL 0
#endif

#define CHUNK_WORDS (32 * 1024) /* 256 KiB: progress and stop are checked per chunk */
#define LINE_WORDS 8 /* 64 bytes: a cache line, a DRAM burst, the unit of every sweep */
#define MAX_SAMPLES 64 /* errors kept in full for the result line */
#define MAX_THREADS 1024
#define FADE_STEP_US 50000

enum test_id { T_ADDRESS, T_WALKING, T_MOVINV, T_MOVINV_RAND, T_BLOCK_MOVE, T_RANDOM, T_BIT_FADE, T_COUNT };

struct test_def {
	const char *name;
	double verifies; /* words compared per slice word in one pass (for the ETA) */
};

static const struct test_def tests[T_COUNT] = {
	[T_ADDRESS] = { "address", 2 },        [T_WALKING] = { "walking", 16 },
	[T_MOVINV] = { "mov-inv", 4 },         [T_MOVINV_RAND] = { "mov-inv-rand", 4 },
	[T_BLOCK_MOVE] = { "block-move", 1.5 }, [T_RANDOM] = { "random", 1 },
	[T_BIT_FADE] = { "bit-fade", 2 },
};
static const char *const test_names[T_COUNT + 1] = { "address", "walking", "mov-inv", "mov-inv-rand",
						     "block-move", "random", "bit-fade", NULL };

struct sample {
	const char *test;
	long pass;
	uint64_t virt, phys, expected, observed, reread;
	int cpu, has_phys;
	double after_s;
};

struct worker {
	pthread_t thread;
	int index, cpu;
	volatile uint64_t words_verified, sweeps;
	uint64_t rng;
	long pass;
	uint64_t *bad_src[64]; /* block-move: source words found wrong in this round */
	uint64_t bad_src_value[64];
	int nbad_src;
	uint64_t *source, *copy; /* block-move: copy[j] holds source[(j + copy_offset) mod half] */
	size_t half, copy_offset;
} __attribute__((aligned(64)));

/* A barrier whose last arrival decides, once for all, whether to go on. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int waiting, parties;
	unsigned long generation;
	int verdict_stop;
};

static struct {
	uint64_t *buf;
	size_t words, slice_words;
	int nthreads, locked, pagemap_fd, has_phys;
	const char *phys_reason;
	int enabled[T_COUNT];
	long long passes;
	double fade_wait_s, t0;
	long long max_error_lines;
	uint64_t seed;
	volatile int stop, done;
	volatile long passes_done;
	volatile int current_test;
	pthread_mutex_t report_lock;
	uint64_t errors, error_lines, propagated;
	int nsamples;
	struct sample samples[MAX_SAMPLES];
	struct gate gate;
	struct worker *workers;
	const struct sweeps *sweeps;
} g = { .pagemap_fd = -1 };

/* ---- memory access that reaches DRAM -------------------------------------------------- */

static inline void end_sweep(void)
{
#if NON_TEMPORAL
	_mm_sfence();
#else
	__sync_synchronize();
#endif
	__asm__ volatile("" ::: "memory");
}

static uint64_t reread_from_dram(const uint64_t *p)
{
#if NON_TEMPORAL
	_mm_clflush((const void *)p);
	_mm_mfence();
#elif defined(__aarch64__)
	__asm__ volatile("dc civac, %0\n dsb sy" ::"r"(p) : "memory");
#endif
	return *(const volatile uint64_t *)p;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

/* ---- patterns: what a sweep writes and then expects, word by word ------------------------ */

enum pattern_kind { P_PERIODIC, P_ADDRESS, P_RANDOM, P_MIX };

struct pattern {
	uint64_t table[64] __attribute__((aligned(64))); /* periodic: word i holds table[i mod 64] */
	uint64_t lanes[LINE_WORDS]; /* random: xorshift64* states; word i comes from lane i mod 8 */
	enum pattern_kind kind;
	uint64_t index;           /* periodic, mix: the index of the next word */
	uint64_t invert;          /* address: XORed into each word's own address */
	uint64_t seed, offset, h; /* mix: word j holds mix(seed + (j + offset) mod h) */
};

/* A line the fast path found wrong: as it was read, and as it should have been. */
struct bad_line {
	uint64_t got[LINE_WORDS], want[LINE_WORDS];
};

/* The hot loops for one instruction set (memtest_sweeps.h). */
struct sweeps {
	const char *name;
	void (*fill)(uint64_t *a, size_t n, struct pattern *pt);
	size_t (*verify)(const uint64_t *a, size_t n, struct pattern *pt, struct bad_line *bad);
	size_t (*invert)(uint64_t *a, size_t n, uint64_t expect, uint64_t write, int descending, struct bad_line *bad);
	void (*copy)(uint64_t *dst, const uint64_t *src, size_t n);
};

static struct pattern *pattern_new(struct pattern *pt, enum pattern_kind kind)
{
	memset(pt, 0, sizeof *pt);
	pt->kind = kind;
	return pt;
}

static struct pattern *pattern_const(struct pattern *pt, uint64_t v)
{
	pattern_new(pt, P_PERIODIC);
	for (int j = 0; j < 64; j++)
		pt->table[j] = v;
	return pt;
}

/* Word i holds 1 << ((i + shift) mod 64), XOR invert. */
static struct pattern *pattern_walking(struct pattern *pt, uint64_t shift, uint64_t invert)
{
	pattern_new(pt, P_PERIODIC);
	for (uint64_t j = 0; j < 64; j++)
		pt->table[j] = 1ULL << ((j + shift) & 63) ^ invert;
	return pt;
}

static struct pattern *pattern_address(struct pattern *pt, uint64_t invert)
{
	pattern_new(pt, P_ADDRESS)->invert = invert;
	return pt;
}

static struct pattern *pattern_random(struct pattern *pt, uint64_t seed)
{
	pattern_new(pt, P_RANDOM);
	for (int k = 0; k < LINE_WORDS; k++)
		pt->lanes[k] = mix(seed + (uint64_t)k) | 1; /* xorshift's state must not be 0 */
	return pt;
}

static struct pattern *pattern_mix(struct pattern *pt, uint64_t seed, size_t offset, size_t h)
{
	pattern_new(pt, P_MIX);
	pt->seed = seed;
	pt->offset = offset;
	pt->h = h;
	return pt;
}

/* ---- the hot loops, once per instruction set ---------------------------------------------- */

#define SWEEP_PASTE(name, set) name##_##set
#define SWEEP_EXPAND(name, set) SWEEP_PASTE(name, set)
#define SWEEP(name) SWEEP_EXPAND(name, SWEEP_SET)
typedef uint64_t v2u __attribute__((vector_size(16)));

#if defined(__x86_64__)
typedef uint64_t v4u __attribute__((vector_size(32)));
typedef uint64_t v8u __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) void stream_sse2(uint64_t *p, v2u v)
{
	_mm_stream_si128((__m128i *)p, (__m128i)v);
}

static inline __attribute__((always_inline)) int nonzero_sse2(v2u v)
{
	return _mm_movemask_epi8(_mm_cmpeq_epi8((__m128i)v, _mm_setzero_si128())) != 0xffff;
}

static inline __attribute__((always_inline, target("avx2"))) void stream_avx2(uint64_t *p, v4u v)
{
	_mm256_stream_si256((__m256i *)p, (__m256i)v);
}

static inline __attribute__((always_inline, target("avx2"))) int nonzero_avx2(v4u v)
{
	return !_mm256_testz_si256((__m256i)v, (__m256i)v);
}

static inline __attribute__((always_inline, target("avx512f"))) void stream_avx512(uint64_t *p, v8u v)
{
	_mm512_stream_si512((void *)p, (__m512i)v);
}

static inline __attribute__((always_inline, target("avx512f"))) int nonzero_avx512(v8u v)
{
	return _mm512_test_epi64_mask((__m512i)v, (__m512i)v) != 0;
}

#define SWEEP_SET sse2
#define SWEEP_NAME "sse2"
#define SWEEP_TARGET
#define VEC v2u
#define vec_stream stream_sse2
#define vec_nonzero nonzero_sse2
#include "memtest_sweeps.h"

#define SWEEP_SET avx2
#define SWEEP_NAME "avx2"
#define SWEEP_TARGET __attribute__((target("avx2")))
#define VEC v4u
#define vec_stream stream_avx2
#define vec_nonzero nonzero_avx2
#include "memtest_sweeps.h"

#define SWEEP_SET avx512
#define SWEEP_NAME "avx512"
#define SWEEP_TARGET __attribute__((target("avx512f")))
#define VEC v8u
#define vec_stream stream_avx512
#define vec_nonzero nonzero_avx512
#include "memtest_sweeps.h"

/*
 * The widest set this CPU (and its kernel: libgcc checks XCR0) runs. SHAKEOUT_MEMTEST_VECTOR
 * (sse2 or avx2) caps it, so the tests and the benchmark can run every set on one machine.
 */
static const struct sweeps *pick_sweeps(void)
{
	const char *cap = getenv("SHAKEOUT_MEMTEST_VECTOR");
	int widest = !cap ? 2 : !strcmp(cap, "sse2") ? 0 : !strcmp(cap, "avx2") ? 1 : 2;
	__builtin_cpu_init();
	if (widest >= 2 && __builtin_cpu_supports("avx512f"))
		return &sweeps_avx512;
	if (widest >= 1 && __builtin_cpu_supports("avx2"))
		return &sweeps_avx2;
	return &sweeps_sse2;
}
#else
/* Plain stores: there is no portable non-temporal store, so buffers larger than the caches reach DRAM. */
static inline __attribute__((always_inline)) void stream_plain(uint64_t *p, v2u v)
{
	*(v2u *)p = v;
}

static inline __attribute__((always_inline)) int nonzero_plain(v2u v)
{
	return (v[0] | v[1]) != 0;
}

#define SWEEP_SET generic
#define SWEEP_NAME "generic"
#define SWEEP_TARGET
#define VEC v2u
#define vec_stream stream_plain
#define vec_nonzero nonzero_plain
#include "memtest_sweeps.h"

static const struct sweeps *pick_sweeps(void)
{
	return &sweeps_generic;
}
#endif

/* ---- errors ---------------------------------------------------------------------------- */

static int virt_to_phys(const void *p, uint64_t *phys)
{
	if (!g.has_phys)
		return 0;
	long page = sysconf(_SC_PAGESIZE);
	uint64_t v = (uint64_t)(uintptr_t)p, entry;
	if (pread(g.pagemap_fd, &entry, sizeof entry, (off_t)(v / (uint64_t)page * 8)) != (ssize_t)sizeof entry)
		return 0;
	uint64_t pfn = entry & ((1ULL << 55) - 1);
	if (!(entry >> 63) || !pfn)
		return 0;
	*phys = pfn * (uint64_t)page + v % (uint64_t)page;
	return 1;
}

/* The fields of one error, as a JSON object body (shared by error lines and the result). */
static void jb_error(struct jbuf *b, const struct sample *s)
{
	uint64_t x = s->expected ^ s->observed;
	jb_printf(b, "\"test\":\"%s\",\"pass\":%ld,\"virt\":\"0x%llx\",\"phys\":", s->test, s->pass,
		  (unsigned long long)s->virt);
	if (s->has_phys)
		jb_printf(b, "\"0x%llx\"", (unsigned long long)s->phys);
	else
		jb_printf(b, "null");
	jb_printf(b, ",\"expected\":\"0x%016llx\",\"observed\":\"0x%016llx\",\"reread\":\"0x%016llx\",\"xor\":\"0x%016llx\",\"bits\":[",
		  (unsigned long long)s->expected, (unsigned long long)s->observed, (unsigned long long)s->reread,
		  (unsigned long long)x);
	for (int bit = 0, n = 0; bit < 64; bit++)
		if (x >> bit & 1)
			jb_printf(b, "%s%d", n++ ? "," : "", bit);
	jb_printf(b, "],\"cpu\":%d,\"after_s\":%.6f", s->cpu, s->after_s);
}

static void emit_error_line(const struct sample *s)
{
	struct jbuf b = { 0 };
	jb_printf(&b, "{\"event\":\"error\",");
	jb_error(&b, s);
	jb_printf(&b, "}\n");
	jb_emit_line(&b);
}

static void report(struct worker *w, const char *test, uint64_t *p, uint64_t expected, uint64_t observed)
{
	pthread_mutex_lock(&g.report_lock);
	g.errors++;
	if (g.error_lines < (uint64_t)g.max_error_lines) {
		struct sample s = { .test = test, .pass = w->pass, .virt = (uint64_t)(uintptr_t)p, .expected = expected,
				    .observed = observed, .cpu = sched_getcpu(), .after_s = probe_now_s() - g.t0 };
		s.reread = reread_from_dram(p);
		s.has_phys = virt_to_phys(p, &s.phys);
		g.error_lines++;
		emit_error_line(&s);
		if (g.nsamples < MAX_SAMPLES)
			g.samples[g.nsamples++] = s;
	}
	pthread_mutex_unlock(&g.report_lock);
}

/* ---- sweeps: chunk by chunk, each checks g.stop per chunk and returns 0 when told to stop -- */

static int stopped(void)
{
	return __atomic_load_n(&g.stop, __ATOMIC_RELAXED);
}

static int chunk_done(struct worker *w, size_t verified_words)
{
	w->words_verified += verified_words;
	return !stopped();
}

static size_t chunk_at(size_t c, size_t n)
{
	return n - c < CHUNK_WORDS ? n - c : CHUNK_WORDS;
}

static int fill(uint64_t *a, size_t n, struct pattern *pt)
{
	for (size_t c = 0; c < n && !stopped(); c += CHUNK_WORDS)
		g.sweeps->fill(a + c, chunk_at(c, n), pt);
	end_sweep();
	return !stopped();
}

/* What to do with one wrong word: report it (block move may first trace it to its source). */
typedef void wrong_word_fn(struct worker *w, const char *test, uint64_t *p, uint64_t expected, uint64_t observed);

static void report_line(struct worker *w, const char *test, uint64_t *p, const struct bad_line *bad,
			wrong_word_fn *wrong_word)
{
	for (int k = 0; k < LINE_WORDS; k++)
		if (bad->got[k] != bad->want[k])
			wrong_word(w, test, p + k, bad->want[k], bad->got[k]);
}

static int verify(struct worker *w, const char *test, uint64_t *a, size_t n, struct pattern *pt,
		  wrong_word_fn *wrong_word)
{
	struct bad_line bad;
	for (size_t c = 0; c < n; c += CHUNK_WORDS) {
		size_t len = chunk_at(c, n);
		for (size_t done = 0, at; done < len; done += at + LINE_WORDS) {
			at = g.sweeps->verify(a + c + done, len - done, pt, &bad);
			if (at == len - done)
				break;
			report_line(w, test, a + c + done + at, &bad, wrong_word);
		}
		if (!chunk_done(w, len))
			return 0;
	}
	return 1;
}

static int pattern_test(struct worker *w, const char *test, uint64_t *a, size_t n, const struct pattern *pt)
{
	struct pattern writing = *pt, checking = *pt;
	return fill(a, n, &writing) && verify(w, test, a, n, &checking, report);
}

/* Moving inversions, one direction: every word must hold `expect`; it then gets `write`. */
static int movinv_sweep(struct worker *w, const char *test, uint64_t *a, size_t n, uint64_t expect, uint64_t write,
			int descending)
{
	struct bad_line bad;
	for (size_t c = 0; c < n; c += CHUNK_WORDS) {
		size_t len = chunk_at(c, n), at;
		uint64_t *base = descending ? a + (n - c - len) : a + c;
		if (descending) {
			for (size_t left = len; (at = g.sweeps->invert(base, left, expect, write, 1, &bad)) < left; left = at)
				report_line(w, test, base + at, &bad, report);
		} else {
			for (size_t done = 0; done < len; done += at + LINE_WORDS) {
				at = g.sweeps->invert(base + done, len - done, expect, write, 0, &bad);
				if (at == len - done)
					break;
				report_line(w, test, base + done + at, &bad, report);
			}
		}
		if (!chunk_done(w, len))
			return 0;
	}
	end_sweep();
	return 1;
}

static int moving_inversions(struct worker *w, const char *test, uint64_t *a, size_t n, uint64_t p, int rounds)
{
	struct pattern fixed;
	if (!fill(a, n, pattern_const(&fixed, p)))
		return 0;
	for (int r = 0; r < rounds; r++)
		if (!movinv_sweep(w, test, a, n, p, ~p, 0) || !movinv_sweep(w, test, a, n, ~p, p, 1))
			return 0;
	return 1;
}

/* ---- block move -------------------------------------------------------------------------- */

static void copy_chunked(uint64_t *dst, const uint64_t *src, size_t n)
{
	for (size_t c = 0; c < n && !stopped(); c += CHUNK_WORDS)
		g.sweeps->copy(dst + c, src + c, chunk_at(c, n));
}

/*
 * dst[j] = src[(j + offset) mod h] for every j < h (0 < offset < h): two straight runs, and
 * between them the one line where the source wraps, gathered word by word.
 */
static int copy_rotation(uint64_t *dst, const uint64_t *src, size_t h, size_t offset)
{
	size_t wrap = h - offset; /* dst[j] comes from src[j + offset] below wrap, from src[j + offset - h] above */
	size_t head = wrap / LINE_WORDS * LINE_WORDS, tail = head + LINE_WORDS;
	uint64_t line[LINE_WORDS];
	for (size_t k = 0; k < LINE_WORDS; k++) {
		size_t from = head + k + offset;
		line[k] = src[from < h ? from : from - h];
	}
	copy_chunked(dst, src + offset, head);
	g.sweeps->copy(dst + head, line, LINE_WORDS);
	copy_chunked(dst + tail, src + tail + offset - h, h - tail);
	end_sweep();
	return !stopped();
}

static void wrong_source_word(struct worker *w, const char *test, uint64_t *p, uint64_t expected, uint64_t observed)
{
	report(w, test, p, expected, observed);
	if (w->nbad_src < 64) {
		w->bad_src[w->nbad_src] = p;
		w->bad_src_value[w->nbad_src++] = observed;
	}
}

/* A wrong copy of a source word that was read wrong in the same way is that cell's, not another. */
static void wrong_copy_word(struct worker *w, const char *test, uint64_t *p, uint64_t expected, uint64_t observed)
{
	size_t from = (size_t)(p - w->copy) + w->copy_offset;
	const uint64_t *src = w->source + (from < w->half ? from : from - w->half);
	for (int k = 0; k < w->nbad_src; k++)
		if (w->bad_src[k] == src && w->bad_src_value[k] == observed) {
			__atomic_add_fetch(&g.propagated, 1, __ATOMIC_RELAXED);
			return;
		}
	report(w, test, p, expected, observed);
}

static int verify_block_source(struct worker *w, uint64_t *a, size_t h, uint64_t seed)
{
	struct pattern source;
	w->nbad_src = 0;
	return verify(w, "block-move", a, h, pattern_mix(&source, seed, 0, h), wrong_source_word);
}

/*
 * Fill the first half a with pattern words mix(seed + i), copy it rotated into the second half
 * b (b[(i + shift) mod h] = a[i]), check both, copy back (a[i] = b[(i + shift) mod h]), check a.
 */
static int block_move(struct worker *w, uint64_t *a, size_t n, uint64_t seed)
{
	size_t h = n / 2, shift = 1024 / sizeof(uint64_t) + 1; /* 1 KiB and a word: another row and column */
	uint64_t *b = a + h;
	struct pattern source, copy;
	w->source = a;
	w->copy = b;
	w->half = h;
	w->copy_offset = h - shift; /* b[j] holds pattern word (j + h - shift) mod h */
	return fill(a, h, pattern_mix(&source, seed, 0, h)) && copy_rotation(b, a, h, h - shift) &&
	       verify_block_source(w, a, h, seed) &&
	       verify(w, "block-move", b, h, pattern_mix(&copy, seed, h - shift, h), wrong_copy_word) &&
	       copy_rotation(a, b, h, shift) && verify_block_source(w, a, h, seed);
}

/* ---- bit fade ---------------------------------------------------------------------------- */

static int fade_wait(void)
{
	double until = probe_now_s() + g.fade_wait_s;
	while (probe_now_s() < until)
		if (stopped())
			return 0;
		else
			usleep(FADE_STEP_US);
	return 1;
}

static int fade_test(struct worker *w, uint64_t *a, size_t n, uint64_t v)
{
	struct pattern writing, checking;
	return fill(a, n, pattern_const(&writing, v)) && fade_wait() &&
	       verify(w, "bit-fade", a, n, pattern_const(&checking, v), report);
}

static int bit_fade(struct worker *w, uint64_t *a, size_t n)
{
	return fade_test(w, a, n, 0) && fade_test(w, a, n, ~0ULL);
}

/* ---- one test on one slice --------------------------------------------------------------- */

static int run_test(struct worker *w, enum test_id t, uint64_t *a, size_t n)
{
	const char *name = tests[t].name;
	uint64_t seed = g.seed ^ mix((uint64_t)w->pass * 7919 + (uint64_t)w->index);
	struct pattern pt;
	switch (t) {
	case T_ADDRESS:
		return pattern_test(w, name, a, n, pattern_address(&pt, 0)) &&
		       pattern_test(w, name, a, n, pattern_address(&pt, ~0ULL));
	case T_WALKING:
		for (uint64_t r = 0; r < 8; r++) {
			uint64_t shift = r + 8 * (uint64_t)(w->pass % 8);
			if (!pattern_test(w, name, a, n, pattern_walking(&pt, shift, 0)) ||
			    !pattern_test(w, name, a, n, pattern_walking(&pt, shift, ~0ULL)))
				return 0;
		}
		return 1;
	case T_MOVINV:
		return moving_inversions(w, name, a, n, 0, 1) &&
		       moving_inversions(w, name, a, n, 0x5555555555555555ULL, 1);
	case T_MOVINV_RAND:
		return moving_inversions(w, name, a, n, mix(seed) | 1, 2);
	case T_BLOCK_MOVE:
		return block_move(w, a, n, seed);
	case T_RANDOM:
		return pattern_test(w, name, a, n, pattern_random(&pt, seed | 1));
	case T_BIT_FADE:
		return bit_fade(w, a, n);
	default:
		return 0;
	}
}

/* Everyone arrives; the last one reads g.stop once, and that answer is everyone's. */
static int gate_pass(struct gate *gt)
{
	pthread_mutex_lock(&gt->lock);
	unsigned long gen = gt->generation;
	if (++gt->waiting == gt->parties) {
		gt->waiting = 0;
		gt->verdict_stop = __atomic_load_n(&g.stop, __ATOMIC_SEQ_CST);
		gt->generation++;
		pthread_cond_broadcast(&gt->cond);
	} else {
		while (gen == gt->generation)
			pthread_cond_wait(&gt->cond, &gt->lock);
	}
	int stop = gt->verdict_stop;
	pthread_mutex_unlock(&gt->lock);
	return stop;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof set, &set);
	for (long pass = 0; g.passes == 0 || pass < g.passes; pass++) {
		w->pass = pass + 1;
		uint64_t *slice = g.buf + g.slice_words * (size_t)((w->index + pass) % g.nthreads);
		for (int t = 0; t < T_COUNT; t++) {
			if (!g.enabled[t])
				continue;
			if (gate_pass(&g.gate))
				return NULL;
			if (w->index == 0)
				g.current_test = t;
			if (run_test(w, (enum test_id)t, slice, g.slice_words))
				w->sweeps++;
		}
		if (gate_pass(&g.gate))
			return NULL;
		if (w->index == 0)
			g.passes_done = pass + 1;
	}
	return NULL;
}

/* ---- setup: buffer, lock, physical addresses --------------------------------------------- */

/* The command line beyond what lands in g directly. */
struct mt_opts {
	long long size, allow_unlocked, announce, seed, fade_wait_s;
	unsigned long long tests; /* a bit per enum test_id */
};

static struct mt_opts mo = { .seed = -1 };

static const struct probe_option options[] = {
	{ "size", PROBE_OPT_INT, 4096, 1LL << 44, NULL, "67108864", "bytes of memory to test", &mo.size, 0 },
	{ "tests", PROBE_OPT_LIST, 0, 0, test_names, "address,walking,mov-inv,mov-inv-rand,block-move,random",
	  "comma-separated tests to run (they run in a fixed order)", &mo.tests, 0 },
	{ "passes", PROBE_OPT_INT, 0, 1000000, NULL, "0", "passes over the tests (0: until the duration ends)",
	  &g.passes, 0 },
	{ "allow-unlocked", PROBE_OPT_INT, 0, 1, NULL, "0", "1: test even when mlock is refused (swapped pages are "
	  "then not RAM-tested)", &mo.allow_unlocked, 0 },
	{ "fade-wait", PROBE_OPT_INT, 0, 86400, NULL, "300", "bit-fade: seconds between writing and checking",
	  &mo.fade_wait_s, 0 },
	{ "max-error-lines", PROBE_OPT_INT, 0, 10000000, NULL, "1000",
	  "error lines printed at most (later errors are only counted)", &g.max_error_lines, 0 },
	{ "seed", PROBE_OPT_INT, 0, 0x7fffffff, NULL, NULL,
	  "seed of the random patterns (default: from the process id and the time)", &mo.seed, 0 },
	{ "announce", PROBE_OPT_INT, 0, 16, NULL, "0",
	  "selftest: name a word in a target line for an outside writer to flip this many times", &mo.announce,
	  PROBE_OPT_INTERNAL },
	{ 0 },
};

static const struct probe_def probe = {
	"memtest", "RAM cells that do not hold the values written to them, tested from user space",
	"threads, each pinned to its own CPU (default: one per CPU this process may use)", options,
};

static void describe_memlock(char *out, size_t len)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY)
		snprintf(out, len, "unlimited");
	else
		snprintf(out, len, "%llu bytes", (unsigned long long)rl.rlim_cur);
}

static void lock_buffer(size_t bytes, int allow_unlocked)
{
	if (mlock(g.buf, bytes) == 0) {
		g.locked = 1;
		return;
	}
	int err = errno;
	char limit[64], reason[768];
	describe_memlock(limit, sizeof limit);
	if (allow_unlocked) {
		fprintf(stderr, "memtest: mlock refused (%s; RLIMIT_MEMLOCK %s): testing unlocked; swapped pages are not RAM-tested\n",
			strerror(err), limit);
		return;
	}
	snprintf(reason, sizeof reason,
		 "mlock of %zu bytes refused (%s): RLIMIT_MEMLOCK is %s; raise it (ulimit -l unlimited, systemd "
		 "LimitMEMLOCK=infinity, docker run --ulimit memlock=-1), run as root (CAP_IPC_LOCK), test less "
		 "(--size), or pass --allow-unlocked (swapped-out pages are then not RAM-tested)",
		 bytes, strerror(err), limit);
	probe_finish(PROBE_BROKEN, 0, 0, 0.0, "", "\"locked\":false", reason);
}

static void open_pagemap(void)
{
	g.pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (g.pagemap_fd < 0) {
		g.phys_reason = "/proc/self/pagemap cannot be read here";
		return;
	}
	g.has_phys = 1;
	uint64_t phys;
	if (!virt_to_phys(g.buf, &phys)) {
		g.has_phys = 0;
		g.phys_reason = "physical addresses need root (the kernel shows page frame numbers in "
				"/proc/self/pagemap only to CAP_SYS_ADMIN); errors are reported by virtual address";
	}
}

static int pick_cpus(int *cpus, int want)
{
	cpu_set_t set;
	int n = 0;
	if (sched_getaffinity(0, sizeof set, &set) == 0)
		for (int c = 0; c < CPU_SETSIZE && n < MAX_THREADS; c++)
			if (CPU_ISSET(c, &set))
				cpus[n++] = c;
	if (n == 0)
		cpus[n++] = 0;
	return want ? want : n;
}

/* ---- reporting ----------------------------------------------------------------------------- */

static uint64_t words_verified(void)
{
	uint64_t sum = 0;
	for (int i = 0; i < g.nthreads; i++)
		sum += g.workers[i].words_verified;
	return sum;
}

static uint64_t sweeps_done(void)
{
	uint64_t sum = 0;
	for (int i = 0; i < g.nthreads; i++)
		sum += g.workers[i].sweeps;
	return sum;
}

static double verifies_per_pass(void)
{
	double v = 0;
	for (int t = 0; t < T_COUNT; t++)
		if (g.enabled[t])
			v += tests[t].verifies;
	return v;
}

/* The status line that follows each progress line. */
static void emit_status(double duration_s)
{
	double elapsed = probe_now_s() - g.t0;
	uint64_t bytes = words_verified() * 8;
	double rate = elapsed > 0 ? bytes / elapsed : 0;
	double remaining = duration_s - elapsed;
	if (g.passes && rate > 0) {
		double planned = verifies_per_pass() * (double)(g.words * 8) * (double)g.passes;
		double by_bytes = (planned - (double)bytes) / rate;
		remaining = by_bytes < remaining ? by_bytes : remaining;
	}
	pthread_mutex_lock(&g.report_lock);
	uint64_t errors = g.errors;
	pthread_mutex_unlock(&g.report_lock);
	printf("{\"event\":\"status\",\"bytes_verified\":%llu,\"gbps\":%.3f,\"pass\":%ld,\"passes\":%lld,\"test\":\"%s\","
	       "\"errors\":%llu,\"elapsed\":%.3f,\"eta_s\":%.1f}\n",
	       (unsigned long long)bytes, rate / 1e9, g.passes_done + 1, g.passes, tests[g.current_test].name,
	       (unsigned long long)errors, elapsed, remaining > 0 ? remaining : 0.0);
	fflush(stdout);
}

static __attribute__((noreturn)) void finish(double elapsed)
{
	uint64_t bytes = words_verified() * 8;
	struct jbuf m = { 0 }, e = { 0 };
	jb_printf(&m, "\"bytes_verified_per_s\":%.0f,\"gbps\":%.3f", elapsed > 0 ? bytes / elapsed : 0.0,
		  elapsed > 0 ? bytes / elapsed / 1e9 : 0.0);
	jb_printf(&e, "\"size_bytes\":%llu,\"locked\":%s,\"threads\":%d,\"passes_completed\":%ld,\"passes\":%lld,"
		  "\"bytes_verified\":%llu,\"errors\":%llu,\"error_lines\":%llu,\"propagated_copies\":%llu,"
		  "\"non_temporal\":%s,\"vector\":\"%s\",\"physical_addresses\":%s,\"tests\":[",
		  (unsigned long long)g.words * 8, g.locked ? "true" : "false", g.nthreads, g.passes_done, g.passes,
		  (unsigned long long)bytes, (unsigned long long)g.errors, (unsigned long long)g.error_lines,
		  (unsigned long long)g.propagated, NON_TEMPORAL ? "true" : "false", g.sweeps->name,
		  g.has_phys ? "true" : "false");
	for (int t = 0, n = 0; t < T_COUNT; t++)
		if (g.enabled[t])
			jb_printf(&e, "%s\"%s\"", n++ ? "," : "", tests[t].name);
	jb_printf(&e, "],\"cpus\":[");
	for (int i = 0; i < g.nthreads; i++)
		jb_printf(&e, "%s%d", i ? "," : "", g.workers[i].cpu);
	jb_printf(&e, "]");
	if (!g.has_phys && g.phys_reason) {
		jb_printf(&e, ",\"physical_reason\":");
		jb_string(&e, g.phys_reason);
	}
	if (g.nsamples) {
		jb_printf(&e, ",\"samples\":[");
		for (int i = 0; i < g.nsamples; i++) {
			jb_printf(&e, "%s{", i ? "," : "");
			jb_error(&e, &g.samples[i]);
			jb_printf(&e, "}");
		}
		jb_printf(&e, "]");
	}
	munlock(g.buf, g.words * 8);
	munmap(g.buf, g.words * 8);
	probe_finish(g.errors ? PROBE_FAIL : PROBE_PASS, sweeps_done(), bytes, elapsed, jb_str(&m), jb_str(&e),
		     g.errors ? "memory did not hold the values written to it" : NULL);
}

static int tick(void *ctx, double max_s)
{
	(void)ctx;
	probe_nap(max_s);
	return g.passes && g.passes_done >= g.passes;
}

static void count(void *ctx, uint64_t *iterations, uint64_t *exposures)
{
	(void)ctx;
	*iterations = sweeps_done();
	*exposures = words_verified() * 8;
}

static void after_progress(void *ctx, double elapsed_s)
{
	(void)elapsed_s;
	emit_status(((const struct probe_opts *)ctx)->duration_s);
}

static void emit_setup(void)
{
	char limit[64];
	describe_memlock(limit, sizeof limit);
	printf("{\"event\":\"setup\",\"pid\":%d,\"size_bytes\":%llu,\"slice_bytes\":%llu,\"threads\":%d,\"locked\":%s,"
	       "\"memlock_limit\":\"%s\",\"physical_addresses\":%s,\"non_temporal\":%s,\"vector\":\"%s\"}\n",
	       (int)getpid(), (unsigned long long)g.words * 8, (unsigned long long)g.slice_words * 8, g.nthreads,
	       g.locked ? "true" : "false", limit, g.has_phys ? "true" : "false", NON_TEMPORAL ? "true" : "false",
	       g.sweeps->name);
	if (mo.announce) {
		/*
		 * Selftest flips a bit of this word. Near the end of a slice: a fill-then-check test
		 * checks it a whole check sweep (the slow half) after filling it, so most flips
		 * land in a window where they are caught; moving inversions catch any.
		 */
		uint64_t *target = g.buf + g.words - 3;
		uint64_t phys;
		int has = virt_to_phys(target, &phys);
		printf("{\"event\":\"target\",\"pid\":%d,\"address\":\"0x%llx\",\"inject\":\"bit-flip\",\"flips\":%d,"
		       "\"phys\":",
		       (int)getpid(), (unsigned long long)(uintptr_t)target, (int)mo.announce);
		if (has)
			printf("\"0x%llx\"}\n", (unsigned long long)phys);
		else
			printf("null}\n");
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct probe_opts o = { 0 };
	probe_start(argc, argv, &probe, &o);
	for (int t = 0; t < T_COUNT; t++)
		g.enabled[t] = (int)(mo.tests >> t & 1);
	g.seed = mo.seed >= 0 ? mix((uint64_t)mo.seed + 1) : mix((uint64_t)getpid() ^ (uint64_t)(probe_now_s() * 1e6));
	g.fade_wait_s = (double)mo.fade_wait_s;

	static int cpus[MAX_THREADS];
	int ncpus = pick_cpus(cpus, 0);
	g.nthreads = o.workers ? (int)o.workers : ncpus;
	/* Slices are whole pages and an even number of words (block move halves them). */
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t slice_bytes = (size_t)((uint64_t)mo.size / (uint64_t)g.nthreads) / page * page;
	if (slice_bytes < page)
		probe_skip("--size is smaller than one page per thread");
	g.slice_words = slice_bytes / 8;
	g.words = g.slice_words * (size_t)g.nthreads;

	void *mem = mmap(NULL, g.words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		probe_broken("mmap of the test buffer", errno);
	g.buf = mem;
	g.sweeps = pick_sweeps();
	madvise(mem, g.words * 8, MADV_NOHUGEPAGE); /* 4 KiB pages: a physical address per page */
	lock_buffer(g.words * 8, (int)mo.allow_unlocked);
	struct pattern zero;
	fill(g.buf, g.words, pattern_const(&zero, 0)); /* touch every page, so each has a frame */
	open_pagemap();

	g.workers = calloc((size_t)g.nthreads, sizeof *g.workers);
	if (!g.workers)
		probe_broken("calloc", ENOMEM);
	pthread_mutex_init(&g.report_lock, NULL);
	pthread_mutex_init(&g.gate.lock, NULL);
	pthread_cond_init(&g.gate.cond, NULL);
	g.gate.parties = g.nthreads;
	for (int i = 0; i < g.nthreads; i++) {
		g.workers[i].index = i;
		g.workers[i].cpu = cpus[i % ncpus];
	}
	emit_setup();

	g.t0 = probe_now_s();
	for (int i = 0; i < g.nthreads; i++) {
		int err = pthread_create(&g.workers[i].thread, NULL, worker_main, &g.workers[i]);
		if (err)
			probe_broken("pthread_create", err);
	}
	struct probe_monitor monitor = { &o, tick, count, after_progress };
	probe_supervise(&o, g.t0, &monitor);
	__atomic_store_n(&g.stop, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < g.nthreads; i++)
		pthread_join(g.workers[i].thread, NULL);
	probe_emit_progress(sweeps_done(), words_verified() * 8, probe_now_s() - g.t0);
	emit_status(o.duration_s);
	finish(probe_now_s() - g.t0);
}
