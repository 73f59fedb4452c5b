/*
 * cpu_integrity — find the core that computes wrong ("mercurial" cores).
 *
 * Detects: a logical CPU whose execution units silently return wrong results for some
 * instructions (Google, "Cores that don't count", HotOS 2021; Meta, "Silent Data
 * Corruptions at Scale", 2021; Raptor Lake Vmin shift; early Ryzen under compile load).
 * Such a core corrupts a program's memory exactly as a kernel bug does.
 *
 * Method (after OpenDCDiag's design: deterministic seeded work, one pinned thread per
 * logical CPU, golden answers, re-test to localise): a battery of kernel families, each a
 * deterministic function of (seed, family, item) that writes a vector of 64-bit output
 * words, exercising one instruction family as hard as it can:
 *   fma      chains x = fma(x, m, a) in AVX-512F / AVX2 registers (|m| just below 1, so an
 *            error never decays), scalar fma on other machines
 *   intmul   64x64->128 multiply and 128/64 divide, checked by q*d + r == n and r < d
 *   aes      AES-NI AES-128 encrypt then decrypt (round trip) plus FIPS-197 C.1 each time
 *   sha      SHA-NI SHA-256 compression over 4 KiB (golden checked against portable C)
 *   crc32    SSE4.2 CRC32C over 16 KiB (golden checked against a table), KAT "123456789"
 *   clmul    PCLMULQDQ products (golden checked against a portable carry-less multiply)
 *   bits     POPCNT/LZCNT/TZCNT/PDEP/PEXT (golden checked against bit loops)
 *   lz       a small built-in LZ77 compress + decompress round trip of 8 KiB
 *   memcpy   256 KiB copied with non-temporal stores, then compared
 *   atomics  a lock shared by all workers: a two-word invariant inside the critical
 *            section, and fetch-add totals checked at the end (a broken lock or atomic)
 * Golden answers: before the workers start, the main thread computes every family's
 * `items` outputs (--items; by default more the longer the run) pinned to one selected CPU, checks them against the portable reference and
 * the known answers, and recomputes them pinned to a second CPU: the two must agree. Each
 * worker then runs items round-robin and compares the output's digest with the golden one
 * (and its internal check: round trip, inverse, invariant). One checked execution of one
 * kernel on one CPU is one exposure.
 *
 * Localisation: on a mismatch the worker keeps the observed output, re-runs the item
 * RETESTS times on its own CPU and RETESTS times pinned to another CPU, counting
 * reproductions; the first re-run that matches the golden digest gives the expected words
 * (expected vs observed, differing bits). A fault signal (SIGSEGV/SIGBUS/SIGFPE/SIGILL)
 * inside an execution, and an execution that stalls past STALL_S, are failures of that CPU
 * and family too. The failing CPU's worker stops (unless --keep-going); the others keep
 * going to the end, so a failure never stops the other cores' accounting. A CPU that goes
 * offline mid-run is reported under offline, not as a failure.
 *
 * Options: --seed N (replay), --cpus LIST (e.g. 0-3,6), --kernels LIST, --announce 1
 * (each worker names its thread in a {"event":"target","inject":"register-flip"} line for
 * selftest's ptrace register flipper). Families this CPU lacks are reported under
 * not_run, never as a pass. Each failure is also streamed as {"event":"mismatch"}.
 *
 * Invariants: nothing is reported that was not computed wrong on the named CPU; an
 * execution whose thread was not on its CPU (migration) is not counted; progress carries
 * per-CPU execution counts; evidence golden_digest (a digest of every golden answer) is
 * equal for equal seeds and kernel lists, so a replay can be seen to replay. References: opendcdiag/opendcdiag (framework design),
 * FIPS-197 Appendix C.1, FIPS 180-4, RFC 3720 (CRC32C check value 0xE3069283).
 */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define MAX_CPUS 1024
#define MAX_ITEMS 16384          /* golden items per family, at most */
#define DEFAULT_MIN_ITEMS 32
#define DEFAULT_MAX_ITEMS 4096
#define ITEMS_PER_SECOND 8       /* by default: distinct inputs grow with the duration */
#define OUT_MAX 4096             /* output words per execution */
#define RETESTS 3                /* re-runs on the same CPU and on another */
#define MAX_SAMPLES 16           /* failures kept in full */
#define STALL_S 3.0              /* an execution longer than this is a failure */
#define MEMCPY_BYTES (256 * 1024)
#define LZ_BYTES 8192
#define ATOMIC_ROUNDS 256

