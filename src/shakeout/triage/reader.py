"""Streaming the user's crash output into the matcher, with bounds on time and memory.

Regular files are read in blocks of BLOCK_BYTES, however large: memory stays bounded by
the block size and the matcher's own caps. A FIFO or standard input (`-`, the paste case)
is read up to STREAM_CAP_BYTES and then cut, with a note. Devices, directories and sockets
are refused before anything is read, as shakeout.inputs does, because /dev/zero never ends.
Bytes are decoded as UTF-8 with replacement, so mixed encodings cost a few characters, not
the run. A line longer than MAX_LINE_CHARS is cut (the rest is skipped, with a note), and
a line that is mostly control characters (binary data) is skipped, with a note.
"""

from __future__ import annotations

import codecs
import os
import stat
import sys
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, Sequence

from shakeout.errors import UsageError
from shakeout.inputs import MIB
from shakeout.triage.matcher import Scanner

BLOCK_BYTES = 1 * MIB
STREAM_CAP_BYTES = 64 * MIB
MAX_LINE_CHARS = 64 * 1024
STDIN = "-"
_TEXT_CONTROLS = "\t\r\f\v\x1b"


@dataclass
class InputStats:
    name: str
    bytes_read: int = 0
    lines_cut: int = 0
    binary_lines: int = 0
    truncated_at: int = 0  # bytes; 0 when read to the end
    undecodable_bytes: bool = False

    def notes(self) -> List[str]:
        out = []
        if self.truncated_at:
            out.append(
                f"{self.name}: read the first {self.truncated_at // MIB} MiB only (a pipe or FIFO is cut there); "
                "save the log to a file to triage all of it"
            )
        if self.lines_cut:
            out.append(f"{self.name}: {self.lines_cut} line(s) longer than {MAX_LINE_CHARS // 1024} KiB were cut")
        if self.binary_lines:
            out.append(f"{self.name}: skipped {self.binary_lines} line(s) of binary data")
        if self.undecodable_bytes:
            out.append(f"{self.name}: bytes that are not UTF-8 were replaced by U+FFFD")
        if self.bytes_read == 0:
            out.append(f"{self.name}: empty")
        return out


def check_sources(names: Sequence[str]) -> None:
    """Refuse, before reading anything, what cannot be read or would never end."""
    for name in names:
        if name == STDIN:
            continue
        try:
            mode = os.stat(name).st_mode
        except OSError as exc:
            raise UsageError(f"cannot read crash log {name}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(mode):
            raise UsageError(f"cannot read crash log {name}: it is a directory")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise UsageError(f"cannot read crash log {name}: it is a device or socket, not a file, FIFO or '-'")
        if not os.access(name, os.R_OK):
            raise UsageError(f"cannot read crash log {name}: permission denied")


def _is_binary(line: str) -> bool:
    if "\x00" in line:
        return True
    controls = sum(1 for ch in line if ch < " " and ch not in _TEXT_CONTROLS)
    return controls * 4 > len(line) and controls > 2


def _clean(stats: InputStats, text: str) -> str:
    """Cut overlong lines and blank out binary ones (keeping the numbering of what follows)."""
    if "\ufffd" in text:
        stats.undecodable_bytes = True
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if len(line) > MAX_LINE_CHARS:
            lines[i] = line = line[:MAX_LINE_CHARS]
            stats.lines_cut += 1
        if _is_binary(line):
            stats.binary_lines += 1
            lines[i] = ""
    return "\n".join(lines)


def _blocks(stream: BinaryIO, stats: InputStats, cap_bytes: int) -> Iterator[str]:
    """Text chunks of whole lines (the last may lack its newline); cap_bytes 0 means no cap."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    carry = ""
    skipping = False  # inside the rest of an overlong line that was already cut
    while True:
        want = min(BLOCK_BYTES, cap_bytes - stats.bytes_read) if cap_bytes else BLOCK_BYTES
        data = stream.read(want)
        stats.bytes_read += len(data)
        capped = bool(cap_bytes) and stats.bytes_read >= cap_bytes
        final = not data or capped
        text, carry = carry + decoder.decode(data, final=final), ""
        if skipping:
            newline = text.find("\n")
            if newline < 0 and not final:
                continue
            text, skipping = ("" if newline < 0 else text[newline + 1 :]), False
        cut = len(text) if final else text.rfind("\n") + 1
        whole, carry = text[:cut], text[cut:]
        if len(carry) > MAX_LINE_CHARS:
            whole, carry, skipping = whole + carry + "\n", "", True  # _clean cuts it to MAX_LINE_CHARS
        if whole:
            yield _clean(stats, whole)
        if final:
            if capped and stream.read(1):
                stats.truncated_at = stats.bytes_read
            return


def _open(name: str) -> BinaryIO:
    if name == STDIN:
        return sys.stdin.buffer
    try:
        return open(name, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read crash log {name}: {exc.strerror or exc}") from None


def scan_sources(names: Sequence[str], scanner: Scanner) -> List[InputStats]:
    """Stream every named input (or '-') through the scanner; the statistics of each."""
    check_sources(names)
    all_stats = []
    for name in names:
        label = "<stdin>" if name == STDIN else name
        stats = InputStats(label)
        stream = _open(name)
        regular = name != STDIN and stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
        try:
            for chunk in _blocks(stream, stats, 0 if regular else STREAM_CAP_BYTES):
                scanner.feed(label, chunk)
        except OSError as exc:
            raise UsageError(f"cannot read crash log {label}: {exc.strerror or exc}") from None
        finally:
            if name != STDIN:
                stream.close()
        all_stats.append(stats)
    return all_stats
