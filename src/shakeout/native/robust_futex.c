/*
 * robust_futex — what the kernel does with a robust futex when its owner dies mid-unlock.
 *
 * A thread releasing a robust mutex (glibc's scheme, Riegel's LKML mail of 2016/2017):
 *   L1 list_op_pending = &entry;  L3 old = xchg(word, 0);  L4 if waiters: FUTEX_WAKE;
 *   L5 list_op_pending = NULL.
 * At thread exit the kernel looks at the pending entry (handle_futex_death()).
 *
 * Modes:
 *   wakeup  The owner dies between L3 and L4 while a waiter sleeps in FUTEX_WAIT with
 *           FUTEX_WAITERS set. A kernel with "futex: Prevent robust futex exit race"
 *           (ca16d5bee598, 5.5 cycle) wakes the waiter because the word's TID bits are 0;
 *           an older one leaves it asleep (a lost wake-up). Each round forks an owner
 *           that checks, through /proc, that the waiter is really asleep in the futex call
 *           before it releases and dies (that round is an exposure); the waiter waits with
 *           a timeout and records the wake latency. --pending off makes the owner die
 *           without list_op_pending, so the kernel cannot know: the waiter must then be
 *           reported as never woken (the proof that a lost wake-up is seen).
 *   reuse   The owner releases the word (L3, no waiters); the memory is then reused and
 *           happens to receive a value equal to the owner's TID; the owner dies before
 *           L5. The kernel rewrites that unrelated data to (old & FUTEX_WAITERS) |
 *           FUTEX_OWNER_DIED — documented behaviour of the legacy protocol (glibc bug
 *           14485). A control word with a different value must stay untouched.
 *   glibc   glibc's real robust, process-shared mutexes in shared memory: owner processes
 *           lock/unlock in a loop and are SIGKILLed at random moments while waiter
 *           processes lock with a timeout. Counts hangs (a timed-out lock of a mutex that
 *           was free: a lost wake-up), EOWNERDEAD recoveries, and corruption of the words
 *           around the mutex.
 *           Where each kill landed is measured, not assumed: the killer first stops the
 *           owner (SIGSTOP, waits until it is stopped), so the owner's state is frozen at
 *           the point where the SIGKILL then takes effect, and reads (1) the phase the
 *           owner publishes in shared memory (inside its pthread_mutex_unlock call or
 *           not), (2) the futex word, and (3) the owner's list_op_pending, from the
 *           stopped owner's memory (process_vm_readv at the robust-list head the owner
 *           published, found with get_robust_list). A kill is *in the unlock window* when
 *           the owner was inside pthread_mutex_unlock, the word no longer held its TID
 *           (released) and list_op_pending still named this mutex: the kernel must then
 *           handle a pending entry whose TID bits are not the dying thread's (the case
 *           ca16d5bee598 fixed). What this cannot tell: whether glibc's own FUTEX_WAKE,
 *           issued between the release and the clearing of list_op_pending when the word
 *           had FUTEX_WAITERS, had already been made (a stop that arrives during that
 *           system call takes effect when it returns).
 *           --wake off installs, in every owner, a seccomp filter that makes FUTEX_WAKE
 *           on the mutex word return 0 without waking anyone: glibc's unlock then never
 *           wakes a sleeping waiter, which must be reported as a hang (the proof that a
 *           lost wake-up is seen). No owner is killed then: an owner's death would let
 *           the kernel's handle_futex_death() wake the waiter.
 * Every mode reports whether the kernel offers the 2026 robust-unlock API (the vDSO
 * symbol __vdso_futex_robust_list64_try_unlock).
 */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES 4
#define AIM_STOPS 32 /* glibc: looks at an owner before it is killed wherever it is */
#define VDSO_ROBUST_UNLOCK "__vdso_futex_robust_list64_try_unlock"

enum mode { MODE_WAKEUP, MODE_REUSE, MODE_GLIBC };
static const char *const mode_names[] = { "wakeup", "reuse", "glibc", NULL };
static const char *const off_on[] = { "off", "on", NULL };

static int g_mode; /* enum mode */
static int g_pending;
static int g_wake;
static long long g_timeout_ms;
static const char *g_api_symbol;
static int g_keep_going;
static double g_t0;

/* ---- facts about this kernel ------------------------------------------------------ */

/* 1 when the vDSO exports name, 0 when not, -1 when there is no vDSO to look at. */
static int vdso_exports(const char *name)
{
	int has_vdso;
	void *sym = probe_vdso_symbol(name, &has_vdso);
	return has_vdso ? sym != NULL : -1;
}

