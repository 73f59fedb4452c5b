/*
 * shakeout-init — PID 1 of the initramfs that `shakeout vm` boots.
 *
 * It mounts what the probes need (proc, sysfs, devtmpfs), prints the guest's facts, runs
 * every probe listed in /shakeout/plan with its deadline, and powers the machine off.
 * Everything goes to the console (the serial port), one line at a time, each line with
 * the prefix "SHAKEOUT:" so the host can pick it out of the kernel's messages:
 *   SHAKEOUT:HOST {"release":...,"proc_version":...,"cpuinfo":...,"cpus":N,"memlock":N}
 *   SHAKEOUT:START <probe-id>
 *   SHAKEOUT:LINE <probe-id> <one protocol line of the probe>
 *   SHAKEOUT:EXIT <probe-id> {"status":N,"signal":S,"timed_out":B}
 *   SHAKEOUT:DONE
 * The plan has one probe per line: <probe-id> <duration-seconds> <binary> <args...>.
 */
#define _GNU_SOURCE
#include "../probe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 64
#define GRACE_S 10.0

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("SHAKEOUT:", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	va_end(ap);
}

static __attribute__((noreturn)) void power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	size_t n;
	while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 2) {
			char *bigger = realloc(buf, cap *= 2);
			if (!bigger)
				break;
			buf = bigger;
		}
	}
	fclose(f);
	if (buf)
		buf[len] = 0;
	return buf ? buf : strdup("");
}

static void mount_all(void)
{
	mkdir("/proc", 0555);
	mkdir("/sys", 0555);
	mkdir("/dev", 0755);
	mkdir("/tmp", 01777);
	if (mount("proc", "/proc", "proc", 0, NULL) && errno != EBUSY)
		say("ERROR mount /proc: %s", strerror(errno));
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("tmpfs", "/dev/shm", "tmpfs", 0, NULL);
}

static void report_host(void)
{
	struct utsname u;
	uname(&u);
	struct rlimit rl;
	getrlimit(RLIMIT_MEMLOCK, &rl);
	char *version = slurp("/proc/version");
	char *cpuinfo = slurp("/proc/cpuinfo");
	struct jbuf b = { 0 };
	jb_printf(&b, "{\"release\":");
	jb_string(&b, u.release);
	jb_printf(&b, ",\"machine\":");
	jb_string(&b, u.machine);
	jb_printf(&b, ",\"proc_version\":");
	jb_string(&b, version);
	jb_printf(&b, ",\"cpuinfo\":");
	jb_string(&b, cpuinfo);
	jb_printf(&b, ",\"cpus\":%d,\"memlock\":%lld}", probe_online_cpus(),
		  rl.rlim_cur == RLIM_INFINITY ? -1LL : (long long)rl.rlim_cur);
	say("HOST %s", jb_str(&b));
	jb_free(&b);
	free(version);
	free(cpuinfo);
}

static void run_probe_line(char *line)
{
	char *argv[MAX_ARGS + 1];
	int argc = 0;
	for (char *tok = strtok(line, " \t\n"); tok && argc < MAX_ARGS; tok = strtok(NULL, " \t\n"))
		argv[argc++] = tok;
	argv[argc] = NULL;
	if (argc < 3)
		return;
	const char *id = argv[0];
	double deadline = probe_now_s() + atof(argv[1]) + GRACE_S;
	int out[2];
	if (pipe(out)) {
		say("EXIT %s {\"status\":null,\"signal\":null,\"timed_out\":false,\"error\":\"pipe\"}", id);
		return;
	}
	say("START %s", id);
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		dup2(out[1], 1);
		close(out[0]);
		close(out[1]);
		execv(argv[2], argv + 2);
		_exit(127);
	}
	close(out[1]);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	FILE *in = fdopen(out[0], "r");
	char buf[65536];
	int status = 0, timed_out = 0, done = 0;
	while (!done) {
		while (fgets(buf, sizeof buf, in)) {
			buf[strcspn(buf, "\n")] = 0;
			say("LINE %s %s", id, buf);
		}
		clearerr(in);
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid) {
			done = 1;
		} else if (probe_now_s() > deadline) {
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			timed_out = done = 1;
		} else {
			usleep(20000);
		}
	}
	while (fgets(buf, sizeof buf, in)) {
		buf[strcspn(buf, "\n")] = 0;
		say("LINE %s %s", id, buf);
	}
	fclose(in);
	kill(-pid, SIGKILL); /* whatever the probe left in its group */
	if (WIFSIGNALED(status))
		say("EXIT %s {\"status\":null,\"signal\":%d,\"timed_out\":%s}", id, WTERMSIG(status),
		    timed_out ? "true" : "false");
	else
		say("EXIT %s {\"status\":%d,\"signal\":null,\"timed_out\":%s}", id, WEXITSTATUS(status),
		    timed_out ? "true" : "false");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	mount_all();
	say("BOOTED");
	report_host();
	FILE *plan = fopen("/shakeout/plan", "r");
	if (!plan) {
		say("ERROR no /shakeout/plan: %s", strerror(errno));
		power_off();
	}
	char line[4096];
	while (fgets(line, sizeof line, plan))
		run_probe_line(line);
	fclose(plan);
	say("DONE");
	power_off();
}
