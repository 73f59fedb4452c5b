"""`shakeout vm`: boot a kernel under QEMU with an initramfs of the static probes.

The initramfs holds our init (native/vm/init.c), the static probe binaries and a plan.
The guest prints its facts and the probes' protocol lines on the serial console; they
are parsed into the same report as `check` (same verdict rules; the host facts are the
guest's). A kernel that never boots, panics or hangs gives `error` results with the last
console lines as evidence, and QEMU is always killed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from shakeout.binaries import BIN_DIR
from shakeout.catalog import Bug
from shakeout.engine import Monitor, judge_bugs, new_report
from shakeout.errors import ShakeoutError, UsageError
from shakeout.host import Host, read_host
from shakeout.nativebuild import STATIC_DIR, VM_INIT
from shakeout.outcome import settle
from shakeout.probes import all_probes
from shakeout.probespec import ProbeSpec
from shakeout.results import BugVerdict, ProbeResult, RunReport
from shakeout.runner import grace_s, probe_argv
from shakeout.vm import initramfs
from shakeout.vm.console import PREFIX, GuestRun, parse_console
from shakeout.vm.qemu import (
    KVM_FIRST_OUTPUT_S,
    Boot,
    boot,
    check_cpu_model,
    check_memory,
    find_qemu,
    kernel_arch,
    kvm_usable,
    qemu_argv,
)

GUEST_BIN = "shakeout/bin"
BOOT_ALLOWANCE_S = 90.0  # a kernel under TCG boots in ~10 s here; generous for slow machines


def _static_binary(name: str) -> Path:
    path = BIN_DIR / STATIC_DIR / name
    if not path.is_file():
        raise ShakeoutError(
            f"the static build of '{name}' is missing ({path}): shakeout vm needs the C library's static archive "
            "(libc.a; Debian: libc6-dev) when shakeout is installed"
        )
    return path


def guest_plan(specs: Sequence[ProbeSpec], duration_s: float, cpus: int) -> List[str]:
    """One plan line per probe: <id> <seconds> <binary in the guest> <args...>."""
    lines = []
    for spec in specs:
        workers = spec.default_workers(cpus)
        argv = probe_argv(Path("/" + GUEST_BIN) / spec.binary, duration_s, workers, False, spec.fixed_options)
        lines.append(" ".join([spec.id, repr(float(duration_s)), *argv]))
    return lines


def build_initramfs(specs: Sequence[ProbeSpec], duration_s: float, cpus: int) -> bytes:
    entries = [initramfs.directory(d) for d in ("dev", "proc", "sys", "tmp", "shakeout", GUEST_BIN)]
    entries.append(initramfs.console())
    entries.append(initramfs.regular("init", _static_binary(VM_INIT).read_bytes(), executable=True))
    for binary in sorted({s.binary for s in specs}):
        entries.append(initramfs.regular(GUEST_BIN + "/" + binary, _static_binary(binary).read_bytes(), True))
    plan = "\n".join(guest_plan(specs, duration_s, cpus)) + "\n"
    entries.append(initramfs.regular("shakeout/plan", plan.encode()))
    return initramfs.build(entries)


def guest_host(facts: Dict[str, Any]) -> Host:
    """The guest's facts as a Host, through the same parser as this machine's."""
    with tempfile.TemporaryDirectory(prefix="shakeout-guest-") as tmp:
        root = Path(tmp)
        (root / "proc/sys/kernel").mkdir(parents=True)
        (root / "proc/sys/kernel/osrelease").write_text(str(facts.get("release", "")))
        (root / "proc/version").write_text(str(facts.get("proc_version", "")))
        (root / "proc/cpuinfo").write_text(str(facts.get("cpuinfo", "")))
        memlock = int(facts.get("memlock", -1))
        return read_host(
            root,
            system="Linux",
            machine=str(facts.get("machine", "x86_64")),
            memlock_limit_bytes=None if memlock < 0 else memlock,
            cpus=int(facts.get("cpus", 1)),
            is_root=True,  # the guest's init runs the probes as root
        )


def _unfinished(spec: ProbeSpec, run: GuestRun, boot_result: Boot) -> ProbeResult:
    if run.panic:
        why = "the guest kernel panicked: " + run.panic
    elif not run.booted:
        how = (
            f"QEMU exited with status {boot_result.returncode} after {boot_result.elapsed_s:.1f} s"
            if boot_result.outcome == "exited"
            else f"QEMU was killed after {boot_result.elapsed_s:.0f} s"
        )
        said = "" if boot_result.guest_spoke else "; the guest printed nothing: the kernel did not start"
        why = f"the guest never reached shakeout's init ({how}{said})"
    elif boot_result.outcome == "timeout":
        why = f"the guest did not finish within its deadline ({boot_result.elapsed_s:.0f} s); QEMU was killed"
    else:
        why = f"the guest stopped before this probe finished (QEMU {boot_result.outcome})"
    return ProbeResult(spec.id, "error", reason=why, evidence={"console_tail": run.tail})


def _interpreted(spec: ProbeSpec, result: ProbeResult) -> ProbeResult:
    return spec.settle(spec.interpret(result) if spec.interpret else result)


def _short(message: str, limit: int = 80) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _boot_with_fallback(
    argv_for: Callable[[str], List[str]],
    accel: str,
    deadline_s: float,
    on_line: Callable[[str], None],
    monitor: Monitor,
) -> Tuple[Boot, str, List[str]]:
    """Boot under KVM when it works, else TCG; the notes say (briefly) what happened."""
    notes: List[str] = []
    if accel in ("auto", "kvm") and kvm_usable():
        monitor.note(f"booting under KVM (timeout {deadline_s:.0f} s)")
        first = boot(argv_for("kvm"), deadline_s, KVM_FIRST_OUTPUT_S, on_line)
        if first.guest_spoke or accel == "kvm":
            return first, "kvm", notes
        why = first.qemu_messages[-1] if first.qemu_messages else f"no output in {KVM_FIRST_OUTPUT_S:.0f} s"
        notes.append(f"KVM did not work ({_short(why)}); booted again under TCG")
        monitor.note(notes[-1])
    elif accel == "kvm":
        raise ShakeoutError("--accel kvm: /dev/kvm cannot be opened here")
    elif accel == "auto":
        notes.append("/dev/kvm is not usable; using TCG")
    monitor.note(f"booting under TCG (timeout {deadline_s:.0f} s)")
    return boot(argv_for("tcg"), deadline_s, None, on_line), "tcg", notes


def run_vm(
    kernel: Path,
    specs: Optional[Sequence[ProbeSpec]],
    bugs: Sequence[Bug],
    duration_s: float,
    cpus: int,
    memory: str,
    accel: str,
    cpu: str,
    monitor: Optional[Monitor] = None,
) -> RunReport:
    monitor = monitor or Monitor()
    arch = kernel_arch(kernel)
    qemu = find_qemu(arch)
    if specs is None:  # every probe that runs on Linux for the kernel's architecture
        specs = [s for s in all_probes().values() if s.needs.allows("linux", arch)]
    if not specs:
        raise UsageError(f"no probe runs on {arch}")
    check_memory(memory)
    check_cpu_model(qemu, cpu)
    started = time.monotonic()
    deadlines = {s.id: duration_s + grace_s(duration_s) for s in specs}
    deadline_s = BOOT_ALLOWANCE_S + sum(deadlines.values()) + 10 * len(specs)
    with tempfile.TemporaryDirectory(prefix="shakeout-vm-") as tmp:
        initrd = Path(tmp) / "initramfs.cpio.gz"
        initrd.write_bytes(build_initramfs(specs, duration_s, cpus))

        def argv_for(acc: str) -> List[str]:
            return qemu_argv(qemu, kernel, initrd, cpus, memory, acc, "host" if acc == "kvm" and cpu == "max" else cpu)

        def on_line(line: str) -> None:
            at = line.find(PREFIX)
            kind, _, rest = line[at + len(PREFIX) :].partition(" ") if at >= 0 else ("", "", "")
            if kind == "START":
                monitor.started("vm: " + rest.strip(), duration_s)

        monitor.note(f"vm: {kernel.name} with {len(specs)} probe(s) of {duration_s:g} s each")
        boot_result, used_accel, notes = _boot_with_fallback(argv_for, accel, deadline_s, on_line, monitor)
    run = parse_console(boot_result.console, deadlines)
    report = new_report("vm", read_host())
    report.probes = [_interpreted(s, run.results.get(s.id) or _unfinished(s, run, boot_result)) for s in specs]
    ran = {s.id for s in specs}
    bugs = [b for b in bugs if ran.intersection(b.probes)]  # as check --only: the bugs of the probes run
    for result in report.probes:
        monitor.finished("vm: " + result.probe_id, result)
    if run.host:
        host = guest_host(run.host)
        report.host = host.to_dict()
        report.bugs = judge_bugs(host, bugs, report.probes, {s.id: s for s in specs})
    else:
        report.host = {"os": "linux", "arch": arch, "kernel_release": None, "note": "the guest reported no facts"}
        report.bugs = [
            BugVerdict(b.id, b.kind, b.title, "unknown", "the guest reported nothing: " + report.probes[0].reason)
            for b in bugs
        ]
    report.vm = {
        "kernel": str(kernel),
        "qemu": qemu,
        "accel": used_accel,
        "notes": notes + run.errors,
        "cpus": cpus,
        "memory": memory,
        "boot_outcome": boot_result.outcome,
        "elapsed_s": round(boot_result.elapsed_s, 3),
        "panic": run.panic,
        "console_tail": run.tail,
    }
    report.elapsed_s = time.monotonic() - started
    return settle(report)
