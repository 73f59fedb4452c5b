/*
 * altstack — does the kernel write a signal frame below a too-small alternate signal stack,
 * and how large is the frame a signal needs on this machine?
 *
 * Detects (mode overflow): CVE-2021-47326. Until 2beb4a53fc3f "x86/signal: Detect and
 * prevent an alternate signal stack overflow" (5.14; stable 5.4.134, 5.10.52, 5.12.19,
 * 5.13.4) the x86 kernel placed the frame at the top of the alternate stack and wrote it
 * without checking that it stayed above the stack's base: with AVX-512 state the frame
 * (~3.5 KiB) exceeds MINSIGSTKSZ (2048), so a program with a MINSIGSTKSZ stack had the
 * memory below it overwritten. A fixed kernel delivers SIGSEGV instead (or, with
 * CONFIG_DYNAMIC_SIGFRAME and AMX permitted, 5.16+, refuses the stack in sigaltstack()).
 * Measures (mode size): the frame size, AT_MINSIGSTKSZ and sysconf's values beside the
 * MINSIGSTKSZ/SIGSTKSZ constants programs compile in (the hazard entry).
 *
 * Method: every signal is raised in a child process on a MAP_SHARED region, so that the
 * parent sees what the kernel wrote however the child ended. The frame size is measured
 * on a 64 KiB stack: the kernel puts struct rt_sigframe at the lowest address of the
 * frame (sp at handler entry) and passes &frame->uc as the third argument, so the frame is
 * top - (ucontext - 8) bytes. With AMX (XTILEDATA permitted with ARCH_REQ_XCOMP_PERM and
 * the tiles loaded) it is measured again in a second child. The overflow test registers a
 * stack of exactly 2048 bytes (and one of AT_MINSIGSTKSZ bytes) with 64 KiB of guard words
 * below it (and a PROT_NONE page below those, so an overflow never faults before it
 * writes), makes the AVX-512 registers live and raises a signal with an inline syscall.
 * Outcomes: guard words changed (vulnerable: the frame went below the stack), the child
 * died of SIGSEGV having written nothing (the fixed kernel refused), sigaltstack()
 * refused the size (ENOMEM), or the handler ran with everything in place (the frame fit).
 *
 * Invariant: nothing but the kernel's signal delivery writes the guard zone or the stack
 * region between the parent's fill and its check (the child only registers the region).
 *
 * References: kernel commits 2beb4a53fc3f, 1c33bb050722 (AT_MINSIGSTKSZ on x86),
 * 3aac3ebea08f (sigaltstack size validation, 5.16); Documentation/arch/x86/elf_auxvec.rst.
 */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum mode { MODE_OVERFLOW, MODE_SIZE };
static const char *const mode_names[] = { "overflow", "size", NULL };
static int g_mode;

static const struct probe_option options[] = {
	{ "mode", PROBE_OPT_CHOICE, 0, 0, mode_names, "overflow",
	  "overflow: a signal onto a MINSIGSTKSZ stack with guard words below (CVE-2021-47326); size: the "
	  "frame size against MINSIGSTKSZ/SIGSTKSZ and AT_MINSIGSTKSZ, in bytes",
	  &g_mode, PROBE_OPT_INTERNAL },
	{ 0 },
};

static const struct probe_def def = {
	.name = "altstack",
	.summary = "signal frames against the alternate stack's size: overflow below a MINSIGSTKSZ stack, and the "
		   "frame size this machine needs",
	.workers_help = "unused (one child process per signal)",
	.options = options,
};

#if defined(__x86_64__)
#include <cpuid.h>

#define LEGACY_MINSIGSTKSZ 2048 /* x86 uapi <asm/signal.h>, what programs compile in */
#define LEGACY_SIGSTKSZ 8192
#define MEASURE_STACK_BYTES (64 * 1024)
#define GUARD_BYTES (64 * 1024)
#define PAGE 4096
#define GUARD_WORD(i) (0xa175ac0000000000ULL | (uint64_t)(i))
#define STACK_WORD(i) (0x57ac000000000000ULL | (uint64_t)(i))
#define CHILD_DEADLINE_S 5
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

