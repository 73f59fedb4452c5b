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

import json
import os
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Mapping, Optional

from shakeout.errors import ShakeoutError, UsageError
from shakeout.host import Host
from shakeout.nativebuild import STATIC_DIR, injector_library_name
from shakeout.probes.base import ProbeSpec
from shakeout.proc import kill_group, spawn
from shakeout.results import ProbeResult

BIN_DIR = Path(__file__).resolve().parent / "_bin"
EXIT_VERDICTS = {0: "pass", 1: "fail", 2: "error", 4: "skip"}
STDERR_TAIL_LINES = 20
PROGRESS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Progress:
    iterations: int
    exposures: int
    elapsed_s: float


ProgressCallback = Callable[[Progress], None]
EventCallback = Callable[[Dict[str, Any]], None]


def binary_path(name: str, static: bool = False) -> Path:
    path = BIN_DIR / STATIC_DIR / name if static else BIN_DIR / name
    if not path.is_file():
        raise ShakeoutError(
            f"the native probe '{name}' is not built (expected at {path}); reinstall shakeout with "
            "'pip install .' on a machine with gcc"
        )
    return path


def injector_path(library: str) -> Path:
    path = BIN_DIR / injector_library_name(Path(library + ".c"))
    if not path.is_file():
        raise ShakeoutError(f"the fault injector '{library}' is not built (expected at {path})")
    return path


def grace_s(duration_s: float) -> float:
    return 5.0 + 0.25 * duration_s


def parse_probe_options(spec: ProbeSpec, assignments: List[str]) -> Dict[str, str]:
    """['regs=xmm', ...] -> {'regs': 'xmm'}; unknown names and bad values are UsageErrors."""
    options: Dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        option = spec.option(name)
        if not sep or option is None:
            known = ", ".join(o.name for o in spec.options) or "none"
            raise UsageError(f"probe {spec.id} has no option '{item}' (options: {known})")
        if not option.accepts(value):
            allowed = "one of " + ", ".join(option.choices) if option.choices else option.help
            raise UsageError(f"--set {name}: '{value}' is not valid ({allowed})")
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


class Protocol:
    """Accumulates the probe's stdout and splits it into protocol events."""

    def __init__(self, on_progress: Optional[ProgressCallback], on_event: Optional[EventCallback] = None) -> None:
        self.buffer = b""
        self.result: Optional[Dict[str, Any]] = None
        self.violations: List[str] = []
        self.targets: List[Dict[str, Any]] = []
        self.on_progress = on_progress
        self.on_event = on_event

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self._line(line)

    def finish(self) -> None:
        if self.buffer.strip():
            self._line(self.buffer)
        self.buffer = b""

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            event = json.loads(text)
        except ValueError:
            self.violations.append("not a protocol line: " + text[:200])
            return
        if not isinstance(event, dict):
            self.violations.append("not a protocol object: " + text[:200])
        elif event.get("event") == "result":
            self.result = event
        elif event.get("event") == "progress":
            if self.on_progress:
                self.on_progress(
                    Progress(
                        int(event.get("iterations", 0)),
                        int(event.get("exposures", 0)),
                        float(event.get("elapsed", 0)),
                    )
                )
        else:
            if event.get("event") == "target":
                self.targets.append(event)
            if self.on_event:
                self.on_event(event)


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


def classify(
    probe_id: str,
    returncode: Optional[int],
    event: Optional[Dict[str, Any]],
    timed_out: bool,
    deadline_s: float,
    violations: List[str],
) -> ProbeResult:
    """The verdict for what happened to the probe process (pure)."""
    if timed_out:
        return ProbeResult(
            probe_id,
            "error",
            reason=f"the probe did not finish within its deadline of {deadline_s:.0f} s; its process group was killed",
        )
    assert returncode is not None
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        return ProbeResult(
            probe_id,
            "error",
            reason=f"the probe died from {name} (a crash can itself be a symptom of memory corruption; "
            f"rerun it with 'shakeout run {probe_id}' to see whether it repeats)",
            death_signal=name,
            exit_status=returncode,
        )
    if event is None:
        detail = "; " + violations[0] if violations else ""
        return ProbeResult(
            probe_id,
            "error",
            reason=f"the probe exited with status {returncode} without a result line{detail}",
            exit_status=returncode,
        )
    verdict = str(event.get("verdict"))
    if EXIT_VERDICTS.get(returncode) != verdict:
        return ProbeResult(
            probe_id,
            "error",
            reason=f"protocol violation: exit status {returncode} with verdict '{verdict}'",
            exit_status=returncode,
            evidence={"result": event},
        )
    return ProbeResult(
        probe_id,
        verdict,
        iterations=int(event.get("iterations", 0)),
        exposures=int(event.get("exposures", 0)),
        elapsed_s=float(event.get("elapsed", 0.0)),
        metrics=dict(event.get("metrics") or {}),
        evidence=dict(event.get("evidence") or {}),
        reason=str(event.get("reason", "")),
        exit_status=returncode,
    )


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


def run_probe(
    spec: ProbeSpec,
    host: Host,
    duration_s: float,
    workers: Optional[int] = None,
    keep_going: bool = False,
    options: Optional[Mapping[str, str]] = None,
    env: Optional[Mapping[str, str]] = None,
    on_progress: Optional[ProgressCallback] = None,
    label: str = "",
    on_event: Optional[EventCallback] = None,
) -> ProbeResult:
    """Check the probe's needs, run it, and interpret its evidence."""
    unmet = spec.needs.unmet(host, os.geteuid() == 0)
    if unmet:
        return ProbeResult(spec.id, "skip", reason=unmet, label=label, exposure_unit=spec.exposure)
    argv = probe_argv(
        binary_path(spec.binary), duration_s, workers, keep_going, {**spec.fixed_options, **(options or {})}
    )
    try:
        result = run_argv(spec.id, argv, duration_s, env, on_progress, on_event=on_event)
    except ShakeoutError as exc:  # e.g. EMFILE under `ulimit -n`, EAGAIN under `ulimit -u`
        result = ProbeResult(spec.id, "error", reason=str(exc))
    result.label = label
    if spec.interpret:
        result = spec.interpret(result)
    return spec.settle(result)


def injection_env(library: str, env: Mapping[str, str]) -> Dict[str, str]:
    """The environment that preloads a fault injector into a probe."""
    return dict(env, LD_PRELOAD=str(injector_path(library)))
