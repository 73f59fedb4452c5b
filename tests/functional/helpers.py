"""Finding probe processes by their executable, to prove none survive."""

import os
import time
from pathlib import Path
from typing import List

from shakeout.runner import BIN_DIR


def probe_pids() -> List[int]:
    """Processes whose executable is one of shakeout's native probes."""
    pids = []
    bin_dir = str(BIN_DIR.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(str(entry / "exe"))
        except OSError:
            continue
        if exe.startswith(bin_dir):
            pids.append(int(entry.name))
    return pids


def wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
