"""The probes on aarch64: cross-compiled with -Werror and run under qemu-user.

Skipped (with the reason) where the cross compiler or qemu-user is missing; .ci/run
installs Debian's gcc-aarch64-linux-gnu and qemu-user when it can.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from shakeout import nativebuild
from shakeout.nativebuild import CFLAGS

pytestmark = pytest.mark.functional
NATIVE = Path(nativebuild.__file__).parent / "native"
CROSS_CC = shutil.which("aarch64-linux-gnu-gcc")
QEMU = shutil.which("qemu-aarch64")


@pytest.fixture(scope="module")
def aarch64_build(tmp_path_factory):
    if not CROSS_CC or not QEMU:
        pytest.skip("needs aarch64-linux-gnu-gcc and qemu-aarch64 (Debian: gcc-aarch64-linux-gnu qemu-user)")
    out = tmp_path_factory.mktemp("aarch64")
    for name in ("fork_cow", "signal_vector"):
        subprocess.run(
            [
                CROSS_CC,
                *CFLAGS,
                "-static",
                "-pthread",
                str(NATIVE / "probe.c"),
                str(NATIVE / (name + ".c")),
                "-o",
                str(out / name),
            ],
            check=True,
        )
    return out


def run(build, name, *args):
    proc = subprocess.run([QEMU, str(build / name), *args], capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["stale-read", "tlb"])
def test_fork_cow_raw_fork_works_on_aarch64(aarch64_build, mode):
    code, result = run(aarch64_build, "fork_cow", "--duration", "1.5", "--workers", "1", "--mode", mode)
    assert (code, result["verdict"]) == (0, "pass"), result
    assert result["evidence"]["forks"] > 50


def test_signal_vector_skips_on_aarch64(aarch64_build):
    code, result = run(aarch64_build, "signal_vector", "--duration", "1")
    assert (code, result["verdict"]) == (4, "skip")
    assert "not an x86-64 machine" in result["reason"]