static long futex(volatile uint32_t *uaddr, int op, uint32_t val, const struct timespec *timeout)
{
	return syscall(SYS_futex, uaddr, op, val, timeout, NULL, 0);
}

static pid_t my_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* Reads a small /proc file into buf as a string; 0 when it cannot be read. */
static int read_proc_text(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return 1;
}

/* The waiter is asleep in the futex system call: /proc says state S in syscall futex. */
static int asleep_in_futex(pid_t pid, pid_t tid)
{
	char path[96], buf[512];
	snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
	if (!read_proc_text(path, buf, sizeof buf) || atol(buf) != SYS_futex)
		return 0;
	snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	if (!read_proc_text(path, buf, sizeof buf))
		return 0;
	const char *state = strrchr(buf, ')');
	return state && state[1] == ' ' && state[2] == 'S';
}

/* The process is blocked in the futex system call on word: /proc/<pid>/syscall names it. */
static int blocked_on_word(pid_t pid, volatile uint32_t *word)
{
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
	if (!read_proc_text(path, buf, sizeof buf))
		return 0;
	char *end;
	if (strtol(buf, &end, 10) != SYS_futex)
		return 0;
	return strtoull(end, NULL, 16) == (unsigned long long)(uintptr_t)word;
}

/* ---- shared state ----------------------------------------------------------------- */

struct sample {
	char what[48];
	uint32_t before, after, control_before, control_after;
	uint64_t round;
	int owner_tid;
	double waited_s, after_s;
};

/* One owner/waiter pair (wakeup, reuse): the entry, its word, and the handshake. */
struct pair {
	struct robust_list entry; /* the owner's pending entry; word = entry + futex_offset */
	volatile uint32_t word;
	volatile uint32_t control;  /* reuse: an unrelated word with a different value */
	volatile int locked, waiting, released, reused, asleep_seen;
	volatile pid_t owner_tid, waiter_pid, waiter_tid;
	volatile double released_at;
} __attribute__((aligned(64)));

struct glibc_area {
	uint64_t canary_before[8];
	pthread_mutex_t mutex;
	uint64_t canary_after[8];
	volatile uint64_t locks, recoveries, hangs, held_timeouts, notrecoverable, kills;
	volatile uint64_t kills_holding, kills_in_window, kills_before_wake, kills_after_wake,
		kills_released_not_pending, kills_unclassified;
	volatile uint32_t hang_word;
	volatile int owner_errno; /* an owner could not set itself up (seccomp) */
	int read_errno;           /* the first failure to read a stopped owner's memory */
};

/* What one owner publishes about itself, in shared memory, for the killer. */
enum owner_phase { PHASE_OUTSIDE_UNLOCK, PHASE_IN_UNLOCK };
struct owner_slot {
	volatile int phase;
	volatile uint64_t robust_head; /* this owner's struct robust_list_head (glibc's) */
} __attribute__((aligned(64)));

struct shared {
	volatile int stop;
	volatile int lock;
	volatile uint64_t rounds, exposures, woken, lost, skipped, rewritten;
	double latency_sum_s, latency_max_s;
	int nsamples;
	struct sample samples[MAX_SAMPLES];
	struct glibc_area glibc;
	struct pair pairs[];
};

static struct shared *g;

static void shared_lock(void)
{
	while (__atomic_exchange_n(&g->lock, 1, __ATOMIC_ACQUIRE))
		sched_yield();
}

static void shared_unlock(void)
{
	__atomic_store_n(&g->lock, 0, __ATOMIC_RELEASE);
}

static struct sample *new_sample(void)
{
	if (g->nsamples >= MAX_SAMPLES)
		return NULL;
	struct sample *s = &g->samples[g->nsamples++];
	memset(s, 0, sizeof *s);
	s->after_s = probe_now_s() - g_t0;
	return s;
}

static void corruption_found(void)
{
	if (!g_keep_going)
		g->stop = 1;
}

/* Waits (yielding) until *flag is set, the probe stops, or timeout_s passes. */
static int wait_flag(volatile int *flag, double timeout_s)
{
	double until = probe_now_s() + timeout_s;
	while (!*flag) {
		if (g->stop || probe_now_s() > until)
			return 0;
		sched_yield();
	}
	return 1;
}

/* ---- owner processes (wakeup, reuse) ---------------------------------------------- */

static struct robust_list_head owner_head;

static void register_robust_list(void)
{
	owner_head.list.next = &owner_head.list;
	owner_head.futex_offset = (long)offsetof(struct pair, word) - (long)offsetof(struct pair, entry);
	owner_head.list_op_pending = NULL;
	if (syscall(SYS_set_robust_list, &owner_head, sizeof owner_head))
		_exit(PROBE_BROKEN);
}

