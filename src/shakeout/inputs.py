"""Reading files the user names: regular files only, with a stated size cap.

A device (/dev/zero, /dev/urandom), a FIFO or a socket can deliver data forever, and a
read of it blocks inside C where no signal handler runs, so shakeout refuses them before
it reads a byte. A regular file larger than the cap for its kind is refused too, with the
cap in the message. Symlinks are followed: what counts is what they point to.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from shakeout.errors import UsageError

MIB = 1 << 20


def _describe(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _cap_text(cap_bytes: int) -> str:
    return f"{cap_bytes // MIB} MiB" if cap_bytes >= MIB else f"{cap_bytes} bytes"


def check_input_file(path: Path, what: str, cap_bytes: int) -> int:
    """Raise a UsageError unless path is a readable regular file of at most cap_bytes; its size."""
    if "\0" in str(path):
        raise UsageError(f"cannot read {what} {str(path)!r}: a file name cannot contain a NUL byte")
    try:
        info = os.stat(path)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"cannot read {what} {path}: it is {_describe(info.st_mode)}, not a regular file")
    if info.st_size > cap_bytes:
        raise UsageError(
            f"cannot read {what} {path}: it is {info.st_size:,} bytes, more than the {_cap_text(cap_bytes)} "
            "this command reads"
        )
    return info.st_size


def read_input_bytes(path: Path, what: str, cap_bytes: int) -> bytes:
    """The whole content of a regular file of at most cap_bytes (it may not grow past the cap)."""
    check_input_file(path, what, cap_bytes)
    try:
        with open(path, "rb") as f:
            data = f.read(cap_bytes + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > cap_bytes:
        raise UsageError(f"cannot read {what} {path}: it grew past the {_cap_text(cap_bytes)} this command reads")
    return data


def read_input_text(path: Path, what: str, cap_bytes: int) -> str:
    """As read_input_bytes, decoded as UTF-8; bytes that are not UTF-8 are a one-line error."""
    data = read_input_bytes(path, what, cap_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {what} {path}: it is not UTF-8 text (byte {exc.start})") from None
