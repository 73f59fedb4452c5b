/*
 * inject_sigframe — an LD_PRELOAD fault injector for the signal-vector probe (selftest).
 *
 * It produces the symptom of CVE-2019-19602 through the kernel's own mechanism: it
 * wraps sigaction()/signal() so that every installed handler runs inside a wrapper, and
 * after every k-th handler call *whose frame the kernel had to fault in* it edits the
 * vector state saved in the signal frame. sigreturn then loads the edited values into
 * the registers, exactly as the buggy kernel loaded another task's registers that it had
 * saved there. Like the bug, it acts only on frames that were faulted in: the thread took
 * a minor fault, or slept (a fault served by userfaultfd is not counted as a minor fault),
 * between its previous handler's return and this handler's entry, as getrusage
 * (RUSAGE_THREAD) tells. The probes it is used with touch only resident memory and make
 * no blocking call in that interval, so the fault is the frame's. A probe whose release
 * of the signal stack is broken is therefore never corrupted, and selftest fails.
 *
 * Environment:
 *   SHAKEOUT_INJECT        ymm (YMM upper halves, all 16) | xmm (XMM8–15) |
 *                          zmm (k0–7, ZMM0–15 bits 256–511, ZMM16–31 whole)
 *   SHAKEOUT_INJECT_EVERY  k, edit after every k-th faulted-in frame (default 300)
 *
 * Frame layout (x86-64): uc_mcontext.fpregs points at the kernel's XSAVE image in the
 * frame; XMMi at +160+16i; the software-reserved bytes at +464 hold magic1 (0x46505853),
 * xstate_size (+480); the XSAVE header's xstate_bv at +512; YMM_Hi128 at the offset
 * CPUID(0xD, 2).EBX (576); magic2 (0x46505845) at +xstate_size. Setting bit 2 of
 * xstate_bv makes sigreturn load the edited upper halves; the magics stay intact (a bad
 * magic makes the kernel reset the extended state instead of loading it). The AVX-512
 * components are found the same way (CPUID 0xD sub-leaves 5: opmask, 6: ZMM_Hi256,
 * 7: Hi16_ZMM; xstate_bv bits 5–7): signal frames use the standard, uncompacted format.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <ucontext.h>

#if defined(__x86_64__)
#include <cpuid.h>

#define FP_XSTATE_MAGIC1 0x46505853U
#define FP_XSTATE_MAGIC2 0x46505845U
#define UC_FP_XSTATE_FLAG 0x1UL

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef void (*siginfo_handler)(int, siginfo_t *, void *);

static siginfo_handler user_handlers[NSIG];
static void (*user_plain_handlers[NSIG])(int);
static unsigned long g_every;
enum mode { MODE_OFF, MODE_YMM, MODE_XMM, MODE_ZMM };
static enum mode g_mode;
static unsigned long g_count;

/* This thread's counters when its previous handler returned (valid once `seen`). */
struct thread_marks {
	int seen;
	long minflt, nvcsw;
};
static __thread struct thread_marks tls_marks __attribute__((tls_model("initial-exec")));

static void configure(void)
{
	const char *mode = getenv("SHAKEOUT_INJECT");
	const char *every = getenv("SHAKEOUT_INJECT_EVERY");
	g_mode = !mode ? MODE_OFF
		 : !strcmp(mode, "ymm") ? MODE_YMM
		 : !strcmp(mode, "xmm") ? MODE_XMM
		 : !strcmp(mode, "zmm") ? MODE_ZMM
					: MODE_OFF;
	g_every = every ? strtoul(every, NULL, 10) : 300;
	if (!g_every)
		g_every = 300;
}

static void flip(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] ^= 0xff;
}

/* Inverts XSAVE component `component` in the frame and marks it present; 0 if it is not there. */
static int flip_component(uint8_t *fp, uint32_t xstate_size, unsigned component)
{
	unsigned size, offset, c, d;
	__cpuid_count(0xd, component, size, offset, c, d);
	(void)c;
	(void)d;
	if (!size || offset + size > xstate_size)
		return 0;
	flip(fp + offset, size);
	uint64_t bv;
	memcpy(&bv, fp + 512, 8);
	bv |= 1ULL << component;
	memcpy(fp + 512, &bv, 8);
	return 1;
}

static void corrupt_frame(void *ctx)
{
	ucontext_t *uc = ctx;
	uint8_t *fp = (uint8_t *)uc->uc_mcontext.fpregs;
	if (!fp)
		return;
	if (g_mode == MODE_XMM) {
		flip(fp + 160 + 16 * 8, 16 * 8);
		return;
	}
	if (!(uc->uc_flags & UC_FP_XSTATE_FLAG))
		return;
	uint32_t magic1, xstate_size, magic2;
	memcpy(&magic1, fp + 464, 4);
	memcpy(&xstate_size, fp + 480, 4);
	if (magic1 != FP_XSTATE_MAGIC1)
		return;
	memcpy(&magic2, fp + xstate_size, 4);
	if (magic2 != FP_XSTATE_MAGIC2)
		return;
	if (g_mode == MODE_YMM) {
		flip_component(fp, xstate_size, 2);
		return;
	}
	for (unsigned component = 5; component <= 7; component++)
		flip_component(fp, xstate_size, component);
}

/* Whether this thread faulted a page in or slept since its previous handler returned. */
static int frame_was_faulted_in(const struct rusage *now)
{
	const struct thread_marks *m = &tls_marks;
	return m->seen && (now->ru_minflt > m->minflt || now->ru_nvcsw > m->nvcsw);
}

static void mark_handler_return(void)
{
	struct rusage now;
	if (getrusage(RUSAGE_THREAD, &now))
		return;
	tls_marks = (struct thread_marks){ 1, now.ru_minflt, now.ru_nvcsw };
}

static void wrapper(int sig, siginfo_t *si, void *ctx)
{
	struct rusage entry;
	int faulted = g_mode != MODE_OFF && !getrusage(RUSAGE_THREAD, &entry) && frame_was_faulted_in(&entry);
	if (user_handlers[sig])
		user_handlers[sig](sig, si, ctx);
	else if (user_plain_handlers[sig])
		user_plain_handlers[sig](sig);
	if (faulted && __atomic_add_fetch(&g_count, 1, __ATOMIC_RELAXED) % g_every == 0)
		corrupt_frame(ctx);
	if (g_mode != MODE_OFF)
		mark_handler_return();
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	static sigaction_fn real;
	if (!real) {
		real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
		configure();
	}
	if (!act || sig <= 0 || sig >= NSIG || act->sa_handler == SIG_DFL || act->sa_handler == SIG_IGN)
		return real(sig, act, old);
	struct sigaction wrapped = *act;
	if (act->sa_flags & SA_SIGINFO) {
		user_handlers[sig] = act->sa_sigaction;
		user_plain_handlers[sig] = NULL;
	} else {
		user_plain_handlers[sig] = act->sa_handler;
		user_handlers[sig] = NULL;
	}
	wrapped.sa_sigaction = wrapper;
	wrapped.sa_flags |= SA_SIGINFO;
	return real(sig, &wrapped, old);
}

sighandler_t signal(int sig, sighandler_t handler)
{
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, &old))
		return SIG_ERR;
	return old.sa_handler;
}

#endif
