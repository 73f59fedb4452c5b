/*
 * lib_vdso_deep — a vDSO-like library with a known deep stack probe: the selftest subject
 * of the vdso-stack probe (loaded with --library, measured through the same path as a
 * real vDSO, analysed statically from the same file).
 *
 * Every function is named and typed like the vDSO's and runs the exact sequence the
 * Gentoo Hardened vDSO built with -fstack-check ran (Go issue 20427):
 *     sub $0x1020,%rsp; orq $0x0,(%rsp); add $0x1020,%rsp
 * which touches 0x1020 bytes below the stack pointer: with the return address, 4,136 bytes
 * below the caller's. Written as that sequence rather than compiled with -fstack-check,
 * so the truth does not depend on the compiler (clang has no -fstack-check).
 * Invariant: a vdso-stack probe that measures this library must report >= 4,096 bytes
 * (the guard page is hit at the orq) and a static probe at depth >= 4,096.
 */
#include <stddef.h>
#include <sys/time.h>
#include <time.h>

int __vdso_clock_gettime(long clock, struct timespec *ts);
int __vdso_clock_getres(long clock, struct timespec *ts);
int __vdso_gettimeofday(struct timeval *tv, void *tz);
long __vdso_time(long *t);
int __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused);

static inline void probe_a_page_below(void)
{
	__asm__ volatile("sub $0x1020, %%rsp\n\t"
			 "orq $0x0, (%%rsp)\n\t"
			 "add $0x1020, %%rsp"
			 :
			 :
			 : "memory", "cc");
}

int __vdso_clock_gettime(long clock, struct timespec *ts)
{
	probe_a_page_below();
	if (ts) {
		ts->tv_sec = clock;
		ts->tv_nsec = 0;
	}
	return 0;
}

int __vdso_clock_getres(long clock, struct timespec *ts)
{
	probe_a_page_below();
	if (ts) {
		ts->tv_sec = 0;
		ts->tv_nsec = clock >= 0;
	}
	return 0;
}

int __vdso_gettimeofday(struct timeval *tv, void *tz)
{
	(void)tz;
	probe_a_page_below();
	if (tv) {
		tv->tv_sec = 0;
		tv->tv_usec = 0;
	}
	return 0;
}

long __vdso_time(long *t)
{
	probe_a_page_below();
	if (t)
		*t = 0;
	return 0;
}

int __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused)
{
	(void)unused;
	probe_a_page_below();
	if (cpu)
		*cpu = 0;
	if (node)
		*node = 0;
	return 0;
}
