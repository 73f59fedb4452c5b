"""The one place that turns a finished report into its exit status, its meaning in words,
and the verdict line that ends the text output (contract: see README, Exit codes).

| code | check / vm                          | run                       | selftest                      |
| 0    | no defect is vulnerable             | the probe passed          | every fault caught, controls clean |
| 1    | a defect is vulnerable (or, with    | corruption reproduced     | a fault was missed or a       |
|      | --strict, a hazard is present)      | (a hazard probe too)      | control run failed            |
| 3    | nothing vulnerable, something unknown | skipped, broke, inconclusive | something could not run  |
`vdso`: 1 a function reaches 4 KiB below the stack pointer, 3 the analysis is incomplete or
disagrees with the measurement (no bound to vouch for), else 0.
Usage errors (2), Ctrl-C (130) and SIGTERM (143) never reach a report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Tuple

from shakeout.results import BugVerdict, RunReport

if TYPE_CHECKING:
    from shakeout.vdso import VdsoReport

OK, FOUND, UNKNOWN = 0, 1, 3


def bugs_status(verdicts: List[BugVerdict], strict: bool = False) -> Tuple[int, str]:
    """check's contract: 1 a defect vulnerable (or with --strict a hazard present), 3 unknowns, else 0."""
    vulnerable = [v.bug_id for v in verdicts if v.verdict == "vulnerable"]
    present = [v.bug_id for v in verdicts if v.verdict == "present"]
    unknown = [v.bug_id for v in verdicts if v.verdict == "unknown"]
    if vulnerable:
        return FOUND, "a defect is vulnerable: " + ", ".join(vulnerable)
    if strict and present:
        return FOUND, "a hazard is present and --strict was given: " + ", ".join(present)
    if unknown:
        return UNKNOWN, "nothing vulnerable, but some bugs could not be decided: " + ", ".join(unknown)
    return OK, "no known defect on this machine"


def vdso_status(report: VdsoReport) -> int:
    """The exit status of `shakeout vdso` (see the table above)."""
    if report.dangerous:
        return FOUND
    return UNKNOWN if report.incomplete or report.inconsistent else OK


def _run_status(report: RunReport) -> Tuple[int, str]:
    result = report.probes[0]
    if result.verdict == "pass":
        return OK, f"the probe passed ({result.exposures:,} exposures)"
    if result.verdict == "fail":
        hazard = bool(report.bugs) and all(b.kind == "hazard" for b in report.bugs)
        what = "; ".join(f"{b.bug_id} ({b.title})" for b in report.bugs)
        if not what:
            return FOUND, "the probe reproduced what it looks for: " + (result.reason or "see its evidence")
        return FOUND, ("the probe reproduced the hazard " if hazard else "the probe reproduced ") + what
    return UNKNOWN, f"the probe did not decide ({result.verdict}): {result.reason}"


def _selftest_status(report: RunReport) -> Tuple[int, str]:
    missed = [f"{s.probe_id} [{s.injection}]" for s in report.selftests if s.ran and not s.caught]
    not_run = [f"{s.probe_id} [{s.injection}]" for s in report.selftests if not s.ran and not s.not_applicable]
    if missed:
        return FOUND, "missed or failed: " + ", ".join(missed)
    if not_run:
        return UNKNOWN, "could not run here: " + ", ".join(not_run)
    skipped = sorted({s.probe_id for s in report.selftests if s.not_applicable})
    also = f" (not applicable here, so not used here either: {', '.join(skipped)})" if skipped else ""
    return OK, "every injected fault was caught and every control run was clean" + also


def settle(report: RunReport) -> RunReport:
    """Set report.exit_status and report.meaning from what the report holds."""
    if report.command == "run":
        code, meaning = _run_status(report)
    elif report.command == "selftest":
        code, meaning = _selftest_status(report)
    else:
        code, meaning = bugs_status(report.bugs, report.strict)
    report.exit_status, report.meaning = code, meaning
    return report


def _counts(verdicts: List[BugVerdict]) -> str:
    parts = []
    for verdict in ("vulnerable", "not-vulnerable", "unknown", "not-applicable"):
        n = sum(1 for v in verdicts if v.verdict == verdict)
        if n:
            parts.append(f"{n} {verdict.replace('-', ' ')}")
    return ", ".join(parts)


def verdict_line(report: RunReport) -> str:
    """One line that answers the user's question (the last line of the text output)."""
    if report.command in ("run", "selftest"):
        return f"shakeout {report.command}: {report.meaning} — exit {report.exit_status}"
    defects = [b for b in report.bugs if b.kind != "hazard"]
    hazards = [b for b in report.bugs if b.kind == "hazard"]
    vulnerable = [b for b in defects if b.verdict == "vulnerable"]
    if vulnerable:
        lines = []
        for b in vulnerable:
            fix = f" — {b.fix}" if b.fix else ""
            mitigation = f"; first mitigation: {b.mitigation}" if b.mitigation else ""
            lines.append(f"VULNERABLE: {b.bug_id}{fix}{mitigation}; see shakeout show {b.bug_id}")
        return "\n".join(lines) + f" — exit {report.exit_status}"
    present = [b.bug_id for b in hazards if b.verdict == "present"]
    parts = [f"{len(defects)} bug{'s' if len(defects) != 1 else ''} checked: {_counts(defects)}" if defects else ""]
    if present:
        parts.append(f"{len(present)} hazard{'s' if len(present) != 1 else ''} present: {', '.join(present)}")
    head = "no known defect on this machine" if report.exit_status == OK else report.meaning
    detail = "; ".join(p for p in parts if p)
    return f"shakeout: {head}{f' ({detail})' if detail else ''} — exit {report.exit_status}"
