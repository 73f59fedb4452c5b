"""cpu-integrity: name the logical CPU that computes wrong, with the instruction family and seed.

The native probe (native/cpu_integrity.c) pins one worker per logical CPU and runs seeded
kernel families against golden answers computed on two CPUs; here its evidence gets its
meaning. Each failure says where (CPU, package/core/thread from sysfs), what (family and
instruction set, expected vs observed word and the differing bits), when (seconds into the
run) and how it localised: re-run on the same CPU and on another, a failure that
reproduces only on its CPU is that core's; one that reproduces nowhere is intermittent
(what mercurial cores often are, so it still fails the run); one that reproduces
everywhere is not one core's fault. A clean run says how many checked executions each CPU
made per family; a family this CPU lacks is listed as not run, never as passed, and a pass
needs every selected CPU to have run every family that runs here.

Selftest: injectors/register_flip.py stops the worker pinned to the highest allowed CPU
with ptrace inside one family's code and flips one bit of the XMM or general register that
code reads next; the failure must be attributed to that CPU and that family. Every family
with a golden answer has such an injection (atomics has none: its check is the lock's total).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Dict, List, Optional, Set, Tuple

from shakeout.errors import UsageError
from shakeout.injectors.register_flip import RegisterFlipper
from shakeout.probespec import Injection, Needs, ProbeSpec
from shakeout.results import ProbeResult

FAMILIES = ("fma", "intmul", "aes", "sha", "crc32", "clmul", "bits", "lz", "memcpy", "atomics")
MAX_CPU = 1023
MAX_SEED = (1 << 53) - 1
SELFTEST_SEED = "20210531"
DETECTING_CHECKS = ("golden", "internal", "reference", "cross-cpu", "fault", "stall")


def parse_cpu_list(text: str) -> Optional[Set[int]]:
    """'0-3,6' -> {0, 1, 2, 3, 6}; None when it is not such a list (ASCII digits only) or empty."""
    cpus: Set[int] = set()
    for part in text.split(","):
        low, sep, high = part.partition("-")
        if not _is_number(low) or (sep and not _is_number(high)):
            return None
        first, last = int(low), int(high) if sep else int(low)
        if first > last or last > MAX_CPU:
            return None
        cpus.update(range(first, last + 1))
    return cpus or None


def _is_number(text: str) -> bool:
    return 0 < len(text) <= 4 and all("0" <= c <= "9" for c in text)


def format_cpu_list(cpus: Set[int]) -> str:
    """{0, 1, 2, 5} -> '0-2,5'."""
    spans: List[List[int]] = []
    for cpu in sorted(cpus):
        if spans and spans[-1][1] == cpu - 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def allowed_cpus() -> Set[int]:
    """The CPUs this process may run on (online and in its affinity mask)."""
    return set(os.sched_getaffinity(0))


def cpus_acceptable(text: str) -> bool:
    """A CPU list of CPUs this process may run on, or a one-line UsageError saying which it may."""
    cpus = parse_cpu_list(text)
    if cpus is None or not cpus <= allowed_cpus():
        raise UsageError(
            f"--set cpus: '{text}' is not a list of CPUs this process may run on "
            f"(a list such as 0-3,6 of: {format_cpu_list(allowed_cpus())})"
        )
    return True


def kernels_acceptable(text: str) -> bool:
    names = text.split(",")
    return bool(text) and all(name in FAMILIES for name in names)


def _where(sample: Dict[str, Any]) -> str:
    return "CPU {} (package {}, core {}, thread {})".format(
        sample.get("cpu"), sample.get("package"), sample.get("core"), sample.get("thread")
    )


def localisation(sample: Dict[str, Any]) -> str:
    """What the re-tests say about whose fault it is."""
    same = sample.get("retest_same_cpu") or {}
    other = sample.get("retest_other_cpu")
    same_text = "{}/{} on CPU {}".format(same.get("reproduced", 0), same.get("runs", 0), sample.get("cpu"))
    if not same.get("runs"):
        return "not re-tested (the execution ended in a fault or a stall)"
    if other is None:
        return f"reproduced {same_text}; no other CPU to compare with"
    other_text = "{}/{} on CPU {}".format(other.get("reproduced", 0), other.get("runs", 0), other.get("cpu"))
    if same.get("reproduced") and not other.get("reproduced"):
        verdict = "this core computes wrong"
    elif not same.get("reproduced") and not other.get("reproduced"):
        verdict = "intermittent (mercurial cores often are)"
    elif other.get("reproduced"):
        verdict = "wrong on another CPU too: not this core alone"
    else:
        verdict = "inconsistent"
    return f"reproduced {same_text}, {other_text}: {verdict}"


def describe_failure(sample: Dict[str, Any]) -> str:
    """One line: where, what, expected vs observed, and the localisation."""
    what = "{} computed a wrong {} result ({}, {} check)".format(
        _where(sample), sample.get("family"), sample.get("isa"), sample.get("check")
    )
    if "expected" in sample:
        bits = sample.get("differing_bits") or []
        what += "; expected {} observed {} ({} bit(s) differ: {})".format(
            sample["expected"], sample["observed"], len(bits), ", ".join(str(b) for b in bits[:8])
        )
    if sample.get("signal"):
        what += "; signal {} inside the kernel".format(sample["signal"])
    items = f" --set items={sample['items']}" if sample.get("items") is not None else ""
    replay = "replay with --set seed={}{} --set cpus={} --set kernels={}".format(
        sample.get("seed"), items, sample.get("cpu"), sample.get("family")
    )
    return "{} after {:.3f} s; {}; {}".format(what, float(sample.get("after_s", 0.0)), localisation(sample), replay)


def _missing_executions(evidence: Dict[str, Any]) -> List[str]:
    """'CPU c: family' for every selected CPU that made no checked execution of a family run here."""
    families = list((evidence.get("families") or {}).keys())
    missing = []
    for cpu in evidence.get("cpus") or []:
        if "offline_at_s" in cpu:
            continue
        counts = cpu.get("executions") or {}
        missing += [f"CPU {cpu['cpu']}: {f}" for f in families if not counts.get(f)]
    return missing


def _clean_summary(evidence: Dict[str, Any]) -> str:
    cpus = evidence.get("cpus") or []
    total = sum(sum((c.get("executions") or {}).values()) for c in cpus)
    parts = [
        "{:,} checked kernel executions on {} CPU(s) ({}), seed {}: every result matched its golden answer".format(
            total, len(cpus), ", ".join(str(c["cpu"]) for c in cpus), evidence.get("seed")
        )
    ]
    used, asked = evidence.get("items_per_family"), evidence.get("items_requested")
    if used is not None and asked is not None and used < asked:
        parts.append(
            f"{used} of the {asked} inputs per family asked for got a golden answer in the time allowed for "
            "them (5 % of the run, at least 0.5 s); run longer for all"
        )
    not_run = evidence.get("not_run") or {}
    if not_run:
        parts.append("not run: " + "; ".join(f"{name} ({why})" for name, why in not_run.items()))
    offline = [c for c in cpus if "offline_at_s" in c]
    if offline:
        parts.append(
            "went offline during the run (not a failure): "
            + ", ".join("CPU {} at {:.1f} s".format(c["cpu"], c["offline_at_s"]) for c in offline)
        )
    return "; ".join(parts)


def interpret(result: ProbeResult) -> ProbeResult:
    evidence = dict(result.evidence)
    if result.verdict == "fail":
        samples = evidence.get("samples") or []
        described = [dict(s, diagnosis=describe_failure(s), localisation=localisation(s)) for s in samples]
        evidence["samples"] = described
        failing = sorted({s["cpu"] for s in described})
        evidence["failing_cpus"] = failing
        reason = described[0]["diagnosis"] if described else result.reason
        if len(described) > 1:
            reason += f" ({evidence.get('failures', len(described))} failures in all, on CPU(s) {failing})"
        return replace(result, evidence=evidence, reason=reason)
    if result.verdict != "pass":
        return result
    missing = _missing_executions(evidence)
    if missing:
        reason = (
            "nothing computed wrong, but some CPUs made no checked execution of some families in "
            f"{result.elapsed_s:.2f} s ({', '.join(missing[:6])}); run it longer"
        )
        return replace(result, verdict="inconclusive", reason=reason)
    evidence["summary"] = _clean_summary(evidence)
    return replace(result, evidence=evidence, reason=evidence["summary"])


def _verify_flip(family: str) -> Any:
    def verify(result: ProbeResult) -> Optional[str]:
        injector = result.evidence.get("injector") or {}
        if injector.get("errors"):
            return "the register flipper failed: " + "; ".join(injector["errors"])
        if not injector.get("caught_flip"):
            return "no flip was made before the failure (the failure is not the injected one)"
        samples = result.evidence.get("samples") or []
        if not samples:
            return "the probe failed without a failure sample"
        first = samples[0]
        if first.get("cpu") != injector.get("target_cpu"):
            return "the failure names CPU {}, the flip was on CPU {}".format(first.get("cpu"), injector["target_cpu"])
        if first.get("family") != family:
            return f"the failure names family {first.get('family')}, the flip was during {family}"
        if first.get("check") not in DETECTING_CHECKS:
            return "unexpected check {}".format(first.get("check"))
        wrong = [s for s in samples if s.get("cpu") != injector.get("target_cpu")]
        if wrong:
            return "failures reported on CPU(s) that were not touched: {}".format(sorted({s["cpu"] for s in wrong}))
        return None

    return verify


# Each family's code in the probe's executable (ELF function names; what is inlined is
# inside these): the register flipper flips only while the worker is in it. intmul's
# 128-bit divisions run in libgcc's helpers, linked into the executable.
FAMILY_FUNCTIONS: Dict[str, Tuple[str, ...]] = {
    "fma": ("fma_",),
    "intmul": ("intmul_", "__udivmodti4", "__divti3", "__udivti3", "__modti3", "__umodti3"),
    "aes": ("aes_",),
    "sha": ("sha_",),
    "crc32": ("crc_",),
    "clmul": ("clmul_",),
    "bits": ("bits_", "pdep_", "pext_"),
    "lz": ("lz_",),
    "memcpy": ("memcpy_run", "copy_non_temporal", "fill_source"),
}


def family_code(family: str) -> Any:
    """A predicate on function names: True for the family's code."""
    prefixes = FAMILY_FUNCTIONS[family]
    return lambda name: name.startswith(prefixes)


