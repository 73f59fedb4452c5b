"""Run bisect trials as processes, and keep a log of them that a later run resumes from.

A trial is the target command with PATTERN substituted, started through
`shakeout.proc.spawn` under a small supervisor (supervisor.py) that leads the trial's
process group and SIGKILLs the group if shakeout dies, even by `kill -9`. A batch of
trials (the search asks for at most -j at a time) runs concurrently, all driven from the
calling thread: one selector reads every trial's output (stdout and stderr, merged) and
its supervisor's status pipe, so a signal (Ctrl-C, SIGTERM, SIGHUP) interrupts the wait at
once and the `finally` kills every group. Never from a worker thread: the parent-death
signal fires when the *thread* that started the child ends.

A trial ends when its command exits (the supervisor reports the status): its group is
killed as soon as the output reaches end-of-file, or after EXIT_GRACE_S if a background
child still holds it. Only a command that has not exited by --timeout is a hang.

With --launcher (a Launcher), every trial command is prefixed by the launcher's words and
the work may run in another process tree or on another machine, which the group kill
cannot reach. A trial stopped before its command exited (timeout, Ctrl-C, SIGTERM,
SIGHUP, an error) therefore first gets SIGTERM and the launcher's grace to cancel its
work, then SIGKILL; the supervisor does the same when shakeout is killed with `kill -9`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from shakeout.bisect.pattern import find_markers
from shakeout.bisect.search import BisectError, Trial
from shakeout.errors import UsageError
from shakeout.inputs import MIB, check_input_file, read_input_bytes
from shakeout.proc import kill_group, spawn

PLACEHOLDER = "PATTERN"
SUPERVISOR = Path(__file__).with_name("supervisor.py")
EXIT_GRACE_S = 0.5  # how long a background child may keep the output open after the command exited
READ_CHUNK_BYTES = 1 << 16
MAX_LINE_BYTES = 1 << 20  # a longer line is cut here (a marker beyond it is not seen)
MAX_KEPT_LINES = 10_000  # report lines kept per trial; the change ids are all kept
LOG_CAP_BYTES = 256 * MIB
Note = Callable[[str], None]


def split_command(words: Sequence[str]) -> Tuple[Dict[str, str], List[str]]:
    """Leading VAR=value words are environment settings; the rest is the command."""
    env: Dict[str, str] = {}
    rest = list(words)
    while rest and "=" in rest[0] and rest[0].split("=", 1)[0].isidentifier():
        name, value = rest.pop(0).split("=", 1)
        env[name] = value
    if not rest:
        raise BisectError("no command to run after --")
    return env, rest


@dataclass
class TrialSpec:
    """One run to make: the pattern it tests, the command and its extra environment."""

    pattern: str
    argv: List[str]
    env: Dict[str, str]


@dataclass(frozen=True)
class Launcher:
    """A command that runs every trial elsewhere: `srun -N1 --`, `ssh builder7`, a container
    runner. It is the trial's command, in the trial's process group; what it starts may not
    be. Its contract: on SIGTERM it cancels the trial's work wherever that runs and exits
    (srun forwards SIGTERM to the job step; `ssh -tt` hangs up the remote session; `docker
    run` stops the container), within grace_s, after which the group gets SIGKILL. The
    trial's VAR=value settings reach the far side as `env VAR=value CMD ...`, since a
    launcher need not pass its environment on."""

    words: Tuple[str, ...]
    grace_s: float = 10.0

    def argv(self, spec: TrialSpec) -> List[str]:
        settings = [f"{name}={value}" for name, value in spec.env.items()]
        return [*self.words, *(["env", *settings] if settings else []), *spec.argv]


@dataclass
class _Running:
    """A started trial: its supervisor process, its two pipes and what was read so far."""

    spec: TrialSpec
    started_s: float
    program: str = ""  # what was started: the command's first word, or the launcher's
    out_fd: int = -1
    status_fd: int = -1
    proc: Optional[subprocess.Popen[bytes]] = None
    partial: bytearray = field(default_factory=bytearray)
    status_text: bytearray = field(default_factory=bytearray)
    lines: List[str] = field(default_factory=list)
    matches: Set[int] = field(default_factory=set)
    exited_s: Optional[float] = None  # when the supervisor reported (or closed) the status
    stop_by_s: Optional[float] = None  # SIGTERM sent (a launcher's trial): SIGKILL at this time
    timed_out: bool = False
    done: bool = False
    elapsed_s: float = 0.0

    def feed(self, data: bytes) -> None:
        self.partial += data
        *complete, rest = bytes(self.partial).split(b"\n")
        if len(rest) > MAX_LINE_BYTES:
            complete.append(rest)
            rest = b""
        self.partial = bytearray(rest)
        for raw in complete:
            self._line(raw)

    def flush(self) -> None:
        if self.partial:
            self._line(bytes(self.partial))
            self.partial = bytearray()

    def _line(self, raw: bytes) -> None:
        if b"[bisect-match" not in raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r")
        ids = find_markers(line)
        self.matches.update(ids)
        if ids and len(self.lines) < MAX_KEPT_LINES:
            self.lines.append(line)

    def wake_at(self, timeout_s: Optional[float]) -> float:
        if self.exited_s is not None:
            return self.exited_s + EXIT_GRACE_S
        if self.stop_by_s is not None:
            return self.stop_by_s
        return self.started_s + timeout_s if timeout_s is not None else math.inf


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP while groups are being killed, so the cleanup runs whole."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _pipe() -> Tuple[int, int]:
    try:
        return os.pipe()
    except OSError as exc:
        raise BisectError(f"cannot start a trial: {exc.strerror or exc}") from None


def _start(
    spec: TrialSpec, selector: selectors.BaseSelector, running: List[_Running], launcher: Optional[Launcher]
) -> None:
    trial = _Running(spec, time.monotonic())
    running.append(trial)  # from here on, the caller's finally stops it
    trial.out_fd, out_w = _pipe()
    try:
        trial.status_fd, status_w = _pipe()
        try:
            command = launcher.argv(spec) if launcher is not None else spec.argv
            trial.program = command[0]
            grace = str(launcher.grace_s) if launcher is not None else "0"
            argv = [sys.executable, "-I", "-S", str(SUPERVISOR), str(os.getpid()), str(status_w), grace, "--", *command]
            proc = spawn(argv, env={**os.environ, **spec.env}, stdin=subprocess.DEVNULL, stdout=out_w,
                         stderr=out_w, pass_fds=(status_w,))  # fmt: skip
        finally:
            os.close(status_w)
    finally:
        os.close(out_w)
    trial.proc = proc
    selector.register(trial.out_fd, selectors.EVENT_READ, (trial, "out"))
    selector.register(trial.status_fd, selectors.EVENT_READ, (trial, "status"))


def _close(trial: _Running, which: str, selector: selectors.BaseSelector) -> None:
    fd = trial.out_fd if which == "out" else trial.status_fd
    if fd < 0:
        return
    with contextlib.suppress(KeyError, ValueError):
        selector.unregister(fd)
    os.close(fd)
    if which == "out":
        trial.out_fd = -1
    else:
        trial.status_fd = -1


def _read(trial: _Running, which: str, selector: selectors.BaseSelector) -> None:
    fd = trial.out_fd if which == "out" else trial.status_fd
    data = os.read(fd, READ_CHUNK_BYTES)
    if which == "out":
        if data:
            trial.feed(data)
        else:
            trial.flush()
            _close(trial, "out", selector)
    elif data:
        trial.status_text += data[:4096]
    else:
        trial.exited_s = time.monotonic()
        _close(trial, "status", selector)


def _stop(trial: _Running, selector: selectors.BaseSelector) -> None:
    """Kill the trial's whole group, reap its supervisor, close its pipes."""
    if trial.proc is not None:
        kill_group(trial.proc.pid)
        trial.proc.wait()
    trial.flush()
    _close(trial, "out", selector)
    _close(trial, "status", selector)
    if not trial.done:
        trial.elapsed_s = time.monotonic() - trial.started_s
    trial.done = True


