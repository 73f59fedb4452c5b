"""From memory errors to weak cells: one cell per bit, ranked by how often it failed.

An error is one 64-bit word read back wrong; each bit of its XOR mask is a failing bit.
Errors at the same physical bit (the word's physical address and the bit number) are one
weak cell with a hit count — the seed's "always the same bit at the same address". Without
physical addresses (not root) the virtual address stands in, which identifies the cell only
within one run. Cells rank by hits, then by first appearance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple


@dataclass(frozen=True)
class MemError:
    test: str
    pass_no: int
    virt: int
    phys: Optional[int]
    expected: int
    observed: int
    reread: int
    cpu: int
    after_s: float

    @property
    def bits(self) -> Tuple[int, ...]:
        mask = self.expected ^ self.observed
        return tuple(b for b in range(64) if mask >> b & 1)

    @classmethod
    def from_event(cls, event: Dict[str, Any]) -> MemError:
        """An {"event":"error"} line (or a result sample) of native/memtest.c."""
        phys = event.get("phys")
        return cls(
            test=str(event["test"]),
            pass_no=int(event["pass"]),
            virt=int(str(event["virt"]), 16),
            phys=int(str(phys), 16) if phys else None,
            expected=int(str(event["expected"]), 16),
            observed=int(str(event["observed"]), 16),
            reread=int(str(event.get("reread", event["observed"])), 16),
            cpu=int(event.get("cpu", -1)),
            after_s=float(event.get("after_s", 0.0)),
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "test": self.test,
            "pass": self.pass_no,
            "virt": f"{self.virt:#x}",
            "phys": None if self.phys is None else f"{self.phys:#x}",
            "expected": f"{self.expected:#018x}",
            "observed": f"{self.observed:#018x}",
            "reread": f"{self.reread:#018x}",
            "xor": f"{self.expected ^ self.observed:#018x}",
            "bits": list(self.bits),
            "cpu": self.cpu,
            "after_s": self.after_s,
        }


@dataclass
class WeakCell:
    address: int  # the word's physical address, or its virtual one when `physical` is False
    physical: bool
    bit: int
    hits: int = 0
    tests: List[str] = field(default_factory=list)
    passes: List[int] = field(default_factory=list)
    cpus: List[int] = field(default_factory=list)
    virt: int = 0
    first_s: float = 0.0
    last_s: float = 0.0
    to_one: int = 0  # read 1 where 0 was written
    to_zero: int = 0
    held: int = 0  # errors whose re-read from DRAM still showed the wrong value

    def add(self, error: MemError) -> None:
        if self.hits == 0:
            self.first_s = error.after_s
            self.virt = error.virt
        self.hits += 1
        self.last_s = max(self.last_s, error.after_s)
        if error.test not in self.tests:
            self.tests.append(error.test)
        if error.pass_no not in self.passes:
            self.passes.append(error.pass_no)
        if error.cpu not in self.cpus:
            self.cpus.append(error.cpu)
        if error.observed >> self.bit & 1:
            self.to_one += 1
        else:
            self.to_zero += 1
        if error.reread == error.observed:
            self.held += 1

    def to_dict(self) -> Dict[str, Any]:
        return {
            "address": f"{self.address:#x}",
            "address_kind": "physical" if self.physical else "virtual",
            "virt": f"{self.virt:#x}",
            "bit": self.bit,
            "hits": self.hits,
            "tests": self.tests,
            "passes": self.passes,
            "cpus": self.cpus,
            "first_s": round(self.first_s, 6),
            "last_s": round(self.last_s, 6),
            "flips_to_one": self.to_one,
            "flips_to_zero": self.to_zero,
            "held_on_reread": self.held,
        }


def aggregate(errors: Iterable[MemError]) -> List[WeakCell]:
    """One WeakCell per (address, bit), most hits first, then earliest."""
    cells: Dict[Tuple[bool, int, int], WeakCell] = {}
    for error in errors:
        physical = error.phys is not None
        address = error.phys if error.phys is not None else error.virt
        for bit in error.bits:
            key = (physical, address, bit)
            if key not in cells:
                cells[key] = WeakCell(address, physical, bit)
            cells[key].add(error)
    return sorted(cells.values(), key=lambda c: (-c.hits, c.first_s, c.address, c.bit))
