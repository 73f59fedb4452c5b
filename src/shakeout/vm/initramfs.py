"""A gzip-compressed cpio archive in the "newc" format, as the kernel unpacks initramfs.

newc: for every entry a 110-byte ASCII header ("070701" and thirteen 8-digit hex fields:
ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
namesize including its NUL, check), the name, padding to 4 bytes, the data, padding to 4;
the archive ends with an entry named "TRAILER!!!". Python's standard library has no cpio
writer and the format is this small, so it is written here.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass
from typing import Iterable, List

CONSOLE_MAJOR, CONSOLE_MINOR = 5, 1


@dataclass(frozen=True)
class Entry:
    name: str  # path inside the archive, without a leading slash
    mode: int  # including the file type bits
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def directory(name: str) -> Entry:
    return Entry(name, stat.S_IFDIR | 0o755)


def regular(name: str, data: bytes, executable: bool = False) -> Entry:
    return Entry(name, stat.S_IFREG | (0o755 if executable else 0o644), data)


def console() -> Entry:
    """/dev/console, so that the kernel can give init its standard streams."""
    return Entry("dev/console", stat.S_IFCHR | 0o600, rdev_major=CONSOLE_MAJOR, rdev_minor=CONSOLE_MINOR)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(ino: int, entry: Entry, name_size: int) -> bytes:
    fields = [
        ino,
        entry.mode,
        0,
        0,
        2 if stat.S_ISDIR(entry.mode) else 1,
        0,
        len(entry.data),
        0,
        0,
        entry.rdev_major,
        entry.rdev_minor,
        name_size,
        0,
    ]
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def newc(entries: Iterable[Entry]) -> bytes:
    """The uncompressed archive."""
    out: List[bytes] = []
    all_entries = [*entries, Entry("TRAILER!!!", 0)]
    for ino, entry in enumerate(all_entries, start=1):
        name = entry.name.encode() + b"\0"
        head = _header(0 if entry.name == "TRAILER!!!" else ino, entry, len(name)) + name
        out += [head, _pad(len(head)), entry.data, _pad(len(entry.data))]
    return b"".join(out)


def build(entries: Iterable[Entry]) -> bytes:
    """The gzip-compressed archive, ready for qemu -initrd."""
    return gzip.compress(newc(entries), compresslevel=6, mtime=0)
