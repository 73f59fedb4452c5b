"""The real RAM tester: short clean runs, injected bit flips caught with exact evidence,
interruption leaves nothing behind, refused mlock is explained."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from shakeout.engine import run_injection
from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.runner import ProbeRun, run_probe
from tests.functional.helpers import wait_until

HOST = read_host()
SPEC = get_probe("memtest")
SHAKEOUT = [sys.executable, "-m", "shakeout"]
pytestmark = [pytest.mark.functional, pytest.mark.skipif(HOST.os != "linux", reason="memtest needs Linux")]


def probe_pids():
    """Running memtest testers (other developers' probes may be running beside ours)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/exe").endswith("/_bin/memtest"):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _memtest(*args, **kwargs):
    return subprocess.run(
        [*SHAKEOUT, "memtest", *args], check=False, capture_output=True, text=True, timeout=60, **kwargs
    )


def _locked_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmLck:"))


def test_a_short_clean_run_verifies_its_memory():
    proc = _memtest("--size", "64M", "--duration", "1.5", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "clean" and doc["size_bytes"] == 64 << 20 and doc["cells"] == []
    assert doc["bytes_verified"] > 64 << 20  # at least one sweep of the whole buffer was compared
    assert doc["setup"]["locked"] is True and doc["setup"]["threads"] == HOST.cpus
    assert wait_until(lambda: probe_pids() == [], 2.0)


def test_one_pass_ends_by_itself_and_reports_in_text():
    proc = _memtest("--size", "8M", "--passes", "1", "--tests", "mov-inv-rand,address")
    assert proc.returncode == 0, proc.stderr
    assert "no error found" in proc.stdout and "1 pass(es) completed" in proc.stdout
    assert "weak cells often fail only after several passes" in proc.stdout


@pytest.mark.parametrize("name", ["bit-flip", "bit-flip-repeat"])
def test_an_injected_bit_flip_is_caught_with_exact_evidence(name):
    injection = next(i for i in SPEC.injections if i.name == name)
    result = run_injection(SPEC, HOST, injection, None)
    assert result.verdict == "fail", result.reason
    assert injection.verify(result) is None, injection.verify(result)
    (target,) = result.evidence["targets"]
    cell = result.evidence["cells"][0]
    assert int(cell["virt"], 16) == int(target["address"], 16) and cell["bit"] == 17
    if os.geteuid() == 0:
        assert cell["address_kind"] == "physical" and int(cell["address"], 16) == int(target["phys"], 16)
    assert "caught by" in result.reason
    assert wait_until(lambda: probe_pids() == [], 2.0)


def test_check_slice_is_short_and_says_it_is_weak_evidence():
    result = run_probe(ProbeRun(SPEC, 1.0), HOST)
    assert result.verdict == "pass", result.reason
    assert result.elapsed_s < 2.5
    assert "64 MiB" in result.evidence["summary"] and "weak evidence" in result.evidence["summary"]


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interruption_reports_so_far_and_leaves_nothing_locked(sig, status):
    proc = subprocess.Popen(
        [*SHAKEOUT, "memtest", "--size", "32M", "--duration", "30", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_until(lambda: probe_pids() != [], 10.0)
    tester = probe_pids()[0]
    assert _locked_kib(tester) >= 32 << 10
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == status, err
    doc = json.loads(out)
    assert doc["interrupted_by_signal"] == sig and "found so far" in doc["reason"]
    assert wait_until(lambda: probe_pids() == [], 2.0)
    assert not os.path.exists(f"/proc/{tester}")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to nobody")
def test_refused_mlock_says_the_limit_and_how_to_raise_it():
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    limited = ["prlimit", "--memlock=1048576:1048576", "--"]
    argv = [*limited, *drop, *SHAKEOUT, "memtest", "--size", "16M", "--duration", "1"]
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=env, cwd="/")
    assert proc.returncode == 3, proc.stderr
    assert "RLIMIT_MEMLOCK is 1048576 bytes" in proc.stdout and "ulimit -l" in proc.stdout
    unlocked = subprocess.run(
        [*argv, "--allow-unlocked"], check=False, capture_output=True, text=True, timeout=60, env=env, cwd="/"
    )
    assert unlocked.returncode == 0, unlocked.stderr
    assert "NOT locked" in unlocked.stdout and "physical addresses need root" in unlocked.stdout