/* ---------------------------------------------------------------- small helpers */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t digest_words(const uint64_t *w, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ n;
	for (size_t i = 0; i < n; i++) {
		h ^= w[i];
		h *= 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h;
}

/* Everything one execution needs: inputs are derived from `rng`, outputs go to out[]. */
struct scratch {
	uint64_t rng;
	uint64_t out[OUT_MAX];
	size_t nout;
	uint8_t *src, *dst;       /* MEMCPY_BYTES each (lz uses them too) */
	/* internal check (round trip, inverse, known answer): first wrong word */
	int internal_bad;
	uint64_t internal_expected, internal_observed;
	const char *internal_what;
};

static uint64_t load64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void internal_fail(struct scratch *s, const char *what, uint64_t expected, uint64_t observed)
{
	if (s->internal_bad)
		return;
	s->internal_bad = 1;
	s->internal_what = what;
	s->internal_expected = expected;
	s->internal_observed = observed;
}

static void emit(uint64_t word, struct scratch *s)
{
	if (s->nout < OUT_MAX)
		s->out[s->nout++] = word;
}

/* ---------------------------------------------------------------- fma */

#define FMA_LANES 64
#define FMA_STEPS 2048

static void fma_inputs(struct scratch *s, double *x, double *m, double *a)
{
	for (int i = 0; i < FMA_LANES; i++) {
		double frac = (double)(splitmix(&s->rng) >> 11) / 9007199254740992.0; /* [0,1) */
		m[i] = -(1.0 - (1.0 + frac) / 1048576.0);                           /* -(1 - ~2^-20) */
		a[i] = (double)(splitmix(&s->rng) >> 11) / 4503599627370496.0 - 1.0;  /* [-1,1) */
		x[i] = (double)(splitmix(&s->rng) >> 11) / 4503599627370496.0 - 1.0;
	}
}

static void fma_emit(struct scratch *s, const double *x)
{
	for (int i = 0; i < FMA_LANES; i++) {
		uint64_t w;
		memcpy(&w, &x[i], 8);
		emit(w, s);
	}
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void fma_avx512(struct scratch *s)
{
	double x[FMA_LANES], m[FMA_LANES], a[FMA_LANES];
	fma_inputs(s, x, m, a);
	__m512d x0 = _mm512_loadu_pd(x), x1 = _mm512_loadu_pd(x + 8), x2 = _mm512_loadu_pd(x + 16),
		x3 = _mm512_loadu_pd(x + 24), x4 = _mm512_loadu_pd(x + 32), x5 = _mm512_loadu_pd(x + 40),
		x6 = _mm512_loadu_pd(x + 48), x7 = _mm512_loadu_pd(x + 56);
	__m512d m0 = _mm512_loadu_pd(m), m1 = _mm512_loadu_pd(m + 8), m2 = _mm512_loadu_pd(m + 16),
		m3 = _mm512_loadu_pd(m + 24), m4 = _mm512_loadu_pd(m + 32), m5 = _mm512_loadu_pd(m + 40),
		m6 = _mm512_loadu_pd(m + 48), m7 = _mm512_loadu_pd(m + 56);
	__m512d a0 = _mm512_loadu_pd(a), a1 = _mm512_loadu_pd(a + 8), a2 = _mm512_loadu_pd(a + 16),
		a3 = _mm512_loadu_pd(a + 24), a4 = _mm512_loadu_pd(a + 32), a5 = _mm512_loadu_pd(a + 40),
		a6 = _mm512_loadu_pd(a + 48), a7 = _mm512_loadu_pd(a + 56);
	for (int step = 0; step < FMA_STEPS; step++) {
		x0 = _mm512_fmadd_pd(x0, m0, a0);
		x1 = _mm512_fmadd_pd(x1, m1, a1);
		x2 = _mm512_fmadd_pd(x2, m2, a2);
		x3 = _mm512_fmadd_pd(x3, m3, a3);
		x4 = _mm512_fmadd_pd(x4, m4, a4);
		x5 = _mm512_fmadd_pd(x5, m5, a5);
		x6 = _mm512_fmadd_pd(x6, m6, a6);
		x7 = _mm512_fmadd_pd(x7, m7, a7);
	}
	_mm512_storeu_pd(x, x0);
	_mm512_storeu_pd(x + 8, x1);
	_mm512_storeu_pd(x + 16, x2);
	_mm512_storeu_pd(x + 24, x3);
	_mm512_storeu_pd(x + 32, x4);
	_mm512_storeu_pd(x + 40, x5);
	_mm512_storeu_pd(x + 48, x6);
	_mm512_storeu_pd(x + 56, x7);
	fma_emit(s, x);
}

__attribute__((target("avx2,fma"))) static void fma_avx2(struct scratch *s)
{
	double x[FMA_LANES], m[FMA_LANES], a[FMA_LANES];
	fma_inputs(s, x, m, a);
	for (int g = 0; g < FMA_LANES; g += 16) {
		__m256d x0 = _mm256_loadu_pd(x + g), x1 = _mm256_loadu_pd(x + g + 4),
			x2 = _mm256_loadu_pd(x + g + 8), x3 = _mm256_loadu_pd(x + g + 12);
		__m256d m0 = _mm256_loadu_pd(m + g), m1 = _mm256_loadu_pd(m + g + 4),
			m2 = _mm256_loadu_pd(m + g + 8), m3 = _mm256_loadu_pd(m + g + 12);
		__m256d a0 = _mm256_loadu_pd(a + g), a1 = _mm256_loadu_pd(a + g + 4),
			a2 = _mm256_loadu_pd(a + g + 8), a3 = _mm256_loadu_pd(a + g + 12);
		for (int step = 0; step < FMA_STEPS; step++) {
			x0 = _mm256_fmadd_pd(x0, m0, a0);
			x1 = _mm256_fmadd_pd(x1, m1, a1);
			x2 = _mm256_fmadd_pd(x2, m2, a2);
			x3 = _mm256_fmadd_pd(x3, m3, a3);
		}
		_mm256_storeu_pd(x + g, x0);
		_mm256_storeu_pd(x + g + 4, x1);
		_mm256_storeu_pd(x + g + 8, x2);
		_mm256_storeu_pd(x + g + 12, x3);
	}
	fma_emit(s, x);
}

__attribute__((target("fma"))) static void fma_reference(struct scratch *s)
#else
static void fma_reference(struct scratch *s)
#endif
{
	double x[FMA_LANES], m[FMA_LANES], a[FMA_LANES];
	fma_inputs(s, x, m, a);
	for (int i = 0; i < FMA_LANES; i++)
		for (int step = 0; step < FMA_STEPS; step++)
			x[i] = __builtin_fma(x[i], m[i], a[i]);
	fma_emit(s, x);
}

/* ---------------------------------------------------------------- intmul */

#define INT_PAIRS 512

static void intmul_run(struct scratch *s)
{
	for (int i = 0; i < INT_PAIRS; i++) {
		uint64_t x = splitmix(&s->rng), y = splitmix(&s->rng), d = splitmix(&s->rng) | (1ULL << 63);
		unsigned __int128 p = (unsigned __int128)x * y;
		uint64_t hi = (uint64_t)(p >> 64), lo = (uint64_t)p;
		unsigned __int128 n = ((unsigned __int128)(hi % d) << 64) | lo;
		uint64_t q = (uint64_t)(n / d), r = (uint64_t)(n % d);
		unsigned __int128 back = (unsigned __int128)q * d + r;
		if (back != n || r >= d)
			internal_fail(s, "q*d+r == n", (uint64_t)n, (uint64_t)back);
		emit(lo ^ q, s);
		emit(hi ^ r, s);
	}
}

/* ---------------------------------------------------------------- aes */

#define AES_BLOCKS 256

#if defined(__x86_64__)
#define AES_EXPAND_STEP(k, rcon)                                                   \
	({                                                                         \
		__m128i t_ = _mm_aeskeygenassist_si128((k), (rcon));               \
		__m128i k_ = (k);                                                  \
		k_ = _mm_xor_si128(k_, _mm_slli_si128(k_, 4));                     \
		k_ = _mm_xor_si128(k_, _mm_slli_si128(k_, 4));                     \
		k_ = _mm_xor_si128(k_, _mm_slli_si128(k_, 4));                     \
		_mm_xor_si128(k_, _mm_shuffle_epi32(t_, 0xff));                    \
	})

__attribute__((target("aes,sse4.1"))) static void aes_keys(__m128i key, __m128i enc[11], __m128i dec[11])
{
	enc[0] = key;
	enc[1] = AES_EXPAND_STEP(enc[0], 0x01);
	enc[2] = AES_EXPAND_STEP(enc[1], 0x02);
	enc[3] = AES_EXPAND_STEP(enc[2], 0x04);
	enc[4] = AES_EXPAND_STEP(enc[3], 0x08);
	enc[5] = AES_EXPAND_STEP(enc[4], 0x10);
	enc[6] = AES_EXPAND_STEP(enc[5], 0x20);
	enc[7] = AES_EXPAND_STEP(enc[6], 0x40);
	enc[8] = AES_EXPAND_STEP(enc[7], 0x80);
	enc[9] = AES_EXPAND_STEP(enc[8], 0x1b);
	enc[10] = AES_EXPAND_STEP(enc[9], 0x36);
	dec[0] = enc[10];
	for (int r = 1; r < 10; r++)
		dec[r] = _mm_aesimc_si128(enc[10 - r]);
	dec[10] = enc[0];
}

__attribute__((target("aes,sse4.1"))) static __m128i aes_encrypt(__m128i b, const __m128i k[11])
{
	b = _mm_xor_si128(b, k[0]);
	for (int r = 1; r < 10; r++)
		b = _mm_aesenc_si128(b, k[r]);
	return _mm_aesenclast_si128(b, k[10]);
}

__attribute__((target("aes,sse4.1"))) static __m128i aes_decrypt(__m128i b, const __m128i k[11])
{
	b = _mm_xor_si128(b, k[0]);
	for (int r = 1; r < 10; r++)
		b = _mm_aesdec_si128(b, k[r]);
	return _mm_aesdeclast_si128(b, k[10]);
}

static const uint8_t aes_kat_key[16] = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
					 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f };
static const uint8_t aes_kat_plain[16] = { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
					   0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff };
static const uint8_t aes_kat_cipher[16] = { 0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30,
					    0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a };

__attribute__((target("aes,sse4.1"))) static void aes_known_answer(struct scratch *s)
{
	__m128i enc[11], dec[11];
	aes_keys(_mm_loadu_si128((const __m128i *)aes_kat_key), enc, dec);
	uint8_t got[16];
	_mm_storeu_si128((__m128i *)got, aes_encrypt(_mm_loadu_si128((const __m128i *)aes_kat_plain), enc));
	for (int h = 0; h < 16; h += 8)
		if (load64(got + h) != load64(aes_kat_cipher + h))
			internal_fail(s, "AES-128 FIPS-197 C.1 known answer", load64(aes_kat_cipher + h), load64(got + h));
}

__attribute__((target("aes,sse4.1"))) static void aes_run(struct scratch *s)
{
	__m128i enc[11], dec[11];
	uint64_t k0 = splitmix(&s->rng), k1 = splitmix(&s->rng);
	aes_keys(_mm_set_epi64x((long long)k1, (long long)k0), enc, dec);
	for (int i = 0; i < AES_BLOCKS; i++) {
		uint64_t p0 = splitmix(&s->rng), p1 = splitmix(&s->rng);
		__m128i plain = _mm_set_epi64x((long long)p1, (long long)p0);
		__m128i c = aes_encrypt(plain, enc);
		__m128i back = aes_decrypt(c, dec);
		uint64_t b0 = (uint64_t)_mm_cvtsi128_si64(back), b1 = (uint64_t)_mm_extract_epi64(back, 1);
		if (b0 != p0 || b1 != p1)
			internal_fail(s, "AES-128 decrypt(encrypt(p)) == p", b0 != p0 ? p0 : p1, b0 != p0 ? b0 : b1);
		emit((uint64_t)_mm_cvtsi128_si64(c), s);
		emit((uint64_t)_mm_extract_epi64(c, 1), s);
	}
	aes_known_answer(s);
}
#endif

/* ---------------------------------------------------------------- sha */

#if defined(__x86_64__) /* SHA-NI and PCLMULQDQ only: elsewhere the family is not run */

#define SHA_BLOCKS 64

static const uint32_t sha_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};
static const uint32_t sha_init[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
				      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };

static uint32_t ror32(uint32_t x, int n)
{
	return (x >> n) | (x << (32 - n));
}

static void sha_portable(uint32_t st[8], const uint8_t *data, size_t blocks)
{
	for (size_t b = 0; b < blocks; b++, data += 64) {
		uint32_t w[64];
		for (int t = 0; t < 16; t++)
			w[t] = (uint32_t)data[4 * t] << 24 | (uint32_t)data[4 * t + 1] << 16 |
			       (uint32_t)data[4 * t + 2] << 8 | data[4 * t + 3];
		for (int t = 16; t < 64; t++) {
			uint32_t s0 = ror32(w[t - 15], 7) ^ ror32(w[t - 15], 18) ^ (w[t - 15] >> 3);
			uint32_t s1 = ror32(w[t - 2], 17) ^ ror32(w[t - 2], 19) ^ (w[t - 2] >> 10);
			w[t] = w[t - 16] + s0 + w[t - 7] + s1;
		}
		uint32_t v[8];
		memcpy(v, st, sizeof v);
		for (int t = 0; t < 64; t++) {
			uint32_t e = v[4], a = v[0];
			uint32_t t1 = v[7] + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & v[5]) ^ (~e & v[6])) +
				      sha_k[t] + w[t];
			uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & v[1]) ^ (a & v[2]) ^ (v[1] & v[2]));
			memmove(v + 1, v, 7 * sizeof v[0]);
			v[4] += t1;
			v[0] = t1 + t2;
		}
		for (int i = 0; i < 8; i++)
			st[i] += v[i];
	}
}

