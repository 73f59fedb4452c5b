"""`shakeout vdso`: the static analysis and the measurement of one image, side by side.

What runs: the static analysis reads bytes and runs nothing. The running kernel's vDSO is
measured by default (it is already mapped into every process). A FILE is only read and
analysed, unless the user opts in with --measure: measuring loads FILE with dlopen in the
probe's process, which runs FILE's code, its constructors included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from shakeout import __version__
from shakeout.host import read_host
from shakeout.inputs import read_input_bytes
from shakeout.probes import get_probe
from shakeout.runner import run_probe
from shakeout.vdso import IMAGE_CAP_BYTES, analyze_bytes, combine, dangerous, image_digest
from shakeout.vdso.image import running_vdso


def _measure(library: Optional[Path]) -> Tuple[Dict[str, Dict[str, Any]], List[str]]:
    """(measured functions by name, notes)."""
    options = {"library": str(library.resolve())} if library else {}
    result = run_probe(get_probe("vdso-stack"), read_host(), 60.0, options=options)
    functions = result.evidence.get("measurements", [])
    if not functions:
        return {}, ["not measured: " + (result.reason or result.verdict)]
    measured = {f["name"]: f for f in functions if f.get("measured_bytes") is not None}
    notes = [
        "{}: every call faulted whatever the stack (not a stack fault; not measurable here)".format(f["name"])
        for f in functions
        if f.get("measured_bytes") is None
    ]
    return measured, notes


def vdso_report(path: Optional[Path], budget_bytes: int, measure: bool) -> Dict[str, Any]:
    """measure: run the vdso-stack probe too (for a FILE, that loads and runs it)."""
    if path is not None:
        data = read_input_bytes(path, "vDSO image", IMAGE_CAP_BYTES)
        source = str(path)
    else:
        data, source = running_vdso(), "this kernel's vDSO"
    analysis = analyze_bytes(data, source)
    measured: Dict[str, Dict[str, Any]] = {}
    notes: List[str] = []
    if measure:
        if path is not None:
            notes.append(f"measured by loading {path} with dlopen (--measure): its code ran, constructors included")
        more_measured, more_notes = _measure(path)
        measured.update(more_measured)
        notes += more_notes
    elif path is not None:
        notes.append("not measured: static analysis only, nothing from the file ran (--measure loads and runs it)")
    else:
        notes.append("not measured (--no-measure)")
    rows = combine(analysis.functions, measured, budget_bytes)
    return {
        "schema": "shakeout/1",
        "command": "vdso",
        "tool_version": __version__,
        "source": source,
        "image_bytes": len(data),
        "image_sha256": image_digest(data),
        "budget_bytes": budget_bytes,
        "measured": measure,
        "functions": rows,
        "dangerous": [r["name"] for r in dangerous(rows)],
        "inconsistent": [r["name"] for r in rows if not r["consistent"]],
        "incomplete": [r["name"] for r in rows if not r["complete"]],
        # Why each function the analysis reached is incomplete, once per function (rows
        # refer to their incomplete callees by name).
        "incomplete_functions": analysis.notes,
        "notes": notes,
    }