static void __attribute__((noreturn)) owner_wakeup(struct pair *p)
{
	register_robust_list();
	pid_t tid = my_tid();
	uint32_t zero = 0;
	if (!__atomic_compare_exchange_n(&p->word, &zero, (uint32_t)tid, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		_exit(PROBE_BROKEN);
	p->owner_tid = tid;
	if (g_pending)
		owner_head.list_op_pending = &p->entry; /* L1 */
	p->locked = 1;
	if (!wait_flag(&p->waiting, 2.0))
		_exit(0);
	/* The round counts only when the waiter is seen asleep in FUTEX_WAIT. */
	double until = probe_now_s() + 1.0;
	while (!asleep_in_futex(p->waiter_pid, p->waiter_tid)) {
		if (probe_now_s() > until || g->stop)
			break;
		sched_yield();
	}
	p->asleep_seen = asleep_in_futex(p->waiter_pid, p->waiter_tid);
	p->released_at = probe_now_s();
	__atomic_exchange_n(&p->word, 0, __ATOMIC_SEQ_CST); /* L3 */
	syscall(SYS_exit_group, 0);                           /* dies before L4 and L5 */
	_exit(0);
}

static void __attribute__((noreturn)) owner_reuse(struct pair *p)
{
	register_robust_list();
	pid_t tid = my_tid();
	p->word = (uint32_t)tid;                    /* locked, no waiters */
	owner_head.list_op_pending = &p->entry;     /* L1 */
	__atomic_exchange_n(&p->word, 0, __ATOMIC_SEQ_CST); /* L3: released */
	p->owner_tid = tid;
	p->released = 1;
	wait_flag(&p->reused, 2.0); /* somebody else now owns that memory */
	syscall(SYS_exit_group, 0);  /* dies before L5: list_op_pending still set */
	_exit(0);
}

static pid_t spawn_owner(struct pair *p, void (*fn)(struct pair *) __attribute__((noreturn)))
{
	pid_t self = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != self)
			_exit(PROBE_BROKEN);
		fn(p);
	}
	return pid;
}

static void reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
	}
}

/* ---- waiter threads (wakeup, reuse) ----------------------------------------------- */

