"""rdrand: RDRAND/RDSEED must not return constants, all ones or zeros while signalling success.

The native probe (native/rdrand.c) executes both instructions at 16, 32 and 64 bits a fixed
number of times and judges each group by counts a random source cannot reach (see its
opening comment). No fault can be injected into an instruction from inside a process, so
the selftest proves the analysis on recorded sequences instead (`source=FILE`): the Zen 2
all-ones RDRAND and the Zen 5 RDSEED16/32 zeros, shipped in recordings/ and synthesised from
the reported behaviour (each file says how). A run with `source=` judges the file, not this
CPU, and its reason says so.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from shakeout.inputs import MIB, check_input_file
from shakeout.probespec import Injection, Needs, ProbeSpec
from shakeout.results import ProbeResult

RECORDINGS = Path(__file__).resolve().parent / "recordings"
ZEN2_ALL_ONES = RECORDINGS / "zen2-rdrand-all-ones.txt"
ZEN5_RDSEED_ZEROS = RECORDINGS / "zen5-rdseed-zeros.txt"
SOURCE_CAP_BYTES = 64 * MIB  # the native probe refuses larger files too


def _readable_source(value: str) -> bool:
    """A regular file within the cap, or a one-line UsageError naming what it is."""
    check_input_file(Path(value), "recorded RDRAND/RDSEED draws", SOURCE_CAP_BYTES)
    return True


def _groups(result: ProbeResult) -> Dict[str, Dict[str, Any]]:
    return {f"{g['insn']}{g['width']}": g for g in result.evidence.get("groups", []) if isinstance(g, dict)}


def interpret(result: ProbeResult) -> ProbeResult:
    """Says whose draws were judged: a recorded file's verdict is not this CPU's."""
    source = result.evidence.get("source")
    if not source or source == "cpu" or result.verdict not in ("pass", "fail"):
        return result
    reason = f"judged the recorded draws in {source}, not this CPU: {result.reason}"
    return replace(result, reason=reason)


def _verify(flagged: List[str], clean: List[str], needle: str, source: Path) -> Callable[[ProbeResult], Optional[str]]:
    def verify(result: ProbeResult) -> Optional[str]:
        if result.evidence.get("source") != str(source):
            return "the probe judged {!r}, not the recording {}".format(result.evidence.get("source"), source)
        groups = _groups(result)
        for name in flagged:
            findings = str(groups.get(name, {}).get("findings", ""))
            if needle not in findings:
                return f"{name} was not flagged for {needle!r} (findings: {findings or 'none'})"
        for name in clean:
            if name not in groups or groups[name].get("findings"):
                return f"{name} should be analysed and clean, got {groups.get(name)}"
        return None

    return verify


PROBE = ProbeSpec(
    id="rdrand",
    binary="rdrand",
    summary=(
        "RDRAND and RDSEED at 16, 32 and 64 bits, 4,096 attempts each: no group may be constant or return "
        "zeros, all ones or repeats more often than a random source can (p < 1e-9)."
    ),
    needs=Needs(os=("linux",), arch=("x86_64",)),
    default_duration_s=2.0,
    exposure="a successful draw (CF=1) examined",
    min_exposures=64,
    checks={"source": _readable_source},
    injections=(
        Injection(
            name="zen2-all-ones",
            description="recorded draws of AMD Zen 2's RDRAND before its firmware fix (all ones, CF=1): the "
            "constant check must flag RDRAND32 and RDRAND64",
            options={"source": str(ZEN2_ALL_ONES)},
            verify=_verify(["rdrand32", "rdrand64"], [], "returned 0xffff", ZEN2_ALL_ONES),
        ),
        Injection(
            name="zen5-rdseed-zeros",
            description="recorded draws of AMD Zen 5's RDSEED (12.5 % zeros with CF=1 at 16/32 bits, 64 bits "
            "sound): the zero count must flag RDSEED16 and RDSEED32 and pass RDSEED64",
            options={"source": str(ZEN5_RDSEED_ZEROS)},
            verify=_verify(["rdseed16", "rdseed32"], ["rdseed64"], "zeros with CF=1", ZEN5_RDSEED_ZEROS),
        ),
    ),
    interpret=interpret,
)
