"""`shakeout triage [FILE...|-]`: from pasted crash output to ranked suspects."""

from __future__ import annotations

import argparse
from pathlib import Path

from shakeout.cli.base import Command


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE", help="crash logs; '-' or none reads standard input")
    p.add_argument("--format", default="text", choices=["text", "json", "markdown"], help="(default: text)")
    p.add_argument("--output", type=Path, help="write the report to FILE atomically instead of stdout")


def handle(args: argparse.Namespace) -> int:
    from shakeout.triage.cli import triage_command

    return triage_command(args.files, args.format, args.output)


COMMAND = Command(
    "triage", "from pasted crash output to ranked suspects and the commands that decide", configure, handle
)