static void wakeup_round(struct pair *p, uint64_t round)
{
	memset((void *)p, 0, sizeof *p);
	p->waiter_pid = getpid();
	p->waiter_tid = my_tid();
	pid_t owner = spawn_owner(p, owner_wakeup);
	if (owner < 0) {
		g->stop = 1;
		return;
	}
	if (!wait_flag(&p->locked, 2.0)) {
		reap(owner);
		return;
	}
	uint32_t expected = (uint32_t)p->owner_tid;
	uint32_t waiting = expected | FUTEX_WAITERS;
	__atomic_compare_exchange_n(&p->word, &expected, waiting, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	p->waiting = 1;
	struct timespec timeout = { g_timeout_ms / 1000, (g_timeout_ms % 1000) * 1000000L };
	double t0 = probe_now_s();
	long r = futex(&p->word, FUTEX_WAIT, waiting, &timeout); /* shared: the kernel's wake is shared */
	int err = r ? errno : 0;
	double woke = probe_now_s();
	reap(owner);
	shared_lock();
	g->rounds++;
	if (!p->asleep_seen || (err && err != ETIMEDOUT)) {
		g->skipped++; /* not verifiably asleep, or woken early: not an exposure */
	} else {
		g->exposures++;
		if (err == ETIMEDOUT) {
			g->lost++;
			struct sample *s = new_sample();
			if (s) {
				snprintf(s->what, sizeof s->what, "waiter never woken");
				s->before = waiting;
				s->after = p->word;
				s->round = round;
				s->owner_tid = p->owner_tid;
				s->waited_s = woke - t0;
			}
			corruption_found();
		} else {
			g->woken++;
			double latency = woke - p->released_at;
			g->latency_sum_s += latency;
			if (latency > g->latency_max_s)
				g->latency_max_s = latency;
		}
	}
	shared_unlock();
}

static void reuse_round(struct pair *p, uint64_t round)
{
	memset((void *)p, 0, sizeof *p);
	pid_t owner = spawn_owner(p, owner_reuse);
	if (owner < 0) {
		g->stop = 1;
		return;
	}
	if (!wait_flag(&p->released, 2.0)) {
		reap(owner);
		return;
	}
	/* The mutex is released; the memory now belongs to other data that happens to hold
	 * the owner's TID. A control word nearby holds another value. */
	uint32_t tid = (uint32_t)p->owner_tid;
	p->word = tid;
	p->control = tid + 1;
	uint32_t before = p->word, control_before = p->control;
	p->reused = 1;
	reap(owner);
	uint32_t after = p->word, control_after = p->control;
	shared_lock();
	g->rounds++;
	g->exposures++;
	if (after != before || control_after != control_before) {
		g->rewritten++;
		struct sample *s = new_sample();
		if (s) {
			snprintf(s->what, sizeof s->what, "reused memory rewritten");
			s->before = before;
			s->after = after;
			s->control_before = control_before;
			s->control_after = control_after;
			s->round = round;
			s->owner_tid = (int)tid;
		}
		corruption_found();
	}
	shared_unlock();
}

static void *pair_thread(void *arg)
{
	struct pair *p = arg;
	for (uint64_t round = 1; !g->stop; round++) {
		if (g_mode == MODE_WAKEUP)
			wakeup_round(p, round);
		else
			reuse_round(p, round);
	}
	return NULL;
}

/* ---- glibc mode ------------------------------------------------------------------- */

#define CANARY 0x5348414b454f5554ULL /* "SHAKEOUT" */

static int glibc_lock(struct glibc_area *a, int timed)
{
	int r;
	if (timed) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += g_timeout_ms / 1000;
		ts.tv_nsec += (g_timeout_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		r = pthread_mutex_timedlock(&a->mutex, &ts);
	} else {
		r = pthread_mutex_lock(&a->mutex);
	}
	if (r == EOWNERDEAD) {
		__atomic_add_fetch(&a->recoveries, 1, __ATOMIC_RELAXED);
		pthread_mutex_consistent(&a->mutex);
		r = 0;
	}
	return r;
}

#if defined(__x86_64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_AARCH64
#endif

/* --wake off: FUTEX_WAKE on the mutex word returns 0 and wakes nobody (seccomp). */
static int withhold_wakes(volatile uint32_t *word)
{
#ifdef AUDIT_ARCH_HERE
	uint64_t addr = (uint64_t)(uintptr_t)word;
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_HERE, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_futex, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])), /* little-endian */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)addr, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]) + 4),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(addr >> 32), 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, (uint32_t)FUTEX_CMD_MASK),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FUTEX_WAKE, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0), /* "woke 0 waiters" */
	};
	struct sock_fprog prog = { .len = sizeof filter / sizeof *filter, .filter = filter };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return errno;
	return 0;
#else
	(void)word;
	return ENOSYS;
#endif
}

static void __attribute__((noreturn)) glibc_owner(struct glibc_area *a, struct owner_slot *slot)
{
	struct robust_list_head *head = NULL;
	size_t len;
	if (syscall(SYS_get_robust_list, 0, &head, &len) == 0)
		slot->robust_head = (uint64_t)(uintptr_t)head;
	if (!g_wake) {
		int err = withhold_wakes((volatile uint32_t *)&a->mutex.__data.__lock);
		if (err) {
			a->owner_errno = err;
			g->stop = 1;
			_exit(PROBE_BROKEN);
		}
	}
	while (!g->stop) {
		if (glibc_lock(a, 0) == 0) {
			a->locks++;
			slot->phase = PHASE_IN_UNLOCK;
			pthread_mutex_unlock(&a->mutex);
			slot->phase = PHASE_OUTSIDE_UNLOCK;
		}
	}
	_exit(0);
}

static void __attribute__((noreturn)) glibc_waiter(struct glibc_area *a)
{
	while (!g->stop) {
		int r = glibc_lock(a, 1);
		if (r == 0) {
			__atomic_add_fetch(&a->locks, 1, __ATOMIC_RELAXED);
			pthread_mutex_unlock(&a->mutex);
		} else if (r == ETIMEDOUT) {
			/* Owners hold the mutex for nanoseconds. Timing out on a *free* mutex (no TID
			 * in the word) is a lost wake-up; on a held one it is only a slow owner. */
			uint32_t word = (uint32_t)a->mutex.__data.__lock;
			if (word & FUTEX_TID_MASK) {
				__atomic_add_fetch(&a->held_timeouts, 1, __ATOMIC_RELAXED);
			} else {
				__atomic_add_fetch(&a->hangs, 1, __ATOMIC_RELAXED);
				a->hang_word = word;
			}
		} else if (r == ENOTRECOVERABLE) {
			__atomic_add_fetch(&a->notrecoverable, 1, __ATOMIC_RELAXED);
		}
	}
	_exit(0);
}

