/*
 * vdso_stack — measure how much stack each vDSO function really uses.
 *
 * For every exported function with a known signature, call it with sane arguments on a
 * stack whose headroom H (bytes between the caller's stack pointer and a PROT_NONE guard
 * page) is searched: the smallest H, in 16-byte steps (the ABI keeps the stack pointer
 * 16-aligned at a call), with which the call returns instead of faulting. Every try runs
 * in a child process, so a fault costs only that child. Several argument sets per
 * function (every clock id, NULL pointers, ...) exercise different paths; the largest H
 * is the measured use. The static analysis (Python, over the same image, which the
 * probe prints) is an upper bound: measured_bytes <= static_bytes rounded up to 16.
 *
 * Input: the process's own vDSO, or --library FILE: a vDSO-like shared object loaded
 * with dlopen whose functions have the vDSO's names and signatures (loading it runs its
 * code, constructors included: only for libraries the user trusts).
 * A measurement, not a search for a rare event: the evidence says "deterministic", so no
 * statistical bound is ever computed from its call count.
 * Verdict: fail when a function needs 4096 bytes or more (the -fstack-check vDSO that
 * corrupted Go programs, which gave it ~104 bytes).
 */
#define _GNU_SOURCE
#include "probe.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)

#define PAGE 4096
#define DANGER_BYTES 4096

enum sig { SIG_CLOCK, SIG_TIMEOFDAY, SIG_TIME, SIG_GETCPU, SIG_GETRANDOM };

struct known {
	const char *name;
	enum sig sig;
};

static const struct known known[] = {
	{ "__vdso_clock_gettime", SIG_CLOCK }, { "__vdso_clock_getres", SIG_CLOCK },
	{ "__vdso_gettimeofday", SIG_TIMEOFDAY }, { "__vdso_time", SIG_TIME },
	{ "__vdso_getcpu", SIG_GETCPU }, { "__vdso_getrandom", SIG_GETRANDOM },
};

static const long clocks[] = { 0, 1, 2, 3, 4, 5, 6, 7, 11, -1 }; /* -1: the error path */

struct vgetrandom_params {
	uint32_t size_of_opaque_state, mmap_prot, mmap_flags, reserved[13];
};

struct call {
	void *fn;
	long a[5];
};

static long long g_max_bytes;
static const char *g_library;
static uint8_t *g_stack_base; /* guard page, then the stack */
static uint64_t g_tries;

