"""Shared by the functional tests: running shakeout and its probes, and finding probe
processes by their executable, to prove none survive."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

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


def run_shakeout(*args, stdin=None, timeout=120, cwd=None, prefix=(), env=None) -> subprocess.CompletedProcess:
    """`python -m shakeout ARGS` as a user runs it: text output captured, never raising on exit status."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "shakeout", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )


def run_probe_binary(name: str, *args: str, cwd=None) -> Tuple[int, Dict[str, Any]]:
    """Run a built probe directly; its exit status and its last protocol line (the result)."""
    proc = subprocess.run(
        [str(BIN_DIR / name), *args], capture_output=True, text=True, cwd=cwd, timeout=30, check=False
    )
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def run_like_selftest(spec: Any, host: Any, injection: Any) -> Tuple[Any, Optional[str]]:
    """The injection run as selftest runs it: up to injection.attempts runs, stopping at the
    first that failed with the right evidence. (result, what was wrong with it or None)."""
    from shakeout.engine import run_injection

    for _attempt in range(injection.attempts):
        result = run_injection(spec, host, injection, None)
        problem = injection.verify(result) if result.verdict == "fail" else f"not caught: {result.reason}"
        if problem is None:
            break
    return result, problem
