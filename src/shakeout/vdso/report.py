"""`shakeout vdso`: the static analysis and the measurement of one image, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from shakeout import __version__
from shakeout.errors import ShakeoutError
from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.runner import run_probe
from shakeout.vdso import analyze_bytes, combine, dangerous, image_digest
from shakeout.vdso.image import running_vdso


def _measure(library: Optional[Path]) -> tuple[Dict[str, Dict[str, Any]], List[str]]:
    """(measured functions by name, notes)."""
    options = {"library": str(library.resolve())} if library else {}
    result = run_probe(get_probe("vdso-stack"), read_host(), 60.0, options=options)
    if result.verdict not in ("pass", "fail"):
        return {}, ["not measured: " + (result.reason or result.verdict)]
    functions = result.evidence.get("functions", [])
    measured = {f["name"]: f for f in functions if f.get("measured_bytes") is not None}
    notes = [
        "{}: every call faulted whatever the stack (not a stack fault; not measurable here)".format(f["name"])
        for f in functions
        if f.get("measured_bytes") is None
    ]
    return measured, notes


def vdso_report(path: Optional[Path], budget_bytes: int, measure: bool = True) -> Dict[str, Any]:
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ShakeoutError(f"cannot read {path}: {exc.strerror or exc}") from None
        source = str(path)
    else:
        data, source = running_vdso(), "this kernel's vDSO"
    static = analyze_bytes(data, source)
    measured: Dict[str, Dict[str, Any]] = {}
    notes: List[str] = []
    if measure:
        measured, notes = _measure(path)
    else:
        notes.append("not measured (--no-measure)")
    rows = combine(static, measured, budget_bytes)
    return {
        "schema": "shakeout/1",
        "command": "vdso",
        "tool_version": __version__,
        "source": source,
        "image_bytes": len(data),
        "image_sha256": image_digest(data),
        "budget_bytes": budget_bytes,
        "functions": rows,
        "dangerous": [r["name"] for r in dangerous(rows)],
        "inconsistent": [r["name"] for r in rows if not r["consistent"]],
        "notes": notes,
    }