def _flip_injection(family: str, kind: str, bit: int) -> Injection:
    where = "an XMM register (NT_X86_XSTATE)" if kind == "vector" else "a general data register (NT_PRSTATUS)"
    return Injection(
        name=f"{family}-{kind}-flip",
        description=(
            f"ptrace stops the worker pinned to the highest CPU inside {family}'s code and flips bit {bit} of "
            f"{where} that the code reads next, as a mercurial core would; the failure must name that CPU and "
            "that family"
        ),
        outside=lambda: RegisterFlipper(kind, bit, functions=family_code(family)),
        options={"kernels": family, "announce": "1", "seed": SELFTEST_SEED},
        duration_s=1.5,
        # A flipped value can still go unseen (a bit a comparison ignores): the flipper flips
        # again after 50 ms. And a flipped pointer can crash the worker outside a checked
        # kernel. So a second run is allowed, and the report says which run caught it.
        attempts=2,
        verify=_verify_flip(family),
    )


def _injections() -> Tuple[Injection, ...]:
    if RegisterFlipper.available() is not None:
        return ()
    return (
        _flip_injection("fma", "vector", 40),
        _flip_injection("aes", "vector", 5),
        _flip_injection("sha", "vector", 5),
        _flip_injection("clmul", "vector", 5),
        _flip_injection("memcpy", "vector", 5),
        _flip_injection("intmul", "general", 3),
        _flip_injection("crc32", "general", 3),
        _flip_injection("bits", "general", 3),
        _flip_injection("lz", "general", 3),
    )


PROBE = ProbeSpec(
    id="cpu-integrity",
    binary="cpu_integrity",
    summary=(
        "One pinned worker per logical CPU runs seeded kernels (FMA chains, integer multiply/divide, AES-NI, "
        "SHA-NI, CRC32C, carry-less multiply, bit manipulation, LZ round trip, non-temporal memcpy, atomics "
        "under contention) against golden answers computed on two CPUs; a mismatch is re-run on its CPU and "
        "another to name the core."
    ),
    needs=Needs(os=("linux",)),
    default_duration_s=2.0,
    exposure=(
        "one kernel execution on one CPU whose output was checked against the golden answer computed on two "
        "CPUs (and its own round trip, inverse or known answer), counted by the worker after the check"
    ),
    min_exposures=100,
    checks={"cpus": cpus_acceptable, "kernels": kernels_acceptable},
    injections=_injections(),
    interpret=interpret,
)