def _ask_to_stop(trial: _Running, grace_s: float) -> None:
    """SIGTERM the group (the supervisor ignores it while shakeout lives): the launcher's cue."""
    if trial.proc is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(trial.proc.pid, signal.SIGTERM)
    trial.stop_by_s = time.monotonic() + grace_s


def _finish_due(
    running: List[_Running], selector: selectors.BaseSelector, timeout_s: Optional[float], grace_s: float
) -> None:
    now = time.monotonic()
    for trial in running:
        if trial.done:
            continue
        reported = trial.exited_s is not None
        if reported and (trial.out_fd < 0 or now >= trial.wake_at(timeout_s)):
            if not trial.timed_out:
                trial.elapsed_s = (trial.exited_s or now) - trial.started_s
            trial.done = True
            _stop(trial, selector)
        elif not reported and now >= trial.wake_at(timeout_s):
            if not trial.timed_out:
                trial.timed_out = True
                trial.elapsed_s = now - trial.started_s
                if grace_s > 0:
                    _ask_to_stop(trial, grace_s)
                    continue
            trial.done = True
            _stop(trial, selector)


def _drive(
    running: List[_Running], selector: selectors.BaseSelector, timeout_s: Optional[float], grace_s: float
) -> None:
    while True:
        _finish_due(running, selector, timeout_s, grace_s)
        active = [t for t in running if not t.done]
        if not active:
            return
        wake = min(t.wake_at(timeout_s) for t in active)
        wait = None if wake == math.inf else max(0.0, wake - time.monotonic())
        for key, _events in selector.select(wait):
            trial, which = key.data
            _read(trial, which, selector)


