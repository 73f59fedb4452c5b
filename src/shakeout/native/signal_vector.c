/*
 * signal_vector — does the vector state survive a signal delivered onto an unmapped
 * signal stack?
 *
 * Detects: the Linux 5.2–5.4.1 bug (CVE-2019-19602) where copy_fpstate_to_sigframe()
 * retried XSAVE after faulting the signal stack in, and, having been preempted meanwhile,
 * saved *another task's* registers into the frame; sigreturn then loaded them. Also any
 * other path that returns from a signal with wrong vector registers (FreeBSD-EN-22:02.xsave:
 * XMM8–15 garbage).
 *
 * Method: each worker thread loads every vector register the CPU has (XMM0–15, or
 * YMM0–15, or ZMM0–31 and k0–7) with a pattern naming the run, the worker, the register
 * and the lane, then loops in assembly: store all registers to memory and compare with
 * the pattern using general-purpose registers only, release its own alternate signal
 * stack (madvise MADV_DONTNEED) and signal itself (tgkill), so that every iteration
 * delivers a signal whose frame must be faulted in (an exposure) and every register set
 * that sigreturn restored is checked in full before the next signal. The vector
 * registers stay live for the whole run: syscalls preserve them. A sender thread per
 * worker adds asynchronous signals that interrupt the loop at arbitrary instructions,
 * and more workers than CPUs (default 2 per CPU) force the context switches the bug
 * needs.
 *
 * Invariant: only the worker itself releases its signal stack, outside the handler, so
 * a handler's frame is never released under it (that would be a false positive).
 * An exposure is counted by the handler when the stack was released since the last
 * signal.
 */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#if defined(__x86_64__)
#include <cpuid.h>

#define ALTSTACK_BYTES (64 * 1024)
#define MAX_EVIDENCE 4
#define PROBE_SIGNAL SIGUSR1
#define PATTERN_TAG 0x5348ULL /* "SH" */
#define RUSAGE_THREAD_NR 1    /* RUSAGE_THREAD, as a number the assembly can use */
_Static_assert(RUSAGE_THREAD_NR == RUSAGE_THREAD, "RUSAGE_THREAD");

enum regset { REGS_XMM, REGS_YMM, REGS_ZMM, REGS_ZMM_K };

struct regset_info {
	const char *name;     /* vector_state in the evidence */
	const char *prefix;   /* register name prefix */
	int nregs;            /* vector registers */
	int reg_bytes;
	int nmask;            /* k registers (8 bytes each), after the vector registers */
};

static const struct regset_info regsets[] = {
	[REGS_XMM] = { "xmm", "xmm", 16, 16, 0 },
	[REGS_YMM] = { "ymm", "ymm", 16, 32, 0 },
	[REGS_ZMM] = { "zmm", "zmm", 32, 64, 0 },
	[REGS_ZMM_K] = { "zmm+k", "zmm", 32, 64, 8 },
};

/*
 * Everything the check loop reads, at fixed offsets for the assembly below. The loop
 * stores every register to dump[], compares dump[] with exp[] qword by qword in
 * general-purpose registers, counts the iteration, and then (self_signal) releases the
 * signal stack and signals its own thread with raw syscalls. It returns 0 once *stop is
 * set, 1 on a mismatch (dump[] holds what was observed), 2 when a syscall failed
 * (errno_out holds the error).
 */
struct loop_ctx {
	const uint8_t *exp;      /* 0 */
	uint8_t *dump;           /* 8 */
	uint64_t nq;             /* 16: qwords to compare */
	volatile uint64_t iters; /* 24 */
	volatile int *stop;      /* 32 */
	uint8_t *altstack;       /* 40 */
	uint64_t altstack_bytes; /* 48 */
	uint64_t tgid;           /* 56 */
	uint64_t tid;            /* 64 */
	volatile uint64_t released; /* 72: set after the snapshot below, cleared by the handler */
	uint64_t self_signal;    /* 80 */
	uint64_t errno_out;      /* 88 */
	uint64_t release_stack;  /* 96: madvise the signal stack before each self-signal */
	struct rusage before;    /* 104: this thread's counters right before the self-signal */
	const volatile uint64_t *partner_iters; /* 248: the other worker of the pair's iters */
	uint64_t partner_before; /* 256: its value right before the self-signal */
	volatile uint64_t supplied; /* 264: stack pages the userfaultfd resolver supplied */
	uint64_t supplied_before;   /* 272: its value right before the self-signal */
};

_Static_assert(offsetof(struct loop_ctx, errno_out) == 88, "loop_ctx layout is fixed by the assembly");
_Static_assert(offsetof(struct loop_ctx, release_stack) == 96, "loop_ctx layout is fixed by the assembly");
_Static_assert(offsetof(struct loop_ctx, before) == 104, "loop_ctx layout is fixed by the assembly");
_Static_assert(offsetof(struct loop_ctx, partner_before) == 256, "loop_ctx layout is fixed by the assembly");
_Static_assert(offsetof(struct loop_ctx, supplied_before) == 272, "loop_ctx layout is fixed by the assembly");

