"""Finding probe processes by their executable, to prove none survive."""

import os
import time
from pathlib import Path
from typing import List

from shakeout.binaries import BIN_DIR

# Every process this test session starts inherits this tag (probes through shakeout, which
# passes its environment on): only those count, not probes another session runs meanwhile.
os.environ.setdefault("SHAKEOUT_TEST_SESSION", f"{os.getpid()}-{time.monotonic_ns()}")
SESSION_TAG = ("SHAKEOUT_TEST_SESSION=" + os.environ["SHAKEOUT_TEST_SESSION"]).encode()


def _ours(entry: Path) -> bool:
    try:
        return SESSION_TAG in (entry / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def probe_pids() -> List[int]:
    """Processes of this test session whose executable is one of shakeout's native probes."""
    pids = []
    bin_dir = str(BIN_DIR.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(str(entry / "exe"))
        except OSError:
            continue
        if exe.startswith(bin_dir) and _ours(entry):
            pids.append(int(entry.name))
    return pids


def wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
