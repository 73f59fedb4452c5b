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
an entry without any probe (a CPU erratum) is decided by static facts alone.

CPU errata name CPU signatures (family-model-stepping) with the microcode revision that
fixes each. Unlike a kernel version, a microcode revision is the CPU's own report, so a
signature in the table with an older revision is `affected` (decided), a newer one is
`outside`. What cannot be seen stays `undetermined`: under a hypervisor the guest sees
the hypervisor's choice of revision and no host MSR; without the kernel log we cannot tell
whether the firmware or the OS loaded the microcode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from shakeout.catalog import Affected, Bug, CpuSignature, first_mitigation, fix_summary
from shakeout.host import Host
from shakeout.results import BugVerdict, ProbeResult

# status values of StaticAssessment
NOT_APPLICABLE = "not-applicable"  # the bug cannot concern this OS/arch/CPU at all
OUTSIDE = "outside"  # right OS/arch, but outside the affected versions/CPUs/compilers
IN_RANGE = "in-range"  # inside the affected range by everything we can see
AFFECTED = "affected"  # a CPU erratum present by the CPU's own facts (signature + microcode)
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


def _signature_text(host: Host) -> str:
    cpu = host.cpu
    parts = ["-" if v is None else f"{v:02x}" for v in (cpu.family, cpu.model, cpu.stepping)]
    return "-".join(parts)


def _msr_status(affected: Affected, host: Host, why_affected: str) -> StaticAssessment:
    """Old microcode: the erratum is there unless the MSR workaround is set on every CPU."""
    workaround = affected.msr_workaround
    if workaround is None:
        return StaticAssessment(AFFECTED, why_affected)
    reading = host.msrs.get(workaround.address)
    where = f"MSR {workaround.address:#x} bit {workaround.bit} ({workaround.what})"
    if reading is None or not reading.values:
        why = reading.reason if reading else "it was not read"
        return StaticAssessment(
            UNDETERMINED,
            f"{why_affected}; the workaround {where} may be set, but {why}: run as root with the msr module",
        )
    missing = reading.cpus_without(workaround.bit)
    if not missing:
        return StaticAssessment(
            OUTSIDE, f"{why_affected}, but the workaround {where} is set on all {len(reading.values)} CPUs"
        )
    cpus = ", ".join(str(c) for c in missing)
    return StaticAssessment(AFFECTED, f"{why_affected}, and the workaround {where} is clear on CPU {cpus}")


def _firmware_status(row: CpuSignature, host: Host, revision: int) -> StaticAssessment:
    """The revision is new enough; some fixes work only when the firmware loaded it."""
    assert row.firmware_microcode is not None
    load = host.microcode_load
    firmware = load.firmware_revision
    if firmware is None:
        return StaticAssessment(
            UNDETERMINED,
            f"microcode {revision:#x} is new enough, but the vendor requires at least {row.firmware_microcode:#x} "
            f"from the firmware and how it was loaded cannot be told: {load.describe()}",
        )
    if firmware < row.firmware_microcode:
        return StaticAssessment(
            AFFECTED,
            f"microcode {revision:#x} runs, but the firmware loaded only {firmware:#x} and the OS the rest "
            f"({load.describe()}); the vendor says the fix works only when the firmware loads "
            f"{row.firmware_microcode:#x} or later: update the BIOS/UEFI",
        )
    return StaticAssessment(
        OUTSIDE, f"microcode {revision:#x} with {firmware:#x} loaded by the firmware ({load.describe()})"
    )


