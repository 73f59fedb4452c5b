"""The real altstack probes on this machine, the injected overflow caught, and hostile runs."""

import json
import os
import subprocess
import sys

import pytest

from shakeout.binaries import binary_path
from shakeout.engine import run_injection
from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.runner import ProbeRun, injection_env, run_probe
from tests.functional.helpers import probe_pids, run_probe_binary, wait_until

HOST = read_host()
OVERFLOW = get_probe("altstack-overflow")
SIZE = get_probe("altstack-size")
AVX512 = "avx512f" in HOST.cpu.flags
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(HOST.arch != "x86_64", reason="the signal frame sizes are x86's"),
]


def test_overflow_probe_on_this_kernel():
    result = run_probe(ProbeRun(OVERFLOW, 1.0), HOST)
    ev = result.evidence
    if not AVX512:
        assert result.verdict == "skip"
        assert "fits in MINSIGSTKSZ" in result.reason
        return
    assert result.verdict == "pass", result.reason  # a 5.14+ kernel refuses the overflowing frame
    assert ev["minsigstksz"]["outcome"] in ("refused-at-delivery", "refused-at-registration")
    assert ev["minsigstksz"]["guard_bytes_changed"] == 0
    assert ev["minsigstksz"]["stack_bytes_changed"] == 0  # refused before anything was written
    assert ev["frame_bytes"] > 2048
    if ev["at_minsigstksz"]:
        control = ev["at_minsigstksz_stack"]
        assert control["outcome"] == "delivered" and control["guard_bytes_changed"] == 0
    assert result.elapsed_s < 1.0
    assert "sizes" in ev and "MINSIGSTKSZ 2,048 B" in result.reason


def test_size_probe_reports_the_hazard_with_both_numbers():
    result = run_probe(ProbeRun(SIZE, 1.0), HOST)
    ev = result.evidence
    assert ev["frame_bytes"] > 500
    assert result.verdict == ("fail" if ev["frame_bytes"] > 2048 else "pass"), result.reason
    assert "MINSIGSTKSZ 2048" in result.reason and f"takes {ev['frame_bytes']} bytes" in result.reason
    if ev["at_minsigstksz"]:
        # the kernel's number covers the frame it measured (with AMX when this CPU has it)
        assert ev["at_minsigstksz"] >= max(ev["frame_bytes"], ev["frame_bytes_amx"])
    if ev["amx"]:
        assert ev["frame_bytes_amx"] >= ev["frame_bytes"] + 8192  # the 8 KiB tile data is reserved in the frame


def test_injected_overflow_is_caught_where_the_frame_lands():
    if not AVX512:
        pytest.skip("the frame fits in MINSIGSTKSZ without AVX-512: nothing can overflow")
    injection = OVERFLOW.injections[0]
    result = run_injection(OVERFLOW, HOST, injection, None)
    assert result.verdict == "fail", result.reason
    assert injection.verify(result) is None
    run = result.evidence["minsigstksz"]
    assert run["lowest_changed_below_base"] == result.evidence["frame_bytes"] - 2048
    assert "below a 2048-byte alternate stack" in result.reason


def test_injector_that_lowers_by_less_than_the_overflow_is_refused_by_the_kernel():
    """The injection is caught only because the kernel then writes below the stack: lowered by
    16 bytes the fixed kernel still refuses the 3 KiB frame, and the probe passes."""
    if not AVX512:
        pytest.skip("needs AVX-512")
    env = injection_env("inject_altstack", {"SHAKEOUT_INJECT": "altstack-lower", "SHAKEOUT_INJECT_LOWER_BYTES": "16"})
    result = run_probe(ProbeRun(OVERFLOW, 1.0, env=env), HOST)
    assert result.verdict == "pass", result.reason


def test_bad_mode_is_one_line_and_exit_2(tmp_path):
    status, line = run_probe_binary("altstack", "--duration", "1", "--mode", "bogus", cwd=tmp_path)
    assert status == 2
    assert line["verdict"] == "error" and "--mode" in line["reason"] and "overflow, size" in line["reason"]


def test_describe_lists_mode_as_internal(tmp_path):
    proc = subprocess.run(
        [str(binary_path("altstack")), "--describe"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=10,
        check=True,
    )
    options = {o["name"]: o for o in json.loads(proc.stdout)["options"]}
    assert options["mode"]["internal"] and options["mode"]["choices"] == ["overflow", "size"]


def test_unprivileged_and_few_descriptors(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    cmd = f"ulimit -n 8; exec {binary_path('altstack')} --duration 1 --mode overflow"
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", cmd],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=20,
        check=False,
    )
    assert proc.returncode in (0, 4), proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["verdict"] in ("pass", "skip")


def test_cli_run_and_no_leftover_children(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "shakeout", "run", "altstack-size", "--format", "json", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    report = json.loads(out.read_text())
    bug = next(b for b in report["bugs"] if b["id"] == "altstack-minsigstksz-hazard")
    assert bug["verdict"] == ("present" if AVX512 else "absent"), bug
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert wait_until(lambda: probe_pids() == [], 2.0)
