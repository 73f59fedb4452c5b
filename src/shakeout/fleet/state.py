"""The state directory a scheduled `check` leaves behind, and `status` reads.

    /var/lib/shakeout/report.json    the last full JSON report
    /var/lib/shakeout/shakeout.prom  the same run as Prometheus text (node_exporter's textfile format)

Both are replaced atomically (shakeout.outputs: a temporary file in the same directory,
fsync, rename), so node_exporter and `status` see the previous run or this one, never half.
`--textfile FILE` writes the Prometheus text to FILE as well, for a textfile collector
directory shared with other exporters (Debian's is /var/lib/prometheus/node-exporter).
The directory must exist: systemd creates it (StateDirectory=shakeout); a typo should not
make a new directory that nobody reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from shakeout.errors import UsageError
from shakeout.outputs import check_output_path, write_output

DEFAULT_STATE_DIR = Path("/var/lib/shakeout")
REPORT_NAME = "report.json"
TEXTFILE_NAME = "shakeout.prom"


def report_path(state_dir: Path) -> Path:
    return state_dir / REPORT_NAME


def check_state_dir(state_dir: Path, textfile: Optional[Path] = None) -> None:
    """Before any probe runs: the state directory exists and both files (and FILE) can be written."""
    if "\0" in str(state_dir):
        raise UsageError(f"cannot use state directory {str(state_dir)!r}: a name cannot contain a NUL byte")
    if not os.path.isdir(state_dir):
        raise UsageError(f"state directory {state_dir} does not exist (create it, or let systemd's StateDirectory=)")
    check_output_path(state_dir / REPORT_NAME)
    check_output_path(state_dir / TEXTFILE_NAME)
    if textfile is not None:
        check_output_path(textfile)


def write_state(state_dir: Path, report_json: str, prometheus_text: str, textfile: Optional[Path] = None) -> None:
    """The Prometheus text first, the report last: report.json's age is the age of the whole set."""
    if textfile is not None:
        write_output(textfile, prometheus_text)
    write_output(state_dir / TEXTFILE_NAME, prometheus_text)
    write_output(state_dir / REPORT_NAME, report_json)
