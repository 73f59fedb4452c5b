"""What every command module shares: the Command record, option types, report output.

A command is one module in this package that exports COMMAND (or COMMANDS): its name, its
one-line help, `configure(parser)` that declares its options next to `handle(args)`, which
calls one library function, renders, and returns the exit status. Library imports live in
the handlers, so that a command that needs little (`status`, `--help`) starts fast.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn, Optional, Tuple

from shakeout.errors import UsageError
from shakeout.probespec import is_decimal

if TYPE_CHECKING:
    from shakeout.results import RunReport

MAX_DURATION_S = 7 * 24 * 3600
MAX_WORKERS = 1024
REPORT_FORMATS = ("text", "json", "junit", "prometheus", "ocp")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    handle: Callable[[argparse.Namespace], int]
    description: Optional[str] = None
    epilog: Optional[str] = None


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to look) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0 or value > MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"{text} s is out of range (more than 0, at most {MAX_DURATION_S} s = 7 days)")
    return value


def workers(text: str) -> int:
    if not is_decimal(text) or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"'{text}' is not a worker count from 1 to {MAX_WORKERS}")
    return int(text)


def add_output_options(p: argparse.ArgumentParser, formats: Tuple[str, ...] = REPORT_FORMATS) -> None:
    p.add_argument("--format", default="text", choices=list(formats), help="output format (default: text)")
    p.add_argument("--output", type=Path, metavar="FILE", help="write the report to FILE atomically instead of stdout")


def check_output(args: argparse.Namespace) -> None:
    """Refuse an unusable --output before any work is done."""
    if getattr(args, "output", None) is not None:
        from shakeout.outputs import check_output_path

        check_output_path(args.output)


def emit(report: RunReport, fmt: str, output: Optional[Path]) -> int:
    """Render the report as asked and return its exit status (settled by the engine)."""
    from shakeout.report import FORMATS, write_atomically
    from shakeout.report.text import render_report, stdout_console

    if output is not None:
        write_atomically(output, FORMATS[fmt](report))
        print(f"shakeout: wrote {fmt} report to {output}", file=sys.stderr)
    elif fmt == "text":
        render_report(report, stdout_console())
    else:
        sys.stdout.write(FORMATS[fmt](report))
    assert report.exit_status is not None, "every engine function settles its report"
    return report.exit_status
