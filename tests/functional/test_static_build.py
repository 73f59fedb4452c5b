"""The static probe builds (for VMs) run on their own and speak the protocol."""

import json
import subprocess

import pytest

from shakeout.nativebuild import STATIC_DIR, find_compiler, static_linking_works
from shakeout.runner import BIN_DIR

pytestmark = pytest.mark.functional


def test_static_probe_runs():
    if not static_linking_works(find_compiler()):
        pytest.skip("this C library has no libc.a, so no static builds were made")
    exe = BIN_DIR / STATIC_DIR / "signal_vector"
    assert exe.is_file()
    out = subprocess.run(["file", str(exe)], capture_output=True, text=True, check=False).stdout
    if out:
        assert "statically linked" in out
    proc = subprocess.run(
        [str(exe), "--duration", "0.5", "--workers", "1"], capture_output=True, text=True, check=False, timeout=30
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["event"] == "result"
    assert (proc.returncode, result["verdict"]) in ((0, "pass"), (4, "skip"))
