"""pkru-signal: the protection-key register (PKRU) must survive signal delivery and sigreturn.

The native probe (native/pkru.c) writes a PKRU value no kernel chooses, takes synchronous
signals (half of them onto a released alternate stack) and asynchronous ones, and checks
the frame's PKRU component, PKRU after every return, and the XSAVE init state after a
sigreturn and a context switch. Machines without protection keys (CPUID PKU/OSPKE) skip
with the reason; `shakeout vm` runs it in a guest (QEMU's TCG `-cpu max` emulates them).
Here the evidence gets its meaning: which check fired and what the observed value says.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from shakeout.probespec import Injection, Needs, ProbeSpec
from shakeout.results import ProbeResult

DEFAULT_PKRU = 0x55555554  # Linux's init_pkru_value: every key but 0 access-disabled

MEANINGS = {
    "pkru-in-frame": "the signal frame does not carry the thread's PKRU with its XSTATE_BV bit set",
    "pkru-in-frame-async": "an asynchronous signal's frame does not carry the thread's PKRU with its XSTATE_BV bit",
    "pkru-after-return": "sigreturn restored a different PKRU",
    "pkru-after-async-signal": "PKRU changed across an asynchronous signal",
    "pkru-init-after-sigreturn": "a frame with XSTATE_BV[PKRU]=0 did not give the hardware init value 0",
    "pkru-init-after-context-switch": "PKRU in its init state (0) changed when the thread was switched out",
}


def observed_meaning(observed: int) -> str:
    if observed == 0:
        return "0: the init value, every key open (the 6.12 AMD signature when it follows a signal)"
    if observed == DEFAULT_PKRU:
        return "0x55555554: the kernel's default (the 510b80a6a0f1 signature after a context switch)"
    return f"{observed:#010x}: neither 0 nor the kernel's default"


def interpret(result: ProbeResult) -> ProbeResult:
    """Name what the failing check means and what the observed value is."""
    check = result.evidence.get("check")
    if result.verdict != "fail" or check not in MEANINGS:
        return result
    observed = int(str(result.evidence.get("observed", "0")), 16)
    diagnosis = f"{MEANINGS[str(check)]}; observed {observed_meaning(observed)}"
    return replace(result, evidence=dict(result.evidence, diagnosis=diagnosis), reason=f"{result.reason}: {diagnosis}")


def verify_cleared_bit_caught(result: ProbeResult) -> Optional[str]:
    """The injected frame (PKRU value kept, XSTATE_BV[PKRU] cleared) must come back as PKRU 0."""
    ev = result.evidence
    if ev.get("check") != "pkru-after-return":
        return "expected the pkru-after-return check to fire, the evidence names {}".format(ev.get("check"))
    if int(str(ev.get("observed", "1")), 16) != 0:
        return "expected PKRU 0 (XRSTOR's init value) after the injected frame, observed {}".format(ev.get("observed"))
    if not int(ev.get("injected_frames", 0)):
        return "the probe failed without an injected frame"
    return None


PROBE = ProbeSpec(
    id="pkru-signal",
    binary="pkru",
    summary=(
        "PKRU set to a distinctive value across synchronous, asynchronous and released-altstack signals: the frame's "
        "PKRU, PKRU after every return, and the init state after sigreturn and a context switch."
    ),
    needs=Needs(os=("linux",), arch=("x86_64",)),
    default_duration_s=1.0,
    exposure=(
        "a signal delivered while PKRU holds the probe's value: its frame must carry PKRU with XSTATE_BV[PKRU] set "
        "(the 6.12 AMD bug wrote the bit as 0) and sigreturn must restore it; counted per synchronous and "
        "asynchronous signal by the probe"
    ),
    min_exposures=100,
    counts_for=("linux-pkru-signal-amd", "linux-pkru-init-state"),
    injections=(
        Injection(
            name="clear-xstate-bv",
            description=(
                "every 50th synchronous frame gets XSTATE_BV[PKRU] cleared with the PKRU value left in place, the "
                "frame the 6.12 AMD kernel wrote: sigreturn's XRSTOR loads 0"
            ),
            options={"inject": "clear-xstate-bv"},
            duration_s=2.0,
            verify=verify_cleared_bit_caught,
        ),
    ),
    interpret=interpret,
)
