"""fork-cow: right after fork(), a multi-threaded parent must read back what it stored.

The native probe (native/fork_cow.c) stores values that encode their iteration and phase
(`0x434f57` tag, iteration, bit 0: 0 before the fork, 1 after), so a wrong read names
where it came from: the value stored before *this* fork is the NetBSD PR 56535 symptom;
a value of another iteration or a foreign value means something else wrote the word.

Selftest injections reach each check: "immediate" and "end" have an outside writer store
into the word inside a window the probe opens at that point (once, after 1,000 forks);
"tlb" has it store continuously while the reader reads twice under the lock. The injected
value is one the probe never stores (its tag is not 0x434f57).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Dict, Optional

from shakeout.probespec import Injection, Needs, ProbeSpec
from shakeout.results import ProbeResult

VALUE_TAG = 0x434F57
ITERATION_MASK = (1 << 39) - 1
# What the selftest writes into the checked word from outside: "INJECTED", not a value the
# probe stores (every one of those carries VALUE_TAG in its top 24 bits).
INJECTED_VALUE = 0x494E4A4543544544
CHECKS = {"immediate": "immediate", "end": "end of iteration", "tlb": "two reads under the lock"}


def describe_value(value: int, iteration: int) -> str:
    """What a 64-bit value read from the checked word is."""
    if value >> 40 != VALUE_TAG:
        return "a foreign value (not one the probe stores)"
    it = (value >> 1) & ITERATION_MASK
    phase = "before" if value & 1 == 0 else "after"
    if it == iteration and phase == "before":
        return "the value stored before this fork (a stale read)"
    return f"the value stored {phase} the fork of iteration {it}"


def _describe_sample(sample: Dict[str, Any], mode: str) -> str:
    observed = int(sample["observed"], 16)
    if mode == "tlb":
        return "two reads under the lock returned {} then {} (re-read {}) at {} in pid {}".format(
            sample["expected"], sample["observed"], sample["reread"], sample["address"], sample["pid"]
        )
    return "stored {}, read back ({}) {}: {}; re-read {}; iteration {}, address {}, pid {}, CPU {}".format(
        sample["expected"],
        sample.get("check", "immediate"),
        sample["observed"],
        describe_value(observed, int(sample["iteration"])),
        sample["reread"],
        sample["iteration"],
        sample["address"],
        sample["pid"],
        sample["cpu"],
    )


def interpret(result: ProbeResult) -> ProbeResult:
    samples = result.evidence.get("samples")
    if result.verdict != "fail" or not samples:
        return result
    mode = str(result.evidence.get("mode", "stale-read"))
    diagnosis = f"{mode}: {_describe_sample(samples[0], mode)}"
    return replace(result, reason=diagnosis, evidence=dict(result.evidence, diagnosis=diagnosis))


def _verify_sample(result: ProbeResult, check: str) -> Optional[str]:
    samples = result.evidence.get("samples") or []
    if not samples:
        return "the probe failed without a sample"
    sample = samples[0]
    if sample.get("check") != check:
        return "the check that fired is {!r}, not {!r}".format(sample.get("check"), check)
    if int(sample["observed"], 16) != INJECTED_VALUE:
        return "observed {} is not the injected value {:#018x}".format(sample["observed"], INJECTED_VALUE)
    targets = {(t["pid"], t["address"]) for t in result.evidence.get("targets", [])}
    if (sample["pid"], sample["address"]) not in targets:
        return "the failing word {} in pid {} is not one the probe announced".format(sample["address"], sample["pid"])
    return None


def _verify_window(check: str) -> Callable[[ProbeResult], Optional[str]]:
    def verify(result: ProbeResult) -> Optional[str]:
        ev = result.evidence
        window_iteration = int(ev.get("window_iteration", 0))
        if window_iteration < 1 or int(ev.get("forks", 0)) < window_iteration:
            return "the window did not open after forks ({} forks, window at iteration {})".format(
                ev.get("forks"), window_iteration
            )
        if int(ev.get("windows_answered", 0)) < 1:
            return "the outside writer never answered a window"
        problem = _verify_sample(result, check)
        if problem is None and int(ev["samples"][0]["iteration"]) != window_iteration:
            return "caught at iteration {}, not in the window (iteration {})".format(
                ev["samples"][0]["iteration"], window_iteration
            )
        return problem

    return verify


def _verify_tlb(result: ProbeResult) -> Optional[str]:
    return _verify_sample(result, CHECKS["tlb"])


def _window_injection(window: str) -> Injection:
    return Injection(
        name=window,
        description="another process stores into the checked word inside a window the probe opens {} "
        "(process_vm_writev): the {!r} check must catch it".format(
            "between the store after the fork and the load" if window == "immediate" else "before the final load",
            CHECKS[window],
        ),
        write_value=INJECTED_VALUE,
        options={"mode": "stale-read", "inject-window": window},
        verify=_verify_window(CHECKS[window]),
    )


PROBE = ProbeSpec(
    id="fork-cow",
    binary="fork_cow",
    summary=(
        "Raw fork() in a loop in multi-threaded processes while another thread writes the same "
        "page; every value stored right after a fork must read back unchanged."
    ),
    needs=Needs(os=("linux",), arch=("x86_64", "aarch64")),
    default_duration_s=10.0,
    exposure=(
        "a raw fork() during which the writer thread stored to the page being copied-on-write; counted by "
        "comparing the writer's store counter before and after each fork"
    ),
    min_exposures=100,
    counts_for=("bsd-fork-cow",),
    injections=(
        _window_injection("immediate"),
        _window_injection("end"),
        Injection(
            name="tlb",
            description="another process keeps storing into the tlb word (process_vm_writev): "
            "the two reads under the lock must disagree",
            write_value=INJECTED_VALUE,
            options={"mode": "tlb"},
            verify=_verify_tlb,
        ),
    ),
    interpret=interpret,
)
