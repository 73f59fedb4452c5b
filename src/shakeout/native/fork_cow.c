/*
 * fork_cow — does a multi-threaded process read back what it just wrote, right after
 * fork()?
 *
 * Detects: the copy-on-write/TLB race of NetBSD PR 56535 (also OpenBSD; AMD family
 * 17h/19h): after fork() write-protected the parent's pages, the parent stored a value
 * and immediately read back the value from *before* the fork, while another thread wrote
 * an unrelated word of the same page. Go programs crashed ("entersyscall inconsistent").
 *
 * Modes:
 *   stale-read  the PR's reproducer: store OLD, raw fork (the child only calls
 *               exit_group; libc fork() is too slow to open the window), store NEW, load,
 *               compare, while a writer thread stores to another word of the same page.
 *               The word is read again at the end of the iteration: a store that went to
 *               a page the fork then discarded (a lost write, the other face of a COW/TLB
 *               race) shows there. (The immediate load is served from the CPU's own store
 *               buffer, so only a mapping error, not another writer, can fool it.)
 *               Values encode the iteration, so the evidence tells which value came back.
 *   tlb         the three-thread variant from the PR's follow-up: A keeps triggering COW
 *               on the page, B increments a counter under a lock, C reads it twice under
 *               the lock, a short spin apart (so a TLB shootdown can land between the
 *               reads), and compares; the instance forks in a loop.
 * Several instances (processes, --workers; default: enough to keep every CPU busy) load
 * the machine, as the PR recommends. An exposure is a fork during which a writer stored
 * to the page.
 *
 * Each instance announces the page it checks ({"event":"target",...}: pid and address),
 * because that is evidence, and so that a fault injector can write a stale value there
 * (process_vm_writev) to prove the probe catches it.
 *
 * Selftest windows (--inject-window immediate|end, stale-read only): the natural window
 * between the store after the fork and the load is a few instructions, which an outside
 * writer almost never hits. So once, at iteration WINDOW_ITERATION of each instance (after
 * that many forks), the instance opens it on purpose: it announces {"event":"window",
 * "pid","address","ack","check"} and spins until the writer has stored into the word and
 * set the ack word (at most WINDOW_WAIT_S), then goes on with the same load and compare.
 * "immediate" opens it between the store and the immediate load (the PR's symptom);
 * "end" between the immediate check and the end-of-iteration one.
 *
 * Portability: the loops use POSIX threads and mutexes only; the raw fork is per OS and
 * architecture (Linux x86-64 and aarch64 here; elsewhere the probe skips).
 */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#define HAVE_RAW_FORK 1

/* fork(2) straight into the kernel; the child calls exit_group(0) without returning. */
static inline long raw_fork(void)
{
#if defined(__x86_64__)
	long ret;
	__asm__ volatile("syscall\n"
			 "test %%rax, %%rax\n"
			 "jnz 1f\n"
			 "mov $231, %%eax\n" /* exit_group */
			 "xor %%edi, %%edi\n"
			 "syscall\n"
			 "hlt\n"
			 "1:\n"
			 : "=a"(ret)
			 : "0"(57L) /* fork */
			 : "rcx", "r11", "rdi", "memory");
	return ret;
#else
	/* aarch64 has no fork syscall: clone(SIGCHLD, 0, 0, 0, 0). */
	register long x0 __asm__("x0") = SIGCHLD;
	register long x1 __asm__("x1") = 0;
	register long x2 __asm__("x2") = 0;
	register long x3 __asm__("x3") = 0;
	register long x4 __asm__("x4") = 0;
	register long x8 __asm__("x8") = 220; /* clone */
	__asm__ volatile("svc #0\n"
			 "cbnz x0, 1f\n"
			 "mov x8, #94\n" /* exit_group */
			 "mov x0, #0\n"
			 "svc #0\n"
			 "1:\n"
			 : "+r"(x0)
			 : "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x8)
			 : "memory");
	return x0;
#endif
}
#endif

#define VALUE_TAG 0x434f57ULL /* "COW" */
#define MAX_SAMPLES 4
#define OFFSET_WORD 0
#define OFFSET_STALE_WRITER 8   /* stale-read: the writer's word, as in the PR */
#define OFFSET_TLB_WRITER 512   /* tlb: A's word, as in the follow-up */
#define WINDOW_ITERATION 1000
#define WINDOW_WAIT_S 2.0

