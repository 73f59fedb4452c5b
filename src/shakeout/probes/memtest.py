"""memtest: a short slice of the RAM tester (native/memtest.c) for `check`, and its selftest.

In `check` it tests a modest, fixed amount of memory (CHECK_SIZE_BYTES) for the second or
two check can spare, with the tests that find weak cells fastest (moving inversions with a
random pattern, as in seed 002, and own-address). A clean slice says little — a few tens
of MiB out of the machine's RAM, one pass, at today's temperature — so its verdict says how
much was tested and points to `shakeout memtest` for a real test. It is reported as a
measurement of that memory, not with a rule-of-three bound per byte: weak cells fail by
address, heat and pattern, not as independent trials, and a bound would claim far more
than a short run shows.

Selftest: an outside writer flips bit FLIP_BIT of a word the tester announces (the memory
writer's bit-flip mode, process_vm_writev); the report must name that word's virtual
(and, as root, physical) address and the bit, and the badram line must cover it. A second
injection flips the same bit twice: one weak cell with two hits.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Optional

from shakeout.memtest.cells import MemError, aggregate
from shakeout.memtest.fencing import DEFAULT_GRANULARITY_BYTES, badram_covers, badram_mask, fence
from shakeout.memtest.sizes import MIB, human_bytes
from shakeout.probespec import Injection, Needs, ProbeSpec
from shakeout.results import ProbeResult

CHECK_SIZE_BYTES = 64 * MIB
CHECK_TESTS = "address,mov-inv-rand"
SELFTEST_SIZE_BYTES = 32 * MIB
FLIP_BIT = 17
TEST_NAMES = ("address", "walking", "mov-inv", "mov-inv-rand", "block-move", "random", "bit-fade")


def _cells(result: ProbeResult) -> List[Dict[str, Any]]:
    errors = [MemError.from_event(s) for s in result.evidence.get("samples", [])]
    return [c.to_dict() for c in aggregate(errors)]


def _clean_summary(evidence: Dict[str, Any]) -> str:
    size = int(evidence.get("size_bytes", 0))
    locked = "" if evidence.get("locked", True) else ", not locked (swapped pages were not RAM-tested)"
    return (
        f"{human_bytes(size)} of RAM{locked}, {human_bytes(int(evidence.get('bytes_verified', 0)))} verified by "
        f"{', '.join(evidence.get('tests', []))} on {evidence.get('threads', '?')} thread(s): no error. A clean "
        "short slice is weak evidence (weak cells often fail only after many passes, or hot); run "
        "'shakeout memtest' to test the memory this machine can spare"
    )


def _error_summary(cells: List[Dict[str, Any]], evidence: Dict[str, Any]) -> str:
    top = cells[0]
    more = f" and {len(cells) - 1} more" if len(cells) > 1 else ""
    return (
        f"weak cell at {top['address_kind']} {top['address']} bit {top['bit']} ({top['hits']} hit(s), caught by "
        f"{', '.join(top['tests'])}){more}; {evidence.get('errors', 0)} error(s) in "
        f"{human_bytes(int(evidence.get('size_bytes', 0)))}; run 'shakeout memtest' for all cells and the GRUB "
        "badram / memmap lines that fence them off"
    )


def interpret(result: ProbeResult) -> ProbeResult:
    evidence = dict(result.evidence)
    size, verified = int(evidence.get("size_bytes", 0)), int(evidence.get("bytes_verified", 0))
    if result.verdict == "pass" and verified < size:
        reason = (
            f"no error, but only {human_bytes(verified)} of the {human_bytes(size)} buffer was compared in "
            f"{result.elapsed_s:.2f} s (not one sweep); run it longer"
        )
        return replace(result, verdict="inconclusive", reason=reason)
    if result.verdict == "pass":
        evidence.update(deterministic=True, summary=_clean_summary(evidence))
        return replace(result, evidence=evidence)
    if result.verdict != "fail":
        return result
    cells = _cells(result)
    physical = [int(c["address"], 16) for c in cells if c["address_kind"] == "physical"]
    evidence["cells"] = cells
    evidence["fencing"] = fence(aggregate(MemError.from_event(s) for s in evidence.get("samples", []))).to_dict()
    if not physical and cells:
        evidence["fencing"]["note"] = evidence.get("physical_reason", "no physical address is known")
    return replace(result, evidence=evidence, reason=_error_summary(cells, evidence) if cells else result.reason)


def _target(result: ProbeResult) -> Optional[Dict[str, Any]]:
    targets = [t for t in result.evidence.get("targets", []) if t.get("inject") == "bit-flip"]
    return targets[0] if targets else None


def _verify_flip(result: ProbeResult, hits_wanted: int) -> Optional[str]:
    target = _target(result)
    if target is None:
        return "the tester announced no word to flip"
    cells = result.evidence.get("cells") or []
    address = target["phys"] or target["address"]
    kind = "physical" if target["phys"] else "virtual"
    cell = next((c for c in cells if int(c["address"], 16) == int(address, 16) and c["bit"] == FLIP_BIT), None)
    if cell is None:
        return f"no weak cell at the flipped {kind} address {address} bit {FLIP_BIT} (cells: {cells[:3]})"
    if cell["address_kind"] != kind or int(cell["virt"], 16) != int(target["address"], 16):
        return f"the cell's addresses {cell['virt']} / {cell['address']} are not the flipped word's {target}"
    if cell["hits"] < hits_wanted:
        return f"the flipped cell has {cell['hits']} hit(s), not the {hits_wanted} injected"
    if hits_wanted > 1 and len(cells) != 1:
        return f"{hits_wanted} flips of one bit gave {len(cells)} cells, not one"
    if target["phys"]:
        mask = badram_mask(DEFAULT_GRANULARITY_BYTES)
        blocks = [int(b["start"], 16) for b in result.evidence["fencing"]["blocks"]]
        if not any(badram_covers(b, mask, int(target["phys"], 16)) for b in blocks):
            return f"no GRUB_BADRAM pair covers the flipped physical address {target['phys']}"
    return None


def _flip_injection(name: str, flips: int, description: str) -> Injection:
    return Injection(
        name=name,
        description=description,
        write_value=1 << FLIP_BIT,
        options={"announce": str(flips), "size": str(SELFTEST_SIZE_BYTES), "tests": "address,mov-inv-rand,random"},
        duration_s=4.0,
        # Each flip must be seen before the next is made, and a sweep that overwrites a flip
        # before checking it costs a repeat: on a loaded machine two reported flips did not
        # always fit in 4 s (seen with both CPUs busy elsewhere). A second run is allowed.
        attempts=2,
        verify=lambda result: _verify_flip(result, flips),
    )


PROBE = ProbeSpec(
    id="memtest",
    binary="memtest",
    summary=(
        "A slice of the RAM tester: locked memory, one pinned thread per CPU, moving inversions with a random "
        "pattern and own-address, non-temporal stores so that every check reads DRAM."
    ),
    needs=Needs(os=("linux",)),
    default_duration_s=1.5,
    exposure=(
        "a byte of the locked buffer read back from DRAM and compared with the value written to it (counted per "
        "compared word by the tester); a clean verdict needs at least one sweep of the whole buffer"
    ),
    fixed_options={"size": str(CHECK_SIZE_BYTES), "tests": CHECK_TESTS, "allow-unlocked": "1"},
    injections=(
        _flip_injection(
            "bit-flip",
            1,
            "another process flips bit 17 of an announced buffer word (process_vm_writev); the report must name "
            "that address and bit and the badram line must cover it",
        ),
        _flip_injection(
            "bit-flip-repeat",
            2,
            "the same bit of the same word flipped twice: one weak cell with two hits",
        ),
    ),
    interpret=interpret,
)
