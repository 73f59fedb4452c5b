"""The state directory a scheduled `check` leaves behind, and `status` reads.

    /var/lib/shakeout/report.json    the last full JSON report
    /var/lib/shakeout/shakeout.prom  the same run as Prometheus text (node_exporter's textfile format)

`check --state-dir DIR` writes both; `check --textfile FILE` writes the Prometheus text to
FILE as well (or alone), for a textfile collector directory shared with other exporters
(Debian's is /var/lib/prometheus/node-exporter). Every file is replaced atomically
(shakeout.outputs: a temporary file in the same directory, fsync, rename), so node_exporter
and `status` see the previous run or this one, never half. The directory must exist:
systemd creates it (StateDirectory=shakeout); a typo should not make a directory nobody reads.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from shakeout.errors import UsageError

if TYPE_CHECKING:
    from shakeout.results import RunReport

DEFAULT_STATE_DIR = Path("/var/lib/shakeout")
REPORT_NAME = "report.json"
TEXTFILE_NAME = "shakeout.prom"


def report_path(state_dir: Path) -> Path:
    return state_dir / REPORT_NAME


def _check_state_file(path: Path) -> None:
    """A file node_exporter or `status` reads: writable, and a regular file if it exists (a
    FIFO there would block a scheduled check for ever; a device is nobody's textfile)."""
    from shakeout.outputs import check_output_path  # not at the top: `status` imports this module and must start fast

    check_output_path(path)
    try:
        mode = os.stat(path).st_mode  # through a symlink: what it points at counts
    except OSError:
        return  # does not exist yet (check_output_path said why if it cannot be created)
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise UsageError(f"cannot write {path}: it is {kind}, not a file (node_exporter and `status` read files)")


def check_state_dir(state_dir: Optional[Path], textfile: Optional[Path] = None) -> None:
    """Before any probe runs: the state directory exists and every file can be written."""
    if textfile is not None:
        _check_state_file(textfile)
    if state_dir is None:
        return
    if "\0" in str(state_dir):
        raise UsageError(f"cannot use state directory {str(state_dir)!r}: a name cannot contain a NUL byte")
    if not os.path.isdir(state_dir):
        raise UsageError(f"state directory {state_dir} does not exist (create it, or let systemd's StateDirectory=)")
    _check_state_file(state_dir / REPORT_NAME)
    _check_state_file(state_dir / TEXTFILE_NAME)


def write_state(state_dir: Optional[Path], report_json: str, prometheus_text: str, textfile: Optional[Path]) -> None:
    """The Prometheus text first, the report last: report.json's age is the age of the whole set."""
    from shakeout.outputs import write_output

    if textfile is not None:
        write_output(textfile, prometheus_text)
    if state_dir is not None:
        write_output(state_dir / TEXTFILE_NAME, prometheus_text)
        write_output(state_dir / REPORT_NAME, report_json)


def save_run(report: RunReport, state_dir: Optional[Path], textfile: Optional[Path]) -> None:
    """check's report into the state directory and/or the textfile (nothing when neither was asked)."""
    if state_dir is None and textfile is None:
        return
    from shakeout.report import FORMATS

    write_state(state_dir, FORMATS["json"](report), FORMATS["prometheus"](report), textfile)