#if defined(__x86_64__)
__attribute__((target("sha,sse4.1,ssse3"))) static void sha_ni(uint32_t st[8], const uint8_t *data, size_t blocks)
{
	const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
	__m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)st), 0xb1);  /* CDAB */
	__m128i st1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(st + 4)), 0x1b); /* EFGH */
	__m128i st0 = _mm_alignr_epi8(tmp, st1, 8);                                  /* ABEF */
	st1 = _mm_blend_epi16(st1, tmp, 0xf0);                                        /* CDGH */
	for (size_t b = 0; b < blocks; b++, data += 64) {
		__m128i save0 = st0, save1 = st1, msg[16];
		for (int g = 0; g < 16; g++) {
			if (g < 4)
				msg[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * g)), swap);
			else
				msg[g] = _mm_sha256msg2_epu32(
					_mm_add_epi32(_mm_sha256msg1_epu32(msg[g - 4], msg[g - 3]),
						      _mm_alignr_epi8(msg[g - 1], msg[g - 2], 4)),
					msg[g - 1]);
			__m128i k = _mm_loadu_si128((const __m128i *)(sha_k + 4 * g));
			__m128i wk = _mm_add_epi32(msg[g], k);
			st1 = _mm_sha256rnds2_epu32(st1, st0, wk);
			st0 = _mm_sha256rnds2_epu32(st0, st1, _mm_shuffle_epi32(wk, 0x0e));
		}
		st0 = _mm_add_epi32(st0, save0);
		st1 = _mm_add_epi32(st1, save1);
	}
	tmp = _mm_shuffle_epi32(st0, 0x1b);          /* FEBA */
	st1 = _mm_shuffle_epi32(st1, 0xb1);          /* DCHG */
	st0 = _mm_blend_epi16(tmp, st1, 0xf0);       /* DCBA */
	st1 = _mm_alignr_epi8(st1, tmp, 8);          /* HGFE */
	_mm_storeu_si128((__m128i *)st, st0);
	_mm_storeu_si128((__m128i *)(st + 4), st1);
}
#endif

typedef void (*sha_fn)(uint32_t st[8], const uint8_t *data, size_t blocks);

static const uint32_t sha_abc[8] = { 0xba7816bf, 0x8f01cfea, 0x414140de, 0x5dae2223,
				     0xb00361a3, 0x96177a9c, 0xb410ff61, 0xf20015ad };

static void sha_known_answer(struct scratch *s, sha_fn f)
{
	uint8_t block[64] = { 'a', 'b', 'c', 0x80 };
	block[63] = 24; /* length in bits, big-endian */
	uint32_t st[8];
	memcpy(st, sha_init, sizeof st);
	f(st, block, 1);
	for (int i = 0; i < 8; i++)
		if (st[i] != sha_abc[i])
			internal_fail(s, "SHA-256(\"abc\") known answer", sha_abc[i], st[i]);
}

static void sha_with(struct scratch *s, sha_fn f)
{
	uint64_t *words = (uint64_t *)(void *)s->src;
	for (int i = 0; i < SHA_BLOCKS * 8; i++)
		words[i] = splitmix(&s->rng);
	uint32_t st[8];
	memcpy(st, sha_init, sizeof st);
	f(st, s->src, SHA_BLOCKS);
	for (int i = 0; i < 8; i += 2)
		emit((uint64_t)st[i] << 32 | st[i + 1], s);
	sha_known_answer(s, f);
}

#if defined(__x86_64__)
static void sha_reference(struct scratch *s)
{
	sha_with(s, sha_portable);
}

static void sha_run(struct scratch *s)
{
	sha_with(s, sha_ni);
}
#endif
#endif

/* ---------------------------------------------------------------- crc32 (CRC32C) */

#define CRC_BYTES 16384
#define CRC_PARTS 8

static uint32_t crc_table[256];

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78U : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc_portable(const uint8_t *p, size_t n)
{
	uint32_t c = ~0U;
	for (size_t i = 0; i < n; i++)
		c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
	return ~c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(const uint8_t *p, size_t n)
{
	uint64_t c = ~0U;
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		c = _mm_crc32_u64(c, load64(p + i));
	for (; i < n; i++)
		c = _mm_crc32_u8((uint32_t)c, p[i]);
	return ~(uint32_t)c;
}
#endif

typedef uint32_t (*crc_fn)(const uint8_t *p, size_t n);

static void crc_with(struct scratch *s, crc_fn f)
{
	uint64_t *words = (uint64_t *)(void *)s->src;
	for (int i = 0; i < CRC_BYTES / 8; i++)
		words[i] = splitmix(&s->rng);
	for (int part = 0; part < CRC_PARTS; part++)
		emit(f(s->src + part * (CRC_BYTES / CRC_PARTS), CRC_BYTES / CRC_PARTS), s);
	uint32_t kat = f((const uint8_t *)"123456789", 9);
	if (kat != 0xe3069283U)
		internal_fail(s, "CRC32C(\"123456789\") known answer", 0xe3069283U, kat);
}

static void crc_reference(struct scratch *s)
{
	crc_with(s, crc_portable);
}

#if defined(__x86_64__)
static void crc_run(struct scratch *s)
{
	crc_with(s, crc_sse42);
}
#endif

/* ---------------------------------------------------------------- clmul */

#if defined(__x86_64__) /* SHA-NI and PCLMULQDQ only: elsewhere the family is not run */

#define CLMUL_PAIRS 1024

static void clmul_portable(uint64_t a, uint64_t b, uint64_t *lo, uint64_t *hi)
{
	uint64_t l = 0, h = 0;
	for (int i = 0; i < 64; i++)
		if (b >> i & 1) {
			l ^= a << i;
			h ^= i ? a >> (64 - i) : 0;
		}
	*lo = l;
	*hi = h;
}

#if defined(__x86_64__)
/* The first products are outputs of their own; the rest fold into one (both versions alike). */
static void clmul_emit(int i, uint64_t lo, uint64_t hi, uint64_t *fold, struct scratch *s)
{
	if (i < OUT_MAX / 2 - 1) {
		emit(lo, s);
		emit(hi, s);
	} else {
		*fold ^= lo * 3 + hi;
	}
}

static void clmul_reference(struct scratch *s)
{
	uint64_t fold = 0;
	for (int i = 0; i < CLMUL_PAIRS; i++) {
		uint64_t a = splitmix(&s->rng), b = splitmix(&s->rng), lo, hi;
		clmul_portable(a, b, &lo, &hi);
		clmul_emit(i, lo, hi, &fold, s);
	}
	emit(fold, s);
}

__attribute__((target("pclmul,sse4.1"))) static void clmul_run(struct scratch *s)
{
	uint64_t fold = 0;
	for (int i = 0; i < CLMUL_PAIRS; i++) {
		uint64_t a = splitmix(&s->rng), b = splitmix(&s->rng);
		__m128i p = _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)a), _mm_cvtsi64_si128((long long)b), 0);
		clmul_emit(i, (uint64_t)_mm_cvtsi128_si64(p), (uint64_t)_mm_extract_epi64(p, 1), &fold, s);
	}
	emit(fold, s);
}
#endif
#endif

/* ---------------------------------------------------------------- bits */

#define BITS_WORDS 1024

static uint64_t pdep_portable(uint64_t src, uint64_t mask)
{
	uint64_t out = 0;
	for (uint64_t bit = 1; mask; bit <<= 1, mask &= mask - 1)
		if (src & bit)
			out |= mask & -mask;
	return out;
}

static uint64_t pext_portable(uint64_t src, uint64_t mask)
{
	uint64_t out = 0;
	for (uint64_t bit = 1; mask; bit <<= 1, mask &= mask - 1)
		if (src & mask & -mask)
			out |= bit;
	return out;
}

static uint64_t bits_combine(uint64_t dep, uint64_t ext, uint64_t pop, uint64_t lz, uint64_t tz)
{
	return dep ^ (ext << 1) ^ (pop << 56) ^ (lz << 48) ^ (tz << 40);
}

static void bits_reference(struct scratch *s)
{
	for (int i = 0; i < BITS_WORDS; i++) {
		uint64_t x = splitmix(&s->rng), m = splitmix(&s->rng), shift = splitmix(&s->rng) & 63;
		uint64_t y = x >> shift;
		uint64_t pop = 0, lz = 64, tz = 64;
		for (int b = 0; b < 64; b++)
			pop += y >> b & 1;
		for (int b = 63; b >= 0; b--)
			if (y >> b & 1) {
				lz = 63 - (uint64_t)b;
				break;
			}
		for (int b = 0; b < 64; b++)
			if (y >> b & 1) {
				tz = (uint64_t)b;
				break;
			}
		emit(bits_combine(pdep_portable(x, m), pext_portable(x, m), pop, lz, tz), s);
	}
}

#if defined(__x86_64__)
__attribute__((target("bmi,bmi2,popcnt,lzcnt"))) static void bits_run(struct scratch *s)
{
	for (int i = 0; i < BITS_WORDS; i++) {
		uint64_t x = splitmix(&s->rng), m = splitmix(&s->rng), shift = splitmix(&s->rng) & 63;
		uint64_t y = x >> shift;
		emit(bits_combine(_pdep_u64(x, m), _pext_u64(x, m), (uint64_t)_mm_popcnt_u64(y), _lzcnt_u64(y),
				  _tzcnt_u64(y)),
		     s);
	}
}
#else
static void bits_run(struct scratch *s)
{
	for (int i = 0; i < BITS_WORDS; i++) {
		uint64_t x = splitmix(&s->rng), m = splitmix(&s->rng), shift = splitmix(&s->rng) & 63;
		uint64_t y = x >> shift;
		uint64_t lz = y ? (uint64_t)__builtin_clzll(y) : 64, tz = y ? (uint64_t)__builtin_ctzll(y) : 64;
		emit(bits_combine(pdep_portable(x, m), pext_portable(x, m), (uint64_t)__builtin_popcountll(y), lz, tz),
		     s);
	}
}
#endif