enum mode { MODE_STALE_READ, MODE_TLB };
static const char *const mode_names[] = { "stale-read", "tlb", NULL };
enum window { WINDOW_OFF, WINDOW_IMMEDIATE, WINDOW_END };
static const char *const window_names[] = { "off", "immediate", "end", NULL };

struct sample {
	const char *check; /* "immediate", "end of iteration" or "two reads under the lock" */
	uint64_t expected, observed, reread, iteration;
	int cpu, writer_cpu;
	pid_t pid;
	uint64_t address;
	double after_s;
};

/* Per instance, in memory shared with the probe's main process. */
struct instance {
	volatile uint64_t forks, exposures, checks;
	volatile uint64_t address; /* the checked word, once ready */
	volatile int ready, failed, broken_errno;
	volatile uint64_t window_ack; /* set from outside by the selftest's writer */
	volatile int windows_opened, windows_answered;
	pid_t pid;
} __attribute__((aligned(64)));

struct shared {
	volatile int stop;
	volatile int sample_lock;
	volatile uint64_t corruptions;
	int nsamples;
	struct sample samples[MAX_SAMPLES];
	struct instance inst[];
};

static struct shared *g;
static int g_mode;   /* enum mode */
static int g_window; /* enum window */
static int g_keep_going;
static long long g_writer_spin, g_max_children, g_reader_gap;
static double g_t0;

/* ---- state private to one instance process -------------------------------------- */

static volatile uint8_t *page;
static volatile uint64_t writer_stores;
static volatile int writer_cpu = -1;
static volatile int threads_ready;
static pthread_mutex_t tlb_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile uint64_t *word(size_t off) { return (volatile uint64_t *)(page + off); }

static uint64_t make_value(uint64_t iteration, int phase)
{
	return (VALUE_TAG << 40) | ((iteration & ((1ULL << 39) - 1)) << 1) | (uint64_t)phase;
}

static int current_cpu(void)
{
#if defined(__linux__)
	return sched_getcpu();
#else
	return -1;
#endif
}

static void __attribute__((noinline)) spin(long loops)
{
	for (volatile long i = 0; i < loops; i++) {
	}
}

static void record(struct instance *in, const char *check, uint64_t expected, uint64_t observed, uint64_t reread,
		   uint64_t iteration)
{
	while (__atomic_exchange_n(&g->sample_lock, 1, __ATOMIC_ACQUIRE))
		sched_yield();
	g->corruptions++;
	if (g->nsamples < MAX_SAMPLES) {
		struct sample *s = &g->samples[g->nsamples++];
		s->check = check;
		s->expected = expected;
		s->observed = observed;
		s->reread = reread;
		s->iteration = iteration;
		s->cpu = current_cpu();
		s->writer_cpu = writer_cpu;
		s->pid = getpid();
		s->address = (uint64_t)(uintptr_t)in->address;
		s->after_s = probe_now_s() - g_t0;
	}
	__atomic_store_n(&g->sample_lock, 0, __ATOMIC_RELEASE);
	in->failed = 1;
	if (!g_keep_going)
		g->stop = 1;
}

/* stale-read: another word of the same page, stored to continuously (the PR's thread). */
static void *stale_writer(void *arg)
{
	(void)arg;
	__atomic_store_n(&threads_ready, threads_ready + 1, __ATOMIC_SEQ_CST);
	uint32_t sink = 0;
	while (!g->stop) {
		spin(g_writer_spin);
		__atomic_store_n((volatile uint32_t *)(page + OFFSET_STALE_WRITER), sink++, __ATOMIC_SEQ_CST);
		writer_stores++;
		if ((writer_stores & 1023) == 0)
			writer_cpu = current_cpu();
	}
	return NULL;
}

/* tlb, thread A: keep triggering copy-on-write of the page after every fork. */
static void *tlb_cow_trigger(void *arg)
{
	(void)arg;
	__atomic_store_n(&threads_ready, threads_ready + 1, __ATOMIC_SEQ_CST);
	while (!g->stop) {
		*(volatile int *)(page + OFFSET_TLB_WRITER) = 1;
		writer_stores++;
		if ((writer_stores & 1023) == 0)
			writer_cpu = current_cpu();
	}
	return NULL;
}