/* What one child reports through shared memory. */
struct child_report {
	volatile int raised;       /* the child is about to raise the signal */
	volatile int handler_ran;
	volatile uintptr_t frame_low; /* lowest address of the frame (rt_sigframe) */
	volatile int sigaltstack_errno;
	volatile int amx_live;     /* the tiles were loaded before the signal */
	volatile int setup_errno;  /* a setup call failed (not the test) */
	char setup_what[48];
};

/* How one signal onto a given stack ended, as the parent sees it. */
struct delivery {
	size_t stack_bytes;
	const char *outcome; /* delivered | refused-at-delivery | refused-at-registration */
	size_t frame_bytes;  /* measured when delivered, else 0 */
	size_t guard_bytes_changed;
	size_t lowest_changed_below_base; /* bytes below the stack base, 0 when none changed */
	size_t stack_bytes_changed;
	int amx_live;
};

static struct child_report *g_report;

static int cpu_has_avx512(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
		return 0;
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX512F) && (lo & 0xe6) == 0xe6;
}

static int cpu_has_amx(void)
{
	unsigned a, b, c, d;
	return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1U << 24));
}

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	g_report->frame_low = (uintptr_t)ctx - sizeof(void *);
	g_report->handler_ran = 1;
}

static void child_fail(const char *what)
{
	g_report->setup_errno = errno ? errno : EINVAL;
	snprintf(g_report->setup_what, sizeof g_report->setup_what, "%s", what);
	_exit(3);
}

/* Loads AVX-512 registers (zmm16-31 and k1-7 with nonzero values) and raises SIGUSR1 with one
 * inline tgkill, so nothing between the loads and the signal touches them. zmm16-31 and k
 * registers need no clobber: code built without -mavx512f never uses them. */
static void raise_with_avx512_live(pid_t pid, pid_t tid)
{
	static uint64_t pattern[8] __attribute__((aligned(64)));
	for (int i = 0; i < 8; i++)
		pattern[i] = 0x5348414b454f5554ULL ^ (uint64_t)i;
	long ret;
	__asm__ volatile("vmovdqu64 (%[p]), %%zmm16\n\t"
			 "vmovdqu64 (%[p]), %%zmm23\n\t"
			 "vmovdqu64 (%[p]), %%zmm31\n\t"
			 "vmovdqu64 (%[p]), %%zmm15\n\t"
			 "mov $0xa5a5, %%ecx\n\t"
			 "kmovw %%ecx, %%k1\n\t"
			 "kmovw %%ecx, %%k7\n\t"
			 "syscall\n\t"
			 : "=a"(ret)
			 : [p] "r"(pattern), "a"((long)SYS_tgkill), "D"((long)pid), "S"((long)tid), "d"((long)SIGUSR1)
			 : "rcx", "r11", "memory", "xmm15");
	(void)ret;
}

static void raise_plain(pid_t pid, pid_t tid)
{
	syscall(SYS_tgkill, pid, tid, SIGUSR1);
}

/* Requests XTILEDATA and loads tiles 0-7 (palette 1, 16 rows of 64 bytes); 0 on success. */
static int load_amx_tiles(void)
{
	if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA))
		return -1;
	static uint8_t config[64] __attribute__((aligned(64)));
	static uint8_t tile[16 * 64] __attribute__((aligned(64)));
	memset(config, 0, sizeof config);
	config[0] = 1;
	for (int t = 0; t < 8; t++) {
		config[16 + 2 * t] = 64; /* colsb, little-endian u16 */
		config[48 + t] = 16;     /* rows */
	}
	for (size_t i = 0; i < sizeof tile; i++)
		tile[i] = (uint8_t)(i * 7 + 1);
	long stride = 64;
	__asm__ volatile("ldtilecfg (%0)\n\t"
			 "tileloadd (%1,%2,1), %%tmm0\n\t"
			 "tileloadd (%1,%2,1), %%tmm7\n\t"
			 :
			 : "r"(config), "r"(tile), "r"(stride)
			 : "memory");
	return 0;
}

