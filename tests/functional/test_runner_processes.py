"""No probe process survives: Ctrl-C, SIGTERM, kill -9 of shakeout, deadlines, crashes."""

import os
import signal
import subprocess
import sys
import time

import pytest

from shakeout.runner import run_argv
from tests.functional.helpers import probe_pids, wait_until

pytestmark = pytest.mark.functional


def _start_long_run():
    assert probe_pids() == [], "a probe from an earlier test is still running"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shakeout", "run", "signal-vector", "--duration", "60", "--format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert wait_until(lambda: probe_pids() != [], 10), "the probe never started"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_kills_the_probe(sig):
    proc = _start_long_run()
    proc.send_signal(sig)
    code = proc.wait(timeout=10)
    assert wait_until(lambda: probe_pids() == [], 2.0), probe_pids()
    assert code == (130 if sig == signal.SIGINT else 128 + sig)
    assert b"Traceback" not in proc.stderr.read()


def test_kill_9_of_shakeout_kills_the_probe():
    proc = _start_long_run()
    proc.kill()
    proc.wait(timeout=5)
    assert wait_until(lambda: probe_pids() == [], 2.0), probe_pids()


def test_deadline_kills_the_whole_group(tmp_path):
    marker = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {marker}; sleep 300"
    started = time.monotonic()
    result = run_argv("hang", ["/bin/sh", "-c", script], duration_s=0.5)
    assert time.monotonic() - started < 10
    assert result.verdict == "error"
    assert "deadline" in result.reason
    grandchild = int(marker.read_text())
    assert wait_until(lambda: not os.path.exists(f"/proc/{grandchild}") or _is_zombie(grandchild), 2.0)


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_crash_is_classified():
    result = run_argv("crash", ["/bin/sh", "-c", "kill -SEGV $$"], duration_s=1)
    assert result.verdict == "error"
    assert result.death_signal == "SIGSEGV"
    assert "symptom of memory corruption" in result.reason


def test_garbage_output_is_an_error():
    result = run_argv("chatty", ["/bin/sh", "-c", "echo hello; echo oops >&2; exit 0"], duration_s=1)
    assert result.verdict == "error"
    assert "without a result line" in result.reason
    assert result.evidence["protocol_violations"] == ["not a protocol line: hello"]
    assert result.stderr_tail == ["oops"]
