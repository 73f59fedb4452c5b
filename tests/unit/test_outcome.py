"""The verdict line and the one exit-status table."""

from shakeout.outcome import settle, verdict_line
from shakeout.results import BugVerdict, ProbeResult, RunReport, SelftestResult


def _report(command="check", bugs=(), probes=(), selftests=(), strict=False):
    report = RunReport(command, "0", {}, "now", bugs=list(bugs), probes=list(probes), selftests=list(selftests))
    report.strict = strict
    return settle(report)


def _bug(bug_id, kind, verdict, **kw):
    return BugVerdict(bug_id, kind, "t", verdict, "r", **kw)


def test_healthy_machine_reads_healthy_with_its_hazards_named():
    report = _report(
        bugs=[
            _bug("a", "defect", "not-vulnerable"),
            _bug("b", "defect", "not-applicable"),
            _bug("h", "hazard", "present"),
        ]
    )
    assert report.exit_status == 0
    assert verdict_line(report) == (
        "shakeout: no known defect on this machine (2 bugs checked: 1 not vulnerable, 1 not applicable; "
        "1 hazard present: h) — exit 0"
    )


def test_vulnerable_names_fix_mitigation_and_show():
    bug = _bug("linux-signal-vector", "defect", "vulnerable", fix="fixed in 5.3.15 / 5.4.2 (59c4bd853abc)",
               mitigation="Run a fixed kernel: upgrade")  # fmt: skip
    report = _report(bugs=[bug])
    assert report.exit_status == 1
    line = verdict_line(report)
    assert line.startswith("VULNERABLE: linux-signal-vector — fixed in 5.3.15 / 5.4.2 (59c4bd853abc)")
    assert "first mitigation: Run a fixed kernel" in line and "see shakeout show linux-signal-vector" in line


def test_unknown_says_which_and_exits_3():
    report = _report(bugs=[_bug("a", "defect", "unknown"), _bug("h", "hazard", "present")])
    assert report.exit_status == 3 and "could not be decided: a" in verdict_line(report)
    assert _report(bugs=[_bug("h", "hazard", "present")], strict=True).exit_status == 1


def test_run_and_selftest_outcomes():
    assert _report("run", probes=[ProbeResult("p", "inconclusive", reason="few")]).exit_status == 3
    assert _report("run", probes=[ProbeResult("p", "pass", exposures=5)]).exit_status == 0
    control = SelftestResult("p", "control", "", caught=True, reason="", control=True)
    missed = SelftestResult("p", "x", "", caught=False, reason="")
    assert _report("selftest", selftests=[control]).exit_status == 0
    assert _report("selftest", selftests=[control, missed]).exit_status == 1


def test_json_carries_overall_and_hostname():
    report = _report(bugs=[_bug("a", "defect", "not-vulnerable")])
    doc = report.to_dict()
    assert doc["overall"] == {"exit_status": 0, "meaning": "no known defect on this machine"}
    assert "hostname" in doc and doc["schema"] == "shakeout/1"
