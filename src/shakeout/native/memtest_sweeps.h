/*
 * memtest_sweeps.h — memtest's hot loops, written once over a native vector and compiled once
 * per instruction set. memtest.c includes this file once per set (so it has no include guard)
 * after defining:
 *   SWEEP(name)         this set's name for a function: name ## _avx512 and so on
 *   SWEEP_TARGET        its target attribute (empty for the baseline)
 *   VEC                 GCC's generic vector of uint64_t as wide as the set's registers
 *   vec_stream(p, v)    store v at p (aligned), non-temporally where the machine can
 *   vec_nonzero(v)      whether any bit of v is set
 * Each inclusion ends with `SWEEP(sweeps)`, the `struct sweeps` naming its four entry points.
 *
 * Why this shape: the old loops went one 64-bit word at a time, with a compare, a branch and a
 * store per word; at 1 GiB they ran at a fraction of the machine's copy bandwidth. Here every
 * sweep moves whole 64-byte lines (LINE_WORDS words: a cache line, and what DRAM reads and
 * writes in one burst): a line is VECS_PER_LINE vectors (loops over them are unrolled), the
 * expected line is generated in registers, the words read are XORed with it and the
 * differences ORed, and one test per line decides. Only a line with a difference leaves the
 * fast path: the kernel hands back the line as it was read (not read again) and where it was,
 * and memtest.c reports each wrong word with its exact bits, then calls again past that line.
 * No function call and no branch per word.
 *
 * Patterns (struct pattern, memtest.c) are generated the same way on every instruction set, so
 * a word's expected value never depends on the vector width: periodic (word i holds
 * table[i mod 64]: constants and walking bits), address (the word's own address XOR a mask),
 * random (eight xorshift64* lanes, word i from lane i mod 8, each lane advancing once per line)
 * and mix (word j holds mix(seed + (j + offset) mod h): block move's source and its rotated copy).
 *
 * Invariants: `a` is 64-byte aligned and n a multiple of LINE_WORDS (slices are whole pages);
 * copy's source may be unaligned; the pattern's state is advanced past every line handled.
 */

#define VEC_WORDS ((int)(sizeof(VEC) / sizeof(uint64_t)))
#define VECS_PER_LINE (LINE_WORDS / VEC_WORDS)

/* A pattern's state in registers while a sweep runs. */
struct SWEEP(gen) {
	const VEC *table;         /* periodic: 64 words, read from the L1 cache */
	VEC lanes[VECS_PER_LINE]; /* random */
	VEC at;                   /* address: addresses; mix: pattern indexes */
	VEC step, invert, offset, h, seed;
	uint64_t line; /* periodic: the line of the table next */
};

static inline __attribute__((always_inline)) SWEEP_TARGET VEC SWEEP(splat)(uint64_t x)
{
	VEC v;
	#pragma GCC unroll 8
	for (int k = 0; k < VEC_WORDS; k++)
		v[k] = x;
	return v;
}

static inline __attribute__((always_inline)) SWEEP_TARGET VEC SWEEP(counting)(uint64_t first, uint64_t step)
{
	VEC v;
	#pragma GCC unroll 8
	for (int k = 0; k < VEC_WORDS; k++)
		v[k] = first + (uint64_t)k * step;
	return v;
}

/* The pattern's state at a[0]; kind (pt->kind) is a constant where this is inlined, as below. */
static inline __attribute__((always_inline)) SWEEP_TARGET void SWEEP(gen_start)(struct SWEEP(gen) *g,
										const struct pattern *pt,
										const uint64_t *a,
										enum pattern_kind kind)
{
	switch (kind) {
	case P_PERIODIC:
		g->table = (const VEC *)pt->table;
		g->line = pt->index / LINE_WORDS % 8;
		break;
	case P_ADDRESS:
		g->at = SWEEP(counting)((uint64_t)(uintptr_t)a, sizeof(uint64_t));
		g->step = SWEEP(splat)(sizeof(VEC));
		g->invert = SWEEP(splat)(pt->invert);
		break;
	case P_RANDOM:
		__builtin_memcpy(g->lanes, pt->lanes, sizeof g->lanes);
		break;
	case P_MIX:
		g->at = SWEEP(counting)(pt->index, 1);
		g->step = SWEEP(splat)(VEC_WORDS);
		g->offset = SWEEP(splat)(pt->offset);
		g->h = SWEEP(splat)(pt->h);
		g->seed = SWEEP(splat)(pt->seed);
		break;
	}
}