/* A child of the probe that dies with it; slot is NULL for a waiter. */
static pid_t spawn_glibc(struct owner_slot *slot)
{
	pid_t self = getpid();
	if (slot)
		memset((void *)slot, 0, sizeof *slot);
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != self)
			_exit(PROBE_BROKEN);
		if (slot)
			glibc_owner(&g->glibc, slot);
		glibc_waiter(&g->glibc);
	}
	return pid;
}

/* The stopped owner's robust-list head: 0 when it could be read, else the errno. */
static int read_robust_head(pid_t pid, uint64_t head_addr, struct robust_list_head *head)
{
	if (!head_addr)
		return ENOENT;
	struct iovec local = { head, sizeof *head };
	struct iovec remote = { (void *)(uintptr_t)head_addr, sizeof *head };
	ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	return got == (ssize_t)sizeof *head ? 0 : got < 0 ? errno : EIO;
}

enum landing { LANDED_OUTSIDE, LANDED_HOLDING, LANDED_RELEASED, LANDED_IN_WINDOW, LANDED_AFTER_WAKE,
	       LANDED_BEFORE_WAKE, LANDED_UNCLASSIFIED };

static int any_blocked_on_word(const pid_t *waiter, int waiters, volatile uint32_t *word)
{
	for (int i = 0; i < waiters; i++)
		if (blocked_on_word(waiter[i], word))
			return 1;
	return 0;
}

/* Where the stopped owner is (see the opening comment); the waiters are read only in the window. */
static enum landing classify_stopped(struct glibc_area *a, pid_t pid, struct owner_slot *slot, const pid_t *waiter,
				     int waiters)
{
	volatile uint32_t *mutex_word = (volatile uint32_t *)&a->mutex.__data.__lock;
	int phase = slot->phase;
	uint32_t word = __atomic_load_n(mutex_word, __ATOMIC_SEQ_CST);
	if ((word & FUTEX_TID_MASK) == (uint32_t)pid)
		return LANDED_HOLDING;
	if (phase != PHASE_IN_UNLOCK)
		return LANDED_OUTSIDE;
	struct robust_list_head head;
	int err = read_robust_head(pid, slot->robust_head, &head);
	if (err) {
		if (!a->read_errno && (err == EPERM || err == EACCES)) /* refused, not a vanished owner */
			a->read_errno = err;
		return LANDED_UNCLASSIFIED;
	}
	if (!head.list_op_pending ||
	    (volatile uint32_t *)((char *)head.list_op_pending + head.futex_offset) != mutex_word)
		return LANDED_RELEASED;
	if (!any_blocked_on_word(waiter, waiters, mutex_word))
		return LANDED_IN_WINDOW;
	/* Stopped at the return of its FUTEX_WAKE on the word: glibc has woken a waiter. */
	return blocked_on_word(pid, mutex_word) ? LANDED_AFTER_WAKE : LANDED_BEFORE_WAKE;
}

static int stop_owner(pid_t pid)
{
	int status;
	kill(pid, SIGSTOP);
	while (waitpid(pid, &status, WUNTRACED) < 0) {
		if (errno != EINTR)
			return 0;
	}
	return WIFSTOPPED(status);
}

static void count_landing(struct glibc_area *a, enum landing where)
{
	switch (where) {
	case LANDED_HOLDING:
		a->kills_holding++;
		break;
	case LANDED_RELEASED:
		a->kills_released_not_pending++;
		break;
	case LANDED_BEFORE_WAKE:
		a->kills_before_wake++;
		a->kills_in_window++;
		break;
	case LANDED_AFTER_WAKE:
		a->kills_after_wake++;
		a->kills_in_window++;
		break;
	case LANDED_IN_WINDOW:
		a->kills_in_window++;
		break;
	case LANDED_UNCLASSIFIED:
		a->kills_unclassified++;
		break;
	case LANDED_OUTSIDE:
		break;
	}
}

/*
 * Stops the owner and reads where it is (see the opening comment); up to AIM_STOPS times
 * it lets the owner run on (SIGCONT, a random few microseconds) and looks again, until it
 * is in the unlock window with a waiter asleep on the word. Then, or after the last look,
 * the SIGKILL takes effect exactly where the owner stopped, so what was read is the state
 * the kernel's handle_futex_death() sees.
 */
