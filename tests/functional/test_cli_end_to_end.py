"""The commands as a user runs them (real probes, a few seconds each)."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from shakeout.binaries import injector_path
from shakeout.catalog import load_catalog
from shakeout.host import read_host
from tests.functional.helpers import run_shakeout as shakeout

pytestmark = pytest.mark.functional
HOST = read_host()
X86_AVX = HOST.arch == "x86_64" and "avx" in HOST.cpu.flags


@pytest.fixture(scope="module")
def check_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("check") / "report.json"
    proc = shakeout("check", "--duration", "2", "--format", "json", "--output", str(out))
    return proc, json.loads(out.read_text())


def test_check_verdicts_here(check_json):
    proc, report = check_json
    assert report["schema"] == "shakeout/1"
    bugs = {b["id"]: b for b in report["bugs"]}
    assert bugs["freebsd-xsave-xmm"]["verdict"] == "not-applicable"
    signal = bugs["linux-signal-vector"]
    probe = next((p for p in report["probes"] if p["id"] == "signal-vector"), None)
    if not X86_AVX:
        assert signal["verdict"] == "not-applicable", signal
    elif probe is not None and probe["verdict"] == "pass" and probe["exposures"] >= 1000:
        # every kernel this suite runs on is either fixed or, if vulnerable, shows it
        assert signal["verdict"] == "not-vulnerable", signal
        assert "exposures" in signal["reason"]
        assert probe["failure_probability_bound_95"] == pytest.approx(3 / probe["exposures"])
    else:
        assert signal["verdict"] in ("vulnerable", "unknown"), (signal, probe)
    expected_exit = 1 if any(b["verdict"] == "vulnerable" and b["kind"] == "defect" for b in report["bugs"]) else None
    if expected_exit is None:
        expected_exit = 3 if any(b["verdict"] == "unknown" for b in report["bugs"]) else 0
    assert proc.returncode == expected_exit, proc.stderr
    assert "wrote json report" in proc.stderr


def test_check_text_and_formats_to_stdout():
    proc = shakeout("check", "--duration", "1", "--format", "junit")
    root = ET.fromstring(proc.stdout)
    assert {c.get("name") for c in root.iter("testcase")} == set(load_catalog())
    proc = shakeout("check", "--duration", "1", "--format", "prometheus", "--only", "linux-signal-vector")
    assert 'shakeout_bug_status{bug="linux-signal-vector"' in proc.stdout
    proc = shakeout("check", "--duration", "1", "--only", "linux-signal-vector")
    assert "linux-signal-vector" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.skipif(not X86_AVX, reason="needs x86-64 with AVX")
def test_run_reports_progress_and_evidence():
    proc = shakeout("run", "signal-vector", "--duration", "2", "--workers", "2", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (probe,) = report["probes"]
    assert probe["verdict"] == "pass" and probe["evidence"]["workers"] == 2
    assert sorted(b["id"] for b in report["bugs"]) == ["freebsd-xsave-xmm", "linux-signal-vector"]


@pytest.mark.skipif(not X86_AVX, reason="needs x86-64 with AVX")
def test_selftest_catches_both_faults():
    # The whole selftest's plumbing through the CLI; every probe's own injections are
    # tested in its own functional tests.
    proc = shakeout("selftest", "--only", "signal-vector", "pkru-signal", "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entries = json.loads(proc.stdout)["selftest"]
    # A probe this machine cannot run (e.g. pkru-signal without protection keys) is not
    # applicable, with its reason; everything else must be clean or caught.
    applicable = [t for t in entries if not t["not_applicable"]]
    assert all(
        t["reason"].startswith("not applicable here") for t in entries if t["not_applicable"] and not t["control"]
    )
    controls = [t for t in applicable if t["control"]]
    assert controls and all(t["clean"] and t["caught"] is None for t in controls), controls  # all clean
    injected = {(t["probe"], t["injection"]): t for t in applicable if not t["control"]}
    assert all(t["caught"] for t in injected.values()), injected
    for name in ("ymm", "xmm8-15"):
        assert injected[("signal-vector", name)]["time_to_detect_s"] < 5


def test_run_exit_status_on_reproduced_corruption(tmp_path):
    """`run` exits 1 when the probe reproduced corruption (here: injected)."""
    if not X86_AVX:
        pytest.skip("needs x86-64 with AVX")
    env = dict(os.environ, LD_PRELOAD=str(injector_path("inject_sigframe")), SHAKEOUT_INJECT="ymm")
    proc = subprocess.run(
        [sys.executable, "-m", "shakeout", "run", "signal-vector", "--duration", "5", "--format", "json"],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert {b["id"]: b["verdict"] for b in report["bugs"]}["linux-signal-vector"] == "vulnerable"


def test_run_with_no_exposures_is_unknown_not_a_pass():
    # `--duration 0.0000001` once gave `pass` and exit 0 with zero exposures.
    proc = shakeout("run", "robust-futex-wakeup", "--duration", "0.0000001", "--format", "json")
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    probe = report["probes"][0]
    assert probe["verdict"] == "inconclusive" and probe["exposures"] < 30
    assert probe["failure_probability_bound_95"] is None
    assert [b["verdict"] for b in report["bugs"]] == ["unknown"]
