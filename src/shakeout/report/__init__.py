"""Renderers: RunReport -> text | json | junit | prometheus, and atomic output files.

Each renderer is a pure function of the report. Text is for people (rich tables, colour
only on a terminal); the other formats are for machines and are stable.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict

from shakeout.errors import ShakeoutError, UsageError
from shakeout.report.jsonfmt import render_json
from shakeout.report.junit import render_junit
from shakeout.report.prom import render_prometheus
from shakeout.report.text import render_text_plain
from shakeout.results import RunReport

FORMATS: Dict[str, Callable[[RunReport], str]] = {
    "text": render_text_plain,
    "json": render_json,
    "junit": render_junit,
    "prometheus": render_prometheus,
}


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise UsageError("unknown format '{}' (use one of: {})".format(name, ", ".join(FORMATS)))
    return name


def check_output_path(path: Path) -> None:
    """Fail before a long run, not after it, when the output cannot be written."""
    parent = path.parent if str(path.parent) else Path()
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(str(parent), os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {path}: directory {parent} is not writable")


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside path and rename it over path; nothing is left on failure."""
    check_output_path(path)
    parent = path.parent if str(path.parent) else Path()
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(parent))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, str(path))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ShakeoutError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
