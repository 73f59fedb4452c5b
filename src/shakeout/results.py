"""Results as data: what probes observed, what it means per bug, and the whole report.

Renderers in shakeout.report turn a RunReport into text, JSON, JUnit or Prometheus;
nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

SCHEMA = "shakeout/1"

# inconclusive: the probe ran and saw nothing, but made fewer exposures than its declared
# minimum for a pass to mean anything (e.g. --duration 0.0000001); never a pass.
PROBE_VERDICTS = ("pass", "fail", "skip", "error", "inconclusive")
BUG_VERDICTS = ("vulnerable", "not-vulnerable", "not-applicable", "unknown")  # of a defect
# A hazard is documented behaviour programs must avoid, not a defect of this machine: it is
# `present` or `absent`, never `vulnerable`, in every format.
HAZARD_VERDICTS = ("present", "absent", "not-applicable", "unknown")


def rule_of_three_bound(exposures: int) -> Optional[float]:
    """With n exposures and no failure, p < 3/n at 95 % confidence (None when n = 0)."""
    return 3.0 / exposures if exposures > 0 else None


@dataclass
class ProbeResult:
    probe_id: str
    verdict: str  # pass | fail | skip | error
    iterations: int = 0
    exposures: int = 0
    elapsed_s: float = 0.0
    metrics: Dict[str, Any] = field(default_factory=dict)
    evidence: Dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    exit_status: Optional[int] = None
    death_signal: Optional[str] = None
    stderr_tail: List[str] = field(default_factory=list)
    command: List[str] = field(default_factory=list)
    label: str = ""  # e.g. "signal-vector [inject ymm]"; defaults to probe_id
    exposure_unit: str = ""  # what one exposure is and how the probe measures it (its ProbeSpec says)

    @property
    def name(self) -> str:
        return self.label or self.probe_id

    @property
    def deterministic(self) -> bool:
        """A measurement, not a search for a rare event: no statistical bound applies."""
        return bool(self.evidence.get("deterministic"))

    @property
    def time_to_detect_s(self) -> Optional[float]:
        """Seconds from the start to the first corruption seen: what the probe measured at
        detection when it says (the first sample's after_s, or detected_after_s), else the
        run's length; None when nothing was found."""
        if self.verdict != "fail":
            return None
        samples = self.evidence.get("samples") or []
        if samples and isinstance(samples[0], dict) and "after_s" in samples[0]:
            return float(samples[0]["after_s"])
        if "detected_after_s" in self.evidence:
            return float(self.evidence["detected_after_s"])
        return self.elapsed_s

    @property
    def bound(self) -> Optional[float]:
        return rule_of_three_bound(self.exposures) if self.verdict == "pass" and not self.deterministic else None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.probe_id,
            "label": self.name,
            "verdict": self.verdict,
            "reason": self.reason,
            "iterations": self.iterations,
            "exposures": self.exposures,
            "exposure_unit": self.exposure_unit,
            "elapsed_s": round(self.elapsed_s, 3),
            "failure_probability_bound_95": self.bound,
            "metrics": self.metrics,
            "evidence": self.evidence,
            "exit_status": self.exit_status,
            "death_signal": self.death_signal,
            "command": self.command,
        }


@dataclass
class BugVerdict:
    bug_id: str
    kind: str
    title: str
    verdict: str  # defect: vulnerable | not-vulnerable | not-applicable | unknown; hazard: present | absent | ...
    reason: str
    evidence: Dict[str, Any] = field(default_factory=dict)
    fix: str = ""  # e.g. "fixed in 5.3.15 / 5.4.2 (59c4bd853abc)", said with every vulnerable verdict
    mitigation: str = ""  # the catalog's first mitigation
    meaning: str = ""  # hazards: what `present` means for the reader's programs

    @property
    def alarming(self) -> bool:
        return self.verdict in ("vulnerable", "present")

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.bug_id,
            "kind": self.kind,
            "title": self.title,
            "verdict": self.verdict,
            "reason": self.reason,
            "fix": self.fix,
            "mitigation": self.mitigation,
            "meaning": self.meaning,
            "evidence": self.evidence,
        }


@dataclass
class SelftestResult:
    """One selftest step: a control run (no fault; must stay clean) or an injected fault (must be caught)."""

    probe_id: str
    injection: str  # the fault's name; "control" for a control run
    description: str
    caught: bool  # injected fault: the probe caught it with the right evidence; control: the run stayed clean
    reason: str
    time_to_detect_s: Optional[float] = None
    ran: bool = True  # False: it could not run here (skip or error)
    control: bool = False
    # The probe skipped: this machine lacks what it needs (a CPU feature, root), so it is not
    # used here either; not a gap in the selftest's proof for this machine.
    not_applicable: bool = False

    @property
    def ok(self) -> bool:
        return self.ran and self.caught

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "probe": self.probe_id,
            "injection": self.injection,
            "control": self.control,
            "description": self.description,
            "ran": self.ran,
            "not_applicable": self.not_applicable,
            "caught": None if self.control else self.caught,
            "time_to_detect_s": self.time_to_detect_s,
            "reason": self.reason,
        }
        if self.control:
            out["clean"] = self.caught if self.ran else None
        return out


@dataclass
class RunReport:
    command: str  # check | run | selftest
    tool_version: str
    host: Dict[str, Any]
    started_at: str
    elapsed_s: float = 0.0
    bugs: List[BugVerdict] = field(default_factory=list)
    probes: List[ProbeResult] = field(default_factory=list)
    selftests: List[SelftestResult] = field(default_factory=list)
    vm: Optional[Dict[str, Any]] = None  # `shakeout vm`: kernel, QEMU, accelerator, console tail
    hostname: str = ""
    strict: bool = False  # check --strict: a present hazard fails the run too
    exit_status: Optional[int] = None  # set once by shakeout.outcome, the one place that decides it
    meaning: str = ""  # what exit_status means, in words

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "schema": SCHEMA,
            "command": self.command,
            "hostname": self.hostname,
            "overall": {"exit_status": self.exit_status, "meaning": self.meaning},
            "tool_version": self.tool_version,
            "started_at": self.started_at,
            "elapsed_s": round(self.elapsed_s, 3),
            "host": self.host,
            "bugs": [b.to_dict() for b in self.bugs],
            "probes": [p.to_dict() for p in self.probes],
        }
        if self.command == "selftest":
            out["selftest"] = [s.to_dict() for s in self.selftests]
        if self.vm is not None:
            out["vm"] = self.vm
        return out
