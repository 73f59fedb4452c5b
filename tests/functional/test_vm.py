"""shakeout vm with a real Debian kernel under QEMU (TCG here), and its failure paths.

The kernel comes from Debian's archive (apt-get download linux-image-6.1.0-*-amd64) and is
cached in $SHAKEOUT_KERNEL_CACHE (default ~/.cache/shakeout-test-kernels). The tests skip,
saying so, only when QEMU is missing or the package archive cannot be reached.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from shakeout.vm.console import parse_console
from shakeout.vm.qemu import boot, qemu_argv
from tests.functional.helpers import run_shakeout as shakeout
from tests.functional.helpers import wait_until

pytestmark = pytest.mark.functional
QEMU = shutil.which("qemu-system-x86_64")
CACHE = Path(os.environ.get("SHAKEOUT_KERNEL_CACHE", Path.home() / ".cache" / "shakeout-test-kernels"))


def _newest_debian_61_package():
    out = subprocess.run(
        ["apt-cache", "search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    names = sorted(re.findall(r"^(linux-image-6\.1\.0-(\d+)-amd64) ", out, re.M), key=lambda m: int(m[1]))
    return names[-1][0] if names else None


@pytest.fixture(scope="module")
def debian_kernel():
    if not QEMU:
        pytest.skip("qemu-system-x86_64 is not installed (Debian: qemu-system-x86)")
    if sys.platform != "linux" or not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        pytest.skip("needs apt-get and dpkg-deb to fetch a Debian kernel")
    cached = sorted(CACHE.glob("vmlinuz-6.1.0-*-amd64"))
    if cached:
        return cached[-1]
    package = _newest_debian_61_package()
    if not package:
        pytest.skip("the Debian package archive lists no linux-image-6.1.0-*-amd64 (run apt-get update?)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True, check=False)
        if got.returncode != 0:
            pytest.skip("the Debian package archive is unreachable: " + got.stderr.strip()[-200:])
        deb = next(Path(tmp).glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        image = next((Path(tmp) / "x" / "boot").glob("vmlinuz-*"))
        shutil.copy(image, CACHE / image.name)
    return CACHE / image.name


# Every QEMU these tests start inherits this tag in its environment (from os.environ, through
# shakeout): only those count, not a QEMU that anything else on the machine runs.
TEST_TAG = f"SHAKEOUT_VM_TEST={os.getpid()}-{time.monotonic_ns()}"
os.environ["SHAKEOUT_VM_TEST"] = TEST_TAG.split("=", 1)[1]


def qemu_pids():
    return [p for p in os.listdir("/proc") if p.isdigit() and _exe(p).startswith(QEMU or "?") and _ours(p)]


def _ours(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return TEST_TAG.encode() in f.read().split(b"\0")
    except OSError:
        return False


def _exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def test_debian_kernel_runs_the_probes(debian_kernel, tmp_path):
    out = tmp_path / "vm.json"
    proc = shakeout(
        "vm",
        "--kernel",
        str(debian_kernel),
        "--probes",
        "signal-vector,fork-cow",
        "--duration",
        "2",
        "--format",
        "json",
        "--output",
        str(out),
        timeout=300,
    )
    report = json.loads(out.read_text())
    # Under TCG on a loaded machine the probes may make too few exposures in 2 s to vouch
    # for a pass: that is `inconclusive` (exit 3), never a pass and never a failure.
    verdicts = {p["verdict"] for p in report["probes"]}
    assert proc.returncode == (0 if verdicts == {"pass"} else 3), proc.stderr
    assert verdicts <= {"pass", "inconclusive"}, report["probes"]
    assert report["command"] == "vm"
    assert report["host"]["kernel_release"] == debian_kernel.name[len("vmlinuz-") :]
    assert report["host"]["kernel_version"].startswith("6.1.")  # Debian's upstream version, from the guest
    probes = {p["id"]: p for p in report["probes"]}
    assert set(probes) == {"signal-vector", "fork-cow"}
    for probe in probes.values():
        assert probe["exposures"] > 0, probe
    bugs = {b["id"]: b["verdict"] for b in report["bugs"]}
    signal_vector_passed = probes["signal-vector"]["verdict"] == "pass"
    assert bugs["linux-signal-vector"] == ("not-vulnerable" if signal_vector_passed else "unknown")
    cpu = report["host"]["cpu"]  # the guest's CPU, as QEMU presents it (TCG's "max" is an AMD of its own family)
    in_range = cpu["vendor"] == "AuthenticAMD" and cpu["family"] in (0x17, 0x19)
    fork_cow_passed = probes["fork-cow"]["verdict"] == "pass"
    assert bugs["bsd-fork-cow"] == (
        "not-applicable" if not in_range else "not-vulnerable" if fork_cow_passed else "unknown"
    )
    assert report["vm"]["accel"] in ("kvm", "tcg")
    assert wait_until(lambda: qemu_pids() == [], 2.0)


def test_kernel_without_init_panics_and_is_reported(debian_kernel, tmp_path):
    """An initramfs with no init: the guest kernel panics at once; the panic is the evidence."""
    empty = tmp_path / "empty.cpio.gz"
    from shakeout.vm import initramfs

    empty.write_bytes(initramfs.build([initramfs.directory("dev"), initramfs.console()]))
    result = boot(qemu_argv(QEMU, debian_kernel, empty, 1, "256M", "tcg", "max"), deadline_s=120)
    run = parse_console(result.console, {})
    assert run.panic and "Kernel panic" in run.panic
    assert not run.booted
    assert wait_until(lambda: qemu_pids() == [], 2.0)


def test_truncated_kernel_is_an_error_not_a_hang(debian_kernel, tmp_path):
    truncated = tmp_path / "vmlinuz-truncated"
    truncated.write_bytes(debian_kernel.read_bytes()[: 1 << 20])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shakeout",
            "vm",
            "--kernel",
            str(truncated),
            "--probes",
            "fork-cow",
            "--duration",
            "1",
            "--accel",
            "tcg",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr  # nothing vulnerable, something unknown
    report = json.loads(proc.stdout)
    (probe,) = report["probes"]
    assert probe["verdict"] == "error"
    assert "never reached shakeout's init" in probe["reason"] or "panicked" in probe["reason"]
    if not report["vm"]["console_tail"]:
        assert "the guest printed nothing" in probe["reason"]
    assert all(b["verdict"] in ("unknown", "not-applicable") for b in report["bugs"])
    assert wait_until(lambda: qemu_pids() == [], 2.0)


def test_missing_qemu_is_one_line(tmp_path, debian_kernel):
    env = dict(os.environ, PATH="/nonexistent")
    proc = subprocess.run(
        [sys.executable, "-m", "shakeout", "vm", "--kernel", str(debian_kernel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "shakeout: error: qemu-system-x86_64 was not found: install QEMU (Debian/Ubuntu: apt-get install "
        "qemu-system-x86)"
    )
