"""`shakeout selftest`: inject each probe's fault and show that it is caught here."""

from __future__ import annotations

import argparse

from shakeout.cli.base import Command, add_output_options, check_output
from shakeout.cli.help import add_epilog
from shakeout.cli.quiet import add_quiet_option, emit_report, progress_monitor

EXAMPLES = """\
  shakeout selftest                       # every probe (~30 s)
  shakeout selftest --only signal-vector  # is this probe armed here?
  shakeout selftest --quiet || echo "a probe cannot be trusted on this machine\""""

DESCRIPTION = """\
For every probe, a clean control run (it must pass: no false alarm), then each fault the
probe exists to find is injected through a real mechanism and must be caught with the
right evidence. Exit 0: every fault caught and every control clean; 1: a fault missed or
a control failed; 3: something could not run here; 2: usage error."""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", nargs="+", metavar="PROBE", help="test only these probes (names below)")
    add_quiet_option(p)
    add_output_options(p)
    add_epilog(p, EXAMPLES, probes=True)


def handle(args: argparse.Namespace) -> int:
    from shakeout.engine import run_selftest
    from shakeout.host import read_host
    from shakeout.probes import all_probes, get_probe

    specs = [get_probe(p) for p in args.only] if args.only else list(all_probes().values())
    check_output(args)
    with progress_monitor(args.quiet) as monitor:
        report = run_selftest(read_host(), specs, monitor)
    return emit_report(report, args)


COMMAND = Command(
    "selftest", "inject each probe's fault and show it is caught here", configure, handle, description=DESCRIPTION
)
