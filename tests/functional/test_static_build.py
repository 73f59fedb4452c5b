"""The static probe builds (for VMs) run on their own and speak the protocol."""

import json
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from shakeout.binaries import BIN_DIR
from shakeout.host import read_host
from shakeout.nativebuild import STATIC_DIR, find_compiler, static_linking_works

pytestmark = pytest.mark.functional


def test_static_probe_runs():
    if not static_linking_works(find_compiler()):
        pytest.skip("this C library has no libc.a, so no static builds were made")
    exe = BIN_DIR / STATIC_DIR / "signal_vector"
    assert exe.is_file()
    with exe.open("rb") as f:
        elf = ELFFile(f)
        assert not any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments()), "has a dynamic loader"
        dynamic = elf.get_section_by_name(".dynamic")
        needed = [t for t in dynamic.iter_tags() if t.entry.d_tag == "DT_NEEDED"] if dynamic else []
        assert not needed, "needs shared libraries"
    proc = subprocess.run(
        [str(exe), "--duration", "0.5", "--workers", "1"], capture_output=True, text=True, check=False, timeout=30
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["event"] == "result"
    host = read_host()
    if host.arch == "x86_64" and "avx" in host.cpu.flags:
        assert (proc.returncode, result["verdict"]) == (0, "pass"), proc.stderr
    else:
        assert (proc.returncode, result["verdict"]) == (4, "skip") and result["reason"]
