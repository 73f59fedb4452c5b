"""Run a probe binary safely and turn its line protocol into a ProbeResult.

Invariants, whatever happens (normal exit, timeout, Ctrl-C, SIGTERM, an exception here):
- the probe runs in a new session, so it and everything it starts share one process
  group that is not ours;
- the probe leader gets SIGKILL if this process dies (PR_SET_PDEATHSIG), so even
  `kill -9` of shakeout leaves no probe running; probes that fork set it on their children;
- when run_probe returns or raises, the probe's whole process group has been sent
  SIGKILL and the leader reaped.
The deadline is the probe's duration plus a grace period; past it the group is killed and
the verdict is `error`. A probe killed by a signal is classified by the signal: a crash
can itself be a symptom of corruption, and it is reported as such, never as a pass.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Dict, List, Mapping, Optional

from shakeout.binaries import binary_path, injector_path
from shakeout.errors import ShakeoutError, UsageError
from shakeout.host import Host
from shakeout.probespec import ProbeSpec
from shakeout.proc import kill_group, spawn
from shakeout.protocol import EventCallback, ProgressCallback, Protocol, classify
from shakeout.results import ProbeResult

STDERR_TAIL_LINES = 20
PROGRESS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class ProbeRun:
    """One run of one probe: what to run and how; the host and progress come separately."""

    spec: ProbeSpec
    duration_s: float
    workers: Optional[int] = None
    keep_going: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    label: str = ""
    # Receives every protocol event that is neither progress nor the result (e.g. targets).
    on_event: Optional[EventCallback] = None


# What the engine calls to run a probe (run_probe; a fake in unit tests).
ProbeRunner = Callable[[ProbeRun, Host, Optional[ProgressCallback]], ProbeResult]


def grace_s(duration_s: float) -> float:
    return 5.0 + 0.25 * duration_s


def parse_probe_options(spec: ProbeSpec, assignments: List[str]) -> Dict[str, str]:
    """['regs=xmm', ...] -> {'regs': 'xmm'}; unknown names and bad values are UsageErrors."""
    options: Dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        option = spec.option(name)
        if not sep or option is None:
            known = ", ".join(o.name for o in spec.user_options()) or "none"
            raise UsageError(f"probe {spec.id} has no option '{item}' (options: {known})")
        if not option.accepts(value):
            raise UsageError(f"--set {name}: '{value}' is not valid ({option.allowed()})")
        options[name] = value
    return options


def probe_argv(
    binary: Path,
    duration_s: float,
    workers: Optional[int],
    keep_going: bool,
    options: Mapping[str, str],
) -> List[str]:
    argv = [
        str(binary),
        "--duration",
        repr(float(duration_s)),
        "--progress-interval",
        str(PROGRESS_INTERVAL_S),
    ]
    if workers:
        argv += ["--workers", str(workers)]
    if keep_going:
        argv.append("--keep-going")
    for name, value in options.items():
        argv += ["--" + name, value]
    return argv


def _wait_exited(pid: int, deadline: float, clock: Callable[[], float]) -> bool:
    """Wait until pid has exited, without reaping it (so its group id stays ours to kill)."""
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            return True
        if clock() >= deadline:
            return False
        time.sleep(0.01)


def _pump(proc: subprocess.Popen[bytes], protocol: Protocol, deadline: float, clock: Callable[[], float]) -> bool:
    """Feed stdout to the protocol until EOF and the leader's exit; False on the deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - clock()
            if remaining <= 0:
                return False
            if sel.select(timeout=min(remaining, 0.25)):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                protocol.feed(chunk)
    protocol.finish()
    return _wait_exited(proc.pid, deadline, clock)


def _stderr_tail(stream: IO[bytes]) -> List[str]:
    stream.seek(0)
    lines = stream.read().decode("utf-8", "replace").splitlines()
    return lines[-STDERR_TAIL_LINES:]


def run_argv(
    probe_id: str,
    argv: List[str],
    duration_s: float,
    env: Optional[Mapping[str, str]] = None,
    on_progress: Optional[ProgressCallback] = None,
    clock: Callable[[], float] = time.monotonic,
    on_event: Optional[EventCallback] = None,
) -> ProbeResult:
    """Run one probe command under the invariants in the module docstring."""
    deadline_s = duration_s + grace_s(duration_s)
    protocol = Protocol(on_progress, on_event)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with tempfile.TemporaryFile() as stderr:
        started = clock()
        proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=full_env)
        try:
            finished = _pump(proc, protocol, started + deadline_s, clock)
        finally:
            kill_group(proc.pid)
            returncode = proc.wait()
            if proc.stdout:
                proc.stdout.close()
        result = classify(probe_id, returncode, protocol.result, not finished, deadline_s, protocol.violations)
        result.stderr_tail = _stderr_tail(stderr)
    result.command = argv
    if protocol.violations:
        result.evidence.setdefault("protocol_violations", protocol.violations[:5])
    if protocol.targets:
        result.evidence.setdefault("targets", protocol.targets)
    return result


def run_probe(run: ProbeRun, host: Host, on_progress: Optional[ProgressCallback] = None) -> ProbeResult:
    """Check the probe's needs, run it, and interpret its evidence."""
    spec = run.spec
    unmet = spec.needs.unmet(host)
    if unmet:
        return ProbeResult(spec.id, "skip", reason=unmet, label=run.label, exposure_unit=spec.exposure)
    options = {**spec.fixed_options, **run.options}
    argv = probe_argv(binary_path(spec.binary), run.duration_s, run.workers, run.keep_going, options)
    try:
        result = run_argv(spec.id, argv, run.duration_s, run.env, on_progress, on_event=run.on_event)
    except ShakeoutError as exc:  # e.g. EMFILE under `ulimit -n`, EAGAIN under `ulimit -u`
        result = ProbeResult(spec.id, "error", reason=str(exc))
    result.label = run.label
    if spec.interpret:
        result = spec.interpret(result)
    return spec.settle(result)


def injection_env(library: str, env: Mapping[str, str]) -> Dict[str, str]:
    """The environment that preloads a fault injector into a probe."""
    return dict(env, LD_PRELOAD=str(injector_path(library)))
