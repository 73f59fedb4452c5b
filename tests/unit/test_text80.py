"""Every command's text output at 80 columns, piped (COLUMNS=80, as under `script` or in a
CI log): no line is wider, and nothing is cut ("…") without a pointer to --format json."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ELLIPSIS = "…"

COMMANDS = [
    ["list"],
    ["show", "linux-signal-vector"],
    ["show", "signal-vector"],
    ["show", "CVE-2019-19602"],
    ["show", "robust-futex-reuse"],
    ["probes"],
    ["host"],
    ["check", "--only", "freebsd-xsave-xmm", "vdso-stack-probe"],
    ["run", "vdso-stack"],
    ["selftest", "--only", "vdso-stack"],
    ["vdso"],
    ["triage", "crash.log"],
    ["bisect-match", "vy", "obj/a.o"],
    ["bisect", "--", sys.executable, "target.py", "PATTERN"],
]

TARGET = """\
import sys
from shakeout.bisect.target import Target
t = Target(sys.argv[1])
on = [n for n in ("alpha", "beta", "gamma", "delta") if t.enabled(n)]
sys.exit(1 if "gamma" in on else 0)
"""

CRASH = """\
fatal error: unexpected signal during runtime execution
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x45a1b2]
runtime: g 1: unexpected return pc for runtime.sigpanic called from 0x0
"""


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_text_fits_80_columns_and_cuts_nothing_silently(tmp_path, argv):
    (tmp_path / "target.py").write_text(TARGET)
    (tmp_path / "crash.log").write_text(CRASH)
    proc = subprocess.run(
        [str(BIN / "shakeout"), *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert "Traceback" not in proc.stderr and proc.returncode in (0, 1, 3), proc.stderr
    assert proc.stdout.strip(), proc.stderr
    wide = [line for line in proc.stdout.splitlines() if len(line) > 80]
    assert not wide, f"wider than 80 columns: {wide[:3]}"
    cut = [line for line in proc.stdout.splitlines() if ELLIPSIS in line]
    if cut:
        assert "--format json" in proc.stdout, f"cut without a pointer to --format json: {cut[:3]}"