static void aim_and_kill(struct glibc_area *a, pid_t pid, struct owner_slot *slot, const pid_t *waiter, int waiters,
			 unsigned *seed)
{
	enum landing where = LANDED_UNCLASSIFIED;
	int looks = a->kills & 1 ? AIM_STOPS : 1; /* every other kill lands wherever the owner is */
	for (int look = 0; look < looks; look++) {
		if (look) {
			/* Held: let the waiters fall asleep on it, then catch the owner unlocking. */
			double pause_s = where == LANDED_HOLDING ? 50e-6 : (rand_r(seed) % 20) * 1e-6;
			double until = probe_now_s() + pause_s;
			if (where != LANDED_HOLDING)
				kill(pid, SIGCONT);
			while (probe_now_s() < until) {
			}
			if (where == LANDED_HOLDING)
				kill(pid, SIGCONT);
		}
		if (!stop_owner(pid)) {
			where = LANDED_UNCLASSIFIED;
			break;
		}
		where = classify_stopped(a, pid, slot, waiter, waiters);
		if (where == LANDED_BEFORE_WAKE || where == LANDED_AFTER_WAKE || where == LANDED_IN_WINDOW)
			break;
	}
	kill(pid, SIGKILL);
	reap(pid);
	count_landing(a, where);
	a->kills++;
}


static int canaries_intact(struct glibc_area *a)
{
	for (int i = 0; i < 8; i++)
		if (a->canary_before[i] != CANARY || a->canary_after[i] != CANARY)
			return 0;
	return 1;
}

/* glibc: lock operations and kills in the unlock window; otherwise rounds and exposures. */
static void count(void *ctx, uint64_t *iterations, uint64_t *exposures)
{
	(void)ctx;
	*iterations = g_mode == MODE_GLIBC ? g->glibc.locks : g->rounds;
	*exposures = g_mode == MODE_GLIBC ? g->glibc.kills_in_window : g->exposures;
}

/* The glibc run's supervisor: n owners killed at random moments and replaced, n waiters. */
struct glibc_run {
	struct glibc_area *a;
	pid_t *owner, *waiter;
	struct owner_slot *slot;
	int n;
	unsigned seed;
};

static int glibc_tick(void *ctx, double max_s)
{
	(void)max_s; /* a kill at a random moment of the owner's loop: 0.5 to 3 ms */
	struct glibc_run *r = ctx;
	usleep(500 + rand_r(&r->seed) % 2500);
	if (g_wake) {
		int victim = rand_r(&r->seed) % r->n;
		aim_and_kill(r->a, r->owner[victim], &r->slot[victim], r->waiter, r->n, &r->seed);
		r->owner[victim] = spawn_glibc(&r->slot[victim]);
	}
	if (!canaries_intact(r->a) || (r->a->hangs && !g_keep_going))
		g->stop = 1;
	return g->stop;
}

static void glibc_run(int n, const struct probe_opts *o)
{
	struct glibc_run r = { &g->glibc, calloc(2 * (size_t)n, sizeof(pid_t)), NULL, NULL, n, (unsigned)getpid() };
	struct glibc_area *a = r.a;
	for (int i = 0; i < 8; i++)
		a->canary_before[i] = a->canary_after[i] = CANARY;
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&a->mutex, &attr);
	if (!r.owner)
		probe_broken("calloc", ENOMEM);
	r.waiter = r.owner + n;
	r.slot = mmap(NULL, sizeof *r.slot * (size_t)n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (r.slot == MAP_FAILED)
		probe_broken("mmap of the owners' phases", errno);
	for (int i = 0; i < n; i++) {
		r.owner[i] = spawn_glibc(&r.slot[i]);
		r.waiter[i] = spawn_glibc(NULL);
	}
	/* The words around the mutex are evidence, and a target for fault injection. */
	printf("{\"event\":\"target\",\"pid\":%d,\"address\":\"0x%llx\",\"what\":\"words after the mutex\"}\n",
	       (int)getpid(), (unsigned long long)(uintptr_t)a->canary_after);
	fflush(stdout);
	struct probe_monitor monitor = { &r, glibc_tick, count, NULL };
	probe_supervise(o, g_t0, &monitor);
	g->stop = 1;
	/* An owner may sleep in pthread_mutex_lock for a wake that never comes, a waiter sit in a
	 * timed lock for up to the timeout. */
	for (int i = 0; i < 2 * n; i++)
		kill(r.owner[i], SIGKILL);
	for (int i = 0; i < 2 * n; i++)
		reap(r.owner[i]);
	free(r.owner);
	munmap(r.slot, sizeof *r.slot * (size_t)n);
	if (a->owner_errno)
		probe_broken("seccomp filter withholding FUTEX_WAKE (--wake off)", a->owner_errno);
}

/* ---- options, result, main ---------------------------------------------------------- */

