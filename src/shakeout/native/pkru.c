/*
 * pkru — does the protection-key register (PKRU) survive signal delivery and sigreturn?
 *
 * Detects: PKRU restored wrong after a signal. The Linux 6.12 regression on AMD
 * (70044df250d0 writes PKRU=0 before XSAVE into the frame; AMD's init tracker then
 * records XSTATE_BV[PKRU]=0, so sigreturn's XRSTOR ignores the PKRU value the kernel
 * patched into the frame and loads 0: every key opens; fixed by ae6012d72fa6 in 6.13
 * and 6.12.5), and the 2021 bug fixed by 510b80a6a0f1 (5.13; 5.10.46, 5.12.13): a
 * thread whose PKRU was brought to its init state by XRSTOR (here: a sigreturn whose
 * frame has XSTATE_BV[PKRU]=0) got the kernel's restrictive default PKRU back after a
 * context switch instead of the hardware init value 0.
 *
 * Method: allocate a protection key (pkey_alloc) and write a PKRU value no kernel chooses
 * (the default with this key write-disabled). Then, until the duration ends, three kinds
 * of signal: synchronous (tgkill to itself), the same onto an alternate stack whose pages
 * were released (MADV_DONTNEED: the frame is faulted in), and asynchronous ones from a
 * sender thread that interrupt a loop reading PKRU. The handler checks the frame: the
 * PKRU component of the XSAVE area (offset from CPUID 0xD.9) must hold the value and its
 * XSTATE_BV bit must be set (else XRSTOR loads 0); after every return PKRU must be the
 * value again. Every 8th iteration the handler clears XSTATE_BV[PKRU] in the frame on
 * purpose: after that sigreturn PKRU must be 0, and still 0 after a sleep that switches
 * the thread out.
 *
 * Invariant: the probe itself writes PKRU only with WRPKRU in the main loop, with the
 * expected value published to the handler only while it holds (no false mismatch).
 * Injection (--inject clear-xstate-bv, selftest): every 50th synchronous frame gets
 * XSTATE_BV[PKRU] cleared after the handler's check, which is what the 6.12 AMD kernel
 * wrote there: sigreturn then loads 0 through the kernel's own XRSTOR.
 *
 * References: kernel commits 70044df250d0, ae6012d72fa6, d1e420772cd1, 510b80a6a0f1,
 * d892454b6814 (selftest: XSAVE init state); Intel SDM vol. 1 ch. 13 (XSTATE_BV, XRSTOR).
 */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

enum inject { INJECT_OFF, INJECT_CLEAR_XSTATE_BV };
static const char *const inject_names[] = { "off", "clear-xstate-bv", NULL };
static int g_inject;

static const struct probe_option options[] = {
	{ "inject", PROBE_OPT_CHOICE, 0, 0, inject_names, "off",
	  "selftest: clear-xstate-bv clears XSTATE_BV[PKRU] in every 50th synchronous frame (the 6.12 AMD frame)",
	  &g_inject, PROBE_OPT_INTERNAL },
	{ 0 },
};

static const struct probe_def def = {
	.name = "pkru",
	.summary = "the protection-key register across signals: in the frame, in the handler, after every return",
	.workers_help = "unused (one thread and one signal sender)",
	.options = options,
};

#if defined(__x86_64__)
#include <cpuid.h>

#define XFEATURE_PKRU 9
#define FP_XSTATE_MAGIC1 0x46505853U
#define ALTSTACK_BYTES (64 * 1024)
#define MAX_ITERATIONS 4000
#define INIT_TEST_EVERY 8
#define INJECT_EVERY 50
#define ASYNC_PERIOD_NS 100000L
#define SPIN_READS 2000

static inline uint32_t rdpkru(void)
{
	uint32_t eax, edx;
	__asm__ volatile(".byte 0x0f,0x01,0xee" : "=a"(eax), "=d"(edx) : "c"(0));
	return eax;
}

static inline void wrpkru(uint32_t value)
{
	__asm__ volatile(".byte 0x0f,0x01,0xef" : : "a"(value), "c"(0), "d"(0) : "memory");
}

/* What the handler saw in the last frame, and what it was told to expect. */
static volatile int g_expect_valid;
static volatile uint32_t g_expected;
static volatile int g_clear_next;  /* the next synchronous frame: clear XSTATE_BV[PKRU] */
static volatile int g_inject_next; /* the injection acts on the next synchronous frame */
static volatile uint32_t g_frame_pkru, g_handler_pkru;
static volatile int g_frame_bit, g_frame_ok;
static volatile uint64_t g_async_signals, g_frame_mismatches;
static volatile uint32_t g_first_bad_frame_pkru;
static volatile int g_first_bad_frame_bit;
static unsigned g_pkru_offset;

