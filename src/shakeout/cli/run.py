"""`shakeout run PROBE`: one probe with the user's settings and live progress."""

from __future__ import annotations

import argparse

from shakeout.cli.base import Command, add_output_options, check_output, duration, workers
from shakeout.cli.help import add_epilog
from shakeout.cli.quiet import add_quiet_option, emit_report, progress_monitor

EXAMPLES = """\
  shakeout run signal-vector --duration 60
  shakeout run fork-cow --set mode=tlb --workers 4
  shakeout run robust-futex-wakeup --quiet; echo "exit $?"   # 0 pass, 1 reproduced, 3 undecided"""

DESCRIPTION = """\
Run one probe alone, longer or with other settings than check uses, with live progress.
Exit 0: the probe passed; 1: it reproduced the corruption (a hazard probe too: a probe
run is a probe run); 3: skipped, broke or inconclusive (too few exposures); 2: usage
error. `shakeout probes` lists every probe's options."""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("probe", metavar="PROBE", help="the probe to run (names below)")
    p.add_argument(
        "--duration", type=duration, metavar="SECONDS", help="seconds to run (default: the probe's own default)"
    )
    p.add_argument(
        "--workers", type=workers, metavar="N", help="parallel workers, 1 to 1024 (default: the probe's choice)"
    )
    p.add_argument("--keep-going", action="store_true", help="do not stop at the first reproduced corruption")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a probe option, repeatable (shakeout probes lists them with ranges, defaults and units)",
    )
    add_quiet_option(p)
    add_output_options(p)
    add_epilog(p, EXAMPLES, probes=True)


def handle(args: argparse.Namespace) -> int:
    from shakeout.catalog import load_catalog
    from shakeout.engine import run_one
    from shakeout.host import read_host
    from shakeout.probes import get_probe
    from shakeout.runner import parse_probe_options

    spec = get_probe(args.probe)
    options = parse_probe_options(spec, args.set)
    check_output(args)
    host = read_host()
    bugs = list(load_catalog().values())
    with progress_monitor(args.quiet) as monitor:
        report = run_one(host, spec, bugs, args.duration, args.workers, args.keep_going, options, monitor)
    return emit_report(report, args)


COMMAND = Command("run", "run one probe, with live progress", configure, handle, description=DESCRIPTION)