/* ---------------------------------------------------------------- lz (compression round trip) */

#define LZ_HASH_BITS 12
#define LZ_MIN_MATCH 4

static void lz_input(struct scratch *s, uint8_t *in)
{
	size_t i = 0;
	while (i < LZ_BYTES) {
		uint64_t r = splitmix(&s->rng);
		if (i >= 64 && (r & 3) != 0) { /* copy an earlier fragment: compressible */
			size_t len = 4 + (r >> 8) % 60, back = 1 + (r >> 16) % (i < 2048 ? i : 2048);
			for (size_t k = 0; k < len && i < LZ_BYTES; k++, i++)
				in[i] = in[i - back];
		} else {
			for (int k = 0; k < 8 && i < LZ_BYTES; k++, i++)
				in[i] = (uint8_t)('a' + (r >> (8 * k)) % 16);
		}
	}
}

static uint8_t *lz_put_length(uint8_t *o, size_t n)
{
	for (; n >= 255; n -= 255)
		*o++ = 255;
	*o++ = (uint8_t)n;
	return o;
}

/* Token: literal count (4 bits) | match length - 4 (4 bits); 15 means more length bytes
 * follow; then the literals; then a 16-bit offset (absent after the final literals). */
static size_t lz_compress(const uint8_t *in, size_t n, uint8_t *out)
{
	uint32_t table[1 << LZ_HASH_BITS] = { 0 };
	uint8_t *o = out;
	size_t anchor = 0, i = 0;
	while (i + LZ_MIN_MATCH <= n) {
		uint32_t v;
		memcpy(&v, in + i, 4);
		uint32_t h = (v * 2654435761U) >> (32 - LZ_HASH_BITS);
		size_t cand = table[h];
		table[h] = (uint32_t)i + 1;
		if (!cand || i - (cand - 1) > 65535 || memcmp(in + cand - 1, in + i, 4)) {
			i++;
			continue;
		}
		size_t from = cand - 1, len = LZ_MIN_MATCH;
		while (i + len < n && in[from + len] == in[i + len])
			len++;
		size_t lits = i - anchor, ml = len - LZ_MIN_MATCH;
		*o++ = (uint8_t)((lits < 15 ? lits : 15) << 4 | (ml < 15 ? ml : 15));
		if (lits >= 15)
			o = lz_put_length(o, lits - 15);
		memcpy(o, in + anchor, lits);
		o += lits;
		*o++ = (uint8_t)(i - from);
		*o++ = (uint8_t)((i - from) >> 8);
		if (ml >= 15)
			o = lz_put_length(o, ml - 15);
		i += len;
		anchor = i;
	}
	size_t lits = n - anchor;
	*o++ = (uint8_t)((lits < 15 ? lits : 15) << 4);
	if (lits >= 15)
		o = lz_put_length(o, lits - 15);
	memcpy(o, in + anchor, lits);
	o += lits;
	return (size_t)(o - out);
}

/* Returns the decompressed size, or (size_t)-1 on a malformed stream (never overruns cap). */
static size_t lz_decompress(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	size_t i = 0, o = 0;
	while (i < n) {
		uint8_t token = in[i++];
		size_t lits = token >> 4, ml = token & 15;
		if (lits == 15)
			do {
				if (i >= n)
					return (size_t)-1;
				lits += in[i];
			} while (in[i++] == 255);
		if (lits > n - i || lits > cap - o)
			return (size_t)-1;
		memcpy(out + o, in + i, lits);
		i += lits;
		o += lits;
		if (i >= n)
			break;
		if (i + 2 > n)
			return (size_t)-1;
		size_t off = in[i] | (size_t)in[i + 1] << 8;
		i += 2;
		if (ml == 15)
			do {
				if (i >= n)
					return (size_t)-1;
				ml += in[i];
			} while (in[i++] == 255);
		ml += LZ_MIN_MATCH;
		if (!off || off > o || ml > cap - o)
			return (size_t)-1;
		for (size_t k = 0; k < ml; k++, o++)
			out[o] = out[o - off];
	}
	return o;
}

static void lz_run(struct scratch *s)
{
	uint8_t *in = s->src, *packed = s->src + LZ_BYTES, *back = s->dst;
	lz_input(s, in);
	size_t packed_n = lz_compress(in, LZ_BYTES, packed);
	size_t back_n = lz_decompress(packed, packed_n, back, LZ_BYTES);
	if (back_n != LZ_BYTES)
		internal_fail(s, "LZ decompressed size == input size", LZ_BYTES, back_n);
	for (size_t i = 0; back_n == LZ_BYTES && i < LZ_BYTES; i += 8)
		if (load64(back + i) != load64(in + i))
			internal_fail(s, "LZ decompress(compress(x)) == x", load64(in + i), load64(back + i));
	emit(packed_n, s);
	for (size_t i = 0; i + 8 <= packed_n && s->nout < OUT_MAX; i += 8)
		emit(load64(packed + i), s);
}

/* ---------------------------------------------------------------- memcpy (non-temporal) */

