"""`shakeout merge`: many hosts' check reports in, the pattern across hosts out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shakeout.cli.base import Command, check_output

EPILOG = """examples:
  shakeout merge reports/*.json
  shakeout merge --format markdown /srv/shakeout-reports/ > fleet.md
  ssh host1 shakeout check --quiet --format json | shakeout merge - other.json

exit status: bits, so that both facts survive together:
  0 every input merged, no defect vulnerable on any host
  1 a defect is vulnerable on some host
  4 some inputs were skipped (one line each on stderr); 5 both
  2 usage error, or no input was a check report"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "reports", nargs="+", metavar="REPORT", help="check reports (JSON): files, directories, or - for stdin"
    )
    p.add_argument(
        "--format", default="text", choices=["text", "json", "markdown"], help="output format (default: text)"
    )
    p.add_argument("--output", type=Path, help="write the summary to FILE atomically instead of stdout")


def handle(args: argparse.Namespace) -> int:
    from shakeout.errors import ShakeoutError
    from shakeout.fleet.merge import merge
    from shakeout.fleet.render import MERGE_FORMATS
    from shakeout.fleet.sources import load_inputs
    from shakeout.fleet.status import printable
    from shakeout.outputs import write_output

    check_output(args)
    summary = merge(load_inputs(args.reports))
    for skipped in summary.rejected:
        print(f"shakeout merge: skipped {printable(skipped.source)}: {printable(skipped.reason)}", file=sys.stderr)
    if summary.hosts == 0:
        raise ShakeoutError(f"none of the {len(summary.rejected)} inputs is a shakeout check report")
    text = MERGE_FORMATS[args.format](summary)
    if args.output is not None:
        write_output(args.output, text)
    else:
        sys.stdout.write(text)
    return summary.exit_status


COMMAND = Command(
    "merge",
    "many hosts' check reports: per-bug counts and the attributes that separate vulnerable hosts",
    configure,
    handle,
    epilog=EPILOG,
)
