"""Run the native tester (native/memtest.c) once, collecting its errors as they come.

The tester runs under the runner's invariants (its own process group, a deadline, killed
with its group whatever happens), so its memory is unlocked and freed by the kernel when it
ends, even by SIGKILL. Error lines are collected as they arrive, which is what lets an
interrupted run (Ctrl-C, SIGTERM) still report every cell found so far.
Exit status (contract, as for `run`): 0 no error, 1 errors found, 3 could not test,
128 + signal when interrupted (130 for Ctrl-C).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from shakeout.binaries import binary_path
from shakeout.memtest.cells import MemError, WeakCell, aggregate
from shakeout.memtest.fencing import Fencing, fence
from shakeout.memtest.sensors import read_sensors
from shakeout.results import ProbeResult
from shakeout.runner import run_argv

TEST_NAMES = ("address", "walking", "mov-inv", "mov-inv-rand", "block-move", "random", "bit-fade")
DEFAULT_TESTS = TEST_NAMES[:-1]  # bit-fade waits minutes: only when asked for
# For the deadline of a run by passes: a bound on words checked per word and pass (the
# native table says 28.5 for all tests) and a rate no working machine is below.
VERIFIES_PER_PASS_BOUND = 30
SLOWEST_RATE_BYTES_S = 50e6
PROGRESS_INTERVAL_S = 0.5
CLEAN, ERRORS, COULD_NOT_TEST, INTERRUPTED = "clean", "errors", "could-not-test", "interrupted"
EXIT_CODES = {CLEAN: 0, ERRORS: 1, COULD_NOT_TEST: 3}

StatusCallback = Callable[[Dict[str, Any]], None]
Runner = Callable[..., ProbeResult]


@dataclass(frozen=True)
class MemtestPlan:
    size_bytes: int
    size_reason: str
    passes: Optional[int] = None  # None with duration None: one pass
    duration_s: Optional[float] = None
    tests: Tuple[str, ...] = DEFAULT_TESTS
    threads: Optional[int] = None
    granularity_bytes: int = 1 << 20
    allow_unlocked: bool = False
    fade_wait_s: int = 300

    @property
    def pass_limit(self) -> int:
        """0: until the duration ends."""
        if self.passes is not None:
            return self.passes
        return 0 if self.duration_s is not None else 1

    def deadline_s(self) -> float:
        """The duration handed to the tester and the runner's deadline: the time asked for, or a
        generous bound on the passes asked for."""
        if self.duration_s is not None:
            return self.duration_s
        passes = self.pass_limit
        fade = 2 * self.fade_wait_s * passes if "bit-fade" in self.tests else 0
        return passes * self.size_bytes * VERIFIES_PER_PASS_BOUND / SLOWEST_RATE_BYTES_S + fade + 10.0


def memtest_argv(plan: MemtestPlan, announce_flips: int = 0) -> List[str]:
    argv = [
        str(binary_path("memtest")),
        "--duration",
        repr(float(plan.deadline_s())),
        "--progress-interval",
        str(PROGRESS_INTERVAL_S),
        "--size",
        str(plan.size_bytes),
        "--passes",
        str(plan.pass_limit),
        "--tests",
        ",".join(plan.tests),
        "--fade-wait",
        str(plan.fade_wait_s),
        "--allow-unlocked",
        "1" if plan.allow_unlocked else "0",
    ]
    if plan.threads:
        argv += ["--workers", str(plan.threads)]
    if announce_flips:
        argv += ["--announce", str(announce_flips)]
    return argv


@dataclass
class MemtestReport:
    plan: MemtestPlan
    status: str
    reason: str = ""
    setup: Dict[str, Any] = field(default_factory=dict)
    errors: List[MemError] = field(default_factory=list)
    errors_total: int = 0  # including those past the tester's --max-error-lines
    propagated_copies: int = 0
    bytes_verified: int = 0
    passes_completed: int = 0
    elapsed_s: float = 0.0
    evidence: Dict[str, Any] = field(default_factory=dict)
    sensors_before: Dict[str, Any] = field(default_factory=dict)
    sensors_after: Dict[str, Any] = field(default_factory=dict)
    interrupted_by: Optional[int] = None  # the signal number

    @property
    def cells(self) -> List[WeakCell]:
        return aggregate(self.errors)

    @property
    def fencing(self) -> Fencing:
        return fence(self.cells, self.plan.granularity_bytes)

    @property
    def gbps(self) -> float:
        return self.bytes_verified / self.elapsed_s / 1e9 if self.elapsed_s > 0 else 0.0

    @property
    def exit_status(self) -> int:
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        return EXIT_CODES[self.status]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema": "shakeout-memtest/1",
            "status": self.status,
            "reason": self.reason,
            "size_bytes": self.plan.size_bytes,
            "size_reason": self.plan.size_reason,
            "tests": list(self.plan.tests),
            "passes_requested": self.plan.pass_limit or None,
            "duration_requested_s": self.plan.duration_s,
            "passes_completed": self.passes_completed,
            "bytes_verified": self.bytes_verified,
            "elapsed_s": round(self.elapsed_s, 3),
            "gbps": round(self.gbps, 3),
            "setup": self.setup,
            "errors_total": self.errors_total,
            "errors_reported": len(self.errors),
            "block_move_copies_attributed_to_source": self.propagated_copies,
            "cells": [c.to_dict() for c in self.cells],
            "errors": [e.to_dict() for e in self.errors],
            "fencing": self.fencing.to_dict(),
            "sensors": {"before": self.sensors_before, "after": self.sensors_after},
            "interrupted_by_signal": self.interrupted_by,
        }


class Collector:
    """Receives the tester's events while it runs."""

    def __init__(self, on_status: Optional[StatusCallback]) -> None:
        self.setup: Dict[str, Any] = {}
        self.errors: List[MemError] = []
        self.status: Dict[str, Any] = {}
        self.on_status = on_status

    def on_event(self, event: Dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "setup":
            self.setup = event
        elif kind == "error":
            self.errors.append(MemError.from_event(event))
        elif kind == "status":
            self.status = event
            if self.on_status:
                self.on_status(event)


def _finish(plan: MemtestPlan, collector: Collector, result: Optional[ProbeResult], elapsed_s: float) -> MemtestReport:
    evidence = result.evidence if result else {}
    errors = collector.errors or [MemError.from_event(s) for s in evidence.get("samples", [])]
    report = MemtestReport(
        plan,
        status=CLEAN,
        setup=collector.setup,
        errors=errors,
        errors_total=int(evidence.get("errors", collector.status.get("errors", len(errors)))),
        propagated_copies=int(evidence.get("propagated_copies", 0)),
        bytes_verified=int(evidence.get("bytes_verified", collector.status.get("bytes_verified", 0))),
        passes_completed=int(evidence.get("passes_completed", max(0, int(collector.status.get("pass", 1)) - 1))),
        elapsed_s=result.elapsed_s if result and result.elapsed_s else elapsed_s,
        evidence=evidence,
    )
    report.errors_total = max(report.errors_total, len(errors))
    if errors:
        report.status = ERRORS
        report.reason = "memory did not hold the values written to it"
    elif result is not None and result.verdict not in ("pass", "fail"):
        report.status = COULD_NOT_TEST
        report.reason = result.reason or "the tester did not run"
    return report


def run_memtest(
    plan: MemtestPlan,
    on_status: Optional[StatusCallback] = None,
    sensors_root: Path = Path("/"),
    runner: Runner = run_argv,
) -> MemtestReport:
    """Test once; an interruption (KeyboardInterrupt, or SystemExit(128 + signal) from the
    CLI's SIGTERM handler) ends the tester and returns what was found so far."""
    before = read_sensors(sensors_root)
    collector = Collector(on_status)
    started = time.monotonic()
    result: Optional[ProbeResult] = None
    interrupted: Optional[int] = None
    try:
        result = runner("memtest", memtest_argv(plan), plan.deadline_s(), on_event=collector.on_event)
    except KeyboardInterrupt:
        interrupted = 2
    except SystemExit as exc:
        if not isinstance(exc.code, int) or exc.code <= 128:
            raise
        interrupted = exc.code - 128
    report = _finish(plan, collector, result, time.monotonic() - started)
    report.sensors_before, report.sensors_after = before, read_sensors(sensors_root)
    if interrupted is not None:
        report.interrupted_by = interrupted
        report.reason = (
            "interrupted: " + (f"{report.reason}; " if report.reason else "") + "this is what was found so far"
        )
    return report
