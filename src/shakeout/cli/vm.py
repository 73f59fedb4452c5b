"""`shakeout vm --kernel IMAGE`: boot a kernel under QEMU and run the probes inside it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from shakeout.cli.base import Command, add_output_options, check_output, duration, workers
from shakeout.cli.help import add_epilog
from shakeout.cli.quiet import add_quiet_option, emit_report, progress_monitor


def _memory(text: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*[MG]", text, re.ASCII):
        raise argparse.ArgumentTypeError(f"'{text}' is not a memory size like 512M or 2G")
    return text


EXAMPLES = """\
  shakeout vm --kernel /boot/vmlinuz-6.1.0-50-amd64
  shakeout vm --kernel bzImage --probes signal-vector --duration 30 --cpus 4
  shakeout vm --kernel bzImage --accel tcg --cpu Skylake-Server --quiet"""

DESCRIPTION = """\
Boot a kernel image under QEMU with an initramfs of shakeout's static probes, run them
inside the guest and report the guest's verdicts, as check does (same formats and exit
statuses). KVM is used when it works, else TCG (slower: allow ~30 s for five probes).
Needs qemu-system-x86_64 (Debian: qemu-system-x86)."""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kernel", type=Path, required=True, metavar="IMAGE", help="kernel image (bzImage, /boot/vmlinuz-*)"
    )
    p.add_argument(
        "--probes", metavar="A,B", help="comma-separated probe ids (default: every probe for the kernel's arch)"
    )
    p.add_argument("--duration", type=duration, default=5.0, metavar="SECONDS", help="seconds per probe (default 5)")
    p.add_argument("--cpus", type=workers, default=2, metavar="N", help="guest CPUs, 1 to 1024 (default 2)")
    p.add_argument(
        "--memory", default="512M", type=_memory, metavar="SIZE", help="guest memory: M or G, e.g. 2G (default 512M)"
    )
    p.add_argument(
        "--accel",
        default="auto",
        choices=["auto", "kvm", "tcg"],
        help="auto: KVM if the guest boots with it, else TCG (default auto)",
    )
    p.add_argument(
        "--cpu", default="max", metavar="MODEL", help="QEMU CPU model (default max; qemu-system-x86_64 -cpu help)"
    )
    add_quiet_option(p)
    add_output_options(p)
    add_epilog(p, EXAMPLES, probes=True)


def handle(args: argparse.Namespace) -> int:
    from shakeout.catalog import load_catalog
    from shakeout.probes import get_probe
    from shakeout.vm import run_vm  # QEMU support is only loaded when asked for

    check_output(args)
    chosen = [get_probe(p.strip()) for p in args.probes.split(",") if p.strip()] if args.probes else None
    with progress_monitor(args.quiet) as monitor:
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
    return emit_report(report, args)


COMMAND = Command(
    "vm", "boot a kernel under QEMU and run the probes inside it", configure, handle, description=DESCRIPTION
)