static inline __attribute__((always_inline)) SWEEP_TARGET void SWEEP(gen_save)(const struct SWEEP(gen) *g,
									       struct pattern *pt, size_t words,
									       enum pattern_kind kind)
{
	pt->index += words;
	if (kind == P_RANDOM)
		__builtin_memcpy(pt->lanes, g->lanes, sizeof g->lanes);
}

/*
 * mix() of memtest.c, lane by lane. 128-bit vectors (SSE2, NEON) have no 64-bit multiply and
 * emulating it costs more than two scalar multiplies, so they take the scalar mix().
 */
static inline __attribute__((always_inline)) SWEEP_TARGET VEC SWEEP(mix)(VEC x)
{
	if (VEC_WORDS == 2) {
#pragma GCC unroll 2
		for (int k = 0; k < VEC_WORDS; k++)
			x[k] = mix(x[k]);
		return x;
	}
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

/* The next line of the pattern. */
static inline __attribute__((always_inline)) SWEEP_TARGET void SWEEP(gen_line)(struct SWEEP(gen) *g,
									       enum pattern_kind kind,
									       VEC out[VECS_PER_LINE])
{
	#pragma GCC unroll 8
	for (int k = 0; k < VECS_PER_LINE; k++) {
		switch (kind) {
		case P_PERIODIC:
			out[k] = g->table[g->line * VECS_PER_LINE + (uint64_t)k];
			break;
		case P_ADDRESS:
			out[k] = g->at ^ g->invert;
			g->at += g->step;
			break;
		case P_RANDOM: {
			VEC x = g->lanes[k];
			x ^= x >> 12;
			x ^= x << 25;
			x ^= x >> 27;
			g->lanes[k] = x;
			out[k] = x * 0x2545F4914F6CDD1DULL;
			break;
		}
		case P_MIX: {
			/* (j + offset) mod h, as j < h and offset < h: subtract h, add it back if that went below 0 */
			VEC i = g->at + g->offset - g->h;
			i += (SWEEP(splat)(0) - (i >> 63)) & g->h;
			out[k] = SWEEP(mix)(g->seed + i);
			g->at += g->step;
			break;
		}
		}
	}
	if (kind == P_PERIODIC)
		g->line = (g->line + 1) % 8;
}

static inline __attribute__((always_inline)) SWEEP_TARGET void SWEEP(fill_kind)(uint64_t *a, size_t n,
										struct pattern *pt,
										enum pattern_kind kind)
{
	struct SWEEP(gen) g;
	SWEEP(gen_start)(&g, pt, a, kind);
	for (size_t i = 0; i < n; i += LINE_WORDS) {
		VEC want[VECS_PER_LINE];
		SWEEP(gen_line)(&g, kind, want);
		#pragma GCC unroll 8
		for (int k = 0; k < VECS_PER_LINE; k++)
			vec_stream(a + i + (size_t)(k * VEC_WORDS), want[k]);
	}
	SWEEP(gen_save)(&g, pt, n, kind);
}

/* Streams the pattern into a[0, n). */
static SWEEP_TARGET void SWEEP(fill)(uint64_t *a, size_t n, struct pattern *pt)
{
	switch (pt->kind) {
	case P_PERIODIC:
		SWEEP(fill_kind)(a, n, pt, P_PERIODIC);
		break;
	case P_ADDRESS:
		SWEEP(fill_kind)(a, n, pt, P_ADDRESS);
		break;
	case P_RANDOM:
		SWEEP(fill_kind)(a, n, pt, P_RANDOM);
		break;
	case P_MIX:
		SWEEP(fill_kind)(a, n, pt, P_MIX);
		break;
	}
}

/* Vector by vector, so the line stays in registers until a difference is found. */
static inline __attribute__((always_inline)) SWEEP_TARGET void SWEEP(save_line)(uint64_t *to,
										const VEC line[VECS_PER_LINE])
{
#pragma GCC unroll 8
	for (int k = 0; k < VECS_PER_LINE; k++)
#pragma GCC unroll 8
		for (int j = 0; j < VEC_WORDS; j++)
			to[k * VEC_WORDS + j] = line[k][j];
}

static inline __attribute__((always_inline)) SWEEP_TARGET size_t SWEEP(verify_kind)(const uint64_t *a, size_t n,
										     struct pattern *pt,
										     enum pattern_kind kind,
										     struct bad_line *bad)
{
	struct SWEEP(gen) g;
	SWEEP(gen_start)(&g, pt, a, kind);
	size_t i;
	for (i = 0; i < n; i += LINE_WORDS) {
		VEC want[VECS_PER_LINE], got[VECS_PER_LINE], diff = SWEEP(splat)(0);
		SWEEP(gen_line)(&g, kind, want);
		#pragma GCC unroll 8
		for (int k = 0; k < VECS_PER_LINE; k++) {
			got[k] = *(const VEC *)(a + i + (size_t)(k * VEC_WORDS));
			diff |= got[k] ^ want[k];
		}
		if (__builtin_expect(vec_nonzero(diff), 0)) {
			SWEEP(save_line)(bad->got, got);
			SWEEP(save_line)(bad->want, want);
			SWEEP(gen_save)(&g, pt, i + LINE_WORDS, kind);
			return i;
		}
	}
	SWEEP(gen_save)(&g, pt, n, kind);
	return n;
}

/*
 * Checks a[0, n) against the pattern. Returns n when every word matched; otherwise the offset
 * of the first line with a wrong word, that line as read and as expected in *bad, and the
 * pattern advanced past it.
 */
static SWEEP_TARGET size_t SWEEP(verify)(const uint64_t *a, size_t n, struct pattern *pt, struct bad_line *bad)
{
	switch (pt->kind) {
	case P_PERIODIC:
		return SWEEP(verify_kind)(a, n, pt, P_PERIODIC, bad);
	case P_ADDRESS:
		return SWEEP(verify_kind)(a, n, pt, P_ADDRESS, bad);
	case P_RANDOM:
		return SWEEP(verify_kind)(a, n, pt, P_RANDOM, bad);
	case P_MIX:
		return SWEEP(verify_kind)(a, n, pt, P_MIX, bad);
	}
	return n;
}

/* One moving-inversions step on a line: check it holds `expect`, then stream `write` over it. */
static inline __attribute__((always_inline)) SWEEP_TARGET int SWEEP(invert_line)(uint64_t *p, VEC expect, VEC write,
										 struct bad_line *bad)
{
	VEC got[VECS_PER_LINE], diff = SWEEP(splat)(0);
	#pragma GCC unroll 8
	for (int k = 0; k < VECS_PER_LINE; k++) {
		got[k] = *(const VEC *)(p + k * VEC_WORDS);
		diff |= got[k] ^ expect;
	}
	#pragma GCC unroll 8
	for (int k = 0; k < VECS_PER_LINE; k++)
		vec_stream(p + k * VEC_WORDS, write);
	if (__builtin_expect(!vec_nonzero(diff), 1))
		return 0;
	SWEEP(save_line)(bad->got, got);
	#pragma GCC unroll 8
	for (int k = 0; k < LINE_WORDS; k++)
		bad->want[k] = expect[0];
	return 1;
}

/*
 * Moving inversions over a[0, n), a line at a time, ascending or descending: every word must
 * hold `expect` and then gets `write`. Returns n when all held, otherwise the offset of the
 * first line (in the sweep's direction) that did not, with *bad as for verify; that line has
 * been written, and the caller goes on past it.
 */
static SWEEP_TARGET size_t SWEEP(invert)(uint64_t *a, size_t n, uint64_t expect, uint64_t write, int descending,
					 struct bad_line *bad)
{
	VEC e = SWEEP(splat)(expect), w = SWEEP(splat)(write);
	if (descending) {
		for (size_t i = n; i > 0;) {
			i -= LINE_WORDS;
			if (SWEEP(invert_line)(a + i, e, w, bad))
				return i;
		}
	} else {
		for (size_t i = 0; i < n; i += LINE_WORDS)
			if (SWEEP(invert_line)(a + i, e, w, bad))
				return i;
	}
	return n;
}

/* dst[0, n) = src[0, n), streamed; src may be unaligned. */
static SWEEP_TARGET void SWEEP(copy)(uint64_t *dst, const uint64_t *src, size_t n)
{
	for (size_t i = 0; i < n; i += LINE_WORDS) {
		VEC line[VECS_PER_LINE];
		__builtin_memcpy(line, src + i, sizeof line);
		#pragma GCC unroll 8
		for (int k = 0; k < VECS_PER_LINE; k++)
			vec_stream(dst + i + (size_t)(k * VEC_WORDS), line[k]);
	}
}

static const struct sweeps SWEEP(sweeps) = {
	SWEEP_NAME, SWEEP(fill), SWEEP(verify), SWEEP(invert), SWEEP(copy),
};

#undef VEC_WORDS
#undef VECS_PER_LINE
/* Each inclusion defines its own set: the next one may define these afresh. */
#undef SWEEP_SET
#undef SWEEP_NAME
#undef SWEEP_TARGET
#undef VEC
#undef vec_stream
#undef vec_nonzero
