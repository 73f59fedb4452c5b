"""`shakeout vm --kernel IMAGE`: boot a kernel under QEMU and run the probes inside it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from shakeout.cli.base import Command, add_output_options, check_output, duration, emit, workers


def _memory(text: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*[MG]", text, re.ASCII):
        raise argparse.ArgumentTypeError(f"'{text}' is not a memory size like 512M or 2G")
    return text


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", type=Path, required=True, help="kernel image (bzImage, /boot/vmlinuz-*)")
    p.add_argument("--probes", help="comma-separated probe ids (default: every probe for the kernel's arch)")
    p.add_argument("--duration", type=duration, default=5.0, help="seconds per probe (default 5)")
    p.add_argument("--cpus", type=workers, default=2, help="guest CPUs (default 2)")
    p.add_argument("--memory", default="512M", type=_memory, help="guest memory (default 512M)")
    p.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"], help="KVM if it works, else TCG")
    p.add_argument("--cpu", default="max", help="QEMU CPU model (default max)")
    add_output_options(p)


def handle(args: argparse.Namespace) -> int:
    from shakeout.catalog import load_catalog
    from shakeout.cli.progress import ConsoleMonitor
    from shakeout.probes import get_probe
    from shakeout.vm import run_vm  # QEMU support is only loaded when asked for

    check_output(args)
    chosen = [get_probe(p.strip()) for p in args.probes.split(",") if p.strip()] if args.probes else None
    with ConsoleMonitor() as monitor:
        report = run_vm(
            args.kernel,
            chosen,
            list(load_catalog().values()),
            args.duration,
            args.cpus,
            args.memory,
            args.accel,
            args.cpu,
            monitor,
        )
    return emit(report, args.format, args.output)


COMMAND = Command("vm", "boot a kernel under QEMU and run the probes inside it", configure, handle)