def _signature_status(affected: Affected, host: Host) -> StaticAssessment:
    """A CPU erratum's verdict from the table: model, then what can be seen, then microcode."""
    cpu = host.cpu
    signature = _signature_text(host)
    row = next((r for r in affected.cpu_signatures if r.matches(cpu.family, cpu.model, cpu.stepping)), None)
    if row is None:
        return StaticAssessment(NOT_APPLICABLE, f"affects other CPU models only; this CPU is {signature}")
    named = f"{signature} ({row.name})" if row.name else signature
    if row.undecided:
        return StaticAssessment(IN_RANGE, f"this CPU is {named}: {row.undecided}")
    if host.hypervisor:
        return StaticAssessment(
            UNDETERMINED,
            f"this CPU is {named}, but it runs under a hypervisor: the microcode revision the guest sees "
            f"({cpu.microcode or 'none'}) is the hypervisor's choice, the host's MSRs and SMT are hidden, and the "
            "host's firmware is out of sight; ask the host's operator for the host's revision",
        )
    if affected.needs_smt and host.smt_active is False:
        return StaticAssessment(OUTSIDE, f"this CPU is {named}, but SMT is off and the erratum needs both threads")
    revision = _parse_revision(cpu.microcode)
    if revision is None:
        return StaticAssessment(UNDETERMINED, f"this CPU is {named}, but the kernel reports no microcode revision")
    if row.fixed_microcode is None:
        return _msr_status(affected, host, f"this CPU is {named}, and no microcode fixes it")
    if revision < row.fixed_microcode:
        return _msr_status(
            affected,
            host,
            f"this CPU is {named} with microcode {revision:#x}, older than {row.fixed_microcode:#x}, the first "
            "that fixes it",
        )
    if row.firmware_microcode is not None:
        return _firmware_status(row, host, revision)
    return StaticAssessment(
        OUTSIDE, f"this CPU is {named} with microcode {revision:#x}, at or after the fix {row.fixed_microcode:#x}"
    )


def _parse_revision(text: Optional[str]) -> Optional[int]:
    try:
        return int(text, 16) if text else None
    except ValueError:
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
    if bug.affected.cpu_signatures:
        return _signature_status(bug.affected, host)
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


def _ran_note(results: List[ProbeResult]) -> str:
    """'; probe cpu-integrity: pass' for the probes that ran beside a static decision."""
    return "".join(f"; probe {r.name}: {r.verdict}" for r in results)


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
    2. any probe reproduced the corruption: `vulnerable`; so is a CPU erratum whose table
       says this CPU and microcode are `affected`, whatever a clean probe run says (a CPU
       that has not failed yet is still exposed);
    3. any probe broke (error, crash, deadline): `unknown`, with the breakage as evidence; a
       clean run of another probe does not override it, and versions never do;
    4. a CPU erratum whose deciding facts are hidden (a hypervisor, an unreadable MSR or
       kernel log) is `unknown` with what cannot be seen, even after a clean probe run;
    5. a probe whose exposures count for this bug passed: `not-vulnerable`, with its bound;
    6. the static facts rule for an entry without any probe and for a CPU erratum: outside
       the affected range (fixed microcode) is `not-vulnerable`; an entry without probes
       whose facts cannot decide is `unknown` with the reason;
    7. anything else (skipped, inconclusive, nothing that counts): `unknown`, with both the
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
    cpu_erratum = bool(bug.affected.cpu_signatures)
    if static.status == AFFECTED:
        return verdict("vulnerable", static.reason + _ran_note(results))
    broken = [r for r in results if r.verdict == "error"]
    if broken:
        evidence["broken"] = [
            {"probe": r.name, "reason": r.reason, "death_signal": r.death_signal, "stderr_tail": r.stderr_tail[-5:]}
            for r in broken
        ]
        return verdict("unknown", _unknown_reason(static, broken))
    if cpu_erratum and static.status == UNDETERMINED:
        return verdict("unknown", "the static facts cannot decide: " + static.reason + _ran_note(results))
    clean = [r for r in results if r.verdict == "pass" and counts(r) and (r.exposures > 0 or r.deterministic)]
    if clean:
        best = max(clean, key=lambda r: r.exposures)
        note = "" if static.status == IN_RANGE else "; statically: " + static.reason
        return verdict("not-vulnerable", _clean_pass_reason(best) + note)
    if (not bug.probes or cpu_erratum) and static.status == OUTSIDE:
        return verdict("not-vulnerable", "the platform is outside what the bug can affect: " + static.reason)
    if not bug.probes and static.status in (UNDETERMINED, IN_RANGE):
        return verdict("unknown", "the static facts cannot decide: " + static.reason)
    return verdict("unknown", _unknown_reason(static, results))
