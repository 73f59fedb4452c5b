"""vdso-stack: how much of its caller's stack does each vDSO function use?

The native probe measures every function with a known signature above a guard page and
prints the vDSO image it measured; this module analyses that same image statically
(shakeout.vdso), so the two figures always describe one image, also when the probe ran
inside a VM. With --library the subject is a vDSO-like shared object: the probe loads it
(running its code), and the static analysis reads the same file (running nothing).

A measurement, not a statistical search: there is no failure-probability bound. Verdict:
- fail when a function touches or probes 4 KiB or more below its caller's stack pointer
  (a vDSO built with -fstack-check, as in Go issue 20427); the reason and
  evidence["fired"] name the checks that saw it: `measured` (the guard page was hit),
  `static-probe` (an `or $0` probe that deep), `static-bound` (the static bound alone);
- error when nothing is that deep but the static analysis failed, is incomplete, or
  disagrees with the measurement (measured > static): the numbers cannot vouch for a pass;
- pass only when both agree on every function and nothing is that deep.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from shakeout.binaries import BIN_DIR
from shakeout.errors import ShakeoutError
from shakeout.inputs import read_input_bytes
from shakeout.nativebuild import subject_library_name
from shakeout.probespec import Injection, Needs, ProbeSpec
from shakeout.results import ProbeResult
from shakeout.vdso import (
    DANGER_BYTES,
    GO_VDSO_BUDGET_BYTES,
    IMAGE_CAP_BYTES,
    VdsoRow,
    analyze_bytes,
    combine,
    image_digest,
)

DEEP_LIBRARY = BIN_DIR / subject_library_name(Path("lib_vdso_deep.c"))


def _image(evidence: Dict[str, Any]) -> Tuple[bytes, str]:
    """The image the probe measured: printed by the probe, or the library file it loaded."""
    if evidence.get("image"):
        return bytes.fromhex(evidence["image"]), "the vDSO"
    source = str(evidence.get("source", ""))
    return read_input_bytes(Path(source), "vDSO-like library", IMAGE_CAP_BYTES), source


def fired_checks(row: VdsoRow) -> List[str]:
    """Which checks see this function reach DANGER_BYTES below its caller's stack pointer."""
    fired = []
    if (row.measured_bytes or 0) >= DANGER_BYTES:
        fired.append("measured")
    if any(p.depth >= DANGER_BYTES for p in row.probes):
        fired.append("static-probe")
    if row.static_bytes >= DANGER_BYTES and row.complete:
        fired.append("static-bound")
    return fired


def _fail_reason(row: VdsoRow, fired: List[str]) -> str:
    probes = ", ".join(f"{p.address:#x} at depth {p.depth}" for p in row.probes) or "none"
    return "{} touches {} bytes below its caller's stack pointer ({}: static {}, measured {}; probes: {})".format(
        row.name, row.deepest_bytes, " and ".join(fired), row.static_bytes, row.measured_bytes, probes
    )


def _doubt(rows: List[VdsoRow]) -> Optional[str]:
    """Why the static and measured numbers cannot vouch for a pass, or None."""
    incomplete = [r for r in rows if not r.complete]
    if incomplete:
        return "the static analysis is incomplete for {} ({}), so its bound is not one".format(
            ", ".join(r.name for r in incomplete), "; ".join(incomplete[0].notes)
        )
    disagree = [r for r in rows if not r.consistent]
    if disagree:
        return "static analysis and measurement disagree: " + ", ".join(
            f"{r.name} measured {r.measured_bytes} > static {r.static_bytes}" for r in disagree
        )
    return None


