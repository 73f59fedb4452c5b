"""`shakeout bisect` and `shakeout config-bisect`: find the changes that make a command fail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from shakeout.bisect import options
from shakeout.cli.base import Command

BISECT_DESCRIPTION = """\
Find a minimal set of changes whose enabling makes a command fail, also when it fails only
sometimes. The command is a bisect target: each trial replaces the word PATTERN in it (or
in a VAR=value setting before it) with a pattern, the target enables the changes the
pattern selects, prints a [bisect-match 0x...] line for each change the pattern names,
and exits 0 (pass) or not (fail). Go programs and `shakeout cc` speak this protocol;
`shakeout bisect-match` makes a shell script one (README: "Writing a bisect target")."""

BISECT_EPILOG = """\
examples:
  shakeout bisect -- ./target.sh PATTERN
  shakeout bisect -j 2 --timeout 60 --hang fail -- BISECT_PATTERN=PATTERN make test
  shakeout bisect --log trials.jsonl -- BISECT_PATTERN=PATTERN sh -c 'make -B CC="$CC" && ./run-tests'

With CC="shakeout cc --if-enabled -fstack-check -- gcc" the last one finds the object file
that -fstack-check breaks.

The target follows --: [VAR=value...] CMD ARGS...; the word PATTERN in them is replaced."""

CONFIG_DESCRIPTION = """\
Find the kernel options whose change from GOOD to BAD makes a command fail. Each trial
writes a candidate configuration (GOOD with some options at BAD's values) and runs the
command with its path in $SHAKEOUT_CONFIG; the command may normalise it in place (make
olddefconfig), then builds and tests, and exits 0 (pass) or not (fail). The answer names
the options, and every option that really differed from GOOD after normalisation."""

CONFIG_EPILOG = """\
examples:
  shakeout config-bisect good.config bad.config -- ./build-and-test.sh
  shakeout config-bisect --timeout 1800 --hang fail good.config bad.config -- ./build-and-test.sh

The command follows --: [VAR=value...] CMD ARGS...; it finds the candidate in
$SHAKEOUT_CONFIG, e.g. build-and-test.sh:
  cp "$SHAKEOUT_CONFIG" .config && make olddefconfig && cp .config "$SHAKEOUT_CONFIG" &&
  make -j8 && ./run-tests"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--confidence",
        type=options.confidence,
        default=0.99,
        metavar="P",
        help="probability that the answer is right, 0.5 to below 1 (default 0.99)",
    )
    p.add_argument("-j", "--jobs", type=options.jobs, default=1, metavar="N", help="trials run in parallel (default 1)")
    p.add_argument("--timeout", type=options.timeout, metavar="SECONDS", help="seconds per trial (default: none)")
    p.add_argument(
        "--hang",
        choices=["fail", "error"],
        default="error",
        help="a trial still running after --timeout counts as a failure, or stops the bisection (default error)",
    )
    p.add_argument(
        "--log", type=Path, metavar="FILE", help="record every trial; rerun with the same log to resume without repeats"
    )
    p.add_argument(
        "--max", type=options.change_sets, default=1, metavar="N", help="look for up to N change sets (default 1)"
    )
    p.add_argument(
        "--max-trials",
        type=options.trials,
        default=2000,
        metavar="N",
        help="give up after N runs of the command (default 2000)",
    )
    p.add_argument("--format", default="text", choices=["text", "json"], help="output format (default: text)")
    p.add_argument(
        "--launcher",
        type=options.launcher,
        metavar="'CMD ...'",
        help="run every trial through this command, e.g. 'srun -N1 --' or 'ssh -tt builder7' (see README)",
    )
    p.add_argument(
        "--launcher-grace",
        type=options.grace,
        default=10.0,
        metavar="SECONDS",
        help="after SIGTERM, how long the launcher has to cancel a trial's work before SIGKILL (default 10)",
    )


def configure_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("good", type=Path, metavar="GOOD", help="the kernel configuration that passes (a .config)")
    p.add_argument("bad", type=Path, metavar="BAD", help="the kernel configuration that fails (a .config)")
    _common(p)
    p.add_argument("-v", "--verbose", action="store_true", help="progress also shows each trial's bisect pattern")


def _progress(command: str) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(f"shakeout {command}: {message}", file=sys.stderr, flush=True)

    return log


def handle(args: argparse.Namespace) -> int:
    from shakeout.bisect.report import render
    from shakeout.bisect.runner import Launcher
    from shakeout.bisect.session import BisectRequest, SearchSettings, run_bisect

    config = getattr(args, "good", None) is not None
    request = BisectRequest(
        command=args.command,
        search=SearchSettings(args.confidence, args.jobs, args.max_trials, args.max),
        timeout_s=args.timeout,
        hang_is_failure=args.hang == "fail",
        log_path=args.log,
        good=getattr(args, "good", None),
        bad=getattr(args, "bad", None),
        verbose=getattr(args, "verbose", False),
        launcher=Launcher(args.launcher, args.launcher_grace) if args.launcher else None,
    )
    sys.stdout.write(render(run_bisect(request, _progress("config-bisect" if config else "bisect")), args.format))
    return 0


COMMANDS = (
    Command(
        "bisect",
        "find the changes whose enabling makes a command fail (Go's bisect protocol, flaky-aware)",
        _common,
        handle,
        description=BISECT_DESCRIPTION,
        epilog=BISECT_EPILOG,
    ),
    Command(
        "config-bisect",
        "find the kernel options whose change from GOOD to BAD makes a command fail",
        configure_config,
        handle,
        description=CONFIG_DESCRIPTION,
        epilog=CONFIG_EPILOG,
    ),
)