/* The child: register [base, base+size) as the alternate stack, then raise one signal. */
static __attribute__((noreturn)) void child_signal(void *base, size_t size, int want_amx)
{
	alarm(CHILD_DEADLINE_S);
	if (want_amx) {
		if (load_amx_tiles())
			child_fail("arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)");
		g_report->amx_live = 1;
	}
	stack_t ss = { .ss_sp = base, .ss_size = size, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL)) {
		g_report->sigaltstack_errno = errno;
		_exit(4);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		child_fail("sigaction");
	g_report->raised = 1;
	if (cpu_has_avx512())
		raise_with_avx512_live(getpid(), (pid_t)syscall(SYS_gettid));
	else
		raise_plain(getpid(), (pid_t)syscall(SYS_gettid));
	_exit(g_report->handler_ran ? 0 : 5);
}

/* A region: PROT_NONE page, guard words, then the stack; all shared with the children. */
struct region {
	uint8_t *map;
	size_t map_bytes;
	uint64_t *guard; /* GUARD_BYTES just below base */
	uint8_t *base;
	size_t stack_bytes;
};

static void region_map(struct region *r, size_t stack_bytes)
{
	size_t stack_span = (stack_bytes + PAGE - 1) / PAGE * PAGE;
	r->map_bytes = PAGE + GUARD_BYTES + stack_span;
	r->map = mmap(NULL, r->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (r->map == MAP_FAILED)
		probe_broken("mmap", errno);
	if (mprotect(r->map, PAGE, PROT_NONE))
		probe_broken("mprotect", errno);
	r->guard = (uint64_t *)(r->map + PAGE);
	r->base = r->map + PAGE + GUARD_BYTES;
	r->stack_bytes = stack_bytes;
	for (size_t i = 0; i < GUARD_BYTES / 8; i++)
		r->guard[i] = GUARD_WORD(i);
	uint64_t *stack = (uint64_t *)r->base;
	for (size_t i = 0; i < stack_bytes / 8; i++)
		stack[i] = STACK_WORD(i);
}

static void region_inspect(const struct region *r, struct delivery *d)
{
	for (size_t i = 0; i < GUARD_BYTES / 8; i++)
		if (r->guard[i] != GUARD_WORD(i)) {
			const uint8_t *now = (const uint8_t *)&r->guard[i];
			uint64_t want = GUARD_WORD(i);
			const uint8_t *was = (const uint8_t *)&want;
			for (int k = 0; k < 8; k++)
				if (now[k] != was[k]) {
					size_t below = (size_t)(r->base - (now + k));
					if (below > d->lowest_changed_below_base)
						d->lowest_changed_below_base = below;
					d->guard_bytes_changed++;
				}
		}
	const uint64_t *stack = (const uint64_t *)r->base;
	for (size_t i = 0; i < r->stack_bytes / 8; i++)
		if (stack[i] != STACK_WORD(i))
			d->stack_bytes_changed += 8;
}

/* One signal onto a stack of stack_bytes in a child; what the kernel did with it. */
static void deliver(size_t stack_bytes, int want_amx, struct delivery *d)
{
	struct region r;
	region_map(&r, stack_bytes);
	memset(g_report, 0, sizeof *g_report);
	memset(d, 0, sizeof *d);
	d->stack_bytes = stack_bytes;
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		probe_broken("fork", errno);
	if (pid == 0)
		child_signal(r.base, stack_bytes, want_amx);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			probe_broken("waitpid", errno);
	region_inspect(&r, d);
	d->amx_live = g_report->amx_live;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
		errno = g_report->setup_errno;
		probe_broken(g_report->setup_what, errno);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 4) {
		if (g_report->sigaltstack_errno != ENOMEM)
			probe_broken("sigaltstack", g_report->sigaltstack_errno);
		d->outcome = "refused-at-registration";
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && g_report->handler_ran) {
		d->outcome = "delivered";
		d->frame_bytes = (size_t)((uintptr_t)(r.base + stack_bytes) - g_report->frame_low);
	} else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV && g_report->raised && !g_report->handler_ran) {
		d->outcome = "refused-at-delivery";
	} else {
		char what[96];
		snprintf(what, sizeof what, "the signal child ended unexpectedly (status 0x%x, raised %d)", status,
			 g_report->raised);
		probe_broken(what, 0);
	}
	munmap(r.map, r.map_bytes);
}