def _summary(rows: List[VdsoRow]) -> str:
    deepest = max(rows, key=lambda r: r.deepest_bytes)
    unmeasured = [r.name for r in rows if r.measured_bytes is None]
    return "{} functions; deepest {} ({} bytes static, {} measured, below {}); over Go's {}-byte budget: {}{}".format(
        len(rows),
        deepest.name,
        deepest.static_bytes,
        deepest.measured_bytes,
        DANGER_BYTES,
        GO_VDSO_BUDGET_BYTES,
        ", ".join(r.name for r in rows if r.over_budget) or "none",
        "; static bound only (not measurable here): " + ", ".join(unmeasured) if unmeasured else "",
    )


def interpret(result: ProbeResult) -> ProbeResult:
    ev = result.evidence
    if result.verdict not in ("pass", "fail") or "functions" not in ev:
        return result
    measured: Dict[str, Dict[str, Any]] = {f["name"]: f for f in ev["functions"]}
    evidence = {k: v for k, v in ev.items() if k != "image"}
    evidence.update(deterministic=True, measurements=ev["functions"])
    try:
        data, source = _image(ev)
        evidence.update(image_bytes=len(data), image_sha256=image_digest(data))
        analysis = analyze_bytes(data, source)
    except ShakeoutError as exc:
        evidence["static_analysis_error"] = str(exc)
        deepest = max((f.get("measured_bytes") or 0 for f in ev["functions"]), default=0)
        if deepest >= DANGER_BYTES:
            evidence["fired"] = ["measured"]
            reason = f"a function needs {deepest} bytes below its caller's stack pointer (measured; no static analysis)"
            return replace(result, verdict="fail", reason=reason, evidence=evidence)
        return replace(result, verdict="error", reason=f"the static analysis failed: {exc}", evidence=evidence)
    rows = combine(analysis.functions, measured, GO_VDSO_BUDGET_BYTES)
    evidence["functions"] = [r.to_dict() for r in rows]
    evidence["inconsistent"] = [r.name for r in rows if not r.consistent]
    if analysis.notes:
        evidence["incomplete_functions"] = analysis.notes
    for row in rows:
        fired = fired_checks(row)
        if fired:
            evidence["fired"] = fired
            return replace(result, verdict="fail", reason=_fail_reason(row, fired), evidence=evidence)
    doubt = _doubt(rows)
    if doubt:
        return replace(
            result, verdict="error", reason=doubt + "; nothing reaches 4096 bytes as far as seen", evidence=evidence
        )
    evidence["summary"] = _summary(rows)
    return replace(result, verdict="pass", reason="", evidence=evidence)


def verify_deep_probe(result: ProbeResult) -> Optional[str]:
    """The selftest library must be caught by the measurement itself (the guard page hit
    4 KiB down), not only by the static analysis."""
    fired = result.evidence.get("fired", [])
    rows = result.evidence.get("functions", [])
    deep = [r for r in rows if (r.get("measured_bytes") or 0) >= DANGER_BYTES]
    if "measured" not in fired or not deep:
        return "the measurement did not see {} bytes (fired: {}; measured: {})".format(
            DANGER_BYTES,
            ", ".join(fired) or "none",
            ", ".join("{}={}".format(r.get("name"), r.get("measured_bytes")) for r in rows) or "nothing",
        )
    if len(deep) != len(rows):
        return f"only {len(deep)} of {len(rows)} functions measured {DANGER_BYTES} bytes or more"
    return None


PROBE = ProbeSpec(
    id="vdso-stack",
    binary="vdso_stack",
    summary="Stack use of every vDSO function: measured above a guard page, and statically over all paths.",
    needs=Needs(os=("linux",), arch=("x86_64",)),
    default_duration_s=10.0,
    injections=(
        Injection(
            name="deep-probe-library",
            description=(
                "a vDSO-like library whose functions probe 4 KiB below the stack pointer "
                "(-fstack-check's sequence), measured through --library"
            ),
            options={"library": str(DEEP_LIBRARY)},
            duration_s=30.0,
            verify=verify_deep_probe,
        ),
    ),
    interpret=interpret,
    exposure="one argument set of one function, measured to 16 bytes above a guard page (a measurement: no bound)",
)
