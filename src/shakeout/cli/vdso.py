"""`shakeout vdso [FILE]`: stack use of every vDSO function, static and measured."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from shakeout.cli.base import Command, check_output
from shakeout.probespec import is_decimal

MEASURE_HELP = (
    "also measure FILE: this loads FILE with dlopen and RUNS CODE FROM FILE (its constructors included), so only "
    "for a library you trust; without it a FILE is only read (this kernel's vDSO is measured by default)"
)


def _budget(text: str) -> int:
    if not is_decimal(text) or not 0 < int(text) <= 1 << 24:
        raise argparse.ArgumentTypeError(f"'{text}' is not a byte count from 1 to 16777216")
    return int(text)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", type=Path, help="a vDSO image or vDSO-like shared object (default: this vDSO)")
    p.add_argument(
        "--budget",
        type=_budget,
        default=104,
        metavar="BYTES",
        help="flag functions using more bytes than this below the caller's stack pointer (default 104: the stack "
        "Go gave the vDSO before its fix)",
    )
    measuring = p.add_mutually_exclusive_group()
    measuring.add_argument("--measure", action="store_true", help=MEASURE_HELP)
    measuring.add_argument("--no-measure", action="store_true", help="static analysis only, also for this vDSO")
    p.add_argument("--format", default="text", choices=["text", "json"], help="output format (default: text)")
    p.add_argument("--output", type=Path, metavar="FILE", help="write the report to FILE atomically instead of stdout")


def handle(args: argparse.Namespace) -> int:
    from shakeout import __version__
    from shakeout.engine import vdso_report
    from shakeout.outcome import vdso_status
    from shakeout.outputs import write_output
    from shakeout.report.text import plain_console, render_vdso, stdout_console
    from shakeout.results import SCHEMA

    check_output(args)
    # A FILE is measured only on request (measuring runs its code); this vDSO by default.
    report = vdso_report(args.file, args.budget, measure=args.measure if args.file is not None else not args.no_measure)
    if args.format == "json":
        text = json.dumps(report.to_dict(SCHEMA, __version__), indent=2) + "\n"
    elif args.output:
        buffer = io.StringIO()
        render_vdso(report, plain_console(buffer))
        text = buffer.getvalue()
    else:
        render_vdso(report, stdout_console())
        text = ""
    if args.output:
        write_output(args.output, text)
    else:
        sys.stdout.write(text)
    return vdso_status(report)


DESCRIPTION = """\
Stack use of every vDSO function (or of a vDSO image or vDSO-like library FILE), in bytes
below the caller's stack pointer: "static" is an upper bound over every path, "measured"
is what a call really touched; "leaf" says whether the function calls nothing, "probes"
counts its stack-probe instructions, "deepest via" names the call chain of the deepest
use, and "over budget" flags a function needing more than --budget bytes. Exit 1: a
function touches 4 KiB or more below the stack pointer; 3: the analysis is incomplete or
disagrees with the measurement; 0 otherwise."""

EPILOG = """\
examples:
  shakeout vdso
  shakeout vdso --budget 256 --format json
  shakeout vdso ./vdso64.so --no-measure     # a kernel build's image, only read"""

COMMAND = Command(
    "vdso",
    "stack use of every vDSO function, static and measured",
    configure,
    handle,
    description=DESCRIPTION,
    epilog=EPILOG,
)