def _status(trial: _Running) -> Tuple[str, int, str]:
    """("exit", N, ""), ("signal", N, ""), ("error", errno, text) or ("lost", 0, "")."""
    words = bytes(trial.status_text).decode("utf-8", "replace").strip().split(" ", 2)
    if len(words) >= 2 and words[0] in ("exit", "signal", "error") and words[1].isascii() and words[1].isdigit():
        return words[0], int(words[1]), words[2] if len(words) > 2 else ""
    return "lost", 0, ""


def _trial(trial: _Running, timeout_s: Optional[float], hang_is_failure: bool, note: Optional[Note]) -> Trial:
    spec = trial.spec
    kind, number, text = _status(trial)
    if trial.timed_out:
        if not hang_is_failure:
            raise BisectError(
                f"the target did not finish within --timeout {timeout_s} s with pattern {spec.pattern} "
                "(use --hang fail to count a hang as a failure)"
            )
        failed, how = True, "timed out"
    elif kind == "error":
        raise BisectError(f"cannot run {trial.program}: {text}")
    elif kind == "exit":
        failed, how = number != 0, f"exit {number}"
    elif kind == "signal":
        failed, how = True, f"killed by {_signal_name(number)}"
    else:
        failed, how = True, "its process group was killed (the command or the system sent SIGKILL to it)"
    if note and failed and not trial.timed_out and not trial.matches:
        note(f"note: pattern {spec.pattern} failed ({how}) and printed no match lines")
    return Trial(spec.pattern, failed, frozenset(trial.matches), list(trial.lines), trial.elapsed_s, how)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _let_launchers_stop(running: List[_Running], selector: selectors.BaseSelector, grace_s: float) -> None:
    """On the way out: SIGTERM every trial whose command still runs, then read on until each
    command has exited or its grace is over (a launcher blocked on a full pipe cannot exit)."""
    for trial in running:
        if not trial.done and trial.exited_s is None and trial.stop_by_s is None and trial.proc is not None:
            _ask_to_stop(trial, grace_s)
    while True:
        now = time.monotonic()
        stopping = [t for t in running if not t.done and t.exited_s is None and (t.stop_by_s or 0.0) > now]
        if not stopping:
            return
        for key, _events in selector.select(min(t.stop_by_s or now for t in stopping) - now):
            trial, which = key.data
            _read(trial, which, selector)


def run_trials(
    specs: Sequence[TrialSpec],
    timeout_s: Optional[float],
    hang_is_failure: bool,
    note: Optional[Note] = None,
    launcher: Optional[Launcher] = None,
) -> List[Trial]:
    """Run the trials concurrently; every group is killed before this returns or raises."""
    grace_s = launcher.grace_s if launcher is not None else 0.0
    running: List[_Running] = []
    try:
        selector = selectors.DefaultSelector()
    except OSError as exc:
        raise BisectError(f"cannot start a trial: {exc.strerror or exc}") from None
    try:
        for spec in specs:
            _start(spec, selector, running, launcher)
        _drive(running, selector, timeout_s, grace_s)
    finally:
        with _signals_deferred():
            if grace_s > 0:
                _let_launchers_stop(running, selector, grace_s)
            for trial in running:
                if not trial.done or trial.out_fd >= 0 or trial.status_fd >= 0:
                    _stop(trial, selector)
            selector.close()
    return [_trial(t, timeout_s, hang_is_failure, note) for t in running]


