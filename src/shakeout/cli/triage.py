"""`shakeout triage [FILE...|-]`: from pasted crash output to ranked suspects."""

from __future__ import annotations

import argparse
from pathlib import Path

from shakeout.cli.base import Command


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE", help="crash logs; '-' or none reads standard input")
    p.add_argument(
        "--format", default="text", choices=["text", "json", "markdown"], help="output format (default: text)"
    )
    p.add_argument("--output", type=Path, metavar="FILE", help="write the report to FILE atomically instead of stdout")


def handle(args: argparse.Namespace) -> int:
    from shakeout.triage.cli import triage_command

    return triage_command(args.files, args.format, args.output)


EPILOG = """\
examples:
  shakeout triage crash.log
  journalctl -k -b -1 | shakeout triage -
  shakeout triage --format markdown crash.log > triage.md   # paste into a bug report"""

COMMAND = Command(
    "triage",
    "from pasted crash output to ranked suspects and the commands that decide",
    configure,
    handle,
    epilog=EPILOG,
)