static const struct probe_option options[] = {
	{ "mode", PROBE_OPT_CHOICE, 0, 0, mode_names, "wakeup",
	  "wakeup (a waiter must be woken), reuse (released memory must not be written) or glibc (owners of "
	  "glibc robust mutexes killed at random)",
	  &g_mode, PROBE_OPT_INTERNAL },
	{ "pending", PROBE_OPT_CHOICE, 0, 0, off_on, "on",
	  "the owner sets list_op_pending before releasing (off: the kernel cannot know to wake)", &g_pending, 0 },
	{ "wake", PROBE_OPT_CHOICE, 0, 0, off_on, "on",
	  "glibc: off withholds the owners' FUTEX_WAKE with a seccomp filter (selftest)", &g_wake,
	  PROBE_OPT_INTERNAL },
	{ "api-symbol", PROBE_OPT_TEXT, 1, 128, NULL, VDSO_ROBUST_UNLOCK,
	  "vDSO symbol whose presence means the kernel has the robust-unlock API", &g_api_symbol, 0 },
	{ "timeout-ms", PROBE_OPT_INT, 10, 60000, NULL, "1000",
	  "how long a waiter waits before it counts as never woken, in milliseconds", &g_timeout_ms, 0 },
	{ 0 },
};

static const struct probe_def probe = {
	"robust_futex", "robust futexes whose owner dies mid-unlock: lost wake-ups, writes to reused memory, hangs",
	"owner/waiter pairs (default: 1; glibc: 2 owners and 2 waiters)", options,
};