/* Finds the PKRU component in the signal frame's XSAVE area; NULL when absent. */
static uint8_t *frame_xsave(ucontext_t *uc, uint32_t **pkru, uint64_t **xstate_bv)
{
	uint8_t *fp = (uint8_t *)uc->uc_mcontext.fpregs;
	uint32_t magic1, xstate_size;
	if (!fp)
		return NULL;
	memcpy(&magic1, fp + 464, 4);
	memcpy(&xstate_size, fp + 480, 4);
	if (magic1 != FP_XSTATE_MAGIC1 || g_pkru_offset + 4 > xstate_size)
		return NULL;
	*pkru = (uint32_t *)(fp + g_pkru_offset);
	*xstate_bv = (uint64_t *)(fp + 512);
	return fp;
}

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
	(void)si;
	uint32_t *pkru, in_handler = rdpkru();
	uint64_t *bv;
	int ok = frame_xsave(ctx, &pkru, &bv) != NULL;
	uint32_t value = ok ? *pkru : 0;
	int bit = ok ? (int)((*bv >> XFEATURE_PKRU) & 1) : 0;
	if (sig == SIGUSR2) {
		g_async_signals++;
		if (ok && g_expect_valid && (value != g_expected || !bit) && !g_frame_mismatches++) {
			g_first_bad_frame_pkru = value;
			g_first_bad_frame_bit = bit;
		}
		return;
	}
	g_handler_pkru = in_handler;
	g_frame_ok = ok;
	g_frame_pkru = value;
	g_frame_bit = bit;
	if (ok && (g_clear_next || g_inject_next))
		*bv &= ~(1ULL << XFEATURE_PKRU);
}

struct failure {
	const char *check;
	uint32_t expected, observed;
	int xstate_bv_bit;
	uint64_t iteration;
};

static void *async_sender(void *arg)
{
	pid_t tid = *(pid_t *)arg;
	struct timespec period = { 0, ASYNC_PERIOD_NS };
	for (;;) {
		syscall(SYS_tgkill, getpid(), tid, SIGUSR2);
		nanosleep(&period, NULL);
	}
	return NULL;
}

static void install(int sig)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR1); /* no nesting: each handler's globals describe its own frame */
	sigaddset(&sa.sa_mask, SIGUSR2);
	if (sigaction(sig, &sa, NULL))
		probe_broken("sigaction", errno);
}

static void skip_without_pkeys(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(c & (1U << 3)))
		probe_skip("this CPU has no protection keys (CPUID.7.0:ECX.PKU = 0; /proc/cpuinfo has no 'pku')");
	if (!(c & (1U << 4)))
		probe_skip("the kernel did not enable protection keys (CPUID OSPKE = 0: CR4.PKE is clear; kernel built "
			   "without CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS or booted with nopku)");
	__cpuid_count(0xd, XFEATURE_PKRU, a, b, c, d);
	(void)c;
	(void)d;
	if (!a)
		probe_skip("the CPU does not save PKRU with XSAVE (CPUID 0xD.9 is empty)");
	g_pkru_offset = b;
}

static int alloc_pkey(void)
{
	long key = syscall(SYS_pkey_alloc, 0UL, 0UL);
	if (key < 0) {
		char reason[160];
		snprintf(reason, sizeof reason, "pkey_alloc failed: %s (the kernel offers no protection key here)",
			 strerror(errno));
		probe_skip(reason);
	}
	return (int)key;
}

static long voluntary_switches(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_THREAD, &ru) ? -1 : ru.ru_nvcsw;
}

struct run {
	uint32_t value;
	uint8_t *altstack;
	uint64_t iterations, sync_signals, released_signals, init_tests, switches_seen, injected;
	uint32_t handler_pkru;
	struct failure fail;
};

static int failed(struct run *r, const char *check, uint32_t expected, uint32_t observed, int bit)
{
	r->fail = (struct failure){ check, expected, observed, bit, r->iterations };
	return 1;
}

static void publish_expected(uint32_t value)
{
	g_expect_valid = 0;
	__asm__ volatile("" ::: "memory");
	wrpkru(value);
	g_expected = value;
	__asm__ volatile("" ::: "memory");
	g_expect_valid = 1;
}

static void raise_self(void)
{
	syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGUSR1);
}

/* One synchronous signal: the frame must carry the value with its bit set, and PKRU must come back. */
static int sync_step(struct run *r, int release)
{
	if (release && madvise(r->altstack, ALTSTACK_BYTES, MADV_DONTNEED))
		probe_broken("madvise", errno);
	r->released_signals += release;
	r->sync_signals++;
	g_inject_next = g_inject == INJECT_CLEAR_XSTATE_BV && r->sync_signals % INJECT_EVERY == 0;
	r->injected += g_inject_next;
	g_frame_ok = 0;
	raise_self();
	g_inject_next = 0;
	uint32_t after = rdpkru();
	if (!r->handler_pkru)
		r->handler_pkru = g_handler_pkru;
	if (!g_frame_ok)
		probe_broken("the signal frame has no XSAVE area with PKRU", 0);
	if (g_frame_pkru != r->value || !g_frame_bit)
		return failed(r, "pkru-in-frame", r->value, g_frame_pkru, g_frame_bit);
	if (after != r->value)
		return failed(r, "pkru-after-return", r->value, after, g_frame_bit);
	for (int i = 0; i < SPIN_READS; i++) {
		uint32_t now = rdpkru();
		if (now != r->value)
			return failed(r, "pkru-after-async-signal", r->value, now, -1);
	}
	return 0;
}

