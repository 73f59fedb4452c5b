"""`shakeout bisect` and `shakeout config-bisect`: find the changes that make a command fail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shakeout.bisect import options
from shakeout.cli.base import Command

TARGET_EPILOG = "The target follows --: [VAR=value...] CMD ARGS...; the word PATTERN in them is replaced."


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--confidence", type=options.confidence, default=0.99, help="of the final answer (default 0.99)")
    p.add_argument("-j", "--jobs", type=options.jobs, default=1, help="trials run in parallel (default 1)")
    p.add_argument("--timeout", type=options.timeout, help="seconds per trial")
    p.add_argument("--hang", choices=["fail", "error"], default="error", help="what a timed-out trial counts as")
    p.add_argument("--log", type=Path, help="record every trial; rerun with the same log to resume")
    p.add_argument("--max", type=options.change_sets, default=1, help="look for up to this many change sets")
    p.add_argument(
        "--max-trials", type=options.trials, default=2000, help="give up after this many trials (default 2000)"
    )
    p.add_argument("--format", default="text", choices=["text", "json"])


def configure_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("good", type=Path, help="the configuration that passes")
    p.add_argument("bad", type=Path, help="the configuration that fails")
    _common(p)


def _log(message: str) -> None:
    print("shakeout bisect: " + message, file=sys.stderr, flush=True)


def handle(args: argparse.Namespace) -> int:
    from shakeout.bisect.report import render
    from shakeout.bisect.session import BisectRequest, SearchSettings, run_bisect

    request = BisectRequest(
        command=args.command,
        search=SearchSettings(args.confidence, args.jobs, args.max_trials, args.max),
        timeout_s=args.timeout,
        hang_is_failure=args.hang == "fail",
        log_path=args.log,
        good=getattr(args, "good", None),
        bad=getattr(args, "bad", None),
    )
    sys.stdout.write(render(run_bisect(request, _log), args.format))
    return 0


COMMANDS = (
    Command(
        "bisect",
        "find the changes whose enabling makes a command fail (Go's bisect protocol, flaky-aware)",
        _common,
        handle,
        epilog=TARGET_EPILOG,
    ),
    Command(
        "config-bisect",
        "find the kernel options whose change from GOOD to BAD makes a command fail",
        configure_config,
        handle,
        epilog=TARGET_EPILOG,
    ),
)
