"""Run a bisect target: substitute PATTERN, run in its own process group with a timeout,
collect the [bisect-match] markers, and keep a log that a later run can resume from."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

from shakeout.bisect.pattern import find_markers
from shakeout.bisect.search import BisectError, Trial
from shakeout.proc import kill_group

PLACEHOLDER = "PATTERN"


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


class CommandTarget:
    """Runs `argv` with PATTERN substituted in its arguments and environment settings."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        timeout_s: Optional[float] = None,
        hang_is_failure: bool = False,
        jobs: int = 1,
        on_output: Optional[Callable[[str], None]] = None,
    ) -> None:
        if not any(PLACEHOLDER in w for w in [*argv, *env.values()]):
            raise BisectError(
                "the word PATTERN appears nowhere in the command or its VAR=value settings: the target "
                "cannot learn which changes to enable"
            )
        self.argv, self.env = list(argv), dict(env)
        self.timeout_s, self.hang_is_failure, self.jobs = timeout_s, hang_is_failure, jobs
        self.on_output = on_output

    def __call__(self, patterns: List[str]) -> List[Trial]:
        if self.jobs == 1 or len(patterns) == 1:
            return [self.one(p) for p in patterns]
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            return list(pool.map(self.one, patterns))

    def one(self, pattern: str) -> Trial:
        argv = [w.replace(PLACEHOLDER, pattern) for w in self.argv]
        env = {k: v.replace(PLACEHOLDER, pattern) for k, v in self.env.items()}
        return run_trial(pattern, argv, env, self.timeout_s, self.hang_is_failure, self.on_output)


def run_trial(
    pattern: str,
    argv: List[str],
    extra_env: Mapping[str, str],
    timeout_s: Optional[float],
    hang_is_failure: bool,
    on_output: Optional[Callable[[str], None]] = None,
) -> Trial:
    """One run of the target in its own process group; its whole group is killed at the end."""
    env = dict(os.environ)
    env.update(extra_env)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        raise BisectError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, _ = proc.communicate()
        timed_out = True
    finally:
        kill_group(proc.pid)
    text = out.decode("utf-8", "replace")
    lines = text.splitlines()
    matches = frozenset(i for line in lines for i in find_markers(line))
    if timed_out and not hang_is_failure:
        raise BisectError(
            f"the target did not finish within --timeout {timeout_s} s with pattern {pattern} "
            "(use --hang fail to count "
            "a hang as a failure)"
        )
    if on_output and proc.returncode not in (0, None) and not timed_out and not matches:
        on_output(f"note: pattern {pattern} failed with status {proc.returncode} and no match lines")
    return Trial(
        pattern=pattern,
        failed=timed_out or proc.returncode != 0,
        matches=matches,
        lines=[line for line in lines if "[bisect-match" in line],
        seconds=time.monotonic() - started,
        note="timed out" if timed_out else f"exit {proc.returncode}",
    )


class TrialLog:
    """Every trial as one JSON line; a resumed run replays the recorded outcomes per pattern."""

    def __init__(self, path: Path, run: Callable[[List[str]], List[Trial]]) -> None:
        self.path, self.run = path, run
        self.recorded: Dict[str, Deque[Trial]] = defaultdict(deque)
        self.replayed = 0
        if path.exists():
            try:
                for line in path.read_text().splitlines():
                    if line.strip():
                        d = json.loads(line)
                        self.recorded[d["pattern"]].append(
                            Trial(d["pattern"], bool(d["failed"]), frozenset(int(m, 16) for m in d["matches"]),
                                  d.get("lines", []), float(d.get("seconds", 0)), d.get("note", ""))
                        )  # fmt: skip
            except (OSError, ValueError, KeyError) as exc:
                raise BisectError(f"cannot resume from {path}: {exc}") from None

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
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise BisectError(f"cannot write the trial log {self.path}: {exc.strerror or exc}") from None