/* A sigreturn with XSTATE_BV[PKRU] cleared: PKRU must be 0, also after the thread slept. */
static int init_step(struct run *r)
{
	g_expect_valid = 0;
	g_clear_next = 1;
	raise_self();
	g_clear_next = 0;
	uint32_t after = rdpkru();
	r->init_tests++;
	if (after != 0)
		return failed(r, "pkru-init-after-sigreturn", 0, after, 0);
	long before = voluntary_switches();
	usleep(200);
	r->switches_seen += voluntary_switches() > before;
	uint32_t later = rdpkru();
	if (later != 0)
		return failed(r, "pkru-init-after-context-switch", 0, later, 0);
	publish_expected(r->value);
	return 0;
}

static void emit(struct run *r, int pkey, double t0, int bad)
{
	struct jbuf ev = { 0 }, reason = { 0 };
	uint64_t exposures = r->sync_signals + g_async_signals;
	jb_printf(&ev,
		  "\"pkey\":%d,\"pkru_value\":\"0x%08x\",\"pkru_in_handler\":\"0x%08x\",\"pkru_xsave_offset\":%u,"
		  "\"sync_signals\":%llu,\"released_altstack_signals\":%llu,\"async_signals\":%llu,"
		  "\"init_tests\":%llu,\"init_tests_switched_out\":%llu,\"injected_frames\":%llu,"
		  "\"async_frame_mismatches\":%llu",
		  pkey, r->value, r->handler_pkru, g_pkru_offset, (unsigned long long)r->sync_signals,
		  (unsigned long long)r->released_signals, (unsigned long long)g_async_signals,
		  (unsigned long long)r->init_tests, (unsigned long long)r->switches_seen,
		  (unsigned long long)r->injected, (unsigned long long)g_frame_mismatches);
	if (bad) {
		jb_printf(&ev, ",\"check\":\"%s\",\"expected\":\"0x%08x\",\"observed\":\"0x%08x\",\"xstate_bv_pkru\":%d,"
			  "\"at_iteration\":%llu",
			  r->fail.check, r->fail.expected, r->fail.observed, r->fail.xstate_bv_bit,
			  (unsigned long long)r->fail.iteration);
		jb_printf(&reason, "%s: PKRU 0x%08x, expected 0x%08x (XSTATE_BV[PKRU] in the frame: %d)", r->fail.check,
			  r->fail.observed, r->fail.expected, r->fail.xstate_bv_bit);
	}
	probe_finish(bad ? PROBE_FAIL : PROBE_PASS, r->iterations, exposures, probe_now_s() - t0, "", jb_str(&ev),
		     jb_str(&reason));
}

int main(int argc, char **argv)
{
	struct probe_opts o = { 0 };
	probe_start(argc, argv, &def, &o);
	double t0 = probe_now_s();
	skip_without_pkeys();
	int pkey = alloc_pkey();
	static struct run r;
	r.value = (rdpkru() & ~(3U << (2 * pkey))) | (2U << (2 * pkey));
	r.altstack = mmap(NULL, ALTSTACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r.altstack == MAP_FAILED)
		probe_broken("mmap", errno);
	stack_t ss = { .ss_sp = r.altstack, .ss_size = ALTSTACK_BYTES, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL))
		probe_broken("sigaltstack", errno);
	install(SIGUSR1);
	install(SIGUSR2);
	publish_expected(r.value);
	static pid_t tid;
	tid = (pid_t)syscall(SYS_gettid);
	pthread_t sender;
	int err = pthread_create(&sender, NULL, async_sender, &tid);
	if (err)
		probe_broken("pthread_create", err);
	int bad = 0;
	while (!bad && r.iterations < MAX_ITERATIONS && probe_now_s() - t0 < o.duration_s) {
		r.iterations++;
		bad = sync_step(&r, (int)(r.iterations & 1));
		if (!bad && g_frame_mismatches)
			bad = failed(&r, "pkru-in-frame-async", r.value, g_first_bad_frame_pkru, g_first_bad_frame_bit);
		if (!bad && r.iterations % INIT_TEST_EVERY == 0)
			bad = init_step(&r);
	}
	g_expect_valid = 0;
	emit(&r, pkey, t0, bad);
}

#else
int main(int argc, char **argv)
{
	struct probe_opts o = { 0 };
	probe_start(argc, argv, &def, &o);
	probe_skip("needs x86-64: PKRU is x86's protection-key register");
}
#endif
