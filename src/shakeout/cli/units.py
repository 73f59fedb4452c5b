"""`shakeout units`: the systemd service and timer for scheduled checks, printed or installed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shakeout.cli.base import Command


def configure(p: argparse.ArgumentParser) -> None:
    from shakeout.fleet.units import DEFAULT_UNIT_DIR

    p.add_argument("--install", action="store_true", help=f"write the units into --unit-dir ({DEFAULT_UNIT_DIR})")
    p.add_argument("--unit-dir", type=Path, default=DEFAULT_UNIT_DIR, help="where --install writes")
    p.add_argument("--textfile", type=Path, help="the service also writes the Prometheus text to FILE (absolute)")
    p.add_argument("--npd", action="store_true", help="print node-problem-detector's custom plugin config instead")


def handle(args: argparse.Namespace) -> int:
    from shakeout.errors import UsageError
    from shakeout.fleet.units import current_python, install_units, render_npd_config, render_units

    python = current_python()
    if args.npd:
        if args.install:
            raise UsageError("--npd prints the config; NPD reads it from its own --config.custom-plugin-monitor path")
        sys.stdout.write(render_npd_config(python))
        return 0
    units = render_units(python, args.textfile)
    if args.install:
        print(install_units(units, args.unit_dir), file=sys.stderr)
        return 0
    for name, text in units.items():
        sys.stdout.write(f"# --- {name}\n{text}\n")
    return 0


EPILOG = """\
examples:
  shakeout units                 # print the service and timer
  shakeout units --install --textfile /var/lib/node_exporter/textfile_collector/shakeout.prom
  shakeout units --npd > /etc/node-problem-detector/shakeout.json"""

COMMAND = Command(
    "units",
    "the systemd service and timer that run check daily and keep its state",
    configure,
    handle,
    epilog=EPILOG,
)
