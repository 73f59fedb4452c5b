"""JUnit XML: one testcase per bug (failure = a vulnerable defect, or with --strict a present
hazard; skipped = not-applicable/unknown), and one per injection in `selftest`."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from typing import Any, List, Tuple

from shakeout.results import RunReport

SKIPPED = ("not-applicable", "unknown")
Case = Tuple[str, str, float, str, str, Any]  # classname, name, time, outcome, message, detail


def _cases(report: RunReport) -> List[Case]:
    cases: List[Case] = []
    for bug in report.bugs:
        # a present hazard is documented behaviour, not a failure of this machine (unless --strict)
        failing = {"vulnerable", "present"} if report.strict else {"vulnerable"}
        outcome = "failure" if bug.verdict in failing else ("skipped" if bug.verdict in SKIPPED else "pass")
        elapsed = sum(p.get("elapsed_s", 0.0) for p in bug.evidence.get("probes", []))
        cases.append(("shakeout.bugs", bug.bug_id, elapsed, outcome, bug.verdict + ": " + bug.reason, bug.evidence))
    if report.command == "selftest":
        for s in report.selftests:
            outcome = "failure" if s.ran and not s.caught else ("pass" if s.caught else "skipped")
            cases.append(
                (
                    "shakeout.selftest",
                    f"{s.probe_id} [{s.injection}]",
                    s.time_to_detect_s or 0.0,
                    outcome,
                    s.reason,
                    s.to_dict(),
                )
            )
    return cases


def render_junit(report: RunReport) -> str:
    cases = _cases(report)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="shakeout " + report.command,
        tests=str(len(cases)),
        failures=str(sum(1 for c in cases if c[3] == "failure")),
        skipped=str(sum(1 for c in cases if c[3] == "skipped")),
        errors="0",
        time=f"{report.elapsed_s:.3f}",
        timestamp=report.started_at,
        hostname=report.hostname,
    )
    for classname, name, elapsed, outcome, message, detail in cases:
        case = ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{elapsed:.3f}")
        if outcome == "failure":
            ET.SubElement(case, "failure", message=message, type="vulnerable").text = json.dumps(detail, indent=2)
        elif outcome == "skipped":
            ET.SubElement(case, "skipped", message=message)
        ET.SubElement(case, "system-out").text = message
    if sys.version_info >= (3, 9):
        ET.indent(suites)  # novermin (guarded: 3.8 gets unindented XML)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