/* tlb, thread B: write a counter under the lock. */
static void *tlb_counter(void *arg)
{
	(void)arg;
	__atomic_store_n(&threads_ready, threads_ready + 1, __ATOMIC_SEQ_CST);
	uint64_t x = 0;
	while (!g->stop) {
		pthread_mutex_lock(&tlb_lock);
		*word(OFFSET_WORD) = make_value(++x, 0);
		pthread_mutex_unlock(&tlb_lock);
	}
	return NULL;
}

/* tlb, thread C: under the lock nobody writes, so two reads must agree. */
static void *tlb_reader(void *arg)
{
	struct instance *in = arg;
	__atomic_store_n(&threads_ready, threads_ready + 1, __ATOMIC_SEQ_CST);
	while (!g->stop) {
		pthread_mutex_lock(&tlb_lock);
		uint64_t x0 = *word(OFFSET_WORD);
		spin(g_reader_gap);
		uint64_t x1 = *word(OFFSET_WORD);
		uint64_t again = x1 != x0 ? *word(OFFSET_WORD) : x1;
		pthread_mutex_unlock(&tlb_lock);
		in->checks++;
		if (x1 != x0)
			record(in, "two reads under the lock", x0, x1, again, in->checks);
	}
	return NULL;
}

static void start_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	int err = pthread_create(&t, NULL, fn, arg);
	if (err) {
		g->inst[0].broken_errno = err;
		_exit(PROBE_BROKEN);
	}
}

#ifdef HAVE_RAW_FORK
/*
 * Children are reaped in batches: waiting for each child to be scheduled and exit is not
 * part of the race (the window is in the parent, right after fork) and, on a loaded
 * machine, would dominate the loop. At most g_max_children are outstanding.
 */
static long g_outstanding;

static void reap(struct instance *in, int block)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, block ? 0 : WNOHANG);
		if (pid > 0) {
			g_outstanding--;
			block = 0;
			continue;
		}
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0 && errno != ECHILD) {
			in->broken_errno = errno;
			g->stop = 1;
		}
		return;
	}
}

static void after_fork(struct instance *in)
{
	if (++g_outstanding >= g_max_children)
		reap(in, 1);
	else if ((in->forks & 7) == 0)
		reap(in, 0);
}

/* Selftest: ask the outside writer to store into the word now, and wait until it has. */
static void open_window(struct instance *in, enum window which)
{
	printf("{\"event\":\"window\",\"pid\":%d,\"address\":\"0x%llx\",\"ack\":\"0x%llx\",\"check\":\"%s\"}\n",
	       (int)getpid(), (unsigned long long)in->address, (unsigned long long)(uintptr_t)&in->window_ack,
	       window_names[which]);
	fflush(stdout);
	in->windows_opened++;
	double until = probe_now_s() + WINDOW_WAIT_S;
	while (!__atomic_load_n(&in->window_ack, __ATOMIC_ACQUIRE) && !g->stop && probe_now_s() < until) {
	}
	if (in->window_ack)
		in->windows_answered++;
}

static void stale_read_loop(struct instance *in)
{
	volatile uint64_t *b = word(OFFSET_WORD);
	for (uint64_t i = 1; !g->stop; i++) {
		uint64_t old = make_value(i, 0), new = make_value(i, 1);
		uint64_t s0 = writer_stores;
		*b = old;
		long pid = raw_fork();
		if (pid < 0) {
			in->broken_errno = (int)-pid;
			g->stop = 1;
			return;
		}
		*b = new;
		if (g_window == WINDOW_IMMEDIATE && i == WINDOW_ITERATION)
			open_window(in, WINDOW_IMMEDIATE);
		uint64_t observed = *b;
		if (observed != new)
			record(in, "immediate", new, observed, *b, i);
		after_fork(in);
		in->forks++;
		in->checks++;
		if (writer_stores != s0)
			in->exposures++;
		if (g_window == WINDOW_END && i == WINDOW_ITERATION)
			open_window(in, WINDOW_END);
		observed = *b;
		if (observed != new)
			record(in, "end of iteration", new, observed, *b, i);
	}
}

static void tlb_fork_loop(struct instance *in)
{
	while (!g->stop) {
		uint64_t s0 = writer_stores;
		long pid = raw_fork();
		if (pid < 0) {
			in->broken_errno = (int)-pid;
			g->stop = 1;
			return;
		}
		after_fork(in);
		in->forks++;
		if (writer_stores != s0)
			in->exposures++;
	}
}
#endif

static void __attribute__((noreturn)) run_instance(struct instance *in, pid_t probe_pid)
{
#if defined(__linux__)
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != probe_pid)
		_exit(PROBE_BROKEN);
