"""`shakeout run PROBE`: one probe with the user's settings and live progress."""

from __future__ import annotations

import argparse

from shakeout.cli.base import Command, add_output_options, check_output, duration, emit, workers


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("probe")
    p.add_argument("--duration", type=duration, help="seconds (default: the probe's default)")
    p.add_argument("--workers", type=workers, help="parallel workers (default: the probe's choice)")
    p.add_argument("--keep-going", action="store_true", help="do not stop at the first reproduced corruption")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a probe option")
    add_output_options(p)


def handle(args: argparse.Namespace) -> int:
    from shakeout.catalog import load_catalog
    from shakeout.cli.progress import ConsoleMonitor
    from shakeout.engine import run_one
    from shakeout.host import read_host
    from shakeout.probes import get_probe
    from shakeout.runner import parse_probe_options

    spec = get_probe(args.probe)
    options = parse_probe_options(spec, args.set)
    check_output(args)
    host = read_host()
    bugs = list(load_catalog().values())
    with ConsoleMonitor() as monitor:
        report = run_one(host, spec, bugs, args.duration, args.workers, args.keep_going, options, monitor)
    return emit(report, args.format, args.output)


COMMAND = Command("run", "run one probe, with live progress", configure, handle)
