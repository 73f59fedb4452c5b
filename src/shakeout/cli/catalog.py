"""`shakeout list` and `shakeout show BUG`: the catalog of known bugs."""

from __future__ import annotations

import argparse

from shakeout.cli.base import Command


def _no_options(p: argparse.ArgumentParser) -> None:
    pass


def handle_list(args: argparse.Namespace) -> int:
    from shakeout.catalog import load_catalog
    from shakeout.report.text import render_catalog_list, stdout_console

    render_catalog_list(list(load_catalog().values()), stdout_console())
    return 0


def configure_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("bug")


def handle_show(args: argparse.Namespace) -> int:
    from shakeout.engine import select_bugs
    from shakeout.report.text import render_bug, stdout_console

    render_bug(select_bugs([args.bug])[0], stdout_console())
    return 0


COMMANDS = (
    Command("list", "the catalog of known bugs", _no_options, handle_list),
    Command("show", "one bug: mechanism, affected ranges, fix, mitigations, references", configure_show, handle_show),
)