struct worker {
	struct loop_ctx ctx;
	int id;
	pthread_t thread, sender;
	uint8_t *expected, *dump;
	volatile uint64_t handled;         /* signals handled */
	volatile uint64_t released;        /* self-signals measured onto a just-released stack */
	volatile uint64_t faulted;         /* ... whose delivery took a minor fault (the frame) */
	volatile uint64_t slept;           /* ... and a voluntary context switch: the exposures */
	volatile uint64_t preempted;       /* ... faulted with an involuntary switch only */
	volatile uint64_t partner_ran;     /* ... slept while the other worker of its pair ran */
	volatile uint64_t faulted_at_iter; /* ctx.iters when the last faulted frame was handled */
	volatile int ready;
} __attribute__((aligned(64)));

static volatile int g_stop;
static int g_stop_pipe[2]; /* written once when the run must end: wakes main and senders at once */
static double g_process_start;
static double g_detected_after_s;
static enum regset g_regset;
static size_t g_state_bytes;
static unsigned g_nonce;
static int g_keep_going;
static long long g_interval_us;
static double g_t0;
static __thread struct worker *tls_worker;

/* Time is measured from here, before main(): as close to the process start as we can see. */
__attribute__((constructor)) static void note_process_start(void)
{
	g_process_start = probe_now_s();
}

/* Ends the run now: every thread waiting on the pipe wakes (it is never drained). */
static void request_stop(void)
{
	if (__atomic_exchange_n(&g_stop, 1, __ATOMIC_SEQ_CST))
		return;
	char byte = 1;
	if (write(g_stop_pipe[1], &byte, 1) != 1)
		probe_broken("write to the stop pipe", errno);
}

/* Waits up to timeout_s, or less when the run is told to stop; returns 1 when stopped. */
static int wait_for_stop(double timeout_s)
{
	struct pollfd p = { .fd = g_stop_pipe[0], .events = POLLIN };
	if (timeout_s < 0)
		timeout_s = 0;
	struct timespec ts = { (time_t)timeout_s, (long)((timeout_s - (double)(time_t)timeout_s) * 1e9) };
	int r = ppoll(&p, 1, &ts, NULL);
	if (r < 0 && errno != EINTR)
		probe_broken("ppoll", errno);
	return g_stop;
}

static pthread_mutex_t g_evidence_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_corruptions;
static int g_evidence_count;
static struct jbuf g_evidence;

/* ---- the check loops: vector registers live from load to exit ------------------- */

#define REGS16 "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15"
#define REGS32 REGS16 ",16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31"
#define STR(x) #x
#define XSTR(x) STR(x)

#define CHECK_LOOP(LOAD, STORE, TAIL)                                              \
	"mov 0(%[c]), %%r8\n" LOAD                                                 \
	"1:\n"                                                                     \
	"mov 8(%[c]), %%r9\n" STORE                                                \
	"mov 0(%[c]), %%r8\n"                                                      \
	"mov 16(%[c]), %%rdx\n"                                                    \
	"xor %%ecx, %%ecx\n"                                                       \
	"2:\n"                                                                     \
	"mov (%%r9,%%rcx,8), %%r10\n"                                              \
	"cmp (%%r8,%%rcx,8), %%r10\n"                                              \
	"jne 3f\n"                                                                 \
	"inc %%rcx\n"                                                              \
	"cmp %%rdx, %%rcx\n"                                                       \
	"jb 2b\n"                                                                  \
	"incq 24(%[c])\n"                                                          \
	"mov 32(%[c]), %%r10\n"                                                    \
	"cmpl $0, (%%r10)\n"                                                       \
	"jne 5f\n"                                                                 \
	"cmpq $0, 80(%[c])\n"                                                      \
	"je 1b\n"                                                                  \
	"cmpq $0, 96(%[c])\n"                                                      \
	"je 8f\n"                                                                  \
	"mov $" XSTR(SYS_madvise) ", %%eax\n"                                      \
	"mov 40(%[c]), %%rdi\n"                                                    \
	"mov 48(%[c]), %%rsi\n"                                                    \
	"mov $" XSTR(MADV_DONTNEED) ", %%edx\n"                                    \
	"syscall\n"                                                                \
	"test %%rax, %%rax\n"                                                      \
	"jnz 6f\n"                                                                 \
	"mov $" XSTR(SYS_getrusage) ", %%eax\n"                                    \
	"mov $" XSTR(RUSAGE_THREAD_NR) ", %%edi\n"                                    \
	"lea 104(%[c]), %%rsi\n"                                                   \
	"syscall\n"                                                                \
	"test %%rax, %%rax\n"                                                      \
	"jnz 6f\n"                                                                 \
	"mov 248(%[c]), %%r10\n"                                                   \
	"mov (%%r10), %%r10\n"                                                     \
	"mov %%r10, 256(%[c])\n"                                                   \
	"mov 264(%[c]), %%r10\n"                                                   \
	"mov %%r10, 272(%[c])\n"                                                   \
	"movq $1, 72(%[c])\n"                                                      \
	"8:\n"                                                                     \
	"mov $" XSTR(SYS_tgkill) ", %%eax\n"                                       \
	"mov 56(%[c]), %%rdi\n"                                                    \
	"mov 64(%[c]), %%rsi\n"                                                    \
	"mov $" XSTR(PROBE_SIGNAL) ", %%edx\n"                                     \
	"syscall\n"                                                                \
	"test %%rax, %%rax\n"                                                      \
	"jz 1b\n"                                                                  \
	"6:\n"                                                                     \
	"neg %%rax\n"                                                              \
	"mov %%rax, 88(%[c])\n"                                                    \
	"mov $2, %%eax\n"                                                          \
	"jmp 7f\n"                                                                 \
	"3:\n"                                                                     \
	"mov $1, %%eax\n"                                                          \
	"jmp 7f\n"                                                                 \
	"5:\n"                                                                     \
	"xor %%eax, %%eax\n"                                                       \
	"7:\n" TAIL

