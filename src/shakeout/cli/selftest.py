"""`shakeout selftest`: inject each probe's fault and show that it is caught here."""

from __future__ import annotations

import argparse

from shakeout.cli.base import Command, add_output_options, check_output, emit


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", nargs="+", metavar="PROBE", help="test only these probes")
    add_output_options(p)


def handle(args: argparse.Namespace) -> int:
    from shakeout.cli.progress import ConsoleMonitor
    from shakeout.engine import run_selftest
    from shakeout.host import read_host
    from shakeout.probes import all_probes, get_probe

    specs = [get_probe(p) for p in args.only] if args.only else list(all_probes().values())
    check_output(args)
    with ConsoleMonitor() as monitor:
        report = run_selftest(read_host(), specs, monitor)
    return emit(report, args.format, args.output)


COMMAND = Command("selftest", "inject each probe's fault and show it is caught here", configure, handle)
