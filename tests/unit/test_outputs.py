"""--output behaves as a careful Unix tool: devices in place, symlinks followed, modes kept."""

import os
import socket
import stat
import subprocess
import sys
import threading

import pytest

from shakeout.errors import UsageError
from shakeout.outputs import check_output_path, write_output


def _only(directory, *names):
    assert sorted(os.listdir(directory)) == sorted(names)


def test_dev_null_stays_a_character_device():
    # Seen: `--output /dev/null` turned /dev/null into a regular file.
    before = os.stat("/dev/null")
    write_output(__import__("pathlib").Path("/dev/null"), "report\n")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino


def test_dev_stdout_is_written_in_place_not_replaced(tmp_path):
    # Seen: `--output /dev/stdout` replaced the symlink. Through a pipe, as a user would.
    code = (
        "from pathlib import Path; from shakeout.outputs import write_output; "
        "write_output(Path('/dev/stdout'), 'hi\\n')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout == "hi\n"
    assert os.path.islink("/dev/stdout")


def test_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_output(fifo, "through the fifo")
    reader.join(5)
    assert got == ["through the fifo"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    _only(tmp_path, "fifo")


def test_unix_socket_is_written_in_place(tmp_path):
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    write_output(path, "to the socket")
    conn, _ = server.accept()
    assert conn.recv(100) == b"to the socket"
    conn.close()
    server.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)


def test_symlink_is_followed_and_stays_a_link(tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "report.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_output(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    _only(real_dir, "report.json")
    _only(tmp_path, "real", "link.json")


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "made.json")
    write_output(link, "x")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "x"


def test_existing_file_keeps_its_mode(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    write_output(target, "new")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640 and target.read_text() == "new"


def test_new_file_respects_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_output(tmp_path / "new.json", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o640


def test_replaced_atomically_and_nothing_left(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    write_output(target, "new")
    assert target.read_text() == "new"
    _only(tmp_path, "out.json")


def test_longest_name_the_file_system_accepts_works_and_longer_is_refused(tmp_path):
    name_max = os.pathconf(str(tmp_path), "PC_NAME_MAX")
    write_output(tmp_path / ("a" * name_max), "x")  # the temporary name must not be longer
    with pytest.raises(UsageError, match=r"(?i)too long|longer than"):
        check_output_path(tmp_path / ("b" * (name_max + 1)))
    _only(tmp_path, "a" * name_max)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/proc/x", "cannot write /proc/x"),
        ("/proc", "is a directory"),
        ("/nonexistent-dir/out.json", "does not exist"),
    ],
)
def test_unwritable_places_are_one_line_errors_before_any_work(path, message):
    with pytest.raises(UsageError, match=message):
        check_output_path(__import__("pathlib").Path(path))


def test_block_device_is_refused():
    blocks = [
        os.path.join("/dev", n) for n in os.listdir("/dev") if stat.S_ISBLK(os.stat(os.path.join("/dev", n)).st_mode)
    ]
    if not blocks:
        pytest.skip("this machine shows no block device in /dev")
    with pytest.raises(UsageError, match="block device"):
        check_output_path(__import__("pathlib").Path(blocks[0]))


def _as_nobody(code):
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file another user cannot write")
def test_a_root_owned_file_is_refused_for_another_user():
    import tempfile
    from pathlib import Path

    shared = Path(tempfile.mkdtemp(prefix="shakeout-test-"))
    shared.chmod(0o777)
    target = shared / "root.json"
    target.write_text("root's")
    target.chmod(0o644)
    code = (
        "from pathlib import Path; from shakeout.outputs import check_output_path\n"
        f"check_output_path(Path({str(target)!r}))"
    )
    try:
        proc = _as_nobody(code)
        assert proc.returncode != 0 and "permission denied" in proc.stderr
        assert target.read_text() == "root's"
    finally:
        target.unlink()
        shared.rmdir()


def test_a_nul_byte_in_the_name_is_a_usage_error():
    from pathlib import Path

    from shakeout.inputs import check_input_file

    with pytest.raises(UsageError, match="NUL byte"):
        check_output_path(Path("a\0b"))
    with pytest.raises(UsageError, match="NUL byte"):
        check_input_file(Path("a\0b"), "log", 10)