static void jb_delivery(struct jbuf *b, const char *name, const struct delivery *d)
{
	jb_printf(b,
		  "\"%s\":{\"stack_bytes\":%zu,\"outcome\":\"%s\",\"frame_bytes\":%zu,\"guard_bytes_changed\":%zu,"
		  "\"lowest_changed_below_base\":%zu,\"stack_bytes_changed\":%zu,\"amx_live\":%s}",
		  name, d->stack_bytes, d->outcome, d->frame_bytes, d->guard_bytes_changed,
		  d->lowest_changed_below_base, d->stack_bytes_changed, d->amx_live ? "true" : "false");
}

/* The sizes every verdict reports. */
struct sizes {
	struct delivery plain; /* on a 64 KiB stack, AVX-512 live where the CPU has it */
	struct delivery amx;   /* same with the AMX tiles loaded (outcome NULL: no AMX) */
	unsigned long at_minsigstksz;
	long sc_minsigstksz, sc_sigstksz;
};

static void measure(struct sizes *s)
{
	memset(s, 0, sizeof *s);
	s->at_minsigstksz = getauxval(AT_MINSIGSTKSZ);
#ifdef _SC_MINSIGSTKSZ
	s->sc_minsigstksz = sysconf(_SC_MINSIGSTKSZ);
	s->sc_sigstksz = sysconf(_SC_SIGSTKSZ);
#else
	s->sc_minsigstksz = s->sc_sigstksz = -1;
#endif
	deliver(MEASURE_STACK_BYTES, 0, &s->plain);
	if (strcmp(s->plain.outcome, "delivered"))
		probe_broken("a signal onto a 64 KiB alternate stack was not delivered", 0);
	if (cpu_has_amx() && cpu_has_avx512()) {
		deliver(MEASURE_STACK_BYTES, 1, &s->amx);
		if (strcmp(s->amx.outcome, "delivered"))
			probe_broken("a signal onto a 64 KiB alternate stack with AMX live was not delivered", 0);
	}
}

static void jb_sizes(struct jbuf *b, const struct sizes *s)
{
	jb_printf(b,
		  "\"deterministic\":true,\"minsigstksz_constant\":%d,\"sigstksz_constant\":%d,"
		  "\"at_minsigstksz\":%lu,\"sysconf_minsigstksz\":%ld,\"sysconf_sigstksz\":%ld,"
		  "\"frame_bytes\":%zu,\"frame_bytes_amx\":%zu,\"avx512\":%s,\"amx\":%s,",
		  LEGACY_MINSIGSTKSZ, LEGACY_SIGSTKSZ, s->at_minsigstksz, s->sc_minsigstksz, s->sc_sigstksz,
		  s->plain.frame_bytes, s->amx.frame_bytes, cpu_has_avx512() ? "true" : "false",
		  s->amx.outcome ? "true" : "false");
	jb_delivery(b, "measure", &s->plain);
	if (s->amx.outcome) {
		jb_printf(b, ",");
		jb_delivery(b, "measure_amx", &s->amx);
	}
}

static __attribute__((noreturn)) void run_size(const struct sizes *s, double t0)
{
	struct jbuf ev = { 0 }, reason = { 0 };
	jb_sizes(&ev, s);
	size_t need = s->plain.frame_bytes;
	int short_min = need > LEGACY_MINSIGSTKSZ;
	int short_sig = s->amx.frame_bytes > LEGACY_SIGSTKSZ || need > LEGACY_SIGSTKSZ;
	jb_printf(&reason, "a signal frame here takes %zu bytes", need);
	if (s->amx.outcome)
		jb_printf(&reason, " (%zu with AMX tiles in use)", s->amx.frame_bytes);
	jb_printf(&reason, "; the kernel's AT_MINSIGSTKSZ says %lu; the constants MINSIGSTKSZ %d and SIGSTKSZ %d",
		  s->at_minsigstksz, LEGACY_MINSIGSTKSZ, LEGACY_SIGSTKSZ);
	if (short_min && short_sig)
		jb_printf(&reason, " are both too small (SIGSTKSZ for AMX)");
	else if (short_min)
		jb_printf(&reason, ": MINSIGSTKSZ is too small");
	else
		jb_printf(&reason, " are enough");
	probe_finish(short_min || short_sig ? PROBE_FAIL : PROBE_PASS, 1, 1, probe_now_s() - t0, "", jb_str(&ev),
		     jb_str(&reason));
}

