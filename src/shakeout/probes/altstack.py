"""altstack-overflow and altstack-size: signal frames against the alternate stack's size.

One native binary (native/altstack.c) in two modes. altstack-overflow delivers a signal
onto a MINSIGSTKSZ (2048-byte) alternate stack with guard words below it: a kernel
without 2beb4a53fc3f writes the frame over them (CVE-2021-47326), a fixed one delivers
SIGSEGV. altstack-size measures the frame this machine's signals need (and with AMX tiles
in use) beside the MINSIGSTKSZ/SIGSTKSZ constants and AT_MINSIGSTKSZ: the hazard of
programs that size their signal stacks with the constants.

Both are measurements: the same frame is written every time, so one signal decides and
no statistical bound applies. Here the evidence gets a one-line statement of the sizes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, Optional

from shakeout.probespec import Injection, Needs, ProbeSpec
from shakeout.results import ProbeResult

MINSIGSTKSZ = 2048  # x86 <asm/signal.h>
# Below the stack, a frame written past a MINSIGSTKSZ stack lands within this many bytes of
# frame - stack (the frame's top is aligned down to 16 bytes; a 64-byte XSAVE alignment).
FRAME_ALIGNMENT_SLACK = 64


def sizes_line(evidence: Dict[str, Any]) -> str:
    """'frame 3,336 B (11,528 B with AMX tiles); AT_MINSIGSTKSZ 11,952 B; MINSIGSTKSZ 2,048 B; SIGSTKSZ 8,192 B'."""
    frame = int(evidence.get("frame_bytes", 0))
    amx = f" ({int(evidence['frame_bytes_amx']):,} B with AMX tiles)" if evidence.get("amx") else ""
    at_min = int(evidence.get("at_minsigstksz", 0))
    auxv = f"{at_min:,} B" if at_min else "not given by this kernel (before 5.14)"
    return "frame {:,} B{}; AT_MINSIGSTKSZ {}; MINSIGSTKSZ {:,} B; SIGSTKSZ {:,} B".format(
        frame,
        amx,
        auxv,
        int(evidence.get("minsigstksz_constant", MINSIGSTKSZ)),
        int(evidence.get("sigstksz_constant", 8192)),
    )


def interpret(result: ProbeResult) -> ProbeResult:
    """State the sizes once, in the evidence and in a skip's or pass's reason."""
    if "frame_bytes" not in result.evidence:
        return result
    sizes = sizes_line(result.evidence)
    evidence = dict(result.evidence, sizes=sizes)
    reason = result.reason or ("sizes: " + sizes if result.verdict == "pass" else "")
    return replace(result, evidence=evidence, reason=reason)


def verify_overflow_caught(result: ProbeResult) -> Optional[str]:
    """The guard words must have changed exactly where a frame too big for 2048 bytes goes:
    from (frame - 2048) bytes below the stack's base up to it; the AT_MINSIGSTKSZ stack
    in the same run must stay clean."""
    ev = result.evidence
    if ev.get("check") != "guard-words":
        return "expected the guard-words check to fire, the evidence names {}".format(ev.get("check"))
    run = ev.get("minsigstksz") or {}
    if run.get("outcome") != "delivered":
        return "the MINSIGSTKSZ signal was not delivered (outcome {})".format(run.get("outcome"))
    overflow = int(ev.get("frame_bytes", 0)) - MINSIGSTKSZ
    lowest = int(run.get("lowest_changed_below_base", 0))
    if not overflow - FRAME_ALIGNMENT_SLACK <= lowest <= overflow:
        return f"guard bytes changed down to {lowest} bytes below the stack; the frame overflows it by {overflow}"
    control = ev.get("at_minsigstksz_stack")
    if control and int(control.get("guard_bytes_changed", 0)):
        return "the AT_MINSIGSTKSZ-sized stack, big enough for the frame, had its guard words changed too"
    return None


OVERFLOW = ProbeSpec(
    id="altstack-overflow",
    binary="altstack",
    summary=(
        "A signal onto a MINSIGSTKSZ (2048-byte) alternate stack with AVX-512 state live and guard words below it: "
        "does the kernel write the frame below the stack (CVE-2021-47326) or refuse with SIGSEGV?"
    ),
    needs=Needs(os=("linux",), arch=("x86_64",)),
    default_duration_s=1.0,
    fixed_options={"mode": "overflow"},
    exposure=(
        "a signal delivered onto an alternate stack smaller than the frame the kernel needs (measured first on a "
        "64 KiB stack: top minus the handler's ucontext minus 8): the frame either lands below the stack or is "
        "refused; a measurement, one decides"
    ),
    counts_for=("linux-altstack-overflow",),
    injections=(
        Injection(
            name="altstack-lower",
            description=(
                "sigaltstack() registers the same stack top with its base lowered by 32 KiB, so the fixed kernel's "
                "check passes and its frame lands on the guard words, where an unchecked kernel writes it"
            ),
            preload="inject_altstack",
            env={"SHAKEOUT_INJECT": "altstack-lower", "SHAKEOUT_INJECT_LOWER_BYTES": "32768"},
            duration_s=1.0,
            verify=verify_overflow_caught,
        ),
    ),
    interpret=interpret,
)

SIZE = ProbeSpec(
    id="altstack-size",
    binary="altstack",
    summary=(
        "The signal frame this machine needs (measured, also with AMX tiles in use) against the MINSIGSTKSZ and "
        "SIGSTKSZ constants and the kernel's AT_MINSIGSTKSZ."
    ),
    needs=Needs(os=("linux",), arch=("x86_64",)),
    default_duration_s=1.0,
    fixed_options={"mode": "size"},
    # The positive is this machine's own frame size: there is no clean control, and the
    # measurement it shares with altstack-overflow is proven by that probe's injection
    # (the frame lands exactly frame - 2048 bytes below a 2048-byte stack).
    selftest_control=False,
    exposure="one signal frame measured on a 64 KiB alternate stack (a measurement, no bound)",
    counts_for=("altstack-minsigstksz-hazard",),
    interpret=interpret,
)

PROBES = (OVERFLOW, SIZE)
