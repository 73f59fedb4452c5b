"""fork-cow: right after fork(), a multi-threaded parent must read back what it stored.

The native probe (native/fork_cow.c) stores values that encode their iteration and phase
(`0x434f57` tag, iteration, bit 0: 0 before the fork, 1 after), so a wrong read names
where it came from: the value stored before *this* fork is the NetBSD PR 56535 symptom;
a value of another iteration or a foreign value means something else wrote the word.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, Optional

from shakeout.host import Host
from shakeout.probes.base import Injection, Needs, ProbeOption, ProbeSpec, integer_in
from shakeout.results import ProbeResult

VALUE_TAG = 0x434F57
ITERATION_MASK = (1 << 39) - 1
# What the selftest writes into the checked word from outside: "iteration 0, before fork".
INJECTED_VALUE = VALUE_TAG << 40


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


def _verify(result: ProbeResult) -> Optional[str]:
    samples = result.evidence.get("samples") or []
    if not samples:
        return "the probe failed without a sample"
    if int(samples[0]["observed"], 16) != INJECTED_VALUE:
        return "observed {} is not the injected value {:#018x}".format(samples[0]["observed"], INJECTED_VALUE)
    targets = {(t["pid"], t["address"]) for t in result.evidence.get("targets", [])}
    if (samples[0]["pid"], samples[0]["address"]) not in targets:
        return "the failing word {} in pid {} is not one the probe announced".format(
            samples[0]["address"], samples[0]["pid"]
        )
    return None


def _default_workers(host: Host) -> int:
    return max(1, host.cpus // 2)


def _injection(mode: str) -> Injection:
    return Injection(
        name=mode,
        description="another process writes a stale value into the checked word (process_vm_writev)",
        write_value=INJECTED_VALUE,
        options={"mode": mode},
        verify=_verify,
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
    default_workers=None,  # the probe sizes itself: enough instances to keep every CPU busy
    options=(
        ProbeOption(
            "mode", "stale-read (the PR's reproducer) or tlb (the three-thread variant)", ("stale-read", "tlb")
        ),
        ProbeOption(
            "writer-spin",
            "spin loops between the writer's stores (stale-read; default 40000)",
            check=integer_in(0, 100_000_000),
        ),
        ProbeOption(
            "max-children", "forked children outstanding before the loop waits (default 16)", check=integer_in(1, 4096)
        ),
        ProbeOption(
            "reader-gap",
            "spin loops between the tlb reader's two reads (default 200)",
            check=integer_in(0, 100_000_000),
        ),
    ),
    injections=(_injection("stale-read"), _injection("tlb")),
    interpret=interpret,
)