#define GPR_CLOBBERS "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc"

#define XMM_CLOBBERS                                                               \
	"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",    \
	"xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

#define XMM_HI_CLOBBERS                                                            \
	"xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",    \
	"xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31"

#define LOAD_XMM ".irp reg," REGS16 "\n movdqu \\reg*16(%%r8), %%xmm\\reg\n .endr\n"
#define STORE_XMM ".irp reg," REGS16 "\n movdqu %%xmm\\reg, \\reg*16(%%r9)\n .endr\n"
#define LOAD_YMM ".irp reg," REGS16 "\n vmovdqu \\reg*32(%%r8), %%ymm\\reg\n .endr\n"
#define STORE_YMM ".irp reg," REGS16 "\n vmovdqu %%ymm\\reg, \\reg*32(%%r9)\n .endr\n"
#define LOAD_ZMM ".irp reg," REGS32 "\n vmovdqu64 \\reg*64(%%r8), %%zmm\\reg\n .endr\n"
#define STORE_ZMM ".irp reg," REGS32 "\n vmovdqu64 %%zmm\\reg, \\reg*64(%%r9)\n .endr\n"
/* kmovq needs AVX512BW; the mask registers follow the 32 vector registers. */
#define LOAD_K ".irp reg,0,1,2,3,4,5,6,7\n kmovq 2048+\\reg*8(%%r8), %%k\\reg\n .endr\n"
#define STORE_K ".irp reg,0,1,2,3,4,5,6,7\n kmovq %%k\\reg, 2048+\\reg*8(%%r9)\n .endr\n"

static int xmm_loop(struct loop_ctx *c)
{
	int r;
	__asm__ volatile(CHECK_LOOP(LOAD_XMM, STORE_XMM, "")
			 : "=&a"(r)
			 : [c] "r"(c)
			 : GPR_CLOBBERS, XMM_CLOBBERS);
	return r;
}

__attribute__((target("avx"))) static int ymm_loop(struct loop_ctx *c)
{
	int r;
	__asm__ volatile(CHECK_LOOP(LOAD_YMM, STORE_YMM, "vzeroupper\n")
			 : "=&a"(r)
			 : [c] "r"(c)
			 : GPR_CLOBBERS, XMM_CLOBBERS);
	return r;
}

__attribute__((target("avx512f"))) static int zmm_loop(struct loop_ctx *c)
{
	int r;
	__asm__ volatile(CHECK_LOOP(LOAD_ZMM, STORE_ZMM, "vzeroupper\n")
			 : "=&a"(r)
			 : [c] "r"(c)
			 : GPR_CLOBBERS, XMM_CLOBBERS, XMM_HI_CLOBBERS);
	return r;
}

__attribute__((target("avx512f,avx512bw"))) static int zmm_k_loop(struct loop_ctx *c)
{
	int r;
	__asm__ volatile(CHECK_LOOP(LOAD_ZMM LOAD_K, STORE_ZMM STORE_K, "vzeroupper\n")
			 : "=&a"(r)
			 : [c] "r"(c)
			 : GPR_CLOBBERS, XMM_CLOBBERS, XMM_HI_CLOBBERS, "k1", "k2", "k3", "k4", "k5", "k6", "k7");
	return r;
}

static int run_check_loop(struct loop_ctx *c)
{
	switch (g_regset) {
	case REGS_XMM:
		return xmm_loop(c);
	case REGS_YMM:
		return ymm_loop(c);
	case REGS_ZMM:
		return zmm_loop(c);
	case REGS_ZMM_K:
		return zmm_k_loop(c);
	}
	return 0;
}

