"""Writing the file a user names with --output, the way a careful Unix tool does.

- A regular file (new or existing) is replaced atomically: the text goes to a temporary
  file in the same directory, is flushed to disk and renamed over the name, so a reader
  sees the old report or the new one, never half of one, and a failure leaves nothing.
  An existing file keeps its mode (and, when we may, its owner); a new one gets
  0666 minus the umask, as `>` in a shell would.
- A symlink is followed: its final target is replaced, in the target's own directory, and
  the link stays a link. A name that resolves into /proc (such as /dev/stdout ->
  /proc/self/fd/1) is written in place: it is the caller's open file, not a name.
- A character device (/dev/null, a terminal), a FIFO or a Unix socket is written in place:
  opened (connected, for a socket) and written, never renamed over.
- A block device, a directory, a missing directory, an unwritable place, a name longer than
  the file system allows: a one-line UsageError from `check_output_path`, which commands
  call before any probe runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Optional

from shakeout.errors import ShakeoutError, UsageError

TEMP_PREFIX = ".shakeout-"  # short, so that any name the file system accepts has a temporary twin


def _stat(path: Path) -> Optional[os.stat_result]:
    try:
        return os.stat(path)  # follows symlinks: what matters is what the name leads to
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _in_place(path: Path, info: Optional[os.stat_result]) -> bool:
    if info is not None and (stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode)):
        return True
    return os.path.realpath(path).startswith("/proc/")


def _target(path: Path) -> Path:
    """The regular file that will really be replaced: the final target of any symlinks."""
    return Path(os.path.realpath(path))


def _name_fits(target: Path) -> None:
    try:
        name_max = os.pathconf(str(target.parent), "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(target.name)) > name_max:
        raise UsageError(f"cannot write {target}: the file name is longer than {name_max} bytes")


def _probe_directory(directory: Path, shown: Path) -> None:
    """Create and remove a temporary file: the only sure test that the rename will work."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=str(directory))
    except OSError as exc:
        raise UsageError(f"cannot write {shown}: directory {directory}: {exc.strerror or exc}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def check_output_path(path: Path) -> None:
    """Fail before a long run, not after it, when the output cannot be written."""
    if "\0" in str(path):
        raise UsageError(f"cannot write {str(path)!r}: a file name cannot contain a NUL byte")
    info = _stat(path)
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise UsageError(f"cannot write {path}: it is a directory")
    if info is not None and stat.S_ISBLK(info.st_mode):
        raise UsageError(f"cannot write {path}: it is a block device (a report never goes onto a disk device)")
    if _in_place(path, info):
        if info is None or (not stat.S_ISSOCK(info.st_mode) and not os.access(str(path), os.W_OK)):
            raise UsageError(f"cannot write {path}: not writable")
        return
    target = _target(path)
    if not target.parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {target.parent} does not exist")
    _name_fits(target)
    if info is not None and not os.access(str(target), os.W_OK):
        raise UsageError(f"cannot write {path}: permission denied (the file is not writable by this user)")
    _probe_directory(target.parent, path)


def _write_in_place(path: Path, data: bytes, info: Optional[os.stat_result]) -> None:
    if info is not None and stat.S_ISSOCK(info.st_mode):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            sock.sendall(data)
        return
    with open(path, "wb") as f:
        f.write(data)


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _replace(target: Path, data: bytes, info: Optional[os.stat_result]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=str(target.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if info is not None:
            os.chmod(tmp, stat.S_IMODE(info.st_mode))
            with contextlib.suppress(OSError):
                os.chown(tmp, info.st_uid, info.st_gid)
        else:
            os.chmod(tmp, _new_file_mode())
        os.replace(tmp, str(target))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_output(path: Path, text: str) -> None:
    """Write text to path as the module docstring says; any failure is one ShakeoutError line."""
    check_output_path(path)
    data = text.encode("utf-8")
    info = _stat(path)
    try:
        if _in_place(path, info):
            _write_in_place(path, data, info)
        else:
            _replace(_target(path), data, info)
    except OSError as exc:
        raise ShakeoutError(f"cannot write {path}: {exc.strerror or exc}") from None
