"""From catalog entry + host facts + probe results to a verdict per bug (pure functions).

Static assessment asks whether this platform is in the range the bug can affect: OS,
architecture, CPU vendor/family/features, kernel version ranges, the compiler that built
the kernel, and known silent backports. Its answer only informs: distributions backport
fixes without changing versions, so a version in range never makes `vulnerable` on its
own, and a version outside the range never makes `not-vulnerable` where a probe exists
(vendors backport bugs too). The probe decides: a reproduced corruption is `vulnerable`; a
clean run with exposures is `not-vulnerable` with the rule-of-three bound. A probe that
could not run, broke or made too few exposures leaves the bug `unknown`, with the static
facts in the reason. Only another OS, architecture or CPU makes `not-applicable`, and only
an entry without any probe (a CPU erratum) is ruled out by static facts alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from shakeout.catalog import Affected, Bug, first_mitigation, fix_summary
from shakeout.host import Host
from shakeout.results import BugVerdict, ProbeResult

# status values of StaticAssessment
NOT_APPLICABLE = "not-applicable"  # the bug cannot concern this OS/arch/CPU at all
OUTSIDE = "outside"  # right OS/arch, but outside the affected versions/CPUs/compilers
IN_RANGE = "in-range"  # inside the affected range by everything we can see
UNDETERMINED = "undetermined"  # we could not tell (unparsable version, unknown compiler)

# A hazard is present or absent, never vulnerable (see shakeout.results.HAZARD_VERDICTS).
HAZARD_WORDS = {"vulnerable": "present", "not-vulnerable": "absent"}

ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


@dataclass(frozen=True)
class StaticAssessment:
    status: str
    reason: str
    note: str = ""  # the catalog's note for this OS, said with every verdict

    def to_dict(self) -> Dict[str, str]:
        return {"status": self.status, "reason": self.reason, "note": self.note}


def _arch(name: str) -> str:
    return ARCH_ALIASES.get(name, name)


def _platform_mismatch(affected: Affected, host: Host) -> Optional[str]:
    if host.os not in affected.os:
        return "concerns {} only; this is {}".format(", ".join(affected.os), host.os)
    if affected.arch and _arch(host.arch) not in {_arch(a) for a in affected.arch}:
        return "concerns {} only; this is {}".format(", ".join(affected.arch), host.arch)
    return None


def _cpu_outside(affected: Affected, host: Host) -> Optional[str]:
    cpu = host.cpu
    if affected.cpu_vendors and cpu.vendor not in affected.cpu_vendors:
        return "affects {} CPUs only; this CPU is {}".format(", ".join(affected.cpu_vendors), cpu.vendor)
    if affected.cpu_families and cpu.family not in affected.cpu_families:
        families = ", ".join(f"{f:#x}" for f in affected.cpu_families)
        return f"affects CPU families {families} only; this CPU is family {cpu.family}"
    missing = [f for f in affected.cpu_features if f not in cpu.flags]
    if missing:
        return "needs CPU features this CPU lacks: {}".format(", ".join(missing))
    return None


def _kernel_status(affected: Affected, host: Host) -> StaticAssessment:
    version = host.kernel_version
    if version is None:
        return StaticAssessment(UNDETERMINED, f"kernel release '{host.kernel_release}' has no version")
    ranges = " or ".join(str(r) for r in affected.kernel)
    if not any(r.contains(version) for r in affected.kernel):
        return StaticAssessment(OUTSIDE, f"kernel {version} is outside the affected versions ({ranges})")
    condition = affected.kernel_compiler
    compiler = host.kernel_compiler
    if condition:
        if compiler is None or compiler.major is None:
            return StaticAssessment(
                UNDETERMINED,
                f"kernel {version} is in the affected range ({ranges}) but /proc/version does not say which "
                f"compiler built it (only {condition.name} {condition.min_major}+ builds are affected)",
            )
        if compiler.name != condition.name or compiler.major < condition.min_major:
            return StaticAssessment(
                OUTSIDE,
                f"kernel {version} is in the affected range but was built with {compiler}; "
                f"only {condition.name} {condition.min_major}+ builds are "
                "affected",
            )
    for backport in affected.backports:
        if (
            backport.distro == "ubuntu"
            and host.ubuntu_abi is not None
            and version == backport.kernel
            and host.ubuntu_abi >= (backport.abi, backport.upload)
        ):
            return StaticAssessment(
                OUTSIDE,
                f"kernel {host.kernel_release} is Ubuntu {host.ubuntu_abi[0]}.{host.ubuntu_abi[1]}: {backport.note}",
            )
    built = f" built with {compiler}" if compiler else ""
    return StaticAssessment(
        IN_RANGE,
        f"kernel {version}{built} is in the affected range ({ranges}); distributions often backport the fix, so "
        "only the probe can tell",
    )


def assess_static(bug: Bug, host: Host) -> StaticAssessment:
    static = _assess_static(bug, host)
    note = bug.affected.os_notes.get(host.os, "")
    return StaticAssessment(static.status, static.reason, note) if note else static


def _assess_static(bug: Bug, host: Host) -> StaticAssessment:
    mismatch = _platform_mismatch(bug.affected, host)
    if mismatch:
        return StaticAssessment(NOT_APPLICABLE, mismatch)
    cpu = _cpu_outside(bug.affected, host)
    if cpu:
        return StaticAssessment(NOT_APPLICABLE, cpu)
    if bug.affected.kernel and host.os == "linux":
        return _kernel_status(bug.affected, host)
    return StaticAssessment(IN_RANGE, "this platform is of the kind the bug affects; only the probe can tell")


def _probe_summary(result: ProbeResult) -> Dict[str, Any]:
    summary: Dict[str, Any] = {
        "probe": result.name,
        "verdict": result.verdict,
        "iterations": result.iterations,
        "exposures": result.exposures,
        "elapsed_s": round(result.elapsed_s, 3),
    }
    if result.bound is not None:
        summary["failure_probability_bound_95"] = result.bound
    if result.reason:
        summary["reason"] = result.reason
    return summary


def _clean_pass_reason(result: ProbeResult) -> str:
    if result.deterministic:
        return "probe {} measured: {}".format(result.name, result.evidence.get("summary", "nothing wrong"))
    return (
        f"probe {result.name} saw no corruption in {result.exposures:,} exposures over {result.elapsed_s:.1f} s "
        "(per-exposure probability "
        "< {:.2g} at 95 % confidence)".format(result.bound or 1.0)
    )


def _why_not_decided(results: List[ProbeResult]) -> str:
    """What kept each probe from deciding, e.g. 'probe fork-cow could not run: needs root'."""
    if not results:
        return "no probe ran"
    parts = []
    for r in results:
        if r.verdict == "error":
            parts.append(f"probe {r.name} could not run properly: {r.reason}")
        elif r.verdict == "skip":
            parts.append(f"probe {r.name} could not run: {r.reason}")
        elif r.verdict == "inconclusive":
            parts.append(f"probe {r.name} was inconclusive: {r.reason}")
        else:
            parts.append(f"probe {r.name} passed, but its exposures do not open this bug's window")
    return "; ".join(parts)


def _unknown_reason(static: StaticAssessment, results: List[ProbeResult]) -> str:
    why = _why_not_decided(results)
    if static.status == OUTSIDE:
        return f"{static.reason}, but versions only inform and only a probe that ran decides: {why}"
    return f"{why}; statically: {static.reason}"


def decide(
    bug: Bug,
    static: StaticAssessment,
    results: List[ProbeResult],
    counts: Optional[Callable[[ProbeResult], bool]] = None,
) -> BugVerdict:
    """Combine the static assessment with the results of the bug's probes.

    `counts` says whether a result's exposures open this bug's window (its probe's
    declaration; default: every result counts). The rules, in order:
    1. not applicable to this OS/architecture/CPU: `not-applicable`, whatever ran;
    2. any probe reproduced the corruption: `vulnerable`;
    3. any probe broke (error, crash, deadline): `unknown`, with the breakage as evidence; a
       clean run of another probe does not override it, and versions never do;
    4. a probe whose exposures count for this bug passed: `not-vulnerable`, with its bound;
    5. the bug has no probe at all (a CPU erratum decided by model and microcode): the
       static facts rule — outside the affected range is `not-vulnerable`;
    6. anything else (skipped, inconclusive, nothing that counts): `unknown`, with both the
       static facts and why no probe decided.
    """
    counts = counts or (lambda _result: True)
    evidence: Dict[str, Any] = {"static": static.to_dict(), "probes": [_probe_summary(r) for r in results]}

    def verdict(value: str, reason: str) -> BugVerdict:
        if static.note and value != "not-applicable":
            reason += "; note: " + static.note
        if bug.kind == "hazard":
            value = HAZARD_WORDS.get(value, value)
        return BugVerdict(
            bug.id, bug.kind, bug.title, value, reason, evidence, fix_summary(bug), first_mitigation(bug), bug.meaning
        )

    if static.status == NOT_APPLICABLE:
        return verdict("not-applicable", "the bug " + static.reason)
    failed = [r for r in results if r.verdict == "fail"]
    if failed:
        first = failed[0]
        evidence["reproduced"] = first.evidence
        detail = ": " + first.reason if first.reason else ""
        what = "the behaviour" if bug.kind == "hazard" else "the corruption"
        return verdict("vulnerable", f"probe {first.name} reproduced {what}{detail}")
    broken = [r for r in results if r.verdict == "error"]
    if broken:
        evidence["broken"] = [
            {"probe": r.name, "reason": r.reason, "death_signal": r.death_signal, "stderr_tail": r.stderr_tail[-5:]}
            for r in broken
        ]
        return verdict("unknown", _unknown_reason(static, broken))
    clean = [r for r in results if r.verdict == "pass" and counts(r) and (r.exposures > 0 or r.deterministic)]
    if clean:
        best = max(clean, key=lambda r: r.exposures)
        note = "" if static.status == IN_RANGE else "; statically: " + static.reason
        return verdict("not-vulnerable", _clean_pass_reason(best) + note)
    if not bug.probes and static.status == OUTSIDE:
        return verdict("not-vulnerable", "the platform is outside what the bug can affect: " + static.reason)
    return verdict("unknown", _unknown_reason(static, results))
