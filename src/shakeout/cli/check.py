"""`shakeout check`: which known bugs can hurt this machine?"""

from __future__ import annotations

import argparse
from pathlib import Path

from shakeout.cli.base import Command, add_output_options, check_output, duration
from shakeout.cli.help import add_epilog
from shakeout.cli.quiet import add_quiet_option, emit_report, progress_monitor

EXAMPLES = """\
  shakeout check
  shakeout check --only linux-signal-vector --duration 60   # one bug, a minute of its probe
  shakeout check --quiet --format json --output report.json  # for a bug report or CI"""

DESCRIPTION = """\
Every catalog bug gets a verdict with its reason: a defect is vulnerable, not-vulnerable,
not-applicable or unknown; a hazard (documented behaviour your programs must avoid, not a
defect of this machine) is present or absent. Probes run one after another and share a
~12 s budget. Exit 0: no defect vulnerable; 1: a defect vulnerable (or, with --strict, a
hazard present); 3: nothing vulnerable but something unknown; 2: usage error."""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--duration", type=duration, metavar="SECONDS", help="seconds per probe (default: a share of a ~12 s budget)"
    )
    p.add_argument("--only", nargs="+", metavar="BUG", help="assess only these catalog bugs (names below)")
    p.add_argument("--strict", action="store_true", help="a present hazard fails the run too (exit 1)")
    add_quiet_option(p)
    add_output_options(p)
    p.add_argument("--state-dir", type=Path, help="also keep report.json and shakeout.prom in DIR (for `status`)")
    p.add_argument("--textfile", type=Path, help="also write the Prometheus text to FILE (node_exporter textfile)")
    add_epilog(p, EXAMPLES, bugs=True)


def handle(args: argparse.Namespace) -> int:
    from shakeout.engine import run_check, select_bugs
    from shakeout.fleet.state import check_state_dir, save_run
    from shakeout.host import read_host
    from shakeout.probes import all_probes

    check_output(args)
    check_state_dir(args.state_dir, args.textfile)
    bugs = select_bugs(args.only)
    with progress_monitor(args.quiet) as monitor:
        report = run_check(read_host(), bugs, all_probes(), args.duration, monitor, strict=args.strict)
    save_run(report, args.state_dir, args.textfile)
    return emit_report(report, args)


COMMAND = Command(
    "check", "which known bugs can hurt this machine? (~15 s)", configure, handle, description=DESCRIPTION
)
