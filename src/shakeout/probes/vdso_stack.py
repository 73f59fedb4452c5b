"""vdso-stack: how much of its caller's stack does each vDSO function use?

The native probe measures every function with a known signature above a guard page and
prints the vDSO image it measured; this module analyses that same image statically
(shakeout.vdso), so the two figures always describe one image, also when the probe ran
inside a VM. The verdict fails when a function touches or probes 4 KiB or more below
its caller's stack pointer: a vDSO built with -fstack-check, as in Go issue 20427.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict

from shakeout.probes.base import Needs, ProbeOption, ProbeSpec, integer_in
from shakeout.results import ProbeResult
from shakeout.vdso import GO_VDSO_BUDGET_BYTES, analyze_bytes, combine, dangerous, image_digest
from shakeout.vdso.image import VdsoError


def interpret(result: ProbeResult) -> ProbeResult:
    ev = result.evidence
    if result.verdict not in ("pass", "fail") or "functions" not in ev:
        return result
    measured: Dict[str, Dict[str, Any]] = {f["name"]: f for f in ev["functions"]}
    image_hex = ev.get("image")
    if not image_hex:
        return result
    data = bytes.fromhex(image_hex)
    evidence = {k: v for k, v in ev.items() if k != "image"}
    evidence.update(image_bytes=len(data), image_sha256=image_digest(data))
    try:
        rows = combine(analyze_bytes(data, "the vDSO"), measured, GO_VDSO_BUDGET_BYTES)
    except VdsoError as exc:
        evidence["static_analysis_error"] = str(exc)
        return replace(result, evidence=evidence)
    evidence["functions"] = rows
    evidence["deterministic"] = True
    evidence["inconsistent"] = [r["name"] for r in rows if not r["consistent"]]
    bad = dangerous(rows)
    deepest = max(rows, key=lambda r: max(r["static_bytes"], r["measured_bytes"] or 0))
    if bad:
        worst = bad[0]
        reason = "{} touches {} bytes below its caller's stack pointer (static {}, measured {}; probes: {})".format(
            worst["name"],
            max(worst["static_bytes"], worst["measured_bytes"] or 0),
            worst["static_bytes"],
            worst["measured_bytes"],
            ", ".join("{} at depth {}".format(p["address"], p["depth"]) for p in worst["probes"]) or "none",
        )
        return replace(result, verdict="fail", reason=reason, evidence=evidence)
    summary = (
        "{} functions; deepest {} ({} bytes static, {} measured, below 4096); over Go's {}-byte budget: {}".format(
            len(rows),
            deepest["name"],
            deepest["static_bytes"],
            deepest["measured_bytes"],
            GO_VDSO_BUDGET_BYTES,
            ", ".join(r["name"] for r in rows if r["over_budget"]) or "none",
        )
    )
    evidence["summary"] = summary
    return replace(result, evidence=evidence)


PROBE = ProbeSpec(
    id="vdso-stack",
    binary="vdso_stack",
    summary="Stack use of every vDSO function: measured above a guard page, and statically over all paths.",
    needs=Needs(os=("linux",), arch=("x86_64",)),
    default_duration_s=10.0,
    exposure="a vDSO function measured on a stack above a guard page (a measurement: no statistical bound)",
    counts_for=("vdso-stack-probe",),
    options=(
        ProbeOption("library", "measure a vDSO-like shared object instead of the vDSO", check=bool),
        ProbeOption("max-bytes", "largest headroom tried (default 65536)", check=integer_in(256, 1 << 24)),
    ),
    interpret=interpret,
)
