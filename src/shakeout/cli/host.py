"""`shakeout host`: the facts the verdicts use."""

from __future__ import annotations

import argparse
import json

from shakeout.cli.base import Command

EXAMPLES = """\
examples:
  shakeout host
  shakeout host --format json | jq .cpu
  shakeout host --format json > host.json   # attach to a bug report"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="text", choices=["text", "json"], help="output format (default: text)")


def handle(args: argparse.Namespace) -> int:
    from shakeout.host import read_host
    from shakeout.report.text import render_host, stdout_console
    from shakeout.results import SCHEMA

    host = read_host()
    if args.format == "json":
        print(json.dumps({"schema": SCHEMA, "command": "host", **host.to_dict()}, indent=2))
    else:
        render_host(host, stdout_console())
    return 0


COMMAND = Command(
    "host",
    "the facts the verdicts use",
    configure,
    handle,
    description=(
        "The facts the verdicts use: kernel release and version, the compiler that built the kernel, CPU vendor, "
        "family/model/stepping (decimal, hex in brackets, as /proc/cpuinfo shows them), microcode, vector "
        "extensions, RLIMIT_MEMLOCK, CPUs."
    ),
    epilog=EXAMPLES,
)
