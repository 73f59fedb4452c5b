import json
import os
import xml.etree.ElementTree as ET

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shakeout.errors import ShakeoutError, UsageError
from shakeout.report import FORMATS, check_format, write_atomically
from shakeout.results import BugVerdict, ProbeResult, RunReport, SelftestResult


def sample_report(command="check"):
    report = RunReport(
        command=command,
        tool_version="0",
        host={"kernel_release": "6.1.0", "cpu": {}},
        started_at="2026-01-01T00:00:00+00:00",
        elapsed_s=3.0,
    )
    report.bugs = [
        BugVerdict("linux-signal-vector", "defect", "t", "vulnerable", "probe reproduced it", {"probes": []}),
        BugVerdict("freebsd-xsave-xmm", "defect", "t", "not-applicable", "freebsd only", {}),
        BugVerdict("other", "defect", "t", "not-vulnerable", "clean", {}),
    ]
    report.probes = [
        ProbeResult("signal-vector", "fail", 10, 300, 0.5, {"signals_per_s": 600.0}, {"samples": []}, "ymm0"),
        ProbeResult("other", "pass", 10, 1000, 1.0),
    ]
    if command == "selftest":
        report.selftests = [SelftestResult("signal-vector", "ymm", "d", True, "caught", 0.002)]
    return report


def test_json_shape():
    data = json.loads(FORMATS["json"](sample_report()))
    assert data["schema"] == "shakeout/1"
    assert {"host", "bugs", "probes"} <= set(data)
    assert set(data["bugs"][0]) >= {"id", "verdict", "reason", "evidence"}
    assert set(data["probes"][0]) >= {
        "id",
        "verdict",
        "iterations",
        "exposures",
        "elapsed_s",
        "metrics",
        "evidence",
    }
    assert data["probes"][1]["failure_probability_bound_95"] == pytest.approx(0.003)


def test_junit_one_testcase_per_bug():
    root = ET.fromstring(FORMATS["junit"](sample_report()))
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["linux-signal-vector", "freebsd-xsave-xmm", "other"]
    assert cases[0].find("failure") is not None
    assert cases[1].find("skipped") is not None
    assert cases[2].find("failure") is None and cases[2].find("skipped") is None
    assert root.find("testsuite").get("failures") == "1"


def test_junit_selftest_cases():
    root = ET.fromstring(FORMATS["junit"](sample_report("selftest")))
    assert "signal-vector [ymm]" in [c.get("name") for c in root.findall(".//testcase")]


def test_prometheus_state_sets():
    families = {f.name: f for f in text_string_to_metric_families(FORMATS["prometheus"](sample_report()))}
    status = {(s.labels["bug"], s.labels["verdict"]): s.value for s in families["shakeout_bug_status"].samples}
    assert status[("linux-signal-vector", "vulnerable")] == 1
    assert status[("linux-signal-vector", "not-vulnerable")] == 0
    bound = families["shakeout_probe_failure_probability_bound"].samples
    assert [(s.labels["probe"], s.value) for s in bound] == [("other", pytest.approx(0.003))]
    metric = families["shakeout_probe_metric"].samples[0]
    assert metric.labels == {"probe": "signal-vector", "metric": "signals_per_s"}


def test_text_mentions_every_bug():
    text = FORMATS["text"](sample_report())
    for name in ("linux-signal-vector", "freebsd-xsave-xmm", "vulnerable", "signal-vector"):
        assert name in text


def test_bad_format():
    with pytest.raises(UsageError, match="unknown format 'yaml'"):
        check_format("yaml")


def test_atomic_write_replaces_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    write_atomically(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.json"]


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        write_atomically(tmp_path / "nope" / "out.json", "x")
    assert os.listdir(tmp_path) == []


def test_write_onto_directory(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        write_atomically(tmp_path, "x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ShakeoutError, match="cannot write"):
        write_atomically(locked / "out.json", "x")


def _hazard_report(strict=False):
    report = sample_report()
    report.bugs = [BugVerdict("robust-futex-reuse", "hazard", "t", "present", "kernel rewrote", {"probes": []})]
    report.strict = strict
    report.hostname = "node-7"
    return report


def test_a_present_hazard_is_no_junit_failure_unless_strict():
    # Seen: JUnit recorded a failure for robust-futex-reuse on every Linux machine.
    root = ET.fromstring(FORMATS["junit"](_hazard_report()))
    assert root.find("testsuite").get("failures") == "0"
    assert root.find("testsuite").get("hostname") == "node-7"  # the host name, not the kernel release
    strict = ET.fromstring(FORMATS["junit"](_hazard_report(strict=True)))
    assert strict.find("testsuite").get("failures") == "1"


def test_hazards_have_their_own_prometheus_metric():
    # Seen: `verdict="vulnerable"} 1` exported on every host, so an alert on it fired fleet-wide.
    text = FORMATS["prometheus"](_hazard_report())
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert not [s for s in samples if s.name == "shakeout_bug_status" and s.value == 1]
    present = [s for s in samples if s.name == "shakeout_hazard_status" and s.value == 1]
    assert [(s.labels["hazard"], s.labels["state"]) for s in present] == [("robust-futex-reuse", "present")]


def test_text_at_80_columns_wraps_everything_and_cuts_nothing_silently():
    from rich.console import Console

    from shakeout.report.text import render_report

    report = sample_report()
    long_reason = " ".join(f"word{i}" for i in range(120))
    report.bugs[0].reason = long_reason
    report.probes[0].evidence = {"blob": "x" * 2000}
    for width in (80, 200):
        out = __import__("io").StringIO()
        render_report(report, Console(file=out, width=width, color_system=None, highlight=False))
        text = out.getvalue()
        assert max(len(line) for line in text.splitlines()) <= width
        flat = " ".join(text.translate({ord(c): " " for c in "│┃┆"}).split())  # table borders aside
        assert long_reason in flat, f"reason cut at {width} columns"
        assert "--format json has all of it" in flat