#else
	(void)probe_pid;
#endif
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) {
		in->broken_errno = errno;
		_exit(PROBE_BROKEN);
	}
	in->pid = getpid();
	int nthreads = 1;
	if (g_mode == MODE_STALE_READ) {
		start_thread(stale_writer, in);
	} else {
		*word(OFFSET_WORD) = make_value(0, 0);
		start_thread(tlb_cow_trigger, in);
		start_thread(tlb_counter, in);
		start_thread(tlb_reader, in);
		nthreads = 3;
	}
	while (__atomic_load_n(&threads_ready, __ATOMIC_SEQ_CST) < nthreads)
		sched_yield();
	in->address = (uint64_t)(uintptr_t)word(OFFSET_WORD);
	__atomic_store_n(&in->ready, 1, __ATOMIC_RELEASE);
#ifdef HAVE_RAW_FORK
	if (g_mode == MODE_STALE_READ)
		stale_read_loop(in);
	else
		tlb_fork_loop(in);
#endif
	_exit(0);
}

/* ---- the probe's main process ------------------------------------------------------- */

static const struct probe_option options[] = {
	{ "mode", PROBE_OPT_CHOICE, 0, 0, mode_names, "stale-read",
	  "stale-read (the PR's reproducer) or tlb (the three-thread variant)", &g_mode, 0 },
	{ "writer-spin", PROBE_OPT_INT, 0, 100000000, NULL, "40000", "spin loops between the writer's stores (stale-read)",
	  &g_writer_spin, 0 },
	{ "max-children", PROBE_OPT_INT, 1, 4096, NULL, "16", "forked children outstanding before the loop waits",
	  &g_max_children, 0 },
	{ "reader-gap", PROBE_OPT_INT, 0, 100000000, NULL, "200", "spin loops between the tlb reader's two reads",
	  &g_reader_gap, 0 },
	{ "inject-window", PROBE_OPT_CHOICE, 0, 0, window_names, "off",
	  "selftest (stale-read): after 1,000 forks, hold a window open for an outside writer "
	  "(immediate: before the first read; end: at the end of the iteration)",
	  &g_window, PROBE_OPT_INTERNAL },
	{ 0 },
};

static const struct probe_def probe = {
	"fork_cow", "values that change after a raw fork() while another thread writes the same page",
	"instance processes (default: enough to keep every CPU busy)", options,
};

static void totals(int n, uint64_t *forks, uint64_t *exposures, uint64_t *checks)
{
	*forks = *exposures = *checks = 0;
	for (int i = 0; i < n; i++) {
		*forks += g->inst[i].forks;
		*exposures += g->inst[i].exposures;
		*checks += g->inst[i].checks;
	}
}

static void window_totals(int n, int *opened, int *answered)
{
	*opened = *answered = 0;
	for (int i = 0; i < n; i++) {
		*opened += g->inst[i].windows_opened;
		*answered += g->inst[i].windows_answered;
	}
}

