/*
 * inject_altstack — an LD_PRELOAD fault injector for the altstack probe (selftest).
 *
 * It makes a fixed kernel write a signal frame below a too-small alternate stack, exactly
 * where a kernel without 2beb4a53fc3f (CVE-2021-47326) writes it. It wraps sigaltstack()
 * and registers the same stack *top* with a base lowered by SHAKEOUT_INJECT_LOWER_BYTES
 * (default 32768): ss_sp - n, ss_size + n. The kernel builds a frame downward from the
 * top (sas_ss_sp + sas_ss_size), so the frame's addresses are unchanged; only the lower
 * bound that the fixed kernel's check (and sigaltstack's size validation) compares with
 * moves down. The check passes, and the kernel's own XSAVE and frame stores land on the
 * memory below the stack the program registered, as the unchecked kernel's did.
 * Faithful as long as the lowered base stays within memory the probe owns: the altstack
 * probe keeps 64 KiB of guard words below every stack it registers.
 *
 * Environment:
 *   SHAKEOUT_INJECT              altstack-lower (anything else: no change)
 *   SHAKEOUT_INJECT_LOWER_BYTES  n, a multiple of 16 up to 65536 (default 32768)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef int (*sigaltstack_fn)(const stack_t *, stack_t *);

static size_t lower_bytes(void)
{
	const char *mode = getenv("SHAKEOUT_INJECT");
	if (!mode || strcmp(mode, "altstack-lower"))
		return 0;
	const char *text = getenv("SHAKEOUT_INJECT_LOWER_BYTES");
	unsigned long n = text ? strtoul(text, NULL, 10) : 32768;
	return n && n <= 65536 && n % 16 == 0 ? n : 32768;
}

int sigaltstack(const stack_t *ss, stack_t *old)
{
	static sigaltstack_fn real;
	if (!real)
		real = (sigaltstack_fn)dlsym(RTLD_NEXT, "sigaltstack");
	size_t n = lower_bytes();
	if (!ss || !n || (ss->ss_flags & SS_DISABLE))
		return real(ss, old);
	stack_t lowered = *ss;
	lowered.ss_sp = (char *)ss->ss_sp - n;
	lowered.ss_size = ss->ss_size + n;
	return real(&lowered, old);
}
