"""The probe line protocol, seen from Python: the mirror of native/probe.h.

A probe prints one JSON object per line on stdout: `progress` events while it runs, any
number of `target` events (addresses an outside injector may write to), and exactly one
`result`; its exit status must match the result's verdict (EXIT_VERDICTS). `classify` turns
what happened to the process into a ProbeResult; it is shared by the runner (a probe on
this machine) and vm's console parser (a probe inside a guest).
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from shakeout.results import ProbeResult

EXIT_VERDICTS = {0: "pass", 1: "fail", 2: "error", 4: "skip"}


@dataclass(frozen=True)
class Progress:
    iterations: int
    exposures: int
    elapsed_s: float


ProgressCallback = Callable[[Progress], None]
EventCallback = Callable[[Dict[str, Any]], None]


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