static double cpu_seconds(int who)
{
	struct rusage ru;
	getrusage(who, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static __attribute__((noreturn)) void finish(int n, double elapsed)
{
	uint64_t forks, exposures, checks;
	totals(n, &forks, &exposures, &checks);
	double cpu = cpu_seconds(RUSAGE_SELF) + cpu_seconds(RUSAGE_CHILDREN);
	struct jbuf m = { 0 }, e = { 0 };
	jb_printf(&m, "\"forks_per_s\":%.1f,\"exposures_per_s\":%.1f,\"checks_per_s\":%.1f,\"cpu_utilisation\":%.3f",
		  forks / elapsed, exposures / elapsed, checks / elapsed, cpu / (elapsed * probe_online_cpus()));
	jb_printf(&e, "\"mode\":\"%s\",\"instances\":%d,\"forks\":%llu,\"checks\":%llu,\"writer_spin\":%lld,"
		  "\"max_children\":%lld,\"reader_gap\":%lld,\"corruptions\":%llu",
		  mode_names[g_mode], n, (unsigned long long)forks, (unsigned long long)checks, g_writer_spin,
		  g_max_children, g_reader_gap, (unsigned long long)g->corruptions);
	if (g_window != WINDOW_OFF) {
		int opened, answered;
		window_totals(n, &opened, &answered);
		jb_printf(&e, ",\"inject_window\":\"%s\",\"window_iteration\":%d,\"windows_opened\":%d,"
			  "\"windows_answered\":%d",
			  window_names[g_window], WINDOW_ITERATION, opened, answered);
	}
	if (g->nsamples) {
		jb_printf(&e, ",\"samples\":[");
		for (int i = 0; i < g->nsamples; i++) {
			struct sample *s = &g->samples[i];
			jb_printf(&e,
				  "%s{\"check\":\"%s\",\"expected\":\"0x%016llx\",\"observed\":\"0x%016llx\",\"reread\":\"0x%016llx\","
				  "\"iteration\":%llu,\"pid\":%d,\"address\":\"0x%llx\",\"cpu\":%d,\"writer_cpu\":%d,"
				  "\"after_s\":%.6f}",
				  i ? "," : "", s->check, (unsigned long long)s->expected, (unsigned long long)s->observed,
				  (unsigned long long)s->reread, (unsigned long long)s->iteration, (int)s->pid,
				  (unsigned long long)s->address, s->cpu, s->writer_cpu, s->after_s);
		}
		jb_printf(&e, "]");
	}
	probe_finish(g->corruptions ? PROBE_FAIL : PROBE_PASS, checks, exposures, elapsed, jb_str(&m), jb_str(&e),
		     g->corruptions ? (g_mode == MODE_STALE_READ ? "a value read right after it was stored differs from it"
								 : "two reads of a word under a lock disagree")
				    : NULL);
}

static int tick(void *ctx, double max_s)
{
	(void)ctx;
	probe_nap(max_s);
	return g->stop;
}

static void count(void *ctx, uint64_t *iterations, uint64_t *exposures)
{
	uint64_t forks;
	totals(*(int *)ctx, &forks, exposures, iterations);
}

int main(int argc, char **argv)
{
	struct probe_opts o = { 0 };
	probe_start(argc, argv, &probe, &o);
#ifndef HAVE_RAW_FORK
	probe_skip("fork_cow knows the raw fork system call only for Linux on x86-64 and aarch64");
#endif
	if (g_mode == MODE_TLB && g_window != WINDOW_OFF)
		probe_broken("--inject-window (stale-read only)", EINVAL);
	g_keep_going = o.keep_going;
	/*
	 * Default: enough instances to keep every CPU busy, but no more: an instance has 2 busy
	 * threads (4 in tlb mode), and the race needs its writer running *while* it forks. On 2
	 * CPUs, 2 stale-read instances gave ~1.4k exposures/s against ~4.9k for one.
	 */
	int per_instance = g_mode == MODE_TLB ? 4 : 2;
	int n = o.workers ? (int)o.workers : (probe_online_cpus() + per_instance - 1) / per_instance;
	size_t bytes = sizeof(struct shared) + sizeof(struct instance) * (size_t)n;
	g = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g == MAP_FAILED)
		probe_broken("mmap of the shared result area", errno);

	pid_t self = getpid();
	fflush(stdout);
	g_t0 = probe_now_s();
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			probe_broken("fork of an instance", errno);
		if (pid == 0)
			run_instance(&g->inst[i], self);
		g->inst[i].pid = pid;
	}
	for (int i = 0; i < n; i++) {
		while (!__atomic_load_n(&g->inst[i].ready, __ATOMIC_ACQUIRE)) {
			if (waitpid(g->inst[i].pid, NULL, WNOHANG) == g->inst[i].pid)
				probe_broken("an instance", g->inst[i].broken_errno ? g->inst[i].broken_errno : ECHILD);
			usleep(1000);
		}
		/* "inject":"window": a selftest writer stores only when a window opens. */
		printf("{\"event\":\"target\",\"instance\":%d,\"pid\":%d,\"address\":\"0x%llx\",\"mode\":\"%s\"%s}\n", i,
		       (int)g->inst[i].pid, (unsigned long long)g->inst[i].address, mode_names[g_mode],
		       g_window != WINDOW_OFF ? ",\"inject\":\"window\"" : "");
	}
	fflush(stdout);

	struct probe_monitor monitor = { &n, tick, count, NULL };
	probe_supervise(&o, g_t0, &monitor);
	g->stop = 1;
	for (int i = 0; i < n; i++) {
		int status;
		waitpid(g->inst[i].pid, &status, 0);
	}
	for (int i = 0; i < n; i++)
		if (g->inst[i].broken_errno)
			probe_broken("an instance's fork loop", g->inst[i].broken_errno);
	finish(n, probe_now_s() - g_t0);
}
