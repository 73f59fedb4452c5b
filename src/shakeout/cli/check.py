"""`shakeout check`: which known bugs can hurt this machine?"""

from __future__ import annotations

import argparse

from shakeout.cli.base import Command, add_output_options, check_output, duration, emit


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=duration, help="seconds per probe (default: share of a ~12 s budget)")
    p.add_argument("--only", nargs="+", metavar="BUG", help="assess only these catalog bugs")
    p.add_argument("--strict", action="store_true", help="a vulnerable hazard fails the run too")
    add_output_options(p)


def handle(args: argparse.Namespace) -> int:
    from shakeout.cli.progress import ConsoleMonitor
    from shakeout.engine import run_check, select_bugs
    from shakeout.host import read_host
    from shakeout.probes import all_probes

    check_output(args)
    bugs = select_bugs(args.only)
    with ConsoleMonitor() as monitor:
        report = run_check(read_host(), bugs, all_probes(), args.duration, monitor, strict=args.strict)
    return emit(report, args.format, args.output)


COMMAND = Command("check", "which known bugs can hurt this machine? (~15 s)", configure, handle)
