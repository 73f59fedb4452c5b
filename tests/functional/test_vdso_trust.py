"""`shakeout vdso FILE` never runs FILE unless asked (--measure), and reads only regular
files of bounded size: devices, FIFOs and directories are refused at once."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from shakeout.host import read_host

HOST = read_host()
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(HOST.arch != "x86_64" or not shutil.which("gcc"), reason="x86-64 with gcc"),
]

# A vDSO-like library whose constructor leaves a marker file: proof that its code ran.
SOURCE = textwrap.dedent(
    """
    #include <fcntl.h>
    #include <unistd.h>
    __attribute__((constructor)) static void mark(void)
    {
        int fd = open(MARKER, O_CREAT | O_WRONLY, 0644);
        if (fd >= 0) close(fd);
    }
    long __vdso_time(long *t) { if (t) *t = 7; return 7; }
    """
)


@pytest.fixture
def marked(tmp_path):
    marker = tmp_path / "constructor-ran"
    src = tmp_path / "marked.c"
    src.write_text(SOURCE)
    lib = tmp_path / "libmarked.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", f'-DMARKER="{marker}"', str(src), "-o", str(lib)],
        check=True,
    )
    return lib, marker


def vdso(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "shakeout", "vdso", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def test_static_analysis_of_a_file_runs_none_of_its_code(marked):
    lib, marker = marked
    for extra in ([], ["--format", "json"], ["--no-measure"]):
        proc = vdso(lib, *extra)
        assert proc.returncode == 0, proc.stderr
        assert not marker.exists(), f"shakeout vdso {lib} {' '.join(extra)} ran the library's constructor"
    doc = json.loads(vdso(lib, "--format", "json").stdout)
    assert doc["measured"] is False
    assert any("nothing from the file ran" in n for n in doc["notes"]), doc["notes"]
    assert doc["functions"][0]["measured_bytes"] is None


def test_measure_is_an_explicit_opt_in_that_says_it_runs_the_file(marked):
    lib, marker = marked
    proc = vdso(lib, "--measure", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert marker.exists(), "--measure loads the library: its constructor must have run"
    doc = json.loads(proc.stdout)
    assert doc["measured"] is True and doc["functions"][0]["measured_bytes"] is not None
    assert any("its code ran, constructors included" in n for n in doc["notes"]), doc["notes"]
    help_text = vdso("--help").stdout
    assert "RUNS CODE FROM FILE" in help_text and "constructors" in help_text


def test_measure_and_no_measure_exclude_each_other(marked):
    lib, marker = marked
    proc = vdso(lib, "--measure", "--no-measure")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize(("path", "needle"), [("/dev/zero", "a device"), ("/dev/urandom", "a device")])
def test_devices_are_refused_at_once(path, needle):
    proc = vdso(path, timeout=20)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr


def test_fifo_and_directory_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = vdso(fifo, timeout=20)  # reading a FIFO without a writer would block forever
    assert proc.returncode == 2 and "a FIFO" in proc.stderr, proc.stderr
    proc = vdso(tmp_path, timeout=20)
    assert proc.returncode == 2 and "a directory" in proc.stderr, proc.stderr


def test_symlink_to_a_library_is_followed(marked, tmp_path):
    lib, marker = marked
    link = tmp_path / "link.so"
    link.symlink_to(lib)
    proc = vdso(link, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["functions"][0]["name"] == "__vdso_time"
    assert not marker.exists()


def test_size_cap_is_stated(tmp_path):
    huge = tmp_path / "huge.so"
    with open(huge, "wb") as f:
        f.truncate(256 * 1024 * 1024 + 1)  # sparse: nothing is written
    proc = vdso(huge, timeout=20)
    assert proc.returncode == 2 and "256 MiB" in proc.stderr, proc.stderr
