"""vDSO stack use: static analysis (image.py, stack.py) and measurement (native/vdso_stack.c).

The static analysis only reads bytes; nothing here loads or runs the image it analyses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from shakeout.inputs import MIB
from shakeout.vdso.image import load_image
from shakeout.vdso.stack import Analysis, FunctionStack, Probe, analyze

GO_VDSO_BUDGET_BYTES = 104  # what Go gave the vDSO until it switched to the system stack
DANGER_BYTES = 4096  # a -fstack-check probe: one page below the stack pointer
IMAGE_CAP_BYTES = 256 * MIB  # a file to analyse: more than any real library (libc.so.6 is ~2 MiB)


def round16(n: int) -> int:
    return (n + 15) // 16 * 16


@dataclass(frozen=True)
class VdsoRow:
    """One exported function (aliases at one address folded in): static and measured stack use."""

    name: str
    aliases: Tuple[str, ...]
    address: int
    static_bytes: int
    measured_bytes: Optional[int]  # None: not measured (or not measurable)
    leaf: bool
    probes: Tuple[Probe, ...]  # stack probes: accesses far below the stack pointer
    decided_by: Tuple[str, ...]  # the call chain to the deepest access
    complete: bool
    notes: Tuple[str, ...]
    budget_bytes: int

    @property
    def deepest_bytes(self) -> int:
        return max(self.static_bytes, self.measured_bytes or 0)

    @property
    def over_budget(self) -> bool:
        return self.deepest_bytes > self.budget_bytes

    @property
    def consistent(self) -> bool:
        """The measured use never exceeds the static bound (rounded up to the 16-byte steps
        the measurement takes); when it does, the static analysis is wrong."""
        return self.measured_bytes is None or self.measured_bytes <= round16(self.static_bytes)

    @property
    def dangerous(self) -> bool:
        """Reaches a page below the caller's stack pointer (by use or by a stack probe)."""
        return self.deepest_bytes >= DANGER_BYTES or any(p.depth >= DANGER_BYTES for p in self.probes)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "address": f"{self.address:#x}",
            "static_bytes": self.static_bytes,
            "measured_bytes": self.measured_bytes,
            "leaf": self.leaf,
            "probes": [{"address": f"{p.address:#x}", "depth": p.depth} for p in self.probes],
            "decided_by": list(self.decided_by),
            "complete": self.complete,
            "notes": list(self.notes),
            "over_budget": self.over_budget,
            "consistent": self.consistent,
        }


def combine(static: List[FunctionStack], measured: Dict[str, Dict[str, Any]], budget_bytes: int) -> List[VdsoRow]:
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
            VdsoRow(
                name=names[0],
                aliases=tuple(names[1:]),
                address=address,
                static_bytes=f.static_bytes,
                measured_bytes=measured_bytes,
                leaf=f.leaf,
                probes=tuple(f.probes),
                decided_by=tuple(f.decided_by),
                complete=f.complete,
                notes=tuple(f.notes),
                budget_bytes=budget_bytes,
            )
        )
    return rows


def dangerous(rows: List[VdsoRow]) -> List[VdsoRow]:
    return [r for r in rows if r.dangerous]


@dataclass
class VdsoReport:
    """What `shakeout vdso` found for one image (the JSON document is its to_dict())."""

    source: str
    image_bytes: int
    image_sha256: str
    budget_bytes: int
    measured: bool
    rows: List[VdsoRow]
    incomplete_functions: Dict[str, List[str]]  # every incomplete function reached -> its reasons, once
    notes: List[str]

    @property
    def dangerous(self) -> List[str]:
        return [r.name for r in self.rows if r.dangerous]

    @property
    def inconsistent(self) -> List[str]:
        return [r.name for r in self.rows if not r.consistent]

    @property
    def incomplete(self) -> List[str]:
        return [r.name for r in self.rows if not r.complete]

    def to_dict(self, schema: str, tool_version: str) -> Dict[str, Any]:
        return {
            "schema": schema,
            "command": "vdso",
            "tool_version": tool_version,
            "source": self.source,
            "image_bytes": self.image_bytes,
            "image_sha256": self.image_sha256,
            "budget_bytes": self.budget_bytes,
            "measured": self.measured,
            "functions": [r.to_dict() for r in self.rows],
            "dangerous": self.dangerous,
            "inconsistent": self.inconsistent,
            "incomplete": self.incomplete,
            # Why each function the analysis reached is incomplete, once per function (rows
            # refer to their incomplete callees by name).
            "incomplete_functions": self.incomplete_functions,
            "notes": self.notes,
        }


def analyze_bytes(data: bytes, source: str) -> Analysis:
    return analyze(load_image(data, source))


def image_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
