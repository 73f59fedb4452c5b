"""`shakeout memtest`: argument types, the plan from the arguments, and the command itself
(its parser is declared in shakeout/cli/memtest.py)."""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import resource
from pathlib import Path
from typing import Any, Optional, Tuple

from shakeout.errors import UsageError
from shakeout.memtest.fencing import PAGE_BYTES
from shakeout.memtest.render import MemtestProgress, render_json, render_text
from shakeout.memtest.session import TEST_NAMES, MemtestPlan, run_memtest
from shakeout.memtest.sizes import (
    MemInfo,
    SizeChoice,
    default_size,
    human_bytes,
    parse_bytes,
    parse_meminfo,
    parse_size,
)
from shakeout.report import check_output_path, write_atomically
from shakeout.report.text import plain_console, stdout_console

MAX_PASSES = 1_000_000
MAX_THREADS = 1024
MAX_DURATION_S = 7 * 24 * 3600
CAP_IPC_LOCK = 14
_DECIMAL = re.compile(r"[0-9]+", re.ASCII)
_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)

GRANULARITY_HELP = (
    "size of the blocks the fencing lines remove around each weak cell (default 1M). Memory controllers "
    "interleave channels and ranks, so the physical address a cell answers to can move when modules move; "
    "seed 002 found 128K covered every permutation of four interleaved modules and fenced 1M for margin"
)


def count(what: str, high: int) -> Any:
    def parse(text: str) -> int:
        if not _DECIMAL.fullmatch(text) or not 1 <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {what} from 1 to {high}")
        return int(text)

    return parse


def seconds(text: str) -> float:
    if not _SECONDS.fullmatch(text) or not 0 < float(text) <= MAX_DURATION_S or not math.isfinite(float(text)):
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds from more than 0 to {MAX_DURATION_S}")
    return float(text)


def parse_tests(text: str) -> Tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in TEST_NAMES]
    if unknown or not names:
        raise UsageError(
            "--tests: unknown test '{}' (tests: {})".format(unknown[0] if unknown else text, ", ".join(TEST_NAMES))
        )
    return tuple(n for n in TEST_NAMES if n in names)  # the native order


def parse_granularity(text: str) -> int:
    size = parse_bytes(text, "--badram-granularity")
    if size is None or size & (size - 1) or size < PAGE_BYTES or size > 1 << 40:
        raise UsageError(f"--badram-granularity '{text}' is not a power of two from 4K (a page) to 1T")
    return size


def _can_lock_beyond_limit(status_text: str) -> bool:
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_IPC_LOCK & 1)
    return os.geteuid() == 0


def _memlock_limit() -> Optional[int]:
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else soft


def choose_size(text: Optional[str], info: MemInfo) -> SizeChoice:
    if text is not None:
        return SizeChoice(parse_size(text, info), "--size " + text)
    status = Path("/proc/self/status").read_text()
    return default_size(info, _memlock_limit(), _can_lock_beyond_limit(status))


def plan_from_args(args: argparse.Namespace, info: MemInfo) -> MemtestPlan:
    tests = parse_tests(args.tests)
    granularity = parse_granularity(args.badram_granularity)
    choice = choose_size(args.size, info)
    threads = args.threads or len(os.sched_getaffinity(0))
    if choice.size_bytes < threads * PAGE_BYTES * 2:
        raise UsageError(f"--size {human_bytes(choice.size_bytes)} is too small for {threads} threads")
    return MemtestPlan(
        size_bytes=choice.size_bytes,
        size_reason=choice.reason,
        passes=args.passes,
        duration_s=args.duration,
        tests=tests,
        threads=args.threads,
        granularity_bytes=granularity,
        allow_unlocked=args.allow_unlocked,
        fade_wait_s=args.fade_wait,
    )


def cmd_memtest(args: argparse.Namespace) -> int:
    if args.output:
        check_output_path(args.output)
    plan = plan_from_args(args, parse_meminfo(Path("/proc/meminfo").read_text()))
    with MemtestProgress() as progress:
        report = run_memtest(plan, on_status=progress.on_status)
    if args.format == "json":
        text = render_json(report)
    else:
        buffer = io.StringIO()
        render_text(report, plain_console(buffer) if args.output else stdout_console())
        text = buffer.getvalue()
    if args.output:
        write_atomically(args.output, text)
    elif text:
        print(text, end="")
    return report.exit_status
