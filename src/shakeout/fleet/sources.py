"""Where merge's reports come from: files, directories (every *.json below them) or stdin.

Files and stdin are read with a size cap, regular files only (a FIFO or a device named
inside a directory is skipped, never opened). Stdin may carry any number of JSON documents
one after another (`cat */report.json | shakeout merge -`). Every problem with one input
becomes a `Rejected` with a one-line reason; only a path that does not exist at all is a
usage error, because it is a typo, not a broken report.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, BinaryIO, Iterator, List, Optional, Tuple, Union

from shakeout.errors import UsageError
from shakeout.fleet.reports import HostReport, Rejected, parse_report

MIB = 1 << 20
REPORT_CAP_BYTES = 16 * MIB  # a check report is ~10 KB; this leaves room for any probe's evidence
STDIN_CAP_BYTES = 1024 * MIB

Loaded = Union[HostReport, Rejected]


def _regular_files(directory: Path) -> Iterator[Tuple[Path, Optional[str]]]:
    """Every *.json below directory, sorted; (path, reason) for ones that are not regular files."""
    for root, dirs, files in os.walk(directory):  # symlinked directories are not followed: no loops
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            path = Path(root, name)
            try:
                mode = os.stat(path).st_mode
            except OSError as exc:
                yield path, f"cannot read: {exc.strerror or exc}"
                continue
            yield path, None if stat.S_ISREG(mode) else "not a regular file"


def _read_capped(f: BinaryIO, cap_bytes: int) -> Optional[bytes]:
    data = f.read(cap_bytes + 1)
    return None if len(data) > cap_bytes else data


def _decode(data: bytes, source: str) -> Union[Any, Rejected]:
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        return Rejected(source, f"not UTF-8 (byte {exc.start})")
    except ValueError as exc:
        return Rejected(source, f"not JSON ({exc})")


def load_file(path: Path) -> Loaded:
    source = str(path)
    try:
        # O_NONBLOCK: a FIFO swapped in after the caller's stat() opens at once and is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return Rejected(source, "not a regular file")
            data = _read_capped(f, REPORT_CAP_BYTES)
    except OSError as exc:
        return Rejected(source, f"cannot read: {exc.strerror or exc}")
    if data is None:
        return Rejected(source, f"larger than {REPORT_CAP_BYTES // MIB} MiB, not a check report")
    doc = _decode(data, source)
    return doc if isinstance(doc, Rejected) else parse_report(doc, source)


def split_documents(text: str) -> Iterator[Tuple[int, Union[Any, str]]]:
    """(index, document or the reason the rest is unreadable) for JSON documents one after another."""
    decoder = json.JSONDecoder()
    position, index = 0, 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return
        index += 1
        try:
            doc, position = decoder.raw_decode(text, position)
        except ValueError as exc:
            yield index, f"not JSON ({exc}); the rest of stdin was not read"
            return
        yield index, doc


def load_stdin(stream: BinaryIO) -> List[Loaded]:
    data = _read_capped(stream, STDIN_CAP_BYTES)
    if data is None:
        return [Rejected("<stdin>", f"more than {STDIN_CAP_BYTES // MIB} MiB; nothing from stdin was merged")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Rejected("<stdin>", f"not UTF-8 (byte {exc.start}); nothing from stdin was merged")]
    out: List[Loaded] = []
    for index, doc in split_documents(text):
        source = f"<stdin>#{index}"
        out.append(Rejected(source, doc) if isinstance(doc, str) else parse_report(doc, source))
    return out


def _load_path(name: str) -> List[Loaded]:
    if "\0" in name:
        raise UsageError(f"cannot read {name!r}: a file name cannot contain a NUL byte")
    path = Path(name)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UsageError(f"cannot read {name}: no such file or directory") from None
    except OSError as exc:
        return [Rejected(name, f"cannot read: {exc.strerror or exc}")]
    if stat.S_ISDIR(mode):
        return [load_file(p) if reason is None else Rejected(str(p), reason) for p, reason in _regular_files(path)]
    if not stat.S_ISREG(mode):
        return [Rejected(name, "not a regular file or directory")]
    return [load_file(path)]


def load_inputs(names: List[str], stdin: Optional[BinaryIO] = None) -> List[Loaded]:
    """Every report named (in order); '-' reads stdin once."""
    out: List[Loaded] = []
    stdin_read = False
    for name in names:
        if name == "-":
            if not stdin_read:
                out.extend(load_stdin(stdin if stdin is not None else sys.stdin.buffer))
                stdin_read = True
            continue
        out.extend(_load_path(name))
    return out
