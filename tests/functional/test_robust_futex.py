"""The real robust-futex probes on this kernel, their proofs, and nothing left behind."""

import os
import subprocess
from pathlib import Path

import pytest

from shakeout.engine import run_injection
from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.probes.robust_futex import kernel_rewrite
from shakeout.runner import ProbeRun, run_probe
from tests.functional.helpers import probe_pids, wait_until

HOST = read_host()
pytestmark = [pytest.mark.functional, pytest.mark.skipif(HOST.os != "linux", reason="Linux futexes")]


def shared_memory_state():
    shm = sorted(os.listdir("/dev/shm")) if Path("/dev/shm").is_dir() else []
    ipcs = subprocess.run(["ipcs", "-m"], capture_output=True, text=True, check=False).stdout if _has("ipcs") else ""
    return shm, ipcs


def _has(cmd):
    return any(Path(d, cmd).exists() for d in os.environ.get("PATH", "").split(":"))


def robust_futex_pids():
    """Our probe's processes only: other developers' probes may run on the same machine."""
    return [pid for pid in probe_pids() if _exe_name(pid) == "robust_futex"]


def _exe_name(pid):
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return None


@pytest.fixture
def leaves_nothing():
    before = shared_memory_state()
    yield
    assert wait_until(lambda: robust_futex_pids() == [], 2.0), robust_futex_pids()
    assert shared_memory_state() == before


def test_wakeup_is_delivered_here(leaves_nothing):
    result = run_probe(ProbeRun(get_probe("robust-futex-wakeup"), 1.5), HOST)
    assert result.verdict == "pass", result.reason
    ev = result.evidence
    assert ev["woken"] == result.exposures > 100
    assert ev["never_woken"] == 0
    assert 0 < ev["wake_latency_mean_s"] <= ev["wake_latency_max_s"] < 1.0
    assert ev["kernel_robust_unlock_api"] in (True, False)


def test_lost_wakeup_is_reported_when_the_kernel_cannot_know(leaves_nothing):
    spec = get_probe("robust-futex-wakeup")
    result = run_injection(spec, HOST, spec.injections[0], None)
    assert result.verdict == "fail"
    assert spec.injections[0].verify(result) is None
    sample = result.evidence["samples"][0]
    assert sample["what"] == "waiter never woken"
    assert int(sample["before"], 16) & 0x80000000  # FUTEX_WAITERS was set
    assert sample["after"] == "0x00000000"  # the owner had released the word


def test_reuse_rewrite_is_exact(leaves_nothing):
    result = run_probe(ProbeRun(get_probe("robust-futex-reuse"), 2.0), HOST)
    assert result.verdict == "fail", "this kernel did not rewrite reused memory: " + result.reason
    sample = result.evidence["samples"][0]
    before = int(sample["before"], 16)
    assert before == sample["owner_tid"]
    assert int(sample["after"], 16) == kernel_rewrite(before) == 0x40000000
    assert sample["control_before"] == sample["control_after"]
    assert "documented" not in result.reason  # the probe reports facts; the catalog explains
    assert "robust-unlock API" in result.reason


def test_glibc_robust_mutexes_with_killed_owners(leaves_nothing):
    result = run_probe(ProbeRun(get_probe("robust-futex-glibc"), 2.0), HOST)
    assert result.verdict in ("pass", "inconclusive"), result.reason
    ev = result.evidence
    assert ev["eownerdead_recoveries"] > 0
    assert ev["hangs"] == 0 and ev["neighbours_intact"] is True
    assert ev["lock_operations"] > 1000
    # Exposures are the kills measured inside the unlock window, a strict part of all kills.
    assert result.exposures == ev["kills_in_unlock_window"] > 0
    assert ev["owners_killed"] > result.exposures
    assert ev["kills_in_window_before_wake"] + ev["kills_in_window_after_wake"] <= result.exposures
    # A kill while holding is one EOWNERDEAD; the owners killed at the end may add one each.
    assert ev["kills_holding"] <= ev["eownerdead_recoveries"] <= ev["kills_holding"] + ev["workers"]
    assert ev["kills_unclassified"] == 0
    assert "list_op_pending" in result.exposure_unit


def test_glibc_neighbour_corruption_is_caught(leaves_nothing):
    spec = get_probe("robust-futex-glibc")
    injection = next(i for i in spec.injections if i.name == "neighbours")
    result = run_injection(spec, HOST, injection, None)
    assert result.verdict == "fail"
    assert injection.verify(result) is None, injection.verify(result)


def test_glibc_withheld_wake_is_caught_as_a_hang(leaves_nothing):
    spec = get_probe("robust-futex-glibc")
    injection = next(i for i in spec.injections if i.name == "withheld-wake")
    result = run_injection(spec, HOST, injection, None)
    assert result.verdict == "fail", result.reason
    assert injection.verify(result) is None, injection.verify(result)
    assert result.evidence["check"] == "hang"
    assert "hang" in result.reason


def test_vdso_symbol_lookup_finds_symbols_that_exist():
    """The API check is a real lookup: it finds a symbol every x86-64/aarch64 vDSO has."""
    spec = get_probe("robust-futex-reuse")
    present = run_probe(ProbeRun(spec, 1.0, options={"api-symbol": "__vdso_clock_gettime"}), HOST)
    absent = run_probe(ProbeRun(spec, 1.0, options={"api-symbol": "__vdso_no_such_function"}), HOST)
    if HOST.arch == "aarch64":
        present = run_probe(ProbeRun(spec, 1.0, options={"api-symbol": "__kernel_clock_gettime"}), HOST)
    assert present.evidence["kernel_robust_unlock_api"] is True
    assert absent.evidence["kernel_robust_unlock_api"] is False
