"""`shakeout triage` as a user runs it: formats, exit codes, awkward inputs, a large streamed log."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "triage"
CRASH = (FIXTURES / "signal-vector-go37436-mlock.txt").read_text().partition("\n---\n")[2]


def triage(*args, stdin=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "shakeout", "triage", *args],
        input=stdin,
        check=False,
        capture_output=True,
        timeout=timeout,
    )


def test_text_json_markdown(tmp_path):
    log = tmp_path / "crash.log"
    log.write_text(CRASH)
    text = triage(str(log))
    assert text.returncode == 0 and text.stderr == b""
    out = text.stdout.decode()
    assert "1. linux-signal-vector" in out and "never a verdict" in out
    assert "shakeout check --only linux-signal-vector" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    doc = json.loads(triage("--format", "json", str(log)).stdout)
    assert doc["schema"] == "shakeout/1" and doc["command"] == "triage"
    assert doc["suspects"][0]["id"] == "linux-signal-vector"
    assert doc["suspects"][0]["evidence"][0]["lines"][0] == {
        "source": str(log),
        "line": 1,
        "text": "runtime: mlock of signal stack failed: 12",
    }
    md = triage("--format", "markdown", str(log)).stdout.decode()
    assert md.startswith("## Crash triage") and "`linux-signal-vector`" in md


def test_stdin_and_output_file(tmp_path):
    out = tmp_path / "t.json"
    r = triage("--format", "json", "--output", str(out), "-", stdin=CRASH.encode())
    assert r.returncode == 0 and r.stdout == b""
    assert json.loads(out.read_text())["inputs"][0]["name"] == "<stdin>"


def test_fifo_is_read(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(CRASH))
    writer.start()
    r = triage("--format", "json", str(fifo))
    writer.join()
    assert r.returncode == 0 and json.loads(r.stdout)["suspects"][0]["id"] == "linux-signal-vector"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "it is a directory"),
        (lambda p: p / "missing.log", "No such file"),
        (lambda p: Path("/dev/zero"), "device or socket"),
    ],
)
def test_unreadable_inputs_are_one_line_exit_2(tmp_path, make, message):
    good = tmp_path / "good.log"
    good.write_text(CRASH)
    r = triage(str(good), str(make(tmp_path)))
    assert r.returncode == 2 and r.stdout == b""
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in lines[0]


def test_unreadable_file_for_non_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    log = tmp_path / "secret.log"
    log.write_text(CRASH)
    log.chmod(0o600)
    tmp_path.chmod(0o755)
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "shakeout", "triage",
         str(log)],
        check=False, capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and b"permission denied" in r.stderr.lower() and r.stderr.count(b"\n") == 1


def test_binary_empty_and_mixed_encodings_exit_0_with_notes(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    binary = tmp_path / "core"
    binary.write_bytes(bytes(range(256)) * 64)
    mixed = tmp_path / "mixed.log"
    mixed.write_bytes("caf\xe9\n".encode("latin-1") + b"fatal error: concurrent map writes\n")
    r = triage("--format", "json", str(empty), str(binary), str(mixed))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    notes = " ".join(doc["notes"])
    assert "empty.log: empty" in notes and "binary data" in notes and "not UTF-8" in notes
    assert doc["suspects"][0]["id"] == "software"


NOISE = "".join(f"Nov  7 06:32:{i % 60:02d} web3 app[42]: request {i} served in 3 ms\n" for i in range(10000))
MEASURE = (
    "import resource, sys; sys.argv = ['shakeout', 'triage', '--format', 'json', sys.argv[1]];"
    "from shakeout.cli import main; code = main();"
    "sys.stderr.write('maxrss_kib=%d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
)


def triage_big_log(path, blocks):
    """A log of `blocks` x 10,000 noise lines with the crash in the middle: its JSON and peak RSS."""
    with open(path, "w") as f:
        for i in range(blocks):
            f.write(NOISE)
            if i == blocks // 2:
                f.write(CRASH)
    r = subprocess.run([sys.executable, "-c", MEASURE, str(path)], check=False, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["inputs"][0]["bytes"] == path.stat().st_size
    assert doc["suspects"][0]["id"] == "linux-signal-vector"
    assert doc["suspects"][0]["evidence"][0]["lines"][0]["line"] == (blocks // 2 + 1) * 10000 + 1
    return int(r.stderr.decode().split("maxrss_kib=")[1].split()[0])


def test_large_log_is_streamed_in_bounded_memory(tmp_path):
    """Peak memory does not grow with the log: 6 MiB and 35 MiB logs peak within 8 MiB of each other."""
    small = triage_big_log(tmp_path / "small.log", 10)
    large = triage_big_log(tmp_path / "large.log", 60)
    assert large - small < 8 * 1024, (small, large)