/* ---- CPU features ------------------------------------------------------------------ */

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

/* The widest register set the CPU has and the OS enabled in XCR0. */
static enum regset widest_regset(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX))
		return REGS_XMM;
	uint64_t xcr0 = xgetbv0();
	if ((xcr0 & 0x6) != 0x6)
		return REGS_XMM;
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX512F) && (xcr0 & 0xe6) == 0xe6)
		return (b & bit_AVX512BW) ? REGS_ZMM_K : REGS_ZMM;
	return REGS_YMM;
}

/* ---- pattern and evidence ---------------------------------------------------------- */

/* qword = "SH" tag | worker | register | lane | run nonce: a leak names its source. */
static uint64_t pattern_qword(int worker, int reg, int lane)
{
	return (PATTERN_TAG << 48) | ((uint64_t)(worker & 0xffff) << 32) | ((uint64_t)(reg & 0xff) << 24) |
	       ((uint64_t)(lane & 0xff) << 16) | (g_nonce & 0xffff);
}

static void fill_expected(struct worker *w)
{
	const struct regset_info *rs = &regsets[g_regset];
	uint64_t *q = (uint64_t *)w->expected;
	int per_reg = rs->reg_bytes / 8;
	for (int r = 0; r < rs->nregs; r++)
		for (int l = 0; l < per_reg; l++)
			*q++ = pattern_qword(w->id, r, l);
	for (int k = 0; k < rs->nmask; k++)
		*q++ = pattern_qword(w->id, 64 + k, 0);
}

static void record_corruption(struct worker *w)
{
	const struct regset_info *rs = &regsets[g_regset];
	double at = probe_now_s() - g_process_start;
	/* The comparison that failed ran after every signal handled since the last one that
	 * passed; was one of them a frame the kernel had to fault in? */
	int after_faulted_frame = w->faulted && w->faulted_at_iter == w->ctx.iters;
	pthread_mutex_lock(&g_evidence_lock);
	if (!g_corruptions)
		g_detected_after_s = at;
	g_corruptions++;
	if (g_evidence_count < MAX_EVIDENCE) {
		struct jbuf *b = &g_evidence;
		jb_printf(b, "%s{\"worker\":%d,\"check\":\"registers-after-signal\",\"after_s\":%.6f,"
			  "\"after_faulted_frame\":%s,\"signals_handled\":%llu,\"check_iterations\":%llu,"
			  "\"registers\":[",
			  g_evidence_count ? "," : "", w->id, at, after_faulted_frame ? "true" : "false",
			  (unsigned long long)w->handled, (unsigned long long)w->ctx.iters);
		int first = 1;
		for (int r = 0; r < rs->nregs + rs->nmask; r++) {
			int is_mask = r >= rs->nregs;
			size_t off = is_mask ? (size_t)rs->nregs * rs->reg_bytes + (size_t)(r - rs->nregs) * 8
					     : (size_t)r * rs->reg_bytes;
			size_t n = is_mask ? 8 : (size_t)rs->reg_bytes;
			if (!memcmp(w->expected + off, w->dump + off, n))
				continue;
			char name[16];
			snprintf(name, sizeof name, "%s%d", is_mask ? "k" : rs->prefix, is_mask ? r - rs->nregs : r);
			jb_printf(b, "%s{\"register\":", first ? "" : ",");
			jb_string(b, name);
			jb_printf(b, ",\"expected\":");
			jb_hex(b, w->expected + off, n);
			jb_printf(b, ",\"observed\":");
			jb_hex(b, w->dump + off, n);
			jb_printf(b, "}");
			first = 0;
		}
		jb_printf(b, "]}");
		g_evidence_count++;
	}
	pthread_mutex_unlock(&g_evidence_lock);
	fprintf(stderr, "signal_vector: worker %d: vector registers differ after %llu signals\n", w->id,
		(unsigned long long)w->handled);
}

/* ---- threads ----------------------------------------------------------------------- */

/*
 * Classifies one measured self-signal by what happened to this thread between the
 * worker's snapshot (after the release, right before tgkill) and the handler's entry:
 * a minor fault is the kernel faulting the frame in; a voluntary context switch on top
 * means the thread slept during delivery, and the only step of delivery that can sleep
 * is that fault-in, between the failed save and its retry: the bug's whole window.
 */