static void fill_source(struct scratch *s)
{
	uint64_t *w = (uint64_t *)(void *)s->src;
	uint64_t x = splitmix(&s->rng) | 1;
	for (size_t i = 0; i < MEMCPY_BYTES / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}

#if defined(__x86_64__)
__attribute__((target("sse2"))) static void copy_non_temporal(uint8_t *dst, const uint8_t *src, size_t n)
{
	for (size_t i = 0; i < n; i += 64) {
		__m128i a = _mm_load_si128((const __m128i *)(src + i)), b = _mm_load_si128((const __m128i *)(src + i + 16)),
			c = _mm_load_si128((const __m128i *)(src + i + 32)), d = _mm_load_si128((const __m128i *)(src + i + 48));
		_mm_stream_si128((__m128i *)(dst + i), a);
		_mm_stream_si128((__m128i *)(dst + i + 16), b);
		_mm_stream_si128((__m128i *)(dst + i + 32), c);
		_mm_stream_si128((__m128i *)(dst + i + 48), d);
	}
	_mm_sfence();
}
#else
static void copy_non_temporal(uint8_t *dst, const uint8_t *src, size_t n)
{
	memcpy(dst, src, n);
}
#endif

static void memcpy_run(struct scratch *s)
{
	fill_source(s);
	memset(s->dst, 0, MEMCPY_BYTES);
	copy_non_temporal(s->dst, s->src, MEMCPY_BYTES);
	if (memcmp(s->dst, s->src, MEMCPY_BYTES))
		for (size_t i = 0; i < MEMCPY_BYTES; i += 8)
			if (load64(s->dst + i) != load64(s->src + i)) {
				internal_fail(s, "non-temporal copy == source", load64(s->src + i), load64(s->dst + i));
				break;
			}
	const size_t chunk = 4096;
	for (size_t c = 0; c < MEMCPY_BYTES; c += chunk)
		emit(digest_words((const uint64_t *)(const void *)(s->dst + c), chunk / 8), s);
}

/* ---------------------------------------------------------------- atomics */

static struct {
	_Alignas(64) atomic_int lock;
	_Alignas(64) volatile uint64_t a;
	volatile uint64_t b;
	_Alignas(64) atomic_ullong counter;
} shared;
static atomic_ullong lock_rounds_total; /* rounds completed, summed over workers */

static void spin_lock(void)
{
	while (atomic_exchange_explicit(&shared.lock, 1, memory_order_acquire))
		while (atomic_load_explicit(&shared.lock, memory_order_relaxed))
#if defined(__x86_64__)
			__builtin_ia32_pause();
#else
			;
#endif
}

static void atomics_run(struct scratch *s)
{
	for (int r = 0; r < ATOMIC_ROUNDS; r++) {
		spin_lock();
		uint64_t a = shared.a, b = shared.b;
		if (a != b)
			internal_fail(s, "lock-protected pair a == b", a, b);
		shared.a = a + 1;
		__asm__ volatile("" ::: "memory");
		shared.b = b + 1;
		atomic_store_explicit(&shared.lock, 0, memory_order_release);
		atomic_fetch_add_explicit(&shared.counter, 1, memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&lock_rounds_total, ATOMIC_ROUNDS, memory_order_relaxed);
}

/* ---------------------------------------------------------------- the family table */

typedef void (*kernel_fn)(struct scratch *s);

struct family {
	const char *name;
	const char *isa;       /* what runs here (set by choose_isa) */
	kernel_fn run;         /* NULL: not available on this CPU */
	kernel_fn reference;   /* portable implementation checked at golden time, or NULL */
	int golden;            /* outputs are compared with golden digests */
	const char *not_run;   /* why run is NULL */
	int enabled;
};

enum { F_FMA, F_INTMUL, F_AES, F_SHA, F_CRC, F_CLMUL, F_BITS, F_LZ, F_MEMCPY, F_ATOMICS, F_COUNT };

static struct family families[F_COUNT] = {
	[F_FMA] = { .name = "fma", .golden = 1 },
	[F_INTMUL] = { .name = "intmul", .golden = 1 },
	[F_AES] = { .name = "aes", .golden = 1 },
	[F_SHA] = { .name = "sha", .golden = 1 },
	[F_CRC] = { .name = "crc32", .golden = 1 },
	[F_CLMUL] = { .name = "clmul", .golden = 1 },
	[F_BITS] = { .name = "bits", .golden = 1 },
	[F_LZ] = { .name = "lz", .golden = 1 },
	[F_MEMCPY] = { .name = "memcpy", .golden = 1 },
	[F_ATOMICS] = { .name = "atomics", .golden = 0 },
};

/* Selected, and this CPU has the instructions. */
static int runs_here(int f)
{
	return families[f].enabled && families[f].run != NULL;
}

static void set_family(int f, const char *isa, kernel_fn run, kernel_fn reference)
{
	families[f].isa = isa;
	families[f].run = run;
	families[f].reference = reference;
}

static void lacks(int f, const char *why)
{
	families[f].run = NULL;
	families[f].not_run = why;
}

static void choose_isa(void)
{
	set_family(F_INTMUL, "mul/div 64-bit", intmul_run, NULL);
	set_family(F_LZ, "integer/branch (built-in LZ77)", lz_run, NULL);
	set_family(F_ATOMICS, "lock xchg / lock xadd", atomics_run, NULL);
	set_family(F_BITS, "popcnt/clz/ctz (builtins)", bits_run, bits_reference);
#if defined(__x86_64__)
	__builtin_cpu_init();
	set_family(F_MEMCPY, "sse2 movntdq", memcpy_run, NULL);
	if (__builtin_cpu_supports("avx512f"))
		set_family(F_FMA, "avx512f vfmadd", fma_avx512, fma_reference);
	else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		set_family(F_FMA, "avx2 vfmadd", fma_avx2, fma_reference);
	else
		lacks(F_FMA, "this CPU has no FMA (needs avx2 and fma)");
	if (__builtin_cpu_supports("aes") && __builtin_cpu_supports("sse4.1"))
		set_family(F_AES, "aes-ni", aes_run, NULL);
	else
		lacks(F_AES, "this CPU has no AES-NI");
	if (__builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1"))
		set_family(F_SHA, "sha-ni", sha_run, sha_reference);
	else
		lacks(F_SHA, "this CPU has no SHA extensions (sha_ni)");
	if (__builtin_cpu_supports("sse4.2"))
		set_family(F_CRC, "sse4.2 crc32", crc_run, crc_reference);
	else
		lacks(F_CRC, "this CPU has no SSE4.2");
	if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1"))
		set_family(F_CLMUL, "pclmulqdq", clmul_run, clmul_reference);
	else
		lacks(F_CLMUL, "this CPU has no PCLMULQDQ");
	if (__builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("abm"))
		set_family(F_BITS, "bmi1/bmi2/popcnt/lzcnt", bits_run, bits_reference);
	else
		lacks(F_BITS, "this CPU lacks BMI2, POPCNT or LZCNT");
#else
	set_family(F_MEMCPY, "memcpy (no non-temporal stores here)", memcpy_run, NULL);
	set_family(F_FMA, "scalar fma", fma_reference, NULL);
	set_family(F_CRC, "table crc32c", crc_reference, NULL);
	lacks(F_AES, "AES-NI kernels are x86-64 only");
	lacks(F_SHA, "SHA-NI kernels are x86-64 only");
	lacks(F_CLMUL, "PCLMULQDQ kernels are x86-64 only");
#endif
}

/* ---------------------------------------------------------------- configuration and state */

struct cpu_info {
	int cpu, package, core, thread;
};

struct failure {
	int cpu, other_cpu, family;
	uint32_t item;
	const char *check;        /* golden, internal, fault, stall, lock-total */
	const char *what;
	uint64_t expected, observed;
	int expected_known, word, words_differing;
	double after_s, at_monotonic_s;
	int same_reproduced, same_runs, other_reproduced, other_runs;
	int signal;
};

struct worker {
	pthread_t thread;
	int index, cpu;
	pid_t tid;
	_Atomic uint64_t executions[F_COUNT];
	_Atomic uint64_t failures;
	_Atomic double busy_since; /* start of the current execution, 0 when between executions */
	_Atomic int current_family;
	atomic_int done, offline, stalled, migrated;
	double offline_at_s;
	struct scratch *scratch;
	sigjmp_buf escape;
	volatile sig_atomic_t armed;
	uint8_t *altstack;
};

static struct config {
	long long seed; /* -1: choose one */
	long long announce;
	long long items; /* 0: by duration */
	int keep_going;
	long long workers_limit;
	const char *cpus_text;    /* NULL: every CPU this process may run on */
	unsigned long long kernels;
	int cpu_selected[MAX_CPUS];
	int ncpus;
	struct cpu_info cpus[MAX_CPUS];
} cfg;

static int items;               /* distinct seeded inputs per family with a golden answer */
static int items_requested;     /* asked for (or chosen by duration); more than `items` when the
				 * golden answers' time budget ran out first */
static uint64_t *golden_table;  /* F_COUNT x items_requested digests */
#define GOLDEN(f, item) golden_table[(size_t)(f) * (size_t)items_requested + (item)]
#define GOLDEN_MIN_BUDGET_S 0.5
#define GOLDEN_BUDGET_SHARE 0.05 /* of the duration, for each of the two golden CPUs */
static struct worker *workers;
static atomic_int stop_all;
static double start_s;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static struct failure samples[MAX_SAMPLES];
static int nsamples;
static uint64_t total_failures;
static __thread struct worker *self;

/* ---------------------------------------------------------------- running one execution */

static uint64_t item_seed(int f, uint32_t item)
{
	uint64_t s = cfg.seed ^ ((uint64_t)(f + 1) << 56) ^ ((uint64_t)item << 32);
	return splitmix(&s);
}

static void execute(int f, uint32_t item, struct scratch *s, kernel_fn fn)
{
	s->rng = item_seed(f, item);
	s->nout = 0;
	s->internal_bad = 0;
	fn(s);
}

static struct scratch *new_scratch(void)
{
	struct scratch *s = aligned_alloc(64, sizeof *s);
	if (!s)
		probe_broken("aligned_alloc", ENOMEM);
	memset(s, 0, sizeof *s);
	s->src = aligned_alloc(64, MEMCPY_BYTES);
	s->dst = aligned_alloc(64, MEMCPY_BYTES);
	if (!s->src || !s->dst)
		probe_broken("aligned_alloc", ENOMEM);
	return s;
}

static int pin_to(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static int cpu_online(int cpu)
{
	char path[96];
	snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/online", cpu);
	FILE *f = fopen(path, "r");
	if (!f)
		return 1; /* cpu0 often has no online file: it cannot go offline */
	int c = fgetc(f);
	fclose(f);
	return c != '0';
}

static int other_cpu_than(int cpu)
{
	for (int i = 0; i < cfg.ncpus; i++)
		if (cfg.cpus[i].cpu != cpu && cpu_online(cfg.cpus[i].cpu))
			return cfg.cpus[i].cpu;
	cpu_set_t allowed;
	if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
		for (int c = 0; c < MAX_CPUS; c++)
			if (c != cpu && CPU_ISSET(c, &allowed) && cpu_online(c))
				return c;
	return -1;
}

/* ---------------------------------------------------------------- failures */

static int first_difference(const uint64_t *a, const uint64_t *b, size_t n, int *count)
{
	int first = -1;
	*count = 0;
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i]) {
			if (first < 0)
				first = (int)i;
			(*count)++;
		}
	return first;
}

static int output_is_good(int f, uint32_t item, const struct scratch *s)
{
	return !s->internal_bad && (!families[f].golden || digest_words(s->out, s->nout) == GOLDEN(f, item));
}

/* One re-run of the item on the calling thread's CPU: 1 when its output is good. A fault
 * signal in a worker's re-run counts as a bad output (the worker's escape is armed). */
static int rerun_good(int f, uint32_t item, struct scratch *s)
{
	if (self) {
		if (sigsetjmp(self->escape, 0)) /* no mask to save: see run_one */
			return 0;
		self->armed = 1;
	}
	execute(f, item, s, families[f].run);
	if (self)
		self->armed = 0;
	return output_is_good(f, item, s);
}

/* Re-run the item `runs` times; count bad outputs and keep the first good output in good[]
 * (returns its word count, `have` when one was kept already, 0 if none). */
static size_t retest(int f, uint32_t item, struct scratch *s, int runs, int *reproduced, uint64_t *good, size_t have)
{
	*reproduced = 0;
	for (int r = 0; r < runs; r++) {
		if (!rerun_good(f, item, s))
			(*reproduced)++;
		else if (!have) {
			memcpy(good, s->out, s->nout * 8);
			have = s->nout;
		}
	}
	return have;
}

/* The moment a failure is seen: {"event":"mismatch"} at once (before re-tests), so that
 * whoever watches (selftest's injector) knows its time and place. */
static void announce_mismatch(const struct failure *fl)
{
	struct jbuf b = { 0 };
	jb_printf(&b, "{\"event\":\"mismatch\",\"cpu\":%d,\"family\":", fl->cpu);
	jb_string(&b, families[fl->family].name);
	jb_printf(&b, ",\"check\":");
	jb_string(&b, fl->check);
	jb_printf(&b, ",\"item\":%u,\"after_s\":%.6f,\"at_monotonic_s\":%.6f}\n", fl->item, fl->after_s,
		  fl->at_monotonic_s);
	pthread_mutex_lock(&report_lock);
	jb_emit_line(&b);
	pthread_mutex_unlock(&report_lock);
}

/* The failure, described in full, kept for the result (the first MAX_SAMPLES). */
static void record_failure(const struct failure *fl)
{
	pthread_mutex_lock(&report_lock);
	total_failures++;
	if (nsamples < MAX_SAMPLES)
		samples[nsamples++] = *fl;
	pthread_mutex_unlock(&report_lock);
}

static void fill_failure(struct failure *fl, int cpu, int f, uint32_t item, const char *check)
{
	memset(fl, 0, sizeof *fl);
	fl->at_monotonic_s = probe_now_s();
	fl->after_s = fl->at_monotonic_s - start_s;
	fl->cpu = cpu;
	fl->family = f;
	fl->item = item;
	fl->check = check;
	fl->word = -1;
	fl->other_cpu = -1;
	announce_mismatch(fl);
}

/* Expected vs observed: the first differing word, or the output length when one output is a
 * prefix of the other (a compressed stream of another size). */
static void describe_difference(struct failure *fl, const uint64_t *good, size_t ngood, const uint64_t *observed,
				size_t nobs)
{
	fl->word = first_difference(good, observed, ngood < nobs ? ngood : nobs, &fl->words_differing);
	fl->expected_known = 1;
	if (fl->word >= 0) {
		fl->expected = good[fl->word];
		fl->observed = observed[fl->word];
	} else {
		fl->what = "output length in words";
		fl->expected = ngood;
		fl->observed = nobs;
	}
}

/* A wrong output on `cpu`: localise it (same CPU, then another) and describe it. */
static void localise(int cpu, int f, uint32_t item, struct scratch *s, const char *check)
{
	struct failure fl;
	fill_failure(&fl, cpu, f, item, check);
	static __thread uint64_t observed[OUT_MAX], good[OUT_MAX];
	size_t nobs = s->nout;
	memcpy(observed, s->out, nobs * 8);
	if (s->internal_bad) {
		fl.what = s->internal_what;
		fl.expected = s->internal_expected;
		fl.observed = s->internal_observed;
		fl.expected_known = 1;
	}
	fl.same_runs = RETESTS;
	size_t ngood = retest(f, item, s, RETESTS, &fl.same_reproduced, good, 0);
	fl.other_cpu = other_cpu_than(cpu);
	if (fl.other_cpu >= 0 && pin_to(fl.other_cpu) == 0) {
		fl.other_runs = RETESTS;
		ngood = retest(f, item, s, RETESTS, &fl.other_reproduced, good, ngood);
		pin_to(cpu);
	} else {
		fl.other_cpu = -1;
	}
	if (!fl.expected_known && ngood)
		describe_difference(&fl, good, ngood, observed, nobs);
	record_failure(&fl);
}

/* ---------------------------------------------------------------- fault signals */

static void on_fault(int sig, siginfo_t *info, void *uc)
{
	(void)info;
	(void)uc;
	if (self && self->armed) {
		self->armed = 0;
		siglongjmp(self->escape, sig);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void install_fault_handlers(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL };
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		if (sigaction(sigs[i], &sa, NULL))
			probe_broken("sigaction", errno);
}

static void use_altstack(struct worker *w)
{
	const size_t size = 256 * 1024;
	w->altstack = malloc(size);
	if (!w->altstack)
		probe_broken("malloc", ENOMEM);
	stack_t ss = { .ss_sp = w->altstack, .ss_size = size, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL))
		probe_broken("sigaltstack", errno);
}

/* ---------------------------------------------------------------- workers */

static void announce(struct worker *w)
{
	struct jbuf b = { 0 };
	jb_printf(&b,
		  "{\"event\":\"target\",\"inject\":\"register-flip\",\"pid\":%d,\"tid\":%d,\"cpu\":%d,\"index\":%d}\n",
		  (int)getpid(), (int)w->tid, w->cpu, w->index);
	pthread_mutex_lock(&report_lock);
	jb_emit_line(&b);
	pthread_mutex_unlock(&report_lock);
}

/* Returns 0 to go on, 1 when this worker must stop (its CPU went offline or it failed). */
static int run_one(struct worker *w, int f, uint32_t item)
{
	struct scratch *s = w->scratch;
	atomic_store(&w->current_family, f);
	atomic_store(&w->busy_since, probe_now_s());
	/* The escape saves no signal mask: the fault handlers run with nothing added to the mask
	 * (SA_NODEFER, empty sa_mask), so jumping out of one leaves the mask as it was. Saving it
	 * would cost a system call per execution, and under a hypervisor a ptrace stop then lands in
	 * that call 96 times in 100 (the interrupt arrives after the next system call), outside
	 * every kernel, where the register flipper's flips hit dead registers. */
	int sig = sigsetjmp(w->escape, 0);
	if (sig) {
		atomic_store(&w->busy_since, 0.0);
		struct failure fl;
		fill_failure(&fl, w->cpu, f, item, "fault");
		fl.signal = sig;
		fl.what = "a fault signal inside the kernel (a wrong address, divisor or instruction was computed)";
		record_failure(&fl);
		atomic_fetch_add(&w->failures, 1);
		pin_to(w->cpu);
		return !cfg.keep_going;
	}
	w->armed = 1;
	execute(f, item, s, families[f].run);
	w->armed = 0;
	atomic_store(&w->busy_since, 0.0);
	if (sched_getcpu() != w->cpu) {
		if (!cpu_online(w->cpu)) {
			w->offline_at_s = probe_now_s() - start_s;
			atomic_store(&w->offline, 1);
			return 1;
		}
		atomic_fetch_add(&w->migrated, 1);
		pin_to(w->cpu);
		return 0; /* not counted: it may not have run on its CPU */
	}
	if (!output_is_good(f, item, s)) {
		w->armed = 0;
		localise(w->cpu, f, item, s, s->internal_bad ? "internal" : "golden");
		atomic_fetch_add(&w->failures, 1);
		atomic_fetch_add(&w->executions[f], 1);
		return !cfg.keep_going;
	}
	atomic_fetch_add(&w->executions[f], 1);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	self = w;
	w->tid = (pid_t)syscall(SYS_gettid);
	use_altstack(w);
	if (pin_to(w->cpu) != 0) {
		w->offline_at_s = 0;
		atomic_store(&w->offline, 1);
		atomic_store(&w->done, 1);
		return NULL;
	}
	if (cfg.announce)
		announce(w);
	uint32_t item = (uint32_t)(w->index * 7) % (uint32_t)items;
	while (!atomic_load(&stop_all)) {
		int stop = 0;
		for (int f = 0; f < F_COUNT && !stop && !atomic_load(&stop_all); f++)
			if (runs_here(f))
				stop = run_one(w, f, item);
		if (stop)
			break;
		item = (item + 1) % (uint32_t)items;
	}
	atomic_store(&w->done, 1);
	return NULL;
}

/* ---------------------------------------------------------------- golden answers */

static void golden_failure(int cpu, int f, uint32_t item, struct scratch *s, const char *check, uint64_t expected,
			   uint64_t observed, const char *what)
{
	struct failure fl;
	fill_failure(&fl, cpu, f, item, check);
	fl.what = what;
	fl.expected = expected;
	fl.observed = observed;
	fl.expected_known = 1;
	fl.same_runs = RETESTS;
	for (int r = 0; r < RETESTS; r++) {
		execute(f, item, s, families[f].run);
		uint64_t d = digest_words(s->out, s->nout);
		fl.same_reproduced += s->internal_bad || d == observed;
	}
	record_failure(&fl);
}

/* One item's golden digests for every family, on the calling CPU, checked against the
 * reference and the family's internal check. */
static void golden_item(int a, uint32_t item, struct scratch *s)
{
	for (int f = 0; f < F_COUNT; f++) {
		if (!runs_here(f) || !families[f].golden)
			continue;
		if (families[f].reference) {
			execute(f, item, s, families[f].reference);
			GOLDEN(f, item) = digest_words(s->out, s->nout);
		}
		execute(f, item, s, families[f].run);
		uint64_t d = digest_words(s->out, s->nout);
		if (s->internal_bad)
			golden_failure(a, f, item, s, "internal", s->internal_expected, s->internal_observed,
				       s->internal_what);
		else if (families[f].reference && d != GOLDEN(f, item))
			golden_failure(a, f, item, s, "reference", GOLDEN(f, item), d,
				       "instruction result (digest) == portable reference (digest)");
		GOLDEN(f, item) = d;
	}
}

/* Golden digests on cfg.cpus[0], checked against the reference and recomputed on cpus[1].
 * Items are done in order until `items_requested` or the time budget (5 % of the duration,
 * at least 0.5 s, and never fewer than 32 items): `items` says how many got one. */
static void compute_golden(struct scratch *s, double duration_s)
{
	int a = cfg.cpus[0].cpu, b = cfg.ncpus > 1 ? cfg.cpus[1].cpu : -1;
	double budget = duration_s * GOLDEN_BUDGET_SHARE;
	if (budget < GOLDEN_MIN_BUDGET_S)
		budget = GOLDEN_MIN_BUDGET_S;
	if (pin_to(a))
		probe_broken("pin the golden computation", errno);
	double t0 = probe_now_s();
	items = 0;
	while (items < items_requested) {
		golden_item(a, (uint32_t)items, s);
		items++;
		if (items >= DEFAULT_MIN_ITEMS && probe_now_s() - t0 > budget)
			break;
	}
	if (b < 0 || pin_to(b))
		return;
	for (int f = 0; f < F_COUNT; f++) {
		if (!runs_here(f) || !families[f].golden)
			continue;
		for (uint32_t item = 0; item < (uint32_t)items; item++) {
			execute(f, item, s, families[f].run);
			uint64_t d = digest_words(s->out, s->nout);
			if (d != GOLDEN(f, item) || s->internal_bad)
				golden_failure(b, f, item, s, "cross-cpu", GOLDEN(f, item), d,
					       "digest on this CPU == digest on the first CPU");
		}
	}
}

/* ---------------------------------------------------------------- options */

static int parse_cpu_list(const char *text, int *selected)
{
	const char *p = text;
	int any = 0;
	memset(selected, 0, MAX_CPUS * sizeof selected[0]);
	while (*p) {
		char *end;
		if (*p < '0' || *p > '9')
			return -1;
		long lo = strtol(p, &end, 10), hi = lo;
		p = end;
		if (*p == '-') {
			p++;
			if (*p < '0' || *p > '9')
				return -1;
			hi = strtol(p, &end, 10);
			p = end;
		}
		if (lo < 0 || hi >= MAX_CPUS || lo > hi)
			return -1;
		for (long c = lo; c <= hi; c++)
			selected[c] = any = 1;
		if (*p == ',')
			p++;
		else if (*p)
			return -1;
	}
	return any ? 0 : -1;
}

static int read_int_file(const char *fmt, int cpu)
{
	char path[128];
	snprintf(path, sizeof path, fmt, cpu);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	int v = -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* thread = position of this CPU in its core's sibling list (0 for the first hyperthread). */
static int thread_index(int cpu)
{
	char path[128], text[512];
	snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", cpu);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	int ok = fgets(text, sizeof text, f) != NULL;
	fclose(f);
	int sibling[MAX_CPUS];
	if (!ok || parse_cpu_list(strtok(text, "\n"), sibling))
		return -1;
	int index = 0;
	for (int c = 0; c < cpu; c++)
		index += sibling[c];
	return index;
}

static void choose_cpus(void)
{
	cpu_set_t allowed;
	if (sched_getaffinity(0, sizeof allowed, &allowed))
		probe_broken("sched_getaffinity", errno);
	int any_selected = cfg.cpus_text != NULL;
	for (int c = 0; c < MAX_CPUS; c++) {
		int wanted = any_selected ? cfg.cpu_selected[c] : CPU_ISSET(c, &allowed);
		if (!wanted)
			continue;
		if (!CPU_ISSET(c, &allowed) || !cpu_online(c)) {
			char reason[160];
			snprintf(reason, sizeof reason, "bad argument --cpus: CPU %d is not online or not allowed for this process", c);
			probe_finish(PROBE_BROKEN, 0, 0, 0.0, "", "", reason);
		}
		if (cfg.workers_limit && cfg.ncpus >= cfg.workers_limit)
			break;
		struct cpu_info *ci = &cfg.cpus[cfg.ncpus++];
		ci->cpu = c;
		ci->package = read_int_file("/sys/devices/system/cpu/cpu%d/topology/physical_package_id", c);
		ci->core = read_int_file("/sys/devices/system/cpu/cpu%d/topology/core_id", c);
		ci->thread = thread_index(c);
	}
	if (!cfg.ncpus)
		probe_broken("no CPU to test", EINVAL);
}

/* ---------------------------------------------------------------- reporting */

static const struct cpu_info *info_of(int cpu)
{
	for (int i = 0; i < cfg.ncpus; i++)
		if (cfg.cpus[i].cpu == cpu)
			return &cfg.cpus[i];
	return NULL;
}

static uint64_t worker_executions(struct worker *w)
{
	uint64_t n = 0;
	for (int f = 0; f < F_COUNT; f++)
		n += atomic_load(&w->executions[f]);
	return n;
}

static void totals(uint64_t *executions)
{
	*executions = 0;
	for (int i = 0; i < cfg.ncpus; i++)
		*executions += worker_executions(&workers[i]);
}

/* Per-CPU progress, after each progress line: {"event":"status","cpus":[...]} */
static void cpu_status(void *ctx, double elapsed)
{
	(void)ctx;
	struct jbuf b = { 0 };
	jb_printf(&b, "{\"event\":\"status\",\"elapsed\":%.3f,\"cpus\":[", elapsed);
	for (int i = 0; i < cfg.ncpus; i++)
		jb_printf(&b, "%s{\"cpu\":%d,\"executions\":%llu,\"failures\":%llu,\"offline\":%d}", i ? "," : "",
			  workers[i].cpu, (unsigned long long)worker_executions(&workers[i]),
			  (unsigned long long)atomic_load(&workers[i].failures), atomic_load(&workers[i].offline));
	jb_printf(&b, "]}\n");
	pthread_mutex_lock(&report_lock);
	jb_emit_line(&b);
	pthread_mutex_unlock(&report_lock);
}

static void append_bits(struct jbuf *b, uint64_t x)
{
	jb_printf(b, "[");
	int first = 1;
	for (int bit = 0; bit < 64; bit++)
		if (x >> bit & 1) {
			jb_printf(b, "%s%d", first ? "" : ",", bit);
			first = 0;
		}
	jb_printf(b, "]");
}

static void append_failure(struct jbuf *b, const struct failure *fl)
{
	const struct cpu_info *ci = info_of(fl->cpu);
	jb_printf(b, "{\"cpu\":%d,\"package\":%d,\"core\":%d,\"thread\":%d,\"family\":", fl->cpu, ci ? ci->package : -1,
		  ci ? ci->core : -1, ci ? ci->thread : -1);
	jb_string(b, families[fl->family].name);
	jb_printf(b, ",\"isa\":");
	jb_string(b, families[fl->family].isa);
	jb_printf(b, ",\"check\":");
	jb_string(b, fl->check);
	if (fl->what) {
		jb_printf(b, ",\"what\":");
		jb_string(b, fl->what);
	}
	jb_printf(b, ",\"seed\":%lld,\"items\":%d,\"item\":%u,\"after_s\":%.6f,\"at_monotonic_s\":%.6f", cfg.seed, items, fl->item,
		  fl->after_s, fl->at_monotonic_s);
	if (fl->expected_known) {
		jb_printf(b, ",\"expected\":\"%016llx\",\"observed\":\"%016llx\",\"differing_bits\":",
			  (unsigned long long)fl->expected, (unsigned long long)fl->observed);
		append_bits(b, fl->expected ^ fl->observed);
	}
	if (fl->word >= 0)
		jb_printf(b, ",\"word\":%d,\"words_differing\":%d", fl->word, fl->words_differing);
	if (fl->signal)
		jb_printf(b, ",\"signal\":%d", fl->signal);
	jb_printf(b, ",\"retest_same_cpu\":{\"runs\":%d,\"reproduced\":%d}", fl->same_runs, fl->same_reproduced);
	if (fl->other_cpu >= 0)
		jb_printf(b, ",\"retest_other_cpu\":{\"cpu\":%d,\"runs\":%d,\"reproduced\":%d}", fl->other_cpu,
			  fl->other_runs, fl->other_reproduced);
	jb_printf(b, "}");
}

static void append_cpus(struct jbuf *b, double elapsed)
{
	jb_printf(b, "\"cpus\":[");
	for (int i = 0; i < cfg.ncpus; i++) {
		struct worker *w = &workers[i];
		const struct cpu_info *ci = &cfg.cpus[i];
		jb_printf(b, "%s{\"cpu\":%d,\"package\":%d,\"core\":%d,\"thread\":%d,\"executions\":{", i ? "," : "",
			  ci->cpu, ci->package, ci->core, ci->thread);
		int first = 1;
		for (int f = 0; f < F_COUNT; f++)
			if (runs_here(f)) {
				jb_printf(b, "%s\"%s\":%llu", first ? "" : ",", families[f].name,
					  (unsigned long long)atomic_load(&w->executions[f]));
				first = 0;
			}
		jb_printf(b, "},\"failures\":%llu,\"migrations\":%d", (unsigned long long)atomic_load(&w->failures),
			  atomic_load(&w->migrated));
		if (atomic_load(&w->offline))
			jb_printf(b, ",\"offline_at_s\":%.3f", w->offline_at_s);
		if (atomic_load(&w->stalled))
			jb_printf(b, ",\"stalled\":1");
		jb_printf(b, "}");
	}
	jb_printf(b, "],\"elapsed_workers_s\":%.3f", elapsed);
}

static void append_families(struct jbuf *b)
{
	jb_printf(b, "\"families\":{");
	int first = 1;
	for (int f = 0; f < F_COUNT; f++)
		if (runs_here(f)) {
			jb_printf(b, "%s\"%s\":", first ? "" : ",", families[f].name);
			jb_string(b, families[f].isa);
			first = 0;
		}
	jb_printf(b, "},\"not_run\":{");
	first = 1;
	for (int f = 0; f < F_COUNT; f++)
		if (families[f].enabled && !families[f].run) {
			jb_printf(b, "%s\"%s\":", first ? "" : ",", families[f].name);
			jb_string(b, families[f].not_run);
			first = 0;
		}
	jb_printf(b, "}");
}

static void append_metrics(struct jbuf *m, double elapsed)
{
	jb_printf(m, "\"executions_per_s_per_cpu\":{");
	int first = 1;
	for (int f = 0; f < F_COUNT; f++) {
		if (!runs_here(f))
			continue;
		jb_printf(m, "%s\"%s\":{", first ? "" : ",", families[f].name);
		for (int i = 0; i < cfg.ncpus; i++)
			jb_printf(m, "%s\"%d\":%.1f", i ? "," : "", workers[i].cpu,
				  elapsed > 0 ? (double)atomic_load(&workers[i].executions[f]) / elapsed : 0.0);
		jb_printf(m, "}");
		first = 0;
	}
	jb_printf(m, "}");
}

static void check_lock_totals(void)
{
	if (!families[F_ATOMICS].enabled || !families[F_ATOMICS].run)
		return;
	uint64_t rounds = atomic_load(&lock_rounds_total), counter = atomic_load(&shared.counter);
	uint64_t a = shared.a, b = shared.b;
	if (counter == rounds && a == rounds && b == rounds)
		return;
	struct failure fl;
	fill_failure(&fl, cfg.cpus[0].cpu, F_ATOMICS, 0, "lock-total");
	fl.what = "lock rounds == fetch-add counter == protected pair (all CPUs together; not localised)";
	fl.expected = rounds;
	fl.observed = counter != rounds ? counter : a != rounds ? a : b;
	fl.expected_known = 1;
	record_failure(&fl);
}

static __attribute__((noreturn)) void finish(double elapsed)
{
	uint64_t n;
	totals(&n);
	check_lock_totals();
	struct jbuf ev = { 0 }, m = { 0 }, reason = { 0 };
	jb_printf(&ev, "\"seed\":%lld,\"items_per_family\":%d,\"golden_digest\":\"%016llx\",\"golden_cpus\":[%d",
		  cfg.seed, items, (unsigned long long)digest_words(golden_table, (size_t)F_COUNT * (size_t)items_requested), cfg.cpus[0].cpu);
	if (cfg.ncpus > 1)
		jb_printf(&ev, ",%d", cfg.cpus[1].cpu);
	jb_printf(&ev, "],\"items_requested\":%d,", items_requested);
	append_families(&ev);
	jb_printf(&ev, ",");
	append_cpus(&ev, elapsed);
	jb_printf(&ev, ",\"failures\":%llu,\"samples\":[", (unsigned long long)total_failures);
	for (int i = 0; i < nsamples; i++) {
		if (i)
			jb_printf(&ev, ",");
		append_failure(&ev, &samples[i]);
	}
	jb_printf(&ev, "]");
	append_metrics(&m, elapsed);
	if (total_failures) {
		const struct failure *fl = &samples[0];
		jb_printf(&reason, "CPU %d computed a wrong %s result (%s check)", fl->cpu, families[fl->family].name,
			  fl->check);
	}
	probe_finish(total_failures ? PROBE_FAIL : PROBE_PASS, n, n, elapsed, jb_str(&m), jb_str(&ev),
		     total_failures ? jb_str(&reason) : NULL);
}

/* ---------------------------------------------------------------- main */

static int all_done(void)
{
	for (int i = 0; i < cfg.ncpus; i++)
		if (!atomic_load(&workers[i].done) && !atomic_load(&workers[i].stalled))
			return 0;
	return 1;
}

static int watch_stalls(void *ctx, double max_s)
{
	(void)ctx;
	double now = probe_now_s();
	for (int i = 0; i < cfg.ncpus; i++) {
		struct worker *w = &workers[i];
		double since = atomic_load(&w->busy_since);
		if (since > 0 && now - since > STALL_S && !atomic_load(&w->stalled)) {
			atomic_store(&w->stalled, 1);
			struct failure fl;
			fill_failure(&fl, w->cpu, atomic_load(&w->current_family), 0, "stall");
			fl.what = "one kernel execution took longer than 3 s (a corrupted loop bound or lock)";
			record_failure(&fl);
			atomic_fetch_add(&w->failures, 1);
		}
	}
	if (all_done())
		return 1;
	probe_nap(max_s);
	return 0;
}

static void count_executions(void *ctx, uint64_t *iterations, uint64_t *exposures)
{
	(void)ctx;
	totals(iterations);
	*exposures = *iterations;
}

static const char *const family_names[] = { "fma", "intmul", "aes", "sha", "crc32", "clmul",
					    "bits", "lz", "memcpy", "atomics", NULL };

static const struct probe_option options[] = {
	{ "seed", PROBE_OPT_INT, 0, 9007199254740991.0, NULL, NULL,
	  "the seed of every kernel's inputs, to replay a run (default: random, reported)", &cfg.seed, 0 },
	{ "cpus", PROBE_OPT_TEXT, 1, 4000, NULL, NULL,
	  "logical CPUs to test, e.g. 0-3,6 (default: every CPU this process may run on)", &cfg.cpus_text, 0 },
	{ "kernels", PROBE_OPT_LIST, 0, 0, family_names, NULL, "kernel families to run (default: all)",
	  &cfg.kernels, 0 },
	{ "items", PROBE_OPT_INT, 0, MAX_ITEMS, NULL, "0",
	  "distinct seeded inputs per family, each with a golden answer computed before the run (0: by "
	  "duration, 8 a second, from 32 up to 4096)", &cfg.items, 0 },
	{ "announce", PROBE_OPT_INT, 0, 1, NULL, "0",
	  "1: each worker names its thread in a target line (selftest's register flipper)", &cfg.announce,
	  PROBE_OPT_INTERNAL },
	{ NULL, 0, 0, 0, NULL, NULL, NULL, NULL, 0 },
};

static const struct probe_def definition = {
	.name = "cpu_integrity",
	.summary = "a logical CPU that computes wrong results (mercurial core): seeded kernels checked "
		   "against golden answers on every CPU",
	.workers_help = "test only the first N of the selected CPUs (default: one worker per selected CPU)",
	.options = options,
};

static void configure(int argc, char **argv, struct probe_opts *o)
{
	cfg.seed = -1;
	cfg.kernels = (1ULL << F_COUNT) - 1;
	probe_start(argc, argv, &definition, o);
	cfg.keep_going = o->keep_going;
	cfg.workers_limit = o->workers;
	if (cfg.cpus_text && parse_cpu_list(cfg.cpus_text, cfg.cpu_selected))
		probe_finish(PROBE_BROKEN, 0, 0, 0.0, "", "",
			     "bad argument --cpus: not a CPU list such as 0-3,6 (CPUs below 1024)");
	if (!cfg.kernels)
		probe_finish(PROBE_BROKEN, 0, 0, 0.0, "", "", "bad argument --kernels: no kernel family named");
	for (int f = 0; f < F_COUNT; f++)
		families[f].enabled = (int)(cfg.kernels >> f & 1);
	if (cfg.items) {
		items_requested = (int)cfg.items;
	} else {
		double by_duration = o->duration_s * ITEMS_PER_SECOND;
		items_requested = by_duration < DEFAULT_MIN_ITEMS ? DEFAULT_MIN_ITEMS
				  : by_duration > DEFAULT_MAX_ITEMS ? DEFAULT_MAX_ITEMS : (int)by_duration;
	}
	if (cfg.seed < 0) {
		uint64_t r;
		if (getrandom(&r, sizeof r, 0) != sizeof r)
			r = (uint64_t)(probe_now_s() * 1e9);
		cfg.seed = (long long)(r & ((1ULL << 53) - 1));
	}
}

int main(int argc, char **argv)
{
	struct probe_opts o = { 0 };
	configure(argc, argv, &o);
	crc_table_init();
	choose_isa();
	int runnable = 0;
	for (int f = 0; f < F_COUNT; f++)
		runnable += runs_here(f);
	if (!runnable)
		probe_skip("this CPU has none of the selected kernel families");
	choose_cpus();
	install_fault_handlers();
	start_s = probe_now_s();
	golden_table = calloc((size_t)F_COUNT * (size_t)items_requested, sizeof *golden_table);
	if (!golden_table)
		probe_broken("calloc (golden answers)", ENOMEM);
	compute_golden(new_scratch(), o.duration_s);
	workers = calloc((size_t)cfg.ncpus, sizeof *workers);
	if (!workers)
		probe_broken("calloc", ENOMEM);
	for (int i = 0; i < cfg.ncpus; i++) {
		workers[i].index = i;
		workers[i].cpu = cfg.cpus[i].cpu;
		workers[i].scratch = new_scratch();
		int err = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
		if (err)
			probe_broken("pthread_create", err);
	}
	double workers_started = probe_now_s();
	struct probe_monitor monitor = { .tick = watch_stalls, .count = count_executions, .after_progress = cpu_status };
	probe_supervise(&o, start_s, &monitor);
	atomic_store(&stop_all, 1);
	double wait_until = probe_now_s() + STALL_S;
	while (!all_done() && probe_now_s() < wait_until)
		watch_stalls(NULL, 0.005);
	finish(probe_now_s() - workers_started);
}
