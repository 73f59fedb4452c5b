"""vDSO stack use: static analysis (image.py, stack.py) and measurement (native/vdso_stack.c).

The static analysis only reads bytes; nothing here loads or runs the image it analyses.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional

from shakeout.inputs import MIB
from shakeout.vdso.image import load_image
from shakeout.vdso.stack import Analysis, FunctionStack, analyze

GO_VDSO_BUDGET_BYTES = 104  # what Go gave the vDSO until it switched to the system stack
DANGER_BYTES = 4096  # a -fstack-check probe: one page below the stack pointer
IMAGE_CAP_BYTES = 256 * MIB  # a file to analyse: more than any real library (libc.so.6 is ~2 MiB)


def round16(n: int) -> int:
    return (n + 15) // 16 * 16


def combine(
    static: List[FunctionStack], measured: Dict[str, Dict[str, Any]], budget_bytes: int
) -> List[Dict[str, Any]]:
    """One row per exported function (aliases at one address folded into one row)."""
    by_address: Dict[int, List[FunctionStack]] = {}
    for f in static:
        by_address.setdefault(f.address, []).append(f)
    rows = []
    for address, group in sorted(by_address.items()):
        names = sorted((f.name for f in group), key=lambda n: (not n.startswith("__"), n))
        f = next(g for g in group if g.name == names[0])
        m = next((measured[n] for n in names if n in measured), None)
        measured_bytes: Optional[int] = int(m["measured_bytes"]) if m and m.get("measured_bytes") is not None else None
        rows.append(
            {
                "name": names[0],
                "aliases": names[1:],
                "address": f"{address:#x}",
                "static_bytes": f.static_bytes,
                "measured_bytes": measured_bytes,
                "leaf": f.leaf,
                "probes": [{"address": f"{p.address:#x}", "depth": p.depth} for p in f.probes],
                "decided_by": f.decided_by,
                "complete": f.complete,
                "notes": f.notes,
                "over_budget": max(f.static_bytes, measured_bytes or 0) > budget_bytes,
                # The measured use can never exceed the static bound (rounded up to the 16-byte
                # steps the measurement takes); if it does, the static analysis is wrong.
                "consistent": measured_bytes is None or measured_bytes <= round16(f.static_bytes),
            }
        )
    return rows


def dangerous(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [
        r
        for r in rows
        if max(r["static_bytes"], r["measured_bytes"] or 0) >= DANGER_BYTES
        or any(p["depth"] >= DANGER_BYTES for p in r["probes"])
    ]


def analyze_bytes(data: bytes, source: str) -> Analysis:
    return analyze(load_image(data, source))


def image_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