/* Call fn(a0..a4) with the stack pointer at sp; rbx keeps ours. */
static long call_on_stack(const struct call *c, void *sp)
{
	register long a0 __asm__("rdi") = c->a[0];
	register long a1 __asm__("rsi") = c->a[1];
	register long a2 __asm__("rdx") = c->a[2];
	register long a3 __asm__("rcx") = c->a[3];
	register long a4 __asm__("r8") = c->a[4];
	long ret;
	__asm__ volatile("mov %%rsp, %%rbx\n"
			 "mov %[sp], %%rsp\n"
			 "call *%[fn]\n"
			 "mov %%rbx, %%rsp\n"
			 : "=a"(ret), "+r"(a0), "+r"(a1), "+r"(a2), "+r"(a3), "+r"(a4)
			 : [fn] "r"(c->fn), [sp] "r"(sp)
			 : "rbx", "r9", "r10", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
			   "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
	return ret;
}

/* 1 when the call returns with `headroom` bytes of stack, 0 when it faults. */
static int fits(const struct call *c, long headroom)
{
	g_tries++;
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		probe_broken("fork", errno);
	if (pid == 0) {
		call_on_stack(c, g_stack_base + PAGE + headroom);
		_exit(0);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Smallest 16-byte multiple that fits, or -1 if even g_max_bytes faults. */
static long measure(const struct call *c)
{
	if (!fits(c, g_max_bytes))
		return -1;
	long lo = 0, hi = g_max_bytes; /* invariant: hi fits; lo does not (or is 0) */
	while (hi - lo > 16) {
		long mid = (lo + hi) / 2 / 16 * 16;
		if (mid <= lo)
			mid = lo + 16;
		if (fits(c, mid))
			hi = mid;
		else
			lo = mid;
	}
	return fits(c, lo) && lo > 0 ? lo : hi;
}

/* ---- finding functions ------------------------------------------------------------- */

static const ElfW(Ehdr) *vdso_ehdr(void)
{
	return (const ElfW(Ehdr) *)getauxval(AT_SYSINFO_EHDR);
}

static void *vdso_symbol(const char *name)
{
	int has_vdso;
	return probe_vdso_symbol(name, &has_vdso);
}

static size_t vdso_size(void)
{
	const ElfW(Ehdr) *eh = vdso_ehdr();
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff);
	size_t end = 0;
	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && ph[i].p_offset + ph[i].p_filesz > end)
			end = ph[i].p_offset + ph[i].p_filesz;
	/* The section headers (for .dynsym) follow the loadable part. */
	size_t shdrs = eh->e_shoff + (size_t)eh->e_shnum * eh->e_shentsize;
	return shdrs > end ? shdrs : end;
}

/* ---- argument sets ------------------------------------------------------------------ */

static int argument_sets(enum sig sig, void *fn, struct call *out, int max)
{
	static struct timespec ts;
	static struct timeval tv;
	static struct timezone tz;
	static long t;
	static unsigned cpu, node;
	static uint8_t buf[256];
	int n = 0;
	switch (sig) {
	case SIG_CLOCK:
		for (size_t i = 0; i < sizeof clocks / sizeof *clocks && n < max; i++)
			out[n++] = (struct call){ .fn = fn, .a = { clocks[i], (long)&ts } };
		break;
	case SIG_TIMEOFDAY:
		out[n++] = (struct call){ .fn = fn, .a = { (long)&tv, 0 } };
		out[n++] = (struct call){ .fn = fn, .a = { (long)&tv, (long)&tz } };
		out[n++] = (struct call){ .fn = fn, .a = { 0, 0 } };
		break;
	case SIG_TIME:
		out[n++] = (struct call){ .fn = fn, .a = { 0 } };
		out[n++] = (struct call){ .fn = fn, .a = { (long)&t } };
		break;
	case SIG_GETCPU:
		out[n++] = (struct call){ .fn = fn, .a = { (long)&cpu, (long)&node, 0 } };
		out[n++] = (struct call){ .fn = fn, .a = { 0, 0, 0 } };
		break;
	case SIG_GETRANDOM: {
		static struct vgetrandom_params params;
		long (*vgetrandom)(void *, size_t, unsigned, void *, size_t) = fn;
		out[n++] = (struct call){ .fn = fn, .a = { 0, 0, 0, (long)&params, (long)~0UL } };
		if (vgetrandom(NULL, 0, 0, &params, ~0UL) == 0 && params.size_of_opaque_state) {
			void *state = mmap(NULL, PAGE, (int)params.mmap_prot, (int)params.mmap_flags, -1, 0);
			if (state != MAP_FAILED) {
				out[n++] = (struct call){ .fn = fn, .a = { (long)buf, 16, 0, (long)state, params.size_of_opaque_state } };
				out[n++] = (struct call){ .fn = fn, .a = { (long)buf, 256, 0, (long)state, params.size_of_opaque_state } };
			}
		}
		break;
	}
	}
	return n;
}

static const struct probe_option options[] = {
	{ "library", PROBE_OPT_TEXT, 1, 4096, NULL, NULL,
	  "measure this vDSO-like shared object (a path) instead of the vDSO; loads it: runs its code, "
	  "constructors included",
	  &g_library, 0 },
	{ "max-bytes", PROBE_OPT_INT, 256, 1 << 24, NULL, "65536", "largest stack headroom tried, in bytes",
	  &g_max_bytes, 0 },
	{ 0 },
};

static const struct probe_def probe = {
	"vdso_stack", "stack use of every vDSO function, measured above a guard page",
	"unused (the measurement is one process)", options,
};

int main(int argc, char **argv)
{
	struct probe_opts o = { 0 };
	probe_start(argc, argv, &probe, &o);
	g_max_bytes = (g_max_bytes + 15) / 16 * 16;
	void *lib = NULL;
	if (g_library) {
		lib = dlopen(g_library, RTLD_NOW | RTLD_LOCAL);
		if (!lib) {
			struct jbuf r = { 0 };
			jb_printf(&r, "cannot load %s: %s", g_library, dlerror());
			probe_skip(jb_str(&r));
		}
	} else if (!vdso_ehdr()) {
		probe_skip("this process has no vDSO (AT_SYSINFO_EHDR is 0)");
	}
	g_stack_base = mmap(NULL, (size_t)g_max_bytes + 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
	if (g_stack_base == MAP_FAILED || mprotect(g_stack_base, PAGE, PROT_NONE))
		probe_broken("mmap of the measurement stack", errno);

	double t0 = probe_now_s();
	struct jbuf e = { 0 };
	jb_printf(&e, "\"deterministic\":true,\"source\":");
	jb_string(&e, g_library ? g_library : "vdso");
	jb_printf(&e, ",\"max_bytes\":%lld,\"functions\":[", g_max_bytes);
	uint64_t calls = 0;
	long deepest = 0;
	int first = 1;
	for (size_t k = 0; k < sizeof known / sizeof *known; k++) {
		void *fn = lib ? dlsym(lib, known[k].name) : vdso_symbol(known[k].name);
		if (!fn)
			continue;
		struct call sets[16];
		int n = argument_sets(known[k].sig, fn, sets, 16);
		/* A call that faults even with max-bytes of headroom faults for another reason (a
		 * vDSO image loaded with dlopen has no vvar page): not a stack measurement. */
		long worst = 0;
		int measured = 0, unmeasurable = 0;
		for (int i = 0; i < n; i++) {
			long need = measure(&sets[i]);
			calls++;
			if (need < 0) {
				unmeasurable++;
			} else {
				measured++;
				if (need > worst)
					worst = need;
			}
		}
		if (measured && worst > deepest)
			deepest = worst;
		jb_printf(&e, "%s{\"name\":\"%s\",\"argument_sets\":%d,\"faulting_with_any_stack\":%d,\"measured_bytes\":",
			  first ? "" : ",", known[k].name, n, unmeasurable);
		if (measured)
			jb_printf(&e, "%ld}", worst);
		else
			jb_printf(&e, "null}");
		first = 0;
		probe_emit_progress(g_tries, calls, probe_now_s() - t0);
	}
	jb_printf(&e, "]");
	if (!g_library) {
		jb_printf(&e, ",\"image\":");
		jb_hex(&e, (const uint8_t *)vdso_ehdr(), vdso_size());
	}
	struct jbuf m = { 0 };
	double elapsed = probe_now_s() - t0;
	jb_printf(&m, "\"tries\":%llu,\"deepest_measured_bytes\":%ld", (unsigned long long)g_tries, deepest);
	int fail = deepest >= DANGER_BYTES;
	probe_finish(fail ? PROBE_FAIL : PROBE_PASS, g_tries, calls, elapsed, jb_str(&m), jb_str(&e),
		     fail ? "a vDSO function uses 4 KiB or more of its caller's stack" : NULL);
}

#else

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	probe_skip("vdso_stack measures x86-64 vDSOs only");
}

#endif