static void classify_delivery(struct worker *w, const struct rusage *now)
{
	const struct rusage *before = &w->ctx.before;
	w->released++;
	/* A fault served by userfaultfd is retried, and the kernel does not count it in ru_minflt. */
	if (now->ru_minflt <= before->ru_minflt && w->ctx.supplied == w->ctx.supplied_before)
		return;
	w->faulted++;
	w->faulted_at_iter = w->ctx.iters;
	if (now->ru_nvcsw > before->ru_nvcsw) {
		w->slept++;
		w->partner_ran += *w->ctx.partner_iters != w->ctx.partner_before;
	} else if (now->ru_nivcsw > before->ru_nivcsw)
		w->preempted++;
}

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	(void)ctx;
	struct worker *w = tls_worker;
	if (!w)
		return;
	w->handled++;
	if (!w->ctx.release_stack)
		return;
	struct rusage now;
	getrusage(RUSAGE_THREAD, &now);
	if (w->ctx.released) {
		w->ctx.released = 0;
		classify_delivery(w, &now);
	} else {
		/* An asynchronous signal between the worker's snapshot and its self-signal: its
		 * own fault (if any) must not be charged to the self-signal that follows. */
		w->ctx.before = now;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	stack_t ss = { .ss_sp = w->ctx.altstack, .ss_size = ALTSTACK_BYTES, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL))
		probe_broken("sigaltstack", errno);
	w->ctx.tid = (uint64_t)gettid();
	tls_worker = w;
	__atomic_store_n(&w->ready, 1, __ATOMIC_RELEASE);
	while (!g_stop) {
		int r = run_check_loop(&w->ctx);
		if (r == 0)
			break;
		if (r == 2)
			probe_broken("madvise/tgkill in the check loop", (int)w->ctx.errno_out);
		record_corruption(w);
		if (!g_keep_going)
			request_stop();
	}
	return NULL;
}

/* Asynchronous signals: they land wherever the worker is, on a released stack or not. */
static void *sender_main(void *arg)
{
	struct worker *w = arg;
	while (!g_stop) {
		int err = pthread_kill(w->thread, PROBE_SIGNAL);
		if (err && !g_stop)
			probe_broken("pthread_kill", err);
		wait_for_stop((double)g_interval_us / 1e6);
	}
	return NULL;
}

static void *alloc_or_die(size_t align, size_t n)
{
	void *p = aligned_alloc(align, (n + align - 1) / align * align);
	if (!p)
		probe_broken("aligned_alloc", ENOMEM);
	memset(p, 0, n);
	return p;
}

/* ---- the sleeping fault-in: userfaultfd and pinned pairs ------------------------------ */

/*
 * fault-in=userfaultfd registers every signal stack with a userfaultfd, so the kernel's
 * fault-in of a frame blocks until the resolver thread supplies the page: the worker
 * sleeps between the failed save and the retry, every time, and its CPU runs another
 * task meanwhile (with pin=pairs, the other worker of its pair, whose vector registers
 * are live). The kernel lets a userfaultfd serve faults taken by the kernel itself only
 * for CAP_SYS_PTRACE, with vm.unprivileged_userfaultfd=1, or when it came from
 * /dev/userfaultfd; otherwise auto falls back to plain faults (the run says so).
 */
#define PAGE_BYTES 4096

static int g_uffd = -1;
static struct worker *g_workers;
static int g_nworkers;
static int g_resolver_pipe[2];
static pthread_t g_resolver;
static uint8_t g_zero_page[PAGE_BYTES] __attribute__((aligned(PAGE_BYTES)));

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00) /* Linux 6.1's /dev/userfaultfd */
#endif

static const char *g_uffd_source = "system call";

/* A userfaultfd that can serve kernel-mode faults, or -errno. The system call is refused
 * without CAP_SYS_PTRACE (and by container runtimes' default seccomp profiles); Linux 6.1's
 * /dev/userfaultfd gives the same file to whoever may open the device, whatever the
 * capabilities, through an ioctl no seccomp profile singles out (docker run --device
 * /dev/userfaultfd). The system call's errno is kept when the device does not help. */
static int open_userfaultfd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int err = errno;
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev < 0)
			return -err;
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd < 0)
			return -err;
		g_uffd_source = "/dev/userfaultfd";
	}
	struct uffdio_api api = { .api = UFFD_API };
	if (ioctl(fd, UFFDIO_API, &api)) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

static void register_stack(void *stack, size_t bytes)
{
	struct uffdio_register r = { .range = { (uintptr_t)stack, bytes }, .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(g_uffd, UFFDIO_REGISTER, &r))
		probe_broken("UFFDIO_REGISTER of a signal stack", errno);
}

/* Counts the page for the worker whose signal stack it is in. */
static void note_supplied(uint64_t address)
{
	for (int i = 0; i < g_nworkers; i++) {
		struct loop_ctx *c = &g_workers[i].ctx;
		if (address - (uintptr_t)c->altstack < c->altstack_bytes) {
			__atomic_add_fetch(&c->supplied, 1, __ATOMIC_RELEASE);
			return;
		}
	}
}