static __attribute__((noreturn)) void finish(double elapsed, int workers)
{
	struct jbuf m = { 0 }, e = { 0 };
	int api = vdso_exports(g_api_symbol);
	enum probe_exit verdict = PROBE_PASS;
	const char *reason = NULL;
	uint64_t iterations, exposures;
	count(NULL, &iterations, &exposures);
	jb_printf(&e, "\"mode\":\"%s\",\"workers\":%d,\"kernel_robust_unlock_api\":%s,\"api_symbol\":", mode_names[g_mode],
		  workers, api < 0 ? "null" : api ? "true" : "false");
	jb_string(&e, g_api_symbol);
	if (g_mode == MODE_GLIBC) {
		struct glibc_area *a = &g->glibc;
		int intact = canaries_intact(a);
		jb_printf(&m, "\"locks_per_s\":%.1f,\"kills_per_s\":%.1f,\"kills_in_window_per_s\":%.1f,"
			  "\"eownerdead_recoveries\":%llu,\"hangs\":%llu",
			  a->locks / elapsed, a->kills / elapsed, a->kills_in_window / elapsed,
			  (unsigned long long)a->recoveries, (unsigned long long)a->hangs);
		jb_printf(&e, ",\"kills_holding\":%llu,\"kills_in_unlock_window\":%llu,"
			  "\"kills_in_window_before_wake\":%llu,\"kills_in_window_after_wake\":%llu,\"kills_released_pending_cleared\":%llu,\"kills_unclassified\":%llu,\"wake\":%s",
			  (unsigned long long)a->kills_holding, (unsigned long long)a->kills_in_window,
			  (unsigned long long)a->kills_before_wake, (unsigned long long)a->kills_after_wake, (unsigned long long)a->kills_released_not_pending, (unsigned long long)a->kills_unclassified,
			  g_wake ? "true" : "false");
		/* Set when a read was refused (EPERM, EACCES): the killer may not read its children's
		 * memory (a container without CAP_SYS_PTRACE), so no kill can be aimed into the window. */
		jb_printf(&e, ",\"owner_read_error\":");
		if (a->read_errno)
			jb_string(&e, strerror(a->read_errno));
		else
			jb_printf(&e, "null");
		jb_printf(&e, ",\"lock_operations\":%llu,\"owners_killed\":%llu,\"eownerdead_recoveries\":%llu,"
			  "\"hangs\":%llu,\"timeouts_on_held_mutex\":%llu,\"not_recoverable\":%llu,\"neighbours_intact\":%s,\"timeout_ms\":%lld",
			  (unsigned long long)a->locks, (unsigned long long)a->kills, (unsigned long long)a->recoveries,
			  (unsigned long long)a->hangs, (unsigned long long)a->held_timeouts, (unsigned long long)a->notrecoverable, intact ? "true" : "false",
			  g_timeout_ms);
		if (a->hangs)
			jb_printf(&e, ",\"hang_mutex_word\":\"0x%08x\"", a->hang_word);
		if (!intact) {
			jb_printf(&e, ",\"neighbours\":[");
			for (int i = 0; i < 16; i++) {
				uint64_t v = i < 8 ? a->canary_before[i] : a->canary_after[i - 8];
				jb_printf(&e, "%s\"0x%016llx\"", i ? "," : "", (unsigned long long)v);
			}
			jb_printf(&e, "],\"neighbour_expected\":\"0x%016llx\"", (unsigned long long)CANARY);
		}
		if (a->hangs || !intact) {
			/* The check that fired; both can, the neighbours' is named first. */
			jb_printf(&e, ",\"check\":\"%s\"", !intact ? "neighbours" : "hang");
			verdict = PROBE_FAIL;
			reason = !intact ? "the words around a robust mutex were changed"
					 : "a waiter timed out on a robust mutex whose owners hold it for nanoseconds";
		}
	} else {
		jb_printf(&m, "\"rounds_per_s\":%.1f,\"exposures_per_s\":%.1f", g->rounds / elapsed,
			  g->exposures / elapsed);
		jb_printf(&e, ",\"rounds\":%llu,\"list_op_pending\":%s,\"timeout_ms\":%lld,\"skipped_rounds\":%llu",
			  (unsigned long long)g->rounds, g_pending ? "true" : "false", g_timeout_ms,
			  (unsigned long long)g->skipped);
		if (g_mode == MODE_WAKEUP) {
			double mean = g->woken ? g->latency_sum_s / g->woken : 0;
			jb_printf(&e, ",\"woken\":%llu,\"never_woken\":%llu,\"wake_latency_mean_s\":%.6f,"
				  "\"wake_latency_max_s\":%.6f",
				  (unsigned long long)g->woken, (unsigned long long)g->lost, mean, g->latency_max_s);
			if (g->lost) {
				verdict = PROBE_FAIL;
				reason = "a waiter was never woken after the robust mutex's owner died mid-unlock";
			}
		} else {
			jb_printf(&e, ",\"rewritten\":%llu", (unsigned long long)g->rewritten);
			if (g->rewritten) {
				verdict = PROBE_FAIL;
				reason = "the kernel rewrote memory that user space had already released and reused";
			}
		}
		if (g->nsamples) {
			jb_printf(&e, ",\"samples\":[");
			for (int i = 0; i < g->nsamples; i++) {
				struct sample *s = &g->samples[i];
				jb_printf(&e, "%s{\"what\":\"%s\",\"round\":%llu,\"owner_tid\":%d,\"before\":\"0x%08x\","
					  "\"after\":\"0x%08x\",\"changed_bits\":\"0x%08x\",\"after_s\":%.6f",
					  i ? "," : "", s->what, (unsigned long long)s->round, s->owner_tid, s->before,
					  s->after, s->before ^ s->after, s->after_s);
				if (g_mode == MODE_REUSE)
					jb_printf(&e, ",\"control_before\":\"0x%08x\",\"control_after\":\"0x%08x\"",
						  s->control_before, s->control_after);
				else
					jb_printf(&e, ",\"waited_s\":%.6f", s->waited_s);
				jb_printf(&e, "}");
			}
			jb_printf(&e, "]");
		}
	}
	probe_finish(verdict, iterations, exposures, elapsed, jb_str(&m), jb_str(&e), reason);
}

static int tick(void *ctx, double max_s)
{
	(void)ctx;
	probe_nap(max_s);
	return g->stop;
}

int main(int argc, char **argv)
{
	struct probe_opts o = { 0 };
	probe_start(argc, argv, &probe, &o);
	g_keep_going = o.keep_going;
	int workers = o.workers ? (int)o.workers : (g_mode == MODE_GLIBC ? 2 : 1);
	size_t bytes = sizeof(struct shared) + sizeof(struct pair) * (size_t)workers;
	g = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g == MAP_FAILED)
		probe_broken("mmap of the shared area", errno);
	g_t0 = probe_now_s();
	if (g_mode == MODE_GLIBC) {
		glibc_run(workers, &o);
	} else {
		pthread_t *threads = calloc((size_t)workers, sizeof *threads);
		if (!threads)
			probe_broken("calloc", ENOMEM);
		for (int i = 0; i < workers; i++) {
			int err = pthread_create(&threads[i], NULL, pair_thread, &g->pairs[i]);
			if (err)
				probe_broken("pthread_create", err);
		}
		struct probe_monitor monitor = { NULL, tick, count, NULL };
		probe_supervise(&o, g_t0, &monitor);
		g->stop = 1;
		for (int i = 0; i < workers; i++)
			pthread_join(threads[i], NULL);
		free(threads);
	}
	finish(probe_now_s() - g_t0, workers);
}
