"""Prometheus alert rules: valid for promtool, unit-tested by promtool, and about metrics we really export."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shakeout.fleet.units import DATA_DIR
from shakeout.report.prom import render_prometheus
from shakeout.results import BugVerdict, ProbeResult, RunReport, SelftestResult

RULES = DATA_DIR / "shakeout-alerts.yml"
RULE_TESTS = DATA_DIR / "shakeout-alerts.test.yml"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian: apt-get install prometheus)"
)


def _promtool(*args: str, cwd: Path):
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@needs_promtool
def test_promtool_check_rules():
    done = _promtool("check", "rules", RULES.name, cwd=DATA_DIR)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_test_rules(tmp_path):
    done = _promtool("test", "rules", str(RULE_TESTS), cwd=DATA_DIR)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_tests_would_catch_a_wrong_rule(tmp_path):
    shutil.copy(RULE_TESTS, tmp_path)
    (tmp_path / RULES.name).write_text(
        RULES.read_text().replace("shakeout_selftest_caught == 0", "shakeout_selftest_caught == 1")
    )
    assert _promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path).returncode != 0


def _exported_names():
    report = RunReport(
        command="selftest",
        tool_version="0",
        host={},
        started_at="2026-11-01T12:00:00+00:00",
        bugs=[BugVerdict("b", "defect", "t", "unknown", "r"), BugVerdict("h", "hazard", "t", "present", "r")],
        probes=[ProbeResult("p", "error")],
        selftests=[SelftestResult("p", "ymm", "d", caught=False, reason="")],
    )
    return set(re.findall(r"^(shakeout_\w+?)(?:\{| )", render_prometheus(report), re.M))


def test_rules_use_only_metrics_shakeout_exports():
    used = set(re.findall(r"\bshakeout_[a-z_]+", RULES.read_text())) - {"shakeout_prom"}
    assert used and used <= _exported_names(), used - _exported_names()