static void supply_page(uint64_t address)
{
	struct uffdio_range page = { address & ~(uint64_t)(PAGE_BYTES - 1), PAGE_BYTES };
	struct uffdio_copy c = { .dst = page.start, .src = (uintptr_t)g_zero_page, .len = PAGE_BYTES };
	note_supplied(address);
	while (ioctl(g_uffd, UFFDIO_COPY, &c)) {
		if (errno == EEXIST) { /* already supplied: make sure nobody still waits on it */
			if (ioctl(g_uffd, UFFDIO_WAKE, &page))
				probe_broken("UFFDIO_WAKE", errno);
			return;
		}
		if (errno != EAGAIN)
			probe_broken("UFFDIO_COPY", errno);
		c.copy = 0;
	}
}

/* Serves stack faults until told to stop, which main does only after every worker ended. */
static void *resolver_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[2] = { { g_uffd, POLLIN, 0 }, { g_resolver_pipe[0], POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			probe_broken("poll (userfaultfd)", errno);
		}
		if (p[1].revents)
			return NULL;
		struct uffd_msg msg;
		ssize_t r = read(g_uffd, &msg, sizeof msg);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r != (ssize_t)sizeof msg)
			probe_broken("read (userfaultfd)", r < 0 ? errno : EIO);
		if (msg.event == UFFD_EVENT_PAGEFAULT)
			supply_page(msg.arg.pagefault.address);
	}
}

/* Starts the resolver, or returns why not (NULL when it runs). */
static const char *start_resolver(void)
{
	int fd = open_userfaultfd();
	if (fd < 0)
		return fd == -EPERM ? "userfaultfd for kernel-mode faults was refused (EPERM): it needs CAP_SYS_PTRACE "
				      "or vm.unprivileged_userfaultfd=1 (in a container also a seccomp profile "
				      "that allows it), or access to /dev/userfaultfd (Linux 6.1+)"
				    : strerror(-fd);
	g_uffd = fd;
	if (pipe2(g_resolver_pipe, O_CLOEXEC))
		probe_broken("pipe2", errno);
	int err = pthread_create(&g_resolver, NULL, resolver_main, NULL);
	if (err)
		probe_broken("pthread_create (userfaultfd resolver)", err);
	return NULL;
}

static void stop_resolver(void)
{
	if (g_uffd < 0)
		return;
	char byte = 1;
	if (write(g_resolver_pipe[1], &byte, 1) != 1)
		probe_broken("write to the resolver pipe", errno);
	pthread_join(g_resolver, NULL);
}

/* Worker i runs on the (i/2)-th CPU this process may use: pairs share a CPU. 0 on success. */
static int pin_to_pair_cpu(pthread_t thread, int id)
{
	cpu_set_t allowed, one;
	if (sched_getaffinity(0, sizeof allowed, &allowed))
		return errno;
	int slots = CPU_COUNT(&allowed), want = (id / 2) % (slots ? slots : 1);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed) || want--)
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		return pthread_setaffinity_np(thread, sizeof one, &one);
	}
	return ESRCH;
}

/* ---- options and main -------------------------------------------------------------- */

enum regs_choice { WANT_AUTO, WANT_XMM, WANT_YMM, WANT_ZMM };
enum fault_in_choice { FAULT_IN_AUTO, FAULT_IN_USERFAULTFD, FAULT_IN_PLAIN };
static const char *const regs_choices[] = { "auto", "xmm", "ymm", "zmm", NULL };
static const char *const fault_in_choices[] = { "auto", "userfaultfd", "plain", NULL };
static const char *const off_on[] = { "off", "on", NULL };

struct sv_opts {
	int regs;          /* enum regs_choice */
	int self_signal;   /* the worker signals itself every iteration */
	int release;       /* ... after releasing its signal stack (off: a control that faults nothing) */
	int fault_in;      /* enum fault_in_choice */
	int pin_pairs;     /* pin worker pairs to one CPU */
};

static struct sv_opts so;

static const struct probe_option options[] = {
	{ "regs", PROBE_OPT_CHOICE, 0, 0, regs_choices, "auto", "register set to check (auto: the widest the CPU has)",
	  &so.regs, 0 },
	{ "interval-us", PROBE_OPT_INT, 0, 1000000, NULL, "100",
	  "period of the asynchronous sender thread, in microseconds (0: none)", &g_interval_us, 0 },
	{ "self-signal", PROBE_OPT_CHOICE, 0, 0, off_on, "on", "the worker signals itself every iteration",
	  &so.self_signal, 0 },
	{ "release", PROBE_OPT_CHOICE, 0, 0, off_on, "on",
	  "release the signal stack before each self-signal (off: a control, no exposures)", &so.release, 0 },
	{ "fault-in", PROBE_OPT_CHOICE, 0, 0, fault_in_choices, "auto",
	  "how a frame is faulted in: userfaultfd (the worker sleeps until a resolver supplies the page), plain, "
	  "or auto (userfaultfd where allowed)",
	  &so.fault_in, 0 },
	{ "pin-pairs", PROBE_OPT_CHOICE, 0, 0, off_on, "on", "pin each pair of workers to one CPU", &so.pin_pairs, 0 },
	{ 0 },
};