static __attribute__((noreturn)) void run_overflow(const struct sizes *s, double t0)
{
	struct jbuf ev = { 0 }, reason = { 0 };
	jb_sizes(&ev, s);
	size_t need = s->plain.frame_bytes;
	if (need <= LEGACY_MINSIGSTKSZ) {
		jb_printf(&reason,
			  "the signal frame (%zu bytes measured) fits in MINSIGSTKSZ (%d bytes) on this CPU: a "
			  "MINSIGSTKSZ stack cannot overflow here (AT_MINSIGSTKSZ %lu)",
			  need, LEGACY_MINSIGSTKSZ, s->at_minsigstksz);
		probe_finish(PROBE_SKIP, 1, 0, probe_now_s() - t0, "", jb_str(&ev), jb_str(&reason));
	}
	struct delivery min, aux = { 0 };
	deliver(LEGACY_MINSIGSTKSZ, 0, &min);
	jb_printf(&ev, ",");
	jb_delivery(&ev, "minsigstksz", &min);
	if (s->at_minsigstksz >= LEGACY_MINSIGSTKSZ && s->at_minsigstksz <= MEASURE_STACK_BYTES) {
		deliver((s->at_minsigstksz + 15) & ~(size_t)15, 0, &aux);
		jb_printf(&ev, ",");
		jb_delivery(&ev, "at_minsigstksz_stack", &aux);
	}
	uint64_t exposures = 1 + (aux.outcome != NULL);
	const struct delivery *hit = min.guard_bytes_changed ? &min : aux.guard_bytes_changed ? &aux : NULL;
	if (hit) {
		jb_printf(&ev, ",\"check\":\"guard-words\"");
		jb_printf(&reason,
			  "the kernel wrote a signal frame below a %zu-byte alternate stack: %zu guard bytes changed, "
			  "down to %zu bytes below the stack (a frame takes %zu bytes here)",
			  hit->stack_bytes, hit->guard_bytes_changed, hit->lowest_changed_below_base, need);
		probe_finish(PROBE_FAIL, exposures, exposures, probe_now_s() - t0, "", jb_str(&ev), jb_str(&reason));
	}
	if (!strcmp(min.outcome, "delivered")) {
		jb_printf(&reason,
			  "a %d-byte alternate stack took a signal without writing below it although the frame "
			  "measured %zu bytes: the measurement is wrong",
			  LEGACY_MINSIGSTKSZ, need);
		probe_finish(PROBE_BROKEN, exposures, exposures, probe_now_s() - t0, "", jb_str(&ev),
			     jb_str(&reason));
	}
	jb_printf(&ev, ",\"summary\":\"the kernel %s a %d-byte alternate stack for a %zu-byte frame\"",
		  !strcmp(min.outcome, "refused-at-delivery") ? "delivered SIGSEGV instead of overflowing"
							      : "refused (sigaltstack ENOMEM)",
		  LEGACY_MINSIGSTKSZ, need);
	probe_finish(PROBE_PASS, exposures, exposures, probe_now_s() - t0, "", jb_str(&ev), "");
}

int main(int argc, char **argv)
{
	struct probe_opts o = { 0 };
	probe_start(argc, argv, &def, &o);
	double t0 = probe_now_s();
	static struct child_report *shared;
	shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		probe_broken("mmap", errno);
	g_report = shared;
	struct sizes s;
	measure(&s);
	if (g_mode == MODE_SIZE)
		run_size(&s, t0);
	run_overflow(&s, t0);
}

#else
int main(int argc, char **argv)
{
	struct probe_opts o = { 0 };
	probe_start(argc, argv, &def, &o);
	probe_skip("needs x86-64: the frame sizes and the bug are x86's");
}
#endif
