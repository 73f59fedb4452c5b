"""`shakeout check`: which known bugs can hurt this machine?"""

from __future__ import annotations

import argparse
from pathlib import Path

from shakeout.cli.base import Command, add_output_options, check_output, duration, emit


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=duration, help="seconds per probe (default: share of a ~12 s budget)")
    p.add_argument("--only", nargs="+", metavar="BUG", help="assess only these catalog bugs")
    p.add_argument("--strict", action="store_true", help="a vulnerable hazard fails the run too")
    add_output_options(p)
    p.add_argument("--state-dir", type=Path, help="also keep report.json and shakeout.prom in DIR (for `status`)")
    p.add_argument("--textfile", type=Path, help="also write the Prometheus text to FILE (node_exporter textfile)")


def handle(args: argparse.Namespace) -> int:
    from shakeout.cli.progress import ConsoleMonitor
    from shakeout.engine import run_check, select_bugs
    from shakeout.fleet.state import check_state_dir, save_run
    from shakeout.host import read_host
    from shakeout.probes import all_probes

    check_output(args)
    check_state_dir(args.state_dir, args.textfile)
    bugs = select_bugs(args.only)
    with ConsoleMonitor() as monitor:
        report = run_check(read_host(), bugs, all_probes(), args.duration, monitor, strict=args.strict)
    save_run(report, args.state_dir, args.textfile)
    return emit(report, args.format, args.output)


COMMAND = Command("check", "which known bugs can hurt this machine? (~15 s)", configure, handle)
