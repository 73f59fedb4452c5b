"""`shakeout status`: the last scheduled check in one line (node-problem-detector plugin with --plugin npd)."""

from __future__ import annotations

import argparse

from shakeout.cli.base import Command


def configure(p: argparse.ArgumentParser) -> None:
    from shakeout.fleet.status import add_status_arguments

    add_status_arguments(p)


def handle(args: argparse.Namespace) -> int:
    from shakeout.fleet.status import status_command

    return status_command(args)


COMMAND = Command(
    "status",
    "the last scheduled check in one line, without running probes (--plugin npd for node-problem-detector)",
    configure,
    handle,
    epilog="examples:\n  shakeout status\n  shakeout status --hazards --max-age 86400\n"
    "  shakeout status --plugin npd   # what node-problem-detector runs\n\n"
    "exit status: 0 ok, 1 a defect vulnerable, 3 unknown (no or stale report), 2 usage error;\n"
    "with --plugin npd: 0 OK, 1 problem, 2 unknown (node-problem-detector's custom plugin protocol)",
)