static const struct probe_def probe = {
	"signal_vector", "vector registers that come back different from a signal delivered onto a released stack",
	"worker threads (default: 2 per CPU)", options,
};

static enum regset choose_regset(enum regs_choice want)
{
	enum regset have = widest_regset();
	if (want == WANT_AUTO)
		return have;
	if (want == WANT_XMM)
		return REGS_XMM;
	if (want == WANT_YMM) {
		if (have == REGS_XMM)
			probe_skip("--regs ymm: this CPU (or its OS) has no usable AVX");
		return REGS_YMM;
	}
	if (have != REGS_ZMM && have != REGS_ZMM_K)
		probe_skip("--regs zmm: this CPU (or its OS) has no usable AVX-512");
	return have;
}

struct totals {
	uint64_t iters, handled, released, faulted, slept, preempted, partner_ran;
};

static struct totals sum_workers(const struct worker *ws, int n)
{
	struct totals t = { 0 };
	for (int i = 0; i < n; i++) {
		t.iters += ws[i].ctx.iters;
		t.handled += ws[i].handled;
		t.released += ws[i].released;
		t.faulted += ws[i].faulted;
		t.slept += ws[i].slept;
		t.preempted += ws[i].preempted;
		t.partner_ran += ws[i].partner_ran;
	}
	return t;
}

static double share(uint64_t part, uint64_t whole)
{
	return whole ? (double)part / (double)whole : 0.0;
}

/* How the run was set up, for the evidence. */
struct setup {
	const char *fault_in;      /* "userfaultfd" or "plain" */
	const char *fallback_note; /* why auto fell back to plain faults, or NULL */
	int pinned;                /* workers pinned in pairs */
};

/* exposures = faulted frames whose delivery slept (see classify_delivery). */
static __attribute__((noreturn)) void finish(struct worker *ws, int n, double elapsed, const struct setup *su)
{
	struct totals t = sum_workers(ws, n);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	const struct regset_info *rs = &regsets[g_regset];

	struct jbuf m = { 0 }, e = { 0 };
	jb_printf(&m, "\"signals_per_s\":%.1f,\"exposures_per_s\":%.1f,\"faulted_frames_per_s\":%.1f,\"checks_per_s\":%.1f,"
		  "\"faulted_frames_that_slept\":%.4f,\"faulted_frames_preempted_only\":%.4f,"
		  "\"slept_while_partner_ran\":%.4f,\"involuntary_context_switches\":%ld,\"voluntary_context_switches\":%ld",
		  t.handled / elapsed, t.slept / elapsed, t.faulted / elapsed, t.iters / elapsed, share(t.slept, t.faulted),
		  share(t.preempted, t.faulted), share(t.partner_ran, t.slept), ru.ru_nivcsw, ru.ru_nvcsw);
	jb_printf(&e, "\"vector_state\":\"%s\",\"registers_checked\":%d,\"state_bytes\":%zu,\"workers\":%d,"
		  "\"signals\":%llu,\"self_signals_onto_released_stack\":%llu,\"faulted_frames\":%llu,"
		  "\"faulted_frames_slept\":%llu,\"faulted_frames_preempted_only\":%llu,\"slept_while_partner_ran\":%llu,"
		  "\"fault_in\":\"%s\",\"pinned_pairs\":%s,"
		  "\"nonce\":%u,\"pattern\":\"tag:16=0x5348 worker:16 register:8 lane:8 nonce:16\","
		  "\"self_signal\":%s,\"release\":%s,\"async_interval_us\":%lld,\"corruptions\":%llu",
		  rs->name, rs->nregs + rs->nmask, g_state_bytes, n, (unsigned long long)t.handled,
		  (unsigned long long)t.released, (unsigned long long)t.faulted, (unsigned long long)t.slept,
		  (unsigned long long)t.preempted, (unsigned long long)t.partner_ran, su->fault_in,
		  su->pinned ? "true" : "false", g_nonce & 0xffff, ws[0].ctx.self_signal ? "true" : "false",
		  ws[0].ctx.release_stack ? "true" : "false", g_interval_us, (unsigned long long)g_corruptions);
	if (g_uffd >= 0) {
		jb_printf(&e, ",\"userfaultfd_from\":");
		jb_string(&e, g_uffd_source);
	}
	if (su->fallback_note) {
		jb_printf(&e, ",\"fault_in_note\":");
		jb_string(&e, su->fallback_note);
	}
	if (g_corruptions)
		jb_printf(&e, ",\"detected_after_s\":%.6f", g_detected_after_s);
	if (g_evidence_count)
		jb_printf(&e, ",\"samples\":[%s]", jb_str(&g_evidence));
	probe_finish(g_corruptions ? PROBE_FAIL : PROBE_PASS, t.iters, t.slept, elapsed, jb_str(&m), jb_str(&e),
		     g_corruptions ? "vector registers came back from a signal handler with other contents" : NULL);
}

