"""`--quiet` for scripts (check, run, selftest, vm): no progress on stderr, and a text
report reduced to the verdict line (shakeout/outcome.py). Other formats are unchanged."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING, Iterator

from shakeout.cli.base import emit

if TYPE_CHECKING:
    from shakeout.engine import Monitor
    from shakeout.results import RunReport


def add_quiet_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress; the text report is only its verdict line (other formats unchanged)",
    )


@contextlib.contextmanager
def progress_monitor(quiet: bool) -> Iterator[Monitor]:
    """Progress bars or lines on stderr, or none at all with --quiet."""
    from shakeout.engine import Monitor

    if quiet:
        yield Monitor()
        return
    from shakeout.cli.progress import ConsoleMonitor

    with ConsoleMonitor() as monitor:
        yield monitor


def emit_report(report: RunReport, args: argparse.Namespace) -> int:
    """emit(), except that --quiet with the text format writes only the verdict line."""
    if not (args.quiet and args.format == "text"):
        return emit(report, args.format, args.output)
    from shakeout.outcome import verdict_line
    from shakeout.report import write_atomically

    line = verdict_line(report) + "\n"
    if args.output is not None:
        write_atomically(args.output, line)
    else:
        sys.stdout.write(line)
    assert report.exit_status is not None, "every engine function settles its report"
    return report.exit_status
