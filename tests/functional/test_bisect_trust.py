"""bisect as a process a user can trust: no trial outlives shakeout on any way out (kill -9
included), no temporary directory outlives a catchable signal, a background child is no
hang, Go's zero-padded ids are found, and bad inputs are one line."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from tests.functional.helpers import run_shakeout as shakeout
from tests.functional.helpers import wait_until

pytestmark = pytest.mark.functional

# Each trial leaves a background child holding stdout, then (when HANG is set) sleeps.
TARGET = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from shakeout.bisect.pattern import change_id, marker, parse
    m = parse(sys.argv[1]) if sys.argv[1] != "PATTERN" else None  # config-bisect substitutes nothing
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", sys.argv[2]])
    culprit = False
    for name in ["site%d" % i for i in range(20)]:
        i = change_id(name)
        culprit = culprit or ((m is None or m.should_enable(i)) and name == "site7")
        if m is not None and m.should_print(i):
            print(marker(i), name, flush=True)
    if os.environ.get("HANG"):
        time.sleep(300)
    sys.exit(1 if culprit else 0)
    """
)


def processes_with(token):
    """Live (not zombie) processes whose command line holds token."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def start(tmp_path, command, *options, env_words=()):
    token = "shakeout-test-" + uuid.uuid4().hex
    (tmp_path / "target.py").write_text(TARGET)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    argv = [sys.executable, "-m", "shakeout", *command, *options, "--", *env_words, sys.executable,
            str(tmp_path / "target.py"), "PATTERN", token]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    return proc, token


def configs(tmp_path):
    (tmp_path / "good.config").write_text("CONFIG_A=n\nCONFIG_B=n\n")
    (tmp_path / "bad.config").write_text("CONFIG_A=y\nCONFIG_B=y\n")
    return ["config-bisect", str(tmp_path / "good.config"), str(tmp_path / "bad.config")]


@pytest.mark.parametrize(
    ("kind", "sig", "status"),
    [
        ("bisect", signal.SIGINT, 130),
        ("bisect", signal.SIGTERM, 143),
        ("bisect", signal.SIGHUP, 129),
        ("bisect", signal.SIGKILL, -9),
        ("config-bisect", signal.SIGTERM, 143),
        ("config-bisect", signal.SIGHUP, 129),
        ("config-bisect", signal.SIGINT, 130),
        ("config-bisect", signal.SIGKILL, -9),
    ],
)
def test_no_trial_outlives_shakeout(tmp_path, kind, sig, status):
    command = ["bisect"] if kind == "bisect" else configs(tmp_path)
    proc, token = start(tmp_path, command, "-j", "2", env_words=["HANG=1"])
    # two trials at once, each: its supervisor, the command, its background child
    assert wait_until(lambda: len(processes_with(token)) >= 6, 20), processes_with(token)
    time.sleep(0.3)
    proc.send_signal(sig)
    assert proc.wait(timeout=5) == status
    assert wait_until(lambda: processes_with(token) == [], 2.0), processes_with(token)
    if sig != signal.SIGKILL:
        assert "Traceback" not in proc.stderr.read()
        assert os.listdir(tmp_path / "tmp") == []  # config-bisect's directory is gone


def test_background_child_holding_stdout_is_not_a_hang(tmp_path):
    proc, token = start(tmp_path, ["bisect"], "--timeout", "20", "--format", "json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["change_sets"][0]["lines"][0].endswith(" site7")
    assert max(c["trials"] for c in doc["configurations"]) >= 1
    assert wait_until(lambda: processes_with(token) == [], 2.0)


GO_TARGET = textwrap.dedent(
    """
    import sys
    from shakeout.bisect.pattern import parse
    ids = [0x0123456789ABCDEF] + [(0x9E3779B97F4A7C15 * k) % (1 << 64) for k in range(1, 40)]
    m = parse(sys.argv[1])
    culprit = False
    for n, i in enumerate(ids):
        enabled = m is None or m.should_enable(i)
        culprit = culprit or (enabled and n == 0)
        if m is not None and m.should_print(i):
            off = "" if enabled else " [DISABLED]"
            text = "x.go:%d:6: loop variable i now per-iteration%s" % (n + 1, off) if m.verbose else off.strip()
            print("%s [bisect-match 0x%016x]" % (text, i), file=sys.stderr)
    sys.exit(1 if culprit else 0)
    """
)


def test_go_ids_with_a_leading_zero_digit_are_reported(tmp_path):
    (tmp_path / "go.py").write_text(GO_TARGET)
    proc = subprocess.run([sys.executable, "-m", "shakeout", "bisect", "--", sys.executable, str(tmp_path / "go.py"),
                           "PATTERN"], capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1] == "x.go:1:6: loop variable i now per-iteration"
    assert "printed no report line" not in proc.stdout


def one_line_error(proc, needle):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert needle in proc.stderr, proc.stderr


def test_devices_as_inputs_fail_at_once(tmp_path):
    started = time.monotonic()
    one_line_error(shakeout("config-bisect", "/dev/zero", "/dev/zero", "--", "true", "PATTERN"), "a device")
    one_line_error(shakeout("bisect", "--log", "/dev/full", "--", "true", "PATTERN"), "a device")
    assert time.monotonic() - started < 10


def test_non_utf8_config_is_one_line(tmp_path):
    (tmp_path / "good.config").write_bytes(b"CONFIG_A=\xff\n")
    (tmp_path / "bad.config").write_text("CONFIG_A=y\n")
    one_line_error(shakeout("config-bisect", str(tmp_path / "good.config"), str(tmp_path / "bad.config"), "--",
                            "true"), "not UTF-8")  # fmt: skip


def test_non_utf8_left_in_shakeout_config_is_one_line(tmp_path):
    (tmp_path / "good.config").write_text("CONFIG_A=n\n")
    (tmp_path / "bad.config").write_text("CONFIG_A=y\n")
    script = "import os; open(os.environ['SHAKEOUT_CONFIG'], 'wb').write(b'CONFIG_A=\\xff\\n')"
    one_line_error(shakeout("config-bisect", str(tmp_path / "good.config"), str(tmp_path / "bad.config"), "--",
                            sys.executable, "-c", script), "not UTF-8")  # fmt: skip


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["--max-trials", "²"], "not a trial count"),
        (["-j", "0"], "not a number of parallel trials"),
        (["--max", "x"], "not a number of change sets"),
        (["--confidence", "1"], "not a confidence"),
    ],
)
def test_each_option_names_its_own_thing(options, needle):
    one_line_error(shakeout("bisect", *options, "--", "true", "PATTERN"), needle)


def test_default_max_trials_is_accepted_when_given():
    proc = shakeout("bisect", "--max-trials", "2000", "--", "sh", "-c", "exit 1", "PATTERN")
    assert proc.returncode == 2 and "printed no [bisect-match" in proc.stderr.splitlines()[-1], proc.stderr


def test_cc_bad_quoting_is_one_line_and_compiler_status_passes_through(tmp_path):
    (tmp_path / "x.c").write_text("int x;\n")
    bad = shakeout("cc", "--if-enabled", '-DA="x', "--", "gcc", "-c", str(tmp_path / "x.c"), "-o",
                   str(tmp_path / "x.o"))  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr
    compiler = tmp_path / "fakecc"
    compiler.write_text("#!/bin/sh\nexit 7\n")
    compiler.chmod(0o755)
    passed = shakeout("cc", "--if-enabled", "-DA=1", "--", str(compiler), "-c", "x.c", "-o", "x.o")
    assert passed.returncode == 7 and passed.stderr == ""
