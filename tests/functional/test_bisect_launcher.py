"""bisect --launcher: every trial runs through a launcher whose work lives in another process
tree (a session of its own, as srun's step or an ssh session would), out of reach of the
trial's group kill. On timeout and on every way out of shakeout (SIGINT, SIGTERM, kill -9)
the launcher gets SIGTERM and its grace, and nothing of any trial is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.functional.test_bisect_cli import write_configs

pytestmark = pytest.mark.functional

# Like srun: the trial runs in a new session (its own process group, which shakeout's
# group kill does not reach); SIGTERM or SIGHUP is forwarded to that group; when the trial
# ends, whatever is left of its group is killed; the launcher exits with its status. Like
# ssh, the far side does not inherit the environment: only PATH and what `env` sets.
LAUNCHER = textwrap.dedent(
    """\
    import os, signal, sys, time
    child = None

    def forward(signum, frame):
        if child:
            os.killpg(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    child = os.fork()
    if child == 0:
        os.setsid()
        os.execvpe(sys.argv[1], sys.argv[1:], {"PATH": os.environ["PATH"]})
    with open(os.environ["LAUNCH_LOG"], "a") as log:
        log.write(f"start {child} {time.monotonic()}\\n")
    _, status = os.waitpid(child, 0)
    try:
        os.killpg(child, signal.SIGKILL)
    except ProcessLookupError:
        pass
    with open(os.environ["LAUNCH_LOG"], "a") as log:
        log.write(f"end {child} {time.monotonic()}\\n")
    sys.exit(os.waitstatus_to_exitcode(status) % 256 if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    """
)

# Fails when change 3 is enabled; leaves a background child behind (unless $NO_BACKGROUND);
# hangs when $HANG is set.
TARGET = textwrap.dedent(
    """\
    import os, subprocess, sys, time
    from shakeout.bisect.target import Target

    if not os.environ.get("NO_BACKGROUND"):
        subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = Target.from_environment()
    enabled = [i for i in range(1, 9) if target.enabled(i, f"change {i}")]
    if os.environ.get("HANG"):
        time.sleep(300)
    time.sleep(float(os.environ.get("SLOW", "0")))
    sys.exit(1 if 3 in enabled else 0)
    """
)


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    (tmp_path / "target.py").write_text(TARGET)
    tag = uuid.uuid4().hex
    return tmp_path, tag


def _tagged(tag: str):
    """Processes whose environment carries TRIAL_TAG=tag: every process of every trial."""
    needle = f"TRIAL_TAG={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_gone(tag: str, within_s: float):
    deadline = time.monotonic() + within_s
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _tagged(tag)


def _argv(tmp_path, tag, *options, env=()):
    return [
        sys.executable, "-m", "shakeout", "bisect", "--format", "json",
        "--launcher", f"{sys.executable} {tmp_path / 'launcher.py'}", "--launcher-grace", "3", *options,
        "--", f"TRIAL_TAG={tag}", "BISECT_PATTERN=PATTERN", *env, sys.executable, str(tmp_path / "target.py"),
    ]  # fmt: skip


def _environ(tmp_path):
    return {
        **os.environ,
        "LAUNCH_LOG": str(tmp_path / "launch.log"),
        "PYTHONPATH": str(Path(__file__).parents[2] / "src"),
    }


def _run(argv, tmp_path):
    return subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=180, env=_environ(tmp_path), cwd=tmp_path
    )


def test_bisect_through_a_launcher_with_two_trials_in_flight(setup):
    tmp_path, tag = setup
    argv = _argv(tmp_path, tag, "-j", "2", env=["SLOW=0.3"])
    done = _run(argv, tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [cs["ids"] for cs in doc["change_sets"]] == [["0x0000000000000003"]]
    assert doc["change_sets"][0]["lines"] == ["[bisect-match 0x0000000000000003] change 3"]
    events = [line.split() for line in (tmp_path / "launch.log").read_text().splitlines()]
    assert sum(1 for e in events if e[0] == "start") >= 4
    assert _max_in_flight(events) == 2
    assert _wait_gone(tag, 2.0) == []


def _max_in_flight(events):
    level = best = 0
    for kind, _pid, _when in sorted(events, key=lambda e: float(e[2])):
        level += 1 if kind == "start" else -1
        best = max(best, level)
    return best


def test_a_hung_trial_is_cancelled_through_the_launcher(setup):
    tmp_path, tag = setup
    argv = _argv(tmp_path, tag, "--timeout", "1", "--hang", "fail", "--max-trials", "3", env=["HANG=1"])
    done = _run(argv, tmp_path)
    assert done.returncode == 2 and "gave up after 3 trials" in done.stderr, done.stderr
    assert done.stderr.count("-> FAIL") == 3  # each hang counted as a failure
    assert _wait_gone(tag, 2.0) == []
    events = [line.split()[0] for line in (tmp_path / "launch.log").read_text().splitlines()]
    # every launcher was asked to stop (SIGTERM) and could cancel its work before SIGKILL
    assert events == ["start", "end"] * 3


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_every_way_out_of_shakeout_cancels_the_launched_work(setup, how):
    tmp_path, tag = setup
    argv = _argv(tmp_path, tag, "-j", "2", env=["HANG=1"])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_environ(tmp_path), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while len([p for p in _tagged(tag) if _is_sleep(p)]) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)  # both trials' far sides run: a hang and a background child each
        assert len(_tagged(tag)) >= 4, "the trials did not start"
        proc.send_signal(how)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _wait_gone(tag, 6.0) == []
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}[how]


def _is_sleep(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"sleep")
    except OSError:
        return False


@pytest.mark.parametrize(
    "launcher, message",
    [
        ("'unterminated", "is not a command line (No closing quotation)"),
        ("", "the launcher is empty"),
    ],
)
def test_bad_launchers_are_one_line_usage_errors(tmp_path, launcher, message):
    done = subprocess.run(
        [sys.executable, "-m", "shakeout", "bisect", "--launcher", launcher, "--", "true", "PATTERN"],
        check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_a_launcher_that_cannot_start_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "shakeout", "bisect", "--launcher", "no-such-launcher-xyz --", "--", "true", "PATTERN"],
        check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "cannot run no-such-launcher-xyz" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_config_bisect_through_a_launcher_gets_its_candidate_path(setup):
    tmp_path, tag = setup
    write_configs(tmp_path)
    argv = [
        sys.executable, "-m", "shakeout", "config-bisect", str(tmp_path / "good.config"), str(tmp_path / "bad.config"),
        "--format", "json", "-j", "2", "--launcher", f"{sys.executable} {tmp_path / 'launcher.py'}",
        "--", f"TRIAL_TAG={tag}", sys.executable, str(tmp_path / "test.py"),
    ]  # fmt: skip
    done = _run(argv, tmp_path)
    assert done.returncode == 0, done.stderr
    (change_set,) = json.loads(done.stdout)["change_sets"]
    assert change_set["options"] == ["CONFIG_USB"]
    assert _wait_gone(tag, 2.0) == []