class CommandTarget:
    """Runs `argv` with PATTERN substituted in its arguments and environment settings."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        timeout_s: Optional[float] = None,
        hang_is_failure: bool = False,
        note: Optional[Note] = None,
        launcher: Optional[Launcher] = None,
    ) -> None:
        if not any(PLACEHOLDER in w for w in [*argv, *env.values()]):
            raise BisectError(
                "the word PATTERN appears nowhere in the command or its VAR=value settings: the target "
                "cannot learn which changes to enable"
            )
        self.argv, self.env = list(argv), dict(env)
        self.timeout_s, self.hang_is_failure, self.note = timeout_s, hang_is_failure, note
        self.launcher = launcher

    def __call__(self, patterns: List[str]) -> List[Trial]:
        specs = [self.spec(p) for p in patterns]
        return run_trials(specs, self.timeout_s, self.hang_is_failure, self.note, self.launcher)

    def spec(self, pattern: str) -> TrialSpec:
        argv = [w.replace(PLACEHOLDER, pattern) for w in self.argv]
        env = {k: v.replace(PLACEHOLDER, pattern) for k, v in self.env.items()}
        return TrialSpec(pattern, argv, env)


# -- the trial log ------------------------------------------------------------------------


JSON_KINDS = {
    "list": "array",
    "str": "string",
    "NoneType": "null",
    "int": "number",
    "float": "number",
    "bool": "boolean",
}


def _string_list(value: object, key: str) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'"{key}" is not a list of strings')
    return list(value)


def _change_id(text: str) -> int:
    digits = text[2:] if text[:2] in ("0x", "0X") else ""
    if not 1 <= len(digits) <= 16 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f'"matches" holds {text[:40]!r}, not a change id like 0x1f')
    return int(digits, 16)


def trial_from_record(record: object) -> Trial:
    """A Trial from one decoded log line; ValueError says what is wrong with it."""
    if not isinstance(record, dict):
        kind = JSON_KINDS.get(type(record).__name__, "value")
        raise ValueError(f"it is a JSON {kind}, not an object")
    for key in ("pattern", "failed", "matches"):
        if key not in record:
            raise ValueError(f'"{key}" is missing')
    pattern, failed = record["pattern"], record["failed"]
    if not isinstance(pattern, str) or not pattern:
        raise ValueError('"pattern" is not a non-empty string')
    if not isinstance(failed, bool):
        raise ValueError('"failed" is not true or false')
    seconds = record.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise ValueError('"seconds" is not a number of seconds')
    note = record.get("note", "")
    if not isinstance(note, str):
        raise ValueError('"note" is not a string')
    matches = frozenset(_change_id(m) for m in _string_list(record["matches"], "matches"))
    return Trial(pattern, failed, matches, _string_list(record.get("lines", []), "lines"), float(seconds), note)


def _decode_line(raw: bytes) -> Trial:
    try:
        return trial_from_record(json.loads(raw.decode("utf-8")))
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8 text") from None
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"it is not JSON ({exc.msg})") from None


def read_log(path: Path, note: Note) -> Tuple[List[Trial], Optional[int], bool]:
    """The trials recorded in path; where a torn last line starts (to cut), whether a newline is due.

    The file must be a regular file (or not exist). A last line without its newline that is
    not a whole record is what a kill mid-write leaves: it is dropped with a note. Every
    other malformed line is an error naming its line number."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return [], None, False
    except OSError:
        pass  # check_input_file says what is wrong
    check_input_file(path, "the trial log", LOG_CAP_BYTES)
    data = read_input_bytes(path, "the trial log", LOG_CAP_BYTES)
    raw_lines = data.split(b"\n")
    last = raw_lines.pop()  # b"" when the file ends with a newline
    trials: List[Trial] = []
    for number, raw in enumerate(raw_lines, 1):
        if raw.strip():
            try:
                trials.append(_decode_line(raw))
            except ValueError as exc:
                raise UsageError(f"cannot resume from {path}: line {number} is not a trial record: {exc}") from None
    if not last.strip():
        return trials, None, bool(last)
    try:
        trials.append(_decode_line(last))
    except ValueError:
        note(f"note: dropped the incomplete last line {len(raw_lines) + 1} of {path} (a run stopped while writing it)")
        return trials, len(data) - len(last), False
    return trials, None, True


class TrialLog:
    """Every trial as one JSON line; a resumed run replays the recorded outcomes per pattern."""

    def __init__(self, path: Path, run: Callable[[List[str]], List[Trial]], note: Note) -> None:
        self.path, self.run = path, run
        self.recorded: Dict[str, Deque[Trial]] = defaultdict(deque)
        self.replayed = 0
        trials, self._cut_at, self._newline_due = read_log(path, note)
        for t in trials:
            self.recorded[t.pattern].append(t)
        self._append_text("")  # fail now, not after the first trial, when the log cannot be written

    def __call__(self, patterns: List[str]) -> List[Trial]:
        results: List[Optional[Trial]] = []
        todo: List[str] = []
        for p in patterns:
            if self.recorded[p]:
                results.append(self.recorded[p].popleft())
                self.replayed += 1
            else:
                results.append(None)
                todo.append(p)
        fresh = iter(self.run(todo)) if todo else iter(())
        out: List[Trial] = []
        for r in results:
            if r is None:
                r = next(fresh)
                self._append(r)
            out.append(r)
        return out

    def _append(self, t: Trial) -> None:
        record = {"pattern": t.pattern, "failed": t.failed, "matches": [f"{m:#x}" for m in sorted(t.matches)],
                  "lines": list(t.lines)[:50], "seconds": round(t.seconds, 3), "note": t.note}  # fmt: skip
        self._append_text(json.dumps(record) + "\n")

    def _append_text(self, text: str) -> None:
        try:
            with self.path.open("a") as f:
                if self._cut_at is not None:
                    f.truncate(self._cut_at)
                    self._cut_at = None
                if self._newline_due and text:
                    text, self._newline_due = "\n" + text, False
                f.write(text)
        except OSError as exc:
            raise BisectError(f"cannot write the trial log {self.path}: {exc.strerror or exc}") from None