static const uint64_t no_partner_iters;

static void prepare_worker(struct worker *w, int id, int n, struct worker *ws)
{
	w->id = id;
	w->expected = alloc_or_die(64, g_state_bytes);
	w->dump = alloc_or_die(64, g_state_bytes);
	fill_expected(w);
	w->ctx.exp = w->expected;
	w->ctx.dump = w->dump;
	w->ctx.nq = g_state_bytes / 8;
	w->ctx.stop = &g_stop;
	w->ctx.altstack_bytes = ALTSTACK_BYTES;
	w->ctx.tgid = (uint64_t)getpid();
	w->ctx.self_signal = (uint64_t)so.self_signal;
	w->ctx.release_stack = (uint64_t)(so.self_signal && so.release);
	w->ctx.partner_iters = (id ^ 1) < n ? &ws[id ^ 1].ctx.iters : &no_partner_iters;
	w->ctx.altstack = mmap(NULL, ALTSTACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w->ctx.altstack == MAP_FAILED)
		probe_broken("mmap of a signal stack", errno);
	if (g_uffd >= 0)
		register_stack(w->ctx.altstack, ALTSTACK_BYTES);
}

/* Returns whether the worker could be pinned to its pair's CPU. */
static int start_worker(struct worker *w, int pin)
{
	int err = pthread_create(&w->thread, NULL, worker_main, w);
	if (err)
		probe_broken("pthread_create (worker)", err);
	int pinned = pin && !pin_to_pair_cpu(w->thread, w->id);
	while (!__atomic_load_n(&w->ready, __ATOMIC_ACQUIRE))
		sched_yield();
	if (g_interval_us) {
		err = pthread_create(&w->sender, NULL, sender_main, w);
		if (err)
			probe_broken("pthread_create (sender)", err);
	}
	return pinned;
}

static int tick(void *ctx, double max_s)
{
	(void)ctx;
	return wait_for_stop(max_s);
}

static void count(void *ctx, uint64_t *iterations, uint64_t *exposures)
{
	struct totals t = sum_workers(ctx, g_nworkers);
	*iterations = t.iters;
	*exposures = t.slept;
}

static struct setup choose_fault_in(void)
{
	struct setup su = { "plain", NULL, 0 };
	if (so.fault_in == FAULT_IN_PLAIN || !so.self_signal || !so.release)
		return su;
	const char *why = start_resolver();
	if (!why) {
		su.fault_in = "userfaultfd";
		return su;
	}
	if (so.fault_in == FAULT_IN_USERFAULTFD) {
		struct jbuf b = { 0 };
		jb_printf(&b, "--fault-in userfaultfd: %s", why);
		probe_skip(jb_str(&b));
	}
	su.fallback_note = why;
	return su;
}

int main(int argc, char **argv)
{
	struct probe_opts o = { 0 };
	probe_start(argc, argv, &probe, &o);
	int n = o.workers ? (int)o.workers : 2 * probe_online_cpus();
	g_keep_going = o.keep_going;
	g_regset = choose_regset(so.regs);
	const struct regset_info *rs = &regsets[g_regset];
	g_state_bytes = (size_t)rs->nregs * rs->reg_bytes + (size_t)rs->nmask * 8;
	g_nonce = (unsigned)(getpid() ^ (unsigned)time(NULL)) & 0xffff;
	if (pipe2(g_stop_pipe, O_CLOEXEC))
		probe_broken("pipe2", errno);
	struct setup su = choose_fault_in();

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigfillset(&sa.sa_mask);
	if (sigaction(PROBE_SIGNAL, &sa, NULL))
		probe_broken("sigaction", errno);

	struct worker *ws = alloc_or_die(64, sizeof *ws * (size_t)n);
	g_workers = ws;
	g_nworkers = n;
	for (int i = 0; i < n; i++)
		prepare_worker(&ws[i], i, n, ws);
	g_t0 = probe_now_s();
	su.pinned = so.pin_pairs;
	for (int i = 0; i < n; i++)
		su.pinned &= start_worker(&ws[i], so.pin_pairs);
	struct probe_monitor monitor = { ws, tick, count, NULL };
	probe_supervise(&o, g_t0, &monitor);
	request_stop();
	for (int i = 0; i < n && g_interval_us; i++)
		pthread_join(ws[i].sender, NULL);
	for (int i = 0; i < n; i++)
		pthread_join(ws[i].thread, NULL);
	stop_resolver();
	finish(ws, n, probe_now_s() - g_t0, &su);
}

#else /* !__x86_64__ */

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	probe_skip("signal_vector checks x86-64 vector registers; this is not an x86-64 machine");
}

#endif
