"""`shakeout memtest`: test RAM for weak cells from the running system."""

from __future__ import annotations

import argparse
from pathlib import Path

from shakeout.cli.base import Command


def configure(p: argparse.ArgumentParser) -> None:
    from shakeout.memtest.command import GRANULARITY_HELP, MAX_PASSES, MAX_THREADS, count, seconds
    from shakeout.memtest.session import DEFAULT_TESTS, TEST_NAMES

    p.add_argument(
        "--size",
        help="bytes (512M, 2G, 1073741824) or a percentage of MemAvailable (50%%); "
        "default: MemAvailable minus a margin",
    )
    amount = p.add_mutually_exclusive_group()
    amount.add_argument(
        "--passes", type=count("pass count", MAX_PASSES), metavar="N", help="passes over all tests (default 1)"
    )
    amount.add_argument("--duration", type=seconds, metavar="SECONDS", help="seconds, as many passes as fit")
    p.add_argument("--tests", default=",".join(DEFAULT_TESTS), help="comma-separated, from: " + ", ".join(TEST_NAMES))
    p.add_argument(
        "--threads", type=count("thread count", MAX_THREADS), metavar="N", help="threads testing (default: one per CPU)"
    )
    p.add_argument(
        "--fade-wait",
        type=count("number of seconds", 86400),
        default=300,
        metavar="SECONDS",
        help="bit-fade: seconds between writing and checking (default 300)",
    )
    p.add_argument("--badram-granularity", default="1M", help=GRANULARITY_HELP)
    p.add_argument(
        "--allow-unlocked",
        action="store_true",
        help="test even if mlock is refused (swapped-out pages are then not RAM-tested)",
    )
    p.add_argument("--format", default="text", choices=["text", "json"], help="output format (default: text)")
    p.add_argument("--output", type=Path, metavar="FILE", help="write the report to FILE atomically instead of stdout")


def handle(args: argparse.Namespace) -> int:
    from shakeout.memtest.command import cmd_memtest

    return cmd_memtest(args)


COMMAND = Command(
    "memtest",
    "test RAM for weak cells from the running system (locked memory, all CPUs)",
    configure,
    handle,
    description="Exit status: 0 no error, 1 errors found, 2 usage error, 3 could not test, 130 interrupted.",
    epilog="""\
examples:
  shakeout memtest --size 1G --passes 1
  shakeout memtest --size 50% --duration 600 --tests address,random
  shakeout memtest --format json --output memtest.json""",
)
