"""`shakeout host`: the facts the verdicts use."""

from __future__ import annotations

import argparse
import json

from shakeout.cli.base import Command


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="text", choices=["text", "json"])


def handle(args: argparse.Namespace) -> int:
    from shakeout.host import read_host
    from shakeout.report.text import render_host, stdout_console

    host = read_host()
    if args.format == "json":
        print(json.dumps(host.to_dict(), indent=2))
    else:
        render_host(host, stdout_console())
    return 0


COMMAND = Command("host", "the facts the verdicts use", configure, handle)
